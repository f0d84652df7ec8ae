//! The Prometheus text exposition of `/metrics`: walks a snapshot and adds up the shards of
//! every counter at scrape time. The counters themselves and the text helpers are in
//! [`crate::metrics`].

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use crate::local_fault::{FAULTS, OPS};
use crate::metrics::{
    escape, header, BackendStats, FrontendStats, Http2Attack, PoolStats, DURATION_BUCKETS_US,
};
use crate::metrics::{GOAWAY_REASONS, PROTOCOLS};
use crate::shard::Sharded;
use crate::snapshot::{Backend, Pool, Snapshot};

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

type BackendCounter = fn(&BackendStats) -> u64;

/// Per-backend counters exposed as `NAME{pool,backend}`.
const BACKEND_COUNTERS: [(&str, &str, BackendCounter); 9] = [
    ("weir_backend_connections_opened_total", "Upstream connections opened (pool misses).", |s| {
        s.connections_opened.get()
    }),
    (
        "weir_backend_connections_reused_total",
        "Requests sent on a pooled upstream connection (pool hits).",
        |s| s.connections_reused.get(),
    ),
    (
        "weir_backend_retries_total",
        "Requests retried after this backend failed (stale pooled connections included).",
        |s| s.retries.get(),
    ),
    ("weir_backend_http2_streams_total", "Requests sent to the backend as HTTP/2 streams.", |s| {
        s.http2_streams.get()
    }),
    ("weir_backend_http2_goaways_total", "GOAWAY frames received from an HTTP/2 backend.", |s| {
        s.http2_goaways.get()
    }),
    ("weir_backend_ejections_total", "Passive ejections of the backend.", |s| s.ejections.get()),
    ("weir_backend_probe_failures_total", "Active health probes that failed.", |s| {
        s.probe_failures.get()
    }),
    ("weir_backend_sent_bytes_total", "Bytes sent to the backend.", |s| s.bytes_sent.get()),
    ("weir_backend_received_bytes_total", "Bytes received from the backend.", |s| {
        s.bytes_received.get()
    }),
];

/// Failure kinds exposed as `weir_backend_failures_total{kind}`.
const FAILURE_KINDS: [(&str, BackendCounter); 4] = [
    ("connect", |s| s.connect_failures.get()),
    ("timeout", |s| s.timeouts.get()),
    ("reset", |s| s.resets.get()),
    ("status", |s| s.status_failures.get()),
];

fn sum<T>(shards: &Sharded<T>, read: impl Fn(&T) -> u64) -> u64 {
    shards.iter().map(read).sum()
}

/// `pool="…",backend="…"`, escaped.
fn labels(pool: &Pool, backend: &Backend) -> String {
    format!("pool=\"{}\",backend=\"{}\"", escape(&pool.name), escape(&backend.label))
}

