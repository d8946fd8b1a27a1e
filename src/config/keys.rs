//! The key table: one row per fixed key, from which [`Config`]'s fields, its `Default`, its
//! `Debug`, [`Config::KEYS`], `set`, the open-time range checks, the `EDGEBUF_*` names and the
//! docs check (tests/docs.rs) all come.
//!
//! A row is the field (its doc, name, type and default), then the key, what it accepts
//! ([`Kind`]), what an unset optional key means ([`Unset`]) and the doc line the README's
//! Configuration table shows. Adding a key is adding a row; the README and the Python binding
//! must follow (tests/docs.rs fails until they do).

use super::enums::{
    Choice, Compression, DeliveryOrder, Durability, Format, OnCorrupt, ProxySetting, WhenFull,
};
use super::env::env_name;
use super::values::{
    parse_digits, parse_path, parse_proxy, redact_url, valid_path, valid_proxy_url,
    valid_source_id, valid_url, ENDPOINT_SCHEMES, MAX_PATH_BYTES, MAX_SOURCE_ID_BYTES,
    PROXY_EXPECTED, URL_EXPECTED,
};
use crate::error::{Error, Result};
use std::fmt;
use std::path::PathBuf;

const I64_MAX: u64 = i64::MAX as u64;
const TEN_YEARS_MS: u64 = 10 * 365 * 24 * 3600 * 1000;

/// What a number counts, for messages and docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Milliseconds.
    Millis,
    /// Bytes.
    Bytes,
    /// Records.
    Records,
}

impl Unit {
    /// The plural noun ("milliseconds").
    pub fn noun(self) -> &'static str {
        match self {
            Unit::Millis => "milliseconds",
            Unit::Bytes => "bytes",
            Unit::Records => "records",
        }
    }
}

/// What a key accepts.
///
/// Numbers are plain decimal digits: no sign, spaces, `0x` or suffix. Words are matched ignoring
/// ASCII case. Paths are non-empty, at most 4095 bytes and without NUL. URLs are at most 8192
/// bytes of printable ASCII without spaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A whole number from `min` to `max` (inclusive).
    Number {
        /// The smallest value accepted.
        min: u64,
        /// The largest value accepted.
        max: u64,
        /// What it counts.
        unit: Unit,
    },
    /// One of these words.
    Choice(&'static [&'static str]),
    /// A file path.
    Path,
    /// An `http://` or `https://` URL.
    Url,
    /// A source id: printable ASCII.
    SourceId,
    /// `env`, `none` or a proxy URL.
    Proxy,
}

impl Kind {
    /// What a value must be, as messages and docs say it ("a whole number of milliseconds from 0
    /// to 3600000").
    pub fn range_text(&self) -> String {
        match self {
            Kind::Number { min, max, unit } => {
                format!("a whole number of {} from {min} to {max}", unit.noun())
            }
            Kind::Choice(words) => match words.split_last() {
                Some((last, [])) => last.to_string(),
                Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
                None => String::new(),
            },
            Kind::Path => format!("a file path of 1 to {MAX_PATH_BYTES} bytes without NUL"),
            Kind::Url => URL_EXPECTED.to_string(),
            Kind::SourceId => format!("1 to {MAX_SOURCE_ID_BYTES} bytes of printable ASCII"),
            Kind::Proxy => PROXY_EXPECTED.to_string(),
        }
    }
}

