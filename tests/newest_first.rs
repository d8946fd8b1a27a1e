//! `delivery.order=newest_first` end to end, against the real HTTP server on 127.0.0.1: after
//! an outage the newest records go first, the backlog drains behind them (also while logging
//! goes on), every record arrives exactly once, and drop_oldest still drops the oldest.

mod common;
use common::*;
use edgebuf::{Buffer, Code, Config};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// The test configuration of `common::config`, newest first, with `extra` keys.
fn newest_first(dir: &std::path::Path, url: &str, extra: &[(&str, &str)]) -> Config {
    let mut c = config(dir, url);
    c.set("delivery.order", "newest_first").unwrap();
    for (k, v) in extra {
        c.set(k, v).unwrap();
    }
    c
}

fn log_range(b: &Buffer, seqs: std::ops::RangeInclusive<u64>) {
    for i in seqs {
        b.log(format!("{{\"i\":{i}}}").as_bytes()).unwrap();
    }
}

/// The seqs of every accepted request, in the order they arrived.
fn accepted(rx: &Server) -> Vec<Vec<u64>> {
    rx.hits()
        .iter()
        .filter(|h| h.ok())
        .map(|h| h.seqs())
        .collect()
}

/// Every accepted record exactly once: the ids are distinct, and the seqs are `want`.
fn exactly_once(rx: &Server, want: impl Iterator<Item = u64>) {
    let got = rx.delivered();
    let ids: HashSet<String> = got
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), got.len(), "a record arrived twice");
    let mut s = seqs(&got);
    s.sort_unstable();
    assert_eq!(s, want.collect::<Vec<_>>());
}

/// Each request in seq order inside, and each one older than the one before it.
fn newest_to_oldest(reqs: &[Vec<u64>]) {
    for r in reqs {
        assert!(r.windows(2).all(|w| w[0] < w[1]), "not in seq order: {r:?}");
    }
    for w in reqs.windows(2) {
        assert!(
            w[1].last() < w[0].first(),
            "{:?} came after {:?}",
            (w[1].first(), w[1].last()),
            (w[0].first(), w[0].last())
        );
    }
}

/// The records of an outage, left on disk by a buffer closed while the endpoint is down.
fn leave_pending(dir: &std::path::Path, rx: &Server, n: u64, extra: &[(&str, &str)]) {
    assert!(!rx.is_up());
    let b = Buffer::open(&newest_first(dir, &rx.url(), extra), None).unwrap();
    log_range(&b, 1..=n);
    b.sync(Duration::from_secs(30)).unwrap();
    assert_eq!(b.status().pending_records, n);
    assert_eq!(
        b.close(Duration::from_millis(100)).unwrap_err().code(),
        Code::Timeout
    );
}

#[test]
fn after_an_outage_the_first_request_holds_the_newest_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut rx = Server::receiver();
    rx.down();
    leave_pending(dir.path(), &rx, 10_000, &[]);
    rx.up();
    let b = Buffer::open(&newest_first(dir.path(), &rx.url(), &[]), None).unwrap();
    assert_eq!(b.status().pending_at_open, 10_000);
    b.flush(Duration::from_secs(60)).unwrap();
    let reqs = accepted(&rx);
    assert_eq!(reqs[0], (9_501..=10_000).collect::<Vec<_>>());
    assert_eq!(reqs.len(), 20);
    newest_to_oldest(&reqs);
    exactly_once(&rx, 1..=10_000);
    let st = b.status();
    assert_eq!((st.pending_records, st.delivered_total), (0, 10_000));
    b.close(Duration::from_secs(5)).unwrap();
}

/// An outage in one open (no restart) that `begin` starts and `end` ends, with 10,000 records
/// logged during it: the first request accepted afterwards holds the newest records (the top
/// 500, in seq order), not the batch that was failing when the outage began, and the backlog
/// drains behind it.
fn outage_without_a_restart(
    mut rx: Server,
    begin: impl FnOnce(&mut Server),
    end: impl FnOnce(&mut Server),
) {
    let dir = tempfile::tempdir().unwrap();
    begin(&mut rx);
    let b = Buffer::open(&newest_first(dir.path(), &rx.url(), &[]), None).unwrap();
    // A batch fails while only 1..=5,000 are stored; then 5,001..=10,000 come.
    log_range(&b, 1..=5_000);
    b.sync(Duration::from_secs(30)).unwrap();
    assert!(wait_until(Duration::from_secs(10), || b
        .status()
        .failed_attempts_total
        >= 1));
    log_range(&b, 5_001..=10_000);
    b.sync(Duration::from_secs(30)).unwrap();
    assert_eq!(b.status().pending_records, 10_000);
    // Two more failures: the second attempt was formed after the first one failed, so after
    // every record was stored, and any attempt running when the outage ends is formed the
    // same way. (An attempt formed while 5,001..=10,000 were still being stored could
    // otherwise reach the endpoint just after it comes back.)
    let failed = b.status().failed_attempts_total;
    assert!(wait_until(Duration::from_secs(20), || {
        b.retry_now();
        b.status().failed_attempts_total >= failed + 2
    }));
    assert!(accepted(&rx).is_empty());
    end(&mut rx);
    b.retry_now();
    b.flush(Duration::from_secs(60)).unwrap();
    let reqs = accepted(&rx);
    assert_eq!(reqs[0], (9_501..=10_000).collect::<Vec<_>>());
    assert_eq!(reqs.len(), 20);
    newest_to_oldest(&reqs);
    exactly_once(&rx, 1..=10_000);
    let st = b.status();
    assert_eq!((st.pending_records, st.delivered_total), (0, 10_000));
    b.close(Duration::from_secs(5)).unwrap();
}

