//! Errors aloud answers itself, in the route's api envelope, with a status and a log label.

use super::body::RequestFault;
use crate::apis::{Api, envelope};
use axum::body::Body;
use http::{HeaderName, HeaderValue, Response, StatusCode, header};
use std::time::Duration;

/// The header naming the reason of an error aloud answers itself (its `label`).
pub const ERROR_CODE: HeaderName = HeaderName::from_static("aloud-error-code");

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
    /// Overrides `x-should-retry`, which otherwise follows the status.
    pub should_retry: Option<bool>,
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
            should_retry: None,
        }
    }

    /// A request body over the route's limit (declared or counted): the size in units and the
    /// config key that sets it.
    pub fn body_too_large(limit: u64) -> Self {
        ProxyError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            Origin::Downstream,
            "body_too_large",
            format!(
                "request body over {}, this route's limit (`max_request_body`, in [upstream] or on the route)",
                crate::config::units::ShownSize(limit)
            ),
        )
    }

    /// The answer to a request whose body failed on its way upstream (see `RequestTap::fault`):
    /// the client's fault, so a 4xx, never the upstream's 502/504.
    pub fn from_request_fault(fault: RequestFault, limit: u64, timeout: Duration) -> Self {
        match fault {
            RequestFault::TooLarge => ProxyError::body_too_large(limit),
            // Sending the same body again would stall again as likely as not: the SDKs that
            // retry 408 are told not to.
            RequestFault::Stalled => ProxyError::new(
                StatusCode::REQUEST_TIMEOUT,
                Origin::Downstream,
                "request_body_timeout",
                format!(
                    "the request body stalled: nothing arrived for {}",
                    humantime::format_duration(timeout)
                ),
            )
            .no_retry()
            .closing(),
            RequestFault::Malformed => ProxyError::new(
                StatusCode::BAD_REQUEST,
                Origin::Downstream,
                "bad_request_body",
                "the request body is malformed (bad chunked framing) or ended early",
            )
            .closing(),
        }
    }

    /// Sends `x-should-retry: false` whatever the status.
    pub fn no_retry(mut self) -> Self {
        self.should_retry = Some(false);
        self
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
                tracing::info!(status = self.status.as_u16(), label = self.label, detail = %self.message, "refused request")
            }
            Origin::Upstream | Origin::Internal => tracing::warn!(
                status = self.status.as_u16(),
                label = self.label,
                origin = ?self.origin,
                detail = %self.message,
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
        let retry = if self
            .should_retry
            .unwrap_or_else(|| envelope::should_retry(self.status))
        {
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
        // The machine-readable reason, beside the api's own envelope (which names only the
        // status), as the resume endpoints send it.
        headers.insert(ERROR_CODE, HeaderValue::from_static(self.label));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_faults_are_the_clients() {
        let limit = 10;
        let timeout = Duration::from_secs(30);
        for (fault, status, retry) in [
            (RequestFault::TooLarge, 413, "false"),
            (RequestFault::Stalled, 408, "false"),
            (RequestFault::Malformed, 400, "false"),
        ] {
            let e = ProxyError::from_request_fault(fault, limit, timeout);
            assert_eq!(e.origin, Origin::Downstream, "{fault:?}");
            let r = e.into_response(Api::OpenAi);
            assert_eq!(r.status().as_u16(), status, "{fault:?}");
            assert_eq!(r.headers()["x-should-retry"], retry, "{fault:?}");
            assert!(r.headers().contains_key(ERROR_CODE), "{fault:?}");
        }
    }
}
