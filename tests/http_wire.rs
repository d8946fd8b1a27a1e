//! docs/reference.md, the wire against a real HTTP server on 127.0.0.1, through the whole Buffer: the request as it
//! travels (json, ndjson, gzip, zstd, headers) and how records are batched.

mod common;
use common::*;
use edgebuf::{Buffer, Config};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

fn cfg(dir: &std::path::Path, url: &str, extra: &[(&str, &str)]) -> Config {
    let mut c = config(dir, url);
    c.set("http.proxy", "none").unwrap();
    for (k, v) in extra {
        c.set(k, v).unwrap();
    }
    c
}

const RECORDS: [&str; 3] = [
    r#"{"i":0,"label":"cat"}"#,
    r#"{ "i" : 1, "scores": [0.10, 2e-3, 1.0E+2], "z":null, "a":true }"#,
    r#"[1,"two",{"three":3}]"#,
];

fn log_three(b: &Buffer) {
    for r in RECORDS {
        b.log(r.as_bytes()).unwrap();
    }
    b.flush(Duration::from_secs(5)).unwrap();
}

/// The envelope of docs/reference.md, the wire with `data` verbatim.
fn check_envelopes(b: &Buffer, plain: &[u8], source: &str) {
    let env = envelopes(plain);
    assert_eq!(env.len(), 3);
    for (k, e) in env.iter().enumerate() {
        let seq = k as u64 + 1;
        let keys: Vec<&str> = e.as_object().unwrap().keys().map(|s| s.as_str()).collect();
        assert_eq!(keys.len(), 5, "{e}");
        assert_eq!(e["id"], format!("{}-{seq}", b.instance()));
        assert_eq!(e["seq"], seq);
        assert_eq!(e["source"], source);
        assert!(e["ts_ms"].as_i64().unwrap() > 1_600_000_000_000);
    }
    let text = String::from_utf8(plain.to_vec()).unwrap();
    for r in RECORDS {
        assert!(
            text.contains(&format!(",\"data\":{r}}}")),
            "{r} not verbatim in {text}"
        );
    }
}

#[test]
fn ndjson_one_envelope_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::always(200);
    let b = Buffer::open(&cfg(dir.path(), &srv.url(), &[("format", "ndjson")]), None).unwrap();
    log_three(&b);
    let hits = srv.hits();
    assert_eq!(hits.len(), 1);
    let h = &hits[0];
    assert_eq!(h.header("content-type"), Some("application/x-ndjson"));
    assert_eq!(h.header("content-encoding"), None);
    assert!(h.body.ends_with(b"\n"));
    let lines: Vec<&[u8]> = h.body[..h.body.len() - 1].split(|&c| c == b'\n').collect();
    assert_eq!(lines.len(), 3);
    for (k, line) in lines.iter().enumerate() {
        let e: serde_json::Value = serde_json::from_slice(line).expect("each line is JSON");
        assert_eq!(e["seq"], k as u64 + 1);
    }
    check_envelopes(&b, &h.body, "test-device");
    b.close(Duration::from_secs(1)).unwrap();
}

#[test]
fn gzip_body_gunzips_to_the_json_array() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::always(200);
    let b = Buffer::open(
        &cfg(dir.path(), &srv.url(), &[("http.compression", "gzip")]),
        None,
    )
    .unwrap();
    log_three(&b);
    let h = &srv.hits()[0];
    assert_eq!(h.header("content-encoding"), Some("gzip"));
    assert_eq!(h.header("content-type"), Some("application/json"));
    assert!(h.body.starts_with(&[0x1f, 0x8b]), "a gzip stream");
    let plain = h.plain();
    assert!(plain.starts_with(b"[") && plain.ends_with(b"]"));
    let v: serde_json::Value = serde_json::from_slice(&plain).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 3);
    check_envelopes(&b, &plain, "test-device");
    b.close(Duration::from_secs(1)).unwrap();

    // gzip and ndjson together.
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::always(200);
    let c = cfg(
        dir.path(),
        &srv.url(),
        &[("http.compression", "gzip"), ("format", "ndjson")],
    );
    let b = Buffer::open(&c, None).unwrap();
    log_three(&b);
    let h = &srv.hits()[0];
    assert_eq!(h.header("content-encoding"), Some("gzip"));
    assert_eq!(h.header("content-type"), Some("application/x-ndjson"));
    assert_eq!(h.plain().iter().filter(|&&c| c == b'\n').count(), 3);
    check_envelopes(&b, &h.plain(), "test-device");
    b.close(Duration::from_secs(1)).unwrap();
}

