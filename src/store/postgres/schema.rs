//! The Postgres schema, as an ordered list of migrations, applied in one transaction under an
//! advisory lock so replicas starting together migrate once; `aloud_schema.version` is how
//! many have run. The tables and columns are SQLite's (docs/capture.md), in Postgres types.
//!
//! **Invariant**: a migration, once released, never changes; a new schema is a new entry at the
//! end. The versions count Postgres's own migrations, not SQLite's.

use super::super::StoreError;
use postgres::error::SqlState;
use postgres::{Client, GenericClient};

/// The advisory lock key migrations take ("aloud" in ASCII, so other users' keys are unlikely
/// to meet it).
const LOCK_KEY: i64 = 0x61_6c6f_7564;

/// Migration `i` takes the schema from version `i` to `i + 1`. Public (hidden) for the tests
/// that build an older schema and migrate it.
#[doc(hidden)]
pub const MIGRATIONS: &[&str] = &[
    // 1: captures, client timings and feedback, with owners; as SQLite's version 3. Rows up to
    // a page stay inline and uncompressed (the default target, 2 KB, would compress every
    // typical record on the writer's critical path; larger ones are still compressed).
    "CREATE TABLE captures (
        seq                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id                 TEXT    NOT NULL,
        attempt            BIGINT  NOT NULL,
        started_at_ms      BIGINT  NOT NULL,
        route              TEXT    NOT NULL,
        api                TEXT    NOT NULL,
        model              TEXT,
        method             TEXT    NOT NULL,
        path               TEXT    NOT NULL,
        client_status      INTEGER,
        upstream_status    INTEGER,
        streamed           BOOLEAN NOT NULL,
        tier               TEXT    NOT NULL,
        outcome            TEXT    NOT NULL,
        partial            BOOLEAN NOT NULL,
        first_feedback_ms  DOUBLE PRECISION,
        first_token_ms     DOUBLE PRECISION,
        done_ms            DOUBLE PRECISION,
        longest_silence_ms DOUBLE PRECISION,
        overhead_ms        DOUBLE PRECISION,
        upstream_ms        DOUBLE PRECISION,
        input_tokens       BIGINT,
        output_tokens      BIGINT,
        reasoning_tokens   BIGINT,
        record             TEXT    NOT NULL,
        owner              TEXT,
        UNIQUE (id, attempt)
    ) WITH (toast_tuple_target = 8160);
    CREATE INDEX captures_started_at ON captures (started_at_ms, seq);
    CREATE INDEX captures_route ON captures (route, started_at_ms);
    CREATE INDEX captures_model ON captures (model, started_at_ms);
    CREATE INDEX captures_outcome ON captures (outcome, started_at_ms);
    CREATE TABLE client_timings (
        id      TEXT PRIMARY KEY,
        timings TEXT NOT NULL,
        owner   TEXT
    );
    CREATE TABLE feedback (
        id      TEXT PRIMARY KEY,
        score   DOUBLE PRECISION,
        label   TEXT,
        comment TEXT,
        owner   TEXT
    );
    CREATE INDEX feedback_score ON feedback (score);",
    // 2: timings and feedback per (id, owner), `''` for none; as SQLite's version 4.
    "UPDATE client_timings SET owner = '' WHERE owner IS NULL;
    ALTER TABLE client_timings ALTER COLUMN owner SET DEFAULT '',
        ALTER COLUMN owner SET NOT NULL,
        DROP CONSTRAINT client_timings_pkey,
        ADD PRIMARY KEY (id, owner);
    UPDATE feedback SET owner = '' WHERE owner IS NULL;
    ALTER TABLE feedback ALTER COLUMN owner SET DEFAULT '',
        ALTER COLUMN owner SET NOT NULL,
        DROP CONSTRAINT feedback_pkey,
        ADD PRIMARY KEY (id, owner);",
];

/// The schema version this build writes.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database up to [`VERSION`]: one transaction that first takes the advisory lock,
/// so a second replica waits, then finds the work done.
pub fn migrate(client: &mut Client, url: &str) -> Result<(), StoreError> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS aloud_schema (version BIGINT NOT NULL);
         INSERT INTO aloud_schema (version)
             SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM aloud_schema);",
    )?;
    let found = version(&mut tx)?.unwrap_or(0);
    if found > VERSION {
        return Err(StoreError::PostgresSchemaTooNew {
            url: url.to_owned(),
            found,
            known: VERSION,
        });
    }
    for sql in MIGRATIONS.iter().skip(usize::try_from(found).unwrap_or(0)) {
        tx.batch_execute(sql)?;
    }
    if found < VERSION {
        tx.execute("UPDATE aloud_schema SET version = $1", &[&VERSION])?;
        tracing::info!(from = found, to = VERSION, "capture database migrated");
    }
    tx.commit()?;
    Ok(())
}

/// For readers: the schema must be there and not newer than this build's.
pub fn check(client: &mut Client, url: &str) -> Result<(), StoreError> {
    match version(client) {
        Ok(Some(found)) if found > VERSION => Err(StoreError::PostgresSchemaTooNew {
            url: url.to_owned(),
            found,
            known: VERSION,
        }),
        Ok(Some(found)) if found > 0 => Ok(()),
        Ok(_) => Err(StoreError::PostgresNoSchema {
            url: url.to_owned(),
        }),
        Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => {
            Err(StoreError::PostgresNoSchema {
                url: url.to_owned(),
            })
        }
        Err(e) => Err(e.into()),
    }
}

fn version(client: &mut impl GenericClient) -> Result<Option<i64>, postgres::Error> {
    Ok(client
        .query_opt("SELECT max(version) FROM aloud_schema", &[])?
        .and_then(|row| row.get::<_, Option<i64>>(0)))
}
