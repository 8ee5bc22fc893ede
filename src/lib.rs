//! aloud: a reverse proxy for model APIs that makes the wait visible and measurable.
//!
//! # Layout
//!
//! Imports point down only; each line is a floor, and nothing on a floor imports what stands
//! above it.
//!
//! ```text
//! cli/                 serve, check-config, simulate (argument parsing, exit codes)
//! server/              the accept loop, connection options, shutdown, task tracking
//! app                  App and dispatch: own endpoints vs proxied routes; cors
//! proxy/               the forwarding handler, upstream client, bodies, errors
//! simulator/           a fake reasoning model speaking five apis (a server of its own)
//! apis/                what differs per provider: error envelopes, credentials, stream readers
//! sse/                 the pure SSE codec, NDJSON/JSON-array splitters, bounded gzip
//! config/              raw TOML -> validated config; durations, sizes, env access
//! capture/             the capture record; the writer (byte-bounded queue, batching thread, spill)
//! store/               the only code that knows SQL: the capture database and its schema
//! request_id           the Aloud-Request-Id header: validation and generation
//! ```
//!
//! The request path: `server` accepts a connection and hands each request to `app::dispatch`,
//! which answers aloud's own endpoints or calls `proxy::forward`. `forward` strips hop-by-hop
//! headers, picks credentials, asks the upstream client for a response and wraps its body in a
//! timed body that enforces idle and total deadlines. Nothing on that path buffers a body.

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
pub mod server;
pub mod simulator;
pub mod sse;
pub mod store;
