//! OTLP/HTTP logs bodies (docs/reference.md, the wire, OTLP): one `ExportLogsServiceRequest` per
//! batch, in the protobuf encoding or in OTLP's JSON mapping, and the `partialSuccess` of the
//! answer.
//!
//! The messages are hand-written `prost` structs holding only the fields edgebuf sends or reads;
//! the field numbers are those of opentelemetry-proto (`opentelemetry/proto/logs/v1/logs.proto`,
//! `common/v1/common.proto`, `resource/v1/resource.proto`,
//! `collector/logs/v1/logs_service.proto`). The fields edgebuf does not set (severity text,
//! flags, trace context, dropped counts, schema URLs) keep their defaults, which both encodings
//! leave out.
//!
//! Each record's JSON is read once into the `AnyValue` tree (no serde_json tree in between),
//! keeping the order of object members and every duplicate.

use super::body::RecordRef;
use prost::Message;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// `SEVERITY_NUMBER_INFO`.
const SEVERITY_INFO: i32 = 9;
/// The instrumentation scope's name.
const SCOPE_NAME: &str = "edgebuf";
const SCOPE_VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Clone, PartialEq, Message)]
pub struct ExportLogsServiceRequest {
    #[prost(message, repeated, tag = "1")]
    pub resource_logs: Vec<ResourceLogs>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ResourceLogs {
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    #[prost(message, repeated, tag = "2")]
    pub scope_logs: Vec<ScopeLogs>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Resource {
    #[prost(message, repeated, tag = "1")]
    pub attributes: Vec<KeyValue>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ScopeLogs {
    #[prost(message, optional, tag = "1")]
    pub scope: Option<InstrumentationScope>,
    #[prost(message, repeated, tag = "2")]
    pub log_records: Vec<LogRecord>,
}

#[derive(Clone, PartialEq, Message)]
pub struct InstrumentationScope {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub version: String,
}

#[derive(Clone, PartialEq, Message)]
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

#[derive(Clone, PartialEq, Message)]
pub struct AnyValue {
    #[prost(oneof = "Value", tags = "1, 2, 3, 4, 5, 6")]
    pub value: Option<Value>,
}

/// `AnyValue.value`; `None` in [`AnyValue`] is JSON null. (The variants keep the proto's
/// field names.)
#[allow(clippy::enum_variant_names)]
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Value {
    #[prost(string, tag = "1")]
    StringValue(String),
    #[prost(bool, tag = "2")]
    BoolValue(bool),
    #[prost(int64, tag = "3")]
    IntValue(i64),
    #[prost(double, tag = "4")]
    DoubleValue(f64),
    #[prost(message, tag = "5")]
    ArrayValue(ArrayValue),
    #[prost(message, tag = "6")]
    KvlistValue(KeyValueList),
}

#[derive(Clone, PartialEq, Message)]
pub struct ArrayValue {
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<AnyValue>,
}

#[derive(Clone, PartialEq, Message)]
pub struct KeyValueList {
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<KeyValue>,
}

#[derive(Clone, PartialEq, Message)]
pub struct KeyValue {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<AnyValue>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ExportLogsServiceResponse {
    #[prost(message, optional, tag = "1")]
    pub partial_success: Option<ExportLogsPartialSuccess>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ExportLogsPartialSuccess {
    #[prost(int64, tag = "1")]
    pub rejected_log_records: i64,
    #[prost(string, tag = "2")]
    pub error_message: String,
}

fn string_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value.to_string())),
        }),
    }
}

/// Encodes batches for one sender: the resource is built once.
#[derive(Clone, Debug)]
pub(crate) struct Encoder {
    proto: bool,
    resource: Vec<KeyValue>,
}

impl Encoder {
    /// `attributes`: `service.name` and the `otlp.resource.*` keys, after which comes
    /// `edgebuf.source` = `source`.
    pub fn new(proto: bool, source: &str, attributes: &[(&str, &str)]) -> Encoder {
        let mut resource = Vec::with_capacity(attributes.len() + 1);
        let mut attrs = attributes.iter();
        // service.name first, then edgebuf.source, then the others.
        if let Some((k, v)) = attrs.next() {
            resource.push(string_kv(k, v));
        }
        resource.push(string_kv("edgebuf.source", source));
        resource.extend(attrs.map(|(k, v)| string_kv(k, v)));
        Encoder { proto, resource }
    }

