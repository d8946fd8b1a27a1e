//! Reading a buffer file from outside the library (the `edgebuf` tool's `status`, `export`
//! and `check`): read-only, without the buffer's lock, also while a program holds the file
//! open. It never creates the file and never writes to it.
//!
//! Everything read is checked as the library checks it: the file must be an edgebuf buffer of
//! a known schema with nothing else in it, ids must be edgebuf's, seqs and timestamps must not
//! be negative, and no row larger than the largest record edgebuf accepts is loaded. A file
//! that fails a check gives an error of code [`Code::Corrupt`]; any other failure (a missing
//! file, permissions, I/O) gives [`Code::Storage`]. Messages begin with the path.

pub use super::open::is_ours;
use super::open::{immutable_uri, sibling};
use super::schema::{check_for_reading, valid_instance, APPLICATION_ID, SCHEMA_VERSION};
use super::{is_damage, LARGEST_RECORD};
use crate::clock::ClockMark;
use crate::error::{Code, Error, Result};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A buffer file opened for reading.
pub struct BufferFile {
    conn: Connection,
    path: PathBuf,
    instance: String,
    schema: i32,
}

/// The backlog of a buffer file, read in one transaction (the numbers agree with each other).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// The delivered watermark: rows with a seq up to it were delivered and only wait to be
    /// reclaimed (by the library, or `edgebuf compact`); they are not pending.
    pub watermark: u64,
    /// The highest seq the buffer has handed out (its high-water mark, or a higher stored seq).
    pub high_water_mark: u64,
    pub pending_records: u64,
    /// Payload bytes of the pending records.
    pub pending_bytes: u64,
    /// The smallest `ts_ms` of a pending record.
    pub oldest_pending_ts_ms: Option<i64>,
    pub first_pending_seq: Option<u64>,
    /// The highest seq of a row of the records table (pending or delivered).
    pub last_stored_seq: Option<u64>,
    pub dead_letter_records: u64,
    pub dead_letter_bytes: u64,
    /// (HTTP status, dead letters) in status order.
    pub dead_letters_by_status: Vec<(i64, u64)>,
    /// Delivered rows the library has not deleted yet.
    pub delivered_unreclaimed_records: u64,
}

/// A record of the file, as [`BufferFile::each_pending`] reads it (and the record of a
/// [`DeadLetter`]).
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub seq: u64,
    pub ts_ms: i64,
    /// The instance of its id (the file's, or the one it was accepted under while storage was
    /// degraded): 16 lowercase hexadecimal digits.
    pub instance: &'a str,
    /// The record as logged (`null` for a row without data).
    pub data: &'a [u8],
    /// [`ClockMark::Unset`] for a record logged while the wall clock was not valid: the tool is
    /// another process, maybe in another boot, and does not know the program's
    /// `clock.valid_after_unix_ms`, so `ts_ms` is as logged. [`ClockMark::Valid`] otherwise
    /// (and for every dead letter, which keeps `ts_ms` as logged).
    pub clock: ClockMark,
}

/// One dead letter, as [`BufferFile::each_dead_letter`] reads it.
#[derive(Debug, Clone, Copy)]
pub struct DeadLetter<'a> {
    pub record: Record<'a>,
    /// The HTTP status it was rejected with.
    pub status: i64,
    pub reason: &'a str,
    pub dead_unix_ms: i64,
}

