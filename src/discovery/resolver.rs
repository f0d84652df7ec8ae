//! A small stub resolver: asks the configured recursive servers for A and AAAA records
//! over UDP, falls back to TCP when a reply is truncated, and follows CNAME records.
//!
//! Every exchange is bounded: one `timeout` per try (`attempts` rounds over at most three
//! servers), a reply is matched on id and question (anything else is ignored, up to
//! `MAX_STRAYS` datagrams), and sizes are capped by the DNS formats themselves (64 KiB
//! messages, 255-byte names). Without `[dns] servers` it reads /etc/resolv.conf as glibc
//! does: `nameserver`, `search`/`domain`, and `options ndots: timeout: attempts:`; and
//! /etc/hosts first ([`Hosts`]).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::hosts::Hosts;
use super::wire::{self, Message, RCODE_NOERROR, RCODE_NXDOMAIN, TYPE_A, TYPE_AAAA};
use crate::config::dns::{MAX_DNS_SERVERS, MAX_DNS_TIMEOUT};
use crate::config::DnsConfig;
use crate::rng;

/// Where the system resolver's settings live.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";
/// The server glibc asks when resolv.conf names none.
const FALLBACK_SERVER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 53);
/// Time per try with `[dns] servers` and no `[dns] timeout`: a recursive server on the
/// network answers in milliseconds, or from its cache well under a second.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// resolv.conf's `timeout` default (glibc's `RES_TIMEOUT`).
const RESOLV_CONF_TIMEOUT: Duration = Duration::from_secs(5);
/// Rounds over the servers: glibc's `RES_DFLRETRY`.
const DEFAULT_ATTEMPTS: usize = 2;
/// glibc's cap on `options attempts:`.
const MAX_ATTEMPTS: usize = 5;
/// glibc's cap on `options ndots:`.
const MAX_NDOTS: usize = 15;
/// Most search domains, as glibc (`MAXDNSRCH`).
const MAX_SEARCH: usize = 6;
/// Datagrams ignored (wrong id, wrong question, garbage) before a try is abandoned: a
/// bound on the work an off-path sender can cause within one timeout.
const MAX_STRAYS: usize = 16;
/// Largest DNS message: its length is a 16-bit field over TCP and a UDP datagram's limit.
const MAX_MESSAGE: usize = 65_535;
/// Queries for a CNAME target that the reply did not resolve itself.
const MAX_ALIAS_QUERIES: usize = 4;
/// Most bytes of resolv.conf read: a real one is a few hundred bytes.
const MAX_RESOLV_CONF: u64 = 64 * 1024;

/// Why a query got no usable answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// No server answered in time.
    Timeout,
    /// A server answered with this error code (SERVFAIL is 2, REFUSED 5).
    Server(u8),
    /// A socket error.
    Io(String),
    /// The reply could not be used.
    Malformed(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Timeout => f.write_str("no DNS server answered in time"),
            Failure::Server(2) => f.write_str("DNS server failure (SERVFAIL)"),
            Failure::Server(5) => f.write_str("DNS server refused the query (REFUSED)"),
            Failure::Server(code) => write!(f, "DNS server error code {code}"),
            Failure::Io(error) => write!(f, "DNS socket error: {error}"),
            Failure::Malformed(why) => write!(f, "unusable DNS reply: {why}"),
        }
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

/// The servers and rules one lookup follows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolver {
    /// Servers, asked in order.
    pub servers: Vec<SocketAddr>,
    /// Domains appended to names with fewer than `ndots` dots, tried first for those.
    pub search: Vec<String>,
    /// Dots a name needs to be tried as written before the search list.
    pub ndots: usize,
    /// Time per try.
    pub timeout: Duration,
    /// Rounds over the servers.
    pub attempts: usize,
    /// Names answered from /etc/hosts before any query (empty with `[dns] servers`).
    pub hosts: Hosts,
}

impl Resolver {
    /// The resolver `[dns]` asks for: its servers, with names looked up as written, or
    /// else the system's, read from /etc/resolv.conf now.
    pub fn new(config: &DnsConfig) -> Resolver {
        if !config.servers.is_empty() {
            return Resolver {
                servers: config.servers.clone(),
                search: Vec::new(),
                ndots: 1,
                timeout: config.timeout.unwrap_or(DEFAULT_TIMEOUT),
                attempts: DEFAULT_ATTEMPTS,
                hosts: Hosts::default(),
            };
        }
        let text = read_resolv_conf().unwrap_or_else(|error| {
            tracing::debug!("cannot read {RESOLV_CONF} ({error}); asking {FALLBACK_SERVER}");
            String::new()
        });
        let mut resolver = Resolver::from_resolv_conf(&text);
        if let Some(timeout) = config.timeout {
            resolver.timeout = timeout;
        }
        resolver.hosts = Hosts::read();
        resolver
    }

