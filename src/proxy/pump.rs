//! Streams one message body from a buffered reader to a writer, by its framing.
//!
//! Bytes already read (after a head) are taken from the buffer first, then the source is
//! read in bounded pieces, each written out before the next read: memory stays at one
//! buffer whatever the body size, and a slow reader slows the writer (backpressure).

use std::io;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::io::Writer;
use super::timer::lazy_timeout;
use crate::http1::chunked::{ChunkError, Decoder, Rewrite};
use crate::http1::BodyKind;

/// Bytes asked of the source per read. 32 KiB keeps syscalls per MiB low (32) while a
/// thousand busy connections hold at most 32 MiB of buffers.
pub const READ_CHUNK_BYTES: usize = 32 * 1024;
/// A body's first read asks for no more than this: the smallest buffer a request
/// starts with (the client input's 4 KiB), so a small body is read without growing it.
const FIRST_READ_BYTES: usize = 4 * 1024;

/// Why a body stopped before its end.
#[derive(Debug)]
pub enum PumpError {
    /// Reading the source failed.
    Read(io::Error),
    /// The source sent nothing for the idle timeout.
    ReadTimeout,
    /// The source closed before the framing said the body ended.
    Eof,
    /// Writing to the destination failed, or took no byte for the send timeout.
    Write(io::Error),
    /// The chunked framing was invalid.
    Framing(ChunkError),
    /// The body passed the pump's `limit` (a route's `max_body`); nothing past the
    /// buffer that crossed it was written.
    TooLarge,
}

/// A bounded copy of the bytes sent, so a request can be replayed on a fresh connection.
#[derive(Debug, Default)]
pub struct Capture {
    /// The bytes, while under the limit.
    pub bytes: Vec<u8>,
    /// More than the limit passed; the copy is useless.
    pub overflow: bool,
    /// The limit in bytes.
    pub limit: usize,
}

impl Capture {
    fn record(&mut self, bytes: &[u8]) {
        if self.overflow {
            return;
        }
        if self.bytes.len() + bytes.len() > self.limit {
            self.overflow = true;
            self.bytes = Vec::new();
        } else {
            self.bytes.extend_from_slice(bytes);
        }
    }
}

/// Where a body is.
enum Progress {
    Remaining(u64),
    Chunked(Decoder),
    UntilClose,
}

impl Progress {
    fn is_done(&self) -> bool {
        match self {
            Progress::Remaining(n) => *n == 0,
            Progress::Chunked(decoder) => decoder.is_done(),
            Progress::UntilClose => false,
        }
    }
}

/// One body transfer. `staged` holds bytes to send before the body (a head); they go out
/// with the first body bytes in one write.
pub struct Pump<'a> {
    /// Body framing.
    pub kind: BodyKind,
    /// Strip chunk framing (for an HTTP/1.0 client).
    pub dechunk: bool,
    /// Longest wait for the source to send a byte: a source that stops sending cannot
    /// hold the transfer open forever. It runs only while weir waits on the source, never
    /// while a slow destination drains what was read.
    pub idle_timeout: Duration,
    /// Longest time a write may make no progress: a destination that stops taking bytes
    /// is given up on, one that takes them slowly but steadily is not.
    pub send_timeout: Duration,
    /// Bytes written to the destination so far, staged bytes included: what the peer
    /// got, even when the transfer fails.
    pub written: u64,
    /// Bytes to send first (cleared once sent).
    pub staged: &'a mut Vec<u8>,
    /// Optional replay copy of what was written.
    pub capture: Option<&'a mut Capture>,
    /// Most body data bytes (a request's `max_body`): a chunked body that grows past
    /// it stops with [`PumpError::TooLarge`]. A length-delimited one was checked
    /// against it before the pump started.
    pub limit: Option<u64>,
}

