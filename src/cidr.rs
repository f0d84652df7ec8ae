//! Address blocks in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`, or one address), for
//! `trusted_proxies` and the `allow`/`deny` lists.

use std::fmt;
use std::net::IpAddr;

/// Most blocks in one list. A list is scanned for each request it applies to; a few
/// hundred cover a cloud provider's published ranges, and a longer list belongs in a
/// firewall, which matches it in the kernel.
pub const MAX_BLOCKS: usize = 1024;

/// One block: a network address with no host bits set, and its prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `A.B.C.D/N`, `IPV6/N`, or a bare address (a block of one).
    ///
    /// # Errors
    ///
    /// A message saying what is wrong, naming the network when host bits are set.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address.parse().map_err(|_| {
            format!("\"{text}\" is not an address or a block such as \"10.0.0.0/8\"")
        })?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(digits) => match digits.parse::<u8>() {
                Ok(n) if n <= max && !digits.starts_with('+') => n,
                _ => return Err(format!("\"{text}\": the prefix length must be 0 to {max}")),
            },
        };
        let cidr = Cidr { network, prefix };
        if cidr.masked(network) != network {
            let cidr = Cidr { network: cidr.masked(network), prefix };
            return Err(format!("\"{text}\" has host bits set: write \"{cidr}\""));
        }
        Ok(cidr)
    }

    /// Whether `ip` is in the block. An IPv4-mapped IPv6 address counts as IPv4 (a
    /// dual-stack listener reports IPv4 clients so).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.network.is_ipv4() && self.masked(ip) == self.network
    }

    /// `ip` with the bits past the prefix cleared; `ip` is of the block's family.
    fn masked(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v4) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                IpAddr::from(std::net::Ipv4Addr::from(u32::from(v4) & mask))
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                IpAddr::from(std::net::Ipv6Addr::from(u128::from(v6) & mask))
            }
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// Whether any block of `list` holds `ip`.
pub fn any_contains(list: &[Cidr], ip: IpAddr) -> bool {
    list.iter().any(|cidr| cidr.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("test address")
    }

    #[test]
    fn blocks_hold_their_addresses_only() {
        let block = Cidr::parse("10.0.0.0/8").expect("parses");
        assert!(block.contains(ip("10.255.1.2")));
        assert!(!block.contains(ip("11.0.0.0")));
        assert!(block.contains(ip("::ffff:10.1.2.3")), "IPv4-mapped counts as IPv4");
        assert!(!block.contains(ip("::a01:203")), "IPv4-compatible does not");
        let one = Cidr::parse("127.0.0.1").expect("parses");
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        let all = Cidr::parse("0.0.0.0/0").expect("parses");
        assert!(all.contains(ip("203.0.113.7")) && !all.contains(ip("::1")));
        let v6 = Cidr::parse("2001:db8::/32").expect("parses");
        assert!(v6.contains(ip("2001:db8:ffff::1")) && !v6.contains(ip("2001:db9::1")));
        assert!(Cidr::parse("::/0").expect("parses").contains(ip("::1")));
        assert_eq!(v6.to_string(), "2001:db8::/32");
    }

    #[test]
    fn bad_blocks_say_why() {
        let error = Cidr::parse("10.1.2.3/8").expect_err("host bits");
        assert_eq!(error, "\"10.1.2.3/8\" has host bits set: write \"10.0.0.0/8\"");
        for bad in ["10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0.0/+8", "10.0.0/8", "x", ""] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }
}
