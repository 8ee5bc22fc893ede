//! What evals need survives the export: tools, tool results linked to their calls in all five
//! apis, images where the format can carry them, Anthropic's turns merged, reasoning, feedback,
//! ids and duplicates.

use serde_json::{Value, json};

use super::tests::{base, text};
use super::*;
use crate::capture::record::Reassembled;

const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg==";

fn chat_line(r: &CaptureRecord) -> Value {
    let line = render(Format::ChatJsonl, r, None, Options::default()).unwrap();
    serde_json::from_slice(&line.bytes).unwrap()
}

fn skip(format: Format, r: &CaptureRecord) -> Option<Skip> {
    render(format, r, None, Options::default()).err()
}

/// Gemini: a function call and its response, neither with an id, and a tool declared.
fn gemini_tools() -> CaptureRecord {
    base(
        "gemini",
        "/v1beta/models/m:generateContent",
        false,
        json!({"tools": [{"functionDeclarations": [{"name": "weather", "description": "Weather now",
                  "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]}],
               "contents": [
                   {"role": "user", "parts": [{"text": "Oslo and Rome?"}]},
                   {"role": "model", "parts": [
                       {"functionCall": {"name": "weather", "args": {"city": "Oslo"}}},
                       {"functionCall": {"name": "weather", "args": {"city": "Rome"}}}]},
                   {"role": "user", "parts": [
                       {"functionResponse": {"name": "weather", "response": {"t": 3}}},
                       {"functionResponse": {"name": "weather", "response": {"t": 20}}}]}]}),
        text("Cold and warm."),
    )
}

#[test]
fn gemini_and_ollama_tool_results_get_the_ids_of_their_calls() {
    let l = chat_line(&gemini_tools());
    let m = &l["messages"];
    let calls = &m[1]["tool_calls"];
    assert_eq!(
        (calls[0]["id"].as_str(), calls[1]["id"].as_str()),
        (Some("call_0"), Some("call_1"))
    );
    assert_eq!(
        m[2],
        json!({"role": "tool", "content": "{\"t\":3}", "tool_call_id": "call_0"})
    );
    assert_eq!(m[3]["tool_call_id"], "call_1");
    assert_eq!(
        l["tools"],
        json!([{"type": "function", "function": {"name": "weather", "description": "Weather now",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])
    );
    // The same record, the same ids.
    assert_eq!(chat_line(&gemini_tools()), l);

    let ollama = base(
        "ollama",
        "/api/chat",
        true,
        json!({"model": "m", "tools": [{"type": "function", "function": {"name": "a", "parameters": {}}},
                                        {"type": "function", "function": {"name": "b"}}],
               "messages": [{"role": "user", "content": "go"},
                            {"role": "assistant", "content": "", "tool_calls": [
                                {"function": {"name": "a", "arguments": {}}},
                                {"function": {"name": "b", "arguments": {"x": 1}}}]},
                            {"role": "tool", "tool_name": "b", "content": "B"},
                            {"role": "tool", "content": "A"}]}),
        text("done"),
    );
    let m = chat_line(&ollama)["messages"].clone();
    assert_eq!(
        (m[2]["content"].as_str(), m[2]["tool_call_id"].as_str()),
        (Some("B"), Some("call_1"))
    );
    assert_eq!(
        (m[3]["content"].as_str(), m[3]["tool_call_id"].as_str()),
        (Some("A"), Some("call_0"))
    );
}

#[test]
fn tools_are_kept_for_every_api() {
    let shapes = [
        json!({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]}),
        json!({"tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}},
                         {"type": "web_search"}]}),
        json!({"tools": [{"name": "f", "input_schema": {"type": "object"}}]}),
        json!({"tools": [{"function_declarations": [{"name": "f"}]}]}),
    ];
    for s in shapes {
        let t = tools::tools(&s);
        assert_eq!(t.len(), 1, "{s}");
        assert_eq!(t[0].name, "f");
        assert!(t[0].parameters.is_object());
    }
    let r = super::tests::anthropic_with(
        json!([{"name": "weather", "input_schema": {"type": "object"}}]),
    );
    assert_eq!(chat_line(&r)["tools"][0]["function"]["name"], "weather");
    let inspect = render(Format::Inspect, &r, None, Options::default()).unwrap();
    let v: Value = serde_json::from_slice(&inspect.bytes).unwrap();
    assert_eq!(v["metadata"]["tools"][0]["function"]["name"], "weather");
}

fn with_image(api: &str, request: Value) -> CaptureRecord {
    base(api, "/x", false, request, text("A red dot."))
}

#[test]
fn images_are_kept_where_the_format_can_carry_them() {
    let data_url = format!("data:image/png;base64,{PNG}");
    let records = [
        with_image(
            "openai",
            json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is in this picture?"},
            {"type": "image_url", "image_url": {"url": data_url}}]}]}),
        ),
        with_image(
            "openai",
            json!({"input": [{"role": "user", "content": [
            {"type": "input_text", "text": "What is in this picture?"},
            {"type": "input_image", "image_url": data_url}]}]}),
        ),
        with_image(
            "anthropic",
            json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is in this picture?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}]}]}),
        ),
        with_image(
            "gemini",
            json!({"contents": [{"role": "user", "parts": [
            {"text": "What is in this picture?"},
            {"inlineData": {"mimeType": "image/png", "data": PNG}}]}]}),
        ),
        with_image(
            "ollama",
            json!({"messages": [{"role": "user",
            "content": "What is in this picture?", "images": [PNG]}]}),
        ),
    ];
    for r in &records {
        let m = &chat_line(r)["messages"][0];
        assert_eq!(
            m["content"],
            json!([{"type": "text", "text": "What is in this picture?"},
                   {"type": "image_url", "image_url": {"url": data_url}}]),
            "{}",
            r.api
        );
        assert_eq!(
            skip(Format::OpenAiEvals, r),
            Some(Skip::Images),
            "{}",
            r.api
        );
        let inspect = render(Format::Inspect, r, None, Options::default()).unwrap();
        let v: Value = serde_json::from_slice(&inspect.bytes).unwrap();
        assert_eq!(
            v["input"][0]["content"][1],
            json!({"type": "image", "image": data_url})
        );
        assert!(render(Format::Csv, r, None, Options::default()).is_ok());
    }
    // A file id, a GIF for OpenAI fine-tuning, an image in a tool result: skipped, counted.
    let file = with_image(
        "openai",
        json!({"input": [{"role": "user", "content": [
        {"type": "input_image", "file_id": "file-1"}]}]}),
    );
    assert_eq!(skip(Format::ChatJsonl, &file), Some(Skip::Images));
    assert_eq!(skip(Format::Inspect, &file), Some(Skip::Images));
    let gif = with_image(
        "openai",
        json!({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/gif;base64,R0lGOD"}}]}]}),
    );
    assert_eq!(skip(Format::ChatJsonl, &gif), Some(Skip::Images));
    assert!(skip(Format::Inspect, &gif).is_none());
}

#[test]
fn anthropic_prefill_and_consecutive_turns_merge_as_anthropic_does() {
    let r = base(
        "anthropic",
        "/v1/messages",
        true,
        json!({"messages": [{"role": "user", "content": "Name a colour."},
                            {"role": "user", "content": [{"type": "text", "text": "One word."}]},
                            {"role": "assistant", "content": "The colour is"}]}),
        text(" blue."),
    );
    let m = chat_line(&r)["messages"].clone();
    assert_eq!(
        m,
        json!([{"role": "user", "content": "Name a colour.\nOne word."},
               {"role": "assistant", "content": "The colour is blue."}])
    );
    let v: Value = serde_json::from_slice(
        &render(Format::Inspect, &r, None, Options::default())
            .unwrap()
            .bytes,
    )
    .unwrap();
    assert_eq!(v["target"], "The colour is blue.");
    // OpenAI keeps consecutive messages as they are, and never continues an assistant message.
    let mut openai = r.clone();
    openai.api = "openai".into();
    assert_eq!(chat_line(&openai)["messages"].as_array().unwrap().len(), 4);
}

#[test]
fn reasoning_feedback_and_ids() {
    let mut r = super::tests::anthropic_with(json!([{"name": "weather", "input_schema": {}}]));
    r.attempt = 2;
    let fb = crate::store::Feedback {
        id: r.id.clone(),
        score: Some(0.5),
        label: Some("good".into()),
        ..Default::default()
    };
    let line = render(Format::Inspect, &r, Some(&fb), Options::default()).unwrap();
    assert_eq!(
        (line.id.as_str(), line.request_id.as_str()),
        ("req-anthropic#2", "req-anthropic")
    );
    let v: Value = serde_json::from_slice(&line.bytes).unwrap();
    assert_eq!(v["metadata"]["reasoning"], "Let me think");
    assert_eq!(
        v["metadata"]["feedback"],
        json!({"score": 0.5, "label": "good"})
    );
    assert_eq!(v["metadata"]["request_id"], "req-anthropic");
    let plain = chat_line(&r);
    assert!(
        plain["messages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m.get("reasoning_content").is_none())
    );
    let with = Options {
        reasoning: true,
        ..Options::default()
    };
    let l: Value =
        serde_json::from_slice(&render(Format::ChatJsonl, &r, None, with).unwrap().bytes).unwrap();
    let last = l["messages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["reasoning_content"], "Let me think");
    let csv = render(Format::Csv, &r, Some(&fb), Options::default()).unwrap();
    assert!(
        String::from_utf8(csv.bytes)
            .unwrap()
            .ends_with(",0.5,good\r\n")
    );
}

#[test]
fn dedupe_ignores_ids_and_whitespace_but_not_words() {
    let key = |r: &CaptureRecord| {
        let o = Options {
            dedupe: true,
            ..Options::default()
        };
        render(Format::ChatJsonl, r, None, o)
            .unwrap()
            .dedupe_key
            .unwrap()
    };
    let a = gemini_tools();
    let mut b = gemini_tools();
    b.id = "another".into();
    b.request = Some(
        serde_json::from_str(
            &serde_json::to_string(&b.request.unwrap())
                .unwrap()
                .replace("Oslo and Rome?", "  Oslo   and Rome? "),
        )
        .unwrap(),
    );
    assert_eq!(key(&a), key(&b));
    let mut c = gemini_tools();
    c.response = Some(Reassembled {
        text: "Warm and cold.".into(),
        ..Reassembled::default()
    });
    assert_ne!(key(&a), key(&c));
    let mut out = Vec::new();
    let mut e = Exporter::with_options(
        Format::ChatJsonl,
        Options {
            dedupe: true,
            reasoning: false,
        },
        &mut out,
    );
    for r in [&a, &b, &c] {
        e.write(r).unwrap();
    }
    let counts = e.finish().unwrap();
    assert_eq!(
        (counts.written, counts.skipped_for(Skip::Duplicate)),
        (2, 1)
    );
}

#[test]
fn an_unlinked_tool_result_is_skipped_for_openai_formats() {
    let r = base(
        "openai",
        "/v1/chat/completions",
        false,
        json!({"messages": [{"role": "user", "content": "x"},
                            {"role": "tool", "tool_call_id": "nowhere", "content": "y"}]}),
        text("z"),
    );
    assert_eq!(skip(Format::ChatJsonl, &r), Some(Skip::UnlinkedToolResult));
    assert_eq!(
        skip(Format::OpenAiEvals, &r),
        Some(Skip::UnlinkedToolResult)
    );
    assert!(skip(Format::Inspect, &r).is_none());
    // A call to a tool the request did not declare.
    let undeclared = super::tests::anthropic_with(json!([]));
    assert_eq!(
        skip(Format::ChatJsonl, &undeclared),
        Some(Skip::UndeclaredTool)
    );
}
