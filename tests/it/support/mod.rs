//! Shared support for weir's integration tests.
//!
//! * [`Balancer`] (in `balancer.rs`): weir in-process on 127.0.0.1 port 0, stopped when
//!   dropped, with its live state (health, counters, metrics) readable; [`config_for`]
//!   is the configuration most tests start from.
//! * [`process::WeirProcess`] (in `process.rs`): the `weir` binary as a child process,
//!   with its output captured; scratch paths and config files for it.
//! * [`load::Load`] (in `load.rs`): steady client loops that record every answer, for
//!   tests that change things under traffic.
//! * [`admin`] and [`scrape`]: calls to the admin API, and a reader for `/metrics`.
//! * [`TestBackend`] (in `backend.rs`; request handling in `routes.rs`): a
//!   real HTTP/1.1 origin server on 127.0.0.1 with routes for echoing,
//!   uploads, streaming downloads, trailers, bad framing, slow responses and
//!   WebSocket echo.
//! * [`dns::TestDns`] (in `dns.rs`): a tiny DNS server whose records, failures and
//!   truncation the test controls.
//! * [`grpc`]: grpcio peers (`grpc_peer.py`): a server steered on its stdin, a client
//!   of every RPC kind, and a load client.
//! * [`kube_api::KubeApi`] (in `kube_api.rs`): a fake Kubernetes API server speaking
//!   the real LIST + WATCH protocol for EndpointSlices (410 Gone, outages).
//! * [`Recorder`] (in `recorder.rs`): a raw backend that records each request as it
//!   arrived and answers from a script, to count exactly what reaches a backend.
//! * [`slow_backend::SlowBackend`]: a backend whose slowness a test switches on and off.
//! * TLS (in `tls.rs`): a test CA with its certificates, and an HTTPS backend.
//! * WebSocket helpers (in `ws.rs`): handshake, frame encoding and reading.
//! * Deterministic body pattern and hash ([`pattern_byte`], [`BodyHasher`]).
//! * Client helpers (in `client.rs`): [`raw_request`], [`read_response`] and
//!   friends, which never read past the end of the response they return, so
//!   they are safe on keep-alive, pipelined and upgraded connections.
//!
//! Every read loop is bounded in size, and client reads have timeouts.

pub mod admin;
pub mod backend;
pub mod balancer;
pub mod client;
pub mod dns;
pub mod dnsmasq;
pub mod etcd;
pub mod grpc;
pub mod h2_backend;
pub mod kube_api;
pub mod load;
pub mod process;
pub mod recorder;
pub mod redis;
mod routes;
pub mod scrape;
pub mod slow_backend;
pub mod tls;
pub mod tonic_client;
pub mod tonic_server;
pub mod ws;

pub use backend::{BackendOptions, TestBackend};
pub use balancer::{config_for, Balancer};
pub use client::*;
pub use recorder::{Recorded, Recorder};
pub use ws::{
    ws_client_handshake_request, ws_encode_client_frame, ws_expected_accept, ws_read_frame,
};

use std::io;
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt};

/// Largest request or response head accepted (request line + headers).
pub const MAX_HEAD: usize = 64 * 1024;
/// Largest chunk-size or trailer line accepted.
pub const MAX_LINE: usize = 8 * 1024;
/// Most trailer fields accepted after a chunked body.
pub const MAX_TRAILERS: usize = 64;
/// Timeout for one whole `read_response*` call.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout used by [`raw_request`].
pub const RAW_TIMEOUT: Duration = Duration::from_secs(5);
/// Period of [`pattern_byte`].
pub const PATTERN_PERIOD: u64 = 251;
/// Size of one write or read when streaming bodies.
pub const IO_CHUNK: usize = 64 * 1024;

/// Streaming FNV-1a 64-bit hasher used to compare bodies without storing them.
#[derive(Clone, Debug)]
pub struct BodyHasher {
    state: u64,
    len: u64,
}

impl Default for BodyHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl BodyHasher {
    pub fn new() -> Self {
        BodyHasher { state: 0xcbf2_9ce4_8422_2325, len: 0 }
    }

