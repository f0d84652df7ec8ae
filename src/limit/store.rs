//! The fleet-wide store of a `[[limit]] store = "redis://..."`: GCRA run atomically
//! inside Redis by a Lua script, on Redis's own clock (`TIME`), so instances whose clocks
//! differ still agree. One script call per request: GCRA needs one key and one round
//! trip, where fixed windows (`INCR` + `PEXPIRE`) let twice the rate through across a
//! window edge.
//!
//! Each worker keeps its own few connections (a current-thread runtime needs no
//! sharing), and each call is bounded by `store_timeout`. A failed or slow call makes the
//! limit decide without the store (`on_store_error`) and keeps the store aside for
//! [`BACKOFF`], so a dead Redis costs requests nothing more than a clock read.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::resp::{self, Reply};
use super::table::{Decision, Gcra};
use crate::config::LimitConfig;
use crate::log_budget::LogBudget;

/// How long a store that failed is left aside before a request tries it again: long
/// enough that a dead Redis is not dialled by every request, short enough that the
/// fleet-wide limit is back within a second of Redis.
pub const BACKOFF: Duration = Duration::from_secs(1);
/// Idle connections a worker keeps per store: requests in flight at once on one worker
/// rarely need more, and each is a Redis client.
const MAX_IDLE: usize = 8;
/// Connections a worker may have open per store at once: past it a request decides
/// without the store rather than queue behind others (it must not stall).
const MAX_OPEN: usize = 64;

/// The GCRA script. Times are microseconds; it answers `{allowed, wait}`.
const SCRIPT: &str = r"local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local delay_max = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local wait = tat - now - tolerance
if wait < 0 then wait = 0 end
if wait > delay_max then return {0, wait} end
local next = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', next), 'PX', math.floor((next - now) / 1000) + 1)
return {1, wait}
";

/// Why the store gave no decision.
#[derive(Debug)]
pub enum StoreError {
    /// Left aside after an earlier failure ([`BACKOFF`]).
    Resting,
    /// This worker has [`MAX_OPEN`] calls in flight already.
    Busy,
    /// No answer within `store_timeout`.
    Timeout,
    /// Connecting, writing or reading failed.
    Io(std::io::Error),
    /// Redis answered something else than the script's answer.
    Reply(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Resting => f.write_str("resting after a failure"),
            StoreError::Busy => write!(f, "{MAX_OPEN} calls in flight on this worker"),
            StoreError::Timeout => f.write_str("no answer in time"),
            StoreError::Io(error) => write!(f, "{error}"),
            StoreError::Reply(reply) => write!(f, "unexpected reply {reply}"),
        }
    }
}

/// A worker's connections to one store.
#[derive(Default)]
struct Connections {
    idle: Vec<TcpStream>,
    open: usize,
}

thread_local! {
    /// This worker's connections, by store address.
    static CONNECTIONS: RefCell<HashMap<String, Connections>> = RefCell::new(HashMap::new());
}

/// A connection counted open on this worker; dropping it (the call ended, failed, or
/// its request went away) counts it closed.
struct Lease<'a>(&'a str);

impl Lease<'_> {
    /// The call went well: its connection joins the idle list, if there is room.
    fn give_back(self, connection: TcpStream) {
        with_mine(self.0, |mine| {
            if mine.idle.len() < MAX_IDLE {
                mine.idle.push(connection);
            }
        });
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        with_mine(self.0, |mine| mine.open = mine.open.saturating_sub(1));
    }
}

/// Runs `f` on this worker's connections to `address`.
fn with_mine<T>(address: &str, f: impl FnOnce(&mut Connections) -> T) -> T {
    CONNECTIONS.with(|all| {
        let mut all = all.borrow_mut();
        match all.get_mut(address) {
            Some(mine) => f(mine),
            None => f(all.entry(address.to_string()).or_default()),
        }
    })
}

/// One limit's Redis.
#[derive(Debug)]
pub struct Store {
    /// `HOST:PORT`.
    address: String,
    timeout: Duration,
    /// The SHA-1 of [`SCRIPT`], in hex, for `EVALSHA`.
    sha: String,
    /// When the store may be tried again, on [`super::now_nanos`]'s clock.
    resting_until: AtomicU64,
    log: Mutex<LogBudget>,
}

