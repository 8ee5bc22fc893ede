//! Opening the configured database, whichever kind it is, as one [`Store`].

use super::postgres::{Access, PostgresStore};
use super::{SqliteOptions, SqliteStore, Store, StoreError};
use crate::config::Database;

/// Opens `database` for the capture writer: created and migrated if needed.
pub fn open_writer(database: &Database) -> Result<Box<dyn Store>, StoreError> {
    Ok(match database {
        Database::Sqlite(path) => Box::new(SqliteStore::open(path)?),
        Database::Postgres(url) => Box::new(PostgresStore::open(url, Access::ReadWrite)?),
    })
}

/// Opens `database` for reading (exports, stats, beacon lookups): it must exist and be
/// migrated; nothing is written.
pub fn open_reader(database: &Database) -> Result<Box<dyn Store>, StoreError> {
    Ok(match database {
        Database::Sqlite(path) => {
            let options = SqliteOptions {
                read_only: true,
                ..SqliteOptions::default()
            };
            Box::new(SqliteStore::open_with(path, &options)?)
        }
        Database::Postgres(url) => Box::new(PostgresStore::open(url, Access::ReadOnly)?),
    })
}

/// A boxed store is a store, so the writer (generic over its store) takes either kind.
impl<S: Store + ?Sized> Store for Box<S> {
    fn insert_batch(
        &mut self,
        records: &[crate::record::CaptureRecord],
    ) -> Result<usize, StoreError> {
        (**self).insert_batch(records)
    }
    fn write_batch(&mut self, entries: &[super::Entry]) -> Result<usize, StoreError> {
        (**self).write_batch(entries)
    }
    fn get(&self, id: &str) -> Result<Vec<crate::record::CaptureRecord>, StoreError> {
        (**self).get(id)
    }
    fn query(&self, filter: &super::Filter) -> Result<super::Records<'_>, StoreError> {
        (**self).query(filter)
    }
    fn annotations(&self, filter: &super::Filter) -> Result<Vec<super::Annotation>, StoreError> {
        (**self).annotations(filter)
    }
    fn insert_client_timings(
        &mut self,
        id: &str,
        timings: &serde_json::Value,
    ) -> Result<(), StoreError> {
        (**self).insert_client_timings(id, timings)
    }
    fn insert_feedback(
        &mut self,
        id: &str,
        score: Option<f64>,
        label: Option<String>,
        comment: Option<String>,
    ) -> Result<(), StoreError> {
        (**self).insert_feedback(id, score, label, comment)
    }
    fn client_timings(
        &self,
        id: &str,
        owner: Option<crate::config::Owner>,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        (**self).client_timings(id, owner)
    }
    fn last_attempt(
        &self,
        id: &str,
        owner: Option<crate::config::Owner>,
    ) -> Result<Option<u32>, StoreError> {
        (**self).last_attempt(id, owner)
    }
    fn feedback(
        &self,
        id: &str,
        owner: Option<crate::config::Owner>,
    ) -> Result<Option<super::Feedback>, StoreError> {
        (**self).feedback(id, owner)
    }
    fn exists(&self, id: &str) -> Result<bool, StoreError> {
        (**self).exists(id)
    }
    fn exists_for(
        &self,
        id: &str,
        owner: Option<crate::config::Owner>,
    ) -> Result<bool, StoreError> {
        (**self).exists_for(id, owner)
    }
}
