//! Upstream connections: connect, and keep idle keep-alive connections for reuse.
//!
//! Each worker keeps its own idle lists in a thread-local, so checkout and checkin take no
//! lock and no atomic. Lists are keyed by [`BackendLive::id`], the backend's identity, so a
//! snapshot swap keeps a backend's idle connections. For an `https://` backend that
//! identity includes the TLS identity (server name, client certificate, verify mode), so
//! TLS connections pool exactly like plain ones and never cross TLS settings. A connection enters the pool only after
//! a response was read to its end and neither side asked to close.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::local_fault::LocalFault;
use crate::snapshot::{Backend, BackendLive};
use crate::tls::client::ClientTls;

/// An upstream connection: plain, or TLS to an `https://` backend. The data path matches
/// on it once per attempt and then runs code specialised for the variant.
#[derive(Debug)]
pub enum Upstream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP. Boxed: a TLS session is a few KiB of state, and the plain variant
    /// should not carry its size around.
    Tls(Box<ClientTls>),
}

impl Upstream {
    /// Whether an idle pooled connection has nothing to read, so it may be reused: data
    /// means a protocol error, an EOF or a TLS `close_notify` means the backend closed it.
    pub fn is_quiet(&mut self) -> bool {
        match self {
            Upstream::Plain(tcp) => {
                let mut probe = [0u8; 1];
                matches!(tcp.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
            Upstream::Tls(tls) => crate::tls::client::is_idle_quiet(tls),
        }
    }
}

/// Most backends a worker keeps idle lists for at once. Lists of removed backends are
/// dropped by [`sweep`]; this bounds the map if backends churn faster than that.
pub const MAX_POOLED_BACKENDS: usize = 4096;

struct Idle {
    stream: Upstream,
    /// When the idle timeout closes it: stored as an instant so a checkout compares
    /// instead of subtracting.
    expires: Instant,
}

/// Backend ids are small unique integers handed out by the registry, never chosen by a
/// client, so they need no DoS-resistant hashing: the id itself is the hash. (SipHash,
/// the default, cost about 1,000 instructions a gRPC call in the HTTP/2 upstream pool's
/// lookups: callgrind, bench/callgrind.sh with CLIENT=grpc.)
#[derive(Default)]
pub struct IdHasher(u64);

/// A map keyed by backend identity ([`IdHasher`]).
pub type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        // Spread sequential ids over the table's high bits (Fibonacci hashing).
        self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used for u64 keys; fold anything else in for correctness.
        for &byte in bytes {
            self.0 = (self.0 << 8) | u64::from(byte);
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = id;
    }
}

/// One backend's idle connections on this worker.
struct IdleList {
    entries: VecDeque<Idle>,
    live: Arc<BackendLive>,
}

impl IdleList {
    /// Publishes this worker's idle count (`weir_backend_idle_connections`).
    fn publish(&self) {
        let count = self.entries.len() as u64;
        self.live.stats.local().idle_connections.store(count, Ordering::Relaxed);
    }
}

#[derive(Default)]
struct IdleLists {
    lists: IdMap<IdleList>,
}

thread_local! {
    static IDLE: RefCell<IdleLists> = RefCell::new(IdleLists::default());
}

/// Takes the most recently used live idle connection to `live`, if any. Connections
/// that timed out or that the backend closed (readable while idle, or a TLS
/// `close_notify`) are dropped on the way. `now` is the caller's clock reading.
pub fn checkout(live: &BackendLive, now: Instant) -> Option<Upstream> {
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let list = idle.lists.get_mut(&live.id)?;
        let mut found = None;
        // Bounded by the list length, itself bounded by `max_idle`.
        while let Some(mut entry) = list.entries.pop_back() {
            if now < entry.expires && entry.stream.is_quiet() {
                found = Some(entry.stream);
                break;
            }
        }
        list.publish();
        found
    })
}

/// Returns a connection whose exchange completed cleanly at `now`.
pub fn checkin(
    live: &Arc<BackendLive>,
    stream: Upstream,
    max_idle: usize,
    timeout: Duration,
    now: Instant,
) {
    if max_idle == 0 {
        return;
    }
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        if idle.lists.len() >= MAX_POOLED_BACKENDS && !idle.lists.contains_key(&live.id) {
            return;
        }
        let list = idle
            .lists
            .entry(live.id)
            .or_insert_with(|| IdleList { entries: VecDeque::new(), live: Arc::clone(live) });
        if list.entries.len() >= max_idle {
            // Drop the oldest: it is the likeliest to be closed by the backend soon.
            list.entries.pop_front();
        }
        list.entries.push_back(Idle { stream, expires: now + timeout });
        debug_assert!(list.entries.len() <= max_idle);
        list.publish();
    });
}

