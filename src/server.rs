//! Starting, reloading and stopping a balancer in-process.
//!
//! [`start`] binds every socket first (so a bad address fails before anything runs), then
//! starts the workers and the admin listener, and returns a [`Handle`]. The binary and the
//! integration tests drive the same handle: `reload` swaps in a new snapshot atomically,
//! `shutdown` stops accepting and drains.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use arc_swap::ArcSwap;
use tokio::sync::{watch, Notify, Semaphore};

use crate::access_log::AccessLog;
use crate::admin;
use crate::config::{Config, MAX_WORKERS};
use crate::control::{self, Control, ReloadStats};
use crate::discovery::{self, Discovery};
use crate::health;
use crate::listeners::{Inherited, Listeners};
use crate::metrics::FrontendStats;
use crate::shard::Sharded;
use crate::snapshot::{Registry, Snapshot};
use crate::tls::Acceptor;
use crate::worker;

/// State shared by every worker and the admin listener.
pub struct Shared {
    /// The current snapshot; the request path only loads it.
    pub snapshot: ArcSwap<Snapshot>,
    /// Frontend counters.
    pub frontend: Sharded<FrontendStats>,
    /// Permits for client connections (`max_connections`).
    pub connections: Arc<Semaphore>,
    /// Set to true once to start draining.
    pub shutdown: watch::Sender<bool>,
    /// Wakes the health thread after a reload, so probers follow the new snapshot.
    pub health_wake: Notify,
    /// The drain thread, unparked when a new snapshot may have started a drain and at
    /// shutdown (see `control::spawn_drainer`).
    pub(crate) drainer: std::sync::OnceLock<std::thread::Thread>,
    /// The access log (`[log]`); fixed at start, a change needs a restart.
    pub access_log: AccessLog,
    /// Counters of DNS discovery, for `/metrics`.
    pub dns: Arc<discovery::stats::Stats>,
    /// The client listening sockets; reloads add and remove addresses.
    pub listeners: Listeners,
    /// Live backend state by identity; locked only while building a snapshot.
    pub(crate) registry: Mutex<Registry>,
    /// The config file's view, the state file and the loader; serialises changes.
    pub(crate) control: Mutex<Control>,
    /// `weir_config_reloads_total{result}`.
    pub reloads: ReloadStats,
}

/// How long shutdown waits for the access-log writer to flush queued lines: long enough
/// for a full channel on a slow disk, short enough not to hold a deploy.
const ACCESS_LOG_CLOSE: std::time::Duration = std::time::Duration::from_secs(5);

/// A running balancer.
pub struct Handle {
    shared: Arc<Shared>,
    admin_addr: Option<SocketAddr>,
    threads: Vec<JoinHandle<()>>,
}

/// Number of workers a config asks for: `workers`, or one per CPU when 0.
pub fn worker_count(config: &Config) -> usize {
    let wanted = match config.server.workers {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    };
    wanted.clamp(1, MAX_WORKERS)
}

/// Starts a balancer. Fails if a socket cannot be bound, a backend cannot be resolved,
/// the state file cannot be read, or the admin listener would be open to the network
/// without a token.
pub fn start(config: Config) -> io::Result<Handle> {
    start_with(config, Inherited::default())
}

