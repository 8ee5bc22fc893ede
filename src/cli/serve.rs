//! `aloud serve` and `aloud simulate`: build the runtime, bind, run until a signal arrives.
//! For `serve`, signals steer the server: SIGINT/SIGTERM stop (a second one stops at once),
//! SIGHUP reloads the config file.

use super::telemetry;
use crate::config::{Config, LogFormat, ProcessEnv};
use crate::server::Command;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use tokio::sync::mpsc;

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
    // `--admin-listen`: `Some(None)` turns the admin listener off.
    let admin: Option<Option<SocketAddr>> = match admin.map(str::trim) {
        None => None,
        Some("") => Some(None),
        Some(a) => match a.parse() {
            Ok(addr) => Some(Some(addr)),
            Err(_) => {
                eprintln!("error: --admin-listen {a:?} is not an address like 127.0.0.1:9787");
                return ExitCode::from(2);
            }
        },
    };
    if let Some(at) = admin {
        config.admin.listen = at;
    }
    let path = path.map(Path::to_owned);
    let workers = crate::server::serving_threads(config.server.workers);
    // The server starts the other serving threads (`server::workers`); this one is the first.
    run_on(1, async move {
        // Handlers first: from the "listening" line on, a signal is aloud's to handle.
        let mut signals = Signals::new();
        let at = config.server.listen;
        let listener = tokio::net::TcpListener::bind(at).await.map_err(|e| {
            std::io::Error::new(e.kind(), format!("listener on {at} (server.listen): {e}"))
        })?;
        let addr = listener.local_addr()?;
        let admin_listener = match config.admin.listen {
            Some(at) => {
                let admin = tokio::net::TcpListener::bind(at).await.map_err(|e| {
                    std::io::Error::new(e.kind(), format!("admin listener on {at}: {e}"))
                })?;
                let addr = admin.local_addr()?;
                tracing::info!(%addr, "admin listening on http://{addr}/ (/metrics, /healthz, /readyz, /dashboard)");
                Some(admin)
            }
            None => None,
        };
        for r in &config.routes {
            tracing::info!(route = %r.name, prefix = %r.prefix, api = %r.api, "route");
        }
        warn_unset_keys(&config);
        match &config.server.tls {
            None => {
                tracing::info!(%addr, workers, "aloud listening on http://{addr}/ (demo page at /aloud/)")
            }
            Some(tls) => tracing::info!(
                %addr,
                workers,
                cert = %tls.cert_file.display(),
                "aloud listening on https://{addr}/ (HTTP/2 and HTTP/1.1; demo page at /aloud/)"
            ),
        }
        // Signals come one at a time, and each is handled before the next is read.
        let (tx, rx) = mpsc::channel(4);
        let listeners = crate::server::Listeners {
            proxy: listener,
            admin: admin_listener,
        };
        let served = crate::server::serve_controlled(config, listeners, rx);
        tokio::pin!(served);
        loop {
            tokio::select! {
                result = &mut served => return result,
                signal = signals.next() => {
                    let command = match signal {
                        Signal::Stop(name) => {
                            tracing::info!("{name} received");
                            Some(Command::Stop)
                        }
                        // The last two places stay free for stops: a burst of SIGHUPs
                        // cannot crowd out a Ctrl-C.
                        Signal::Reload if tx.capacity() <= 2 => {
                            tracing::warn!("SIGHUP ignored: earlier reloads are still pending");
                            None
                        }
                        Signal::Reload => reload(path.as_deref(), (listen, admin)),
                    };
                    // Never waits: the server may be past reading commands.
                    if let Some(command) = command
                        && let Err(e) = tx.try_send(command)
                    {
                        tracing::warn!("signal not passed on ({e}): the server is stopping");
                    }
                }
            }
        }
    })
}

/// One line per route whose `api_key_env` is unset: its requests go upstream with only the
/// client's own credentials.
fn warn_unset_keys(config: &Config) {
    for r in &config.routes {
        if let (Some(env), None) = (&r.api_key_env, &r.api_key) {
            tracing::warn!(
                route = %r.name,
                api_key_env = %env,
                "route {}: {env} is not set; requests go upstream with the client's own credentials only",
                r.name
            );
        }
    }
}

/// SIGHUP: reads the config file again. A config that does not load is logged and the
/// running one kept. (A config file is small; reading it on the runtime is a one-off.)
/// Reads the config again; the command line's `--listen` and `--admin-listen` stay in force.
fn reload(
    path: Option<&Path>,
    (listen, admin): (Option<SocketAddr>, Option<Option<SocketAddr>>),
) -> Option<Command> {
    tracing::info!("SIGHUP received: reloading the config");
    match Config::discover(path, &ProcessEnv) {
        Ok(mut config) => {
            if let Some(addr) = listen {
                config.server.listen = addr;
            }
            if let Some(at) = admin {
                config.admin.listen = at;
            }
            warn_unset_keys(&config);
            Some(Command::Reload(Box::new(config)))
        }
        Err(e) => {
            tracing::error!(error = %e, "config not reloaded: {e}; the running config is kept");
            None
        }
    }
}

enum Signal {
    Stop(&'static str),
    Reload,
}

/// SIGINT, SIGTERM and SIGHUP as they arrive; a signal that cannot be listened for is logged
/// once and never arrives.
struct Signals {
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    hup: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let listen = |kind: SignalKind, name: &str| match signal(kind) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for {name}");
                    None
                }
            };
            Signals {
                int: listen(SignalKind::interrupt(), "SIGINT"),
                term: listen(SignalKind::terminate(), "SIGTERM"),
                hup: listen(SignalKind::hangup(), "SIGHUP"),
            }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    async fn next(&mut self) -> Signal {
        #[cfg(unix)]
        {
            async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(s) => {
                        if s.recv().await.is_none() {
                            std::future::pending::<()>().await;
                        }
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            tokio::select! {
                () = recv(&mut self.int) => Signal::Stop("SIGINT"),
                () = recv(&mut self.term) => Signal::Stop("SIGTERM"),
                () = recv(&mut self.hup) => Signal::Reload,
            }
        }
        #[cfg(not(unix))]
        {
            if let Err(e) = tokio::signal::ctrl_c().await {
                tracing::error!(error = %e, "cannot listen for Ctrl-C");
                std::future::pending::<()>().await;
            }
            Signal::Stop("Ctrl-C")
        }
    }
}

pub fn simulate(
    listen: SocketAddr,
    record: Option<crate::capture::CaptureRecord>,
    log_json: bool,
) -> ExitCode {
    telemetry::init(log_json);
    run(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("listener on {listen}: {e}")))?;
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
    run_on(crate::server::serving_threads(None), fut)
}

/// Runs `fut` on `workers` threads.
fn run_on(workers: usize, fut: impl std::future::Future<Output = std::io::Result<()>>) -> ExitCode {
    // On one core (a container limit, or `taskset`), or with one worker asked for, a
    // work-stealing scheduler only adds cross-thread wake-ups: the current-thread runtime serves
    // the same work with fewer (benches/README.md, "Results after the speed work on issue 7").
    // `serve` always asks for one: its other serving threads run runtimes of their own.
    let mut builder = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
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
