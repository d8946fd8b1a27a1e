//! The request body (docs/reference.md, the wire): one envelope per record, in a json array or as ndjson
//! lines, and the exact byte counts that batch sizing plans with before encoding anything.
//! OTLP bodies are `otlp.rs`'s; [`Costing`] plans batches for every format.

use super::otlp;
use crate::clock::ClockMark;
use crate::config::Format;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// What a record adds to a request body, and what a body costs without records: how the worker
/// keeps a batch within `batch.max_bytes` before encoding anything.
#[derive(Clone, Debug)]
pub(crate) enum Costing {
    /// json and ndjson: an envelope and a separator each ([`envelope_cost`]).
    Envelope { source_json_len: usize },
    /// OTLP: each record's `LogRecord` exactly, the resource and scope once (an upper bound
    /// by a few bytes in protobuf).
    Otlp {
        encoder: Arc<otlp::Encoder>,
        fixed: u64,
        /// What the last read's records cost per 1,024 bytes of [`estimate_base`]: how
        /// [`Costing::estimate`] scales a record's length. Shared by the clones (the worker's
        /// reads and the read-ahead's).
        expansion: Arc<AtomicU64>,
    },
}

/// What [`Costing::estimate`] scales in OTLP: the record's JSON and a little for its
/// `LogRecord` around it.
fn estimate_base(r: &RecordRef) -> u64 {
    r.data.len() as u64 + 64
}

impl Costing {
    /// The bytes the record adds to a body.
    pub fn record(&self, r: &RecordRef) -> u64 {
        match self {
            Costing::Envelope { source_json_len } => envelope_cost(r, *source_json_len),
            Costing::Otlp { encoder, .. } => encoder.record_cost(r),
        }
    }

    /// OTLP costing for `encoder` (each `LogRecord` is encoded to be costed).
    pub fn otlp(encoder: Arc<otlp::Encoder>) -> Costing {
        Costing::Otlp {
            fixed: encoder.fixed_cost(),
            encoder,
            expansion: Arc::new(AtomicU64::new(1024)),
        }
    }

    /// What the record likely adds to a body, from its length alone: a read takes rows by
    /// this under the store lock, and costs them exactly once the lock is let go
    /// (`delivery/read.rs`). Exact for json and ndjson. In OTLP it is the record's length
    /// scaled by what the last read's records cost, and a sixteenth more: a read then seldom
    /// takes rows the budget does not hold (they would be let go, and the read ahead of them
    /// with them), at the price of batches a little under the budget.
    pub fn estimate(&self, r: &RecordRef) -> u64 {
        match self {
            Costing::Envelope { source_json_len } => envelope_cost(r, *source_json_len),
            Costing::Otlp { expansion, .. } => {
                estimate_base(r).saturating_mul(expansion.load(Relaxed)) / 1024 * 17 / 16
            }
        }
    }

    /// Learns from a read that its records (`recs`) cost `exact` bytes in all.
    pub fn learn<'a>(&self, recs: impl Iterator<Item = RecordRef<'a>>, exact: u64) {
        if let Costing::Otlp { expansion, .. } = self {
            let base: u64 = recs.map(|r| estimate_base(&r)).sum();
            if let Some(per_kib) = exact.saturating_mul(1024).checked_div(base) {
                expansion.store(per_kib.clamp(64, 64 * 1024), Relaxed);
            }
        }
    }

    /// Costs the records of one read ([`Plan::cost`]), keeping what OTLP wrote of each for
    /// the request body ([`Plan::keep`]), so that each record is encoded once. `max_bytes`:
    /// the read's budget.
    pub fn plan(&self, max_bytes: u64) -> Plan {
        let pieces = match self {
            Costing::Envelope { .. } => otlp::Pieces::default(),
            Costing::Otlp { .. } => otlp::Pieces::with_capacity(max_bytes),
        };
        Plan {
            costing: self.clone(),
            pieces,
        }
    }

    /// What the records of one request may cost in all, for a body of at most `max_bytes`
    /// (a batch still takes at least one record).
    pub fn budget(&self, max_bytes: u64) -> u64 {
        match self {
            Costing::Envelope { .. } => max_bytes,
            Costing::Otlp { fixed, .. } => max_bytes.saturating_sub(*fixed),
        }
    }
}

/// The costing of one read: each record's cost, and in OTLP the record's encoding, kept for
/// the request body. It may be costed on one thread and finished on another.
pub(crate) struct Plan {
    costing: Costing,
    pieces: otlp::Pieces,
}

