//! Degraded mode: while the buffer file cannot be written, records stay in the memory queue
//! and the worker delivers them from there, under an instance of their own.

use super::{Flow, Transport, Worker};
use crate::http::Outcome;
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

    /// Takes the oldest records held in memory (storage degraded) for one request. They
    /// carry an instance of their own: their seqs were never committed to the file.
    pub(super) fn take_memory(&mut self) -> Option<Vec<StoredRecord>> {
        let sh = Arc::clone(&self.sh);
        if sh.counters.storage_degraded.load(Relaxed) == 0 {
            return None;
        }
        let mut q = sh.queue.lock();
        let out = q.take_for_delivery(self.sizing.cap(), self.body_budget(), |inst_len, r| {
            self.record_cost(inst_len, r.seq, r.ts_ms, &r.data)
        })?;
        sh.queue.room_cv.notify_all();
        Some(out)
    }

    /// Delivers records held in memory while storage is degraded. Whatever is not accepted
    /// goes back in front of the memory queue (the writer stores it once the disk works).
    pub(super) fn deliver_memory(&mut self, batch: Vec<StoredRecord>) -> Flow {
        let n = batch.len();
        let sent = self.send(&batch, false);
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
    use super::super::fake::worker;
    use crate::http::Outcome;
    use std::sync::atomic::Ordering::Relaxed;
    use std::sync::{Arc, Mutex};

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
            sh.queue.lock().push(0, sh.now_ms(), data);
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
}
