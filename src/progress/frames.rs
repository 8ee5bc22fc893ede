//! The bytes aloud adds to a response, built without I/O: progress payloads, `aloud.*` events,
//! `aloud.result` bodies, and upstream errors in each dialect's own in-stream shape.

use super::hub::Published;
use crate::apis::stream::Dialect;
use crate::apis::{Api, envelope, upstream_error};
use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::sync::Arc;

pub const PROGRESS: &str = "aloud.progress";
pub const DONE: &str = "aloud.done";
pub const RESULT: &str = "aloud.result";
pub const ERROR: &str = "aloud.error";

/// Serialises an event payload once, for the hub and for the response.
pub fn publish(seq: u64, name: &'static str, payload: &impl Serialize) -> Published {
    let data = serde_json::to_string(payload)
        .unwrap_or_else(|e| format!("{{\"serialize_error\":\"{e}\"}}"));
    Published {
        seq,
        name,
        data: Arc::from(data),
        heartbeat: false,
    }
}

/// `event: aloud.x\ndata: {...}\n\n` for the events tier.
pub fn event_bytes(p: &Published) -> Bytes {
    crate::sse::event(p.name, &p.data)
}

/// `: aloud {...}\n` for the comments tier.
pub fn comment_bytes(p: &Published) -> Bytes {
    crate::sse::comment(&p.data)
}

/// Headers as a JSON object (lower-case names; repeated names joined with ", "); cookies and
/// credentials are left out.
pub fn headers_json(headers: &HeaderMap) -> Value {
    let mut out = Map::new();
    for (name, value) in headers {
        let n = name.as_str();
        if matches!(
            n,
            "set-cookie" | "cookie" | "authorization" | "x-api-key" | "api-key" | "x-goog-api-key"
        ) {
            continue;
        }
        let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match out.get_mut(n) {
            Some(Value::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(&v);
            }
            _ => {
                out.insert(n.to_owned(), Value::String(v));
            }
        }
    }
    Value::Object(out)
}

/// A body for `aloud.result` / `aloud.error`: `body` when it is JSON, else `body_text` when it is
/// UTF-8, else `body_base64`.
pub fn body_fields(bytes: &[u8], out: &mut Map<String, Value>) {
    if let Ok(v) = serde_json::from_slice::<Value>(bytes) {
        out.insert("body".into(), v);
    } else if let Ok(text) = std::str::from_utf8(bytes) {
        out.insert("body_text".into(), Value::String(text.to_owned()));
    } else {
        out.insert(
            "body_base64".into(),
            Value::String(base64::engine::general_purpose::STANDARD.encode(bytes)),
        );
    }
}

/// `aloud.result`: a non-streaming upstream answer, wrapped.
pub fn result(
    v: u32,
    request_id: &str,
    seq: u64,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Published {
    let mut out = Map::new();
    out.insert("v".into(), json!(v));
    out.insert("request_id".into(), json!(request_id));
    out.insert("seq".into(), json!(seq));
    out.insert("status".into(), json!(status.as_u16()));
    out.insert("headers".into(), headers_json(headers));
    body_fields(body, &mut out);
    publish(seq, RESULT, &Value::Object(out))
}

/// What `aloud.error` says about a failure.
#[derive(Clone, Copy, Debug)]
pub struct Failure<'a> {
    /// The upstream's status, or the one aloud answers for (502, 504...).
    pub status: u16,
    /// aloud's machine-readable cause (docs/protocol.md).
    pub code: &'a str,
    /// The upstream's own message when it sent one, else aloud's.
    pub message: &'a str,
    /// The upstream's error type (`rate_limit_error`, `RESOURCE_EXHAUSTED`), when it named one.
    pub kind: Option<&'a str>,
    /// The upstream's error body, when there was one.
    pub body: Option<&'a [u8]>,
}

/// `aloud.error`: a failure, with the upstream's status, message, type and body when there was
/// one.
pub fn error(v: u32, request_id: &str, seq: u64, f: &Failure<'_>) -> Published {
    let mut out = Map::new();
    out.insert("v".into(), json!(v));
    out.insert("request_id".into(), json!(request_id));
    out.insert("seq".into(), json!(seq));
    out.insert("status".into(), json!(f.status));
    out.insert("code".into(), json!(f.code));
    out.insert("type".into(), json!(f.kind));
    out.insert("message".into(), json!(f.message));
    if let Some(b) = f.body {
        body_fields(b, &mut out);
    }
    publish(seq, ERROR, &Value::Object(out))
}

/// The error object inside an upstream error body, when it has the usual `{"error": ...}` shape.
fn upstream_error_object(body: &[u8]) -> Option<Value> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v.get("error").cloned().filter(Value::is_object)
}

