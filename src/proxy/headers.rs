//! Header hygiene on both legs: hop-by-hop removal, aloud's own headers, credentials.

use crate::apis::Api;
use crate::config::tokens::{self, Owner};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Hop-by-hop headers (RFC 9110 §7.6.1 plus the de-facto ones); never forwarded on either leg.
/// `HeaderName`s, not strings: a removal by `&str` parses and hashes the name every time, and
/// this runs twice per request.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Client headers that carry provider credentials.
pub const CREDENTIAL_HEADERS: [&str; 4] =
    ["authorization", "x-api-key", "api-key", "x-goog-api-key"];

/// The header a client uses to present an aloud client token when its credential is the provider's.
pub const CLIENT_TOKEN_HEADER: &str = "aloud-token";

/// Prepares the upstream's response head for the client: no hop-by-hop header (nor any the
/// `Connection` header names), and no `Aloud-*` header. aloud speaks for itself on its own
/// headers: an upstream's `Aloud-Error-Code` (another aloud behind this one, say) would read as
/// this aloud's refusal.
///
/// A head with both `Transfer-Encoding` and `Content-Length` was framed by the former (RFC 9112
/// §6.3, which tells a proxy to drop the length): the length is dropped too, or the client would
/// frame the body by a length that does not describe it.
pub fn response_headers_for_client(headers: &mut HeaderMap) {
    if headers.contains_key(header::TRANSFER_ENCODING) {
        headers.remove(header::CONTENT_LENGTH);
    }
    strip(headers, |k| k.as_str().starts_with("aloud-"));
}

/// Prepares client request headers for the upstream: no hop-by-hop, no `Host` (the client sets
/// it from the upstream URI), no `Expect` (aloud answered it), and no `Aloud-*` header.
pub fn request_headers_for_upstream(mut headers: HeaderMap) -> HeaderMap {
    strip(&mut headers, |k| {
        k == header::HOST || k == header::EXPECT || k.as_str().starts_with("aloud-")
    });
    headers
}

/// Removes the hop-by-hop headers, those `Connection` names, and those `also` picks, in one
/// pass over the names present (most requests have none to remove: nothing is allocated then).
fn strip(headers: &mut HeaderMap, also: impl Fn(&HeaderName) -> bool) {
    let mut gone: Vec<HeaderName> = headers
        .keys()
        .filter(|k| HOP_BY_HOP.contains(k) || also(k))
        .cloned()
        .collect();
    if gone.contains(&header::CONNECTION) {
        gone.extend(
            headers
                .get_all(header::CONNECTION)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok()),
        );
    }
    for name in gone {
        headers.remove(name);
    }
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

/// Finds a client token among the request's headers and returns its owner.
///
/// The token is aloud's, not the provider's: it is removed from every header it was sent in
/// (`Aloud-Token` and each credential header), so a token sent twice reaches the upstream in
/// neither. A credential header holding something else (the provider's key) is left alone.
pub fn take_client_token(headers: &mut HeaderMap, tokens: &[String]) -> Option<Owner> {
    if tokens.is_empty() {
        return None;
    }
    let mut found = None;
    for name in std::iter::once(CLIENT_TOKEN_HEADER).chain(CREDENTIAL_HEADERS) {
        let owners: Vec<Option<Owner>> = headers
            .get_all(name)
            .iter()
            .map(|v| {
                let v = v.to_str().unwrap_or_default();
                tokens::find(tokens::strip_bearer(v), tokens)
            })
            .collect();
        if owners.iter().all(Option::is_none) {
            continue;
        }
        found = found.or(owners.iter().flatten().next().copied());
        // Keep the values that are not client tokens (a provider key in another copy).
        let kept: Vec<HeaderValue> = headers
            .get_all(name)
            .iter()
            .zip(&owners)
            .filter(|(_, o)| o.is_none())
            .map(|(v, _)| v.clone())
            .collect();
        headers.remove(name);
        for v in kept {
            headers.append(name, v);
        }
    }
    found
}

/// Removes a client token sent as Gemini's `key` query parameter; returns the query without it
/// (`None` when nothing is left) and the owner, or `None` when no `key` holds a client token.
pub fn take_client_token_from_query(
    query: &str,
    tokens: &[String],
) -> Option<(Option<String>, Owner)> {
    let mut owner = None;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|kv| {
            let Some(v) = kv.strip_prefix("key=") else {
                return true;
            };
            match tokens::find(&tokens::percent_decode(v), tokens) {
                Some(o) => {
                    owner = owner.or(Some(o));
                    false
                }
                None => true,
            }
        })
        .collect();
    let owner = owner?;
    let rest = (!kept.is_empty()).then(|| kept.join("&"));
    Some((rest, owner))
}

