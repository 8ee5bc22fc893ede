//! The current `App` and reloading it: a new config serves new requests while in-flight ones
//! keep the app they started with; settings that need a restart are logged and kept.
//!
//! Why a `std::sync::RwLock<Arc<App>>`: each request reads it once (an uncontended read lock
//! and an `Arc` clone, about what the clone alone cost before), a reload writes it once, and
//! the lock is never held across an `.await`. `arc-swap` would save the lock's atomic, which no
//! measurement here asks for, at the price of a dependency.

use super::Tasks;
use crate::app::App;
use crate::capture::CaptureSink;
use crate::capture::redaction::{self, Live};
use crate::config::{CaptureLevel, Config, HttpUpstream, Upstream};
use crate::metrics::Metrics;
use crate::telemetry::Telemetry;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The app new requests get.
pub struct Current(RwLock<Arc<App>>);

impl Current {
    pub fn get(&self) -> Arc<App> {
        Arc::clone(&self.0.read().unwrap_or_else(|p| p.into_inner()))
    }

    fn set(&self, app: Arc<App>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = app;
    }
}

/// The current app, and what a reload needs to build the next one.
pub struct Reloader {
    pub current: Arc<Current>,
    /// The running config as loaded (simulator routes not yet pointed at the simulator).
    running: Config,
    /// The built-in simulator's address, once a route needed it.
    simulator: Option<SocketAddr>,
    sim_stop: CancellationToken,
    redaction: Option<Arc<Live>>,
    /// Every secret any config of this run held: a record of an exchange that began before a
    /// reload may still carry an old key, so the redactor keeps them all.
    secrets: Vec<String>,
}

impl Reloader {
    /// Builds the first app (starting the simulator when a route needs it).
    pub async fn start(
        config: Config,
        sink: Option<Arc<dyn CaptureSink>>,
        redaction: Option<Arc<Live>>,
        (metrics, telemetry): (Option<Arc<Metrics>>, Option<Arc<Telemetry>>),
        tasks: &Tasks,
        sim_stop: &CancellationToken,
    ) -> io::Result<Reloader> {
        let mut simulator = None;
        let resolved = resolve(config.clone(), &mut simulator, tasks, sim_stop).await?;
        let app = App::new(resolved, sink, metrics, telemetry).map_err(io::Error::other)?;
        Ok(Reloader {
            current: Arc::new(Current(RwLock::new(app))),
            secrets: redaction::secrets(&config),
            running: config,
            simulator,
            sim_stop: sim_stop.clone(),
            redaction,
        })
    }

    /// Serves new requests with `config`, or logs why not and keeps the running one.
    pub async fn reload(&mut self, mut config: Config, tasks: &Tasks) {
        for key in keep_restart_only(&self.running, &mut config) {
            tracing::warn!(
                key,
                "config reload: {key} needs a restart; the running value is kept"
            );
        }
        let app = self.current.get();
        if app.capture.sink.is_none() && wants_capture(&config) {
            tracing::warn!(
                "config reload: capture was off at start and needs a restart to turn on"
            );
        }
        let loaded = config.clone();
        let built = match resolve(config, &mut self.simulator, tasks, &self.sim_stop).await {
            Ok(resolved) => app.reloaded(resolved),
            Err(e) => Err(e.to_string()),
        };
        match built {
            Ok(next) => {
                self.update_redaction(&loaded);
                let routes = next.routes.len();
                self.current.set(next);
                self.running = loaded;
                tracing::info!(routes, "config reloaded");
            }
            Err(e) => tracing::error!(
                error = %e,
                "config not reloaded: {e}; the running config is kept"
            ),
        }
    }

    /// New keys and tokens are redacted from now on; old ones stay redacted.
    fn update_redaction(&mut self, config: &Config) {
        let Some(live) = &self.redaction else {
            return;
        };
        for s in redaction::secrets(config) {
            if !self.secrets.contains(&s) {
                self.secrets.push(s);
            }
        }
        match redaction::redactor_with(config, self.secrets.clone()) {
            Ok(r) => live.set(r),
            // The redaction settings are restart-only, so they are the running ones.
            Err(e) => tracing::error!(error = %e, "config reload: redaction not updated"),
        }
    }
}