impl Plan {
    /// The bytes the record adds to a body ([`Costing::record`]).
    pub fn cost(&mut self, r: &RecordRef) -> u64 {
        match &self.costing {
            Costing::Envelope { source_json_len } => envelope_cost(r, *source_json_len),
            Costing::Otlp { encoder, .. } => self.pieces.push(encoder, r),
        }
    }

    /// The costing this plan follows.
    pub fn costing(&self) -> &Costing {
        &self.costing
    }

    /// What OTLP wrote of the records the read returned, given their seqs (the records it
    /// costed first); None for other formats.
    pub fn keep(self, seqs: impl ExactSizeIterator<Item = u64>) -> Option<otlp::Pieces> {
        match self.costing {
            Costing::Envelope { .. } => None,
            Costing::Otlp { .. } => self.pieces.keep(seqs),
        }
    }
}

/// One record to send, borrowed from the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// The 16 hex digits of the buffer instance (written into the envelope unescaped).
    pub instance: &'a str,
    /// The record's sequence number.
    pub seq: u64,
    /// Wall clock at `edgebuf_log`, in Unix milliseconds.
    pub ts_ms: i64,
    /// The logged JSON value, verbatim.
    pub data: &'a [u8],
    /// Whether `ts_ms` came from a valid wall clock, was repaired, or is not known to be right.
    pub clock: ClockMark,
}

/// Writes `r`'s envelope without its closing `}`, so that a caller (the CLI's export) can add
/// fields: `{"id":"<instance>-<seq>","seq":<seq>,"ts_ms":<ts>,"source":<source_json>,"data":<data>`,
/// with `"clock":"repaired"` or `"clock":"unset"` after `ts_ms` for a record logged before the
/// wall clock was valid.
/// `source_json` is the source id already encoded as a JSON string. `data` is copied verbatim,
/// except that with `one_line` a CR or LF byte (only possible as insignificant whitespace in
/// valid JSON) becomes a space, so that the envelope stays on one line; lengths are unchanged.
pub fn push_envelope_fields(out: &mut Vec<u8>, r: &RecordRef, source_json: &str, one_line: bool) {
    out.extend_from_slice(b"{\"id\":\"");
    out.extend_from_slice(r.instance.as_bytes());
    out.push(b'-');
    push_u64(out, r.seq);
    out.extend_from_slice(b"\",\"seq\":");
    push_u64(out, r.seq);
    out.extend_from_slice(b",\"ts_ms\":");
    push_i64(out, r.ts_ms);
    if let Some(word) = r.clock.word() {
        out.extend_from_slice(b",\"clock\":\"");
        out.extend_from_slice(word.as_bytes());
        out.push(b'"');
    }
    out.extend_from_slice(b",\"source\":");
    out.extend_from_slice(source_json.as_bytes());
    out.extend_from_slice(b",\"data\":");
    if one_line {
        out.extend(r.data.iter().map(|&b| match b {
            b'\n' | b'\r' => b' ',
            b => b,
        }));
    } else {
        out.extend_from_slice(r.data);
    }
}

/// The source id as it appears in every envelope: a JSON string, quotes included. Its length
/// is the `source_json_len` of [`envelope_len`].
pub(crate) fn source_json(source: &str) -> String {
    serde_json::Value::String(source.to_string()).to_string()
}

/// The fixed bytes of one envelope: `{"id":"` `-` `","seq":` `,"ts_ms":` `,"source":` `,"data":` `}`.
const ENVELOPE_FIXED: usize = 7 + 1 + 8 + 9 + 10 + 8 + 1;

/// Exact byte length of one envelope
/// `{"id":"<instance>-<seq>","seq":<seq>,"ts_ms":<ts_ms>,"source":<source JSON>,"data":<data>}`,
/// where `source_json_len` is the length of the source as a JSON string (quotes included, see
/// [`source_json`]), plus `,"clock":"<word>"` when the record carries a clock mark.
/// Compression is not taken into account.
pub(crate) fn envelope_len(r: &RecordRef, source_json_len: usize) -> usize {
    ENVELOPE_FIXED
        + r.instance.len()
        + 2 * dec_len_u64(r.seq)
        + dec_len_i64(r.ts_ms)
        + r.clock.word().map_or(0, |w| CLOCK_FIXED + w.len())
        + source_json_len
        + r.data.len()
}

/// `,"clock":""` around the clock word.
const CLOCK_FIXED: usize = 11;

/// The bytes one record adds to a request body: its envelope and a separator (`,` or `\n`;
/// the one separator too many pays for `[` and `]`, or is spare).
pub(crate) fn envelope_cost(r: &RecordRef, source_json_len: usize) -> u64 {
    envelope_len(r, source_json_len) as u64 + 1
}

