//! A record's JSON straight into OTLP's `AnyValue` (docs/reference.md, the wire, OTLP), in the
//! protobuf encoding or in OTLP's JSON mapping: one pass over the stored bytes, writing as it
//! reads, with no tree in between and no allocation but the output's.
//!
//! Two readers feed the same [`Sink`]. serde_json's parser reads every record. In front of it,
//! [`Fast`] reads the common case, a record without escapes in its strings, in a third of the
//! time (`cargo test --release --lib transcode_speed -- --ignored --nocapture`): the records were
//! checked with serde_json when logged, so the bytes are known JSON, and reading strings in place
//! and numbers with the standard library is all the work. At anything else (an escape, or bytes
//! that are not JSON after all: a damaged row) it gives up and serde_json reads the record from
//! the start. Both make the same calls on the sink in the same order; a test compares them on
//! generated records.
//!
//! Values map as in `otlp.rs`: null is an empty `AnyValue`, integers that fit an `i64` are
//! `intValue`, other numbers `doubleValue` (serde_json's classification, with the
//! `float_roundtrip` parser: each double is the correctly rounded value of its text), objects
//! are `kvlistValue`s keeping member order and duplicates. The protobuf writer also holds the
//! few helpers the `LogRecord` and the request around it are written with.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// Writes `data` (one JSON value, read by the fast reader or by serde_json's parser: what
/// [`Sink::string_unescaped`] relies on) as an `AnyValue` through `sink`: in protobuf the message's
/// fields (the caller writes the tag and length around them), in JSON the object. A record
/// that does not parse, or nests deeper than a record may (a damaged row that passed the
/// checks), travels as a string of its bytes.
pub(crate) fn any_value<S: Sink>(sink: &mut S, data: &[u8]) {
    read_value(sink, data, true)
}

/// [`any_value`], with the fast reader in front of serde_json's or not (the tests' reference).
fn read_value<S: Sink>(sink: &mut S, data: &[u8], fast: bool) {
    let start = sink.out().len();
    // Valid UTF-8 first, in one go: neither reader need check each string again. (Invalid
    // UTF-8 can only be inside a string, which serde_json would refuse.)
    let parsed = std::str::from_utf8(data).ok().is_some_and(|text| {
        if fast && Fast::read(&mut *sink, text).is_some() {
            return true;
        }
        sink.out().truncate(start);
        serde_read(sink, text)
    });
    if !parsed {
        sink.out().truncate(start);
        sink.string(&String::from_utf8_lossy(data));
    }
}

/// serde_json's reading of `text` through `sink`; false when it is not one JSON value a record
/// may be.
fn serde_read<S: Sink>(sink: &mut S, text: &str) -> bool {
    let mut de = serde_json::Deserializer::from_str(text);
    // The depth is bounded here (Val), at the depth records are checked for when logged;
    // serde_json's own limit would refuse the deepest of them.
    de.disable_recursion_limit();
    Val { sink, depth: 0 }
        .deserialize(&mut de)
        .and_then(|()| de.end())
        .is_ok()
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
    out.push(0);
    if reserved > 1 {
        out.resize(out.len() + reserved - 1, 0);
    }
    Sized {
        start: out.len(),
        reserved,
    }
}

/// Ends the field [`open_sized`] began: writes its length (the shortest varint), moving the
/// content if that takes more or fewer bytes than were kept.
#[inline]
pub(crate) fn close_sized(out: &mut Vec<u8>, f: Sized) {
    let n = out.len() - f.start;
    if n < 0x80 && f.reserved == 1 {
        out[f.start - 1] = n as u8;
        return;
    }
    resize_length(out, f);
}

