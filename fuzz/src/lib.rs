//! weir's fuzz targets, kept in a library so that the oracle has unit tests and the
//! target files stay one line each. See README.md for how to run them.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod oracle;
pub mod request;
pub mod response;
pub mod simple;

// The unit tests build with run.sh's instrumentation too, sharing its build; libFuzzer
// provides the coverage callbacks the instrumented code calls.
#[cfg(test)]
extern crate libfuzzer_sys;

use weir::http1::chunked::{Decoder, Rewrite};
use weir::http1::BodyKind;

/// Largest body the targets make up when the input holds less than `Content-Length`
/// says: weir streams the body as it arrives, so filler stands for the rest. Longer ones
/// are checked by their head alone, to keep each run fast.
pub const MAX_MADE_UP_BODY: u64 = 64 * 1024;

/// The body bytes weir forwards after a head.
pub enum Body {
    /// All of it: the bytes on the wire and the payload length they carry.
    Whole {
        /// Bytes as forwarded.
        bytes: Vec<u8>,
        /// Payload bytes (chunk data for a chunked body).
        payload: u64,
    },
    /// Not checkable as a whole: cut short, too long to make up, or refused mid-body.
    HeadOnly,
}

/// The body weir forwards, framed as `kind`, from the `rest` of the input after the head.
pub fn forwarded_body(kind: BodyKind, rest: &[u8]) -> Body {
    match kind {
        BodyKind::Empty => Body::Whole { bytes: Vec::new(), payload: 0 },
        BodyKind::Length(n) if n <= rest.len() as u64 => {
            Body::Whole { bytes: rest[..n as usize].to_vec(), payload: n }
        }
        BodyKind::Length(n) if n <= MAX_MADE_UP_BODY => {
            let mut bytes = rest.to_vec();
            bytes.resize(n as usize, b'x');
            Body::Whole { bytes, payload: n }
        }
        BodyKind::Length(_) => Body::HeadOnly,
        // weir forwards a chunked body re-encoded as it streams: canonical size lines,
        // data and trailers as received (`Decoder::rewrite`, as `proxy::pump` calls it).
        BodyKind::Chunked => match rewrite(rest, 1 << 16) {
            Some((_, canonical)) => match dechunk(&canonical) {
                Some((_, data)) => Body::Whole { bytes: canonical, payload: data.len() as u64 },
                None => Body::HeadOnly,
            },
            None => Body::HeadOnly,
        },
        BodyKind::UntilClose => Body::Whole { bytes: rest.to_vec(), payload: rest.len() as u64 },
    }
}

/// Walks a chunked body with weir's decoder in one pass: (bytes it took, chunk data), or
/// `None` when the body is refused or not complete.
pub fn dechunk(body: &[u8]) -> Option<(usize, Vec<u8>)> {
    let mut decoder = Decoder::new();
    let mut data = Vec::new();
    let mut at = 0;
    // Bounded: every step consumes at least one byte until the decoder is done.
    while at < body.len() && !decoder.is_done() {
        let step = decoder.feed(&body[at..]).ok()?;
        if let Some(range) = step.data {
            data.extend_from_slice(&body[at + range.start..at + range.end]);
        }
        at += step.consumed;
    }
    decoder.is_done().then_some((at, data))
}

/// Rewrites a chunked body as weir forwards it, fed in windows of at most `window`
/// bytes: (bytes it took, canonical output), or `None` when the body is refused or not
/// complete.
pub fn rewrite(body: &[u8], window: usize) -> Option<(usize, Vec<u8>)> {
    let mut decoder = Decoder::new();
    let mut out = Vec::new();
    let mut at = 0;
    // Bounded: every call consumes at least one byte until the decoder is done.
    while at < body.len() && !decoder.is_done() {
        let end = body.len().min(at + window.max(1));
        at += decoder.rewrite(&body[at..end], &mut out, Rewrite::Canonical).ok()?;
    }
    decoder.is_done().then_some((at, out))
}
