//! `server.tls.redirect_http`: a plain listener that sends every request to its `https` URL
//! with 308 (method and body kept, unlike 301), so `http://` links and old bookmarks land on
//! HTTPS. Probes keep using the admin listener. ACME HTTP-01 challenges are answered here
//! first, as the CA asks on port 80.

use std::sync::Arc;

use async_trait::async_trait;
use http::Response;
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;

/// Answers 308 to `https://HOST[:PORT]/path?query`.
pub struct Redirect {
    /// The HTTPS port named in `Location`; left out when it is 443.
    https_port: u16,
    /// ACME HTTP-01 challenges, answered before redirecting (with `[server.tls.acme]`).
    challenges: Option<Arc<corral_tls::Challenges>>,
}

impl Redirect {
    /// Redirects to HTTPS on `https_port` (the first `server.tls.listen` address's port),
    /// after answering any HTTP-01 challenge of `challenges`.
    pub fn new(https_port: u16, challenges: Option<Arc<corral_tls::Challenges>>) -> Self {
        Redirect {
            https_port,
            challenges,
        }
    }

    /// The `Location` for a request to `host` (its port dropped) and `path`, or `None` when
    /// the host is missing or not a host name.
    fn location(&self, host: &str, path: &str) -> Option<String> {
        let authority: http::uri::Authority = host.parse().ok()?;
        let name = authority.host();
        if name.is_empty() {
            return None;
        }
        Some(match self.https_port {
            443 => format!("https://{name}{path}"),
            port => format!("https://{name}:{port}{path}"),
        })
    }
}

#[async_trait]
impl ServeHttp for Redirect {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let head = session.req_header();
        let host = head
            .headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| head.uri.authority().map(|a| a.as_str()))
            .unwrap_or("");
        let path = head.uri.path_and_query().map_or("/", |p| p.as_str());
        if let Some(challenges) = &self.challenges {
            if head.uri.path().starts_with(corral_tls::HTTP01_PREFIX) {
                let found = crate::forward::key_authorization(challenges, head.uri.path()).await;
                let answer = match found {
                    Some(text) => Response::builder()
                        .status(200)
                        .header("content-type", "text/plain")
                        .header("content-length", text.len())
                        .body(text.into_bytes()),
                    None => Response::builder()
                        .status(404)
                        .header("content-length", 0)
                        .body(Vec::new()),
                };
                return answer.unwrap_or_default();
            }
        }
        let answer = match self.location(host, path) {
            Some(location) => Response::builder()
                .status(308)
                .header("location", location)
                .header("content-length", 0),
            None => Response::builder().status(400).header("content-length", 0),
        };
        answer
            .header("connection", "close")
            .body(Vec::new())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::Redirect;

    #[test]
    fn the_location_keeps_host_path_and_query_and_names_a_port_other_than_443() {
        let r = Redirect::new(443, None);
        assert_eq!(
            r.location("example.com:80", "/a/b?c=d").as_deref(),
            Some("https://example.com/a/b?c=d")
        );
        let r = Redirect::new(8443, None);
        assert_eq!(
            r.location("example.com", "/").as_deref(),
            Some("https://example.com:8443/")
        );
        assert_eq!(
            r.location("[::1]:8080", "/x").as_deref(),
            Some("https://[::1]:8443/x")
        );
        assert_eq!(r.location("", "/"), None);
        assert_eq!(r.location("bad host", "/"), None);
    }
}
