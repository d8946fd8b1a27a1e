//! Degraded mode: while the buffer file cannot be written, records stay in the memory queue
//! and the worker delivers them from there, under an instance of their own.

use super::{Flow, Transport, Worker};
use crate::engine::queue::lock;
use crate::sender::Outcome;
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
            .saturating_sub(self.sh.disk_pending.load(Relaxed))
    }

    /// Takes the oldest records held in memory (storage degraded) for one request. They
    /// carry an instance of their own: their seqs were never committed to the file.
    pub(super) fn take_memory(&mut self) -> Option<Vec<StoredRecord>> {
        let sh = Arc::clone(&self.sh);
        if sh.counters.storage_degraded.load(Relaxed) == 0 {
            return None;
        }
        let mut q = lock(&sh.queue);
        if q.items.is_empty() || q.mem_inflight.is_some() || q.mem_abandoned {
            return None;
        }
        let inst = match &q.mem_instance {
            Some(i) => i.clone(),
            None => {
                let i = crate::sys::random_instance().ok()?;
                q.mem_instance = Some(i.clone());
                i
            }
        };
        let (mut n, mut body) = (0usize, 2u64);
        for r in q.items.iter() {
            let len = self.envelope_cost(inst.len(), r.seq, r.ts_ms, r.data.len());
            if n as u64 >= self.sizing.cap() || (n > 0 && body + len > sh.cfg.batch_max_bytes) {
                break;
            }
            body += len;
            n += 1;
        }
        let mut out = Vec::with_capacity(n);
        let mut bytes = 0u64;
        for mut r in q.items.drain(..n) {
            bytes += r.data.len() as u64;
            let inst = r.inst.get_or_insert_with(|| inst.clone()).clone();
            out.push(StoredRecord {
                seq: r.seq,
                ts_ms: r.ts_ms,
                inst: Some(inst),
                data: std::mem::take(&mut r.data),
            });
        }
        q.bytes = q.bytes.saturating_sub(bytes);
        q.mem_inflight = out.first().map(|r| (r.seq, out.len() as u64, bytes));
        sh.room_cv.notify_all();
        Some(out)
    }

    /// Delivers records held in memory while storage is degraded. Whatever is not accepted
    /// goes back in front of the memory queue (the writer stores it once the disk works).
    pub(super) fn deliver_memory(&mut self, batch: Vec<StoredRecord>) -> Flow {
        let n = batch.len();
        let a = self.send(&batch);
        let sh = Arc::clone(&self.sh);
        let mut q = lock(&sh.queue);
        q.mem_inflight = None;
        if q.mem_abandoned {
            // Close counted these as lost and took the file away.
            return Flow::Exit;
        }
        if a.outcome == Outcome::Delivered {
            drop(q);
            let bytes: u64 = batch.iter().map(|r| r.data.len() as u64).sum();
            self.succeeded(batch.len() as u64, bytes, &a);
            return Flow::Continue;
        }
        for r in batch.into_iter().rev() {
            q.bytes += r.data.len() as u64;
            q.items.push_front(crate::store::NewRecord {
                seq: r.seq,
                ts_ms: r.ts_ms,
                // Not known any more; only TTL uses it: from now.
                t_acc_ms: sh.now_ms(),
                inst: r.inst,
                data: r.data,
            });
        }
        drop(q);
        sh.queue_cv.notify_one();
        if a.outcome == Outcome::Split && n > 1 {
            self.sizing.body_limit_found(n);
        }
        self.fail_and_wait(&a, a.outcome);
        Flow::Continue
    }
}
