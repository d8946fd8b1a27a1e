//! Record validation: what `edgebuf_log` accepts.
//!
//! A record is exactly one JSON value (surrounding whitespace allowed), valid UTF-8, nested at
//! most 128 deep, at most `record.max_bytes` long, and I-JSON (RFC 7493): no number that
//! overflows a double, no escape that leaves a surrogate unpaired, so that every receiver's
//! parser reads what edgebuf accepted. The bytes are stored and sent verbatim; validation never
//! re-encodes them and builds no tree.

use crate::error::{Error, Result};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// The deepest nesting of arrays and objects a record may have.
pub const MAX_DEPTH: usize = 128;

/// Checks one record. On success the caller stores `bytes` unchanged.
pub fn validate(bytes: &[u8], max_bytes: u64) -> Result<()> {
    if bytes.len() as u64 > max_bytes {
        return Err(Error::invalid_record(format!(
            "the record is {} bytes, longer than record.max_bytes ({max_bytes})",
            bytes.len()
        )));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        Error::invalid_record(format!(
            "the record is not valid UTF-8 (at byte {})",
            e.valid_up_to()
        ))
    })?;
    if text.trim_matches(is_json_ws).is_empty() {
        return Err(Error::invalid_record(
            "the record is empty; it must be exactly one JSON value",
        ));
    }
    // serde_json's IgnoredAny path skips values iteratively, without its recursion limit:
    // the depth is checked here.
    if deeper_than(bytes, MAX_DEPTH) {
        return Err(Error::invalid_record(format!(
            "the record is nested deeper than {MAX_DEPTH} levels"
        )));
    }
    // serde_json refuses trailing data and anything that is not JSON; visiting every value
    // (rather than skipping it) makes it decode numbers and escapes, where it refuses numbers
    // out of a double's range and unpaired surrogates. The depth is bounded above, so its own
    // recursion limit (which would refuse depth 128) is off.
    let mut de = serde_json::Deserializer::from_str(text);
    de.disable_recursion_limit();
    IJson::deserialize(&mut de)
        .and_then(|_| de.end())
        .map_err(|e| {
            Error::invalid_record(format!("the record is not exactly one I-JSON value: {e}"))
        })?;
    Ok(())
}

/// Visits every value of a record and keeps nothing.
struct IJson;

impl<'de> Deserialize<'de> for IJson {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(IJson)
    }
}

impl<'de> Visitor<'de> for IJson {
    type Value = IJson;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> std::result::Result<IJson, E> {
        Ok(IJson)
    }
    fn visit_i64<E>(self, _: i64) -> std::result::Result<IJson, E> {
        Ok(IJson)
    }
    fn visit_u64<E>(self, _: u64) -> std::result::Result<IJson, E> {
        Ok(IJson)
    }
    fn visit_f64<E>(self, _: f64) -> std::result::Result<IJson, E> {
        Ok(IJson)
    }
    fn visit_str<E>(self, _: &str) -> std::result::Result<IJson, E> {
        Ok(IJson)
    }
    fn visit_unit<E>(self) -> std::result::Result<IJson, E> {
        Ok(IJson)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<IJson, A::Error> {
        while seq.next_element::<IJson>()?.is_some() {}
        Ok(IJson)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<IJson, A::Error> {
        while map.next_entry::<IJson, IJson>()?.is_some() {}
        Ok(IJson)
    }
}

/// True when arrays and objects (outside strings) nest deeper than `max`.
fn deeper_than(bytes: &[u8], max: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in bytes {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

fn is_json_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Code;

    fn nested(depth: usize) -> String {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn accepts_json_values() {
        for ok in [
            "{}",
            " {\"a\": 1, \"b\":[1,2.5e3]} \n",
            "1",
            "\"x\"",
            "null",
            "[true,false]",
            "\t{\"k\":\"\u{e9}\"}",
        ] {
            validate(ok.as_bytes(), 1 << 20).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }

    #[test]
    fn rejects_non_json() {
        for bad in [
            "", "  ", "{", "{} {}", "1 2", "[1,]", "nul", "{'a':1}", "{}x",
        ] {
            let e = validate(bad.as_bytes(), 1 << 20).unwrap_err();
            assert_eq!(e.code(), Code::InvalidRecord, "{bad}");
        }
    }

    #[test]
    fn rejects_invalid_utf8() {
        let e = validate(b"\"\xff\xfe\"", 100).unwrap_err();
        assert_eq!(e.code(), Code::InvalidRecord);
        assert!(e.message().contains("UTF-8"));
    }

    #[test]
    fn depth_limit_is_128() {
        validate(nested(MAX_DEPTH).as_bytes(), 1 << 20).unwrap();
        let e = validate(nested(MAX_DEPTH + 1).as_bytes(), 1 << 20).unwrap_err();
        assert!(e.message().contains("deeper"), "{}", e.message());
        // Objects count too; brackets inside strings (escaped quotes included) do not.
        let obj = format!(
            "{}1{}",
            "{\"a\":".repeat(MAX_DEPTH + 1),
            "}".repeat(MAX_DEPTH + 1)
        );
        assert!(validate(obj.as_bytes(), 1 << 20).is_err());
        let s = format!("[\"\\\"{}\"]", "[".repeat(500));
        validate(s.as_bytes(), 1 << 20).unwrap();
    }

    #[test]
    fn length_limit_is_inclusive() {
        let rec = format!("\"{}\"", "a".repeat(98));
        assert_eq!(rec.len(), 100);
        validate(rec.as_bytes(), 100).unwrap();
        let e = validate(rec.as_bytes(), 99).unwrap_err();
        assert_eq!(e.code(), Code::InvalidRecord);
    }

    /// I-JSON (RFC 7493): what every receiver's parser can read. A number that overflows a
    /// double and an escape that leaves a surrogate unpaired are refused; underflow, long
    /// integers within range, and properly paired surrogates are fine.
    #[test]
    fn i_json_only() {
        for bad in [
            "1e999",
            "{\"x\":1e999}",
            "[-1e309]",
            "\"\\ud800\"",
            "\"\\udc00\"",
            "\"\\ud800x\"",
            "\"\\ud800\\u0041\"",
            "{\"\\ud83d\":1}",
        ]
        .into_iter()
        .map(String::from)
        .chain([
            format!("1{}", "0".repeat(309)),
            format!("[-{}]", "9".repeat(400)),
        ]) {
            let e = validate(bad.as_bytes(), 1 << 20)
                .err()
                .unwrap_or_else(|| panic!("{bad} was accepted"));
            assert_eq!(e.code(), Code::InvalidRecord, "{bad}");
        }
        for ok in [
            "1e-999",
            "1.7976931348623157e308",
            "18446744073709551616",
            "-9223372036854775809",
            "\"\\ud83d\\ude00\"",
            "{\"\\ud83d\\ude00\":[\"\\u00e9\"]}",
        ] {
            validate(ok.as_bytes(), 1 << 20).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }
}
