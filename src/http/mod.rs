//! The HTTP side (docs/reference.md, the wire): the [`Sender`] encodes a batch of records into one request
//! body, POSTs it to the endpoint and classifies the answer.
//!
//! - `body`: envelopes and request bodies (json, ndjson) and their exact lengths.
//! - `otlp`: OTLP/HTTP logs bodies (`otlp_json`, `otlp_proto`) and `partialSuccess`;
//!   `transcode`: a record's JSON straight into an OTLP `AnyValue`, in one pass.
//! - `classify`: [`Outcome`] and [`Attempt`]: what a status, a proxy refusal or a transport
//!   failure means for the batch.
//! - `proxy`: `http.proxy`, and the environment's proxy as curl reads it.
//! - `tls`: roots, client certificate, and the probe that checks the pair at open.
//! - `agent`: the ureq agent and its resolver (the one user of `ureq::unversioned`).
//!
//! One [`Sender`] belongs to the delivery worker; it sends one batch at a time. It never follows
//! redirects, never turns TLS verification off, and never puts header values, URL credentials,
//! query strings or key material into an [`Attempt::detail`] or an error message.
//!
//! ureq uses `std::net::TcpStream`, whose writes pass `MSG_NOSIGNAL` on Linux, so a peer that
//! closes the connection never raises SIGPIPE in the sending thread.

mod agent;
mod body;
mod classify;
pub(crate) mod otlp;
mod proxy;
/// OTLP's JSON encoding read back, shared with tests/otlp_wire.rs.
#[cfg(test)]
#[path = "../../tests/common/otlp_json.rs"]
mod test_otlp_json;
/// The test certificates of tests/common, shared with the integration tests.
#[cfg(test)]
#[allow(dead_code)]
#[path = "../../tests/common/pki.rs"]
mod test_pki;
/// The scripted HTTP test server of tests/common, shared with the integration tests.
#[cfg(test)]
#[allow(dead_code)]
#[path = "../../tests/common/http.rs"]
mod test_server;
mod tls;
mod transcode;

use std::fmt;
use std::io::{self, Read, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, SystemTime};

use ureq::config::Config as AgentConfig;
use ureq::http::{HeaderName, HeaderValue, Uri};
use ureq::Agent;

/// `pub` for `edgebuf::envelope`, which re-exports them for the CLI's export.
pub use body::{push_envelope_fields, RecordRef};
pub(crate) use body::{Costing, Plan};
#[cfg(test)]
pub(crate) use classify::{classify_status, status_not_processed};
pub(crate) use classify::{Attempt, Outcome};
pub(crate) use otlp::Pieces;

use crate::config::{is_reserved_header, Compression, Config, Format};
use crate::delivery::retry::parse_retry_after;
use crate::error::{Error, Result};
use classify::{Answer, Classifier, Failure};

/// The most of a response body that is read (and discarded).
const MAX_RESPONSE_BODY: u64 = 64 * 1024;

/// What the endpoint must be.
const ENDPOINT_EXPECTED: &str = "endpoint must be an http:// or https:// URL with a host";

/// The `User-Agent` sent unless `http.header.User-Agent` overrides it.
const USER_AGENT: &str = concat!("edgebuf/", env!("CARGO_PKG_VERSION"));

/// Sends batches to the endpoint. Owned by one thread at a time (it is `Send`).
/// One request, encoded and compressed ([`Sender::encode`]).
pub(crate) struct Encoded {
    body: Vec<u8>,
    key: String,
    records: u64,
}

impl Encoded {
    /// The body's length as sent (after compression).
    pub fn len(&self) -> u64 {
        self.body.len() as u64
    }
}

pub(crate) struct Sender {
    agent: Agent,
    agent_config: AgentConfig,
    uri: Uri,
    classifier: Classifier,
    format: Format,
    /// The OTLP encoder when `format` is `otlp_json` or `otlp_proto`.
    otlp: Option<std::sync::Arc<otlp::Encoder>>,
    compression: Compression,
    source_json: String,
    source_header: HeaderValue,
    headers: Vec<(HeaderName, HeaderValue)>,
    /// The previous request got a complete answer and left its connection in the pool.
    pooled: bool,
    resends: u64,
}

impl fmt::Debug for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("endpoint", &self.classifier.endpoint)
            .field("format", &self.format)
            .field("compression", &self.compression)
            .field("source", &self.source_json)
            .field("resends", &self.resends)
            .finish_non_exhaustive()
    }
}

impl Sender {
    /// Builds the sender and its HTTP agent from a configuration that passed
    /// [`Config::validate_for_open`].
    ///
    /// The agent has `timeout_global = http.timeout_ms`, `timeout_connect =
    /// http.connect_timeout_ms`, no redirects (a 3xx comes back as an answer), statuses as
    /// answers, the proxy of `http.proxy` (`env` reads `https_proxy`/`HTTPS_PROXY` for an https
    /// endpoint, `http_proxy`/`HTTP_PROXY` for http, then `all_proxy`/`ALL_PROXY`, and honours
    /// `no_proxy`/`NO_PROXY`, as curl does), the built-in WebPKI roots or only the roots of
    /// `tls.ca_file`, and the client certificate of `tls.cert_file` + `tls.key_file`.
    ///
    /// Errors are `Code::InvalidConfig` naming the key: a file that cannot be read or holds no
    /// certificate or key, a client key that does not match its certificate, an invalid proxy
    /// URL in the environment; and, should a configuration that `validate_for_open` refuses
    /// get here, its endpoint, header, proxy URL or half a cert/key pair.
    pub fn new(cfg: &Config) -> Result<Sender> {
        // Config::validate_for_open is the home of these checks (the endpoint is there, http or
        // https, with a host; header names and values; the proxy URL; the cert/key pair and its
        // files readable); what stays here is the conversion each is part of, with one
        // message should it ever fail.
        // The checks are the config's (Config::checked_endpoint); the parse is the conversion.
        let endpoint_str = cfg.checked_endpoint()?;
        let uri: Uri = endpoint_str
            .parse()
            .map_err(|_| Error::invalid_config(ENDPOINT_EXPECTED))?;
        let tls = uri
            .scheme_str()
            .is_some_and(|s| s.eq_ignore_ascii_case("https"));
        let mut endpoint = cfg.endpoint_redacted();
        if endpoint.is_empty() {
            endpoint = "the endpoint".to_string();
        }

        let source = cfg.source_id_or_default();
        let source_header = HeaderValue::from_str(&source)
            .map_err(|_| Error::invalid_config("source.id must be printable ASCII, 1-128 bytes"))?;

        let mut headers = Vec::with_capacity(cfg.http_headers.len());
        for (name, value) in &cfg.http_headers {
            // Refused by the config; ignored here if one ever gets through.
            if is_reserved_header(name) {
                continue;
            }
            let bad_header = || {
                Error::invalid_config(format!(
                    "http.header.{} is not a valid header: an HTTP token, and a value without \
                     CR, LF, NUL or other control characters",
                    printable(name)
                ))
            };
            let hn = HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad_header())?;
            let hv = HeaderValue::from_bytes(value.as_bytes()).map_err(|_| bad_header())?;
            headers.push((hn, hv));
        }

