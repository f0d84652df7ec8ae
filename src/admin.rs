//! The admin listener: `/healthz`, `/metrics`, `/status` and the JSON API under
//! `/api/v1/`. It runs on its own thread so a slow scrape never delays client traffic.
//!
//! - [`http`]: the small bounded HTTP/1.1 server (heads, Content-Length bodies).
//! - [`routes`]: endpoints, 404 and 405.
//! - [`api`]: the `/api/v1/pools` and `/api/v1/routes` documents.
//! - [`mutate`]: the mutating API (backends, pools, routes, reload).
//! - [`auth`]: the bearer token (the rule against an open API without one is
//!   [`crate::config::validate::exposure`]).
//! - [`slots`]: how many connections, in all and per client address, and the reserve
//!   that keeps `/healthz` and `/metrics` answering.
//! - `status.html`: the status page, one self-contained file served as is.

pub mod api;
pub mod auth;
pub mod body;
pub mod http;
pub mod mutate;
pub mod routes;
pub mod slots;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::BytesMut;
use tokio::net::{TcpListener, TcpStream};

use crate::control::{EditError, Plane, StoreError};

/// Why an API call was refused: the status and the message for `{"error": ...}`.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status.
    pub status: u16,
    /// What is wrong.
    pub message: String,
    /// For a conflict (409): the objects as the fleet store holds them now, as JSON.
    pub current: Option<String>,
}

impl Refusal {
    /// A refusal with `status`.
    pub fn new(status: u16, message: impl Into<String>) -> Refusal {
        Refusal { status, message: message.into(), current: None }
    }
}

/// The status of each cause the control plane refuses a change for, decided here at the
/// API's edge.
impl From<EditError<Refusal>> for Refusal {
    fn from(error: EditError<Refusal>) -> Refusal {
        let status = match &error {
            EditError::Change(refusal) => refusal.status,
            EditError::Invalid(_) | EditError::Build(_) => 400,
            // Too large is this change's doing; anything else is the server's.
            EditError::StateFile(io) if io.kind() == io::ErrorKind::FileTooLarge => 400,
            EditError::StateFile(_) | EditError::Poisoned => 500,
            EditError::Upgrading
            | EditError::Store(StoreError::Unavailable(_) | StoreError::Unknown(_)) => 503,
            EditError::Store(StoreError::Conflict { .. }) => 409,
        };
        match error {
            EditError::Change(refusal) => refusal,
            EditError::Store(StoreError::Conflict { message, current }) => {
                Refusal { status, message, current: Some(current) }
            }
            other => Refusal::new(status, other.to_string()),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Requests served on one admin connection before it is closed (the client reconnects);
/// a scrape every 15 s reaches it after about 40 hours.
const MAX_REQUESTS_PER_CONNECTION: usize = 10_000;

/// The status page: HTML with inline CSS and JavaScript, no external assets.
pub const STATUS_PAGE: &str = include_str!("admin/status.html");

/// Binds the admin socket.
pub fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr)
        .map_err(|e| io::Error::new(e.kind(), format!("admin listen {addr}: {e}")))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Starts the admin thread.
pub fn spawn(plane: Arc<Plane>, listener: std::net::TcpListener) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name("weir-admin".into()).spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime,
            Err(error) => {
                tracing::error!("cannot start admin runtime: {error}");
                return;
            }
        };
        runtime.block_on(serve(plane, listener));
    })
}

async fn serve(plane: Arc<Plane>, listener: std::net::TcpListener) {
    let Ok(listener) = TcpListener::from_std(listener) else {
        tracing::error!("cannot register admin listener");
        return;
    };
    let slots = Arc::new(slots::Slots::default());
    let mut shutdown = plane.data().shutdown.subscribe();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|draining| *draining) => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of files, say: counted, logged within a budget, and paced, as the
                // workers' accept loops are.
                crate::worker::accept_failed(plane.data(), &error).await;
                continue;
            }
        };
        // No slot: the connection is closed unanswered, as at any connection limit.
        let Some(slot) = slots.take(peer.ip()) else { continue };
        let plane = Arc::clone(&plane);
        tokio::spawn(async move {
            let _ = match slot.kind() {
                slots::Kind::Ordinary => connection(stream, peer, &plane).await,
                slots::Kind::Reserve => reserve_connection(stream, peer, &plane).await,
            };
            drop(slot);
        });
    }
}

/// Paths a reserve slot serves: what health checkers and scrapers need, cheap to answer.
const RESERVE_PATHS: &[&str] = &["/healthz", "/metrics"];

/// Serves one request on a reserve slot (see [`slots`]): `/healthz` and `/metrics`
/// only, anything else 503, then closes.
async fn reserve_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    plane: &Plane,
) -> io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut buf = BytesMut::new();
    let request =
        match http::read_request(&mut stream, &mut buf, http::ADMIN_FIRST_BYTE_TIMEOUT).await {
            Ok(Some(request)) => request,
            Ok(None) => return Ok(()),
            Err(reject) => {
                return http::write_response(&mut stream, &reject.response(), false, true).await;
            }
        };
    let mut request = request;
    // The address `accept` gave: asking the socket again can fail once the client has
    // reset, and the access lists need an address to check.
    request.peer = Some(peer);
    let response = if RESERVE_PATHS.contains(&request.path.as_str()) {
        routes::handle(&request, plane)
    } else {
        http::Response::text(503, "admin listener busy: only /healthz and /metrics are served\n")
            .with_header("Retry-After", "1")
    };
    http::write_response(&mut stream, &response, request.is_head(), true).await
}

/// Serves requests on one connection until the client closes, goes idle, asks to close
/// or sends something refused.
async fn connection(mut stream: TcpStream, peer: SocketAddr, plane: &Plane) -> io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut buf = BytesMut::with_capacity(4096);
    for served in 1..=MAX_REQUESTS_PER_CONNECTION {
        // A new connection gets the short first-byte deadline; one that has been served
        // waits like any keep-alive connection.
        let idle =
            if served == 1 { http::ADMIN_FIRST_BYTE_TIMEOUT } else { http::ADMIN_IDLE_TIMEOUT };
        let mut request = match http::read_request(&mut stream, &mut buf, idle).await {
            Ok(Some(request)) => request,
            Ok(None) => return Ok(()),
            Err(reject) => {
                return http::write_response(&mut stream, &reject.response(), false, true).await;
            }
        };
        request.peer = Some(peer);
        let response = routes::handle(&request, plane);
        let close = request.close || served == MAX_REQUESTS_PER_CONNECTION;
        http::write_response(&mut stream, &response, request.is_head(), close).await?;
        if close {
            return Ok(());
        }
    }
    Ok(())
}
