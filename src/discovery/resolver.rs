//! Lookups through `hickory-resolver`: A and AAAA records of a name (both at once), and
//! SRV records with their targets' addresses.
//!
//! A [`Resolver`] is built for one round of lookups and dropped after it, so
//! /etc/resolv.conf and /etc/hosts are read again each round (an edited file is followed
//! as glibc follows it) and hickory's cache never serves an answer from an earlier round:
//! discovery decides itself when a name is looked up again (its TTL, `dns_refresh`).

use std::fmt;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::{RData, Record, RecordType};
use hickory_resolver::system_conf::parse_resolv_conf;
use hickory_resolver::TokioResolver;

use crate::config::dns::{MAX_DNS_SERVERS, MAX_DNS_TIMEOUT};
use crate::config::DnsConfig;

/// Where the system resolver's settings live.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";
/// The server glibc asks when resolv.conf names none (hickory would refuse to start).
const FALLBACK_SERVER: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Time per try with `[dns] servers` and no `[dns] timeout`: a recursive server on the
/// network answers in milliseconds, or from its cache well under a second.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Tries per query with `[dns] servers`: glibc's default (`RES_DFLRETRY`).
const DEFAULT_ATTEMPTS: usize = 2;
/// glibc's cap on `options attempts:`; hickory has none.
const MAX_ATTEMPTS: usize = 5;
/// glibc's cap on `options ndots:`; hickory has none.
const MAX_NDOTS: usize = 15;
/// Answers hickory caches. A resolver lives for one round, so this only lets the A and
/// AAAA lookups of one round share a CNAME or an SRV target; 256 covers the
/// `MAX_PARALLEL` lookups of a round with room to spare, and bounds the memory a round
/// can take.
const CACHE_SIZE: u64 = 256;
/// Most bytes of resolv.conf read: a real one is a few hundred bytes.
const MAX_RESOLV_CONF: u64 = 64 * 1024;

/// Why a query got no usable answer: its kind, for the `kind` label of
/// `weir_discovery_errors_total`, and hickory's error as text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The kind.
    pub kind: FailureKind,
    /// What hickory said.
    pub text: String,
}

/// What kind of failure a lookup met.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FailureKind {
    /// No answer in time.
    Timeout,
    /// The server answered with an error code (SERVFAIL, REFUSED, ...).
    Server,
    /// A socket error: nothing listens, the connection was refused or reset.
    Network,
    /// An answer with nothing usable (NXDOMAIN, no record, no target address).
    Empty,
    /// Anything else (a malformed reply, ...).
    Other,
}

impl FailureKind {
    /// Every kind, in the order `/metrics` lists them.
    pub const ALL: [FailureKind; 5] = [
        FailureKind::Timeout,
        FailureKind::Server,
        FailureKind::Network,
        FailureKind::Empty,
        FailureKind::Other,
    ];

    /// The metric label.
    pub fn name(self) -> &'static str {
        match self {
            FailureKind::Timeout => "timeout",
            FailureKind::Server => "server",
            FailureKind::Network => "network",
            FailureKind::Empty => "empty",
            FailureKind::Other => "other",
        }
    }
}

impl Failure {
    /// A failure of `kind`.
    pub fn new(kind: FailureKind, text: impl Into<String>) -> Failure {
        Failure { kind, text: text.into() }
    }

    /// hickory's error, classified.
    fn of(error: &NetError) -> Failure {
        let kind = match error {
            NetError::Timeout => FailureKind::Timeout,
            NetError::Dns(_) => FailureKind::Server,
            NetError::Io(_) | NetError::NoConnections => FailureKind::Network,
            error if error.is_connection_closed() => FailureKind::Network,
            _ => FailureKind::Other,
        };
        Failure::new(kind, error.to_string())
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The answer to one query: addresses (none for a name without such records) and the
/// lowest TTL of the records used.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Found {
    /// Addresses, in answer order.
    pub addrs: Vec<IpAddr>,
    /// Seconds the answer may be cached; `None` when nothing was found.
    pub ttl: Option<u32>,
}

/// A lookup of both address families of a name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lookup {
    /// A records.
    pub v4: Result<Found, Failure>,
    /// AAAA records.
    pub v6: Result<Found, Failure>,
}

