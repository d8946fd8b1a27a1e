//! Metered and slow links, end to end against the scripted server on 127.0.0.1: the upload
//! rate cap (`http.max_bytes_per_s`), the byte budget (`http.budget_bytes`,
//! `http.budget_period_ms`) kept across a reopen, refusals held to their share of the budget,
//! and a receiver that reads at about 20 KB/s.

mod common;
use common::*;
use edgebuf::events::EVENT_BUDGET_EXHAUSTED;
use edgebuf::{Buffer, Config};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A record of about 130 bytes (about 250 with its envelope).
fn record(i: u64) -> Vec<u8> {
    format!(
        "{{\"i\":{i},\"label\":\"cat\",\"pad\":\"{}\"}}",
        "x".repeat(100)
    )
    .into_bytes()
}

fn open(cfg: &Config, events: &EventLog) -> Buffer {
    Buffer::open(cfg, events.callback()).unwrap()
}

fn log_n(b: &Buffer, from: u64, n: u64) {
    for i in from..from + n {
        b.log(&record(i)).unwrap();
    }
}

/// How many times each seq was accepted by the server.
fn accepted(rx: &Server) -> BTreeMap<u64, usize> {
    let mut m = BTreeMap::new();
    for s in seqs(&rx.delivered()) {
        *m.entry(s).or_insert(0) += 1;
    }
    m
}

fn body_bytes(hits: &[Hit]) -> u64 {
    hits.iter().map(|h| h.body.len() as u64).sum()
}

/// Waits (bounded) until the buffer has nothing pending.
fn wait_drained(b: &Buffer, timeout: Duration) -> bool {
    wait_until(timeout, || b.status().pending_records == 0)
}

#[test]
fn the_rate_cap_holds_the_upload_rate() {
    const CAP: u64 = 40_000;
    let dir = tempfile::tempdir().unwrap();
    let rx = Server::receiver();
    let mut cfg = config(dir.path(), &rx.url());
    cfg.set("http.max_bytes_per_s", &CAP.to_string()).unwrap();
    cfg.set("batch.max_records", "40").unwrap();
    let events = EventLog::new();
    let b = open(&cfg, &events);
    // About 250 KB: over six seconds at the cap, milliseconds without it.
    log_n(&b, 0, 1000);
    assert!(wait_drained(&b, Duration::from_secs(30)));
    let hits = rx.hits();
    assert!(hits.len() >= 20, "{} requests", hits.len());
    let span = hits[hits.len() - 1].at.duration_since(hits[0].at);
    let total = body_bytes(&hits);
    // The bucket holds one second's allowance: over any span at most CAP × (span + 1 s)
    // (5 % for the timing of the server's reads).
    let bound = CAP as f64 * (span.as_secs_f64() + 1.0) * 1.05;
    // After the first second (the bucket's allowance), the steady rate: the bytes that
    // arrived after a request, over the time since it arrived.
    let t1 = hits[0].at + Duration::from_secs(1);
    let Some(i) = hits.iter().position(|h| h.at >= t1) else {
        panic!("all {total} bytes arrived within a second: no cap");
    };
    let steady = body_bytes(&hits[i + 1..]);
    let rate = steady as f64
        / hits[hits.len() - 1]
            .at
            .duration_since(hits[i].at)
            .as_secs_f64();
    eprintln!(
        "rate cap {CAP} B/s: {total} body bytes in {} requests over {span:?}, {rate:.0} B/s after the first second",
        hits.len()
    );
    assert!((total as f64) <= bound, "{total} bytes in {span:?}");
    assert!(rate <= CAP as f64 * 1.05, "{rate:.0} B/s");
    // And it is a cap, not a stall.
    assert!(rate >= CAP as f64 * 0.6, "{rate:.0} B/s");
    // Every request stays within what the cap allows in half of http.timeout_ms (2 s).
    assert!(hits.iter().all(|h| h.body.len() as u64 <= CAP));
    let st = b.status();
    assert_eq!(st.sent_bytes_total, total);
    assert_eq!(st.budget_left_bytes, u64::MAX, "no budget set");
    assert_eq!(accepted(&rx).len(), 1000);
    b.close(Duration::from_secs(2)).unwrap();
}

