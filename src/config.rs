//! The one configuration struct.
//!
//! The TOML file and the command-line flags both fill [`Config`]; flags override the file
//! (see [`crate::cli`]). Parsing lives in [`parse`], which reports every problem at once as
//! `FILE:LINE:COL: message`. Every limit and timeout has a default here, next to a comment
//! that says why that value.

pub mod backend;
pub mod dns;
pub mod fleet;
pub mod hash;
pub mod health;
pub mod http2;
pub mod limit;
pub mod parse;
pub mod policy;
pub mod rules;
pub mod strategy;
pub mod units;
pub mod upstream;
pub mod validate;

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use backend::{BackendAddress, BackendConfig, Resolve, Scheme};
pub use dns::DnsConfig;
pub use fleet::FleetConfig;
pub use hash::HashKey;
pub use health::{
    GrpcCodes, HealthConfig, PassiveConfig, ProbeKind, RetryConfig, RetryOn, StatusSet,
    WhenAllUnhealthy,
};
pub use http2::Http2Config;
pub use limit::{LimitConfig, LimitKey, LimitMode, OnStoreError, Rate};
pub use policy::Acl;
pub use rules::{RequestIdConfig, RouteRules};
pub use strategy::StrategyKind;
pub use upstream::{BackendProtocol, UpstreamH2};

/// Default plain HTTP listener, as in the contract.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default admin listener, as in the contract.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9901";

/// Upper bound on worker threads. Each worker owns a shard of every counter, so the bound
/// keeps the metrics arrays small and catches typos such as `workers = 10000`.
pub const MAX_WORKERS: usize = 256;

/// Upper bound on backend weights, as issue #4 fixes it (0 means "no new traffic").
pub const MAX_WEIGHT: u32 = 10_000;

/// The whole configuration of a running balancer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Config {
    /// The file this came from, if any; SIGHUP re-reads it.
    pub source: Option<PathBuf>,
    /// Listener and client-side limits.
    pub server: ServerConfig,
    /// The admin listener.
    pub admin: AdminConfig,
    /// Upstream pools, in file order. The first one is the default route.
    pub pools: Vec<PoolConfig>,
    /// Routes, in file order; the first match wins.
    pub routes: Vec<RouteConfig>,
    /// `[log]`: the access log.
    pub log: LogConfig,
    /// `[dns]`: the servers that `resolve = true` backends are looked up with.
    pub dns: DnsConfig,
    /// `[fleet]`: API changes shared through etcd; `None` keeps them in the state file.
    pub fleet: Option<FleetConfig>,
    /// `[[limit]]`: the rate limits routes may name, in file order.
    pub limits: Vec<LimitConfig>,
}

/// Where lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// No access log; `AccessLog::log` does nothing.
    Off,
    /// Standard output.
    Stdout,
    /// A file, opened for appending and created if missing.
    Path(PathBuf),
}

/// How lines look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// nginx's `combined`, followed by `in= rt= urt= pool= backend= retries= error=`.
    Combined,
    /// One JSON object per line.
    Json,
}

/// `[log]`: where access-log lines go and how they look. Fixed at start.
#[derive(Clone, Debug, PartialEq)]
pub struct LogConfig {
    /// `"off"`, `"stdout"` or a file path.
    pub access: Target,
    /// `"combined"` (nginx's, plus weir's fields) or `"json"`.
    pub format: Format,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { access: Target::Off, format: Format::Combined }
    }
}

