//! [`PostgresStore`]: the capture tables in a Postgres database that any number of replicas
//! share. Writes are one transaction per batch: records in one multi-row `INSERT ... SELECT
//! FROM unnest(...)` that skips an `(id, attempt)` already stored, then timings and feedback
//! one upsert each, in order, replaced only by their own owner (SQLite's semantics exactly).
//!
//! Blocking, like every [`Store`]: the `postgres` client runs tokio-postgres on a
//! current-thread runtime of its own, on the calling thread.

pub mod connect;
mod query;
mod rows;
pub mod schema;

use super::{Entry, Feedback, Filter, Records, Store, StoreError, owner_key};
use crate::config::{Owner, PostgresUrl};
use crate::record::CaptureRecord;
use postgres::{Client, Statement};
use rows::Columns;
use serde_json::Value;
use std::cell::{RefCell, RefMut};
use std::time::Duration;

/// How a [`PostgresStore`] connection is used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Access {
    /// The writer: migrates the schema, prepares the write statements.
    #[default]
    ReadWrite,
    /// Exports, stats and lookups: the schema must exist; the session is read-only.
    ReadOnly,
}

/// A [`Store`] on one Postgres connection.
pub struct PostgresStore {
    /// Read methods take `&self`; the client needs `&mut` (a store is used by one thread).
    /// `None` only in `drop`, which hands the client to a closing thread when it must.
    client: RefCell<Option<Client>>,
    writes: Option<Writes>,
    /// The URL with its password masked, for messages.
    url: String,
}

struct Writes {
    records: Statement,
    timings: Statement,
    feedback: Statement,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// No statement of the writer may run longer than this (a stuck database then fails the batch,
/// which is spilled, instead of stalling the writer).
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

impl PostgresStore {
    /// Connects, and for the writer migrates (under the advisory lock) and prepares.
    pub fn open(url: &PostgresUrl, access: Access) -> Result<PostgresStore, StoreError> {
        let mut client = connect::connect(url)?;
        let shown = url.to_string();
        client.batch_execute(&format!(
            "SET statement_timeout = {}",
            STATEMENT_TIMEOUT.as_millis()
        ))?;
        let writes = match access {
            Access::ReadWrite => {
                schema::migrate(&mut client, &shown)?;
                Some(Writes {
                    records: client.prepare(INSERT_RECORDS)?,
                    timings: client.prepare(UPSERT_TIMINGS)?,
                    feedback: client.prepare(UPSERT_FEEDBACK)?,
                })
            }
            Access::ReadOnly => {
                schema::check(&mut client, &shown)?;
                client.batch_execute("SET default_transaction_read_only = on")?;
                None
            }
        };
        Ok(PostgresStore {
            client: RefCell::new(Some(client)),
            writes,
            url: shown,
        })
    }

    /// The URL, password masked.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The connection (borrowed for one call; a store is used by one thread at a time).
    pub(super) fn conn(&self) -> Result<RefMut<'_, Client>, StoreError> {
        RefMut::filter_map(self.client.borrow_mut(), Option::as_mut)
            .map_err(|_| StoreError::PostgresUrl(format!("{}: connection closed", self.url)))
    }

    fn writes(&self) -> Result<&Writes, StoreError> {
        self.writes.as_ref().ok_or_else(|| {
            StoreError::PostgresUrl(format!("{}: opened read-only, cannot write", self.url))
        })
    }

