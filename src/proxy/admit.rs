//! Admission and the upstream request: the tier asked for, client tokens, upgrades, the body
//! limit, a concurrency slot, the upstream URI and headers with credentials, and sending.

use super::body::{LimitedBody, RequestFault, RequestTap};
use super::error::{Origin, ProxyError};
use super::headers;
use super::upstream::{self, HttpClient, Plain, SendError, UpstreamFailure};
use crate::config::{HttpUpstream, Owner, Tier};
use axum::body::Body;
use http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode, Uri, header};
use hyper::body::Incoming;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The request header that picks a progress tier.
/// (A `HeaderName`: read on every request, see `request_id::HEADER`.)
pub const PROGRESS_HEADER: HeaderName = HeaderName::from_static("aloud-progress");

/// The tier this request asked for, else the route's default.
pub fn tier(headers: &HeaderMap, default: Tier) -> Result<Tier, ProxyError> {
    match headers.get(PROGRESS_HEADER) {
        None => Ok(default),
        Some(v) => v.to_str().ok().and_then(Tier::parse).ok_or_else(|| {
            ProxyError::new(
                StatusCode::BAD_REQUEST,
                Origin::Downstream,
                "bad_progress_header",
                "Aloud-Progress must be one of: events, comments, off",
            )
        }),
    }
}

/// The refusal of a request without a valid client token (when tokens are set).
pub const TOKEN_MISSING: &str = "client_token_missing";

/// Checks the client's token (removing it from every credential header) when tokens are
/// configured; the token's owner fingerprint says whose exchange this is.
pub fn client_token(
    headers: &mut HeaderMap,
    query: &mut Option<String>,
    tokens: &[String],
) -> Result<Option<Owner>, ProxyError> {
    let mut owner = headers::take_client_token(headers, tokens);
    // Gemini clients send their key as `?key=`: a client token there is removed too.
    if let Some(q) = query.as_deref()
        && let Some((rest, o)) = headers::take_client_token_from_query(q, tokens)
    {
        *query = rest;
        owner = owner.or(Some(o));
    }
    if tokens.is_empty() {
        return Ok(owner);
    }
    if owner.is_some() {
        headers::scrub_client_tokens(headers, query, tokens);
        return Ok(owner);
    }
    Err(ProxyError::new(
        StatusCode::UNAUTHORIZED,
        Origin::Downstream,
        TOKEN_MISSING,
        "this aloud requires a client token: send it in Aloud-Token, or as the API key",
    ))
}

pub fn no_upgrade(headers: &HeaderMap) -> Result<(), ProxyError> {
    if !headers.contains_key(header::UPGRADE) {
        return Ok(());
    }
    Err(ProxyError::new(
        StatusCode::NOT_IMPLEMENTED,
        Origin::Downstream,
        "upgrade_refused",
        "aloud does not proxy WebSocket or other protocol upgrades; use HTTP streaming (SSE)",
    )
    .closing())
}

/// Refuses a body whose declared length is over the limit before reading any of it.
pub fn declared_length(headers: &HeaderMap, limit: u64) -> Result<(), ProxyError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large(limit));
    }
    Ok(())
}

pub fn slot(limiter: &Arc<Semaphore>) -> Result<OwnedSemaphorePermit, ProxyError> {
    Arc::clone(limiter).try_acquire_owned().map_err(|_| {
        ProxyError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            Origin::Internal,
            "overloaded",
            "aloud is at its limit of concurrent requests; retry shortly",
        )
        .retry_after(1)
    })
}

pub fn too_large(limit: u64) -> ProxyError {
    ProxyError::body_too_large(limit)
}

/// The upstream URI: always the configured scheme and host, whatever the request said.
pub fn upstream_uri(
    target: &HttpUpstream,
    rest: &str,
    query: Option<&str>,
) -> Result<Uri, ProxyError> {
    let path = if rest.is_empty() { "/" } else { rest };
    let mut pq = String::with_capacity(
        target.base_path.len() + path.len() + query.map_or(0, |q| q.len() + 1),
    );
    pq.push_str(&target.base_path);
    pq.push_str(path);
    if let Some(q) = query {
        pq.push('?');
        pq.push_str(q);
    }
    Uri::builder()
        .scheme(target.scheme.clone())
        .authority(target.authority.clone())
        .path_and_query(pq)
        .build()
        .map_err(|e| {
            ProxyError::new(
                StatusCode::BAD_REQUEST,
                Origin::Downstream,
                "bad_path",
                format!("cannot forward this path: {e}"),
            )
        })
}

