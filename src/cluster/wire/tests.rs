//! Tests of the cluster's wire format.

use super::*;
use crate::progress::hub::Outgoing;

fn event(seq: u64, data: &str) -> Published {
    Published {
        seq,
        name: frames::RESULT,
        data: Arc::from(data),
        heartbeat: false,
    }
}

fn owner() -> Owner {
    Owner::parse("00112233445566778899aabbccddeeff").unwrap()
}

const ID: &str = "request-id-0000000001";

#[test]
fn interest_goes_to_everyone_and_a_replica_ignores_its_own() {
    let out = encode(
        "aaaa",
        &Outgoing::Interest {
            id: Arc::from(ID),
            after: 7,
        },
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, INTEREST);
    let mut a = Assembler::default();
    assert_eq!(a.take("aaaa", &out[0].0, &out[0].1), None);
    assert_eq!(
        a.take("bbbb", &out[0].0, &out[0].1),
        Some(Inbound::Interest {
            from: Arc::from("aaaa"),
            id: ID.to_owned(),
            after: 7
        })
    );
}

#[test]
fn a_large_event_is_cut_under_the_limit_and_put_together_whole() {
    // Multi-byte characters straddle the cuts; quotes and backslashes are sent as they are.
    let data: String = (0..40_000)
        .map(|i| ['a', 'é', '"', '\\', '𝄞'][i % 5])
        .collect();
    let out = encode(
        "aaaa",
        &Outgoing::Event {
            to: vec![Arc::from("bbbb"), Arc::from("cccc")],
            id: Arc::from(ID),
            owner: Some(owner()),
            event: event(3, &data),
        },
    );
    // 72,000 bytes: ten parts for each of the two replicas.
    assert_eq!(out.len(), 20, "{} payloads", out.len());
    assert!(out.iter().all(|(_, p)| p.len() <= MAX_PAYLOAD));
    let mut a = Assembler::default();
    let mut whole = Vec::new();
    for (c, p) in out.iter().filter(|(c, _)| *c == channel("bbbb")) {
        whole.extend(a.take("bbbb", c, p));
    }
    assert_eq!(
        whole,
        vec![Inbound::Event {
            from: Arc::from("aaaa"),
            id: ID.to_owned(),
            owner: Some(owner()),
            event: event(3, &data),
        }]
    );
}

#[test]
fn an_event_missing_a_part_is_dropped_not_garbled() {
    let data = "x".repeat(20_000);
    let out = encode(
        "aaaa",
        &Outgoing::Event {
            to: vec![Arc::from("bbbb")],
            id: Arc::from(ID),
            owner: None,
            event: event(1, &data),
        },
    );
    assert!(out.len() >= 3);
    let mut a = Assembler::default();
    let got: Vec<_> = out
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .filter_map(|(_, (c, p))| a.take("bbbb", c, p))
        .collect();
    assert!(got.is_empty(), "{got:?}");
}

#[test]
fn finished_and_forget_round_trip() {
    let mut a = Assembler::default();
    let fin = encode(
        "aaaa",
        &Outgoing::Finished {
            to: vec![Arc::from("bbbb")],
            id: Arc::from(ID),
            owner: None,
            last_seq: 9,
        },
    );
    assert_eq!(
        a.take("bbbb", &fin[0].0, &fin[0].1),
        Some(Inbound::Finished {
            from: Arc::from("aaaa"),
            id: ID.to_owned(),
            owner: None,
            last_seq: 9
        })
    );
    let forget = encode(
        "bbbb",
        &Outgoing::Forget {
            to: Arc::from("aaaa"),
            id: Arc::from(ID),
        },
    );
    assert_eq!(forget[0].0, channel("aaaa"));
    assert_eq!(
        a.take("aaaa", &forget[0].0, &forget[0].1),
        Some(Inbound::Forget {
            from: Arc::from("bbbb"),
            id: ID.to_owned()
        })
    );
}

#[test]
fn garbage_and_unknown_event_names_are_ignored() {
    let mut a = Assembler::default();
    assert_eq!(a.take("bbbb", &channel("bbbb"), "not json"), None);
    assert_eq!(a.take("bbbb", INTEREST, "{\"from\":\"a\"}"), None);
    let bad = format!(
        "{{\"k\":\"ev\",\"from\":\"a\",\"id\":\"{ID}\",\"o\":null,\"s\":1,\"n\":\"evil\",\"hb\":false,\"p\":0,\"of\":1}}\n{{}}"
    );
    assert_eq!(a.take("bbbb", &channel("bbbb"), &bad), None);
}
