//! What the data path shares across workers, and nothing more: the data path cannot
//! reach the control plane (its lock, the registry) through it.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::{watch, Semaphore};

use crate::access_log::AccessLog;
use crate::listeners::Listeners;
use crate::metrics::FrontendStats;
use crate::shard::Sharded;
use crate::snapshot::Snapshot;

/// The data path's view of a running balancer, one per process, shared by every worker
/// (and read by the control plane, which is the only one that stores snapshots). The
/// process layer ([`crate::server`]) builds it.
pub struct Context {
    /// The current snapshot; the request path only loads it.
    pub snapshot: ArcSwap<Snapshot>,
    /// Frontend counters.
    pub frontend: Sharded<FrontendStats>,
    /// Permits for client connections (`max_connections`).
    pub connections: Arc<Semaphore>,
    /// Set to true once to start draining.
    pub shutdown: watch::Sender<bool>,
    /// The access log (`[log]`); fixed at start, a change needs a restart.
    pub access_log: AccessLog,
    /// The client listening sockets that workers take and follow; reloads add and
    /// remove addresses.
    pub listeners: Listeners,
}

impl Context {
    /// The view of a balancer that starts with `snapshot` and `workers` workers, before
    /// it serves: not draining, every connection permit free.
    pub fn new(
        snapshot: Snapshot,
        workers: usize,
        access_log: AccessLog,
        listeners: Listeners,
    ) -> Context {
        let permits = snapshot.config.server.max_connections;
        Context {
            snapshot: ArcSwap::from_pointee(snapshot),
            frontend: Sharded::new(workers),
            connections: Arc::new(Semaphore::new(permits)),
            shutdown: watch::channel(false).0,
            access_log,
            listeners,
        }
    }
}
