//! State shared by the caller's threads, the writer, the worker and the status readers of one
//! buffer: the memory queue and its seq watermarks ([`QueueState`], owned by the engine), what
//! wakes the worker ([`Signals`]), and lock-free mirrors of the file's counts ([`StoreMirror`]).
//! Each changes only through its own methods.
//!
//! # Locks
//!
//! The order, outermost first; a thread holding one lock only ever takes locks further down:
//!
//! 1. `Buffer::threads` (engine/mod.rs): held by `close` through the whole shutdown, and by
//!    `start_events` (which then takes the event queue's lock).
//! 2. `store`: held for SQLite work and fsyncs, by the writer, the worker (fetch, settle, dead
//!    letters), the prefetch helper, flush/close polls, and in sync mode by the logging thread
//!    that leads a group commit (`writer::lead_commit` releases `queue` before it takes `store`).
//!    Never held across a network request.
//! 3. `queue`: memory operations only (and one `getrandom`, for the instance of records
//!    delivered from memory). The writer takes it under `store` to fail sync-mode records and
//!    to expire the memory queue; the worker, to read the lowest seq held in memory when it
//!    moves the delivered watermark (`QueueState::lowest_unsettled`).
//! 4. `signals`: memory operations only; never held together with `store`, `queue` or the
//!    event queue.
//! 5. The event queue (events.rs): innermost; `emit` never blocks, so events may be emitted
//!    under any of the above. Callbacks run with no lock held.
//!
//! Condition-variable waits release their lock; waiting on a thread (join) or on the
//! prefetch helper happens with no lock held except `threads` in `close`, which none of the
//! joined threads takes.

use crate::clock::{BootClock, ClockMark};
use crate::config::Config;
use crate::error::Code;
use crate::events::Events;
use crate::status::Counters;
use crate::store::{NewRecord, Store, StoredRecord};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The in-memory queue in front of the disk, and the seq watermarks of what left it.
///
/// Loggers push (`Buffer::log`); the writer, or in sync mode a logging thread leading a group
/// commit, takes records out to write them; while storage is degraded the worker borrows
/// records to deliver them from memory and gives back what was not accepted.
pub struct QueueState {
    items: VecDeque<NewRecord>,
    bytes: u64,
    next_seq: u64,
    /// Every seq up to this one is on disk or settled.
    committed_seq: u64,
    /// Every seq up to this one is on disk and fsync'd (or settled).
    synced_seq: u64,
    /// edgebuf_sync wants every seq up to this one fsync'd.
    sync_wanted: u64,
    /// A flush or close wants the queue written now.
    urgent: bool,
    /// Someone (the writer, or in sync mode a logging thread leading a group commit) has
    /// taken records out of `items` and is writing them.
    committing: bool,
    /// The lowest seq of the records being written (out of `items`, not yet on disk).
    writing_from: Option<u64>,
    /// Sync mode: the size of the last group commit, and whether a leader is waiting for the
    /// group to gather (see `writer::lead_commit`).
    last_group: usize,
    gathering: bool,
    closing: bool,
    writer_done: bool,
    /// Sync-mode records that could not be stored, with the code their edgebuf_log returns.
    failed: Vec<(u64, Code)>,
    memory: MemoryDelivery,
}

/// Delivery from memory while storage is degraded (delivery/degraded.rs).
#[derive(Default)]
struct MemoryDelivery {
    /// The records the worker has taken out of `items` for the request in flight (lowest
    /// seq, count, bytes).
    inflight: Option<(u64, u64, u64)>,
    /// The instance of records delivered from memory (drawn when first needed, in memory
    /// only): their seqs were never committed to the file, which may hand them out again.
    instance: Option<String>,
    /// Close counted what was left in memory as lost: a late answer settles nothing.
    abandoned: bool,
}