    fn write(&mut self, records: &[&CaptureRecord], rest: &[&Entry]) -> Result<usize, StoreError> {
        let writes = self.writes()?;
        let (insert, timings, feedback) = (
            writes.records.clone(),
            writes.timings.clone(),
            writes.feedback.clone(),
        );
        let mut client = self.conn()?;
        let mut tx = client.transaction()?;
        let mut changed = 0;
        if !records.is_empty() {
            let c = Columns::new(records)?;
            changed += tx.execute(&insert, &c.params())? as usize;
        }
        for entry in rest {
            changed += match entry {
                Entry::Record(_) => 0,
                Entry::ClientTimings(t) => tx.execute(
                    &timings,
                    &[&t.id, &t.timings.to_string(), &owner_key(t.owner)],
                )? as usize,
                Entry::Feedback(f) => tx.execute(
                    &feedback,
                    &[
                        &f.id,
                        &f.score,
                        &f.label.as_deref().map(rows::text),
                        &f.comment.as_deref().map(rows::text),
                        &owner_key(f.owner),
                    ],
                )? as usize,
            };
        }
        tx.commit()?;
        Ok(changed)
    }

    fn one_row<T>(
        &self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
        read: impl FnOnce(&postgres::Row) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let row = self.conn()?.query_opt(sql, params)?;
        row.as_ref().map(read).transpose()
    }
}

impl Drop for PostgresStore {
    /// `postgres::Client` closes its connection by blocking on a runtime of its own, which
    /// panics on a thread that drives an async runtime, where a beacon lookup's store can be
    /// dropped (with the app, at a reload or shutdown). There it closes on a short thread.
    fn drop(&mut self) {
        let Some(client) = self.client.get_mut().take() else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_err() {
            drop(client);
            return;
        }
        // Shared with the thread so that a failed spawn (which drops its closure here) does
        // not drop the client here.
        let slot = std::sync::Arc::new(std::sync::Mutex::new(Some(client)));
        let moved = std::sync::Arc::clone(&slot);
        let closing = std::thread::Builder::new()
            .name("aloud-pg-close".into())
            .spawn(move || drop(moved.lock().map(|mut c| c.take())));
        if let Err(e) = closing {
            if let Some(client) = slot.lock().ok().and_then(|mut c| c.take()) {
                std::mem::forget(client);
            }
            tracing::warn!(error = %e, "capture database connection left to the OS to close");
        }
    }
}

/// The columns of `captures` a record fills, in [`rows::Columns::params`] order.
const INSERT_RECORDS: &str = "INSERT INTO captures (
    id, attempt, started_at_ms, route, api, model, method, path, client_status, upstream_status,
    streamed, tier, outcome, partial, first_feedback_ms, first_token_ms, done_ms,
    longest_silence_ms, overhead_ms, upstream_ms, input_tokens, output_tokens, reasoning_tokens,
    record, owner
) SELECT * FROM unnest(
    $1::text[], $2::int8[], $3::int8[], $4::text[], $5::text[], $6::text[], $7::text[],
    $8::text[], $9::int4[], $10::int4[], $11::bool[], $12::text[], $13::text[], $14::bool[],
    $15::float8[], $16::float8[], $17::float8[], $18::float8[], $19::float8[], $20::float8[],
    $21::int8[], $22::int8[], $23::int8[], $24::text[], $25::text[]
) ON CONFLICT (id, attempt) DO NOTHING";

// Timings and feedback are kept per (id, owner) and replaced only by their own owner: a beacon
// sent with another token (or none) has a row of its own, whichever replica received it.
const UPSERT_TIMINGS: &str = "INSERT INTO client_timings (id, timings, owner) VALUES ($1, $2, $3)
    ON CONFLICT (id, owner) DO UPDATE SET timings = excluded.timings";

const UPSERT_FEEDBACK: &str = "INSERT INTO feedback (id, score, label, comment, owner)
    VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (id, owner) DO UPDATE SET
        score = excluded.score, label = excluded.label, comment = excluded.comment";

/// An owner as stored: its fingerprint's hex digits.
fn owner_text(owner: Option<Owner>) -> Option<String> {
    owner.map(|o| o.to_string())
}

fn json_error(id: &str) -> impl FnOnce(serde_json::Error) -> StoreError + '_ {
    move |source| StoreError::Json {
        id: id.to_owned(),
        source,
    }
}

