//! A real SQLite store that runs a hook before every batch write: the writer tests use it to
//! stall the writer thread at a gate, or to let its writes through one at a time.
#![allow(dead_code)]

use aloud::capture::CaptureRecord;
use aloud::config::Owner;
use aloud::store::{Feedback, Filter, Records, SqliteStore, Store, StoreError};
use serde_json::Value;

pub struct Hooked<H> {
    pub inner: SqliteStore,
    /// Runs before `insert_batch` and `write_batch`, on the writer's thread.
    pub before_write: H,
}

impl<H: Fn() + Send + 'static> Store for Hooked<H> {
    fn insert_batch(&mut self, records: &[CaptureRecord]) -> Result<usize, StoreError> {
        (self.before_write)();
        self.inner.insert_batch(records)
    }
    fn write_batch(&mut self, entries: &[aloud::store::Entry]) -> Result<usize, StoreError> {
        (self.before_write)();
        self.inner.write_batch(entries)
    }
    fn get(&self, id: &str) -> Result<Vec<CaptureRecord>, StoreError> {
        self.inner.get(id)
    }
    fn query(&self, filter: &Filter) -> Result<Records<'_>, StoreError> {
        self.inner.query(filter)
    }
    fn insert_client_timings(&mut self, id: &str, timings: &Value) -> Result<(), StoreError> {
        self.inner.insert_client_timings(id, timings)
    }
    fn insert_feedback(
        &mut self,
        id: &str,
        score: Option<f64>,
        label: Option<String>,
        comment: Option<String>,
    ) -> Result<(), StoreError> {
        self.inner.insert_feedback(id, score, label, comment)
    }
    fn client_timings(&self, id: &str, owner: Option<Owner>) -> Result<Option<Value>, StoreError> {
        self.inner.client_timings(id, owner)
    }
    fn feedback(&self, id: &str, owner: Option<Owner>) -> Result<Option<Feedback>, StoreError> {
        self.inner.feedback(id, owner)
    }
    fn exists(&self, id: &str) -> Result<bool, StoreError> {
        self.inner.exists(id)
    }
    fn exists_for(&self, id: &str, owner: Option<Owner>) -> Result<bool, StoreError> {
        self.inner.exists_for(id, owner)
    }
}
