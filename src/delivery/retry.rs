//! When the next delivery attempt may go out (docs/reference.md, the wire): backoff, `Retry-After`, and
//! the wait after a configuration problem.
//!
//! The backoff is exponential with full jitter: after the n-th failure in a row the wait is drawn
//! uniformly from `[0, min(retry.max_ms, retry.initial_ms * 2^n)]`. A `Retry-After` answered by
//! the endpoint is obeyed, capped at `retry.max_ms` (see [`cap`]), and is a floor that
//! `retry_now` does not cut. Configuration problems (and 413/400/422 answers that end an
//! attempt) wait `retry.max_ms`.

use crate::http::Outcome;
use std::time::{Duration, Instant, SystemTime};

/// The worker's wait between attempts.
pub(crate) struct RetryClock {
    backoff: Backoff,
    /// Earliest next attempt; `retry_now` may cut it short, down to `hard_until`.
    wait_until: Option<Instant>,
    /// What a Retry-After asked for (capped): `retry_now` never cuts below it.
    hard_until: Option<Instant>,
}

impl RetryClock {
    pub fn new(initial_ms: u64, max_ms: u64) -> RetryClock {
        RetryClock {
            backoff: Backoff::new(initial_ms, max_ms),
            wait_until: None,
            hard_until: None,
        }
    }

    /// A failed attempt that ended as `outcome`: starts the wait before the next one (backoff,
    /// Retry-After or retry.max_ms) and returns its length.
    pub fn failed(
        &mut self,
        outcome: Outcome,
        retry_after: Option<Duration>,
        now: Instant,
    ) -> Duration {
        let max = self.backoff.max();
        let (delay, hard) = match outcome {
            Outcome::Config | Outcome::Split | Outcome::Bisect => (max, None),
            _ => {
                // The exponent moves even when the server sets the pace.
                let backoff = self.backoff.next_delay();
                match retry_after {
                    // Not earlier than told (capped at retry.max_ms), and never without
                    // backoff: "Retry-After: 0", or an HTTP date that a clock running ahead
                    // sees in the past, must not make a loop of requests.
                    Some(ra) => {
                        let ra = cap(ra, max);
                        (ra.max(backoff), Some(ra))
                    }
                    None => (backoff, None),
                }
            }
        };
        self.wait_until = Some(now + delay);
        self.hard_until = hard.map(|h| now + h);
        delay
    }

    /// Nothing was accepted while records were refused on their own (a proxy refusing
    /// everything): the next attempt waits retry.max_ms.
    pub fn config_problem(&mut self, now: Instant) {
        self.wait_until = Some(now + self.backoff.max());
        self.hard_until = None;
    }

    /// A 2xx: the backoff starts again from its first step.
    pub fn succeeded(&mut self) {
        self.backoff.reset();
    }

    /// A wait is running (or has elapsed without being looked at).
    pub fn waiting(&self) -> bool {
        self.wait_until.is_some()
    }

    /// `retry_now`: the backoff is cut short; a Retry-After is not.
    pub fn cut_short(&mut self, now: Instant) {
        if self.wait_until.is_some() {
            self.wait_until = self.hard_until.filter(|&h| h > now);
            if self.wait_until.is_none() {
                self.hard_until = None;
            }
        }
    }

    /// What is left of the wait; None once it is over (or when none runs).
    pub fn remaining(&mut self, now: Instant) -> Option<Duration> {
        let t = self.wait_until?;
        if now < t {
            return Some(t - now);
        }
        self.wait_until = None;
        self.hard_until = None;
        None
    }
}

/// Exponential backoff with full jitter between `retry.initial_ms` and `retry.max_ms`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Backoff {
    initial_ms: u64,
    max_ms: u64,
    exponent: u32,
}

impl Backoff {
    /// A backoff starting at `initial_ms` and never waiting longer than `max_ms`.
    /// `initial_ms` above `max_ms` is treated as `max_ms` (the config rejects that combination).
    pub fn new(initial_ms: u64, max_ms: u64) -> Backoff {
        Backoff {
            initial_ms: initial_ms.min(max_ms),
            max_ms,
            exponent: 0,
        }
    }

    /// The upper bound of the next delay: `min(max, initial * 2^exponent)`, saturating.
    pub fn ceiling(&self) -> Duration {
        let factor = if self.exponent >= 64 {
            u64::MAX
        } else {
            1u64 << self.exponent
        };
        Duration::from_millis(self.initial_ms.saturating_mul(factor).min(self.max_ms))
    }

