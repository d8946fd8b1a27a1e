//! The `EDGEBUF_*` environment variables: one per key, named by [`env_name`], and
//! `EDGEBUF_HTTP_HEADER_<NAME>` for the header family.

use super::values::{printable, HEADER_PREFIX, RESOURCE_PREFIX};
use super::Config;
use crate::error::{Error, Result};

/// The prefix of every environment variable of ours.
pub(crate) const ENV_PREFIX: &str = "EDGEBUF_";
/// The prefix (after `EDGEBUF_`) of the header variables.
const ENV_HEADER_PREFIX: &str = "HTTP_HEADER_";
/// The prefix (after `EDGEBUF_`) of the OTLP resource attribute variables.
const ENV_RESOURCE_PREFIX: &str = "OTLP_RESOURCE_";

/// The variable of a key: `EDGEBUF_` + the key upper-cased with `.` as `_`
/// (`EDGEBUF_CAPACITY_WHEN_FULL`).
pub(crate) fn env_name(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.to_ascii_uppercase().replace('.', "_"))
}

impl Config {
    /// Applies the `EDGEBUF_*` environment variables (see [`Config::from_vars`]).
    ///
    /// Variables whose name is not UTF-8 are skipped (they cannot name a key); a variable of ours
    /// whose value is not UTF-8 is `Code::InvalidConfig` naming the variable, and nothing is
    /// applied.
    #[allow(clippy::wrong_self_convention)]
    pub fn from_env(&mut self) -> Result<()> {
        let mut vars = Vec::new();
        for (name, value) in std::env::vars_os() {
            let Some(name) = name.to_str() else { continue };
            if env_var_key(name).is_none() {
                continue;
            }
            let Some(value) = value.to_str() else {
                return Err(Error::invalid_config(format!(
                    "environment variable {} is not valid UTF-8",
                    printable(name)
                )));
            };
            vars.push((name.to_string(), value.to_string()));
        }
        self.from_vars(vars)
    }

    /// Applies environment variables given as (name, value) pairs: the testable core of
    /// [`Config::from_env`].
    ///
    /// For every key, `EDGEBUF_` + the key upper-cased with `.` as `_` (`EDGEBUF_ENDPOINT`,
    /// `EDGEBUF_CAPACITY_WHEN_FULL`). `EDGEBUF_HTTP_HEADER_<NAME>` sets `http.header.<NAME>` with
    /// every `_` turned into `-` and each `-`-separated part written in title case:
    /// `EDGEBUF_HTTP_HEADER_X_API_KEY` sets `http.header.X-Api-Key` (header names are
    /// case-insensitive, so only the spelling on the wire is affected; a header whose name holds
    /// `_` cannot be set this way). `EDGEBUF_OTLP_RESOURCE_<NAME>` sets `otlp.resource.<name>`
    /// with `NAME` in lower case and every `_` turned into `.`:
    /// `EDGEBUF_OTLP_RESOURCE_DEPLOYMENT_ENVIRONMENT` sets `otlp.resource.deployment.environment`
    /// (a name holding `_` or upper case cannot be set this way). Variable names are
    /// case-sensitive.
    ///
    /// Each variable is applied exactly as [`Config::set`] would apply its value (so "" restores
    /// the default), in the order of the variable names. All or nothing: on a bad value nothing is
    /// applied and the error, `Code::InvalidConfig`, names the variable (never the value).
    /// Variables naming no key are ignored.
    #[allow(clippy::wrong_self_convention)]
    pub fn from_vars<I, K, V>(&mut self, vars: I) -> Result<()>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut ours: Vec<(String, String, String)> = vars
            .into_iter()
            .filter_map(|(name, value)| {
                let name = name.as_ref();
                env_var_key(name).map(|key| (name.to_string(), key, value.as_ref().to_string()))
            })
            .collect();
        // Stable: a name given twice keeps its last value.
        ours.sort_by(|a, b| a.0.cmp(&b.0));
        let mut next = self.clone();
        for (name, key, value) in &ours {
            next.set(key, value).map_err(|e| {
                Error::new(
                    e.code(),
                    format!(
                        "environment variable {} is invalid: {}",
                        printable(name),
                        e.message()
                    ),
                )
            })?;
        }
        *self = next;
        Ok(())
    }
}

/// The key an environment variable names, if any.
fn env_var_key(var: &str) -> Option<String> {
    let rest = var.strip_prefix(ENV_PREFIX)?;
    if let Some(name) = rest.strip_prefix(ENV_HEADER_PREFIX) {
        if name.is_empty() {
            return None;
        }
        return Some(format!("{HEADER_PREFIX}{}", header_name_from_env(name)));
    }
    if let Some(name) = rest.strip_prefix(ENV_RESOURCE_PREFIX) {
        if name.is_empty() {
            return None;
        }
        return Some(format!(
            "{RESOURCE_PREFIX}{}",
            name.to_ascii_lowercase().replace('_', ".")
        ));
    }
    Config::KEYS
        .iter()
        .find(|key| env_name(key) == var)
        .map(|key| key.to_string())
}

