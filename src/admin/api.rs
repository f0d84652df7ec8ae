//! `GET /api/v1/pools`: every pool and backend with live counters, as JSON.
//!
//! The schema is documented in the README ("JSON API"). Counters are totals since the
//! backend first appeared (they survive reloads); rates are left to the reader, who
//! divides the difference of two polls by their interval, as the status page does.

use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::StrategyKind;
use crate::discovery::{self, resolver::FailureKind, stats::Stats};
use crate::json::JsonWriter;
use crate::metrics::{BackendStats, FrontendStats, DURATION_BUCKETS_US, PROTOCOLS};
use crate::shard::Sharded;
use crate::snapshot::{Backend, Pool, Snapshot};
use crate::state::write_routes;

/// Status-class keys, in counter order.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Buckets of one duration histogram, non-cumulative; the last is above every bound.
type Buckets = [u64; DURATION_BUCKETS_US.len() + 1];

fn sum<T>(shards: &Sharded<T>, read: impl Fn(&T) -> u64) -> u64 {
    shards.iter().map(read).sum()
}

/// The `/api/v1/pools` document for `snapshot`, with what discovery knows of each pool's
/// sources.
pub fn pools(snapshot: &Snapshot, frontend: &Sharded<FrontendStats>, sources: &Stats) -> String {
    let backends = snapshot.pools.iter().map(|p| p.backends.len()).sum::<usize>();
    let mut json = JsonWriter::with_capacity(512 + 640 * backends);
    json.begin_object();
    json.key("generation");
    json.u64(snapshot.generation);
    json.key("version");
    json.string(env!("CARGO_PKG_VERSION"));
    json.key("time_ms");
    json.u64(unix_millis());
    json.key("frontend");
    write_frontend(&mut json, frontend);
    json.key("pools");
    json.begin_array();
    for pool in &snapshot.pools {
        write_pool(&mut json, pool, sources);
    }
    json.end_array();
    json.end_object();
    json.finish()
}

/// The discovery sources of `pool`'s configured backends: what each last gave, when,
/// and how its lookups failed.
fn write_sources(json: &mut JsonWriter, pool: &Pool, sources: &Stats) {
    json.key("sources");
    json.begin_array();
    let mut keys: Vec<String> =
        pool.settings.backends.iter().filter(|b| b.is_discovered()).map(discovery::key).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let stats = sources.of(&key).unwrap_or_default();
        json.begin_object();
        json.key("source");
        json.string(&discovery::source_label(&key));
        json.key("endpoints");
        json.u64(stats.endpoints as u64);
        json.key("generation");
        json.u64(stats.generation);
        // The same on every instance that sees the same set: compare it across a fleet.
        json.key("hash");
        json.string(&format!("{:016x}", stats.hash));
        json.key("last_update_ms");
        json.u64(unix_ms(stats.last_update));
        json.key("last_change_ms");
        json.u64(unix_ms(stats.last_change));
        json.key("lookups");
        json.begin_object();
        json.key("ok");
        json.u64(stats.ok);
        json.key("failed");
        json.u64(stats.failed);
        json.end_object();
        json.key("errors");
        json.begin_object();
        for kind in FailureKind::ALL {
            json.key(kind.name());
            json.u64(stats.errors.get(&kind).copied().unwrap_or(0));
        }
        json.end_object();
        json.end_object();
    }
    json.end_array();
}

