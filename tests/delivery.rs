//! End-to-end delivery through the Rust API to a real HTTP server on 127.0.0.1.

mod common;
use common::*;
use edgebuf::{Buffer, Code};
use std::time::Duration;

#[test]
fn delivers_every_record_in_order_with_the_envelope() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Server::receiver();
    let b = Buffer::open(&config(dir.path(), &rx.url()), None).unwrap();
    for i in 0..250 {
        b.log(format!("{{\"i\":{i}, \"score\": 0.5}}").as_bytes())
            .unwrap();
    }
    b.flush(Duration::from_secs(10)).unwrap();
    let got = rx.delivered();
    assert_eq!(seqs(&got), (1..=250).collect::<Vec<_>>());
    let first = &got[0];
    assert_eq!(first["source"], "test-device");
    assert_eq!(first["data"]["i"], 0);
    assert_eq!(first["id"], format!("{}-1", b.instance()));
    assert!(first["ts_ms"].as_i64().unwrap() > 1_600_000_000_000);
    let req = &rx.hits()[0];
    assert_eq!(req.headers["content-type"], "application/json");
    assert_eq!(req.headers["x-edgebuf-source"], "test-device");
    assert!(req.headers["user-agent"].starts_with("edgebuf/"));
    assert!(req.headers["idempotency-key"].starts_with(b.instance()));
    // data is verbatim: whitespace inside is kept.
    assert!(String::from_utf8_lossy(&req.body).contains("\"score\": 0.5"));
    let st = b.status();
    assert_eq!(st.delivered_total, 250);
    assert_eq!(st.pending_records, 0);
    b.close(Duration::from_secs(1)).unwrap();
}

#[test]
fn outage_then_recovery_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut rx = Server::receiver();
    rx.down();
    let url = rx.url();
    {
        let b = Buffer::open(&config(dir.path(), &url), None).unwrap();
        for i in 0..100 {
            b.log(format!("{{\"i\":{i}}}").as_bytes()).unwrap();
        }
        assert_eq!(
            b.flush(Duration::from_millis(300)).unwrap_err().code(),
            Code::Timeout
        );
        let st = b.status();
        assert_eq!(st.pending_records, 100);
        assert!(st.failed_attempts_total >= 1);
        assert_eq!(st.connectivity, edgebuf::status::CONNECTIVITY_OFFLINE);
        assert_eq!(
            b.close(Duration::from_millis(100)).unwrap_err().code(),
            Code::Timeout
        );
    }
    rx.up();
    let b = Buffer::open(&config(dir.path(), &url), None).unwrap();
    assert_eq!(b.status().pending_at_open, 100);
    b.flush(Duration::from_secs(10)).unwrap();
    assert_eq!(seqs(&rx.delivered()), (1..=100).collect::<Vec<_>>());
    b.log(b"{\"after\":true}").unwrap();
    b.flush(Duration::from_secs(10)).unwrap();
    assert_eq!(rx.delivered().last().unwrap()["seq"], 101);
    b.close(Duration::from_secs(1)).unwrap();
}

/// Rows in the file's records table, delivered or not (read-only, beside the open buffer).
fn rows_in_file(path: &std::path::Path) -> i64 {
    let c = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    c.query_row("SELECT count(*) FROM records", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn delivered_rows_are_reclaimed_from_the_file_and_never_sent_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("buf.db");
    let mut rx = Server::receiver();
    rx.down();
    // A backlog on disk, then the endpoint comes up.
    {
        let url = rx.url();
        let b = Buffer::open(&config(dir.path(), &url), None).unwrap();
        for i in 0..5000 {
            b.log(format!("{{\"i\":{i}}}").as_bytes()).unwrap();
        }
        b.sync(Duration::from_secs(10)).unwrap();
        let _ = b.close(Duration::ZERO);
    }
    assert_eq!(rows_in_file(&path), 5000);
    rx.up();
    let b = Buffer::open(&config(dir.path(), &rx.url()), None).unwrap();
    b.flush(Duration::from_secs(20)).unwrap();
    assert_eq!(b.status().pending_records, 0);
    // Delivered rows leave the file once the worker is idle: bounded wait, then checked.
    assert!(
        wait_until(Duration::from_secs(15), || rows_in_file(&path) == 0),
        "{} delivered rows still in the file",
        rows_in_file(&path)
    );
    b.close(Duration::from_secs(1)).unwrap();
    // A reopen sends nothing again.
    let b = Buffer::open(&config(dir.path(), &rx.url()), None).unwrap();
    assert_eq!(b.status().pending_records, 0);
    b.close(Duration::from_secs(1)).unwrap();
    let got = rx.delivered();
    assert_eq!(seqs(&got), (1..=5000).collect::<Vec<_>>());
}

#[test]
fn a_restart_before_reclaiming_sends_nothing_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("buf.db");
    let rx = Server::receiver();
    {
        let b = Buffer::open(&config(dir.path(), &rx.url()), None).unwrap();
        for i in 0..3000 {
            b.log(format!("{{\"i\":{i}}}").as_bytes()).unwrap();
        }
        b.flush(Duration::from_secs(20)).unwrap();
        // Closed at once: whatever was not reclaimed stays in the file as delivered rows.
        b.close(Duration::ZERO).unwrap();
    }
    let left = rows_in_file(&path);
    let b = Buffer::open(&config(dir.path(), &rx.url()), None).unwrap();
    let st = b.status();
    assert_eq!(st.pending_records, 0, "{left} rows were in the file");
    b.log(b"{\"after\":1}").unwrap();
    b.flush(Duration::from_secs(10)).unwrap();
    b.close(Duration::from_secs(1)).unwrap();
    let got = rx.delivered();
    assert_eq!(seqs(&got), (1..=3001).collect::<Vec<_>>());
}

