//! Dead letters: records the endpoint rejected on their own, kept apart (bounded by
//! `dead_letter.max_records`), and moved back by `edgebuf requeue`.

use super::{sql_storage, unix_ms, Store};
use crate::error::Result;
use rusqlite::{params, OptionalExtension};

impl Store {
    /// Moves records to the dead letters with the status and reason; trims the oldest dead
    /// letters past `dead_letter.max_records`. Returns (moved, moved bytes).
    pub(crate) fn dead_letter(
        &mut self,
        seqs: &[u64],
        status: i32,
        reason: &str,
    ) -> Result<(u64, u64)> {
        let now = unix_ms();
        let instance = self.instance.clone();
        let tx = self
            .conn
            .transaction()
            .map_err(|e| sql_storage("cannot begin a transaction", e))?;
        let (mut n, mut bytes) = (0u64, 0u64);
        {
            let mut mv = tx
                .prepare_cached(
                    "INSERT INTO dead_letters(seq, ts_ms, inst, status, reason, dead_unix_ms, data)
                     SELECT seq, ts_ms, coalesce(inst, ?2), ?3, ?4, ?5, data FROM records WHERE seq=?1",
                )
                .map_err(|e| sql_storage("cannot prepare dead letter", e))?;
            let mut del = tx
                .prepare_cached("DELETE FROM records WHERE seq=?1 RETURNING length(data)")
                .map_err(|e| sql_storage("cannot prepare delete", e))?;
            for &s in seqs {
                mv.execute(params![s as i64, instance, status, reason, now])
                    .map_err(|e| sql_storage("cannot store a dead letter", e))?;
                let len: Option<i64> = del
                    .query_row(params![s as i64], |r| r.get(0))
                    .optional()
                    .map_err(|e| sql_storage("cannot store a dead letter", e))?;
                if let Some(len) = len {
                    n += 1;
                    bytes += len as u64;
                }
            }
        }
        tx.commit()
            .map_err(|e| sql_storage("cannot commit dead letters", e))?;
        self.disk_records -= n.min(self.disk_records);
        self.disk_bytes -= bytes.min(self.disk_bytes);
        self.dead_records += n;
        self.dead_bytes += bytes;
        if self.dead_records > self.dead_max {
            let excess = self.dead_records - self.dead_max;
            self.trim_dead(excess, u64::MAX)?;
        }
        Ok((n, bytes))
    }