/// Points simulator routes at the built-in simulator, starting it on first need.
async fn resolve(
    mut config: Config,
    simulator: &mut Option<SocketAddr>,
    tasks: &Tasks,
    stop: &CancellationToken,
) -> io::Result<Config> {
    if !config
        .routes
        .iter()
        .any(|r| r.upstream == Upstream::Simulator)
    {
        return Ok(config);
    }
    let addr = match *simulator {
        Some(addr) => addr,
        None => {
            let addr = start_simulator(tasks, stop).await?;
            *simulator = Some(addr);
            addr
        }
    };
    for route in config
        .routes
        .iter_mut()
        .filter(|r| r.upstream == Upstream::Simulator)
    {
        route.upstream = Upstream::Http(HttpUpstream::loopback(addr));
    }
    Ok(config)
}

fn wants_capture(config: &Config) -> bool {
    config.capture.enabled && config.routes.iter().any(|r| r.capture != CaptureLevel::Off)
}

async fn start_simulator(tasks: &Tasks, stop: &CancellationToken) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let stop = stop.clone();
    tasks.spawn("simulator", async move {
        if let Err(e) =
            crate::simulator::serve(listener, async move { stop.cancelled().await }).await
        {
            tracing::error!(error = %e, "built-in simulator stopped");
        }
    });
    tracing::debug!(%addr, "built-in simulator listening");
    Ok(addr)
}

/// Puts the running values of restart-only settings into `new`, naming each that differed:
/// the listener, the limits the accept loop and the limiter were built with, the capture
/// writer and its database, the side channel's hub and its cluster link, the events tier's
/// shared budget, the log format, and whether the listener speaks HTTPS.
pub fn keep_restart_only(running: &Config, new: &mut Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    macro_rules! keep {
        ($key:literal, $($field:ident).+) => {
            if running.$($field).+ != new.$($field).+ {
                changed.push($key);
                new.$($field).+ = running.$($field).+.clone();
            }
        };
    }
    keep!("server.listen", server.listen);
    keep!("server.max_connections", server.max_connections);
    keep!("server.workers", server.workers);
    keep!(
        "server.max_concurrent_requests",
        server.max_concurrent_requests
    );
    keep!("server.log_format", server.log_format);
    keep!("admin.listen", admin.listen);
    keep!("admin.token_env", admin.token);
    keep!("admin.max_model_labels", admin.max_model_labels);
    keep!("telemetry", telemetry);
    keep!("capture.enabled", capture.enabled);
    keep!("capture.database", capture.database);
    keep!("capture.spill_dir", capture.spill_dir);
    keep!("capture.spill_max", capture.spill_max);
    keep!("capture.queue_max", capture.queue_max);
    keep!("capture.flush_interval", capture.flush_interval);
    keep!("capture.batch_max", capture.batch_max);
    keep!("capture.redact", capture.redact);
    keep!("progress.retain", progress.retain);
    keep!("progress.retain_max", progress.retain_max);
    keep!("progress.await_request", progress.await_request);
    keep!("progress.max_wrap_total", progress.max_wrap_total);
    keep!("progress.resume_max_total", progress.resume_max_total);
    // HTTPS on or off is the listener's protocol; a new certificate (or the same files renewed,
    // read again with the config) is used by connections accepted after the reload.
    if running.server.tls.is_some() != new.server.tls.is_some() {
        changed.push("server.tls_cert");
        new.server.tls = running.server.tls.clone();
    }
    keep!("cluster", cluster);
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MapEnv;
    use std::path::Path;

    fn parse(toml: &str) -> Config {
        Config::parse(toml, Path::new("t.toml"), &MapEnv::default()).unwrap_or_else(|e| {
            panic!("{e}");
        })
    }

    #[test]
    fn restart_only_settings_are_named_and_kept() {
        let running = parse(
            "[server]\nlisten = \"127.0.0.1:1\"\n[[routes]]\nname = \"a\"\nprefix = \"/a\"\nupstream = \"http://127.0.0.1:9\"\napi = \"openai\"\n",
        );
        let mut new = parse(
            "[server]\nlisten = \"127.0.0.1:2\"\nshutdown_grace = \"1s\"\n[capture]\ndatabase = \"other.db\"\n[[routes]]\nname = \"b\"\nprefix = \"/b\"\nupstream = \"http://127.0.0.1:9\"\napi = \"openai\"\n",
        );
        let changed = keep_restart_only(&running, &mut new);
        // The spill directory follows the database by default.
        assert_eq!(
            changed,
            ["server.listen", "capture.database", "capture.spill_dir"]
        );
        assert_eq!(new.server.listen, running.server.listen);
        assert_eq!(new.capture.database, running.capture.database);
        // What reloads is left as the new config says.
        assert_eq!(new.server.shutdown_grace, std::time::Duration::from_secs(1));
        assert_eq!(new.routes[0].name, "b");
    }
}
