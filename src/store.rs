//! The SQLite buffer file: schema, lock, queue of pending records, dead letters, capacity and
//! damage handling. One `Store` is one open buffer; it is used by one thread at a time (the
//! buffer keeps it behind a mutex that is never held across network I/O).

use crate::config::{Config, OnCorrupt};
use crate::error::{Code, Error, Result};
use rusqlite::config::DbConfig;
use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// SQLite `application_id` of an edgebuf file ("edgb").
pub const APPLICATION_ID: i32 = 0x6564_6762;
/// Schema version kept in `user_version`.
pub const SCHEMA_VERSION: i32 = 1;
/// The WAL is truncated back to this after a checkpoint.
const WAL_LIMIT_BYTES: i64 = 4 * 1024 * 1024;
/// Largest `max_page_count` (no growth limit).
const NO_PAGE_LIMIT: i64 = 0xFFFF_FFFE;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS records(
    seq   INTEGER PRIMARY KEY,
    ts_ms INTEGER NOT NULL,
    t_acc INTEGER NOT NULL,
    inst  TEXT,
    data  BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS dead_letters(
    id     INTEGER PRIMARY KEY,
    seq    INTEGER NOT NULL,
    ts_ms  INTEGER NOT NULL,
    inst   TEXT NOT NULL,
    status INTEGER NOT NULL,
    reason TEXT NOT NULL,
    dead_unix_ms INTEGER NOT NULL,
    data   BLOB NOT NULL);
";

/// A record on its way into the file.
#[derive(Debug, Clone)]
pub struct NewRecord {
    pub seq: u64,
    pub ts_ms: i64,
    /// Milliseconds since the buffer was opened (monotonic clock) when the record was accepted.
    pub t_acc_ms: u64,
    /// The instance for records accepted while storage was degraded; None = the file's.
    pub inst: Option<String>,
    pub data: Vec<u8>,
}

/// A pending record read back from the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub seq: u64,
    pub ts_ms: i64,
    pub inst: Option<String>,
    pub data: Vec<u8>,
}

/// What an insert failure means for the caller.
#[derive(Debug)]
pub enum WriteError {
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
    pub garbage_records: u64,
    pub garbage_bytes: u64,
    /// Pending records and payload bytes (above the delivered watermark).
    pub disk_records: u64,
    pub disk_bytes: u64,
    pub dead_records: u64,
    pub dead_bytes: u64,
    dead_max: u64,
    min_free: u64,
    growth_limited: bool,
    last_space_check: Option<Instant>,
    /// The seq range of the request in flight; the capacity policy and TTL never touch it.
    pub inflight: Option<(u64, u64)>,
    /// The seq range of the next batch, read while the current one is in flight; protected
    /// like `inflight` until the worker sends it or lets it go.
    pub prefetched: Option<(u64, u64)>,
    synchronous_full: bool,
}

/// SQLite's word for a damaged file (or not a database at all).
pub fn is_damage(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
    )
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
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

/// The canonical form of a buffer path whose file may not exist yet. A value that cannot name
/// a buffer file (a directory, a file in a directory that does not exist) is INVALID_CONFIG,
/// whose message names the key and never the value (SPEC 1).
pub fn canonical_path(path: &Path) -> Result<PathBuf> {
    let names_dir = || {
        Error::new(
            Code::InvalidConfig,
            "path names a directory; set it to a file (edgebuf creates it), for example \
             DIRECTORY/buffer.db",
        )
    };
    if let Ok(p) = path.canonicalize() {
        if p.is_dir() {
            return Err(names_dir());
        }
        if !p.is_file() {
            return Err(Error::new(
                Code::InvalidConfig,
                "path names a special file (a FIFO, socket or device); set it to a regular file",
            ));
        }
        return Ok(p);
    }
    let name = path.file_name().ok_or_else(names_dir)?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let no_dir = || {
        Error::new(
            Code::InvalidConfig,
            "path names a file in a directory that does not exist; create the directory \
             (edgebuf creates only the file) or set path to a file in an existing directory",
        )
    };
    let dir = parent.canonicalize().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory => no_dir(),
        _ => Error::storage(format!(
            "cannot use the directory {} of the buffer file: {e}{}",
            parent.display(),
            io_hint(&e)
        )),
    })?;
    if !dir.is_dir() {
        return Err(no_dir());
    }
    Ok(dir.join(name))
}

