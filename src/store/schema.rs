//! The schema, as an ordered list of migrations; `PRAGMA user_version` is how many have run.
//!
//! **Invariant**: a migration, once released, never changes; a new schema is a new entry at the
//! end. docs/capture.md describes every version.

use super::StoreError;
use rusqlite::{Connection, TransactionBehavior};
use std::path::Path;

/// Migration `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: captures, client timings, feedback.
    "CREATE TABLE captures (
        seq                INTEGER PRIMARY KEY,
        id                 TEXT    NOT NULL,
        attempt            INTEGER NOT NULL,
        started_at_ms      INTEGER NOT NULL,
        route              TEXT    NOT NULL,
        api                TEXT    NOT NULL,
        model              TEXT,
        method             TEXT    NOT NULL,
        path               TEXT    NOT NULL,
        client_status      INTEGER,
        upstream_status    INTEGER,
        streamed           INTEGER NOT NULL,
        tier               TEXT    NOT NULL,
        outcome            TEXT    NOT NULL,
        partial            INTEGER NOT NULL,
        first_feedback_ms  REAL,
        first_token_ms     REAL,
        done_ms            REAL,
        longest_silence_ms REAL,
        overhead_ms        REAL,
        upstream_ms        REAL,
        input_tokens       INTEGER,
        output_tokens      INTEGER,
        reasoning_tokens   INTEGER,
        record             TEXT    NOT NULL,
        UNIQUE (id, attempt)
    );
    CREATE INDEX captures_started_at ON captures (started_at_ms);
    CREATE INDEX captures_route ON captures (route, started_at_ms);
    CREATE INDEX captures_model ON captures (model, started_at_ms);
    CREATE INDEX captures_outcome ON captures (outcome, started_at_ms);
    CREATE TABLE client_timings (
        id      TEXT PRIMARY KEY,
        timings TEXT NOT NULL
    );
    CREATE TABLE feedback (
        id      TEXT PRIMARY KEY,
        score   REAL,
        label   TEXT,
        comment TEXT
    );
    CREATE INDEX feedback_score ON feedback (score);",
    // 2: owners (client-token fingerprints, never tokens) of captures, timings and feedback.
    "ALTER TABLE captures ADD COLUMN owner TEXT;
    ALTER TABLE client_timings ADD COLUMN owner TEXT;
    ALTER TABLE feedback ADD COLUMN owner TEXT;",
    // 3: answer and reasoning deltas become offsets (`end`, bytes into the record's text of
    // their kind) and lose their own text, which redaction could not see whole (a secret split
    // across chunks survived in the pieces). Offsets are the running sums of the old texts'
    // lengths, so replay keeps the pace; readers clamp them to the stored text.
    "UPDATE captures SET record = json_set(record, '$.deltas', (
        SELECT json_group_array(CASE
            WHEN kind IN ('answer', 'reasoning') AND text IS NOT NULL
            THEN json_object('at_ms', at_ms, 'kind', kind, 'end', total)
            ELSE json(value) END)
        FROM (
            SELECT key, value,
                json_extract(value, '$.kind') AS kind,
                json_extract(value, '$.at_ms') AS at_ms,
                json_extract(value, '$.text') AS text,
                SUM(length(CAST(coalesce(json_extract(value, '$.text'), '') AS BLOB)))
                    OVER (PARTITION BY json_extract(value, '$.kind') ORDER BY key) AS total
            FROM json_each(captures.record, '$.deltas')
            ORDER BY key)))
    WHERE EXISTS (
        SELECT 1 FROM json_each(captures.record, '$.deltas')
        WHERE json_extract(value, '$.kind') IN ('answer', 'reasoning')
            AND json_extract(value, '$.text') IS NOT NULL);",
    // 4: timings and feedback are kept per (id, owner), `''` for none: two tokens that used one
    // id each keep their own, joined to their own attempts (keyed by the id alone, the second
    // token's beacon was joined to the first's record, and the first's was then dropped).
    "CREATE TABLE client_timings_by_owner (
        id      TEXT NOT NULL,
        owner   TEXT NOT NULL DEFAULT '',
        timings TEXT NOT NULL,
        PRIMARY KEY (id, owner)
    );
    INSERT INTO client_timings_by_owner (id, owner, timings)
        SELECT id, coalesce(owner, ''), timings FROM client_timings;
    DROP TABLE client_timings;
    ALTER TABLE client_timings_by_owner RENAME TO client_timings;
    CREATE TABLE feedback_by_owner (
        id      TEXT NOT NULL,
        owner   TEXT NOT NULL DEFAULT '',
        score   REAL,
        label   TEXT,
        comment TEXT,
        PRIMARY KEY (id, owner)
    );
    INSERT INTO feedback_by_owner (id, owner, score, label, comment)
        SELECT id, coalesce(owner, ''), score, label, comment FROM feedback;
    DROP TABLE feedback;
    ALTER TABLE feedback_by_owner RENAME TO feedback;
    CREATE INDEX feedback_score ON feedback (score);",
];

/// The schema version this build writes.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database at `path` up to [`VERSION`], one transaction per migration.
pub fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let found = user_version(conn).map_err(|e| StoreError::opening(path, e))?;
    if found > VERSION {
        return Err(StoreError::SchemaTooNew {
            path: path.to_path_buf(),
            found,
            known: VERSION,
        });
    }
    if found < VERSION {
        // Pages a migration frees or rewrites are zeroed, so what it removes leaves the file.
        conn.pragma_update(None, "secure_delete", "ON")
            .map_err(|e| StoreError::opening(path, e))?;
    }
    for (index, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(found).unwrap_or(0))
    {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| StoreError::opening(path, e))?;
        // Another process may have migrated between our read and the lock.
        if user_version(&tx).map_err(|e| StoreError::opening(path, e))? > index as i64 {
            continue;
        }
        tx.execute_batch(sql)
            .and_then(|()| tx.pragma_update(None, "user_version", index as i64 + 1))
            .and_then(|()| tx.commit())
            .map_err(|e| StoreError::opening(path, e))?;
    }
    if found < VERSION {
        // Old page images leave the -wal too: checkpoint into the file and truncate the log.
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(|e| StoreError::opening(path, e))?;
    }
    Ok(())
}

fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |row| row.get(0))
}

#[cfg(test)]
#[path = "schema_tests.rs"]
mod tests;
