//! The link's messages as NOTIFY payloads (pure): interest on one shared channel, everything
//! else on the receiving replica's own channel, events cut into parts that each stay under
//! Postgres's payload limit, and put together again on arrival.
//!
//! A payload is one line of JSON (the header), and for an event a newline and one part of the
//! event's data, as it is (the data is JSON text already; escaping it again would double it).

use crate::config::Owner;
use crate::progress::frames;
use crate::progress::hub::{Outgoing, Published, Replica};
use crate::request_id;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::time::Instant;

/// The channel every replica listens on for interest.
pub const INTEREST: &str = "aloud_interest";

/// Postgres refuses a NOTIFY payload of 8000 bytes or more (its default build).
pub const MAX_PAYLOAD: usize = 7999;

/// Room left for the header: ids are at most 64 characters, replicas 32, owners 32.
const HEADER_ROOM: usize = 512;

/// Most parts one event may come in (about 30 MB); more is refused as garbage.
const MAX_PARTS: u32 = 4096;

/// Events being put together at once; past it the oldest is dropped.
const MAX_PARTIAL: usize = 1024;

/// The channel replica `replica` listens on for messages meant for it alone.
pub fn channel(replica: &str) -> String {
    format!("aloud_to_{replica}")
}

/// What arrived from another replica.
#[derive(Debug, PartialEq, Eq)]
pub enum Inbound {
    Interest {
        from: Replica,
        id: String,
        after: u64,
    },
    Event {
        from: Replica,
        id: String,
        owner: Option<Owner>,
        event: Published,
    },
    Finished {
        from: Replica,
        id: String,
        owner: Option<Owner>,
        last_seq: u64,
    },
    Forget {
        from: Replica,
        id: String,
    },
}

#[derive(Serialize, Deserialize)]
struct InterestMsg<'a> {
    from: &'a str,
    id: &'a str,
    after: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "lowercase")]
enum Header<'a> {
    Ev {
        from: &'a str,
        id: &'a str,
        o: Option<Owner>,
        s: u64,
        n: &'a str,
        hb: bool,
        p: u32,
        of: u32,
    },
    Fin {
        from: &'a str,
        id: &'a str,
        o: Option<Owner>,
        last: u64,
    },
    Forget {
        from: &'a str,
        id: &'a str,
    },
}

/// The (channel, payload) pairs that send `message` from replica `me`.
pub fn encode(me: &str, message: &Outgoing) -> Vec<(String, String)> {
    match message {
        Outgoing::Interest { id, after } => vec![(
            INTEREST.to_owned(),
            json(&InterestMsg {
                from: me,
                id,
                after: *after,
            }),
        )],
        Outgoing::Forget { to, id } => {
            vec![(channel(to), json(&Header::Forget { from: me, id }))]
        }
        Outgoing::Finished {
            to,
            id,
            owner,
            last_seq,
        } => {
            let payload = json(&Header::Fin {
                from: me,
                id,
                o: *owner,
                last: *last_seq,
            });
            to.iter().map(|r| (channel(r), payload.clone())).collect()
        }
        Outgoing::Event {
            to,
            id,
            owner,
            event,
        } => {
            let parts = split(&event.data, MAX_PAYLOAD - HEADER_ROOM);
            let of = u32::try_from(parts.len()).unwrap_or(u32::MAX);
            let mut out = Vec::with_capacity(parts.len() * to.len());
            for (p, part) in (0u32..).zip(&parts) {
                let mut payload = json(&Header::Ev {
                    from: me,
                    id,
                    o: *owner,
                    s: event.seq,
                    n: event.name,
                    hb: event.heartbeat,
                    p,
                    of,
                });
                payload.push('\n');
                payload.push_str(part);
                for r in to {
                    out.push((channel(r), payload.clone()));
                }
            }
            out
        }
    }
}

