//! Client-side helpers for weir's tests: connect, send raw bytes, and read
//! HTTP/1.1 responses (Content-Length, chunked with trailers, close-delimited,
//! HEAD, 1xx) without ever consuming bytes past the response returned, so
//! they work on keep-alive, pipelined and upgraded connections. Every call
//! is bounded by a timeout.

use super::{
    invalid, read_chunked_into, read_exact_into, read_head, read_to_eof_into, BodyHasher,
    CLIENT_TIMEOUT, IO_CHUNK, MAX_HEAD, RAW_TIMEOUT,
};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

/// One HTTP response as read by the client helpers.
#[derive(Clone, Debug, Default)]
pub struct Response {
    pub status: u16,
    /// Minor version: 1 for HTTP/1.1, 0 for HTTP/1.0. Read only through `Debug`, in
    /// failure messages, like `reason` and `raw_head`.
    #[allow(dead_code)]
    pub version: u8,
    #[allow(dead_code)]
    pub reason: String,
    pub headers: Vec<(String, Vec<u8>)>,
    /// Trailer fields of a chunked body.
    pub trailers: Vec<(String, Vec<u8>)>,
    /// Decoded body (empty when read with a sink).
    pub body: Vec<u8>,
    /// Body bytes received (decoded), also counted when read with a sink.
    pub body_len: u64,
    /// Exact bytes of the head, including the final CRLFCRLF.
    #[allow(dead_code)]
    pub raw_head: Vec<u8>,
}

pub(crate) fn lookup<'a>(fields: &'a [(String, Vec<u8>)], name: &str) -> Vec<&'a str> {
    fields
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .filter_map(|(_, v)| std::str::from_utf8(v).ok())
        .collect()
}

impl Response {
    /// First header with this name (case-insensitive), if valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        lookup(&self.headers, name).into_iter().next()
    }

    /// All headers with this name (case-insensitive), in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        lookup(&self.headers, name)
    }

    /// First trailer field with this name (case-insensitive).
    pub fn trailer(&self, name: &str) -> Option<&str> {
        lookup(&self.trailers, name).into_iter().next()
    }

    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Whether a `Connection` header lists the `close` token.
    pub fn has_connection_close(&self) -> bool {
        has_token(&self.header_all("connection"), "close")
    }
}

/// Whether any of the comma-separated `values` contains `token`.
pub fn has_token(values: &[&str], token: &str) -> bool {
    values.iter().flat_map(|v| v.split(',')).any(|t| t.trim().eq_ignore_ascii_case(token))
}

fn parse_response_head(raw: Vec<u8>) -> io::Result<Response> {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(&raw) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(invalid("partial response head")),
        Err(e) => return Err(invalid(format!("bad response head: {e}"))),
    }
    Ok(Response {
        status: resp.code.unwrap_or(0),
        version: resp.version.unwrap_or(1),
        reason: resp.reason.unwrap_or("").to_string(),
        headers: resp.headers.iter().map(|h| (h.name.to_string(), h.value.to_vec())).collect(),
        raw_head: raw.clone(),
        ..Response::default()
    })
}

enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

fn response_framing(resp: &Response, head_only: bool) -> io::Result<Framing> {
    if head_only || resp.status < 200 || resp.status == 204 || resp.status == 304 {
        return Ok(Framing::None);
    }
    let te = resp.header_all("transfer-encoding");
    if !te.is_empty() {
        let last = te.last().and_then(|v| v.rsplit(',').next()).unwrap_or("");
        let chunked = last.trim().eq_ignore_ascii_case("chunked");
        return Ok(if chunked { Framing::Chunked } else { Framing::UntilClose });
    }
    let cls = resp.header_all("content-length");
    match cls.first() {
        None => Ok(Framing::UntilClose),
        Some(first) if cls.iter().all(|v| v == first) => {
            let n = first.trim().parse().map_err(|_| invalid("bad content-length"))?;
            Ok(Framing::Length(n))
        }
        Some(_) => Err(invalid("conflicting content-length headers")),
    }
}

async fn read_response_inner<S, F>(s: &mut S, head_only: bool, sink: &mut F) -> io::Result<Response>
where
    S: AsyncRead + Unpin,
    F: FnMut(&[u8]),
{
    // Capacity 1: heads are read byte by byte and bodies go straight to the
    // caller's buffer, so nothing past this response is ever consumed.
    let mut r = BufReader::with_capacity(1, s);
    let raw = read_head(&mut r, MAX_HEAD)
        .await?
        .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
    let mut resp = parse_response_head(raw)?;
    let mut len = 0u64;
    let mut count = |d: &[u8]| {
        len += d.len() as u64;
        sink(d);
    };
    match response_framing(&resp, head_only)? {
        Framing::None => {}
        Framing::Length(n) => read_exact_into(&mut r, n, &mut count).await?,
        Framing::Chunked => resp.trailers = read_chunked_into(&mut r, &mut count).await?,
        Framing::UntilClose => read_to_eof_into(&mut r, 1 << 40, &mut count).await?,
    }
    resp.body_len = len;
    Ok(resp)
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "test client read timed out")
}

