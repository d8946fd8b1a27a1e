//! Dead letters: records the endpoint rejected on their own, kept apart (bounded by
//! `dead_letter.max_records`), and moved back by `edgebuf requeue`.

use super::{sql_storage, Store};
use crate::clock::realtime_ms;
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
        let now = realtime_ms();
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
                // A dead letter keeps its ts_ms as logged; its boot clock goes.
                if self.clock_rows {
                    super::records::delete_clock_rows(&tx, s, s)
                        .map_err(|e| sql_storage("cannot store a dead letter", e))?;
                }
            }
        }
        tx.commit()
            .map_err(|e| sql_storage("cannot commit dead letters", e))?;
        self.recheck_clock_rows();
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
            super::records::raise_hwm(&tx, max_seq as u64)
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
        super::records::raise_hwm(&tx, last)
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

#[cfg(test)]
mod tests {
    use super::super::testing::{buffer_path, config, insert, open, pending_seqs, raw};
    use super::*;

    fn dead_rows(path: &std::path::Path) -> Vec<(i64, i64, String)> {
        let c = raw(path);
        let mut st = c
            .prepare("SELECT seq, status, inst FROM dead_letters ORDER BY id")
            .expect("prepare");
        let rows = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("query");
        rows.collect::<rusqlite::Result<_>>().expect("rows")
    }

    #[test]
    fn dead_letters_are_moved_kept_and_trimmed() {
        let (_dir, path) = buffer_path();
        let cfg = config(&path, &[("dead_letter.max_records", "3")]);
        let instance = {
            let (mut s, _) = Store::open(&cfg).expect("open");
            insert(&mut s, 1..=10);
            assert_eq!(s.dead_letter(&[2, 4], 400, "bad").expect("dead"), (2, 14));
            assert_eq!(s.dead_letter(&[42], 400, "gone").expect("none"), (0, 0));
            assert_eq!((s.disk_records, s.dead_records, s.dead_bytes), (8, 2, 14));
            assert_eq!(s.dead_letter(&[6, 8], 422, "worse").expect("dead"), (2, 14));
            // Past dead_letter.max_records the oldest go.
            assert_eq!(s.dead_letter_records(), 3);
            assert_eq!(pending_seqs(&mut s), vec![1, 3, 5, 7, 9, 10]);
            s.instance().to_string()
        };
        let rows = dead_rows(&path);
        assert_eq!(
            rows,
            vec![
                (4, 400, instance.clone()),
                (6, 422, instance.clone()),
                (8, 422, instance)
            ]
        );
        let (s, _) = Store::open(&cfg).expect("reopen");
        assert_eq!((s.dead_records, s.dead_bytes), (3, 21));
        assert_eq!(s.next_seq(), 11);
    }

    #[test]
    fn make_room_takes_dead_letters_first() {
        let (_dir, path) = buffer_path();
        let mut s = open(&path);
        insert(&mut s, 1..=5);
        s.dead_letter(&[1, 2], 400, "bad").expect("dead");
        assert_eq!(
            s.make_room(7, 0).expect("room"),
            (0, 0),
            "a dead letter freed it"
        );
        assert_eq!(s.dead_records, 1);
        assert_eq!(
            s.make_room(10, 0).expect("room").0,
            1,
            "then pending records"
        );
        assert_eq!(s.dead_records, 0);
        assert_eq!(pending_seqs(&mut s), vec![4, 5]);
    }

    #[test]
    fn requeue_moves_dead_letters_behind_everything_with_new_seqs() {
        let (_dir, path) = buffer_path();
        {
            let mut s = open(&path);
            insert(&mut s, 1..=6);
            s.dead_letter(&[2], 400, "bad").expect("dead");
            s.dead_letter(&[3], 422, "bad").expect("dead");
            s.dead_letter(&[5], 400, "bad").expect("dead");
            assert_eq!(
                s.requeue_dead_letters(&[503]).expect("none"),
                Requeued::default()
            );
            let r = s.requeue_dead_letters(&[400]).expect("requeue");
            assert_eq!(
                r,
                Requeued {
                    records: 2,
                    bytes: 14,
                    old_seqs: (2, 5),
                    new_seqs: (7, 8)
                }
            );
            assert_eq!((s.dead_letter_records(), s.pending_records()), (1, 5));
            assert_eq!(s.next_seq(), 9);
        }
        let mut s = open(&path);
        let got = s.fetch(None, 10, u64::MAX, |_| 0).expect("fetch");
        let seqs: Vec<u64> = got.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, vec![1, 4, 6, 7, 8]);
        // The data and ts_ms are kept; the instance is the file's.
        assert_eq!(got[3].data, b"{\"i\":2}");
        assert_eq!(got[4].data, b"{\"i\":5}");
        assert_eq!(got[4].ts_ms, super::super::testing::rec(5, "").ts_ms);
        assert_eq!(got[3].inst, None);
        let r = s.requeue_dead_letters(&[]).expect("all");
        assert_eq!((r.records, r.new_seqs), (1, (9, 9)));
        assert_eq!(s.dead_letter_records(), 0);
    }
}
