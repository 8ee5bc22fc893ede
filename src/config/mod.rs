//! Configuration: the TOML file parsed strictly (`raw`), then validated into these types.

pub mod connect;
pub mod database;
pub mod env;
pub mod raw;
pub mod tls;
pub mod tokens;
pub mod units;
mod validate;

use crate::apis::Api;
use crate::apis::stream::Phase;
use http::uri::{Authority, Scheme};
pub use raw::{CaptureLevel, LogFormat, OnDisconnect, Tier};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use connect::{Connect, EgressProxy, Identity};
pub use database::{Database, PostgresUrl, SslMode};
pub use env::{Env, MapEnv, ProcessEnv};
pub use tokens::Owner;

/// Defaults, written down once; docs/config.md repeats them and a test keeps the two in step.
pub mod defaults {
    use std::time::Duration;
    pub const LISTEN: &str = "127.0.0.1:8787";
    pub const ADMIN_LISTEN: &str = "127.0.0.1:9787";
    pub const MAX_MODEL_LABELS: u32 = 20;
    pub const MAX_CONCURRENT_REQUESTS: u32 = 10_000;
    pub const MAX_CONNECTIONS: u32 = 4096;
    pub const MAX_REQUEST_HEAD: u64 = 64 << 10;
    pub const REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(30);
    pub const REQUEST_BODY_TIMEOUT: Duration = Duration::from_secs(30);
    pub const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(60);
    pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
    pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
    pub const TOTAL_TIMEOUT: Duration = Duration::from_secs(1800);
    pub const MAX_REQUEST_BODY: u64 = 32 << 20;
    pub const HEARTBEAT: Duration = Duration::from_secs(1);
    pub const HOLD: Duration = Duration::from_secs(5);
    pub const MAX_WRAP_BODY: u64 = 8 << 20;
    pub const MAX_WRAP_TOTAL: u64 = 256 << 20;
    pub const RESUME_MAX_BODY: u64 = 8 << 20;
    pub const RESUME_MAX_TOTAL: u64 = 256 << 20;
    pub const RETAIN: Duration = Duration::from_secs(300);
    pub const RETAIN_MAX: u32 = 10_000;
    pub const AWAIT_REQUEST: Duration = Duration::from_secs(30);
    pub const CAPTURE_MAX_BODY: u64 = 1 << 20;
    pub const DATABASE: &str = "aloud.db";
    /// The spill directory when capture goes to Postgres (relative to the working directory).
    pub const POSTGRES_SPILL_DIR: &str = "aloud-capture.spill";
    pub const SPILL_MAX: u64 = 1 << 30;
    pub const QUEUE_MAX: u64 = 64 << 20;
    pub const FLUSH_INTERVAL: Duration = Duration::from_millis(200);
    pub const BATCH_MAX: u32 = 256;
    pub const SERVICE_NAME: &str = "aloud";
    pub const TELEMETRY_SAMPLE: f64 = 1.0;
}

/// The upstream value that selects the built-in simulator.
pub const BUILTIN_SIMULATOR: &str = "builtin:simulator";

#[derive(Clone, Debug)]
pub struct Config {
    pub server: ServerConfig,
    pub progress: ProgressConfig,
    pub capture: CaptureConfig,
    pub cors: CorsConfig,
    pub admin: AdminConfig,
    pub telemetry: TelemetryConfig,
    pub cluster: ClusterConfig,
    pub routes: Vec<Route>,
}

/// The admin listener: `/metrics`, `/healthz`, `/readyz`, apart from the proxy's port.
#[derive(Clone, Debug)]
pub struct AdminConfig {
    /// Where it listens; `None` when `listen = ""` turned it (and metrics) off.
    pub listen: Option<SocketAddr>,
    /// A bearer token every admin request must present (read from `token_env`).
    pub token: Option<String>,
    /// Distinct `model` label values per route; later models count as `other`.
    pub max_model_labels: usize,
}

/// The side channel across replicas (`[cluster]`): Postgres LISTEN/NOTIFY between aloud
/// processes that share one database.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterConfig {
    /// The Postgres the replicas meet in; `None` when `[cluster]` is off.
    pub database: Option<PostgresUrl>,
}

impl ClusterConfig {
    pub fn enabled(&self) -> bool {
        self.database.is_some()
    }
}

