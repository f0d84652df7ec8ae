//! A worker's drain signal.
//!
//! Accept loops wait on it through a `Notify`. Connections wait on it on every idle wait
//! between requests, which a `Notify` would charge two lock round trips and a waiter
//! list insert and removal per request; instead a connection registers its task's waker
//! once, for its whole life ([`Watch`]), and each idle wait only checks a flag.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// A worker's own drain signal, and also the stop signal of one listener's accept loops
/// when a reload removes it. Keeping it per worker means a wait on it touches no lock
/// shared with other workers (the process-wide `watch` channel has one).
#[derive(Debug, Default)]
pub struct Drain {
    draining: Cell<bool>,
    notify: tokio::sync::Notify,
    /// The wakers of connection tasks holding a [`Watch`]; one slot per connection, so
    /// the table is bounded by the worker's connection limit.
    watchers: RefCell<Slots>,
}

/// Waker slots with a free list, so a closing connection's slot is reused.
#[derive(Debug, Default)]
struct Slots {
    wakers: Vec<Option<Waker>>,
    free: Vec<usize>,
}

impl Drain {
    /// Whether this worker is draining.
    pub fn is_draining(&self) -> bool {
        self.draining.get()
    }

    /// Resolves once the worker starts draining.
    pub async fn wait(&self) {
        let notified = self.notify.notified();
        if self.draining.get() {
            return;
        }
        notified.await;
    }

    /// A connection's handle on the signal: a future that completes once the worker
    /// drains, cheap to poll again and again.
    pub fn watch(&self) -> Watch<'_> {
        Watch { drain: self, slot: None }
    }

    /// Starts draining; waiters and watching connections wake.
    pub fn start(&self) {
        self.draining.set(true);
        self.notify.notify_waiters();
        // Collected first: waking must not happen while the table is borrowed.
        let wakers: Vec<Waker> = self.watchers.borrow().wakers.iter().flatten().cloned().collect();
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Connections currently registered.
    #[cfg(test)]
    fn registered(&self) -> usize {
        self.watchers.borrow().wakers.iter().flatten().count()
    }
}

/// Completes once the worker drains. The first pending poll registers the task's waker;
/// later polls only check the flag (and replace the waker if the task's changed).
#[derive(Debug)]
pub struct Watch<'a> {
    drain: &'a Drain,
    slot: Option<usize>,
}

impl Future for Watch<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.drain.draining.get() {
            return Poll::Ready(());
        }
        let mut slots = this.drain.watchers.borrow_mut();
        match this.slot {
            Some(slot) => match &mut slots.wakers[slot] {
                Some(stored) if stored.will_wake(cx.waker()) => {}
                stored => *stored = Some(cx.waker().clone()),
            },
            None => {
                let waker = Some(cx.waker().clone());
                let slot = match slots.free.pop() {
                    Some(slot) => {
                        debug_assert!(slots.wakers[slot].is_none());
                        slots.wakers[slot] = waker;
                        slot
                    }
                    None => {
                        slots.wakers.push(waker);
                        slots.wakers.len() - 1
                    }
                };
                this.slot = Some(slot);
            }
        }
        Poll::Pending
    }
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            let mut slots = self.drain.watchers.borrow_mut();
            slots.wakers[slot] = None;
            slots.free.push(slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_watching_connection_wakes_when_the_worker_drains() {
        let drain = std::rc::Rc::new(Drain::default());
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let watcher = {
                    let drain = std::rc::Rc::clone(&drain);
                    tokio::task::spawn_local(async move {
                        let mut watch = drain.watch();
                        // Polled many times, as the idle wait of every request does.
                        for _ in 0..3 {
                            let idle = tokio::time::timeout(Duration::from_secs(1), &mut watch);
                            assert!(idle.await.is_err());
                        }
                        watch.await;
                    })
                };
                tokio::time::sleep(Duration::from_secs(5)).await;
                assert_eq!(drain.registered(), 1, "one slot for the whole connection");
                drain.start();
                watcher.await.expect("the watcher finished");
                assert_eq!(drain.registered(), 0, "the slot is released");
            })
            .await;
    }

    #[tokio::test]
    async fn slots_are_reused_and_a_drained_watch_is_ready_at_once() {
        let drain = Drain::default();
        for _ in 0..10 {
            let mut watch = drain.watch();
            // Polled once, without waiting.
            let polled = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut watch).poll(cx)));
            assert!(polled.await.is_pending());
        }
        assert_eq!(drain.watchers.borrow().wakers.len(), 1, "one slot, reused");
        drain.start();
        drain.watch().await;
    }
}
