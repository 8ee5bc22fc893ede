//! Forwarding a request to its route's upstream and the response back, byte for byte.
//!
//! `forward` makes one `Exchange` per request and walks it through named steps: admission
//! (`admit`), the upstream request, waiting for the head (`wait`), and the response body
//! (`response`), which observes (`observe`), injects (`inject`, `wrap`) and keeps the deadlines
//! on one timer (`deadlines`). Whatever happens, the exchange's one finish step runs once
//! (`exchange`).

pub mod admit;
pub mod body;
pub mod deadlines;
pub mod error;
mod eta;
pub mod exchange;
pub mod finish;
pub mod headers;
pub mod home;
pub mod inject;
pub mod later;
pub mod observe;
pub mod pace;
pub mod response;
pub mod timing;
pub mod upstream;
pub mod wait;
pub mod wrap;

pub use admit::PROGRESS_HEADER;

use crate::apis::Api;
use crate::apis::stream::{Dialect, request_streams};
use crate::capture::CaptureSink;
use crate::capture::recorder::{Meta, Recorder};
use crate::config::{CaptureLevel, HttpUpstream, OnDisconnect, Owner, Route, Tier, Upstream};
use crate::progress::eta::EtaWatch;
use crate::progress::live::{LiveCell, ModelHint};
use crate::progress::{Hub, Ladder, Watcher};
use axum::body::Body;
use body::RequestTap;
use deadlines::{Deadlines, later};
use error::{Origin, ProxyError};
use exchange::{Capture, Exchange};
use finish::{Detachable, announce as finishing};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use inject::Mode;
use response::{ExchangeBody, HeadWait, Spec, ending_for};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use wrap::Budget;

/// A route ready to serve: its config plus its upstream client.
pub struct RouteRuntime {
    pub route: Route,
    pub name: Arc<str>,
    pub target: HttpUpstream,
    pub upstream: upstream::Upstream,
    /// The route's metric handles, when metrics are on.
    pub metrics: Option<Arc<crate::metrics::RouteMetrics>>,
}

impl RouteRuntime {
    /// Fails for a simulator route that was not yet given its loopback address, or when the
    /// route's TLS settings cannot make a client config.
    pub fn new(route: Route, spawn: &upstream::SpawnHook) -> Result<Self, String> {
        let target = match &route.upstream {
            Upstream::Http(h) => h.clone(),
            Upstream::Simulator => {
                return Err(format!(
                    "route {:?}: the simulator was not started",
                    route.name
                ));
            }
        };
        let upstream =
            upstream::Upstream::new(&target, &route.connect, route.limits.connect_timeout, spawn)
                .map_err(|e| format!("route {:?}: {e}", route.name))?;
        Ok(RouteRuntime {
            name: Arc::from(route.name.as_str()),
            route,
            target,
            upstream,
            metrics: None,
        })
    }
}

/// Progress settings shared by every request.
pub struct ProgressSettings {
    pub hub: Arc<Hub>,
    pub ladder: Arc<Ladder>,
    pub heartbeat: Duration,
    pub hold: Duration,
    /// Largest whole body the events tier collects for `aloud.result`.
    pub max_wrap_body: usize,
    /// What every request's collected bodies may hold together.
    pub wrap_budget: Arc<Budget>,
    /// Past durations for the ETA (kept across reloads).
    pub eta: Arc<crate::progress::eta::History>,
    /// `[progress] eta`: off, exchanges neither get an estimate nor teach the history.
    pub eta_on: bool,
}

/// Capture settings shared by every request.
pub struct CaptureSettings {
    /// Where records go; `None` when capture is off everywhere.
    pub sink: Option<Arc<dyn CaptureSink>>,
    /// Set when shutdown starts, so cut exchanges are recorded as `shutdown`.
    pub shutting_down: Arc<AtomicBool>,
}

/// What the proxy needs from the application for one request.
pub struct Context<'a> {
    pub id: &'a str,
    /// When the request head was parsed; all timings count from here.
    pub started: Instant,
    pub client_tokens: &'a [String],
    /// Longest silence while reading the client's request body (`[server] request_body_timeout`).
    pub request_body_timeout: Duration,
    pub limiter: &'a Arc<Semaphore>,
    pub progress: &'a ProgressSettings,
    pub capture: &'a CaptureSettings,
    /// The trace exporter, when `[telemetry]` is on.
    pub telemetry: Option<&'a Arc<crate::telemetry::Telemetry>>,
    /// Kept answers and detaching, for routes with `on_disconnect = "finish"`.
    pub finishing: &'a finish::Finishing,
}

/// Request bytes kept to decide whether the request streams (its `"stream"` field) when the
/// exchange is not captured; a captured one keeps up to the route's `capture_max_body`.
const KEEP_REQUEST: usize = 64 << 10;