/// Renders the Prometheus text format for the frontend and every backend in `snapshot`.
pub fn render(frontend: &Sharded<FrontendStats>, snapshot: &Snapshot) -> String {
    let mut out = String::with_capacity(8192);
    header(
        &mut out,
        "weir_requests_total",
        "counter",
        "Responses sent to clients, by protocol and status class.",
    );
    for (index, protocol) in PROTOCOLS.iter().enumerate() {
        for (class, label) in CLASSES.iter().enumerate() {
            let value = sum(frontend, |s| s.requests[index].get(class));
            let labels = format!("protocol=\"{protocol}\",code_class=\"{label}\"");
            let _ = writeln!(out, "weir_requests_total{{{labels}}} {value}");
        }
    }
    let total = sum(frontend, |s| s.connections_total.get());
    header(&mut out, "weir_connections_total", "counter", "Client connections accepted.");
    let _ = writeln!(out, "weir_connections_total {total}");
    let active: i64 = frontend.iter().map(|s| s.connections_active.load(Ordering::Relaxed)).sum();
    header(&mut out, "weir_connections_active", "gauge", "Client connections open now.");
    let _ = writeln!(out, "weir_connections_active {}", active.max(0));
    let _ = writeln!(out, "# HELP weir_build_info Build information.");
    let _ = writeln!(out, "# TYPE weir_build_info gauge");
    let _ = writeln!(out, "weir_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
    header(&mut out, "weir_config_generation", "gauge", "Configuration generation, +1 per reload.");
    let _ = writeln!(out, "weir_config_generation {}", snapshot.generation);
    render_local_errors(&mut out, frontend);
    render_http2(&mut out, frontend);
    render_http2_attacks(&mut out, frontend);
    render_policy(&mut out, frontend);
    render_backend_requests(&mut out, snapshot);
    render_backend_gauges(&mut out, snapshot);
    render_durations(&mut out, snapshot);
    for (name, help, read) in BACKEND_COUNTERS {
        header(&mut out, name, "counter", help);
        for (pool, backend) in snapshot.backends() {
            let value = sum(&backend.live.stats, read);
            let _ = writeln!(out, "{name}{{{}}} {value}", labels(pool, backend));
        }
    }
    render_failures(&mut out, snapshot);
    render_tls(&mut out, snapshot);
    render_pools(&mut out, snapshot);
    out
}

/// The HTTP/2 connection and stream gauges, GOAWAYs by reason and resets received.
fn render_http2(out: &mut String, frontend: &Sharded<FrontendStats>) {
    let gauge = |read: fn(&FrontendStats) -> i64| frontend.iter().map(read).sum::<i64>().max(0);
    let connections = gauge(|s| s.http2.connections_active.load(Ordering::Relaxed));
    let name = "weir_http2_connections_active";
    header(out, name, "gauge", "HTTP/2 client connections open now.");
    let _ = writeln!(out, "{name} {connections}");
    let streams = gauge(|s| s.http2.streams_active.load(Ordering::Relaxed));
    let name = "weir_http2_streams_active";
    header(out, name, "gauge", "HTTP/2 streams being served now.");
    let _ = writeln!(out, "{name} {streams}");
    let name = "weir_http2_goaways_sent_total";
    header(out, name, "counter", "HTTP/2 GOAWAY frames sent to clients, by reason.");
    for (index, reason) in GOAWAY_REASONS.iter().enumerate() {
        let value = sum(frontend, |s| s.http2.goaways[index].get());
        let _ = writeln!(out, "{name}{{reason=\"{reason}\"}} {value}");
    }
    let name = "weir_http2_resets_received_total";
    header(out, name, "counter", "HTTP/2 streams the client reset while weir served them.");
    let _ = writeln!(out, "{name} {}", sum(frontend, |s| s.http2.resets_received.get()));
}

fn render_backend_requests(out: &mut String, snapshot: &Snapshot) {
    let name = "weir_backend_requests_total";
    header(out, name, "counter", "Responses from each backend, by status class.");
    for (pool, backend) in snapshot.backends() {
        let labels = labels(pool, backend);
        for (class, label) in CLASSES.iter().enumerate() {
            let value = sum(&backend.live.stats, |s| s.requests.get(class));
            let _ = writeln!(out, "{name}{{{labels},code_class=\"{label}\"}} {value}");
        }
    }
}

fn render_backend_gauges(out: &mut String, snapshot: &Snapshot) {
    let name = "weir_backend_in_flight";
    header(out, name, "gauge", "Requests in flight to each backend.");
    for (pool, backend) in snapshot.backends() {
        let value = backend.live.in_flight.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}{{{}}} {value}", labels(pool, backend));
    }
    let name = "weir_backend_weight";
    header(out, name, "gauge", "Configured weight of each backend.");
    for (pool, backend) in snapshot.backends() {
        let _ = writeln!(out, "{name}{{{}}} {}", labels(pool, backend), backend.weight);
    }
    let name = "weir_backend_idle_connections";
    header(out, name, "gauge", "Idle pooled upstream connections, all workers together.");
    for (pool, backend) in snapshot.backends() {
        let value = sum(&backend.live.stats, |s| s.idle_connections.load(Ordering::Relaxed));
        let _ = writeln!(out, "{name}{{{}}} {value}", labels(pool, backend));
    }
    let name = "weir_backend_healthy";
    header(out, name, "gauge", "1 when the backend may take new requests.");
    for (pool, backend) in snapshot.backends() {
        let value = u8::from(backend.live.is_healthy());
        let _ = writeln!(out, "{name}{{{}}} {value}", labels(pool, backend));
    }
}

