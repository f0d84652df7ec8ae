//! Attack resistance of an HTTP/2 connection beyond the codec's own limits.
//!
//! The codec answers PING and SETTINGS and takes RST_STREAM without telling weir, so
//! [`super::watched::Watched`] reads the frame headers of what the client sends as the bytes pass (9
//! bytes a frame; payloads are skipped, not copied) and keeps budgets on them: a client
//! past one is an attack ([`Http2Attack`]), and the driver answers it with GOAWAY
//! `ENHANCE_YOUR_CALM` and closes the connection. [`header_cost`] and
//! [`HeaderBudget`] bound the decoded headers that a connection's streams hold.
//! The codec's own defences (pending-accept resets, CONTINUATION frames) are told apart
//! by [`codec_attack`].

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::watched::Watch;
use crate::http2::{Frames, Passed, ACK, CONTINUATION, END_HEADERS, HEADERS, PING};
use crate::http2::{RST_STREAM, SETTINGS};
use crate::log_budget::LogBudget;
use crate::metrics::Http2Attack;

/// Client resets a connection may send before the reset share is looked at (Rapid
/// Reset, CVE-2023-44487): past it, a client that reset more than half the streams it
/// opened gets GOAWAY. Only premature resets count ([`PREMATURE_RESET`]). Envoy's premature-reset rule, with a smaller floor: a browser
/// cancels a few streams of many (navigation, aborted fetches), an attacker nearly all,
/// and 100 streams opened and reset cost weir 100 request starts at most. The codec's
/// own limit (`MAX_PENDING_ACCEPT_RESETS`) meets only resets that arrive before weir
/// accepted the stream.
pub const RESET_ALLOWANCE: u32 = 100;
/// A reset counts toward [`RESET_ALLOWANCE`] only for a stream opened less than this
/// long before (Envoy's "premature reset", 1 s): Rapid Reset opens and resets at once,
/// while a client that cancels a subscription or a long download after a while does
/// no harm. Without it, 120 streams a client kept open 1.5 s and then cancelled cost
/// it the connection and its other requests.
pub const PREMATURE_RESET: Duration = Duration::from_secs(1);
/// Stream ages are kept at this granularity: a mark per step in which streams opened,
/// so at most `PREMATURE_RESET / AGE_STEP` + 1 marks per connection. A stream is taken
/// for young until the last stream of its step is `PREMATURE_RESET` old.
const AGE_STEP: Duration = Duration::from_millis(100);
/// PING or SETTINGS frames a client may send in a burst, each kind on its own budget.
/// Both cost weir an answer and do no work for anyone; a browser sends a few per
/// connection, gRPC keepalive one every few seconds or minutes.
pub const CONTROL_BURST: u32 = 100;
/// The budget above regains one frame per this interval (10 a second sustained), and a
/// frame that follows a new stream's HEADERS is free (a client timing its requests).
pub const CONTROL_REFILL: Duration = Duration::from_millis(100);
/// Streams with a full header list (`max_header_bytes`) a connection's open streams may
/// hold at once, counted in decoded bytes as RFC 9113 §6.5.2 counts them (the HTTP/2
/// Bomb: HPACK turns each byte on the wire into up to 4 KiB of header). Default: 16 x
/// 64 KiB = 1 MiB decoded per connection. Without it a connection holds up to 100
/// streams (`[server.http2] max_concurrent_streams`) x 64 KiB = 6.4 MiB in the codec, and as much again
/// in each stream's translated HTTP/1 head: 12.8 MiB from a few KiB the client sent.
/// Browser request heads are 0.5 to 2 KiB: 100 of them use a fifth of the budget.
pub const HEADER_BUDGET_STREAMS: usize = 16;
/// Per-field overhead in the header list size (RFC 9113 §6.5.2).
const FIELD_OVERHEAD: usize = 32;

/// Streams the header budget may refuse in a row, with no stream of the connection
/// ending between them, before the connection is taken for an HTTP/2 Bomb (GOAWAY
/// `ENHANCE_YOUR_CALM`): this many per stream the connection may have open, at least
/// [`BUDGET_REFUSALS_LEAST`] and at most [`BUDGET_REFUSALS_MOST`]. A stream that does not fit is refused alone
/// (REFUSED_STREAM: never processed, and clients such as Chromium and curl send it
/// again), since a real client's streams end and make room: 100 requests with 11 KiB
/// cookies each pass the budget by a few streams, and closing the connection for them
/// lost all 100. A client that sends its refused streams again at once, before its
/// slow first ones end, is refused a few times over. A Bomb's streams never end.
pub const BUDGET_REFUSALS_PER_STREAM: u32 = 4;
/// The least of the refusals above (a connection allowing a few streams at once).
pub const BUDGET_REFUSALS_LEAST: u32 = 100;
/// The most of them, whatever `max_concurrent_streams` (up to 10,000) allows: each
/// refused stream's headers were decoded by the codec, up to `max_header_bytes` each.
pub const BUDGET_REFUSALS_MOST: u32 = 1_000;

