//! End-to-end delivery through the Rust API to a real HTTP server on 127.0.0.1.

mod common;
use common::*;
use edgebuf::{Buffer, Code};
use std::time::Duration;

#[test]
fn delivers_every_record_in_order_with_the_envelope() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start();
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
    let req = &rx.requests.lock().unwrap()[0];
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
    let port = dead_port();
    let url = format!("http://127.0.0.1:{port}/ingest");
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
    let rx = Receiver::start_on(port);
    let b = Buffer::open(&config(dir.path(), &url), None).unwrap();
    assert_eq!(b.status().pending_at_open, 100);
    b.flush(Duration::from_secs(10)).unwrap();
    assert_eq!(seqs(&rx.delivered()), (1..=100).collect::<Vec<_>>());
    b.log(b"{\"after\":true}").unwrap();
    b.flush(Duration::from_secs(10)).unwrap();
    assert_eq!(rx.delivered().last().unwrap()["seq"], 101);
    b.close(Duration::from_secs(1)).unwrap();
}
