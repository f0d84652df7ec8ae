//! After a `101 Switching Protocols`, bytes flow both ways untouched until either side
//! closes.

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::buffers::Buffers;

/// Relays bytes both ways, starting with any already buffered on either side.
pub async fn run(client: &mut TcpStream, upstream: &mut TcpStream, buffers: &mut Buffers) {
    if !buffers.upstream.is_empty() && client.write_all(&buffers.upstream).await.is_err() {
        return;
    }
    buffers.upstream.clear();
    if !buffers.input.is_empty() && upstream.write_all(&buffers.input).await.is_err() {
        return;
    }
    buffers.input.clear();
    let _ = tokio::io::copy_bidirectional(client, upstream).await;
}
