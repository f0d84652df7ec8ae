//! `[server.http2]` reaches the wire: the SETTINGS and the connection window weir
//! announces are the configured ones. And the connection's header budget refuses the
//! streams past it, not the connection.

use super::drain::Script;
use crate::support::{Balancer, TestBackend};

use weir::config::Http2Config;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_limits_are_announced_in_settings() {
    // Goal: each `[server.http2]` key sets what weir tells clients. Method: a raw client
    // reads weir's SETTINGS (MAX_CONCURRENT_STREAMS 0x3, INITIAL_WINDOW_SIZE 0x4,
    // MAX_FRAME_SIZE 0x5) and the WINDOW_UPDATE that raises the connection window from
    // the protocol's 65,535 to the configured size.
    let backend = TestBackend::start("b1").await;
    let weir = Balancer::over(&[backend.addr()], |config| {
        config.server.http2 = Http2Config {
            max_concurrent_streams: 7,
            initial_stream_window: 128 * 1024,
            initial_connection_window: 2 * 1024 * 1024,
            max_frame_size: 32 * 1024,
            websocket: true,
        };
    });
    let seen = Script::start("settings", weir.addr(), &[]).finish().await;
    for want in ["3=7", "4=131072", "5=32768"] {
        assert!(seen.iter().any(|l| l == want), "{want} in {seen:?}");
    }
    let raise = format!("window+={}", 2 * 1024 * 1024 - 65_535);
    assert!(seen.contains(&raise), "{raise} in {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_past_the_header_budget_are_refused_alone() {
    // Goal: 100 concurrent requests with 11 KiB cookies (a browser with heavy cookies)
    // pass the connection's header budget (16 x 64 KiB decoded) by a few streams: those
    // few are refused (REFUSED_STREAM, safe to send again) and the connection goes on.
    // It got GOAWAY, and all 100 were lost. Method: 100 GETs to a backend that takes
    // 300 ms, all open at once; then the refused ones again on the same connection.
    let backend = TestBackend::start("b1").await;
    let weir = Balancer::front(&backend);
    let client = crate::h2up::h2_client(weir.addr()).await;
    let cookie = "c=".to_string() + &"v".repeat(11 * 1024);
    let get = |client: h2::client::SendRequest<bytes::Bytes>, cookie: String| async move {
        let mut client = client.ready().await?;
        let request =
            http::Request::get("http://a/slow?ms=300").header("cookie", cookie).body(()).unwrap();
        let response = client.send_request(request, true)?.0.await?;
        Ok::<u16, h2::Error>(response.status().as_u16())
    };
    let sent: Vec<_> =
        (0..100).map(|_| tokio::spawn(get(client.clone(), cookie.clone()))).collect();
    let (mut answered, mut refused) = (0, 0);
    for got in sent {
        match got.await.unwrap() {
            Ok(200) => answered += 1,
            Err(error) if error.reason() == Some(h2::Reason::REFUSED_STREAM) => refused += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(answered + refused, 100);
    assert!(refused > 0, "the budget was reached: {answered} answered");
    assert!(refused < 20, "only the streams past it: {refused} refused");
    for _ in 0..refused {
        assert_eq!(get(client.clone(), cookie.clone()).await.unwrap(), 200, "sent again");
    }
}
