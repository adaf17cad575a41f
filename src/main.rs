//! The `mrl-index` command line: build, search, inspect and verify indexes, and a demo.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::run()
}
