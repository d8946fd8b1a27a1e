//! The capacity policy (`capacity.when_full`, docs/reference.md, configuration), record.ttl_ms, and the BACKLOG_HIGH
//! alert: which records give way when the buffer, the memory queue or the disk is full. The
//! SQL that removes them is the store's.

use super::queue::{QueueState, Shared};
use super::writer::GC_CHUNK;
use crate::config::{Durability, WhenFull};
use crate::error::{Code, Error, Result};
use crate::events::EVENT_BACKLOG_HIGH;
use crate::store::{NewRecord, Store, WriteError};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

pub(super) fn full_err() -> Error {
    Error::new(
        Code::Full,
        "the buffer is full (capacity.max_bytes or capacity.max_records); the record was not stored",
    )
}

/// A log call of `len` bytes is over capacity.max_bytes or capacity.max_records and the
/// policy refuses it here (drop_oldest makes room in the writer instead).
#[inline]
pub(super) fn refuse_at_intake(sh: &Shared, len: u64) -> bool {
    if sh.cfg.capacity_when_full == WhenFull::DropOldest {
        return false;
    }
    let c = &sh.counters;
    let over_records =
        sh.cfg.capacity_max_records > 0 && c.pending_records() + 1 > sh.cfg.capacity_max_records;
    let over_bytes = c.pending_bytes.load(Relaxed) + len > sh.cfg.capacity_max_bytes;
    over_records || over_bytes
}

/// A record that does not fit: reject refuses it; drop_newest (or drop_oldest with nothing to
/// drop) counts it as logged and dropped, and a sync-mode caller still learns it was not
/// stored.
pub(super) fn refuse(sh: &Shared, len: u64) -> Result<()> {
    match sh.cfg.capacity_when_full {
        WhenFull::Reject => Err(full_err()),
        _ => {
            sh.counters.logged(len);
            sh.count_dropped(1, len, "capacity, drop_newest");
            if sh.cfg.durability == Durability::Sync {
                Err(full_err())
            } else {
                Ok(())
            }
        }
    }
}

/// The memory queue stayed full for memory.max_wait_ms: drop_oldest drops its oldest records
/// until one of `len` bytes fits. False when the record must be refused instead.
pub(super) fn make_room_in_memory(sh: &Shared, q: &mut QueueState, len: u64) -> bool {
    if sh.cfg.capacity_when_full != WhenFull::DropOldest || q.is_empty() {
        return false;
    }
    while q.full(len, sh.cfg.memory_max_records, sh.cfg.memory_max_bytes) {
        let Some(bytes) = q.drop_oldest() else {
            break;
        };
        sh.count_dropped(1, bytes, "memory queue full, drop_oldest");
    }
    true
}

/// drop_oldest: makes room on disk before `batch`, newer, is stored; when the file holds
/// nothing more to drop, the oldest records of the batch give way.
pub(super) fn make_room_on_disk(sh: &Shared, store: &mut Store, batch: &mut Vec<NewRecord>) {
    if sh.cfg.capacity_when_full != WhenFull::DropOldest {
        return;
    }
    let max_b = sh.cfg.capacity_max_bytes;
    let max_r = sh.cfg.capacity_max_records;
    let pending_b = sh.counters.pending_bytes.load(Relaxed);
    let pending_r = sh.counters.pending_records();
    let need_b = (pending_b + store.dead_bytes).saturating_sub(max_b);
    let need_r = if max_r > 0 {
        pending_r.saturating_sub(max_r)
    } else {
        0
    };
    if need_b == 0 && need_r == 0 {
        return;
    }
    if let Ok((n, b)) = store.make_room(need_b, need_r) {
        sh.count_dropped(n, b, "capacity, drop_oldest");
        let still_b = need_b.saturating_sub(b);
        let still_r = need_r.saturating_sub(n);
        // Nothing left to drop on disk: drop the oldest of this batch.
        let (mut dn, mut db, mut i) = (0u64, 0u64, 0usize);
        while i < batch.len() && (db < still_b || dn < still_r) {
            db += batch[i].data.len() as u64;
            dn += 1;
            i += 1;
        }
        if i > 0 {
            batch.drain(..i);
            sh.count_dropped(dn, db, "capacity, drop_oldest");
        }
    }
}

