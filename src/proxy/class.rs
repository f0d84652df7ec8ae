//! A failed attempt ([`AttemptError`]) and its one classification ([`Class`]).
//!
//! The class says, for each kind of failure: where it came from, the cause text and
//! status the client gets, the access-log label, whether and when a retry may follow,
//! what passive health checking hears, and which counter counts it. Every consumer (the
//! answer in `failure`, the counters and health in `forward`, the retry policy in
//! `retry`) reads the class, so a new kind of failure is one arm of
//! [`AttemptError::class`]. Classifying allocates nothing; only the answer's cause text
//! is formatted, once, when weir answers.

use std::fmt;

use super::exchange::{Cut, Failure};
use crate::config::health::RetryOn;
use crate::health::Cause;
use crate::local_fault::LocalFault;
use crate::pool::ConnectError;
use crate::tls::TlsError;

/// A failed attempt.
#[derive(Debug)]
pub enum AttemptError {
    /// No connection.
    Connect(ConnectError),
    /// A failed exchange.
    Exchange(Failure),
    /// A held exchange got a retriable status and a retry was already arranged.
    Status(u16),
    /// The TLS handshake with an `https://` backend failed; nothing was sent.
    Tls(TlsError),
}

impl From<ConnectError> for AttemptError {
    fn from(error: ConnectError) -> Self {
        AttemptError::Connect(error)
    }
}

/// Where a failure came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The client went away, paused its body too long or sent a broken one, or stopped
    /// taking a response already begun.
    Client,
    /// weir itself ran out of files, memory or ports: no fault of the backend, which was
    /// not reached.
    Local,
    /// Opening the TCP connection to the backend.
    UpstreamConnect,
    /// The exchange with the backend.
    UpstreamExchange,
    /// The TLS session with an `https://` backend.
    Tls,
}

/// What the client gets.
#[derive(Clone, Copy, Debug)]
pub enum Reply<'e> {
    /// A short answer with this status, naming [`Class::cause`].
    Answer(u16),
    /// Nothing: the client is gone, and its connection closes.
    Nothing,
    /// The response had begun: the connection closes, and the cut says what the client
    /// got of it.
    Cut(&'e Cut),
}

/// The `retry.on` condition that allows a retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Condition {
    /// `"connect-failure"`.
    ConnectFailure,
    /// `"reset"`.
    Reset,
    /// `"timeout"`.
    Timeout,
}

impl Condition {
    /// Whether `on` lists this condition.
    pub fn listed_in(self, on: &RetryOn) -> bool {
        match self {
            Condition::ConnectFailure => on.connect_failure,
            Condition::Reset => on.reset,
            Condition::Timeout => on.timeout,
        }
    }
}

/// Whether a failed attempt may go to another backend (see `retry`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Never: another backend would fail alike, or the request cannot be sent again.
    Never,
    /// A held exchange got a retriable status; the retry was arranged then.
    Arranged,
    /// When `retry.on` lists `when`, and the whole request can be sent again.
    On {
        /// The condition in `retry.on`.
        when: Condition,
        /// Any method may retry: nothing was sent. Otherwise idempotent methods only.
        any_method: bool,
        /// The retry spends the pool's retry budget.
        budgeted: bool,
    },
}

/// What passive health checking hears of an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// Nothing: the failure says nothing about the backend.
    Nothing,
    /// A response with this status: a failure if the pool lists it, else a success.
    Status(u16),
    /// A failure of this kind.
    Failure(Cause),
}

/// The counter a failure adds to.
#[derive(Clone, Copy, Debug)]
pub enum Counter<'e> {
    /// None.
    None,
    /// weir's own `weir_local_errors_total{op="connect"}`, not the backend's.
    LocalError(LocalFault),
    /// The backend's connect failures.
    ConnectFailure,
    /// The backend's resets (not counted when a stale pooled connection is replayed).
    Reset,
    /// The backend's response timeouts.
    Timeout,
    /// The backend's TLS failures, by kind.
    Tls(&'e TlsError),
}

/// The cause text of an answer; formatted only when weir answers.
#[derive(Clone, Copy, Debug)]
pub enum CauseText<'e> {
    /// Fixed text.
    Fixed(&'static str),
    /// weir ran out of this resource.
    Local(LocalFault),
    /// The connect failed with this error.
    ConnectFailed(&'e std::io::Error),
    /// A held exchange got this status, and no other backend could be tried.
    Status(u16),
    /// The TLS session failed.
    Tls(&'e TlsError),
}

impl fmt::Display for CauseText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CauseText::Fixed(text) => f.write_str(text),
            CauseText::Local(fault) => write!(f, "local resource exhausted: {}", fault.label()),
            CauseText::ConnectFailed(error) => write!(f, "upstream connect failed: {error}"),
            CauseText::Status(status) => write!(f, "upstream answered {status}"),
            CauseText::Tls(error) => write!(f, "upstream TLS error: {error}"),
        }
    }
}

