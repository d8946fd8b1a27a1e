//! Reads the next batch from the file while the current one is in flight.
//!
//! Draining a backlog is otherwise serial on the worker: read a batch (about a third of the
//! time: SQLite reads the pages), send it, settle it. A helper thread, started at the first
//! backlog, reads batch N+1 while batch N's request runs, and costs it (OTLP: encodes it)
//! until the worker asks for it; the worker costs the rest (`read`). The records it read are
//! protected from the capacity policy and TTL (`protect_read_ahead`) from the moment they are
//! read until the worker takes them as its next batch or lets them go, so a batch is never
//! sent holding a record that was dropped meanwhile.

use super::read::{Costed, Guard};
use crate::engine::queue::{lock, Shared};
use crate::http::Costing;
use crate::store::StoredRecord;
use crossbeam_channel::{bounded, Receiver, Sender};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;

/// One read: the next `max_records` pending records within the seqs `range` (in
/// `delivery.order`), within `max_bytes` of records' cost (each record costs its envelope plus
/// a separator, or its OTLP LogRecord).
struct Job {
    range: (u64, u64),
    max_records: u64,
    max_bytes: u64,
    costing: Costing,
    /// Records delivered, for their buffers (`read::read`).
    spare: Vec<StoredRecord>,
}

/// The helper thread and its two channels.
struct Helper {
    jobs: Sender<Job>,
    done: Receiver<Option<Costed>>,
    thread: JoinHandle<()>,
    /// The worker waits for the read: the helper hands it over with what it has costed.
    wanted: Arc<AtomicBool>,
}

pub struct Prefetcher {
    sh: Arc<Shared>,
    /// `None` until the first backlog, or when the thread could not be started.
    helper: Option<Helper>,
    /// The thread could not be started: read serially from now on.
    unavailable: bool,
    /// A read was asked for and its answer not taken yet.
    asked: bool,
}

impl Prefetcher {
    pub fn new(sh: Arc<Shared>) -> Prefetcher {
        Prefetcher {
            sh,
            helper: None,
            unavailable: false,
            asked: false,
        }
    }

    /// Starts reading the next batch from the pending records within the seqs `range` (above
    /// the batch in flight for oldest_first, below it for newest_first). False when no read
    /// could be started (the helper thread did not start): the worker reads the next batch
    /// itself.
    pub fn ask(
        &mut self,
        range: (u64, u64),
        max_records: u64,
        max_bytes: u64,
        costing: Costing,
        spare: Vec<StoredRecord>,
    ) -> bool {
        if self.asked || self.unavailable {
            return false;
        }
        if self.helper.is_none() {
            let (jobs_tx, jobs_rx) = bounded::<Job>(1);
            let (done_tx, done_rx) = bounded::<Option<Costed>>(1);
            let sh = Arc::clone(&self.sh);
            let wanted = Arc::new(AtomicBool::new(false));
            let asked_for = Arc::clone(&wanted);
            // Like every library thread: named, signals blocked, 1 MiB of stack.
            let spawned = crate::sys::spawn("edgebuf-prefetch", move || {
                // Delivered records' buffers, for the bytes of the records read next: at most
                // a batch of them is kept.
                let mut spare = Vec::new();
                for mut job in jobs_rx {
                    spare.append(&mut job.spare);
                    let costed = read(&sh, &job, &asked_for, &mut spare);
                    spare.truncate(job.max_records as usize);
                    if done_tx.send(costed).is_err() {
                        break;
                    }
                }
            });
            match spawned {
                Ok(thread) => {
                    self.helper = Some(Helper {
                        jobs: jobs_tx,
                        done: done_rx,
                        thread,
                        wanted,
                    })
                }
                Err(_) => {
                    self.unavailable = true;
                    return false;
                }
            }
        }
        let Some(helper) = &self.helper else {
            return false;
        };
        let job = Job {
            range,
            max_records,
            max_bytes,
            costing,
            spare,
        };
        helper.wanted.store(false, Relaxed);
        self.asked = helper.jobs.send(job).is_ok();
        self.asked
    }

    /// The records read ahead, made the request in flight (the protection moves from
    /// `prefetched` to `inflight` in one step), waiting for the read if it still runs. `None`
    /// when nothing was read, or nothing usable: the caller reads the next batch itself.
    /// With `stale_from` (newest_first: the file's next seq when the batch in flight was
    /// read), records stored since then are newer than the read and go first: the read is let
    /// go.
    pub fn take_for_send(&mut self, stale_from: Option<u64>) -> Option<Costed> {
        let costed = self.take()?;
        let mut g = lock(&self.sh.store);
        let store = g.as_mut()?;
        store.release_read_ahead();
        let range = costed.range()?;
        if stale_from.is_some_and(|next| store.next_seq() > next) {
            return None;
        }
        store.protect_in_flight(Some(range));
        Some(costed)
    }

    fn take(&mut self) -> Option<Costed> {
        if !self.asked {
            return None;
        }
        self.asked = false;
        let helper = self.helper.as_ref()?;
        helper.wanted.store(true, Relaxed);
        helper.done.recv().ok().flatten()
    }

    /// Lets a read go (waiting for it if it is still running): its records are ordinary
    /// pending records again.
    pub fn release(&mut self) {
        if self.take().is_some() {
            if let Some(store) = lock(&self.sh.store).as_mut() {
                store.release_read_ahead();
            }
        }
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        self.release();
        if let Some(h) = self.helper.take() {
            // Closing the job channel ends the thread's loop.
            drop(h.jobs);
            drop(h.done);
            let _ = h.thread.join();
        }
    }
}

/// Reads one batch, protected as read ahead, and costs it until the worker asks for it
/// (`wanted`): the worker costs the rest (`read`). So the costing (OTLP: the encoding) is
/// shared between the two threads as each has time: all of it here while the worker waits
/// for the endpoint, the rest on the worker when it is the one waiting.
fn read(
    sh: &Shared,
    job: &Job,
    wanted: &AtomicBool,
    spare: &mut Vec<StoredRecord>,
) -> Option<Costed> {
    let mut r = super::read::read(
        sh,
        Some(job.range),
        job.max_records,
        job.max_bytes,
        &job.costing,
        Guard::ReadAhead,
        spare,
    )?;
    r.costed.cost_until(|| wanted.load(Relaxed), &sh.instance);
    Some(r.costed)
}
