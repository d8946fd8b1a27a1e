//! The wire (SPEC section 3): encodes a batch of records into one request body, POSTs it to the
//! endpoint and classifies the answer.
//!
//! One [`Sender`] belongs to the delivery worker; it sends one batch at a time. It never follows
//! redirects, never turns TLS verification off, and never puts header values, URL credentials,
//! query strings or key material into a [`Attempt::detail`] or an error message.
//!
//! ureq uses `std::net::TcpStream`, whose writes pass `MSG_NOSIGNAL` on Linux, so a peer that
//! closes the connection never raises SIGPIPE in the sending thread.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::{Duration, SystemTime};

use ureq::config::Config as AgentConfig;
use ureq::http::{HeaderName, HeaderValue, Uri};
use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};
use ureq::{Agent, Proxy};

use crate::config::{Compression, Config, Format, ProxySetting};
use crate::error::{Error, Result};
use crate::retry::parse_retry_after;

/// The most of a response body that is read (and discarded).
pub const MAX_RESPONSE_BODY: u64 = 64 * 1024;

/// The `User-Agent` sent unless `http.header.User-Agent` overrides it.
pub const USER_AGENT: &str = concat!("edgebuf/", env!("CARGO_PKG_VERSION"));

/// Header names that `http.header.NAME` may not set (SPEC section 2); they are ignored here if
/// they ever get through the config.
pub const RESERVED_HEADERS: [&str; 8] = [
    "host",
    "content-length",
    "transfer-encoding",
    "content-type",
    "content-encoding",
    "connection",
    "idempotency-key",
    "x-edgebuf-source",
];

/// Whether `name` is one of the [`RESERVED_HEADERS`] (ASCII case-insensitive).
pub fn is_reserved_header(name: &str) -> bool {
    RESERVED_HEADERS
        .iter()
        .any(|r| r.eq_ignore_ascii_case(name))
}

/// One record to send, borrowed from the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// The 16 hex digits of the buffer instance (written into the envelope unescaped).
    pub instance: &'a str,
    /// The record's sequence number.
    pub seq: u64,
    /// Wall clock at `edgebuf_log`, in Unix milliseconds.
    pub ts_ms: i64,
    /// The logged JSON value, verbatim.
    pub data: &'a [u8],
}

/// Writes `r`'s envelope without its closing `}`, so that a caller (the CLI's export) can add
/// fields: `{"id":"<instance>-<seq>","seq":<seq>,"ts_ms":<ts>,"source":<source_json>,"data":<data>`.
/// `source_json` is the source id already encoded as a JSON string. `data` is copied verbatim,
/// except that with `one_line` a CR or LF byte (only possible as insignificant whitespace in
/// valid JSON) becomes a space, so that the envelope stays on one line; lengths are unchanged.
pub fn push_envelope_fields(out: &mut Vec<u8>, r: &RecordRef, source_json: &str, one_line: bool) {
    out.extend_from_slice(b"{\"id\":\"");
    out.extend_from_slice(r.instance.as_bytes());
    out.push(b'-');
    push_u64(out, r.seq);
    out.extend_from_slice(b"\",\"seq\":");
    push_u64(out, r.seq);
    out.extend_from_slice(b",\"ts_ms\":");
    push_i64(out, r.ts_ms);
    out.extend_from_slice(b",\"source\":");
    out.extend_from_slice(source_json.as_bytes());
    out.extend_from_slice(b",\"data\":");
    if one_line {
        out.extend(r.data.iter().map(|&b| match b {
            b'\n' | b'\r' => b' ',
            b => b,
        }));
    } else {
        out.extend_from_slice(r.data);
    }
}

/// The fixed bytes of one envelope: `{"id":"` `-` `","seq":` `,"ts_ms":` `,"source":` `,"data":` `}`.
const ENVELOPE_FIXED: usize = 7 + 1 + 8 + 9 + 10 + 8 + 1;

/// Exact byte length of one envelope
/// `{"id":"<instance>-<seq>","seq":<seq>,"ts_ms":<ts_ms>,"source":<source JSON>,"data":<data>}`,
/// where `source_json_len` is the length of the source as a JSON string (quotes included, see
/// [`Sender::source_json`]). Compression is not taken into account.
pub fn envelope_len(
    instance_len: usize,
    seq: u64,
    ts_ms: i64,
    source_json_len: usize,
    data_len: usize,
) -> usize {
    ENVELOPE_FIXED
        + instance_len
        + 2 * dec_len_u64(seq)
        + dec_len_i64(ts_ms)
        + source_json_len
        + data_len
}

/// The bytes one record adds to a request body: its envelope and a separator (`,` or `\n`;
/// the one separator too many pays for `[` and `]`, or is spare).
pub fn envelope_cost(
    instance_len: usize,
    seq: u64,
    ts_ms: i64,
    source_json_len: usize,
    data_len: usize,
) -> u64 {
    envelope_len(instance_len, seq, ts_ms, source_json_len, data_len) as u64 + 1
}

/// Exact byte length of a whole request body (before compression) holding `record_count`
/// envelopes whose [`envelope_len`]s add up to `envelope_bytes`: json adds 2 for `[]` and 1 per
/// comma, ndjson 1 per `\n`.
pub fn body_len(format: Format, record_count: usize, envelope_bytes: usize) -> usize {
    envelope_bytes
        + match format {
            Format::Json => 2 + record_count.saturating_sub(1),
            Format::Ndjson => record_count,
        }
}

/// How the worker must treat the batch after an attempt (SPEC section 3, Responses).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Any 2xx: the batch is settled.
    Delivered,
    /// 408, 429, 5xx, or a transport failure (refused, reset, DNS, TLS, broken): retry after
    /// backoff.
    Retry,
    /// The whole-request timeout (`http.timeout_ms`) or the connect timeout fired.
    Timeout,
    /// 413: split the batch in halves.
    Split,
    /// 400 or 422: bisect the batch.
    Bisect,
    /// 401, 403, 404, 1xx, 3xx (redirects are never followed), any other status, or a request
    /// that cannot be built: a configuration problem.
    Config,
}

/// The result of one [`Sender::send`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// How to treat the batch.
    pub outcome: Outcome,
    /// The HTTP status of the answer; 0 when no answer arrived.
    pub http_status: i32,
    /// The parsed `Retry-After` of the answer (seconds or HTTP-date), not capped.
    pub retry_after: Option<Duration>,
    /// One sentence for messages and events. Never holds header values, URL userinfo or query
    /// strings.
    pub detail: String,
}

/// Classifies an HTTP status code (SPEC section 3).
pub fn classify_status(status: u16) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered,
        408 | 429 | 500..=599 => Outcome::Retry,
        413 => Outcome::Split,
        400 | 422 => Outcome::Bisect,
        _ => Outcome::Config,
    }
}

/// The status a proxy answered a CONNECT with, from ureq's `ConnectProxyFailed` reason
/// ("proxy server responded 407/Proxy Authentication Required"; ureq is pinned to the minor
/// release whose wording this reads). None when the proxy gave no status.
fn proxy_refusal_status(reason: &str) -> Option<u16> {
    let rest = reason.split("responded ").nth(1)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok().filter(|s| (100..=999).contains(s))
}

/// Sends batches to the endpoint. Owned by one thread at a time (it is `Send`).
pub struct Sender {
    agent: Agent,
    agent_config: AgentConfig,
    uri: Uri,
    endpoint: String,
    tls: bool,
    format: Format,
    gzip: bool,
    content_type: HeaderValue,
    source: String,
    source_json: String,
    source_header: HeaderValue,
    headers: Vec<(HeaderName, HeaderValue)>,
    timeout_ms: u64,
    connect_timeout_ms: u64,
    /// The previous request got a complete answer and left its connection in the pool.
    pooled: bool,
    resends: u64,
}

impl fmt::Debug for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("endpoint", &self.endpoint)
            .field("format", &self.format)
            .field("gzip", &self.gzip)
            .field("source", &self.source)
            .field("resends", &self.resends)
            .finish_non_exhaustive()
    }
}

