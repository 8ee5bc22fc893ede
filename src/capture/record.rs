//! One capture record per exchange: identity, outcome, timings as the user felt them next to the
//! upstream's, usage, the (redacted) request and reassembled response, and replayable deltas.
//!
//! Plain data with serde; no I/O. Field names are the terms of docs/capture.md.

use crate::config::Owner;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How an exchange ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The upstream answered 2xx and the response was delivered whole.
    Ok,
    /// The upstream answered with an error status, or an error inside its stream.
    UpstreamError,
    /// aloud refused or failed the request itself (limits, bad input, unreachable upstream).
    ProxyError,
    /// A connect, headers, idle or total timeout ended the exchange.
    Timeout,
    /// The client went away before the response ended.
    ClientDisconnected,
    /// aloud was shutting down and cut the exchange.
    Shutdown,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::UpstreamError => "upstream_error",
            Outcome::ProxyError => "proxy_error",
            Outcome::Timeout => "timeout",
            Outcome::ClientDisconnected => "client_disconnected",
            Outcome::Shutdown => "shutdown",
        }
    }

    pub fn parse(text: &str) -> Option<Outcome> {
        [
            Outcome::Ok,
            Outcome::UpstreamError,
            Outcome::ProxyError,
            Outcome::Timeout,
            Outcome::ClientDisconnected,
            Outcome::Shutdown,
        ]
        .into_iter()
        .find(|o| o.as_str() == text)
    }
}

/// Milliseconds from the moment the request head was parsed (`None`: it never happened).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// The upstream's response head arrived.
    pub upstream_headers_ms: Option<f64>,
    /// The upstream's first body byte arrived.
    pub upstream_first_byte_ms: Option<f64>,
    /// The client got its first body byte (progress, comment or content).
    pub client_first_byte_ms: Option<f64>,
    /// The client got the first thing it could show: a progress event (events tier or side
    /// channel) or answer content. Comments are keepalive, not feedback.
    pub first_feedback_ms: Option<f64>,
    /// The first reasoning delta passed.
    pub first_reasoning_ms: Option<f64>,
    /// The first answer-content delta was forwarded to the client.
    pub first_token_ms: Option<f64>,
    /// The exchange ended.
    pub done_ms: Option<f64>,
    /// The longest gap between two pieces of feedback, from the request to the end.
    pub longest_silence_ms: Option<f64>,
    /// Time aloud itself spent: request head to upstream request written, plus upstream
    /// response head to client response head.
    pub overhead_ms: Option<f64>,
    /// Upstream time: request written to upstream response head (the rest is in the fields above).
    pub upstream_ms: Option<f64>,
}

/// Token counts from the upstream's own usage fields; `None` when it reported none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    pub input: Option<u64>,
    pub output: Option<u64>,
    pub reasoning: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// The response, reassembled from the api's deltas (streams) or read from its body.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Reassembled {
    pub text: String,
    pub reasoning: String,
    pub tool_calls: Vec<ToolCall>,
    pub finish_reason: Option<String>,
    /// The upstream's JSON body for non-streaming answers (redacted), for exports that need it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeltaKind {
    Answer,
    Reasoning,
    Tool,
    Label,
}

/// One delta with its arrival offset, for replay at the original pace (redacted text only;
/// raw bytes are never kept, since a secret can be split across chunks).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    pub at_ms: f64,
    pub kind: DeltaKind,
    pub text: String,
}

/// How much of an exchange a route captures (defined with the config, which names it).
pub use crate::config::CaptureLevel;

/// One exchange.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CaptureRecord {
    /// The `Aloud-Request-Id`.
    pub id: String,
    /// 1 for the first request with this id; a retry with the same id is attempt 2, and so on.
    pub attempt: u32,
    /// Who made it: the fingerprint of the client token it came with (never the token), when
    /// client tokens are set. Beacons for the id must come with the same token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
    /// Unix time in milliseconds when the request head was parsed.
    pub started_at_ms: i64,
    pub route: String,
    pub api: String,
    pub model: Option<String>,
    pub method: String,
    /// Path below the route prefix, without the query string.
    pub path: String,
    /// The status the client saw (200 for a committed stream).
    pub client_status: Option<u16>,
    /// The status the upstream sent (`None`: no response head).
    pub upstream_status: Option<u16>,
    /// The response was an event stream or NDJSON (by its content type).
    pub streamed: bool,
    /// The progress tier: off, comments or events.
    pub tier: String,
    pub outcome: Outcome,
    /// The response was cut short (disconnect, error, timeout, shutdown).
    pub partial: bool,
    pub capture: CaptureLevel,
    pub timings: Timings,
    pub usage: Option<TokenUsage>,
    /// The upstream's own timings when it reports them (Ollama durations, nanoseconds).
    pub upstream_timings: Option<Value>,
    /// The request body: JSON when it parsed, else a string; redacted; `None` at metadata level.
    pub request: Option<Value>,
    pub response: Option<Reassembled>,
    pub deltas: Vec<Delta>,
    /// A short description of what went wrong, when something did.
    pub error: Option<String>,
    /// Bodies were cut to the route's maximum stored size.
    pub truncated: bool,
}
