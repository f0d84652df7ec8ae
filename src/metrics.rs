//! Counters sharded per worker, and the Prometheus text exposition.
//!
//! Every hot-path counter lives in a shard owned by one worker thread and padded to its own
//! cache lines, so workers never write the same line. A scrape adds the shards up. Shard
//! 0 belongs to threads that are not workers (admin, control), workers use 1..=N.

use std::cell::Cell;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::snapshot::Snapshot;

thread_local! {
    static SHARD: Cell<usize> = const { Cell::new(0) };
}

/// Marks the current thread as worker `index` (0-based); its counters go to shard index+1.
pub fn set_worker_shard(index: usize) {
    SHARD.with(|shard| shard.set(index + 1));
}

fn shard_index() -> usize {
    SHARD.with(Cell::get)
}

/// Pads a value to two cache lines, so neighbouring shards never share a line (adjacent
/// line prefetch on x86 pulls pairs of 64-byte lines).
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Padded<T>(pub T);

/// One `T` per worker, plus one for every other thread.
#[derive(Debug)]
pub struct Sharded<T> {
    shards: Box<[Padded<T>]>,
}

impl<T: Default> Sharded<T> {
    /// Shards for `workers` workers.
    pub fn new(workers: usize) -> Sharded<T> {
        Sharded { shards: (0..=workers).map(|_| Padded::default()).collect() }
    }
}

impl<T> Sharded<T> {
    /// This thread's shard.
    pub fn local(&self) -> &T {
        let index = shard_index();
        debug_assert!(index < self.shards.len());
        &self.shards[index.min(self.shards.len() - 1)].0
    }

    /// Every shard, for a scrape.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.shards.iter().map(|padded| &padded.0)
    }
}

/// A monotonic counter written by one thread and read by scrapes.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Responses counted by status class, 1xx to 5xx.
#[derive(Debug, Default)]
pub struct StatusClasses([Counter; 5]);

impl StatusClasses {
    /// Counts one response with `status`.
    pub fn record(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.0[class].inc();
    }

    fn get(&self, class: usize) -> u64 {
        self.0[class].get()
    }
}

/// Per-backend counters, one set per shard.
#[derive(Debug, Default)]
pub struct BackendStats {
    /// Responses relayed from this backend (or made for it), by class.
    pub requests: StatusClasses,
    /// New upstream connections opened (pool misses).
    pub connections_opened: Counter,
    /// Requests sent on a pooled connection (pool hits).
    pub connections_reused: Counter,
    /// Failed connection attempts.
    pub connect_failures: Counter,
    /// Response-header timeouts.
    pub timeouts: Counter,
    /// Connections reset or closed mid-exchange.
    pub resets: Counter,
    /// Requests retried once after a stale pooled connection failed.
    pub stale_retries: Counter,
}

/// Frontend counters, one set per shard.
#[derive(Debug, Default)]
pub struct FrontendStats {
    /// Responses sent to clients, by class.
    pub requests: StatusClasses,
    /// Client connections accepted.
    pub connections_total: Counter,
    /// Client connections open now (this shard's opens minus closes).
    pub connections_active: AtomicI64,
}

fn sum<T>(shards: &Sharded<T>, read: impl Fn(&T) -> u64) -> u64 {
    shards.iter().map(read).sum()
}

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Renders the Prometheus text format for the frontend and every backend in `snapshot`.
pub fn render(frontend: &Sharded<FrontendStats>, snapshot: &Snapshot) -> String {
    let mut out = String::with_capacity(4096);
    let _ = writeln!(out, "# HELP weir_requests_total Responses sent to clients, by status class.");
    let _ = writeln!(out, "# TYPE weir_requests_total counter");
    for (class, label) in CLASSES.iter().enumerate() {
        let value = sum(frontend, |s| s.requests.get(class));
        let _ = writeln!(out, "weir_requests_total{{code_class=\"{label}\"}} {value}");
    }
    let total = sum(frontend, |s| s.connections_total.get());
    let active: i64 = frontend.iter().map(|s| s.connections_active.load(Ordering::Relaxed)).sum();
    let _ = writeln!(out, "# HELP weir_connections_total Client connections accepted.");
    let _ = writeln!(out, "# TYPE weir_connections_total counter");
    let _ = writeln!(out, "weir_connections_total {total}");
    let _ = writeln!(out, "# HELP weir_connections_active Client connections open now.");
    let _ = writeln!(out, "# TYPE weir_connections_active gauge");
    let _ = writeln!(out, "weir_connections_active {}", active.max(0));
    render_backends(&mut out, snapshot);
    out
}

type BackendCounter = fn(&BackendStats) -> u64;

fn render_backends(out: &mut String, snapshot: &Snapshot) {
    let _ = writeln!(
        out,
        "# HELP weir_backend_requests_total Responses from each backend, by status class."
    );
    let _ = writeln!(out, "# TYPE weir_backend_requests_total counter");
    for (pool, backend) in snapshot.backends() {
        for (class, label) in CLASSES.iter().enumerate() {
            let value = sum(&backend.live.stats, |s| s.requests.get(class));
            let _ = writeln!(
                out,
                "weir_backend_requests_total{{pool=\"{}\",backend=\"{}\",code_class=\"{label}\"}} {value}",
                escape(&pool.name),
                escape(&backend.label)
            );
        }
    }
    let simple: [(&str, &str, BackendCounter); 2] = [
        (
            "weir_backend_connections_opened_total",
            "Upstream connections opened (pool misses).",
            |s| s.connections_opened.get(),
        ),
        (
            "weir_backend_connections_reused_total",
            "Requests sent on a pooled connection (pool hits).",
            |s| s.connections_reused.get(),
        ),
    ];
    for (name, help, read) in simple {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} counter");
        for (pool, backend) in snapshot.backends() {
            let value = sum(&backend.live.stats, read);
            let _ = writeln!(
                out,
                "{name}{{pool=\"{}\",backend=\"{}\"}} {value}",
                escape(&pool.name),
                escape(&backend.label)
            );
        }
    }
    render_failures(out, snapshot);
}

fn render_failures(out: &mut String, snapshot: &Snapshot) {
    let kinds: [(&str, BackendCounter); 3] = [
        ("connect", |s| s.connect_failures.get()),
        ("timeout", |s| s.timeouts.get()),
        ("reset", |s| s.resets.get()),
    ];
    let _ = writeln!(
        out,
        "# HELP weir_backend_failures_total Failed exchanges with each backend, by kind."
    );
    let _ = writeln!(out, "# TYPE weir_backend_failures_total counter");
    for (pool, backend) in snapshot.backends() {
        for (kind, read) in kinds {
            let value = sum(&backend.live.stats, read);
            let _ = writeln!(
                out,
                "weir_backend_failures_total{{pool=\"{}\",backend=\"{}\",kind=\"{kind}\"}} {value}",
                escape(&pool.name),
                escape(&backend.label)
            );
        }
    }
}

/// Escapes a label value for the text format.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
