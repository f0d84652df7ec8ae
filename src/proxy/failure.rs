//! The answer to a request whose attempts all failed: the status and a short cause for
//! the client, and a fixed label for the access log.

use super::buffers::Buffers;
use super::class::{Class, Reply, Source};
use super::exchange::Cut;
use super::io::Stream;
use super::{reply, Client};
use crate::config::ServerConfig;
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

/// How a failed request's connection goes on, and how it is answered.
#[derive(Clone, Copy)]
pub(super) struct Ending {
    /// The client connection may serve another request after the answer.
    pub keep: bool,
    /// The request is a gRPC call: the answer takes gRPC's shape.
    pub grpc: bool,
    /// The gRPC call's deadline (`grpc-timeout`).
    pub deadline: Option<tokio::time::Instant>,
}

/// Answers a request whose attempts all failed, as its [`Class`] says, and says what the
/// client got.
pub(super) async fn fail<S: Stream>(
    stream: &mut S,
    client: &Client,
    backend: &Backend,
    buffers: &mut Buffers,
    class: &Class<'_>,
    ending: Ending,
    server: &ServerConfig,
) -> Failed {
    let keep_after_error = ending.keep;
    let cause = class.label;
    let status = match class.reply {
        Reply::Answer(status) => status,
        Reply::Nothing => return Failed { keep: false, status: 0, cause, body_bytes: 0 },
        Reply::Cut(cut) => {
            let status = cut_short(client, backend, cut);
            return Failed { keep: false, status, cause, body_bytes: cut.body_bytes };
        }
    };
    // weir's own exhaustion answers 503 but is no response of the backend's.
    if status >= 500 && class.source != Source::Local {
        backend.live.stats.local().requests.record(status);
    }
    let text = class.cause.to_string();
    let answer = reply::Answer {
        status,
        cause: &text,
        backend: Some(&backend.label),
        close: !keep_after_error,
        grpc: ending.grpc,
    };
    reply::send(stream, client, &mut buffers.reply, answer, server.send_timeout).await;
    Failed { keep: keep_after_error, status, cause, body_bytes: 0 }
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
        client.shared.frontend.local().record(client.http2, status);
    }
    status
}