        let proxy = proxy::proxy_for(&cfg.http_proxy, &uri)?;
        let (tls_config, client_cert) = tls::tls_config(cfg)?;
        let timeout_ms = cfg.http_timeout_ms.max(1);
        let connect_timeout_ms = cfg.http_connect_timeout_ms.max(1);
        let agent_config = Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .timeout_global(Some(Duration::from_millis(timeout_ms)))
            .timeout_connect(Some(Duration::from_millis(connect_timeout_ms)))
            .proxy(proxy)
            .tls_config(tls_config.clone())
            .user_agent(USER_AGENT)
            .build();
        if client_cert {
            tls::probe_client_cert(&tls_config)?;
        }

        Ok(Sender {
            agent: agent::new(&agent_config),
            agent_config,
            uri,
            classifier: Classifier {
                endpoint,
                tls,
                timeout_ms,
                connect_timeout_ms,
            },
            format: cfg.format,
            otlp: match cfg.format {
                Format::OtlpJson | Format::OtlpProto => {
                    Some(std::sync::Arc::new(otlp::Encoder::new(
                        cfg.format == Format::OtlpProto,
                        &source,
                        &cfg.otlp_resource_attributes(),
                    )))
                }
                Format::Json | Format::Ndjson => None,
            },
            compression: cfg.http_compression,
            source_json: body::source_json(&source),
            source_header,
            headers,
            pooled: false,
            resends: 0,
        })
    }

    /// Replaces the source (tests only: `source.id` comes from the config otherwise).
    #[cfg(test)]
    fn set_source(&mut self, source: &str) {
        self.source_json = body::source_json(source);
        self.source_header = HeaderValue::from_str(source).expect("printable source");
    }

    /// The endpoint without userinfo, query or fragment, as used in details.
    pub fn endpoint(&self) -> &str {
        &self.classifier.endpoint
    }

    /// How many times a request that failed on a reused keep-alive connection was sent again on
    /// a new one (those first failures are not reported).
    pub fn resends(&self) -> u64 {
        self.resends
    }

    /// How batches are planned for this sender's format.
    pub fn costing(&self) -> Costing {
        match &self.otlp {
            Some(enc) => Costing::otlp(std::sync::Arc::clone(enc)),
            None => Costing::Envelope {
                source_json_len: self.source_json.len(),
            },
        }
    }

    /// The request body before compression (see `body::encode` and `otlp::Encoder`): in OTLP,
    /// from the records' `pieces` when they hold them.
    fn encode_body(&self, records: &[RecordRef], pieces: Option<&Pieces>) -> Vec<u8> {
        match &self.otlp {
            Some(enc) => match pieces.and_then(|p| p.run(records)) {
                Some(run) => enc.body(run),
                None => enc.encode(records),
            },
            None => body::encode(self.format, &self.source_json, records),
        }
    }

    /// Encodes and POSTs one batch (the tests' shorthand for [`Sender::encode`] and
    /// [`Sender::post_encoded`]).
    #[cfg(test)]
    pub fn send(&mut self, records: &[RecordRef]) -> Attempt {
        match self.encode(records, None) {
            Ok(request) => self.post_encoded(&request),
            Err(a) => a,
        }
    }

    /// The request of a batch, encoded and compressed, ready for [`Sender::post_encoded`]: its
    /// length is what the request puts on the wire (the delivery worker asks the rate cap and
    /// the budget with it before sending). Err: the attempt it ends as without a request (an
    /// empty batch is `Delivered`; a body that cannot be compressed is `Retry`).
    /// `pieces`: what costing already encoded of the records (OTLP), if anything.
    pub fn encode(
        &self,
        records: &[RecordRef],
        pieces: Option<&Pieces>,
    ) -> std::result::Result<Encoded, Attempt> {
        if records.is_empty() {
            return Err(Attempt::unanswered(
                Outcome::Delivered,
                "an empty batch needs no request".to_string(),
            ));
        }
        let plain = self.encode_body(records, pieces);
        let body = compress(self.compression, plain).map_err(|_| {
            Attempt::not_sent(
                Outcome::Retry,
                "the request body could not be compressed".to_string(),
            )
        })?;
        Ok(Encoded {
            body,
            key: body::idempotency_key(records),
            records: records.len() as u64,
        })
    }

    /// POSTs a request made by [`Sender::encode`] and classifies the answer.
    ///
    /// Headers: `Content-Type` (`application/json`, or `application/x-ndjson`), `User-Agent:
    /// edgebuf/VERSION` (unless `http.header.User-Agent` is configured), `X-Edgebuf-Source`,
    /// `Idempotency-Key`, `Content-Encoding: gzip` or `zstd` when compressing, and the configured
    /// headers. Batches are sized on the uncompressed body (`batch.max_bytes`).
    /// The response body is read up to 64 KiB and discarded, so the connection can be reused; once
    /// the status line and headers have arrived, a body cut short does not change the outcome.
    ///
    /// A request that fails on a reused keep-alive connection before an answer arrives (reset,
    /// broken pipe, end of stream: the server closed the idle connection) is sent again once, at
    /// once, on a new connection, and only the second result is reported ([`Sender::resends`]
    /// counts these). An empty batch sends nothing and is `Delivered` with status 0.
    pub fn post_encoded(&mut self, request: &Encoded) -> Attempt {
        let (body, key) = (&request.body, &request.key);
        let was_pooled = self.pooled;
        let mut posts = 1;
        let first = self.post(body, key);
        let result = match first {
            Err(Failure::Transport(ref e)) if was_pooled && classify::is_stale_connection(e) => {
                // The server closed the idle keep-alive connection as we reused it: drop the
                // pool and send once more on a new connection.
                self.agent = agent::new(&self.agent_config);
                self.resends += 1;
                posts = 2;
                self.post(body, key)
            }
            other => other,
        };
        let partial = match (&result, &self.otlp) {
            (Ok(answer), Some(enc)) if !answer.body.is_empty() => {
                otlp::partial_success(enc.is_proto(), &answer.body)
            }
            _ => None,
        };
        let mut attempt = self.classify(result);
        attempt.count_sent(posts, body.len() as u64);
        if posts == 2 {
            // The first post, on the reused connection, may have reached the endpoint.
            attempt.not_processed = false;
        }
        if attempt.outcome == Outcome::Delivered {
            // The endpoint cannot reject more records than the request held.
            attempt.rejected = partial.map(|r| (r.count.min(request.records), r.message));
        }
        attempt
    }

    /// The attempt an answer or a failure makes; keeps the pool state.
    fn classify(&mut self, result: std::result::Result<Answer, Failure>) -> Attempt {
        match result {
            Ok(answer) => {
                self.pooled = answer.reusable;
                self.classifier.answered(answer)
            }
            Err(failure) => {
                self.pooled = false;
                if let Failure::Panic = failure {
                    // The agent may be in any state: start afresh.
                    self.agent = agent::new(&self.agent_config);
                }
                self.classifier.failed(&failure)
            }
        }
    }

    fn post(&self, body: &[u8], key: &str) -> std::result::Result<Answer, Failure> {
        let mut req = self
            .agent
            .post(self.uri.clone())
            .header(
                ureq::http::header::CONTENT_TYPE,
                HeaderValue::from_static(body::content_type(self.format)),
            )
            .header("x-edgebuf-source", self.source_header.clone())
            .header("idempotency-key", key);
        if let Some(encoding) = content_encoding(self.compression) {
            req = req.header(
                ureq::http::header::CONTENT_ENCODING,
                HeaderValue::from_static(encoding),
            );
        }
        for (name, value) in &self.headers {
            req = req.header(name.clone(), value.clone());
        }
        let otlp = self.otlp.is_some();
        // ureq has `expect`s on paths a bad client key or an unsupported proxy reaches; a panic
        // must not take the worker down.
        let run = catch_unwind(AssertUnwindSafe(
            move || -> std::result::Result<Answer, ureq::Error> {
                let mut resp = req.send(body)?;
                let status = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get(ureq::http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, SystemTime::now()));
                let close = resp
                    .headers()
                    .get_all(ureq::http::header::CONNECTION)
                    .iter()
                    .any(|v| {
                        v.to_str().is_ok_and(|s| {
                            s.split(',').any(|t| t.trim().eq_ignore_ascii_case("close"))
                        })
                    });
                // An OTLP endpoint's 2xx may carry a partialSuccess: keep what was read.
                let keep = otlp && (200..300).contains(&status);
                let (drained, body) = drain(resp.body_mut().as_reader(), keep);
                Ok(Answer {
                    status,
                    retry_after,
                    reusable: drained && !close,
                    body,
                })
            },
        ));
        match run {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => Err(Failure::Transport(e)),
            Err(_) => Err(Failure::Panic),
        }
    }
}

