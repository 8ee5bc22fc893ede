//! Application state: routes with their clients, the concurrency limiter, progress and capture
//! settings, CORS. Built once from the config; every request shares it.

use crate::capture::CaptureSink;
use crate::config::CorsConfig;
use crate::config::{Config, ServerConfig};
use crate::progress::hub::HubLimits;
use crate::progress::ladder::Rung;
use crate::progress::{Hub, Ladder};
use crate::proxy::wrap::Budget;
use crate::proxy::{CaptureSettings, ProgressSettings, RouteRuntime};
use crate::telemetry::Telemetry;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use tokio::sync::Semaphore;

/// Everything a request needs, shared by all connections.
pub struct App {
    pub server: ServerConfig,
    pub routes: Vec<RouteRuntime>,
    /// Slots for concurrent proxied requests; a response body holds its slot until it ends.
    pub limiter: Arc<Semaphore>,
    pub progress: ProgressSettings,
    pub capture: CaptureSettings,
    pub cors: CorsConfig,
    /// The trace exporter, when `[telemetry]` is on.
    pub telemetry: Option<Arc<Telemetry>>,
}

impl App {
    /// Builds the app from a config whose simulator routes already point at a loopback address.
    pub fn new(
        config: Config,
        sink: Option<Arc<dyn CaptureSink>>,
        telemetry: Option<Arc<Telemetry>>,
    ) -> Result<Arc<App>, String> {
        let routes = config
            .routes
            .into_iter()
            .map(RouteRuntime::new)
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
        let hub = Hub::new(HubLimits {
            retain: p.retain,
            max_requests: p.retain_max,
            await_request: p.await_request,
            ..HubLimits::default()
        });
        Ok(Arc::new(App {
            limiter: Arc::new(Semaphore::new(config.server.max_concurrent_requests)),
            progress: ProgressSettings {
                hub,
                ladder: Arc::new(ladder),
                heartbeat: p.heartbeat,
                hold: p.hold,
                max_wrap_body: usize::try_from(p.max_wrap_body).unwrap_or(usize::MAX),
                wrap_budget: Budget::new(usize::try_from(p.max_wrap_total).unwrap_or(usize::MAX)),
            },
            capture: CaptureSettings {
                sink,
                shutting_down: Arc::new(AtomicBool::new(false)),
            },
            server: config.server,
            cors: config.cors,
            telemetry,
            routes,
        }))
    }

    /// The route whose prefix `path` starts with, and the rest of the path below it.
    pub fn route_for<'p>(&self, path: &'p str) -> Option<(&RouteRuntime, &'p str)> {
        self.routes
            .iter()
            .find_map(|r| r.route.strip(path).map(|rest| (r, rest)))
    }
}
