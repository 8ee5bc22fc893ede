//! The capture sink aloud runs with: records and beacons go to the batching writer; "is this
//! id known" asks the writer's queue, then the database.

use super::beacon::{ClientTimings, Feedback as BeaconFeedback};
use super::writer::CaptureWriter;
use super::{CaptureRecord, CaptureSink};
use crate::config::{Database, Owner};
use crate::store::{Feedback, Store, open_reader};
use std::sync::Mutex;

pub struct WriterSink {
    writer: CaptureWriter,
    database: Database,
    /// A read-only connection for `known`, opened on first use. With a shared (Postgres)
    /// database it sees what every replica wrote, so a beacon joins its exchange whichever
    /// replica served it.
    lookup: Mutex<Option<Box<dyn Store>>>,
}

impl WriterSink {
    pub fn new(writer: CaptureWriter, database: impl Into<Database>) -> Self {
        WriterSink {
            writer,
            database: database.into(),
            lookup: Mutex::new(None),
        }
    }

    pub fn writer(&self) -> &CaptureWriter {
        &self.writer
    }

    fn stored(&self, id: &str, owner: Option<Owner>) -> bool {
        let mut lookup = self.lookup.lock().unwrap_or_else(|p| p.into_inner());
        if lookup.is_none() {
            match open_reader(&self.database) {
                Ok(s) => *lookup = Some(s),
                Err(e) => {
                    tracing::debug!(error = %e, "capture database not readable for a lookup");
                    return false;
                }
            }
        }
        match lookup.as_ref().map(|s| s.exists_for(id, owner)) {
            Some(Ok(found)) => found,
            Some(Err(e)) => {
                tracing::warn!(error = %e, id, "capture lookup failed");
                *lookup = None;
                false
            }
            None => false,
        }
    }
}

impl CaptureSink for WriterSink {
    fn submit(&self, record: CaptureRecord) {
        self.writer.submit(record);
    }

    fn submit_pending(&self, pending: super::recorder::Pending) {
        self.writer.submit_pending(pending);
    }

    /// May read the database: call it off the async runtime (`spawn_blocking`).
    fn known(&self, id: &str, owner: Option<Owner>) -> bool {
        self.writer.in_queue_for(id, owner) || self.stored(id, owner)
    }

    fn timings(&self, id: &str, owner: Option<Owner>, timings: ClientTimings) {
        match serde_json::to_value(&timings) {
            Ok(v) => self.writer.submit_owned_client_timings(id, owner, v),
            Err(e) => tracing::error!(error = %e, id, "client timings cannot be encoded"),
        }
    }

    fn feedback(&self, id: &str, owner: Option<Owner>, feedback: BeaconFeedback) {
        self.writer.submit_feedback(Feedback {
            id: id.to_owned(),
            score: feedback.score,
            label: feedback.label,
            comment: feedback.comment,
            owner,
        });
    }
}
