//! The answer to a request whose attempts all failed: the status and a short cause for
//! the client, and a fixed label for the access log.

use super::buffers::Buffers;
use super::exchange::{Cut, Failure};
use super::io::Stream;
use super::retry::AttemptError;
use super::{reply, Client};
use crate::pool::ConnectError;
use crate::snapshot::Backend;

/// What the client got of a request whose attempts all failed.
pub(super) struct Failed {
    /// The client connection may serve another request.
    pub keep: bool,
    /// The status the client got (0 for none).
    pub status: u16,
    /// A short cause for the access log.
    pub cause: &'static str,
    /// Response body bytes written to the client.
    pub body_bytes: u64,
}

/// Answers a request whose attempts all failed, and says what the client got.
pub(super) async fn fail<S: Stream>(
    stream: &mut S,
    client: &Client,
    backend: &Backend,
    buffers: &mut Buffers,
    failure: AttemptError,
    keep_after_error: bool,
    send_timeout: std::time::Duration,
) -> Failed {
    let label = failure_label(&failure);
    let stats = backend.live.stats.local();
    let local = matches!(failure, AttemptError::Connect(ConnectError::Local(..)));
    let (status, cause): (u16, String) = match failure {
        // 503, not 502: weir is overloaded; the backend was not reached and is fine.
        AttemptError::Connect(ConnectError::Local(fault, _)) => {
            (503, format!("local resource exhausted: {}", fault.label()))
        }
        AttemptError::Connect(ConnectError::Timeout) => (502, "upstream connect timeout".into()),
        AttemptError::Connect(ConnectError::Failed(e)) => {
            (502, format!("upstream connect failed: {e}"))
        }
        AttemptError::Exchange(Failure::UpstreamClosed { .. }) => {
            (502, "upstream closed the connection before responding".into())
        }
        AttemptError::Exchange(Failure::Timeout) => (504, "upstream response timeout".into()),
        AttemptError::Exchange(Failure::BadResponse(cause)) => (502, cause.into()),
        AttemptError::Exchange(Failure::ClientTimeout) => (408, "request body timeout".into()),
        AttemptError::Exchange(Failure::ClientBadBody) => {
            (400, "malformed chunked request body".into())
        }
        AttemptError::Exchange(Failure::ClientGone) => {
            return Failed { keep: false, status: 0, cause: label, body_bytes: 0 }
        }
        AttemptError::Exchange(Failure::Aborted(cut)) => {
            let status = cut_short(client, backend, &cut);
            return Failed { keep: false, status, cause: label, body_bytes: cut.body_bytes };
        }
        AttemptError::Status(status) => (502, format!("upstream answered {status}")),
        AttemptError::Tls(error) | AttemptError::Exchange(Failure::UpstreamTls(error)) => {
            (502, format!("upstream TLS error: {error}"))
        }
    };
    if status >= 500 && !local {
        stats.requests.record(status);
    }
    let answer = reply::Answer {
        status,
        cause: &cause,
        backend: Some(&backend.label),
        close: !keep_after_error,
    };
    reply::send(stream, client, &mut buffers.reply, answer, send_timeout).await;
    Failed { keep: keep_after_error, status, cause: label, body_bytes: 0 }
}

/// Accounts for a response that stopped after bytes reached the client, which can only be
/// told by closing the connection; returns the status the client got (0 for none). It
/// is counted as sent, so the status counts agree with what clients saw.
fn cut_short(client: &Client, backend: &Backend, cut: &Cut) -> u16 {
    let (status, body_bytes, cause) = (cut.status, cut.body_bytes, cut.cause);
    if cut.upstream_fault {
        tracing::warn!(client = %client.peer, backend = %backend.label, status, body_bytes, "response cut: {cause}");
    } else {
        tracing::debug!(client = %client.peer, backend = %backend.label, status, body_bytes, "response cut: {cause}");
    }
    if status != 0 && client.metrics {
        backend.live.stats.local().requests.record(status);
        client.shared.frontend.local().requests.record(status);
    }
    status
}

/// A fixed label for each way an exchange fails, for the access log.
fn failure_label(failure: &AttemptError) -> &'static str {
    match failure {
        AttemptError::Connect(ConnectError::Timeout) => "upstream connect timeout",
        AttemptError::Connect(ConnectError::Failed(_)) => "upstream connect failed",
        AttemptError::Connect(ConnectError::Local(..)) => "local resource exhausted",
        AttemptError::Exchange(Failure::UpstreamClosed { .. }) => "upstream closed",
        AttemptError::Exchange(Failure::Timeout) => "upstream timeout",
        AttemptError::Exchange(Failure::BadResponse(_)) => "bad upstream response",
        AttemptError::Exchange(Failure::ClientTimeout) => "request body timeout",
        AttemptError::Exchange(Failure::ClientBadBody) => "bad request body",
        AttemptError::Exchange(Failure::ClientGone) => "client gone",
        AttemptError::Exchange(Failure::Aborted(cut)) => cut.cause,
        AttemptError::Status(_) => "upstream status",
        AttemptError::Tls(error) | AttemptError::Exchange(Failure::UpstreamTls(error)) => {
            error.access_log_label()
        }
    }
}
