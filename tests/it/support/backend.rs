//! [`TestBackend`]: a real HTTP/1.1 origin server on 127.0.0.1 for weir's
//! integration tests. It parses requests with httparse (keep-alive,
//! pipelining, Content-Length and chunked bodies with trailers, `Expect:
//! 100-continue`) and routes by path; see [`TestBackend`] for the routes.
//! `stop()` (and `Drop`) closes the listener and every open connection
//! synchronously, so a later connect is refused at once.

use super::routes::handle_request;
use super::{read_head, read_to_eof_into, IO_CHUNK, MAX_HEAD};
use std::collections::HashMap;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::{sleep, timeout};

pub(super) type Conn = BufReader<TcpStream>;

/// Most requests served on one connection before it is closed.
const MAX_REQUESTS_PER_CONN: usize = 1_000_000;
/// How long a closing connection keeps draining input (avoids an RST that
/// could destroy the response before the peer reads it).
const LINGER: Duration = Duration::from_secs(1);

/// Tuning for [`TestBackend::start_with`].
#[derive(Clone, Debug, Default)]
pub struct BackendOptions {
    /// Close a connection that waits this long for its next request head.
    pub idle_close_after: Option<Duration>,
    /// Close a connection (with `Connection: close`) after this many requests.
    pub max_requests_per_conn: Option<usize>,
}

#[derive(Default)]
struct Registry {
    stopped: bool,
    listener: Option<std::net::TcpListener>,
    conns: HashMap<u64, std::net::TcpStream>,
    next_id: u64,
}

pub(super) struct Shared {
    pub(super) name: String,
    pub(super) opts: BackendOptions,
    pub(super) accepted: AtomicUsize,
    pub(super) requests: AtomicUsize,
    pub(super) healthy: AtomicBool,
    pub(super) last_head: Mutex<Option<Vec<u8>>>,
    reg: Mutex<Registry>,
    stop_tx: watch::Sender<bool>,
}

/// Removes a connection's socket clone from the registry when its task ends.
struct ConnGuard {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.shared.reg.lock().unwrap().conns.remove(&self.id);
    }
}

impl Shared {
    /// Keeps a clone of the socket so `stop()` can shut it down synchronously.
    fn register(self: &Arc<Self>, stream: TcpStream) -> Option<(TcpStream, ConnGuard)> {
        let std_stream = stream.into_std().ok()?;
        let clone = std_stream.try_clone().ok()?;
        let mut reg = self.reg.lock().unwrap();
        if reg.stopped {
            return None;
        }
        let id = reg.next_id;
        reg.next_id += 1;
        reg.conns.insert(id, clone);
        drop(reg);
        let guard = ConnGuard { shared: Arc::clone(self), id };
        let stream = TcpStream::from_std(std_stream).ok()?;
        stream.set_nodelay(true).ok()?;
        Some((stream, guard))
    }

    fn stop(&self) {
        self.stop_tx.send_replace(true);
        let mut reg = self.reg.lock().unwrap();
        reg.stopped = true;
        if let Some(listener) = reg.listener.take() {
            shutdown_listener(listener);
        }
        for (_, conn) in reg.conns.drain() {
            let _ = conn.shutdown(Shutdown::Both);
        }
    }
}

/// `shutdown(2)` on a listening socket takes it out of the LISTEN state at
/// once on Linux, so new connects are refused before the accept task (which
/// owns another descriptor of the same socket) has even been polled.
fn shutdown_listener(listener: std::net::TcpListener) {
    // shutdown(2) through a borrowed socket: no unsafe code needed.
    let _ = socket2::SockRef::from(&listener).shutdown(Shutdown::Both);
}

/// A running test backend. Routes (query parameters after `?`):
///
/// * `/` and anything unmatched: 200, body = name. Every normal response
///   carries `X-Backend: NAME`; HEAD gets the headers only.
/// * `/health`: 200 name, or 503 after `set_healthy(false)`.
/// * `/echo-head`: body = the raw request head. `/echo-body`: body = request body.
/// * `/upload`: body `len=N hash=H` ([`upload_summary`]), `X-Trailers: n=v;...`.
/// * `/download?bytes=N&chunked=0|1`: N pattern bytes, streamed.
/// * `/trailers`: chunked "hello world" with trailers X-Checksum: abc, X-Extra: 1.
/// * `/status/NNN`: that status; body `status=NNN\n` except for 204/304.
/// * `/close-delimited`, `/http10`: unframed bodies ended by closing.
/// * `/slow?ms=N`, `/slow-body?ms=N`: delays before the head / mid-body.
/// * `/bad/cl-te`, `/bad/double-cl`, `/bad/te`: invalid framing, then close.
/// * `/close`: 200 with `Connection: close`. `/count`: accepted connections.
/// * `/expect-reject` with `Expect: 100-continue`: 417 and close.
/// * `/ws`: WebSocket upgrade, then frame echo.
pub struct TestBackend {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl TestBackend {
    /// Starts a backend on 127.0.0.1 with an ephemeral port.
    pub async fn start(name: &str) -> TestBackend {
        Self::start_with(name, BackendOptions::default()).await
    }

