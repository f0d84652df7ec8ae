//! The chunked transfer coding (RFC 9112 §7.1) as a resumable state machine.
//!
//! weir forwards chunked bodies as they arrive, without re-encoding, so the decoder's job
//! is to find where the message ends and to reject framing that a backend could read
//! differently (request smuggling). It is strict: chunk lines end in CRLF, sizes are hex
//! digits only, and every line is bounded.

use std::ops::Range;

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

/// Resumable chunked-body walker.
#[derive(Clone, Debug)]
pub struct Decoder {
    state: State,
    size: u64,
    digits: u32,
    line_bytes: usize,
    trailer_bytes: usize,
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
        Decoder { state: State::Size, size: 0, digits: 0, line_bytes: 0, trailer_bytes: 0 }
    }

    /// The whole body, trailers included, has been seen.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes a prefix of `input`: either a run of chunk data or framing bytes up to
    /// the next data (or the end). Stops at [`Decoder::is_done`] and never reads past it,
    /// so bytes after the body (a pipelined request) stay with the caller.
    pub fn feed(&mut self, input: &[u8]) -> Result<Step, ChunkError> {
        if let State::Data(remaining) = self.state {
            let take = remaining.min(input.len() as u64) as usize;
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
                _ => self.trailer_byte(State::TrailerLine)?,
            },
            State::TrailerLine => match byte {
                b'\r' => self.trailer_byte(State::TrailerLf)?,
                b'\n' => return Err(ChunkError::BadLineEnd),
                _ => self.trailer_byte(State::TrailerLine)?,
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

    fn trailer_byte(&mut self, next: State) -> Result<State, ChunkError> {
        self.trailer_bytes += 1;
        if self.trailer_bytes > MAX_TRAILER_BYTES {
            return Err(ChunkError::TooLong);
        }
        Ok(next)
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
    fn refuses_smuggling_shapes() {
        assert_eq!(run(b"5\nhello\r\n0\r\n\r\n", 4), Err(ChunkError::BadLineEnd));
        assert_eq!(run(b"-5\r\n", 4), Err(ChunkError::BadSize));
        assert_eq!(run(b"\r\n", 4), Err(ChunkError::BadSize));
        assert_eq!(run(b"5\r\nhelloXX0\r\n\r\n", 4), Err(ChunkError::BadLineEnd));
        assert_eq!(run(b"11111111111111111\r\n", 4), Err(ChunkError::BadSize));
        let long = format!("1;{}\r\n", "x".repeat(MAX_CHUNK_LINE_BYTES));
        assert_eq!(run(long.as_bytes(), 64), Err(ChunkError::TooLong));
    }
}
