//! How a route reaches its upstream: extra trust roots (`ca_file`), a client certificate for
//! mTLS (`client_cert`, `client_key`), and an egress proxy (`proxy`, or the environment's).
//!
//! Everything here is read and checked at load time, so `check-config` finds a missing file, a
//! PEM without certificates, a key that does not match its certificate or a proxy URL aloud
//! cannot use; the proxy layer only builds connectors from it.

use super::Env;
use super::HttpUpstream;
use http::{HeaderValue, Uri};
use hyper_util::client::proxy::matcher::Matcher;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

/// A route's connection settings; the default (nothing set) is a direct connection trusting
/// webpki's and the system's roots.
#[derive(Clone, Debug, Default)]
pub struct Connect {
    /// Certificates from `ca_file`, trusted besides webpki's and the system's roots.
    pub ca: Vec<CertificateDer<'static>>,
    /// The client certificate chain and key presented when the upstream asks (mTLS).
    pub identity: Option<Arc<Identity>>,
    /// The HTTP CONNECT proxy every connection to the upstream goes through.
    pub proxy: Option<EgressProxy>,
}

/// A client certificate chain and its private key (the key's `Debug` never shows it).
#[derive(Debug)]
pub struct Identity {
    pub certs: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

/// An HTTP CONNECT proxy, its credentials already a `Proxy-Authorization` value.
#[derive(Clone, Debug)]
pub struct EgressProxy {
    /// `http://host:port/`, without credentials: what logs and errors may show.
    pub uri: Uri,
    /// `Basic ...` from the URL's user and password, marked sensitive.
    pub auth: Option<HeaderValue>,
    /// Where it came from: `proxy`, or the environment variable that named it.
    pub source: &'static str,
}

/// Reads a PEM file of one or more certificates (`ca_file`, `client_cert`).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read certificates from {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(certs)
}

/// Checks that `certs` are usable as trust anchors.
pub fn check_roots(certs: &[CertificateDer<'static>], path: &Path) -> Result<(), String> {
    let mut store = rustls::RootCertStore::empty();
    for c in certs {
        store
            .add(c.clone())
            .map_err(|e| format!("{}: not a usable CA certificate: {e}", path.display()))?;
    }
    Ok(())
}

/// Reads a client certificate chain and its key (PKCS#8, PKCS#1 RSA or SEC1 EC, in PEM) and
/// checks that the key is one rustls can sign with and matches the certificate.
pub fn load_identity(cert: &Path, key: &Path) -> Result<Identity, String> {
    let certs = load_certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        format!(
            "cannot read a private key (PKCS#8, RSA or EC, in PEM) from {}: {e}",
            key.display()
        )
    })?;
    let provider = rustls::crypto::ring::default_provider();
    rustls::sign::CertifiedKey::from_der(certs.clone(), key.clone_key(), &provider)
        .map_err(|e| format!("client_cert and client_key do not make a usable pair: {e}"))?;
    Ok(Identity { certs, key })
}

/// Environment variables naming a proxy, by upstream scheme, in the order they are read.
const HTTPS_VARS: [&str; 2] = ["HTTPS_PROXY", "https_proxy"];
const HTTP_VARS: [&str; 2] = ["HTTP_PROXY", "http_proxy"];
const NO_PROXY_VARS: [&str; 2] = ["NO_PROXY", "no_proxy"];

/// The proxy a route's connections go through: `explicit` (the `proxy` key) when set (`""`
/// meaning none), else `HTTPS_PROXY`/`HTTP_PROXY` by the upstream's scheme unless `NO_PROXY`
/// names its host.
pub fn resolve_proxy(
    upstream: &HttpUpstream,
    explicit: Option<&str>,
    env: &dyn Env,
) -> Result<Option<EgressProxy>, String> {
    let dst = Uri::builder()
        .scheme(upstream.scheme.clone())
        .authority(upstream.authority.clone())
        .path_and_query("/")
        .build()
        .map_err(|e| format!("bad upstream: {e}"))?;
    if let Some(text) = explicit {
        if text.is_empty() {
            return Ok(None);
        }
        return intercept(text, &dst, "proxy").map(Some);
    }
    let vars = if upstream.scheme == http::uri::Scheme::HTTPS {
        HTTPS_VARS
    } else {
        HTTP_VARS
    };
    let Some((var, text)) = vars.iter().find_map(|v| env.var(v).map(|t| (*v, t))) else {
        return Ok(None);
    };
    let no_proxy = NO_PROXY_VARS
        .iter()
        .find_map(|v| env.var(v))
        .unwrap_or_default();
    if bypassed(&no_proxy, upstream.authority.host()) {
        return Ok(None);
    }
    intercept(&text, &dst, var)
        .map(Some)
        .map_err(|e| format!("from environment variable {var}: {e}"))
}

/// Whether a `NO_PROXY` list names `host`: `*`, a domain and its subdomains (a leading `.` is
/// optional), an IP address or a CIDR network, as curl reads it (hyper-util's matcher).
pub fn bypassed(no_proxy: &str, host: &str) -> bool {
    // hyper-util's matcher treats `*` as a domain pattern only, so an IP-literal host would
    // escape it; curl (and the variable's users) mean "everything".
    if no_proxy.split(',').any(|e| e.trim() == "*") {
        return true;
    }
    let probe = format!("http://{host}/");
    let Ok(dst) = probe.parse::<Uri>() else {
        return false;
    };
    Matcher::builder()
        .http("http://probe.invalid:1")
        .no(no_proxy)
        .build()
        .intercept(&dst)
        .is_none()
}

