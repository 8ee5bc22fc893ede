//! Progress while the model thinks: the state machine, label ladders, the side-channel hub and
//! endpoint, and the bytes aloud adds to a response.
//!
//! `state`, `ladder`, `frames` and `eta` (the ETA estimator; its history is shared state) are
//! pure; `hub` holds shared state without I/O (`live`: what a dashboard shows of requests in
//! flight); `watcher` adds the heartbeat timer; `side_channel` is the HTTP edge of the hub.

pub mod eta;
pub mod frames;
pub mod hub;
pub mod keep;
pub mod ladder;
pub mod live;
pub mod side_channel;
pub mod state;
pub mod watcher;

pub use hub::Hub;
pub use ladder::Ladder;
pub use watcher::Watcher;