impl Store {
    /// Opens (or creates) the buffer file of `cfg.path`, taking its lock.
    pub fn open(cfg: &Config) -> Result<(Store, OpenReport)> {
        let raw = cfg
            .path
            .as_deref()
            .ok_or_else(|| Error::invalid_config("path is required: set it to the buffer file"))?;
        let path = canonical_path(raw)?;
        let lock = take_lock(&path)?;
        let mut report = OpenReport::default();
        let store = match Store::open_locked(cfg, &path, lock) {
            Ok(s) => s,
            Err((OpenFailure::Damaged(why), lock)) => {
                if !is_ours(&path) {
                    return Err(not_ours(&path, &why));
                }
                if cfg.storage_on_corrupt == OnCorrupt::Fail {
                    return Err(Error::new(
                        Code::Corrupt,
                        format!(
                            "buffer file {} is damaged ({why}); storage.on_corrupt=fail keeps it as it is: \
                             move it away (with its -wal and -shm) to start an empty buffer",
                            path.display()
                        ),
                    ));
                }
                let lost = count_records_best_effort(&path);
                let moved = quarantine(&path)?;
                report.quarantined = Some((moved, lost));
                let mut lock = lock;
                lock.relock_inode(&path)?;
                Store::open_locked(cfg, &path, lock).map_err(|(f, _)| f.into_error(&path))?
            }
            Err((OpenFailure::StrayWal(why), lock)) => {
                let wal = sibling(&path, "-wal");
                if cfg.storage_on_corrupt == OnCorrupt::Fail {
                    return Err(Error::new(
                        Code::Corrupt,
                        format!(
                            "the -wal beside buffer file {} is not its own ({why}); \
                             storage.on_corrupt=fail keeps it as it is: move {} away and open again",
                            path.display(),
                            wal.display()
                        ),
                    ));
                }
                // The file itself is sound: move only the stray -wal (and its -shm) aside and
                // keep every record of the file.
                let moved = quarantine_files(&path, &["-wal", "-shm"])?;
                report.quarantined = Some((sibling(&moved, "-wal"), 0));
                Store::open_locked(cfg, &path, lock).map_err(|(f, _)| f.into_error(&path))?
            }
            Err((f, _)) => return Err(f.into_error(&path)),
        };
        Ok((store, report))
    }

    fn open_locked(
        cfg: &Config,
        path: &Path,
        lock: Locks,
    ) -> std::result::Result<Store, (OpenFailure, Locks)> {
        let had = siblings_present(path);
        match Store::open_inner(cfg, path) {
            Ok(p) => Ok(Store::from_parts(p, lock)),
            Err(f) => {
                // A failed open leaves the files as found (the connection was closed without
                // a checkpoint).
                tidy_siblings(path, had);
                Err((f, lock))
            }
        }
    }

