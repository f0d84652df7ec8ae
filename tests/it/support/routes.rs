//! Request handling for [`TestBackend`](super::TestBackend): parses one
//! request head, reads its body (Content-Length or chunked, with trailers,
//! after `100 Continue` when asked), and answers according to the path.

use super::backend::{Conn, Shared};
use super::client::{has_token, lookup};
use super::ws::{serve_echo, ws_expected_accept};
use super::{invalid, read_chunked_into, read_exact_into, upload_summary, BodyHasher, IO_CHUNK};
use std::io;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::time::sleep;

/// Most body bytes `/echo-body` keeps (the rest is only hashed).
const ECHO_CAP: usize = 16 * 1024 * 1024;
/// Longest delay `/slow` and `/slow-body` accept.
const MAX_DELAY_MS: u64 = 120_000;

/// A parsed request head.
struct Req {
    method: String,
    path: String,
    query: String,
    minor: u8,
    headers: Vec<(String, Vec<u8>)>,
    raw: Vec<u8>,
}

impl Req {
    fn parse(raw: Vec<u8>) -> io::Result<Req> {
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut r = httparse::Request::new(&mut headers);
        match r.parse(&raw) {
            Ok(httparse::Status::Complete(_)) => {}
            _ => return Err(invalid("bad request head")),
        }
        let target = r.path.unwrap_or("/");
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        Ok(Req {
            method: r.method.unwrap_or("").to_string(),
            path: path.to_string(),
            query: query.to_string(),
            minor: r.version.unwrap_or(1),
            headers: r.headers.iter().map(|h| (h.name.to_string(), h.value.to_vec())).collect(),
            raw: raw.clone(),
        })
    }

    fn header_all(&self, name: &str) -> Vec<&str> {
        lookup(&self.headers, name)
    }

    fn param(&self, key: &str) -> Option<&str> {
        self.query.split('&').find_map(|kv| match kv.split_once('=') {
            Some((k, v)) if k == key => Some(v),
            None if kv == key => Some(""),
            _ => None,
        })
    }

    fn param_u64(&self, key: &str) -> u64 {
        self.param(key).and_then(|v| v.parse().ok()).unwrap_or(0)
    }

    fn is_head(&self) -> bool {
        self.method == "HEAD"
    }

    fn wants_close(&self) -> bool {
        let conn = self.header_all("connection");
        has_token(&conn, "close") || (self.minor == 0 && !has_token(&conn, "keep-alive"))
    }

    fn expects_continue(&self) -> bool {
        self.minor >= 1 && has_token(&self.header_all("expect"), "100-continue")
    }

    /// Request body framing: `None` = no body, `Some(None)` = chunked.
    fn body_length(&self) -> io::Result<Option<Option<u64>>> {
        let te = self.header_all("transfer-encoding");
        let cl = self.header_all("content-length");
        if !te.is_empty() {
            let last = te.last().and_then(|v| v.rsplit(',').next()).unwrap_or("");
            if !cl.is_empty() || !last.trim().eq_ignore_ascii_case("chunked") {
                return Err(invalid("bad request framing"));
            }
            return Ok(Some(None));
        }
        match cl.first() {
            None => Ok(None),
            Some(first) if cl.iter().all(|v| v == first) => {
                let n = first.trim().parse().map_err(|_| invalid("bad content-length"))?;
                Ok(Some(Some(n)))
            }
            Some(_) => Err(invalid("conflicting content-length")),
        }
    }
}

/// What was received as the request body.
#[derive(Default)]
struct Body {
    len: u64,
    hash: u64,
    trailers: Vec<(String, Vec<u8>)>,
    data: Vec<u8>,
}

async fn read_body(conn: &mut Conn, framing: Option<Option<u64>>, keep: bool) -> io::Result<Body> {
    let mut h = BodyHasher::new();
    let mut data = Vec::new();
    let mut sink = |d: &[u8]| {
        h.update(d);
        if keep && data.len() + d.len() <= ECHO_CAP {
            data.extend_from_slice(d);
        }
    };
    let trailers = match framing {
        None => Vec::new(),
        Some(Some(n)) => {
            read_exact_into(conn, n, &mut sink).await?;
            Vec::new()
        }
        Some(None) => read_chunked_into(conn, &mut sink).await?,
    };
    Ok(Body { len: h.len(), hash: h.finish(), trailers, data })
}

/// Everything a route needs besides the connection.
struct Ctx<'a> {
    shared: &'a Shared,
    req: &'a Req,
    body: Body,
    /// The response must close the connection.
    close: bool,
}