impl QueueState {
    /// An empty queue whose first record takes `next_seq`.
    pub fn new(next_seq: u64) -> QueueState {
        QueueState {
            items: VecDeque::new(),
            bytes: 0,
            next_seq,
            committed_seq: next_seq - 1,
            synced_seq: next_seq - 1,
            sync_wanted: 0,
            urgent: false,
            committing: false,
            writing_from: None,
            last_group: 0,
            gathering: false,
            closing: false,
            writer_done: false,
            failed: Vec::new(),
            memory: MemoryDelivery::default(),
        }
    }

    // --- Intake ---

    /// Queues a record; returns its seq. `boot_ms`: the boot clock of a record logged with an
    /// invalid wall clock (src/clock.rs).
    #[inline]
    pub fn push(&mut self, ts_ms: i64, boot_ms: Option<i64>, t_acc_ms: u64, data: Vec<u8>) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.bytes += data.len() as u64;
        self.items.push_back(NewRecord {
            seq,
            ts_ms,
            t_acc_ms,
            inst: None,
            data,
            boot_ms,
        });
        seq
    }

    /// The highest seq handed out so far.
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// Records queued.
    #[inline]
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The oldest record queued.
    pub fn first(&self) -> Option<&NewRecord> {
        self.items.front()
    }

    /// A record of `len` bytes does not fit within `max_records` and `max_bytes`.
    #[inline]
    pub fn full(&self, len: u64, max_records: u64, max_bytes: u64) -> bool {
        self.items.len() as u64 >= max_records || self.bytes + len > max_bytes
    }

    /// Removes the oldest record queued; returns its bytes.
    pub fn drop_oldest(&mut self) -> Option<u64> {
        let old = self.items.pop_front()?;
        let len = old.data.len() as u64;
        self.bytes -= len.min(self.bytes);
        Some(len)
    }

    /// Removes the records accepted before `now_ms` - `ttl_ms`; returns their count and bytes.
    pub fn expire(&mut self, now_ms: u64, ttl_ms: u64) -> (u64, u64) {
        let (mut n, mut b) = (0, 0);
        while self
            .items
            .front()
            .is_some_and(|r| now_ms > r.t_acc_ms + ttl_ms)
        {
            if let Some(len) = self.drop_oldest() {
                n += 1;
                b += len;
            }
        }
        (n, b)
    }

    /// The lowest seq queued, being written, or being delivered from memory.
    pub fn lowest_unsettled(&self) -> Option<u64> {
        [
            self.items.front().map(|r| r.seq),
            self.writing_from,
            self.memory.inflight.map(|m| m.0),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // --- Lifecycle ---

    pub fn closing(&self) -> bool {
        self.closing
    }

    /// Stops intake (close or interrupt).
    pub fn close(&mut self) {
        self.closing = true;
    }

    /// The writer has ended: nothing queued will be committed any more.
    pub fn writer_done(&self) -> bool {
        self.writer_done
    }

    pub fn set_writer_done(&mut self) {
        self.writer_done = true;
    }

    /// At close, once the worker has stopped: what is left in memory (queued, or in a request
    /// from memory) is lost. Returns its count and bytes; a late answer settles nothing.
    pub fn abandon(&mut self) -> (u64, u64) {
        let (n_in, b_in) = self.memory.inflight.map_or((0, 0), |(_, n, b)| (n, b));
        let n = self.items.len() as u64 + n_in;
        let bytes = self.bytes + b_in;
        self.items.clear();
        self.bytes = 0;
        self.memory.abandoned = true;
        (n, bytes)
    }

    // --- Commits ---

    /// A flush or close wants the queue written now.
    pub fn set_urgent(&mut self) {
        self.urgent = true;
    }

    pub fn urgent(&self) -> bool {
        self.urgent
    }

    pub fn clear_urgent(&mut self) {
        self.urgent = false;
    }

    /// Someone is writing records taken from the queue.
    pub fn committing(&self) -> bool {
        self.committing
    }

    /// Sync mode: nobody commits while records wait, so a logging thread leads a commit.
    pub fn needs_leader(&self) -> bool {
        !self.committing && !self.items.is_empty()
    }

    /// Marks the queue as being committed (before a leader gathers its group).
    pub fn begin_commit(&mut self) {
        self.committing = true;
    }

    /// Takes every queued record for one commit, marking the queue as being written. Returns
    /// them and the highest seq handed out so far.
    pub fn take_for_commit(&mut self) -> (Vec<NewRecord>, u64) {
        self.committing = true;
        self.writing_from = self.items.front().map(|r| r.seq);
        let target = self.next_seq.saturating_sub(1);
        let batch = self.items.drain(..).collect();
        self.bytes = 0;
        (batch, target)
    }

    /// After the write of what `take_for_commit` took: advances the committed (and, after an
    /// fsync, synced) seq, or puts `held` records back in front, where they stay in memory
    /// within memory.max_bytes. True when records were held.
    pub fn finish_commit(
        &mut self,
        held: Option<Vec<NewRecord>>,
        target: u64,
        fsync: bool,
    ) -> bool {
        self.committing = false;
        self.writing_from = None;
        match held {
            None => {
                // Records still queued (put back after a failure) are not committed.
                let done = match self.items.front() {
                    Some(first) => first.seq.saturating_sub(1).min(target),
                    None => target,
                };
                self.committed_seq = self.committed_seq.max(done);
                if fsync {
                    self.synced_seq = self.committed_seq;
                }
                false
            }
            Some(recs) => {
                for r in recs.into_iter().rev() {
                    self.bytes += r.data.len() as u64;
                    self.items.push_front(r);
                }
                true
            }
        }
    }

    /// Every seq up to `seq` is on disk or settled.
    pub fn committed(&self, seq: u64) -> bool {
        self.committed_seq >= seq
    }

    /// Sync mode: these records could not be stored; their log calls return `code`.
    pub fn fail(&mut self, seqs: impl Iterator<Item = u64>, code: Code) {
        self.failed.extend(seqs.map(|s| (s, code)));
    }

    /// The code the log call of `seq` returns, if its record could not be stored.
    pub fn take_failure(&mut self, seq: u64) -> Option<Code> {
        let i = self.failed.iter().position(|f| f.0 == seq)?;
        Some(self.failed.swap_remove(i).1)
    }

    /// edgebuf_sync wants every seq up to `target` fsync'd.
    pub fn want_synced(&mut self, target: u64) {
        self.sync_wanted = self.sync_wanted.max(target);
    }

    /// Every seq up to `target` is on disk and fsync'd (or settled).
    pub fn synced(&self, target: u64) -> bool {
        self.synced_seq >= target
    }

    /// An edgebuf_sync waits for an fsync.
    pub fn sync_wanted(&self) -> bool {
        self.sync_wanted > self.synced_seq
    }

    // --- Sync-mode group commit (writer::lead_commit) ---

    /// The leader still waits for the threads of the last group.
    pub fn group_gathering(&self) -> bool {
        self.items.len() < self.last_group && !self.closing
    }

    pub fn set_gathering(&mut self, gathering: bool) {
        self.gathering = gathering;
    }

    /// The group gathered: its size is what the next leader waits for.
    pub fn group_gathered(&mut self) {
        self.gathering = false;
        self.last_group = self.items.len().max(1);
    }

    /// A leader waits, and the group it waits for has arrived.
    pub fn group_complete(&self) -> bool {
        self.gathering && self.items.len() >= self.last_group
    }

    // --- Delivery from memory (storage degraded) ---

    /// Takes the oldest records (with `newest`, the newest) for one request from memory, in
    /// seq order: at most `max_records`, within `max_bytes` of body as `cost` (instance,
    /// record, ts_ms and clock mark as sent) counts it. They carry an instance of their own,
    /// drawn when first needed, and the `ts_ms` of those logged with an invalid clock is
    /// repaired as from the file (src/clock.rs). None when nothing is queued, a request from
    /// memory is in flight already, or close abandoned the queue.
    pub fn take_for_delivery(
        &mut self,
        newest: bool,
        max_records: u64,
        max_bytes: u64,
        clock: &BootClock,
        cost: impl Fn(&str, &NewRecord, i64, ClockMark) -> u64,
    ) -> Option<Vec<StoredRecord>> {
        if self.items.is_empty() || self.memory.inflight.is_some() || self.memory.abandoned {
            return None;
        }
        let inst = match &self.memory.instance {
            Some(i) => i.clone(),
            None => {
                let i = crate::sys::random_instance().ok()?;
                self.memory.instance = Some(i.clone());
                i
            }
        };
        let now = clock.now();
        let sent = |r: &NewRecord| match r.boot_ms {
            None => (r.ts_ms, ClockMark::Valid),
            Some(boot_ms) => now.repair(r.ts_ms, boot_ms, clock.boot_id.as_deref()),
        };
        let (mut n, mut body) = (0usize, 2u64);
        let mut candidates: Box<dyn Iterator<Item = &NewRecord>> = if newest {
            Box::new(self.items.iter().rev())
        } else {
            Box::new(self.items.iter())
        };
        for r in &mut candidates {
            let (ts_ms, mark) = sent(r);
            let len = cost(&inst, r, ts_ms, mark);
            if n as u64 >= max_records || (n > 0 && body + len > max_bytes) {
                break;
            }
            body += len;
            n += 1;
        }
        drop(candidates);
        let taken = if newest {
            self.items.len() - n..self.items.len()
        } else {
            0..n
        };
        let mut out = Vec::with_capacity(n);
        let mut bytes = 0u64;
        for mut r in self.items.drain(taken) {
            bytes += r.data.len() as u64;
            let inst = r.inst.get_or_insert_with(|| inst.clone()).clone();
            let (ts_ms, clock) = sent(&r);
            out.push(StoredRecord {
                seq: r.seq,
                ts_ms,
                inst: Some(inst),
                data: std::mem::take(&mut r.data),
                clock,
                logged_clock: r.boot_ms.map(|b| (r.ts_ms, b)),
            });
        }
        self.bytes = self.bytes.saturating_sub(bytes);
        self.memory.inflight = out.first().map(|r| (r.seq, out.len() as u64, bytes));
        Some(out)
    }

    /// The request from memory was answered. False when close abandoned its records meanwhile
    /// (they were counted as lost).
    pub fn delivery_done(&mut self) -> bool {
        self.memory.inflight = None;
        !self.memory.abandoned
    }

    /// Puts records a request from memory did not deliver back in the queue, in seq order
    /// (the oldest go in front; the newest behind older ones, before any logged meanwhile); the
    /// writer stores them once the disk works. Their acceptance time is not known any more;
    /// only TTL uses it: `now_ms`.
    pub fn give_back(&mut self, recs: Vec<StoredRecord>, now_ms: u64) {
        for r in recs.into_iter().rev() {
            self.bytes += r.data.len() as u64;
            // As logged: a record logged with an invalid clock keeps its boot clock.
            let (ts_ms, boot_ms) = match r.logged_clock {
                Some((ts, boot)) => (ts, Some(boot)),
                None => (r.ts_ms, None),
            };
            let at = self.items.partition_point(|q| q.seq < r.seq);
            self.items.insert(
                at,
                NewRecord {
                    seq: r.seq,
                    ts_ms,
                    t_acc_ms: now_ms,
                    inst: r.inst,
                    data: r.data,
                    boot_ms,
                },
            );
        }
    }
}

/// What wakes the delivery worker.
#[derive(Default)]
pub struct Signals {
    /// The worker sleeps until records arrive (nothing pending, or lingering for a fuller
    /// batch): commits wake it only then.
    wants_records: bool,
    retry_now: bool,
    /// Flush/close callers waiting: partial batches go out without linger.
    flushing: u32,
    /// Stop at the next wait point.
    stop: bool,
    worker_exited: bool,
}

impl Signals {
    /// edgebuf_retry_now: cut a running backoff short.
    pub fn retry_now(&mut self) {
        self.retry_now = true;
    }

    /// Whether retry_now was asked since the last look.
    pub fn take_retry_now(&mut self) -> bool {
        std::mem::take(&mut self.retry_now)
    }

    /// A flush or close starts (or stops) waiting for deliveries.
    pub fn flush_started(&mut self) {
        self.flushing += 1;
    }

    pub fn flush_ended(&mut self) {
        self.flushing = self.flushing.saturating_sub(1);
    }

    pub fn flushing(&self) -> bool {
        self.flushing > 0
    }

    /// Close: the worker stops at its next wait point.
    pub fn stop(&mut self) {
        self.stop = true;
    }

    pub fn stopping(&self) -> bool {
        self.stop
    }

    pub fn set_wants_records(&mut self, wants: bool) {
        self.wants_records = wants;
    }

    pub fn worker_exited(&self) -> bool {
        self.worker_exited
    }

    pub fn set_worker_exited(&mut self) {
        self.worker_exited = true;
    }
}

/// The store's counts, mirrored for lock-free readers (the worker's linger, the writer's
/// housekeeping, status). Written only by `Shared::mirror_store` and `mirror_counts`, under
/// the store lock.
pub struct StoreMirror {
    /// Records pending on disk.
    disk_pending: AtomicU64,
    /// Acceptance time (ms since open) + 1 of the oldest record on disk; 0 when none.
    disk_oldest: AtomicU64,
    /// Delivered records not reclaimed from the file yet, and their bytes.
    garbage: AtomicU64,
    garbage_bytes: AtomicU64,
}

impl StoreMirror {
    pub fn disk_pending(&self) -> u64 {
        self.disk_pending.load(Relaxed)
    }

    /// The acceptance time (ms since open) of the oldest record on disk.
    pub fn disk_oldest(&self) -> Option<u64> {
        match self.disk_oldest.load(Relaxed) {
            0 => None,
            t => Some(t - 1),
        }
    }

    pub fn garbage(&self) -> u64 {
        self.garbage.load(Relaxed)
    }

    pub fn garbage_bytes(&self) -> u64 {
        self.garbage_bytes.load(Relaxed)
    }
}

/// The memory queue's lock and the condition variables its users wait on.
pub struct Queue {
    state: Mutex<QueueState>,
    /// The writer waits here for records.
    pub writer_cv: Condvar,
    /// Loggers wait here for room in the memory queue.
    pub room_cv: Condvar,
    /// Sync-mode loggers and edgebuf_sync wait here for commits.
    pub commit_cv: Condvar,
    /// A leading sync-mode logger waits here for its group to gather.
    pub group_cv: Condvar,
}

impl Queue {
    pub fn lock(&self) -> MutexGuard<'_, QueueState> {
        lock(&self.state)
    }

    /// Stops intake and wakes everyone waiting on the queue: the writer writes what is left,
    /// loggers and edgebuf_sync return CLOSED.
    pub fn close(&self) {
        let mut q = self.lock();
        q.close();
        self.writer_cv.notify_all();
        self.room_cv.notify_all();
        self.commit_cv.notify_all();
    }
}