/// `[server]`: listeners, workers and client-side limits.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerConfig {
    /// Plain HTTP listener addresses.
    pub listen: Vec<SocketAddr>,
    /// Worker threads; 0 means one per CPU.
    pub workers: usize,
    /// Most client connections open at once, across all workers. Past it weir stops
    /// accepting until one closes, as nginx's `worker_connections` does.
    pub max_connections: usize,
    /// Time allowed for a client to send a whole request head (slowloris guard); then 408.
    pub header_timeout: Duration,
    /// Time an idle keep-alive client connection is kept open between requests.
    pub keepalive_timeout: Duration,
    /// Longest pause allowed while a client sends a request body; then the request fails.
    pub body_timeout: Duration,
    /// Longest time a write to a client may make no progress (the client takes no byte);
    /// then the response is cut. A client that drains slowly but steadily is never cut.
    pub send_timeout: Duration,
    /// Largest request head (request line plus headers) in bytes; past it, 431.
    pub max_header_bytes: usize,
    /// Most header fields in one request head; past it, 431.
    pub max_headers: usize,
    /// How long SIGTERM waits for in-flight requests before exiting anyway.
    pub drain_timeout: Duration,
    /// File to write the process id to, for `weir upgrade` and scripts; none by default.
    pub pid_file: Option<String>,
    /// Plain listeners serve HTTP/2 to a client that opens with the HTTP/2 preface (h2c
    /// with prior knowledge).
    pub h2c: bool,
    /// `[server.http2]`: limits of each HTTP/2 client connection.
    pub http2: Http2Config,
    /// `[[server.tls]]`: TLS listeners, in file order.
    pub tls: Vec<TlsListenerConfig>,
    /// Plain listeners expect a PROXY protocol header before anything else.
    pub proxy_protocol: bool,
    /// Peers whose `X-Forwarded-For` is kept and extended; `None` (the key absent) keeps
    /// every peer's, as before the key existed.
    pub trusted_proxies: Option<Vec<crate::cidr::Cidr>>,
    /// `request_id`: the header that carries each request's id; `None` (the default)
    /// sends none, as nginx and HAProxy do until configured.
    pub request_id: Option<RequestIdConfig>,
    /// Most connections open at once from one client address (nginx `limit_conn`);
    /// `None` (the key absent) sets no bound. Past it a connection is closed before any
    /// byte is read.
    pub max_connections_per_client: Option<usize>,
}

/// `[[server.tls]]`: a listener that terminates TLS, then serves HTTP/1.1 as plain ones do.
#[derive(Clone, Debug, PartialEq)]
pub struct TlsListenerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Certificates (chosen by SNI, the first is the default), versions and ALPN.
    pub settings: crate::tls::ListenerSettings,
}

/// `[admin]`: the admin listener.
#[derive(Clone, Debug, PartialEq)]
pub struct AdminConfig {
    /// Address, or `None` when disabled with `"off"`.
    pub listen: Option<SocketAddr>,
    /// Bearer token for mutating calls.
    pub token: Option<String>,
    /// Where API changes persist (issue #8).
    pub state_file: Option<String>,
    /// Whether `/metrics` is served and counted.
    pub metrics: bool,
    /// `allow`/`deny`: the client addresses the admin listener serves.
    pub acl: Acl,
}

/// `[[pool]]`: a named set of backends and how to reach them.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolConfig {
    /// Unique pool name, used by routes and metric labels.
    pub name: String,
    /// How a backend is picked.
    pub strategy: StrategyKind,
    /// The backends, in file order.
    pub backends: Vec<BackendConfig>,
    /// Time allowed to open a TCP connection to a backend; then 502.
    pub connect_timeout: Duration,
    /// Time allowed between sending a request and the response head; then 504.
    pub response_timeout: Duration,
    /// The backend idle timeout: longest time weir waits on a backend that sends no
    /// response body byte, or takes no request body byte. Time spent waiting on the
    /// client does not count.
    pub read_timeout: Duration,
    /// How long an idle pooled upstream connection is kept.
    pub idle_timeout: Duration,
    /// How long an upgraded connection (WebSocket) may pass no byte either way before
    /// weir closes it (HAProxy's `timeout tunnel`).
    pub tunnel_idle_timeout: Duration,
    /// How long a gRPC call may wait on a silent peer (the backend sends no response
    /// byte, the client no request byte) before weir ends it: instead of
    /// `response_timeout`, `read_timeout` and `[server] body_timeout`, which suit HTTP
    /// exchanges, not streams that stay open between messages.
    pub stream_idle_timeout: Duration,
    /// Most idle pooled connections per backend, per worker.
    pub max_idle: usize,
    /// `[pool.hash]`: the key and table of `consistent_hash` (required by it).
    pub hash: Option<HashConfig>,
    /// `[pool.sticky]`: the cookie and base strategy of `sticky` (defaults if absent).
    pub sticky: Option<StickyConfig>,
    /// `peak_ewma`'s decay window: how long a latency peak takes to fade (by `1/e`).
    pub ewma_decay: Duration,
    /// `[pool.health]`: active probes, if configured.
    pub health: Option<HealthConfig>,
    /// `[pool.passive]`: ejection on failed traffic.
    pub passive: PassiveConfig,
    /// `[pool.retry]`: retries and their budget.
    pub retry: RetryConfig,
    /// What to do when no backend is healthy.
    pub when_all_unhealthy: WhenAllUnhealthy,
    /// Window over which a joining or recovering backend's weight ramps from 10% to
    /// 100%; `None` turns slow start off.
    pub slow_start: Option<Duration>,
    /// Longest time between two lookups of a `resolve = true` backend's name; a shorter
    /// record TTL makes it sooner (see [`crate::discovery`]).
    pub dns_refresh: Duration,
    /// Identities (`HOST:PORT`) of backends set to drain through the admin API: they stay
    /// in the pool but take no new requests, sticky ones included.
    pub draining: BTreeSet<String>,
    /// `[pool.tls]`: how to speak TLS to the pool's `https://` backends; `None` uses the
    /// defaults (system roots, SNI from the host, ALPN `http/1.1`).
    pub tls: Option<crate::tls::ClientSettings>,
    /// `send_proxy_protocol`: each new upstream connection starts with a PROXY header
    /// naming the client (such connections are never pooled: see README).
    pub send_proxy_protocol: Option<crate::proxy_protocol::Version>,
    /// `protocol`: HTTP/1.1 or HTTP/2 to the backends.
    pub protocol: BackendProtocol,
    /// The limits of upstream HTTP/2 connections (`protocol = "h2c"`).
    pub h2: UpstreamH2,
}