/// Reads one response, passing body bytes to `sink` instead of storing them.
/// `head_only` means the request was HEAD (no body follows). Times out after
/// [`CLIENT_TIMEOUT`].
pub async fn read_response_sink<S, F>(
    s: &mut S,
    head_only: bool,
    mut sink: F,
) -> io::Result<Response>
where
    S: AsyncRead + Unpin,
    F: FnMut(&[u8]),
{
    timeout(CLIENT_TIMEOUT, read_response_inner(s, head_only, &mut sink))
        .await
        .map_err(|_| timed_out())?
}

/// Reads one response (a 1xx interim response is returned on its own).
pub async fn read_response<S: AsyncRead + Unpin>(s: &mut S) -> io::Result<Response> {
    let mut body = Vec::new();
    let mut resp = read_response_sink(s, false, |d: &[u8]| body.extend_from_slice(d)).await?;
    resp.body = body;
    Ok(resp)
}

/// Reads the response to a HEAD request (headers only, never a body).
pub async fn read_response_for_head<S: AsyncRead + Unpin>(s: &mut S) -> io::Result<Response> {
    read_response_sink(s, true, |_: &[u8]| {}).await
}

/// Reads one response, hashing the body; returns it with `body` left empty
/// and `(body_len, hash)` alongside.
pub async fn read_response_hashed<S: AsyncRead + Unpin>(s: &mut S) -> io::Result<(Response, u64)> {
    let mut h = BodyHasher::new();
    let resp = read_response_sink(s, false, |d: &[u8]| h.update(d)).await?;
    Ok((resp, h.finish()))
}

/// Connects to `addr` with a 5 s timeout.
pub async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream =
        timeout(RAW_TIMEOUT, TcpStream::connect(addr)).await.map_err(|_| timed_out())??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Connects, writes `bytes`, and returns everything read until the peer
/// closes or 5 s pass. Errors just end the read; whatever arrived is returned.
pub async fn raw_request(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    raw_request_timeout(addr, bytes, RAW_TIMEOUT).await
}

/// [`raw_request`] with an explicit overall deadline.
pub async fn raw_request_timeout(addr: SocketAddr, bytes: &[u8], limit: Duration) -> Vec<u8> {
    let deadline = Instant::now() + limit;
    let mut out = Vec::new();
    let Ok(Ok(mut s)) = tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await else {
        return out;
    };
    let _ = tokio::time::timeout_at(deadline, s.write_all(bytes)).await;
    let mut buf = vec![0u8; IO_CHUNK];
    while out.len() < (1 << 30) {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    out
}

/// Sends `req` on an existing connection and reads one (final) response,
/// skipping `100 Continue` interim responses.
pub async fn roundtrip<S>(s: &mut S, req: &[u8]) -> io::Result<Response>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    s.write_all(req).await?;
    for _ in 0..8 {
        let resp = read_response(s).await?;
        if resp.status != 100 {
            return Ok(resp);
        }
    }
    Err(invalid("too many interim responses"))
}

/// Sends `req` on a new connection and reads one final response.
pub async fn send(addr: SocketAddr, req: &[u8]) -> Response {
    let mut stream = connect(addr).await.expect("connect to weir");
    roundtrip(&mut stream, req).await.expect("response from weir")
}

/// `GET path` with `Connection: close` on a new connection.
pub async fn get_close(addr: SocketAddr, path: &str) -> Response {
    let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    let mut stream = connect(addr).await.expect("connect to weir");
    stream.write_all(req.as_bytes()).await.expect("write");
    read_response(&mut stream).await.expect("response from weir")
}

/// Time limit for one curl run: long enough for the 100 MiB transfers of the bodies tests.
const CURL_MAX_SECS: &str = "120";

/// Runs the real `curl` client with `args`; returns its stdout, asserting it succeeded.
pub async fn curl(args: &[&str]) -> String {
    let out = tokio::process::Command::new("curl")
        .args(["-s", "-S", "--max-time", CURL_MAX_SECS])
        .args(args)
        .output()
        .await
        .expect("run curl");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "curl {args:?} failed: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
