//! Forwarding a request to its route's upstream and the response back, byte for byte.

pub mod body;
pub mod error;
pub mod headers;
pub mod relay;
pub mod upstream;

use crate::apis::Api;
use crate::apis::stream::{Dialect, request_streams};
use crate::capture::CaptureSink;
use crate::capture::Outcome;
use crate::capture::recorder::{End, Meta, Recorder};
use crate::config::{CaptureLevel, HttpUpstream, Owner, Route, Tier, Upstream};
use crate::progress::{Hub, Ladder, Watcher};
use axum::body::Body;
use body::{BodyEnd, LimitedBody, OnEnd, RequestTap};
use error::{Origin, ProxyError};
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use hyper::body::Incoming;
use relay::{Capture, HeadFuture, MakeOnEnd, Mode, Relay, RelaySpec};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use upstream::{UpstreamClient, UpstreamFailure};

/// A route ready to serve: its config plus its upstream client.
pub struct RouteRuntime {
    pub route: Route,
    pub target: HttpUpstream,
    pub client: UpstreamClient,
}

impl RouteRuntime {
    /// Fails for a simulator route that was not yet given its loopback address.
    pub fn new(route: Route) -> Result<Self, String> {
        let target = match &route.upstream {
            Upstream::Http(h) => h.clone(),
            Upstream::Simulator => {
                return Err(format!(
                    "route {:?}: the simulator was not started",
                    route.name
                ));
            }
        };
        let client = upstream::client(route.limits.connect_timeout);
        Ok(RouteRuntime {
            route,
            target,
            client,
        })
    }
}

/// Progress settings shared by every request.
pub struct ProgressSettings {
    pub hub: Arc<Hub>,
    pub ladder: Arc<Ladder>,
    pub heartbeat: Duration,
    pub hold: Duration,
}

/// Capture settings shared by every request.
pub struct CaptureSettings {
    /// Where records go; `None` when capture is off everywhere.
    pub sink: Option<Arc<dyn CaptureSink>>,
    /// Set when shutdown starts, so cut exchanges are recorded as `shutdown`.
    pub shutting_down: Arc<AtomicBool>,
}

/// Whether this exchange is captured (route level, sampling by id), and its recorder.
fn capture_for(
    route: &Route,
    ex: &Exchange<'_>,
    method: &Method,
    rest: &str,
    attempt: u32,
    owner: Option<Owner>,
    tier: Tier,
) -> Option<Capture> {
    let sink = ex.capture.sink.as_ref()?;
    if route.capture == CaptureLevel::Off || !sampled(ex.id, route.capture_sample) {
        return None;
    }
    let started_at_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| {
            d.as_millis() as i64 - ex.started.elapsed().as_millis() as i64
        });
    let meta = Meta {
        id: ex.id.to_owned(),
        attempt,
        owner,
        started_at_ms,
        route: route.name.clone(),
        api: route.api.as_str().to_owned(),
        method: method.as_str().to_owned(),
        path: if rest.is_empty() {
            "/".to_owned()
        } else {
            rest.to_owned()
        },
        tier: tier.as_str().to_owned(),
        level: route.capture,
        max_body: route.capture_max_body as usize,
    };
    Some(Capture {
        recorder: Recorder::new(meta),
        sink: Arc::clone(sink),
    })
}

/// Deterministic sampling by request id, so every attempt of an id is treated alike.
fn sampled(id: &str, rate: f64) -> bool {
    if rate >= 1.0 {
        return true;
    }
    let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash % 10_000) as f64 / 10_000.0 < rate
}

/// What the proxy needs from the application for one request.
pub struct Exchange<'a> {
    pub id: &'a str,
    /// When the request head was parsed; all timings count from here.
    pub started: Instant,
    pub client_tokens: &'a [String],
    pub limiter: &'a Arc<Semaphore>,
    pub progress: &'a ProgressSettings,
    pub capture: &'a CaptureSettings,
}

