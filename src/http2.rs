//! HTTP/2 frames as their bytes pass through weir on their way to the `h2` codec, read
//! by their 9-byte headers alone (RFC 9113 §4.1): payloads are skipped, never copied.
//! The client side's attack scan (`proxy::h2::guard`) walks them ([`Frames`]), and so
//! does the upstream side's count of a backend's header blocks per stream
//! ([`HeaderBlocks`], in `proxy::upstream_h2::watched`).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

/// Length of a frame header.
pub const FRAME_HEADER: usize = 9;

/// DATA frame type (RFC 9113 §6.1).
pub const DATA: u8 = 0x0;
/// HEADERS frame type (§6.2).
pub const HEADERS: u8 = 0x1;
/// RST_STREAM frame type (§6.4).
pub const RST_STREAM: u8 = 0x3;
/// SETTINGS frame type (§6.5).
pub const SETTINGS: u8 = 0x4;
/// PING frame type (§6.7).
pub const PING: u8 = 0x6;
/// CONTINUATION frame type (§6.10).
pub const CONTINUATION: u8 = 0x9;
/// The ACK flag of SETTINGS and PING: an answer, not a request.
pub const ACK: u8 = 0x1;
/// The END_STREAM flag of HEADERS and DATA: the sender's last frame on the stream.
pub const END_STREAM: u8 = 0x1;
/// The END_HEADERS flag of HEADERS and CONTINUATION: the header block ends with this
/// frame.
pub const END_HEADERS: u8 = 0x4;

/// One frame's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHead {
    /// The frame type.
    pub kind: u8,
    /// Its flags.
    pub flags: u8,
    /// Its stream id (the reserved bit cleared).
    pub stream: u32,
}

/// What passing bytes completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Passed {
    /// A frame's header; its payload follows.
    Head(FrameHead),
    /// The last byte of a frame's payload (or of its header, when it has none).
    End,
}

/// Where the walk stands between frames.
#[derive(Debug, Default)]
pub struct Frames {
    head: [u8; FRAME_HEADER],
    head_len: usize,
    /// Payload bytes of the current frame still to pass.
    skip: usize,
}

impl Frames {
    /// Takes bytes from the front of `input` up to the next thing they complete: `None`
    /// once `input` is used up without one. A frame without payload gives its `Head`,
    /// then its `End` on the next call, with no byte taken.
    pub fn next(&mut self, input: &mut &[u8]) -> Option<Passed> {
        if self.head_len == FRAME_HEADER {
            // The header just given was of a frame without payload.
            self.head_len = 0;
            return Some(Passed::End);
        }
        // Bounded by `input`: each pass takes at least one byte, or returns.
        while !input.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(input.len());
                self.skip -= n;
                *input = &input[n..];
                if self.skip == 0 {
                    return Some(Passed::End);
                }
                continue;
            }
            let n = (FRAME_HEADER - self.head_len).min(input.len());
            self.head[self.head_len..self.head_len + n].copy_from_slice(&input[..n]);
            self.head_len += n;
            *input = &input[n..];
            if self.head_len == FRAME_HEADER {
                let [a, b, c, kind, flags, s0, s1, s2, s3] = self.head;
                self.skip = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c);
                if self.skip > 0 {
                    self.head_len = 0;
                }
                let stream = u32::from_be_bytes([s0 & 0x7f, s1, s2, s3]);
                return Some(Passed::Head(FrameHead { kind, flags, stream }));
            }
        }
        None
    }
}

/// Counts the header blocks (HEADERS frames) a peer sends on each stream weir opened and
/// still holds, to a limit. Weir registers a stream when it sends the stream's HEADERS
/// ([`HeaderBlocks::open`]) and forgets it when it lets the stream go
/// ([`HeaderBlocks::close`]), so the counts are bounded by weir's own streams, whatever
/// the peer sends, and the peer cannot make one forget another. A header block on a
/// stream above the highest weir opened is refused at once: no honest peer answers a
/// request before it is sent, and one counted nowhere could wait in the codec's read
/// buffer until weir opens that stream, then be queued for it uncounted. HEADERS on a
/// stream weir let go (reset or ended) are not counted: the codec drops those.
#[derive(Debug)]
pub struct HeaderBlocks {
    counts: RefCell<BTreeMap<u32, u32>>,
    /// The highest stream id opened.
    highest: Cell<u32>,
    per_stream: u32,
}

impl HeaderBlocks {
    /// Up to `per_stream` header blocks a stream.
    pub fn new(per_stream: u32) -> HeaderBlocks {
        let counts = RefCell::new(BTreeMap::new());
        HeaderBlocks { counts, highest: Cell::new(0), per_stream }
    }

    /// Weir opened `stream`: the peer may answer it.
    pub fn open(&self, stream: u32) {
        self.counts.borrow_mut().insert(stream, 0);
        self.highest.set(self.highest.get().max(stream));
    }

    /// Weir let `stream` go.
    pub fn close(&self, stream: u32) {
        self.counts.borrow_mut().remove(&stream);
    }

    /// Takes a frame's header; whether it is a header block weir must refuse: past its
    /// stream's limit, or on a stream weir has not opened yet.
    pub fn frame(&self, head: FrameHead) -> bool {
        if head.kind != HEADERS {
            return false;
        }
        if head.stream > self.highest.get() {
            return true;
        }
        let mut counts = self.counts.borrow_mut();
        let Some(count) = counts.get_mut(&head.stream) else { return false };
        *count += 1;
        *count > self.per_stream
    }

    /// Streams counted now.
    pub fn counted(&self) -> usize {
        self.counts.borrow().len()
    }
}

/// A frame on the wire, for tests of what reads frames.
#[cfg(test)]
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("a test frame is small").to_be_bytes();
    let mut out = vec![len[1], len[2], len[3], kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything `bytes` completes, fed `split` bytes at a time.
    fn walk(bytes: &[u8], split: usize) -> Vec<Passed> {
        let mut frames = Frames::default();
        let mut seen = Vec::new();
        for mut chunk in bytes.chunks(split) {
            while let Some(passed) = frames.next(&mut chunk) {
                seen.push(passed);
            }
        }
        seen
    }

    #[test]
    fn heads_and_ends_come_in_order_however_the_bytes_are_split() {
        let mut wire = frame(HEADERS, END_HEADERS, 1, b"abc");
        wire.extend(frame(SETTINGS, ACK, 0, b""));
        wire.extend(frame(DATA, END_STREAM, 0x8000_0003, &[7; 40]));
        let head = |kind, flags, stream| Passed::Head(FrameHead { kind, flags, stream });
        let expected = vec![
            head(HEADERS, END_HEADERS, 1),
            Passed::End,
            head(SETTINGS, ACK, 0),
            Passed::End,
            // The reserved bit is not part of the id.
            head(DATA, END_STREAM, 3),
            Passed::End,
        ];
        for split in [1, 2, 5, 9, 10, 13, wire.len()] {
            assert_eq!(walk(&wire, split), expected, "split {split}");
        }
    }
}