/// OpenTelemetry traces (`[telemetry]`); off unless `otlp_endpoint` is set.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TelemetryConfig {
    /// The OTLP/HTTP (protobuf) traces URL, used as it is; `None` turns traces off.
    pub otlp_endpoint: Option<http::Uri>,
    /// `service.name` of the resource every span belongs to.
    pub service_name: String,
    /// The share of new traces sampled, 0.0 to 1.0 (a client's sampled flag decides its own).
    pub sample: f64,
    /// Redacted prompts and answers go into span events.
    pub capture_content: bool,
    /// Extra headers for the collector (from `headers_env`), already checked as header values.
    pub headers: Vec<(String, String)>,
}

#[derive(Clone, Debug)]
pub struct CaptureConfig {
    pub enabled: bool,
    /// The SQLite file or the Postgres database (`database`, or the URL in `database_env`).
    pub database: Database,
    /// Where records wait while the database is unavailable.
    pub spill_dir: PathBuf,
    /// Spill size past which records are dropped (counted and logged).
    pub spill_max: u64,
    /// Bytes of records waiting in memory for the writer.
    pub queue_max: u64,
    pub flush_interval: Duration,
    pub batch_max: usize,
    pub redact: RedactConfig,
}

/// Redaction applied before anything is stored, spilled or exported.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RedactConfig {
    /// JSON paths whose values are replaced whole, like `messages[*].content` or `user`.
    pub json_paths: Vec<String>,
    /// Regular expressions whose matches are replaced.
    pub patterns: Vec<String>,
    pub emails: bool,
    pub card_numbers: bool,
    pub api_keys: bool,
}

#[derive(Clone, Debug)]
pub struct ProgressConfig {
    /// Upstream silence after which a comment or progress event is sent.
    pub heartbeat: Duration,
    /// How long a streaming request in the comments tier waits for the upstream's status.
    pub hold: Duration,
    /// How long a finished request's progress stays available on the side channel.
    pub retain: Duration,
    /// How many requests the side channel remembers at most.
    pub retain_max: usize,
    /// How long a side-channel subscriber waits for its request to arrive.
    pub await_request: Duration,
    /// Events tier: the largest whole (non-streaming) body collected for `aloud.result`.
    pub max_wrap_body: u64,
    /// Events tier: what every request's collected bodies may hold together.
    pub max_wrap_total: u64,
    /// `on_disconnect = "finish"`: the most of one answer kept for a resume.
    pub resume_max_body: u64,
    /// `on_disconnect = "finish"`: what every kept answer may hold together.
    pub resume_max_total: u64,
    /// Configured label ladders: phase -> (time in phase, text), replacing the defaults.
    pub labels: Vec<(Phase, Vec<(Duration, String)>)>,
    /// Estimate how much longer (`eta_ms`, `fraction`, …) and learn from finished exchanges.
    pub eta: bool,
}

#[derive(Clone, Debug, Default)]
pub struct CorsConfig {
    /// Allowed browser origins; `*` allows any. Empty: no CORS headers are sent.
    pub origins: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Tokens that clients present to use aloud; empty means aloud is open to its listeners.
    pub client_tokens: Vec<String>,
    pub allow_open_relay: bool,
    pub max_concurrent_requests: usize,
    /// Open client connections at most; the accept loop closes further ones at once.
    pub max_connections: usize,
    /// Threads that serve requests; `None`: one per core available to the process.
    pub workers: Option<usize>,
    pub max_request_head: usize,
    pub request_head_timeout: Duration,
    /// Longest silence while reading a client's request body; past it, 408.
    pub request_body_timeout: Duration,
    pub write_stall_timeout: Duration,
    pub shutdown_grace: Duration,
    pub log_format: LogFormat,
    /// HTTPS (HTTP/2 and HTTP/1.1 by ALPN) with this certificate and key; `None`: plain HTTP/1.1.
    pub tls: Option<tls::ServerTls>,
}

