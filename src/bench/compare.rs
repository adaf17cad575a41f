//! Merging rows of several runs and systems: one JSON, one CSV, a Markdown table of the best
//! throughput per recall target and the recall–throughput plot.

use super::plot::plot_rows;
use super::row::{io_err, read_rows, write_rows_csv, write_rows_json, Row};
use super::BenchError;
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
/// throughput, p99 latency, the cost of one query per call over a one-thread batch
/// (`call_overhead_us`: Python's per-call cost for the rows measured through Python), build
/// seconds, index size and RSS), `—` where none reaches it.
pub fn table_markdown(rows: &[Row]) -> String {
    let mut by: BTreeMap<(String, String, String), Vec<&Row>> = BTreeMap::new();
    for r in rows {
        by.entry((r.dataset.clone(), r.system.clone(), r.family.clone()))
            .or_default()
            .push(r);
    }
    // One line per data set: the most queries any of its rows used (slow configurations
    // and exact search may run on a stated subset: see each row's n_queries).
    let mut datasets: Vec<(String, String)> = Vec::new();
    let mut most_queries: BTreeMap<String, u64> = BTreeMap::new();
    for r in rows {
        let nq = most_queries.entry(r.dataset.clone()).or_default();
        *nq = (*nq).max(r.n_queries.unwrap_or(0));
        if datasets.iter().any(|(name, _)| name == &r.dataset) {
            continue;
        }
        let d = format!(
            "n = {}, dim = {}, k = {}; {}",
            r.n_items.map_or("?".into(), |v| v.to_string()),
            r.dim.map_or("?".into(), |v| v.to_string()),
            r.k.map_or("?".into(), |v| v.to_string()),
            if r.machine.is_empty() {
                "machine ?"
            } else {
                &r.machine
            },
        );
        datasets.push((r.dataset.clone(), d));
    }
    let datasets: Vec<String> = datasets
        .into_iter()
        .map(|(name, d)| {
            format!(
                "{} ({d}, up to {} queries)",
                if name.is_empty() { "?" } else { &name },
                most_queries[&name]
            )
        })
        .collect();
    let mut s = String::from("# Best one-thread throughput per recall@10 target\n\n");
    for d in &datasets {
        s.push_str(&format!("- {d}\n"));
    }
    s.push('\n');
    s.push_str(
        "| data set | system | family | recall@10 ≥ | best q/s (1 thread) | recall@10 \
         | q/s (all threads) | p99 µs | µs per call | configuration | build s | index MB | RSS MB |\n",
    );
    s.push_str("|---|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|\n");
    for ((dataset, system, family), group) in &by {
        for &t in &RECALL_TARGETS {
            match best_at(group, t) {
                Some(r) => s.push_str(&format!(
                    "| {} | {} | {} | {t:.2} | {:.0} | {:.4} | {} | {} | {} | {} | {} | {} | {} |\n",
                    cell(dataset),
                    cell(system),
                    cell(family),
                    r.qps_1_thread.unwrap_or(0.0),
                    r.recall_at_10.unwrap_or(0.0),
                    r.qps_all_threads.map_or("—".into(), |q| format!("{q:.0}")),
                    r.p99_us.map_or("—".into(), |v| format!("{v:.0}")),
                    r.extra
                        .get("call_overhead_us")
                        .and_then(|v| v.as_f64())
                        .map_or("—".into(), |v| format!("{v:.1}")),
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
                        "| {} | {} | {} | {t:.2} | — | {} | — | — | — | not reached | — | — | — |\n",
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

fn ratio(ours: Option<f64>, theirs: Option<f64>) -> String {
    match (ours, theirs) {
        (Some(a), Some(b)) if b > 0.0 && a.is_finite() && b.is_finite() => format!("{:.2}×", a / b),
        _ => "—".into(),
    }
}

fn extra_u64(r: &Row, key: &str) -> Option<u64> {
    r.extra.get(key).and_then(|v| v.as_u64())
}

/// The matched-recall table: per data set and recall@10 target, mrl-index's best cascade
/// configuration (by one-thread q/s) against each peer family's best, as ratios ours /
/// theirs of one-thread and all-threads q/s, build seconds, resident memory and bytes on
/// disk (above 1 is better for q/s, below 1 better for the others). mrl-index's resident
/// memory is also given as anonymous memory alone (its index is mapped: the file pages it
/// touched are page cache the kernel can drop and re-read).
pub fn ratio_markdown(rows: &[Row]) -> String {
    let mut datasets: Vec<&str> = rows.iter().map(|r| r.dataset.as_str()).collect();
    datasets.sort();
    datasets.dedup();
    let mut s = String::from(
        "# mrl-index against each peer at matched recall@10 (ratios ours / theirs)\n\n\
         q/s: above 1 is mrl-index faster. build, RSS, disk: below 1 is mrl-index smaller. \
         RSS anon: mrl-index's anonymous memory only (its mapped index pages are page cache) \
         against the peer's whole RSS.\n\n",
    );
    for d in datasets {
        let ours: Vec<&Row> = rows
            .iter()
            .filter(|r| {
                r.dataset == d
                    && r.system == super::sweep::SYSTEM
                    && r.family == super::sweep::FAMILY_CASCADE
            })
            .collect();
        let mut peers: BTreeMap<(String, String), Vec<&Row>> = BTreeMap::new();
        for r in rows
            .iter()
            .filter(|r| r.dataset == d && r.system != super::sweep::SYSTEM)
        {
            peers
                .entry((r.system.clone(), r.family.clone()))
                .or_default()
                .push(r);
        }
        if ours.is_empty() || peers.is_empty() {
            continue;
        }
        s.push_str(&format!("## {}\n\n", cell(d)));
        s.push_str(
            "| recall@10 ≥ | peer family | mrl-index config (recall, q/s 1 thr) | peer config (recall, q/s 1 thr) \
             | q/s 1 thread | q/s all threads | build s | RSS | RSS anon | disk |\n",
        );
        s.push_str("|---:|---|---|---|---:|---:|---:|---:|---:|---:|\n");
        for &t in &RECALL_TARGETS {
            let o = best_at(&ours, t);
            for ((_, family), group) in &peers {
                let p = best_at(group, t);
                let desc = |r: Option<&Row>| {
                    r.map_or("not reached".to_string(), |r| {
                        format!(
                            "{} ({:.3}, {:.0})",
                            cell(&r.config_text()),
                            r.recall_at_10.unwrap_or(0.0),
                            r.qps_1_thread.unwrap_or(0.0)
                        )
                    })
                };
                // ratio() gives "—" where either side is missing or not reached.
                let bytes = |v: Option<u64>| v.map(|b| b as f64);
                type Field<'r> = &'r dyn Fn(&Row) -> Option<f64>;
                let r = |ours: Field, theirs: Field| ratio(o.and_then(ours), p.and_then(theirs));
                let cells = [
                    r(&|x| x.qps_1_thread, &|x| x.qps_1_thread),
                    r(&|x| x.qps_all_threads, &|x| x.qps_all_threads),
                    r(&|x| x.build_seconds, &|x| x.build_seconds),
                    r(&|x| bytes(x.rss_bytes), &|x| bytes(x.rss_bytes)),
                    r(&|x| bytes(extra_u64(x, "rss_anon_bytes")), &|x| {
                        bytes(x.rss_bytes)
                    }),
                    r(&|x| bytes(x.index_bytes), &|x| bytes(x.index_bytes)),
                ];
                s.push_str(&format!(
                    "| {t:.2} | {} | {} | {} | {} |\n",
                    cell(family),
                    desc(o),
                    desc(p),
                    cells.join(" | ")
                ));
            }
        }
        s.push('\n');
    }
    s
}

/// The prefix-share table: per data set and width, the share of the full-width top-10
/// found in the width's exact top-K (from the `share_of_top10_in_top_k` field of the
/// `exact-width` rows), one column per K.
pub fn share_markdown(rows: &[Row]) -> String {
    let with: Vec<&Row> = rows
        .iter()
        .filter(|r| r.extra.contains_key("share_of_top10_in_top_k"))
        .collect();
    if with.is_empty() {
        return String::new();
    }
    let mut depths: Vec<u64> = Vec::new();
    for r in &with {
        if let Some(m) = r.extra["share_of_top10_in_top_k"].as_object() {
            depths.extend(m.keys().filter_map(|k| k.parse::<u64>().ok()));
        }
    }
    depths.sort_unstable();
    depths.dedup();
    let mut s = String::from(
        "# Share of the full-width top-10 inside each prefix width's exact top-K\n\n| data set | items | width | queries |",
    );
    for d in &depths {
        s.push_str(&format!(" K = {d} |"));
    }
    s.push_str("\n|---|---:|---:|---:|");
    s.push_str(&"---:|".repeat(depths.len()));
    s.push('\n');
    for r in with {
        let m = &r.extra["share_of_top10_in_top_k"];
        s.push_str(&format!(
            "| {} | {} | {} | {} |",
            cell(&r.dataset),
            r.n_items.map_or("?".into(), |v| v.to_string()),
            r.config.get("width").map_or("?".into(), |v| v.to_string()),
            r.n_queries.map_or("?".into(), |v| v.to_string()),
        ));
        for d in &depths {
            s.push_str(&match m.get(d.to_string()).and_then(|v| v.as_f64()) {
                Some(v) => format!(" {v:.3} |"),
                None => " — |".into(),
            });
        }
        s.push('\n');
    }
    s
}

/// Merges the rows of `inputs` (JSON arrays or JSON lines, any system) and writes
/// `out_dir/all.json`, `all.csv`, `table.md` ([`table_markdown`]) and `recall_qps.svg` +
/// `.png` ([`plot_rows`]), creating `out_dir`; when the rows hold several data sets, also
/// `recall_qps-<data set>.svg` + `.png` for each.
pub fn compare(inputs: &[PathBuf], out_dir: &Path) -> Result<CompareReport, Error> {
    if inputs.is_empty() {
        return Err(BenchError::Invalid("compare: no --inputs given".into()).into());
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
    let text = format!(
        "{}\n{}\n{}",
        table_markdown(&rows),
        ratio_markdown(&rows),
        share_markdown(&rows)
    );
    write_atomic(&table, text.as_bytes()).map_err(|e| io_err(&table, e))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn row(system: &str, family: &str, recall: f64, qps: f64, build: f64, rss: u64) -> Row {
        let mut v = serde_json::json!({
            "system": system, "family": family, "label": format!("{family} {qps}"),
            "dataset": "d", "recall_at_10": recall, "qps_1_thread": qps,
            "qps_all_threads": qps * 2.0, "build_seconds": build, "rss_bytes": rss,
            "index_bytes": 1000,
        });
        if system == "mrl-index" {
            v["rss_anon_bytes"] = serde_json::json!(rss / 10);
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn ratios_pair_our_best_cascade_with_each_peer_family_at_each_target() {
        let rows = vec![
            row("mrl-index", "cascade", 0.93, 3000.0, 10.0, 400),
            row("mrl-index", "cascade", 0.995, 1000.0, 10.0, 500),
            // Not a cascade row: never stands for mrl-index in the ratios.
            row("mrl-index", "coarse-graph", 0.999, 9e9, 10.0, 1),
            row("faiss", "hnsw", 0.96, 2000.0, 40.0, 1000),
            row("faiss", "hnsw", 0.90, 6000.0, 40.0, 1000),
        ];
        let t = ratio_markdown(&rows);
        // 0.90: ours 3000 q/s vs faiss 6000 → 0.50×; build 10/40; RSS 400/1000; anon 40/1000.
        assert!(
            t.contains("| 0.90 | hnsw | cascade 3000 (0.930, 3000) | hnsw 6000 (0.900, 6000) | 0.50× | 0.50× | 0.25× | 0.40× | 0.04× | 1.00× |"),
            "{t}"
        );
        // 0.95: ours 1000 (the 0.93 row no longer qualifies) vs faiss 2000.
        assert!(
            t.contains(
                "| 0.95 | hnsw | cascade 1000 (0.995, 1000) | hnsw 2000 (0.960, 2000) | 0.50× |"
            ),
            "{t}"
        );
        // 0.99: faiss never reaches it.
        assert!(
            t.contains("| 0.99 | hnsw | cascade 1000 (0.995, 1000) | not reached | — |"),
            "{t}"
        );
    }

    #[test]
    fn table_shows_the_cost_per_call_where_a_row_measured_it() {
        let mut py = row("mrl-index", "mrl-index-py", 0.96, 2500.0, 10.0, 400);
        py.extra
            .insert("call_overhead_us".into(), serde_json::json!(12.345));
        let rust = row("mrl-index", "cascade", 0.96, 3000.0, 10.0, 400);
        let t = table_markdown(&[py, rust]);
        assert!(t.contains("| µs per call |"), "{t}");
        // the Python row: its measured cost; the Rust bench row has none
        assert!(
            t.contains("| 0.90 | 2500 | 0.9600 | 5000 | — | 12.3 |"),
            "{t}"
        );
        assert!(t.contains("| 0.90 | 3000 | 0.9600 | 6000 | — | — |"), "{t}");
    }

    #[test]
    fn share_table_lists_each_width_and_depth() {
        let mut r = row("mrl-index", "exact-width", 0.5, 10.0, 0.0, 1);
        r.config = serde_json::json!({"width": 64});
        r.n_items = Some(5000);
        r.n_queries = Some(100);
        r.extra.insert(
            "share_of_top10_in_top_k".into(),
            serde_json::json!({"10": 0.25, "1000": 1.0}),
        );
        let t = share_markdown(&[r]);
        assert!(t.contains("| K = 10 | K = 1000 |"), "{t}");
        assert!(t.contains("| d | 5000 | 64 | 100 | 0.250 | 1.000 |"), "{t}");
        assert_eq!(share_markdown(&[]), "");
    }
}
