//! A record's JSON straight into OTLP's `AnyValue` (docs/reference.md, the wire, OTLP), in the
//! protobuf encoding or in OTLP's JSON mapping: one pass of serde_json's parser over the stored
//! bytes, writing as it reads, with no tree in between and no allocation but the output's.
//!
//! Values map as in `otlp.rs`: null is an empty `AnyValue`, integers that fit an `i64` are
//! `intValue`, other numbers `doubleValue` (serde_json's classification, with the
//! `float_roundtrip` parser: each double is the correctly rounded value of its text), objects
//! are `kvlistValue`s keeping member order and duplicates. The protobuf writer also holds the
//! few helpers the `LogRecord` and the request around it are written with.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// Writes `data` (one JSON value, read by serde_json's parser: what
/// [`Sink::string_unescaped`] relies on) as an `AnyValue` through `sink`: in protobuf the message's
/// fields (the caller writes the tag and length around them), in JSON the object. A record
/// that does not parse, or nests deeper than a record may (a damaged row that passed the
/// checks), travels as a string of its bytes.
pub(crate) fn any_value<S: Sink>(sink: &mut S, data: &[u8]) {
    let start = sink.out().len();
    // Valid UTF-8 first, in one go: serde_json's str reader then need not check each string
    // again. (Invalid UTF-8 can only be inside a string, which serde_json would refuse.)
    let parsed = std::str::from_utf8(data).ok().is_some_and(|text| {
        let mut de = serde_json::Deserializer::from_str(text);
        // The depth is bounded here (Val), at the depth records are checked for when logged;
        // serde_json's own limit would refuse the deepest of them.
        de.disable_recursion_limit();
        Val {
            sink: &mut *sink,
            depth: 0,
        }
        .deserialize(&mut de)
        .and_then(|()| de.end())
        .is_ok()
    });
    if !parsed {
        sink.out().truncate(start);
        sink.string(&String::from_utf8_lossy(data));
    }
}

/// One encoding of `AnyValue`s, written as the parser meets the value's parts.
pub(crate) trait Sink {
    /// Where an array, object or member began, to finish it.
    type Mark: Copy;
    fn out(&mut self) -> &mut Vec<u8>;
    fn null(&mut self);
    fn bool(&mut self, v: bool);
    fn int(&mut self, v: i64);
    fn double(&mut self, v: f64);
    fn string(&mut self, v: &str);
    /// A string that needs no escaping in JSON: it was not escaped in the record (serde_json
    /// hands such a string over borrowed, and refuses control characters in strings, as the
    /// check when logged does).
    fn string_unescaped(&mut self, v: &str) {
        self.string(v)
    }
    fn array_begin(&mut self) -> Self::Mark;
    fn element_begin(&mut self, first: bool) -> Self::Mark;
    fn element_end(&mut self, m: Self::Mark);
    fn array_end(&mut self, m: Self::Mark);
    fn map_begin(&mut self) -> Self::Mark;
    /// `unescaped`: `key` needs no escaping in JSON (see [`Sink::string_unescaped`]).
    fn member_begin(&mut self, first: bool, key: &str, unescaped: bool) -> Self::Mark;
    fn member_end(&mut self, m: Self::Mark);
    fn map_end(&mut self, m: Self::Mark);
}

// ---------------------------------------------------------------------------------------------
// Protobuf
// ---------------------------------------------------------------------------------------------

/// Field tags (field number << 3 | wire type) of `AnyValue`, `ArrayValue`, `KeyValueList` and
/// `KeyValue`.
const ANY_STRING: u8 = 1 << 3 | 2;
const ANY_BOOL: u8 = 2 << 3;
const ANY_INT: u8 = 3 << 3;
const ANY_DOUBLE: u8 = 4 << 3 | 1;
const ANY_ARRAY: u8 = 5 << 3 | 2;
const ANY_KVLIST: u8 = 6 << 3 | 2;
/// `ArrayValue.values`, `KeyValueList.values`, `KeyValue.key`.
const FIELD_1_LEN: u8 = 1 << 3 | 2;
/// `KeyValue.value`.
const FIELD_2_LEN: u8 = 2 << 3 | 2;

/// `AnyValue`s in protobuf, appended to a buffer. `hint`: about how long the value is (its
/// JSON's length), for the length prefix of an array or object at the top.
pub(crate) struct Proto<'a>(pub &'a mut Vec<u8>, pub usize);

