//! Every format over hand-built records of all five apis, streamed and not.

use serde_json::{Value, json};

use super::*;
use crate::capture::record::{CaptureLevel, Outcome, Reassembled, Timings, TokenUsage, ToolCall};

pub(super) fn base(
    api: &str,
    path: &str,
    streamed: bool,
    request: Value,
    response: Reassembled,
) -> CaptureRecord {
    CaptureRecord {
        id: format!("req-{api}"),
        attempt: 1,
        owner: None,
        started_at_ms: 1_795_760_107_123,
        route: format!("{api}-route"),
        api: api.into(),
        model: Some("m-1".into()),
        method: "POST".into(),
        path: path.into(),
        client_status: Some(200),
        upstream_status: Some(200),
        streamed,
        tier: if streamed {
            "events".into()
        } else {
            "off".into()
        },
        outcome: Outcome::Ok,
        partial: false,
        capture: CaptureLevel::Full,
        timings: Timings {
            first_feedback_ms: Some(12.5),
            first_token_ms: streamed.then_some(850.0),
            done_ms: Some(1200.0),
            longest_silence_ms: Some(700.25),
            overhead_ms: Some(1.5),
            upstream_headers_ms: Some(40.0),
            ..Timings::default()
        },
        usage: Some(TokenUsage {
            input: Some(20),
            output: Some(5),
            reasoning: None,
        }),
        upstream_timings: None,
        eta: None,
        request: Some(request.into()),
        response: Some(response),
        deltas: Vec::new(),
        error: None,
        truncated: false,
        disconnect: None,
    }
}

pub(super) fn text(t: &str) -> Reassembled {
    Reassembled {
        text: t.into(),
        ..Reassembled::default()
    }
}

/// OpenAI chat, streamed, with an earlier tool round trip in the request.
fn openai_chat() -> CaptureRecord {
    base(
        "openai",
        "/v1/chat/completions",
        true,
        json!({"model": "m-1", "stream": true,
               "tools": [{"type": "function", "function": {"name": "weather"}}],
               "messages": [
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"},
                                         {"type": "image_url", "image_url": {"url": "https://example.com/paris.png"}}]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_a", "type": "function",
                 "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_a", "content": "18C, sunny"},
        ]}),
        text("18°C and sunny."),
    )
}

/// OpenAI Responses, not streamed: the answer comes from the body only.
fn responses() -> CaptureRecord {
    let mut r = base(
        "openai",
        "/v1/responses",
        false,
        json!({"model": "m-1", "instructions": "Answer with a number.",
               "input": [{"role": "user", "content": [{"type": "input_text", "text": "2+2?"}]},
                         {"type": "reasoning", "summary": []}]}),
        Reassembled::default(),
    );
    r.id = "req-responses".into();
    if let Some(resp) = r.response.as_mut() {
        resp.body = Some(
            json!({"output": [
            {"type": "reasoning", "summary": []},
            {"type": "message", "role": "assistant",
             "content": [{"type": "output_text", "text": "4"}]}]})
            .into(),
        );
    }
    r
}

/// Anthropic, streamed: system blocks, a tool_use / tool_result round trip, thinking dropped.
fn anthropic() -> CaptureRecord {
    let mut response = text("It is 18°C.");
    response.reasoning = "Let me think".into();
    base(
        "anthropic",
        "/v1/messages",
        true,
        json!({"model": "m-1", "max_tokens": 100,
               "tools": [{"name": "weather", "input_schema": {"type": "object"}}],
               "system": [{"type": "text", "text": "You are terse."}],
               "messages": [
                   {"role": "user", "content": "Weather?"},
                   {"role": "assistant", "content": [
                       {"type": "thinking", "thinking": "hmm"},
                       {"type": "tool_use", "id": "tu_1", "name": "weather", "input": {"city": "Oslo"}}]},
                   {"role": "user", "content": [
                       {"type": "tool_result", "tool_use_id": "tu_1",
                        "content": [{"type": "text", "text": "18C"}]}]}]}),
        response,
    )
}