/// Stores `batch`; when the disk is full, first reclaims delivered rows, then (drop_oldest)
/// drops the oldest pending records to make room, and tries again.
pub(super) fn insert(
    sh: &Shared,
    store: &mut Store,
    batch: &[NewRecord],
    fsync: bool,
) -> std::result::Result<(), WriteError> {
    let mut attempt = store.insert(batch, fsync);
    if matches!(attempt, Err(WriteError::Full)) && store.garbage_records > 0 {
        // Reclaim delivered rows before anything pending is dropped.
        while matches!(store.collect_garbage(GC_CHUNK * 8), Ok(n) if n > 0) {}
        store.maintain();
        attempt = store.insert(batch, fsync);
    }
    if matches!(attempt, Err(WriteError::Full)) {
        store.recheck_space_soon();
        if sh.cfg.capacity_when_full == WhenFull::DropOldest {
            let need: u64 = batch.iter().map(|r| r.data.len() as u64).sum();
            if let Ok((n, b)) = store.make_room(need, batch.len() as u64) {
                sh.count_dropped(n, b, "disk full, drop_oldest");
                if n > 0 {
                    store.maintain();
                    attempt = store.insert(batch, fsync);
                }
            }
        }
    }
    attempt
}

/// The disk is full and nothing could be dropped: the new records are dropped (or refused,
/// in sync mode, to their log calls).
pub(super) fn refused_by_disk(sh: &Shared, batch: &[NewRecord]) {
    let n = batch.len() as u64;
    let bytes: u64 = batch.iter().map(|r| r.data.len() as u64).sum();
    if sh.cfg.durability == Durability::Sync {
        sh.queue
            .lock()
            .fail(batch.iter().map(|r| r.seq), Code::Full);
        if sh.cfg.capacity_when_full == WhenFull::Reject {
            // Refused records are not counted as logged.
            sh.counters.unlogged(n, bytes);
        } else {
            sh.count_dropped(n, bytes, "disk full");
        }
    } else {
        sh.count_dropped(n, bytes, "disk full");
    }
}

/// record.ttl_ms: drops the records older than the TTL, on disk and in memory.
pub(super) fn expire(sh: &Shared, store: &mut Store) {
    if sh.cfg.record_ttl_ms == 0 {
        return;
    }
    if let Ok((n, b)) = store.expire(sh.now_ms(), sh.cfg.record_ttl_ms) {
        sh.count_dropped(n, b, "record.ttl_ms");
    }
    // Records still in memory expire too.
    let now = sh.now_ms();
    let (n, b) = sh.queue.lock().expire(now, sh.cfg.record_ttl_ms);
    sh.count_dropped(n, b, "record.ttl_ms");
}

/// BACKLOG_HIGH fires once per upward crossing of alert.pending_records or 90 % of
/// capacity.max_bytes, and is re-armed below 80 %.
pub struct Backlog {
    armed: AtomicBool,
}

impl Default for Backlog {
    fn default() -> Backlog {
        Backlog {
            armed: AtomicBool::new(true),
        }
    }
}

/// Reports BACKLOG_HIGH when the backlog crosses its threshold.
pub(crate) fn check_backlog(sh: &Shared) {
    let pending = sh.counters.pending_records();
    let bytes = sh.counters.pending_bytes.load(Relaxed);
    let alert = sh.cfg.alert_pending_records;
    let cap = sh.cfg.capacity_max_bytes;
    let high = pending >= alert || bytes.saturating_mul(10) >= cap.saturating_mul(9);
    let low = pending.saturating_mul(10) < alert.saturating_mul(8)
        && bytes.saturating_mul(10) < cap.saturating_mul(8);
    if high && sh.backlog.armed.swap(false, Relaxed) {
        sh.events.emit(
            EVENT_BACKLOG_HIGH,
            pending,
            0,
            format!("backlog is high: {pending} records, {bytes} bytes pending"),
        );
    } else if low {
        sh.backlog.armed.store(true, Relaxed);
    }
}