/// The request header that picks a progress tier.
pub const PROGRESS_HEADER: &str = "aloud-progress";

/// Request bytes kept to decide whether the request streams (its `"stream"` field) when the
/// exchange is not captured; a captured one keeps up to the route's `capture_max_body`.
const KEEP_REQUEST: usize = 64 << 10;

/// Forwards `req` (whose path is `rest` below the route's prefix) and returns the response.
pub async fn forward(
    rt: &RouteRuntime,
    rest: &str,
    req: Request<Incoming>,
    ex: Exchange<'_>,
) -> Response<Body> {
    let api = rt.route.api;
    let method = req.method().clone();
    let tier = tier(req.headers(), rt.route.progress).unwrap_or(rt.route.progress);
    match try_forward(rt, rest, req, &ex).await {
        Ok(response) => response,
        Err(e) => {
            // Refused before an attempt started: still one record, marked as aloud's error.
            if let Some(c) = capture_for(&rt.route, &ex, &method, rest, 0, None, tier) {
                let outcome = if e.status == StatusCode::GATEWAY_TIMEOUT {
                    Outcome::Timeout
                } else {
                    Outcome::ProxyError
                };
                let record = c.recorder.finish(End {
                    client_status: Some(e.status.as_u16()),
                    outcome: Some(outcome),
                    done_ms: ex.started.elapsed().as_secs_f64() * 1e3,
                    error: Some(e.message.clone()),
                    ..End::default()
                });
                c.sink.submit(record);
            }
            e.into_response(api)
        }
    }
}

