//! After a `101 Switching Protocols`, bytes flow both ways untouched until either side
//! closes.

use super::buffers::Buffers;
use super::io::Stream;
use super::pump::write_flushed;

/// Relays bytes both ways, starting with any already buffered on either side.
pub async fn run<C: Stream, U: Stream>(client: &mut C, upstream: &mut U, buffers: &mut Buffers) {
    if !buffers.upstream.is_empty() && write_flushed(client, &buffers.upstream).await.is_err() {
        return;
    }
    buffers.upstream.clear();
    if !buffers.input.is_empty() && write_flushed(upstream, &buffers.input).await.is_err() {
        return;
    }
    buffers.input.clear();
    let _ = tokio::io::copy_bidirectional(client, upstream).await;
}
