//! DNS discovery: a backend written `{ address = "api.internal:8080", resolve = true }`
//! stands for every address its name resolves to, looked up again and again.
//!
//! The `weir-dns` thread owns one `Entry` per name. A name is looked up again after its
//! record TTL, clamped to [`MIN_REFRESH`] and the pool's `dns_refresh` (the lowest, when
//! pools share a name). When the address set of any name changes, the thread hands the
//! new sets to its [`Host`] (the control plane), which rebuilds the snapshot from the running
//! config: each address becomes a backend of its own (label `IP:PORT`, Host and probes
//! still naming the configured host), new ones join with slow start, vanished ones leave
//! the snapshot and so drain. A failed lookup, or one that finds no address, keeps the
//! last known addresses (per family: a failed AAAA query keeps the IPv6 ones) and is
//! logged at most once per [`FAILURE_LOG_INTERVAL`].
//!
//! - [`resolver`]: lookups through `hickory-resolver` (resolv.conf, /etc/hosts, UDP and
//!   TCP, CNAME).
//! - [`stats`]: lookups and addresses per name, for `/metrics`.

pub mod resolver;
pub mod stats;

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::{sleep_until, timeout_at, Instant};

use crate::config::dns::MIN_DNS_REFRESH;
use crate::config::{BackendConfig, Config};
use resolver::{Failure, Found, Lookup, Resolver};

/// The last known addresses of each name (keyed by [`key`]): what a
/// snapshot expands `resolve = true` backends into.
pub type Addresses = HashMap<String, Vec<IpAddr>>;

/// Shortest wait between two lookups of a name, whatever its TTL (0 included): a bound
/// on the queries weir sends, per name.
pub const MIN_REFRESH: Duration = MIN_DNS_REFRESH;
/// Wait before looking a name up again after a failure (unless `dns_refresh` is
/// shorter): soon enough to pick up a fixed DNS server quickly, rare enough not to add to
/// the load of a struggling one.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);
/// Failures of one name are logged at most this often (with a count), so a DNS outage
/// does not flood the log.
pub const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(60);
/// Most addresses kept per name (the lowest, in address order, so the choice is stable):
/// each becomes a backend with its own state, so the bound caps what one DNS answer can
/// make weir allocate.
pub const MAX_ADDRESSES: usize = 256;
/// Most lookups in flight at once, each holding a socket or two.
const MAX_PARALLEL: usize = 16;
/// Longest one lookup may take in the background, all tries and aliases included.
const LOOKUP_DEADLINE: Duration = Duration::from_secs(30);
/// How long start waits for the first lookups; past it, weir starts without the
/// addresses still missing and the thread keeps trying.
const STARTUP_WAIT: Duration = Duration::from_secs(10);
/// How often the thread checks the snapshot for names added or removed by a reload.
const RESYNC_POLL: Duration = Duration::from_secs(1);

