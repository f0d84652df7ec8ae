//! The access log: one line per request, written by a dedicated thread.
//!
//! The request path hands an [`Entry`] to [`AccessLog::log`], which never blocks: it
//! puts the entry in a bounded channel, or counts it as dropped when the channel is full
//! (a stalled disk or a slow stdout reader must not stall traffic). The writer thread
//! formats lines ([`Format::Combined`] or [`Format::Json`]), batches them in a buffer and
//! flushes whenever the channel runs empty. [`AccessLog::reopen`] (SIGUSR1) makes the
//! writer reopen the file before its next line, so logrotate can move the old one away.

mod format;

pub use crate::config::{Format, Target};

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// Entries waiting for the writer. At 50,000 requests/s this absorbs a third of a second
/// of stalled output; an entry with its strings is about 250 bytes, so a full channel
/// holds about 4 MiB. Past it, lines are dropped and counted, never waited for.
pub const CHANNEL_LINES: usize = 16_384;

/// The strings of waiting entries, at most: four times what [`CHANNEL_LINES`] typical
/// entries hold. An entry carries its target, `Referer` and `User-Agent` whole, up to
/// `max_header_bytes` (64 KiB) each, so lines alone would let a stalled log hold GiBs of
/// long URLs; past this, lines are dropped and counted as for a full channel.
pub const QUEUED_BYTES: usize = 16 * 1024 * 1024;

/// Buffered output of the writer thread, flushed whenever the channel runs empty.
const WRITE_BUFFER_BYTES: usize = 64 * 1024;

/// One request, as the access log records it.
#[derive(Clone, Debug)]
pub struct Entry {
    /// When the request arrived.
    pub time: SystemTime,
    /// The client's address.
    pub client: SocketAddr,
    /// Request method.
    pub method: String,
    /// Request target as sent (path and query).
    pub path: String,
    /// The request's protocol: 0 for HTTP/1.0, 1 for HTTP/1.1, 2 for HTTP/2.0 (see
    /// [`Entry::protocol`]).
    pub version: u8,
    /// Status sent to the client.
    pub status: u16,
    /// Request body bytes received from the client.
    pub bytes_in: u64,
    /// Response bytes sent to the client.
    pub bytes_out: u64,
    /// From the first byte of the request to the last byte of the response.
    pub total: Duration,
    /// From the backend pick to the end of the response, when a backend was involved.
    pub upstream: Option<Duration>,
    /// The backend (`HOST:PORT`) that answered, or was tried last.
    pub backend: Option<String>,
    /// The pool the request was routed to.
    pub pool: Option<String>,
    /// Retries on another connection or backend.
    pub retries: u32,
    /// Why weir answered with its own error, if it did.
    pub error: Option<&'static str>,
    /// The `Referer` header.
    pub referer: Option<String>,
    /// The `User-Agent` header.
    pub user_agent: Option<String>,
    /// The request's id (`[server] request_id`), when ids are on.
    pub request_id: Option<String>,
}

impl Entry {
    /// The bytes of its strings, as counted against [`QUEUED_BYTES`].
    fn text_bytes(&self) -> usize {
        let optional =
            [&self.backend, &self.pool, &self.referer, &self.user_agent, &self.request_id];
        let optional: usize = optional.iter().map(|s| s.as_ref().map_or(0, String::len)).sum();
        self.method.len() + self.path.len() + optional
    }

    /// The protocol as the request line names it: `HTTP/1.0`, `HTTP/1.1` or `HTTP/2.0`.
    pub fn protocol(&self) -> &'static str {
        match self.version {
            0 => "HTTP/1.0",
            2 => "HTTP/2.0",
            _ => "HTTP/1.1",
        }
    }

    /// An entry stamped now, with status 0, no bytes, no backend and HTTP/1.1; the
    /// caller fills in the rest.
    pub fn new(client: SocketAddr, method: &str, path: &str) -> Entry {
        Entry {
            time: SystemTime::now(),
            client,
            method: method.to_string(),
            path: path.to_string(),
            version: 1,
            status: 0,
            bytes_in: 0,
            bytes_out: 0,
            total: Duration::ZERO,
            upstream: None,
            backend: None,
            pool: None,
            retries: 0,
            error: None,
            referer: None,
            user_agent: None,
            request_id: None,
        }
    }
}

impl Flags {
    fn new(most_queued: usize) -> Flags {
        let (dropped, reopen, queued) =
            (AtomicU64::new(0), AtomicBool::new(false), AtomicUsize::new(0));
        Flags { dropped, reopen, queued, most_queued }
    }
}

/// What the writer thread receives: a line, or `None` to flush and stop
/// ([`AccessLog::close`]). Entries travel unboxed, so queueing one allocates nothing.
type Message = Option<Entry>;

/// Poll interval of [`AccessLog::close`] while it waits for the writer.
const CLOSE_POLL: Duration = Duration::from_millis(5);

/// State shared by the loggers and the writer thread.
#[derive(Debug)]
struct Flags {
    dropped: AtomicU64,
    reopen: AtomicBool,
    /// The strings of the entries in the channel ([`Entry::text_bytes`]).
    queued: AtomicUsize,
    /// Most of them ([`QUEUED_BYTES`]).
    most_queued: usize,
}

/// A running access log. Share it by reference (it is `Sync`). Dropping it lets the
/// writer finish the queued lines in the background; [`AccessLog::close`] waits for it.
pub struct AccessLog {
    sender: Option<SyncSender<Message>>,
    flags: Arc<Flags>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog").field("enabled", &self.is_enabled()).finish()
    }
}

