//! Pure tests of every api's plan: determinism, framing and usage, without a clock or socket.

use super::knobs::Knobs;
use super::plan::{Frame, Plan};
use super::script::Script;
use super::{chat, gemini, messages, ollama, responses};
use serde_json::{Value, json};

fn knobs(seed: u64) -> Knobs {
    Knobs {
        seed: Some(seed),
        think_ms: Some(3_000),
        tokens: Some(20),
        token_ms: Some(30),
        ..Knobs::default()
    }
}

fn all_plans(k: &Knobs) -> Vec<Plan> {
    let s = Script::new(Some("m1"), 400, k.clone());
    let req = json!({"stream": true, "stream_options": {"include_usage": true}, "reasoning": {"summary": "auto"}, "thinking": {"type": "enabled"}, "think": true});
    vec![
        chat::plan(&s, chat::Options::from_request(&req)),
        responses::plan(&s, &responses::Options::from_request(&req)),
        messages::plan(&s, messages::Options::from_request(&req)),
        gemini::plan(&s, gemini::Framing::Sse, true),
        gemini::plan(&s, gemini::Framing::Array, true),
        ollama::plan(
            &s,
            ollama::Options::from_request(ollama::Endpoint::Chat, &req),
        ),
        ollama::plan(
            &s,
            ollama::Options::from_request(ollama::Endpoint::Generate, &req),
        ),
    ]
}

#[test]
fn same_seed_same_plan_different_seed_different_bytes() {
    let a = all_plans(&knobs(1));
    let b = all_plans(&knobs(1));
    let c = all_plans(&knobs(2));
    assert_eq!(a, b);
    for (a, c) in a.iter().zip(&c) {
        assert_ne!(a.body_bytes(), c.body_bytes());
    }
}

#[test]
fn frames_are_in_time_order_and_end_at_total() {
    for plan in all_plans(&knobs(3)) {
        let times: Vec<u64> = plan.frames.iter().map(Frame::at_ms).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
        assert_eq!(times.last(), Some(&(3_000 + 20 * 30)));
    }
}

#[test]
fn gemini_array_is_valid_json() {
    let s = Script::new(Some("g"), 40, knobs(4));
    let plan = gemini::plan(&s, gemini::Framing::Array, true);
    let v: Value = serde_json::from_slice(&plan.body_bytes()).unwrap();
    let items = v.as_array().unwrap();
    assert_eq!(
        items.last().unwrap()["candidates"][0]["finishReason"],
        "STOP"
    );
    assert!(
        items[0]["candidates"][0]["content"]["parts"][0]["thought"]
            .as_bool()
            .unwrap()
    );
}

#[test]
fn thinking_phase_is_silent_for_chat_by_default() {
    let s = Script::new(None, 40, knobs(5));
    let plan = chat::plan(
        &s,
        chat::Options {
            stream: true,
            include_usage: false,
        },
    );
    assert_eq!(plan.frames.first().map(Frame::at_ms), Some(3_000));
}

#[test]
fn anthropic_pings_during_long_silence() {
    let k = Knobs {
        think_ms: Some(16_000),
        ..knobs(6)
    };
    let s = Script::new(None, 40, k);
    let plan = messages::plan(
        &s,
        messages::Options {
            stream: true,
            thinking: false,
        },
    );
    let pings: Vec<u64> = plan
        .frames
        .iter()
        .filter(|f| matches!(f, Frame::Data { bytes, .. } if bytes.starts_with(b"event: ping")))
        .map(Frame::at_ms)
        .collect();
    assert_eq!(pings, vec![0, 5_000, 10_000, 15_000]);
}

#[test]
fn fail_after_cuts_the_stream() {
    let k = Knobs {
        fail_after: Some(3),
        ..knobs(7)
    };
    for plan in all_plans(&k) {
        assert!(matches!(
            plan.frames.last(),
            Some(Frame::Abort { at_ms: 3_120 })
        ));
    }
}

proptest::proptest! {
    #[test]
    fn any_knobs_give_ordered_parseable_plans(
        seed in proptest::prelude::any::<u64>(),
        think_ms in 0u64..20_000,
        tokens in 0u64..300,
        token_ms in 0u64..50,
        fail_after in proptest::option::of(0u64..400),
        sse_ids in proptest::prelude::any::<bool>(),
    ) {
        let k = Knobs { seed: Some(seed), think_ms: Some(think_ms), tokens: Some(tokens), token_ms: Some(token_ms), fail_after, sse_ids, ..Knobs::default() };
        for plan in all_plans(&k) {
            let times: Vec<u64> = plan.frames.iter().map(Frame::at_ms).collect();
            proptest::prop_assert!(times.windows(2).all(|w| w[0] <= w[1]));
            let aborted = matches!(plan.frames.last(), Some(Frame::Abort { .. }));
            proptest::prop_assert_eq!(aborted, fail_after.is_some_and(|n| n < tokens));
            proptest::prop_assert!(std::str::from_utf8(&plan.body_bytes()).is_ok());
        }
    }
}
