//! Batches the endpoint refuses (docs/reference.md, the wire): a 413 splits the batch in halves (and lowers the
//! batch size, see `sizing`); a 400 or 422 bisects it until the refused records stand alone,
//! and those go to the dead letters. Before records are dead-lettered, a probe with newer
//! records tells refused records from an endpoint that refuses everything (a proxy): then
//! nothing is dead-lettered and the batch waits retry.max_ms as a configuration problem.
//!
//! With a byte budget (`http.budget_bytes`), requests refused with 400, 413 or 422 may take at
//! most a tenth of the period's budget (`budget::REFUSED_SHARE`): a split or bisection step,
//! or a probe, that would go beyond it is not sent, and the batch waits retry.max_ms as a
//! configuration problem; while the share is spent, a refused batch is retried one record at a
//! time. So an endpoint that refuses everything (a misconfigured proxy) spends at most that
//! share on bisection and probes in a period, then one record per retry.max_ms.

use super::budget::Hold;
use super::{Flow, Transport, Worker};
use crate::engine::queue::lock;
use crate::events::EVENT_DEAD_LETTER;
use crate::http::{Outcome, Pieces};
use crate::store::StoredRecord;
use std::time::Instant;

impl<T: Transport> Worker<T> {
    /// Sends a batch, splitting and bisecting as the answers ask. Bisection costs at most
    /// 2 × batch.max_records requests, without backoff between them.
    /// `pieces`: what costing encoded of the batch (every part of it is a run of them).
    pub(super) fn deliver(&mut self, batch: Vec<StoredRecord>, pieces: Option<Pieces>) -> Flow {
        self.delivered_whole = false;
        self.settle_failed = false;
        let budget = 2 * self.sh.cfg.batch_max_records.max(1);
        let mut requests = 0u64;
        let mut stack: Vec<Vec<StoredRecord>> = vec![batch];
        let mut isolated: Vec<(StoredRecord, i32, String)> = Vec::new();
        let mut accepted = false;
        let mut probed = false;
        let (batch_lo, batch_hi) = range_of(stack[0].iter()).unwrap_or((0, 0));
        while let Some(mut part) = stack.pop() {
            if part.len() as u64 > self.sizing.cap() && part.len() > 1 {
                // A 413 lowered the cap since this part was formed: halve it unsent.
                let second = part.split_off(part.len() / 2);
                stack.push(second);
                stack.push(part);
                continue;
            }
            let a = match self.send(&part, pieces.as_ref(), requests > 0) {
                Ok(a) => a,
                Err(hold) => {
                    // Not sent: what is left of the batch waits, for the next budget period
                    // or (beyond the refused share) retry.max_ms as a configuration problem.
                    let mut rest: Vec<&StoredRecord> = part.iter().collect();
                    rest.extend(stack.iter().flatten());
                    if hold == Hold::Share {
                        self.keep_all(rest.into_iter(), &isolated);
                    } else {
                        // Not sent: with newest_first, unless refused records were isolated
                        // already, the next period's budget goes to the newest records then.
                        let nothing_refused = isolated.is_empty();
                        rest.extend(isolated.iter().map(|i| &i.0));
                        self.retry_rest(rest.into_iter(), nothing_refused);
                    }
                    return Flow::Continue;
                }
            };
            requests += 1;
            if self.abandoned() {
                return Flow::Exit;
            }
            match a.outcome {
                Outcome::Delivered => {
                    if !self.settle(&part, &a) {
                        return Flow::Exit;
                    }
                    accepted = true;
                    self.keep_spent(part);
                }
                Outcome::Split | Outcome::Bisect if requests < budget => {
                    self.record_failure(&a, false);
                    if a.outcome == Outcome::Split && part.len() > 1 {
                        self.sizing.body_limit_found(part.len());
                    }
                    if part.len() > 1 {
                        let mut first = part;
                        let second = first.split_off(first.len() / 2);
                        stack.push(second);
                        stack.push(first);
                    } else if let Some(r) = part.into_iter().next() {
                        isolated.push((r, a.http_status, a.detail.clone()));
                        if !accepted && !probed && isolated.len() >= 2 && !stack.is_empty() {
                            // Two records refused on their own and nothing accepted: is it the
                            // records, or the endpoint (a proxy refusing everything)? Ask with
                            // newer records before bisecting the rest of the batch request by
                            // request.
                            probed = true;
                            match self.probe(batch_hi + 1, (batch_lo, batch_hi)) {
                                None => return Flow::Exit,
                                Some(Some(true)) => accepted = true,
                                Some(Some(false)) => {
                                    let rest = stack.iter().flatten();
                                    self.keep_all(rest, &isolated);
                                    return Flow::Continue;
                                }
                                // Nothing newer to ask with: bisect on.
                                Some(None) => {}
                            }
                        }
                    }
                }
                other => {
                    // Retry later: what is left of this batch is sent again as it is (with
                    // newest_first, formed afresh when the endpoint never processed it).
                    let mut rest: Vec<&StoredRecord> = part.iter().collect();
                    rest.extend(stack.iter().flatten());
                    rest.extend(isolated.iter().map(|i| &i.0));
                    self.retry_rest(rest.into_iter(), a.not_processed);
                    self.fail_and_wait(&a, other);
                    return Flow::Continue;
                }
            }
        }
        if !isolated.is_empty() && !accepted {
            // Is it the records, or the endpoint? Send the next pending records as a probe.
            let after = isolated.iter().map(|i| i.0.seq).max().unwrap_or(0) + 1;
            match self.probe(after, (batch_lo, batch_hi)) {
                None => return Flow::Exit,
                Some(Some(true)) => accepted = true,
                _ => {}
            }
            if !accepted {
                self.keep_all(std::iter::empty(), &isolated);
                return Flow::Continue;
            }
        }
        if !isolated.is_empty() {
            let mut g = lock(&self.sh.store);
            let Some(store) = g.as_mut() else {
                return Flow::Exit;
            };
            for (r, status, detail) in &isolated {
                store.clear_in_flight();
                if let Ok((n, b)) = store.dead_letter(&[r.seq], *status, detail) {
                    if n > 0 {
                        self.sh.counters.dead_lettered(n, b);
                        self.sh.mirror_store(store);
                        self.sh.events.emit(
                            EVENT_DEAD_LETTER,
                            n,
                            *status,
                            format!("record {} moved to the dead letters: {detail}", r.seq),
                        );
                    }
                }
            }
        }
        self.retry_range = None;
        self.delivered_whole = requests == 1 && isolated.is_empty() && !self.settle_failed;
        Flow::Continue
    }

