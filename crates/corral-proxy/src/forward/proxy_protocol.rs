//! The PROXY protocol (v1 text and v2 binary, haproxy.org's spec): the header an L4 load
//! balancer puts in front of a connection to say who the client is. A pure parser.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The v2 signature.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Longest v1 header, CRLF included.
const V1_MAX: usize = 107;
/// Longest v2 header corral accepts (addresses and a few TLVs).
pub(super) const V2_MAX: usize = 16 + 1024;

/// What the header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ProxyHeader {
    /// Bytes the header takes; the request starts after them.
    pub(super) len: usize,
    /// The client, or `None` for `LOCAL`/`UNKNOWN` (a health check of the balancer itself:
    /// the connection's own peer stands).
    pub(super) source: Option<SocketAddr>,
}

/// Why the bytes are no PROXY header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Parse {
    /// More bytes are needed.
    Incomplete,
    /// Not a valid header.
    Invalid(&'static str),
}

/// Parses a header at the start of `buf`.
pub(super) fn parse(buf: &[u8]) -> Result<ProxyHeader, Parse> {
    if buf.len() < V2_SIGNATURE.len() {
        return if V2_SIGNATURE.starts_with(buf) || b"PROXY ".starts_with(&buf[..buf.len().min(6)]) {
            Err(Parse::Incomplete)
        } else {
            Err(Parse::Invalid("no PROXY protocol header"))
        };
    }
    if buf.starts_with(&V2_SIGNATURE) {
        v2(buf)
    } else if buf.starts_with(b"PROXY ") {
        v1(buf)
    } else {
        Err(Parse::Invalid("no PROXY protocol header"))
    }
}

fn v1(buf: &[u8]) -> Result<ProxyHeader, Parse> {
    let Some(end) = buf.windows(2).take(V1_MAX - 1).position(|w| w == b"\r\n") else {
        return if buf.len() >= V1_MAX {
            Err(Parse::Invalid("PROXY v1 line too long"))
        } else {
            Err(Parse::Incomplete)
        };
    };
    let line = std::str::from_utf8(&buf[..end])
        .map_err(|_| Parse::Invalid("PROXY v1 line is not text"))?;
    let parts: Vec<&str> = line.split(' ').collect();
    let len = end + 2;
    match parts.as_slice() {
        ["PROXY", "UNKNOWN", ..] => Ok(ProxyHeader { len, source: None }),
        ["PROXY", family @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let src: IpAddr = src
                .parse()
                .map_err(|_| Parse::Invalid("bad PROXY v1 source"))?;
            let _: IpAddr = dst
                .parse()
                .map_err(|_| Parse::Invalid("bad PROXY v1 destination"))?;
            if (*family == "TCP4") != src.is_ipv4() {
                return Err(Parse::Invalid("PROXY v1 family does not match the address"));
            }
            let port: u16 = sport
                .parse()
                .map_err(|_| Parse::Invalid("bad PROXY v1 port"))?;
            dport
                .parse::<u16>()
                .map_err(|_| Parse::Invalid("bad PROXY v1 port"))?;
            Ok(ProxyHeader {
                len,
                source: Some(SocketAddr::new(src, port)),
            })
        }
        _ => Err(Parse::Invalid("malformed PROXY v1 line")),
    }
}

