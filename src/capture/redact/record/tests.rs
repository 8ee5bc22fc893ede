//! Tests of redacting a whole record: text, deltas' offsets and labels.

use super::super::RedactConfig;
use super::*;
use crate::capture::record::{CaptureLevel, Reassembled};
use crate::capture::redact::tests::texts;
use proptest::prelude::*;

const EMAIL: &str = "zelda.quux@wombat-mail.example";
const CARD: &str = "5555-5555-5555-4444";
const KEY: &str = "cfg-Secret-Quokka-7d41e9b2c3";
/// An e-mail as JSON text inside a string holds it (tool-call arguments, a model writing JSON),
/// and as it reads once decoded.
const ESCAPED_EMAIL: &str = r"yorick.blum\u0040otter-post.example";
const DECODED_EMAIL: &str = "yorick.blum@otter-post.example";

fn redactor() -> Redactor {
    Redactor::new(&RedactConfig {
        secrets: vec![KEY.to_owned()],
        ..RedactConfig::default()
    })
    .unwrap()
}

fn record(answer: &str, reasoning: &str, deltas: Vec<Delta>) -> CaptureRecord {
    CaptureRecord {
        streamed: true,
        capture: CaptureLevel::Full,
        response: Some(Reassembled {
            text: answer.into(),
            reasoning: reasoning.into(),
            ..Reassembled::default()
        }),
        deltas,
        ..CaptureRecord::minimal("r")
    }
}

#[test]
fn a_secret_split_across_deltas_becomes_one_marker_in_the_delta_that_completed_it() {
    use DeltaKind::Answer;
    let pieces = [
        (1.0, Answer, "write to zel"),
        (2.0, Answer, "da.quux@wom"),
        (3.0, Answer, "bat-mail.exa"),
        (4.0, Answer, "mple, card 5555-55"),
        (5.0, Answer, "55-5555-4444 ok"),
    ];
    let answer: String = pieces.iter().map(|p| p.2).collect();
    let mut rec = record(&answer, "", Delta::from_pieces(&pieces));
    let r = redactor();
    r.redact_record(&mut rec);
    assert_eq!(
        rec.response.as_ref().unwrap().text,
        "write to [REDACTED:email], card [REDACTED:card] ok"
    );
    assert_eq!(
        texts(&rec),
        [
            (1.0, Answer, "write to ".to_owned()),
            (4.0, Answer, "[REDACTED:email], card ".to_owned()),
            (5.0, Answer, "[REDACTED:card] ok".to_owned()),
        ]
    );
    assert!(rec.deltas.iter().all(|d| d.text.is_empty()));
    let once = rec.clone();
    r.redact_record(&mut rec);
    assert_eq!(rec, once, "idempotent");
}

#[test]
fn labels_cut_inside_a_secret_lose_the_piece() {
    use DeltaKind::{Label, Reasoning};
    let reasoning = format!("**Mailing {EMAIL}**\n\nthen {KEY} later");
    let pieces = [
        (1.0, Reasoning, reasoning.as_str()),
        (1.0, Label, "Mailing zelda.quux@wombat-ma…"),
        (2.0, Label, "Secret-Quokka-7d41e9b2c3 later"),
        (3.0, Label, "da.quux@wom"),
        (4.0, Label, "Plain heading"),
    ];
    let mut rec = record("", &reasoning, Delta::from_pieces(&pieces));
    redactor().redact_record(&mut rec);
    let labels: Vec<String> = texts(&rec)
        .into_iter()
        .filter(|d| d.1 == Label)
        .map(|d| d.2)
        .collect();
    assert_eq!(
        labels,
        [
            "Mailing [REDACTED:email]…",
            "[REDACTED:key] later",
            "[REDACTED:email]",
            "Plain heading"
        ]
    );
}

#[test]
fn older_records_with_text_deltas_lose_the_pieces_too() {
    let answer = format!("mail {EMAIL} now");
    let old = |at, text: &str| Delta::text(at, DeltaKind::Answer, text);
    let deltas = vec![
        old(1.0, "mail zelda."),
        old(2.0, "quux@wombat"),
        old(3.0, "-mail.example now"),
    ];
    let mut rec = record(&answer, "", deltas);
    redactor().redact_record(&mut rec);
    let json = serde_json::to_string(&rec).unwrap();
    for piece in ["zelda.", "quux@wombat", "-mail.example"] {
        assert!(!json.contains(piece), "{piece} in {json}");
    }
}

