//! How a pool speaks to its backends: `protocol`, and the limits of its multiplexed
//! HTTP/2 connections (`max_streams_per_connection`, `ping_interval`, `ping_timeout`).

use std::ops::RangeInclusive;
use std::time::Duration;

/// `[[pool]] protocol`: the protocol weir speaks to the pool's backends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackendProtocol {
    /// With `https://` backends, ALPN `h2, http/1.1`: HTTP/2 to a backend that chooses
    /// `h2`, HTTP/1.1 otherwise, remembered per backend; HTTP/1.1 with `http://` ones.
    #[default]
    Auto,
    /// HTTP/1.1.
    Http1,
    /// Cleartext HTTP/2 with prior knowledge (RFC 9113 §3.3), the usual way to reach
    /// gRPC servers inside a cluster.
    H2c,
    /// HTTP/2 over TLS to `https://` backends, which must choose `h2` by ALPN (the
    /// pool's connectors offer only it).
    H2,
}

impl BackendProtocol {
    /// Parses a `protocol` value.
    pub fn parse(text: &str) -> Result<BackendProtocol, String> {
        match text {
            "auto" => Ok(BackendProtocol::Auto),
            "http1" => Ok(BackendProtocol::Http1),
            "h2c" => Ok(BackendProtocol::H2c),
            "h2" => Ok(BackendProtocol::H2),
            _ => Err(r#"`protocol` must be "auto", "http1", "h2c" or "h2""#.into()),
        }
    }

    /// Whether every request goes over multiplexed HTTP/2 connections (an `Auto`
    /// backend may too, as it chose by ALPN).
    pub fn is_http2(self) -> bool {
        matches!(self, BackendProtocol::H2c | BackendProtocol::H2)
    }

    /// The name, as written in config files.
    pub fn name(self) -> &'static str {
        match self {
            BackendProtocol::Auto => "auto",
            BackendProtocol::Http1 => "http1",
            BackendProtocol::H2c => "h2c",
            BackendProtocol::H2 => "h2",
        }
    }
}

/// The limits of a pool's upstream HTTP/2 connections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamH2 {
    /// Most streams weir opens on one connection, below the backend's own
    /// SETTINGS_MAX_CONCURRENT_STREAMS; past it another connection opens.
    pub max_streams_per_connection: usize,
    /// How long a connection may be silent before weir sends a PING.
    pub ping_interval: Duration,
    /// How long weir waits for the PING's answer before it closes the connection.
    pub ping_timeout: Duration,
}

/// Allowed `max_streams_per_connection`: at least one, at most 10,000 (the bound on a
/// client connection's streams too: each stream holds a head and buffers in weir).
pub const STREAMS_PER_CONNECTION: RangeInclusive<u64> = 1..=10_000;

impl Default for UpstreamH2 {
    fn default() -> Self {
        UpstreamH2 {
            // The value most servers advertise (Go's net/http2 250, nginx 128, gRPC's
            // own servers leave it unlimited): 100 keeps one connection's head-of-line
            // blocking on TCP loss bounded while one connection still serves a
            // worker's usual load.
            max_streams_per_connection: 100,
            // gRPC servers' default keepalive enforcement (grpc-core's
            // `min_recv_ping_interval_without_data` and grpc-go's `MinTime`): a PING
            // sooner than 5 minutes after the last one, with no data sent in between,
            // is a strike, and the third strike is GOAWAY ENHANCE_YOUR_CALM
            // "too_many_pings", which kills every stream on the connection. So an idle
            // gRPC stream would die after 3 PINGs of a shorter interval (seen with
            // grpcio at 200 ms). 5 minutes is also gRPC's own advice for client
            // keepalive, and under NATs' usual idle limits for TCP (RFC 5382: at
            // least 2 h 4 min). A pooled connection without streams closes at
            // `idle_timeout` (30 s) before its first PING.
            ping_interval: Duration::from_secs(300),
            // An answer takes a round trip; one far longer means the backend is gone.
            ping_timeout: Duration::from_secs(10),
        }
    }
}
