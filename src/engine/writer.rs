//! The writer thread: moves records from the memory queue to the file in group commits,
//! applies the capacity policy and TTL (see `capacity`), and never waits on the network.

use super::capacity::{self, check_backlog};
use super::queue::{lock, wait, wait_timeout, QueueState, Shared};
use crate::config::Durability;
use crate::error::Code;
use crate::events::{EVENT_STORAGE_ERROR, EVENT_STORAGE_OK};
use crate::store::{NewRecord, WriteError};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::sync::MutexGuard;
use std::time::Duration;

/// A full batch of writes commits at once, without waiting for `commit.interval_ms`.
pub const COMMIT_BATCH: usize = 1024;
/// While the disk fails, writing is tried again this often.
const STORAGE_RETRY: Duration = Duration::from_secs(1);
/// Sync mode: logging threads commit their records themselves (see `lead_commit`); the writer
/// commits what they left only after this long (a safety net; at close at once).
const SYNC_FALLBACK_MS: u64 = 50;
/// Sync mode: how long a leading logger waits for the threads of the last group.
const GATHER: Duration = Duration::from_micros(500);
/// TTL sweeps and space maintenance run at most this often.
const HOUSEKEEPING: Duration = Duration::from_secs(1);
/// Delivered rows are reclaimed in transactions of this many rows...
pub(super) const GC_CHUNK: u64 = 2048;
/// ...for at most this long per housekeeping round (records due to be written come first).
const GC_BUDGET: Duration = Duration::from_secs(1);

pub fn run(sh: Arc<Shared>) {
    let sync_mode = sh.cfg.durability == Durability::Sync;
    let interval_ms = sh.cfg.commit_interval_ms;
    let mut sync_clock = SyncClock {
        interval_ms,
        sync_ms: sh.cfg.commit_sync_interval_ms,
        last_sync_ms: None,
        oldest_unsynced_ms: None,
    };
    let mut last_failure: Option<std::time::Instant> = None;
    let mut degraded;
    let mut last_housekeeping = sh.opened;
    loop {
        // Wait for something to write.
        let (batch, fsync, sync_target, closing) = {
            let mut q = sh.queue.lock();
            loop {
                // A leading logger (sync mode) may have changed it.
                degraded = sh.counters.storage_degraded.load(Relaxed) != 0;
                if q.committing() {
                    q = wait(&sh.queue.writer_cv, q);
                    continue;
                }
                let now = sh.now_ms();
                let sync_overdue = sync_clock.overdue(now);
                let close_sync = q.closing() && sync_clock.pending();
                let sync_due = (q.sync_wanted() || sync_overdue || close_sync) && !degraded;
                if q.closing() && q.is_empty() && !sync_due {
                    q.set_writer_done();
                    sh.queue.commit_cv.notify_all();
                    return;
                }
                if degraded && !q.is_empty() {
                    // The disk failed: try again after a pause (at once when closing).
                    let since = last_failure.map(|t| t.elapsed()).unwrap_or(STORAGE_RETRY);
                    if q.closing() || since >= STORAGE_RETRY {
                        break;
                    }
                    q = wait_timeout(&sh.queue.writer_cv, q, STORAGE_RETRY - since);
                    continue;
                }
                let due = q.first().is_some_and(|first| {
                    (sync_mode && now >= first.t_acc_ms + SYNC_FALLBACK_MS)
                        || q.urgent()
                        || q.closing()
                        || q.len() >= COMMIT_BATCH
                        || now >= first.t_acc_ms + interval_ms
                });
                if due || sync_due {
                    break;
                }
                let ttl_active = sh.cfg.record_ttl_ms > 0 && sh.counters.pending_records() > 0;
                // Delivered rows waiting to be reclaimed keep housekeeping running.
                let timed = ttl_active || sh.mirror.garbage() > 0;
                if timed && last_housekeeping.elapsed() >= HOUSEKEEPING {
                    break;
                }
                // Until the commits made so far must be fsync'd (none pending: never).
                let to_sync = sync_clock.wait(now);
                let cap = to_sync.map_or(HOUSEKEEPING, |d| d.min(HOUSEKEEPING));
                q = match q.first() {
                    Some(first) => {
                        let wait_ms = if sync_mode {
                            SYNC_FALLBACK_MS
                        } else {
                            interval_ms
                        };
                        let left = (first.t_acc_ms + wait_ms).saturating_sub(now);
                        wait_timeout(&sh.queue.writer_cv, q, Duration::from_millis(left).min(cap))
                    }
                    None if timed || to_sync.is_some() => wait_timeout(&sh.queue.writer_cv, q, cap),
                    // Idle: no timed wake-ups.
                    None => wait(&sh.queue.writer_cv, q),
                };
            }
            // Sync mode, edgebuf_sync, a sync interval of 0, an overdue fsync, and close
            // (the memory queue is made durable before the file is released).
            let fsync = sync_mode
                || q.sync_wanted()
                || sync_clock.every_commit()
                || sync_clock.overdue(sh.now_ms())
                || q.closing();
            q.clear_urgent();
            let (batch, target) = take_for_commit(&sh, &mut q);
            (batch, fsync, target, q.closing())
        };

        // The batch is in seq order: its first record is its oldest.
        let oldest = batch.first().map(|r| r.t_acc_ms);
        let result = write_batch(&sh, batch, fsync, &mut degraded);
        if degraded {
            last_failure = Some(std::time::Instant::now());
        } else {
            sync_clock.committed(oldest, fsync, sh.now_ms());
        }
        if last_housekeeping.elapsed() >= HOUSEKEEPING || closing {
            last_housekeeping = std::time::Instant::now();
            housekeeping(&sh);
        }

        {
            let mut q = sh.queue.lock();
            let held = q.finish_commit(result.held(), sync_target, fsync);
            if held && q.closing() {
                // Close delivers them from memory within its timeout and counts what is
                // left as lost.
                q.set_writer_done();
                sh.queue.commit_cv.notify_all();
                drop(q);
                sh.records_committed();
                return;
            }
            sh.queue.commit_cv.notify_all();
        }
        sh.records_committed();
        sh.notify_progress();
        check_backlog(&sh);
    }
}

