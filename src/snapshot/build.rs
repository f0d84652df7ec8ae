//! Building a snapshot from a configuration, without touching the running one.
//!
//! A build reuses the live state of backends and pools that remain, and that state is
//! shared with the running snapshot. So the build itself changes none of it: what a swap
//! changes there (pool sizes, panic mode, ejection slots of backends that left, the
//! active flag of backends whose probes were turned off, peak EWMA's decay) is done by
//! [`Built::publish`], which the caller runs only once it has decided to swap. A change
//! refused after its build (the state file cannot be written) then leaves no trace in
//! live state; the caller puts the [`Registry`] itself back from a clone.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::time::Instant;

use super::leaving::{Key, Known};
use super::resolve::{connectors, Connectors};
use super::{Backend, BackendLive, BackendState, Pool, PoolLive, Registry, Route, Snapshot};
use crate::balance;
use crate::config::{BackendConfig, Config, PoolConfig, RouteConfig};
use crate::discovery::{self, Expanded};
use crate::health::{self, Event, Passive, Rules, Subject};
use crate::limit::{Limiter, RouteLimits};

/// Why a snapshot could not be built. Nothing changed.
#[derive(Debug)]
pub enum BuildError {
    /// A fixed backend's name did not resolve.
    Resolve {
        /// `HOST:PORT`.
        backend: String,
        /// The resolver's error.
        error: std::io::Error,
    },
    /// A fixed backend's name resolved to no address.
    NoAddress {
        /// `HOST:PORT`.
        backend: String,
    },
    /// An `https://` backend's TLS settings (CA, client certificate) are unusable.
    Tls {
        /// The pool.
        pool: String,
        /// `HOST:PORT`.
        backend: String,
        /// What is wrong.
        error: crate::tls::TlsError,
    },
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::Resolve { backend, error } => {
                write!(f, "backend {backend}: cannot resolve: {error}")
            }
            BuildError::NoAddress { backend } => {
                write!(f, "backend {backend}: resolves to no address")
            }
            BuildError::Tls { pool, backend, error } => {
                write!(f, "pool {pool} backend {backend}: TLS: {error}")
            }
        }
    }
}

impl std::error::Error for BuildError {}

/// A snapshot built but not swapped in yet.
#[must_use = "a built snapshot does nothing until it is published and swapped in"]
pub struct Built {
    snapshot: Snapshot,
    /// Backends of the last build that this one left out, with their live state.
    left: Vec<Arc<BackendLive>>,
}

impl Built {
    /// The snapshot, to look at before deciding to swap it in.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Applies to live state what swapping this snapshot in changes, and returns the
    /// snapshot to swap in. Call it only when the swap is decided.
    pub fn publish(self) -> Snapshot {
        for pool in &self.snapshot.pools {
            if pool.settings.health.is_none() {
                // The active flag has no owner any more.
                let rules = Rules::of(&pool.settings);
                let configured = pool.backends.iter().filter(|b| b.state != BackendState::Leaving);
                for backend in configured {
                    health::step(Subject::of(&pool.name, backend), rules, Event::ProbesRemoved);
                }
            }
            let rules = Rules::of(&pool.settings);
            let present = pool.backends.iter().filter(|b| b.state != BackendState::Leaving);
            for backend in present {
                // The source's readiness is one more flag of the one health machine.
                let event = Event::Source { serving: backend.serving };
                health::step(Subject::of(&pool.name, backend), rules, event);
            }
            match pool.tiered {
                true => pool.follow_tier(),
                false => pool.live.tier.store(u32::MAX, Ordering::Relaxed),
            }
            let size = u32::try_from(pool.backends.len()).unwrap_or(u32::MAX);
            pool.live.size.store(size, Ordering::Relaxed);
            // Panic mode is decided again by the first request that finds no healthy backend.
            pool.live.panic.store(false, Ordering::Relaxed);
            balance::activate(&pool.settings, &pool.backends);
        }
        for live in &self.left {
            if live.health.machine().passive != Passive::Clear {
                live.pool.release_ejection();
            }
        }
        self.snapshot
    }
}

