//! The one-search check for a record redaction leaves as it is (`clean.rs`): it says "as it
//! is" for ordinary records, never for one with anything to replace, and the record it lets
//! through is the one the whole redaction gives.

use super::*;

/// An ordinary exchange: a chat request, its whole answer, a label and spans.
fn ordinary() -> CaptureRecord {
    let mut r = CaptureRecord::minimal("clean-1");
    r.capture = CaptureLevel::Full;
    r.path = "/v1/chat/completions".into();
    r.request = Some(
        json!({
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "Plan a 3-day trip to Lisbon in May 2025."}],
            "max_tokens": 1700000000u64, "temperature": 0.2, "stream": false
        })
        .into(),
    );
    r.response = Some(Reassembled {
        text: "Day 1: Alfama and the castle.".into(),
        reasoning: "The user wants three days.".into(),
        tool_calls: Vec::new(),
        finish_reason: Some("stop".into()),
        body: Some(
            json!({
                "id": "chatcmpl-bench0000000000000000000001", "created": 1700000000u64,
                "choices": [{"index": 0, "finish_reason": "stop",
                    "message": {"role": "assistant", "content": "Day 1: Alfama and the castle."}}],
                "usage": {"prompt_tokens": 12, "completion_tokens": 14}
            })
            .into(),
        ),
    });
    r.deltas = vec![
        Delta::text(1.0, DeltaKind::Label, "Planning the days"),
        Delta::span(2.0, DeltaKind::Reasoning, 10),
        Delta::span(3.0, DeltaKind::Answer, 6),
        Delta::span(4.0, DeltaKind::Answer, 29),
    ];
    r.error = Some("upstream said 429: slow down".into());
    r
}

/// `record` written and read again: its documents are then texts, not trees.
fn read_back(record: &CaptureRecord) -> CaptureRecord {
    let back: CaptureRecord =
        serde_json::from_str(&serde_json::to_string(record).unwrap()).unwrap();
    assert!(back.request.as_ref().and_then(|d| d.text()).is_some());
    back
}