/// Async mode's fsync policy (docs/reference.md, configuration, commit.sync_interval_ms; docs/reference.md, guarantees, power loss). Commits
/// are made without an fsync; a record must be durable at the latest `commit.interval_ms` +
/// `commit.sync_interval_ms` after it was logged, so once the oldest record of the commits
/// not yet fsync'd comes that close (less a quarter of the sync interval, for the writer's own
/// wake-up and the fsync itself on a busy device), the commit then due is made durable, or, when none comes, a commit of nothing
/// new. At most one fsync per sync interval while commits happen; none while idle. Times are
/// milliseconds since open (monotonic), as `NewRecord::t_acc_ms`.
struct SyncClock {
    interval_ms: u64,
    sync_ms: u64,
    last_sync_ms: Option<u64>,
    oldest_unsynced_ms: Option<u64>,
}

impl SyncClock {
    /// `commit.sync_interval_ms` = 0: every commit is fsync'd.
    fn every_commit(&self) -> bool {
        self.sync_ms == 0
    }

    /// Commits were made that no fsync covers yet.
    fn pending(&self) -> bool {
        self.oldest_unsynced_ms.is_some()
    }

    /// When those commits must be fsync'd.
    fn deadline(&self) -> Option<u64> {
        let oldest = self.oldest_unsynced_ms?;
        let bound = (oldest + self.interval_ms + self.sync_ms).saturating_sub(self.sync_ms / 4);
        Some(
            self.last_sync_ms
                .map_or(bound, |l| bound.max(l + self.sync_ms)),
        )
    }

    fn overdue(&self, now_ms: u64) -> bool {
        self.deadline().is_some_and(|d| now_ms >= d)
    }

    /// How long the writer may sleep before an fsync is due; None when none is pending.
    fn wait(&self, now_ms: u64) -> Option<Duration> {
        self.deadline()
            .map(|d| Duration::from_millis(d.saturating_sub(now_ms)))
    }

