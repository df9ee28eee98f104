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
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let network: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{addr:?} is not an IP address"))?;
        let network = network.to_canonical();
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.trim().parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("/{p} is not a prefix length from 0 to {max}")),
            },
        };
        Ok(Cidr { network, prefix })
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
