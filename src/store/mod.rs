//! The SQLite buffer file: schema, lock, queue of pending records, dead letters, capacity and
//! damage handling. One `Store` is one open buffer; it is used by one thread at a time (the
//! buffer keeps it behind a mutex that is never held across network I/O).
//!
//! - `open`: opening, the locks, damage (quarantine) and what is provably ours.
//! - `schema`: the schema, hardening, the exact schema check.
//! - `records`: storing, reading and acknowledging pending records (the delivered
//!   watermark), and the capacity policy's and TTL's deletions, which spare the records in
//!   flight and read ahead.
//! - `dead`: dead letters and `edgebuf requeue`.
//! - `space`: free space, incremental vacuum, file sizes, `edgebuf compact`.
//! - [`inspect`]: the read-only reader the `edgebuf` tool uses.
//!
//! Outside the crate only what the `edgebuf` tool needs is public: [`Store::open`], its
//! counts, `requeue_dead_letters` and `compact`, [`file_set_size`], and [`inspect`].

mod budget;
mod dead;
pub mod inspect;
mod open;
mod records;
mod schema;
mod space;

pub use dead::Requeued;
use open::Locks;
pub use space::file_set_size;

/// The largest record edgebuf accepts (the upper bound of `record.max_bytes`): a row of the
/// file with more data than this was not written by edgebuf, and is never loaded.
const LARGEST_RECORD: u64 = 64 << 20;

use crate::error::Error;
use rusqlite::{Connection, ErrorCode};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A record on its way into the file.
#[derive(Debug, Clone)]
pub(crate) struct NewRecord {
    pub seq: u64,
    pub ts_ms: i64,
    /// Milliseconds since the buffer was opened (monotonic clock) when the record was accepted.
    pub t_acc_ms: u64,
    /// The instance for records accepted while storage was degraded; None = the file's.
    pub inst: Option<String>,
    pub data: Vec<u8>,
    /// The boot clock (CLOCK_BOOTTIME, ms; -1 unreadable) at edgebuf_log when the wall clock
    /// was not valid then; None for a valid clock (src/clock.rs).
    pub boot_ms: Option<i64>,
}

/// A pending record read back from the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredRecord {
    pub seq: u64,
    /// As logged, or repaired when read (see `clock`).
    pub ts_ms: i64,
    pub inst: Option<String>,
    pub data: Vec<u8>,
    /// Whether `ts_ms` came from a valid wall clock (src/clock.rs).
    pub clock: crate::clock::ClockMark,
    /// A record delivered from memory (storage degraded) that was logged with an invalid
    /// clock: its `ts_ms` as logged and its boot clock, to give it back unchanged. None for
    /// records read from the file, which keeps them.
    pub logged_clock: Option<(i64, i64)>,
}

/// What an insert failure means for the caller.
#[derive(Debug)]
pub(crate) enum WriteError {
    /// SQLITE_FULL, or the file may not grow (disk.min_free_bytes).
    Full,
    /// Any other failure of the disk.
    Storage(Error),
}

/// What `open` found.
#[derive(Debug, Default, Clone)]
pub struct OpenReport {
    /// Where a damaged file was moved, and how many records it is known to have held.
    pub quarantined: Option<(PathBuf, u64)>,
}

/// An open buffer file.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    _lock: Locks,
    instance: String,
    /// Records with a smaller seq were stored by an earlier run: their age counts from open.
    run_first_seq: u64,
    hwm: u64,
    /// Delivered watermark: records with a seq up to this one were delivered and are only
    /// waiting to be reclaimed (`collect_garbage`); nothing reads them as pending.
    wm: u64,
    /// Delivered records not reclaimed yet (and their payload bytes, approximately).
    pub(crate) garbage_records: u64,
    pub(crate) garbage_bytes: u64,
    /// Pending records and payload bytes (above the delivered watermark).
    pub(crate) disk_records: u64,
    pub(crate) disk_bytes: u64,
    pub(crate) dead_records: u64,
    pub(crate) dead_bytes: u64,
    dead_max: u64,
    min_free: u64,
    growth_limited: bool,
    last_space_check: Option<Instant>,
    /// The seq range of the request in flight; the capacity policy and TTL never touch it.
    inflight: Option<(u64, u64)>,
    /// The seq range of the next batch, read while the current one is in flight; protected
    /// like `inflight` until the worker sends it or lets it go.
    prefetched: Option<(u64, u64)>,
    synchronous_full: bool,
    /// The bound of a valid wall clock and this boot's id, read at open (src/clock.rs).
    boot: crate::clock::BootClock,
    /// The `clock` table may hold rows: a batch is read joined with it (otherwise not, so
    /// that records logged with a valid clock cost nothing more).
    clock_rows: bool,
    /// The byte budget's state to write with the next transaction of the worker (`budget.rs`).
    budget_note: Option<(i64, u64)>,
}

/// SQLite's word for a damaged file (or not a database at all).
fn is_damage(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
    )
}

fn storage_err(what: &str, path: &Path, e: impl std::fmt::Display) -> Error {
    Error::storage(format!("{what} {}: {e}", path.display()))
}

fn sql_err(what: &str, e: rusqlite::Error) -> WriteError {
    if e.sqlite_error_code() == Some(ErrorCode::DiskFull) {
        WriteError::Full
    } else {
        WriteError::Storage(Error::storage(format!("{what}: {}", describe(&e))))
    }
}

