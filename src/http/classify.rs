//! What an attempt means for the batch (docs/reference.md, the wire, Responses): the class of an HTTP
//! status, of a proxy's refusal to open a tunnel, and of a transport failure, each with one
//! sentence for messages and events. Details never hold header values, URL userinfo, query
//! strings or key material.

use std::io;
use std::time::Duration;

/// How the worker must treat the batch after an attempt (docs/reference.md, the wire, Responses).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Outcome {
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

/// The result of one [`super::Sender::send`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Attempt {
    /// How to treat the batch.
    pub outcome: Outcome,
    /// The HTTP status of the answer; 0 when no answer arrived.
    pub http_status: i32,
    /// The parsed `Retry-After` of the answer (seconds or HTTP-date), not capped.
    pub retry_after: Option<Duration>,
    /// One sentence for messages and events. Never holds header values, URL userinfo or query
    /// strings.
    pub detail: String,
    /// Request body bytes put on the wire by this attempt (after compression; a keep-alive
    /// resend counts again); 0 when no request was made.
    pub sent_bytes: u64,
    /// A 2xx from an OTLP endpoint whose `partialSuccess` reports rejected records: their count
    /// (at most the records of the request) and its message (printable ASCII, at most 200
    /// bytes). The batch is delivered all the same.
    pub rejected: Option<(u64, String)>,
    /// The endpoint is known not to have processed the request: no connection to it was made
    /// (refused, unreachable, DNS failure, connect timeout, TLS handshake failure, a proxy that
    /// would not open the tunnel, or no request at all), or it answered 429 or 503. False
    /// whenever it may have: a timeout or a connection broken after the request went out,
    /// any other answer, or a failure on a reused connection resent on a new one.
    pub not_processed: bool,
}

impl Attempt {
    /// An attempt that got no answer (and may have reached the endpoint).
    pub(crate) fn unanswered(outcome: Outcome, detail: String) -> Attempt {
        Attempt {
            outcome,
            http_status: 0,
            retry_after: None,
            detail,
            sent_bytes: 0,
            rejected: None,
            not_processed: false,
        }
    }

    /// An attempt that never reached the endpoint.
    pub(crate) fn not_sent(outcome: Outcome, detail: String) -> Attempt {
        Attempt {
            not_processed: true,
            ..Attempt::unanswered(outcome, detail)
        }
    }

    /// Counts `posts` posts of a `body_len`-byte body in `sent_bytes`, as they went on the
    /// wire: when the last one made no connection (not processed, no status), it sent nothing
    /// and costs no budget.
    pub(crate) fn count_sent(&mut self, posts: u64, body_len: u64) {
        let no_connection = self.not_processed && self.http_status == 0;
        self.sent_bytes = (posts - u64::from(no_connection)) * body_len;
    }
}

/// The answers that say the endpoint did not take the request: 429 (too many requests) and
/// 503 (unavailable).
pub(crate) fn status_not_processed(status: u16) -> bool {
    matches!(status, 429 | 503)
}

/// Classifies an HTTP status code (docs/reference.md, the wire).
pub(crate) fn classify_status(status: u16) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered,
        408 | 429 | 500..=599 => Outcome::Retry,
        413 => Outcome::Split,
        400 | 422 => Outcome::Bisect,
        _ => Outcome::Config,
    }
}

/// A complete answer.
pub(super) struct Answer {
    pub status: u16,
    pub retry_after: Option<Duration>,
    /// The body was read to its end and the server did not ask to close: the connection went
    /// back to the pool.
    pub reusable: bool,
    /// The body of an OTLP endpoint's 2xx as read (at most 64 KiB); empty otherwise.
    pub body: Vec<u8>,
}

/// A request that got no complete answer.
pub(super) enum Failure {
    Transport(ureq::Error),
    /// ureq panicked inside (see `Sender::post`).
    Panic,
}

