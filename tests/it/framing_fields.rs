//! Framing no header can alter, and framing normalised before a peer sees it.
//!
//! - A `Connection` field that names Content-Length, Transfer-Encoding, Host or
//!   X-Forwarded-For removes nothing weir relies on, in either direction. Checked by
//!   counting, at a raw backend ([`Recorder`]), exactly the requests that arrive over one
//!   reused upstream connection, with the real curl client for issue #9's reproduction.
//! - `Content-Length: 5, 5` goes on as one value; chunk extensions are stripped; 204, 304
//!   and 1xx responses lose their framing fields.

use crate::support::{
    connect, curl, read_response, roundtrip, Balancer, Recorded, Recorder, Response,
};

use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

/// How long a client waits for one response: a response that lost its framing would
/// otherwise hold the client until the 30 s read limit of the helpers.
const WAIT: Duration = Duration::from_secs(5);
/// The body of issue #9's reproduction: a request that waits for the next one to finish
/// its last header.
const SMUGGLED: &str = "GET /SMUGGLED HTTP/1.1\r\nHost: x\r\nX-Ignore: ";

/// weir with one worker in front of `backend`: both clients share its upstream pool, so
/// a smuggled request would capture the second client's.
fn one_worker(backend: &Recorder) -> Balancer {
    Balancer::over(&[backend.addr()], |c| c.server.workers = 1)
}

/// Client A sends `attack` (curl arguments) to /a; then client B, on its own connection,
/// asks for /victim with a cookie. The backend must see exactly /a and /victim, over the
/// one pooled connection, and B must get the answer to its own request.
async fn assert_no_smuggling(attack: &[&str]) {
    let backend = Recorder::echo_target().await;
    let weir = one_worker(&backend);
    let base = format!("http://{}", weir.addr());
    let a = curl(&[attack, &[&format!("{base}/a")]].concat()).await;
    assert_eq!(a, "/a", "client A got another answer");
    let b = curl(&["-H", "Cookie: session=VICTIM", &format!("{base}/victim")]).await;
    assert_eq!(b, "/victim", "client B got another request's answer");
    assert_eq!(backend.targets(), ["/a", "/victim"], "requests at the backend");
    assert_eq!(backend.accepted(), 1, "the upstream connection was not reused");
    let victim = &backend.requests()[1];
    assert_eq!(victim.fields("Cookie"), ["session=VICTIM"]);
}

#[tokio::test]
async fn connection_content_length_cannot_smuggle_a_request() {
    // Goal: issue #9's reproduction yields one request per client. Method: curl posts
    // SMUGGLED as the body with `Connection: Content-Length`, then a victim request.
    let attack = ["-H", "Connection: Content-Length", "--data-binary", SMUGGLED];
    assert_no_smuggling(&attack).await;
}

#[tokio::test]
async fn connection_transfer_encoding_cannot_smuggle_a_request() {
    // Goal: the same with a chunked body. Method: curl sends SMUGGLED chunked, with
    // `Connection: Transfer-Encoding`.
    let attack = [
        "-H",
        "Transfer-Encoding: chunked",
        "-H",
        "Connection: Transfer-Encoding",
        "--data-binary",
        SMUGGLED,
    ];
    assert_no_smuggling(&attack).await;
}

#[tokio::test]
async fn connection_keeps_host_and_forwarded_for() {
    // Goal: `Connection: Host, X-Forwarded-For` deletes neither Host nor the
    // X-Forwarded-For weir appended to. Method: inspect the head the backend received.
    let backend = Recorder::echo_target().await;
    let weir = one_worker(&backend);
    let mut s = connect(weir.addr()).await.unwrap();
    let req = "GET /h HTTP/1.1\r\nHost: public.example\r\nX-Forwarded-For: 192.0.2.1\r\n\
               Connection: Host, X-Forwarded-For\r\n\r\n";
    let resp = roundtrip(&mut s, req.as_bytes()).await.unwrap();
    assert_eq!((resp.status, resp.text().as_str()), (200, "/h"));
    let got = &backend.requests()[0];
    assert_eq!(got.fields("Host"), ["public.example"]);
    assert_eq!(got.fields("X-Forwarded-For"), ["192.0.2.1, 127.0.0.1"]);
    assert_eq!(got.fields("X-Forwarded-Host"), ["public.example"]);
}

/// A backend that answers the first request with `first` and every later one with a
/// 6-byte `second` body.
async fn scripted(first: &'static str) -> Recorder {
    Recorder::start(Arc::new(move |n, _: &Recorded| {
        let second = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond";
        (if n == 0 { first } else { second }).as_bytes().to_vec()
    }))
    .await
}

