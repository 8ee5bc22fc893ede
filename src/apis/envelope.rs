//! Error bodies in each api's own shape, so SDKs raise the error they would raise upstream.

use super::Api;
use http::StatusCode;
use serde_json::{Value, json};

/// Builds the JSON error body an SDK of `api` expects for `status`.
pub fn error_body(api: Api, status: StatusCode, message: &str) -> Value {
    match api {
        Api::OpenAi => json!({
            "error": {
                "message": message,
                "type": openai_type(status),
                "param": null,
                "code": openai_code(status),
            }
        }),
        Api::Anthropic => json!({
            "type": "error",
            "error": { "type": anthropic_type(status), "message": message }
        }),
        Api::Gemini => json!({
            "error": { "code": status.as_u16(), "message": message, "status": google_status(status) }
        }),
        Api::Ollama => json!({ "error": message }),
    }
}

/// Whether a client may retry an error aloud made itself (the `x-should-retry` header).
pub fn should_retry(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 429 | 502 | 503 | 504)
}

fn openai_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    }
}

fn openai_code(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        404 => "not_found",
        405 => "method_not_allowed",
        413 => "request_too_large",
        429 => "rate_limited",
        501 => "not_implemented",
        502 => "bad_gateway",
        503 => "overloaded",
        504 => "gateway_timeout",
        _ => "aloud_error",
    }
}

fn anthropic_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 405 | 409 | 431 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        _ => "api_error",
    }
}

fn google_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 405 | 413 | 431 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "INTERNAL",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_api_has_its_own_shape() {
        let s = StatusCode::SERVICE_UNAVAILABLE;
        assert_eq!(error_body(Api::OpenAi, s, "m")["error"]["message"], "m");
        assert_eq!(error_body(Api::Anthropic, s, "m")["type"], "error");
        assert_eq!(
            error_body(Api::Anthropic, s, "m")["error"]["type"],
            "overloaded_error"
        );
        assert_eq!(
            error_body(Api::Gemini, s, "m")["error"]["status"],
            "UNAVAILABLE"
        );
        assert_eq!(error_body(Api::Ollama, s, "m")["error"], "m");
        assert!(should_retry(s));
        assert!(!should_retry(StatusCode::PAYLOAD_TOO_LARGE));
    }
}
