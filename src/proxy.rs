//! The data path: one task per client connection, serving requests in a keep-alive loop.
//!
//! For each request: read and check the head ([`crate::http1::request`]), route it, pick a
//! backend, take a pooled upstream connection or open one, run the exchange
//! ([`exchange`]), and put the upstream connection back if it is clean. Errors weir makes
//! itself are short `text/plain` answers naming the cause ([`reply`]).

pub mod buffers;
pub mod exchange;
pub mod forward;
pub mod pump;
pub mod reply;
pub mod tunnel;

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::config::ServerConfig;
use crate::http1::request::{self, Forwarding, RequestInfo};
use crate::http1::Parsed;
use crate::server::Shared;
use crate::snapshot::Snapshot;
use buffers::Buffers;

/// What one client connection knows about itself.
pub struct Client {
    /// State shared by all workers.
    pub shared: Arc<Shared>,
    /// The peer's address.
    pub peer: SocketAddr,
    /// The peer's IP as text, for `X-Forwarded-For`.
    pub peer_ip: String,
    /// This worker's drain signal.
    pub drain: Rc<crate::worker::Drain>,
}

/// How reading the next request head ended.
enum Next {
    /// A request head, with the buffers that hold it.
    Request(RequestInfo, Buffers),
    /// The connection is done (closed, idle timeout, drain); nothing to send.
    Close,
    /// Answer this error, then close.
    Refuse(u16, &'static str, Buffers),
}

/// Serves one client connection until it closes.
pub async fn serve(mut stream: TcpStream, client: Client) {
    let mut spare: Option<Buffers> = None;
    let mut first = true;
    loop {
        let snapshot = crate::worker::snapshot(&client.shared);
        let server = &snapshot.config.server;
        let next = next_request(&mut stream, &client, &mut spare, server, first).await;
        first = false;
        let keep = match next {
            Next::Close => false,
            Next::Refuse(status, reason, mut buffers) => {
                reply::send(&mut stream, &client, &mut buffers.reply, status, reason, None, true)
                    .await;
                false
            }
            Next::Request(info, mut buffers) => {
                let keep =
                    forward::handle(&mut stream, &client, &snapshot, &mut buffers, info).await;
                spare = Some(buffers);
                keep && !client.drain.is_draining()
            }
        };
        if !keep {
            break;
        }
        // An idle connection keeps no buffers (see `buffers`), unless a pipelined request
        // is already waiting in them.
        if let Some(buffers) = spare.take_if(|b| b.input.is_empty()) {
            buffers::give(buffers);
        }
    }
    // Whatever the client left unread is discarded with the connection.
    if let Some(mut buffers) = spare {
        buffers.input.clear();
        buffers::give(buffers);
    }
}

/// Waits for and parses the next request head.
async fn next_request(
    stream: &mut TcpStream,
    client: &Client,
    spare: &mut Option<Buffers>,
    server: &ServerConfig,
    first: bool,
) -> Next {
    let mut buffers = match spare.take() {
        Some(buffers) => buffers,
        None => {
            // Wait for the first byte without holding buffers.
            let idle = if first { server.header_timeout } else { server.keepalive_timeout };
            tokio::select! {
                ready = tokio::time::timeout(idle, stream.readable()) => {
                    if !matches!(ready, Ok(Ok(()))) {
                        return Next::Close;
                    }
                }
                () = client.drain.wait() => return Next::Close,
            }
            buffers::take()
        }
    };
    let deadline = Instant::now() + server.header_timeout;
    let forwarding = Forwarding {
        client_ip: client.peer_ip.as_bytes(),
        proto: b"http",
        max_headers: server.max_headers,
    };
    // Bounded: each pass reads at least one byte, and the head is bounded in bytes.
    loop {
        if !buffers.input.is_empty() {
            let head_end = buffers.input.len().min(server.max_header_bytes);
            match request::parse(&buffers.input[..head_end], &forwarding, &mut buffers.head) {
                Ok(Parsed::Complete(info)) => return Next::Request(info, buffers),
                Ok(Parsed::Partial) if buffers.input.len() >= server.max_header_bytes => {
                    return Next::Refuse(431, "request header fields too large", buffers);
                }
                Ok(Parsed::Partial) => {}
                Err(error) => {
                    let (status, reason) = error.status();
                    return Next::Refuse(status, reason, buffers);
                }
            }
        }
        buffers.input.reserve(4096);
        match tokio::time::timeout_at(deadline, stream.read_buf(&mut buffers.input)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                buffers.input.clear();
                buffers::give(buffers);
                return Next::Close;
            }
            Ok(Ok(_)) => {}
            Err(_) if buffers.input.is_empty() => {
                buffers::give(buffers);
                return Next::Close;
            }
            Err(_) => {
                buffers.input.clear();
                return Next::Refuse(408, "request header timeout", buffers);
            }
        }
    }
}

/// The snapshot type the data path holds across awaits: a worker-local handle.
pub type SnapshotRef = Rc<Arc<Snapshot>>;
