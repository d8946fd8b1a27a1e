//! File-system faults (docs/reference.md, guarantees: capacity, damage, one owner per file, degraded storage), made
//! real: a file-size limit (RLIMIT_FSIZE, writes fail with EFBIG) in a child process, a small
//! tmpfs that runs out of space (ENOSPC), read-only and missing directories, truncated files,
//! a `-wal` of another database, the lock of a SIGKILLed owner, and a disk that fails after
//! open. Records are checked at a real receiver on 127.0.0.1.
//!
//! The child is this test binary run again (`--exact fs_child`), driven by one command per
//! line on its stdin and answering one JSON line (prefixed `@@ `) per command on its stdout:
//! a file-size limit is per process, and raising it again must happen inside the process.
//! Mount-based variants need CAP_SYS_ADMIN; without it they print why they skip.

mod common;
use common::*;
use edgebuf::{Buffer, Code, Config};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const EVENT_DROPPED: i32 = 4;
const EVENT_STORAGE_ERROR: i32 = 6;
const EVENT_QUARANTINED: i32 = 7;
const EVENT_STORAGE_OK: i32 = 9;

// ---------------------------------------------------------------------------------------------
// Helpers

/// A record `{"n":N,"pad":"xxx…"}` of about `pad` + 20 bytes.
fn rec(n: u64, pad: usize) -> Vec<u8> {
    format!("{{\"n\":{n},\"pad\":\"{}\"}}", "x".repeat(pad)).into_bytes()
}

/// The `n` of every envelope the receiver accepted, with how often each arrived.
fn delivered_ns(rx: &Server) -> BTreeMap<u64, usize> {
    let mut m = BTreeMap::new();
    for e in rx.delivered() {
        if let Some(n) = e["data"]["n"].as_u64() {
            *m.entry(n).or_insert(0) += 1;
        }
    }
    m
}

/// Every envelope id is delivered once: no acknowledgement is lost in these tests, so docs/reference.md, guarantees
/// (at-least-once) allows no duplicate.
fn assert_no_duplicates(rx: &Server) {
    let got = rx.delivered();
    let ids: BTreeSet<String> = got
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), got.len(), "an id was delivered twice");
    let dup: Vec<_> = delivered_ns(rx)
        .into_iter()
        .filter(|(_, c)| *c > 1)
        .collect();
    assert!(dup.is_empty(), "records delivered twice: {dup:?}");
}

fn invariant(s: &edgebuf::Status) {
    assert_eq!(
        s.pending_records + s.delivered_total + s.dropped_total + s.dead_lettered_total,
        s.pending_at_open + s.logged_total,
        "{s:?}"
    );
}

/// The same invariant on `status_json`.
fn invariant_json(s: &Value) {
    let g = |k: &str| {
        s[k].as_u64()
            .unwrap_or_else(|| panic!("{k} missing in {s}"))
    };
    assert_eq!(
        g("pending_records") + g("delivered_total") + g("dropped_total") + g("dead_lettered_total"),
        g("pending_at_open") + g("logged_total"),
        "{s}"
    );
}

/// The data of every record SQLite can read from a copy of the buffer file set in `dir`
/// (`buf.db` and whatever `-wal` lies beside it), or the error SQLite gives.
fn readable_records(dir: &Path) -> Result<BTreeSet<Vec<u8>>, String> {
    let len = |f: &str| std::fs::metadata(dir.join(f)).map_or(0, |m| m.len());
    if len("buf.db") == 0 && len("buf.db-wal") > 32 {
        return Err("an empty database file: SQLite would delete its -wal".into());
    }
    let scratch = tempfile::tempdir().unwrap();
    for f in ["buf.db", "buf.db-wal"] {
        if dir.join(f).exists() {
            std::fs::copy(dir.join(f), scratch.path().join(f)).unwrap();
        }
    }
    let conn =
        rusqlite::Connection::open(scratch.path().join("buf.db")).map_err(|e| e.to_string())?;
    // An empty database (no tables at all) holds no records.
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
        .map_err(|e| e.to_string())?;
    if tables == 0 {
        return Ok(BTreeSet::new());
    }
    let mut st = conn
        .prepare(
            "SELECT data FROM records WHERE seq > coalesce((SELECT value FROM meta WHERE key='wm'), 0)
             ORDER BY seq",
        )
        .map_err(|e| e.to_string())?;
    let rows = st
        .query_map([], |r| r.get::<_, Vec<u8>>(0))
        .map_err(|e| e.to_string())?;
    let mut out = BTreeSet::new();
    for r in rows {
        out.insert(r.map_err(|e| e.to_string())?);
    }
    Ok(out)
}

/// Names in `dir` starting with `prefix`.
fn names_with(dir: &Path, prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect();
    v.sort();
    v
}

/// A mount made by a test, unmounted on drop (lazily if something still holds it).
struct Mount {
    at: PathBuf,
}

impl Mount {
    /// `mount -t tmpfs -o OPTS tmpfs AT`; Err says why it is not possible here.
    fn tmpfs(at: &Path, opts: &str) -> Result<Mount, String> {
        std::fs::create_dir_all(at).unwrap();
        run_mount(&["-t", "tmpfs", "-o", opts, "tmpfs", at.to_str().unwrap()])?;
        Ok(Mount {
            at: at.to_path_buf(),
        })
    }

    /// A read-only bind mount of `at` onto itself.
    fn read_only_bind(at: &Path) -> Result<Mount, String> {
        let p = at.to_str().unwrap();
        run_mount(&["--bind", p, p])?;
        let m = Mount {
            at: at.to_path_buf(),
        };
        run_mount(&["-o", "remount,bind,ro", p])?;
        Ok(m)
    }

    fn remount(&self, opts: &str) {
        run_mount(&["-o", &format!("remount,{opts}"), self.at.to_str().unwrap()]).expect("remount");
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let p = self.at.to_str().unwrap();
        let ok = Command::new("umount")
            .arg(p)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").args(["-l", p]).status();
        }
    }
}

