//! HTTP/1.1 connections to a plain-http upstream: hyper's own client connections, kept in one
//! stack per route and serving thread, in place of hyper-util's legacy pool.
//!
//! Written by hand because hyper-util's pool is general where a route is not: it keys every
//! checkout and return by (scheme, authority) in a SipHash map under a mutex, formats the
//! `Host` header, turns the URI into origin form and builds a connect future it then drops, on
//! every request (about 5,000 instructions of 71,000 per proxied request, callgrind,
//! benches/instructions.sh). A route has one upstream, so its pool is one stack, and its
//! `Host` is worked out once. What hyper-util did that matters is kept: the same connector
//! (TCP or the egress proxy's tunnel, under the connect timeout), a request that a pooled
//! connection closed before any byte of it was written goes again on a fresh one, and an
//! unused connection is closed after `POOL_IDLE`. TLS routes, where ALPN may pick HTTP/2 and
//! `lanes` spreads the streams, keep hyper-util's client.
//!
//! One stack per serving thread (`proxy::home`): a connection's task runs on the runtime of the
//! thread that opened it, so a request on another thread would hand its bytes across threads
//! twice. A thread whose stack is empty opens a connection of its own, as each nginx worker
//! keeps its own upstream connections.

use super::body::{Back, UpstreamBody};
use super::lanes::LaneConnector;
use super::{BoxError, POOL_IDLE, SpawnHook, lock};
use crate::proxy::home;
use axum::body::Body;
use http::{HeaderValue, Request, Response, Uri, header};
use http_body::Body as _;
use hyper::client::conn::http1;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tower_service::Service;

/// Why a request got no response head.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be made (refused, timed out, the proxy's tunnel failed).
    Connect(BoxError),
    /// The connection failed, or the request did, before a response head.
    Request(hyper::Error),
}

/// A route's HTTP/1.1 connections to its plain-http upstream.
pub struct Plain {
    connector: LaneConnector,
    /// `http://authority/`: what the connector dials.
    dst: Uri,
    /// The upstream's `Host`: its host, and its port unless 80.
    host: HeaderValue,
    /// Idle connections per home (serving thread), the most recently used last.
    idle: Box<[Shelf]>,
    /// Where connection tasks run, and the shutdown that closes idle connections.
    hook: SpawnHook,
    /// Whether the task that closes connections left unused has started.
    reaping: AtomicBool,
}

/// One home's idle connections, on a cache line of its own: threads do not share the lock's line.
#[repr(align(64))]
#[derive(Default)]
struct Shelf(Mutex<VecDeque<Idle>>);

struct Idle {
    tx: http1::SendRequest<Body>,
    since: Instant,
}

impl Idle {
    fn usable(&self, now: Instant) -> bool {
        self.tx.is_ready() && now.duration_since(self.since) < POOL_IDLE
    }
}

/// How often a pool closes the connections left unused for `POOL_IDLE` (so they close between
/// one and one and a third of it).
const REAP_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

impl Plain {
    pub fn new(
        connector: LaneConnector,
        authority: &http::uri::Authority,
        hook: SpawnHook,
    ) -> Result<Plain, String> {
        let dst = Uri::builder()
            .scheme(http::uri::Scheme::HTTP)
            .authority(authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|e| format!("upstream address: {e}"))?;
        let host = match authority.port_u16() {
            Some(port) if port != 80 => format!("{}:{port}", authority.host()),
            _ => authority.host().to_owned(),
        };
        let host = HeaderValue::try_from(host).map_err(|e| format!("upstream host: {e}"))?;
        Ok(Plain {
            connector,
            dst,
            host,
            idle: (0..home::HOMES).map(|_| Shelf::default()).collect(),
            hook,
            reaping: AtomicBool::new(false),
        })
    }

    /// Sends `req` (its URI in any form: only the path and query go out) on an idle
    /// connection, or on a new one.
    pub async fn send(
        self: Arc<Self>,
        mut req: Request<Body>,
    ) -> Result<Response<UpstreamBody>, SendError> {
        let origin = req
            .uri()
            .path_and_query()
            .map_or_else(|| Uri::from_static("/"), |pq| Uri::from(pq.clone()));
        *req.uri_mut() = origin;
        req.headers_mut().insert(header::HOST, self.host.clone());
        loop {
            let (mut tx, reused) = match self.checkout() {
                Some(tx) => (tx, true),
                // Boxed: connecting (the TCP connect and hyper's handshake) is the cold path,
                // and inline it made every request's future, copied whole into its box, larger.
                None => (Box::pin(self.connect()).await?, false),
            };
            match tx.try_send_request(req).await {
                Ok(res) => {
                    if tx.is_ready() || res.body().is_end_stream() {
                        self.give_back(tx);
                        return Ok(res.map(UpstreamBody::new));
                    }
                    // Back in the pool once the body has been read whole.
                    let back = Back { tx, pool: self };
                    return Ok(res.map(|body| UpstreamBody::with_back(body, back)));
                }
                Err(mut e) => match e.take_message() {
                    // Closed before any of the request was written: a reused connection
                    // the upstream had just closed; the request goes again on a new one.
                    Some(back) if reused => req = back,
                    _ => return Err(SendError::Request(e.into_error())),
                },
            }
        }
    }

