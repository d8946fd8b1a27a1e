//! Configuration: the string keys, their defaults, and their checks.
//!
//! The keys are one table, [`TABLE`] in `keys.rs`: a row per key gives its field, type,
//! default, range, doc line and (by rule) its `EDGEBUF_*` variable, and the struct, `Default`,
//! `Debug`, [`Config::KEYS`], [`Config::set`] and the open-time range checks are generated from
//! it. `values.rs` holds the syntax of paths, URLs, proxies, source ids and headers; `env.rs`
//! the environment variables; `enums.rs` the enumerated values.
//!
//! [`Config::set`] checks the syntax and range of one key; [`Config::from_env`] applies the
//! `EDGEBUF_*` environment variables all or nothing; [`Config::validate_for_open`] checks what
//! only makes sense at open (required keys, combinations, readable files).
//!
//! Every error is `Code::InvalidConfig` with one sentence that names the key (or the environment
//! variable) and says what is expected. A message never contains the value that was given: values
//! may hold credentials (header values, URL user info, query strings).
//!
//! Numbers are plain decimal digits: no sign, spaces, `0x` or suffix. Enumerated values
//! (`async`, `gzip`, `drop_oldest`, ...) are matched ignoring ASCII case. Paths are non-empty, at
//! most 4095 bytes and without NUL. URLs are at most 8192 bytes of printable ASCII without spaces.
//! Header names are at most 256 bytes, values at most 16384 bytes, and at most 64 headers are set.

mod enums;
mod env;
mod keys;
mod values;

pub use enums::{
    Compression, DeliveryOrder, Durability, Format, OnCorrupt, ProxySetting, WhenFull,
};
pub use keys::{Config, Key, Kind, Unit, Unset, TABLE};
// The one home of the reserved header names; the sender uses them too.
pub(crate) use values::is_reserved_header;

use crate::error::{Error, Result};
use std::path::Path;
use values::{
    check_header_name, check_header_value, check_readable, check_resource_name,
    check_resource_value, host_name, printable, redact_url, sanitize_source_id, too_many_headers,
    too_many_resource_attributes, HEADER_PREFIX, MAX_HEADERS, MAX_RESOURCE_ATTRIBUTES,
    RESOURCE_PREFIX,
};

/// The OTLP resource's `service.name` unless `otlp.resource.service.name` is set.
pub const DEFAULT_SERVICE_NAME: &str = "edgebuf";

impl Config {
    /// A configuration with the defaults of the key table (the same as `Config::default()`).
    pub fn new() -> Config {
        Config::default()
    }

    /// INVALID_CONFIG for a key that names no setting, with a message fit to print.
    pub fn check_key(key: &str) -> Result<()> {
        if key.starts_with(HEADER_PREFIX)
            || key.starts_with(RESOURCE_PREFIX)
            || Config::KEYS.contains(&key)
        {
            Ok(())
        } else {
            Err(unknown_key(key))
        }
    }

    /// A key (or any name) made safe for a message: printable ASCII, at most 100 characters.
    pub fn printable_name(key: &str) -> String {
        printable(key)
    }

    /// Sets one key, checking syntax and range.
    ///
    /// An unknown key or a bad value is `Code::InvalidConfig` whose message names the key (never
    /// the value) and says what is expected, e.g. "commit.interval_ms must be a whole number of
    /// milliseconds from 0 to 3600000". A failed set leaves the old value. The value "" restores
    /// the default (for `path` and `endpoint`: unset; for `http.header.NAME`: removes the header;
    /// for `otlp.resource.NAME`: removes the attribute).
    /// Keys are case-sensitive; enumerated values are matched ignoring ASCII case.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        if let Some(name) = key.strip_prefix(HEADER_PREFIX) {
            return self.set_header(name, value);
        }
        if let Some(name) = key.strip_prefix(RESOURCE_PREFIX) {
            return self.set_resource(name, value);
        }
        match Key::find(key) {
            Some(row) => (row.set)(row, self, value),
            None => Err(unknown_key(key)),
        }
    }

    /// Open-time checks: `path` and `endpoint` are set; every value is still within what
    /// [`Config::set`] accepts (fields are public); `retry.initial_ms` ≤ `retry.max_ms`;
    /// `tls.cert_file` and `tls.key_file` are set together; every file named by a `tls.*` key is a
    /// readable regular file. Errors are `Code::InvalidConfig` naming the key.
    pub fn validate_for_open(&self) -> Result<()> {
        // In table order: `path` (required) comes before `endpoint` (required).
        for row in TABLE {
            (row.check)(row, self)?;
        }
        if self.http_headers.len() > MAX_HEADERS {
            return Err(too_many_headers());
        }
        for (name, value) in &self.http_headers {
            check_header_name(name)?;
            check_header_value(name, value)?;
        }
        if self.otlp_resource.len() > MAX_RESOURCE_ATTRIBUTES {
            return Err(too_many_resource_attributes());
        }
        for (name, value) in &self.otlp_resource {
            check_resource_name(name)?;
            check_resource_value(name, value)?;
        }
        if self.retry_initial_ms > self.retry_max_ms {
            return Err(Error::invalid_config(
                "retry.initial_ms must not be greater than retry.max_ms",
            ));
        }
        self.tls_client_files()?;
        for (key, file) in [
            ("tls.ca_file", &self.tls_ca_file),
            ("tls.cert_file", &self.tls_cert_file),
            ("tls.key_file", &self.tls_key_file),
        ] {
            if let Some(p) = file {
                check_readable(key, p)?;
            }
        }
        Ok(())
    }

    /// The endpoint, checked as at open: set, and an http:// or https:// URL with a host. The
    /// errors are those of [`Config::validate_for_open`].
    pub(crate) fn checked_endpoint(&self) -> Result<&str> {
        if let Some(row) = Key::find("endpoint") {
            (row.check)(row, self)?;
        }
        self.endpoint
            .as_deref()
            .ok_or_else(|| Error::invalid_config("endpoint is required"))
    }

    /// The client certificate and key files of mutual TLS: both or neither (`None`); one
    /// without the other is INVALID_CONFIG naming both.
    pub(crate) fn tls_client_files(&self) -> Result<Option<(&Path, &Path)>> {
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(cert), Some(key)) => Ok(Some((cert, key))),
            (None, None) => Ok(None),
            (Some(_), None) => Err(Error::invalid_config(
                "tls.cert_file is set without tls.key_file: mutual TLS needs both",
            )),
            (None, Some(_)) => Err(Error::invalid_config(
                "tls.key_file is set without tls.cert_file: mutual TLS needs both",
            )),
        }
    }

    /// `source.id` if set, else the host name (from `/proc/sys/kernel/hostname`, then
    /// `/etc/hostname`, then "edgebuf"), sanitised: characters outside printable ASCII dropped,
    /// surrounding spaces trimmed, at most 128 bytes, never empty.
    pub fn source_id_or_default(&self) -> String {
        if let Some(id) = self.source_id.as_deref().and_then(sanitize_source_id) {
            return id;
        }
        host_name()
    }

    /// `clock.valid_after_unix_ms` as the engine uses it: the value set, or the library's build
    /// time while unset (0: every wall clock is valid).
    pub fn clock_valid_after_ms(&self) -> i64 {
        self.clock_valid_after_unix_ms
            .map_or(crate::clock::BUILD_UNIX_MS, |v| {
                v.min(i64::MAX as u64) as i64
            })
    }

    /// The endpoint with user info, query and fragment removed, safe for messages and status
    /// (e.g. "https://host:8443/ingest"); characters outside printable ASCII are
    /// percent-encoded. "" when no endpoint is set.
    pub fn endpoint_redacted(&self) -> String {
        self.endpoint.as_deref().map(redact_url).unwrap_or_default()
    }

    /// The OTLP resource's attributes after `edgebuf.source`: `service.name` first (`edgebuf`
    /// unless `otlp.resource.service.name` sets another), then the other `otlp.resource.*`
    /// keys in the order first set.
    pub fn otlp_resource_attributes(&self) -> Vec<(&str, &str)> {
        let mut out = Vec::with_capacity(self.otlp_resource.len() + 1);
        let service = self
            .otlp_resource
            .iter()
            .find(|(n, _)| n == "service.name")
            .map_or(DEFAULT_SERVICE_NAME, |(_, v)| v.as_str());
        out.push(("service.name", service));
        out.extend(
            self.otlp_resource
                .iter()
                .filter(|(n, _)| n != "service.name")
                .map(|(n, v)| (n.as_str(), v.as_str())),
        );
        out
    }

    /// Sets, replaces or (value "") removes `otlp.resource.<name>`.
    fn set_resource(&mut self, name: &str, value: &str) -> Result<()> {
        check_resource_name(name)?;
        if value.is_empty() {
            self.otlp_resource.retain(|(n, _)| n != name);
            return Ok(());
        }
        check_resource_value(name, value)?;
        if let Some(entry) = self.otlp_resource.iter_mut().find(|(n, _)| n == name) {
            entry.1 = value.to_string();
        } else {
            if self.otlp_resource.len() >= MAX_RESOURCE_ATTRIBUTES {
                return Err(too_many_resource_attributes());
            }
            self.otlp_resource
                .push((name.to_string(), value.to_string()));
        }
        Ok(())
    }

    /// Sets, replaces or (value "") removes `http.header.<name>`.
    fn set_header(&mut self, name: &str, value: &str) -> Result<()> {
        check_header_name(name)?;
        if value.is_empty() {
            self.http_headers
                .retain(|(n, _)| !n.eq_ignore_ascii_case(name));
            return Ok(());
        }
        check_header_value(name, value)?;
        if let Some(entry) = self
            .http_headers
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            *entry = (name.to_string(), value.to_string());
        } else {
            if self.http_headers.len() >= MAX_HEADERS {
                return Err(too_many_headers());
            }
            self.http_headers
                .push((name.to_string(), value.to_string()));
        }
        Ok(())
    }
}