impl Store {
    /// The store at `address` (`HOST:PORT`) for `config`.
    pub fn new(address: &str, config: &LimitConfig) -> Store {
        let digest =
            ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, SCRIPT.as_bytes());
        let sha = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        Store {
            address: address.to_string(),
            timeout: config.store_timeout,
            sha,
            resting_until: AtomicU64::new(0),
            // A line a second: enough to see a store fail and recover, never a flood.
            log: Mutex::new(LogBudget::new(1)),
        }
    }

    /// Logs a failure, a line a second at most.
    pub fn report(&self, limit: &str, error: &StoreError) {
        if matches!(error, StoreError::Resting) {
            return;
        }
        let budget =
            self.log.lock().unwrap_or_else(PoisonError::into_inner).take(std::time::Instant::now());
        if let Some(left_out) = budget {
            let address = &self.address;
            tracing::warn!(limit, store = %address, left_out, "rate limit store failed ({error}); deciding without it");
        }
    }

    /// GCRA on Redis for `key` of limit `name`.
    pub async fn decide(&self, name: &str, key: &[u8], gcra: Gcra) -> Result<Decision, StoreError> {
        let now = super::now_nanos();
        if now < self.resting_until.load(Ordering::Relaxed) {
            return Err(StoreError::Resting);
        }
        let result = match self.take().await {
            Ok((lease, mut connection)) => {
                let call = self.call(&mut connection, name, key, gcra);
                let result = tokio::time::timeout(self.timeout, call).await;
                let result = result.unwrap_or(Err(StoreError::Timeout));
                if result.is_ok() {
                    lease.give_back(connection);
                }
                result
            }
            Err(error) => Err(error),
        };
        // A failed connect rests the store as a failed call does (a blackholed address
        // would otherwise cost every request the timeout); a busy worker does not.
        if result.as_ref().is_err_and(|error| !matches!(error, StoreError::Busy)) {
            let rest = u64::try_from(BACKOFF.as_nanos()).unwrap_or(u64::MAX);
            let until = super::now_nanos().saturating_add(rest);
            self.resting_until.store(until, Ordering::Relaxed);
        }
        result
    }

    /// An idle connection of this worker, or a new one (within the timeout), with the
    /// lease that counts it open.
    async fn take(&self) -> Result<(Lease<'_>, TcpStream), StoreError> {
        let idle = with_mine(&self.address, |mine| {
            if mine.idle.is_empty() && mine.open >= MAX_OPEN {
                return Err(StoreError::Busy);
            }
            mine.open += 1;
            Ok(mine.idle.pop())
        })?;
        let lease = Lease(&self.address);
        if let Some(idle) = idle {
            return Ok((lease, idle));
        }
        let connect = TcpStream::connect(self.address.as_str());
        let stream = match tokio::time::timeout(self.timeout, connect).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => return Err(StoreError::Io(error)),
            Err(_) => return Err(StoreError::Timeout),
        };
        let _ = stream.set_nodelay(true);
        Ok((lease, stream))
    }

    /// One script call: `EVALSHA`, and `EVAL` when Redis does not know the script yet.
    async fn call(
        &self,
        stream: &mut TcpStream,
        name: &str,
        key: &[u8],
        gcra: Gcra,
    ) -> Result<Decision, StoreError> {
        // The key's hash, not the key: bounded size, same on every instance.
        let redis_key = format!("weir:limit:{name}:{:016x}", crate::balance::key::hash_bytes(key));
        let micros = |nanos: u64| (nanos / 1000).max(1).to_string();
        let args = [
            micros(gcra.interval),
            (gcra.tolerance / 1000).to_string(),
            (gcra.delay_max / 1000).to_string(),
        ];
        let mut out = Vec::with_capacity(256);
        let tail: [&[u8]; 5] = [
            b"1",
            redis_key.as_bytes(),
            args[0].as_bytes(),
            args[1].as_bytes(),
            args[2].as_bytes(),
        ];
        let mut command = vec![&b"EVALSHA"[..], self.sha.as_bytes()];
        command.extend_from_slice(&tail);
        resp::command(&mut out, &command);
        let reply = exchange(stream, &out).await?;
        let reply = match reply {
            Reply::Error(error) if error.starts_with("NOSCRIPT") => {
                out.clear();
                let mut command = vec![&b"EVAL"[..], SCRIPT.as_bytes()];
                command.extend_from_slice(&tail);
                resp::command(&mut out, &command);
                exchange(stream, &out).await?
            }
            reply => reply,
        };
        decision(reply)
    }
}

/// Writes `command` and reads one reply.
async fn exchange(stream: &mut TcpStream, command: &[u8]) -> Result<Reply, StoreError> {
    stream.write_all(command).await.map_err(StoreError::Io)?;
    let mut input = Vec::with_capacity(64);
    let mut chunk = [0u8; 512];
    loop {
        let read = stream.read(&mut chunk).await.map_err(StoreError::Io)?;
        if read == 0 {
            return Err(StoreError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        input.extend_from_slice(&chunk[..read]);
        match resp::parse(&input) {
            Ok(Some((reply, used))) if used == input.len() => return Ok(reply),
            Ok(Some(_)) => return Err(StoreError::Reply("with trailing bytes".into())),
            Ok(None) => continue,
            Err(malformed) => return Err(StoreError::Reply(format!("{malformed:?}"))),
        }
    }
}

/// The script's `{allowed, wait}` as a decision.
fn decision(reply: Reply) -> Result<Decision, StoreError> {
    let wait = |micros: i64| u64::try_from(micros).unwrap_or(0).saturating_mul(1000);
    match reply {
        Reply::Array(items) => match items[..] {
            [Reply::Integer(1), Reply::Integer(0)] => Ok(Decision::Pass),
            [Reply::Integer(1), Reply::Integer(micros)] => Ok(Decision::Wait(wait(micros))),
            [Reply::Integer(0), Reply::Integer(micros)] => Ok(Decision::Reject(wait(micros))),
            _ => Err(StoreError::Reply(format!("{items:?}"))),
        },
        other => Err(StoreError::Reply(format!("{other:?}"))),
    }
}
