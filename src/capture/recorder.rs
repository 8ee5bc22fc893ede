//! Builds one exchange's capture record as the response passes: deltas with their arrival
//! offsets (taken from the interpreter's reassembly as it grows), a bounded copy of a
//! non-streaming body, and the final record. No I/O; offsets come in as durations.

use super::record::{
    CaptureLevel, CaptureRecord, Delta, DeltaKind, Doc, Outcome, Reassembled, Timings, TokenUsage,
    ToolCall,
};
use crate::apis::stream::{Reassembly, Summary};
use crate::config::Owner;
use crate::progress::state::Milestones;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// Most deltas kept per record; past it the record is marked truncated.
const MAX_DELTAS: usize = 20_000;

/// What is known when the request arrives.
#[derive(Clone, Debug)]
/// Shared or static where it can be: every waiting stream keeps one (issue 7's state budget).
pub struct Meta {
    pub id: Arc<str>,
    pub attempt: u32,
    /// Who made the request (the client token's fingerprint), when client tokens are set.
    pub owner: Option<Owner>,
    pub started_at_ms: i64,
    pub route: Arc<str>,
    pub api: &'static str,
    pub method: http::Method,
    pub path: String,
    pub tier: &'static str,
    pub level: CaptureLevel,
    /// Largest request or response body kept, in bytes.
    pub max_body: usize,
}

/// What is known when the exchange ends (owned: the record is built on the writer's thread).
#[derive(Debug, Default)]
pub struct End {
    /// The kept request bytes, and whether they are the whole body.
    pub request: Option<(Vec<u8>, bool)>,
    pub client_status: Option<u16>,
    pub upstream_status: Option<u16>,
    pub streamed: bool,
    pub outcome: Option<Outcome>,
    pub partial: bool,
    pub milestones: Option<Milestones>,
    pub longest_silence_ms: Option<f64>,
    pub done_ms: f64,
    pub overhead_ms: Option<f64>,
    pub upstream_ms: Option<f64>,
    pub summary: Option<Summary>,
    pub error: Option<String>,
    pub disconnect: Option<crate::record::Disconnect>,
    /// What the ETA estimator said about this exchange (docs/capture.md, `eta`).
    pub eta: Option<crate::record::EtaRecord>,
}

/// A record not built yet: the recorder and how the exchange ended. Building it (parsing the
/// request's JSON, copying texts) is work for the capture writer's thread, not the request's.
#[derive(Debug)]
pub struct Pending {
    recorder: Recorder,
    end: End,
}

impl Pending {
    pub fn new(recorder: Recorder, end: End) -> Self {
        Pending { recorder, end }
    }

    pub fn id(&self) -> &str {
        &self.recorder.meta.id
    }

    /// The id, shared (no copy).
    pub fn shared_id(&self) -> Arc<str> {
        Arc::clone(&self.recorder.meta.id)
    }

    pub fn owner(&self) -> Option<Owner> {
        self.recorder.meta.owner
    }

    /// A cheap upper estimate of the built record's size, for the writer's byte-bounded queue.
    pub fn size_estimate(&self) -> usize {
        let text = self.end.summary.as_ref().map_or(0, |s| {
            s.output.answer.len() + s.output.reasoning.len() + s.output.labels.len() * 64
        });
        1024 + self.recorder.body.len()
            + self.recorder.deltas.len() * 64
            + self.end.request.as_ref().map_or(0, |(r, _)| r.len() * 2)
            + text * 2
            + self.end.error.as_ref().map_or(0, String::len)
    }

    pub fn build(self) -> CaptureRecord {
        self.recorder.finish(self.end)
    }

    /// The bound its request is cut to once redacted (`capture_max_body`).
    pub fn max_body(&self) -> usize {
        self.recorder.meta.max_body
    }
}