/// The worker's signals' lock and the condition variables waited on with it.
pub struct WorkerSignals {
    state: Mutex<Signals>,
    /// The worker waits here.
    pub worker_cv: Condvar,
    /// Flush and close wait here for settlements.
    pub progress_cv: Condvar,
}

impl WorkerSignals {
    pub fn lock(&self) -> MutexGuard<'_, Signals> {
        lock(&self.state)
    }
}

pub struct Shared {
    pub cfg: Config,
    pub counters: Counters,
    pub events: Events,
    pub path: PathBuf,
    pub instance: String,
    /// The bound of a valid wall clock and this boot's id, read at open (src/clock.rs).
    pub clock: BootClock,
    pub opened: Instant,
    /// None once close has taken the file away: an abandoned request then touches nothing.
    pub store: Mutex<Option<Store>>,
    pub queue: Queue,
    pub signals: WorkerSignals,
    pub mirror: StoreMirror,
    /// BACKLOG_HIGH is armed (fires on the next upward crossing; see `capacity`).
    pub backlog: super::capacity::Backlog,
}

/// Locks a mutex, riding over poisoning: every critical section here leaves its state
/// consistent, so a panic elsewhere must not take the buffer down.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Waits on a condition variable with a timeout, riding over poisoning.
pub fn wait_timeout<'a, T>(cv: &Condvar, g: MutexGuard<'a, T>, d: Duration) -> MutexGuard<'a, T> {
    match cv.wait_timeout(g, d) {
        Ok((g, _)) => g,
        Err(p) => p.into_inner().0,
    }
}

