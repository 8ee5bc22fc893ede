//! The rustls client config for one route: webpki's roots, the system's trust store, the
//! route's `ca_file`, and its client certificate when it has one.

use crate::config::Connect;
use rustls::{ClientConfig, RootCertStore};
use std::sync::{Arc, OnceLock};

/// webpki's roots and the system's, read once per process: a missing or partly unreadable
/// system store is logged, never fatal (webpki's roots still apply).
fn base_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::warn!(error = %e, "upstream TLS: part of the system trust store is unreadable");
        }
        let (added, ignored) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            tracing::warn!(
                "upstream TLS: no system trust store found; only webpki roots (and ca_file) are trusted"
            );
        }
        tracing::debug!(
            webpki = webpki_roots::TLS_SERVER_ROOTS.len(),
            system = added,
            ignored,
            "upstream TLS roots loaded"
        );
        roots
    })
}

/// A client config for a route (ALPN is set by the connector builder).
pub fn client_config(connect: &Connect) -> Result<ClientConfig, String> {
    let mut roots = base_roots().clone();
    for cert in &connect.ca {
        roots
            .add(cert.clone())
            .map_err(|e| format!("ca_file: not a usable CA certificate: {e}"))?;
    }
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots);
    match &connect.identity {
        None => Ok(builder.with_no_client_auth()),
        Some(id) => builder
            .with_client_auth_cert(id.certs.clone(), id.key.clone_key())
            .map_err(|e| format!("client_cert/client_key: {e}")),
    }
}
