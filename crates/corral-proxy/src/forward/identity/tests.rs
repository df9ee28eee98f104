//! Client resolution: properties that hold whatever the chain says, and the cases by name.

use std::net::Ipv4Addr;

use proptest::prelude::*;

use super::*;

fn trusted() -> Vec<Cidr> {
    vec![
        "10.0.0.0/8".parse().expect("cidr"),
        "::1".parse().expect("cidr"),
    ]
}

fn conn(peer: &str) -> ClientIdentity {
    let peer = Peer {
        addr: Some(peer.parse().expect("ip")),
        local_port: Some(8080),
        tls: false,
    };
    ClientIdentity::of_peer(peer, &trusted())
}

fn xff<'a>(chain: &'a [&'a str]) -> ForwardingFields<'a> {
    ForwardingFields {
        x_forwarded_for: chain.to_vec(),
        ..ForwardingFields::default()
    }
}

/// An address from a small space where about half are trusted (10.x) and half are not.
fn address() -> impl Strategy<Value = Ipv4Addr> {
    (prop::bool::ANY, 0u8..4, 0u8..4).prop_map(|(inside, a, b)| {
        if inside {
            Ipv4Addr::new(10, a, b, 1)
        } else {
            Ipv4Addr::new(203, 0, a, b)
        }
    })
}

proptest! {
    /// An untrusted peer is the client, whatever it wrote.
    #[test]
    fn an_untrusted_peer_is_the_client(chain in prop::collection::vec(address(), 0..6)) {
        let text: Vec<String> = chain.iter().map(|a| a.to_string()).collect();
        let refs: Vec<&str> = text.iter().map(String::as_str).collect();
        let fields = ForwardingFields {
            x_forwarded_for: refs.clone(),
            x_forwarded_proto: vec!["https"],
            request_id: vec!["forged"],
            ..ForwardingFields::default()
        };
        let id = resolve(&conn("198.51.100.7"), &fields, &trusted());
        prop_assert_eq!(id.ip_text, "198.51.100.7");
        prop_assert_eq!(id.proto, "http");
        prop_assert!(id.request_id.is_none());
        prop_assert_eq!(id.forwarded_for.as_ref().and_then(|v| v.to_str().ok()), Some("198.51.100.7"));
    }

    /// From a trusted peer the client is the right-most untrusted address of the chain, and
    /// nothing written left of it changes that: a forged left-most entry proves nothing.
    #[test]
    fn the_client_is_the_rightmost_untrusted_address(
        forged in prop::collection::vec(address(), 0..4),
        client in (0u8..4, 0u8..4).prop_map(|(a, b)| Ipv4Addr::new(203, 0, a, b)),
        proxies in prop::collection::vec((0u8..4).prop_map(|a| Ipv4Addr::new(10, a, 0, 1)), 0..4),
    ) {
        let mut text: Vec<String> = forged.iter().map(|a| a.to_string()).collect();
        text.push(client.to_string());
        text.extend(proxies.iter().map(|a| a.to_string()));
        let refs: Vec<&str> = text.iter().map(String::as_str).collect();
        let id = resolve(&conn("10.9.9.9"), &xff(&refs), &trusted());
        prop_assert_eq!(id.ip_text, client.to_string());
        // The chain goes on to the worker with the peer appended.
        let mut expected = text.join(", ");
        expected.push_str(", 10.9.9.9");
        prop_assert_eq!(id.forwarded_for.as_ref().and_then(|v| v.to_str().ok()), Some(expected.as_str()));
    }

    /// A chain of trusted addresses only names its left-most one; an empty chain, the peer.
    #[test]
    fn an_all_trusted_chain_gives_its_farthest_address(proxies in prop::collection::vec((0u8..4, 0u8..4).prop_map(|(a, b)| Ipv4Addr::new(10, a, b, 2)), 0..5)) {
        let text: Vec<String> = proxies.iter().map(|a| a.to_string()).collect();
        let refs: Vec<&str> = text.iter().map(String::as_str).collect();
        let id = resolve(&conn("10.9.9.9"), &xff(&refs), &trusted());
        let expected = text.first().cloned().unwrap_or_else(|| "10.9.9.9".into());
        prop_assert_eq!(id.ip_text, expected);
    }
}

#[test]
fn a_trusted_proxy_is_believed_on_scheme_host_port_and_request_id() {
    let fields = ForwardingFields {
        x_forwarded_for: vec!["203.0.113.9"],
        x_forwarded_proto: vec!["https"],
        x_forwarded_host: vec!["shop.example"],
        request_id: vec!["lb-1234"],
        ..ForwardingFields::default()
    };
    let id = resolve(&conn("10.0.0.5"), &fields, &trusted());
    assert_eq!(id.ip_text, "203.0.113.9");
    assert_eq!(id.proto, "https");
    assert_eq!(
        id.host.as_ref().and_then(|h| h.to_str().ok()),
        Some("shop.example")
    );
    assert_eq!(id.port.as_ref().and_then(|p| p.to_str().ok()), Some("443"));
    assert_eq!(id.request_id.as_deref(), Some("lb-1234"));
    let bad_id = ForwardingFields {
        request_id: vec!["has spaces and \"quotes\""],
        ..ForwardingFields::default()
    };
    assert!(resolve(&conn("10.0.0.5"), &bad_id, &trusted())
        .request_id
        .is_none());
}

#[test]
fn rfc_7239_forwarded_is_read_when_there_is_no_x_forwarded_for() {
    let fields = ForwardingFields {
        forwarded: vec!["for=198.51.100.1;proto=https, for=\"[2001:db8::7]:4711\";by=10.0.0.1"],
        ..ForwardingFields::default()
    };
    let id = resolve(&conn("10.0.0.5"), &fields, &trusted());
    assert_eq!(id.ip_text, "2001:db8::7");
    assert_eq!(id.proto, "https");
}

#[test]
fn garbage_in_the_chain_stops_at_the_nearest_checked_address() {
    let id = resolve(
        &conn("10.0.0.5"),
        &xff(&["203.0.113.1, unknown, 10.1.1.1"]),
        &trusted(),
    );
    assert_eq!(id.ip_text, "10.1.1.1");
    let ported = resolve(&conn("10.0.0.5"), &xff(&["203.0.113.1:5555"]), &trusted());
    assert_eq!(ported.ip_text, "203.0.113.1");
}

#[test]
fn ipv6_peers_and_mapped_ipv4_are_judged_alike() {
    let id = resolve(&conn("::1"), &xff(&["2001:db8::9"]), &trusted());
    assert_eq!(id.ip_text, "2001:db8::9");
    let mapped = conn("::ffff:10.0.0.5");
    assert!(mapped.trusted_peer);
    assert_eq!(mapped.ip_text, "10.0.0.5");
    assert!(!conn("127.0.0.1").trusted_peer);
}
