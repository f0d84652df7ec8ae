//! A steady client for upgrade and listener tests: fresh connections and keep-alive
//! connections, GETs and POSTs, each checked, every failure recorded (never retried).
// Each test binary uses only some helpers.
#![allow(dead_code)]

use crate::support::{connect, read_response, Response};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// Pause between two requests of one client loop: steady, not a flood on 2 cores.
const PACE: Duration = Duration::from_millis(3);

/// Most requests one loop sends, so a stuck test still ends.
const MAX_REQUESTS_PER_LOOP: usize = 20_000;

/// What one client loop saw.
#[derive(Debug, Default)]
pub struct Tally {
    /// Requests answered as expected.
    pub ok: usize,
    /// Responses that carried `Connection: close` on a keep-alive connection.
    pub closes: usize,
    /// Everything that went wrong, described.
    pub failures: Vec<String>,
}

/// Client loops running against one address until stopped.
pub struct Load {
    stop: Arc<AtomicBool>,
    served: Arc<AtomicUsize>,
    tasks: Vec<(&'static str, JoinHandle<Tally>)>,
}

/// The kinds of client loop.
#[derive(Clone, Copy, Debug)]
enum Kind {
    FreshGet,
    FreshPost,
    KeepAliveGet,
    KeepAlivePost,
}

impl Load {
    /// Starts one loop of each kind against `addr`.
    pub fn start(addr: SocketAddr) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicUsize::new(0));
        let kinds = [
            ("fresh GET", Kind::FreshGet),
            ("fresh POST", Kind::FreshPost),
            ("keep-alive GET", Kind::KeepAliveGet),
            ("keep-alive POST", Kind::KeepAlivePost),
        ];
        let tasks = kinds
            .into_iter()
            .map(|(name, kind)| {
                let (stop, served) = (Arc::clone(&stop), Arc::clone(&served));
                (name, tokio::spawn(client_loop(addr, kind, stop, served)))
            })
            .collect();
        Load { stop, served, tasks }
    }

    /// Requests answered as expected so far, all loops together.
    pub fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }

    /// Stops the loops and returns each one's tally by name.
    pub async fn finish(self) -> Vec<(&'static str, Tally)> {
        self.stop.store(true, Ordering::SeqCst);
        let mut out = Vec::new();
        for (name, task) in self.tasks {
            out.push((name, task.await.expect("client loop")));
        }
        out
    }
}

fn request(kind: Kind, n: usize) -> (Vec<u8>, Option<String>) {
    let close = matches!(kind, Kind::FreshGet | Kind::FreshPost);
    let connection = if close { "Connection: close\r\n" } else { "" };
    match kind {
        Kind::FreshGet | Kind::KeepAliveGet => {
            let head = format!("GET /?n={n} HTTP/1.1\r\nHost: test\r\n{connection}\r\n");
            (head.into_bytes(), None)
        }
        Kind::FreshPost | Kind::KeepAlivePost => {
            let body = format!("payload number {n} {}", "x".repeat(n % 97));
            let head = format!(
                "POST /echo-body HTTP/1.1\r\nHost: test\r\n{connection}Content-Length: {}\r\n\r\n",
                body.len()
            );
            let mut bytes = head.into_bytes();
            bytes.extend_from_slice(body.as_bytes());
            (bytes, Some(body))
        }
    }
}

/// Checks one response; `Err` describes what was wrong.
fn check(resp: &Response, expected_body: Option<&str>) -> Result<(), String> {
    if resp.status != 200 {
        return Err(format!("status {}: {}", resp.status, resp.text()));
    }
    match expected_body {
        Some(body) if resp.text() != body => Err(format!("echo mismatch: {}", resp.text())),
        _ => Ok(()),
    }
}

async fn exchange(stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<Response> {
    stream.write_all(bytes).await?;
    read_response(stream).await
}

async fn client_loop(
    addr: SocketAddr,
    kind: Kind,
    stop: Arc<AtomicBool>,
    served: Arc<AtomicUsize>,
) -> Tally {
    let mut tally = Tally::default();
    let mut kept: Option<TcpStream> = None;
    let keep_alive = matches!(kind, Kind::KeepAliveGet | Kind::KeepAlivePost);
    for n in 0..MAX_REQUESTS_PER_LOOP {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let mut stream = match kept.take() {
            Some(stream) => stream,
            None => match connect(addr).await {
                Ok(stream) => stream,
                Err(error) => {
                    tally.failures.push(format!("request {n}: connect: {error}"));
                    continue;
                }
            },
        };
        let (bytes, body) = request(kind, n);
        match exchange(&mut stream, &bytes).await {
            Ok(resp) => match check(&resp, body.as_deref()) {
                Ok(()) => {
                    tally.ok += 1;
                    served.fetch_add(1, Ordering::SeqCst);
                    if keep_alive && resp.has_connection_close() {
                        tally.closes += 1;
                    } else if keep_alive {
                        kept = Some(stream);
                    }
                }
                Err(error) => tally.failures.push(format!("request {n}: {error}")),
            },
            Err(error) => tally.failures.push(format!("request {n}: {error}")),
        }
        tokio::time::sleep(PACE).await;
    }
    tally
}