/// hickory's resolver, set up as `[dns]` asks.
pub struct Resolver {
    inner: TokioResolver,
}

impl Resolver {
    /// The resolver `[dns]` asks for: its servers, with names looked up as written and no
    /// /etc/hosts, or else the system's, read from /etc/resolv.conf and /etc/hosts now.
    pub fn new(config: &DnsConfig) -> Resolver {
        let (resolver_config, mut opts) = match config.servers.is_empty() {
            true => system(),
            false => servers(config),
        };
        if let Some(timeout) = config.timeout {
            opts.timeout = timeout;
        }
        opts.cache_size = CACHE_SIZE;
        let provider = TokioRuntimeProvider::default();
        let builder = TokioResolver::builder_with_config(resolver_config, provider);
        let built = builder.with_options(opts.clone()).build();
        let inner = built.unwrap_or_else(|error| {
            // Only a TLS or DNSSEC setup can fail to build, and weir enables neither.
            tracing::warn!("dns: resolver setup failed ({error}); asking {FALLBACK_SERVER}");
            let fallback = ResolverConfig::from_parts(None, Vec::new(), vec![local()]);
            let builder = TokioResolver::builder_with_config(fallback, Default::default());
            builder.with_options(opts).build().expect("a plain UDP/TCP resolver builds")
        });
        Resolver { inner }
    }

    /// Looks up the A and AAAA records of `host` (both at once), through the search
    /// list and /etc/hosts as the settings say.
    pub async fn lookup(&self, host: &str) -> Lookup {
        let (v4, v6) =
            tokio::join!(self.query(host, RecordType::A), self.query(host, RecordType::AAAA));
        Lookup { v4, v6 }
    }

    /// The addresses of type `rtype` of `name`, aliases followed by hickory; a name that
    /// does not exist or has no such record is an empty answer, not a failure.
    async fn query(&self, name: &str, rtype: RecordType) -> Result<Found, Failure> {
        match self.inner.lookup(name, rtype).await {
            Ok(lookup) => Ok(addresses(lookup.answers(), rtype)),
            Err(error) => nothing_or_failure(error),
        }
    }
}

/// The SRV records of a name (none for a name without any), with their lowest TTL.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SrvFound {
    /// `(priority, weight, port, target)`, in answer order; a target of `.` (the service
    /// is not offered, RFC 2782) is left out.
    pub records: Vec<(u16, u16, u16, String)>,
    /// Seconds the answer may be cached; `None` when nothing was found.
    pub ttl: Option<u32>,
}

impl Resolver {
    /// The SRV records of `name`; a name that does not exist or has none is an empty
    /// answer, not a failure.
    pub async fn srv(&self, name: &str) -> Result<SrvFound, Failure> {
        let lookup = match self.inner.lookup(name, RecordType::SRV).await {
            Ok(lookup) => lookup,
            Err(error) => return nothing_or_failure(error).map(|_| SrvFound::default()),
        };
        let records = lookup.answers();
        let srv = |record: &Record| match &record.data {
            RData::SRV(srv) if !srv.target.is_root() => {
                let target = srv.target.to_ascii();
                Some((srv.priority, srv.weight, srv.port, target))
            }
            _ => None,
        };
        let found: Vec<_> = records.iter().filter_map(srv).collect();
        let ttl = records.iter().map(|record| record.ttl).min().filter(|_| !found.is_empty());
        Ok(SrvFound { records: found, ttl })
    }
}

