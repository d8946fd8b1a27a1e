//! The Rust API: one `Buffer` per buffer file. The C API in `ffi` is a thin skin over it.
//!
//! The engine around it: `queue` (the state the threads share, and the lock order),
//! `writer` (the writer thread and sync-mode group commits) and `capacity` (what gives way
//! when the buffer is full, and TTL). The delivery worker is `crate::delivery`.

use crate::config::{Config, Durability};
use crate::error::{Code, Error, Result};
use crate::events::{Callback, EventThread, Events, EVENT_QUARANTINED};
use crate::http::Sender;
use crate::status::Status;
use crate::store::Store;
use queue::{lock, wait_timeout, Shared};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant};

mod capacity;
pub(crate) mod queue;
mod writer;

/// An open buffer. All methods take `&self` and may be called from any number of threads.
pub struct Buffer {
    sh: Arc<Shared>,
    threads: Mutex<Threads>,
    /// The event thread, kept outside `threads`: `in_callback` must not wait for that lock,
    /// which `close` holds while it waits for a running callback.
    event_thread: Option<ThreadId>,
    closed: AtomicBool,
}

struct Threads {
    writer: Option<JoinHandle<()>>,
    worker: Option<JoinHandle<()>>,
    events: Option<EventThread>,
}

impl Buffer {
    /// Opens the buffer file named by `cfg.path`, resumes delivery of what it holds, and
    /// starts the writer, worker and (with a callback) event threads.
    pub fn open(cfg: &Config, callback: Option<Callback>) -> Result<Buffer> {
        let b = Buffer::open_paused(cfg, callback)?;
        b.start_events();
        Ok(b)
    }

    /// Like `open`, but callbacks wait for `start_events` (the C API calls it once the handle
    /// is in the caller's hands).
    pub fn open_paused(cfg: &Config, callback: Option<Callback>) -> Result<Buffer> {
        cfg.validate_for_open()?;
        let sender = Sender::new(cfg)?;
        let (store, report) = Store::open(cfg)?;
        let (events, event_thread) = match callback {
            Some(cb) => {
                let (e, t) = Events::spawn(cb)
                    .map_err(|e| Error::internal(format!("cannot start the event thread: {e}")))?;
                (e, Some(t))
            }
            None => (Events::none(), None),
        };
        let sh = Arc::new(Shared::new(cfg, store, events));
        if let Some((moved, lost)) = report.quarantined {
            sh.events.emit(
                EVENT_QUARANTINED,
                lost,
                0,
                format!(
                    "damaged files were moved aside to {}; {lost} records are known lost",
                    moved.display()
                ),
            );
        }
        let spawn_err = |e: std::io::Error| Error::internal(format!("cannot start a thread: {e}"));
        let s1 = Arc::clone(&sh);
        let writer = crate::sys::spawn("edgebuf-writer", move || crate::engine::writer::run(s1))
            .map_err(spawn_err)?;
        let s2 = Arc::clone(&sh);
        let worker = match crate::sys::spawn("edgebuf-worker", move || {
            crate::delivery::Worker::new(s2, sender).run()
        }) {
            Ok(w) => w,
            Err(e) => {
                // The writer runs already: stop it and release the file before failing, or
                // it would hold the buffer's lock for the life of the process.
                sh.queue.close();
                let _ = writer.join();
                let store = lock(&sh.store).take();
                drop(store);
                if let Some(mut t) = event_thread {
                    t.stop();
                }
                return Err(spawn_err(e));
            }
        };
        capacity::check_backlog(&sh);
        let event_thread_id = event_thread.as_ref().map(EventThread::thread_id);
        Ok(Buffer {
            sh,
            event_thread: event_thread_id,
            threads: Mutex::new(Threads {
                writer: Some(writer),
                worker: Some(worker),
                events: event_thread,
            }),
            closed: AtomicBool::new(false),
        })
    }

    /// Lets queued events reach the callback.
    pub fn start_events(&self) {
        if let Some(t) = lock(&self.threads).events.as_ref() {
            t.start();
        }
    }

