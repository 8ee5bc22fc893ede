//! Request dispatch: request ids, CORS preflights, path checks, aloud's own endpoints versus
//! proxied routes, and 404. Every response carries `Aloud-Request-Id`.

use crate::apis::Api;
use crate::app::App;
use crate::cors;
use crate::endpoints;
use crate::metrics::Refusal;
use crate::proxy::error::{Origin, ProxyError};
use crate::proxy::{self, RouteRuntime};
use crate::request_id;
use crate::request_path;
use axum::body::Body;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use std::sync::Arc;
use tokio::time::Instant;

/// Answers one request: own endpoints first, then routes, then the `/` redirect, else 404.
/// Every response carries `Aloud-Request-Id`.
pub async fn dispatch(app: Arc<App>, req: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let path = req.uri().path().to_owned();
    // The path is checked before a route's prefix is removed: a refused path reaches no route
    // (its route, if any, only picks the error's envelope).
    let checked = request_path::check(&path);
    let found = app.route_for(&path);
    let api = found.as_ref().map_or(Api::OpenAi, |(rt, _)| rt.route.api);
    let route = found
        .filter(|_| checked.is_ok())
        .map(|(rt, rest)| (rt, rest.to_owned()));
    let origin = if app.cors.origins.is_empty() {
        None
    } else {
        cors::allowed_origin(&app.cors, req.headers()).cloned()
    };
    // Measured first: an oversized preflight gets the 431 too.
    let oversized = head_size(&req) > app.server.max_request_head;
    if !app.cors.origins.is_empty() && !oversized && cors::is_preflight(req.method(), req.headers())
    {
        let mut response = cors::preflight(origin.as_ref(), req.headers());
        let id = request_id::from_headers(req.headers()).unwrap_or_else(|_| request_id::generate());
        if let Ok(v) = HeaderValue::from_str(&id) {
            response.headers_mut().insert(request_id::HEADER, v);
        }
        return response;
    }
    let route_name = found.map(|(rt, _)| Arc::clone(&rt.name));
    let (id, mut response) = match request_id::from_headers(req.headers()) {
        Err(e) => {
            let refused = ProxyError::new(
                StatusCode::BAD_REQUEST,
                Origin::Downstream,
                "bad_request_id",
                e.to_string(),
            );
            let id = request_id::generate();
            let response = refuse(&app, refused, api, &id, route_name.as_deref(), started);
            (id, response)
        }
        Ok(id) if oversized => {
            let e = ProxyError::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                Origin::Downstream,
                "request_head_too_large",
                format!(
                    "the request head (request line and headers) is larger than {}",
                    crate::config::units::ShownSize(app.server.max_request_head as u64)
                ),
            )
            .closing();
            let response = refuse(&app, e, api, &id, route_name.as_deref(), started);
            (id, response)
        }
        Ok(id) if req.headers().get_all(header::HOST).iter().nth(1).is_some() => {
            let e = ProxyError::new(
                StatusCode::BAD_REQUEST,
                Origin::Downstream,
                "bad_host",
                "a request carries at most one Host header (RFC 9112 §3.2)",
            )
            .closing();
            let response = refuse(&app, e, api, &id, route_name.as_deref(), started);
            (id, response)
        }
        Ok(id) => {
            let response = match checked {
                Err(e) => refuse(
                    &app,
                    ProxyError::new(
                        StatusCode::BAD_REQUEST,
                        Origin::Downstream,
                        "bad_path",
                        format!("{e}; aloud does not forward such paths"),
                    ),
                    api,
                    &id,
                    route_name.as_deref(),
                    started,
                ),
                Ok(()) => answer(&app, req, &path, route, &id, started).await,
            };
            (id, response)
        }
    };
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(request_id::HEADER, v);
    }
    if let Some(origin) = &origin {
        cors::decorate(origin, response.headers_mut());
    }
    response
}

