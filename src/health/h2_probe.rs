//! HTTP/2 for probes: the connection a gRPC probe ([`super::grpc_probe`]) and an HTTP
//! probe to a backend that speaks HTTP/2 each open for one request, and the HTTP probe's
//! `GET` over it.
//!
//! An HTTP probe speaks HTTP/2 when the pool does (`protocol = "h2c"`: prior knowledge;
//! over TLS, when the backend chose `h2` by ALPN, which an `auto` or `h2` pool offers),
//! with the HTTP/1.1 probe's rules: the status must be in `expect_status`, and the
//! answer's head is bounded by [`MAX_PROBE_HEAD`]; its body is not read.

use std::future::Future;

use bytes::Bytes;
use h2::client::SendRequest;
use http::Request;
use tokio::io::{AsyncRead, AsyncWrite};

use super::probe::MAX_PROBE_HEAD;
use crate::config::StatusSet;

/// Runs `call` on a new HTTP/2 connection over `stream` (TCP, or TLS that chose `h2`)
/// while driving the connection; the connection ends with it. The codec holds at most
/// `limit` bytes of an answer: its head fields, and its body (the windows are that
/// size, so a backend that sends more stalls against them until the probe's timeout).
/// The caller bounds the whole probe by its `timeout`.
pub async fn exchange<S, C, F>(stream: S, limit: usize, call: C) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
    C: FnOnce(SendRequest<Bytes>) -> F,
    F: Future<Output = Result<(), String>>,
{
    let limit = u32::try_from(limit).unwrap_or(u32::MAX);
    let mut builder = h2::client::Builder::new();
    builder
        .enable_push(false)
        .max_header_list_size(limit)
        .initial_window_size(limit)
        .initial_connection_window_size(limit);
    let (send, connection) = builder
        .handshake::<_, Bytes>(stream)
        .await
        .map_err(|error| format!("HTTP/2 handshake failed: {error}"))?;
    tokio::select! {
        biased;
        result = call(send) => result,
        ended = connection => Err(match ended {
            Ok(()) => "connection closed before an answer".to_string(),
            Err(error) => format!("HTTP/2 error: {error}"),
        }),
    }
}

/// An HTTP/2 error as a probe's failure detail.
pub fn failed(error: h2::Error) -> String {
    format!("HTTP/2 error: {error}")
}

/// The HTTP probe over HTTP/2: `GET path` for `:authority` `authority` and `:scheme`
/// `scheme` over `stream`; `Ok` when the status is in `expect`.
pub async fn get<S>(
    stream: S,
    (scheme, authority, path): (&str, &str, &str),
    expect: StatusSet,
) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    exchange(stream, MAX_PROBE_HEAD, |send| async move {
        let mut send = send.ready().await.map_err(failed)?;
        let request = Request::get(format!("{scheme}://{authority}{path}"))
            .header("user-agent", "weir-health-check")
            .header("accept", "*/*")
            .body(())
            .map_err(|error| format!("bad probe request: {error}"))?;
        let (response, _) = send.send_request(request, true).map_err(failed)?;
        let status = response.await.map_err(failed)?.status().as_u16();
        match expect.contains(status) {
            true => Ok(()),
            false => Err(format!("status {status}")),
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that answers one request with `status` and a head of `extra` bytes,
    /// and the probe's result against it.
    async fn answering(status: u16, extra: usize) -> Result<(), String> {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let serve = async move {
            let mut conn = h2::server::handshake(server).await.unwrap();
            let (request, mut respond) = conn.accept().await.unwrap().unwrap();
            assert_eq!(request.uri().to_string(), "https://a:1/health?x");
            let head = http::Response::builder().status(status).header("x-pad", "p".repeat(extra));
            let _ = respond.send_response(head.body(()).unwrap(), true);
            let _ = std::future::poll_fn(|cx| conn.poll_closed(cx)).await;
        };
        let expect = StatusSet::range(200, 399);
        tokio::select! {
            result = get(client, ("https", "a:1", "/health?x"), expect) => result,
            () = serve => Err("the server ended first".to_string()),
        }
    }

    #[tokio::test]
    async fn the_status_decides_and_an_oversize_head_fails() {
        assert_eq!(answering(204, 10).await, Ok(()));
        assert_eq!(answering(503, 10).await, Err("status 503".to_string()));
        let oversize = answering(200, 2 * MAX_PROBE_HEAD).await.unwrap_err();
        assert!(oversize.starts_with("HTTP/2 error"), "{oversize}");
    }
}