/// Parses a proxy URL (`http://[user:password@]host[:port]`, or `host:port`) with hyper-util's
/// matcher, which also turns its credentials into a `Basic` value.
fn intercept(text: &str, dst: &Uri, source: &'static str) -> Result<EgressProxy, String> {
    let uri: Uri = text
        .parse()
        .map_err(|e| format!("{text:?} is not a proxy URL like \"http://proxy:3128\": {e}"))?;
    match uri.scheme_str() {
        None | Some("http") => {}
        Some("https") => {
            return Err(format!(
                "{text:?}: TLS to the proxy itself is not supported; use an http:// proxy \
                 (the tunnel through it still carries TLS to the upstream)"
            ));
        }
        Some(other) => {
            return Err(format!(
                "{text:?}: only HTTP CONNECT proxies (http://) are supported, not {other}://"
            ));
        }
    }
    if uri.authority().is_none_or(|a| a.host().is_empty()) {
        return Err(format!("{text:?} needs a host"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!("{text:?}: a proxy URL has no path or query"));
    }
    let matched = Matcher::builder()
        .http(text)
        .https(text)
        .build()
        .intercept(dst)
        .ok_or_else(|| format!("{text:?} is not a usable proxy URL"))?;
    Ok(EgressProxy {
        uri: matched.uri().clone(),
        auth: matched.basic_auth().cloned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::MapEnv;

    fn upstream(url: &str) -> HttpUpstream {
        let uri: Uri = url.parse().unwrap();
        HttpUpstream {
            scheme: uri.scheme().unwrap().clone(),
            authority: uri.authority().unwrap().clone(),
            base_path: String::new(),
        }
    }

    #[test]
    fn no_proxy_matches_like_curl() {
        let cases = [
            ("*", "api.openai.com", true),
            ("*", "10.1.2.3", true),
            (" * , x", "[::1]", true),
            ("openai.com", "openai.com", true),
            ("openai.com", "api.openai.com", true),
            (".openai.com", "api.openai.com", true),
            (".openai.com", "openai.com", true),
            ("OpenAI.com", "api.openai.COM", true),
            ("openai.com", "notopenai.com", false),
            ("openai.com", "openai.com.evil", false),
            ("a.com, b.com", "x.b.com", true),
            ("127.0.0.1", "127.0.0.1", true),
            ("127.0.0.1", "127.0.0.2", false),
            ("10.0.0.0/8", "10.200.3.4", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("::1", "[::1]", true),
            ("", "api.openai.com", false),
            ("localhost", "127.0.0.1", false),
        ];
        for (list, host, want) in cases {
            assert_eq!(bypassed(list, host), want, "NO_PROXY={list:?} host={host}");
        }
    }

    #[test]
    fn the_environment_is_read_by_scheme_and_no_proxy_wins() {
        let env = MapEnv::default()
            .with("HTTPS_PROXY", "http://u:p%40ss@proxy.corp:3128")
            .with("http_proxy", "proxy.corp:8080")
            .with("NO_PROXY", "internal.corp");
        let p = resolve_proxy(&upstream("https://api.openai.com"), None, &env)
            .unwrap()
            .unwrap();
        assert_eq!(p.uri, "http://proxy.corp:3128/");
        assert_eq!(p.source, "HTTPS_PROXY");
        // base64("u:p@ss")
        assert_eq!(p.auth.unwrap(), "Basic dTpwQHNz");
        let p = resolve_proxy(&upstream("http://vllm.example:8000"), None, &env)
            .unwrap()
            .unwrap();
        assert_eq!(
            (p.uri.to_string().as_str(), p.source),
            ("http://proxy.corp:8080/", "http_proxy")
        );
        assert!(p.auth.is_none());
        let bypass = resolve_proxy(&upstream("https://vllm.internal.corp"), None, &env).unwrap();
        assert!(bypass.is_none());
        assert!(
            resolve_proxy(&upstream("https://x.y"), None, &MapEnv::default())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn an_explicit_proxy_ignores_the_environment() {
        let env = MapEnv::default()
            .with("HTTPS_PROXY", "http://env:1")
            .with("NO_PROXY", "*");
        let up = upstream("https://api.openai.com");
        let p = resolve_proxy(&up, Some("http://mine:3128"), &env)
            .unwrap()
            .unwrap();
        assert_eq!(
            (p.uri.to_string().as_str(), p.source),
            ("http://mine:3128/", "proxy")
        );
        let env = MapEnv::default().with("HTTPS_PROXY", "http://env:1");
        assert!(resolve_proxy(&up, Some(""), &env).unwrap().is_none());
    }

    #[test]
    fn unusable_proxy_urls_are_refused_with_a_reason() {
        let up = upstream("https://api.openai.com");
        let env = MapEnv::default();
        for (url, says) in [
            ("https://proxy:443", "TLS to the proxy"),
            ("socks5://proxy:1080", "not socks5"),
            ("http://proxy:3128/path", "no path"),
            ("http://", "not a proxy URL"),
            ("http:// bad", "not a proxy URL"),
        ] {
            let e = resolve_proxy(&up, Some(url), &env).unwrap_err();
            assert!(e.contains(says), "{url}: {e}");
        }
        let env = MapEnv::default().with("https_proxy", "socks5h://p:1");
        let e = resolve_proxy(&up, None, &env).unwrap_err();
        assert!(e.contains("https_proxy"), "{e}");
    }
}
