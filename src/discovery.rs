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
//! `resolve = "srv"` names are followed the same way, their SRV records giving each
//! target's port, priority and weight ([`srv`]).
//!
//! Every source hands over a complete set of [`Endpoint`]s for a name (never a delta);
//! the sets go through [`coalesce`], which rebuilds the snapshot at most
//! [`coalesce::MIN_REBUILD_INTERVAL`] apart however often sources change.
//!
//! - [`endpoint`]: the endpoint set every source produces, its readiness and its hash.
//! - [`kubernetes`]: Kubernetes Services, from their EndpointSlices, on a thread of their
//!   own.
//! - [`names`]: which names a config discovers, and the backends each set expands into.
//! - [`resolver`]: lookups through `hickory-resolver` (resolv.conf, /etc/hosts, UDP and
//!   TCP, CNAME, SRV).
//! - [`srv`]: an SRV name's targets and their addresses, as endpoints.
//! - [`coalesce`]: the throttle between sources and snapshot rebuilds.
//! - [`stats`]: lookups, errors, endpoints, generation and set hash per source, for
//!   `/metrics` and `/api/v1/pools`.

pub mod coalesce;
pub mod endpoint;
pub mod kubernetes;
pub mod names;
pub mod resolver;
pub mod srv;
pub mod stats;

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::{sleep_until, timeout_at, Instant};

use crate::config::dns::MIN_DNS_REFRESH;
use crate::config::Config;
pub use endpoint::{Endpoint, Readiness};
pub use names::{
    expand, is_kubernetes, key, names, source_label, Expanded, K8S_PREFIX, SRV_PREFIX,
};
use resolver::{Failure, FailureKind, Found, Lookup, Resolver};
use srv::SrvAnswer;

/// The last known endpoint set of each name (keyed by [`key`]), canonical: what a
/// snapshot expands discovered backends into.
pub type Addresses = HashMap<String, Vec<Endpoint>>;

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

/// What the thread knows of one name.
#[derive(Debug)]
struct Entry {
    /// Last known endpoints, canonical.
    endpoints: Vec<Endpoint>,
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
        let kept = match self.endpoints.len() {
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
        for (host, answer) in results {
            if let Some(set) = discovery.record(&host, answer, Instant::now()) {
                tracing::info!(host, "dns: {host} resolves to {}", describe(&set));
            }
        }
        discovery
    }

    /// The counters `/metrics` shows, shared with the thread that updates them.
    pub fn stats(&self) -> Arc<stats::Stats> {
        Arc::clone(&self.stats)
    }

    /// The last known endpoints of every name.
    pub fn addresses(&self) -> Addresses {
        let entries = self.entries.iter();
        entries.map(|(host, entry)| (host.clone(), entry.endpoints.clone())).collect()
    }

