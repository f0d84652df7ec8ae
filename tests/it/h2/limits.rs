//! `[server.http2]` reaches the wire: the SETTINGS and the connection window weir
//! announces are the configured ones. And the connection's header budget refuses the
//! streams past it, not the connection.

use super::drain::{Gate, Script};
use crate::support::{Balancer, TestBackend};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

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
    // It got GOAWAY, and all 100 were lost. Method: 100 GETs to a backend that holds
    // every request until each of the 100 either reached it or was refused, so all are
    // open at once however slowly they are sent; then the refused ones again on the
    // same connection.
    let gate = Gate::start().await;
    let weir = Balancer::over(&[gate.addr], |_| {});
    let client = crate::h2up::h2_client(weir.addr()).await;
    let cookie = "c=".to_string() + &"v".repeat(11 * 1024);
    let refused = Arc::new(AtomicUsize::new(0));
    let get = |client: h2::client::SendRequest<bytes::Bytes>, refused: Arc<AtomicUsize>| {
        let cookie = cookie.clone();
        async move {
            let mut client = client.ready().await?;
            let request =
                http::Request::get("http://a/").header("cookie", cookie).body(()).unwrap();
            let got = client.send_request(request, true)?.0.await;
            if matches!(&got, Err(e) if e.reason() == Some(h2::Reason::REFUSED_STREAM)) {
                refused.fetch_add(1, Ordering::SeqCst);
            }
            Ok::<u16, h2::Error>(got?.status().as_u16())
        }
    };
    let sent: Vec<_> =
        (0..100).map(|_| tokio::spawn(get(client.clone(), Arc::clone(&refused)))).collect();
    let all_in = || gate.requests() + refused.load(Ordering::SeqCst) == 100;
    // Bounded: 3,000 waits of 10 ms.
    for _ in 0..3000 {
        if all_in() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(all_in(), "{} reached the backend, {refused:?} refused", gate.requests());
    gate.open.send_replace(true);
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
        let again = get(client.clone(), Arc::new(AtomicUsize::new(0))).await;
        assert_eq!(again.unwrap(), 200, "sent again");
    }
}
