//! Retries on gRPC status (`[pool.retry] on = ["grpc-unavailable", ...]`): a call
//! answered trailers-only with a listed status goes to another backend, with its whole
//! body, when that body was kept for a replay; otherwise the answer reaches the client
//! intact.

use bytes::Bytes;
use h2::client::SendRequest;
use http::Request;

use crate::h2up::h2_client;
use crate::support::h2_backend::H2Backend;
use crate::support::{pattern_bytes, Balancer};
use weir::config::{BackendProtocol, GrpcCodes, RetryOn};

/// A unary-shaped gRPC call with `body` to `/unavailable-once`: the response's
/// `grpc-status` head field (a trailers-only answer's) and body.
async fn call(client: &SendRequest<Bytes>, body: &[u8]) -> (Option<String>, Vec<u8>) {
    let mut ready = client.clone().ready().await.expect("ready");
    let request = Request::post("http://weir.test/unavailable-once")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (response, mut send) = ready.send_request(request, false).expect("send");
    // Within the stream's initial window: one DATA frame.
    send.send_data(Bytes::copy_from_slice(body), true).expect("body");
    let (head, mut recv) = response.await.expect("response").into_parts();
    let mut got = Vec::new();
    while let Some(chunk) = recv.data().await {
        let chunk = chunk.expect("data");
        let _ = recv.flow_control().release_capacity(chunk.len());
        got.extend_from_slice(&chunk);
    }
    let status = head.headers.get("grpc-status").map(|v| v.to_str().unwrap().to_string());
    (status, got)
}

/// weir over a `flaky` and a `steady` backend (h2c), retrying UNAVAILABLE, with
/// `replay_buffer` bytes of replay copy.
async fn weir_retrying(replay_buffer: usize) -> (Balancer, H2Backend, H2Backend) {
    let flaky = H2Backend::start("flaky", None).await;
    let steady = H2Backend::start("steady", None).await;
    let weir = Balancer::over(&[flaky.addr(), steady.addr()], |config| {
        let pool = &mut config.pools[0];
        pool.protocol = BackendProtocol::H2c;
        let mut grpc = GrpcCodes::default();
        grpc.insert(GrpcCodes::UNAVAILABLE);
        pool.retry.on = RetryOn { grpc, ..RetryOn::default() };
        pool.retry.replay_buffer = replay_buffer;
    });
    (weir, flaky, steady)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unavailable_answer_is_retried_with_the_whole_body() {
    // Goal: a gRPC call answered UNAVAILABLE (trailers-only) goes to another backend
    // with its whole body, and the client sees only the good answer. Method: `flaky`
    // answers its first call UNAVAILABLE, after reading the request; four calls with
    // 1,000-byte bodies each come back echoed, by hash; flaky answered UNAVAILABLE
    // once, and weir counted one retry.
    let (weir, flaky, _steady) = weir_retrying(64 * 1024).await;
    let client = h2_client(weir.addr()).await;
    let body = pattern_bytes(1000);
    for _ in 0..4 {
        assert_eq!(call(&client, &body).await, (None, body.clone()));
    }
    assert_eq!(flaky.counts.unavailable.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(weir.pool_total(|stats| stats.retries.get()), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unavailable_answer_to_a_body_not_kept_reaches_the_client_intact() {
    // Goal: a call whose body was not kept whole (past `replay_buffer`) is not retried:
    // the backend's UNAVAILABLE reaches the client as it was sent. Method: a 16-byte
    // replay copy and 1,000-byte bodies; of two calls, the one flaky got comes back
    // UNAVAILABLE with no body, the other echoed; weir retried nothing.
    let (weir, flaky, _steady) = weir_retrying(16).await;
    let client = h2_client(weir.addr()).await;
    let body = pattern_bytes(1000);
    let mut got = vec![call(&client, &body).await, call(&client, &body).await];
    got.sort();
    assert_eq!(got, vec![(None, body.clone()), (Some("14".to_string()), Vec::new())]);
    assert_eq!(flaky.counts.unavailable.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(weir.pool_total(|stats| stats.retries.get()), 0);
}
