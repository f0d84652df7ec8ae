//! The PROXY protocol header of a connection on a `proxy_protocol` listener: read before
//! anything else (before the TLS handshake on a TLS listener, before the HTTP/2 preface
//! check on a plain one), within `header_timeout`. The address it carries becomes the
//! connection's client address. A missing or bad header closes the connection, counted
//! in `weir_proxy_protocol_errors_total`; it is never read as HTTP.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::Client;
use crate::proxy_protocol::{self, Error, Parsed, MAX_HEADER_LEN};

/// Reads the header and makes its source the client's address. False when the
/// connection must close (the error is counted).
pub(crate) async fn accept(stream: &mut TcpStream, client: &mut Client, timeout: Duration) -> bool {
    match read(stream, Instant::now() + timeout).await {
        Ok(addresses) => {
            if let Some((source, destination)) = addresses {
                client.peer = source;
                client.peer_ip = super::ip_text(source.ip());
                client.local = Some(Box::new(destination));
            }
            client.proxied = true;
            true
        }
        Err(error) => {
            count(client, error);
            tracing::debug!(client = %client.peer, "PROXY protocol header refused: {}", error.label());
            false
        }
    }
}

/// Counts a connection closed for its PROXY header.
pub(crate) fn count(client: &Client, error: Error) {
    client.shared.frontend.local().proxy_protocol_errors[error as usize].inc();
}

/// Reads the header, taking no byte past its end: the bytes are peeked first, and only
/// those [`proxy_protocol::parse`] says belong to the header are consumed, so what
/// follows (a ClientHello, a request) stays in the socket for the next reader.
async fn read(
    stream: &mut TcpStream,
    deadline: Instant,
) -> Result<Option<(SocketAddr, SocketAddr)>, Error> {
    let mut header = [0u8; MAX_HEADER_LEN];
    let mut have = 0;
    // Bounded: each pass consumes at least one byte, and the header is at most
    // `MAX_HEADER_LEN` bytes (longer is an error from `parse`).
    loop {
        let peeked = match tokio::time::timeout_at(deadline, stream.peek(&mut header[have..])).await
        {
            Err(_) => return Err(Error::Timeout),
            Ok(Ok(0) | Err(_)) => return Err(Error::Closed),
            Ok(Ok(peeked)) => peeked,
        };
        let (take, done) = match proxy_protocol::parse(&header[..have + peeked])? {
            Parsed::Complete(found) => (found.len - have, Some(found.addresses)),
            Parsed::Partial => (peeked, None),
        };
        // Already in the socket's queue: this read does not wait.
        if stream.read_exact(&mut header[have..have + take]).await.is_err() {
            return Err(Error::Closed);
        }
        have += take;
        if let Some(addresses) = done {
            return Ok(addresses);
        }
    }
}
