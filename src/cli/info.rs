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
    let version = index.store().container().header().format_version;
    if a.json {
        let v = serde_json::json!({
            "index": a.index.display().to_string(),
            "items": index.len(),
            "dim": index.dim(),
            "widths": index.widths(),
            "coarse_dim": index.coarse_dim(),
            "ids_are_rows": index.store().ids_are_rows(),
            "graph": {
                "m": g.m, "m0": g.m0, "layers": layers, "entry_point": g.entry_point,
                "max_norm": g.max_norm,
                "ef_construction": info.as_ref().map(|i| i.ef_construction),
                "seed": info.as_ref().map(|i| i.seed),
                "threads": info.as_ref().map(|i| i.threads),
                "build_seconds": info.as_ref().map(|i| i.build_seconds),
                "built_by": info.as_ref().map(|i| i.crate_version.clone()),
            },
            "files": {
                store_file: index.store().file_len(),
                graph_file: index.graph().file_len(),
            },
            "format_version": version,
            "default_plan": index.default_plan().to_string(),
            "default_ef": index.default_ef(),
        });
        println!("{v}");
        return Ok(());
    }
    println!("index          {}", a.index.display());
    println!("items          {}", index.len());
    println!("dimension      {}", index.dim());
    println!("widths         {:?}", index.widths());
    println!("coarse dim     {}", index.coarse_dim());
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
            .map(|e| format!(" ef {e} (from DEFAULT_PLAN)"))
            .unwrap_or_default()
    );
    println!(
        "files          {store_file} {:.1} MB, {graph_file} {:.1} MB",
        index.store().file_len() as f64 / 1e6,
        index.graph().file_len() as f64 / 1e6
    );
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
        (index.store().file_len() + index.graph().file_len()) as f64 / 1e6,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
