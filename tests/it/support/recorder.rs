//! [`Recorder`]: a raw HTTP/1.1 backend that records every request exactly as it arrived
//! (head and framed body bytes) and answers each from a script. Its framing parser is
//! strict and independent of weir's: one `Content-Length` field of plain digits, or one
//! `Transfer-Encoding: chunked`; anything else ends the connection unrecorded. So a test
//! counts exactly the requests a strict origin would see, smuggled ones included.

use super::{find, MAX_HEAD, MAX_LINE};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Most header fields the recorder parses in one head.
const MAX_FIELDS: usize = 64;

/// One request as the backend received it.
#[derive(Clone, Debug, Default)]
pub struct Recorded {
    /// The request target.
    pub target: String,
    /// The raw head, including the final CRLF CRLF.
    pub head: Vec<u8>,
    /// The body bytes as framed on the wire (chunk lines and trailers included).
    pub body: Vec<u8>,
}

impl Recorded {
    /// Values of every field named `name` (case-insensitive), as text.
    pub fn fields(&self, name: &str) -> Vec<String> {
        let text = String::from_utf8_lossy(&self.head);
        text.split("\r\n")
            .skip(1)
            .filter_map(|line| line.split_once(':'))
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .collect()
    }
}

/// Builds the raw response to request number `n` (counted over all connections).
pub type Script = Arc<dyn Fn(usize, &Recorded) -> Vec<u8> + Send + Sync>;

/// A running recorder; see the module docs.
pub struct Recorder {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    accepted: Arc<AtomicUsize>,
}

impl Recorder {
    /// Answers every request with 200 and the request target as the body.
    pub async fn echo_target() -> Recorder {
        Recorder::start(Arc::new(|_, request: &Recorded| {
            let target = &request.target;
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{target}", target.len())
                .into_bytes()
        }))
        .await
    }

    /// Answers each request with what `script` returns.
    pub async fn start(script: Script) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind recorder");
        let addr = listener.local_addr().expect("recorder address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (log, count) = (Arc::clone(&requests), Arc::clone(&accepted));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(stream, Arc::clone(&log), Arc::clone(&script)));
            }
        });
        Recorder { addr, requests, accepted }
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request recorded so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    /// The targets of every request recorded so far.
    pub fn targets(&self) -> Vec<String> {
        self.requests().into_iter().map(|r| r.target).collect()
    }

    /// TCP connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Serves one connection until the peer closes or sends something it cannot frame.
async fn serve(mut stream: TcpStream, log: Arc<Mutex<Vec<Recorded>>>, script: Script) {
    let mut input = Input { stream: &mut stream, buf: Vec::new() };
    while let Some(request) = input.request().await {
        let reply = {
            let mut log = log.lock().unwrap();
            log.push(request.clone());
            script(log.len() - 1, &request)
        };
        if input.stream.write_all(&reply).await.is_err() {
            return;
        }
    }
}

/// A connection's input with the bytes read but not parsed yet.
struct Input<'a> {
    stream: &'a mut TcpStream,
    buf: Vec<u8>,
}

impl Input<'_> {
    /// Reads more bytes; false at EOF, on error or past `limit` buffered bytes.
    async fn fill(&mut self, limit: usize) -> bool {
        let mut chunk = [0u8; 4096];
        match self.stream.read(&mut chunk).await {
            Ok(n) if n > 0 && self.buf.len() + n <= limit => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            _ => false,
        }
    }

    /// The next request, or `None` at EOF or on anything a strict origin refuses.
    async fn request(&mut self) -> Option<Recorded> {
        let head_len = loop {
            if let Some(at) = find(&self.buf, b"\r\n\r\n") {
                break at + 4;
            }
            if !self.fill(MAX_HEAD).await {
                return None;
            }
        };
        let head: Vec<u8> = self.buf.drain(..head_len).collect();
        let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
        let mut parsed = httparse::Request::new(&mut fields);
        parsed.parse(&head).ok()?.is_complete().then_some(())?;
        let target = parsed.path?.to_string();
        let body = match framing(parsed.headers)? {
            Framing::Length(n) => self.take(n).await?,
            Framing::Chunked => self.chunked().await?,
        };
        Some(Recorded { target, head, body })
    }

    /// Exactly `n` bytes.
    async fn take(&mut self, n: usize) -> Option<Vec<u8>> {
        while self.buf.len() < n {
            if !self.fill(n.max(MAX_HEAD)).await {
                return None;
            }
        }
        Some(self.buf.drain(..n).collect())
    }

    /// One CRLF-terminated line, CRLF included.
    async fn line(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(at) = find(&self.buf, b"\r\n") {
                return Some(self.buf.drain(..at + 2).collect());
            }
            if self.buf.len() > MAX_LINE || !self.fill(MAX_LINE * 2).await {
                return None;
            }
        }
    }

    /// A chunked body as framed: size lines (extensions allowed), data, trailers.
    async fn chunked(&mut self) -> Option<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = self.line().await?;
            let digits = line.split(|&b| b == b';' || b == b'\r').next()?;
            let size = usize::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()?;
            body.extend_from_slice(&line);
            if size == 0 {
                break;
            }
            let data = self.take(size + 2).await?;
            data.ends_with(b"\r\n").then_some(())?;
            body.extend_from_slice(&data);
        }
        loop {
            let line = self.line().await?;
            body.extend_from_slice(&line);
            if line == b"\r\n" {
                return Some(body);
            }
        }
    }
}

/// How a request body is delimited, to a strict origin.
enum Framing {
    Length(usize),
    Chunked,
}

/// One plain-digit `Content-Length`, or one `Transfer-Encoding: chunked`, or neither.
fn framing(fields: &[httparse::Header<'_>]) -> Option<Framing> {
    let named = |name: &'static str| -> Vec<&httparse::Header<'_>> {
        fields.iter().filter(|f| f.name.eq_ignore_ascii_case(name)).collect()
    };
    let (lengths, codings) = (named("content-length"), named("transfer-encoding"));
    match (lengths.as_slice(), codings.as_slice()) {
        ([], []) => Some(Framing::Length(0)),
        ([length], []) if length.value.iter().all(u8::is_ascii_digit) => {
            std::str::from_utf8(length.value).ok()?.parse().ok().map(Framing::Length)
        }
        ([], [coding]) if coding.value.eq_ignore_ascii_case(b"chunked") => Some(Framing::Chunked),
        _ => None,
    }
}
