//! One benchmark result: the row schema shared with the Python peer scripts, and reading and
//! writing rows as JSON arrays, JSON lines and CSV.

use super::BenchError;
use crate::atomic::write_atomic;
use crate::Error;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use std::path::Path;

/// One configuration's measurements, in the schema shared by every system's benchmark
/// scripts (one JSON object per configuration).
///
/// Rows written by other systems may lack the optional fields (read as `None`) and may carry
/// fields this schema does not name: those are kept in [`Row::extra`] and written back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// The system measured (`"mrl-index"` for ours).
    pub system: String,
    /// The sweep the configuration belongs to (`exact-width`, `coarse-graph`, `cascade`, or
    /// a peer's own family name).
    pub family: String,
    /// The configuration's parameters (for ours: `plan`, `ef`, `width`, ...).
    #[serde(default = "empty_object")]
    pub config: Value,
    /// A short human-readable name of the configuration.
    #[serde(default)]
    pub label: String,
    /// The data set's name.
    #[serde(default)]
    pub dataset: String,
    /// Items in the index.
    #[serde(default, deserialize_with = "lenient_count")]
    pub n_items: Option<u64>,
    /// Full dimension of the vectors.
    #[serde(default, deserialize_with = "lenient_count")]
    pub dim: Option<u64>,
    /// Queries measured.
    #[serde(default, deserialize_with = "lenient_count")]
    pub n_queries: Option<u64>,
    /// Results asked for per query in the timed passes.
    #[serde(default, deserialize_with = "lenient_count")]
    pub k: Option<u64>,
    /// Mean recall@1 against the exact full-width top-1.
    #[serde(default)]
    pub recall_at_1: Option<f64>,
    /// Mean recall@10 against the exact full-width top-10.
    #[serde(default)]
    pub recall_at_10: Option<f64>,
    /// Mean recall@100 against the exact full-width top-100 (an untimed pass asking for 100
    /// results), `None` where not measured.
    #[serde(default)]
    pub recall_at_100: Option<f64>,
    /// Queries per second, one thread, one query at a time (best of the timed passes).
    #[serde(default)]
    pub qps_1_thread: Option<f64>,
    /// Queries per second of a batch on `threads_all` threads (best of the timed passes).
    #[serde(default)]
    pub qps_all_threads: Option<f64>,
    /// Threads of the all-threads measurement.
    #[serde(default, deserialize_with = "lenient_count")]
    pub threads_all: Option<u64>,
    /// Median latency in microseconds (one-thread loop).
    #[serde(default)]
    pub p50_us: Option<f64>,
    /// 95th-percentile latency in microseconds (one-thread loop).
    #[serde(default)]
    pub p95_us: Option<f64>,
    /// 99th-percentile latency in microseconds (one-thread loop).
    #[serde(default)]
    pub p99_us: Option<f64>,
    /// Candidates scored per query (rows scored at the coarse width plus candidate
    /// extensions of the later stages; `n` for exact search).
    #[serde(default)]
    pub candidates_per_query: Option<f64>,
    /// Multiply-adds per query in all dot products.
    #[serde(default)]
    pub mult_adds_per_query: Option<f64>,
    /// Seconds to build what the configuration searches (the coarse graph's build time for
    /// ours; `None` for flat exact search).
    #[serde(default)]
    pub build_seconds: Option<f64>,
    /// Bytes of the index files the configuration reads.
    #[serde(default, deserialize_with = "lenient_count")]
    pub index_bytes: Option<u64>,
    /// Resident set size of the benchmark process after warm-up.
    #[serde(default, deserialize_with = "lenient_count")]
    pub rss_bytes: Option<u64>,
    /// CPU model and core count.
    #[serde(default)]
    pub machine: String,
    /// When the row was measured, ISO 8601 UTC.
    #[serde(default)]
    pub timestamp: String,
    /// Fields outside the schema, kept as they were read.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn empty_object() -> Value {
    Value::Object(Map::new())
}

/// Accepts an integer, a float with an integral value (Python writes `100000.0` at times) or
/// null.
fn lenient_count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let v = Option::<Value>::deserialize(d)?;
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(u) = n.as_u64() {
                Ok(Some(u))
            } else if let Some(f) = n.as_f64().filter(|f| *f >= 0.0 && f.fract() == 0.0) {
                Ok(Some(f as u64))
            } else {
                Err(serde::de::Error::custom(format!(
                    "expected a non-negative integer, found {n}"
                )))
            }
        }
        Some(other) => Err(serde::de::Error::custom(format!(
            "expected a non-negative integer or null, found {other}"
        ))),
    }
}

