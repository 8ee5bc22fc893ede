//! A fake reasoning model that speaks five apis, streamed and not, at a realistic pace.

/// Placeholder until the simulator lands: answers 501.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = axum::Router::new();
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
