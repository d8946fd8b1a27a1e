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
