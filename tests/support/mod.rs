//! Test support: aloud on port 0, mock upstreams over real sockets, and small HTTP clients.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod binary;
pub mod certs;
pub mod clients;
pub mod connect_proxy;
pub mod csv_export;
pub mod https_upstream;
pub mod nginx;
pub mod postgres;
pub mod scripted;
pub mod stored;
pub mod tls;
pub mod wire;

use aloud::config::{Config, MapEnv};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub type BoxBody =
    http_body_util::combinators::BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// Says that a test skips, where `cargo test` shows it even when the test passes: straight to
/// the process's stderr, past libtest's capture of `eprintln!` (`scripts/test.sh --quick`
/// relies on it: missing components skip loudly there).
pub fn skip(message: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "SKIPPED {message}");
}

/// A running aloud on a loopback port 0.
pub struct Aloud {
    pub addr: SocketAddr,
    /// The admin listener's address, when the config asked for one on port 0
    /// (`[admin] listen = "127.0.0.1:0"`); tests never bind the default port.
    pub admin: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    pub handle: JoinHandle<std::io::Result<()>>,
}

impl Aloud {
    pub async fn start(toml: &str) -> Aloud {
        Self::start_with_env(toml, MapEnv::default()).await
    }

    pub async fn start_with_env(toml: &str, env: MapEnv) -> Aloud {
        Self::start_with_sink(toml, env, None).await
    }

    /// Starts aloud with capture records going to `sink`.
    pub async fn start_with_sink(
        toml: &str,
        env: MapEnv,
        sink: Option<Arc<dyn aloud::capture::CaptureSink>>,
    ) -> Aloud {
        let config =
            Config::parse(toml, Path::new("test.toml"), &env).expect("test config is valid");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let admin_listener = match config.admin.listen {
            Some(at) if at.port() == 0 => Some(TcpListener::bind(at).await.unwrap()),
            _ => None,
        };
        let admin = admin_listener.as_ref().map(|l| l.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        #[expect(
            clippy::disallowed_methods,
            reason = "tests own this task and join it in stop()"
        )]
        let handle = tokio::spawn(aloud::server::serve_with(
            config,
            aloud::server::Listeners {
                proxy: listener,
                admin: admin_listener,
            },
            async move {
                let _ = rx.await;
            },
            sink,
        ));
        Aloud {
            addr,
            admin,
            stop: Some(tx),
            handle,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A URL on the admin listener (panics when the test asked for none).
    pub fn admin_url(&self, path: &str) -> String {
        let admin = self
            .admin
            .expect("the config has [admin] listen = \"127.0.0.1:0\"");
        format!("http://{admin}{path}")
    }

    /// Signals shutdown without waiting.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    pub async fn stop(mut self) {
        self.begin_shutdown();
        (&mut self.handle).await.unwrap().unwrap();
    }
}

/// One route in front of `upstream`, plus extra TOML for `[server]`/route keys.
pub fn route_config(
    upstream: SocketAddr,
    api: &str,
    route_extra: &str,
    server_extra: &str,
) -> String {
    format!(
        "[server]\n{server_extra}\n[[routes]]\nname = \"up\"\nprefix = \"/up\"\nupstream = \"http://{upstream}\"\napi = \"{api}\"\n{route_extra}\n"
    )
}

/// A mock upstream: a hyper HTTP/1 server over a real socket, answering with `handler`.
pub struct Upstream {
    pub addr: SocketAddr,
    handle: JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

impl Upstream {
    pub async fn start<F, Fut>(handler: F) -> Upstream
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<BoxBody>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handler = Arc::new(handler);
        #[expect(clippy::disallowed_methods, reason = "aborted on drop")]
        let handle = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let handler = Arc::clone(&handler);
                let svc = hyper::service::service_fn(move |req| {
                    let handler = Arc::clone(&handler);
                    async move { Ok::<_, Infallible>(handler(req).await) }
                });
                #[expect(clippy::disallowed_methods, reason = "test connection task")]
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Upstream { addr, handle }
    }

    /// A raw TCP upstream: `on_conn` gets each accepted socket.
    pub async fn raw<F, Fut>(on_conn: F) -> Upstream
    where
        F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let on_conn = Arc::new(on_conn);
        #[expect(clippy::disallowed_methods, reason = "aborted on drop")]
        let handle = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                #[expect(clippy::disallowed_methods, reason = "test connection task")]
                tokio::spawn(on_conn(stream));
            }
        });
        Upstream { addr, handle }
    }
}