/// An agent whose resolver answers IP-literal hosts itself. ureq's default resolver runs
/// every lookup on a new thread when a timeout applies (always, with `http.timeout_ms`), also
/// for `127.0.0.1`, which costs a thread spawn per request.
fn new_agent(config: &AgentConfig) -> Agent {
    Agent::with_parts(
        config.clone(),
        ureq::unversioned::transport::DefaultConnector::default(),
        LiteralResolver::default(),
    )
}

#[derive(Debug, Default)]
struct LiteralResolver(ureq::unversioned::resolver::DefaultResolver);

impl ureq::unversioned::resolver::Resolver for LiteralResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &AgentConfig,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> std::result::Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let host = uri.host().unwrap_or("");
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let port = uri.port_u16().or(match uri.scheme_str() {
            Some("https") => Some(443),
            Some("http") => Some(80),
            _ => None,
        });
        match (host.parse::<std::net::IpAddr>(), port) {
            (Ok(ip), Some(port)) => {
                let mut v = self.empty();
                v.push(std::net::SocketAddr::new(ip, port));
                Ok(v)
            }
            _ => self.0.resolve(uri, config, timeout),
        }
    }
}

impl Sender {
    /// Builds the sender and its HTTP agent from the configuration.
    ///
    /// The agent has `timeout_global = http.timeout_ms`, `timeout_connect =
    /// http.connect_timeout_ms`, no redirects (a 3xx comes back as an answer), statuses as
    /// answers, the proxy of `http.proxy` (`env` reads `https_proxy`/`HTTPS_PROXY` for an https
    /// endpoint, `http_proxy`/`HTTP_PROXY` for http, then `all_proxy`/`ALL_PROXY`, and honours
    /// `no_proxy`/`NO_PROXY`, as curl does), the built-in WebPKI roots or only the roots of
    /// `tls.ca_file`, and the client certificate of `tls.cert_file` + `tls.key_file`.
    ///
    /// Errors are `Code::InvalidConfig` naming the key: a missing or unusable endpoint, a file
    /// that cannot be read or holds no certificate or key, a client key that does not match its
    /// certificate, an invalid proxy URL or header.
    pub fn new(cfg: &Config) -> Result<Sender> {
        let raw = cfg.endpoint.as_deref().unwrap_or("").trim();
        if raw.is_empty() {
            return Err(Error::invalid_config(
                "endpoint is required: the http:// or https:// URL the batches are POSTed to",
            ));
        }
        let uri: Uri = raw.parse().map_err(|_| {
            Error::invalid_config("endpoint is not a valid URL: expected http:// or https://")
        })?;
        let tls = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("https") => true,
            Some(s) if s.eq_ignore_ascii_case("http") => false,
            _ => {
                return Err(Error::invalid_config(
                    "endpoint must be an http:// or https:// URL",
                ))
            }
        };
        if uri.host().is_none_or(|h| h.is_empty()) {
            return Err(Error::invalid_config("endpoint has no host"));
        }
        let mut endpoint = cfg.endpoint_redacted();
        if endpoint.is_empty() {
            endpoint = "the endpoint".to_string();
        }

        let source = cfg.source_id_or_default();
        let source_header = HeaderValue::from_str(&source)
            .map_err(|_| Error::invalid_config("source.id must be printable ASCII, 1-128 bytes"))?;
        let source_json = serde_json::Value::String(source.clone()).to_string();

