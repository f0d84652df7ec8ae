//! Tiers and source readiness in a snapshot built from a discovered endpoint set: only
//! the lowest tier with a usable backend takes new requests, terminating endpoints only
//! when nothing else serves, and an endpoint that does not serve never.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::{Registry, Snapshot};
use crate::balance::PickRequest;
use crate::config::{BackendAddress, BackendConfig, Config, PoolConfig, Resolve, StrategyKind};
use crate::discovery::{key, Endpoint, Readiness};
use crate::health::select;

fn srv() -> BackendConfig {
    let address = BackendAddress::parse("_http._tcp.api.test:1").unwrap();
    BackendConfig {
        address: BackendAddress { port: 0, ..address },
        weight: 1,
        resolve: Resolve::Srv,
    }
}

fn endpoint(last: u8, priority: u16, serving: bool, terminating: bool) -> Endpoint {
    Endpoint {
        port: Some(80),
        weight: Some(1),
        priority,
        readiness: Readiness { ready: serving && !terminating, serving, terminating },
        ..Endpoint::address([10, 0, 0, last].into())
    }
}

fn build(
    registry: &mut Registry,
    config: &Arc<Config>,
    set: Vec<Endpoint>,
    generation: u64,
) -> Snapshot {
    registry.discovered_mut().insert(key(&srv()), set);
    registry.build(config, generation).unwrap().publish()
}

/// The labels 200 picks land on.
fn picked(snapshot: &Snapshot) -> BTreeSet<String> {
    let pool = &snapshot.pools[0];
    let pick = || select::choose(pool, &PickRequest::default()).ok().map(|(i, _)| i);
    (0..200).filter_map(|_| pick()).map(|i| pool.backends[i].label.clone()).collect()
}

fn labels(list: &[u8]) -> BTreeSet<String> {
    list.iter().map(|last| format!("10.0.0.{last}:80")).collect()
}

fn set_healthy(snapshot: &Snapshot, last: u8, healthy: bool) {
    let label = format!("10.0.0.{last}:80");
    let backend = snapshot.pools[0].backends.iter().find(|b| b.label == label).unwrap();
    backend.live.healthy.store(healthy, Relaxed);
}

#[test]
fn the_lowest_serving_tier_takes_the_requests_and_terminating_ones_come_last() {
    let mut config = Config::default();
    config.pools.push(PoolConfig::new("web", StrategyKind::RoundRobin, vec![srv()]));
    let config = Arc::new(config);
    let mut registry = Registry::new(1);
    let set = vec![
        endpoint(1, 10, true, false),
        endpoint(2, 10, true, false),
        endpoint(3, 20, true, false),
        endpoint(4, 0, true, true),   // terminating, still serving
        endpoint(5, 0, false, false), // not serving
    ];
    let snapshot = build(&mut registry, &config, set.clone(), 1);
    assert!(snapshot.pools[0].tiered);
    assert_eq!(picked(&snapshot), labels(&[1, 2]), "priority 10 only");
    let not_serving = snapshot.pools[0].backends.iter().find(|b| b.label == "10.0.0.5:80").unwrap();
    assert!(!not_serving.live.is_healthy());
    assert_eq!(not_serving.live.health.machine().state_name(), "not_serving");
    // All of priority 10 down: priority 20, then the terminating endpoint.
    set_healthy(&snapshot, 1, false);
    set_healthy(&snapshot, 2, false);
    assert_eq!(picked(&snapshot), labels(&[3]), "falls to the next priority");
    set_healthy(&snapshot, 3, false);
    assert_eq!(picked(&snapshot), labels(&[4]), "terminating, as nothing else serves");
    set_healthy(&snapshot, 1, true);
    assert_eq!(picked(&snapshot), labels(&[1]), "back to the lowest priority");
    // A retry after 1 failed (still healthy) goes to the next tier, and leaves the
    // pool's tier alone.
    let pool = &snapshot.pools[0];
    let first = select::choose(pool, &PickRequest::default()).unwrap().0;
    set_healthy(&snapshot, 3, true);
    let retry = select::pick(pool, &PickRequest::default(), &[first]).unwrap().0;
    assert_eq!(pool.backends[retry].label, "10.0.0.3:80", "priority 20 takes the retry");
    assert_eq!(picked(&snapshot), labels(&[1]), "new requests stay in priority 10");
    // The source says 5 serves again: one more flag of the health machine, cleared.
    let mut set = set;
    set[4] = endpoint(5, 10, true, false);
    let snapshot = build(&mut registry, &config, set, 2);
    assert_eq!(picked(&snapshot), labels(&[1, 5]));
}
