//! Configuration: the string keys of SPEC section 2, their defaults, and their checks.
//!
//! [`Config::set`] checks the syntax and range of one key; [`Config::from_env`] applies the
//! `EDGEBUF_*` environment variables all or nothing; [`Config::validate_for_open`] checks what
//! only makes sense at open (required keys, combinations, readable files).
//!
//! Every error is `Code::InvalidConfig` with one sentence that names the key (or the environment
//! variable) and says what is expected. A message never contains the value that was given: values
//! may hold credentials (header values, URL user info, query strings).
//!
//! Ranges where SPEC 2 is silent (all inclusive):
//!
//! | key | range |
//! |---|---|
//! | commit.interval_ms | 0 to 3600000 |
//! | commit.sync_interval_ms | 0 (fsync every commit) to 3600000 |
//! | memory.max_records | 1 to 10000000 |
//! | memory.max_bytes | 1024 to 2^34 |
//! | memory.max_wait_ms | 0 to 60000 |
//! | batch.max_records | 1 to 100000 |
//! | batch.max_bytes | 1024 to 2^30 |
//! | batch.linger_ms | 0 to 3600000 |
//! | retry.initial_ms, retry.max_ms | 1 to 86400000 (one day) |
//! | http.timeout_ms, http.connect_timeout_ms | 1 to 3600000 |
//! | capacity.max_bytes | 4096 to 2^63-1 |
//! | capacity.max_records | 0 (no limit) to 2^63-1 |
//! | disk.min_free_bytes | 0 to 2^63-1 |
//! | record.max_bytes | 1 to 64 MiB |
//! | record.ttl_ms | 0 (never) to 315360000000 (ten years) |
//! | dead_letter.max_records | 0 to 2^63-1 |
//! | alert.pending_records | 1 to 2^63-1 |
//!
//! Numbers are plain decimal digits: no sign, spaces, `0x` or suffix. Enumerated values
//! (`async`, `gzip`, `drop_oldest`, ...) are matched ignoring ASCII case. Paths are non-empty, at
//! most 4095 bytes and without NUL. URLs are at most 8192 bytes of printable ASCII without spaces.
//! Header names are at most 256 bytes, values at most 16384 bytes, and at most 64 headers are set.

use crate::error::{Error, Result};
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

/// When `edgebuf_log` returns (`durability`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// `async`: once the record is queued in memory.
    Async,
    /// `sync`: once the record is committed and fsync'd.
    Sync,
}

impl Durability {
    /// The value as written in the configuration (`async`, `sync`).
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Async => "async",
            Durability::Sync => "sync",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        [Durability::Async, Durability::Sync]
            .into_iter()
            .find(|d| d.as_str().eq_ignore_ascii_case(value))
    }
}

/// Request body compression (`http.compression`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// `none`: bodies are sent as they are.
    None,
    /// `gzip`: bodies are gzip'd and sent with `Content-Encoding: gzip`.
    Gzip,
}

impl Compression {
    /// The value as written in the configuration (`none`, `gzip`).
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        [Compression::None, Compression::Gzip]
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(value))
    }
}

/// Which proxy requests go through (`http.proxy`).
///
/// `Debug` is written by hand so that a proxy URL never shows its user info or query.
#[derive(Clone, PartialEq, Eq)]
pub enum ProxySetting {
    /// `env`: HTTPS_PROXY / HTTP_PROXY / NO_PROXY, as curl reads them.
    Env,
    /// `none`: always connect directly.
    None,
    /// A proxy URL (`http://`, `https://`, `socks4://`, `socks4a://`, `socks5://`, `socks5h://`).
    /// It may carry credentials: show it only through redaction.
    Url(String),
}

impl fmt::Debug for ProxySetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxySetting::Env => f.write_str("Env"),
            ProxySetting::None => f.write_str("None"),
            ProxySetting::Url(url) => f.debug_tuple("Url").field(&redact_url(url)).finish(),
        }
    }
}

/// The request body format (`format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `json`: one JSON array of envelopes per request.
    Json,
    /// `ndjson`: one envelope per line, each ending in `\n`.
    Ndjson,
}

impl Format {
    /// The value as written in the configuration (`json`, `ndjson`).
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Ndjson => "ndjson",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        [Format::Json, Format::Ndjson]
            .into_iter()
            .find(|x| x.as_str().eq_ignore_ascii_case(value))
    }
}

/// What happens to a record that does not fit (`capacity.when_full`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhenFull {
    /// `drop_oldest`: the oldest pending records are dropped to make room.
    DropOldest,
    /// `drop_newest`: the new record is not stored and counts as dropped.
    DropNewest,
    /// `reject`: edgebuf_log returns EDGEBUF_ERR_FULL.
    Reject,
}

