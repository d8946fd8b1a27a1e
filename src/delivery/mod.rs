//! The delivery worker: forms batches from the file in `delivery.order` (the oldest pending
//! records, or the newest: docs/reference.md, configuration), one request in flight, and
//! applies the response handling of docs/reference.md, the wire. This file is the worker's loop; the policy
//! lives beside it:
//!
//! - `retry`: when the next attempt may go out (backoff, Retry-After, configuration problems);
//! - `sizing`: how many records a batch may hold (timeouts, 413 and regrowth);
//! - `reject`: 413 split, bisection of 400/422 with dead letters, and the probe that tells
//!   refused records from an endpoint that refuses everything;
//! - `order`: `delivery.order`, where newest_first reads ahead and probes;
//! - `degraded`: delivery from memory while the buffer file cannot be written;
//! - `read`: reading a batch, its rows under the store lock and its costing after;
//! - `prefetch`: reading the next batch of a backlog while one is in flight;
//! - `budget`: the upload rate cap and the byte budget, asked before each request.
//!
//! Requests go through a [`Transport`] (the HTTP sender, or a fake in the unit tests): each is
//! encoded (and compressed) once, its length on the wire asked of `budget`, then sent.

use crate::engine::queue::{lock, wait, wait_timeout, Shared};
use crate::events::{
    EVENT_BUDGET_EXHAUSTED, EVENT_DELIVERED, EVENT_OFFLINE, EVENT_ONLINE, EVENT_REJECTED,
};
use crate::http::{Attempt, Costing, Encoded, Outcome, Pieces, RecordRef, Sender};
use crate::status::{CONNECTIVITY_OFFLINE, CONNECTIVITY_ONLINE};
use crate::store::StoredRecord;
use budget::{Hold, Meter, BUDGET_RECHECK};
use prefetch::Prefetcher;
use retry::RetryClock;
use sizing::Sizing;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod budget;
mod degraded;
#[cfg(test)]
mod fake;
mod order;
mod prefetch;
mod read;
mod reject;
pub(crate) mod retry;
mod sizing;

/// Where the worker's requests go.
pub(crate) trait Transport {
    /// One request, encoded and compressed.
    type Request;
    /// Encodes one batch; Err: the attempt it ends as without a request. `pieces`: what
    /// costing encoded of the batch the records are (a run of), if anything.
    fn encode(
        &mut self,
        records: &[RecordRef],
        pieces: Option<&Pieces>,
    ) -> Result<Self::Request, Attempt>;
    /// The body bytes the request puts on the wire.
    fn wire_len(&self, request: &Self::Request) -> u64;
    /// Sends the request and classifies the answer.
    fn post(&mut self, request: &Self::Request) -> Attempt;
    /// Requests sent again on a new connection after a reused one failed, so far.
    fn resends(&self) -> u64;
    /// How a batch is planned within `batch.max_bytes`.
    fn costing(&self) -> Costing;
    /// The endpoint as named in events.
    fn endpoint(&self) -> &str;
}

impl Transport for Sender {
    type Request = Encoded;
    fn encode(
        &mut self,
        records: &[RecordRef],
        pieces: Option<&Pieces>,
    ) -> Result<Encoded, Attempt> {
        Sender::encode(self, records, pieces)
    }
    fn wire_len(&self, request: &Encoded) -> u64 {
        request.len()
    }
    fn post(&mut self, request: &Encoded) -> Attempt {
        Sender::post_encoded(self, request)
    }
    fn resends(&self) -> u64 {
        Sender::resends(self)
    }
    fn costing(&self) -> Costing {
        Sender::costing(self)
    }
    fn endpoint(&self) -> &str {
        Sender::endpoint(self)
    }
}

