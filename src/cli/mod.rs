//! The command line: `serve`, `check-config`, `simulate`.

use std::process::ExitCode;

pub fn main() -> ExitCode {
    ExitCode::SUCCESS
}
