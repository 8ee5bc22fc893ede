//! Tests of card numbers written as JSON numbers (`{"card": 4242424242424242}`), which the
//! text rules never see.

use super::*;

#[test]
fn card_numbers_as_json_numbers() {
    let r = default_redactor();
    let mut v = json!({
        "card": 4242424242424242u64,
        "amex": 378282246310005u64,
        "short": 2222222222224u64,
        "long": 6011000000000000001u64,
        "negative": -4242424242424242i64,
        "in_list": [1, 5555555555554444u64],
        "timestamp": 1732690000002u64, // Luhn-valid, but issuer digit 1
        "issuer_7": 7000000000000005u64,
        "not_luhn": 4242424242424241u64,
        "small": 42,
        "float": 4242424242424242.0,
        "past_2_53": 4.242424242424242e18,
        "fraction": 4242424242424.5,
        "too_short": 424242424242u64,
    });
    r.redact_json(&mut v);
    for name in ["card", "amex", "short", "long", "negative", "float"] {
        assert_eq!(v[name], "[REDACTED:card]", "{name}");
    }
    assert_eq!(v["in_list"], json!([1, "[REDACTED:card]"]));
    assert_eq!(v["timestamp"], 1732690000002u64);
    assert_eq!(v["issuer_7"], 7000000000000005u64);
    assert_eq!(v["not_luhn"], 4242424242424241u64);
    assert_eq!(v["small"], 42);
    assert_eq!(v["past_2_53"], 4.242424242424242e18, "its digits are gone");
    assert_eq!(v["fraction"], 4242424242424.5);
    assert_eq!(v["too_short"], 424242424242u64);
    let once = v.clone();
    r.redact_json(&mut v);
    assert_eq!(v, once, "idempotent");

    let off = with(|c| c.card_numbers = false);
    let mut v = json!({"card": 4242424242424242u64});
    off.redact_json(&mut v);
    assert_eq!(v["card"], 4242424242424242u64);
}

#[test]
fn card_numbers_as_json_numbers_in_tool_arguments() {
    let r = default_redactor();
    let mut rec = record();
    if let Some(resp) = rec.response.as_mut() {
        resp.tool_calls[0].arguments = r#"{"card": 4242424242424242, "qty": 2}"#.into();
    }
    r.redact_record(&mut rec);
    assert_eq!(
        rec.response.unwrap().tool_calls[0].arguments,
        r#"{"card":"[REDACTED:card]","qty":2}"#
    );
}