/// A failure that a server closing an idle keep-alive connection produces when the request
/// reuses it: reset, aborted, broken pipe or end of stream before an answer.
pub(super) fn is_stale_connection(e: &ureq::Error) -> bool {
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

/// Turns answers and failures into [`Attempt`]s with details that name the endpoint and the
/// timeout that fired.
#[derive(Debug)]
pub(super) struct Classifier {
    /// The endpoint without userinfo, query or fragment.
    pub endpoint: String,
    pub tls: bool,
    pub timeout_ms: u64,
    pub connect_timeout_ms: u64,
}

impl Classifier {
    pub fn answered(&self, a: Answer) -> Attempt {
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
            sent_bytes: 0,
            rejected: None,
            not_processed: status_not_processed(a.status),
        }
    }

    pub fn failed(&self, failure: &Failure) -> Attempt {
        let ep = &self.endpoint;
        match failure {
            Failure::Panic => Attempt::unanswered(
                Outcome::Config,
                format!(
                    "the request to {ep} could not be made with this TLS client certificate \
                     or proxy setting"
                ),
            ),
            Failure::Transport(ureq::Error::ConnectProxyFailed(reason)) => {
                match proxy_refusal_status(reason) {
                    Some(status) => self.proxy_refused(status),
                    None => Attempt::not_sent(
                        Outcome::Retry,
                        format!("the proxy could not open a tunnel to {ep}"),
                    ),
                }
            }
            Failure::Transport(e) => {
                let (outcome, detail) = self.transport_error(e);
                if self.never_connected(e) {
                    Attempt::not_sent(outcome, detail)
                } else {
                    Attempt::unanswered(outcome, detail)
                }
            }
        }
    }

    /// The proxy answered the CONNECT for the endpoint with `status` (docs/reference.md, the wire): 407 (its
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
            sent_bytes: 0,
            rejected: None,
            not_processed: true,
        }
    }

    /// The failures that happen before a request goes out: no connection to the endpoint was
    /// made (refused, unreachable, DNS, the connect timeout, the TLS handshake, which ureq
    /// completes while connecting, before it writes the request).
    fn never_connected(&self, e: &ureq::Error) -> bool {
        match e {
            ureq::Error::Timeout(ureq::Timeout::Connect | ureq::Timeout::Resolve)
            | ureq::Error::HostNotFound
            | ureq::Error::ConnectionFailed
            | ureq::Error::ConnectProxyFailed(_)
            | ureq::Error::Tls(_)
            | ureq::Error::Rustls(_) => true,
            ureq::Error::Io(io) => match io.kind() {
                io::ErrorKind::ConnectionRefused
                | io::ErrorKind::HostUnreachable
                | io::ErrorKind::NetworkUnreachable
                | io::ErrorKind::NetworkDown
                | io::ErrorKind::AddrNotAvailable => true,
                // rustls reports a failed handshake this way.
                io::ErrorKind::InvalidData => self.tls,
                _ => false,
            },
            _ => false,
        }
    }

    fn transport_error(&self, e: &ureq::Error) -> (Outcome, String) {
        let ep = &self.endpoint;
        let secure = if self.tls { "TLS" } else { "the connection" };
        let no_answer = || {
            (
                Outcome::Timeout,
                format!(
                    "no complete answer from {ep} within http.timeout_ms ({} ms)",
                    self.timeout_ms
                ),
            )
        };
        match e {
            ureq::Error::Timeout(ureq::Timeout::Connect | ureq::Timeout::Resolve) => (
                Outcome::Timeout,
                format!(
                    "could not connect to {ep} within http.connect_timeout_ms ({} ms)",
                    self.connect_timeout_ms
                ),
            ),
            ureq::Error::Timeout(_) => no_answer(),
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
                io::ErrorKind::TimedOut => no_answer(),
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
            ureq::Error::ConnectionFailed => (Outcome::Retry, format!("could not connect to {ep}")),
            ureq::Error::StatusCode(s) => {
                let a = self.answered(Answer {
                    status: *s,
                    retry_after: None,
                    reusable: false,
                    body: Vec::new(),
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

/// The status a proxy answered a CONNECT with, from ureq's `ConnectProxyFailed` reason
/// ("proxy server responded 407/Proxy Authentication Required"; ureq is pinned to the minor
/// release whose wording this reads). None when the proxy gave no status.
fn proxy_refusal_status(reason: &str) -> Option<u16> {
    let rest = reason.split("responded ").nth(1)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok().filter(|s| (100..=999).contains(s))
}

fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// docs/reference.md, the wire, Responses, as a table, against every code (moved from tests/props.rs).
    #[test]
    fn every_status_code_classifies_per_spec() {
        let spec = |status: u16| match status {
            200..=299 => Outcome::Delivered,
            408 | 429 | 500..=599 => Outcome::Retry,
            413 => Outcome::Split,
            400 | 422 => Outcome::Bisect,
            _ => Outcome::Config,
        };
        for s in 0..=u16::MAX {
            assert_eq!(classify_status(s), spec(s), "{s}");
        }
    }

    #[test]
    fn proxy_refusal_status_reads_ureqs_wording() {
        assert_eq!(
            proxy_refusal_status("proxy server responded 407/Proxy Authentication Required"),
            Some(407)
        );
        assert_eq!(
            proxy_refusal_status("proxy server responded 503"),
            Some(503)
        );
        assert_eq!(proxy_refusal_status("proxy server responded junk"), None);
        assert_eq!(proxy_refusal_status("no status at all"), None);
        assert_eq!(proxy_refusal_status("responded 99/x"), None);
    }

    #[test]
    fn details_name_the_timeout_that_fired() {
        let c = Classifier {
            endpoint: "http://h/x".into(),
            tls: false,
            timeout_ms: 700,
            connect_timeout_ms: 300,
        };
        let fail = |e| c.failed(&Failure::Transport(e));
        let a = fail(ureq::Error::Timeout(ureq::Timeout::Connect));
        assert_eq!(a.outcome, Outcome::Timeout);
        assert!(
            a.detail.contains("http.connect_timeout_ms (300 ms)"),
            "{a:?}"
        );
        let a = fail(ureq::Error::Timeout(ureq::Timeout::Global));
        assert!(a.detail.contains("http.timeout_ms (700 ms)"), "{a:?}");
        let a = fail(ureq::Error::HostNotFound);
        assert_eq!((a.outcome, a.http_status), (Outcome::Retry, 0));
        let a = c.failed(&Failure::Panic);
        assert_eq!(a.outcome, Outcome::Config);
    }

    #[test]
    fn not_processed_only_when_the_endpoint_never_took_the_request() {
        let c = Classifier {
            endpoint: "http://h/x".into(),
            tls: false,
            timeout_ms: 700,
            connect_timeout_ms: 300,
        };
        let answer = |status| {
            c.answered(Answer {
                status,
                retry_after: None,
                reusable: true,
                body: Vec::new(),
            })
            .not_processed
        };
        for s in [429, 503] {
            assert!(answer(s), "{s}");
        }
        for s in [200, 400, 401, 408, 413, 500, 502, 504] {
            assert!(!answer(s), "{s}");
        }
        let io = |kind| ureq::Error::Io(io::Error::new(kind, "x"));
        let fail = |e| c.failed(&Failure::Transport(e)).not_processed;
        for e in [
            io(io::ErrorKind::ConnectionRefused),
            io(io::ErrorKind::NetworkUnreachable),
            ureq::Error::HostNotFound,
            ureq::Error::ConnectionFailed,
            ureq::Error::Timeout(ureq::Timeout::Connect),
            ureq::Error::Tls("handshake"),
            ureq::Error::ConnectProxyFailed("proxy server responded 503".into()),
            ureq::Error::ConnectProxyFailed("no status".into()),
        ] {
            let shown = e.to_string();
            assert!(fail(e), "{shown}");
        }
        for e in [
            ureq::Error::Timeout(ureq::Timeout::Global),
            ureq::Error::Timeout(ureq::Timeout::RecvResponse),
            io(io::ErrorKind::TimedOut),
            io(io::ErrorKind::ConnectionReset),
            io(io::ErrorKind::BrokenPipe),
            io(io::ErrorKind::UnexpectedEof),
            io(io::ErrorKind::InvalidData),
            ureq::Error::BodyStalled,
        ] {
            let shown = e.to_string();
            assert!(!fail(e), "{shown}");
        }
        assert!(!c.failed(&Failure::Panic).not_processed);
    }
}
