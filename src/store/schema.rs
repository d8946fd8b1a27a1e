//! The schema of a buffer file, and the exact check that a file holds nothing else: a buffer
//! file may come from anywhere, and no trigger, view or altered table of someone else's may
//! run inside the host or the tool.

use super::describe;
use super::open::OpenFailure;
use rusqlite::config::DbConfig;
use rusqlite::Connection;

/// SQLite `application_id` of an edgebuf file ("edgb").
pub(crate) const APPLICATION_ID: i32 = 0x6564_6762;
/// Schema version kept in `user_version`.
pub(crate) const SCHEMA_VERSION: i32 = 1;

pub(super) const SCHEMA: &str = "
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
pub(super) fn check_schema(conn: &Connection) -> std::result::Result<(), OpenFailure> {
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
pub(super) fn check_for_reading(conn: &Connection) -> std::result::Result<(), String> {
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
        assert_eq!(schema_difference(&c).expect("schema"), None);
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
            let why = schema_difference(&c)
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
            ("PRAGMA user_version=2", "newer than this library's"),
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