    /// Follows the names of `config`: new ones are due now, removed ones are forgotten.
    /// Returns whether any was forgotten.
    fn sync(&mut self, config: &Config, now: Instant) -> bool {
        let mut names = names(config);
        let before = self.entries.len();
        self.entries.retain(|host, _| names.contains_key(host));
        let forgot = self.entries.len() != before;
        self.stats.retain(|host| names.contains_key(host));
        // Kubernetes Services have a thread of their own ([`kubernetes`]).
        names.retain(|host, _| !is_kubernetes(host));
        for (host, refresh) in names {
            let entry = self.entries.entry(host).or_insert_with(|| Entry {
                endpoints: Vec::new(),
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

    /// Records an answer for `host`; returns its new endpoint set if it changed.
    fn record(&mut self, host: &str, answer: Answer, now: Instant) -> Option<Vec<Endpoint>> {
        match answer {
            Answer::Addresses(lookup) => self.apply(host, lookup, now),
            Answer::Srv(result) => self.apply_srv(host, result, now),
        }
    }

    /// Records a lookup of `host`; returns the new address set if it changed.
    fn apply(&mut self, host: &str, lookup: Lookup, now: Instant) -> Option<Vec<Endpoint>> {
        let entry = self.entries.get_mut(host)?;
        let (mut ttl, mut problems) = (None::<u32>, Vec::new());
        let mut take = |result: Result<Found, Failure>, kept: Vec<IpAddr>| match result {
            Ok(found) => {
                ttl = resolver::lower_ttl(ttl, found.ttl);
                found.addrs
            }
            Err(failure) => {
                problems.push(failure);
                kept
            }
        };
        let old = entry.endpoints.iter().map(|endpoint| endpoint.ip);
        let (old_v4, old_v6) = old.partition(|ip| ip.is_ipv4());
        let mut addrs = take(lookup.v4, old_v4);
        addrs.extend(take(lookup.v6, old_v6));
        addrs.sort();
        addrs.dedup();
        if problems.len() == 2 || addrs.is_empty() {
            let empty = || Failure::new(FailureKind::Empty, "it has no A or AAAA record");
            let failure = problems.into_iter().next().unwrap_or_else(empty);
            return self.failed(host, failure, now);
        }
        let entry = self.entries.get_mut(host)?;
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
        let endpoints = addrs.into_iter().map(Endpoint::address).collect();
        let partial = problems.first().map(|failure| failure.kind);
        self.found(host, endpoints, ttl, partial, now)
    }

    /// Records an SRV answer for `host`.
    fn apply_srv(
        &mut self,
        host: &str,
        result: Result<SrvAnswer, Failure>,
        now: Instant,
    ) -> Option<Vec<Endpoint>> {
        match result {
            Ok(answer) if !answer.endpoints.is_empty() => {
                self.entries.get_mut(host)?.recovered(host);
                self.found(host, answer.endpoints, answer.ttl, None, now)
            }
            Ok(_) => {
                let failure = Failure::new(FailureKind::Empty, "no SRV target has an address");
                self.failed(host, failure, now)
            }
            Err(failure) => self.failed(host, failure, now),
        }
    }

    /// A lookup of `host` gave `endpoints` (canonical), with `partial` the kind of a
    /// failed half; returns them if they changed.
    fn found(
        &mut self,
        host: &str,
        endpoints: Vec<Endpoint>,
        ttl: Option<u32>,
        partial: Option<FailureKind>,
        now: Instant,
    ) -> Option<Vec<Endpoint>> {
        let entry = self.entries.get_mut(host)?;
        entry.due = now + next_wait(ttl, entry.refresh);
        let changed = endpoints != entry.endpoints;
        self.stats.found(host, partial, &endpoints, changed);
        changed.then(|| {
            entry.endpoints.clone_from(&endpoints);
            endpoints
        })
    }

    /// A lookup of `host` failed or found nothing: the last set stays.
    fn failed(&mut self, host: &str, failure: Failure, now: Instant) -> Option<Vec<Endpoint>> {
        let entry = self.entries.get_mut(host)?;
        self.stats.failed(host, failure.kind, entry.endpoints.len());
        entry.failed(host, &failure.to_string(), now);
        entry.due = now + RETRY_AFTER_FAILURE.min(entry.refresh).max(MIN_REFRESH);
        None
    }
}

/// What one lookup of a name gave.
#[derive(Clone, Debug)]
pub enum Answer {
    /// The A and AAAA records of a `resolve = true` name.
    Addresses(Lookup),
    /// The SRV records of a `resolve = "srv"` name, with their targets' addresses.
    Srv(Result<SrvAnswer, Failure>),
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
) -> Vec<(String, Answer)> {
    let mut results = Vec::with_capacity(hosts.len());
    let mut running = JoinSet::new();
    for host in hosts {
        if running.len() >= MAX_PARALLEL {
            results.extend(running.join_next().await.and_then(Result::ok));
        }
        let resolver = Arc::clone(&resolver);
        running.spawn(async move {
            let late = || Failure::new(FailureKind::Timeout, "no answer by the deadline");
            let answer = match host.strip_prefix(SRV_PREFIX) {
                Some(name) => {
                    let answer = timeout_at(deadline, srv::lookup(&resolver, name)).await;
                    Answer::Srv(answer.unwrap_or_else(|_| Err(late())))
                }
                None => {
                    let lookup = timeout_at(deadline, resolver.lookup(&host)).await;
                    let timed_out = || Lookup { v4: Err(late()), v6: Err(late()) };
                    Answer::Addresses(lookup.unwrap_or_else(|_| timed_out()))
                }
            };
            (host, answer)
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
    /// New endpoint sets of names: swap in a snapshot built with them, or log why not.
    /// Called by [`coalesce`] only, at most once per
    /// [`coalesce::MIN_REBUILD_INTERVAL`].
    fn rediscovered(&self, changed: Vec<(String, Vec<Endpoint>)>);
    /// Forget the addresses of names the running configuration no longer has.
    fn forget_names(&self);
}

/// Starts the `weir-dns` thread for the balancer `host` runs, going on from what
/// `discovery` found at start. It stops when the balancer starts draining.
pub fn spawn(
    host: Arc<dyn Host>,
    discovery: Discovery,
    sink: Arc<coalesce::Sink>,
) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name("weir-dns".to_string()).spawn(move || {
        let built = tokio::runtime::Builder::new_current_thread().enable_all().build();
        match built {
            Ok(runtime) => runtime.block_on(async {
                // The throttle runs beside the lookups, on the same thread.
                let throttle = coalesce::run(Arc::clone(&host), Arc::clone(&sink));
                tokio::join!(run(host, discovery, sink), throttle);
            }),
            Err(error) => tracing::error!("cannot start the DNS discovery thread: {error}"),
        }
    })
}

async fn run(host: Arc<dyn Host>, mut discovery: Discovery, sink: Arc<coalesce::Sink>) {
    let mut shutdown = host.shutdown();
    // The Kubernetes thread is started here the first time the running config has a
    // Kubernetes backend (at start, or at the reload that adds the first one), so a
    // config without one costs no thread and no client.
    let mut kubernetes_started = false;
    loop {
        let config = host.config();
        if !kubernetes_started && kubernetes::wanted(&config) {
            let (stats, sink) = (discovery.stats(), Arc::clone(&sink));
            // Detached: it ends by itself when the balancer drains.
            match kubernetes::spawn(Arc::clone(&host), stats, sink) {
                Ok(_) => kubernetes_started = true,
                Err(error) => tracing::error!("cannot start the Kubernetes thread: {error}"),
            }
        }
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
        for (name, answer) in results {
            if let Some(set) = discovery.record(&name, answer, Instant::now()) {
                tracing::info!(host = name, "dns: {name} now resolves to {}", describe(&set));
                sink.push(name, set);
            }
        }
    }
}

/// A set for the log: `[10.0.0.1, 10.0.0.2]`, or with ports, priorities and weights
/// where the source gives them.
fn describe(set: &[Endpoint]) -> String {
    let one = |e: &Endpoint| match (e.port, e.weight) {
        (Some(port), Some(weight)) => {
            format!("{} (priority {}, weight {weight})", e.socket(port), e.priority)
        }
        _ => e.ip.to_string(),
    };
    format!("[{}]", set.iter().map(one).collect::<Vec<_>>().join(", "))
}

#[cfg(test)]
#[path = "discovery_tests.rs"]
mod tests;
