//! Turns a parsed `RawConfig` into a `Config`, or a `ConfigError` naming file, line, column, key.

use super::raw::{RawConfig, RawLimits, RawRoute};
use super::{
    Config, ConfigError, CorsConfig, Env, Limits, ProgressConfig, Route, ServerConfig, defaults,
};
use crate::apis::stream::Phase;
use addresses::{check_origin, check_prefix, overlaps, parse_upstream};
use std::net::SocketAddr;
use std::ops::Range;
use std::path::Path;

mod addresses;
mod admin;
mod capture;
mod cluster;
mod connect;
mod expected;
mod telemetry;
mod tls;

/// `[server] workers` at most (far past any core count aloud is run on).
const MAX_WORKERS: u32 = 1024;

struct Ctx<'a> {
    text: &'a str,
    file: &'a Path,
}

impl Ctx<'_> {
    fn err(
        &self,
        span: Option<Range<usize>>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: self.file.to_owned(),
            position: span.map(|s| line_col(self.text, s.start)),
            key: key.into(),
            message: message.into(),
        }
    }
}

/// The shortest client token accepted.
const MIN_CLIENT_TOKEN: usize = 16;

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

pub(super) fn parse(text: &str, file: &Path, env: &dyn Env) -> Result<Config, ConfigError> {
    let ctx = Ctx { text, file };
    let de = toml::de::Deserializer::parse(text)
        .map_err(|e| ctx.err(e.span(), "", name_duplicate(text, e.span(), e.message())))?;
    let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." { String::new() } else { key };
        let key = expected::without_serde_internals(&key);
        let inner = e.into_inner();
        let message = expected::name_the_form(&key, inner.message().to_owned());
        ctx.err(inner.span(), key, message)
    })?;
    validate(raw, &ctx, env)
}

/// toml says "duplicate key" without the key: name it (or the table header), from the line
/// its span points into.
fn name_duplicate(text: &str, span: Option<std::ops::Range<usize>>, message: &str) -> String {
    if !message.trim_end().ends_with("duplicate key") {
        return message.to_owned();
    }
    let line = span.and_then(|s| {
        let start = text.get(..s.start)?.rfind('\n').map_or(0, |n| n + 1);
        text.get(start..)?.lines().next()
    });
    match line.map(str::trim) {
        Some(l) if l.starts_with('[') => {
            let header = l.split('#').next().unwrap_or(l).trim();
            format!("duplicate table `{header}`: each table may appear once")
        }
        Some(l) => match l.split('=').next().map(str::trim).filter(|k| !k.is_empty()) {
            Some(k) => format!("duplicate key `{k}`: each key may appear once in a table"),
            None => message.to_owned(),
        },
        None => message.to_owned(),
    }
}