/// Reads up to [`MAX_RESPONSE_BODY`], keeping it when `keep` (else throwing it away); true when
/// the body ended within it. A body cut short or too long is returned as far as it was read.
fn drain(mut reader: impl Read, keep: bool) -> (bool, Vec<u8>) {
    let mut buf = [0u8; 8192];
    let mut total: u64 = 0;
    let mut kept = Vec::new();
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return (true, kept),
            Ok(n) => {
                total += n as u64;
                if total > MAX_RESPONSE_BODY {
                    return (false, kept);
                }
                if keep {
                    kept.extend_from_slice(&buf[..n]);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return (false, kept),
        }
    }
}

/// The `Content-Encoding` of a compressed body (None: sent as it is).
fn content_encoding(c: Compression) -> Option<&'static str> {
    match c {
        Compression::None => None,
        Compression::Gzip => Some("gzip"),
        Compression::Zstd => Some("zstd"),
    }
}

/// The request body: `plain`, compressed as configured.
fn compress(c: Compression, plain: Vec<u8>) -> io::Result<Vec<u8>> {
    match c {
        Compression::None => Ok(plain),
        Compression::Gzip => gzip(&plain),
        Compression::Zstd => zstd(&plain),
    }
}

/// The zstd level of `http.compression=zstd`: 1. Measured by the bench (`EDGEBUF_BENCH_ONLY=
/// compression`) on batches of 500 prediction records as this sender encodes them, against gzip
/// level 6 at 7.25x and 17.5 ms of CPU per MB of body: level 1 compresses them 10.1x in 1.2
/// ms/MB; levels 2 and 3 only 8.9x and 8.8x in the same time (probably their shorter minimum
/// matches, 5 and 4 bytes against 6, are spent on the random hex of the input hashes); level 9
/// 9.7x in 12 ms/MB; level 19 12.5x in 390 ms/MB. A device's CPU is shared with its inference,
/// and a catch-up after an outage compresses the whole backlog at once: the level that is the
/// cheapest on the CPU and, on these records, also the smallest on the link wins. 24 % fewer
/// bytes (level 19) would cost over 300 times the CPU. The release libraries leave out the block
/// compressors of the other levels (scripts/targets.sh).
const ZSTD_LEVEL: i32 = 1;

/// One zstd frame, with the content size in its header. The context is made per batch, not kept
/// in the [`Sender`]: its tables and buffers (570 KiB at this level for a 256 KiB body) would
/// otherwise stay allocated between batches, and making one costs little next to compressing
/// the batch.
fn zstd(plain: &[u8]) -> io::Result<Vec<u8>> {
    zstd::bulk::compress(plain, ZSTD_LEVEL)
}

