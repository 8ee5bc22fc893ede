//! Who may see the dashboard when `[admin] token_env` is set: `Authorization: Bearer`, the
//! `access_token` query parameter (a browser's address bar), or the cookie that
//! `/dashboard?access_token=…` sets. The cookie holds an HMAC of the token under a key made at
//! start (so it never holds the token, and a restart asks again); the query form is answered
//! with a redirect to the bare URL, so the token leaves the address bar and history. The admin
//! listener logs no paths, so the token never reaches a log.
//!
//! Without a token, only requests addressed to an IP address or `localhost` pass: a web page
//! whose own name was rebound to this address (DNS rebinding) would otherwise read the requests
//! in flight, whose ids open their side channel and kept answers.

use crate::config::tokens;
use http::{HeaderMap, HeaderValue, header};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// The cookie's name; it is sent back only to `/dashboard` paths.
pub const COOKIE: &str = "aloud_dashboard";

/// The token and the key its cookie is signed with.
pub struct Gate {
    token: Option<String>,
    /// `None` when the system gave no randomness (no cookies then).
    key: Option<hmac::Key>,
}

/// How a request proved itself.
#[derive(Debug, PartialEq, Eq)]
pub enum Pass {
    /// No token is set, or a header or cookie carried it.
    Open,
    /// The `access_token` parameter carried it: the page answers with the cookie.
    Query,
    Denied,
    /// No token is set and the request named this host (not an IP address or `localhost`).
    Named(String),
}

impl Gate {
    pub fn new(token: Option<String>) -> Gate {
        let mut bytes = [0u8; 32];
        // Without the system's randomness a key could be guessed: cookies are then off, and
        // the page needs the token each time.
        let cookies = SystemRandom::new().fill(&mut bytes).is_ok();
        if !cookies {
            tracing::warn!("no system randomness: dashboard cookies are off");
        }
        Gate {
            token,
            key: cookies.then(|| hmac::Key::new(hmac::HMAC_SHA256, &bytes)),
        }
    }

    /// Whether the request may pass, and how.
    pub fn check(&self, headers: &HeaderMap, query: Option<&str>) -> Pass {
        let Some(token) = &self.token else {
            return match foreign_host(headers) {
                Some(host) => Pass::Named(host),
                None => Pass::Open,
            };
        };
        let known = std::slice::from_ref(token);
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(tokens::strip_bearer)
            .unwrap_or("");
        if tokens::find(bearer, known).is_some() {
            return Pass::Open;
        }
        if cookie(headers).is_some_and(|tag| self.verify(tag)) {
            return Pass::Open;
        }
        let param = query.and_then(access_token).unwrap_or_default();
        if tokens::find(&param, known).is_some() {
            return Pass::Query;
        }
        Pass::Denied
    }

    fn verify(&self, tag_hex: &str) -> bool {
        let (Some(token), Some(key), Some(tag)) = (&self.token, &self.key, hex(tag_hex)) else {
            return false;
        };
        hmac::verify(key, token.as_bytes(), &tag).is_ok()
    }

    /// The `Set-Cookie` value that lets this browser in until the process restarts.
    pub fn cookie(&self) -> Option<HeaderValue> {
        let (token, key) = (self.token.as_ref()?, self.key.as_ref()?);
        let tag = hmac::sign(key, token.as_bytes());
        let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        HeaderValue::from_str(&format!(
            "{COOKIE}={hex}; Path=/dashboard; HttpOnly; SameSite=Strict"
        ))
        .ok()
    }
}

/// The `access_token` query parameter, percent-decoded.
fn access_token(query: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        (name == "access_token").then(|| tokens::percent_decode(value))
    })
}

/// The `Host` the request names, when it is neither an IP address nor `localhost` (nor below
/// it). No `Host` (HTTP/1.0) passes: browsers always send one.
fn foreign_host(headers: &HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST)?;
    let text = host.to_str().unwrap_or("").trim();
    // `[::1]:9787`, `127.0.0.1:9787`, `localhost`.
    let name = match text.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => text.rsplit_once(':').map_or(text, |(name, _)| name),
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let loopback_name = name == "localhost" || name.ends_with(".localhost");
    if loopback_name || name.parse::<std::net::IpAddr>().is_ok() {
        return None;
    }
    Some(String::from_utf8_lossy(host.as_bytes()).into_owned())
}

fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

fn hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: header::HeaderName, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn a_header_a_query_or_the_signed_cookie_passes_and_nothing_else_does() {
        let gate = Gate::new(Some("s3cret".into()));
        let none = HeaderMap::new();
        assert_eq!(gate.check(&none, None), Pass::Denied);
        let bearer = with(header::AUTHORIZATION, "Bearer s3cret");
        assert_eq!(gate.check(&bearer, None), Pass::Open);
        assert_eq!(
            gate.check(&none, Some("a=1&access_token=s3cret")),
            Pass::Query
        );
        assert_eq!(gate.check(&none, Some("access_token=wrong")), Pass::Denied);
        let set = gate.cookie().unwrap();
        let pair = set.to_str().unwrap().split(';').next().unwrap().to_owned();
        assert!(!pair.contains("s3cret"), "the cookie never holds the token");
        assert_eq!(gate.check(&with(header::COOKIE, &pair), None), Pass::Open);
        let forged = format!("{COOKIE}={}", "00".repeat(32));
        assert_eq!(
            gate.check(&with(header::COOKIE, &forged), None),
            Pass::Denied
        );
        // Another process's cookie (another key) does not pass.
        let other = Gate::new(Some("s3cret".into())).cookie().unwrap();
        let other = other
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        assert_eq!(
            gate.check(&with(header::COOKIE, &other), None),
            Pass::Denied
        );
    }

    #[test]
    fn without_a_token_only_addresses_and_localhost_pass() {
        let gate = Gate::new(None);
        assert_eq!(gate.check(&HeaderMap::new(), None), Pass::Open);
        for host in [
            "127.0.0.1:9787",
            "localhost",
            "LOCALHOST.:1",
            "[::1]:9787",
            "10.1.2.3",
        ] {
            assert_eq!(
                gate.check(&with(header::HOST, host), None),
                Pass::Open,
                "{host}"
            );
        }
        for host in [
            "evil.example:9787",
            "127.0.0.1.nip.io",
            "localhost.evil.example",
        ] {
            assert_eq!(
                gate.check(&with(header::HOST, host), None),
                Pass::Named(host.to_owned())
            );
        }
    }
}
