//! Active probes: an HTTP `GET` whose status must be in `expect_status`, a plain TCP
//! connect, or a gRPC health check ([`super::grpc_probe`]). A whole probe (connect, request, response head) is bounded by `timeout`, so a
//! backend that accepts and then hangs fails its probe instead of stalling the prober.
//!
//! Probes go to the addresses the backend resolved to (IPv4 and IPv6 alike), in order, as
//! traffic does. An HTTP probe to an `https://` backend runs over TLS, with the backend's
//! own connector (the same verification, and its session cache, so probes resume). An
//! HTTP probe speaks HTTP/2 ([`super::h2_probe`]) when the backend chose `h2` by ALPN,
//! and with prior knowledge on an `h2c` pool; HTTP/1.1 otherwise. On an `h2` pool a
//! backend that does not choose `h2` fails the probe, as requests to it fail.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::{HealthConfig, ProbeKind, StatusSet};
use crate::local_fault::LocalFault;
use crate::tls::Connector;

/// Most bytes of a probe's response head: a status line and a few headers fit in far
/// less, and a backend that sends more is not answering a health check.
pub const MAX_PROBE_HEAD: usize = 16 * 1024;
/// Most header fields parsed in a probe's response head.
const PROBE_HEADERS: usize = 64;
/// Bytes read per call while waiting for the head.
const READ_CHUNK: usize = 4096;

/// One backend's probe, with its request prepared once.
#[derive(Clone, Debug)]
pub struct Probe {
    kind: ProbeKind,
    /// The HTTP request, head only; for a gRPC probe, the request body.
    request: Vec<u8>,
    /// The gRPC probe's `:authority`: the HTTP probe's `Host`.
    authority: String,
    /// The HTTP probe's path, for HTTP/2.
    path: String,
    /// Whether the pool speaks only HTTP/2 (`h2c`: a cleartext probe speaks it with prior
    /// knowledge; `h2`: a backend that does not choose `h2` by ALPN fails, as requests
    /// to it would).
    http2_only: bool,
    expect: StatusSet,
    timeout: Duration,
    /// The backend's TLS connector, for an `https://` backend.
    tls: Option<Connector>,
}

impl Probe {
    /// The probe `config` describes, for a backend whose `HOST:PORT` is `authority`
    /// (the `Host` when the config names none).
    pub fn new(config: &HealthConfig, authority: &str) -> Probe {
        let host = config.host.as_deref().unwrap_or(authority);
        let request = match config.kind {
            ProbeKind::Grpc => super::grpc_probe::request_body(&config.service),
            _ => format!(
                "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: weir-health-check\r\n\
                 Accept: */*\r\nConnection: close\r\n\r\n",
                config.path
            )
            .into_bytes(),
        };
        Probe {
            kind: config.kind,
            request,
            authority: host.to_string(),
            path: config.path.clone(),
            http2_only: false,
            expect: config.expect_status,
            timeout: config.timeout,
            tls: None,
        }
    }

    /// The same probe, over TLS with `tls` when it is set (an `https://` backend).
    pub fn with_tls(mut self, tls: Option<Connector>) -> Probe {
        self.tls = tls;
        self
    }

    /// The same probe for a pool that speaks only HTTP/2 when `http2_only`.
    pub fn with_http2_only(mut self, http2_only: bool) -> Probe {
        self.http2_only = http2_only;
        self
    }

    /// Runs the probe against `addrs`: `Ok` when the backend passed, else why not.
    pub async fn run(&self, addrs: &[SocketAddr]) -> Result<(), ProbeError> {
        let probe = async {
            let stream = connect(addrs).await?;
            let passed = match (self.kind, &self.tls) {
                (ProbeKind::Tcp, _) => Ok(()),
                (_, None) => self.speak(stream, "http", self.http2_only).await,
                (_, Some(connector)) => match connector.connect(stream).await {
                    Ok((tls, _)) => {
                        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                        if self.http2_only && !h2 {
                            Err("the backend did not choose h2 by ALPN".to_owned())
                        } else {
                            self.speak(tls, "https", h2).await
                        }
                    }
                    Err(error) => Err(format!("TLS error: {error}")),
                },
            };
            passed.map_err(ProbeError::Backend)
        };
        match tokio::time::timeout(self.timeout, probe).await {
            Ok(result) => result,
            Err(_) => Err(ProbeError::Backend(format!("no answer within {:?}", self.timeout))),
        }
    }

