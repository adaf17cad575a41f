//! Command definitions and dispatch.

mod bars;
mod bench;
mod build;
mod demo;
mod encode;
mod info;
mod live;
mod search;
mod serve;
mod tune;

use clap::{Parser, Subcommand};
use mrl_index::Error;
use std::process::ExitCode;

/// Approximate maximum-inner-product search over Matryoshka embeddings.
#[derive(Debug, Parser)]
#[command(name = "mrl-index", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build an index from item vectors (.npy or .fvecs).
    Build(build::BuildArgs),
    /// Search an index with query vectors.
    Search(search::SearchArgs),
    /// Add items to an index as a new delta segment (no rebuild); --replace replaces live
    /// items with the same ids.
    Add(live::AddArgs),
    /// Delete items from an index by id (no rebuild).
    Delete(live::DeleteArgs),
    /// Merge an index's delta segments and drop its deleted rows into a new base.
    Compact(live::CompactArgs),
    /// Print an index's counts, widths, graph parameters, file sizes and format version.
    Info(info::InfoArgs),
    /// Check every checksum and structural invariant of an index.
    Verify(info::VerifyArgs),
    /// Turn item features into item vectors with the ONNX item encoder.
    EmbedItems(encode::EmbedArgs),
    /// Recommend for a history of item ids with the ONNX query encoder and the index.
    Recommend(encode::RecommendArgs),
    /// Leave-one-out Recall/NDCG@5/10/20 through the index: exact at each width and the cascade.
    Eval(encode::EvalArgs),
    /// Encode users' histories (test or validation split) into query vectors (.npy): held-out
    /// evaluation queries, or the sample queries a build learns its coarse space from.
    EncodeQueries(encode::EncodeQueriesArgs),
    /// Choose the fastest plan reaching a recall target on sample queries; --write stores it
    /// as the index's default.
    Tune(tune::TuneArgs),
    /// Sweep exact search per width, the coarse graph alone and cascade plans; write recall,
    /// queries per second and latency percentiles as JSON, CSV and plots.
    Bench(bench::BenchArgs),
    /// Merge benchmark rows (JSON or JSON lines, any system) into JSON, CSV, a table and a plot.
    Compare(bench::CompareArgs),
    /// Generate a strongly or weakly Matryoshka set as items.npy and queries.npy.
    BenchData(bench::BenchDataArgs),
    /// Generate a Matryoshka-like set, build an index, and report recall@10 and queries per
    /// second against exact search. Needs no arguments.
    Demo(demo::DemoArgs),
    /// Serve the index (and the query encoder) over HTTP: search, recommendations, streaming
    /// user states, health, metrics and hot reload.
    Serve(serve::ServeArgs),
}

/// Parses the command line, runs the command, prints any error with its causes.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Build(a) => build::run(a),
        Command::Search(a) => search::run(a),
        Command::Info(a) => info::run_info(a),
        Command::Add(a) => live::run_add(a),
        Command::Delete(a) => live::run_delete(a),
        Command::Compact(a) => live::run_compact(a),
        Command::Verify(a) => info::run_verify(a),
        Command::Demo(a) => demo::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Tune(a) => tune::run(a),
        Command::Compare(a) => bench::run_compare(a),
        Command::BenchData(a) => bench::run_bench_data(a),
        Command::EmbedItems(a) => encode::run_embed(a),
        Command::Recommend(a) => encode::run_recommend(a),
        Command::Eval(a) => encode::run_eval(a),
        Command::EncodeQueries(a) => encode::run_encode_queries(a),
        Command::Serve(a) => serve::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
            ExitCode::FAILURE
        }
    }
}

/// Runs `f` on a rayon pool of `threads` threads (0: all cores).
pub fn with_threads<T>(threads: usize, f: impl FnOnce() -> T + Send) -> Result<T, Error>
where
    T: Send,
{
    Ok(mrl_index::threads::with_threads(threads, f)?)
}

/// How `search`, `tune` and `bench` open the index (flattened into their arguments).
#[derive(Debug, clap::Args)]
pub struct OpenArgs {
    /// Copy the coarse bands and graph into huge-page memory at open (see
    /// `OpenOptions::resident_coarse`): faster coarse search on large indexes, more resident
    /// memory.
    #[arg(long)]
    resident_coarse: bool,
}

/// Opens the index at `index` with `open` and reads the query file `queries`, checking that
/// the queries have the index's dimension (the error names both).
pub fn open_with_queries(
    index: &std::path::Path,
    queries: &std::path::Path,
    open: &OpenArgs,
) -> Result<(mrl_index::Index, mrl_index::ingest::MatrixSource), Error> {
    use mrl_index::ingest::VectorSource;
    let options = mrl_index::OpenOptions {
        resident_coarse: open.resident_coarse,
    };
    let idx = mrl_index::Index::open_with(index, options)?;
    let q = mrl_index::ingest::read_matrix_f32(queries)?;
    if q.dim() != idx.dim() {
        return Err(Error::Usage(format!(
            "{}: queries have {} dims, but the index {} holds {}-d vectors",
            queries.display(),
            q.dim(),
            index.display(),
            idx.dim()
        )));
    }
    Ok((idx, q))
}

/// Parses a comma-separated list of integers.
pub fn parse_list<T: std::str::FromStr>(text: &str, what: &str) -> Result<Vec<T>, Error> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<T>()
                .map_err(|_| Error::Usage(format!("{what}: {s:?} is not a valid number")))
        })
        .collect()
}