fn render_durations(out: &mut String, snapshot: &Snapshot) {
    let name = "weir_backend_request_duration_seconds";
    header(out, name, "histogram", "Time from backend pick to the end of the response.");
    for (pool, backend) in snapshot.backends() {
        let labels = labels(pool, backend);
        let stats = &backend.live.stats;
        let mut cumulative = 0;
        for (index, bound) in DURATION_BUCKETS_US.iter().enumerate() {
            cumulative += sum(stats, |s| s.duration.bucket(index));
            let le = *bound as f64 / 1e6;
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        cumulative += sum(stats, |s| s.duration.bucket(DURATION_BUCKETS_US.len()));
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {cumulative}");
        let seconds = sum(stats, |s| s.duration.sum_us()) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {seconds}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
    }
}

/// `weir_http2_attacks_total{kind}`: every kind, zeros included, as for local errors.
fn render_http2_attacks(out: &mut String, frontend: &Sharded<FrontendStats>) {
    let name = "weir_http2_attacks_total";
    header(out, name, "counter", "HTTP/2 attacks refused (GOAWAY or stream refused), by kind.");
    for attack in Http2Attack::ALL {
        let value = sum(frontend, |s| s.http2_attacks.get(attack));
        let _ = writeln!(out, "{name}{{kind=\"{}\"}} {value}", attack.label());
    }
}

/// PROXY protocol errors by reason and access-list denials by listener, zeros included.
fn render_policy(out: &mut String, frontend: &Sharded<FrontendStats>) {
    let name = "weir_proxy_protocol_errors_total";
    let help = "Client connections closed for a missing or bad PROXY protocol header, by reason.";
    header(out, name, "counter", help);
    for reason in crate::proxy_protocol::Error::ALL {
        let value = sum(frontend, |s| s.proxy_protocol_errors[reason as usize].get());
        let _ = writeln!(out, "{name}{{reason=\"{}\"}} {value}", reason.label());
    }
    let name = "weir_denied_total";
    header(out, name, "counter", "Requests answered 403 by an allow/deny list, by listener.");
    for (index, listener) in ["proxy", "admin"].into_iter().enumerate() {
        let value = sum(frontend, |s| s.denied[index].get());
        let _ = writeln!(out, "{name}{{listener=\"{listener}\"}} {value}");
    }
    let name = "weir_redirects_total";
    header(out, name, "counter", "Requests a route's redirect answered without a backend.");
    let _ = writeln!(out, "{name} {}", sum(frontend, |s| s.redirects.get()));
    let name = "weir_body_too_large_total";
    header(out, name, "counter", "Requests answered 413 for a body over the route's max_body.");
    let _ = writeln!(out, "{name} {}", sum(frontend, |s| s.body_too_large.get()));
}

/// `weir_local_errors_total{op,kind}`: every op and kind, zeros included, so an alert can
/// be written before the first fault.
fn render_local_errors(out: &mut String, frontend: &Sharded<FrontendStats>) {
    let name = "weir_local_errors_total";
    let help = "Local resource exhaustion (weir out of files, memory, buffers or ports).";
    header(out, name, "counter", help);
    for (op, op_label) in OPS {
        for fault in FAULTS {
            let value = sum(frontend, |s| s.local_errors.get(op, fault));
            let kind = fault.label();
            let _ = writeln!(out, "{name}{{op=\"{op_label}\",kind=\"{kind}\"}} {value}");
        }
    }
}

fn render_failures(out: &mut String, snapshot: &Snapshot) {
    let name = "weir_backend_failures_total";
    header(out, name, "counter", "Failed exchanges with each backend, by kind.");
    for (pool, backend) in snapshot.backends() {
        let labels = labels(pool, backend);
        for (kind, read) in FAILURE_KINDS {
            let value = sum(&backend.live.stats, read);
            let _ = writeln!(out, "{name}{{{labels},kind=\"{kind}\"}} {value}");
        }
    }
}

/// Upstream TLS handshakes and their failures, for `https://` backends only.
fn render_tls(out: &mut String, snapshot: &Snapshot) {
    let tls_backends = || snapshot.backends().filter(|(_, backend)| backend.live.tls.is_some());
    let name = "weir_backend_tls_handshakes_total";
    header(out, name, "counter", "TLS handshakes with each backend, full or resumed.");
    for (pool, backend) in tls_backends() {
        let labels = labels(pool, backend);
        let full = sum(&backend.live.stats, |s| s.tls.full.get());
        let resumed = sum(&backend.live.stats, |s| s.tls.resumed.get());
        let _ = writeln!(out, "{name}{{{labels},resumed=\"false\"}} {full}");
        let _ = writeln!(out, "{name}{{{labels},resumed=\"true\"}} {resumed}");
    }
    let name = "weir_backend_tls_failures_total";
    header(out, name, "counter", "Failed TLS handshakes with each backend, by reason.");
    for (pool, backend) in tls_backends() {
        let labels = labels(pool, backend);
        for (index, (reason, _)) in crate::tls::REASONS.iter().enumerate() {
            let value = sum(&backend.live.stats, |s| s.tls.failures[index].get());
            let _ = writeln!(out, "{name}{{{labels},reason=\"{reason}\"}} {value}");
        }
    }
}

/// Appends `weir_access_log_dropped_total`: access-log lines dropped because the writer
/// fell behind. The admin listener adds it when an access log runs.
pub fn render_access_log(out: &mut String, dropped: u64) {
    let name = "weir_access_log_dropped_total";
    header(out, name, "counter", "Access-log lines dropped because the writer fell behind.");
    let _ = writeln!(out, "{name} {dropped}");
}

/// `weir_config_reloads_total{result}`: config file reloads applied and refused.
pub fn render_reloads(out: &mut String, success: u64, failure: u64) {
    let name = "weir_config_reloads_total";
    header(out, name, "counter", "Config file reloads (SIGHUP, file watch, API), by result.");
    let _ = writeln!(out, "{name}{{result=\"success\"}} {success}");
    let _ = writeln!(out, "{name}{{result=\"failure\"}} {failure}");
}

type PoolCounter = fn(&PoolStats) -> u64;

/// Per-pool counters exposed as `NAME{pool}`.
const POOL_COUNTERS: [(&str, &str, PoolCounter); 4] = [
    ("weir_pool_retries_total", "Retries sent to another backend.", |s| s.retries.get()),
    ("weir_pool_retry_budget_exhausted_total", "Retries refused by the retry budget.", |s| {
        s.budget_exhausted.get()
    }),
    (
        "weir_pool_panic_total",
        "Requests balanced over every backend because none was healthy (try_all).",
        |s| s.panic.get(),
    ),
    ("weir_pool_no_healthy_total", "Requests answered 503: no healthy backend.", |s| {
        s.no_healthy.get()
    }),
];

fn render_pools(out: &mut String, snapshot: &Snapshot) {
    for (name, help, read) in POOL_COUNTERS {
        header(out, name, "counter", help);
        for pool in &snapshot.pools {
            let value = sum(&pool.live.stats, read);
            let _ = writeln!(out, "{name}{{pool=\"{}\"}} {value}", escape(&pool.name));
        }
    }
    let name = "weir_pool_panic";
    header(out, name, "gauge", "1 while the pool fails open over every backend.");
    for pool in &snapshot.pools {
        let value = u8::from(pool.live.panic.load(Ordering::Relaxed));
        let _ = writeln!(out, "{name}{{pool=\"{}\"}} {value}", escape(&pool.name));
    }
}