/// Exact byte length of a whole request body (before compression) holding `record_count`
/// envelopes whose [`envelope_len`]s add up to `envelope_bytes`: json adds 2 for `[]` and 1 per
/// comma, ndjson 1 per `\n`. (OTLP formats are not made of envelopes: see [`Costing`].)
pub(crate) fn body_len(format: Format, record_count: usize, envelope_bytes: usize) -> usize {
    envelope_bytes
        + if format == Format::Ndjson {
            record_count
        } else {
            2 + record_count.saturating_sub(1)
        }
}

/// The [`envelope_len`] of one record with the source `source_json`.
fn record_len(r: &RecordRef, source_json: &str) -> usize {
    envelope_len(r, source_json.len())
}

/// The body before compression: json is one JSON array of envelopes; ndjson is one envelope
/// per line, each ending in `\n`. `data` is copied verbatim, except that in ndjson a CR or LF
/// byte of the data (only possible as insignificant whitespace in valid JSON) travels as a
/// space so that every envelope stays on one line; lengths are unchanged. (The OTLP formats are
/// encoded by `otlp::Encoder`; given one here, this writes json.)
pub(crate) fn encode(format: Format, source_json: &str, records: &[RecordRef]) -> Vec<u8> {
    let total = records.iter().map(|r| record_len(r, source_json)).sum();
    let mut out = Vec::with_capacity(body_len(format, records.len(), total));
    let one_line = format == Format::Ndjson;
    let push_envelope = |out: &mut Vec<u8>, r: &RecordRef| {
        push_envelope_fields(out, r, source_json, one_line);
        out.push(b'}');
    };
    if one_line {
        for r in records {
            push_envelope(&mut out, r);
            out.push(b'\n');
        }
    } else {
        out.push(b'[');
        for (i, r) in records.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_envelope(&mut out, r);
        }
        out.push(b']');
    }
    out
}

/// The `Content-Type` of a body in `format`.
pub(crate) fn content_type(format: Format) -> &'static str {
    match format {
        Format::Json | Format::OtlpJson => "application/json",
        Format::Ndjson => "application/x-ndjson",
        Format::OtlpProto => "application/x-protobuf",
    }
}

/// `<instance of first record>-<first seq>-<last seq>-<record count>`; "" for no records.
pub(crate) fn idempotency_key(records: &[RecordRef]) -> String {
    match (records.first(), records.last()) {
        (Some(first), Some(last)) => format!(
            "{}-{}-{}-{}",
            first.instance,
            first.seq,
            last.seq,
            records.len()
        ),
        _ => String::new(),
    }
}

fn dec_len_u64(v: u64) -> usize {
    if v == 0 {
        1
    } else {
        v.ilog10() as usize + 1
    }
}

fn dec_len_i64(v: i64) -> usize {
    dec_len_u64(v.unsigned_abs()) + usize::from(v < 0)
}

fn push_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(decimal(&mut [0u8; 20], v));
}

/// `v` in decimal digits, written into `buf`.
pub(super) fn decimal(buf: &mut [u8; 20], mut v: u64) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &buf[i..]
}

fn push_i64(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    push_u64(out, v.unsigned_abs());
}

#[cfg(test)]
mod tests {
    use super::super::tests::{recs, INSTANCE};
    use super::*;

    const CAM: &str = "\"cam-07\"";

    fn total_len(format: Format, source_json: &str, records: &[RecordRef]) -> usize {
        body_len(
            format,
            records.len(),
            records.iter().map(|r| record_len(r, source_json)).sum(),
        )
    }

    #[test]
    fn json_body_is_byte_exact_and_data_verbatim() {
        let r = recs(&["{\"b\": 2, \"a\":1.50}", " [1,\n 2] ", "\"x\\ny\""]);
        let body = encode(Format::Json, CAM, &r);
        let expected = concat!(
            "[",
            r#"{"id":"3f9c2a7e1b4d8c60-42","seq":42,"ts_ms":1764320000123,"source":"cam-07","data":{"b": 2, "a":1.50}},"#,
            "{\"id\":\"3f9c2a7e1b4d8c60-43\",\"seq\":43,\"ts_ms\":1764320000124,\"source\":\"cam-07\",\"data\": [1,\n 2] },",
            r#"{"id":"3f9c2a7e1b4d8c60-44","seq":44,"ts_ms":1764320000125,"source":"cam-07","data":"x\ny"}"#,
            "]"
        );
        assert_eq!(String::from_utf8(body.clone()).expect("utf8"), expected);
        assert_eq!(body.len(), total_len(Format::Json, CAM, &r));
        serde_json::from_slice::<serde_json::Value>(&body).expect("valid JSON");
        assert_eq!(encode(Format::Json, CAM, &[]), b"[]");
        assert_eq!(body_len(Format::Json, 0, 0), 2);
    }

