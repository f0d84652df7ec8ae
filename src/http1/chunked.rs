//! The chunked transfer coding (RFC 9112 §7.1) as a resumable state machine.
//!
//! The decoder finds where a message ends and rejects framing that a backend could read
//! differently (request smuggling). It is strict: chunk lines end in CRLF, sizes are hex
//! digits only, and every line is bounded. [`Decoder::rewrite`] re-encodes as it walks:
//! every chunked body weir writes has canonical size lines (`HEX\r\n`, no extensions, no
//! leading zeros), as HAProxy does, because chunk-extension parsing differs between
//! servers and is a known desync vector. Data streams through; trailers pass as received.

use std::ops::Range;

use super::fields::is_tchar;

/// Longest chunk-size line weir accepts, extensions included. Real clients send a few
/// hex digits; extensions are rare and short. A bound stops a peer from streaming an
/// endless line.
pub const MAX_CHUNK_LINE_BYTES: usize = 4096;

/// Most hex digits in a chunk size: 16 fill a u64.
const MAX_SIZE_DIGITS: u32 = 16;

/// Bytes of trailer section weir accepts; the same order as a head.
pub const MAX_TRAILER_BYTES: usize = 64 * 1024;

/// Why a chunked body was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkError {
    /// A chunk-size line was malformed.
    BadSize,
    /// A line did not end in CRLF where one was required.
    BadLineEnd,
    /// A chunk line or the trailer section was over its bound.
    TooLong,
    /// A trailer line was not a well-formed field line.
    BadTrailer,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a chunk size.
    Size,
    /// Inside chunk extensions, until CR.
    Extension,
    /// Expecting LF after the size line's CR.
    SizeLf,
    /// Inside chunk data, this many bytes left.
    Data(u64),
    /// Expecting CR after chunk data.
    DataCr,
    /// Expecting LF after chunk data.
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    /// Inside a trailer field line, until CR.
    TrailerLine,
    /// Expecting LF after a trailer line's CR.
    TrailerLf,
    /// Expecting LF of the final empty line.
    EndLf,
    /// The message is complete.
    Done,
}

/// What [`Decoder::rewrite`] writes of a chunked body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rewrite {
    /// The body in canonical chunked form: size lines without extensions, trailers kept.
    Canonical,
    /// The chunk data alone, for an HTTP/1.0 client.
    DataOnly,
}

/// Resumable chunked-body walker.
#[derive(Clone, Debug)]
pub struct Decoder {
    state: State,
    size: u64,
    digits: u32,
    line_bytes: usize,
    trailer_bytes: usize,
    /// The current trailer line's colon has been seen: its name is complete.
    trailer_colon: bool,
    /// Chunk data bytes consumed so far, for a body size limit.
    data: u64,
}