/// Starts a balancer on the sockets a binary upgrade handed over, binding what is missing.
pub fn start_with(config: Config, inherited: Inherited) -> io::Result<Handle> {
    admin::auth::check_exposure(&config)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let workers = worker_count(&config);
    let (control, config) =
        control::prepare(config).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let config = Arc::new(config);
    let mut registry = Registry::new(workers);
    let discovery = Discovery::start(&config);
    registry.discovered_mut().extend(discovery.addresses());
    let snapshot = registry.build(&config, 1).map_err(io::Error::other)?.publish();
    let (shutdown, _) = watch::channel(false);
    let listen = &every_listener(&config);
    let acceptors = acceptors(&config, None)?;
    let shared = Arc::new(Shared {
        snapshot: ArcSwap::from_pointee(snapshot),
        frontend: Sharded::new(workers),
        connections: Arc::new(Semaphore::new(config.server.max_connections)),
        shutdown,
        health_wake: Notify::new(),
        drainer: std::sync::OnceLock::new(),
        access_log: AccessLog::start(config.log.access.clone(), config.log.format)?,
        dns: discovery.stats(),
        listeners: Listeners::open(listen, workers, inherited)?,
        registry: Mutex::new(registry),
        control: Mutex::new(control),
        reloads: ReloadStats::default(),
    });
    // Before any worker takes a socket: the TLS addresses are known from the start.
    shared.listeners.set_tls(acceptors.into_iter().map(|(addr, a, _)| (addr, a)).collect());
    let inherited_admin = shared.listeners.take_admin(config.admin.listen);
    let admin_listener = match config.admin.listen {
        Some(addr) => {
            let listener = match inherited_admin {
                Some(inherited) => inherited,
                None => admin::bind(addr)?,
            };
            shared.listeners.keep_admin(addr, &listener)?;
            Some(listener)
        }
        None => None,
    };
    let admin_addr = admin_listener.as_ref().map(|l| l.local_addr()).transpose()?;
    let mut threads = Vec::with_capacity(workers + 4);
    for index in 0..workers {
        threads.push(worker::spawn(index, Arc::clone(&shared))?);
    }
    // One prober per backend for the whole process, whatever the number of workers.
    threads.push(health::service::spawn(Arc::clone(&shared))?);
    threads.push(discovery::spawn(Arc::clone(&shared), discovery)?);
    threads.push(control::spawn_drainer(Arc::clone(&shared))?);
    if let Some(listener) = admin_listener {
        threads.push(admin::spawn(Arc::clone(&shared), listener)?);
    }
    for addr in shared.listeners.addrs_of_kind(false) {
        tracing::info!(workers, "listening on http://{addr}");
    }
    for addr in shared.listeners.addrs_of_kind(true) {
        tracing::info!(workers, "listening on https://{addr}");
    }
    shared.listeners.retire_unconfigured(listen);
    if let Some(addr) = admin_addr {
        tracing::info!("admin listening on http://{addr}");
    }
    Ok(Handle { shared, admin_addr, threads })
}

impl Handle {
    /// The bound plain HTTP listener addresses (ports resolved); they follow reloads.
    pub fn listen_addrs(&self) -> Vec<SocketAddr> {
        self.shared.listeners.addrs_of_kind(false)
    }

    /// The bound `[[server.tls]]` listener addresses (ports resolved), in config order.
    pub fn tls_addrs(&self) -> Vec<SocketAddr> {
        self.shared.listeners.addrs_of_kind(true)
    }

    /// The bound admin address, if the admin listener is on.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// State shared with the workers (for tests and the admin API).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Swaps in a snapshot built from `config` (a freshly read config file; API changes
    /// are applied over it), with its listener changes. On error the running snapshot
    /// stays.
    pub fn reload(&self, config: Config) -> Result<u64, String> {
        self.shared.reload(config)
    }

    /// Starts draining: stop accepting and finish in-flight requests. A keep-alive
    /// connection closes after its next response (which says `Connection: close`), at its
    /// idle timeout, or at the drain deadline.
    pub fn begin_shutdown(&self) {
        self.shared.shutdown.send_replace(true);
        if let Some(drainer) = self.shared.drainer.get() {
            drainer.unpark();
        }
        self.shared.listeners.release();
    }

    /// Drains and waits for every thread to finish (at most the drain timeout).
    pub fn shutdown(self) {
        self.begin_shutdown();
        for thread in self.threads {
            let _ = thread.join();
        }
        if !self.shared.access_log.close(ACCESS_LOG_CLOSE) {
            tracing::warn!("access log writer did not finish in time; lines may be lost");
        }
    }
}

