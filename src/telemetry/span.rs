//! One exchange's span: what the finish step hands over (cheap to gather on the request's
//! thread) and the OTLP `Span` built from it on the exporter's thread, with the attributes of
//! the OpenTelemetry GenAI conventions and aloud's own `aloud.*` figures.

use super::content;
use super::context::SpanContext;
use crate::apis::Api;
use crate::apis::stream::{Phase, Reassembly, Summary};
use crate::capture::redact::Redactor;
use crate::record::Outcome;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{Span, Status, span, status};
use serde_json::Value;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A traced exchange, from its request head on: its span's ids and its parent's.
#[derive(Clone, Debug)]
pub struct Traced {
    pub context: SpanContext,
    /// The client's span, when its `traceparent` was continued.
    pub parent: Option<[u8; 8]>,
    /// The client's `tracestate`, kept on the span (it goes upstream unchanged anyway).
    pub tracestate: Option<String>,
    /// The upstream's host and port (`server.address`, `server.port`).
    pub server: (String, u16),
    /// A bounded copy of a non-streamed answer, read for model, id and usage at export.
    pub body: Vec<u8>,
}

/// Largest non-streamed answer kept for its span.
pub const MAX_BODY: usize = 1 << 20;

impl Traced {
    /// Keeps `data` of a whole (non-streamed) answer, up to [`MAX_BODY`].
    pub fn answer_bytes(&mut self, data: &[u8]) {
        let room = MAX_BODY.saturating_sub(self.body.len());
        self.body.extend_from_slice(&data[..data.len().min(room)]);
    }
}

/// What the finish step knows, handed to the exporter.
#[derive(Debug)]
pub struct Finished {
    pub traced: Traced,
    /// Wall-clock time of the request head; `done` is the time to the ending.
    pub start: SystemTime,
    pub done: Duration,
    pub api: Api,
    /// The request path (the route's prefix included), without its query.
    pub path: String,
    pub method: String,
    pub request_id: String,
    pub route: String,
    pub tier: &'static str,
    pub outcome: Outcome,
    pub cause: &'static str,
    pub error: Option<String>,
    pub status: Option<u16>,
    pub upstream_status: Option<u16>,
    pub streamed: bool,
    pub first_feedback_ms: Option<f64>,
    pub first_token_ms: Option<f64>,
    pub longest_silence_ms: f64,
    pub overhead_ms: Option<f64>,
    /// Phase changes with their offsets from the request head.
    pub phases: Vec<(Phase, Duration)>,
    /// The kept request bytes (for the requested model and, with content, the prompt).
    pub request: Option<Vec<u8>>,
    /// What the stream interpreter learnt (streamed answers).
    pub summary: Option<Summary>,
}

impl Finished {
    /// The bytes it holds beyond its fixed size: what the export queue's byte budget counts.
    pub fn weight(&self) -> usize {
        let summary = self.summary.as_ref().map_or(0, |s| {
            let o = &s.output;
            o.answer.len()
                + o.reasoning.len()
                + o.tool_calls
                    .iter()
                    .map(|t| t.arguments.len())
                    .sum::<usize>()
        });
        self.request.as_ref().map_or(0, Vec::len) + self.traced.body.len() + summary
    }
}

/// The GenAI operation an endpoint performs (`gen_ai.operation.name`), by its path.
pub fn operation(path: &str) -> Option<&'static str> {
    let p = path.trim_end_matches('/');
    let last = p.rsplit('/').next().unwrap_or("");
    let verb = last.rsplit_once(':').map(|(_, v)| v);
    match verb {
        Some("generateContent" | "streamGenerateContent") => return Some("generate_content"),
        Some("embedContent" | "batchEmbedContents") => return Some("embeddings"),
        _ => {}
    }
    let chat = ["/chat/completions", "/api/chat", "/responses", "/messages"];
    if chat.iter().any(|c| p.ends_with(c)) {
        Some("chat")
    } else if p.ends_with("/completions") || p.ends_with("/api/generate") {
        Some("text_completion")
    } else if p.ends_with("/embeddings") || p.ends_with("/api/embed") {
        Some("embeddings")
    } else {
        None
    }
}

/// `gen_ai.provider.name`: the registry's values where it has one (`openai`, `anthropic`,
/// `gcp.gemini`); Ollama is not in the registry, so its own name.
pub fn provider(api: Api) -> &'static str {
    match api {
        Api::OpenAi => "openai",
        Api::Anthropic => "anthropic",
        Api::Gemini => "gcp.gemini",
        Api::Ollama => "ollama",
    }
}

