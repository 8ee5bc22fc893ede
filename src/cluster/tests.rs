//! Two hubs joined by an in-memory link (the real encoding, no Postgres): what the protocol
//! does, step by step.

use super::link::deliver;
use super::wire::{self, Assembler};
use crate::config::Owner;
use crate::progress::hub::{HubLimits, Outgoing, Poll, Published, Replica};
use crate::progress::{Hub, frames};
use std::sync::Arc;
use tokio::sync::mpsc::Receiver;

struct Side {
    name: Replica,
    hub: Arc<Hub>,
    queue: Receiver<Outgoing>,
    assembler: Assembler,
    sent: usize,
}

fn side(name: &str) -> Side {
    let hub = Hub::new(HubLimits::default());
    let queue = hub.attach_link(1024).unwrap();
    hub.set_link_up(true);
    Side {
        name: Arc::from(name),
        hub,
        queue,
        assembler: Assembler::default(),
        sent: 0,
    }
}

/// Carries every queued message to the other side until both queues are empty.
fn pump(a: &mut Side, b: &mut Side) {
    loop {
        let mut moved = false;
        while let Ok(m) = a.queue.try_recv() {
            moved = true;
            for (c, p) in wire::encode(&a.name, &m) {
                a.sent += 1;
                if c == wire::INTEREST || c == wire::channel(&b.name) {
                    deliver(&b.hub, &b.name, &mut b.assembler, &c, &p);
                }
            }
        }
        while let Ok(m) = b.queue.try_recv() {
            moved = true;
            for (c, p) in wire::encode(&b.name, &m) {
                b.sent += 1;
                if c == wire::INTEREST || c == wire::channel(&a.name) {
                    deliver(&a.hub, &a.name, &mut a.assembler, &c, &p);
                }
            }
        }
        if !moved {
            return;
        }
    }
}

const ID: &str = "cluster-test-id-000001";

fn progress(seq: u64) -> Published {
    Published {
        seq,
        name: frames::PROGRESS,
        data: Arc::from(format!("{{\"seq\":{seq}}}")),
        heartbeat: false,
    }
}

fn seqs(poll: Poll) -> Vec<u64> {
    match poll {
        Poll::Events(e) => e.iter().map(|e| e.seq).collect(),
        other => panic!("expected events, got {other:?}"),
    }
}

#[test]
fn a_subscriber_that_came_first_elsewhere_gets_every_event_and_the_end() {
    let (mut a, mut b) = (side("aaaa"), side("bbbb"));
    let _rx = b.hub.watch_from(ID, 0);
    pump(&mut a, &mut b);
    let id: Arc<str> = Arc::from(ID);
    let begun = a.hub.begin(&id, None).unwrap();
    assert!(begun.listeners.any(), "B's interest makes A publish");
    for seq in 1..=3 {
        a.hub.publish(ID, progress(seq));
    }
    pump(&mut a, &mut b);
    assert_eq!(seqs(b.hub.poll(ID, 0, None)), [1, 2, 3]);
    assert_eq!(b.hub.poll(ID, 3, None), Poll::Wait);
    a.hub.publish(ID, progress(4));
    a.hub.finish(ID, None);
    pump(&mut a, &mut b);
    assert_eq!(seqs(b.hub.poll(ID, 3, None)), [4]);
    assert_eq!(b.hub.poll(ID, 4, None), Poll::End);
    assert!(
        !begun.listeners.any(),
        "a finished request is forwarded no more"
    );
}

#[test]
fn a_late_subscriber_elsewhere_gets_what_the_owner_holds_from_after() {
    let (mut a, mut b) = (side("aaaa"), side("bbbb"));
    let id: Arc<str> = Arc::from(ID);
    a.hub.begin(&id, None).unwrap();
    for seq in 1..=5 {
        a.hub.publish(ID, progress(seq));
    }
    pump(&mut a, &mut b);
    assert_eq!(a.sent, 0, "nobody asked: nothing is sent");
    let _rx = b.hub.watch_from(ID, 2);
    pump(&mut a, &mut b);
    assert_eq!(seqs(b.hub.poll(ID, 2, None)), [3, 4, 5]);
}