impl Row {
    /// The `system / family` name a plot's legend and the comparison table use.
    pub fn series(&self) -> String {
        format!("{} / {}", self.system, self.family)
    }

    /// The configuration as one line: the label, or the config object when there is none.
    pub fn config_text(&self) -> String {
        if !self.label.is_empty() {
            self.label.clone()
        } else {
            self.config.to_string()
        }
    }
}

/// Writes rows as a JSON array, or as JSON lines (one object per line) when `path` ends in
/// `.jsonl`. Atomic: a failed write leaves no partial file.
pub fn write_rows_json(path: &Path, rows: &[Row]) -> Result<(), Error> {
    let text = if is_jsonl(path) {
        let mut s = String::new();
        for r in rows {
            s.push_str(&serde_json::to_string(r).map_err(|e| json_err(path, e))?);
            s.push('\n');
        }
        s
    } else {
        let mut s = serde_json::to_string_pretty(rows).map_err(|e| json_err(path, e))?;
        s.push('\n');
        s
    };
    write_atomic(path, text.as_bytes()).map_err(|e| io_err(path, e))
}

fn is_jsonl(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("jsonl"))
}

fn json_err(path: &Path, e: serde_json::Error) -> Error {
    BenchError::json(path, "rows", e).into()
}

pub(crate) fn io_err(path: &Path, e: std::io::Error) -> Error {
    BenchError::io(path, e).into()
}

/// Reads rows from a JSON array of row objects, or from JSON lines (one object per line;
/// blank lines skipped). Errors name the file and the row or line at fault.
pub fn read_rows(path: &Path) -> Result<Vec<Row>, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| io_err(path, e))?;
    let trimmed = text.trim_start();
    if trimmed.is_empty() {
        return Err(BenchError::BadFile {
            path: path.to_path_buf(),
            reason: "empty file; expected a JSON array of rows or JSON lines".into(),
        }
        .into());
    }
    if trimmed.starts_with('[') {
        let values: Vec<Value> = serde_json::from_str(&text)
            .map_err(|e| BenchError::json(path, "not a JSON array of rows", e))?;
        values
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                serde_json::from_value(v)
                    .map_err(|e| BenchError::json(path, format!("row {i}"), e).into())
            })
            .collect()
    } else {
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str(l)
                    .map_err(|e| BenchError::json(path, format!("line {}", i + 1), e).into())
            })
            .collect()
    }
}

/// The fixed CSV columns, in order; `config.<key>` columns (the union of the rows' config
/// keys, sorted) and then any extra fields follow.
pub const CSV_COLUMNS: [&str; 25] = [
    "system",
    "family",
    "label",
    "dataset",
    "n_items",
    "dim",
    "n_queries",
    "k",
    "recall_at_1",
    "recall_at_10",
    "recall_at_100",
    "qps_1_thread",
    "qps_all_threads",
    "threads_all",
    "p50_us",
    "p95_us",
    "p99_us",
    "candidates_per_query",
    "mult_adds_per_query",
    "build_seconds",
    "index_bytes",
    "rss_bytes",
    "machine",
    "timestamp",
    "config",
];