pub(crate) struct Worker<T: Transport> {
    sh: Arc<Shared>,
    transport: T,
    /// The transport's [`Costing`], taken once.
    costing: Costing,
    clock: RetryClock,
    sizing: Sizing,
    /// The seq range of the batch to send again (same records as its first attempt).
    retry_range: Option<(u64, u64)>,
    /// newest_first: the failed batch never reached the endpoint and is formed afresh from
    /// the newest records (`order`); a retry all the same (no linger).
    retry_afresh: bool,
    linger_since: Option<Instant>,
    /// Last failing status reported by OFFLINE (to fire again when it changes).
    offline_status: Option<i32>,
    /// Reads the next batch of a backlog while the current one is in flight.
    prefetch: Prefetcher,
    /// Records delivered, kept for their buffers: the next read takes their bytes into them
    /// (at most a batch of them; see `keep_spent`).
    spent: Vec<StoredRecord>,
    /// The last batch went out in one request, was accepted whole and settled: a batch read
    /// ahead meanwhile is the next one to send.
    delivered_whole: bool,
    /// A delivered batch could not be settled in the file (it is sent again).
    settle_failed: bool,
    /// The file's next seq when the last batch was read from it: with newest_first, records
    /// stored after that are newer than a batch read ahead, and go before it.
    next_seq_at_fetch: u64,
    /// The rate cap and the byte budget.
    meter: Meter,
}

/// Records read for one request, in seq order, with what costing encoded of them (OTLP: each
/// record's `LogRecord`, so that the body does not read the records again).
pub(crate) struct Batch {
    recs: Vec<StoredRecord>,
    pieces: Option<Pieces>,
}

enum Flow {
    Continue,
    Exit,
}

impl<T: Transport> Worker<T> {
    pub fn new(sh: Arc<Shared>, transport: T) -> Worker<T> {
        let cfg = &sh.cfg;
        let stored = if cfg.http_budget_bytes > 0 {
            lock(&sh.store).as_ref().and_then(|s| s.budget_state())
        } else {
            None
        };
        let meter = Meter::new(
            cfg.http_max_bytes_per_s,
            cfg.http_budget_bytes,
            cfg.http_budget_period_ms,
            stored,
            crate::clock::realtime_ms(),
        );
        sh.counters.budget_left_bytes.0.store(meter.left(), Relaxed);
        Worker {
            meter,
            sh: Arc::clone(&sh),
            costing: transport.costing(),
            transport,
            clock: RetryClock::new(sh.cfg.retry_initial_ms, sh.cfg.retry_max_ms),
            sizing: Sizing::new(sh.cfg.batch_max_records),
            retry_range: None,
            retry_afresh: false,
            linger_since: None,
            offline_status: None,
            prefetch: Prefetcher::new(Arc::clone(&sh)),
            spent: Vec::new(),
            delivered_whole: false,
            settle_failed: false,
            next_seq_at_fetch: 0,
        }
    }

    pub fn run(mut self) {
        loop {
            if let Flow::Exit = self.wait_for_work() {
                break;
            }
            if let Flow::Exit = self.attempt() {
                break;
            }
        }
        let mut s = self.sh.signals.lock();
        s.set_worker_exited();
        self.sh.signals.progress_cv.notify_all();
    }