#[test]
fn without_subscribers_elsewhere_a_request_costs_no_message() {
    let (mut a, mut b) = (side("aaaa"), side("bbbb"));
    let id: Arc<str> = Arc::from(ID);
    let begun = a.hub.begin(&id, None).unwrap();
    assert!(!begun.listeners.any());
    a.hub.publish(ID, progress(1));
    a.hub.finish(ID, None);
    pump(&mut a, &mut b);
    assert_eq!((a.sent, b.sent), (0, 0));
}

#[test]
fn another_owners_subscriber_elsewhere_sees_nothing() {
    let (mut a, mut b) = (side("aaaa"), side("bbbb"));
    let mine = Owner::parse("00112233445566778899aabbccddeeff").unwrap();
    let theirs = Owner::parse("ffeeddccbbaa99887766554433221100").unwrap();
    let _rx = b.hub.watch_from(ID, 0);
    pump(&mut a, &mut b);
    let id: Arc<str> = Arc::from(ID);
    a.hub.begin(&id, Some(mine)).unwrap();
    a.hub.publish(ID, progress(1));
    pump(&mut a, &mut b);
    assert_eq!(b.hub.poll(ID, 0, Some(theirs)), Poll::Hidden);
    assert_eq!(seqs(b.hub.poll(ID, 0, Some(mine))), [1]);
}

#[test]
fn when_the_subscriber_elsewhere_leaves_the_owner_stops_sending() {
    let (mut a, mut b) = (side("aaaa"), side("bbbb"));
    let rx = b.hub.watch_from(ID, 0);
    pump(&mut a, &mut b);
    let id: Arc<str> = Arc::from(ID);
    let begun = a.hub.begin(&id, None).unwrap();
    a.hub.publish(ID, progress(1));
    pump(&mut a, &mut b);
    assert!(begun.listeners.any());
    drop(rx);
    a.hub.publish(ID, progress(2));
    pump(&mut a, &mut b);
    assert!(!begun.listeners.any(), "B said forget");
    let sent = a.sent;
    a.hub.publish(ID, progress(3));
    pump(&mut a, &mut b);
    assert_eq!(a.sent, sent);
}

#[test]
fn a_request_that_finished_unwatched_is_answered_with_its_done() {
    let (mut a, mut b) = (side("aaaa"), side("bbbb"));
    let id: Arc<str> = Arc::from(ID);
    a.hub.begin(&id, None).unwrap();
    a.hub.finish(ID, None);
    let _rx = b.hub.watch_from(ID, 0);
    pump(&mut a, &mut b);
    assert_eq!(b.hub.poll(ID, 0, None), Poll::End);
    assert!(!b.hub.awaited(ID));
}

#[test]
fn the_link_counts_what_arrives_from_others_and_not_its_own_echo() {
    let (mut a, mut b) = (side("aaaa"), side("bbbb"));
    let _rx = b.hub.watch_from(ID, 0);
    // B's interest comes back to B too (everyone LISTENs on the interest channel): not counted.
    let Ok(interest) = b.queue.try_recv() else {
        panic!("B asks for the id")
    };
    for (c, p) in wire::encode(&b.name, &interest) {
        deliver(&b.hub, &b.name, &mut b.assembler, &c, &p);
        deliver(&a.hub, &a.name, &mut a.assembler, &c, &p);
    }
    assert_eq!(b.hub.link_state().unwrap().received, 0, "its own echo");
    assert_eq!(a.hub.link_state().unwrap().received, 1, "B's interest");
    let id: Arc<str> = Arc::from(ID);
    a.hub.begin(&id, None).unwrap();
    a.hub.publish(ID, progress(1));
    a.hub.finish(ID, None);
    pump(&mut a, &mut b);
    // The event and the end; what pump carried is what B counted.
    assert_eq!(b.hub.link_state().unwrap().received, 2);
    assert_eq!(a.sent, 2);
}
