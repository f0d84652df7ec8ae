//! The lingering close, for HTTP/1 and HTTP/2 client connections alike: when weir closes
//! a connection after answering on it, it shuts its write side (a FIN after its last
//! bytes) and reads and drops what the client still sends until the client closes too,
//! for at most [`LINGER_TIME`] and [`LINGER_BYTES`]. nginx does the same
//! (`lingering_close`, `lingering_time`).
//!
//! Why: a socket closed with unread input sends RST, and the kernel drops what weir
//! wrote but had not sent yet. A client still sending when weir closed (an upload past
//! `max_body`, a pipelined request behind a refused one, HTTP/2 requests that crossed
//! the GOAWAY) could lose weir's last answer: a 4xx, the responses before it, or the
//! GOAWAY that tells an HTTP/2 client which requests are safe to send again.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How long a closing connection reads and drops what the client still sends, waiting
/// for its close. The client needs a round trip to read weir's last bytes and close:
/// far less than this on any path a balancer serves. nginx's `lingering_timeout` is 5 s
/// per read; one second in all bounds what a client can hold a slot for.
pub const LINGER_TIME: Duration = Duration::from_secs(1);
/// The most a closing connection reads and drops: 1 MiB, past what HTTP/2 flow control
/// lets a client have in flight on the default connection window (1 MiB), and past a
/// socket buffer's worth of an HTTP/1 upload. Past it the client is flooding, and its
/// connection is closed at once.
pub const LINGER_BYTES: usize = 1024 * 1024;
/// Bytes one lingering read takes at most.
pub const LINGER_READ: usize = 4096;

/// Closes `stream` with a lingering close. Errors end it: the client is gone, and
/// nothing is left to lose. The read buffer is part of the returned future (box it: a
/// connection's own future should not carry it).
pub async fn close<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) {
    let linger = async {
        if stream.shutdown().await.is_err() {
            return;
        }
        let mut scratch = [0u8; LINGER_READ];
        let mut left = LINGER_BYTES;
        // Bounded by `left`: each pass drops at least one byte, or ends the close.
        while left > 0 {
            match stream.read(&mut scratch).await {
                Ok(0) | Err(_) => return,
                Ok(read) => left = left.saturating_sub(read),
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, linger).await;
}