/// The tier this request asked for, else the route's default.
fn tier(headers: &http::HeaderMap, default: Tier) -> Result<Tier, ProxyError> {
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

async fn try_forward(
    rt: &RouteRuntime,
    rest: &str,
    req: Request<Incoming>,
    ex: &Exchange<'_>,
) -> Result<Response<Body>, ProxyError> {
    let route = &rt.route;
    let (parts, incoming) = req.into_parts();
    let mut client_headers = parts.headers;

    let owner = headers::take_client_token(&mut client_headers, ex.client_tokens);
    if !ex.client_tokens.is_empty() && owner.is_none() {
        return Err(ProxyError::new(
            StatusCode::UNAUTHORIZED,
            Origin::Downstream,
            "client_token_missing",
            "this aloud requires a client token: send it in Aloud-Token, or as the API key",
        ));
    }
    if client_headers.contains_key(header::UPGRADE) {
        return Err(ProxyError::new(
            StatusCode::NOT_IMPLEMENTED,
            Origin::Downstream,
            "upgrade_refused",
            "aloud does not proxy WebSocket or other protocol upgrades; use HTTP streaming (SSE)",
        )
        .closing());
    }
    let tier = tier(&client_headers, route.progress)?;
    let limit = route.limits.max_request_body;
    let declared = client_headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large(limit));
    }
    let permit = Arc::clone(ex.limiter).try_acquire_owned().map_err(|_| {
        ProxyError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            Origin::Internal,
            "overloaded",
            "aloud is at its limit of concurrent requests; retry shortly",
        )
        .retry_after(1)
    })?;
    let id: Arc<str> = Arc::from(ex.id);
    let (first_seq, attempt) = ex.progress.hub.begin(&id, owner).map_err(|e| {
        ProxyError::new(
            StatusCode::CONFLICT,
            Origin::Downstream,
            "request_id_in_flight",
            e.to_string(),
        )
    })?;
    let watcher = Watcher::new(
        Arc::clone(&id),
        ex.started,
        first_seq,
        Arc::clone(&ex.progress.hub),
        Arc::clone(&ex.progress.ladder),
        ex.progress.heartbeat,
    );

    let uri = upstream_uri(&rt.target, rest, parts.uri.query())?;
    let path_and_query = uri
        .path_and_query()
        .map_or_else(|| rest.to_owned(), |pq| pq.as_str().to_owned());
    let mut out_headers = headers::request_headers_for_upstream(client_headers);
    // aloud reads every response (progress, capture), so it asks for bytes it can read.
    out_headers.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    if let Some(key) = route.api_key.as_deref() {
        if !headers::has_credentials(&out_headers, parts.uri.query())
            && !headers::inject_credential(&mut out_headers, route.api, key)
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
    }
    let capture = capture_for(route, ex, &parts.method, rest, attempt, owner, tier);
    let keep = match &capture {
        Some(_) if route.capture == CaptureLevel::Full => {
            KEEP_REQUEST.max(route.capture_max_body as usize)
        }
        _ => KEEP_REQUEST,
    };
    let tap = RequestTap::new(keep);
    let body = Body::new(LimitedBody::new(incoming, limit, Arc::clone(&tap)));
    let mut upstream_req = Request::new(body);
    *upstream_req.method_mut() = parts.method.clone();
    *upstream_req.uri_mut() = uri;
    *upstream_req.headers_mut() = out_headers;

    let deadline = ex.started + route.limits.total_timeout;
    let headers_deadline = (ex.started + route.limits.headers_timeout).min(deadline);
    let head = send(
        rt.client.clone(),
        upstream_req,
        headers_deadline,
        ex.started,
        Arc::clone(&tap),
        limit,
    );

    let log = AccessLog {
        route: route.name.clone(),
        method: parts.method.clone(),
        path: parts.uri.path().to_owned(),
        status: StatusCode::OK,
        id: ex.id.to_owned(),
        started: ex.started,
        headers_at: ex.started,
        tier,
        _permit: permit,
    };
    let make_on_end: MakeOnEnd = Box::new(move |status| {
        Box::new(AccessLog {
            status,
            headers_at: Instant::now(),
            ..log
        })
    });
    let mode = match tier {
        Tier::Off => Mode::Pass,
        Tier::Comments => Mode::Comments,
        Tier::Events => Mode::Events,
    };
    let spec = RelaySpec {
        mode,
        api: route.api,
        path_and_query: path_and_query.clone(),
        idle: route.limits.idle_timeout,
        deadline,
        heartbeat: ex.progress.heartbeat,
        make_on_end,
        tap: Arc::clone(&tap),
        capture,
        shutting_down: Arc::clone(&ex.capture.shutting_down),
    };
    let mut relay = Relay::new(watcher, spec, head);
    relay.start();
    match tier {
        Tier::Events => {
            return Ok(committed(relay));
        }
        Tier::Off => {
            relay.wait_head(None).await;
        }
        Tier::Comments => {
            if !relay.wait_head(Some(ex.started + ex.progress.hold)).await {
                if injectable(
                    route.api,
                    &path_and_query,
                    &parts.method,
                    parts.uri.query(),
                    &tap,
                ) {
                    relay.commit();
                    return Ok(committed(relay));
                }
                relay.wait_head(None).await;
            }
        }
    }
    if let Some(e) = relay.take_failure() {
        return Err(e);
    }
    match relay.take_head() {
        Some(head) => Ok(Response::from_parts(head, Body::new(relay))),
        None => Err(ProxyError::new(
            StatusCode::BAD_GATEWAY,
            Origin::Internal,
            "no_head",
            "the upstream gave no response head",
        )),
    }
}

/// A `200 text/event-stream` response whose body carries the whole exchange.
fn committed(relay: Relay) -> Response<Body> {
    let mut response = Response::new(Body::new(relay));
    *response.headers_mut() = Relay::committed_head();
    response
}

