//! EndpointSlices to endpoints: every slice of a Service merged into one complete set.
//!
//! Readiness follows the EndpointSlice API's rules: a missing `ready` counts as ready, a
//! missing `serving` as `ready`, a missing `terminating` as not terminating. Only the
//! first address of an endpoint is used (the API says they are fungible and clients may
//! do so), and only `IPv4` and `IPv6` slices (an `FQDN` slice names hosts, not addresses).

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::discovery::v1::{EndpointPort, EndpointSlice};

use crate::config::backend::KubePort;
use crate::discovery::endpoint::canonical;
use crate::discovery::{Endpoint, Readiness};

/// The slices of one Service, by name: the watcher's view.
pub type Slices = BTreeMap<String, EndpointSlice>;

/// The complete endpoint set `slices` give for `port`, canonical, at most `limit`
/// endpoints (the lowest, in address order, so the choice is stable).
pub fn endpoints(slices: &Slices, port: KubePort, limit: usize) -> Vec<Endpoint> {
    let mut out = Vec::new();
    for slice in slices.values() {
        if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
            continue;
        }
        let Some(number) = slice.ports.iter().flatten().find_map(|p| number_of(p, port)) else {
            continue;
        };
        for endpoint in slice.endpoints.iter().flatten() {
            let Some(ip) = endpoint.addresses.first().and_then(|a| a.parse::<IpAddr>().ok()) else {
                continue;
            };
            let conditions = endpoint.conditions.as_ref();
            let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
            let serving = conditions.and_then(|c| c.serving).unwrap_or(ready);
            let terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
            out.push(Endpoint {
                ip,
                port: Some(number),
                weight: None,
                priority: 0,
                readiness: Readiness { ready, serving, terminating },
                zone: endpoint.zone.clone(),
            });
        }
    }
    let mut set = canonical(out);
    set.truncate(limit);
    set
}

/// The port number a slice's `port` entry gives for `wanted`, if it is the one: by name,
/// or by number. TCP only (weir speaks HTTP).
fn number_of(port: &EndpointPort, wanted: KubePort) -> Option<u16> {
    if port.protocol.as_deref().is_some_and(|protocol| protocol != "TCP") {
        return None;
    }
    let number = u16::try_from(port.port?).ok().filter(|&n| n != 0)?;
    let matches = match wanted {
        KubePort::Number(want) => number == want,
        KubePort::Name(..) => port.name.as_deref() == Some(wanted.text().as_str()),
    };
    matches.then_some(number)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(json: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn slices_merge_and_conditions_map_to_readiness() {
        let a = slice(serde_json::json!({
            "metadata": {"name": "api-a"}, "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [
                {"addresses": ["10.0.0.2"], "zone": "z1"},
                {"addresses": ["10.0.0.1"],
                 "conditions": {"ready": false, "serving": true, "terminating": true}},
            ]
        }));
        let b = slice(serde_json::json!({
            "metadata": {"name": "api-b"}, "addressType": "IPv4",
            "ports": [{"name": "metrics", "port": 9090}],
            "endpoints": [{"addresses": ["10.0.0.3"]}]
        }));
        let fqdn = slice(serde_json::json!({
            "metadata": {"name": "api-c"}, "addressType": "FQDN",
            "ports": [{"name": "http", "port": 8080}],
            "endpoints": [{"addresses": ["api.example"]}]
        }));
        let slices: Slices =
            [("a".into(), a), ("b".into(), b), ("c".into(), fqdn)].into_iter().collect();
        let set = endpoints(&slices, KubePort::name("http").unwrap(), 256);
        assert_eq!(set.len(), 2, "slice b has no `http` port; slice c is FQDN: {set:?}");
        assert_eq!(set[0].ip.to_string(), "10.0.0.1");
        let leaving = Readiness { ready: false, serving: true, terminating: true };
        assert_eq!(set[0].readiness, leaving);
        assert_eq!((set[1].port, set[1].readiness), (Some(8080), Readiness::READY));
        assert_eq!(set[1].zone.as_deref(), Some("z1"));
        let by_number = endpoints(&slices, KubePort::Number(9090), 256);
        assert_eq!(by_number.len(), 1);
        assert_eq!(endpoints(&slices, KubePort::Number(8080), 1).len(), 1, "the limit holds");
    }
}
