//! The capture record, plain data on its own floor (the store below capture keeps it). One
//! capture record per exchange: identity, outcome, timings as the user felt them next to the
//! upstream's, usage, the (redacted) request and reassembled response, and replayable deltas.
//!
//! Plain data with serde; no I/O. Field names are the terms of docs/capture.md.

use crate::config::Owner;
use serde::{Deserialize, Serialize};

mod doc;
pub mod json;

pub use doc::Doc;

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
    /// The client got the first thing it could paint: an aloud event or comment, reasoning
    /// text, answer content or a tool call (docs/capture.md, "Timings").
    pub first_feedback_ms: Option<f64>,
    /// The first reasoning passed (a delta; for a whole answer, its last byte).
    pub first_reasoning_ms: Option<f64>,
    /// The first answer content (text or a tool call) was forwarded; for a whole answer, its
    /// first byte.
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
    pub body: Option<Doc>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeltaKind {
    Answer,
    Reasoning,
    Tool,
    Label,
}

/// One delta with its arrival offset, for replay at the original pace.
///
/// Answer and reasoning deltas carry no text of their own, since a secret split across chunks
/// would survive in the pieces: `end` is the byte offset in the record's `response.text`
/// (answer) or `response.reasoning` (reasoning) where the delta ends, and it starts where the
/// previous delta of its kind ended (0 for the first). Redaction rewrites these offsets with the
/// text, so they always index the stored (redacted) text; [`CaptureRecord::delta_texts`] slices
/// it. Labels (and tool deltas) are whole strings and keep them in `text`, redacted as one.
/// Records stored before offsets existed have `text` in every delta and no `end`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    pub at_ms: f64,
    pub kind: DeltaKind,
    /// Answer and reasoning: where this delta ends in its kind's text, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<usize>,
    /// Labels and tool deltas (and every delta of an older record): the text itself.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub text: String,
}

impl Delta {
    /// An answer or reasoning delta ending at byte `end` of its kind's text.
    pub fn span(at_ms: f64, kind: DeltaKind, end: usize) -> Delta {
        Delta {
            at_ms,
            kind,
            end: Some(end),
            text: String::new(),
        }
    }

    /// A delta that keeps its text (labels and tool deltas).
    pub fn text(at_ms: f64, kind: DeltaKind, text: impl Into<String>) -> Delta {
        Delta {
            at_ms,
            kind,
            end: None,
            text: text.into(),
        }
    }

    /// The deltas for pieces that arrived in this order: answer and reasoning pieces become
    /// spans (their texts joined per kind are the record's texts), the rest keep their text.
    pub fn from_pieces(pieces: &[(f64, DeltaKind, &str)]) -> Vec<Delta> {
        let (mut answer, mut reasoning) = (0, 0);
        pieces
            .iter()
            .map(|&(at_ms, kind, text)| match kind {
                DeltaKind::Answer => {
                    answer += text.len();
                    Delta::span(at_ms, kind, answer)
                }
                DeltaKind::Reasoning => {
                    reasoning += text.len();
                    Delta::span(at_ms, kind, reasoning)
                }
                DeltaKind::Label | DeltaKind::Tool => Delta::text(at_ms, kind, text),
            })
            .collect()
    }

    /// Whether this delta is a span of its kind's text (not a text of its own).
    pub fn is_span(&self) -> bool {
        self.end.is_some() && matches!(self.kind, DeltaKind::Answer | DeltaKind::Reasoning)
    }
}

/// A delta with its text, as [`CaptureRecord::delta_texts`] rebuilds it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DeltaText<'a> {
    pub at_ms: f64,
    pub kind: DeltaKind,
    pub text: &'a str,
}

