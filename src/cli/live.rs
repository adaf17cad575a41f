//! `mrl-index add`, `delete` and `compact`: change a published index without a rebuild.

use super::bars::Bars;
use clap::Args;
use mrl_index::build::SampleQueries;
use mrl_index::writer::{CompactOptions, IndexWriter};
use mrl_index::{ingest, Error};
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `add`.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// Index directory.
    #[arg(long)]
    index: PathBuf,
    /// The new items' vectors (.npy or .fvecs), as wide as the index.
    #[arg(long)]
    input: PathBuf,
    /// Their external ids, one per item (.npy of u64 or i64). Default: after the largest id
    /// the index ever held.
    #[arg(long)]
    ids: Option<PathBuf>,
    /// Replace live items with the same ids (default: such a collision is an error).
    #[arg(long)]
    replace: bool,
    /// Threads for the delta's graph (0 = all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

/// Arguments of `delete`.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("which").required(true).args(["ids", "ids_file"]))]
pub struct DeleteArgs {
    /// Index directory.
    #[arg(long)]
    index: PathBuf,
    /// Ids to delete, comma-separated.
    #[arg(long)]
    ids: Option<String>,
    /// Ids to delete, a .npy list of u64 or i64.
    #[arg(long)]
    ids_file: Option<PathBuf>,
    /// Ignore ids that are not live items (default: an error, and nothing is deleted).
    #[arg(long)]
    missing_ok: bool,
}

/// Arguments of `compact`.
#[derive(Debug, Args)]
pub struct CompactArgs {
    /// Index directory.
    #[arg(long)]
    index: PathBuf,
    /// Sample queries (.npy): refit the learned space and retune the default plan on them.
    /// Without them the base's maps and plan are kept.
    #[arg(long)]
    sample_queries: Option<PathBuf>,
    /// Recall@10 to retune for (with --sample-queries).
    #[arg(long, default_value_t = mrl_index::build::DEFAULT_TARGET_RECALL)]
    target_recall: f64,
    /// Rebuild even when there is nothing to merge or drop.
    #[arg(long)]
    force: bool,
    /// Threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
}

/// Runs `add`.
pub fn run_add(a: AddArgs) -> Result<(), Error> {
    let items = ingest::open_vectors(&a.input)?;
    let ids = match &a.ids {
        Some(p) => Some(ingest::read_ids(p, items.len())?),
        None => None,
    };
    let mut writer = IndexWriter::open(&a.index)?.threads(a.threads);
    let r = writer.add(items.as_ref(), ids.as_deref(), a.replace)?;
    println!(
        "added {} items ({} replacing live ones) to {} as delta {:016x} ({}, {:.1} MB) in {:.2}s",
        r.added,
        r.replaced,
        a.index.display(),
        r.generation,
        if r.graph {
            "with its own graph"
        } else {
            "scanned exactly"
        },
        r.bytes as f64 / 1e6,
        r.seconds
    );
    Ok(())
}

/// Parses `--ids 1,2,3`.
fn parse_ids(text: &str) -> Result<Vec<u64>, Error> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<u64>().map_err(|_| {
                Error::Usage(format!(
                    "--ids: {s:?} is not an id (a non-negative integer)"
                ))
            })
        })
        .collect()
}

/// Runs `delete`.
pub fn run_delete(a: DeleteArgs) -> Result<(), Error> {
    let ids = match (&a.ids, &a.ids_file) {
        (Some(text), _) => parse_ids(text)?,
        (None, Some(p)) => ingest::read_id_list(p)?,
        (None, None) => return Err(Error::Usage("give --ids or --ids-file".into())),
    };
    if ids.is_empty() {
        return Err(Error::Usage("no ids to delete".into()));
    }
    let mut writer = IndexWriter::open(&a.index)?;
    let r = writer.delete(&ids, a.missing_ok)?;
    println!(
        "deleted {} items from {}{}",
        r.deleted,
        a.index.display(),
        if r.missing > 0 {
            format!(" ({} ids were not live items)", r.missing)
        } else {
            String::new()
        }
    );
    Ok(())
}

/// Runs `compact`.
pub fn run_compact(a: CompactArgs) -> Result<(), Error> {
    let t0 = Instant::now();
    let sample_queries = match &a.sample_queries {
        Some(p) => Some(SampleQueries::from_source(
            ingest::open_vectors(p)?.as_ref(),
        )?),
        None => None,
    };
    let options = CompactOptions {
        sample_queries,
        target_recall: Some(a.target_recall),
        force: a.force,
    };
    let mut writer = IndexWriter::open(&a.index)?.threads(a.threads);
    let r = writer.compact(&options, &Bars::new(a.quiet))?;
    match r.build {
        None => println!(
            "{} is already compact ({} items); nothing to do",
            a.index.display(),
            r.items
        ),
        Some(b) => println!(
            "compacted {} into one base of {} items ({} delta segments merged, {} deleted rows dropped) in {:.1}s: store {:.1} MB, graph {:.1} MB",
            a.index.display(),
            r.items,
            r.merged_deltas,
            r.dropped,
            t0.elapsed().as_secs_f64(),
            b.store_bytes as f64 / 1e6,
            b.graph_bytes as f64 / 1e6,
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_lists_parse_or_name_the_bad_entry() {
        assert_eq!(parse_ids("1, 2,3,").unwrap(), vec![1, 2, 3]);
        let e = parse_ids("1,x").unwrap_err().to_string();
        assert!(e.contains("\"x\""), "{e}");
        assert!(parse_ids("-1").is_err());
    }
}
