//! What a store write carries: a capture record, a client's timings beacon or feedback.
//!
//! These are also the lines of the writer's spill files, so their serde form is an on-disk
//! format: add fields only with `#[serde(default)]`.

use crate::config::Owner;
use crate::record::CaptureRecord;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The timings a client reported for one request id (shape chosen by the client library).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientTimings {
    pub id: String,
    pub timings: Value,
    /// The fingerprint of the token that sent them; only the same owner may replace them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
}

/// A score, label and/or comment given for one request id.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Feedback {
    pub id: String,
    #[serde(default)]
    pub score: Option<f64>,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub comment: Option<String>,
    /// The fingerprint of the token that gave it; only the same owner may replace it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
}

/// One write for the store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "data", rename_all = "snake_case")]
pub enum Entry {
    Record(Box<CaptureRecord>),
    ClientTimings(ClientTimings),
    Feedback(Feedback),
}

impl Entry {
    /// The request id this entry belongs to.
    pub fn id(&self) -> &str {
        match self {
            Entry::Record(r) => &r.id,
            Entry::ClientTimings(t) => &t.id,
            Entry::Feedback(f) => &f.id,
        }
    }
}