    /// Whether bodies are protobuf (else JSON).
    pub fn is_proto(&self) -> bool {
        self.proto
    }

    /// The request for `records`, in seq order as given.
    pub fn request(&self, records: &[RecordRef]) -> ExportLogsServiceRequest {
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: self.resource.clone(),
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: SCOPE_NAME.to_string(),
                        version: SCOPE_VERSION.to_string(),
                    }),
                    log_records: records.iter().map(log_record).collect(),
                }],
            }],
        }
    }

    /// The request body.
    pub fn encode(&self, records: &[RecordRef]) -> Vec<u8> {
        let req = self.request(records);
        if self.proto {
            req.encode_to_vec()
        } else {
            let mut out = Vec::with_capacity(
                256 + records
                    .iter()
                    .map(|r| 4 * r.data.len() + 200)
                    .sum::<usize>(),
            );
            json_request(&mut out, &req);
            out
        }
    }

    /// The bytes of a body with no record, plus what records can add to it beyond their own
    /// [`Encoder::record_cost`]: nothing in JSON (a record's cost counts its comma, one too
    /// many), the growth of two length prefixes in protobuf.
    pub fn fixed_cost(&self) -> u64 {
        let empty = self.encode(&[]);
        empty.len() as u64 + if self.proto { 8 } else { 0 }
    }

    /// The bytes one record adds to a body, exactly (JSON: its `LogRecord` and a comma;
    /// protobuf: its `LogRecord` with tag and length prefix).
    pub fn record_cost(&self, r: &RecordRef) -> u64 {
        let lr = log_record(r);
        if self.proto {
            let n = lr.encoded_len();
            (1 + prost::encoding::encoded_len_varint(n as u64) + n) as u64
        } else {
            let mut out = Vec::with_capacity(2 * r.data.len() + 256);
            json_log_record(&mut out, &lr);
            out.len() as u64 + 1
        }
    }
}

/// One record as a `LogRecord`.
fn log_record(r: &RecordRef) -> LogRecord {
    let nanos = u64::try_from(r.ts_ms)
        .unwrap_or(0)
        .saturating_mul(1_000_000);
    let mut attributes = vec![
        string_kv("edgebuf.id", &format!("{}-{}", r.instance, r.seq)),
        KeyValue {
            key: "edgebuf.seq".to_string(),
            value: Some(AnyValue {
                value: Some(Value::IntValue(i64::try_from(r.seq).unwrap_or(i64::MAX))),
            }),
        },
    ];
    if let Some(word) = r.clock.word() {
        attributes.push(string_kv("edgebuf.clock", word));
    }
    LogRecord {
        time_unix_nano: nanos,
        severity_number: SEVERITY_INFO,
        body: Some(any_value(r.data)),
        attributes,
        observed_time_unix_nano: nanos,
    }
}

/// The record's JSON as an `AnyValue`. Records were validated when logged; should one not parse
/// (a damaged row that passed the checks), it travels as a string of its bytes.
pub(crate) fn any_value(data: &[u8]) -> AnyValue {
    let mut de = serde_json::Deserializer::from_slice(data);
    // Records nest at most 128 deep (checked when logged); serde_json's own limit would refuse
    // the deepest of them.
    de.disable_recursion_limit();
    match AnySeed
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v))
    {
        Ok(v) => v,
        Err(_) => AnyValue {
            value: Some(Value::StringValue(
                String::from_utf8_lossy(data).into_owned(),
            )),
        },
    }
}

struct AnySeed;

impl<'de> DeserializeSeed<'de> for AnySeed {
    type Value = AnyValue;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<AnyValue, D::Error> {
        d.deserialize_any(AnyVisitor)
    }
}

struct AnyVisitor;

fn some(v: Value) -> AnyValue {
    AnyValue { value: Some(v) }
}

