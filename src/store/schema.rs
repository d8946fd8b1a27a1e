//! The schema of a buffer file, and the exact check that a file holds nothing else: a buffer
//! file may come from anywhere, and no trigger, view or altered table of someone else's may
//! run inside the host or the tool.

use super::describe;
use super::open::OpenFailure;
use rusqlite::config::DbConfig;
use rusqlite::Connection;

/// SQLite `application_id` of an edgebuf file ("edgb").
pub(crate) const APPLICATION_ID: i32 = 0x6564_6762;
/// Schema version kept in `user_version`. Version 1 had no `clock` table; opening a version-1
/// file adds it (`upgrade`).
pub(crate) const SCHEMA_VERSION: i32 = 2;

/// The tables of version 1.
macro_rules! schema_v1 {
    () => {
        "
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
"
    };
}

/// Version 2 adds the boot clock and boot id of records logged while the wall clock was not
/// valid (src/clock.rs), one row per such record, deleted with it; other records have none.
macro_rules! clock_table {
    () => {
        "
CREATE TABLE IF NOT EXISTS clock(
    seq     INTEGER PRIMARY KEY,
    boot_ms INTEGER NOT NULL,
    boot_id TEXT NOT NULL);
"
    };
}

const SCHEMA_V1: &str = schema_v1!();
pub(super) const SCHEMA: &str = concat!(schema_v1!(), clock_table!());

/// Brings a version-1 file (whose schema `check_schema` found exact) to this version, in one
/// transaction.
pub(super) fn upgrade(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(concat!(
        "BEGIN IMMEDIATE;",
        clock_table!(),
        "PRAGMA user_version=2; COMMIT;"
    ))
    .inspect_err(|_| {
        let _ = conn.execute_batch("ROLLBACK");
    })
}

/// Defensive mode and an untrusted schema: SQL functions with side effects cannot be reached
/// from the schema, and the schema itself cannot be corrupted through SQL.
pub(super) fn harden(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false)?;
    Ok(())
}

/// One row of `sqlite_schema` (type, name, table, SQL), as bytes: a damaged or hostile file
/// may hold anything there, UTF-8 or not.
type SchemaRow = (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>);