/// The headers that go upstream: hop-by-hop and `Aloud-*` removed, identity encoding asked
/// (aloud reads every response), and the route's key when the client sent no credentials.
pub fn upstream_headers(
    client: HeaderMap,
    query: Option<&str>,
    route: &crate::config::Route,
) -> Result<HeaderMap, ProxyError> {
    let mut out = headers::request_headers_for_upstream(client);
    out.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    if let Some(key) = route.api_key.as_deref()
        && !headers::has_credentials(&out, query)
        && !headers::inject_credential(&mut out, route.api, key)
    {
        return Err(ProxyError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            Origin::Internal,
            "bad_api_key",
            format!(
                "the key in {} is not a valid header value",
                route.api_key_env.as_deref().unwrap_or("api_key_env")
            ),
        ));
    }
    Ok(out)
}

/// The request body as it goes upstream: size-limited, timed, observed by the tap.
pub fn upstream_body(
    incoming: Incoming,
    limit: u64,
    idle: std::time::Duration,
    tap: &Arc<RequestTap>,
) -> Body {
    Body::new(LimitedBody::new(incoming, limit, idle, Arc::clone(tap)))
}

/// Sends the request; the exchange's timer keeps the headers deadline.
///
/// The client's future is made here, not inside the returned one, so that one carries no client
/// of its own (the client's future still holds the clone it makes). Nothing is sent before the
/// first poll.
pub fn send(
    client: &HttpClient,
    req: Request<Body>,
    tap: Arc<RequestTap>,
    limit: u64,
    body_timeout: std::time::Duration,
) -> super::response::HeadFuture {
    let sent = client.request(req);
    Box::pin(async move {
        sent.await
            .map(|r| r.map(upstream::UpstreamBody::new))
            .map_err(|e| failed(&e, upstream::describe(&e), &tap, limit, body_timeout))
    })
}

/// [`send`] on a plain-http route's own connections.
pub fn send_plain(
    plain: &Arc<Plain>,
    req: Request<Body>,
    tap: Arc<RequestTap>,
    limit: u64,
    body_timeout: std::time::Duration,
) -> super::response::HeadFuture {
    let plain = Arc::clone(plain);
    // The send is made inside the box: made outside, its future was copied into it whole.
    Box::pin(async move {
        plain.send(req).await.map_err(|e| {
            let cause: &(dyn std::error::Error + 'static) = match &e {
                SendError::Connect(c) => &**c,
                SendError::Request(r) => r,
            };
            failed(
                cause,
                upstream::describe_plain(&e),
                &tap,
                limit,
                body_timeout,
            )
        })
    })
}

/// The client's error for a request that got no head: a request body that failed is the
/// client's fault, whatever the upstream made of it; anything else is the upstream's.
fn failed(
    error: &(dyn std::error::Error + 'static),
    (kind, message): (UpstreamFailure, String),
    tap: &RequestTap,
    limit: u64,
    body_timeout: std::time::Duration,
) -> ProxyError {
    if tap.fault().is_some() || upstream::caused_by_body_limit(error) {
        let fault = tap.fault().unwrap_or(RequestFault::TooLarge);
        return ProxyError::from_request_fault(fault, limit, body_timeout);
    }
    let (status, label) = match kind {
        UpstreamFailure::ConnectTimeout => {
            (StatusCode::GATEWAY_TIMEOUT, "upstream_connect_timeout")
        }
        UpstreamFailure::Connect => (StatusCode::BAD_GATEWAY, "upstream_connect"),
        UpstreamFailure::Other => (StatusCode::BAD_GATEWAY, "upstream_failed"),
    };
    ProxyError::new(status, Origin::Upstream, label, message)
}
