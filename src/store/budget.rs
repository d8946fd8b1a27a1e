//! The byte budget's period and use (src/delivery/budget.rs), kept in the `meta` table so that
//! a restart does not reset them: `budget_start` (the period's start, unix ms) and
//! `budget_used` (body bytes sent in it). The worker notes the state after each attempt; the
//! note goes out with the next settling transaction (`settle_delivered`, `delete_delivered`),
//! or on its own (`save_budget`) after an attempt that settles nothing.

use super::{sql_storage, Store};
use crate::error::Result;
use rusqlite::{params, OptionalExtension, Transaction};

const UPSERT: &str =
    "INSERT INTO meta(key, value) VALUES('budget_start', ?1), ('budget_used', ?2) \
                      ON CONFLICT(key) DO UPDATE SET value=excluded.value";

impl Store {
    /// The stored (period start in unix ms, bytes used), if a budget was ever metered in this
    /// file; a damaged row reads as none (a new period starts).
    pub(crate) fn budget_state(&self) -> Option<(i64, u64)> {
        let get = |key: &str| -> Option<i64> {
            self.conn
                .query_row("SELECT value FROM meta WHERE key=?1", [key], |r| {
                    r.get::<_, Option<i64>>(0)
                })
                .optional()
                .ok()
                .flatten()
                .flatten()
        };
        let start = get("budget_start")?;
        let used = get("budget_used")?;
        Some((start, u64::try_from(used).ok()?))
    }

    /// The budget state to write with the next transaction of the worker.
    pub(crate) fn note_budget(&mut self, start_ms: i64, used: u64) {
        self.budget_note = Some((start_ms, used));
    }

    /// Writes the noted budget state now, if it is not written yet (one small transaction).
    pub(crate) fn save_budget(&mut self) -> Result<()> {
        let Some(note) = self.budget_note else {
            return Ok(());
        };
        let tx = self
            .conn
            .transaction()
            .map_err(|e| sql_storage("cannot begin a transaction", e))?;
        write(&tx, note)?;
        tx.commit()
            .map_err(|e| sql_storage("cannot commit the budget's use", e))?;
        self.budget_note = None;
        Ok(())
    }

    /// The settling transaction that [`write_note`] wrote the note into committed.
    pub(super) fn budget_written(&mut self) {
        self.budget_note = None;
    }
}

/// Writes the noted budget state, if any, inside `tx` (a settling transaction); the note is
/// cleared by [`Store::budget_written`] once `tx` commits.
pub(super) fn write_note(tx: &Transaction, note: Option<(i64, u64)>) -> Result<()> {
    match note {
        Some(note) => write(tx, note),
        None => Ok(()),
    }
}

fn write(tx: &Transaction, (start, used): (i64, u64)) -> Result<()> {
    tx.prepare_cached(UPSERT)
        .and_then(|mut st| st.execute(params![start, used.min(i64::MAX as u64) as i64]))
        .map_err(|e| sql_storage("cannot store the budget's use", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::store::Store;

    #[test]
    fn the_budget_state_survives_reopening_and_rides_on_settling() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config::new();
        cfg.set("path", dir.path().join("b.db").to_str().unwrap())
            .unwrap();
        cfg.set("endpoint", "http://127.0.0.1:9/x").unwrap();
        {
            let (mut s, _) = Store::open(&cfg).unwrap();
            assert_eq!(s.budget_state(), None);
            s.note_budget(1_700_000_000_000, 1234);
            s.save_budget().unwrap();
            assert_eq!(s.budget_state(), Some((1_700_000_000_000, 1234)));
            s.note_budget(1_700_000_000_000, 5678);
            // Written by the settling transaction (nothing to settle here, but it commits).
            s.delete_delivered(1, 1, 0, 0).unwrap();
            assert!(s.budget_note.is_none());
        }
        let (s, _) = Store::open(&cfg).unwrap();
        assert_eq!(s.budget_state(), Some((1_700_000_000_000, 5678)));
    }
}