/// A change that puts something to redact into a record, named by where it puts it.
type Dirty = (&'static str, Box<dyn Fn(&mut CaptureRecord)>);

/// What redacting `record` gives with the check and without it are the same; returns whether
/// the check let it through.
fn agrees(redactor: &Redactor, record: &CaptureRecord) -> bool {
    let mut quick = record.clone();
    redactor.redact_record(&mut quick);
    let mut whole = record.clone();
    redactor.redact_record_whole(&mut whole);
    assert_eq!(quick, whole, "{record:?}");
    redactor.untouched(record)
}

#[test]
fn an_ordinary_record_is_left_as_it_is_in_one_search() {
    let r = default_redactor();
    assert!(agrees(&r, &ordinary()));
    let mut redacted = ordinary();
    r.redact_record(&mut redacted);
    assert_eq!(redacted, ordinary());
}

#[test]
fn a_secret_anywhere_in_a_record_is_never_let_through() {
    const EMAIL: &str = "dave@example.com";
    let dirty: Vec<Dirty> = vec![
        ("path", Box::new(|r| r.path = format!("/v1/users/{EMAIL}"))),
        ("query", Box::new(|r| r.path = "/v1/models?key=abc".into())),
        (
            "request text",
            Box::new(|r| {
                r.request = Some(json!({"messages": [{"content": format!("mail {EMAIL}")}]}).into())
            }),
        ),
        (
            "member name",
            Box::new(|r| {
                r.response.as_mut().unwrap().body = Some(json!({"by_user": {EMAIL: 1}}).into())
            }),
        ),
        (
            "credential member",
            Box::new(|r| r.request = Some(json!({"api_key": "short"}).into())),
        ),
        (
            "card integer",
            Box::new(|r| r.request = Some(json!({"n": 4242424242424242u64}).into())),
        ),
        (
            "answer card",
            Box::new(|r| {
                r.response.as_mut().unwrap().text = "pay with 4111 1111 1111 1111 today".into()
            }),
        ),
        (
            "reasoning key",
            Box::new(|r| {
                r.response.as_mut().unwrap().reasoning =
                    "use sk-proj-abcdefghijklmnop1234567890 here".into()
            }),
        ),
        (
            "label",
            Box::new(|r| {
                r.deltas.push(Delta::text(
                    5.0,
                    DeltaKind::Label,
                    format!("Writing to {EMAIL}"),
                ))
            }),
        ),
        (
            "error",
            Box::new(|r| {
                r.error = Some("bad token eyJhbGciOiJIUzI1.eyJzdWIiOiIx.c2lnbmF0dXJlMTIz".into())
            }),
        ),
        (
            "escaped e-mail",
            Box::new(|r| r.response.as_mut().unwrap().text = "dave\\u0040example.com".into()),
        ),
        (
            "tool call",
            Box::new(|r| {
                r.response.as_mut().unwrap().tool_calls = vec![ToolCall {
                    id: "c1".into(),
                    name: "send".into(),
                    arguments: format!("{{\"to\":\"{EMAIL}\"}}"),
                }]
            }),
        ),
        (
            "span with text",
            Box::new(|r| {
                r.deltas.push(Delta {
                    text: "old".into(),
                    ..Delta::span(6.0, DeltaKind::Answer, 29)
                })
            }),
        ),
    ];
    let r = default_redactor();
    for (place, change) in &dirty {
        let mut record = ordinary();
        change(&mut record);
        assert!(!agrees(&r, &record), "{place}: let through");
        // The same record read back (its documents as text) is no different.
        assert!(
            !agrees(&r, &read_back(&record)),
            "{place}: let through as text"
        );
    }
    // A configured secret, and a custom pattern, in the answer.
    let secret = with(|c| c.secrets = vec!["hunter2-very-secret".into()]);
    let mut record = ordinary();
    record.response.as_mut().unwrap().text = "it is hunter2-very-secret".into();
    assert!(!agrees(&secret, &record), "configured secret: let through");
    let custom = with(|c| c.patterns = vec![r"order-\d{6}".into()]);
    record.response.as_mut().unwrap().text = "see order-123456".into();
    assert!(!agrees(&custom, &record), "custom pattern: let through");
    assert!(
        agrees(&custom, &ordinary()),
        "a custom pattern without anchors still joins"
    );
}

#[test]
fn a_match_only_across_the_joins_sends_the_record_to_the_whole_redaction() {
    // `Bearer` ends the answer and a token-like word starts the reasoning: joined by a newline
    // they read as an authorization value, alone neither is one. The check cannot tell; the
    // whole redaction runs and replaces nothing.
    let mut record = ordinary();
    let response = record.response.as_mut().unwrap();
    response.text = "send it as Bearer".into();
    response.reasoning = "abcdefgh12345678 is the next step".into();
    record.deltas.clear();
    let r = default_redactor();
    assert!(!agrees(&r, &record));
    let mut redacted = record.clone();
    r.redact_record(&mut redacted);
    assert_eq!(redacted, record);
}

#[test]
fn an_anchored_custom_pattern_turns_the_joined_search_off() {
    let anchored = with(|c| c.patterns = vec!["^Day 1: Alfama and the castle.$".into()]);
    let record = ordinary();
    assert!(!agrees(&anchored, &record));
    let mut redacted = record.clone();
    anchored.redact_record(&mut redacted);
    assert_eq!(
        redacted.response.unwrap().text,
        MARKER,
        "matched on its own"
    );
    // Line anchors read a newline as a text's edge: they still join.
    let lines = with(|c| c.patterns = vec!["(?m)^nothing here$".into()]);
    assert!(agrees(&lines, &record));
    // In CRLF mode a `\r` before the joining newline is half a line break: not joined.
    let crlf = with(|c| c.patterns = vec!["(?mR)castle\\.\r$".into()]);
    let mut record = ordinary();
    record.response.as_mut().unwrap().text = "the castle.\r".into();
    assert!(!agrees(&crlf, &record));
    let mut redacted = record.clone();
    crlf.redact_record(&mut redacted);
    assert_eq!(redacted.response.unwrap().text, format!("the {MARKER}"));
}

#[test]
fn every_credential_name_passes_the_quick_tests_before_the_comparison() {
    for name in CREDENTIAL_NAMES {
        assert!((5..=32).contains(&name.len()), "{name}");
        let last = name.as_bytes()[name.len() - 1];
        assert!(CREDENTIAL_LAST_LETTERS.contains(&last), "{name}");
        assert!(is_credential_name(name), "{name}");
        for spelled in [name.to_uppercase(), format!("{name}_"), format!("-{name}-")] {
            assert!(is_credential_name(&spelled), "{spelled}");
        }
    }
    assert!(is_credential_name("x-api-key") && is_credential_name("API_KEY"));
    assert!(!is_credential_name("model") && !is_credential_name("tokens"));
}

/// From the review of this check: a CRLF-mode pattern anchored after a text's trailing `\r`.
#[test]
fn a_crlf_anchor_after_a_trailing_carriage_return_is_not_let_through() {
    let crlf = with(|c| c.patterns = vec![r"(?mR)^X-Secret: .*\r$".into()]);
    let mut record = ordinary();
    record.error = Some("X-Secret: hunter2\r".into());
    let mut whole = record.clone();
    crlf.redact_record_whole(&mut whole);
    assert_eq!(whole.error.as_deref(), Some(MARKER));
    assert!(!agrees(&crlf, &record));
    let crlf = with(|c| c.patterns = vec![r"(?mR)token \S+\s$".into()]);
    let mut record = ordinary();
    record.request =
        Some(json!({"messages": [{"role": "user", "content": "token abc123\r"}]}).into());
    assert!(!agrees(&crlf, &record));
}

#[test]
fn every_kind_of_word_boundary_still_joins() {
    for pattern in [
        r"\bsecret\b",
        r"\Bcret",
        r"(?-u:\b)secret",
        r"\b{start}secret\b{end}",
        r"\b{start-half}secret\b{end-half}",
        r"(?m)^secret$",
    ] {
        assert!(super::super::clean::joinable(pattern), "{pattern}");
    }
    for pattern in [
        r"\Asecret",
        r"secret\z",
        "^secret",
        "secret$",
        r"(?mR)^secret$",
    ] {
        assert!(!super::super::clean::joinable(pattern), "{pattern}");
    }
}

#[test]
fn documents_read_back_as_text_are_checked_as_their_trees_are() {
    let r = default_redactor();
    assert!(agrees(&r, &read_back(&ordinary())));
    // Text that is valid to skip over but does not parse (a number out of range) has no tree:
    // never let through, and the whole redaction replaces it with null.
    let mut record: CaptureRecord =
        serde_json::from_str(&serde_json::to_string(&ordinary()).unwrap().replace(
            r#""max_tokens":1700000000"#,
            r#""to":"dave@example.com","n":1e400"#,
        ))
        .unwrap();
    assert!(record.request.as_ref().unwrap().parsed().is_none());
    assert!(!agrees(&r, &record));
    r.redact_record(&mut record);
    assert_eq!(record.request, Some(Value::Null.into()));
}
