//! Timestamps on boards without a real-time clock (docs/reference.md, the wire, timestamps),
//! through the whole Buffer against the scripted HTTP server on 127.0.0.1. The system clock
//! cannot be set by a test, so `clock.valid_after_unix_ms` is put in the near future instead:
//! records logged before it have an "invalid" wall clock, and once the real clock passes it,
//! the clock has "become valid".

mod common;
use common::*;
use edgebuf::{Buffer, Config};
use serde_json::Value as J;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn cfg(dir: &std::path::Path, url: &str, valid_after_ms: i64, extra: &[(&str, &str)]) -> Config {
    let mut c = config(dir, url);
    c.set("clock.valid_after_unix_ms", &valid_after_ms.to_string())
        .unwrap();
    for (k, v) in extra {
        c.set(k, v).unwrap();
    }
    c
}

/// Logs `{"i":i}` and returns the wall clock just before and just after the call.
fn log_timed(b: &Buffer, i: usize) -> (i64, i64) {
    let before = now_ms();
    b.log(format!("{{\"i\":{i}}}").as_bytes()).unwrap();
    (before, now_ms())
}

fn ts(e: &J) -> i64 {
    e["ts_ms"].as_i64().expect("ts_ms")
}

fn by_i(delivered: &[J]) -> Vec<&J> {
    let mut v: Vec<&J> = delivered.iter().collect();
    v.sort_by_key(|e| e["data"]["i"].as_u64());
    v.dedup_by_key(|e| e["data"]["i"].as_u64());
    v
}

#[test]
fn records_logged_before_the_clock_was_valid_arrive_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let mut srv = Server::receiver();
    // The endpoint is down until the wall clock has passed the bound.
    srv.down();
    let bound = now_ms() + 1_500;
    let b = Buffer::open(&cfg(dir.path(), &srv.url(), bound, &[]), None).unwrap();
    let mut logged = Vec::new();
    for i in 0..5 {
        logged.push(log_timed(&b, i));
    }
    assert!(logged.iter().all(|&(_, after)| after < bound), "{logged:?}");
    assert!(
        wait_until(Duration::from_secs(5), || now_ms() > bound),
        "the wall clock passes the bound"
    );
    for i in 5..8 {
        logged.push(log_timed(&b, i));
    }
    assert_eq!(
        srv.count(),
        0,
        "nothing reached the endpoint while it was down"
    );
    srv.up();
    let got = srv.wait_delivered(8, Duration::from_secs(10));
    let got = by_i(&got);
    assert_eq!(got.len(), 8, "{got:?}");
    for (i, e) in got.iter().enumerate() {
        let (before, after) = logged[i];
        if i < 5 {
            assert_eq!(e["clock"], "repaired", "{e}");
            // The repaired value is the wall clock of the logging, up to the drift between
            // the boot clock and the wall clock.
            assert!(
                ts(e) >= before - 100 && ts(e) <= after + 100,
                "record {i}: ts_ms {} not within 100 ms of {before}..{after}",
                ts(e)
            );
        } else {
            assert!(
                e.get("clock").is_none(),
                "a valid clock carries no mark: {e}"
            );
            assert!(ts(e) >= before && ts(e) <= after, "record {i}: {e}");
        }
    }
    b.close(Duration::from_secs(5)).unwrap();
}

#[test]
fn records_sent_while_the_clock_is_not_valid_arrive_unset_as_logged() {
    for durability in ["async", "sync"] {
        sent_while_the_clock_is_not_valid(durability);
    }
}

fn sent_while_the_clock_is_not_valid(durability: &str) {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::receiver();
    let b = Buffer::open(
        &cfg(
            dir.path(),
            &srv.url(),
            now_ms() + 3_600_000,
            &[("durability", durability)],
        ),
        None,
    )
    .unwrap();
    let logged: Vec<(i64, i64)> = (0..3).map(|i| log_timed(&b, i)).collect();
    b.flush(Duration::from_secs(10)).unwrap();
    let got = srv.delivered();
    let got = by_i(&got);
    assert_eq!(got.len(), 3);
    for (i, e) in got.iter().enumerate() {
        assert_eq!(e["clock"], "unset", "{durability}: {e}");
        let (before, after) = logged[i];
        assert!(
            ts(e) >= before && ts(e) <= after,
            "{durability}: as logged: {e}"
        );
    }
    // The field follows ts_ms, as the reference shows the envelope.
    let body = String::from_utf8(srv.hits()[0].plain()).unwrap();
    assert!(body.contains(",\"clock\":\"unset\",\"source\":"), "{body}");
    b.close(Duration::from_secs(5)).unwrap();
}

