//! State shared by the caller's threads, the writer, the worker and the status readers of one
//! buffer.
//!
//! # Locks
//!
//! The order, outermost first; a thread holding one lock only ever takes locks further down:
//!
//! 1. `Buffer::threads` (buffer.rs): held by `close` through the whole shutdown.
//! 2. `store`: held for SQLite work and fsyncs, by the writer, the worker (fetch, settle, dead
//!    letters), the prefetch helper, flush/close polls, and in sync mode by the logging thread
//!    that leads a group commit (`writer::lead_commit` releases `queue` before it takes `store`).
//!    Never held across a network request.
//! 3. `queue`: memory operations only (and one `getrandom`). The writer takes it under `store`
//!    to fill `failed` and to expire the memory queue.
//! 4. `signals`: memory operations only; never held together with `store`, `queue` or the
//!    event queue.
//! 5. The event queue (events.rs): innermost; `emit` never blocks, so events may be emitted
//!    under any of the above. Callbacks run with no lock held.
//!
//! Condition-variable waits release their lock; waiting on a thread (join) or on the
//! prefetch helper happens with no lock held except `threads` in `close`, which none of the
//! joined threads takes.

use crate::config::Config;
use crate::error::Code;
use crate::events::Events;
use crate::status::Counters;
use crate::store::{NewRecord, Store};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The in-memory queue in front of the disk.
#[derive(Default)]
pub struct QueueState {
    pub items: VecDeque<NewRecord>,
    pub bytes: u64,
    pub next_seq: u64,
    /// Every seq up to this one is on disk or settled.
    pub committed_seq: u64,
    /// Every seq up to this one is on disk and fsync'd (or settled).
    pub synced_seq: u64,
    /// edgebuf_sync wants every seq up to this one fsync'd.
    pub sync_wanted: u64,
    /// A flush or close wants the queue written now.
    pub urgent: bool,
    /// Someone (the writer, or in sync mode a logging thread leading a group commit) has
    /// taken records out of `items` and is writing them.
    pub committing: bool,
    /// The lowest seq of the records being written (out of `items`, not yet on disk).
    pub writing_from: Option<u64>,
    /// Sync mode: the size of the last group commit, and whether a leader is waiting for the
    /// group to gather (see `writer::lead_commit`).
    pub last_group: usize,
    pub gathering: bool,
    pub closing: bool,
    pub writer_done: bool,
    /// Sync-mode records that could not be stored, with the code their edgebuf_log returns.
    pub failed: Vec<(u64, Code)>,
    /// While storage is degraded the worker delivers from memory: the records it has taken
    /// out of `items` for the request in flight (lowest seq, count, bytes).
    pub mem_inflight: Option<(u64, u64, u64)>,
    /// The instance of records delivered from memory (drawn when first needed, in memory
    /// only): their seqs were never committed to the file, which may hand them out again.
    pub mem_instance: Option<String>,
    /// Close counted what was left in memory as lost: a late answer settles nothing.
    pub mem_abandoned: bool,
}

/// What wakes the delivery worker.
#[derive(Default)]
pub struct Signals {
    /// The worker sleeps until records arrive (nothing pending, or lingering for a fuller
    /// batch): commits wake it only then.
    pub wants_records: bool,
    pub retry_now: bool,
    /// Flush/close callers waiting: partial batches go out without linger.
    pub flushing: u32,
    /// Stop at the next wait point.
    pub stop: bool,
    pub worker_exited: bool,
}

pub struct Shared {
    pub cfg: Config,
    pub counters: Counters,
    pub events: Events,
    pub path: PathBuf,
    pub instance: String,
    pub opened: Instant,
    /// None once close has taken the file away: an abandoned request then touches nothing.
    pub store: Mutex<Option<Store>>,
    pub queue: Mutex<QueueState>,
    /// The writer waits here for records.
    pub queue_cv: Condvar,
    /// Loggers wait here for room in the memory queue.
    pub room_cv: Condvar,
    /// Sync-mode loggers and edgebuf_sync wait here for commits.
    pub commit_cv: Condvar,
    /// A leading sync-mode logger waits here for its group to gather.
    pub group_cv: Condvar,
    pub signals: Mutex<Signals>,
    /// The worker waits here.
    pub signal_cv: Condvar,
    /// Flush and close wait here for settlements.
    pub progress_cv: Condvar,
    /// Records pending on disk (mirror of the store's count, for the worker's linger).
    pub disk_pending: AtomicU64,
    /// Acceptance time (ms since open) + 1 of the oldest record on disk; 0 when none.
    pub disk_oldest: AtomicU64,
    /// BACKLOG_HIGH is armed (fires on the next upward crossing).
    pub backlog_armed: std::sync::atomic::AtomicBool,
    /// Delivered records not reclaimed from the file yet, and their bytes (mirror of the
    /// store's counts, for the writer's housekeeping).
    pub garbage: AtomicU64,
    pub garbage_bytes: AtomicU64,
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
            opened: Instant::now(),
            disk_pending: AtomicU64::new(store.disk_records),
            disk_oldest: AtomicU64::new(0),
            backlog_armed: std::sync::atomic::AtomicBool::new(true),
            garbage: AtomicU64::new(0),
            garbage_bytes: AtomicU64::new(0),
            store: Mutex::new(None),
            queue: Mutex::new(QueueState {
                next_seq,
                committed_seq: next_seq - 1,
                synced_seq: next_seq - 1,
                ..QueueState::default()
            }),
            queue_cv: Condvar::new(),
            room_cv: Condvar::new(),
            commit_cv: Condvar::new(),
            group_cv: Condvar::new(),
            signals: Mutex::new(Signals::default()),
            signal_cv: Condvar::new(),
            progress_cv: Condvar::new(),
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
        self.disk_oldest.store(oldest, Relaxed);
    }

    /// The counts only: enough after an insert into a file that already held pending
    /// records (the oldest stays the oldest).
    pub fn mirror_counts(&self, store: &Store) {
        self.disk_pending.store(store.disk_records, Relaxed);
        self.garbage.store(store.garbage_records, Relaxed);
        self.garbage_bytes.store(store.garbage_bytes, Relaxed);
        self.counters
            .dead_letter_records
            .store(store.dead_records, Relaxed);
    }

    /// Wakes the worker (new records, retry_now, flush).
    pub fn poke_worker(&self, f: impl FnOnce(&mut Signals)) {
        let mut s = lock(&self.signals);
        f(&mut s);
        self.signal_cv.notify_all();
    }

    /// After a commit: wakes the worker if it is waiting for records (not during a backoff).
    pub fn records_committed(&self) {
        let s = lock(&self.signals);
        if s.wants_records {
            self.signal_cv.notify_all();
        }
    }

    /// Wakes flush and close waiters.
    pub fn notify_progress(&self) {
        let _g = lock(&self.signals);
        self.progress_cv.notify_all();
    }
}
