//! Reading a batch from the file: its rows under the store lock, its costing after.
//!
//! Costing a record in OTLP encodes it (the encoding is kept for the request body), and that
//! takes longer than reading its row. Done under the store lock, it held the worker up: the
//! worker settles the request in flight, and checks that close has not taken the file, under
//! that lock, so while the read-ahead encoded the next batch the worker waited, and a backlog
//! drained no faster than one thread could read, encode and settle in turn.
//!
//! So a read takes rows by an estimate of their cost ([`Costing::estimate`]: exact for json and
//! ndjson, a little under for OTLP), protects them from the capacity policy and TTL in the same
//! critical section, and lets the lock go. Then it costs them exactly, in the order they were
//! read (newest first for `delivery.order=newest_first`), and keeps those within the budget
//! (the first always). When some are left over, the protection is narrowed to what was kept
//! under the lock again: the others are ordinary pending records, read by the next batch.

use super::{record_ref, Batch};
use crate::config::DeliveryOrder;
use crate::engine::queue::{lock, Shared};
use crate::http::Costing;
use crate::store::{Store, StoredRecord};

/// Which protection the records read get: the worker's request in flight, or the batch read
/// ahead for the next one.
#[derive(Clone, Copy)]
pub(super) enum Guard {
    InFlight,
    ReadAhead,
}

impl Guard {
    fn protect(self, store: &mut Store, recs: &[StoredRecord]) {
        let range = recs.first().zip(recs.last()).map(|(a, b)| (a.seq, b.seq));
        match self {
            Guard::InFlight => store.protect_in_flight(range),
            Guard::ReadAhead => store.protect_read_ahead(range),
        }
    }
}

/// A batch read, and the file's next seq when its rows were read (newest_first tells a stale
/// read-ahead by it).
pub(super) struct Read {
    pub batch: Batch,
    pub next_seq: u64,
}

/// Reads the next batch: at most `max_records` pending records within the seqs `range`,
/// costing at most `max_bytes` in all (at least one record), protected by `guard`. `None`
/// when close has taken the file away.
pub(super) fn read(
    sh: &Shared,
    range: Option<(u64, u64)>,
    max_records: u64,
    max_bytes: u64,
    costing: &Costing,
    guard: Guard,
) -> Option<Read> {
    let order = sh.cfg.delivery_order;
    let (mut recs, next_seq) = {
        let mut g = lock(&sh.store);
        let store = g.as_mut()?;
        let recs = store
            .fetch_in(order, range, max_records, max_bytes, |r| {
                costing.estimate(&record_ref(r, &sh.instance))
            })
            .unwrap_or_default();
        guard.protect(store, &recs);
        (recs, store.next_seq())
    };
    // The exact costs, in the order of the read: oldest first, or newest first (fetch_in
    // returns the records in seq order either way).
    let plan = costing.plan(max_bytes);
    let newest_first = order == DeliveryOrder::NewestFirst;
    let in_read_order: Box<dyn Iterator<Item = &StoredRecord>> = if newest_first {
        Box::new(recs.iter().rev())
    } else {
        Box::new(recs.iter())
    };
    let (mut kept, mut bytes) = (0usize, 0u64);
    for r in in_read_order {
        let c = plan.cost(&record_ref(r, &sh.instance));
        if kept > 0 && bytes + c > max_bytes {
            break;
        }
        kept += 1;
        bytes += c;
    }
    let read = recs.len();
    if kept < read {
        if newest_first {
            recs.drain(..read - kept);
        } else {
            recs.truncate(kept);
        }
        // The rows past the budget go back to the pending records.
        let mut g = lock(&sh.store);
        guard.protect(g.as_mut()?, &recs);
    }
    costing.learn(recs.iter().map(|r| record_ref(r, &sh.instance)), bytes);
    let pieces = plan.keep(recs.iter().map(|r| r.seq));
    Some(Read {
        batch: Batch { recs, pieces },
        next_seq,
    })
}

#[cfg(test)]
mod tests {
    use super::super::fake::worker_full;
    use super::*;
    use crate::http::otlp::Encoder;
    use crate::http::Outcome;
    use std::sync::Arc;

    /// An OTLP read takes rows by an estimate under the lock; what it returns is what exact
    /// costing keeps within the budget (the oldest, or the newest with newest_first), with
    /// their encoding, and only those stay protected.
    #[test]
    fn a_read_keeps_what_the_budget_holds_and_lets_the_rest_go() {
        for order in ["oldest_first", "newest_first"] {
            let dir = tempfile::tempdir().unwrap();
            let enc = Arc::new(Encoder::new(true, "test", &[]));
            let keys = [("delivery.order", order)];
            let w = worker_full(dir.path(), 40, 40, &keys, |_| Outcome::Delivered, Some(enc));
            let sh = &w.sh;
            let costing = &w.costing;
            // Every record's exact cost, from a read within an unbounded budget.
            let all = read(sh, None, 40, u64::MAX, costing, Guard::ReadAhead).unwrap();
            let all = all.batch.recs;
            assert_eq!(all.len(), 40);
            let cost = |r: &StoredRecord| costing.record(&record_ref(r, &sh.instance));
            // Ten records' worth, from the end the order takes first.
            let want: Vec<u64> = if order == "oldest_first" {
                (1..=10).collect()
            } else {
                (31..=40).collect()
            };
            let budget: u64 = all
                .iter()
                .filter(|r| want.contains(&r.seq))
                .map(&cost)
                .sum();
            // A new costing (nothing learned yet) estimates these records well under their
            // cost: the read takes more rows than it keeps.
            let fresh = Costing::otlp(Arc::new(Encoder::new(true, "test", &[])));
            let r = &all[0];
            assert!(fresh.estimate(&record_ref(r, &sh.instance)) * 5 < cost(r) * 4);
            let got = read(sh, None, 40, budget, &fresh, Guard::InFlight).unwrap();
            let seqs: Vec<u64> = got.batch.recs.iter().map(|r| r.seq).collect();
            assert_eq!(seqs, want, "{order}");
            let refs: Vec<_> = got
                .batch
                .recs
                .iter()
                .map(|r| record_ref(r, &sh.instance))
                .collect();
            let pieces = got.batch.pieces.expect("OTLP keeps the encoding");
            let enc = Encoder::new(true, "test", &[]);
            assert_eq!(enc.body(pieces.run(&refs).unwrap()), enc.encode(&refs));
            let store = lock(&sh.store);
            let inflight = store.as_ref().unwrap().protected().0;
            assert_eq!(inflight, (want[0], want[9]), "{order}: only what was kept");
        }
    }
}
