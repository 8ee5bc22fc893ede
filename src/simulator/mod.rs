//! A fake reasoning model that speaks five apis, streamed and not, at a realistic pace.
//!
//! # Layout
//!
//! ```text
//! routes     the HTTP edge: routes, body limit, x-sim-* checks, sending a plan
//! body       the timing edge: a body that sends each frame when it is due
//! chat, responses, messages, gemini, ollama
//!            per-api wire shapes: a Script -> a Plan
//! plan       Plan and Frame: status, headers delay, timed byte frames (pure)
//! script     what the model says and when, from a seed (pure)
//! replay     a script from a capture record instead: recorded text, pace and usage (pure)
//! headings   replayed reasoning cut into steps at the recorded labels (pure)
//! knobs      the x-sim-* request headers
//! errors     error bodies in each api's envelope
//! rng        splitmix64, so a seed gives the same bytes in every version
//! workload   seeded workloads timed by the script, the ETA benchmark's corpora (pure)
//! ```
//!
//! **Invariant:** only `body` and `routes::send` wait; everything else is a pure function of the
//! request and the seed, so plans are compared byte for byte in tests without a clock.

mod body;
mod chat;
mod errors;
mod gemini;
mod headings;
mod knobs;
mod messages;
mod ollama;
mod plan;
#[cfg(test)]
mod plan_tests;
mod replay;
#[cfg(test)]
mod replay_tests;
mod responses;
mod rng;
mod routes;
mod script;
pub mod workload;

pub use routes::BODY_LIMIT;

use crate::capture::CaptureRecord;
use routes::Source;

/// The simulator's routes, usable as a tower service or nested router.
pub fn router() -> axum::Router {
    routes::router(Source::default())
}

/// The same routes, but every api call answers with `record` at its recorded pace, in the wire
/// shape of the endpoint called (see "Replay" in docs/simulator.md).
pub fn replay_router(record: CaptureRecord) -> axum::Router {
    routes::router(Source::replay(record))
}

/// Serve the simulator on `listener` until `shutdown` resolves (for `aloud simulate` and for the
/// built-in route, which aloud reaches over loopback like any upstream).
pub async fn serve(
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_router(listener, router(), shutdown).await
}

/// Serve `record` again on `listener` until `shutdown` resolves: every api call is answered with
/// the captured exchange at its original pace (for `aloud simulate --replay`, frontend tests and
/// demos).
pub async fn serve_replay(
    listener: tokio::net::TcpListener,
    record: CaptureRecord,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_router(listener, replay_router(record), shutdown).await
}

async fn serve_router(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "simulator: could not set TCP_NODELAY");
        }
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
