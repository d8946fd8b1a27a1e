//! TLS: the roots (built-in WebPKI, or only those of `tls.ca_file`), the client certificate of
//! `tls.cert_file` + `tls.key_file`, and the probe that makes a mismatched pair an error at
//! open. TLS verification is never turned off.

use std::net::{TcpListener, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::Duration;

use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};
use ureq::Agent;

use crate::config::Config;
use crate::error::{Error, Result};

/// The TLS configuration; the bool says whether a client certificate is set.
pub(super) fn tls_config(cfg: &Config) -> Result<(TlsConfig, bool)> {
    let mut builder = TlsConfig::builder();
    if let Some(path) = &cfg.tls_ca_file {
        let pem = read_file(path, "tls.ca_file")?;
        let certs = pem_certificates(&pem, "tls.ca_file")?;
        builder = builder.root_certs(RootCerts::new_with_certs(&certs));
    }
    let client = match cfg.tls_client_files()? {
        None => false,
        Some((cert, key)) => {
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
pub(super) fn probe_client_cert(tls: &TlsConfig) -> Result<()> {
    let Ok(listener) = TcpListener::bind(("127.0.0.1", 0)) else {
        return Ok(()); // no loopback: the guard in send() still covers it
    };
    let Ok(addr) = listener.local_addr() else {
        return Ok(());
    };
    // Through the signal-blocking spawn: Sender::new runs on the caller's thread, whose
    // signal mask a plain spawn would inherit.
    let server = crate::sys::spawn("edgebuf-tls-probe", move || {
        // Accept one connection and close it at once.
        let _ = listener.accept();
    });
    let Ok(server) = server else {
        return Ok(());
    };
    // The agent resolves the IP literal inline: no resolver thread either.
    let agent = super::agent::new(
        &Agent::config_builder()
            .proxy(None)
            .tls_config(tls.clone())
            .timeout_global(Some(Duration::from_secs(2)))
            .http_status_as_error(false)
            .build(),
    );
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
    use super::super::test_pki::{other_ca_pem, Pki};
    use super::super::test_server::{Act, Server};
    use super::super::tests::{cfg, recs, sender};
    use super::super::{Outcome, Sender};
    use super::*;
    use crate::error::Code;

    /// A TLS server answering 200 to every request, on as many connections as come; with
    /// `require_client_cert`, only clients with a certificate of the test CA get through.
    fn tls_server(p: &Pki, require_client_cert: bool) -> Server {
        Server::start_tls(p.server_config(require_client_cert), |_| Act::status(200))
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
        let p = Pki::new();
        let server = tls_server(&p, false);
        let dir = tempdir("ca");
        let url = format!("https://localhost:{}/ingest", server.port);

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
        assert_eq!(server.hits()[0].body, s.encode_body(&r, None));
        // Kept alive over TLS too.
        assert_eq!(s.send(&r).outcome, Outcome::Delivered);
        assert_eq!(
            server.hits().iter().map(|q| q.conn).collect::<Vec<_>>(),
            [1, 1]
        );

        // Another CA: verification fails, which is a retry, never a delivery.
        let mut c = cfg(&url);
        c.tls_ca_file = Some(write(&dir, "other.pem", &other_ca_pem()));
        let mut s = sender(&c);
        let a = s.send(&r);
        assert_eq!((a.outcome, a.http_status), (Outcome::Retry, 0), "{a:?}");
        assert!(a.detail.contains("TLS"), "{a:?}");

        // The built-in roots do not know the test CA either.
        let mut s = sender(&cfg(&url));
        assert_eq!(s.send(&r).outcome, Outcome::Retry);
        assert_eq!(server.count(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn client_certificate_for_mutual_tls() {
        let p = Pki::new();
        let server = tls_server(&p, true);
        let dir = tempdir("mtls");
        let url = server.url();
        let cc = p.client("device-7");
        let ca_file = write(&dir, "ca.pem", &p.ca_pem);
        let cert_file = write(&dir, "client.pem", &cc.cert_pem);
        let key_file = write(&dir, "client.key", &cc.key_pem);
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
        let wrong = p.client("device-8");
        c.tls_key_file = Some(write(&dir, "wrong.key", &wrong.key_pem));
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
        c.tls_cert_file = Some(write(&dir, "c.pem", &Pki::new().ca_pem));
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