/// Two GETs on one keep-alive client connection; returns both responses.
async fn two_responses(backend: &Recorder) -> (Response, Response) {
    let weir = one_worker(backend);
    let mut s = connect(weir.addr()).await.unwrap();
    let mut next = async |path: &str| {
        let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
        let sent = roundtrip(&mut s, req.as_bytes());
        timeout(WAIT, sent).await.expect("a framed response in time").unwrap()
    };
    let first = next("/1").await;
    let second = next("/2").await;
    (first, second)
}

/// The backend answers `first`, then `second`, on one keep-alive client connection: the
/// client reads `hello` framed by exactly one `field: value`, then the second intact.
async fn assert_framed(first: &'static str, field: &str, value: &str) {
    let backend = scripted(first).await;
    let (first, second) = two_responses(&backend).await;
    assert_eq!(first.header_all(field), [value]);
    assert_eq!(first.text(), "hello");
    assert_eq!((second.status, second.text().as_str()), (200, "second"));
}

#[tokio::test]
async fn response_connection_content_length_keeps_the_framing() {
    // Goal: a backend's `Connection: Content-Length` does not unframe the response on a
    // keep-alive client connection. Method: two responses on one connection; the first
    // must carry its length, the second must arrive intact after it.
    let first = "HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: 5\r\n\r\nhello";
    assert_framed(first, "Content-Length", "5").await;
}

#[tokio::test]
async fn response_connection_transfer_encoding_keeps_the_framing() {
    // Goal: the same for a chunked response with `Connection: Transfer-Encoding`.
    let first = "HTTP/1.1 200 OK\r\nConnection: Transfer-Encoding\r\n\
                 Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    assert_framed(first, "Transfer-Encoding", "chunked").await;
}

#[tokio::test]
async fn response_content_length_list_reaches_the_client_as_one_value() {
    // Goal: a backend's `Content-Length: 5, 5` (and a repeat) goes out as one value.
    let first = "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\ncontent-length: 5\r\n\r\nhello";
    assert_framed(first, "Content-Length", "5").await;
}

#[tokio::test]
async fn bodiless_statuses_carry_no_framing_fields() {
    // Goal: 204, 304 and 1xx responses reach the client without the Content-Length or
    // Transfer-Encoding the backend sent (RFC 9110 §8.6, RFC 9112 §6.1). Method: each
    // answer with such fields, then a second response on the same connection.
    let cases = [
        "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
        "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
        "HTTP/1.1 103 Early Hints\r\nContent-Length: 5\r\nLink: </s>\r\n\r\n\
         HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n",
    ];
    for case in cases {
        let backend = scripted(case).await;
        let weir = one_worker(&backend);
        let mut s = connect(weir.addr()).await.unwrap();
        s.write_all(b"GET /1 HTTP/1.1\r\nHost: test\r\n\r\n").await.unwrap();
        let mut responses = Vec::new();
        loop {
            let resp = timeout(WAIT, read_response(&mut s)).await.expect("in time").unwrap();
            responses.push(resp.status);
            for name in ["Content-Length", "Transfer-Encoding"] {
                assert_eq!(resp.header(name), None, "{name} on a {}: {case:?}", resp.status);
            }
            if resp.status >= 200 {
                break;
            }
        }
        let req = b"GET /2 HTTP/1.1\r\nHost: test\r\n\r\n";
        let next = timeout(WAIT, roundtrip(&mut s, req)).await.expect("in time").unwrap();
        assert_eq!(next.text(), "second", "after {responses:?}");
    }
}

#[tokio::test]
async fn request_content_length_list_goes_upstream_as_one_value() {
    // Goal: `Content-Length: 5, 5` and an identical repeat reach the backend as exactly
    // one field with one value. Method: the strict recorder refuses a list, and its head
    // shows the fields.
    let backend = Recorder::echo_target().await;
    let weir = one_worker(&backend);
    let mut s = connect(weir.addr()).await.unwrap();
    let req = "POST /cl HTTP/1.1\r\nHost: test\r\nContent-Length: 5, 5\r\n\
               content-length: 5\r\n\r\nhello";
    let resp = timeout(WAIT, roundtrip(&mut s, req.as_bytes())).await.expect("in time").unwrap();
    assert_eq!((resp.status, resp.text().as_str()), (200, "/cl"));
    let got = &backend.requests()[0];
    assert_eq!(got.fields("Content-Length"), ["5"]);
    assert_eq!(got.body, b"hello");
}

