//! Pending records: storing them, reading batches, acknowledging delivered ones (the delivered
//! watermark and its garbage), and the deletions of the capacity policy and TTL, which never
//! touch the seqs in flight or read ahead.

use super::schema::valid_instance;
use super::{sql_err, sql_storage, NewRecord, Store, StoredRecord, WriteError, LARGEST_RECORD};
use crate::config::DeliveryOrder;
use crate::error::{Error, Result};
use rusqlite::{params, OptionalExtension, Transaction};

impl Store {
    /// Stores `recs` in one transaction together with the seq high-water mark; with `fsync`
    /// the commit is made durable (synchronous=FULL) before returning.
    pub(crate) fn insert(
        &mut self,
        recs: &[NewRecord],
        fsync: bool,
    ) -> std::result::Result<(), WriteError> {
        self.check_space();
        self.set_synchronous(fsync)?;
        let tx = self
            .conn
            .transaction()
            .map_err(|e| sql_err("cannot begin a transaction", e))?;
        let mut added = 0u64;
        let mut max_seq = self.hwm;
        let mut clock_rows = false;
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT INTO records(seq, ts_ms, t_acc, inst, data) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(|e| sql_err("cannot prepare insert", e))?;
            for r in recs {
                st.execute(params![
                    r.seq as i64,
                    r.ts_ms,
                    r.t_acc_ms as i64,
                    r.inst.as_deref(),
                    &r.data
                ])
                .map_err(|e| sql_err("cannot store a record", e))?;
                if let Some(boot_ms) = r.boot_ms {
                    // Logged with an invalid wall clock: its boot clock and this boot's id
                    // ("" when unreadable: sent "unset"), for the repair at send time.
                    tx.prepare_cached(
                        "INSERT OR REPLACE INTO clock(seq, boot_ms, boot_id) VALUES (?1, ?2, ?3)",
                    )
                    .and_then(|mut c| {
                        c.execute(params![
                            r.seq as i64,
                            boot_ms,
                            self.boot.boot_id.as_deref().unwrap_or("")
                        ])
                    })
                    .map_err(|e| sql_err("cannot store a record's boot clock", e))?;
                    clock_rows = true;
                }
                added += r.data.len() as u64;
                max_seq = max_seq.max(r.seq);
            }
            // The stored records carry their seqs; the high-water mark in `meta` is written
            // when records are deleted (see `delete`). An edgebuf_sync with nothing new writes
            // it here to fsync the WAL.
            if recs.is_empty() && fsync {
                raise_hwm(&tx, max_seq)
                    .map_err(|e| sql_err("cannot store the seq high-water mark", e))?;
            }
        }
        tx.commit().map_err(|e| sql_err("cannot commit", e))?;
        self.clock_rows |= clock_rows;
        self.hwm = max_seq;
        self.disk_records += recs.len() as u64;
        self.disk_bytes += added;
        Ok(())
    }

    fn set_synchronous(&mut self, full: bool) -> std::result::Result<(), WriteError> {
        if full != self.synchronous_full {
            self.conn
                .execute_batch(if full {
                    "PRAGMA synchronous=FULL"
                } else {
                    "PRAGMA synchronous=NORMAL"
                })
                .map_err(|e| sql_err("cannot set synchronous mode", e))?;
            self.synchronous_full = full;
        }
        Ok(())
    }

    /// Up to `max_records` pending records in seq order, stopping before `max_bytes` of
    /// `cost` (the first record is always included). With `range`, only seqs inside it
    /// (a retry of the same batch). The tests' shorthand for [`Store::fetch_in`].
    #[cfg(test)]
    pub(crate) fn fetch(
        &mut self,
        range: Option<(u64, u64)>,
        max_records: u64,
        max_bytes: u64,
        cost: impl Fn(&StoredRecord) -> u64,
    ) -> Result<Vec<StoredRecord>> {
        self.fetch_in(
            DeliveryOrder::OldestFirst,
            range,
            max_records,
            max_bytes,
            cost,
            &mut Vec::new(),
        )
    }

    /// [`Store::fetch`] in the given `delivery.order` (docs/reference.md, configuration):
    /// `newest_first` takes the pending records from the highest seq down (the newest is
    /// always included, then each older one while `max_bytes` allows) and returns them in seq
    /// order. The records' bytes are read into the buffers of `spare` records (records
    /// delivered before) while there are any: a backlog drains without an allocation per
    /// record.
    pub(crate) fn fetch_in(
        &mut self,
        order: DeliveryOrder,
        range: Option<(u64, u64)>,
        max_records: u64,
        max_bytes: u64,
        cost: impl Fn(&StoredRecord) -> u64,
        spare: &mut Vec<StoredRecord>,
    ) -> Result<Vec<StoredRecord>> {
        let (lo, hi) = range.unwrap_or((0, i64::MAX as u64));
        let lo = lo.max(self.wm + 1);
        // With rows in the clock table, each record's is read with it and the clocks of now
        // repair them (src/clock.rs); otherwise the records table alone. A row larger than any
        // record edgebuf accepts is not loaded (a hostile file): it reads as NULL, which no
        // row edgebuf wrote holds.
        let now = self.clock_rows.then(|| self.boot.now());
        let sql = match (now.is_some(), order) {
            (false, DeliveryOrder::OldestFirst) => {
                "SELECT seq, ts_ms, inst, CASE WHEN octet_length(data) <= ?4 THEN data END \
                 FROM records WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq LIMIT ?3"
            }
            (false, DeliveryOrder::NewestFirst) => {
                "SELECT seq, ts_ms, inst, CASE WHEN octet_length(data) <= ?4 THEN data END \
                 FROM records WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq DESC LIMIT ?3"
            }
            (true, DeliveryOrder::OldestFirst) => {
                "SELECT r.seq, r.ts_ms, r.inst, CASE WHEN octet_length(r.data) <= ?4 THEN r.data END, \
                 c.seq IS NOT NULL, c.boot_ms, \
                 CASE WHEN octet_length(c.boot_id) <= 64 THEN c.boot_id END \
                 FROM records r LEFT JOIN clock c ON c.seq = r.seq \
                 WHERE r.seq BETWEEN ?1 AND ?2 ORDER BY r.seq LIMIT ?3"
            }
            (true, DeliveryOrder::NewestFirst) => {
                "SELECT r.seq, r.ts_ms, r.inst, CASE WHEN octet_length(r.data) <= ?4 THEN r.data END, \
                 c.seq IS NOT NULL, c.boot_ms, \
                 CASE WHEN octet_length(c.boot_id) <= 64 THEN c.boot_id END \
                 FROM records r LEFT JOIN clock c ON c.seq = r.seq \
                 WHERE r.seq BETWEEN ?1 AND ?2 ORDER BY r.seq DESC LIMIT ?3"
            }
        };
        let mut st = self
            .conn
            .prepare_cached(sql)
            .map_err(|e| sql_storage("cannot read pending records", e))?;
        let mut rows = st
            .query(params![
                lo as i64,
                hi as i64,
                max_records as i64,
                LARGEST_RECORD as i64
            ])
            .map_err(|e| sql_storage("cannot read pending records", e))?;
        let mut out = Vec::with_capacity(max_records.min(4096) as usize);
        let mut bytes = 0u64;
        while let Some(row) = rows
            .next()
            .map_err(|e| sql_storage("cannot read pending records", e))?
        {
            let damaged = |what: &str| {
                Error::storage(format!(
                    "buffer file {} is damaged: {what}",
                    self.path.display()
                ))
            };
            let data = match row.get_ref(3).map_err(|e| sql_storage("bad row", e))? {
                rusqlite::types::ValueRef::Null => return Err(damaged(
                    "a record's data is missing or larger than the largest record edgebuf accepts",
                )),
                v => v.as_blob().map_err(|e| sql_storage("bad row", e.into()))?,
            };
            let mut rec = StoredRecord {
                seq: row
                    .get::<_, i64>(0)
                    .map_err(|e| sql_storage("bad row", e))? as u64,
                ts_ms: match row
                    .get::<_, i64>(1)
                    .map_err(|e| sql_storage("bad row", e))?
                {
                    t if t < 0 => return Err(damaged("a record's ts_ms is negative")),
                    t => t,
                },
                inst: match row.get_ref(2).map_err(|e| sql_storage("bad row", e))? {
                    rusqlite::types::ValueRef::Null => None,
                    v => {
                        // It goes on the wire in the envelope's id: only what edgebuf writes.
                        let i = v.as_str().map_err(|e| sql_storage("bad row", e.into()))?;
                        if !valid_instance(i) {
                            return Err(damaged(
                                "a record's instance id is not 16 hexadecimal digits",
                            ));
                        }
                        Some(i.to_owned())
                    }
                },
                data: match spare.pop() {
                    Some(old) => {
                        let mut buf = old.data;
                        buf.clear();
                        buf.extend_from_slice(data);
                        buf
                    }
                    None => data.to_vec(),
                },
                clock: crate::clock::ClockMark::Valid,
                logged_clock: None,
            };
            if let Some(now) = &now {
                let logged_invalid: bool = row.get(4).map_err(|e| sql_storage("bad row", e))?;
                if logged_invalid {
                    // Values from the file: a boot clock that is not an integer, or a boot id
                    // that is not a UUID, repairs nothing (the record goes "unset").
                    let boot_ms = match row.get_ref(5).map_err(|e| sql_storage("bad row", e))? {
                        rusqlite::types::ValueRef::Integer(n) => n,
                        _ => -1,
                    };
                    let boot_id = match row.get_ref(6).map_err(|e| sql_storage("bad row", e))? {
                        rusqlite::types::ValueRef::Text(t) => std::str::from_utf8(t).ok(),
                        _ => None,
                    };
                    (rec.ts_ms, rec.clock) = now.repair(rec.ts_ms, boot_ms, boot_id);
                }
            }
            let c = cost(&rec);
            if !out.is_empty() && bytes + c > max_bytes {
                break;
            }
            bytes += c;
            out.push(rec);
        }
        if order == DeliveryOrder::NewestFirst {
            out.reverse();
        }
        Ok(out)
    }

    /// Deletes delivered records; returns (records, payload bytes) removed. The seq
    /// high-water mark is kept in the same transaction, so seqs are never reused.
    pub(crate) fn delete(&mut self, seqs: &[u64]) -> Result<(u64, u64)> {
        let Some(&max_seq) = seqs.iter().max() else {
            return Ok((0, 0));
        };
        let min_seq = seqs.iter().copied().min().unwrap_or(max_seq);
        let contiguous = max_seq - min_seq + 1 == seqs.len() as u64;
        let tx = self
            .conn
            .transaction()
            .map_err(|e| sql_storage("cannot begin a transaction", e))?;
        let (mut n, mut bytes) = (0u64, 0u64);
        {
            let mut add = |len: i64| {
                n += 1;
                bytes += len as u64;
            };
            if contiguous {
                // One statement for a whole batch (delivery deletes runs of seqs).
                let mut st = tx
                    .prepare_cached(
                        "DELETE FROM records WHERE seq BETWEEN ?1 AND ?2 RETURNING length(data)",
                    )
                    .map_err(|e| sql_storage("cannot prepare delete", e))?;
                let rows = st
                    .query_map(params![min_seq as i64, max_seq as i64], |r| {
                        r.get::<_, i64>(0)
                    })
                    .map_err(|e| sql_storage("cannot delete delivered records", e))?;
                for len in rows {
                    add(len.map_err(|e| sql_storage("cannot delete delivered records", e))?);
                }
            } else {
                let mut st = tx
                    .prepare_cached("DELETE FROM records WHERE seq=?1 RETURNING length(data)")
                    .map_err(|e| sql_storage("cannot prepare delete", e))?;
                for &s in seqs {
                    let len: Option<i64> = st
                        .query_row(params![s as i64], |r| r.get(0))
                        .optional()
                        .map_err(|e| sql_storage("cannot delete a delivered record", e))?;
                    if let Some(len) = len {
                        add(len);
                    }
                }
            }
            if self.clock_rows {
                if contiguous {
                    delete_clock_rows(&tx, min_seq, max_seq)
                } else {
                    seqs.iter().try_for_each(|&s| delete_clock_rows(&tx, s, s))
                }
                .map_err(|e| sql_storage("cannot delete records' boot clocks", e))?;
            }
        }
        commit_settled(
            tx,
            max_seq,
            self.budget_note,
            "the deletion of delivered records",
        )?;
        self.recheck_clock_rows();
        self.budget_written();
        self.disk_records -= n.min(self.disk_records);
        self.disk_bytes -= bytes.min(self.disk_bytes);
        Ok((n, bytes))
    }

    /// Deletes a delivered batch: the records `lo..=hi` the worker read (`n` records of
    /// `bytes` payload bytes; records in flight are never dropped, so all of them are here).
    /// Cheaper than [`Store::delete`]: one range statement without RETURNING.
    pub(crate) fn delete_delivered(
        &mut self,
        lo: u64,
        hi: u64,
        n: u64,
        bytes: u64,
    ) -> Result<(u64, u64)> {
        let tx = self
            .conn
            .transaction()
            .map_err(|e| sql_storage("cannot begin a transaction", e))?;
        let removed =
            tx.prepare_cached("DELETE FROM records WHERE seq BETWEEN ?1 AND ?2")
                .and_then(|mut st| st.execute(params![lo as i64, hi as i64]))
                .map_err(|e| sql_storage("cannot delete delivered records", e))? as u64;
        if self.clock_rows {
            delete_clock_rows(&tx, lo, hi)
                .map_err(|e| sql_storage("cannot delete records' boot clocks", e))?;
        }
        commit_settled(
            tx,
            hi,
            self.budget_note,
            "the deletion of delivered records",
        )?;
        self.recheck_clock_rows();
        self.budget_written();
        self.disk_records -= removed.min(self.disk_records);
        if removed == n {
            self.disk_bytes -= bytes.min(self.disk_bytes);
            return Ok((n, bytes));
        }
        // Not what was read (something else removed records meanwhile): count from the file.
        let before = self.disk_bytes;
        self.disk_bytes =
            self.conn
                .query_row(
                    "SELECT total(length(data)) FROM records WHERE seq > ?1",
                    [self.wm as i64],
                    |r| r.get::<_, f64>(0),
                )
                .map_err(|e| sql_storage("cannot count pending bytes", e))? as u64;
        Ok((removed, before.saturating_sub(self.disk_bytes)))
    }

    /// Settles a delivered batch `lo..=hi` (`n` records, `bytes` payload bytes) that is the
    /// oldest pending: advances the delivered watermark, one small write, and leaves the rows
    /// to `collect_garbage`. Anything else (a batch behind records still pending) is deleted
    /// at once. `held_from` is the lowest seq not in the file yet but not settled either (held
    /// in memory: queued, being written, or out in a request from memory while storage is
    /// degraded): the watermark never passes it, or the writer would store those records
    /// below it, where nothing reads them.
    pub(crate) fn settle_delivered(
        &mut self,
        lo: u64,
        hi: u64,
        n: u64,
        bytes: u64,
        held_from: Option<u64>,
    ) -> Result<(u64, u64)> {
        let behind: Option<i64> = self
            .conn
            .prepare_cached("SELECT seq FROM records WHERE seq > ?1 AND seq < ?2 LIMIT 1")
            .and_then(|mut st| {
                st.query_row(params![self.wm as i64, lo as i64], |r| r.get(0))
                    .optional()
            })
            .map_err(|e| sql_storage("cannot read pending records", e))?;
        let held_behind = held_from.is_some_and(|h| h <= hi);
        if behind.is_some() || held_behind || hi < lo || lo <= self.wm {
            return self.delete_delivered(lo, hi, n, bytes);
        }
        let tx = self
            .conn
            .transaction()
            .map_err(|e| sql_storage("cannot begin a transaction", e))?;
        tx.prepare_cached(
            "INSERT INTO meta(key, value) VALUES('wm', ?1) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
        )
        .and_then(|mut st| st.execute(params![hi as i64]))
        .map_err(|e| sql_storage("cannot store the delivered watermark", e))?;
        commit_settled(tx, hi, self.budget_note, "the delivered watermark")?;
        self.budget_written();
        self.wm = hi;
        self.disk_records -= n.min(self.disk_records);
        self.disk_bytes -= bytes.min(self.disk_bytes);
        self.garbage_records += n;
        self.garbage_bytes += bytes;
        Ok((n, bytes))
    }

    /// Reclaims up to `max_rows` delivered rows (below the watermark) in one transaction.
    /// Returns how many were removed.
    pub(crate) fn collect_garbage(&mut self, max_rows: u64) -> Result<u64> {
        if self.garbage_records == 0 {
            return Ok(0);
        }
        // The seq of the max_rows-th delivered row bounds the chunk (a walk of the index).
        let bound: Option<i64> = self
            .conn
            .prepare_cached(
                "SELECT seq FROM records WHERE seq <= ?1 ORDER BY seq LIMIT 1 OFFSET ?2",
            )
            .and_then(|mut st| {
                st.query_row(
                    params![
                        self.wm as i64,
                        max_rows.saturating_sub(1).min(i64::MAX as u64) as i64
                    ],
                    |r| r.get(0),
                )
                .optional()
            })
            .map_err(|e| sql_storage("cannot read delivered records", e))?;
        let upto = bound.map_or(self.wm as i64, |b| b.min(self.wm as i64));
        let tx = self
            .conn
            .transaction()
            .map_err(|e| sql_storage("cannot begin a transaction", e))?;
        let removed = tx
            .prepare_cached("DELETE FROM records WHERE seq <= ?1")
            .and_then(|mut st| st.execute(params![upto]))
            .map_err(|e| sql_storage("cannot reclaim delivered records", e))?
            as u64;
        if self.clock_rows {
            delete_clock_rows(&tx, 0, upto.max(0) as u64)
                .map_err(|e| sql_storage("cannot reclaim delivered records' boot clocks", e))?;
        }
        tx.commit()
            .map_err(|e| sql_storage("cannot reclaim delivered records", e))?;
        self.recheck_clock_rows();
        if bound.is_none() || removed >= self.garbage_records {
            self.garbage_records = 0;
            self.garbage_bytes = 0;
        } else {
            let per = self.garbage_bytes / self.garbage_records.max(1);
            self.garbage_records -= removed;
            self.garbage_bytes = self.garbage_bytes.saturating_sub(per * removed);
        }
        Ok(removed)
    }

    /// After deleting rows of the clock table: whether any are left (reading batches joins the
    /// table only while there are).
    pub(super) fn recheck_clock_rows(&mut self) {
        if self.clock_rows {
            self.clock_rows = self
                .conn
                .prepare_cached("SELECT EXISTS(SELECT 1 FROM clock)")
                .and_then(|mut st| st.query_row([], |r| r.get(0)))
                .unwrap_or(true);
        }
    }

    /// The worker sends the records `range` (first and last seq; None: none): the capacity
    /// policy and TTL leave them alone until the worker calls this again or
    /// [`Store::clear_in_flight`].
    pub(crate) fn protect_in_flight(&mut self, range: Option<(u64, u64)>) {
        self.inflight = range;
    }

    /// The worker's request is settled (or given up): its records are ordinary again.
    pub(crate) fn clear_in_flight(&mut self) {
        self.inflight = None;
    }

    /// The prefetcher read the records `range` ahead, for the request after the one in
    /// flight: protected like it until the worker sends them or lets them go.
    pub(crate) fn protect_read_ahead(&mut self, range: Option<(u64, u64)>) {
        self.prefetched = range;
    }

    /// The records read ahead are sent (the caller protects them as in flight under the same
    /// lock) or let go.
    pub(crate) fn release_read_ahead(&mut self) {
        self.prefetched = None;
    }

    /// The seq ranges the capacity policy and TTL must not touch: the request in flight and
    /// the batch read for the next one (an empty range, 1..=0, where there is none).
    pub(crate) fn protected(&self) -> ((u64, u64), (u64, u64)) {
        (
            self.inflight.unwrap_or((1, 0)),
            self.prefetched.unwrap_or((1, 0)),
        )
    }

    /// Frees room for the capacity policy: the oldest dead letters first (for bytes), then the
    /// oldest pending records outside the request in flight. Returns the pending records
    /// dropped as (count, bytes).
    pub(crate) fn make_room(&mut self, need_bytes: u64, need_records: u64) -> Result<(u64, u64)> {
        let mut freed = 0u64;
        if need_bytes > 0 && self.dead_bytes > 0 {
            freed = self.trim_dead(u64::MAX, need_bytes)?.1;
        }
        let want_bytes = need_bytes.saturating_sub(freed);
        if want_bytes == 0 && need_records == 0 {
            return Ok((0, 0));
        }
        let ((lo, hi), (plo, phi)) = self.protected();
        let victims: Vec<(i64, i64)> = {
            let mut st = self
                .conn
                .prepare_cached(
                    "SELECT seq, length(data) FROM records WHERE seq > ?3 AND seq NOT BETWEEN ?1 AND ?2 AND seq NOT BETWEEN ?4 AND ?5 ORDER BY seq",
                )
                .map_err(|e| sql_storage("cannot read pending records", e))?;
            let rows = st
                .query_map(
                    params![lo as i64, hi as i64, self.wm as i64, plo as i64, phi as i64],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(|e| sql_storage("cannot read pending records", e))?;
            let (mut v, mut b) = (Vec::new(), 0u64);
            for row in rows {
                if b >= want_bytes && v.len() as u64 >= need_records {
                    break;
                }
                let (seq, len) = row.map_err(|e| sql_storage("cannot read pending records", e))?;
                b += len as u64;
                v.push((seq, len));
            }
            v
        };
        if victims.is_empty() {
            return Ok((0, 0));
        }
        let seqs: Vec<u64> = victims.iter().map(|v| v.0 as u64).collect();
        self.delete(&seqs)
    }

    /// Drops pending records accepted more than `ttl_ms` ago (records of earlier runs age from
    /// open), outside the request in flight. Returns (count, bytes).
    pub(crate) fn expire(&mut self, now_ms: u64, ttl_ms: u64) -> Result<(u64, u64)> {
        if ttl_ms == 0 || now_ms <= ttl_ms {
            return Ok((0, 0));
        }
        let cutoff = now_ms - ttl_ms;
        let ((lo, hi), (plo, phi)) = self.protected();
        let seqs: Vec<u64> = {
            let mut st = self
                .conn
                .prepare_cached(
                    "SELECT seq FROM records WHERE (seq < ?1 OR t_acc < ?2) AND seq > ?5 AND seq NOT BETWEEN ?3 AND ?4 AND seq NOT BETWEEN ?6 AND ?7",
                )
                .map_err(|e| sql_storage("cannot read pending records", e))?;
            // Records of earlier runs count as accepted at open (t = 0), so they expire
            // together once now > ttl; `cutoff > 0` holds here.
            let rows = st
                .query_map(
                    params![
                        self.run_first_seq as i64,
                        cutoff as i64,
                        lo as i64,
                        hi as i64,
                        self.wm as i64,
                        plo as i64,
                        phi as i64
                    ],
                    |r| r.get::<_, i64>(0),
                )
                .map_err(|e| sql_storage("cannot read pending records", e))?;
            let mut v = Vec::new();
            for r in rows {
                v.push(r.map_err(|e| sql_storage("cannot read pending records", e))? as u64);
            }
            v
        };
        if seqs.is_empty() {
            return Ok((0, 0));
        }
        self.delete(&seqs)
    }

    /// (seq, acceptance ms since open) of the oldest pending record on disk.
    pub(crate) fn oldest(&mut self) -> Result<Option<(u64, u64)>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT seq, t_acc FROM records WHERE seq > ?1 ORDER BY seq LIMIT 1")
            .map_err(|e| sql_storage("cannot read pending records", e))?;
        let row = st
            .query_row([self.wm as i64], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
            })
            .optional()
            .map_err(|e| sql_storage("cannot read pending records", e))?;
        Ok(row.map(|(seq, t)| {
            let seq = seq as u64;
            (
                seq,
                if seq < self.run_first_seq {
                    0
                } else {
                    t as u64
                },
            )
        }))
    }

    /// The lowest pending seq on disk, if any.
    pub(crate) fn min_seq(&mut self) -> Result<Option<u64>> {
        Ok(self.oldest()?.map(|(s, _)| s))
    }
}

