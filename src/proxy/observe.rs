//! The body observer: feeds upstream bytes to the stream interpreter, and what it learns to the
//! progress state and the capture recorder. No I/O and no clock: time comes in as an offset.

use crate::apis::Api;
use crate::apis::stream::{Dialect, Limits, Signal, StreamInterpreter, Summary};
use crate::capture::recorder::Recorder;
use crate::progress::state::Progress;
use std::time::Duration;

/// What one chunk taught the observer.
#[derive(Debug, Default)]
pub struct Seen {
    pub signals: Vec<Signal>,
    /// A line injected now would sit between complete upstream events.
    pub boundary: bool,
}

/// Watches one upstream body.
pub struct Observer {
    interp: Box<StreamInterpreter>,
    /// The upstream answered 2xx.
    ok: bool,
}

impl Observer {
    pub fn new(
        api: Api,
        path_and_query: &str,
        content_type: &str,
        encoding: Option<&str>,
        ok: bool,
    ) -> Self {
        let dialect = Dialect::detect(api, path_and_query, content_type);
        Observer {
            interp: Box::new(
                StreamInterpreter::with_dialect(dialect, Limits::default())
                    .with_end_for(path_and_query)
                    .with_content_encoding(encoding),
            ),
            ok,
        }
    }

    pub fn dialect(&self) -> Option<Dialect> {
        self.interp.dialect()
    }

    /// The body claimed a content encoding it does not have.
    pub fn corrupt(&self) -> bool {
        self.interp.decode_failed()
    }

    /// The body ended cleanly but the stream lacked its end (see `StreamInterpreter::unterminated`).
    pub fn unterminated(&self) -> bool {
        self.interp.unterminated()
    }

    pub fn summary(&self) -> &Summary {
        self.interp.summary()
    }

    /// Takes the summary for the capture record, once the body is over.
    pub fn take_summary(&mut self) -> Summary {
        self.interp.take_summary()
    }

    /// One upstream chunk at `at`.
    pub fn chunk(
        &mut self,
        data: &[u8],
        at: Duration,
        progress: &mut Progress,
        recorder: Option<&mut Recorder>,
    ) -> Seen {
        progress.upstream_bytes(at);
        let step = self.interp.feed(data);
        let whole_answer = self.interp.dialect().is_none();
        if let Some(r) = recorder {
            if whole_answer {
                r.upstream_body(data);
            } else {
                r.after_feed(&self.interp.summary().output, at);
            }
        }
        if whole_answer && self.ok {
            // A non-streaming answer: its first bytes carry the first token.
            progress.whole_answer(at);
        }
        note_answer(&step.signals, at, progress);
        Seen {
            signals: step.signals,
            boundary: self.interp.at_boundary(),
        }
    }

    /// The body ended at `at`: the last signals, and the error the stream itself carried.
    pub fn finish(
        &mut self,
        at: Duration,
        complete: bool,
        progress: &mut Progress,
        recorder: Option<&mut Recorder>,
    ) -> (Vec<Signal>, Option<String>) {
        let signals = self.interp.finish_as(complete);
        if let Some(r) = recorder {
            r.after_feed(&self.interp.summary().output, at);
        }
        note_answer(&signals, at, progress);
        (signals, self.interp.summary().output.error.clone())
    }
}