impl BufferFile {
    /// Opens `path` read-only and checks it is an edgebuf buffer.
    ///
    /// A SQLite reader of a WAL file creates the `-wal` and `-shm` when they are missing, and
    /// a read-only connection cannot remove them again. So when no program holds the buffer
    /// (its lock is free) and no `-wal` with transactions lies beside it (the state after a
    /// clean close), the file alone is the whole buffer and is read in SQLite's immutable
    /// mode, which creates nothing. While a program holds it, its `-wal` and `-shm` exist
    /// already and are shared. After a crash (a `-wal` with transactions, nobody holding the
    /// lock) reading needs a `-shm`, which SQLite creates; the next open uses it.
    pub fn open(path: &Path) -> Result<BufferFile> {
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => {
                return Err(Error::storage(format!(
                    "{} is a directory, not a buffer file",
                    path.display()
                )))
            }
            Ok(_) => {}
            Err(e) => return Err(Error::storage(format!("{}: {e}", path.display()))),
        }
        let free = matches!(lock_holder(path), Ok(None));
        let wal_empty = std::fs::metadata(sibling(path, "-wal")).map_or(true, |m| m.len() <= 32);
        let conn = if free && wal_empty {
            Connection::open_with_flags(
                immutable_uri(path),
                OpenFlags::SQLITE_OPEN_READ_ONLY
                    | OpenFlags::SQLITE_OPEN_URI
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
        } else {
            Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
        }
        .map_err(|e| sql_error(path, "cannot open", e))?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(|e| sql_error(path, "cannot open", e))?;
        let q = |sql: &str| -> Result<i64> {
            conn.query_row(sql, [], |r| r.get::<_, i64>(0))
                .map_err(|e| sql_error(path, "cannot read", e))
        };
        let app_id = q("PRAGMA application_id")? as i32;
        let schema = q("PRAGMA user_version")? as i32;
        if app_id != APPLICATION_ID {
            let tables = q("SELECT count(*) FROM sqlite_schema")?;
            let what = if app_id == 0 && tables == 0 {
                "an empty SQLite file, not (yet) an edgebuf buffer".to_string()
            } else {
                format!("a SQLite file of another application (application_id {app_id:#010x}), not an edgebuf buffer")
            };
            return Err(corrupt(format!("{} is {what}", path.display())));
        }
        if schema > SCHEMA_VERSION {
            return Err(corrupt(format!(
                "{} has schema version {schema}, newer than this tool's {SCHEMA_VERSION}",
                path.display()
            )));
        }
        let tables = q("SELECT count(*) FROM sqlite_schema WHERE type='table' \
             AND name IN ('meta', 'records', 'dead_letters')")?;
        if tables != 3 {
            return Err(corrupt(format!(
                "{} is damaged: edgebuf tables are missing",
                path.display()
            )));
        }
        // Nothing of the file runs here but edgebuf's own tables (a generated column, a view
        // or a trigger could make a read endless or enormous).
        check_for_reading(&conn).map_err(|why| {
            corrupt(format!(
                "{} is not an edgebuf buffer file: {why}",
                path.display()
            ))
        })?;
        let bad_instance = || {
            corrupt(format!(
                "{} is not an edgebuf buffer file: its instance id is not 16 hexadecimal digits",
                path.display()
            ))
        };
        let instance = conn
            .query_row(
                "SELECT CASE WHEN octet_length(value) <= 64 THEN value END FROM meta \
                 WHERE key='instance'",
                [],
                |r| {
                    Ok(match r.get_ref(0)? {
                        ValueRef::Text(t) => std::str::from_utf8(t).ok().map(str::to_owned),
                        _ => None,
                    })
                },
            )
            .map_err(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => corrupt(format!(
                    "{} is damaged: its instance id is missing",
                    path.display()
                )),
                e => sql_error(path, "cannot read", e),
            })?
            .ok_or_else(bad_instance)?;
        // It goes into every exported envelope's id.
        if !valid_instance(&instance) {
            return Err(bad_instance());
        }
        Ok(BufferFile {
            conn,
            path: path.to_path_buf(),
            instance,
            schema,
        })
    }

    /// The buffer's instance id (16 lowercase hexadecimal digits).
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The schema version of the file.
    pub fn schema_version(&self) -> i32 {
        self.schema
    }

    fn read_err(&self) -> impl Fn(rusqlite::Error) -> Error + '_ {
        |e| sql_error(&self.path, "cannot read", e)
    }

    fn damaged(&self, what: &str) -> Error {
        corrupt(format!("{} is damaged: {what}", self.path.display()))
    }

    /// The delivered watermark (0 in files written before it existed).
    fn watermark(&self) -> Result<u64> {
        let wm = self
            .conn
            .query_row("SELECT value FROM meta WHERE key='wm'", [], |r| {
                r.get::<_, Option<i64>>(0)
            })
            .optional()
            .map_err(self.read_err())?
            .flatten()
            .unwrap_or(0);
        Ok(wm.max(0) as u64)
    }

    /// The backlog, in one read transaction.
    pub fn summary(&self) -> Result<Summary> {
        let rd = self.read_err();
        let tx = self.conn.unchecked_transaction().map_err(&rd)?;
        let wm = self.watermark()?;
        let (min_seq, reclaimable) = tx
            .query_row(
                "SELECT (SELECT min(seq) FROM records), count(*) FROM records WHERE seq <= ?1",
                [wm as i64],
                |r| Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, i64>(1)?)),
            )
            .map_err(&rd)?;
        if min_seq.is_some_and(|s| s < 0) {
            return Err(self.damaged("a record has a negative seq"));
        }
        let (pending, pending_bytes, oldest_ts, first_seq, last_seq) = tx
            .query_row(
                "SELECT count(*), total(length(CAST(data AS BLOB))), min(ts_ms), min(seq), \
                 (SELECT max(seq) FROM records) FROM records WHERE seq > ?1",
                [wm as i64],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)? as u64,
                        r.get::<_, f64>(1)? as u64,
                        r.get::<_, Option<i64>>(2)?,
                        r.get::<_, Option<i64>>(3)?,
                        r.get::<_, Option<i64>>(4)?,
                    ))
                },
            )
            .map_err(&rd)?;
        if oldest_ts.is_some_and(|t| t < 0) {
            return Err(self.damaged("a record has a negative ts_ms"));
        }
        let (dead, dead_bytes, dead_min_seq, dead_min_ts) = tx
            .query_row(
                "SELECT count(*), total(length(CAST(data AS BLOB))), min(seq), min(ts_ms) \
                 FROM dead_letters",
                [],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)? as u64,
                        r.get::<_, f64>(1)? as u64,
                        r.get::<_, Option<i64>>(2)?,
                        r.get::<_, Option<i64>>(3)?,
                    ))
                },
            )
            .map_err(&rd)?;
        if dead_min_seq.is_some_and(|s| s < 0) || dead_min_ts.is_some_and(|t| t < 0) {
            return Err(self.damaged("a dead letter has a negative seq or ts_ms"));
        }
        let mut by_status: Vec<(i64, u64)> = Vec::new();
        {
            let mut st = tx
                .prepare(
                    "SELECT status, count(*) FROM dead_letters GROUP BY status ORDER BY status",
                )
                .map_err(&rd)?;
            let rows = st
                .query_map([], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)? as u64))
                })
                .map_err(&rd)?;
            for row in rows {
                by_status.push(row.map_err(&rd)?);
            }
        }
        let hwm: i64 = tx
            .query_row("SELECT value FROM meta WHERE key='hwm'", [], |r| {
                r.get::<_, Option<i64>>(0)
            })
            .optional()
            .map_err(&rd)?
            .ok_or_else(|| self.damaged("its seq high-water mark is missing"))?
            .unwrap_or(0);
        drop(tx);
        Ok(Summary {
            watermark: wm,
            high_water_mark: hwm.max(last_seq.unwrap_or(0)).max(0) as u64,
            pending_records: pending,
            pending_bytes,
            oldest_pending_ts_ms: oldest_ts,
            first_pending_seq: first_seq.map(|s| s as u64),
            last_stored_seq: last_seq.map(|s| s as u64),
            dead_letter_records: dead,
            dead_letter_bytes: dead_bytes,
            dead_letters_by_status: by_status,
            delivered_unreclaimed_records: reclaimable as u64,
        })
    }

    /// Calls `f` with each pending record in seq order, at most `limit` of them, in one read
    /// transaction, until `f` breaks.
    pub fn each_pending(
        &self,
        limit: Option<u64>,
        mut f: impl FnMut(&Record<'_>) -> ControlFlow<()>,
    ) -> Result<()> {
        // Version 1 had no clock table.
        self.each_row(
            if self.schema >= 2 {
                "SELECT seq, ts_ms, inst, CASE WHEN octet_length(data) <= ?3 THEN data END, \
                 octet_length(data), EXISTS(SELECT 1 FROM clock WHERE clock.seq = records.seq) \
                 FROM records WHERE seq > ?2 ORDER BY seq LIMIT ?1"
            } else {
                "SELECT seq, ts_ms, inst, CASE WHEN octet_length(data) <= ?3 THEN data END, \
                 octet_length(data), 0 FROM records WHERE seq > ?2 ORDER BY seq LIMIT ?1"
            },
            limit,
            |r| f(&r.record),
        )
    }

    /// Calls `f` with each dead letter, oldest seq first, at most `limit` of them, in one
    /// read transaction, until `f` breaks.
    pub fn each_dead_letter(
        &self,
        limit: Option<u64>,
        f: impl FnMut(&DeadLetter<'_>) -> ControlFlow<()>,
    ) -> Result<()> {
        self.each_row(
            "SELECT seq, ts_ms, inst, CASE WHEN octet_length(data) <= ?3 THEN data END, \
             octet_length(data), 0, status, \
             CASE WHEN octet_length(reason) <= ?3 THEN reason END, octet_length(reason), \
             dead_unix_ms FROM dead_letters WHERE ?2 = ?2 ORDER BY seq, id LIMIT ?1",
            limit,
            f,
        )
    }

    /// The rows of `sql` (parameters: limit, watermark, largest row), read and checked. The
    /// first six columns are a record's (the sixth: logged with an invalid clock); a dead
    /// letter's four more follow.
    fn each_row(
        &self,
        sql: &str,
        limit: Option<u64>,
        mut f: impl FnMut(&DeadLetter<'_>) -> ControlFlow<()>,
    ) -> Result<()> {
        let rd = self.read_err();
        let tx = self.conn.unchecked_transaction().map_err(&rd)?;
        let wm = self.watermark()?;
        let limit = limit.map_or(-1, |n| n.min(i64::MAX as u64) as i64);
        let mut st = tx.prepare(sql).map_err(&rd)?;
        let dead = st.column_count() > 6;
        let mut rows = st
            .query([limit, wm as i64, LARGEST_RECORD as i64])
            .map_err(&rd)?;
        while let Some(r) = rows.next().map_err(&rd)? {
            let row = self.checked_row(r, dead)?;
            if f(&row).is_break() {
                break;
            }
        }
        Ok(())
    }

    fn checked_row<'r>(&'r self, r: &'r Row<'_>, dead: bool) -> Result<DeadLetter<'r>> {
        let rd = self.read_err();
        let what = if dead { "a dead letter" } else { "a record" };
        let non_negative = |i: usize, field: &str| -> Result<i64> {
            match r.get_ref(i).map_err(&rd)? {
                ValueRef::Integer(n) if n >= 0 => Ok(n),
                ValueRef::Integer(_) => {
                    Err(self.damaged(&format!("{what} has a negative {field}")))
                }
                _ => Err(self.damaged(&format!("{what} has a {field} that is not an integer"))),
            }
        };
        let seq = non_negative(0, "seq")? as u64;
        let ts_ms = non_negative(1, "ts_ms")?;
        let bad_instance = || {
            self.damaged(&format!(
                "{what} (seq {seq}) has an instance id that is not 16 hexadecimal digits"
            ))
        };
        let instance = match r.get_ref(2).map_err(&rd)? {
            ValueRef::Null => self.instance.as_str(),
            ValueRef::Text(t) => std::str::from_utf8(t)
                .ok()
                .filter(|i| valid_instance(i))
                .ok_or_else(bad_instance)?,
            _ => return Err(bad_instance()),
        };
        let too_large = |i: usize| -> Result<bool> {
            Ok(r.get::<_, Option<i64>>(i).map_err(&rd)?.unwrap_or(0) > LARGEST_RECORD as i64)
        };
        if too_large(4)? {
            return Err(self.damaged(&format!(
                "{what} (seq {seq}) is larger than the largest record edgebuf accepts \
                 ({LARGEST_RECORD} bytes)"
            )));
        }
        let data = match r.get_ref(3).map_err(&rd)? {
            ValueRef::Blob(b) | ValueRef::Text(b) => b,
            _ => b"null",
        };
        // Written out verbatim as the envelope's data: anything but one JSON value (which
        // edgebuf_log checked before storing it) would forge fields or lines of the output.
        if crate::record::validate(data, LARGEST_RECORD).is_err() {
            return Err(self.damaged(&format!(
                "{what} (seq {seq}) holds data that is not one JSON value"
            )));
        }
        let clock = match r.get_ref(5).map_err(&rd)? {
            ValueRef::Integer(0) => ClockMark::Valid,
            _ => ClockMark::Unset,
        };
        let record = Record {
            seq,
            ts_ms,
            instance,
            data,
            clock,
        };
        if !dead {
            return Ok(DeadLetter {
                record,
                status: 0,
                reason: "",
                dead_unix_ms: 0,
            });
        }
        let status = match r.get_ref(6).map_err(&rd)? {
            ValueRef::Integer(n) => n,
            _ => {
                return Err(self.damaged(&format!(
                    "a dead letter (seq {seq}) has a status that is not an integer"
                )))
            }
        };
        if too_large(8)? {
            return Err(self.damaged(&format!(
                "a dead letter (seq {seq}) has a reason larger than {LARGEST_RECORD} bytes"
            )));
        }
        let reason = match r.get_ref(7).map_err(&rd)? {
            ValueRef::Text(t) => std::str::from_utf8(t).ok(),
            _ => None,
        }
        .ok_or_else(|| {
            self.damaged(&format!(
                "a dead letter (seq {seq}) has a reason that is not UTF-8 text"
            ))
        })?;
        let dead_unix_ms = match r.get_ref(9).map_err(&rd)? {
            ValueRef::Integer(n) => n,
            _ => {
                return Err(self.damaged(&format!(
                    "a dead letter (seq {seq}) has a time that is not an integer"
                )))
            }
        };
        Ok(DeadLetter {
            record,
            status,
            reason,
            dead_unix_ms,
        })
    }

    /// SQLite's `integrity_check` (up to 20 problems): the problems found, none when the file
    /// is sound. An error of code [`Code::Corrupt`] carries SQLite's message alone.
    pub fn integrity_check(&self) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        let r = (|| -> rusqlite::Result<()> {
            let mut st = self.conn.prepare("PRAGMA integrity_check(20)")?;
            let rows = st.query_map([], |r| r.get::<_, String>(0))?;
            for row in rows {
                let m = row?;
                // Multi-line messages; "*** in database main ***" is a heading, not a problem.
                problems.extend(
                    m.lines()
                        .filter(|l| *l != "ok" && !l.starts_with("*** in database"))
                        .map(str::to_string),
                );
            }
            Ok(())
        })();
        match r {
            Ok(()) => Ok(problems),
            Err(e) if is_damage(&e) => Err(corrupt(e.to_string())),
            Err(e) => Err(Error::storage(format!(
                "{}: cannot check: {e}",
                self.path.display()
            ))),
        }
    }
}

