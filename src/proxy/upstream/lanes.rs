//! Lanes: more HTTP/2 connections when one connection's stream limit is reached.
//!
//! hyper-util's legacy pool keeps ONE connection per (scheme, host) once ALPN says h2, and
//! hands it to every request; hyper's h2 dispatcher takes a request off its queue only when
//! the connection has a free stream, so requests past the server's MAX_CONCURRENT_STREAMS
//! wait (unbounded) for an earlier one to end, which for a 10-minute generation means minutes.
//! No pool setting changes that, so a route over TLS has up to `MAX_LANES` clients ("lanes"),
//! each with its own pool and so its own h2 connection. A request takes a stream slot on the
//! first lane with one free, by the limit the server announced (read by `settings`); until
//! a limit is known a lane takes one request at a time, as HTTP/1.1 would open a connection per
//! request. Once the upstream is known to speak HTTP/1.1, lane 0 alone serves (its pool opens
//! connections as needed) and no slot is counted. Plain-http routes never use lanes.

use super::settings::Sniffed;
use super::{BoxError, HttpClient, Tls};
use axum::body::Body;
use http::Uri;
use hyper_util::client::legacy::Builder;
use hyper_util::client::legacy::connect::Connection;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

/// Clients (so h2 connections) a route may open to one upstream; past them, requests queue.
pub const MAX_LANES: usize = 16;

const HTTP1: u8 = 1;
const HTTP2: u8 = 2;

/// What the route has learnt about its upstream, shared by its lanes.
#[derive(Debug, Default)]
pub struct Shared {
    /// 0 until a connection was made, then `HTTP1` or `HTTP2` (the latest connection's ALPN).
    protocol: AtomicU8,
    /// Streams per connection: 0 while unknown, `usize::MAX` when the server set no limit.
    limit: AtomicUsize,
}

impl Shared {
    pub fn learned(&self, limit: Option<u32>) {
        let n = limit.map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
        if n == 0 {
            // "No new streams for now": keep the last limit rather than stall every lane.
            return;
        }
        self.limit.store(n, Ordering::Relaxed);
    }

    fn per_lane(&self) -> usize {
        match self.limit.load(Ordering::Relaxed) {
            0 => 1,
            n => n,
        }
    }
}

/// A stream slot on a lane, held by the exchange until it ends.
#[derive(Debug)]
pub struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Lane {
    client: HttpClient,
    in_flight: Arc<AtomicUsize>,
}

impl Lane {
    fn try_take(&self, limit: usize) -> Option<Slot> {
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(Arc::clone(&self.in_flight)))
    }
}

/// A route's upstream clients: lane 0 always, more on demand for an h2 upstream over TLS.
pub struct Lanes {
    first: Lane,
    /// Lanes 1.. (none for a plain-http route), opened on demand.
    more: Box<[OnceLock<Lane>]>,
    shared: Arc<Shared>,
    builder: Builder,
    connector: LaneConnector,
    tls: bool,
}

impl Lanes {
    pub fn new(builder: Builder, connector: Tls, connect_timeout: Duration, tls: bool) -> Lanes {
        let shared = Arc::new(Shared::default());
        let connector = LaneConnector {
            inner: connector,
            shared: Arc::clone(&shared),
            timeout: connect_timeout,
        };
        let more: Box<[OnceLock<Lane>]> = (1..if tls { MAX_LANES } else { 1 })
            .map(|_| OnceLock::new())
            .collect();
        Lanes {
            first: Lane {
                client: builder.build(connector.clone()),
                in_flight: Arc::new(AtomicUsize::new(0)),
            },
            more,
            shared,
            builder,
            connector,
            tls,
        }
    }

    fn opened_lane<'a>(&self, cell: &'a OnceLock<Lane>) -> &'a Lane {
        cell.get_or_init(|| Lane {
            client: self.builder.build(self.connector.clone()),
            in_flight: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// The client for the next request (borrowed: a request needs it only to make its future,
    /// which takes the one clone it needs), and its stream slot when lanes are counted.
    pub fn pick(&self) -> (&HttpClient, Option<Slot>) {
        let first = &self.first;
        if !self.tls || self.shared.protocol.load(Ordering::Relaxed) == HTTP1 {
            return (&first.client, None);
        }
        let limit = self.shared.per_lane();
        if let Some(slot) = first.try_take(limit) {
            return (&first.client, Some(slot));
        }
        for cell in &self.more {
            let lane = self.opened_lane(cell);
            if let Some(slot) = lane.try_take(limit) {
                return (&lane.client, Some(slot));
            }
        }
        // Every lane is full: the least busy one queues the request on its connection.
        let lane = self
            .more
            .iter()
            .filter_map(OnceLock::get)
            .fold(first, |best, l| {
                if l.in_flight.load(Ordering::Relaxed) < best.in_flight.load(Ordering::Relaxed) {
                    l
                } else {
                    best
                }
            });
        lane.in_flight.fetch_add(1, Ordering::AcqRel);
        (&lane.client, Some(Slot(Arc::clone(&lane.in_flight))))
    }

    /// The connector every lane dials with (for a plain-http route's own connections).
    pub fn connector(&self) -> LaneConnector {
        self.connector.clone()
    }

    /// How many lanes have been opened, lane 0 included.
    pub fn opened(&self) -> usize {
        1 + self.more.iter().filter(|l| l.get().is_some()).count()
    }
}

/// The connector of every lane: TCP (or a proxy tunnel), TLS, the whole bounded by the
/// connect timeout; an h2 connection's socket reads the server's stream limit.
#[derive(Clone)]
pub struct LaneConnector {
    inner: Tls,
    shared: Arc<Shared>,
    timeout: Duration,
}

type Io = Sniffed<<Tls as tower_service::Service<Uri>>::Response>;

impl tower_service::Service<Uri> for LaneConnector {
    type Response = Io;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Io, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let connecting = self.inner.call(dst);
        let shared = Arc::clone(&self.shared);
        let timeout = self.timeout;
        Box::pin(async move {
            let io = match tokio::time::timeout(timeout, connecting).await {
                Ok(io) => io?,
                Err(_) => return Err(Box::new(ConnectTimedOut(timeout)) as BoxError),
            };
            let h2 = io.connected().is_negotiated_h2();
            shared
                .protocol
                .store(if h2 { HTTP2 } else { HTTP1 }, Ordering::Relaxed);
            Ok(Sniffed::new(io, h2.then_some(shared)))
        })
    }
}

/// TCP, the proxy's tunnel and TLS together took longer than `connect_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("connect timed out after {0:?} (TCP, proxy tunnel and TLS handshake)")]
pub struct ConnectTimedOut(Duration);

/// The client type every lane has.
pub type LaneClient = hyper_util::client::legacy::Client<LaneConnector, Body>;
