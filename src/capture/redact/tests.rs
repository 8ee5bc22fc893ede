//! Tests of the redactor: what it finds, across chunk boundaries, and what it keeps.

use super::*;
use crate::capture::record::{
    CaptureLevel, CaptureRecord, Delta, DeltaKind, Outcome, Reassembled, Timings, ToolCall,
};
use base64::Engine;
use serde_json::json;

mod clean;
mod escapes;
mod numbers;
mod shapes;

/// A record's deltas as (time, kind, text), for the tests here and in `record/tests.rs`.
pub(super) fn texts(rec: &CaptureRecord) -> Vec<(f64, DeltaKind, String)> {
    rec.delta_texts()
        .iter()
        .map(|d: &crate::capture::record::DeltaText<'_>| (d.at_ms, d.kind, d.text.to_owned()))
        .collect()
}

fn default_redactor() -> Redactor {
    Redactor::new(&RedactConfig::default()).unwrap()
}

fn with(f: impl FnOnce(&mut RedactConfig)) -> Redactor {
    let mut config = RedactConfig::default();
    f(&mut config);
    Redactor::new(&config).unwrap()
}

fn red(r: &Redactor, text: &str) -> String {
    let once = r.redact_str(text).into_owned();
    assert_eq!(
        r.redact_str(&once),
        once,
        "redacting twice changed {text:?}"
    );
    once
}

#[test]
fn emails() {
    let r = default_redactor();
    assert_eq!(
        red(&r, "mail jo.doe+x@mail.example.co.uk now"),
        "mail [REDACTED:email] now"
    );
    assert_eq!(red(&r, "a@b"), "a@b");
    assert_eq!(red(&r, "@handle and x@y"), "@handle and x@y");
}

#[test]
fn cards_need_length_issuer_and_luhn() {
    let r = default_redactor();
    for card in [
        "4111111111111111",
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "5500 0000 0000 0004",
        "3782 822463 10005",
        "6011000990139424",
        "4222222222222",
    ] {
        assert_eq!(
            red(&r, &format!("card {card}.")),
            "card [REDACTED:card].",
            "{card}"
        );
    }
    for not_card in [
        "order 1234 5678",
        "4111111111111112",        // Luhn fails
        "4111 1111-1111 1111",     // mixed separators
        "1732690000000",           // a millisecond timestamp (issuer digit 1)
        "41111111111",             // too short
        "41111111111111111111111", // too long
        "x4111111111111111",       // inside a word
        "3.14159265358979323",
        "2024-01-15 and 12:30",
    ] {
        assert_eq!(red(&r, not_card), not_card, "{not_card}");
    }
}

#[test]
fn api_key_shapes() {
    let r = default_redactor();
    let cases = [
        (
            "key sk-proj-abcdefghijklmnop1234 ok",
            "key [REDACTED:key] ok",
        ),
        (
            "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUv_wx-yz",
            "[REDACTED:key]",
        ),
        ("AIzaSyA1234567890abcdefghijklmnopqrstuv", "[REDACTED:key]"),
        ("ghp_abcdefghijklmnopqrstuvwxyz0123456789", "[REDACTED:key]"),
        ("xoxb-1234567890-abcdefghij", "[REDACTED:key]"),
        ("id AKIAIOSFODNN7EXAMPLE.", "id [REDACTED:key]."),
        (
            "Authorization: Bearer abc.def-123_456",
            "Authorization: Bearer [REDACTED:key]",
        ),
        (
            "url?api_key=a8F3kL9qZ2xW7vB1nM4c&x=1",
            "url?api_key=[REDACTED:key]&x=1",
        ),
        (
            r#"{"apiKey": "Zt8q3LmX9vB2nK7wR4yP"}"#,
            r#"{"apiKey": "[REDACTED:key]"}"#,
        ),
        (
            "token: 9f86d081884c7d659a2feaa0c55ad015",
            "token: [REDACTED:key]",
        ),
    ];
    for (input, want) in cases {
        assert_eq!(red(&r, input), want, "{input}");
    }
    for plain in [
        "ask-me-anything is a task-list",
        "bearer instruments and Basic information",
        "key=value_of_the_setting_here", // no digits: reads like a word
        "the token: aaaaaaaaaaaaaaaaaaaa1", // low entropy
        "AKIA is not a key",
        "sk-short",
        "sk-learn-compatible-estimators",
        "the password: is", // too short to be one
    ] {
        assert_eq!(red(&r, plain), plain, "{plain}");
    }
}

#[test]
fn kinds_can_be_turned_off() {
    let r = with(|c| {
        c.emails = false;
        c.card_numbers = false;
        c.api_keys = false;
    });
    let text = "a@b.com 4111111111111111 sk-abcdefghijklmnopqrstu";
    assert_eq!(r.redact_str(text), text);
    assert!(matches!(r.redact_str(text), Cow::Borrowed(_)));
}

#[test]
fn custom_patterns_and_bad_config() {
    let r = with(|c| c.patterns = vec![r"\bEMP-\d{5}\b".into()]);
    assert_eq!(
        red(&r, "employee EMP-12345 left"),
        "employee [REDACTED] left"
    );
    assert!(
        Redactor::new(&RedactConfig {
            patterns: vec!["(".into()],
            ..Default::default()
        })
        .is_err()
    );
    assert!(
        Redactor::new(&RedactConfig {
            secrets: vec![String::new()],
            ..Default::default()
        })
        .is_err()
    );
    assert!(
        Redactor::new(&RedactConfig {
            json_paths: vec!["a..b".into()],
            ..Default::default()
        })
        .is_err()
    );
    // A pattern that matches the marker itself does not break idempotence.
    let r = with(|c| c.patterns = vec!["RED".into(), r"\[".into()]);
    assert_eq!(red(&r, "RED [x"), "[REDACTED] [REDACTED]x");
}

#[test]
fn secrets_plain_escaped_and_base64() {
    let secret = r#"my"client\token-0042"#;
    let r = with(|c| c.secrets = vec![secret.into(), "short".into()]);
    assert_eq!(red(&r, &format!("x {secret} y")), "x [REDACTED:key] y");
    let escaped = Value::String(secret.into()).to_string(); // with quotes
    assert_eq!(
        red(&r, &format!("body {escaped}")),
        "body \"[REDACTED:key]\""
    );
    assert_eq!(red(&r, "a short word"), "a [REDACTED:key] word");
    let engines = [
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::URL_SAFE,
    ];
    for engine in engines {
        for prefix in ["", "u", "us", "user:"] {
            let encoded = engine.encode(format!("{prefix}{secret}"));
            let out = red(&r, &format!("Basic-ish {encoded}"));
            assert!(
                out.contains("[REDACTED:key]"),
                "{prefix:?} {encoded} -> {out}"
            );
            assert!(!out.contains(&encoded), "{out}");
        }
    }
}

#[test]
fn member_names_are_redacted_like_values_and_none_is_lost() {
    let r = default_redactor();
    let mut v = json!({
        "users": {
            "alice@example.com": {"plan": "pro"},
            "bob@example.org": 2,
            "[REDACTED:email]": "a name that already reads like a marker",
        },
        "cards": {"4111111111111111": true},
        "plain": {"role": "user"},
    });
    r.redact_json(&mut v);
    let text = v.to_string();
    for secret in ["alice@", "bob@", "4111111111111111"] {
        assert!(!text.contains(secret), "{secret} kept in {text}");
    }
    let users = v["users"].as_object().unwrap();
    assert_eq!(users.len(), 3, "no member lost: {users:?}");
    assert!(users.values().any(|u| u == &json!({"plan": "pro"})));
    assert_eq!(v["plain"], json!({"role": "user"}));
    let once = v.clone();
    r.redact_json(&mut v);
    assert_eq!(v, once, "idempotent");
}

#[test]
fn json_paths_credential_members_and_strings() {
    let r = with(|c| c.json_paths = vec!["messages[*].content".into(), "$.user".into()]);
    let mut v = json!({
        "model": "m",
        "user": "u-1",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "metadata": {"note": "mail me at a@b.org", "api_key": "plain", "x-api-key": 7,
                     "password": null, "token": {"type": "string"}},
        "tools": [{"parameters": {"properties": {"password": {"type": "string"}}}}],
    });
    r.redact_json(&mut v);
    let once = v.clone();
    r.redact_json(&mut v);
    assert_eq!(v, once, "idempotent");
    assert_eq!(v["messages"][0]["content"], "[REDACTED]");
    assert_eq!(v["messages"][0]["role"], "user");
    assert_eq!(v["user"], "[REDACTED]");
    assert_eq!(v["max_tokens"], 5);
    assert_eq!(v["metadata"]["note"], "mail me at [REDACTED:email]");
    assert_eq!(v["metadata"]["api_key"], "[REDACTED]");
    assert_eq!(v["metadata"]["x-api-key"], "[REDACTED]");
    assert_eq!(v["metadata"]["password"], Value::Null);
    assert_eq!(
        v["metadata"]["token"],
        json!({"type": "string"}),
        "schemas stay"
    );
    assert_eq!(
        v["tools"][0]["parameters"]["properties"]["password"]["type"],
        "string"
    );
}

#[test]
fn queries() {
    let r = default_redactor();
    assert_eq!(
        r.redact_query("alt=sse&key=AIzaXYZ"),
        "alt=sse&key=[REDACTED]"
    );
    assert!(matches!(r.redact_query("alt=sse&x=1"), Cow::Borrowed(_)));
}

fn record() -> CaptureRecord {
    CaptureRecord {
        id: "r1".into(),
        attempt: 1,
        owner: None,
        started_at_ms: 0,
        route: "gem".into(),
        api: "gemini".into(),
        model: Some("m".into()),
        method: "POST".into(),
        path: "/v1beta/models/m:streamGenerateContent?alt=sse&key=AIzaSecret".into(),
        client_status: Some(200),
        upstream_status: Some(200),
        streamed: true,
        tier: "events".into(),
        outcome: Outcome::Ok,
        partial: false,
        capture: CaptureLevel::Full,
        timings: Timings::default(),
        usage: None,
        upstream_timings: None,
        eta: None,
        request: Some(json!({"contents": [{"parts": [{"text": "I am x@y.io"}]}]}).into()),
        response: Some(Reassembled {
            text: "reach me at x@y.io".into(),
            reasoning: "card 4111111111111111".into(),
            tool_calls: vec![ToolCall {
                id: "c".into(),
                name: "login".into(),
                arguments: r#"{"user":"bob","password":"hunter2"}"#.into(),
            }],
            finish_reason: None,
            body: Some(json!({"email": "x@y.io"}).into()),
        }),
        // A delta as records stored before offsets kept it: with its own text.
        deltas: vec![Delta::text(1.0, DeltaKind::Answer, "x@y.io")],
        error: Some("upstream said: bad key sk-abcdefghij0123456789".into()),
        truncated: false,
        disconnect: None,
    }
}

#[test]
fn records_everywhere() {
    let r = default_redactor();
    let mut rec = record();
    r.redact_record(&mut rec);
    let once = rec.clone();
    r.redact_record(&mut rec);
    assert_eq!(rec, once, "idempotent");
    assert_eq!(
        rec.path,
        "/v1beta/models/m:streamGenerateContent?alt=sse&key=[REDACTED]"
    );
    let text = serde_json::to_string(&rec).unwrap();
    for leaked in [
        "x@y.io",
        "4111111111111111",
        "hunter2",
        "AIzaSecret",
        "sk-abc",
    ] {
        assert!(!text.contains(leaked), "{leaked} in {text}");
    }
    let response = rec.response.unwrap();
    assert_eq!(
        response.tool_calls[0].arguments,
        r#"{"password":"[REDACTED]","user":"bob"}"#
    );
    assert_eq!(rec.error.unwrap(), "upstream said: bad key [REDACTED:key]");
}

#[test]
fn clean_tool_arguments_keep_their_text() {
    let r = default_redactor();
    let mut rec = record();
    let args = "{ \"city\" : \"Paris\" }";
    if let Some(resp) = rec.response.as_mut() {
        resp.tool_calls[0].arguments = args.into();
    }
    r.redact_record(&mut rec);
    assert_eq!(rec.response.unwrap().tool_calls[0].arguments, args);
}

#[test]
fn ordinary_text_is_borrowed() {
    let r = with(|c| c.secrets = vec!["s3cr3t-value".into()]);
    for text in [
        "The order 1234 5678 shipped on 2024-01-15 at 10:30, total 4,111.11 EUR.",
        "Call +1 (555) 123-4567; see https://example.com/a?b=c.",
        "ids: chatcmpl-abc123, msg_01XyZ, resp_68af; tokens 1200/4096",
        "",
    ] {
        assert!(matches!(r.redact_str(text), Cow::Borrowed(_)), "{text}");
    }
}

#[test]
fn no_panic_on_odd_input() {
    let r = with(|c| c.secrets = vec!["é€😀secret".into()]);
    for text in [
        "é€😀secret",
        "😀@😀.com",
        "\u{0}sk-\u{0}",
        "4111\u{a0}1111 1111 1111",
        "[REDACTED",
    ] {
        let _ = red(&r, text);
    }
}

mod props {
    use super::*;
    use proptest::prelude::*;

    /// Text built from fragments that sit near every rule's edges.
    fn soup() -> impl Strategy<Value = String> {
        let fragment = prop_oneof![
            Just("sk-".to_owned()),
            Just("@".to_owned()),
            Just(".com".to_owned()),
            Just("4111 1111 1111 1111".to_owned()),
            Just("key=".to_owned()),
            Just("Bearer ".to_owned()),
            Just("password:".to_owned()),
            Just("[REDACTED".to_owned()),
            Just("]".to_owned()),
            Just(":key]".to_owned()),
            Just("s3cr3t-value".to_owned()),
            Just("czNjcjN0LXZhbHVl".to_owned()),
            Just("\\u0040".to_owned()),
            Just("\\u0073k-".to_owned()),
            Just("\\u005c".to_owned()),
            Just("\\\\".to_owned()),
            Just("\\ud83d\\ude00".to_owned()),
            Just("%40".to_owned()),
            "[a-zA-Z0-9 _\\-+/=.:\"'&@é😀]{0,12}",
        ];
        proptest::collection::vec(fragment, 0..12).prop_map(|v| v.concat())
    }

    proptest! {
        #[test]
        fn never_panics_and_is_idempotent(text in soup()) {
            let r = with(|c| {
                c.secrets = vec!["s3cr3t-value".into()];
                c.patterns = vec!["RED".into()];
            });
            let once = r.redact_str(&text).into_owned();
            prop_assert!(!once.contains("s3cr3t-value"));
            prop_assert_eq!(r.redact_str(&once).into_owned(), once);
            let mut v = json!({"a": [text.clone()], "token": text.clone()});
            r.redact_json(&mut v);
            let after = v.clone();
            r.redact_json(&mut v);
            prop_assert_eq!(v, after);
        }

        /// The one-search check (`clean.rs`) lets a record through only when the whole
        /// redaction leaves it as it is, wherever the soup lands in it.
        #[test]
        fn the_one_search_check_agrees_with_the_whole_redaction(
            // Mostly plain words, so that records with nothing to replace come up too.
            texts in proptest::collection::vec(prop_oneof![3 => "[a-z ]{0,10}", 1 => soup()], 8),
            name in prop_oneof![Just("api_key".to_owned()), Just("x-token".to_owned()), "[a-z_]{1,8}"],
            number in prop_oneof![Just(4242424242424242u64), Just(1700000000u64), any::<u64>()],
        ) {
            let redactors = [
                default_redactor(),
                with(|c| {
                    c.secrets = vec!["s3cr3t-value".into()];
                    c.patterns = vec!["RED".into()];
                }),
            ];
            let mut record = CaptureRecord::minimal("p");
            record.path = format!("/v1/{}", texts[0]);
            record.request = Some(json!({
                "messages": [{"content": texts[1].clone()}],
                texts[2].clone(): number,
                "meta": {texts[3].clone(): texts[4].clone(), name: texts[4].clone()},
            }).into());
            record.response = Some(Reassembled {
                text: texts[5].clone(),
                reasoning: texts[6].clone(),
                body: Some(json!({"choices": [{"message": {"content": texts[5].clone()}}]}).into()),
                ..Reassembled::default()
            });
            record.deltas = vec![
                Delta::text(1.0, DeltaKind::Label, texts[7].clone()),
                Delta::span(2.0, DeltaKind::Answer, texts[5].len() / 2),
                Delta::span(3.0, DeltaKind::Answer, texts[5].len()),
            ];
            record.error = Some(texts[7].clone());
            for r in &redactors {
                let mut quick = record.clone();
                r.redact_record(&mut quick);
                let mut whole = record.clone();
                r.redact_record_whole(&mut whole);
                prop_assert_eq!(&quick, &whole);
                if r.untouched(&record) {
                    prop_assert_eq!(&whole.request, &record.request);
                    prop_assert_eq!(&whole.response, &record.response);
                }
            }
        }
    }
}

#[test]
fn credential_names_fold_case_dashes_and_underscores() {
    for name in [
        "api_key",
        "apiKey",
        "X-API-KEY",
        "x_api_key",
        "Authorization",
        "__token__",
    ] {
        assert!(super::is_credential_name(name), "{name}");
    }
    let long = format!("{}token", "_".repeat(27));
    assert_eq!(long.len(), 32);
    assert!(super::is_credential_name(&long));
    for name in [
        "key",
        "tokens",
        "api_keys",
        "tökén",
        "",
        "a_much_longer_name_with_token_in_it",
        &format!("_{long}"),
    ] {
        assert!(!super::is_credential_name(name), "{name}");
    }
}
