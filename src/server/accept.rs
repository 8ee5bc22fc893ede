//! The accept loop and shutdown: connections are served with the app current for each request
//! (plain HTTP/1.1 here, HTTPS in `tls`), commands reload or stop, and a stop drains for the
//! grace period (or, on a second stop, cuts everything at once).

use super::admin::Readiness;
use super::finishing::Finishers;
use super::limit::ConnectionLimit;
use super::reload::{Current, Reloader};
use super::spread::{Handed, Inbox, Seat, Spread};
use super::stall::StallGuard;
use super::tls::{self, Https};
use super::upstreams::UpstreamTasks;
use super::workers::Workers;
use super::{Command, Stopped, Tasks};
use crate::app::App;
use crate::dispatch;
use axum::body::Body;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The HTTP/1 options of `app` (head timeout and size); kept until a reload changes the app.
fn builder(app: &App) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(app.server.request_head_timeout)
        // Room past `max_request_head`, so the dispatcher's exact measure refuses an oversized
        // head in the api's envelope with its id (hyper's own refusal is a bare 431), up to
        // twice the limit.
        .max_buf_size(app.server.max_request_head.saturating_mul(2))
        .keep_alive(true)
        // Copy body chunks into the connection's one write buffer instead of queueing them for
        // vectored writes: SSE chunks and heartbeats are small, and the queue (a few hundred
        // bytes per connection that ever streamed) was the largest part of a waiting stream's
        // state (benches/heartbeats.sh).
        .writev(false);
    builder
}

/// One request, dispatched with the app current when it arrives, which it keeps to its end.
///
/// hyper keeps one box per connection sized to the service's future, for as long as the
/// connection lives; boxing the (large) dispatch future here frees its state once the head is
/// out, so a waiting stream or an idle keep-alive connection does not keep ~5 KiB of finished
/// request state (benches/heartbeats.sh, state_size).
pub(super) fn respond(
    current: &Current,
    req: Request<Incoming>,
) -> impl Future<Output = Result<Response<Body>, Infallible>> + Send + use<> {
    let fut = Box::pin(dispatch::dispatch(current.get(), req));
    async move { Ok::<_, Infallible>(fut.await) }
}

/// The HTTPS settings for `app` when it has a certificate; on the (unexpected) failure to
/// build them after a reload, the previous ones are kept.
fn https_for(
    app: &App,
    http1: &http1::Builder,
    tasks: &Tasks,
    previous: Option<Arc<Https>>,
) -> Option<Arc<Https>> {
    let tls = app.server.tls.as_ref()?;
    match Https::new(tls, app, http1.clone(), tasks) {
        Ok(https) => Some(Arc::new(https)),
        Err(e) => {
            tracing::error!(error = %e, "cannot use the TLS certificate; the previous one is kept");
            previous
        }
    }
}

/// What every serving thread's accept loop shares (the first one's, here, and the others', in
/// `workers`): the app current for new connections and the options built from it, the cap on
/// open connections, and the shutdown's handles.
pub struct Serving {
    current: Arc<Current>,
    tasks: Tasks,
    hard_stop: CancellationToken,
    /// Taken by the drain: a connection accepted after that is closed, as the listener is.
    graceful: Mutex<Option<GracefulShutdown>>,
    limit: Mutex<ConnectionLimit>,
    /// Rebuilt by the first connection accepted after a reload changed the app.
    options: Mutex<Arc<Options>>,
    finishers: Arc<Finishers>,
    later: Arc<crate::proxy::later::Laters>,
    /// The finish queues this server drives, one per serving thread (a queue another server
    /// over the same app drives is left to it); `None` once the drain closed them.
    runs_later: Mutex<Option<Vec<Arc<crate::proxy::later::Later>>>>,
    /// Cancelled once the drain is over: every serving thread's pacer (`proxy::pace`) ends.
    pacing: CancellationToken,
    /// Each thread's open connections, with more than one serving thread.
    spread: Option<Arc<Spread>>,
    /// Each thread's inbox for connections other threads hand it, until the thread takes it.
    inboxes: Mutex<Vec<Option<Inbox>>>,
    /// Accept failures (out of file descriptors) not yet logged: one line a second at most,
    /// whichever thread saw them.
    accept_failures: Mutex<super::limit::LogThrottle>,
    /// Cancelled when a serving thread failed (panicked): the server stops as on a first stop,
    /// and exits with an error.
    pub(super) failed: CancellationToken,
}

/// A connection's places, held by its task until it ends: under `max_connections`, and in its
/// thread's count of open connections.
pub struct Place {
    _permit: tokio::sync::OwnedSemaphorePermit,
    _seat: Option<Seat>,
}