#[test]
fn records_of_another_boot_arrive_unset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("buf.db");
    let Ok(boot_id) = std::fs::read_to_string("/proc/sys/kernel/random/boot_id") else {
        panic!("this test needs /proc/sys/kernel/random/boot_id");
    };
    let boot_id = boot_id.trim().to_string();
    // Logged before the clock was valid, with the endpoint down: they stay in the file.
    let logged: Vec<(i64, i64)> = {
        let b = Buffer::open(
            &cfg(
                dir.path(),
                &format!("http://127.0.0.1:{}/", dead_port()),
                now_ms() + 3_600_000,
                &[],
            ),
            None,
        )
        .unwrap();
        let logged = (0..3).map(|i| log_timed(&b, i)).collect();
        assert!(
            b.close(Duration::from_millis(200)).is_err(),
            "kept for the next open"
        );
        logged
    };
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        let rows: Vec<(i64, String)> = c
            .prepare("SELECT seq, boot_id FROM clock ORDER BY seq")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(
            rows,
            (1..=3).map(|s| (s, boot_id.clone())).collect::<Vec<_>>(),
            "the boot id kept with each record"
        );
        // A reboot before the clock was set: records 1 and 2 come from another boot.
        c.execute(
            "UPDATE clock SET boot_id = '11111111-2222-3333-4444-555555555555' WHERE seq <= 2",
            [],
        )
        .unwrap();
    }
    // Reopened with a valid clock (the bound passed long ago).
    let srv = Server::receiver();
    let b = Buffer::open(&cfg(dir.path(), &srv.url(), 1, &[]), None).unwrap();
    b.flush(Duration::from_secs(10)).unwrap();
    let got = srv.delivered();
    let got = by_i(&got);
    assert_eq!(got.len(), 3);
    for (i, e) in got.iter().enumerate() {
        let (before, after) = logged[i];
        if i < 2 {
            assert_eq!(e["clock"], "unset", "{e}");
            assert!(ts(e) >= before && ts(e) <= after, "as logged: {e}");
        } else {
            // The same boot: repaired, across the reopen.
            assert_eq!(e["clock"], "repaired", "{e}");
            assert!(ts(e) >= before - 100 && ts(e) <= after + 100, "{e}");
        }
    }
    b.close(Duration::from_secs(5)).unwrap();
    let c = rusqlite::Connection::open(&path).unwrap();
    // Delivered rows are reclaimed later, when the writer is idle; a boot clock never
    // outlives its record.
    let orphans: i64 = c
        .query_row(
            "SELECT count(*) FROM clock WHERE seq NOT IN (SELECT seq FROM records)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(orphans, 0, "the boot clocks go with their records");
}

#[test]
fn otlp_json_carries_the_mark_as_the_edgebuf_clock_attribute() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::receiver();
    let b = Buffer::open(
        &cfg(
            dir.path(),
            &srv.url(),
            now_ms() + 3_600_000,
            &[("format", "otlp_json")],
        ),
        None,
    )
    .unwrap();
    let (before, after) = log_timed(&b, 0);
    b.flush(Duration::from_secs(10)).unwrap();
    let hits = srv.hits();
    assert!(hits.iter().all(|h| h.ok()));
    let v: J = serde_json::from_slice(&hits[0].plain()).expect("JSON");
    let lr = &v["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0];
    assert_eq!(
        lr["attributes"],
        serde_json::json!([
            {"key": "edgebuf.id", "value": {"stringValue": format!("{}-1", b.instance())}},
            {"key": "edgebuf.seq", "value": {"intValue": "1"}},
            {"key": "edgebuf.clock", "value": {"stringValue": "unset"}},
        ])
    );
    let t: i64 = lr["timeUnixNano"].as_str().unwrap().parse().unwrap();
    assert!(
        t / 1_000_000 >= before && t / 1_000_000 <= after,
        "as logged: {t}"
    );
    assert_eq!(
        common::otlp_json::from_otlp_json(&lr["body"]),
        serde_json::json!({"i": 0})
    );
    b.close(Duration::from_secs(5)).unwrap();
}
