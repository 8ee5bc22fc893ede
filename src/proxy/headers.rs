//! Header hygiene on both legs: hop-by-hop removal, aloud's own headers, credentials.

use crate::apis::Api;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Hop-by-hop headers (RFC 9110 §7.6.1 plus the de-facto ones); never forwarded on either leg.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Client headers that carry provider credentials.
pub const CREDENTIAL_HEADERS: [&str; 4] =
    ["authorization", "x-api-key", "api-key", "x-goog-api-key"];

/// The header a client uses to present an aloud client token when its credential is the provider's.
pub const CLIENT_TOKEN_HEADER: &str = "aloud-token";

/// Removes hop-by-hop headers, including every header the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Prepares client request headers for the upstream: no hop-by-hop, no `Host` (the client sets
/// it from the upstream URI), no `Expect` (aloud answered it), and no `Aloud-*` header.
pub fn request_headers_for_upstream(mut headers: HeaderMap) -> HeaderMap {
    strip_hop_by_hop(&mut headers);
    headers.remove(header::HOST);
    headers.remove(header::EXPECT);
    let own: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("aloud-"))
        .cloned()
        .collect();
    for name in own {
        headers.remove(name);
    }
    headers
}

/// Whether the client sent any provider credential, in a header or Gemini's `key` query parameter.
pub fn has_credentials(headers: &HeaderMap, query: Option<&str>) -> bool {
    CREDENTIAL_HEADERS.iter().any(|h| headers.contains_key(*h))
        || query.is_some_and(|q| q.split('&').any(|kv| kv.starts_with("key=")))
}

/// Adds the route's key in the header its api expects. Returns false if the key is not a valid
/// header value (never logged: it is a secret).
pub fn inject_credential(headers: &mut HeaderMap, api: Api, key: &str) -> bool {
    let (name, value) = api.credential_header(key);
    match HeaderValue::from_str(&value) {
        Ok(mut v) => {
            v.set_sensitive(true);
            headers.insert(name, v);
            true
        }
        Err(_) => false,
    }
}

/// Finds a client token among the request's headers. A token sent as a provider credential is
/// removed, since it is aloud's and not the provider's; `Aloud-Token` is dropped later anyway.
pub fn take_client_token(headers: &mut HeaderMap, tokens: &[String]) -> bool {
    let matches = |v: &HeaderValue| {
        let v = v.to_str().unwrap_or_default();
        let v = v.strip_prefix("Bearer ").unwrap_or(v).trim();
        tokens
            .iter()
            .any(|t| constant_time_eq(t.as_bytes(), v.as_bytes()))
    };
    if headers.get(CLIENT_TOKEN_HEADER).is_some_and(matches) {
        return true;
    }
    for name in CREDENTIAL_HEADERS {
        if headers.get(name).is_some_and(matches) {
            headers.remove(name);
            return true;
        }
    }
    false
}

/// Compares secrets without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether a response body is an event stream (gets no-cache and no proxy buffering).
pub fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("text/event-stream")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_hop_by_hop_and_connection_named_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        h.insert("aloud-progress", HeaderValue::from_static("off"));
        h.insert("host", HeaderValue::from_static("evil.example"));
        let h = request_headers_for_upstream(h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn client_tokens_sent_as_credentials_are_consumed() {
        let tokens = vec!["tok-1".to_owned()];
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Bearer tok-1"));
        assert!(take_client_token(&mut h, &tokens));
        assert!(!h.contains_key("authorization"));
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Bearer sk-real"));
        h.insert("aloud-token", HeaderValue::from_static("tok-1"));
        assert!(take_client_token(&mut h, &tokens));
        assert!(h.contains_key("authorization"));
        let mut h = HeaderMap::new();
        h.insert("x-api-key", HeaderValue::from_static("nope"));
        assert!(!take_client_token(&mut h, &tokens));
    }

    #[test]
    fn gemini_key_query_counts_as_credentials() {
        assert!(has_credentials(&HeaderMap::new(), Some("alt=sse&key=abc")));
        assert!(!has_credentials(
            &HeaderMap::new(),
            Some("alt=sse&monkey=1")
        ));
    }
}