impl Shared {
    /// Records new address sets of `resolve = true` names ([`crate::discovery`]) and
    /// swaps in a snapshot of the running config built with them.
    pub fn rediscover(&self, changed: Vec<(String, Vec<IpAddr>)>) -> Result<u64, String> {
        let mut registry =
            self.registry.lock().map_err(|_| "registry lock poisoned".to_string())?;
        registry.discovered_mut().extend(changed);
        // Loaded under the lock, so a reload cannot slip in between and be undone.
        let current = self.snapshot.load_full();
        let built = registry.rebuild(&current.config, current.generation + 1);
        let built = built.map_err(|error| error.to_string())?;
        Ok(self.swap(built, "backend addresses changed").generation)
    }
}

/// A reload's listener changes, checked and bound but not applied yet.
pub(crate) struct ListenerChanges {
    plan: crate::listeners::Plan,
    tls: Vec<TlsListener>,
}

impl Shared {
    /// Binds a reload's new addresses (plain and TLS) and reads every TLS listener's
    /// certificates, changing nothing yet: a broken certificate, an address that cannot
    /// be bound, or one turning between plain and TLS refuses the reload.
    pub(crate) fn prepare_listeners(&self, config: &Config) -> Result<ListenerChanges, String> {
        let tls = acceptors(config, Some(&self.listeners)).map_err(|e| e.to_string())?;
        let listeners = &self.listeners;
        if let Some(addr) = config.server.listen.iter().find(|a| listeners.acceptor(**a).is_some())
        {
            let message = "it is a TLS listener now; changing that takes a restart";
            return Err(format!("listener {addr}: {message}"));
        }
        let plan = listeners.prepare(&every_listener(config)).map_err(|e| e.to_string())?;
        Ok(ListenerChanges { plan, tls })
    }

    /// Applies what [`Shared::prepare_listeners`] prepared: new certificates for new
    /// connections, then the added and removed addresses.
    pub(crate) fn apply_listeners(&self, changes: ListenerChanges) {
        let mut tls = std::collections::HashMap::with_capacity(changes.tls.len());
        for (addr, acceptor, certificates) in changes.tls {
            if let Some(certificates) = certificates {
                acceptor.install(certificates);
            }
            tls.insert(addr, acceptor);
        }
        self.listeners.set_tls(tls);
        self.listeners.commit(changes.plan);
    }
}

/// Every listen address: the plain ones, then the `[[server.tls]]` ones.
fn every_listener(config: &Config) -> Vec<SocketAddr> {
    let tls = config.server.tls.iter().map(|listener| listener.listen);
    config.server.listen.iter().copied().chain(tls).collect()
}

/// What a TLS listener runs with after a start or reload: its acceptor, and certificates
/// to install in it (for an acceptor that already serves, on reload).
type TlsListener = (SocketAddr, Arc<Acceptor>, Option<crate::tls::server::Prepared>);

/// The acceptor of every `[[server.tls]]` listener, reading its certificates: the one
/// already serving the address (`running`, on reload) with new certificates prepared but
/// not installed, or a new one. Nothing changes until the caller installs them, so a
/// broken certificate refuses the whole reload and every listener keeps what it served.
/// An address cannot change between plain and TLS without a restart.
fn acceptors(config: &Config, running: Option<&Listeners>) -> io::Result<Vec<TlsListener>> {
    let mut out = Vec::with_capacity(config.server.tls.len());
    for listener in &config.server.tls {
        let addr = listener.listen;
        let context = |error| io::Error::other(format!("TLS listener {addr}: {error}"));
        if config.server.listen.contains(&addr) {
            let message = "it is also a plain HTTP listener";
            return Err(io::Error::other(format!("TLS listener {addr}: {message}")));
        }
        let existing = running.and_then(|listeners| listeners.acceptor(addr));
        let serving = running.is_some_and(|listeners| listeners.is_open(addr));
        out.push(match existing {
            Some(acceptor) => {
                let certificates = acceptor.prepare(&listener.settings).map_err(context)?;
                (addr, acceptor, Some(certificates))
            }
            None if serving => {
                let message = "it is a plain HTTP listener now; changing that takes a restart";
                return Err(io::Error::other(format!("TLS listener {addr}: {message}")));
            }
            None => (addr, Arc::new(Acceptor::new(&listener.settings).map_err(context)?), None),
        });
    }
    Ok(out)
}