/// `X_API_KEY` → `X-Api-Key`: `_` becomes `-`, each part in title case.
fn header_name_from_env(name: &str) -> String {
    name.split('_')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => {
                    let mut s = String::with_capacity(part.len());
                    s.push(first.to_ascii_uppercase());
                    s.extend(chars.map(|c| c.to_ascii_lowercase()));
                    s
                }
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    use super::super::tests::{all_good, GOOD};
    use super::super::{Durability, Format, WhenFull};
    use super::*;
    use crate::error::Code;
    use std::path::PathBuf;

    #[test]
    fn env_names_map_to_every_key_and_no_two_collide() {
        let mut seen = Vec::new();
        for key in Config::KEYS {
            let var = format!("EDGEBUF_{}", key.to_ascii_uppercase().replace('.', "_"));
            assert_eq!(env_var_key(&var).as_deref(), Some(*key), "{var}");
            assert!(!seen.contains(&var));
            seen.push(var);
        }
        assert_eq!(
            env_var_key("EDGEBUF_CAPACITY_WHEN_FULL").as_deref(),
            Some("capacity.when_full")
        );
        assert_eq!(
            env_var_key("EDGEBUF_HTTP_CONNECT_TIMEOUT_MS").as_deref(),
            Some("http.connect_timeout_ms")
        );
        for not_ours in [
            "EDGEBUF_",
            "EDGEBUF_NOPE",
            "EDGEBUF_endpoint",
            "edgebuf_ENDPOINT",
            "ENDPOINT",
            "EDGEBUF_ENDPOINT_",
            "EDGEBUF_HTTP_HEADER_",
            "EDGEBUF_HTTP_HEADER",
            "XEDGEBUF_ENDPOINT",
        ] {
            assert_eq!(env_var_key(not_ours), None, "{not_ours}");
        }
    }

    #[test]
    fn env_header_names() {
        assert_eq!(header_name_from_env("X_API_KEY"), "X-Api-Key");
        assert_eq!(header_name_from_env("AUTHORIZATION"), "Authorization");
        assert_eq!(header_name_from_env("x_api_key"), "X-Api-Key");
        assert_eq!(header_name_from_env("X__A"), "X--A");
        assert_eq!(header_name_from_env("_A_"), "-A-");
        assert_eq!(
            env_var_key("EDGEBUF_HTTP_HEADER_X_API_KEY").as_deref(),
            Some("http.header.X-Api-Key")
        );
    }

    #[test]
    fn env_resource_attributes() {
        assert_eq!(
            env_var_key("EDGEBUF_OTLP_RESOURCE_DEPLOYMENT_ENVIRONMENT").as_deref(),
            Some("otlp.resource.deployment.environment")
        );
        assert_eq!(env_var_key("EDGEBUF_OTLP_RESOURCE_"), None);
        let mut c = Config::new();
        c.from_vars([
            ("EDGEBUF_OTLP_RESOURCE_SERVICE_NAME", "cams"),
            ("EDGEBUF_FORMAT", "otlp_proto"),
        ])
        .unwrap();
        assert_eq!(c.format, Format::OtlpProto);
        assert_eq!(c.otlp_resource_attributes(), vec![("service.name", "cams")]);
        let e = Config::new()
            .from_vars([("EDGEBUF_OTLP_RESOURCE_HOST_NAME", "a\nb")])
            .unwrap_err();
        assert!(e.message().contains("EDGEBUF_OTLP_RESOURCE_HOST_NAME"));
    }

    #[test]
    fn from_vars_applies_our_variables() {
        let mut c = Config::new();
        c.from_vars([
            ("EDGEBUF_ENDPOINT", "https://ingest.example.com/v1"),
            ("EDGEBUF_PATH", "/data/buf.db"),
            ("EDGEBUF_CAPACITY_WHEN_FULL", "drop_newest"),
            ("EDGEBUF_COMMIT_INTERVAL_MS", "50"),
            ("EDGEBUF_DISK_MIN_FREE_BYTES", "1048576"),
            ("EDGEBUF_HTTP_HEADER_X_API_KEY", "k-123"),
            ("EDGEBUF_NOT_A_KEY", "whatever"),
            ("EDGEBUF_endpoint", "not even a url"),
            ("HOME", "/root"),
            ("PATH", "/usr/bin"),
        ])
        .unwrap();
        assert_eq!(c.endpoint.as_deref(), Some("https://ingest.example.com/v1"));
        assert_eq!(c.path, Some(PathBuf::from("/data/buf.db")));
        assert_eq!(c.capacity_when_full, WhenFull::DropNewest);
        assert_eq!(c.commit_interval_ms, 50);
        assert_eq!(c.disk_min_free_bytes, Some(1048576));
        assert_eq!(
            c.http_headers,
            vec![("X-Api-Key".to_string(), "k-123".to_string())]
        );
    }

    #[test]
    fn from_vars_every_key_by_its_variable() {
        let vars: Vec<(String, String)> = GOOD
            .iter()
            .map(|(k, v)| {
                (
                    format!("EDGEBUF_{}", k.to_ascii_uppercase().replace('.', "_")),
                    v.to_string(),
                )
            })
            .collect();
        let mut c = Config::new();
        c.from_vars(vars.clone()).unwrap();
        assert_eq!(c, all_good());
        // "" restores the default, as set does.
        let empties: Vec<(String, String)> = vars
            .iter()
            .map(|(n, _)| (n.clone(), String::new()))
            .collect();
        c.from_vars(empties).unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn from_vars_is_all_or_nothing_and_names_the_variable() {
        let mut c = Config::new();
        c.set("endpoint", "https://old.example.com/").unwrap();
        let before = c.clone();
        let e = c
            .from_vars([
                ("EDGEBUF_ENDPOINT", "https://new.example.com/"),
                ("EDGEBUF_BATCH_MAX_RECORDS", "100"),
                ("EDGEBUF_HTTP_HEADER_X_TOKEN", "tok"),
                ("EDGEBUF_RETRY_MAX_MS", "-5555"),
                ("EDGEBUF_ZZZ_UNKNOWN", "x"),
            ])
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidConfig);
        assert!(
            e.message().contains("EDGEBUF_RETRY_MAX_MS"),
            "{}",
            e.message()
        );
        assert!(e.message().contains("retry.max_ms"), "{}", e.message());
        assert!(!e.message().contains("-5555"));
        assert_eq!(c, before);
    }

    #[test]
    fn from_vars_bad_header_variables() {
        let mut c = Config::new();
        let e = c
            .from_vars([("EDGEBUF_HTTP_HEADER_X_API_KEY", "topsecret\r\nX: y")])
            .unwrap_err();
        assert!(e.message().contains("EDGEBUF_HTTP_HEADER_X_API_KEY"));
        assert!(e.message().contains("http.header.X-Api-Key"));
        assert!(!e.message().contains("topsecret"));
        let e = c
            .from_vars([("EDGEBUF_HTTP_HEADER_HOST", "evil.example.com")])
            .unwrap_err();
        assert!(e.message().contains("EDGEBUF_HTTP_HEADER_HOST"));
        assert!(e.message().contains("reserved"));
        let e = c
            .from_vars([("EDGEBUF_HTTP_HEADER_X(Y)", "v")])
            .unwrap_err();
        assert!(e.message().contains("EDGEBUF_HTTP_HEADER_X(Y)"));
        assert_eq!(c, Config::default());
    }

    #[test]
    fn from_vars_header_replaces_a_header_set_in_code() {
        let mut c = Config::new();
        c.set("http.header.X-API-KEY", "from-code").unwrap();
        c.from_vars([("EDGEBUF_HTTP_HEADER_X_API_KEY", "from-env")])
            .unwrap();
        assert_eq!(
            c.http_headers,
            vec![("X-Api-Key".to_string(), "from-env".to_string())]
        );
        c.from_vars([("EDGEBUF_HTTP_HEADER_X_API_KEY", "")])
            .unwrap();
        assert!(c.http_headers.is_empty());
    }

    #[test]
    fn from_vars_order_is_by_name_and_last_duplicate_wins() {
        let mut c = Config::new();
        c.from_vars(vec![
            ("EDGEBUF_FORMAT", "ndjson"),
            ("EDGEBUF_DURABILITY", "sync"),
            ("EDGEBUF_FORMAT", "json"),
        ])
        .unwrap();
        assert_eq!(c.format, Format::Json);
        assert_eq!(c.durability, Durability::Sync);
        c.from_vars(Vec::<(String, String)>::new()).unwrap();
        assert_eq!(c.durability, Durability::Sync);
    }

    #[test]
    fn from_env_reads_the_process_environment() {
        // Tests do not change the environment (it is shared by every thread); when it holds no
        // EDGEBUF_ variable, from_env must succeed and change nothing.
        let ours = std::env::vars_os().any(|(k, _)| k.to_string_lossy().starts_with(ENV_PREFIX));
        let mut c = all_good();
        let r = c.from_env();
        if !ours {
            r.unwrap();
            assert_eq!(c, all_good());
        }
    }
}
