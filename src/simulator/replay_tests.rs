//! Pure tests of replay: a hand-built capture record through every api's plan, offsets checked.

use super::errors::Family;
use super::knobs::Knobs;
use super::plan::{Frame, Plan};
use super::script::Script;
use super::{chat, gemini, messages, ollama, replay, responses};
use crate::capture::{
    CaptureLevel, CaptureRecord, Delta, DeltaKind, Outcome, Reassembled, Timings, TokenUsage,
};
use serde_json::{Value, json};

const HEADERS_MS: f64 = 200.0;

/// One recorded piece; `Delta::from_pieces` turns them into the stored form.
fn delta(at_ms: f64, kind: DeltaKind, text: &str) -> (f64, DeltaKind, &str) {
    (at_ms, kind, text)
}

/// A Responses capture: two summary parts with bold headings, then three answer deltas.
fn record() -> CaptureRecord {
    use DeltaKind::{Answer, Label, Reasoning};
    CaptureRecord {
        id: "req-1".to_owned(),
        attempt: 1,
        owner: None,
        started_at_ms: 1_767_225_600_000,
        route: "openai".to_owned(),
        api: "openai".to_owned(),
        model: Some("o-recorded".to_owned()),
        method: "POST".to_owned(),
        path: "/v1/responses".to_owned(),
        client_status: Some(200),
        upstream_status: Some(200),
        streamed: true,
        tier: "events".to_owned(),
        outcome: Outcome::Ok,
        partial: false,
        capture: CaptureLevel::Full,
        timings: Timings {
            upstream_headers_ms: Some(HEADERS_MS),
            first_reasoning_ms: Some(300.0),
            first_token_ms: Some(1_200.0),
            done_ms: Some(1_500.0),
            ..Timings::default()
        },
        usage: Some(TokenUsage {
            input: Some(7),
            output: Some(50),
            reasoning: Some(20),
        }),
        upstream_timings: None,
        eta: None,
        request: Some(json!({"model": "o-recorded", "input": "hi", "stream": true}).into()),
        response: Some(Reassembled {
            text: "Hello world.".to_owned(),
            reasoning: "**Planning**\n\nThink more.\n\n**Checking**\n\nFine.".to_owned(),
            tool_calls: Vec::new(),
            finish_reason: Some("completed".to_owned()),
            body: None,
        }),
        deltas: Delta::from_pieces(&[
            delta(300.0, Reasoning, "**Planning**\n\n"),
            delta(300.0, Label, "Planning"),
            delta(400.0, Reasoning, "Think"),
            delta(500.4, Reasoning, " more."),
            delta(600.0, Reasoning, "\n\n**Checking**\n\n"),
            delta(600.0, Label, "Checking"),
            delta(700.0, Reasoning, "Fine."),
            delta(1_200.0, Answer, "Hello"),
            delta(1_250.0, Answer, " world"),
            delta(1_400.0, Answer, "."),
        ]),
        error: None,
        truncated: false,
        disconnect: None,
    }
}

fn script(record: &CaptureRecord, knobs: Knobs) -> Script {
    Script::from_record(record, Some("ignored"), 100, knobs)
}

