//! The upstream HTTP client per route: TCP or an egress proxy's tunnel (`egress`), rustls with
//! the route's trust roots and client certificate (`tls`), HTTP/1.1 or HTTP/2 by ALPN, pooled,
//! with more h2 connections past a server's stream limit (`lanes`, `settings`). A plain-http
//! route's connections are its own (`plain`); the answer's body puts one back once read whole
//! (`body`).
//!
//! The client never follows redirects (hyper has no such feature) and only retries a request
//! that a pooled connection closed before any byte of it was written. Everything here is built
//! once per route (per config load); a request only picks a lane.

mod body;
mod egress;
mod lanes;
mod plain;
mod settings;
mod tls;

pub use body::UpstreamBody;
pub use lanes::{MAX_LANES, Slot};
pub use plain::{Plain, SendError};

use crate::config::{Connect, HttpUpstream};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Tls = hyper_rustls::HttpsConnector<egress::Egress>;

/// What a plain-http route's connection tasks run on (`plain`): the server's tracked tasks.
pub trait Spawner: Send + Sync {
    fn spawn(&self, name: &'static str, task: Pin<Box<dyn Future<Output = ()> + Send>>);
}

/// What every plain-http route's connections share, across reloads: where their tasks run
/// (installed by the server when it starts; an app built alone, in tests, runs them on the
/// runtime as they come), and the shutdown that closes the idle ones.
#[derive(Default)]
pub struct Connections {
    spawner: OnceLock<Arc<dyn Spawner>>,
    /// Every route's pool, this config's and earlier ones' (gone ones are pruned).
    pools: Mutex<Vec<Weak<Plain>>>,
    closed: CancellationToken,
}

/// The shared [`Connections`].
pub type SpawnHook = Arc<Connections>;

impl Connections {
    /// Installs the server's spawner; a second server over the same app keeps the first's.
    pub fn install(&self, spawner: Arc<dyn Spawner>) {
        let _ = self.spawner.set(spawner);
    }

    /// Once the proxy has drained: every idle connection is closed, and connections that end
    /// their exchange from now on close instead of going back to a pool. Busy ones end with
    /// their exchanges (cutting them here would race the shutdown's own cut: an exchange would
    /// read an upstream failure first).
    pub fn close(&self) {
        self.closed.cancel();
        let pools: Vec<Arc<Plain>> = lock(&self.pools).iter().filter_map(Weak::upgrade).collect();
        for pool in pools {
            pool.close_idle();
        }
    }

    fn register(&self, pool: &Arc<Plain>) {
        let mut pools = lock(&self.pools);
        pools.retain(|p| p.strong_count() > 0);
        pools.push(Arc::downgrade(pool));
    }

    fn spawner(&self) -> Option<&Arc<dyn Spawner>> {
        self.spawner.get()
    }

    fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    fn closed_token(&self) -> CancellationToken {
        self.closed.clone()
    }
}

/// A lock that a panic elsewhere does not poison for good: the pools' lists stay consistent
/// between statements.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One lane's client; requests get one from `Upstream::pick`.
pub type HttpClient = lanes::LaneClient;

/// How long an unused pooled connection is kept.
pub(crate) const POOL_IDLE: Duration = Duration::from_secs(90);

/// A route's way to its upstream: its clients and what they learnt about it.
pub struct Upstream {
    lanes: lanes::Lanes,
    /// A plain-http upstream's HTTP/1.1 connections; `None` over TLS, where `lanes` serve.
    plain: Option<Arc<Plain>>,
}

impl Upstream {
    /// Builds the route's connector once: its TLS config and proxy tunnel, from `connect`.
    pub fn new(
        target: &HttpUpstream,
        connect: &Connect,
        connect_timeout: Duration,
        spawn: &SpawnHook,
    ) -> Result<Upstream, String> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls::client_config(connect)?)
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(egress::Egress::new(http, connect.proxy.as_ref()));
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_idle_timeout(POOL_IDLE)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new());
        let tls = target.scheme == http::uri::Scheme::HTTPS;
        let lanes = lanes::Lanes::new(builder, https, connect_timeout, tls);
        let plain = if tls {
            None
        } else {
            let pool = Arc::new(Plain::new(
                lanes.connector(),
                &target.authority,
                Arc::clone(spawn),
            )?);
            spawn.register(&pool);
            Some(pool)
        };
        Ok(Upstream { lanes, plain })
    }

    /// The plain-http upstream's connections, when the route is not over TLS.
    pub fn plain(&self) -> Option<&Arc<Plain>> {
        self.plain.as_ref()
    }

    /// The client for one request, and the h2 stream slot it holds until the exchange ends.
    pub fn pick(&self) -> (&HttpClient, Option<Slot>) {
        self.lanes.pick()
    }

    /// How many clients (each with its own h2 connection) the route has opened.
    pub fn lanes_opened(&self) -> usize {
        self.lanes.opened()
    }
}

