//! The command line: `serve`, `check-config`, `simulate`; parsing and exit codes.

mod check;
mod serve;
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
        /// Answer every call with this captured exchange (a capture record as JSON), at its
        /// original pace.
        #[arg(long, value_name = "RECORD.json")]
        replay: Option<PathBuf>,
    },
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => check::run(config.as_deref()),
        Command::Serve { config, listen } => serve::serve(config.as_deref(), listen, cli.log_json),
        Command::Simulate { listen, replay } => {
            serve::simulate(listen, replay.as_deref(), cli.log_json)
        }
    }
}
