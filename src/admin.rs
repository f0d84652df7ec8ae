//! The admin listener: `/healthz` and `/metrics` (more endpoints arrive with issues #7
//! and #8). It runs on its own thread so a slow scrape never delays client traffic.

use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::metrics;
use crate::server::Shared;

/// Largest admin request head. Admin requests are short; this bounds a bad client.
const MAX_ADMIN_HEAD_BYTES: usize = 16 * 1024;
/// Header fields parsed in an admin request.
const MAX_ADMIN_HEADERS: usize = 64;
/// An admin connection idle this long is closed.
const ADMIN_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Admin connections served at once; scrapers and operators need few.
const MAX_ADMIN_CONNECTIONS: usize = 64;

/// Binds the admin socket.
pub fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr)
        .map_err(|e| io::Error::new(e.kind(), format!("admin listen {addr}: {e}")))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Starts the admin thread.
pub fn spawn(shared: Arc<Shared>, listener: std::net::TcpListener) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name("weir-admin".into()).spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime,
            Err(error) => {
                tracing::error!("cannot start admin runtime: {error}");
                return;
            }
        };
        runtime.block_on(serve(shared, listener));
    })
}

async fn serve(shared: Arc<Shared>, listener: std::net::TcpListener) {
    let Ok(listener) = TcpListener::from_std(listener) else {
        tracing::error!("cannot register admin listener");
        return;
    };
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_ADMIN_CONNECTIONS));
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|draining| *draining) => return,
        };
        let Ok((stream, _)) = accepted else { continue };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else { continue };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let _permit = permit;
            let _ = connection(stream, &shared).await;
        });
    }
}

async fn connection(mut stream: TcpStream, shared: &Shared) -> io::Result<()> {
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        let (status, content_type, body, head_len) = loop {
            if let Some(parsed) = parse(&buf, shared) {
                break parsed?;
            }
            if buf.len() >= MAX_ADMIN_HEAD_BYTES {
                return Ok(());
            }
            let read = tokio::time::timeout(ADMIN_IDLE_TIMEOUT, stream.read_buf(&mut buf)).await;
            if !matches!(read, Ok(Ok(n)) if n > 0) {
                return Ok(());
            }
        };
        buf.advance(head_len);
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
    }
}

type AdminResponse = (&'static str, &'static str, String, usize);

/// Parses one request and produces its response; `None` while the head is incomplete.
fn parse(buf: &[u8], shared: &Shared) -> Option<io::Result<AdminResponse>> {
    let mut slots = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_ADMIN_HEADERS];
    let mut request = httparse::Request::new(&mut []);
    let head_len = match request.parse_with_uninit_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return None,
        Err(_) => {
            return Some(Err(io::Error::new(io::ErrorKind::InvalidData, "bad admin request")))
        }
    };
    let path = request.path.unwrap_or("/").split('?').next().unwrap_or("/");
    let response = match (request.method.unwrap_or(""), path) {
        ("GET", "/healthz") => {
            ("200 OK", "text/plain; charset=utf-8", "ok\n".to_string(), head_len)
        }
        ("GET", "/metrics") => {
            let snapshot = shared.snapshot.load();
            let body = metrics::render(&shared.frontend, &snapshot);
            ("200 OK", "text/plain; version=0.0.4; charset=utf-8", body, head_len)
        }
        _ => ("404 Not Found", "text/plain; charset=utf-8", "not found\n".to_string(), head_len),
    };
    Some(Ok(response))
}
