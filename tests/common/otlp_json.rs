//! OTLP's JSON encoding read back, for the tests of the OTLP encoders (the unit tests of
//! src/http/otlp.rs include this file too): an AnyValue as the JSON value it stands for, and a
//! logged record with its numbers as the mapping carries them.

use serde_json::Value as J;

/// An OTLP JSON AnyValue as the JSON value it stands for (an empty AnyValue is null; intValue
/// is a decimal string).
pub fn from_otlp_json(v: &J) -> J {
    let o = v.as_object().expect("an AnyValue is an object");
    if o.is_empty() {
        return J::Null;
    }
    assert_eq!(o.len(), 1, "{v}");
    let (k, x) = o.iter().next().expect("one field");
    match k.as_str() {
        "stringValue" | "boolValue" => x.clone(),
        "intValue" => J::from(
            x.as_str()
                .expect("intValue is a decimal string")
                .parse::<i64>()
                .expect("an i64"),
        ),
        "doubleValue" => {
            assert!(x.is_number(), "{x}");
            J::from(x.as_f64().expect("a double"))
        }
        "arrayValue" => J::Array(
            x["values"]
                .as_array()
                .expect("values")
                .iter()
                .map(from_otlp_json)
                .collect(),
        ),
        "kvlistValue" => J::Object(
            x["values"]
                .as_array()
                .expect("values")
                .iter()
                .map(|kv| {
                    (
                        kv["key"].as_str().expect("a key").to_string(),
                        from_otlp_json(&kv["value"]),
                    )
                })
                .collect(),
        ),
        other => panic!("unknown AnyValue field {other}"),
    }
}

/// A logged record as the mapping carries it: numbers that fit in i64 stay integers, others
/// become doubles.
pub fn normalised(v: &J) -> J {
    match v {
        J::Number(n) => match n.as_i64() {
            Some(i) => J::from(i),
            None => J::from(n.as_f64().expect("a number")),
        },
        J::Array(a) => J::Array(a.iter().map(normalised).collect()),
        J::Object(o) => J::Object(o.iter().map(|(k, v)| (k.clone(), normalised(v))).collect()),
        other => other.clone(),
    }
}

/// Checks an OTLP JSON request's one resource (`service.name` edgebuf, `edgebuf.source` =
/// `source`, `deployment.environment` = `environment`) and its one scope (edgebuf and the
/// library's version), and returns the scope's log records.
pub fn check_resource_and_scope<'a>(v: &'a J, source: &str, environment: &str) -> &'a Vec<J> {
    let rl = &v["resourceLogs"][0];
    assert_eq!(
        rl["resource"]["attributes"],
        serde_json::json!([
            {"key": "service.name", "value": {"stringValue": "edgebuf"}},
            {"key": "edgebuf.source", "value": {"stringValue": source}},
            {"key": "deployment.environment", "value": {"stringValue": environment}},
        ])
    );
    let sl = &rl["scopeLogs"][0];
    assert_eq!(sl["scope"]["name"], "edgebuf");
    assert_eq!(sl["scope"]["version"], env!("CARGO_PKG_VERSION"));
    sl["logRecords"].as_array().expect("logRecords")
}