/// Milliseconds since the Unix epoch; 0 for never.
fn unix_ms(at: Option<SystemTime>) -> u64 {
    let since = at.and_then(|at| at.duration_since(UNIX_EPOCH).ok());
    since.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The `/api/v1/routes` document: the generation and the routes, each with its index.
pub fn routes(snapshot: &Snapshot) -> String {
    let mut json = JsonWriter::with_capacity(128 + 96 * snapshot.config.routes.len());
    json.begin_object();
    json.key("generation");
    json.u64(snapshot.generation);
    json.key("routes");
    write_routes(&mut json, &snapshot.config.routes, true);
    json.end_object();
    json.finish()
}

/// Milliseconds since the Unix epoch, so readers compute rates from the server's clock.
fn unix_millis() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

fn write_frontend(json: &mut JsonWriter, frontend: &Sharded<FrontendStats>) {
    json.begin_object();
    json.key("requests");
    json.begin_object();
    for (class, label) in CLASSES.iter().enumerate() {
        json.key(label);
        json.u64(sum(frontend, |s| s.responses(class)));
    }
    json.end_object();
    // Responses by protocol, for the status page's share of traffic.
    json.key("protocols");
    json.begin_object();
    for (index, protocol) in PROTOCOLS.iter().enumerate() {
        json.key(protocol);
        json.u64(sum(frontend, |s| (0..CLASSES.len()).map(|c| s.requests[index].get(c)).sum()));
    }
    json.end_object();
    json.key("connections_total");
    json.u64(sum(frontend, |s| s.connections_total.get()));
    let active: i64 = frontend.iter().map(|s| s.connections_active.load(Ordering::Relaxed)).sum();
    json.key("connections_active");
    json.u64(u64::try_from(active).unwrap_or(0));
    // Route policy since start: the status page shows these, /metrics has them too.
    json.key("policy");
    json.begin_object();
    json.key("denied");
    json.u64(sum(frontend, |s| s.denied[0].get()));
    json.key("redirects");
    json.u64(sum(frontend, |s| s.redirects.get()));
    json.key("body_too_large");
    json.u64(sum(frontend, |s| s.body_too_large.get()));
    json.end_object();
    json.end_object();
}

fn write_pool(json: &mut JsonWriter, pool: &Pool, sources: &Stats) {
    json.begin_object();
    json.key("name");
    json.string(&pool.name);
    json.key("strategy");
    json.string(strategy_name(pool.settings.strategy));
    write_sources(json, pool, sources);
    json.key("backends");
    json.begin_array();
    for backend in &pool.backends {
        write_backend(json, backend);
    }
    json.end_array();
    json.end_object();
}

/// The config-file name of a strategy.
fn strategy_name(kind: StrategyKind) -> &'static str {
    StrategyKind::NAMES
        .iter()
        .find(|name| StrategyKind::from_name(name) == Some(kind))
        .copied()
        .unwrap_or("unknown")
}

fn write_backend(json: &mut JsonWriter, backend: &Backend) {
    let stats = &backend.live.stats;
    let healthy = backend.live.is_healthy();
    json.begin_object();
    json.key("address");
    json.string(&backend.label);
    json.key("weight");
    json.u64(u64::from(backend.weight));
    // The SRV priority of a discovered endpoint, past 65535 when it is terminating.
    json.key("tier");
    json.u64(u64::from(backend.tier));
    // active, draining (set by the API) or leaving (removed, requests still in flight).
    json.key("state");
    json.string(backend.state.name());
    // Slow start ramps this from 10% to 100% of `weight`.
    json.key("effective_weight");
    json.f64(backend.effective_weight_milli() as f64 / 1000.0);
    json.key("idle_connections");
    json.u64(sum(stats, |s| s.idle_connections.load(Ordering::Relaxed)));
    json.key("healthy");
    json.bool(healthy);
    let status = backend.live.health.status();
    json.key("health");
    json.begin_object();
    json.key("state");
    json.string(status.state);
    json.key("reason");
    json.string(&status.reason);
    json.key("since_ms");
    let since_ms = status.since.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    json.u64(u64::try_from(since_ms).unwrap_or(u64::MAX));
    json.key("ejections");
    json.u64(u64::from(status.ejections));
    json.key("consecutive_failures");
    json.u64(u64::from(status.consecutive_failures));
    json.end_object();
    json.key("in_flight");
    json.u64(backend.live.in_flight.load(Ordering::Relaxed));
    json.key("requests");
    json.begin_object();
    for (class, label) in CLASSES.iter().enumerate() {
        json.key(label);
        json.u64(sum(stats, |s| s.requests.get(class)));
    }
    json.end_object();
    write_counters(json, stats);
    let buckets = buckets(stats);
    json.key("latency_ms");
    json.begin_object();
    json.key("p50");
    json.opt_f64(quantile_ms(&buckets, 0.5));
    json.key("p99");
    json.opt_f64(quantile_ms(&buckets, 0.99));
    json.end_object();
    json.end_object();
}