/// The schema objects edgebuf creates, as SQLite records them, in schema `version` (1 or
/// this one).
fn expected_schema(version: i32) -> rusqlite::Result<Vec<SchemaRow>> {
    let c = Connection::open_in_memory()?;
    c.execute_batch(if version == 1 { SCHEMA_V1 } else { SCHEMA })?;
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

/// CORRUPT (not ours) unless the file holds exactly the tables edgebuf creates in schema
/// `version` (1, or this one for any other).
pub(super) fn check_schema(
    conn: &Connection,
    version: i32,
) -> std::result::Result<(), OpenFailure> {
    match schema_difference(conn, version) {
        Ok(None) => Ok(()),
        Ok(Some(why)) => Err(OpenFailure::Foreign(why)),
        Err(e) => Err(OpenFailure::from_sql("cannot read the schema", e)),
    }
}

/// None when the schema is exactly edgebuf's of `version`; otherwise why not, fit to print.
fn schema_difference(conn: &Connection, version: i32) -> rusqlite::Result<Option<String>> {
    let want = expected_schema(version)?;
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
/// that no trigger, view or altered table in the file runs in the reader (that of the file's
/// `user_version`: 1 or this one). Err says why not.
pub(super) fn check_for_reading(conn: &Connection) -> std::result::Result<(), String> {
    harden(conn).map_err(|e| describe(&e))?;
    let version: i32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| describe(&e))?;
    match schema_difference(conn, version) {
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
pub(crate) fn valid_instance(s: &str) -> bool {
    s.len() == 16
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{buffer_path, config, insert, open, raw};
    use super::super::Store;
    use super::*;
    use crate::error::Code;

    #[test]
    fn a_new_file_has_exactly_edgebufs_schema() {
        let (_dir, path) = buffer_path();
        drop(open(&path));
        let c = raw(&path);
        assert_eq!(schema_difference(&c, SCHEMA_VERSION).expect("schema"), None);
        assert_eq!(check_for_reading(&c), Ok(()));
        let app: i32 = c
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .expect("application_id");
        assert_eq!(app, APPLICATION_ID);
        let v: i32 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("user_version");
        assert_eq!(v, SCHEMA_VERSION);
    }

    #[test]
    fn an_added_trigger_is_refused_and_nothing_runs() {
        let (_dir, path) = buffer_path();
        {
            let mut s = open(&path);
            insert(&mut s, 1..=3);
        }
        {
            let c = raw(&path);
            c.execute_batch(
                "CREATE TABLE spy(n); CREATE TRIGGER snoop AFTER DELETE ON records \
                 BEGIN INSERT INTO spy VALUES(old.seq); END;",
            )
            .expect("tamper");
            let why = schema_difference(&c, SCHEMA_VERSION)
                .expect("schema")
                .expect("a difference");
            assert!(why.contains("trigger snoop"), "{why}");
            assert!(why.contains("table spy"), "{why}");
            assert!(check_for_reading(&c).is_err());
        }
        let before = std::fs::read(&path).expect("read");
        for on_corrupt in ["quarantine", "fail"] {
            let cfg = config(&path, &[("storage.on_corrupt", on_corrupt)]);
            let e = Store::open(&cfg).err().expect("refused");
            assert_eq!(e.code(), Code::Corrupt, "{e:?}");
            assert!(e.message().contains("trigger snoop"), "{e:?}");
            assert!(e.message().contains("left untouched"), "{e:?}");
            assert_eq!(
                std::fs::read(&path).expect("read"),
                before,
                "not moved, not changed"
            );
        }
    }

    #[test]
    fn altered_files_are_refused() {
        let cases = [
            ("DROP TABLE dead_letters", "tables missing"),
            (
                "ALTER TABLE records ADD COLUMN extra AS (length(data) * 2)",
                "table records",
            ),
            ("PRAGMA user_version=3", "newer than this library's"),
            ("DROP TABLE clock", "tables missing"),
            (
                "UPDATE meta SET value='\u{1b}[31mevil' WHERE key='instance'",
                "16 hexadecimal digits",
            ),
        ];
        for (sql, want) in cases {
            let (_dir, path) = buffer_path();
            drop(open(&path));
            raw(&path).execute_batch(sql).expect("alter");
            let e = Store::open(&config(&path, &[])).err().expect("refused");
            assert_eq!(e.code(), Code::Corrupt, "{sql}: {e:?}");
            assert!(e.message().contains(want), "{sql}: {e:?}");
        }
    }

    /// A buffer file as version 1 of the library created it (its schema text from git
    /// history), holding records 1..=3 and one dead letter.
    fn version_1_file(path: &std::path::Path) {
        let c = raw(path);
        c.execute_batch(
            "PRAGMA auto_vacuum=INCREMENTAL; PRAGMA journal_mode=WAL; BEGIN;
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
PRAGMA application_id=1701078882; PRAGMA user_version=1;
INSERT INTO meta(key, value) VALUES('instance', '0123456789abcdef'), ('hwm', 4);
INSERT INTO records VALUES (1, 1764320000001, 0, NULL, CAST('{\"i\":1}' AS BLOB)),
    (2, 1764320000002, 0, NULL, CAST('{\"i\":2}' AS BLOB)),
    (3, 1764320000003, 0, NULL, CAST('{\"i\":3}' AS BLOB));
INSERT INTO dead_letters VALUES (1, 4, 1764320000004, '0123456789abcdef', 400, 'bad', 1764320000005, CAST('4' AS BLOB));
COMMIT;",
        )
        .expect("version 1 file");
    }

    #[test]
    fn a_version_1_file_is_upgraded_in_place_and_keeps_its_records() {
        assert_eq!(APPLICATION_ID, 1_701_078_882);
        let (_dir, path) = buffer_path();
        version_1_file(&path);
        // The tool reads it as it is.
        {
            let b = super::super::inspect::BufferFile::open(&path).expect("inspect v1");
            assert_eq!(b.schema_version(), 1);
            assert_eq!(b.summary().expect("summary").pending_records, 3);
        }
        {
            let mut s = open(&path);
            assert_eq!(s.instance(), "0123456789abcdef");
            assert_eq!(super::super::testing::pending_seqs(&mut s), vec![1, 2, 3]);
            assert_eq!((s.dead_letter_records(), s.next_seq()), (1, 5));
            assert!(!s.clock_rows);
        }
        let c = raw(&path);
        let v: i32 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("user_version");
        assert_eq!(v, SCHEMA_VERSION);
        assert_eq!(schema_difference(&c, SCHEMA_VERSION).expect("schema"), None);
        drop(c);
        let b = super::super::inspect::BufferFile::open(&path).expect("inspect v2");
        assert_eq!(b.schema_version(), 2);
        assert_eq!(b.summary().expect("summary").pending_records, 3);
        drop(b);
        // And opens again as version 2.
        let mut s = open(&path);
        assert_eq!(super::super::testing::pending_seqs(&mut s), vec![1, 2, 3]);
    }

    #[test]
    fn a_version_1_file_with_more_than_version_1_is_refused_untouched() {
        for sql in [
            "CREATE TABLE spy(n)",
            "CREATE TABLE clock(seq INTEGER PRIMARY KEY, boot_ms INTEGER NOT NULL, boot_id TEXT NOT NULL)",
        ] {
            let (_dir, path) = buffer_path();
            version_1_file(&path);
            raw(&path).execute_batch(sql).expect("tamper");
            // Checkpointed into the file, so that its bytes are the whole of it.
            raw(&path)
                .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
                .expect("checkpoint");
            let before = std::fs::read(&path).expect("read");
            let e = Store::open(&config(&path, &[])).err().expect("refused");
            assert_eq!(e.code(), Code::Corrupt, "{sql}: {e:?}");
            assert_eq!(std::fs::read(&path).expect("read"), before, "{sql}");
            let v: i32 = raw(&path)
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .expect("user_version");
            assert_eq!(v, 1, "{sql}");
        }
    }

    #[test]
    fn instance_ids_are_16_lowercase_hex_digits() {
        assert!(valid_instance("0123456789abcdef"));
        for bad in [
            "",
            "0123456789ABCDEF",
            "0123456789abcde",
            "0123456789abcdefa",
            "0123456789abcdeg",
        ] {
            assert!(!valid_instance(bad), "{bad}");
        }
        assert_eq!(printable_name(b"a\x1b[b\xff"), "a?[b?");
    }
}