/// `[pool.hash]`: what `consistent_hash` hashes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashConfig {
    /// Where the key comes from.
    pub key: HashKey,
    /// Maglev table entries: a prime from 1,021 to 5,000,011. Bigger tables spread
    /// weights more finely and move fewer keys when backends change, at 4 bytes an entry.
    pub table_size: usize,
}

/// `SameSite` attribute of the sticky cookie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SameSite {
    /// `SameSite=Strict`.
    Strict,
    /// `SameSite=Lax`.
    Lax,
    /// `SameSite=None` (browsers require `Secure` with it).
    None,
}

/// `[pool.sticky]`: the affinity cookie and the strategy that places new clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StickyConfig {
    /// Cookie name.
    pub cookie: String,
    /// Strategy for requests without a valid cookie; never `sticky`.
    pub base: StrategyKind,
    /// `Path` attribute.
    pub path: String,
    /// `Max-Age` attribute; `None` makes a session cookie.
    pub max_age: Option<Duration>,
    /// `Secure` attribute.
    pub secure: bool,
    /// `HttpOnly` attribute.
    pub http_only: bool,
    /// `SameSite` attribute, if any.
    pub same_site: Option<SameSite>,
    /// Key of the hash that makes backend ids; `None` uses a fixed default key. Instances
    /// that share clients must share it.
    pub secret: Option<String>,
    /// Whether the cookie is passed on to the backend (it is stripped by default).
    pub forward_cookie: bool,
}

impl Default for StickyConfig {
    fn default() -> Self {
        StickyConfig {
            // Namespaced so it does not collide with the application's own cookies.
            cookie: "weir_affinity".to_string(),
            // Envoy's and HAProxy's choice for spreading load without state.
            base: StrategyKind::LeastRequests,
            path: "/".to_string(),
            max_age: None,
            secure: false,
            // The application never needs to read it from scripts.
            http_only: true,
            same_site: None,
            secret: None,
            forward_cookie: false,
        }
    }
}

/// How a route matches the request's host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostMatch {
    /// Exact, case-insensitive host (lowercased here).
    Exact(String),
    /// `*.example.com`: stored as `.example.com`, matches any name ending in it.
    Suffix(String),
}

/// `[[route]]`: requests matching host and path prefix go to `pool`.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteConfig {
    /// Optional host match.
    pub host: Option<HostMatch>,
    /// Optional path prefix.
    pub path_prefix: Option<String>,
    /// Target pool name.
    pub pool: String,
    /// `allow`/`deny`: the client addresses the route serves; others get 403.
    pub acl: Acl,
    /// Header rules, redirect, rewrite and `max_body` ([`rules`]).
    pub rules: RouteRules,
    /// `limits`: names of the `[[limit]]` blocks every request of the route passes.
    pub limits: Vec<String>,
}

/// A configuration problem, located in its file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (or `<command line>`).
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file, self.line, self.col, self.message)
    }
}

