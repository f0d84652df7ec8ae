//! Health and retry settings of a pool: `[pool.health]` (active probes), `[pool.passive]`
//! (ejection on failed traffic), `[pool.retry]`, `when_all_unhealthy` and `slow_start`.
//!
//! Every default is next to a comment saying where it comes from; the README section
//! "Health and retries" documents the keys and [`crate::health`] the state machine.

use std::fmt;
use std::time::Duration;

/// Most extra attempts `[pool.retry] attempts` allows: each may wait a whole response
/// timeout, and more than five only multiplies the load on a pool that is already failing.
pub const MAX_RETRY_ATTEMPTS: u32 = 5;

/// Lowest status code a [`StatusSet`] holds.
const STATUS_MIN: u16 = 100;
/// Highest status code a [`StatusSet`] holds.
const STATUS_MAX: u16 = 599;

/// A set of HTTP status codes (100 to 599), as a bitset: membership is one shift and
/// mask, so the request path can test it without a loop or an allocation.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusSet([u64; 10]);

impl StatusSet {
    /// The empty set.
    pub const fn empty() -> StatusSet {
        StatusSet([0; 10])
    }

    /// Every code in `low..=high` (clamped to 100..=599).
    pub fn range(low: u16, high: u16) -> StatusSet {
        let mut set = StatusSet::empty();
        for status in low.max(STATUS_MIN)..=high.min(STATUS_MAX) {
            set.insert(status);
        }
        set
    }

    /// Adds `status`; codes outside 100..=599 are ignored.
    pub fn insert(&mut self, status: u16) {
        if (STATUS_MIN..=STATUS_MAX).contains(&status) {
            self.0[usize::from(status / 64)] |= 1 << (status % 64);
        }
    }

    /// Adds every code of `other`.
    pub fn extend(&mut self, other: StatusSet) {
        for (word, more) in self.0.iter_mut().zip(other.0) {
            *word |= more;
        }
    }

    /// Whether `status` is in the set.
    pub fn contains(&self, status: u16) -> bool {
        let word = usize::from(status / 64);
        word < self.0.len() && self.0[word] & (1 << (status % 64)) != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|&word| word == 0)
    }

    /// The codes, in increasing order.
    pub fn codes(&self) -> impl Iterator<Item = u16> + '_ {
        (STATUS_MIN..=STATUS_MAX).filter(|&status| self.contains(status))
    }
}

impl fmt::Debug for StatusSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.codes()).finish()
    }
}

/// How an active probe checks a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeKind {
    /// `GET path` over HTTP/1.1; healthy when the status is in `expect_status`.
    Http,
    /// A plain TCP connect; healthy when it is accepted.
    Tcp,
    /// `grpc.health.v1.Health/Check` over HTTP/2; healthy when the answer is `SERVING`.
    Grpc,
}

/// `[pool.health]`: active probes, one prober per backend for the whole process.
#[derive(Clone, Debug, PartialEq)]
pub struct HealthConfig {
    /// `type`: HTTP GET, TCP connect or gRPC health check.
    pub kind: ProbeKind,
    /// The service a gRPC probe asks about; empty asks about the whole server (the
    /// health protocol's convention).
    pub service: String,
    /// Path of the HTTP probe.
    pub path: String,
    /// `Host` of the HTTP probe; the backend's `HOST:PORT` when not set.
    pub host: Option<String>,
    /// Statuses that count as healthy.
    pub expect_status: StatusSet,
    /// Time between the starts of two probes of one backend.
    pub interval: Duration,
    /// Longest a probe may take, connect included; a probe that hangs fails then.
    pub timeout: Duration,
    /// Successful probes in a row that bring a failed backend back.
    pub healthy_threshold: u32,
    /// Failed probes in a row that take a healthy backend out.
    pub unhealthy_threshold: u32,
    /// Each wait is `interval` plus or minus half of this, at random, so the probes of
    /// many backends (and of many weir instances) do not beat in step.
    pub jitter: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            kind: ProbeKind::Http,
            service: String::new(),
            // HAProxy's `option httpchk` checks `/` too: every HTTP server answers it.
            path: "/".to_string(),
            host: None,
            // Success and redirects, as HAProxy's `http-check expect` default (2xx, 3xx).
            expect_status: StatusSet::range(200, 399),
            // HAProxy's `inter 2000`, `fall 3`, `rise 2`: a dead backend is out within
            // about 6 s and back within about 4 s of recovering.
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
            // 10% of the interval.
            jitter: Duration::from_millis(200),
        }
    }
}

