//! `aloud check-config`: parse and validate, print the routes or the located error.

use crate::config::{Config, ProcessEnv, Upstream};
use std::path::Path;
use std::process::ExitCode;

pub fn run(path: Option<&Path>) -> ExitCode {
    match Config::discover(path, &ProcessEnv)
        .map_err(|e| e.to_string())
        .and_then(|c| {
            at_start(&c)?;
            Ok(c)
        }) {
        Ok(config) => {
            println!("{}", describe(&config));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// What `serve` would refuse at start beyond the config's own checks: a redaction setting the
/// redactor cannot build (a bad `json_paths` entry or pattern), and one address for both
/// listeners.
fn at_start(config: &Config) -> Result<(), String> {
    crate::capture::redaction::redactor(config)?;
    if config.admin.listen == Some(config.server.listen) {
        return Err(format!(
            "admin.listen: {} is server.listen too; give the admin listener its own port",
            config.server.listen
        ));
    }
    Ok(())
}

/// A human summary of what the config means.
pub fn describe(config: &Config) -> String {
    let mut out = format!("listen {}\n", config.server.listen);
    if let Some(tls) = &config.server.tls {
        out.push_str(&format!(
            "https (HTTP/2 and HTTP/1.1): certificate {}, key {}\n",
            tls.cert_file.display(),
            tls.key_file.display()
        ));
    }
    if !config.server.client_tokens.is_empty() {
        out.push_str(&format!(
            "client tokens: {} configured\n",
            config.server.client_tokens.len()
        ));
    }
    let n = config.routes.len();
    out.push_str(&format!("{n} route{}:\n", if n == 1 { "" } else { "s" }));
    // Columns as wide as the longest name and prefix.
    let name_w = config
        .routes
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(0);
    let prefix_w = config
        .routes
        .iter()
        .map(|r| r.prefix.len())
        .max()
        .unwrap_or(0);
    for r in &config.routes {
        let upstream = match &r.upstream {
            Upstream::Simulator => crate::config::BUILTIN_SIMULATOR.to_owned(),
            Upstream::Http(h) => format!("{}://{}{}", h.scheme, h.authority, h.base_path),
        };
        let key = match (&r.api_key_env, &r.api_key) {
            (Some(var), Some(_)) => format!(", key from {var}"),
            (Some(var), None) => format!(", key from {var}, unset: clients send their own"),
            _ => String::new(),
        };
        out.push_str(&format!(
            "  {:<name_w$}  {:<prefix_w$}  -> {} (api {}{key})\n",
            r.name, r.prefix, upstream, r.api
        ));
    }
    out.trim_end().to_owned()
}