impl std::error::Error for ConfigError {}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: vec![DEFAULT_LISTEN.parse().expect("constant address parses")],
            workers: 0,
            // Enough for the 10k idle-connection benchmark with headroom, and below a
            // typical `ulimit -n` of 65536 once upstream sockets are counted too.
            max_connections: 20_000,
            // nginx's client_header_timeout is 60s; HAProxy's recommended `timeout
            // http-request` is 10s. A legitimate client sends its head in milliseconds.
            header_timeout: Duration::from_secs(10),
            // nginx keepalive_timeout is 75s; 60s is a common load-balancer idle default
            // (AWS ALB) and below most clients' own pool timeouts.
            keepalive_timeout: Duration::from_secs(60),
            // Same as nginx's client_body_timeout.
            body_timeout: Duration::from_secs(60),
            // Same as nginx's send_timeout. It counts only time in which the client takes
            // no byte: the kernel reports room in the socket in batches (about a third of
            // its send buffer), so a much shorter value would cut very slow readers.
            send_timeout: Duration::from_secs(60),
            // nginx allows 4 x 8 KiB large header buffers; HAProxy's buffer is 16 KiB. 64 KiB
            // fits big cookies and JWTs while keeping a slow client's cost bounded.
            max_header_bytes: 64 * 1024,
            // Apache's LimitRequestFields default; more is a sign of abuse.
            max_headers: 100,
            // Long enough for ordinary requests to finish, short enough for deploys.
            drain_timeout: Duration::from_secs(30),
            pid_file: None,
            // As HAProxy: a plain listener that sees the HTTP/2 preface speaks HTTP/2; an
            // HTTP/1 request never starts with it, so HTTP/1 clients see no difference.
            h2c: true,
            http2: Http2Config::default(),
            tls: Vec::new(),
            // Off: a header from nobody in front would be read as a broken request.
            proxy_protocol: false,
            trusted_proxies: None,
            // Off, as nginx's `$request_id` and HAProxy's `unique-id-header` are until
            // configured: on, every head gains a field, which a byte-for-byte proxy
            // should not do unasked.
            request_id: None,
            // Off: many clients share an address (NAT, offices, mobile carriers), so a
            // default bound would refuse real users; an operator sets it knowingly.
            max_connections_per_client: None,
        }
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: Some(DEFAULT_ADMIN_LISTEN.parse().expect("constant address parses")),
            token: None,
            state_file: None,
            metrics: true,
            acl: Acl::default(),
        }
    }
}

impl PoolConfig {
    /// Whether the pool's strategy (or a sticky pool's base) learns from response latency.
    pub fn uses_latency(&self) -> bool {
        self.strategy == StrategyKind::PeakEwma
            || self.sticky.as_ref().is_some_and(|sticky| sticky.base == StrategyKind::PeakEwma)
    }

    /// A pool with default timeouts and limits.
    pub fn new(name: &str, strategy: StrategyKind, backends: Vec<BackendConfig>) -> PoolConfig {
        PoolConfig {
            name: name.to_string(),
            strategy,
            backends,
            // HAProxy's commonly recommended `timeout connect 5s`; a healthy backend on a
            // LAN connects in well under a millisecond.
            connect_timeout: Duration::from_secs(5),
            // nginx proxy_read_timeout default.
            response_timeout: Duration::from_secs(60),
            // nginx proxy_read_timeout default, applied between body reads.
            read_timeout: Duration::from_secs(60),
            // Below the 60s keep-alive timeout of most servers, so weir closes first and
            // rarely meets a connection the backend has already closed.
            idle_timeout: Duration::from_secs(30),
            // The `timeout tunnel 1h` of HAProxy's documentation examples (HAProxy has no
            // default; without one a tunnel falls back to its client and server
            // timeouts). nginx closes an upgraded connection after proxy_read_timeout (60 s)
            // of backend silence, which drops quiet WebSockets; an hour keeps them and
            // still frees what a vanished peer left behind.
            tunnel_idle_timeout: Duration::from_secs(3600),
            // The same hour as a tunnel: a gRPC stream is one too (watches and
            // subscriptions sit idle between events for minutes). Envoy's 5-minute
            // `stream_idle_timeout`, Traefik's 60 s and a 60 s HTTP read timeout are what
            // users of long streams report as cut streams; weir's PINGs, not this, find
            // a dead backend connection, and a call's own deadline bounds a unary call.
            stream_idle_timeout: Duration::from_secs(3600),
            // Per worker and backend. nginx's default `keepalive 32`; more fits the
            // 1,000-connection benchmark without reconnect churn.
            max_idle: 256,
            hash: None,
            sticky: None,
            // linkerd's default decay window for its peak-EWMA balancer.
            ewma_decay: Duration::from_secs(10),
            health: None,
            passive: PassiveConfig::default(),
            retry: RetryConfig::default(),
            // Fail open, as Envoy's panic mode and sozu do: a guess at a backend beats a
            // certain 503 when the health signal itself may be what broke.
            when_all_unhealthy: WhenAllUnhealthy::TryAll,
            slow_start: None,
            dns_refresh: dns::DEFAULT_DNS_REFRESH,
            draining: BTreeSet::new(),
            tls: None,
            send_proxy_protocol: None,
            protocol: BackendProtocol::Auto,
            h2: UpstreamH2::default(),
        }
    }
}
