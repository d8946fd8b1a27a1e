//! A transport without sockets for the delivery unit tests, and a worker over a real buffer
//! file that uses it.

use super::{Transport, Worker};
use crate::config::Config;
use crate::engine::queue::Shared;
use crate::events::Events;
use crate::http::{Attempt, Outcome, RecordRef};
use crate::store::{NewRecord, Store};
use std::sync::Arc;

type Answer = Box<dyn FnMut(&[u64]) -> Outcome + Send>;

/// Answers `refused` to the requests `cond` picks, 200 to the others.
pub fn refuse_if(
    cond: impl Fn(&[u64]) -> bool + Send + 'static,
    refused: Outcome,
) -> impl FnMut(&[u64]) -> Outcome + Send + 'static {
    move |seqs| {
        if cond(seqs) {
            refused
        } else {
            Outcome::Delivered
        }
    }
}

/// A transport without sockets: answers each request with `answer(seqs)` and keeps the
/// seqs of every request.
pub struct Fake {
    answer: Answer,
    pub sent: Vec<Vec<u64>>,
}

impl Transport for Fake {
    /// The seqs of the request, and its body length (20 bytes per record).
    type Request = (Vec<u64>, u64);
    fn encode(&mut self, records: &[RecordRef]) -> Result<(Vec<u64>, u64), Attempt> {
        let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
        let len = 20 * seqs.len() as u64;
        Ok((seqs, len))
    }
    fn wire_len(&self, request: &(Vec<u64>, u64)) -> u64 {
        request.1
    }
    fn post(&mut self, (seqs, len): &(Vec<u64>, u64)) -> Attempt {
        let outcome = (self.answer)(seqs);
        self.sent.push(seqs.clone());
        let http_status = match outcome {
            Outcome::Delivered => 200,
            Outcome::Split => 413,
            Outcome::Bisect => 400,
            Outcome::Config => 401,
            Outcome::Retry => 503,
            Outcome::Timeout => 0,
        };
        Attempt {
            outcome,
            http_status,
            retry_after: None,
            detail: format!("answered {http_status}"),
            sent_bytes: *len,
            rejected: None,
        }
    }
    fn resends(&self) -> u64 {
        0
    }
    fn costing(&self) -> crate::http::Costing {
        crate::http::Costing::Envelope {
            source_json_len: "\"test\"".len(),
        }
    }
    fn endpoint(&self) -> &str {
        "fake"
    }
}

/// A worker over a buffer file holding records 1..=`records` (batches of at most
/// `max_records`), whose requests `answer` answers.
pub fn worker(
    dir: &std::path::Path,
    records: u64,
    max_records: u64,
    answer: impl FnMut(&[u64]) -> Outcome + Send + 'static,
) -> Worker<Fake> {
    worker_with(dir, records, max_records, &[], answer)
}

/// [`worker`], with these keys set as well.
pub fn worker_with(
    dir: &std::path::Path,
    records: u64,
    max_records: u64,
    keys: &[(&str, &str)],
    answer: impl FnMut(&[u64]) -> Outcome + Send + 'static,
) -> Worker<Fake> {
    let mut cfg = Config::new();
    for (k, v) in keys {
        cfg.set(k, v).unwrap();
    }
    let path = dir.join("buf.db");
    cfg.set("path", path.to_str().unwrap()).unwrap();
    cfg.set("endpoint", "http://127.0.0.1:9/ingest").unwrap();
    cfg.set("batch.max_records", &max_records.to_string())
        .unwrap();
    cfg.set("retry.max_ms", "60000").unwrap();
    let (mut store, _) = Store::open(&cfg).unwrap();
    let first = store.next_seq();
    assert_eq!(first, 1);
    let recs: Vec<NewRecord> = (first..first + records)
        .map(|seq| NewRecord {
            seq,
            ts_ms: 1_700_000_000_000,
            t_acc_ms: 0,
            inst: None,
            data: format!("{{\"n\":{seq}}}").into_bytes(),
        })
        .collect();
    store.insert(&recs, false).unwrap();
    let sh = Arc::new(Shared::new(&cfg, store, Events::none()));
    let fake = Fake {
        answer: Box::new(answer),
        sent: Vec::new(),
    };
    Worker::new(sh, fake)
}