/// What one call to [`Decoder::feed`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// Bytes of the input that were consumed.
    pub consumed: usize,
    /// Where chunk data lies inside the consumed part, if this step was data.
    pub data: Option<Range<usize>>,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// A decoder at the start of a body.
    pub fn new() -> Decoder {
        Decoder {
            state: State::Size,
            size: 0,
            digits: 0,
            line_bytes: 0,
            trailer_bytes: 0,
            trailer_colon: false,
            data: 0,
        }
    }

    /// Chunk data bytes consumed so far (framing not counted).
    pub fn data_bytes(&self) -> u64 {
        self.data
    }

    /// The whole body, trailers included, has been seen.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Chunk data bytes left in the current chunk, when inside chunk data: a caller that
    /// can take fewer (an HTTP/2 stream with little send capacity) feeds only those.
    pub fn data_left(&self) -> Option<u64> {
        match self.state {
            State::Data(left) => Some(left),
            _ => None,
        }
    }

    /// The next framing byte belongs to the trailer section (or its final empty line),
    /// for a caller that relays trailers in another form (HTTP/2 trailing HEADERS).
    pub fn in_trailers(&self) -> bool {
        matches!(
            self.state,
            State::TrailerStart | State::TrailerLine | State::TrailerLf | State::EndLf
        )
    }

    /// Consumes a prefix of `input`: either a run of chunk data or framing bytes up to
    /// the next data (or the end). Stops at [`Decoder::is_done`] and never reads past it,
    /// so bytes after the body (a pipelined request) stay with the caller.
    pub fn feed(&mut self, input: &[u8]) -> Result<Step, ChunkError> {
        if let State::Data(remaining) = self.state {
            let take = remaining.min(input.len() as u64) as usize;
            self.data += take as u64;
            self.state = if take as u64 == remaining {
                State::DataCr
            } else {
                State::Data(remaining - take as u64)
            };
            return Ok(Step { consumed: take, data: Some(0..take) });
        }
        let mut consumed = 0;
        while consumed < input.len() && !self.is_done() {
            self.framing_byte(input[consumed])?;
            consumed += 1;
            if matches!(self.state, State::Data(_)) {
                break;
            }
        }
        Ok(Step { consumed, data: None })
    }

    /// Consumes as much of `input` as belongs to the body and appends its rewritten form
    /// to `out`; returns the bytes consumed. Over a body it never writes more than it
    /// consumes (a canonical size line is no longer than the one it replaces); one call
    /// writes at most one size line (18 bytes) more, when that line began in an earlier
    /// call. So `out` stays bounded by the input buffer. Bytes after the body stay with
    /// the caller.
    pub fn rewrite(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        mode: Rewrite,
    ) -> Result<usize, ChunkError> {
        let mut pos = 0;
        // Bounded: every step consumes at least one byte until done or the end.
        while pos < input.len() && !self.is_done() {
            if let State::Data(_) = self.state {
                let step = self.feed(&input[pos..])?;
                out.extend_from_slice(&input[pos..pos + step.consumed]);
                pos += step.consumed;
                continue;
            }
            let (before, size, byte) = (self.state, self.size, input[pos]);
            self.framing_byte(byte)?;
            pos += 1;
            if mode == Rewrite::Canonical {
                canonical_framing(before, size, byte, out);
            }
        }
        Ok(pos)
    }

    fn framing_byte(&mut self, byte: u8) -> Result<(), ChunkError> {
        self.line_bytes += 1;
        if self.line_bytes > MAX_CHUNK_LINE_BYTES {
            return Err(ChunkError::TooLong);
        }
        self.state = match self.state {
            State::Size => self.size_byte(byte)?,
            State::Extension => match byte {
                b'\r' => State::SizeLf,
                b'\n' => return Err(ChunkError::BadLineEnd),
                _ => State::Extension,
            },
            State::SizeLf => self.size_line_end(byte)?,
            State::DataCr => expect(byte, b'\r', State::DataLf)?,
            State::DataLf => {
                self.line_bytes = 0;
                expect(byte, b'\n', State::Size)?
            }
            State::TrailerStart => match byte {
                b'\r' => State::EndLf,
                b'\n' => return Err(ChunkError::BadLineEnd),
                _ => {
                    self.trailer_colon = false;
                    self.trailer_field_byte(byte)?
                }
            },
            State::TrailerLine => match byte {
                b'\r' if self.trailer_colon => self.trailer_byte(State::TrailerLf)?,
                b'\r' => return Err(ChunkError::BadTrailer),
                b'\n' => return Err(ChunkError::BadLineEnd),
                _ => self.trailer_field_byte(byte)?,
            },
            State::TrailerLf => {
                self.line_bytes = 0;
                expect(byte, b'\n', State::TrailerStart)?
            }
            State::EndLf => expect(byte, b'\n', State::Done)?,
            State::Data(_) | State::Done => {
                debug_assert!(false, "framing_byte called in {:?}", self.state);
                self.state
            }
        };
        Ok(())
    }

    fn size_byte(&mut self, byte: u8) -> Result<State, ChunkError> {
        let digit = match byte {
            b'0'..=b'9' => byte - b'0',
            b'a'..=b'f' => byte - b'a' + 10,
            b'A'..=b'F' => byte - b'A' + 10,
            b';' | b' ' | b'\t' if self.digits > 0 => return Ok(State::Extension),
            b'\r' if self.digits > 0 => return Ok(State::SizeLf),
            b'\n' => return Err(ChunkError::BadLineEnd),
            _ => return Err(ChunkError::BadSize),
        };
        self.digits += 1;
        if self.digits > MAX_SIZE_DIGITS {
            return Err(ChunkError::BadSize);
        }
        self.size = (self.size << 4) | u64::from(digit);
        Ok(State::Size)
    }

    fn size_line_end(&mut self, byte: u8) -> Result<State, ChunkError> {
        if byte != b'\n' {
            return Err(ChunkError::BadLineEnd);
        }
        let size = self.size;
        self.size = 0;
        self.digits = 0;
        self.line_bytes = 0;
        Ok(if size == 0 { State::TrailerStart } else { State::Data(size) })
    }

    /// One byte of a trailer field line, CR aside: the line is `token ":" value` as in a
    /// head (RFC 9110 §5.1, §5.5), so no backend can read a trailer line differently
    /// from weir. Refused: a line that starts with white space (obs-fold), a name with
    /// a byte outside `tchar`, a line with no colon, and control bytes other than HTAB
    /// in the value.
    fn trailer_field_byte(&mut self, byte: u8) -> Result<State, ChunkError> {
        let ok = if self.trailer_colon {
            byte == b'\t' || (byte >= b' ' && byte != 0x7f)
        } else if byte == b':' {
            // An empty name: the colon opens the line.
            let named = self.state == State::TrailerLine;
            self.trailer_colon = true;
            named
        } else {
            is_tchar(byte)
        };
        if !ok {
            return Err(ChunkError::BadTrailer);
        }
        self.trailer_byte(State::TrailerLine)
    }

    fn trailer_byte(&mut self, next: State) -> Result<State, ChunkError> {
        self.trailer_bytes += 1;
        if self.trailer_bytes > MAX_TRAILER_BYTES {
            return Err(ChunkError::TooLong);
        }
        Ok(next)
    }
}

