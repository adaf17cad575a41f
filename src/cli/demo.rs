//! `mrl-index demo`: the main job on built-in data.

use super::bars::Bars;
use super::encode::{evaluate, print_evaluation, read_sequences, Titles};
use super::with_threads;
use clap::Args;
use mrl_index::encoder::{ItemEncoder, QueryEncoder};
use mrl_index::exact::{batch_top_k, mean_recall};
use mrl_index::ingest::MatrixSource;
use mrl_index::ingest::{self, VectorSource};
use mrl_index::synth::MatryoshkaLike;
use mrl_index::{Error, Filter, Hit, Index, IndexBuilder, Scratch, SearchParams};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Arguments of `demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Run on a generated Matryoshka-like set instead of the Beauty model.
    #[arg(long)]
    synthetic: bool,
    /// Directory of the Beauty artifacts [default: datasets/beauty of this checkout].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Directory of the raw Beauty data, for titles and test users [default:
    /// ../shared/datasets/amazon-beauty beside this checkout, if present].
    #[arg(long)]
    raw: Option<PathBuf>,
    /// Test users to evaluate (0: none; all have 22,363).
    #[arg(long, default_value_t = 3000)]
    eval_users: usize,
    /// Synthetic: items to generate.
    #[arg(long, default_value_t = 50_000)]
    items: usize,
    /// Synthetic: queries to run.
    #[arg(long, default_value_t = 500)]
    queries: usize,
    /// Synthetic: full dimension.
    #[arg(long, default_value_t = 1024)]
    dim: usize,
    /// Synthetic: seed of the generated data.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Keep the index in this directory instead of a temporary one.
    #[arg(long)]
    index_dir: Option<PathBuf>,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `demo`.
pub fn run(a: DemoArgs) -> Result<(), Error> {
    if a.synthetic {
        run_synthetic(a)
    } else {
        run_beauty(a)
    }
}

/// The data directory `rel` (a dataset, a model) under this checkout: searched from the
/// working directory and the executable upwards, then at the source tree the binary was
/// built from. Only for data: code (the ONNX Runtime library) is never searched for this
/// way (see `mrl_index::encoder::find_runtime`).
fn find_in_checkout(rel: &str) -> Option<PathBuf> {
    checkout_roots()
        .into_iter()
        .map(|r| r.join(rel))
        .find(|p| p.exists())
}

/// Directories that may hold this checkout: the working directory and its ancestors, the
/// executable's ancestors, and the source tree the crate was built from.
fn checkout_roots() -> Vec<PathBuf> {
    let mut roots = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        roots.extend(cwd.ancestors().map(Path::to_path_buf));
    }
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).map(Path::to_path_buf));
    }
    roots.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    roots
}

/// The real demo: the fMRLRec Beauty model from `datasets/beauty` (title features and item identity).
fn run_beauty(a: DemoArgs) -> Result<(), Error> {
    let data = match a
        .data
        .clone()
        .or_else(|| find_in_checkout("datasets/beauty"))
    {
        Some(d) => d,
        None => {
            return Err(Error::Usage(
                "datasets/beauty not found: run from the mrl-index checkout or pass --data".into(),
            ))
        }
    };
    let raw = a
        .raw
        .clone()
        .or_else(|| find_in_checkout("../shared/datasets/amazon-beauty"));
    println!(
        "fMRLRec (item titles through all-MiniLM-L6-v2, plus item identity) on Amazon Beauty, from {}",
        data.display()
    );
    let t0 = Instant::now();
    let item_encoder = ItemEncoder::open(&data.join("item_encoder.onnx"))?;
    let query_encoder = QueryEncoder::open(&data.join("query_encoder.onnx"))?;
    let features = ingest::read_matrix_f32(&data.join("item_features.npy"))?;
    let vectors = item_encoder.encode(features.as_slice(), 2048)?;
    let n = features.len();
    println!(
        "embedded {n} items ({} → {} dims) in {:.1}s",
        item_encoder.in_dim(),
        item_encoder.out_dim(),
        t0.elapsed().as_secs_f64()
    );
    let (dir, _guard) = match &a.index_dir {
        Some(d) => (d.clone(), None),
        None => {
            let d = std::env::temp_dir().join(format!("mrl-index-demo-{}", std::process::id()));
            (d.clone(), Some(TempDir(d)))
        }
    };
    // Item ids are the dataset's: row r holds item r + 1.
    let ids: Vec<u64> = (1..=n as u64).collect();
    let dim = item_encoder.out_dim();
    let sequences = raw
        .as_ref()
        .map(|r| r.join("sequential_data.txt"))
        .filter(|p| p.exists());
    let users = match &sequences {
        Some(path) => {
            let mut u = read_sequences(path)?;
            u.retain(|s| s.len() >= 2);
            u
        }
        None => Vec::new(),
    };
    // Sample queries for the learned coarse space and the tuned plan: the validation
    // histories (all but the last two items) of users after the ones evaluated below.
    let t = Instant::now();
    let sample: Vec<Vec<u64>> = users
        .iter()
        .skip(a.eval_users)
        .filter(|s| s.len() >= 3)
        .take(SAMPLE_USERS)
        .map(|s| s[..s.len() - 2].to_vec())
        .collect();
    let mut builder = IndexBuilder::new().overwrite(true);
    if sample.len() >= mrl_index::build::min_sample_queries(mrl_index::build::default_code_dim(dim))
    {
        let queries = encode_histories(&query_encoder, &vectors, dim, &sample)?;
        println!(
            "encoded {} validation histories of other users as sample queries in {:.1}s",
            sample.len(),
            t.elapsed().as_secs_f64()
        );
        builder = builder.sample_queries(mrl_index::build::SampleQueries::new(
            queries,
            dim,
            "validation histories of Beauty users",
        ));
    } else {
        println!("(no user histories: the coarse space and plan are learned from the items alone; pass --raw with the Amazon Beauty data folder)");
    }
    let t = Instant::now();
    let report = builder.build(
        &MatrixSource::new(vectors, dim)?,
        Some(&ids),
        &dir,
        &Bars::new(a.quiet),
    )?;
    println!(
        "built the index in {:.1}s ({:.1} MB store, {:.1} MB graph, {:.1} MB learned space, widths {:?}, coarse space {})",
        t.elapsed().as_secs_f64(),
        report.store_bytes as f64 / 1e6,
        report.graph_bytes as f64 / 1e6,
        report.space_bytes as f64 / 1e6,
        report.widths,
        report.space.name()
    );
    let index = Index::open(&dir)?;
    let titles = raw
        .as_ref()
        .map(|r| r.join("beauty_titles_by_p5_id.json"))
        .filter(|p| p.exists())
        .map(|p| Titles::read(&p))
        .transpose()?;
    let title = |id: u64| -> String {
        titles
            .as_ref()
            .and_then(|t| t.get(id))
            .map(|t| t.chars().take(70).collect())
            .unwrap_or_default()
    };
    let params = SearchParams::default();
    match index.tuned().and_then(|t| t.info("recall").map(|r| (t, r))) {
        Some((t, recall)) => println!(
            "plan {} ef {} (tuned at build: recall@10 {recall} on {} {})",
            index.default_plan(),
            index.default_ef().map_or("-".into(), |e| e.to_string()),
            t.info("queries").unwrap_or("?"),
            t.info("source").unwrap_or("held-out queries"),
        ),
        None => println!("plan {}", index.default_plan()),
    }
    for history in example_histories(&data)? {
        println!();
        println!("history ({} items, most recent last):", history.len());
        for &id in history.iter().rev().take(3).rev() {
            println!("       {id:>6}  {}", title(id));
        }
        let hits = query_encoder.recommend(&index, &history, 5, &params, false)?;
        println!("recommended (history excluded):");
        for (rank, h) in hits.iter().enumerate() {
            println!(
                "  {:>2}.  {:>6}  {:>7.3}  {}",
                rank + 1,
                h.id,
                h.score,
                title(h.id)
            );
        }
    }
    if titles.is_none() {
        println!("(titles: pass --raw with the Amazon Beauty data folder to see them)");
    }
    match (sequences, a.eval_users) {
        (_, 0) => {}
        (Some(_), m) => {
            let mut users = users;
            users.truncate(m);
            println!();
            let e = evaluate(&index, &query_encoder, &users, &params)?;
            print_evaluation(&e, index.len());
        }
        (None, _) => println!("(evaluation: pass --raw with the Amazon Beauty data folder)"),
    }
    Ok(())
}

/// Users whose validation histories become the demo's sample queries.
const SAMPLE_USERS: usize = 1500;

/// Query vectors of `histories` (item ids = row + 1 of `vectors`, the last 50 used), encoded
/// in batches.
fn encode_histories(
    encoder: &QueryEncoder,
    vectors: &[f32],
    dim: usize,
    histories: &[Vec<u64>],
) -> Result<Vec<f32>, Error> {
    let n = vectors.len() / dim;
    let mut out = Vec::with_capacity(histories.len() * dim);
    for chunk in histories.chunks(256) {
        let rows: Vec<Vec<f32>> = chunk
            .iter()
            .map(|h| {
                let recent = &h[h.len().saturating_sub(mrl_index::encoder::MAX_HISTORY)..];
                let mut r = Vec::with_capacity(recent.len() * dim);
                for &id in recent {
                    let row = (id as usize)
                        .checked_sub(1)
                        .filter(|&r| r < n)
                        .ok_or_else(|| {
                            Error::Usage(format!("history item {id} is not one of the {n} items"))
                        })?;
                    r.extend_from_slice(&vectors[row * dim..(row + 1) * dim]);
                }
                Ok(r)
            })
            .collect::<Result<_, Error>>()?;
        let refs: Vec<&[f32]> = rows.iter().map(Vec::as_slice).collect();
        out.extend(encoder.encode(&refs)?);
    }
    Ok(out)
}

/// The example histories committed with the model's test fixture.
fn example_histories(data: &Path) -> Result<Vec<Vec<u64>>, Error> {
    let path = data.join("fixtures/query_encoder_reference.json");
    let bad = |reason: String| Error::BadFile {
        path: path.clone(),
        reason,
    };
    let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
        path: path.clone(),
        source,
    })?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let (Some(ids), Some(lengths)) = (v["item_ids"].as_array(), v["lengths"].as_array()) else {
        return Err(bad("expected item_ids and lengths".into()));
    };
    Ok(ids
        .iter()
        .zip(lengths)
        .map(|(ids, len)| {
            let len = len.as_u64().unwrap_or(0) as usize;
            ids.as_array()
                .map(|a| a.iter().take(len).filter_map(|x| x.as_u64()).collect())
                .unwrap_or_default()
        })
        .filter(|h: &Vec<u64>| !h.is_empty())
        .collect())
}

/// The synthetic demo: generated Matryoshka-like data, recall and speed against exact search.
fn run_synthetic(a: DemoArgs) -> Result<(), Error> {
    let gen = MatryoshkaLike::with_dim(a.dim, a.seed);
    println!(
        "generating {} Matryoshka-like items and {} queries, {} dims (seed {}, decay {}, {} clusters, log-normal norms σ={})",
        a.items, a.queries, a.dim, a.seed, gen.decay, gen.clusters, gen.norm_sigma
    );
    let items = MatrixSource::new(gen.items(a.items), a.dim)?;
    let queries = gen.queries(a.queries);
    let (dir, _guard) = match &a.index_dir {
        Some(d) => (d.clone(), None),
        None => {
            let d = std::env::temp_dir().join(format!("mrl-index-demo-{}", std::process::id()));
            (d.clone(), Some(TempDir(d)))
        }
    };
    let t0 = Instant::now();
    let report =
        IndexBuilder::new()
            .overwrite(true)
            .build(&items, None, &dir, &Bars::new(a.quiet))?;
    println!(
        "built index in {:.1}s ({:.1} MB store, {:.1} MB graph) at {}",
        t0.elapsed().as_secs_f64(),
        report.store_bytes as f64 / 1e6,
        report.graph_bytes as f64 / 1e6,
        dir.display()
    );
    drop(items);
    let index = Index::open(&dir)?;
    let k = 10;
    let full = index.store().bands().len();
    let t = Instant::now();
    let truth = with_threads(0, || batch_top_k(index.store(), &queries, k, full))?;
    let exact_qps = (queries.len() / a.dim) as f64 / t.elapsed().as_secs_f64();

    let params = SearchParams::default();
    let dim = index.dim();
    let nq = queries.len() / dim;
    // One thread, one query at a time, with a reused scratch: the service's hot path.
    let mut scratch = Scratch::new();
    let mut out: Vec<Hit> = Vec::with_capacity(k);
    let mut found = Vec::with_capacity(nq);
    // Warm up: page in the mapped files and size the scratch.
    for q in queries.chunks_exact(dim).take(50) {
        index.search_with(&mut scratch, q, k, &params, &Filter::NONE, &mut out)?;
    }
    let t = Instant::now();
    for q in queries.chunks_exact(dim) {
        index.search_with(&mut scratch, q, k, &params, &Filter::NONE, &mut out)?;
        found.push(out.clone());
    }
    let qps1 = nq as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let batch = with_threads(0, || {
        index.search_batch(&queries, k, &params, &Filter::NONE)
    })??;
    let qps_all = nq as f64 / t.elapsed().as_secs_f64();
    let recall = mean_recall(&found, &truth, k);
    let recall_batch = mean_recall(&batch, &truth, k);
    println!("plan {}", index.default_plan());
    println!("recall@10 {recall:.4} against exact full-width inner product ({nq} queries)");
    println!(
        "queries/s: {qps1:.0} on 1 thread, {qps_all:.0} on {} threads (exact brute force: {exact_qps:.0} on {} threads)",
        rayon::current_num_threads(),
        rayon::current_num_threads()
    );
    if (recall - recall_batch).abs() > 1e-12 {
        return Err(Error::Usage(format!(
            "batch search disagreed with single search: recall {recall_batch} vs {recall}"
        )));
    }
    Ok(())
}
