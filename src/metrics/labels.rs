//! The metrics' label values, each from a closed set except `route` (from the config) and
//! `model` (capped per route): refusal reasons, status classes, buckets, and the model table.

use crate::capture::Outcome;
use crate::config::Tier;
use std::sync::{Arc, OnceLock, RwLock};

/// Latency buckets in seconds, for waits from 10 ms to 120 s.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0,
];

/// aloud's own overhead in seconds: 10 µs to 10 ms.
pub const OVERHEAD_BUCKETS: [f64; 10] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01,
];

/// Why aloud refused a request (the `reason` of `aloud_refused_total`). A closed set: every
/// refusal label admission and the request-body checks use maps to one of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No concurrency slot (`overloaded`).
    Overload,
    /// The connection cap (`max_connections`) refused a new connection.
    Connections,
    /// The request body was over the route's limit (`body_too_large`).
    TooLarge,
    /// No valid client token (`client_token_missing`).
    Unauthorized,
    /// A malformed request: bad `Aloud-Progress`, path, request id, body framing, or CONNECT.
    BadRequest,
    /// A protocol upgrade (WebSocket) was asked for (`upgrade_refused`).
    Upgrade,
    /// A request with the same `Aloud-Request-Id` is still in flight (`request_id_in_flight`).
    Conflict,
    /// The client stopped sending its request body (`request_body_timeout`).
    Timeout,
    /// No route matches the path (`no_route`).
    NoRoute,
}

impl Refusal {
    pub const ALL: [Refusal; 9] = [
        Refusal::Overload,
        Refusal::Connections,
        Refusal::TooLarge,
        Refusal::Unauthorized,
        Refusal::BadRequest,
        Refusal::Upgrade,
        Refusal::Conflict,
        Refusal::Timeout,
        Refusal::NoRoute,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Overload => "overload",
            Refusal::Connections => "connections",
            Refusal::TooLarge => "too_large",
            Refusal::Unauthorized => "unauthorized",
            Refusal::BadRequest => "bad_request",
            Refusal::Upgrade => "upgrade",
            Refusal::Conflict => "conflict",
            Refusal::Timeout => "timeout",
            Refusal::NoRoute => "no_route",
        }
    }

    /// The refusal an ending's cause (a `ProxyError` label) stands for; `None` for every cause
    /// that is not a refusal (upstream failures, timeouts of the upstream, `complete`, ...).
    pub fn from_cause(cause: &str) -> Option<Refusal> {
        Some(match cause {
            "overloaded" => Refusal::Overload,
            "body_too_large" | "request_head_too_large" => Refusal::TooLarge,
            "client_token_missing" => Refusal::Unauthorized,
            "bad_progress_header"
            | "bad_on_disconnect"
            | "on_disconnect_not_allowed"
            | "bad_path"
            | "bad_request_body"
            | "bad_request_id"
            | "bad_host"
            | "connect_refused" => Refusal::BadRequest,
            "upgrade_refused" => Refusal::Upgrade,
            "request_id_in_flight" => Refusal::Conflict,
            "request_body_timeout" => Refusal::Timeout,
            "no_route" => Refusal::NoRoute,
            _ => return None,
        })
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// `1xx` .. `5xx`, or `none` when the client got no status (it left first).
pub fn status_class(status: Option<u16>) -> &'static str {
    match status {
        Some(100..=199) => "1xx",
        Some(200..=299) => "2xx",
        Some(300..=399) => "3xx",
        Some(400..=499) => "4xx",
        Some(500..=599) => "5xx",
        _ => "none",
    }
}

const STATUS_CLASSES: usize = 6;
const OUTCOMES: usize = 6;
const TIERS: usize = 3;

/// How many `aloud_requests_total` series a route can have: tier × streamed × class × outcome.
pub const REQUEST_KEYS: usize = TIERS * 2 * STATUS_CLASSES * OUTCOMES;

fn status_index(status: Option<u16>) -> usize {
    match status {
        Some(s @ 100..=599) => usize::from(s / 100),
        _ => 0,
    }
}

fn outcome_index(o: Outcome) -> usize {
    match o {
        Outcome::Ok => 0,
        Outcome::UpstreamError => 1,
        Outcome::ProxyError => 2,
        Outcome::Timeout => 3,
        Outcome::ClientDisconnected => 4,
        Outcome::Shutdown => 5,
    }
}

fn tier_index(t: Tier) -> usize {
    match t {
        Tier::Off => 0,
        Tier::Comments => 1,
        Tier::Events => 2,
    }
}

/// The slot of one `aloud_requests_total` series in a route's table (no hashing, no strings).
pub fn request_key(tier: Tier, streamed: bool, status: Option<u16>, outcome: Outcome) -> usize {
    ((tier_index(tier) * 2 + usize::from(streamed)) * STATUS_CLASSES + status_index(status))
        * OUTCOMES
        + outcome_index(outcome)
}

