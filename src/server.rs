//! Starting, reloading and stopping a balancer in-process.
//!
//! [`start`] binds every socket first (so a bad address fails before anything runs), then
//! starts the workers and the admin listener, and returns a [`Handle`]. The binary and the
//! integration tests drive the same handle: `reload` swaps in a new snapshot atomically,
//! `shutdown` stops accepting and drains.

use std::io;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::access_log::AccessLog;
use crate::admin;
use crate::admin::Refusal;
use crate::config::{validate, Config, MAX_WORKERS};
use crate::context::Context;
use crate::control::listeners::{acceptors, every_listener};
use crate::control::{self, Loader, Plane, ReloadError, StateError};
use crate::discovery::{self, Discovery};
use crate::health;
use crate::listeners::{Inherited, Listeners};
use crate::snapshot::{BuildError, Registry, Snapshot};
use crate::worker;

/// A running balancer's two halves: the data path's view, which the workers hold, and
/// the control plane, which the admin listener, the health, DNS and drain threads and
/// signals go through. It reads as the data path's [`Context`] (`shared.snapshot`).
pub struct Shared {
    data: Arc<Context>,
    plane: Arc<Plane>,
}

impl Deref for Shared {
    type Target = Context;

    fn deref(&self) -> &Context {
        &self.data
    }
}

impl Shared {
    /// The control plane.
    pub fn plane(&self) -> &Arc<Plane> {
        &self.plane
    }

    /// Replaces how the config file is re-read (the binary adds its flags).
    pub fn set_loader(&self, loader: Loader) {
        self.plane.set_loader(loader);
    }

    /// Refuses API changes from now on, or again accepts them ([`Plane::set_upgrading`]).
    pub fn set_upgrading(&self, upgrading: bool) {
        self.plane.set_upgrading(upgrading);
    }

    /// Applies an admin API change ([`Plane::edit`]), refused as the admin API would.
    pub fn edit(
        &self,
        change: impl FnOnce(&mut Config) -> Result<Option<(String, String)>, Refusal>,
    ) -> Result<Arc<Snapshot>, Refusal> {
        self.plane.edit(change).map_err(Refusal::from)
    }

    /// Re-reads the config file and reloads it ([`Plane::reload_from_source`]).
    pub fn reload_from_source(&self) -> Result<u64, ReloadError> {
        self.plane.reload_from_source()
    }
}

/// Why a balancer did not start.
#[derive(Debug)]
pub enum StartError {
    /// The admin listener would be open to the network without a token.
    Exposure(String),
    /// The state file is unreadable or malformed.
    State(StateError),
    /// The first snapshot cannot be built (a backend does not resolve).
    Build(BuildError),
    /// A socket cannot be bound, a TLS listener's certificates cannot be read, the
    /// access log cannot be opened, or a thread cannot be started.
    Io(io::Error),
}

