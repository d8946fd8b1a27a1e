//! The syntax of values that are more than a number or a word: paths, URLs (endpoint and
//! proxy), source ids and headers; and what is derived from them (redaction, the host name).
//!
//! Predicates here say yes or no; the key table (`keys.rs`) turns a no into the message of its
//! key. Header checks make their own messages, as the header family is not in the table.

use super::enums::ProxySetting;
use crate::error::{Error, Result};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The prefix of the header keys.
pub(crate) const HEADER_PREFIX: &str = "http.header.";
/// The prefix of the OTLP resource attribute family.
pub(crate) const RESOURCE_PREFIX: &str = "otlp.resource.";
/// Resource attributes edgebuf sets itself: `otlp.resource.NAME` may not set them.
/// (`service.name` may be set: it only has a default.)
pub(crate) const RESERVED_RESOURCE_ATTRIBUTES: &[&str] = &["edgebuf.source"];

/// Header names that edgebuf sets itself (compared ignoring ASCII case): `http.header.NAME`
/// may not set them.
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
    reserved_header(name).is_some()
}

/// The reserved header `name` names, spelled as in [`RESERVED_HEADERS`].
fn reserved_header(name: &str) -> Option<&'static str> {
    RESERVED_HEADERS
        .iter()
        .find(|r| r.eq_ignore_ascii_case(name))
        .copied()
}

pub(crate) const MAX_PATH_BYTES: usize = 4095;
pub(crate) const MAX_URL_BYTES: usize = 8192;
pub(crate) const MAX_SOURCE_ID_BYTES: usize = 128;
pub(crate) const MAX_HEADER_NAME_BYTES: usize = 256;
pub(crate) const MAX_HEADER_VALUE_BYTES: usize = 16384;
pub(crate) const MAX_HEADERS: usize = 64;
pub(crate) const MAX_RESOURCE_NAME_BYTES: usize = 256;
pub(crate) const MAX_RESOURCE_VALUE_BYTES: usize = 4096;
pub(crate) const MAX_RESOURCE_ATTRIBUTES: usize = 64;

pub(crate) const ENDPOINT_SCHEMES: &[&str] = &["http", "https"];
const PROXY_SCHEMES: &[&str] = &["http", "https", "socks4", "socks4a", "socks5", "socks5h"];

/// What an endpoint must be, for messages and docs.
pub(crate) const URL_EXPECTED: &str = "an http:// or https:// URL with a host \
     (and a port from 1 to 65535 if one is given), at most 8192 bytes, without spaces, \
     control or non-ASCII characters";
/// What `http.proxy` must be, for messages and docs.
pub(crate) const PROXY_EXPECTED: &str = "env, none, or a proxy URL (http://, https://, \
     socks4://, socks4a://, socks5:// or socks5h://) with a host, at most 8192 bytes, without \
     spaces, control or non-ASCII characters";

// ---------------------------------------------------------------------------------------------
// Numbers and paths
// ---------------------------------------------------------------------------------------------

/// Plain decimal digits only; `None` on anything else or on overflow.
pub(crate) fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A path as `set` takes it: 1 to `MAX_PATH_BYTES` bytes without NUL.
pub(crate) fn parse_path(value: &str) -> Option<PathBuf> {
    if value.is_empty() || value.len() > MAX_PATH_BYTES || value.contains('\0') {
        return None;
    }
    Some(PathBuf::from(value))
}

/// The same rules as `parse_path`, for a field that may have been set directly.
pub(crate) fn valid_path(p: &Path) -> bool {
    let bytes = p.as_os_str().as_encoded_bytes();
    !(bytes.is_empty() || bytes.len() > MAX_PATH_BYTES || bytes.contains(&0))
}

