//! CORS for browsers calling aloud directly: preflights, allowed and exposed headers, and the
//! upstream's own `Access-Control-*` headers replaced by aloud's.

use crate::apis::Api;
use crate::config::CorsConfig;
use crate::proxy::error::{Origin, ProxyError};
use axum::body::Body;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};

/// Request headers a browser may send: aloud's own and the SDKs'.
const ALLOWED: [&str; 14] = [
    "accept",
    "authorization",
    "content-type",
    "x-api-key",
    "api-key",
    "x-goog-api-key",
    "aloud-progress",
    "aloud-request-id",
    "aloud-token",
    "aloud-on-disconnect",
    "last-event-id",
    "cache-control",
    "openai-organization",
    "openai-project",
];

/// Header name prefixes of SDK headers that are allowed too.
const ALLOWED_PREFIXES: [&str; 4] = ["x-stainless-", "anthropic-", "x-sim-", "openai-"];

fn allowed_header(name: &str) -> bool {
    let name = name.trim().to_ascii_lowercase();
    ALLOWED.contains(&name.as_str()) || ALLOWED_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// The origin to allow for this request, when CORS is on and the origin is allowed.
pub fn allowed_origin<'a>(cors: &CorsConfig, headers: &'a HeaderMap) -> Option<&'a HeaderValue> {
    let origin = headers.get(header::ORIGIN)?;
    let text = origin.to_str().ok()?;
    cors.origins
        .iter()
        .any(|o| o == "*" || o.eq_ignore_ascii_case(text))
        .then_some(origin)
}

/// Whether this is a CORS preflight.
pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// Answers a preflight: 204 with what may be sent, or 403 naming what may not.
pub fn preflight(origin: Option<&HeaderValue>, headers: &HeaderMap) -> Response<Body> {
    let Some(origin) = origin else {
        // Refused in aloud's error shape, like its other refusals (a browser shows only that
        // the preflight failed; a person debugging with curl reads why).
        return ProxyError::new(
            StatusCode::FORBIDDEN,
            Origin::Downstream,
            "cors_origin_not_allowed",
            "this origin is not in [cors] origins",
        )
        .into_response(Api::OpenAi);
    };
    let mut r = Response::new(Body::empty());
    let requested: Vec<String> = headers
        .get_all(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect();
    if let Some(bad) = requested.iter().find(|h| !allowed_header(h)) {
        tracing::info!(header = %bad, "CORS preflight asked for a header aloud does not allow");
    }
    let allow: Vec<&str> = requested
        .iter()
        .map(String::as_str)
        .filter(|h| allowed_header(h))
        .collect();
    *r.status_mut() = StatusCode::NO_CONTENT;
    let h = r.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, PUT, PATCH, DELETE, OPTIONS"),
    );
    if let Ok(v) = HeaderValue::from_str(&allow.join(", ")) {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
    }
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    h.insert(
        header::VARY,
        HeaderValue::from_static(
            "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        ),
    );
    r
}

/// `Timing-Allow-Origin`: lets an allowed origin read `Server-Timing` through
/// `PerformanceResourceTiming.serverTiming` (which CORS alone does not open).
const TIMING_ALLOW_ORIGIN: header::HeaderName =
    header::HeaderName::from_static("timing-allow-origin");

/// Replaces the upstream's `Access-Control-*` (and `Timing-Allow-Origin`) headers with aloud's
/// on an actual response; the allowed origin may read `Aloud-Request-Id` and `Server-Timing`.
pub fn decorate(origin: &HeaderValue, headers: &mut HeaderMap) {
    let upstream: Vec<header::HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("access-control-"))
        .cloned()
        .collect();
    for name in upstream {
        headers.remove(name);
    }
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(
            "Aloud-Request-Id, Server-Timing, Aloud-On-Disconnect, Aloud-Error-Code",
        ),
    );
    headers.insert(TIMING_ALLOW_ORIGIN, origin.clone());
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdk_headers_are_allowed_and_others_are_not() {
        assert!(allowed_header("X-Stainless-Lang"));
        assert!(allowed_header("anthropic-version"));
        assert!(allowed_header("Aloud-Progress"));
        assert!(!allowed_header("x-internal-secret"));
    }
}