/// Whether a comments-tier request may be committed early: it streams (by the request alone),
/// its stream is one whose clients tolerate comments, and the route is not Gemini or Ollama.
fn injectable(
    api: Api,
    path_and_query: &str,
    method: &Method,
    query: Option<&str>,
    tap: &RequestTap,
) -> bool {
    if matches!(api, Api::Gemini | Api::Ollama) {
        return false;
    }
    let tolerant = Dialect::detect(api, path_and_query, "text/event-stream")
        .is_some_and(Dialect::tolerates_comments);
    let (body, whole) = tap.body();
    let json: Option<serde_json::Value> = if whole {
        serde_json::from_slice(&body).ok()
    } else {
        None
    };
    let path = path_and_query.split('?').next().unwrap_or(path_and_query);
    tolerant && request_streams(api, method.as_str(), path, query, json.as_ref())
}

/// Sends the request and waits for the upstream head, within the headers deadline.
fn send(
    client: UpstreamClient,
    req: Request<Body>,
    headers_deadline: Instant,
    started: Instant,
    tap: Arc<RequestTap>,
    limit: u64,
) -> HeadFuture {
    Box::pin(async move {
        match tokio::time::timeout_at(headers_deadline, client.request(req)).await {
            Err(_) => Err(ProxyError::new(
                StatusCode::GATEWAY_TIMEOUT,
                Origin::Upstream,
                "upstream_headers_timeout",
                format!(
                    "the upstream sent no response headers within {:?}",
                    headers_deadline.saturating_duration_since(started)
                ),
            )),
            Ok(Err(e))
                if tap.tripped.load(std::sync::atomic::Ordering::Acquire)
                    || upstream::caused_by_body_limit(&e) =>
            {
                Err(too_large(limit))
            }
            Ok(Err(e)) => {
                let (kind, message) = upstream::describe(&e);
                let (status, label) = match kind {
                    UpstreamFailure::ConnectTimeout => {
                        (StatusCode::GATEWAY_TIMEOUT, "upstream_connect_timeout")
                    }
                    UpstreamFailure::Connect => (StatusCode::BAD_GATEWAY, "upstream_connect"),
                    UpstreamFailure::Other => (StatusCode::BAD_GATEWAY, "upstream_failed"),
                };
                Err(ProxyError::new(status, Origin::Upstream, label, message))
            }
            Ok(Ok(r)) => Ok(r),
        }
    })
}

fn too_large(limit: u64) -> ProxyError {
    ProxyError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        Origin::Downstream,
        "body_too_large",
        format!("request body is larger than this route's limit of {limit} bytes"),
    )
}

/// The upstream URI: always the configured scheme and host, whatever the request said.
fn upstream_uri(target: &HttpUpstream, rest: &str, query: Option<&str>) -> Result<Uri, ProxyError> {
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

/// The access log line, written when the response body ends (or the client leaves). It keeps
/// the time aloud took apart from the upstream's. Holding the permit here frees the slot then.
struct AccessLog {
    route: String,
    method: Method,
    path: String,
    status: StatusCode,
    id: String,
    started: Instant,
    headers_at: Instant,
    tier: Tier,
    _permit: OwnedSemaphorePermit,
}

impl OnEnd for AccessLog {
    fn on_end(self: Box<Self>, end: BodyEnd, bytes: u64) {
        let headers_ms = self.headers_at.duration_since(self.started).as_secs_f64() * 1e3;
        let total_ms = self.started.elapsed().as_secs_f64() * 1e3;
        let fields = (
            self.route.as_str(),
            self.method.as_str(),
            self.path.as_str(),
            self.status.as_u16(),
        );
        match end {
            BodyEnd::Complete => tracing::info!(
                id = %self.id, route = fields.0, method = fields.1, path = fields.2, status = fields.3,
                headers_ms, total_ms, bytes, tier = self.tier.as_str(), end = end.as_str(), "proxied"
            ),
            _ => tracing::warn!(
                id = %self.id, route = fields.0, method = fields.1, path = fields.2, status = fields.3,
                headers_ms, total_ms, bytes, tier = self.tier.as_str(), end = end.as_str(), "proxied, stream cut short"
            ),
        }
    }
}
