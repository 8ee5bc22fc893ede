//! Filtered reads that stream from Postgres: keyset pagination over `(started_at_ms, seq)`, as
//! SQLite's `query.rs`, one short statement per page.

use super::super::query::{FilterValue, paged_sql};
use super::super::{Filter, StoreError};
use super::PostgresStore;
use crate::record::CaptureRecord;
use postgres::types::ToSql;
use std::collections::VecDeque;

/// Records per page.
const PAGE: usize = 256;

/// A filter's value, owned by the iterator.
type Param = FilterValue;

trait Bind {
    fn sql(&self) -> &(dyn ToSql + Sync);
}

impl Bind for Param {
    fn sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            FilterValue::Int(v) => v,
            FilterValue::Text(v) => v,
            FilterValue::Real(v) => v,
        }
    }
}

pub(super) struct Pages<'a> {
    store: &'a PostgresStore,
    sql: String,
    params: Vec<Param>,
    after: (i64, i64),
    buffer: VecDeque<Result<CaptureRecord, StoreError>>,
    remaining: Option<usize>,
    exhausted: bool,
}

impl<'a> Pages<'a> {
    pub(super) fn new(store: &'a PostgresStore, filter: &Filter) -> Pages<'a> {
        let (sql, params) = paged_sql(filter, |n| format!("${n}"));
        Pages {
            store,
            sql,
            params,
            after: (i64::MIN, i64::MIN),
            buffer: VecDeque::new(),
            remaining: filter.limit,
            exhausted: false,
        }
    }

    fn fetch(&mut self) -> Result<(), StoreError> {
        let want = self.remaining.map_or(PAGE, |r| r.min(PAGE));
        let limit = i64::try_from(want).unwrap_or(i64::MAX);
        let mut all: Vec<&(dyn ToSql + Sync)> = vec![&self.after.0, &self.after.1, &limit];
        all.extend(self.params.iter().map(Param::sql));
        let rows = self.store.conn()?.query(&self.sql, &all)?;
        let got = rows.len();
        for row in rows {
            self.after = (row.get(0), row.get(1));
            let id: String = row.get(2);
            let json: &str = row.get(3);
            self.buffer.push_back(
                serde_json::from_str(json).map_err(|source| StoreError::Json { id, source }),
            );
        }
        if got < want {
            self.exhausted = true;
        }
        Ok(())
    }
}

impl Iterator for Pages<'_> {
    type Item = Result<CaptureRecord, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == Some(0) {
            return None;
        }
        if self.buffer.is_empty()
            && !self.exhausted
            && let Err(e) = self.fetch()
        {
            self.exhausted = true;
            return Some(Err(e));
        }
        let item = self.buffer.pop_front()?;
        if let Some(remaining) = &mut self.remaining {
            *remaining -= 1;
        }
        Some(item)
    }
}
