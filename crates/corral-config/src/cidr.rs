//! Address ranges for `server.trusted_proxies`: `"10.0.0.0/8"`, `"::1/128"`, or a bare
//! address (one host).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// A range of IPv4 or IPv6 addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is in the range. An IPv4 address seen as IPv6 (`::ffff:10.0.0.1`, as a
    /// dual-stack listener reports it) counts as the IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        if s.chars().any(char::is_whitespace) {
            return Err(format!(
                "{s:?} has a space in it; write the range alone, like \"10.0.0.0/8\""
            ));
        }
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let network: IpAddr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an IP address"))?;
        let network = network.to_canonical();
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => return Err(format!("/{p} is not a prefix length from 0 to {max}")),
            },
        };
        let cidr = Cidr { network, prefix };
        // `10.0.0.1/8` is a host written with a prefix: a typo for `10.0.0.1` or for
        // `10.0.0.0/8`, which trust very different peers.
        let start = cidr.first();
        if start != network {
            return Err(format!(
                "{s:?} has bits set past its /{prefix}; write the range as \"{start}/{prefix}\", or the one address as \"{network}\""
            ));
        }
        Ok(cidr)
    }
}

impl Cidr {
    /// The range's first address: the network with the bits past the prefix cleared.
    fn first(&self) -> IpAddr {
        match self.network {
            IpAddr::V4(net) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4((u32::from(net) & mask).into())
            }
            IpAddr::V6(net) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6((u128::from(net) & mask).into())
            }
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Cidr {
        s.parse().expect("valid range")
    }

    #[test]
    fn host_bits_past_the_prefix_and_spaces_are_refused_with_a_hint() {
        let e = "10.0.0.1/8".parse::<Cidr>().expect_err("host bits");
        assert!(
            e.contains("\"10.0.0.0/8\"") && e.contains("\"10.0.0.1\""),
            "{e}"
        );
        assert!("fd00::1/64".parse::<Cidr>().is_err());
        assert!("10.0.0.0 /8".parse::<Cidr>().is_err());
        assert!(" 10.0.0.0/8".parse::<Cidr>().is_err());
        assert!("10.0.0.0/+8".parse::<Cidr>().is_err());
        assert_eq!(cidr("10.0.0.0/8").to_string(), "10.0.0.0/8");
        assert_eq!(cidr("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert_eq!(cidr("10.0.0.1").to_string(), "10.0.0.1/32");
    }

    proptest::proptest! {
        /// Any text: no panic; a range accepted prints as text that reads back the same.
        #[test]
        fn any_range_text_parses_or_is_refused_and_round_trips(text in "[0-9a-f.:/ ]{0,24}") {
            if let Ok(c) = text.parse::<Cidr>() {
                proptest::prop_assert_eq!(c.to_string().parse::<Cidr>(), Ok(c));
            }
        }

        #[test]
        fn every_network_address_with_its_prefix_is_accepted(ip in proptest::prelude::any::<u32>(), prefix in 0u8..=32) {
            let c = Cidr { network: IpAddr::V4(ip.into()), prefix };
            let text = format!("{}/{prefix}", c.first());
            proptest::prop_assert!(text.parse::<Cidr>().is_ok(), "{}", text);
        }
    }

    #[test]
    fn ranges_hold_their_addresses_only() {
        let net = cidr("10.1.0.0/16");
        assert!(net.contains("10.1.200.3".parse().expect("ip")));
        assert!(!net.contains("10.2.0.1".parse().expect("ip")));
        assert!(cidr("127.0.0.2").contains("127.0.0.2".parse().expect("ip")));
        assert!(!cidr("127.0.0.2").contains("127.0.0.1".parse().expect("ip")));
        assert!(cidr("0.0.0.0/0").contains("203.0.113.9".parse().expect("ip")));
        assert!(cidr("::1/128").contains("::1".parse().expect("ip")));
        assert!(cidr("2001:db8::/32").contains("2001:db8:1::5".parse().expect("ip")));
        assert!(!cidr("2001:db8::/32").contains("2001:db9::5".parse().expect("ip")));
        assert!(cidr("10.0.0.0/8").contains("::ffff:10.9.9.9".parse().expect("ip")));
        assert!(!cidr("10.0.0.0/8").contains("::1".parse().expect("ip")));
    }

    #[test]
    fn bad_ranges_say_why() {
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("::/129".parse::<Cidr>().is_err());
        assert!("localhost".parse::<Cidr>().is_err());
        assert_eq!(cidr("10.0.0.0/8").to_string(), "10.0.0.0/8");
    }
}
