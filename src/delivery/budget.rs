//! Metered links (docs/reference.md, configuration): the upload rate cap and the byte budget.
//! The worker asks before each request, with the request's body as it goes on the wire
//! (encoded and compressed once, then sent as it is), and tells the bytes each attempt sent.
//!
//! **Rate cap** (`http.max_bytes_per_s`, R): a token bucket of one second's allowance (R bytes),
//! full at first and refilled at R bytes per second. A request of n bytes goes once the bucket
//! holds min(n, R) and takes n from it: the bucket may go below zero, so a request larger than
//! one second's allowance makes the next one wait in proportion to its size. Over any span the
//! bytes sent stay within R × (span + 1 s). The wait is inline (a sleep on the worker's
//! condvar that close ends) and `next_retry_in_ms` shows it. With a cap, a batch is also
//! planned to at most R × `http.timeout_ms` / 2 body bytes (before compression), so that a
//! request the link carries at R or faster ends within half the timeout.
//!
//! **Budget** (`http.budget_bytes`, B, per `http.budget_period_ms`, P): every attempt counts,
//! at the bytes it put on the wire (retries, 413 split steps, bisection steps, probes, a
//! keep-alive resend). Periods follow each other from the start of the first one on the wall
//! clock; a clock that reads before the period's start ends the period (a new one starts
//! now). The period's start and use are kept in the buffer file (src/store/budget.rs). A
//! request larger than what is left is not sent: the batch stays pending until the period
//! ends, BUDGET_EXHAUSTED fires once for the period, and `next_retry_in_ms` says when sending
//! resumes (`retry_now` does not cut this wait). Batches are planned to at most B body bytes,
//! and the first request of a period is always allowed: so a record larger than a whole
//! period's budget is sent alone at the start of a period, and then uses up that period.
//!
//! **Refusals** (src/delivery/reject.rs): with a budget, the bytes of requests the endpoint
//! refused with 400, 413 or 422 in a period may take at most [`REFUSED_SHARE`] of B. A
//! bisection step or a probe that would go beyond that share is not sent: the batch waits
//! `retry.max_ms` as a configuration problem, and while the share is spent a refused batch is
//! retried one record at a time. An endpoint that refuses everything thus spends at most a
//! tenth of the budget on bisection and probes, and then one record per `retry.max_ms`.

use std::time::{Duration, Instant};

/// The part of a period's budget that refused requests may take (bisection steps and probes
/// stop there): one tenth.
pub(crate) const REFUSED_SHARE: u64 = 10;

/// The longest the worker sleeps in one go on a budget wait: the wall clock may be set
/// meanwhile (an NTP sync), and the period's end is measured on it.
pub(crate) const BUDGET_RECHECK: Duration = Duration::from_secs(30);

/// Why a request was not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hold {
    /// It does not fit in what the period's budget has left.
    Budget,
    /// A bisection step or probe beyond the refused share.
    Share,
    /// Close came during a rate-cap wait.
    Stopping,
}

/// What the worker asks before a request and tells after it.
pub(crate) struct Meter {
    rate: Option<Rate>,
    budget: Option<Budget>,
}

struct Rate {
    per_s: u64,
    /// When the bucket is full again (None: full).
    full_at: Option<Instant>,
}

pub(crate) struct Budget {
    bytes: u64,
    period_ms: u64,
    /// The current period's start, unix ms.
    start_ms: i64,
    /// Body bytes sent in it.
    used: u64,
    /// Body bytes of refused requests in it (not kept in the file).
    refused: u64,
    /// A request waits for the next period.
    held: bool,
    /// A refusal step was not sent: the refused share is spent.
    share_hit: bool,
    /// BUDGET_EXHAUSTED fired for this period.
    announced: bool,
}

impl Meter {
    /// `max_bytes_per_s` and `budget_bytes` 0: none. `stored`: the budget state the buffer
    /// file keeps (period start, bytes used), if any.
    pub fn new(
        max_bytes_per_s: u64,
        budget_bytes: u64,
        period_ms: u64,
        stored: Option<(i64, u64)>,
        now_ms: i64,
    ) -> Meter {
        let rate = (max_bytes_per_s > 0).then_some(Rate {
            per_s: max_bytes_per_s,
            full_at: None,
        });
        let budget = (budget_bytes > 0).then(|| {
            let (start_ms, used) = stored.unwrap_or((now_ms, 0));
            let mut b = Budget {
                bytes: budget_bytes,
                period_ms: period_ms.max(1),
                start_ms,
                used,
                refused: 0,
                held: false,
                share_hit: false,
                announced: false,
            };
            b.roll(now_ms);
            b
        });
        Meter { rate, budget }
    }

    /// The most body bytes (before compression) a batch may be planned to: `batch_max_bytes`,
    /// lowered by the budget (B) and the rate cap (R × timeout / 2).
    pub fn plan_limit(&self, batch_max_bytes: u64, timeout_ms: u64) -> u64 {
        let mut limit = batch_max_bytes;
        if let Some(b) = &self.budget {
            limit = limit.min(b.bytes);
        }
        if let Some(r) = &self.rate {
            let in_time = (r.per_s as u128 * timeout_ms as u128 / 2000).min(u64::MAX as u128);
            limit = limit.min((in_time as u64).max(1));
        }
        limit
    }