/// The label value of a model: at most 100 bytes (cut on a char boundary), and no `"`, `\` or
/// line breaks, which the text format would need escaped (the encoder writes values as given).
pub fn model_value(model: &str) -> String {
    let mut end = model.len().min(100);
    while !model.is_char_boundary(end) {
        end -= 1;
    }
    model[..end]
        .chars()
        .map(|c| {
            if matches!(c, '"' | '\\') || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// The first `cap` distinct models of a route, each with its handles; the rest share `other`,
/// and an exchange that never learnt its model counts as `unknown`. Handles are made on first
/// use, so a label that never occurs is not exported.
pub struct ModelTable<H> {
    cap: usize,
    known: RwLock<Vec<(Box<str>, Arc<H>)>>,
    other: OnceLock<Arc<H>>,
    unknown: OnceLock<Arc<H>>,
}

impl<H> ModelTable<H> {
    pub fn new(cap: usize) -> Self {
        ModelTable {
            cap,
            known: RwLock::new(Vec::new()),
            other: OnceLock::new(),
            unknown: OnceLock::new(),
        }
    }

    /// The handles for `model`, made with `make(label)` the first time a label is used. A read
    /// lock and a short scan on the way; the write lock only for a new model.
    pub fn get(&self, model: Option<&str>, make: impl FnOnce(&str) -> H) -> Arc<H> {
        let Some(model) = model.filter(|m| !m.is_empty()) else {
            return Arc::clone(self.unknown.get_or_init(|| Arc::new(make("unknown"))));
        };
        {
            let known = self.known.read().unwrap_or_else(|p| p.into_inner());
            if let Some((_, h)) = known.iter().find(|(m, _)| &**m == model) {
                return Arc::clone(h);
            }
            if known.len() >= self.cap {
                drop(known);
                return Arc::clone(self.other.get_or_init(|| Arc::new(make("other"))));
            }
        }
        let mut known = self.known.write().unwrap_or_else(|p| p.into_inner());
        if let Some((_, h)) = known.iter().find(|(m, _)| &**m == model) {
            return Arc::clone(h);
        }
        if known.len() >= self.cap {
            drop(known);
            return Arc::clone(self.other.get_or_init(|| Arc::new(make("other"))));
        }
        let h = Arc::new(make(model));
        known.push((model.into(), Arc::clone(&h)));
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_models_get_their_own_label_and_the_rest_share_other() {
        let table = ModelTable::new(2);
        let make = |m: &str| m.to_owned();
        assert_eq!(*table.get(Some("a"), make), "a");
        assert_eq!(*table.get(Some("b"), make), "b");
        assert_eq!(*table.get(Some("c"), make), "other");
        assert_eq!(
            *table.get(Some("a"), make),
            "a",
            "a known model keeps its label"
        );
        assert_eq!(*table.get(None, make), "unknown");
        assert_eq!(*table.get(Some(""), make), "unknown");
        let none = ModelTable::new(0);
        assert_eq!(*none.get(Some("a"), make), "other");
    }

    #[test]
    fn model_values_are_bounded_and_need_no_escaping() {
        assert_eq!(model_value("gpt-4o"), "gpt-4o");
        assert_eq!(model_value("a\"b\\c\nd"), "a_b_c_d");
        let long = "é".repeat(80);
        let v = model_value(&long);
        assert!(v.len() <= 100 && v.chars().all(|c| c == 'é'));
    }

    #[test]
    fn buckets_cover_ten_ms_to_two_minutes_and_ten_us_to_ten_ms() {
        assert_eq!(LATENCY_BUCKETS.first(), Some(&0.01));
        assert_eq!(LATENCY_BUCKETS.last(), Some(&120.0));
        assert_eq!(OVERHEAD_BUCKETS.first(), Some(&0.000_01));
        assert_eq!(OVERHEAD_BUCKETS.last(), Some(&0.01));
        for b in [&LATENCY_BUCKETS[..], &OVERHEAD_BUCKETS[..]] {
            assert!(b.windows(2).all(|w| w[0] < w[1]), "increasing: {b:?}");
        }
    }

    #[test]
    fn request_keys_are_distinct_and_in_range() {
        let mut seen = std::collections::HashSet::new();
        for tier in [Tier::Off, Tier::Comments, Tier::Events] {
            for streamed in [false, true] {
                for status in [None, Some(101), Some(200), Some(302), Some(404), Some(503)] {
                    for o in [
                        Outcome::Ok,
                        Outcome::UpstreamError,
                        Outcome::ProxyError,
                        Outcome::Timeout,
                        Outcome::ClientDisconnected,
                        Outcome::Shutdown,
                    ] {
                        let k = request_key(tier, streamed, status, o);
                        assert!(k < REQUEST_KEYS);
                        assert!(seen.insert(k));
                    }
                }
            }
        }
        assert_eq!(seen.len(), REQUEST_KEYS);
        assert_eq!(status_class(Some(204)), "2xx");
        assert_eq!(status_class(None), "none");
    }

    #[test]
    fn refusal_causes_map_to_a_closed_set() {
        for r in Refusal::ALL {
            assert_eq!(Refusal::ALL[r.index()], r);
        }
        assert_eq!(Refusal::from_cause("overloaded"), Some(Refusal::Overload));
        assert_eq!(
            Refusal::from_cause("client_token_missing"),
            Some(Refusal::Unauthorized)
        );
        assert_eq!(Refusal::from_cause("upstream_error"), None);
        assert_eq!(Refusal::from_cause("complete"), None);
    }
}