impl AccessLog {
    /// Starts logging to `target` in `format`. A file is opened here, so a bad path
    /// fails at startup rather than at the first request.
    pub fn start(target: Target, format: Format) -> io::Result<AccessLog> {
        let sink = match target {
            Target::Off => return Ok(AccessLog::off()),
            Target::Stdout => Sink::new(Box::new(io::stdout()), None),
            Target::Path(path) => Sink::new(Box::new(open(&path)?), Some(path)),
        };
        AccessLog::start_sink(sink, format, CHANNEL_LINES, QUEUED_BYTES)
    }

    /// A log that records nothing.
    pub fn off() -> AccessLog {
        AccessLog { sender: None, flags: Arc::new(Flags::new(0)), writer: Mutex::new(None) }
    }

    fn start_sink(sink: Sink, format: Format, lines: usize, bytes: usize) -> io::Result<AccessLog> {
        let (sender, receiver) = mpsc::sync_channel(lines);
        let flags = Arc::new(Flags::new(bytes));
        let writer_flags = Arc::clone(&flags);
        let writer = std::thread::Builder::new()
            .name("weir-access-log".into())
            .spawn(move || write_loop(&receiver, sink, format, &writer_flags))?;
        Ok(AccessLog { sender: Some(sender), flags, writer: Mutex::new(Some(writer)) })
    }

    /// Whether lines are written at all; the request path may skip building entries
    /// when not.
    pub fn is_enabled(&self) -> bool {
        self.sender.is_some()
    }

    /// Queues one line. Never blocks: when the channel is full the line is dropped and
    /// counted in [`AccessLog::dropped`].
    pub fn log(&self, entry: Entry) {
        let Some(sender) = &self.sender else { return };
        let bytes = entry.text_bytes();
        let queued = self.flags.queued.fetch_add(bytes, Ordering::Relaxed);
        let sent = queued + bytes <= self.flags.most_queued && sender.try_send(Some(entry)).is_ok();
        if !sent {
            self.flags.queued.fetch_sub(bytes, Ordering::Relaxed);
            self.flags.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Lines dropped because the channel was full (or the writer had died).
    pub fn dropped(&self) -> u64 {
        self.flags.dropped.load(Ordering::Relaxed)
    }

    /// Asks the writer to reopen the file before its next line (SIGUSR1, for logrotate).
    /// Does nothing for stdout.
    pub fn reopen(&self) {
        self.flags.reopen.store(true, Ordering::Release);
    }

    /// Writes and flushes every line queued so far, then stops the writer; lines logged
    /// afterwards count as dropped. Waits at most `limit` (a stalled disk must not hang
    /// shutdown) and returns whether the writer finished in time.
    pub fn close(&self, limit: Duration) -> bool {
        let Some(sender) = &self.sender else { return true };
        let deadline = Instant::now() + limit;
        // Bounded by the deadline: the channel may be full while the writer catches up.
        while let Err(TrySendError::Full(_)) = sender.try_send(None) {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(CLOSE_POLL);
        }
        let Ok(mut writer) = self.writer.lock() else { return false };
        // Bounded by the deadline; a finished writer is joined at once.
        while writer.as_ref().is_some_and(|w| !w.is_finished()) {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(CLOSE_POLL);
        }
        if let Some(handle) = writer.take() {
            let _ = handle.join();
        }
        true
    }
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("access log {}: {e}", path.display())))
}

/// The writer's output, and the path to reopen it from.
struct Sink {
    out: BufWriter<Box<dyn Write + Send>>,
    path: Option<PathBuf>,
    /// Set after a write error is reported, so a full disk logs once, not per line.
    failing: bool,
}

impl Sink {
    fn new(out: Box<dyn Write + Send>, path: Option<PathBuf>) -> Sink {
        Sink { out: BufWriter::with_capacity(WRITE_BUFFER_BYTES, out), path, failing: false }
    }

    fn reopen(&mut self) {
        if self.path.is_none() {
            return;
        }
        self.flush();
        let Some(path) = &self.path else { return };
        match open(path) {
            Ok(file) => {
                self.out = BufWriter::with_capacity(WRITE_BUFFER_BYTES, Box::new(file));
                tracing::info!("access log reopened: {}", path.display());
            }
            Err(error) => tracing::error!("{error}; still writing to the old file"),
        }
    }

    fn write(&mut self, line: &str) {
        let result = self.out.write_all(line.as_bytes());
        self.report(result);
    }

    fn flush(&mut self) {
        let result = self.out.flush();
        self.report(result);
    }

    fn report(&mut self, result: io::Result<()>) {
        match result {
            Ok(()) => self.failing = false,
            Err(error) if !self.failing => {
                self.failing = true;
                tracing::error!("access log write failed: {error}");
            }
            Err(_) => {}
        }
    }
}

/// Writes lines until every sender is gone. Runs for the life of the log: each pass
/// takes one entry, and the loop ends when the channel disconnects.
fn write_loop(receiver: &Receiver<Message>, mut sink: Sink, format: Format, flags: &Flags) {
    let mut line = String::with_capacity(512);
    loop {
        let message = match receiver.try_recv() {
            Ok(message) => message,
            Err(TryRecvError::Empty) => {
                sink.flush();
                match receiver.recv() {
                    Ok(message) => message,
                    Err(_) => break,
                }
            }
            Err(TryRecvError::Disconnected) => break,
        };
        let Some(entry) = message else { break };
        flags.queued.fetch_sub(entry.text_bytes(), Ordering::Relaxed);
        if flags.reopen.swap(false, Ordering::AcqRel) {
            sink.reopen();
        }
        line.clear();
        format::write_line(&mut line, &entry, format);
        line.push('\n');
        sink.write(&line);
    }
    sink.flush();
}

#[cfg(test)]
#[path = "access_log_tests.rs"]
mod tests;