/// Everything the data path decides from a failed attempt; see the module documentation.
#[derive(Clone, Copy, Debug)]
pub struct Class<'e> {
    /// Where it came from.
    pub source: Source,
    /// The cause the client is told.
    pub cause: CauseText<'e>,
    /// What the client gets.
    pub reply: Reply<'e>,
    /// A fixed label for the access log.
    pub label: &'static str,
    /// Whether a retry may follow.
    pub retry: Retry,
    /// A close before any response byte: on a pooled connection this may be the
    /// backend's idle close racing the request, so health hears nothing of it and an
    /// idempotent request is replayed once on a fresh connection.
    pub maybe_stale: bool,
    /// What passive health checking hears.
    pub health: Health,
    /// The counter it adds to.
    pub counter: Counter<'e>,
}

/// Nothing was sent: any method goes to another backend, outside the budget (the
/// connect loaded no backend).
const CONNECT: Retry =
    Retry::On { when: Condition::ConnectFailure, any_method: true, budgeted: false };
/// A failed handshake sent no request either: it retries as a connect failure, but
/// within the budget.
const HANDSHAKE: Retry =
    Retry::On { when: Condition::ConnectFailure, any_method: true, budgeted: true };
/// Bytes were sent: idempotent methods only, within the budget.
const fn sent(when: Condition) -> Retry {
    Retry::On { when, any_method: false, budgeted: true }
}

impl AttemptError {
    /// The one classification of this failure. Adding a kind of failure means one arm
    /// here.
    pub fn class(&self) -> Class<'_> {
        use self::CauseText::Fixed;
        use AttemptError::{Connect, Exchange, Status, Tls};
        use Source::{Client, UpstreamExchange};
        match self {
            Connect(error) => Class::connect(error),
            // A refused handshake (untrusted, expired or wrong-name certificate, a refused
            // client certificate) means no request can get through: a failed connect.
            Tls(error) => Class::tls(error).retry(HANDSHAKE),
            // Refused after the handshake seemed done: the request may have been sent.
            Exchange(Failure::UpstreamTls(error)) => Class::tls(error),
            Exchange(Failure::UpstreamClosed { silent, .. }) => {
                let class = Class::answer(UpstreamExchange, 502, "upstream closed")
                    .cause(Fixed("upstream closed the connection before responding"))
                    .health(Health::Failure(Cause::Reset))
                    .counter(Counter::Reset);
                let retry = if *silent { sent(Condition::Reset) } else { Retry::Never };
                Class { maybe_stale: *silent, ..class.retry(retry) }
            }
            Exchange(Failure::Timeout) => Class::answer(UpstreamExchange, 504, "upstream timeout")
                .cause(Fixed("upstream response timeout"))
                .retry(sent(Condition::Timeout))
                .health(Health::Failure(Cause::Timeout))
                .counter(Counter::Timeout),
            Exchange(Failure::BadResponse(cause)) => {
                Class::answer(UpstreamExchange, 502, "bad upstream response")
                    .cause(Fixed(cause))
                    .health(Health::Failure(Cause::BadResponse))
            }
            // No backend would take it over this protocol: the client hears why, and no
            // backend is blamed or tried.
            Exchange(Failure::Unsendable(cause)) => {
                Class::answer(Client, 400, "request the backend protocol cannot carry")
                    .cause(Fixed(cause))
            }
            Exchange(Failure::ClientTimeout) => Class::answer(Client, 408, "request body timeout"),
            Exchange(Failure::ClientBadBody) => Class::answer(Client, 400, "bad request body")
                .cause(Fixed("malformed chunked request body")),
            Exchange(Failure::BodyTooLarge) => Class::answer(Client, 413, "request body too large")
                .cause(Fixed("request body over the route's max_body")),
            Exchange(Failure::ClientGone) => {
                Class { reply: Reply::Nothing, ..Class::answer(Client, 0, "client gone") }
            }
            Exchange(Failure::Aborted(cut)) => {
                let source = if cut.upstream_fault { UpstreamExchange } else { Client };
                Class { reply: Reply::Cut(cut), ..Class::answer(source, 0, cut.cause) }
            }
            // The retry is arranged before this is returned; the answer was a response
            // (HTTP 200), as health hears a relayed one.
            Exchange(Failure::GrpcRetry) => {
                Class::answer(UpstreamExchange, 502, "upstream grpc status")
                    .cause(Fixed("upstream answered a retried grpc-status"))
                    .retry(Retry::Arranged)
                    .health(Health::Status(200))
            }
            Status(status) => Class::answer(UpstreamExchange, 502, "upstream status")
                .cause(CauseText::Status(*status))
                .retry(Retry::Arranged)
                .health(Health::Status(*status)),
        }
    }
}