/// The records of a run, by seq, as the server accepted them (each exactly once).
fn accepted_data(srv: &Server) -> Vec<String> {
    let env = srv.delivered();
    let mut by_seq: Vec<(u64, String)> = env
        .iter()
        .map(|e| (e["seq"].as_u64().unwrap(), e["data"].to_string()))
        .collect();
    by_seq.sort();
    let n = by_seq.len();
    by_seq.dedup_by_key(|(seq, _)| *seq);
    assert_eq!(by_seq.len(), n, "a record accepted twice");
    by_seq.into_iter().map(|(_, d)| d).collect()
}

#[test]
fn zstd_delivers_the_same_records_as_none() {
    const N: usize = 400;
    const MAX_BYTES: usize = 8192;
    let data: Vec<String> = (0..N)
        .map(|i| {
            format!(
                r#"{{"model":"mobilenet-v3-small","frame":{i},"scores":[0.{i:03},0.5],"argmax":{},"label":"cat"}}"#,
                i % 5
            )
        })
        .collect();
    for format in ["json", "ndjson"] {
        let mut got = Vec::new();
        for compression in ["none", "zstd"] {
            let dir = tempfile::tempdir().unwrap();
            // The first request is refused with 413: the batch is split as without compression.
            let srv = Server::script(vec![Act::status(413)]);
            let c = cfg(
                dir.path(),
                &srv.url(),
                &[
                    ("http.compression", compression),
                    ("format", format),
                    ("batch.max_bytes", &MAX_BYTES.to_string()),
                    // Full batches from the first one on: the records are logged within it.
                    ("batch.linger_ms", "500"),
                ],
            );
            let b = Buffer::open(&c, None).unwrap();
            for d in &data {
                b.log(d.as_bytes()).unwrap();
            }
            b.flush(Duration::from_secs(10)).unwrap();
            let hits = srv.hits();
            assert_eq!(hits[0].status, 413, "{compression}");
            let first = hits[0].envelopes().len();
            let second = hits[1].envelopes().len();
            assert!(second < first, "{compression}: {first} then {second}");
            for h in &hits {
                let want = if compression == "zstd" {
                    Some("zstd")
                } else {
                    None
                };
                assert_eq!(h.header("content-encoding"), want);
                // Batches are sized on the uncompressed body.
                assert!(h.plain().len() <= MAX_BYTES, "{}", h.plain().len());
                if compression == "zstd" {
                    assert!(h.body.len() * 2 < h.plain().len(), "{}", h.body.len());
                    // Every attempt of a batch carries an idempotency key.
                    assert_eq!(h.header_count("idempotency-key"), 1);
                }
            }
            got.push(accepted_data(&srv));
            b.close(Duration::from_secs(1)).unwrap();
        }
        assert_eq!(got[0].len(), N, "{format}");
        assert_eq!(got[0], got[1], "{format}: zstd delivered other records");
    }
}

#[test]
fn headers_reach_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::always(200);
    let c = cfg(
        dir.path(),
        &srv.url(),
        &[
            ("source.id", "cam-07"),
            ("http.header.X-Api-Key", "k-3f9c"),
            ("http.header.X-Tenant", "acme"),
        ],
    );
    let b = Buffer::open(&c, None).unwrap();
    log_three(&b);
    let h = &srv.hits()[0];
    assert_eq!(h.line, "POST /ingest HTTP/1.1");
    assert_eq!(h.header("x-api-key"), Some("k-3f9c"));
    assert_eq!(h.header("x-tenant"), Some("acme"));
    assert_eq!(
        h.header("user-agent"),
        Some(format!("edgebuf/{}", env!("CARGO_PKG_VERSION")).as_str())
    );
    assert_eq!(h.header("x-edgebuf-source"), Some("cam-07"));
    assert_eq!(h.header("content-type"), Some("application/json"));
    assert_eq!(
        h.header("idempotency-key"),
        Some(format!("{}-1-3-3", b.instance()).as_str())
    );
    assert_eq!(
        h.header("content-length"),
        Some(h.body.len().to_string().as_str())
    );
    check_envelopes(&b, &h.body, "cam-07");
    b.close(Duration::from_secs(1)).unwrap();
}