impl WhenFull {
    /// The value as written in the configuration (`drop_oldest`, `drop_newest`, `reject`).
    pub fn as_str(self) -> &'static str {
        match self {
            WhenFull::DropOldest => "drop_oldest",
            WhenFull::DropNewest => "drop_newest",
            WhenFull::Reject => "reject",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        [WhenFull::DropOldest, WhenFull::DropNewest, WhenFull::Reject]
            .into_iter()
            .find(|w| w.as_str().eq_ignore_ascii_case(value))
    }
}

/// What open does with a damaged buffer file (`storage.on_corrupt`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnCorrupt {
    /// `quarantine`: move the file aside and start empty.
    Quarantine,
    /// `fail`: open returns EDGEBUF_ERR_CORRUPT.
    Fail,
}

impl OnCorrupt {
    /// The value as written in the configuration (`quarantine`, `fail`).
    pub fn as_str(self) -> &'static str {
        match self {
            OnCorrupt::Quarantine => "quarantine",
            OnCorrupt::Fail => "fail",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        [OnCorrupt::Quarantine, OnCorrupt::Fail]
            .into_iter()
            .find(|o| o.as_str().eq_ignore_ascii_case(value))
    }
}

/// A complete configuration: every key of SPEC 2, defaulted as SPEC 2 says.
///
/// Fields are public for the modules that read them; set them through [`Config::set`] so that
/// values are checked, or call [`Config::validate_for_open`], which checks them all again.
///
/// `Debug` is written by hand: it shows header names but not their values, and URLs redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    /// `path`: the buffer file; `None` until set (required at open).
    pub path: Option<PathBuf>,
    /// `endpoint`: the URL batches are POSTed to; `None` until set (required at open).
    pub endpoint: Option<String>,
    /// `source.id`; `None` means the host name (see [`Config::source_id_or_default`]).
    pub source_id: Option<String>,
    /// `durability`.
    pub durability: Durability,
    /// `commit.interval_ms`.
    pub commit_interval_ms: u64,
    /// `commit.sync_interval_ms`.
    pub commit_sync_interval_ms: u64,
    /// `memory.max_records`.
    pub memory_max_records: u64,
    /// `memory.max_bytes`.
    pub memory_max_bytes: u64,
    /// `memory.max_wait_ms`.
    pub memory_max_wait_ms: u64,
    /// `batch.max_records`.
    pub batch_max_records: u64,
    /// `batch.max_bytes`.
    pub batch_max_bytes: u64,
    /// `batch.linger_ms`.
    pub batch_linger_ms: u64,
    /// `retry.initial_ms`.
    pub retry_initial_ms: u64,
    /// `retry.max_ms`.
    pub retry_max_ms: u64,
    /// `http.timeout_ms`.
    pub http_timeout_ms: u64,
    /// `http.connect_timeout_ms`.
    pub http_connect_timeout_ms: u64,
    /// `http.header.NAME`: (name as given, value), in the order first set. Setting the same name
    /// again (ignoring ASCII case) replaces the entry in place; setting "" removes it.
    pub http_headers: Vec<(String, String)>,
    /// `http.compression`.
    pub http_compression: Compression,
    /// `http.proxy`.
    pub http_proxy: ProxySetting,
    /// `format`.
    pub format: Format,
    /// `tls.ca_file`; `None` means the built-in Mozilla roots.
    pub tls_ca_file: Option<PathBuf>,
    /// `tls.cert_file`: client certificate for mutual TLS.
    pub tls_cert_file: Option<PathBuf>,
    /// `tls.key_file`: client key for mutual TLS.
    pub tls_key_file: Option<PathBuf>,
    /// `capacity.max_bytes`.
    pub capacity_max_bytes: u64,
    /// `capacity.max_records`; 0 = no limit.
    pub capacity_max_records: u64,
    /// `capacity.when_full`.
    pub capacity_when_full: WhenFull,
    /// `disk.min_free_bytes`; `None` = the default, min(32 MiB, 5 % of the file system),
    /// computed at open by the store.
    pub disk_min_free_bytes: Option<u64>,
    /// `record.max_bytes`.
    pub record_max_bytes: u64,
    /// `record.ttl_ms`; 0 = never.
    pub record_ttl_ms: u64,
    /// `dead_letter.max_records`.
    pub dead_letter_max_records: u64,
    /// `alert.pending_records`.
    pub alert_pending_records: u64,
    /// `storage.on_corrupt`.
    pub storage_on_corrupt: OnCorrupt,
}

