//! How a client's HTTP/2 connection closes: politely (idle past `keepalive_timeout`, or
//! the worker draining), with the codec's two-step GOAWAY (RFC 9113 §6.8: last stream id
//! 2^31-1 and a PING, then the last stream id weir took once the PING is answered); or
//! at once, for an attack (GOAWAY `ENHANCE_YOUR_CALM`) or a PING left unanswered.

use std::time::Duration;

use bytes::Bytes;
use h2::server::Connection;
use h2::Reason;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::super::timer::Alarm;
use super::super::Client;
use super::guard;
use crate::metrics::{GoAway, Http2Attack};

/// How long a connection shut at once (an attack's GOAWAY `ENHANCE_YOUR_CALM`, or the
/// final GOAWAY after [`GOAWAY_PING_WAIT`]) may take to send its GOAWAY before it is
/// closed: a client that reads nothing cannot hold it open.
pub const REFUSED_GRACE: Duration = Duration::from_secs(1);

/// How long after its first GOAWAY (idle or drain) a connection with no stream open
/// waits for the answer to the PING sent with it, before the final GOAWAY (the last
/// stream id weir took, so the client knows any later stream is safe to retry) and the
/// close. The codec sends that GOAWAY only on the PING's answer, and some clients never
/// give one (Python `h2` refuses a PING once it got GOAWAY): such a connection was never
/// closed, and a few of them held every `max_connections` slot. A round trip takes far
/// less on any path a balancer serves.
pub const GOAWAY_PING_WAIT: Duration = Duration::from_secs(1);

/// Where a connection is in its close.
#[derive(Default)]
pub struct Closing {
    /// When the first, polite GOAWAY went (idle or drain).
    polite: Option<Instant>,
    /// The connection was shut down at once; it ends when its alarm rings.
    shut: bool,
}

impl Closing {
    /// Whether the connection was shut down at once: no more attacks are counted.
    pub fn shut(&self) -> bool {
        self.shut
    }

    /// Whether a drain still has a polite GOAWAY to send.
    pub fn open(&self) -> bool {
        self.polite.is_none() && !self.shut
    }

    /// Whether the alarm counts now, setting it for a connection with no stream open
    /// (`quiet`): idle for `idle_timeout`, or waiting for the PING's answer. A connection
    /// shut at once keeps the alarm it was given then.
    pub fn arm(&self, alarm: &mut Alarm, quiet: bool, idle_timeout: Duration) -> bool {
        if self.shut {
            return true;
        }
        if quiet {
            let due = self.polite.map_or(Instant::now() + idle_timeout, |at| at + GOAWAY_PING_WAIT);
            alarm.set(due);
        }
        quiet
    }

    /// The alarm rang; returns whether the connection is to be dropped now.
    pub fn ring<T: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        connection: &mut Connection<T, Bytes>,
        client: &Client,
        alarm: &mut Alarm,
    ) -> bool {
        if self.shut {
            return true;
        }
        if self.polite.is_some() {
            // The PING went unanswered: the final GOAWAY, and the close.
            connection.abrupt_shutdown(Reason::NO_ERROR);
            self.shut_at_once(alarm);
        } else {
            self.goodbye(connection, client, GoAway::Idle);
        }
        false
    }

    /// Sends the polite GOAWAY for `why` (idle or drain).
    pub fn goodbye<T: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        connection: &mut Connection<T, Bytes>,
        client: &Client,
        why: GoAway,
    ) {
        self.polite = Some(Instant::now());
        client.shared.frontend.local().http2.goaways[why.index()].inc();
        connection.graceful_shutdown();
    }

    /// Answers an attack: counts it, and sends GOAWAY `ENHANCE_YOUR_CALM` (the
    /// connection closes once it is sent, or after [`REFUSED_GRACE`]).
    pub fn refuse<T: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        connection: &mut Connection<T, Bytes>,
        client: &Client,
        attack: Http2Attack,
        alarm: &mut Alarm,
    ) {
        let frontend = client.shared.frontend.local();
        frontend.http2_attacks.record(attack);
        frontend.http2.goaways[GoAway::Error(Reason::ENHANCE_YOUR_CALM.into()).index()].inc();
        guard::log_attack(client.peer, attack);
        connection.abrupt_shutdown(Reason::ENHANCE_YOUR_CALM);
        self.shut_at_once(alarm);
    }

    fn shut_at_once(&mut self, alarm: &mut Alarm) {
        self.shut = true;
        alarm.set(Instant::now() + REFUSED_GRACE);
    }
}