impl<'de> Visitor<'de> for AnyVisitor {
    type Value = AnyValue;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<AnyValue, E> {
        Ok(AnyValue { value: None })
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<AnyValue, E> {
        Ok(some(Value::BoolValue(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<AnyValue, E> {
        Ok(some(Value::IntValue(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<AnyValue, E> {
        Ok(some(match i64::try_from(v) {
            Ok(i) => Value::IntValue(i),
            Err(_) => Value::DoubleValue(v as f64),
        }))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<AnyValue, E> {
        Ok(some(Value::DoubleValue(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<AnyValue, E> {
        Ok(some(Value::StringValue(v.to_string())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<AnyValue, E> {
        Ok(some(Value::StringValue(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<AnyValue, A::Error> {
        let mut values = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(v) = seq.next_element_seed(AnySeed)? {
            values.push(v);
        }
        Ok(some(Value::ArrayValue(ArrayValue { values })))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AnyValue, A::Error> {
        let mut values = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(AnySeed)?;
            values.push(KeyValue {
                key,
                value: Some(value),
            });
        }
        Ok(some(Value::KvlistValue(KeyValueList { values })))
    }
}

// ---------------------------------------------------------------------------------------------
// OTLP's JSON mapping: lowerCamelCase field names, 64-bit integers as decimal strings, enums as
// numbers, fields at their default left out (except where a receiver needs them).
// ---------------------------------------------------------------------------------------------

fn json_str(out: &mut Vec<u8>, s: &str) {
    // Writing a str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn json_request(out: &mut Vec<u8>, req: &ExportLogsServiceRequest) {
    out.extend_from_slice(b"{\"resourceLogs\":[");
    for (i, rl) in req.resource_logs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"resource\":{\"attributes\":");
        let attrs = rl.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
        json_kvs(out, attrs);
        out.extend_from_slice(b"},\"scopeLogs\":[");
        for (j, sl) in rl.scope_logs.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"scope\":{\"name\":");
            let (name, version) = sl
                .scope
                .as_ref()
                .map_or(("", ""), |s| (s.name.as_str(), s.version.as_str()));
            json_str(out, name);
            out.extend_from_slice(b",\"version\":");
            json_str(out, version);
            out.extend_from_slice(b"},\"logRecords\":[");
            for (k, lr) in sl.log_records.iter().enumerate() {
                if k > 0 {
                    out.push(b',');
                }
                json_log_record(out, lr);
            }
            out.extend_from_slice(b"]}");
        }
        out.extend_from_slice(b"]}");
    }
    out.extend_from_slice(b"]}");
}

fn json_log_record(out: &mut Vec<u8>, lr: &LogRecord) {
    out.extend_from_slice(b"{\"timeUnixNano\":\"");
    out.extend_from_slice(lr.time_unix_nano.to_string().as_bytes());
    out.extend_from_slice(b"\",\"observedTimeUnixNano\":\"");
    out.extend_from_slice(lr.observed_time_unix_nano.to_string().as_bytes());
    out.extend_from_slice(b"\",\"severityNumber\":");
    out.extend_from_slice(lr.severity_number.to_string().as_bytes());
    if let Some(body) = &lr.body {
        out.extend_from_slice(b",\"body\":");
        json_any(out, body);
    }
    out.extend_from_slice(b",\"attributes\":");
    json_kvs(out, &lr.attributes);
    out.push(b'}');
}

fn json_kvs(out: &mut Vec<u8>, kvs: &[KeyValue]) {
    out.push(b'[');
    for (i, kv) in kvs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"key\":");
        json_str(out, &kv.key);
        out.extend_from_slice(b",\"value\":");
        match &kv.value {
            Some(v) => json_any(out, v),
            None => out.extend_from_slice(b"{}"),
        }
        out.push(b'}');
    }
    out.push(b']');
}

fn json_any(out: &mut Vec<u8>, v: &AnyValue) {
    match &v.value {
        None => out.extend_from_slice(b"{}"),
        Some(Value::StringValue(s)) => {
            out.extend_from_slice(b"{\"stringValue\":");
            json_str(out, s);
            out.push(b'}');
        }
        Some(Value::BoolValue(b)) => {
            out.extend_from_slice(if *b {
                b"{\"boolValue\":true}"
            } else {
                b"{\"boolValue\":false}"
            });
        }
        Some(Value::IntValue(i)) => {
            out.extend_from_slice(b"{\"intValue\":\"");
            out.extend_from_slice(i.to_string().as_bytes());
            out.extend_from_slice(b"\"}");
        }
        Some(Value::DoubleValue(d)) => {
            out.extend_from_slice(b"{\"doubleValue\":");
            if d.is_finite() {
                let _ = serde_json::to_writer(&mut *out, d);
            } else {
                // Not reachable from a valid record (I-JSON); the mapping's spelling.
                let s = if d.is_nan() {
                    "\"NaN\""
                } else if *d > 0.0 {
                    "\"Infinity\""
                } else {
                    "\"-Infinity\""
                };
                out.extend_from_slice(s.as_bytes());
            }
            out.push(b'}');
        }
        Some(Value::ArrayValue(a)) => {
            out.extend_from_slice(b"{\"arrayValue\":{\"values\":[");
            for (i, v) in a.values.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                json_any(out, v);
            }
            out.extend_from_slice(b"]}}");
        }
        Some(Value::KvlistValue(kv)) => {
            out.extend_from_slice(b"{\"kvlistValue\":{\"values\":");
            json_kvs(out, &kv.values);
            out.extend_from_slice(b"}}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// partialSuccess
// ---------------------------------------------------------------------------------------------

/// The most of an `errorMessage` kept.
const MAX_MESSAGE_BYTES: usize = 200;

/// A `partialSuccess` with `rejectedLogRecords` > 0: the count and the endpoint's message
/// (printable ASCII, at most 200 bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Rejected {
    pub count: u64,
    pub message: String,
}

/// Reads the `partialSuccess` of a 2xx answer's body. `None` when there is none, it rejects
/// nothing, or the body is not an `ExportLogsServiceResponse`.
pub(crate) fn partial_success(proto: bool, body: &[u8]) -> Option<Rejected> {
    let (count, message) = if proto {
        let ps = ExportLogsServiceResponse::decode(body)
            .ok()?
            .partial_success?;
        (ps.rejected_log_records, ps.error_message)
    } else {
        let v: serde_json::Value = serde_json::from_slice(body).ok()?;
        let ps = v
            .get("partialSuccess")
            .or_else(|| v.get("partial_success"))?;
        let n = ps
            .get("rejectedLogRecords")
            .or_else(|| ps.get("rejected_log_records"))?;
        // 64-bit integers are strings in OTLP's JSON; a number is accepted too.
        let count = match n {
            serde_json::Value::String(s) => s.parse::<i64>().ok()?,
            other => other.as_i64()?,
        };
        let message = ps
            .get("errorMessage")
            .or_else(|| ps.get("error_message"))
            .and_then(|m| m.as_str())
            .unwrap_or("")
            .to_string();
        (count, message)
    };
    let count = u64::try_from(count).ok().filter(|&n| n > 0)?;
    Some(Rejected {
        count,
        message: printable_message(&message),
    })
}

/// Printable ASCII only (others become `?`), at most [`MAX_MESSAGE_BYTES`].
fn printable_message(s: &str) -> String {
    s.chars()
        .take(MAX_MESSAGE_BYTES)
        .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ClockMark;

    use crate::http::test_otlp_json::{from_otlp_json, normalised};

    const INST: &str = "3f9c2a7e1b4d8c60";

    fn rec(seq: u64, data: &'static str) -> RecordRef<'static> {
        RecordRef {
            instance: INST,
            seq,
            ts_ms: 1_764_320_000_000 + seq as i64,
            data: data.as_bytes(),
            clock: ClockMark::Valid,
        }
    }

    fn encoder(proto: bool) -> Encoder {
        Encoder::new(
            proto,
            "cam-07",
            &[
                ("service.name", "edgebuf"),
                ("deployment.environment", "prod"),
            ],
        )
    }

    const RECORDS: &[&str] = &[
        r#"{"b": 2, "a": [1, -2, 1.5, "x\ny", true, false, null, {"n": {"m": []}}], "a": 3}"#,
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775808",
        "18446744073709551615",
        "1e300",
        "1E5",
        "0.1",
        "-0.0",
        "\"caf\\u00e9 \\ud83d\\ude00\"",
        "null",
        "[]",
        "{}",
        " [ [ [ 1 ] ] ] ",
    ];

    fn records() -> Vec<RecordRef<'static>> {
        RECORDS
            .iter()
            .enumerate()
            .map(|(i, d)| rec(40 + i as u64, d))
            .collect()
    }

    /// The AnyValue a JSON value maps to, by the contract's rules, from serde_json's tree.
    fn expected(v: &serde_json::Value) -> AnyValue {
        use serde_json::Value as J;
        AnyValue {
            value: match v {
                J::Null => None,
                J::Bool(b) => Some(Value::BoolValue(*b)),
                J::Number(n) => Some(match n.as_i64() {
                    Some(i) => Value::IntValue(i),
                    None => Value::DoubleValue(n.as_f64().unwrap()),
                }),
                J::String(s) => Some(Value::StringValue(s.clone())),
                J::Array(a) => Some(Value::ArrayValue(ArrayValue {
                    values: a.iter().map(expected).collect(),
                })),
                J::Object(_) => unreachable!("objects are checked by hand"),
            },
        }
    }

    /// Doubles travel exactly: each is the correctly rounded value of its text (as Rust's own
    /// parser gives it), in both encodings. serde_json's default float parser was one ulp off
    /// for some (0.10600484553186773 arrived as ...772 through a real collector); the
    /// `float_roundtrip` feature makes it exact.
    #[test]
    fn doubles_are_the_correctly_rounded_value_of_their_text() {
        const TEXTS: &[&str] = &[
            "0.10600484553186773",
            "0.1",
            "2.2250738585072014e-308",
            "1.7976931348623157e308",
            "5e-324",
            "123456789012345678901234567890",
            "-0.30000000000000004",
            "9007199254740993.0",
        ];
        let recs: Vec<RecordRef<'static>> = TEXTS
            .iter()
            .enumerate()
            .map(|(i, t)| rec(1 + i as u64, t))
            .collect();
        let want: Vec<u64> = TEXTS
            .iter()
            .map(|t| t.parse::<f64>().expect("a number").to_bits())
            .collect();
        let req =
            ExportLogsServiceRequest::decode(&encoder(true).encode(&recs)[..]).expect("decodes");
        let got: Vec<u64> = req.resource_logs[0].scope_logs[0]
            .log_records
            .iter()
            .map(|lr| match lr.body.as_ref().and_then(|b| b.value.as_ref()) {
                Some(Value::DoubleValue(d)) => d.to_bits(),
                other => panic!("not a double: {other:?}"),
            })
            .collect();
        assert_eq!(got, want, "otlp_proto");
        let json: serde_json::Value =
            serde_json::from_slice(&encoder(false).encode(&recs)).expect("JSON");
        let got: Vec<u64> = json["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
            .as_array()
            .expect("log records")
            .iter()
            .map(|lr| {
                lr["body"]["doubleValue"]
                    .as_f64()
                    .expect("a double")
                    .to_bits()
            })
            .collect();
        assert_eq!(got, want, "otlp_json");
    }

    #[test]
    fn proto_decodes_back_with_every_field() {
        let r = records();
        let enc = encoder(true);
        let body = enc.encode(&r);
        let req = ExportLogsServiceRequest::decode(&body[..]).expect("decodes");
        assert_eq!(req.resource_logs.len(), 1);
        let rl = &req.resource_logs[0];
        let attrs: Vec<(String, Option<Value>)> = rl
            .resource
            .as_ref()
            .unwrap()
            .attributes
            .iter()
            .map(|kv| (kv.key.clone(), kv.value.clone().unwrap().value))
            .collect();
        let s = |x: &str| Some(Value::StringValue(x.to_string()));
        assert_eq!(
            attrs,
            vec![
                ("service.name".to_string(), s("edgebuf")),
                ("edgebuf.source".to_string(), s("cam-07")),
                ("deployment.environment".to_string(), s("prod")),
            ]
        );
        assert_eq!(rl.scope_logs.len(), 1);
        let sl = &rl.scope_logs[0];
        let scope = sl.scope.as_ref().unwrap();
        assert_eq!(scope.name, "edgebuf");
        assert_eq!(scope.version, env!("CARGO_PKG_VERSION"));
        assert_eq!(sl.log_records.len(), r.len());
        for (lr, r) in sl.log_records.iter().zip(&r) {
            let ns = r.ts_ms as u64 * 1_000_000;
            assert_eq!(lr.time_unix_nano, ns);
            assert_eq!(lr.observed_time_unix_nano, ns);
            assert_eq!(lr.severity_number, 9);
            assert_eq!(
                lr.attributes,
                vec![
                    string_kv("edgebuf.id", &format!("{INST}-{}", r.seq)),
                    KeyValue {
                        key: "edgebuf.seq".into(),
                        value: Some(some(Value::IntValue(r.seq as i64)))
                    }
                ]
            );
            let j: serde_json::Value = serde_json::from_slice(r.data).unwrap();
            if !j.is_object() {
                assert_eq!(lr.body.as_ref().unwrap(), &expected(&j), "{:?}", r.data);
            }
        }
        // The object keeps its member order and its duplicate key.
        let Some(Value::KvlistValue(kv)) = &sl.log_records[0].body.as_ref().unwrap().value else {
            panic!("an object is a kvlist");
        };
        let keys: Vec<&str> = kv.values.iter().map(|k| k.key.as_str()).collect();
        assert_eq!(keys, ["b", "a", "a"]);
        let Some(Value::ArrayValue(a)) = &kv.values[1].value.as_ref().unwrap().value else {
            panic!("an array is an arrayValue");
        };
        assert_eq!(a.values.len(), 8);
        assert_eq!(a.values[1].value, Some(Value::IntValue(-2)));
        assert_eq!(a.values[2].value, Some(Value::DoubleValue(1.5)));
        assert_eq!(a.values[3].value, s("x\ny"));
        assert_eq!(a.values[6].value, None);
        let b = |i: usize| sl.log_records[i].body.as_ref().unwrap().value.clone();
        assert_eq!(b(1), Some(Value::IntValue(i64::MAX)));
        assert_eq!(b(2), Some(Value::DoubleValue(9223372036854775808.0)));
        assert_eq!(b(3), Some(Value::IntValue(i64::MIN)));
        assert_eq!(b(4), Some(Value::DoubleValue(18446744073709551615.0)));
        assert_eq!(b(5), Some(Value::DoubleValue(1e300)));
        assert_eq!(b(6), Some(Value::DoubleValue(1e5)));
        assert_eq!(b(9), s("café 😀"));
        assert_eq!(b(10), None);
        assert_eq!(
            b(13),
            Some(Value::ArrayValue(ArrayValue {
                values: vec![some(Value::ArrayValue(ArrayValue {
                    values: vec![some(Value::ArrayValue(ArrayValue {
                        values: vec![some(Value::IntValue(1))]
                    }))]
                }))]
            }))
        );
    }

    #[test]
    fn json_follows_the_otlp_json_mapping() {
        let r = records();
        let body = encoder(false).encode(&r);
        let v: serde_json::Value = serde_json::from_slice(&body).expect("valid JSON");
        let rl = &v["resourceLogs"][0];
        assert_eq!(
            rl["resource"]["attributes"],
            serde_json::json!([
                {"key": "service.name", "value": {"stringValue": "edgebuf"}},
                {"key": "edgebuf.source", "value": {"stringValue": "cam-07"}},
                {"key": "deployment.environment", "value": {"stringValue": "prod"}},
            ])
        );
        let sl = &rl["scopeLogs"][0];
        assert_eq!(sl["scope"]["name"], "edgebuf");
        assert_eq!(sl["scope"]["version"], env!("CARGO_PKG_VERSION"));
        let lrs = sl["logRecords"].as_array().unwrap();
        assert_eq!(lrs.len(), r.len());
        for (lr, r) in lrs.iter().zip(&r) {
            let ns = (r.ts_ms as u64 * 1_000_000).to_string();
            assert_eq!(lr["timeUnixNano"], ns.as_str());
            assert_eq!(lr["observedTimeUnixNano"], ns.as_str());
            assert_eq!(lr["severityNumber"], 9);
            assert_eq!(
                lr["attributes"],
                serde_json::json!([
                    {"key": "edgebuf.id", "value": {"stringValue": format!("{INST}-{}", r.seq)}},
                    {"key": "edgebuf.seq", "value": {"intValue": r.seq.to_string()}},
                ])
            );
            let logged: serde_json::Value = serde_json::from_slice(r.data).unwrap();
            assert_eq!(
                from_otlp_json(&lr["body"]),
                normalised(&logged),
                "{:?}",
                r.data
            );
        }
        assert_eq!(
            lrs[1]["body"],
            serde_json::json!({"intValue": "9223372036854775807"})
        );
        assert_eq!(
            lrs[3]["body"],
            serde_json::json!({"intValue": "-9223372036854775808"})
        );
        assert_eq!(
            lrs[2]["body"]["doubleValue"].as_f64(),
            Some(9223372036854775808.0)
        );
        assert_eq!(lrs[7]["body"]["doubleValue"].as_f64(), Some(0.1));
        assert_eq!(lrs[10]["body"], serde_json::json!({}));
        assert_eq!(
            lrs[11]["body"],
            serde_json::json!({"arrayValue": {"values": []}})
        );
        assert_eq!(
            lrs[12]["body"],
            serde_json::json!({"kvlistValue": {"values": []}})
        );
        // Member order and duplicates are kept in the text.
        let text = String::from_utf8(body).unwrap();
        let b = text.find("{\"key\":\"b\"").unwrap();
        let a = text.find("{\"key\":\"a\"").unwrap();
        assert!(b < a);
        assert_eq!(text.matches("{\"key\":\"a\"").count(), 2);
    }

    /// The body's size is the fixed cost plus each record's cost: exact in JSON but for the
    /// one spare comma, within 8 bytes in protobuf, never below.
    #[test]
    fn costs_bound_the_body_size() {
        for proto in [false, true] {
            let enc = encoder(proto);
            let all = records();
            for n in [0, 1, 2, all.len()] {
                let r = &all[..n];
                let body = enc.encode(r).len() as u64;
                let costs: u64 = r.iter().map(|x| enc.record_cost(x)).sum();
                let planned = enc.fixed_cost() + costs;
                assert!(planned >= body, "proto={proto} n={n}: {planned} < {body}");
                assert!(
                    planned - body <= 8,
                    "proto={proto} n={n}: {planned} vs {body}"
                );
                if !proto && n > 0 {
                    assert_eq!(planned, body + 1, "json is exact but for the spare comma");
                }
            }
            // Extremes of seq and ts, and a large record whose length prefix is long.
            let big = format!("[{}]", vec!["123456789"; 20_000].join(","));
            let big: &'static str = Box::leak(big.into_boxed_str());
            for (seq, ts) in [(1u64, 0i64), (u64::MAX, i64::MAX), (99, -5), (1 << 40, 1)] {
                let r = [RecordRef {
                    instance: INST,
                    seq,
                    ts_ms: ts,
                    data: big.as_bytes(),
                    clock: ClockMark::Valid,
                }];
                let body = enc.encode(&r).len() as u64;
                let planned = enc.fixed_cost() + enc.record_cost(&r[0]);
                assert!(
                    planned >= body && planned - body <= 8,
                    "proto={proto} {seq} {ts}: {planned} vs {body}"
                );
            }
        }
    }

    #[test]
    fn a_clock_mark_is_the_edgebuf_clock_attribute_in_both_encodings() {
        let mut r = vec![rec(1, "{\"a\":1}"), rec(2, "{\"a\":2}"), rec(3, "[]")];
        r[0].clock = ClockMark::Repaired;
        r[2].clock = ClockMark::Unset;
        let words = [Some("repaired"), None, Some("unset")];
        let v: serde_json::Value =
            serde_json::from_slice(&encoder(false).encode(&r)).expect("valid JSON");
        let lrs = v["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
            .as_array()
            .expect("logRecords");
        let proto = ExportLogsServiceRequest::decode(encoder(true).encode(&r).as_slice())
            .expect("protobuf decodes");
        let plrs = &proto.resource_logs[0].scope_logs[0].log_records;
        for (i, word) in words.iter().enumerate() {
            let attrs = lrs[i]["attributes"].as_array().expect("attributes");
            let clock = attrs.iter().find(|a| a["key"] == "edgebuf.clock");
            assert_eq!(
                clock.map(|a| a["value"]["stringValue"].as_str()),
                word.map(Some),
                "json record {i}"
            );
            let pclock = plrs[i].attributes.iter().find(|a| a.key == "edgebuf.clock");
            assert_eq!(
                pclock.and_then(|a| a.value.clone()),
                word.map(|w| AnyValue {
                    value: Some(Value::StringValue(w.to_string()))
                }),
                "proto record {i}"
            );
        }
        for proto in [false, true] {
            let enc = encoder(proto);
            let planned = enc.fixed_cost() + r.iter().map(|x| enc.record_cost(x)).sum::<u64>();
            let body = enc.encode(&r).len() as u64;
            assert!(
                planned >= body && planned - body <= 8,
                "{planned} vs {body}"
            );
        }
    }

    #[test]
    fn deep_records_encode() {
        let deep = format!("{}1{}", "[".repeat(128), "]".repeat(128));
        let v = any_value(deep.as_bytes());
        let mut depth = 0;
        let mut cur = &v;
        while let Some(Value::ArrayValue(a)) = &cur.value {
            depth += 1;
            cur = &a.values[0];
        }
        assert_eq!(depth, 128);
        assert_eq!(cur.value, Some(Value::IntValue(1)));
        let mut out = Vec::new();
        json_any(&mut out, &v);
        serde_json::from_slice::<serde_json::Value>(&out).ok();
    }

    #[test]
    fn partial_success_in_both_encodings() {
        let resp = ExportLogsServiceResponse {
            partial_success: Some(ExportLogsPartialSuccess {
                rejected_log_records: 3,
                error_message: "3 records had\nno \u{e9}body".into(),
            }),
        };
        assert_eq!(
            partial_success(true, &resp.encode_to_vec()),
            Some(Rejected {
                count: 3,
                message: "3 records had?no ?body".into()
            })
        );
        let json = br#"{"partialSuccess":{"rejectedLogRecords":"5","errorMessage":"too old"}}"#;
        assert_eq!(
            partial_success(false, json),
            Some(Rejected {
                count: 5,
                message: "too old".into()
            })
        );
        let long = format!(
            r#"{{"partialSuccess":{{"rejectedLogRecords":2,"errorMessage":"{}"}}}}"#,
            "x".repeat(500)
        );
        let r = partial_success(false, long.as_bytes()).unwrap();
        assert_eq!((r.count, r.message.len()), (2, 200));
        for none in [
            &b""[..],
            b"{}",
            br#"{"partialSuccess":{}}"#,
            br#"{"partialSuccess":{"rejectedLogRecords":"0","errorMessage":"w"}}"#,
            br#"{"partialSuccess":{"rejectedLogRecords":"-1"}}"#,
            b"not json",
        ] {
            assert_eq!(
                partial_success(false, none),
                None,
                "{:?}",
                String::from_utf8_lossy(none)
            );
        }
        assert_eq!(partial_success(true, b""), None);
        assert_eq!(
            partial_success(true, &ExportLogsServiceResponse::default().encode_to_vec()),
            None
        );
        assert_eq!(partial_success(true, b"\xff\xff\xff"), None);
    }
}
