//! OTLP/HTTP logs (docs/reference.md, the wire, OTLP) against the scripted HTTP server on
//! 127.0.0.1, through the whole Buffer: the body of both encodings decodes to the mapping, a
//! `partialSuccess` answer counts and fires REJECTED, batches stay within `batch.max_bytes`, and
//! `sent_bytes_total` counts what went on the wire.

mod common;
use common::otlp_json::{check_resource_and_scope, from_otlp_json, normalised};
use common::*;
use edgebuf::events::EVENT_REJECTED;
use edgebuf::{Buffer, Config};
use prost::Message;
use std::time::Duration;

/// The messages of opentelemetry-proto that the test reads, written here independently of the
/// library's (field numbers from logs.proto, common.proto, resource.proto, logs_service.proto).
mod pb {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Request {
        #[prost(message, repeated, tag = "1")]
        pub resource_logs: Vec<ResourceLogs>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResourceLogs {
        #[prost(message, optional, tag = "1")]
        pub resource: Option<Resource>,
        #[prost(message, repeated, tag = "2")]
        pub scope_logs: Vec<ScopeLogs>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Resource {
        #[prost(message, repeated, tag = "1")]
        pub attributes: Vec<KeyValue>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ScopeLogs {
        #[prost(message, optional, tag = "1")]
        pub scope: Option<Scope>,
        #[prost(message, repeated, tag = "2")]
        pub log_records: Vec<LogRecord>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Scope {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub version: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LogRecord {
        #[prost(fixed64, tag = "1")]
        pub time_unix_nano: u64,
        #[prost(int32, tag = "2")]
        pub severity_number: i32,
        #[prost(message, optional, tag = "5")]
        pub body: Option<AnyValue>,
        #[prost(message, repeated, tag = "6")]
        pub attributes: Vec<KeyValue>,
        #[prost(fixed64, tag = "11")]
        pub observed_time_unix_nano: u64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AnyValue {
        #[prost(string, optional, tag = "1")]
        pub string_value: Option<String>,
        #[prost(bool, optional, tag = "2")]
        pub bool_value: Option<bool>,
        #[prost(int64, optional, tag = "3")]
        pub int_value: Option<i64>,
        #[prost(double, optional, tag = "4")]
        pub double_value: Option<f64>,
        #[prost(message, optional, tag = "5")]
        pub array_value: Option<ArrayValue>,
        #[prost(message, optional, tag = "6")]
        pub kvlist_value: Option<KeyValueList>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ArrayValue {
        #[prost(message, repeated, tag = "1")]
        pub values: Vec<AnyValue>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct KeyValueList {
        #[prost(message, repeated, tag = "1")]
        pub values: Vec<KeyValue>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct KeyValue {
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<AnyValue>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Response {
        #[prost(message, optional, tag = "1")]
        pub partial_success: Option<PartialSuccess>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PartialSuccess {
        #[prost(int64, tag = "1")]
        pub rejected_log_records: i64,
        #[prost(string, tag = "2")]
        pub error_message: String,
    }

    /// The JSON value an AnyValue stands for (integers and doubles as serde_json numbers).
    pub fn to_json(v: &AnyValue) -> serde_json::Value {
        use serde_json::Value as J;
        if let Some(s) = &v.string_value {
            J::from(s.clone())
        } else if let Some(b) = v.bool_value {
            J::from(b)
        } else if let Some(i) = v.int_value {
            J::from(i)
        } else if let Some(d) = v.double_value {
            J::from(d)
        } else if let Some(a) = &v.array_value {
            J::Array(a.values.iter().map(to_json).collect())
        } else if let Some(kv) = &v.kvlist_value {
            J::Object(
                kv.values
                    .iter()
                    .map(|k| (k.key.clone(), k.value.as_ref().map_or(J::Null, to_json)))
                    .collect(),
            )
        } else {
            J::Null
        }
    }
}

fn cfg(dir: &std::path::Path, url: &str, extra: &[(&str, &str)]) -> Config {
    let mut c = config(dir, url);
    c.set("http.proxy", "none").unwrap();
    c.set("otlp.resource.deployment.environment", "test")
        .unwrap();
    for (k, v) in extra {
        c.set(k, v).unwrap();
    }
    c
}

const RECORDS: [&str; 5] = [
    r#"{"i":0,"label":"cat","box":[1,2,3.5],"ok":true,"none":null}"#,
    r#"[1,"two",{"three":3}]"#,
    "\"just a string\"",
    "12345678901234567890",
    "-7",
];

fn logged(i: usize) -> serde_json::Value {
    normalised(&serde_json::from_str(RECORDS[i]).unwrap())
}

fn log_all(b: &Buffer) {
    for r in RECORDS {
        b.log(r.as_bytes()).unwrap();
    }
    b.flush(Duration::from_secs(10)).unwrap();
}

#[test]
fn otlp_json_body_follows_the_mapping() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::always(200);
    let b = Buffer::open(
        &cfg(dir.path(), &srv.url(), &[("format", "otlp_json")]),
        None,
    )
    .unwrap();
    log_all(&b);
    let hits = srv.hits();
    assert_eq!(hits.len(), 1);
    let h = &hits[0];
    assert_eq!(h.header("content-type"), Some("application/json"));
    assert_eq!(
        h.header("idempotency-key"),
        Some(format!("{}-1-5-5", b.instance()).as_str())
    );
    let v: serde_json::Value = serde_json::from_slice(&h.plain()).expect("JSON");
    let lrs = check_resource_and_scope(&v, "test-device", "test");
    assert_eq!(lrs.len(), RECORDS.len());
    for (i, lr) in lrs.iter().enumerate() {
        let seq = i as u64 + 1;
        let t: u64 = lr["timeUnixNano"].as_str().unwrap().parse().unwrap();
        assert!(
            t > 1_600_000_000_000_000_000 && t.is_multiple_of(1_000_000),
            "{t}"
        );
        assert_eq!(lr["observedTimeUnixNano"], lr["timeUnixNano"]);
        assert_eq!(lr["severityNumber"], 9);
        assert_eq!(
            lr["attributes"],
            serde_json::json!([
                {"key": "edgebuf.id", "value": {"stringValue": format!("{}-{seq}", b.instance())}},
                {"key": "edgebuf.seq", "value": {"intValue": seq.to_string()}},
            ])
        );
        assert_eq!(from_otlp_json(&lr["body"]), logged(i), "record {i}");
    }
    let st = b.status();
    assert_eq!((st.delivered_total, st.rejected_total), (5, 0));
    assert_eq!(st.sent_bytes_total, h.body.len() as u64);
    assert_eq!(st.budget_left_bytes, u64::MAX);
    b.close(Duration::from_secs(1)).unwrap();
}

#[test]
fn otlp_proto_gzip_body_decodes_to_the_mapping() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::always(200);
    let b = Buffer::open(
        &cfg(
            dir.path(),
            &srv.url(),
            &[
                ("format", "otlp_proto"),
                ("http.compression", "gzip"),
                ("otlp.resource.service.name", "cams"),
            ],
        ),
        None,
    )
    .unwrap();
    log_all(&b);
    let hits = srv.hits();
    assert_eq!(hits.len(), 1);
    let h = &hits[0];
    assert_eq!(h.header("content-type"), Some("application/x-protobuf"));
    assert_eq!(h.header("content-encoding"), Some("gzip"));
    let req = pb::Request::decode(&h.plain()[..]).expect("an ExportLogsServiceRequest");
    assert_eq!(req.resource_logs.len(), 1);
    let rl = &req.resource_logs[0];
    let attrs: Vec<(String, serde_json::Value)> = rl
        .resource
        .as_ref()
        .unwrap()
        .attributes
        .iter()
        .map(|kv| (kv.key.clone(), pb::to_json(kv.value.as_ref().unwrap())))
        .collect();
    assert_eq!(
        attrs,
        vec![
            ("service.name".to_string(), "cams".into()),
            ("edgebuf.source".to_string(), "test-device".into()),
            ("deployment.environment".to_string(), "test".into()),
        ]
    );
    let sl = &rl.scope_logs[0];
    let scope = sl.scope.as_ref().unwrap();
    assert_eq!(
        (scope.name.as_str(), scope.version.as_str()),
        ("edgebuf", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(sl.log_records.len(), RECORDS.len());
    for (i, lr) in sl.log_records.iter().enumerate() {
        let seq = i as i64 + 1;
        assert!(lr.time_unix_nano > 1_600_000_000_000_000_000);
        assert_eq!(lr.observed_time_unix_nano, lr.time_unix_nano);
        assert_eq!(lr.severity_number, 9);
        let a: Vec<(String, serde_json::Value)> = lr
            .attributes
            .iter()
            .map(|kv| (kv.key.clone(), pb::to_json(kv.value.as_ref().unwrap())))
            .collect();
        assert_eq!(
            a,
            vec![
                (
                    "edgebuf.id".to_string(),
                    format!("{}-{seq}", b.instance()).into()
                ),
                ("edgebuf.seq".to_string(), seq.into()),
            ]
        );
        assert_eq!(
            pb::to_json(lr.body.as_ref().unwrap()),
            logged(i),
            "record {i}"
        );
    }
    // sent_bytes_total counts the body as sent: compressed.
    assert_eq!(b.status().sent_bytes_total, h.body.len() as u64);
    b.close(Duration::from_secs(1)).unwrap();
}

/// A complete HTTP answer with this status, content type and body.
fn answer(status: u16, content_type: &str, body: &[u8]) -> Act {
    let mut raw = format!(
        "HTTP/1.1 {status} OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    Act::Raw(raw)
}

#[test]
fn partial_success_settles_counts_and_fires_rejected() {
    for proto in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (format, ct, body) = if proto {
            let resp = pb::Response {
                partial_success: Some(pb::PartialSuccess {
                    rejected_log_records: 2,
                    error_message: "2 log records too old\n\u{e9}".into(),
                }),
            };
            ("otlp_proto", "application/x-protobuf", resp.encode_to_vec())
        } else {
            (
                "otlp_json",
                "application/json",
                format!(
                    r#"{{"partialSuccess":{{"rejectedLogRecords":"2","errorMessage":"2 log records too old {}"}}}}"#,
                    "x".repeat(300)
                )
                .into_bytes(),
            )
        };
        let srv = Server::start(move |_| answer(200, ct, &body));
        let events = EventLog::new();
        let b = Buffer::open(
            &cfg(dir.path(), &srv.url(), &[("format", format)]),
            events.callback(),
        )
        .unwrap();
        log_all(&b);
        let st = b.status();
        assert_eq!(st.pending_records, 0, "{format}: the batch is settled");
        assert_eq!(st.delivered_total, 5, "{format}");
        assert_eq!(st.rejected_total, 2, "{format}");
        assert_eq!(st.failed_attempts_total, 0, "{format}");
        assert_eq!(srv.count(), 1, "{format}: not sent again");
        let json: serde_json::Value = serde_json::from_str(&b.status_json()).unwrap();
        assert_eq!(json["rejected_total"], 2);
        assert!(wait_until(Duration::from_secs(5), || !events
            .of(EVENT_REJECTED)
            .is_empty()));
        let ev = &events.of(EVENT_REJECTED)[0];
        assert_eq!((ev.count, ev.http_status), (2, 200), "{format}");
        assert!(
            ev.message.starts_with("2 log records too old"),
            "{}",
            ev.message
        );
        assert!(ev.message.len() <= 200, "{}", ev.message.len());
        assert!(
            ev.message.bytes().all(|c| (0x20..0x7f).contains(&c)),
            "{:?}",
            ev.message
        );
        b.close(Duration::from_secs(1)).unwrap();
    }
}

#[test]
fn an_empty_or_zero_partial_success_rejects_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(|h: &Hit| {
        if h.n == 0 {
            answer(200, "application/json", br#"{"partialSuccess":{}}"#)
        } else {
            answer(
                200,
                "application/json",
                br#"{"partialSuccess":{"rejectedLogRecords":"0","errorMessage":"warning only"}}"#,
            )
        }
    });
    let events = EventLog::new();
    let b = Buffer::open(
        &cfg(dir.path(), &srv.url(), &[("format", "otlp_json")]),
        events.callback(),
    )
    .unwrap();
    b.log(b"1").unwrap();
    b.flush(Duration::from_secs(5)).unwrap();
    b.log(b"2").unwrap();
    b.flush(Duration::from_secs(5)).unwrap();
    let st = b.status();
    assert_eq!((st.delivered_total, st.rejected_total), (2, 0));
    b.close(Duration::from_secs(1)).unwrap();
    assert!(events.of(EVENT_REJECTED).is_empty());
}

/// Batches stay within batch.max_bytes (resource and scope included) in both encodings, and
/// every record arrives once, in order.
#[test]
fn batches_stay_within_max_bytes() {
    for format in ["otlp_json", "otlp_proto"] {
        let dir = tempfile::tempdir().unwrap();
        let srv = Server::always(200);
        let b = Buffer::open(
            &cfg(
                dir.path(),
                &srv.url(),
                &[
                    ("format", format),
                    ("batch.max_bytes", "2048"),
                    ("batch.linger_ms", "200"),
                ],
            ),
            None,
        )
        .unwrap();
        for i in 0..200 {
            b.log(format!(r#"{{"i":{i},"v":[{i},{i}.5,"x{i}"],"n":null}}"#).as_bytes())
                .unwrap();
        }
        b.flush(Duration::from_secs(20)).unwrap();
        let hits = srv.hits();
        assert!(hits.len() > 5, "{format}: {} requests", hits.len());
        let mut seqs = Vec::new();
        let mut sent = 0;
        for h in &hits {
            assert!(h.body.len() <= 2048, "{format}: a body of {}", h.body.len());
            sent += h.body.len() as u64;
            if format == "otlp_json" {
                let v: serde_json::Value = serde_json::from_slice(&h.body).unwrap();
                for lr in v["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
                    .as_array()
                    .unwrap()
                {
                    seqs.push(
                        lr["attributes"][1]["value"]["intValue"]
                            .as_str()
                            .unwrap()
                            .parse::<u64>()
                            .unwrap(),
                    );
                }
            } else {
                let req = pb::Request::decode(&h.body[..]).unwrap();
                for lr in &req.resource_logs[0].scope_logs[0].log_records {
                    seqs.push(lr.attributes[1].value.as_ref().unwrap().int_value.unwrap() as u64);
                }
            }
        }
        assert_eq!(seqs, (1..=200).collect::<Vec<u64>>(), "{format}");
        assert_eq!(b.status().sent_bytes_total, sent, "{format}");
        b.close(Duration::from_secs(1)).unwrap();
    }
}

/// Retries count every attempt's bytes; the same batch is sent again with the same key.
#[test]
fn retries_send_the_same_otlp_batch_and_count_its_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::script(vec![Act::status(503), Act::status(200)]);
    let b = Buffer::open(
        &cfg(dir.path(), &srv.url(), &[("format", "otlp_proto")]),
        None,
    )
    .unwrap();
    log_all(&b);
    let hits = srv.hits();
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[0].body, hits[1].body);
    assert_eq!(
        hits[0].header("idempotency-key"),
        hits[1].header("idempotency-key")
    );
    let st = b.status();
    assert_eq!(st.failed_attempts_total, 1);
    assert_eq!(st.sent_bytes_total, 2 * hits[0].body.len() as u64);
    b.close(Duration::from_secs(1)).unwrap();
}

/// 413 splits an OTLP batch in halves, and 400 bisects it to dead-letter the one record the
/// endpoint refuses, as in every format.
#[test]
fn split_and_bisection_work_on_otlp_batches() {
    let records_in = |h: &Hit| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_slice(&h.body).unwrap();
        v["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
            .as_array()
            .unwrap()
            .iter()
            .map(|lr| lr["body"].to_string())
            .collect()
    };
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(move |h: &Hit| {
        let recs = records_in(h);
        if recs.len() > 2 {
            Act::status(413)
        } else if recs.iter().any(|r| r.contains("poison")) {
            Act::status(400)
        } else {
            Act::status(200)
        }
    });
    let b = Buffer::open(
        &cfg(
            dir.path(),
            &srv.url(),
            &[("format", "otlp_json"), ("batch.linger_ms", "300")],
        ),
        None,
    )
    .unwrap();
    for r in ["1", "2", "\"poison\"", "4"] {
        b.log(r.as_bytes()).unwrap();
    }
    b.flush(Duration::from_secs(10)).unwrap();
    let st = b.status();
    assert_eq!(st.delivered_total, 3);
    assert_eq!(st.dead_lettered_total, 1);
    assert_eq!(st.pending_records, 0);
    let hits = srv.hits();
    assert_eq!(hits[0].status, 413);
    let keys: Vec<&str> = hits
        .iter()
        .filter_map(|h| h.header("idempotency-key"))
        .collect();
    assert!(
        keys.contains(&format!("{}-1-2-2", b.instance()).as_str()),
        "{keys:?}"
    );
    b.close(Duration::from_secs(1)).unwrap();
}