fn corrupt(message: String) -> Error {
    Error::new(Code::Corrupt, message)
}

/// A SQLite error on `path`: CORRUPT when SQLite calls the file damaged.
/// A value of a type edgebuf never writes there (text for a seq, say) is damage too.
fn sql_error(path: &Path, what: &str, e: rusqlite::Error) -> Error {
    if matches!(
        e,
        rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::IntegralValueOutOfRange(..)
            | rusqlite::Error::Utf8Error(..)
    ) {
        return corrupt(format!(
            "{} is damaged: a value has the wrong type ({e})",
            path.display()
        ));
    }
    let m = format!("{}: {what}: {e}", path.display());
    if is_damage(&e) {
        corrupt(m)
    } else {
        Error::storage(m)
    }
}

/// The pid holding the buffer's lock (`<canonical path>.lock`, flock'd), read from
/// /proc/locks without touching the lock. None when free; Err when it cannot be told.
pub fn lock_holder(path: &Path) -> std::io::Result<Option<u32>> {
    use std::os::unix::fs::MetadataExt;
    let canon = path.canonicalize()?;
    let Ok(meta) = std::fs::metadata(sibling(&canon, ".lock")) else {
        return Ok(None); // never opened by edgebuf, or removed: nobody holds it
    };
    let locks = std::fs::read_to_string("/proc/locks")?;
    let dev = meta.dev();
    let (maj, min) = (libc::major(dev), libc::minor(dev));
    // "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF" (major:minor in hex).
    let want = format!("{maj:02x}:{min:02x}:{}", meta.ino());
    for line in locks.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() >= 6 && f[1] == "FLOCK" && f[5] == want {
            return Ok(f[4].parse().ok());
        }
    }
    Ok(None)
}

