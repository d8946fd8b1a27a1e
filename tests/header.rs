//! The committed C header is what cbindgen generates from the source, carries every function
//! of docs/reference.md, C API, and its version macros match Cargo.toml.

use std::path::Path;
use std::process::Command;

fn header() -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("include/edgebuf.h");
    std::fs::read_to_string(p).expect("include/edgebuf.h exists (build.rs writes it)")
}

#[test]
fn committed_header_matches_a_fresh_generation() {
    // build.rs regenerated include/edgebuf.h before this test was compiled; a difference from
    // the committed file means the committed header is stale.
    let dir = env!("CARGO_MANIFEST_DIR");
    let inside_git = Command::new("git")
        .args(["-C", dir, "rev-parse", "--is-inside-work-tree"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !inside_git {
        eprintln!("not a git checkout: nothing to compare against");
        return;
    }
    let out = Command::new("git")
        .args([
            "-C",
            dir,
            "diff",
            "--exit-code",
            "HEAD",
            "--",
            "include/edgebuf.h",
        ])
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "include/edgebuf.h differs from the committed header; commit the regenerated file:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn header_has_every_function_and_code_of_the_spec() {
    let h = header();
    for f in [
        "edgebuf_config_new",
        "edgebuf_config_set",
        "edgebuf_config_from_env",
        "edgebuf_config_set_event_callback",
        "edgebuf_config_free",
        "edgebuf_open",
        "edgebuf_log",
        "edgebuf_sync",
        "edgebuf_flush",
        "edgebuf_retry_now",
        "edgebuf_status",
        "edgebuf_status_json",
        "edgebuf_close",
        "edgebuf_last_error",
        "edgebuf_result_name",
        "edgebuf_version",
    ] {
        let declared = h
            .match_indices(&format!("{f}("))
            .any(|(i, _)| matches!(h.as_bytes()[i - 1], b' ' | b'*'));
        assert!(declared, "{f} missing from the header");
    }
    for (name, v) in [
        ("EDGEBUF_OK", 0),
        ("EDGEBUF_ERR_INVALID_ARGUMENT", 1),
        ("EDGEBUF_ERR_INVALID_CONFIG", 2),
        ("EDGEBUF_ERR_INVALID_RECORD", 3),
        ("EDGEBUF_ERR_FULL", 4),
        ("EDGEBUF_ERR_TIMEOUT", 5),
        ("EDGEBUF_ERR_CLOSED", 6),
        ("EDGEBUF_ERR_STORAGE", 7),
        ("EDGEBUF_ERR_LOCKED", 8),
        ("EDGEBUF_ERR_CORRUPT", 9),
        ("EDGEBUF_ERR_BUFFER_TOO_SMALL", 10),
        ("EDGEBUF_ERR_INTERNAL", 99),
    ] {
        assert!(h.contains(&format!("#define {name} {v}\n")), "{name} = {v}");
    }
    for m in [
        "EDGEBUF_STATUS_INIT",
        "EDGEBUF_STATUS_SIZE_V1",
        "EDGEBUF_STATUS_SIZE_V2",
        "typedef struct edgebuf edgebuf_t",
    ] {
        assert!(h.contains(m), "{m}");
    }
}

#[test]
fn version_macros_match_cargo_toml() {
    let h = header();
    for (m, v) in [
        ("EDGEBUF_VERSION_MAJOR", env!("CARGO_PKG_VERSION_MAJOR")),
        ("EDGEBUF_VERSION_MINOR", env!("CARGO_PKG_VERSION_MINOR")),
        ("EDGEBUF_VERSION_PATCH", env!("CARGO_PKG_VERSION_PATCH")),
    ] {
        assert!(h.contains(&format!("#define {m} {v}\n")), "{m}");
    }
}

/// The `#define NAME VALUE` lines of the header whose name starts with `prefix`.
fn defines(prefix: &str) -> Vec<(String, i64)> {
    header()
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            if w.next() != Some("#define") {
                return None;
            }
            let name = w.next()?;
            if !name.starts_with(prefix) {
                return None;
            }
            let value = w.next()?.trim_start_matches('(').trim_end_matches(')');
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}

fn sorted(mut v: Vec<(String, i64)>) -> Vec<(String, i64)> {
    v.sort();
    v
}

/// The header's result codes are the Rust table `Code::ALL`, name for name, value for value.
#[test]
fn result_codes_follow_the_one_table() {
    let table: Vec<(String, i64)> = edgebuf::Code::ALL
        .iter()
        .map(|c| (c.name().to_string(), c.value() as i64))
        .collect();
    let mut header = defines("EDGEBUF_ERR_");
    header.extend(defines("EDGEBUF_OK"));
    assert_eq!(sorted(header), sorted(table));
    assert_eq!(edgebuf::Code::name_of(12345), "EDGEBUF_UNKNOWN");
}

/// The header's event kinds and connectivity states are the Rust tables.
#[test]
fn event_kinds_and_connectivity_follow_their_tables() {
    let events: Vec<(String, i64)> = edgebuf::events::EVENT_KINDS
        .iter()
        .map(|(v, n)| (format!("EDGEBUF_EVENT_{n}"), *v as i64))
        .collect();
    assert_eq!(sorted(defines("EDGEBUF_EVENT_")), sorted(events));
    let states: Vec<(String, i64)> = edgebuf::status::CONNECTIVITY_STATES
        .iter()
        .map(|(v, n)| {
            (
                format!("EDGEBUF_CONNECTIVITY_{}", n.to_uppercase()),
                *v as i64,
            )
        })
        .collect();
    assert_eq!(sorted(defines("EDGEBUF_CONNECTIVITY_")), sorted(states));
}
