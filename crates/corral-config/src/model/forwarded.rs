//! The fields corral adds to every request it forwards (`server.forward_fields`).

/// One of the fields corral adds to every request it forwards. Each costs the worker a parse
/// per request, so `server.forward_fields` may leave some out, as an nginx config sets only
/// the `proxy_set_header`s its app reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardedField {
    /// `X-Forwarded-For`: the chain of client addresses.
    XForwardedFor,
    /// `X-Real-IP`: the client address alone.
    XRealIp,
    /// `X-Forwarded-Proto`: `http` or `https`.
    XForwardedProto,
    /// `X-Forwarded-Host`: the host the client asked for.
    XForwardedHost,
    /// `X-Forwarded-Port`: the port the client connected to.
    XForwardedPort,
    /// `X-Request-Id`: the request's id, as in the access log and the answer.
    XRequestId,
}

impl ForwardedField {
    /// Every field, in the order corral writes them; the default of `forward_fields`.
    pub const ALL: [ForwardedField; 6] = [
        ForwardedField::XForwardedFor,
        ForwardedField::XRealIp,
        ForwardedField::XForwardedProto,
        ForwardedField::XForwardedHost,
        ForwardedField::XForwardedPort,
        ForwardedField::XRequestId,
    ];

    /// The field's name as written to the worker.
    pub fn name(self) -> &'static str {
        match self {
            ForwardedField::XForwardedFor => "X-Forwarded-For",
            ForwardedField::XRealIp => "X-Real-IP",
            ForwardedField::XForwardedProto => "X-Forwarded-Proto",
            ForwardedField::XForwardedHost => "X-Forwarded-Host",
            ForwardedField::XForwardedPort => "X-Forwarded-Port",
            ForwardedField::XRequestId => "X-Request-Id",
        }
    }
}
