//! Backends for strategy tests, without a snapshot or DNS.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::config::BackendAddress;
use crate::snapshot::{Backend, BackendLive, BackendState};

/// One backend at `label` (`HOST:PORT`) with `weight` and fresh live state.
pub fn backend(label: &str, weight: u32) -> Backend {
    let address = BackendAddress::parse(label).expect("test address");
    let live = Arc::new(BackendLive::new(u64::from(weight), 1));
    let label = address.authority();
    let state = BackendState::Active;
    Backend { label, address, resolved: Vec::new(), weight, tier: 0, serving: true, state, live }
}

/// Backends `10.0.0.I:80` with the given weights.
pub fn backends(weights: &[u32]) -> Vec<Backend> {
    weights.iter().enumerate().map(|(i, &w)| backend(&format!("10.0.0.{i}:80"), w)).collect()
}

/// The same backends (same live state) with new weights, as a reload builds them.
pub fn reweighted(old: &[Backend], weights: &[u32]) -> Vec<Backend> {
    old.iter()
        .zip(weights)
        .map(|(b, &weight)| Backend {
            address: b.address.clone(),
            label: b.label.clone(),
            resolved: Vec::new(),
            weight,
            tier: b.tier,
            serving: b.serving,
            state: b.state,
            live: Arc::clone(&b.live),
        })
        .collect()
}

/// Marks backend `index` healthy or not.
pub fn set_healthy(backends: &[Backend], index: usize, healthy: bool) {
    backends[index].live.healthy.store(healthy, Ordering::Relaxed);
}

/// How many of `picks` went to each backend.
pub fn counts(len: usize, picks: impl IntoIterator<Item = Option<usize>>) -> Vec<u64> {
    let mut counts = vec![0; len];
    for index in picks {
        counts[index.expect("a pick")] += 1;
    }
    counts
}
