//! The server: capture writer first and last, the simulator, the accept loop (`accept`),
//! reloads (`reload`), graceful and immediate shutdown, and task tracking.

mod accept;
pub mod admin;
pub mod dashboard;
mod finishing;
mod limit;
#[cfg(test)]
mod panic_tests;
mod refusals;
mod reload;
pub mod seed;
mod spread;
pub mod stall;
pub mod tasks;
mod tls;
mod upstreams;
mod workers;

use crate::capture::redaction::Live;
use crate::capture::sink::WriterSink;
use crate::capture::{CaptureSink, CaptureWriter, WriterConfig};
use crate::config::CaptureLevel;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::open_writer;
use crate::telemetry::Telemetry;
use reload::Reloader;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;
pub use tasks::Tasks;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// What the process asks of a running server.
#[derive(Debug)]
pub enum Command {
    /// Stop. The first one drains: no new connections, and in-flight requests get the grace
    /// period. A second one stops at once: connections are cut, cut exchanges are recorded as
    /// `shutdown`, and capture goes to the spill without waiting for the database.
    Stop,
    /// Serve new requests with this config (read and validated by the caller); in-flight ones
    /// keep theirs. Settings that need a restart are logged and kept.
    Reload(Box<Config>),
}

/// How the server stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// Every connection drained, or the grace period ran out and the rest were cut.
    Drained,
    /// A second stop cut everything at once.
    Now,
    /// A serving thread failed (it panicked): the rest drained as on a first stop (`now`: a
    /// second stop cut them at once), and the process exits with an error for its supervisor
    /// to restart it.
    Failed { now: bool },
}

impl Stopped {
    /// Whether a second stop cut everything at once: capture goes to the spill, telemetry gets
    /// a moment only.
    fn now(&self) -> bool {
        matches!(self, Stopped::Now | Stopped::Failed { now: true })
    }
}

/// The sockets aloud serves: the proxy's, and the admin listener's (metrics and probes), if any.
pub struct Listeners {
    pub proxy: TcpListener,
    pub admin: Option<TcpListener>,
}

impl Listeners {
    /// The proxy's socket alone: no admin listener, no metrics.
    pub fn proxy(proxy: TcpListener) -> Self {
        Listeners { proxy, admin: None }
    }
}

/// Serves `config` on `listeners` until `shutdown` resolves, then stops accepting, lets
/// in-flight requests finish within the grace period, and drains every task it started.
///
/// Simulator routes get a simulator on a loopback port of their own, reached like any upstream.
pub async fn serve(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    until(shutdown, |commands| {
        serve_inner(config, listeners, commands, Capture::FromConfig)
    })
    .await
}

/// `serve`, steered by `commands`: stops (one to drain, a second to stop at once) and reloads.
pub async fn serve_controlled(
    config: Config,
    listeners: Listeners,
    commands: mpsc::Receiver<Command>,
) -> io::Result<()> {
    serve_inner(config, listeners, commands, Capture::FromConfig).await
}

/// `serve`, with capture records going to `sink` (tests hand in a sink of their own).
pub async fn serve_with(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
    sink: Option<Arc<dyn CaptureSink>>,
) -> io::Result<()> {
    until(shutdown, |commands| {
        serve_inner(config, listeners, commands, Capture::Given(sink))
    })
    .await
}

enum Capture {
    /// Start the capture writer the config asks for.
    FromConfig,
    Given(Option<Arc<dyn CaptureSink>>),
}