/// How connections accepted under one app are served.
struct Options {
    app: Arc<App>,
    http1: http1::Builder,
    https: Option<Arc<Https>>,
}

/// A lock that a panic elsewhere does not poison for good.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Serving {
    /// Serving on `threads` serving threads under the reloader's current app; exchanges whose
    /// client left, upstream connections and the finish queue run as `tasks`.
    pub fn new(reloader: &Reloader, tasks: &Tasks, threads: usize) -> Arc<Serving> {
        let hard_stop = CancellationToken::new();
        let current: Arc<Current> = Arc::clone(&reloader.current);
        let app = current.get();
        let finishers = Arc::new(Finishers::new(tasks.clone(), hard_stop.clone()));
        app.finishing
            .install(Arc::clone(&finishers) as Arc<dyn crate::proxy::finish::Detach>);
        // Plain-http upstream connections run as tracked tasks; the idle ones close after the
        // drain.
        app.upstream_tasks
            .install(Arc::new(UpstreamTasks::new(tasks.clone())));
        let http1 = builder(&app);
        let https = https_for(&app, &http1, tasks, None);
        let mut limit = ConnectionLimit::new(app.server.max_connections, app.metrics.clone());
        if https.is_some() {
            // A TLS client would read the canned 503 as garbage: refused ones are just closed.
            limit = limit.closing_silently();
        }
        let later = Arc::clone(&app.finishing.later);
        let (spread, inboxes) = if threads > 1 {
            let (spread, inboxes) = Spread::new(threads);
            (Some(spread), inboxes.into_iter().map(Some).collect())
        } else {
            (None, Vec::new())
        };
        let serving = Arc::new(Serving {
            current: Arc::clone(&current),
            tasks: tasks.clone(),
            hard_stop,
            graceful: Mutex::new(Some(GracefulShutdown::new())),
            limit: Mutex::new(limit),
            options: Mutex::new(Arc::new(Options { app, http1, https })),
            finishers,
            later,
            runs_later: Mutex::new(Some(Vec::new())),
            pacing: CancellationToken::new(),
            spread,
            inboxes: Mutex::new(inboxes),
            accept_failures: Mutex::default(),
            failed: CancellationToken::new(),
        });
        serving.start_thread();
        serving
    }

    /// The calling serving thread's own tasks, on its runtime: its finish queue's and its
    /// pacer. Each serving thread calls it once as it starts.
    pub fn start_thread(&self) {
        self.run_later_here();
        let stop = self.pacing.clone();
        self.tasks
            .spawn("pacer", crate::proxy::pace::run(stop.cancelled_owned()));
    }

    /// After the first thread's accept loop panicked (the others stop with `workers`): every
    /// connection is cut and recorded as cut by a shutdown, the threads' tasks end, so the
    /// tracked tasks drain at once and the capture writer still closes.
    pub fn abort(&self) {
        self.failed.cancel();
        stopping(&self.current.get());
        // A connection accepted from now on is closed, as after a drain began.
        drop(lock(&self.graceful).take());
        self.hard_stop.cancel();
        self.connections_ended();
    }

    /// Once every connection has ended (drained or cut): the finish steps still queued run,
    /// later ones run inline; no exchange is left to use a pooled upstream connection (the
    /// ones cut just now end with their exchanges), so the idle ones close, their tasks end,
    /// and the drain can.
    fn connections_ended(&self) {
        self.stop_threads_tasks();
        self.current.get().upstream_tasks.close();
    }

    /// Ends what `start_thread` started, on every thread: the finish queues run what they hold
    /// and close (exchanges finish inline from now on), the pacers end.
    pub fn stop_threads_tasks(&self) {
        let ran = lock(&self.runs_later).take();
        for later in ran.into_iter().flatten() {
            later.close();
        }
        self.pacing.cancel();
    }

    /// Drives the calling serving thread's finish queue on a task of its runtime, until the
    /// drain closes it; a thread that starts after the drain began drives none (its exchanges
    /// finish inline).
    fn run_later_here(&self) {
        let mut runs = lock(&self.runs_later);
        let Some(runs) = runs.as_mut() else {
            return;
        };
        let later = self.later.here();
        if later.open() {
            self.tasks.spawn("finish", Arc::clone(later).run());
            runs.push(Arc::clone(later));
        }
    }

    /// The options for a connection accepted now.
    fn options(&self) -> Arc<Options> {
        let latest = self.current.get();
        let mut options = lock(&self.options);
        if !Arc::ptr_eq(&latest, &options.app) {
            let http1 = builder(&latest);
            let https = https_for(&latest, &http1, &self.tasks, options.https.clone());
            *options = Arc::new(Options {
                app: latest,
                http1,
                https,
            });
        }
        Arc::clone(&options)
    }

    /// The cap on open connections.
    pub fn max_connections(&self) -> usize {
        lock(&self.limit).max()
    }

    /// The inbox of serving thread `thread` (0 is the first), taken once; `None` with one
    /// serving thread.
    pub fn inbox(&self, thread: usize) -> Option<Inbox> {
        lock(&self.inboxes).get_mut(thread).and_then(Option::take)
    }

    /// A connection serving thread `me` accepted: admitted under `max_connections` here (a
    /// refusal is answered by the thread that accepted it), then served here, or handed to the
    /// thread with the fewest open connections when that one holds fewer (`spread`).
    pub fn accepted(&self, me: usize, stream: TcpStream, peer: SocketAddr) {
        let Some((stream, permit)) = lock(&self.limit).admit(stream) else {
            return;
        };
        let Some(spread) = &self.spread else {
            return self.serve(stream, peer, permit, None);
        };
        let seat = spread.place(me);
        if seat.thread() == me {
            return self.serve(stream, peer, permit, Some(seat));
        }
        if let Err((stream, _theirs, permit)) = spread.hand(stream, peer, seat, permit) {
            // That thread stopped taking connections (a stop began): this one decides.
            self.serve(stream, peer, permit, Some(spread.seat(me)));
        }
    }

    /// Serves a connection another thread handed to the calling one.
    pub fn take_handed(&self, handed: Handed) {
        match TcpStream::from_std(handed.stream) {
            Ok(stream) => self.serve(stream, handed.peer, handed.permit, Some(handed.seat)),
            Err(e) => tracing::debug!(error = %e, "cannot take a handed connection"),
        }
    }

    /// The calling thread takes no more handed connections, and serves (or, once the drain
    /// began, closes) the ones already handed to it, including any whose hand-over was under
    /// way as the inbox closed (a hand-over after the close comes back to its sender).
    pub async fn close_inbox(&self, inbox: Option<Inbox>) {
        let Some(mut inbox) = inbox else { return };
        inbox.close();
        while let Some(handed) = inbox.recv().await {
            self.take_handed(handed);
        }
    }

    /// Logs an accept failure (out of file descriptors, say), one line a second at most over
    /// every thread, with how many there were since the last line.
    pub fn accept_failed(&self, e: &std::io::Error) {
        let due = lock(&self.accept_failures).note(tokio::time::Instant::now());
        if let Some(failures) = due {
            tracing::warn!(error = %e, failures, "accept failed; retrying in 50 ms");
        }
    }

    /// Serves one admitted connection on a task of its own, on the calling thread's runtime;
    /// `seat` counts it on this thread while it is open.
    fn serve(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        permit: tokio::sync::OwnedSemaphorePermit,
        seat: Option<Seat>,
    ) {
        let permit = Place {
            _permit: permit,
            _seat: seat,
        };
        let Some(watcher) = lock(&self.graceful).as_ref().map(GracefulShutdown::watcher) else {
            // Accepted by another thread as the drain began: closed, like the listener.
            return;
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let options = self.options();
        let stream = StallGuard::new(stream, options.app.server.write_stall_timeout);
        if let Some(https) = &options.https {
            let accepted = tls::Accepted {
                stream,
                peer,
                permit,
                watcher,
                hard_stop: self.hard_stop.clone(),
            };
            tls::spawn(https, &self.current, accepted, &self.tasks);
            return;
        }
        let io = TokioIo::new(super::refusals::Refusals::new(stream));
        let for_requests = Arc::clone(&self.current);
        let service = service_fn(move |req| respond(&for_requests, req));
        let conn = watcher.watch(options.http1.serve_connection(io, service));
        let hard_stop = self.hard_stop.clone();
        self.tasks.spawn("connection", async move {
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
}

/// Accepts until the first stop (the other serving threads, `workers`, stop with this one),
/// then drains; returns how it stopped.
pub async fn accept_loop(
    reloader: &mut Reloader,
    listener: TcpListener,
    serving: &Serving,
    workers: &mut Workers,
    commands: &mut mpsc::Receiver<Command>,
    ready: &Readiness,
) -> Stopped {
    let tasks = &serving.tasks;
    ready.ready();
    let mut open = true;
    let mut inbox = serving.inbox(0);
    loop {
        let (stream, peer) = tokio::select! {
            Some(handed) = next_handed(&mut inbox) => {
                serving.take_handed(handed);
                continue;
            }
            () = serving.failed.cancelled() => break,
            command = commands.recv(), if open => match command {
                Some(Command::Stop) => break,
                Some(Command::Reload(config)) => {
                    reloader.reload(*config, tasks).await;
                    continue;
                }
                // Nobody can send commands any more: serve on.
                None => {
                    open = false;
                    continue;
                }
            },
            accepted = listener.accept() => match accepted {
                #[cfg(test)]
                Ok(_) if panic_test::armed(&listener) => panic!("test: the accept loop panics"),
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    serving.accept_failed(&e);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        serving.accepted(0, stream, peer);
    }
    serving.close_inbox(inbox).await;
    workers.stop_accepting().await;
    drop(listener);
    ready.draining();
    let graceful = lock(&serving.graceful).take().unwrap_or_default();
    let stopped = drain(
        &serving.current.get(),
        graceful,
        &serving.finishers,
        &serving.hard_stop,
        commands,
        open,
    )
    .await;
    serving.connections_ended();
    // A failed thread broke the loop, or failed after a stop broke it, before it stopped
    // accepting.
    if serving.failed.is_cancelled() {
        Stopped::Failed {
            now: matches!(stopped, Stopped::Now),
        }
    } else {
        stopped
    }
}

/// The next connection another thread hands this one; never, without an inbox.
pub async fn next_handed(inbox: &mut Option<Inbox>) -> Option<Handed> {
    match inbox {
        Some(inbox) => inbox.recv().await,
        None => std::future::pending().await,
    }
}

/// What every stop starts with: side-channel subscribers are let go (they would otherwise hold
/// their connections through the grace period), and exchanges cut from here on are recorded as
/// `shutdown` (and `/readyz` says draining).
fn stopping(app: &App) {
    app.progress.hub.close();
    app.capture
        .shutting_down
        .store(true, std::sync::atomic::Ordering::Release);
}

/// No new connections; in-flight requests get the grace period, unless a second stop comes.
async fn drain(
    app: &App,
    graceful: GracefulShutdown,
    finishers: &Finishers,
    hard_stop: &CancellationToken,
    commands: &mut mpsc::Receiver<Command>,
    mut open: bool,
) -> Stopped {
    stopping(app);
    let grace = app.server.shutdown_grace;
    let in_flight = app.in_flight();
    tracing::info!(
        in_flight,
        grace_ms = grace.as_millis() as u64,
        "shutting down: {in_flight} requests in flight, up to {} grace; press Ctrl-C again to stop now",
        humantime::format_duration(grace)
    );
    if !finishers.is_empty() {
        tracing::info!(
            finishing = finishers.len(),
            "{} exchanges whose client left are finishing",
            finishers.len()
        );
    }
    // Connections, then exchanges finishing for clients that left, within the one grace.
    let drained = async {
        graceful.shutdown().await;
        finishers.finished().await;
    };
    let grace_over = tokio::time::sleep(grace);
    tokio::pin!(drained, grace_over);
    loop {
        tokio::select! {
            () = &mut drained => {
                tracing::info!("all connections drained");
                return Stopped::Drained;
            }
            () = &mut grace_over => {
                tracing::warn!("shutdown grace period ended; closing remaining connections");
                hard_stop.cancel();
                return Stopped::Drained;
            }
            command = commands.recv(), if open => match command {
                Some(Command::Stop) => {
                    let in_flight = app.in_flight();
                    tracing::warn!(
                        in_flight,
                        "stopping now: {in_flight} requests cut; capture goes to the spill"
                    );
                    hard_stop.cancel();
                    return Stopped::Now;
                }
                Some(Command::Reload(_)) => {
                    tracing::info!("config reload ignored: shutting down");
                }
                None => open = false,
            },
        }
    }
}

pub(super) fn log_connection_error(e: &hyper::Error, peer: std::net::SocketAddr) {
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

/// Unit tests only: makes the first thread's accept loop panic on its next connection, for the
/// test of what that panic stops (`server/panic_tests.rs`). Keyed by the listener's port, so
/// other tests' loops in the same process are not touched.
#[cfg(test)]
pub(super) mod panic_test {
    use std::sync::atomic::{AtomicU16, Ordering};

    static PORT: AtomicU16 = AtomicU16::new(0);

    pub fn arm(port: u16) {
        PORT.store(port, Ordering::SeqCst);
    }

    pub(super) fn armed(listener: &tokio::net::TcpListener) -> bool {
        let port = listener.local_addr().map_or(0, |a| a.port());
        port != 0 && PORT.load(Ordering::SeqCst) == port
    }
}