/// An upstream failure after the status was committed, in the stream's own error shape so the
/// SDK raises it (docs/streams.md, "Errors after the status was committed"). `body` is the
/// upstream's error body, when it sent one.
pub fn in_stream_error(
    api: Api,
    dialect: Option<Dialect>,
    status: StatusCode,
    body: Option<&[u8]>,
    message: &str,
) -> Bytes {
    // An upstream that sent no `{"error":{...}}` object (Ollama's `{"error":"..."}`) still
    // has its own message passed on.
    let theirs = body
        .map(|b| upstream_error::read(api, b))
        .unwrap_or_default();
    let message = theirs.message.as_deref().unwrap_or(message);
    let ours = envelope::error_body(api, status, message);
    let error = body
        .and_then(upstream_error_object)
        .unwrap_or_else(|| ours["error"].clone());
    match dialect {
        Some(Dialect::Anthropic) => {
            let error = if error.get("type").is_some() {
                error
            } else {
                envelope::error_body(Api::Anthropic, status, message)["error"].clone()
            };
            crate::sse::event(
                "error",
                &json!({ "type": "error", "error": error }).to_string(),
            )
        }
        Some(Dialect::OpenAiResponses) => {
            let msg = error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or(message);
            let code = error.get("code").cloned().unwrap_or(Value::Null);
            let data = json!({ "type": "error", "code": code, "message": msg, "param": null, "sequence_number": 0 });
            crate::sse::event("error", &data.to_string())
        }
        _ => Bytes::from(format!("data: {}\n\n", json!({ "error": error }))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_json_text_or_base64() {
        let mut m = Map::new();
        body_fields(b"{\"a\":1}", &mut m);
        assert_eq!(m["body"]["a"], 1);
        let mut m = Map::new();
        body_fields(b"plain", &mut m);
        assert_eq!(m["body_text"], "plain");
        let mut m = Map::new();
        body_fields(&[0xff, 0xfe], &mut m);
        assert_eq!(m["body_base64"], "//4=");
    }

    #[test]
    fn errors_carry_status_code_type_and_message_in_their_own_fields() {
        let body = br#"{"error":{"message":"slow down","type":"rate_limit_error"}}"#;
        let p = error(
            1,
            "req",
            4,
            &Failure {
                status: 429,
                code: "upstream_status",
                message: "slow down",
                kind: Some("rate_limit_error"),
                body: Some(body),
            },
        );
        let v: Value = serde_json::from_str(&p.data).unwrap();
        assert_eq!(p.name, ERROR);
        assert_eq!(
            (&v["status"], &v["code"], &v["type"], &v["message"]),
            (
                &json!(429),
                &json!("upstream_status"),
                &json!("rate_limit_error"),
                &json!("slow down")
            )
        );
        assert_eq!(v["body"]["error"]["type"], "rate_limit_error");
        let ours = error(
            1,
            "req",
            5,
            &Failure {
                status: 504,
                code: "idle_timeout",
                message: "no upstream bytes within the idle timeout",
                kind: None,
                body: None,
            },
        );
        let v: Value = serde_json::from_str(&ours.data).unwrap();
        assert!(v["type"].is_null() && v.get("body").is_none(), "{v}");
    }

    #[test]
    fn an_ollama_error_keeps_its_message_in_another_dialects_shape() {
        let out = in_stream_error(
            Api::Ollama,
            Some(Dialect::OpenAiChat),
            StatusCode::NOT_FOUND,
            Some(br#"{"error":"model 'x' not found"}"#),
            "the upstream answered 404",
        );
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert!(text.contains("model 'x' not found"), "{text}");
    }

    #[test]
    fn in_stream_errors_take_each_dialects_shape() {
        let s = StatusCode::TOO_MANY_REQUESTS;
        let upstream = br#"{"error":{"message":"slow down","type":"rate_limit_error"}}"#;
        let chat = in_stream_error(
            Api::OpenAi,
            Some(Dialect::OpenAiChat),
            s,
            Some(upstream),
            "x",
        );
        assert_eq!(
            chat,
            Bytes::from_static(
                b"data: {\"error\":{\"message\":\"slow down\",\"type\":\"rate_limit_error\"}}\n\n"
            )
        );
        let anthropic = in_stream_error(
            Api::Anthropic,
            Some(Dialect::Anthropic),
            StatusCode::from_u16(529).unwrap(),
            None,
            "busy",
        );
        let text = String::from_utf8(anthropic.to_vec()).unwrap();
        assert!(text.starts_with("event: error\ndata: {\"error\":{\"message\":\"busy\",\"type\":\"overloaded_error\"},\"type\":\"error\"}"), "{text}");
        let responses = in_stream_error(
            Api::OpenAi,
            Some(Dialect::OpenAiResponses),
            s,
            Some(upstream),
            "x",
        );
        assert!(
            String::from_utf8(responses.to_vec())
                .unwrap()
                .contains("\"type\":\"error\"")
        );
    }
}
