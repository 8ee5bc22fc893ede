//! [`SqliteStore`]: one SQLite file in WAL mode, `synchronous=NORMAL`, a short busy timeout.

use super::query::{SqlitePages, sqlite_annotations};
use super::{Annotation, Entry, Feedback, Filter, Records, Store, StoreError, owner_key, schema};
use crate::config::Owner;
use crate::record::CaptureRecord;
use rusqlite::{
    Connection, OpenFlags, OptionalExtension, Statement, Transaction, TransactionBehavior, params,
};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How a [`SqliteStore`] connection behaves.
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// How long a statement waits for a lock held by another connection before failing with
    /// [`StoreError::Busy`]. Default 50 ms: short, so a locked database shows up quickly as an
    /// error the writer handles (by spilling) instead of stalling it.
    pub busy_timeout: Duration,
    /// Open without write access (exports and stats); the file must exist and be migrated.
    pub read_only: bool,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            busy_timeout: Duration::from_millis(50),
            read_only: false,
        }
    }
}

/// A [`Store`] on one SQLite database file.
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database at `path` with default options.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        Self::open_with(path, &SqliteOptions::default())
    }

    /// Opens the database at `path`. A file that is not a database, or is damaged, gives
    /// [`StoreError::Corrupt`] naming the path.
    pub fn open_with(
        path: impl AsRef<Path>,
        options: &SqliteOptions,
    ) -> Result<SqliteStore, StoreError> {
        let path = path.as_ref();
        let flags = if options.read_only {
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
        };
        let opening = |e| StoreError::opening(path, e);
        let mut conn = Connection::open_with_flags(path, flags).map_err(opening)?;
        conn.busy_timeout(options.busy_timeout).map_err(opening)?;
        if options.read_only {
            // Reading the schema version touches the header: a garbage file fails here.
            let found: i64 = conn
                .query_row("PRAGMA user_version", [], |row| row.get(0))
                .map_err(opening)?;
            if found > schema::VERSION {
                return Err(StoreError::SchemaTooNew {
                    path: path.to_path_buf(),
                    found,
                    known: schema::VERSION,
                });
            }
            // Version 0: no migration ever ran here (an empty file, or another program's).
            if found == 0 {
                return Err(StoreError::NoSchema {
                    path: path.to_path_buf(),
                });
            }
        } else {
            // The first statement that reads the file: a garbage file fails here.
            let _mode: String = conn
                .query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))
                .map_err(opening)?;
            conn.pragma_update(None, "synchronous", "NORMAL")
                .map_err(opening)?;
            schema::migrate(&mut conn, path)?;
        }
        Ok(SqliteStore {
            conn,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn begin(&mut self) -> Result<Transaction<'_>, StoreError> {
        // IMMEDIATE takes the write lock up front, so a busy database fails at BEGIN rather
        // than half-way through a batch.
        Ok(self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?)
    }
}

const INSERT_RECORD: &str = "INSERT OR IGNORE INTO captures (
    id, attempt, started_at_ms, route, api, model, method, path, client_status, upstream_status,
    streamed, tier, outcome, partial, first_feedback_ms, first_token_ms, done_ms,
    longest_silence_ms, overhead_ms, upstream_ms, input_tokens, output_tokens, reasoning_tokens,
    record, owner
) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19,
    ?20, ?21, ?22, ?23, ?24, ?25)";

// Timings and feedback are kept per (id, owner) and replaced only by their own owner: a beacon
// sent with another token (or none) has a row of its own.
const UPSERT_TIMINGS: &str = "INSERT INTO client_timings (id, timings, owner) VALUES (?1, ?2, ?3)
    ON CONFLICT (id, owner) DO UPDATE SET timings = excluded.timings";

const UPSERT_FEEDBACK: &str = "INSERT INTO feedback (id, score, label, comment, owner)
    VALUES (?1, ?2, ?3, ?4, ?5)
    ON CONFLICT (id, owner) DO UPDATE SET
        score = excluded.score, label = excluded.label, comment = excluded.comment";

/// An owner as stored: its fingerprint's hex digits.
fn owner_text(owner: Option<Owner>) -> Option<String> {
    owner.map(|o| o.to_string())
}

/// Token counts as SQLite integers (counts beyond `i64::MAX` are stored as `NULL`).
fn count(value: Option<u64>) -> Option<i64> {
    value.and_then(|v| i64::try_from(v).ok())
}

/// JSON bound as TEXT straight from its bytes: `record::json` writes it from `&str`s, ASCII and
/// serde_json's output, so it is UTF-8 already and is not checked again on every insert.
struct JsonText<'a>(&'a [u8]);

impl rusqlite::ToSql for JsonText<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(rusqlite::types::ToSqlOutput::Borrowed(
            rusqlite::types::ValueRef::Text(self.0),
        ))
    }
}

