//! The admin listener's small HTTP/1.1 server: one request at a time per connection,
//! heads parsed with httparse, bodies read by Content-Length, every buffer bounded.
//!
//! Admin traffic is a scraper, a status page and an operator with curl, so this favours
//! plain and strict over fast: no chunked request bodies (411), no body over
//! [`MAX_ADMIN_BODY_BYTES`] (413), and a malformed head gets 400 and a close.

use std::io;
use std::mem::MaybeUninit;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest admin request head. Admin requests are short; this bounds a bad client.
pub const MAX_ADMIN_HEAD_BYTES: usize = 16 * 1024;
/// Largest admin request body: API documents are a few hundred bytes.
pub const MAX_ADMIN_BODY_BYTES: usize = 1024 * 1024;
/// Header fields parsed in an admin request.
const MAX_ADMIN_HEADERS: usize = 64;
/// An admin connection idle this long (or this slow to send a request) is closed.
pub const ADMIN_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// One parsed admin request.
#[derive(Debug, Default)]
pub struct Request {
    /// Method, as sent.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Query string after `?`, without the `?`.
    pub query: String,
    /// Header fields, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body (empty without Content-Length).
    pub body: Vec<u8>,
    /// Whether the connection closes after the response.
    pub close: bool,
    /// The client's address, for logs.
    pub peer: Option<std::net::SocketAddr>,
}

impl Request {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Whether the response carries headers only.
    pub fn is_head(&self) -> bool {
        self.method == "HEAD"
    }
}

/// One admin response.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Content-Type.
    pub content_type: &'static str,
    /// Extra header fields.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A `text/plain` response.
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response::new(status, "text/plain; charset=utf-8", body.into().into_bytes())
    }

    /// An `application/json` response.
    pub fn json(status: u16, body: String) -> Response {
        Response::new(status, "application/json", body.into_bytes())
    }

    /// A response with any content type.
    pub fn new(status: u16, content_type: &'static str, body: Vec<u8>) -> Response {
        Response { status, content_type, headers: Vec::new(), body }
    }

    /// Adds a header field.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }
}

/// Why a request was refused before routing; each maps to a response and a close.
#[derive(Debug, PartialEq, Eq)]
pub enum Reject {
    /// Malformed head or framing.
    BadRequest,
    /// Head over [`MAX_ADMIN_HEAD_BYTES`] or too many fields.
    HeadTooLarge,
    /// Body over [`MAX_ADMIN_BODY_BYTES`].
    BodyTooLarge,
    /// Transfer-Encoding instead of Content-Length.
    LengthRequired,
}

impl Reject {
    /// The response that explains the refusal.
    pub fn response(&self) -> Response {
        match self {
            Reject::BadRequest => Response::text(400, "malformed request\n"),
            Reject::HeadTooLarge => Response::text(431, "request head too large\n"),
            Reject::BodyTooLarge => Response::text(413, "request body over 1 MiB\n"),
            Reject::LengthRequired => Response::text(411, "send the body with Content-Length\n"),
        }
    }
}

/// What the head says, owned so the buffer can move on.
#[derive(Debug)]
pub struct Head {
    /// Bytes of the head, including the empty line.
    pub len: usize,
    /// The request, its body still empty.
    pub request: Request,
    /// Body bytes that follow the head.
    pub content_length: usize,
}