/// The addresses of type `rtype` among `records`, with the lowest TTL of all of them
/// (CNAME records included: the alias may change first).
pub fn addresses(records: &[Record], rtype: RecordType) -> Found {
    let ip = |record: &Record| match (&record.data, rtype) {
        (RData::A(a), RecordType::A) => Some(IpAddr::from(a.0)),
        (RData::AAAA(aaaa), RecordType::AAAA) => Some(IpAddr::from(aaaa.0)),
        _ => None,
    };
    let addrs: Vec<IpAddr> = records.iter().filter_map(ip).collect();
    let ttl = records.iter().map(|record| record.ttl).min().filter(|_| !addrs.is_empty());
    Found { addrs, ttl }
}

/// NXDOMAIN and NODATA are answers with no address; anything else failed.
pub fn nothing_or_failure(error: NetError) -> Result<Found, Failure> {
    match error.is_no_records_found() || error.is_nx_domain() {
        true => Ok(Found::default()),
        false => Err(Failure::of(&error)),
    }
}

/// The lower of two TTLs, either of which may be unknown.
pub fn lower_ttl(a: Option<u32>, b: Option<u32>) -> Option<u32> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// `[dns] servers`: asked in order, over UDP then TCP on truncation, names as written.
fn servers(config: &DnsConfig) -> (ResolverConfig, ResolverOpts) {
    let server = |addr: &std::net::SocketAddr| {
        let connection = |mut connection: ConnectionConfig| {
            connection.port = addr.port();
            connection
        };
        let connections =
            vec![connection(ConnectionConfig::udp()), connection(ConnectionConfig::tcp())];
        NameServerConfig::new(addr.ip(), true, connections)
    };
    let name_servers = config.servers.iter().map(server).collect();
    let mut opts = ResolverOpts::default();
    opts.timeout = DEFAULT_TIMEOUT;
    opts.attempts = DEFAULT_ATTEMPTS;
    opts.use_hosts_file = ResolveHosts::Never;
    (ResolverConfig::from_parts(None, Vec::new(), name_servers), opts)
}

/// The system's settings: /etc/resolv.conf (bounded, glibc's caps applied) and
/// /etc/hosts; 127.0.0.1 when the file names no server or cannot be read.
fn system() -> (ResolverConfig, ResolverOpts) {
    let mut text = Vec::new();
    let read = std::fs::File::open(RESOLV_CONF)
        .and_then(|file| file.take(MAX_RESOLV_CONF).read_to_end(&mut text));
    if let Err(error) = read {
        tracing::debug!("dns: cannot read {RESOLV_CONF} ({error}); asking {FALLBACK_SERVER}");
    }
    let (config, mut opts) = from_resolv_conf(&text);
    opts.use_hosts_file = ResolveHosts::Always;
    (config, opts)
}

/// Settings from the text of a resolv.conf as hickory reads it, with glibc's caps (three
/// servers, `ndots` 15, `attempts` 5, `timeout` 30s) and its fallback server.
pub fn from_resolv_conf(text: &[u8]) -> (ResolverConfig, ResolverOpts) {
    let Ok((config, mut opts)) = parse_resolv_conf(text) else {
        let config = ResolverConfig::from_parts(None, Vec::new(), vec![local()]);
        // hickory's defaults are glibc's: `timeout` 5s, `attempts` 2, `ndots` 1.
        return (config, ResolverOpts::default());
    };
    let (domain, search, mut name_servers) = config.into_parts();
    name_servers.truncate(MAX_DNS_SERVERS);
    opts.ndots = opts.ndots.min(MAX_NDOTS);
    opts.attempts = opts.attempts.clamp(1, MAX_ATTEMPTS);
    opts.timeout = opts.timeout.clamp(Duration::from_secs(1), MAX_DNS_TIMEOUT);
    (ResolverConfig::from_parts(domain, search, name_servers), opts)
}

/// The fallback server, port 53, UDP and TCP.
fn local() -> NameServerConfig {
    NameServerConfig::udp_and_tcp(FALLBACK_SERVER)
}

#[cfg(test)]
#[path = "resolver_tests.rs"]
mod tests;
