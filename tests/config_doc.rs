//! docs/config.md and the parser agree: the same keys, and the documented defaults are real.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on the first surprise"
)]

use aloud::config::units::{parse_duration, parse_size};
use aloud::config::{Config, MapEnv};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Documented keys per section, with the default column's text.
fn documented() -> BTreeMap<String, BTreeMap<String, String>> {
    let doc = std::fs::read_to_string("docs/config.md").unwrap();
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut section = None;
    for line in doc.lines() {
        if let Some(h) = line.strip_prefix("## `") {
            section = Some(h.trim_end_matches('`').trim_matches(['[', ']']).to_owned());
            continue;
        }
        if line.starts_with("## ") {
            section = None;
        }
        let (Some(s), Some(row)) = (&section, line.strip_prefix("| `")) else {
            continue;
        };
        let cells: Vec<&str> = row.split(" | ").collect();
        let key = cells[0].trim_end_matches('`').to_owned();
        out.entry(s.clone())
            .or_default()
            .insert(key, cells[2].to_owned());
    }
    out
}

/// The keys the parser accepts in a section, read from its own "expected one of" message.
fn accepted(section: &str) -> BTreeSet<String> {
    let toml = match section {
        "routes" => "[[routes]]\nname=\"a\"\nprefix=\"/a\"\nupstream=\"http://x\"\napi=\"openai\"\nzz_unknown=1\n".to_owned(),
        s => format!("[{s}]\nzz_unknown = 1\n"),
    };
    let err = Config::parse(&toml, Path::new("t.toml"), &MapEnv::default()).unwrap_err();
    let list = err
        .message
        .split("expected one of")
        .nth(1)
        .or_else(|| err.message.split("expected ").nth(1))
        .unwrap_or_else(|| panic!("{err}"));
    list.split(',')
        .map(|k| k.trim().trim_matches('`').to_owned())
        .collect()
}

#[test]
fn every_key_is_documented_and_every_documented_key_exists() {
    let doc = documented();
    assert_eq!(
        doc.keys().cloned().collect::<Vec<_>>(),
        [
            "admin",
            "capture",
            "capture.redact",
            "cluster",
            "cors",
            "progress",
            "routes",
            "server",
            "telemetry",
            "upstream"
        ]
    );
    for (section, keys) in &doc {
        let documented: BTreeSet<String> = keys.keys().cloned().collect();
        assert_eq!(documented, accepted(section), "section [{section}]");
    }
}

#[test]
fn documented_defaults_are_the_real_defaults() {
    let doc = documented();
    let config = Config::builtin(&MapEnv::default()).unwrap();

    let s = &config.server;
    let l = &config.routes[0].limits;
    let quoted = |section: &str, key: &str| {
        doc[section][key]
            .trim_matches('`')
            .trim_matches('"')
            .to_owned()
    };
    let c = &config.capture;
    assert_eq!(quoted("capture", "database"), c.database.to_string());
    assert_eq!(
        parse_size(&quoted("capture", "spill_max")).unwrap(),
        c.spill_max
    );
    assert_eq!(
        parse_size(&quoted("capture", "queue_max")).unwrap(),
        c.queue_max
    );
    assert_eq!(
        parse_duration(&quoted("capture", "flush_interval")).unwrap(),
        c.flush_interval
    );
    assert_eq!(
        quoted("capture", "batch_max").parse::<usize>().unwrap(),
        c.batch_max
    );
    assert_eq!(quoted("routes", "capture_max_body"), "1MiB");
    assert_eq!(
        quoted("admin", "listen"),
        config.admin.listen.unwrap().to_string()
    );
    assert_eq!(
        quoted("admin", "max_model_labels")
            .parse::<usize>()
            .unwrap(),
        config.admin.max_model_labels
    );
    let t = &config.telemetry;
    assert_eq!(quoted("telemetry", "service_name"), t.service_name);
    assert_eq!(
        quoted("telemetry", "sample").parse::<f64>().unwrap(),
        t.sample
    );
    assert_eq!(
        quoted("telemetry", "capture_content"),
        t.capture_content.to_string()
    );
    assert_eq!(t.otlp_endpoint, None);
    assert_eq!(
        quoted("cluster", "enabled"),
        config.cluster.enabled().to_string()
    );
    assert_eq!(quoted("server", "listen"), s.listen.to_string());
    assert_eq!(
        quoted("server", "max_concurrent_requests")
            .parse::<usize>()
            .unwrap(),
        s.max_concurrent_requests
    );
    assert_eq!(
        parse_size(&quoted("server", "max_request_head")).unwrap() as usize,
        s.max_request_head
    );
    for (key, actual) in [
        ("request_head_timeout", s.request_head_timeout),
        ("request_body_timeout", s.request_body_timeout),
        ("write_stall_timeout", s.write_stall_timeout),
        ("shutdown_grace", s.shutdown_grace),
    ] {
        assert_eq!(
            parse_duration(&quoted("server", key)).unwrap(),
            actual,
            "{key}"
        );
    }
    for (key, actual) in [
        ("connect_timeout", l.connect_timeout),
        ("idle_timeout", l.idle_timeout),
        ("total_timeout", l.total_timeout),
    ] {
        assert_eq!(
            parse_duration(&quoted("upstream", key)).unwrap(),
            actual,
            "{key}"
        );
    }
    assert_eq!(
        l.headers_timeout, l.total_timeout,
        "headers default to the total"
    );
    assert_eq!(
        parse_size(&quoted("upstream", "max_request_body")).unwrap(),
        l.max_request_body
    );
}

#[test]
fn the_shipped_config_parses_with_the_promised_routes() {
    let config = Config::load(Path::new("config.toml"), &MapEnv::default()).unwrap();
    let names: Vec<&str> = config.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "openai",
            "anthropic",
            "sim",
            "sim-anthropic",
            "sim-gemini",
            "sim-ollama"
        ]
    );
}

/// The first hour: with or without the shipped file, every api has a simulator route, and the
/// built-in defaults are exactly the shipped file's simulator routes.
#[test]
fn both_defaults_have_a_simulator_route_per_api() {
    let sim_routes = |config: &Config| -> Vec<(String, String, String)> {
        config
            .routes
            .iter()
            .filter(|r| r.upstream == aloud::config::Upstream::Simulator)
            .map(|r| (r.name.clone(), r.prefix.clone(), r.api.to_string()))
            .collect()
    };
    let shipped = Config::load(Path::new("config.toml"), &MapEnv::default()).unwrap();
    let builtin = Config::builtin(&MapEnv::default()).unwrap();
    assert_eq!(sim_routes(&builtin), sim_routes(&shipped));
    assert_eq!(builtin.routes.len(), sim_routes(&builtin).len());
    for api in aloud::apis::Api::ALL {
        assert!(
            sim_routes(&builtin)
                .iter()
                .any(|(_, _, a)| *a == api.to_string()),
            "no simulator route for {api}"
        );
    }
}