impl Registry {
    /// [`Self::build`] after a DNS discovery change, a drain or an API change: backends
    /// without `resolve = true` keep the addresses they resolved to at load instead of
    /// being resolved again (a name not seen before is resolved).
    pub fn rebuild(&mut self, config: &Arc<Config>, generation: u64) -> Result<Built, BuildError> {
        self.build_with(config, generation, false)
    }

    /// Builds a snapshot from `config`, reusing live state for backends that remain and
    /// forgetting the rest, except removed backends with requests in flight, which stay
    /// as [`BackendState::Leaving`] until they finish. Fails without side effects if a
    /// backend does not resolve. Backends that join after the first snapshot start their
    /// slow start. Changes the registry but no live state: see [`Built::publish`].
    pub fn build(&mut self, config: &Arc<Config>, generation: u64) -> Result<Built, BuildError> {
        self.build_with(config, generation, true)
    }

    /// [`Self::build`], resolving fixed backends again only if `fresh`.
    fn build_with(
        &mut self,
        config: &Arc<Config>,
        generation: u64,
        fresh: bool,
    ) -> Result<Built, BuildError> {
        let mut fixed = HashMap::new();
        let mut resolved = Vec::new();
        for pool in &config.pools {
            for backend in &pool.backends {
                let addrs = self.fixed_addresses(backend, fresh, &mut fixed)?;
                resolved.push((addrs, connectors(pool, backend)?));
            }
        }
        self.fixed = fixed;
        // `discovered` is not pruned here: the DNS thread only pushes addresses that
        // changed, so a name removed and added back before its next pass would stay
        // without any. The DNS thread prunes it when it forgets the name.
        let (pools, kept) = self.pools_of(config, generation, resolved);
        let left = self.live.iter().filter(|(key, _)| !kept.live.contains_key(*key));
        let left = left.map(|(_, live)| Arc::clone(live)).collect();
        (self.live, self.pools, self.known) = (kept.live, kept.pools, kept.known);
        let limits = self.limits.build(&config.limits, self.workers);
        let routes = compile_routes(config, &limits);
        let config = Arc::clone(config);
        let snapshot = Snapshot { generation, pools, routes, config, limits };
        Ok(Built { snapshot, left })
    }

    /// The pools of `config` with their backends (departing ones included), and the live
    /// state and knowledge the registry keeps of them.
    fn pools_of(
        &mut self,
        config: &Config,
        generation: u64,
        resolved: Vec<(Vec<SocketAddr>, Connectors)>,
    ) -> (Vec<Pool>, Kept) {
        let mut resolved = resolved.into_iter();
        let (mut kept, mut kept_pools) = (HashMap::new(), HashMap::new());
        let mut known = HashMap::new();
        let mut built = Vec::with_capacity(config.pools.len());
        for pool in &config.pools {
            let live = self.pools.get(&pool.name).cloned();
            let live = live.unwrap_or_else(|| Arc::new(PoolLive::new(self.workers)));
            kept_pools.insert(pool.name.clone(), Arc::clone(&live));
            let mut backends: Vec<Backend> = Vec::with_capacity(pool.backends.len());
            for backend in &pool.backends {
                let (fixed, tls) = resolved.next().unwrap_or_default();
                for expanded in discovery::expand(backend, fixed, &self.discovered) {
                    let label = &expanded.label;
                    if backends.iter().any(|b| b.label.eq_ignore_ascii_case(label)) {
                        // Two names (or a name and a fixed backend) share an address.
                        tracing::debug!(pool = pool.name, "{label} is in the pool already");
                        continue;
                    }
                    let joins = generation > 1;
                    let one = self.backend(pool, backend, expanded, tls.clone(), &live, joins);
                    let key = (pool.name.clone(), one.label.clone());
                    known.insert(key.clone(), Known::of(&one));
                    kept.insert(key, Arc::clone(&one.live));
                    backends.push(one);
                }
            }
            built.push((pool, backends, live));
        }
        self.track_departures(config, &known);
        let mut pools = Vec::with_capacity(built.len());
        for (pool, mut backends, live) in built {
            for (key, departing) in self.departures.of_pool(&pool.name) {
                kept.insert(key, Arc::clone(&departing.live));
                backends.push(departing);
            }
            pools.push(compile_pool(pool, backends, live));
        }
        (pools, Kept { live: kept, pools: kept_pools, known })
    }