/// The Anthropic record with `tools` offered.
pub(super) fn anthropic_with(tools: Value) -> CaptureRecord {
    let mut r = anthropic();
    if let Some(Value::Object(body)) = r.request.as_mut().map(|d| d.tree_mut()) {
        body.insert("tools".into(), tools);
    }
    r
}

/// Gemini, not streamed: systemInstruction, role model.
fn gemini() -> CaptureRecord {
    base(
        "gemini",
        "/v1beta/models/m-1:generateContent",
        false,
        json!({"systemInstruction": {"parts": [{"text": "Rhyme."}]},
               "contents": [
                   {"role": "user", "parts": [{"text": "Say hi"}]},
                   {"role": "model", "parts": [{"text": "thinking", "thought": true}, {"text": "Hi, I fly."}]},
                   {"role": "user", "parts": [{"text": "Again"}]}]}),
        text("Hello, fellow."),
    )
}

/// Ollama chat, streamed, answering with a tool call and no text.
fn ollama() -> CaptureRecord {
    let response = Reassembled {
        tool_calls: vec![ToolCall {
            id: String::new(),
            name: "search".into(),
            arguments: "{\"q\":\"rust\"}".into(),
        }],
        ..Reassembled::default()
    };
    base(
        "ollama",
        "/api/chat",
        true,
        json!({"model": "m-1", "messages": [{"role": "user", "content": "Find rust docs"}],
               "tools": [{"type": "function", "function": {"name": "search"}}]}),
        response,
    )
}

fn all() -> Vec<CaptureRecord> {
    vec![openai_chat(), responses(), anthropic(), gemini(), ollama()]
}

fn export(format: Format, records: &[CaptureRecord]) -> (String, ExportCounts) {
    let mut out = Vec::new();
    let mut exporter = Exporter::new(format, &mut out);
    exporter.write_header().unwrap();
    for r in records {
        exporter.write(r).unwrap();
    }
    let counts = exporter.finish().unwrap();
    (String::from_utf8(out).unwrap(), counts)
}

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn roles(messages: &Value) -> Vec<&str> {
    messages
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect()
}

#[test]
fn formats_parse_by_name() {
    for f in Format::ALL {
        assert_eq!(Format::parse(f.as_str()), Some(f));
    }
    assert_eq!(Format::parse("parquet"), None);
}

#[test]
fn chat_jsonl_per_api() {
    let (out, counts) = export(Format::ChatJsonl, &all());
    assert_eq!((counts.written, counts.skipped), (5, 0));
    let l = lines(&out);
    assert_eq!(
        roles(&l[0]["messages"]),
        ["system", "user", "assistant", "tool", "assistant"]
    );
    assert_eq!(
        l[0]["messages"][1]["content"],
        json!([{"type": "text", "text": "Weather in Paris?"},
               {"type": "image_url", "image_url": {"url": "https://example.com/paris.png"}}])
    );
    assert!(l[0]["messages"][2].get("content").is_none());
    assert_eq!(
        l[0]["messages"][2]["tool_calls"][0]["function"]["name"],
        "weather"
    );
    assert_eq!(l[0]["messages"][3]["tool_call_id"], "call_a");
    assert_eq!(
        l[0]["messages"][4],
        json!({"role": "assistant", "content": "18°C and sunny."})
    );

    assert_eq!(
        l[1]["messages"],
        json!([{"role": "system", "content": "Answer with a number."},
               {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}])
    );

    assert_eq!(
        roles(&l[2]["messages"]),
        ["system", "user", "assistant", "tool", "assistant"]
    );
    assert_eq!(
        l[2]["messages"][2]["tool_calls"][0]["function"]["arguments"],
        "{\"city\":\"Oslo\"}"
    );
    assert_eq!(
        l[2]["messages"][3],
        json!({"role": "tool", "content": "18C", "tool_call_id": "tu_1"})
    );

    assert_eq!(
        l[3]["messages"],
        json!([{"role": "system", "content": "Rhyme."}, {"role": "user", "content": "Say hi"},
               {"role": "assistant", "content": "Hi, I fly."}, {"role": "user", "content": "Again"},
               {"role": "assistant", "content": "Hello, fellow."}])
    );

    let last = &l[4]["messages"][1];
    assert_eq!(last["role"], "assistant");
    assert_eq!(
        last["tool_calls"][0]["id"], "call_0",
        "ids are given where missing"
    );
    assert_eq!(
        last["tool_calls"][0]["function"]["arguments"],
        "{\"q\":\"rust\"}"
    );
}