    /// The delay before the next attempt after a failure: uniform random in
    /// `[0, min(max, initial * 2^exponent)]` (full jitter, millisecond steps); then the exponent
    /// grows by one (saturating).
    pub fn next_delay(&mut self) -> Duration {
        let ceiling_ms = self.ceiling().as_millis() as u64;
        let ms = fastrand::u64(0..=ceiling_ms);
        self.exponent = self.exponent.saturating_add(1);
        Duration::from_millis(ms)
    }

    /// Back to the first step, after a 2xx.
    pub fn reset(&mut self) {
        self.exponent = 0;
    }

    /// How many delays have been drawn since the last reset (saturating).
    #[cfg(test)]
    pub fn exponent(&self) -> u32 {
        self.exponent
    }

    /// The cap, `retry.max_ms`.
    pub fn max(&self) -> Duration {
        Duration::from_millis(self.max_ms)
    }
}

/// Parses a `Retry-After` value: delta-seconds or an HTTP-date, relative to `now`.
///
/// A date in the past gives `Duration::ZERO`; anything else unparsable (negative or fractional
/// numbers, garbage, an empty value) gives `None`. The result is not capped (see [`cap`]); a
/// number of seconds too large for `u64` saturates.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim_matches(|c: char| c == ' ' || c == '\t');
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        let secs = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// `min(d, max)`: a `Retry-After` is obeyed only up to `retry.max_ms`.
pub fn cap(d: Duration, max: Duration) -> Duration {
    d.min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_after_is_a_floor_that_retry_now_does_not_cut() {
        let now = Instant::now();
        let mut c = RetryClock::new(0, 60_000);
        // Backoff 0: the Retry-After alone sets the wait.
        let d = c.failed(Outcome::Retry, Some(Duration::from_secs(5)), now);
        assert_eq!(d, Duration::from_secs(5));
        c.cut_short(now);
        assert_eq!(c.remaining(now), Some(Duration::from_secs(5)));
        // Over its end, the wait is over.
        assert_eq!(c.remaining(now + Duration::from_secs(5)), None);
        assert!(!c.waiting());
        // Capped at retry.max_ms.
        let d = c.failed(Outcome::Retry, Some(Duration::from_secs(3600)), now);
        assert_eq!(d, Duration::from_secs(60));
    }

    #[test]
    fn retry_now_cuts_a_backoff_short() {
        let now = Instant::now();
        let mut c = RetryClock::new(1000, 1000);
        let d = c.failed(Outcome::Timeout, None, now);
        assert!(d <= Duration::from_secs(1));
        c.cut_short(now);
        assert_eq!(c.remaining(now), None);
        // A Retry-After of 0 (or a date in the past) still waits the backoff.
        let mut c = RetryClock::new(1000, 1000);
        for _ in 0..50 {
            let d = c.failed(Outcome::Retry, Some(Duration::ZERO), now);
            assert_eq!(c.remaining(now), (d > Duration::ZERO).then_some(d));
            c.succeeded();
        }
    }

    #[test]
    fn config_problems_and_refusals_wait_retry_max() {
        let now = Instant::now();
        let mut c = RetryClock::new(10, 30_000);
        for o in [Outcome::Config, Outcome::Split, Outcome::Bisect] {
            let d = c.failed(o, Some(Duration::from_secs(1)), now);
            assert_eq!(d, Duration::from_secs(30));
            assert_eq!(c.backoff.exponent(), 0, "{o:?}: no backoff step");
            // Not a Retry-After wait: retry_now cuts it.
            c.cut_short(now);
            assert!(!c.waiting());
        }
        c.config_problem(now);
        assert_eq!(c.remaining(now), Some(Duration::from_secs(30)));
        c.failed(Outcome::Retry, None, now);
        c.failed(Outcome::Retry, None, now);
        assert_eq!(c.backoff.exponent(), 2);
        c.succeeded();
        assert_eq!(c.backoff.exponent(), 0);
    }

    #[test]
    fn full_jitter_within_growing_bounds() {
        let mut b = Backoff::new(100, 1000);
        assert_eq!(b.exponent(), 0);
        assert_eq!(b.max(), Duration::from_millis(1000));
        let bounds = [100u64, 200, 400, 800, 1000, 1000, 1000];
        for (i, bound) in bounds.iter().enumerate() {
            assert_eq!(b.ceiling(), Duration::from_millis(*bound));
            let d = b.next_delay();
            assert!(d <= Duration::from_millis(*bound), "step {i}: {d:?}");
            assert_eq!(b.exponent(), i as u32 + 1);
        }
        b.reset();
        assert_eq!(b.exponent(), 0);
        assert_eq!(b.ceiling(), Duration::from_millis(100));
    }

    #[test]
    fn jitter_spreads_over_the_whole_range() {
        let mut lo = u128::MAX;
        let mut hi = 0;
        for _ in 0..2000 {
            let mut b = Backoff::new(1000, 1000);
            let d = b.next_delay().as_millis();
            lo = lo.min(d);
            hi = hi.max(d);
        }
        assert!(lo < 100, "lowest {lo}");
        assert!(hi > 900, "highest {hi}");
    }

    #[test]
    fn exponent_saturates_without_overflow() {
        let mut b = Backoff::new(500, u64::MAX);
        for _ in 0..200 {
            let _ = b.next_delay();
        }
        assert_eq!(b.exponent(), 200);
        assert_eq!(b.ceiling(), Duration::from_millis(u64::MAX));
        b.exponent = u32::MAX;
        let _ = b.next_delay();
        assert_eq!(b.exponent(), u32::MAX);
    }

    #[test]
    fn zero_initial_never_waits() {
        let mut b = Backoff::new(0, 1000);
        for _ in 0..10 {
            assert_eq!(b.next_delay(), Duration::ZERO);
        }
    }

    #[test]
    fn initial_above_max_is_capped() {
        let mut b = Backoff::new(5000, 1000);
        assert!(b.next_delay() <= Duration::from_millis(1000));
    }

    #[test]
    fn retry_after_seconds() {
        let now = SystemTime::now();
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn retry_after_http_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_320_000);
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(30))
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        // RFC 850 and asctime forms are HTTP-dates too.
        assert!(parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", now).is_some());
        assert!(parse_retry_after("Sun Nov  6 08:49:37 1994", now).is_some());
    }

    #[test]
    fn retry_after_garbage() {
        let now = SystemTime::now();
        for bad in [
            "",
            "  ",
            "-5",
            "1.5",
            "soon",
            "5s",
            "Mon, 99 Foo 2024 00:00:00 GMT",
        ] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn cap_is_min() {
        let max = Duration::from_secs(60);
        assert_eq!(cap(Duration::from_secs(5), max), Duration::from_secs(5));
        assert_eq!(cap(Duration::from_secs(3600), max), max);
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(1024))]

        /// Delta-seconds (leading zeros, padding, beyond u64) and HTTP-dates in the IMF and
        /// asctime forms, past or future, parse to what they ask for.
        #[test]
        fn retry_after_parses_seconds_and_dates(
            secs in "[0-9]{1,40}",
            offset in -100_000i64..200_000,
            asctime: bool,
            pad in "[ \t]{0,2}",
        ) {
            let now = SystemTime::now();
            let want = secs.parse::<u64>().unwrap_or(u64::MAX);
            proptest::prop_assert_eq!(
                parse_retry_after(&format!("{pad}{secs}{pad}"), now),
                Some(Duration::from_secs(want))
            );
            let at = if offset >= 0 {
                now + Duration::from_secs(offset as u64)
            } else {
                now - Duration::from_secs(offset.unsigned_abs())
            };
            let imf = httpdate::fmt_http_date(at);
            let text = if asctime {
                // "Sun Nov  6 08:49:37 1994" from "Sun, 06 Nov 1994 08:49:37 GMT".
                let p: Vec<&str> = imf.split(' ').collect();
                let day: u32 = p[1].parse().unwrap_or(0);
                format!("{} {} {:>2} {} {}", &p[0][..3], p[2], day, p[4], p[3])
            } else {
                imf
            };
            let got = parse_retry_after(&format!("{pad}{text}{pad}"), now);
            // Dates carry whole seconds.
            let want = at.duration_since(now).unwrap_or(Duration::ZERO);
            proptest::prop_assert!(
                got.is_some_and(|g| g.abs_diff(want) <= Duration::from_secs(1)),
                "{text:?}: got {got:?}, want {want:?}"
            );
            let max = Duration::from_millis(offset.unsigned_abs() % 100_000 + 1);
            if let Some(g) = got {
                proptest::prop_assert_eq!(cap(g, max), g.min(max));
            }
        }

        /// Anything that is neither a number nor an HTTP-date asks for nothing, and no text
        /// panics.
        #[test]
        fn retry_after_ignores_garbage(text in "\\PC{0,40}|[ -~]{0,30}") {
            let now = SystemTime::now();
            let t = text.trim_matches(|c| c == ' ' || c == '\t');
            let numeric = !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
            let got = parse_retry_after(&text, now);
            if !numeric && httpdate::parse_http_date(t).is_err() {
                proptest::prop_assert_eq!(got, None, "{:?}", text);
            }
        }
    }
}