#[derive(Debug)]
pub struct Recorder {
    meta: Meta,
    client_first_byte: Option<Duration>,
    seen_answer: usize,
    seen_reasoning: usize,
    seen_labels: usize,
    deltas: Vec<Delta>,
    body: Vec<u8>,
    /// When a whole (non-streamed) body's last byte arrived.
    whole_body_done: Option<Duration>,
    truncated: bool,
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

impl Recorder {
    pub fn new(meta: Meta) -> Self {
        Recorder {
            meta,
            client_first_byte: None,
            seen_answer: 0,
            seen_reasoning: 0,
            seen_labels: 0,
            deltas: Vec::new(),
            body: Vec::new(),
            whole_body_done: None,
            truncated: false,
        }
    }

    /// The client received body bytes.
    pub fn client_bytes(&mut self, at: Duration) {
        self.client_first_byte.get_or_insert(at);
    }

    /// Keeps a bounded copy of a body the interpreter does not read (a plain JSON answer). At
    /// `metadata` level it is read for its figures (usage, reasoning) and never stored.
    pub fn upstream_body(&mut self, data: &[u8]) {
        if self.meta.level == CaptureLevel::Off {
            return;
        }
        let room = self.meta.max_body.saturating_sub(self.body.len());
        if data.len() > room && self.meta.level == CaptureLevel::Full {
            self.truncated = true;
        }
        self.body.extend_from_slice(&data[..data.len().min(room)]);
    }

    /// The whole body, decoded, replacing what was kept in pieces as it passed (the events tier
    /// collects a whole answer, then hands it over once).
    pub fn set_upstream_body(&mut self, data: &[u8]) {
        self.body.clear();
        self.upstream_body(data);
    }

    /// A whole (non-streamed) body's last byte arrived at `at`: its reasoning, if it has any,
    /// reached the client then.
    pub fn whole_body_done(&mut self, at: Duration) {
        self.whole_body_done.get_or_insert(at);
    }

    /// Records what the reassembly gained since last time, as deltas at `at`: answer and
    /// reasoning as offsets into their growing text (no copy, see [`Delta`]), labels whole.
    pub fn after_feed(&mut self, out: &Reassembly, at: Duration) {
        if self.meta.level != CaptureLevel::Full {
            return;
        }
        let at_ms = ms(at);
        let mut push = |delta: Delta| {
            if self.deltas.len() >= MAX_DELTAS {
                self.truncated = true;
            } else {
                self.deltas.push(delta);
            }
        };
        if out.answer.len() > self.seen_answer {
            self.seen_answer = out.answer.len();
            push(Delta::span(at_ms, DeltaKind::Answer, self.seen_answer));
        }
        if out.reasoning.len() > self.seen_reasoning {
            self.seen_reasoning = out.reasoning.len();
            push(Delta::span(
                at_ms,
                DeltaKind::Reasoning,
                self.seen_reasoning,
            ));
        }
        for label in out.labels.iter().skip(self.seen_labels) {
            if !label.is_empty() {
                push(Delta::text(at_ms, DeltaKind::Label, label.as_str()));
            }
        }
        self.seen_labels = out.labels.len();
    }

    /// The kept whole (non-streamed) answer body, read; with its text too only when it is
    /// stored (`full`, see [`Doc::received`]).
    fn whole_body(&self, full: bool) -> Option<Doc> {
        if full {
            Doc::received(&self.body)
        } else {
            serde_json::from_slice::<Value>(&self.body)
                .ok()
                .map(Doc::Tree)
        }
    }