#[test]
fn openai_evals_per_api() {
    let (out, counts) = export(Format::OpenAiEvals, &all());
    assert_eq!(counts.written, 3);
    assert_eq!(
        counts.skipped_for(Skip::Images),
        1,
        "evals messages are text: the chat request with an image"
    );
    assert_eq!(
        counts.skipped_for(Skip::NoAnswerText),
        1,
        "Ollama answered with a tool call only"
    );
    let l = lines(&out);
    assert_eq!(
        l[0],
        json!({"input": [{"role": "system", "content": "Answer with a number."},
                                      {"role": "user", "content": "2+2?"}], "ideal": "4"})
    );
    for sample in &l {
        assert!(sample["ideal"].as_str().is_some_and(|s| !s.is_empty()));
        assert!(sample["input"].as_array().is_some_and(|a| !a.is_empty()));
    }
}

#[test]
fn inspect_per_api() {
    let mut records = all();
    records[3].attempt = 2;
    let mut single = ollama();
    single.response = Some(text("Here."));
    records.push(single);
    let (out, counts) = export(Format::Inspect, &records);
    assert_eq!(
        (counts.written, counts.skipped_for(Skip::NoAnswerText)),
        (5, 1)
    );
    let l = lines(&out);
    assert_eq!(l[0]["id"], "req-openai");
    assert_eq!(l[0]["target"], "18°C and sunny.");
    let call = &l[0]["input"][2]["tool_calls"][0];
    assert_eq!(
        call,
        &json!({"id": "call_a", "function": "weather", "type": "function",
                             "arguments": {"city": "Paris"}})
    );
    assert_eq!(l[3]["id"], "req-gemini#2");
    let meta = &l[0]["metadata"];
    assert_eq!(meta["route"], "openai-route");
    assert_eq!(meta["outcome"], "ok");
    assert_eq!(meta["first_token_ms"], 850.0);
    assert_eq!(meta["usage"]["input_tokens"], 20);
    assert_eq!(meta["started_at"], "2026-11-27T06:15:07.123Z");
    assert_eq!(l[1]["metadata"]["first_token_ms"], Value::Null);
    assert_eq!(
        l[4]["input"], "Find rust docs",
        "a lone user message is a string"
    );
}

#[test]
fn csv_rows() {
    let mut records = all();
    records[1].error = Some("upstream said \"no\",\nthen left".into());
    records[1].outcome = Outcome::UpstreamError;
    records[2].model = None;
    records[2].usage = None;
    let (out, counts) = export(Format::Csv, &records);
    assert_eq!((counts.written, counts.skipped), (5, 0));
    let rows: Vec<&str> = out.split("\r\n").collect();
    assert_eq!(rows.len(), 7, "header, five rows, and the empty tail");
    assert_eq!(rows[0].split(',').count(), 26);
    assert!(rows[0].starts_with("id,attempt,started_at,route,api,model,method,path,"));
    assert_eq!(
        rows[1],
        "req-openai,1,2026-11-27T06:15:07.123Z,openai-route,openai,m-1,POST,/v1/chat/completions,\
         200,200,true,events,ok,false,12.5,850,1200,700.25,1.5,40,20,5,,,,"
    );
    assert!(rows[2].ends_with(",upstream_error,false,12.5,,1200,700.25,1.5,40,20,5,,\"upstream said \"\"no\"\",\nthen left\",,"));
    assert!(rows[3].contains(",anthropic,,POST,"));
    assert!(rows[3].ends_with(",40,,,,,,"));
}

