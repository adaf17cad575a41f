//! `mrl-index bench` (being written).

use clap::Args;
use mrl_index::Error;

/// Arguments of `bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {}

/// Runs `bench`.
pub fn run(_a: BenchArgs) -> Result<(), Error> {
    Err(Error::Other("bench is not built yet".into()))
}