#[test]
fn the_file_gives_space_back_after_a_backlog_is_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("buf.db");
    let mut rx = Server::receiver();
    rx.down();
    let pad = "x".repeat(2000);
    {
        let url = rx.url();
        let b = Buffer::open(&config(dir.path(), &url), None).unwrap();
        for i in 0..10_000 {
            b.log(format!("{{\"i\":{i},\"pad\":\"{pad}\"}}").as_bytes())
                .unwrap();
        }
        b.sync(Duration::from_secs(20)).unwrap();
        let _ = b.close(Duration::ZERO);
    }
    let full = std::fs::metadata(&path).unwrap().len();
    assert!(full > 20_000_000, "{full}");
    rx.up();
    let b = Buffer::open(&config(dir.path(), &rx.url()), None).unwrap();
    b.flush(Duration::from_secs(30)).unwrap();
    // Reclaimed rows become free pages, and free pages go back to the file system.
    assert!(
        wait_until(Duration::from_secs(20), || {
            std::fs::metadata(&path).unwrap().len() < full / 4
        }),
        "the file stayed at {} bytes (was {full})",
        std::fs::metadata(&path).unwrap().len()
    );
    b.close(Duration::from_secs(1)).unwrap();
    assert_eq!(rx.delivered().len(), 10_000);
}

/// A backlog drains (the next batch is read while the current one is in flight) while new
/// records push the capacity policy to drop the oldest: neither the batch in flight nor the
/// batch read ahead for the next request is dropped, so nothing dropped is ever sent, and
/// every record is delivered once or dropped and counted.
#[test]
fn a_backlog_drains_while_drop_oldest_trims_it_and_nothing_dropped_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), &format!("http://127.0.0.1:{}/x", dead_port()));
    c.set("http.proxy", "none").unwrap();
    c.set("batch.max_records", "20").unwrap();
    c.set("batch.linger_ms", "0").unwrap();
    c.set("capacity.max_records", "100").unwrap();
    c.set("capacity.when_full", "drop_oldest").unwrap();
    c.set("commit.interval_ms", "2").unwrap();
    let b = Buffer::open(&c, None).unwrap();
    for i in 0..100 {
        b.log(format!("{{\"i\":{i}}}").as_bytes()).unwrap();
    }
    b.sync(Duration::from_secs(10)).unwrap();
    let first = b.status();
    b.close(Duration::ZERO).unwrap_err();
    // A slow receiver: each answer takes 15 ms, so drops happen while requests are in flight.
    let rx = Server::start(|_| Act::status(200).after(Duration::from_millis(15)));
    c.set("endpoint", &rx.url()).unwrap();
    let b = Buffer::open(&c, None).unwrap();
    for i in 100..600 {
        b.log(format!("{{\"i\":{i}}}").as_bytes()).unwrap();
        if i % 20 == 0 {
            std::thread::sleep(Duration::from_millis(3));
        }
    }
    b.flush(Duration::from_secs(30)).unwrap();
    let st = b.status();
    b.close(Duration::from_secs(1)).unwrap();

    let mut ids = std::collections::BTreeSet::new();
    let mut last = 0;
    for hit in rx.hits().iter().filter(|h| h.ok()) {
        for e in hit.envelopes() {
            let seq = e["seq"].as_u64().unwrap();
            assert!(
                seq > last,
                "seq {seq} after {last}: out of order or sent twice"
            );
            last = seq;
            assert!(ids.insert(e["id"].as_str().unwrap().to_string()));
        }
    }
    assert!(st.dropped_total > 0, "the test made no drops: {st:?}");
    assert_eq!(st.pending_records, 0);
    // Every record logged in the two runs was delivered once or dropped, never both.
    assert_eq!(
        first.logged_total + st.logged_total,
        st.delivered_total + first.dropped_total + st.dropped_total,
        "{st:?}"
    );
    assert_eq!(ids.len() as u64, st.delivered_total, "{st:?}");
}
