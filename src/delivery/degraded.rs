//! Degraded mode: while the buffer file cannot be written, records stay in the memory queue
//! and the worker delivers them from there, under an instance of their own.

use super::{Flow, Transport, Worker};
use crate::http::{Outcome, RecordRef};
use crate::store::StoredRecord;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

impl<T: Transport> Worker<T> {
    /// Records held in memory that the worker may deliver: only while storage is degraded
    /// (otherwise the writer is about to store them).
    pub(super) fn memory_pending(&self) -> u64 {
        let c = &self.sh.counters;
        if c.storage_degraded.load(Relaxed) == 0 {
            return 0;
        }
        c.pending_records()
            .saturating_sub(self.sh.mirror.disk_pending())
    }

    /// Takes the oldest records held in memory (storage degraded; newest_first: the newest)
    /// for one request. They carry an instance of their own: their seqs were never committed
    /// to the file.
    pub(super) fn take_memory(&mut self) -> Option<Vec<StoredRecord>> {
        let sh = Arc::clone(&self.sh);
        if sh.counters.storage_degraded.load(Relaxed) == 0 {
            return None;
        }
        let mut q = sh.queue.lock();
        let newest = self.newest_first();
        let out = q.take_for_delivery(
            newest,
            self.sizing.cap(),
            self.body_budget(),
            &sh.clock,
            |instance, r, ts_ms, clock| {
                self.costing.record(&RecordRef {
                    instance,
                    seq: r.seq,
                    ts_ms,
                    data: &r.data,
                    clock,
                })
            },
        )?;
        sh.queue.room_cv.notify_all();
        Some(out)
    }

