//! Capacity policies, TTL, the lock and damaged files, through the Rust API, with the endpoint
//! down (a dead port) so that records stay pending, then delivered to a real receiver.

mod common;
use common::*;
use edgebuf::{Buffer, Code, Config};
use std::time::{Duration, Instant};

fn down_config(dir: &std::path::Path) -> Config {
    config(dir, &format!("http://127.0.0.1:{}/ingest", dead_port()))
}

fn invariant(b: &Buffer) {
    let s = b.status();
    assert_eq!(
        s.pending_records + s.delivered_total + s.dropped_total + s.dead_lettered_total,
        s.pending_at_open + s.logged_total,
        "{s:?}"
    );
}

fn rec(i: u32) -> Vec<u8> {
    format!("{{\"i\":{i}}}").into_bytes()
}

/// Waits (bounded) until the writer has applied the policy to what was logged.
fn settle(b: &Buffer) {
    b.sync(Duration::from_secs(5)).unwrap();
}

#[test]
fn drop_oldest_keeps_the_newest_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = down_config(dir.path());
    c.set("capacity.max_records", "10").unwrap();
    let b = Buffer::open(&c, None).unwrap();
    for i in 0..30 {
        b.log(&rec(i)).unwrap();
    }
    settle(&b);
    let s = b.status();
    assert_eq!(s.logged_total, 30);
    assert_eq!(s.pending_records, 10, "{s:?}");
    assert_eq!(s.dropped_total, 20);
    invariant(&b);
    b.close(Duration::ZERO).unwrap_err();
    // What was kept: the newest ten.
    assert_eq!(
        deliver_what_was_kept(dir.path()),
        (20..30).collect::<Vec<_>>()
    );
}

/// Opens the buffer in `dir` again against a receiver, delivers everything, and returns the
/// `i` of each record received, in order.
fn deliver_what_was_kept(dir: &std::path::Path) -> Vec<u64> {
    let rx = Server::receiver();
    let mut c = config(dir, &rx.url());
    c.set("capacity.max_records", "10").unwrap();
    let b = Buffer::open(&c, None).unwrap();
    b.flush(Duration::from_secs(10)).unwrap();
    b.close(Duration::from_secs(1)).unwrap();
    rx.delivered()
        .iter()
        .map(|e| e["data"]["i"].as_u64().unwrap())
        .collect()
}

/// drop_oldest when the overflow spans separate commits: the oldest records already on disk
/// go, not the newest (a mutation that picked the newest passed the test above, where all of
/// it is one commit and only the in-batch path runs).
#[test]
fn drop_oldest_across_commits_drops_the_oldest_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = down_config(dir.path());
    c.set("capacity.max_records", "10").unwrap();
    // Records in a request are never dropped: when a drop came while the worker was trying
    // the dead endpoint, the new record went instead (correctly), and the test failed about
    // one run in ten. So the overflow comes while the worker waits out a backoff of up to an
    // hour after its first failed attempt.
    c.set("retry.initial_ms", "3600000").unwrap();
    c.set("retry.max_ms", "3600000").unwrap();
    let b = Buffer::open(&c, None).unwrap();
    for i in 0..10 {
        b.log(&rec(i)).unwrap();
    }
    settle(&b);
    assert!(
        wait_until(Duration::from_secs(10), || {
            let s = b.status();
            s.failed_attempts_total >= 1 && s.next_retry_in_ms > 0
        }),
        "the worker never tried the dead endpoint: {:?}",
        b.status()
    );
    for i in 10..15 {
        b.log(&rec(i)).unwrap();
        settle(&b);
    }
    let s = b.status();
    assert_eq!((s.pending_records, s.dropped_total), (10, 5), "{s:?}");
    invariant(&b);
    b.close(Duration::ZERO).unwrap_err();
    assert_eq!(
        deliver_what_was_kept(dir.path()),
        (5..15).collect::<Vec<_>>()
    );
}

