//! The counters weir exposes, and the Prometheus text exposition.
//!
//! Every hot-path counter lives in a [`Sharded`](crate::shard::Sharded) slot owned by one worker thread (see
//! [`crate::shard`]); a scrape adds the shards up. [`crate::exposition`] writes the Prometheus
//! text format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64};

use crate::shard::Counter;

/// Responses counted by status class, 1xx to 5xx.
#[derive(Debug, Default)]
pub struct StatusClasses([Counter; 5]);

impl StatusClasses {
    /// Counts one response with `status`.
    pub fn record(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.0[class].inc();
    }

    /// Responses of class `class + 1` (0 is 1xx).
    pub fn get(&self, class: usize) -> u64 {
        self.0[class].get()
    }
}

/// Upper bounds of the request-duration buckets in microseconds: 0.5 ms to 10 s, the
/// range between a cached loopback answer and a request that should have timed out.
pub const DURATION_BUCKETS_US: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];

/// A duration histogram. Buckets are stored non-cumulatively (one increment per sample);
/// the exposition accumulates them.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [Counter; DURATION_BUCKETS_US.len() + 1],
    sum_us: Counter,
}

impl Histogram {
    /// Records one sample.
    pub fn record(&self, duration: std::time::Duration) {
        let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        // Bounded: 14 comparisons at most.
        let index = DURATION_BUCKETS_US
            .iter()
            .position(|&bound| micros <= bound)
            .unwrap_or(DURATION_BUCKETS_US.len());
        self.buckets[index].inc();
        self.sum_us.add(micros);
    }

    /// Samples in bucket `index` alone (the last one is above every bound).
    pub fn bucket(&self, index: usize) -> u64 {
        self.buckets[index].get()
    }

    /// Sum of all samples in microseconds.
    pub fn sum_us(&self) -> u64 {
        self.sum_us.get()
    }
}

/// Per-backend counters, one set per shard.
#[derive(Debug, Default)]
pub struct BackendStats {
    /// Responses relayed from this backend (or made for it), by class.
    pub requests: StatusClasses,
    /// New upstream connections opened (pool misses).
    pub connections_opened: Counter,
    /// Requests sent on a pooled connection (pool hits); for an HTTP/2 backend, streams
    /// opened on a connection that was open already.
    pub connections_reused: Counter,
    /// GOAWAY frames received from an HTTP/2 backend (`protocol = "h2c"`).
    pub http2_goaways: Counter,
    /// Requests sent to the backend as HTTP/2 streams (`h2c`, `h2`, or an `auto`
    /// backend that chose h2 by ALPN).
    pub http2_streams: Counter,
    /// Failed connection attempts.
    pub connect_failures: Counter,
    /// Response-header timeouts.
    pub timeouts: Counter,
    /// Connections reset or closed mid-exchange.
    pub resets: Counter,
    /// Requests retried once after a stale pooled connection failed (also counted in
    /// `retries`).
    pub stale_retries: Counter,
    /// Requests retried because an attempt on this backend failed: on another backend,
    /// or on a fresh connection after a stale pooled one.
    pub retries: Counter,
    /// Times passive detection ejected this backend.
    pub ejections: Counter,
    /// Active probes that failed.
    pub probe_failures: Counter,
    /// Time from the pick to the end of the response, for relayed responses.
    pub duration: Histogram,
    /// Bytes sent to the backend (heads and bodies).
    pub bytes_sent: Counter,
    /// Bytes received from the backend (heads and bodies).
    pub bytes_received: Counter,
    /// Idle pooled connections this worker holds to the backend (a gauge, set by the
    /// worker's pool on every change).
    pub idle_connections: AtomicU64,
    /// Responses whose status is one of the pool's `failure_statuses`.
    pub status_failures: Counter,
    /// TLS handshakes with an `https://` backend.
    pub tls: TlsStats,
}

