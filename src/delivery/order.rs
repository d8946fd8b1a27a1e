//! `delivery.order` (docs/reference.md, configuration): which pending records a batch takes.
//!
//! `oldest_first` forms each batch from the lowest pending seqs; `newest_first` from the highest
//! (the store's `fetch_in` reads from the top down and returns them in seq order), so after an
//! outage the freshest records arrive first and the backlog drains behind them, batch by batch
//! downwards; records stored meanwhile are newer than all of it and go next.
//!
//! A failed batch that the endpoint is known not to have processed (no connection was made:
//! refused, DNS, connect timeout, TLS handshake; or it answered 429 or 503:
//! `Attempt::not_processed`) is formed afresh with newest_first: the newest pending records
//! again, so the first request accepted after an outage holds the newest records, not the
//! batch that was failing when the outage began. Sending other records is safe there: the
//! Idempotency-Key of a request the endpoint never processed need not repeat, since nothing
//! on the other side can hold it. After a timeout, a connection broken once the request went
//! out, or any other answer, the endpoint may have processed it, and the batch is sent again
//! as it was (the same records, the same key). oldest_first needs no such rule: its retried
//! batch is formed from the head, the same records either way.
//!
//! What does not change with the order otherwise: a retried batch is the same seq range (the
//! same records, less any dropped); two timeouts form the next batch afresh (newest_first: the
//! newest records again, at most the halved cap); a 413 or a 400 splits the batch in flight
//! wherever it sits; the capacity policy and TTL drop the oldest records outside the seqs in
//! flight and read ahead; a settled batch that is not the oldest pending is deleted at once
//! (only the oldest moves the delivered watermark, `Store::settle_delivered`). What differs is
//! here: where the read-ahead reads and when its read is stale, and where the probe looks.
//! Records held in memory while storage is degraded are newer than the whole file; they are
//! taken newest first too (`degraded`).

use super::{Transport, Worker};
use crate::config::DeliveryOrder;
use crate::store::StoredRecord;

impl<T: Transport> Worker<T> {
    pub(super) fn newest_first(&self) -> bool {
        self.sh.cfg.delivery_order == DeliveryOrder::NewestFirst
    }

