//! Opening a buffer file: the locks (by name and by inode), the checks that the file is ours,
//! and moving a damaged file of ours aside (quarantine). A file that is not provably
//! edgebuf's is never moved or changed.

use super::schema::{
    check_schema, harden, upgrade, valid_instance, APPLICATION_ID, SCHEMA, SCHEMA_VERSION,
};
use super::{describe, io_hint, is_damage, storage_err, OpenReport, Store};
use crate::clock::realtime_ms;
use crate::config::{Config, OnCorrupt};
use crate::error::{Code, Error, Result};
use rusqlite::config::DbConfig;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The WAL is truncated back to this after a checkpoint.
const WAL_LIMIT_BYTES: i64 = 4 * 1024 * 1024;

/// The canonical form of a buffer path whose file may not exist yet. A value that cannot name
/// a buffer file (a directory, a file in a directory that does not exist) is INVALID_CONFIG,
/// whose message names the key and never the value (docs/reference.md, C API).
pub(crate) fn canonical_path(path: &Path) -> Result<PathBuf> {
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
            check_schema(&conn, version)?;
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
        if tables > 0 && version == 1 {
            // A file of the version before the clock table: add it, in one transaction.
            upgrade(&conn).map_err(|e| OpenFailure::from_sql("cannot upgrade buffer file", e))?;
        }
        // Read as bytes: text that is not UTF-8 (a flipped byte, found by tests/filefuzz) is
        // not an id edgebuf wrote, like any other that is not 16 hexadecimal digits.
        let instance: String = conn
            .query_row("SELECT value FROM meta WHERE key='instance'", [], |r| {
                Ok(match r.get_ref(0)? {
                    ValueRef::Text(t) => String::from_utf8(t.to_vec()).unwrap_or_default(),
                    _ => String::new(),
                })
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
        // Written at creation and never deleted: without it seqs could be handed out again
        // (a flipped byte in its key, found by tests/filefuzz).
        let hwm = conn
            .query_row("SELECT value FROM meta WHERE key='hwm'", [], |r| {
                r.get::<_, Option<i64>>(0)
            })
            .optional()
            .map_err(|e| OpenFailure::from_sql("cannot read buffer file", e))?
            .ok_or_else(|| OpenFailure::Damaged("its seq high-water mark is missing".into()))?
            .unwrap_or(0);
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
        // Rows of records logged while the wall clock was not valid (src/clock.rs): while
        // there are none, reading a batch does not look for them.
        let clock_rows: bool = conn
            .query_row("SELECT EXISTS(SELECT 1 FROM clock)", [], |r| r.get(0))
            .map_err(|e| OpenFailure::from_sql("cannot read buffer file", e))?;
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
            boot: crate::clock::BootClock::open(cfg.clock_valid_after_ms()),
            clock_rows,
        })
    }
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
    boot: crate::clock::BootClock,
    clock_rows: bool,
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
            boot: p.boot,
            clock_rows: p.clock_rows,
            budget_note: None,
        }
    }
}

pub(super) enum OpenFailure {
    Damaged(String),
    Foreign(String),
    /// The `-wal` beside the file is not its own (it belongs to another database).
    StrayWal(String),
    Other(Error),
}