/// The admin listener first (`/readyz` 503 while starting), then capture, then the proxy; on
/// the way out the proxy's connections drain, then the admin listener, then capture.
async fn serve_inner(
    config: Config,
    listeners: Listeners,
    mut commands: mpsc::Receiver<Command>,
    capture: Capture,
) -> io::Result<()> {
    survive_file_size_limit();
    let admin_tasks = Tasks::new();
    let ready = admin::Readiness::default();
    let admin_stop = CancellationToken::new();
    let metrics = listeners.admin.map(|listener| {
        let metrics = Metrics::new(config.admin.max_model_labels);
        let state = Arc::new(admin::AdminState {
            metrics: Arc::clone(&metrics),
            ready: ready.clone(),
            token: config.admin.token.clone(),
            dashboard: dashboard::Dashboard::new(
                config.capture.database.clone(),
                config.admin.token.clone(),
            ),
        });
        admin::start(listener, state, &admin_tasks, admin_stop.clone());
        metrics
    });
    let stop_admin = || async {
        admin_stop.cancel();
        admin_tasks.drain().await;
    };
    let (sink, started) = match capture {
        Capture::Given(sink) => (sink, None),
        Capture::FromConfig => match start_capture(&config) {
            Ok(Some((sink, writer, live))) => {
                (Some(sink as Arc<dyn CaptureSink>), Some((writer, live)))
            }
            Ok(None) => (None, None),
            Err(e) => {
                stop_admin().await;
                return Err(e);
            }
        },
    };
    if let (Some(m), Some((w, _))) = (&metrics, &started) {
        m.watch_capture(w.clone());
    }
    // The redactor a reload replaces: capture's, or one of its own for span content.
    let redaction = match started.as_ref().map(|(_, live)| Arc::clone(live)) {
        Some(live) => Some(live),
        None if config.telemetry.otlp_endpoint.is_some() && config.telemetry.capture_content => {
            match Live::new(&config) {
                Ok(live) => Some(live),
                Err(e) => {
                    stop_admin().await;
                    return Err(io::Error::other(e));
                }
            }
        }
        None => None,
    };
    let shared = Shared {
        metrics,
        ready: &ready,
        // The ETA history is seeded from the database this process captures into.
        seed: started.as_ref().map(|_| config.capture.database.clone()),
    };
    let result = run(
        config,
        listeners.proxy,
        &mut commands,
        (sink, redaction),
        shared,
    )
    .await;
    stop_admin().await;
    // The capture writer drains last, once every connection (and its record) is done.
    if let Some((writer, _)) = started {
        let handle = writer.clone();
        if result.as_ref().is_ok_and(Stopped::now) {
            writer.close_to_spill().await;
            let stats = writer_stats_line(&handle);
            tracing::info!(%stats, "capture written to the spill; the next start replays it");
        } else {
            // A stop now (the drain is over, the last records are being written) sends what
            // is not yet written to the spill instead of waiting for the store.
            let closing = writer.close();
            tokio::pin!(closing);
            let mut listening = true;
            loop {
                tokio::select! {
                    () = &mut closing => break,
                    command = commands.recv(), if listening => match command {
                        Some(Command::Stop) => {
                            tracing::info!("stopping now: capture not yet written goes to the spill");
                            handle.hurry();
                        }
                        Some(Command::Reload(_)) => {}
                        None => listening = false,
                    },
                }
            }
            let stats = writer_stats_line(&handle);
            tracing::info!(%stats, "capture writer drained");
        }
    }
    match result {
        Ok(Stopped::Failed { .. }) => Err(io::Error::other(
            "a serving thread failed (it panicked, see the log above); aloud stopped",
        )),
        result => result.map(|_| ()),
    }
}

/// What a run shares with its parts besides the config: metrics and readiness.
pub struct Shared<'a> {
    pub metrics: Option<Arc<Metrics>>,
    pub ready: &'a admin::Readiness,
    /// The capture database to seed the ETA history from, when capture runs from the config.
    pub seed: Option<crate::config::Database>,
}

/// Runs `serve` with a single stop: `shutdown` resolving.
async fn until<F, R>(shutdown: impl Future<Output = ()>, serve: F) -> R::Output
where
    F: FnOnce(mpsc::Receiver<Command>) -> R,
    R: Future,
{
    // One command at most is ever sent.
    let (tx, rx) = mpsc::channel(1);
    let served = serve(rx);
    tokio::pin!(served, shutdown);
    let mut sent = false;
    loop {
        tokio::select! {
            out = &mut served => return out,
            () = &mut shutdown, if !sent => {
                sent = true;
                let _ = tx.try_send(Command::Stop);
            }
        }
    }
}