    /// A commit was made (of records the oldest of which was accepted at `oldest`, if any).
    fn committed(&mut self, oldest: Option<u64>, fsynced: bool, now_ms: u64) {
        if fsynced {
            self.last_sync_ms = Some(now_ms);
            self.oldest_unsynced_ms = None;
        } else if let Some(o) = oldest {
            self.oldest_unsynced_ms = Some(self.oldest_unsynced_ms.map_or(o, |x| x.min(o)));
        }
    }
}

/// Sync mode: a logging thread whose record is queued while nobody is committing commits it
/// itself, with every record queued meanwhile, and wakes the others (leader/follower group
/// commit). Threads that log during its fsync queue up and the next of them leads: one fsync
/// serves them all, without a hand-off to the writer thread and back. Returns the queue lock.
pub fn lead_commit<'a>(
    sh: &'a Shared,
    mut q: MutexGuard<'a, QueueState>,
) -> MutexGuard<'a, QueueState> {
    // Nobody else takes the queue meanwhile.
    q.begin_commit();
    // The threads of the last group were woken by its commit and log again within
    // microseconds, but a thread that was running gets here first: wait briefly for them,
    // so that one fsync serves the group again.
    let until = std::time::Instant::now() + GATHER;
    while q.group_gathering() {
        let now = std::time::Instant::now();
        if now >= until {
            break;
        }
        q.set_gathering(true);
        q = wait_timeout(&sh.queue.group_cv, q, until - now);
    }
    q.group_gathered();
    let (batch, target) = take_for_commit(sh, &mut q);
    drop(q);
    let mut degraded = sh.counters.storage_degraded.load(Relaxed) != 0;
    let result = write_batch(sh, batch, true, &mut degraded);
    let mut q = sh.queue.lock();
    q.finish_commit(result.held(), target, true);
    sh.queue.commit_cv.notify_all();
    // The writer waits while someone commits.
    sh.queue.writer_cv.notify_all();
    drop(q);
    sh.records_committed();
    sh.notify_progress();
    check_backlog(sh);
    sh.queue.lock()
}

/// Takes every queued record for one commit (the writer's or a leading logger's), and makes
/// room for loggers waiting. Returns them and the highest seq handed out so far.
fn take_for_commit(sh: &Shared, q: &mut QueueState) -> (Vec<NewRecord>, u64) {
    let taken = q.take_for_commit();
    sh.queue.room_cv.notify_all();
    taken
}

enum WriteOutcome {
    Stored,
    Dropped,
    Held(Vec<NewRecord>),
}

impl WriteOutcome {
    /// The records held in memory (the disk failed), if any.
    fn held(self) -> Option<Vec<NewRecord>> {
        match self {
            WriteOutcome::Held(recs) => Some(recs),
            WriteOutcome::Stored | WriteOutcome::Dropped => None,
        }
    }
}

fn write_batch(
    sh: &Shared,
    mut batch: Vec<NewRecord>,
    fsync: bool,
    degraded: &mut bool,
) -> WriteOutcome {
    let sync_mode = sh.cfg.durability == Durability::Sync;
    let mut guard = lock(&sh.store);
    let Some(store) = guard.as_mut() else {
        return WriteOutcome::Held(batch);
    };
    // The oldest pending record changes only if the file held none or records are dropped.
    let dropped_before = sh.counters.dropped_total.load(Relaxed);
    let had_pending = store.disk_records > 0 && sh.mirror.disk_oldest().is_some();
    capacity::make_room_on_disk(sh, store, &mut batch);
    if batch.is_empty() && !fsync {
        return WriteOutcome::Stored;
    }
    let attempt = capacity::insert(sh, store, &batch, fsync);
    let outcome = match attempt {
        Ok(()) => {
            if *degraded {
                *degraded = false;
                sh.counters.storage_degraded.store(0, Relaxed);
                sh.events.emit(
                    EVENT_STORAGE_OK,
                    0,
                    0,
                    "writing to the buffer file works again",
                );
            }
            WriteOutcome::Stored
        }
        Err(WriteError::Full) => {
            capacity::refused_by_disk(sh, &batch);
            WriteOutcome::Dropped
        }
        Err(WriteError::Storage(e)) => {
            if !*degraded {
                *degraded = true;
                sh.counters.storage_degraded.store(1, Relaxed);
                sh.events.emit(
                    EVENT_STORAGE_ERROR,
                    batch.len() as u64,
                    0,
                    format!("{}; records are held in memory", e.message()),
                );
            }
            if sync_mode {
                // Sync mode stores nothing while the disk fails: the callers get STORAGE.
                let n = batch.len() as u64;
                let bytes: u64 = batch.iter().map(|r| r.data.len() as u64).sum();
                sh.queue
                    .lock()
                    .fail(batch.iter().map(|r| r.seq), Code::Storage);
                sh.counters.unlogged(n, bytes);
                WriteOutcome::Dropped
            } else {
                WriteOutcome::Held(batch)
            }
        }
    };
    if had_pending && sh.counters.dropped_total.load(Relaxed) == dropped_before {
        sh.mirror_counts(store);
    } else {
        sh.mirror_store(store);
    }
    outcome
}

