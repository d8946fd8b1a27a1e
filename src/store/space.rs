//! Space: the free-space guard (`disk.min_free_bytes`), returning free pages to the file
//! system (incremental vacuum, `edgebuf compact`), and the size of a buffer's file set.

use super::{sql_storage, Store};
use crate::error::Result;
use std::path::Path;
use std::time::{Duration, Instant};

/// Largest `max_page_count` (no growth limit).
const NO_PAGE_LIMIT: i64 = 0xFFFF_FFFE;

impl Store {
    /// Checks free space at most once a second; below `disk.min_free_bytes` the file may only
    /// reuse its free pages (SQLite answers SQLITE_FULL when it would grow).
    pub(super) fn check_space(&mut self) {
        if self
            .last_space_check
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        self.last_space_check = Some(Instant::now());
        let low = match crate::sys::fs_space(&self.path) {
            Ok((free, _)) => free < self.min_free,
            Err(_) => false,
        };
        if low == self.growth_limited {
            return;
        }
        let limit = if low {
            self.conn
                .query_row("PRAGMA page_count", [], |r| r.get::<_, i64>(0))
                .unwrap_or(NO_PAGE_LIMIT)
        } else {
            NO_PAGE_LIMIT
        };
        if self
            .conn
            .query_row(&format!("PRAGMA max_page_count={limit}"), [], |_| Ok(()))
            .is_ok()
        {
            self.growth_limited = low;
        }
    }

    /// Forces the next commit's space check (tests, and after a SQLITE_FULL).
    pub(crate) fn recheck_space_soon(&mut self) {
        self.last_space_check = None;
    }

    /// Gives free pages back to the file system when many are free.
    pub(crate) fn maintain(&mut self) {
        let free: i64 = self
            .conn
            .query_row("PRAGMA freelist_count", [], |r| r.get(0))
            .unwrap_or(0);
        let pages: i64 = self
            .conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap_or(0);
        if free > 256 && free * 4 > pages {
            let _ = self.incremental_vacuum();
        }
    }

    /// Gives every free page back to the file system. The pragma frees one page per step:
    /// it is stepped to the end (execute_batch would run a single step and free 4 KiB).
    pub(super) fn incremental_vacuum(&self) -> rusqlite::Result<()> {
        let mut st = self.conn.prepare("PRAGMA incremental_vacuum")?;
        let mut rows = st.query([])?;
        while rows.next()?.is_some() {}
        Ok(())
    }

    /// Gives the file's free space back to the file system (`edgebuf compact`): deletes the
    /// delivered rows still waiting under the watermark, returns every free page
    /// (incremental vacuum) or, with `full`, rebuilds the file (VACUUM: also defragments, and
    /// needs free space about the size of the file), then truncates the `-wal`.
    pub fn compact(&mut self, full: bool) -> Result<()> {
        self.collect_garbage(u64::MAX)?;
        if full {
            self.conn
                .execute_batch("VACUUM")
                .map_err(|e| sql_storage("cannot vacuum the buffer file", e))?;
        } else {
            self.incremental_vacuum()
                .map_err(|e| sql_storage("cannot vacuum the buffer file", e))?;
        }
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(|e| sql_storage("cannot checkpoint the buffer file", e))?;
        Ok(())
    }
}

/// st_size of a buffer file with its `-wal` and `-shm`.
pub fn file_set_size(path: &Path) -> u64 {
    super::inspect::file_sizes(path).iter().sum()
}

#[cfg(test)]
mod tests {
    use super::super::testing::{buffer_path, insert, insert_strings, open, pending_seqs};
    use super::*;

    #[test]
    fn file_set_size_counts_the_file_its_wal_and_its_shm() {
        let (_dir, path) = buffer_path();
        assert_eq!(file_set_size(&path), 0);
        let mut s = open(&path);
        insert(&mut s, 1..=10);
        let [db, wal, shm] = super::super::inspect::file_sizes(&path);
        assert!(db > 0 && wal > 0 && shm > 0, "{db} {wal} {shm}");
        assert_eq!(file_set_size(&path), db + wal + shm);
    }

    #[test]
    fn compact_gives_the_space_of_delivered_records_back() {
        let (_dir, path) = buffer_path();
        let mut s = open(&path);
        insert_strings(&mut s, 500, 4002);
        assert_eq!((s.disk_records, s.disk_bytes), (500, 500 * 4002));
        s.compact(false).expect("compact");
        let full = file_set_size(&path);
        assert!(full > 500 * 4002, "{full}");
        // Delivered in one batch: under the watermark, waiting for the collector.
        assert_eq!(
            s.settle_delivered(1, 490, 490, 490 * 4002, None)
                .expect("settle")
                .0,
            490
        );
        assert_eq!((s.disk_records, s.disk_bytes), (10, 10 * 4002));
        assert_eq!((s.garbage_records, s.garbage_bytes), (490, 490 * 4002));
        s.compact(false).expect("compact");
        assert_eq!((s.garbage_records, s.garbage_bytes), (0, 0));
        let small = file_set_size(&path);
        assert!(small < full / 4, "{small} of {full}");
        assert_eq!(pending_seqs(&mut s), (491..=500).collect::<Vec<_>>());
        s.compact(true).expect("vacuum");
        assert!(file_set_size(&path) <= small);
        assert_eq!(s.pending_records(), 10);
    }

    #[test]
    fn maintain_returns_free_pages_once_many_are_free() {
        let (_dir, path) = buffer_path();
        let mut s = open(&path);
        insert_strings(&mut s, 600, 4002);
        let pages = |s: &Store| -> (i64, i64) {
            let q = |sql| s.conn.query_row(sql, [], |r| r.get(0)).expect("pragma");
            (q("PRAGMA freelist_count"), q("PRAGMA page_count"))
        };
        let seqs: Vec<u64> = (1..=550).collect();
        s.delete(&seqs).expect("delete");
        let (free, total) = pages(&s);
        assert!(free > 256 && free * 4 > total, "{free} of {total}");
        s.maintain();
        let (free_after, total_after) = pages(&s);
        assert_eq!(free_after, 0);
        assert!(total_after < total);
        assert_eq!(s.disk_records, 50);
    }

    #[test]
    fn the_space_check_runs_at_most_once_a_second() {
        let (_dir, path) = buffer_path();
        let mut s = open(&path);
        s.check_space();
        let first = s.last_space_check;
        assert!(first.is_some());
        s.check_space();
        assert_eq!(s.last_space_check, first);
        s.recheck_space_soon();
        s.check_space();
        assert!(s.last_space_check > first);
        assert!(!s.growth_limited, "no floor in the tests");
    }
}
