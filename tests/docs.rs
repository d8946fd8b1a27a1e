//! What users read follows the library: the configuration keys follow its one key table,
//! `edgebuf::config::TABLE` (and `Config::KEYS`, its names) in docs/reference.md's table (keys in
//! order, defaults, doc lines), the variables the README and the reference name, the environment
//! table of docs/deployment.md (variables and defaults) and the Python binding's `_KEYS`; every
//! function, result code, status field, event kind and connectivity state of the C header is
//! described in docs/reference.md; and every command the README shows is run by a script.

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

/// docs/reference.md's table of configuration keys: (keys of the row, default cell, meaning
/// cell), the `http.header.NAME` and `otlp.resource.NAME` rows left out.
fn readme_config_rows() -> Vec<(Vec<String>, String, String)> {
    let reference = read("docs/reference.md");
    let table = section(&reference, "## Configuration keys\n");
    assert!(
        table.contains("| http.header.NAME |"),
        "docs/reference.md documents http.header.NAME"
    );
    table_rows(table)
        .into_iter()
        .filter(|cells| {
            !cells[0].starts_with("http.header.") && !cells[0].starts_with("otlp.resource.")
        })
        .map(|cells| {
            assert_eq!(
                cells.len(),
                3,
                "docs/reference.md row {cells:?}: key | default | meaning"
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
        "docs/reference.md's table of keys differs from Config::KEYS"
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
                "docs/reference.md: the default of {key} differs from the key table (src/config/keys.rs)"
            );
            assert_eq!(
                meaning,
                row.doc(),
                "docs/reference.md: the meaning of {key} differs from its doc line in the key table"
            );
        }
    }
}

#[test]
fn readme_configuration_variables_are_the_tables() {
    for (file, heading) in [
        ("README.md", "## Configuration\n"),
        ("docs/reference.md", "## Configuration keys\n"),
    ] {
        let doc = read(file);
        let text = section(&doc, heading);
        let mut named = 0;
        for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            let Some(rest) = word.strip_prefix("EDGEBUF_") else {
                continue;
            };
            // Result codes, events and connectivity states are not variables.
            if ["ERR_", "EVENT_", "CONNECTIVITY_"]
                .iter()
                .any(|p| rest.starts_with(p))
            {
                continue;
            }
            // "EDGEBUF_ + the key" states the rule; the families have their own.
            if rest.is_empty()
                || rest.starts_with("HTTP_HEADER_")
                || rest.starts_with("OTLP_RESOURCE_")
            {
                continue;
            }
            assert!(
                TABLE.iter().any(|k| k.env_name() == word),
                "{file} names {word}, which sets no key"
            );
            named += 1;
        }
        assert!(named >= 2, "{file} names the variables of the keys");
    }
}

/// Every function, result code, status field, event kind and connectivity state of the header
/// is described in docs/reference.md, in the section for it.
#[test]
fn the_reference_describes_everything_the_header_declares() {
    let header = read("include/edgebuf.h");
    let reference = read("docs/reference.md");
    let words = |text: &str| -> Vec<String> {
        text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| !w.is_empty())
            .map(String::from)
            .collect()
    };
    let mut checked = 0;
    let mut expect = |name: &str, heading: &str| {
        let sec = section(&reference, heading);
        assert!(
            words(sec).iter().any(|w| w == name),
            "docs/reference.md's section {heading:?} does not describe {name}"
        );
        checked += 1;
    };
    for w in words(&header) {
        if w.starts_with("edgebuf_") && header.contains(&format!("{w}(")) && !w.ends_with("_t") {
            expect(&w, "## The C API\n");
        } else if (w.starts_with("EDGEBUF_ERR_") && w.len() > 12) || w == "EDGEBUF_OK" {
            expect(&w, "## Result codes\n");
        } else if w.starts_with("EDGEBUF_EVENT_") && w.len() > 14 {
            expect(&w, "## Events\n");
        } else if w.starts_with("EDGEBUF_CONNECTIVITY_") && w.len() > 21 {
            expect(&w, "## Status fields\n");
        }
    }
    // The status fields, in the order of the struct.
    let status = header
        .split("typedef struct edgebuf_status_t {")
        .nth(1)
        .and_then(|s| s.split("} edgebuf_status_t;").next())
        .expect("the header declares edgebuf_status_t");
    let fields: Vec<String> = status
        .lines()
        .map(str::trim)
        .filter(|l| l.ends_with(';') && !l.starts_with('*'))
        .filter_map(|l| {
            l.trim_end_matches(';')
                .split_whitespace()
                .last()
                .map(String::from)
        })
        .filter(|f| f != "struct_size" && f != "reserved0")
        .collect();
    let documented: Vec<String> = table_rows(section(&reference, "## Status fields\n"))
        .into_iter()
        .map(|cells| cells[0].clone())
        .collect();
    assert_eq!(
        documented, fields,
        "docs/reference.md's status table differs from edgebuf_status_t"
    );
    assert!(
        checked >= 16 + 11 + 9 + 3,
        "only {checked} names of the header checked"
    );
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
/// test command or of CI (which runs these files). A block after the marker
/// `<!-- run by tests/install/readme.sh ... -->` is run whole by that script, which reads it
/// from the README.
#[test]
fn every_readme_command_is_run_by_a_script() {
    let readme = read("README.md");
    let runners = [
        ".ci/run",
        "scripts/test.sh",
        "scripts/targets.sh",
        "tests/install/prefix.sh",
        "tests/install/deb.sh",
        "tests/install/wheel.sh",
    ]
    .map(|f| (f, read(f)));
    assert!(
        read("scripts/test.sh").contains("tests/install/readme.sh"),
        "the test command runs tests/install/readme.sh"
    );
    let mut in_sh = false;
    let mut marked = false;
    let mut by_readme_sh = 0;
    let mut checked = 0;
    for line in readme.lines() {
        if line.starts_with("<!-- run by tests/install/readme.sh") {
            marked = true;
            continue;
        }
        if line.starts_with("```") {
            in_sh = line == "```sh";
            if !in_sh {
                marked = false;
            }
            continue;
        }
        if in_sh && marked {
            by_readme_sh += 1;
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
    assert!(
        by_readme_sh >= 4,
        "only {by_readme_sh} README lines run by readme.sh"
    );
}