    /// Removes the oldest dead letters: at most `max_n`, stopping once `want_bytes` are freed.
    pub(super) fn trim_dead(&mut self, max_n: u64, want_bytes: u64) -> Result<(u64, u64)> {
        let victims: Vec<(i64, i64)> = {
            let mut st = self
                .conn
                .prepare_cached("SELECT id, length(data) FROM dead_letters ORDER BY id LIMIT ?1")
                .map_err(|e| sql_storage("cannot read dead letters", e))?;
            let rows = st
                .query_map(params![max_n.min(i64::MAX as u64) as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .map_err(|e| sql_storage("cannot read dead letters", e))?;
            let mut v = Vec::new();
            let mut freed = 0u64;
            for row in rows {
                let (id, len) = row.map_err(|e| sql_storage("cannot read dead letters", e))?;
                if freed >= want_bytes {
                    break;
                }
                freed += len as u64;
                v.push((id, len));
            }
            v
        };
        if victims.is_empty() {
            return Ok((0, 0));
        }
        let tx = self
            .conn
            .transaction()
            .map_err(|e| sql_storage("cannot begin a transaction", e))?;
        {
            let mut del = tx
                .prepare_cached("DELETE FROM dead_letters WHERE id=?1 RETURNING seq")
                .map_err(|e| sql_storage("cannot trim dead letters", e))?;
            let mut max_seq = 0i64;
            for (id, _) in &victims {
                let seq: i64 = del
                    .query_row(params![id], |r| r.get(0))
                    .map_err(|e| sql_storage("cannot trim dead letters", e))?;
                max_seq = max_seq.max(seq);
            }
            tx.prepare_cached("UPDATE meta SET value=max(value, ?1) WHERE key='hwm'")
                .and_then(|mut s| s.execute(params![max_seq]))
                .map_err(|e| sql_storage("cannot store the seq high-water mark", e))?;
        }
        tx.commit()
            .map_err(|e| sql_storage("cannot trim dead letters", e))?;
        let n = victims.len() as u64;
        let bytes: u64 = victims.iter().map(|v| v.1 as u64).sum();
        self.dead_records -= n.min(self.dead_records);
        self.dead_bytes -= bytes.min(self.dead_bytes);
        Ok((n, bytes))
    }

    /// Moves dead letters back to the pending records, oldest first (`edgebuf requeue`); with
    /// `statuses` not empty, only those rejected with one of these HTTP statuses.
    ///
    /// Each record gets a new seq above the high-water mark, so its id is new and it is sent
    /// after everything already pending: seqs are never reused, delivery stays in seq order,
    /// and a record under the delivered watermark would count as delivered. The receiver
    /// never accepted a dead letter (it answered 4xx to it alone), so nothing can duplicate.
    /// One transaction: all of them move, or none.
    pub fn requeue_dead_letters(&mut self, statuses: &[i32]) -> Result<Requeued> {
        let filter = serde_json::to_string(statuses).expect("integers serialise");
        let base = self.hwm.max(self.wm);
        let tx = self
            .conn
            .transaction()
            .map_err(|e| sql_storage("cannot begin a transaction", e))?;
        let sel = "(?1 = '[]' OR status IN (SELECT value FROM json_each(?1)))";
        let (n, bytes, first_old, last_old): (i64, f64, Option<i64>, Option<i64>) = tx
            .query_row(
                &format!(
                    "SELECT count(*), total(length(data)), min(seq), max(seq) FROM dead_letters WHERE {sel}"
                ),
                [&filter],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .map_err(|e| sql_storage("cannot read dead letters", e))?;
        let n = n as u64;
        if n == 0 {
            return Ok(Requeued::default());
        }
        // t_acc 0: like every record of an earlier run, it ages from the next open.
        tx.execute(
            &format!(
                "INSERT INTO records(seq, ts_ms, t_acc, inst, data)
                 SELECT ?2 + row_number() OVER (ORDER BY seq, id), ts_ms, 0, NULL, data
                 FROM dead_letters WHERE {sel} ORDER BY seq, id"
            ),
            params![filter, base as i64],
        )
        .map_err(|e| sql_storage("cannot requeue dead letters", e))?;
        tx.execute(&format!("DELETE FROM dead_letters WHERE {sel}"), [&filter])
            .map_err(|e| sql_storage("cannot requeue dead letters", e))?;
        let last = base + n;
        tx.execute(
            "UPDATE meta SET value=max(value, ?1) WHERE key='hwm'",
            params![last as i64],
        )
        .map_err(|e| sql_storage("cannot store the seq high-water mark", e))?;
        tx.commit()
            .map_err(|e| sql_storage("cannot commit the requeued dead letters", e))?;
        let bytes = bytes as u64;
        self.hwm = last;
        self.disk_records += n;
        self.disk_bytes += bytes;
        self.dead_records -= n.min(self.dead_records);
        self.dead_bytes -= bytes.min(self.dead_bytes);
        Ok(Requeued {
            records: n,
            bytes,
            old_seqs: (first_old.unwrap_or(0) as u64, last_old.unwrap_or(0) as u64),
            new_seqs: (base + 1, last),
        })
    }
}

/// What [`Store::requeue_dead_letters`] moved.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Requeued {
    pub records: u64,
    /// Their payload bytes.
    pub bytes: u64,
    /// The lowest and highest seq they had as dead letters.
    pub old_seqs: (u64, u64),
    /// The seqs they have now, in the same order (`new_seqs.0 ..= new_seqs.1`).
    pub new_seqs: (u64, u64),
}
