//! Errors aloud answers itself, in the route's api envelope, with a status and a log label.

use crate::apis::{Api, envelope};
use axum::body::Body;
use http::{HeaderValue, Response, StatusCode, header};

/// Where an error came from, for logs and for deciding whether a retry may help.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The client sent something aloud refuses.
    Downstream,
    /// The upstream failed, stalled or could not be reached.
    Upstream,
    /// aloud itself is at a limit (overload, shutdown).
    Internal,
}

/// An error response aloud makes itself, before any upstream response started.
#[derive(Debug)]
pub struct ProxyError {
    pub status: StatusCode,
    pub origin: Origin,
    /// Low-cardinality label for logs and metrics, like `body_too_large`.
    pub label: &'static str,
    pub message: String,
    pub retry_after_secs: Option<u32>,
    /// Close the client connection after this answer (its framing cannot be trusted further).
    pub close: bool,
}

impl ProxyError {
    pub fn new(
        status: StatusCode,
        origin: Origin,
        label: &'static str,
        message: impl Into<String>,
    ) -> Self {
        ProxyError {
            status,
            origin,
            label,
            message: message.into(),
            retry_after_secs: None,
            close: false,
        }
    }

    pub fn retry_after(mut self, secs: u32) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    pub fn closing(mut self) -> Self {
        self.close = true;
        self
    }

    /// The response in `api`'s envelope, with `x-should-retry` and, when set, `Retry-After`;
    /// logged here (a proxied exchange logs in its own finish step instead).
    pub fn into_response(self, api: Api) -> Response<Body> {
        match self.origin {
            Origin::Downstream => {
                tracing::info!(status = self.status.as_u16(), label = self.label, message = %self.message, "refused request")
            }
            Origin::Upstream | Origin::Internal => tracing::warn!(
                status = self.status.as_u16(),
                label = self.label,
                origin = ?self.origin,
                message = %self.message,
                "request failed"
            ),
        }
        self.into_response_unlogged(api)
    }

    /// The response in `api`'s envelope, for an exchange whose finish step writes the log line.
    pub fn into_response_unlogged(self, api: Api) -> Response<Body> {
        let body = envelope::error_body(api, self.status, &self.message);
        let mut response = Response::new(Body::from(body.to_string()));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let retry = if envelope::should_retry(self.status) {
            "true"
        } else {
            "false"
        };
        headers.insert("x-should-retry", HeaderValue::from_static(retry));
        if let Some(secs) = self.retry_after_secs {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.close {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}
