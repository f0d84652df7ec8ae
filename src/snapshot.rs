//! The immutable snapshot of everything that can change at runtime, and the live state
//! that outlives snapshots.
//!
//! A [`Snapshot`] holds pools, backends, weights and routes. It is never mutated: a reload
//! builds a new one and swaps it in atomically ([`arc_swap`]), so the request path reads
//! it without a lock. What must survive a swap (counters, in-flight counts, health, the
//! connection pool) hangs off [`BackendLive`], which the [`Registry`] keys by backend
//! identity (pool name plus `HOST:PORT`), never by index; what a pool keeps (panic mode,
//! the ejection count, the retry budget, pool counters) hangs off [`PoolLive`], keyed by
//! pool name. A `resolve = true` backend expands into one backend per address that
//! [`crate::discovery`] found for its name.
//! A backend removed while requests to it are in flight stays, as
//! [`BackendState::Leaving`], until they finish ([`leaving`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use crate::balance::peak_ewma::EwmaCell;
use crate::balance::weighted::WrrCell;
use crate::balance::Strategy;
use crate::config::{BackendAddress, Config, HostMatch, PoolConfig};
use crate::discovery::{self, Addresses};
use crate::health::Health;
use crate::metrics::{BackendStats, PoolStats};
use crate::retry_budget::Budget;
use crate::rng;
use crate::shard::Sharded;
use leaving::{Departures, Key, Known};

mod build;
pub mod leaving;
mod resolve;
use crate::tls::Connector;
pub use build::{BuildError, Built};

/// State of one pool that outlives snapshots, keyed by pool name.
#[derive(Debug)]
pub struct PoolLive {
    /// Every backend counts as usable: none was healthy and the pool fails open
    /// (`when_all_unhealthy = "try_all"`). Cleared when a backend recovers.
    pub panic: AtomicBool,
    /// Backends passively ejected now (ejected or half-open).
    pub ejected: AtomicU32,
    /// Backends in the pool, for the max-ejection guard.
    pub size: AtomicU32,
    /// The retry budget.
    pub budget: Budget,
    /// Counters, sharded per worker.
    pub stats: Sharded<PoolStats>,
    /// The tier new requests go to in a tiered pool ([`Pool::tiered`]): the lowest with a
    /// usable backend, updated by each pick. `u32::MAX` (every tier) otherwise.
    pub tier: AtomicU32,
}

impl PoolLive {
    /// Fresh state for a pool in a process with `workers` workers.
    pub fn new(workers: usize) -> PoolLive {
        PoolLive {
            panic: AtomicBool::new(false),
            ejected: AtomicU32::new(0),
            size: AtomicU32::new(0),
            budget: Budget::new(workers),
            stats: Sharded::new(workers),
            tier: AtomicU32::new(u32::MAX),
        }
    }

    /// Takes one ejection slot if fewer than `percent` of the pool (but always at least
    /// one backend, as in Envoy) are ejected.
    pub fn reserve_ejection(&self, percent: u32) -> bool {
        let size = u64::from(self.size.load(Ordering::Relaxed));
        let allowed = (size * u64::from(percent) / 100).max(1);
        let allowed = u32::try_from(allowed).unwrap_or(u32::MAX);
        let bump = |ejected: u32| (ejected < allowed).then_some(ejected + 1);
        self.ejected.fetch_update(Ordering::Relaxed, Ordering::Relaxed, bump).is_ok()
    }

    /// Gives an ejection slot back.
    pub fn release_ejection(&self) {
        let drop_one = |ejected: u32| ejected.checked_sub(1);
        let _ = self.ejected.fetch_update(Ordering::Relaxed, Ordering::Relaxed, drop_one);
    }

    /// A backend recovered: leave panic mode, if the pool was in it.
    pub fn leave_panic(&self, pool: &str, label: &str) {
        if self.panic.swap(false, Ordering::Relaxed) {
            tracing::info!(
                pool,
                "backend {label} is healthy; balancing over healthy backends again"
            );
        }
    }
}