/// What an optional key means while it is unset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unset {
    /// Not optional: the key always has a value (its default).
    Never,
    /// Open fails: the key must be set. The text says what the key is, for the message.
    Required(&'static str),
    /// Something else, as the docs say it ("host name"; "" when nothing needs saying).
    Means(&'static str),
}

/// One row of the key table.
pub struct Key {
    name: &'static str,
    kind: Kind,
    unset: Unset,
    doc: &'static str,
    /// Sets the field from a value ("" = the default); a failure leaves the field as it was.
    pub(super) set: fn(&Key, &mut Config, &str) -> Result<()>,
    /// The open-time check of the field (it is public, so it may hold anything).
    pub(super) check: fn(&Key, &Config) -> Result<()>,
    /// The field as `set` would take it; `None` when unset.
    pub(super) show: fn(&Config) -> Option<String>,
}

impl Key {
    /// The key ("commit.interval_ms").
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// What the key accepts.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// What the key means while unset.
    pub fn unset(&self) -> Unset {
        self.unset
    }

    /// The doc line of the README's Configuration table.
    pub fn doc(&self) -> &'static str {
        self.doc
    }

    /// The default as the docs show it: the value (`1000`, `async`), `(required)`, or what
    /// being unset means.
    pub fn default_text(&self) -> String {
        (self.show)(&Config::default()).unwrap_or_else(|| {
            match self.unset {
                Unset::Required(_) => "(required)",
                Unset::Means(text) => text,
                Unset::Never => "",
            }
            .to_string()
        })
    }

    /// What a value must be ("a whole number of milliseconds from 0 to 3600000").
    pub fn range_text(&self) -> String {
        self.kind.range_text()
    }

    /// The environment variable that sets the key (`EDGEBUF_COMMIT_INTERVAL_MS`).
    pub fn env_name(&self) -> String {
        env_name(self.name)
    }

    /// The row of `name`, if it is a fixed key.
    pub fn find(name: &str) -> Option<&'static Key> {
        TABLE.iter().find(|k| k.name == name)
    }

    /// INVALID_CONFIG: "KEY must be ..." (never the value).
    fn invalid(&self) -> Error {
        Error::invalid_config(format!("{} must be {}", self.name, self.range_text()))
    }

    /// Within the range of a number key.
    fn in_range(&self, n: u64) -> bool {
        matches!(self.kind, Kind::Number { min, max, .. } if (min..=max).contains(&n))
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("unset", &self.unset)
            .field("doc", &self.doc)
            .finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Field types
// ---------------------------------------------------------------------------------------------

/// A type a key's field can have: how a value is parsed, checked again at open, shown and
/// debug-printed, by the row's [`Kind`].
pub(super) trait Value: Sized + fmt::Debug {
    /// Parses a non-empty value.
    fn parse(key: &Key, value: &str) -> Result<Self>;
    /// Checks a field that may have been set directly.
    fn check(&self, key: &Key) -> Result<()>;
    /// The value as `set` takes it; `None` when unset.
    fn show(&self) -> Option<String>;
    /// `Debug`, with secrets redacted.
    fn fmt_debug(&self, _kind: &Kind, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl Value for u64 {
    fn parse(key: &Key, value: &str) -> Result<u64> {
        match parse_digits(value) {
            Some(n) if key.in_range(n) => Ok(n),
            _ => Err(key.invalid()),
        }
    }

    fn check(&self, key: &Key) -> Result<()> {
        if key.in_range(*self) {
            Ok(())
        } else {
            Err(key.invalid())
        }
    }

    fn show(&self) -> Option<String> {
        Some(self.to_string())
    }
}

impl<T: Choice> Value for T {
    fn parse(key: &Key, value: &str) -> Result<T> {
        <T as Choice>::parse(value).ok_or_else(|| key.invalid())
    }

    fn check(&self, _key: &Key) -> Result<()> {
        Ok(())
    }

    fn show(&self) -> Option<String> {
        Some(self.as_str().to_string())
    }
}

impl Value for ProxySetting {
    fn parse(key: &Key, value: &str) -> Result<ProxySetting> {
        parse_proxy(value).ok_or_else(|| key.invalid())
    }

    fn check(&self, key: &Key) -> Result<()> {
        match self {
            ProxySetting::Url(url) if !valid_proxy_url(url) => Err(key.invalid()),
            _ => Ok(()),
        }
    }

    fn show(&self) -> Option<String> {
        Some(
            match self {
                ProxySetting::Env => "env",
                ProxySetting::None => "none",
                ProxySetting::Url(url) => url,
            }
            .to_string(),
        )
    }
}

impl Value for PathBuf {
    fn parse(key: &Key, value: &str) -> Result<PathBuf> {
        parse_path(value).ok_or_else(|| key.invalid())
    }

    fn check(&self, key: &Key) -> Result<()> {
        if valid_path(self) {
            Ok(())
        } else {
            Err(key.invalid())
        }
    }

    fn show(&self) -> Option<String> {
        Some(self.to_string_lossy().into_owned())
    }
}

/// A URL (`Kind::Url`) or a source id (`Kind::SourceId`).
impl Value for String {
    fn parse(key: &Key, value: &str) -> Result<String> {
        let ok = match key.kind {
            Kind::Url => valid_url(value, ENDPOINT_SCHEMES),
            Kind::SourceId => valid_source_id(value),
            _ => false,
        };
        if ok {
            Ok(value.to_string())
        } else {
            Err(key.invalid())
        }
    }

    fn check(&self, key: &Key) -> Result<()> {
        Self::parse(key, self).map(|_| ())
    }

    fn show(&self) -> Option<String> {
        Some(self.clone())
    }

    fn fmt_debug(&self, kind: &Kind, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match kind {
            Kind::Url => fmt::Debug::fmt(&redact_url(self), f),
            _ => fmt::Debug::fmt(self, f),
        }
    }
}

/// An optional key: `None` is unset (see [`Unset`]).
impl<T: Value> Value for Option<T> {
    fn parse(key: &Key, value: &str) -> Result<Option<T>> {
        T::parse(key, value).map(Some)
    }

    fn check(&self, key: &Key) -> Result<()> {
        match (self, key.unset) {
            (Some(v), _) => v.check(key),
            (None, Unset::Required(what)) => Err(Error::invalid_config(format!(
                "{} is required: {what}",
                key.name
            ))),
            (None, _) => Ok(()),
        }
    }

    fn show(&self) -> Option<String> {
        self.as_ref().and_then(T::show)
    }

    fn fmt_debug(&self, kind: &Kind, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Some(v) => f.debug_tuple("Some").field(&Redacted(v, *kind)).finish(),
            None => f.write_str("None"),
        }
    }
}

/// A field as `Debug` shows it.
struct Redacted<'a, T>(&'a T, Kind);

impl<T: Value> fmt::Debug for Redacted<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt_debug(&self.1, f)
    }
}