/// The ETA estimator on one exchange: enough for the dashboard to chart its error over time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EtaRecord {
    /// Past exchanges behind the estimate (`eta_basis`).
    pub basis: u32,
    /// When the first estimate to the end went to someone (ms from the request head); `None`
    /// when nobody watched the exchange's progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_ms: Option<f64>,
    /// That first estimate: the remaining time it gave, in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_ms: Option<f64>,
    /// The absolute percentage error (0.2 is 20%) of the remaining time the estimator gives at
    /// 25% of this exchange's duration, from the history before it (ok exchanges only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_at_25: Option<f64>,
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
    /// The response was cut short (disconnect, error, timeout, shutdown), or failed after the
    /// client was told 2xx.
    pub partial: bool,
    pub capture: CaptureLevel,
    pub timings: Timings,
    pub usage: Option<TokenUsage>,
    /// The upstream's own timings when it reports them (Ollama durations, nanoseconds).
    pub upstream_timings: Option<Doc>,
    /// What the ETA estimator said about this exchange, when it had the history to say
    /// anything (docs/capture.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta: Option<EtaRecord>,
    /// The request body: JSON when it parsed, else a string; redacted; `None` at metadata level.
    pub request: Option<Doc>,
    pub response: Option<Reassembled>,
    pub deltas: Vec<Delta>,
    /// A short description of what went wrong, when something did.
    pub error: Option<String>,
    /// Bodies were cut to the route's maximum stored size.
    pub truncated: bool,
    /// On a route with `on_disconnect = "finish"`: the client left, or a resume came, before
    /// the upstream's answer ended (docs/capture.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disconnect: Option<Disconnect>,
}

/// A client that left mid-answer while the upstream finished, and the resumes that followed.
/// Milliseconds from the request head.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Disconnect {
    /// When the client went away (`None`: it stayed, yet someone resumed).
    pub client_left_ms: Option<f64>,
    /// When the upstream's answer ended (read to its end, failed or cut).
    pub upstream_done_ms: Option<f64>,
    /// Resumes (`/stream`, `/result` or the SDK path) that started before the record was written.
    pub resumes: Vec<Resume>,
}

/// One resume: when it started and after which event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Resume {
    pub at_ms: f64,
    pub after: u64,
}

#[cfg(test)]
impl CaptureRecord {
    /// A minimal record for tests: attempt 1 of `id`, an ok non-streamed chat at time 0,
    /// metadata only; tests change what they look at with struct update syntax.
    pub(crate) fn minimal(id: &str) -> CaptureRecord {
        CaptureRecord {
            id: id.into(),
            attempt: 1,
            owner: None,
            started_at_ms: 0,
            route: "r".into(),
            api: "openai".into(),
            model: None,
            method: "POST".into(),
            path: "/v1/chat/completions".into(),
            client_status: Some(200),
            upstream_status: Some(200),
            streamed: false,
            tier: "off".into(),
            outcome: Outcome::Ok,
            partial: false,
            capture: CaptureLevel::Metadata,
            timings: Timings::default(),
            usage: None,
            upstream_timings: None,
            eta: None,
            request: None,
            response: None,
            deltas: Vec::new(),
            error: None,
            truncated: false,
            disconnect: None,
        }
    }
}

impl CaptureRecord {
    /// Every delta with its text, in stored order: spans sliced out of the response text of
    /// their kind, the others as they are. Offsets past the text or inside a character are
    /// clamped to the character before; deltas left empty are skipped.
    pub fn delta_texts(&self) -> Vec<DeltaText<'_>> {
        let (answer, reasoning) = self
            .response
            .as_ref()
            .map_or(("", ""), |r| (r.text.as_str(), r.reasoning.as_str()));
        let (mut answer_at, mut reasoning_at) = (0, 0);
        let mut out = Vec::with_capacity(self.deltas.len());
        for d in &self.deltas {
            let text = match (d.kind, d.end) {
                (DeltaKind::Answer, Some(end)) => slice(answer, &mut answer_at, end),
                (DeltaKind::Reasoning, Some(end)) => slice(reasoning, &mut reasoning_at, end),
                _ => d.text.as_str(),
            };
            if !text.is_empty() {
                out.push(DeltaText {
                    at_ms: d.at_ms,
                    kind: d.kind,
                    text,
                });
            }
        }
        out
    }
}

/// `text[*from..end]`, with `end` clamped to a character boundary; moves `from` to the end.
fn slice<'a>(text: &'a str, from: &mut usize, end: usize) -> &'a str {
    let mut end = end.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let start = (*from).min(end);
    *from = end.max(*from);
    text.get(start..end).unwrap_or_default()
}
