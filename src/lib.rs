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
//! proxy/               one owner per exchange: admission, head, body parts, one finish step
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
//! which answers aloud's own endpoints or calls `proxy::forward`. `forward` makes one
//! `Exchange` (the owner of the id, slot, progress, recorder and timings), admits it, sends the
//! request upstream and waits for the head; the `ExchangeBody` then relays the body frame by
//! frame while an observer feeds the pure interpreter and an injector adds the tier's progress
//! at event boundaries. The exchange's one finish step writes one record (to a writer that
//! never blocks) and one log line. Nothing on that path buffers a streamed body.

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