        let mut headers = Vec::with_capacity(cfg.http_headers.len());
        for (name, value) in &cfg.http_headers {
            if is_reserved_header(name) {
                continue;
            }
            let hn = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                Error::invalid_config(format!(
                    "http.header.{} does not name a valid header: NAME must be an HTTP token",
                    printable(name)
                ))
            })?;
            let hv = HeaderValue::from_bytes(value.as_bytes()).map_err(|_| {
                Error::invalid_config(format!(
                    "http.header.{}: the value must not contain CR, LF, NUL or other control characters",
                    printable(name)
                ))
            })?;
            headers.push((hn, hv));
        }

        let proxy = match &cfg.http_proxy {
            ProxySetting::None => None,
            ProxySetting::Url(url) => Some(Proxy::new(url).map_err(|_| {
                Error::invalid_config(
                    "http.proxy is not a valid proxy URL: expected env, none, or \
                     http://, https://, socks4://, socks4a://, socks5:// or socks5h:// with a host",
                )
            })?),
            ProxySetting::Env => proxy_from_env(&uri, &|k| std::env::var(k).ok())?,
        };

        let (tls_config, client_cert) = tls_config(cfg)?;
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
            probe_client_cert(&tls_config)?;
        }

        let content_type = HeaderValue::from_static(match cfg.format {
            Format::Json => "application/json",
            Format::Ndjson => "application/x-ndjson",
        });

        Ok(Sender {
            agent: new_agent(&agent_config),
            agent_config,
            uri,
            endpoint,
            tls,
            format: cfg.format,
            gzip: cfg.http_compression == Compression::Gzip,
            content_type,
            source,
            source_json,
            source_header,
            headers,
            timeout_ms,
            connect_timeout_ms,
            pooled: false,
            resends: 0,
        })
    }

    /// The source as a JSON string, quotes included, as it appears in every envelope; its length
    /// is the `source_json_len` of [`envelope_len`].
    pub fn source_json(&self) -> &str {
        &self.source_json
    }

    /// Replaces the source (tests only: `source.id` comes from the config otherwise).
    #[cfg(test)]
    fn set_source(&mut self, source: &str) {
        self.source = source.to_string();
        self.source_json = serde_json::Value::String(self.source.clone()).to_string();
        self.source_header = HeaderValue::from_str(source).expect("printable source");
    }

    /// The body format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The endpoint without userinfo, query or fragment, as used in details.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The [`envelope_len`] of one record with this sender's source.
    pub fn record_len(&self, r: &RecordRef) -> usize {
        envelope_len(
            r.instance.len(),
            r.seq,
            r.ts_ms,
            self.source_json.len(),
            r.data.len(),
        )
    }

    /// How many times a request that failed on a reused keep-alive connection was sent again on
    /// a new one (those first failures are not reported).
    pub fn resends(&self) -> u64 {
        self.resends
    }

    /// The body before compression: json is one JSON array of envelopes; ndjson is one envelope
    /// per line, each ending in `\n`. `data` is copied verbatim, except that in ndjson a CR or LF
    /// byte of the data (only possible as insignificant whitespace in valid JSON) travels as a
    /// space so that every envelope stays on one line; lengths are unchanged.
    pub fn encode_body(&self, records: &[RecordRef]) -> Vec<u8> {
        let total = records.iter().map(|r| self.record_len(r)).sum();
        let mut out = Vec::with_capacity(body_len(self.format, records.len(), total));
        match self.format {
            Format::Json => {
                out.push(b'[');
                for (i, r) in records.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    self.push_envelope(&mut out, r);
                }
                out.push(b']');
            }
            Format::Ndjson => {
                for r in records {
                    self.push_envelope(&mut out, r);
                    out.push(b'\n');
                }
            }
        }
        out
    }

    fn push_envelope(&self, out: &mut Vec<u8>, r: &RecordRef) {
        push_envelope_fields(out, r, &self.source_json, self.format == Format::Ndjson);
        out.push(b'}');
    }

    /// `<instance of first record>-<first seq>-<last seq>-<record count>`; "" for no records.
    pub fn idempotency_key(records: &[RecordRef]) -> String {
        match (records.first(), records.last()) {
            (Some(first), Some(last)) => format!(
                "{}-{}-{}-{}",
                first.instance,
                first.seq,
                last.seq,
                records.len()
            ),
            _ => String::new(),
        }
    }

    /// POSTs one batch and classifies the answer.
    ///
    /// Headers: `Content-Type` (`application/json`, or `application/x-ndjson`), `User-Agent:
    /// edgebuf/VERSION` (unless `http.header.User-Agent` is configured), `X-Edgebuf-Source`,
    /// `Idempotency-Key`, `Content-Encoding: gzip` when compressing, and the configured headers.
    /// The response body is read up to 64 KiB and discarded, so the connection can be reused; once
    /// the status line and headers have arrived, a body cut short does not change the outcome.
    ///
    /// A request that fails on a reused keep-alive connection before an answer arrives (reset,
    /// broken pipe, end of stream: the server closed the idle connection) is sent again once, at
    /// once, on a new connection, and only the second result is reported ([`Sender::resends`]
    /// counts these). An empty batch sends nothing and is `Delivered` with status 0.
    pub fn send(&mut self, records: &[RecordRef]) -> Attempt {
        if records.is_empty() {
            return Attempt {
                outcome: Outcome::Delivered,
                http_status: 0,
                retry_after: None,
                detail: "an empty batch needs no request".to_string(),
            };
        }
        let plain = self.encode_body(records);
        let body = if self.gzip {
            match gzip(&plain) {
                Ok(b) => b,
                Err(_) => {
                    return Attempt {
                        outcome: Outcome::Retry,
                        http_status: 0,
                        retry_after: None,
                        detail: "the request body could not be compressed".to_string(),
                    }
                }
            }
        } else {
            plain
        };
        let key = Sender::idempotency_key(records);

        let was_pooled = self.pooled;
        let first = self.post(&body, &key);
        let result = match first {
            Err(Failure::Transport(ref e)) if was_pooled && is_stale_connection(e) => {
                // The server closed the idle keep-alive connection as we reused it: drop the
                // pool and send once more on a new connection.
                self.agent = new_agent(&self.agent_config);
                self.resends += 1;
                self.post(&body, &key)
            }
            other => other,
        };
        match result {
            Ok(answer) => {
                self.pooled = answer.reusable;
                self.attempt_for(answer)
            }
            Err(failure) => {
                self.pooled = false;
                self.attempt_for_failure(failure)
            }
        }
    }

    fn post(&self, body: &[u8], key: &str) -> std::result::Result<Answer, Failure> {
        let mut req = self
            .agent
            .post(self.uri.clone())
            .header(ureq::http::header::CONTENT_TYPE, self.content_type.clone())
            .header("x-edgebuf-source", self.source_header.clone())
            .header("idempotency-key", key);
        if self.gzip {
            req = req.header(
                ureq::http::header::CONTENT_ENCODING,
                HeaderValue::from_static("gzip"),
            );
        }
        for (name, value) in &self.headers {
            req = req.header(name.clone(), value.clone());
        }
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
                let drained = drain(resp.body_mut().as_reader());
                Ok(Answer {
                    status,
                    retry_after,
                    reusable: drained && !close,
                })
            },
        ));
        match run {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => Err(Failure::Transport(e)),
            Err(_) => Err(Failure::Panic),
        }
    }

    fn attempt_for(&self, a: Answer) -> Attempt {
        let outcome = classify_status(a.status);
        let ep = &self.endpoint;
        let s = a.status;
        let detail = match outcome {
            Outcome::Delivered => format!("endpoint {ep} accepted the batch with {s}"),
            Outcome::Split => format!("endpoint {ep} answered {s}: the batch is too large"),
            Outcome::Bisect => format!("endpoint {ep} answered {s}: it rejected the batch"),
            Outcome::Config => match s {
                300..=399 => {
                    format!("endpoint {ep} answered {s}, a redirect, which is not followed")
                }
                401 | 403 => format!("endpoint {ep} answered {s}: check the credentials"),
                404 => format!("endpoint {ep} answered {s}: check the endpoint URL"),
                _ => format!("endpoint {ep} answered {s}"),
            },
            Outcome::Retry | Outcome::Timeout => format!("endpoint {ep} answered {s}"),
        };
        Attempt {
            outcome,
            http_status: i32::from(a.status),
            retry_after: a.retry_after,
            detail,
        }
    }

    fn attempt_for_failure(&mut self, failure: Failure) -> Attempt {
        if let Failure::Transport(ureq::Error::ConnectProxyFailed(reason)) = &failure {
            if let Some(status) = proxy_refusal_status(reason) {
                return self.proxy_refused(status);
            }
        }
        let ep = &self.endpoint;
        let (outcome, detail) = match failure {
            Failure::Panic => {
                // The agent may be in any state: start afresh.
                self.agent = new_agent(&self.agent_config);
                (
                    Outcome::Config,
                    format!(
                        "the request to {ep} could not be made with this TLS client certificate \
                         or proxy setting"
                    ),
                )
            }
            Failure::Transport(e) => self.classify_error(&e),
        };
        Attempt {
            outcome,
            http_status: 0,
            retry_after: None,
            detail,
        }
    }

    /// The proxy answered the CONNECT for the endpoint with `status` (SPEC 3): 407 (its
    /// credentials), 403 and the like are configuration problems, 408, 429 and 5xx outages.
    /// Nothing of the batch reached the endpoint, so a 400 or 413 here says nothing about the
    /// batch: no split, no bisection.
    fn proxy_refused(&self, status: u16) -> Attempt {
        let ep = &self.endpoint;
        let outcome = match classify_status(status) {
            Outcome::Retry => Outcome::Retry,
            _ => Outcome::Config,
        };
        let detail = match status {
            407 => format!(
                "the proxy refused the tunnel to {ep} with 407: check the proxy credentials (http.proxy or HTTPS_PROXY)"
            ),
            _ => format!("the proxy refused the tunnel to {ep} with {status}"),
        };
        Attempt {
            outcome,
            http_status: i32::from(status),
            retry_after: None,
            detail,
        }
    }

    fn classify_error(&self, e: &ureq::Error) -> (Outcome, String) {
        let ep = &self.endpoint;
        let secure = if self.tls { "TLS" } else { "the connection" };
        match e {
            ureq::Error::Timeout(t) => {
                if matches!(t, ureq::Timeout::Connect | ureq::Timeout::Resolve) {
                    (
                        Outcome::Timeout,
                        format!(
                            "could not connect to {ep} within http.connect_timeout_ms ({} ms)",
                            self.connect_timeout_ms
                        ),
                    )
                } else {
                    (
                        Outcome::Timeout,
                        format!(
                            "no complete answer from {ep} within http.timeout_ms ({} ms)",
                            self.timeout_ms
                        ),
                    )
                }
            }
            ureq::Error::Io(io) => match io.kind() {
                io::ErrorKind::ConnectionRefused => {
                    (Outcome::Retry, format!("connection refused by {ep}"))
                }
                io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => (
                    Outcome::Retry,
                    format!("{ep} reset the connection before answering"),
                ),
                io::ErrorKind::BrokenPipe | io::ErrorKind::UnexpectedEof => (
                    Outcome::Retry,
                    format!("{ep} closed the connection before answering"),
                ),
                io::ErrorKind::TimedOut => (
                    Outcome::Timeout,
                    format!(
                        "no complete answer from {ep} within http.timeout_ms ({} ms)",
                        self.timeout_ms
                    ),
                ),
                io::ErrorKind::InvalidData => (
                    Outcome::Retry,
                    // rustls reports certificate and alert failures this way; its message
                    // names the failure, never key material.
                    format!("{secure} with {ep} failed: {}", one_line(&io.to_string())),
                ),
                io::ErrorKind::HostUnreachable
                | io::ErrorKind::NetworkUnreachable
                | io::ErrorKind::NetworkDown
                | io::ErrorKind::AddrNotAvailable => (
                    Outcome::Retry,
                    format!("{ep} is unreachable: {}", one_line(&io.to_string())),
                ),
                _ => (
                    Outcome::Retry,
                    format!(
                        "network error talking to {ep}: {}",
                        one_line(&io.to_string())
                    ),
                ),
            },
            ureq::Error::HostNotFound => (
                Outcome::Retry,
                format!("could not resolve the host of {ep}"),
            ),
            ureq::Error::Tls(msg) => (Outcome::Retry, format!("TLS with {ep} failed: {msg}")),
            ureq::Error::Rustls(r) => (
                Outcome::Retry,
                format!("TLS with {ep} failed: {}", one_line(&r.to_string())),
            ),
            ureq::Error::Protocol(_) | ureq::Error::BodyStalled => {
                (Outcome::Retry, format!("{ep} sent a malformed HTTP answer"))
            }
            ureq::Error::LargeResponseHeader(..) => (
                Outcome::Retry,
                format!("{ep} answered with oversized headers"),
            ),
            ureq::Error::ConnectProxyFailed(_) => (
                Outcome::Retry,
                format!("the proxy could not open a tunnel to {ep}"),
            ),
            ureq::Error::ConnectionFailed => (Outcome::Retry, format!("could not connect to {ep}")),
            ureq::Error::StatusCode(s) => {
                let a = self.attempt_for(Answer {
                    status: *s,
                    retry_after: None,
                    reusable: false,
                });
                (a.outcome, a.detail)
            }
            ureq::Error::Http(_)
            | ureq::Error::BadUri(_)
            | ureq::Error::InvalidProxyUrl
            | ureq::Error::RequireHttpsOnly(_)
            | ureq::Error::TlsRequired
            | ureq::Error::Pem(_) => (
                Outcome::Config,
                format!("the request to {ep} could not be built from the configuration"),
            ),
            _ => (Outcome::Retry, format!("the request to {ep} failed")),
        }
    }
}

