//! Malformed input against the `weir` binary: garbage bytes, a 100 KiB request line, a
//! header line without a colon, a NUL byte in a header, bad chunk sizes and lengths. Each
//! must get a 4xx or a close, weir must keep serving the next normal request, and its
//! stderr must show no panic.

use crate::support::process::WeirProcess;
use crate::support::{connect, get_close, TestBackend};

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{timeout_at, Instant};

/// How long a client waits for an answer or a close.
const WAIT: Duration = Duration::from_secs(5);
/// Most bytes read back from one bad request.
const READ_MAX: usize = 1 << 20;

/// Sends `bytes` and reads until EOF or [`WAIT`]; returns what arrived and whether the
/// connection was closed (EOF or reset) within the wait.
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> (Vec<u8>, bool) {
    let deadline = Instant::now() + WAIT;
    let mut s = connect(addr).await.expect("connect");
    let _ = timeout_at(deadline, s.write_all(bytes)).await;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while out.len() < READ_MAX {
        match timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (out, false),
        }
    }
    (out, false)
}

/// The status code of a raw response, if it starts with an HTTP/1.x status line.
fn status_of(raw: &[u8]) -> Option<u16> {
    let line = raw.strip_prefix(b"HTTP/1.")?.get(2..5)?;
    std::str::from_utf8(line).ok()?.parse().ok()
}

/// Bad inputs, each with a name for failure messages.
fn bad_inputs() -> Vec<(&'static str, Vec<u8>)> {
    let long_line = format!("GET /{} HTTP/1.1\r\nHost: test\r\n\r\n", "a".repeat(100 * 1024));
    let chunked = |body: &str| {
        format!("POST /upload HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n{body}")
            .into_bytes()
    };
    vec![
        ("garbage", b"\x16\x03\x01\x02\x00\x01\x00\xff\xfe garbage\r\n\r\n".to_vec()),
        ("100 KiB request line", long_line.into_bytes()),
        ("header without colon", b"GET / HTTP/1.1\r\nHost: test\r\nNoColonHere\r\n\r\n".to_vec()),
        ("NUL in header", b"GET / HTTP/1.1\r\nHost: test\r\nX-Nul: a\0b\r\n\r\n".to_vec()),
        ("invalid chunk size", chunked("zz\r\nhello\r\n0\r\n\r\n")),
        ("overflowing chunk size", chunked("fffffffffffffffffffff\r\nhello\r\n0\r\n\r\n")),
        ("missing chunk CRLF", chunked("5\r\nhelloXX0\r\n\r\n")),
        (
            "negative Content-Length",
            b"POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: -1\r\n\r\n".to_vec(),
        ),
        ("obs-fold", b"GET / HTTP/1.1\r\nHost: test\r\nX-A: 1\r\n  folded\r\n\r\n".to_vec()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_gets_4xx_or_close_and_weir_keeps_serving() {
    // Goal: no malformed input crashes weir or gets a non-4xx answer. Method: send each
    // bad input to the binary, require a 4xx or a close, then a normal request; finally
    // check the process is alive and never logged a panic.
    let backend = TestBackend::start("b").await;
    let b = backend.addr().to_string();
    let args = ["-b", &b, "-l", "127.0.0.1:0", "--admin", "off", "-w", "2"];
    let (mut process, addr) = WeirProcess::start(&args).await;
    for (name, bytes) in bad_inputs() {
        let (reply, closed) = exchange(addr, &bytes).await;
        let shown = String::from_utf8_lossy(&reply[..reply.len().min(200)]).into_owned();
        match status_of(&reply) {
            Some(status) => assert!((400..500).contains(&status), "{name}: got {shown:?}"),
            None => assert!(reply.is_empty() && closed, "{name}: neither 4xx nor close: {shown:?}"),
        }
        let ok = get_close(addr, "/").await;
        assert_eq!((ok.status, ok.text().as_str()), (200, "b"), "after {name}");
    }
    assert!(process.wait_exit(Duration::ZERO).await.is_none(), "weir exited");
    let stderr = process.stderr();
    assert!(!stderr.contains("panicked"), "weir panicked:\n{stderr}");
}
