//! HTTP/1.1 message heads and body framing, as a proxy needs them.
//!
//! weir parses heads with `httparse` and forwards header fields byte for byte (case, order
//! and duplicates kept) instead of going through a header map: a map loses the relative
//! order of different names and costs allocations per request. Bodies are never parsed
//! into memory: [`chunked`] walks chunk framing so that weir knows where a message ends
//! while the raw bytes stream through.
//!
//! - [`fields`]: header-name classes and value parsers shared by both directions.
//! - [`forwarded`]: `X-Forwarded-For` trust, and the client address it names.
//! - [`request`]: request head parsing, framing checks and the upstream rewrite.
//! - [`response`]: response head parsing, framing checks and the downstream rewrite.
//! - [`chunked`]: the chunked transfer-coding state machine.
//! - [`target`]: request-target forms, and the normalised path routing matches on.
//! - [`websocket`]: the WebSocket handshake key and accept, for the upgrades weir makes.
//! - [`name_set`]: what a request head's field names may be, for route rules that drop
//!   fields.
//! - [`lines`]: the head writers: new field lines, and kept lines copied one run at a
//!   time.

pub mod chunked;
pub(crate) mod fields;
pub mod forwarded;
pub(crate) mod lines;
pub mod name_set;
pub mod request;
pub mod response;
pub(crate) mod target;
pub mod websocket;

/// Most header fields httparse will look at in one head. The configured `max_headers`
/// (at most this) is enforced on top; this bound only sizes the stack array.
pub const HEADER_SLOTS: usize = 1000;

/// How a message body is delimited (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// No body at all.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding, possibly with trailers.
    Chunked,
    /// Until the sender closes the connection (responses only).
    UntilClose,
}

/// Result of parsing a head that may not have fully arrived yet.
#[derive(Debug)]
pub enum Parsed<T> {
    /// The head is complete.
    Complete(T),
    /// More bytes are needed.
    Partial,
}

/// Offset of `part` inside `whole`; both come from the same buffer (httparse slices).
fn offset_in(whole: &[u8], part: &[u8]) -> usize {
    let offset = (part.as_ptr() as usize).wrapping_sub(whole.as_ptr() as usize);
    debug_assert!(offset + part.len() <= whole.len());
    offset.min(whole.len())
}

/// The lines of a written head whose field name is `name` (any case), for tests.
#[cfg(test)]
fn field_lines<'a>(head: &'a str, name: &str) -> Vec<&'a str> {
    let named =
        |line: &&str| line.split_once(':').is_some_and(|(n, _)| n.eq_ignore_ascii_case(name));
    head.lines().filter(named).collect()
}
