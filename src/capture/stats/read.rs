//! Reading a report from a store: the query's window, route, model and outcome go down to the
//! store's SQL as its [`Filter`](crate::store::Filter); the beacons come in one more query.

use std::collections::HashMap;

use super::{Annotated, Report, StatsQuery, report};
use crate::config::Owner;
use crate::store::{Annotation, Store, StoreError};

/// The report for `query` from `store` (blocking: call it off the runtime). Records stream a
/// page at a time; the client timings and feedback of the window are held by id meanwhile.
pub fn report_from_store<S: Store + ?Sized>(
    store: &S,
    query: &StatsQuery,
) -> Result<Report, StoreError> {
    let filter = query.filter();
    // By (id, owner): a token's beacons speak of its own attempts only.
    let annotations: HashMap<(String, Option<Owner>), Annotation> = store
        .annotations(&filter)?
        .into_iter()
        .map(|a| ((a.id.clone(), a.owner), a))
        .collect();
    let mut failed = None;
    let records = store.query(&filter)?.map_while(|r| match r {
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