/// Closes connections idle past their timeout, and lists of backends no longer in
/// `is_current`. Workers call it periodically.
pub fn sweep(is_current: impl Fn(u64) -> bool) {
    let now = Instant::now();
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        idle.lists.retain(|id, list| {
            list.entries.retain(|entry| now < entry.expires);
            if !is_current(*id) {
                list.entries.clear();
            }
            list.publish();
            !list.entries.is_empty()
        });
    });
}

/// Why a new upstream connection could not be made.
#[derive(Debug)]
pub enum ConnectError {
    /// Every resolved address refused or failed.
    Failed(io::Error),
    /// weir itself ran out of a resource (files, memory, ports): no fault of the backend.
    Local(LocalFault, io::Error),
    /// The connect timeout passed.
    Timeout,
}

/// The failed connects to a backend's addresses, added up.
#[derive(Debug, Default)]
struct Failures {
    /// The last failure that was the peer's (refused, unreachable).
    last_peer: Option<io::Error>,
    /// An address weir could not connect from (EADDRNOTAVAIL): an IPv6 address on a host
    /// without IPv6, or no ephemeral port left for that address. Another address of the
    /// same name may still work, so it ends nothing by itself.
    local_address: Option<io::Error>,
}

impl Failures {
    /// Takes one address's failure; `Some` when it ends the attempt at once: weir is out
    /// of files or memory, and every other address would fail the same way.
    fn add(&mut self, error: io::Error) -> Option<ConnectError> {
        match LocalFault::of(&error) {
            Some(LocalFault::LocalAddress) => self.local_address = Some(error),
            Some(fault) => return Some(ConnectError::Local(fault, error)),
            None => self.last_peer = Some(error),
        }
        None
    }

    /// The error once every address failed: local only when no peer failed, so a name
    /// with an unusable IPv6 address and a refusing IPv4 one is the backend's failure.
    fn finish(self) -> ConnectError {
        match (self.last_peer, self.local_address) {
            (Some(peer), _) => ConnectError::Failed(peer),
            (None, Some(local)) => ConnectError::Local(LocalFault::LocalAddress, local),
            (None, None) => {
                ConnectError::Failed(io::Error::new(io::ErrorKind::NotFound, "no address"))
            }
        }
    }
}

/// Opens a new connection to `backend`, trying each resolved address in turn within one
/// overall `timeout`.
pub async fn connect(backend: &Backend, timeout: Duration) -> Result<TcpStream, ConnectError> {
    let attempt = async {
        let mut failures = Failures::default();
        for addr in &backend.resolved {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    // Heads and small bodies must not wait for Nagle's algorithm.
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Err(e) => {
                    if let Some(error) = failures.add(e) {
                        return Err(error);
                    }
                }
            }
        }
        Err(failures.finish())
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(ConnectError::Timeout),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EADDRNOTAVAIL: i32 = 99;
    const ECONNREFUSED: i32 = 111;
    const EMFILE: i32 = 24;

    fn os(code: i32) -> io::Error {
        io::Error::from_raw_os_error(code)
    }

    #[test]
    fn an_unusable_local_address_moves_on_to_the_next_address() {
        // `localhost` as [::1, 127.0.0.1] on a host without IPv6: the IPv6 address
        // fails locally, and the IPv4 one must still be tried and judged.
        let mut failures = Failures::default();
        assert!(failures.add(os(EADDRNOTAVAIL)).is_none(), "one address ends nothing");
        assert!(failures.add(os(ECONNREFUSED)).is_none());
        assert!(matches!(failures.finish(), ConnectError::Failed(_)), "the backend refused");
        let mut failures = Failures::default();
        assert!(failures.add(os(EADDRNOTAVAIL)).is_none());
        assert!(matches!(failures.finish(), ConnectError::Local(LocalFault::LocalAddress, _)));
    }

    #[test]
    fn running_out_of_files_ends_the_attempt_at_once() {
        let mut failures = Failures::default();
        assert!(failures.add(os(ECONNREFUSED)).is_none());
        let error = failures.add(os(EMFILE));
        assert!(matches!(error, Some(ConnectError::Local(LocalFault::ProcessFiles, _))));
        assert!(matches!(Failures::default().finish(), ConnectError::Failed(_)));
    }
}