    /// Delivers records held in memory while storage is degraded. Whatever is not accepted
    /// goes back in front of the memory queue (the writer stores it once the disk works).
    pub(super) fn deliver_memory(&mut self, batch: Vec<StoredRecord>) -> Flow {
        let n = batch.len();
        let sent = self.send(&batch, None, false);
        let sh = Arc::clone(&self.sh);
        let mut q = sh.queue.lock();
        if !q.delivery_done() {
            // Close counted these as lost and took the file away.
            return Flow::Exit;
        }
        let Ok(a) = sent else {
            // Not sent (the budget, or close): back in front of the queue, unchanged.
            q.give_back(batch, sh.now_ms());
            drop(q);
            sh.queue.writer_cv.notify_one();
            return Flow::Continue;
        };
        if a.outcome == Outcome::Delivered {
            drop(q);
            let bytes: u64 = batch.iter().map(|r| r.data.len() as u64).sum();
            self.succeeded(batch.len() as u64, bytes, &a);
            return Flow::Continue;
        }
        q.give_back(batch, sh.now_ms());
        drop(q);
        sh.queue.writer_cv.notify_one();
        if a.outcome == Outcome::Split && n > 1 {
            self.sizing.body_limit_found(n);
        }
        self.fail_and_wait(&a, a.outcome);
        Flow::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::super::fake::{worker, worker_with};
    use crate::http::Outcome;
    use std::sync::atomic::Ordering::Relaxed;
    use std::sync::{Arc, Mutex};

    /// Records held in memory that were logged with an invalid wall clock are repaired as
    /// those read from the file are (src/clock.rs), counted with their mark, and given back
    /// as logged.
    #[test]
    fn records_in_memory_are_repaired_and_given_back_as_logged() {
        use crate::clock::{BootClock, ClockMark};
        use crate::engine::queue::QueueState;
        let before = crate::clock::realtime_ms();
        let boot = crate::sys::boottime_ms().expect("CLOCK_BOOTTIME");
        let mut q = QueueState::new(1);
        q.push(5, Some(boot - 2_000), 0, b"1".to_vec());
        q.push(1_764_320_000_000, None, 0, b"2".to_vec());
        let valid = BootClock {
            valid_after_ms: 1,
            boot_id: Some("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0".into()),
        };
        let marks = Mutex::new(Vec::new());
        let out = q
            .take_for_delivery(false, 10, u64::MAX, &valid, |_, r, ts, mark| {
                marks.lock().unwrap().push((r.seq, ts, mark));
                1
            })
            .expect("taken");
        let after = crate::clock::realtime_ms();
        assert_eq!(out[0].clock, ClockMark::Repaired);
        assert!(
            (before - 2_050..=after - 1_950).contains(&out[0].ts_ms),
            "{} not 2 s before {before}..{after}",
            out[0].ts_ms
        );
        assert_eq!(
            (out[1].ts_ms, out[1].clock),
            (1_764_320_000_000, ClockMark::Valid)
        );
        assert_eq!(
            *marks.lock().unwrap(),
            vec![
                (1, out[0].ts_ms, ClockMark::Repaired),
                (2, 1_764_320_000_000, ClockMark::Valid)
            ],
            "the batch is costed with the marks it is sent with"
        );
        assert!(q.delivery_done());
        q.give_back(out, 0);
        // The wall clock not valid yet, or this boot's id unknown: as logged, unset.
        for clock in [
            BootClock {
                valid_after_ms: i64::MAX,
                ..valid.clone()
            },
            BootClock {
                boot_id: None,
                ..valid.clone()
            },
        ] {
            let out = q
                .take_for_delivery(false, 10, u64::MAX, &clock, |_, _, _, _| 1)
                .expect("taken");
            assert_eq!((out[0].ts_ms, out[0].clock), (5, ClockMark::Unset));
            assert_eq!(out[1].clock, ClockMark::Valid);
            assert!(q.delivery_done());
            q.give_back(out, 0);
        }
        assert_eq!(
            q.first().map(|r| (r.ts_ms, r.boot_ms)),
            Some((5, Some(boot - 2_000)))
        );
    }

    /// While storage is degraded, records in memory are delivered from there; what is not
    /// accepted goes back in front of the queue, in order, and is not counted twice.
    #[test]
    fn records_in_memory_are_delivered_and_given_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let accept = Arc::new(Mutex::new(false));
        let a2 = Arc::clone(&accept);
        let mut w = worker(dir.path(), 0, 2, move |_| {
            if *a2.lock().unwrap() {
                Outcome::Delivered
            } else {
                Outcome::Retry
            }
        });
        let sh = Arc::clone(&w.sh);
        for i in 0..3 {
            let data = format!("{{\"m\":{i}}}").into_bytes();
            let len = data.len() as u64;
            sh.queue.lock().push(0, None, sh.now_ms(), data);
            sh.counters.logged(len);
        }
        assert_eq!(
            w.memory_pending(),
            0,
            "the writer stores them while the disk works"
        );
        sh.counters.storage_degraded.store(1, Relaxed);
        assert_eq!(w.memory_pending(), 3);
        w.attempt();
        assert_eq!(w.transport.sent, [vec![1, 2]]);
        {
            let q = sh.queue.lock();
            assert_eq!(q.len(), 3, "given back");
            assert_eq!(q.lowest_unsettled(), Some(1));
            assert_eq!(
                q.first().and_then(|r| r.inst.clone()).map(|i| i.len()),
                Some(16)
            );
        }
        assert_eq!(sh.counters.pending_records(), 3);
        *accept.lock().unwrap() = true;
        w.attempt();
        w.attempt();
        assert_eq!(w.transport.sent, [vec![1, 2], vec![1, 2], vec![3]]);
        assert!(sh.queue.lock().is_empty());
        assert_eq!(sh.counters.delivered_total.load(Relaxed), 3);
        assert_eq!(sh.counters.pending_records(), 0);
        assert_eq!(sh.counters.pending_bytes.load(Relaxed), 0);
    }