/// Forwards `req` (whose path is `rest` below the route's prefix) and returns the response.
pub async fn forward(
    rt: &RouteRuntime,
    rest: &str,
    req: Request<Incoming>,
    cx: Context<'_>,
) -> Response<Body> {
    let route = &rt.route;
    // Boxed: the exchange is about 1 KB and moves into the response body; unboxed, each move was
    // a copy of it, and it made this future (itself copied whole into its box) that much larger.
    let mut ex = Box::new(
        Exchange::new(
            Arc::from(cx.id),
            Arc::clone(&rt.name),
            route.api,
            route.progress,
            (req.method().clone(), req.uri().path().to_owned()),
            cx.started,
            Arc::clone(&cx.capture.shutting_down),
        )
        .measured(rt.metrics.clone()),
    );
    let (parts, incoming) = req.into_parts();
    let mut client_headers = parts.headers;
    let mut owner = None;
    let mut on_disconnect = OnDisconnect::Cancel;
    let mut query = parts.uri.query().map(str::to_owned);
    let mut live = None;
    let admitted = admit::client_token(&mut client_headers, &mut query, cx.client_tokens)
        .and_then(|o| {
            owner = o;
            // Only a client with a token (when tokens are set) starts a span: an anonymous
            // one cannot fill the export queue or choose trace ids in the backend.
            if let Some(t) = cx.telemetry {
                ex.begin_trace(t, &client_headers, &rt.target);
            }
            admit::no_upgrade(&client_headers)
        })
        .and_then(|()| admit::tier(&client_headers, route.progress))
        .and_then(|tier| {
            ex.tier = tier;
            on_disconnect = finish::decide(&client_headers, route.on_disconnect)?;
            admit::declared_length(&client_headers, route.limits.max_request_body)
        })
        .and_then(|()| admit::slot(cx.limiter))
        .and_then(|permit| {
            ex.hold(permit);
            // What the dashboard shows while it runs: only when the admin listener is on.
            live = rt.metrics.is_some().then(|| {
                LiveCell::new(
                    Arc::clone(&ex.route),
                    ex.tier.as_str(),
                    cx.started,
                    Arc::clone(&cx.progress.ladder),
                )
            });
            cx.progress
                .hub
                .begin_live(&ex.id, owner, live.clone())
                .map_err(|e| {
                    ProxyError::new(
                        StatusCode::CONFLICT,
                        Origin::Downstream,
                        "request_id_in_flight",
                        e.to_string(),
                    )
                })
        });
    let begun = match admitted {
        Ok(b) => b,
        Err(e) => return refuse(ex, e, &parts.method, rest, &cx, rt, owner),
    };
    ex.w = Some(
        Watcher::new(
            Arc::clone(&ex.id),
            cx.started,
            begun.last_seq,
            Arc::clone(&cx.progress.hub),
            Arc::clone(&cx.progress.ladder),
            begun.listeners,
            ex.tier == Tier::Events,
        )
        .with_live(live.clone()),
    );
    if let (Some(w), Some(_)) = (ex.w.as_mut(), &ex.trace) {
        w.progress_mut().keep_phases();
    }
    ex.capture = capture_for(
        route,
        (&ex.id, &ex.route),
        &cx,
        &parts.method,
        rest,
        (begun.attempt, owner),
        ex.tier,
    );
    let query = query.as_deref();
    let prepared = admit::upstream_uri(&rt.target, rest, query)
        .and_then(|uri| admit::upstream_headers(client_headers, query, route).map(|h| (uri, h)));
    let (uri, mut out_headers) = match prepared {
        Ok(p) => p,
        Err(e) => return refuse(ex, e, &parts.method, rest, &cx, rt, owner),
    };
    if let Some(t) = &ex.trace {
        // The upstream's parent is aloud's span; a client's `tracestate` passes unchanged.
        let value = crate::telemetry::format_traceparent(&t.context);
        if let Ok(v) = http::HeaderValue::from_str(&value) {
            out_headers.insert("traceparent", v);
        }
    }
    let path_and_query = uri
        .path_and_query()
        .map_or_else(|| rest.to_owned(), |pq| pq.as_str().to_owned());
    let keep = match &ex.capture {
        Some(_) if route.capture == CaptureLevel::Full => {
            KEEP_REQUEST.max(route.capture_max_body as usize)
        }
        _ => KEEP_REQUEST,
    };
    let tap = RequestTap::new(keep);
    ex.tap = Some(Arc::clone(&tap));
    let limit = route.limits.max_request_body;
    let mut upstream_req = Request::new(admit::upstream_body(
        incoming,
        limit,
        cx.request_body_timeout,
        &tap,
    ));
    *upstream_req.method_mut() = parts.method.clone();
    *upstream_req.uri_mut() = uri;
    *upstream_req.headers_mut() = out_headers;
    let head = match rt.upstream.plain() {
        Some(plain) => admit::send_plain(
            plain,
            upstream_req,
            Arc::clone(&tap),
            limit,
            cx.request_body_timeout,
        ),
        None => {
            let (client, slot) = rt.upstream.pick();
            ex.stream_slot = slot;
            admit::send(
                client,
                upstream_req,
                Arc::clone(&tap),
                limit,
                cx.request_body_timeout,
            )
        }
    };
    // The request goes out before the rest of the bookkeeping: on a pooled connection its
    // first poll queues it (waking that connection's task), and the yield lets that task write
    // it, so what follows (the ETA key, the dashboard's model, the body and its timer) runs
    // while the upstream works instead of before it hears of the request. (A connection still
    // to be opened gains nothing: the head future itself drives the connect.) The exchange
    // already owns its hub entry and slot, so a client that leaves during the yield still gets
    // its one finish step. Two exchanges skip the yield: one that finishes what its client
    // left (`on_disconnect = "finish"`, by route or header) must not be cut before the body
    // that detaches it exists, and in the events tier the body's first events are the client's
    // first bytes, which a yield would put behind other tasks.
    let finishes = on_disconnect == OnDisconnect::Finish;
    let head = if finishes || ex.tier == Tier::Events {
        head
    } else {
        sent_first(head).await
    };
    if let Some(live) = &live {
        live.set_model_hint(Arc::clone(&tap) as Arc<dyn ModelHint>);
        if let Some(model) = crate::apis::model_in_path(rest) {
            live.set_model(model);
        }
    }
    if let Some(w) = ex.w.as_mut().filter(|_| cx.progress.eta_on) {
        w.set_eta(EtaWatch::new(
            Arc::clone(&cx.progress.eta),
            eta::key_source(rt, &parts.method, &path_and_query, &tap),
        ));
    }

    let tier = ex.tier;
    let spec = Spec {
        mode: match tier {
            Tier::Off => Mode::Pass,
            Tier::Comments => Mode::Comments,
            Tier::Events => Mode::Events,
        },
        path_and_query: path_and_query.clone(),
        deadlines: Deadlines::new(
            cx.started,
            cx.progress.heartbeat,
            route.limits.headers_timeout,
            route.limits.total_timeout,
            route.limits.idle_timeout,
        ),
        headers_timeout: route.limits.headers_timeout.min(route.limits.total_timeout),
        max_wrap_body: cx.progress.max_wrap_body,
        wrap_budget: Arc::clone(&cx.progress.wrap_budget),
        later: Arc::clone(cx.finishing.later.here()),
    };
    let kept = finishes.then(|| cx.finishing.begin((&ex.id, route.api), owner, cx.started));
    let mut body = Detachable::new(ExchangeBody::new(ex, spec, head), kept);
    match tier {
        Tier::Events => return finishing(committed(body), finishes),
        Tier::Off => {
            body.wait_head(None).await;
        }
        Tier::Comments => {
            let hold = later(cx.started, cx.progress.hold);
            if body.wait_head(Some(hold)).await == HeadWait::HoldExpired {
                if injectable(route.api, &path_and_query, &parts.method, &tap) {
                    body.commit();
                    return finishing(committed(body), finishes);
                }
                body.wait_head(None).await;
            }
        }
    }
    if let Some(e) = body.take_failure() {
        // The body's drop runs the exchange's finish step (the failure is its ending).
        return timed(e.into_response_unlogged(route.api), body.server_timing());
    }
    match body.take_head() {
        Some(head) => finishing(Response::from_parts(head, Body::new(body)), finishes),
        None => {
            let e = ProxyError::new(
                StatusCode::BAD_GATEWAY,
                Origin::Internal,
                "no_head",
                "the upstream gave no response head",
            );
            body.fail(&e);
            timed(e.into_response_unlogged(route.api), body.server_timing())
        }
    }
}

