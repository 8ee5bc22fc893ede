//! Prometheus metrics: the registry, the handles each route keeps for its exchanges, and the
//! values read only when scraped (capture writer, side channel, process, connections).
//!
//! Recording is cheap by construction: a route resolves its label sets once (the requests
//! table is indexed by small integers, a model's histograms are found by a short scan under a
//! read lock), so a finished exchange costs a few atomic adds and one short, uncontended lock per
//! histogram, with no string built or hashed. Nothing here awaits.

pub mod labels;
mod route;
mod scrape;

pub use labels::Refusal;
pub use route::{Done, ModelMetrics, RouteMetrics};
pub use scrape::prometheus_text;

use crate::apis::Api;
use crate::capture::CaptureWriter;
use crate::progress::Hub;
use labels::{LATENCY_BUCKETS, OVERHEAD_BUCKETS};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use std::sync::Arc;

/// The content type of the OpenMetrics text format.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of Prometheus's text format (0.0.4).
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    route: String,
    api: &'static str,
    tier: &'static str,
    streamed: &'static str,
    status_class: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RouteLabel {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RouteModel {
    route: String,
    model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TokenLabels {
    route: String,
    model: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

type Histograms = Family<RouteModel, Histogram, fn() -> Histogram>;

fn latency() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

fn overhead() -> Histogram {
    Histogram::new(OVERHEAD_BUCKETS)
}

/// The families every route's handles come from.
pub(crate) struct Families {
    requests: Family<RequestLabels, Counter>,
    in_flight: Family<RouteLabel, Gauge>,
    refused: Vec<Counter>,
    headers: Histograms,
    first_feedback: Histograms,
    first_token: Histograms,
    total: Histograms,
    silence: Histograms,
    overhead: Histograms,
    tokens: Family<TokenLabels, Counter>,
}

/// A route's handles, by its name and api.
type KnownRoute = ((String, Api), Arc<RouteMetrics>);

/// Every metric aloud exports, and where the scraped-only values come from.
pub struct Metrics {
    registry: Registry,
    families: Arc<Families>,
    sources: Arc<scrape::Sources>,
    max_model_labels: usize,
    /// Each route's handles, kept across reloads: a reload must not reopen a route's capped
    /// model table (its series are never removed).
    routes: std::sync::Mutex<Vec<KnownRoute>>,
}

impl Metrics {
    /// A registry whose routes keep at most `max_model_labels` models each (then `other`).
    pub fn new(max_model_labels: usize) -> Arc<Metrics> {
        // Every reason is exported from the start (at 0), so `rate()` sees the first refusal.
        let refused_family = Family::<ReasonLabel, Counter>::default();
        let refused = Refusal::ALL
            .iter()
            .map(|r| {
                refused_family
                    .get_or_create(&ReasonLabel { reason: r.as_str() })
                    .clone()
            })
            .collect();
        let f = Families {
            requests: Family::default(),
            in_flight: Family::default(),
            refused,
            headers: Family::new_with_constructor(latency),
            first_feedback: Family::new_with_constructor(latency),
            first_token: Family::new_with_constructor(latency),
            total: Family::new_with_constructor(latency),
            silence: Family::new_with_constructor(latency),
            overhead: Family::new_with_constructor(overhead),
            tokens: Family::default(),
        };
        let mut r = Registry::default();
        r.register(
            "aloud_requests",
            "Proxied requests, by how they ended",
            f.requests.clone(),
        );
        r.register(
            "aloud_requests_in_flight",
            "Proxied requests holding a concurrency slot now",
            f.in_flight.clone(),
        );
        r.register(
            "aloud_refused",
            "Requests aloud refused itself, by reason (a closed set)",
            refused_family.clone(),
        );
        let histograms: [(&str, &str, &Histograms); 6] = [
            (
                "aloud_upstream_headers",
                "Time from the request head to the upstream's response head",
                &f.headers,
            ),
            (
                "aloud_first_feedback",
                "Time to the first thing the user could see: a label, a reasoning or answer token",
                &f.first_feedback,
            ),
            (
                "aloud_first_token",
                "Time to the first answer token (or a whole answer's first byte)",
                &f.first_token,
            ),
            (
                "aloud_request_duration",
                "Whole exchange, from the request head to its end",
                &f.total,
            ),
            (
                "aloud_longest_silence",
                "Longest time the user saw nothing new during an exchange",
                &f.silence,
            ),
            (
                "aloud_overhead",
                "aloud's own time in an exchange (request out, plus head back)",
                &f.overhead,
            ),
        ];
        for (name, help, family) in histograms {
            r.register_with_unit(name, help, Unit::Seconds, family.clone());
        }
        r.register(
            "aloud_tokens",
            "Tokens the upstreams reported, by kind (input, output, reasoning)",
            f.tokens.clone(),
        );
        let sources = Arc::new(scrape::Sources::default());
        r.register_collector(Box::new(Arc::clone(&sources)));
        Arc::new(Metrics {
            registry: r,
            families: Arc::new(f),
            sources,
            max_model_labels,
            routes: std::sync::Mutex::default(),
        })
    }

    /// The handles of route `name`: made when an app first has the route, and the same ones
    /// for every reloaded app after it.
    pub fn route(&self, name: &str, api: Api) -> Arc<RouteMetrics> {
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, r)) = routes.iter().find(|((n, a), _)| n == name && *a == api) {
            return Arc::clone(r);
        }
        let made = Arc::new(RouteMetrics::new(
            labels::model_value(name),
            api.as_str(),
            Arc::clone(&self.families),
            self.max_model_labels,
        ));
        routes.push(((name.to_owned(), api), Arc::clone(&made)));
        made
    }

    /// Counts a refusal made before any route was involved (dispatch, connection cap).
    pub fn refused(&self, reason: Refusal) {
        self.families.refused[reason.index()].inc();
    }

    /// Reads the capture writer's counters at each scrape.
    pub fn watch_capture(&self, writer: CaptureWriter) {
        let _ = self.sources.capture.set(writer);
    }

    /// Reads the side channel's size at each scrape.
    pub fn watch_hub(&self, hub: Arc<Hub>) {
        let _ = self.sources.hub.set(hub);
    }

    /// The side channel's hub, once the app is built (the dashboard's live view reads it).
    pub fn hub(&self) -> Option<&Arc<Hub>> {
        self.sources.hub.get()
    }

    /// Reads the trace exporter's counters at each scrape.
    pub fn watch_traces(&self) {
        let _ = self.sources.traces.set(());
    }

    /// Reads the number of open client connections at each scrape.
    pub fn watch_connections(&self, open: impl Fn() -> u64 + Send + Sync + 'static) {
        let _ = self.sources.connections.set(Box::new(open));
    }

    /// Every metric in the OpenMetrics text format.
    pub fn openmetrics(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(16 << 10);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