    pub fn update(&mut self, data: &[u8]) {
        let mut h = self.state;
        for &b in data {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.state = h;
        self.len += data.len() as u64;
    }

    /// Number of bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn finish(&self) -> u64 {
        self.state
    }
}

/// FNV-1a 64 of `data` (same as feeding it to a [`BodyHasher`]).
pub fn hash_bytes(data: &[u8]) -> u64 {
    let mut h = BodyHasher::new();
    h.update(data);
    h.finish()
}

/// Byte `i` of the deterministic download/upload pattern (period 251).
pub fn pattern_byte(i: u64) -> u8 {
    (((i % PATTERN_PERIOD) * 31 + 7) % PATTERN_PERIOD) as u8
}

/// A buffer of pattern bytes from which any window of up to `IO_CHUNK`
/// bytes starting at any offset can be sliced without recomputing.
pub struct PatternSource {
    big: Vec<u8>,
}

impl Default for PatternSource {
    fn default() -> Self {
        Self::new()
    }
}

impl PatternSource {
    pub fn new() -> Self {
        let n = IO_CHUNK + PATTERN_PERIOD as usize;
        PatternSource { big: (0..n as u64).map(pattern_byte).collect() }
    }

    /// Pattern bytes `offset .. offset + len` (`len` is capped at `IO_CHUNK`).
    pub fn slice(&self, offset: u64, len: usize) -> &[u8] {
        let start = (offset % PATTERN_PERIOD) as usize;
        &self.big[start..start + len.min(IO_CHUNK)]
    }
}

/// The first `n` pattern bytes, in memory (for small request bodies).
pub fn pattern_bytes(n: usize) -> Vec<u8> {
    (0..n as u64).map(pattern_byte).collect()
}

/// Hash of the first `n` pattern bytes, computed in constant memory.
pub fn pattern_hash(n: u64) -> u64 {
    let src = PatternSource::new();
    let mut h = BodyHasher::new();
    let mut off = 0u64;
    while off < n {
        let len = (n - off).min(IO_CHUNK as u64) as usize;
        h.update(src.slice(off, len));
        off += len as u64;
    }
    h.finish()
}

/// The body `/upload` answers for a body of `len` bytes hashing to `hash`.
pub fn upload_summary(len: u64, hash: u64) -> String {
    format!("len={len} hash={hash:016x}")
}

pub(crate) fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads one message head, up to and including the blank line. Returns
/// `None` on a clean EOF before any byte. Never consumes past the head.
pub async fn read_head<R: AsyncBufRead + Unpin>(
    r: &mut R,
    max: usize,
) -> io::Result<Option<Vec<u8>>> {
    let mut head = Vec::new();
    loop {
        let avail = r.fill_buf().await?;
        if avail.is_empty() {
            if head.is_empty() {
                return Ok(None);
            }
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let before = head.len();
        let take = avail.len().min(max + 1 - before);
        head.extend_from_slice(&avail[..take]);
        let from = before.saturating_sub(3);
        if let Some(pos) = find(&head[from..], b"\r\n\r\n") {
            let end = from + pos + 4;
            head.truncate(end);
            r.consume(end - before);
            return Ok(Some(head));
        }
        r.consume(take);
        if head.len() > max {
            return Err(invalid("message head too large"));
        }
    }
}

/// Reads one line ending in LF (returned without CRLF/LF), at most `max` bytes.
pub async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R, max: usize) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    loop {
        let avail = r.fill_buf().await?;
        if avail.is_empty() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let (take, done) = match avail.iter().position(|&b| b == b'\n') {
            Some(p) => (p + 1, true),
            None => (avail.len(), false),
        };
        line.extend_from_slice(&avail[..take]);
        r.consume(take);
        if line.len() > max {
            return Err(invalid("line too long"));
        }
        if done {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(line);
        }
    }
}

/// Reads exactly `n` bytes, handing them to `sink` piece by piece.
pub async fn read_exact_into<R, F>(r: &mut R, n: u64, sink: &mut F) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    F: FnMut(&[u8]),
{
    let mut buf = vec![0u8; IO_CHUNK];
    let mut left = n;
    while left > 0 {
        let want = left.min(IO_CHUNK as u64) as usize;
        let got = r.read(&mut buf[..want]).await?;
        if got == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        sink(&buf[..got]);
        left -= got as u64;
    }
    Ok(())
}

