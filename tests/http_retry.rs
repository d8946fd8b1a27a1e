//! docs/reference.md, the wire against real HTTP servers on 127.0.0.1, through the whole Buffer: transient
//! failures and the identical retried batch, Retry-After, retry_now, configuration problems,
//! timeouts and broken connections.

mod common;
use common::*;
use edgebuf::events::{EVENT_DELIVERED, EVENT_OFFLINE, EVENT_ONLINE};
use edgebuf::status::{CONNECTIVITY_OFFLINE, CONNECTIVITY_ONLINE};
use edgebuf::{Buffer, Code, Config};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

fn cfg(dir: &std::path::Path, url: &str, extra: &[(&str, &str)]) -> Config {
    let mut c = config(dir, url);
    c.set("http.proxy", "none").unwrap();
    for (k, v) in extra {
        c.set(k, v).unwrap();
    }
    c
}

fn log_n(b: &Buffer, range: std::ops::Range<u32>) {
    for i in range {
        b.log(format!("{{\"i\":{i}}}").as_bytes()).unwrap();
    }
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// 500, 503, 408 or 429 while `fail` is set, then 200: the retried request is the first one
/// byte for byte, with the same Idempotency-Key; status and events tell the story.
fn transient_then_ok(code: u16) {
    let dir = tempfile::tempdir().unwrap();
    let fail = Arc::new(AtomicBool::new(true));
    let f2 = Arc::clone(&fail);
    let srv = Server::start(move |_| {
        if f2.load(Ordering::SeqCst) {
            Act::status(code)
        } else {
            Act::status(200)
        }
    });
    let ev = EventLog::new();
    // A long linger: the first batch is exactly batch.max_records records.
    let c = cfg(
        dir.path(),
        &srv.url(),
        &[("batch.max_records", "40"), ("batch.linger_ms", "5000")],
    );
    let b = Buffer::open(&c, ev.callback()).unwrap();
    log_n(&b, 0..100);
    // The server records a request before it answers: wait for the worker's count.
    assert!(
        wait_until(Duration::from_secs(10), || b.status().failed_attempts_total
            >= 3),
        "{code}: three attempts"
    );
    let st = b.status();
    assert!(st.failed_attempts_total >= 3, "{code}: {st:?}");
    assert!(st.consecutive_failures >= 3, "{code}: {st:?}");
    assert_eq!(st.last_http_status, i32::from(code), "{code}: {st:?}");
    assert_eq!(st.connectivity, CONNECTIVITY_OFFLINE, "{code}: {st:?}");
    assert_eq!((st.pending_records, st.delivered_total), (100, 0), "{code}");
    assert!(
        wait_until(Duration::from_secs(2), || !ev.of(EVENT_OFFLINE).is_empty()),
        "{code}: OFFLINE"
    );

    fail.store(false, Ordering::SeqCst);
    b.flush(Duration::from_secs(10)).unwrap();
    let hits = srv.hits();
    let first_ok = hits.iter().position(|h| h.ok()).expect("a 2xx");
    assert!(first_ok >= 3, "{code}");
    let key0 = hits[0].header("idempotency-key").unwrap().to_string();
    assert_eq!(
        key0,
        format!("{}-1-40-40", b.instance()),
        "{code}: key of the first batch"
    );
    assert_eq!(hits[0].seqs(), (1..=40).collect::<Vec<_>>(), "{code}");
    for h in &hits[..=first_ok] {
        assert_eq!(h.body, hits[0].body, "{code}: request {} differs", h.n);
        assert_eq!(h.header("idempotency-key"), Some(key0.as_str()), "{code}");
    }
    // Delivered exactly once each, in seq order.
    assert_eq!(
        seqs(&srv.delivered()),
        (1..=100).collect::<Vec<_>>(),
        "{code}"
    );
    let failed = hits.iter().filter(|h| !h.ok()).count() as u64;
    let st = b.status();
    assert_eq!(st.failed_attempts_total, failed, "{code}: {st:?}");
    assert_eq!(st.consecutive_failures, 0, "{code}: {st:?}");
    assert_eq!(st.last_http_status, 200, "{code}: {st:?}");
    assert_eq!(st.connectivity, CONNECTIVITY_ONLINE, "{code}: {st:?}");
    assert_eq!((st.pending_records, st.delivered_total), (0, 100), "{code}");
    assert!(st.last_success_unix_ms > 0, "{code}");

    let delivered_events = || ev.of(EVENT_DELIVERED).iter().map(|e| e.count).sum::<u64>();
    assert!(
        wait_until(Duration::from_secs(2), || delivered_events() == 100),
        "{code}: DELIVERED events"
    );
    let kinds = ev.kinds();
    let offline = ev.of(EVENT_OFFLINE);
    assert_eq!(
        offline.len(),
        1,
        "{code}: one OFFLINE for one failing status"
    );
    assert_eq!(offline[0].http_status, i32::from(code), "{code}");
    let p_off = kinds.iter().position(|&k| k == EVENT_OFFLINE).unwrap();
    let p_on = kinds
        .iter()
        .position(|&k| k == EVENT_ONLINE)
        .expect("ONLINE");
    let p_del = kinds.iter().position(|&k| k == EVENT_DELIVERED).unwrap();
    assert!(p_off < p_on && p_on < p_del, "{code}: {kinds:?}");
    assert_eq!(ev.of(EVENT_ONLINE).len(), 1, "{code}: {kinds:?}");
    b.close(Duration::from_secs(2)).unwrap();
}

#[test]
fn transient_statuses_resend_the_identical_batch() {
    std::thread::scope(|s| {
        for code in [500u16, 503, 408, 429] {
            s.spawn(move || transient_then_ok(code));
        }
    });
}

/// The first answer carries Retry-After; `retry_now` during the wait does not cut it.
/// Returns the gap between the first request and the second.
fn retried_after(
    code: u16,
    header: &dyn Fn() -> String,
    extra: &[(&str, &str)],
) -> (Duration, Vec<Hit>) {
    let dir = tempfile::tempdir().unwrap();
    let h = header();
    let srv = Server::start(move |hit| {
        if hit.n == 0 {
            Act::status(code).with("Retry-After", &h)
        } else {
            Act::status(200)
        }
    });
    let c = cfg(dir.path(), &srv.url(), extra);
    let b = Buffer::open(&c, None).unwrap();
    log_n(&b, 0..5);
    srv.wait_hits(1, Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(150));
    let st = b.status();
    assert!(st.next_retry_in_ms > 0, "{st:?}");
    b.retry_now();
    let hits = srv.wait_hits(2, Duration::from_secs(10));
    assert!(hits.len() >= 2, "a second attempt");
    b.flush(Duration::from_secs(5)).unwrap();
    assert_eq!(seqs(&srv.delivered()), (1..=5).collect::<Vec<_>>());
    assert_eq!(hits[1].body, hits[0].body);
    b.close(Duration::from_secs(1)).unwrap();
    (hits[1].at - hits[0].at, hits)
}

#[test]
fn retry_after_seconds_is_obeyed_and_not_cut_by_retry_now() {
    // The backoff (up to 5 s) is cut short by retry_now, down to the Retry-After of 1 s.
    let (gap, _) = retried_after(
        503,
        &|| "1".to_string(),
        &[("retry.initial_ms", "5000"), ("retry.max_ms", "5000")],
    );
    assert!(ms(gap) >= 1000, "retried after {gap:?}, told 1 s");
    assert!(
        ms(gap) < 1700,
        "retried after {gap:?}, told 1 s, then retry_now"
    );
}

#[test]
fn retry_after_http_date_is_obeyed_and_not_cut_by_retry_now() {
    // Two seconds ahead, truncated to the second by the format: 1 to 2 s from now.
    let (gap, hits) = retried_after(
        429,
        &|| httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(2)),
        &[("retry.max_ms", "5000")],
    );
    let told = hits[0].answered("retry-after").expect("the date sent");
    let date = httpdate::parse_http_date(told).unwrap();
    // Not earlier than the date (wall clock; 2 ms for clock reading differences).
    assert!(
        hits[1].wall + Duration::from_millis(2) >= date,
        "retried at {:?}, told {told}",
        hits[1].wall
    );
    assert!(ms(gap) < 3000, "retried after {gap:?}");
}

