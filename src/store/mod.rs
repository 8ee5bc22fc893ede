//! Capture storage: the only code in aloud that knows SQL.
//!
//! [`Store`] is a synchronous API, called from the capture writer's blocking thread (and from
//! readers that run under `spawn_blocking`). [`SqliteStore`] implements it on one SQLite file in
//! WAL mode (schema and migrations in `schema.rs`); [`PostgresStore`] on a Postgres database
//! shared by replicas (`postgres/`: connecting with TLS per `sslmode`, its own migrations under
//! an advisory lock, batched writes). [`open_writer`] and [`open_reader`] open the configured
//! [`Database`](crate::config::Database) as either. docs/capture.md describes both schemas.
//!
//! **Invariant**: a record is stored at most once per `(id, attempt)`, so writing the same batch
//! twice (a replayed spill segment, a retry after a crash) changes nothing.

mod entry;
mod error;
mod open;
pub mod postgres;
mod query;
mod schema;
mod sqlite;

pub use entry::{ClientTimings, Entry, Feedback};
pub use error::{StoreError, StoreErrorKind};
pub use open::{open_reader, open_writer};
pub use postgres::PostgresStore;
pub use query::{Annotation, Filter};
pub use sqlite::{SqliteOptions, SqliteStore};

use crate::config::Owner;
use crate::record::CaptureRecord;
use serde_json::Value;

/// An owner as the beacon tables key it (both stores): its fingerprint's digits, or `''` for
/// none, since a key column cannot be NULL.
pub(crate) fn owner_key(owner: Option<Owner>) -> String {
    owner.map(|o| o.to_string()).unwrap_or_default()
}

/// Rows from [`Store::query`], read lazily page by page.
pub type Records<'a> = Box<dyn Iterator<Item = Result<CaptureRecord, StoreError>> + 'a>;

/// Where capture records, client timings and feedback are kept.
///
/// Every method is blocking: call it from a dedicated thread or `spawn_blocking`, never on the
/// runtime.
pub trait Store: Send + 'static {
    /// Stores `records` in one transaction and returns how many were new; a record whose
    /// `(id, attempt)` is already stored is left as it is.
    fn insert_batch(&mut self, records: &[CaptureRecord]) -> Result<usize, StoreError>;

    /// Stores a mixed batch (records, client timings, feedback) in one transaction and returns
    /// how many rows changed. Records are idempotent as in [`Store::insert_batch`]; timings and
    /// feedback replace what an id had before.
    fn write_batch(&mut self, entries: &[Entry]) -> Result<usize, StoreError>;

    /// Every attempt stored for `id`, in attempt order (empty when none).
    fn get(&self, id: &str) -> Result<Vec<CaptureRecord>, StoreError>;

    /// Records matching `filter`, oldest first (by `started_at_ms`), streamed a page at a time.
    fn query(&self, filter: &Filter) -> Result<Records<'_>, StoreError>;

    /// Stores (or replaces) what the client reported about its own timings for `id`.
    fn insert_client_timings(&mut self, id: &str, timings: &Value) -> Result<(), StoreError>;

    /// Stores (or replaces) the feedback given for `id`, with no owner.
    fn insert_feedback(
        &mut self,
        id: &str,
        score: Option<f64>,
        label: Option<String>,
        comment: Option<String>,
    ) -> Result<(), StoreError>;

    /// The client timings `owner` (`None`: without a token) sent for `id`.
    fn client_timings(&self, id: &str, owner: Option<Owner>) -> Result<Option<Value>, StoreError>;

    /// The feedback `owner` (`None`: without a token) gave for `id`.
    fn feedback(&self, id: &str, owner: Option<Owner>) -> Result<Option<Feedback>, StoreError>;

    /// The last stored attempt of `id` made by `owner` (`None`: none stored). Beacons speak of
    /// it alone.
    fn last_attempt(&self, id: &str, owner: Option<Owner>) -> Result<Option<u32>, StoreError> {
        Ok(self
            .get(id)?
            .iter()
            .filter(|r| r.owner == owner)
            .map(|r| r.attempt)
            .max())
    }

    /// Whether any attempt of `id` is stored.
    fn exists(&self, id: &str) -> Result<bool, StoreError>;

    /// Whether an attempt of `id` made by `owner` is stored (`None`: made without a token).
    fn exists_for(&self, id: &str, owner: Option<Owner>) -> Result<bool, StoreError>;

    /// The client timings and feedback of the records `filter` selects (its `limit` aside):
    /// one [`Annotation`] per id that has either, in no particular order. The stores answer
    /// with one query; this default asks per record.
    fn annotations(&self, filter: &Filter) -> Result<Vec<Annotation>, StoreError> {
        // Each (id, owner) once, with its last attempt in the window.
        let mut last: std::collections::HashMap<(String, Option<Owner>), u32> =
            std::collections::HashMap::new();
        let unlimited = Filter {
            limit: None,
            ..filter.clone()
        };
        for record in self.query(&unlimited)? {
            let record = record?;
            let at = last.entry((record.id, record.owner)).or_default();
            *at = (*at).max(record.attempt);
        }
        let mut out = Vec::new();
        for ((id, owner), attempt) in last {
            let timings = self.client_timings(&id, owner)?;
            let feedback = self.feedback(&id, owner)?;
            if timings.is_some() || feedback.is_some() {
                let (score, label) = feedback.map_or((None, None), |f| (f.score, f.label));
                out.push(Annotation {
                    id,
                    owner,
                    client_timings: timings,
                    feedback_score: score,
                    feedback_label: label,
                    last_attempt: Some(i64::from(attempt)),
                });
            }
        }
        Ok(out)
    }
}