pub(crate) fn varint(out: &mut Vec<u8>, mut v: u64) {
    if v < 0x80 {
        out.push(v as u8);
        return;
    }
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Starts a length-delimited field: its tag and one byte of length, which [`close`] corrects.
/// Returns where the field's content starts.
pub(crate) fn open(out: &mut Vec<u8>, tag: u8) -> usize {
    out.extend_from_slice(&[tag, 0]);
    out.len()
}

/// Ends the field [`open`] started at `start`: writes its length, moving the content when the
/// length takes more than one byte.
pub(crate) fn close(out: &mut Vec<u8>, start: usize) {
    let n = out.len() - start;
    if n < 0x80 {
        out[start - 1] = n as u8;
        return;
    }
    close_sized(out, Sized { start, reserved: 1 });
}

/// A length-delimited field begun by [`open_sized`].
#[derive(Clone, Copy)]
pub(crate) struct Sized {
    /// Where the content starts.
    start: usize,
    /// The bytes kept for its length.
    reserved: usize,
}

/// [`open`] for a field whose length is about `hint`: keeps the bytes that length takes, so
/// that [`close_sized`] seldom moves the content.
pub(crate) fn open_sized(out: &mut Vec<u8>, tag: u8, hint: usize) -> Sized {
    let reserved = varint_len(hint as u64);
    out.push(tag);
    out.extend_from_slice(&[0; 10][..reserved]);
    Sized {
        start: out.len(),
        reserved,
    }
}

/// Ends the field [`open_sized`] began: writes its length (the shortest varint), moving the
/// content if that takes more or fewer bytes than were kept.
pub(crate) fn close_sized(out: &mut Vec<u8>, f: Sized) {
    let Sized { start, reserved } = f;
    let n = out.len() - start;
    if n < 0x80 && reserved == 1 {
        out[start - 1] = n as u8;
        return;
    }
    let k = varint_len(n as u64);
    let end = out.len();
    if k > reserved {
        out.resize(end + k - reserved, 0);
        out.copy_within(start..end, start + k - reserved);
    } else if k < reserved {
        out.copy_within(start..end, start - (reserved - k));
        out.truncate(end - (reserved - k));
    }
    let mut v = n as u64;
    let at = start - reserved;
    for b in &mut out[at..at + k] {
        *b = v as u8 | 0x80;
        v >>= 7;
    }
    out[at + k - 1] &= 0x7f;
}

/// A length-delimited field holding `bytes`.
pub(crate) fn bytes_field(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    out.reserve(bytes.len() + 11);
    out.push(tag);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

impl Proto<'_> {
    /// A field for an array or object: sized by the hint at the top (then no more).
    fn open_value(&mut self, tag: u8) -> (Sized, usize) {
        let hint = std::mem::take(&mut self.1);
        (open_sized(self.0, tag, hint), 0)
    }
}

impl Sink for Proto<'_> {
    /// An array's or object's field, or a member's: (the member's `KeyValue`, where its value
    /// starts).
    type Mark = (Sized, usize);
    fn out(&mut self) -> &mut Vec<u8> {
        self.0
    }
    fn null(&mut self) {}
    fn bool(&mut self, v: bool) {
        self.0.extend_from_slice(&[ANY_BOOL, u8::from(v)]);
    }
    fn int(&mut self, v: i64) {
        self.0.push(ANY_INT);
        varint(self.0, v as u64);
    }
    fn double(&mut self, v: f64) {
        self.0.push(ANY_DOUBLE);
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn string(&mut self, v: &str) {
        bytes_field(self.0, ANY_STRING, v.as_bytes());
    }
    fn array_begin(&mut self) -> Self::Mark {
        self.open_value(ANY_ARRAY)
    }
    fn element_begin(&mut self, _first: bool) -> Self::Mark {
        (open_sized(self.0, FIELD_1_LEN, 0), 0)
    }
    fn element_end(&mut self, m: Self::Mark) {
        close_sized(self.0, m.0);
    }
    fn array_end(&mut self, m: Self::Mark) {
        close_sized(self.0, m.0);
    }
    fn map_begin(&mut self) -> Self::Mark {
        self.open_value(ANY_KVLIST)
    }
    fn member_begin(&mut self, _first: bool, key: &str, _unescaped: bool) -> Self::Mark {
        let kv = open_sized(self.0, FIELD_1_LEN, 0);
        // proto3 leaves a string field at its default (empty) out.
        if !key.is_empty() {
            bytes_field(self.0, FIELD_1_LEN, key.as_bytes());
        }
        (kv, open(self.0, FIELD_2_LEN))
    }
    fn member_end(&mut self, m: Self::Mark) {
        close(self.0, m.1);
        close_sized(self.0, m.0);
    }
    fn map_end(&mut self, m: Self::Mark) {
        close_sized(self.0, m.0);
    }
}

// ---------------------------------------------------------------------------------------------
// OTLP's JSON mapping: lowerCamelCase field names, 64-bit integers as decimal strings.
// ---------------------------------------------------------------------------------------------

/// `AnyValue`s in OTLP's JSON mapping, appended to a buffer.
pub(crate) struct Json<'a>(pub &'a mut Vec<u8>);