    /// Settings from the text of a resolv.conf, with glibc's defaults and caps.
    pub fn from_resolv_conf(text: &str) -> Resolver {
        let mut out = Resolver {
            servers: Vec::new(),
            search: Vec::new(),
            ndots: 1,
            timeout: RESOLV_CONF_TIMEOUT,
            attempts: DEFAULT_ATTEMPTS,
            hosts: Hosts::default(),
        };
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or_default();
            let mut words = line.split_whitespace();
            match (words.next(), words.next()) {
                (Some("nameserver"), Some(ip)) => {
                    // A zone index (`fe80::1%eth0`) cannot be kept; the address is.
                    let ip = ip.split('%').next().unwrap_or_default().parse::<IpAddr>();
                    match ip {
                        Ok(ip) if out.servers.len() < MAX_DNS_SERVERS => {
                            out.servers.push(SocketAddr::new(ip, 53));
                        }
                        _ => {}
                    }
                }
                (Some("search" | "domain"), Some(first)) => {
                    let all = std::iter::once(first).chain(words);
                    let usable = all.filter(|d| wire::check_name(d).is_ok()).map(wire::normalize);
                    out.search = usable.take(MAX_SEARCH).collect();
                }
                (Some("options"), Some(first)) => {
                    std::iter::once(first).chain(words).for_each(|o| out.option(o));
                }
                _ => {}
            }
        }
        if out.servers.is_empty() {
            out.servers.push(FALLBACK_SERVER);
        }
        out
    }

    /// One `options` word; unknown ones are ignored, as glibc does.
    fn option(&mut self, word: &str) {
        let Some((name, value)) = word.split_once(':') else {
            return;
        };
        let Ok(value) = value.parse::<u64>() else {
            return;
        };
        let value = usize::try_from(value).unwrap_or(usize::MAX);
        match name {
            "ndots" => self.ndots = value.min(MAX_NDOTS),
            "timeout" => {
                let secs = Duration::from_secs(value.max(1) as u64);
                self.timeout = secs.min(MAX_DNS_TIMEOUT);
            }
            "attempts" => self.attempts = value.clamp(1, MAX_ATTEMPTS),
            _ => {}
        }
    }

    /// The names tried for `host`, in order, as glibc orders them.
    pub fn candidates(&self, host: &str) -> Vec<String> {
        if let Some(absolute) = host.strip_suffix('.') {
            return vec![wire::normalize(absolute)];
        }
        let host = wire::normalize(host);
        let searched = self.search.iter().map(|domain| format!("{host}.{domain}"));
        let searched: Vec<String> = searched.filter(|n| wire::check_name(n).is_ok()).collect();
        if host.matches('.').count() >= self.ndots {
            std::iter::once(host).chain(searched).collect()
        } else {
            searched.into_iter().chain(std::iter::once(host)).collect()
        }
    }

    /// Looks up the A and AAAA records of `host` (both at once), through the search list:
    /// the first name with any address answers; a failed query ends the search, since a
    /// later name could only be a wrong answer.
    pub async fn lookup(&self, host: &str) -> Lookup {
        if let Some(ips) = self.hosts.get(host) {
            let family = |v4: bool| {
                let addrs = ips.iter().filter(|ip| ip.is_ipv4() == v4).copied().collect();
                Ok(Found { addrs, ttl: None })
            };
            return Lookup { v4: family(true), v6: family(false) };
        }
        let candidates = self.candidates(host);
        let mut last = Lookup { v4: Ok(Found::default()), v6: Ok(Found::default()) };
        for name in &candidates {
            let (v4, v6) = tokio::join!(self.query(name, TYPE_A), self.query(name, TYPE_AAAA));
            let empty = |r: &Result<Found, Failure>| r.as_ref().is_ok_and(|f| f.addrs.is_empty());
            let nothing = empty(&v4) && empty(&v6);
            last = Lookup { v4, v6 };
            if !nothing {
                break;
            }
        }
        last
    }

    /// The addresses of type `qtype` of `name`, following aliases.
    async fn query(&self, name: &str, qtype: u16) -> Result<Found, Failure> {
        let mut name = wire::normalize(name);
        let mut ttl: Option<u32> = None;
        for _ in 0..MAX_ALIAS_QUERIES {
            let reply = self.ask(&name, qtype).await?;
            if reply.rcode == RCODE_NXDOMAIN {
                return Ok(Found::default());
            }
            let chain = wire::follow(&reply.answers, &name, qtype).map_err(Failure::Malformed)?;
            ttl = lower_ttl(ttl, chain.ttl);
            if !chain.addrs.is_empty() {
                return Ok(Found { addrs: chain.addrs, ttl });
            }
            if chain.name == name {
                return Ok(Found::default()); // The name exists without such records.
            }
            name = chain.name;
        }
        Err(Failure::Malformed(format!("more than {MAX_ALIAS_QUERIES} CNAME queries in a row")))
    }

    /// A reply from the first server that gives a usable one, `attempts` rounds over
    /// the servers.
    async fn ask(&self, name: &str, qtype: u16) -> Result<Message, Failure> {
        let mut last = Failure::Timeout;
        for _ in 0..self.attempts {
            for &server in &self.servers {
                match exchange(server, name, qtype, self.timeout).await {
                    Ok(reply) if matches!(reply.rcode, RCODE_NOERROR | RCODE_NXDOMAIN) => {
                        return Ok(reply);
                    }
                    Ok(reply) => last = Failure::Server(reply.rcode),
                    Err(failure) => last = failure,
                }
            }
        }
        Err(last)
    }
}

