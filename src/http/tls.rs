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
    use super::super::testkit::*;
    use super::super::{Outcome, Sender};
    use super::*;
    use crate::error::Code;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use std::io::{BufReader, Write};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

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
        let sp =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
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
        let mut cp = rcgen::CertificateParams::new(vec!["device-7".to_string()]).expect("params");
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
