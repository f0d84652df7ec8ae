//! Access-log entries for the data path: started while the request head is still in the
//! buffer, finished at whatever exit the request takes. When the access log is off,
//! nothing is copied or allocated.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use super::Client;
use crate::access_log::Entry;
use crate::http1::request::RequestInfo;

/// An access-log entry under way, or nothing when logging is off.
pub struct Pending(Option<(Entry, Instant)>);

/// How a request ended, for its log line.
#[derive(Clone, Copy, Debug, Default)]
pub struct Done<'a> {
    /// Status sent to the client (0 when nothing could be sent).
    pub status: u16,
    /// Bytes sent to the backend (0 when none was reached).
    pub bytes_in: u64,
    /// Bytes received from the backend.
    pub bytes_out: u64,
    /// Time to the backend's response head.
    pub upstream: Option<Duration>,
    /// The backend that answered or failed last.
    pub backend: Option<&'a str>,
    /// The pool the request was routed to.
    pub pool: Option<&'a str>,
    /// Retries spent on the request.
    pub retries: u32,
    /// Why weir answered itself, if it did.
    pub error: Option<&'static str>,
}

impl Done<'_> {
    /// A request weir answered itself with `status`, without reaching a backend.
    pub fn refused(status: u16, error: &'static str) -> Done<'static> {
        Done { status, error: Some(error), ..Done::default() }
    }
}

impl Pending {
    /// Starts an entry from a parsed head (`head` is its raw bytes).
    pub fn start(client: &Client, head: &[u8], info: &RequestInfo) -> Pending {
        if !client.shared.access_log.is_enabled() {
            return Pending(None);
        }
        let method = head.split(|&b| b == b' ').next().unwrap_or_default();
        let target = head.get(info.target.clone()).unwrap_or_default();
        // A trusted proxy's client has no port weir knows.
        let address = info.forwarded_client.map_or(client.peer, |ip| SocketAddr::new(ip, 0));
        let mut entry = Entry::new(address, &lossy(method), &lossy(target));
        entry.version = match (client.http2, info.http10) {
            (true, _) => 2,
            (false, true) => 0,
            (false, false) => 1,
        };
        entry.referer = field(head, b"referer");
        entry.user_agent = field(head, b"user-agent");
        Pending(Some((entry, Instant::now())))
    }

    /// Records the request's id (`[server] request_id`), if it has one.
    pub fn request_id(&mut self, id: Option<&str>) {
        if let (Some((entry, _)), Some(id)) = (&mut self.0, id) {
            entry.request_id = Some(id.to_string());
        }
    }

    /// An entry for a request whose head could not be parsed.
    pub fn unparsed(client: &Client) -> Pending {
        Pending::named(client, "-", "-")
    }

    /// An entry for a request known only by its `method` and `target`: an HTTP/2 stream
    /// the client reset, whose exchange (and its entry) was dropped.
    pub fn named(client: &Client, method: &str, target: &str) -> Pending {
        if !client.shared.access_log.is_enabled() {
            return Pending(None);
        }
        let mut entry = Entry::new(client.peer, method, target);
        if client.http2 {
            entry.version = 2;
        }
        Pending(Some((entry, Instant::now())))
    }

    /// Completes the entry and hands it to the writer (which never blocks the caller).
    pub fn finish(self, client: &Client, done: Done<'_>) {
        let Some((mut entry, started)) = self.0 else { return };
        entry.status = done.status;
        entry.bytes_in = done.bytes_in;
        entry.bytes_out = done.bytes_out;
        entry.total = started.elapsed();
        entry.upstream = done.upstream;
        entry.backend = done.backend.map(str::to_string);
        entry.pool = done.pool.map(str::to_string);
        entry.retries = done.retries;
        entry.error = done.error;
        client.shared.access_log.log(entry);
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The first value of header `name` (lowercase) in a validated raw head.
fn field(head: &[u8], name: &[u8]) -> Option<String> {
    // Bounded by the lines of a head that already passed the size limit.
    head.split(|&b| b == b'\n').skip(1).find_map(|line| {
        let colon = line.iter().position(|&b| b == b':')?;
        line[..colon].eq_ignore_ascii_case(name).then(|| {
            let value = crate::http1::fields::trim(&line[colon + 1..]);
            lossy(value.strip_suffix(b"\r").unwrap_or(value))
        })
    })
}
