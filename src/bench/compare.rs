//! Merging rows of several runs and systems: one JSON, one CSV, a Markdown table of the best
//! throughput per recall target and the recall–throughput plot.

use super::plot::plot_rows;
use super::row::{io_err, read_rows, write_rows_csv, write_rows_json, Row};
use crate::atomic::write_atomic;
use crate::Error;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Recall@10 targets of the comparison table.
pub const RECALL_TARGETS: [f64; 3] = [0.90, 0.95, 0.99];

/// What [`compare`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct CompareReport {
    /// Rows merged.
    pub rows: usize,
    /// Distinct `system / family` series.
    pub series: Vec<String>,
    /// Files written: `all.json`, `all.csv`, `table.md`, `recall_qps.svg`, `recall_qps.png`
    /// (and one plot per data set when there are several).
    pub files: Vec<PathBuf>,
}

/// The row with the best one-thread queries per second among `rows` whose recall@10 is at
/// least `target`.
pub fn best_at<'a>(rows: &[&'a Row], target: f64) -> Option<&'a Row> {
    rows.iter()
        .copied()
        .filter(|r| r.recall_at_10.is_some_and(|x| x >= target))
        .filter(|r| r.qps_1_thread.is_some_and(|q| q.is_finite()))
        .max_by(|a, b| {
            a.qps_1_thread
                .unwrap_or(0.0)
                .total_cmp(&b.qps_1_thread.unwrap_or(0.0))
        })
}

fn mb(bytes: Option<u64>) -> String {
    bytes.map_or("—".into(), |b| format!("{:.1}", b as f64 / 1e6))
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// The Markdown table: per data set, system and family, for each recall@10 target, the configuration
/// with the best one-thread queries per second reaching it (with its recall, all-threads
/// throughput, p99 latency, build seconds, index size and RSS), `—` where none reaches it.
pub fn table_markdown(rows: &[Row]) -> String {
    let mut by: BTreeMap<(String, String, String), Vec<&Row>> = BTreeMap::new();
    for r in rows {
        by.entry((r.dataset.clone(), r.system.clone(), r.family.clone()))
            .or_default()
            .push(r);
    }
    let mut datasets: Vec<String> = Vec::new();
    for r in rows {
        let d = format!(
            "{} (n = {}, dim = {}, k = {}, {} queries; {})",
            if r.dataset.is_empty() {
                "?"
            } else {
                &r.dataset
            },
            r.n_items.map_or("?".into(), |v| v.to_string()),
            r.dim.map_or("?".into(), |v| v.to_string()),
            r.k.map_or("?".into(), |v| v.to_string()),
            r.n_queries.map_or("?".into(), |v| v.to_string()),
            if r.machine.is_empty() {
                "machine ?"
            } else {
                &r.machine
            },
        );
        if !datasets.contains(&d) {
            datasets.push(d);
        }
    }
    let mut s = String::from("# Best one-thread throughput per recall@10 target\n\n");
    for d in &datasets {
        s.push_str(&format!("- {d}\n"));
    }
    s.push('\n');
    s.push_str(
        "| data set | system | family | recall@10 ≥ | best q/s (1 thread) | recall@10 \
         | q/s (all threads) | p99 µs | configuration | build s | index MB | RSS MB |\n",
    );
    s.push_str("|---|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|\n");
    for ((dataset, system, family), group) in &by {
        for &t in &RECALL_TARGETS {
            match best_at(group, t) {
                Some(r) => s.push_str(&format!(
                    "| {} | {} | {} | {t:.2} | {:.0} | {:.4} | {} | {} | {} | {} | {} | {} |\n",
                    cell(dataset),
                    cell(system),
                    cell(family),
                    r.qps_1_thread.unwrap_or(0.0),
                    r.recall_at_10.unwrap_or(0.0),
                    r.qps_all_threads.map_or("—".into(), |q| format!("{q:.0}")),
                    r.p99_us.map_or("—".into(), |v| format!("{v:.0}")),
                    cell(&r.config_text()),
                    r.build_seconds.map_or("—".into(), |v| format!("{v:.1}")),
                    mb(r.index_bytes),
                    mb(r.rss_bytes),
                )),
                None => {
                    let best = group
                        .iter()
                        .filter_map(|r| r.recall_at_10)
                        .fold(f64::NAN, f64::max);
                    s.push_str(&format!(
                        "| {} | {} | {} | {t:.2} | — | {} | — | — | not reached | — | — | — |\n",
                        cell(dataset),
                        cell(system),
                        cell(family),
                        if best.is_nan() {
                            "—".to_string()
                        } else {
                            format!("max {best:.4}")
                        },
                    ));
                }
            }
        }
    }
    s
}

/// Merges the rows of `inputs` (JSON arrays or JSON lines, any system) and writes
/// `out_dir/all.json`, `all.csv`, `table.md` ([`table_markdown`]) and `recall_qps.svg` +
/// `.png` ([`plot_rows`]), creating `out_dir`; when the rows hold several data sets, also
/// `recall_qps-<data set>.svg` + `.png` for each.
pub fn compare(inputs: &[PathBuf], out_dir: &Path) -> Result<CompareReport, Error> {
    if inputs.is_empty() {
        return Err(Error::Other("compare: no --inputs given".into()));
    }
    let mut rows = Vec::new();
    for p in inputs {
        rows.extend(read_rows(p)?);
    }
    std::fs::create_dir_all(out_dir).map_err(|e| io_err(out_dir, e))?;
    let json = out_dir.join("all.json");
    let csv = out_dir.join("all.csv");
    let table = out_dir.join("table.md");
    write_rows_json(&json, &rows)?;
    write_rows_csv(&csv, &rows)?;
    write_atomic(&table, table_markdown(&rows).as_bytes()).map_err(|e| io_err(&table, e))?;
    let mut files = vec![json, csv, table];
    files.extend(plot_rows(&rows, &out_dir.join("recall_qps.svg"))?);
    let mut datasets: Vec<&str> = rows.iter().map(|r| r.dataset.as_str()).collect();
    datasets.sort();
    datasets.dedup();
    if datasets.len() > 1 {
        // One plot per data set as well: a Pareto front across data sets means nothing.
        for d in datasets {
            let subset: Vec<Row> = rows.iter().filter(|r| r.dataset == d).cloned().collect();
            let name: String = d
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            files.extend(plot_rows(
                &subset,
                &out_dir.join(format!("recall_qps-{name}.svg")),
            )?);
        }
    }
    let mut series: Vec<String> = rows.iter().map(Row::series).collect();
    series.sort();
    series.dedup();
    Ok(CompareReport {
        rows: rows.len(),
        series,
        files,
    })
}
