//! The streams of the redaction test: an OpenAI chat answer and an Anthropic thinking block and
//! answer, with an e-mail, a Luhn-valid card and the route's configured key each split across
//! 2–5 chunks (one SSE event per chunk).

pub const EMAIL: &str = "zelda.quux@wombat-mail.example";
pub const CARD: &str = "5555-5555-5555-4444";
pub const CARD_SPACED: &str = "4012 8888 8888 1881";
pub const KEY: &str = "cfg-Secret-Quokka-7d41e9b2c3";
pub const SECRETS: [&str; 4] = [EMAIL, CARD, CARD_SPACED, KEY];

/// The answer in pieces: the e-mail in 4, the card in 2, the key in 3.
pub const OPENAI_ANSWER: &[&str] = &[
    "Sure. Write to zel",
    "da.quux@wom",
    "bat-mail.exa",
    "mple, pay with 5555-55",
    "55-5555-4444 and use key cfg-Sec",
    "ret-Quok",
    "ka-7d41e9b2c3 today.",
];
/// Thinking with the card in 3 pieces; an answer with the e-mail in 2 and the key in 5.
pub const ANTHROPIC_THINKING: &[&str] = &[
    "**Paying**\n\nThe card is 4012 88",
    "88 8888 18",
    "81 as given.",
];
pub const ANTHROPIC_ANSWER: &[&str] = &[
    "Mail zelda.quux@",
    "wombat-mail.example with cf",
    "g-Sec",
    "ret-Q",
    "uokka-7d4",
    "1e9b2c3 now.",
];

pub fn openai_events() -> Vec<String> {
    let chunk = |delta: serde_json::Value, finish: serde_json::Value| {
        let v = serde_json::json!({"id": "c1", "object": "chat.completion.chunk", "model": "gpt-x",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        format!("data: {v}\n\n")
    };
    let mut events = vec![chunk(
        serde_json::json!({"role": "assistant"}),
        serde_json::Value::Null,
    )];
    for piece in OPENAI_ANSWER {
        events.push(chunk(
            serde_json::json!({"content": piece}),
            serde_json::Value::Null,
        ));
    }
    events.push(chunk(serde_json::json!({}), "stop".into()));
    events.push("data: [DONE]\n\n".to_owned());
    events
}

pub fn anthropic_events() -> Vec<String> {
    let event = |kind: &str, v: serde_json::Value| format!("event: {kind}\ndata: {v}\n\n");
    let delta = |index: u32, d: serde_json::Value| {
        event(
            "content_block_delta",
            serde_json::json!({"type": "content_block_delta", "index": index, "delta": d}),
        )
    };
    let mut events = vec![event(
        "message_start",
        serde_json::json!({"type": "message_start", "message": {"id": "msg_1", "type": "message",
            "role": "assistant", "model": "claude-x", "content": [],
            "usage": {"input_tokens": 5, "output_tokens": 1}}}),
    )];
    events.push(event(
        "content_block_start",
        serde_json::json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "thinking", "thinking": ""}}),
    ));
    for piece in ANTHROPIC_THINKING {
        events.push(delta(
            0,
            serde_json::json!({"type": "thinking_delta", "thinking": piece}),
        ));
    }
    events.push(event(
        "content_block_stop",
        serde_json::json!({"type": "content_block_stop", "index": 0}),
    ));
    events.push(event(
        "content_block_start",
        serde_json::json!({"type": "content_block_start", "index": 1,
            "content_block": {"type": "text", "text": ""}}),
    ));
    for piece in ANTHROPIC_ANSWER {
        events.push(delta(
            1,
            serde_json::json!({"type": "text_delta", "text": piece}),
        ));
    }
    events.push(event(
        "content_block_stop",
        serde_json::json!({"type": "content_block_stop", "index": 1}),
    ));
    events.push(event(
        "message_delta",
        serde_json::json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": 30}}),
    ));
    events.push(event(
        "message_stop",
        serde_json::json!({"type": "message_stop"}),
    ));
    events
}
