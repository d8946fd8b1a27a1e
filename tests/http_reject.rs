//! docs/reference.md, the wire against real HTTP servers on 127.0.0.1, through the whole Buffer: 413 splits the
//! batch, 400/422 bisect it to isolate the rejected records, which are dead-lettered only once
//! the endpoint accepted something else; an endpoint that rejects everything loses nothing.

mod common;
use common::*;
use edgebuf::events::{EVENT_DEAD_LETTER, EVENT_DELIVERED, EVENT_OFFLINE};
use edgebuf::status::CONNECTIVITY_OFFLINE;
use edgebuf::{Buffer, Config};
use std::time::Duration;

fn cfg(dir: &std::path::Path, url: &str, extra: &[(&str, &str)]) -> Config {
    let mut c = config(dir, url);
    c.set("http.proxy", "none").unwrap();
    for (k, v) in extra {
        c.set(k, v).unwrap();
    }
    c
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// An endpoint (a proxy's body limit) that takes at most `max` records a request: 413 above.
fn body_limit(max: usize) -> Server {
    Server::start(move |hit| {
        if hit.envelopes().len() > max {
            Act::status(413)
        } else {
            Act::status(200)
        }
    })
}

/// Logs `n` records `{"i":0}`, `{"i":1}`, ...
fn log_n(b: &Buffer, n: u32) {
    for i in 0..n {
        b.log(format!("{{\"i\":{i}}}").as_bytes()).unwrap();
    }
}

#[test]
fn too_large_batches_are_split_in_halves_and_all_arrive_in_order() {
    let dir = tempfile::tempdir().unwrap();
    // The endpoint takes at most 8 records a request.
    let srv = body_limit(8);
    let c = cfg(
        dir.path(),
        &srv.url(),
        &[("batch.max_records", "50"), ("batch.linger_ms", "5000")],
    );
    let b = Buffer::open(&c, None).unwrap();
    log_n(&b, 100);
    b.flush(Duration::from_secs(10)).unwrap();
    assert_eq!(seqs(&srv.delivered()), (1..=100).collect::<Vec<_>>());
    let hits = srv.hits();
    assert_eq!(hits[0].seqs(), (1..=50).collect::<Vec<_>>());
    assert_eq!(hits[0].status, 413);
    assert_eq!(
        hits[1].seqs(),
        (1..=25).collect::<Vec<_>>(),
        "the first half"
    );
    assert!(hits.iter().filter(|h| h.ok()).all(|h| h.seqs().len() <= 8));
    let st = b.status();
    let rejected = hits.iter().filter(|h| h.status == 413).count() as u64;
    assert_eq!(st.failed_attempts_total, rejected, "{st:?}");
    assert_eq!((st.dead_letter_records, st.dead_lettered_total), (0, 0));
    assert_eq!((st.pending_records, st.delivered_total), (0, 100));
    b.close(Duration::from_secs(1)).unwrap();
}

#[test]
fn a_poison_record_is_isolated_and_dead_lettered_after_an_acceptance() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(|hit| {
        if contains(&hit.plain(), "\"poison\":true") {
            Act::status(400)
        } else {
            Act::status(200)
        }
    });
    let ev = EventLog::new();
    let c = cfg(
        dir.path(),
        &srv.url(),
        &[("batch.max_records", "50"), ("batch.linger_ms", "5000")],
    );
    let b = Buffer::open(&c, ev.callback()).unwrap();
    for i in 0..60 {
        let poison = if i == 17 || i == 41 {
            ",\"poison\":true"
        } else {
            ""
        };
        b.log(format!("{{\"i\":{i}{poison}}}").as_bytes()).unwrap();
    }
    b.flush(Duration::from_secs(10)).unwrap();
    let want: Vec<u64> = (1..=60).filter(|s| *s != 18 && *s != 42).collect();
    assert_eq!(seqs(&srv.delivered()), want, "all others, in order");
    let st = b.status();
    assert_eq!(
        (st.dead_letter_records, st.dead_lettered_total),
        (2, 2),
        "{st:?}"
    );
    assert_eq!((st.pending_records, st.delivered_total), (0, 58), "{st:?}");
    let hits = srv.hits();
    assert_eq!(hits[0].seqs(), (1..=50).collect::<Vec<_>>());
    // Bisection of 50 records costs at most 2 × batch.max_records requests.
    let first_batch = hits.iter().filter(|h| h.seqs()[0] <= 50).count();
    assert!(first_batch <= 100, "{first_batch} requests");
    let rejected = hits.iter().filter(|h| h.status == 400).count() as u64;
    assert_eq!(st.failed_attempts_total, rejected);
    // Each poison record was sent alone at least once and answered 400.
    for s in [18u64, 42] {
        assert!(hits.iter().any(|h| h.seqs() == [s] && h.status == 400));
    }

    assert!(wait_until(Duration::from_secs(2), || ev
        .of(EVENT_DEAD_LETTER)
        .len()
        == 2));
    let dl = ev.of(EVENT_DEAD_LETTER);
    assert!(
        dl.iter().all(|e| e.http_status == 400 && e.count == 1),
        "{dl:?}"
    );
    let kinds = ev.kinds();
    let first_dl = kinds.iter().position(|&k| k == EVENT_DEAD_LETTER).unwrap();
    let first_del = kinds.iter().position(|&k| k == EVENT_DELIVERED).unwrap();
    assert!(
        first_del < first_dl,
        "dead-lettered before any acceptance: {kinds:?}"
    );
    assert!(
        ev.of(EVENT_OFFLINE).is_empty(),
        "bad records are no outage: {kinds:?}"
    );
    b.close(Duration::from_secs(1)).unwrap();
}

