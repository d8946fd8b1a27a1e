//! Property tests (proptest) of three contracts, each against an oracle written from the reference
//! rather than from the code:
//!
//! 1. Record validation (docs/reference.md, C API, EDGEBUF_ERR_INVALID_RECORD): any JSON value nested at most 128
//!    deep is accepted and travels verbatim; invalid UTF-8, deeper nesting, trailing data, empty
//!    input and records over `record.max_bytes` are refused with INVALID_RECORD and store
//!    nothing (no seq is used up); arbitrary bytes never panic, through Rust or the C boundary.
//! 2. Configuration parsing (docs/reference.md, configuration): arbitrary keys and values (and arbitrary bytes through
//!    edgebuf_config_set) never panic, valid values round-trip, a failed set leaves the old
//!    value, errors are INVALID_CONFIG naming the key and never the value (nor URL credentials),
//!    in one line; numeric ranges are what the messages state; headers follow a model;
//!    `from_vars` is all or nothing; open checks `retry.initial_ms ≤ max_ms`.
//! 3. Answer handling (docs/reference.md, the wire): Retry-After (seconds, HTTP dates, garbage) parses as specified,
//!    and through a whole Buffer the wait is never longer than `retry.max_ms` and never shorter
//!    than a Retry-After (capped).
//!
//! The sender is crate-private: the properties that need it alone (every status classifies
//! per docs/reference.md, the wire, over a real connection too; configured headers reach the endpoint; URLs that
//! `set` accepts are accepted at open; interim answers) are unit tests in src/http/.
//!
//! Case counts are kept small enough for the file to run in well under a minute (about 10 s).
//! Two ignored tests reproduce known bugs 3 and 4 (see their comments); bugs 1 and 2 are in
//! tests/model.rs.

mod common;
use common::*;
use edgebuf::{Buffer, Code, Config};
use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, TestCaseError, TestRunner};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(PtConfig {
        cases,
        max_shrink_iters: 200,
        failure_persistence: None,
        ..PtConfig::default()
    })
}

fn check<T: std::fmt::Debug>(
    cases: u32,
    strategy: impl Strategy<Value = T>,
    test: impl Fn(T) -> Result<(), TestCaseError>,
) {
    if let Err(e) = runner(cases).run(&strategy, test) {
        panic!("{e}");
    }
}

// =============================================================================================
// 1. Record validation
// =============================================================================================

/// A JSON value; leaves keep their exact text.
#[derive(Clone, Debug)]
enum J {
    /// null, true, false or a number, as written.
    Lit(String),
    /// A string, quotes and escapes included.
    Str(String),
    Arr(Vec<J>),
    /// Keys are string texts, quotes included.
    Obj(Vec<(String, J)>),
}

fn depth(j: &J) -> usize {
    match j {
        J::Lit(_) | J::Str(_) => 0,
        J::Arr(v) => 1 + v.iter().map(depth).max().unwrap_or(0),
        J::Obj(v) => 1 + v.iter().map(|(_, x)| depth(x)).max().unwrap_or(0),
    }
}

/// Numbers of every shape the grammar allows, within a double's range (I-JSON): huge negative
/// exponents included, which underflow to zero and are fine.
fn number() -> impl Strategy<Value = String> {
    "-?(0|[1-9][0-9]{0,24})(\\.[0-9]{1,8})?([eE][+-]?[0-9]{1,5})?"
        .prop_filter("within a double's range", |n| i_json_number(n))
}

/// I-JSON (RFC 7493): a number must not overflow a double.
fn i_json_number(text: &str) -> bool {
    text.parse::<f64>().is_ok_and(f64::is_finite)
}

/// String texts: raw characters (any Unicode scalar but `"`, `\` and controls), every escape,
/// `\u` with any four hex digits that are not a surrogate, surrogate pairs (I-JSON refuses a
/// lone one), and brackets and escaped quotes and backslashes that a depth count must not be
/// fooled by.
fn json_string() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => any::<char>()
            .prop_filter("raw", |c| *c != '"' && *c != '\\' && (*c as u32) >= 0x20)
            .prop_map(|c| c.to_string()),
        2 => prop::sample::select(vec![
            "\\\"", "\\\\", "\\/", "\\b", "\\f", "\\n", "\\r", "\\t", "[", "{", "]", "}",
            "\\\\\\\"[", "é", "\u{1F600}",
        ])
        .prop_map(String::from),
        1 => any::<u16>().prop_filter("not a surrogate", |u| !is_surrogate(*u))
            .prop_map(|u| format!("\\u{u:04x}")),
        1 => any::<u16>().prop_filter("not a surrogate", |u| !is_surrogate(*u))
            .prop_map(|u| format!("\\u{u:04X}")),
        1 => (0xd800u16..0xdc00, 0xdc00u16..0xe000).prop_map(|(h, l)| format!("\\u{h:04x}\\u{l:04X}")),
    ];
    prop::collection::vec(piece, 0..10).prop_map(|p| format!("\"{}\"", p.concat()))
}

fn leaf() -> impl Strategy<Value = J> {
    prop_oneof![
        1 => prop::sample::select(vec!["null", "true", "false"]).prop_map(|s| J::Lit(s.into())),
        2 => number().prop_map(J::Lit),
        2 => json_string().prop_map(J::Str),
    ]
}

fn tree() -> impl Strategy<Value = J> {
    leaf().prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(J::Arr),
            prop::collection::vec((json_string(), inner), 0..6).prop_map(J::Obj),
        ]
    })
}

/// Wraps `j` in arrays (`false`) or objects (`true`), innermost first.
fn wrap(mut j: J, kinds: &[bool]) -> J {
    for (i, &obj) in kinds.iter().enumerate() {
        j = if obj {
            J::Obj(vec![(format!("\"k{i}\""), j)])
        } else if i % 3 == 0 {
            J::Arr(vec![J::Lit("1".into()), j])
        } else {
            J::Arr(vec![j])
        };
    }
    j
}

/// A value of any shape nested at most 128 deep, often exactly at the limit.
fn valid_json() -> impl Strategy<Value = J> {
    prop_oneof![
        3 => tree(),
        1 => (tree(), prop::collection::vec(any::<bool>(), 0..=128)).prop_map(|(t, k)| {
            let room = 128 - depth(&t).min(128);
            wrap(t, &k[..k.len().min(room)])
        }),
        1 => (leaf(), prop::collection::vec(any::<bool>(), 120..=128)).prop_map(|(t, k)| wrap(t, &k)),
    ]
}

const WS: [&str; 8] = ["", "", "", " ", "\n", "\t", "\r\n", " \t "];

/// The JSON text of `j` with whitespace from `ws` (indices into `WS`, used cyclically) between
/// every two tokens and around the value.
fn render(j: &J, ws: &[u8]) -> Vec<u8> {
    fn go(j: &J, ws: &[u8], n: &mut usize, out: &mut String) {
        fn space(ws: &[u8], n: &mut usize, out: &mut String) {
            if !ws.is_empty() {
                out.push_str(WS[ws[*n % ws.len()] as usize % WS.len()]);
                *n += 1;
            }
        }
        let sp = |out: &mut String, n: &mut usize| space(ws, n, out);
        match j {
            J::Lit(s) | J::Str(s) => out.push_str(s),
            J::Arr(v) => {
                out.push('[');
                for (i, x) in v.iter().enumerate() {
                    if i > 0 {
                        sp(out, n);
                        out.push(',');
                    }
                    sp(out, n);
                    go(x, ws, n, out);
                }
                sp(out, n);
                out.push(']');
            }
            J::Obj(v) => {
                out.push('{');
                for (i, (k, x)) in v.iter().enumerate() {
                    if i > 0 {
                        sp(out, n);
                        out.push(',');
                    }
                    sp(out, n);
                    out.push_str(k);
                    sp(out, n);
                    out.push(':');
                    sp(out, n);
                    go(x, ws, n, out);
                }
                sp(out, n);
                out.push('}');
            }
        }
    }
    let mut out = String::new();
    let mut n = 0;
    if let Some(&w) = ws.first() {
        out.push_str(WS[w as usize % WS.len()]);
    }
    go(j, ws, &mut n, &mut out);
    if let Some(&w) = ws.last() {
        out.push_str(WS[w as usize % WS.len()]);
    }
    out.into_bytes()
}