/// [`close_sized`] when the length takes other than the one byte kept (out of line: the
/// common case is the one above).
#[cold]
#[inline(never)]
fn resize_length(out: &mut Vec<u8>, f: Sized) {
    let Sized { start, reserved } = f;
    let n = out.len() - start;
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
#[inline]
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
// The fast reader: known JSON without escapes.
// ---------------------------------------------------------------------------------------------

/// Reads a record's JSON (RFC 8259, as serde_json takes it) through a sink, for records whose
/// strings hold no escapes. `None`: it met something it leaves to serde_json (an escape, a
/// number out of a double's range, nesting deeper than a record may, or text that is not JSON);
/// what it wrote by then is to be thrown away.
struct Fast<'t, 's, S> {
    text: &'t str,
    at: usize,
    sink: &'s mut S,
}

impl<'t, S: Sink> Fast<'t, '_, S> {
    fn read(sink: &mut S, text: &'t str) -> Option<()> {
        let mut f = Fast { text, at: 0, sink };
        f.space();
        f.value(0)?;
        f.space();
        (f.at == text.len()).then_some(())
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    /// A value at `depth` arrays or objects down (as `Val`), its first byte at `at`.
    fn value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'{' => self.object(depth + 1),
            b'[' => self.array(depth + 1),
            b'"' => {
                let s = self.string()?;
                self.sink.string_unescaped(s);
                Some(())
            }
            b't' => self.word("true").map(|()| self.sink.bool(true)),
            b'f' => self.word("false").map(|()| self.sink.bool(false)),
            b'n' => self.word("null").map(|()| self.sink.null()),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn word(&mut self, w: &str) -> Option<()> {
        let end = self.at + w.len();
        (self.text.as_bytes().get(self.at..end)? == w.as_bytes()).then(|| self.at = end)
    }

    /// A string without escapes, its opening quote at `at`; its text, in place.
    fn string(&mut self) -> Option<&'t str> {
        let start = self.at + 1;
        let end = string_end(self.text.as_bytes(), start);
        // An escape (serde_json's to read), a control character (not JSON) or the end.
        if self.text.as_bytes().get(end) != Some(&b'"') {
            return None;
        }
        self.at = end + 1;
        // Both ends are at quotes, so at character boundaries.
        self.text.get(start..end)
    }

    /// A number, classified as serde_json classifies it: without a fraction or an exponent,
    /// an integer that fits an `i64` is an integer; every other number is the double nearest
    /// its text (what serde_json's `float_roundtrip` parser and `visit_u64` below make of it),
    /// except `-0`, which serde_json reads as the double -0.0.
    fn number(&mut self) -> Option<()> {
        let b = self.text.as_bytes();
        let start = self.at;
        let negative = b[start] == b'-';
        let mut i = start + usize::from(negative);
        // The digits of the integer and fraction parts as one integer, exact while there are
        // at most 19 of them (any 19 digits fit a u64), and how many there are.
        let (mut mantissa, mut count) = (0u64, 0usize);
        let mut digits = |i: &mut usize| {
            let from = *i;
            while let Some(d @ b'0'..=b'9') = b.get(*i).copied() {
                mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(d - b'0'));
                *i += 1;
            }
            count += *i - from;
            *i - from
        };
        if b.get(i) == Some(&b'0') {
            i += 1;
        } else if digits(&mut i) == 0 {
            return None;
        }
        let mut float = false;
        let mut fraction = 0;
        if b.get(i) == Some(&b'.') {
            i += 1;
            fraction = digits(&mut i);
            if fraction == 0 {
                return None;
            }
            float = true;
        }
        let mut exponent: Option<i64> = Some(0);
        if let Some(b'e' | b'E') = b.get(i) {
            i += 1;
            let minus = b.get(i) == Some(&b'-');
            if let Some(b'+' | b'-') = b.get(i) {
                i += 1;
            }
            let from = i;
            while let Some(d @ b'0'..=b'9') = b.get(i).copied() {
                exponent = exponent
                    .and_then(|e| e.checked_mul(10))
                    .and_then(|e| e.checked_add(i64::from(d - b'0')));
                i += 1;
            }
            if i == from {
                return None;
            }
            exponent = exponent.map(|e| if minus { -e } else { e });
            float = true;
        }
        self.at = i;
        let mantissa = (count <= 19).then_some(mantissa);
        if !float {
            match mantissa {
                Some(m) if !negative && m <= i64::MAX as u64 => {
                    self.sink.int(m as i64);
                    return Some(());
                }
                // Down to i64::MIN (2^63 as an i64 is i64::MIN, and negates to itself).
                Some(m) if negative && m != 0 && m <= 1 << 63 => {
                    self.sink.int((m as i64).wrapping_neg());
                    return Some(());
                }
                _ => {}
            }
        }
        let scale = exponent.and_then(|e| e.checked_sub(fraction as i64));
        let v = match (mantissa, scale) {
            // Exact: the mantissa and the power of ten are both doubles, so one division or
            // multiplication rounds once, correctly (Clinger's fast path).
            (Some(m), Some(s)) if m <= 1 << 53 && (-22..=22).contains(&s) => {
                let p = POW10[s.unsigned_abs() as usize];
                let v = if s < 0 { m as f64 / p } else { m as f64 * p };
                if negative {
                    -v
                } else {
                    v
                }
            }
            _ => self.text.get(start..i)?.parse().ok()?,
        };
        // serde_json refuses numbers beyond a double's range: so does its reading here.
        if !v.is_finite() {
            return None;
        }
        self.sink.double(v);
        Some(())
    }

    fn array(&mut self, depth: usize) -> Option<()> {
        if depth > crate::record::MAX_DEPTH {
            return None;
        }
        let m = self.sink.array_begin();
        let (mut more, mut first) = (self.first_item(b']')?, true);
        while more {
            let e = self.sink.element_begin(first);
            self.value(depth)?;
            self.sink.element_end(e);
            first = false;
            more = self.next_item(b']')?;
        }
        self.sink.array_end(m);
        Some(())
    }

    fn object(&mut self, depth: usize) -> Option<()> {
        if depth > crate::record::MAX_DEPTH {
            return None;
        }
        let m = self.sink.map_begin();
        let (mut more, mut first) = (self.first_item(b'}')?, true);
        while more {
            if self.peek()? != b'"' {
                return None;
            }
            let key = self.string()?;
            let member = self.sink.member_begin(first, key, true);
            self.space();
            if self.peek()? != b':' {
                return None;
            }
            self.at += 1;
            self.space();
            self.value(depth)?;
            self.sink.member_end(member);
            first = false;
            more = self.next_item(b'}')?;
        }
        self.sink.map_end(m);
        Some(())
    }

    /// Past the opening bracket at `at`: whether an item follows (else past the empty
    /// array's or object's `close`).
    fn first_item(&mut self, close: u8) -> Option<bool> {
        self.at += 1;
        self.space();
        if self.peek()? == close {
            self.at += 1;
            return Some(false);
        }
        Some(true)
    }

    /// After an item: whether another follows (past the comma), or the `close` (past it).
    fn next_item(&mut self, close: u8) -> Option<bool> {
        self.space();
        match self.peek()? {
            b',' => {
                self.at += 1;
                self.space();
                Some(true)
            }
            c if c == close => {
                self.at += 1;
                Some(false)
            }
            _ => None,
        }
    }
}

