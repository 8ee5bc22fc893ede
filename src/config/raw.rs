//! The config file exactly as written: strict serde structs, no meaning attached yet.

use super::units::{Dur, Offset, Size};
use crate::apis::Api;
use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub server: RawServer,
    pub upstream: RawLimits,
    pub progress: RawProgress,
    pub capture: RawCapture,
    pub cors: RawCors,
    pub admin: RawAdmin,
    pub telemetry: RawTelemetry,
    pub cluster: RawCluster,
    pub routes: Vec<RawRoute>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAdmin {
    pub listen: Option<Spanned<String>>,
    pub token_env: Option<Spanned<String>>,
    pub max_model_labels: Option<Spanned<u32>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTelemetry {
    pub otlp_endpoint: Option<Spanned<String>>,
    pub service_name: Option<Spanned<String>>,
    pub sample: Option<Spanned<f64>>,
    pub capture_content: Option<bool>,
    pub headers_env: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCluster {
    pub enabled: Option<bool>,
    pub database: Option<Spanned<String>>,
    pub database_env: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawProgress {
    pub heartbeat: Option<Dur>,
    pub hold: Option<Dur>,
    pub retain: Option<Dur>,
    pub retain_max: Option<Spanned<u32>>,
    pub await_request: Option<Dur>,
    pub max_wrap_body: Option<Size>,
    pub max_wrap_total: Option<Size>,
    pub resume_max_body: Option<Size>,
    pub resume_max_total: Option<Size>,
    pub eta: Option<bool>,
    /// Phase name -> rungs.
    /// Keyed by a plain string, not a spanned one: the error path of a bad rung can then name
    /// its phase (`progress.labels.thinking[0].after`); an unknown phase points at its first
    /// rung's text.
    pub labels: std::collections::BTreeMap<String, Vec<RawRung>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRung {
    pub after: Offset,
    pub text: Spanned<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCapture {
    pub enabled: Option<bool>,
    pub database: Option<Spanned<String>>,
    pub database_env: Option<Spanned<String>>,
    pub spill_dir: Option<Spanned<String>>,
    pub spill_max: Option<Size>,
    pub queue_max: Option<Size>,
    pub flush_interval: Option<Dur>,
    pub batch_max: Option<Spanned<u32>>,
    pub redact: RawRedact,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRedact {
    pub json_paths: Vec<String>,
    pub patterns: Vec<Spanned<String>>,
    pub emails: Option<bool>,
    pub card_numbers: Option<bool>,
    pub api_keys: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCors {
    pub origins: Vec<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    pub listen: Option<Spanned<String>>,
    pub client_tokens_env: Option<Spanned<String>>,
    pub allow_open_relay: bool,
    pub max_concurrent_requests: Option<Spanned<u32>>,
    pub max_connections: Option<Spanned<u32>>,
    pub workers: Option<Spanned<u32>>,
    pub max_request_head: Option<Spanned<Size>>,
    pub request_head_timeout: Option<Dur>,
    pub request_body_timeout: Option<Dur>,
    pub write_stall_timeout: Option<Dur>,
    pub shutdown_grace: Option<Dur>,
    pub log_format: Option<LogFormat>,
    pub tls_cert: Option<Spanned<String>>,
    pub tls_key: Option<Spanned<String>>,
}

/// Upstream limits and connection settings: in `[upstream]` for every route, or on one route
/// to override.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLimits {
    pub connect_timeout: Option<Dur>,
    pub headers_timeout: Option<Dur>,
    pub idle_timeout: Option<Dur>,
    pub total_timeout: Option<Dur>,
    pub max_request_body: Option<Size>,
    pub ca_file: Option<Spanned<String>>,
    pub client_cert: Option<Spanned<String>>,
    pub client_key: Option<Spanned<String>>,
    pub proxy: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: Spanned<String>,
    pub prefix: Spanned<String>,
    pub upstream: Spanned<String>,
    pub api: Api,
    #[serde(default)]
    pub api_key_env: Option<Spanned<String>>,
    #[serde(default)]
    pub progress: Option<Tier>,
    #[serde(default)]
    pub on_disconnect: Option<OnDisconnect>,
    #[serde(default)]
    pub capture: Option<CaptureLevel>,
    #[serde(default)]
    pub capture_sample: Option<Spanned<f64>>,
    #[serde(default)]
    pub capture_max_body: Option<Size>,
    #[serde(default)]
    pub connect_timeout: Option<Dur>,
    #[serde(default)]
    pub headers_timeout: Option<Dur>,
    #[serde(default)]
    pub idle_timeout: Option<Dur>,
    #[serde(default)]
    pub total_timeout: Option<Dur>,
    #[serde(default)]
    pub max_request_body: Option<Size>,
    #[serde(default)]
    pub ca_file: Option<Spanned<String>>,
    #[serde(default)]
    pub client_cert: Option<Spanned<String>>,
    #[serde(default)]
    pub client_key: Option<Spanned<String>>,
    #[serde(default)]
    pub proxy: Option<Spanned<String>>,
}

/// How much of an exchange a route captures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CaptureLevel {
    /// Metadata, the request body, the reassembled response and deltas.
    #[default]
    Full,
    /// Everything but bodies, texts and deltas.
    Metadata,
    Off,
}

/// How much progress a request gets (route default; `Aloud-Progress` overrides per request).
/// What a client leaving mid-answer does to the upstream (route maximum; `Aloud-On-Disconnect`
/// may lower it per request).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnDisconnect {
    /// The upstream request is cancelled (nothing is kept).
    #[default]
    Cancel,
    /// The upstream is read to its end and its bytes kept for a resume.
    Finish,
}

impl OnDisconnect {
    pub fn parse(text: &str) -> Option<OnDisconnect> {
        match text.trim().to_ascii_lowercase().as_str() {
            "cancel" => Some(OnDisconnect::Cancel),
            "finish" => Some(OnDisconnect::Finish),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Nothing is added to the response (the side channel still works).
    Off,
    /// `: aloud {...}` comment lines between events while the upstream is silent.
    #[default]
    Comments,
    /// An SSE stream of `aloud.*` events around the upstream's own.
    Events,
}

impl Tier {
    pub fn parse(text: &str) -> Option<Tier> {
        match text.trim().to_ascii_lowercase().as_str() {
            "off" => Some(Tier::Off),
            "comments" => Some(Tier::Comments),
            "events" => Some(Tier::Events),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Off => "off",
            Tier::Comments => "comments",
            Tier::Events => "events",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}