/// The rows flattened to CSV: one header line, one line per row. Nested `config` values are
/// spread over `config.<key>` columns; the `config` column holds the whole object as JSON.
pub fn rows_to_csv(rows: &[Row]) -> String {
    let mut config_keys: Vec<String> = rows
        .iter()
        .filter_map(|r| r.config.as_object())
        .flat_map(|m| m.keys().cloned())
        .collect();
    config_keys.sort();
    config_keys.dedup();
    let mut extra_keys: Vec<String> = rows.iter().flat_map(|r| r.extra.keys().cloned()).collect();
    extra_keys.sort();
    extra_keys.dedup();

    let mut header: Vec<String> = CSV_COLUMNS.iter().map(|s| s.to_string()).collect();
    header.extend(config_keys.iter().map(|k| format!("config.{k}")));
    header.extend(extra_keys.iter().cloned());
    let mut out = String::new();
    push_line(&mut out, header.iter().map(String::as_str));

    let num = |v: Option<f64>| v.map(fmt_f64).unwrap_or_default();
    let int = |v: Option<u64>| v.map(|x| x.to_string()).unwrap_or_default();
    for r in rows {
        let mut cells: Vec<String> = vec![
            r.system.clone(),
            r.family.clone(),
            r.label.clone(),
            r.dataset.clone(),
            int(r.n_items),
            int(r.dim),
            int(r.n_queries),
            int(r.k),
            num(r.recall_at_1),
            num(r.recall_at_10),
            num(r.recall_at_100),
            num(r.qps_1_thread),
            num(r.qps_all_threads),
            int(r.threads_all),
            num(r.p50_us),
            num(r.p95_us),
            num(r.p99_us),
            num(r.candidates_per_query),
            num(r.mult_adds_per_query),
            num(r.build_seconds),
            int(r.index_bytes),
            int(r.rss_bytes),
            r.machine.clone(),
            r.timestamp.clone(),
            r.config.to_string(),
        ];
        for k in &config_keys {
            cells.push(match r.config.get(k) {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
            });
        }
        for k in &extra_keys {
            cells.push(match r.extra.get(k) {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
            });
        }
        push_line(&mut out, cells.iter().map(String::as_str));
    }
    out
}

fn fmt_f64(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        String::new()
    }
}

fn push_line<'a>(out: &mut String, cells: impl Iterator<Item = &'a str>) {
    for (i, c) in cells.enumerate() {
        if i > 0 {
            out.push(',');
        }
        if c.contains([',', '"', '\n', '\r']) {
            out.push('"');
            out.push_str(&c.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(c);
        }
    }
    out.push('\n');
}

/// Writes [`rows_to_csv`] to `path` atomically.
pub fn write_rows_csv(path: &Path, rows: &[Row]) -> Result<(), Error> {
    write_atomic(path, rows_to_csv(rows).as_bytes()).map_err(|e| io_err(path, e))
}

/// The CPU model (from `/proc/cpuinfo`) and the number of cores this process may use, e.g.
/// `"AMD EPYC 7B13, 2 cores"`.
pub fn machine_description() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name") || l.starts_with("Model"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{model}, {cores} cores")
}

/// The current time as ISO 8601 UTC with second precision, e.g. `2026-11-22T13:05:09Z`.
pub fn timestamp_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    iso8601_utc(secs)
}

/// Formats seconds since the Unix epoch as ISO 8601 UTC.
pub fn iso8601_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// VmRSS of this process in bytes, from `/proc/self/status` (`None` where unavailable).
pub fn rss_bytes() -> Option<u64> {
    proc_status_bytes("VmRSS")
}

/// A `kB` field of `/proc/self/status` in bytes (`VmRSS`, `RssAnon`, `RssFile`, `VmHWM`),
/// `None` where unavailable. `RssAnon` is heap and stacks; `RssFile` counts the mapped
/// index pages this process has touched, which the kernel may drop and re-read.
pub fn proc_status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status
        .lines()
        .find(|l| l.split(':').next() == Some(field))?;
    let kb: u64 = line
        .split(':')
        .nth(1)?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates() {
        assert_eq!(iso8601_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601_utc(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(iso8601_utc(4_102_444_799), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn rows_round_trip_and_keep_extra_fields() {
        let text = r#"{"system":"faiss","family":"hnsw","config":{"M":32,"efSearch":64},
            "label":"","dataset":"d","n_items":1000.0,"dim":64,"n_queries":10,"k":10,
            "recall_at_1":1.0,"recall_at_10":0.9,"qps_1_thread":1234.5,"machine":"m",
            "timestamp":"t","library_version":"1.8"}"#;
        let r: Row = serde_json::from_str(text).unwrap();
        assert_eq!(r.n_items, Some(1000));
        assert_eq!(r.recall_at_100, None);
        assert_eq!(r.extra["library_version"], "1.8");
        let back: Row = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        let csv = rows_to_csv(&[r]);
        let mut lines = csv.lines();
        let header = lines.next().unwrap();
        assert!(header.ends_with("config.M,config.efSearch,library_version"));
        assert!(lines.next().unwrap().ends_with(",32,64,1.8"));
    }
}