impl<'e> Class<'e> {
    /// A connection that could not be opened: weir's own resource fault (503), or the
    /// backend's (502, retried on another backend).
    fn connect(error: &'e ConnectError) -> Class<'e> {
        match error {
            ConnectError::Local(fault, _) => {
                Class::answer(Source::Local, 503, "local resource exhausted")
                    .cause(CauseText::Local(*fault))
                    .counter(Counter::LocalError(*fault))
            }
            ConnectError::Timeout => {
                Class::answer(Source::UpstreamConnect, 502, "upstream connect timeout")
                    .retry(CONNECT)
                    .health(Health::Failure(Cause::ConnectTimeout))
                    .counter(Counter::ConnectFailure)
            }
            ConnectError::Failed(failed) => {
                Class::answer(Source::UpstreamConnect, 502, "upstream connect failed")
                    .cause(CauseText::ConnectFailed(failed))
                    .retry(CONNECT)
                    .health(Health::Failure(Cause::Connect))
                    .counter(Counter::ConnectFailure)
            }
        }
    }

    /// A failure answered with `status`, logged as `label` (also its cause until set),
    /// never retried, unheard by health and uncounted: the arms of
    /// [`AttemptError::class`] add what differs.
    const fn answer(source: Source, status: u16, label: &'static str) -> Class<'e> {
        Class {
            source,
            cause: CauseText::Fixed(label),
            reply: Reply::Answer(status),
            label,
            retry: Retry::Never,
            maybe_stale: false,
            health: Health::Nothing,
            counter: Counter::None,
        }
    }

    /// A failed TLS session: a failed connect to health checking.
    fn tls(error: &'e TlsError) -> Class<'e> {
        Class::answer(Source::Tls, 502, error.access_log_label())
            .cause(CauseText::Tls(error))
            .health(Health::Failure(Cause::Connect))
            .counter(Counter::Tls(error))
    }

    const fn cause(self, cause: CauseText<'e>) -> Class<'e> {
        Class { cause, ..self }
    }

    const fn retry(self, retry: Retry) -> Class<'e> {
        Class { retry, ..self }
    }

    const fn health(self, health: Health) -> Class<'e> {
        Class { health, ..self }
    }

    const fn counter(self, counter: Counter<'e>) -> Class<'e> {
        Class { counter, ..self }
    }

    /// What health checking hears, given whether the attempt ran on a pooled connection:
    /// nothing of a possibly stale one.
    pub fn heard(&self, reused: bool) -> Health {
        match self.maybe_stale && reused {
            true => Health::Nothing,
            false => self.health,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A class in one line: source, status, cause | label | retry, stale, health, counter.
    fn row(error: &AttemptError) -> String {
        let class = error.class();
        let status = match class.reply {
            Reply::Answer(status) => format!("answer {status}"),
            Reply::Nothing => "nothing".into(),
            Reply::Cut(cut) => format!("cut {}", cut.status),
        };
        let retry = match class.retry {
            Retry::Never => "never".into(),
            Retry::Arranged => "arranged".into(),
            Retry::On { when, any_method, budgeted } => {
                let methods = if any_method { "any" } else { "idempotent" };
                format!("{when:?} {methods}{}", if budgeted { " budgeted" } else { "" })
            }
        };
        let counter = match class.counter {
            Counter::LocalError(fault) => format!("LocalError({})", fault.label()),
            Counter::Tls(error) => format!("Tls({})", error.label()),
            other => format!("{other:?}"),
        };
        let stale = if class.maybe_stale { " stale" } else { "" };
        let (source, cause, label, health) = (class.source, class.cause, class.label, class.health);
        format!("{source:?} {status}: {cause} | {label} | {retry}{stale} | {health:?} | {counter}")
    }

    fn check(cases: impl IntoIterator<Item = (AttemptError, String)>) {
        for (error, expected) in cases {
            assert_eq!(row(&error), expected, "{error:?}");
        }
    }

    #[test]
    fn every_connect_and_tls_failure_has_one_class() {
        let refused = || std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let files = LocalFault::ProcessFiles.label();
        let (expired, untrusted) = (TlsError::Expired, TlsError::NotTrusted);
        check([
            (
                AttemptError::Connect(ConnectError::Local(LocalFault::ProcessFiles, refused())),
                format!("Local answer 503: local resource exhausted: {files} | local resource exhausted | never | Nothing | LocalError({files})"),
            ),
            (
                AttemptError::Connect(ConnectError::Timeout),
                "UpstreamConnect answer 502: upstream connect timeout | upstream connect timeout | ConnectFailure any | Failure(ConnectTimeout) | ConnectFailure".into(),
            ),
            (
                AttemptError::Connect(ConnectError::Failed(refused())),
                format!("UpstreamConnect answer 502: upstream connect failed: {} | upstream connect failed | ConnectFailure any | Failure(Connect) | ConnectFailure", refused()),
            ),
            (
                AttemptError::Tls(TlsError::Expired),
                format!("Tls answer 502: upstream TLS error: {expired} | {} | ConnectFailure any budgeted | Failure(Connect) | Tls({})", expired.access_log_label(), expired.label()),
            ),
            (
                AttemptError::Exchange(Failure::UpstreamTls(TlsError::NotTrusted)),
                format!("Tls answer 502: upstream TLS error: {untrusted} | {} | never | Failure(Connect) | Tls({})", untrusted.access_log_label(), untrusted.label()),
            ),
        ]);
    }

    #[test]
    fn every_exchange_failure_has_one_class() {
        let cut = Cut { status: 200, body_bytes: 7, cause: "client gone", upstream_fault: false };
        let broken = Cut { status: 0, body_bytes: 0, cause: "x", upstream_fault: true };
        let closed = |silent| Failure::UpstreamClosed { silent, request_sent: true };
        check([
            (
                AttemptError::Exchange(closed(true)),
                "UpstreamExchange answer 502: upstream closed the connection before responding | upstream closed | Reset idempotent budgeted stale | Failure(Reset) | Reset".into(),
            ),
            (
                AttemptError::Exchange(closed(false)),
                "UpstreamExchange answer 502: upstream closed the connection before responding | upstream closed | never | Failure(Reset) | Reset".into(),
            ),
            (
                AttemptError::Exchange(Failure::Timeout),
                "UpstreamExchange answer 504: upstream response timeout | upstream timeout | Timeout idempotent budgeted | Failure(Timeout) | Timeout".into(),
            ),
            (
                AttemptError::Exchange(Failure::BadResponse("bad framing")),
                "UpstreamExchange answer 502: bad framing | bad upstream response | never | Failure(BadResponse) | None".into(),
            ),
            (
                AttemptError::Exchange(Failure::ClientTimeout),
                "Client answer 408: request body timeout | request body timeout | never | Nothing | None".into(),
            ),
            (
                AttemptError::Exchange(Failure::ClientBadBody),
                "Client answer 400: malformed chunked request body | bad request body | never | Nothing | None".into(),
            ),
            (
                AttemptError::Exchange(Failure::ClientGone),
                "Client nothing: client gone | client gone | never | Nothing | None".into(),
            ),
            (
                AttemptError::Exchange(Failure::Aborted(cut)),
                "Client cut 200: client gone | client gone | never | Nothing | None".into(),
            ),
            (
                AttemptError::Exchange(Failure::Aborted(broken)),
                "UpstreamExchange cut 0: x | x | never | Nothing | None".into(),
            ),
            (
                AttemptError::Status(503),
                "UpstreamExchange answer 502: upstream answered 503 | upstream status | arranged | Status(503) | None".into(),
            ),
        ]);
    }

    #[test]
    fn a_silent_close_on_a_pooled_connection_says_nothing_to_health() {
        let closed =
            |silent| AttemptError::Exchange(Failure::UpstreamClosed { silent, request_sent: true });
        assert_eq!(closed(true).class().heard(true), Health::Nothing);
        assert_eq!(closed(true).class().heard(false), Health::Failure(Cause::Reset));
        assert_eq!(closed(false).class().heard(true), Health::Failure(Cause::Reset));
    }

    #[test]
    fn retry_conditions_follow_retry_on() {
        let on = RetryOn { reset: false, ..RetryOn::default() };
        assert!(Condition::ConnectFailure.listed_in(&on));
        assert!(!Condition::Reset.listed_in(&on));
        assert!(Condition::Timeout.listed_in(&on));
    }
}