/// State of one backend that outlives snapshots.
#[derive(Debug)]
pub struct BackendLive {
    /// Process-unique id; keys the per-worker connection pools.
    pub id: u64,
    /// Requests in flight to this backend across all workers.
    pub in_flight: AtomicU64,
    /// Whether the backend may take new requests: the published bit of [`Self::health`].
    pub healthy: AtomicBool,
    /// The health state machine that decides `healthy`.
    pub health: Health,
    /// The pool this backend belongs to (an identity names its pool).
    pub pool: Arc<PoolLive>,
    /// Counters, sharded per worker.
    pub stats: Sharded<BackendStats>,
    /// Smooth weighted round robin state (`current_weight`), one per worker: workers pick
    /// independently, as nginx workers do, so they never contend.
    pub wrr: Sharded<WrrCell>,
    /// Peak-EWMA latency estimate, shared by all workers.
    pub ewma: EwmaCell,
    /// The TLS connector of an `https://` backend, shared by all workers so its session
    /// cache resumes any worker's next connection. Part of the backend's identity: other
    /// TLS settings make another `BackendLive`, so pooled connections never cross them.
    pub tls: Option<Connector>,
    /// The connector of an `https://` backend in a `protocol = "auto"` pool: it offers
    /// ALPN `h2, http/1.1` for requests and HTTP probes, while [`Self::tls`] (the pool's
    /// `[pool.tls]` ALPN, `http/1.1` by default) serves upgrades. `None` otherwise.
    pub tls_auto: Option<Connector>,
    /// What this `auto` backend chose by ALPN last time ([`Alpn`] as a byte), so later
    /// attempts go to the right pool without another handshake. It lives with this
    /// identity: a new address or other TLS settings make a new `BackendLive`.
    alpn: AtomicU8,
}

/// What an `auto` backend chose by ALPN, as remembered in its live state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alpn {
    /// Not known yet: no handshake with this backend identity has finished.
    Unknown = 0,
    /// `http/1.1`, or no ALPN at all.
    Http1 = 1,
    /// `h2`.
    H2 = 2,
}

impl BackendLive {
    /// What this backend chose by ALPN last time.
    pub fn alpn(&self) -> Alpn {
        match self.alpn.load(Ordering::Relaxed) {
            1 => Alpn::Http1,
            2 => Alpn::H2,
            _ => Alpn::Unknown,
        }
    }

    /// Remembers what the backend chose by ALPN.
    pub fn learn_alpn(&self, alpn: Alpn) {
        self.alpn.store(alpn as u8, Ordering::Relaxed);
    }

    /// Fresh state for a backend seen for the first time, in a process with `workers`
    /// workers, in a pool of its own.
    pub fn new(id: u64, workers: usize) -> BackendLive {
        BackendLive::in_pool(id, workers, Arc::new(PoolLive::new(workers)))
    }

    /// Fresh state for a backend of `pool`.
    pub fn in_pool(id: u64, workers: usize, pool: Arc<PoolLive>) -> BackendLive {
        BackendLive {
            id,
            in_flight: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
            health: Health::default(),
            pool,
            stats: Sharded::new(workers),
            wrr: Sharded::new(workers),
            ewma: EwmaCell::default(),
            tls: None,
            tls_auto: None,
            alpn: AtomicU8::new(Alpn::Unknown as u8),
        }
    }

    /// The TLS identity this backend's connections were made with (0 for plain).
    fn tls_identity(&self) -> u64 {
        tls_identity(&self.tls, &self.tls_auto)
    }

    /// Whether the balancer may send new requests here.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Whether a strategy may pick this backend: healthy, awaiting its half-open trial,
    /// or in a pool that fails open. Only the first load is made for a healthy backend.
    pub fn is_selectable(&self) -> bool {
        self.is_healthy() || self.health.awaits_trial() || self.pool.panic.load(Ordering::Relaxed)
    }
}

/// The identity of a backend's connectors (0 for a plain backend): both take part, so
/// a pool changing to or from `auto` makes a new `BackendLive`.
fn tls_identity(tls: &Option<Connector>, auto: &Option<Connector>) -> u64 {
    let identity =
        |connector: &Option<Connector>| connector.as_ref().map_or(0, Connector::identity);
    identity(tls) ^ identity(auto).rotate_left(1)
}