    /// Whether a budget is set.
    pub fn budgeted(&self) -> bool {
        self.budget.is_some()
    }

    /// May a request of `n` bytes go now, as far as the budget goes? `refusal_step`: a
    /// bisection step or a probe (the refused share applies). Starts a new period when the
    /// current one is over.
    pub fn admit(&mut self, n: u64, refusal_step: bool, now_ms: i64) -> Result<(), Hold> {
        let Some(b) = self.budget.as_mut() else {
            return Ok(());
        };
        b.roll(now_ms);
        if b.used > 0 && n > b.bytes.saturating_sub(b.used) {
            b.held = true;
            return Err(Hold::Budget);
        }
        if refusal_step && b.refused.saturating_add(n) > b.bytes / REFUSED_SHARE {
            b.share_hit = true;
            return Err(Hold::Share);
        }
        Ok(())
    }

    /// How long a request of `n` bytes must wait for the rate cap (None: it may go now).
    pub fn rate_wait(&self, n: u64, now: Instant) -> Option<Duration> {
        let r = self.rate.as_ref()?;
        let full_at = r.full_at?;
        // The bucket holds min(n, R) once the debt left is at most 1 s − min(n, R)/R.
        let slack = Duration::from_secs(1).saturating_sub(cost(n.min(r.per_s), r.per_s));
        let go = full_at.checked_sub(slack).unwrap_or(now);
        (go > now).then(|| go - now)
    }

    /// An attempt that started at `started` put `n` body bytes on the wire; `refused`: the
    /// endpoint refused it (400, 413, 422).
    pub fn sent(&mut self, n: u64, refused: bool, started: Instant, now_ms: i64) {
        if let Some(r) = self.rate.as_mut() {
            let base = r.full_at.filter(|&t| t > started).unwrap_or(started);
            r.full_at = Some(base + cost(n, r.per_s));
        }
        if let Some(b) = self.budget.as_mut() {
            b.roll(now_ms);
            b.used = b.used.saturating_add(n);
            if refused {
                b.refused = b.refused.saturating_add(n);
            }
        }
    }

    /// The budget's state as the buffer file keeps it (period start, bytes used).
    pub fn state(&self) -> Option<(i64, u64)> {
        self.budget.as_ref().map(|b| (b.start_ms, b.used))
    }

    /// `budget_left_bytes` (u64::MAX without a budget).
    pub fn left(&self) -> u64 {
        self.budget
            .as_ref()
            .map_or(crate::status::NO_BUDGET, |b| b.bytes.saturating_sub(b.used))
    }

    /// The refused share is spent for this period (a refusal step did not fit in it).
    pub fn share_spent(&self) -> bool {
        self.budget
            .as_ref()
            .is_some_and(|b| b.share_hit || b.refused >= b.bytes / REFUSED_SHARE)
    }

    /// While the budget is spent (or a request waits for the next period): how long until the
    /// period ends, in ms. None when sending may go on (a period that ended is rolled over).
    pub fn budget_wait_ms(&mut self, now_ms: i64) -> Option<u64> {
        let b = self.budget.as_mut()?;
        b.roll(now_ms);
        if !b.held && b.used < b.bytes {
            return None;
        }
        Some(b.end_ms().saturating_sub(now_ms).max(1) as u64)
    }

    /// The BUDGET_EXHAUSTED message when the budget is spent (or a request waits) and the
    /// event has not fired yet this period; marks it fired.
    pub fn announce(&mut self, now_ms: i64) -> Option<String> {
        let b = self.budget.as_mut()?;
        if b.announced || (!b.held && b.used < b.bytes) {
            return None;
        }
        b.announced = true;
        let end = b.end_ms();
        Some(format!(
            "byte budget spent: {} of {} bytes sent in the period that started at unix ms {}; \
             sending resumes in {} s (unix ms {end})",
            b.used,
            b.bytes,
            b.start_ms,
            (end.saturating_sub(now_ms).max(0) as u64).div_ceil(1000),
        ))
    }
}

impl Budget {
    fn end_ms(&self) -> i64 {
        self.start_ms
            .saturating_add(self.period_ms.min(i64::MAX as u64) as i64)
    }

    /// Starts a new period when the current one is over, or when the wall clock reads before
    /// its start (it was set back).
    fn roll(&mut self, now_ms: i64) {
        let period = self.period_ms.min(i64::MAX as u64) as i64;
        let start = if now_ms < self.start_ms {
            now_ms
        } else if now_ms >= self.end_ms() {
            // Periods follow each other from the first one's start.
            now_ms - (now_ms - self.start_ms) % period
        } else {
            return;
        };
        self.start_ms = start;
        self.used = 0;
        self.refused = 0;
        self.held = false;
        self.share_hit = false;
        self.announced = false;
    }
}