/// Removes every header value and query parameter that still holds one of the client tokens,
/// as sent or percent-decoded (`Authorization: bearer<TAB>tok`, `?KEY=tok`, `?access_token=tok`,
/// a cookie): a client token is aloud's, and no form of it the upstream could read is
/// forwarded. Runs after the token was found, so only with tokens configured.
///
/// Plain substring checks, not a prebuilt automaton: finding the owner already costs a digest
/// per configured token, and this is a few `contains` per header.
pub fn scrub_client_tokens(headers: &mut HeaderMap, query: &mut Option<String>, tokens: &[String]) {
    let names: Vec<HeaderName> = headers
        .iter()
        .filter(|(_, v)| holds_token(v.as_bytes(), tokens))
        .map(|(n, _)| n.clone())
        .collect();
    for name in names {
        let kept: Vec<HeaderValue> = headers
            .get_all(&name)
            .iter()
            .filter(|v| !holds_token(v.as_bytes(), tokens))
            .cloned()
            .collect();
        headers.remove(&name);
        for v in kept {
            headers.append(&name, v);
        }
    }
    if let Some(q) = query.as_deref()
        && holds_token(q.as_bytes(), tokens)
    {
        let kept: Vec<&str> = q
            .split('&')
            .filter(|kv| !holds_token(kv.as_bytes(), tokens))
            .collect();
        *query = (!kept.is_empty()).then(|| kept.join("&"));
    }
}

/// Whether `bytes` (a header value, a query pair or its value) holds a client token: as sent,
/// percent-decoded, or base64-decoded after a `Basic` scheme. Substring checks are safe because
/// tokens are at least 16 characters (`config::validate`): none matches an ordinary value.
fn holds_token(bytes: &[u8], tokens: &[String]) -> bool {
    use base64::Engine;
    let text = String::from_utf8_lossy(bytes);
    let decoded = text.contains('%').then(|| tokens::percent_decode(&text));
    let basic = text
        .trim()
        .split_once([' ', '\t'])
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .and_then(|(_, b64)| {
            // With or without its `=` padding: either way a server may read it.
            let lenient = base64::engine::GeneralPurpose::new(
                &base64::alphabet::STANDARD,
                base64::engine::GeneralPurposeConfig::new()
                    .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
            );
            lenient.decode(b64.trim()).ok()
        })
        .map(|raw| String::from_utf8_lossy(&raw).into_owned());
    std::iter::once(text.as_ref())
        .chain(decoded.as_deref())
        .chain(basic.as_deref())
        .any(|form| {
            tokens
                .iter()
                .any(|t| !t.is_empty() && form.contains(t.as_str()))
        })
}