#[test]
fn retry_after_is_capped_at_retry_max_ms() {
    let (gap, _) = retried_after(503, &|| "30".to_string(), &[("retry.max_ms", "400")]);
    assert!(ms(gap) >= 400, "retried after {gap:?}, cap 400 ms");
    assert!(
        ms(gap) < 1500,
        "retried after {gap:?}: Retry-After 30 s was not capped"
    );
}

#[test]
fn retry_now_cuts_a_normal_backoff_short() {
    let dir = tempfile::tempdir().unwrap();
    let fail = Arc::new(AtomicBool::new(true));
    let f2 = Arc::clone(&fail);
    let srv = Server::start(move |_| {
        if f2.load(Ordering::SeqCst) {
            Act::status(503)
        } else {
            Act::status(200)
        }
    });
    let c = cfg(
        dir.path(),
        &srv.url(),
        &[("retry.initial_ms", "5000"), ("retry.max_ms", "5000")],
    );
    let b = Buffer::open(&c, None).unwrap();
    log_n(&b, 0..5);
    srv.wait_hits(1, Duration::from_secs(5));
    let mut measured = None;
    // Full jitter may draw a short backoff; then try again on the next one (bounded).
    for _ in 0..6 {
        let n0 = srv.count();
        std::thread::sleep(Duration::from_millis(300));
        if srv.count() != n0 {
            continue;
        }
        let st = b.status();
        assert!(st.next_retry_in_ms > 0, "{st:?}");
        fail.store(false, Ordering::SeqCst);
        let t = Instant::now();
        b.retry_now();
        let hits = srv.wait_hits(n0 + 1, Duration::from_secs(6));
        assert!(hits.len() > n0);
        measured = Some(hits[n0].at - t);
        break;
    }
    let gap = measured.expect("a backoff long enough to cut");
    assert!(ms(gap) < 1000, "retry_now took {gap:?} to cause the retry");
    b.flush(Duration::from_secs(2)).unwrap();
    assert_eq!(seqs(&srv.delivered()), (1..=5).collect::<Vec<_>>());
    let st = b.status();
    assert_eq!(st.consecutive_failures, 0);
    assert_eq!(st.next_retry_in_ms, 0, "not waiting any more: {st:?}");
    b.close(Duration::from_secs(1)).unwrap();
}