/// Upstream TLS handshakes of one backend, on one shard.
#[derive(Debug, Default)]
pub struct TlsStats {
    /// Full handshakes (certificate sent and verified).
    pub full: Counter,
    /// Resumed handshakes (TLS 1.3 ticket or TLS 1.2 session).
    pub resumed: Counter,
    /// Failed handshakes, by [`crate::tls::TlsError::index`].
    pub failures: [Counter; crate::tls::REASONS.len()],
}

impl TlsStats {
    /// Counts a successful handshake.
    pub fn handshake(&self, resumed: bool) {
        match resumed {
            true => self.resumed.inc(),
            false => self.full.inc(),
        }
    }

    /// Counts a failed handshake.
    pub fn failure(&self, error: &crate::tls::TlsError) {
        self.failures[error.index()].inc();
    }
}

/// Per-pool counters, one set per shard. They live in
/// [`PoolLive`](crate::snapshot::PoolLive), so they survive reloads.
#[derive(Debug, Default)]
pub struct PoolStats {
    /// Retries sent to another backend (stale-connection replays are not counted here).
    pub retries: Counter,
    /// Retries refused because the pool's retry budget was spent.
    pub budget_exhausted: Counter,
    /// Requests balanced over every backend because none was healthy
    /// (`when_all_unhealthy = "try_all"`).
    pub panic: Counter,
    /// Requests answered 503 because no backend was healthy
    /// (`when_all_unhealthy = "fail"`, or no backend at all).
    pub no_healthy: Counter,
}

/// The protocols a client may speak, as the `protocol` label names them; the index is
/// [`FrontendStats::requests`]'s.
pub const PROTOCOLS: [&str; 2] = ["http1", "http2"];

/// Why weir sent an HTTP/2 GOAWAY, as the `reason` label names it: weir's own reasons
/// first, then the codec's for a connection error, by error code.
pub const GOAWAY_REASONS: [&str; 9] = [
    "drain",
    "idle",
    "protocol_error",
    "flow_control_error",
    "settings_timeout",
    "frame_size_error",
    "compression_error",
    "enhance_your_calm",
    "other",
];

/// A [`GOAWAY_REASONS`] index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoAway {
    /// The worker drains (SIGTERM, binary upgrade).
    Drain,
    /// No stream for `keepalive_timeout`.
    Idle,
    /// A connection error the codec found, by its HTTP/2 error code.
    Error(u32),
}

impl GoAway {
    /// Its index in [`GOAWAY_REASONS`].
    pub fn index(self) -> usize {
        match self {
            GoAway::Drain => 0,
            GoAway::Idle => 1,
            // PROTOCOL_ERROR, FLOW_CONTROL_ERROR, SETTINGS_TIMEOUT, FRAME_SIZE_ERROR,
            // COMPRESSION_ERROR and ENHANCE_YOUR_CALM (RFC 9113 §7).
            GoAway::Error(0x1) => 2,
            GoAway::Error(0x3) => 3,
            GoAway::Error(0x4) => 4,
            GoAway::Error(0x6) => 5,
            GoAway::Error(0x9) => 6,
            GoAway::Error(0xb) => 7,
            GoAway::Error(_) => 8,
        }
    }
}

/// HTTP/2 counters of the frontend, one set per shard.
#[derive(Debug, Default)]
pub struct Http2Stats {
    /// HTTP/2 client connections open now (this shard's opens minus closes).
    pub connections_active: AtomicI64,
    /// HTTP/2 streams being served now.
    pub streams_active: AtomicI64,
    /// GOAWAY frames sent, by [`GoAway::index`].
    pub goaways: [Counter; GOAWAY_REASONS.len()],
    /// Streams the client reset (RST_STREAM) while weir served them.
    pub resets_received: Counter,
}

