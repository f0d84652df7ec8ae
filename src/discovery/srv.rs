//! `resolve = "srv"`: an SRV name's records, each target's A and AAAA addresses, as one
//! endpoint set (RFC 2782).
//!
//! Each address of a target becomes an endpoint with the record's port, priority and
//! weight. A pool sends new requests to its lowest priority that has a usable backend,
//! and falls to the next priority when all of that one are down (unhealthy, ejected or
//! not serving), as HAProxy and Envoy do. Weights map to weir weights one to one, except
//! that weight 0 becomes 1: RFC 2782 gives a weight-0 target "a very small chance" when
//! others weigh more, and an even share when all weigh 0, which weight 1 gives in both
//! cases for the usual weights (10 and up).
//!
//! A lookup is all or nothing: if the SRV query fails, or any target's A and AAAA
//! queries both fail, the whole answer is a failure and the last set stays (a partial
//! answer would drop healthy targets). A target with no address (NXDOMAIN) is left out.

use std::collections::BTreeSet;

use futures_util::future::join_all;

use super::endpoint::{canonical, Endpoint, Readiness};
use super::resolver::{lower_ttl, Failure, Resolver};
use super::MAX_ADDRESSES;

/// Most SRV records used per name (the lowest priorities first): each target costs two
/// queries per lookup, so the bound caps what one answer makes weir send.
pub const MAX_TARGETS: usize = 64;

/// What a lookup of an SRV name found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SrvAnswer {
    /// The endpoints, canonical, at most [`MAX_ADDRESSES`].
    pub endpoints: Vec<Endpoint>,
    /// The lowest TTL of the SRV records and the target addresses used.
    pub ttl: Option<u32>,
}

/// weir's weight for an SRV weight: the same, with 0 as 1 (see the module docs).
pub fn weight_of(srv_weight: u16) -> u32 {
    u32::from(srv_weight.max(1))
}

/// Looks `name` up: its SRV records, then every target's addresses at once.
pub async fn lookup(resolver: &Resolver, name: &str) -> Result<SrvAnswer, Failure> {
    let found = resolver.srv(name).await?;
    let mut records = found.records;
    records.sort();
    records.truncate(MAX_TARGETS);
    let targets: Vec<&str> = {
        let unique: BTreeSet<&str> = records.iter().map(|r| r.3.as_str()).collect();
        unique.into_iter().collect()
    };
    let lookups = join_all(targets.iter().map(|target| resolver.lookup(target))).await;
    let mut ttl = found.ttl;
    let mut addresses = Vec::with_capacity(targets.len());
    for (target, lookup) in targets.iter().zip(lookups) {
        let mut ips = Vec::new();
        let mut failed = None;
        for family in [lookup.v4, lookup.v6] {
            match family {
                Ok(found) => {
                    ttl = lower_ttl(ttl, found.ttl);
                    ips.extend(found.addrs);
                }
                Err(failure) => failed = Some(failure),
            }
        }
        if let (true, Some(failure)) = (ips.is_empty(), failed) {
            let text = format!("target {target}: {failure}");
            return Err(Failure::new(failure.kind, text));
        }
        addresses.push((*target, ips));
    }
    let mut endpoints = Vec::new();
    for (priority, weight, port, target) in &records {
        let ips = addresses.iter().find(|(name, _)| name == target).map(|(_, ips)| ips);
        for ip in ips.into_iter().flatten() {
            endpoints.push(Endpoint {
                ip: *ip,
                port: Some(*port),
                weight: Some(weight_of(*weight)),
                priority: *priority,
                readiness: Readiness::READY,
                zone: None,
            });
        }
    }
    let mut endpoints = canonical(endpoints);
    endpoints.truncate(MAX_ADDRESSES);
    Ok(SrvAnswer { endpoints, ttl })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_map_one_to_one_and_zero_keeps_a_small_chance() {
        assert_eq!(weight_of(0), 1);
        assert_eq!(weight_of(1), 1);
        assert_eq!(weight_of(60), 60);
        assert_eq!(weight_of(u16::MAX), 65_535);
    }
}