/// The request head's size as HTTP/1.1 sends it: request line (an absolute-form target with
/// its scheme), each header as `name: value` with its CRLF, and the blank line. A client that
/// writes `name:value` or bare LF sent a few bytes less than this counts.
///
/// hyper's `max_buf_size` (what the head must fit in while it is read) bounds the head only
/// roughly: its buffer grows in steps and a head that fits the last step is parsed whole (a
/// 64 KiB limit let 114 KB heads through). This is the exact check the limit promises.
fn head_size<B>(req: &Request<B>) -> usize {
    let target = req.uri().path_and_query().map_or(1, |p| p.as_str().len())
        + req.uri().authority().map_or(0, |a| a.as_str().len())
        + req.uri().scheme_str().map_or(0, |s| s.len() + "://".len());
    let line = req.method().as_str().len() + 1 + target + " HTTP/1.1\r\n".len();
    let fields: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + 2 + value.len() + 2)
        .sum();
    line + fields + 2
}

/// A request aloud refuses before any route takes it: logged with its id (and the route its
/// path names, if any), answered in `api`'s envelope; on a route, with aloud's `Server-Timing`
/// like every error it answers for a route.
fn refuse(
    app: &App,
    e: ProxyError,
    api: Api,
    id: &str,
    route: Option<&str>,
    started: Instant,
) -> Response<Body> {
    if let (Some(m), Some(reason)) = (&app.metrics, Refusal::from_cause(e.label)) {
        m.refused(reason);
    }
    tracing::info!(
        id,
        route,
        status = e.status.as_u16(),
        label = e.label,
        detail = %e.message,
        "refused request"
    );
    let mut response = e.into_response_unlogged(api);
    if route.is_some() {
        let marks = proxy::timing::Marks {
            started,
            sent: None,
            upstream_head: None,
            attempted: false,
            now: Instant::now(),
        };
        let timing = proxy::timing::header(&marks);
        response
            .headers_mut()
            .append(proxy::timing::SERVER_TIMING, timing);
    }
    response
}

async fn answer(
    app: &App,
    req: Request<Incoming>,
    path: &str,
    route: Option<(&RouteRuntime, String)>,
    id: &str,
    started: Instant,
) -> Response<Body> {
    if req.method() == Method::CONNECT {
        let api = route.as_ref().map_or(Api::OpenAi, |(rt, _)| rt.route.api);
        let name = route.as_ref().map(|(rt, _)| &*rt.name);
        let e = ProxyError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            Origin::Downstream,
            "connect_refused",
            "aloud is a reverse proxy for model APIs; CONNECT tunnels are not supported",
        )
        .closing();
        return refuse(app, e, api, id, name, started);
    }
    if path == "/healthz" {
        return endpoints::json(StatusCode::OK, r#"{"status":"ok"}"#);
    }
    if path == "/aloud" || path.starts_with("/aloud/") {
        // Boxed, like `forward` below: awaited inline, each would add its whole state to every
        // request's future, copied as it moves (the proxied path's is about 5 KiB).
        return Box::pin(endpoints::answer(app, req, path)).await;
    }
    if let Some((rt, rest)) = route {
        let cx = proxy::Context {
            id,
            started,
            client_tokens: &app.server.client_tokens,
            request_body_timeout: app.server.request_body_timeout,
            limiter: &app.limiter,
            progress: &app.progress,
            capture: &app.capture,
            telemetry: app.telemetry.as_ref(),
            finishing: &app.finishing,
        };
        return Box::pin(proxy::forward(rt, &rest, req, cx)).await;
    }
    if path == "/" {
        return endpoints::redirect("/aloud/", req.uri().query());
    }
    // The routes are named to help a client that got a path wrong, unless client tokens are
    // set: then a caller that may hold none learns nothing of the layout.
    let message = if app.server.client_tokens.is_empty() {
        let prefixes: Vec<&str> = app.routes.iter().map(|r| r.route.prefix.as_str()).collect();
        format!("no route matches {path}; routes: {}", prefixes.join(", "))
    } else {
        format!("no route matches {path}")
    };
    let e = ProxyError::new(
        StatusCode::NOT_FOUND,
        Origin::Downstream,
        "no_route",
        message,
    );
    refuse(app, e, Api::OpenAi, id, None, started)
}
