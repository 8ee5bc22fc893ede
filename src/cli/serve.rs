//! `aloud serve` and `aloud simulate`: build the runtime, bind, run until a signal arrives.

use super::telemetry;
use crate::config::{Config, LogFormat, ProcessEnv};
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

/// `listen` overrides `[server] listen`, `admin` `[admin] listen` (`""`: no admin listener).
pub fn serve(
    path: Option<&Path>,
    (listen, admin): (Option<SocketAddr>, Option<&str>),
    log_json: bool,
) -> ExitCode {
    let mut config = match Config::discover(path, &ProcessEnv) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(log_json || config.server.log_format == LogFormat::Json);
    if let Some(addr) = listen {
        config.server.listen = addr;
    }
    match admin.map(str::trim) {
        None => {}
        Some("") => config.admin.listen = None,
        Some(a) => match a.parse() {
            Ok(addr) => config.admin.listen = Some(addr),
            Err(_) => {
                eprintln!("error: --admin-listen {a:?} is not an address like 127.0.0.1:9787");
                return ExitCode::from(2);
            }
        },
    }
    run(async move {
        let listener = tokio::net::TcpListener::bind(config.server.listen).await?;
        let addr = listener.local_addr()?;
        let admin = match config.admin.listen {
            Some(at) => {
                let admin = tokio::net::TcpListener::bind(at).await.map_err(|e| {
                    std::io::Error::new(e.kind(), format!("admin listener on {at}: {e}"))
                })?;
                let addr = admin.local_addr()?;
                tracing::info!(%addr, "admin listening on http://{addr}/ (/metrics, /healthz, /readyz)");
                Some(admin)
            }
            None => None,
        };
        for r in &config.routes {
            tracing::info!(route = %r.name, prefix = %r.prefix, api = %r.api, "route");
        }
        tracing::info!(%addr, "aloud listening on http://{addr}/ (demo page at /aloud/)");
        let listeners = crate::server::Listeners {
            proxy: listener,
            admin,
        };
        crate::server::serve(config, listeners, shutdown_signal()).await
    })
}

pub fn simulate(
    listen: SocketAddr,
    record: Option<crate::capture::CaptureRecord>,
    log_json: bool,
) -> ExitCode {
    telemetry::init(log_json);
    run(async move {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        match record {
            Some(record) => {
                tracing::info!(%addr, id = %record.id, "simulator replaying a capture");
                crate::simulator::serve_replay(listener, record, shutdown_signal()).await
            }
            None => {
                tracing::info!(%addr, "simulator listening");
                crate::simulator::serve(listener, shutdown_signal()).await
            }
        }
    })
}

fn run(fut: impl std::future::Future<Output = std::io::Result<()>>) -> ExitCode {
    // On one core (a container limit, or `taskset`), a work-stealing scheduler only adds
    // cross-thread wake-ups: the current-thread runtime serves the same work with fewer.
    let one_core = std::thread::available_parallelism().is_ok_and(|n| n.get() == 1);
    let mut builder = if one_core {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "aloud stopped");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = term => tracing::info!("SIGTERM received"),
    }
}