#[test]
fn empty_csv_still_has_its_header() {
    let mut out = Vec::new();
    let counts = Exporter::new(Format::Csv, &mut out).finish().unwrap();
    assert_eq!(counts, ExportCounts::default());
    assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 1);
    let (jsonl, _) = export(Format::ChatJsonl, &[]);
    assert_eq!(jsonl, "");
}

#[test]
fn skips_are_counted_by_reason() {
    let mut partial = openai_chat();
    partial.partial = true;
    let mut failed = anthropic();
    failed.outcome = Outcome::Timeout;
    let mut no_request = gemini();
    no_request.request = None;
    let mut text_body = gemini();
    text_body.request = Some(Value::String("not json".into()).into());
    let mut system_only = openai_chat();
    system_only.request = Some(json!({"messages": [{"role": "system", "content": "x"}]}).into());
    let mut no_response = responses();
    no_response.response = None;
    let mut empty_answer = responses();
    empty_answer.response = Some(Reassembled::default());
    let mut truncated = gemini();
    truncated.truncated = true;
    let records = [
        partial,
        truncated,
        failed,
        no_request,
        text_body,
        system_only,
        no_response,
        empty_answer,
    ];
    for format in [Format::ChatJsonl, Format::OpenAiEvals, Format::Inspect] {
        let (out, counts) = export(format, &records);
        assert_eq!(out, "", "{format}");
        let by = |why| counts.skipped_for(why);
        assert_eq!((counts.written, counts.skipped), (0, 8), "{format}");
        assert_eq!(
            (by(Skip::Partial), by(Skip::Truncated), by(Skip::Error)),
            (1, 1, 1),
            "{format}"
        );
        assert_eq!(by(Skip::NoMessages), 3, "{format}");
        assert_eq!(by(Skip::NoAnswer) + by(Skip::NoAnswerText), 2, "{format}");
    }
}

#[test]
fn other_request_shapes() {
    // Responses with a string input, function calls and outputs.
    let r = json!({"input": [
        {"type": "message", "role": "user", "content": "hi"},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call", "call_id": "c2", "name": "g", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "done"}]});
    let m = read::request_messages(&r);
    assert_eq!(
        m.iter().map(|m| m.role).collect::<Vec<_>>(),
        [Role::User, Role::Assistant, Role::Tool]
    );
    assert_eq!(m[1].tool_calls.len(), 2);
    assert_eq!(
        read::request_messages(&json!({"input": "hello"}))[0].text(),
        "hello"
    );
    // Ollama generate.
    let m = read::request_messages(&json!({"prompt": "p", "system": "s"}));
    assert_eq!(
        (m[0].role, m[1].role, m[1].text().as_str()),
        (Role::System, Role::User, "p")
    );
    // Gemini function call and response.
    let m = read::request_messages(&json!({"contents": [
        {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {"a": 1}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"ok": true}}}]}]}));
    assert_eq!(m[0].tool_calls[0].arguments, "{\"a\":1}");
    assert_eq!(
        (m[1].role, m[1].text(), m[1].name.as_deref()),
        (Role::Tool, "{\"ok\":true}".to_owned(), Some("f"))
    );
    // Odd shapes read as nothing, without panicking.
    for odd in [
        json!(null),
        json!([1]),
        json!({"messages": 3}),
        json!({"messages": [1, {"role": 2}]}),
        json!({"contents": "x"}),
        json!({"input": {"a": 1}}),
    ] {
        let _ = read::request_messages(&odd);
    }
}

/// Writes one file per format for `tests/clients/validate_exports.py`:
/// `ALOUD_EXPORT_SAMPLES=/tmp/dir cargo test --lib export::tests::write_samples -- --ignored`
#[test]
#[ignore = "writes files for the Python validator"]
fn write_samples() {
    let dir = std::env::var("ALOUD_EXPORT_SAMPLES").unwrap();
    let mut records = all();
    let mut retry = anthropic();
    retry.attempt = 3;
    records.push(retry);
    for format in Format::ALL {
        let ext = if format == Format::Csv {
            "csv"
        } else {
            "jsonl"
        };
        let (out, _) = export(format, &records);
        std::fs::write(format!("{dir}/{}.{ext}", format.as_str()), out).unwrap();
    }
}
