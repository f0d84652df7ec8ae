//! Worker threads: each runs its own single-threaded tokio runtime and accepts on its own
//! `SO_REUSEPORT` socket for every listener, so the kernel spreads connections across
//! workers and a connection never changes thread. Worker-local state (the connection
//! pool, buffers, the cached snapshot handle) needs no lock.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use crate::metrics;
use crate::proxy::{self, Client, SnapshotRef};
use crate::server::Shared;

/// Pending-connection queue per listening socket. nginx's default of 511 drops SYNs in a
/// burst of new connections; the kernel caps this at `net.core.somaxconn` anyway.
pub const LISTEN_BACKLOG: i32 = 4096;

/// Pause after a failed accept (such as EMFILE) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// How often each worker closes idle upstream connections past their timeout.
const POOL_SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// How often a draining worker checks whether its connections are done.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// A worker's own drain signal. Connections wait on it between requests; keeping it
/// per worker means that wait touches no lock shared with other workers (the process-wide
/// `watch` channel has one).
#[derive(Debug, Default)]
pub struct Drain {
    draining: Cell<bool>,
    notify: tokio::sync::Notify,
}

impl Drain {
    /// Whether this worker is draining.
    pub fn is_draining(&self) -> bool {
        self.draining.get()
    }

    /// Resolves once the worker starts draining.
    pub async fn wait(&self) {
        let notified = self.notify.notified();
        if self.draining.get() {
            return;
        }
        notified.await;
    }

    fn start(&self) {
        self.draining.set(true);
        self.notify.notify_waiters();
    }
}

thread_local! {
    static SNAPSHOT: RefCell<Option<SnapshotRef>> = const { RefCell::new(None) };
}

/// The current snapshot as a worker-local handle: cloning it costs no atomic operation,
/// and it is refreshed when a reload swapped a new snapshot in.
pub fn snapshot(shared: &Shared) -> SnapshotRef {
    let current = shared.snapshot.load();
    SNAPSHOT.with(|cache| {
        let mut cache = cache.borrow_mut();
        match cache.as_ref() {
            Some(cached) if Arc::ptr_eq(cached, &current) => Rc::clone(cached),
            _ => {
                let fresh = Rc::new(Arc::clone(&current));
                *cache = Some(Rc::clone(&fresh));
                fresh
            }
        }
    })
}

/// Opens one listening socket with `SO_REUSEPORT`, so every worker can bind the address.
pub fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// Starts worker `index` with its listening sockets.
pub fn spawn(
    index: usize,
    shared: Arc<Shared>,
    listeners: Vec<std::net::TcpListener>,
) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name(format!("weir-worker-{index}")).spawn(move || {
        metrics::set_worker_shard(index);
        let options = tokio::runtime::LocalOptions::default();
        let built = tokio::runtime::Builder::new_current_thread().enable_all().build_local(options);
        let runtime = match built {
            Ok(runtime) => runtime,
            Err(error) => {
                tracing::error!(worker = index, "cannot start runtime: {error}");
                return;
            }
        };
        runtime.block_on(run(shared, listeners));
    })
}

async fn run(shared: Arc<Shared>, listeners: Vec<std::net::TcpListener>) {
    let active = Rc::new(Cell::new(0usize));
    let drain = Rc::new(Drain::default());
    for listener in listeners {
        match TcpListener::from_std(listener) {
            Ok(listener) => {
                let accept = accept_loop(
                    listener,
                    Arc::clone(&shared),
                    Rc::clone(&active),
                    Rc::clone(&drain),
                );
                tokio::task::spawn_local(accept);
            }
            Err(error) => tracing::error!("cannot register listener: {error}"),
        }
    }
    let sweeper = tokio::task::spawn_local(sweep_loop(Arc::clone(&shared)));
    let mut shutdown = shared.shutdown.subscribe();
    let _ = shutdown.wait_for(|draining| *draining).await;
    drain.start();
    sweeper.abort();
    let deadline = Instant::now() + shared.snapshot.load().config.server.drain_timeout;
    // Bounded by the drain deadline.
    while active.get() > 0 && Instant::now() < deadline {
        tokio::time::sleep(DRAIN_POLL).await;
    }
    if active.get() > 0 {
        tracing::warn!(
            connections = active.get(),
            "drain timeout passed; closing remaining connections"
        );
    }
}

async fn sweep_loop(shared: Arc<Shared>) {
    loop {
        tokio::time::sleep(POOL_SWEEP_INTERVAL).await;
        let snapshot = shared.snapshot.load();
        crate::pool::sweep(|id| snapshot.backends().any(|(_, backend)| backend.live.id == id));
    }
}

/// Keeps the per-connection bookkeeping exact even if the connection task panics.
struct ConnectionGuard {
    active: Rc<Cell<usize>>,
    shared: Arc<Shared>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.active.set(self.active.get() - 1);
        let stats = self.shared.frontend.local();
        stats.connections_active.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    active: Rc<Cell<usize>>,
    drain: Rc<Drain>,
) {
    let metrics = shared.snapshot.load().config.admin.metrics;
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&shared.connections).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            () = drain.wait() => return,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!("accept failed: {error}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = drain.wait() => return,
        };
        let _ = stream.set_nodelay(true);
        let stats = shared.frontend.local();
        stats.connections_total.inc();
        stats.connections_active.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        active.set(active.get() + 1);
        let guard = ConnectionGuard {
            active: Rc::clone(&active),
            shared: Arc::clone(&shared),
            _permit: permit,
        };
        let client = Client {
            shared: Arc::clone(&shared),
            peer,
            peer_ip: peer.ip().to_string(),
            drain: Rc::clone(&drain),
            metrics,
        };
        tokio::task::spawn_local(async move {
            let _guard = guard;
            proxy::serve(stream, client).await;
        });
    }
}
