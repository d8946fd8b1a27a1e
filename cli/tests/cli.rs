//! The `edgebuf` command-line tool (cli/src/main.rs), run as a program: `status`, `export`
//! and `check` on buffer files written through the Rust API (also while a buffer holds the
//! file open, and without creating or changing a file), `requeue`, `compact` and `drain`
//! (refused while a buffer holds the file), and `receive`, the reference receiver, with HTTP
//! requests and with a buffer.

#[path = "../../tests/common/mod.rs"]
mod common;
use common::*;
mod receiver;
use edgebuf::{Buffer, Code};
use receiver::Receive;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_edgebuf");

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run edgebuf")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Lines of `edgebuf export`, parsed.
fn export(args: &[&str]) -> Vec<Value> {
    let o = run(&[&["export"], args].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// A buffer file holding dead letter seq 3 (rejected with 400) and `pending` records logged
/// while the endpoint is down; returned open (it holds the file's lock) with the records it
/// logged last.
fn buffer_with_backlog(dir: &Path, pending: usize) -> (Buffer, Vec<String>) {
    buffer_with_dead_letters(dir, 10, &[2]);
    let url = format!("http://127.0.0.1:{}/ingest", dead_port());
    let mut c = config(dir, &url);
    c.set("http.proxy", "none").unwrap();
    let b = Buffer::open(&c, None).unwrap();
    let mut logged = Vec::new();
    for i in 0..pending {
        // Whitespace, a newline between tokens, escapes and non-ASCII: exported verbatim.
        let rec = format!(
            "{{\"frame\": {i},\n \"label\":\"caf\u{e9} \\\"q\\\"\", \"scores\":[0.25, 1e-3]}}"
        );
        b.log(rec.as_bytes()).unwrap();
        logged.push(rec);
    }
    b.sync(Duration::from_secs(10)).unwrap();
    (b, logged)
}

#[test]
fn status_reports_the_backlog_while_a_buffer_holds_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("buf.db");
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let (b, logged) = buffer_with_backlog(dir.path(), 25);
    let bytes: usize = logged.iter().map(String::len).sum();

    let o = run(&["status", p(&path), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(s["pending_records"], 25, "{s}");
    assert_eq!(s["pending_bytes"], bytes as u64, "{s}");
    assert_eq!(s["dead_letter_records"], 1, "{s}");
    assert_eq!(s["dead_letters_by_status"]["400"], 1, "{s}");
    assert_eq!(s["instance"], b.instance(), "{s}");
    assert_eq!(s["first_pending_seq"], 11, "{s}");
    assert_eq!(s["last_seq"], 35, "{s}");
    assert_eq!(s["locked_by_pid"], std::process::id(), "{s}");
    let oldest = s["oldest_pending_ts_ms"].as_i64().unwrap();
    assert!(oldest >= before - 1000 && oldest <= before + 60_000, "{s}");
    // Measured before the tool opened the file (a reader creates a missing -shm).
    assert!(s["disk_bytes"].as_u64().unwrap() >= s["db_bytes"].as_u64().unwrap());
    assert!(s["db_bytes"].as_u64().unwrap() >= 4096, "{s}");

    let o = run(&["status", p(&path)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    for want in [
        format!("instance      {}", b.instance()),
        format!("pending       25 records, {}", human(bytes as u64)),
        "dead letters  1 record".to_string(),
        "(HTTP 400: 1)".to_string(),
        format!("in use        yes, by pid {}", std::process::id()),
        "last seq      35".to_string(),
    ] {
        assert!(text.contains(&want), "{want:?} not in\n{text}");
    }
    // The buffer still works, and nothing the tool did disturbs it.
    b.log(b"{\"after\":1}").unwrap();
    b.sync(Duration::from_secs(5)).unwrap();
    assert_eq!(b.status().pending_records, 26);
    assert_eq!(
        b.close(Duration::from_millis(50)).unwrap_err().code(),
        Code::Timeout
    );

    let o = run(&["status", p(&path), "--json"]);
    let s: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(s["pending_records"], 26, "{s}");
    assert_eq!(s["locked_by_pid"], Value::Null, "{s}");
    assert!(stdout(&run(&["status", p(&path)])).contains("in use        no"));
}

/// One sample of Prometheus text: the metric name, its labels (unescaped), its value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

impl Sample {
    fn label(&self, k: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*` (labels: no colon).
fn valid_name(n: &str, colon: bool) -> bool {
    let ok = |c: char, first: bool| {
        c.is_ascii_alphabetic() || c == '_' || (colon && c == ':') || (!first && c.is_ascii_digit())
    };
    let mut cs = n.chars();
    cs.next().is_some_and(|c| ok(c, true)) && cs.all(|c| ok(c, false))
}

/// Parses Prometheus text exposition format line by line, checking that each family's HELP
/// and TYPE lines come before its samples, that its samples are together, and that names,
/// label values and values are well formed.
fn parse_prometheus(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    let (mut help, mut typed) = (None::<String>, None::<String>);
    let mut seen = std::collections::HashSet::new();
    assert!(text.ends_with('\n'), "the last line ends with a line feed");
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, doc) = rest.split_once(' ').expect("HELP name text");
            assert!(valid_name(name, true), "{line}");
            assert!(!doc.trim().is_empty(), "{line}");
            assert!(seen.insert(name.to_string()), "{name} described twice");
            help = Some(name.to_string());
            typed = None;
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name type");
            assert_eq!(
                help.as_deref(),
                Some(name),
                "TYPE {name} right after its HELP"
            );
            assert!(["gauge", "counter"].contains(&kind), "{line}");
            assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
            typed = Some(name.to_string());
            continue;
        }
        assert!(!line.starts_with('#') && !line.is_empty(), "{line:?}");
        let name_end = line.find(['{', ' ']).expect("a sample line");
        let name = &line[..name_end];
        assert!(valid_name(name, true), "{line}");
        assert_eq!(
            typed.as_deref(),
            Some(name),
            "{line}: not after its HELP and TYPE"
        );
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        if let Some(r) = rest.strip_prefix('{') {
            rest = r;
            loop {
                if let Some(r) = rest.strip_prefix('}') {
                    rest = r;
                    break;
                }
                let (k, r) = rest.split_once("=\"").expect("label=\"value\"");
                assert!(valid_name(k, false), "{line}: label {k}");
                let mut v = String::new();
                let mut chars = r.char_indices();
                let end = loop {
                    let (i, c) = chars.next().expect("an unterminated label value");
                    match c {
                        '"' => break i,
                        '\\' => match chars.next().expect("an escape").1 {
                            'n' => v.push('\n'),
                            c @ ('\\' | '"') => v.push(c),
                            c => panic!("{line}: escape \\{c}"),
                        },
                        '\n' => panic!("a raw line feed"),
                        c => v.push(c),
                    }
                };
                labels.push((k.to_string(), v));
                rest = &r[end + 1..];
                rest = rest.strip_prefix(',').unwrap_or(rest);
            }
        }
        let value = rest.strip_prefix(' ').expect("a space before the value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|e| panic!("{line}: value {value:?}: {e}"));
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    samples
}

/// The one sample of `name`, for the file `path`.
fn metric(samples: &[Sample], name: &str) -> Option<f64> {
    let mut it = samples.iter().filter(|s| s.name == name);
    let s = it.next()?;
    assert!(it.next().is_none(), "{name} has one sample");
    Some(s.value)
}

#[test]
fn status_writes_prometheus_text_that_agrees_with_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("buf.db");
    let (b, _) = buffer_with_backlog(dir.path(), 25);
    let prom = |path: &Path, extra: &[&str]| {
        let o = run(&[&["status", p(path), "--format", "prometheus"], extra].concat());
        assert!(o.status.success(), "{}", stderr(&o));
        let text = stdout(&o);
        (parse_prometheus(&text), text)
    };
    let check = |path: &Path, in_use: f64| {
        let s = status_json(path);
        let (m, text) = prom(path, &[]);
        for sample in &m {
            assert_eq!(sample.label("path"), Some(p(path)), "{sample:?}");
        }
        for (name, field) in [
            ("edgebuf_pending_records", "pending_records"),
            ("edgebuf_pending_bytes", "pending_bytes"),
            ("edgebuf_first_pending_seq", "first_pending_seq"),
            ("edgebuf_last_seq", "last_seq"),
            ("edgebuf_dead_letter_records", "dead_letter_records"),
            ("edgebuf_dead_letter_bytes", "dead_letter_bytes"),
            (
                "edgebuf_delivered_unreclaimed_records",
                "delivered_unreclaimed_records",
            ),
            ("edgebuf_disk_bytes", "disk_bytes"),
            ("edgebuf_db_bytes", "db_bytes"),
            ("edgebuf_wal_bytes", "wal_bytes"),
            ("edgebuf_shm_bytes", "shm_bytes"),
        ] {
            assert_eq!(
                metric(&m, name),
                s[field].as_u64().map(|v| v as f64),
                "{name} and {field}: {s}\n{text}"
            );
        }
        let ts = s["oldest_pending_ts_ms"].as_i64().unwrap() as f64 / 1000.0;
        assert_eq!(
            metric(&m, "edgebuf_oldest_pending_timestamp_seconds"),
            Some(ts)
        );
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let age = metric(&m, "edgebuf_oldest_pending_age_seconds").unwrap();
        assert!(
            age >= 0.0 && (now - ts - age).abs() < 30.0,
            "{age} {ts} {now}"
        );
        let by_status: Vec<_> = m
            .iter()
            .filter(|x| x.name == "edgebuf_dead_letter_records_by_status")
            .map(|x| (x.label("status").unwrap().to_string(), x.value))
            .collect();
        let want: Vec<_> = s["dead_letters_by_status"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_f64().unwrap()))
            .collect();
        assert_eq!(by_status, want);
        let info = m.iter().find(|x| x.name == "edgebuf_buffer_info").unwrap();
        assert_eq!(info.label("buffer_instance"), s["instance"].as_str());
        assert_eq!(
            info.label("schema_version"),
            Some(s["schema_version"].to_string().as_str())
        );
        assert_eq!(metric(&m, "edgebuf_in_use"), Some(in_use));
        assert_eq!(s["locked_by_pid"].is_null(), in_use == 0.0);
        assert_eq!(metric(&m, "edgebuf_capacity_max_bytes"), None);
        m
    };
    // While a buffer holds the file, and after it closed.
    let m = check(&path, 1.0);
    assert_eq!(metric(&m, "edgebuf_pending_records"), Some(25.0));
    assert_eq!(metric(&m, "edgebuf_dead_letter_records"), Some(1.0));
    let _ = b.close(Duration::ZERO);
    check(&path, 0.0);
    assert_eq!(
        stdout(&run(&["status", p(&path), "--format", "json"])),
        stdout(&run(&["status", p(&path), "--json"])),
        "--format json is --json"
    );
    let (m, _) = prom(&path, &["--capacity-max-bytes", "134217728"]);
    assert_eq!(metric(&m, "edgebuf_capacity_max_bytes"), Some(134217728.0));
    let o = run(&["status", p(&path), "--capacity-max-bytes", "1"]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));

    // A name the format must escape: backslash, double quote, line feed.
    let odd = dir.path().join("a\\b\"c\nd.db");
    std::fs::rename(&path, &odd).unwrap();
    let (m, text) = prom(&odd, &[]);
    assert!(
        text.contains("path=\"") && text.contains("a\\\\b\\\"c\\nd.db\""),
        "{text}"
    );
    for sample in &m {
        assert_eq!(sample.label("path"), Some(p(&odd)), "{sample:?}");
    }

    // A buffer with nothing pending: the oldest record's time has no sample, its age is 0.
    let dir = tempfile::tempdir().unwrap();
    buffer_with_dead_letters(dir.path(), 3, &[]);
    let (m, _) = prom(&dir.path().join("buf.db"), &[]);
    assert_eq!(metric(&m, "edgebuf_pending_records"), Some(0.0));
    assert_eq!(metric(&m, "edgebuf_oldest_pending_timestamp_seconds"), None);
    assert_eq!(metric(&m, "edgebuf_first_pending_seq"), None);
    assert_eq!(metric(&m, "edgebuf_oldest_pending_age_seconds"), Some(0.0));
    assert!(m
        .iter()
        .all(|s| s.name != "edgebuf_dead_letter_records_by_status"));
}

fn human(n: u64) -> String {
    if n < 1024 {
        format!("{n} B")
    } else {
        format!("{:.1} KiB", n as f64 / 1024.0)
    }
}

#[test]
fn export_prints_wire_envelopes_with_the_data_verbatim() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("buf.db");
    let (b, logged) = buffer_with_backlog(dir.path(), 12);
    let inst = b.instance().to_string();

    let o = run(&["export", p(&path)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 12);
    for (k, line) in lines.iter().enumerate() {
        let seq = 11 + k as u64;
        let prefix = format!("{{\"id\":\"{inst}-{seq}\",\"seq\":{seq},\"ts_ms\":");
        assert!(line.starts_with(&prefix), "{line}");
        // The record's bytes, its newline (insignificant whitespace) as a space.
        let data = logged[k].replace('\n', " ");
        assert!(
            line.ends_with(&format!(",\"source\":\"\",\"data\":{data}}}")),
            "{line}"
        );
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["data"]["frame"], k as u64);
        assert_eq!(v["data"]["label"], "caf\u{e9} \"q\"");
    }

    let env = export(&[p(&path), "--limit", "5", "--source", "cam-\"7\""]);
    assert_eq!(seqs(&env), (11..=15).collect::<Vec<_>>());
    assert!(env.iter().all(|e| e["source"] == "cam-\"7\""));

    let dead = export(&[p(&path), "--dead-letters"]);
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["id"], format!("{inst}-3"));
    assert_eq!(dead[0]["seq"], 3);
    assert_eq!(dead[0]["data"], serde_json::json!({"i": 2, "poison": true}));
    assert_eq!(dead[0]["dead_letter"]["status"], 400);
    assert!(dead[0]["dead_letter"]["reason"].as_str().is_some());
    assert!(dead[0]["dead_letter"]["dead_unix_ms"].as_i64().unwrap() > 1_600_000_000_000);

    assert!(export(&[p(&path), "--limit", "0"]).is_empty());
    let _ = b.close(Duration::from_millis(50));
    // After close too (nobody holds the file), and with a reader that goes away early.
    assert_eq!(export(&[p(&path)]).len(), 12);
}

#[test]
fn export_marks_records_logged_before_the_clock_was_valid_unset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("buf.db");
    let url = format!("http://127.0.0.1:{}/ingest", dead_port());
    let mut c = config(dir.path(), &url);
    c.set("http.proxy", "none").unwrap();
    let b = Buffer::open(&c, None).unwrap();
    b.log(b"{\"valid\":true}").unwrap();
    b.sync(Duration::from_secs(10)).unwrap();
    let _ = b.close(Duration::from_millis(50));
    // Reopened with the wall clock taken as not set yet (the bound an hour ahead).
    let ahead = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + 3_600_000;
    c.set("clock.valid_after_unix_ms", &ahead.to_string())
        .unwrap();
    let b = Buffer::open(&c, None).unwrap();
    b.log(b"{\"valid\":false}").unwrap();
    b.sync(Duration::from_secs(10)).unwrap();
    let _ = b.close(Duration::from_millis(50));
    // The tool cannot know whether that boot's clock became valid: "unset", ts_ms as logged.
    let env = export(&[p(&path)]);
    assert_eq!(env.len(), 2, "{env:?}");
    assert_eq!(env[0]["data"]["valid"], true);
    assert!(env[0].get("clock").is_none(), "{}", env[0]);
    assert_eq!(env[1]["data"]["valid"], false);
    assert_eq!(env[1]["clock"], "unset", "{}", env[1]);
}

#[test]
fn check_tells_a_sound_file_from_a_damaged_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("buf.db");
    let (b, _) = buffer_with_backlog(dir.path(), 300);
    let o = run(&["check", p(&path)]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains(": ok"), "{}", stdout(&o));
    assert!(stdout(&o).contains(b.instance()), "{}", stdout(&o));
    let _ = b.close(Duration::from_millis(50));

    // Not a database at all.
    let garbage = dir.path().join("garbage.db");
    let noise: Vec<u8> = (0..20_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&garbage, &noise).unwrap();
    // It is not damaged but not edgebuf's (no SQLite header): edgebuf never moves it.
    let o = run(&["check", p(&garbage)]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("not an edgebuf buffer file"),
        "{}",
        stdout(&o)
    );
    assert!(!stdout(&o).contains("DAMAGED"), "{}", stdout(&o));
    assert!(
        !garbage.with_extension("db-wal").exists(),
        "check creates nothing"
    );

    // A real buffer file whose b-tree pages were overwritten.
    let damaged = dir.path().join("damaged.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
    }
    let mut bytes = std::fs::read(&path).unwrap();
    let page = 4096;
    assert!(bytes.len() >= 8 * page, "{} bytes", bytes.len());
    for pg in 2..bytes.len() / page {
        for b in &mut bytes[pg * page..pg * page + 64] {
            *b = 0xA5;
        }
    }
    std::fs::write(&damaged, &bytes).unwrap();
    let o = run(&["check", p(&damaged)]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("DAMAGED"), "{}", stdout(&o));

    // Wrong entries in the pointer map (page 2 of an auto_vacuum file): reads still work,
    // integrity_check lists the problems.
    let mut bytes = std::fs::read(&path).unwrap();
    for entry in 0..8 {
        bytes[page + entry * 5] = 0x04;
    }
    let ptrmap = dir.path().join("ptrmap.db");
    std::fs::write(&ptrmap, &bytes).unwrap();
    let o = run(&["check", p(&ptrmap)]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("DAMAGED (integrity_check found"),
        "{}",
        stdout(&o)
    );

    // A sound SQLite file of another application.
    let foreign = dir.path().join("foreign.db");
    rusqlite::Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();
    let o = run(&["check", p(&foreign)]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("not an edgebuf buffer"),
        "{}",
        stdout(&o)
    );
    assert_eq!(run(&["status", p(&foreign)]).status.code(), Some(1));

    // Nothing to check.
    let o = run(&["check", p(&dir.path().join("missing.db"))]);
    assert_eq!(o.status.code(), Some(2), "{}{}", stdout(&o), stderr(&o));
    assert!(
        !dir.path().join("missing.db").exists(),
        "check creates nothing"
    );
}

#[test]
fn every_command_has_help() {
    for cmd in [
        &[][..],
        &["receive"][..],
        &["status"][..],
        &["export"][..],
        &["check"][..],
        &["requeue"][..],
        &["compact"][..],
        &["drain"][..],
    ] {
        let o = run(&[cmd, &["--help"]].concat());
        assert!(o.status.success(), "{cmd:?}: {}", stderr(&o));
        assert!(
            stdout(&o).contains("Usage: edgebuf"),
            "{cmd:?}: {}",
            stdout(&o)
        );
    }
    assert_eq!(
        run(&["status"]).status.code(),
        Some(2),
        "a missing argument"
    );
    // The exit codes and the requeue design are documented.
    let top = stdout(&run(&["--help"]));
    assert!(
        top.contains("3 the buffer is held by another process"),
        "{top}"
    );
    assert!(top.contains("4 drain"), "{top}");
    let rq = stdout(&run(&["requeue", "--help"]));
    assert!(
        rq.contains("new seq") && rq.contains("never reused"),
        "{rq}"
    );
    let dr = stdout(&run(&["drain", "--help"]));
    for opt in [
        "--endpoint",
        "--timeout",
        "--header",
        "--batch-max-records",
        "--from-env",
    ] {
        assert!(dr.contains(opt), "{opt}: {dr}");
    }
}

// ---------------------------------------------------------------------------------------------
// edgebuf receive

/// One HTTP/1.1 request on a new connection; (status, body).
fn http(port: u16, method: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!(
        "{method} /ingest HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Length: {}\r\n",
        body.len()
    );
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let resp = String::from_utf8_lossy(&resp).into_owned();
    let code = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (code, body)
}

fn post(port: u16, body: &str) -> u16 {
    http(
        port,
        "POST",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
    .0
}

fn env(inst: &str, seq: u64, source: &str, data: &str) -> String {
    format!("{{\"id\":\"{inst}-{seq}\",\"seq\":{seq},\"ts_ms\":1764320000123,\"source\":\"{source}\",\"data\":{data}}}")
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn zstd(b: &[u8]) -> Vec<u8> {
    zstd::bulk::compress(b, 3).unwrap()
}

#[test]
fn receive_keeps_zstd_envelopes_once_within_max_body() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("received.ndjson");
    let rx = Receive::start(&out, &["--max-body", "65536"]);
    let post_zstd = |content_type: &str, body: &[u8]| {
        http(
            rx.port,
            "POST",
            &[("Content-Type", content_type), ("Content-Encoding", "zstd")],
            body,
        )
    };
    let a = env("00000000000000bb", 1, "cam-1", "{\"b\": 2, \"a\":1.50}");
    let b = env("00000000000000bb", 2, "cam-1", "[1, 2]");
    let (code, resp) = post_zstd("application/json", &zstd(format!("[{a},{b}]").as_bytes()));
    assert_eq!(code, 200, "{resp}");
    // The same again, and NDJSON with one new envelope: the duplicates are skipped.
    let (code, resp) = post_zstd("application/json", &zstd(format!("[{a},{b}]").as_bytes()));
    assert_eq!(code, 200, "{resp}");
    let c = env("00000000000000bb", 3, "cam-1", "null");
    let (code, resp) = post_zstd(
        "application/x-ndjson",
        &zstd(format!("{a}\n{c}\n").as_bytes()),
    );
    assert_eq!(code, 200, "{resp}");
    assert_eq!(rx.lines(), vec![a.clone(), b.clone(), c.clone()]);

    // A small body that inflates past --max-body: 413, nothing kept.
    let d = env("00000000000000bb", 4, "cam-1", "{}");
    let mut big = format!("[{d}");
    big.push_str(&" ".repeat(70_000));
    big.push(']');
    let small = zstd(big.as_bytes());
    assert!(small.len() < 1000, "{}", small.len());
    assert_eq!(post_zstd("application/json", &small).0, 413);
    // A frame that asks for a 16 MiB window (HTTP's zstd allows 8 MiB): 400 before any
    // allocation of that size; and a body that is not zstd at all: 400.
    let mut e = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    e.window_log(24).unwrap();
    e.write_all(format!("[{d}]").as_bytes()).unwrap();
    let wide = e.finish().unwrap();
    assert_eq!(post_zstd("application/json", &wide).0, 400);
    assert_eq!(
        post_zstd("application/json", b"[{\"not\": \"zstd\"}]").0,
        400
    );
    assert_eq!(rx.lines().len(), 3);

    // A buffer configured with http.compression=zstd delivers to it, each record once.
    let sub = dir.path().join("buffer");
    std::fs::create_dir(&sub).unwrap();
    let mut cfg = config(&sub, &rx.url());
    cfg.set("http.proxy", "none").unwrap();
    cfg.set("http.compression", "zstd").unwrap();
    cfg.set("source.id", "zstd-buffer").unwrap();
    let buf = Buffer::open(&cfg, None).unwrap();
    for i in 0..150 {
        buf.log(format!("{{\"i\": {i}}}").as_bytes()).unwrap();
    }
    buf.flush(Duration::from_secs(20)).unwrap();
    buf.close(Duration::from_secs(2)).unwrap();
    let lines = rx.lines();
    let (_, err) = rx.stop();
    assert_eq!(lines.len(), 153, "{err}");
    let got: Vec<Value> = lines[3..]
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(seqs(&got), (1..=150).collect::<Vec<_>>());
    assert!(err.contains("unique=153 duplicates=3"), "{err}");
}

#[test]
fn receive_keeps_each_envelope_once_and_fails_on_demand() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("received.ndjson");
    let control = dir.path().join("control");
    let rx = Receive::start(
        &out,
        &["--control-file", p(&control), "--fail-status", "502"],
    );

    let a = env("00000000000000aa", 1, "cam-1", "{\"b\": 2, \"a\":1.50}");
    let body = format!("[{a}]");
    assert_eq!(post(rx.port, &body), 200);
    assert_eq!(post(rx.port, &body), 200, "a duplicate is acknowledged too");
    assert_eq!(rx.lines(), vec![a.clone()], "kept once, verbatim");

    // NDJSON, gzipped: the duplicate is skipped, the new one kept; the same id from another
    // source is another record.
    let b = env("00000000000000aa", 2, "cam-1", "[1, 2]");
    let c = env("00000000000000aa", 1, "cam-2", "null");
    let nd = format!("{a}\n{b}\n{c}\n");
    let (code, resp) = http(
        rx.port,
        "POST",
        &[
            ("Content-Type", "application/x-ndjson"),
            ("Content-Encoding", "gzip"),
        ],
        &gzip(nd.as_bytes()),
    );
    assert_eq!(code, 200, "{resp}");
    assert_eq!(rx.lines(), vec![a.clone(), b.clone(), c.clone()]);

    // A malformed body or envelope: 400, nothing kept (not even its good envelopes).
    let d = env("00000000000000aa", 3, "cam-1", "{}");
    assert_eq!(post(rx.port, &format!("[{d},{{\"id\":\"x\"}}]")), 400);
    assert_eq!(
        post(
            rx.port,
            "[{\"id\":\"00000000000000aa-4\",\"seq\":5,\"ts_ms\":1,\"source\":\"s\",\"data\":1}]"
        ),
        400
    );
    assert_eq!(post(rx.port, "not json"), 400);
    assert_eq!(rx.lines().len(), 3);

    // Failing while the control file says "down".
    std::fs::write(&control, "down\n").unwrap();
    assert_eq!(post(rx.port, &format!("[{d}]")), 502);
    assert_eq!(rx.lines().len(), 3);
    std::fs::write(&control, "up\n").unwrap();
    assert_eq!(post(rx.port, &format!("[{d}]")), 200);
    assert_eq!(rx.lines().len(), 4);

    // SIGUSR1 toggles failing.
    // SAFETY: signals a child process of this test.
    unsafe { libc::kill(rx.pid() as i32, libc::SIGUSR1) };
    assert!(wait_until(Duration::from_secs(5), || post(rx.port, "[]") == 502));
    unsafe { libc::kill(rx.pid() as i32, libc::SIGUSR1) };
    assert!(wait_until(Duration::from_secs(5), || post(rx.port, "[]") == 200));

    let (code, health) = http(rx.port, "GET", &[], b"");
    assert_eq!(code, 200, "GET elsewhere is a health check: {health}");
    assert_eq!(http(rx.port, "PUT", &[], b"[]").0, 405);
    let mut s = TcpStream::connect(("127.0.0.1", rx.port)).unwrap();
    s.write_all(b"GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let stats: Value = serde_json::from_str(resp.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(stats["unique"], 4, "{stats}");
    assert_eq!(stats["duplicates"], 2, "{stats}");
    assert_eq!(stats["bad"], 3, "{stats}");

    let (code, err) = rx.stop();
    assert_eq!(code, Some(0), "{err}");
    let last = err.lines().last().unwrap_or("");
    assert!(
        last.contains("stopped;")
            && last.contains("received=6")
            && last.contains("unique=4")
            && last.contains("duplicates=2"),
        "{err}"
    );

    // A restarted receiver keeps deduplicating against the file.
    let rx = Receive::start(&out, &[]);
    assert_eq!(post(rx.port, &format!("[{b},{a}]")), 200);
    assert_eq!(rx.lines().len(), 4);
    let (_, err) = rx.stop();
    assert!(err.contains("4 envelopes already in it"), "{err}");
    assert!(err.contains("unique=0 duplicates=2"), "{err}");
}

#[test]
fn receive_binds_only_the_address_given() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receive::start(&dir.path().join("out"), &[]);
    // Another local address of the loopback range is not served.
    assert!(TcpStream::connect(("127.0.0.2", rx.port)).is_err());
    assert!(TcpStream::connect(("127.0.0.1", rx.port)).is_ok());
    // A second receiver on the same port fails clearly.
    let o = run(&[
        "receive",
        "--listen",
        &format!("127.0.0.1:{}", rx.port),
        "--out",
        p(&dir.path().join("out2")),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cannot listen"), "{}", stderr(&o));
}

#[test]
fn a_buffer_delivers_everything_to_receive_once_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("received.ndjson");
    // The port stays held by this test (a socket bound beside the receiver's listener, never
    // listening itself), so that it is free for the receiver's return and for nothing else.
    let (_hold, port) = bound_socket(0, true);
    let rx = Receive::start_on(port, &out, &[]);
    for (format, compression) in [("json", "none"), ("ndjson", "gzip")] {
        let sub = dir.path().join(format);
        std::fs::create_dir(&sub).unwrap();
        let mut c = config(&sub, &rx.url());
        c.set("http.proxy", "none").unwrap();
        c.set("format", format).unwrap();
        c.set("http.compression", compression).unwrap();
        c.set("source.id", format).unwrap();
        let b = Buffer::open(&c, None).unwrap();
        for i in 0..150 {
            b.log(format!("{{\"i\": {i}}}").as_bytes()).unwrap();
        }
        b.flush(Duration::from_secs(20)).unwrap();
        b.close(Duration::from_secs(2)).unwrap();
    }
    let (_, err) = rx.stop();
    assert!(err.contains("unique=300 duplicates=0"), "{err}");
    // The receiver comes back on the same port; a buffer with a backlog delivers it.
    let sub = dir.path().join("again");
    std::fs::create_dir(&sub).unwrap();
    let url = format!("http://127.0.0.1:{port}/ingest");
    let mut c = config(&sub, &url);
    c.set("http.proxy", "none").unwrap();
    c.set("source.id", "again").unwrap();
    let b = Buffer::open(&c, None).unwrap();
    for i in 0..50 {
        b.log(format!("{{\"i\": {i}}}").as_bytes()).unwrap();
    }
    assert_eq!(
        b.flush(Duration::from_millis(300)).unwrap_err().code(),
        Code::Timeout
    );
    let rx = Receive::start_on(port, &out, &[]);
    b.flush(Duration::from_secs(20)).unwrap();
    b.close(Duration::from_secs(2)).unwrap();
    let lines = rx.lines();
    let (_, err) = rx.stop();
    assert_eq!(lines.len(), 350, "{err}");
    let env: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for source in ["json", "ndjson"] {
        let got: Vec<&Value> = env.iter().filter(|e| e["source"] == source).collect();
        assert_eq!(
            seqs(&got.into_iter().cloned().collect::<Vec<_>>()),
            (1..=150).collect::<Vec<_>>(),
            "{source}"
        );
    }
    let again: Vec<Value> = env
        .iter()
        .filter(|e| e["source"] == "again")
        .cloned()
        .collect();
    assert_eq!(seqs(&again), (1..=50).collect::<Vec<_>>());
    // Verbatim: the space inside each record is kept.
    assert!(lines.iter().all(|l| l.contains("\"data\":{\"i\": ")));
}

// ---------------------------------------------------------------------------------------------
// Read-only commands leave the file set as they found it

/// The names in `dir` with their sizes and modification times, and the bytes of `path`.
fn snapshot(dir: &Path, path: &Path) -> (Vec<(String, u64, std::time::SystemTime)>, Vec<u8>) {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                m.len(),
                m.modified().unwrap(),
            )
        })
        .collect();
    files.sort();
    (files, std::fs::read(path).unwrap())
}

#[test]
fn read_only_commands_create_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("buf.db");
    let (b, _) = buffer_with_backlog(dir.path(), 40);
    let _ = b.close(Duration::from_millis(50));
    let before = snapshot(dir.path(), &path);
    assert!(
        !before
            .0
            .iter()
            .any(|f| f.0.ends_with("-wal") || f.0.ends_with("-shm")),
        "a closed buffer has no -wal or -shm: {:?}",
        before.0
    );
    for args in [
        &["status", p(&path)][..],
        &["status", p(&path), "--json"][..],
        &["status", p(&path), "--format", "prometheus"][..],
        &["export", p(&path)][..],
        &["export", p(&path), "--dead-letters"][..],
        &["check", p(&path)][..],
    ] {
        let o = run(args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        assert_eq!(snapshot(dir.path(), &path), before, "after {args:?}");
    }
    assert!(stdout(&run(&["check", p(&path)])).contains("40 pending"));

    // While a buffer holds the file: its -wal and -shm are shared, nothing else appears.
    let mut c = config(dir.path(), &format!("http://127.0.0.1:{}/", dead_port()));
    c.set("http.proxy", "none").unwrap();
    let b = Buffer::open(&c, None).unwrap();
    b.log(b"{\"held\":1}").unwrap();
    b.sync(Duration::from_secs(5)).unwrap();
    let names = |d: &Path| {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let held = names(dir.path());
    for args in [&["status", p(&path)][..], &["export", p(&path)][..]] {
        let o = run(args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    }
    assert_eq!(names(dir.path()), held);
    assert_eq!(export(&[p(&path)]).len(), 41);
    let _ = b.close(Duration::from_millis(50));
}

// ---------------------------------------------------------------------------------------------
// edgebuf requeue, compact, drain

/// A closed buffer file in `dir` whose records `poison` (indexes of 0..total) were rejected with
/// 400 and are dead letters; the others were delivered. Returns the instance.
fn buffer_with_dead_letters(dir: &Path, total: usize, poison: &[usize]) -> String {
    let srv = Server::start(|hit| {
        if hit.plain().windows(8).any(|w| w == b"\"poison\"") {
            Act::status(400)
        } else {
            Act::status(200)
        }
    });
    let mut c = config(dir, &srv.url());
    c.set("http.proxy", "none").unwrap();
    let b = Buffer::open(&c, None).unwrap();
    for i in 0..total {
        let rec = if poison.contains(&i) {
            format!("{{\"i\":{i},\"poison\":true}}")
        } else {
            format!("{{\"i\":{i}}}")
        };
        b.log(rec.as_bytes()).unwrap();
    }
    b.flush(Duration::from_secs(20)).unwrap();
    assert_eq!(b.status().dead_letter_records, poison.len() as u64);
    let inst = b.instance().to_string();
    b.close(Duration::from_secs(2)).unwrap();
    inst
}

/// `edgebuf status --json`.
fn status_json(path: &Path) -> Value {
    let o = run(&["status", p(path), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_str(&stdout(&o)).unwrap()
}

/// Opens the buffer in this process (holding its lock) with an endpoint that is down.
fn hold(dir: &Path) -> Buffer {
    let mut c = config(dir, &format!("http://127.0.0.1:{}/", dead_port()));
    c.set("http.proxy", "none").unwrap();
    Buffer::open(&c, None).unwrap()
}

fn assert_held(o: &Output) {
    assert_eq!(o.status.code(), Some(3), "{}{}", stdout(o), stderr(o));
    assert!(
        stderr(o).contains("held by another process")
            && stderr(o).contains(&format!("(pid {})", std::process::id()))
            && stderr(o).contains("stop it first"),
        "{}",
        stderr(o)
    );
}

#[test]
fn requeue_moves_dead_letters_back_and_a_receiver_gets_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("buf.db");
    let inst = buffer_with_dead_letters(dir.path(), 12, &[2, 5, 9]);
    let dead = export(&[p(&path), "--dead-letters"]);
    assert_eq!(seqs(&dead), vec![3, 6, 10]);

    // Refused while a program holds the buffer; nothing changes.
    let b = hold(dir.path());
    b.log(b"{\"later\":1}").unwrap();
    b.sync(Duration::from_secs(5)).unwrap();
    assert_held(&run(&["requeue", p(&path)]));
    assert_eq!(status_json(&path)["dead_letter_records"], 3);
    let _ = b.close(Duration::ZERO);

    // A status filter that matches nothing.
    let o = run(&["requeue", p(&path), "--status", "422"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("requeued 0 dead letters"),
        "{}",
        stdout(&o)
    );
    assert_eq!(status_json(&path)["dead_letter_records"], 3);

    let o = run(&["requeue", p(&path), "--status", "400"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("requeued 3 dead letters with HTTP status 400")
            && stdout(&o).contains("pending again as seq 14..16")
            && stdout(&o).contains(&format!("new ids {inst}-14..{inst}-16")),
        "{}",
        stdout(&o)
    );
    let s = status_json(&path);
    assert_eq!(s["dead_letter_records"], 0, "{s}");
    assert_eq!(s["pending_records"], 4, "{s}");
    assert_eq!(s["last_seq"], 16, "{s}");
    // Behind the record already pending, in their original order, with new ids.
    let pending = export(&[p(&path)]);
    assert_eq!(seqs(&pending), vec![13, 14, 15, 16]);
    let ids: Vec<&str> = pending.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [13, 14, 15, 16]
            .map(|s| format!("{inst}-{s}"))
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    );
    let data: Vec<&Value> = pending[1..].iter().map(|e| &e["data"]["i"]).collect();
    assert_eq!(data, [2, 5, 9].map(Value::from).iter().collect::<Vec<_>>());
    assert!(pending[1..].iter().all(|e| e["data"]["poison"] == true));
    // Their original ts_ms is kept.
    for (old, new) in dead.iter().zip(&pending[1..]) {
        assert_eq!(old["ts_ms"], new["ts_ms"]);
    }
    assert_eq!(run(&["check", p(&path)]).status.code(), Some(0));

    // A receiver that now accepts them gets them, once, in order.
    let out = dir.path().join("received.ndjson");
    let rx = Receive::start(&out, &[]);
    let mut c = config(dir.path(), &rx.url());
    c.set("http.proxy", "none").unwrap();
    let b = Buffer::open(&c, None).unwrap();
    assert_eq!(b.status().pending_at_open, 4);
    b.flush(Duration::from_secs(20)).unwrap();
    b.close(Duration::from_secs(2)).unwrap();
    let got: Vec<Value> = rx
        .lines()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(seqs(&got), vec![13, 14, 15, 16]);
    assert_eq!(got[1]["data"], serde_json::json!({"i": 2, "poison": true}));
    assert_eq!(got[3]["id"], format!("{inst}-16"));
    let (_, err) = rx.stop();
    assert!(err.contains("unique=4 duplicates=0"), "{err}");
    // Nothing is left to requeue; seqs are never reused afterwards.
    let o = run(&["requeue", p(&path)]);
    assert!(
        stdout(&o).contains("requeued 0 dead letters"),
        "{}",
        stdout(&o)
    );
    let b = hold(dir.path());
    b.log(b"{\"next\":1}").unwrap();
    b.sync(Duration::from_secs(5)).unwrap();
    let _ = b.close(Duration::ZERO);
    assert_eq!(seqs(&export(&[p(&path)])), vec![17]);
}

/// A closed buffer file in `dir` with `n` pending records of about `size` bytes, logged while
/// the endpoint was down.
fn buffer_with_pending(dir: &Path, n: usize, size: usize) -> Vec<String> {
    let b = hold(dir);
    let pad = "x".repeat(size.saturating_sub(30));
    let mut logged = Vec::new();
    for i in 0..n {
        let rec = format!("{{\"i\":{i},\"pad\":\"{pad}\"}}");
        b.log(rec.as_bytes()).unwrap();
        logged.push(rec);
    }
    b.sync(Duration::from_secs(20)).unwrap();
    let _ = b.close(Duration::ZERO);
    logged
}

#[test]
fn drain_delivers_a_backlog_to_a_receiver_with_progress() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("buf.db");
    buffer_with_pending(dir.path(), 3000, 200);
    let out = dir.path().join("received.ndjson");
    let rx = Receive::start(&out, &[]);

    // Refused while a program holds the buffer.
    let b = hold(dir.path());
    let o = run(&[
        "drain",
        p(&path),
        "--endpoint",
        &rx.url(),
        "--proxy",
        "none",
    ]);
    assert_held(&o);
    let _ = b.close(Duration::ZERO);
    assert!(rx.lines().is_empty());

    let o = run(&[
        "drain",
        p(&path),
        "--endpoint",
        &rx.url(),
        "--proxy",
        "none",
        "--source-id",
        "test-device",
        "--batch-max-records",
        "100",
        "--timeout",
        "60",
        "--progress-interval",
        "0.01",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("drained: 3000 records delivered"),
        "{}",
        stdout(&o)
    );
    // Not a terminal: plain progress lines.
    let err = stderr(&o);
    assert!(err.contains("delivering 3000 records"), "{err}");
    assert!(
        err.contains("/3000 settled") && err.contains("records/s"),
        "{err}"
    );
    let got: Vec<Value> = rx
        .lines()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(seqs(&got), (1..=3000).collect::<Vec<_>>());
    assert!(got.iter().all(|e| e["source"] == "test-device"));
    assert_eq!(status_json(&path)["pending_records"], 0);

    // Nothing left: exit 0 at once.
    let o = run(&[
        "drain",
        p(&path),
        "--endpoint",
        &rx.url(),
        "--proxy",
        "none",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("nothing pending"), "{}", stdout(&o));
    let (_, err) = rx.stop();
    assert!(err.contains("unique=3000 duplicates=0"), "{err}");

    // A missing file is not created.
    let missing = dir.path().join("missing.db");
    let o = run(&["drain", p(&missing), "--endpoint", "http://127.0.0.1:9/"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(!missing.exists());
}

#[test]
fn drain_with_a_dead_endpoint_times_out_and_keeps_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("buf.db");
    buffer_with_pending(dir.path(), 40, 100);
    let ids: Vec<Value> = export(&[p(&path)])
        .iter()
        .map(|e| e["id"].clone())
        .collect();
    let dead = format!("http://127.0.0.1:{}/ingest", dead_port());
    let t = Instant::now();
    let o = run(&[
        "drain",
        p(&path),
        "--endpoint",
        &dead,
        "--proxy",
        "none",
        "--timeout",
        "1.5",
    ]);
    let took = t.elapsed();
    assert_eq!(o.status.code(), Some(4), "{}{}", stdout(&o), stderr(&o));
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(15),
        "{took:?}"
    );
    assert!(
        stderr(&o).contains("the timeout of 1.5 s passed")
            && stderr(&o).contains("40 records still pending"),
        "{}",
        stderr(&o)
    );
    let after: Vec<Value> = export(&[p(&path)])
        .iter()
        .map(|e| e["id"].clone())
        .collect();
    assert_eq!(after, ids, "the same records, the same ids");

    // Then an endpoint that answers: the options reach the wire.
    let srv = Server::start(|_| Act::status(200));
    let o = run(&[
        "drain",
        p(&path),
        "--endpoint",
        &srv.url(),
        "--proxy",
        "none",
        "-H",
        "X-Api-Key: k-123",
        "--batch-max-records",
        "7",
        "--format",
        "ndjson",
        "--set",
        "source.id=cam-9",
        "--quiet",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).is_empty(), "--quiet: {}", stderr(&o));
    let hits = srv.hits();
    assert_eq!(hits.len(), 6, "40 records in batches of 7");
    for h in &hits {
        assert_eq!(h.header("x-api-key"), Some("k-123"));
        assert_eq!(h.header("x-edgebuf-source"), Some("cam-9"));
        assert_eq!(h.header("content-type"), Some("application/x-ndjson"));
        assert!(h.envelopes().len() <= 7);
    }
    let sent: Vec<Value> = hits
        .iter()
        .flat_map(|h| h.envelopes())
        .map(|e| e["id"].clone())
        .collect();
    assert_eq!(sent, ids);

    // Bad options are usage errors.
    let o = run(&["drain", p(&path), "--endpoint", "ftp://x/"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = run(&["drain", p(&path)]);
    assert_eq!(o.status.code(), Some(2), "no endpoint: {}", stderr(&o));
}

#[test]
fn compact_gives_free_space_back_after_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("buf.db");
    buffer_with_pending(dir.path(), 4000, 1000);
    // Most of the backlog was delivered, but the program stopped before it deleted the rows
    // (delivery moves a watermark; the rows are reclaimed later).
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute(
            "INSERT INTO meta(key, value) VALUES('wm', 3990) \
             ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            [],
        )
        .unwrap();
    }
    let s = status_json(&path);
    assert_eq!(s["pending_records"], 10, "{s}");
    assert_eq!(s["first_pending_seq"], 3991, "{s}");
    assert_eq!(s["delivered_unreclaimed_records"], 3990, "{s}");
    assert_eq!(
        seqs(&export(&[p(&path)])),
        (3991..=4000).collect::<Vec<_>>()
    );
    let size = |p: &Path| edgebuf::store::file_set_size(p);
    let before = size(&path);
    assert!(before > 4_000_000, "{before}");

    // Refused while a program holds the buffer; the file is not touched.
    let b = hold(dir.path());
    let held = std::fs::read(&path).unwrap();
    assert_held(&run(&["compact", p(&path)]));
    assert_eq!(std::fs::read(&path).unwrap(), held);
    let _ = b.close(Duration::ZERO);

    let o = run(&["compact", p(&path)]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let after = size(&path);
    assert!(after < before / 10, "{before} -> {after}");
    assert!(
        stdout(&o).contains(&format!("{before} -> {after} bytes")),
        "{}",
        stdout(&o)
    );
    assert!(!dir.path().join("buf.db-wal").exists());
    let s = status_json(&path);
    assert_eq!(s["pending_records"], 10, "{s}");
    assert_eq!(s["delivered_unreclaimed_records"], 0, "{s}");
    assert_eq!(s["last_seq"], 4000, "{s}");
    assert_eq!(run(&["check", p(&path)]).status.code(), Some(0));

    // Rows deleted all over the file (free pages between used ones); --full rebuilds it.
    let dir2 = tempfile::tempdir().unwrap();
    let path2 = dir2.path().join("buf.db");
    buffer_with_pending(dir2.path(), 2000, 1000);
    {
        let conn = rusqlite::Connection::open(&path2).unwrap();
        conn.execute("DELETE FROM records WHERE seq % 2 = 0 AND seq < 2000", [])
            .unwrap();
    }
    let big = size(&path2);
    let o = run(&["compact", p(&path2), "--full"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(size(&path2) < big * 2 / 3, "{big} -> {}", size(&path2));
    assert_eq!(run(&["check", p(&path2)]).status.code(), Some(0));
    let odd = export(&[p(&path2)]);
    let mut want: Vec<u64> = (1..2000).step_by(2).collect();
    want.push(2000);
    assert_eq!(seqs(&odd), want);
    // A library still opens and uses it.
    let b = hold(dir2.path());
    b.log(b"{\"after\":1}").unwrap();
    b.sync(Duration::from_secs(5)).unwrap();
    let _ = b.close(Duration::ZERO);
    assert_eq!(seqs(&export(&[p(&path2)])).last(), Some(&2001));

    // Not a buffer file: refused, untouched.
    let foreign = dir.path().join("foreign.db");
    rusqlite::Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();
    let bytes = std::fs::read(&foreign).unwrap();
    for cmd in ["compact", "requeue"] {
        let o = run(&[cmd, p(&foreign)]);
        assert_eq!(o.status.code(), Some(1), "{cmd}: {}", stderr(&o));
        assert_eq!(std::fs::read(&foreign).unwrap(), bytes);
    }
    let o = run(&["compact", p(&dir.path().join("missing.db"))]);
    assert_eq!(o.status.code(), Some(2));
    assert!(!dir.path().join("missing.db").exists());
}

/// The tool reads hostile files as the library does: a schema edgebuf did not create (here a
/// view over an endless recursive CTE, a trigger, and a table rebuilt with a generated column
/// that makes every row enormous) or a forged instance id is refused at once, before any
/// table is read.
/// A buffer file with a backlog (closed, so nothing holds it), changed by `sql` behind
/// edgebuf's back.
fn tampered(sql: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (b, _) = buffer_with_backlog(dir.path(), 3);
    b.close(Duration::ZERO).unwrap_err();
    let path = dir.path().join("buf.db");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(sql)
        .unwrap();
    (dir, path)
}

#[test]
fn the_tool_refuses_files_that_are_not_edgebuf_s_own() {
    let hostile = [
        "CREATE VIEW forever AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT i FROM n",
        "CREATE TRIGGER t AFTER DELETE ON records BEGIN SELECT 1; END",
        "ALTER TABLE records RENAME TO old; CREATE TABLE records(seq INTEGER PRIMARY KEY, ts_ms INTEGER NOT NULL, t_acc INTEGER NOT NULL, inst TEXT, data BLOB NOT NULL, big AS (zeroblob(1000000000)))",
        "UPDATE meta SET value = 'x\",\"id\":\"forged' WHERE key = 'instance'",
    ];
    for sql in hostile {
        let (_dir, path) = tampered(sql);
        for cmd in ["export", "status", "check"] {
            let t0 = Instant::now();
            let o = run(&[cmd, p(&path)]);
            assert!(!o.status.success(), "{cmd} after {sql}: {}", stdout(&o));
            assert!(
                stderr(&o).contains("not an edgebuf buffer file")
                    || stdout(&o).contains("not an edgebuf buffer file"),
                "{cmd} after {sql}: {} {}",
                stdout(&o),
                stderr(&o)
            );
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "{cmd} took {:?}",
                t0.elapsed()
            );
        }
    }
}

/// Nothing the tool prints reaches the terminal raw when it came from outside the tool: a file
/// named with an escape sequence, and rows forged into a buffer file (an instance id or data
/// that would add fields or lines to `export`, an escape sequence in the data) are refused as
/// damage, with control characters escaped in every message.
#[test]
fn hostile_names_and_rows_never_reach_the_terminal_raw() {
    let dir = tempfile::tempdir().unwrap();
    let (b, _) = buffer_with_backlog(dir.path(), 3);
    b.close(Duration::ZERO).unwrap_err();
    let named = dir.path().join("x\u{1b}[31my.db");
    std::fs::rename(dir.path().join("buf.db"), &named).unwrap();
    for args in [
        &["status"][..],
        &["status", "--format", "prometheus"],
        &["check"],
        &["export"],
    ] {
        let cmd = args.join(" ");
        let o = run(&[args, &[p(&named)]].concat());
        assert!(o.status.success(), "{cmd}: {}", stderr(&o));
        let all = format!("{}{}", stdout(&o), stderr(&o));
        assert!(
            !all.contains('\u{1b}'),
            "{cmd} printed a raw escape: {all:?}"
        );
    }
    let o = run(&["status", p(&dir.path().join("gone\u{1b}[2J.db"))]);
    assert!(!o.status.success());
    assert!(!stderr(&o).contains('\u{1b}'), "{:?}", stderr(&o));
    assert!(stderr(&o).contains("\\u{1b}"), "{:?}", stderr(&o));

    for sql in [
        "UPDATE records SET inst = 'abc\",\"id\":\"forged' WHERE seq = (SELECT max(seq) FROM records)",
        "UPDATE records SET data = '1,\"id\":\"forged\"' WHERE seq = (SELECT max(seq) FROM records)",
        "UPDATE records SET data = x'7b1b5b33316d0a7d' WHERE seq = (SELECT max(seq) FROM records)",
    ] {
        let (_dir, path) = tampered(sql);
        let o = run(&["export", p(&path)]);
        assert!(!o.status.success(), "export after {sql}: {}", stdout(&o));
        let all = format!("{}{}", stdout(&o), stderr(&o));
        assert!(!all.contains("forged\""), "export after {sql} forged a field: {all}");
        assert!(!all.contains('\u{1b}'), "export after {sql}: {all:?}");
    }
}
