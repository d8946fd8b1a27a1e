//! A transport without sockets for the delivery unit tests, and a worker over a real buffer
//! file that uses it.

use super::{Transport, Worker};
use crate::config::Config;
use crate::engine::queue::Shared;
use crate::events::Events;
use crate::http::otlp::Encoder;
use crate::http::{Attempt, Outcome, Pieces, RecordRef};
use crate::store::{NewRecord, Store};
use std::sync::Arc;

type Answer = Box<dyn FnMut(&[u64]) -> Attempt + Send>;

/// The attempt an answer makes: 200, 413, 400, 401, 500 (a retry the endpoint may have
/// processed) or a timeout.
impl From<Outcome> for Attempt {
    fn from(outcome: Outcome) -> Attempt {
        let http_status = match outcome {
            Outcome::Delivered => 200,
            Outcome::Split => 413,
            Outcome::Bisect => 400,
            Outcome::Config => 401,
            Outcome::Retry => 500,
            Outcome::Timeout => 0,
        };
        Attempt {
            outcome,
            http_status,
            retry_after: None,
            detail: format!("answered {http_status}"),
            sent_bytes: 0,
            rejected: None,
            not_processed: false,
        }
    }
}

/// An answer with this HTTP status, classified as the sender does.
pub fn status(code: u16) -> Attempt {
    Attempt {
        http_status: i32::from(code),
        not_processed: crate::http::status_not_processed(code),
        ..Attempt::from(crate::http::classify_status(code))
    }
}

/// A connection the endpoint refused: no request was made.
pub fn refused() -> Attempt {
    Attempt::not_sent(Outcome::Retry, "connection refused".to_string())
}

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

/// A transport without sockets: answers each request with `answer(seqs)` (an [`Outcome`], or
/// an [`Attempt`] such as [`status`] or [`refused`] make) and keeps the seqs of every request.
/// With an OTLP encoder, it plans batches as OTLP does and keeps, for every request, whether
/// its body was written from what costing encoded (checked to be the body of its records).
pub struct Fake {
    answer: Answer,
    pub sent: Vec<Vec<u64>>,
    otlp: Option<Arc<Encoder>>,
    pub from_pieces: Vec<bool>,
}

impl Transport for Fake {
    /// The seqs of the request, and its body length (20 bytes per record).
    type Request = (Vec<u64>, u64);
    fn encode(
        &mut self,
        records: &[RecordRef],
        pieces: Option<&Pieces>,
    ) -> Result<(Vec<u64>, u64), Attempt> {
        if let Some(enc) = &self.otlp {
            let run = pieces.and_then(|p| p.run(records));
            if let Some(run) = run {
                assert_eq!(enc.body(run), enc.encode(records), "the records' own body");
            }
            self.from_pieces.push(run.is_some());
        }
        let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
        let len = 20 * seqs.len() as u64;
        Ok((seqs, len))
    }
    fn wire_len(&self, request: &(Vec<u64>, u64)) -> u64 {
        request.1
    }
    fn post(&mut self, (seqs, len): &(Vec<u64>, u64)) -> Attempt {
        let mut a = (self.answer)(seqs);
        self.sent.push(seqs.clone());
        a.count_sent(1, *len);
        a
    }
    fn resends(&self) -> u64 {
        0
    }
    fn costing(&self) -> crate::http::Costing {
        match &self.otlp {
            Some(enc) => crate::http::Costing::otlp(Arc::clone(enc)),
            None => crate::http::Costing::Envelope {
                source_json_len: "\"test\"".len(),
            },
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

/// [`worker`] sending `otlp_proto`.
pub fn otlp_worker(
    dir: &std::path::Path,
    records: u64,
    max_records: u64,
    answer: impl FnMut(&[u64]) -> Outcome + Send + 'static,
) -> Worker<Fake> {
    let enc = Encoder::new(true, "test", &[("service.name", "edgebuf")]);
    worker_full(dir, records, max_records, &[], answer, Some(Arc::new(enc)))
}

/// [`worker`] with the configuration `keys` set as well.
pub fn worker_with<A: Into<Attempt>>(
    dir: &std::path::Path,
    records: u64,
    max_records: u64,
    keys: &[(&str, &str)],
    answer: impl FnMut(&[u64]) -> A + Send + 'static,
) -> Worker<Fake> {
    worker_full(dir, records, max_records, keys, answer, None)
}

/// The fake worker, with configuration `keys` and, with `otlp`, sending OTLP.
pub fn worker_full<A: Into<Attempt>>(
    dir: &std::path::Path,
    records: u64,
    max_records: u64,
    keys: &[(&str, &str)],
    answer: impl FnMut(&[u64]) -> A + Send + 'static,
    otlp: Option<Arc<Encoder>>,
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
    store
        .insert(&new_records(first..first + records), false)
        .unwrap();
    let sh = Arc::new(Shared::new(&cfg, store, Events::none()));
    let mut answer = answer;
    let fake = Fake {
        answer: Box::new(move |seqs| answer(seqs).into()),
        sent: Vec::new(),
        otlp,
        from_pieces: Vec::new(),
    };
    Worker::new(sh, fake)
}

/// Records `seqs` as the writer stores them: `{"n":<seq>}`, logged with a valid clock.
pub fn new_records(seqs: impl Iterator<Item = u64>) -> Vec<NewRecord> {
    seqs.map(|seq| NewRecord {
        seq,
        ts_ms: 1_700_000_000_000,
        t_acc_ms: 0,
        inst: None,
        data: format!("{{\"n\":{seq}}}").into_bytes(),
        boot_ms: None,
    })
    .collect()
}