#[test]
fn offsets_move_with_every_pass() {
    // The card shows only once the secret after it is a marker (a word boundary appears).
    let pieces = [
        (1.0, DeltaKind::Answer, "x 5555555555554"),
        (2.0, DeltaKind::Answer, &format!("444{KEY} y")[..]),
    ];
    let answer: String = pieces.iter().map(|p| p.2).collect();
    let mut rec = record(&answer, "", Delta::from_pieces(&pieces));
    redactor().redact_record(&mut rec);
    let text = &rec.response.as_ref().unwrap().text;
    assert_eq!(text, "x [REDACTED:card][REDACTED:key] y");
    assert_eq!(
        texts(&rec),
        [
            (1.0, DeltaKind::Answer, "x ".to_owned()),
            (
                2.0,
                DeltaKind::Answer,
                "[REDACTED:card][REDACTED:key] y".to_owned()
            ),
        ]
    );
}

/// Words that share no four bytes with the secrets.
fn filler() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("lorem"),
            Just("ipsum"),
            Just("dolor"),
            Just(" "),
            Just(", "),
            Just("\n"),
            Just("é😀"),
        ],
        0..6,
    )
    .prop_map(|v| v.concat())
}

fn text_with_secrets() -> impl Strategy<Value = String> {
    (filler(), filler(), filler(), filler()).prop_map(|(a, b, c, d)| {
        format!("{a} {EMAIL} {b} card {CARD} {c} key {KEY} {d} json {ESCAPED_EMAIL}")
    })
}

/// `text` cut at the given char indices (taken modulo its length).
fn chunks(text: &str, cuts: &[usize]) -> Vec<String> {
    let bounds: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
    let mut at: Vec<usize> = cuts
        .iter()
        .map(|c| bounds[c % bounds.len()])
        .chain([0, text.len()])
        .collect();
    at.sort_unstable();
    at.dedup();
    at.windows(2).map(|w| text[w[0]..w[1]].to_owned()).collect()
}

fn windows(secret: &str) -> Vec<&str> {
    (0..=secret.len() - 4).map(|i| &secret[i..i + 4]).collect()
}

proptest! {
    #[test]
    fn no_chunking_leaves_a_piece_of_a_secret_in_any_delta(
        answer in text_with_secrets(),
        reasoning in text_with_secrets(),
        answer_cuts in proptest::collection::vec(0usize..400, 0..30),
        reasoning_cuts in proptest::collection::vec(0usize..400, 0..30),
        label_window in (0usize..400, 0usize..60),
    ) {
        let answer_chunks = chunks(&answer, &answer_cuts);
        let reasoning_chunks = chunks(&reasoning, &reasoning_cuts);
        // A label cut out of the reasoning anywhere, ended by the length bound's ellipsis.
        let chars: Vec<char> = reasoning.chars().collect();
        let start = label_window.0 % chars.len();
        let label: String = chars[start..]
            .iter()
            .take(label_window.1 + 1)
            .collect::<String>()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let label = format!("{label}…");
        let mut pieces: Vec<(f64, DeltaKind, &str)> = Vec::new();
        for (i, c) in reasoning_chunks.iter().enumerate() {
            pieces.push((i as f64, DeltaKind::Reasoning, c));
        }
        pieces.push((50.0, DeltaKind::Label, &label));
        for (i, c) in answer_chunks.iter().enumerate() {
            pieces.push((100.0 + i as f64, DeltaKind::Answer, c));
        }
        let mut rec = record(&answer, &reasoning, Delta::from_pieces(&pieces));
        redactor().redact_record(&mut rec);
        let response = rec.response.clone().unwrap();
        let rebuilt = |kind| -> String {
            texts(&rec).into_iter().filter(|d| d.1 == kind).map(|d| d.2).collect()
        };
        prop_assert_eq!(rebuilt(DeltaKind::Answer), response.text);
        prop_assert_eq!(rebuilt(DeltaKind::Reasoning), response.reasoning);
        prop_assert!(rec.deltas.len() <= pieces.len());
        // What is stored of the deltas, and what they rebuild.
        let rebuilt: Vec<String> = texts(&rec).into_iter().map(|d| d.2).collect();
        let json = format!("{}{rebuilt:?}", serde_json::to_string(&rec.deltas).unwrap())
            .replace("[REDACTED:email]", "[]");
        for secret in [EMAIL, CARD, KEY, ESCAPED_EMAIL, DECODED_EMAIL] {
            for w in windows(secret) {
                prop_assert!(!json.contains(w), "{:?} in {}", w, json);
            }
        }
    }
}