/// record.ttl_ms ages records of an earlier run from the open that found them (monotonic
/// clock), not from their wall-clock ts_ms: a restart drops nothing at once, and they go once
/// ttl has passed since open, even when the wall clock that stamped them was ahead (set here
/// to the year 2100, as on a board whose clock was wrong until NTP). A mutation that measured
/// them on the wall clock passed the TTL test above, where both clocks agree within one run;
/// here it never expires them.
#[test]
fn ttl_of_records_from_an_earlier_run_counts_from_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = down_config(dir.path());
    c.set("record.ttl_ms", "1500").unwrap();
    let b = Buffer::open(&c, None).unwrap();
    for i in 0..5 {
        b.log(&rec(i)).unwrap();
    }
    settle(&b);
    b.close(Duration::ZERO).unwrap_err();
    {
        let conn = rusqlite::Connection::open(dir.path().join("buf.db")).unwrap();
        conn.execute("UPDATE records SET ts_ms = 4102444800000", [])
            .unwrap();
    }
    let b = Buffer::open(&c, None).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    settle(&b);
    let s = b.status();
    assert_eq!(
        (s.pending_records, s.dropped_total),
        (5, 0),
        "dropped at open: {s:?}"
    );
    // Once ttl has passed since open they expire (bounded wait).
    let end = Instant::now() + Duration::from_secs(10);
    while b.status().dropped_total < 5 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
    }
    let s = b.status();
    assert_eq!((s.pending_records, s.dropped_total), (0, 5), "{s:?}");
    invariant(&b);
    b.close(Duration::ZERO).unwrap();
}

#[test]
fn drop_newest_and_reject_refuse_new_records() {
    for (policy, sync) in [
        ("drop_newest", false),
        ("drop_newest", true),
        ("reject", false),
        ("reject", true),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut c = down_config(dir.path());
        c.set("capacity.max_bytes", "4096").unwrap();
        c.set("capacity.when_full", policy).unwrap();
        if sync {
            c.set("durability", "sync").unwrap();
        }
        let b = Buffer::open(&c, None).unwrap();
        let big = format!("\"{}\"", "x".repeat(1000));
        let mut refused = 0;
        for _ in 0..8 {
            match b.log(big.as_bytes()) {
                Ok(()) => {}
                Err(e) => {
                    assert_eq!(e.code(), Code::Full, "{policy} sync={sync}: {e}");
                    refused += 1;
                }
            }
        }
        settle(&b);
        let s = b.status();
        assert_eq!(s.pending_records, 4, "{policy} sync={sync}: {s:?}");
        assert!(s.pending_bytes <= 4096);
        match (policy, sync) {
            ("drop_newest", false) => {
                assert_eq!(refused, 0);
                assert_eq!((s.logged_total, s.dropped_total), (8, 4));
            }
            ("drop_newest", true) => {
                assert_eq!(refused, 4);
                assert_eq!((s.logged_total, s.dropped_total), (8, 4));
            }
            _ => {
                assert_eq!(refused, 4);
                assert_eq!((s.logged_total, s.dropped_total), (4, 0));
            }
        }
        invariant(&b);
        let _ = b.close(Duration::ZERO);
    }
}

#[test]
fn ttl_drops_expired_pending_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = down_config(dir.path());
    c.set("record.ttl_ms", "300").unwrap();
    let b = Buffer::open(&c, None).unwrap();
    for i in 0..5 {
        b.log(&rec(i)).unwrap();
    }
    settle(&b);
    assert_eq!(b.status().pending_records, 5);
    let end = Instant::now() + Duration::from_secs(5);
    while b.status().dropped_total < 5 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    let s = b.status();
    assert_eq!((s.pending_records, s.dropped_total), (0, 5), "{s:?}");
    invariant(&b);
    b.close(Duration::ZERO).unwrap();
}

