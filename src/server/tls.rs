//! HTTPS towards clients (`[server] tls_cert`): the rustls acceptor offering HTTP/2 and
//! HTTP/1.1 by ALPN, the handshake on the connection's own task under a deadline, and the
//! HTTP/2 connection settings. Plain TCP never comes here.
//!
//! Why hyper's own `http1`/`http2` builders rather than hyper-util's `auto` one: ALPN has
//! already said which protocol the client speaks, and `auto` would read the first bytes to
//! guess it again, with no deadline on that read.

use super::Tasks;
use super::accept::{log_connection_error, respond};
use super::reload::Current;
use super::stall::StallGuard;
use crate::app::App;
use crate::config::tls::ServerTls;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::Watcher;
use rustls::crypto::ring::default_provider;
use rustls::sign::SingleCertAndKey;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// Streams one HTTP/2 connection carries at once. A browser page needs a few dozen at most
/// (side-channel subscriptions and requests); past it the client queues, as it would past
/// six HTTP/1.1 connections. `max_concurrent_requests` still bounds exchanges across all.
pub const MAX_CONCURRENT_STREAMS: u32 = 256;

/// How often an HTTP/2 connection is pinged, and how long a ping may go unanswered before the
/// connection is closed: a vanished peer on an idle connection is otherwise never noticed.
const PING_INTERVAL: Duration = Duration::from_secs(30);
const PING_TIMEOUT: Duration = Duration::from_secs(20);

/// What HTTPS connections are served with; rebuilt when a reload changes the app, so a
/// renewed certificate is used by every connection accepted after the reload.
pub struct Https {
    acceptor: TlsAcceptor,
    http1: http1::Builder,
    http2: http2::Builder<StreamTasks>,
    /// The TLS handshake's deadline, and HTTP/2's deadline for the first request: the request
    /// head timeout, which bounds how long a connection may sit without a request.
    head_timeout: Duration,
}

impl Https {
    /// `app`'s certificate and limits, with `http1` (the plain path's options) for clients
    /// that choose HTTP/1.1.
    pub fn new(
        tls: &ServerTls,
        app: &App,
        http1: http1::Builder,
        tasks: &Tasks,
    ) -> Result<Https, rustls::Error> {
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(SingleCertAndKey::from(Arc::clone(&tls.certified))));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let mut http2 = http2::Builder::new(StreamTasks(tasks.clone()));
        http2
            .timer(TokioTimer::new())
            .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
            // Room past the limit, as for HTTP/1: `dispatch` refuses in the api's envelope.
            .max_header_list_size(
                u32::try_from(app.server.max_request_head.saturating_mul(2)).unwrap_or(u32::MAX),
            )
            .keep_alive_interval(PING_INTERVAL)
            .keep_alive_timeout(PING_TIMEOUT);
        Ok(Https {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            http1,
            http2,
            head_timeout: app.server.request_head_timeout,
        })
    }
}

/// What one accepted connection brings to its task.
pub struct Accepted {
    pub stream: StallGuard<TcpStream>,
    pub peer: SocketAddr,
    /// Its place under `max_connections`, freed when the task ends.
    pub permit: super::accept::Place,
    /// Graceful shutdown, once the connection is up (a handshake is bounded by its deadline).
    pub watcher: Watcher,
    pub hard_stop: CancellationToken,
}

/// Runs one HTTPS connection on a task of its own: the handshake (never on the accept loop),
/// then HTTP/2 or HTTP/1.1 as ALPN chose, until it ends or a hard stop cuts it.
pub fn spawn(https: &Arc<Https>, current: &Arc<Current>, accepted: Accepted, tasks: &Tasks) {
    let https = Arc::clone(https);
    let current = Arc::clone(current);
    tasks.spawn("connection", async move {
        let Accepted {
            stream,
            peer,
            permit,
            watcher,
            hard_stop,
        } = accepted;
        let _permit = permit;
        let handshake = tokio::time::timeout(https.head_timeout, https.acceptor.accept(stream));
        let tls = tokio::select! {
            done = handshake => match done {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::info!(%peer, "TLS handshake not done within the request head timeout; closed");
                    return;
                }
            },
            () = hard_stop.cancelled() => return,
        };
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        let io = TokioIo::new(super::refusals::Refusals::new(tls));
        if h2 {
            let seen = Arc::new(Notify::new());
            let first = Arc::clone(&seen);
            let service = service_fn(move |req| {
                first.notify_one();
                respond(&current, req)
            });
            let conn = watcher.watch(https.http2.serve_connection(io, service));
            // A client that says the preface and nothing else holds its slot no longer than
            // one that never finishes its head on HTTP/1.1 (hyper's `header_read_timeout`).
            let first_request = async {
                if tokio::time::timeout(https.head_timeout, seen.notified())
                    .await
                    .is_ok()
                {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                () = run(conn, &hard_stop, peer) => {}
                () = first_request => {
                    tracing::info!(%peer, "no HTTP/2 request within the request head timeout; closed");
                }
            }
        } else {
            let service = service_fn(move |req| respond(&current, req));
            let conn = watcher.watch(https.http1.serve_connection(io, service));
            run(conn, &hard_stop, peer).await;
        }
    });
}

/// Drives a connection to its end, or until a hard stop.
async fn run(
    conn: impl Future<Output = Result<(), hyper::Error>>,
    hard_stop: &CancellationToken,
    peer: SocketAddr,
) {
    tokio::select! {
        result = conn => if let Err(e) = result {
            log_connection_error(&e, peer);
        },
        () = hard_stop.cancelled() => {}
    }
}

/// Runs each HTTP/2 stream (hyper spawns one task per stream) as a named, tracked task, so
/// the drain at shutdown waits for it like for any connection.
#[derive(Clone)]
pub struct StreamTasks(Tasks);

impl<F> hyper::rt::Executor<F> for StreamTasks
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        self.0.spawn("h2 stream", fut);
    }
}
