//! Seeded workloads for the ETA accuracy benchmark, timed by the simulator's own script (pure):
//! when each call's first answer token and its end would come, without running a server.
//!
//! Two corpora: `default` is the simulator as it answers any request (the seed alone picks a
//! 10–25 s call, whatever the request says, so no estimator can tell calls apart); `mix` is a
//! workload of three models, three reasoning efforts and three prompt sizes, where the request
//! decides the expected think time and answer length and the seed varies them around it as
//! real calls vary (log-normal spread: 20% on thinking, 30% on answer length; the script picks
//! the pace per token from the seed, 20–40 ms).

use super::knobs::Knobs;
use super::rng::Rng;
use super::script::Script;

/// One call of a workload: the request, and when the simulator answers it.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    pub path: &'static str,
    pub body: String,
    /// `x-sim-*` headers that make the simulator play this call.
    pub headers: Vec<(&'static str, String)>,
    /// ms after the response head.
    pub first_token_ms: u64,
    pub total_ms: u64,
}

const MODELS: [(&str, f64, f64); 3] = [
    ("sim-mini", 3_000.0, 120.0),
    ("sim-reasoner", 9_000.0, 200.0),
    ("sim-large", 16_000.0, 300.0),
];
const EFFORTS: [(&str, f64); 3] = [("low", 0.5), ("medium", 1.0), ("high", 2.0)];
const SIZES: [(usize, f64); 3] = [(600, 1.0), (6_000, 1.15), (40_000, 1.4)];

fn unit(rng: &mut Rng) -> f64 {
    ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut Rng) -> f64 {
    let (u, v) = (unit(rng), unit(rng));
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

fn body(model: &str, effort: Option<&str>, len: usize) -> String {
    let effort = effort.map_or_else(String::new, |e| format!(",\"reasoning_effort\":\"{e}\""));
    let head = format!(
        "{{\"model\":\"{model}\",\"stream\":true{effort},\"messages\":[{{\"role\":\"user\",\"content\":\""
    );
    let tail = "\"}]}";
    let pad = len.saturating_sub(head.len() + tail.len()).max(1);
    format!("{head}{}{tail}", "x".repeat(pad))
}

fn timed(path: &'static str, body: String, headers: Vec<(&'static str, String)>) -> Call {
    let mut map = http::HeaderMap::new();
    for (k, v) in &headers {
        if let Ok(v) = http::HeaderValue::from_str(v) {
            map.insert(*k, v);
        }
    }
    let knobs = Knobs::from_headers(&map).unwrap_or_default();
    let model = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("model")?.as_str().map(str::to_owned));
    let script = Script::new(model.as_deref(), body.len(), knobs);
    let first_token_ms = script.answer_at(0).min(script.total_ms());
    let total_ms = script.total_ms().max(1);
    Call {
        path,
        body,
        headers,
        first_token_ms,
        total_ms,
    }
}

/// Call `seed` of the default corpus: the simulator with nothing but a seed.
pub fn default_call(seed: u64) -> Call {
    timed(
        "/v1/chat/completions",
        body("sim-reasoner", None, 600),
        vec![("x-sim-seed", seed.to_string())],
    )
}

/// Call `seed` of the mixed corpus.
pub fn mix_call(seed: u64) -> Call {
    let mut rng = Rng::new(seed ^ 0xE7A0_0000_0000_0011);
    let (model, think, tokens) = MODELS[rng.range(0, 2) as usize];
    let (effort, factor) = EFFORTS[rng.range(0, 2) as usize];
    let (len, size_factor) = SIZES[rng.range(0, 2) as usize];
    let think_ms = think * factor * size_factor * (0.2 * normal(&mut rng)).exp();
    let tokens = (tokens * (0.3 * normal(&mut rng)).exp()).clamp(10.0, 2_000.0);
    timed(
        "/v1/chat/completions",
        body(model, Some(effort), len),
        vec![
            ("x-sim-seed", seed.to_string()),
            ("x-sim-think-ms", (think_ms.round() as u64).to_string()),
            ("x-sim-tokens", (tokens.round() as u64).to_string()),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_seeded_and_timed_by_the_script() {
        assert_eq!(mix_call(7), mix_call(7));
        let d = default_call(3);
        assert!((10_000..=25_000).contains(&d.total_ms), "{}", d.total_ms);
        assert!(d.first_token_ms < d.total_ms);
        let m = mix_call(11);
        assert!(m.body.contains("reasoning_effort"));
        assert!(m.headers.iter().any(|(k, _)| *k == "x-sim-think-ms"));
    }
}
