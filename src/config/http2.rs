//! `[server.http2]`: the limits weir sets on each HTTP/2 client connection. The `h2`
//! codec's own defaults suit a client, not a proxy facing the internet (unlimited
//! streams, a 16 MiB header list), so every one is weir's; the header list size and
//! field count come from `[server] max_header_bytes` and `max_headers`.

use std::ops::RangeInclusive;

/// `[server.http2]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Http2Config {
    /// Streams one connection may have open at once; past it a new stream gets
    /// `REFUSED_STREAM`.
    pub max_concurrent_streams: usize,
    /// Initial flow-control window of each stream: request body a client may send
    /// ahead of what the backend took.
    pub initial_stream_window: usize,
    /// Initial window of the whole connection, shared by its streams.
    pub initial_connection_window: usize,
    /// Largest frame payload weir accepts.
    pub max_frame_size: usize,
    /// Advertise `SETTINGS_ENABLE_CONNECT_PROTOCOL` and carry WebSocket over HTTP/2
    /// (RFC 8441) to backends as HTTP/1.1 upgrades.
    pub websocket: bool,
}

/// Allowed `max_concurrent_streams`: at least one; at most 10,000, as beyond the
/// defaults of nginx (128) and HAProxy (100) by far: each open stream may hold a decoded
/// head in weir, so the bound caps what one client can make weir hold.
pub const CONCURRENT_STREAMS: RangeInclusive<u64> = 1..=10_000;
/// Largest flow-control window HTTP/2 allows (RFC 9113 §6.9.1).
pub const MAX_WINDOW: usize = (1 << 31) - 1;
/// Allowed `initial_stream_window`: at least 1 KiB (less stalls every upload on round
/// trips), at most the protocol's maximum.
pub const STREAM_WINDOW: RangeInclusive<usize> = 1024..=MAX_WINDOW;
/// Allowed `initial_connection_window`: the connection window starts at 65,535 and a
/// SETTINGS frame cannot lower it (RFC 9113 §6.9.2), so that is the floor.
pub const CONNECTION_WINDOW: RangeInclusive<usize> = 65_535..=MAX_WINDOW;
/// Allowed `max_frame_size`: what RFC 9113 §6.5.2 allows SETTINGS_MAX_FRAME_SIZE to be.
pub const FRAME_SIZE: RangeInclusive<usize> = 16_384..=16_777_215;

impl Default for Http2Config {
    fn default() -> Self {
        Http2Config {
            // HAProxy's `tune.h2.max-concurrent-streams` default.
            max_concurrent_streams: 100,
            // The RFC's default: an upload to a stalled backend holds at most this per
            // stream in weir.
            initial_stream_window: 65_535,
            // 16 stream windows: a few uploads at once run at full speed while one
            // connection's unread uploads stay bounded at 1 MiB.
            initial_connection_window: 1024 * 1024,
            // The RFC's minimum, which every client supports; it keeps the codec's read
            // buffer small.
            max_frame_size: 16 * 1024,
            // On, as in Envoy, HAProxy and Caddy: browsers then open a WebSocket as one
            // more stream of the connection they have, and fall back to HTTP/1.1 only
            // when it is off. Off is for backends behind weir that must never be
            // upgraded on an HTTP/2 client's behalf.
            websocket: true,
        }
    }
}
