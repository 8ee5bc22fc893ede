//! A test CA and certificates it signs (rcgen), written as PEM files in a temp dir, and rustls
//! clients that trust that CA.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, PublicKeyData,
};
use std::path::PathBuf;
use std::sync::Arc;

/// A CA of the test's own.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    pub dir: tempfile::TempDir,
}

/// A certificate the CA signed, with its key, as PEM files.
pub struct ServerCert {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// base64 of the SHA-256 of the leaf's SubjectPublicKeyInfo (Chromium's
    /// `--ignore-certificate-errors-spki-list`).
    pub spki_sha256: String,
    pub der: rustls::pki_types::CertificateDer<'static>,
}

impl TestCa {
    pub fn new() -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "aloud test CA");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), issuer.pem()).unwrap();
        TestCa { issuer, dir }
    }

    /// The CA certificate's PEM file.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A server certificate for 127.0.0.1 and localhost, written as `NAME.pem` and
    /// `NAME-key.pem` (the chain file holds the leaf, then the CA).
    pub fn server_cert(&self, name: &str) -> ServerCert {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("aloud test {name}"));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let cert_file = self.dir.path().join(format!("{name}.pem"));
        let key_file = self.dir.path().join(format!("{name}-key.pem"));
        std::fs::write(&cert_file, format!("{}{}", cert.pem(), self.issuer.pem())).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        let spki = ring::digest::digest(&ring::digest::SHA256, &key.subject_public_key_info());
        ServerCert {
            cert: cert_file,
            key: key_file,
            spki_sha256: base64::engine::general_purpose::STANDARD.encode(spki.as_ref()),
            der: cert.der().clone(),
        }
    }

    /// A rustls client trusting this CA alone, offering `alpn` (e.g. `["h2", "http/1.1"]`).
    pub fn client(&self, alpn: &[&str]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.issuer.der().clone()).unwrap();
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        Arc::new(config)
    }
}

/// `[server]` lines serving `cert` over HTTPS.
pub fn server_toml(cert: &ServerCert) -> String {
    format!(
        "tls_cert = {:?}\ntls_key = {:?}\n",
        cert.cert.display().to_string(),
        cert.key.display().to_string()
    )
}