/// Waits on a condition variable, riding over poisoning.
pub fn wait<'a, T>(cv: &Condvar, g: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    cv.wait(g).unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// The state of a buffer whose file was just opened: delivery resumes with what it holds,
    /// new records take the seqs after it.
    pub fn new(cfg: &Config, mut store: Store, events: Events) -> Shared {
        let next_seq = store.next_seq();
        store.set_run_first_seq(next_seq);
        let counters = Counters::default();
        counters.opened(store.disk_records, store.disk_bytes, store.dead_records);
        let sh = Shared {
            cfg: cfg.clone(),
            counters,
            events,
            path: store.path().to_path_buf(),
            instance: store.instance().to_string(),
            clock: store.boot_clock().clone(),
            opened: Instant::now(),
            mirror: StoreMirror {
                disk_pending: AtomicU64::new(store.disk_records),
                disk_oldest: AtomicU64::new(0),
                garbage: AtomicU64::new(0),
                garbage_bytes: AtomicU64::new(0),
            },
            backlog: super::capacity::Backlog::default(),
            store: Mutex::new(None),
            queue: Queue {
                state: Mutex::new(QueueState::new(next_seq)),
                writer_cv: Condvar::new(),
                room_cv: Condvar::new(),
                commit_cv: Condvar::new(),
                group_cv: Condvar::new(),
            },
            signals: WorkerSignals {
                state: Mutex::new(Signals::default()),
                worker_cv: Condvar::new(),
                progress_cv: Condvar::new(),
            },
        };
        sh.mirror_store(&mut store);
        *lock(&sh.store) = Some(store);
        sh
    }

    /// Milliseconds since open on the monotonic clock.
    pub fn now_ms(&self) -> u64 {
        self.opened.elapsed().as_millis() as u64
    }

    /// Counts records removed by the capacity policy or TTL and reports them.
    pub fn count_dropped(&self, n: u64, bytes: u64, why: &str) {
        if n == 0 {
            return;
        }
        self.counters.dropped(n, bytes);
        self.events.emit(
            crate::events::EVENT_DROPPED,
            n,
            0,
            format!("{n} records dropped ({why})"),
        );
    }

    /// Mirrors the store's pending count and oldest record for lock-free readers.
    pub fn mirror_store(&self, store: &mut Store) {
        self.mirror_counts(store);
        let oldest = match store.oldest() {
            Ok(Some((_, t))) => t + 1,
            _ => 0,
        };
        self.mirror.disk_oldest.store(oldest, Relaxed);
    }

    /// The counts only: enough after an insert into a file that already held pending
    /// records (the oldest stays the oldest).
    pub fn mirror_counts(&self, store: &Store) {
        let m = &self.mirror;
        m.disk_pending.store(store.disk_records, Relaxed);
        m.garbage.store(store.garbage_records, Relaxed);
        m.garbage_bytes.store(store.garbage_bytes, Relaxed);
        self.counters
            .dead_letter_records
            .store(store.dead_records, Relaxed);
    }

    /// Wakes the worker (new records, retry_now, flush).
    pub fn poke_worker(&self, f: impl FnOnce(&mut Signals)) {
        let mut s = self.signals.lock();
        f(&mut s);
        self.signals.worker_cv.notify_all();
    }

    /// After a commit: wakes the worker if it is waiting for records (not during a backoff).
    pub fn records_committed(&self) {
        let s = self.signals.lock();
        if s.wants_records {
            self.signals.worker_cv.notify_all();
        }
    }

    /// Wakes flush and close waiters.
    pub fn notify_progress(&self) {
        let _g = self.signals.lock();
        self.signals.progress_cv.notify_all();
    }
}