/// What a connection's open streams hold of their decoded headers.
pub struct HeaderBudget {
    /// What they may hold: [`HEADER_BUDGET_STREAMS`] x `max_header_bytes`.
    budget: usize,
    held: usize,
    /// Streams refused since a stream last ended.
    refused: u32,
    /// Refusals in a row that make an attack.
    most_refused: u32,
}

impl HeaderBudget {
    /// The budget of a connection whose header lists are bounded by `max_header_bytes`,
    /// with up to `streams` open at once.
    pub fn new(max_header_bytes: usize, streams: usize) -> HeaderBudget {
        let budget = HEADER_BUDGET_STREAMS.saturating_mul(max_header_bytes);
        let per_stream = u32::try_from(streams).unwrap_or(u32::MAX);
        let most_refused = per_stream.saturating_mul(BUDGET_REFUSALS_PER_STREAM);
        let most_refused = most_refused.clamp(BUDGET_REFUSALS_LEAST, BUDGET_REFUSALS_MOST);
        HeaderBudget { budget, held: 0, refused: 0, most_refused }
    }

    /// Takes `cost` for a new stream; an error when it does not fit (the stream is to be
    /// refused), with the attack once refusals in a row pass the connection's bound.
    pub fn take(&mut self, cost: usize) -> Result<(), Option<Http2Attack>> {
        if cost <= self.budget - self.held {
            self.held += cost;
            return Ok(());
        }
        self.refused = self.refused.saturating_add(1);
        Err((self.refused > self.most_refused).then_some(Http2Attack::HeaderBudget))
    }

    /// A stream that held `cost` ended: the room is back, and the connection moves.
    pub fn give(&mut self, cost: usize) {
        debug_assert!(cost <= self.held, "a stream gives back what it took");
        self.held -= cost;
        self.refused = 0;
    }
}

/// The size of a request's header list as RFC 9113 §6.5.2 counts it: name, value and 32
/// bytes per field, the pseudo-header fields included.
pub fn header_cost<B>(request: &http::Request<B>) -> usize {
    let fields: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + FIELD_OVERHEAD)
        .sum();
    let uri = request.uri();
    let pseudo = request.method().as_str().len()
        + uri.path_and_query().map_or(0, |p| p.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.scheme_str().map_or(0, str::len)
        // `:method`, `:path`, `:authority`, `:scheme`: names and overhead.
        + 4 * (8 + FIELD_OVERHEAD);
    fields + pseudo
}

/// Most refused HTTP/2 attacks logged at warn per second, all workers together: enough
/// to show an attack and its source, while `weir_http2_attacks_total` counts every one
/// (an attacker that opens connections in a loop must not flood the log).
const ATTACKS_LOGGED_PER_SECOND: u32 = 10;

/// The log budget of refused attacks, shared by the workers (an attack is rare, so a
/// lock per logged attack costs nothing on the request path).
static ATTACK_LOG: Mutex<LogBudget> = Mutex::new(LogBudget::new(ATTACKS_LOGGED_PER_SECOND));

/// Logs a refused attack at warn, within [`ATTACKS_LOGGED_PER_SECOND`].
pub fn log_attack(peer: std::net::SocketAddr, attack: Http2Attack) {
    match LogBudget::take_shared(&ATTACK_LOG) {
        Some(0) => tracing::warn!(client = %peer, "HTTP/2 attack refused: {}", attack.label()),
        Some(left_out) => tracing::warn!(
            client = %peer,
            "HTTP/2 attack refused: {} ({left_out} earlier ones not logged)",
            attack.label()
        ),
        None => {}
    }
}

/// The attack behind an error the codec ended the connection with. The codec gives its
/// reason, not its debug data (`too_many_resets`, `too_many_continuations`, ...), so the
/// frames the client sent tell them apart.
pub fn codec_attack(error: &h2::Error, watch: &Watch) -> Option<Http2Attack> {
    let calm = error.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM);
    if !error.is_library() || !error.is_go_away() || !calm {
        return None;
    }
    let scan = watch.0.borrow();
    Some(if scan.continuations > 0 {
        Http2Attack::Continuation
    } else if scan.resets > 0 {
        Http2Attack::RapidReset
    } else {
        Http2Attack::StreamErrors
    })
}

/// A budget of PING or SETTINGS frames.
#[derive(Debug)]
struct Bucket {
    tokens: u32,
    /// When the budget last regained a frame.
    at: Instant,
    /// The next frame is free: a new stream came since the last one.
    free: bool,
}

impl Bucket {
    fn new(now: Instant) -> Bucket {
        Bucket { tokens: CONTROL_BURST, at: now, free: false }
    }

    /// Takes one frame from the budget; false when it was spent.
    fn take(&mut self) -> bool {
        if std::mem::take(&mut self.free) {
            return true;
        }
        let now = Instant::now();
        let gained = now.duration_since(self.at).as_nanos() / CONTROL_REFILL.as_nanos();
        if gained > 0 {
            let gained = u32::try_from(gained).unwrap_or(u32::MAX);
            self.tokens = self.tokens.saturating_add(gained).min(CONTROL_BURST);
            self.at = now;
        }
        let ok = self.tokens > 0;
        self.tokens = self.tokens.saturating_sub(1);
        ok
    }
}

