//! A mock HTTPS upstream: TLS by tokio-rustls, then HTTP/2 or HTTP/1.1 by the negotiated ALPN,
//! recording connections, protocol versions and client certificates.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use super::BoxBody;
use http::{Request, Response, Version};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Which TLS connection (0, 1, ...) a request came on, in its extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnId(pub usize);

/// What the upstream saw.
#[derive(Default)]
pub struct Seen {
    /// TLS handshakes completed.
    pub connections: AtomicUsize,
    /// TLS handshakes that failed (no client certificate, unknown CA...).
    pub refused: AtomicUsize,
    /// Each request's HTTP version.
    pub versions: Mutex<Vec<Version>>,
    /// Whether each connection presented a client certificate.
    pub client_certs: Mutex<Vec<bool>>,
}

impl Seen {
    pub fn versions(&self) -> Vec<Version> {
        self.versions.lock().unwrap().clone()
    }
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

pub struct HttpsUpstream {
    pub addr: SocketAddr,
    pub seen: Arc<Seen>,
    handle: JoinHandle<()>,
}

impl Drop for HttpsUpstream {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

impl HttpsUpstream {
    /// Serves `handler` over TLS with `config`; h2 connections allow `max_streams` streams.
    pub async fn start<F, Fut>(
        config: Arc<rustls::ServerConfig>,
        max_streams: Option<u32>,
        handler: F,
    ) -> HttpsUpstream
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<BoxBody>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let seen = Arc::new(Seen::default());
        let handler = Arc::new(handler);
        let seen2 = Arc::clone(&seen);
        #[expect(clippy::disallowed_methods, reason = "aborted on drop")]
        let handle = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let handler = Arc::clone(&handler);
                let seen = Arc::clone(&seen2);
                #[expect(clippy::disallowed_methods, reason = "test connection task")]
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        seen.refused.fetch_add(1, Ordering::SeqCst);
                        return;
                    };
                    let (_, session) = tls.get_ref();
                    let h2 = session.alpn_protocol() == Some(b"h2");
                    seen.client_certs
                        .lock()
                        .unwrap()
                        .push(session.peer_certificates().is_some());
                    let id = ConnId(seen.connections.fetch_add(1, Ordering::SeqCst));
                    let seen_req = Arc::clone(&seen);
                    let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                        seen_req.versions.lock().unwrap().push(req.version());
                        req.extensions_mut().insert(id);
                        let handler = Arc::clone(&handler);
                        async move { Ok::<_, Infallible>(handler(req).await) }
                    });
                    let io = TokioIo::new(tls);
                    if h2 {
                        let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                        if let Some(n) = max_streams {
                            b.max_concurrent_streams(n);
                        }
                        let _ = b.serve_connection(io, svc).await;
                    } else {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(io, svc)
                            .await;
                    }
                });
            }
        });
        HttpsUpstream { addr, seen, handle }
    }
}