pub fn full(bytes: impl Into<Bytes>) -> BoxBody {
    Full::new(bytes.into())
        .map_err(|e: Infallible| match e {})
        .boxed()
}

/// A body fed from a channel: each message becomes one chunk on the wire.
pub fn channel_body() -> (tokio::sync::mpsc::Sender<Bytes>, BoxBody) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    let body = http_body_util::StreamBody::new(tokio_stream::StreamExt::map(stream, |b| {
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(hyper::body::Frame::data(b))
    }));
    (tx, BoxBody::new(body))
}

pub fn response(status: u16, headers: &[(&str, &str)], body: BoxBody) -> Response<BoxBody> {
    let mut b = Response::builder().status(status);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(body).unwrap()
}

/// A plain hyper client (one connection per request, so tests see fresh behaviour).
pub async fn send(req: Request<BoxBody>) -> Response<Incoming> {
    let authority = req.uri().authority().unwrap().to_string();
    let stream = TcpStream::connect(&authority).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    #[expect(
        clippy::disallowed_methods,
        reason = "connection driver for a test client"
    )]
    tokio::spawn(conn);
    sender.send_request(req).await.unwrap()
}

pub async fn get(url: &str) -> Response<Incoming> {
    send(Request::get(url).body(full("")).unwrap()).await
}

pub async fn post(
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Response<Incoming> {
    let mut b = Request::post(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(b.body(full(body)).unwrap()).await
}

pub async fn body_bytes(r: Response<Incoming>) -> Bytes {
    r.into_body().collect().await.unwrap().to_bytes()
}

/// The body's bytes, and whether it ended cleanly (false: the transfer failed).
pub async fn read_to_end(r: Response<Incoming>) -> (Vec<u8>, bool) {
    let mut body = r.into_body();
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Some(d) = f.data_ref() {
                    bytes.extend_from_slice(d);
                }
            }
            Err(_) => return (bytes, false),
        }
    }
    (bytes, true)
}

pub async fn body_json(r: Response<Incoming>) -> serde_json::Value {
    serde_json::from_slice(&body_bytes(r).await).unwrap()
}

/// A pooled client like the SDKs use (keep-alive), for tests that need several requests.
pub fn pooled_client()
-> hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, BoxBody> {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http()
}

/// Writes raw bytes to `addr` and reads until the server closes or `until` matches.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    out
}

/// A capture sink that keeps records in memory, with a way to wait for them.
#[derive(Default)]
pub struct MemorySink {
    pub records: std::sync::Mutex<Vec<aloud::capture::CaptureRecord>>,
    pub timings: std::sync::Mutex<Vec<(String, aloud::capture::beacon::ClientTimings)>>,
    pub feedback: std::sync::Mutex<Vec<(String, aloud::capture::beacon::Feedback)>>,
    changed: tokio::sync::Notify,
}

impl MemorySink {
    /// Waits until a record for `id` arrived (records arrive when the response body is dropped).
    pub async fn wait_for(&self, id: &str) -> aloud::capture::CaptureRecord {
        loop {
            let notified = self.changed.notified();
            if let Some(r) = self
                .records
                .lock()
                .unwrap()
                .iter()
                .rev()
                .find(|r| r.id == id)
            {
                return r.clone();
            }
            tokio::time::timeout(std::time::Duration::from_secs(30), notified)
                .await
                .expect("no capture record arrived");
        }
    }
}

impl aloud::capture::CaptureSink for MemorySink {
    fn submit(&self, record: aloud::capture::CaptureRecord) {
        self.records.lock().unwrap().push(record);
        self.changed.notify_waiters();
    }
    fn known(&self, id: &str, owner: Option<aloud::config::Owner>) -> bool {
        self.records
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.id == id && r.owner == owner)
    }
    fn timings(
        &self,
        id: &str,
        _owner: Option<aloud::config::Owner>,
        timings: aloud::capture::beacon::ClientTimings,
    ) {
        self.timings.lock().unwrap().push((id.to_owned(), timings));
    }
    fn feedback(
        &self,
        id: &str,
        _owner: Option<aloud::config::Owner>,
        feedback: aloud::capture::beacon::Feedback,
    ) {
        self.feedback
            .lock()
            .unwrap()
            .push((id.to_owned(), feedback));
    }
}
