//! What the limits show: the `weir_limit_*` and `weir_connections_refused_total` series
//! of `/metrics`, and the `GET /api/v1/limits` document.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::conn::ConnTable;
use super::{LimitStats, Limiter};
use crate::config::{LimitMode, OnStoreError};
use crate::json::JsonWriter;
use crate::metrics::{escape, header};
use crate::shard::Counter;

type Read = fn(&LimitStats) -> &Counter;

/// `outcome` labels of `weir_limit_requests_total`. `unkeyed` requests (no key) are
/// also counted as `passed`.
const OUTCOMES: [(&str, Read); 4] = [
    ("passed", |s| &s.passed),
    ("delayed", |s| &s.delayed),
    ("rejected", |s| &s.rejected),
    ("unkeyed", |s| &s.unkeyed),
];

/// Per-limit counters beside the outcomes.
const COUNTERS: [(&str, &str, Read); 3] = [
    ("weir_limit_evictions_total", "Keys still limited pushed out of a full limit table.", |s| {
        &s.evictions
    }),
    (
        "weir_limit_store_errors_total",
        "Calls to a limit's store (Redis) that failed or timed out.",
        |s| &s.store_errors,
    ),
    (
        "weir_limit_store_fallbacks_total",
        "Requests decided without the store (on_store_error) while it failed.",
        |s| &s.store_fallbacks,
    ),
];

/// Appends the limits' series to a `/metrics` body, zeros included.
pub fn render(out: &mut String, limits: &[Arc<Limiter>], per_client: Option<&ConnTable>) {
    let name = "weir_limit_requests_total";
    header(out, name, "counter", "Requests through a rate limit, by limit and outcome.");
    for limiter in limits {
        let limit = escape(&limiter.config.name);
        for (outcome, read) in OUTCOMES {
            let value = limiter.total(read);
            let _ = writeln!(out, "{name}{{limit=\"{limit}\",outcome=\"{outcome}\"}} {value}");
        }
    }
    for (name, help, read) in COUNTERS {
        header(out, name, "counter", help);
        for limiter in limits {
            let (limit, value) = (escape(&limiter.config.name), limiter.total(read));
            let _ = writeln!(out, "{name}{{limit=\"{limit}\"}} {value}");
        }
    }
    let name = "weir_limit_table_bytes";
    header(out, name, "gauge", "Memory of a limit's local table (fixed by table_size).");
    for limiter in limits {
        let (limit, value) = (escape(&limiter.config.name), limiter.table_bytes());
        let _ = writeln!(out, "{name}{{limit=\"{limit}\"}} {value}");
    }
    let name = "weir_connections_refused_total";
    let help =
        "Client connections closed unread, by reason (per_client: max_connections_per_client).";
    header(out, name, "counter", help);
    let refused = per_client.map_or(0, |table| table.refused.load(Ordering::Relaxed));
    let _ = writeln!(out, "{name}{{reason=\"per_client\"}} {refused}");
}

/// The `GET /api/v1/limits` document: each limit's settings and counters, and the
/// per-client connection limit.
pub fn json(
    limits: &[Arc<Limiter>],
    most_per_client: Option<usize>,
    per_client: Option<&ConnTable>,
) -> String {
    let mut json = JsonWriter::with_capacity(256 + 384 * limits.len());
    json.begin_object();
    json.key("limits");
    json.begin_array();
    for limiter in limits {
        write_limit(&mut json, limiter);
    }
    json.end_array();
    json.key("max_connections_per_client");
    match most_per_client {
        Some(most) => json.u64(most as u64),
        None => json.null(),
    }
    json.key("connections_refused");
    json.u64(per_client.map_or(0, |table| table.refused.load(Ordering::Relaxed)));
    json.end_object();
    json.finish()
}

fn write_limit(json: &mut JsonWriter, limiter: &Limiter) {
    let config = &limiter.config;
    json.begin_object();
    json.key("name");
    json.string(&config.name);
    json.key("key");
    json.string(&config.key.to_string());
    json.key("rate");
    json.string(&config.rate.to_string());
    json.key("burst");
    json.u64(config.burst);
    json.key("mode");
    json.string(match config.mode {
        LimitMode::Reject => "reject",
        LimitMode::Delay(_) => "delay",
    });
    json.key("table_bytes");
    json.u64(limiter.table_bytes() as u64);
    json.key("store");
    json.opt_string(config.store.as_deref());
    json.key("on_store_error");
    json.string(match config.on_store_error {
        OnStoreError::Local => "local",
        OnStoreError::Open => "open",
    });
    for (outcome, read) in OUTCOMES {
        json.key(outcome);
        json.u64(limiter.total(read));
    }
    for (name, _, read) in COUNTERS {
        json.key(name.trim_start_matches("weir_limit_").trim_end_matches("_total"));
        json.u64(limiter.total(read));
    }
    json.end_object();
}