/// 401, 403, 404, 418, and a 301 or 307 (never followed): records kept, retried at retry.max_ms, the status and
/// an OFFLINE event say why; once the endpoint accepts, everything arrives.
fn config_problem(code: u16) {
    let dir = tempfile::tempdir().unwrap();
    let target = Server::always(200);
    let location = target.url();
    let srv = Server::start(move |_| {
        if code / 100 == 3 {
            Act::status(code).with("Location", &location)
        } else {
            Act::status(code)
        }
    });
    let ev = EventLog::new();
    let c = cfg(dir.path(), &srv.url(), &[("retry.max_ms", "300")]);
    let b = Buffer::open(&c, ev.callback()).unwrap();
    log_n(&b, 0..10);
    assert!(wait_until(Duration::from_secs(5), || b
        .status()
        .failed_attempts_total
        >= 5));
    let hits = srv.hits();
    assert!(hits.len() >= 5, "{code}: {} attempts", hits.len());
    for w in hits.windows(2) {
        let gap = w[1].at - w[0].at;
        assert!(
            ms(gap) >= 295 && ms(gap) < 900,
            "{code}: attempts {gap:?} apart, retry.max_ms is 300"
        );
        assert_eq!(w[1].body, w[0].body, "{code}");
    }
    let st = b.status();
    assert_eq!(st.last_http_status, i32::from(code), "{code}: {st:?}");
    assert_eq!(st.connectivity, CONNECTIVITY_OFFLINE, "{code}");
    assert_eq!(st.pending_records, 10, "{code}");
    assert_eq!(
        (st.delivered_total, st.dead_letter_records),
        (0, 0),
        "{code}"
    );
    assert!(st.failed_attempts_total >= 5, "{code}: {st:?}");
    assert!(st.consecutive_failures >= 5, "{code}: {st:?}");
    assert!(st.next_retry_in_ms <= 300, "{code}: {st:?}");
    assert_eq!(
        b.flush(Duration::from_millis(50)).unwrap_err().code(),
        Code::Timeout
    );
    assert!(wait_until(Duration::from_secs(1), || !ev
        .of(EVENT_OFFLINE)
        .is_empty()));
    let off = ev.of(EVENT_OFFLINE);
    assert_eq!(off.len(), 1, "{code}: {off:?}");
    assert_eq!(off[0].http_status, i32::from(code), "{code}");
    assert_eq!(target.count(), 0, "{code}: the redirect was followed");

    srv.set_handler(|_| Act::status(200));
    b.flush(Duration::from_secs(3)).unwrap();
    assert_eq!(
        seqs(&srv.delivered()),
        (1..=10).collect::<Vec<_>>(),
        "{code}"
    );
    assert_eq!(target.count(), 0, "{code}");
    assert_eq!(b.status().connectivity, CONNECTIVITY_ONLINE);
    b.close(Duration::from_secs(1)).unwrap();
}

