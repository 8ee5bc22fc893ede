//! The admin listener, apart from the proxy's port: `/metrics` (OpenMetrics, or Prometheus text
//! for clients that do not ask for it), `/healthz` (the process runs) and `/readyz` (routes and
//! capture are up, and aloud is not draining), and `/dashboard` (`dashboard`). With `[admin]
//! token_env`, every request needs `Authorization: Bearer <token>`, compared in constant time
//! (the dashboard also takes it from its cookie or the `access_token` parameter).

use super::Tasks;
use crate::config::tokens;
use crate::metrics::{self, Metrics};
use crate::request_id;
use axum::body::Body;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How long admin connections (scrapes, probes) may take to finish once the admin stops.
const ADMIN_GRACE: Duration = Duration::from_secs(2);

/// Whether aloud takes traffic: starting, ready, then draining at shutdown.
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<AtomicU8>);

const STARTING: u8 = 0;
const READY: u8 = 1;
const DRAINING: u8 = 2;

impl Readiness {
    pub fn ready(&self) {
        // Only a start that is not yet draining becomes ready.
        let _ = self
            .0
            .compare_exchange(STARTING, READY, Ordering::AcqRel, Ordering::Acquire);
    }

    pub fn draining(&self) {
        self.0.store(DRAINING, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire) == READY
    }
}

/// What the admin endpoints answer from.
pub struct AdminState {
    pub metrics: Arc<Metrics>,
    pub ready: Readiness,
    pub token: Option<String>,
    pub dashboard: super::dashboard::Dashboard,
}

/// Serves the admin endpoints on `listener` until `stop`; its connections are tracked in
/// `tasks` and given a short grace to finish.
pub fn start(
    listener: TcpListener,
    state: Arc<AdminState>,
    tasks: &Tasks,
    stop: CancellationToken,
) {
    let conns = tasks.clone();
    tasks.spawn("admin", async move {
        let graceful = GracefulShutdown::new();
        let hard_stop = CancellationToken::new();
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(10))
            .keep_alive(true);
        loop {
            let stream = tokio::select! {
                () = stop.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "admin accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let state = Arc::clone(&state);
            let tasks = conns.clone();
            let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                let state = Arc::clone(&state);
                let tasks = tasks.clone();
                // Every response carries an id, here too: the client's when it sent a valid
                // one, else a new one (a probe or a scraper sends none).
                let id = request_id::from_headers(req.headers())
                    .unwrap_or_else(|_| request_id::generate());
                async move {
                    let mut response = route(&state, &tasks, req).await;
                    if let Ok(v) = HeaderValue::from_str(&id) {
                        response.headers_mut().insert(request_id::HEADER, v);
                    }
                    Ok::<_, Infallible>(response)
                }
            });
            let conn = graceful.watch(builder.serve_connection(
                TokioIo::new(super::refusals::Refusals::new(stream)),
                service,
            ));
            let hard_stop = hard_stop.clone();
            conns.spawn("admin connection", async move {
                tokio::select! {
                    result = conn => if let Err(e) = result {
                        tracing::debug!(error = %e, "admin connection ended with an error");
                    },
                    () = hard_stop.cancelled() => {}
                }
            });
        }
        drop(listener);
        tokio::select! {
            () = graceful.shutdown() => {}
            () = tokio::time::sleep(ADMIN_GRACE) => hard_stop.cancel(),
        }
    });
}

async fn route<B>(state: &AdminState, tasks: &Tasks, req: Request<B>) -> Response<Body> {
    let dashboard = req
        .uri()
        .path()
        .strip_prefix("/dashboard")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
    if !dashboard {
        return answer(state, &req);
    }
    // The body is not read: only the head goes on.
    let (parts, _) = req.into_parts();
    let rest = parts.uri.path().get("/dashboard".len()..).unwrap_or("");
    let hub = state.metrics.hub();
    (state.dashboard)
        .answer(rest, parts.uri.query(), &parts.headers, hub, tasks)
        .await
}

fn answer<B>(state: &AdminState, req: &Request<B>) -> Response<Body> {
    if let Some(token) = &state.token
        && !authorized(req.headers(), token)
    {
        let mut r = text(StatusCode::UNAUTHORIZED, "a bearer token is required\n");
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"aloud admin\""),
        );
        return r;
    }
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" if state.ready.is_ready() => text(StatusCode::OK, "ready\n"),
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        "/metrics" => scrape(state, req.headers()),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /healthz, /readyz or /dashboard\n",
        ),
    }
}

fn authorized(headers: &HeaderMap, token: &str) -> bool {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(tokens::strip_bearer)
        .unwrap_or("");
    tokens::find(presented, std::slice::from_ref(&token.to_owned())).is_some()
}

/// OpenMetrics when the scraper accepts it (Prometheus does), else Prometheus's text format.
fn scrape(state: &AdminState, headers: &HeaderMap) -> Response<Body> {
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let encoded = match state.metrics.openmetrics() {
        Ok(text) => text,
        Err(e) => {
            tracing::warn!(error = %e, "cannot encode metrics");
            return text(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n");
        }
    };
    let (body, kind) = if openmetrics {
        (encoded, metrics::OPENMETRICS)
    } else {
        (metrics::prometheus_text(&encoded), metrics::PROMETHEUS_TEXT)
    };
    let mut r = Response::new(Body::from(body));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    r
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
