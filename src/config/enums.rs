//! The enumerated values of the configuration: each variant with the word that selects it.

use super::values::redact_url;
use std::fmt;

/// A value chosen by one of a fixed set of words (matched ignoring ASCII case).
pub(crate) trait Choice: Copy + fmt::Debug + 'static {
    /// Every value, in the order the docs list them.
    const ALL: &'static [Self];
    /// The word that selects this value.
    fn as_str(self) -> &'static str;

    /// The value `word` selects, ignoring ASCII case.
    fn parse(word: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|v| v.as_str().eq_ignore_ascii_case(word))
    }
}

/// Defines a `Choice` enum: each variant with its doc and its word; `WORDS` lists the words.
macro_rules! choice_enum {
    (
        $(#[doc = $doc:expr])*
        pub enum $name:ident {
            $( $(#[doc = $vdoc:expr])* $variant:ident = $word:literal, )+
        }
    ) => {
        $(#[doc = $doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $name {
            $( $(#[doc = $vdoc])* $variant, )+
        }

        impl $name {
            /// The words of every value, in order.
            pub const WORDS: &'static [&'static str] = &[$($word),+];

            /// The value as written in the configuration.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $word, )+
                }
            }
        }

        impl Choice for $name {
            const ALL: &'static [Self] = &[$($name::$variant),+];
            fn as_str(self) -> &'static str {
                $name::as_str(self)
            }
        }
    };
}

choice_enum! {
    /// When `edgebuf_log` returns (`durability`).
    pub enum Durability {
        /// `async`: once the record is queued in memory.
        Async = "async",
        /// `sync`: once the record is committed and fsync'd.
        Sync = "sync",
    }
}

choice_enum! {
    /// Request body compression (`http.compression`).
    pub enum Compression {
        /// `none`: bodies are sent as they are.
        None = "none",
        /// `gzip`: bodies are gzip'd and sent with `Content-Encoding: gzip`.
        Gzip = "gzip",
        /// `zstd`: bodies are zstd-compressed (one frame) and sent with `Content-Encoding: zstd`.
        Zstd = "zstd",
    }
}

choice_enum! {
    /// The request body format (`format`).
    pub enum Format {
        /// `json`: one JSON array of envelopes per request.
        Json = "json",
        /// `ndjson`: one envelope per line, each ending in `\n`.
        Ndjson = "ndjson",
        /// `otlp_json`: one OTLP/HTTP `ExportLogsServiceRequest`, JSON encoding.
        OtlpJson = "otlp_json",
        /// `otlp_proto`: one OTLP/HTTP `ExportLogsServiceRequest`, protobuf encoding.
        OtlpProto = "otlp_proto",
    }
}

choice_enum! {
    /// Which pending records a batch takes (`delivery.order`).
    pub enum DeliveryOrder {
        /// `oldest_first`: batches in seq order.
        OldestFirst = "oldest_first",
        /// `newest_first`: each batch takes the newest pending records (seq order inside it).
        NewestFirst = "newest_first",
    }
}

choice_enum! {
    /// What happens to a record that does not fit (`capacity.when_full`).
    pub enum WhenFull {
        /// `drop_oldest`: the oldest pending records are dropped to make room.
        DropOldest = "drop_oldest",
        /// `drop_newest`: the new record is not stored and counts as dropped.
        DropNewest = "drop_newest",
        /// `reject`: edgebuf_log returns EDGEBUF_ERR_FULL.
        Reject = "reject",
    }
}

choice_enum! {
    /// What open does with a damaged buffer file (`storage.on_corrupt`).
    pub enum OnCorrupt {
        /// `quarantine`: move the file aside and start empty.
        Quarantine = "quarantine",
        /// `fail`: open returns EDGEBUF_ERR_CORRUPT.
        Fail = "fail",
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
