//! Retries: one policy for every reason a request goes upstream again.
//!
//! [`Plan`] follows one request across its attempts and decides, after each failed one,
//! what comes next ([`Next`]):
//! - **stale pooled connection**: a pooled connection that closed before a single
//!   response byte is most often the idle-close race, not a backend failure. An
//!   idempotent request is replayed once on a fresh connection to the same backend. It
//!   does not count as an attempt, spends no budget and is not a passive failure. A
//!   non-idempotent one is not: the same close is what a backend that read the request,
//!   ran it and crashed looks like, and nothing on weir's side tells the two apart (a
//!   write the kernel accepted may have been read; a failed write may follow a partial
//!   one). As in nginx, a request counts as sent from its first write; only a connection
//!   seen closed at checkout ([`crate::pool::checkout`]) or a failed connect proves it
//!   never reached the backend, and both lead to a new connection before any write.
//! - **connect failure** (`on` has `"connect-failure"`): nothing was sent, so any method
//!   goes to another backend.
//! - **reset or timeout** (`"reset"`, `"timeout"`): bytes were sent, so only idempotent
//!   methods (GET, HEAD, OPTIONS, PUT, DELETE, TRACE), and only when the request was
//!   fully kept in the replay buffer ([`Capture`], `replay_buffer` bytes at most).
//! - **status** (codes in `on`): idempotent requests without a body run a held exchange
//!   ([`held`]) that reads the response head before relaying anything; a listed status
//!   goes to another backend if a retry is allowed then, and is relayed otherwise.
//! - a response already begun is never retried.
//! - **local exhaustion** ([`crate::pool::ConnectError::Local`]): weir is out of files,
//!   memory or ports; another backend would fail the same way, so the request stops here.
//!
//! Which failure is which is decided once, by the failure's [`Class`] ([`Retry`]).
//!
//! A retry always goes to a backend not tried yet; when none is usable the request fails
//! with the last error. At most `attempts` retries. Each spends the pool's retry budget
//! ([`crate::retry_budget::Budget`]),
//! except after a failed TCP connect: that attempt sent nothing and loaded no backend, so
//! its retry only puts the request where it would have gone had the dead backend not been
//! picked. The budget is there against load amplification, and starving these retries
//! turned a dead backend into client errors at low traffic (its floor of a few a second
//! was spent by the first requests). They stay bounded by `attempts` and the backends.

pub mod held;

use std::cell::RefCell;

use tokio::time::Instant;

use super::class::{Class, Retry};
use super::pump::Capture;
use crate::balance::PickRequest;
use crate::config::health::MAX_RETRY_ATTEMPTS;
use crate::health::select;
use crate::health::Trial;
use crate::http1::chunked::Decoder;
use crate::http1::request::RequestInfo;
use crate::http1::BodyKind;
use crate::snapshot::Pool;

/// Most backends one request tries: the first plus the most retries a config allows.
pub const MAX_TRIES: usize = MAX_RETRY_ATTEMPTS as usize + 1;
/// Replay buffers kept per worker: one per request in progress is enough to never
/// allocate in steady state, and a few cover bursts.
const SPARE_BUFFERS: usize = 4;
/// Largest replay buffer kept for reuse: the default 64 KiB replay buffer plus a large
/// head. Bigger ones (from a raised `replay_buffer`) are freed, so a burst of large
/// uploads does not pin memory per worker.
const SPARE_CAPACITY_MAX: usize = 128 * 1024;

