//! `ca_file`, `client_cert`/`client_key` and `proxy`, in `[upstream]` or on a route (which
//! wins, key by key; the certificate and key always come as a pair from one place).

use super::Ctx;
use crate::config::connect::{self, Connect, Identity};
use crate::config::raw::RawLimits;
use crate::config::{ConfigError, Env, Upstream};
use std::path::Path;
use std::sync::Arc;
use toml::Spanned;

/// The connection keys of one level, with their files read.
#[derive(Default)]
pub(super) struct Level {
    ca: Option<Vec<rustls_pki_types::CertificateDer<'static>>>,
    identity: Option<Arc<Identity>>,
    proxy: Option<Spanned<String>>,
}

/// Reads one level's files: `[upstream]` (key prefix `upstream`) or a route (`routes[i]`).
pub(super) fn level(raw: &mut RawLimits, at: &str, ctx: &Ctx<'_>) -> Result<Level, ConfigError> {
    let key = |k: &str| format!("{at}.{k}");
    let ca = match &raw.ca_file {
        None => None,
        Some(f) => {
            let path = Path::new(f.get_ref());
            let certs = connect::load_certs(path)
                .and_then(|c| connect::check_roots(&c, path).map(|()| c))
                .map_err(|m| ctx.err(Some(f.span()), key("ca_file"), m))?;
            Some(certs)
        }
    };
    let identity = match (&raw.client_cert, &raw.client_key) {
        (None, None) => None,
        (Some(cert), Some(k)) => {
            let id = connect::load_identity(Path::new(cert.get_ref()), Path::new(k.get_ref()))
                .map_err(|m| ctx.err(Some(cert.span()), key("client_cert"), m))?;
            Some(Arc::new(id))
        }
        (Some(one), None) | (None, Some(one)) => {
            return Err(ctx.err(
                Some(one.span()),
                key(if raw.client_cert.is_some() {
                    "client_cert"
                } else {
                    "client_key"
                }),
                "client_cert and client_key go together: set both (mTLS) or neither",
            ));
        }
    };
    Ok(Level {
        ca,
        identity,
        proxy: raw.proxy.take(),
    })
}

/// A route's settings: its own level over `[upstream]`'s; the proxy from the keys or the
/// environment. The built-in simulator is always reached directly.
pub(super) fn connect(
    own: Level,
    base: &Level,
    upstream: (&Upstream, &Spanned<String>),
    at: &str,
    ctx: &Ctx<'_>,
    env: &dyn Env,
) -> Result<Connect, ConfigError> {
    let Upstream::Http(target) = upstream.0 else {
        return Ok(Connect::default());
    };
    let (explicit, key) = match (&own.proxy, &base.proxy) {
        (Some(p), _) => (Some(p), format!("{at}.proxy")),
        (None, Some(p)) => (Some(p), "upstream.proxy".to_owned()),
        (None, None) => (None, format!("{at}.upstream")),
    };
    let proxy = connect::resolve_proxy(target, explicit.map(|p| p.get_ref().as_str()), env)
        .map_err(|m| {
            let span = explicit.map_or_else(|| upstream.1.span(), |p| p.span());
            ctx.err(Some(span), key, m)
        })?;
    Ok(Connect {
        ca: own.ca.or_else(|| base.ca.clone()).unwrap_or_default(),
        identity: own.identity.or_else(|| base.identity.clone()),
        proxy,
    })
}