fn run_mount(args: &[&str]) -> Result<(), String> {
    let out = Command::new("mount")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run mount: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "mount {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

// ---------------------------------------------------------------------------------------------
// The child: one buffer, driven line by line.

/// A running child with its buffer open.
struct FsChild {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    pid: u32,
}

impl FsChild {
    /// Starts the child on a buffer configured by `cfg` (key, value) pairs; waits until open
    /// returned, and panics with its error when it failed.
    fn spawn(cfg: &[(&str, String)]) -> FsChild {
        let spec: Vec<String> = cfg.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "fs_child", "--nocapture", "--test-threads=1"])
            .env("EDGEBUF_FS_CHILD", spec.join("\n"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                // libtest may print "test fs_child ... " on the same line.
                if let Some(i) = line.find("@@ ") {
                    if tx.send(line[i + 3..].to_string()).is_err() {
                        break;
                    }
                }
            }
        });
        let pid = child.id();
        let mut c = FsChild {
            child,
            stdin,
            lines,
            pid,
        };
        let hello = c.answer();
        assert_eq!(hello["open"], "OK", "the child could not open: {hello}");
        c
    }

    fn answer(&mut self) -> Value {
        match self.lines.recv_timeout(Duration::from_secs(30)) {
            Ok(l) => serde_json::from_str(&l).unwrap(),
            Err(e) => {
                let st = self.child.try_wait();
                panic!("the child did not answer ({e}); exit status {st:?}");
            }
        }
    }

    fn cmd(&mut self, line: &str) -> Value {
        writeln!(self.stdin, "{line}").expect("the child is alive");
        self.stdin.flush().unwrap();
        self.answer()
    }

    fn status(&mut self) -> Value {
        self.cmd("status")
    }

    fn events(&mut self) -> Vec<Value> {
        self.cmd("events").as_array().unwrap().clone()
    }

    /// The events of `kind`, waiting (bounded) for the first: events run on the library's
    /// event thread, after the status they report has changed.
    fn events_of(&mut self, kind: i32) -> Vec<Value> {
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            let v: Vec<Value> = self
                .events()
                .into_iter()
                .filter(|e| e["kind"] == kind)
                .collect();
            if !v.is_empty() || Instant::now() >= end {
                return v;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Polls status until `f` holds (bounded).
    fn wait_status(&mut self, timeout: Duration, f: impl Fn(&Value) -> bool) -> Value {
        let end = Instant::now() + timeout;
        loop {
            let s = self.status();
            if f(&s) || Instant::now() >= end {
                return s;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Closes the buffer, then waits for a clean exit: the host never crashes.
    fn close(mut self, ms: u64) -> Value {
        let r = self.cmd(&format!("close {ms}"));
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                assert!(st.success(), "the child exited with {st}");
                break;
            }
            assert!(Instant::now() < end, "the child did not exit after close");
            std::thread::sleep(Duration::from_millis(10));
        }
        r
    }
}

impl Drop for FsChild {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn result_json(r: edgebuf::Result<()>) -> Value {
    match r {
        Ok(()) => json!({"result": "OK"}),
        Err(e) => json!({"result": e.code().name(), "message": e.message()}),
    }
}

/// Sets the soft RLIMIT_FSIZE of this process (None: back up to the hard limit).
fn set_file_size_limit(soft: Option<u64>) {
    // SAFETY: rlimit is plain data, filled by getrlimit before setrlimit reads it.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        assert_eq!(libc::getrlimit(libc::RLIMIT_FSIZE, &mut r), 0);
        r.rlim_cur = match soft {
            Some(b) => (b as libc::rlim_t).min(r.rlim_max),
            None => r.rlim_max,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &r), 0);
    }
}

/// The child. Runs only when the parent sets EDGEBUF_FS_CHILD (the configuration, one
/// `key=value` a line). Commands: `limit BYTES|max`, `log FROM COUNT PAD`, `status`,
/// `events`, `sync MS`, `flush MS`, `close MS`.
#[test]
fn fs_child() {
    let Ok(spec) = std::env::var("EDGEBUF_FS_CHILD") else {
        return;
    };
    // Writes past the limit fail with EFBIG instead of killing the process.
    // SAFETY: setting a signal disposition to SIG_IGN has no preconditions.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let say = |v: Value| println!("@@ {v}");
    let mut c = Config::new();
    for line in spec.lines() {
        let (k, v) = line.split_once('=').unwrap();
        c.set(k, v).unwrap();
    }
    let events = EventLog::new();
    let b = match Buffer::open(&c, events.callback()) {
        Ok(b) => {
            say(json!({"open": "OK"}));
            b
        }
        Err(e) => {
            say(json!({"open": e.code().name(), "message": e.message()}));
            return;
        }
    };
    for line in std::io::stdin().lock().lines() {
        let line = line.unwrap();
        let w: Vec<&str> = line.split_whitespace().collect();
        let ms = |i: usize| Duration::from_millis(w[i].parse().unwrap());
        match w[0] {
            "limit" => {
                set_file_size_limit(if w[1] == "max" {
                    None
                } else {
                    Some(w[1].parse().unwrap())
                });
                say(json!({"limit": w[1]}));
            }
            "log" => {
                let (from, count, pad): (u64, u64, usize) = (
                    w[1].parse().unwrap(),
                    w[2].parse().unwrap(),
                    w[3].parse().unwrap(),
                );
                let mut ok = Vec::new();
                let mut errors: BTreeMap<String, u64> = BTreeMap::new();
                let mut messages: BTreeMap<String, String> = BTreeMap::new();
                for n in from..from + count {
                    match b.log(&rec(n, pad)) {
                        Ok(()) => ok.push(n),
                        Err(e) => {
                            *errors.entry(e.code().name().to_string()).or_insert(0) += 1;
                            messages
                                .entry(e.code().name().to_string())
                                .or_insert_with(|| e.message().to_string());
                        }
                    }
                }
                say(json!({"ok": ok, "errors": errors, "messages": messages}));
            }
            "status" => say(serde_json::from_str(&b.status_json()).unwrap()),
            "events" => say(Value::Array(
                events
                    .all()
                    .iter()
                    .map(|e| json!({"kind": e.kind, "count": e.count, "message": e.message}))
                    .collect(),
            )),
            "sync" => say(result_json(b.sync(ms(1)))),
            "flush" => say(result_json(b.flush(ms(1)))),
            "close" => {
                let r = b.close(ms(1));
                say(result_json(r));
                return;
            }
            other => panic!("unknown command {other}"),
        }
    }
}

fn child_config(dir: &Path, endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("path", dir.join("buf.db").to_str().unwrap().to_string()),
        ("endpoint", endpoint.to_string()),
        ("source.id", "fs-child".into()),
        ("commit.interval_ms", "20".into()),
        ("batch.linger_ms", "10".into()),
        ("retry.initial_ms", "20".into()),
        ("retry.max_ms", "200".into()),
        ("http.timeout_ms", "2000".into()),
    ]
}

