//! A per-second budget of log lines for events a peer or a fault can repeat as fast as it
//! likes (refused admin calls, failed accepts): the first few each second are logged,
//! and the rest are counted and the count rides on the next line logged.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Lines logged in the current one-second window, and those left out.
#[derive(Debug)]
pub struct LogBudget {
    per_second: u32,
    window_start: Option<Instant>,
    logged: u32,
    left_out: u64,
}

impl LogBudget {
    /// A budget of `per_second` lines a second.
    pub const fn new(per_second: u32) -> LogBudget {
        LogBudget { per_second, window_start: None, logged: 0, left_out: 0 }
    }

    /// `Some(n)` if a line at `now` may be logged, `n` being how many were left out since
    /// the last one logged; `None` if the window's budget is spent.
    pub fn take(&mut self, now: Instant) -> Option<u64> {
        let second = Duration::from_secs(1);
        if self.window_start.is_none_or(|start| now.saturating_duration_since(start) >= second) {
            self.window_start = Some(now);
            self.logged = 0;
        }
        if self.logged >= self.per_second {
            self.left_out += 1;
            return None;
        }
        self.logged += 1;
        Some(std::mem::take(&mut self.left_out))
    }

    /// [`Self::take`] on a budget shared by threads. A lock is fine: the events it counts
    /// are off the request path, and a poisoned budget is still a valid count.
    pub fn take_shared(budget: &Mutex<LogBudget>) -> Option<u64> {
        budget.lock().unwrap_or_else(PoisonError::into_inner).take(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_bounded_per_second_and_count_the_rest() {
        let mut budget = LogBudget::new(10);
        let start = Instant::now();
        let logged = (0..15).filter(|_| budget.take(start).is_some()).count();
        assert_eq!(logged, 10);
        let later = start + Duration::from_millis(999);
        assert_eq!(budget.take(later), None, "still the same window");
        let next = start + Duration::from_secs(1);
        assert_eq!(budget.take(next), Some(6), "the next line carries the count left out");
        assert_eq!(budget.take(next), Some(0));
    }
}
