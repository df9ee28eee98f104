//! What a request head's fields say for the checks of `limits`, `framing` and the
//! forwarder's `admit`, found in one pass over them. Each check looked its fields up by name
//! (`Host`, `Content-Length` twice, `Transfer-Encoding` three times, `Upgrade`): a lookup
//! hashes the name and probes the map, and those dozen lookups cost some 1,000 instructions
//! a request, where one walk over a usual head's few fields costs a tenth of that.

use http::header::{CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING, UPGRADE};
use http::HeaderValue;
use pingora_http::RequestHeader;

/// The fields of one head the checks ask about. Only counts and first values: the rare
/// heads that need more (several `Transfer-Encoding` codings) are looked up again.
#[derive(Debug, Default, Clone, Copy)]
pub struct HeadFacts<'a> {
    /// How many `Host` fields.
    pub hosts: usize,
    /// The first `Host`.
    pub host: Option<&'a HeaderValue>,
    /// How many `Content-Length` fields.
    pub content_lengths: usize,
    /// The first `Content-Length`.
    pub content_length: Option<&'a HeaderValue>,
    /// Whether another `Content-Length` differs from the first.
    pub content_lengths_differ: bool,
    /// Whether there is a `Transfer-Encoding` field.
    pub transfer_encoding: bool,
    /// Whether there is an `Upgrade` field.
    pub upgrade: bool,
    /// How many `Connection` fields.
    pub connections: usize,
    /// The first `Connection`.
    pub connection: Option<&'a HeaderValue>,
    /// The longest field as `name: value` (without its line end).
    pub longest_field: usize,
}

impl<'a> HeadFacts<'a> {
    /// The facts of `head`'s fields, in one walk over them.
    pub fn of(head: &'a RequestHeader) -> Self {
        let mut facts = HeadFacts::default();
        for (name, value) in head.headers.iter() {
            facts.longest_field = facts
                .longest_field
                .max(name.as_str().len() + value.len() + 2);
            // Standard names compare as one small number, not as text.
            if name == HOST {
                facts.hosts += 1;
                facts.host.get_or_insert(value);
            } else if name == CONTENT_LENGTH {
                facts.content_lengths += 1;
                match facts.content_length {
                    None => facts.content_length = Some(value),
                    Some(first) => facts.content_lengths_differ |= first != value,
                }
            } else if name == TRANSFER_ENCODING {
                facts.transfer_encoding = true;
            } else if name == UPGRADE {
                facts.upgrade = true;
            } else if name == CONNECTION {
                facts.connections += 1;
                facts.connection.get_or_insert(value);
            }
        }
        facts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_first_values_match_lookups_by_name() {
        let mut head = RequestHeader::build("GET", b"/", None).expect("head");
        head.append_header("Host", "a.example").expect("host");
        head.append_header("content-length", "5").expect("length");
        head.append_header("X-Long", "0123456789").expect("field");
        head.append_header("Content-Length", "5").expect("length");
        head.append_header("HOST", "b.example").expect("host");
        let facts = HeadFacts::of(&head);
        assert_eq!(facts.hosts, head.headers.get_all(HOST).iter().count());
        assert_eq!(facts.host, head.headers.get(HOST));
        assert_eq!(facts.content_lengths, 2);
        assert_eq!(
            facts.content_length.map(HeaderValue::as_bytes),
            Some(&b"5"[..])
        );
        assert!(!facts.content_lengths_differ);
        assert!(!facts.transfer_encoding && !facts.upgrade);
        assert_eq!(facts.longest_field, "x-long: 0123456789".len());

        head.append_header("Content-Length", "6").expect("length");
        head.append_header("Transfer-Encoding", "chunked")
            .expect("te");
        head.append_header("Upgrade", "websocket").expect("upgrade");
        head.append_header("Connection", "upgrade")
            .expect("connection");
        head.append_header("connection", "x-a").expect("connection");
        let facts = HeadFacts::of(&head);
        assert_eq!(facts.connections, 2);
        assert_eq!(facts.connection, head.headers.get(CONNECTION));
        assert_eq!(facts.content_lengths, 3);
        assert!(facts.content_lengths_differ);
        assert!(facts.transfer_encoding && facts.upgrade);
    }

    #[test]
    fn a_head_without_fields_has_none() {
        let head = RequestHeader::build("GET", b"/", None).expect("head");
        let facts = HeadFacts::of(&head);
        assert_eq!(
            (facts.hosts, facts.content_lengths, facts.longest_field),
            (0, 0, 0)
        );
        assert!(facts.host.is_none() && facts.content_length.is_none());
    }
}