fn ok_ns(answer: &Value) -> Vec<u64> {
    answer["ok"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 1. Full disk from the file system itself

#[test]
fn file_size_limit_degrades_storage_then_writing_resumes() {
    // The endpoint answers 503 while the file hits the process's file-size limit, so every
    // record stays pending: the limit is hit by the `-wal` growing. SQLite reports EFBIG as an
    // I/O error (SQLITE_IOERR_WRITE), so storage is degraded: records are held in memory
    // within memory.max_bytes, `when_full` (drop_oldest) applying there.
    let dir = tempfile::tempdir().unwrap();
    let rx = Server::receiver();
    rx.set_status(503);
    let mut cfg = child_config(dir.path(), &rx.url());
    cfg.push(("memory.max_bytes", "65536".into()));
    cfg.push(("memory.max_wait_ms", "0".into()));
    cfg.push(("disk.min_free_bytes", "0".into()));
    let mut ch = FsChild::spawn(&cfg);
    let mut accepted: Vec<u64> = Vec::new();
    accepted.extend(ok_ns(&ch.cmd("log 0 50 200")));
    assert_eq!(ch.cmd("sync 5000")["result"], "OK");
    let before_limit = accepted.clone();
    let wal = dir.path().join("buf.db-wal");
    let limit = std::fs::metadata(&wal).unwrap().len() + 128 * 1024;
    ch.cmd(&format!("limit {limit}"));

    // Log 100 records of ~500 bytes at a time until the disk says no (~128 KiB of WAL).
    // Batches whose sync returned OK are committed: none of them may be lost.
    let mut committed = before_limit.clone();
    let mut next = 1000u64;
    let mut sync_answer = Value::Null;
    for _ in 0..40 {
        let a = ch.cmd(&format!("log {next} 100 500"));
        assert!(
            a["errors"].as_object().unwrap().is_empty(),
            "async log refuses nothing: {a}"
        );
        accepted.extend(ok_ns(&a));
        next += 100;
        sync_answer = ch.cmd("sync 5000");
        if sync_answer["result"] != "OK" {
            break;
        }
        committed.extend(ok_ns(&a));
    }
    assert_eq!(
        sync_answer["result"], "EDGEBUF_ERR_STORAGE",
        "the file-size limit was never hit: {sync_answer}"
    );
    assert!(
        sync_answer["message"]
            .as_str()
            .unwrap()
            .contains("degraded"),
        "{sync_answer}"
    );
    assert!(
        committed.len() > before_limit.len(),
        "the limit was hit at once"
    );
    let s = ch.status();
    assert_eq!(s["storage_degraded"], true, "{s}");
    invariant_json(&s);
    assert!(
        std::fs::metadata(&wal).unwrap().len() <= limit,
        "nothing is written past the limit"
    );
    let err = ch.events_of(EVENT_STORAGE_ERROR);
    assert_eq!(err.len(), 1, "one STORAGE_ERROR per failure: {err:?}");
    let msg = err[0]["message"].as_str().unwrap();
    assert!(msg.contains("held in memory"), "{msg}");
    eprintln!("STORAGE_ERROR: {msg}");

    // Degraded: memory.max_bytes bounds what is held, drop_oldest applies there.
    let a = ch.cmd(&format!("log {next} 300 500"));
    assert!(a["errors"].as_object().unwrap().is_empty(), "{a}");
    accepted.extend(ok_ns(&a));
    next += 300;
    let s = ch.status();
    invariant_json(&s);
    assert_eq!(s["storage_degraded"], true, "{s}");
    assert!(
        s["dropped_total"].as_u64().unwrap() > 0,
        "memory bound not applied: {s}"
    );
    assert_eq!(s["logged_total"].as_u64().unwrap(), accepted.len() as u64);
    assert!(!ch.events_of(EVENT_DROPPED).is_empty());

    // Space returns: writing resumes within the writer's retry, STORAGE_OK fires.
    ch.cmd("limit max");
    let s = ch.wait_status(Duration::from_secs(10), |s| s["storage_degraded"] == false);
    assert_eq!(s["storage_degraded"], false, "writing never resumed: {s}");
    assert_eq!(ch.events_of(EVENT_STORAGE_OK).len(), 1);
    let after: Vec<u64> = ok_ns(&ch.cmd(&format!("log {next} 100 500")));
    assert_eq!(after.len(), 100);
    accepted.extend(&after);
    assert_eq!(ch.cmd("sync 5000")["result"], "OK");

    // The endpoint comes back: everything accepted is delivered or was counted as dropped.
    rx.set_status(200);
    assert_eq!(ch.cmd("flush 20000")["result"], "OK");
    let s = ch.status();
    invariant_json(&s);
    let got = delivered_ns(&rx);
    assert_no_duplicates(&rx);
    let (logged, delivered, dropped) = (
        s["logged_total"].as_u64().unwrap(),
        s["delivered_total"].as_u64().unwrap(),
        s["dropped_total"].as_u64().unwrap(),
    );
    assert_eq!(s["pending_records"], 0, "{s}");
    assert_eq!(logged, accepted.len() as u64);
    assert_eq!(delivered, got.len() as u64, "{s}");
    assert_eq!(delivered + dropped, logged, "{s}");
    for n in committed.iter().chain(&after) {
        assert!(
            got.contains_key(n),
            "record {n} (committed before the disk failed, or logged after) lost"
        );
    }
    assert!(got.keys().all(|n| accepted.contains(n)));
    eprintln!("file-size limit: logged {logged}, delivered {delivered}, dropped {dropped}");
    assert_eq!(ch.close(1000)["result"], "OK");
}

#[test]
fn a_full_tmpfs_counts_drops_and_writing_resumes_when_space_returns() {
    // Real ENOSPC: SQLite reports SQLITE_FULL, which counts as full (docs/reference.md, guarantees, capacity), not as
    // a storage failure. disk.min_free_bytes=0, so that the file system itself says no.
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    let m = match Mount::tmpfs(&mnt, "size=2m,mode=0700") {
        Ok(m) => m,
        Err(why) => {
            eprintln!("SKIPPED a_full_tmpfs_…: cannot mount a tmpfs here ({why})");
            return;
        }
    };
    let rx = Server::receiver();
    rx.set_status(503);
    let mut c = config(&mnt, &rx.url());
    c.set("disk.min_free_bytes", "0").unwrap();
    let events = EventLog::new();
    let b = Buffer::open(&c, events.callback()).unwrap();
    let mut n = 0u64;
    for _ in 0..40 {
        for _ in 0..100 {
            b.log(&rec(n, 2000)).unwrap();
            n += 1;
        }
        b.sync(Duration::from_secs(5)).unwrap();
        if b.status().dropped_total > 0 {
            break;
        }
    }
    let s = b.status();
    invariant(&s);
    assert!(s.dropped_total > 0, "the tmpfs never filled: {s:?}");
    assert_eq!(
        s.storage_degraded, 0,
        "full is not a storage failure: {s:?}"
    );
    assert!(s.disk_bytes <= 2 << 20, "{s:?}");
    assert!(
        // (DROPPED events coalesce: the reason may be replaced by a count.)
        wait_until(Duration::from_secs(5), || events
            .of(EVENT_DROPPED)
            .iter()
            .any(|e| e.count > 0)),
        "{:?}",
        events.all()
    );
    assert!(
        events.of(EVENT_STORAGE_ERROR).is_empty(),
        "{:?}",
        events.all()
    );
    // Still full: more records are dropped and counted, none refused (async mode).
    let dropped_before = s.dropped_total;
    for _ in 0..50 {
        b.log(&rec(n, 2000)).unwrap();
        n += 1;
    }
    b.sync(Duration::from_secs(5)).unwrap();
    let s = b.status();
    invariant(&s);
    assert!(s.dropped_total > dropped_before, "{s:?}");

    // A second buffer on the full file system: out of space at open is STORAGE, and the
    // message says which file.
    let filler = mnt.join("filler");
    {
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 4096];
        // Until the 2 MB file system is full (bounded: 16 MB at most).
        for _ in 0..4096 {
            if f.write_all(&chunk).is_err() {
                break;
            }
        }
    }
    let mut c2 = config(&mnt, &rx.url());
    c2.set("path", mnt.join("second.db").to_str().unwrap())
        .unwrap();
    match Buffer::open(&c2, None) {
        Err(e) => {
            assert_eq!(e.code(), Code::Storage, "{e}");
            assert!(e.message().contains("second.db"), "{e}");
            assert!(e.message().contains("free space"), "says what to do: {e}");
            eprintln!("open on a full file system: {e}");
        }
        Ok(_) => panic!("open on a full file system succeeded"),
    }
    std::fs::remove_file(&filler).unwrap();

    // Space returns.
    m.remount("size=16m");
    let dropped_full = b.status().dropped_total;
    let first_after = n;
    for _ in 0..100 {
        b.log(&rec(n, 2000)).unwrap();
        n += 1;
    }
    b.sync(Duration::from_secs(5)).unwrap();
    assert_eq!(
        b.status().dropped_total,
        dropped_full,
        "records dropped after space returned"
    );
    rx.set_status(200);
    b.flush(Duration::from_secs(20)).unwrap();
    let s = b.status();
    invariant(&s);
    assert_eq!(s.pending_records, 0);
    assert_eq!(s.logged_total, n);
    let got = delivered_ns(&rx);
    assert_no_duplicates(&rx);
    assert_eq!(s.delivered_total, got.len() as u64);
    assert_eq!(s.delivered_total + s.dropped_total, n, "{s:?}");
    for i in first_after..n {
        assert!(
            got.contains_key(&i),
            "record {i}, logged after space returned, lost"
        );
    }
    eprintln!(
        "tmpfs: logged {n}, delivered {}, dropped {}",
        s.delivered_total, s.dropped_total
    );
    // The second buffer opens now that there is room (its failed open left nothing behind
    // that blocks it).
    Buffer::open(&c2, None)
        .expect("open after space returned")
        .close(Duration::ZERO)
        .unwrap();
    b.close(Duration::from_secs(1)).unwrap();
    drop(m);
}

// ---------------------------------------------------------------------------------------------
// 2. Paths that cannot hold a buffer

#[test]
fn paths_that_cannot_hold_a_buffer_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let down = format!("http://127.0.0.1:{}/ingest", dead_port());
    let open = |p: &Path| {
        let mut c = config(dir.path(), &down);
        c.set("path", p.to_str().unwrap()).unwrap();
        Buffer::open(&c, None).err().expect("open must fail")
    };
    // The directory does not exist (deleted, or never created): the value of `path` cannot
    // work, so INVALID_CONFIG naming the key, saying what to do, without the value.
    let gone = dir.path().join("gone");
    std::fs::create_dir(&gone).unwrap();
    std::fs::remove_dir(&gone).unwrap();
    for p in [gone.join("buf.db"), gone.join("deeper").join("buf.db")] {
        let e = open(&p);
        assert_eq!(e.code(), Code::InvalidConfig, "{e}");
        assert!(e.message().starts_with("path "), "{e}");
        assert!(e.message().contains("create the directory"), "{e}");
        assert!(
            !e.message().contains("gone"),
            "the message shows the value: {e}"
        );
    }
    assert!(!gone.exists(), "open created the directory");
    // A regular file where a directory should be.
    let file = dir.path().join("plain");
    std::fs::write(&file, b"x").unwrap();
    assert_eq!(open(&file.join("buf.db")).code(), Code::InvalidConfig);
    // The path is a directory (also spelled with a trailing slash, or as a symlink to one).
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&sub, &link).unwrap();
    for p in [
        sub.clone(),
        PathBuf::from(format!("{}/", sub.display())),
        link,
    ] {
        let e = open(&p);
        assert_eq!(e.code(), Code::InvalidConfig, "{}: {e}", p.display());
        assert!(e.message().contains("path names a directory"), "{e}");
        assert!(
            !e.message().contains("sub"),
            "the message shows the value: {e}"
        );
    }
    assert_eq!(
        std::fs::read_dir(&sub).unwrap().count(),
        0,
        "nothing created"
    );
    // The lock file's name is taken by a directory: STORAGE naming the lock file.
    std::fs::create_dir(dir.path().join("buf.db.lock")).unwrap();
    let e = open(&dir.path().join("buf.db"));
    assert_eq!(e.code(), Code::Storage, "{e}");
    assert!(e.message().contains("buf.db.lock"), "{e}");
    assert!(e.message().contains("remove it"), "{e}");
    eprintln!("{e}");
    // The path names a FIFO: INVALID_CONFIG, never a hang, a crash or "the disk may be failing".
    std::fs::remove_dir(dir.path().join("buf.db.lock")).unwrap();
    let fifo = dir.path().join("fifo.db");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let mut cf = config(dir.path(), &down);
    cf.set("path", fifo.to_str().unwrap()).unwrap();
    cf.set("storage.on_corrupt", "fail").unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(
            Buffer::open(&cf, None)
                .err()
                .map(|e| (e.code(), e.message().to_string())),
        );
    });
    let code = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("open of a FIFO hangs");
    let (code, msg) = code.expect("a FIFO opened as a buffer file");
    assert_eq!(code, Code::InvalidConfig, "{msg}");
    assert!(msg.contains("regular file"), "{msg}");
    eprintln!("FIFO as buffer file: {msg}");
}