    /// One backend of `pool`, with its live state: kept, or new (and ramping if it
    /// `joins` a running balancer).
    fn backend(
        &mut self,
        pool: &PoolConfig,
        backend: &BackendConfig,
        expanded: Expanded,
        tls: Connectors,
        pool_live: &Arc<PoolLive>,
        joins: bool,
    ) -> Backend {
        let Expanded { label, addrs: resolved, weight, tier, serving } = expanded;
        let key = (pool.name.clone(), label.clone());
        let identity = super::tls_identity(&tls.0, &tls.1);
        // Same TLS identity: keep the live state, with its connector and session cache.
        let kept = self.live.get(&key).filter(|live| live.tls_identity() == identity);
        let live = match kept {
            Some(live) => Arc::clone(live),
            None => {
                let id = self.next_id;
                self.next_id += 1;
                let mut live = BackendLive::in_pool(id, self.workers, Arc::clone(pool_live));
                (live.tls, live.tls_auto) = tls;
                if joins {
                    live.health.start_ramp(pool.slow_start, Instant::now());
                }
                Arc::new(live)
            }
        };
        // Drain marks name the configured identity, which covers every address a
        // `resolve = true` backend expands into.
        let identity = backend.address.authority();
        let draining = pool.draining.iter().any(|d| d.eq_ignore_ascii_case(&identity));
        let state = if draining { BackendState::Draining } else { BackendState::Active };
        Backend {
            address: backend.address.clone(),
            label,
            resolved,
            weight,
            tier,
            serving,
            state,
            live,
        }
    }
}

/// What the registry keeps of a build: live state of backends (departing ones
/// included) and pools, and what it knew of each configured backend.
struct Kept {
    live: HashMap<Key, Arc<BackendLive>>,
    pools: HashMap<String, Arc<PoolLive>>,
    known: HashMap<Key, Known>,
}

/// A pool of this snapshot: the strategy over `backends`. Its pool-level flags are set
/// when the snapshot is published.
fn compile_pool(settings: &PoolConfig, backends: Vec<Backend>, live: Arc<PoolLive>) -> Pool {
    let strategy = balance::build(settings, &backends);
    let tiered = backends.iter().any(|b| b.tier != backends[0].tier);
    let (name, settings) = (settings.name.clone(), settings.clone());
    Pool { name, backends, strategy, settings, live, tiered }
}

fn compile_routes(config: &Config, limiters: &[Arc<Limiter>]) -> Vec<Route> {
    config
        .routes
        .iter()
        .filter_map(|route| {
            let pool = config.pools.iter().position(|p| p.name == route.pool)?;
            let acl = (!route.acl.is_open()).then(|| route.acl.clone());
            let (host, path_prefix) = (route.host.clone(), route.path_prefix.clone());
            let prepare = || Box::new(crate::rules::Prepared::new(route.rules.clone()));
            let rules = (!route.rules.is_empty()).then(prepare);
            let limits = route_limits(route, limiters);
            Some(Route { host, path_prefix, pool, acl, rules, limits })
        })
        .collect()
}

/// The limiters a route names, or `None` if it names none.
fn route_limits(route: &RouteConfig, limiters: &[Arc<Limiter>]) -> Option<RouteLimits> {
    let named = route
        .limits
        .iter()
        .filter_map(|name| limiters.iter().find(|limiter| limiter.config.name == *name).cloned());
    let limiters: Vec<_> = named.collect();
    let host = route.host.as_ref().map(|host| format!("{host:?}")).unwrap_or_default();
    let key = format!("{host}|{}", route.path_prefix.as_deref().unwrap_or(""));
    (!limiters.is_empty()).then(|| RouteLimits { limiters, route_key: key.into_bytes().into() })
}
