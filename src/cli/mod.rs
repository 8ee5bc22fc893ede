//! The command line: `serve`, `check-config`, `simulate`; parsing and exit codes.

mod check;
mod data;
mod export;
mod serve;
mod stats;
mod telemetry;

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "aloud",
    version,
    about = "A reverse proxy for model APIs that makes the wait visible and measurable"
)]
pub struct Cli {
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true)]
    pub log_json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy.
    Serve {
        /// Config file (default: ./config.toml when present, else built-in defaults).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Listen address, overriding `[server] listen`.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Admin listener address (metrics, probes), overriding `[admin] listen`; "" for none.
        #[arg(long, value_name = "ADDR")]
        admin_listen: Option<String>,
    },
    /// Validate a config file and print the routes it defines.
    CheckConfig {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run the built-in slow-model simulator on its own port.
    Simulate {
        #[arg(long, default_value = "127.0.0.1:8788")]
        listen: SocketAddr,
        /// Answer every call with this captured exchange, at its original pace: a request id
        /// from the capture database, or a capture record saved as JSON.
        #[arg(long, value_name = "ID|RECORD.json")]
        replay: Option<String>,
        #[command(flatten)]
        db: data::DbArgs,
    },
    /// Write captured exchanges as an eval dataset.
    Export {
        #[command(flatten)]
        args: export::ExportArgs,
        #[command(flatten)]
        filter: data::FilterArgs,
        #[command(flatten)]
        db: data::DbArgs,
    },
    /// Latency you can publish: percentiles over ok exchanges, by group and time bucket.
    Stats {
        #[command(flatten)]
        args: stats::StatsArgs,
        #[command(flatten)]
        db: data::DbArgs,
    },
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => check::run(config.as_deref()),
        Command::Serve {
            config,
            listen,
            admin_listen,
        } => serve::serve(
            config.as_deref(),
            (listen, admin_listen.as_deref()),
            cli.log_json,
        ),
        Command::Simulate { listen, replay, db } => {
            let record = match replay.map(|r| data::replay_record(&r, &db)).transpose() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            serve::simulate(listen, record, cli.log_json)
        }
        Command::Export { args, filter, db } => export::export(&db, &filter, &args),
        Command::Stats { args, db } => stats::run(&db, &args),
    }
}