/// When the client's streams opened, coarsely: stream ids grow with time (RFC 9113
/// §5.1.1), so a few marks tell a stream's age from its id.
#[derive(Debug, Default)]
struct Ages {
    /// Per step, oldest first: when the step began, its highest stream id, and when
    /// that stream opened.
    marks: std::collections::VecDeque<(Instant, u32, Instant)>,
    /// The highest stream id opened at least [`PREMATURE_RESET`] ago.
    old: u32,
}

impl Ages {
    fn opened(&mut self, id: u32, now: Instant) {
        self.prune(now);
        match self.marks.back_mut() {
            Some((began, last, at)) if now.duration_since(*began) < AGE_STEP => {
                (*last, *at) = (id, now);
            }
            _ => self.marks.push_back((now, id, now)),
        }
    }

    /// Whether stream `id`'s reset now is premature.
    fn premature(&mut self, id: u32, now: Instant) -> bool {
        self.prune(now);
        id > self.old
    }

    /// Bounded by the marks, at most one per `AGE_STEP` within `PREMATURE_RESET`.
    fn prune(&mut self, now: Instant) {
        while let Some(&(_, last, at)) = self.marks.front() {
            if now.duration_since(at) < PREMATURE_RESET {
                break;
            }
            self.old = last;
            self.marks.pop_front();
        }
    }
}

/// What the client sent so far, frame by frame.
#[derive(Debug)]
pub(super) struct Scan {
    /// Bytes of the client preface still to pass.
    preface: usize,
    frames: Frames,
    streams: u32,
    /// The highest stream id a HEADERS frame opened.
    last_stream: u32,
    /// When streams opened, for [`PREMATURE_RESET`].
    ages: Ages,
    /// Premature resets.
    resets: u32,
    continuations: u32,
    pings: Bucket,
    settings: Bucket,
    /// A header block has begun and not yet fully arrived: its HEADERS frame, the
    /// CONTINUATION frames it announced, or the last one's payload are still to come.
    /// Nothing else may arrive meanwhile (RFC 9113 §6.10), so a client that stalls here
    /// stalls its whole connection.
    pub(super) in_block: bool,
    /// The frame passing now ends the header block (END_HEADERS).
    block_ends: bool,
    pub(super) attack: Option<Http2Attack>,
    /// The codec closed the connection: its last frames went, and the lingering close
    /// runs ([`super::watched`]).
    pub(super) closing: bool,
}

impl Scan {
    /// A connection's scan before its client preface.
    pub(super) fn new(now: Instant) -> Scan {
        Scan {
            preface: super::PREFACE.len(),
            frames: Frames::default(),
            streams: 0,
            last_stream: 0,
            ages: Ages::default(),
            resets: 0,
            continuations: 0,
            pings: Bucket::new(now),
            settings: Bucket::new(now),
            in_block: false,
            block_ends: false,
            attack: None,
            closing: false,
        }
    }

    /// Passes `bytes`, up to an attack.
    pub(super) fn feed(&mut self, mut bytes: &[u8]) {
        let n = self.preface.min(bytes.len());
        self.preface -= n;
        bytes = &bytes[n..];
        // Bounded by `bytes`: each call takes some, or ends the frame whose head it gave.
        while self.attack.is_none() {
            match self.frames.next(&mut bytes) {
                Some(Passed::Head(head)) => {
                    self.attack = self.frame(head.kind, head.flags, head.stream);
                }
                // The header block ends once the frame that ends it has passed.
                Some(Passed::End) if self.block_ends => {
                    (self.in_block, self.block_ends) = (false, false);
                }
                Some(Passed::End) => {}
                None => return,
            }
        }
    }

    fn frame(&mut self, kind: u8, flags: u8, id: u32) -> Option<Http2Attack> {
        if matches!(kind, HEADERS | CONTINUATION) {
            self.in_block = true;
            self.block_ends = flags & END_HEADERS != 0;
        }
        match kind {
            // A stream counts once, when it opens: HEADERS on a stream already seen are
            // trailers, which must not dilute the reset share.
            HEADERS if id > self.last_stream => {
                self.last_stream = id;
                self.ages.opened(id, Instant::now());
                self.streams = self.streams.saturating_add(1);
                self.pings.free = true;
                self.settings.free = true;
                None
            }
            RST_STREAM if self.ages.premature(id, Instant::now()) => {
                self.resets = self.resets.saturating_add(1);
                let most = self.resets > self.streams / 2;
                (self.resets > RESET_ALLOWANCE && most).then_some(Http2Attack::RapidReset)
            }
            CONTINUATION => {
                self.continuations = self.continuations.saturating_add(1);
                None
            }
            PING if flags & ACK == 0 => (!self.pings.take()).then_some(Http2Attack::PingFlood),
            SETTINGS if flags & ACK == 0 => {
                (!self.settings.take()).then_some(Http2Attack::SettingsFlood)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
#[path = "guard_tests.rs"]
mod tests;
