//! Worker threads: each runs its own single-threaded tokio runtime and accepts on its own
//! `SO_REUSEPORT` socket for every listener, so the kernel spreads connections across
//! workers and a connection never changes thread. Worker-local state (the connection
//! pool, buffers, the cached snapshot handle) needs no lock.

use std::cell::Cell;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use crate::context::Context;
pub use crate::drain::Drain;
use crate::listeners::LISTEN_BACKLOG;
use crate::local_fault::{LocalFault, Op};
use crate::log_budget::LogBudget;
use crate::proxy::{self, Client};
use crate::tls::Acceptor as TlsAcceptor;

/// Pause after a failed accept (such as EMFILE) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// Most failed accepts logged per second, all workers together: as many as admin API
/// refusals, enough to show the fault and its cause; `weir_local_errors_total` counts
/// every one. Without it, each worker logged about 90 lines a second while out of files.
const ACCEPT_ERRORS_LOGGED_PER_SECOND: u32 = 10;

/// The log budget of failed accepts, shared by the workers.
static ACCEPT_ERROR_LOG: Mutex<LogBudget> =
    Mutex::new(LogBudget::new(ACCEPT_ERRORS_LOGGED_PER_SECOND));

/// How often each worker closes idle upstream connections past their timeout.
const POOL_SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// How often a draining worker checks whether its connections are done.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// Starts worker `index`; it takes its listening sockets from `shared.listeners`.
pub fn spawn(index: usize, shared: Arc<Context>) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name(format!("weir-worker-{index}")).spawn(move || {
        crate::shard::set_worker_shard(index);
        let options = tokio::runtime::LocalOptions::default();
        let built = tokio::runtime::Builder::new_current_thread().enable_all().build_local(options);
        let runtime = match built {
            Ok(runtime) => runtime,
            Err(error) => {
                tracing::error!(worker = index, "cannot start runtime: {error}");
                return;
            }
        };
        runtime.block_on(run(shared, index));
    })
}

/// What every accept loop of one worker shares.
#[derive(Clone)]
struct Acceptor {
    shared: Arc<Context>,
    active: Rc<Cell<usize>>,
    drain: Rc<Drain>,
    metrics: bool,
}

async fn run(shared: Arc<Context>, index: usize) {
    let acceptor = Acceptor {
        metrics: shared.snapshot.load().config.admin.metrics,
        shared: Arc::clone(&shared),
        active: Rc::new(Cell::new(0usize)),
        drain: Rc::new(Drain::default()),
    };
    // One stop signal per listener identity; a worker may hold several sockets of one.
    let mut loops: HashMap<u64, Rc<Drain>> = HashMap::new();
    let mut changes = shared.listeners.subscribe();
    let sweeper = tokio::task::spawn_local(sweep_loop(Arc::clone(&shared)));
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        reconcile(&acceptor, index, &mut loops);
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { break },
            _ = shutdown.wait_for(|draining| *draining) => break,
        }
    }
    let _ = shutdown.wait_for(|draining| *draining).await;
    acceptor.drain.start();
    sweeper.abort();
    let deadline = Instant::now() + shared.snapshot.load().config.server.drain_timeout;
    let active = &acceptor.active;
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

/// Starts accept loops for this worker's new sockets and stops those of removed ones.
fn reconcile(acceptor: &Acceptor, index: usize, loops: &mut HashMap<u64, Rc<Drain>>) {
    let taken = acceptor.shared.listeners.take(index);
    loops.retain(|id, stop| {
        let keep = taken.wanted.contains(id);
        if !keep {
            stop.start();
        }
        keep
    });
    for (id, socket, tls) in taken.new {
        let stop = Rc::clone(loops.entry(id).or_default());
        match TcpListener::from_std(socket) {
            Ok(listener) => {
                let listener = (listener, tls);
                tokio::task::spawn_local(accept_loop(listener, acceptor.clone(), stop));
            }
            Err(error) => tracing::error!("cannot register listener: {error}"),
        }
    }
}

