//! Shared by the fuzz targets: a scratch directory per process, and "open, then search and
//! verify whatever opened" on an index one of whose files is the fuzzer's input.
#![allow(dead_code)]

use mrl_index::{Filter, Index, SearchParams, SearchPlan};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A directory of this process's own (in memory where /dev/shm exists).
pub fn scratch_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        // libFuzzer ends the process with exit(), so no destructor removes the directory:
        // each run sweeps those of processes that are gone.
        if let Ok(entries) = std::fs::read_dir(&base) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(pid) = name.strip_prefix("mrl-fuzz-") {
                    if !Path::new("/proc").join(pid).exists() {
                        let _ = std::fs::remove_dir_all(e.path());
                    }
                }
            }
        }
        let dir = base.join(format!("mrl-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the fuzz scratch directory");
        dir
    })
}

/// Writes `data` to `name` in the scratch directory and returns its path.
pub fn write_input(name: &str, data: &[u8]) -> PathBuf {
    let path = scratch_dir().join(name);
    std::fs::write(&path, data).expect("write the fuzz input");
    path
}

/// The golden index of format version 2 (store, graph, learned space, MANIFEST with a
/// tuned plan), copied once into the scratch directory: the base whose files the
/// container targets replace.
pub fn golden_copy() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| copy_golden("v2"))
}

/// The golden live index of format version 3 (the v2 base, two delta segments, a deletion
/// file), copied once: the index whose MANIFEST and deletion file the live targets replace.
pub fn golden_v3_copy() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| copy_golden("v3"))
}

fn copy_golden(set: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/golden").join(set);
    let dst = scratch_dir().join(set);
    std::fs::create_dir_all(&dst).expect("create the index copy");
    for e in std::fs::read_dir(&src)
        .expect("read tests/golden")
        .flatten()
    {
        let name = e.file_name();
        if name.to_string_lossy().ends_with(".json") {
            continue;
        }
        std::fs::copy(e.path(), dst.join(&name)).expect("copy a golden file");
    }
    dst
}

/// The path, in the golden copy, of its file whose name starts with `prefix` (`store-`,
/// `graph-`, `space-`, `MANIFEST`).
pub fn golden_file(prefix: &str) -> PathBuf {
    golden_file_in(golden_copy(), prefix)
}

/// The path of the file in `dir` whose name starts with `prefix` (the first one).
pub fn golden_file_in(dir: &Path, prefix: &str) -> PathBuf {
    std::fs::read_dir(dir)
        .expect("read the index copy")
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        })
        .expect("the golden index has the file")
}

/// Deterministic query values from the input's bytes (finite, in [-1, 1)).
pub fn queries(dim: usize, count: usize, salt: &[u8]) -> Vec<f32> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for &b in salt.iter().take(64) {
        x = (x ^ u64::from(b)).wrapping_mul(0x1000_0000_01b3);
    }
    (0..dim * count)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// Everything a reader of an opened index may call: searches at every width, with
/// filters, explicit plans and a huge `k`, a batch, exact search, and verify. None of it may
/// panic, whatever the files hold.
pub fn exercise(index: &Index, salt: &[u8]) {
    let dim = index.dim();
    let qs = queries(dim, 2, salt);
    let q = &qs[..dim];
    let ids: Vec<u64> = (0..index.len().min(8))
        .map(|r| index.store().id(r))
        .chain([u64::MAX, 3, 7])
        .collect();
    let _ = index.search(q, 10, &SearchParams::default());
    for w in index.widths() {
        let _ = index.search(q, 5, &SearchParams::at_width(w));
    }
    let _ = index.search_filtered(q, 10, &SearchParams::default(), &Filter::deny(&ids));
    let _ = index.search_filtered(q, 3, &SearchParams::default(), &Filter::allow(&ids));
    let wide = SearchParams {
        ef: Some(usize::MAX / 2),
        ..SearchParams::default()
    };
    let _ = index.search(q, usize::MAX, &wide);
    let coarse = match index.graph().space() {
        mrl_index::plan::Space::Learned => format!("L{}", index.coarse_dim()),
        mrl_index::plan::Space::Native => index.coarse_dim().to_string(),
    };
    if let Ok(plan) = format!("{coarse}:100,{dim}:10").parse::<SearchPlan>() {
        let _ = index.search(q, 10, &SearchParams::with_plan(plan));
    }
    let _ = index.search_batch(&qs, 4, &SearchParams::default(), &Filter::NONE);
    let _ = index.exact_search(q, 10, dim, &Filter::deny(&ids));
    let _ = index.verify();
}

/// Replaces the golden copy's file `prefix` with `data`, opens the index, exercises it, and
/// puts the golden file back.
pub fn with_replaced(prefix: &str, data: &[u8]) {
    with_replaced_in(golden_copy(), prefix, data);
}

/// [`with_replaced`] in the golden copy `dir`.
pub fn with_replaced_in(dir: &Path, prefix: &str, data: &[u8]) {
    let path = golden_file_in(dir, prefix);
    let original = std::fs::read(&path).expect("read the golden file");
    std::fs::write(&path, data).expect("write the fuzz input");
    if let Ok(index) = Index::open(dir) {
        exercise(&index, data);
    }
    std::fs::write(&path, original).expect("restore the golden file");
}

/// Opens the file as vectors and reads every row, then loads it whole.
pub fn read_vectors(path: &std::path::Path) {
    if let Ok(source) = mrl_index::ingest::open_vectors(path) {
        let mut row = vec![0f32; source.dim()];
        for r in 0..source.len() {
            let _ = source.read_row(r, &mut row);
        }
        let _ = source.read_row(source.len(), &mut row);
    }
    let _ = mrl_index::ingest::read_matrix_f32(path);
}