    /// The finished record.
    pub fn finish(self, end: End) -> CaptureRecord {
        let full = self.meta.level == CaptureLevel::Full;
        // A body cut at the kept bound is read up to its last whole member (`cut::repair`).
        let request_json = end.request.as_ref().and_then(|(bytes, whole)| {
            let text = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
            match serde_json::from_slice::<Value>(text) {
                Ok(v) => Some(v),
                Err(_) if !whole => super::cut::repair(text),
                Err(_) => None,
            }
        });
        let model = request_json
            .as_ref()
            .and_then(|v| v.get("model"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| gemini_model(&self.meta.path));
        let mut truncated = self.truncated;
        let request = if full {
            end.request.as_ref().map(|(bytes, whole)| {
                // Kept whole here: it is cut to `max_body` once redacted (`cut::request`).
                truncated |= !whole || bytes.len() > self.meta.max_body;
                request_json
                    .unwrap_or_else(|| {
                        if looks_like_json(bytes) {
                            // JSON that did not parse (too deep, or invalid): as text, its fields
                            // would escape redaction by name and path. Not stored.
                            truncated = true;
                            Value::Null
                        } else {
                            Value::String(String::from_utf8_lossy(bytes).into_owned())
                        }
                    })
                    .into()
            })
        } else {
            None
        };
        let mut whole_reasoning_ms = None;
        let (reassembly, body) = match end.summary {
            Some(s) if s.counters.events > 0 || !s.output.answer.is_empty() => (s.output, None),
            _ => match self.whole_body(full) {
                Some(doc) => {
                    let read = {
                        let v = doc.tree();
                        if crate::apis::answer::has_reasoning(&v) {
                            whole_reasoning_ms = self.whole_body_done.map(ms);
                        }
                        crate::apis::answer::read(&v)
                    };
                    (read, full.then_some(doc))
                }
                None => (Reassembly::default(), None),
            },
        };
        truncated |= reassembly.truncated;
        let usage = reassembly.usage.map(|u| TokenUsage {
            input: u.input,
            output: u.output,
            reasoning: u.reasoning,
        });
        let upstream_timings = reassembly
            .timings
            .and_then(|t| serde_json::to_value(t).ok())
            .map(Into::into);
        let error = end.error.or(reassembly.error);
        // The reassembly is moved into the record, not copied: this runs once per capture.
        let response = full.then(|| Reassembled {
            text: reassembly.answer,
            reasoning: reassembly.reasoning,
            tool_calls: reassembly
                .tool_calls
                .into_iter()
                .map(|t| ToolCall {
                    // The upstream's own id (empty when it named none: exports then number it),
                    // never the stream's key (an index, or an item id).
                    id: t.id,
                    name: t.name,
                    arguments: t.arguments,
                })
                .collect(),
            finish_reason: reassembly.finish_reason,
            body,
        });
        let m = end.milestones.unwrap_or_default();
        let outcome = end.outcome.unwrap_or(Outcome::Ok);
        CaptureRecord {
            id: self.meta.id.to_string(),
            attempt: self.meta.attempt,
            owner: self.meta.owner,
            started_at_ms: self.meta.started_at_ms,
            route: self.meta.route.to_string(),
            api: self.meta.api.to_owned(),
            model,
            method: self.meta.method.as_str().to_owned(),
            path: self.meta.path,
            client_status: end.client_status,
            upstream_status: end.upstream_status,
            streamed: end.streamed,
            tier: self.meta.tier.to_owned(),
            outcome,
            partial: end.partial,
            capture: self.meta.level,
            timings: Timings {
                upstream_headers_ms: m.upstream_headers_ms,
                upstream_first_byte_ms: m.first_byte_ms,
                client_first_byte_ms: self.client_first_byte.map(ms),
                first_feedback_ms: m.first_feedback_ms,
                first_reasoning_ms: m.first_reasoning_ms.or(whole_reasoning_ms),
                first_token_ms: m.first_token_ms,
                done_ms: Some(end.done_ms),
                longest_silence_ms: end.longest_silence_ms,
                overhead_ms: end.overhead_ms,
                upstream_ms: end.upstream_ms,
            },
            usage,
            upstream_timings,
            eta: end.eta,
            request,
            response,
            deltas: if full { self.deltas } else { Vec::new() },
            error,
            truncated,
            disconnect: end.disconnect,
        }
    }
}

/// A body that opens as a JSON object or array does (after a BOM, if any).
fn looks_like_json(bytes: &[u8]) -> bool {
    let text = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let first = text.iter().find(|b| !b.is_ascii_whitespace());
    matches!(first, Some(b'{' | b'['))
}

fn gemini_model(path: &str) -> Option<String> {
    crate::apis::model_in_path(path).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Meta {
        Meta {
            id: "abcdefghijklmnop".into(),
            attempt: 1,
            owner: None,
            started_at_ms: 0,
            route: "r".into(),
            api: "openai",
            method: http::Method::POST,
            path: "/v1beta/models/gem-x:generateContent".into(),
            tier: "off",
            level: CaptureLevel::Full,
            max_body: 8,
        }
    }

    #[test]
    fn deltas_follow_the_reassembly_as_it_grows() {
        let mut r = Recorder::new(meta());
        let mut out = Reassembly::default();
        out.reasoning.push_str("hm");
        r.after_feed(&out, Duration::from_millis(5));
        out.answer.push_str("Hel");
        r.after_feed(&out, Duration::from_millis(9));
        out.answer.push_str("lo");
        r.after_feed(&out, Duration::from_millis(12));
        let summary = Summary {
            phase: None,
            counters: Default::default(),
            output: out,
        };
        let rec = r.finish(End {
            eta: None,
            done_ms: 20.0,
            summary: Some(summary),
            ..End::default()
        });
        assert!(rec.deltas.iter().all(|d| d.text.is_empty()), "no copies");
        let kinds: Vec<(f64, DeltaKind, &str)> = rec
            .delta_texts()
            .iter()
            .map(|d| (d.at_ms, d.kind, d.text))
            .collect();
        assert_eq!(
            kinds,
            [
                (5.0, DeltaKind::Reasoning, "hm"),
                (9.0, DeltaKind::Answer, "Hel"),
                (12.0, DeltaKind::Answer, "lo")
            ]
        );
        assert_eq!(rec.model.as_deref(), Some("gem-x"));
    }

    #[test]
    fn a_whole_answer_with_reasoning_has_its_first_reasoning_when_it_completed() {
        let bodies = [
            r#"{"choices":[{"message":{"content":"a","reasoning_content":"t"}}]}"#,
            r#"{"object":"response","output":[{"type":"reasoning","summary":[{"type":"summary_text","text":"t"}]}]}"#,
            r#"{"type":"message","content":[{"type":"thinking","thinking":"t"},{"type":"text","text":"a"}]}"#,
            r#"{"candidates":[{"content":{"parts":[{"text":"t","thought":true},{"text":"a"}]}}]}"#,
            r#"{"message":{"role":"assistant","content":"a","thinking":"t"},"done":true}"#,
        ];
        for level in [CaptureLevel::Full, CaptureLevel::Metadata] {
            for body in bodies {
                let mut r = Recorder::new(Meta {
                    level,
                    max_body: 4096,
                    ..meta()
                });
                let (head, tail) = body.split_at(10);
                r.upstream_body(head.as_bytes());
                r.upstream_body(tail.as_bytes());
                r.whole_body_done(Duration::from_millis(70));
                let rec = r.finish(End {
                    done_ms: 71.0,
                    ..End::default()
                });
                assert_eq!(
                    rec.timings.first_reasoning_ms,
                    Some(70.0),
                    "{level:?} {body}"
                );
                assert_eq!(rec.response.is_some(), level == CaptureLevel::Full);
                assert!(!rec.truncated);
            }
        }
        let mut plain = Recorder::new(Meta {
            max_body: 4096,
            ..meta()
        });
        plain.upstream_body(br#"{"choices":[{"message":{"content":"a"}}]}"#);
        plain.whole_body_done(Duration::from_millis(70));
        let rec = plain.finish(End::default());
        assert_eq!(rec.timings.first_reasoning_ms, None);
    }

    #[test]
    fn a_streamed_tool_call_keeps_the_upstreams_id_not_its_index() {
        let mut out = Reassembly::default();
        out.tool_calls.push(crate::apis::stream::ToolCallRecord {
            key: "0".into(),
            id: "call_A".into(),
            name: "f".into(),
            arguments: "{}".into(),
        });
        let mut summary = Summary {
            phase: None,
            counters: Default::default(),
            output: out,
        };
        summary.counters.events = 1;
        let rec = Recorder::new(meta()).finish(End {
            summary: Some(summary),
            ..End::default()
        });
        let calls = &rec.response.unwrap().tool_calls;
        assert_eq!(
            (calls[0].id.as_str(), calls[0].name.as_str()),
            ("call_A", "f")
        );
    }

    #[test]
    fn bodies_are_bounded_and_marked_truncated() {
        let mut r = Recorder::new(meta());
        r.upstream_body(b"0123456789");
        let rec = r.finish(End {
            eta: None,
            done_ms: 1.0,
            ..End::default()
        });
        assert!(rec.truncated);
    }

    #[test]
    fn a_request_body_is_redacted_then_cut_to_the_bound_with_its_shape_kept() {
        // A secret that straddles the bound: were it cut first, its prefix would escape.
        let secret = "sk-abcdefghijklmnopqrstuvwxyz0123456789";
        let json = format!(
            r#"{{"model":"m","messages":[{{"role":"user","content":"{}{secret} and more"}}]}}"#,
            "x".repeat(170)
        );
        let cases: [(&[u8], usize); 3] =
            [(json.as_bytes(), 200), (&[b'y'; 900], 100), (b"{}", 100)];
        for (body, max) in cases {
            let pending = Pending::new(
                Recorder::new(Meta {
                    max_body: max,
                    ..meta()
                }),
                End {
                    request: Some((body.to_vec(), true)),
                    ..End::default()
                },
            );
            let max = pending.max_body();
            let mut rec = pending.build();
            let text = serde_json::to_string(&rec.request)
                .unwrap()
                .replace(secret, "[KEY]");
            rec.request = serde_json::from_str(&text).unwrap();
            super::super::cut::request(&mut rec, max);
            let stored = serde_json::to_string(&rec.request).unwrap();
            assert!(stored.len() <= max, "{max}: {stored}");
            assert!(
                !stored.contains("sk-abc"),
                "a secret's prefix escaped: {stored}"
            );
            assert_eq!(rec.truncated, body.len() > max, "{stored}");
        }
        let pending = Pending::new(
            Recorder::new(Meta {
                max_body: 200,
                ..meta()
            }),
            End {
                request: Some((json.into_bytes(), true)),
                ..End::default()
            },
        );
        // JSON that is not whole (cut at the kept bound) is read up to its last whole member,
        // never stored as text (its fields would escape redaction by name); JSON that does not
        // read at all is not stored; a BOM is no reason to store text.
        let cut_json = br#"{"model":"m","api_key":"PLAINVALUE","messages":[{"content":"xx"#;
        let rec = Recorder::new(meta()).finish(End {
            request: Some((cut_json.to_vec(), false)),
            ..End::default()
        });
        let want = serde_json::json!({"model":"m","api_key":"PLAINVALUE","messages":[{}]});
        assert_eq!(rec.request, Some(want.into()));
        assert_eq!(rec.model.as_deref(), Some("m"));
        assert!(rec.truncated);
        for (body, whole) in [
            (&br#"{"api_key":"PLAINVALUE","x":[}"#[..], true),
            (b"\xEF\xBB\xBF{\"api_key\":\"PLAINVALUE\",", true),
        ] {
            let rec = Recorder::new(meta()).finish(End {
                request: Some((body.to_vec(), whole)),
                ..End::default()
            });
            assert_eq!(rec.request, Some(Value::Null.into()), "{body:?}");
        }
        let rec = Recorder::new(Meta {
            max_body: 4096,
            ..meta()
        })
        .finish(End {
            request: Some((b"\xEF\xBB\xBF{\"a\":1}".to_vec(), true)),
            ..End::default()
        });
        assert_eq!(rec.request, Some(serde_json::json!({"a": 1}).into()));
        let mut rec = pending.build();
        super::super::cut::request(&mut rec, 200);
        let v = rec.request.unwrap();
        let v = v.tree();
        assert_eq!(
            (v["model"].as_str(), v["messages"][0]["role"].as_str()),
            (Some("m"), Some("user"))
        );
        assert_eq!(rec.model.as_deref(), Some("m"), "read from the whole body");
    }
}