async fn sweep_loop(shared: Arc<Context>) {
    loop {
        tokio::time::sleep(POOL_SWEEP_INTERVAL).await;
        let snapshot = shared.snapshot.load();
        let is_current = |id| snapshot.backends().any(|(_, backend)| backend.live.id == id);
        crate::pool::sweep(is_current);
        crate::proxy::upstream_h2::sweep(is_current);
        crate::proxy::buffers::trim();
    }
}

/// Keeps the per-connection bookkeeping exact even if the connection task panics.
struct ConnectionGuard {
    active: Rc<Cell<usize>>,
    shared: Arc<Context>,
    _permit: OwnedSemaphorePermit,
    /// The connection's place in `max_connections_per_client`, if counted.
    _per_client: Option<crate::limit::conn::Lease>,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.active.set(self.active.get() - 1);
        let stats = self.shared.frontend.local();
        stats.connections_active.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Accepts on one socket until the worker drains or the listener is removed (`stop`).
async fn accept_loop(
    (listener, tls): (TcpListener, Option<Arc<TlsAcceptor>>),
    acceptor: Acceptor,
    stop: Rc<Drain>,
) {
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&acceptor.shared.connections).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            () = acceptor.drain.wait() => return,
            () = stop.wait() => return accept_queued(&listener, &acceptor, tls.as_ref()).await,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_failed(&acceptor.shared, &error).await;
                    continue;
                }
            },
            () = acceptor.drain.wait() => return,
            () = stop.wait() => return accept_queued(&listener, &acceptor, tls.as_ref()).await,
        };
        serve(stream, peer, permit, &acceptor, tls.as_ref());
    }
}

/// Counts a failed accept that is local exhaustion (EMFILE and kin), logs it within
/// [`ACCEPT_ERRORS_LOGGED_PER_SECOND`] and pauses [`ACCEPT_BACKOFF`]: out of files, every
/// worker (and the admin listener) fails an accept each backoff for as long as it lasts,
/// and without the pause the loop would spin.
pub(crate) async fn accept_failed(shared: &Context, error: &io::Error) {
    if let Some(fault) = LocalFault::of(error) {
        shared.frontend.local().local_errors.record(Op::Accept, fault);
    }
    match LogBudget::take_shared(&ACCEPT_ERROR_LOG) {
        Some(0) => tracing::warn!("accept failed: {error}"),
        Some(left_out) => {
            tracing::warn!("accept failed: {error} ({left_out} earlier failures not logged)");
        }
        None => {}
    }
    tokio::time::sleep(ACCEPT_BACKOFF).await;
}

/// Accepts what is already queued on a removed listener, so closing it resets no
/// connection the kernel had completed. Bounded by the backlog length.
async fn accept_queued(
    listener: &TcpListener,
    acceptor: &Acceptor,
    tls: Option<&Arc<TlsAcceptor>>,
) {
    for _ in 0..LISTEN_BACKLOG {
        let Ok(permit) = Arc::clone(&acceptor.shared.connections).try_acquire_owned() else {
            return;
        };
        let ready = std::future::poll_fn(|cx| match listener.poll_accept(cx) {
            Poll::Ready(accepted) => Poll::Ready(accepted.ok()),
            Poll::Pending => Poll::Ready(None),
        });
        match ready.await {
            Some((stream, peer)) => serve(stream, peer, permit, acceptor, tls),
            None => return,
        }
    }
}

