//! Reading a batch from the file: its rows under the store lock, its costing after, shared
//! between the read-ahead thread and the worker.
//!
//! Costing a record in OTLP encodes it (the encoding is kept for the request body), and that
//! takes as long as reading its row. Done under the store lock, by the read-ahead alone, it
//! held the worker up (it settles, under that lock) and left the drain of a backlog no faster
//! than one thread could read, encode and settle in turn.
//!
//! So a read takes rows by an estimate of their cost ([`Costing::estimate`]: exact for json and
//! ndjson, learned from the last read for OTLP), protects them from the capacity policy and TTL in the same
//! critical section, and lets the lock go ([`read`]). Then they are costed exactly, in the
//! order they were read (newest first for `delivery.order=newest_first`), and those within the
//! budget are kept, the first always ([`Costed`]). The read-ahead costs until the worker asks
//! for the batch; the worker asks for the next read, then costs the rest while that read runs
//! ([`Costed::finish`]), so each thread encodes while the other reads rows or waits for the
//! endpoint. When records are left over, the protection is narrowed to what was kept, under
//! the lock again: the others are ordinary pending records, read by the next batch.

use super::reject::range_of;
use super::{record_ref, Batch};
use crate::config::DeliveryOrder;
use crate::engine::queue::{lock, Shared};
use crate::http::{Costing, Plan};
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
        let range = range_of(recs.iter());
        match self {
            Guard::InFlight => store.protect_in_flight(range),
            Guard::ReadAhead => store.protect_read_ahead(range),
        }
    }
}

/// A batch read, and the file's next seq when its rows were read (newest_first tells a stale
/// read-ahead by it).
pub(super) struct Read {
    pub costed: Costed,
    pub next_seq: u64,
}

/// Reads the rows of the next batch: at most `max_records` pending records within the seqs
/// `range`, by their estimated cost within `max_bytes` (at least one record), protected by
/// `guard`. They are costed exactly by [`Costed`]. Their bytes go into the buffers of `spare`
/// records (delivered before) while there are any. `None` when close has taken the file away.
pub(super) fn read(
    sh: &Shared,
    range: Option<(u64, u64)>,
    max_records: u64,
    max_bytes: u64,
    costing: &Costing,
    guard: Guard,
    spare: &mut Vec<StoredRecord>,
) -> Option<Read> {
    let order = sh.cfg.delivery_order;
    let mut g = lock(&sh.store);
    let store = g.as_mut()?;
    let recs = store
        .fetch_in(
            order,
            range,
            max_records,
            max_bytes,
            |r| costing.estimate(&record_ref(r, &sh.instance)),
            spare,
        )
        .unwrap_or_default();
    guard.protect(store, &recs);
    let next_seq = store.next_seq();
    drop(g);
    Some(Read {
        costed: Costed {
            recs,
            plan: costing.plan(max_bytes),
            newest_first: order == DeliveryOrder::NewestFirst,
            max_bytes,
            costed: 0,
            bytes: 0,
            full: false,
        },
        next_seq,
    })
}

/// How many records [`Costed::cost_until`] costs between two looks at whether to stop: about
/// 10 µs of OTLP encoding.
const COST_RUN: usize = 24;

/// The rows of a batch, read and protected, being costed exactly: in the order of the read
/// (oldest first, or newest first with `delivery.order=newest_first`; `recs` is in seq order
/// either way), until the budget is full.
pub(super) struct Costed {
    recs: Vec<StoredRecord>,
    plan: Plan,
    newest_first: bool,
    max_bytes: u64,
    /// Records costed so far (in the order of the read) and kept, and what they cost.
    costed: usize,
    bytes: u64,
    /// A record went beyond the budget: the records from it on are not in the batch.
    full: bool,
}

impl Costed {
    /// The lowest and the highest seq read; None when nothing was.
    pub(super) fn range(&self) -> Option<(u64, u64)> {
        range_of(self.recs.iter())
    }

    /// The records read (the batch may keep fewer: [`Costed::finish`]).
    pub(super) fn len(&self) -> usize {
        self.recs.len()
    }

    /// Costs records in the order of the read until `n` are costed or the budget is full.
    pub(super) fn cost(&mut self, n: usize, instance: &str) {
        let len = self.recs.len();
        while !self.full && self.costed < n.min(len) {
            let i = if self.newest_first {
                len - 1 - self.costed
            } else {
                self.costed
            };
            let c = self.plan.cost(&record_ref(&self.recs[i], instance));
            if self.costed > 0 && self.bytes + c > self.max_bytes {
                self.full = true;
            } else {
                self.costed += 1;
                self.bytes += c;
            }
        }
    }

    /// Costs records in the order of the read until all are costed, the budget is full or
    /// `stop` says so (asked between runs of a few records).
    pub(super) fn cost_until(&mut self, stop: impl Fn() -> bool, instance: &str) {
        while !self.full && self.costed < self.recs.len() && !stop() {
            self.cost(self.costed + COST_RUN, instance);
        }
    }

    /// Costs the rest and makes the batch: the records within the budget, with what costing
    /// encoded of them. When some were left out, the protection by `guard` is narrowed to what
    /// is kept: the others are ordinary pending records, read by a later batch. `None` when
    /// close has taken the file away.
    pub(super) fn finish(mut self, sh: &Shared, guard: Guard) -> Option<Batch> {
        self.cost(usize::MAX, &sh.instance);
        let (kept, read) = (self.costed, self.recs.len());
        let mut recs = self.recs;
        if kept < read {
            if self.newest_first {
                recs.drain(..read - kept);
            } else {
                recs.truncate(kept);
            }
            let mut g = lock(&sh.store);
            guard.protect(g.as_mut()?, &recs);
        }
        let costing = self.plan.costing();
        costing.learn(recs.iter().map(|r| record_ref(r, &sh.instance)), self.bytes);
        let pieces = self.plan.keep(recs.iter().map(|r| r.seq));
        Some(Batch { recs, pieces })
    }
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
            let all = read(
                sh,
                None,
                40,
                u64::MAX,
                costing,
                Guard::ReadAhead,
                &mut Vec::new(),
            )
            .unwrap();
            let all = all.costed.finish(sh, Guard::ReadAhead).unwrap().recs;
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
            assert!(fresh.estimate(&record_ref(r, &sh.instance)) * 11 < cost(r) * 10);
            let read = read(
                sh,
                None,
                40,
                budget,
                &fresh,
                Guard::InFlight,
                &mut Vec::new(),
            )
            .unwrap();
            let got = read.costed.finish(sh, Guard::InFlight).unwrap();
            let seqs: Vec<u64> = got.recs.iter().map(|r| r.seq).collect();
            assert_eq!(seqs, want, "{order}");
            let refs: Vec<_> = got
                .recs
                .iter()
                .map(|r| record_ref(r, &sh.instance))
                .collect();
            let pieces = got.pieces.expect("OTLP keeps the encoding");
            let enc = Encoder::new(true, "test", &[]);
            assert_eq!(enc.body(pieces.run(&refs).unwrap()), enc.encode(&refs));
            let store = lock(&sh.store);
            let inflight = store.as_ref().unwrap().protected().0;
            assert_eq!(inflight, (want[0], want[9]), "{order}: only what was kept");
        }
    }
}