/// Keeps a file-size limit (`ulimit -f`) from killing aloud. Past the limit the kernel sends
/// SIGXFSZ, whose default action ends the process without a log line; once the signal has a
/// handler, the write that crossed the limit fails with EFBIG instead, and the capture writer
/// handles that like a full disk (spill, backoff, counted drops, all logged).
///
/// Why tokio's signal handling: on first use for a signal it installs a process-wide handler
/// (through signal-hook-registry, already in the tree) that stays for the rest of the
/// program's lifetime, even after the `Signal` stream is dropped, as tokio documents. That is
/// exactly "not the default action", with no `unsafe` (the crate forbids it) and no new
/// dependency beyond `libc` for the signal's number, which differs between platforms.
#[cfg(unix)]
fn survive_file_size_limit() {
    use tokio::signal::unix::{SignalKind, signal};
    if let Err(e) = signal(SignalKind::from_raw(libc::SIGXFSZ)) {
        tracing::warn!(error = %e, "cannot handle SIGXFSZ: a file-size limit will end aloud");
    }
}

#[cfg(not(unix))]
fn survive_file_size_limit() {}

/// Starts the capture writer when capture is on for some route.
fn start_capture(config: &Config) -> io::Result<Option<Started>> {
    let c = &config.capture;
    if !c.enabled || config.routes.iter().all(|r| r.capture == CaptureLevel::Off) {
        return Ok(None);
    }
    let (prepare, live) =
        crate::capture::redaction::prepare_live(config).map_err(io::Error::other)?;
    let writer_config = WriterConfig {
        queue_bytes: usize::try_from(c.queue_max).unwrap_or(usize::MAX),
        batch_records: c.batch_max,
        flush_interval: c.flush_interval,
        spill_dir: c.spill_dir.clone(),
        spill_max_bytes: c.spill_max,
        prepare,
        ..WriterConfig::default()
    };
    let database = c.database.clone();
    let open_database = database.clone();
    let writer = CaptureWriter::start(writer_config, move || open_writer(&open_database))
        .map_err(|e| io::Error::other(format!("cannot start capture: {e}")))?;
    // Displayed with its password masked.
    tracing::info!(%database, spill = %c.spill_dir.display(), "capturing exchanges");
    let sink = Arc::new(WriterSink::new(writer.clone(), database));
    Ok(Some((sink, writer, live)))
}

/// A started capture writer: the proxy's sink, the writer, and its replaceable redactor.
type Started = (Arc<WriterSink>, CaptureWriter, Arc<Live>);
/// The longest the trace exporter's last post may take at shutdown.
const TELEMETRY_DRAIN: Duration = Duration::from_secs(5);

/// Starts the trace exporter when `[telemetry] otlp_endpoint` is set. Span content is redacted
/// with `redaction`, the same redactor a reload replaces for capture.
fn start_telemetry(
    config: &Config,
    redaction: Option<&Arc<Live>>,
) -> io::Result<Option<Arc<Telemetry>>> {
    let t = &config.telemetry;
    if t.otlp_endpoint.is_none() {
        return Ok(None);
    }
    let redactor = redaction.filter(|_| t.capture_content).cloned();
    Telemetry::start(t, redactor, TELEMETRY_DRAIN)
}

fn writer_stats_line(writer: &CaptureWriter) -> String {
    format!("{:?}", writer.stats())
}