/// A rejected record alone is kept until another request (the probe) is accepted.
#[test]
fn a_lone_rejected_record_waits_for_a_probe_before_the_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(|hit| {
        if contains(&hit.plain(), "\"poison\":true") {
            Act::status(422)
        } else {
            Act::status(200)
        }
    });
    let ev = EventLog::new();
    let c = cfg(dir.path(), &srv.url(), &[]);
    let b = Buffer::open(&c, ev.callback()).unwrap();
    b.log(br#"{"poison":true}"#).unwrap();
    let hits = srv.wait_hits(3, Duration::from_secs(5));
    assert!(hits.len() >= 3);
    assert!(hits.iter().all(|h| h.seqs() == [1] && h.status == 422));
    let st = b.status();
    assert_eq!(
        (st.dead_letter_records, st.dead_lettered_total),
        (0, 0),
        "{st:?}"
    );
    assert_eq!(st.pending_records, 1);
    assert_eq!(st.last_http_status, 422);
    assert_eq!(st.connectivity, CONNECTIVITY_OFFLINE);
    assert!(wait_until(Duration::from_secs(1), || !ev
        .of(EVENT_OFFLINE)
        .is_empty()));
    assert_eq!(ev.of(EVENT_OFFLINE)[0].http_status, 422);

    b.log(br#"{"good":true}"#).unwrap();
    b.flush(Duration::from_secs(5)).unwrap();
    assert_eq!(seqs(&srv.delivered()), [2]);
    let st = b.status();
    assert_eq!(
        (st.dead_letter_records, st.dead_lettered_total),
        (1, 1),
        "{st:?}"
    );
    assert_eq!(st.pending_records, 0);
    assert!(wait_until(Duration::from_secs(2), || ev
        .of(EVENT_DEAD_LETTER)
        .len()
        == 1));
    assert_eq!(ev.of(EVENT_DEAD_LETTER)[0].http_status, 422);
    let kinds = ev.kinds();
    let dl = kinds.iter().position(|&k| k == EVENT_DEAD_LETTER).unwrap();
    let del = kinds.iter().position(|&k| k == EVENT_DELIVERED).unwrap();
    assert!(del < dl, "{kinds:?}");
    b.close(Duration::from_secs(1)).unwrap();
}

/// A misconfigured proxy answering 400 (or 413) to everything: nothing is dead-lettered.
fn rejects_everything(code: u16) {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::always(code);
    let ev = EventLog::new();
    let c = cfg(
        dir.path(),
        &srv.url(),
        &[("batch.max_records", "50"), ("retry.max_ms", "300")],
    );
    let b = Buffer::open(&c, ev.callback()).unwrap();
    for i in 0..20 {
        b.log(format!("{{\"i\":{i}}}").as_bytes()).unwrap();
    }
    // Two rounds of bisection (20 records: 39 requests each).
    let hits = srv.wait_hits(78, Duration::from_secs(10));
    assert!(hits.len() >= 78, "{code}: {} requests", hits.len());
    let st = b.status();
    assert_eq!(
        (st.dead_letter_records, st.dead_lettered_total),
        (0, 0),
        "{code}: {st:?}"
    );
    assert_eq!((st.pending_records, st.delivered_total), (20, 0), "{code}");
    assert_eq!(st.last_http_status, i32::from(code), "{code}");
    assert_eq!(st.connectivity, CONNECTIVITY_OFFLINE, "{code}");
    assert!(wait_until(Duration::from_secs(1), || !ev
        .of(EVENT_OFFLINE)
        .is_empty()));
    let off = ev.of(EVENT_OFFLINE);
    assert_eq!(off.len(), 1, "{code}: {off:?}");
    assert_eq!(off[0].http_status, i32::from(code), "{code}");
    assert!(ev.of(EVENT_DEAD_LETTER).is_empty(), "{code}");
    // Rounds are retry.max_ms apart and each costs at most 2 × batch.max_records requests.
    let mut rounds = vec![1usize];
    for w in hits.windows(2) {
        if w[1].at - w[0].at >= Duration::from_millis(250) {
            rounds.push(1);
        } else {
            *rounds.last_mut().unwrap() += 1;
        }
    }
    assert!(rounds.len() >= 2, "{code}: {rounds:?}");
    assert!(rounds.iter().all(|&n| n <= 100), "{code}: {rounds:?}");

    // Once the endpoint is fixed, everything arrives, in order.
    srv.set_handler(|_| Act::status(200));
    b.flush(Duration::from_secs(5)).unwrap();
    assert_eq!(
        seqs(&srv.delivered()),
        (1..=20).collect::<Vec<_>>(),
        "{code}"
    );
    assert_eq!(b.status().dead_letter_records, 0);
    b.close(Duration::from_secs(1)).unwrap();
}

#[test]
fn an_endpoint_rejecting_everything_dead_letters_nothing() {
    std::thread::scope(|s| {
        for code in [400u16, 413] {
            s.spawn(move || rejects_everything(code));
        }
    });
}

#[test]
fn a_body_limit_found_by_413_is_remembered_for_later_batches() {
    let dir = tempfile::tempdir().unwrap();
    // A proxy's body limit: at most 8 records a request.
    let srv = body_limit(8);
    let c = cfg(
        dir.path(),
        &srv.url(),
        &[("batch.max_records", "64"), ("batch.linger_ms", "5000")],
    );
    let b = Buffer::open(&c, None).unwrap();
    log_n(&b, 640);
    b.flush(Duration::from_secs(20)).unwrap();
    assert_eq!(seqs(&srv.delivered()), (1..=640).collect::<Vec<_>>());
    let hits = srv.hits();
    let refused = hits.iter().filter(|h| h.status == 413).count();
    let accepted = hits.iter().filter(|h| h.ok()).count();
    // 80 accepted requests of 8. Without remembering the limit, every batch of 64 would be
    // refused 3 times on its way down to 8 (30 refusals); remembered, the first batch finds
    // it, and trying a doubled size again costs one refusal after 8, 16, 32, 64 successes.
    assert_eq!(accepted, 80, "{accepted} accepted");
    let trace: Vec<(u16, usize)> = hits.iter().map(|h| (h.status, h.seqs().len())).collect();
    assert!(
        refused <= 3 + 4,
        "{refused} requests refused with 413: {trace:?}"
    );
    b.close(Duration::from_secs(1)).unwrap();
}

#[test]
fn an_endpoint_refusing_everything_costs_few_requests_per_round() {
    let dir = tempfile::tempdir().unwrap();
    // A proxy answering 400 to every request (say, a missing client certificate).
    let srv = Server::always(400);
    let c = cfg(
        dir.path(),
        &srv.url(),
        &[
            ("batch.max_records", "64"),
            ("batch.linger_ms", "0"),
            ("retry.max_ms", "60000"),
        ],
    );
    let b = Buffer::open(&c, None).unwrap();
    log_n(&b, 200);
    b.sync(Duration::from_secs(5)).unwrap();
    // One round: bisect down to two single records, then a probe with newer records, which
    // is refused too: a configuration problem, everything kept, next round in retry.max_ms.
    assert!(wait_until(Duration::from_secs(10), || {
        b.status().connectivity == CONNECTIVITY_OFFLINE && b.status().next_retry_in_ms > 10_000
    }));
    let n = srv.hits().len();
    // Bisecting 64 records to the first single one takes 7 requests, its sibling 1, the
    // probe 1; bisecting the whole batch would take 127.
    assert!(n <= 12, "{n} requests in one round");
    let st = b.status();
    assert_eq!((st.pending_records, st.dead_lettered_total), (200, 0));
    let _ = b.close(Duration::ZERO);
}