#[test]
fn after_an_outage_of_refused_connections_without_a_restart_the_newest_go_first() {
    outage_without_a_restart(Server::receiver(), |rx| rx.down(), |rx| rx.up());
}

#[test]
fn after_an_outage_answered_503_without_a_restart_the_newest_go_first() {
    outage_without_a_restart(
        Server::receiver(),
        |rx| rx.set_status(503),
        |rx| {
            assert!(rx.hits().iter().all(|h| h.status == 503));
            rx.set_status(200)
        },
    );
}

#[test]
fn records_logged_during_the_drain_go_ahead_and_the_backlog_still_drains() {
    let dir = tempfile::tempdir().unwrap();
    let mut rx = Server::receiver();
    rx.down();
    leave_pending(dir.path(), &rx, 10_000, &[]);
    // Each answer takes 10 ms: the drain of 20 batches takes a few hundred ms.
    rx.set_handler(|_| Act::status(200).after(Duration::from_millis(10)));
    rx.up();
    let b = Buffer::open(&newest_first(dir.path(), &rx.url(), &[]), None).unwrap();
    assert!(!rx.wait_hits(1, Duration::from_secs(10)).is_empty());
    // 2,000 records at about one a millisecond, far below the delivery rate: the backlog
    // must drain while they keep coming.
    let started = Instant::now();
    for i in 10_001..=12_000u64 {
        b.log(format!("{{\"i\":{i}}}").as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    let logging_ended = Instant::now();
    b.flush(Duration::from_secs(60)).unwrap();
    exactly_once(&rx, 1..=12_000);
    let st = b.status();
    assert_eq!((st.pending_records, st.delivered_total), (0, 12_000));

    let hits: Vec<Hit> = rx.hits().into_iter().filter(|h| h.ok()).collect();
    let holding = |seq: u64| hits.iter().position(|h| h.seqs().contains(&seq)).unwrap();
    // The first record logged during the drain went before the backlog's oldest record...
    assert!(
        holding(10_001) < holding(1),
        "10001 in request {}, 1 in request {}",
        holding(10_001),
        holding(1)
    );
    // ...and the backlog was drained while logging went on.
    assert!(
        hits[holding(1)].at < logging_ended,
        "the backlog drained {:?} after logging began, logging lasted {:?}",
        hits[holding(1)].at - started,
        logging_ended - started
    );
    b.close(Duration::from_secs(5)).unwrap();
}

#[test]
fn drop_oldest_drops_the_oldest_records() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Server::receiver();
    // No request before the flush: a batch would hold more than the buffer, and linger is
    // long. Requests hold about 150 records (batch.max_bytes).
    let extra = [
        ("capacity.max_records", "1000"),
        ("batch.max_records", "5000"),
        ("batch.max_bytes", "16384"),
        ("batch.linger_ms", "600000"),
    ];
    let b = Buffer::open(&newest_first(dir.path(), &rx.url(), &extra), None).unwrap();
    log_range(&b, 1..=3_000);
    b.sync(Duration::from_secs(30)).unwrap();
    let st = b.status();
    assert_eq!((st.pending_records, st.dropped_total), (1_000, 2_000));
    assert_eq!(rx.count(), 0);
    b.flush(Duration::from_secs(30)).unwrap();
    let reqs = accepted(&rx);
    assert_eq!(reqs[0].last(), Some(&3_000));
    assert!(reqs.len() > 2, "{} requests", reqs.len());
    newest_to_oldest(&reqs);
    exactly_once(&rx, 2_001..=3_000);
    let st = b.status();
    assert_eq!((st.pending_records, st.delivered_total), (0, 1_000));
    b.close(Duration::from_secs(5)).unwrap();
}

#[test]
fn drop_oldest_spares_the_newest_batch_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let mut rx = Server::receiver();
    rx.down();
    let extra = [
        ("capacity.max_records", "1000"),
        ("batch.max_records", "600"),
    ];
    leave_pending(dir.path(), &rx, 1_000, &extra);
    // The first request (the newest 600: 401..=1000) is answered after 1.5 s; meanwhile
    // 1,000 more records are logged, and 1,000 must go.
    let mut first = true;
    rx.set_handler(move |_| {
        if std::mem::take(&mut first) {
            Act::status(200).after(Duration::from_millis(1500))
        } else {
            Act::status(200)
        }
    });
    rx.up();
    let b = Buffer::open(&newest_first(dir.path(), &rx.url(), &extra), None).unwrap();
    assert!(!rx.wait_hits(1, Duration::from_secs(10)).is_empty());
    log_range(&b, 1_001..=2_000);
    b.sync(Duration::from_secs(30)).unwrap();
    let st = b.status();
    assert_eq!(
        st.delivered_total, 0,
        "the first request is still in flight"
    );
    assert_eq!(st.dropped_total, 1_000);
    b.flush(Duration::from_secs(30)).unwrap();
    let reqs = accepted(&rx);
    assert_eq!(reqs[0], (401..=1_000).collect::<Vec<_>>());
    // The oldest records outside the request in flight were dropped: 1..=400, then the
    // oldest of the new ones.
    exactly_once(&rx, (401..=1_000).chain(1_601..=2_000));
    let st = b.status();
    assert_eq!((st.pending_records, st.delivered_total), (0, 1_000));
    b.close(Duration::from_secs(5)).unwrap();
}