#[test]
fn a_spent_budget_holds_records_until_the_period_ends_even_across_a_reopen() {
    const PERIOD_MS: u64 = 3_600_000;
    let dir = tempfile::tempdir().unwrap();
    let rx = Server::receiver();
    let mut cfg = config(dir.path(), &rx.url());
    cfg.set("http.budget_bytes", "2000").unwrap();
    cfg.set("http.budget_period_ms", &PERIOD_MS.to_string())
        .unwrap();
    let events = EventLog::new();
    let b = open(&cfg, &events);
    // A record larger than the whole budget: sent alone, first in the period, and it spends
    // the period's budget; the records after it wait.
    let big = format!("{{\"big\":\"{}\"}}", "y".repeat(3000));
    b.log(big.as_bytes()).unwrap();
    log_n(&b, 1, 20);
    assert!(wait_until(Duration::from_secs(10), || {
        !events.of(EVENT_BUDGET_EXHAUSTED).is_empty()
    }));
    let hits = rx.hits();
    assert_eq!(hits.len(), 1, "{} requests", hits.len());
    assert_eq!(hits[0].seqs(), [1]);
    let st = b.status();
    assert_eq!(st.budget_left_bytes, 0);
    assert_eq!(st.sent_bytes_total, hits[0].body.len() as u64);
    assert_eq!(st.pending_records, 20);
    assert!(
        st.next_retry_in_ms > (PERIOD_MS - 60_000) as u32
            && st.next_retry_in_ms <= PERIOD_MS as u32,
        "{}",
        st.next_retry_in_ms
    );
    let ev = events.of(EVENT_BUDGET_EXHAUSTED);
    assert_eq!(ev.len(), 1);
    assert!(
        ev[0]
            .message
            .contains(&format!("{} of 2000 bytes", hits[0].body.len())),
        "{}",
        ev[0].message
    );
    assert!(
        ev[0].message.contains("sending resumes in 3600 s"),
        "{}",
        ev[0].message
    );
    // Logging does not wait on the budget: the writer commits while the worker waits.
    log_n(&b, 21, 200);
    b.sync(Duration::from_secs(10)).unwrap();
    // retry_now does not cut a budget wait; nothing more is sent, the event does not repeat.
    b.retry_now();
    let quiet = !wait_until(Duration::from_millis(600), || rx.count() > 1);
    assert!(quiet, "{} requests", rx.count());
    assert_eq!(events.of(EVENT_BUDGET_EXHAUSTED).len(), 1);
    assert_eq!(b.status().pending_records, 220);
    b.close(Duration::from_millis(200)).unwrap_err();
    drop(b);

    // Reopened: the period and its use come from the file.
    let events = EventLog::new();
    let b = open(&cfg, &events);
    assert!(wait_until(Duration::from_secs(5), || {
        !events.of(EVENT_BUDGET_EXHAUSTED).is_empty()
    }));
    let quiet = !wait_until(Duration::from_millis(600), || rx.count() > 1);
    assert!(quiet, "{} requests", rx.count());
    let st = b.status();
    assert_eq!(st.pending_records, 220);
    assert_eq!(st.pending_at_open, 220);
    assert_eq!(st.budget_left_bytes, 0);
    assert_eq!(st.sent_bytes_total, 0, "since this open");
    assert!(
        st.next_retry_in_ms > (PERIOD_MS - 60_000) as u32,
        "{}",
        st.next_retry_in_ms
    );
    b.close(Duration::from_millis(200)).unwrap_err();
}

#[test]
fn a_short_period_ends_and_delivery_resumes_exactly_once() {
    const BUDGET: u64 = 3000;
    let dir = tempfile::tempdir().unwrap();
    let rx = Server::receiver();
    let mut cfg = config(dir.path(), &rx.url());
    cfg.set("http.budget_bytes", &BUDGET.to_string()).unwrap();
    cfg.set("http.budget_period_ms", "1500").unwrap();
    cfg.set("batch.max_records", "5").unwrap();
    let events = EventLog::new();
    let b = open(&cfg, &events);
    let t0 = Instant::now();
    // About 12 KB: four periods' worth.
    log_n(&b, 0, 48);
    assert!(wait_drained(&b, Duration::from_secs(20)));
    let elapsed = t0.elapsed();
    let got = accepted(&rx);
    assert_eq!(got.len(), 48);
    assert!(got.values().all(|&n| n == 1), "{got:?}");
    let hits = rx.hits();
    let total = body_bytes(&hits);
    assert!(hits.iter().all(|h| h.ok()));
    // A period never carries more than the budget. The requests of one period go out
    // together, at its start; the next period's come about 1.5 s later: grouped by the gaps
    // between them, each group stays within the budget.
    let mut groups: Vec<u64> = Vec::new();
    for (i, h) in hits.iter().enumerate() {
        let new_group = i == 0 || h.at.duration_since(hits[i - 1].at) > Duration::from_millis(700);
        if new_group {
            groups.push(0);
        }
        if let Some(g) = groups.last_mut() {
            *g += h.body.len() as u64;
        }
    }
    eprintln!("budget {BUDGET} per 1.5 s: bytes per period {groups:?}");
    assert!(groups.iter().all(|&g| g <= BUDGET), "{groups:?}");
    let periods = total.div_ceil(BUDGET);
    assert!(
        elapsed >= Duration::from_millis(1500 * (periods - 1) - 200),
        "{total} bytes in {elapsed:?}"
    );
    assert!(events.of(EVENT_BUDGET_EXHAUSTED).len() as u64 >= periods - 1);
    let st = b.status();
    assert_eq!(st.sent_bytes_total, total);
    assert_eq!(st.delivered_total, 48);
    b.close(Duration::from_secs(2)).unwrap();
}