    /// Sleeps until a batch should go out: records on disk, no backoff running, and either a
    /// full batch, linger elapsed, or a flush waiting. No timed wake-ups while idle.
    fn wait_for_work(&mut self) -> Flow {
        let sh = Arc::clone(&self.sh);
        let mut s = sh.signals.lock();
        loop {
            if s.stopping() {
                return Flow::Exit;
            }
            if self.meter.budgeted() {
                // The budget is spent: nothing is sent until the period ends (retry_now does
                // not cut this wait). The wall clock is looked at again now and then.
                let wait = self.meter.budget_wait_ms(crate::clock::realtime_ms());
                let c = &sh.counters;
                c.budget_left_bytes.0.store(self.meter.left(), Relaxed);
                if let Some(ms) = wait {
                    if let Some(message) = self.meter.announce(crate::clock::realtime_ms()) {
                        // Spent before this handle sent anything (a reopened file): said
                        // once here too. Events are never emitted under the signals lock.
                        c.retry_at_ms.store(sh.now_ms() + ms, Relaxed);
                        drop(s);
                        let pending = c.pending_records();
                        sh.events.emit(EVENT_BUDGET_EXHAUSTED, pending, 0, message);
                        s = sh.signals.lock();
                        continue;
                    }
                    c.retry_at_ms.store(sh.now_ms() + ms, Relaxed);
                    // retry_now does not cut a budget wait (nor a later backoff).
                    s.take_retry_now();
                    let d = Duration::from_millis(ms).min(BUDGET_RECHECK);
                    s = wait_timeout(&sh.signals.worker_cv, s, d);
                    continue;
                }
                if !self.clock.waiting() {
                    c.retry_at_ms.store(0, Relaxed);
                }
            }
            let now = Instant::now();
            if s.take_retry_now() && self.clock.waiting() {
                // The backoff is cut short; a Retry-After is not.
                self.clock.cut_short(now);
                if !self.clock.waiting() {
                    // Not waiting any more: status says 0 (next_retry_in_ms).
                    sh.counters.retry_at_ms.store(0, Relaxed);
                }
            }
            if self.clock.waiting() {
                if let Some(left) = self.clock.remaining(now) {
                    sh.counters
                        .retry_at_ms
                        .store(sh.now_ms() + left.as_millis() as u64, Relaxed);
                    s = wait_timeout(&sh.signals.worker_cv, s, left);
                    continue;
                }
                sh.counters.retry_at_ms.store(0, Relaxed);
            }
            let pending = sh.mirror.disk_pending() + self.memory_pending();
            if pending == 0 {
                self.linger_since = None;
                s.set_wants_records(true);
                s = wait(&sh.signals.worker_cv, s);
                s.set_wants_records(false);
                continue;
            }
            let retry = self.retry_range.is_some() || self.retry_afresh;
            if retry || pending >= self.sizing.cap() || s.flushing() {
                return Flow::Continue;
            }
            let since = *self.linger_since.get_or_insert(now);
            let linger = Duration::from_millis(sh.cfg.batch_linger_ms);
            if now.duration_since(since) >= linger {
                return Flow::Continue;
            }
            s.set_wants_records(true);
            s = wait_timeout(&sh.signals.worker_cv, s, linger - now.duration_since(since));
            s.set_wants_records(false);
        }
    }

    /// Reads a batch (and protects it as the request in flight), with what costing encoded
    /// of it.
    fn fetch(&mut self, range: Option<(u64, u64)>, max: u64) -> Option<Batch> {
        self.fetch_rows(range, max)?
            .finish(&self.sh, read::Guard::InFlight)
    }

    /// [`Worker::fetch`], before costing: the rows read and protected.
    fn fetch_rows(&mut self, range: Option<(u64, u64)>, max: u64) -> Option<read::Costed> {
        let budget = self.body_budget();
        let r = read::read(
            &self.sh,
            range,
            max,
            budget,
            &self.costing,
            read::Guard::InFlight,
            &mut self.spent,
        )?;
        self.next_seq_at_fetch = r.next_seq;
        Some(r.costed)
    }

