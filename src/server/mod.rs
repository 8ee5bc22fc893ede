//! The accept loop, per-connection options, graceful shutdown and task tracking.

mod limit;
pub mod stall;
pub mod tasks;

use crate::app::App;
use crate::capture::sink::WriterSink;
use crate::capture::{CaptureSink, CaptureWriter, WriterConfig};
use crate::config::CaptureLevel;
use crate::config::{Config, HttpUpstream, Upstream};
use crate::dispatch;
use crate::store::SqliteStore;
use crate::telemetry::Telemetry;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use stall::StallGuard;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;
pub use tasks::Tasks;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves `config` on `listener` until `shutdown` resolves, then stops accepting, lets in-flight
/// requests finish within the grace period, and drains every task it started.
///
/// Simulator routes get a simulator on a loopback port of their own, reached like any upstream.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    survive_file_size_limit();
    let capture = start_capture(&config)?;
    let sink = capture
        .as_ref()
        .map(|(sink, _)| Arc::clone(sink) as Arc<dyn CaptureSink>);
    let result = serve_with(config, listener, shutdown, sink).await;
    // The capture writer drains last, once every connection (and its record) is done.
    if let Some((sink, writer)) = capture {
        drop(sink);
        let handle = writer.clone();
        writer.close().await;
        let stats = writer_stats_line(&handle);
        tracing::info!(%stats, "capture writer drained");
    }
    result
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
fn start_capture(config: &Config) -> io::Result<Option<(Arc<WriterSink>, CaptureWriter)>> {
    let c = &config.capture;
    if !c.enabled || config.routes.iter().all(|r| r.capture == CaptureLevel::Off) {
        return Ok(None);
    }
    let writer_config = WriterConfig {
        queue_bytes: usize::try_from(c.queue_max).unwrap_or(usize::MAX),
        batch_records: c.batch_max,
        flush_interval: c.flush_interval,
        spill_dir: c.spill_dir.clone(),
        spill_max_bytes: c.spill_max,
        prepare: crate::capture::redaction::prepare(config).map_err(io::Error::other)?,
        ..WriterConfig::default()
    };
    let database = c.database.clone();
    let open_path = database.clone();
    let writer = CaptureWriter::start(writer_config, move || SqliteStore::open(&open_path))
        .map_err(|e| io::Error::other(format!("cannot start capture: {e}")))?;
    tracing::info!(database = %database.display(), spill = %c.spill_dir.display(), "capturing exchanges");
    let sink = Arc::new(WriterSink::new(writer.clone(), database));
    Ok(Some((sink, writer)))
}

/// The longest the trace exporter's last post may take at shutdown.
const TELEMETRY_DRAIN: Duration = Duration::from_secs(5);

/// Starts the trace exporter when `[telemetry] otlp_endpoint` is set.
fn start_telemetry(config: &Config) -> io::Result<Option<Arc<Telemetry>>> {
    let t = &config.telemetry;
    if t.otlp_endpoint.is_none() {
        return Ok(None);
    }
    let redactor = if t.capture_content {
        Some(crate::capture::redaction::redactor(config).map_err(io::Error::other)?)
    } else {
        None
    };
    Telemetry::start(t, redactor, TELEMETRY_DRAIN)
}

fn writer_stats_line(writer: &CaptureWriter) -> String {
    format!("{:?}", writer.stats())
}

/// `serve`, with capture records going to `sink` (tests hand in a sink of their own).
pub async fn serve_with(
    mut config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    sink: Option<Arc<dyn CaptureSink>>,
) -> io::Result<()> {
    let tasks = Tasks::new();
    let sim_stop = CancellationToken::new();
    if config
        .routes
        .iter()
        .any(|r| r.upstream == Upstream::Simulator)
    {
        let sim_listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = sim_listener.local_addr()?;
        let stop = sim_stop.clone();
        tasks.spawn("simulator", async move {
            if let Err(e) =
                crate::simulator::serve(sim_listener, async move { stop.cancelled().await }).await
            {
                tracing::error!(error = %e, "built-in simulator stopped");
            }
        });
        for route in config
            .routes
            .iter_mut()
            .filter(|r| r.upstream == Upstream::Simulator)
        {
            route.upstream = Upstream::Http(HttpUpstream::loopback(addr));
        }
        tracing::debug!(%addr, "built-in simulator listening");
    }
    let telemetry = start_telemetry(&config)?;
    let app = App::new(config, sink, telemetry.clone()).map_err(io::Error::other)?;
    let result = accept_loop(Arc::clone(&app), listener, &tasks, shutdown).await;
    sim_stop.cancel();
    tasks.drain().await;
    // Every exchange has finished: its span is queued; the exporter posts what is left.
    if let Some(t) = telemetry {
        t.close(TELEMETRY_DRAIN + Duration::from_secs(1)).await;
    }
    result
}

async fn accept_loop(
    app: Arc<App>,
    listener: TcpListener,
    tasks: &Tasks,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let graceful = GracefulShutdown::new();
    let hard_stop = CancellationToken::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(app.server.request_head_timeout)
        .max_buf_size(app.server.max_request_head)
        .keep_alive(true);
    let mut limit = limit::ConnectionLimit::new(app.server.max_connections);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some((stream, permit)) = limit.admit(stream) else {
            continue;
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let io = TokioIo::new(StallGuard::new(stream, app.server.write_stall_timeout));
        let app = Arc::clone(&app);
        let service = service_fn(move |req| {
            let app = Arc::clone(&app);
            async move { Ok::<_, Infallible>(dispatch::dispatch(app, req).await) }
        });
        let conn = graceful.watch(builder.serve_connection(io, service));
        let hard_stop = hard_stop.clone();
        tasks.spawn("connection", async move {
            // The connection's place under `max_connections`, freed when it ends.
            let _permit = permit;
            tokio::select! {
                result = conn => if let Err(e) = result {
                    log_connection_error(&e, peer);
                },
                () = hard_stop.cancelled() => {}
            }
        });
    }
    drop(listener);
    // Side-channel subscribers would otherwise hold their connections through the grace period.
    app.progress.hub.close();
    app.capture
        .shutting_down
        .store(true, std::sync::atomic::Ordering::Release);
    let grace = app.server.shutdown_grace;
    tracing::info!(
        grace_ms = grace.as_millis() as u64,
        "shutting down: no new connections; draining in-flight requests"
    );
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections drained"),
        () = tokio::time::sleep(grace) => {
            tracing::warn!("shutdown grace period ended; closing remaining connections");
            hard_stop.cancel();
        }
    }
    Ok(())
}

fn log_connection_error(e: &hyper::Error, peer: std::net::SocketAddr) {
    if e.is_incomplete_message() || e.is_canceled() {
        tracing::debug!(%peer, error = %e, "client connection closed early");
    } else if e.is_timeout() {
        tracing::info!(%peer, error = %e, "client connection timed out");
    } else if e.is_parse() || e.is_parse_too_large() {
        tracing::info!(%peer, error = %e, "malformed request from client");
    } else {
        tracing::debug!(%peer, error = %e, "client connection ended with an error");
    }
}
