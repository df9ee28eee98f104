//! `Accept-Encoding` (RFC 9110 12.5.3): which of corral's codings a client takes, by its
//! q-values, with `*` standing for codings it does not name and `identity;q=0` saying it
//! wants no answer sent as it is.

use corral_config::Coding;

/// What the client's `Accept-Encoding` allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    /// The coding to use: the one with the highest q-value above 0, the earlier of
    /// `offered` on a tie.
    pub coding: Coding,
    /// The client refused the unencoded form (`identity;q=0`, or `*;q=0` without naming
    /// `identity`): then an answer is compressed even under `min_size`.
    pub identity_refused: bool,
}

/// The coding to answer with, of `offered` (best first), for `accept` (the field's value,
/// several fields joined by commas); `None` when the client takes none of them.
pub fn negotiate(offered: &[Coding], accept: &[u8]) -> Option<Choice> {
    let mut named = [None::<u16>; 3];
    let mut star = None::<u16>;
    let mut identity = None::<u16>;
    for element in accept.split(|&b| b == b',') {
        let mut parts = element.split(|&b| b == b';');
        let token = parts.next().unwrap_or_default().trim_ascii();
        if token.is_empty() {
            continue;
        }
        let Some(q) = weight(parts) else { continue };
        let slot = if token == b"*" {
            &mut star
        } else if token.eq_ignore_ascii_case(b"identity") {
            &mut identity
        } else if let Some(coding) = coding_of(token) {
            &mut named[coding.index()]
        } else {
            continue;
        };
        // A coding listed twice keeps its highest weight.
        *slot = Some(slot.map_or(q, |before| before.max(q)));
    }
    let mut best: Option<(Coding, u16)> = None;
    for &coding in offered {
        let q = named[coding.index()].or(star).unwrap_or(0);
        if q > 0 && best.is_none_or(|(_, top)| q > top) {
            best = Some((coding, q));
        }
    }
    let identity_refused = identity.or(star) == Some(0);
    best.map(|(coding, _)| Choice {
        coding,
        identity_refused,
    })
}

/// The coding a token names; `x-gzip` is gzip (RFC 9110 8.4.1.3).
fn coding_of(token: &[u8]) -> Option<Coding> {
    if token.eq_ignore_ascii_case(b"x-gzip") {
        return Some(Coding::Gzip);
    }
    Coding::ALL
        .into_iter()
        .find(|c| token.eq_ignore_ascii_case(c.token().as_bytes()))
}

/// The q-value of an element's parameters in thousandths (1000 when absent); `None` when
/// it is malformed, so the element is ignored rather than guessed at.
fn weight<'a>(params: impl Iterator<Item = &'a [u8]>) -> Option<u16> {
    let mut q = 1000;
    for param in params {
        let param = param.trim_ascii();
        let (name, value) = param.split_first_chunk::<2>()?;
        if !name.eq_ignore_ascii_case(b"q=") {
            // Other parameters are not defined for codings; ignore them.
            continue;
        }
        q = qvalue(value)?;
    }
    Some(q)
}

/// `0`, `0.5`, `1.000`: at most three decimals, never above 1 (RFC 9110 12.4.2).
fn qvalue(text: &[u8]) -> Option<u16> {
    let (whole, fraction) = match text.iter().position(|&b| b == b'.') {
        Some(dot) => (&text[..dot], &text[dot + 1..]),
        None => (text, &b""[..]),
    };
    if fraction.len() > 3 || !fraction.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let thousandths = fraction
        .iter()
        .chain(std::iter::repeat(&b'0'))
        .take(3)
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    match whole {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALL: [Coding; 3] = Coding::ALL;

    fn chosen(accept: &str) -> Option<Coding> {
        negotiate(&ALL, accept.as_bytes()).map(|c| c.coding)
    }

    #[test]
    fn browsers_get_the_servers_first_choice() {
        assert_eq!(chosen("gzip, deflate, br, zstd"), Some(Coding::Zstd));
        assert_eq!(chosen("gzip, deflate, br"), Some(Coding::Brotli));
        assert_eq!(chosen("gzip"), Some(Coding::Gzip));
        assert_eq!(chosen("x-gzip"), Some(Coding::Gzip));
        assert_eq!(chosen("GZIP"), Some(Coding::Gzip));
        let gzip_first = [Coding::Gzip, Coding::Brotli];
        let choice = negotiate(&gzip_first, b"br, gzip, zstd").map(|c| c.coding);
        assert_eq!(choice, Some(Coding::Gzip));
    }

    #[test]
    fn q_values_decide_before_the_servers_order() {
        assert_eq!(chosen("zstd;q=0.5, gzip;q=0.9"), Some(Coding::Gzip));
        assert_eq!(chosen("zstd;q=0, br;q=0.001"), Some(Coding::Brotli));
        assert_eq!(chosen("gzip;q=0"), None);
        assert_eq!(chosen("gzip; Q=0.8 , br;q=0.8"), Some(Coding::Brotli));
        assert_eq!(chosen("identity"), None);
        assert_eq!(chosen(""), None);
        assert_eq!(chosen("deflate, compress"), None);
    }

    #[test]
    fn star_covers_codings_not_named() {
        assert_eq!(chosen("*"), Some(Coding::Zstd));
        assert_eq!(chosen("zstd;q=0, *"), Some(Coding::Brotli));
        assert_eq!(chosen("*;q=0"), None);
        assert_eq!(chosen("gzip, *;q=0"), Some(Coding::Gzip));
    }

    #[test]
    fn identity_refused_only_when_said() {
        let refused = |a: &str| negotiate(&ALL, a.as_bytes()).map(|c| c.identity_refused);
        assert_eq!(refused("gzip"), Some(false));
        assert_eq!(refused("gzip, identity;q=0"), Some(true));
        assert_eq!(refused("gzip, *;q=0"), Some(true));
        assert_eq!(refused("gzip, identity, *;q=0"), Some(false));
    }

    #[test]
    fn malformed_weights_are_ignored_not_guessed() {
        assert_eq!(chosen("gzip;q=2"), None);
        assert_eq!(chosen("gzip;q=0.1234"), None);
        assert_eq!(chosen("gzip;q=abc, br"), Some(Coding::Brotli));
        assert_eq!(chosen("gzip;q"), None);
        assert_eq!(qvalue(b"1.000"), Some(1000));
        assert_eq!(qvalue(b"0.05"), Some(50));
        assert_eq!(qvalue(b"1.5"), None);
    }

    proptest! {
        /// Whatever the bytes, negotiation answers with an offered coding the client named
        /// (or covered by `*`) with a weight above 0, and never panics.
        #[test]
        fn the_choice_is_always_offered_and_accepted(accept in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Some(choice) = negotiate(&[Coding::Gzip, Coding::Brotli], &accept) {
                prop_assert!(choice.coding != Coding::Zstd);
                let text = String::from_utf8_lossy(&accept).to_ascii_lowercase();
                prop_assert!(text.contains(choice.coding.token()) || text.contains('*'));
            }
        }
    }
}