    /// What the next attempt sends after one that left `rest` of a batch unsettled: `rest`
    /// again (the same records), or, with newest_first when the endpoint never processed the
    /// attempt (`not_processed`: no connection, 429, 503, or held back by the budget), a batch
    /// formed afresh from the newest records.
    pub(super) fn retry_rest<'a>(
        &mut self,
        rest: impl Iterator<Item = &'a StoredRecord>,
        not_processed: bool,
    ) {
        self.retry_afresh = self.newest_first() && not_processed;
        self.retry_range = if self.retry_afresh {
            None
        } else {
            super::reject::range_of(rest)
        };
    }

    /// The seqs the batch after the one that read the seqs `read` (first, last) comes from:
    /// above it (oldest_first), or below it (newest_first).
    pub(super) fn read_ahead_range(&self, read: (u64, u64)) -> (u64, u64) {
        if self.newest_first() {
            (0, read.0.saturating_sub(1))
        } else {
            (read.1 + 1, i64::MAX as u64)
        }
    }

    /// newest_first: the file's next seq when the batch in flight was read. A batch read
    /// ahead (below it) is stale once records are stored from this seq on: they go first.
    pub(super) fn read_ahead_stale_from(&self) -> Option<u64> {
        self.newest_first().then_some(self.next_seq_at_fetch)
    }

    /// newest_first, when no record newer than the batch `keep` could probe the endpoint
    /// (`newer` is empty): the seqs below the batch, whose newest records probe it instead.
    pub(super) fn probe_below(
        &self,
        newer: &[StoredRecord],
        keep: (u64, u64),
    ) -> Option<(u64, u64)> {
        (newer.is_empty() && self.newest_first() && keep.0 > 1).then(|| (0, keep.0 - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::super::fake::{new_records, refuse_if, refused, status, worker_with, Fake};
    use super::super::Worker;
    use crate::engine::queue::lock;
    use crate::http::{Attempt, Outcome};
    use std::sync::atomic::Ordering::Relaxed;
    use std::sync::{Arc, Mutex};

    const NEWEST: &[(&str, &str)] = &[("delivery.order", "newest_first")];

    fn seqs(r: std::ops::RangeInclusive<u64>) -> Vec<u64> {
        r.collect()
    }

    /// (records pending in the file, dead letters)
    fn file(w: &Worker<Fake>) -> (u64, u64) {
        let g = lock(&w.sh.store);
        let s = g.as_ref().unwrap();
        (s.disk_records, s.dead_records)
    }

    /// Stores records `r` as the writer would (counted as logged).
    fn log(w: &Worker<Fake>, r: std::ops::RangeInclusive<u64>) {
        let recs = new_records(r);
        let mut g = lock(&w.sh.store);
        let s = g.as_mut().unwrap();
        s.insert(&recs, false).unwrap();
        for r in &recs {
            w.sh.counters.logged(r.data.len() as u64);
        }
        w.sh.mirror_store(s);
    }

    fn delivered(w: &Worker<Fake>) -> u64 {
        w.sh.counters.delivered_total.load(Relaxed)
    }

    #[test]
    fn batches_go_newest_first_and_the_read_ahead_takes_the_next_below() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = worker_with(dir.path(), 8, 3, NEWEST, |_| Outcome::Delivered);
        for _ in 0..3 {
            w.attempt();
        }
        assert_eq!(w.transport.sent, [seqs(6..=8), seqs(3..=5), seqs(1..=2)]);
        assert_eq!(file(&w), (0, 0));
        assert_eq!(delivered(&w), 8);
        let g = lock(&w.sh.store);
        let s = g.as_ref().unwrap();
        // Only the last batch was the oldest pending: it moved the watermark.
        assert_eq!(s.garbage_records, 2);
    }

    #[test]
    fn records_stored_during_the_drain_go_next_and_make_the_read_ahead_stale() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = worker_with(dir.path(), 9, 3, NEWEST, |_| Outcome::Delivered);
        w.attempt(); // 7..=9 delivered, 4..=6 read ahead
        log(&w, 10..=11);
        w.attempt();
        w.attempt();
        w.attempt();
        assert_eq!(
            w.transport.sent,
            [seqs(7..=9), vec![6, 10, 11], seqs(3..=5), seqs(1..=2)]
        );
        assert_eq!(file(&w), (0, 0));
        assert_eq!(delivered(&w), 11);
    }

    #[test]
    fn a_retried_batch_is_the_same_records_with_newer_ones_stored_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let fail = Arc::new(Mutex::new(true));
        let f = Arc::clone(&fail);
        let mut w = worker_with(dir.path(), 6, 3, NEWEST, move |_| {
            if std::mem::take(&mut *f.lock().unwrap()) {
                Outcome::Retry
            } else {
                Outcome::Delivered
            }
        });
        w.attempt();
        assert_eq!(w.retry_range, Some((4, 6)));
        log(&w, 7..=8);
        w.clock.cut_short(std::time::Instant::now());
        w.attempt();
        w.attempt();
        w.attempt();
        assert_eq!(
            w.transport.sent,
            [seqs(4..=6), seqs(4..=6), vec![3, 7, 8], seqs(1..=2)]
        );
        assert_eq!(file(&w), (0, 0));
        assert_eq!(delivered(&w), 8);
    }

    /// Records 1..=6 in batches of 3 (`keys`): the first request is answered `fail`, then
    /// records 7..=8 are stored, and everything else is accepted. The requests made.
    fn first_attempt_fails(keys: &[(&str, &str)], fail: Attempt) -> Vec<Vec<u64>> {
        let dir = tempfile::tempdir().unwrap();
        let mut first = Some(fail);
        let mut w = worker_with(dir.path(), 6, 3, keys, move |_| {
            first.take().unwrap_or_else(|| Outcome::Delivered.into())
        });
        w.attempt();
        log(&w, 7..=8);
        w.clock.cut_short(std::time::Instant::now());
        for _ in 0..3 {
            w.attempt();
        }
        assert_eq!(file(&w), (0, 0));
        assert_eq!(delivered(&w), 8);
        w.transport.sent
    }

    #[test]
    fn a_batch_the_endpoint_never_processed_is_formed_afresh_from_the_newest() {
        for (why, fail) in [
            ("refused", refused()),
            ("503", status(503)),
            ("429", status(429)),
        ] {
            assert_eq!(
                first_attempt_fails(NEWEST, fail),
                [seqs(4..=6), seqs(6..=8), seqs(3..=5), seqs(1..=2)],
                "{why}"
            );
        }
    }

    #[test]
    fn a_batch_the_endpoint_may_have_processed_is_sent_again_as_it_was() {
        for (why, fail) in [
            ("timeout", Attempt::from(Outcome::Timeout)),
            ("500", status(500)),
            ("reset", Attempt::unanswered(Outcome::Retry, "reset".into())),
        ] {
            assert_eq!(
                first_attempt_fails(NEWEST, fail),
                [seqs(4..=6), seqs(4..=6), vec![3, 7, 8], seqs(1..=2)],
                "{why}"
            );
        }
        // oldest_first: the same records either way.
        for (why, fail) in [("refused", refused()), ("500", status(500))] {
            assert_eq!(
                first_attempt_fails(&[], fail),
                [seqs(1..=3), seqs(1..=3), seqs(4..=6), seqs(7..=8)],
                "{why}"
            );
        }
    }

    #[test]
    fn a_refused_retry_goes_out_without_linger() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = Some(refused());
        let keys = [NEWEST[0], ("batch.linger_ms", "600000")];
        let mut w = worker_with(dir.path(), 2, 3, &keys, move |_| {
            first.take().unwrap_or_else(|| Outcome::Delivered.into())
        });
        w.attempt();
        assert!(w.retry_afresh && w.retry_range.is_none());
        w.clock.cut_short(std::time::Instant::now());
        assert!(matches!(w.wait_for_work(), super::super::Flow::Continue));
        w.attempt();
        assert_eq!(w.transport.sent, [seqs(1..=2), seqs(1..=2)]);
        assert!(!w.retry_afresh);
    }

    #[test]
    fn two_timeouts_form_the_newest_half_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = worker_with(
            dir.path(),
            8,
            8,
            NEWEST,
            refuse_if(|s| s.len() > 4, Outcome::Timeout),
        );
        w.attempt();
        assert_eq!(w.retry_range, Some((1, 8)));
        w.attempt();
        assert_eq!(w.retry_range, None, "formed afresh");
        w.attempt();
        w.attempt();
        assert_eq!(
            w.transport.sent,
            [seqs(1..=8), seqs(1..=8), seqs(5..=8), seqs(1..=4)]
        );
        assert_eq!(delivered(&w), 8);
    }

    #[test]
    fn a_413_splits_a_batch_that_is_not_at_the_head() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = worker_with(
            dir.path(),
            10,
            8,
            NEWEST,
            refuse_if(|s| s.len() > 2, Outcome::Split),
        );
        w.attempt();
        assert_eq!(
            w.transport.sent,
            [
                seqs(3..=10),
                seqs(3..=6),
                seqs(3..=4),
                seqs(5..=6),
                seqs(7..=8),
                seqs(9..=10)
            ]
        );
        assert_eq!(w.sizing.cap(), 2);
        w.attempt();
        assert_eq!(w.transport.sent.last(), Some(&seqs(1..=2)));
        assert_eq!(file(&w), (0, 0));
        assert_eq!(delivered(&w), 10);
    }

    #[test]
    fn bisection_isolates_a_poison_record_in_the_newest_batch() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = worker_with(
            dir.path(),
            8,
            4,
            NEWEST,
            refuse_if(|s| s.contains(&6), Outcome::Bisect),
        );
        w.attempt();
        w.attempt();
        assert_eq!(
            w.transport.sent,
            [
                seqs(5..=8),
                seqs(5..=6),
                vec![5],
                vec![6],
                seqs(7..=8),
                seqs(1..=4)
            ]
        );
        assert_eq!(file(&w), (0, 1), "record 6 is a dead letter");
        assert_eq!(delivered(&w), 7);
    }

    #[test]
    fn the_probe_asks_with_the_records_below_the_newest_batch() {
        // Everything refused: the probe (1..=4, below the batch) is refused too, nothing is
        // dead-lettered, the batch waits retry.max_ms.
        let dir = tempfile::tempdir().unwrap();
        let mut w = worker_with(dir.path(), 8, 4, NEWEST, |_| Outcome::Bisect);
        w.attempt();
        assert_eq!(
            w.transport.sent,
            [seqs(5..=8), seqs(5..=6), vec![5], vec![6], seqs(1..=4)]
        );
        assert_eq!(file(&w), (8, 0));
        assert_eq!(w.retry_range, Some((5, 8)));
        assert!(w.clock.waiting());

        // Records 5 and 6 refused, the rest accepted: the probe is delivered, then 7..=8, and
        // 5 and 6 become dead letters.
        let dir = tempfile::tempdir().unwrap();
        let mut w = worker_with(
            dir.path(),
            8,
            4,
            NEWEST,
            refuse_if(|s| s.contains(&5) || s.contains(&6), Outcome::Bisect),
        );
        w.attempt();
        assert_eq!(
            w.transport.sent,
            [
                seqs(5..=8),
                seqs(5..=6),
                vec![5],
                vec![6],
                seqs(1..=4),
                seqs(7..=8)
            ]
        );
        assert_eq!(file(&w), (0, 2));
        assert_eq!(delivered(&w), 6);
        assert!(!w.clock.waiting());
    }
}