fn validate(mut raw: RawConfig, ctx: &Ctx<'_>, env: &dyn Env) -> Result<Config, ConfigError> {
    let s = raw.server;
    let listen: SocketAddr = match &s.listen {
        None => defaults::LISTEN
            .parse()
            .map_err(|_| ctx.err(None, "server.listen", "bad default"))?,
        Some(l) => l.get_ref().parse().map_err(|_| {
            ctx.err(
                Some(l.span()),
                "server.listen",
                format!(
                    "{:?} is not an address like \"127.0.0.1:8787\"",
                    l.get_ref()
                ),
            )
        })?,
    };
    let client_tokens = match &s.client_tokens_env {
        None => Vec::new(),
        Some(var) => {
            let tokens: Vec<String> = env
                .var(var.get_ref())
                .unwrap_or_default()
                .split(',')
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .collect();
            if tokens.is_empty() {
                return Err(ctx.err(
                    Some(var.span()),
                    "server.client_tokens_env",
                    format!(
                        "environment variable {} is unset or holds no tokens (comma-separated)",
                        var.get_ref()
                    ),
                ));
            }
            // A short token is guessable, and aloud scrubs every copy of a token from what goes
            // upstream: a short one would match ordinary header values. (Not printed: secret.)
            if let Some(n) = tokens
                .iter()
                .position(|t| t.chars().count() < MIN_CLIENT_TOKEN)
            {
                return Err(ctx.err(
                    Some(var.span()),
                    "server.client_tokens_env",
                    format!(
                        "token {} of {} is shorter than {MIN_CLIENT_TOKEN} characters; use long \
                         random tokens (for example `openssl rand -hex 32`)",
                        n + 1,
                        var.get_ref()
                    ),
                ));
            }
            tokens
        }
    };
    let max_concurrent_requests = match &s.max_concurrent_requests {
        Some(n) if *n.get_ref() == 0 => {
            return Err(ctx.err(
                Some(n.span()),
                "server.max_concurrent_requests",
                "must be at least 1",
            ));
        }
        Some(n) => *n.get_ref() as usize,
        None => defaults::MAX_CONCURRENT_REQUESTS as usize,
    };
    let max_connections = match &s.max_connections {
        Some(n) if *n.get_ref() == 0 => {
            return Err(ctx.err(
                Some(n.span()),
                "server.max_connections",
                "must be at least 1",
            ));
        }
        Some(n) => *n.get_ref() as usize,
        None => defaults::MAX_CONNECTIONS as usize,
    };
    let workers = match &s.workers {
        Some(n) if !(1..=MAX_WORKERS).contains(n.get_ref()) => {
            return Err(ctx.err(
                Some(n.span()),
                "server.workers",
                format!("must be from 1 to {MAX_WORKERS}"),
            ));
        }
        Some(n) => Some(*n.get_ref() as usize),
        None => None,
    };
    let max_request_head = match &s.max_request_head {
        Some(n) if n.get_ref().0 < MIN_REQUEST_HEAD => {
            return Err(ctx.err(
                Some(n.span()),
                "server.max_request_head",
                "must be at least 8KiB",
            ));
        }
        Some(n) => n.get_ref().0 as usize,
        None => defaults::MAX_REQUEST_HEAD as usize,
    };
    let server = ServerConfig {
        listen,
        workers,
        client_tokens,
        allow_open_relay: s.allow_open_relay,
        max_concurrent_requests,
        max_connections,
        max_request_head,
        request_head_timeout: s
            .request_head_timeout
            .map_or(defaults::REQUEST_HEAD_TIMEOUT, |d| d.0),
        request_body_timeout: s
            .request_body_timeout
            .map_or(defaults::REQUEST_BODY_TIMEOUT, |d| d.0),
        write_stall_timeout: s
            .write_stall_timeout
            .map_or(defaults::WRITE_STALL_TIMEOUT, |d| d.0),
        shutdown_grace: s.shutdown_grace.map_or(defaults::SHUTDOWN_GRACE, |d| d.0),
        log_format: s.log_format.unwrap_or_default(),
        tls: tls::server_tls(s.tls_cert.as_ref(), s.tls_key.as_ref(), ctx)?,
    };
    let progress = progress(raw.progress, ctx)?;
    let capture = capture::capture(raw.capture, ctx, env)?;
    let admin = admin::admin(raw.admin, ctx, env)?;
    let telemetry = telemetry::telemetry(raw.telemetry, ctx, env)?;
    let cluster = cluster::cluster(raw.cluster, &capture.database, ctx, env)?;
    let cors = CorsConfig {
        origins: raw
            .cors
            .origins
            .iter()
            .map(|o| check_origin(o, ctx))
            .collect::<Result<_, _>>()?,
    };
    let base = merge(&raw.upstream, &Limits::DEFAULT);
    let base_connect = connect::level(&mut raw.upstream, "upstream", ctx)?;
    let mut routes: Vec<Route> = Vec::with_capacity(raw.routes.len());
    for (i, r) in raw.routes.into_iter().enumerate() {
        let route = route(i, r, (&base, &base_connect), ctx, env, &routes)?;
        routes.push(route);
    }
    if routes.is_empty() {
        return Err(ctx.err(None, "routes", "no [[routes]] defined: add at least one"));
    }
    let injects = routes.iter().any(|r| r.api_key_env.is_some());
    if !listen.ip().is_loopback()
        && injects
        && server.client_tokens.is_empty()
        && !server.allow_open_relay
    {
        let span = s.listen.as_ref().map(|l| l.span());
        return Err(ctx.err(
            span,
            "server.listen",
            format!(
                "listening on {listen} (beyond loopback) while routes inject API keys, with no client tokens: \
                 anyone who reaches this port could spend those keys. Set server.client_tokens_env, \
                 listen on 127.0.0.1, or set server.allow_open_relay = true to accept that deliberately"
            ),
        ));
    }
    Ok(Config {
        server,
        progress,
        capture,
        cors,
        admin,
        telemetry,
        cluster,
        routes,
    })
}