thread_local! {
    static SPARES: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// What to do after a failed attempt.
#[derive(Debug)]
pub enum Next<'p> {
    /// Again on the same backend, on a new connection (stale pooled connection).
    Fresh,
    /// On this other backend, holding its half-open trial if it is one.
    Backend(usize, Option<Trial<'p>>),
    /// Give up: answer with the last error.
    Stop,
}

/// One request's attempts; see the module documentation.
#[derive(Debug)]
pub struct Plan<'p> {
    tried: [usize; MAX_TRIES],
    count: usize,
    retries: u32,
    stale_used: bool,
    /// The next attempt must open a new connection.
    pub fresh: bool,
    /// The last attempt ran on a pooled connection.
    pub reused: bool,
    /// An exchange ran: a request body was consumed from the client.
    pub sent: bool,
    /// The last attempt's HTTP/2 stream was never processed by the backend (refused,
    /// or above a GOAWAY's last stream id): like a stale connection, but for any method.
    pub refused: bool,
    /// The replay copy of the request, head and body, if one is kept.
    pub capture: Option<Capture>,
    /// Length of the head at the front of `capture`.
    capture_head: usize,
    /// A retry arranged by a held exchange.
    pending: Option<(usize, Option<Trial<'p>>)>,
}

impl<'p> Plan<'p> {
    /// A plan whose first attempt goes to backend `first`.
    pub fn new(first: usize) -> Plan<'p> {
        Plan {
            tried: [first; MAX_TRIES],
            count: 1,
            retries: 0,
            stale_used: false,
            fresh: false,
            reused: false,
            sent: false,
            refused: false,
            capture: None,
            capture_head: 0,
            pending: None,
        }
    }

    /// The backend of the current attempt.
    pub fn current(&self) -> usize {
        self.tried[self.count - 1]
    }

    /// Retries made so far (stale replays excluded).
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// Starts a replay copy before the first exchange, when a replay could follow: the
    /// body may fit, and the request is idempotent (only those are replayed once sent)
    /// with retries on, or rides a pooled connection that may prove stale.
    pub fn start_capture(&mut self, head: &[u8], info: &RequestInfo, pool: &Pool, http2: bool) {
        if self.sent || self.capture.is_some() || info.body == BodyKind::Empty {
            return;
        }
        let settings = &pool.settings.retry;
        let limit = head.len() + settings.replay_buffer;
        let fits = match info.body {
            BodyKind::Length(n) => (head.len() as u64).saturating_add(n) <= limit as u64,
            _ => settings.replay_buffer > 0,
        };
        // An HTTP/2 backend may refuse a stream it never processed (REFUSED_STREAM, or
        // above a GOAWAY's last stream id), and any method may then go again: a request
        // on an HTTP/2 link (`http2`: an `h2`/`h2c` pool, or an `auto` backend that chose
        // h2) keeps the copy whatever its method.
        let useful =
            (info.method.is_idempotent() && (self.reused || settings.attempts > 0)) || http2;
        if !(fits && useful) {
            return;
        }
        let mut bytes = SPARES.with(|spares| spares.borrow_mut().pop()).unwrap_or_default();
        bytes.extend_from_slice(head);
        self.capture_head = head.len();
        self.capture = Some(Capture { bytes, overflow: false, limit });
    }

    /// Whether the whole request can be sent again: it has no body, or the replay copy
    /// holds all of it.
    pub fn replayable(&self, info: &RequestInfo) -> bool {
        if info.body == BodyKind::Empty || !self.sent {
            return true;
        }
        let Some(capture) = self.capture.as_ref().filter(|c| !c.overflow) else {
            return false;
        };
        let body = capture.bytes.get(self.capture_head..).unwrap_or_default();
        match info.body {
            BodyKind::Length(n) => body.len() as u64 == n,
            BodyKind::Chunked => chunked_complete(body),
            BodyKind::Empty | BodyKind::UntilClose => false,
        }
    }

    /// Decides what follows the failed attempt on backend [`Self::current`], from the
    /// failure's [`Class`].
    pub fn next(
        &mut self,
        pool: &'p Pool,
        info: &RequestInfo,
        class: &Class<'_>,
        now: Instant,
    ) -> Next<'p> {
        let idempotent = info.method.is_idempotent();
        let stats = pool.backends[self.current()].live.stats.local();
        if class.maybe_stale
            && (idempotent || self.refused)
            && (self.reused || self.refused)
            && !self.stale_used
            && self.replayable(info)
        {
            (self.stale_used, self.fresh) = (true, true);
            stats.stale_retries.inc();
            stats.retries.inc();
            return Next::Fresh;
        }
        let (any_method, budgeted) = match class.retry {
            Retry::Never => return Next::Stop,
            Retry::Arranged => {
                return self.pending.take().map_or(Next::Stop, |(i, t)| Next::Backend(i, t));
            }
            Retry::On { when, .. } if !when.listed_in(&pool.settings.retry.on) => {
                return Next::Stop;
            }
            Retry::On { any_method, budgeted, .. } => (any_method, budgeted),
        };
        // A failure that sent nothing on this attempt may follow one that consumed the
        // body: every retry needs the whole request. A stream the backend never
        // processed (refused, or above a graceful GOAWAY) may go anywhere, whatever its
        // method (RFC 9113 §8.7): refused again on a new connection, it goes on to
        // another backend.
        if !self.replayable(info) || (!any_method && !idempotent && !self.refused) {
            return Next::Stop;
        }
        match self.another(pool, now, budgeted) {
            Some((index, trial)) => Next::Backend(index, trial),
            None => Next::Stop,
        }
    }

    /// Whether a held exchange that got a retriable status may retry; if so, the retry is
    /// arranged (backend picked, budget spent) and [`Self::next`] returns it.
    pub fn arrange_status_retry(&mut self, pool: &'p Pool, now: Instant) -> bool {
        self.pending = self.another(pool, now, true);
        self.pending.is_some()
    }

    /// [`Self::arrange_status_retry`] for an exchange to call, once, when it got a
    /// retriable status (an HTTP one or a gRPC one).
    pub fn arranger<T>(&mut self, pool: &'p Pool) -> impl FnOnce(T) -> bool + use<'_, 'p, T> {
        move |_| self.arrange_status_retry(pool, Instant::now())
    }

    /// Whether a held exchange is worth it: statuses are retried, the request qualifies,
    /// and a retry is still possible.
    pub fn holds_status(&self, pool: &Pool, info: &RequestInfo) -> bool {
        let retry = &pool.settings.retry;
        !retry.on.statuses.is_empty()
            && info.body == BodyKind::Empty
            && info.method.is_idempotent()
            && !info.upgrade
            && self.retries < retry.attempts
            && self.count < MAX_TRIES
    }

    /// Another backend for a retry: within `attempts`, not tried yet, and within the
    /// budget when the retry is `budgeted`.
    fn another(
        &mut self,
        pool: &'p Pool,
        now: Instant,
        budgeted: bool,
    ) -> Option<(usize, Option<Trial<'p>>)> {
        let settings = &pool.settings.retry;
        if self.retries >= settings.attempts || self.count == MAX_TRIES {
            return None;
        }
        let picked = select::pick(pool, &PickRequest::default(), &self.tried[..self.count])?;
        if budgeted && !pool.live.budget.try_retry(settings, now) {
            pool.live.stats.local().budget_exhausted.inc();
            tracing::debug!(pool = %pool.name, "retry budget spent; not retrying");
            return None;
        }
        pool.backends[self.current()].live.stats.local().retries.inc();
        pool.live.stats.local().retries.inc();
        self.tried[self.count] = picked.0;
        self.count += 1;
        self.retries += 1;
        self.fresh = false;
        Some(picked)
    }
}

/// Whether `body` is one whole chunked body, trailers included. Runs only on the retry
/// path, over at most `replay_buffer` bytes.
fn chunked_complete(body: &[u8]) -> bool {
    let mut decoder = Decoder::new();
    let mut at = 0;
    // Bounded: every step consumes at least one byte until done or the end.
    while at < body.len() && !decoder.is_done() {
        match decoder.feed(&body[at..]) {
            Ok(step) if step.consumed > 0 => at += step.consumed,
            _ => return false,
        }
    }
    decoder.is_done() && at == body.len()
}

impl Drop for Plan<'_> {
    fn drop(&mut self) {
        let Some(mut capture) = self.capture.take() else {
            return;
        };
        // A buffer that grew past the limit was already dropped by the capture.
        capture.bytes.clear();
        if (1..=SPARE_CAPACITY_MAX).contains(&capture.bytes.capacity()) {
            SPARES.with(|spares| {
                let mut spares = spares.borrow_mut();
                if spares.len() < SPARE_BUFFERS {
                    spares.push(capture.bytes);
                }
            });
        }
    }
}

#[cfg(test)]
#[path = "retry_tests.rs"]
mod tests;
