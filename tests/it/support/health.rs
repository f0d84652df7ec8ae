//! Helpers for the health and retry tests: weir in-process with access to its live state,
//! a steady client load that records every answer, and a backend whose slowness can be
//! switched on and off. Every wait is bounded.
// Each test binary uses only some helpers.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout, Instant};
use weir::config::Config;
use weir::health::Status;
use weir::metrics::{BackendStats, PoolStats};
use weir::server::{Handle, Shared};

use crate::support::{connect, roundtrip};

/// weir running in-process; dropping it drains and joins on a side thread.
pub struct Balancer {
    handle: Option<Handle>,
    addr: SocketAddr,
}

impl Balancer {
    /// Starts weir with `config`.
    pub fn start(config: Config) -> Balancer {
        let handle = weir::server::start(config).expect("weir starts");
        let addr = handle.listen_addrs()[0];
        Balancer { handle: Some(handle), addr }
    }

    /// The client listener.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// State shared with the workers.
    pub fn shared(&self) -> &Arc<Shared> {
        self.handle.as_ref().expect("running").shared()
    }

    /// Swaps in `config`.
    pub fn reload(&self, config: Config) {
        self.handle.as_ref().expect("running").reload(config).expect("reload");
    }

    /// A counter of backend `addr` (of the first pool), summed over the shards.
    pub fn backend_total(&self, addr: SocketAddr, read: fn(&BackendStats) -> u64) -> u64 {
        let snapshot = self.shared().snapshot.load();
        let backend = snapshot.pools[0]
            .backends
            .iter()
            .find(|b| b.label == addr.to_string())
            .expect("backend in the pool");
        backend.live.stats.iter().map(read).sum()
    }

    /// Attempts weir made on backend `addr`: relayed responses, connect failures, resets
    /// and timeouts.
    pub fn attempts(&self, addr: SocketAddr) -> u64 {
        let read: fn(&BackendStats) -> u64 = |s| {
            let relayed: u64 = (0..5).map(|class| s.requests.get(class)).sum();
            relayed + s.connect_failures.get() + s.resets.get() + s.timeouts.get()
        };
        self.backend_total(addr, read)
    }

    /// Requests in flight to backend `addr` now.
    pub fn in_flight(&self, addr: SocketAddr) -> u64 {
        let snapshot = self.shared().snapshot.load();
        let pool = &snapshot.pools[0];
        let backend = pool.backends.iter().find(|b| b.label == addr.to_string()).unwrap();
        backend.live.in_flight.load(Ordering::Relaxed)
    }

    /// The health of backend `addr`.
    pub fn status(&self, addr: SocketAddr) -> Status {
        self.status_of(&addr.to_string())
    }

    /// The health of the backend whose `HOST:PORT` is `label`.
    pub fn status_of(&self, label: &str) -> Status {
        let snapshot = self.shared().snapshot.load();
        let pool = &snapshot.pools[0];
        let backend = pool.backends.iter().find(|b| b.label == label).expect("backend");
        backend.live.health.status()
    }

    /// A counter of the first pool, summed over the shards.
    pub fn pool_total(&self, read: fn(&PoolStats) -> u64) -> u64 {
        self.shared().snapshot.load().pools[0].live.stats.iter().map(read).sum()
    }

    /// Waits up to `limit` for `condition`; returns how long it took, or `None`.
    pub async fn wait_for(
        &self,
        limit: Duration,
        condition: impl Fn(&Self) -> bool,
    ) -> Option<Duration> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if condition(self) {
                return Some(start.elapsed());
            }
            sleep(Duration::from_millis(5)).await;
        }
        condition(self).then(|| start.elapsed())
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.begin_shutdown();
            std::thread::spawn(move || handle.shutdown());
        }
    }
}

/// One answer the load got.
#[derive(Clone, Debug)]
pub struct Sample {
    /// When it arrived.
    pub at: Instant,
    /// Its status, or 0 when the exchange failed at the socket.
    pub status: u16,
    /// Its `X-Backend`, if any.
    pub backend: Option<String>,
    /// Its body, for error answers.
    pub text: String,
}

