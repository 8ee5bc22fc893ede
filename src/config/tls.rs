//! `[server] tls_cert` / `tls_key`: the certificate chain and private key aloud serves HTTPS
//! with, read from PEM files and checked (the key can sign, and it matches the certificate)
//! when the config loads, so `check-config` and a reload catch a bad pair before it is used.

use rustls::crypto::ring::default_provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The server's identity, loaded: the files it came from and the key rustls signs with.
#[derive(Clone, Debug)]
pub struct ServerTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub certified: Arc<CertifiedKey>,
}

/// Why a certificate or key file cannot be used; each names its file.
#[derive(Debug, thiserror::Error)]
pub enum TlsFileError {
    #[error("cannot read {}: {error}", file.display())]
    Read {
        file: PathBuf,
        error: std::io::Error,
    },
    #[error("{} holds no PEM certificate (\"-----BEGIN CERTIFICATE-----\")", file.display())]
    NoCertificate { file: PathBuf },
    #[error("{} is not valid PEM: {error}", file.display())]
    BadPem { file: PathBuf, error: String },
    #[error("{} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)", file.display())]
    NoKey { file: PathBuf },
    #[error("the key in {} cannot be used: {error}", file.display())]
    BadKey { file: PathBuf, error: rustls::Error },
    #[error("the key in {} does not match the certificate in {}: {error}", key.display(), cert.display())]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        error: rustls::Error,
    },
}

impl TlsFileError {
    /// Whether the certificate file (rather than the key file) is at fault.
    pub fn is_cert(&self, cert: &Path) -> bool {
        match self {
            TlsFileError::Read { file, .. }
            | TlsFileError::NoCertificate { file }
            | TlsFileError::BadPem { file, .. } => file == cert,
            _ => false,
        }
    }
}

fn read(file: &Path) -> Result<Vec<u8>, TlsFileError> {
    std::fs::read(file).map_err(|error| TlsFileError::Read {
        file: file.to_owned(),
        error,
    })
}

/// Reads the chain (leaf first, as PEM files list it) and the key, and checks they belong
/// together.
pub fn load(cert_file: &Path, key_file: &Path) -> Result<ServerTls, TlsFileError> {
    let pem = read(cert_file)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsFileError::BadPem {
            file: cert_file.to_owned(),
            error: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsFileError::NoCertificate {
            file: cert_file.to_owned(),
        });
    }
    let pem = read(key_file)?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsFileError::NoKey {
            file: key_file.to_owned(),
        },
        e => TlsFileError::BadPem {
            file: key_file.to_owned(),
            error: e.to_string(),
        },
    })?;
    let signing = default_provider()
        .key_provider
        .load_private_key(key)
        .map_err(|error| TlsFileError::BadKey {
            file: key_file.to_owned(),
            error,
        })?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|error| TlsFileError::Mismatch {
            cert: cert_file.to_owned(),
            key: key_file.to_owned(),
            error,
        })?;
    Ok(ServerTls {
        cert_file: cert_file.to_owned(),
        key_file: key_file.to_owned(),
        certified: Arc::new(certified),
    })
}
