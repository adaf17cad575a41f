//! `mrl-index embed-items`, `recommend` and `eval`: the encoder path.

use super::parse_list;
use clap::Args;
use mrl_index::encoder::{gather_history, ItemEncoder, QueryEncoder};
use mrl_index::ingest::{self, VectorSource};
use mrl_index::{Error, Filter, Index, SearchParams, SearchPlan};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Arguments of `embed-items`.
#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// The item encoder (item_encoder.onnx).
    #[arg(long)]
    encoder: PathBuf,
    /// Item features, one row per item (.npy f32/f16/f64 or .fvecs).
    #[arg(long)]
    features: PathBuf,
    /// Output item vectors (.npy, f32).
    #[arg(long)]
    out: PathBuf,
    /// Rows per inference call.
    #[arg(long, default_value_t = 1024)]
    batch: usize,
    /// For an encoder with an item-identity component: each item's identity row (.npy of
    /// non-negative integers, one per feature row; a row past the model's table gets the text
    /// part alone). Default: row r of --features is identity row r (the training features file).
    #[arg(long, conflicts_with = "cold")]
    rows: Option<PathBuf>,
    /// Items the model was not trained on: every item gets the text part alone (no identity).
    #[arg(long)]
    cold: bool,
}

/// Runs `embed-items`.
pub fn run_embed(a: EmbedArgs) -> Result<(), Error> {
    let t0 = Instant::now();
    let encoder = ItemEncoder::open(&a.encoder)?;
    let features = ingest::read_matrix_f32(&a.features)?;
    if features.dim() != encoder.in_dim() {
        return Err(Error::Usage(format!(
            "{}: features have {} columns but the encoder takes {}",
            a.features.display(),
            features.dim(),
            encoder.in_dim()
        )));
    }
    let (rows, identity) = if a.cold {
        (Some(vec![-1; features.len()]), "no identity (cold items)")
    } else if let Some(path) = &a.rows {
        let rows = ingest::read_ids(path, features.len())?;
        let rows = rows
            .iter()
            .map(|&r| i64::try_from(r).unwrap_or(i64::MAX))
            .collect();
        (Some(rows), "identity rows from --rows")
    } else {
        (None, "identity row = feature row")
    };
    let vectors = match &rows {
        Some(rows) => encoder.encode_rows(features.as_slice(), rows, a.batch)?,
        None => encoder.encode(features.as_slice(), a.batch)?,
    };
    ingest::write_npy_f32(&a.out, &vectors, features.len(), encoder.out_dim())?;
    let identity = if encoder.has_identity() {
        identity
    } else {
        "text only"
    };
    println!(
        "embedded {} items ({} → {} dims; {identity}) into {} in {:.1}s",
        features.len(),
        encoder.in_dim(),
        encoder.out_dim(),
        a.out.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Item titles by external id, for display.
pub struct Titles(HashMap<u64, String>);

impl Titles {
    /// Reads titles: a JSON object `{"titles": [...], "first_id": N}` (entry r is the title of
    /// id r + first_id; first_id defaults to 1, the P5 convention), or `{"<id>": "title", ...}`.
    pub fn read(path: &Path) -> Result<Titles, Error> {
        let bad = |reason: String| Error::BadFile {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
        let mut map = HashMap::new();
        if let Some(list) = v.get("titles").and_then(|t| t.as_array()) {
            let first = v.get("first_id").and_then(|f| f.as_u64()).unwrap_or(1);
            for (r, t) in list.iter().enumerate() {
                map.insert(first + r as u64, t.as_str().unwrap_or("").to_string());
            }
        } else if let Some(obj) = v.as_object() {
            for (k, t) in obj {
                let id = k
                    .parse::<u64>()
                    .map_err(|_| bad(format!("key {k:?} is not an id")))?;
                map.insert(id, t.as_str().unwrap_or("").to_string());
            }
        } else {
            return Err(bad(
                "expected {\"titles\": [...]} or {\"<id>\": \"title\"}".into()
            ));
        }
        Ok(Titles(map))
    }

    /// The title of `id`, if known.
    pub fn get(&self, id: u64) -> Option<&str> {
        self.0.get(&id).map(String::as_str)
    }
}

/// Arguments of `recommend`.
#[derive(Debug, Args)]
pub struct RecommendArgs {
    /// Index directory of item vectors.
    #[arg(long)]
    index: PathBuf,
    /// The query encoder (query_encoder.onnx).
    #[arg(long)]
    encoder: PathBuf,
    /// The user's history: item ids, oldest first, comma-separated.
    #[arg(long)]
    history: String,
    /// Recommendations to return.
    #[arg(short = 'k', long = "k", default_value_t = 10)]
    k: usize,
    /// Cascade plan [default: the index's].
    #[arg(long)]
    plan: Option<String>,
    /// Beam width of the coarse graph search.
    #[arg(long)]
    ef: Option<usize>,
    /// Also recommend items already in the history (excluded by default).
    #[arg(long)]
    keep_history: bool,
    /// Titles to print beside the ids (see `Titles::read` for the format).
    #[arg(long)]
    titles: Option<PathBuf>,
    /// Print one JSON object: {"ids": [...], "scores": [...], "titles": [...]}.
    #[arg(long)]
    json: bool,
}

/// Runs `recommend`.
pub fn run_recommend(a: RecommendArgs) -> Result<(), Error> {
    let index = Index::open(&a.index)?;
    let encoder = QueryEncoder::open(&a.encoder)?;
    let history: Vec<u64> = parse_list(&a.history, "--history")?;
    let titles = a.titles.as_deref().map(Titles::read).transpose()?;
    let plan = a
        .plan
        .as_deref()
        .map(str::parse::<SearchPlan>)
        .transpose()?;
    let params = SearchParams {
        plan,
        ef: a.ef,
        width: None,
    };
    let hits = encoder.recommend(&index, &history, a.k, &params, a.keep_history)?;
    let title = |id: u64| titles.as_ref().and_then(|t| t.get(id)).unwrap_or("");
    if a.json {
        let v = serde_json::json!({
            "history": history,
            "ids": hits.iter().map(|h| h.id).collect::<Vec<_>>(),
            "scores": hits.iter().map(|h| h.score).collect::<Vec<_>>(),
            "titles": hits.iter().map(|h| title(h.id)).collect::<Vec<_>>(),
        });
        println!("{v}");
        return Ok(());
    }
    for (rank, h) in hits.iter().enumerate() {
        println!(
            "{:>3}. {:>8}  {:>9.4}  {}",
            rank + 1,
            h.id,
            h.score,
            title(h.id)
        );
    }
    Ok(())
}

/// Which history of each user `encode-queries` encodes (the leave-one-out split).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Split {
    /// All but the last item (the test query: it predicts the last item).
    Test,
    /// All but the last two items (the validation query: it predicts the second to last).
    Valid,
}

/// The item index, query encoder and user sequences that `encode-queries` and `eval` read.
#[derive(Debug, Args)]
pub struct UserData {
    /// Index directory of item vectors (ids = item ids of the sequences).
    #[arg(long)]
    index: PathBuf,
    /// The query encoder (query_encoder.onnx).
    #[arg(long)]
    encoder: PathBuf,
    /// Sequences: one line per user, `user item item ...`, oldest first (P5 format).
    #[arg(long)]
    sequences: PathBuf,
}

impl UserData {
    /// Opens the index and the encoder and reads the sequences.
    fn open(&self) -> Result<(Index, QueryEncoder, Vec<Vec<u64>>), Error> {
        Ok((
            Index::open(&self.index)?,
            QueryEncoder::open(&self.encoder)?,
            read_sequences(&self.sequences)?,
        ))
    }
}

/// Arguments of `encode-queries`.
#[derive(Debug, Args)]
pub struct EncodeQueriesArgs {
    #[command(flatten)]
    data: UserData,
    /// Which history of each user: `test` (all but the last item, as `eval` encodes) or
    /// `valid` (all but the last two: sample queries that never saw a test target).
    #[arg(long, value_enum, default_value_t = Split::Test)]
    split: Split,
    /// Skip the first N users (in file order, counting users with at least two items, as
    /// `eval` does): e.g. skip the users whose test queries are evaluated.
    #[arg(long, default_value_t = 0)]
    skip_users: usize,
    /// Encode at most N users after the skipped ones (0: all).
    #[arg(long, default_value_t = 0)]
    max_users: usize,
    /// Output query vectors (.npy, f32, one row per user).
    #[arg(long)]
    out: PathBuf,
}

/// Runs `encode-queries`: query vectors of a range of users, for evaluation (`test`) or as
/// the sample queries a build learns its coarse space from (`valid`, other users).
pub fn run_encode_queries(a: EncodeQueriesArgs) -> Result<(), Error> {
    let t0 = Instant::now();
    let (index, encoder, mut users) = a.data.open()?;
    users.retain(|s| s.len() >= 2);
    let available = users.len();
    let mut users: Vec<Vec<u64>> = users.into_iter().skip(a.skip_users).collect();
    if a.max_users > 0 {
        users.truncate(a.max_users);
    }
    // The encoder takes all but the last item; for validation queries drop one more.
    let cut = match a.split {
        Split::Test => 0,
        Split::Valid => 1,
    };
    let histories: Vec<Vec<u64>> = users
        .iter()
        .filter(|s| s.len() >= 2 + cut)
        .map(|s| s[..s.len() - cut].to_vec())
        .collect();
    if histories.is_empty() {
        return Err(Error::Usage(format!(
            "{}: no users to encode ({available} users with two or more items, {} skipped)",
            a.data.sequences.display(),
            a.skip_users
        )));
    }
    let queries = encode_users(&index, &encoder, &histories)?;
    ingest::write_npy_f32(&a.out, &queries, histories.len(), index.dim())?;
    println!(
        "encoded {} {} queries (users {}..{}) into {} in {:.1}s",
        histories.len(),
        match a.split {
            Split::Test => "test",
            Split::Valid => "validation",
        },
        a.skip_users,
        a.skip_users + users.len(),
        a.out.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Arguments of `eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    #[command(flatten)]
    data: UserData,
    /// Evaluate only the first N users (0: all).
    #[arg(long, default_value_t = 0)]
    max_users: usize,
    /// Cascade plan [default: the index's].
    #[arg(long)]
    plan: Option<String>,
    /// Beam width of the coarse graph search.
    #[arg(long)]
    ef: Option<usize>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Save the encoded query vectors (one row per evaluated user) to this .npy file.
    #[arg(long)]
    save_queries: Option<PathBuf>,
    /// Reuse query vectors saved by --save-queries for the same users instead of encoding.
    #[arg(long)]
    queries: Option<PathBuf>,
}

const CUTOFFS: [usize; 3] = [5, 10, 20];

/// Recall@k and NDCG@k accumulators for one ranking method.
#[derive(Debug, Clone, Default)]
struct Metrics {
    recall: [f64; 3],
    ndcg: [f64; 3],
    users: usize,
}

impl Metrics {
    fn add(&mut self, ranked: &[u64], target: u64) {
        self.users += 1;
        if let Some(rank) = ranked.iter().position(|&id| id == target) {
            for (i, &c) in CUTOFFS.iter().enumerate() {
                if rank < c {
                    self.recall[i] += 1.0;
                    self.ndcg[i] += 1.0 / ((rank + 2) as f64).log2();
                }
            }
        }
    }
    fn mean(&self) -> ([f64; 3], [f64; 3]) {
        let n = self.users.max(1) as f64;
        (self.recall.map(|x| x / n), self.ndcg.map(|x| x / n))
    }
}

/// Reads P5-format sequences: `user item item ...` per line (`ingest::read_sequences`).
pub fn read_sequences(path: &Path) -> Result<Vec<Vec<u64>>, Error> {
    Ok(ingest::read_sequences(path)?)
}

/// Leave-one-out results of one evaluation.
pub struct Evaluation {
    /// Users evaluated.
    pub users: usize,
    /// (method, metrics) for exact search at every nested width, then the cascade.
    pub methods: Vec<(String, [f64; 3], [f64; 3])>,
    /// Seconds spent encoding the queries.
    pub encode_seconds: f64,
    /// Seconds spent in the cascade searches (all threads).
    pub cascade_seconds: f64,
    /// Seconds spent in the exact full-width scan (all threads).
    pub exact_full_seconds: f64,
}

/// Leave-one-out evaluation (the last item is the target, up to 50 items before it the
/// history; history not filtered, as in the paper): Recall and NDCG at 5/10/20 for exact
/// search at every nested width and for the cascade with `params`.
pub fn evaluate(
    index: &Index,
    encoder: &QueryEncoder,
    users: &[Vec<u64>],
    params: &SearchParams,
) -> Result<Evaluation, Error> {
    let t0 = Instant::now();
    let queries = encode_users(index, encoder, users)?;
    let encode_seconds = t0.elapsed().as_secs_f64();
    evaluate_queries(index, &queries, users, params, encode_seconds)
}

/// The query vectors of `users` (leave-one-out: the history is all but the last item, at
/// most the last 50 of them), row-major.
pub fn encode_users(
    index: &Index,
    encoder: &QueryEncoder,
    users: &[Vec<u64>],
) -> Result<Vec<f32>, Error> {
    let dim = index.dim();
    let mut queries = Vec::with_capacity(users.len() * dim);
    for chunk in users.chunks(256) {
        let histories = chunk
            .iter()
            .map(|seq| gather_history(index, &seq[..seq.len() - 1]))
            .collect::<Result<Vec<_>, _>>()?;
        let refs: Vec<&[f32]> = histories.iter().map(Vec::as_slice).collect();
        queries.extend(encoder.encode(&refs)?);
    }
    Ok(queries)
}

/// [`evaluate`] with the query vectors already computed.
pub fn evaluate_queries(
    index: &Index,
    queries: &[f32],
    users: &[Vec<u64>],
    params: &SearchParams,
    encode_seconds: f64,
) -> Result<Evaluation, Error> {
    let targets: Vec<u64> = users.iter().map(|s| s[s.len() - 1]).collect();
    let kmax = CUTOFFS[CUTOFFS.len() - 1];
    let score = |ranked: &[Vec<mrl_index::Hit>]| {
        let mut m = Metrics::default();
        for (r, &t) in ranked.iter().zip(&targets) {
            m.add(&r.iter().map(|h| h.id).collect::<Vec<_>>(), t);
        }
        m.mean()
    };
    // Exact ranking per width scans the base's store: a live index must be compacted.
    mrl_index::search::require_compacted(index)?;
    let mut methods = Vec::new();
    let mut exact_full_seconds = 0.0;
    let n_bands = index.store().bands().len();
    for (b, band) in index.store().bands().iter().enumerate() {
        let t = Instant::now();
        let ranked = mrl_index::exact::batch_top_k(index.store(), queries, kmax, b + 1);
        if b + 1 == n_bands {
            exact_full_seconds = t.elapsed().as_secs_f64();
        }
        let (r, n) = score(&ranked);
        methods.push((format!("exact@{}", band.end), r, n));
    }
    let t = Instant::now();
    let found = index.search_batch(queries, kmax, params, &Filter::NONE)?;
    let cascade_seconds = t.elapsed().as_secs_f64();
    let (r, n) = score(&found);
    let plan_text = params
        .plan
        .as_ref()
        .unwrap_or(index.default_plan())
        .to_string();
    let ef = params.ef.map(|e| format!(" ef {e}")).unwrap_or_default();
    methods.push((format!("cascade {plan_text}{ef}"), r, n));
    Ok(Evaluation {
        users: users.len(),
        methods,
        encode_seconds,
        cascade_seconds,
        exact_full_seconds,
    })
}

/// Prints an evaluation as a table.
pub fn print_evaluation(e: &Evaluation, n_items: usize) {
    println!(
        "{} users (leave-one-out, full ranking over {n_items} items, history not filtered); encoding {:.1}s, cascade {:.2}s, exact full width {:.2}s",
        e.users, e.encode_seconds, e.cascade_seconds, e.exact_full_seconds
    );
    println!(
        "{:<52} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7}",
        "method", "R@5", "R@10", "R@20", "N@5", "N@10", "N@20"
    );
    for (name, r, n) in &e.methods {
        println!(
            "{name:<52} {:>7.4} {:>7.4} {:>7.4} {:>7.4} {:>7.4} {:>7.4}",
            r[0], r[1], r[2], n[0], n[1], n[2]
        );
    }
}

/// Runs `eval`.
pub fn run_eval(a: EvalArgs) -> Result<(), Error> {
    let (index, encoder, mut users) = a.data.open()?;
    let plan = a
        .plan
        .as_deref()
        .map(str::parse::<SearchPlan>)
        .transpose()?;
    let params = SearchParams {
        plan,
        ef: a.ef,
        width: None,
    };
    users.retain(|s| s.len() >= 2);
    if a.max_users > 0 {
        users.truncate(a.max_users);
    }
    let t0 = Instant::now();
    let queries = match &a.queries {
        Some(p) => {
            let q = ingest::read_matrix_f32(p)?;
            if q.len() != users.len() || q.dim() != index.dim() {
                return Err(Error::Usage(format!(
                    "{}: {} × {} query vectors, but {} users × {} dims are evaluated",
                    p.display(),
                    q.len(),
                    q.dim(),
                    users.len(),
                    index.dim()
                )));
            }
            q.into_vec()
        }
        None => encode_users(&index, &encoder, &users)?,
    };
    if let Some(p) = &a.save_queries {
        ingest::write_npy_f32(p, &queries, users.len(), index.dim())?;
    }
    let e = evaluate_queries(
        &index,
        &queries,
        &users,
        &params,
        t0.elapsed().as_secs_f64(),
    )?;
    if a.json {
        let rows: Vec<serde_json::Value> = e
            .methods
            .iter()
            .map(|(name, r, n)| {
                serde_json::json!({"method": name, "users": e.users,
                    "recall@5": r[0], "recall@10": r[1], "recall@20": r[2],
                    "ndcg@5": n[0], "ndcg@10": n[1], "ndcg@20": n[2]})
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
    } else {
        print_evaluation(&e, index.len());
    }
    Ok(())
}
