//! Requests an HTTP/1.1 backend takes and HTTP/2 cannot carry (the `http` crate refuses
//! a target with `<` or `"`, a Host that is no authority; weir relays at most 100
//! trailer fields): to an h2c pool they get 400 at once, reach no backend (or have their
//! stream reset), and count nothing against it. They used to wait `response_timeout`,
//! get 504, and count as the backend's timeouts: three of them ejected it.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::support::client::{raw_request_timeout, send};
use crate::support::h2_backend::H2Backend;
use crate::support::Balancer;
use weir::config::BackendProtocol;

/// Far longer than the test's own wait for each answer: a request that waits for it
/// fails the test.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the test waits for each answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_http2_cannot_carry_get_400_and_leave_the_backend_in_rotation() {
    let backend = H2Backend::start("h2", None).await;
    let weir = Balancer::over(&[backend.addr()], |config| {
        let pool = &mut config.pools[0];
        pool.protocol = BackendProtocol::H2c;
        pool.response_timeout = RESPONSE_TIMEOUT;
        // One failure would eject the only backend: the good request at the end
        // would then get 503.
        pool.passive.consecutive_failures = 1;
    });
    let trailers: String = (0..101).map(|i| format!("t{i}: 1\r\n")).collect();
    let cases = [
        "GET /a<b HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".to_string(),
        "GET /q?x=\"y\" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".to_string(),
        "GET / HTTP/1.1\r\nHost: a%b\r\nConnection: close\r\n\r\n".to_string(),
        format!(
            "POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\
             Connection: close\r\n\r\n2\r\nhi\r\n0\r\n{trailers}\r\n"
        ),
    ];
    for case in &cases {
        let got = raw_request_timeout(weir.addr(), case.as_bytes(), ANSWER_WITHIN).await;
        let got = String::from_utf8_lossy(&got);
        assert!(got.starts_with("HTTP/1.1 400 "), "{case:?} got {got:?}");
    }
    // Only the request with trailers had a head HTTP/2 could carry.
    assert_eq!(backend.counts.streams.load(Ordering::SeqCst), 1);
    let good = send(weir.addr(), b"GET /ok HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").await;
    assert_eq!(good.status, 200, "the backend is still in rotation");
}