fn route(
    i: usize,
    r: RawRoute,
    (base, base_connect): (&Limits, &connect::Level),
    ctx: &Ctx<'_>,
    env: &dyn Env,
    earlier: &[Route],
) -> Result<Route, ConfigError> {
    let key = |field: &str| format!("routes[{i}].{field}");
    let name = r.name.get_ref().clone();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ctx.err(
            Some(r.name.span()),
            key("name"),
            format!("{name:?} must be non-empty letters, digits, '-' or '_'"),
        ));
    }
    if let Some(other) = earlier.iter().find(|o| o.name == name) {
        return Err(ctx.err(
            Some(r.name.span()),
            key("name"),
            format!("route name {:?} is already used", other.name),
        ));
    }
    let prefix = check_prefix(&r.prefix, ctx, &key("prefix"))?;
    if let Some(other) = earlier.iter().find(|o| overlaps(&o.prefix, &prefix)) {
        return Err(ctx.err(
            Some(r.prefix.span()),
            key("prefix"),
            format!(
                "prefix {prefix:?} overlaps route {:?} (prefix {:?})",
                other.name, other.prefix
            ),
        ));
    }
    let upstream = parse_upstream(&r.upstream)
        .map_err(|m| ctx.err(Some(r.upstream.span()), key("upstream"), m))?;
    let api_key_env = r.api_key_env.as_ref().map(|v| v.get_ref().clone());
    let api_key = api_key_env.as_deref().and_then(|v| env.var(v));
    let mut own = RawLimits {
        connect_timeout: r.connect_timeout,
        headers_timeout: r.headers_timeout,
        idle_timeout: r.idle_timeout,
        total_timeout: r.total_timeout,
        max_request_body: r.max_request_body,
        ca_file: r.ca_file,
        client_cert: r.client_cert,
        client_key: r.client_key,
        proxy: r.proxy,
    };
    let limits = merge(&own, base);
    let at = format!("routes[{i}]");
    let own_connect = connect::level(&mut own, &at, ctx)?;
    let connect = connect::connect(
        own_connect,
        base_connect,
        (&upstream, &r.upstream),
        &at,
        ctx,
        env,
    )?;
    let capture_sample = match &r.capture_sample {
        None => 1.0,
        Some(v) if (0.0..=1.0).contains(v.get_ref()) => *v.get_ref(),
        Some(v) => {
            return Err(ctx.err(
                Some(v.span()),
                key("capture_sample"),
                "must be between 0.0 and 1.0",
            ));
        }
    };
    Ok(Route {
        name,
        prefix,
        upstream,
        api: r.api,
        api_key_env,
        api_key,
        progress: r.progress.unwrap_or_default(),
        on_disconnect: r.on_disconnect.unwrap_or_default(),
        capture: r.capture.unwrap_or_default(),
        capture_sample,
        capture_max_body: r
            .capture_max_body
            .map_or(defaults::CAPTURE_MAX_BODY, |s| s.0),
        limits,
        connect,
    })
}