impl Default for Config {
    /// The defaults of SPEC 2; `path` and `endpoint` unset.
    fn default() -> Self {
        Config {
            path: None,
            endpoint: None,
            source_id: None,
            durability: Durability::Async,
            commit_interval_ms: 1000,
            commit_sync_interval_ms: 1000,
            memory_max_records: 10_000,
            memory_max_bytes: 8_388_608,
            memory_max_wait_ms: 100,
            batch_max_records: 500,
            batch_max_bytes: 262_144,
            batch_linger_ms: 200,
            retry_initial_ms: 500,
            retry_max_ms: 60_000,
            http_timeout_ms: 30_000,
            http_connect_timeout_ms: 5000,
            http_headers: Vec::new(),
            http_compression: Compression::None,
            http_proxy: ProxySetting::Env,
            format: Format::Json,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            capacity_max_bytes: 134_217_728,
            capacity_max_records: 0,
            capacity_when_full: WhenFull::DropOldest,
            disk_min_free_bytes: None,
            record_max_bytes: 1_048_576,
            record_ttl_ms: 0,
            dead_letter_max_records: 10_000,
            alert_pending_records: 100_000,
            storage_on_corrupt: OnCorrupt::Quarantine,
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .http_headers
            .iter()
            .map(|(name, _)| (name.as_str(), "<redacted>"))
            .collect();
        f.debug_struct("Config")
            .field("path", &self.path)
            .field(
                "endpoint",
                &self.endpoint.as_ref().map(|_| self.endpoint_redacted()),
            )
            .field("source_id", &self.source_id)
            .field("durability", &self.durability)
            .field("commit_interval_ms", &self.commit_interval_ms)
            .field("commit_sync_interval_ms", &self.commit_sync_interval_ms)
            .field("memory_max_records", &self.memory_max_records)
            .field("memory_max_bytes", &self.memory_max_bytes)
            .field("memory_max_wait_ms", &self.memory_max_wait_ms)
            .field("batch_max_records", &self.batch_max_records)
            .field("batch_max_bytes", &self.batch_max_bytes)
            .field("batch_linger_ms", &self.batch_linger_ms)
            .field("retry_initial_ms", &self.retry_initial_ms)
            .field("retry_max_ms", &self.retry_max_ms)
            .field("http_timeout_ms", &self.http_timeout_ms)
            .field("http_connect_timeout_ms", &self.http_connect_timeout_ms)
            .field("http_headers", &headers)
            .field("http_compression", &self.http_compression)
            .field("http_proxy", &self.http_proxy)
            .field("format", &self.format)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("tls_cert_file", &self.tls_cert_file)
            .field("tls_key_file", &self.tls_key_file)
            .field("capacity_max_bytes", &self.capacity_max_bytes)
            .field("capacity_max_records", &self.capacity_max_records)
            .field("capacity_when_full", &self.capacity_when_full)
            .field("disk_min_free_bytes", &self.disk_min_free_bytes)
            .field("record_max_bytes", &self.record_max_bytes)
            .field("record_ttl_ms", &self.record_ttl_ms)
            .field("dead_letter_max_records", &self.dead_letter_max_records)
            .field("alert_pending_records", &self.alert_pending_records)
            .field("storage_on_corrupt", &self.storage_on_corrupt)
            .finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Limits and tables
// ---------------------------------------------------------------------------------------------

/// The prefix of the header keys.
const HEADER_PREFIX: &str = "http.header.";
/// The prefix of every environment variable of ours.
const ENV_PREFIX: &str = "EDGEBUF_";
/// The prefix (after `EDGEBUF_`) of the header variables.
const ENV_HEADER_PREFIX: &str = "HTTP_HEADER_";

/// Header names that edgebuf sets itself (compared ignoring ASCII case).
pub(crate) const RESERVED_HEADERS: &[&str] = &[
    "Host",
    "Content-Length",
    "Transfer-Encoding",
    "Content-Type",
    "Content-Encoding",
    "Connection",
    "Idempotency-Key",
    "X-Edgebuf-Source",
];

/// Whether `name` is one of the [`RESERVED_HEADERS`] (ASCII case-insensitive).
pub(crate) fn is_reserved_header(name: &str) -> bool {
    RESERVED_HEADERS
        .iter()
        .any(|r| r.eq_ignore_ascii_case(name))
}

const MAX_PATH_BYTES: usize = 4095;
const MAX_URL_BYTES: usize = 8192;
const MAX_SOURCE_ID_BYTES: usize = 128;
const MAX_HEADER_NAME_BYTES: usize = 256;
const MAX_HEADER_VALUE_BYTES: usize = 16384;
const MAX_HEADERS: usize = 64;

const ENDPOINT_SCHEMES: &[&str] = &["http", "https"];
const PROXY_SCHEMES: &[&str] = &["http", "https", "socks4", "socks4a", "socks5", "socks5h"];

const I64_MAX: u64 = i64::MAX as u64;
const TEN_YEARS_MS: u64 = 10 * 365 * 24 * 3600 * 1000;

/// What a number counts, for messages.
#[derive(Clone, Copy)]
enum Unit {
    Millis,
    Bytes,
    Records,
}

impl Unit {
    fn noun(self) -> &'static str {
        match self {
            Unit::Millis => "milliseconds",
            Unit::Bytes => "bytes",
            Unit::Records => "records",
        }
    }
}

/// A numeric key: its range and where it lives in `Config`.
struct NumKey {
    key: &'static str,
    min: u64,
    max: u64,
    unit: Unit,
    get: fn(&Config) -> u64,
    field: fn(&mut Config) -> &mut u64,
}

impl NumKey {
    fn expected(&self) -> String {
        format!(
            "{} must be a whole number of {} from {} to {}",
            self.key,
            self.unit.noun(),
            self.min,
            self.max
        )
    }

    fn parse(&self, value: &str) -> Result<u64> {
        match parse_digits(value) {
            Some(n) if (self.min..=self.max).contains(&n) => Ok(n),
            _ => Err(Error::invalid_config(self.expected())),
        }
    }
}

macro_rules! num_keys {
    ($( $key:literal => $field:ident, $min:expr, $max:expr, $unit:ident; )*) => {
        /// Every key whose value is a plain `u64` field.
        const NUM_KEYS: &[NumKey] = &[
            $( NumKey {
                key: $key,
                min: $min,
                max: $max,
                unit: Unit::$unit,
                get: |c: &Config| c.$field,
                field: |c: &mut Config| &mut c.$field,
            }, )*
        ];
    };
}

num_keys! {
    "commit.interval_ms" => commit_interval_ms, 0, 3_600_000, Millis;
    "commit.sync_interval_ms" => commit_sync_interval_ms, 0, 3_600_000, Millis;
    "memory.max_records" => memory_max_records, 1, 10_000_000, Records;
    "memory.max_bytes" => memory_max_bytes, 1024, 1 << 34, Bytes;
    "memory.max_wait_ms" => memory_max_wait_ms, 0, 60_000, Millis;
    "batch.max_records" => batch_max_records, 1, 100_000, Records;
    "batch.max_bytes" => batch_max_bytes, 1024, 1 << 30, Bytes;
    "batch.linger_ms" => batch_linger_ms, 0, 3_600_000, Millis;
    "retry.initial_ms" => retry_initial_ms, 1, 86_400_000, Millis;
    "retry.max_ms" => retry_max_ms, 1, 86_400_000, Millis;
    "http.timeout_ms" => http_timeout_ms, 1, 3_600_000, Millis;
    "http.connect_timeout_ms" => http_connect_timeout_ms, 1, 3_600_000, Millis;
    "capacity.max_bytes" => capacity_max_bytes, 4096, I64_MAX, Bytes;
    "capacity.max_records" => capacity_max_records, 0, I64_MAX, Records;
    "record.max_bytes" => record_max_bytes, 1, 64 << 20, Bytes;
    "record.ttl_ms" => record_ttl_ms, 0, TEN_YEARS_MS, Millis;
    "dead_letter.max_records" => dead_letter_max_records, 0, I64_MAX, Records;
    "alert.pending_records" => alert_pending_records, 1, I64_MAX, Records;
}

/// `disk.min_free_bytes` is optional, so it is not in `NUM_KEYS`.
const DISK_MIN_FREE: NumKey = NumKey {
    key: "disk.min_free_bytes",
    min: 0,
    max: I64_MAX,
    unit: Unit::Bytes,
    get: |c: &Config| c.disk_min_free_bytes.unwrap_or(0),
    field: |c: &mut Config| c.disk_min_free_bytes.get_or_insert(0),
};

// ---------------------------------------------------------------------------------------------
// The API
// ---------------------------------------------------------------------------------------------

impl Config {
    /// Every fixed key of SPEC 2, in the order of its table (the `http.header.NAME` family is not
    /// listed: any `http.header.` + HTTP token is a key).
    pub const KEYS: &'static [&'static str] = &[
        "path",
        "endpoint",
        "source.id",
        "durability",
        "commit.interval_ms",
        "commit.sync_interval_ms",
        "memory.max_records",
        "memory.max_bytes",
        "memory.max_wait_ms",
        "batch.max_records",
        "batch.max_bytes",
        "batch.linger_ms",
        "retry.initial_ms",
        "retry.max_ms",
        "http.timeout_ms",
        "http.connect_timeout_ms",
        "http.compression",
        "http.proxy",
        "format",
        "tls.ca_file",
        "tls.cert_file",
        "tls.key_file",
        "capacity.max_bytes",
        "capacity.max_records",
        "capacity.when_full",
        "disk.min_free_bytes",
        "record.max_bytes",
        "record.ttl_ms",
        "dead_letter.max_records",
        "alert.pending_records",
        "storage.on_corrupt",
    ];

    /// A configuration with the defaults of SPEC 2 (the same as `Config::default()`).
    pub fn new() -> Config {
        Config::default()
    }

    /// INVALID_CONFIG for a key that names no setting, with a message fit to print.
    pub fn check_key(key: &str) -> Result<()> {
        if key.starts_with(HEADER_PREFIX) || Config::KEYS.contains(&key) {
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
    /// the default (for `path` and `endpoint`: unset; for `http.header.NAME`: removes the header).
    /// Keys are case-sensitive; enumerated values are matched ignoring ASCII case.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        if let Some(name) = key.strip_prefix(HEADER_PREFIX) {
            return self.set_header(name, value);
        }
        if let Some(spec) = NUM_KEYS.iter().find(|s| s.key == key) {
            let n = if value.is_empty() {
                (spec.get)(&Config::default())
            } else {
                spec.parse(value)?
            };
            *(spec.field)(self) = n;
            return Ok(());
        }
        let empty = value.is_empty();
        match key {
            "path" => {
                self.path = if empty {
                    None
                } else {
                    Some(parse_path(key, value)?)
                }
            }
            "endpoint" => {
                self.endpoint = if empty {
                    None
                } else if valid_url(value, ENDPOINT_SCHEMES) {
                    Some(value.to_string())
                } else {
                    return Err(Error::invalid_config(ENDPOINT_EXPECTED));
                }
            }
            "source.id" => {
                self.source_id = if empty {
                    None
                } else if valid_source_id(value) {
                    Some(value.to_string())
                } else {
                    return Err(Error::invalid_config(SOURCE_ID_EXPECTED));
                }
            }
            "durability" => {
                self.durability = if empty {
                    Config::default().durability
                } else {
                    Durability::parse(value)
                        .ok_or_else(|| Error::invalid_config("durability must be async or sync"))?
                }
            }
            "http.compression" => {
                self.http_compression = if empty {
                    Config::default().http_compression
                } else {
                    Compression::parse(value).ok_or_else(|| {
                        Error::invalid_config("http.compression must be none or gzip")
                    })?
                }
            }
            "http.proxy" => {
                self.http_proxy = if empty {
                    Config::default().http_proxy
                } else {
                    parse_proxy(value)?
                }
            }
            "format" => {
                self.format = if empty {
                    Config::default().format
                } else {
                    Format::parse(value)
                        .ok_or_else(|| Error::invalid_config("format must be json or ndjson"))?
                }
            }
            "tls.ca_file" => {
                self.tls_ca_file = if empty {
                    None
                } else {
                    Some(parse_path(key, value)?)
                }
            }
            "tls.cert_file" => {
                self.tls_cert_file = if empty {
                    None
                } else {
                    Some(parse_path(key, value)?)
                }
            }
            "tls.key_file" => {
                self.tls_key_file = if empty {
                    None
                } else {
                    Some(parse_path(key, value)?)
                }
            }
            "capacity.when_full" => {
                self.capacity_when_full = if empty {
                    Config::default().capacity_when_full
                } else {
                    WhenFull::parse(value).ok_or_else(|| {
                        Error::invalid_config(
                            "capacity.when_full must be drop_oldest, drop_newest or reject",
                        )
                    })?
                }
            }
            "disk.min_free_bytes" => {
                self.disk_min_free_bytes = if empty {
                    None
                } else {
                    Some(DISK_MIN_FREE.parse(value)?)
                }
            }
            "storage.on_corrupt" => {
                self.storage_on_corrupt = if empty {
                    Config::default().storage_on_corrupt
                } else {
                    OnCorrupt::parse(value).ok_or_else(|| {
                        Error::invalid_config("storage.on_corrupt must be quarantine or fail")
                    })?
                }
            }
            _ => return Err(unknown_key(key)),
        }
        Ok(())
    }

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
    /// `_` cannot be set this way). Variable names are case-sensitive.
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

    /// Open-time checks: `path` and `endpoint` are set; every value is still within what
    /// [`Config::set`] accepts (fields are public); `retry.initial_ms` ≤ `retry.max_ms`;
    /// `tls.cert_file` and `tls.key_file` are set together; every file named by a `tls.*` key is a
    /// readable regular file. Errors are `Code::InvalidConfig` naming the key.
    pub fn validate_for_open(&self) -> Result<()> {
        match &self.path {
            None => {
                return Err(Error::invalid_config(
                    "path is required: the buffer file (SQLite) to use",
                ))
            }
            Some(p) => check_path_field("path", p)?,
        }
        match &self.endpoint {
            None => {
                return Err(Error::invalid_config(
                    "endpoint is required: the http:// or https:// URL the batches are POSTed to",
                ))
            }
            Some(e) if !valid_url(e, ENDPOINT_SCHEMES) => {
                return Err(Error::invalid_config(ENDPOINT_EXPECTED))
            }
            Some(_) => {}
        }
        if let Some(s) = &self.source_id {
            if !valid_source_id(s) {
                return Err(Error::invalid_config(SOURCE_ID_EXPECTED));
            }
        }
        for spec in NUM_KEYS {
            let n = (spec.get)(self);
            if !(spec.min..=spec.max).contains(&n) {
                return Err(Error::invalid_config(spec.expected()));
            }
        }
        if let Some(n) = self.disk_min_free_bytes {
            if !(DISK_MIN_FREE.min..=DISK_MIN_FREE.max).contains(&n) {
                return Err(Error::invalid_config(DISK_MIN_FREE.expected()));
            }
        }
        if self.http_headers.len() > MAX_HEADERS {
            return Err(too_many_headers());
        }
        for (name, value) in &self.http_headers {
            check_header_name(name)?;
            check_header_value(name, value)?;
        }
        if let ProxySetting::Url(url) = &self.http_proxy {
            if !valid_proxy_url(url) {
                return Err(Error::invalid_config(PROXY_EXPECTED));
            }
        }
        if self.retry_initial_ms > self.retry_max_ms {
            return Err(Error::invalid_config(
                "retry.initial_ms must not be greater than retry.max_ms",
            ));
        }
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(_), None) => {
                return Err(Error::invalid_config(
                    "tls.cert_file is set without tls.key_file: mutual TLS needs both",
                ))
            }
            (None, Some(_)) => {
                return Err(Error::invalid_config(
                    "tls.key_file is set without tls.cert_file: mutual TLS needs both",
                ))
            }
            _ => {}
        }
        for (key, file) in [
            ("tls.ca_file", &self.tls_ca_file),
            ("tls.cert_file", &self.tls_cert_file),
            ("tls.key_file", &self.tls_key_file),
        ] {
            if let Some(p) = file {
                check_path_field(key, p)?;
                check_readable(key, p)?;
            }
        }
        Ok(())
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