    /// newest_first: the newest records in memory go first; what is not accepted goes back
    /// in seq order, before records logged meanwhile.
    #[test]
    fn newest_first_takes_the_newest_records_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, accept) = memory_worker(dir.path(), "newest_first");
        let sh = Arc::clone(&w.sh);
        let push = |i: u64| push_memory(&sh, i);
        for i in 1..=5 {
            push(i);
        }
        sh.counters.storage_degraded.store(1, Relaxed);
        w.attempt();
        assert_eq!(w.transport.sent, [vec![4, 5]]);
        let queued = |sh: &crate::engine::queue::Shared| -> Vec<u64> {
            let mut q = sh.queue.lock();
            let n = q.len();
            let all = q
                .take_for_delivery(false, n as u64, u64::MAX, &sh.clock, |_, _, _, _| 0)
                .unwrap();
            let seqs = all.iter().map(|r| r.seq).collect();
            assert!(q.delivery_done());
            q.give_back(all, 0);
            seqs
        };
        assert_eq!(queued(&sh), [1, 2, 3, 4, 5], "given back in seq order");
        // Taken from the back, and a record logged while they were out: back before it.
        let out = {
            let mut q = sh.queue.lock();
            q.take_for_delivery(true, 2, u64::MAX, &sh.clock, |_, _, _, _| 0)
                .unwrap()
        };
        push(6);
        {
            let mut q = sh.queue.lock();
            assert_eq!(q.lowest_unsettled(), Some(1));
            assert!(q.delivery_done());
            q.give_back(out, 0);
        }
        assert_eq!(queued(&sh), [1, 2, 3, 4, 5, 6]);
        *accept.lock().unwrap() = true;
        for _ in 0..3 {
            w.attempt();
        }
        assert_eq!(
            w.transport.sent,
            [vec![4, 5], vec![5, 6], vec![3, 4], vec![1, 2]]
        );
        assert!(sh.queue.lock().is_empty());
        assert_eq!(sh.counters.delivered_total.load(Relaxed), 6);
        assert_eq!(sh.counters.pending_records(), 0);
    }

    /// A worker in `delivery.order` whose requests (batches of 2) fail until the flag is set.
    fn memory_worker(
        dir: &std::path::Path,
        order: &str,
    ) -> (
        super::super::Worker<super::super::fake::Fake>,
        Arc<Mutex<bool>>,
    ) {
        let accept = Arc::new(Mutex::new(false));
        let a2 = Arc::clone(&accept);
        let keys = [("delivery.order", order)];
        let w = worker_with(dir, 0, 2, &keys, move |_| {
            if *a2.lock().unwrap() {
                Outcome::Delivered
            } else {
                Outcome::Retry
            }
        });
        (w, accept)
    }

    /// Logs record `{"m":i}` into the memory queue (counted as logged).
    fn push_memory(sh: &crate::engine::queue::Shared, i: u64) {
        let data = format!("{{\"m\":{i}}}").into_bytes();
        let len = data.len() as u64;
        sh.queue.lock().push(0, None, sh.now_ms(), data);
        sh.counters.logged(len);
    }

    /// Stores what the memory queue holds, as the writer does once the disk works again.
    fn store_queued(sh: &crate::engine::queue::Shared) {
        let mut g = crate::engine::queue::lock(&sh.store);
        let s = g.as_mut().unwrap();
        let mut q = sh.queue.lock();
        let (batch, target) = q.take_for_commit();
        s.insert(&batch, false).unwrap();
        q.finish_commit(None, target, false);
        drop(q);
        sh.mirror_store(s);
    }

    /// Records 1..=2 are out in a request from memory while storage is degraded; the disk
    /// recovers and records 3..=4, logged meanwhile, are stored; the request fails and 1..=2
    /// go back to memory; 3..=4 are delivered from the file. The delivered watermark must not
    /// pass 1..=2 (it did, in either order, and the writer then stored them below it, where
    /// nothing reads): once the writer stores them they are sent.
    #[test]
    fn the_watermark_never_passes_records_held_in_memory() {
        for order in ["oldest_first", "newest_first"] {
            let dir = tempfile::tempdir().unwrap();
            let (mut w, accept) = memory_worker(dir.path(), order);
            let sh = Arc::clone(&w.sh);
            let push = |i: u64| push_memory(&sh, i);
            push(1);
            push(2);
            sh.counters.storage_degraded.store(1, Relaxed);
            let batch = w.take_memory().unwrap();
            // The disk works again while 1..=2 are in flight.
            sh.counters.storage_degraded.store(0, Relaxed);
            push(3);
            push(4);
            store_queued(&sh);
            w.deliver_memory(batch);
            *accept.lock().unwrap() = true;
            w.clock.cut_short(std::time::Instant::now());
            w.attempt();
            assert_eq!(w.transport.sent, [vec![1, 2], vec![3, 4]], "{order}");
            store_queued(&sh);
            for _ in 0..3 {
                w.attempt();
            }
            assert_eq!(
                w.transport.sent,
                [vec![1, 2], vec![3, 4], vec![1, 2]],
                "{order}"
            );
            assert_eq!(sh.counters.delivered_total.load(Relaxed), 4, "{order}");
            assert_eq!(sh.counters.pending_records(), 0, "{order}");
            assert_eq!(sh.mirror.disk_pending(), 0, "{order}");
        }
    }
}