/// Reads until EOF (at most `cap` bytes), handing data to `sink`.
pub async fn read_to_eof_into<R, F>(r: &mut R, cap: u64, sink: &mut F) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    F: FnMut(&[u8]),
{
    let mut buf = vec![0u8; IO_CHUNK];
    let mut total = 0u64;
    loop {
        let got = r.read(&mut buf).await?;
        if got == 0 {
            return Ok(());
        }
        total += got as u64;
        if total > cap {
            return Err(invalid("close-delimited body too large"));
        }
        sink(&buf[..got]);
    }
}

/// Decodes a chunked body into `sink`; returns the trailer fields.
pub async fn read_chunked_into<R, F>(r: &mut R, sink: &mut F) -> io::Result<Vec<(String, Vec<u8>)>>
where
    R: AsyncBufRead + Unpin,
    F: FnMut(&[u8]),
{
    loop {
        let line = read_line(r, MAX_LINE).await?;
        let size_part = line.split(|&b| b == b';').next().unwrap_or(&[]);
        let size_str = std::str::from_utf8(size_part).map_err(|_| invalid("bad chunk size"))?;
        let size =
            u64::from_str_radix(size_str.trim(), 16).map_err(|_| invalid("bad chunk size"))?;
        if size == 0 {
            return read_trailers(r).await;
        }
        read_exact_into(r, size, sink).await?;
        if !read_line(r, 2).await?.is_empty() {
            return Err(invalid("missing CRLF after chunk data"));
        }
    }
}

async fn read_trailers<R: AsyncBufRead + Unpin>(r: &mut R) -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut trailers = Vec::new();
    for _ in 0..=MAX_TRAILERS {
        let line = read_line(r, MAX_LINE).await?;
        if line.is_empty() {
            return Ok(trailers);
        }
        let colon = line.iter().position(|&b| b == b':').ok_or_else(|| invalid("bad trailer"))?;
        let name = String::from_utf8_lossy(&line[..colon]).trim().to_string();
        let value = line[colon + 1..].trim_ascii().to_vec();
        trailers.push((name, value));
    }
    Err(invalid("too many trailer fields"))
}

/// Writes `n` pattern bytes to `w`; when `chunked`, as chunks whose sizes cycle through
/// `chunk_sizes` (then the last chunk), else raw in `IO_CHUNK` pieces.
pub async fn write_pattern<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut W,
    n: u64,
    chunked: bool,
    chunk_sizes: &[usize],
) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let src = PatternSource::new();
    let mut buf = Vec::with_capacity(IO_CHUNK + 32);
    let (mut off, mut turn) = (0u64, 0usize);
    // Bounded: every pass writes at least one byte of the n.
    while off < n {
        let size = if chunked { chunk_sizes[turn % chunk_sizes.len()].max(1) } else { IO_CHUNK };
        let len = (n - off).min(size as u64) as usize;
        buf.clear();
        if chunked {
            buf.extend_from_slice(format!("{len:x}\r\n").as_bytes());
        }
        buf.extend_from_slice(src.slice(off, len));
        if chunked {
            buf.extend_from_slice(b"\r\n");
        }
        w.write_all(&buf).await?;
        off += len as u64;
        turn += 1;
    }
    if chunked {
        w.write_all(b"0\r\n\r\n").await?;
    }
    w.flush().await
}

/// Writes `n` pattern bytes to a new temporary file.
pub fn pattern_file(n: u64) -> std::path::PathBuf {
    let path = process::temp_path("pattern.bin");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let src = PatternSource::new();
    let mut off = 0u64;
    while off < n {
        let len = (n - off).min(IO_CHUNK as u64) as usize;
        std::io::Write::write_all(&mut file, src.slice(off, len)).unwrap();
        off += len as u64;
    }
    std::io::Write::flush(&mut file).unwrap();
    path
}