    /// The endpoint with user info, query and fragment removed, safe for messages and status
    /// (e.g. "https://host:8443/ingest"); characters outside printable ASCII are
    /// percent-encoded. "" when no endpoint is set.
    pub fn endpoint_redacted(&self) -> String {
        self.endpoint.as_deref().map(redact_url).unwrap_or_default()
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

// ---------------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------------

const ENDPOINT_EXPECTED: &str = "endpoint must be an http:// or https:// URL with a host \
     (and a port from 1 to 65535 if one is given), at most 8192 bytes, without spaces, \
     control or non-ASCII characters";
const PROXY_EXPECTED: &str = "http.proxy must be env, none, or a proxy URL (http://, https://, \
     socks4://, socks4a://, socks5:// or socks5h://) with a host, at most 8192 bytes, without \
     spaces, control or non-ASCII characters";
const SOURCE_ID_EXPECTED: &str = "source.id must be 1 to 128 bytes of printable ASCII";

/// Plain decimal digits only; `None` on anything else or on overflow.
fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_path(key: &str, value: &str) -> Result<PathBuf> {
    if value.is_empty() || value.len() > MAX_PATH_BYTES || value.contains('\0') {
        return Err(path_expected(key));
    }
    Ok(PathBuf::from(value))
}

fn path_expected(key: &str) -> Error {
    Error::invalid_config(format!(
        "{key} must be a file path of 1 to {MAX_PATH_BYTES} bytes without NUL"
    ))
}

/// The same rules as `parse_path`, for a field that may have been set directly.
fn check_path_field(key: &str, p: &Path) -> Result<()> {
    let bytes = p.as_os_str().as_encoded_bytes();
    if bytes.is_empty() || bytes.len() > MAX_PATH_BYTES || bytes.contains(&0) {
        return Err(path_expected(key));
    }
    Ok(())
}

/// A regular file that can be opened and read.
fn check_readable(key: &str, p: &Path) -> Result<()> {
    let unreadable = |e: std::io::Error| {
        Error::invalid_config(format!("{key} names a file that cannot be read: {e}"))
    };
    // metadata first: opening a FIFO for reading would block.
    let meta = std::fs::metadata(p).map_err(unreadable)?;
    if !meta.is_file() {
        return Err(Error::invalid_config(format!(
            "{key} must name a readable regular file"
        )));
    }
    let mut file = std::fs::File::open(p).map_err(unreadable)?;
    let mut byte = [0u8; 1];
    file.read(&mut byte).map_err(unreadable)?;
    Ok(())
}

fn valid_source_id(s: &str) -> bool {
    (1..=MAX_SOURCE_ID_BYTES).contains(&s.len()) && s.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

fn parse_proxy(value: &str) -> Result<ProxySetting> {
    if value.eq_ignore_ascii_case("env") {
        Ok(ProxySetting::Env)
    } else if value.eq_ignore_ascii_case("none") {
        Ok(ProxySetting::None)
    } else if valid_proxy_url(value) {
        Ok(ProxySetting::Url(value.to_string()))
    } else {
        Err(Error::invalid_config(PROXY_EXPECTED))
    }
}

/// A proxy URL that the HTTP client will also take at open (its parser decodes the user
/// info, which `valid_url` does not inspect): `set` and open must agree.
fn valid_proxy_url(s: &str) -> bool {
    valid_url(s, PROXY_SCHEMES) && ureq::Proxy::new(s).is_ok()
}

/// An absolute URL of one of `schemes` (ignoring case) with a non-empty host and, if given, a
/// port from 1 to 65535; printable ASCII without spaces only. User info, path, query and
/// fragment are allowed and not inspected.
fn valid_url(s: &str, schemes: &[&str]) -> bool {
    if s.is_empty() || s.len() > MAX_URL_BYTES || !s.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return false;
    }
    let Some(i) = s.find("://") else {
        return false;
    };
    if !schemes.iter().any(|x| x.eq_ignore_ascii_case(&s[..i])) {
        return false;
    }
    let rest = &s[i + 3..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host_port = authority
        .rfind('@')
        .map_or(authority, |j| &authority[j + 1..]);
    // And what the HTTP client will parse at open: `set` and open must agree.
    valid_host_port(host_port) && s.parse::<ureq::http::Uri>().is_ok()
}

fn valid_host_port(hp: &str) -> bool {
    let (host_ok, port) = if let Some(inner) = hp.strip_prefix('[') {
        // An IP literal: [v6] or [v6%25zone].
        let Some(close) = inner.find(']') else {
            return false;
        };
        let host = &inner[..close];
        let port = match &inner[close + 1..] {
            "" => None,
            after => match after.strip_prefix(':') {
                Some(p) => Some(p),
                None => return false,
            },
        };
        let ok = host.contains(':')
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~%:".contains(&b));
        (ok, port)
    } else {
        let (host, port) = match hp.find(':') {
            Some(j) => (&hp[..j], Some(&hp[j + 1..])),
            None => (hp, None),
        };
        let ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(&b));
        (ok, port)
    };
    host_ok && port.is_none_or(|p| parse_digits(p).is_some_and(|n| (1..=65535).contains(&n)))
}

/// RFC 9110 tchar.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn check_header_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_HEADER_NAME_BYTES || !name.bytes().all(is_tchar) {
        return Err(Error::invalid_config(format!(
            "{HEADER_PREFIX}{} does not name a valid header: NAME must be an HTTP token of 1 to \
             {MAX_HEADER_NAME_BYTES} letters, digits or !#$%&'*+-.^_`|~",
            printable(name)
        )));
    }
    if let Some(reserved) = RESERVED_HEADERS
        .iter()
        .find(|r| r.eq_ignore_ascii_case(name))
    {
        return Err(Error::invalid_config(format!(
            "{HEADER_PREFIX}{name} is reserved: edgebuf sets {reserved} itself"
        )));
    }
    Ok(())
}