    /// Forms (or re-forms) the batch and delivers it.
    fn attempt(&mut self) -> Flow {
        self.linger_since = None;
        self.retry_afresh = false;
        if let Some(batch) = self.take_memory() {
            self.prefetch.release();
            let flow = self.deliver_memory(batch);
            self.sh.notify_progress();
            return flow;
        }
        let stale_from = self.read_ahead_stale_from();
        let costed = match self.prefetch.take_for_send(stale_from) {
            Some(c) => c,
            None => match self.fetch_rows(self.retry_range, self.sizing.cap()) {
                Some(c) => c,
                None => return Flow::Exit,
            },
        };
        let Some(read) = costed.range() else {
            self.retry_range = None;
            self.clear_inflight();
            return Flow::Continue;
        };
        // A backlog: read the next full batch while this one is costed and in flight.
        let read_n = costed.len();
        let next_full = read_n as u64 + self.sizing.cap();
        let asked = self.retry_range.is_none()
            && self.sh.mirror.disk_pending() >= next_full
            && self.prefetch.ask(
                self.read_ahead_range(read),
                self.sizing.cap(),
                self.body_budget(),
                self.costing.clone(),
                std::mem::take(&mut self.spent),
            );
        let Some(Batch {
            recs: batch,
            pieces,
        }) = costed.finish(&self.sh, read::Guard::InFlight)
        else {
            return Flow::Exit;
        };
        if asked && batch.len() < read_n {
            // The budget left records of the read out: they come before the batch read
            // ahead, which was asked for beyond the whole read. It is read afresh.
            self.prefetch.release();
        }
        let flow = self.deliver(batch, pieces);
        if !self.delivered_whole {
            // Retried, split, bisected or probed: the next batch is formed afresh.
            self.prefetch.release();
            self.clear_inflight();
        }
        self.sh.notify_progress();
        flow
    }

    /// Keeps a delivered part's records for their buffers (up to a batch of them).
    fn keep_spent(&mut self, part: Vec<StoredRecord>) {
        let room = (self.sh.cfg.batch_max_records as usize).saturating_sub(self.spent.len());
        self.spent.extend(part.into_iter().take(room));
    }

    fn clear_inflight(&self) {
        if let Some(s) = lock(&self.sh.store).as_mut() {
            s.clear_in_flight();
        }
    }

    /// Encodes a batch (`pieces`: what costing encoded of it, if anything), asks the rate cap
    /// and the budget, and sends it. `refusal_step`: a bisection or split step, or a probe (the
    /// budget's refused share applies). Err: not sent (the budget is spent for the period, the
    /// refused share is, or close came during a rate-cap wait).
    fn send(
        &mut self,
        recs: &[StoredRecord],
        pieces: Option<&Pieces>,
        refusal_step: bool,
    ) -> Result<Attempt, Hold> {
        let refs: Vec<RecordRef> = recs
            .iter()
            .map(|r| record_ref(r, &self.sh.instance))
            .collect();
        let request = match self.transport.encode(&refs, pieces) {
            Ok(r) => r,
            Err(a) => return Ok(a),
        };
        drop(refs);
        let n = self.transport.wire_len(&request);
        if let Err(hold) = self
            .meter
            .admit(n, refusal_step, crate::clock::realtime_ms())
        {
            if hold == Hold::Budget {
                self.budget_spent();
            }
            return Err(hold);
        }
        if let Some(d) = self.meter.rate_wait(n, Instant::now()) {
            if !self.pause(d) {
                return Err(Hold::Stopping);
            }
        }
        let started = Instant::now();
        let before = self.transport.resends();
        let a = self.transport.post(&request);
        self.sh
            .counters
            .sent_bytes_total
            .fetch_add(a.sent_bytes, Relaxed);
        let resent = self.transport.resends() - before;
        if resent > 0 {
            self.sh.counters.resends_total.fetch_add(resent, Relaxed);
        }
        let refused = matches!(a.outcome, Outcome::Split | Outcome::Bisect);
        self.meter
            .sent(a.sent_bytes, refused, started, crate::clock::realtime_ms());
        if let Some((start_ms, used)) = self.meter.state() {
            // Kept in the file: with the settling transaction of a delivered batch, else now.
            if let Some(store) = lock(&self.sh.store).as_mut() {
                store.note_budget(start_ms, used);
                if a.outcome != Outcome::Delivered {
                    // A failed write is tried again with the next attempt's.
                    let _ = store.save_budget();
                }
            }
            self.budget_spent();
        }
        Ok(a)
    }