#[test]
fn batches_hold_at_most_batch_max_records() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::always(200);
    let c = cfg(dir.path(), &srv.url(), &[("batch.max_records", "50")]);
    let b = Buffer::open(&c, None).unwrap();
    for i in 0..500 {
        b.log(format!("{{\"i\":{i}}}").as_bytes()).unwrap();
    }
    b.flush(Duration::from_secs(10)).unwrap();
    assert_eq!(seqs(&srv.delivered()), (1..=500).collect::<Vec<_>>());
    let hits = srv.hits();
    assert!(hits.len() >= 10);
    let mut keys = BTreeSet::new();
    for h in &hits {
        let s = h.seqs();
        assert!(!s.is_empty() && s.len() <= 50, "{} records", s.len());
        let key = format!("{}-{}-{}-{}", b.instance(), s[0], s[s.len() - 1], s.len());
        assert_eq!(h.header("idempotency-key"), Some(key.as_str()));
        assert!(keys.insert(key));
    }
    assert_eq!(b.status().failed_attempts_total, 0);
    b.close(Duration::from_secs(1)).unwrap();
}

#[test]
fn a_partial_batch_goes_out_after_the_linger() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::always(200);
    let c = cfg(
        dir.path(),
        &srv.url(),
        &[("batch.linger_ms", "300"), ("commit.interval_ms", "100")],
    );
    let b = Buffer::open(&c, None).unwrap();
    let t = Instant::now();
    for i in 0..3 {
        b.log(format!("{{\"i\":{i}}}").as_bytes()).unwrap();
    }
    let hits = srv.wait_hits(1, Duration::from_secs(3));
    assert_eq!(hits.len(), 1);
    let after = hits[0].at - t;
    // It waited for a fuller batch, but not longer than linger + commit interval + margin.
    assert!(after >= Duration::from_millis(280), "sent after {after:?}");
    assert!(
        after <= Duration::from_millis(300 + 100 + 400),
        "sent after {after:?}"
    );
    assert_eq!(hits[0].seqs(), [1, 2, 3]);
    b.close(Duration::from_secs(1)).unwrap();
}

#[test]
fn an_idle_buffer_makes_no_requests() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::always(200);
    let b = Buffer::open(&cfg(dir.path(), &srv.url(), &[]), None).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(srv.count(), 0, "requests with nothing pending");
    b.log(b"{}").unwrap();
    b.flush(Duration::from_secs(5)).unwrap();
    assert_eq!(srv.count(), 1);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(srv.count(), 1, "requests with nothing pending");
    assert_eq!(b.status().pending_records, 0);
    b.close(Duration::from_secs(1)).unwrap();
    assert_eq!(srv.count(), 1);
}

/// Once flush returns OK, status already counts the records as delivered.
#[test]
fn status_is_current_when_flush_returns() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::always(200);
    let b = Buffer::open(
        &cfg(dir.path(), &srv.url(), &[("commit.interval_ms", "1")]),
        None,
    )
    .unwrap();
    for i in 0..300u64 {
        b.log(b"{}").unwrap();
        b.flush(Duration::from_secs(5)).unwrap();
        let st = b.status();
        assert_eq!(
            (st.pending_records, st.delivered_total, st.connectivity),
            (0, i + 1, edgebuf::status::CONNECTIVITY_ONLINE),
            "after flush {i}: {st:?}"
        );
    }
    b.close(Duration::from_secs(1)).unwrap();
}

/// Any 2xx settles the batch (204 has no body).
#[test]
fn any_2xx_settles_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(|hit| Act::status([201, 202, 204, 299][hit.n % 4]));
    let b = Buffer::open(&cfg(dir.path(), &srv.url(), &[]), None).unwrap();
    for i in 0..4 {
        b.log(format!("{{\"i\":{i}}}").as_bytes()).unwrap();
        b.flush(Duration::from_secs(5)).unwrap();
    }
    assert_eq!(seqs(&srv.delivered()), [1, 2, 3, 4]);
    let st = b.status();
    assert_eq!((st.delivered_total, st.failed_attempts_total), (4, 0));
    assert_eq!(st.last_http_status, 299);
    assert_eq!(srv.conns(), 1, "the connection is kept alive");
    b.close(Duration::from_secs(1)).unwrap();
}