/// The model a request asked for: its JSON's `model`, or Gemini's path (`models/{m}:verb`).
pub fn request_model(request: Option<&Value>, path: &str) -> Option<String> {
    request
        .and_then(|v| v.get("model"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| {
            let after = path.split("/models/").nth(1)?;
            let model = after.split(':').next()?;
            (!model.is_empty()).then(|| model.to_owned())
        })
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn s(key: &str, v: impl Into<String>) -> KeyValue {
    kv(key, any_value::Value::StringValue(v.into()))
}

fn int(key: &str, v: i64) -> KeyValue {
    kv(key, any_value::Value::IntValue(v))
}

fn float(key: &str, v: f64) -> KeyValue {
    kv(key, any_value::Value::DoubleValue(v))
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Builds the span. `content` is the redactor when `capture_content` is on.
pub fn build(f: Finished, content: Option<&Redactor>) -> Span {
    let request_json: Option<Value> = f
        .request
        .as_deref()
        .and_then(|b| serde_json::from_slice(b).ok());
    let output: Reassembly = match f.summary {
        Some(s) if s.counters.events > 0 || !s.output.answer.is_empty() => s.output,
        _ => serde_json::from_slice::<Value>(&f.traced.body)
            .map(|v| crate::apis::answer::read(&v))
            .unwrap_or_default(),
    };
    let op = operation(&f.path);
    let model = request_model(request_json.as_ref(), &f.path);
    let name = match (op, &model) {
        (Some(op), Some(m)) => format!("{op} {m}"),
        (Some(op), None) => op.to_owned(),
        (None, _) => f.method.clone(),
    };
    let mut a = Vec::with_capacity(24);
    if let Some(op) = op {
        a.push(s("gen_ai.operation.name", op));
    }
    a.push(s("gen_ai.provider.name", provider(f.api)));
    if let Some(m) = &model {
        a.push(s("gen_ai.request.model", m.as_str()));
    }
    if let Some(m) = &output.response_model {
        a.push(s("gen_ai.response.model", m.as_str()));
    }
    if let Some(id) = &output.response_id {
        a.push(s("gen_ai.response.id", id.as_str()));
    }
    if let Some(r) = &output.finish_reason {
        let values = vec![AnyValue {
            value: Some(any_value::Value::StringValue(r.clone())),
        }];
        a.push(kv(
            "gen_ai.response.finish_reasons",
            any_value::Value::ArrayValue(ArrayValue { values }),
        ));
    }
    if let Some(u) = output.usage {
        if let Some(n) = u.input {
            a.push(int("gen_ai.usage.input_tokens", n as i64));
        }
        if let Some(n) = u.output {
            a.push(int("gen_ai.usage.output_tokens", n as i64));
        }
    }
    let (host, port) = &f.traced.server;
    a.push(s("server.address", host.as_str()));
    a.push(int("server.port", i64::from(*port)));
    let failed = f.outcome != Outcome::Ok;
    if failed {
        let error_type = match f.upstream_status.filter(|s| *s >= 400) {
            Some(code) => code.to_string(),
            None => f.cause.to_owned(),
        };
        a.push(s("error.type", error_type));
    }
    if let Some(code) = f.upstream_status {
        a.push(int("http.response.status_code", i64::from(code)));
    }
    a.push(s("aloud.request_id", f.request_id));
    a.push(s("aloud.route", f.route));
    a.push(s("aloud.tier", f.tier));
    a.push(s("aloud.outcome", f.outcome.as_str()));
    a.push(s("aloud.end", f.cause));
    a.push(kv(
        "aloud.streamed",
        any_value::Value::BoolValue(f.streamed),
    ));
    if let Some(ms) = f.first_feedback_ms {
        a.push(float("aloud.first_feedback_ms", ms));
    }
    if let Some(ms) = f.first_token_ms {
        a.push(float("aloud.first_token_ms", ms));
    }
    a.push(float("aloud.longest_silence_ms", f.longest_silence_ms));
    if let Some(ms) = f.overhead_ms {
        a.push(float("aloud.overhead_ms", ms));
    }
    let mut events: Vec<span::Event> = f
        .phases
        .iter()
        .map(|(phase, at)| span::Event {
            time_unix_nano: nanos(f.start + *at),
            name: format!("aloud.phase.{}", phase.as_str()),
            attributes: vec![s("aloud.phase", phase.as_str())],
            ..Default::default()
        })
        .collect();
    let end = f.start + f.done;
    if let Some(r) = content {
        let mut attributes = Vec::new();
        if let Some(input) = request_json.and_then(|v| content::input_messages(v, r)) {
            attributes.push(s("gen_ai.input.messages", input));
        }
        if !output.answer.is_empty() {
            let out = content::output_messages(&output.answer, output.finish_reason.as_deref(), r);
            attributes.push(s("gen_ai.output.messages", out));
        }
        if !attributes.is_empty() {
            events.push(span::Event {
                time_unix_nano: nanos(end),
                name: "gen_ai.client.inference.operation.details".to_owned(),
                attributes,
                ..Default::default()
            });
        }
    }
    let status = if failed {
        let message = f.error.unwrap_or_else(|| f.cause.to_owned());
        Status {
            code: status::StatusCode::Error as i32,
            message: message.chars().take(512).collect(),
        }
    } else {
        Status::default()
    };
    Span {
        trace_id: f.traced.context.trace_id.to_vec(),
        span_id: f.traced.context.span_id.to_vec(),
        trace_state: f.traced.tracestate.unwrap_or_default(),
        parent_span_id: f.traced.parent.map(|p| p.to_vec()).unwrap_or_default(),
        // W3C flags (sampled), and "has parent, parent is remote" (bits 8 and 9) when continued.
        flags: 1 | if f.traced.parent.is_some() {
            0x300
        } else {
            0x100
        },
        name,
        kind: span::SpanKind::Client as i32,
        start_time_unix_nano: nanos(f.start),
        end_time_unix_nano: nanos(end),
        attributes: a,
        events,
        status: Some(status),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apis::stream::Usage;

    #[test]
    fn operations_follow_the_endpoint() {
        for (path, op) in [
            ("/openai/v1/chat/completions", Some("chat")),
            ("/v1/responses", Some("chat")),
            ("/anthropic/v1/messages", Some("chat")),
            (
                "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
                Some("generate_content"),
            ),
            ("/v1beta/models/g:generateContent", Some("generate_content")),
            ("/v1beta/models/g:embedContent", Some("embeddings")),
            ("/api/chat", Some("chat")),
            ("/api/generate", Some("text_completion")),
            ("/v1/completions", Some("text_completion")),
            ("/v1/embeddings", Some("embeddings")),
            ("/api/embed", Some("embeddings")),
            ("/v1/models", None),
        ] {
            assert_eq!(operation(path), op, "{path}");
        }
    }

    fn finished(outcome: Outcome, upstream_status: Option<u16>) -> Finished {
        Finished {
            traced: Traced {
                context: SpanContext {
                    trace_id: [1; 16],
                    span_id: [2; 8],
                    sampled: true,
                },
                parent: Some([3; 8]),
                tracestate: Some("k=v".into()),
                server: ("api.example".into(), 443),
                body: br#"{"id":"chatcmpl-1","model":"gpt-x-2025","choices":[{"message":{"content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":5}}"#.to_vec(),
            },
            start: UNIX_EPOCH + Duration::from_secs(1),
            done: Duration::from_millis(1500),
            api: Api::OpenAi,
            path: "/openai/v1/chat/completions".into(),
            method: "POST".into(),
            request_id: "rid".into(),
            route: "openai".into(),
            tier: "comments",
            outcome,
            cause: if outcome == Outcome::Ok { "complete" } else { "upstream_error" },
            error: None,
            status: upstream_status,
            upstream_status,
            streamed: false,
            first_feedback_ms: Some(10.0),
            first_token_ms: Some(20.0),
            longest_silence_ms: 30.0,
            overhead_ms: Some(0.25),
            phases: vec![(Phase::Waiting, Duration::from_millis(5))],
            request: Some(br#"{"model":"gpt-x","messages":[]}"#.to_vec()),
            summary: None,
        }
    }

    fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a any_value::Value> {
        span.attributes
            .iter()
            .find(|a| a.key == key)
            .and_then(|a| a.value.as_ref()?.value.as_ref())
    }

    #[test]
    fn a_whole_answer_gives_the_genai_attributes() {
        let span = build(finished(Outcome::Ok, Some(200)), None);
        assert_eq!(span.name, "chat gpt-x");
        assert_eq!(span.kind, span::SpanKind::Client as i32);
        assert_eq!(span.parent_span_id, vec![3; 8]);
        assert_eq!(
            span.end_time_unix_nano - span.start_time_unix_nano,
            1_500_000_000
        );
        let str_of = |k| match attr(&span, k) {
            Some(any_value::Value::StringValue(v)) => v.clone(),
            other => panic!("{k}: {other:?}"),
        };
        assert_eq!(str_of("gen_ai.response.model"), "gpt-x-2025");
        assert_eq!(str_of("gen_ai.response.id"), "chatcmpl-1");
        assert_eq!(str_of("gen_ai.provider.name"), "openai");
        assert_eq!(
            attr(&span, "gen_ai.usage.output_tokens"),
            Some(&any_value::Value::IntValue(5))
        );
        assert_eq!(attr(&span, "error.type"), None);
        assert_eq!(span.status.unwrap().code, 0);
        assert_eq!(span.events[0].name, "aloud.phase.waiting");
        assert_eq!(span.events[0].time_unix_nano, 1_005_000_000);
    }

    #[test]
    fn a_failure_has_an_error_type_and_status() {
        let mut f = finished(Outcome::UpstreamError, Some(500));
        f.traced.body = b"{\"error\":{\"message\":\"boom\"}}".to_vec();
        let span = build(f, None);
        assert_eq!(
            attr(&span, "error.type"),
            Some(&any_value::Value::StringValue("500".into()))
        );
        assert_eq!(span.status.unwrap().code, status::StatusCode::Error as i32);
        let mut g = finished(Outcome::Timeout, None);
        g.summary = Some(Summary {
            output: Reassembly {
                usage: Some(Usage {
                    input: Some(1),
                    output: None,
                    reasoning: None,
                }),
                ..Reassembly::default()
            },
            ..Summary::default()
        });
        g.cause = "idle_timeout";
        let span = build(g, None);
        assert_eq!(
            attr(&span, "error.type"),
            Some(&any_value::Value::StringValue("idle_timeout".into()))
        );
    }
}
