//! One request/response exchange over one upstream connection.
//!
//! The request body is sent while the response head is awaited, and the response body is
//! relayed while any rest of the request body is sent: a backend that answers early, or
//! echoes as it reads, never deadlocks against weir. Interim 1xx responses (such as
//! `100 Continue`) are relayed to the client as they come.

use std::pin::pin;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{sleep, Instant};

use super::pump::{Capture, Pump, PumpError};
use crate::http1::request::RequestInfo;
use crate::http1::response::{self, Exchange, ResponseInfo};
use crate::http1::{BodyKind, Parsed};

/// Where the request body comes from on this attempt.
pub enum Upload<'a> {
    /// Stream it from the client after the head in `Io::head`, optionally adding the body
    /// to a replay copy that already holds the head.
    FromClient(Option<&'a mut Capture>),
    /// Replay a copy, head included, kept by an earlier attempt (the client's body was
    /// fully read).
    Replay(&'a [u8]),
}

/// Buffers and limits an exchange uses.
pub struct Io<'a> {
    /// Client input: body bytes after the head, then pipelined requests.
    pub input: &'a mut BytesMut,
    /// The upstream request head on entry; emptied once sent.
    pub head: &'a mut Vec<u8>,
    /// Scratch for the client-bound response head.
    pub reply: &'a mut Vec<u8>,
    /// Upstream input.
    pub upstream: &'a mut BytesMut,
}

/// Timeouts that apply to one exchange.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Client body idle timeout.
    pub body_timeout: Duration,
    /// Time from the end of the request to the response head.
    pub response_timeout: Duration,
    /// Upstream body idle timeout.
    pub read_timeout: Duration,
    /// Most header fields in a response.
    pub max_headers: usize,
    /// Most bytes in a response head.
    pub max_header_bytes: usize,
}

/// How an exchange that produced a response ended.
#[derive(Clone, Copy, Debug)]
pub struct Outcome {
    /// The status relayed.
    pub status: u16,
    /// The upstream connection may go back to the pool.
    pub upstream_reusable: bool,
    /// The client connection may serve another request.
    pub keep_client: bool,
    /// A 101 was relayed: the caller tunnels bytes both ways now.
    pub upgraded: bool,
}

