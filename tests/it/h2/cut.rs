//! A response whose body ends with the backend's close (no length, not chunked) reaches
//! an HTTP/2 client as what it was: whole, with END_STREAM, when the backend closed
//! cleanly; reset (`INTERNAL_ERROR`) when it was cut (a reset connection, a stall past
//! `read_timeout`). HTTP/1.1 cannot tell the two apart; HTTP/2 can, and a client must not
//! take the first part of a cut body for the whole.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use super::websocket::read_head;
use crate::h2up::h2_client;
use crate::support::Balancer;

/// An HTTP/1.1 backend that answers each request with a close-delimited body: `part`,
/// then `rest` and a clean close for `/whole`, a reset (RST) for `/reset`, and nothing
/// more (a stall) for `/stall`; `/gzip` gets a body under `Transfer-Encoding: gzip,
/// chunked` instead.
async fn close_delimited_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Some(head) = read_head(&mut conn).await else { return };
                let head = String::from_utf8_lossy(&head).to_string();
                if head.starts_with("HEAD /gzip ") {
                    let coded = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
                    let _ = conn.write_all(coded).await;
                    return;
                }
                if head.starts_with("GET /gzip ") {
                    // A gzip member's first bytes, chunked.
                    let coded = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
                                  5\r\n\x1f\x8b\x08\x00\x00\r\n0\r\n\r\n";
                    let _ = conn.write_all(coded).await;
                    return;
                }
                let _ = conn
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\npart")
                    .await;
                if head.starts_with("GET /whole ") {
                    let _ = conn.write_all(b"rest").await;
                } else if head.starts_with("GET /reset ") {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    // A zero linger makes the close that follows a reset (RST).
                    let _ = socket2::SockRef::from(&conn).set_linger(Some(Duration::ZERO));
                } else {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_delimited_body_cut_short_resets_the_stream() {
    let backend = close_delimited_backend().await;
    let weir = Balancer::over(&[backend], |config| {
        config.pools[0].read_timeout = Duration::from_millis(500);
    });
    let client = h2_client(weir.addr()).await;
    let mut outcomes = Vec::new();
    for path in ["/whole", "/reset", "/stall"] {
        let mut client = client.clone().ready().await.unwrap();
        let request = http::Request::get(format!("http://a{path}")).body(()).unwrap();
        let response = client.send_request(request, true).unwrap().0.await.unwrap();
        assert_eq!(response.status(), 200, "{path}: the head went before the body");
        let mut body = response.into_body();
        let mut got = Vec::new();
        let end = loop {
            match tokio::time::timeout(Duration::from_secs(10), body.data()).await {
                Ok(Some(Ok(chunk))) => got.extend_from_slice(&chunk),
                Ok(Some(Err(error))) => break format!("{:?}", error.reason()),
                Ok(None) => break "END_STREAM".to_string(),
                Err(_) => break "no end within 10 s".to_string(),
            }
        };
        outcomes.push((path, String::from_utf8_lossy(&got).to_string(), end));
    }
    let reset = "Some(INTERNAL_ERROR)".to_string();
    let expected = [
        ("/whole", "partrest".to_string(), "END_STREAM".to_string()),
        ("/reset", "part".to_string(), reset.clone()),
        ("/stall", "part".to_string(), reset),
    ];
    assert_eq!(outcomes, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_under_another_transfer_coding_is_not_passed_off_as_plain() {
    // Goal: HTTP/2 has no transfer codings: a body under `gzip, chunked`, de-chunked,
    // would reach the client still gzip-coded with nothing saying so (no
    // `Content-Encoding`). The stream is reset instead; the connection goes on.
    let backend = close_delimited_backend().await;
    let weir = Balancer::over(&[backend], |_| {});
    let client = h2_client(weir.addr()).await;
    let mut coded = client.clone().ready().await.unwrap();
    let request = http::Request::get("http://a/gzip").body(()).unwrap();
    let got = coded.send_request(request, true).unwrap().0.await;
    let reason = got.as_ref().err().and_then(h2::Error::reason);
    assert_eq!(reason, Some(h2::Reason::INTERNAL_ERROR), "{got:?}");
    let mut next = client.clone().ready().await.unwrap();
    let request = http::Request::get("http://a/whole").body(()).unwrap();
    assert_eq!(next.send_request(request, true).unwrap().0.await.unwrap().status(), 200);
    // A HEAD response has no body: the coding it names is no matter.
    let mut head = client.ready().await.unwrap();
    let request = http::Request::head("http://a/gzip").body(()).unwrap();
    let got = head.send_request(request, true).unwrap().0.await;
    assert_eq!(got.map(|response| response.status()).ok(), Some(http::StatusCode::OK));
}