    /// True when called from this buffer's own event callback. Takes no lock: it is asked
    /// while `close` (holding `threads`) waits for that very callback.
    pub fn in_callback(&self) -> bool {
        self.event_thread == Some(std::thread::current().id())
    }

    /// Accepts one JSON record. Async mode: returns once it is queued in memory. Sync mode:
    /// returns once it is committed and fsync'd.
    pub fn log(&self, record: &[u8]) -> Result<()> {
        let sh = &*self.sh;
        crate::record::validate(record, sh.cfg.record_max_bytes)?;
        let sync_mode = sh.cfg.durability == Durability::Sync;
        let len = record.len() as u64;
        // Capacity: drop_oldest makes room in the writer; the others refuse here.
        if capacity::refuse_at_intake(sh, len) {
            return capacity::refuse(sh, len);
        }
        let data = record.to_vec();
        let ts_ms = crate::clock::realtime_ms();
        // One comparison for a valid wall clock; else the boot clock too (src/clock.rs).
        let boot_ms = sh.clock.at_log(ts_ms);
        let mut q = sh.queue.lock();
        if q.closing() {
            return Err(closed_err());
        }
        // The memory queue is full (the disk cannot keep up): wait a little for room.
        let (max_records, max_bytes) = (sh.cfg.memory_max_records, sh.cfg.memory_max_bytes);
        if q.full(len, max_records, max_bytes) {
            let deadline = Instant::now() + Duration::from_millis(sh.cfg.memory_max_wait_ms);
            sh.queue.writer_cv.notify_one();
            while q.full(len, max_records, max_bytes) && !q.closing() {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                q = wait_timeout(&sh.queue.room_cv, q, deadline - now);
            }
            if q.closing() {
                return Err(closed_err());
            }
            if q.full(len, max_records, max_bytes)
                && !capacity::make_room_in_memory(sh, &mut q, len)
            {
                drop(q);
                return capacity::refuse(sh, len);
            }
        }
        let t_acc_ms = sh.now_ms();
        let seq = q.push(ts_ms, boot_ms, t_acc_ms, data);
        sh.counters.logged(len);
        // Wake the writer only when it may be waiting for this: a syscall per record would
        // double the cost of a log while the writer is busy committing.
        // In sync mode the logging threads commit themselves (below).
        if !sync_mode && (q.len() == 1 || q.len() == writer::COMMIT_BATCH) {
            sh.queue.writer_cv.notify_one();
        }
        if !sync_mode {
            return Ok(());
        }
        if q.group_complete() {
            sh.queue.group_cv.notify_one();
        }
        loop {
            if let Some(code) = q.take_failure(seq) {
                return Err(match code {
                    Code::Storage => Error::storage(
                        "the buffer file cannot be written (storage is degraded); the record was not stored",
                    ),
                    _ => capacity::full_err(),
                });
            }
            if q.committed(seq) {
                return Ok(());
            }
            if q.writer_done() {
                return Err(closed_err());
            }
            if q.needs_leader() {
                // Nobody is committing and this record is still queued: commit the group.
                q = writer::lead_commit(sh, q);
                continue;
            }
            q = queue::wait(&sh.queue.commit_cv, q);
        }
    }