    /// The probe's request and answer over `stream`, whose scheme is `scheme`; an HTTP
    /// probe in HTTP/2 when `h2`.
    async fn speak<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: S,
        scheme: &str,
        h2: bool,
    ) -> Result<(), String> {
        let authority = &self.authority;
        match self.kind {
            ProbeKind::Grpc => {
                super::grpc_probe::check(stream, scheme, authority, &self.request).await
            }
            _ if h2 => {
                super::h2_probe::get(stream, (scheme, authority, &self.path), self.expect).await
            }
            _ => self.http(stream).await,
        }
    }

    async fn http<S: AsyncRead + AsyncWrite + Unpin>(&self, mut stream: S) -> Result<(), String> {
        stream.write_all(&self.request).await.map_err(|e| format!("send failed: {e}"))?;
        stream.flush().await.map_err(|e| format!("send failed: {e}"))?;
        let mut head = Vec::with_capacity(READ_CHUNK);
        // Bounded: each pass reads at least one byte into a head of at most
        // MAX_PROBE_HEAD bytes.
        loop {
            if let Some(status) = status(&head)? {
                return match self.expect.contains(status) {
                    true => Ok(()),
                    false => Err(format!("status {status}")),
                };
            }
            if head.len() >= MAX_PROBE_HEAD {
                return Err("response head too large".to_string());
            }
            let mut chunk = [0u8; READ_CHUNK];
            let room = (MAX_PROBE_HEAD - head.len()).min(READ_CHUNK);
            match stream.read(&mut chunk[..room]).await {
                Ok(0) => return Err("closed before a response head".to_string()),
                Ok(n) => head.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(format!("read failed: {e}")),
            }
        }
    }
}

/// The status of a complete response head, `None` while partial.
fn status(head: &[u8]) -> Result<Option<u16>, String> {
    if head.is_empty() {
        return Ok(None);
    }
    let mut headers = [httparse::EMPTY_HEADER; PROBE_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(head) {
        Ok(httparse::Status::Complete(_)) => Ok(response.code),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err(format!("malformed response head ({e})")),
    }
}

/// Why a probe did not pass.
#[derive(Debug, PartialEq, Eq)]
pub enum ProbeError {
    /// The backend failed it, as this says.
    Backend(String),
    /// weir could not open a connection for it (out of files, memory or ports), which
    /// says nothing about the backend.
    Local(LocalFault),
}

/// Connects to the first address that accepts. weir's own exhaustion stops at once:
/// every other address would fail the same way.
async fn connect(addrs: &[SocketAddr]) -> Result<TcpStream, ProbeError> {
    let mut last = "no address".to_string();
    for addr in addrs {
        let error = match TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(error) => error,
        };
        if let Some(fault) = LocalFault::of(&error) {
            return Err(ProbeError::Local(fault));
        }
        last = match error.kind() {
            ErrorKind::ConnectionRefused => "connection refused".to_string(),
            _ => format!("connect failed: {error}"),
        };
    }
    Err(ProbeError::Backend(last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_a_complete_head() {
        assert_eq!(status(b""), Ok(None));
        assert_eq!(status(b"HTTP/1.1 200 OK\r\nContent-"), Ok(None));
        assert_eq!(status(b"HTTP/1.1 503 Busy\r\n\r\n"), Ok(Some(503)));
        // A body that merely contains "200" does not make a 500 healthy.
        assert_eq!(status(b"HTTP/1.1 500 x\r\nContent-Length: 3\r\n\r\n200"), Ok(Some(500)));
        assert!(status(b"200 OK\r\n\r\n").is_err());
    }

    #[tokio::test]
    async fn probes_ipv6_and_times_out_on_a_silent_backend() {
        let config = HealthConfig { timeout: Duration::from_millis(200), ..Default::default() };
        let probe = Probe::new(&config, "[::1]:1");
        let Ok(listener) = tokio::net::TcpListener::bind("[::1]:0").await else {
            return; // No IPv6 loopback here.
        };
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let n = socket.read(&mut buf).await.unwrap();
            assert!(buf[..n].starts_with(b"GET / HTTP/1.1\r\nHost: [::1]:1\r\n"));
            socket.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await.unwrap();
            let (_silent, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(2)).await;
        });
        assert_eq!(probe.run(&[addr]).await, Ok(()));
        let Err(ProbeError::Backend(timed_out)) = probe.run(&[addr]).await else {
            panic!("the silent backend failed the probe");
        };
        assert!(timed_out.contains("no answer within"), "{timed_out}");
        server.abort();
    }
}
