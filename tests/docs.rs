//! The lists of configuration keys that users read follow the one table in the library,
//! `Config::KEYS`: the README's Configuration table and the Python binding's `_KEYS`.

use edgebuf::Config;
use std::path::Path;

fn read(rel: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The fixed keys of the library, in table order.
fn library_keys() -> Vec<String> {
    Config::KEYS.iter().map(|k| k.to_string()).collect()
}

#[test]
fn readme_configuration_table_lists_every_key_in_order() {
    let readme = read("README.md");
    let table = readme
        .split("## Configuration\n")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("README.md has a Configuration section");
    let mut keys = Vec::new();
    for line in table.lines().filter(|l| l.starts_with("| ")) {
        let first = line
            .trim_start_matches("| ")
            .split(" |")
            .next()
            .unwrap_or("");
        if first == "key" || first.starts_with("http.header.") {
            continue;
        }
        // "tls.cert_file, tls.key_file" documents two keys in one row.
        keys.extend(first.split(", ").map(|k| k.trim_matches('`').to_string()));
    }
    assert_eq!(
        keys,
        library_keys(),
        "README.md's Configuration table differs from Config::KEYS"
    );
    assert!(
        table.contains("| http.header.NAME |"),
        "README.md documents http.header.NAME"
    );
}

#[test]
fn python_binding_knows_every_key_in_order() {
    let py = read("bindings/python/edgebuf/__init__.py");
    let tuple = py
        .split("\n_KEYS = (\n")
        .nth(1)
        .and_then(|s| s.split("\n)").next())
        .expect("the Python binding defines _KEYS");
    let keys: Vec<String> = tuple
        .lines()
        .map(|l| l.trim().trim_end_matches(',').trim_matches('"').to_string())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(
        keys,
        library_keys(),
        "bindings/python's _KEYS differs from Config::KEYS"
    );
}

/// Every command in the README's `sh` blocks is run, exactly as written, by a script of the
/// test command or of CI (which runs these files).
#[test]
fn every_readme_command_is_run_by_a_script() {
    let readme = read("README.md");
    let runners = [
        ".ci/run",
        "scripts/test.sh",
        "scripts/targets.sh",
        "tests/install/prefix.sh",
    ]
    .map(|f| (f, read(f)));
    let mut in_sh = false;
    let mut checked = 0;
    for line in readme.lines() {
        if line.starts_with("```") {
            in_sh = line == "```sh";
            continue;
        }
        let cmd = line.trim();
        if !in_sh || cmd.is_empty() || cmd.starts_with('#') {
            continue;
        }
        let found = runners
            .iter()
            .any(|(_, text)| text.lines().any(|l| l.contains(cmd)));
        assert!(
            found,
            "the README command `{cmd}` is run by none of {:?}",
            runners.map(|r| r.0)
        );
        checked += 1;
    }
    assert!(checked >= 4, "only {checked} README commands found");
}