impl StartError {
    /// Whether the configuration is at fault (`weir` exits 2, as for a bad config file):
    /// a bad state file.
    pub fn is_config_problem(&self) -> bool {
        match self {
            StartError::State(_) => true,
            StartError::Io(error) => error.kind() == io::ErrorKind::InvalidData,
            StartError::Exposure(_) | StartError::Build(_) => false,
        }
    }
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Exposure(message) => f.write_str(message),
            StartError::State(error) => error.fmt(f),
            StartError::Build(error) => error.fmt(f),
            StartError::Io(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for StartError {}

impl From<io::Error> for StartError {
    fn from(error: io::Error) -> StartError {
        StartError::Io(error)
    }
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
pub fn start(config: Config) -> Result<Handle, StartError> {
    start_with(config, Inherited::default())
}

/// Starts a balancer on the sockets a binary upgrade handed over, binding what is missing.
pub fn start_with(config: Config, inherited: Inherited) -> Result<Handle, StartError> {
    validate::exposure(&config).map_err(StartError::Exposure)?;
    let workers = worker_count(&config);
    // Before the state is read: with `[fleet]`, the fleet's objects replace the state file.
    let fleet = crate::fleet::Fleet::start(&config)?;
    let store = fleet.clone().map(|fleet| fleet as Arc<dyn control::Store>);
    let (control, config) = control::prepare(config, store).map_err(StartError::State)?;
    let config = Arc::new(config);
    let mut registry = Registry::new(workers);
    let discovery = Discovery::start(&config);
    registry.discovered_mut().extend(discovery.addresses());
    let snapshot = registry.build(&config, 1).map_err(StartError::Build)?.publish();
    let listen = &every_listener(&config);
    let acceptors = acceptors(&config, None)?;
    let access_log = AccessLog::start(config.log.access.clone(), config.log.format)?;
    let listeners = Listeners::open(listen, workers, inherited)?;
    let data = Arc::new(Context::new(snapshot, workers, access_log, listeners));
    let sink = Arc::new(discovery::coalesce::Sink::default());
    let plane = Arc::new(Plane::new(
        Arc::clone(&data),
        control,
        registry,
        discovery.stats(),
        Arc::clone(&sink),
    ));
    if let Some(fleet) = &fleet {
        fleet.attach(&plane);
    }
    // Before any worker takes a socket: the TLS addresses are known from the start.
    data.listeners.set_tls(acceptors.into_iter().map(|(addr, a, _)| (addr, a)).collect());
    let admin_listener = admin_listener(&config, &data.listeners)?;
    let admin_addr = admin_listener.as_ref().map(|l| l.local_addr()).transpose()?;
    let mut threads = Vec::with_capacity(workers + 4);
    for index in 0..workers {
        threads.push(worker::spawn(index, Arc::clone(&data))?);
    }
    // One prober per backend for the whole process, whatever the number of workers.
    threads.push(health::service::spawn(Arc::clone(&plane) as _)?);
    threads.push(discovery::spawn(Arc::clone(&plane) as _, discovery, sink)?);
    threads.push(control::spawn_drainer(Arc::clone(&plane))?);
    if let Some(listener) = admin_listener {
        threads.push(admin::spawn(Arc::clone(&plane), listener)?);
    }
    for addr in data.listeners.addrs_of_kind(false) {
        tracing::info!(workers, "listening on http://{addr}");
    }
    for addr in data.listeners.addrs_of_kind(true) {
        tracing::info!(workers, "listening on https://{addr}");
    }
    data.listeners.retire_unconfigured(listen);
    if let Some(addr) = admin_addr {
        tracing::info!("admin listening on http://{addr}");
    }
    Ok(Handle { shared: Arc::new(Shared { data, plane }), admin_addr, threads })
}

/// The admin socket, if the admin listener is on: handed over by a binary upgrade, or
/// bound now.
fn admin_listener(
    config: &Config,
    listeners: &Listeners,
) -> io::Result<Option<std::net::TcpListener>> {
    let inherited = listeners.take_admin(config.admin.listen);
    let Some(addr) = config.admin.listen else { return Ok(None) };
    let listener = match inherited {
        Some(inherited) => inherited,
        None => admin::bind(addr)?,
    };
    listeners.keep_admin(addr, &listener)?;
    Ok(Some(listener))
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

    /// The balancer's shared state: the data path's view and the control plane.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Swaps in a snapshot built from `config` (a freshly read config file; API changes
    /// are applied over it), with its listener changes. On error the running snapshot
    /// stays.
    pub fn reload(&self, config: Config) -> Result<u64, String> {
        self.shared.plane.reload(config).map_err(|error| error.to_string())
    }

    /// Starts draining: stop accepting and finish in-flight requests. A keep-alive
    /// connection closes after its next response (which says `Connection: close`), at its
    /// idle timeout, or at the drain deadline.
    pub fn begin_shutdown(&self) {
        self.shared.shutdown.send_replace(true);
        self.shared.plane.wake_drainer();
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
