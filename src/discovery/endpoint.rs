//! The one shape every discovery source hands over: the **complete** set of endpoints it
//! knows for one name (never a delta), each with its address, port, weight, priority,
//! readiness and zone. weir diffs a set against the running snapshot by identity
//! (`IP:PORT`), so a source only says what exists now.
//!
//! Readiness follows Kubernetes' EndpointSlice conditions, which Envoy's EDS health flags
//! mirror: `serving` says whether the endpoint answers at all (it feeds the backend's one
//! health state machine as one more flag, beside probes and passive ejection), and
//! `terminating` puts a serving endpoint in the last priority tier, so it gets new
//! requests only when nothing else in the pool serves (Traefik #12417). DNS endpoints are
//! always ready and serving.

use std::net::{IpAddr, SocketAddr};

/// Tier offset of a terminating endpoint: above every SRV priority (a `u16`), so a
/// terminating endpoint comes after every endpoint that is not, whatever its priority.
pub const TERMINATING_TIER: u32 = 1 << 16;

/// What a source says of an endpoint's readiness.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Readiness {
    /// Ready for traffic (Kubernetes: serving and not terminating).
    pub ready: bool,
    /// Answers requests, terminating or not.
    pub serving: bool,
    /// Shutting down.
    pub terminating: bool,
}

impl Readiness {
    /// An endpoint in service: what every DNS answer is.
    pub const READY: Readiness = Readiness { ready: true, serving: true, terminating: false };
}

/// One endpoint of a set.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// Its address.
    pub ip: IpAddr,
    /// Its port; `None` takes the configured backend's (A and AAAA records carry none).
    pub port: Option<u16>,
    /// Its weight; `None` takes the configured backend's.
    pub weight: Option<u32>,
    /// Lower is preferred (SRV priority); 0 when the source has no notion of it.
    pub priority: u16,
    /// Readiness, as the source reports it.
    pub readiness: Readiness,
    /// Zone, where the source knows it (part of the set and its hash; not used to route
    /// yet).
    pub zone: Option<String>,
}

impl Endpoint {
    /// An address from an A or AAAA record: the backend's port and weight, ready.
    pub fn address(ip: IpAddr) -> Endpoint {
        Endpoint {
            ip,
            port: None,
            weight: None,
            priority: 0,
            readiness: Readiness::READY,
            zone: None,
        }
    }

    /// The tier the endpoint is balanced in: its priority, after every non-terminating
    /// endpoint when it is terminating. A pool sends new requests only to its lowest tier
    /// that has a usable backend.
    pub fn tier(&self) -> u32 {
        let terminating = if self.readiness.terminating { TERMINATING_TIER } else { 0 };
        u32::from(self.priority) + terminating
    }

    /// Its socket address, with `port` where the endpoint has none.
    pub fn socket(&self, port: u16) -> SocketAddr {
        SocketAddr::new(self.ip, self.port.unwrap_or(port))
    }
}

/// Puts a set in its canonical order (address, then port) with one endpoint per address
/// and port (the first in priority order), so equal sets compare and hash equal whatever
/// order the source listed them in.
pub fn canonical(mut endpoints: Vec<Endpoint>) -> Vec<Endpoint> {
    endpoints.sort_by_key(|e| (e.ip, e.port, e.priority));
    endpoints.dedup_by(|later, first| (later.ip, later.port) == (first.ip, first.port));
    endpoints
}

/// A hash of a canonical set that is the same in every weir process and version that
/// sees the same set (FNV-1a over a fixed text form, not std's seeded hasher), so
/// operators can compare instances at a glance.
pub fn set_hash(endpoints: &[Endpoint]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |text: &str| {
        for byte in text.bytes() {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    };
    for e in endpoints {
        let r = e.readiness;
        let port = e.port.map_or_else(|| "-".to_string(), |port| port.to_string());
        let weight = e.weight.map_or_else(|| "-".to_string(), |weight| weight.to_string());
        let zone = e.zone.as_deref().unwrap_or("-");
        let flags = [r.ready, r.serving, r.terminating].map(u8::from);
        feed(&format!("{} {port} {weight} {} {flags:?} {zone}\n", e.ip, e.priority));
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ip: &str, port: u16, priority: u16) -> Endpoint {
        Endpoint { port: Some(port), priority, ..Endpoint::address(ip.parse().unwrap()) }
    }

    #[test]
    fn equal_sets_in_any_order_hash_equal_and_a_change_changes_the_hash() {
        let a = canonical(vec![at("10.0.0.2", 80, 0), at("10.0.0.1", 80, 1)]);
        let b = canonical(vec![at("10.0.0.1", 80, 1), at("10.0.0.2", 80, 0)]);
        assert_eq!(a, b);
        assert_eq!(set_hash(&a), set_hash(&b));
        let c = canonical(vec![at("10.0.0.1", 80, 0), at("10.0.0.2", 80, 0)]);
        assert_ne!(set_hash(&a), set_hash(&c), "a priority changed");
        // Pinned: the hash must not change between processes or versions.
        assert_eq!(set_hash(&[]), 0xcbf2_9ce4_8422_2325);
    }

    #[test]
    fn one_endpoint_per_address_and_port_and_terminating_ones_come_last() {
        let set = canonical(vec![at("10.0.0.1", 80, 5), at("10.0.0.1", 80, 1)]);
        assert_eq!(set, [at("10.0.0.1", 80, 1)], "the preferred priority is kept");
        let mut leaving = at("10.0.0.1", 80, 0);
        leaving.readiness = Readiness { ready: false, serving: true, terminating: true };
        assert!(leaving.tier() > at("10.0.0.2", 80, u16::MAX).tier());
    }
}