    /// The most recently used idle connection that is open and ready. The ones passed on the
    /// way (closed, busy or too old) are dropped, which closes them, once the lock is let go.
    fn checkout(&self) -> Option<http1::SendRequest<Body>> {
        let now = Instant::now();
        let mut passed = Vec::new();
        let found = {
            let mut idle = self.shelf();
            loop {
                match idle.pop_back() {
                    Some(i) if i.usable(now) => break Some(i.tx),
                    Some(i) => passed.push(i),
                    None => break None,
                }
            }
        };
        drop(passed);
        found
    }

    /// A new connection, ready for a request; its task runs until the upstream or aloud
    /// closes it. A connection that fails before it is ready reports its own error, as
    /// hyper-util's client did (not hyper's bare "channel closed").
    async fn connect(&self) -> Result<http1::SendRequest<Body>, SendError> {
        let mut connector = self.connector.clone();
        std::future::poll_fn(|cx| connector.poll_ready(cx))
            .await
            .map_err(SendError::Connect)?;
        let io = connector
            .call(self.dst.clone())
            .await
            .map_err(SendError::Connect)?;
        let (mut tx, mut conn) = http1::handshake(io).await.map_err(SendError::Request)?;
        let (failed, why) = tokio::sync::oneshot::channel();
        // A `poll_fn` that owns the connection, not `async move { conn.await }`: an async block
        // keeps what it captured and the future it awaits side by side, so the connection
        // (1.7 KB with its I/O and parser state) would be boxed twice, on every waiting
        // request (benches/heartbeats.sh's state_size).
        let mut failed = Some(failed);
        self.run(
            "upstream connection",
            Box::pin(std::future::poll_fn(move |cx| {
                let ended = std::task::ready!(Pin::new(&mut conn).poll(cx));
                if let (Err(e), Some(failed)) = (ended, failed.take()) {
                    tracing::debug!(error = %e, "upstream connection ended");
                    let _ = failed.send(e);
                }
                std::task::Poll::Ready(())
            })),
        );
        match tx.ready().await {
            Ok(()) => Ok(tx),
            Err(e) => Err(SendError::Request(why.await.unwrap_or(e))),
        }
    }

    /// Puts a connection back once its answer has been read whole (or has no body): at once
    /// when it is ready for another request, as it nearly always is by then, else when it is.
    pub(super) fn give_back(self: &Arc<Self>, mut tx: http1::SendRequest<Body>) {
        if tx.is_ready() {
            self.put(tx);
            return;
        }
        if tx.is_closed() {
            return;
        }
        // hyper's connection is ready for the next request once it has taken in the answer's
        // end, which its task may not have done yet. (One that fails closes instead.)
        let pool = Arc::clone(self);
        self.run(
            "upstream connection return",
            Box::pin(async move {
                if tx.ready().await.is_ok() {
                    pool.put(tx);
                }
            }),
        );
    }

    /// Runs `task` on the server's tracked tasks, or (an app built alone) on the runtime.
    fn run(&self, name: &'static str, task: Pin<Box<dyn Future<Output = ()> + Send>>) {
        match self.hook.spawner() {
            Some(spawner) => spawner.spawn(name, task),
            None => hyper::rt::Executor::execute(&hyper_util::rt::TokioExecutor::new(), task),
        }
    }

    fn put(self: &Arc<Self>, tx: http1::SendRequest<Body>) {
        if self.hook.is_closed() {
            return;
        }
        let now = Instant::now();
        let gone = {
            let mut idle = self.shelf();
            // Again under the lock: `close_idle` empties every shelf after the hook closed, so
            // a connection put back by another serving thread meanwhile is not kept past it.
            if self.hook.is_closed() {
                return;
            }
            // The least recently used is checked on the way: one too old or closed goes.
            let stale = idle
                .front()
                .is_some_and(|i| i.tx.is_closed() || now.duration_since(i.since) >= POOL_IDLE);
            let gone = if stale { idle.pop_front() } else { None };
            idle.push_back(Idle { tx, since: now });
            gone
        };
        drop(gone);
        if !self.reaping.swap(true, Ordering::Relaxed) {
            self.reap_later();
        }
    }

