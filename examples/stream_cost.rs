//! The cost of one streaming update + query (`QueryEncoder::step`) against re-encoding a
//! 50-item history (`QueryEncoder::encode`), measured in the same run on the same session and
//! interleaved round by round, for one user and per user in a batch. The numbers in
//! `docs/streaming.md` come from this.
//!
//! `cargo run --release --example stream_cost -- [--rounds 15] [--batch 64] [--encoder FILE] [--full-only]`
//!
//! `--full-only` times only the one-user re-encoding, of `--encoder FILE` (which may lack the
//! step interface): run it on an older file and on the current one, in separate processes
//! (each ONNX Runtime session has its own spinning thread pool, so two sessions in one
//! process slow each other down), to compare the full path's cost.
//!
//! ONNX Runtime runs with its default threads (one per core), as `QueryEncoder` opens it.

use mrl_index::encoder::{ItemEncoder, QueryEncoder, MAX_HISTORY};
use mrl_index::ingest::read_matrix_f32;
use mrl_index::stream::UserState;
use std::path::{Path, PathBuf};
use std::time::Instant;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::MAX, f64::min)
}

/// Seconds per call of `f`, over `n` calls.
fn time(n: usize, mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed().as_secs_f64() / n as f64
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/beauty");
    let mut args = std::env::args().skip(1);
    let (mut rounds, mut batch) = (15usize, 64usize);
    let (mut encoder, mut full_only) = (data.join("query_encoder.onnx"), false);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--rounds" => rounds = value()?.parse()?,
            "--batch" => batch = value()?.parse()?,
            "--encoder" => encoder = PathBuf::from(value()?),
            "--full-only" => full_only = true,
            _ => return Err(format!("unknown argument {a}").into()),
        }
    }
    if rounds == 0 {
        return Err("--rounds must be at least 1".into());
    }
    let features = read_matrix_f32(&data.join("item_features.npy"))?;
    let vectors = {
        // Dropped before timing: its session's threads must not compete.
        let items = ItemEncoder::open(&data.join("item_encoder.onnx"))?;
        items.encode(features.as_slice(), 2048)?
    };
    let enc = QueryEncoder::open(&encoder)?;
    let d = enc.dim();
    let n_items = vectors.len() / d;
    // Histories of 50 distinct items, spread over the catalogue (the cost does not depend on
    // which items).
    let item = |i: usize| &vectors[(i % n_items) * d..(i % n_items + 1) * d];
    let history = |u: usize| -> Vec<f32> {
        (0..MAX_HISTORY)
            .flat_map(|k| item(u * 7919 + k * 241).to_vec())
            .collect()
    };
    println!(
        "ONNX Runtime {}; {} cores; {} (dim {d}, step interface: {}); rounds {rounds}",
        mrl_index::encoder::loaded_runtime().map_or("?".into(), |p| p.display().to_string()),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        encoder.display(),
        enc.has_step(),
    );
    let h1 = history(0);
    for _ in 0..2 {
        enc.encode(&[&h1])?; // warm-up
    }
    if full_only {
        let mut full: Vec<f64> = (0..rounds)
            .map(|_| {
                time(5, || {
                    enc.encode(&[&h1]).unwrap();
                })
            })
            .collect();
        println!(
            "full path: re-encode 50 items {:.2} ms (median of {rounds} rounds of 5; min {:.2} ms)",
            median(&mut full) * 1e3,
            min(&full) * 1e3
        );
        return Ok(());
    }

    // One user: re-encode a 50-item history, and one step of a user who has streamed 50.
    let mut one: Vec<UserState> = vec![enc.new_state()?];
    for k in 0..MAX_HISTORY {
        enc.step(&mut one, item(k * 241))?;
    }
    let (mut full, mut step) = (Vec::new(), Vec::new());
    let mut k = 0;
    for _ in 0..rounds {
        full.push(time(5, || {
            enc.encode(&[&h1]).unwrap();
        }));
        step.push(time(40, || {
            k += 1;
            enc.step(&mut one, item(k * 13)).unwrap();
        }));
    }
    let mut ratios: Vec<f64> = full.iter().zip(&step).map(|(f, s)| f / s).collect();
    let (f, s) = (median(&mut full.clone()), median(&mut step.clone()));
    println!(
        "one user:  re-encode 50 items {:.2} ms, step {:.3} ms (medians of {rounds} rounds; min {:.2} / {:.3} ms)",
        f * 1e3,
        s * 1e3,
        min(&full) * 1e3,
        min(&step) * 1e3,
    );
    println!(
        "one user:  step / re-encode = 1/{:.1} (ratio of the medians; median of the per-round ratios 1/{:.1})",
        f / s,
        median(&mut ratios)
    );

    // A batch: per-user cost of re-encoding `batch` 50-item histories in one call, and of one
    // step of `batch` users in one call.
    if batch > 0 {
        let hs: Vec<Vec<f32>> = (0..batch).map(history).collect();
        let refs: Vec<&[f32]> = hs.iter().map(Vec::as_slice).collect();
        let mut states: Vec<UserState> = (0..batch)
            .map(|_| enc.new_state())
            .collect::<Result<_, _>>()?;
        let items =
            |k: usize| -> Vec<f32> { (0..batch).flat_map(|u| item(u * 31 + k).to_vec()).collect() };
        let (mut fb, mut sb) = (Vec::new(), Vec::new());
        let brounds = rounds.div_ceil(3);
        enc.encode(&refs)?;
        enc.step(&mut states, &items(0))?;
        for r in 0..brounds {
            fb.push(
                time(1, || {
                    enc.encode(&refs).unwrap();
                }) / batch as f64,
            );
            let it = items(r + 1);
            sb.push(
                time(5, || {
                    enc.step(&mut states, &it).unwrap();
                }) / batch as f64,
            );
        }
        let (f, s) = (median(&mut fb), median(&mut sb));
        println!(
            "batch {batch}: per user re-encode {:.3} ms, step {:.4} ms, step / re-encode = 1/{:.1} (medians of {brounds} rounds)",
            f * 1e3,
            s * 1e3,
            f / s
        );
    }
    Ok(())
}