/// (offset, parsed data) of every SSE event of a plan.
fn events(plan: &Plan) -> Vec<(u64, Value)> {
    plan.frames
        .iter()
        .filter_map(|f| match f {
            Frame::Data { at_ms, bytes } => Some((*at_ms, bytes)),
            Frame::Abort { .. } => None,
        })
        .flat_map(|(at, bytes)| {
            let text = String::from_utf8(bytes.to_vec()).unwrap();
            text.lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .filter(|d| *d != "[DONE]")
                .map(|d| (at, serde_json::from_str(d).unwrap()))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn of_type<'a>(events: &'a [(u64, Value)], kind: &str) -> Vec<&'a (u64, Value)> {
    events.iter().filter(|(_, v)| v["type"] == kind).collect()
}

fn responses_plan(s: &Script, stream: bool) -> Plan {
    let req = json!({"stream": stream, "reasoning": {"summary": "auto"}});
    responses::plan(s, &responses::Options::from_request(&req))
}

#[test]
fn responses_frames_keep_the_recorded_offsets() {
    let s = script(&record(), Knobs::default());
    let plan = responses_plan(&s, true);
    assert_eq!(plan.headers_ms, 200);
    let ev = events(&plan);
    let text = of_type(&ev, "response.output_text.delta");
    let at: Vec<u64> = text.iter().map(|e| e.0).collect();
    assert_eq!(at, [1_000, 1_050, 1_200]);
    let answer: String = text
        .iter()
        .map(|e| e.1["delta"].as_str().unwrap())
        .collect();
    assert_eq!(answer, "Hello world.");
    let summary = of_type(&ev, "response.reasoning_summary_text.delta");
    let at: Vec<u64> = summary.iter().map(|e| e.0).collect();
    assert_eq!(at, [100, 200, 300, 400, 500]);
    let parts: Vec<&str> = of_type(&ev, "response.reasoning_summary_text.done")
        .iter()
        .map(|e| e.1["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        parts,
        ["**Planning**\n\nThink more.", "**Checking**\n\nFine."]
    );
    let done = of_type(&ev, "response.completed");
    assert_eq!(done[0].0, 1_300);
    let usage = &done[0].1["response"]["usage"];
    assert_eq!(usage["input_tokens"], 7);
    assert_eq!(usage["output_tokens"], 50);
    assert_eq!(usage["output_tokens_details"]["reasoning_tokens"], 20);
    assert_eq!(done[0].1["response"]["model"], "o-recorded");
    assert_eq!(plan.frames.last().map(Frame::at_ms), Some(1_300));
}

#[test]
fn anthropic_gets_plain_headings_once() {
    let s = script(&record(), Knobs::default());
    let req = json!({"stream": true, "thinking": {"type": "enabled"}});
    let ev = events(&messages::plan(&s, messages::Options::from_request(&req)));
    let thinking: String = ev
        .iter()
        .filter_map(|(_, v)| v["delta"]["thinking"].as_str())
        .collect();
    assert_eq!(thinking, "Planning\nThink more.\n\nChecking\nFine.");
    let text: Vec<(u64, &str)> = ev
        .iter()
        .filter_map(|(at, v)| Some((*at, v["delta"]["text"].as_str()?)))
        .collect();
    assert_eq!(text, [(1_000, "Hello"), (1_050, " world"), (1_200, ".")]);
}

#[test]
fn every_api_replays_the_text_in_time_order() {
    let knobs = Knobs {
        reasoning_content: true,
        ..Knobs::default()
    };
    let s = script(&record(), knobs);
    let req = json!({"stream": true, "think": true, "thinking": {"type": "enabled"}});
    let plans = [
        chat::plan(&s, chat::Options::from_request(&req)),
        responses_plan(&s, true),
        messages::plan(&s, messages::Options::from_request(&req)),
        gemini::plan(&s, gemini::Framing::Sse, true),
        gemini::plan(&s, gemini::Framing::Array, true),
        ollama::plan(
            &s,
            ollama::Options::from_request(ollama::Endpoint::Chat, &req),
        ),
    ];
    for plan in plans {
        let times: Vec<u64> = plan.frames.iter().map(Frame::at_ms).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
        // Gemini's SSE ends with the last answer chunk; the others at the recorded end.
        assert!(matches!(times.last(), Some(1_200 | 1_300)), "{times:?}");
        let body = String::from_utf8(plan.body_bytes()).unwrap();
        assert!(
            body.contains("Hello") && body.contains("Checking"),
            "{body}"
        );
    }
}

#[test]
fn whole_answers_wait_for_the_whole_exchange() {
    let s = script(&record(), Knobs::default());
    let plan = responses_plan(&s, false);
    assert_eq!(plan.headers_ms, 200 + 1_300);
    let v: Value = serde_json::from_slice(&plan.body_bytes()).unwrap();
    assert_eq!(v["output"][1]["content"][0]["text"], "Hello world.");
    let req = json!({"thinking": {"type": "enabled"}});
    let plan = messages::plan(&s, messages::Options::from_request(&req));
    let v: Value = serde_json::from_slice(&plan.body_bytes()).unwrap();
    assert_eq!(v["content"][1]["text"], "Hello world.");
}

#[test]
fn speed_divides_every_offset() {
    let knobs = Knobs {
        speed_pct: Some(200),
        ..Knobs::default()
    };
    let s = script(&record(), knobs);
    assert_eq!(s.knobs.headers_ms, 100);
    assert_eq!(
        (0..3).map(|i| s.answer_at(i)).collect::<Vec<_>>(),
        [500, 525, 600]
    );
    assert_eq!(s.total_ms(), 650);
}

#[test]
fn without_deltas_the_text_is_paced_evenly_after_the_first_token() {
    let mut r = record();
    r.deltas.clear();
    r.usage = None;
    let s = script(&r, Knobs::default());
    assert_eq!(s.answer, ["Hello", " world."]);
    assert_eq!((s.answer_at(0), s.answer_at(1)), (1_000, 1_150));
    assert_eq!(s.total_ms(), 1_300);
    // The reasoning is replayed too, its headings inline, ending by the first token.
    let thinking: String = s
        .think_pieces()
        .iter()
        .map(|p| p.1.text(super::script::Style::Plain))
        .collect();
    assert_eq!(thinking, r.response.as_ref().unwrap().reasoning);
    assert!(
        s.think_pieces()
            .iter()
            .all(|p| (100..=1_000).contains(&p.0))
    );
    // Usage falls back to counted words.
    assert_eq!((s.answer_tokens(), s.prompt_tokens), (2, 25));
}

#[test]
fn a_recorded_error_replays_its_status_in_the_called_api_envelope() {
    let mut r = record();
    r.upstream_status = Some(529);
    r.error = Some("Overloaded".to_owned());
    let plan = replay::error(&r, Family::Anthropic, &Knobs::default()).unwrap();
    assert_eq!((plan.status.as_u16(), plan.headers_ms), (529, 200));
    let v: Value = serde_json::from_slice(&plan.body_bytes()).unwrap();
    assert_eq!(v["error"]["type"], "overloaded_error");
    assert_eq!(v["error"]["message"], "Overloaded");
    assert!(replay::error(&record(), Family::OpenAi, &Knobs::default()).is_none());
}

#[test]
fn same_record_same_bytes() {
    let a = responses_plan(&script(&record(), Knobs::default()), true);
    let b = responses_plan(&script(&record(), Knobs::default()), true);
    assert_eq!(a, b);
}
