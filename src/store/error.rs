//! The store's error: what failed, classified so the writer knows whether waiting may help.

use std::path::PathBuf;
use thiserror::Error;

/// The broad kind of a store failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// Another connection holds the lock; retrying later will likely work.
    Busy,
    /// The file is not a SQLite database, or its pages are damaged.
    Corrupt,
    /// The disk (or the file system's quota) is full.
    DiskFull,
    /// The file could not be opened or read (missing directory, permissions, I/O error).
    Io,
    /// The database was written by a newer aloud with a schema this build does not know.
    SchemaTooNew,
    /// A stored record could not be encoded or decoded.
    Json,
    /// The database cannot be reached (refused, reset, timed out): reconnecting later may work.
    Unreachable,
    /// The settings are wrong (a bad URL, an unreadable `sslrootcert`): waiting will not help.
    Config,
    /// Anything else the database reported.
    Other,
}

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("capture database {path}: cannot open: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("capture database {path} is not a SQLite database or is corrupt: {source}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "capture database {path} has schema version {found}, newer than this build's {known}; \
         upgrade aloud or point it at another file"
    )]
    SchemaTooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error(
        "capture database {path} has no capture tables yet (an empty file, or not aloud's; \
         run `aloud serve` with it first)"
    )]
    NoSchema { path: PathBuf },
    #[error("capture database is busy (locked by another connection): {0}")]
    Busy(#[source] rusqlite::Error),
    #[error("capture database: disk full: {0}")]
    DiskFull(#[source] rusqlite::Error),
    #[error("capture database: {0}")]
    Sqlite(#[source] rusqlite::Error),
    #[error("capture database {url}: cannot connect: {source}")]
    PostgresConnect {
        /// The URL with its password masked.
        url: String,
        #[source]
        source: postgres::Error,
    },
    #[error("capture database: {0}")]
    Postgres(#[source] postgres::Error),
    #[error("capture database URL {0}")]
    PostgresUrl(String),
    #[error(
        "capture database {url} has schema version {found}, newer than this build's {known}; \
         upgrade aloud or point it at another database"
    )]
    PostgresSchemaTooNew { url: String, found: i64, known: i64 },
    #[error("capture database {url} has no capture tables yet (run `aloud serve` with it first)")]
    PostgresNoSchema { url: String },
    #[error("capture record {id}: bad JSON: {source}")]
    Json {
        id: String,
        #[source]
        source: serde_json::Error,
    },
}

impl StoreError {
    pub fn kind(&self) -> StoreErrorKind {
        match self {
            StoreError::Open { .. } => StoreErrorKind::Io,
            StoreError::Corrupt { .. } => StoreErrorKind::Corrupt,
            StoreError::SchemaTooNew { .. } => StoreErrorKind::SchemaTooNew,
            StoreError::Busy(_) => StoreErrorKind::Busy,
            StoreError::DiskFull(_) => StoreErrorKind::DiskFull,
            StoreError::Json { .. } => StoreErrorKind::Json,
            StoreError::PostgresConnect { .. } => StoreErrorKind::Unreachable,
            StoreError::Postgres(e) => classify_postgres(e),
            StoreError::PostgresUrl(_) => StoreErrorKind::Config,
            StoreError::PostgresSchemaTooNew { .. } => StoreErrorKind::SchemaTooNew,
            StoreError::PostgresNoSchema { .. } | StoreError::NoSchema { .. } => StoreErrorKind::Io,
            StoreError::Sqlite(e) => match classify(e) {
                StoreErrorKind::Other => StoreErrorKind::Other,
                kind => kind,
            },
        }
    }

    /// A lock held elsewhere: the connection is fine, only the moment is wrong.
    pub fn is_busy(&self) -> bool {
        self.kind() == StoreErrorKind::Busy
    }

    /// Wraps an error from an operation on an open database.
    pub(crate) fn from_sqlite(e: rusqlite::Error) -> StoreError {
        match classify(&e) {
            StoreErrorKind::Busy => StoreError::Busy(e),
            StoreErrorKind::DiskFull => StoreError::DiskFull(e),
            _ => StoreError::Sqlite(e),
        }
    }

    /// Wraps an error met while opening or migrating the file at `path`.
    pub(crate) fn opening(path: &std::path::Path, e: rusqlite::Error) -> StoreError {
        let path = path.to_path_buf();
        match classify(&e) {
            StoreErrorKind::Corrupt => StoreError::Corrupt { path, source: e },
            StoreErrorKind::Busy => StoreError::Busy(e),
            StoreErrorKind::DiskFull => StoreError::DiskFull(e),
            _ => StoreError::Open { path, source: e },
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::from_sqlite(e)
    }
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        StoreError::Postgres(e)
    }
}

/// By SQLSTATE: lock and serialization conflicts are busy (the connection is fine), a full disk
/// is one; an error without a state is the connection's (closed, reset, timed out).
fn classify_postgres(e: &postgres::Error) -> StoreErrorKind {
    use postgres::error::SqlState;
    match e.code() {
        None => StoreErrorKind::Unreachable,
        Some(c)
            if *c == SqlState::LOCK_NOT_AVAILABLE
                || *c == SqlState::T_R_SERIALIZATION_FAILURE
                || *c == SqlState::T_R_DEADLOCK_DETECTED =>
        {
            StoreErrorKind::Busy
        }
        Some(c) if *c == SqlState::DISK_FULL => StoreErrorKind::DiskFull,
        Some(c) if c.code().starts_with("08") || c.code().starts_with("57P") => {
            // connection exceptions; admin shutdown, crash shutdown, cannot connect now
            StoreErrorKind::Unreachable
        }
        Some(_) => StoreErrorKind::Other,
    }
}

fn classify(e: &rusqlite::Error) -> StoreErrorKind {
    use rusqlite::ErrorCode;
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreErrorKind::Busy,
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => StoreErrorKind::Corrupt,
        Some(ErrorCode::DiskFull) => StoreErrorKind::DiskFull,
        Some(
            ErrorCode::CannotOpen
            | ErrorCode::SystemIoFailure
            | ErrorCode::PermissionDenied
            | ErrorCode::ReadOnly,
        ) => StoreErrorKind::Io,
        _ => StoreErrorKind::Other,
    }
}
