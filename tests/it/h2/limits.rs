//! `[server.http2]` reaches the wire: the SETTINGS and the connection window weir
//! announces are the configured ones.

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
