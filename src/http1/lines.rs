//! The head writers of both directions: [`push_field`], [`push_line`] and
//! [`append_lines`] write new lines, and [`Lines`] copies received lines into a rewritten
//! head, one copy per run of adjacent lines.
//!
//! Most heads pass through with a field or two removed, and the kept lines sit next to
//! each other in the input buffer. Copying each run of adjacent, unchanged lines with one
//! `memcpy` instead of one per line (plus one per CRLF) took a few hundred instructions
//! off every proxied request (issue #3). A line is copied raw only when the bytes in the
//! buffer are exactly what weir would write for it: value not empty and followed by CRLF.
//! Anything else (trailing white space, bare LF, empty value) goes through
//! [`push_line`], which normalises it.

use std::ops::Range;

use super::fields::{decimal, MAX_DECIMAL_DIGITS};
use super::offset_in;

/// A head being written from received lines; see the module docs.
pub struct Lines<'b, 'o> {
    /// The buffer httparse parsed the lines from.
    buf: &'b [u8],
    /// The head being written.
    out: &'o mut Vec<u8>,
    /// Bytes of `buf` that are kept but not copied into `out` yet; empty when none.
    run: Range<usize>,
}

impl<'b, 'o> Lines<'b, 'o> {
    /// Writes after whatever `out` holds already.
    pub fn new(buf: &'b [u8], out: &'o mut Vec<u8>) -> Self {
        Lines { buf, out, run: 0..0 }
    }

    /// Keeps `buf[range]`, whole lines that weir forwards unchanged (a start line that
    /// already reads as weir would write it).
    #[inline]
    pub fn keep_raw(&mut self, range: Range<usize>) {
        debug_assert!(range.end <= self.buf.len() && self.buf[..range.end].ends_with(b"\r\n"));
        if range.start != self.run.end {
            self.flush();
            self.run.start = range.start;
        }
        self.run.end = range.end;
    }

    /// Keeps one received field line. Always inlined: once the compiler left it out of
    /// line, and the call doubled its cost per field (issue #3).
    #[inline(always)]
    pub fn keep(&mut self, header: &httparse::Header<'_>) {
        let (name, value) = (header.name.as_bytes(), header.value);
        let start = offset_in(self.buf, name);
        // An empty value may not point into `buf` at all, so it is never raw; hence the
        // check before `offset_in`.
        let end = if value.is_empty() { 0 } else { offset_in(self.buf, value) + value.len() };
        if end > start + name.len() && matches!(self.buf.get(end..end + 2), Some(b"\r\n")) {
            self.keep_raw(start..end + 2);
        } else {
            self.keep_normalised(header);
        }
    }

    /// Keeps a framing field that must read `name: value`: the received line when it
    /// already does (any name case, one white space after the colon), else that line.
    #[inline]
    pub fn keep_as(&mut self, header: &httparse::Header<'_>, name: &[u8], value: &[u8]) {
        let received = header.name.as_bytes();
        // An empty value may not point into `buf`, hence the check before `offset_in`.
        let canonical = header.value == value
            && !value.is_empty()
            && offset_in(self.buf, header.value) == offset_in(self.buf, received) + name.len() + 2;
        if canonical && received.len() == name.len() {
            self.keep(header);
        } else {
            push_field(self.flush(), name, value);
        }
    }

    /// Keeps the `Content-Length` field that stands for a message's, whose value reads
    /// `length`: as received when it is one plain number (the common case, and then it
    /// is `length`), else as `Content-Length: length`. Checking the digits costs less
    /// than formatting the number for every message.
    #[inline]
    pub fn keep_length(&mut self, header: &httparse::Header<'_>, length: u64) {
        let value = header.value;
        let plain =
            matches!(value, [b'1'..=b'9', ..] | [b'0']) && value.iter().all(u8::is_ascii_digit);
        if plain {
            debug_assert_eq!(super::fields::content_length(value), Some(length));
            self.keep(header);
        } else {
            let mut digits = [0; MAX_DECIMAL_DIGITS];
            push_field(self.flush(), b"Content-Length", decimal(length, &mut digits));
        }
    }

    /// Keeps a line whose bytes are not what weir writes (see [`push_line`]).
    #[cold]
    #[inline(never)]
    fn keep_normalised(&mut self, header: &httparse::Header<'_>) {
        self.flush();
        push_line(self.out, self.buf, header);
    }

    /// Copies the pending run; afterwards `out` holds every line kept so far.
    pub fn flush(&mut self) -> &mut Vec<u8> {
        if !self.run.is_empty() {
            let run = std::mem::replace(&mut self.run, 0..0);
            self.out.extend_from_slice(&self.buf[run]);
        }
        self.out
    }
}