impl Pump<'_> {
    /// Runs the transfer. Bytes after the body stay in `buf`.
    pub async fn run<R, W>(
        &mut self,
        buf: &mut BytesMut,
        src: &mut R,
        dst: &mut W,
    ) -> Result<u64, PumpError>
    where
        R: AsyncRead + Unpin,
        W: Writer,
    {
        let mut progress = match self.kind {
            BodyKind::Empty => Progress::Remaining(0),
            BodyKind::Length(n) => Progress::Remaining(n),
            BodyKind::Chunked => Progress::Chunked(Decoder::new()),
            BodyKind::UntilClose => Progress::UntilClose,
        };
        let mut total = 0u64;
        let mut filled = false;
        loop {
            if !buf.is_empty() {
                let consumed = self.take(&mut progress, buf)?;
                total += consumed as u64;
                self.send(&buf[..consumed], dst).await?;
                buf.advance(consumed);
            }
            if progress.is_done() {
                self.flush(dst).await?;
                return Ok(total);
            }
            // `take` consumes everything buffered until the body ends, so a body that is
            // not done has nothing left in the buffer: the loop always reads next.
            debug_assert!(buf.is_empty());
            // Staged bytes go out before weir waits for more: a client that sent
            // `Expect: 100-continue` sends no body until the backend has seen the head.
            self.flush(dst).await?;
            // The first read takes what the buffer holds; only a body that fills it
            // grows it to `READ_CHUNK_BYTES`. Reserving that much for every body grew
            // (and copied) both buffers of a small call and left them too big for the
            // worker's free list: 2 allocations and 5,800 bytes copied a request.
            let want = if filled { READ_CHUNK_BYTES } else { FIRST_READ_BYTES };
            buf.reserve(want);
            let room = buf.capacity() - buf.len();
            let read = lazy_timeout(self.idle_timeout, src.read_buf(buf));
            let n = read.await.map_err(|_| PumpError::ReadTimeout)?.map_err(PumpError::Read)?;
            // Once a read filled the buffer the body is a large one: it keeps 32 KiB reads.
            filled |= n == room;
            if n == 0 {
                if matches!(progress, Progress::UntilClose) {
                    self.flush(dst).await?;
                    if W::ENDS_BODY_ON_SHUTDOWN {
                        dst.shutdown().await.map_err(PumpError::Write)?;
                    }
                    return Ok(total);
                }
                return Err(PumpError::Eof);
            }
        }
    }

    /// How many buffered bytes belong to the body; stages de-chunked data if asked.
    fn take(&mut self, progress: &mut Progress, buf: &[u8]) -> Result<usize, PumpError> {
        Ok(match progress {
            Progress::Remaining(remaining) => {
                let take = (*remaining).min(buf.len() as u64);
                *remaining -= take;
                take as usize
            }
            Progress::UntilClose => buf.len(),
            Progress::Chunked(decoder) => {
                // Every chunked body weir writes is re-encoded (canonical size lines, or
                // the data alone for an HTTP/1.0 client) into `staged`, which `send`
                // writes; at most the buffered bytes plus one size line.
                let mode = if self.dechunk { Rewrite::DataOnly } else { Rewrite::Canonical };
                let start = self.staged.len();
                let used = decoder.rewrite(buf, self.staged, mode).map_err(PumpError::Framing)?;
                if self.limit.is_some_and(|limit| decoder.data_bytes() > limit) {
                    self.staged.truncate(start);
                    return Err(PumpError::TooLarge);
                }
                if let Some(capture) = self.capture.as_deref_mut() {
                    capture.record(&self.staged[start..]);
                }
                used
            }
        })
    }

    async fn send<W: Writer>(&mut self, bytes: &[u8], dst: &mut W) -> Result<(), PumpError> {
        if self.kind == BodyKind::Chunked {
            // `take` staged (and recorded) the re-encoded body instead of `bytes`.
            return self.flush(dst).await;
        }
        if let Some(capture) = self.capture.as_deref_mut() {
            capture.record(bytes);
        }
        if self.staged.is_empty() {
            return write_counted(dst, bytes, self.send_timeout, &mut self.written).await;
        }
        self.staged.extend_from_slice(bytes);
        self.flush(dst).await
    }

    /// Writes the staged bytes, if any.
    pub async fn flush<W: Writer>(&mut self, dst: &mut W) -> Result<(), PumpError> {
        if !self.staged.is_empty() {
            let written = &mut self.written;
            write_counted(dst, self.staged, self.send_timeout, written).await?;
            self.staged.clear();
        }
        Ok(())
    }
}

/// Writes all of `bytes` (flushed), failing if the destination takes no byte for
/// `stall`. Each write that makes progress starts the wait again, as nginx's
/// `send_timeout` does ("between two successive write operations"), so a slow but
/// steady reader is never cut however long the whole write takes.
pub async fn write_all<W: Writer>(
    dst: &mut W,
    bytes: &[u8],
    stall: Duration,
) -> Result<(), PumpError> {
    write_counted(dst, bytes, stall, &mut 0).await
}

/// [`write_all`], adding to `written` each byte the destination took, also on failure.
async fn write_counted<W: Writer>(
    dst: &mut W,
    mut bytes: &[u8],
    stall: Duration,
    written: &mut u64,
) -> Result<(), PumpError> {
    let stalled = |_| PumpError::Write(io::Error::new(io::ErrorKind::TimedOut, "write stalled"));
    // Bounded: each pass writes at least one byte, or fails.
    while !bytes.is_empty() {
        let n = lazy_timeout(stall, dst.write(bytes)).await.map_err(stalled)?;
        let n = n.map_err(PumpError::Write)?;
        if n == 0 {
            return Err(PumpError::Write(io::ErrorKind::WriteZero.into()));
        }
        *written += n as u64;
        bytes = &bytes[n..];
    }
    if W::BUFFERS {
        lazy_timeout(stall, dst.flush()).await.map_err(stalled)?.map_err(PumpError::Write)?;
    }
    Ok(())
}