#[test]
fn a_read_only_directory_is_a_storage_error_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    let down = format!("http://127.0.0.1:{}/ingest", dead_port());
    // A buffer with pending records, closed: they must survive the failed opens.
    let b = Buffer::open(&config(&ro, &down), None).unwrap();
    for i in 0..20 {
        b.log(&rec(i, 50)).unwrap();
    }
    b.sync(Duration::from_secs(5)).unwrap();
    assert_eq!(b.close(Duration::ZERO).unwrap_err().code(), Code::Timeout);
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();

    // Root ignores permission bits: make the directories read-only by a read-only bind
    // mount then. Without root, chmod 0555 does it.
    let _mounts: Vec<Mount>;
    let how;
    if is_root() {
        let ms = [Mount::read_only_bind(&ro), Mount::read_only_bind(&empty)];
        if let Some(Err(why)) = ms.iter().find(|m| m.is_err()) {
            eprintln!(
                "SKIPPED a_read_only_directory_…: running as root, where chmod does not \
                 apply, and a read-only bind mount is not permitted ({why})"
            );
            return;
        }
        _mounts = ms.into_iter().map(Result::unwrap).collect();
        how = "read-only bind mount";
    } else {
        use std::os::unix::fs::PermissionsExt;
        for d in [&ro, &empty] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o555)).unwrap();
        }
        _mounts = Vec::new();
        how = "chmod 0555";
    }
    let before: Vec<(String, Vec<u8>)> = names_with(&ro, "buf.db")
        .into_iter()
        .map(|n| (n.clone(), std::fs::read(ro.join(&n)).unwrap()))
        .collect();
    for d in [&ro, &empty] {
        for mode in ["async", "sync"] {
            let mut c = config(d, &down);
            c.set("durability", mode).unwrap();
            let e = Buffer::open(&c, None)
                .err()
                .expect("open in a read-only directory");
            assert_eq!(e.code(), Code::Storage, "{how}: {e}");
            assert!(
                e.message().contains(d.to_str().unwrap()),
                "names the file: {e}"
            );
            assert!(
                e.message().contains("read-only") || e.message().contains("writable"),
                "says what to do: {e}"
            );
            eprintln!("{how}: {e}");
        }
    }
    let after: Vec<(String, Vec<u8>)> = names_with(&ro, "buf.db")
        .into_iter()
        .map(|n| (n.clone(), std::fs::read(ro.join(&n)).unwrap()))
        .collect();
    assert!(before == after, "a failed open changed the files");
    drop(_mounts);
    if !is_root() {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    // Writable again: everything pending is delivered.
    let rx = Server::receiver();
    let b = Buffer::open(&config(&ro, &rx.url()), None).unwrap();
    assert_eq!(b.status().pending_at_open, 20);
    b.flush(Duration::from_secs(10)).unwrap();
    assert_eq!(delivered_ns(&rx).len(), 20);
    b.close(Duration::from_secs(1)).unwrap();
}