/// Deletes the boot clocks of the records `lo..=hi` (src/clock.rs), in the caller's
/// transaction.
pub(super) fn delete_clock_rows(
    c: &rusqlite::Connection,
    lo: u64,
    hi: u64,
) -> rusqlite::Result<()> {
    c.prepare_cached("DELETE FROM clock WHERE seq BETWEEN ?1 AND ?2")
        .and_then(|mut st| st.execute(params![lo as i64, hi.min(i64::MAX as u64) as i64]))
        .map(|_| ())
}

/// Raises the seq high-water mark in `meta` to `seq` inside `tx`: seqs are never reused.
pub(super) fn raise_hwm(tx: &Transaction, seq: u64) -> rusqlite::Result<usize> {
    tx.prepare_cached("UPDATE meta SET value=max(value, ?1) WHERE key='hwm'")
        .and_then(|mut st| st.execute(params![seq as i64]))
}

/// Commits a transaction that settled records up to seq `hwm`: the high-water mark and the
/// budget's noted use (`note`) go in with it. The caller then calls `budget_written`.
fn commit_settled(tx: Transaction, hwm: u64, note: Option<(i64, u64)>, what: &str) -> Result<()> {
    raise_hwm(&tx, hwm).map_err(|e| sql_storage("cannot store the seq high-water mark", e))?;
    super::budget::write_note(&tx, note)?;
    tx.commit()
        .map_err(|e| sql_storage(&format!("cannot commit {what}"), e))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{buffer_path, insert, open, pending_seqs, raw, rec};
    use super::*;

    /// A read into the buffers of delivered records returns each record's own bytes, whatever
    /// those buffers held, and takes as many of them as it reads rows.
    #[test]
    fn a_read_into_spare_buffers_returns_the_records_bytes() {
        let (_dir, path) = buffer_path();
        let mut s = open(&path);
        insert(&mut s, 1..=5);
        let fresh = s.fetch(None, 10, u64::MAX, |_| 1).expect("fetch");
        let old = |data: &[u8]| StoredRecord {
            data: data.to_vec(),
            ..fresh[0].clone()
        };
        let mut spare = vec![
            old(b"a much longer buffer than any record here"),
            old(b""),
            old(b"x"),
        ];
        let got = s
            .fetch_in(
                DeliveryOrder::OldestFirst,
                None,
                10,
                u64::MAX,
                |_| 1,
                &mut spare,
            )
            .expect("fetch");
        assert_eq!(got, fresh);
        assert!(
            spare.is_empty(),
            "three of the five rows read into spare buffers"
        );
    }

    /// Time per row of reading batches of 500 records of 250 bytes (release:
    /// `cargo test --release --lib read_speed -- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn read_speed() {
        let (_dir, path) = buffer_path();
        let mut s = open(&path);
        let data = format!("{{\"x\":\"{}\"}}", "y".repeat(240));
        for chunk in 0..200u64 {
            let recs: Vec<NewRecord> = (1..=1000).map(|i| rec(chunk * 1000 + i, &data)).collect();
            s.insert(&recs, false).expect("insert");
        }
        // The best of five passes over all the rows: the least disturbed by other load.
        let mut us = f64::MAX;
        let mut n = 0;
        for _ in 0..5 {
            let t = std::time::Instant::now();
            n = 0;
            let mut lo = 1;
            while let Ok(got) = s.fetch(Some((lo, i64::MAX as u64)), 500, u64::MAX, |_| 1) {
                let Some(last) = got.last() else { break };
                lo = last.seq + 1;
                n += got.len();
            }
            us = us.min(t.elapsed().as_secs_f64() * 1e6 / n as f64);
        }
        println!("fetch: {us:.3} us/row ({n} rows)");
    }

    #[test]
    fn insert_fetch_acknowledge_round_trip() {
        let (_dir, path) = buffer_path();
        {
            let mut s = open(&path);
            insert(&mut s, 1..=5);
            assert_eq!(s.disk_records, 5);
            let got = s.fetch(None, 10, u64::MAX, |_| 1).expect("fetch");
            assert_eq!(got.len(), 5);
            assert_eq!(got[0], {
                let r = rec(1, "{\"i\":1}");
                StoredRecord {
                    seq: r.seq,
                    ts_ms: r.ts_ms,
                    inst: None,
                    data: r.data,
                    clock: crate::clock::ClockMark::Valid,
                    logged_clock: None,
                }
            });
            // The oldest batch delivered: the watermark moves, the rows wait as garbage.
            let bytes: u64 = got[..3].iter().map(|r| r.data.len() as u64).sum();
            assert_eq!(
                s.settle_delivered(1, 3, 3, bytes, None).expect("settle"),
                (3, bytes)
            );
            assert_eq!((s.disk_records, s.garbage_records), (2, 3));
            assert_eq!(pending_seqs(&mut s), vec![4, 5]);
            assert_eq!(s.oldest().expect("oldest"), Some((4, 0)));
            assert_eq!(s.min_seq().expect("min"), Some(4));
            // A retry of a range reads only what is still pending in it.
            let again = s.fetch(Some((2, 4)), 10, u64::MAX, |_| 1).expect("fetch");
            assert_eq!(again.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![4]);
        }
        {
            // The watermark survives a reopen; the garbage is reclaimed.
            let mut s = open(&path);
            assert_eq!((s.pending_records(), s.garbage_records), (2, 3));
            assert_eq!(s.collect_garbage(2).expect("gc"), 2);
            assert_eq!(s.collect_garbage(10).expect("gc"), 1);
            assert_eq!(s.garbage_records, 0);
            assert_eq!(pending_seqs(&mut s), vec![4, 5]);
            // A batch behind a pending record is deleted at once.
            insert(&mut s, 6..=7);
            assert_eq!(
                s.settle_delivered(6, 7, 2, 14, None).expect("settle"),
                (2, 14)
            );
            assert_eq!(s.garbage_records, 0);
            assert_eq!(pending_seqs(&mut s), vec![4, 5]);
            assert_eq!(s.next_seq(), 8);
        }
        let mut s = open(&path);
        assert_eq!(pending_seqs(&mut s), vec![4, 5]);
        assert_eq!(s.next_seq(), 8);
    }

    #[test]
    fn fetch_stops_at_the_byte_budget_but_always_takes_one() {
        let (_dir, path) = buffer_path();
        let mut s = open(&path);
        insert(&mut s, 1..=10);
        let got = s
            .fetch(None, 10, 25, |r| r.data.len() as u64)
            .expect("fetch");
        assert_eq!(got.len(), 3, "7 + 7 + 7 bytes fit in 25");
        let got = s
            .fetch(None, 10, 1, |r| r.data.len() as u64)
            .expect("fetch");
        assert_eq!(got.len(), 1);
        let got = s.fetch(None, 4, u64::MAX, |_| 0).expect("fetch");
        assert_eq!(got.len(), 4);
    }

    fn seqs(recs: &[StoredRecord]) -> Vec<u64> {
        recs.iter().map(|r| r.seq).collect()
    }

    #[test]
    fn newest_first_fetch_takes_the_top_seqs_in_seq_order() {
        let (_dir, path) = buffer_path();
        let mut s = open(&path);
        insert(&mut s, 1..=10);
        let newest = DeliveryOrder::NewestFirst;
        let got = s
            .fetch_in(newest, None, 4, u64::MAX, |_| 0, &mut Vec::new())
            .expect("fetch");
        assert_eq!(seqs(&got), vec![7, 8, 9, 10]);
        assert_eq!(
            got[3].data,
            b"{\"i\":10}".to_vec(),
            "each row is its own record"
        );
        // The byte budget counts from the newest down: 8 + 7 + 7 bytes fit in 25, not a fourth.
        let got = s
            .fetch_in(
                newest,
                None,
                10,
                25,
                |r| r.data.len() as u64,
                &mut Vec::new(),
            )
            .expect("fetch");
        assert_eq!(seqs(&got), vec![8, 9, 10]);
        // At least one record, however small the budget.
        let got = s
            .fetch_in(
                newest,
                None,
                10,
                1,
                |r| r.data.len() as u64,
                &mut Vec::new(),
            )
            .expect("fetch");
        assert_eq!(seqs(&got), vec![10]);
        // A retry of a range reads the same records again, less any removed meanwhile.
        let got = s
            .fetch_in(newest, Some((5, 8)), 10, u64::MAX, |_| 0, &mut Vec::new())
            .expect("fetch");
        assert_eq!(seqs(&got), vec![5, 6, 7, 8]);
        assert_eq!(s.delete(&[6]).expect("drop").0, 1);
        let got = s
            .fetch_in(newest, Some((5, 8)), 10, u64::MAX, |_| 0, &mut Vec::new())
            .expect("fetch");
        assert_eq!(seqs(&got), vec![5, 7, 8]);
        // The range below a batch: the next one of a newest-first drain.
        let got = s
            .fetch_in(newest, Some((0, 6)), 3, u64::MAX, |_| 0, &mut Vec::new())
            .expect("fetch");
        assert_eq!(seqs(&got), vec![3, 4, 5]);
    }

    #[test]
    fn newest_first_settling_deletes_then_the_oldest_moves_the_watermark() {
        let (_dir, path) = buffer_path();
        let mut s = open(&path);
        insert(&mut s, 1..=9);
        let newest = DeliveryOrder::NewestFirst;
        let mut delivered = Vec::new();
        for _ in 0..3 {
            let got = s
                .fetch_in(newest, None, 3, u64::MAX, |_| 0, &mut Vec::new())
                .expect("fetch");
            let (lo, hi) = (got[0].seq, got[got.len() - 1].seq);
            let bytes: u64 = got.iter().map(|r| r.data.len() as u64).sum();
            let settled = s
                .settle_delivered(lo, hi, got.len() as u64, bytes, None)
                .expect("settle");
            assert_eq!(settled, (3, bytes));
            delivered.push(seqs(&got));
        }
        assert_eq!(delivered, vec![vec![7, 8, 9], vec![4, 5, 6], vec![1, 2, 3]]);
        // The two newer batches were deleted at once; the oldest moved the watermark.
        assert_eq!((s.disk_records, s.disk_bytes), (0, 0));
        assert_eq!((s.wm, s.garbage_records), (3, 3));
        assert_eq!(s.collect_garbage(100).expect("gc"), 3);
        assert_eq!(s.garbage_records, 0);
        // Records logged afterwards go next, and seqs are not reused after a reopen.
        insert(&mut s, 10..=11);
        let got = s
            .fetch_in(newest, None, 3, u64::MAX, |_| 0, &mut Vec::new())
            .expect("fetch");
        assert_eq!(seqs(&got), vec![10, 11]);
        drop(s);
        let mut s = open(&path);
        assert_eq!(s.next_seq(), 12);
        assert_eq!(pending_seqs(&mut s), vec![10, 11]);
    }

    #[test]
    fn the_watermark_never_passes_a_seq_held_in_memory() {
        let (_dir, path) = buffer_path();
        let mut s = open(&path);
        // 1..=2 are held in memory; 3..=4 were stored and are delivered.
        insert(&mut s, 3..=4);
        let bytes = s.disk_bytes;
        assert_eq!(
            s.settle_delivered(3, 4, 2, bytes, Some(1)).expect("settle"),
            (2, bytes)
        );
        assert_eq!((s.wm, s.garbage_records, s.disk_records), (0, 0, 0));
        // Stored afterwards, they are pending, and their delivery moves the watermark.
        insert(&mut s, 1..=2);
        assert_eq!(pending_seqs(&mut s), vec![1, 2]);
        let bytes = s.disk_bytes;
        s.settle_delivered(1, 2, 2, bytes, Some(5)).expect("settle");
        assert_eq!((s.wm, s.garbage_records, s.disk_records), (2, 2, 0));
    }

    #[test]
    fn delete_and_delete_delivered_keep_the_counts() {
        let (_dir, path) = buffer_path();
        let mut s = open(&path);
        insert(&mut s, 1..=10);
        assert_eq!(s.delete(&[2, 5, 9, 42]).expect("delete"), (3, 21));
        assert_eq!(s.delete(&[]).expect("nothing"), (0, 0));
        assert_eq!((s.disk_records, s.disk_bytes), (7, 49 + 1));
        assert_eq!(s.delete_delivered(6, 8, 3, 21).expect("delivered"), (3, 21));
        assert_eq!(pending_seqs(&mut s), vec![1, 3, 4, 10]);
        assert_eq!((s.disk_records, s.disk_bytes), (4, 29));
        // Not what the caller read (2 of 1..=4 were gone): the bytes are counted again.
        assert_eq!(
            s.delete_delivered(1, 4, 4, 999).expect("delivered"),
            (3, 21)
        );
        assert_eq!((s.disk_records, s.disk_bytes), (1, 8));
    }

    #[test]
    fn capacity_and_ttl_never_touch_the_request_in_flight_or_read_ahead() {
        let (_dir, path) = buffer_path();
        let mut s = open(&path);
        insert(&mut s, 1..=10);
        s.protect_in_flight(Some((1, 2)));
        s.protect_read_ahead(Some((3, 4)));
        // Room for 3 records: the oldest unprotected ones go.
        assert_eq!(s.make_room(0, 3).expect("room").0, 3);
        assert_eq!(pending_seqs(&mut s), vec![1, 2, 3, 4, 8, 9, 10]);
        s.release_read_ahead();
        s.clear_in_flight();
        assert_eq!(s.make_room(1, 0).expect("room").0, 1);
        assert_eq!(pending_seqs(&mut s), vec![2, 3, 4, 8, 9, 10]);
        // TTL: every record of this run was accepted at t=0.
        s.set_run_first_seq(1);
        s.protect_in_flight(Some((2, 2)));
        assert_eq!(s.expire(10, 20).expect("expire"), (0, 0), "not old yet");
        assert_eq!(s.expire(0, 0).expect("expire"), (0, 0), "no TTL");
        assert_eq!(s.expire(100, 20).expect("expire").0, 5);
        assert_eq!(pending_seqs(&mut s), vec![2]);
    }

    #[test]
    fn hostile_rows_are_reported_as_damage_not_loaded() {
        let (_dir, path) = buffer_path();
        {
            let mut s = open(&path);
            insert(&mut s, 1..=3);
        }
        raw(&path)
            .execute_batch("UPDATE records SET ts_ms = -5 WHERE seq = 2")
            .expect("tamper");
        let mut s = open(&path);
        assert_eq!(
            s.fetch(Some((1, 1)), 10, u64::MAX, |_| 0)
                .expect("fine")
                .len(),
            1
        );
        let e = s.fetch(None, 10, u64::MAX, |_| 0).expect_err("damaged");
        assert!(e.message().contains("ts_ms is negative"), "{e:?}");
        drop(s);

        raw(&path)
            .execute_batch("UPDATE records SET ts_ms = 1, inst = 'nothex' WHERE seq = 2")
            .expect("tamper");
        let mut s = open(&path);
        let e = s.fetch(None, 10, u64::MAX, |_| 0).expect_err("damaged");
        assert!(e.message().contains("16 hexadecimal digits"), "{e:?}");
        drop(s);

        raw(&path)
            .execute(
                "UPDATE records SET inst = NULL, data = zeroblob(?1) WHERE seq = 2",
                [LARGEST_RECORD as i64 + 1],
            )
            .expect("tamper");
        let mut s = open(&path);
        let e = s.fetch(None, 10, u64::MAX, |_| 0).expect_err("damaged");
        assert!(
            e.message().contains("larger than the largest record"),
            "{e:?}"
        );
    }

    const BOOT: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";

    fn clock_rows(s: &Store) -> Vec<i64> {
        let mut st = s
            .conn
            .prepare("SELECT seq FROM clock ORDER BY seq")
            .expect("prepare");
        let rows = st.query_map([], |r| r.get(0)).expect("query");
        rows.collect::<rusqlite::Result<_>>().expect("rows")
    }

    /// Stores records `seqs` logged with an invalid wall clock (ts_ms = seq) `ago_ms` of boot
    /// clock before now.
    fn insert_unset(s: &mut Store, seqs: std::ops::RangeInclusive<u64>, ago_ms: i64) {
        let boot = crate::sys::boottime_ms().expect("CLOCK_BOOTTIME");
        let recs: Vec<NewRecord> = seqs
            .map(|i| NewRecord {
                ts_ms: i as i64,
                boot_ms: Some(boot - ago_ms),
                ..rec(i, &format!("{{\"i\":{i}}}"))
            })
            .collect();
        s.insert(&recs, false)
            .map_err(|e| format!("{e:?}"))
            .expect("insert");
    }

    fn marks(s: &mut Store) -> Vec<(u64, i64, crate::clock::ClockMark)> {
        s.fetch(None, 100, u64::MAX, |_| 0)
            .expect("fetch")
            .iter()
            .map(|r| (r.seq, r.ts_ms, r.clock))
            .collect()
    }

    #[test]
    fn records_logged_with_an_invalid_clock_are_repaired_in_the_same_boot_only() {
        use crate::clock::ClockMark::{Repaired, Unset, Valid};
        let (_dir, path) = buffer_path();
        let mut s = open(&path);
        s.set_boot_id(Some(BOOT));
        insert(&mut s, 1..=2);
        let before = crate::clock::realtime_ms();
        insert_unset(&mut s, 3..=4, 5_000);
        assert_eq!(
            clock_rows(&s),
            vec![3, 4],
            "only records logged with an invalid clock"
        );
        let got = marks(&mut s);
        let after = crate::clock::realtime_ms();
        assert_eq!(got[0], (1, rec(1, "").ts_ms, Valid));
        assert_eq!(got[1].2, Valid);
        for &(seq, ts, mark) in &got[2..] {
            assert_eq!(mark, Repaired, "{seq}");
            // Logged 5 s of boot clock ago: the wall clock of then, within the read's time.
            assert!(
                (before - 5_000 - 50..=after - 5_000 + 50).contains(&ts),
                "{seq}: {ts} not 5 s before {before}..{after}"
            );
        }
        // Another boot (the file read after a reboot): as logged, unset.
        s.set_boot_id(Some("11111111-2222-3333-4444-555555555555"));
        assert_eq!(&marks(&mut s)[2..], &[(3, 3, Unset), (4, 4, Unset)]);
        // This boot's id unreadable: unset too.
        s.set_boot_id(None);
        assert_eq!(&marks(&mut s)[2..], &[(3, 3, Unset), (4, 4, Unset)]);
        drop(s);
        // The wall clock still not valid when sent: unset.
        let far = (crate::clock::realtime_ms() + 3_600_000).to_string();
        let cfg = super::super::testing::config(&path, &[("clock.valid_after_unix_ms", &far)]);
        let (mut s, _) = Store::open(&cfg).expect("open");
        s.set_boot_id(Some(BOOT));
        assert_eq!(&marks(&mut s)[2..], &[(3, 3, Unset), (4, 4, Unset)]);
    }

    #[test]
    fn hostile_clock_rows_send_the_record_unset_never_raw() {
        use crate::clock::ClockMark::Unset;
        let (_dir, path) = buffer_path();
        {
            let mut s = open(&path);
            s.set_boot_id(Some(BOOT));
            insert_unset(&mut s, 1..=6, 1_000);
        }
        raw(&path)
            .execute_batch(&format!(
                "UPDATE clock SET boot_id = '\u{1b}[31m\"evil' WHERE seq = 1;
                 UPDATE clock SET boot_id = x'ff00ff' WHERE seq = 2;
                 UPDATE clock SET boot_ms = 1, boot_id = '{BOOT}' || zeroblob(100000) WHERE seq = 6;
                 UPDATE clock SET boot_ms = 'soon', boot_id = '{BOOT}' WHERE seq = 3;
                 UPDATE clock SET boot_ms = -9223372036854775808, boot_id = '{BOOT}' WHERE seq = 4;
                 UPDATE clock SET boot_ms = 9223372036854775807, boot_id = '{BOOT}' WHERE seq = 5;"
            ))
            .expect("tamper");
        let mut s = open(&path);
        s.set_boot_id(Some(BOOT));
        assert_eq!(
            marks(&mut s),
            (1..=6).map(|i| (i, i as i64, Unset)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn boot_clocks_go_with_their_records() {
        let (_dir, path) = buffer_path();
        let mut s = open(&path);
        insert_unset(&mut s, 1..=20, 0);
        insert(&mut s, 21..=22);
        assert!(s.clock_rows);
        // Capacity and TTL (delete), a batch behind pending ones (delete_delivered), dead
        // letters, the delivered watermark and its garbage collection.
        s.delete(&[2, 4]).expect("delete");
        s.delete(&[5, 6, 7]).expect("delete");
        s.delete_delivered(9, 10, 2, 16).expect("delivered");
        s.dead_letter(&[11], 400, "bad").expect("dead letter");
        assert_eq!(
            clock_rows(&s),
            vec![1, 3, 8, 12, 13, 14, 15, 16, 17, 18, 19, 20]
        );
        s.settle_delivered(1, 3, 2, 14, None).expect("settle");
        assert_eq!(
            clock_rows(&s)[0],
            1,
            "garbage keeps its row until collected"
        );
        s.collect_garbage(100).expect("gc");
        assert_eq!(clock_rows(&s), vec![8, 12, 13, 14, 15, 16, 17, 18, 19, 20]);
        s.delete_delivered(8, 20, 10, 80).expect("delivered");
        assert!(clock_rows(&s).is_empty());
        assert!(
            !s.clock_rows,
            "no rows left: batches are read without the join"
        );
        assert_eq!(pending_seqs(&mut s), vec![21, 22]);
        drop(s);
        let s = open(&path);
        assert!(!s.clock_rows);
    }

    #[test]
    fn the_largest_record_is_records_max_bytes_upper_bound() {
        let mut cfg = crate::config::Config::new();
        assert!(cfg
            .set("record.max_bytes", &LARGEST_RECORD.to_string())
            .is_ok());
        assert!(cfg
            .set("record.max_bytes", &(LARGEST_RECORD + 1).to_string())
            .is_err());
    }
}
