//! Request dispatch: request ids, CORS preflights, path checks, aloud's own endpoints versus
//! proxied routes, and 404. Every response carries `Aloud-Request-Id`.

use crate::apis::Api;
use crate::app::App;
use crate::cors;
use crate::endpoints;
use crate::proxy::error::{Origin, ProxyError};
use crate::proxy::{self, RouteRuntime};
use crate::request_id;
use crate::request_path;
use axum::body::Body;
use http::{HeaderValue, Method, Request, Response, StatusCode};
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
    if !app.cors.origins.is_empty() && cors::is_preflight(req.method(), req.headers()) {
        let mut response = cors::preflight(origin.as_ref(), req.headers());
        let id = request_id::from_headers(req.headers()).unwrap_or_else(|_| request_id::generate());
        if let Ok(v) = HeaderValue::from_str(&id) {
            response.headers_mut().insert(request_id::HEADER, v);
        }
        return response;
    }
    let (id, mut response) = match request_id::from_headers(req.headers()) {
        Err(e) => {
            let refused = ProxyError::new(
                StatusCode::BAD_REQUEST,
                Origin::Downstream,
                "bad_request_id",
                e.to_string(),
            );
            (request_id::generate(), refused.into_response(api))
        }
        Ok(id) => {
            let response = match checked {
                Err(e) => ProxyError::new(
                    StatusCode::BAD_REQUEST,
                    Origin::Downstream,
                    "bad_path",
                    format!("{e}; aloud does not forward such paths"),
                )
                .into_response(api),
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
        return ProxyError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            Origin::Downstream,
            "connect_refused",
            "aloud is a reverse proxy for model APIs; CONNECT tunnels are not supported",
        )
        .closing()
        .into_response(api);
    }
    if path == "/healthz" {
        return endpoints::json(StatusCode::OK, r#"{"status":"ok"}"#);
    }
    if path == "/aloud" || path.starts_with("/aloud/") {
        return endpoints::answer(app, req, path).await;
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
        };
        return proxy::forward(rt, &rest, req, cx).await;
    }
    if path == "/" {
        return endpoints::redirect("/aloud/", req.uri().query());
    }
    let prefixes: Vec<&str> = app.routes.iter().map(|r| r.route.prefix.as_str()).collect();
    ProxyError::new(
        StatusCode::NOT_FOUND,
        Origin::Downstream,
        "no_route",
        format!("no route matches {path}; routes: {}", prefixes.join(", ")),
    )
    .into_response(Api::OpenAi)
}