/// Frontend counters, one set per shard.
#[derive(Debug, Default)]
pub struct FrontendStats {
    /// Responses sent to clients, by protocol ([`PROTOCOLS`]) and class.
    pub requests: [StatusClasses; PROTOCOLS.len()],
    /// HTTP/2 connections, streams, GOAWAYs and resets.
    pub http2: Http2Stats,
    /// Client connections accepted.
    pub connections_total: Counter,
    /// Client connections open now (this shard's opens minus closes).
    pub connections_active: AtomicI64,
    /// Local resource exhaustion, by op and kind (`weir_local_errors_total`).
    pub local_errors: crate::local_fault::LocalErrors,
    /// HTTP/2 attacks refused, by kind (`weir_http2_attacks_total`).
    pub http2_attacks: Http2Attacks,
    /// Connections closed for their PROXY header, by [`crate::proxy_protocol::Error`]
    /// (`weir_proxy_protocol_errors_total{reason}`).
    pub proxy_protocol_errors: [Counter; crate::proxy_protocol::Error::ALL.len()],
    /// Requests refused by an access list: `[route, admin]` (`weir_denied_total{listener}`).
    pub denied: [Counter; 2],
    /// Requests a route's `redirect` or `https_redirect` answered (`weir_redirects_total`).
    pub redirects: Counter,
    /// Requests refused 413 for a route's `max_body` (`weir_body_too_large_total`).
    pub body_too_large: Counter,
}

/// The HTTP/2 attacks weir detects and refuses (README "HTTP/2": attack protections).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Http2Attack {
    /// Streams opened and reset in a loop (Rapid Reset, CVE-2023-44487).
    RapidReset,
    /// A header block continued without end (CONTINUATION flood, 2024).
    Continuation,
    /// Streams whose decoded headers would pass the connection's budget (HTTP/2 Bomb).
    HeaderBudget,
    /// PING frames past their budget.
    PingFlood,
    /// SETTINGS frames past their budget.
    SettingsFlood,
    /// A client that took no response byte for `send_timeout` (zero-window stall).
    Stall,
    /// Streams weir refused or reset for the client's errors past the codec's limit
    /// (streams over `max_concurrent_streams`; MadeYouReset, CVE-2025-8671).
    StreamErrors,
    /// A header block not complete within `header_timeout` (slowloris over HTTP/2).
    SlowHeaders,
}

impl Http2Attack {
    /// Every kind, in exposition order.
    pub const ALL: [Http2Attack; 8] = [
        Http2Attack::RapidReset,
        Http2Attack::Continuation,
        Http2Attack::HeaderBudget,
        Http2Attack::PingFlood,
        Http2Attack::SettingsFlood,
        Http2Attack::Stall,
        Http2Attack::StreamErrors,
        Http2Attack::SlowHeaders,
    ];

    /// The `kind` label.
    pub fn label(self) -> &'static str {
        match self {
            Http2Attack::RapidReset => "rapid_reset",
            Http2Attack::Continuation => "continuation",
            Http2Attack::HeaderBudget => "header_budget",
            Http2Attack::PingFlood => "ping_flood",
            Http2Attack::SettingsFlood => "settings_flood",
            Http2Attack::Stall => "stall",
            Http2Attack::StreamErrors => "stream_errors",
            Http2Attack::SlowHeaders => "slow_headers",
        }
    }
}

/// HTTP/2 attacks refused, one counter per [`Http2Attack`].
#[derive(Debug, Default)]
pub struct Http2Attacks([Counter; Http2Attack::ALL.len()]);

impl Http2Attacks {
    /// Counts one refused attack.
    pub fn record(&self, attack: Http2Attack) {
        self.0[attack as usize].inc();
    }

    /// Attacks of `attack`'s kind refused.
    pub fn get(&self, attack: Http2Attack) -> u64 {
        self.0[attack as usize].get()
    }
}

impl FrontendStats {
    /// Counts one response sent to a client over HTTP/2 (`http2`) or HTTP/1.
    pub fn record(&self, http2: bool, status: u16) {
        self.requests[usize::from(http2)].record(status);
    }

    /// Responses of class `class + 1` over every protocol.
    pub fn responses(&self, class: usize) -> u64 {
        self.requests.iter().map(|by_class| by_class.get(class)).sum()
    }
}

/// `# HELP` and `# TYPE` lines of metric `name`.
pub fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Escapes a label value for the text format.
pub fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
