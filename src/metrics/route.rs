//! One route's metric handles: its in-flight gauge, its requests table (one slot per label
//! combination, filled on first use) and its models' histograms and token counters.

use super::labels::{self, ModelTable, REQUEST_KEYS, Refusal};
use super::{Families, RequestLabels, RouteLabel, RouteModel, TokenLabels};
use crate::apis::stream::Usage;
use crate::capture::Outcome;
use crate::config::Tier;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use std::sync::{Arc, OnceLock};

/// What a finished exchange tells the metrics (built by the exchange's finish step from its
/// `Figures`). Times in seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Done {
    pub tier: Tier,
    pub streamed: bool,
    /// The status the client got, if any.
    pub status: Option<u16>,
    pub outcome: Outcome,
    /// The ending's low-cardinality cause (a refusal's label, `complete`, ...).
    pub cause: &'static str,
    /// The exchange held a concurrency slot (it was not refused at admission).
    pub admitted: bool,
    pub headers: Option<f64>,
    pub first_feedback: Option<f64>,
    pub first_token: Option<f64>,
    pub total: f64,
    pub longest_silence: f64,
    pub overhead: Option<f64>,
    pub usage: Option<Usage>,
}

/// A model's histograms and token counters on one route.
pub struct ModelMetrics {
    headers: Histogram,
    first_feedback: Histogram,
    first_token: Histogram,
    total: Histogram,
    silence: Histogram,
    overhead: Histogram,
    input: Counter,
    output: Counter,
    reasoning: Counter,
}

impl ModelMetrics {
    fn new(f: &Families, route: &str, model: &str) -> Self {
        let rm = RouteModel {
            route: route.to_owned(),
            model: labels::model_value(model),
        };
        let tokens = |kind| {
            f.tokens
                .get_or_create(&TokenLabels {
                    route: rm.route.clone(),
                    model: rm.model.clone(),
                    kind,
                })
                .clone()
        };
        ModelMetrics {
            headers: f.headers.get_or_create(&rm).clone(),
            first_feedback: f.first_feedback.get_or_create(&rm).clone(),
            first_token: f.first_token.get_or_create(&rm).clone(),
            total: f.total.get_or_create(&rm).clone(),
            silence: f.silence.get_or_create(&rm).clone(),
            overhead: f.overhead.get_or_create(&rm).clone(),
            input: tokens("input"),
            output: tokens("output"),
            reasoning: tokens("reasoning"),
        }
    }
}

/// The metric handles of one route, shared by all its exchanges.
pub struct RouteMetrics {
    route: String,
    api: &'static str,
    in_flight: Gauge,
    requests: Box<[OnceLock<Counter>]>,
    models: ModelTable<ModelMetrics>,
    families: Arc<Families>,
}

impl RouteMetrics {
    pub(super) fn new(route: String, api: &'static str, f: Arc<Families>, cap: usize) -> Self {
        let in_flight = f
            .in_flight
            .get_or_create(&RouteLabel {
                route: route.clone(),
            })
            .clone();
        let models = ModelTable::new(cap);
        RouteMetrics {
            requests: (0..REQUEST_KEYS).map(|_| OnceLock::new()).collect(),
            route,
            api,
            in_flight,
            models,
            families: f,
        }
    }

    /// An exchange took a concurrency slot.
    pub fn admitted(&self) {
        self.in_flight.inc();
    }

    /// An exchange gave its concurrency slot back (its answer is out; the finish step may run
    /// a moment later).
    pub fn released(&self) {
        self.in_flight.dec();
    }

    /// The handles of `model` (the route's first models by name, then `other`; `unknown` when
    /// the exchange never learnt one).
    pub fn model(&self, model: Option<&str>) -> Arc<ModelMetrics> {
        self.models
            .get(model, |m| ModelMetrics::new(&self.families, &self.route, m))
    }

    /// The one call of an exchange's finish step. `model` is asked for only when the exchange
    /// was admitted (a refusal has no latency worth a histogram).
    pub fn finished(&self, d: &Done, model: impl FnOnce() -> Arc<ModelMetrics>) {
        self.requests_counter(d).inc();
        if let Some(r) = Refusal::from_cause(d.cause) {
            self.families.refused[r.index()].inc();
            return;
        }
        if !d.admitted {
            return;
        }
        let m = model();
        for (h, v) in [
            (&m.headers, d.headers),
            (&m.first_feedback, d.first_feedback),
            (&m.first_token, d.first_token),
            (&m.total, Some(d.total)),
            (&m.silence, Some(d.longest_silence)),
            (&m.overhead, d.overhead),
        ] {
            if let Some(v) = v {
                h.observe(v);
            }
        }
        if let Some(u) = d.usage {
            for (c, n) in [
                (&m.input, u.input),
                (&m.output, u.output),
                (&m.reasoning, u.reasoning),
            ] {
                if let Some(n) = n.filter(|n| *n > 0) {
                    c.inc_by(n);
                }
            }
        }
    }

    fn requests_counter(&self, d: &Done) -> &Counter {
        let key = labels::request_key(d.tier, d.streamed, d.status, d.outcome);
        self.requests[key].get_or_init(|| {
            self.families
                .requests
                .get_or_create(&RequestLabels {
                    route: self.route.clone(),
                    api: self.api,
                    tier: d.tier.as_str(),
                    streamed: if d.streamed { "true" } else { "false" },
                    status_class: labels::status_class(d.status),
                    outcome: d.outcome.as_str(),
                })
                .clone()
        })
    }
}
