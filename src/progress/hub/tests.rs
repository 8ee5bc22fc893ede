//! The hub's rules on a paused clock: replay, retention, awaiting, owners.

use super::*;

fn seqs(b: Begun) -> (u64, u32) {
    (b.last_seq, b.attempt)
}

fn ev(seq: u64) -> Published {
    Published {
        seq,
        name: "aloud.progress",
        data: Arc::from("{}"),
        heartbeat: false,
    }
}

#[tokio::test(start_paused = true)]
async fn replays_after_a_seq_and_ends_after_finish() {
    let hub = Hub::new(HubLimits::default());
    let id: Arc<str> = Arc::from("abcdefghijklmnop");
    assert_eq!(seqs(hub.begin(&id, None).unwrap()), (0, 1));
    hub.publish(&id, ev(1));
    hub.publish(&id, ev(2));
    assert_eq!(hub.poll(&id, 1, None), Poll::Events(vec![ev(2)]));
    assert_eq!(hub.poll(&id, 2, None), Poll::Wait);
    assert!(hub.begin(&id, None).is_err(), "in flight: 409");
    hub.finish(&id, None);
    assert_eq!(hub.poll(&id, 2, None), Poll::End);
    assert!(hub.nothing_left(&id, 2, None));
    assert!(!hub.nothing_left(&id, 1, None));
    // A retry continues the sequence.
    assert_eq!(seqs(hub.begin(&id, None).unwrap()), (2, 2));
}

#[tokio::test(start_paused = true)]
async fn a_run_of_heartbeats_keeps_only_the_latest() {
    let hub = Hub::new(HubLimits::default());
    let id: Arc<str> = Arc::from("abcdefghijklmnop");
    hub.begin(&id, None).unwrap();
    hub.publish(&id, ev(1));
    for seq in 2..=30 {
        hub.publish(
            &id,
            Published {
                heartbeat: true,
                ..ev(seq)
            },
        );
    }
    hub.publish(&id, ev(31));
    let Poll::Events(kept) = hub.poll(&id, 0, None) else {
        panic!("no events")
    };
    assert_eq!(kept.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 30, 31]);
}

#[tokio::test(start_paused = true)]
async fn an_awaited_request_that_never_comes_ends_with_an_error() {
    let hub = Hub::new(HubLimits::default());
    let rx = hub.watch("abcdefghijklmnop");
    assert_eq!(hub.poll("abcdefghijklmnop", 0, None), Poll::Wait);
    tokio::time::advance(Duration::from_secs(30)).await;
    assert_eq!(hub.poll("abcdefghijklmnop", 0, None), Poll::NeverArrived);
    drop(rx);
}

#[tokio::test(start_paused = true)]
async fn finished_requests_expire_and_the_count_is_bounded() {
    let limits = HubLimits {
        max_requests: 3,
        ..HubLimits::default()
    };
    let hub = Hub::new(limits);
    for i in 0..5 {
        let id: Arc<str> = Arc::from(format!("request-id-{i:06}"));
        hub.begin(&id, None).unwrap();
        hub.publish(&id, ev(1));
        hub.finish(&id, None);
        tokio::time::advance(Duration::from_millis(1)).await;
    }
    hub.watch("request-id-999999");
    assert!(hub.len() <= 4);
    tokio::time::advance(Duration::from_secs(301)).await;
    drop(hub.watch("another-id-00000001"));
    assert!(hub.len() <= 2);
}

fn owner(token: &str) -> Option<crate::config::Owner> {
    crate::config::tokens::find(token, &[token.to_owned()])
}

#[tokio::test(start_paused = true)]
async fn another_owner_sees_the_id_as_unknown() {
    let hub = Hub::new(HubLimits::default());
    let id: Arc<str> = Arc::from("abcdefghijklmnop");
    let (a, b) = (owner("token-a-0000"), owner("token-b-0000"));
    // B subscribes first; A's request arrives: B still sees nothing.
    let _rx = hub.watch(&id);
    assert_eq!(seqs(hub.begin(&id, a).unwrap()), (0, 1));
    hub.publish(&id, ev(1));
    assert_eq!(hub.poll(&id, 0, b), Poll::Hidden);
    assert_eq!(hub.poll(&id, 0, None), Poll::Hidden);
    assert_eq!(hub.poll(&id, 0, a), Poll::Events(vec![ev(1)]));
    assert!(hub.knows(&id, a) && !hub.knows(&id, b));
    hub.finish(&id, None);
    assert!(
        hub.nothing_left(&id, 0, b),
        "a reconnect of B: as if unknown"
    );
    assert!(!hub.nothing_left(&id, 0, a));
    // B reuses the id: A's events are not replayed to B, nor its sequence numbers.
    assert_eq!(seqs(hub.begin(&id, b).unwrap()), (0, 2));
    assert_eq!(hub.poll(&id, 0, b), Poll::Wait);
    assert_eq!(hub.poll(&id, 0, a), Poll::Hidden);
}

#[tokio::test(start_paused = true)]
async fn an_unwatched_attempt_keeps_only_its_final_event_unserialised_until_asked() {
    use crate::apis::stream::Phase;
    use crate::progress::{Ladder, Watcher};
    let hub = Hub::new(HubLimits::default());
    let id: Arc<str> = Arc::from("abcdefghijklmnop");
    let begun = hub.begin(&id, None).unwrap();
    assert!(!begun.listeners.any());
    let mut w = Watcher::new(
        Arc::clone(&id),
        Instant::now(),
        begun.last_seq,
        Arc::clone(&hub),
        Arc::new(Ladder::default()),
        begun.listeners,
        false,
    );
    assert_eq!(w.emit(), None, "nobody sees it: nothing is serialised");
    assert!(
        w.emit_heartbeat(true).is_some(),
        "a comment needs its bytes"
    );
    // A subscriber arrives: from now on events are published.
    let rx = hub.watch(&id);
    assert!(w.emit().is_some());
    drop(rx);
    assert!(
        w.finish(Phase::Done).is_empty(),
        "no one to send aloud.done to"
    );
    let Poll::Events(kept) = hub.poll(&id, 0, None) else {
        panic!("the final event is kept")
    };
    let last = kept.last().unwrap();
    assert_eq!(last.name, "aloud.done");
    assert!(last.data.contains("\"phase\":\"done\""), "{}", last.data);
    // A retry continues after it.
    assert_eq!(seqs(hub.begin(&id, None).unwrap()), (last.seq, 2));
}