    /// Waits until every record logged before the call is committed and fsync'd.
    pub fn sync(&self, timeout: Duration) -> Result<()> {
        if self.in_callback() {
            return Err(Error::invalid_argument(
                "edgebuf_sync cannot be called from an event callback of the same handle",
            ));
        }
        let sh = &*self.sh;
        let deadline = Instant::now() + timeout;
        let mut q = sh.queue.lock();
        if q.closing() {
            return Err(closed_err());
        }
        let target = q.last_seq();
        q.want_synced(target);
        sh.queue.writer_cv.notify_one();
        loop {
            if sh.counters.storage_degraded.load(Relaxed) != 0 {
                return Err(Error::storage(
                    "storage is degraded: records are held in memory only and cannot be synced",
                ));
            }
            if q.synced(target) {
                return Ok(());
            }
            if q.closing() || q.writer_done() {
                return Err(closed_err());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::new(
                    Code::Timeout,
                    "edgebuf_sync timed out before the records were on disk; nothing is lost",
                ));
            }
            q = wait_timeout(
                &sh.queue.commit_cv,
                q,
                (deadline - now).min(Duration::from_millis(100)),
            );
        }
    }

    /// The lowest seq not yet settled, if any.
    fn lowest_unsettled(&self) -> Option<u64> {
        // Queued, being written by the writer (or a leading logger), or being delivered from
        // memory: whichever is lowest.
        let q = self.sh.queue.lock().lowest_unsettled();
        let disk = lock(&self.sh.store)
            .as_mut()
            .and_then(|s| s.min_seq().ok().flatten());
        match (q, disk) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Waits until every record logged before the call is delivered, dropped or dead-lettered.
    pub fn flush(&self, timeout: Duration) -> Result<()> {
        if self.in_callback() {
            return Err(Error::invalid_argument(
                "edgebuf_flush cannot be called from an event callback of the same handle",
            ));
        }
        let target = {
            let mut q = self.sh.queue.lock();
            if q.closing() {
                return Err(closed_err());
            }
            q.set_urgent();
            self.sh.queue.writer_cv.notify_one();
            q.last_seq()
        };
        self.wait_settled(target, Instant::now() + timeout, "edgebuf_flush", true)
    }

    fn wait_settled(
        &self,
        target: u64,
        deadline: Instant,
        what: &str,
        for_caller: bool,
    ) -> Result<()> {
        let sh = &*self.sh;
        sh.signals.lock().flush_started();
        sh.signals.worker_cv.notify_all();
        let result = loop {
            if self.lowest_unsettled().is_none_or(|s| s > target) {
                break Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                break Err(Error::new(
                    Code::Timeout,
                    format!(
                        "{what} timed out with records still pending (the endpoint is unreachable or refusing them); nothing is lost"
                    ),
                ));
            }
            if for_caller && sh.queue.lock().closing() {
                break Err(closed_err());
            }
            let s = sh.signals.lock();
            if s.worker_exited() {
                break Err(closed_err());
            }
            let _s = wait_timeout(
                &sh.signals.progress_cv,
                s,
                (deadline - now).min(Duration::from_millis(50)),
            );
        };
        sh.signals.lock().flush_ended();
        result
    }

    /// Cuts a running backoff short (not a Retry-After wait).
    pub fn retry_now(&self) {
        self.sh.poke_worker(|s| s.retry_now());
    }

    /// A snapshot of the counters and state.
    pub fn status(&self) -> Status {
        let sh = &*self.sh;
        let mut st = Status::from_counters(&sh.counters);
        st.disk_bytes = crate::store::file_set_size(&sh.path);
        let now = sh.now_ms();
        let retry_at = sh.counters.retry_at_ms.load(Relaxed);
        st.next_retry_in_ms = retry_at.saturating_sub(now).min(u32::MAX as u64) as u32;
        if st.pending_records > 0 {
            let mem = sh.queue.lock().first().map(|r| r.t_acc_ms);
            let disk = sh.mirror.disk_oldest();
            let oldest = match (mem, disk) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            st.oldest_pending_age_ms = oldest.map_or(0, |t| now.saturating_sub(t));
        }
        st
    }

    /// The status as JSON (see `Status::to_json`).
    pub fn status_json(&self) -> String {
        self.status().to_json()
    }

    /// record.max_bytes of this buffer.
    pub fn record_max_bytes(&self) -> u64 {
        self.sh.cfg.record_max_bytes
    }

    /// The buffer's instance id.
    pub fn instance(&self) -> &str {
        &self.sh.instance
    }

    /// Stops intake at once: calls waiting in flush or sync return CLOSED. `close` does this
    /// too; the C API calls it first so that close can wait for calls already inside.
    pub fn interrupt(&self) {
        self.sh.queue.close();
        self.sh.notify_progress();
    }

    /// Stops intake, writes the memory queue to disk, delivers for at most `timeout`, and
    /// releases the file. OK when nothing is pending, TIMEOUT when records stay on disk for
    /// the next open, STORAGE when records held in memory could not be written.
    pub fn close(&self, timeout: Duration) -> Result<()> {
        if self.in_callback() {
            return Err(Error::invalid_argument(
                "edgebuf_close cannot be called from an event callback of the same handle",
            ));
        }
        if self.closed.swap(true, Relaxed) {
            return Err(closed_err());
        }
        let sh = &*self.sh;
        // 1. Stop intake and write the memory queue.
        sh.queue.close();
        let mut threads = lock(&self.threads);
        if let Some(w) = threads.writer.take() {
            let _ = w.join();
        }
        let deadline = Instant::now() + timeout;
        // 2. Deliver for at most `timeout`.
        let target = sh.queue.lock().last_seq();
        // Its answer does not matter: what is pending once the file is closed does.
        let _ = self.wait_settled(target, deadline, "edgebuf_close", false);
        // 3. Stop the worker; a request still in flight is abandoned.
        sh.poke_worker(|s| s.stop());
        {
            let mut s = sh.signals.lock();
            let grace = Instant::now() + Duration::from_millis(20);
            while !s.worker_exited() && Instant::now() < grace {
                s = wait_timeout(&sh.signals.progress_cv, s, Duration::from_millis(5));
            }
        }
        // Records the disk never took and the endpoint did not accept in time are lost.
        let lost = {
            let mut q = sh.queue.lock();
            let (n, bytes) = q.abandon();
            sh.count_dropped(n, bytes, "storage failed at close");
            n
        };
        // Taking the store away closes the file and releases the lock; an abandoned request
        // finds it gone and touches nothing. A request settled during the grace above counts:
        // settlements happen under the store lock, so the counters are final once it is gone.
        let store = lock(&sh.store).take();
        drop(store);
        let pending = sh.counters.pending_records();
        if let Some(w) = threads.worker.take() {
            if sh.signals.lock().worker_exited() {
                let _ = w.join();
            }
        }
        // 4. Run what events are queued, then no callback runs again.
        if let Some(mut ev) = threads.events.take() {
            ev.stop();
        }
        if lost > 0 {
            return Err(Error::storage(format!(
                "{lost} records held in memory could not be written to the buffer file and are lost"
            )));
        }
        if pending == 0 {
            Ok(())
        } else {
            Err(Error::new(
                Code::Timeout,
                format!("edgebuf_close timed out: {pending} records stay on disk and are sent after the next open"),
            ))
        }
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        if !self.closed.load(Relaxed) {
            let _ = self.close(Duration::ZERO);
        }
    }
}

fn closed_err() -> Error {
    Error::new(Code::Closed, "the handle is closing")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Code;

    fn config(dir: &std::path::Path) -> Config {
        let mut cfg = Config::new();
        cfg.set("path", dir.join("buf.db").to_str().unwrap())
            .unwrap();
        cfg.set("endpoint", "http://127.0.0.1:9/ingest").unwrap();
        cfg
    }

    /// A worker that cannot start fails the open, and the writer already running is stopped
    /// with it: the file's lock is released, so the next open succeeds.
    #[test]
    fn a_failed_worker_spawn_releases_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        crate::sys::FAIL_SPAWN.with(|n| n.set(Some("edgebuf-worker")));
        let err = Buffer::open(&cfg, None).err().expect("the open fails");
        crate::sys::FAIL_SPAWN.with(|n| n.set(None));
        assert_eq!(err.code(), Code::Internal);
        let b = Buffer::open(&cfg, None).expect("the file is free again");
        b.log(b"{\"ok\":1}").unwrap();
        assert_eq!(
            b.close(Duration::ZERO).err().map(|e| e.code()),
            Some(Code::Timeout)
        );
    }
}
