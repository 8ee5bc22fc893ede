//! The server: capture writer first and last, the simulator, the accept loop (`accept`),
//! reloads (`reload`), graceful and immediate shutdown, and task tracking.

mod accept;
mod limit;
mod reload;
pub mod stall;
pub mod tasks;

use crate::capture::redaction::Live;
use crate::capture::sink::WriterSink;
use crate::capture::{CaptureSink, CaptureWriter, WriterConfig};
use crate::config::CaptureLevel;
use crate::config::Config;
use crate::store::SqliteStore;
use reload::Reloader;
use std::future::Future;
use std::io;
use std::sync::Arc;
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
}

/// Serves `config` on `listener` until `shutdown` resolves, then stops accepting, lets in-flight
/// requests finish within the grace period, and drains every task it started.
///
/// Simulator routes get a simulator on a loopback port of their own, reached like any upstream.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    until(shutdown, |commands| {
        serve_controlled(config, listener, commands)
    })
    .await
}

/// `serve`, steered by `commands`: stops (one to drain, a second to stop at once) and reloads.
pub async fn serve_controlled(
    config: Config,
    listener: TcpListener,
    commands: mpsc::Receiver<Command>,
) -> io::Result<()> {
    survive_file_size_limit();
    let capture = start_capture(&config)?;
    let sink = capture
        .as_ref()
        .map(|(sink, _, _)| Arc::clone(sink) as Arc<dyn CaptureSink>);
    let redaction = capture.as_ref().map(|(_, _, live)| Arc::clone(live));
    let result = run(config, listener, commands, sink, redaction).await;
    // The capture writer drains last, once every connection (and its record) is done.
    if let Some((sink, writer, _)) = capture {
        drop(sink);
        let handle = writer.clone();
        if matches!(result, Ok(Stopped::Now)) {
            writer.close_to_spill().await;
            let stats = writer_stats_line(&handle);
            tracing::info!(%stats, "capture written to the spill; the next start replays it");
        } else {
            writer.close().await;
            let stats = writer_stats_line(&handle);
            tracing::info!(%stats, "capture writer drained");
        }
    }
    result.map(|_| ())
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
    let open_path = database.clone();
    let writer = CaptureWriter::start(writer_config, move || SqliteStore::open(&open_path))
        .map_err(|e| io::Error::other(format!("cannot start capture: {e}")))?;
    tracing::info!(database = %database.display(), spill = %c.spill_dir.display(), "capturing exchanges");
    let sink = Arc::new(WriterSink::new(writer.clone(), database));
    Ok(Some((sink, writer, live)))
}

/// A started capture writer: the proxy's sink, the writer, and its replaceable redactor.
type Started = (Arc<WriterSink>, CaptureWriter, Arc<Live>);

fn writer_stats_line(writer: &CaptureWriter) -> String {
    format!("{:?}", writer.stats())
}

/// `serve`, with capture records going to `sink` (tests hand in a sink of their own).
pub async fn serve_with(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    sink: Option<Arc<dyn CaptureSink>>,
) -> io::Result<()> {
    until(shutdown, |commands| async move {
        run(config, listener, commands, sink, None)
            .await
            .map(|_| ())
    })
    .await
}

/// Starts the simulator if a route needs it, builds the app, accepts until stopped, and drains
/// every task it started.
async fn run(
    config: Config,
    listener: TcpListener,
    commands: mpsc::Receiver<Command>,
    sink: Option<Arc<dyn CaptureSink>>,
    redaction: Option<Arc<Live>>,
) -> io::Result<Stopped> {
    let tasks = Tasks::new();
    let sim_stop = CancellationToken::new();
    let result = async {
        let mut reloader = Reloader::start(config, sink, redaction, &tasks, &sim_stop).await?;
        Ok(accept::accept_loop(&mut reloader, listener, commands, &tasks).await)
    }
    .await;
    sim_stop.cancel();
    tasks.drain().await;
    result
}