    pub async fn start_with(name: &str, opts: BackendOptions) -> TestBackend {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        Self::start_at(name, any, opts).await.expect("bind test backend")
    }

    /// Starts on a given address (e.g. a stopped backend's, to restart it);
    /// retries for up to 2 s while the address is still in use.
    pub async fn start_at(
        name: &str,
        addr: SocketAddr,
        opts: BackendOptions,
    ) -> io::Result<TestBackend> {
        let mut tries = 0;
        let std_listener = loop {
            match std::net::TcpListener::bind(addr) {
                Ok(l) => break l,
                Err(e) if e.kind() == io::ErrorKind::AddrInUse && tries < 100 => {
                    tries += 1;
                    sleep(Duration::from_millis(20)).await;
                }
                Err(e) => return Err(e),
            }
        };
        std_listener.set_nonblocking(true)?;
        let registry =
            Registry { listener: Some(std_listener.try_clone()?), ..Registry::default() };
        let listener = TcpListener::from_std(std_listener)?;
        let shared = Arc::new(Shared {
            name: name.to_string(),
            opts,
            accepted: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            healthy: AtomicBool::new(true),
            last_head: Mutex::new(None),
            reg: Mutex::new(registry),
            stop_tx: watch::channel(false).0,
        });
        let addr = listener.local_addr()?;
        tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        Ok(TestBackend { addr, shared })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// TCP connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Request heads parsed so far (all connections).
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Raw bytes of the most recent request head.
    pub fn last_request_head(&self) -> Option<Vec<u8>> {
        self.shared.last_head.lock().unwrap().clone()
    }

    /// Makes `/health` answer 200 (true) or 503 (false).
    pub fn set_healthy(&self, healthy: bool) {
        self.shared.healthy.store(healthy, Ordering::SeqCst);
    }

    /// Stops listening and closes every open connection, synchronously.
    pub fn stop(&self) {
        self.shared.stop();
    }
}

impl Drop for TestBackend {
    fn drop(&mut self) {
        self.shared.stop();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut stop = shared.stop_tx.subscribe();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => return,
            r = listener.accept() => r,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(_) if *stop.borrow() => return,
            Err(_) => {
                sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        let Some((stream, guard)) = shared.register(stream) else {
            continue;
        };
        tokio::spawn(conn_task(stream, guard));
    }
}

async fn conn_task(stream: TcpStream, guard: ConnGuard) {
    let shared = Arc::clone(&guard.shared);
    let mut stop = shared.stop_tx.subscribe();
    let mut conn = BufReader::with_capacity(IO_CHUNK, stream);
    tokio::select! {
        biased;
        _ = stop.wait_for(|s| *s) => {}
        _ = serve_conn(&mut conn, &shared) => {}
    }
}

async fn serve_conn(conn: &mut Conn, shared: &Shared) {
    for served in 1..=MAX_REQUESTS_PER_CONN {
        let idle = shared.opts.idle_close_after.unwrap_or(Duration::from_secs(24 * 3600));
        let head = match timeout(idle, read_head(conn, MAX_HEAD)).await {
            Ok(Ok(Some(head))) => head,
            Ok(Err(e)) if e.kind() == io::ErrorKind::InvalidData => {
                let msg = b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
                let _ = conn.write_all(msg).await;
                break;
            }
            _ => return,
        };
        let last = shared.opts.max_requests_per_conn.is_some_and(|m| served >= m);
        match handle_request(conn, shared, head, last).await {
            Ok(true) => continue,
            _ => break,
        }
    }
    linger_close(conn).await;
}

/// Sends FIN, then drains input for a while so unread request bytes do not
/// turn the close into an RST.
async fn linger_close(conn: &mut Conn) {
    let _ = conn.get_mut().shutdown().await;
    let _ = timeout(LINGER, read_to_eof_into(conn, 1 << 26, &mut |_: &[u8]| {})).await;
}