/// `text` in pieces of at most `max` bytes, cut on character boundaries (at least one piece).
fn split(text: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while rest.len() > max {
        let mut end = max;
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (head, tail) = rest.split_at(end);
        out.push(head);
        rest = tail;
    }
    out.push(rest);
    out
}

/// Headers serialise always (plain strings and numbers); an empty payload would be ignored.
fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// An event whose parts are still arriving.
struct Partial {
    name: &'static str,
    heartbeat: bool,
    owner: Option<Owner>,
    data: String,
    next: u32,
    of: u32,
    born: Instant,
}

/// Puts events together from their parts; parts from one replica arrive in order (one
/// session's notifications are delivered in commit order).
#[derive(Default)]
pub struct Assembler {
    partial: HashMap<(Replica, String, u64), Partial>,
}

impl Assembler {
    /// What `payload` on `channel` says, once whole; `None` for a part, for a message of
    /// this replica (`me`), or for anything malformed.
    pub fn take(&mut self, me: &str, channel: &str, payload: &str) -> Option<Inbound> {
        if channel == INTEREST {
            let m: InterestMsg<'_> = serde_json::from_str(payload).ok()?;
            return (m.from != me && request_id::is_valid(m.id)).then(|| Inbound::Interest {
                from: Arc::from(m.from),
                id: m.id.to_owned(),
                after: m.after,
            });
        }
        let (head, data) = payload.split_once('\n').unwrap_or((payload, ""));
        match serde_json::from_str::<Header<'_>>(head).ok()? {
            Header::Forget { from, id } => Some(Inbound::Forget {
                from: Arc::from(from),
                id: id.to_owned(),
            }),
            Header::Fin { from, id, o, last } => Some(Inbound::Finished {
                from: Arc::from(from),
                id: id.to_owned(),
                owner: o,
                last_seq: last,
            }),
            Header::Ev {
                from,
                id,
                o,
                s,
                n,
                hb,
                p,
                of,
            } => {
                let name = event_name(n)?;
                if !request_id::is_valid(id) || of == 0 || of > MAX_PARTS || p >= of {
                    return None;
                }
                let from: Replica = Arc::from(from);
                let key = (Arc::clone(&from), id.to_owned(), s);
                if p == 0 {
                    self.make_room();
                    self.partial.insert(
                        key.clone(),
                        Partial {
                            name,
                            heartbeat: hb,
                            owner: o,
                            data: String::with_capacity(data.len() * of as usize),
                            next: 0,
                            of,
                            born: Instant::now(),
                        },
                    );
                }
                let partial = self.partial.get_mut(&key)?;
                if partial.next != p || partial.of != of {
                    // A part went missing (the link dropped it): the event is lost whole.
                    self.partial.remove(&key);
                    return None;
                }
                partial.data.push_str(data);
                partial.next += 1;
                if partial.next < partial.of {
                    return None;
                }
                let done = self.partial.remove(&key)?;
                Some(Inbound::Event {
                    from,
                    id: key.1,
                    owner: done.owner,
                    event: Published {
                        seq: s,
                        name: done.name,
                        data: Arc::from(done.data),
                        heartbeat: done.heartbeat,
                    },
                })
            }
        }
    }

    fn make_room(&mut self) {
        if self.partial.len() < MAX_PARTIAL {
            return;
        }
        if let Some(oldest) = self
            .partial
            .iter()
            .min_by_key(|(_, p)| p.born)
            .map(|(k, _)| k.clone())
        {
            self.partial.remove(&oldest);
        }
    }

    /// Forgets every partial event (the session that carried them ended).
    pub fn clear(&mut self) {
        self.partial.clear();
    }
}

/// The static name of a side-channel event, or `None` for one aloud does not send.
fn event_name(name: &str) -> Option<&'static str> {
    [
        frames::PROGRESS,
        frames::DONE,
        frames::RESULT,
        frames::ERROR,
    ]
    .into_iter()
    .find(|n| *n == name)
}

#[cfg(test)]
mod tests;
