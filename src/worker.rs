//! The delivery worker: forms batches from the file in seq order, one request in flight,
//! and applies the response handling of SPEC 3 (retry with backoff, Retry-After, split,
//! bisection with dead letters, configuration problems).

use crate::events::{EVENT_DEAD_LETTER, EVENT_DELIVERED, EVENT_OFFLINE, EVENT_ONLINE};
use crate::prefetch::Prefetcher;
use crate::retry::{cap, Backoff};
use crate::sender::{Attempt, Outcome, RecordRef, Sender};
use crate::shared::{lock, wait, wait_timeout, Shared};
use crate::status::{CONNECTIVITY_OFFLINE, CONNECTIVITY_ONLINE};
use crate::store::StoredRecord;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub struct Worker {
    sh: Arc<Shared>,
    sender: Sender,
    backoff: Backoff,
    /// The seq range of the batch to send again (same records as its first attempt).
    retry_range: Option<(u64, u64)>,
    /// Earliest next attempt; `retry_now` may cut it short, down to `hard_until`.
    wait_until: Option<Instant>,
    /// What a Retry-After asked for (capped): `retry_now` never cuts below it.
    hard_until: Option<Instant>,
    /// Halved after two timeouts in a row; restored by successes.
    batch_cap: u64,
    /// Successes since `batch_cap` was last lowered: it doubles back every `REGROW` of them,
    /// so that a proxy's body limit found by a 413 is not hit again by every batch.
    since_shrink: u32,
    /// How many successes that takes; doubled each time a regrown size is refused again.
    regrow_after: u32,
    /// `batch_cap` was just doubled back and nothing was delivered at the new size yet.
    just_regrown: bool,
    timeouts_in_row: u32,
    linger_since: Option<Instant>,
    /// Last failing status reported by OFFLINE (to fire again when it changes).
    offline_status: Option<i32>,
    /// Reads the next batch of a backlog while the current one is in flight.
    prefetch: Prefetcher,
    /// The last batch went out in one request, was accepted whole and settled: a batch read
    /// ahead meanwhile is the next one to send.
    delivered_whole: bool,
    /// A delivered batch could not be settled in the file (it is sent again).
    settle_failed: bool,
}

/// Batches delivered at a lowered `batch_cap` before it doubles again (at first)...
const REGROW: u32 = 8;
/// ...and at most, after repeated refusals of the larger size.
const MAX_REGROW: u32 = 1024;

enum Flow {
    Continue,
    Exit,
}