fn whitespace() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(0u8..8, 0..24)
}

fn valid_record() -> impl Strategy<Value = Vec<u8>> {
    (valid_json(), whitespace()).prop_map(|(j, ws)| render(&j, &ws))
}

/// The oracle: RFC 8259 JSON text, hand-written from the grammar. `Some(end)` when a value
/// nested at most `MAX_DEPTH` deep starts at `i` (after optional whitespace) and ends at `end`;
/// `None` when the text is not JSON there or nests deeper (the record is refused either way).
struct Json<'a> {
    b: &'a [u8],
    i: usize,
}

const MAX_DEPTH: usize = 128;

impl Json<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }
    fn lit(&mut self, s: &[u8]) -> Option<()> {
        if self.b[self.i..].starts_with(s) {
            self.i += s.len();
            Some(())
        } else {
            None
        }
    }
    fn digits(&mut self) -> usize {
        let s = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        self.i - s
    }
    fn number(&mut self) -> Option<()> {
        let start = self.i;
        self.number_syntax()?;
        let text = std::str::from_utf8(&self.b[start..self.i]).ok()?;
        i_json_number(text).then_some(())
    }
    fn number_syntax(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            (self.digits() > 0).then_some(())?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            (self.digits() > 0).then_some(())?;
        }
        Some(())
    }
    fn hex4(&mut self) -> Option<u16> {
        let h = std::str::from_utf8(self.b.get(self.i..self.i + 4)?).ok()?;
        h.bytes().all(|c| c.is_ascii_hexdigit()).then_some(())?;
        self.i += 4;
        u16::from_str_radix(h, 16).ok()
    }
    fn string(&mut self) -> Option<()> {
        self.lit(b"\"")?;
        loop {
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    return Some(());
                }
                b'\\' => {
                    self.i += 1;
                    match self.peek()? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 1,
                        b'u' => {
                            self.i += 1;
                            let u = self.hex4()?;
                            // I-JSON: a high surrogate must be followed by an escaped low one;
                            // a low one alone is refused.
                            if (0xdc00..0xe000).contains(&u) {
                                return None;
                            }
                            if (0xd800..0xdc00).contains(&u) {
                                self.lit(b"\\u")?;
                                (0xdc00..0xe000).contains(&self.hex4()?).then_some(())?;
                            }
                        }
                        _ => return None,
                    }
                }
                c if c < 0x20 => return None,
                _ => self.i += 1,
            }
        }
    }
    fn value(&mut self, d: usize) -> Option<()> {
        self.ws();
        match self.peek()? {
            b'{' | b'[' if d + 1 > MAX_DEPTH => None,
            b'{' => {
                self.i += 1;
                self.ws();
                if self.peek() == Some(b'}') {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    self.ws();
                    self.string()?;
                    self.ws();
                    self.lit(b":")?;
                    self.value(d + 1)?;
                    self.ws();
                    match self.peek()? {
                        b',' => self.i += 1,
                        b'}' => {
                            self.i += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            b'[' => {
                self.i += 1;
                self.ws();
                if self.peek() == Some(b']') {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    self.value(d + 1)?;
                    self.ws();
                    match self.peek()? {
                        b',' => self.i += 1,
                        b']' => {
                            self.i += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            b'"' => self.string(),
            b't' => self.lit(b"true"),
            b'f' => self.lit(b"false"),
            b'n' => self.lit(b"null"),
            _ => self.number(),
        }
    }
}

/// docs/reference.md, C API: accepted iff UTF-8, exactly one JSON value with surrounding whitespace, nested at
/// most 128 deep, at most `max_bytes` long, and I-JSON (no number overflowing a double, no
/// unpaired surrogate escape).
fn acceptable(bytes: &[u8], max_bytes: u64) -> bool {
    if bytes.len() as u64 > max_bytes || std::str::from_utf8(bytes).is_err() {
        return false;
    }
    let mut p = Json { b: bytes, i: 0 };
    if p.value(0).is_none() {
        return false;
    }
    p.ws();
    p.i == bytes.len()
}

/// Records that must be refused, of each kind docs/reference.md, C API names.
fn invalid_record() -> impl Strategy<Value = (Vec<u8>, &'static str)> {
    prop_oneof![
        // Deeper than 128: a chain of 129 to 600 levels, or a valid value wrapped past the limit.
        (
            leaf(),
            prop::collection::vec(any::<bool>(), 129..=600),
            whitespace()
        )
            .prop_map(|(l, k, ws)| (render(&wrap(l, &k), &ws), "deeper than 128")),
        (tree(), 1usize..40, any::<bool>(), whitespace()).prop_map(|(t, extra, obj, ws)| {
            let n = MAX_DEPTH + 1 - depth(&t).min(MAX_DEPTH) + extra - 1;
            (render(&wrap(t, &vec![obj; n]), &ws), "deeper than 128")
        }),
        // Invalid UTF-8 anywhere in a valid record.
        (
            valid_record(),
            any::<prop::sample::Index>(),
            prop::sample::select(vec![
                &b"\xff"[..],
                b"\xfe",
                b"\x80",
                b"\xc0\x80",
                b"\xc3",
                b"\xe2\x82",
                b"\xed\xa0\x80",
                b"\xf4\x90\x80\x80",
                b"\xf8\x88\x80\x80\x80",
            ])
        )
            .prop_map(|(mut r, at, bad)| {
                let at = at.index(r.len() + 1);
                r.splice(at..at, bad.iter().copied());
                (r, "invalid UTF-8")
            }),
        // Trailing data: whitespace then anything that is not whitespace, or a character that
        // cannot continue the value.
        (
            valid_record(),
            prop::sample::select(vec![" ", "\n", "\t "]),
            "[^ \t\r\n][ -~]{0,8}"
        )
            .prop_map(|(mut r, sep, g)| {
                r.extend_from_slice(sep.as_bytes());
                r.extend_from_slice(g.as_bytes());
                (r, "trailing data")
            }),
        (
            valid_record(),
            prop::sample::select(vec![
                "x", ",", "}", "]", "[", "{", "\"", ":", "\0", "/", "#"
            ])
        )
            .prop_map(|(mut r, g)| {
                r.extend_from_slice(g.as_bytes());
                (r, "trailing data")
            }),
        // Two values.
        (valid_record(), valid_record()).prop_map(|(mut a, b)| {
            a.push(b' ');
            a.extend(b);
            (a, "two values")
        }),
        // Not I-JSON: a number that overflows a double, or an unpaired surrogate escape,
        // anywhere a value may stand.
        (
            prop::sample::select(vec![
                "1e999",
                "-1E+400",
                "2e308",
                "1.8e308",
                "\"\\ud800\"",
                "\"\\uDBFF\"",
                "\"\\udc00\"",
                "\"x\\ud83dy\"",
                "\"\\ud800\\u0041\"",
                "\"\\ude00\\ud83d\"",
            ]),
            prop::collection::vec(any::<bool>(), 0..4),
            whitespace()
        )
            .prop_map(|(bad, k, ws)| (render(&wrap(J::Lit(bad.into()), &k), &ws), "not I-JSON")),
        // Empty, or whitespace only.
        prop::collection::vec(prop::sample::select(vec![b' ', b'\t', b'\n', b'\r']), 0..16)
            .prop_map(|w| (w, "empty")),
        // Truncated.
        (valid_record(), any::<prop::sample::Index>()).prop_filter_map("still valid", |(r, at)| {
            let cut = r[..at.index(r.len())].to_vec();
            (!acceptable(&cut, u64::MAX)).then_some((cut, "truncated"))
        }),
    ]
}

/// A valid record with a few bytes flipped, inserted or deleted: mostly invalid, sometimes not.
fn mutated_record() -> impl Strategy<Value = Vec<u8>> {
    let edit = (
        any::<prop::sample::Index>(),
        0u8..3,
        any::<u8>(),
        prop::sample::select(b"{}[]\",:\\ 0-.eE\x80\xff".to_vec()),
    );
    (valid_record(), prop::collection::vec(edit, 1..4)).prop_map(|(mut r, edits)| {
        for (at, op, byte, special) in edits {
            let b = if byte % 2 == 0 { byte } else { special };
            match op {
                0 if !r.is_empty() => {
                    let i = at.index(r.len());
                    r[i] = b;
                }
                1 => {
                    let i = at.index(r.len() + 1);
                    r.insert(i, b);
                }
                _ if !r.is_empty() => {
                    let i = at.index(r.len());
                    r.remove(i);
                }
                _ => r.push(b),
            }
        }
        r
    })
}

#[test]
fn valid_json_of_any_shape_is_accepted_up_to_its_exact_length() {
    check(384, (valid_json(), whitespace()), |(j, ws)| {
        let r = render(&j, &ws);
        prop_assert!(depth(&j) <= MAX_DEPTH);
        // The generator and the oracle agree, so the oracle is worth something below.
        prop_assert!(
            acceptable(&r, u64::MAX),
            "oracle refuses {:?}",
            String::from_utf8_lossy(&r)
        );
        let len = r.len() as u64;
        if let Err(e) = edgebuf::record::validate(&r, len) {
            return Err(TestCaseError::fail(format!(
                "refused {:?} (depth {}): {e}",
                String::from_utf8_lossy(&r),
                depth(&j)
            )));
        }
        // record.max_bytes is inclusive; one byte less is too long.
        let e = edgebuf::record::validate(&r, len - 1).unwrap_err();
        prop_assert_eq!(e.code(), Code::InvalidRecord);
        Ok(())
    });
}

#[test]
fn invalid_records_are_refused_with_invalid_record() {
    check(512, invalid_record(), |(r, kind)| {
        prop_assert!(
            !acceptable(&r, u64::MAX),
            "{kind}: the oracle accepts {:?}",
            String::from_utf8_lossy(&r)
        );
        match edgebuf::record::validate(&r, u64::MAX) {
            Ok(()) => Err(TestCaseError::fail(format!(
                "{kind} accepted: {:?}",
                String::from_utf8_lossy(&r)
            ))),
            Err(e) => {
                prop_assert_eq!(e.code(), Code::InvalidRecord, "{}: {}", kind, e);
                prop_assert!(!e.message().is_empty() && !e.message().contains('\n'));
                Ok(())
            }
        }
    });
}

#[test]
fn arbitrary_and_mutated_bytes_never_panic_and_agree_with_the_grammar() {
    let bytes = prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..64),
        1 => prop::collection::vec(prop::sample::select(b"{}[]\",:\\ \t\n0123456789-+.eEtrufalsn\x80\xc3\xa9".to_vec()), 0..48),
        3 => mutated_record(),
    ];
    check(2048, (bytes, 0u64..80), |(r, max)| {
        // Half the cases with no length limit, so the grammar decides.
        let max = if max >= 40 { u64::MAX } else { max };
        let got = edgebuf::record::validate(&r, max);
        let want = acceptable(&r, max);
        prop_assert_eq!(
            got.is_ok(),
            want,
            "{:?} (max {}): {:?}",
            String::from_utf8_lossy(&r),
            max,
            got
        );
        if let Err(e) = got {
            prop_assert_eq!(e.code(), Code::InvalidRecord);
        }
        Ok(())
    });
}

/// Parses a request body in the exact envelope format of docs/reference.md, the wire and returns, per envelope, its
/// id, seq and the `data` bytes exactly as they travelled.
fn raw_envelopes(body: &[u8], source: &str) -> Result<Vec<(String, u64, Vec<u8>)>, String> {
    let mut p = Json { b: body, i: 0 };
    let mut out = Vec::new();
    let expect = |p: &mut Json, s: &str| -> Result<(), String> {
        p.lit(s.as_bytes()).ok_or_else(|| {
            format!(
                "expected {s:?} at byte {} of {:?}",
                p.i,
                String::from_utf8_lossy(body)
            )
        })
    };
    expect(&mut p, "[")?;
    loop {
        expect(&mut p, "{\"id\":\"")?;
        let s = p.i;
        while p.peek().is_some_and(|c| c != b'"') {
            p.i += 1;
        }
        let id = String::from_utf8_lossy(&body[s..p.i]).into_owned();
        let seq: u64 = id
            .rsplit('-')
            .next()
            .and_then(|x| x.parse().ok())
            .ok_or("id")?;
        expect(&mut p, &format!("\",\"seq\":{seq},\"ts_ms\":"))?;
        if p.peek() == Some(b'-') {
            p.i += 1;
        }
        (p.digits() > 0).then_some(()).ok_or("ts_ms")?;
        expect(&mut p, &format!(",\"source\":\"{source}\",\"data\":"))?;
        let s = p.i;
        p.value(0).ok_or("data is not JSON")?;
        p.ws();
        out.push((id, seq, body[s..p.i].to_vec()));
        expect(&mut p, "}")?;
        match p.peek() {
            Some(b',') => p.i += 1,
            Some(b']') if p.i + 1 == body.len() => return Ok(out),
            _ => return Err(format!("bad end at {}", p.i)),
        }
    }
}

/// End to end through a Buffer and a real receiver: the accepted records arrive byte for byte,
/// in order, with seqs 1..=n; every refused record returned INVALID_RECORD and used up nothing.
#[test]
fn records_travel_verbatim_and_refused_ones_store_nothing() {
    let rx = Server::receiver();
    let candidate = prop_oneof![
        3 => valid_record(),
        2 => invalid_record().prop_map(|(r, _)| r),
        1 => mutated_record(),
    ];
    let strategy = (
        prop::collection::vec(candidate, 1..12),
        64u64..600,
        prop::sample::select(&["none", "gzip", "zstd"][..]),
        1u32..6,
    );
    check(40, strategy, |(records, max_bytes, compression, batch)| {
        rx.clear();
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(dir.path(), &rx.url());
        c.set("http.proxy", "none").unwrap();
        c.set("record.max_bytes", &max_bytes.to_string()).unwrap();
        c.set("batch.max_records", &batch.to_string()).unwrap();
        c.set("http.compression", compression).unwrap();
        let b = Buffer::open(&c, None).unwrap();
        let mut accepted = Vec::new();
        for r in &records {
            let want = acceptable(r, max_bytes);
            match b.log(r) {
                Ok(()) => {
                    prop_assert!(want, "accepted {:?}", String::from_utf8_lossy(r));
                    accepted.push(r.clone());
                }
                Err(e) => {
                    prop_assert!(!want, "refused {:?}: {}", String::from_utf8_lossy(r), e);
                    prop_assert_eq!(e.code(), Code::InvalidRecord);
                }
            }
        }
        let st = b.status();
        prop_assert_eq!(st.logged_total, accepted.len() as u64);
        prop_assert_eq!(
            st.pending_records + st.delivered_total,
            accepted.len() as u64
        );
        b.flush(Duration::from_secs(10)).unwrap();
        // Known bug 1 (tests/model.rs): flush may return a moment early.
        wait_until(Duration::from_secs(5), || {
            b.status().delivered_total == accepted.len() as u64
        });
        let st = b.status();
        prop_assert_eq!(st.delivered_total, accepted.len() as u64, "{:?}", st);
        let instance = b.instance().to_string();
        b.close(Duration::from_secs(1)).unwrap();
        let mut got = Vec::new();
        for req in rx.hits().iter() {
            let env = raw_envelopes(&req.plain(), "test-device").map_err(TestCaseError::fail)?;
            prop_assert!(env.len() as u32 <= batch);
            got.extend(env);
        }
        prop_assert_eq!(got.len(), accepted.len());
        for (i, ((id, seq, data), want)) in got.iter().zip(&accepted).enumerate() {
            prop_assert_eq!(*seq, i as u64 + 1);
            prop_assert_eq!(id, &format!("{instance}-{seq}"));
            prop_assert!(
                data == want,
                "seq {}: sent {:?}, logged {:?}",
                seq,
                String::from_utf8_lossy(data),
                String::from_utf8_lossy(want)
            );
        }
        Ok(())
    });
}

/// Arbitrary bytes and lengths through the C API: OK or INVALID_RECORD, never INTERNAL (a
/// panic); only OK records count as logged.
#[test]
fn c_api_log_of_arbitrary_bytes_never_panics() {
    use ::edgebuf::ffi::*;
    use std::ffi::{CStr, CString};
    let dir = tempfile::tempdir().unwrap();
    let path = CString::new(dir.path().join("buf.db").to_str().unwrap()).unwrap();
    let endpoint = CString::new(format!("http://127.0.0.1:{}/ingest", dead_port())).unwrap();
    let cfg = edgebuf_config_new();
    assert_eq!(
        edgebuf_config_set(cfg, c"path".as_ptr(), path.as_ptr()),
        EDGEBUF_OK
    );
    assert_eq!(
        edgebuf_config_set(cfg, c"endpoint".as_ptr(), endpoint.as_ptr()),
        EDGEBUF_OK
    );
    assert_eq!(
        edgebuf_config_set(cfg, c"record.max_bytes".as_ptr(), c"40".as_ptr()),
        EDGEBUF_OK
    );
    let mut h = std::ptr::null_mut();
    assert_eq!(edgebuf_open(cfg, &mut h), EDGEBUF_OK);
    edgebuf_config_free(cfg);
    let ok = std::cell::Cell::new(0u64);
    let bytes = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        mutated_record(),
        valid_record(),
    ];
    check(1024, bytes, |r| {
        let rc = edgebuf_log(h, r.as_ptr().cast(), r.len());
        let want = acceptable(&r, 40);
        if rc == EDGEBUF_OK {
            ok.set(ok.get() + 1);
        } else {
            // SAFETY: a NUL-terminated string owned by the library, valid until the next call.
            let msg = unsafe { CStr::from_ptr(edgebuf_last_error()) }
                .to_string_lossy()
                .into_owned();
            prop_assert!(!msg.is_empty());
        }
        prop_assert_eq!(
            rc,
            if want {
                EDGEBUF_OK
            } else {
                EDGEBUF_ERR_INVALID_RECORD
            },
            "{:?}",
            String::from_utf8_lossy(&r)
        );
        Ok(())
    });
    let mut st = edgebuf_status_t {
        struct_size: std::mem::size_of::<edgebuf_status_t>() as u32,
        ..Default::default()
    };
    assert_eq!(edgebuf_status(h, &mut st), EDGEBUF_OK);
    assert_eq!(st.logged_total, ok.get());
    assert_eq!(edgebuf_close(h, 0), EDGEBUF_ERR_TIMEOUT);
}

// =============================================================================================
// 2. Configuration parsing
// =============================================================================================

/// A marker that no generated key contains: a message must never contain a value holding it.
const MARK: &str = "QzxVv";

type Get = fn(&Config) -> u64;

/// Every numeric key and its field (public fields: the round trip is read back directly).
const NUMERIC: &[(&str, Get)] = &[
    ("commit.interval_ms", |c| c.commit_interval_ms),
    ("memory.max_records", |c| c.memory_max_records),
    ("memory.max_bytes", |c| c.memory_max_bytes),
    ("memory.max_wait_ms", |c| c.memory_max_wait_ms),
    ("batch.max_records", |c| c.batch_max_records),
    ("batch.max_bytes", |c| c.batch_max_bytes),
    ("batch.linger_ms", |c| c.batch_linger_ms),
    ("retry.initial_ms", |c| c.retry_initial_ms),
    ("retry.max_ms", |c| c.retry_max_ms),
    ("http.timeout_ms", |c| c.http_timeout_ms),
    ("http.connect_timeout_ms", |c| c.http_connect_timeout_ms),
    ("capacity.max_bytes", |c| c.capacity_max_bytes),
    ("capacity.max_records", |c| c.capacity_max_records),
    ("disk.min_free_bytes", |c| {
        c.disk_min_free_bytes.unwrap_or(u64::MAX)
    }),
    ("record.max_bytes", |c| c.record_max_bytes),
    ("record.ttl_ms", |c| c.record_ttl_ms),
    ("dead_letter.max_records", |c| c.dead_letter_max_records),
    ("alert.pending_records", |c| c.alert_pending_records),
];

/// The accepted range of a numeric key, read from what its error message says is expected
/// ("... from MIN to MAX"): the message and the behaviour must agree.
fn range_of(key: &str) -> (u64, u64) {
    let e = Config::new()
        .set(key, "99999999999999999999999999")
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidConfig);
    let m = e.message();
    assert!(m.contains(key), "{m}");
    let nums: Vec<u64> = m
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect();
    let (min, max) = (nums[nums.len() - 2], nums[nums.len() - 1]);
    assert!(m.contains(&format!("from {min} to {max}")), "{m}");
    (min, max)
}

/// The error of a set that must fail: INVALID_CONFIG, naming `names`, never the value, one
/// line; the config is unchanged.
fn refused(c: &mut Config, key: &str, value: &str, names: &str) -> Result<(), TestCaseError> {
    let before = c.clone();
    match c.set(key, value) {
        Ok(()) => Err(TestCaseError::fail(format!("{key}={value:?} accepted"))),
        Err(e) => {
            prop_assert_eq!(e.code(), Code::InvalidConfig, "{}", e);
            prop_assert!(
                e.message().contains(names),
                "{:?} does not name {}",
                e.message(),
                names
            );
            prop_assert!(
                !e.message().contains(MARK),
                "{:?} shows the value {:?}",
                e.message(),
                value
            );
            prop_assert!(!e.message().contains('\n'));
            prop_assert!(*c == before, "a failed set changed the config");
            Ok(())
        }
    }
}

#[test]
fn numeric_values_round_trip_within_the_range_the_message_states() {
    let ranges: Vec<(&str, Get, u64, u64)> = NUMERIC
        .iter()
        .map(|(k, g)| {
            let (min, max) = range_of(k);
            (*k, *g, min, max)
        })
        .collect();
    let strategy = (
        any::<prop::sample::Index>(),
        any::<u64>(),
        0u8..6,
        0usize..3,
        "[^0-9]{1,3}",
    );
    check(1024, strategy, |(which, n, mode, zeros, junk)| {
        let (key, get, min, max) = ranges[which.index(ranges.len())];
        let mut c = Config::new();
        // Pick inside the range (at its ends often), just outside it, or anywhere.
        let n = match mode {
            0 => min,
            1 => max,
            2 => min + n % (max - min).saturating_add(1).max(1),
            3 => max.saturating_add(1 + n % 1000),
            4 if min > 0 => n % min,
            _ => n,
        };
        let text = format!("{}{n}", "0".repeat(zeros));
        if (min..=max).contains(&n) {
            c.set(key, &text)
                .map_err(|e| TestCaseError::fail(format!("{key}={text}: {e}")))?;
            prop_assert_eq!(get(&c), n, "{}={}", key, text);
            // "" restores the default.
            c.set(key, "").unwrap();
            prop_assert_eq!(get(&c), get(&Config::default()));
        } else {
            refused(&mut c, key, &text, key)?;
        }
        // Anything but plain decimal digits is refused: signs, spaces, units, fractions.
        c.set(key, &min.to_string()).unwrap();
        for bad in [
            format!("{junk}{MARK}{n}"),
            format!("{n}{MARK}{junk}"),
            format!("+{min}"),
            format!("{min}.0"),
            format!(" {min}"),
        ] {
            refused(&mut c, key, &bad, key)?;
        }
        Ok(())
    });
}

fn random_case(s: &str, bits: u64) -> String {
    s.chars()
        .enumerate()
        .map(|(i, ch)| {
            if bits >> (i % 64) & 1 == 1 {
                ch.to_ascii_uppercase()
            } else {
                ch
            }
        })
        .collect()
}

#[test]
fn enumerated_values_round_trip_in_any_case_and_others_are_refused() {
    type Show = fn(&Config) -> String;
    const ENUMS: &[(&str, &[&str], Show)] = &[
        ("durability", &["async", "sync"], |c| {
            c.durability.as_str().into()
        }),
        ("http.compression", &["none", "gzip", "zstd"], |c| {
            c.http_compression.as_str().into()
        }),
        ("format", &["json", "ndjson"], |c| c.format.as_str().into()),
        (
            "capacity.when_full",
            &["drop_oldest", "drop_newest", "reject"],
            |c| c.capacity_when_full.as_str().into(),
        ),
        ("storage.on_corrupt", &["quarantine", "fail"], |c| {
            c.storage_on_corrupt.as_str().into()
        }),
        ("http.proxy", &["env", "none"], |c| match &c.http_proxy {
            edgebuf::config::ProxySetting::Env => "env".into(),
            edgebuf::config::ProxySetting::None => "none".into(),
            edgebuf::config::ProxySetting::Url(u) => u.clone(),
        }),
    ];
    let strategy = (
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
        any::<u64>(),
        "\\PC{0,12}",
    );
    check(512, strategy, |(k, v, bits, junk)| {
        let (key, values, show) = ENUMS[k.index(ENUMS.len())];
        let value = values[v.index(values.len())];
        let mut c = Config::new();
        let text = random_case(value, bits);
        c.set(key, &text)
            .map_err(|e| TestCaseError::fail(format!("{key}={text}: {e}")))?;
        prop_assert_eq!(show(&c), value);
        c.set(key, "").unwrap();
        prop_assert_eq!(show(&c), show(&Config::default()));
        c.set(key, &text).unwrap();
        if !values.iter().any(|x| x.eq_ignore_ascii_case(&junk)) && !junk.is_empty() {
            let bad = format!("{MARK}{junk}");
            refused(&mut c, key, &bad, key)?;
            prop_assert_eq!(show(&c), value);
        }
        // A near miss: the value with a space, or truncated.
        refused(&mut c, key, &format!("{value} "), key)?;
        refused(&mut c, key, &value[..value.len() - 1], key)?;
        Ok(())
    });
}

#[test]
fn free_text_keys_round_trip_and_bad_values_never_show_in_messages() {
    let strategy = (
        "[ -~]{1,128}",
        "[ -~]{129,200}",
        "\\PC{1,40}",
        prop::sample::select(vec!["\0", "\r", "\n", "\u{7f}", "\u{1}", "é"]),
        any::<prop::sample::Index>(),
    );
    check(512, strategy, |(printable, long, text, bad, at)| {
        let mut c = Config::new();
        // source.id: 1 to 128 bytes of printable ASCII.
        c.set("source.id", &printable).unwrap();
        prop_assert_eq!(c.source_id.as_deref(), Some(printable.as_str()));
        refused(&mut c, "source.id", &long, "source.id")?;
        let mut with_bad = printable.clone();
        let i = at.index(with_bad.len() + 1);
        with_bad.insert_str(i, bad);
        refused(&mut c, "source.id", &with_bad, "source.id")?;
        // Paths: any text without NUL.
        for key in ["path", "tls.ca_file", "tls.cert_file", "tls.key_file"] {
            c.set(key, &text).unwrap();
            let got = match key {
                "path" => c.path.clone(),
                "tls.ca_file" => c.tls_ca_file.clone(),
                "tls.cert_file" => c.tls_cert_file.clone(),
                _ => c.tls_key_file.clone(),
            };
            prop_assert_eq!(got, Some(std::path::PathBuf::from(&text)));
            refused(&mut c, key, &format!("{text}\0{MARK}"), key)?;
        }
        Ok(())
    });
}

fn url() -> impl Strategy<Value = (String, String)> {
    (
        prop::sample::select(vec!["http", "https", "HTTP", "Https"]),
        prop_oneof![
            "[a-z0-9]([a-z0-9.-]{0,20}[a-z0-9])?",
            (any::<u8>(), any::<u8>()).prop_map(|(a, b)| format!("10.{a}.{b}.1")),
            Just("[::1]".to_string()),
        ],
        prop::option::of(1u32..=65535),
        "(/[a-zA-Z0-9._~%-]{0,12}){0,3}",
    )
        .prop_map(|(s, h, p, path)| {
            let port = p.map(|p| format!(":{p}")).unwrap_or_default();
            (format!("{s}://{h}{port}{path}"), format!("{h}{port}{path}"))
        })
}

#[test]
fn endpoints_round_trip_and_credentials_never_show() {
    let strategy = (url(), "[a-z]{1,8}", 0u32..3, any::<u32>());
    check(512, strategy, |((u, _), user, bad, port)| {
        let mut c = Config::new();
        c.set("endpoint", &u)
            .map_err(|e| TestCaseError::fail(format!("{u}: {e}")))?;
        prop_assert_eq!(c.endpoint.as_deref(), Some(u.as_str()));
        // User info and query string never reach messages.
        let secret = format!("{user}:{MARK}pw@");
        let with = u.replacen("://", &format!("://{secret}"), 1) + &format!("?token={MARK}");
        c.set("endpoint", &with)
            .map_err(|e| TestCaseError::fail(format!("{with}: {e}")))?;
        prop_assert!(
            !c.endpoint_redacted().contains(MARK),
            "{}",
            c.endpoint_redacted()
        );
        let shown = format!("{c:?}");
        prop_assert!(!shown.contains(MARK), "the config shows a secret");
        let broken = match bad {
            0 => with.replacen("://", &format!("://{MARK} "), 1),
            1 => format!("ftp://{MARK}.example/"),
            _ => format!("http://h{MARK}:{}/", 65536 + (port % 100_000)),
        };
        refused(&mut c, "endpoint", &broken, "endpoint")?;
        prop_assert_eq!(c.endpoint.as_deref(), Some(with.as_str()));
        Ok(())
    });
}

const RESERVED: &[&str] = &[
    "Host",
    "Content-Length",
    "Transfer-Encoding",
    "Content-Type",
    "Content-Encoding",
    "Connection",
    "Idempotency-Key",
    "X-Edgebuf-Source",
];

/// A sequence of header sets against a model list: set adds or replaces in place (names
/// compared ignoring case), "" removes, reserved names and bad values are refused and change
/// nothing, and no message shows a value.
#[test]
fn headers_follow_a_model_and_bad_values_never_show() {
    #[derive(Debug, Clone)]
    enum Op {
        Set(String, String),
        Remove(String),
        Reserved(String),
        BadValue(String, String),
        BadName(String),
    }
    let name = prop::sample::select(vec![
        "X-Api-Key",
        "x-api-key",
        "Authorization",
        "X-A",
        "x-a",
        "User-Agent",
        "A!#$%&'*+-.^_`|~9",
    ]);
    let value = "[\t -~\u{80}-\u{10FFFF}]{1,24}";
    let op = prop_oneof![
        4 => (name.clone(), value).prop_map(|(n, v)| Op::Set(n.to_string(), v)),
        1 => name.clone().prop_map(|n| Op::Remove(n.to_string())),
        1 => (prop::sample::select(RESERVED.to_vec()), any::<u64>())
            .prop_map(|(n, bits)| Op::Reserved(random_case(n, bits))),
        1 => (name.clone(), "[ -~]{0,8}", prop::sample::select(vec!["\r", "\n", "\0", "\u{1}", "\u{7f}", "\r\nX-Injected: 1"]))
            .prop_map(|(n, v, bad)| Op::BadValue(n.to_string(), format!("{MARK}{v}{bad}{v}"))),
        1 => "[ -~]{0,6}[ \"(),/:;<=>?@\\[\\\\\\]{}\u{e9}][ -~]{0,6}".prop_map(Op::BadName),
    ];
    check(256, prop::collection::vec(op, 1..20), |ops| {
        let mut c = Config::new();
        let mut model: Vec<(String, String)> = Vec::new();
        for op in ops {
            match op {
                Op::Set(n, v) => {
                    c.set(&format!("http.header.{n}"), &v)
                        .map_err(|e| TestCaseError::fail(format!("{n}: {e}")))?;
                    match model.iter_mut().find(|(m, _)| m.eq_ignore_ascii_case(&n)) {
                        Some(e) => *e = (n, v),
                        None => model.push((n, v)),
                    }
                }
                Op::Remove(n) => {
                    c.set(&format!("http.header.{n}"), "").unwrap();
                    model.retain(|(m, _)| !m.eq_ignore_ascii_case(&n));
                }
                Op::Reserved(n) => {
                    let key = format!("http.header.{n}");
                    refused(&mut c, &key, &format!("{MARK}v"), &key)?;
                }
                Op::BadValue(n, v) => {
                    let key = format!("http.header.{n}");
                    refused(&mut c, &key, &v, &key)?;
                    let e = c.set(&key, &v).unwrap_err();
                    prop_assert!(!e.message().contains(MARK), "{}", e.message());
                }
                Op::BadName(n) => {
                    let key = format!("http.header.{n}");
                    refused(&mut c, &key, &format!("{MARK}v"), "http.header.")?;
                }
            }
            prop_assert_eq!(&c.http_headers, &model);
            let shown = format!("{c:?}");
            prop_assert!(!shown.contains(MARK), "the config shows a secret");
        }
        Ok(())
    });
}

/// Arbitrary keys and values: never a panic; success or INVALID_CONFIG that names the key and
/// leaves the config as it was. Unknown keys are named in the message.
#[test]
fn arbitrary_keys_and_values_never_panic() {
    let key = prop_oneof![
        2 => prop::sample::select(Config::KEYS.to_vec()).prop_map(String::from),
        1 => (prop::sample::select(Config::KEYS.to_vec()), any::<u64>())
            .prop_map(|(k, bits)| random_case(k, bits)),
        1 => "http\\.header\\.\\PC{0,12}",
        1 => "[a-z._]{1,24}",
        1 => "\\PC{0,24}",
        1 => ".{0,12}",
    ];
    let value = prop_oneof![
        2 => "\\PC{0,40}",
        1 => ".{0,20}",
        1 => "[0-9]{1,25}",
        1 => "[ -~]{0,30}",
    ];
    check(2048, (key, value), |(key, value)| {
        let mut c = Config::new();
        c.set("retry.max_ms", "777").unwrap();
        let before = c.clone();
        match c.set(&key, &value) {
            Ok(()) => {
                prop_assert!(
                    Config::KEYS.contains(&key.as_str()) || key.starts_with("http.header."),
                    "unknown key {:?} accepted",
                    key
                );
            }
            Err(e) => {
                prop_assert_eq!(e.code(), Code::InvalidConfig);
                prop_assert!(c == before, "a failed set changed the config");
                prop_assert!(!e.message().is_empty());
                let m = e.message();
                prop_assert!(!m.chars().any(char::is_control), "{:?}", m);
                let printable_key =
                    key.len() <= 100 && key.bytes().all(|b| (0x20..0x7f).contains(&b));
                if printable_key && !key.starts_with("http.header.") {
                    prop_assert!(m.contains(key.as_str()), "{:?} does not name {:?}", m, key);
                }
                if !Config::KEYS.contains(&key.as_str()) && !key.starts_with("http.header.") {
                    prop_assert!(m.contains("unknown configuration key"), "{}", m);
                }
            }
        }
        Ok(())
    });
}

/// Arbitrary byte strings (no NUL) through edgebuf_config_set: OK or INVALID_CONFIG, never a
/// panic, with a message on failure that never shows the value.
#[test]
fn c_api_config_set_with_arbitrary_bytes_never_panics() {
    use ::edgebuf::ffi::*;
    use std::ffi::{CStr, CString};
    let cfg = edgebuf_config_new();
    let bytes = |n| prop::collection::vec(1u8..=255, 0..n);
    let key = prop_oneof![
        prop::sample::select(Config::KEYS.to_vec()).prop_map(|k| k.as_bytes().to_vec()),
        bytes(24),
    ];
    check(1024, (key, bytes(40)), |(key, mut value)| {
        value.splice(0..0, MARK.bytes());
        let utf8 = std::str::from_utf8(&value).is_ok();
        let k = CString::new(key.clone()).unwrap();
        let v = CString::new(value).unwrap();
        let rc = edgebuf_config_set(cfg, k.as_ptr(), v.as_ptr());
        prop_assert!(
            rc == EDGEBUF_OK || rc == EDGEBUF_ERR_INVALID_CONFIG,
            "rc {}",
            rc
        );
        if rc != EDGEBUF_OK {
            // SAFETY: NUL-terminated, owned by the library until this thread's next call.
            let msg = unsafe { CStr::from_ptr(edgebuf_last_error()) }
                .to_string_lossy()
                .into_owned();
            prop_assert!(!msg.is_empty());
            prop_assert!(!msg.contains(MARK), "{:?}", msg);
            // One readable sentence: no line breaks or other control characters, whatever
            // the key holds (known bug 3 aside: a value that is not UTF-8).
            if utf8 {
                prop_assert!(!msg.chars().any(char::is_control), "{:?}", msg);
            }
        }
        Ok(())
    });
    edgebuf_config_free(cfg);
}

/// Known bug 3: when the value is not UTF-8, edgebuf_config_set's message is "the value of
/// KEY: value is not valid UTF-8" with KEY copied raw (control characters, line breaks, any
/// length; ffi/mod.rs `edgebuf_config_set`), not one readable sentence, and for an unknown key
/// it does not say that the key is unknown.
#[test]
fn c_api_messages_are_one_line_whatever_the_key() {
    use ::edgebuf::ffi::*;
    use std::ffi::CStr;
    let cfg = edgebuf_config_new();
    check(256, prop::collection::vec(1u8..0x80, 1..200), |key| {
        let k = std::ffi::CString::new(key).unwrap();
        let rc = edgebuf_config_set(cfg, k.as_ptr(), c"\xff".as_ptr());
        prop_assert_eq!(rc, EDGEBUF_ERR_INVALID_CONFIG);
        // SAFETY: NUL-terminated, owned by the library until this thread's next call.
        let msg = unsafe { CStr::from_ptr(edgebuf_last_error()) }
            .to_string_lossy()
            .into_owned();
        prop_assert!(!msg.chars().any(char::is_control), "{:?}", msg);
        prop_assert!(msg.len() < 400, "{} bytes", msg.len());
        Ok(())
    });
    edgebuf_config_free(cfg);
}

/// The variable for a key: `EDGEBUF_` + the key upper-cased with `.` as `_` (docs/reference.md, configuration).
fn var_of(key: &str) -> String {
    format!("EDGEBUF_{}", key.to_ascii_uppercase().replace('.', "_"))
}

/// `http.header.X-Api-Key` from `EDGEBUF_HTTP_HEADER_X_API_KEY`.
fn header_key_of_var(name: &str) -> String {
    let parts: Vec<String> = name
        .split('_')
        .map(|p| {
            let mut cs = p.chars();
            match cs.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + &cs.as_str().to_ascii_lowercase(),
                None => String::new(),
            }
        })
        .collect();
    format!("http.header.{}", parts.join("-"))
}

/// from_vars: all or nothing, in the order of the variable names, each as `set` would apply
/// it; a failure names the variable, never its value; variables naming no key are ignored.
#[test]
fn environment_variables_apply_all_or_nothing() {
    let good = prop_oneof![
        Just(("retry.max_ms", "2500")),
        Just(("batch.max_records", "7")),
        Just(("durability", "sync")),
        Just(("format", "NDJSON")),
        Just(("source.id", "cam 07")),
        Just(("endpoint", "http://127.0.0.1:9/x")),
        Just(("capacity.when_full", "")),
    ];
    let var = prop_oneof![
        4 => good.prop_map(|(k, v)| (var_of(k), v.to_string())),
        2 => (prop::sample::select(Config::KEYS.to_vec()), "\\PC{0,10}")
            .prop_map(|(k, v)| (var_of(k), format!("{MARK}{v}"))),
        1 => ("[A-Z]{1,3}(_[A-Z0-9]{1,4}){0,2}", "[ -~]{1,10}")
            .prop_map(|(n, v)| (format!("EDGEBUF_HTTP_HEADER_{n}"), v)),
        1 => ("[A-Z]{1,3}", "\r\n{0,1}").prop_map(|(n, v)| (format!("EDGEBUF_HTTP_HEADER_{n}"), format!("{MARK}{v}"))),
        1 => ("[A-Za-z_]{1,20}", "\\PC{0,10}").prop_map(|(n, v)| (n, v)),
        1 => (prop::sample::select(Config::KEYS.to_vec()), "[0-9]{1,4}")
            .prop_map(|(k, v)| (var_of(k).to_ascii_lowercase(), v)),
    ];
    check(1024, prop::collection::vec(var, 0..8), |vars| {
        let mut c = Config::new();
        c.set("retry.initial_ms", "5").unwrap();
        let before = c.clone();
        // The oracle: the variables that name a key, stable-sorted by name, applied in turn.
        let mut ours: Vec<(String, String, String)> = vars
            .iter()
            .filter_map(|(n, v)| {
                let key = if let Some(h) = n.strip_prefix("EDGEBUF_HTTP_HEADER_") {
                    (!h.is_empty()).then(|| header_key_of_var(h))
                } else {
                    Config::KEYS
                        .iter()
                        .find(|k| var_of(k) == *n)
                        .map(|k| k.to_string())
                }?;
                Some((n.clone(), key, v.clone()))
            })
            .collect();
        ours.sort_by(|a, b| a.0.cmp(&b.0));
        let mut want = c.clone();
        let mut first_bad = None;
        for (n, k, v) in &ours {
            if want.set(k, v).is_err() {
                first_bad = Some(n.clone());
                break;
            }
        }
        match (c.from_vars(vars.clone()), first_bad) {
            (Ok(()), None) => prop_assert!(c == want, "{:?}", vars),
            (Err(e), Some(bad)) => {
                prop_assert_eq!(e.code(), Code::InvalidConfig);
                prop_assert!(c == before, "nothing applied");
                prop_assert!(
                    e.message().contains(&bad),
                    "{:?} does not name {}",
                    e.message(),
                    bad
                );
                prop_assert!(!e.message().contains(MARK), "{:?}", e.message());
            }
            (got, bad) => {
                return Err(TestCaseError::fail(format!(
                    "{vars:?}: got {got:?}, first bad {bad:?}"
                )))
            }
        }
        Ok(())
    });
}

/// Open-time combination: retry.initial_ms ≤ retry.max_ms, else INVALID_CONFIG naming both.
#[test]
fn open_checks_initial_not_above_max() {
    let dir = tempfile::tempdir().unwrap();
    check(256, (1u64..100_000, 1u64..100_000), |(initial, max)| {
        let mut c = config(dir.path(), "http://127.0.0.1:9/x");
        c.set("retry.initial_ms", &initial.to_string()).unwrap();
        c.set("retry.max_ms", &max.to_string()).unwrap();
        match c.validate_for_open() {
            Ok(()) => prop_assert!(initial <= max),
            Err(e) => {
                prop_assert!(initial > max, "{}", e);
                prop_assert_eq!(e.code(), Code::InvalidConfig);
                prop_assert!(
                    e.message().contains("retry.initial_ms")
                        && e.message().contains("retry.max_ms")
                );
            }
        }
        Ok(())
    });
}

// =============================================================================================
// 3. Answers: status classes, Retry-After, the wait
// =============================================================================================

/// The classes of docs/reference.md, the wire, Responses. (The sender's own classification is unit-tested against
/// the same table in src/http/classify.rs, and over real connections in src/http/mod.rs.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Delivered,
    Retry,
    Split,
    Bisect,
    Config,
}

/// docs/reference.md, the wire, Responses, as a table.
fn spec_class(status: u16) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered,
        408 | 429 | 500..=599 => Outcome::Retry,
        413 => Outcome::Split,
        400 | 422 => Outcome::Bisect,
        _ => Outcome::Config,
    }
}

