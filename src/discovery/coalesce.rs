//! The throttle between discovery sources and snapshot rebuilds.
//!
//! Sources [`Sink::push`] complete endpoint sets; a set pushed while an earlier one of the
//! same name waits replaces it (it is complete, so nothing is lost), and [`run`] hands
//! whatever waits to the control plane in one rebuild, at most once per
//! [`MIN_REBUILD_INTERVAL`]. A source that changes 50 times a second therefore costs at
//! most 10 rebuilds a second, and a change after a quiet spell is applied at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::time::{sleep_until, Instant};

use super::{Endpoint, Host};

/// Shortest time between two rebuilds for discovery: 10 a second at most (the issue's
/// bound; Traefik's default throttle is 2s). Short enough that a change is applied well
/// within the 1s that tests and operators expect, long enough that a rebuild (which
/// walks every backend of every pool) cannot eat a core under a flapping source.
pub const MIN_REBUILD_INTERVAL: Duration = Duration::from_millis(100);

/// Where sources hand their sets over, and the counters of what happened to them.
#[derive(Debug, Default)]
pub struct Sink {
    /// The newest set of each name not applied yet. Bounded by the number of names the
    /// config discovers: a push replaces the waiting set of its name.
    pending: Mutex<HashMap<String, Vec<Endpoint>>>,
    wake: Notify,
    /// Sets pushed.
    pub updates: AtomicU64,
    /// Sets replaced by a newer one of the same name before they were applied.
    pub coalesced: AtomicU64,
    /// Rebuilds made for discovery.
    pub rebuilds: AtomicU64,
    /// What the Kubernetes watches met.
    pub kubernetes: super::kubernetes::Counters,
}

impl Sink {
    /// Hands over the complete endpoint set of `name` (a key of
    /// [`Addresses`](super::Addresses)).
    pub fn push(&self, name: String, set: Vec<Endpoint>) {
        self.updates.fetch_add(1, Relaxed);
        if let Ok(mut pending) = self.pending.lock() {
            if pending.insert(name, set).is_some() {
                self.coalesced.fetch_add(1, Relaxed);
            }
        }
        self.wake.notify_one();
    }

    /// Takes every waiting set.
    fn take(&self) -> Vec<(String, Vec<Endpoint>)> {
        let Ok(mut pending) = self.pending.lock() else { return Vec::new() };
        pending.drain().collect()
    }
}

/// Applies what sources push, at most once per [`MIN_REBUILD_INTERVAL`], until the
/// balancer starts draining.
pub async fn run(host: Arc<dyn Host>, sink: Arc<Sink>) {
    let mut shutdown: watch::Receiver<bool> = host.shutdown();
    let mut last: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|draining| *draining) => return,
            () = sink.wake.notified() => {}
        }
        if let Some(last) = last {
            // Sets pushed meanwhile wait, and are applied together.
            tokio::select! {
                _ = shutdown.wait_for(|draining| *draining) => return,
                () = sleep_until(last + MIN_REBUILD_INTERVAL) => {}
            }
        }
        let sets = sink.take();
        if sets.is_empty() {
            continue;
        }
        last = Some(Instant::now());
        host.rediscovered(sets);
        // Counted once swapped: a reader who sees the count sees the snapshot.
        sink.rebuilds.fetch_add(1, Relaxed);
    }
}

/// Appends the sink's counters to `/metrics`.
pub fn render(sink: &Sink, out: &mut String) {
    let counters = [
        (
            "weir_discovery_updates_total",
            "Endpoint sets discovery sources handed over.",
            &sink.updates,
        ),
        (
            "weir_discovery_updates_coalesced_total",
            "Endpoint sets replaced by a newer one of the same name before a rebuild applied them.",
            &sink.coalesced,
        ),
        (
            "weir_discovery_rebuilds_total",
            "Snapshot rebuilds made for discovery (at most 10 a second).",
            &sink.rebuilds,
        ),
    ];
    write_counters(out, &counters);
    super::kubernetes::render(&sink.kubernetes, out);
}

/// Appends unlabelled counters: (name, help, value).
pub fn write_counters(out: &mut String, counters: &[(&str, &str, &AtomicU64)]) {
    use std::fmt::Write as _;
    for (name, help, value) in counters {
        crate::metrics::header(out, name, "counter", help);
        let _ = writeln!(out, "{name} {}", value.load(Relaxed));
    }
}