impl Worker {
    pub fn new(sh: Arc<Shared>, sender: Sender) -> Worker {
        let backoff = Backoff::new(sh.cfg.retry_initial_ms, sh.cfg.retry_max_ms);
        let batch_cap = sh.cfg.batch_max_records;
        Worker {
            sh: Arc::clone(&sh),
            sender,
            backoff,
            retry_range: None,
            wait_until: None,
            hard_until: None,
            batch_cap,
            since_shrink: 0,
            regrow_after: REGROW,
            just_regrown: false,
            timeouts_in_row: 0,
            linger_since: None,
            offline_status: None,
            prefetch: Prefetcher::new(Arc::clone(&sh)),
            delivered_whole: false,
            settle_failed: false,
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
        let mut s = lock(&self.sh.signals);
        s.worker_exited = true;
        self.sh.progress_cv.notify_all();
    }

    /// Sleeps until a batch should go out: records on disk, no backoff running, and either a
    /// full batch, linger elapsed, or a flush waiting. No timed wake-ups while idle.
    fn wait_for_work(&mut self) -> Flow {
        let sh = Arc::clone(&self.sh);
        let mut s = lock(&sh.signals);
        loop {
            if s.stop {
                return Flow::Exit;
            }
            let now = Instant::now();
            if s.retry_now {
                s.retry_now = false;
                if self.wait_until.is_some() {
                    // The backoff is cut short; a Retry-After is not.
                    self.wait_until = self.hard_until.filter(|&h| h > now);
                    if self.wait_until.is_none() {
                        self.hard_until = None;
                        // Not waiting any more: status says 0 (next_retry_in_ms).
                        sh.counters.retry_at_ms.store(0, Relaxed);
                    }
                }
            }
            if let Some(t) = self.wait_until {
                if now < t {
                    let left = t - now;
                    sh.counters
                        .retry_at_ms
                        .store(sh.now_ms() + left.as_millis() as u64, Relaxed);
                    s = wait_timeout(&sh.signal_cv, s, left);
                    continue;
                }
                self.wait_until = None;
                self.hard_until = None;
                sh.counters.retry_at_ms.store(0, Relaxed);
            }
            let pending = sh.disk_pending.load(Relaxed) + self.memory_pending();
            if pending == 0 {
                self.linger_since = None;
                s.wants_records = true;
                s = wait(&sh.signal_cv, s);
                s.wants_records = false;
                continue;
            }
            if self.retry_range.is_some() || pending >= self.batch_cap || s.flushing > 0 {
                return Flow::Continue;
            }
            let since = *self.linger_since.get_or_insert(now);
            let linger = Duration::from_millis(sh.cfg.batch_linger_ms);
            if now.duration_since(since) >= linger {
                return Flow::Continue;
            }
            s.wants_records = true;
            s = wait_timeout(&sh.signal_cv, s, linger - now.duration_since(since));
            s.wants_records = false;
        }
    }

    fn fetch(&mut self, range: Option<(u64, u64)>, max: u64) -> Option<Vec<StoredRecord>> {
        let sh = Arc::clone(&self.sh);
        let mut g = lock(&sh.store);
        let store = g.as_mut()?;
        let instance_len = sh.instance.len();
        let recs = store
            .fetch(range, max, sh.cfg.batch_max_bytes, |r| {
                let il = r.inst.as_ref().map_or(instance_len, |i| i.len());
                self.envelope_cost(il, r.seq, r.ts_ms, r.data.len())
            })
            .unwrap_or_default();
        store.protect_in_flight(match (recs.first(), recs.last()) {
            (Some(a), Some(b)) => Some((a.seq, b.seq)),
            _ => None,
        });
        Some(recs)
    }

    /// Records held in memory that the worker may deliver: only while storage is degraded
    /// (otherwise the writer is about to store them).
    fn memory_pending(&self) -> u64 {
        let c = &self.sh.counters;
        if c.storage_degraded.load(Relaxed) == 0 {
            return 0;
        }
        c.pending_records()
            .saturating_sub(self.sh.disk_pending.load(Relaxed))
    }

    /// Takes the oldest records held in memory (storage degraded) for one request. They
    /// carry an instance of their own: their seqs were never committed to the file.
    fn take_memory(&mut self) -> Option<Vec<StoredRecord>> {
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
            if n as u64 >= self.batch_cap || (n > 0 && body + len > sh.cfg.batch_max_bytes) {
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
    fn deliver_memory(&mut self, batch: Vec<StoredRecord>) -> Flow {
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
            self.body_limit_found(n);
        }
        self.fail_and_wait(&a, a.outcome);
        Flow::Continue
    }

    /// Forms (or re-forms) the batch and delivers it.
    fn attempt(&mut self) -> Flow {
        self.linger_since = None;
        if let Some(batch) = self.take_memory() {
            self.prefetch.release();
            let flow = self.deliver_memory(batch);
            self.sh.notify_progress();
            return flow;
        }
        let ahead = self.prefetch.take_for_send();
        let batch = match ahead {
            Some(recs) => recs,
            None => match self.fetch(self.retry_range, self.batch_cap) {
                Some(recs) => recs,
                None => return Flow::Exit,
            },
        };
        if batch.is_empty() {
            self.retry_range = None;
            self.clear_inflight();
            return Flow::Continue;
        }
        // A backlog: read the next full batch while this one is in flight.
        let next_full = batch.len() as u64 + self.batch_cap;
        if self.retry_range.is_none() && self.sh.disk_pending.load(Relaxed) >= next_full {
            let after = batch.last().map_or(0, |r| r.seq) + 1;
            let src = self.sender.source_json().len();
            self.prefetch
                .ask(after, self.batch_cap, self.sh.cfg.batch_max_bytes, src);
        }
        let flow = self.deliver(batch);
        if !self.delivered_whole {
            // Retried, split, bisected or probed: the next batch is formed afresh.
            self.prefetch.release();
        }
        self.clear_inflight();
        self.sh.notify_progress();
        flow
    }

    fn clear_inflight(&self) {
        if let Some(s) = lock(&self.sh.store).as_mut() {
            s.clear_in_flight();
        }
    }

    fn send(&mut self, recs: &[StoredRecord]) -> Attempt {
        let inst = &self.sh.instance;
        let refs: Vec<RecordRef> = recs
            .iter()
            .map(|r| RecordRef {
                instance: r.inst.as_deref().unwrap_or(inst),
                seq: r.seq,
                ts_ms: r.ts_ms,
                data: &r.data,
            })
            .collect();
        let before = self.sender.resends();
        let a = self.sender.send(&refs);
        let resent = self.sender.resends() - before;
        if resent > 0 {
            self.sh.counters.resends_total.fetch_add(resent, Relaxed);
        }
        a
    }

    /// Sends a batch, splitting and bisecting as the answers ask. Bisection costs at most
    /// 2 × batch.max_records requests, without backoff between them.
    fn deliver(&mut self, batch: Vec<StoredRecord>) -> Flow {
        self.delivered_whole = false;
        self.settle_failed = false;
        let budget = 2 * self.sh.cfg.batch_max_records.max(1);
        let mut requests = 0u64;
        let mut stack: Vec<Vec<StoredRecord>> = vec![batch];
        let mut isolated: Vec<(StoredRecord, i32, String)> = Vec::new();
        let mut accepted = false;
        let mut probed = false;
        let (batch_lo, batch_hi) = range_of(stack[0].iter()).unwrap_or((0, 0));
        while let Some(mut part) = stack.pop() {
            if part.len() as u64 > self.batch_cap && part.len() > 1 {
                // A 413 lowered the cap since this part was formed: halve it unsent.
                let second = part.split_off(part.len() / 2);
                stack.push(second);
                stack.push(part);
                continue;
            }
            let a = self.send(&part);
            requests += 1;
            if self.abandoned() {
                return Flow::Exit;
            }
            match a.outcome {
                Outcome::Delivered => {
                    if !self.settle(&part, &a) {
                        return Flow::Exit;
                    }
                    accepted = true;
                }
                Outcome::Split | Outcome::Bisect if requests < budget => {
                    self.record_failure(&a, false);
                    if a.outcome == Outcome::Split && part.len() > 1 {
                        self.body_limit_found(part.len());
                    }
                    if part.len() > 1 {
                        let mut first = part;
                        let second = first.split_off(first.len() / 2);
                        stack.push(second);
                        stack.push(first);
                    } else if let Some(r) = part.into_iter().next() {
                        isolated.push((r, a.http_status, a.detail.clone()));
                        if !accepted && !probed && isolated.len() >= 2 && !stack.is_empty() {
                            // Two records refused on their own and nothing accepted: is it the
                            // records, or the endpoint (a proxy refusing everything)? Ask with
                            // newer records before bisecting the rest of the batch request by
                            // request.
                            probed = true;
                            match self.probe(batch_hi + 1, (batch_lo, batch_hi)) {
                                None => return Flow::Exit,
                                Some(Some(true)) => accepted = true,
                                Some(Some(false)) => {
                                    let rest = stack.iter().flatten();
                                    self.keep_all(rest, &isolated);
                                    return Flow::Continue;
                                }
                                // Nothing newer to ask with: bisect on.
                                Some(None) => {}
                            }
                        }
                    }
                }
                other => {
                    // Retry later: what is left of this batch is sent again as it is.
                    let mut rest: Vec<&StoredRecord> = part.iter().collect();
                    rest.extend(stack.iter().flatten());
                    rest.extend(isolated.iter().map(|i| &i.0));
                    self.retry_range = range_of(rest.into_iter());
                    self.fail_and_wait(&a, other);
                    return Flow::Continue;
                }
            }
        }
        if !isolated.is_empty() && !accepted {
            // Is it the records, or the endpoint? Send the next pending records as a probe.
            let after = isolated.iter().map(|i| i.0.seq).max().unwrap_or(0) + 1;
            match self.probe(after, (batch_lo, batch_hi)) {
                None => return Flow::Exit,
                Some(Some(true)) => accepted = true,
                _ => {}
            }
            if !accepted {
                self.keep_all(std::iter::empty(), &isolated);
                return Flow::Continue;
            }
        }
        if !isolated.is_empty() {
            let mut g = lock(&self.sh.store);
            let Some(store) = g.as_mut() else {
                return Flow::Exit;
            };
            for (r, status, detail) in &isolated {
                store.clear_in_flight();
                if let Ok((n, b)) = store.dead_letter(&[r.seq], *status, detail) {
                    if n > 0 {
                        self.sh.counters.pending_bytes.fetch_sub(b, Relaxed);
                        self.sh.counters.dead_lettered_total.fetch_add(n, Relaxed);
                        self.sh.mirror_store(store);
                        self.sh.events.emit(
                            EVENT_DEAD_LETTER,
                            n,
                            *status,
                            format!("record {} moved to the dead letters: {detail}", r.seq),
                        );
                    }
                }
            }
        }
        self.retry_range = None;
        self.delivered_whole = requests == 1 && isolated.is_empty() && !self.settle_failed;
        Flow::Continue
    }

    /// Nothing accepted at all while records were refused on their own: a configuration
    /// problem (a proxy refusing everything). Everything is kept (`rest` and the isolated
    /// records) and sent again after retry.max_ms.
    fn keep_all<'a>(
        &mut self,
        rest: impl Iterator<Item = &'a StoredRecord>,
        isolated: &'a [(StoredRecord, i32, String)],
    ) {
        self.retry_range = range_of(rest.chain(isolated.iter().map(|i| &i.0)));
        if let Some((_, status, detail)) = isolated.first() {
            self.offline(*status, detail);
        }
        self.wait_until = Some(Instant::now() + self.backoff.max());
        self.hard_until = None;
    }

    /// Lowers `batch_cap` after a 413 on a request of `refused` records: later batches start
    /// below the endpoint's body limit. Refused right after growing back: the next try waits
    /// twice as long.
    fn body_limit_found(&mut self, refused: usize) {
        if self.just_regrown {
            self.regrow_after = (self.regrow_after * 2).min(MAX_REGROW);
            self.just_regrown = false;
        }
        self.batch_cap = self.batch_cap.min(refused as u64 / 2).max(1);
        self.since_shrink = 0;
    }

    /// The bytes a record adds to a request body: its envelope and a separator.
    fn envelope_cost(&self, inst_len: usize, seq: u64, ts_ms: i64, data_len: usize) -> u64 {
        let src = self.sender.source_json().len();
        crate::sender::envelope_cost(inst_len, seq, ts_ms, src, data_len)
    }

    /// Sends the pending records from seq `after` on (a batch of them) to tell refused records
    /// from an endpoint that refuses everything, then protects `keep` (the batch being
    /// bisected) again. None: close took the file away; Some(None): nothing to send;
    /// Some(Some(accepted)).
    fn probe(&mut self, after: u64, keep: (u64, u64)) -> Option<Option<bool>> {
        let probe = self.fetch(Some((after, i64::MAX as u64)), self.batch_cap)?;
        let result = if probe.is_empty() {
            None
        } else {
            let a = self.send(&probe);
            if self.abandoned() {
                return None;
            }
            if a.outcome == Outcome::Delivered {
                if !self.settle(&probe, &a) {
                    return None;
                }
                Some(true)
            } else {
                self.record_failure(&a, false);
                Some(false)
            }
        };
        if let Some(s) = lock(&self.sh.store).as_mut() {
            s.protect_in_flight(Some(keep));
        }
        Some(result)
    }

    fn abandoned(&self) -> bool {
        lock(&self.sh.store).is_none()
    }

    /// Deletes a delivered batch and reports it. False when close took the file away.
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
            store.settle_delivered(lo, hi, part.len() as u64, bytes)
        } else {
            let seqs: Vec<u64> = part.iter().map(|r| r.seq).collect();
            store.delete(&seqs)
        };
        let (n, bytes) = match deleted {
            Ok(v) => v,
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
            drop(lock(&sh.queue));
            sh.queue_cv.notify_one();
        }
        true
    }

    /// Counts a delivery and reports it; resets backoff and batch size.
    fn succeeded(&mut self, n: u64, bytes: u64, a: &Attempt) {
        let sh = Arc::clone(&self.sh);
        let c = &sh.counters;
        c.pending_bytes.fetch_sub(bytes, Relaxed);
        c.delivered_total.fetch_add(n, Relaxed);
        c.consecutive_failures.store(0, Relaxed);
        c.last_http_status.store(a.http_status, Relaxed);
        c.last_success_unix_ms.store(unix_ms(), Relaxed);
        let was = c.connectivity.swap(CONNECTIVITY_ONLINE, Relaxed);
        self.backoff.reset();
        self.timeouts_in_row = 0;
        self.offline_status = None;
        self.since_shrink += 1;
        if self.just_regrown && n > self.batch_cap / 2 {
            // The grown size went through.
            self.just_regrown = false;
        }
        if self.batch_cap < sh.cfg.batch_max_records && self.since_shrink >= self.regrow_after {
            self.since_shrink = 0;
            self.batch_cap = (self.batch_cap * 2).min(sh.cfg.batch_max_records);
            self.just_regrown = true;
        }
        if was != CONNECTIVITY_ONLINE {
            sh.events.emit(
                EVENT_ONLINE,
                0,
                a.http_status,
                format!("endpoint {} accepts records", self.sender.endpoint()),
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
        if outcome == Outcome::Timeout {
            self.timeouts_in_row += 1;
            if self.timeouts_in_row >= 2 {
                self.timeouts_in_row = 0;
                self.batch_cap = (self.batch_cap / 2).max(1);
                self.since_shrink = 0;
                // The next attempt sends the first half of the batch: formed afresh from the
                // lowest pending seq, at most batch_cap records.
                self.retry_range = None;
            }
        } else {
            self.timeouts_in_row = 0;
        }
        let max = self.backoff.max();
        let (delay, hard) = match outcome {
            Outcome::Config | Outcome::Split | Outcome::Bisect => (max, None),
            _ => {
                // The exponent moves even when the server sets the pace.
                let backoff = self.backoff.next_delay();
                match a.retry_after {
                    // Not earlier than told (capped at retry.max_ms), and never without
                    // backoff: "Retry-After: 0", or an HTTP date that a clock running ahead
                    // sees in the past, must not make a loop of requests.
                    Some(ra) => {
                        let ra = cap(ra, max);
                        (ra.max(backoff), Some(ra))
                    }
                    None => (backoff, None),
                }
            }
        };
        let now = Instant::now();
        self.wait_until = Some(now + delay);
        self.hard_until = hard.map(|h| now + h);
        self.sh
            .counters
            .retry_at_ms
            .store(self.sh.now_ms() + delay.as_millis() as u64, Relaxed);
    }
}

fn range_of<'a>(recs: impl Iterator<Item = &'a StoredRecord>) -> Option<(u64, u64)> {
    let mut r: Option<(u64, u64)> = None;
    for x in recs {
        r = Some(match r {
            None => (x.seq, x.seq),
            Some((lo, hi)) => (lo.min(x.seq), hi.max(x.seq)),
        });
    }
    r
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