/// A regular file that can be opened and read.
pub(crate) fn check_readable(key: &str, p: &Path) -> Result<()> {
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

/// 1 to `MAX_SOURCE_ID_BYTES` bytes of printable ASCII.
pub(crate) fn valid_source_id(s: &str) -> bool {
    (1..=MAX_SOURCE_ID_BYTES).contains(&s.len()) && s.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

/// `env`, `none` (ignoring ASCII case) or a proxy URL.
pub(crate) fn parse_proxy(value: &str) -> Option<ProxySetting> {
    if value.eq_ignore_ascii_case("env") {
        Some(ProxySetting::Env)
    } else if value.eq_ignore_ascii_case("none") {
        Some(ProxySetting::None)
    } else if valid_proxy_url(value) {
        Some(ProxySetting::Url(value.to_string()))
    } else {
        None
    }
}

/// A proxy URL that the HTTP client will also take at open (its parser decodes the user
/// info, which `valid_url` does not inspect): `set` and open must agree.
pub(crate) fn valid_proxy_url(s: &str) -> bool {
    valid_url(s, PROXY_SCHEMES) && ureq::Proxy::new(s).is_ok()
}

/// An absolute URL of one of `schemes` (ignoring case) with a non-empty host and, if given, a
/// port from 1 to 65535; printable ASCII without spaces only. User info, path, query and
/// fragment are allowed and not inspected.
pub(crate) fn valid_url(s: &str, schemes: &[&str]) -> bool {
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

// ---------------------------------------------------------------------------------------------
// Headers and names in messages
// ---------------------------------------------------------------------------------------------

/// RFC 9110 tchar.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A header name: an HTTP token of at most `MAX_HEADER_NAME_BYTES`, not reserved.
pub(crate) fn check_header_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_HEADER_NAME_BYTES || !name.bytes().all(is_tchar) {
        return Err(Error::invalid_config(format!(
            "{HEADER_PREFIX}{} does not name a valid header: NAME must be an HTTP token of 1 to \
             {MAX_HEADER_NAME_BYTES} letters, digits or !#$%&'*+-.^_`|~",
            printable(name)
        )));
    }
    if let Some(reserved) = reserved_header(name) {
        return Err(Error::invalid_config(format!(
            "{HEADER_PREFIX}{name} is reserved: edgebuf sets {reserved} itself"
        )));
    }
    Ok(())
}

/// A header value: no CR, LF, NUL or other control character (tab allowed), at most
/// `MAX_HEADER_VALUE_BYTES`. The message names the header, never the value.
pub(crate) fn check_header_value(name: &str, value: &str) -> Result<()> {
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

/// A resource attribute name: 1 to `MAX_RESOURCE_NAME_BYTES` of printable ASCII without spaces,
/// not one edgebuf sets itself.
pub(crate) fn check_resource_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > MAX_RESOURCE_NAME_BYTES
        || !name.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(Error::invalid_config(format!(
            "{RESOURCE_PREFIX}{} does not name a valid attribute: NAME must be 1 to \
             {MAX_RESOURCE_NAME_BYTES} bytes of printable ASCII without spaces",
            printable(name)
        )));
    }
    if RESERVED_RESOURCE_ATTRIBUTES.contains(&name) {
        return Err(Error::invalid_config(format!(
            "{RESOURCE_PREFIX}{name} is reserved: edgebuf sets {name} itself (source.id)"
        )));
    }
    Ok(())
}

/// A resource attribute value: 1 to `MAX_RESOURCE_VALUE_BYTES` without control characters
/// (tab allowed).
pub(crate) fn check_resource_value(name: &str, value: &str) -> Result<()> {
    let ok = !value.is_empty()
        && value.len() <= MAX_RESOURCE_VALUE_BYTES
        && !value.chars().any(|c| c != '\t' && c.is_control());
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_config(format!(
            "{RESOURCE_PREFIX}{} must have a value of at most {MAX_RESOURCE_VALUE_BYTES} bytes \
             without CR, LF, NUL or other control characters",
            printable(name)
        )))
    }
}

pub(crate) fn too_many_resource_attributes() -> Error {
    Error::invalid_config(format!(
        "otlp.resource.NAME: at most {MAX_RESOURCE_ATTRIBUTES} attributes can be set"
    ))
}

pub(crate) fn too_many_headers() -> Error {
    Error::invalid_config(format!(
        "http.header.NAME: at most {MAX_HEADERS} headers can be set"
    ))
}

/// A name (key, header name, variable name) made safe for a message: non-printable characters
/// become `?`, and it is cut to 100 characters.
pub(crate) fn printable(s: &str) -> String {
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
// Source id and redaction
// ---------------------------------------------------------------------------------------------

/// Printable ASCII only, trimmed, at most 128 bytes; `None` when nothing is left.
pub(crate) fn sanitize_source_id(raw: &str) -> Option<String> {
    let kept: String = raw.chars().filter(|c| (' '..='~').contains(c)).collect();
    let trimmed = kept.trim();
    // ASCII only, so any byte index is a char boundary.
    let cut = &trimmed[..trimmed.len().min(MAX_SOURCE_ID_BYTES)];
    let cut = cut.trim_end();
    (!cut.is_empty()).then(|| cut.to_string())
}

/// The host name, sanitised; "edgebuf" when none can be read.
pub(crate) fn host_name() -> String {
    for path in ["/proc/sys/kernel/hostname", "/etc/hostname"] {
        if let Some(name) = read_host_name_file(Path::new(path)) {
            return name;
        }
    }
    "edgebuf".to_string()
}

/// The first line of a host name file that is neither empty nor a comment, sanitised.
pub(crate) fn read_host_name_file(path: &Path) -> Option<String> {
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
pub(crate) fn redact_url(url: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_id_sanitising() {
        assert_eq!(sanitize_source_id("host\n"), Some("host".to_string()));
        assert_eq!(sanitize_source_id("  \n"), None);
        assert_eq!(sanitize_source_id("hé\u{0}st"), Some("hst".to_string()));
        let long = format!("{} x", "a".repeat(127));
        assert_eq!(sanitize_source_id(&long), Some("a".repeat(127)));
    }
}