/// Powers of ten that are doubles exactly.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// The index of the first `"`, `\` or control character in `b` at or after `i` (`b.len()` if
/// none), eight bytes at a time.
fn string_end(b: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // The high bit of each byte of `x` below `n` (n <= 0x80): exact for the lowest such byte,
    // which is all that is asked of it (borrows only reach the bytes above it).
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH;
    while let Some(chunk) = b.get(i..i + 8) {
        let mut eight = [0u8; 8];
        eight.copy_from_slice(chunk);
        let x = u64::from_le_bytes(eight);
        let hits = below(x ^ (ONES * u64::from(b'"')), 1)
            | below(x ^ (ONES * u64::from(b'\\')), 1)
            | below(x, 0x20);
        if hits != 0 {
            return i + (hits.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&c) = b.get(i) {
        if c == b'"' || c == b'\\' || c < 0x20 {
            return i;
        }
        i += 1;
    }
    i
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
        assert!(serde_read(sink, std::str::from_utf8(data).expect("UTF-8")));
    }

    /// Numbers at the edges of serde_json's classification and of a double's range, and
    /// spellings that are not JSON numbers.
    const NUMBERS: &[&str] = &[
        "0",
        "-0",
        "-0.0",
        "0.0",
        "1",
        "-1",
        "12",
        "0.1",
        "1E5",
        "1e+5",
        "1e-5",
        "-1.5e-3",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775808",
        "-9223372036854775809",
        "18446744073709551615",
        "18446744073709551616",
        "-18446744073709551616",
        "123456789012345678901234567890",
        "1e400",
        "-1e400",
        "1e-400",
        "1.7976931348623157e308",
        "1.7976931348623159e308",
        "2.2250738585072014e-308",
        "4.9e-324",
        "2.4703282292062327e-324",
        "0.30000000000000004",
        "01",
        "1.",
        ".5",
        "-",
        "+1",
        "1e",
        "1e+",
        "0x10",
        "-a",
        "NaN",
        "Infinity",
        "1.5.2",
        "--1",
    ];
    /// String contents (between the quotes): plain, escaped, raw Unicode, and not JSON.
    const STRINGS: &[&str] = &[
        "",
        "a",
        "model",
        r"caf\u00e9",
        "caf\u{e9}",
        "\u{65e5}\u{672c}",
        r"\ud83d\ude00",
        r"a\nb",
        r#"q\\\""#,
        r"tab\t",
        r"\u0000",
        "raw\u{1f}",
        "x\u{1}y",
        r"\x",
        r"\ud800",
    ];

    /// A random JSON-ish text: mostly JSON, with the corner cases above.
    fn gen(rng: &mut fastrand::Rng, depth: usize, out: &mut String) {
        let ws = |rng: &mut fastrand::Rng, out: &mut String| {
            if rng.u8(..8) == 0 {
                out.push_str([" ", "\n", "\t", "\r", "  "][rng.usize(..5)]);
            }
        };
        ws(rng, out);
        match if depth > 4 { rng.u8(..6) } else { rng.u8(..8) } {
            0 => out.push_str(["null", "true", "false"][rng.usize(..3)]),
            1 | 2 => out.push_str(NUMBERS[rng.usize(..NUMBERS.len())]),
            3 | 4 => {
                out.push('"');
                out.push_str(STRINGS[rng.usize(..STRINGS.len())]);
                out.push('"');
            }
            5 if rng.bool() => out.push_str(&rng.i64(..).to_string()),
            5 => {
                // A decimal: up to 20 digits, a fraction and an exponent, at the edges of the
                // exact fast path (17 significant digits, powers of ten up to 22) and past them.
                if rng.bool() {
                    out.push('-');
                }
                let digits = |rng: &mut fastrand::Rng, out: &mut String, n: usize| {
                    for _ in 0..n {
                        out.push(char::from(b'0' + rng.u8(..10)));
                    }
                };
                out.push(char::from(b'1' + rng.u8(..9)));
                let n = rng.usize(..20);
                digits(rng, out, n);
                if rng.bool() {
                    out.push('.');
                    let n = rng.usize(1..20);
                    digits(rng, out, n);
                }
                if rng.bool() {
                    out.push(['e', 'E'][rng.usize(..2)]);
                    out.push_str(["", "+", "-"][rng.usize(..3)]);
                    out.push_str(&rng.u32(..30).to_string());
                }
            }
            6 => {
                out.push('[');
                for k in 0..rng.usize(..5) {
                    if k > 0 {
                        out.push(',');
                    }
                    gen(rng, depth + 1, out);
                }
                out.push(']');
            }
            _ => {
                out.push('{');
                for k in 0..rng.usize(..5) {
                    if k > 0 {
                        out.push(',');
                    }
                    ws(rng, out);
                    out.push('"');
                    out.push_str(STRINGS[rng.usize(..STRINGS.len())]);
                    out.push('"');
                    ws(rng, out);
                    out.push(':');
                    gen(rng, depth + 1, out);
                }
                out.push('}');
            }
        }
        ws(rng, out);
    }

    /// The fast reader writes exactly what serde_json's reading writes, in both encodings,
    /// for generated records, damaged copies of them and nesting at and past the limit; and
    /// it reads most of them itself.
    #[test]
    fn fast_reader_writes_what_serde_json_reading_writes() {
        let mut rng = fastrand::Rng::with_seed(0x0e1f);
        let mut inputs: Vec<Vec<u8>> = vec![BENCH.into()];
        for n in NUMBERS {
            inputs.push(n.as_bytes().into());
            inputs.push(format!("[{n}]").into_bytes());
            inputs.push(format!("{{\"k\": {n} }}").into_bytes());
        }
        let max = crate::record::MAX_DEPTH;
        for d in [max - 1, max, max + 1] {
            inputs.push(format!("{}1{}", "[".repeat(d), "]".repeat(d)).into_bytes());
            inputs.push(format!("{}{}{}", r#"{"a":"#.repeat(d), "{}", "}".repeat(d)).into_bytes());
        }
        for _ in 0..4000 {
            let mut t = String::new();
            gen(&mut rng, 0, &mut t);
            let mut damaged = t.clone().into_bytes();
            // One byte changed, cut short or doubled.
            if !damaged.is_empty() {
                let at = rng.usize(..damaged.len());
                match rng.u8(..3) {
                    0 => damaged[at] = b"{}[],:\"\\0-e. x\xff"[rng.usize(..15)],
                    1 => damaged.truncate(at),
                    _ => damaged.insert(at, damaged[at]),
                }
            }
            inputs.push(t.into_bytes());
            inputs.push(damaged);
        }
        let mut fast_reads = 0;
        for data in &inputs {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            read_value(&mut Proto(&mut a, data.len()), data, true);
            read_value(&mut Proto(&mut b, data.len()), data, false);
            assert_eq!(a, b, "protobuf of {:?}", String::from_utf8_lossy(data));
            let (mut a, mut b) = (Vec::new(), Vec::new());
            read_value(&mut Json(&mut a), data, true);
            read_value(&mut Json(&mut b), data, false);
            assert_eq!(a, b, "JSON of {:?}", String::from_utf8_lossy(data));
            if let Ok(text) = std::str::from_utf8(data) {
                fast_reads += usize::from(Fast::read(&mut Json(&mut a), text).is_some());
            }
        }
        assert!(
            fast_reads > inputs.len() / 4,
            "the fast reader read {fast_reads} of {}",
            inputs.len()
        );
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