fn unknown_key(key: &str) -> Error {
    let lower = key.to_ascii_lowercase();
    match Config::KEYS.iter().find(|k| **k == lower) {
        Some(k) => Error::invalid_config(format!(
            "unknown configuration key {}: keys are case-sensitive (did you mean {k}?)",
            printable(key)
        )),
        None => Error::invalid_config(format!(
            "unknown configuration key {}: see the configuration keys in the README",
            printable(key)
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::enums::Choice;
    use super::values::*;
    use super::*;
    use crate::error::Code;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A good, non-default value for every fixed key.
    pub(super) const GOOD: &[(&str, &str)] = &[
        ("path", "/var/lib/edgebuf/buffer.db"),
        ("endpoint", "https://ingest.example.com:8443/v1/records"),
        ("source.id", "cam-07"),
        ("durability", "sync"),
        ("commit.interval_ms", "250"),
        ("commit.sync_interval_ms", "500"),
        ("memory.max_records", "2000"),
        ("memory.max_bytes", "1048576"),
        ("memory.max_wait_ms", "0"),
        ("batch.max_records", "100"),
        ("batch.max_bytes", "65536"),
        ("batch.linger_ms", "0"),
        ("delivery.order", "newest_first"),
        ("retry.initial_ms", "1000"),
        ("retry.max_ms", "120000"),
        ("http.timeout_ms", "10000"),
        ("http.connect_timeout_ms", "3000"),
        ("http.compression", "gzip"),
        ("http.max_bytes_per_s", "12500"),
        ("http.budget_bytes", "50000000"),
        ("http.budget_period_ms", "3600000"),
        ("http.proxy", "none"),
        ("format", "ndjson"),
        ("clock.valid_after_unix_ms", "1764320000000"),
        ("tls.ca_file", "/etc/edgebuf/ca.pem"),
        ("tls.cert_file", "/etc/edgebuf/client.pem"),
        ("tls.key_file", "/etc/edgebuf/client.key"),
        ("capacity.max_bytes", "1073741824"),
        ("capacity.max_records", "50000"),
        ("capacity.when_full", "reject"),
        ("disk.min_free_bytes", "0"),
        ("record.max_bytes", "65536"),
        ("record.ttl_ms", "86400000"),
        ("dead_letter.max_records", "0"),
        ("alert.pending_records", "5000"),
        ("storage.on_corrupt", "fail"),
    ];

    /// The documented default of every key that has a written one.
    const DEFAULTS: &[(&str, &str)] = &[
        ("durability", "async"),
        ("commit.interval_ms", "1000"),
        ("commit.sync_interval_ms", "1000"),
        ("memory.max_records", "10000"),
        ("memory.max_bytes", "8388608"),
        ("memory.max_wait_ms", "100"),
        ("batch.max_records", "500"),
        ("batch.max_bytes", "262144"),
        ("batch.linger_ms", "200"),
        ("delivery.order", "oldest_first"),
        ("retry.initial_ms", "500"),
        ("retry.max_ms", "60000"),
        ("http.timeout_ms", "30000"),
        ("http.connect_timeout_ms", "5000"),
        ("http.compression", "none"),
        ("http.max_bytes_per_s", "0"),
        ("http.budget_bytes", "0"),
        ("http.budget_period_ms", "86400000"),
        ("http.proxy", "env"),
        ("format", "json"),
        ("capacity.max_bytes", "134217728"),
        ("capacity.max_records", "0"),
        ("capacity.when_full", "drop_oldest"),
        ("record.max_bytes", "1048576"),
        ("record.ttl_ms", "0"),
        ("dead_letter.max_records", "10000"),
        ("alert.pending_records", "100000"),
        ("storage.on_corrupt", "quarantine"),
    ];

    /// Bad values of the non-numeric keys (numbers are covered generically).
    const BAD: &[(&str, &str)] = &[
        ("path", "/tmp/with\0nul"),
        ("endpoint", "ftp://files.example.com/up"),
        ("endpoint", "ingest.example.com/v1"),
        ("endpoint", "http://?q=1"),
        ("endpoint", "http://#f"),
        ("endpoint", "https:///only-path"),
        ("endpoint", "https://user:hunter2@/x"),
        ("endpoint", "https://ingest.example.com/a b"),
        ("endpoint", "https://ingest.example.com/\nX"),
        ("endpoint", "https://ingest.example.com:99999/"),
        ("endpoint", "https://ingest.example.com:0/"),
        ("endpoint", "https://ingest.example.com:abc/"),
        ("endpoint", "https://ingest.example.com:/"),
        ("endpoint", "https://[::1/"),
        ("endpoint", "https://[::1]x/"),
        ("endpoint", "https://ingést.example.com/"),
        ("endpoint", "https://ho<st/"),
        ("source.id", "cam\t07"),
        ("source.id", "caméra"),
        ("source.id", "cam\u{7f}"),
        ("durability", "fsync"),
        ("durability", "sync\n"),
        ("durability", "synchronous"),
        ("http.compression", "br"),
        ("http.compression", "deflate"),
        ("http.max_bytes_per_s", "-1"),
        ("http.budget_bytes", "10kB"),
        ("http.budget_period_ms", "0"),
        ("http.proxy", "direct"),
        ("http.proxy", "ftp://proxy.example.com:21"),
        ("http.proxy", "http://user:pw@:3128"),
        ("http.proxy", "proxy.example.com:3128"),
        // User info that does not percent-decode to UTF-8: the proxy parser at open refuses it.
        ("http.proxy", "http://%aA@A#"),
        ("format", "csv"),
        ("format", "jsonl"),
        ("tls.ca_file", "/etc/ca\0.pem"),
        ("tls.cert_file", "/etc/cert\0.pem"),
        ("tls.key_file", "/etc/key\0.pem"),
        ("capacity.when_full", "droppest"),
        ("capacity.when_full", "drop-oldest"),
        ("storage.on_corrupt", "ignore"),
        ("disk.min_free_bytes", "-1"),
        ("disk.min_free_bytes", "32MiB"),
        ("disk.min_free_bytes", "99999999999999999999999"),
        ("clock.valid_after_unix_ms", "-1"),
        ("clock.valid_after_unix_ms", "9223372036854775808"),
    ];

    /// The number rows: the row, its min and its max.
    fn number_rows() -> impl Iterator<Item = (&'static Key, u64, u64)> {
        TABLE.iter().filter_map(|k| match k.kind() {
            Kind::Number { min, max, .. } => Some((k, min, max)),
            _ => None,
        })
    }

    /// The value of a number key (0 when unset).
    fn number(c: &Config, key: &Key) -> u64 {
        (key.show)(c).and_then(|s| s.parse().ok()).unwrap_or(0)
    }

    fn assert_invalid(r: Result<()>, key: &str, value: &str) -> String {
        let e = r.expect_err(&format!("{key}={value:?} must be rejected"));
        assert_eq!(e.code(), Code::InvalidConfig, "{key}={value:?}");
        let m = e.message().to_string();
        assert!(m.contains(key), "message {m:?} must name {key}");
        if value.len() >= 3 {
            assert!(
                !m.contains(value),
                "message {m:?} must not contain the value"
            );
        }
        m
    }

    /// A configuration with every key set to its good value.
    pub(super) fn all_good() -> Config {
        let mut c = Config::new();
        for (k, v) in GOOD {
            c.set(k, v).unwrap_or_else(|e| panic!("{k}: {e}"));
        }
        c
    }

    #[test]
    fn defaults_are_the_spec_defaults() {
        let c = Config::new();
        assert_eq!(c, Config::default());
        assert_eq!(c.path, None);
        assert_eq!(c.endpoint, None);
        assert_eq!(c.source_id, None);
        assert_eq!(c.durability, Durability::Async);
        assert_eq!(c.commit_interval_ms, 1000);
        assert_eq!(c.memory_max_records, 10000);
        assert_eq!(c.memory_max_bytes, 8388608);
        assert_eq!(c.memory_max_wait_ms, 100);
        assert_eq!(c.batch_max_records, 500);
        assert_eq!(c.batch_max_bytes, 262144);
        assert_eq!(c.batch_linger_ms, 200);
        assert_eq!(c.retry_initial_ms, 500);
        assert_eq!(c.retry_max_ms, 60000);
        assert_eq!(c.http_timeout_ms, 30000);
        assert_eq!(c.http_connect_timeout_ms, 5000);
        assert!(c.http_headers.is_empty());
        assert_eq!(c.http_compression, Compression::None);
        assert_eq!(c.http_max_bytes_per_s, 0);
        assert_eq!(c.http_budget_bytes, 0);
        assert_eq!(c.http_budget_period_ms, 86_400_000);
        assert_eq!(c.http_proxy, ProxySetting::Env);
        assert_eq!(c.format, Format::Json);
        assert_eq!(c.tls_ca_file, None);
        assert_eq!(c.tls_cert_file, None);
        assert_eq!(c.tls_key_file, None);
        assert_eq!(c.capacity_max_bytes, 134217728);
        assert_eq!(c.capacity_max_records, 0);
        assert_eq!(c.capacity_when_full, WhenFull::DropOldest);
        assert_eq!(c.disk_min_free_bytes, None);
        assert_eq!(c.record_max_bytes, 1048576);
        assert_eq!(c.record_ttl_ms, 0);
        assert_eq!(c.dead_letter_max_records, 10000);
        assert_eq!(c.alert_pending_records, 100000);
        assert_eq!(c.storage_on_corrupt, OnCorrupt::Quarantine);
    }

    #[test]
    fn keys_are_complete_and_unique() {
        assert_eq!(Config::KEYS.len(), 36);
        for (i, k) in Config::KEYS.iter().enumerate() {
            assert!(!Config::KEYS[..i].contains(k), "{k} twice");
            assert!(GOOD.iter().any(|(g, _)| g == k), "{k} has no good value");
        }
        for (k, _) in GOOD.iter().chain(DEFAULTS).chain(BAD) {
            assert!(Config::KEYS.contains(k), "{k} not in KEYS");
        }
        assert_eq!(TABLE.len(), Config::KEYS.len());
        for (row, key) in TABLE.iter().zip(Config::KEYS) {
            assert_eq!(row.name(), *key);
        }
    }

    #[test]
    fn defaults_are_within_range() {
        let d = Config::default();
        for (row, min, max) in number_rows() {
            let n = number(&d, row);
            assert!((min..=max).contains(&n), "{}", row.name());
        }
        // And every field passes its open-time check.
        for row in TABLE {
            if !matches!(row.unset(), Unset::Required(_)) {
                (row.check)(row, &d).unwrap_or_else(|e| panic!("{}: {e}", row.name()));
            }
        }
    }

    #[test]
    fn every_key_accepts_its_default() {
        for (k, v) in DEFAULTS {
            let mut c = Config::new();
            c.set(k, v).unwrap_or_else(|e| panic!("{k}={v}: {e}"));
            assert_eq!(c, Config::default(), "{k}");
            // Also from a non-default state.
            let mut c = all_good();
            c.set(k, v).unwrap_or_else(|e| panic!("{k}={v}: {e}"));
        }
    }

    #[test]
    fn every_key_accepts_a_good_value_and_empty_restores_the_default() {
        for (k, v) in GOOD {
            let mut c = Config::new();
            c.set(k, v).unwrap_or_else(|e| panic!("{k}={v}: {e}"));
            assert_ne!(c, Config::default(), "{k}={v} changed nothing");
            c.set(k, "").unwrap_or_else(|e| panic!("{k}=\"\": {e}"));
            assert_eq!(c, Config::default(), "{k}=\"\" did not restore the default");
        }
    }

    #[test]
    fn good_values_land_in_their_fields() {
        let c = all_good();
        assert_eq!(c.path, Some(PathBuf::from("/var/lib/edgebuf/buffer.db")));
        assert_eq!(
            c.endpoint.as_deref(),
            Some("https://ingest.example.com:8443/v1/records")
        );
        assert_eq!(c.source_id.as_deref(), Some("cam-07"));
        assert_eq!(c.durability, Durability::Sync);
        assert_eq!(c.commit_interval_ms, 250);
        assert_eq!(c.memory_max_records, 2000);
        assert_eq!(c.memory_max_bytes, 1048576);
        assert_eq!(c.memory_max_wait_ms, 0);
        assert_eq!(c.batch_max_records, 100);
        assert_eq!(c.batch_max_bytes, 65536);
        assert_eq!(c.batch_linger_ms, 0);
        assert_eq!(c.retry_initial_ms, 1000);
        assert_eq!(c.retry_max_ms, 120000);
        assert_eq!(c.http_timeout_ms, 10000);
        assert_eq!(c.http_connect_timeout_ms, 3000);
        assert_eq!(c.http_compression, Compression::Gzip);
        assert_eq!(c.http_max_bytes_per_s, 12500);
        assert_eq!(c.http_budget_bytes, 50_000_000);
        assert_eq!(c.http_budget_period_ms, 3_600_000);
        assert_eq!(c.http_proxy, ProxySetting::None);
        assert_eq!(c.format, Format::Ndjson);
        assert_eq!(c.tls_ca_file, Some(PathBuf::from("/etc/edgebuf/ca.pem")));
        assert_eq!(
            c.tls_cert_file,
            Some(PathBuf::from("/etc/edgebuf/client.pem"))
        );
        assert_eq!(
            c.tls_key_file,
            Some(PathBuf::from("/etc/edgebuf/client.key"))
        );
        assert_eq!(c.capacity_max_bytes, 1 << 30);
        assert_eq!(c.capacity_max_records, 50000);
        assert_eq!(c.capacity_when_full, WhenFull::Reject);
        assert_eq!(c.disk_min_free_bytes, Some(0));
        assert_eq!(c.record_max_bytes, 65536);
        assert_eq!(c.record_ttl_ms, 86400000);
        assert_eq!(c.dead_letter_max_records, 0);
        assert_eq!(c.alert_pending_records, 5000);
        assert_eq!(c.storage_on_corrupt, OnCorrupt::Fail);
    }

    #[test]
    fn enumerated_values() {
        let mut c = Config::new();
        for (v, want) in [("async", Durability::Async), ("SYNC", Durability::Sync)] {
            c.set("durability", v).unwrap();
            assert_eq!(c.durability, want);
        }
        for (v, want) in [
            ("gzip", Compression::Gzip),
            ("zstd", Compression::Zstd),
            ("none", Compression::None),
        ] {
            c.set("http.compression", v).unwrap();
            assert_eq!(c.http_compression, want);
        }
        for (v, want) in [("ndjson", Format::Ndjson), ("json", Format::Json)] {
            c.set("format", v).unwrap();
            assert_eq!(c.format, want);
        }
        for (v, want) in [
            ("Newest_First", DeliveryOrder::NewestFirst),
            ("oldest_first", DeliveryOrder::OldestFirst),
        ] {
            c.set("delivery.order", v).unwrap();
            assert_eq!(c.delivery_order, want);
        }
        for (v, want) in [
            ("drop_newest", WhenFull::DropNewest),
            ("reject", WhenFull::Reject),
            ("drop_oldest", WhenFull::DropOldest),
        ] {
            c.set("capacity.when_full", v).unwrap();
            assert_eq!(c.capacity_when_full, want);
        }
        for (v, want) in [
            ("fail", OnCorrupt::Fail),
            ("quarantine", OnCorrupt::Quarantine),
        ] {
            c.set("storage.on_corrupt", v).unwrap();
            assert_eq!(c.storage_on_corrupt, want);
        }
        for w in [WhenFull::DropOldest, WhenFull::DropNewest, WhenFull::Reject] {
            assert_eq!(WhenFull::parse(w.as_str()), Some(w));
        }
        for d in [Durability::Async, Durability::Sync] {
            assert_eq!(Durability::parse(d.as_str()), Some(d));
        }
        for x in [Compression::None, Compression::Gzip, Compression::Zstd] {
            assert_eq!(Compression::parse(x.as_str()), Some(x));
        }
        for x in [Format::Json, Format::Ndjson] {
            assert_eq!(Format::parse(x.as_str()), Some(x));
        }
        for x in [OnCorrupt::Quarantine, OnCorrupt::Fail] {
            assert_eq!(OnCorrupt::parse(x.as_str()), Some(x));
        }
    }

    #[test]
    fn bad_values_are_rejected_and_leave_the_old_value() {
        for (k, v) in BAD {
            let mut c = all_good();
            let before = c.clone();
            assert_invalid(c.set(k, v), k, v);
            assert_eq!(c, before, "{k}={v:?} changed the config");
            let mut d = Config::new();
            assert_invalid(d.set(k, v), k, v);
            assert_eq!(d, Config::default(), "{k}={v:?} changed the config");
        }
    }

    #[test]
    fn numbers_are_plain_digits_within_range() {
        for (spec, min, max) in number_rows() {
            let k = spec.name();
            let mut bad: Vec<String> = [
                "-1",
                "+1",
                " 1",
                "1 ",
                "0x10",
                "1k",
                "1.5",
                "1e3",
                "1_000",
                "١",
                "abc",
                "99999999999999999999999",
                "18446744073709551616",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            if min > 0 {
                bad.push((min - 1).to_string());
            }
            if max < u64::MAX {
                bad.push((max + 1).to_string());
            }
            for v in &bad {
                let mut c = all_good();
                let before = c.clone();
                let m = assert_invalid(c.set(k, v), k, v);
                assert_eq!(c, before, "{k}={v:?} changed the config");
                assert!(m.contains(&format!("from {} to {}", min, max)), "{m}");
            }
            for n in [min, max, (min + max) / 2] {
                let mut c = Config::new();
                c.set(k, &n.to_string())
                    .unwrap_or_else(|e| panic!("{k}={n}: {e}"));
                assert_eq!(number(&c, spec), n, "{k}");
            }
            // Leading zeros are still plain decimal digits.
            let mut c = Config::new();
            c.set(k, &format!("000{}", max)).unwrap();
            assert_eq!(number(&c, spec), max);
        }
    }

    #[test]
    fn messages_come_from_the_table_unchanged() {
        let expect = [
            (
                "path",
                "\0",
                "path must be a file path of 1 to 4095 bytes without NUL",
            ),
            (
                "endpoint",
                "ftp://x",
                "endpoint must be an http:// or https:// URL with a host (and a port from 1 to \
                 65535 if one is given), at most 8192 bytes, without spaces, control or \
                 non-ASCII characters",
            ),
            (
                "source.id",
                "\t",
                "source.id must be 1 to 128 bytes of printable ASCII",
            ),
            ("durability", "x", "durability must be async or sync"),
            (
                "http.compression",
                "x",
                "http.compression must be none, gzip or zstd",
            ),
            (
                "http.proxy",
                "x",
                "http.proxy must be env, none, or a proxy URL (http://, https://, socks4://, \
                 socks4a://, socks5:// or socks5h://) with a host, at most 8192 bytes, without \
                 spaces, control or non-ASCII characters",
            ),
            (
                "format",
                "x",
                "format must be json, ndjson, otlp_json or otlp_proto",
            ),
            (
                "capacity.when_full",
                "x",
                "capacity.when_full must be drop_oldest, drop_newest or reject",
            ),
            (
                "storage.on_corrupt",
                "x",
                "storage.on_corrupt must be quarantine or fail",
            ),
            (
                "disk.min_free_bytes",
                "x",
                "disk.min_free_bytes must be a whole number of bytes from 0 to \
                 9223372036854775807",
            ),
            (
                "record.max_bytes",
                "x",
                "record.max_bytes must be a whole number of bytes from 1 to 67108864",
            ),
        ];
        for (key, value, message) in expect {
            let e = Config::new().set(key, value).unwrap_err();
            assert_eq!(e.message(), message);
            let row = Key::find(key).unwrap();
            assert_eq!(format!("{key} must be {}", row.range_text()), message);
        }
        let c = Config::new();
        assert_eq!(
            c.validate_for_open().unwrap_err().message(),
            "path is required: the buffer file (SQLite) to use"
        );
        let c = Config {
            path: Some("/tmp/x.db".into()),
            ..Config::default()
        };
        assert_eq!(
            c.validate_for_open().unwrap_err().message(),
            "endpoint is required: the http:// or https:// URL the batches are POSTed to"
        );
    }

    #[test]
    fn table_rows_state_defaults_ranges_and_variables() {
        for (k, v) in DEFAULTS {
            assert_eq!(Key::find(k).unwrap().default_text(), *v, "{k}");
        }
        for (k, text) in [
            ("path", "(required)"),
            ("endpoint", "(required)"),
            ("source.id", "host name"),
            ("tls.ca_file", "built-in Mozilla roots"),
            ("tls.cert_file", ""),
            ("disk.min_free_bytes", "min(32 MiB, 5 % of the file system)"),
        ] {
            assert_eq!(Key::find(k).unwrap().default_text(), text, "{k}");
        }
        for row in TABLE {
            assert_eq!(
                row.env_name(),
                format!(
                    "EDGEBUF_{}",
                    row.name().to_ascii_uppercase().replace('.', "_")
                )
            );
            assert!(!row.doc().is_empty(), "{}", row.name());
            assert!(!row.range_text().is_empty(), "{}", row.name());
            // An optional key is exactly one whose default is not a value.
            let has_value = (row.show)(&Config::default()).is_some();
            assert_eq!(has_value, row.unset() == Unset::Never, "{}", row.name());
        }
        assert_eq!(
            Key::find("commit.interval_ms").unwrap().range_text(),
            "a whole number of milliseconds from 0 to 3600000"
        );
        assert!(Key::find("http.header.X").is_none());
    }

    #[test]
    fn debug_shows_every_field() {
        let mut c = all_good();
        c.set("http.header.X-A", "v").unwrap();
        let d = format!("{c:?}");
        for row in TABLE {
            let field = row.name().replace('.', "_");
            assert!(d.contains(&format!("{field}: ")), "{field} in {d}");
        }
        assert!(d.contains("durability: Sync"), "{d}");
        assert!(d.contains("disk_min_free_bytes: Some(0)"), "{d}");
        assert!(
            d.contains("path: Some(\"/var/lib/edgebuf/buffer.db\")"),
            "{d}"
        );
        assert!(
            d.contains("http_headers: [(\"X-A\", \"<redacted>\")]"),
            "{d}"
        );
        assert!(d.contains("http_proxy: None"), "{d}");
    }

    #[test]
    fn the_homes_of_the_senders_checks() {
        let mut c = Config::new();
        let e = c.checked_endpoint().unwrap_err();
        assert!(e.message().starts_with("endpoint is required"), "{e}");
        c.endpoint = Some("ftp://alice:pw@host/".into());
        let e = c.checked_endpoint().unwrap_err();
        assert!(e.message().starts_with("endpoint must be"), "{e}");
        assert!(!e.message().contains("pw"));
        c.set("endpoint", "https://h/x").unwrap();
        assert_eq!(c.checked_endpoint().unwrap(), "https://h/x");

        assert_eq!(c.tls_client_files().unwrap(), None);
        c.set("tls.cert_file", "/c.pem").unwrap();
        assert!(c.tls_client_files().is_err());
        c.set("tls.key_file", "/k.pem").unwrap();
        assert_eq!(
            c.tls_client_files().unwrap(),
            Some((Path::new("/c.pem"), Path::new("/k.pem")))
        );

        for name in RESERVED_HEADERS {
            assert!(is_reserved_header(&name.to_ascii_lowercase()));
        }
        assert!(!is_reserved_header("Authorization"));
    }

    #[test]
    fn the_example_message() {
        let mut c = Config::new();
        let e = c.set("commit.interval_ms", "3600001").unwrap_err();
        assert_eq!(
            e.message(),
            "commit.interval_ms must be a whole number of milliseconds from 0 to 3600000"
        );
    }

    #[test]
    fn zero_is_rejected_where_it_makes_no_sense() {
        for k in [
            "memory.max_records",
            "memory.max_bytes",
            "batch.max_records",
            "batch.max_bytes",
            "retry.initial_ms",
            "retry.max_ms",
            "http.timeout_ms",
            "http.connect_timeout_ms",
            "capacity.max_bytes",
            "record.max_bytes",
            "alert.pending_records",
        ] {
            assert_invalid(Config::new().set(k, "0"), k, "0");
        }
        for k in [
            "commit.interval_ms",
            "memory.max_wait_ms",
            "batch.linger_ms",
            "capacity.max_records",
            "disk.min_free_bytes",
            "record.ttl_ms",
            "dead_letter.max_records",
        ] {
            Config::new()
                .set(k, "0")
                .unwrap_or_else(|e| panic!("{k}: {e}"));
        }
    }

    #[test]
    fn clock_valid_after_is_the_build_time_until_set() {
        let mut c = Config::new();
        assert_eq!(c.clock_valid_after_unix_ms, None);
        assert_eq!(c.clock_valid_after_ms(), crate::clock::BUILD_UNIX_MS);
        c.set("clock.valid_after_unix_ms", "0").unwrap();
        assert_eq!(c.clock_valid_after_ms(), 0);
        c.set("clock.valid_after_unix_ms", "9223372036854775807")
            .unwrap();
        assert_eq!(c.clock_valid_after_ms(), i64::MAX);
        c.set("clock.valid_after_unix_ms", "").unwrap();
        assert_eq!(c.clock_valid_after_ms(), crate::clock::BUILD_UNIX_MS);
        let row = Key::find("clock.valid_after_unix_ms").unwrap();
        assert_eq!(row.default_text(), "the library's build time");
    }

    #[test]
    fn disk_min_free_bytes_is_optional() {
        let mut c = Config::new();
        c.set("disk.min_free_bytes", "33554432").unwrap();
        assert_eq!(c.disk_min_free_bytes, Some(33554432));
        c.set("disk.min_free_bytes", "").unwrap();
        assert_eq!(c.disk_min_free_bytes, None);
    }

    #[test]
    fn unknown_keys() {
        for k in [
            "",
            "nope",
            "endpoint ",
            "batch.max",
            "http.header",
            "tls.ca",
        ] {
            let mut c = Config::new();
            let e = c.set(k, "1").unwrap_err();
            assert_eq!(e.code(), Code::InvalidConfig);
            assert!(e.message().contains("unknown configuration key"), "{k}");
            assert!(e.message().contains(k));
            assert_eq!(c, Config::default());
        }
        let e = Config::new().set("Endpoint", "https://x").unwrap_err();
        assert!(e.message().contains("case-sensitive"), "{}", e.message());
        assert!(e.message().contains("did you mean endpoint"));
        let e = Config::new().set("bad\nkey", "1").unwrap_err();
        assert!(!e.message().contains('\n'));
    }

    #[test]
    fn paths() {
        let mut c = Config::new();
        c.set("path", "relative/buffer.db").unwrap();
        assert_eq!(c.path, Some(PathBuf::from("relative/buffer.db")));
        c.set("path", "/data/ümlaut buffer.db").unwrap();
        assert_eq!(c.path, Some(PathBuf::from("/data/ümlaut buffer.db")));
        let long = "a".repeat(MAX_PATH_BYTES + 1);
        assert_invalid(c.set("path", &long), "path", &long);
        assert_eq!(c.path, Some(PathBuf::from("/data/ümlaut buffer.db")));
        c.set("path", &"b".repeat(MAX_PATH_BYTES)).unwrap();
        c.set("path", "").unwrap();
        assert_eq!(c.path, None);
    }

    #[test]
    fn endpoints() {
        for good in [
            "http://localhost/",
            "http://localhost",
            "HTTPS://Ingest.Example.com/v1?token=abc#frag",
            "https://user:secret@ingest.example.com:8443/x",
            "http://127.0.0.1:8080/ingest",
            "http://[::1]:8080/ingest",
            "http://[fe80::1%25eth0]/",
            "https://ingest.example.com:65535/a@b",
            "https://h?x",
        ] {
            let mut c = Config::new();
            c.set("endpoint", good)
                .unwrap_or_else(|e| panic!("{good}: {e}"));
            assert_eq!(c.endpoint.as_deref(), Some(good));
        }
        // Bare schemes (the message itself names them, so only the code is checked).
        for bad in ["http://", "https://", "http:", "https:/x"] {
            let e = Config::new().set("endpoint", bad).unwrap_err();
            assert_eq!(e.code(), Code::InvalidConfig);
        }
        let long = format!("https://h/{}", "a".repeat(MAX_URL_BYTES));
        assert_invalid(Config::new().set("endpoint", &long), "endpoint", &long);
    }

    #[test]
    fn endpoint_messages_never_show_credentials() {
        let mut c = Config::new();
        for bad in [
            "ftp://alice:supersecret@host/x?key=topsecret",
            "https://alice:supersecret@/x?key=topsecret",
            "https://alice:supersecret@host x/?key=topsecret",
        ] {
            let e = c.set("endpoint", bad).unwrap_err();
            assert!(!e.message().contains("supersecret"));
            assert!(!e.message().contains("topsecret"));
            assert!(!e.message().contains("alice"));
        }
    }

    #[test]
    fn endpoint_redaction() {
        let cases = [
            (
                "https://alice:secret@host:8443/ingest?token=abc#frag",
                "https://host:8443/ingest",
            ),
            ("https://host:8443/ingest", "https://host:8443/ingest"),
            ("http://host", "http://host"),
            ("http://host?x=1", "http://host"),
            ("http://host#x", "http://host"),
            ("https://u@host/a@b", "https://host/a@b"),
            ("https://a:b@c@host/p", "https://host/p"),
            ("http://[::1]:80/p?q", "http://[::1]:80/p"),
            // Not a valid endpoint, but redaction still holds.
            ("alice:secret@host/x?q=1", "host/x"),
            ("a:b@host?x=://y", "host"),
            ("https://host/a b\u{1}é", "https://host/a%20b%01%C3%A9"),
        ];
        for (raw, want) in cases {
            let c = Config {
                endpoint: Some(raw.to_string()),
                ..Config::default()
            };
            assert_eq!(c.endpoint_redacted(), want, "{raw}");
        }
        assert_eq!(Config::new().endpoint_redacted(), "");
    }

    #[test]
    fn otlp_formats_and_resource_attributes() {
        let mut c = Config::new();
        c.set("format", "otlp_json").unwrap();
        assert_eq!(c.format, Format::OtlpJson);
        c.set("format", "OTLP_PROTO").unwrap();
        assert_eq!(c.format, Format::OtlpProto);
        // service.name defaults to edgebuf and comes first.
        assert_eq!(
            c.otlp_resource_attributes(),
            vec![("service.name", "edgebuf")]
        );
        c.set("otlp.resource.deployment.environment", "prod")
            .unwrap();
        c.set("otlp.resource.service.name", "cam-fleet").unwrap();
        c.set("otlp.resource.deployment.environment", "staging")
            .unwrap();
        assert_eq!(
            c.otlp_resource_attributes(),
            vec![
                ("service.name", "cam-fleet"),
                ("deployment.environment", "staging")
            ]
        );
        c.validate_for_open().unwrap_err(); // path and endpoint are missing, nothing else
        c.set("otlp.resource.service.name", "").unwrap();
        assert_eq!(c.otlp_resource_attributes()[0], ("service.name", "edgebuf"));
        assert!(Config::check_key("otlp.resource.anything").is_ok());
        // Names: printable ASCII without spaces, not edgebuf.source; values without controls.
        for bad in ["", "a b", "caf\u{e9}", "edgebuf.source", &"n".repeat(257)] {
            let key = format!("otlp.resource.{bad}");
            let e = c.set(&key, "v").unwrap_err();
            assert_eq!(e.code(), Code::InvalidConfig);
            assert!(e.message().contains("otlp.resource."), "{}", e.message());
        }
        for bad in ["a\nb", "nul\0", &"v".repeat(4097)] {
            let e = c.set("otlp.resource.x", bad).unwrap_err();
            assert!(!e.message().contains(bad), "the value is never shown");
        }
        c.set("otlp.resource.x", "tab\tand \u{e9}").unwrap();
        // At most 64 attributes.
        let mut d = Config::new();
        for i in 0..64 {
            d.set(&format!("otlp.resource.a{i}"), "v").unwrap();
        }
        let e = d.set("otlp.resource.one.more", "v").unwrap_err();
        assert!(e.message().contains("64"), "{}", e.message());
        d.set("otlp.resource.a0", "replaced").unwrap();
        d.set("otlp.resource.a1", "").unwrap();
        d.set("otlp.resource.one.more", "v").unwrap();
        assert_eq!(d.otlp_resource.len(), 64);
    }

    #[test]
    fn source_ids() {
        let mut c = Config::new();
        let max = "x".repeat(128);
        c.set("source.id", &max).unwrap();
        assert_eq!(c.source_id_or_default(), max);
        let over = "y".repeat(129);
        assert_invalid(c.set("source.id", &over), "source.id", &over);
        assert_eq!(c.source_id.as_deref(), Some(max.as_str()));
        c.set("source.id", " cam 07 ~!").unwrap();
        assert_eq!(c.source_id_or_default(), " cam 07 ~!".trim());
        c.set("source.id", "").unwrap();
        assert_eq!(c.source_id, None);
    }

    #[test]
    fn source_id_default_is_a_clean_host_name() {
        let id = Config::new().source_id_or_default();
        assert!(!id.is_empty() && id.len() <= 128, "{id:?}");
        assert!(id.bytes().all(|b| (0x20..=0x7e).contains(&b)), "{id:?}");
        // A field set directly to something invalid is sanitised, or falls back.
        let c = Config {
            source_id: Some(format!("\u{1}cam\u{7f}é-07{}", "z".repeat(300))),
            ..Config::default()
        };
        let id = c.source_id_or_default();
        assert!(id.starts_with("cam-07zz"), "{id:?}");
        assert_eq!(id.len(), 128);
        let c = Config {
            source_id: Some("\n\t".to_string()),
            ..Config::default()
        };
        assert_eq!(
            c.source_id_or_default(),
            Config::new().source_id_or_default()
        );
    }

    #[test]
    fn host_name_files() {
        let dir = TempDir::new();
        let f = dir.file("hostname", b"# comment\n\n  edge-box-1 \nother\n");
        assert_eq!(read_host_name_file(&f), Some("edge-box-1".to_string()));
        let f = dir.file("empty", b"\n");
        assert_eq!(read_host_name_file(&f), None);
        assert_eq!(read_host_name_file(&dir.path.join("missing")), None);
    }

    #[test]
    fn headers_set_replace_remove() {
        let mut c = Config::new();
        c.set("http.header.Authorization", "Bearer abc").unwrap();
        c.set("http.header.X-Api-Key", "k1").unwrap();
        assert_eq!(
            c.http_headers,
            vec![
                ("Authorization".to_string(), "Bearer abc".to_string()),
                ("X-Api-Key".to_string(), "k1".to_string()),
            ]
        );
        // Same name, other case: replaced in place, spelled as given last.
        c.set("http.header.authorization", "Bearer xyz").unwrap();
        assert_eq!(
            c.http_headers[0],
            ("authorization".to_string(), "Bearer xyz".to_string())
        );
        assert_eq!(c.http_headers.len(), 2);
        // "" removes, whatever the case; removing an absent header is fine.
        c.set("http.header.AUTHORIZATION", "").unwrap();
        assert_eq!(
            c.http_headers,
            vec![("X-Api-Key".to_string(), "k1".to_string())]
        );
        c.set("http.header.Absent", "").unwrap();
        c.set("http.header.X-Api-Key", "").unwrap();
        assert_eq!(c, Config::default());
        // Every tchar, tab and obs-text in values.
        c.set("http.header.!#$%&'*+-.^_`|~09azAZ", "a\tb é ~")
            .unwrap();
        assert_eq!(c.http_headers.len(), 1);
        c.set("http.header.User-Agent", "mine/1").unwrap();
        assert_eq!(c.http_headers.len(), 2);
    }

    #[test]
    fn header_names_must_be_tokens() {
        for name in [
            "", "X Y", "X:Y", "X(Y)", "X/Y", "Ä", "X\"Y", "X\nY", "X@Y", "X{Y}",
        ] {
            let key = format!("http.header.{name}");
            let mut c = all_good();
            let before = c.clone();
            let e = c.set(&key, "v").unwrap_err();
            assert_eq!(e.code(), Code::InvalidConfig, "{key:?}");
            assert!(e.message().contains("http.header."), "{}", e.message());
            assert!(e.message().contains("HTTP token"), "{}", e.message());
            assert!(!e.message().contains('\n'));
            assert_eq!(c, before);
        }
        let long = format!("http.header.{}", "X".repeat(MAX_HEADER_NAME_BYTES + 1));
        assert!(Config::new().set(&long, "v").is_err());
        let max = format!("http.header.{}", "X".repeat(MAX_HEADER_NAME_BYTES));
        Config::new().set(&max, "v").unwrap();
    }

    #[test]
    fn header_values_are_checked_and_never_shown() {
        for value in [
            "secret-token\r\nX-Evil: 1",
            "secret-token\nx",
            "secret-token\rx",
            "secret-token\0x",
            "secret-token\u{1}x",
            "secret-token\u{7f}x",
        ] {
            let mut c = Config::new();
            c.set("http.header.X-Api-Key", "old").unwrap();
            let before = c.clone();
            let m = assert_invalid(
                c.set("http.header.X-Api-Key", value),
                "http.header.X-Api-Key",
                value,
            );
            assert!(!m.contains("secret-token"), "{m}");
            assert_eq!(c, before);
        }
        let long = "v".repeat(MAX_HEADER_VALUE_BYTES + 1);
        assert_invalid(
            Config::new().set("http.header.X-Big", &long),
            "http.header.X-Big",
            &long,
        );
        Config::new()
            .set("http.header.X-Big", &"v".repeat(MAX_HEADER_VALUE_BYTES))
            .unwrap();
    }

    #[test]
    fn reserved_headers() {
        for name in RESERVED_HEADERS {
            for spelled in [
                name.to_string(),
                name.to_ascii_lowercase(),
                name.to_ascii_uppercase(),
            ] {
                let key = format!("http.header.{spelled}");
                let mut c = Config::new();
                let m = assert_invalid(c.set(&key, "topsecret"), &key, "topsecret");
                assert!(m.contains("reserved"), "{m}");
                assert!(c.http_headers.is_empty());
                assert!(c.set(&key, "").is_err());
            }
        }
    }

    #[test]
    fn header_count_is_bounded() {
        let mut c = Config::new();
        for i in 0..MAX_HEADERS {
            c.set(&format!("http.header.X-H{i}"), "v").unwrap();
        }
        let before = c.clone();
        let e = c.set("http.header.X-One-Too-Many", "v").unwrap_err();
        assert_eq!(e.code(), Code::InvalidConfig);
        assert!(e.message().contains("http.header"));
        assert_eq!(c, before);
        // Replacing and removing still work at the limit.
        c.set("http.header.x-h0", "w").unwrap();
        c.set("http.header.X-H1", "").unwrap();
        c.set("http.header.X-One-More", "v").unwrap();
        assert_eq!(c.http_headers.len(), MAX_HEADERS);
    }

    #[test]
    fn proxies() {
        let mut c = Config::new();
        for (v, want) in [
            ("none", ProxySetting::None),
            ("ENV", ProxySetting::Env),
            ("None", ProxySetting::None),
            (
                "http://proxy.example.com:3128",
                ProxySetting::Url("http://proxy.example.com:3128".into()),
            ),
            (
                "https://u:p@proxy:443",
                ProxySetting::Url("https://u:p@proxy:443".into()),
            ),
            (
                "socks5://10.0.0.1:1080",
                ProxySetting::Url("socks5://10.0.0.1:1080".into()),
            ),
            ("SOCKS5H://gw", ProxySetting::Url("SOCKS5H://gw".into())),
            (
                "socks4a://gw:1080",
                ProxySetting::Url("socks4a://gw:1080".into()),
            ),
        ] {
            c.set("http.proxy", v)
                .unwrap_or_else(|e| panic!("{v}: {e}"));
            assert_eq!(c.http_proxy, want);
        }
        let e = c
            .set("http.proxy", "gopher://alice:hunter2@proxy")
            .unwrap_err();
        assert!(!e.message().contains("hunter2"));
        assert!(e.message().contains("http.proxy"));
        assert_eq!(c.http_proxy, ProxySetting::Url("socks4a://gw:1080".into()));
        c.set("http.proxy", "").unwrap();
        assert_eq!(c.http_proxy, ProxySetting::Env);
    }

    #[test]
    fn debug_hides_secrets() {
        let mut c = Config::new();
        c.set("endpoint", "https://alice:pw1@host/x?token=tk1")
            .unwrap();
        c.set("http.proxy", "http://bob:pw2@proxy:3128/?q=tk2")
            .unwrap();
        c.set("http.header.Authorization", "Bearer tk3").unwrap();
        let d = format!("{c:?}");
        for secret in ["pw1", "tk1", "pw2", "tk2", "tk3", "alice", "bob"] {
            assert!(!d.contains(secret), "{secret} in {d}");
        }
        assert!(d.contains("https://host/x"));
        assert!(d.contains("http://proxy:3128/"));
        assert!(d.contains("Authorization"));
    }

    // ---- validate_for_open ------------------------------------------------------------------

    /// A directory under std::env::temp_dir(), removed on drop.
    struct TempDir {
        path: PathBuf,
    }

    impl TempDir {
        fn new() -> TempDir {
            static N: AtomicUsize = AtomicUsize::new(0);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let path = std::env::temp_dir().join(format!(
                "edgebuf-config-test-{}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed),
                nanos
            ));
            std::fs::create_dir_all(&path).expect("create temp dir");
            TempDir { path }
        }

        fn file(&self, name: &str, contents: &[u8]) -> PathBuf {
            let p = self.path.join(name);
            std::fs::write(&p, contents).expect("write temp file");
            p
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }

    fn openable() -> Config {
        let mut c = Config::new();
        c.set("path", "/tmp/edgebuf-test.db").unwrap();
        c.set("endpoint", "https://ingest.example.com/v1").unwrap();
        c
    }

    fn assert_open_invalid(c: &Config, key: &str) -> String {
        let e = c.validate_for_open().expect_err(key);
        assert_eq!(e.code(), Code::InvalidConfig);
        assert!(e.message().contains(key), "{} must name {key}", e.message());
        e.message().to_string()
    }

    #[test]
    fn validate_requires_path_and_endpoint() {
        openable().validate_for_open().unwrap();
        let m = assert_open_invalid(&Config::new(), "path");
        assert!(m.contains("required"));
        let mut c = openable();
        c.set("path", "").unwrap();
        assert_open_invalid(&c, "path");
        let mut c = openable();
        c.set("endpoint", "").unwrap();
        let m = assert_open_invalid(&c, "endpoint");
        assert!(m.contains("required"));
    }

    #[test]
    fn validate_retry_combination() {
        let mut c = openable();
        c.set("retry.initial_ms", "5000").unwrap();
        c.set("retry.max_ms", "5000").unwrap();
        c.validate_for_open().unwrap();
        c.set("retry.initial_ms", "5001").unwrap();
        let m = assert_open_invalid(&c, "retry.initial_ms");
        assert!(m.contains("retry.max_ms"));
    }

    #[test]
    fn validate_rechecks_fields_set_directly() {
        let mut c = openable();
        c.endpoint = Some("ftp://alice:pw@host/".into());
        let m = assert_open_invalid(&c, "endpoint");
        assert!(!m.contains("pw"));
        let mut c = openable();
        c.path = Some(PathBuf::new());
        assert_open_invalid(&c, "path");
        let mut c = openable();
        c.batch_max_records = 0;
        assert_open_invalid(&c, "batch.max_records");
        let mut c = openable();
        c.source_id = Some(String::new());
        assert_open_invalid(&c, "source.id");
        let mut c = openable();
        c.http_headers.push(("Host".into(), "x".into()));
        assert_open_invalid(&c, "http.header.Host");
        let mut c = openable();
        c.http_headers.push(("X-A".into(), "secret\n".into()));
        let m = assert_open_invalid(&c, "http.header.X-A");
        assert!(!m.contains("secret"));
        let mut c = openable();
        c.http_proxy = ProxySetting::Url("nope".into());
        assert_open_invalid(&c, "http.proxy");
        let mut c = openable();
        c.disk_min_free_bytes = Some(u64::MAX);
        assert_open_invalid(&c, "disk.min_free_bytes");
    }

    #[test]
    fn validate_tls_files() {
        let dir = TempDir::new();
        let ca = dir.file("ca.pem", b"-----BEGIN CERTIFICATE-----\n");
        let cert = dir.file("client.pem", b"-----BEGIN CERTIFICATE-----\n");
        let key = dir.file("client.key", b"-----BEGIN PRIVATE KEY-----\n");
        let missing = dir.path.join("missing.pem");
        let s = |p: &Path| p.to_str().expect("temp paths are UTF-8").to_string();

        // Readable files pass.
        let mut c = openable();
        c.set("tls.ca_file", &s(&ca)).unwrap();
        c.validate_for_open().unwrap();
        c.set("tls.cert_file", &s(&cert)).unwrap();
        c.set("tls.key_file", &s(&key)).unwrap();
        c.validate_for_open().unwrap();

        // Cert without key and key without cert.
        let mut only_cert = openable();
        only_cert.set("tls.cert_file", &s(&cert)).unwrap();
        let m = assert_open_invalid(&only_cert, "tls.cert_file");
        assert!(m.contains("tls.key_file"));
        let mut only_key = openable();
        only_key.set("tls.key_file", &s(&key)).unwrap();
        let m = assert_open_invalid(&only_key, "tls.key_file");
        assert!(m.contains("tls.cert_file"));

        // Missing files, and a directory, name their key.
        for k in ["tls.ca_file", "tls.cert_file", "tls.key_file"] {
            let mut bad = c.clone();
            bad.set(k, &s(&missing)).unwrap();
            let m = assert_open_invalid(&bad, k);
            assert!(!m.contains("missing.pem"), "{m}");
            let mut bad = c.clone();
            bad.set(k, &s(&dir.path)).unwrap();
            assert_open_invalid(&bad, k);
        }

        // An empty CA file is readable (its content is the sender's business).
        let empty = dir.file("empty.pem", b"");
        let mut c2 = openable();
        c2.set("tls.ca_file", &s(&empty)).unwrap();
        c2.validate_for_open().unwrap();
    }

    #[test]
    fn validate_unreadable_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = TempDir::new();
        let f = dir.file("secret.key", b"x");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o000)).unwrap();
        // Root reads anything; only check when the file really is unreadable.
        if std::fs::File::open(&f).is_err() {
            let mut c = openable();
            c.tls_ca_file = Some(f.clone());
            assert_open_invalid(&c, "tls.ca_file");
        }
        let _ = std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600));
    }

    #[test]
    fn validate_order_path_before_endpoint() {
        let m = assert_open_invalid(&Config::new(), "path");
        assert!(!m.contains("endpoint"));
    }
}