    #[test]
    fn ndjson_body_is_byte_exact_one_line_per_envelope() {
        let r = recs(&["{\"b\": 2, \"a\":1}", "{\r\n\"k\":\t\"v\"\n}\n"]);
        let body = encode(Format::Ndjson, CAM, &r);
        let expected = concat!(
            r#"{"id":"3f9c2a7e1b4d8c60-42","seq":42,"ts_ms":1764320000123,"source":"cam-07","data":{"b": 2, "a":1}}"#,
            "\n",
            "{\"id\":\"3f9c2a7e1b4d8c60-43\",\"seq\":43,\"ts_ms\":1764320000124,\"source\":\"cam-07\",\"data\":{  \"k\":\t\"v\" } }",
            "\n"
        );
        assert_eq!(String::from_utf8(body.clone()).expect("utf8"), expected);
        assert_eq!(body.len(), total_len(Format::Ndjson, CAM, &r));
        for line in body.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            serde_json::from_slice::<serde_json::Value>(line).expect("each line is JSON");
        }
        assert!(encode(Format::Ndjson, CAM, &[]).is_empty());
    }

    #[test]
    fn envelope_len_matches_encoding_at_the_extremes() {
        let src = source_json("we\"ird\\src");
        assert_eq!(src, r#""we\"ird\\src""#);
        for (seq, ts) in [
            (0u64, 0i64),
            (1, -1),
            (9, 9),
            (10, -10),
            (99_999, 1_764_320_000_123),
            (u64::MAX, i64::MIN),
            (u64::MAX - 1, i64::MAX),
        ] {
            let r = [RecordRef {
                instance: INSTANCE,
                seq,
                ts_ms: ts,
                data: b"{}",
                clock: ClockMark::Valid,
            }];
            let body = encode(Format::Json, &src, &r);
            assert_eq!(
                body.len(),
                body_len(Format::Json, 1, record_len(&r[0], &src))
            );
            assert_eq!(
                record_len(&r[0], &src),
                ENVELOPE_FIXED + 16 + 2 * dec_len_u64(seq) + dec_len_i64(ts) + src.len() + 2
            );
            let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
            assert_eq!(v[0]["seq"].as_u64(), Some(seq));
            assert_eq!(v[0]["ts_ms"].as_i64(), Some(ts));
            assert_eq!(
                v[0]["id"].as_str(),
                Some(format!("{INSTANCE}-{seq}").as_str())
            );
            assert_eq!(v[0]["source"].as_str(), Some("we\"ird\\src"));
        }
    }

    #[test]
    fn a_clock_mark_follows_ts_ms_and_is_counted() {
        for (mark, word) in [
            (ClockMark::Repaired, "repaired"),
            (ClockMark::Unset, "unset"),
        ] {
            let mut r = recs(&["{\"p\":0.5}", "[1]"]);
            r[0].clock = mark;
            for format in [Format::Json, Format::Ndjson] {
                let body = encode(format, CAM, &r);
                assert_eq!(body.len(), total_len(format, CAM, &r), "{format:?} {word}");
                let text = String::from_utf8(body).expect("utf8");
                let first = format!(
                    r#"{{"id":"3f9c2a7e1b4d8c60-42","seq":42,"ts_ms":1764320000123,"clock":"{word}","source":"cam-07","data":{{"p":0.5}}}}"#
                );
                assert!(text.contains(&first), "{text}");
                // A record with a valid clock has no clock field.
                assert_eq!(text.matches("\"clock\"").count(), 1, "{text}");
            }
            let plain = RecordRef {
                clock: ClockMark::Valid,
                ..r[0]
            };
            assert_eq!(
                envelope_len(&r[0], CAM.len()),
                envelope_len(&plain, CAM.len()) + ",\"clock\":\"\"".len() + word.len()
            );
        }
    }

    #[test]
    fn idempotency_key_format() {
        let r = recs(&["1", "2", "3"]);
        assert_eq!(idempotency_key(&r), "3f9c2a7e1b4d8c60-42-44-3");
        assert_eq!(idempotency_key(&r[1..2]), "3f9c2a7e1b4d8c60-43-43-1");
        assert_eq!(idempotency_key(&[]), "");
    }
}