/// A complete answer.
struct Answer {
    status: u16,
    retry_after: Option<Duration>,
    /// The body was read to its end and the server did not ask to close: the connection went
    /// back to the pool.
    reusable: bool,
}

enum Failure {
    Transport(ureq::Error),
    Panic,
}

/// A failure that a server closing an idle keep-alive connection produces when the request
/// reuses it: reset, aborted, broken pipe or end of stream before an answer.
fn is_stale_connection(e: &ureq::Error) -> bool {
    matches!(
        e,
        ureq::Error::Io(io) if matches!(
            io.kind(),
            io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::UnexpectedEof
        )
    )
}

/// Reads up to [`MAX_RESPONSE_BODY`] and throws it away; true when the body ended within it.
fn drain(mut reader: impl Read) -> bool {
    let mut buf = [0u8; 8192];
    let mut total: u64 = 0;
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => {
                total += n as u64;
                if total > MAX_RESPONSE_BODY {
                    return false;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

fn gzip(plain: &[u8]) -> io::Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(plain.len() / 4 + 64),
        flate2::Compression::default(),
    );
    enc.write_all(plain)?;
    enc.finish()
}

fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// A header name for a message: printable ASCII only (names are not secret, values are).
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}

fn dec_len_u64(v: u64) -> usize {
    if v == 0 {
        1
    } else {
        v.ilog10() as usize + 1
    }
}

fn dec_len_i64(v: i64) -> usize {
    dec_len_u64(v.unsigned_abs()) + usize::from(v < 0)
}

fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

fn push_i64(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    push_u64(out, v.unsigned_abs());
}

// ---------------------------------------------------------------------------------------------
// Proxy from the environment, as curl reads it.

/// The proxy `http.proxy=env` selects for `uri`, reading variables through `get`: for https
/// `https_proxy`, `HTTPS_PROXY`; for http `http_proxy`, `HTTP_PROXY`; then `all_proxy`,
/// `ALL_PROXY` (lower case first, empty means unset). `no_proxy`/`NO_PROXY` exempts hosts.
fn proxy_from_env(uri: &Uri, get: &dyn Fn(&str) -> Option<String>) -> Result<Option<Proxy>> {
    let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
    let host = uri.host().unwrap_or("");
    if let Some(list) = get("no_proxy").or_else(|| get("NO_PROXY")) {
        if no_proxy_matches(&list, host) {
            return Ok(None);
        }
    }
    let https = uri
        .scheme_str()
        .is_some_and(|s| s.eq_ignore_ascii_case("https"));
    let names: [&str; 4] = if https {
        ["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"]
    } else {
        ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"]
    };
    for name in names {
        if let Some(value) = get(name) {
            return Proxy::new(value.trim()).map(Some).map_err(|_| {
                Error::invalid_config(format!(
                    "http.proxy is env and the environment variable {name} is not a valid proxy URL"
                ))
            });
        }
    }
    Ok(None)
}

/// curl's `NO_PROXY` rules: entries separated by commas or spaces; `*` alone matches every
/// host; a name matches itself and its subdomains (a leading dot is ignored); an IP address
/// matches itself, or a range given as `addr/bits`. Case-insensitive.
fn no_proxy_matches(list: &str, host: &str) -> bool {
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let host_ip: Option<IpAddr> = host.parse().ok();
    for entry in list.split([',', ' ', '\t']).filter(|e| !e.is_empty()) {
        if entry == "*" {
            return true;
        }
        let entry = entry.to_ascii_lowercase();
        if let Some(ip) = host_ip {
            let (addr, bits) = match entry.split_once('/') {
                Some((a, b)) => (a, b.parse::<u32>().ok()),
                None => (entry.as_str(), None),
            };
            let addr = addr.trim_start_matches('[').trim_end_matches(']');
            if let Ok(net) = addr.parse::<IpAddr>() {
                if ip_in(ip, net, bits) {
                    return true;
                }
            }
            continue;
        }
        let name = entry.trim_start_matches('.').trim_end_matches('.');
        if name.is_empty() {
            continue;
        }
        if host == name
            || (host.len() > name.len()
                && host.ends_with(name)
                && host.as_bytes()[host.len() - name.len() - 1] == b'.')
        {
            return true;
        }
    }
    false
}

fn ip_in(ip: IpAddr, net: IpAddr, bits: Option<u32>) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let bits = bits.unwrap_or(32).min(32);
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let bits = bits.unwrap_or(128).min(128);
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// TLS.

/// The TLS configuration; the bool says whether a client certificate is set.
fn tls_config(cfg: &Config) -> Result<(TlsConfig, bool)> {
    let mut builder = TlsConfig::builder();
    if let Some(path) = &cfg.tls_ca_file {
        let pem = read_file(path, "tls.ca_file")?;
        let certs = pem_certificates(&pem, "tls.ca_file")?;
        builder = builder.root_certs(RootCerts::new_with_certs(&certs));
    }
    let client = match (&cfg.tls_cert_file, &cfg.tls_key_file) {
        (None, None) => false,
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
        (Some(cert), Some(key)) => {
            let chain = pem_certificates(&read_file(cert, "tls.cert_file")?, "tls.cert_file")?;
            let key = pem_private_key(&read_file(key, "tls.key_file")?)?;
            builder = builder.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
            true
        }
    };
    Ok((builder.build(), client))
}

fn read_file(path: &Path, key: &str) -> Result<Vec<u8>> {
    std::fs::read(path)
        .map_err(|e| Error::invalid_config(format!("{key} names a file that cannot be read: {e}")))
}

