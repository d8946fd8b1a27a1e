//! How many records the next batch may hold (at most batch.max_records): halved after two
//! timeouts in a row, lowered below the endpoint's body limit after a 413, and grown back
//! after successes.

/// Batches delivered at a lowered cap before it doubles again (at first)...
const REGROW: u32 = 8;
/// ...and at most, after repeated refusals of the larger size.
const MAX_REGROW: u32 = 1024;

pub(crate) struct Sizing {
    /// batch.max_records.
    max: u64,
    /// Halved after two timeouts in a row; restored by successes.
    cap: u64,
    /// Successes since `cap` was last lowered: it doubles back every `regrow_after` of them,
    /// so that a proxy's body limit found by a 413 is not hit again by every batch.
    since_shrink: u32,
    /// How many successes that takes; doubled each time a regrown size is refused again.
    regrow_after: u32,
    /// `cap` was just doubled back and nothing was delivered at the new size yet.
    just_regrown: bool,
    timeouts_in_row: u32,
}

impl Sizing {
    pub fn new(max_records: u64) -> Sizing {
        Sizing {
            max: max_records,
            cap: max_records,
            since_shrink: 0,
            regrow_after: REGROW,
            just_regrown: false,
            timeouts_in_row: 0,
        }
    }

    /// The most records the next batch may hold.
    pub fn cap(&self) -> u64 {
        self.cap
    }

    /// A 413 on a request of `refused` records: later batches start below the endpoint's body
    /// limit. Refused right after growing back: the next try waits twice as long.
    pub fn body_limit_found(&mut self, refused: usize) {
        if self.just_regrown {
            self.regrow_after = (self.regrow_after * 2).min(MAX_REGROW);
            self.just_regrown = false;
        }
        self.cap = self.cap.min(refused as u64 / 2).max(1);
        self.since_shrink = 0;
    }

    /// A request of `n` records was accepted (0: accepted but not settled).
    pub fn delivered(&mut self, n: u64) {
        self.timeouts_in_row = 0;
        self.since_shrink += 1;
        if self.just_regrown && n > self.cap / 2 {
            // The grown size went through.
            self.just_regrown = false;
        }
        if self.cap < self.max && self.since_shrink >= self.regrow_after {
            self.since_shrink = 0;
            self.cap = (self.cap * 2).min(self.max);
            self.just_regrown = true;
        }
    }

    /// A request timed out. True when that halved the cap (the second timeout in a row).
    /// Halved right after growing back (a slow link that carries only the smaller size): the
    /// next try waits twice as long, as after a 413, so a slow link costs two timeouts per
    /// doubling of that wait, not two every few batches.
    pub fn timed_out(&mut self) -> bool {
        self.timeouts_in_row += 1;
        if self.timeouts_in_row < 2 {
            return false;
        }
        self.timeouts_in_row = 0;
        if self.just_regrown {
            self.regrow_after = (self.regrow_after * 2).min(MAX_REGROW);
            self.just_regrown = false;
        }
        self.cap = (self.cap / 2).max(1);
        self.since_shrink = 0;
        true
    }

    /// A request failed otherwise (answered, or refused before any answer).
    pub fn failed(&mut self) {
        self.timeouts_in_row = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_timeouts_in_a_row_halve_the_cap() {
        let mut s = Sizing::new(100);
        assert!(!s.timed_out());
        s.failed();
        assert!(!s.timed_out(), "not in a row");
        assert!(s.timed_out());
        assert_eq!(s.cap(), 50);
        assert!(!s.timed_out() && s.timed_out());
        assert_eq!(s.cap(), 25);
        for _ in 0..20 {
            s.timed_out();
        }
        assert_eq!(s.cap(), 1, "never below one record");
    }

    #[test]
    fn the_cap_regrows_after_successes() {
        let mut s = Sizing::new(100);
        s.body_limit_found(64);
        assert_eq!(s.cap(), 32);
        for _ in 0..REGROW - 1 {
            s.delivered(32);
        }
        assert_eq!(s.cap(), 32);
        s.delivered(32);
        assert_eq!(s.cap(), 64);
        for _ in 0..REGROW {
            s.delivered(64);
        }
        assert_eq!(s.cap(), 100, "never above batch.max_records");
        for _ in 0..3 * REGROW {
            s.delivered(100);
        }
        assert_eq!(s.cap(), 100);
    }

    #[test]
    fn a_regrown_size_refused_again_waits_twice_as_long() {
        let mut s = Sizing::new(100);
        s.body_limit_found(100);
        assert_eq!(s.cap(), 50);
        for _ in 0..REGROW {
            s.delivered(50);
        }
        assert_eq!(s.cap(), 100);
        // The regrown size hits the limit again.
        s.body_limit_found(100);
        assert_eq!(s.cap(), 50);
        for _ in 0..2 * REGROW - 1 {
            s.delivered(50);
        }
        assert_eq!(s.cap(), 50);
        s.delivered(50);
        assert_eq!(s.cap(), 100);
        // Delivered at the regrown size: the wait stays where it is.
        s.delivered(100);
        s.body_limit_found(100);
        for _ in 0..2 * REGROW {
            s.delivered(50);
        }
        assert_eq!(s.cap(), 100);
        // Doubling stops at MAX_REGROW.
        let mut s = Sizing::new(2);
        for _ in 0..20 {
            s.body_limit_found(2);
            while s.cap() < 2 {
                s.delivered(1);
            }
        }
        assert_eq!(s.regrow_after, MAX_REGROW);
    }

    /// A link too slow for the regrown size: each regrowth costs two timeouts, and comes
    /// after twice as many successes as the one before.
    #[test]
    fn a_regrown_size_that_times_out_again_waits_twice_as_long() {
        let mut s = Sizing::new(100);
        assert!(!s.timed_out() && s.timed_out());
        assert_eq!(s.cap(), 50);
        let mut timeouts = 2;
        let mut delivered = 0;
        // 50 records pass, 100 time out.
        while delivered < 200 * REGROW {
            if s.cap() > 50 {
                s.timed_out();
                timeouts += 1;
            } else {
                s.delivered(50);
                delivered += 1;
            }
        }
        // Regrowths after 8, 16, 32, ... successes: 2 + 2 × 7 timeouts in 1600 batches
        // (without the doubling: 2 every 8 batches, 400).
        assert_eq!(timeouts, 16);
        assert_eq!(s.cap(), 50);
    }
}