impl Ctx<'_> {
    /// Status line, `X-Backend`, and `Connection: close` when closing.
    fn head_start(&self, status: u16) -> String {
        let mut s =
            format!("HTTP/1.1 {status} {}\r\nX-Backend: {}\r\n", reason(status), self.shared.name);
        if self.close {
            s.push_str("Connection: close\r\n");
        }
        s
    }
}

/// Handles one request; returns whether the connection stays open.
pub(super) async fn handle_request(
    conn: &mut Conn,
    shared: &Shared,
    raw: Vec<u8>,
    last: bool,
) -> io::Result<bool> {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    *shared.last_head.lock().unwrap() = Some(raw.clone());
    let Ok(req) = Req::parse(raw) else {
        return send(conn, &bare_ctx(shared), 400, b"bad request").await;
    };
    let Ok(framing) = req.body_length() else {
        return send(conn, &bare_ctx(shared), 400, b"bad framing").await;
    };
    let close = last || req.wants_close();
    let mut cx = Ctx { shared, req: &req, body: Body::default(), close };
    if req.expects_continue() {
        if req.path == "/expect-reject" {
            cx.close = true;
            return send(conn, &cx, 417, b"expectation failed").await;
        }
        conn.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
    }
    cx.body = read_body(conn, framing, req.path == "/echo-body").await?;
    route(conn, &cx).await
}

/// Context for answering a request that could not be parsed.
fn bare_ctx(shared: &Shared) -> Ctx<'_> {
    Ctx { shared, req: &EMPTY_REQ, body: Body::default(), close: true }
}

static EMPTY_REQ: Req = Req {
    method: String::new(),
    path: String::new(),
    query: String::new(),
    minor: 1,
    headers: Vec::new(),
    raw: Vec::new(),
};

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        413 => "Content Too Large",
        417 => "Expectation Failed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Other",
    }
}

/// Writes a complete response with Content-Length (none for 204/304; no
/// body for HEAD); returns whether the connection stays open.
async fn send(conn: &mut Conn, cx: &Ctx<'_>, status: u16, body: &[u8]) -> io::Result<bool> {
    send_with(conn, cx, status, "", body).await
}

/// Like [`send`] with extra header lines (each ending in CRLF).
async fn send_with(
    conn: &mut Conn,
    cx: &Ctx<'_>,
    status: u16,
    extra: &str,
    body: &[u8],
) -> io::Result<bool> {
    let bodiless = status == 204 || status == 304;
    let mut head = cx.head_start(status);
    head.push_str(extra);
    if !bodiless {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    if !bodiless && !cx.req.is_head() {
        out.extend_from_slice(body);
    }
    conn.write_all(&out).await?;
    conn.flush().await?;
    Ok(!cx.close)
}

async fn route(conn: &mut Conn, cx: &Ctx<'_>) -> io::Result<bool> {
    let req = cx.req;
    let name = cx.shared.name.as_bytes();
    if let Some(code) = req.path.strip_prefix("/status/") {
        return status_route(conn, cx, code).await;
    }
    match req.path.as_str() {
        "/echo-head" => send(conn, cx, 200, &req.raw).await,
        "/echo-body" => send(conn, cx, 200, &cx.body.data).await,
        "/upload" => upload_route(conn, cx).await,
        "/download" => download_route(conn, cx).await,
        "/trailers" => trailers_route(conn, cx).await,
        "/close-delimited" => unframed(conn, cx, "HTTP/1.1 200 OK", b"close-delimited-body").await,
        "/http10" => unframed(conn, cx, "HTTP/1.0 200 OK", b"http10-body").await,
        "/slow" => {
            sleep(Duration::from_millis(req.param_u64("ms").min(MAX_DELAY_MS))).await;
            send(conn, cx, 200, b"slow").await
        }
        "/slow-body" => slow_body_route(conn, cx).await,
        "/bad/cl-te" => {
            bad_route(conn, "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n").await
        }
        "/bad/double-cl" => bad_route(conn, "Content-Length: 5\r\nContent-Length: 6\r\n").await,
        "/bad/te" => bad_route(conn, "Transfer-Encoding: gzip\r\n").await,
        "/close" => {
            let cx = Ctx { close: true, ..clone_cx(cx) };
            send(conn, &cx, 200, b"closing").await
        }
        "/count" => {
            send(conn, cx, 200, cx.shared.accepted.load(Ordering::SeqCst).to_string().as_bytes())
                .await
        }
        "/health" if !cx.shared.healthy.load(Ordering::SeqCst) => {
            send(conn, cx, 503, b"unhealthy").await
        }
        "/ws" => ws_route(conn, cx).await,
        _ => send(conn, cx, 200, name).await,
    }
}

fn clone_cx<'a>(cx: &Ctx<'a>) -> Ctx<'a> {
    Ctx { shared: cx.shared, req: cx.req, body: Body::default(), close: cx.close }
}