fn sql_storage(what: &str, e: rusqlite::Error) -> Error {
    Error::storage(format!("{what}: {}", describe(&e)))
}

/// SQLite's message, with what its extended code says about the disk: "disk I/O error" alone
/// does not tell a user where to look.
fn describe(e: &rusqlite::Error) -> String {
    let why = match e.sqlite_error().map(|f| f.extended_code) {
        Some(778) => {
            "a write to the buffer file failed: the file system may be full, read-only \
             or failing, or the process may be over its file-size limit"
        }
        Some(1034) => "fsync of the buffer file failed: the disk may be failing",
        Some(266 | 522) => "a read of the buffer file failed: the disk may be failing",
        Some(1546) => "truncating the buffer file failed",
        Some(4874 | 5130 | 6410) => {
            "the -shm file beside the buffer file cannot be grown or mapped"
        }
        _ => return e.to_string(),
    };
    format!("{e} ({why})")
}

/// What to do about a failed file operation in the directory of the buffer file.
fn io_hint(e: &std::io::Error) -> &'static str {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ReadOnlyFilesystem => {
            "; the file system is read-only: set path to a file on a writable local file system"
        }
        K::PermissionDenied => {
            "; edgebuf creates the buffer file and its -wal, -shm and .lock files in that \
             directory: make it writable for this process"
        }
        K::StorageFull | K::QuotaExceeded => "; the file system is full: free space on it",
        K::IsADirectory => "; a directory is in the way: remove it",
        _ => "",
    }
}

impl Store {
    /// The buffer's instance id (16 hex digits).
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The canonical path of the file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The next seq to hand out.
    pub(crate) fn next_seq(&self) -> u64 {
        self.hwm + 1
    }

    /// Marks which seqs were stored by this run (for ages and TTL).
    pub(crate) fn set_run_first_seq(&mut self, seq: u64) {
        self.run_first_seq = seq;
    }

    /// The bound of a valid wall clock and this boot's id, as read at open.
    pub(crate) fn boot_clock(&self) -> &crate::clock::BootClock {
        &self.boot
    }

    /// Tests: records read from now on are repaired as in a boot with this id.
    #[cfg(test)]
    pub(crate) fn set_boot_id(&mut self, id: Option<&str>) {
        self.boot.boot_id = id.map(str::to_owned);
    }

    /// Pending records in the file (above the delivered watermark).
    pub fn pending_records(&self) -> u64 {
        self.disk_records
    }

    /// Dead letters in the file.
    pub fn dead_letter_records(&self) -> u64 {
        self.dead_records
    }
}

/// What the tests of the store's files share: buffers in a temp dir, records, raw access.
#[cfg(test)]
pub(crate) mod testing {
    use super::{NewRecord, Store};
    use crate::config::Config;
    use std::path::{Path, PathBuf};

    /// A temp dir and the path of a buffer file in it.
    pub fn buffer_path() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("buf.db");
        (dir, path)
    }

    /// A configuration for `path`, with `extra` keys set; no free-space floor (the test
    /// machine's disk may be nearly full).
    pub fn config(path: &Path, extra: &[(&str, &str)]) -> Config {
        let mut cfg = Config::new();
        cfg.set("path", path.to_str().expect("UTF-8 temp path"))
            .expect("path");
        cfg.set("disk.min_free_bytes", "0").expect("min free");
        for (k, v) in extra {
            cfg.set(k, v).expect("test key");
        }
        cfg
    }

    pub fn open(path: &Path) -> Store {
        Store::open(&config(path, &[])).expect("open").0
    }

    /// The record `seq` with `data`, accepted now.
    pub fn rec(seq: u64, data: &str) -> NewRecord {
        NewRecord {
            seq,
            ts_ms: 1_764_320_000_000 + seq as i64,
            t_acc_ms: 0,
            inst: None,
            data: data.as_bytes().to_vec(),
            boot_ms: None,
        }
    }

    /// Stores records `seqs` with data `{"i":SEQ}`.
    pub fn insert(s: &mut Store, seqs: std::ops::RangeInclusive<u64>) {
        let recs: Vec<NewRecord> = seqs.map(|i| rec(i, &format!("{{\"i\":{i}}}"))).collect();
        s.insert(&recs, false)
            .map_err(|e| format!("{e:?}"))
            .expect("insert");
    }

    /// Stores records `1..=n` whose data is a JSON string of `len` bytes.
    pub fn insert_strings(s: &mut Store, n: u64, len: usize) {
        let data = format!("\"{}\"", "x".repeat(len - 2));
        let recs: Vec<NewRecord> = (1..=n).map(|i| rec(i, &data)).collect();
        s.insert(&recs, false)
            .map_err(|e| format!("{e:?}"))
            .expect("insert");
    }

    /// A plain connection to a closed buffer file, for writing what edgebuf never writes.
    pub fn raw(path: &Path) -> rusqlite::Connection {
        rusqlite::Connection::open(path).expect("raw open")
    }

    /// The seqs of all pending records.
    pub fn pending_seqs(s: &mut Store) -> Vec<u64> {
        s.fetch(None, 1_000_000, u64::MAX, |_| 0)
            .expect("fetch")
            .iter()
            .map(|r| r.seq)
            .collect()
    }
}