// ---------------------------------------------------------------------------------------------
// 3. Damage

/// A buffer in `dir` holding records 0..n (pending, the endpoint down). `clean`: closed, so
/// everything is in `buf.db`; otherwise the files are copied while it is open, after a sync,
/// as a crash would leave them (the records in `buf.db-wal`).
fn make_buffer(dir: &Path, n: u64, clean: bool) -> BTreeSet<Vec<u8>> {
    let down = format!("http://127.0.0.1:{}/ingest", dead_port());
    let live = tempfile::tempdir().unwrap();
    let b = Buffer::open(&config(live.path(), &down), None).unwrap();
    let mut all = BTreeSet::new();
    // Ten commits (a sync after each tenth), so that a cut -wal keeps a prefix of them.
    for i in 0..n {
        b.log(&rec(i, 300)).unwrap();
        all.insert(rec(i, 300));
        if (i + 1) % (n / 10).max(1) == 0 {
            b.sync(Duration::from_secs(5)).unwrap();
        }
    }
    b.sync(Duration::from_secs(5)).unwrap();
    if !clean {
        for f in ["buf.db", "buf.db-wal"] {
            std::fs::copy(live.path().join(f), dir.join(f)).unwrap();
        }
    }
    assert_eq!(b.close(Duration::ZERO).unwrap_err().code(), Code::Timeout);
    if clean {
        assert!(!live.path().join("buf.db-wal").exists());
        std::fs::copy(live.path().join("buf.db"), dir.join("buf.db")).unwrap();
    }
    all
}

fn truncate(p: &Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(p)
        .unwrap()
        .set_len(len)
        .unwrap();
}

/// The buffer file set in `dir` as bytes (name, content), quarantined sets included.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    names_with(dir, "buf.db")
        .into_iter()
        .filter(|n| !n.ends_with(".lock") && !n.ends_with("-shm"))
        .map(|n| (n.clone(), std::fs::read(dir.join(&n)).unwrap()))
        .collect()
}

/// An endpoint that answers as a real one would: 200 for a JSON body, 400 otherwise.
fn strict_endpoint() -> Server {
    Server::start(|h| {
        if serde_json::from_slice::<Value>(&h.plain()).is_ok() {
            Act::status(200)
        } else {
            Act::status(400)
        }
    })
}

/// Asserts two snapshots are equal, reporting names, lengths and the first differing byte
/// (never the bytes themselves).
fn assert_same_files(a: &BTreeMap<String, Vec<u8>>, b: &BTreeMap<String, Vec<u8>>, what: &str) {
    let names = |m: &BTreeMap<String, Vec<u8>>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(a), names(b), "{what}: the set of files changed");
    for (n, x) in a {
        let y = &b[n];
        let first = x.iter().zip(y.iter()).position(|(p, q)| p != q);
        assert!(
            x == y,
            "{what}: {n} changed: {} bytes -> {} bytes, first difference at {first:?}",
            x.len(),
            y.len()
        );
    }
}