/// What a Retry-After value means (RFC 9110 10.2.3): delta-seconds, or an HTTP-date whose
/// distance from `now` (none when past); anything else is ignored.
#[derive(Clone, Debug)]
enum RetryAfter {
    Seconds(String, u64),
    /// A date `offset` seconds from now (negative: past), in one of the three formats.
    Date(i64, u8),
    Garbage(String),
}

impl RetryAfter {
    fn text(&self, now: SystemTime) -> String {
        match self {
            RetryAfter::Seconds(t, _) | RetryAfter::Garbage(t) => t.clone(),
            RetryAfter::Date(off, fmt) => {
                let t = if *off >= 0 {
                    now + Duration::from_secs(*off as u64)
                } else {
                    now - Duration::from_secs(off.unsigned_abs())
                };
                let imf = httpdate::fmt_http_date(t);
                if *fmt == 0 {
                    return imf;
                }
                // asctime: "Sun Nov  6 08:49:37 1994" from "Sun, 06 Nov 1994 08:49:37 GMT".
                let p: Vec<&str> = imf.split(' ').collect();
                let day: u32 = p[1].parse().unwrap();
                format!("{} {} {:>2} {} {}", &p[0][..3], p[2], day, p[4], p[3])
            }
        }
    }

    /// The wait it asks for, given the text was made at `made`; `None` when it asks for none.
    fn meaning(&self, made: SystemTime, now: SystemTime) -> Option<Duration> {
        match self {
            RetryAfter::Seconds(_, s) => Some(Duration::from_secs(*s)),
            RetryAfter::Date(off, _) => {
                // Dates carry whole seconds.
                let whole = made.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64 + off;
                let when = UNIX_EPOCH + Duration::from_secs(whole as u64);
                Some(when.duration_since(now).unwrap_or(Duration::ZERO))
            }
            RetryAfter::Garbage(_) => None,
        }
    }
}

