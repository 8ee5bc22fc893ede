//! aloud: a reverse proxy for model APIs that makes the wait visible and measurable.
//!
//! # Layout
//!
//! Imports point down only; each line is a floor, and nothing on a floor imports what stands
//! above it.
//!
//! ```text
//! cli/                 serve, check-config, simulate, export, stats (parsing, exit codes)
//! server/              serving threads, the accept loop, connection options, shutdown, tasks
//! dispatch             request ids, preflights, path checks; own endpoints or a route, or 404
//! endpoints/           aloud's own endpoints: demo, side channel, beacons (with their tokens)
//! app                  App: routes, limiter, progress and capture settings, built from config
//! cors, demo           CORS for browsers; the embedded demo page and JS client
//! proxy/               one owner per exchange: admission, head, body parts, one finish step
//! metrics/             Prometheus metrics: per-route handles the finish step reports to
//! telemetry/           OTLP traces: W3C trace context, spans per GenAI conventions, the exporter
//! simulator/           a fake reasoning model speaking five apis (a server of its own)
//! export/              eval dataset formats (pure)
//! cluster/             the side channel across replicas: Postgres LISTEN/NOTIFY between replicas
//! capture/             the recorder, redaction, stats, the batching writer
//! store/               the only code that knows SQL: the capture database (SQLite or Postgres)
//! record               the capture record, plain data
//! progress/            progress state machine, label ladders, side-channel hub, event bytes
//! config/              raw TOML -> validated config; durations, sizes, env access, tokens
//! apis/                what differs per provider: envelopes, credentials, answer and stream readers
//! sse/                 the pure SSE codec, NDJSON/JSON-array splitters, bounded gzip
//! request_id, request_path   the Aloud-Request-Id header; the path checked before routing
//! ```
//!
//! The request path: `server` accepts a connection and hands each request to `dispatch`,
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
pub mod cluster;
pub mod config;
pub mod cors;
pub mod demo;
pub mod dispatch;
pub mod endpoints;
pub mod export;
pub mod metrics;
pub mod progress;
pub mod proxy;
pub mod record;
pub mod request_id;
pub mod request_path;
pub mod server;
pub mod simulator;
pub mod sse;
pub mod store;
pub mod telemetry;