/// Opens the damaged set in `dir` (default on_corrupt=quarantine) with a strict endpoint and
/// checks: open succeeds; every record SQLite can read from the set is delivered, or, when its
/// bytes are no longer JSON (damage SQLite does not see), dead-lettered, never sent as part of
/// a broken body; a set SQLite cannot read is quarantined as found; the buffer then works.
/// Returns whether it was quarantined.
fn open_damaged(dir: &Path, what: &str) -> bool {
    let found = snapshot(dir);
    let readable = readable_records(dir);
    // on_corrupt=fail first, on a copy: CORRUPT when SQLite cannot read the set, and the
    // files are left as found.
    let copy = tempfile::tempdir().unwrap();
    for (n, bytes) in &found {
        std::fs::write(copy.path().join(n), bytes).unwrap();
    }
    let mut cf = config(copy.path(), &format!("http://127.0.0.1:{}/", dead_port()));
    cf.set("storage.on_corrupt", "fail").unwrap();
    match Buffer::open(&cf, None) {
        Ok(b) => {
            assert!(
                readable.is_ok(),
                "{what}: fail mode opened a set SQLite cannot read"
            );
            let _ = b.close(Duration::ZERO);
        }
        Err(e) => {
            assert_eq!(e.code(), Code::Corrupt, "{what}: {e}");
            assert!(e.message().contains("damaged"), "{what}: {e}");
            assert_same_files(
                &found,
                &snapshot(copy.path()),
                &format!("{what}, fail mode"),
            );
        }
    }

    let srv = strict_endpoint();
    let events = EventLog::new();
    let b = Buffer::open(&config(dir, &srv.url()), events.callback())
        .unwrap_or_else(|e| panic!("{what}: a damaged file must open (quarantine): {e}"));
    b.flush(Duration::from_secs(20)).unwrap();
    let s = b.status();
    invariant(&s);
    let delivered = srv.delivered();
    let got: BTreeSet<u64> = delivered
        .iter()
        .map(|e| e["data"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(
        got.len(),
        delivered.len(),
        "{what}: a record was delivered twice"
    );
    let quarantined = !names_with(dir, "buf.db.corrupt-").is_empty();
    if quarantined {
        // QUARANTINED fires after open returns, on the event thread.
        wait_until(Duration::from_secs(5), || {
            !events.of(EVENT_QUARANTINED).is_empty()
        });
    }
    match &readable {
        Ok(recs) => {
            assert!(
                !quarantined,
                "{what}: SQLite reads it, yet it was quarantined"
            );
            let json: BTreeSet<u64> = recs
                .iter()
                .filter_map(|r| serde_json::from_slice::<Value>(r).ok())
                .map(|v| v["n"].as_u64().unwrap())
                .collect();
            let broken = recs.len() - json.len();
            let lost = json.difference(&got).count();
            assert_eq!(
                lost,
                0,
                "{what}: {lost} of {} readable records lost",
                json.len()
            );
            assert_eq!(s.pending_at_open, recs.len() as u64, "{what}");
            assert_eq!(
                s.dead_lettered_total, broken as u64,
                "{what}: records no longer JSON are dead-lettered: {s:?}"
            );
            eprintln!(
                "{what}: opened, {} delivered, {broken} no longer JSON, dead-lettered",
                got.len()
            );
        }
        Err(why) => {
            assert!(
                quarantined,
                "{what}: SQLite cannot read it ({why}) but it was not quarantined: {s:?} {:?} {:?}",
                events.all(),
                names_with(dir, "buf")
            );
        }
    }
    if quarantined {
        let moved = names_with(dir, "buf.db.corrupt-");
        assert!(!moved.is_empty(), "{what}: QUARANTINED but nothing moved");
        // buf.db.corrupt-UNIXMS, then the suffix.
        let stamp: String = moved[0]["buf.db.corrupt-".len()..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let stem = format!("buf.db.corrupt-{stamp}");
        // The moved set is the set as found.
        for (n, bytes) in &found {
            let to = n.replacen("buf.db", &stem, 1);
            let kept = std::fs::read(dir.join(&to)).ok();
            assert!(
                kept.as_ref() == Some(bytes),
                "{what}: {n} ({} bytes) not kept as found in {to} ({:?} bytes)",
                bytes.len(),
                kept.map(|k| k.len())
            );
        }
        assert_eq!(s.pending_at_open, 0);
        let qe = events.of(EVENT_QUARANTINED);
        assert!(!qe.is_empty(), "{what}: no QUARANTINED event");
        let ev = &qe[0];
        assert!(ev.message.contains("corrupt-"), "{}", ev.message);
        eprintln!("{what}: {}", ev.message);
    }
    // The buffer works.
    // (sync first: a flush right after a log can return before the writer has stored the
    // record, see the report.)
    b.log(&rec(999_999, 1)).unwrap();
    b.sync(Duration::from_secs(5)).unwrap();
    b.flush(Duration::from_secs(10)).unwrap();
    assert!(
        srv.delivered().iter().any(|e| e["data"]["n"] == 999_999),
        "{what}: {:?} {:?}",
        b.status(),
        srv.hits()
            .iter()
            .map(|h| (h.status, h.seqs().len(), h.seqs().last().copied()))
            .collect::<Vec<_>>()
    );
    b.close(Duration::from_secs(1)).unwrap();
    quarantined
}

#[test]
fn truncated_files_open_and_keep_what_sqlite_can_read() {
    // A cleanly closed buffer (everything in buf.db), cut to various lengths.
    let src = tempfile::tempdir().unwrap();
    make_buffer(src.path(), 300, true);
    let len = std::fs::metadata(src.path().join("buf.db")).unwrap().len();
    assert!(len > 8 * 4096, "{len}");
    for cut in [len - 1, len - 4096, len / 2, 4096, 100, 50, 0] {
        let d = tempfile::tempdir().unwrap();
        std::fs::copy(src.path().join("buf.db"), d.path().join("buf.db")).unwrap();
        truncate(&d.path().join("buf.db"), cut);
        if (1..72).contains(&cut) {
            // Too short to carry edgebuf's application_id (offset 68): not provably edgebuf's,
            // so never moved (docs/reference.md, guarantees): CORRUPT in both modes, the files as found.
            let found = snapshot(d.path());
            for mode in ["quarantine", "fail"] {
                let mut c = config(d.path(), &format!("http://127.0.0.1:{}/", dead_port()));
                c.set("storage.on_corrupt", mode).unwrap();
                let e = Buffer::open(&c, None)
                    .err()
                    .expect("cut below the application_id");
                assert_eq!(e.code(), Code::Corrupt, "cut to {cut}, {mode}: {e}");
                assert_same_files(
                    &found,
                    &snapshot(d.path()),
                    &format!("cut to {cut}, {mode}"),
                );
            }
            continue;
        }
        let q = open_damaged(d.path(), &format!("buf.db cut to {cut} of {len}"));
        if cut == 0 {
            assert!(!q, "an empty file is an empty database");
        }
    }

    // A buffer as a crash leaves it (records committed in the -wal), with the -wal cut: SQLite
    // drops the torn tail and keeps every transaction that is whole.
    let src = tempfile::tempdir().unwrap();
    let all = make_buffer(src.path(), 300, false);
    assert_eq!(readable_records(src.path()).unwrap(), all);
    let wal_len = std::fs::metadata(src.path().join("buf.db-wal"))
        .unwrap()
        .len();
    let mut kept_before = usize::MAX;
    for cut in [wal_len, wal_len - 1, wal_len / 2, 4096 + 24 + 32, 32, 0] {
        let d = tempfile::tempdir().unwrap();
        for f in ["buf.db", "buf.db-wal"] {
            std::fs::copy(src.path().join(f), d.path().join(f)).unwrap();
        }
        truncate(&d.path().join("buf.db-wal"), cut);
        let readable = readable_records(d.path()).unwrap_or_default();
        assert!(readable.len() <= kept_before);
        if cut == wal_len - 1 {
            assert_eq!(
                readable.len(),
                all.len() - 30,
                "only the last commit is torn"
            );
        }
        kept_before = readable.len();
        let q = open_damaged(d.path(), &format!("buf.db-wal cut to {cut} of {wal_len}"));
        assert!(!q, "a torn -wal is not damage");
    }

    // The main file cut to 0 beside a -wal holding committed records: SQLite alone would
    // delete that -wal; it must be kept (quarantined) instead.
    let d = tempfile::tempdir().unwrap();
    for f in ["buf.db", "buf.db-wal"] {
        std::fs::copy(src.path().join(f), d.path().join(f)).unwrap();
    }
    truncate(&d.path().join("buf.db"), 0);
    let wal = std::fs::read(d.path().join("buf.db-wal")).unwrap();
    let q = open_damaged(d.path(), "buf.db cut to 0 beside its -wal");
    assert!(q, "the -wal was not kept");
    let moved = names_with(d.path(), "buf.db.corrupt-");
    assert!(moved
        .iter()
        .any(|n| n.ends_with("-wal") && std::fs::read(d.path().join(n)).unwrap() == wal));
}

#[test]
fn a_wal_of_another_database_is_moved_aside_and_the_buffer_kept() {
    // A good buffer, closed (everything in buf.db), with a `-wal` of another database put
    // beside it (files copied or restored in the wrong combination). SQLite cannot tell: it
    // would read the -wal as part of the file (and copy it into the file at the next
    // checkpoint), hiding or destroying every record. The file's own instance, read without
    // the -wal, tells: the stray -wal is moved aside (quarantine) or refused (fail), and the
    // buffer's records are all delivered.
    let down = format!("http://127.0.0.1:{}/ingest", dead_port());
    let plain_wal = |dir: &Path| {
        let other = tempfile::tempdir().unwrap();
        let conn = rusqlite::Connection::open(other.path().join("x.db")).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;
             CREATE TABLE t(x); INSERT INTO t VALUES (1);",
        )
        .unwrap();
        std::fs::copy(other.path().join("x.db-wal"), dir.join("buf.db-wal")).unwrap();
    };
    let buffer_wal = |dir: &Path| {
        let other = tempfile::tempdir().unwrap();
        make_buffer(other.path(), 10, false);
        std::fs::copy(other.path().join("buf.db-wal"), dir.join("buf.db-wal")).unwrap();
    };
    type PutWal = fn(&Path);
    let kinds: [(&str, PutWal); 2] = [
        ("the -wal of a plain SQLite database", plain_wal),
        ("the -wal of another edgebuf buffer", buffer_wal),
    ];
    for (what, put_wal) in kinds {
        let dir = tempfile::tempdir().unwrap();
        let ours = make_buffer(dir.path(), 100, true);
        put_wal(dir.path());
        let found = snapshot(dir.path());

        // fail: CORRUPT naming the -wal and what to do; nothing changed.
        let mut c = config(dir.path(), &down);
        c.set("storage.on_corrupt", "fail").unwrap();
        let e = Buffer::open(&c, None)
            .err()
            .expect("fail mode opens a stray -wal");
        assert_eq!(e.code(), Code::Corrupt, "{what}: {e}");
        assert!(
            e.message().contains("buf.db-wal"),
            "{what}: names the -wal: {e}"
        );
        assert!(e.message().contains("move"), "{what}: says what to do: {e}");
        assert_same_files(&found, &snapshot(dir.path()), what);
        eprintln!("{what}, fail: {e}");

        // quarantine: the -wal is moved aside as found, the file keeps every record.
        let rx = Server::receiver();
        let events = EventLog::new();
        let b = Buffer::open(&config(dir.path(), &rx.url()), events.callback())
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(b.status().pending_at_open, ours.len() as u64, "{what}");
        b.flush(Duration::from_secs(10)).unwrap();
        let got = delivered_ns(&rx);
        assert_eq!(got.len(), ours.len(), "{what}: records lost");
        assert!(
            got.keys().all(|n| *n < 100),
            "{what}: records of the stray -wal sent"
        );
        assert_no_duplicates(&rx);
        let moved = names_with(dir.path(), "buf.db.corrupt-");
        let wal = moved
            .iter()
            .find(|n| n.ends_with("-wal"))
            .unwrap_or_else(|| panic!("{what}: the -wal was not moved aside: {moved:?}"));
        assert!(
            std::fs::read(dir.path().join(wal)).unwrap() == found["buf.db-wal"],
            "{what}: the stray -wal is not kept as found"
        );
        assert!(
            wait_until(Duration::from_secs(5), || !events
                .of(EVENT_QUARANTINED)
                .is_empty()),
            "{what}: no QUARANTINED event"
        );
        eprintln!(
            "{what}, quarantine: {}",
            events.of(EVENT_QUARANTINED)[0].message
        );
        b.close(Duration::from_secs(1)).unwrap();
    }
}

#[test]
fn the_lock_of_a_killed_owner_never_blocks_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let down = format!("http://127.0.0.1:{}/ingest", dead_port());
    let mut cfg = child_config(dir.path(), &down);
    cfg.push(("durability", "sync".into()));
    let mut ch = FsChild::spawn(&cfg);
    let logged = ok_ns(&ch.cmd("log 0 25 50"));
    assert_eq!(logged.len(), 25);
    let lock_path = dir.path().join("buf.db.lock");

    // The lock is flock(2)'d by the owner: a flock from here fails (an fcntl lock would not
    // conflict with it), and a second open in this process is LOCKED, naming the path.
    let f = std::fs::File::open(&lock_path).unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a valid descriptor owned by `f`.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    let err = std::io::Error::last_os_error();
    assert_eq!(
        rc,
        -1,
        "the owner does not hold a flock on {}",
        lock_path.display()
    );
    assert_eq!(err.raw_os_error(), Some(libc::EWOULDBLOCK));
    let e = Buffer::open(&config(dir.path(), &down), None)
        .err()
        .expect("a second owner");
    assert_eq!(e.code(), Code::Locked);
    assert!(
        e.message()
            .contains(dir.path().join("buf.db").to_str().unwrap()),
        "{e}"
    );
    // O_CLOEXEC: the owner's lock descriptor is close-on-exec (a child it spawns does not
    // inherit the lock).
    let mut lock_fds = 0;
    for fd in std::fs::read_dir(format!("/proc/{}/fd", ch.pid))
        .unwrap()
        .flatten()
    {
        if std::fs::read_link(fd.path()).is_ok_and(|t| t == lock_path) {
            let info = std::fs::read_to_string(format!(
                "/proc/{}/fdinfo/{}",
                ch.pid,
                fd.file_name().to_string_lossy()
            ))
            .unwrap();
            let flags = info
                .lines()
                .find_map(|l| l.strip_prefix("flags:"))
                .map(|v| u32::from_str_radix(v.trim(), 8).unwrap())
                .unwrap();
            assert_ne!(
                flags & libc::O_CLOEXEC as u32,
                0,
                "lock fd without O_CLOEXEC"
            );
            lock_fds += 1;
        }
    }
    assert_eq!(lock_fds, 1, "the owner holds the lock file open once");

    // SIGKILL: the lock file stays, the lock dies with the process.
    ch.child.kill().unwrap();
    ch.child.wait().unwrap();
    assert!(lock_path.exists());
    // SAFETY: as above.
    assert_eq!(
        unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
        0,
        "the lock outlived its process"
    );
    // SAFETY: as above.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_UN) };
    drop(f);
    // A stale lock file with content (as other programs write a pid) changes nothing.
    std::fs::write(&lock_path, b"4194303\n").unwrap();
    let rx = Server::receiver();
    let started = Instant::now();
    let b = Buffer::open(&config(dir.path(), &rx.url()), None).expect("the next open");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "open waited on the stale lock"
    );
    assert_eq!(b.status().pending_at_open, 25);
    b.flush(Duration::from_secs(10)).unwrap();
    let got = delivered_ns(&rx);
    assert!(
        logged.iter().all(|n| got.contains_key(n)),
        "a synced record was lost"
    );
    b.close(Duration::from_secs(1)).unwrap();
}