/// A steady load from `clients` keep-alive clients, each sending the next request when
/// the previous answer arrived, `pause` later.
pub struct Load {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    sent: Arc<AtomicUsize>,
    tasks: Vec<JoinHandle<()>>,
}

impl Load {
    /// Starts the load on `addr` with `request` (whole, body included).
    pub fn start(addr: SocketAddr, clients: usize, pause: Duration, request: Vec<u8>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let sent = Arc::new(AtomicUsize::new(0));
        let request = Arc::new(request);
        let tasks = (0..clients)
            .map(|_| {
                let (stop, samples) = (Arc::clone(&stop), Arc::clone(&samples));
                let (sent, request) = (Arc::clone(&sent), Arc::clone(&request));
                tokio::spawn(client(addr, pause, request, stop, samples, sent))
            })
            .collect();
        Load { stop, samples, sent, tasks }
    }

    /// Every answer so far.
    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().unwrap().clone()
    }

    /// Stops the load and waits for the requests in flight; returns requests sent.
    pub async fn finish(self) -> (usize, Vec<Sample>) {
        self.stop.store(true, Ordering::SeqCst);
        for task in self.tasks {
            let _ = timeout(Duration::from_secs(10), task).await;
        }
        let samples = self.samples.lock().unwrap().clone();
        (self.sent.load(Ordering::SeqCst), samples)
    }
}

async fn client(
    addr: SocketAddr,
    pause: Duration,
    request: Arc<Vec<u8>>,
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    sent: Arc<AtomicUsize>,
) {
    let mut stream = None;
    while !stop.load(Ordering::SeqCst) {
        if stream.is_none() {
            stream = connect(addr).await.ok();
        }
        let Some(conn) = stream.as_mut() else {
            sleep(pause).await;
            continue;
        };
        sent.fetch_add(1, Ordering::SeqCst);
        let sample = match timeout(Duration::from_secs(10), roundtrip(conn, &request)).await {
            Ok(Ok(response)) => Sample {
                at: Instant::now(),
                status: response.status,
                backend: response.header("X-Backend").map(str::to_string),
                text: if response.status == 200 { String::new() } else { response.text() },
            },
            _ => Sample { at: Instant::now(), status: 0, backend: None, text: String::new() },
        };
        if sample.status != 200 {
            stream = None;
        }
        samples.lock().unwrap().push(sample);
        sleep(pause).await;
    }
}

/// A backend that answers `200 NAME` to every request, after a delay while `slow` is on.
pub struct SlowBackend {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Whether it is slow now.
    pub slow: Arc<AtomicBool>,
    /// Requests it has read.
    pub requests: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl SlowBackend {
    /// Starts it, fast, with answers delayed by `delay` while slow.
    pub async fn start(name: &'static str, delay: Duration) -> SlowBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let slow = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicUsize::new(0));
        let (flag, count) = (Arc::clone(&slow), Arc::clone(&requests));
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let (flag, count) = (Arc::clone(&flag), Arc::clone(&count));
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    // Bounded: heads here are a few hundred bytes; 64 KiB ends it.
                    while head.len() < 65_536 {
                        let Ok(n) = socket.read(&mut buf).await else { return };
                        if n == 0 {
                            return;
                        }
                        head.extend_from_slice(&buf[..n]);
                        while let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                            head.drain(..end + 4);
                            count.fetch_add(1, Ordering::SeqCst);
                            if flag.load(Ordering::SeqCst) {
                                sleep(delay).await;
                            }
                            let answer = format!(
                                "HTTP/1.1 200 OK\r\nX-Backend: {name}\r\nContent-Length: {}\r\n\r\n{name}",
                                name.len()
                            );
                            if socket.write_all(answer.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        SlowBackend { addr, slow, requests, task }
    }
}

impl Drop for SlowBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}
