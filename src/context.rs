//! What the data path shares across workers, and nothing more: the data path cannot
//! reach the control plane (its lock, the registry) through it.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use tokio::sync::{watch, Semaphore};

use crate::access_log::AccessLog;
use crate::limit::conn::{Admission, ConnTable, Lease};
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
    /// Open connections per client address (`max_connections_per_client`), made on first
    /// use, so a balancer that never sets the key never allocates it.
    pub per_client: OnceLock<Arc<ConnTable>>,
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
            per_client: OnceLock::new(),
        }
    }

    /// Counts a new connection from `ip` against `max_connections_per_client`: its lease
    /// (none when the key is unset or the table had no room), or `None` when the address
    /// has its maximum open and the connection must close unread.
    pub fn admit_client(&self, ip: IpAddr) -> Option<Option<Lease>> {
        let snapshot = self.snapshot.load();
        let server = &snapshot.config.server;
        let Some(most) = server.max_connections_per_client else { return Some(None) };
        // Sized by `max_connections` when first needed; that key needs a restart anyway.
        let table =
            self.per_client.get_or_init(|| Arc::new(ConnTable::new(server.max_connections)));
        match table.admit(ip, most) {
            Admission::Counted(lease) => Some(Some(lease)),
            Admission::Untracked => Some(None),
            Admission::Refused => None,
        }
    }
}
