//! Tests of an upstream stream the backend refuses while its request body is written.

use super::*;
use crate::proxy::upstream_h2::{ConnState, StreamSlot};

use std::cell::Cell;
use std::rc::Rc;

use tokio::io::AsyncWriteExt;
use tokio::time::{timeout, Duration, Instant};

/// A stream on an in-memory connection to a backend that refuses every stream at its
/// HEADERS and grants no window past the first 64 KiB. Body bytes past the window wait
/// for capacity, which the refusal ends: the write side learns of it first.
async fn refused_stream(replay_buffer: usize) -> (H2Upstream, Rc<ConnState>) {
    let (near, far) = tokio::io::duplex(1 << 20);
    tokio::task::spawn_local(async move {
        let mut backend = h2::server::handshake(far).await.expect("server handshake");
        // Bounded by the client: it opens one stream per test.
        while let Some(Ok((_request, mut respond))) = backend.accept().await {
            respond.send_reset(Reason::REFUSED_STREAM);
        }
    });
    let (send, connection) = h2::client::handshake(near).await.expect("client handshake");
    tokio::task::spawn_local(async move {
        let _ = connection.await;
    });
    let blocks = Rc::new(crate::http2::HeaderBlocks::new(super::super::watched::BLOCKS_PER_STREAM));
    let idle_since = Cell::new(Instant::now());
    let state = Rc::new(ConnState { streams: Cell::new(0), idle_since, blocks });
    (H2Upstream::new(send, StreamSlot::new(&state), false, replay_buffer), state)
}

/// Writes a POST with a `body`-byte body; the result of writing it whole.
async fn post(stream: &mut H2Upstream, body: usize) -> io::Result<()> {
    let head = format!("POST /u HTTP/1.1\r\nHost: b\r\nContent-Length: {body}\r\n\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&vec![b'x'; body]).await
}

#[tokio::test]
async fn a_refused_streams_body_is_taken_and_dropped_up_to_the_replay_buffer() {
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            // 200 KiB: past the window, so the writer waits for capacity when refused.
            let (mut stream, connection) = refused_stream(256 * 1024).await;
            assert_eq!(connection.streams.get(), 1);
            let written = timeout(Duration::from_secs(10), post(&mut stream, 200 * 1024)).await;
            written.expect("the write ends").expect("the refused stream takes the body");
            assert!(stream.refused(), "the refusal was noted by the write");
            // The codec no longer counts the stream: neither does its connection's room.
            assert_eq!(connection.streams.get(), 0, "the refused stream gave up its place");
            // Past the replay buffer no copy can hold the body: the write fails.
            let (mut stream, _connection) = refused_stream(100 * 1024).await;
            let written = timeout(Duration::from_secs(10), post(&mut stream, 200 * 1024)).await;
            assert!(written.expect("the write ends").is_err(), "dropped past the buffer");
            assert!(stream.refused());
        })
        .await;
}
