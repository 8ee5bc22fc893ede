//! Application state: routes with their clients, the concurrency limiter, progress and capture
//! settings, CORS. Built from the config, and again on a reload; every request shares the one
//! current when it arrived.

use crate::capture::CaptureSink;
use crate::config::CorsConfig;
use crate::config::{Config, ServerConfig};
use crate::metrics::Metrics;
use crate::progress::eta::History;
use crate::progress::hub::HubLimits;
use crate::progress::keep::Keeper;
use crate::progress::ladder::Rung;
use crate::progress::{Hub, Ladder};
use crate::proxy::finish::Finishing;
use crate::proxy::upstream::SpawnHook;
use crate::proxy::wrap::Budget;
use crate::proxy::{CaptureSettings, ProgressSettings, RouteRuntime};
use crate::telemetry::Telemetry;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use tokio::sync::Semaphore;

/// What a reload keeps from the app before it.
struct Kept {
    limiter: Arc<Semaphore>,
    hub: Arc<Hub>,
    wrap_budget: Arc<Budget>,
    eta: Arc<History>,
    capture: CaptureSettings,
    metrics: Option<Arc<Metrics>>,
    telemetry: Option<Arc<Telemetry>>,
    finishing: Finishing,
    upstream_tasks: SpawnHook,
}

/// Everything a request needs, shared by all connections.
pub struct App {
    pub server: ServerConfig,
    pub routes: Vec<RouteRuntime>,
    /// Slots for concurrent proxied requests; a response body holds its slot until it ends.
    pub limiter: Arc<Semaphore>,
    pub progress: ProgressSettings,
    pub capture: CaptureSettings,
    pub cors: CorsConfig,
    /// Prometheus metrics, when the admin listener is on.
    pub metrics: Option<Arc<Metrics>>,
    /// The trace exporter, when `[telemetry]` is on.
    pub telemetry: Option<Arc<Telemetry>>,
    /// Answers kept for a resume (`on_disconnect = "finish"`), and how a leaving client's
    /// exchange is detached.
    pub finishing: Finishing,
    /// Where plain-http routes' upstream connections run (installed by the server).
    pub upstream_tasks: SpawnHook,
}

impl App {
    /// Builds the app from a config whose simulator routes already point at a loopback address.
    /// With `metrics`, every route gets its handles, and the side channel is watched.
    pub fn new(
        config: Config,
        sink: Option<Arc<dyn CaptureSink>>,
        metrics: Option<Arc<Metrics>>,
        telemetry: Option<Arc<Telemetry>>,
    ) -> Result<Arc<App>, String> {
        let kept = Kept {
            limiter: Arc::new(Semaphore::new(config.server.max_concurrent_requests)),
            hub: Hub::new(HubLimits {
                retain: config.progress.retain,
                max_requests: config.progress.retain_max,
                await_request: config.progress.await_request,
                ..HubLimits::default()
            }),
            wrap_budget: Budget::new(
                usize::try_from(config.progress.max_wrap_total).unwrap_or(usize::MAX),
            ),
            eta: Arc::new(History::new()),
            capture: CaptureSettings {
                sink,
                shutting_down: Arc::new(AtomicBool::new(false)),
            },
            metrics,
            telemetry,
            finishing: Finishing {
                keeper: Keeper::new(
                    usize::try_from(config.progress.resume_max_total).unwrap_or(usize::MAX),
                    config.progress.retain,
                    config.progress.retain_max,
                ),
                detach: Arc::new(OnceLock::new()),
                max_body: 0,
                later: Arc::new(crate::proxy::later::Laters::new()),
            },
            upstream_tasks: SpawnHook::default(),
        };
        if let Some(m) = &kept.metrics {
            m.watch_hub(Arc::clone(&kept.hub));
        }
        Self::build(config, kept)
    }

    /// The app for a reloaded config: new routes, timeouts, progress settings and tokens, with
    /// what in-flight requests share kept (the limiter, the side channel's hub, the events
    /// tier's body budget, the ETA history, the capture sink, the draining flag, metrics and the trace exporter). The config's restart-only
    /// settings are expected to equal this app's.
    pub fn reloaded(&self, config: Config) -> Result<Arc<App>, String> {
        let kept = Kept {
            limiter: Arc::clone(&self.limiter),
            hub: Arc::clone(&self.progress.hub),
            wrap_budget: Arc::clone(&self.progress.wrap_budget),
            eta: Arc::clone(&self.progress.eta),
            capture: CaptureSettings {
                sink: self.capture.sink.clone(),
                shutting_down: Arc::clone(&self.capture.shutting_down),
            },
            metrics: self.metrics.clone(),
            telemetry: self.telemetry.clone(),
            finishing: self.finishing.clone(),
            upstream_tasks: Arc::clone(&self.upstream_tasks),
        };
        Self::build(config, kept)
    }

    /// Proxied requests holding a slot now.
    pub fn in_flight(&self) -> usize {
        self.server
            .max_concurrent_requests
            .saturating_sub(self.limiter.available_permits())
    }

    fn build(config: Config, kept: Kept) -> Result<Arc<App>, String> {
        let routes = config
            .routes
            .into_iter()
            .map(|r| {
                let mut rt = RouteRuntime::new(r, &kept.upstream_tasks)?;
                rt.metrics = kept
                    .metrics
                    .as_ref()
                    .map(|m| m.route(&rt.route.name, rt.route.api));
                Ok::<_, String>(rt)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let p = &config.progress;
        let mut ladder = Ladder::default();
        for (phase, rungs) in &p.labels {
            ladder.set(
                *phase,
                rungs
                    .iter()
                    .map(|(after, text)| Rung {
                        after: *after,
                        text: text.clone(),
                    })
                    .collect(),
            );
        }
        Ok(Arc::new(App {
            limiter: kept.limiter,
            progress: ProgressSettings {
                hub: kept.hub,
                ladder: Arc::new(ladder),
                heartbeat: p.heartbeat,
                hold: p.hold,
                max_wrap_body: usize::try_from(p.max_wrap_body).unwrap_or(usize::MAX),
                wrap_budget: kept.wrap_budget,
                eta: kept.eta,
                eta_on: p.eta,
            },
            capture: kept.capture,
            server: config.server,
            cors: config.cors,
            telemetry: kept.telemetry,
            routes,
            metrics: kept.metrics,
            finishing: Finishing {
                max_body: usize::try_from(p.resume_max_body).unwrap_or(usize::MAX),
                ..kept.finishing
            },
            upstream_tasks: kept.upstream_tasks,
        }))
    }

    /// The route whose prefix `path` starts with, and the rest of the path below it.
    pub fn route_for<'p>(&self, path: &'p str) -> Option<(&RouteRuntime, &'p str)> {
        self.routes
            .iter()
            .find_map(|r| r.route.strip(path).map(|rest| (r, rest)))
    }
}