#[test]
fn config_statuses_keep_records_and_retry_at_max() {
    std::thread::scope(|s| {
        for code in [401u16, 403, 404, 418, 301, 307] {
            s.spawn(move || config_problem(code));
        }
    });
}

#[test]
fn a_server_that_never_answers_counts_as_failures() {
    let dir = tempfile::tempdir().unwrap();
    let silent = Server::silent();
    let ev = EventLog::new();
    let c = cfg(dir.path(), &silent.url(), &[("http.timeout_ms", "300")]);
    let b = Buffer::open(&c, ev.callback()).unwrap();
    log_n(&b, 0..5);
    assert!(wait_until(Duration::from_secs(5), || b
        .status()
        .failed_attempts_total
        >= 2));
    let st = b.status();
    assert!(st.consecutive_failures >= 2, "{st:?}");
    assert_eq!(st.last_http_status, 0, "{st:?}");
    assert_eq!(st.connectivity, CONNECTIVITY_OFFLINE);
    assert_eq!(st.pending_records, 5);
    assert!(silent.conns() >= 2);
    assert!(wait_until(Duration::from_secs(1), || !ev
        .of(EVENT_OFFLINE)
        .is_empty()));
    let off = &ev.of(EVENT_OFFLINE)[0];
    assert_eq!(off.http_status, 0);
    assert!(off.message.contains("http.timeout_ms"), "{off:?}");
    let t = Instant::now();
    assert_eq!(
        b.close(Duration::from_millis(200)).unwrap_err().code(),
        Code::Timeout
    );
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "close took {:?}",
        t.elapsed()
    );
}

#[test]
fn two_timeouts_in_a_row_halve_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(|hit| {
        if hit.n < 2 {
            Act::Hang
        } else {
            Act::status(200)
        }
    });
    let c = cfg(
        dir.path(),
        &srv.url(),
        &[
            ("http.timeout_ms", "300"),
            ("batch.max_records", "40"),
            ("batch.linger_ms", "5000"),
        ],
    );
    let b = Buffer::open(&c, None).unwrap();
    log_n(&b, 0..100);
    let hits = srv.wait_hits(3, Duration::from_secs(10));
    assert!(hits.len() >= 3);
    assert_eq!(hits[0].seqs(), (1..=40).collect::<Vec<_>>());
    assert_eq!(hits[1].body, hits[0].body);
    assert!(ms(hits[1].at - hits[0].at) >= 280, "the timeout is 300 ms");
    assert_eq!(
        hits[2].seqs(),
        (1..=20).collect::<Vec<_>>(),
        "after two timeouts the next request carries half the records"
    );
    b.flush(Duration::from_secs(10)).unwrap();
    assert_eq!(seqs(&srv.delivered()), (1..=100).collect::<Vec<_>>());
    let hits = srv.hits();
    assert!(hits.iter().all(|h| h.seqs().len() <= 40));
    let st = b.status();
    assert_eq!(st.failed_attempts_total, 2, "{st:?}");
    assert_eq!((st.consecutive_failures, st.last_http_status), (0, 200));
    b.close(Duration::from_secs(1)).unwrap();
}