/// Whether a backend takes new requests, as this snapshot sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendState {
    /// Takes new requests.
    Active,
    /// Set to drain (`PATCH ... {"state": "drain"}`): stays, takes no new requests.
    Draining,
    /// Removed from the configuration; stays only until its in-flight requests finish.
    Leaving,
}

impl BackendState {
    /// The name shown by the API.
    pub fn name(self) -> &'static str {
        match self {
            BackendState::Active => "active",
            BackendState::Draining => "draining",
            BackendState::Leaving => "leaving",
        }
    }
}

/// A backend as this snapshot sees it.
#[derive(Debug)]
pub struct Backend {
    /// Where it lives, as configured: for a discovered backend, the name it was found
    /// by, which is also what the `Host` of probes names.
    pub address: BackendAddress,
    /// `HOST:PORT`, the identity and metrics label; `IP:PORT` for a discovered backend.
    pub label: String,
    /// Addresses the host resolved to when the snapshot was built.
    pub resolved: Vec<SocketAddr>,
    /// Relative weight.
    pub weight: u32,
    /// Its tier: the SRV priority of a discovered endpoint, past every SRV priority when
    /// it is terminating ([`crate::discovery::Endpoint::tier`]); 0 for a configured
    /// backend. Only the lowest tier with a usable backend takes new requests.
    pub tier: u32,
    /// Whether its discovery source says it serves; fed to its health machine when the
    /// snapshot is published. Always true for a configured backend.
    pub serving: bool,
    /// Whether it takes new requests at all; a draining or leaving backend takes none,
    /// not even a sticky client's.
    pub state: BackendState,
    /// State shared with other snapshots.
    pub live: Arc<BackendLive>,
}

impl Backend {
    /// Whether a strategy may pick this backend for a new request.
    pub fn is_usable(&self) -> bool {
        self.is_usable_in_any_tier() && self.tier <= self.live.pool.tier.load(Ordering::Relaxed)
    }

    /// [`Self::is_usable`], whatever the pool's current tier.
    pub fn is_usable_in_any_tier(&self) -> bool {
        self.weight > 0 && self.is_active() && self.live.is_selectable()
    }

    /// Whether it is neither draining nor leaving.
    pub fn is_active(&self) -> bool {
        self.state == BackendState::Active
    }

    /// The weight share while slow start lasts, in permille (100 to 1000), else `None`.
    pub fn ramp_permille(&self) -> Option<u64> {
        self.live.health.ramp_permille()
    }

    /// The weight in thousandths, slow start applied: what weight-comparing strategies
    /// (least requests, peak EWMA) use.
    pub fn effective_weight_milli(&self) -> u64 {
        u64::from(self.weight) * self.ramp_permille().unwrap_or(1000)
    }

    /// Whether a pick that landed here keeps it: always, except during slow start, when
    /// it is kept with the ramp's probability. Strategies that cannot scale a weight
    /// cheaply (round-robin schedules, cumulative tables) thin picks this way instead.
    pub fn admits(&self) -> bool {
        self.ramp_permille().is_none_or(|permille| rng::below(1000) < permille)
    }

    /// [`Self::admits`] for a hash key, deterministic: as the ramp grows, a growing,
    /// stable share of the keys that map here stay here.
    pub fn admits_key(&self, key: u64) -> bool {
        self.ramp_permille().is_none_or(|permille| {
            let mixed = (key ^ (key >> 31)).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
            mixed % 1000 < permille
        })
    }
}

/// A pool as this snapshot sees it.
pub struct Pool {
    /// Pool name.
    pub name: String,
    /// Backends in configured order.
    pub backends: Vec<Backend>,
    /// How a backend is picked.
    pub strategy: Box<dyn Strategy>,
    /// Timeouts and limits for this pool's upstream connections.
    pub settings: PoolConfig,
    /// State shared with other snapshots: panic mode, ejections, retry budget.
    pub live: Arc<PoolLive>,
    /// Its backends are in more than one tier (SRV priorities, terminating endpoints):
    /// each pick first finds the lowest tier with a usable backend, an O(n) pass paid
    /// only by such pools.
    pub tiered: bool,
}

