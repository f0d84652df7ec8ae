//! A backend whose slowness a test switches on and off: it answers `200 NAME` to every
//! request, after a delay while slow, and counts the requests it read.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::sleep;

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
            while let Ok((socket, _)) = listener.accept().await {
                let (flag, count) = (Arc::clone(&flag), Arc::clone(&count));
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nX-Backend: {name}\r\nContent-Length: {}\r\n\r\n{name}",
                    name.len()
                );
                tokio::spawn(answer_heads(socket, count, move |_| {
                    let (flag, answer) = (Arc::clone(&flag), answer.clone());
                    async move {
                        if flag.load(Ordering::SeqCst) {
                            sleep(delay).await;
                        }
                        Some(answer)
                    }
                }));
            }
        });
        SlowBackend { addr, slow, requests, task }
    }
}

/// Reads request heads (no bodies) from `socket`, counting each in `count`, and answers
/// each with what `respond` makes of its text; `None` from it closes the connection.
pub async fn answer_heads<F: Future<Output = Option<String>>>(
    mut socket: TcpStream,
    count: Arc<AtomicUsize>,
    mut respond: impl FnMut(String) -> F,
) {
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
            let text = String::from_utf8_lossy(&head[..end]).into_owned();
            head.drain(..end + 4);
            count.fetch_add(1, Ordering::SeqCst);
            let Some(answer) = respond(text).await else { return };
            if socket.write_all(answer.as_bytes()).await.is_err() {
                return;
            }
        }
    }
}

impl Drop for SlowBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}