impl OpenFailure {
    pub(super) fn from_sql(what: &str, e: rusqlite::Error) -> OpenFailure {
        // A value of a type edgebuf never writes there (text for the high-water mark, say)
        // is damage too.
        let wrong_type = matches!(
            e,
            rusqlite::Error::InvalidColumnType(..)
                | rusqlite::Error::FromSqlConversionFailure(..)
                | rusqlite::Error::IntegralValueOutOfRange(..)
                | rusqlite::Error::Utf8Error(..)
        );
        if is_damage(&e) || wrong_type {
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

/// The locks that make one handle the only owner of a buffer file (docs/reference.md, guarantees), held for the life
/// of the Store and released after its connection closes (field order): a flock on
/// `<canonical path>.lock`, never opened through a symbolic link, and a flock on the database
/// file itself, whose inode every name of the file shares (another spelling, a symlink, a hard
/// link, a bind mount). flock and SQLite's fcntl locks are independent; the descriptor stays
/// open until SQLite has closed, since closing any descriptor of the file would drop SQLite's.
pub(super) struct Locks {
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
pub(crate) fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// `file:PATH?immutable=1` (open it with SQLITE_OPEN_URI): SQLite reads the file alone,
/// ignoring any `-wal`, takes no lock and creates nothing.
pub(super) fn immutable_uri(path: &Path) -> String {
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

/// Whether the file at `path` is provably an edgebuf buffer file: SQLite's header with
/// edgebuf's application_id (offset 68) in its first page, or, for an empty file beside a
/// `-wal`, in the page 1 that the `-wal`'s first frame holds. Nothing else is ever moved or
/// deleted (docs/reference.md, guarantees, damage).
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
    let stamp = realtime_ms();
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

#[cfg(test)]
mod tests {
    use super::super::testing::{buffer_path, config, insert, open, raw};
    use super::*;

    fn files(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn reopen_keeps_seq_and_instance() {
        let (_dir, path) = buffer_path();
        let (instance, next) = {
            let mut s = open(&path);
            assert_eq!(s.next_seq(), 1);
            assert!(valid_instance(s.instance()));
            insert(&mut s, 1..=3);
            (s.instance().to_string(), s.next_seq())
        };
        assert_eq!(next, 4);
        let s = open(&path);
        assert_eq!(s.instance(), instance);
        assert_eq!(s.next_seq(), 4);
        assert_eq!(s.pending_records(), 3);
        assert_eq!(s.path(), path.canonicalize().expect("canonical"));
    }

    #[test]
    fn seqs_are_never_reused_after_everything_was_delivered() {
        let (_dir, path) = buffer_path();
        {
            let mut s = open(&path);
            insert(&mut s, 1..=5);
            assert_eq!(s.delete(&[1, 2, 3, 4, 5]).expect("delete"), (5, 35));
        }
        let s = open(&path);
        assert_eq!(s.pending_records(), 0);
        assert_eq!(
            s.next_seq(),
            6,
            "the high-water mark survives an empty table"
        );
    }

    #[test]
    fn a_second_open_is_locked_by_name_and_by_inode() {
        let (dir, path) = buffer_path();
        let _s = open(&path);
        let again = Store::open(&config(&path, &[])).err().expect("locked");
        assert_eq!(again.code(), Code::Locked, "{again:?}");
        // Another name of the same file: the flock on the inode refuses it.
        let link = dir.path().join("link.db");
        std::fs::hard_link(&path, &link).expect("hard link");
        let other = Store::open(&config(&link, &[])).err().expect("locked");
        assert_eq!(other.code(), Code::Locked, "{other:?}");
    }

    #[test]
    fn a_foreign_file_is_corrupt_and_left_untouched() {
        let (dir, path) = buffer_path();
        {
            let c = raw(&path);
            c.execute_batch("CREATE TABLE photos(id INTEGER PRIMARY KEY, name TEXT); INSERT INTO photos(name) VALUES('a');")
                .expect("foreign db");
        }
        let before = std::fs::read(&path).expect("read");
        let names = files(dir.path());
        for on_corrupt in ["quarantine", "fail"] {
            let cfg = config(&path, &[("storage.on_corrupt", on_corrupt)]);
            let e = Store::open(&cfg).err().expect("refused");
            assert_eq!(e.code(), Code::Corrupt, "{e:?}");
            assert!(e.message().contains("another application"), "{e:?}");
            assert_eq!(std::fs::read(&path).expect("read"), before);
            // Only the lock file is new.
            let mut want = names.clone();
            want.push("buf.db.lock".into());
            want.sort();
            assert_eq!(files(dir.path()), want);
        }
        assert!(!is_ours(&path));
        // Not SQLite at all: SQLite calls it damaged, but it is not provably ours.
        let (dir, path) = buffer_path();
        std::fs::write(
            &path,
            b"just some text, not a database at all ...".repeat(200),
        )
        .expect("write");
        let before = std::fs::read(&path).expect("read");
        let e = Store::open(&config(&path, &[])).err().expect("refused");
        assert_eq!(e.code(), Code::Corrupt, "{e:?}");
        assert!(e.message().contains("left as it is"), "{e:?}");
        assert_eq!(std::fs::read(&path).expect("read"), before);
        assert!(!files(dir.path()).iter().any(|n| n.contains("corrupt")));
    }

    /// Keeps the 100-byte header (edgebuf's application_id in it) and overwrites the rest.
    fn damage(path: &Path) {
        let mut bytes = std::fs::read(path).expect("read");
        assert!(bytes.len() > 4096, "a file of several pages");
        for b in &mut bytes[100..] {
            *b = 0xA5;
        }
        std::fs::write(path, bytes).expect("write");
    }

    #[test]
    fn a_damaged_file_of_ours_is_quarantined() {
        let (dir, path) = buffer_path();
        let old_instance = {
            let mut s = open(&path);
            insert(&mut s, 1..=50);
            s.instance().to_string()
        };
        damage(&path);
        assert!(is_ours(&path));
        let damaged = std::fs::read(&path).expect("read");
        let (s, report) = Store::open(&config(&path, &[])).expect("opens empty");
        let (moved, _lost) = report.quarantined.expect("quarantined");
        assert_eq!(std::fs::read(&moved).expect("moved file"), damaged);
        assert!(moved
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("buf.db.corrupt-")));
        assert_eq!(s.pending_records(), 0);
        assert_ne!(s.instance(), old_instance, "a new buffer");
        drop(s);
        assert_eq!(
            files(dir.path())
                .iter()
                .filter(|n| n.contains(".corrupt-"))
                .count(),
            1
        );
    }

    #[test]
    fn on_corrupt_fail_keeps_a_damaged_file_as_it_is() {
        let (dir, path) = buffer_path();
        {
            let mut s = open(&path);
            insert(&mut s, 1..=50);
        }
        damage(&path);
        let damaged = std::fs::read(&path).expect("read");
        let cfg = config(&path, &[("storage.on_corrupt", "fail")]);
        let e = Store::open(&cfg).err().expect("refused");
        assert_eq!(e.code(), Code::Corrupt, "{e:?}");
        assert!(e.message().contains("storage.on_corrupt=fail"), "{e:?}");
        assert_eq!(std::fs::read(&path).expect("read"), damaged);
        assert!(!files(dir.path()).iter().any(|n| n.contains("corrupt")));
    }

    #[test]
    fn an_instance_id_that_is_not_utf8_is_not_ours_and_left_as_found() {
        // Found by tests/filefuzz: a flipped byte in the instance id's text.
        let (_dir, path) = buffer_path();
        drop(open(&path));
        raw(&path)
            .execute_batch(
                "UPDATE meta SET value = CAST(x'ff3031323334353637383961626364' AS TEXT) \
                 WHERE key = 'instance'",
            )
            .expect("tamper");
        let before = std::fs::read(&path).expect("read");
        let e = Store::open(&config(&path, &[])).err().expect("refused");
        assert_eq!(e.code(), Code::Corrupt, "{e:?}");
        assert!(e.message().contains("16 hexadecimal digits"), "{e:?}");
        assert_eq!(std::fs::read(&path).expect("read"), before);
    }

    /// Damage in the meta table of a file of ours: CORRUPT with `fail`, quarantined (and the
    /// buffer started empty) by default. The missing high-water mark was found by
    /// tests/filefuzz (a flipped byte in the key 'hwm').
    #[test]
    fn a_wrong_or_missing_value_in_a_file_of_ours_is_damage() {
        for (sql, want) in [
            ("UPDATE meta SET value = 'many' WHERE key = 'hwm'", ""),
            (
                "UPDATE meta SET key = 'hwn' WHERE key = 'hwm'",
                "high-water mark is missing",
            ),
        ] {
            let (_dir, path) = buffer_path();
            {
                let mut s = open(&path);
                insert(&mut s, 1..=3);
            }
            raw(&path).execute_batch(sql).expect("tamper");
            let cfg = config(&path, &[("storage.on_corrupt", "fail")]);
            let e = Store::open(&cfg).err().expect("refused");
            assert_eq!(e.code(), Code::Corrupt, "{sql}: {e:?}");
            assert!(e.message().contains(want), "{sql}: {e:?}");
            let (s, report) = Store::open(&config(&path, &[])).expect("quarantined");
            assert!(report.quarantined.is_some(), "{sql}");
            assert_eq!(s.pending_records(), 0, "{sql}");
        }
    }

    #[test]
    fn canonical_path_refuses_what_cannot_be_a_buffer_file() {
        let (dir, path) = buffer_path();
        let e = canonical_path(dir.path()).expect_err("a directory");
        assert_eq!(e.code(), Code::InvalidConfig);
        let e = canonical_path(&dir.path().join("missing/buf.db")).expect_err("no such directory");
        assert_eq!(e.code(), Code::InvalidConfig);
        let p = canonical_path(&path).expect("a new file");
        assert_eq!(p.file_name(), path.file_name());
        assert!(!path.exists(), "nothing created");
    }

    #[test]
    fn immutable_uri_escapes_what_a_uri_may_not_hold() {
        assert_eq!(
            immutable_uri(Path::new("/tmp/a b/c?d#e%.db")),
            "file:/tmp/a%20b/c%3Fd%23e%25.db?immutable=1"
        );
    }
}