    /// Nothing accepted at all while records were refused on their own: a configuration
    /// problem (a proxy refusing everything). Everything is kept (`rest` and the isolated
    /// records) and sent again after retry.max_ms.
    fn keep_all<'a>(
        &mut self,
        rest: impl Iterator<Item = &'a StoredRecord>,
        isolated: &'a [(StoredRecord, i32, String)],
    ) {
        self.retry_range = range_of(rest.chain(isolated.iter().map(|i| &i.0)));
        if self.meter.share_spent() {
            // Refusals took their share of the budget: retried one record at a time.
            self.retry_range = self.retry_range.map(|(lo, _)| (lo, lo));
        }
        if let Some((_, status, detail)) = isolated.first() {
            self.offline(*status, detail);
        }
        self.clock.config_problem(Instant::now());
    }

    /// Sends the pending records from seq `after` on (a batch of them) to tell refused records
    /// from an endpoint that refuses everything, then protects `keep` (the batch being
    /// bisected) again. With newest_first, where the batch is usually the newest, the records
    /// below it are asked when none is newer. None: close took the file away; Some(None):
    /// nothing to send; Some(Some(accepted)).
    fn probe(&mut self, after: u64, keep: (u64, u64)) -> Option<Option<bool>> {
        let mut probe = self.fetch(Some((after, i64::MAX as u64)), self.sizing.cap())?;
        if let Some(below) = self.probe_below(&probe.recs, keep) {
            probe = self.fetch(Some(below), self.sizing.cap())?;
        }
        let result = if probe.recs.is_empty() {
            None
        } else {
            let sent = self.send(&probe.recs, probe.pieces.as_ref(), true);
            if self.abandoned() {
                return None;
            }
            match sent {
                // Not sent (the budget or its refused share): as if refused.
                Err(_) => Some(false),
                Ok(a) if a.outcome == Outcome::Delivered => {
                    if !self.settle(&probe.recs, &a) {
                        return None;
                    }
                    Some(true)
                }
                Ok(a) => {
                    self.record_failure(&a, false);
                    Some(false)
                }
            }
        };
        if let Some(s) = lock(&self.sh.store).as_mut() {
            s.protect_in_flight(Some(keep));
        }
        Some(result)
    }
}