/// Starts the task that serves one accepted connection; `tls` terminates TLS first.
fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
    acceptor: &Acceptor,
    tls: Option<&Arc<TlsAcceptor>>,
) {
    let shared = &acceptor.shared;
    let (inbound, local) = proxy_settings(shared, &stream, tls);
    // A PROXY header names the client: its connection is counted once it is read.
    let per_client = match inbound {
        Some(_) => None,
        None => match shared.admit_client(peer.ip()) {
            Some(lease) => lease,
            None => return,
        },
    };
    let _ = stream.set_nodelay(true);
    let stats = shared.frontend.local();
    stats.connections_total.inc();
    stats.connections_active.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    acceptor.active.set(acceptor.active.get() + 1);
    let guard = ConnectionGuard {
        active: Rc::clone(&acceptor.active),
        shared: Arc::clone(shared),
        _permit: permit,
        _per_client: per_client,
    };
    let client = Client {
        shared: Arc::clone(shared),
        peer,
        peer_ip: proxy::ip_text(peer.ip()),
        drain: Rc::clone(&acceptor.drain),
        metrics: acceptor.metrics,
        tls: tls.is_some(),
        http2: false,
        local,
        proxied: false,
    };
    // Two task types, not one task matching on `tls`: a task is as large as its largest
    // state, and a plain connection must not carry room for a TLS session (10,000 idle
    // plain clients took 58 MiB instead of 22 MiB that way).
    let tls = tls.map(Arc::clone);
    match (tls, inbound) {
        (tls, Some(timeout)) => {
            tokio::task::spawn_local(proxied_task(stream, tls, client, (guard, timeout)))
        }
        (Some(tls), None) => tokio::task::spawn_local(tls_task(stream, tls, client, guard)),
        (None, None) => tokio::task::spawn_local(plain_task(stream, client, guard)),
    };
}

/// Whether the connection starts with a PROXY header (`[server] proxy_protocol` or the
/// TLS listener's), and how long it may take; and weir's own address when a pool sends
/// PROXY headers to backends (read only then: it costs a system call per connection).
fn proxy_settings(
    shared: &Context,
    stream: &TcpStream,
    tls: Option<&Arc<TlsAcceptor>>,
) -> (Option<Duration>, Option<Box<SocketAddr>>) {
    let snapshot = proxy::current_snapshot(shared);
    let config = &snapshot.config;
    let inbound = match tls {
        Some(tls) => tls.proxy_protocol(),
        None => config.server.proxy_protocol,
    };
    let sends = config.pools.iter().any(|pool| pool.send_proxy_protocol.is_some());
    let local = if sends && !inbound { stream.local_addr().ok().map(Box::new) } else { None };
    (inbound.then_some(config.server.header_timeout), local)
}

/// The task of a connection on a plain listener.
async fn plain_task(stream: TcpStream, client: Client, guard: ConnectionGuard) {
    let _guard = guard;
    proxy::serve(stream, client).await;
}

/// The task of a connection on a TLS listener: the handshake, then the same proxy loop.
async fn tls_task(
    stream: TcpStream,
    tls: Arc<TlsAcceptor>,
    client: Client,
    guard: ConnectionGuard,
) {
    let _guard = guard;
    proxy::serve_tls(stream, tls, client).await;
}

/// The task of a connection on a `proxy_protocol` listener: its PROXY header, then the
/// plain or TLS path. Its own task type, and each part boxed, so connections without
/// the header carry none of its state (a header buffer, a second copy of the client).
async fn proxied_task(
    mut stream: TcpStream,
    tls: Option<Arc<TlsAcceptor>>,
    mut client: Client,
    (guard, timeout): (ConnectionGuard, Duration),
) {
    let mut guard = guard;
    if !Box::pin(proxy::inbound::accept(&mut stream, &mut client, timeout)).await {
        return;
    }
    match client.shared.admit_client(client.peer.ip()) {
        Some(lease) => guard._per_client = lease,
        None => return,
    }
    match tls {
        Some(tls) => Box::pin(proxy::serve_tls(stream, tls, client)).await,
        None => Box::pin(proxy::serve(stream, client)).await,
    }
}

/// Most bytes the task of one idle plain connection may take. What 10,000 idle keep-alive
/// clients cost is mostly this (the request state is boxed only while a request runs).
/// It was 880 bytes (release) and 904 (debug) when last set. Two regressions it guards
/// against: one task for plain and TLS connections took 4,744 bytes, and reading the
/// request head in the task instead of the boxed request took 1,136, which measured
/// +0.36 KiB of RSS per idle connection (the task allocation outgrows a 1 KiB class).
#[cfg(test)]
const MAX_PLAIN_TASK_BYTES: usize = 1024;

