//! The side channel across replicas: replicas that share one Postgres tell each other, over
//! LISTEN/NOTIFY, which requests their subscribers wait for, and the replica that serves such a
//! request sends its events to them. The hub (`progress::hub`) decides what to send; this module
//! carries it (`link`) in payloads Postgres accepts (`wire`).
//!
//! **Invariant:** publish only what someone asked for. A replica sends a request's events only
//! after another replica announced a subscriber for that id, and only to that replica; without
//! remote subscribers no NOTIFY is sent and no request does any cluster work.

mod link;
pub mod wire;

pub use link::run;

#[cfg(test)]
mod tests;
