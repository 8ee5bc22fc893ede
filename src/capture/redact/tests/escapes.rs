//! Tests of secrets written with `\u` escapes: JSON text inside a JSON string (tool-call
//! arguments) still holds them after the outer parse, and whoever parses it again reads the
//! secret.

use super::*;

fn with_topsecret() -> Redactor {
    with(|c| c.patterns = vec!["TOPSECRET[0-9]+".into()])
}

#[test]
fn escaped_secrets_are_found() {
    let r = with_topsecret();
    let cases = [
        (
            r#"{"to":"dave\u0040example.com"}"#,
            r#"{"to":"[REDACTED:email]"}"#,
        ),
        (
            r#"{"k":"sk-\u0070roj-ZZZZyyyyXXXX1234567890ab"}"#,
            r#"{"k":"[REDACTED:key]"}"#,
        ),
        (r"code TOPSECRET\u00399 ok", "code [REDACTED] ok"),
        // Hex digits in either case, every character escaped.
        (
            r"\u0064\u0061\u0076\u0065\u0040\u0045\u0078\u002E\u0063\u006f",
            "[REDACTED:email]",
        ),
        // Split: part escaped, part not. Redacting the plain text first would leave `99`.
        (r"TOPSECRET1\u00399", "[REDACTED]"),
        (r"card 4242\u003424242424242.", "card [REDACTED:card]."),
    ];
    for (input, want) in cases {
        assert_eq!(red(&r, input), want, "{input}");
    }
}

#[test]
fn escaped_text_stays_valid_json_and_unrevealing_escapes_stay() {
    let r = default_redactor();
    // Quotes, backslashes and control characters stay escaped; the rest of the decoded view
    // (é, the surrogate pair) is what is stored once something was redacted.
    let args = r#"{"q":"\ud83d\ude00 \u0000 \u0022q\u0022 \u005c caf\u00e9 \\u0040 dave\u0040example.com\n"}"#;
    let out = red(&r, args);
    assert_eq!(
        out,
        r#"{"q":"😀 \u0000 \u0022q\u0022 \u005c café \\u0040 [REDACTED:email]\n"}"#
    );
    let parsed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        parsed["q"],
        "😀 \0 \"q\" \\ café \\u0040 [REDACTED:email]\n"
    );
    // Nothing to redact in the decoded view: the text is kept as it was, escapes and all.
    for text in [
        r"caf\u00e9 \u0040home \ud800 lone",
        r"x\\u0040example.com", // an escaped backslash: `\u0040` is text, not an escape
        r"\u00",
        r"\uZZZZ\u",
    ] {
        assert!(matches!(r.redact_str(text), Cow::Borrowed(_)), "{text}");
    }
    // A lone surrogate stays escaped beside a redaction.
    assert_eq!(
        red(&r, r"\ud800 dave\u0040example.com"),
        r"\ud800 [REDACTED:email]"
    );
}

#[test]
fn escaped_secrets_in_json_strings_and_names() {
    let r = default_redactor();
    let mut v = json!({
        "messages": [{"role": "assistant", "tool_calls": [{"function": {
            "name": "send",
            "arguments": r#"{"to":"dave\u0040example.com","key":"sk-\u0070roj-ZZZZyyyyXXXX1234567890ab"}"#,
        }}]}],
        "by_user": {r"erin\u0040example.org": 1},
    });
    r.redact_json(&mut v);
    assert_eq!(
        v["messages"][0]["tool_calls"][0]["function"]["arguments"],
        r#"{"to":"[REDACTED:email]","key":"[REDACTED:key]"}"#
    );
    assert_eq!(v["by_user"], json!({"[REDACTED:email]": 1}));
}

#[test]
fn escaped_secrets_in_a_record() {
    let r = with_topsecret();
    let mut rec = record();
    rec.deltas.clear();
    if let Some(resp) = rec.response.as_mut() {
        // A streamed call cut short: its arguments do not parse, and are scanned as text.
        resp.tool_calls[0].arguments =
            r#"{"to":"dave\u0040example.com","body":"TOPSECRET\u00399"#.into();
        resp.text = String::new();
        resp.reasoning = String::new();
    }
    r.redact_record(&mut rec);
    let resp = rec.response.as_ref().unwrap();
    assert_eq!(
        resp.tool_calls[0].arguments,
        r#"{"to":"[REDACTED:email]","body":"[REDACTED]"#
    );
}

#[test]
fn streamed_escapes_keep_offsets_consistent() {
    use DeltaKind::{Answer, Label, Reasoning};
    let r = default_redactor();
    let answer_pieces = [
        (1.0, Answer, r"caf\u00"),
        (2.0, Answer, r"e9 mail dave\u00"),
        (3.0, Answer, r"40example.com"),
        (4.0, Answer, r" \u0022ok\u0022"),
    ];
    // A surrogate pair before the secret: the decoded text is shorter by more than one escape.
    let reasoning = r"\ud83d\ude00 **Mail dave\u0040example.com** soon";
    let mut pieces = answer_pieces.to_vec();
    pieces.push((0.5, Reasoning, reasoning));
    // Labels cut inside the escaped secret: at their length bound, and at their start.
    pieces.push((0.6, Label, r"Mail dave\u0040exa…"));
    pieces.push((0.7, Label, r"u0040example.com soon"));
    let answer: String = answer_pieces.iter().map(|p| p.2).collect();
    let mut rec = record();
    rec.deltas = Delta::from_pieces(&pieces);
    if let Some(resp) = rec.response.as_mut() {
        resp.text = answer;
        resp.reasoning = reasoning.into();
    }
    r.redact_record(&mut rec);
    let resp = rec.response.clone().unwrap();
    assert_eq!(resp.text, r"café mail [REDACTED:email] \u0022ok\u0022");
    assert_eq!(resp.reasoning, "😀 **Mail [REDACTED:email]** soon");
    assert_eq!(
        texts(&rec),
        [
            (1.0, Answer, "caf".to_owned()),
            (2.0, Answer, "é mail ".to_owned()),
            (3.0, Answer, "[REDACTED:email]".to_owned()),
            (4.0, Answer, r" \u0022ok\u0022".to_owned()),
            (
                0.5,
                Reasoning,
                "😀 **Mail [REDACTED:email]** soon".to_owned()
            ),
            (0.6, Label, "Mail [REDACTED:email]…".to_owned()),
            (0.7, Label, "[REDACTED:email] soon".to_owned()),
        ]
    );
    let once = rec.clone();
    r.redact_record(&mut rec);
    assert_eq!(rec, once, "idempotent");
}

#[test]
fn decoding_reads_escapes_as_a_json_parser_does() {
    let decoded = |t: &str| unescape::decode(t).map(|(s, _)| s);
    assert_eq!(decoded(r"\u0041\u00e9\uD83D\uDE00"), Some("Aé😀".into()));
    assert_eq!(decoded("é\\u0041"), Some("éA".into()));
    // `\\` is an escaped backslash; the `u` after it is text.
    assert_eq!(decoded(r"\\u0041"), None);
    assert_eq!(decoded(r"\\\u0041"), Some(r"\\A".into()));
    // Four hex digits exactly, no sign.
    assert_eq!(decoded(r"\u+041 \u004 \u"), None);
    // Lone surrogates stay escaped; a high one does not swallow what follows it.
    assert_eq!(decoded(r"\ud83d\u0041"), Some(r"\ud83dA".into()));
    assert_eq!(decoded(r"\ude00\ud83d"), None);
    // Quote, backslash and control characters stay escaped.
    assert_eq!(decoded(r"\u005c\u0022\u001f\u007f\u0085"), None);
}