    /// Updates `budget_left_bytes`; once the budget is spent for the period (or a request
    /// waits for the next one), says when sending resumes and fires BUDGET_EXHAUSTED, once.
    fn budget_spent(&mut self) {
        let sh = Arc::clone(&self.sh);
        let now = crate::clock::realtime_ms();
        sh.counters
            .budget_left_bytes
            .0
            .store(self.meter.left(), Relaxed);
        let Some(message) = self.meter.announce(now) else {
            return;
        };
        if let Some(ms) = self.meter.budget_wait_ms(now) {
            sh.counters.retry_at_ms.store(sh.now_ms() + ms, Relaxed);
        }
        let pending = sh.counters.pending_records();
        sh.events.emit(EVENT_BUDGET_EXHAUSTED, pending, 0, message);
    }

    /// A rate-cap wait of `d` before a request: the worker sleeps on its condvar, and
    /// `next_retry_in_ms` shows it. False when close came meanwhile.
    fn pause(&self, d: Duration) -> bool {
        let sh = &self.sh;
        let end = Instant::now() + d;
        sh.counters
            .retry_at_ms
            .store(sh.now_ms() + d.as_millis() as u64, Relaxed);
        let mut s = sh.signals.lock();
        let go = loop {
            if s.stopping() {
                break false;
            }
            let now = Instant::now();
            if now >= end {
                break true;
            }
            s = wait_timeout(&sh.signals.worker_cv, s, end - now);
        };
        drop(s);
        sh.counters.retry_at_ms.store(0, Relaxed);
        go
    }

    /// What the records of one request may cost in all (`batch.max_bytes` less what the body
    /// holds besides records).
    /// Lowered by a byte budget or a rate cap (see `budget`).
    fn body_budget(&self) -> u64 {
        let cfg = &self.sh.cfg;
        self.costing.budget(
            self.meter
                .plan_limit(cfg.batch_max_bytes, cfg.http_timeout_ms),
        )
    }

    /// Whether close has taken the file away. Asked after every request, so it does not wait
    /// for the store lock: while another thread holds it (the read-ahead reading the next
    /// batch), the answer is no, and the settling that follows, under the lock, finds out.
    fn abandoned(&self) -> bool {
        match self.sh.store.try_lock() {
            Ok(g) => g.is_none(),
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner().is_none(),
            Err(std::sync::TryLockError::WouldBlock) => false,
        }
    }

    /// Deletes a delivered batch and reports it. When the part is the whole request in flight,
    /// its protection ends in the same critical section (not in another after `deliver`).
    /// False when close took the file away.
    fn settle(&mut self, part: &[StoredRecord], a: &Attempt) -> bool {
        let sh = Arc::clone(&self.sh);
        let mut g = lock(&sh.store);
        let Some(store) = g.as_mut() else {
            return false;
        };
        let lo = part.first().map_or(0, |r| r.seq);
        let hi = part.last().map_or(0, |r| r.seq);
        let contiguous = hi + 1 - lo == part.len() as u64;
        let deleted = if contiguous {
            let bytes = part.iter().map(|r| r.data.len() as u64).sum();
            // Records held in memory below this batch (given back by a request from memory
            // after the disk recovered) keep the watermark below them (store → queue).
            let held = sh.queue.lock().lowest_unsettled();
            store.settle_delivered(lo, hi, part.len() as u64, bytes, held)
        } else {
            let seqs: Vec<u64> = part.iter().map(|r| r.seq).collect();
            store.delete(&seqs)
        };
        let (n, bytes) = match deleted {
            Ok(v) => {
                if store.protected().0 == (lo, hi) {
                    store.clear_in_flight();
                }
                v
            }
            Err(e) => {
                // Delivered but not deleted: it will be sent again (same ids), next, so a batch
                // read ahead is not used.
                self.settle_failed = true;
                sh.events.emit(
                    crate::events::EVENT_STORAGE_ERROR,
                    0,
                    0,
                    e.message().to_string(),
                );
                (0, 0)
            }
        };
        sh.mirror_store(store);
        // The counters change before the store lock is released: a flush that sees these
        // records settled (it reads the store) then reads a status that counts them.
        self.succeeded(n, bytes, a);
        let idle = store.disk_records == 0 && store.garbage_records > 0;
        drop(g);
        if idle {
            // Nothing left to deliver: the writer may reclaim the delivered rows now. Taking
            // the queue lock orders this after the writer's last look at `garbage`.
            drop(sh.queue.lock());
            sh.queue.writer_cv.notify_one();
        }
        true
    }

