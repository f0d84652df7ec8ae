//! How a received `X-Forwarded-For` is treated, and the client address it names when
//! the peer is a trusted proxy (nginx's `real_ip_recursive on`, HAProxy's and Envoy's
//! trusted hops).

use std::net::{IpAddr, SocketAddr};

use super::fields::{self, Name};
use crate::cidr::{self, Cidr};

/// What weir does with the `X-Forwarded-For` fields a request brings.
#[derive(Clone, Copy, Debug)]
pub enum Trust<'a> {
    /// Keep them and append the peer, from any peer: weir's behaviour without
    /// `trusted_proxies`, and nginx's `$proxy_add_x_forwarded_for`.
    Everyone,
    /// The peer is not a trusted proxy: drop them and send the peer's address alone.
    Replace,
    /// The peer is a trusted proxy: keep them, append the peer, and take the client
    /// address from them, skipping these trusted blocks from the right.
    Proxy(&'a [Cidr]),
}

/// The client address that the `X-Forwarded-For` fields of `headers` name, read from
/// the right: the first address not in `trusted`; when every one is trusted, the
/// leftmost; an entry that is not an address ends the walk at the address to its right
/// (what a trusted hop vouched for, as nginx does). `None` when no entry is an address.
pub(crate) fn client(headers: &[httparse::Header<'_>], trusted: &[Cidr]) -> Option<IpAddr> {
    let mut found = None;
    let forwarded = |h: &&httparse::Header<'_>| Name::of(h.name.as_bytes()) == Name::XForwardedFor;
    // Bounded by the head's size: each entry is at least its comma.
    for header in headers.iter().rev().filter(forwarded) {
        for entry in header.value.rsplit(|&b| b == b',') {
            let entry = fields::trim(entry);
            if entry.is_empty() {
                continue;
            }
            let Some(ip) = address(entry) else {
                return found;
            };
            found = Some(ip);
            if !cidr::any_contains(trusted, ip) {
                return found;
            }
        }
    }
    found
}

/// An entry as an address: `203.0.113.7`, `2001:db8::1`, or either with a port
/// (`203.0.113.7:4711`, `[2001:db8::1]:4711`), as some proxies write them.
fn address(entry: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(entry).ok()?;
    text.parse::<IpAddr>()
        .or_else(|_| text.parse::<SocketAddr>().map(|addr| addr.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(values: &[&str], trusted: &[&str]) -> Option<String> {
        let headers: Vec<httparse::Header<'_>> = values
            .iter()
            .map(|value| httparse::Header { name: "X-Forwarded-For", value: value.as_bytes() })
            .chain(std::iter::once(httparse::Header { name: "X-Other", value: b"9.9.9.9" }))
            .collect();
        let trusted: Vec<Cidr> = trusted.iter().map(|t| Cidr::parse(t).expect("block")).collect();
        client(&headers, &trusted).map(|ip| ip.to_string())
    }

    #[test]
    fn the_rightmost_untrusted_address_is_the_client() {
        let trusted = ["10.0.0.0/8"];
        assert_eq!(walk(&["203.0.113.7, 10.0.0.2"], &trusted).as_deref(), Some("203.0.113.7"));
        // A client-forged entry left of the real one is not believed.
        let forged = ["1.1.1.1, 203.0.113.7", "10.0.0.2"];
        assert_eq!(walk(&forged, &trusted).as_deref(), Some("203.0.113.7"));
        assert_eq!(walk(&["10.0.0.3,10.0.0.2"], &trusted).as_deref(), Some("10.0.0.3"));
        assert_eq!(walk(&["junk, 10.0.0.2"], &trusted).as_deref(), Some("10.0.0.2"));
        assert_eq!(walk(&["junk"], &trusted), None);
        assert_eq!(walk(&[], &trusted), None);
        let ports = ["[2001:db8::7]:4711, 203.0.113.9:80 , ,"];
        assert_eq!(walk(&ports, &trusted).as_deref(), Some("203.0.113.9"));
        assert_eq!(walk(&["::ffff:203.0.113.7"], &trusted).as_deref(), Some("203.0.113.7"));
    }
}