/// A header value: no CR, LF, NUL or other control character (tab allowed), at most
/// `MAX_HEADER_VALUE_BYTES`. The message names the header, never the value.
fn check_header_value(name: &str, value: &str) -> Result<()> {
    let ok = !value.is_empty()
        && value.len() <= MAX_HEADER_VALUE_BYTES
        && value
            .bytes()
            .all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_config(format!(
            "{HEADER_PREFIX}{} must have a value of at most {MAX_HEADER_VALUE_BYTES} bytes \
             without CR, LF, NUL or other control characters",
            printable(name)
        )))
    }
}

fn too_many_headers() -> Error {
    Error::invalid_config(format!(
        "http.header.NAME: at most {MAX_HEADERS} headers can be set"
    ))
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

/// A name (key, header name, variable name) made safe for a message: non-printable characters
/// become `?`, and it is cut to 100 characters.
fn printable(s: &str) -> String {
    const MAX: usize = 100;
    let mut out: String = s
        .chars()
        .take(MAX)
        .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
        .collect();
    if s.chars().count() > MAX {
        out.push_str("...");
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Environment
// ---------------------------------------------------------------------------------------------

/// The key an environment variable names, if any.
fn env_var_key(var: &str) -> Option<String> {
    let rest = var.strip_prefix(ENV_PREFIX)?;
    if let Some(name) = rest.strip_prefix(ENV_HEADER_PREFIX) {
        if name.is_empty() {
            return None;
        }
        return Some(format!("{HEADER_PREFIX}{}", header_name_from_env(name)));
    }
    Config::KEYS
        .iter()
        .find(|key| env_suffix_matches(key, rest))
        .map(|key| key.to_string())
}

/// Whether `rest` is `key` upper-cased with `.` as `_`.
fn env_suffix_matches(key: &str, rest: &str) -> bool {
    key.len() == rest.len()
        && key.bytes().zip(rest.bytes()).all(|(k, r)| {
            let want = if k == b'.' {
                b'_'
            } else {
                k.to_ascii_uppercase()
            };
            want == r
        })
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

// ---------------------------------------------------------------------------------------------
// Source id and redaction
// ---------------------------------------------------------------------------------------------

/// Printable ASCII only, trimmed, at most 128 bytes; `None` when nothing is left.
fn sanitize_source_id(raw: &str) -> Option<String> {
    let kept: String = raw.chars().filter(|c| (' '..='~').contains(c)).collect();
    let trimmed = kept.trim();
    // ASCII only, so any byte index is a char boundary.
    let cut = &trimmed[..trimmed.len().min(MAX_SOURCE_ID_BYTES)];
    let cut = cut.trim_end();
    (!cut.is_empty()).then(|| cut.to_string())
}

/// The host name, sanitised; "edgebuf" when none can be read.
fn host_name() -> String {
    for path in ["/proc/sys/kernel/hostname", "/etc/hostname"] {
        if let Some(name) = read_host_name_file(Path::new(path)) {
            return name;
        }
    }
    "edgebuf".to_string()
}

/// The first line of a host name file that is neither empty nor a comment, sanitised.
fn read_host_name_file(path: &Path) -> Option<String> {
    let file = std::fs::File::open(path).ok()?;
    let mut bytes = Vec::new();
    file.take(4096).read_to_end(&mut bytes).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .find_map(sanitize_source_id)
}

/// A URL without user info, query or fragment; bytes outside printable ASCII (and spaces)
/// percent-encoded. Works on any string, valid URL or not.
fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) if is_scheme(&url[..i]) => (Some(&url[..i]), &url[i + 3..]),
        _ => (None, url),
    };
    let rest = &rest[..rest.find(['?', '#']).unwrap_or(rest.len())];
    let auth_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(auth_end);
    let host_port = authority
        .rfind('@')
        .map_or(authority, |j| &authority[j + 1..]);
    let mut plain = String::with_capacity(url.len());
    if let Some(scheme) = scheme {
        plain.push_str(scheme);
        plain.push_str("://");
    }
    plain.push_str(host_port);
    plain.push_str(path);
    let mut out = String::with_capacity(plain.len());
    for b in plain.bytes() {
        if (0x21..=0x7e).contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// RFC 3986 scheme: a letter, then letters, digits, `+`, `-`, `.`.
fn is_scheme(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Code;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A good, non-default value for every fixed key.
    const GOOD: &[(&str, &str)] = &[
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
        ("retry.initial_ms", "1000"),
        ("retry.max_ms", "120000"),
        ("http.timeout_ms", "10000"),
        ("http.connect_timeout_ms", "3000"),
        ("http.compression", "gzip"),
        ("http.proxy", "none"),
        ("format", "ndjson"),
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

    /// The SPEC default of every key that has a written one.
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
        ("retry.initial_ms", "500"),
        ("retry.max_ms", "60000"),
        ("http.timeout_ms", "30000"),
        ("http.connect_timeout_ms", "5000"),
        ("http.compression", "none"),
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
        ("http.compression", "zstd"),
        ("http.compression", "deflate"),
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
    ];

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
    fn all_good() -> Config {
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
        assert_eq!(Config::KEYS.len(), 31);
        for (i, k) in Config::KEYS.iter().enumerate() {
            assert!(!Config::KEYS[..i].contains(k), "{k} twice");
            assert!(GOOD.iter().any(|(g, _)| g == k), "{k} has no good value");
        }
        for (k, _) in GOOD.iter().chain(DEFAULTS).chain(BAD) {
            assert!(Config::KEYS.contains(k), "{k} not in KEYS");
        }
        for spec in NUM_KEYS {
            assert!(Config::KEYS.contains(&spec.key), "{}", spec.key);
        }
    }

    #[test]
    fn defaults_are_within_range() {
        let d = Config::default();
        for spec in NUM_KEYS.iter().chain([&DISK_MIN_FREE]) {
            let n = (spec.get)(&d);
            assert!((spec.min..=spec.max).contains(&n), "{}", spec.key);
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
        for (v, want) in [("gzip", Compression::Gzip), ("none", Compression::None)] {
            c.set("http.compression", v).unwrap();
            assert_eq!(c.http_compression, want);
        }
        for (v, want) in [("ndjson", Format::Ndjson), ("json", Format::Json)] {
            c.set("format", v).unwrap();
            assert_eq!(c.format, want);
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
        for x in [Compression::None, Compression::Gzip] {
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
        for spec in NUM_KEYS.iter().chain([&DISK_MIN_FREE]) {
            let k = spec.key;
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
            if spec.min > 0 {
                bad.push((spec.min - 1).to_string());
            }
            if spec.max < u64::MAX {
                bad.push((spec.max + 1).to_string());
            }
            for v in &bad {
                let mut c = all_good();
                let before = c.clone();
                let m = assert_invalid(c.set(k, v), k, v);
                assert_eq!(c, before, "{k}={v:?} changed the config");
                assert!(
                    m.contains(&format!("from {} to {}", spec.min, spec.max)),
                    "{m}"
                );
            }
            for n in [spec.min, spec.max, (spec.min + spec.max) / 2] {
                let mut c = Config::new();
                c.set(k, &n.to_string())
                    .unwrap_or_else(|e| panic!("{k}={n}: {e}"));
                assert_eq!((spec.get)(&c), n, "{k}");
            }
            // Leading zeros are still plain decimal digits.
            let mut c = Config::new();
            c.set(k, &format!("000{}", spec.max)).unwrap();
            assert_eq!((spec.get)(&c), spec.max);
        }
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
    fn source_id_sanitising() {
        assert_eq!(sanitize_source_id("host\n"), Some("host".to_string()));
        assert_eq!(sanitize_source_id("  \n"), None);
        assert_eq!(sanitize_source_id("hé\u{0}st"), Some("hst".to_string()));
        let long = format!("{} x", "a".repeat(127));
        assert_eq!(sanitize_source_id(&long), Some("a".repeat(127)));
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

    // ---- environment ------------------------------------------------------------------------

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