#[derive(Clone, Debug)]
pub struct Route {
    pub name: String,
    /// "/openai": matches "/openai" and "/openai/...", never "/openaix". "/" matches all.
    pub prefix: String,
    pub upstream: Upstream,
    pub api: Api,
    pub api_key_env: Option<String>,
    /// The key read from `api_key_env` at load time; never logged.
    pub api_key: Option<String>,
    /// The progress tier for requests that send no `Aloud-Progress` header.
    pub progress: Tier,
    /// Whether a client leaving cancels the upstream or lets it finish for a resume.
    pub on_disconnect: OnDisconnect,
    /// What is captured of this route's exchanges.
    pub capture: CaptureLevel,
    /// The share of exchanges captured, 0.0 to 1.0.
    pub capture_sample: f64,
    /// Largest request or response body stored, in bytes (longer ones are cut and marked).
    pub capture_max_body: u64,
    pub limits: Limits,
    /// Trust roots, client certificate and egress proxy for this route's upstream.
    pub connect: Connect,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Upstream {
    /// The built-in simulator; `serve` starts it on a loopback port and rewrites this to `Http`.
    Simulator,
    Http(HttpUpstream),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpUpstream {
    pub scheme: Scheme,
    pub authority: Authority,
    /// A path the upstream's own paths sit under, without a trailing slash ("" for none).
    pub base_path: String,
}

impl HttpUpstream {
    pub fn loopback(addr: SocketAddr) -> Self {
        HttpUpstream {
            scheme: Scheme::HTTP,
            #[expect(
                clippy::expect_used,
                reason = "a socket address is always a valid authority"
            )]
            authority: addr
                .to_string()
                .parse()
                .expect("socket address is an authority"),
            base_path: String::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub connect_timeout: Duration,
    /// Time to the upstream's response headers; defaults to the total, since a non-streaming
    /// reasoning call sends its headers last.
    pub headers_timeout: Duration,
    /// Longest silence between two upstream body chunks.
    pub idle_timeout: Duration,
    /// Whole exchange, from the request head to the last body byte.
    pub total_timeout: Duration,
    pub max_request_body: u64,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        connect_timeout: defaults::CONNECT_TIMEOUT,
        headers_timeout: defaults::TOTAL_TIMEOUT,
        idle_timeout: defaults::IDLE_TIMEOUT,
        total_timeout: defaults::TOTAL_TIMEOUT,
        max_request_body: defaults::MAX_REQUEST_BODY,
    };
}

impl Route {
    /// The rest of `path` after this route's prefix, if the prefix matches on a segment boundary.
    pub fn strip<'p>(&self, path: &'p str) -> Option<&'p str> {
        if self.prefix == "/" {
            return Some(path);
        }
        let rest = path.strip_prefix(self.prefix.as_str())?;
        (rest.is_empty() || rest.starts_with('/')).then_some(rest)
    }
}

impl Config {
    /// The route whose prefix matches `path`; prefixes never overlap, so at most one does.
    pub fn route_for<'p>(&self, path: &'p str) -> Option<(&Route, &'p str)> {
        self.routes
            .iter()
            .find_map(|r| r.strip(path).map(|rest| (r, rest)))
    }

    /// Whether some route claims `/` itself (then `/` is proxied, not redirected).
    pub fn route_claims_root(&self) -> bool {
        self.routes.iter().any(|r| r.prefix == "/")
    }

    /// The built-in defaults: a simulator route per api (`sim`, `sim-anthropic`, `sim-gemini`,
    /// `sim-ollama`), so `aloud serve` works with no file and no keys.
    pub fn builtin(env: &dyn Env) -> Result<Config, ConfigError> {
        Self::parse(BUILTIN_CONFIG, Path::new("<built-in defaults>"), env)
    }

    /// Reads and validates `path`.
    pub fn load(path: &Path, env: &dyn Env) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_owned(),
            position: None,
            key: String::new(),
            message: format!("cannot read config file: {e}"),
        })?;
        Self::parse(&text, path, env)
    }

    /// `--config FILE` when given, else `./config.toml` when present, else built-in defaults.
    pub fn discover(explicit: Option<&Path>, env: &dyn Env) -> Result<Config, ConfigError> {
        match explicit {
            Some(path) => Self::load(path, env),
            None if Path::new("config.toml").exists() => Self::load(Path::new("config.toml"), env),
            None => Self::builtin(env),
        }
    }

    /// Parses TOML text; `file` is only used to name the source in errors.
    pub fn parse(text: &str, file: &Path, env: &dyn Env) -> Result<Config, ConfigError> {
        validate::parse(text, file, env)
    }
}

/// The simulator routes of the shipped `config.toml`, one per api (a test keeps the two equal).
const BUILTIN_CONFIG: &str = r#"
[[routes]]
name = "sim"
prefix = "/sim"
upstream = "builtin:simulator"
api = "openai"

[[routes]]
name = "sim-anthropic"
prefix = "/sim-anthropic"
upstream = "builtin:simulator"
api = "anthropic"

[[routes]]
name = "sim-gemini"
prefix = "/sim-gemini"
upstream = "builtin:simulator"
api = "gemini"

[[routes]]
name = "sim-ollama"
prefix = "/sim-ollama"
upstream = "builtin:simulator"
api = "ollama"
"#;

/// A config problem, located by file, line, column and key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based (line, column), when the problem has a place in the file.
    pub position: Option<(usize, usize)>,
    /// The key path, like `routes[1].prefix`; empty when the problem is the whole file.
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, col)) = self.position {
            write!(f, ":{line}:{col}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}
