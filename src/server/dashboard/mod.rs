//! `/dashboard` on the admin listener: the page (assets/dashboard/, with the vendored uPlot) and
//! the JSON it is drawn from: `api/live` (the requests in flight, from the progress hub),
//! `api/points` (one point per exchange) and `api/stats` (the report `aloud stats --json`
//! prints). docs/dashboard.md says what each chart shows.
//!
//! Store reads never run on the runtime: one reader (opened on first use, reopened after an
//! error) is lent to one blocking task at a time, tracked with the admin's tasks; other
//! requests wait their turn asynchronously.

mod assets;
mod auth;
mod points;
mod reader;
mod stats;

use super::Tasks;
use crate::capture::stats::{parse_instant, report_from_store};
use crate::config::Database;
use crate::progress::Hub;
use axum::body::Body;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use serde::Serialize;
use std::sync::Arc;

pub use assets::UPLOT_VERSION;
use auth::{Gate, Pass};
use reader::Reader;

/// The most in-flight requests `api/live` lists (it counts them all).
const MAX_LIVE: usize = 200;

/// What the dashboard answers from.
pub struct Dashboard {
    gate: Gate,
    reader: Reader,
}

impl Dashboard {
    /// The dashboard over `database` (the capture database), behind `token` when one is set.
    pub fn new(database: Database, token: Option<String>) -> Dashboard {
        Dashboard {
            gate: Gate::new(token),
            reader: Reader::new(database),
        }
    }

    /// Answers a request below `/dashboard` (`path` is what follows it).
    pub async fn answer(
        &self,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
        hub: Option<&Arc<Hub>>,
        tasks: &Tasks,
    ) -> Response<Body> {
        let pass = self.gate.check(headers, query);
        match pass {
            Pass::Denied => return unauthorized(),
            Pass::Named(host) => {
                return text(
                    StatusCode::FORBIDDEN,
                    format!(
                        "without [admin] token_env the dashboard answers only requests to an IP \
                         address or localhost, not {host:?}: set token_env to open it by name\n"
                    ),
                );
            }
            Pass::Open | Pass::Query => {}
        }
        let query = query.unwrap_or("");
        match path {
            // The token came in the address: keep it as a cookie, and take it out of the URL.
            "" | "/" if pass == Pass::Query => self.enter(query),
            "/api/live" => json(&hub.map(|h| h.live(MAX_LIVE))),
            "/api/stats" => {
                let params: Vec<(&str, String)> = params(query).collect();
                match stats::query(&params, now_ms()) {
                    Ok(q) => respond(
                        self.reader
                            .read(tasks, move |store| {
                                report_from_store(store, &q).map_err(|e| e.to_string())
                            })
                            .await,
                    ),
                    Err(e) => bad_request(e),
                }
            }
            "/api/points" => match points_query(query) {
                Ok((since, until, limit)) => respond(
                    self.reader
                        .read(tasks, move |store| {
                            points::read(store, since, until, limit).map_err(|e| e.to_string())
                        })
                        .await,
                ),
                Err(e) => bad_request(e),
            },
            _ => assets::file(path).unwrap_or_else(|| {
                text(
                    StatusCode::NOT_FOUND,
                    "not found: try /dashboard, /dashboard/api/stats, /dashboard/api/points or \
                     /dashboard/api/live\n"
                        .to_owned(),
                )
            }),
        }
    }

    /// A redirect to the page without `access_token` (other parameters kept), with the cookie.
    fn enter(&self, query: &str) -> Response<Body> {
        let kept: Vec<&str> = query
            .split('&')
            .filter(|p| !p.is_empty() && !p.starts_with("access_token="))
            .collect();
        let location = match kept.is_empty() {
            true => "/dashboard".to_owned(),
            false => format!("/dashboard?{}", kept.join("&")),
        };
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::SEE_OTHER;
        let h = r.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&location) {
            h.insert(header::LOCATION, v);
        }
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        if let Some(cookie) = self.gate.cookie() {
            h.insert(header::SET_COOKIE, cookie);
        }
        r
    }
}

/// `since`, `until` (as `aloud stats` takes them, or Unix ms) and `limit` for `api/points`.
fn points_query(query: &str) -> Result<(Option<i64>, Option<i64>, usize), String> {
    let now = now_ms();
    let mut out = (None, None, points::MAX_POINTS);
    for (name, value) in params(query) {
        match name {
            "since" => out.0 = Some(instant(&value, now).map_err(|e| format!("since: {e}"))?),
            "until" => out.1 = Some(instant(&value, now).map_err(|e| format!("until: {e}"))?),
            "limit" => {
                let n: usize = value
                    .parse()
                    .map_err(|_| format!("limit: {value:?} is not a count"))?;
                out.2 = n.min(points::MAX_POINTS);
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Unix ms, or what `aloud stats --since` takes (`24h`, an RFC 3339 time, a date).
fn instant(text: &str, now: i64) -> Result<i64, String> {
    match text.parse::<i64>() {
        Ok(ms) => Ok(ms),
        Err(_) => parse_instant(text, now),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The query's `name=value` pairs, values percent-decoded.
fn params(query: &str) -> impl Iterator<Item = (&str, String)> {
    query.split('&').filter_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        Some((name, crate::config::tokens::percent_decode(value)))
    })
}

fn respond<T: Serialize>(read: Result<T, String>) -> Response<Body> {
    match read {
        Ok(v) => json(&v),
        Err(e) => {
            tracing::warn!(error = %e, "dashboard: cannot read the capture database");
            text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot read the capture database: {e}\n"),
            )
        }
    }
}

fn json<T: Serialize>(value: &T) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(bytes) => {
            let mut r = Response::new(Body::from(bytes));
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

fn bad_request(message: String) -> Response<Body> {
    text(StatusCode::BAD_REQUEST, format!("{message}\n"))
}

fn unauthorized() -> Response<Body> {
    let mut r = text(
        StatusCode::UNAUTHORIZED,
        "the dashboard needs the admin token: open /dashboard?access_token=TOKEN once (a \
         cookie keeps it), or send Authorization: Bearer TOKEN\n"
            .to_owned(),
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"aloud admin\""),
    );
    r
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
