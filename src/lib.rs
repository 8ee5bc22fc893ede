//! aloud: a reverse proxy for model APIs that makes the wait visible and measurable.
//!
//! # Layout
//!
//! Imports point down only; each line is a floor, and nothing on a floor imports what stands
//! above it.
//!
//! ```text
//! cli/                 serve, check-config, simulate, export, stats (parsing, exit codes)
//! server/              the accept loop, connection options, shutdown, task tracking
//! app, endpoints       App and dispatch; aloud's own endpoints (demo, side channel, beacons)
//! cors, demo           CORS for browsers; the embedded demo page and JS client
//! proxy/               forwarding, the relay body (tiers, capture hand-off), upstream client
//! progress/            progress state machine, label ladders, side-channel hub, event bytes
//! simulator/           a fake reasoning model speaking five apis (a server of its own)
//! capture/             the record and its recorder, redaction, stats, the batching writer
//! export/              eval dataset formats (pure)
//! store/               the only code that knows SQL: the capture database and its schema
//! apis/                what differs per provider: envelopes, credentials, answer and stream readers
//! sse/                 the pure SSE codec, NDJSON/JSON-array splitters, bounded gzip
//! config/              raw TOML -> validated config; durations, sizes, env access
//! request_id           the Aloud-Request-Id header: validation and generation
//! request_path         the request path checked before routing (no escape from a route)
//! ```
//!
//! The request path: `server` accepts a connection and hands each request to `app::dispatch`,
//! which answers aloud's own endpoints or calls `proxy::forward`. `forward` strips hop-by-hop
//! headers, picks credentials and returns a `Relay` body: it waits for the upstream head (or
//! commits early), relays the body frame by frame while a pure interpreter reads it, adds the
//! tier's progress, and on drop hands a capture record to a writer that never blocks. Nothing on
//! that path buffers a body.

pub mod apis;
pub mod app;
pub mod capture;
pub mod cli;
pub mod config;
pub mod cors;
pub mod demo;
pub mod endpoints;
pub mod export;
pub mod progress;
pub mod proxy;
pub mod request_id;
pub mod request_path;
pub mod server;
pub mod simulator;
pub mod sse;
pub mod store;