#[tokio::test]
async fn chunk_extensions_never_reach_the_backend() {
    // Goal: the chunked body a backend gets has canonical size lines: no extensions, no
    // leading zeros; data and trailers pass. Method: the recorder keeps the raw body.
    let backend = Recorder::echo_target().await;
    let weir = one_worker(&backend);
    let mut s = connect(weir.addr()).await.unwrap();
    let req = "POST /ch HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n\
               8;name=value\r\nabcdefgh\r\n00A; a=\"b;c\"\r\n0123456789\r\n\
               0;last=1\r\nX-Sum: 9\r\n\r\n";
    let resp = timeout(WAIT, roundtrip(&mut s, req.as_bytes())).await.expect("in time").unwrap();
    assert_eq!((resp.status, resp.text().as_str()), (200, "/ch"));
    let got = &backend.requests()[0];
    assert_eq!(got.fields("Transfer-Encoding"), ["chunked"]);
    let body = String::from_utf8_lossy(&got.body);
    assert_eq!(body, "8\r\nabcdefgh\r\na\r\n0123456789\r\n0\r\nX-Sum: 9\r\n\r\n");
}

#[tokio::test]
async fn response_chunk_extensions_never_reach_the_client() {
    // Goal: the same for a chunked response, read as raw bytes by the client.
    let first = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                 5;x=y\r\nhello\r\n0;z\r\nX-T: 1\r\n\r\n";
    let backend = scripted(first).await;
    let weir = one_worker(&backend);
    let mut s = connect(weir.addr()).await.unwrap();
    s.write_all(b"GET /1 HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut raw = Vec::new();
    timeout(WAIT, s.read_to_end(&mut raw)).await.expect("in time").unwrap();
    let raw = String::from_utf8_lossy(&raw);
    let body = raw.split_once("\r\n\r\n").expect("a head").1;
    assert_eq!(body, "5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n");
}

#[tokio::test]
async fn underscore_spellings_of_framing_fields_are_refused() {
    // Goal: `Transfer_Encoding: chunked` next to a Content-Length never reaches a backend
    // that reads `_` as `-` (CGI, WSGI): it would read a chunked body where weir framed
    // 30 bytes. Other underscore names pass byte for byte. Method: a raw backend counts
    // what arrives.
    let backend = Recorder::echo_target().await;
    let weir = one_worker(&backend);
    let body = format!("0\r\n\r\n{SMUGGLED}");
    for name in ["Transfer_Encoding", "X_Forwarded_For"] {
        let mut s = connect(weir.addr()).await.unwrap();
        let req = format!(
            "POST /a HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n{name}: chunked\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let resp = timeout(WAIT, read_response(&mut s)).await.expect("in time").unwrap();
        assert_eq!(resp.status, 400, "{name}: {}", resp.text());
        assert!(resp.text().contains("underscore"), "{}", resp.text());
    }
    assert_eq!(backend.targets(), Vec::<String>::new(), "requests at the backend");
    let mut s = connect(weir.addr()).await.unwrap();
    let req = "GET /k HTTP/1.1\r\nHost: test\r\nX_Api_Key: secret\r\n\r\n";
    let resp = timeout(WAIT, roundtrip(&mut s, req.as_bytes())).await.expect("in time").unwrap();
    assert_eq!((resp.status, resp.text().as_str()), (200, "/k"));
    let head = String::from_utf8_lossy(&backend.requests()[0].head).into_owned();
    assert!(head.contains("\r\nX_Api_Key: secret\r\n"), "{head}");
}

#[tokio::test]
async fn an_upgrade_to_anything_but_websocket_goes_as_a_plain_request() {
    // Goal: `Upgrade: h2c` opens no tunnel past routing and the access log: the backend
    // gets a plain request without Upgrade, the upgrade option or HTTP2-Settings, and a
    // 101 it answers anyway is a 502. Method: a raw backend records the head; a second
    // one answers every request with 101.
    let req = "GET /u HTTP/1.1\r\nHost: test\r\nUpgrade: h2c\r\n\
               Connection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n";
    let backend = Recorder::echo_target().await;
    let weir = one_worker(&backend);
    let mut s = connect(weir.addr()).await.unwrap();
    let resp = timeout(WAIT, roundtrip(&mut s, req.as_bytes())).await.expect("in time").unwrap();
    assert_eq!((resp.status, resp.text().as_str()), (200, "/u"));
    let got = &backend.requests()[0];
    for name in ["Upgrade", "Connection", "HTTP2-Settings"] {
        assert_eq!(got.fields(name), Vec::<String>::new(), "{name} reached the backend");
    }
    let switching =
        scripted("HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n")
            .await;
    let weir = one_worker(&switching);
    let mut s = connect(weir.addr()).await.unwrap();
    let resp = timeout(WAIT, roundtrip(&mut s, req.as_bytes())).await.expect("in time").unwrap();
    assert_eq!(resp.status, 502, "{}", resp.text());
}
