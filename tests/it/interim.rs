//! Interim responses (1xx) from backends reach clients, and a backend that sends too
//! many gets a 502.
//!
//! An HTTP/2 backend's `103 Early Hints` used to be dropped: weir never asked the codec
//! for a stream's informational responses, which it skips when the final head is read.
//! Now they reach HTTP/1.1 clients as interim heads and HTTP/2 clients as informational
//! HEADERS, as an HTTP/1.1 backend's always did. Past `MAX_INTERIM_HEADS` (16) interim
//! heads for one request, from either kind of backend, the client gets 502.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::time::timeout;

use crate::support::h2_backend::H2Backend;
use crate::support::{connect, read_response, Balancer, Recorded, Recorder};
use weir::config::BackendProtocol;

/// The longest any test waits for a response that must come.
const WAIT: Duration = Duration::from_secs(10);

/// weir in front of an h2c backend.
fn over_h2c(backend: &H2Backend) -> Balancer {
    Balancer::over(&[backend.addr()], |config| {
        config.pools[0].protocol = BackendProtocol::H2c;
    })
}

/// The statuses and `x-hint` values of the responses an HTTP/1.1 client reads for
/// `path`, up to and including the final one, and the final one's body.
async fn http1_statuses(weir: &Balancer, path: &str) -> (Vec<(u16, Option<String>)>, String) {
    let mut s = connect(weir.addr()).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    s.write_all(request.as_bytes()).await.expect("send");
    let mut got = Vec::new();
    // Bounded: the test fails past 20 responses.
    for _ in 0..20 {
        let response = timeout(WAIT, read_response(&mut s)).await.expect("in time").expect("read");
        got.push((response.status, response.header("x-hint").map(str::to_string)));
        if response.status >= 200 {
            return (got, response.text());
        }
        assert_eq!(response.header("link"), Some("</style.css>; rel=preload"));
    }
    panic!("no final response in {got:?}");
}

#[tokio::test]
async fn an_http2_backends_early_hints_reach_an_http1_client() {
    let backend = H2Backend::start("h2", None).await;
    let weir = over_h2c(&backend);
    let (got, body) = http1_statuses(&weir, "/early-hints?2").await;
    let hint = |k: &str| (103, Some(k.to_string()));
    assert_eq!(got, [hint("1"), hint("2"), (200, None)]);
    assert_eq!(body, "h2");
}

#[tokio::test]
async fn an_http2_backends_early_hints_reach_an_http2_client() {
    let backend = H2Backend::start("h2", None).await;
    let weir = over_h2c(&backend);
    let client = crate::h2up::h2_client(weir.addr()).await;
    let mut client = client.ready().await.expect("ready");
    let request = http::Request::get("http://test/early-hints?1").body(()).unwrap();
    let (mut response, _) = client.send_request(request, true).expect("send");
    let hint = std::future::poll_fn(|cx| response.poll_informational(cx));
    let hint = timeout(WAIT, hint).await.expect("in time").expect("a hint").expect("no error");
    assert_eq!(hint.status(), 103);
    assert_eq!(hint.headers()["link"], "</style.css>; rel=preload");
    let response = timeout(WAIT, response).await.expect("in time").expect("response");
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn an_http2_backend_sending_too_many_interim_heads_gets_502() {
    let backend = H2Backend::start("h2", None).await;
    let weir = over_h2c(&backend);
    // 16 are relayed; the 17th is one too many.
    let (got, _) = http1_statuses(&weir, "/early-hints?16").await;
    assert_eq!((got.len(), got.last().unwrap().0), (17, 200));
    let (got, _) = http1_statuses(&weir, "/early-hints?17").await;
    assert_eq!((got.len(), got.last().unwrap().0), (17, 502), "{got:?}");
}

#[tokio::test]
async fn an_http1_backend_sending_too_many_interim_heads_gets_502() {
    let heads = |n: usize| -> &'static str {
        let hint = "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n";
        let last = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        String::leak(hint.repeat(n) + last)
    };
    for (n, last) in [(16, 200), (17, 502)] {
        let answer = heads(n);
        let backend = Recorder::start(Arc::new(move |_, _: &Recorded| answer.as_bytes().to_vec()));
        let backend = backend.await;
        let weir = Balancer::over(&[backend.addr()], |_| {});
        let (got, _) = http1_statuses(&weir, "/").await;
        let relayed = got.iter().filter(|(status, _)| *status == 103).count();
        assert_eq!((relayed, got.last().unwrap().0), (n.min(16), last), "{n} interim heads");
    }
}

#[tokio::test]
async fn an_http2_backends_101_is_dropped_not_taken_for_a_switch() {
    // Goal: a `101` from an HTTP/2 backend (RFC 9113 §8.6 forbids it) is dropped, as
    // before hints were relayed: a client asking to upgrade gets the backend's 200, not
    // a 101 with no tunnel behind it; one not asking gets the 200, not a 502.
    let backend = H2Backend::start("h2", None).await;
    let weir = over_h2c(&backend);
    for upgrade in ["", "Connection: upgrade\r\nUpgrade: websocket\r\n"] {
        let mut s = connect(weir.addr()).await.expect("connect");
        let request = format!("GET /informational-101 HTTP/1.1\r\nHost: test\r\n{upgrade}\r\n");
        s.write_all(request.as_bytes()).await.expect("send");
        let response = timeout(WAIT, read_response(&mut s)).await.expect("in time").expect("read");
        assert_eq!((response.status, response.text()), (200, "h2".to_string()), "{upgrade:?}");
    }
}