#[test]
fn many_threads_each_record_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Server::receiver();
    let b = std::sync::Arc::new(Buffer::open(&config(dir.path(), &rx.url()), None).unwrap());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let b = std::sync::Arc::clone(&b);
            std::thread::spawn(move || {
                for i in 0..250 {
                    b.log(format!("{{\"t\":{t},\"i\":{i}}}").as_bytes())
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    b.flush(Duration::from_secs(20)).unwrap();
    let got = rx.delivered();
    assert_eq!(seqs(&got), (1..=2000).collect::<Vec<_>>());
    // Each thread's records keep their order.
    for t in 0..8 {
        let is: Vec<u64> = got
            .iter()
            .filter(|e| e["data"]["t"] == t)
            .map(|e| e["data"]["i"].as_u64().unwrap())
            .collect();
        assert_eq!(is, (0..250).collect::<Vec<_>>());
    }
    invariant(&b);
    b.close(Duration::from_secs(1)).unwrap();
}

#[test]
fn one_owner_per_file_whatever_the_spelling() {
    let dir = tempfile::tempdir().unwrap();
    let c = down_config(dir.path());
    let b = Buffer::open(&c, None).unwrap();
    let mut other = c.clone();
    let spelled = dir.path().join(".").join("buf.db");
    other.set("path", spelled.to_str().unwrap()).unwrap();
    let e = Buffer::open(&other, None)
        .err()
        .expect("second open must fail");
    assert_eq!(e.code(), Code::Locked);
    assert!(e.message().contains("buf.db"), "{}", e.message());
    b.close(Duration::ZERO).unwrap();
    Buffer::open(&other, None)
        .unwrap()
        .close(Duration::ZERO)
        .unwrap();
}

/// A hard link is another name for the same file: the lock is taken on the file itself (its
/// inode), so the second open is LOCKED, here and after the first closes it is free again.
/// Before the inode lock, both opened and logged, and SQLite then found "Rowid out of order".
#[test]
fn one_owner_per_file_whatever_the_name_hard_links_included() {
    let dir = tempfile::tempdir().unwrap();
    let c = down_config(dir.path());
    let b = Buffer::open(&c, None).unwrap();
    b.log(b"{\"first\":1}").unwrap();
    b.sync(Duration::from_secs(5)).unwrap();
    let link = dir.path().join("link.db");
    std::fs::hard_link(dir.path().join("buf.db"), &link).unwrap();
    let mut other = c.clone();
    other.set("path", link.to_str().unwrap()).unwrap();
    let e = Buffer::open(&other, None)
        .err()
        .expect("a second open through a hard link must fail");
    assert_eq!(e.code(), Code::Locked, "{}", e.message());
    assert!(e.message().contains("link.db"), "{}", e.message());
    b.close(Duration::ZERO).unwrap_err();
    let b2 = Buffer::open(&other, None).unwrap();
    assert_eq!(b2.status().pending_at_open, 1);
    b2.close(Duration::ZERO).unwrap_err();
}

/// `<path>.lock` is never opened through a symbolic link: a planted one (dangling here) makes
/// open fail, and the file it points to is not created.
#[test]
fn the_lock_file_is_never_opened_through_a_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let c = down_config(dir.path());
    let target = dir.path().join("planted-target");
    std::os::unix::fs::symlink(&target, dir.path().join("buf.db.lock")).unwrap();
    let e = Buffer::open(&c, None)
        .err()
        .expect("open refuses a symlinked lock file");
    assert_eq!(e.code(), Code::Storage, "{}", e.message());
    assert!(e.message().contains("symbolic link"), "{}", e.message());
    assert!(!target.exists(), "the symlink's target was created");
}

#[test]
fn damaged_file_is_quarantined_or_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("buf.db");
    // An edgebuf file (its header and application_id intact) whose pages are damaged.
    let mut c = down_config(dir.path());
    Buffer::open(&c, None)
        .unwrap()
        .close(Duration::ZERO)
        .unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    for b in &mut bytes[100..] {
        *b = 0x5a;
    }
    bytes.resize(8192, 0x5a);
    std::fs::write(&path, &bytes).unwrap();
    c.set("storage.on_corrupt", "fail").unwrap();
    let e = Buffer::open(&c, None)
        .err()
        .expect("fail mode refuses a damaged file");
    assert_eq!(e.code(), Code::Corrupt);
    assert!(e.message().contains("damaged"), "{}", e.message());
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "left untouched");
    c.set("storage.on_corrupt", "quarantine").unwrap();
    let b = Buffer::open(&c, None).unwrap();
    let moved: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("buf.db.corrupt-"))
        .collect();
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert_eq!(
        std::fs::read(dir.path().join(&moved[0])).unwrap(),
        bytes,
        "moved as it was"
    );
    b.log(b"{}").unwrap();
    b.close(Duration::ZERO).unwrap_err();
    // A file without SQLite's header is nobody's buffer: CORRUPT in both modes, never moved.
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![0x5au8; 8192]).unwrap();
    c.set("path", junk.to_str().unwrap()).unwrap();
    for mode in ["fail", "quarantine"] {
        c.set("storage.on_corrupt", mode).unwrap();
        let e = Buffer::open(&c, None).err().expect("not an edgebuf file");
        assert_eq!(e.code(), Code::Corrupt, "{mode}");
        assert_eq!(std::fs::read(&junk).unwrap(), vec![0x5au8; 8192], "{mode}");
    }
}