/// The resource attribute family as `Debug` shows it: names and values (not secrets).
fn resource_debug(attrs: &[(String, String)]) -> Vec<(&str, &str)> {
    attrs
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect()
}

/// The header family as `Debug` shows it: names, values redacted.
fn headers_debug(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|(name, _)| (name.as_str(), "<redacted>"))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------------------------

/// Generates `Config` (fields, `Default`, `Debug`), `Config::KEYS` and `TABLE` from the rows.
/// `families` are fields that are not one fixed key (`http.header.NAME`): `set` and
/// `validate_for_open` handle them by hand.
macro_rules! config_table {
    (
        keys {
            $(
                $(#[doc = $fdoc:expr])*
                $field:ident: $ty:ty = $default:expr;
                $name:literal, $kind:expr, $unset:expr,
                $doc:literal;
            )*
        }
        families {
            $(
                $(#[doc = $xdoc:expr])*
                $xfield:ident: $xty:ty = $xdefault:expr, debug $xdebug:path;
            )*
        }
    ) => {
        /// A complete configuration: every key, defaulted as the key table says.
        ///
        /// Fields are public for the modules that read them; set them through
        /// [`Config::set`] so that values are checked, or call [`Config::validate_for_open`],
        /// which checks them all again.
        ///
        /// `Debug` shows header names but not their values, and URLs redacted.
        #[derive(Clone, PartialEq, Eq)]
        pub struct Config {
            $( $(#[doc = $fdoc])* pub $field: $ty, )*
            $( $(#[doc = $xdoc])* pub $xfield: $xty, )*
        }

        impl Default for Config {
            /// The defaults of the key table; `path` and `endpoint` unset.
            fn default() -> Self {
                Config {
                    $( $field: $default, )*
                    $( $xfield: $xdefault, )*
                }
            }
        }

        impl fmt::Debug for Config {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct("Config")
                    $( .field(stringify!($field), &Redacted(&self.$field, $kind)) )*
                    $( .field(stringify!($xfield), &$xdebug(&self.$xfield)) )*
                    .finish()
            }
        }

        impl Config {
            /// Every fixed key, in the order of the key table and the README's table (the
            /// `http.header.NAME` and `otlp.resource.NAME` families are not listed: any
            /// `http.header.` + HTTP token, and `otlp.resource.` + a name, is a key).
            pub const KEYS: &'static [&'static str] = &[$($name),*];
        }

        /// The key table: one row per fixed key, in the order of [`Config::KEYS`].
        pub const TABLE: &[Key] = &[
            $(
                Key {
                    name: $name,
                    kind: $kind,
                    unset: $unset,
                    doc: $doc,
                    set: |key: &Key, c: &mut Config, value: &str| {
                        c.$field = if value.is_empty() {
                            $default
                        } else {
                            <$ty as Value>::parse(key, value)?
                        };
                        Ok(())
                    },
                    check: |key: &Key, c: &Config| <$ty as Value>::check(&c.$field, key),
                    show: |c: &Config| <$ty as Value>::show(&c.$field),
                },
            )*
        ];
    };
}

/// `Kind::Number` in a row.
macro_rules! number {
    ($min:expr, $max:expr, $unit:ident) => {
        Kind::Number {
            min: $min,
            max: $max,
            unit: Unit::$unit,
        }
    };
}

config_table! {
    keys {
        /// `path`: the buffer file; `None` until set (required at open).
        path: Option<PathBuf> = None;
        "path", Kind::Path, Unset::Required("the buffer file (SQLite) to use"),
        "the buffer file (SQLite); siblings `-wal`, `-shm`, `.lock`; local file systems only; created 0600";

        /// `endpoint`: the URL batches are POSTed to; `None` until set (required at open).
        endpoint: Option<String> = None;
        "endpoint", Kind::Url,
        Unset::Required("the http:// or https:// URL the batches are POSTed to"),
        "`http://` or `https://` URL the batches are POSTed to";

        /// `source.id`; `None` means the host name (see [`Config::source_id_or_default`]).
        source_id: Option<String> = None;
        "source.id", Kind::SourceId, Unset::Means("host name"),
        "names this device in every batch; printable ASCII, 1-128 bytes";

        /// `durability`.
        durability: Durability = Durability::Async;
        "durability", Kind::Choice(Durability::WORDS), Unset::Never,
        "`async`: log returns once queued in memory; `sync`: once committed and fsync'd (concurrent calls share one fsync)";

        /// `commit.interval_ms`.
        commit_interval_ms: u64 = 1000;
        "commit.interval_ms", number!(0, 3_600_000, Millis), Unset::Never,
        "async: longest a record waits in memory before its commit";

        /// `commit.sync_interval_ms` (0: fsync every commit).
        commit_sync_interval_ms: u64 = 1000;
        "commit.sync_interval_ms", number!(0, 3_600_000, Millis), Unset::Never,
        "async: a commit is fsync'd at most this long after it is made (one fsync per interval while commits happen, none when idle; 0 = every commit); with `commit.interval_ms` it bounds what a power cut can take";

        /// `memory.max_records`.
        memory_max_records: u64 = 10_000;
        "memory.max_records", number!(1, 10_000_000, Records), Unset::Never,
        "bound of the in-memory queue";

        /// `memory.max_bytes`.
        memory_max_bytes: u64 = 8_388_608;
        "memory.max_bytes", number!(1024, 1 << 34, Bytes), Unset::Never,
        "the same in bytes";

        /// `memory.max_wait_ms`.
        memory_max_wait_ms: u64 = 100;
        "memory.max_wait_ms", number!(0, 60_000, Millis), Unset::Never,
        "when that queue is full, log waits this long for room, then applies `capacity.when_full`";

        /// `batch.max_records`.
        batch_max_records: u64 = 500;
        "batch.max_records", number!(1, 100_000, Records), Unset::Never,
        "records per request at most";

        /// `batch.max_bytes`.
        batch_max_bytes: u64 = 262_144;
        "batch.max_bytes", number!(1024, 1 << 30, Bytes), Unset::Never,
        "request body bytes at most (before compression)";

        /// `batch.linger_ms`.
        batch_linger_ms: u64 = 200;
        "batch.linger_ms", number!(0, 3_600_000, Millis), Unset::Never,
        "wait for a fuller batch when fewer are pending";

        /// `delivery.order`.
        delivery_order: DeliveryOrder = DeliveryOrder::OldestFirst;
        "delivery.order", Kind::Choice(DeliveryOrder::WORDS), Unset::Never,
        "`oldest_first` (batches in seq order) or `newest_first` (each batch takes the newest pending records, in seq order inside it; the backlog drains behind them)";

        /// `retry.initial_ms`.
        retry_initial_ms: u64 = 500;
        "retry.initial_ms", number!(1, 86_400_000, Millis), Unset::Never,
        "first backoff";

        /// `retry.max_ms`.
        retry_max_ms: u64 = 60_000;
        "retry.max_ms", number!(1, 86_400_000, Millis), Unset::Never,
        "backoff cap (exponential, full jitter)";

        /// `http.timeout_ms`.
        http_timeout_ms: u64 = 30_000;
        "http.timeout_ms", number!(1, 3_600_000, Millis), Unset::Never,
        "whole-request timeout; two in a row halve the batch";

        /// `http.connect_timeout_ms`.
        http_connect_timeout_ms: u64 = 5000;
        "http.connect_timeout_ms", number!(1, 3_600_000, Millis), Unset::Never,
        "longest wait for a connection to open";

        /// `http.compression`.
        http_compression: Compression = Compression::None;
        "http.compression", Kind::Choice(Compression::WORDS), Unset::Never,
        "`none`, `gzip` or `zstd`";

        /// `http.max_bytes_per_s`; 0 = no cap.
        http_max_bytes_per_s: u64 = 0;
        "http.max_bytes_per_s", number!(0, I64_MAX, Bytes), Unset::Never,
        "average upload rate cap in body bytes per second as sent (after compression); a request waits until the rate allows it; 0 = none";

        /// `http.budget_bytes`; 0 = no budget.
        http_budget_bytes: u64 = 0;
        "http.budget_bytes", number!(0, I64_MAX, Bytes), Unset::Never,
        "body bytes that may be sent per `http.budget_period_ms`, every attempt counted; when spent, nothing is sent until the period ends; 0 = none";

        /// `http.budget_period_ms`.
        http_budget_period_ms: u64 = 86_400_000;
        "http.budget_period_ms", number!(1, TEN_YEARS_MS, Millis), Unset::Never,
        "length of a budget period on the wall clock, from the start of the first (kept in the buffer file); a clock jump backwards ends it";

        /// `http.proxy`.
        http_proxy: ProxySetting = ProxySetting::Env;
        "http.proxy", Kind::Proxy, Unset::Never,
        "`env` (HTTPS_PROXY / HTTP_PROXY / NO_PROXY as curl), `none`, or a proxy URL";

        /// `format`.
        format: Format = Format::Json;
        "format", Kind::Choice(Format::WORDS), Unset::Never,
        "`json` (one array per request), `ndjson`, `otlp_json` or `otlp_proto` (OTLP/HTTP logs)";

        /// `clock.valid_after_unix_ms`; `None` = the library's build time (see
        /// [`Config::clock_valid_after_ms`]); 0 disables the check.
        clock_valid_after_unix_ms: Option<u64> = None;
        "clock.valid_after_unix_ms", number!(0, I64_MAX, Millis),
        Unset::Means("the library's build time"),
        "a wall clock earlier than this, in Unix ms, is not set yet (a board without a real-time clock before NTP): records logged then carry `clock` in their envelope, and their `ts_ms` is repaired from the boot clock when it can be (see Timestamps); 0 = no check";

        /// `tls.ca_file`; `None` means the built-in Mozilla roots.
        tls_ca_file: Option<PathBuf> = None;
        "tls.ca_file", Kind::Path, Unset::Means("built-in Mozilla roots"),
        "PEM; when set, the only trusted roots. Verification cannot be turned off";

        /// `tls.cert_file`: client certificate for mutual TLS.
        tls_cert_file: Option<PathBuf> = None;
        "tls.cert_file", Kind::Path, Unset::Means(""),
        "client certificate and key for mutual TLS";

        /// `tls.key_file`: client key for mutual TLS.
        tls_key_file: Option<PathBuf> = None;
        "tls.key_file", Kind::Path, Unset::Means(""),
        "client certificate and key for mutual TLS";

        /// `capacity.max_bytes`.
        capacity_max_bytes: u64 = 134_217_728;
        "capacity.max_bytes", number!(4096, I64_MAX, Bytes), Unset::Never,
        "payload bytes kept at most, dead letters included";

        /// `capacity.max_records`; 0 = no limit.
        capacity_max_records: u64 = 0;
        "capacity.max_records", number!(0, I64_MAX, Records), Unset::Never,
        "pending records kept at most, 0 = no limit";

        /// `capacity.when_full`.
        capacity_when_full: WhenFull = WhenFull::DropOldest;
        "capacity.when_full", Kind::Choice(WhenFull::WORDS), Unset::Never,
        "`drop_oldest`, `drop_newest` (counted as dropped), `reject` (EDGEBUF_ERR_FULL)";

        /// `disk.min_free_bytes`; `None` = the default, min(32 MiB, 5 % of the file system),
        /// computed at open by the store.
        disk_min_free_bytes: Option<u64> = None;
        "disk.min_free_bytes", number!(0, I64_MAX, Bytes),
        Unset::Means("min(32 MiB, 5 % of the file system)"),
        "the file may not grow while free space is below this";

        /// `record.max_bytes`.
        record_max_bytes: u64 = 1_048_576;
        "record.max_bytes", number!(1, 64 << 20, Bytes), Unset::Never,
        "longer records are EDGEBUF_ERR_INVALID_RECORD";

        /// `record.ttl_ms`; 0 = never.
        record_ttl_ms: u64 = 0;
        "record.ttl_ms", number!(0, TEN_YEARS_MS, Millis), Unset::Never,
        "pending records older than this are dropped and counted; 0 = never";

        /// `dead_letter.max_records`.
        dead_letter_max_records: u64 = 10_000;
        "dead_letter.max_records", number!(0, I64_MAX, Records), Unset::Never,
        "oldest dead letters are removed past this";

        /// `alert.pending_records`.
        alert_pending_records: u64 = 100_000;
        "alert.pending_records", number!(1, I64_MAX, Records), Unset::Never,
        "threshold of EDGEBUF_EVENT_BACKLOG_HIGH";

        /// `storage.on_corrupt`.
        storage_on_corrupt: OnCorrupt = OnCorrupt::Quarantine;
        "storage.on_corrupt", Kind::Choice(OnCorrupt::WORDS), Unset::Never,
        "`quarantine` (move aside to `PATH.corrupt-UNIXMS`, start empty) or `fail`";
    }
    families {
        /// `http.header.NAME`: (name as given, value), in the order first set. Setting the same
        /// name again (ignoring ASCII case) replaces the entry in place; setting "" removes it.
        http_headers: Vec<(String, String)> = Vec::new(), debug headers_debug;
        /// `otlp.resource.NAME`: (name, value), in the order first set. Setting a name again
        /// replaces the entry in place; setting "" removes it. `service.name` is `edgebuf`
        /// unless set here (see [`Config::otlp_resource_attributes`]).
        otlp_resource: Vec<(String, String)> = Vec::new(), debug resource_debug;
    }
}