/// Phases whose labels may be configured, by their names in the config.
const PHASES: [(&str, Phase); 9] = [
    ("accepted", Phase::Accepted),
    ("connecting", Phase::Connecting),
    ("queued", Phase::Queued),
    ("waiting", Phase::Waiting),
    ("thinking", Phase::Thinking),
    ("tool", Phase::Tool),
    ("generating", Phase::Generating),
    ("done", Phase::Done),
    ("error", Phase::Error),
];

/// The smallest `max_request_head`: hyper's smallest read buffer.
const MIN_REQUEST_HEAD: u64 = 8192;

/// Longest label text, in characters.
const MAX_LABEL: usize = 120;

fn progress(raw: super::raw::RawProgress, ctx: &Ctx<'_>) -> Result<ProgressConfig, ConfigError> {
    let retain_max = match &raw.retain_max {
        Some(n) if *n.get_ref() == 0 => {
            return Err(ctx.err(Some(n.span()), "progress.retain_max", "must be at least 1"));
        }
        Some(n) => *n.get_ref() as usize,
        None => defaults::RETAIN_MAX as usize,
    };
    let mut labels = Vec::new();
    for (name, rungs) in raw.labels {
        let key = format!("progress.labels.{name}");
        let Some((_, phase)) = PHASES.iter().find(|(n, _)| *n == name) else {
            let names: Vec<&str> = PHASES.iter().map(|(n, _)| *n).collect();
            return Err(ctx.err(
                rungs.first().map(|r| r.text.span()),
                key,
                format!("unknown phase; expected one of {}", names.join(", ")),
            ));
        };
        let mut out = Vec::new();
        for r in rungs {
            let text = r.text.get_ref();
            if text.is_empty()
                || text.chars().count() > MAX_LABEL
                || text.chars().any(char::is_control)
            {
                return Err(ctx.err(
                    Some(r.text.span()),
                    &key,
                    format!("label text must be one line of 1-{MAX_LABEL} characters"),
                ));
            }
            out.push((r.after.0, text.clone()));
        }
        labels.push((*phase, out));
    }
    Ok(ProgressConfig {
        heartbeat: raw.heartbeat.map_or(defaults::HEARTBEAT, |d| d.0),
        hold: raw.hold.map_or(defaults::HOLD, |d| d.0),
        retain: raw.retain.map_or(defaults::RETAIN, |d| d.0),
        retain_max,
        await_request: raw.await_request.map_or(defaults::AWAIT_REQUEST, |d| d.0),
        max_wrap_body: raw.max_wrap_body.map_or(defaults::MAX_WRAP_BODY, |s| s.0),
        max_wrap_total: raw.max_wrap_total.map_or(defaults::MAX_WRAP_TOTAL, |s| s.0),
        resume_max_body: raw
            .resume_max_body
            .map_or(defaults::RESUME_MAX_BODY, |s| s.0),
        resume_max_total: raw
            .resume_max_total
            .map_or(defaults::RESUME_MAX_TOTAL, |s| s.0),
        labels,
        eta: raw.eta.unwrap_or(true),
    })
}

/// Checks a regular expression without keeping it (the redactor compiles it for real).
fn regex_syntax_ok(pattern: &str) -> Result<(), String> {
    regex::Regex::new(pattern)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Limits from `own` keys where set, else from `base` (the `[upstream]` table, or the defaults).
fn merge(own: &RawLimits, base: &Limits) -> Limits {
    let total = own.total_timeout.map_or(base.total_timeout, |d| d.0);
    Limits {
        connect_timeout: own.connect_timeout.map_or(base.connect_timeout, |d| d.0),
        // A route that sets only its total keeps "headers default to the total".
        headers_timeout: own.headers_timeout.map_or(
            if own.total_timeout.is_some() && base.headers_timeout == base.total_timeout {
                total
            } else {
                base.headers_timeout
            },
            |d| d.0,
        ),
        idle_timeout: own.idle_timeout.map_or(base.idle_timeout, |d| d.0),
        total_timeout: total,
        max_request_body: own.max_request_body.map_or(base.max_request_body, |s| s.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("a\nbc", 3), (2, 2));
        assert_eq!(line_col("abc", 0), (1, 1));
    }
}