/// Appends what the canonical form has for one framing byte, `byte`, read in state
/// `before`; `size` is the chunk size read before it. A size line is written whole at its
/// LF, a chunk's CRLF byte by byte, trailer bytes as they come.
fn canonical_framing(before: State, size: u64, byte: u8, out: &mut Vec<u8>) {
    match before {
        State::SizeLf => {
            let digits = (u64::BITS - size.leading_zeros()).div_ceil(4).max(1);
            for shift in (0..digits).rev() {
                out.push(b"0123456789abcdef"[(size >> (shift * 4) & 0xf) as usize]);
            }
            out.extend_from_slice(b"\r\n");
        }
        State::DataCr
        | State::DataLf
        | State::TrailerStart
        | State::TrailerLine
        | State::TrailerLf
        | State::EndLf => out.push(byte),
        _ => {}
    }
}

fn expect(byte: u8, wanted: u8, next: State) -> Result<State, ChunkError> {
    if byte == wanted {
        Ok(next)
    } else {
        Err(ChunkError::BadLineEnd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes; returns (data, consumed) or the error.
    fn run(input: &[u8], step: usize) -> Result<(Vec<u8>, usize), ChunkError> {
        let mut decoder = Decoder::new();
        let mut data = Vec::new();
        let mut pos = 0;
        while pos < input.len() && !decoder.is_done() {
            let end = (pos + step).min(input.len());
            let out = decoder.feed(&input[pos..end])?;
            if let Some(range) = out.data {
                data.extend_from_slice(&input[pos + range.start..pos + range.end]);
            }
            pos += out.consumed;
        }
        assert!(decoder.is_done(), "body incomplete");
        Ok((data, pos))
    }

    #[test]
    fn decodes_chunks_trailers_and_stops_at_the_end() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Sum: 1\r\n\r\nGET / HTTP/1.1";
        for step in [1, 2, 3, 7, 100] {
            let (data, consumed) = run(body, step).unwrap();
            assert_eq!(data, b"hello world");
            assert_eq!(&body[consumed..], b"GET / HTTP/1.1");
        }
    }

    #[test]
    fn trailers_must_be_field_lines() {
        let ok = b"0\r\nX-Sum: 1\t2\r\nEmpty:\r\n\r\n";
        assert_eq!(run(ok, 3).map(|(_, n)| n), Ok(ok.len()));
        for bad in [
            &b"0\r\n folded: 1\r\n\r\n"[..],
            b"0\r\n\tX: 1\r\n\r\n",
            b"0\r\nno colon\r\n\r\n",
            b"0\r\nX-Sum 1\r\n\r\n",
            b"0\r\n: empty name\r\n\r\n",
            b"0\r\nX\x00: 1\r\n\r\n",
            b"0\r\nX: a\x00b\r\n\r\n",
            b"0\r\nX: a\x0bb\r\n\r\n",
            b"0\r\nX: a\x7f\r\n\r\n",
            b"0\r\nGET /smuggled HTTP/1.1\r\n\r\n",
        ] {
            for step in [1, 4, 100] {
                assert_eq!(run(bad, step), Err(ChunkError::BadTrailer), "{bad:?}");
            }
        }
    }

    #[test]
    fn refuses_smuggling_shapes() {
        assert_eq!(run(b"5\nhello\r\n0\r\n\r\n", 4), Err(ChunkError::BadLineEnd));
        assert_eq!(run(b"-5\r\n", 4), Err(ChunkError::BadSize));
        assert_eq!(run(b"\r\n", 4), Err(ChunkError::BadSize));
        assert_eq!(run(b"5\r\nhelloXX0\r\n\r\n", 4), Err(ChunkError::BadLineEnd));
        assert_eq!(run(b"11111111111111111\r\n", 4), Err(ChunkError::BadSize));
        let long = format!("1;{}\r\n", "x".repeat(MAX_CHUNK_LINE_BYTES));
        assert_eq!(run(long.as_bytes(), 64), Err(ChunkError::TooLong));
    }

    /// Feeds `input` in pieces of `step` bytes through [`Decoder::rewrite`]; returns the
    /// output and the bytes consumed.
    fn rewrite_all(
        input: &[u8],
        step: usize,
        mode: Rewrite,
    ) -> Result<(Vec<u8>, usize), ChunkError> {
        let mut decoder = Decoder::new();
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < input.len() && !decoder.is_done() {
            let end = (pos + step).min(input.len());
            let before = out.len();
            let consumed = decoder.rewrite(&input[pos..end], &mut out, mode)?;
            assert!(out.len() - before <= consumed + 18, "one call wrote too much");
            assert!(consumed > 0, "no progress");
            pos += consumed;
            assert!(out.len() <= pos, "the output outgrew the input");
        }
        assert!(decoder.is_done(), "body incomplete");
        Ok((out, pos))
    }

    #[test]
    fn rewrites_size_lines_canonically_and_keeps_data_and_trailers() {
        let body = b"8;name=value\r\nabcdefgh\r\n00A; a=\"b;c\"\r\n0123456789\r\n\
0;last=1\r\nX-Sum: 9\r\nX-B:  2\r\n\r\nGET / HTTP/1.1";
        let canonical = b"8\r\nabcdefgh\r\na\r\n0123456789\r\n0\r\nX-Sum: 9\r\nX-B:  2\r\n\r\n";
        for step in [1, 2, 3, 5, 7, 64, 1000] {
            let (out, consumed) = rewrite_all(body, step, Rewrite::Canonical).unwrap();
            assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(canonical), "{step}");
            assert_eq!(&body[consumed..], b"GET / HTTP/1.1");
            let (data, _) = rewrite_all(body, step, Rewrite::DataOnly).unwrap();
            assert_eq!(data, b"abcdefgh0123456789");
        }
        let (out, _) = rewrite_all(b"0\r\n\r\n", 1, Rewrite::Canonical).unwrap();
        assert_eq!(out, b"0\r\n\r\n");
        let big = b"FFFFFFFF;x\r\n";
        let mut decoder = Decoder::new();
        let mut out = Vec::new();
        assert_eq!(decoder.rewrite(big, &mut out, Rewrite::Canonical), Ok(big.len()));
        assert_eq!(out, b"ffffffff\r\n");
    }

    #[test]
    fn rewriting_refuses_what_decoding_refuses() {
        for bad in [&b"5\nhello\r\n0\r\n\r\n"[..], b"-5\r\n", b"5\r\nhelloXX0\r\n\r\n"] {
            assert!(rewrite_all(bad, 3, Rewrite::Canonical).is_err());
        }
    }
}