/// Parses a complete head from `buf`; `Ok(None)` while it is incomplete. Public (with
/// [`Head`]) for the fuzz target in `fuzz/`; the server itself only calls it here.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, Reject> {
    let mut slots = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_ADMIN_HEADERS];
    let mut parsed = httparse::Request::new(&mut []);
    let len = match parsed.parse_with_uninit_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(Reject::HeadTooLarge),
        Err(_) => return Err(Reject::BadRequest),
    };
    let target = parsed.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut request = Request {
        method: parsed.method.unwrap_or("").to_string(),
        path: path.to_string(),
        query: query.to_string(),
        close: parsed.version != Some(1),
        ..Request::default()
    };
    let mut content_length: Option<usize> = None;
    for header in parsed.headers.iter() {
        let value = std::str::from_utf8(header.value).map_err(|_| Reject::BadRequest)?;
        if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(Reject::LengthRequired);
        }
        if header.name.eq_ignore_ascii_case("content-length") {
            let n = value.trim().parse::<usize>().map_err(|_| Reject::BadRequest)?;
            if content_length.is_some_and(|seen| seen != n) {
                return Err(Reject::BadRequest);
            }
            content_length = Some(n);
        }
        if header.name.eq_ignore_ascii_case("connection") {
            request.close |= value.split(',').any(|t| t.trim().eq_ignore_ascii_case("close"));
        }
        request.headers.push((header.name.to_string(), value.to_string()));
    }
    let content_length = content_length.unwrap_or(0);
    if content_length > MAX_ADMIN_BODY_BYTES {
        return Err(Reject::BodyTooLarge);
    }
    Ok(Some(Head { len, request, content_length }))
}

/// Reads more bytes into `buf`; false on EOF, error or idle timeout.
async fn fill(stream: &mut TcpStream, buf: &mut BytesMut) -> bool {
    let read = tokio::time::timeout(ADMIN_IDLE_TIMEOUT, stream.read_buf(buf)).await;
    matches!(read, Ok(Ok(n)) if n > 0)
}

/// Reads one request (head and body) from `stream`, keeping any pipelined bytes after it
/// in `buf`. `Ok(None)` when the client closed or went idle.
pub async fn read_request(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
) -> Result<Option<Request>, Reject> {
    // Bounded: each pass adds bytes, and the size check ends it.
    let head = loop {
        if let Some(head) = parse_head(buf)? {
            break head;
        }
        if buf.len() >= MAX_ADMIN_HEAD_BYTES {
            return Err(Reject::HeadTooLarge);
        }
        if !fill(stream, buf).await {
            return Ok(None);
        }
    };
    let total = head.len + head.content_length;
    buf.reserve(total.saturating_sub(buf.len()));
    // Bounded by `total`, at most the head limit plus the body limit.
    while buf.len() < total {
        if !fill(stream, buf).await {
            return Ok(None);
        }
    }
    let mut request = head.request;
    buf.advance(head.len);
    request.body = buf.split_to(head.content_length).to_vec();
    Ok(Some(request))
}

/// Writes `response`; headers only when `head_only`. Adds `Connection: close` when the
/// connection ends after it.
pub async fn write_response(
    stream: &mut TcpStream,
    response: &Response,
    head_only: bool,
    close: bool,
) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
        response.status,
        reason(response.status),
        response.content_type,
        response.body.len()
    );
    for (name, value) in &response.headers {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    if !head_only {
        stream.write_all(&response.body).await?;
    }
    Ok(())
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        302 => "Found",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        422 => "Unprocessable Content",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Result<Option<Head>, Reject> {
        parse_head(text.as_bytes())
    }

    #[test]
    fn parses_path_query_and_keep_alive() {
        let parsed = head("GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n").unwrap().unwrap();
        assert_eq!(parsed.request.path, "/metrics");
        assert_eq!(parsed.request.query, "x=1");
        assert!(!parsed.request.close);
        assert_eq!(parsed.content_length, 0);
    }

    #[test]
    fn close_for_http10_and_connection_close() {
        assert!(head("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap().request.close);
        let text = "GET / HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n";
        assert!(head(text).unwrap().unwrap().request.close);
    }

    #[test]
    fn partial_heads_wait() {
        assert!(head("GET / HTTP/1.1\r\nHost:").unwrap().is_none());
    }

    #[test]
    fn refuses_bad_framing() {
        let chunked = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(head(chunked).err(), Some(Reject::LengthRequired));
        let two = "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
        assert_eq!(head(two).err(), Some(Reject::BadRequest));
        let big = format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", 2 << 20);
        assert_eq!(head(&big).err(), Some(Reject::BodyTooLarge));
        assert_eq!(head("GET\0 / HTTP/1.1\r\n\r\n").err(), Some(Reject::BadRequest));
    }
}
