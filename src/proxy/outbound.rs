//! The PROXY protocol header weir sends first on each new upstream connection of a pool
//! with `send_proxy_protocol` (HAProxy's `send-proxy` and `send-proxy-v2`).
//!
//! Such a connection speaks for one client, so it is never pooled: a pooled one could
//! carry another client's requests under the first one's address. HAProxy likewise marks
//! these connections private to their client session.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::Client;
use crate::pool::ConnectError;
use crate::proxy_protocol::{self, Version};

/// Writes the header naming `client` on a new connection, before anything else (a TLS
/// ClientHello included). At most `MAX_WRITTEN_LEN` bytes on a fresh socket, whose send
/// buffer takes them at once: the write does not wait on the backend (the connect
/// timeout has ended by then and does not bound it).
pub(crate) async fn send(
    tcp: &mut TcpStream,
    version: Version,
    client: &Client,
) -> Result<(), ConnectError> {
    let mut header = Vec::with_capacity(proxy_protocol::MAX_WRITTEN_LEN);
    proxy_protocol::write(&mut header, version, client.peer, destination(client));
    tcp.write_all(&header).await.map_err(ConnectError::Failed)
}

/// The address the client reached: the incoming PROXY header's destination, or weir's
/// listener. A connection accepted before a reload turned sending on has neither; it
/// names the unspecified address of the client's family, port 0, as nothing better is
/// known.
fn destination(client: &Client) -> SocketAddr {
    client.local.as_deref().copied().unwrap_or_else(|| {
        let ip = match client.peer.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        SocketAddr::new(ip, 0)
    })
}
