//! The immutable snapshot of everything that can change at runtime, and the live state
//! that outlives snapshots.
//!
//! A [`Snapshot`] holds pools, backends, weights and routes. It is never mutated: a reload
//! builds a new one and swaps it in atomically ([`arc_swap`]), so the request path reads
//! it without a lock. What must survive a swap (counters, in-flight counts, health, the
//! connection pool) hangs off [`BackendLive`], which the [`Registry`] keys by backend
//! identity (pool name plus `HOST:PORT`), never by index.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::balance::peak_ewma::EwmaCell;
use crate::balance::weighted::WrrCell;
use crate::balance::{self, Strategy};
use crate::config::{BackendAddress, Config, HostMatch, PoolConfig};
use crate::metrics::{BackendStats, Sharded};

/// State of one backend that outlives snapshots.
#[derive(Debug)]
pub struct BackendLive {
    /// Process-unique id; keys the per-worker connection pools.
    pub id: u64,
    /// Requests in flight to this backend across all workers.
    pub in_flight: AtomicU64,
    /// Whether the backend may take new requests (issue #5 feeds this).
    pub healthy: AtomicBool,
    /// Counters, sharded per worker.
    pub stats: Sharded<BackendStats>,
    /// Smooth weighted round robin state (`current_weight`), one per worker: workers pick
    /// independently, as nginx workers do, so they never contend.
    pub wrr: Sharded<WrrCell>,
    /// Peak-EWMA latency estimate, shared by all workers.
    pub ewma: EwmaCell,
}

impl BackendLive {
    /// Fresh state for a backend seen for the first time, in a process with `workers`
    /// workers.
    pub fn new(id: u64, workers: usize) -> BackendLive {
        BackendLive {
            id,
            in_flight: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
            stats: Sharded::new(workers),
            wrr: Sharded::new(workers),
            ewma: EwmaCell::default(),
        }
    }

    /// Whether the balancer may send new requests here.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
}

/// A backend as this snapshot sees it.
#[derive(Debug)]
pub struct Backend {
    /// Where it lives, as configured.
    pub address: BackendAddress,
    /// `HOST:PORT`, the identity and metrics label.
    pub label: String,
    /// Addresses the host resolved to when the snapshot was built.
    pub resolved: Vec<SocketAddr>,
    /// Relative weight.
    pub weight: u32,
    /// State shared with other snapshots.
    pub live: Arc<BackendLive>,
}

impl Backend {
    /// Whether a strategy may pick this backend for a new request.
    pub fn is_usable(&self) -> bool {
        self.weight > 0 && self.live.is_healthy()
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
}

/// Everything the request path reads, immutable once built.
pub struct Snapshot {
    /// Increases by one on every successful reload.
    pub generation: u64,
    /// Pools in configured order; the first is the default.
    pub pools: Vec<Pool>,
    /// Routes in configured order.
    pub routes: Vec<Route>,
    /// The configuration this was built from.
    pub config: Arc<Config>,
}

impl Snapshot {
    /// Every (pool, backend) pair, for metrics and status.
    pub fn backends(&self) -> impl Iterator<Item = (&Pool, &Backend)> {
        self.pools.iter().flat_map(|pool| pool.backends.iter().map(move |backend| (pool, backend)))
    }
}

/// Keeps [`BackendLive`] by identity across snapshots. Used only on the reload path.
pub struct Registry {
    live: HashMap<(String, String), Arc<BackendLive>>,
    next_id: u64,
    workers: usize,
}

impl Registry {
    /// An empty registry for a process with `workers` workers.
    pub fn new(workers: usize) -> Registry {
        Registry { live: HashMap::new(), next_id: 1, workers }
    }

    /// Builds a snapshot from `config`, reusing live state for backends that remain and
    /// forgetting the rest. Fails without side effects if a backend does not resolve.
    pub fn build(&mut self, config: &Arc<Config>, generation: u64) -> Result<Snapshot, String> {
        let mut resolved = Vec::new();
        for pool in &config.pools {
            for backend in &pool.backends {
                resolved.push(resolve(&backend.address)?);
            }
        }
        let mut resolved = resolved.into_iter();
        let mut kept = HashMap::new();
        let mut pools = Vec::with_capacity(config.pools.len());
        for pool in &config.pools {
            let mut backends = Vec::with_capacity(pool.backends.len());
            for backend in &pool.backends {
                let label = backend.address.authority();
                let key = (pool.name.clone(), label.clone());
                let live = self.live_for(&key);
                kept.insert(key, Arc::clone(&live));
                backends.push(Backend {
                    address: backend.address.clone(),
                    label,
                    resolved: resolved.next().unwrap_or_default(),
                    weight: backend.weight,
                    live,
                });
            }
            let strategy = balance::build(pool, &backends);
            pools.push(Pool {
                name: pool.name.clone(),
                backends,
                strategy,
                settings: pool.clone(),
            });
        }
        self.live = kept;
        let routes = compile_routes(config);
        Ok(Snapshot { generation, pools, routes, config: Arc::clone(config) })
    }

    fn live_for(&mut self, key: &(String, String)) -> Arc<BackendLive> {
        if let Some(live) = self.live.get(key) {
            return Arc::clone(live);
        }
        let id = self.next_id;
        self.next_id += 1;
        Arc::new(BackendLive::new(id, self.workers))
    }
}

fn compile_routes(config: &Config) -> Vec<Route> {
    config
        .routes
        .iter()
        .filter_map(|route| {
            let pool = config.pools.iter().position(|p| p.name == route.pool)?;
            Some(Route { host: route.host.clone(), path_prefix: route.path_prefix.clone(), pool })
        })
        .collect()
}

/// Resolves a backend host once. Issue #8 adds periodic re-resolution.
fn resolve(address: &BackendAddress) -> Result<Vec<SocketAddr>, String> {
    let addrs: Vec<SocketAddr> = (address.host.as_str(), address.port)
        .to_socket_addrs()
        .map_err(|e| format!("backend {}: cannot resolve: {e}", address.authority()))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("backend {}: resolves to no address", address.authority()));
    }
    Ok(addrs)
}
