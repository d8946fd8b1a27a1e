//! The proxy of `http.proxy`: none, an explicit URL, or `env`, read from the environment as
//! curl reads it (`*_proxy` variables and `NO_PROXY` matching).

use std::net::IpAddr;

use ureq::http::Uri;
use ureq::Proxy;

use crate::config::ProxySetting;
use crate::error::{Error, Result};

/// The proxy that `setting` selects for requests to `uri`.
pub(super) fn proxy_for(setting: &ProxySetting, uri: &Uri) -> Result<Option<Proxy>> {
    match setting {
        ProxySetting::None => Ok(None),
        ProxySetting::Url(url) => Proxy::new(url).map(Some).map_err(|_| {
            Error::invalid_config(
                "http.proxy is not a valid proxy URL: expected env, none, or \
                 http://, https://, socks4://, socks4a://, socks5:// or socks5h:// with a host",
            )
        }),
        ProxySetting::Env => proxy_from_env(uri, &|k| std::env::var(k).ok()),
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Code;

    #[test]
    fn proxy_setting_errors_name_the_key() {
        let uri: Uri = "http://127.0.0.1:9/x".parse().expect("uri");
        let e = proxy_for(&ProxySetting::Url("ftp://user:pw@proxy".into()), &uri)
            .expect_err("bad proxy");
        assert_eq!(e.code(), Code::InvalidConfig);
        assert!(
            e.message().contains("http.proxy") && !e.message().contains("pw"),
            "{e}"
        );
        assert!(proxy_for(&ProxySetting::None, &uri)
            .expect("none")
            .is_none());
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
}