/// Whether a response body is an event stream (gets no-cache and no proxy buffering).
pub fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .get(.."text/event-stream".len())
                .is_some_and(|p| p.eq_ignore_ascii_case("text/event-stream"))
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
    fn an_upstreams_aloud_headers_never_reach_the_client() {
        let mut h = HeaderMap::new();
        h.insert(
            "aloud-error-code",
            HeaderValue::from_static("body_too_large"),
        );
        h.insert("aloud-on-disconnect", HeaderValue::from_static("finish"));
        h.insert("connection", HeaderValue::from_static("close"));
        h.insert("content-type", HeaderValue::from_static("application/json"));
        response_headers_for_client(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("content-type"));
    }

    #[test]
    fn client_tokens_sent_as_credentials_are_consumed() {
        let tokens = vec!["tok-1".to_owned()];
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Bearer tok-1"));
        assert!(take_client_token(&mut h, &tokens).is_some());
        assert!(!h.contains_key("authorization"));
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Bearer sk-real"));
        h.insert("aloud-token", HeaderValue::from_static("tok-1"));
        assert!(take_client_token(&mut h, &tokens).is_some());
        assert!(h.contains_key("authorization"));
        let mut h = HeaderMap::new();
        h.insert("x-api-key", HeaderValue::from_static("nope"));
        assert!(take_client_token(&mut h, &tokens).is_none());
        assert!(h.contains_key("x-api-key"));
    }

    #[test]
    fn a_token_sent_in_several_headers_is_removed_from_all() {
        let tokens = vec!["tok-1".to_owned(), "tok-2".to_owned()];
        let mut h = HeaderMap::new();
        h.insert("aloud-token", HeaderValue::from_static("tok-1"));
        h.insert("authorization", HeaderValue::from_static("bearer tok-1"));
        h.insert("x-api-key", HeaderValue::from_static("tok-1"));
        h.insert("x-goog-api-key", HeaderValue::from_static("tok-2"));
        h.insert("api-key", HeaderValue::from_static("sk-provider"));
        h.append("x-api-key", HeaderValue::from_static("sk-provider-2"));
        let owner = take_client_token(&mut h, &tokens);
        assert_eq!(owner, tokens::find("tok-1", &tokens), "the first one found");
        for gone in ["aloud-token", "authorization", "x-goog-api-key"] {
            assert!(!h.contains_key(gone), "{gone} still there");
        }
        assert_eq!(h["api-key"], "sk-provider");
        assert_eq!(
            h.get_all("x-api-key").iter().collect::<Vec<_>>(),
            ["sk-provider-2"]
        );
    }

    #[test]
    fn a_token_in_the_key_query_is_removed() {
        let tokens = vec!["tok-1".to_owned()];
        let (rest, owner) = take_client_token_from_query("alt=sse&key=tok%2D1", &tokens).unwrap();
        assert_eq!(rest.as_deref(), Some("alt=sse"));
        assert_eq!(Some(owner), tokens::find("tok-1", &tokens));
        assert_eq!(
            take_client_token_from_query("key=tok-1", &tokens)
                .unwrap()
                .0,
            None
        );
        assert!(take_client_token_from_query("alt=sse&key=AIza", &tokens).is_none());
    }

    #[test]
    fn a_token_in_any_header_or_query_parameter_is_scrubbed() {
        let tokens = vec![
            "tok-1aaaaaaaaaaaaaaaa".to_owned(),
            "tok-2bbbbbbbbbbbbbbbb".to_owned(),
        ];
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            HeaderValue::from_static("bearer\ttok-1aaaaaaaaaaaaaaaa"),
        );
        h.insert(
            "cookie",
            HeaderValue::from_static("a=1; t=tok%2D2bbbbbbbbbbbbbbbb"),
        );
        h.insert("x-api-key", HeaderValue::from_static("sk-provider"));
        h.append(
            "x-api-key",
            HeaderValue::from_static("tok-1aaaaaaaaaaaaaaaa"),
        );
        h.insert("x-kept", HeaderValue::from_static("tok-"));
        let mut q = Some("alt=sse&KEY=tok-1aaaaaaaaaaaaaaaa&%6Bey=tok%2D2bbbbbbbbbbbbbbbb&access_token=tok-1aaaaaaaaaaaaaaaa&n=2".to_owned());
        scrub_client_tokens(&mut h, &mut q, &tokens);
        assert!(!h.contains_key("authorization"));
        assert!(!h.contains_key("cookie"));
        assert_eq!(
            h.get_all("x-api-key").iter().collect::<Vec<_>>(),
            ["sk-provider"]
        );
        assert_eq!(h["x-kept"], "tok-");
        assert_eq!(q.as_deref(), Some("alt=sse&n=2"));
        let mut q = Some("access_token=tok-2bbbbbbbbbbbbbbbb".to_owned());
        scrub_client_tokens(&mut h, &mut q, &tokens);
        assert_eq!(q, None);
        let long = "tok-0123456789abcdef".to_owned();
        let tokens = vec![long.clone()];
        // Basic credentials carry the token base64-encoded, as user or password.
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        for basic in [
            format!("u:{long}"),
            format!("{long}:"),
            format!("ab:{long}"),
        ] {
            let mut h = HeaderMap::new();
            // Unpadded too (`ab:` + 20 characters is not a multiple of 3 bytes).
            let value = format!("Basic {}", b64(&basic).trim_end_matches('='));
            h.insert("authorization", HeaderValue::from_str(&value).unwrap());
            scrub_client_tokens(&mut h, &mut None, &tokens);
            assert!(h.is_empty(), "{basic}: {h:?}");
        }
        let mut h = HeaderMap::new();
        let value = format!("Basic {}", b64("user:password"));
        h.insert("authorization", HeaderValue::from_str(&value).unwrap());
        scrub_client_tokens(&mut h, &mut None, &tokens);
        assert_eq!(h.len(), 1, "a Basic credential without a token stays");
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
