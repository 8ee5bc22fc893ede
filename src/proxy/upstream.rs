//! The upstream HTTP client: rustls for HTTPS, pooled HTTP/1.1 connections, TCP_NODELAY.
//!
//! The client never follows redirects (hyper has no such feature) and only retries a request
//! that a pooled connection closed before any byte of it was written.

use axum::body::Body;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::time::Duration;

pub type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
pub type UpstreamClient = Client<Connector, Body>;

/// How long an unused pooled connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(90);

/// A client for one route: its own pool and connect timeout.
pub fn client(connect_timeout: Duration) -> UpstreamClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(https)
}

/// Why talking to the upstream failed before a response arrived, in words for the client.
pub fn describe(error: &hyper_util::client::legacy::Error) -> (UpstreamFailure, String) {
    let mut cause = String::new();
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    if error.is_connect() {
        let timed_out = cause.contains("timed out") || cause.contains("timeout");
        let kind = if timed_out {
            UpstreamFailure::ConnectTimeout
        } else {
            UpstreamFailure::Connect
        };
        return (kind, format!("cannot connect to the upstream: {cause}"));
    }
    let what = if cause.is_empty() {
        error.to_string()
    } else {
        cause
    };
    (
        UpstreamFailure::Other,
        format!("the upstream failed before responding: {what}"),
    )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamFailure {
    Connect,
    ConnectTimeout,
    Other,
}

/// Whether `error` (from a request) was caused by our request body limit.
pub fn caused_by_body_limit(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(s) = source {
        if s.is::<super::body::BodyTooLarge>() {
            return true;
        }
        source = s.source();
    }
    false
}