/// Inserts `, value` at `at` in `out`, which is the end of a field value already written
/// (the last `X-Forwarded-For`): one shift of the bytes after it, no allocation beyond
/// `out`'s own growth.
pub fn append_to_value(out: &mut Vec<u8>, at: usize, value: &[u8]) {
    debug_assert!(out[at..].starts_with(b"\r\n"));
    let len = out.len();
    let extra = 2 + value.len();
    out.resize(len + extra, 0);
    out.copy_within(at..len, at + extra);
    out[at..at + 2].copy_from_slice(b", ");
    out[at + 2..at + extra].copy_from_slice(value);
}

/// Appends `name: value\r\n`.
pub fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends a received field line as it arrived (name, colon, white space, value; the
/// line's own trailing white space and line ending are normalised to CRLF): one copy
/// instead of four. `buf` is the buffer httparse parsed `header` from.
pub fn push_line(out: &mut Vec<u8>, buf: &[u8], header: &httparse::Header<'_>) {
    let (name, value) = (header.name.as_bytes(), header.value);
    let start = offset_in(buf, name);
    let end = offset_in(buf, value) + value.len();
    // An empty value may not point into `buf` at all.
    let line = buf.get(start..end).filter(|_| !value.is_empty() && end > start + name.len());
    match line {
        Some(line) => {
            debug_assert!(line.starts_with(name) && line.ends_with(value));
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
        }
        None => push_field(out, name, value),
    }
}

/// Adds whole field lines (`Name: value\r\n`, possibly several) to a finished head, before
/// the empty line that ends it.
pub fn append_lines(head: &mut Vec<u8>, lines: &[u8]) {
    debug_assert!(head.ends_with(b"\r\n\r\n"));
    debug_assert!(lines.is_empty() || lines.ends_with(b"\r\n"));
    if lines.is_empty() || !head.ends_with(b"\r\n\r\n") {
        return;
    }
    head.truncate(head.len() - 2);
    head.extend_from_slice(lines);
    head.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(buf: &[u8]) -> Vec<httparse::Header<'_>> {
        let mut slots = [httparse::EMPTY_HEADER; 16];
        let mut response = httparse::Response::new(&mut slots);
        assert!(response.parse(buf).unwrap().is_complete());
        response.headers.to_vec()
    }

    #[test]
    fn adjacent_clean_lines_are_one_run_and_others_are_normalised() {
        let buf =
            b"HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nSkip: x\r\nC: 3  \r\nD:\r\nE: 5\nF: 6\r\n\r\n";
        let fields = fields(buf);
        let mut out = b"start\r\n".to_vec();
        let mut lines = Lines::new(buf, &mut out);
        for field in fields.iter().filter(|f| f.name != "Skip") {
            lines.keep(field);
        }
        lines.flush();
        assert_eq!(out, b"start\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: \r\nE: 5\r\nF: 6\r\n");
    }

    #[test]
    fn raw_start_line_joins_the_following_run() {
        let buf = b"HTTP/1.1 200 OK\r\nA: 1\r\n\r\n";
        let fields = fields(buf);
        let mut out = Vec::new();
        let mut lines = Lines::new(buf, &mut out);
        lines.keep_raw(0..17);
        lines.keep(&fields[0]);
        assert_eq!(lines.run, 0..buf.len() - 2, "one run, not copied yet");
        lines.flush().extend_from_slice(b"\r\n");
        assert_eq!(out, buf);
    }

    #[test]
    fn framing_fields_are_kept_only_in_canonical_form() {
        let buf = b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nContent-Length: 012\r\n\
content-length: 1, 1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding:  Chunked\r\n\r\n";
        let fields = fields(buf);
        let mut out = Vec::new();
        let mut lines = Lines::new(buf, &mut out);
        lines.keep_length(&fields[0], 12);
        lines.keep_length(&fields[1], 12);
        lines.keep_length(&fields[2], 1);
        lines.keep_as(&fields[3], b"Transfer-Encoding", b"chunked");
        lines.keep_as(&fields[4], b"Transfer-Encoding", b"chunked");
        lines.flush();
        let expected = "Content-Length: 12\r\nContent-Length: 12\r\nContent-Length: 1\r\n\
Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n";
        assert_eq!(String::from_utf8_lossy(&out), expected);
    }

    #[test]
    fn append_to_value_shifts_the_rest() {
        let mut out = b"X-Forwarded-For: 1.1.1.1\r\nX-B: 2\r\n".to_vec();
        append_to_value(&mut out, 24, b"10.0.0.1");
        assert_eq!(out, b"X-Forwarded-For: 1.1.1.1, 10.0.0.1\r\nX-B: 2\r\n");
    }

    #[test]
    fn append_lines_goes_before_the_end_of_the_head() {
        let mut head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec();
        append_lines(&mut head, b"X-A: 1\r\nX-B: 2\r\n");
        assert_eq!(head, b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nX-B: 2\r\n\r\n");
        append_lines(&mut head, b"");
        assert!(head.ends_with(b"X-B: 2\r\n\r\n"));
    }
}