async fn status_route(conn: &mut Conn, cx: &Ctx<'_>, code: &str) -> io::Result<bool> {
    match code.parse::<u16>() {
        Ok(status) if (200..=599).contains(&status) => {
            let body = format!("status={status}\n");
            send(conn, cx, status, body.as_bytes()).await
        }
        _ => send(conn, cx, 400, b"bad status").await,
    }
}

async fn upload_route(conn: &mut Conn, cx: &Ctx<'_>) -> io::Result<bool> {
    let body = &cx.body;
    let mut extra = String::new();
    if !body.trailers.is_empty() {
        let list: Vec<String> = body
            .trailers
            .iter()
            .map(|(n, v)| format!("{n}={}", String::from_utf8_lossy(v)))
            .collect();
        extra = format!("X-Trailers: {}\r\n", list.join(";"));
    }
    let summary = upload_summary(body.len, body.hash);
    send_with(conn, cx, 200, &extra, summary.as_bytes()).await
}

async fn download_route(conn: &mut Conn, cx: &Ctx<'_>) -> io::Result<bool> {
    let n = cx.req.param_u64("bytes");
    let chunked = cx.req.param("chunked") == Some("1");
    let mut head = cx.head_start(200);
    if chunked {
        head.push_str("Transfer-Encoding: chunked\r\n\r\n");
    } else {
        head.push_str(&format!("Content-Length: {n}\r\n\r\n"));
    }
    conn.write_all(head.as_bytes()).await?;
    if cx.req.is_head() {
        return Ok(!cx.close);
    }
    super::write_pattern(conn, n, chunked, &[IO_CHUNK]).await?;
    Ok(!cx.close)
}

async fn trailers_route(conn: &mut Conn, cx: &Ctx<'_>) -> io::Result<bool> {
    let mut out = cx.head_start(200);
    out.push_str("Transfer-Encoding: chunked\r\nTrailer: X-Checksum, X-Extra\r\n\r\n");
    out.push_str("6\r\nhello \r\n5\r\nworld\r\n0\r\nX-Checksum: abc\r\nX-Extra: 1\r\n\r\n");
    conn.write_all(out.as_bytes()).await?;
    conn.flush().await?;
    Ok(!cx.close)
}

/// Head without any framing header, the body, then close.
async fn unframed(
    conn: &mut Conn,
    cx: &Ctx<'_>,
    status_line: &str,
    body: &[u8],
) -> io::Result<bool> {
    let mut out = format!("{status_line}\r\nX-Backend: {}\r\n\r\n", cx.shared.name).into_bytes();
    out.extend_from_slice(body);
    conn.write_all(&out).await?;
    conn.flush().await?;
    Ok(false)
}

async fn slow_body_route(conn: &mut Conn, cx: &Ctx<'_>) -> io::Result<bool> {
    let mut head = cx.head_start(200);
    head.push_str("Content-Length: 4\r\n\r\nsl");
    conn.write_all(head.as_bytes()).await?;
    conn.flush().await?;
    sleep(Duration::from_millis(cx.req.param_u64("ms").min(MAX_DELAY_MS))).await;
    conn.write_all(b"ow").await?;
    conn.flush().await?;
    Ok(!cx.close)
}

async fn bad_route(conn: &mut Conn, framing: &str) -> io::Result<bool> {
    let out = format!("HTTP/1.1 200 OK\r\n{framing}\r\nhello");
    conn.write_all(out.as_bytes()).await?;
    conn.flush().await?;
    Ok(false)
}

async fn ws_route(conn: &mut Conn, cx: &Ctx<'_>) -> io::Result<bool> {
    let req = cx.req;
    let upgrade = has_token(&req.header_all("upgrade"), "websocket");
    let connection = has_token(&req.header_all("connection"), "upgrade");
    let key = req.header_all("sec-websocket-key").first().map(|k| k.to_string());
    let (true, true, Some(key)) = (upgrade, connection, key) else {
        let cx = Ctx { close: true, ..clone_cx(cx) };
        return send(conn, &cx, 400, b"websocket upgrade required").await;
    };
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\nX-Backend: {}\r\n\r\n",
        ws_expected_accept(&key),
        cx.shared.name
    );
    conn.write_all(head.as_bytes()).await?;
    conn.flush().await?;
    let _ = serve_echo(conn).await;
    Ok(false)
}
