//! What users read about the configuration keys follows the one table in the library,
//! `edgebuf::config::TABLE` (and `Config::KEYS`, its names): the README's Configuration table
//! (keys in order, defaults, doc lines, the variables it names), the environment table of
//! docs/deployment.md (variables and defaults) and the Python binding's `_KEYS`.

use edgebuf::config::{Key, TABLE};
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

/// The section of a markdown file that starts with `heading` (up to the next `## `).
fn section<'a>(text: &'a str, heading: &str) -> &'a str {
    text.split(heading)
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .unwrap_or_else(|| panic!("no section {heading:?}"))
}

/// The cells of the table rows of `text` (header and separator rows left out).
fn table_rows(text: &str) -> Vec<Vec<String>> {
    let mut rows: Vec<Vec<String>> = text
        .lines()
        .filter(|l| l.starts_with('|') && !l.starts_with("|---"))
        .map(|l| {
            let inner = l.trim().trim_start_matches('|').trim_end_matches('|');
            inner.split('|').map(|c| c.trim().to_string()).collect()
        })
        .collect();
    if !rows.is_empty() {
        rows.remove(0); // the header
    }
    rows
}

/// The row of the library's table for `key`.
fn row(key: &str) -> &'static Key {
    Key::find(key).unwrap_or_else(|| panic!("{key} is not a key of the library"))
}

/// A default as the docs write it: without backticks.
fn plain(cell: &str) -> String {
    cell.replace('`', "")
}

/// The README's Configuration table: (keys of the row, default cell, meaning cell), the
/// `http.header.NAME` row left out.
fn readme_config_rows() -> Vec<(Vec<String>, String, String)> {
    let readme = read("README.md");
    let table = section(&readme, "## Configuration\n");
    assert!(
        table.contains("| http.header.NAME |"),
        "README.md documents http.header.NAME"
    );
    table_rows(table)
        .into_iter()
        .filter(|cells| !cells[0].starts_with("http.header."))
        .map(|cells| {
            assert_eq!(
                cells.len(),
                3,
                "README row {cells:?}: key | default | meaning"
            );
            // "tls.cert_file, tls.key_file" documents two keys in one row.
            let keys = cells[0]
                .split(", ")
                .map(|k| k.trim_matches('`').to_string())
                .collect();
            (keys, cells[1].clone(), cells[2].clone())
        })
        .collect()
}

#[test]
fn readme_configuration_table_lists_every_key_in_order() {
    let keys: Vec<String> = readme_config_rows()
        .into_iter()
        .flat_map(|(keys, _, _)| keys)
        .collect();
    assert_eq!(
        keys,
        library_keys(),
        "README.md's Configuration table differs from Config::KEYS"
    );
}

#[test]
fn readme_configuration_table_states_the_tables_defaults_and_doc_lines() {
    for (keys, default, meaning) in readme_config_rows() {
        for key in &keys {
            let row = row(key);
            assert_eq!(
                plain(&default),
                row.default_text(),
                "README.md: the default of {key} differs from the key table (src/config/keys.rs)"
            );
            assert_eq!(
                meaning,
                row.doc(),
                "README.md: the meaning of {key} differs from its doc line in the key table"
            );
        }
    }
}

#[test]
fn readme_configuration_variables_are_the_tables() {
    let readme = read("README.md");
    let text = section(&readme, "## Configuration\n");
    let mut named = 0;
    for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        let Some(rest) = word.strip_prefix("EDGEBUF_") else {
            continue;
        };
        // Result codes and events are not variables.
        if rest.starts_with("ERR_") || rest.starts_with("EVENT_") {
            continue;
        }
        // "EDGEBUF_ + the key" states the rule; the header family has its own.
        if rest.is_empty() || rest.starts_with("HTTP_HEADER_") {
            continue;
        }
        assert!(
            TABLE.iter().any(|k| k.env_name() == word),
            "README.md names {word}, which sets no key"
        );
        named += 1;
    }
    assert!(named >= 2, "README.md names the variables of the keys");
}

#[test]
fn deployment_environment_table_states_every_variable_and_default() {
    let doc = read("docs/deployment.md");
    let table = section(&doc, "## Environment variables\n");
    let mut keys = Vec::new();
    for cells in table_rows(table) {
        assert_eq!(cells.len(), 3, "{cells:?}: variable | key | default");
        let (var, key, default) = (&cells[0], &cells[1], plain(&cells[2]));
        if key.starts_with("http.header.") {
            continue;
        }
        let row = row(key);
        assert_eq!(
            *var,
            row.env_name(),
            "docs/deployment.md: the variable of {key}"
        );
        // The default, maybe followed by a note: "0 (no limit)".
        let want = row.default_text();
        assert!(
            default == want || default.starts_with(&format!("{want} (")),
            "docs/deployment.md: the default of {key} is {default:?}, the key table says {want:?}"
        );
        keys.push(key.clone());
    }
    assert_eq!(
        keys,
        library_keys(),
        "docs/deployment.md's environment table differs from Config::KEYS"
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
