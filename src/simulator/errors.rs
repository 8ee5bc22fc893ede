//! Error bodies in each simulated api's own envelope, so SDKs raise what they raise upstream.

use super::plan::Plan;
use http::StatusCode;
use serde_json::{Value, json};

/// The wire family a route speaks; it decides the error envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    OpenAi,
    Anthropic,
    Gemini,
    Ollama,
}

/// The error body `family`'s SDKs expect for `status`.
pub fn error_body(family: Family, status: StatusCode, message: &str) -> Value {
    let code = status.as_u16();
    match family {
        Family::OpenAi => json!({
            "error": {
                "message": message,
                "type": openai_type(code),
                "param": null,
                "code": openai_code(code),
            }
        }),
        Family::Anthropic => json!({
            "type": "error",
            "error": { "type": anthropic_type(code), "message": message },
        }),
        Family::Gemini => json!({
            "error": { "code": code, "message": message, "status": google_status(code) }
        }),
        Family::Ollama => json!({ "error": message }),
    }
}

/// A whole error response, sent after `headers_ms`.
pub fn error_plan(family: Family, status: StatusCode, headers_ms: u64, message: &str) -> Plan {
    Plan::json(status, headers_ms, &error_body(family, status, message))
}

fn openai_type(code: u16) -> &'static str {
    match code {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        _ if code < 500 => "invalid_request_error",
        _ => "server_error",
    }
}

fn openai_code(code: u16) -> Value {
    match code {
        401 => json!("invalid_api_key"),
        404 => json!("not_found"),
        429 => json!("rate_limit_exceeded"),
        _ => Value::Null,
    }
}

fn anthropic_type(code: u16) -> &'static str {
    match code {
        400 | 422 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        _ => "api_error",
    }
}

fn google_status(code: u16) -> &'static str {
    match code {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        413 => "INVALID_ARGUMENT",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        500 => "INTERNAL",
        501 => "UNIMPLEMENTED",
        503 | 529 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ if code < 500 => "FAILED_PRECONDITION",
        _ => "UNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes() {
        let s = |c| StatusCode::from_u16(c).unwrap();
        let a = error_body(Family::Anthropic, s(529), "busy");
        assert_eq!(a["error"]["type"], "overloaded_error");
        assert_eq!(
            error_body(Family::Anthropic, s(429), "x")["error"]["type"],
            "rate_limit_error"
        );
        assert_eq!(
            error_body(Family::Anthropic, s(500), "x")["error"]["type"],
            "api_error"
        );
        let o = error_body(Family::OpenAi, s(429), "slow down");
        assert_eq!(o["error"]["message"], "slow down");
        assert!(o["error"].get("param").is_some());
        let g = error_body(Family::Gemini, s(429), "x");
        assert_eq!(
            (g["error"]["code"].as_u64(), g["error"]["status"].as_str()),
            (Some(429), Some("RESOURCE_EXHAUSTED"))
        );
        assert_eq!(
            error_body(Family::Ollama, s(500), "boom"),
            json!({"error": "boom"})
        );
    }
}