/// `s` as a JSON string, quotes included.
pub(crate) fn json_str(out: &mut Vec<u8>, s: &str) {
    // Writing a str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

pub(crate) fn json_i64(out: &mut Vec<u8>, v: i64) {
    use serde_json::ser::Formatter;
    // Writing into a Vec cannot fail.
    let _ = serde_json::ser::CompactFormatter.write_i64(out, v);
}

pub(crate) fn json_u64(out: &mut Vec<u8>, v: u64) {
    use serde_json::ser::Formatter;
    // Writing into a Vec cannot fail.
    let _ = serde_json::ser::CompactFormatter.write_u64(out, v);
}

impl Sink for Json<'_> {
    type Mark = ();
    fn out(&mut self) -> &mut Vec<u8> {
        self.0
    }
    fn null(&mut self) {
        self.0.extend_from_slice(b"{}");
    }
    fn bool(&mut self, v: bool) {
        self.0.extend_from_slice(if v {
            b"{\"boolValue\":true}"
        } else {
            b"{\"boolValue\":false}"
        });
    }
    fn int(&mut self, v: i64) {
        self.0.extend_from_slice(b"{\"intValue\":\"");
        json_i64(self.0, v);
        self.0.extend_from_slice(b"\"}");
    }
    fn double(&mut self, v: f64) {
        self.0.extend_from_slice(b"{\"doubleValue\":");
        if v.is_finite() {
            use serde_json::ser::Formatter;
            // Writing into a Vec cannot fail.
            let _ = serde_json::ser::CompactFormatter.write_f64(self.0, v);
        } else {
            // Not reachable from a valid record (I-JSON); the mapping's spelling.
            self.0.extend_from_slice(if v.is_nan() {
                b"\"NaN\""
            } else if v > 0.0 {
                b"\"Infinity\""
            } else {
                b"\"-Infinity\""
            });
        }
        self.0.push(b'}');
    }
    fn string(&mut self, v: &str) {
        self.0.extend_from_slice(b"{\"stringValue\":");
        json_str(self.0, v);
        self.0.push(b'}');
    }
    fn string_unescaped(&mut self, v: &str) {
        self.0.extend_from_slice(b"{\"stringValue\":\"");
        self.0.extend_from_slice(v.as_bytes());
        self.0.extend_from_slice(b"\"}");
    }
    fn array_begin(&mut self) {
        self.0.extend_from_slice(b"{\"arrayValue\":{\"values\":[");
    }
    fn element_begin(&mut self, first: bool) {
        if !first {
            self.0.push(b',');
        }
    }
    fn element_end(&mut self, _: ()) {}
    fn array_end(&mut self, _: ()) {
        self.0.extend_from_slice(b"]}}");
    }
    fn map_begin(&mut self) {
        self.0.extend_from_slice(b"{\"kvlistValue\":{\"values\":[");
    }
    fn member_begin(&mut self, first: bool, key: &str, unescaped: bool) {
        if !first {
            self.0.push(b',');
        }
        if unescaped {
            self.0.extend_from_slice(b"{\"key\":\"");
            self.0.extend_from_slice(key.as_bytes());
            self.0.extend_from_slice(b"\",\"value\":");
        } else {
            self.0.extend_from_slice(b"{\"key\":");
            json_str(self.0, key);
            self.0.extend_from_slice(b",\"value\":");
        }
    }
    fn member_end(&mut self, _: ()) {
        self.0.push(b'}');
    }
    fn map_end(&mut self, _: ()) {
        self.0.extend_from_slice(b"]}}");
    }
}

// ---------------------------------------------------------------------------------------------
// The parser's side: one value, written through the sink as it is read.
// ---------------------------------------------------------------------------------------------

/// One JSON value at `depth` arrays or objects down.
struct Val<'s, S> {
    sink: &'s mut S,
    depth: usize,
}