/// Polls the upstream request once, which queues it on its connection, then goes behind the
/// tasks already queued so the connection's task writes it. A head future that finished at
/// once (a refused connection, a body fault) is kept as its result.
async fn sent_first(mut head: response::HeadFuture) -> response::HeadFuture {
    use std::task::Poll;
    let first = std::future::poll_fn(|cx| Poll::Ready(head.as_mut().poll(cx))).await;
    if let Poll::Ready(result) = first {
        head = Box::pin(std::future::ready(result));
    }
    behind_queued().await;
    head
}

/// Pending once, woken at once: the task is queued behind the ones already queued (the
/// connection's task the first poll woke), as tokio puts a task that woke itself while it ran.
/// Not `tokio::task::yield_now`: that defers the task until the runtime has also polled its
/// I/O driver, one more `epoll_wait` per request when the run queue is otherwise empty
/// (benches/README.md, "The request goes out first").
async fn behind_queued() {
    let mut queued = false;
    std::future::poll_fn(|cx| {
        if std::mem::replace(&mut queued, true) {
            std::task::Poll::Ready(())
        } else {
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await;
}

/// Refused or failed before an attempt could start: one record, one log line, the error.
fn refuse(
    mut ex: Box<Exchange>,
    e: ProxyError,
    method: &Method,
    rest: &str,
    cx: &Context<'_>,
    rt: &RouteRuntime,
    owner: Option<Owner>,
) -> Response<Body> {
    // With client tokens set, a request without a valid one is nobody's exchange: it is logged
    // and counted, never captured. Captured, every anonymous request (its path alone up to the
    // head limit) would be a row anyone could add without limit.
    let anonymous = e.label == admit::TOKEN_MISSING;
    if ex.capture.is_none() && !anonymous {
        ex.capture = capture_for(
            &rt.route,
            (&ex.id, &ex.route),
            cx,
            method,
            rest,
            (0, owner),
            ex.tier,
        );
    }
    ex.client_head(Instant::now(), e.status.as_u16());
    let timing = ex.server_timing(false);
    ex.end(ending_for(&e));
    ex.finish(None);
    timed(e.into_response_unlogged(rt.route.api), timing)
}

/// Adds aloud's `Server-Timing` line to a response aloud made itself.
fn timed(mut response: Response<Body>, timing: http::HeaderValue) -> Response<Body> {
    response.headers_mut().append(timing::SERVER_TIMING, timing);
    response
}

/// A `200 text/event-stream` response whose body carries the whole exchange.
fn committed(body: Detachable) -> Response<Body> {
    let timing = body.server_timing();
    let mut response = Response::new(Body::new(body));
    *response.headers_mut() = ExchangeBody::committed_head();
    timed(response, timing)
}

/// Whether a comments-tier request may be committed early: it streams (by the request alone),
/// its stream is one whose clients tolerate comments, and the route is not Gemini or Ollama.
fn injectable(api: Api, path_and_query: &str, method: &Method, tap: &RequestTap) -> bool {
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
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    tolerant && request_streams(api, method.as_str(), path, query, json.as_ref())
}

/// Whether this exchange is captured (route level, sampling by id), and its recorder.
fn capture_for(
    route: &Route,
    (id, name): (&Arc<str>, &Arc<str>),
    cx: &Context<'_>,
    method: &Method,
    rest: &str,
    (attempt, owner): (u32, Option<Owner>),
    tier: Tier,
) -> Option<Capture> {
    let sink = cx.capture.sink.as_ref()?;
    if route.capture == CaptureLevel::Off || !sampled(cx.id, route.capture_sample) {
        return None;
    }
    let started_at_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| {
            d.as_millis() as i64 - cx.started.elapsed().as_millis() as i64
        });
    let meta = Meta {
        id: Arc::clone(id),
        attempt,
        started_at_ms,
        route: Arc::clone(name),
        api: route.api.as_str(),
        method: method.clone(),
        path: if rest.is_empty() {
            "/".to_owned()
        } else {
            rest.to_owned()
        },
        tier: tier.as_str(),
        level: route.capture,
        max_body: route.capture_max_body as usize,
        owner,
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

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // the test's own task, awaited by the test
mod tests {
    use std::sync::{Arc, Mutex};

    /// The connection's task, woken by the request's first poll, runs before the exchange goes
    /// on: in the single-threaded runtime each serving thread runs, and in a work-stealing one.
    #[test]
    fn a_task_woken_before_it_runs_first() {
        let current = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let stealing = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        for runtime in [current, stealing] {
            let order = Arc::new(Mutex::new(Vec::new()));
            let run = {
                let order = Arc::clone(&order);
                async move {
                    let (wake, woken) = tokio::sync::oneshot::channel::<()>();
                    let connection = {
                        let order = Arc::clone(&order);
                        tokio::spawn(async move {
                            let _ = woken.await;
                            order.lock().unwrap().push("connection writes");
                        })
                    };
                    // The connection's task waits on its channel before the request comes.
                    tokio::task::yield_now().await;
                    wake.send(()).unwrap();
                    super::behind_queued().await;
                    order.lock().unwrap().push("exchange goes on");
                    connection.await.unwrap();
                }
            };
            runtime.block_on(runtime.spawn(run)).unwrap();
            assert_eq!(
                *order.lock().unwrap(),
                ["connection writes", "exchange goes on"]
            );
        }
    }
}