/// Why an exchange produced no (complete) response.
#[derive(Debug)]
pub enum Failure {
    /// The upstream closed or reset the connection. `silent` when not one response byte
    /// had arrived, so a stale pooled connection may be retried.
    UpstreamClosed {
        /// No response byte arrived.
        silent: bool,
        /// The whole request, body included, had been written.
        request_sent: bool,
    },
    /// No response head within the response timeout.
    Timeout,
    /// The upstream sent something weir will not relay.
    BadResponse(&'static str),
    /// The client went away or sent a broken body; nothing more can be said to it.
    ClientGone,
    /// The client paused its body past the body timeout.
    ClientTimeout,
    /// The client's chunked body was malformed.
    ClientBadBody,
    /// The response had begun when something failed; the client connection must close.
    Aborted,
}

/// Runs one exchange. On entry `io.head` holds the upstream request head.
pub async fn run(
    client: &mut TcpStream,
    upstream: &mut TcpStream,
    io: Io<'_>,
    request: &RequestInfo,
    upload: Upload<'_>,
    exchange: Exchange,
    limits: Limits,
) -> Result<Outcome, Failure> {
    let (mut client_read, mut client_write) = client.split();
    let (mut upstream_read, mut upstream_write) = upstream.split();
    let body = request.body;
    let Io { input, head: staged, reply: out, upstream: upstream_buf } = io;
    upstream_buf.clear();
    // Body bytes that already arrived ride with the head in one write.
    let upload = async {
        match upload {
            Upload::Replay(bytes) => {
                upstream_write.write_all(bytes).await.map_err(PumpError::Write)
            }
            // The head is left intact, so a stale connection can be retried with it.
            Upload::FromClient(_) if body == BodyKind::Empty => {
                upstream_write.write_all(staged).await.map_err(PumpError::Write)
            }
            Upload::FromClient(capture) => {
                let pump = Pump {
                    kind: body,
                    dechunk: false,
                    idle_timeout: limits.body_timeout,
                    staged,
                    capture,
                };
                pump.run(input, &mut client_read, &mut upstream_write).await.map(|_| ())
            }
        }
    };
    let mut upload = pin!(upload);
    let mut uploaded: Option<Result<(), PumpError>> = None;
    let deadline = sleep(Duration::from_secs(u64::from(u32::MAX)));
    let mut deadline = pin!(deadline);
    let response = loop {
        tokio::select! {
            biased;
            result = &mut upload, if uploaded.is_none() => {
                if let Err(error) = &result {
                    if let Some(failure) = client_side(error) {
                        return Err(failure);
                    }
                }
                uploaded = Some(result);
                deadline.as_mut().reset(Instant::now() + limits.response_timeout);
            }
            read = upstream_read.read_buf(upstream_buf), if upstream_buf.len() < limits.max_header_bytes => {
                match read {
                    Ok(0) | Err(_) => {
                        let request_sent = matches!(uploaded, Some(Ok(())));
                        return Err(Failure::UpstreamClosed { silent: upstream_buf.is_empty(), request_sent });
                    }
                    Ok(_) => {}
                }
                match response::parse(upstream_buf, &exchange, out).map_err(|e| Failure::BadResponse(e.0))? {
                    Parsed::Partial => continue,
                    Parsed::Complete(info) if info.is_interim() => {
                        upstream_buf.advance(info.head_len);
                        client_write.write_all(out).await.map_err(|_| Failure::ClientGone)?;
                    }
                    Parsed::Complete(info) => break info,
                }
            }
            () = &mut deadline => return Err(Failure::Timeout),
        }
        if upstream_buf.len() >= limits.max_header_bytes {
            return Err(Failure::BadResponse("upstream response head too large"));
        }
    };
    let info = response;
    upstream_buf.advance(info.head_len);
    if info.status == 101 {
        client_write.write_all(out).await.map_err(|_| Failure::ClientGone)?;
        return Ok(Outcome {
            status: 101,
            upstream_reusable: false,
            keep_client: false,
            upgraded: true,
        });
    }
    let downloaded = {
        let download = Pump {
            kind: info.body,
            dechunk: info.dechunk,
            idle_timeout: limits.read_timeout,
            staged: out,
            capture: None,
        };
        let download = download.run(upstream_buf, &mut upstream_read, &mut client_write);
        let mut download = pin!(download);
        loop {
            tokio::select! {
                result = &mut upload, if uploaded.is_none() => uploaded = Some(result),
                result = &mut download => break result,
            }
        }
    };
    finish(info, uploaded, downloaded, upstream_buf.is_empty())
}

/// Maps an upload error to a failure if the client caused it; upstream write errors are
/// not final, because the backend may still have answered (say, 413 then close).
fn client_side(error: &PumpError) -> Option<Failure> {
    match error {
        PumpError::Read(_) | PumpError::Eof => Some(Failure::ClientGone),
        PumpError::ReadTimeout => Some(Failure::ClientTimeout),
        PumpError::Framing(_) => Some(Failure::ClientBadBody),
        PumpError::Write(_) => None,
    }
}

fn finish(
    info: ResponseInfo,
    uploaded: Option<Result<(), PumpError>>,
    downloaded: Result<u64, PumpError>,
    upstream_drained: bool,
) -> Result<Outcome, Failure> {
    if downloaded.is_err() {
        return Err(Failure::Aborted);
    }
    let upload_complete = matches!(uploaded, Some(Ok(())));
    Ok(Outcome {
        status: info.status,
        upstream_reusable: info.upstream_reusable
            && upload_complete
            && upstream_drained
            && info.body != BodyKind::UntilClose,
        keep_client: !info.close_client && upload_complete,
        upgraded: false,
    })
}
