//! The one set of test certificates, made at run time with rcgen: a CA, a server certificate
//! for 127.0.0.1 and localhost, and client certificates, all signed by the CA; as PEM text,
//! as files, and as rustls configurations for a test server or a raw test client.

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::path::Path;
use std::sync::Arc;

pub struct Pki {
    pub ca_pem: String,
    pub ca_der: CertificateDer<'static>,
    pub server_pem: String,
    pub server_key_pem: String,
    ca_params: rcgen::CertificateParams,
    ca_key: rcgen::KeyPair,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: Vec<u8>,
}

/// A client certificate signed by a `Pki`'s CA.
pub struct ClientCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: CertificateDer<'static>,
    pub key_der: Vec<u8>,
}

/// The PEM files of a `Pki` and one client certificate, written in a directory.
pub struct PkiFiles {
    pub ca: String,
    pub server_cert: String,
    pub server_key: String,
    pub client_cert: String,
    pub client_key: String,
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

/// The PEM of a CA that signed nothing here.
pub fn other_ca_pem() -> String {
    ca("another CA").2.pem()
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write a test file");
    p.to_str().expect("a UTF-8 path").to_string()
}

impl Pki {
    pub fn new() -> Pki {
        let (ca_params, ca_key, ca_cert) = ca("edgebuf test CA");
        let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
        let mut sp =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .expect("params");
        sp.distinguished_name
            .push(rcgen::DnType::CommonName, "127.0.0.1");
        let sk = rcgen::KeyPair::generate().expect("key");
        let sc = sp.signed_by(&sk, &issuer).expect("server cert");
        Pki {
            ca_pem: ca_cert.pem(),
            ca_der: ca_cert.der().clone(),
            server_pem: sc.pem(),
            server_key_pem: sk.serialize_pem(),
            ca_params,
            ca_key,
            server_chain: vec![sc.der().clone()],
            server_key: sk.serialize_der(),
        }
    }

    /// A client certificate signed by this CA, for `name`.
    pub fn client(&self, name: &str) -> ClientCert {
        let issuer = rcgen::Issuer::from_params(&self.ca_params, &self.ca_key);
        let k = rcgen::KeyPair::generate().expect("key");
        let mut p = rcgen::CertificateParams::new(vec![name.to_string()]).expect("params");
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        let c = p.signed_by(&k, &issuer).expect("client cert");
        ClientCert {
            cert_pem: c.pem(),
            key_pem: k.serialize_pem(),
            cert_der: c.der().clone(),
            key_der: k.serialize_der(),
        }
    }

    /// Writes the CA, the server certificate and key, and `client`'s certificate and key as
    /// PEM files in `dir`.
    pub fn write(&self, dir: &Path, client: &ClientCert) -> PkiFiles {
        PkiFiles {
            ca: write_file(dir, "ca.pem", &self.ca_pem),
            server_cert: write_file(dir, "server.pem", &self.server_pem),
            server_key: write_file(dir, "server.key", &self.server_key_pem),
            client_cert: write_file(dir, "client.pem", &client.cert_pem),
            client_key: write_file(dir, "client.key", &client.key_pem),
        }
    }

    /// A server configuration; with `require_client_cert`, only clients with a certificate
    /// of this CA get through the handshake.
    pub fn server_config(&self, require_client_cert: bool) -> Arc<rustls::ServerConfig> {
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions");
        let builder = if require_client_cert {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(self.ca_der.clone()).expect("root");
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .build()
            .expect("verifier");
            builder.with_client_cert_verifier(v)
        } else {
            builder.with_no_client_auth()
        };
        Arc::new(
            builder
                .with_single_cert(
                    self.server_chain.clone(),
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key.clone())),
                )
                .expect("server config"),
        )
    }

    /// A client configuration trusting this CA, presenting `client` when given.
    pub fn client_config(&self, client: Option<&ClientCert>) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).expect("root");
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots);
        Arc::new(match client {
            Some(c) => builder
                .with_client_auth_cert(
                    vec![c.cert_der.clone()],
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(c.key_der.clone())),
                )
                .expect("client config"),
            None => builder.with_no_client_auth(),
        })
    }
}