/// `[pool.passive]`: ejecting a backend whose real traffic fails, Envoy-style.
#[derive(Clone, Debug, PartialEq)]
pub struct PassiveConfig {
    /// Failures in a row that eject a backend; 0 turns passive ejection off.
    pub consecutive_failures: u32,
    /// First ejection time; the n-th ejection in a row lasts `n × base_ejection`.
    pub base_ejection: Duration,
    /// Longest ejection.
    pub max_ejection: Duration,
    /// Most of a pool's backends ejected at once, in percent (at least one may always
    /// be ejected, as in Envoy).
    pub max_ejection_percent: u32,
    /// Response statuses that count as failures (a completed response is otherwise a
    /// success).
    pub failure_statuses: StatusSet,
}

impl Default for PassiveConfig {
    fn default() -> Self {
        PassiveConfig {
            // Envoy's `consecutive_5xx` default.
            consecutive_failures: 5,
            // Shorter than Envoy's 30 s: without probes, recovery waits for it.
            base_ejection: Duration::from_secs(10),
            // Envoy's `max_ejection_time` default.
            max_ejection: Duration::from_secs(300),
            // Above Envoy's 10%: weir pools are often 2 to 4 backends, where 10% would
            // still allow one, and half keeps a majority serving.
            max_ejection_percent: 50,
            failure_statuses: StatusSet::empty(),
        }
    }
}

/// A set of gRPC status codes (0 to 16), as a bitmask.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GrpcCodes(u32);

impl GrpcCodes {
    /// `UNAVAILABLE`: the server did not take the call; gRPC clients retry it.
    pub const UNAVAILABLE: u8 = 14;
    /// `RESOURCE_EXHAUSTED`: the server is out of a quota or capacity.
    pub const RESOURCE_EXHAUSTED: u8 = 8;

    /// Adds `code`; codes above 31 are ignored (gRPC's end at 16).
    pub fn insert(&mut self, code: u8) {
        if code < 32 {
            self.0 |= 1 << code;
        }
    }

    /// Whether `code` is in the set.
    pub fn contains(self, code: u8) -> bool {
        code < 32 && self.0 & (1 << code) != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// Which failures `[pool.retry]` retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryOn {
    /// `"connect-failure"`: refused or timed-out connects, any method (nothing was sent).
    pub connect_failure: bool,
    /// `"reset"`: the backend closed before any response byte (idempotent requests).
    pub reset: bool,
    /// `"timeout"`: no response head within `response_timeout` (idempotent requests).
    pub timeout: bool,
    /// Status codes: a response with one of them is retried instead of relayed
    /// (idempotent requests without a body).
    pub statuses: StatusSet,
    /// gRPC statuses (`"grpc-unavailable"`, `"grpc-resource-exhausted"`): a gRPC call
    /// answered trailers-only with one of them is retried instead of relayed, any
    /// method, when its whole request was sent and kept for a replay.
    pub grpc: GrpcCodes,
}

impl Default for RetryOn {
    fn default() -> Self {
        RetryOn {
            connect_failure: true,
            reset: true,
            timeout: true,
            statuses: StatusSet::empty(),
            grpc: GrpcCodes::default(),
        }
    }
}

/// `[pool.retry]`: how many times and when a failed request goes to another backend.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryConfig {
    /// Extra attempts after the first.
    pub attempts: u32,
    /// What is retried.
    pub on: RetryOn,
    /// Retries may add at most this share (percent) on top of the pool's requests.
    pub budget_percent: u32,
    /// Retries always allowed per second, whatever the traffic.
    pub min_per_second: u32,
    /// Most request bytes (head and body) kept to replay a request; bigger or
    /// streaming bodies are never replayed.
    pub replay_buffer: usize,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            // Three backends in all, as weir tried before retries were configurable.
            attempts: 2,
            on: RetryOn::default(),
            // Envoy's retry budget defaults: 20%, with a floor of 3.
            budget_percent: 20,
            min_per_second: 3,
            // Pingora's replay buffer.
            replay_buffer: 64 * 1024,
        }
    }
}

/// `[pool] when_all_unhealthy`: what happens when no backend is healthy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhenAllUnhealthy {
    /// Answer 503 at once.
    Fail,
    /// Balance over every backend regardless of health (Envoy's panic mode).
    TryAll,
}

impl WhenAllUnhealthy {
    /// The name, as written in config files.
    pub fn name(self) -> &'static str {
        match self {
            WhenAllUnhealthy::Fail => "fail",
            WhenAllUnhealthy::TryAll => "try_all",
        }
    }
}