fn retry_after() -> impl Strategy<Value = RetryAfter> {
    prop_oneof![
        3 => (0u64..200_000, 0usize..3).prop_map(|(s, z)| RetryAfter::Seconds(format!("{}{s}", "0".repeat(z)), s)),
        1 => "[1-9][0-9]{20,40}".prop_map(|t| RetryAfter::Seconds(t, u64::MAX)),
        3 => (-100_000i64..200_000, 0u8..2).prop_map(|(o, f)| RetryAfter::Date(o, f)),
        1 => prop::sample::select(vec!["-5", "1.5", "5s", "+5", "soon", "0x10", "1e3", "Mon, 99 Foo 2024 00:00:00 GMT", "Sun, 06 Nov 1994 08:49:37", "5 5"])
            .prop_map(|s| RetryAfter::Garbage(s.to_string())),
        2 => "[ -~]{1,30}".prop_filter_map("a real value", |s| {
            let t = s.trim_matches(|c| c == ' ' || c == '\t');
            let numeric = !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
            (!numeric && httpdate::parse_http_date(t).is_err()).then_some(RetryAfter::Garbage(s))
        }),
    ]
}

/// The answer every request gets, set while the server runs: a status and a Retry-After.
type Answer = Arc<Mutex<(u16, Option<String>)>>;