impl<S: Sink> Val<'_, S> {
    /// The depth of an array or object that starts here, if a record may nest that deep.
    fn nested<E: de::Error>(&self) -> Result<usize, E> {
        let d = self.depth + 1;
        if d > crate::record::MAX_DEPTH {
            return Err(E::custom("deeper than a record may nest"));
        }
        Ok(d)
    }
}

impl<'de, S: Sink> DeserializeSeed<'de> for Val<'_, S> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, S: Sink> Visitor<'de> for Val<'_, S> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.sink.null();
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.sink.bool(v);
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.sink.int(v);
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        match i64::try_from(v) {
            Ok(i) => self.sink.int(i),
            Err(_) => self.sink.double(v as f64),
        }
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.sink.double(v);
        Ok(())
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.sink.string(v);
        Ok(())
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<(), E> {
        self.sink.string_unescaped(v);
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let depth = self.nested()?;
        let m = self.sink.array_begin();
        let mut first = true;
        while seq
            .next_element_seed(Element {
                sink: &mut *self.sink,
                depth,
                first,
            })?
            .is_some()
        {
            first = false;
        }
        self.sink.array_end(m);
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let depth = self.nested()?;
        let m = self.sink.map_begin();
        let mut first = true;
        while let Some(member) = map.next_key_seed(Key {
            sink: &mut *self.sink,
            first,
        })? {
            map.next_value_seed(Val {
                sink: &mut *self.sink,
                depth,
            })?;
            self.sink.member_end(member);
            first = false;
        }
        self.sink.map_end(m);
        Ok(())
    }
}

/// An array's element (begun only once the parser has found one).
struct Element<'s, S> {
    sink: &'s mut S,
    depth: usize,
    first: bool,
}

impl<'de, S: Sink> DeserializeSeed<'de> for Element<'_, S> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        let e = self.sink.element_begin(self.first);
        Val {
            sink: &mut *self.sink,
            depth: self.depth,
        }
        .deserialize(d)?;
        self.sink.element_end(e);
        Ok(())
    }
}

/// An object member's key: begins the member.
struct Key<'s, S> {
    sink: &'s mut S,
    first: bool,
}

impl<'de, S: Sink> DeserializeSeed<'de> for Key<'_, S> {
    type Value = S::Mark;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Mark, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de, S: Sink> Visitor<'de> for Key<'_, S> {
    type Value = S::Mark;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a member name")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<S::Mark, E> {
        Ok(self.sink.member_begin(self.first, v, false))
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<S::Mark, E> {
        Ok(self.sink.member_begin(self.first, v, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BENCH: &str = r#"{"model":"mobilenet-v3-small","model_version":"2026.11.3","input_sha256":"9e3779b97f4a7c15deadbeefdeadbeef","frame":1,"scores":[0.00100,0.99900,0.00050,0.00033,0.00025],"argmax":1,"latency_us":1201,"device":"cam-07","temperature_c":41.5}"#;

    /// The serde_json path alone (what `any_value` falls back to).
    fn slow<S: Sink>(sink: &mut S, data: &[u8]) {
        let mut de = serde_json::Deserializer::from_slice(data);
        de.disable_recursion_limit();
        Val { sink, depth: 0 }
            .deserialize(&mut de)
            .and_then(|()| de.end())
            .expect("JSON");
    }

    /// `cargo test --release --lib transcode_speed -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn transcode_speed() {
        let time = |what: &str, f: &mut dyn FnMut(&mut Vec<u8>)| {
            let mut best = f64::MAX;
            let mut out = Vec::with_capacity(1 << 20);
            for _ in 0..20 {
                let t = std::time::Instant::now();
                for _ in 0..5000 {
                    out.clear();
                    f(&mut out);
                }
                best = best.min(t.elapsed().as_secs_f64() * 1e6 / 5000.0);
            }
            println!("{what}: {best:.3} us/record");
        };
        let d = BENCH.as_bytes();
        time("any_value proto", &mut |o| {
            any_value(&mut Proto(o, d.len()), d)
        });
        time("serde proto", &mut |o| slow(&mut Proto(o, d.len()), d));
        time("any_value json", &mut |o| any_value(&mut Json(o), d));
        time("serde json", &mut |o| slow(&mut Json(o), d));
        time("parse f64 x6", &mut |o| {
            for t in [
                "0.00100", "0.99900", "0.00050", "0.00033", "0.00025", "41.5",
            ] {
                o.push(t.parse::<f64>().map_or(0, |v| v as u8));
            }
        });
    }
}
