//! The TCP leg to the upstream: direct, or through an HTTP CONNECT tunnel (hyper-util's
//! `Tunnel`) when the route has an egress proxy.
//!
//! Plain-http upstreams go through the same CONNECT tunnel as https ones (not absolute-form
//! requests): one code path, the proxy's credentials never ride on a request, and the
//! upstream sees exactly the bytes it would see directly.

use super::BoxError;
use crate::config::EgressProxy;
use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::net::TcpStream;
use tower_service::Service;

#[derive(Clone)]
pub enum Egress {
    Direct(HttpConnector),
    /// The tunnel, and the proxy without credentials for error messages (boxed: a tunnel is
    /// large and cloned only per connection).
    Tunnel(Box<(Tunnel<HttpConnector>, Uri)>),
}

impl Egress {
    pub fn new(http: HttpConnector, proxy: Option<&EgressProxy>) -> Egress {
        match proxy {
            None => Egress::Direct(http),
            Some(p) => {
                let mut tunnel = Tunnel::new(p.uri.clone(), http);
                if let Some(auth) = &p.auth {
                    tunnel = tunnel.with_auth(auth.clone());
                }
                Egress::Tunnel(Box::new((tunnel, p.uri.clone())))
            }
        }
    }
}

type Io = TokioIo<TcpStream>;

pub enum Connecting {
    Direct(<HttpConnector as Service<Uri>>::Future),
    Tunnel(<Tunnel<HttpConnector> as Service<Uri>>::Future, Uri),
}

impl Service<Uri> for Egress {
    type Response = Io;
    type Error = BoxError;
    type Future = Connecting;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match self {
            Egress::Direct(h) => h.poll_ready(cx).map_err(Into::into),
            Egress::Tunnel(t) => t.0.poll_ready(cx).map_err(Into::into),
        }
    }

    fn call(&mut self, dst: Uri) -> Connecting {
        match self {
            Egress::Direct(h) => Connecting::Direct(h.call(dst)),
            Egress::Tunnel(t) => Connecting::Tunnel(t.0.call(with_port(dst)), t.1.clone()),
        }
    }
}

/// `Tunnel` asks for port 443 when the URI has none; a plain-http upstream means 80.
fn with_port(dst: Uri) -> Uri {
    if dst.port().is_some() || dst.scheme() != Some(&http::uri::Scheme::HTTP) {
        return dst;
    }
    let Some(host) = dst.host() else {
        return dst;
    };
    Uri::builder()
        .scheme(http::uri::Scheme::HTTP)
        .authority(format!("{host}:80"))
        .path_and_query("/")
        .build()
        .unwrap_or(dst)
}

impl Future for Connecting {
    type Output = Result<Io, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Connecting::Direct(f) => Pin::new(f).poll(cx).map_err(Into::into),
            Connecting::Tunnel(f, proxy) => Pin::new(f).poll(cx).map_err(|e| {
                Box::new(ProxyRefused {
                    proxy: proxy.to_string(),
                    cause: e.into(),
                }) as BoxError
            }),
        }
    }
}

/// The egress proxy could not be reached or refused the tunnel.
#[derive(Debug, thiserror::Error)]
#[error("through the egress proxy {proxy}: {cause}")]
pub struct ProxyRefused {
    proxy: String,
    #[source]
    cause: BoxError,
}
