//! docs/reference.md, the wire over HTTPS, through the whole Buffer, against a rustls server on 127.0.0.1 with
//! rcgen certificates: tls.ca_file, a wrong CA (records kept), mutual TLS.

mod common;
use common::*;
use edgebuf::events::EVENT_OFFLINE;
use edgebuf::status::CONNECTIVITY_OFFLINE;
use edgebuf::{Buffer, Code, Config};
use std::path::Path;
use std::time::Duration;

fn cfg(dir: &Path, url: &str, extra: &[(&str, &str)]) -> Config {
    let mut c = config(dir, url);
    c.set("http.proxy", "none").unwrap();
    for (k, v) in extra {
        c.set(k, v).unwrap();
    }
    c
}

fn log_n(b: &Buffer, n: u32) {
    for i in 0..n {
        b.log(format!("{{\"i\":{i}}}").as_bytes()).unwrap();
    }
}

#[test]
fn ca_file_delivers_and_a_wrong_ca_keeps_records_pending() {
    let pki = Pki::new();
    let srv = Server::start_tls(pki.server_config(false), |_| Act::status(200));
    assert!(srv.url().starts_with("https://127.0.0.1:"));
    let files = tempfile::tempdir().unwrap();
    let good_ca = write_file(files.path(), "ca.pem", &pki.ca_pem);
    let wrong_ca = write_file(files.path(), "other.pem", &other_ca_pem());

    // The right CA.
    let dir = tempfile::tempdir().unwrap();
    let b = Buffer::open(
        &cfg(dir.path(), &srv.url(), &[("tls.ca_file", &good_ca)]),
        None,
    )
    .unwrap();
    log_n(&b, 5);
    b.flush(Duration::from_secs(5)).unwrap();
    assert_eq!(seqs(&srv.delivered()), (1..=5).collect::<Vec<_>>());
    assert_eq!(srv.hits()[0].line, "POST /ingest HTTP/1.1");
    b.close(Duration::from_secs(1)).unwrap();

    // A wrong CA: the handshake fails, which is a retry; nothing is lost or dead-lettered.
    let dir = tempfile::tempdir().unwrap();
    let ev = EventLog::new();
    let b = Buffer::open(
        &cfg(dir.path(), &srv.url(), &[("tls.ca_file", &wrong_ca)]),
        ev.callback(),
    )
    .unwrap();
    log_n(&b, 5);
    assert!(wait_until(Duration::from_secs(5), || b
        .status()
        .failed_attempts_total
        >= 3));
    let st = b.status();
    assert_eq!(st.pending_records, 5, "{st:?}");
    assert_eq!((st.dead_letter_records, st.dead_lettered_total), (0, 0));
    assert_eq!((st.delivered_total, st.last_http_status), (0, 0));
    assert_eq!(st.connectivity, CONNECTIVITY_OFFLINE);
    assert_eq!(
        srv.count(),
        5 / 5,
        "only the first buffer's request got through"
    );
    assert!(wait_until(Duration::from_secs(1), || !ev
        .of(EVENT_OFFLINE)
        .is_empty()));
    let off = &ev.of(EVENT_OFFLINE)[0];
    assert!(off.message.contains("TLS"), "{off:?}");
    assert_eq!(
        b.close(Duration::from_millis(100)).unwrap_err().code(),
        Code::Timeout
    );

    // Reopened with the right CA, the kept records arrive.
    let b = Buffer::open(
        &cfg(dir.path(), &srv.url(), &[("tls.ca_file", &good_ca)]),
        None,
    )
    .unwrap();
    assert_eq!(b.status().pending_at_open, 5);
    b.flush(Duration::from_secs(5)).unwrap();
    let hits = srv.hits();
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[1].seqs(), (1..=5).collect::<Vec<_>>());
    assert!(hits[1].envelopes()[0]["id"]
        .as_str()
        .unwrap()
        .starts_with(b.instance()));
    b.close(Duration::from_secs(1)).unwrap();
}

#[test]
fn mutual_tls_with_a_client_certificate() {
    let pki = Pki::new();
    let srv = Server::start_tls(pki.server_config(true), |_| Act::status(200));
    let files = tempfile::tempdir().unwrap();
    let ca = write_file(files.path(), "ca.pem", &pki.ca_pem);
    let client = pki.client("device-7");
    let cert = write_file(files.path(), "client.pem", &client.cert_pem);
    let key = write_file(files.path(), "client.key", &client.key_pem);

    // Without a client certificate the server refuses the handshake: records stay pending.
    let dir = tempfile::tempdir().unwrap();
    let b = Buffer::open(&cfg(dir.path(), &srv.url(), &[("tls.ca_file", &ca)]), None).unwrap();
    log_n(&b, 3);
    assert!(wait_until(Duration::from_secs(5), || b
        .status()
        .failed_attempts_total
        >= 2));
    let st = b.status();
    assert_eq!(
        (st.pending_records, st.dead_letter_records),
        (3, 0),
        "{st:?}"
    );
    assert_eq!(srv.count(), 0);
    assert_eq!(
        b.close(Duration::from_millis(100)).unwrap_err().code(),
        Code::Timeout
    );

    // With it, they arrive.
    let c = cfg(
        dir.path(),
        &srv.url(),
        &[
            ("tls.ca_file", &ca),
            ("tls.cert_file", &cert),
            ("tls.key_file", &key),
        ],
    );
    let b = Buffer::open(&c, None).unwrap();
    log_n(&b, 2);
    b.flush(Duration::from_secs(5)).unwrap();
    assert_eq!(seqs(&srv.delivered()), (1..=5).collect::<Vec<_>>());
    let st = b.status();
    assert_eq!(
        (st.pending_records, st.failed_attempts_total),
        (0, 0),
        "{st:?}"
    );
    b.close(Duration::from_secs(1)).unwrap();
}
