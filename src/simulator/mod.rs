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
//! knobs      the x-sim-* request headers
//! errors     error bodies in each api's envelope
//! rng        splitmix64, so a seed gives the same bytes in every version
//! ```
//!
//! **Invariant:** only `body` and `routes::send` wait; everything else is a pure function of the
//! request and the seed, so plans are compared byte for byte in tests without a clock.

mod body;
mod chat;
mod errors;
mod gemini;
mod knobs;
mod messages;
mod ollama;
mod plan;
#[cfg(test)]
mod plan_tests;
mod responses;
mod rng;
mod routes;
mod script;

pub use routes::BODY_LIMIT;

/// The simulator's routes, usable as a tower service or nested router.
pub fn router() -> axum::Router {
    routes::router()
}

/// Serve the simulator on `listener` until `shutdown` resolves (for `aloud simulate` and for the
/// built-in route, which aloud reaches over loopback like any upstream).
pub async fn serve(
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "simulator: could not set TCP_NODELAY");
        }
    });
    axum::serve(listener, router())
        .with_graceful_shutdown(shutdown)
        .await
}