impl Store for PostgresStore {
    fn insert_batch(&mut self, records: &[CaptureRecord]) -> Result<usize, StoreError> {
        let records: Vec<&CaptureRecord> = records.iter().collect();
        self.write(&records, &[])
    }

    fn write_batch(&mut self, entries: &[Entry]) -> Result<usize, StoreError> {
        let mut records = Vec::new();
        let mut rest = Vec::new();
        for entry in entries {
            match entry {
                Entry::Record(r) => records.push(&**r),
                other => rest.push(other),
            }
        }
        self.write(&records, &rest)
    }

    fn get(&self, id: &str) -> Result<Vec<CaptureRecord>, StoreError> {
        let rows = self.conn()?.query(
            "SELECT record FROM captures WHERE id = $1 ORDER BY attempt",
            &[&id],
        )?;
        rows.iter()
            .map(|row| serde_json::from_str(row.get::<_, &str>(0)).map_err(json_error(id)))
            .collect()
    }

    fn query(&self, filter: &Filter) -> Result<Records<'_>, StoreError> {
        Ok(Box::new(query::PostgresPages::new(self, filter)))
    }

    fn annotations(&self, filter: &Filter) -> Result<Vec<super::Annotation>, StoreError> {
        query::annotations(self, filter)
    }

    fn insert_client_timings(&mut self, id: &str, timings: &Value) -> Result<(), StoreError> {
        self.conn()?.execute(
            UPSERT_TIMINGS,
            &[&id, &timings.to_string(), &owner_key(None)],
        )?;
        Ok(())
    }

    fn insert_feedback(
        &mut self,
        id: &str,
        score: Option<f64>,
        label: Option<String>,
        comment: Option<String>,
    ) -> Result<(), StoreError> {
        self.conn()?.execute(
            UPSERT_FEEDBACK,
            &[
                &id,
                &score,
                &label.as_deref().map(rows::text),
                &comment.as_deref().map(rows::text),
                &owner_key(None),
            ],
        )?;
        Ok(())
    }

    fn client_timings(&self, id: &str, owner: Option<Owner>) -> Result<Option<Value>, StoreError> {
        self.one_row(
            "SELECT timings FROM client_timings WHERE id = $1 AND coalesce(owner, '') = $2",
            &[&id, &owner_key(owner)],
            |row| serde_json::from_str(row.get::<_, &str>(0)).map_err(json_error(id)),
        )
    }

    fn feedback(&self, id: &str, owner: Option<Owner>) -> Result<Option<Feedback>, StoreError> {
        self.one_row(
            "SELECT score, label, comment FROM feedback WHERE id = $1 AND coalesce(owner, '') = $2",
            &[&id, &owner_key(owner)],
            |row| {
                Ok(Feedback {
                    id: id.to_owned(),
                    score: row.get(0),
                    label: row.get(1),
                    comment: row.get(2),
                    owner,
                })
            },
        )
    }

    fn exists(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self
            .one_row(
                "SELECT 1 FROM captures WHERE id = $1 LIMIT 1",
                &[&id],
                |_| Ok(()),
            )?
            .is_some())
    }

    fn last_attempt(&self, id: &str, owner: Option<Owner>) -> Result<Option<u32>, StoreError> {
        let last = self.one_row(
            "SELECT MAX(attempt) FROM captures WHERE id = $1 AND coalesce(owner, '') = $2",
            &[&id, &owner_key(owner)],
            |row| Ok(row.get::<_, Option<i64>>(0)),
        )?;
        Ok(last.flatten().and_then(|a| u32::try_from(a).ok()))
    }

    fn exists_for(&self, id: &str, owner: Option<Owner>) -> Result<bool, StoreError> {
        Ok(self
            .one_row(
                "SELECT 1 FROM captures WHERE id = $1 AND owner IS NOT DISTINCT FROM $2 LIMIT 1",
                &[&id, &owner_text(owner)],
                |_| Ok(()),
            )?
            .is_some())
    }
}