/// The lower of two TTLs, either of which may be unknown.
pub fn lower_ttl(a: Option<u32>, b: Option<u32>) -> Option<u32> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Reads resolv.conf, bounded.
fn read_resolv_conf() -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(RESOLV_CONF)?.take(MAX_RESOLV_CONF).read_to_string(&mut text)?;
    Ok(text)
}

/// One query to one server: UDP, then TCP if the reply was truncated; each within
/// `timeout`.
async fn exchange(
    server: SocketAddr,
    name: &str,
    qtype: u16,
    timeout: Duration,
) -> Result<Message, Failure> {
    let id = rng::next_u64() as u16;
    let query = Query { server, bytes: wire::encode_query(id, name, qtype), id, name, qtype };
    let udp = tokio::time::timeout(timeout, query.udp());
    let reply = udp.await.map_err(|_| Failure::Timeout)??;
    if !reply.truncated {
        return Ok(reply);
    }
    let tcp = tokio::time::timeout(timeout, query.tcp());
    let reply = tcp.await.map_err(|_| Failure::Timeout)??;
    match reply.truncated {
        false => Ok(reply),
        true => Err(Failure::Malformed("truncated over TCP".to_string())),
    }
}

/// A query on its way to one server.
struct Query<'a> {
    server: SocketAddr,
    bytes: Vec<u8>,
    id: u16,
    name: &'a str,
    qtype: u16,
}

fn io_failure(error: std::io::Error) -> Failure {
    Failure::Io(error.to_string())
}

impl Query<'_> {
    /// Whether `reply` answers this query: same id and question.
    fn answered_by(&self, reply: &Message) -> bool {
        reply.id == self.id && reply.question.0 == self.name && reply.question.1 == self.qtype
    }

    async fn udp(&self) -> Result<Message, Failure> {
        let local: SocketAddr = match self.server {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(local).await.map_err(io_failure)?;
        // Connected: the kernel drops datagrams from any other address.
        socket.connect(self.server).await.map_err(io_failure)?;
        socket.send(&self.bytes).await.map_err(io_failure)?;
        let mut buf = vec![0; MAX_MESSAGE];
        for _ in 0..MAX_STRAYS {
            let n = socket.recv(&mut buf).await.map_err(io_failure)?;
            match wire::decode(&buf[..n]) {
                Ok(reply) if self.answered_by(&reply) => return Ok(reply),
                Ok(_) => tracing::debug!("dns: ignoring a reply that does not match the query"),
                Err(why) => tracing::debug!("dns: ignoring a malformed reply: {why}"),
            }
        }
        Err(Failure::Malformed(format!("{MAX_STRAYS} replies that do not match the query")))
    }

    async fn tcp(&self) -> Result<Message, Failure> {
        let mut stream = TcpStream::connect(self.server).await.map_err(io_failure)?;
        let len = u16::try_from(self.bytes.len());
        let len = len.map_err(|_| Failure::Malformed("query too long".into()))?;
        let mut framed = Vec::with_capacity(2 + self.bytes.len());
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&self.bytes);
        stream.write_all(&framed).await.map_err(io_failure)?;
        let len = usize::from(stream.read_u16().await.map_err(io_failure)?);
        let mut buf = vec![0; len];
        stream.read_exact(&mut buf).await.map_err(io_failure)?;
        let reply = wire::decode(&buf).map_err(Failure::Malformed)?;
        match self.answered_by(&reply) {
            true => Ok(reply),
            false => Err(Failure::Malformed("TCP reply does not match the query".to_string())),
        }
    }
}

#[cfg(test)]
#[path = "resolver_tests.rs"]
mod tests;