#[test]
fn a_sqlite_file_of_another_application_is_never_moved() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("buf.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("CREATE TABLE foo(x); INSERT INTO foo VALUES (1);")
        .unwrap();
    drop(conn);
    let e = Buffer::open(&down_config(dir.path()), None)
        .err()
        .expect("foreign file");
    assert_eq!(e.code(), Code::Corrupt);
    assert!(path.exists());
    let conn = rusqlite::Connection::open(&path).unwrap();
    let n: i64 = conn
        .query_row("SELECT count(*) FROM foo", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
}

#[test]
fn bad_records_are_refused_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = down_config(dir.path());
    c.set("record.max_bytes", "64").unwrap();
    let b = Buffer::open(&c, None).unwrap();
    let deep = format!("{}{}", "[".repeat(129), "]".repeat(129));
    let exact = format!("\"{}\"", "a".repeat(62));
    let over = format!("\"{}\"", "a".repeat(63));
    for bad in [
        &b"\xff"[..],
        b"",
        b"{",
        b"1 2",
        deep.as_bytes(),
        over.as_bytes(),
    ] {
        assert_eq!(b.log(bad).unwrap_err().code(), Code::InvalidRecord);
    }
    b.log(exact.as_bytes()).unwrap();
    assert_eq!(b.status().logged_total, 1);
    let _ = b.close(Duration::ZERO);
}

#[test]
fn files_are_private_to_the_owner() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let b = Buffer::open(&down_config(dir.path()), None).unwrap();
    b.log(b"{}").unwrap();
    settle(&b);
    for f in ["buf.db", "buf.db-wal", "buf.db-shm", "buf.db.lock"] {
        let mode = std::fs::metadata(dir.path().join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    let _ = b.close(Duration::ZERO);
}

#[test]
fn a_file_that_may_not_grow_applies_the_policy_and_counts_drops() {
    // disk.min_free_bytes above the free space of any disk: the file may only reuse its own
    // free pages, so SQLite answers SQLITE_FULL as soon as it would grow.
    for (policy, sync, code) in [
        ("drop_oldest", false, None),
        ("reject", true, Some(Code::Full)),
        ("drop_newest", true, Some(Code::Full)),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut c = down_config(dir.path());
        c.set("disk.min_free_bytes", "9000000000000000000").unwrap();
        c.set("capacity.when_full", policy).unwrap();
        if sync {
            c.set("durability", "sync").unwrap();
        }
        let b = Buffer::open(&c, None).unwrap();
        let big = format!("\"{}\"", "x".repeat(3000));
        let mut refused = 0;
        for _ in 0..200 {
            match b.log(big.as_bytes()) {
                Ok(()) => {}
                Err(e) => {
                    assert_eq!(Some(e.code()), code, "{policy}: {e}");
                    refused += 1;
                }
            }
        }
        if !sync {
            b.sync(Duration::from_secs(5)).unwrap();
        }
        let s = b.status();
        assert!(
            s.dropped_total > 0 || refused > 0,
            "{policy}: the file grew without limit: {s:?}"
        );
        if policy == "reject" {
            assert_eq!(s.dropped_total, 0);
            assert_eq!(s.logged_total, 200 - refused);
        }
        eprintln!(
            "{policy}: refused {refused}, logged {}, dropped {}, pending {}",
            s.logged_total, s.dropped_total, s.pending_records
        );
        assert_eq!(s.storage_degraded, 0, "full is not a storage failure");
        invariant(&b);
        let _ = b.close(Duration::ZERO);
    }
}

/// docs/reference.md, guarantees, damage: only a file with SQLite's header and edgebuf's application_id is ever moved
/// aside. `path` here is a symlink to a user's text file: open is CORRUPT and neither that file
/// nor a user's file named like an old quarantined set is moved or deleted. (Before: the text
/// file was renamed to `.corrupt-<ms>` and `important.txt.corrupt-1` deleted.)
#[test]
fn files_that_are_not_edgebuf_s_are_never_moved_or_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("important.txt");
    std::fs::write(&text, "a user's notes, not a database\n".repeat(300)).unwrap();
    let planted = dir.path().join("important.txt.corrupt-1");
    std::fs::write(&planted, "also the user's").unwrap();
    let link = dir.path().join("buf.db");
    std::os::unix::fs::symlink(&text, &link).unwrap();
    let c = down_config(dir.path());
    for on_corrupt in ["quarantine", "fail"] {
        let mut c = c.clone();
        c.set("storage.on_corrupt", on_corrupt).unwrap();
        let e = Buffer::open(&c, None).err().expect("not an edgebuf file");
        assert_eq!(e.code(), Code::Corrupt, "{on_corrupt}: {}", e.message());
        assert!(
            e.message().contains("not an edgebuf buffer file"),
            "{}",
            e.message()
        );
    }
    assert_eq!(
        std::fs::read_to_string(&text).unwrap(),
        "a user's notes, not a database\n".repeat(300)
    );
    assert_eq!(
        std::fs::read_to_string(&planted).unwrap(),
        "also the user's"
    );
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("corrupt"))
        .collect();
    assert_eq!(
        names,
        vec!["important.txt.corrupt-1".to_string()],
        "{names:?}"
    );
}