// ---------------------------------------------------------------------------------------------
// 4. The disk fails after open

#[test]
fn records_logged_while_storage_is_degraded_are_delivered_from_memory() {
    // The endpoint is up. After open, every write to a file fails (RLIMIT_FSIZE = 0: EFBIG):
    // docs/reference.md, guarantees says records are held in memory, delivery goes on from memory, storage_degraded
    // is 1 with a STORAGE_ERROR event, edgebuf_sync returns STORAGE; once writing works
    // again, records go to disk again (STORAGE_OK) and storage_degraded returns to 0.
    let dir = tempfile::tempdir().unwrap();
    let rx = Server::receiver();
    let mut ch = FsChild::spawn(&child_config(dir.path(), &rx.url()));
    // Before: delivered and settled, nothing left on disk.
    assert_eq!(ok_ns(&ch.cmd("log 0 20 50")).len(), 20);
    assert_eq!(ch.cmd("flush 10000")["result"], "OK");

    ch.cmd("limit 0");
    let during = ok_ns(&ch.cmd("log 100 30 50"));
    assert_eq!(during.len(), 30, "async log accepts while the disk fails");
    let s = ch.wait_status(Duration::from_secs(10), |s| s["storage_degraded"] == true);
    assert_eq!(
        s["storage_degraded"], true,
        "the write failure was not noticed: {s}"
    );
    assert_eq!(ch.cmd("sync 1000")["result"], "EDGEBUF_ERR_STORAGE");
    let err = ch.events_of(EVENT_STORAGE_ERROR);
    assert!(!err.is_empty());
    eprintln!("STORAGE_ERROR: {}", err[0]["message"]);
    // Delivery goes on from memory while the disk still fails.
    let end = Instant::now() + Duration::from_secs(15);
    while Instant::now() < end && !during.iter().all(|n| delivered_ns(&rx).contains_key(n)) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let got = delivered_ns(&rx);
    let missing: Vec<_> = during.iter().filter(|n| !got.contains_key(n)).collect();
    let s = ch.status();
    assert!(
        missing.is_empty(),
        "records logged while degraded were not delivered from memory: {} of 30 missing; {s}",
        missing.len()
    );
    assert_eq!(s["storage_degraded"], true, "the disk still fails: {s}");
    assert_eq!(s["pending_records"], 0, "{s}");
    invariant_json(&s);

    // The disk works again: the next records go to disk, STORAGE_OK, storage_degraded 0.
    ch.cmd("limit max");
    let after = ok_ns(&ch.cmd("log 200 30 50"));
    let s = ch.wait_status(Duration::from_secs(10), |s| s["storage_degraded"] == false);
    assert_eq!(s["storage_degraded"], false, "storage never recovered: {s}");
    assert!(!ch.events_of(EVENT_STORAGE_OK).is_empty());
    assert_eq!(ch.cmd("sync 5000")["result"], "OK");
    assert_eq!(ch.cmd("flush 10000")["result"], "OK");
    let s = ch.status();
    invariant_json(&s);
    let got = delivered_ns(&rx);
    assert_no_duplicates(&rx);
    for n in (0..20)
        .chain(during.iter().copied())
        .chain(after.iter().copied())
    {
        assert!(got.contains_key(&n), "record {n} lost");
    }
    assert_eq!(s["delivered_total"], 80, "{s}");
    assert_eq!(s["dropped_total"], 0, "{s}");
    assert_eq!(ch.close(1000)["result"], "OK");
}