#[test]
fn a_connection_closed_mid_response_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(|hit| {
        if hit.n == 0 {
            Act::CloseMidResponse
        } else {
            Act::status(200)
        }
    });
    let ev = EventLog::new();
    let b = Buffer::open(&cfg(dir.path(), &srv.url(), &[]), ev.callback()).unwrap();
    log_n(&b, 0..10);
    b.flush(Duration::from_secs(5)).unwrap();
    let hits = srv.hits();
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[1].body, hits[0].body);
    assert_eq!(
        hits[1].header("idempotency-key"),
        hits[0].header("idempotency-key")
    );
    assert_eq!(seqs(&srv.delivered()), (1..=10).collect::<Vec<_>>());
    let st = b.status();
    assert_eq!(st.failed_attempts_total, 1, "{st:?}");
    assert_eq!(st.last_http_status, 200);
    assert!(wait_until(Duration::from_secs(1), || !ev
        .of(EVENT_ONLINE)
        .is_empty()));
    let kinds = ev.kinds();
    assert_eq!(kinds[0], EVENT_OFFLINE, "{kinds:?}");
    b.close(Duration::from_secs(1)).unwrap();
}

#[test]
fn an_idle_keepalive_connection_closed_by_the_server_is_no_failure() {
    let dir = tempfile::tempdir().unwrap();
    // Every answer keeps the connection only 100 ms, then the server closes it.
    let srv = Server::start(|_| Act::ReplyThenCloseAfter(200, Duration::from_millis(100)));
    let b = Buffer::open(&cfg(dir.path(), &srv.url(), &[]), None).unwrap();
    for round in 0..3 {
        log_n(&b, round * 5..round * 5 + 5);
        b.flush(Duration::from_secs(5)).unwrap();
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(seqs(&srv.delivered()), (1..=15).collect::<Vec<_>>());
    let st = b.status();
    assert_eq!(st.failed_attempts_total, 0, "{st:?}");
    assert_eq!(st.consecutive_failures, 0);
    assert_eq!(srv.conns(), 3);
    b.close(Duration::from_secs(1)).unwrap();
}

/// The server resets the connection while an 8 MiB body is still being written: the writing
/// thread gets EPIPE or ECONNRESET, never SIGPIPE. The default disposition is restored for the
/// whole test process, so a SIGPIPE raised by any thread here would kill it.
#[test]
fn a_reset_while_sending_is_retried_without_sigpipe() {
    // SAFETY: setting a signal disposition to its default; no handler is installed.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::always(200);
    srv.cut_next(2);
    let c = cfg(
        dir.path(),
        &srv.url(),
        &[
            ("batch.max_bytes", "33554432"),
            ("batch.max_records", "32"),
            ("batch.linger_ms", "5000"),
            ("http.timeout_ms", "10000"),
        ],
    );
    let ev = EventLog::new();
    let b = Buffer::open(&c, ev.callback()).unwrap();
    let pad = "x".repeat(256 * 1024);
    for i in 0..32 {
        b.log(format!("{{\"i\":{i},\"pad\":\"{pad}\"}}").as_bytes())
            .unwrap();
    }
    // No flush before the first request: it would send what is committed so far.
    srv.wait_hits(3, Duration::from_secs(20));
    b.flush(Duration::from_secs(20)).unwrap();
    let hits = srv.hits();
    assert_eq!(hits.len(), 3, "two cut off, then delivered");
    assert!(hits[..2].iter().all(|h| h.status == 0 && h.body.is_empty()));
    assert_eq!(hits[2].seqs(), (1..=32).collect::<Vec<_>>());
    assert!(hits[2].body.len() > 8 << 20);
    assert_eq!(
        hits[2].header("idempotency-key"),
        hits[0].header("idempotency-key")
    );
    let st = b.status();
    assert_eq!(st.failed_attempts_total, 2, "{st:?}");
    assert_eq!((st.pending_records, st.last_http_status), (0, 200));
    assert!(wait_until(Duration::from_secs(1), || !ev
        .of(EVENT_OFFLINE)
        .is_empty()));
    let off = &ev.of(EVENT_OFFLINE)[0];
    assert!(
        off.message.contains("reset") || off.message.contains("closed"),
        "{off:?}"
    );
    b.close(Duration::from_secs(1)).unwrap();
}

/// "Retry-After: 0" (or an HTTP date in the past, as a device clock running ahead sees every
/// date) allows an immediate retry, not a loop without backoff.
#[test]
fn retry_after_zero_still_backs_off() {
    let dir = tempfile::tempdir().unwrap();
    let past = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(3600));
    let srv = Server::start(move |hit| {
        if hit.n % 2 == 0 {
            Act::status(503).with("Retry-After", "0")
        } else {
            Act::status(429).with("Retry-After", &past)
        }
    });
    let c = cfg(
        dir.path(),
        &srv.url(),
        &[("retry.initial_ms", "100"), ("retry.max_ms", "400")],
    );
    let b = Buffer::open(&c, None).unwrap();
    log_n(&b, 0..3);
    std::thread::sleep(Duration::from_millis(1500));
    let n = srv.count();
    // Backoff ceilings 100, 200, 400, 400...: expected about 6 attempts in 1.5 s.
    assert!((2..=25).contains(&n), "{n} attempts in 1.5 s");
    assert_eq!(b.status().pending_records, 3);
    let _ = b.close(Duration::from_millis(50));
}