/// Seeds the ETA history from the capture database, off the runtime's threads; aloud serves
/// meanwhile.
async fn seed_eta(
    database: crate::config::Database,
    history: std::sync::Arc<crate::progress::eta::History>,
) {
    // A first start has no database yet (the writer creates it): nothing to seed, and nothing
    // wrong (a warning here was a false alarm on every first start).
    if database.sqlite_path().is_some_and(|p| !p.exists()) {
        tracing::debug!("eta: no capture database yet, nothing to seed");
        return;
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    match tokio::task::spawn_blocking(move || seed::seed(&database, &history, now_ms)).await {
        Ok(Ok(records)) => tracing::info!(records, "eta: history seeded from captures"),
        Ok(Err(error)) => tracing::warn!(%error, "eta: cannot seed the history from captures"),
        Err(error) => tracing::warn!(%error, "eta: the history seed failed"),
    }
}

/// The threads that serve: as configured, else one per core available to the process
/// (`taskset`, a container's CPU limit).
pub fn serving_threads(configured: Option<usize>) -> usize {
    configured
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1)
}

/// Starts the simulator if a route needs it, builds the app, accepts until stopped, and drains
/// every task it started.
async fn run(
    config: Config,
    listener: TcpListener,
    commands: &mut mpsc::Receiver<Command>,
    (sink, redaction): (Option<Arc<dyn CaptureSink>>, Option<Arc<Live>>),
    shared: Shared<'_>,
) -> io::Result<Stopped> {
    let tasks = Tasks::new();
    let sim_stop = CancellationToken::new();
    let telemetry = start_telemetry(&config, redaction.as_ref())?;
    if let (Some(m), Some(_)) = (&shared.metrics, &telemetry) {
        m.watch_traces();
    }
    let observers = (shared.metrics, telemetry.clone());
    let cluster = config.cluster.database.clone();
    let seed_from = shared.seed.filter(|_| config.progress.eta);
    let threads = serving_threads(config.server.workers);
    let mut started = None;
    let result = async {
        let mut reloader =
            Reloader::start(config, sink, redaction, observers, &tasks, &sim_stop).await?;
        if let Some(database) = seed_from {
            let history = std::sync::Arc::clone(&reloader.current.get().progress.eta);
            tasks.spawn("eta-seed", seed_eta(database, history));
        }
        if let Some(url) = cluster {
            // The link stops with the simulator, once every connection has drained: events of
            // requests finishing during the drain still reach other replicas.
            let hub = std::sync::Arc::clone(&reloader.current.get().progress.hub);
            tasks.spawn("cluster", crate::cluster::run(url, hub, sim_stop.clone()));
        }
        let serving = accept::Serving::new(&reloader, &tasks, threads);
        let workers = match workers::Workers::start(threads - 1, &listener, &serving) {
            Ok(w) => started.insert(w),
            Err(e) => {
                // The first thread's tasks would hold the drain.
                serving.stop_threads_tasks();
                return Err(e);
            }
        };
        let ready = shared.ready;
        let looped =
            accept::accept_loop(&mut reloader, listener, &serving, workers, commands, ready);
        match futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(looped)).await {
            Ok(stopped) => Ok(stopped),
            Err(_) => {
                // The first thread's own loop panicked: cut everything, so the tasks drain
                // and the capture writer closes, and exit with an error.
                tracing::error!("the first serving thread panicked; stopping the server");
                workers.stop_accepting().await;
                ready.draining();
                serving.abort();
                Ok(Stopped::Failed { now: false })
            }
        }
    }
    .await;
    sim_stop.cancel();
    tasks.drain().await;
    // The other serving threads' runtimes ran their share of the tasks: they end now.
    if let Some(workers) = started {
        workers.join().await;
    }
    // Every exchange has finished: its span is queued; the exporter posts what is left (for a
    // moment only when a second stop asked for an immediate one).
    if let Some(t) = telemetry {
        let bound = if result.as_ref().is_ok_and(Stopped::now) {
            Duration::from_secs(1)
        } else {
            TELEMETRY_DRAIN + Duration::from_secs(1)
        };
        t.close(bound).await;
    }
    result
}