impl Pool {
    /// Sets the pool's current tier to the lowest that has a usable backend (every tier
    /// when none has), so strategies pick in that tier only. Only for a tiered pool.
    pub fn follow_tier(&self) {
        let usable = self.backends.iter().filter(|b| b.is_usable_in_any_tier());
        let tier = usable.map(|b| b.tier).min().unwrap_or(u32::MAX);
        if self.live.tier.load(Ordering::Relaxed) != tier {
            self.live.tier.store(tier, Ordering::Relaxed);
        }
    }
}

/// A compiled route.
#[derive(Debug)]
pub struct Route {
    /// Host match, if any.
    pub host: Option<HostMatch>,
    /// Path prefix, if any.
    pub path_prefix: Option<String>,
    /// Index into [`Snapshot::pools`].
    pub pool: usize,
    /// Who may use the route; `None` when everyone may (no lists), so the request path
    /// skips the check.
    pub acl: Option<crate::config::Acl>,
    /// Header rules, redirect, rewrite, `max_body`; `None` when the route has none, so
    /// the request path pays one check.
    pub rules: Option<Box<crate::rules::Prepared>>,
    /// The route's rate limits; `None` when it names none, so the request path skips them.
    pub limits: Option<crate::limit::RouteLimits>,
}

/// Everything the request path reads, immutable once built.
pub struct Snapshot {
    /// Increases by one on every swap: a successful reload, or a change of the addresses
    /// DNS discovery found.
    pub generation: u64,
    /// Pools in configured order; the first is the default.
    pub pools: Vec<Pool>,
    /// Routes in configured order.
    pub routes: Vec<Route>,
    /// The configuration this was built from.
    pub config: Arc<Config>,
    /// The `[[limit]]` limiters, in file order (for metrics and the API).
    pub limits: Vec<Arc<crate::limit::Limiter>>,
}

impl Snapshot {
    /// Every (pool, backend) pair, for metrics and status.
    pub fn backends(&self) -> impl Iterator<Item = (&Pool, &Backend)> {
        self.pools.iter().flat_map(|pool| pool.backends.iter().map(move |backend| (pool, backend)))
    }
}

/// Keeps [`BackendLive`] by identity across snapshots, and [`PoolLive`] by pool name.
/// Used only on the reload path. Cloning it is cheap (maps of `Arc`s): a change that may
/// still fail after its build keeps a clone to put back.
#[derive(Clone)]
pub struct Registry {
    live: HashMap<Key, Arc<BackendLive>>,
    pools: HashMap<String, Arc<PoolLive>>,
    /// Addresses of the `resolve = true` names, kept up to date by discovery.
    discovered: Addresses,
    /// What each other backend (`HOST:PORT`) resolved to at the last load.
    fixed: HashMap<String, Vec<SocketAddr>>,
    /// The configured backends of the last snapshot, so a removed one can drain out.
    known: HashMap<Key, Known>,
    /// Removed backends draining out ([`leaving`]).
    departures: Departures,
    /// Limiters by configuration, so an unchanged `[[limit]]` keeps its state.
    limits: crate::limit::Registry,
    next_id: u64,
    workers: usize,
}

impl Registry {
    /// An empty registry for a process with `workers` workers.
    pub fn new(workers: usize) -> Registry {
        Registry {
            live: HashMap::new(),
            pools: HashMap::new(),
            discovered: Addresses::new(),
            fixed: HashMap::new(),
            known: HashMap::new(),
            departures: Departures::default(),
            limits: crate::limit::Registry::default(),
            next_id: 1,
            workers,
        }
    }

    /// The addresses that `resolve = true` backends expand into.
    pub fn discovered_mut(&mut self) -> &mut Addresses {
        &mut self.discovered
    }

    /// Forgets the discovered addresses of names `config` no longer asks to discover.
    pub fn prune_discovered(&mut self, config: &Config) {
        let names = discovery::names(config);
        self.discovered.retain(|host, _| names.contains_key(host));
    }
}

#[cfg(test)]
#[path = "snapshot/tiers_tests.rs"]
mod tiers_tests;