/// Why talking to the upstream failed before a response arrived, in words for the client.
pub fn describe(error: &hyper_util::client::legacy::Error) -> (UpstreamFailure, String) {
    describe_chain(
        std::error::Error::source(error),
        || error.to_string(),
        error.is_connect(),
    )
}

/// [`describe`] for a plain-http upstream's failure: the same words for the same causes.
pub fn describe_plain(error: &SendError) -> (UpstreamFailure, String) {
    match error {
        SendError::Connect(e) => describe_chain(Some(&**e), || e.to_string(), true),
        SendError::Request(e) => describe_chain(Some(e), || e.to_string(), false),
    }
}

/// The words for a failure whose causes start at `first`; `shown` when none has any.
fn describe_chain(
    first: Option<&(dyn std::error::Error + 'static)>,
    shown: impl FnOnce() -> String,
    connect: bool,
) -> (UpstreamFailure, String) {
    let mut cause = String::new();
    let mut proxy = None;
    let mut tls = None;
    let mut timed_out = false;
    let mut source = first;
    while let Some(s) = source {
        cause = s.to_string();
        if proxy.is_none() && s.is::<egress::ProxyRefused>() {
            proxy = Some(cause.clone());
        }
        timed_out |= s.is::<lanes::ConnectTimedOut>();
        tls = tls.or_else(|| tls_error(s));
        source = s.source();
    }
    let what = match (proxy, tls) {
        (_, Some(t)) => format!(
            "TLS with the upstream failed: {t}{}",
            tls_hint(&t.to_string())
        ),
        (Some(p), None) => p,
        (None, None) if cause.is_empty() => shown(),
        // h2 keeps an I/O error's text only, so a TLS alert after the handshake (TLS 1.3
        // servers check the client's certificate then) is known by rustls's words for it.
        (None, None) if cause.starts_with("received fatal alert") => {
            format!("TLS with the upstream failed: {cause}{}", tls_hint(&cause))
        }
        (None, None) => cause,
    };
    if connect {
        let timed_out = timed_out || what.contains("timed out") || what.contains("timeout");
        let kind = if timed_out {
            UpstreamFailure::ConnectTimeout
        } else {
            UpstreamFailure::Connect
        };
        return (kind, format!("cannot connect to the upstream: {what}"));
    }
    (
        UpstreamFailure::Other,
        format!("the upstream failed before responding: {what}"),
    )
}

/// A rustls error, which tokio-rustls carries inside an `io::Error` (and hyper-rustls inside
/// another); `io::Error::source` skips what it wraps, so the wrapping is unpeeled here.
fn tls_error<'a>(mut e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    loop {
        if let Some(t) = e.downcast_ref::<rustls::Error>() {
            return Some(t);
        }
        e = e.downcast_ref::<std::io::Error>()?.get_ref()?;
    }
}

/// What the operator can do about a TLS failure, by rustls's words for it.
fn tls_hint(error: &str) -> &'static str {
    const CLIENT: [&str; 4] = [
        "CertificateRequired",
        "HandshakeFailure",
        "BadCertificate",
        "UnknownCA",
    ];
    if error.starts_with("invalid peer certificate") {
        " (if the upstream's certificate comes from a private CA, trust it with ca_file)"
    } else if error.starts_with("received fatal alert") && CLIENT.iter().any(|a| error.ends_with(a))
    {
        " (the upstream may require a client certificate: client_cert and client_key)"
    } else {
        ""
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamFailure {
    Connect,
    ConnectTimeout,
    Other,
}

/// Whether `error` (from a request) was caused by our request body limit.
pub fn caused_by_body_limit(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(s) = source {
        if s.is::<super::body::BodyTooLarge>() {
            return true;
        }
        source = s.source();
    }
    false
}