/// What the client can paint is feedback in every tier: reasoning text (or a reasoning
/// summary), answer content, a tool call. An opaque reasoning marker (`chars: 0`) shows nothing.
fn note_answer(signals: &[Signal], at: Duration, progress: &mut Progress) {
    let paintable = |s: &Signal| match s {
        Signal::ReasoningDelta { chars } => *chars > 0,
        Signal::AnswerDelta { .. } | Signal::ToolCall { .. } => true,
        _ => false,
    };
    if signals.iter().any(paintable) {
        progress.feedback(at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Ladder;
    use std::sync::Arc;

    fn progress() -> Progress {
        Progress::new(Arc::from("abcdefghijklmnop"), Arc::new(Ladder::default()))
    }

    #[test]
    fn boundaries_follow_complete_events_however_bytes_are_cut() {
        let mut obs = Observer::new(
            Api::OpenAi,
            "/v1/chat/completions",
            "text/event-stream",
            None,
            true,
        );
        let mut p = progress();
        let at = Duration::from_millis(5);
        let seen = obs.chunk(b"data: {\"choices\":[{\"delta\":{\"con", at, &mut p, None);
        assert!(!seen.boundary);
        let seen = obs.chunk(b"tent\":\"Hi\"}}]}\n\n", at, &mut p, None);
        assert!(seen.boundary);
        assert_eq!(p.milestones().first_feedback_ms, Some(5.0));
        assert_eq!(obs.summary().output.answer, "Hi");
    }

    /// Feeds `chunks` (bytes, arrival ms) as the exchange body does: the observer, then the
    /// signals into the progress state.
    fn milestones(
        api: Api,
        path: &str,
        content_type: &str,
        chunks: &[(&str, u64)],
    ) -> crate::progress::state::Milestones {
        let mut obs = Observer::new(api, path, content_type, None, true);
        let mut p = progress();
        for (bytes, ms) in chunks {
            let at = Duration::from_millis(*ms);
            let seen = obs.chunk(bytes.as_bytes(), at, &mut p, None);
            for s in &seen.signals {
                p.apply(s, at);
            }
        }
        p.milestones()
    }

    /// One api's stream: (api, path, content type, a reasoning chunk, an answer chunk, a chunk
    /// whose first content is a tool call).
    type Case = (
        Api,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
    );

    const SSE: &str = "text/event-stream";
    const CASES: [Case; 5] = [
        (
            Api::OpenAi,
            "/v1/chat/completions",
            SSE,
            "data: {\"choices\":[{\"delta\":{\"reasoning_content\":\"Hmm\"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c1\",\"function\":{\"name\":\"f\",\"arguments\":\"\"}}]}}]}\n\n",
        ),
        (
            Api::OpenAi,
            "/v1/responses",
            SSE,
            "event: response.reasoning_summary_text.delta\ndata: {\"type\":\"response.reasoning_summary_text.delta\",\"item_id\":\"rs\",\"delta\":\"Hmm\"}\n\n",
            "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}\n\n",
            "event: response.output_item.added\ndata: {\"type\":\"response.output_item.added\",\"output_index\":0,\"item\":{\"type\":\"function_call\",\"id\":\"fc\",\"call_id\":\"c1\",\"name\":\"f\",\"arguments\":\"\"}}\n\n",
        ),
        (
            Api::Anthropic,
            "/v1/messages",
            SSE,
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"Hmm\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t1\",\"name\":\"f\",\"input\":{}}}\n\n",
        ),
        (
            Api::Gemini,
            "/v1beta/models/g:streamGenerateContent?alt=sse",
            SSE,
            "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hmm\",\"thought\":true}]}}]}\n\n",
            "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hi\"}]}}]}\n\n",
            "data: {\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{\"name\":\"f\",\"args\":{}}}]}}]}\n\n",
        ),
        (
            Api::Ollama,
            "/api/chat",
            "application/x-ndjson",
            "{\"message\":{\"role\":\"assistant\",\"content\":\"\",\"thinking\":\"Hmm\"},\"done\":false}\n",
            "{\"message\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"done\":false}\n",
            "{\"message\":{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":{}}}]},\"done\":false}\n",
        ),
    ];

    #[test]
    fn reasoning_text_is_feedback_in_every_dialect() {
        for (api, path, ct, reasoning, answer, _) in CASES {
            let m = milestones(api, path, ct, &[(reasoning, 10), (answer, 30)]);
            assert_eq!(m.first_reasoning_ms, Some(10.0), "{path}");
            assert_eq!(m.first_feedback_ms, Some(10.0), "{path}");
            assert_eq!(m.first_token_ms, Some(30.0), "{path}");
        }
    }

    #[test]
    fn a_tool_call_first_is_the_first_token_and_feedback_in_every_dialect() {
        for (api, path, ct, _, answer, tool) in CASES {
            let m = milestones(api, path, ct, &[(tool, 20), (answer, 50)]);
            assert_eq!(m.first_token_ms, Some(20.0), "{path}");
            assert_eq!(m.first_feedback_ms, Some(20.0), "{path}");
        }
    }

    #[test]
    fn an_opaque_reasoning_marker_is_not_feedback() {
        let start = "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"redacted_thinking\",\"data\":\"x\"}}\n\n";
        let m = milestones(Api::Anthropic, "/v1/messages", SSE, &[(start, 5)]);
        assert_eq!(m.first_feedback_ms, None);
    }

    #[test]
    fn a_whole_answer_is_first_token_only_when_the_upstream_said_yes() {
        let mut failed = Observer::new(Api::OpenAi, "/v1/models", "application/json", None, false);
        let mut p = progress();
        failed.chunk(b"{}", Duration::from_millis(3), &mut p, None);
        assert_eq!(p.milestones().first_token_ms, None);
        let mut ok = Observer::new(Api::OpenAi, "/v1/models", "application/json", None, true);
        ok.chunk(b"{}", Duration::from_millis(4), &mut p, None);
        assert_eq!(p.milestones().first_token_ms, Some(4.0));
    }
}
