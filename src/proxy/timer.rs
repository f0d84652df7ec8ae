//! Timeouts on the request path that cost no timer operation per request.
//!
//! A tokio timer costs a wheel registration and a cancellation (plus a clock read and a
//! runtime-handle lookup to create it) every time it is armed, and the data path waits on
//! two timeouts per request that almost never fire: the keep-alive idle wait and the wait
//! for a response head. Callgrind put the timer work at about 1,300 instructions per
//! request (bench/RESULTS.md). Two tools remove it:
//!
//! - [`Alarm`]: one timer per connection, re-armed lazily as nginx's timers are
//!   (`NGX_TIMER_LAZY_DELAY`). Setting a later deadline only records it; when the armed
//!   timer fires early it re-arms itself for the recorded deadline. A steady connection
//!   re-arms about once per timeout period instead of twice per request.
//! - [`lazy_timeout`]: polls the work once before it arms a timer, so a read or write
//!   that completes at once (the common case) arms none.

use std::future::Future;
use std::pin::{pin, Pin};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::time::error::Elapsed;
use tokio::time::{Instant, Sleep};

/// A connection's one timer for its idle wait and its response waits.
#[derive(Debug, Default)]
pub struct Alarm {
    /// The armed timer; created on first use, kept for the connection's life.
    sleep: Option<Pin<Box<Sleep>>>,
    /// The deadline [`Alarm::expired`] waits for; the armed timer may be earlier.
    deadline: Option<Instant>,
    /// The waker the armed timer holds. While it is the current task's, a pending wait
    /// only checks whether the timer fired, without polling it (which costs a waker
    /// registration).
    waker: Option<Waker>,
}

impl Alarm {
    /// Sets the deadline the next [`Alarm::expired`] waits for. Costs no timer operation
    /// unless the deadline is earlier than the one armed.
    pub fn set(&mut self, deadline: Instant) {
        self.deadline = Some(deadline);
        match &mut self.sleep {
            // An earlier deadline must be armed now; a later one is picked up when the
            // armed timer fires.
            Some(sleep) if deadline < sleep.deadline() => self.rearm(deadline),
            Some(_) => {}
            None => self.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
        }
    }

    /// Completes once the deadline set last has passed. Cancel-safe: dropping the
    /// future leaves the timer armed for the next wait. Never completes if no deadline
    /// was set.
    pub fn expired(&mut self) -> Expired<'_> {
        Expired(self)
    }

    fn rearm(&mut self, deadline: Instant) {
        if let Some(sleep) = &mut self.sleep {
            sleep.as_mut().reset(deadline);
            // A reset timer may hold no waker yet: the next wait polls it.
            self.waker = None;
        }
    }
}

/// The future of [`Alarm::expired`].
#[derive(Debug)]
pub struct Expired<'a>(&'a mut Alarm);

impl Future for Expired<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let alarm = &mut *self.get_mut().0;
        let Some(deadline) = alarm.deadline else {
            return Poll::Pending;
        };
        // Bounded: each pass either returns or re-arms for `deadline`, which the next
        // firing reaches.
        loop {
            let Some(sleep) = &mut alarm.sleep else {
                return Poll::Pending;
            };
            let holds_our_waker = alarm.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker()));
            if holds_our_waker && !sleep.is_elapsed() {
                return Poll::Pending;
            }
            if sleep.as_mut().poll(cx).is_pending() {
                alarm.waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            if Instant::now() >= deadline {
                return Poll::Ready(());
            }
            alarm.rearm(deadline);
        }
    }
}

/// Polls `future` once and returns its output if it is ready; otherwise runs it under
/// `tokio::time::timeout(duration, ...)`. The timeout runs from the first pending poll,
/// which is when waiting begins.
pub async fn lazy_timeout<F: Future>(duration: Duration, future: F) -> Result<F::Output, Elapsed> {
    let mut future = pin!(future);
    if let Poll::Ready(output) = poll_once(future.as_mut()).await {
        return Ok(output);
    }
    tokio::time::timeout(duration, future).await
}

/// Like [`lazy_timeout`], with a deadline instead of a duration.
pub async fn lazy_timeout_at<F: Future>(
    deadline: Instant,
    future: F,
) -> Result<F::Output, Elapsed> {
    let mut future = pin!(future);
    if let Poll::Ready(output) = poll_once(future.as_mut()).await {
        return Ok(output);
    }
    tokio::time::timeout_at(deadline, future).await
}

/// Polls a future once, without waiting.
pub async fn poll_once<F: Future>(mut future: Pin<&mut F>) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx))).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_alarm_fires_at_the_last_deadline_set_even_when_armed_earlier() {
        let start = Instant::now();
        let mut alarm = Alarm::default();
        alarm.set(start + Duration::from_secs(1));
        // A later deadline is only recorded: the armed timer fires at 1 s, and the alarm
        // re-arms itself for 5 s.
        alarm.set(start + Duration::from_secs(5));
        alarm.expired().await;
        assert_eq!(Instant::now() - start, Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_deadline_is_armed_at_once() {
        let start = Instant::now();
        let mut alarm = Alarm::default();
        alarm.set(start + Duration::from_secs(60));
        alarm.set(start + Duration::from_secs(2));
        alarm.expired().await;
        assert_eq!(Instant::now() - start, Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_wait_leaves_the_alarm_usable() {
        let start = Instant::now();
        let mut alarm = Alarm::default();
        alarm.set(start + Duration::from_secs(3));
        let early = tokio::time::timeout(Duration::from_secs(1), alarm.expired()).await;
        assert!(early.is_err(), "the alarm fired before its deadline");
        // The armed timer fired long ago by the time of a later deadline: the next wait
        // re-arms and still ends exactly at the new deadline.
        tokio::time::sleep(Duration::from_secs(10)).await;
        alarm.set(Instant::now() + Duration::from_secs(4));
        let before = Instant::now();
        alarm.expired().await;
        assert_eq!(Instant::now() - before, Duration::from_secs(4));
    }

    #[tokio::test(start_paused = true)]
    async fn an_alarm_without_a_deadline_never_fires() {
        let mut alarm = Alarm::default();
        let waited = tokio::time::timeout(Duration::from_secs(3600), alarm.expired()).await;
        assert!(waited.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn lazy_timeout_returns_ready_work_and_times_out_pending_work() {
        assert_eq!(lazy_timeout(Duration::from_secs(1), async { 7 }).await.ok(), Some(7));
        let start = Instant::now();
        let pending = lazy_timeout(Duration::from_secs(2), std::future::pending::<()>()).await;
        assert!(pending.is_err());
        assert_eq!(Instant::now() - start, Duration::from_secs(2));
        let deadline = start + Duration::from_secs(5);
        let at = lazy_timeout_at(deadline, std::future::pending::<()>()).await;
        assert!(at.is_err());
        assert_eq!(Instant::now(), deadline);
    }
}
