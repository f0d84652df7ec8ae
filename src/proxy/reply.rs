//! Responses weir makes itself: a status, a short `text/plain` body naming the cause, and
//! a warn log naming the backend involved.

use std::time::Duration;

use super::io::Writer;
use super::pump::write_all;
use super::Client;

/// Reason phrase (RFC 9110 §15) for the statuses weir generates; the test lists them.
/// 413 is not sent today but kept for a request body limit.
fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

/// Writes an error response to `out` (cleared first), with more header lines in
/// `fields`, each `Name: value\r\n` (`Retry-After` of a 429), or none.
pub fn render_with(out: &mut Vec<u8>, status: u16, cause: &str, close: bool, fields: &str) {
    use std::io::Write as _;
    out.clear();
    let body_len = cause.len() + 1;
    let connection = if close { "Connection: close\r\n" } else { "" };
    let _ = write!(
        out,
        "HTTP/1.1 {status} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {body_len}\r\n{fields}{connection}\r\n{cause}\n",
        reason_phrase(status)
    );
}

/// An error response weir sends.
#[derive(Clone, Copy, Debug)]
pub struct Answer<'a> {
    /// The status.
    pub status: u16,
    /// The cause, the body and the log message.
    pub cause: &'a str,
    /// The backend involved, for the log.
    pub backend: Option<&'a str>,
    /// Say `Connection: close` (the caller closes the connection after).
    pub close: bool,
    /// Answer in gRPC's shape ([`super::grpc`]): the request was a gRPC call.
    pub grpc: bool,
}

impl<'a> Answer<'a> {
    /// An answer of weir's own, with no backend involved.
    pub fn local(status: u16, cause: &'a str, close: bool) -> Self {
        Answer { status, cause, backend: None, close, grpc: false }
    }
}

/// Sends an error response, logs it, and counts it. Write errors are ignored: the client
/// may already be gone, and the connection closes anyway when `close` is set. A client
/// that takes no byte for `send_timeout` is given up on, as in the body pump.
pub async fn send<S: Writer>(
    stream: &mut S,
    client: &Client,
    out: &mut Vec<u8>,
    answer: Answer<'_>,
    send_timeout: Duration,
) {
    send_with(stream, client, out, answer, "", send_timeout).await;
}

/// [`send`] with more header lines in an HTTP answer ([`render_with`]); a gRPC answer
/// carries none.
pub async fn send_with<S: Writer>(
    stream: &mut S,
    client: &Client,
    out: &mut Vec<u8>,
    answer: Answer<'_>,
    fields: &str,
    send_timeout: Duration,
) {
    let Answer { status, cause, backend, close, grpc } = answer;
    match backend {
        Some(backend) => tracing::warn!(client = %client.peer, backend, status, "{cause}"),
        // A limit refuses floods by design: a line for each would be a flood of its own
        // (`weir_limit_requests_total` counts them).
        None if status == 429 => tracing::debug!(client = %client.peer, status, "{cause}"),
        None => tracing::warn!(client = %client.peer, status, "{cause}"),
    }
    match grpc {
        false => render_with(out, status, cause, close, fields),
        true => super::grpc::render(out, status, cause, close),
    }
    let _ = write_all(stream, out, send_timeout).await;
    // Counted once the write is over, sent or failed: an HTTP/2 stream reset meanwhile
    // drops this future, and is counted where the reset is (`h2::account_reset`).
    client.shared.frontend.local().record(client.http2, status);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_weir_sends_has_its_reason_phrase() {
        // The statuses weir answers with itself (request::RequestError, proxy::read_head,
        // failure::fail, forward::handle), with RFC 9110 §15's reason phrases.
        let statuses = [
            (400, "Bad Request"),
            (405, "Method Not Allowed"),
            (408, "Request Timeout"),
            (429, "Too Many Requests"),
            (431, "Request Header Fields Too Large"),
            (501, "Not Implemented"),
            (502, "Bad Gateway"),
            (503, "Service Unavailable"),
            (504, "Gateway Timeout"),
            (505, "HTTP Version Not Supported"),
        ];
        for (status, reason) in statuses {
            let mut out = Vec::new();
            render_with(&mut out, status, "cause", true, "");
            let line = format!("HTTP/1.1 {status} {reason}\r\n");
            assert!(out.starts_with(line.as_bytes()), "{}", out.escape_ascii());
        }
    }
}