/// A server giving every request the answer set in the returned cell (200 at first).
fn answering_server() -> (Server, Answer) {
    let answer: Answer = Arc::new(Mutex::new((200, None)));
    let a2 = Arc::clone(&answer);
    let srv = Server::start(move |_| {
        let (code, ra) = a2.lock().unwrap().clone();
        let act = Act::status(code);
        match ra {
            Some(v) => act.with("Retry-After", &v),
            None => act,
        }
    });
    (srv, answer)
}

/// Through a whole Buffer: after one non-2xx answer (any class, any Retry-After), the wait that
/// status reports is never above retry.max_ms; a retry-class answer's Retry-After (capped) is
/// obeyed, checked on the status and on the time of the next request; the other classes wait
/// retry.max_ms.
#[test]
fn the_wait_after_an_answer_is_capped_at_retry_max_ms() {
    let (srv, answer) = answering_server();
    let code = prop_oneof![
        3 => prop::sample::select(vec![408u16, 429, 500, 502, 503, 504, 599]),
        2 => prop::sample::select(vec![400u16, 401, 403, 404, 413, 422, 301, 307, 418, 600, 999]),
        1 => 300u16..=999,
    ];
    let strategy = (
        code,
        prop::option::of(retry_after()),
        150u64..700,
        any::<prop::sample::Index>(),
    );
    check(20, strategy, |(code, ra, max_ms, initial)| {
        let dir = tempfile::tempdir().unwrap();
        let made = SystemTime::now();
        *answer.lock().unwrap() = (code, ra.as_ref().map(|r| r.text(made)));
        let first_hit = srv.count();
        let mut c = config(dir.path(), &srv.url());
        c.set("http.proxy", "none").unwrap();
        c.set("retry.max_ms", &max_ms.to_string()).unwrap();
        let initial = 1 + initial.index(max_ms as usize) as u64;
        c.set("retry.initial_ms", &initial.to_string()).unwrap();
        c.set("batch.linger_ms", "0").unwrap();
        let b = Buffer::open(&c, None).unwrap();
        b.log(b"{\"x\":1}").unwrap();
        prop_assert!(wait_until(Duration::from_secs(5), || b
            .status()
            .failed_attempts_total
            >= 1));
        // The wait is stored just after the failure is counted.
        wait_until(Duration::from_millis(100), || {
            b.status().next_retry_in_ms > 0
        });
        let st = b.status();
        // Read after the status: `seen - answered_at` never understates the time gone.
        let seen = Instant::now();
        let hits = srv.hits();
        let answered_at = hits[first_hit].at;
        let class = spec_class(code);
        let asked = ra.as_ref().and_then(|r| r.meaning(made, SystemTime::now()));
        prop_assert!(
            u64::from(st.next_retry_in_ms) <= max_ms,
            "{} {:?}: {:?}",
            code,
            ra,
            st
        );
        prop_assert_eq!(st.pending_records, 1);
        prop_assert_eq!(st.last_http_status, i32::from(code));
        // The least the wait must be, from the answer on.
        let floor = match class {
            Outcome::Retry => asked.map_or(0, |d| (d.as_millis() as u64).min(max_ms)),
            _ => max_ms,
        };
        let elapsed = seen.duration_since(answered_at).as_millis() as u64;
        if floor > elapsed + 30 && st.failed_attempts_total == 1 {
            prop_assert!(
                u64::from(st.next_retry_in_ms) + elapsed + 30 >= floor,
                "{} {:?}: waits {} ms, {} ms after the answer, floor {}",
                code,
                ra,
                st.next_retry_in_ms,
                elapsed,
                floor
            );
        }
        // The next request comes no earlier than the floor and, for a retry class, no later than
        // retry.max_ms (plus scheduling slack).
        prop_assert!(wait_until(Duration::from_millis(max_ms + 1500), || srv
            .count()
            > first_hit + 1));
        let hits = srv.hits();
        let gap = hits[first_hit + 1]
            .at
            .duration_since(hits[first_hit].at)
            .as_millis() as u64;
        prop_assert!(
            gap + 5 >= floor,
            "{} {:?}: retried after {} ms, floor {}",
            code,
            ra,
            gap,
            floor
        );
        prop_assert!(
            gap <= max_ms + 1000,
            "{} {:?}: retried after {} ms, cap {}",
            code,
            ra,
            gap,
            max_ms
        );
        let _ = b.close(Duration::ZERO);
        Ok(())
    });
}

fn is_surrogate(u: u16) -> bool {
    (0xd800..0xe000).contains(&u)
}
