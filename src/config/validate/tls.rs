//! `[server] tls_cert` / `tls_key`: both or neither, and a pair that loads.

use super::Ctx;
use crate::config::ConfigError;
use crate::config::tls::{self, ServerTls};
use std::path::Path;
use toml::Spanned;

pub(super) fn server_tls(
    cert: Option<&Spanned<String>>,
    key: Option<&Spanned<String>>,
    ctx: &Ctx<'_>,
) -> Result<Option<ServerTls>, ConfigError> {
    let (cert, key) = match (cert, key) {
        (None, None) => return Ok(None),
        (Some(cert), Some(key)) => (cert, key),
        (Some(cert), None) => {
            return Err(ctx.err(
                Some(cert.span()),
                "server.tls_key",
                "server.tls_cert is set but server.tls_key is not: HTTPS needs both (PEM files)",
            ));
        }
        (None, Some(key)) => {
            return Err(ctx.err(
                Some(key.span()),
                "server.tls_cert",
                "server.tls_key is set but server.tls_cert is not: HTTPS needs both (PEM files)",
            ));
        }
    };
    let cert_path = Path::new(cert.get_ref());
    tls::load(cert_path, Path::new(key.get_ref()))
        .map(Some)
        .map_err(|e| {
            let (span, name) = if e.is_cert(cert_path) {
                (cert.span(), "server.tls_cert")
            } else {
                (key.span(), "server.tls_key")
            };
            ctx.err(Some(span), name, e.to_string())
        })
}
