//! `mrl-index info` and `mrl-index verify`.

use clap::Args;
use mrl_index::format::{FORMAT_VERSION, OLDEST_SUPPORTED_FORMAT_VERSION};
use mrl_index::{Error, Index};
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Index directory.
    #[arg(long)]
    index: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Arguments of `verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Index directory.
    #[arg(long)]
    index: PathBuf,
}

/// The format version in the header of `dir`'s MANIFEST (what a reader must support).
fn manifest_version(dir: &std::path::Path) -> Option<u32> {
    let bytes = mrl_index::manifest::read_bytes(&mrl_index::manifest::manifest_path(dir)).ok()?;
    Some(u32::from_le_bytes(bytes.get(8..12)?.try_into().ok()?))
}

/// Runs `info`.
pub fn run_info(a: InfoArgs) -> Result<(), Error> {
    let index = Index::open(&a.index)?;
    let g = index.graph().meta();
    let info = index.graph().build_info();
    let layers: Vec<usize> = (0..index.graph().n_layers())
        .map(|l| index.graph().layer_len(l))
        .collect();
    let store_file = index.manifest().store_file();
    let graph_file = index.manifest().graph_file();
    let space = index.space();
    // The index's format version: the newest of its files' (a learned space needs 2).
    let version = [
        Some(index.store().container().header().format_version),
        Some(index.graph().container().header().format_version),
        space.map(|s| s.container().header().format_version),
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(1)
    .max(manifest_version(&a.index).unwrap_or(1));
    let deltas: Vec<serde_json::Value> = index
        .deltas()
        .iter()
        .map(|d| {
            serde_json::json!({
                "generation": format!("{:016x}", d.generation()),
                "items": d.store().len(),
                "deleted": d.deleted().count(),
                "bytes": d.file_bytes(),
                "graph": d.graph().is_some(),
            })
        })
        .collect();
    let tuned = index.tuned();
    let info_of = |key: &str| tuned.and_then(|t| t.info(key)).map(str::to_string);
    if a.json {
        // Every data file the manifest names: the base's, each delta's, the deletion file.
        let named = index.full_manifest().generations();
        let mut files = serde_json::Map::new();
        let mut entries: Vec<(String, u64)> = std::fs::read_dir(&a.index)
            .map(|it| {
                it.flatten()
                    .filter_map(|e| {
                        let name = e.file_name().to_string_lossy().into_owned();
                        let g = mrl_index::manifest::generation_of(&name)?;
                        named
                            .contains(&g)
                            .then(|| (name, e.metadata().map_or(0, |m| m.len())))
                    })
                    .collect()
            })
            .unwrap_or_default();
        entries.sort();
        for (name, len) in entries {
            files.insert(name, len.into());
        }
        let v = serde_json::json!({
            "index": a.index.display().to_string(),
            "items": index.len(),
            "live_items": index.len(),
            "base_items": index.store().len(),
            "deleted": index.deleted_count(),
            "delta_segments": deltas,
            "dim": index.dim(),
            "widths": index.widths(),
            "coarse_dim": index.coarse_dim(),
            "coarse_space": index.layout().coarse_space.name(),
            "ids_are_rows": index.store().ids_are_rows(),
            "space": space.map(|s| serde_json::json!({
                "kind": s.kind().name(),
                "code_dim": s.code_dim(),
                "code_widths": s.widths(),
                "fit_queries": s.meta().n_fit_queries,
                "fit_items": s.meta().n_fit_items,
                "captured": s.meta().captured,
                "seed": s.meta().seed,
            })),
            "graph": {
                "m": g.m, "m0": g.m0, "layers": layers, "entry_point": g.entry_point,
                "max_norm": g.max_norm,
                "ef_construction": info.as_ref().map(|i| i.ef_construction),
                "seed": info.as_ref().map(|i| i.seed),
                "threads": info.as_ref().map(|i| i.threads),
                "build_seconds": info.as_ref().map(|i| i.build_seconds),
                "built_by": info.as_ref().map(|i| i.crate_version.clone()),
                "builder": info.as_ref().map(|i| i.builder.clone()),
            },
            "files": files,
            "format_version": version,
            "default_plan": index.default_plan().to_string(),
            "default_ef": index.default_ef(),
            "tuned": tuned.map(|t| {
                let mut m = serde_json::Map::new();
                for (k, v) in &t.info {
                    m.insert(k.clone(), v.clone().into());
                }
                serde_json::Value::Object(m)
            }),
        });
        println!("{v}");
        return Ok(());
    }
    println!("index          {}", a.index.display());
    println!("items          {}", index.len());
    if !index.is_compacted() {
        println!(
            "segments       base {} items ({} deleted), {} delta segments of {:?} items, {} deleted in all",
            index.store().len(),
            index.base_deleted().count(),
            index.deltas().len(),
            index.deltas().iter().map(|d| d.store().len()).collect::<Vec<_>>(),
            index.deleted_count()
        );
    }
    println!("dimension      {}", index.dim());
    println!("widths         {:?}", index.widths());
    match space {
        Some(s) => {
            println!(
                "coarse space   learned ({}): {} code dims in bands {:?}, fitted on {} items and {} sample queries, carrying {:.1}% of the inner-product form; graph on L{}",
                s.kind().name(),
                s.code_dim(),
                s.widths(),
                s.meta().n_fit_items,
                s.meta().n_fit_queries,
                100.0 * s.meta().captured,
                index.coarse_dim()
            );
        }
        None => println!(
            "coarse space   native: the graph is built on the first {} dims",
            index.coarse_dim()
        ),
    }
    println!(
        "ids            {}",
        if index.store().ids_are_rows() {
            "row numbers"
        } else {
            "external (id file)"
        }
    );
    println!(
        "graph          M = {}, M0 = {}, {} layers {:?}, entry point row {}",
        g.m,
        g.m0,
        layers.len(),
        layers,
        g.entry_point
    );
    if let Some(i) = &info {
        println!(
            "built with     ef_construction = {}, seed = {}, {} threads, {:.1}s, mrl-index {} ({})",
            i.ef_construction, i.seed, i.threads, i.build_seconds, i.crate_version, i.builder
        );
    }
    println!(
        "default plan   {}{}",
        index.default_plan(),
        index
            .default_ef()
            .map(|e| format!(" ef {e}"))
            .unwrap_or_default()
    );
    match tuned.filter(|t| t.info("recall").is_some()) {
        Some(_) => println!(
            "tuned          recall@{} {} ± {} (target {}) at {} q/s on 1 thread, on {} {}",
            info_of("k").unwrap_or_else(|| "10".into()),
            info_of("recall").unwrap_or_else(|| "?".into()),
            info_of("recall_se").unwrap_or_else(|| "?".into()),
            info_of("target").unwrap_or_else(|| "?".into()),
            info_of("qps").unwrap_or_else(|| "?".into()),
            info_of("queries").unwrap_or_else(|| "?".into()),
            info_of("source").unwrap_or_else(|| "queries".into()),
        ),
        None => println!("tuned          no (the untuned default of the layout)"),
    }
    let mut files = format!(
        "{store_file} {:.1} MB, {graph_file} {:.1} MB",
        index.store().file_len() as f64 / 1e6,
        index.graph().file_len() as f64 / 1e6
    );
    if let Some(s) = space {
        files.push_str(&format!(
            ", {} {:.1} MB",
            index.manifest().space_file(),
            s.file_len() as f64 / 1e6
        ));
    }
    println!("files          {files}");
    println!("format         version {version} (this build reads {OLDEST_SUPPORTED_FORMAT_VERSION}..={FORMAT_VERSION})");
    Ok(())
}

/// Runs `verify`.
pub fn run_verify(a: VerifyArgs) -> Result<(), Error> {
    let t0 = Instant::now();
    let index = Index::open(&a.index)?;
    index.verify()?;
    println!(
        "ok: {} verified ({} items, {:.1} MB) in {:.2}s",
        a.index.display(),
        index.len(),
        (index.store().file_len()
            + index.graph().file_len()
            + index.space().map_or(0, |s| s.file_len())) as f64
            / 1e6,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
