//! `[milter] trusted_networks`: address ranges written `ADDRESS/PREFIX`.

use std::net::IpAddr;

use crate::error::{MilterError, Result};

/// One network, `10.0.0.0/8` or `2001:db8::/32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// Parses `ADDRESS/PREFIX` (a bare address is a /32 or /128).
    ///
    /// # Errors
    /// [`MilterError::Network`] when it is not a network.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || MilterError::Network(s.to_owned());
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().map_err(|_| bad())?,
            None => max,
        };
        if prefix > max {
            return Err(bad());
        }
        Ok(Self { addr, prefix })
    }

    /// Whether `ip` lies in the network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => mask_eq(
                u128::from(u32::from(net)),
                u128::from(u32::from(ip)),
                32,
                self.prefix,
            ),
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                mask_eq(u128::from(net), u128::from(ip), 128, self.prefix)
            }
            _ => false,
        }
    }
}

fn mask_eq(a: u128, b: u128, bits: u32, prefix: u8) -> bool {
    let shift = bits - u32::from(prefix);
    shift >= bits || (a >> shift) == (b >> shift)
}

/// Reads an address as MTAs write `{client_addr}`: `192.0.2.1`, `IPv6:2001:db8::1`, `[::1]`.
pub fn parse_client_addr(raw: &str) -> Option<IpAddr> {
    let raw = raw.trim();
    let raw = raw.strip_prefix("IPv6:").unwrap_or(raw);
    let raw = raw
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(raw);
    let raw = raw.strip_prefix("IPv6:").unwrap_or(raw);
    raw.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn networks_match_their_addresses_only() {
        let n = Network::parse("10.1.0.0/16").expect("net");
        assert!(n.contains(ip("10.1.200.3")));
        assert!(!n.contains(ip("10.2.0.1")));
        assert!(n.contains(ip("::ffff:10.1.0.9")));
        let all = Network::parse("0.0.0.0/0").expect("net");
        assert!(all.contains(ip("192.0.2.1")));
        let v6 = Network::parse("2001:db8::/32").expect("net");
        assert!(v6.contains(ip("2001:db8:1::5")));
        assert!(!v6.contains(ip("10.0.0.1")));
        assert!(Network::parse("::1").expect("net").contains(ip("::1")));
        for bad in ["", "10.0.0.0/33", "x/8", "10.0.0.0/-1"] {
            assert!(Network::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn client_addresses_in_mta_forms_parse() {
        assert_eq!(parse_client_addr("192.0.2.1"), Some(ip("192.0.2.1")));
        assert_eq!(
            parse_client_addr("IPv6:2001:db8::1"),
            Some(ip("2001:db8::1"))
        );
        assert_eq!(parse_client_addr("[IPv6:::1]"), Some(ip("::1")));
        assert_eq!(parse_client_addr("unknown"), None);
    }
}