fn housekeeping(sh: &Shared) {
    collect_garbage(sh);
    let mut guard = lock(&sh.store);
    let Some(store) = guard.as_mut() else { return };
    capacity::expire(sh, store);
    store.maintain();
    sh.mirror_store(store);
}

/// Reclaims delivered rows (below the delivered watermark) from the file, a chunk per
/// transaction. While the worker is delivering a backlog this waits, so that draining is not
/// slowed by deletes, unless the delivered rows take a quarter of `capacity.max_bytes`.
fn collect_garbage(sh: &Shared) {
    let start = std::time::Instant::now();
    while sh.mirror.garbage() > 0 && start.elapsed() < GC_BUDGET {
        let delivering = sh.mirror.disk_pending() > 0 && sh.counters.retry_at_ms.load(Relaxed) == 0;
        let pressure = sh.mirror.garbage_bytes().saturating_mul(4) >= sh.cfg.capacity_max_bytes;
        if delivering && !pressure {
            return;
        }
        {
            // Records waiting to be written come first.
            let q = sh.queue.lock();
            let now = sh.now_ms();
            let due = q.first().is_some_and(|first| {
                sh.cfg.durability == Durability::Sync
                    || q.urgent()
                    || q.len() >= COMMIT_BATCH
                    || now >= first.t_acc_ms + sh.cfg.commit_interval_ms
            });
            if due || q.closing() || q.sync_wanted() {
                return;
            }
        }
        let mut guard = lock(&sh.store);
        let Some(store) = guard.as_mut() else { return };
        let removed = store.collect_garbage(GC_CHUNK);
        sh.mirror_store(store);
        if !matches!(removed, Ok(n) if n > 0) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock(interval_ms: u64, sync_ms: u64) -> SyncClock {
        SyncClock {
            interval_ms,
            sync_ms,
            last_sync_ms: None,
            oldest_unsynced_ms: None,
        }
    }

    #[test]
    fn the_fsync_lands_within_both_intervals_of_the_oldest_record() {
        let mut c = clock(50, 100);
        assert!(
            !c.pending() && !c.overdue(u64::MAX) && c.wait(0).is_none(),
            "idle: nothing"
        );
        // Records accepted at 1000 and 1010 committed at 1050 and 1060, without an fsync.
        c.committed(Some(1000), false, 1050);
        c.committed(Some(1010), false, 1060);
        // Durable by 1000 + 50 + 100, less a quarter of the sync interval.
        assert_eq!(c.deadline(), Some(1125));
        assert!(!c.overdue(1124) && c.overdue(1125));
        assert_eq!(c.wait(1100), Some(Duration::from_millis(25)));
        c.committed(None, true, 1125);
        assert!(!c.pending());
        // The next fsync comes no sooner than one sync interval after this one.
        c.committed(Some(1126), false, 1127);
        assert_eq!(c.deadline(), Some(1251));
        c.committed(None, true, 1281);
        c.committed(Some(1282), false, 1283);
        c.last_sync_ms = Some(1400);
        assert_eq!(
            c.deadline(),
            Some(1500),
            "one fsync per sync interval at most"
        );
    }

    #[test]
    fn a_sync_interval_of_zero_fsyncs_every_commit() {
        assert!(clock(50, 0).every_commit());
        assert!(!clock(50, 1).every_commit());
    }
}