fn gzip(plain: &[u8]) -> io::Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(plain.len() / 4 + 64),
        flate2::Compression::default(),
    );
    enc.write_all(plain)?;
    enc.finish()
}

/// A header name for a message: printable ASCII only (names are not secret, values are).
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::test_server::{bound_socket, Act, Server};
    use super::*;
    use crate::clock::ClockMark;
    use crate::config::ProxySetting;
    use crate::error::Code;
    use std::time::Instant;

    pub(super) const INSTANCE: &str = "3f9c2a7e1b4d8c60";

    /// A config for tests; the real Config has more fields, all defaulted.
    #[allow(clippy::field_reassign_with_default)]
    pub(super) fn cfg(endpoint: &str) -> Config {
        let mut c = Config::default();
        c.endpoint = Some(endpoint.to_string());
        c.http_proxy = ProxySetting::None;
        c.http_timeout_ms = 5000;
        c.http_connect_timeout_ms = 2000;
        c
    }

    /// A sender whose source is "cam-07" (source.id is not one of the config items used here).
    pub(super) fn sender(c: &Config) -> Sender {
        let mut s = Sender::new(c).expect("sender");
        s.set_source("cam-07");
        s
    }

    pub(super) fn recs(datas: &[&'static str]) -> Vec<RecordRef<'static>> {
        datas
            .iter()
            .enumerate()
            .map(|(i, d)| RecordRef {
                instance: INSTANCE,
                seq: 42 + i as u64,
                ts_ms: 1_764_320_000_123 + i as i64,
                data: d.as_bytes(),
                clock: ClockMark::Valid,
            })
            .collect()
    }

    #[test]
    fn sender_is_send() {
        fn is_send<T: Send>() {}
        is_send::<Sender>();
    }

    #[test]
    fn sends_every_header_and_the_exact_body() {
        let server = Server::receiver();
        let mut c = cfg(&server.url());
        c.http_headers = vec![
            ("X-Api-Key".to_string(), "s3cret-value".to_string()),
            ("X-Tenant".to_string(), "caf\u{e9}".to_string()),
        ];
        let mut s = sender(&c);
        let r = recs(&["{\"z\":1,\"a\":[1, 2]}", "7"]);
        let a = s.send(&r);
        assert_eq!(a.outcome, Outcome::Delivered, "{a:?}");
        assert_eq!(a.http_status, 200);
        assert_eq!(a.retry_after, None);
        assert!(!a.detail.contains("s3cret"));
        let reqs = server.hits();
        assert_eq!(reqs.len(), 1);
        let q = &reqs[0];
        assert_eq!(q.line, "POST /ingest HTTP/1.1");
        assert_eq!(q.header("content-type"), Some("application/json"));
        assert_eq!(q.header("user-agent"), Some(USER_AGENT));
        assert!(USER_AGENT.starts_with("edgebuf/"));
        assert_eq!(q.header("x-edgebuf-source"), Some("cam-07"));
        assert_eq!(
            q.header("idempotency-key"),
            Some("3f9c2a7e1b4d8c60-42-43-2")
        );
        assert_eq!(q.header("x-api-key"), Some("s3cret-value"));
        // Non-ASCII (obs-text) values go out as their UTF-8 bytes.
        assert_eq!(q.header("x-tenant"), Some("caf\u{e9}"));
        assert_eq!(q.header("content-encoding"), None);
        assert_eq!(
            q.header("content-length"),
            Some(s.encode_body(&r, None).len().to_string().as_str())
        );
        assert_eq!(q.body, s.encode_body(&r, None));
    }

    #[test]
    fn ndjson_content_type() {
        let server = Server::receiver();
        let mut c = cfg(&server.url());
        c.format = Format::Ndjson;
        let mut s = sender(&c);
        let r = recs(&["{}", "[]"]);
        assert_eq!(s.send(&r).outcome, Outcome::Delivered);
        let q = &server.hits()[0];
        assert_eq!(q.header("content-type"), Some("application/x-ndjson"));
        assert_eq!(q.body, s.encode_body(&r, None));
    }

    #[test]
    fn reserved_headers_are_never_overridden() {
        let server = Server::receiver();
        let mut c = cfg(&server.url());
        c.http_headers = [
            ("Content-Type", "text/plain"),
            ("X-Edgebuf-Source", "evil"),
            ("idempotency-key", "k"),
            ("Host", "elsewhere"),
            ("Content-Length", "1"),
            ("Transfer-Encoding", "chunked"),
            ("Connection", "close"),
            ("Content-Encoding", "br"),
            ("User-Agent", "my-agent/2"),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
        let mut s = sender(&c);
        let r = recs(&["{}"]);
        assert_eq!(s.send(&r).outcome, Outcome::Delivered);
        let q = &server.hits()[0];
        assert_eq!(q.header("content-type"), Some("application/json"));
        assert_eq!(q.header("x-edgebuf-source"), Some("cam-07"));
        assert_eq!(
            q.header("idempotency-key"),
            Some("3f9c2a7e1b4d8c60-42-42-1")
        );
        assert_eq!(
            q.header("host"),
            Some(format!("127.0.0.1:{}", server.port).as_str())
        );
        assert_eq!(q.header("transfer-encoding"), None);
        assert_eq!(q.header("content-encoding"), None);
        assert_eq!(q.header("connection"), None);
        // User-Agent is not reserved: the configured one replaces ours.
        assert_eq!(q.header("user-agent"), Some("my-agent/2"));
        for h in [
            "content-type",
            "x-edgebuf-source",
            "idempotency-key",
            "host",
            "user-agent",
            "content-length",
        ] {
            assert_eq!(q.header_count(h), 1, "{h}");
        }
        assert_eq!(q.body, s.encode_body(&r, None));
    }

    #[test]
    fn invalid_headers_are_invalid_config_without_the_value() {
        let mut c = cfg("http://127.0.0.1:9/x");
        c.http_headers = vec![("X-Ok".into(), "bad\r\nvalue".into())];
        let e = Sender::new(&c).expect_err("CRLF");
        assert_eq!(e.code(), Code::InvalidConfig);
        assert!(e.message().contains("http.header.X-Ok"), "{e}");
        assert!(!e.message().contains("bad"), "{e}");
        c.http_headers = vec![("Bad Name".into(), "v".into())];
        let e = Sender::new(&c).expect_err("name");
        assert_eq!(e.code(), Code::InvalidConfig);
    }

    #[test]
    fn gzip_body_decodes_and_is_labelled() {
        let server = Server::receiver();
        let mut c = cfg(&server.url());
        c.http_compression = Compression::Gzip;
        let mut s = sender(&c);
        let r = recs(&["{\"a\":1}", "{\"a\":2}", "{\"a\":3}"]);
        assert_eq!(s.send(&r).outcome, Outcome::Delivered);
        let q = &server.hits()[0];
        assert_eq!(q.header("content-encoding"), Some("gzip"));
        assert_eq!(q.header("content-type"), Some("application/json"));
        assert_eq!(
            q.header("content-length"),
            Some(q.body.len().to_string().as_str())
        );
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(&q.body[..])
            .read_to_end(&mut plain)
            .expect("gunzip");
        assert_eq!(plain, s.encode_body(&r, None));
    }

    #[test]
    fn zstd_body_decodes_and_is_labelled() {
        for format in [Format::Json, Format::Ndjson] {
            let server = Server::receiver();
            let mut c = cfg(&server.url());
            c.http_compression = Compression::Zstd;
            c.format = format;
            let mut s = sender(&c);
            let r = recs(&["{\"a\":1}", "{\"a\":2}", "{\"a\":3}"]);
            assert_eq!(s.send(&r).outcome, Outcome::Delivered);
            let q = &server.hits()[0];
            assert_eq!(q.header("content-encoding"), Some("zstd"), "{format:?}");
            assert_eq!(q.header("content-type"), Some(body::content_type(format)));
            assert_eq!(q.header_count("idempotency-key"), 1);
            assert_eq!(
                q.header("content-length"),
                Some(q.body.len().to_string().as_str())
            );
            assert!(
                q.body.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]),
                "a zstd frame"
            );
            let plain = zstd::stream::decode_all(&q.body[..]).expect("zstd");
            assert_eq!(plain, s.encode_body(&r, None), "{format:?}");
            // The frame says its content size (one-shot compression).
            assert_eq!(
                zstd::zstd_safe::get_frame_content_size(&q.body)
                    .ok()
                    .flatten(),
                Some(plain.len() as u64)
            );
        }
    }

    #[test]
    fn classifies_real_answers() {
        let statuses: [(u16, Outcome); 13] = [
            (200, Outcome::Delivered),
            (204, Outcome::Delivered),
            (400, Outcome::Bisect),
            (401, Outcome::Config),
            (404, Outcome::Config),
            (408, Outcome::Retry),
            (413, Outcome::Split),
            (422, Outcome::Bisect),
            (429, Outcome::Retry),
            (500, Outcome::Retry),
            (503, Outcome::Retry),
            (403, Outcome::Config),
            (418, Outcome::Config),
        ];
        let acts = statuses.iter().map(|(s, _)| Act::status(*s)).collect();
        let server = Server::script(acts);
        let mut s = sender(&cfg(&format!("{}?token=abc", server.url())));
        let r = recs(&["{}"]);
        for (status, outcome) in statuses {
            let a = s.send(&r);
            assert_eq!(a.outcome, outcome, "{status}: {a:?}");
            assert_eq!(a.http_status, i32::from(status));
            assert!(a.detail.contains(&status.to_string()), "{a:?}");
            assert!(
                a.detail
                    .contains(&format!("http://127.0.0.1:{}/ingest", server.port)),
                "{a:?}"
            );
            assert!(!a.detail.contains("token"), "{a:?}");
        }
        // Every answer kept the connection alive: one connection, no resend.
        let reqs = server.hits();
        assert_eq!(reqs.len(), statuses.len());
        assert!(reqs.iter().all(|q| q.conn == 1));
        assert!(reqs
            .iter()
            .all(|q| q.line == "POST /ingest?token=abc HTTP/1.1"));
        assert_eq!(s.resends(), 0);
    }

    #[test]
    fn redirect_is_not_followed() {
        let server = Server::script(vec![
            Act::status(301).with("location", "http://127.0.0.1:9/elsewhere")
        ]);
        let mut s = sender(&cfg(&server.url()));
        let a = s.send(&recs(&["{}"]));
        assert_eq!(a.outcome, Outcome::Config, "{a:?}");
        assert_eq!(a.http_status, 301);
        assert!(a.detail.contains("redirect"), "{a:?}");
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(server.count(), 1);
    }

    #[test]
    fn retry_after_seconds_and_date() {
        let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        let server = Server::script(vec![
            Act::status(429).with("retry-after", "7"),
            Act::status(503).with("retry-after", &date),
            Act::status(503).with("retry-after", "soon"),
            Act::status(503).with("retry-after", "86400"),
        ]);
        let mut s = sender(&cfg(&server.url()));
        let r = recs(&["{}"]);
        let a = s.send(&r);
        assert_eq!((a.outcome, a.http_status), (Outcome::Retry, 429));
        assert_eq!(a.retry_after, Some(Duration::from_secs(7)));
        let a = s.send(&r);
        assert_eq!((a.outcome, a.http_status), (Outcome::Retry, 503));
        let ra = a.retry_after.expect("date parsed");
        assert!(
            ra <= Duration::from_secs(30) && ra >= Duration::from_secs(27),
            "{ra:?}"
        );
        let a = s.send(&r);
        assert_eq!(a.retry_after, None);
        // Not capped here: the worker caps with retry::cap.
        let a = s.send(&r);
        assert_eq!(a.retry_after, Some(Duration::from_secs(86400)));
    }

    #[test]
    fn refused_connection_is_retry() {
        // Bound, never listening: refused, and no other test can take the port meanwhile.
        let (_held, port) = bound_socket(0, false);
        let mut s = sender(&cfg(&format!("http://user:pw@127.0.0.1:{port}/x?q=1")));
        let a = s.send(&recs(&["{}"]));
        assert_eq!(a.outcome, Outcome::Retry, "{a:?}");
        assert_eq!(a.http_status, 0);
        assert!(a.detail.contains("refused"), "{a:?}");
        assert!(
            !a.detail.contains("pw") && !a.detail.contains("q=1"),
            "{a:?}"
        );
    }

    #[test]
    fn unresolvable_host_is_retry() {
        let mut s = sender(&cfg("http://edgebuf-test.invalid/x"));
        let a = s.send(&recs(&["{}"]));
        assert_eq!(a.outcome, Outcome::Retry, "{a:?}");
        assert_eq!(a.http_status, 0);
    }

    #[test]
    fn silent_server_is_timeout() {
        let server = Server::start(|_| Act::Hang);
        let mut c = cfg(&server.url());
        c.http_timeout_ms = 300;
        let mut s = sender(&c);
        let t = Instant::now();
        let a = s.send(&recs(&["{}"]));
        assert_eq!(a.outcome, Outcome::Timeout, "{a:?}");
        assert_eq!(a.http_status, 0);
        assert!(a.detail.contains("http.timeout_ms"), "{a:?}");
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(250) && took < Duration::from_secs(3),
            "{took:?}"
        );
        assert_eq!(s.resends(), 0);
    }

    #[test]
    fn close_mid_response_is_retry() {
        let server = Server::script(vec![Act::Raw(b"HTTP/1.1 200 OK\r\ncontent-le".to_vec())]);
        let mut s = sender(&cfg(&server.url()));
        let a = s.send(&recs(&["{}"]));
        assert_eq!(a.outcome, Outcome::Retry, "{a:?}");
        assert_eq!(a.http_status, 0);
        assert_eq!(s.resends(), 0);
    }

    #[test]
    fn close_without_answer_on_a_new_connection_is_retry() {
        let server = Server::script(vec![Act::Close, Act::Close]);
        let mut s = sender(&cfg(&server.url()));
        let a = s.send(&recs(&["{}"]));
        assert_eq!(a.outcome, Outcome::Retry, "{a:?}");
        assert!(
            a.detail.contains("closed") || a.detail.contains("reset"),
            "{a:?}"
        );
        assert_eq!(s.resends(), 0);
    }

    #[test]
    fn truncated_body_after_a_2xx_is_still_delivered() {
        // The status line and headers arrived: the endpoint accepted the batch.
        let server = Server::script(vec![Act::Raw(
            b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{\"ok\"".to_vec(),
        )]);
        let mut s = sender(&cfg(&server.url()));
        let a = s.send(&recs(&["{}"]));
        assert_eq!(
            (a.outcome, a.http_status),
            (Outcome::Delivered, 200),
            "{a:?}"
        );
    }

    #[test]
    fn large_response_body_is_discarded() {
        let body = vec![b'x'; 200 * 1024];
        let mut resp =
            format!("HTTP/1.1 500 X\r\ncontent-length: {}\r\n\r\n", body.len()).into_bytes();
        resp.extend_from_slice(&body);
        let server = Server::script(vec![Act::Raw(resp)]);
        let mut s = sender(&cfg(&server.url()));
        let a = s.send(&recs(&["{}"]));
        assert_eq!((a.outcome, a.http_status), (Outcome::Retry, 500), "{a:?}");
        // The connection was not reusable; the next request opens a new one and works.
        let a = s.send(&recs(&["{}"]));
        assert_eq!(a.outcome, Outcome::Delivered, "{a:?}");
        assert_eq!(s.resends(), 0);
    }

    #[test]
    fn keepalive_closed_while_idle_is_sent_on_a_new_connection() {
        // The server answers, keeps the connection alive, then closes it while idle.
        let server = Server::script(vec![
            Act::ReplyThenCloseAfter(200, Duration::from_millis(50)),
            Act::status(200),
        ]);
        let mut s = sender(&cfg(&server.url()));
        let r = recs(&["{}"]);
        assert_eq!(s.send(&r).outcome, Outcome::Delivered);
        std::thread::sleep(Duration::from_millis(300));
        let a = s.send(&r);
        assert_eq!(a.outcome, Outcome::Delivered, "{a:?}");
        let reqs = server.hits();
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[1].conn, 2);
        // ureq notices a closed idle connection before reusing it, or we resend once.
        assert!(s.resends() <= 1);
    }

    #[test]
    fn keepalive_race_is_resent_once_and_not_reported() {
        // The server closes the reused connection as the request arrives (its idle timeout
        // fired at the same moment): the request is sent again at once on a new connection.
        let server = Server::script(vec![Act::status(200), Act::Close, Act::status(200)]);
        let mut s = sender(&cfg(&server.url()));
        let r = recs(&["{\"n\":1}", "{\"n\":2}"]);
        assert_eq!(s.send(&r).outcome, Outcome::Delivered);
        let a = s.send(&r);
        assert_eq!(
            (a.outcome, a.http_status),
            (Outcome::Delivered, 200),
            "{a:?}"
        );
        assert_eq!(s.resends(), 1);
        let reqs = server.hits();
        assert_eq!(reqs.len(), 3);
        assert_eq!(reqs.iter().map(|q| q.conn).collect::<Vec<_>>(), [1, 1, 2]);
        assert_eq!(reqs[1].body, reqs[2].body);
        assert_eq!(
            reqs[1].header("idempotency-key"),
            reqs[2].header("idempotency-key")
        );
    }

    #[test]
    fn keepalive_reset_is_resent_once_and_not_reported() {
        let server = Server::script(vec![Act::status(200), Act::Reset, Act::status(202)]);
        let mut s = sender(&cfg(&server.url()));
        let r = recs(&["{}"]);
        assert_eq!(s.send(&r).outcome, Outcome::Delivered);
        let a = s.send(&r);
        assert_eq!(
            (a.outcome, a.http_status),
            (Outcome::Delivered, 202),
            "{a:?}"
        );
        assert_eq!(s.resends(), 1);
        // The reset request is recorded too (status 0), as every request the server read.
        let reqs = server.hits();
        assert_eq!(
            reqs.iter().map(|q| (q.conn, q.status)).collect::<Vec<_>>(),
            [(1, 200), (1, 0), (2, 202)]
        );
    }

    #[test]
    fn keepalive_resend_happens_only_once() {
        let server = Server::script(vec![Act::status(200), Act::Close, Act::Close]);
        let mut s = sender(&cfg(&server.url()));
        let r = recs(&["{}"]);
        assert_eq!(s.send(&r).outcome, Outcome::Delivered);
        let a = s.send(&r);
        assert_eq!(a.outcome, Outcome::Retry, "{a:?}");
        assert_eq!(s.resends(), 1);
        // The failure left nothing pooled: the next failure on a new connection is reported.
        let a = s.send(&r);
        assert_eq!(a.outcome, Outcome::Delivered, "{a:?}");
        assert_eq!(s.resends(), 1);
        assert_eq!(server.count(), 4);
    }

    #[test]
    fn connection_close_answer_is_not_treated_as_pooled() {
        let server = Server::script(vec![
            Act::Raw(
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok".to_vec(),
            ),
            Act::Close,
        ]);
        let mut s = sender(&cfg(&server.url()));
        let r = recs(&["{}"]);
        assert_eq!(s.send(&r).outcome, Outcome::Delivered);
        let a = s.send(&r);
        assert_eq!(a.outcome, Outcome::Retry, "{a:?}");
        assert_eq!(s.resends(), 0);
    }

    #[test]
    fn explicit_http_proxy_is_used() {
        // An HTTP proxy gets a CONNECT for the endpoint; this one refuses it.
        let proxy = Server::script(vec![Act::ReplyThenCloseAfter(403, Duration::ZERO)]);
        let mut c = cfg("http://edgebuf-test.invalid:8080/ingest");
        c.http_proxy = ProxySetting::Url(format!("http://127.0.0.1:{}", proxy.port));
        let mut s = sender(&c);
        let a = s.send(&recs(&["{}"]));
        assert_ne!(a.outcome, Outcome::Delivered, "{a:?}");
        let reqs = proxy.hits();
        assert_eq!(reqs.len(), 1, "{reqs:?}");
        assert!(
            reqs[0].line.contains("edgebuf-test.invalid:8080"),
            "{reqs:?}"
        );
    }

    /// A proxy that refuses the tunnel: 407 (and 403) are configuration problems, retried at
    /// retry.max_ms, with the proxy's status; 502 and 503 are outages, retried with backoff.
    #[test]
    fn a_proxy_refusing_the_tunnel_is_classified_by_its_status() {
        for (status, want) in [
            (407, Outcome::Config),
            (403, Outcome::Config),
            (400, Outcome::Config),
            (502, Outcome::Retry),
            (503, Outcome::Retry),
        ] {
            let proxy = Server::script(vec![Act::ReplyThenCloseAfter(status, Duration::ZERO)]);
            let mut c = cfg("http://edgebuf-test.invalid:8080/ingest");
            c.http_proxy = ProxySetting::Url(format!("http://127.0.0.1:{}", proxy.port));
            let mut s = sender(&c);
            let a = s.send(&recs(&["{}"]));
            assert_eq!(a.outcome, want, "{status}: {a:?}");
            assert_eq!(a.http_status, i32::from(status), "{a:?}");
            assert!(a.detail.contains("proxy"), "{a:?}");
        }
    }

    #[test]
    fn socks_proxy_never_panics_the_caller() {
        // Works with ureq's `socks-proxy` feature (refused: Retry); without it ureq panics
        // inside, which send() turns into a Config outcome.
        // Bound, never listening: refused, and no other test can take the port meanwhile.
        let (_held, port) = bound_socket(0, false);
        let mut c = cfg("http://127.0.0.1:9/x");
        c.http_proxy = ProxySetting::Url(format!("socks5://127.0.0.1:{port}"));
        let mut s = sender(&c);
        let a = s.send(&recs(&["{}"]));
        assert!(
            matches!(a.outcome, Outcome::Retry | Outcome::Config),
            "{a:?}"
        );
        assert_eq!(a.http_status, 0);
        // And the sender still works afterwards.
        let a = s.send(&recs(&["{}"]));
        assert_ne!(a.outcome, Outcome::Delivered, "{a:?}");
    }
    #[test]
    fn endpoint_errors() {
        let mut c = cfg("");
        c.endpoint = None;
        assert_eq!(
            Sender::new(&c).expect_err("none").code(),
            Code::InvalidConfig
        );
        for bad in ["", "not a url", "ftp://host/x", "/just/a/path"] {
            let e = Sender::new(&cfg(bad)).expect_err(bad);
            assert_eq!(e.code(), Code::InvalidConfig, "{bad}");
            assert!(e.message().contains("endpoint"), "{e}");
        }
    }

    #[test]
    fn empty_batch_sends_nothing() {
        let mut s = sender(&cfg("http://127.0.0.1:9/x"));
        let a = s.send(&[]);
        assert_eq!((a.outcome, a.http_status), (Outcome::Delivered, 0));
    }

    // -----------------------------------------------------------------------------------------
    // Property tests of the wire contract (moved from tests/props.rs, which reaches the crate
    // only through its public API).

    fn check<T: std::fmt::Debug>(
        cases: u32,
        strategy: impl proptest::strategy::Strategy<Value = T>,
        test: impl Fn(T) -> std::result::Result<(), proptest::test_runner::TestCaseError>,
    ) {
        let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
            cases,
            max_shrink_iters: 200,
            failure_persistence: None,
            ..proptest::test_runner::Config::default()
        });
        if let Err(e) = runner.run(&strategy, test) {
            panic!("{e}");
        }
    }

    /// A marker that must never show in a detail.
    const MARK: &str = "QzxVv";

    /// Headers accepted by `set` are accepted at open and reach the endpoint with their value
    /// (surrounding whitespace aside, as HTTP reads it), next to edgebuf's own headers.
    #[test]
    fn configured_headers_reach_the_endpoint() {
        use proptest::prelude::*;
        let srv = Server::receiver();
        let header = (
            "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,20}",
            "[\t -~\u{80}-\u{7FF}]{0,30}[!-~]",
        );
        let strategy = (prop::collection::vec(header, 1..12), "[ -~]{1,40}");
        let n = std::cell::Cell::new(0usize);
        check(128, strategy, |(headers, source)| {
            let mut c = Config::new();
            c.set("endpoint", &srv.url()).expect("endpoint");
            c.set("http.proxy", "none").expect("proxy");
            c.set("source.id", &source).expect("source");
            let mut want: Vec<(String, String)> = Vec::new();
            for (name, value) in headers {
                let lower = name.to_ascii_lowercase();
                if is_reserved_header(&name) || want.iter().any(|(w, _)| *w == lower) {
                    continue;
                }
                c.set(&format!("http.header.{name}"), &value)
                    .expect("header");
                want.push((lower, value));
            }
            let mut sender =
                Sender::new(&c).map_err(|e| TestCaseError::fail(format!("open: {e}")))?;
            let a = sender.send(&[RecordRef {
                instance: "0123456789abcdef",
                seq: 7,
                ts_ms: 1,
                data: b"{}",
                clock: crate::clock::ClockMark::Valid,
            }]);
            prop_assert_eq!(a.outcome, Outcome::Delivered, "{:?}", a);
            let hit = srv.hits()[n.get()].clone();
            n.set(n.get() + 1);
            for (name, value) in &want {
                prop_assert_eq!(hit.header(name), Some(value.trim()), "{}", name);
            }
            // source.id is sent trimmed (all spaces: the host name instead).
            if !source.trim().is_empty() {
                prop_assert_eq!(hit.header("x-edgebuf-source"), Some(source.trim()));
            }
            prop_assert_eq!(hit.header("content-type"), Some("application/json"));
            prop_assert_eq!(
                hit.header("idempotency-key"),
                Some("0123456789abcdef-7-7-1")
            );
            if !want.iter().any(|(w, _)| w == "user-agent") {
                prop_assert_eq!(hit.header("user-agent"), Some(USER_AGENT));
            }
            Ok(())
        });
    }

    /// Bug 4 (fixed): `set` checked URL syntax more loosely than open does, so some endpoints
    /// and proxies that `set` accepted failed only at open, e.g. endpoint `http://%`,
    /// `http://h%zz/`, `http://h/<a>`, ``http://h/a`b``, proxy `http://[@!`, `http://h/<`, and
    /// (found later, by CI) proxy `http://%aA@A#`, whose user info does not decode to UTF-8.
    /// `set` now runs the parsers open uses (http::Uri, and ureq's Proxy for proxies).
    #[test]
    fn urls_accepted_by_set_are_accepted_at_open() {
        use proptest::prelude::*;
        let url = "(http|https)://[!-~]{1,20}";
        check(4000, (url, any::<bool>()), |(u, proxy)| {
            let mut c = Config::new();
            c.set("endpoint", "http://127.0.0.1:9/x").expect("endpoint");
            c.set("http.proxy", "none").expect("proxy");
            let key = if proxy { "http.proxy" } else { "endpoint" };
            if c.set(key, &u).is_ok() {
                if let Err(e) = Sender::new(&c) {
                    return Err(TestCaseError::fail(format!(
                        "{key}={u:?}: set OK, open: {e}"
                    )));
                }
            }
            Ok(())
        });
    }

    /// Over a real connection: any final status from 200 to 999, with a Retry-After or none,
    /// gives the class the reference gives, that status, the Retry-After as `retry::parse_retry_after` reads
    /// it (its own properties are tested in tests/props.rs), and a detail without the URL's
    /// secrets.
    #[test]
    fn real_answers_classify_with_their_retry_after() {
        use proptest::prelude::*;
        let retry_after = prop_oneof![
            "[0-9]{1,7}",
            (-100_000i64..200_000).prop_map(|off| {
                let now = SystemTime::now();
                let t = if off >= 0 {
                    now + Duration::from_secs(off as u64)
                } else {
                    now - Duration::from_secs(off.unsigned_abs())
                };
                httpdate::fmt_http_date(t)
            }),
            "[!-~][ -~]{0,28}[!-~]",
        ];
        let strategy = (200u16..=999, prop::option::of(retry_after));
        check(256, strategy, |(code, ra)| {
            let act = match &ra {
                Some(v) => Act::status(code).with("retry-after", v),
                None => Act::status(code),
            };
            let srv = Server::script(vec![act]);
            let mut c = cfg(&format!("{}?token={MARK}", srv.url()));
            c.http_timeout_ms = 3000;
            let mut s = Sender::new(&c).map_err(|e| TestCaseError::fail(format!("{e}")))?;
            let a = s.send(&recs(&["{}"]));
            prop_assert_eq!(
                a.outcome,
                classify::classify_status(code),
                "{} {:?}: {:?}",
                code,
                ra,
                a
            );
            prop_assert_eq!(a.http_status, i32::from(code));
            prop_assert!(!a.detail.contains(MARK), "{}", a.detail);
            let want = ra
                .as_deref()
                .and_then(|v| parse_retry_after(v, SystemTime::now()));
            match (a.retry_after, want) {
                (Some(g), Some(w)) => prop_assert!(
                    g.abs_diff(w) <= Duration::from_secs(1),
                    "{:?}: {:?} vs {:?}",
                    ra,
                    g,
                    w
                ),
                (g, w) => prop_assert_eq!(g, w, "{:?}", ra),
            }
            Ok(())
        });
    }

    /// 1xx: interim answers (100, 102, 103) are followed by the final one, which decides; a
    /// final 101 is a configuration problem.
    #[test]
    fn interim_answers_are_skipped_and_101_is_a_configuration_problem() {
        for (answer, outcome, status) in [
            ("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", Outcome::Delivered, 200),
            ("HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 503 X\r\ncontent-length: 2\r\n\r\nok", Outcome::Retry, 503),
            ("HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 401 X\r\ncontent-length: 2\r\n\r\nok", Outcome::Config, 401),
            ("HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\nconnection: upgrade\r\n\r\n", Outcome::Config, 101),
        ] {
            // Raw: the answer, then the connection is closed once idle for 300 ms.
            let server = Server::script(vec![Act::Raw(answer.as_bytes().to_vec())]);
            let mut c = cfg(&server.url());
            c.http_timeout_ms = 2000;
            let mut s = Sender::new(&c).expect("sender");
            let a = s.send(&recs(&["{}"]));
            assert_eq!(
                (a.outcome, a.http_status),
                (outcome, status),
                "{answer:?}: {a:?}"
            );
        }
    }
}