fn pem_certificates(pem: &[u8], key: &str) -> Result<Vec<Certificate<'static>>> {
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        match item {
            Ok(PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(_) => {
                return Err(Error::invalid_config(format!(
                    "{key} is not a valid PEM file"
                )))
            }
        }
    }
    if certs.is_empty() {
        return Err(Error::invalid_config(format!(
            "{key} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        )));
    }
    Ok(certs)
}

fn pem_private_key(pem: &[u8]) -> Result<PrivateKey<'static>> {
    for item in ureq::tls::parse_pem(pem) {
        match item {
            Ok(PemItem::PrivateKey(k)) => return Ok(k),
            Ok(_) => {}
            Err(_) => {
                return Err(Error::invalid_config(
                    "tls.key_file is not a valid PEM file",
                ))
            }
        }
    }
    Err(Error::invalid_config(
        "tls.key_file holds no unencrypted PEM private key (PKCS#8, PKCS#1 or SEC1)",
    ))
}

/// ureq builds its rustls configuration lazily, at the first TLS connection, and panics there if
/// the client key does not match the certificate or has an unsupported type. Make it do so now,
/// against a throwaway listener on the loopback interface, so that the problem is an
/// InvalidConfig at open rather than a failure on every request.
fn probe_client_cert(tls: &TlsConfig) -> Result<()> {
    let Ok(listener) = TcpListener::bind(("127.0.0.1", 0)) else {
        return Ok(()); // no loopback: the guard in send() still covers it
    };
    let Ok(addr) = listener.local_addr() else {
        return Ok(());
    };
    let server = std::thread::Builder::new()
        .name("edgebuf-tls-probe".into())
        .spawn(move || {
            // Accept one connection and close it at once.
            let _ = listener.accept();
        });
    let Ok(server) = server else {
        return Ok(());
    };
    let agent = Agent::config_builder()
        .proxy(None)
        .tls_config(tls.clone())
        .timeout_global(Some(Duration::from_secs(2)))
        .http_status_as_error(false)
        .build()
        .new_agent();
    let url = format!("https://{addr}/");
    let outcome = catch_unwind(AssertUnwindSafe(|| agent.get(&url).call().map(|_| ())));
    if !server.is_finished() {
        // The probe never connected: wake the accept so the thread ends.
        let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
    }
    let _ = server.join();
    match outcome {
        Err(_) => Err(Error::invalid_config(
            "tls.cert_file and tls.key_file cannot be used together: the key does not match \
             the certificate or its type is not supported",
        )),
        Ok(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Code;
    use std::collections::VecDeque;
    use std::io::{BufRead, BufReader};
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::thread::JoinHandle;
    use std::time::Instant;

    // -----------------------------------------------------------------------------------------
    // A small HTTP/1.1 server on 127.0.0.1 that follows a script, one connection at a time.

    /// One request as the server saw it.
    #[derive(Clone, Debug)]
    struct Req {
        conn: usize,
        line: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Req {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
        fn header_count(&self, name: &str) -> usize {
            self.headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .count()
        }
    }

    /// What the server does with one request.
    enum Act {
        /// Write these bytes and keep the connection open.
        Send(Vec<u8>),
        /// Write these bytes, keep the connection idle for this long, then close it.
        SendThenCloseAfter(Vec<u8>, Duration),
        /// Write these bytes (maybe a partial answer) and close.
        SendAndClose(Vec<u8>),
        /// Close without answering.
        Close,
        /// Never answer (until the server stops).
        Hang,
        /// Close the connection with the next request unread, so that it is reset.
        Reset,
    }

    fn response(status: u16, extra: &str) -> Vec<u8> {
        let body = "{\"ok\":true}";
        format!(
            "HTTP/1.1 {status} X\r\ncontent-length: {}\r\n{extra}\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    struct Server {
        addr: SocketAddr,
        stop: Arc<AtomicBool>,
        reqs: Arc<Mutex<Vec<Req>>>,
        thread: Option<JoinHandle<()>>,
    }

    impl Server {
        /// Serves requests in order with `acts`; a request beyond the script gets a 200.
        fn start(acts: Vec<Act>) -> Server {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.set_nonblocking(true).expect("nonblocking");
            let addr = listener.local_addr().expect("addr");
            let stop = Arc::new(AtomicBool::new(false));
            let reqs = Arc::new(Mutex::new(Vec::new()));
            let (stop2, reqs2) = (stop.clone(), reqs.clone());
            let thread = std::thread::spawn(move || {
                let mut acts: VecDeque<Act> = acts.into();
                let deadline = Instant::now() + Duration::from_secs(20);
                let mut conn = 0;
                while !stop2.load(Ordering::SeqCst) && Instant::now() < deadline {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            conn += 1;
                            serve(stream, conn, &mut acts, &stop2, &reqs2, deadline);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            });
            Server {
                addr,
                stop,
                reqs,
                thread: Some(thread),
            }
        }

        fn url(&self) -> String {
            format!("http://{}/ingest", self.addr)
        }

        fn requests(&self) -> Vec<Req> {
            self.reqs.lock().expect("lock").clone()
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    fn serve(
        stream: TcpStream,
        conn: usize,
        acts: &mut VecDeque<Act>,
        stop: &AtomicBool,
        reqs: &Mutex<Vec<Req>>,
        deadline: Instant,
    ) {
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(Duration::from_millis(20)));
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut writer = stream;
        loop {
            if matches!(acts.front(), Some(Act::Reset)) {
                // Wait for the next request to arrive, then close without reading it: the
                // unread data makes the kernel answer with a reset.
                let mut probe = [0u8; 1];
                while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                    match writer.peek(&mut probe) {
                        Ok(_) => break,
                        Err(e)
                            if matches!(
                                e.kind(),
                                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                            ) => {}
                        Err(_) => break,
                    }
                }
                acts.pop_front();
                return;
            }
            let Some(req) = read_request(&mut reader, conn, stop, deadline) else {
                return;
            };
            reqs.lock().expect("lock").push(req);
            match acts
                .pop_front()
                .unwrap_or_else(|| Act::Send(response(200, "")))
            {
                Act::Send(b) => {
                    let _ = writer.write_all(&b);
                }
                Act::SendThenCloseAfter(b, idle) => {
                    let _ = writer.write_all(&b);
                    std::thread::sleep(idle);
                    return;
                }
                Act::SendAndClose(b) => {
                    let _ = writer.write_all(&b);
                    return;
                }
                Act::Close | Act::Reset => return,
                Act::Hang => {
                    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    return;
                }
            }
        }
    }

    /// Reads one request; None when the client closed, the server stops or time runs out.
    fn read_request<R: BufRead>(
        r: &mut R,
        conn: usize,
        stop: &AtomicBool,
        deadline: Instant,
    ) -> Option<Req> {
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            if stop.load(Ordering::SeqCst) || Instant::now() > deadline || head.len() > 65536 {
                return None;
            }
            let mut byte = [0u8; 1];
            match r.read(&mut byte) {
                Ok(0) => return None,
                Ok(_) => head.push(byte[0]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(_) => return None,
            }
        }
        let text = String::from_utf8_lossy(&head).into_owned();
        let mut lines = text.split("\r\n");
        let line = lines.next().unwrap_or("").to_string();
        let headers: Vec<(String, String)> = lines
            .filter(|l| !l.is_empty())
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect();
        let len: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        let mut got = 0;
        while got < len {
            if Instant::now() > deadline {
                return None;
            }
            match r.read(&mut body[got..]) {
                Ok(0) => return None,
                Ok(n) => got += n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(_) => return None,
            }
        }
        Some(Req {
            conn,
            line,
            headers,
            body,
        })
    }

    // -----------------------------------------------------------------------------------------

    const INSTANCE: &str = "3f9c2a7e1b4d8c60";

    /// A config for tests; the real Config has more fields, all defaulted.
    #[allow(clippy::field_reassign_with_default)]
    fn cfg(endpoint: &str) -> Config {
        let mut c = Config::default();
        c.endpoint = Some(endpoint.to_string());
        c.http_proxy = ProxySetting::None;
        c.http_timeout_ms = 5000;
        c.http_connect_timeout_ms = 2000;
        c
    }

    /// A sender whose source is "cam-07" (source.id is not one of the config items used here).
    fn sender(c: &Config) -> Sender {
        let mut s = Sender::new(c).expect("sender");
        s.set_source("cam-07");
        s
    }

    fn recs(datas: &[&'static str]) -> Vec<RecordRef<'static>> {
        datas
            .iter()
            .enumerate()
            .map(|(i, d)| RecordRef {
                instance: INSTANCE,
                seq: 42 + i as u64,
                ts_ms: 1_764_320_000_123 + i as i64,
                data: d.as_bytes(),
            })
            .collect()
    }

    fn total_len(s: &Sender, records: &[RecordRef]) -> usize {
        body_len(
            s.format(),
            records.len(),
            records.iter().map(|r| s.record_len(r)).sum(),
        )
    }

    #[test]
    fn sender_is_send() {
        fn is_send<T: Send>() {}
        is_send::<Sender>();
    }

    #[test]
    fn json_body_is_byte_exact_and_data_verbatim() {
        let s = sender(&cfg("http://127.0.0.1:9/x"));
        let r = recs(&["{\"b\": 2, \"a\":1.50}", " [1,\n 2] ", "\"x\\ny\""]);
        let body = s.encode_body(&r);
        let expected = concat!(
            "[",
            r#"{"id":"3f9c2a7e1b4d8c60-42","seq":42,"ts_ms":1764320000123,"source":"cam-07","data":{"b": 2, "a":1.50}},"#,
            "{\"id\":\"3f9c2a7e1b4d8c60-43\",\"seq\":43,\"ts_ms\":1764320000124,\"source\":\"cam-07\",\"data\": [1,\n 2] },",
            r#"{"id":"3f9c2a7e1b4d8c60-44","seq":44,"ts_ms":1764320000125,"source":"cam-07","data":"x\ny"}"#,
            "]"
        );
        assert_eq!(String::from_utf8(body.clone()).expect("utf8"), expected);
        assert_eq!(body.len(), total_len(&s, &r));
        serde_json::from_slice::<serde_json::Value>(&body).expect("valid JSON");
        assert_eq!(s.encode_body(&[]), b"[]");
        assert_eq!(body_len(Format::Json, 0, 0), 2);
    }

    #[test]
    fn ndjson_body_is_byte_exact_one_line_per_envelope() {
        let mut c = cfg("http://127.0.0.1:9/x");
        c.format = Format::Ndjson;
        let s = sender(&c);
        let r = recs(&["{\"b\": 2, \"a\":1}", "{\r\n\"k\":\t\"v\"\n}\n"]);
        let body = s.encode_body(&r);
        let expected = concat!(
            r#"{"id":"3f9c2a7e1b4d8c60-42","seq":42,"ts_ms":1764320000123,"source":"cam-07","data":{"b": 2, "a":1}}"#,
            "\n",
            "{\"id\":\"3f9c2a7e1b4d8c60-43\",\"seq\":43,\"ts_ms\":1764320000124,\"source\":\"cam-07\",\"data\":{  \"k\":\t\"v\" } }",
            "\n"
        );
        assert_eq!(String::from_utf8(body.clone()).expect("utf8"), expected);
        assert_eq!(body.len(), total_len(&s, &r));
        for line in body.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            serde_json::from_slice::<serde_json::Value>(line).expect("each line is JSON");
        }
        assert!(s.encode_body(&[]).is_empty());
    }

    #[test]
    fn envelope_len_matches_encoding_at_the_extremes() {
        let mut s = sender(&cfg("http://127.0.0.1:9/x"));
        s.set_source("we\"ird\\src");
        assert_eq!(s.source_json(), r#""we\"ird\\src""#);
        for (seq, ts) in [
            (0u64, 0i64),
            (1, -1),
            (9, 9),
            (10, -10),
            (99_999, 1_764_320_000_123),
            (u64::MAX, i64::MIN),
            (u64::MAX - 1, i64::MAX),
        ] {
            let r = [RecordRef {
                instance: INSTANCE,
                seq,
                ts_ms: ts,
                data: b"{}",
            }];
            let body = s.encode_body(&r);
            assert_eq!(body.len(), body_len(Format::Json, 1, s.record_len(&r[0])));
            assert_eq!(
                s.record_len(&r[0]),
                envelope_len(16, seq, ts, s.source_json().len(), 2)
            );
            let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
            assert_eq!(v[0]["seq"].as_u64(), Some(seq));
            assert_eq!(v[0]["ts_ms"].as_i64(), Some(ts));
            assert_eq!(
                v[0]["id"].as_str(),
                Some(format!("{INSTANCE}-{seq}").as_str())
            );
            assert_eq!(v[0]["source"].as_str(), Some("we\"ird\\src"));
        }
    }

    #[test]
    fn idempotency_key_format() {
        let r = recs(&["1", "2", "3"]);
        assert_eq!(Sender::idempotency_key(&r), "3f9c2a7e1b4d8c60-42-44-3");
        assert_eq!(
            Sender::idempotency_key(&r[1..2]),
            "3f9c2a7e1b4d8c60-43-43-1"
        );
        assert_eq!(Sender::idempotency_key(&[]), "");
    }

    #[test]
    fn status_classes() {
        use Outcome::*;
        for (s, o) in [
            (100, Config),
            (101, Config),
            (200, Delivered),
            (201, Delivered),
            (202, Delivered),
            (204, Delivered),
            (299, Delivered),
            (301, Config),
            (302, Config),
            (304, Config),
            (307, Config),
            (308, Config),
            (400, Bisect),
            (401, Config),
            (403, Config),
            (404, Config),
            (405, Config),
            (408, Retry),
            (409, Config),
            (413, Split),
            (422, Bisect),
            (429, Retry),
            (500, Retry),
            (502, Retry),
            (503, Retry),
            (504, Retry),
            (599, Retry),
            (600, Config),
            (999, Config),
        ] {
            assert_eq!(classify_status(s), o, "{s}");
        }
    }

    #[test]
    fn sends_every_header_and_the_exact_body() {
        let server = Server::start(vec![Act::Send(response(200, ""))]);
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
        let reqs = server.requests();
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
            Some(s.encode_body(&r).len().to_string().as_str())
        );
        assert_eq!(q.body, s.encode_body(&r));
    }

    #[test]
    fn ndjson_content_type() {
        let server = Server::start(vec![]);
        let mut c = cfg(&server.url());
        c.format = Format::Ndjson;
        let mut s = sender(&c);
        let r = recs(&["{}", "[]"]);
        assert_eq!(s.send(&r).outcome, Outcome::Delivered);
        let q = &server.requests()[0];
        assert_eq!(q.header("content-type"), Some("application/x-ndjson"));
        assert_eq!(q.body, s.encode_body(&r));
    }

    #[test]
    fn reserved_headers_are_never_overridden() {
        let server = Server::start(vec![]);
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
        let q = &server.requests()[0];
        assert_eq!(q.header("content-type"), Some("application/json"));
        assert_eq!(q.header("x-edgebuf-source"), Some("cam-07"));
        assert_eq!(
            q.header("idempotency-key"),
            Some("3f9c2a7e1b4d8c60-42-42-1")
        );
        assert_eq!(q.header("host"), Some(server.addr.to_string().as_str()));
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
        assert_eq!(q.body, s.encode_body(&r));
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
        let server = Server::start(vec![]);
        let mut c = cfg(&server.url());
        c.http_compression = Compression::Gzip;
        let mut s = sender(&c);
        let r = recs(&["{\"a\":1}", "{\"a\":2}", "{\"a\":3}"]);
        assert_eq!(s.send(&r).outcome, Outcome::Delivered);
        let q = &server.requests()[0];
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
        assert_eq!(plain, s.encode_body(&r));
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
        let acts = statuses
            .iter()
            .map(|(s, _)| {
                if *s == 204 {
                    Act::Send(b"HTTP/1.1 204 No Content\r\n\r\n".to_vec())
                } else {
                    Act::Send(response(*s, ""))
                }
            })
            .collect();
        let server = Server::start(acts);
        let mut s = sender(&cfg(&format!("{}?token=abc", server.url())));
        let r = recs(&["{}"]);
        for (status, outcome) in statuses {
            let a = s.send(&r);
            assert_eq!(a.outcome, outcome, "{status}: {a:?}");
            assert_eq!(a.http_status, i32::from(status));
            assert!(a.detail.contains(&status.to_string()), "{a:?}");
            assert!(
                a.detail.contains(&format!("http://{}/ingest", server.addr)),
                "{a:?}"
            );
            assert!(!a.detail.contains("token"), "{a:?}");
        }
        // Every answer kept the connection alive: one connection, no resend.
        let reqs = server.requests();
        assert_eq!(reqs.len(), statuses.len());
        assert!(reqs.iter().all(|q| q.conn == 1));
        assert!(reqs
            .iter()
            .all(|q| q.line == "POST /ingest?token=abc HTTP/1.1"));
        assert_eq!(s.resends(), 0);
    }

    #[test]
    fn redirect_is_not_followed() {
        let server = Server::start(vec![Act::Send(response(
            301,
            "location: http://127.0.0.1:9/elsewhere\r\n",
        ))]);
        let mut s = sender(&cfg(&server.url()));
        let a = s.send(&recs(&["{}"]));
        assert_eq!(a.outcome, Outcome::Config, "{a:?}");
        assert_eq!(a.http_status, 301);
        assert!(a.detail.contains("redirect"), "{a:?}");
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(server.requests().len(), 1);
    }

    #[test]
    fn retry_after_seconds_and_date() {
        let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        let server = Server::start(vec![
            Act::Send(response(429, "retry-after: 7\r\n")),
            Act::Send(response(503, &format!("retry-after: {date}\r\n"))),
            Act::Send(response(503, "retry-after: soon\r\n")),
            Act::Send(response(503, "retry-after: 86400\r\n")),
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
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
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
        let server = Server::start(vec![Act::Hang]);
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
        let server = Server::start(vec![Act::SendAndClose(
            b"HTTP/1.1 200 OK\r\ncontent-le".to_vec(),
        )]);
        let mut s = sender(&cfg(&server.url()));
        let a = s.send(&recs(&["{}"]));
        assert_eq!(a.outcome, Outcome::Retry, "{a:?}");
        assert_eq!(a.http_status, 0);
        assert_eq!(s.resends(), 0);
    }

    #[test]
    fn close_without_answer_on_a_new_connection_is_retry() {
        let server = Server::start(vec![Act::Close, Act::Close]);
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
        let server = Server::start(vec![Act::SendAndClose(
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
        let server = Server::start(vec![Act::Send(resp)]);
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
        let server = Server::start(vec![
            Act::SendThenCloseAfter(response(200, ""), Duration::from_millis(50)),
            Act::Send(response(200, "")),
        ]);
        let mut s = sender(&cfg(&server.url()));
        let r = recs(&["{}"]);
        assert_eq!(s.send(&r).outcome, Outcome::Delivered);
        std::thread::sleep(Duration::from_millis(300));
        let a = s.send(&r);
        assert_eq!(a.outcome, Outcome::Delivered, "{a:?}");
        let reqs = server.requests();
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[1].conn, 2);
        // ureq notices a closed idle connection before reusing it, or we resend once.
        assert!(s.resends() <= 1);
    }

    #[test]
    fn keepalive_race_is_resent_once_and_not_reported() {
        // The server closes the reused connection as the request arrives (its idle timeout
        // fired at the same moment): the request is sent again at once on a new connection.
        let server = Server::start(vec![
            Act::Send(response(200, "")),
            Act::Close,
            Act::Send(response(200, "")),
        ]);
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
        let reqs = server.requests();
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
        let server = Server::start(vec![
            Act::Send(response(200, "")),
            Act::Reset,
            Act::Send(response(202, "")),
        ]);
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
        let reqs = server.requests();
        assert_eq!(reqs.iter().map(|q| q.conn).collect::<Vec<_>>(), [1, 2]);
    }

    #[test]
    fn keepalive_resend_happens_only_once() {
        let server = Server::start(vec![Act::Send(response(200, "")), Act::Close, Act::Close]);
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
        assert_eq!(server.requests().len(), 4);
    }

    #[test]
    fn connection_close_answer_is_not_treated_as_pooled() {
        let server = Server::start(vec![
            Act::SendAndClose(response(200, "connection: close\r\n")),
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
        let proxy = Server::start(vec![Act::SendAndClose(response(403, ""))]);
        let mut c = cfg("http://edgebuf-test.invalid:8080/ingest");
        c.http_proxy = ProxySetting::Url(format!("http://{}", proxy.addr));
        let mut s = sender(&c);
        let a = s.send(&recs(&["{}"]));
        assert_ne!(a.outcome, Outcome::Delivered, "{a:?}");
        let reqs = proxy.requests();
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
            let proxy = Server::start(vec![Act::SendAndClose(response(status, ""))]);
            let mut c = cfg("http://edgebuf-test.invalid:8080/ingest");
            c.http_proxy = ProxySetting::Url(format!("http://{}", proxy.addr));
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
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
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
    fn proxy_setting_errors_name_the_key() {
        let mut c = cfg("http://127.0.0.1:9/x");
        c.http_proxy = ProxySetting::Url("ftp://user:pw@proxy".into());
        let e = Sender::new(&c).expect_err("bad proxy");
        assert_eq!(e.code(), Code::InvalidConfig);
        assert!(
            e.message().contains("http.proxy") && !e.message().contains("pw"),
            "{e}"
        );
    }

    #[test]
    fn env_proxy_selection_follows_curl() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let https: Uri = "https://ingest.example.com/x".parse().expect("uri");
        let http: Uri = "http://ingest.example.com/x".parse().expect("uri");
        let host_of = |p: Option<Proxy>| p.map(|p| format!("{}:{}", p.host(), p.port()));

        let vars: &[(&str, &str)] = &[
            ("HTTPS_PROXY", "http://tls-proxy:3128"),
            ("HTTP_PROXY", "http://plain-proxy:3128"),
        ];
        assert_eq!(
            host_of(proxy_from_env(&https, &env(vars)).expect("ok")).as_deref(),
            Some("tls-proxy:3128")
        );
        assert_eq!(
            host_of(proxy_from_env(&http, &env(vars)).expect("ok")).as_deref(),
            Some("plain-proxy:3128")
        );

        let vars: &[(&str, &str)] = &[("https_proxy", "lower:1"), ("HTTPS_PROXY", "upper:2")];
        assert_eq!(
            host_of(proxy_from_env(&https, &env(vars)).expect("ok")).as_deref(),
            Some("lower:1")
        );

        let vars: &[(&str, &str)] = &[("ALL_PROXY", "http://all:8"), ("HTTPS_PROXY", "")];
        assert_eq!(
            host_of(proxy_from_env(&https, &env(vars)).expect("ok")).as_deref(),
            Some("all:8")
        );

        let vars: &[(&str, &str)] = &[
            ("HTTPS_PROXY", "http://p:1"),
            ("NO_PROXY", "localhost, .example.com"),
        ];
        assert!(proxy_from_env(&https, &env(vars)).expect("ok").is_none());

        let vars: &[(&str, &str)] = &[];
        assert!(proxy_from_env(&https, &env(vars)).expect("ok").is_none());

        let vars: &[(&str, &str)] = &[("HTTPS_PROXY", "gopher://user:pw@p:1")];
        let e = proxy_from_env(&https, &env(vars)).expect_err("bad");
        assert_eq!(e.code(), Code::InvalidConfig);
        assert!(
            e.message().contains("HTTPS_PROXY") && !e.message().contains("pw"),
            "{e}"
        );
    }

    #[test]
    fn no_proxy_matching() {
        assert!(no_proxy_matches("*", "anything.example"));
        assert!(no_proxy_matches("example.com", "example.com"));
        assert!(no_proxy_matches("example.com", "api.EXAMPLE.com"));
        assert!(no_proxy_matches(".example.com", "api.example.com"));
        assert!(no_proxy_matches(".example.com", "example.com"));
        assert!(!no_proxy_matches("example.com", "badexample.com"));
        assert!(!no_proxy_matches("example.com", "example.org"));
        assert!(no_proxy_matches(
            "foo, bar baz,example.com.",
            "x.example.com."
        ));
        assert!(no_proxy_matches("10.0.0.0/8", "10.1.2.3"));
        assert!(!no_proxy_matches("10.0.0.0/8", "11.1.2.3"));
        assert!(no_proxy_matches("127.0.0.1", "127.0.0.1"));
        assert!(!no_proxy_matches("127.0.0.1", "127.0.0.2"));
        assert!(no_proxy_matches("::1", "[::1]"));
        assert!(no_proxy_matches("fd00::/8", "[fd12::1]"));
        assert!(!no_proxy_matches("fd00::/8", "[fe80::1]"));
        assert!(!no_proxy_matches("", "example.com"));
        assert!(!no_proxy_matches("*.example.com", "a.example.com"));
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
    // TLS, against a rustls server with rcgen certificates.

    mod tls {
        use super::*;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

        struct Pki {
            ca_pem: String,
            server_chain: Vec<CertificateDer<'static>>,
            server_key: Vec<u8>,
            ca_der: CertificateDer<'static>,
            ca_key: rcgen::KeyPair,
            ca_params: rcgen::CertificateParams,
        }

        fn ca(name: &str) -> (rcgen::CertificateParams, rcgen::KeyPair, rcgen::Certificate) {
            let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
            p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            p.distinguished_name.push(rcgen::DnType::CommonName, name);
            p.key_usages = vec![
                rcgen::KeyUsagePurpose::KeyCertSign,
                rcgen::KeyUsagePurpose::CrlSign,
                rcgen::KeyUsagePurpose::DigitalSignature,
            ];
            let k = rcgen::KeyPair::generate().expect("key");
            let c = p.self_signed(&k).expect("ca cert");
            (p, k, c)
        }

        fn pki() -> Pki {
            let (ca_params, ca_key, ca_cert) = ca("edgebuf test CA");
            let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
            let sp = rcgen::CertificateParams::new(vec![
                "localhost".to_string(),
                "127.0.0.1".to_string(),
            ])
            .expect("params");
            let sk = rcgen::KeyPair::generate().expect("key");
            let sc = sp.signed_by(&sk, &issuer).expect("server cert");
            Pki {
                ca_pem: ca_cert.pem(),
                server_chain: vec![sc.der().clone()],
                server_key: sk.serialize_der(),
                ca_der: ca_cert.der().clone(),
                ca_key,
                ca_params,
            }
        }

        fn provider() -> Arc<rustls::crypto::CryptoProvider> {
            Arc::new(rustls::crypto::ring::default_provider())
        }

        /// A TLS server answering 200 to every request, on as many connections as come.
        fn tls_server(p: &Pki, client_ca: Option<CertificateDer<'static>>) -> Server {
            let builder = rustls::ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .expect("versions");
            let builder = match client_ca {
                Some(ca) => {
                    let mut roots = rustls::RootCertStore::empty();
                    roots.add(ca).expect("root");
                    let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                        Arc::new(roots),
                        provider(),
                    )
                    .build()
                    .expect("verifier");
                    builder.with_client_cert_verifier(v)
                }
                None => builder.with_no_client_auth(),
            };
            let config = Arc::new(
                builder
                    .with_single_cert(
                        p.server_chain.clone(),
                        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(p.server_key.clone())),
                    )
                    .expect("server config"),
            );
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.set_nonblocking(true).expect("nonblocking");
            let addr = listener.local_addr().expect("addr");
            let stop = Arc::new(AtomicBool::new(false));
            let reqs = Arc::new(Mutex::new(Vec::new()));
            let (stop2, reqs2) = (stop.clone(), reqs.clone());
            let thread = std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(20);
                let mut conn = 0;
                while !stop2.load(Ordering::SeqCst) && Instant::now() < deadline {
                    let Ok((tcp, _)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    conn += 1;
                    let _ = tcp.set_nonblocking(false);
                    let _ = tcp.set_read_timeout(Some(Duration::from_millis(20)));
                    let Ok(sc) = rustls::ServerConnection::new(config.clone()) else {
                        continue;
                    };
                    let mut tls = rustls::StreamOwned::new(sc, tcp);
                    // Requests on this connection until it closes or fails (e.g. a handshake
                    // the client aborts).
                    loop {
                        let req = {
                            let mut r = BufReader::new(&mut tls);
                            read_request(&mut r, conn, &stop2, deadline)
                        };
                        let Some(req) = req else { break };
                        reqs2.lock().expect("lock").push(req);
                        if tls.write_all(&response(200, "")).is_err() {
                            break;
                        }
                        let _ = tls.flush();
                    }
                }
            });
            Server {
                addr,
                stop,
                reqs,
                thread: Some(thread),
            }
        }

        fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
            let p = dir.join(name);
            std::fs::write(&p, text).expect("write");
            p
        }

        fn tempdir(tag: &str) -> std::path::PathBuf {
            let d = std::env::temp_dir().join(format!(
                "edgebuf-sender-{tag}-{}-{}",
                std::process::id(),
                fastrand::u64(..)
            ));
            std::fs::create_dir_all(&d).expect("mkdir");
            d
        }

        #[test]
        fn ca_file_is_trusted_and_a_wrong_ca_is_retry() {
            let p = pki();
            let server = tls_server(&p, None);
            let dir = tempdir("ca");
            let url = format!("https://localhost:{}/ingest", server.addr.port());

            let mut c = cfg(&url);
            c.tls_ca_file = Some(write(&dir, "ca.pem", &p.ca_pem));
            let mut s = sender(&c);
            let r = recs(&["{\"tls\":true}"]);
            let a = s.send(&r);
            assert_eq!(
                (a.outcome, a.http_status),
                (Outcome::Delivered, 200),
                "{a:?}"
            );
            assert_eq!(server.requests()[0].body, s.encode_body(&r));
            // Kept alive over TLS too.
            assert_eq!(s.send(&r).outcome, Outcome::Delivered);
            assert_eq!(
                server.requests().iter().map(|q| q.conn).collect::<Vec<_>>(),
                [1, 1]
            );
            drop(s); // the test server serves one connection at a time

            // Another CA: verification fails, which is a retry, never a delivery.
            let (_, _, other) = ca("some other CA");
            let mut c = cfg(&url);
            c.tls_ca_file = Some(write(&dir, "other.pem", &other.pem()));
            let mut s = sender(&c);
            let a = s.send(&r);
            assert_eq!((a.outcome, a.http_status), (Outcome::Retry, 0), "{a:?}");
            assert!(a.detail.contains("TLS"), "{a:?}");
            drop(s);

            // The built-in roots do not know the test CA either.
            let mut s = sender(&cfg(&url));
            assert_eq!(s.send(&r).outcome, Outcome::Retry);
            assert_eq!(server.requests().len(), 2);
            let _ = std::fs::remove_dir_all(&dir);
        }

        #[test]
        fn client_certificate_for_mutual_tls() {
            let p = pki();
            let server = tls_server(&p, Some(p.ca_der.clone()));
            let dir = tempdir("mtls");
            let url = format!("https://127.0.0.1:{}/ingest", server.addr.port());
            let issuer = rcgen::Issuer::from_params(&p.ca_params, &p.ca_key);
            let ck = rcgen::KeyPair::generate().expect("key");
            let mut cp =
                rcgen::CertificateParams::new(vec!["device-7".to_string()]).expect("params");
            cp.distinguished_name
                .push(rcgen::DnType::CommonName, "device-7");
            let cc = cp.signed_by(&ck, &issuer).expect("client cert");
            let ca_file = write(&dir, "ca.pem", &p.ca_pem);
            let cert_file = write(&dir, "client.pem", &cc.pem());
            let key_file = write(&dir, "client.key", &ck.serialize_pem());
            let r = recs(&["{}"]);

            // Without a client certificate the server refuses the handshake: retry.
            let mut c = cfg(&url);
            c.tls_ca_file = Some(ca_file.clone());
            let mut s = sender(&c);
            let a = s.send(&r);
            assert_eq!(a.outcome, Outcome::Retry, "{a:?}");

            c.tls_cert_file = Some(cert_file.clone());
            c.tls_key_file = Some(key_file.clone());
            let mut s = sender(&c);
            let a = s.send(&r);
            assert_eq!(
                (a.outcome, a.http_status),
                (Outcome::Delivered, 200),
                "{a:?}"
            );

            // A key that does not belong to the certificate: InvalidConfig at open, not a
            // panic at the first request.
            let wrong = rcgen::KeyPair::generate().expect("key");
            c.tls_key_file = Some(write(&dir, "wrong.key", &wrong.serialize_pem()));
            let e = Sender::new(&c).expect_err("mismatch");
            assert_eq!(e.code(), Code::InvalidConfig);
            assert!(e.message().contains("tls.key_file"), "{e}");

            // One without the other.
            c.tls_key_file = None;
            let e = Sender::new(&c).expect_err("cert only");
            assert!(e.message().contains("tls.key_file"), "{e}");
            let _ = std::fs::remove_dir_all(&dir);
        }

        #[test]
        fn unreadable_or_empty_files_name_the_key_not_the_path() {
            let dir = tempdir("files");
            let mut c = cfg("https://localhost:9/x");
            let missing = dir.join("secret-name-missing.pem");
            c.tls_ca_file = Some(missing);
            let e = Sender::new(&c).expect_err("missing");
            assert_eq!(e.code(), Code::InvalidConfig);
            assert!(e.message().contains("tls.ca_file"), "{e}");
            assert!(!e.message().contains("secret-name"), "{e}");

            c.tls_ca_file = Some(write(&dir, "empty.pem", "not a pem\n"));
            let e = Sender::new(&c).expect_err("empty");
            assert!(e.message().contains("tls.ca_file"), "{e}");

            c.tls_ca_file = None;
            c.tls_cert_file = Some(write(&dir, "c.pem", &pki().ca_pem));
            c.tls_key_file = Some(write(
                &dir,
                "k.pem",
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            ));
            let e = Sender::new(&c).expect_err("no key");
            assert!(e.message().contains("tls.key_file"), "{e}");
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
