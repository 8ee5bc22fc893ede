//! Tests of key, e-mail and card shapes the tester found stored in clear: Stripe, Hugging Face
//! and Groq keys, JWTs, form-encoded e-mails, cards grouped by no-break spaces or dots.

use super::*;

#[test]
fn more_key_shapes() {
    let r = default_redactor();
    for key in [
        "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
        "sk_test_51HxYzAbCdEfGhIjKlMnOpQr",
        "rk_live_0123456789abcdefghijKLMNOP",
        "rk_test_ZYXWVUTSRQPONMLKJIHGFEDC",
        "hf_AbCdEfGhIjKlMnOpQrStUvWxYz01234567",
        "gsk_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMN",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    ] {
        assert_eq!(
            red(&r, &format!("use {key} now")),
            "use [REDACTED:key] now",
            "{key}"
        );
    }
    for plain in [
        "sk_live_4eC39HqLyjWDarjtT1zdp7d",    // 23 after the prefix
        "sk_prod_4eC39HqLyjWDarjtT1zdp7dc",   // no such mode
        "risk_live_4eC39HqLyjWDarjtT1zdp7dc", // inside a word
        "hf_hub_download_and_cache_the_weights",
        "hf_AbCdEfGhIjKlMnOpQrStUvWxYz012",            // 29
        "gsk_abcdefghijklmnopqrstuvwxyz0123456789ABC", // 39
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.short",
        "eyJhbGciOiJIUzI1NiJ9 alone",
        "header.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N",
    ] {
        assert_eq!(red(&r, plain), plain, "{plain}");
    }
}

#[test]
fn form_encoded_emails() {
    let r = default_redactor();
    assert_eq!(red(&r, "oscar%40example.com"), "[REDACTED:email]");
    assert_eq!(
        red(&r, "/unsubscribe?to=oscar.w%40mail.example.org&x=1"),
        "/unsubscribe?to=[REDACTED:email]&x=1"
    );
    for plain in [
        "grew 40%40 times",
        "100%40x",
        "%40handle.com",
        "a%40b",
        "users%2F%40alice",
        "5%40.example.com",
        "save 20% at shop.example.com",
    ] {
        assert_eq!(red(&r, plain), plain, "{plain}");
    }
}

#[test]
fn cards_grouped_by_no_break_spaces_or_dots() {
    let r = default_redactor();
    for card in [
        "4111\u{a0}1111\u{a0}1111\u{a0}1111",
        "4111.1111.1111.1111",
        "5500.0000.0000.0004",
        "3782\u{a0}822463\u{a0}10005",
    ] {
        assert_eq!(
            red(&r, &format!("card {card}.")),
            "card [REDACTED:card].",
            "{card:?}"
        );
    }
    for not_card in [
        "4111.1111.1111.1112",      // Luhn fails
        "4111.1111 1111.1111",      // mixed separators
        "4111\u{a0}1111 1111 1111", // mixed separators
        "4111.111.1111.11111",      // not in fours
        "v4111.1111.1111.1111",     // inside a word
        "version 2024.0115.1230",
    ] {
        assert_eq!(red(&r, not_card), not_card, "{not_card:?}");
    }
}