/// A request on a reused keep-alive connection that the server closes before answering is
/// sent again once, at once, on a new connection, and is no failed attempt; a second failure
/// on the new connection is one.
#[test]
fn a_reused_connection_closed_before_the_answer_is_resent_once() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(|hit| match hit.n {
        1 | 3 | 4 => Act::Close,
        _ => Act::status(200),
    });
    let b = Buffer::open(&cfg(dir.path(), &srv.url(), &[]), None).unwrap();
    log_n(&b, 0..3);
    b.flush(Duration::from_secs(5)).unwrap();
    log_n(&b, 3..6);
    b.flush(Duration::from_secs(5)).unwrap();
    let hits = srv.hits();
    assert_eq!(hits.len(), 3);
    assert_eq!(
        (hits[1].conn, hits[2].conn),
        (1, 2),
        "resent on a new connection"
    );
    assert_eq!(hits[2].body, hits[1].body);
    assert!(
        hits[2].at - hits[1].at < Duration::from_millis(200),
        "at once"
    );
    assert_eq!(b.status().failed_attempts_total, 0);

    // Closed on the reused connection (hit 3), and again on the new one (hit 4): one failure.
    log_n(&b, 6..9);
    b.flush(Duration::from_secs(5)).unwrap();
    let hits = srv.hits();
    assert_eq!(hits.len(), 6);
    assert_eq!(
        hits[3..].iter().map(|h| h.conn).collect::<Vec<_>>(),
        [2, 3, 4]
    );
    assert!(hits[3..].iter().all(|h| h.body == hits[3].body));
    assert_eq!(hits[5].status, 200);
    let st = b.status();
    assert_eq!(st.failed_attempts_total, 1, "{st:?}");
    assert_eq!(seqs(&srv.delivered()), (1..=9).collect::<Vec<_>>());
    b.close(Duration::from_secs(1)).unwrap();
}