/// How long `n` bytes take at `per_s` bytes per second.
fn cost(n: u64, per_s: u64) -> Duration {
    let us = (n as u128 * 1_000_000 / per_s.max(1) as u128).min(u64::MAX as u128) as u64;
    Duration::from_micros(us)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_800_000_000_000;

    #[test]
    fn the_rate_cap_spaces_requests_by_their_size() {
        let mut m = Meter::new(1000, 0, 1, None, T0);
        let t = Instant::now();
        assert_eq!(m.rate_wait(500, t), None, "a full bucket at first");
        m.sent(500, false, t, T0);
        // 500 bytes owed (0.5 s): another 500 may go once the bucket holds 500 again, at once.
        assert_eq!(m.rate_wait(500, t), None);
        m.sent(500, false, t, T0);
        // 1 s owed: a request of 1000 waits the whole second, one of 100 a tenth.
        assert_eq!(m.rate_wait(1000, t), Some(Duration::from_secs(1)));
        assert_eq!(m.rate_wait(100, t), Some(Duration::from_millis(100)));
        // A request of 3000 (three seconds' allowance) leaves three seconds owed.
        let t1 = t + Duration::from_secs(1);
        m.sent(3000, false, t1, T0);
        assert_eq!(m.rate_wait(1000, t1), Some(Duration::from_secs(3)));
        assert_eq!(
            m.rate_wait(1000, t1 + Duration::from_secs(3)),
            None,
            "and no more"
        );
        assert!(Meter::new(0, 0, 1, None, T0)
            .rate_wait(u64::MAX, t)
            .is_none());
    }

    #[test]
    fn the_budget_holds_requests_until_the_period_ends() {
        let mut m = Meter::new(0, 1000, 10_000, None, T0);
        assert_eq!(m.left(), 1000);
        assert_eq!(m.budget_wait_ms(T0), None);
        assert_eq!(m.admit(600, false, T0), Ok(()));
        m.sent(600, false, Instant::now(), T0);
        assert_eq!(m.admit(500, false, T0 + 1), Err(Hold::Budget), "400 left");
        assert_eq!(m.budget_wait_ms(T0 + 1000), Some(9000));
        let msg = m.announce(T0 + 1000).unwrap();
        assert!(
            msg.contains("600 of 1000") && msg.contains("in 9 s"),
            "{msg}"
        );
        assert_eq!(m.announce(T0 + 1000), None, "once per period");
        // The period ends: everything is allowed again.
        assert_eq!(m.budget_wait_ms(T0 + 10_000), None);
        assert_eq!(m.state(), Some((T0 + 10_000, 0)));
        assert_eq!(m.left(), 1000);
        // A request larger than the whole budget goes first in a period, and spends it.
        assert_eq!(m.admit(5000, false, T0 + 10_001), Ok(()));
        m.sent(5000, false, Instant::now(), T0 + 10_001);
        assert_eq!(m.left(), 0);
        assert_eq!(m.budget_wait_ms(T0 + 10_001), Some(9999));
        assert!(
            m.announce(T0 + 10_001).is_some(),
            "a new period, a new event"
        );
        // Periods follow each other from the first one's start.
        assert_eq!(m.budget_wait_ms(T0 + 45_000), None);
        assert_eq!(m.state(), Some((T0 + 40_000, 0)));
    }

    #[test]
    fn a_clock_set_back_ends_the_period_and_the_state_is_resumed() {
        let m = Meter::new(0, 1000, 10_000, Some((T0, 700)), T0 + 5000);
        assert_eq!(m.left(), 300, "resumed from the file");
        let mut m = Meter::new(0, 1000, 10_000, Some((T0, 1000)), T0 + 5000);
        assert_eq!(m.budget_wait_ms(T0 + 5000), Some(5000));
        // The clock reads before the period's start: a new period starts now.
        assert_eq!(m.budget_wait_ms(T0 - 60_000), None);
        assert_eq!(m.state(), Some((T0 - 60_000, 0)));
    }

    #[test]
    fn refused_requests_take_at_most_a_share_of_the_budget() {
        let mut m = Meter::new(0, 10_000, 86_400_000, None, T0);
        let t = Instant::now();
        // A first attempt is not a refusal step: only the budget applies.
        assert_eq!(m.admit(800, false, T0), Ok(()));
        m.sent(800, true, t, T0);
        assert_eq!(m.admit(200, true, T0), Ok(()), "1000 is the share");
        assert_eq!(m.admit(201, true, T0), Err(Hold::Share));
        m.sent(200, true, t, T0);
        assert!(m.share_spent());
        assert_eq!(m.admit(5000, false, T0), Ok(()));
    }

    #[test]
    fn batches_are_planned_within_the_budget_and_the_timeout() {
        let m = Meter::new(0, 0, 1, None, T0);
        assert_eq!(m.plan_limit(262_144, 30_000), 262_144);
        let m = Meter::new(0, 100_000, 1, None, T0);
        assert_eq!(m.plan_limit(262_144, 30_000), 100_000);
        // 10 KB/s and a 4 s timeout: 20 KB.
        let m = Meter::new(10_000, 0, 1, None, T0);
        assert_eq!(m.plan_limit(262_144, 4000), 20_000);
    }
}