/// An older quarantined set is deleted only when its file is edgebuf's: a user's file with such
/// a name survives the next quarantine, an edgebuf one goes.
#[test]
fn only_edgebuf_s_own_older_quarantined_sets_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("buf.db");
    // An edgebuf file, logged to and closed, then damaged past its header.
    let c = down_config(dir.path());
    let b = Buffer::open(&c, None).unwrap();
    b.log(b"{\"a\":1}").unwrap();
    b.close(Duration::ZERO).unwrap_err();
    let ours = std::fs::read(&path).unwrap();
    let damage = |p: &std::path::Path| {
        let mut bytes = ours.clone();
        for b in &mut bytes[100..] {
            *b = 0x5a;
        }
        std::fs::write(p, bytes).unwrap();
    };
    let users = dir.path().join("buf.db.corrupt-1");
    std::fs::write(&users, "the user's").unwrap();
    let old_ours = dir.path().join("buf.db.corrupt-2");
    damage(&old_ours);
    std::fs::write(dir.path().join("buf.db.corrupt-2-wal"), b"old wal").unwrap();
    let _ = std::fs::remove_file(dir.path().join("buf.db-wal"));
    let _ = std::fs::remove_file(dir.path().join("buf.db-shm"));
    damage(&path);
    let b = Buffer::open(&c, None).expect("a damaged edgebuf file is quarantined");
    b.close(Duration::ZERO).unwrap();
    assert_eq!(std::fs::read_to_string(&users).unwrap(), "the user's");
    assert!(!old_ours.exists(), "the older edgebuf set stays");
    assert!(!dir.path().join("buf.db.corrupt-2-wal").exists());
}

/// docs/reference.md, guarantees, hostile schema: a trigger, a view or another table added to a buffer file makes it
/// not edgebuf's (CORRUPT, untouched). Before: a trigger deleting each inserted row made sync
/// return OK while the records vanished, and a view over an endless recursive CTE made open
/// hang.
#[test]
fn a_buffer_file_with_schema_objects_edgebuf_did_not_create_is_refused() {
    let hostile = [
        "CREATE TRIGGER vanish AFTER INSERT ON records BEGIN DELETE FROM records WHERE seq = new.seq; END",
        "CREATE VIEW forever AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT i FROM n",
        "CREATE TABLE extra(x)",
        "CREATE INDEX by_ts ON records(ts_ms)",
    ];
    for sql in hostile {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("buf.db");
        let c = down_config(dir.path());
        Buffer::open(&c, None)
            .unwrap()
            .close(Duration::ZERO)
            .unwrap();
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch(sql).unwrap();
        }
        let before = std::fs::read(&path).unwrap();
        let t0 = Instant::now();
        let e = Buffer::open(&c, None)
            .err()
            .unwrap_or_else(|| panic!("{sql}: opened"));
        assert_eq!(e.code(), Code::Corrupt, "{sql}: {}", e.message());
        assert!(e.message().contains("schema"), "{}", e.message());
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "{sql}: open took {:?}",
            t0.elapsed()
        );
        assert_eq!(
            std::fs::read(&path).unwrap(),
            before,
            "{sql}: the file changed"
        );
    }
}

/// A forged instance id in the file never reaches the wire: CORRUPT at open.
#[test]
fn a_forged_instance_id_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("buf.db");
    let c = down_config(dir.path());
    Buffer::open(&c, None)
        .unwrap()
        .close(Duration::ZERO)
        .unwrap();
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'instance'",
            ["x\",\"id\":\"forged"],
        )
        .unwrap();
    }
    let e = Buffer::open(&c, None).err().expect("a forged instance");
    assert_eq!(e.code(), Code::Corrupt, "{}", e.message());
}

/// A schema text that is not UTF-8 (a flipped byte in the file's first page: found by
/// tests/filefuzz) is not edgebuf's schema: CORRUPT, the file as found. Before: STORAGE,
/// "cannot read the schema: invalid utf-8".
#[test]
fn a_schema_that_is_not_utf8_is_corrupt_not_a_storage_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("buf.db");
    let c = down_config(dir.path());
    Buffer::open(&c, None)
        .unwrap()
        .close(Duration::ZERO)
        .unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes
        .windows(20)
        .position(|w| w == b"key TEXT PRIMARY KEY")
        .expect("the schema text is in the file");
    bytes[at + 4] = 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let e = Buffer::open(&c, None).err().expect("a damaged schema");
    assert_eq!(e.code(), Code::Corrupt, "{}", e.message());
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "left as found");
}