/// Runs the prepared [`INSERT_RECORD`] for one record; returns 1 if it was new, 0 if stored.
/// `json` is a buffer the batch reuses.
fn insert_record(
    statement: &mut Statement<'_>,
    record: &CaptureRecord,
    json: &mut Vec<u8>,
) -> Result<usize, StoreError> {
    json.clear();
    crate::record::json::write(json, record).map_err(|source| StoreError::Json {
        id: record.id.clone(),
        source,
    })?;
    let t = &record.timings;
    let usage = record.usage.unwrap_or_default();
    Ok(statement.execute(params![
        record.id,
        record.attempt,
        record.started_at_ms,
        record.route,
        record.api,
        record.model,
        record.method,
        record.path,
        record.client_status,
        record.upstream_status,
        record.streamed,
        record.tier,
        record.outcome.as_str(),
        record.partial,
        t.first_feedback_ms,
        t.first_token_ms,
        t.done_ms,
        t.longest_silence_ms,
        t.overhead_ms,
        t.upstream_ms,
        count(usage.input),
        count(usage.output),
        count(usage.reasoning),
        JsonText(json),
        owner_text(record.owner),
    ])?)
}

impl Store for SqliteStore {
    fn insert_batch(&mut self, records: &[CaptureRecord]) -> Result<usize, StoreError> {
        let tx = self.begin()?;
        let mut added = 0;
        {
            let mut statement = tx.prepare(INSERT_RECORD)?;
            let mut json = Vec::new();
            for record in records {
                added += insert_record(&mut statement, record, &mut json)?;
            }
        }
        tx.commit()?;
        Ok(added)
    }

    fn write_batch(&mut self, entries: &[Entry]) -> Result<usize, StoreError> {
        let tx = self.begin()?;
        let mut changed = 0;
        {
            let mut records = tx.prepare(INSERT_RECORD)?;
            let mut timings = tx.prepare(UPSERT_TIMINGS)?;
            let mut feedback = tx.prepare(UPSERT_FEEDBACK)?;
            let mut json = Vec::new();
            for entry in entries {
                changed += match entry {
                    Entry::Record(record) => insert_record(&mut records, record, &mut json)?,
                    Entry::ClientTimings(t) => {
                        timings.execute(params![t.id, t.timings.to_string(), owner_key(t.owner)])?
                    }
                    Entry::Feedback(f) => feedback.execute(params![
                        f.id,
                        f.score,
                        f.label,
                        f.comment,
                        owner_key(f.owner)
                    ])?,
                };
            }
        }
        tx.commit()?;
        Ok(changed)
    }

    fn get(&self, id: &str) -> Result<Vec<CaptureRecord>, StoreError> {
        let mut statement = self
            .conn
            .prepare("SELECT record FROM captures WHERE id = ?1 ORDER BY attempt")?;
        let mut rows = statement.query([id])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let json: String = row.get(0)?;
            out.push(
                serde_json::from_str(&json).map_err(|source| StoreError::Json {
                    id: id.to_string(),
                    source,
                })?,
            );
        }
        Ok(out)
    }

    fn query(&self, filter: &Filter) -> Result<Records<'_>, StoreError> {
        Ok(Box::new(SqlitePages::new(&self.conn, filter)))
    }

    fn annotations(&self, filter: &Filter) -> Result<Vec<Annotation>, StoreError> {
        sqlite_annotations(&self.conn, filter)
    }

    fn insert_client_timings(&mut self, id: &str, timings: &Value) -> Result<(), StoreError> {
        self.conn.execute(
            UPSERT_TIMINGS,
            params![id, timings.to_string(), owner_key(None)],
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
        self.conn.execute(
            UPSERT_FEEDBACK,
            params![id, score, label, comment, owner_key(None)],
        )?;
        Ok(())
    }

    fn client_timings(&self, id: &str, owner: Option<Owner>) -> Result<Option<Value>, StoreError> {
        let text: Option<String> = self
            .conn
            .query_row(
                "SELECT timings FROM client_timings WHERE id = ?1 AND coalesce(owner, '') = ?2",
                params![id, owner_key(owner)],
                |row| row.get(0),
            )
            .optional()?;
        text.map(|t| {
            serde_json::from_str(&t).map_err(|source| StoreError::Json {
                id: id.to_string(),
                source,
            })
        })
        .transpose()
    }

    fn feedback(&self, id: &str, owner: Option<Owner>) -> Result<Option<Feedback>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT score, label, comment FROM feedback WHERE id = ?1 AND coalesce(owner, '') = ?2",
                params![id, owner_key(owner)],
                |row| {
                    Ok(Feedback {
                        id: id.to_string(),
                        score: row.get(0)?,
                        label: row.get(1)?,
                        comment: row.get(2)?,
                        owner,
                    })
                },
            )
            .optional()?)
    }

    fn exists(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT 1 FROM captures WHERE id = ?1 LIMIT 1", [id], |_| {
                Ok(())
            })
            .optional()?
            .is_some())
    }

    fn last_attempt(&self, id: &str, owner: Option<Owner>) -> Result<Option<u32>, StoreError> {
        let last: Option<i64> = self.conn.query_row(
            "SELECT MAX(attempt) FROM captures WHERE id = ?1 AND coalesce(owner, '') = ?2",
            params![id, owner_key(owner)],
            |row| row.get(0),
        )?;
        Ok(last.and_then(|a| u32::try_from(a).ok()))
    }

    fn exists_for(&self, id: &str, owner: Option<Owner>) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM captures WHERE id = ?1 AND owner IS ?2 LIMIT 1",
                params![id, owner_text(owner)],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }
}
