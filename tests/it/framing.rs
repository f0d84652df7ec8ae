//! Ambiguous message framing: requests with Content-Length and Transfer-Encoding, two
//! differing Content-Lengths, or a Transfer-Encoding not ending in chunked get 400, other
//! codings before chunked get 501; the connection closes, and the backend never sees
//! them; responses with bad framing give the client a 502.

use crate::support::{connect, get_close, read_response, Balancer, TestBackend};

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

/// How long the client waits for weir to close the connection.
const WAIT: Duration = Duration::from_secs(5);
/// A second request hidden after the first body, as a smuggling attempt would send it.
const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: test\r\n\r\n";

/// Sends `req`, expects a 400 with a text/plain body containing `keyword`, then EOF;
/// asserts the backend received no request.
async fn assert_refused(req: &str, keyword: &str) {
    assert_refused_with(req, 400, keyword).await;
}

/// [`assert_refused`] with another status.
async fn assert_refused_with(req: &str, status: u16, keyword: &str) {
    let backend = TestBackend::start("b").await;
    let weir = Balancer::front(&backend);
    let mut s = connect(weir.addr()).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let resp = read_response(&mut s).await.expect("a response to a bad request");
    assert_eq!(resp.status, status, "{req:?}: {}", resp.text());
    let content_type = resp.header("Content-Type").unwrap_or("");
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = resp.text().to_ascii_lowercase();
    assert!(text.contains(keyword), "{req:?}: body {text:?} lacks {keyword:?}");
    let mut rest = Vec::new();
    let end = timeout(WAIT, s.read_to_end(&mut rest)).await;
    assert!(end.is_ok(), "{req:?}: connection still open after the 400");
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.is_empty(), "{req:?}: bytes after the 400: {rest:?}");
    assert_eq!(backend.requests(), 0, "{req:?}: the backend saw a request");
    let ok = get_close(weir.addr(), "/").await;
    assert_eq!(ok.status, 200, "weir stopped serving after {req:?}");
}

#[tokio::test]
async fn content_length_with_transfer_encoding_is_refused() {
    // Goal: CL together with TE is refused (RFC 9112 6.3). Method: a chunked body whose
    // Content-Length would leave a smuggled request; expect 400, EOF, backend untouched.
    let body = format!("0\r\n\r\n{SMUGGLED}");
    let req = format!(
        "POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n\
         Transfer-Encoding: chunked\r\n\r\n{body}",
        body.len()
    );
    assert_refused(&req, "content-length").await;
}

#[tokio::test]
async fn differing_content_lengths_are_refused() {
    // Goal: two different Content-Length values are refused. Method: 5 and 6 with a
    // body and a smuggled request; expect 400, EOF, backend untouched.
    let req = format!(
        "POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\
         Content-Length: 6\r\n\r\nhello!{SMUGGLED}"
    );
    assert_refused(&req, "content-length").await;
}

#[tokio::test]
async fn transfer_encoding_not_ending_in_chunked_is_refused() {
    // Goal: a request Transfer-Encoding whose last coding is not chunked is refused.
    // Method: `Transfer-Encoding: gzip`; expect 400, EOF, backend untouched.
    let req = format!(
        "POST /upload HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: gzip\r\n\r\nhello{SMUGGLED}"
    );
    assert_refused(&req, "transfer-encoding").await;
}

#[tokio::test]
async fn transfer_codings_besides_chunked_are_not_implemented() {
    // Goal: a request whose codings end in chunked but name another coding is refused
    // with 501 (RFC 9112 §6.1, as nginx does): only `chunked` alone goes upstream.
    // Method: `gzip, chunked`, `identity, chunked` and gzip and chunked in two fields.
    for codings in ["gzip, chunked", "identity, chunked", "gzip\r\nTransfer-Encoding: chunked"] {
        let req = format!(
            "POST /upload HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: {codings}\r\n\r\n\
             5\r\nhello\r\n0\r\n\r\n{SMUGGLED}"
        );
        assert_refused_with(&req, 501, "transfer-encoding").await;
    }
}

#[tokio::test]
async fn bad_response_framing_gives_502() {
    // Goal: a response with ambiguous or unknown framing becomes a 502 with a cause.
    // Method: the backend's /bad/cl-te, /bad/double-cl and /bad/te routes.
    let backend = TestBackend::start("b").await;
    let weir = Balancer::front(&backend);
    let cases = [
        ("/bad/cl-te", "transfer-encoding"),
        ("/bad/double-cl", "content-length"),
        ("/bad/te", "transfer-encoding"),
    ];
    for (path, keyword) in cases {
        let resp = get_close(weir.addr(), path).await;
        assert_eq!(resp.status, 502, "{path}: {}", resp.text());
        let text = resp.text().to_ascii_lowercase();
        assert!(text.contains(keyword), "{path}: body {text:?} lacks {keyword:?}");
        assert!(!text.contains("hello"), "{path}: the bad body was relayed");
    }
    let ok = get_close(weir.addr(), "/").await;
    assert_eq!((ok.status, ok.text().as_str()), (200, "b"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_behind_a_pipelined_response_is_not_lost_to_a_reset() {
    // Goal: weir closes with a lingering close (nginx's `lingering_close`): a socket
    // closed with unread input sends RST, and the kernel drops what weir wrote but had
    // not sent yet. Method: a client with the smallest receive buffer pipelines an 8 KiB
    // download, a smuggling-shaped request (400, close) and 64 KiB more, and reads only
    // after 300 ms: most of the download and the 400 still wait in weir's socket when it
    // closes. Without the lingering close the client got part of the download and a
    // reset; with it, both responses and a clean close.
    let backend = TestBackend::start("b").await;
    let weir = Balancer::front(&backend);
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(1).unwrap();
    let mut s = socket.connect(weir.addr()).await.unwrap();
    let bad = format!(
        "POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\
         Content-Length: 6\r\n\r\nhello!{SMUGGLED}"
    );
    let mut sent = b"GET /download?bytes=8192 HTTP/1.1\r\nHost: test\r\n\r\n".to_vec();
    sent.extend_from_slice(bad.as_bytes());
    sent.extend_from_slice(&[0; 64 * 1024]);
    let _ = s.write_all(&sent).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let download = read_response(&mut s).await.expect("the download");
    assert_eq!((download.status, download.body.len()), (200, 8192));
    let refused = read_response(&mut s).await.expect("the 400 after it");
    assert_eq!(refused.status, 400, "{}", refused.text());
    let mut rest = Vec::new();
    let end = timeout(WAIT, s.read_to_end(&mut rest)).await.expect("weir closes");
    assert!(end.is_ok(), "a clean close, not a reset: {end:?}");
    assert!(rest.is_empty());
}