fn v2(buf: &[u8]) -> Result<ProxyHeader, Parse> {
    if buf.len() < 16 {
        return Err(Parse::Incomplete);
    }
    let (version, command) = (buf[12] >> 4, buf[12] & 0x0f);
    if version != 2 {
        return Err(Parse::Invalid("PROXY v2 header of another version"));
    }
    let body_len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let len = 16 + body_len;
    if len > V2_MAX {
        return Err(Parse::Invalid("PROXY v2 header too long"));
    }
    if buf.len() < len {
        return Err(Parse::Incomplete);
    }
    let body = &buf[16..len];
    let source = match (command, buf[13]) {
        // LOCAL: the balancer's own connection.
        (0, _) => None,
        (1, 0x11) if body.len() >= 12 => {
            let ip = Ipv4Addr::new(body[0], body[1], body[2], body[3]);
            Some(SocketAddr::new(
                IpAddr::V4(ip),
                u16::from_be_bytes([body[8], body[9]]),
            ))
        }
        (1, 0x21) if body.len() >= 36 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&body[..16]);
            let port = u16::from_be_bytes([body[32], body[33]]);
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(octets)), port))
        }
        // UNSPEC or Unix sockets: no address to use.
        (1, 0x00 | 0x31 | 0x32) => None,
        (1, _) => {
            return Err(Parse::Invalid(
                "PROXY v2 address block too short or unknown family",
            ))
        }
        _ => return Err(Parse::Invalid("PROXY v2 command unknown")),
    };
    Ok(ProxyHeader { len, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_lines_give_the_source() {
        let h =
            parse(b"PROXY TCP4 203.0.113.9 10.0.0.1 5555 80\r\nGET / HTTP/1.1\r\n").expect("valid");
        assert_eq!(h.source, Some("203.0.113.9:5555".parse().expect("addr")));
        assert_eq!(h.len, 41);
        let h6 = parse(b"PROXY TCP6 2001:db8::1 ::1 4000 443\r\n").expect("valid");
        assert_eq!(h6.source, Some("[2001:db8::1]:4000".parse().expect("addr")));
        assert_eq!(parse(b"PROXY UNKNOWN\r\n").expect("valid").source, None);
        assert_eq!(
            parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2"),
            Err(Parse::Incomplete)
        );
        assert_eq!(parse(b"PRO"), Err(Parse::Incomplete));
        for bad in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
            b"PROXY TCP4 ::1 ::1 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 2\r\n",
            b"PROXY TCP9 1.2.3.4 5.6.7.8 1 2\r\n",
        ] {
            assert!(
                matches!(parse(bad), Err(Parse::Invalid(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = [b"PROXY ".as_slice(), &[b'1'; 120]].concat();
        assert!(matches!(parse(&long), Err(Parse::Invalid(_))));
    }

    fn v2_header(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(family);
        h.extend_from_slice(&(body.len() as u16).to_be_bytes());
        h.extend_from_slice(body);
        h
    }

    #[test]
    fn v2_headers_give_the_source() {
        let mut body = vec![203, 0, 113, 9, 10, 0, 0, 1];
        body.extend_from_slice(&5555u16.to_be_bytes());
        body.extend_from_slice(&80u16.to_be_bytes());
        let mut h = v2_header(1, 0x11, &body);
        let len = h.len();
        h.extend_from_slice(b"GET /");
        let parsed = parse(&h).expect("valid");
        assert_eq!(
            parsed,
            ProxyHeader {
                len,
                source: Some("203.0.113.9:5555".parse().expect("addr"))
            }
        );
        assert_eq!(parse(&h[..len - 1]), Err(Parse::Incomplete));
        assert_eq!(parse(&v2_header(0, 0, &[])).expect("local").source, None);
        assert!(matches!(
            parse(&v2_header(1, 0x11, &[1, 2])),
            Err(Parse::Invalid(_))
        ));
        assert!(matches!(
            parse(&v2_header(7, 0x11, &body)),
            Err(Parse::Invalid(_))
        ));
        let mut six = vec![0u8; 36];
        six[15] = 1;
        six[32..34].copy_from_slice(&4000u16.to_be_bytes());
        assert_eq!(
            parse(&v2_header(1, 0x21, &six)).expect("v6").source,
            Some("[::1]:4000".parse().expect("addr"))
        );
    }

    proptest::proptest! {
        /// Any bytes: no panic; a header accepted takes no more bytes than were given and
        /// no more than the spec allows, and a prefix of it is `Incomplete`, never another
        /// header.
        #[test]
        fn any_bytes_parse_or_are_refused(
            start in proptest::sample::select(vec![&b"PROXY "[..], b"PROXY TCP4 ", b"PROXY TCP6 ", b"\r\n\r\n\0\r\nQUIT\n", b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c", b""]),
            rest in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
        ) {
            let buf = [start, &rest[..]].concat();
            if let Ok(h) = parse(&buf) {
                proptest::prop_assert!(h.len <= buf.len());
                proptest::prop_assert!(h.len <= V2_MAX.max(V1_MAX));
                for cut in 0..h.len {
                    proptest::prop_assert!(parse(&buf[..cut]).is_err());
                }
            }
        }

        /// Every v1 line for a TCP4 source gives that source, whatever follows it.
        #[test]
        fn v1_lines_give_their_source(a in proptest::prelude::any::<[u8; 4]>(), port in 0u16.., tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40)) {
            let src = std::net::Ipv4Addr::from(a);
            let line = format!("PROXY TCP4 {src} 10.0.0.1 {port} 80\r\n");
            let buf = [line.as_bytes(), &tail[..]].concat();
            let h = parse(&buf).expect("valid");
            proptest::prop_assert_eq!(h.len, line.len());
            proptest::prop_assert_eq!(h.source, Some(SocketAddr::from((src, port))));
        }
    }
}