/// A record whose answer body is `body` as received from the upstream (`Doc::received`).
fn received(body: &str) -> CaptureRecord {
    CaptureRecord {
        capture: CaptureLevel::Full,
        response: Some(Reassembled {
            body: crate::record::Doc::received(body.as_bytes()),
            ..Reassembled::default()
        }),
        ..CaptureRecord::minimal("r")
    }
}

/// The answer body's text, when it is kept as it came.
fn body_text(rec: &CaptureRecord) -> Option<&str> {
    rec.response.as_ref()?.body.as_ref()?.text()
}

/// The record as the spill and the store write it, and as serde writes it.
fn written(rec: &CaptureRecord) -> String {
    let ours = crate::record::json::to_string(rec).unwrap();
    assert_eq!(ours, serde_json::to_string(rec).unwrap());
    ours
}

#[test]
fn an_answer_body_kept_as_received_is_written_as_it_came_only_while_nothing_in_it_is_redacted() {
    let r = redactor();
    // Clean: the text as it came (member order, spacing, escapes), not the tree's.
    let clean = r#"{"z":1, "a":"caf\u00e9","n":[1.50,2]}"#;
    let mut rec = received(clean);
    r.redact_record(&mut rec);
    assert!(written(&rec).contains(clean), "{}", written(&rec));

    // Each secret the tree shows is redacted, and the text it came as is not written.
    let card_number = CARD.replace('-', "");
    let cases = [
        (format!(r#"{{"content":"mail {EMAIL}"}}"#), EMAIL.to_owned()),
        (
            format!(r#"{{"content":"{ESCAPED_EMAIL}"}}"#),
            DECODED_EMAIL.to_owned(),
        ),
        (format!(r#"{{"note":"{KEY}"}}"#), KEY.to_owned()),
        (
            r#"{"api_key":"zz-plain-looking-9"}"#.to_owned(),
            "zz-plain-looking-9".to_owned(),
        ),
        (format!(r#"{{"n":{card_number}}}"#), card_number.clone()),
        (format!(r#"{{"{EMAIL}":1}}"#), EMAIL.to_owned()),
    ];
    for (body, secret) in &cases {
        let mut rec = received(body);
        assert!(body_text(&rec).is_some());
        r.redact_record(&mut rec);
        let out = written(&rec);
        assert!(!out.contains(secret.as_str()), "{body}: {out}");
        assert!(!out.contains(ESCAPED_EMAIL), "{body}: {out}");
        assert!(out.contains("[REDACTED"), "{body}: {out}");
    }
}

#[test]
fn an_answer_body_whose_tree_may_show_less_than_its_text_is_never_written_as_it_came() {
    // serde_json's tree keeps the last of two members with one name: redaction reads the tree,
    // so the text, which holds both, must not be what is written.
    let body = format!(r#"{{"content":"mail {EMAIL}","content":"ok"}}"#);
    let mut rec = received(&body);
    assert!(body_text(&rec).is_none(), "read as a tree alone");
    redactor().redact_record(&mut rec);
    let out = written(&rec);
    assert!(!out.contains(EMAIL), "{out}");
    // A name serde_json reads its own way: the document in the string is what every later
    // reader sees, so it is what is redacted.
    let body = r#"{"$serde_json::private::RawValue":"{\"api_key\":\"hunter2\"}"}"#;
    let mut rec = received(body);
    redactor().redact_record(&mut rec);
    let out = written(&rec);
    assert!(!out.contains("hunter2"), "{out}");
    // On more than one line, likewise (a record is one spill line).
    let rec = received("{\"a\":\n1}");
    assert!(body_text(&rec).is_none());
    assert!(!written(&rec).contains('\n'));
    // Not JSON: no body.
    assert!(crate::record::Doc::received(b"{\"a\":").is_none());
    assert!(crate::record::Doc::received(b"\xff").is_none());
}