/// The key of a backend's name in [`Addresses`]: lower case, without a trailing dot.
pub fn key(backend: &BackendConfig) -> String {
    let host = &backend.address.host;
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

/// The backends `backend` stands for, as `(label, addresses)`: itself with its `fixed`
/// addresses, or with `resolve = true` one per discovered address, labelled `IP:PORT`.
pub fn expand(
    backend: &BackendConfig,
    fixed: Vec<SocketAddr>,
    discovered: &Addresses,
) -> Vec<(String, Vec<SocketAddr>)> {
    if !backend.resolve {
        return vec![(backend.address.authority(), fixed)];
    }
    let ips = discovered.get(&key(backend)).map_or(&[][..], Vec::as_slice);
    let addr = |ip: &IpAddr| SocketAddr::new(*ip, backend.address.port);
    ips.iter().map(addr).map(|addr| (addr.to_string(), vec![addr])).collect()
}

/// The names `config` asks to discover, each with its longest wait between lookups.
pub fn names(config: &Config) -> HashMap<String, Duration> {
    let mut names: HashMap<String, Duration> = HashMap::new();
    for pool in &config.pools {
        for backend in pool.backends.iter().filter(|backend| backend.resolve) {
            let refresh = names.entry(key(backend)).or_insert(pool.dns_refresh);
            *refresh = (*refresh).min(pool.dns_refresh);
        }
    }
    names
}

/// What the thread knows of one name.
#[derive(Debug)]
struct Entry {
    /// Last known addresses, sorted.
    addrs: Vec<IpAddr>,
    /// Longest wait between lookups (`dns_refresh`).
    refresh: Duration,
    /// When to look the name up next.
    due: Instant,
    /// Failed lookups since the last good one.
    failures: u64,
    /// When a failure was last logged.
    warned: Option<Instant>,
}

impl Entry {
    fn failed(&mut self, host: &str, why: &str, now: Instant) {
        self.failures += 1;
        if self.warned.is_some_and(|at| now.duration_since(at) < FAILURE_LOG_INTERVAL) {
            return;
        }
        self.warned = Some(now);
        let failures = self.failures;
        let kept = match self.addrs.len() {
            0 => "no address known yet".to_string(),
            n => format!("keeping the last {n} known addresses"),
        };
        tracing::warn!(host, failures, "dns: looking up {host} failed: {why}; {kept}");
    }

    fn recovered(&mut self, host: &str) {
        if self.failures > 0 {
            tracing::info!(host, "dns: {host} resolves again after {} failures", self.failures);
        }
        (self.failures, self.warned) = (0, None);
    }
}

/// The names being discovered and what is known of them.
#[derive(Debug, Default)]
pub struct Discovery {
    entries: HashMap<String, Entry>,
    stats: Arc<stats::Stats>,
}

impl Discovery {
    /// Looks up every name of `config` once, waiting at most `STARTUP_WAIT`, so the
    /// first snapshot has the addresses. Callable from inside a runtime or outside one.
    pub fn start(config: &Config) -> Discovery {
        let mut discovery = Discovery::default();
        let now = Instant::now();
        discovery.sync(config, now);
        let hosts = discovery.due(now);
        if hosts.is_empty() {
            return discovery;
        }
        let resolver = Arc::new(Resolver::new(&config.dns));
        // A thread of its own: the caller may be on a runtime, which cannot block_on.
        let results = std::thread::scope(|scope| {
            let lookups = scope.spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
                let deadline = Instant::now() + STARTUP_WAIT;
                runtime.ok().map(|rt| rt.block_on(resolve_all(resolver, hosts, deadline)))
            });
            lookups.join().ok().flatten().unwrap_or_default()
        });
        for (host, lookup) in results {
            if let Some(addrs) = discovery.apply(&host, lookup, Instant::now()) {
                tracing::info!(host, "dns: {host} resolves to {addrs:?}");
            }
        }
        discovery
    }

    /// The counters `/metrics` shows, shared with the thread that updates them.
    pub fn stats(&self) -> Arc<stats::Stats> {
        Arc::clone(&self.stats)
    }

    /// The last known addresses of every name.
    pub fn addresses(&self) -> Addresses {
        self.entries.iter().map(|(host, entry)| (host.clone(), entry.addrs.clone())).collect()
    }

    /// Follows the names of `config`: new ones are due now, removed ones are forgotten.
    /// Returns whether any was forgotten.
    fn sync(&mut self, config: &Config, now: Instant) -> bool {
        let names = names(config);
        let before = self.entries.len();
        self.entries.retain(|host, _| names.contains_key(host));
        let forgot = self.entries.len() != before;
        self.stats.retain(|host| names.contains_key(host));
        for (host, refresh) in names {
            let entry = self.entries.entry(host).or_insert_with(|| Entry {
                addrs: Vec::new(),
                refresh,
                due: now,
                failures: 0,
                warned: None,
            });
            if entry.refresh != refresh {
                entry.refresh = refresh;
                entry.due = entry.due.min(now + refresh);
            }
        }
        forgot
    }

    /// Names due for a lookup.
    fn due(&self, now: Instant) -> Vec<String> {
        let due = self.entries.iter().filter(|(_, entry)| entry.due <= now);
        due.map(|(host, _)| host.clone()).collect()
    }

    /// When the next lookup is due.
    fn next_due(&self) -> Option<Instant> {
        self.entries.values().map(|entry| entry.due).min()
    }

    /// Records a lookup of `host`; returns the new address set if it changed.
    fn apply(&mut self, host: &str, lookup: Lookup, now: Instant) -> Option<Vec<IpAddr>> {
        let entry = self.entries.get_mut(host)?;
        let (mut ttl, mut problems) = (None::<u32>, Vec::new());
        let mut take = |result: Result<Found, Failure>, kept: Vec<IpAddr>| match result {
            Ok(found) => {
                ttl = resolver::lower_ttl(ttl, found.ttl);
                found.addrs
            }
            Err(failure) => {
                problems.push(failure.to_string());
                kept
            }
        };
        let (old_v4, old_v6) = entry.addrs.iter().partition(|ip| ip.is_ipv4());
        let mut addrs = take(lookup.v4, old_v4);
        addrs.extend(take(lookup.v6, old_v6));
        addrs.sort();
        addrs.dedup();
        let failed = problems.len() == 2 || addrs.is_empty();
        let kept = if failed { entry.addrs.len() } else { addrs.len().min(MAX_ADDRESSES) };
        self.stats.record(host, problems.is_empty() && !failed, kept);
        if failed {
            let why = problems.first().map_or("it has no A or AAAA record", String::as_str);
            entry.failed(host, why, now);
            entry.due = now + RETRY_AFTER_FAILURE.min(entry.refresh).max(MIN_REFRESH);
            return None;
        }
        match problems.first() {
            Some(why) => entry.failed(host, &format!("one address family: {why}"), now),
            None => entry.recovered(host),
        }
        if addrs.len() > MAX_ADDRESSES {
            tracing::warn!(
                host,
                "dns: {host} has {} addresses; using {MAX_ADDRESSES}",
                addrs.len()
            );
            addrs.truncate(MAX_ADDRESSES);
        }
        entry.due = now + next_wait(ttl, entry.refresh);
        (addrs != entry.addrs).then(|| {
            entry.addrs.clone_from(&addrs);
            addrs
        })
    }
}