    /// Closes, now and then, the connections left unused for `POOL_IDLE`, until the pool is
    /// gone (a reload replaced it) or the server closes idle connections.
    fn reap_later(self: &Arc<Self>) {
        let pool = Arc::downgrade(self);
        let closed = self.hook.closed_token();
        self.run(
            "upstream connection reaper",
            Box::pin(async move {
                loop {
                    tokio::select! {
                        () = closed.cancelled() => return,
                        () = tokio::time::sleep(REAP_EVERY) => {}
                    }
                    let Some(pool) = pool.upgrade() else { return };
                    pool.reap(Instant::now());
                }
            }),
        );
    }

    /// The calling thread's idle connections, locked.
    fn shelf(&self) -> std::sync::MutexGuard<'_, VecDeque<Idle>> {
        lock(&self.idle[home::get() % self.idle.len()].0)
    }

    /// Drops the connections unused for `POOL_IDLE`, or closed by the upstream, in every home.
    fn reap(&self, now: Instant) {
        for shelf in &self.idle {
            let gone = {
                let mut idle = lock(&shelf.0);
                let (keep, gone): (VecDeque<Idle>, VecDeque<Idle>) = std::mem::take(&mut *idle)
                    .into_iter()
                    .partition(|i| !i.tx.is_closed() && now.duration_since(i.since) < POOL_IDLE);
                *idle = keep;
                gone
            };
            drop(gone);
        }
    }

    /// Closes every idle connection (the server's shutdown, once the proxy has drained).
    pub(super) fn close_idle(&self) {
        for shelf in &self.idle {
            let gone = std::mem::take(&mut *lock(&shelf.0));
            drop(gone);
        }
    }

    /// How many idle connections the calling thread's home holds.
    #[cfg(test)]
    fn idle_here(&self) -> usize {
        self.shelf().len()
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // the test upstream's own tasks, ended with the test's runtime
mod tests {
    use super::super::{SpawnHook, Upstream};
    use super::*;
    use crate::config::{Connect, HttpUpstream};
    use std::sync::atomic::AtomicUsize;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A loopback upstream answering every request with `ok`; counts the connections made to it.
    async fn upstream() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let opened = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&opened);
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await
                        && n > 0
                    {
                        seen.extend_from_slice(&buf[..n]);
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            seen.drain(..end + 4);
                            let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            if s.write_all(reply).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (addr, opened)
    }

    /// Sends a request on `pool`, reads its answer whole, and waits until its connection is
    /// back in the calling thread's stack.
    async fn round_trip(pool: &Arc<Plain>) {
        let res = Arc::clone(pool)
            .send(Request::get("/").body(Body::empty()).expect("request"))
            .await
            .expect("an answer");
        let body = http_body_util::BodyExt::collect(res.into_body())
            .await
            .expect("a body")
            .to_bytes();
        assert_eq!(&body[..], b"ok");
        for _ in 0..10_000 {
            if pool.idle_here() == 1 {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("the connection never came back to this thread's stack");
    }

    #[tokio::test]
    async fn each_serving_thread_reuses_its_own_connections() {
        let (addr, opened) = upstream().await;
        let hook = SpawnHook::default();
        let target = HttpUpstream::loopback(addr);
        let route = Upstream::new(
            &target,
            &Connect::default(),
            std::time::Duration::from_secs(5),
            &hook,
        )
        .expect("an upstream");
        let pool = Arc::clone(route.plain().expect("plain http"));
        for _ in 0..3 {
            round_trip(&pool).await;
        }
        assert_eq!(opened.load(Ordering::SeqCst), 1, "home 0 reused its one");
        // Another serving thread, with its own runtime: its own connection, reused in turn,
        // while home 0's stays where it was.
        let there = Arc::clone(&pool);
        let thread = std::thread::spawn(move || {
            home::set(1);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            rt.block_on(async {
                assert_eq!(there.idle_here(), 0, "home 1 starts empty");
                for _ in 0..3 {
                    round_trip(&there).await;
                }
            });
        });
        // Joined off this runtime, which runs the upstream meanwhile.
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .expect("joined")
            .map_err(|_| "home 1's thread panicked")
            .expect("home 1 served");
        assert_eq!(
            opened.load(Ordering::SeqCst),
            2,
            "home 1 opened one of its own"
        );
        assert_eq!(pool.idle_here(), 1, "home 0's is still idle");
        round_trip(&pool).await;
        assert_eq!(opened.load(Ordering::SeqCst), 2);
    }
}
