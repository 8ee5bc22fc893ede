//! The requests in flight now, for the dashboard: one pass over the hub's entries under its
//! lock, then rows built from each attempt's `LiveCell`, longest-running first, at most `max`.

use super::{Hub, Stage};
use crate::progress::live::{LiveCell, LiveRequest};
use serde::Serialize;
use std::sync::Arc;
use tokio::time::Instant;

/// `/dashboard/api/live`: the rows shown and how many requests are in flight in all.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LiveSnapshot {
    /// Requests in flight on this process (those started while the admin listener ran).
    pub in_flight: usize,
    /// The longest-running `max` of them.
    pub requests: Vec<LiveRequest>,
}

impl Hub {
    /// The requests in flight now, longest-running first, at most `max` rows. Takes the hub's
    /// lock for one pass over its entries (at most `max_requests`), and each cell's briefly.
    pub fn live(&self, max: usize) -> LiveSnapshot {
        let now = Instant::now();
        // Only refcounts under the hub's lock; rows (which may read a model from a request
        // body) are built after it is released.
        let mut cells: Vec<(Arc<str>, u32, Arc<LiveCell>)> = {
            let entries = self.lock();
            entries
                .map
                .iter()
                .filter(|(_, e)| e.stage == Stage::InFlight)
                .filter_map(|(id, e)| {
                    Some((Arc::clone(id), e.attempts, Arc::clone(e.live.as_ref()?)))
                })
                .collect()
        };
        let in_flight = cells.len();
        cells.sort_by(|a, b| a.2.started().cmp(&b.2.started()).then(a.0.cmp(&b.0)));
        cells.truncate(max);
        let requests = cells
            .iter()
            .map(|(id, attempt, cell)| cell.row(id, *attempt, now))
            .collect();
        LiveSnapshot {
            in_flight,
            requests,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::hub::HubLimits;

    fn cell(route: &str) -> Arc<LiveCell> {
        LiveCell::new(Arc::from(route), "events", Instant::now(), Arc::default())
    }

    #[test]
    fn only_attempts_in_flight_with_a_cell_are_listed_oldest_first_and_bounded() {
        let hub = Hub::new(HubLimits::default());
        let (a, b, c): (Arc<str>, Arc<str>, Arc<str>) =
            (Arc::from("a"), Arc::from("b"), Arc::from("c"));
        hub.begin_live(&a, None, Some(cell("first"))).unwrap();
        hub.begin_live(&b, None, Some(cell("second"))).unwrap();
        // Begun without a cell (the admin listener is off): not listed.
        hub.begin(&c, None).unwrap();
        let live = hub.live(10);
        assert_eq!(live.in_flight, 2);
        let routes: Vec<&str> = live.requests.iter().map(|r| r.route.as_str()).collect();
        assert_eq!(routes, ["first", "second"]);
        assert_eq!(hub.live(1).requests.len(), 1);
        assert_eq!(hub.live(1).in_flight, 2);
        hub.finish("a", None);
        let live = hub.live(10);
        assert_eq!(live.in_flight, 1);
        assert_eq!(live.requests[0].id, "b");
    }
}