#[test]
fn sync_mode_refuses_records_while_storage_is_degraded() {
    // docs/reference.md, guarantees: in sync mode edgebuf_log returns EDGEBUF_ERR_STORAGE while the disk fails and
    // stores nothing (not counted as logged); it succeeds again once writing works.
    let dir = tempfile::tempdir().unwrap();
    let rx = Server::receiver();
    let mut cfg = child_config(dir.path(), &rx.url());
    cfg.push(("durability", "sync".into()));
    let mut ch = FsChild::spawn(&cfg);
    assert_eq!(ok_ns(&ch.cmd("log 0 5 50")).len(), 5);
    ch.cmd("limit 0");
    let a = ch.cmd("log 100 5 50");
    assert!(ok_ns(&a).is_empty(), "{a}");
    assert_eq!(a["errors"]["EDGEBUF_ERR_STORAGE"], 5, "{a}");
    let msg = a["messages"]["EDGEBUF_ERR_STORAGE"].as_str().unwrap();
    assert!(msg.contains("not stored"), "{msg}");
    let s = ch.status();
    assert_eq!(s["storage_degraded"], true, "{s}");
    assert_eq!(s["logged_total"], 5, "refused records are not logged: {s}");
    invariant_json(&s);
    ch.cmd("limit max");
    // The writer tries the disk again within its retry pause; the first log may still meet
    // the failure, later ones must succeed.
    let end = Instant::now() + Duration::from_secs(10);
    let mut ok = Vec::new();
    let mut n = 200;
    while ok.len() < 5 && Instant::now() < end {
        ok.extend(ok_ns(&ch.cmd(&format!("log {n} 1 50"))));
        n += 1;
    }
    assert_eq!(ok.len(), 5, "logging never worked again");
    let s = ch.status();
    assert_eq!(s["storage_degraded"], false, "{s}");
    assert_eq!(ch.cmd("flush 10000")["result"], "OK");
    let got = delivered_ns(&rx);
    assert!((0..5)
        .chain(ok.iter().copied())
        .all(|n| got.contains_key(&n)));
    assert!(
        (100..105).all(|n| !got.contains_key(&n)),
        "a refused record was sent"
    );
    assert_eq!(ch.close(1000)["result"], "OK");
}
