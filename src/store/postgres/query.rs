//! Filtered reads that stream from Postgres: keyset pagination over `(started_at_ms, seq)`, as
//! SQLite's `query.rs`, one short statement per page.

use super::super::query::{FilterValue, PageSource, Paged, Row, annotations_sql, paged_sql};
use super::super::{Annotation, Filter, StoreError};
use super::PostgresStore;
use postgres::types::ToSql;

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

pub(super) struct PostgresPages<'a> {
    store: &'a PostgresStore,
    sql: String,
    params: Vec<Param>,
}

impl<'a> PostgresPages<'a> {
    pub(super) fn new(store: &'a PostgresStore, filter: &Filter) -> Paged<PostgresPages<'a>> {
        let (sql, params) = paged_sql(filter, |n| format!("${n}"));
        Paged::new(PostgresPages { store, sql, params }, filter)
    }
}

impl PageSource for PostgresPages<'_> {
    fn page(&mut self, after: (i64, i64), limit: usize) -> Result<Vec<Row>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut all: Vec<&(dyn ToSql + Sync)> = vec![&after.0, &after.1, &limit];
        all.extend(self.params.iter().map(Param::sql));
        let rows = self.store.conn()?.query(&self.sql, &all)?;
        Ok(rows
            .iter()
            .map(|row| {
                let json: &str = row.get(3);
                (row.get(0), row.get(1), row.get(2), json.to_owned())
            })
            .collect())
    }
}

/// Postgres's [`Store::annotations`](super::super::Store::annotations): one statement.
pub(super) fn annotations(
    store: &PostgresStore,
    filter: &Filter,
) -> Result<Vec<Annotation>, StoreError> {
    let (sql, params) = annotations_sql(filter, |n| format!("${n}"));
    let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(Param::sql).collect();
    let rows = store.conn()?.query(&sql, &params)?;
    Ok(rows
        .iter()
        .map(|row| {
            Annotation::from_row(
                row.get(0),
                row.get(1),
                row.get(2),
                row.get(3),
                row.get(4),
                row.get(5),
            )
        })
        .collect())
}
