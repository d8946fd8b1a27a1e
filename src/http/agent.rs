//! The ureq agent and its resolver: the one file that uses `ureq::unversioned`, the API that
//! ureq may change in a minor release (hence the `~3.5` pin in Cargo.toml).
//!
//! ureq's default resolver runs every lookup on a thread of its own, from a plain
//! `std::thread::spawn`, whenever a timeout applies (always here: `http.timeout_ms`), even for
//! `127.0.0.1`. [`InlineResolver`] instead answers IP literals and `localhost` at once, on the
//! calling thread, and runs any other lookup on a thread started through [`crate::sys::spawn`]
//! (asynchronous signals blocked, like every library thread). That thread cannot be avoided:
//! `getaddrinfo` has no timeout and cannot be cancelled, so a lookup that must give up after
//! `http.connect_timeout_ms` has to run elsewhere. When the wait gives up, the thread is left to
//! finish the lookup on its own; it owns only the host name and the sending end of a channel
//! nobody reads any more, and ends when `getaddrinfo` returns.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::sync::mpsc;

use ureq::config::Config as AgentConfig;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};
use ureq::Agent;

/// The name of the lookup thread.
const DNS_THREAD: &str = "edgebuf-dns";

/// A new agent (with an empty connection pool) that resolves with [`InlineResolver`].
pub(super) fn new(config: &AgentConfig) -> Agent {
    Agent::with_parts(
        config.clone(),
        DefaultConnector::default(),
        InlineResolver::default(),
    )
}

#[derive(Debug, Default)]
pub(super) struct InlineResolver(DefaultResolver);

/// The addresses `localhost` stands for (RFC 6761 6.3: loopback, without asking DNS, as curl
/// does), IPv4 first.
const LOCALHOST: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::LOCALHOST),
    IpAddr::V6(Ipv6Addr::LOCALHOST),
];

impl Resolver for InlineResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &AgentConfig,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let host = uri.host().unwrap_or("");
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let port = uri.port_u16().or_else(|| default_port(uri.scheme_str()?));
        let Some(port) = port else {
            // Not a URL this agent can use: ureq's resolver says why, before any lookup.
            return self.0.resolve(uri, config, timeout);
        };
        let found: Vec<SocketAddr> = if let Ok(ip) = host.parse::<IpAddr>() {
            vec![SocketAddr::new(ip, port)]
        } else if is_localhost(host) {
            LOCALHOST
                .iter()
                .map(|ip| SocketAddr::new(*ip, port))
                .collect()
        } else if timeout.after.is_not_happening() {
            (host, port).to_socket_addrs()?.collect()
        } else {
            lookup_on_thread(host, port, timeout)?
        };
        let mut out = self.empty();
        for addr in config.ip_family().keep_wanted(found.into_iter()) {
            if out.try_push(addr).is_err() {
                break; // as many as ureq takes (16)
            }
        }
        if out.is_empty() {
            Err(ureq::Error::HostNotFound)
        } else {
            Ok(out)
        }
    }
}

/// `localhost` or `localhost.`, in any case.
fn is_localhost(host: &str) -> bool {
    host.strip_suffix('.')
        .unwrap_or(host)
        .eq_ignore_ascii_case("localhost")
}

/// The port a URL of `scheme` means when it names none: the endpoint's schemes and the
/// proxies' (ureq's own table).
fn default_port(scheme: &str) -> Option<u16> {
    let s = scheme.to_ascii_lowercase();
    match s.as_str() {
        "http" => Some(80),
        "https" => Some(443),
        "socks4" | "socks4a" | "socks5" | "socks5h" => Some(1080),
        _ => None,
    }
}

/// `getaddrinfo` on a library thread, waited for until `timeout`.
fn lookup_on_thread(
    host: &str,
    port: u16,
    timeout: NextTimeout,
) -> Result<Vec<SocketAddr>, ureq::Error> {
    let (tx, rx) = mpsc::sync_channel(1);
    let name = host.to_string();
    crate::sys::spawn(DNS_THREAD, move || {
        let found = (name.as_str(), port)
            .to_socket_addrs()
            .map(|a| a.collect::<Vec<_>>());
        let _ = tx.send(found);
    })?;
    match rx.recv_timeout(*timeout.after) {
        Ok(found) => Ok(found?),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(ureq::Error::Timeout(timeout.reason)),
        // The thread ended without an answer (it cannot, short of a panic in getaddrinfo).
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(ureq::Error::HostNotFound),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn resolve(url: &str, after: Option<Duration>) -> Result<Vec<SocketAddr>, ureq::Error> {
        let uri: Uri = url.parse().expect("uri");
        let timeout = NextTimeout {
            after: after.map_or(
                ureq::unversioned::transport::time::Duration::NotHappening,
                Into::into,
            ),
            reason: ureq::Timeout::Resolve,
            per_read: None,
            per_write: None,
        };
        let config = Agent::config_builder().build();
        InlineResolver::default()
            .resolve(&uri, &config, timeout)
            .map(|a| a.iter().copied().collect())
    }

    /// Only a name that needs `getaddrinfo` starts a thread, and that thread goes through
    /// `sys::spawn` (whose failure the test injects).
    #[test]
    fn literals_and_localhost_resolve_without_a_thread() {
        crate::sys::FAIL_SPAWN.with(|f| f.set(Some(DNS_THREAD)));
        let wait = Some(Duration::from_secs(2));
        let got = resolve("http://127.0.0.1:8080/x", wait).expect("v4");
        assert_eq!(got, ["127.0.0.1:8080".parse::<SocketAddr>().expect("addr")]);
        let got = resolve("https://[::1]/x", wait).expect("v6");
        assert_eq!(got, ["[::1]:443".parse::<SocketAddr>().expect("addr")]);
        let got = resolve("http://LocalHost.:81/x", wait).expect("localhost");
        assert_eq!(
            got,
            [
                "127.0.0.1:81".parse::<SocketAddr>().expect("addr"),
                "[::1]:81".parse().expect("addr")
            ]
        );
        let got = resolve("socks5://127.0.0.2", wait).expect("proxy");
        assert_eq!(got, ["127.0.0.2:1080".parse::<SocketAddr>().expect("addr")]);
        // A name to look up needs the thread: its spawn failure is the lookup's failure.
        let e = resolve("http://edgebuf-test.invalid/x", wait).expect_err("no thread");
        assert!(matches!(e, ureq::Error::Io(_)), "{e:?}");
        crate::sys::FAIL_SPAWN.with(|f| f.set(None));
    }

    #[test]
    fn names_resolve_on_a_thread() {
        // No DNS here may mean no answer at all: then the wait gives up.
        let e = resolve(
            "http://edgebuf-test.invalid/x",
            Some(Duration::from_secs(2)),
        );
        assert!(
            matches!(
                e,
                Err(ureq::Error::Io(_)
                    | ureq::Error::HostNotFound
                    | ureq::Error::Timeout(ureq::Timeout::Resolve))
            ),
            "{e:?}"
        );
        let got = resolve("http://localhost:1/x", None).expect("localhost");
        assert_eq!(got.len(), 2);
        // ureq's resolver refuses what is not a URL it can use.
        assert!(resolve("ftp://127.0.0.1/x", None).is_err());
    }
}