#[test]
fn refusals_spend_at_most_a_tenth_of_the_budget() {
    const BUDGET: u64 = 100_000;
    let dir = tempfile::tempdir().unwrap();
    // A misconfigured endpoint: 400 to everything.
    let rx = Server::always(400);
    let mut cfg = config(dir.path(), &rx.url());
    cfg.set("http.budget_bytes", &BUDGET.to_string()).unwrap();
    cfg.set("batch.max_records", "25").unwrap();
    cfg.set("retry.max_ms", "60000").unwrap();
    let events = EventLog::new();
    let b = open(&cfg, &events);
    log_n(&b, 0, 200);
    assert!(wait_until(Duration::from_secs(10), || {
        b.status().next_retry_in_ms > 50_000
    }));
    // Nothing else goes out for a while.
    std::thread::sleep(Duration::from_millis(500));
    let hits = rx.hits();
    let sent = body_bytes(&hits);
    eprintln!(
        "400 to everything: {} requests, {sent} body bytes (share {})",
        hits.len(),
        BUDGET / 10
    );
    assert!(
        sent <= BUDGET / 10,
        "{sent} bytes in {} requests",
        hits.len()
    );
    assert!(hits.len() >= 2, "the bisection began: {}", hits.len());
    let st = b.status();
    assert_eq!(st.sent_bytes_total, sent);
    assert_eq!(st.budget_left_bytes, BUDGET - sent);
    assert_eq!(st.pending_records, 200);
    assert_eq!(st.dead_letter_records, 0);
    assert_eq!(st.last_http_status, 400);
    b.close(Duration::from_millis(200)).unwrap_err();
}

/// A receiver reading at about 20 KB/s; a full batch (500 records, about 125 KB) would take
/// six seconds, and http.timeout_ms is 2 s.
fn slow_link(dir: &std::path::Path, rx: &Server) -> Config {
    rx.set_read_rate(20_000);
    let mut cfg = config(dir, &rx.url());
    cfg.set("http.timeout_ms", "2000").unwrap();
    cfg
}

#[test]
fn a_slow_link_converges_after_halving_without_a_timeout_storm() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Server::receiver();
    let cfg = slow_link(dir.path(), &rx);
    let events = EventLog::new();
    let b = open(&cfg, &events);
    // 600 records, about 150 KB: 7.5 s on the link.
    log_n(&b, 0, 600);
    assert!(wait_drained(&b, Duration::from_secs(60)));
    let st = b.status();
    eprintln!(
        "slow link: {} requests, {} failed attempts, {} bytes sent",
        rx.count(),
        st.failed_attempts_total,
        st.sent_bytes_total
    );
    // Two timeouts per halving: 500 → 250 → 125 → 62 records (each takes under 2 s at 62).
    assert!(
        st.failed_attempts_total >= 2,
        "{}",
        st.failed_attempts_total
    );
    assert!(
        st.failed_attempts_total <= 8,
        "{}",
        st.failed_attempts_total
    );
    assert_eq!(st.delivered_total, 600);
    // A timed-out request may still have reached the server (its answer was lost): at least
    // once, and every one of them.
    assert_eq!(accepted(&rx).len(), 600);
    b.close(Duration::from_secs(2)).unwrap();
}

#[test]
fn a_rate_cap_below_the_link_rate_keeps_every_request_within_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Server::receiver();
    let mut cfg = slow_link(dir.path(), &rx);
    cfg.set("http.max_bytes_per_s", "15000").unwrap();
    let events = EventLog::new();
    let b = open(&cfg, &events);
    // About 50 KB.
    log_n(&b, 0, 200);
    assert!(wait_drained(&b, Duration::from_secs(30)));
    let st = b.status();
    assert_eq!(st.failed_attempts_total, 0);
    assert_eq!(st.delivered_total, 200);
    let got = accepted(&rx);
    assert_eq!(got.len(), 200);
    assert!(got.values().all(|&n| n == 1), "{got:?}");
    b.close(Duration::from_secs(2)).unwrap();
}

/// An outage of refused connections puts nothing on the wire: it neither counts in
/// `sent_bytes_total` nor spends the budget, and the records go out when the endpoint returns.
#[test]
fn refused_connections_spend_no_budget() {
    const BUDGET: u64 = 1_000_000;
    let dir = tempfile::tempdir().unwrap();
    let mut rx = Server::receiver();
    rx.down();
    let mut cfg = config(dir.path(), &rx.url());
    cfg.set("http.budget_bytes", &BUDGET.to_string()).unwrap();
    cfg.set("retry.initial_ms", "10").unwrap();
    cfg.set("retry.max_ms", "20").unwrap();
    let events = EventLog::new();
    let b = open(&cfg, &events);
    log_n(&b, 0, 100);
    assert!(wait_until(Duration::from_secs(10), || {
        b.status().failed_attempts_total >= 5
    }));
    let st = b.status();
    assert_eq!(st.sent_bytes_total, 0, "refused: nothing went out");
    assert_eq!(st.budget_left_bytes, BUDGET, "refused: no budget spent");
    rx.up();
    assert!(wait_drained(&b, Duration::from_secs(10)));
    let sent = body_bytes(&rx.hits());
    let st = b.status();
    assert!(sent > 0);
    assert_eq!(st.sent_bytes_total, sent);
    assert_eq!(st.budget_left_bytes, BUDGET - sent);
    assert_eq!(accepted(&rx).len(), 100);
    b.close(Duration::from_secs(5)).unwrap();
}