/// The sizes (st_size) of a buffer file, its `-wal` and its `-shm`; 0 for a missing one.
pub fn file_sizes(path: &Path) -> [u64; 3] {
    ["", "-wal", "-shm"]
        .map(|suffix| std::fs::metadata(sibling(path, suffix)).map_or(0, |m| m.len()))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{buffer_path, insert, insert_strings, open, raw};
    use super::*;

    /// (seq, ts_ms, instance, data) of a pending record.
    type Row = (u64, i64, String, Vec<u8>);

    fn pending(b: &BufferFile, limit: Option<u64>) -> Result<Vec<Row>> {
        let mut v = Vec::new();
        b.each_pending(limit, |r| {
            v.push((r.seq, r.ts_ms, r.instance.to_string(), r.data.to_vec()));
            ControlFlow::Continue(())
        })?;
        Ok(v)
    }

    fn dead(b: &BufferFile) -> Result<Vec<(u64, i64, String)>> {
        let mut v = Vec::new();
        b.each_dead_letter(None, |d| {
            v.push((d.record.seq, d.status, d.reason.to_string()));
            ControlFlow::Continue(())
        })?;
        Ok(v)
    }

    /// A closed buffer with records 1..=10: 1..=3 delivered (under the watermark), 5 and 7
    /// dead letters.
    fn sample(path: &Path) -> String {
        let mut s = open(path);
        insert(&mut s, 1..=10);
        s.settle_delivered(1, 3, 3, 21, None).expect("settle");
        s.dead_letter(&[5], 400, "bad \"five\"").expect("dead");
        s.dead_letter(&[7], 422, "bad seven").expect("dead");
        s.instance().to_string()
    }

    #[test]
    fn records_logged_with_an_invalid_clock_read_as_unset() {
        let (_dir, path) = buffer_path();
        sample(&path);
        // As the store writes them for records logged before the wall clock was valid.
        raw(&path)
            .execute_batch(
                "INSERT INTO clock VALUES (4, 1000, '0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0'), \
                 (9, 'hostile', x'00'), (2, 5, 'under the watermark')",
            )
            .expect("clock rows");
        let b = BufferFile::open(&path).expect("open");
        let mut marks = Vec::new();
        b.each_pending(None, |r| {
            marks.push((r.seq, r.clock));
            ControlFlow::Continue(())
        })
        .expect("read");
        use ClockMark::{Unset, Valid};
        assert_eq!(
            marks,
            vec![(4, Unset), (6, Valid), (8, Valid), (9, Unset), (10, Valid)]
        );
        let mut dead_marks = Vec::new();
        b.each_dead_letter(None, |d| {
            dead_marks.push(d.record.clock);
            ControlFlow::Continue(())
        })
        .expect("read");
        assert_eq!(dead_marks, vec![Valid, Valid]);
    }

    /// The sample buffer, changed by `sql`.
    fn tampered(sql: &str) -> (tempfile::TempDir, PathBuf) {
        let (dir, path) = buffer_path();
        sample(&path);
        raw(&path).execute_batch(sql).expect("tamper");
        (dir, path)
    }

    #[test]
    fn reads_what_the_store_wrote_and_creates_nothing() {
        let (dir, path) = buffer_path();
        let instance = sample(&path);
        let names = || {
            let mut v: Vec<_> = std::fs::read_dir(dir.path())
                .expect("dir")
                .map(|e| e.expect("entry").file_name())
                .collect();
            v.sort();
            v
        };
        let before = (names(), std::fs::read(&path).expect("read"));
        let b = BufferFile::open(&path).expect("open");
        assert_eq!(b.instance(), instance);
        assert_eq!(b.schema_version(), SCHEMA_VERSION);
        let sum = b.summary().expect("summary");
        assert_eq!(
            sum,
            Summary {
                watermark: 3,
                high_water_mark: 10,
                pending_records: 5,
                pending_bytes: 4 * 7 + 8,
                oldest_pending_ts_ms: Some(super::super::testing::rec(4, "").ts_ms),
                first_pending_seq: Some(4),
                last_stored_seq: Some(10),
                dead_letter_records: 2,
                dead_letter_bytes: 14,
                dead_letters_by_status: vec![(400, 1), (422, 1)],
                delivered_unreclaimed_records: 3,
            }
        );
        let p = pending(&b, None).expect("pending");
        assert_eq!(
            p.iter().map(|r| r.0).collect::<Vec<_>>(),
            vec![4, 6, 8, 9, 10]
        );
        assert!(p.iter().all(|r| r.2 == instance));
        assert_eq!(p[4].3, b"{\"i\":10}");
        assert_eq!(pending(&b, Some(2)).expect("limit").len(), 2);
        let mut n = 0;
        b.each_pending(None, |_| {
            n += 1;
            ControlFlow::Break(())
        })
        .expect("break");
        assert_eq!(n, 1);
        assert_eq!(
            dead(&b).expect("dead"),
            vec![
                (5, 400, "bad \"five\"".into()),
                (7, 422, "bad seven".into())
            ]
        );
        assert_eq!(b.integrity_check().expect("check"), Vec::<String>::new());
        drop(b);
        assert_eq!((names(), std::fs::read(&path).expect("read")), before);
        assert_eq!(lock_holder(&path).expect("locks"), None);
    }

    #[test]
    fn reads_a_buffer_a_program_holds_open() {
        let (_dir, path) = buffer_path();
        let mut s = open(&path);
        insert(&mut s, 1..=4);
        assert_eq!(lock_holder(&path).expect("locks"), Some(std::process::id()));
        let b = BufferFile::open(&path).expect("open");
        assert_eq!(b.summary().expect("summary").pending_records, 4);
        insert(&mut s, 5..=6);
        assert_eq!(
            pending(&b, None).expect("pending").len(),
            6,
            "the -wal is shared"
        );
    }

    #[test]
    fn refuses_what_is_not_an_edgebuf_buffer() {
        let (dir, path) = buffer_path();
        let e = BufferFile::open(&path).err().expect("missing");
        assert_eq!(e.code(), Code::Storage, "{e:?}");
        let e = BufferFile::open(dir.path()).err().expect("a directory");
        assert!(
            e.message().ends_with("is a directory, not a buffer file"),
            "{e:?}"
        );
        raw(&path)
            .execute_batch("CREATE TABLE t(x)")
            .expect("foreign");
        let e = BufferFile::open(&path).err().expect("foreign");
        assert_eq!(e.code(), Code::Corrupt);
        assert!(
            e.message()
                .contains("a SQLite file of another application (application_id 0x00000000)"),
            "{e:?}"
        );

        let cases = [
            (
                "CREATE VIEW v AS SELECT * FROM records",
                "is not an edgebuf buffer file",
            ),
            ("CREATE VIEW v AS SELECT * FROM records", "view v"),
            (
                "UPDATE meta SET value = 12345 WHERE key = 'instance'",
                "16 hexadecimal digits",
            ),
            (
                "DELETE FROM meta WHERE key = 'instance'",
                "instance id is missing",
            ),
        ];
        for (sql, want) in cases {
            let (_dir, path) = tampered(sql);
            let e = BufferFile::open(&path).err().expect("refused");
            assert_eq!(e.code(), Code::Corrupt, "{sql}: {e:?}");
            assert!(e.message().contains(want), "{sql}: {e:?}");
        }
    }

    #[test]
    fn hostile_rows_give_clear_errors() {
        let cases: [(&str, &str); 10] = [
            (
                "UPDATE records SET data = '1,\"id\":\"forged\"' WHERE seq = 9",
                "not one JSON value",
            ),
            (
                "UPDATE dead_letters SET data = x'7b1b5b33316d7d' WHERE seq = 7",
                "not one JSON value",
            ),
            (
                "UPDATE records SET ts_ms = -1 WHERE seq = 9",
                "negative ts_ms",
            ),
            ("UPDATE records SET seq = -9 WHERE seq = 1", "negative seq"),
            (
                "UPDATE records SET inst = 'ABCDEF0123456789' WHERE seq = 9",
                "instance id",
            ),
            (
                "UPDATE records SET inst = x'00' WHERE seq = 9",
                "instance id",
            ),
            (
                "UPDATE dead_letters SET ts_ms = 'soon' WHERE seq = 7",
                "ts_ms",
            ),
            (
                "UPDATE dead_letters SET status = 'x' WHERE seq = 7",
                "status",
            ),
            (
                "UPDATE dead_letters SET reason = x'ff' WHERE seq = 7",
                "reason",
            ),
            (
                "UPDATE meta SET key = 'hwn' WHERE key = 'hwm'",
                "high-water mark is missing",
            ),
        ];
        for (sql, want) in cases {
            let (_dir, path) = tampered(sql);
            let b = BufferFile::open(&path).expect("open");
            let errs: Vec<Error> = [b.summary().err(), pending(&b, None).err(), dead(&b).err()]
                .into_iter()
                .flatten()
                .collect();
            assert!(!errs.is_empty(), "{sql}");
            for e in errs {
                assert_eq!(e.code(), Code::Corrupt, "{sql}: {e:?}");
                assert!(e.message().contains(want), "{sql}: {e:?}");
                assert!(e.message().starts_with(&path.display().to_string()));
            }
        }
    }

    #[test]
    fn a_row_larger_than_any_record_is_not_loaded() {
        let (_dir, path) = buffer_path();
        sample(&path);
        raw(&path)
            .execute(
                "UPDATE records SET data = zeroblob(?1) WHERE seq = 9",
                [LARGEST_RECORD as i64 + 1],
            )
            .expect("tamper");
        let b = BufferFile::open(&path).expect("open");
        let mut seen = Vec::new();
        let e = b
            .each_pending(None, |r| {
                seen.push(r.seq);
                ControlFlow::Continue(())
            })
            .expect_err("damaged");
        assert_eq!(seen, vec![4, 6, 8], "the rows before it");
        assert_eq!(e.code(), Code::Corrupt);
        assert!(
            e.message()
                .contains("(seq 9) is larger than the largest record"),
            "{e:?}"
        );
    }

    #[test]
    fn integrity_check_reports_damage() {
        let (_dir, path) = buffer_path();
        {
            let mut s = open(&path);
            insert_strings(&mut s, 200, 502);
        }
        let mut bytes = std::fs::read(&path).expect("read");
        let page = 4096;
        let n = bytes.len() / page;
        assert!(n > 10);
        // Garbage over a page in the middle.
        for b in &mut bytes[page * (n / 2)..page * (n / 2 + 1)] {
            *b = 0x5A;
        }
        std::fs::write(&path, bytes).expect("write");
        let b = BufferFile::open(&path).expect("the header is sound");
        match b.integrity_check() {
            Ok(problems) => assert!(!problems.is_empty()),
            Err(e) => assert_eq!(e.code(), Code::Corrupt, "{e:?}"),
        }
    }
}