pub(super) fn range_of<'a>(recs: impl Iterator<Item = &'a StoredRecord>) -> Option<(u64, u64)> {
    let mut r: Option<(u64, u64)> = None;
    for x in recs {
        r = Some(match r {
            None => (x.seq, x.seq),
            Some((lo, hi)) => (lo.min(x.seq), hi.max(x.seq)),
        });
    }
    r
}

#[cfg(test)]
mod tests {
    use super::super::fake::{otlp_worker, refuse_if, worker, worker_with, Fake};
    use super::super::{Flow, Worker};
    use crate::engine::queue::lock;
    use crate::http::Outcome;
    use std::sync::atomic::Ordering::Relaxed;

    /// The requests `(first, last)` seqs make.
    fn ranges(r: &[(u64, u64)]) -> Vec<Vec<u64>> {
        r.iter().map(|&(a, b)| (a..=b).collect()).collect()
    }

    /// (records pending in the file, dead letters)
    fn file(w: &Worker<Fake>) -> (u64, u64) {
        let g = lock(&w.sh.store);
        let s = g.as_ref().unwrap();
        (s.disk_records, s.dead_records)
    }

    fn totals(w: &Worker<Fake>) -> (u64, u64, u64) {
        let c = &w.sh.counters;
        (
            c.delivered_total.load(Relaxed),
            c.dead_lettered_total.load(Relaxed),
            c.pending_records(),
        )
    }

    /// Each OTLP record is encoded once, when its batch is costed (by the worker or read
    /// ahead): every request, whole batch, split half or bisected part, is written from
    /// those bytes.
    #[test]
    fn otlp_requests_are_written_from_what_costing_encoded() {
        let dir = tempfile::tempdir().unwrap();
        // The first batch is too large for the endpoint (a 413), record 7 is refused (a 400).
        let mut w = otlp_worker(dir.path(), 16, 4, |s: &[u64]| match s {
            [1, _, _, ..] => Outcome::Split,
            s if s.contains(&7) => Outcome::Bisect,
            _ => Outcome::Delivered,
        });
        for _ in 0..12 {
            if totals(&w).2 == 0 {
                break;
            }
            assert!(matches!(w.attempt(), Flow::Continue));
        }
        assert_eq!(totals(&w), (15, 1, 0), "all delivered but record 7");
        let sent = &w.transport.sent;
        assert!(sent.len() >= 8, "{sent:?}");
        assert!(sent.iter().any(|s| s == &[1, 2]), "a split half: {sent:?}");
        assert!(sent.iter().any(|s| s == &[7]), "a bisected part: {sent:?}");
        assert_eq!(w.transport.from_pieces, vec![true; sent.len()], "{sent:?}");
    }