/// Wait before the next lookup: the TTL, within [`MIN_REFRESH`] and `refresh`.
pub fn next_wait(ttl: Option<u32>, refresh: Duration) -> Duration {
    let refresh = refresh.max(MIN_REFRESH);
    ttl.map_or(refresh, |ttl| Duration::from_secs(u64::from(ttl))).clamp(MIN_REFRESH, refresh)
}

/// Looks up `hosts`, at most [`MAX_PARALLEL`] at once; a lookup still running at
/// `deadline` counts as timed out.
async fn resolve_all(
    resolver: Arc<Resolver>,
    hosts: Vec<String>,
    deadline: Instant,
) -> Vec<(String, Lookup)> {
    let mut results = Vec::with_capacity(hosts.len());
    let mut running = JoinSet::new();
    for host in hosts {
        if running.len() >= MAX_PARALLEL {
            results.extend(running.join_next().await.and_then(Result::ok));
        }
        let resolver = Arc::clone(&resolver);
        running.spawn(async move {
            let late = || Err(Failure("no answer within the lookup's deadline".to_string()));
            let timed_out = Lookup { v4: late(), v6: late() };
            let lookup = timeout_at(deadline, resolver.lookup(&host)).await;
            (host, lookup.unwrap_or(timed_out))
        });
    }
    while let Some(done) = running.join_next().await {
        results.extend(done.ok());
    }
    results
}

/// Who the `weir-dns` thread works for: the owner of the running configuration, which
/// rebuilds the snapshot with what the thread finds. The thread never touches the
/// registry itself.
pub trait Host: Send + Sync + 'static {
    /// The running configuration: the names to discover.
    fn config(&self) -> Arc<Config>;
    /// Becomes true once, when the balancer starts draining.
    fn shutdown(&self) -> tokio::sync::watch::Receiver<bool>;
    /// New address sets of names: swap in a snapshot built with them, or log why not.
    fn rediscovered(&self, changed: Vec<(String, Vec<IpAddr>)>);
    /// Forget the addresses of names the running configuration no longer has.
    fn forget_names(&self);
}

/// Starts the `weir-dns` thread for the balancer `host` runs, going on from what
/// `discovery` found at start. It stops when the balancer starts draining.
pub fn spawn(host: Arc<dyn Host>, discovery: Discovery) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name("weir-dns".to_string()).spawn(move || {
        let built = tokio::runtime::Builder::new_current_thread().enable_all().build();
        match built {
            Ok(runtime) => runtime.block_on(run(host, discovery)),
            Err(error) => tracing::error!("cannot start the DNS discovery thread: {error}"),
        }
    })
}

async fn run(host: Arc<dyn Host>, mut discovery: Discovery) {
    let mut shutdown = host.shutdown();
    loop {
        let config = host.config();
        let now = Instant::now();
        if discovery.sync(&config, now) {
            // Only this thread prunes the registry's addresses, together with its own
            // entries: a name added back later is looked up again and its addresses
            // pushed, even if they did not change.
            host.forget_names();
        }
        let due = discovery.due(now);
        if due.is_empty() {
            let wake =
                discovery.next_due().map_or(now + RESYNC_POLL, |due| due.min(now + RESYNC_POLL));
            tokio::select! {
                _ = shutdown.wait_for(|draining| *draining) => break,
                () = sleep_until(wake) => continue,
            }
        }
        // Re-read each round, so an edited resolv.conf is followed as glibc does.
        let resolver = Arc::new(Resolver::new(&config.dns));
        let results = tokio::select! {
            _ = shutdown.wait_for(|draining| *draining) => break,
            results = resolve_all(resolver, due, now + LOOKUP_DEADLINE) => results,
        };
        let changed: Vec<(String, Vec<IpAddr>)> = results
            .into_iter()
            .filter_map(|(host, lookup)| {
                let addrs = discovery.apply(&host, lookup, Instant::now())?;
                Some((host, addrs))
            })
            .collect();
        if changed.is_empty() {
            continue;
        }
        for (host, addrs) in &changed {
            tracing::info!(host, "dns: {host} now resolves to {addrs:?}");
        }
        host.rediscovered(changed);
    }
}

#[cfg(test)]
#[path = "discovery_tests.rs"]
mod tests;
