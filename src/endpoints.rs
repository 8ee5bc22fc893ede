//! aloud's own endpoints under `/aloud/`: the demo page and its client, the progress side
//! channel, the client beacons, and resuming kept answers (`resume`).

use crate::apis::Api;
use crate::app::App;
use crate::capture::beacon;
use crate::demo;
use crate::progress;
use crate::proxy::error::{Origin, ProxyError};
use axum::body::Body;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

pub mod auth;
pub mod resume;

/// Answers a request under `/aloud`.
pub async fn answer(app: &App, req: Request<Incoming>, path: &str) -> Response<Body> {
    if let Some(id) = path.strip_prefix("/aloud/v1/progress/") {
        if req.method() != Method::GET {
            return refuse(
                StatusCode::METHOD_NOT_ALLOWED,
                "method",
                "the side channel answers GET",
            );
        }
        let query = req.uri().query();
        let owner = match auth::owner(&app.server.client_tokens, req.headers(), query) {
            Ok(owner) => owner,
            Err(e) => return e.into_response(),
        };
        return progress::side_channel::subscribe(
            &app.progress.hub,
            id,
            req.headers(),
            query,
            owner,
        )
        .await;
    }
    if let Some(rest) = path.strip_prefix("/aloud/v1/requests/") {
        if resume::handles(rest) {
            return resume::answer(app, req, rest).await;
        }
        return beacon(app, req, rest).await;
    }
    match path {
        "/aloud" => redirect("/aloud/", req.uri().query()),
        "/aloud/" => asset(
            "text/html; charset=utf-8",
            demo::page(app.routes.iter().map(|r| &r.route)),
        ),
        "/aloud/aloud.js" => asset("text/javascript; charset=utf-8", demo::CLIENT_JS.to_owned()),
        _ => refuse(
            StatusCode::NOT_FOUND,
            "no_endpoint",
            &format!("aloud has no endpoint {path}"),
        ),
    }
}

fn refuse(status: StatusCode, label: &'static str, message: &str) -> Response<Body> {
    ProxyError::new(status, Origin::Downstream, label, message).into_response(Api::OpenAi)
}

/// `POST /aloud/v1/requests/{id}/timings|feedback`: JSON, also as `text/plain` (sendBeacon).
async fn beacon(app: &App, req: Request<Incoming>, rest: &str) -> Response<Body> {
    let origin = req.headers().get(header::ORIGIN).cloned();
    let mut response = beacon_inner(app, req, rest).await;
    // Beacons only add data to an unguessable id, so any origin may send them.
    if let Some(o) = origin {
        response
            .headers_mut()
            .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
        response
            .headers_mut()
            .insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    response
}

async fn beacon_inner(app: &App, req: Request<Incoming>, rest: &str) -> Response<Body> {
    let Some((id, kind)) = rest.split_once('/') else {
        return refuse(
            StatusCode::NOT_FOUND,
            "no_endpoint",
            "use /aloud/v1/requests/{id}/timings or /feedback",
        );
    };
    if kind != "timings" && kind != "feedback" {
        return refuse(
            StatusCode::NOT_FOUND,
            "no_endpoint",
            "use /aloud/v1/requests/{id}/timings or /feedback",
        );
    }
    if req.method() == Method::OPTIONS {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NO_CONTENT;
        r.headers_mut().insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("POST, OPTIONS"),
        );
        r.headers_mut().insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("content-type, aloud-token, authorization"),
        );
        return r;
    }
    if req.method() != Method::POST {
        return refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            "method",
            "beacons are POSTed",
        );
    }
    let owner = match auth::owner(&app.server.client_tokens, req.headers(), req.uri().query()) {
        Ok(owner) => owner,
        Err(e) => return e.into_response(),
    };
    let sink = app.capture.sink.as_ref();
    let hub = &app.progress.hub;
    // A request made with another token is answered exactly as an unknown one. In a cluster,
    // a request this replica never saw was served by another one: the shared store joins the
    // beacon to it (unless this replica knows the id as another owner's).
    let known = crate::request_id::is_valid(id)
        && (hub.knows(id, owner)
            || (hub.linked() && !hub.foreign(id, owner))
            || match sink {
                // The writer's queue, then the database: a blocking read, so off the runtime.
                Some(sink) => {
                    let (sink, owned) = (std::sync::Arc::clone(sink), id.to_owned());
                    tokio::task::spawn_blocking(move || sink.known(&owned, owner))
                        .await
                        .unwrap_or(false)
                }
                None => false,
            });
    if !known {
        return refuse(
            StatusCode::NOT_FOUND,
            "unknown_request",
            &format!("no request with id {id:?} is known"),
        );
    }
    let Some(sink) = sink else {
        // Capture is off by configuration: there is nowhere to keep it, and that is not an error
        // of the client's.
        tracing::debug!(id, kind, "beacon for a request that is not captured");
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NO_CONTENT;
        r.headers_mut()
            .insert("x-aloud-capture", HeaderValue::from_static("off"));
        return r;
    };
    let body = match Limited::new(req.into_body(), beacon::MAX_BEACON)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                "beacon_too_large",
                &format!(
                    "beacons are at most {}",
                    crate::config::units::ShownSize(beacon::MAX_BEACON as u64)
                ),
            );
        }
    };
    let result = if kind == "timings" {
        beacon::parse_timings(&body).map(|t| sink.timings(id, owner, t))
    } else {
        beacon::parse_feedback(&body).map(|f| sink.feedback(id, owner, f))
    };
    match result {
        Ok(()) => {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::NO_CONTENT;
            r
        }
        Err(reason) => refuse(StatusCode::BAD_REQUEST, "bad_beacon", &reason),
    }
}

fn asset(content_type: &'static str, body: String) -> Response<Body> {
    let mut r = Response::new(Body::from(body));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

pub fn json(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A redirect that keeps the query string (the demo page reads its settings from it).
pub fn redirect(to: &str, query: Option<&str>) -> Response<Body> {
    let target = match query {
        Some(q) => format!("{to}?{q}"),
        None => to.to_owned(),
    };
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::TEMPORARY_REDIRECT;
    if let Ok(v) = HeaderValue::from_str(&target) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}