/// Most bytes the future of one idle HTTP/2 connection may take (`proxy::h2::serve`,
/// boxed behind the connection's task while the connection lives): its codec state
/// (`h2::server::Connection`, about 1.3 KiB with the socket, 2.5 KiB over TLS) and the
/// accept loop's. It was 3,056 bytes for h2c and 6,512 over TLS while the handshake's
/// state and the codec had separate slots in it; 1,680 and 2,832 (release) when set.
#[cfg(test)]
const MAX_H2C_SERVE_BYTES: usize = 2048;

/// Most bytes the task of one TLS connection may take: it lives as long as the
/// connection, and the handshake's future and each protocol's are boxed behind it. It
/// took 4,624 bytes (release) while they were inline, which every idle HTTP/2 client over
/// TLS held beside its own HTTP/2 state; 400 when set.
#[cfg(test)]
const MAX_TLS_TASK_BYTES: usize = 512;

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future an async fn of four arguments returns, without calling it.
    fn future_bytes<A, B, C, D, F: std::future::Future>(_: fn(A, B, C, D) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    #[test]
    fn an_idle_tls_connection_task_stays_small() {
        let bytes = future_bytes(tls_task);
        assert!(bytes <= MAX_TLS_TASK_BYTES, "a TLS connection task takes {bytes} bytes");
    }

    /// A worker's shared state with the default config, and a connected socket.
    async fn shared_and_stream() -> (Arc<Context>, TcpStream) {
        let mut config = crate::config::Config::default();
        config.server.workers = 1;
        config.admin.listen = None;
        let registry = crate::snapshot::Registry::new(1).build(&Arc::new(config), 1);
        let snapshot = registry.expect("no backends to resolve").publish();
        let listeners = crate::listeners::Listeners::open(&[], 1, Default::default());
        let listeners = listeners.expect("no addresses to bind");
        let access_log = crate::access_log::AccessLog::off();
        let shared = Arc::new(Context::new(snapshot, 1, access_log, listeners));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let stream = TcpStream::connect(listener.local_addr().expect("addr")).await.expect("dial");
        (shared, stream)
    }

    fn client_of(shared: &Arc<Context>, stream: &TcpStream) -> Client {
        let peer = stream.local_addr().expect("addr");
        Client {
            shared: Arc::clone(shared),
            peer,
            peer_ip: peer.ip().to_string(),
            drain: Rc::new(Drain::default()),
            metrics: true,
            tls: false,
            http2: false,
            local: None,
            proxied: false,
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_idle_plain_connection_task_stays_small() {
        let (shared, stream) = shared_and_stream().await;
        let permit = Arc::clone(&shared.connections).try_acquire_owned().expect("a permit");
        let active = Rc::new(Cell::new(1usize));
        let shared_ref = Arc::clone(&shared);
        let guard =
            ConnectionGuard { active, shared: shared_ref, _permit: permit, _per_client: None };
        let client = client_of(&shared, &stream);
        let task = plain_task(stream, client, guard);
        let bytes = std::mem::size_of_val(&task);
        assert!(bytes <= MAX_PLAIN_TASK_BYTES, "a plain connection task takes {bytes} bytes");
        drop(task);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_idle_http2_connection_future_stays_small() {
        let (shared, stream) = shared_and_stream().await;
        let client = client_of(&shared, &stream);
        let first = bytes::Bytes::from_static(proxy::h2::PREFACE);
        let serve = proxy::h2::serve(proxy::h2::Rewind::new(first, stream), client);
        let bytes = std::mem::size_of_val(&serve);
        assert!(bytes <= MAX_H2C_SERVE_BYTES, "an h2c connection's future takes {bytes} bytes");
        drop(serve);
    }
}
