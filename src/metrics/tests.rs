//! The registry's output: names, labels, the model cap, refusals from the start.

use super::*;
use crate::capture::Outcome;
use crate::config::Tier;

fn done(outcome: Outcome, status: u16, cause: &'static str, admitted: bool) -> Done {
    Done {
        tier: Tier::Off,
        streamed: true,
        status: Some(status),
        outcome,
        cause,
        admitted,
        headers: Some(0.2),
        first_feedback: Some(0.3),
        first_token: Some(0.4),
        total: 1.5,
        longest_silence: 0.7,
        overhead: Some(0.000_2),
        usage: Some(crate::apis::stream::Usage {
            input: Some(10),
            output: Some(5),
            reasoning: None,
        }),
    }
}

#[test]
fn a_finished_exchange_is_counted_and_timed_under_its_model() {
    let m = Metrics::new(1);
    let r = m.route("up", Api::OpenAi);
    r.admitted();
    r.released();
    r.finished(&done(Outcome::Ok, 200, "complete", true), || {
        r.model(Some("gpt-x"))
    });
    r.admitted();
    r.released();
    r.finished(&done(Outcome::Ok, 200, "complete", true), || {
        r.model(Some("gpt-y"))
    });
    r.finished(&done(Outcome::ProxyError, 503, "overloaded", false), || {
        unreachable!("a refusal resolves no model")
    });
    let text = m.openmetrics().unwrap_or_default();
    for line in [
        "aloud_requests_total{route=\"up\",api=\"openai\",tier=\"off\",streamed=\"true\",status_class=\"2xx\",outcome=\"ok\"} 2",
        "aloud_requests_total{route=\"up\",api=\"openai\",tier=\"off\",streamed=\"true\",status_class=\"5xx\",outcome=\"proxy_error\"} 1",
        "aloud_requests_in_flight{route=\"up\"} 0",
        "aloud_refused_total{reason=\"overload\"} 1",
        "aloud_refused_total{reason=\"no_route\"} 0",
        "aloud_request_duration_seconds_count{route=\"up\",model=\"gpt-x\"} 1",
        "aloud_request_duration_seconds_count{route=\"up\",model=\"other\"} 1",
        "aloud_overhead_seconds_bucket{le=\"0.00025\",route=\"up\",model=\"gpt-x\"} 1",
        "aloud_tokens_total{route=\"up\",model=\"gpt-x\",kind=\"input\"} 10",
        "aloud_tokens_total{route=\"up\",model=\"other\",kind=\"output\"} 5",
        "# UNIT aloud_first_feedback_seconds seconds",
        "# EOF",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    assert!(!text.contains("gpt-y"), "past the cap a model is `other`");
    let plain = prometheus_text(&text);
    assert!(plain.contains("# TYPE aloud_requests_total counter"));
    assert!(!plain.contains("# EOF"));
}

#[test]
fn the_writer_and_the_hub_are_read_at_scrape_time() {
    let m = Metrics::new(20);
    let hub = crate::progress::Hub::new(crate::progress::hub::HubLimits::default());
    m.watch_hub(Arc::clone(&hub));
    m.watch_connections(|| 3);
    let sub = hub.subscribed();
    let text = m.openmetrics().unwrap_or_default();
    assert!(text.contains("aloud_side_channel_subscribers 1"), "{text}");
    assert!(text.contains("aloud_open_connections 3"), "{text}");
    assert!(text.contains("process_resident_memory_bytes "), "{text}");
    drop(sub);
    let text = m.openmetrics().unwrap_or_default();
    assert!(text.contains("aloud_side_channel_subscribers 0"), "{text}");
}

#[test]
fn a_route_keeps_its_handles_across_reloads() {
    let m = Metrics::new(20);
    let a = m.route("r", crate::apis::Api::OpenAi);
    let b = m.route("r", crate::apis::Api::OpenAi);
    assert!(
        Arc::ptr_eq(&a, &b),
        "a reload must not reopen the route's model table"
    );
    let c = m.route("r", crate::apis::Api::Anthropic);
    assert!(!Arc::ptr_eq(&a, &c));
}

/// Every reason aloud refuses a client's request for is counted in `aloud_refused_total`.
#[test]
fn every_refusal_of_a_client_request_has_a_reason() {
    use crate::metrics::Refusal;
    for label in [
        "bad_on_disconnect",
        "bad_path",
        "bad_progress_header",
        "bad_request_body",
        "bad_request_id",
        "body_too_large",
        "client_token_missing",
        "connect_refused",
        "no_route",
        "on_disconnect_not_allowed",
        "request_body_timeout",
        "request_head_too_large",
        "request_id_in_flight",
        "upgrade_refused",
    ] {
        assert!(Refusal::from_cause(label).is_some(), "{label}");
    }
}