    #[test]
    fn bisection_isolates_a_poison_record() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = worker(
            dir.path(),
            8,
            8,
            refuse_if(|s| s.contains(&4), Outcome::Bisect),
        );
        assert!(matches!(w.attempt(), Flow::Continue));
        assert_eq!(
            w.transport.sent,
            ranges(&[(1, 8), (1, 4), (1, 2), (3, 4), (3, 3), (4, 4), (5, 8)])
        );
        assert_eq!(file(&w), (0, 1), "record 4 is a dead letter");
        assert_eq!(totals(&w), (7, 1, 0));
        assert_eq!(w.retry_range, None);
        assert!(!w.clock.waiting(), "bisection does not wait");
    }

    #[test]
    fn a_413_splits_the_batch_and_lowers_the_batch_size() {
        let dir = tempfile::tempdir().unwrap();
        // The endpoint takes at most two records per request.
        let mut w = worker(dir.path(), 8, 8, refuse_if(|s| s.len() > 2, Outcome::Split));
        w.attempt();
        // 5..=8 is halved unsent: the cap was lowered meanwhile.
        assert_eq!(
            w.transport.sent,
            ranges(&[(1, 8), (1, 4), (1, 2), (3, 4), (5, 6), (7, 8)])
        );
        assert_eq!(w.sizing.cap(), 2);
        assert_eq!(file(&w), (0, 0));
        assert_eq!(totals(&w), (8, 0, 0));
    }

    #[test]
    fn a_probe_tells_an_endpoint_refusing_everything_from_refused_records() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = worker(dir.path(), 8, 4, |_| Outcome::Bisect);
        w.attempt();
        // Records 1 and 2 refused on their own, nothing accepted: newer records are asked.
        assert_eq!(
            w.transport.sent,
            ranges(&[(1, 4), (1, 2), (1, 1), (2, 2), (5, 8)])
        );
        // Refused too: nothing is dead-lettered, the batch is kept and waits retry.max_ms.
        assert_eq!(file(&w), (8, 0));
        assert_eq!(totals(&w), (0, 0, 8));
        assert_eq!(w.retry_range, Some((1, 4)));
        let left = w.clock.remaining(std::time::Instant::now()).unwrap();
        assert!(left > std::time::Duration::from_secs(59), "{left:?}");

        // Records 1 and 2 are refused, the rest accepted: the probe is delivered, the
        // bisection goes on, and 1 and 2 become dead letters.
        let dir = tempfile::tempdir().unwrap();
        let mut w = worker(
            dir.path(),
            8,
            4,
            refuse_if(|s| s.contains(&1) || s.contains(&2), Outcome::Bisect),
        );
        w.attempt();
        assert_eq!(
            w.transport.sent,
            ranges(&[(1, 4), (1, 2), (1, 1), (2, 2), (5, 8), (3, 4)])
        );
        assert_eq!(file(&w), (0, 2));
        assert_eq!(totals(&w), (6, 2, 0));
        assert!(!w.clock.waiting());
    }

    #[test]
    fn a_lone_refused_record_is_dead_lettered_only_after_a_probe() {
        // One record refused in a batch of one, newer records accepted.
        let dir = tempfile::tempdir().unwrap();
        let mut w = worker(dir.path(), 3, 1, refuse_if(|s| s == [1], Outcome::Bisect));
        w.attempt();
        assert_eq!(w.transport.sent, ranges(&[(1, 1), (2, 2)]));
        assert_eq!(file(&w), (1, 1));
        assert_eq!(totals(&w), (1, 1, 1));
        // With nothing newer to probe with, the record is kept, as a configuration problem.
        let dir = tempfile::tempdir().unwrap();
        let mut w = worker(dir.path(), 1, 1, |_| Outcome::Bisect);
        w.attempt();
        assert_eq!(w.transport.sent, ranges(&[(1, 1)]));
        assert_eq!(file(&w), (1, 0));
        assert_eq!(w.retry_range, Some((1, 1)));
        assert!(w.clock.waiting());
    }

    /// With a budget, refused requests take at most a tenth of it: the bisection stops
    /// there, the batch waits retry.max_ms, and is then retried one record at a time.
    #[test]
    fn with_a_budget_refusals_stop_at_their_share() {
        let dir = tempfile::tempdir().unwrap();
        // 2000 bytes a period: refusals may take 200; the fake's bodies are 20 bytes a record.
        let budget = [("http.budget_bytes", "2000")];
        let mut w = worker_with(dir.path(), 16, 8, &budget, |_| Outcome::Bisect);
        w.attempt();
        // 1..8 (160 bytes) refused; the first bisection step (80 more) would pass the share.
        assert_eq!(w.transport.sent, ranges(&[(1, 8)]));
        assert_eq!(file(&w), (16, 0));
        assert_eq!(
            w.retry_range,
            Some((1, 1)),
            "one record at a time from now on"
        );
        let left = w.clock.remaining(std::time::Instant::now()).unwrap();
        assert!(left > std::time::Duration::from_secs(59), "{left:?}");
        // The retry: record 1 alone is refused, and the probe (160 bytes) does not fit either.
        w.attempt();
        assert_eq!(w.transport.sent, ranges(&[(1, 8), (1, 1)]));
        assert_eq!(file(&w), (16, 0), "nothing dead-lettered");
        assert_eq!(w.sh.counters.sent_bytes_total.load(Relaxed), 180);
        assert_eq!(w.sh.counters.budget_left_bytes.0.load(Relaxed), 1820);
        assert_eq!(w.retry_range, Some((1, 1)));
    }

    #[test]
    fn two_timeouts_in_a_row_halve_the_next_batch() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = worker(
            dir.path(),
            8,
            8,
            refuse_if(|s| s.len() > 4, Outcome::Timeout),
        );
        w.attempt();
        assert_eq!(w.retry_range, Some((1, 8)), "the same batch again");
        assert!(w.clock.waiting());
        w.attempt();
        assert_eq!(w.retry_range, None, "formed afresh");
        assert_eq!(w.sizing.cap(), 4);
        w.attempt();
        w.attempt();
        assert_eq!(w.transport.sent, ranges(&[(1, 8), (1, 8), (1, 4), (5, 8)]));
        assert_eq!(totals(&w), (8, 0, 0));
        assert_eq!(w.sh.counters.failed_attempts_total.load(Relaxed), 2);
    }
}