type Read = fn(&BackendStats) -> u64;

/// Plain counters, in document order.
const COUNTERS: [(&str, Read); 5] = [
    ("connections_opened", |s| s.connections_opened.get()),
    ("connections_reused", |s| s.connections_reused.get()),
    ("retries", |s| s.retries.get()),
    ("bytes_sent", |s| s.bytes_sent.get()),
    ("bytes_received", |s| s.bytes_received.get()),
];

/// Failure kinds, as in `weir_backend_failures_total{kind}`.
const FAILURES: [(&str, Read); 3] = [
    ("connect", |s| s.connect_failures.get()),
    ("timeout", |s| s.timeouts.get()),
    ("reset", |s| s.resets.get()),
];

fn write_counters(json: &mut JsonWriter, stats: &Sharded<BackendStats>) {
    for (name, read) in COUNTERS {
        json.key(name);
        json.u64(sum(stats, read));
    }
    json.key("failures");
    json.begin_object();
    for (kind, read) in FAILURES {
        json.key(kind);
        json.u64(sum(stats, read));
    }
    json.end_object();
}

fn buckets(stats: &Sharded<BackendStats>) -> Buckets {
    let mut buckets = [0; DURATION_BUCKETS_US.len() + 1];
    for (index, slot) in buckets.iter_mut().enumerate() {
        *slot = sum(stats, |s| s.duration.bucket(index));
    }
    buckets
}

/// Estimates quantile `q` (0..=1) in milliseconds from histogram buckets, interpolating
/// linearly inside the bucket that holds the rank, as Prometheus's `histogram_quantile`
/// does. Samples above the last bound report that bound. `None` without samples.
pub fn quantile_ms(buckets: &Buckets, q: f64) -> Option<f64> {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total as f64;
    let mut below = 0u64;
    for (index, &count) in buckets.iter().enumerate() {
        if count > 0 && (below + count) as f64 >= rank {
            let Some(&upper) = DURATION_BUCKETS_US.get(index) else { break };
            let lower = index.checked_sub(1).map_or(0, |i| DURATION_BUCKETS_US[i]);
            let fraction = (rank - below as f64) / count as f64;
            let micros = lower as f64 + (upper - lower) as f64 * fraction.clamp(0.0, 1.0);
            return Some(micros / 1000.0);
        }
        below += count;
    }
    DURATION_BUCKETS_US.last().map(|&bound| bound as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(samples: &[(usize, u64)]) -> Buckets {
        let mut buckets = [0; DURATION_BUCKETS_US.len() + 1];
        for &(index, count) in samples {
            buckets[index] = count;
        }
        buckets
    }

    #[test]
    fn empty_histogram_has_no_quantile() {
        assert_eq!(quantile_ms(&with(&[]), 0.5), None);
    }

    #[test]
    fn interpolates_inside_the_bucket() {
        // 100 samples in (0.5 ms, 1 ms]: the median sits half way.
        let buckets = with(&[(1, 100)]);
        assert_eq!(quantile_ms(&buckets, 0.5), Some(0.75));
        assert_eq!(quantile_ms(&buckets, 1.0), Some(1.0));
        // 90 fast, 10 in (50 ms, 100 ms]: p99 is 90% into the slow bucket.
        let buckets = with(&[(0, 90), (7, 10)]);
        assert_eq!(quantile_ms(&buckets, 0.5).map(|v| (v * 1000.0).round()), Some(278.0));
        assert_eq!(quantile_ms(&buckets, 0.99), Some(95.0));
    }

    #[test]
    fn overflow_reports_the_last_bound() {
        let buckets = with(&[(DURATION_BUCKETS_US.len(), 5)]);
        assert_eq!(quantile_ms(&buckets, 0.5), Some(10_000.0));
    }

    #[test]
    fn strategy_names_round_trip() {
        assert_eq!(strategy_name(StrategyKind::RoundRobin), "round_robin");
        assert_eq!(strategy_name(StrategyKind::Sticky), "sticky");
    }
}