    fn open_inner(cfg: &Config, path: &Path) -> std::result::Result<PartialStore, OpenFailure> {
        // The file exists: `lock_inode` created it (empty, 0600) if it was missing.
        if empty_beside_wal(path) {
            // SQLite deletes the `-wal` of an empty database, committed records and all. An
            // edgebuf file is never empty once it has a `-wal` (its header is written first),
            // so this is damage: quarantine keeps the `-wal`.
            return Err(OpenFailure::Damaged(
                "it is empty, but its -wal holds data".into(),
            ));
        }
        // After a crash the -wal holds the newest transactions; the instance in the file
        // itself (written once, at creation) tells whether the -wal is this file's own.
        let own_instance = if std::fs::metadata(sibling(path, "-wal")).is_ok_and(|m| m.len() > 32) {
            instance_without_wal(path)
        } else {
            None
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| OpenFailure::from_sql("cannot open buffer file", e))?;
        // Until the file is known to be an edgebuf buffer, closing the connection must not
        // checkpoint: a damaged or foreign file must stay exactly as found, and a `-wal` of
        // another database lying beside it would otherwise be copied into it. Enabled again
        // once the file is accepted.
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
            .map_err(|e| OpenFailure::from_sql("cannot open buffer file", e))?;
        harden(&conn).map_err(|e| OpenFailure::from_sql("cannot open buffer file", e))?;
        let app_id: i32 = conn
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .map_err(|e| OpenFailure::from_sql("cannot read buffer file", e))?;
        let version: i32 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| OpenFailure::from_sql("cannot read buffer file", e))?;
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
            .map_err(|e| OpenFailure::from_sql("cannot read buffer file", e))?;
        let stray = |what: &str| {
            OpenFailure::StrayWal(format!(
                "with it the file reads as {what}, without it as the edgebuf buffer {}",
                own_instance.as_deref().unwrap_or_default()
            ))
        };
        if own_instance.is_some() && (app_id != APPLICATION_ID || version > SCHEMA_VERSION) {
            return Err(stray("another database"));
        }
        if app_id != APPLICATION_ID && (app_id != 0 || tables > 0) {
            return Err(OpenFailure::Foreign(
                "it is a SQLite file of another application".into(),
            ));
        }
        if version > SCHEMA_VERSION {
            return Err(OpenFailure::Foreign(format!(
                "it has schema version {version}, newer than this library's {SCHEMA_VERSION}"
            )));
        }
        // Before anything reads a table: the schema must be exactly edgebuf's, so that no
        // trigger, view or altered table of someone else's runs inside the host.
        if tables > 0 {
            check_schema(&conn)?;
        }
        let exec = |sql: &str| {
            conn.execute_batch(sql)
                .map_err(|e| OpenFailure::from_sql("cannot set up buffer file", e))
        };
        if tables == 0 {
            exec("PRAGMA auto_vacuum=INCREMENTAL")?;
        }
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(|e| OpenFailure::from_sql("cannot set WAL mode on buffer file", e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(OpenFailure::Other(Error::storage(format!(
                "buffer file {} cannot use WAL mode (got {mode}); use a local file system",
                path.display()
            ))));
        }
        let sync_full = cfg.durability == crate::config::Durability::Sync;
        exec(&format!(
            "PRAGMA synchronous={}; PRAGMA journal_size_limit={WAL_LIMIT_BYTES};
             PRAGMA cache_size=-2048; PRAGMA busy_timeout=2000;",
            if sync_full { "FULL" } else { "NORMAL" }
        ))?;
        if tables == 0 {
            let instance = crate::sys::random_instance().map_err(|e| {
                OpenFailure::Other(Error::storage(format!(
                    "cannot read the operating system's random source: {e}"
                )))
            })?;
            exec(&format!(
                "BEGIN; {SCHEMA}
                 PRAGMA application_id={APPLICATION_ID}; PRAGMA user_version={SCHEMA_VERSION};
                 INSERT INTO meta(key, value) VALUES('instance', '{instance}'), ('hwm', 0);
                 COMMIT;"
            ))?;
        }
        let q = |sql: &str| -> std::result::Result<i64, OpenFailure> {
            conn.query_row(sql, [], |r| r.get::<_, Option<i64>>(0))
                .map(|v| v.unwrap_or(0))
                .map_err(|e| OpenFailure::from_sql("cannot read buffer file", e))
        };
        let instance: String = conn
            .query_row("SELECT value FROM meta WHERE key='instance'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| OpenFailure::from_sql("cannot read buffer file", e))?
            .ok_or_else(|| OpenFailure::Damaged("its instance id is missing".into()))?;
        if !valid_instance(&instance) {
            return Err(OpenFailure::Foreign(
                "its instance id is not 16 hexadecimal digits, so it was not written by edgebuf"
                    .into(),
            ));
        }
        if own_instance.as_ref().is_some_and(|own| *own != instance) {
            return Err(stray(&format!("the edgebuf buffer {instance}")));
        }
        let hwm = q("SELECT value FROM meta WHERE key='hwm'")?;
        // Files written before the watermark existed have no 'wm' row: nothing delivered.
        let wm: i64 = conn
            .query_row("SELECT value FROM meta WHERE key='wm'", [], |r| {
                r.get::<_, Option<i64>>(0)
            })
            .optional()
            .map_err(|e| OpenFailure::from_sql("cannot read buffer file", e))?
            .flatten()
            .unwrap_or(0)
            .max(0);
        let garbage_records = conn
            .query_row("SELECT count(*) FROM records WHERE seq <= ?1", [wm], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(|e| OpenFailure::from_sql("cannot read buffer file", e))?;
        let (disk_records, disk_bytes, max_rec) = conn
            .query_row(
                "SELECT count(*), total(length(data)), (SELECT max(seq) FROM records) FROM records WHERE seq > ?1",
                [wm],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, f64>(1)?,
                        r.get::<_, Option<i64>>(2)?,
                    ))
                },
            )
            .map_err(|e| OpenFailure::from_sql("cannot read buffer file", e))?;
        let (dead_records, dead_bytes, max_dead) = conn
            .query_row(
                "SELECT count(*), total(length(data)), max(seq) FROM dead_letters",
                [],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, f64>(1)?,
                        r.get::<_, Option<i64>>(2)?,
                    ))
                },
            )
            .map_err(|e| OpenFailure::from_sql("cannot read buffer file", e))?;
        let hwm = hwm
            .max(max_rec.unwrap_or(0))
            .max(max_dead.unwrap_or(0))
            .max(0) as u64;
        let min_free = match cfg.disk_min_free_bytes {
            Some(v) => v,
            None => {
                let total = crate::sys::fs_space(path).map(|(_, t)| t).unwrap_or(0);
                (32u64 << 20).min(total / 20)
            }
        };
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, false)
            .map_err(|e| OpenFailure::from_sql("cannot set up buffer file", e))?;
        Ok(PartialStore {
            conn,
            path: path.to_path_buf(),
            instance,
            hwm,
            wm: wm as u64,
            garbage_records: garbage_records as u64,
            disk_records: disk_records as u64,
            disk_bytes: disk_bytes as u64,
            dead_records: dead_records as u64,
            dead_bytes: dead_bytes as u64,
            dead_max: cfg.dead_letter_max_records,
            min_free,
            synchronous_full: sync_full,
        })
    }

    /// The buffer's instance id (16 hex digits).
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The canonical path of the file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next seq to hand out.
    pub fn next_seq(&self) -> u64 {
        self.hwm + 1
    }

    /// Marks which seqs were stored by this run (for ages and TTL).
    pub fn set_run_first_seq(&mut self, seq: u64) {
        self.run_first_seq = seq;
    }

    /// Stores `recs` in one transaction together with the seq high-water mark; with `fsync`
    /// the commit is made durable (synchronous=FULL) before returning.
    pub fn insert(
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
                added += r.data.len() as u64;
                max_seq = max_seq.max(r.seq);
            }
            // The stored records carry their seqs; the high-water mark in `meta` is written
            // when records are deleted (see `delete`). An edgebuf_sync with nothing new writes
            // it here to fsync the WAL.
            if recs.is_empty() && fsync {
                tx.prepare_cached("UPDATE meta SET value=max(value, ?1) WHERE key='hwm'")
                    .and_then(|mut s| s.execute(params![max_seq as i64]))
                    .map_err(|e| sql_err("cannot store the seq high-water mark", e))?;
            }
        }
        tx.commit().map_err(|e| sql_err("cannot commit", e))?;
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

    /// Checks free space at most once a second; below `disk.min_free_bytes` the file may only
    /// reuse its free pages (SQLite answers SQLITE_FULL when it would grow).
    fn check_space(&mut self) {
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
    pub fn recheck_space_soon(&mut self) {
        self.last_space_check = None;
    }

    /// Up to `max_records` pending records in seq order, stopping before `max_bytes` of
    /// `cost` (the first record is always included). With `range`, only seqs inside it
    /// (a retry of the same batch).
    pub fn fetch(
        &mut self,
        range: Option<(u64, u64)>,
        max_records: u64,
        max_bytes: u64,
        cost: impl Fn(&StoredRecord) -> u64,
    ) -> Result<Vec<StoredRecord>> {
        let (lo, hi) = range.unwrap_or((0, i64::MAX as u64));
        let lo = lo.max(self.wm + 1);
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT seq, ts_ms, inst, data FROM records WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq LIMIT ?3",
            )
            .map_err(|e| sql_storage("cannot read pending records", e))?;
        let mut rows = st
            .query(params![lo as i64, hi as i64, max_records as i64])
            .map_err(|e| sql_storage("cannot read pending records", e))?;
        let mut out = Vec::with_capacity(max_records.min(4096) as usize);
        let mut bytes = 0u64;
        while let Some(row) = rows
            .next()
            .map_err(|e| sql_storage("cannot read pending records", e))?
        {
            let rec = StoredRecord {
                seq: row
                    .get::<_, i64>(0)
                    .map_err(|e| sql_storage("bad row", e))? as u64,
                ts_ms: row.get(1).map_err(|e| sql_storage("bad row", e))?,
                inst: match row.get_ref(2).map_err(|e| sql_storage("bad row", e))? {
                    rusqlite::types::ValueRef::Null => None,
                    v => {
                        // It goes on the wire in the envelope's id: only what edgebuf writes.
                        let i = v.as_str().map_err(|e| sql_storage("bad row", e.into()))?;
                        if !valid_instance(i) {
                            return Err(Error::storage(format!(
                                "buffer file {} is damaged: a record's instance id is not 16 \
                                 hexadecimal digits",
                                self.path.display()
                            )));
                        }
                        Some(i.to_owned())
                    }
                },
                data: row
                    .get_ref(3)
                    .and_then(|v| v.as_blob().map_err(Into::into))
                    .map_err(|e| sql_storage("bad row", e))?
                    .to_vec(),
            };
            let c = cost(&rec);
            if !out.is_empty() && bytes + c > max_bytes {
                break;
            }
            bytes += c;
            out.push(rec);
        }
        Ok(out)
    }

    /// Deletes delivered records; returns (records, payload bytes) removed. The seq
    /// high-water mark is kept in the same transaction, so seqs are never reused.
    pub fn delete(&mut self, seqs: &[u64]) -> Result<(u64, u64)> {
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
            tx.prepare_cached("UPDATE meta SET value=max(value, ?1) WHERE key='hwm'")
                .and_then(|mut s| s.execute(params![max_seq as i64]))
                .map_err(|e| sql_storage("cannot store the seq high-water mark", e))?;
        }
        tx.commit()
            .map_err(|e| sql_storage("cannot commit the deletion of delivered records", e))?;
        self.disk_records -= n.min(self.disk_records);
        self.disk_bytes -= bytes.min(self.disk_bytes);
        Ok((n, bytes))
    }

    /// Deletes a delivered batch: the records `lo..=hi` the worker read (`n` records of
    /// `bytes` payload bytes; records in flight are never dropped, so all of them are here).
    /// Cheaper than [`Store::delete`]: one range statement without RETURNING.
    pub fn delete_delivered(&mut self, lo: u64, hi: u64, n: u64, bytes: u64) -> Result<(u64, u64)> {
        let tx = self
            .conn
            .transaction()
            .map_err(|e| sql_storage("cannot begin a transaction", e))?;
        let removed =
            tx.prepare_cached("DELETE FROM records WHERE seq BETWEEN ?1 AND ?2")
                .and_then(|mut st| st.execute(params![lo as i64, hi as i64]))
                .map_err(|e| sql_storage("cannot delete delivered records", e))? as u64;
        tx.prepare_cached("UPDATE meta SET value=max(value, ?1) WHERE key='hwm'")
            .and_then(|mut s| s.execute(params![hi as i64]))
            .map_err(|e| sql_storage("cannot store the seq high-water mark", e))?;
        tx.commit()
            .map_err(|e| sql_storage("cannot commit the deletion of delivered records", e))?;
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
    /// at once.
    pub fn settle_delivered(&mut self, lo: u64, hi: u64, n: u64, bytes: u64) -> Result<(u64, u64)> {
        let behind: Option<i64> = self
            .conn
            .prepare_cached("SELECT seq FROM records WHERE seq > ?1 AND seq < ?2 LIMIT 1")
            .and_then(|mut st| {
                st.query_row(params![self.wm as i64, lo as i64], |r| r.get(0))
                    .optional()
            })
            .map_err(|e| sql_storage("cannot read pending records", e))?;
        if behind.is_some() || hi < lo || lo <= self.wm {
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
        tx.prepare_cached("UPDATE meta SET value=max(value, ?1) WHERE key='hwm'")
            .and_then(|mut s| s.execute(params![hi as i64]))
            .map_err(|e| sql_storage("cannot store the seq high-water mark", e))?;
        tx.commit()
            .map_err(|e| sql_storage("cannot commit the delivered watermark", e))?;
        self.wm = hi;
        self.disk_records -= n.min(self.disk_records);
        self.disk_bytes -= bytes.min(self.disk_bytes);
        self.garbage_records += n;
        self.garbage_bytes += bytes;
        Ok((n, bytes))
    }

    /// Reclaims up to `max_rows` delivered rows (below the watermark) in one transaction.
    /// Returns how many were removed.
    pub fn collect_garbage(&mut self, max_rows: u64) -> Result<u64> {
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
        let removed = self
            .conn
            .prepare_cached("DELETE FROM records WHERE seq <= ?1")
            .and_then(|mut st| st.execute(params![upto]))
            .map_err(|e| sql_storage("cannot reclaim delivered records", e))?
            as u64;
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

    /// Moves records to the dead letters with the status and reason; trims the oldest dead
    /// letters past `dead_letter.max_records`. Returns (moved, moved bytes).
    pub fn dead_letter(&mut self, seqs: &[u64], status: i32, reason: &str) -> Result<(u64, u64)> {
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
    fn trim_dead(&mut self, max_n: u64, want_bytes: u64) -> Result<(u64, u64)> {
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

    /// The seq ranges the capacity policy and TTL must not touch: the request in flight and
    /// the batch read for the next one (an empty range, 1..=0, where there is none).
    fn protected(&self) -> ((u64, u64), (u64, u64)) {
        (
            self.inflight.unwrap_or((1, 0)),
            self.prefetched.unwrap_or((1, 0)),
        )
    }

    /// Frees room for the capacity policy: the oldest dead letters first (for bytes), then the
    /// oldest pending records outside the request in flight. Returns the pending records
    /// dropped as (count, bytes).
    pub fn make_room(&mut self, need_bytes: u64, need_records: u64) -> Result<(u64, u64)> {
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
    pub fn expire(&mut self, now_ms: u64, ttl_ms: u64) -> Result<(u64, u64)> {
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
    pub fn oldest(&mut self) -> Result<Option<(u64, u64)>> {
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
    pub fn min_seq(&mut self) -> Result<Option<u64>> {
        Ok(self.oldest()?.map(|(s, _)| s))
    }

    /// Gives free pages back to the file system when many are free.
    pub fn maintain(&mut self) {
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
    fn incremental_vacuum(&self) -> rusqlite::Result<()> {
        let mut st = self.conn.prepare("PRAGMA incremental_vacuum")?;
        let mut rows = st.query([])?;
        while rows.next()?.is_some() {}
        Ok(())
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

/// st_size of a buffer file with its `-wal` and `-shm`.
pub fn file_set_size(path: &Path) -> u64 {
    let mut total = 0;
    for suffix in ["", "-wal", "-shm"] {
        if let Ok(m) = std::fs::metadata(sibling(path, suffix)) {
            total += m.len();
        }
    }
    total
}

struct PartialStore {
    conn: Connection,
    path: PathBuf,
    instance: String,
    hwm: u64,
    wm: u64,
    garbage_records: u64,
    disk_records: u64,
    disk_bytes: u64,
    dead_records: u64,
    dead_bytes: u64,
    dead_max: u64,
    min_free: u64,
    synchronous_full: bool,
}

// `open_locked` builds the Store from the parts and the lock.
impl Store {
    fn from_parts(p: PartialStore, lock: Locks) -> Store {
        let next = p.hwm + 1;
        Store {
            conn: p.conn,
            path: p.path,
            _lock: lock,
            instance: p.instance,
            run_first_seq: next,
            hwm: p.hwm,
            wm: p.wm,
            garbage_records: p.garbage_records,
            garbage_bytes: 0,
            disk_records: p.disk_records,
            disk_bytes: p.disk_bytes,
            dead_records: p.dead_records,
            dead_bytes: p.dead_bytes,
            dead_max: p.dead_max,
            min_free: p.min_free,
            growth_limited: false,
            last_space_check: None,
            inflight: None,
            prefetched: None,
            synchronous_full: p.synchronous_full,
        }
    }
}

enum OpenFailure {
    Damaged(String),
    Foreign(String),
    /// The `-wal` beside the file is not its own (it belongs to another database).
    StrayWal(String),
    Other(Error),
}

impl OpenFailure {
    fn from_sql(what: &str, e: rusqlite::Error) -> OpenFailure {
        if is_damage(&e) {
            OpenFailure::Damaged(e.to_string())
        } else {
            let hint = match e.sqlite_error_code() {
                Some(ErrorCode::ReadOnly | ErrorCode::CannotOpen) => {
                    "; the file and its directory must be writable, on a read-write local file system"
                }
                Some(ErrorCode::DiskFull) => "; the file system is full: free space on it",
                _ => "",
            };
            OpenFailure::Other(Error::storage(format!("{what}: {}{hint}", describe(&e))))
        }
    }

    fn into_error(self, path: &Path) -> Error {
        match self {
            OpenFailure::Damaged(why) => Error::new(
                Code::Corrupt,
                format!("buffer file {} is damaged: {why}", path.display()),
            ),
            OpenFailure::StrayWal(why) => Error::new(
                Code::Corrupt,
                format!(
                    "the -wal beside buffer file {} is not its own: {why}",
                    path.display()
                ),
            ),
            OpenFailure::Foreign(why) => {
                // SQLite reads a `-wal` beside the file as part of it: a stray one (of another
                // database, copied or restored beside this file) makes a buffer look foreign.
                let mut wal = path.as_os_str().to_owned();
                wal.push("-wal");
                let wal = PathBuf::from(wal);
                let hint = if std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
                    format!(
                        "; if {} belongs to another database, move it away and open again",
                        wal.display()
                    )
                } else {
                    String::new()
                };
                Error::new(
                    Code::Corrupt,
                    format!(
                        "buffer file {} is not an edgebuf buffer ({why}); it was left untouched{hint}",
                        path.display()
                    ),
                )
            }
            OpenFailure::Other(e) => {
                Error::new(e.code(), format!("{} ({})", e.message(), path.display()))
            }
        }
    }
}

/// The locks that make one handle the only owner of a buffer file (SPEC 4), held for the life
/// of the Store and released after its connection closes (field order): a flock on
/// `<canonical path>.lock`, never opened through a symbolic link, and a flock on the database
/// file itself, whose inode every name of the file shares (another spelling, a symlink, a hard
/// link, a bind mount). flock and SQLite's fcntl locks are independent; the descriptor stays
/// open until SQLite has closed, since closing any descriptor of the file would drop SQLite's.
pub struct Locks {
    _name: File,
    inode: File,
}

fn take_lock(path: &Path) -> Result<Locks> {
    let lock_path = sibling(path, ".lock");
    let created = std::fs::symlink_metadata(&lock_path).is_err();
    let name = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&lock_path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                return Error::storage(format!(
                    "the lock file {} is a symbolic link, which edgebuf never opens: remove it \
                     (edgebuf creates its own)",
                    lock_path.display()
                ));
            }
            Error::storage(format!(
                "cannot create the lock file {}: {e}{}",
                lock_path.display(),
                io_hint(&e)
            ))
        })?;
    flock(&name, path, &lock_path)?;
    let inode = lock_inode(path)?;
    if created {
        crate::sys::fsync_dir(path);
    }
    Ok(Locks { _name: name, inode })
}

/// Opens (creating it empty, 0600, when missing) and flocks the database file itself.
fn lock_inode(path: &Path) -> Result<File> {
    let created = std::fs::symlink_metadata(path).is_err();
    // Read-only is enough for flock; O_CREAT by hand, since std creates only for writing.
    let f = OpenOptions::new()
        .read(true)
        .mode(0o600)
        .custom_flags(libc::O_CREAT | libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| {
            storage_err(
                "cannot open the buffer file",
                path,
                format!("{e}{}", io_hint(&e)),
            )
        })?;
    flock(&f, path, path)?;
    if created {
        crate::sys::fsync_dir(path);
    }
    Ok(f)
}

impl Locks {
    /// After the file was moved aside (quarantine): lock the new file at `path`.
    fn relock_inode(&mut self, path: &Path) -> Result<()> {
        self.inode = lock_inode(path)?;
        Ok(())
    }
}

fn flock(f: &File, path: &Path, lock_path: &Path) -> Result<()> {
    match f.try_lock() {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::new(
            Code::Locked,
            format!(
                "buffer file {} is in use by another handle or process (lock {})",
                path.display(),
                lock_path.display()
            ),
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(storage_err("cannot lock", lock_path, e)),
    }
}

/// `path` with `suffix` appended (`buf.db` + `-wal`).
pub fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// `file:PATH?immutable=1` (open it with SQLITE_OPEN_URI): SQLite reads the file alone,
/// ignoring any `-wal`, takes no lock and creates nothing.
pub fn immutable_uri(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut uri = String::from("file:");
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/._-~".contains(&b) {
            uri.push(b as char);
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri.push_str("?immutable=1");
    uri
}

/// The instance recorded in the file itself, ignoring its `-wal`, when the file alone is an
/// edgebuf buffer.
fn instance_without_wal(path: &Path) -> Option<String> {
    let c = Connection::open_with_flags(
        immutable_uri(path),
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .ok()?;
    let app_id: i32 = c
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .ok()?;
    if app_id != APPLICATION_ID {
        return None;
    }
    c.query_row("SELECT value FROM meta WHERE key='instance'", [], |r| {
        r.get::<_, String>(0)
    })
    .ok()
}

/// Defensive mode and an untrusted schema: SQL functions with side effects cannot be reached
/// from the schema, and the schema itself cannot be corrupted through SQL.
fn harden(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false)?;
    Ok(())
}

/// One row of `sqlite_schema` (type, name, table, SQL), as bytes: a damaged or hostile file
/// may hold anything there, UTF-8 or not.
type SchemaRow = (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>);

/// The schema objects edgebuf creates, as SQLite records them.
fn expected_schema() -> rusqlite::Result<Vec<SchemaRow>> {
    let c = Connection::open_in_memory()?;
    c.execute_batch(SCHEMA)?;
    schema_of(&c)
}

fn schema_of(c: &Connection) -> rusqlite::Result<Vec<SchemaRow>> {
    let mut st = c.prepare(
        "SELECT CAST(type AS BLOB), CAST(name AS BLOB), CAST(tbl_name AS BLOB), \
         CAST(coalesce(sql, '') AS BLOB) FROM sqlite_schema ORDER BY type, name",
    )?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
    rows.collect()
}

/// CORRUPT (not ours) unless the file holds exactly the tables edgebuf creates.
fn check_schema(conn: &Connection) -> std::result::Result<(), OpenFailure> {
    match schema_difference(conn) {
        Ok(None) => Ok(()),
        Ok(Some(why)) => Err(OpenFailure::Foreign(why)),
        Err(e) => Err(OpenFailure::from_sql("cannot read the schema", e)),
    }
}

/// None when the schema is exactly edgebuf's; otherwise why not, fit to print.
fn schema_difference(conn: &Connection) -> rusqlite::Result<Option<String>> {
    let want = expected_schema()?;
    let got = schema_of(conn)?;
    if got == want {
        return Ok(None);
    }
    let extra: Vec<String> = got
        .iter()
        .filter(|o| !want.contains(o))
        .take(5)
        .map(|(t, n, _, _)| format!("{} {}", printable_name(t), printable_name(n)))
        .collect();
    Ok(Some(format!(
        "its schema is not edgebuf's (objects edgebuf did not create or changed: {})",
        if extra.is_empty() {
            "tables missing".to_string()
        } else {
            extra.join(", ")
        }
    )))
}

/// For other readers of a buffer file (the `edgebuf` tool), before they read a table:
/// defensive mode with `trusted_schema` off, then the schema must be exactly edgebuf's, so
/// that no trigger, view or altered table in the file runs in the reader. Err says why not.
pub fn check_for_reading(conn: &Connection) -> std::result::Result<(), String> {
    harden(conn).map_err(|e| describe(&e))?;
    match schema_difference(conn) {
        Ok(None) => Ok(()),
        Ok(Some(why)) => Err(why),
        Err(e) => Err(describe(&e)),
    }
}

/// A name read from a file, made safe for a message.
fn printable_name(n: &[u8]) -> String {
    n.iter()
        .map(|&b| if b.is_ascii_graphic() { b as char } else { '?' })
        .take(64)
        .collect()
}

/// An instance id as edgebuf draws it: 16 lowercase hexadecimal digits.
pub fn valid_instance(s: &str) -> bool {
    s.len() == 16
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether the file at `path` is provably an edgebuf buffer file: SQLite's header with
/// edgebuf's application_id (offset 68) in its first page, or, for an empty file beside a
/// `-wal`, in the page 1 that the `-wal`'s first frame holds. Nothing else is ever moved or
/// deleted (SPEC 4, damage).
pub fn is_ours(path: &Path) -> bool {
    fn header_is_ours(page: &[u8]) -> bool {
        page.len() >= 72
            && page.starts_with(b"SQLite format 3\0")
            && page[68..72] == APPLICATION_ID.to_be_bytes()
    }
    let mut head = [0u8; 100];
    let main = read_prefix(path, &mut head);
    if main >= 72 {
        return header_is_ours(&head[..main]);
    }
    if main != 0 {
        return false;
    }
    // The -wal: a 32-byte header, then frames of a 24-byte header and a page.
    let mut wal = [0u8; 32 + 24 + 100];
    let n = read_prefix(&sibling(path, "-wal"), &mut wal);
    n >= 32 + 24 + 72 && wal[32..36] == 1u32.to_be_bytes() && header_is_ours(&wal[56..n])
}

/// Reads up to `buf.len()` bytes from the start of a file (0 when it cannot be read).
fn read_prefix(path: &Path, buf: &mut [u8]) -> usize {
    use std::io::Read;
    let Ok(f) = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    else {
        return 0;
    };
    let mut n = 0;
    let mut f = f;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    n
}

/// CORRUPT for a file SQLite calls damaged that is not provably edgebuf's: never moved.
fn not_ours(path: &Path, why: &str) -> Error {
    Error::new(
        Code::Corrupt,
        format!(
            "{} is not an edgebuf buffer file that can be opened ({why}), and it is left as it \
             is; set path to a file of edgebuf's, or to a new name",
            path.display()
        ),
    )
}

/// An empty file beside a `-wal` with more than its 32-byte header.
fn empty_beside_wal(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.len() == 0)
        && std::fs::metadata(sibling(path, "-wal")).is_ok_and(|m| m.len() > 32)
}

/// Whether `-wal` and `-shm` exist beside `path`.
fn siblings_present(path: &Path) -> (bool, bool) {
    (
        sibling(path, "-wal").exists(),
        sibling(path, "-shm").exists(),
    )
}

/// Removes an empty `-wal` (and the `-shm`) that an open which did not keep the file created
/// itself, so that the file set stays as it was found.
fn tidy_siblings(path: &Path, had: (bool, bool)) {
    let wal = sibling(path, "-wal");
    if !had.0 && std::fs::metadata(&wal).is_ok_and(|m| m.len() == 0) {
        let _ = std::fs::remove_file(&wal);
        if !had.1 {
            let _ = std::fs::remove_file(sibling(path, "-shm"));
        }
        crate::sys::fsync_dir(path);
    }
}

/// The records of a damaged file that can still be read, as a lower bound of what is lost.
/// With writable_schema, SQLite reads a file shorter than its header says instead of refusing
/// it; rows are counted up to the first error.
fn count_records_best_effort(path: &Path) -> u64 {
    if empty_beside_wal(path) {
        // Opening it would delete the -wal.
        return 0;
    }
    let had = siblings_present(path);
    let count = (|| -> rusqlite::Result<u64> {
        let mut c = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        c.set_db_config(DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false)?;
        // Whatever the file holds, counting takes at most two seconds.
        let deadline = Instant::now() + Duration::from_secs(2);
        c.progress_handler(10_000, Some(move || Instant::now() > deadline))?;
        c.execute_batch("PRAGMA writable_schema=ON")?;
        let mut st = c.prepare("SELECT 1 FROM records")?;
        let mut rows = st.query([])?;
        let mut n = 0u64;
        while let Ok(Some(_)) = rows.next() {
            n += 1;
        }
        Ok(n)
    })()
    .unwrap_or(0);
    tidy_siblings(path, had);
    count
}

/// Moves a damaged file with its `-wal` and `-shm` to `PATH.corrupt-UNIXMS`, keeping only the
/// newest such set.
fn quarantine(path: &Path) -> Result<PathBuf> {
    quarantine_files(path, &["", "-wal", "-shm"])
}

/// Moves the `suffixes` of the file set of `path` to `PATH.corrupt-UNIXMS` + suffix, keeping
/// only the newest such set. Returns `PATH.corrupt-UNIXMS`.
fn quarantine_files(path: &Path, suffixes: &[&str]) -> Result<PathBuf> {
    let stamp = unix_ms();
    let mut base = path.as_os_str().to_owned();
    base.push(format!(".corrupt-{stamp}"));
    let dest = PathBuf::from(base);
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Some(dir) = path.parent() {
        let prefix = format!("{file_name}.corrupt-");
        let keep = format!("{file_name}.corrupt-{stamp}");
        // An older set goes only if its file is provably edgebuf's: `PATH.corrupt-DIGITS`
        // with edgebuf's header, and then with its -wal and -shm. Nothing else is touched.
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                let Some(stamp) = n.strip_prefix(&prefix) else {
                    continue;
                };
                if n == keep || stamp.is_empty() || !stamp.bytes().all(|b| b.is_ascii_digit()) {
                    continue;
                }
                let old = e.path();
                if std::fs::symlink_metadata(&old).is_ok_and(|m| m.is_file()) && is_ours(&old) {
                    for suffix in ["-wal", "-shm", ""] {
                        let _ = std::fs::remove_file(sibling(&old, suffix));
                    }
                }
            }
        }
    }
    for suffix in suffixes {
        let mut from = path.as_os_str().to_owned();
        from.push(suffix);
        let mut to = dest.as_os_str().to_owned();
        to.push(suffix);
        match std::fs::rename(&from, &to) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(storage_err(
                    "cannot move the damaged buffer file aside",
                    path,
                    e,
                ))
            }
        }
    }
    crate::sys::fsync_dir(path);
    Ok(dest)
}
