//! What discovery knows of each source (one per discovered name), for `/metrics` and
//! `/api/v1/pools`: lookups by result, errors by kind, endpoints in use, the generation
//! (how many times the set changed), when it last updated and changed, and the set's
//! hash. Updated once per lookup on the `weir-dns` thread, so a mutex is cheap enough.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use super::endpoint::{set_hash, Endpoint};
use super::resolver::FailureKind;
use super::{is_kubernetes, source_label, SRV_PREFIX};
use crate::metrics::{escape, header};

/// What is known of one source.
#[derive(Clone, Debug, Default)]
pub struct SourceStats {
    /// Lookups where every query answered.
    pub ok: u64,
    /// Lookups where a query failed or nothing usable was found.
    pub failed: u64,
    /// Failures by kind.
    pub errors: BTreeMap<FailureKind, u64>,
    /// Endpoints in use (the last known while lookups fail).
    pub endpoints: usize,
    /// Times the set changed (its first set included).
    pub generation: u64,
    /// [`set_hash`] of the set in use.
    pub hash: u64,
    /// When a lookup last gave a set (changed or not).
    pub last_update: Option<SystemTime>,
    /// When the set last changed.
    pub last_change: Option<SystemTime>,
}

/// Counters of every discovered name, in name order.
#[derive(Debug, Default)]
pub struct Stats {
    names: Mutex<BTreeMap<String, SourceStats>>,
}

impl Stats {
    /// A lookup of `host` gave `endpoints` (`changed` from the last set); `partial` is
    /// the kind of a failed half (one address family).
    pub fn found(
        &self,
        host: &str,
        partial: Option<FailureKind>,
        endpoints: &[Endpoint],
        changed: bool,
    ) {
        let Ok(mut names) = self.names.lock() else { return };
        let stats = names.entry(host.to_string()).or_default();
        match partial {
            None => stats.ok += 1,
            Some(kind) => {
                stats.failed += 1;
                *stats.errors.entry(kind).or_default() += 1;
            }
        }
        let now = SystemTime::now();
        stats.last_update = Some(now);
        if changed {
            stats.generation += 1;
            stats.last_change = Some(now);
            stats.hash = set_hash(endpoints);
        }
        stats.endpoints = endpoints.len();
    }

    /// A lookup of `host` failed (or found nothing): `kept` endpoints stay in use.
    pub fn failed(&self, host: &str, kind: FailureKind, kept: usize) {
        let Ok(mut names) = self.names.lock() else { return };
        let stats = names.entry(host.to_string()).or_default();
        stats.failed += 1;
        *stats.errors.entry(kind).or_default() += 1;
        stats.endpoints = kept;
        if stats.generation == 0 {
            stats.hash = set_hash(&[]);
        }
    }

    /// What is known of `host`, if it is discovered.
    pub fn of(&self, host: &str) -> Option<SourceStats> {
        self.names.lock().ok()?.get(host).cloned()
    }

    /// Forgets the names for which `keep` is false (removed from the config).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        if let Ok(mut names) = self.names.lock() {
            names.retain(|host, _| keep(host));
        }
    }

    /// Appends `weir_dns_lookups_total{host,result}`, `weir_dns_addresses{host}` and the
    /// `weir_discovery_*{source}` series; nothing when no backend is discovered.
    pub fn render(&self, out: &mut String) {
        let Ok(names) = self.names.lock() else {
            return;
        };
        if names.is_empty() {
            return;
        }
        let name = "weir_dns_lookups_total";
        header(out, name, "counter", "DNS lookups of discovered names, by result.");
        // Kubernetes sources make no DNS lookup: only the `weir_discovery_*` series.
        let dns = || names.iter().filter(|(key, _)| !is_kubernetes(key));
        for (host, stats) in dns() {
            let host = escape(host.strip_prefix(SRV_PREFIX).unwrap_or(host));
            for (result, value) in [("ok", stats.ok), ("failed", stats.failed)] {
                let _ = writeln!(out, "{name}{{host=\"{host}\",result=\"{result}\"}} {value}");
            }
        }
        let name = "weir_dns_addresses";
        let help = "Addresses in use for a discovered name (the last known while lookups fail).";
        header(out, name, "gauge", help);
        for (host, stats) in dns() {
            let host = escape(host.strip_prefix(SRV_PREFIX).unwrap_or(host));
            let _ = writeln!(out, "{name}{{host=\"{host}\"}} {}", stats.endpoints);
        }
        render_sources(&names, out);
    }
}

/// A per-source gauge: name, help, value.
type Gauge = (&'static str, &'static str, fn(&SourceStats) -> u64);

/// The `weir_discovery_*{source}` series.
fn render_sources(names: &BTreeMap<String, SourceStats>, out: &mut String) {
    let sources: Vec<(String, &SourceStats)> =
        names.iter().map(|(key, stats)| (escape(&source_label(key)), stats)).collect();
    let gauges: [Gauge; 4] = [
        (
            "weir_discovery_endpoints",
            "Endpoints a source gives (the last known set while it fails).",
            |s| s.endpoints as u64,
        ),
        ("weir_discovery_generation", "Times a source's endpoint set changed.", |s| s.generation),
        (
            "weir_discovery_last_update_timestamp_seconds",
            "When a source last gave a set (Unix time; 0: never).",
            |s| unix(s.last_update),
        ),
        (
            "weir_discovery_last_change_timestamp_seconds",
            "When a source's set last changed (Unix time; 0: never).",
            |s| unix(s.last_change),
        ),
    ];
    for (name, help, value) in gauges {
        header(out, name, "gauge", help);
        for (source, stats) in &sources {
            let _ = writeln!(out, "{name}{{source=\"{source}\"}} {}", value(stats));
        }
    }
    let name = "weir_discovery_errors_total";
    header(out, name, "counter", "Failed or empty lookups of a source, by kind.");
    for (source, stats) in &sources {
        for kind in FailureKind::ALL {
            let count = stats.errors.get(&kind).copied().unwrap_or(0);
            let kind = kind.name();
            let _ = writeln!(out, "{name}{{source=\"{source}\",kind=\"{kind}\"}} {count}");
        }
    }
    let name = "weir_discovery_set_info";
    let help = "1, labelled with the hash of a source's endpoint set: equal on every instance that sees the same set.";
    header(out, name, "gauge", help);
    for (source, stats) in &sources {
        let _ = writeln!(out, "{name}{{source=\"{source}\",hash=\"{:016x}\"}} 1", stats.hash);
    }
}

/// Seconds since the Unix epoch; 0 for never.
pub fn unix(at: Option<SystemTime>) -> u64 {
    at.and_then(|at| at.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_secs())
}
