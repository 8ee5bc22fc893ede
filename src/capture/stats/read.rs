//! Reading a report from a store: the query's window, route, model and outcome go down to the
//! store's SQL as its [`Filter`](crate::store::Filter); the beacons come in one more query.

use std::collections::HashMap;

use super::{Annotated, Report, StatsQuery, report};
use crate::config::Owner;
use crate::store::{Annotation, Store, StoreError, StoreErrorKind};

/// The report for `query` from `store` (blocking: call it off the runtime). Records stream a
/// page at a time; the client timings and feedback of the window are held by id meanwhile.
pub fn report_from_store<S: Store + ?Sized>(
    store: &S,
    query: &StatsQuery,
) -> Result<Report, StoreError> {
    report_skipping(store, query, None)
}

/// [`report_from_store`], leaving out records that cannot be read (`StoreErrorKind::Json`):
/// each is handed to `unreadable` instead of ending the report with an error.
pub fn report_skipping_unreadable<S: Store + ?Sized>(
    store: &S,
    query: &StatsQuery,
    unreadable: &mut dyn FnMut(&StoreError),
) -> Result<Report, StoreError> {
    report_skipping(store, query, Some(unreadable))
}

fn report_skipping<S: Store + ?Sized>(
    store: &S,
    query: &StatsQuery,
    mut unreadable: Option<&mut dyn FnMut(&StoreError)>,
) -> Result<Report, StoreError> {
    let filter = query.filter();
    // By (id, owner): a token's beacons speak of its own attempts only.
    let annotations: HashMap<(String, Option<Owner>), Annotation> = store
        .annotations(&filter)?
        .into_iter()
        .map(|a| ((a.id.clone(), a.owner), a))
        .collect();
    let mut failed = None;
    let records = store
        .query(&filter)?
        .filter_map(|r| match (r, &mut unreadable) {
            (Ok(record), _) => Some(Ok(record)),
            (Err(e), Some(skip)) if e.kind() == StoreErrorKind::Json => {
                skip(&e);
                None
            }
            (Err(e), _) => Some(Err(e)),
        })
        .map_while(|r| match r {
            Ok(record) => Some(record),
            Err(e) => {
                failed = Some(e);
                None
            }
        });
    let report = report(
        records.map(|record| {
            let annotation = annotations.get(&(record.id.clone(), record.owner));
            Annotated::new(record, annotation)
        }),
        query,
    );
    match failed {
        Some(e) => Err(e),
        None => Ok(report),
    }
}