    /// Counts a delivery and reports it; resets backoff and batch size.
    fn succeeded(&mut self, n: u64, bytes: u64, a: &Attempt) {
        let sh = Arc::clone(&self.sh);
        let c = &sh.counters;
        c.delivered(n, bytes);
        c.consecutive_failures.store(0, Relaxed);
        c.last_http_status.store(a.http_status, Relaxed);
        c.last_success_unix_ms
            .store(crate::clock::realtime_ms(), Relaxed);
        let was = c.connectivity.swap(CONNECTIVITY_ONLINE, Relaxed);
        self.clock.succeeded();
        self.sizing.delivered(n);
        self.offline_status = None;
        if was != CONNECTIVITY_ONLINE {
            sh.events.emit(
                EVENT_ONLINE,
                0,
                a.http_status,
                format!("endpoint {} accepts records", self.transport.endpoint()),
            );
        }
        if n > 0 {
            sh.events.emit(
                EVENT_DELIVERED,
                n,
                a.http_status,
                format!("{n} records delivered"),
            );
        }
        if let Some((k, message)) = a.rejected.as_ref().filter(|_| n > 0) {
            // Delivered all the same (OTLP does not say which records were refused).
            c.rejected_total.fetch_add(*k, Relaxed);
            let message = if message.is_empty() {
                format!("endpoint reported {k} records of a delivered batch as rejected")
            } else {
                message.clone()
            };
            sh.events.emit(EVENT_REJECTED, *k, a.http_status, message);
        }
    }

    fn record_failure(&mut self, a: &Attempt, offline: bool) {
        let c = &self.sh.counters;
        c.failed_attempts_total.fetch_add(1, Relaxed);
        c.consecutive_failures.fetch_add(1, Relaxed);
        if a.http_status != 0 {
            c.last_http_status.store(a.http_status, Relaxed);
        }
        if offline {
            self.offline(a.http_status, &a.detail);
        }
    }

    fn offline(&mut self, status: i32, detail: &str) {
        let was = self
            .sh
            .counters
            .connectivity
            .swap(CONNECTIVITY_OFFLINE, Relaxed);
        if was != CONNECTIVITY_OFFLINE || self.offline_status != Some(status) {
            self.offline_status = Some(status);
            self.sh
                .events
                .emit(EVENT_OFFLINE, 0, status, detail.to_string());
        }
    }

    /// A failed attempt: count it, report it, and wait (backoff, Retry-After or retry.max_ms).
    fn fail_and_wait(&mut self, a: &Attempt, outcome: Outcome) {
        self.record_failure(a, true);
        if outcome != Outcome::Timeout {
            self.sizing.failed();
        } else if self.sizing.timed_out() {
            // The next attempt sends half the batch: formed afresh, at most the halved cap of
            // records, from the lowest pending seq (newest_first: from the highest).
            self.retry_range = None;
        }
        let delay = self.clock.failed(outcome, a.retry_after, Instant::now());
        self.sh
            .counters
            .retry_at_ms
            .store(self.sh.now_ms() + delay.as_millis() as u64, Relaxed);
    }
}

/// A stored record as the sender sees it: with `instance` unless it carries its own.
fn record_ref<'a>(r: &'a StoredRecord, instance: &'a str) -> RecordRef<'a> {
    RecordRef {
        instance: r.inst.as_deref().unwrap_or(instance),
        seq: r.seq,
        ts_ms: r.ts_ms,
        data: &r.data,
        clock: r.clock,
    }
}
