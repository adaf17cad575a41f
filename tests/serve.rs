//! `mrl-index serve` over real HTTP on loopback: every endpoint, every kind of bad request,
//! a reload during concurrent requests, a failed reload, the streamed user state against the
//! re-encoding, the state file across a restart, and SIGTERM draining the binary.
#![cfg(all(feature = "serve", feature = "build"))]

mod beauty;

use beauty::{data, item_vectors, runtime_present};
use mrl_index::encoder::QueryEncoder;
use mrl_index::ingest::MatrixSource;
use mrl_index::progress::NoProgress;
use mrl_index::serve::{serve_until, Limits, ServeOptions, Service};
use mrl_index::synth::MatryoshkaLike;
use mrl_index::{Filter, Index, IndexBuilder, SearchParams};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const DIM: usize = 64;

/// One HTTP/1.1 request with `Connection: close`: (status, body).
fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&[u8]>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let body = body.unwrap_or(b"");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    // A server may answer (413) and close before reading all of a large body.
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

fn post(addr: SocketAddr, path: &str, v: &Value) -> (u16, Value) {
    let (status, body) = http(addr, "POST", path, Some(v.to_string().as_bytes()));
    (
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    http(addr, "GET", path, None)
}

/// A running in-process service: its address, the service and the shutdown trigger.
struct Running {
    addr: SocketAddr,
    service: Arc<Service>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    fn start(options: ServeOptions) -> Running {
        let service = Arc::new(Service::open(&options).unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (tx, rx) = std::sync::mpsc::channel();
        let s = Arc::clone(&service);
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                serve_until(s, listener, async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
            });
        });
        let addr = rx.recv().unwrap();
        Running {
            addr,
            service,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn build_synthetic(dir: &Path, seed: u64, n: usize) -> Vec<f32> {
    let gen = MatryoshkaLike::with_dim(DIM, seed);
    let items = gen.items(n);
    let ids: Vec<u64> = (0..n as u64).map(|i| i * 3 + 1).collect();
    IndexBuilder::new()
        .widths(vec![16, 32, 64])
        .coarse_dim(16)
        .threads(1)
        .overwrite(true)
        .build(
            &MatrixSource::new(items.clone(), DIM).unwrap(),
            Some(&ids),
            dir,
            &NoProgress,
        )
        .unwrap();
    items
}

#[test]
fn search_health_metrics_and_bad_requests() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index");
    build_synthetic(&path, 1, 2000);
    let mut options = ServeOptions::new(&path);
    options.threads = 2;
    options.limits = Limits {
        max_k: 100,
        max_body: 64 << 10,
        ..Limits::default()
    };
    let run = Running::start(options);
    let a = run.addr;
    let index = Index::open(&path).unwrap();
    let queries = MatryoshkaLike::with_dim(DIM, 1).queries(3);
    let q0 = &queries[..DIM];

    assert_eq!(get(a, "/livez"), (200, "ok\n".into()));
    assert_eq!(get(a, "/readyz"), (200, "ready\n".into()));

    // One vector: the library's answer.
    let (status, v) = post(a, "/v1/search", &json!({"vector": q0, "k": 5}));
    assert_eq!(status, 200, "{v}");
    let want = index.search(q0, 5, &SearchParams::default()).unwrap();
    let ids: Vec<u64> = want.iter().map(|h| h.id).collect();
    assert_eq!(v["ids"], json!(ids));
    assert_eq!(v["scores"].as_array().unwrap().len(), 5);
    // A batch, with filters, a width and a plan.
    let vs: Vec<&[f32]> = queries.chunks(DIM).collect();
    let body = json!({"vectors": vs, "k": 4, "exclude": [ids[0]], "width": 32});
    let (status, v) = post(a, "/v1/search", &body);
    assert_eq!(status, 200, "{v}");
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    for (i, r) in results.iter().enumerate() {
        let want = index
            .search_filtered(
                &queries[i * DIM..(i + 1) * DIM],
                4,
                &SearchParams::at_width(32),
                &Filter::deny(&[ids[0]]),
            )
            .unwrap();
        assert_eq!(
            r["ids"],
            json!(want.iter().map(|h| h.id).collect::<Vec<_>>())
        );
    }
    let allow = &ids[1..3];
    let (_, v) = post(
        a,
        "/v1/search",
        &json!({"vector": q0, "k": 5, "allow": allow}),
    );
    assert_eq!(v["ids"], json!(allow));
    let (status, v) = post(
        a,
        "/v1/search",
        &json!({"vector": q0, "plan": "16:50,64:k", "ef": 60}),
    );
    assert_eq!(status, 200, "{v}");

    // Bad requests: 4xx with {"error": ...} naming the field.
    let bad = |body: &[u8], status: u16, needle: &str| {
        let (s, b) = http(a, "POST", "/v1/search", Some(body));
        assert_eq!(s, status, "{b}");
        let v: Value = serde_json::from_str(&b).unwrap_or_else(|_| panic!("not JSON: {b}"));
        let e = v["error"].as_str().unwrap();
        assert!(e.contains(needle), "{needle:?} not in {e:?}");
    };
    bad(b"{\"vector\": [1, 2", 400, "malformed JSON");
    bad(b"not json", 400, "malformed JSON");
    bad(
        json!({"vector": [1.0, 2.0]}).to_string().as_bytes(),
        400,
        "vector: expected 64 values",
    );
    bad(
        json!({"vector": q0, "k": 0}).to_string().as_bytes(),
        400,
        "k: 0 is not between 1 and 100",
    );
    bad(
        json!({"vector": q0, "k": 101}).to_string().as_bytes(),
        400,
        "k: 101",
    );
    bad(
        json!({"vector": q0, "k": -3}).to_string().as_bytes(),
        400,
        "k: invalid value",
    );
    bad(
        json!({"vector": q0, "kk": 3}).to_string().as_bytes(),
        400,
        "unknown field `kk`",
    );
    bad(
        json!({"vector": q0, "plan": "nonsense"})
            .to_string()
            .as_bytes(),
        400,
        "plan: ",
    );
    bad(
        json!({"vector": q0, "plan": "L16:50,64:k"})
            .to_string()
            .as_bytes(),
        400,
        "plan: invalid search plan",
    );
    bad(
        json!({"vector": q0, "width": 1000}).to_string().as_bytes(),
        400,
        "width: width 1000",
    );
    bad(
        json!({"vectors": [q0, [1.0]]}).to_string().as_bytes(),
        400,
        "vectors[1]: expected 64",
    );
    bad(
        json!({"vectors": [q0], "vector": q0})
            .to_string()
            .as_bytes(),
        400,
        "not both",
    );
    bad(
        json!({"k": 3}).to_string().as_bytes(),
        400,
        "vector: missing",
    );
    bad(
        json!({"vector": ["a"]}).to_string().as_bytes(),
        400,
        "vector[0]: invalid type",
    );
    let mut huge = format!("{{\"vector\": [{}", "1e999");
    huge.push_str(&", 0".repeat(DIM - 1));
    huge.push_str("]}");
    bad(
        huge.as_bytes(),
        400,
        "vector[0]: malformed JSON: number out of range",
    );
    bad(&vec![b' '; 100 << 10], 413, "larger than the limit");
    let (s, b) = http(a, "GET", "/v1/search", None);
    assert_eq!(s, 405, "{b}");
    assert!(
        b.contains("\"error\":\"GET /v1/search: method not allowed"),
        "{b}"
    );
    let (s, b) = get(a, "/nowhere");
    assert_eq!(s, 404);
    assert!(b.contains("\"error\""), "{b}");
    // Without an encoder the encoder endpoints say so.
    let (s, v) = post(a, "/v1/recommend", &json!({"history": [1, 4]}));
    assert_eq!(s, 501, "{v}");
    assert!(v["error"].as_str().unwrap().contains("--encoder"));
    let (s, _) = post(a, "/v1/users/u1/events", &json!({"items": [1]}));
    assert_eq!(s, 501);

    // The service still answers after all of that, and counted it.
    let (status, _) = post(a, "/v1/search", &json!({"vector": q0}));
    assert_eq!(status, 200);
    let (s, m) = get(a, "/metrics");
    assert_eq!(s, 200);
    assert!(
        m.contains("mrl_requests_total{endpoint=\"search\",status=\"200\"} 5"),
        "{m}"
    );
    assert!(
        m.contains("mrl_requests_total{endpoint=\"search\",status=\"400\"}"),
        "{m}"
    );
    assert!(
        m.contains("mrl_requests_total{endpoint=\"search\",status=\"413\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("mrl_request_duration_seconds_count{endpoint=\"search\"}"),
        "{m}"
    );
    assert!(
        m.contains(&format!(
            "mrl_index_generation {}",
            index.manifest().generation
        )),
        "{m}"
    );
    assert!(m.contains("mrl_index_items 2000"), "{m}");
    run.stop();
}

#[test]
fn reload_under_concurrent_requests_loses_none_and_a_failed_reload_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index");
    build_synthetic(&path, 2, 1500);
    let before = Index::open(&path).unwrap().manifest().generation;
    let mut options = ServeOptions::new(&path);
    options.threads = 2;
    let run = Running::start(options);
    let a = run.addr;
    let q: Vec<f32> = MatryoshkaLike::with_dim(DIM, 2).queries(1);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, q) = (Arc::clone(&stop), q.clone());
            std::thread::spawn(move || {
                let mut ok = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let (s, v) = post(a, "/v1/search", &json!({"vector": q, "k": 10}));
                    assert_eq!(s, 200, "{v}");
                    assert_eq!(v["ids"].as_array().unwrap().len(), 10);
                    ok += 1;
                }
                ok
            })
        })
        .collect();
    // A new generation (different items) is published while they run, then reloaded.
    std::thread::sleep(Duration::from_millis(200));
    build_synthetic(&path, 3, 1800);
    let (s, v) = post(a, "/admin/reload", &json!({}));
    assert_eq!(s, 200, "{v}");
    let after = v["generation"].as_u64().unwrap();
    assert_ne!(after, before);
    assert_eq!(v["items"], 1800);
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let answered: u64 = clients.into_iter().map(|c| c.join().unwrap()).sum();
    assert!(answered > 8, "{answered}");
    assert_eq!(run.service.metrics().requests_with_status(500), 0);

    // A reload that cannot open the directory keeps the old index and says why.
    let manifest = path.join("MANIFEST");
    let saved = std::fs::read(&manifest).unwrap();
    std::fs::write(&manifest, b"garbage").unwrap();
    let (s, v) = post(a, "/admin/reload", &json!({}));
    assert_eq!(s, 500, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("still serving the old index"),
        "{v}"
    );
    let (s, _) = post(a, "/v1/search", &json!({"vector": q}));
    assert_eq!(s, 200);
    let (_, m) = get(a, "/metrics");
    assert!(m.contains(&format!("mrl_index_generation {after}")), "{m}");
    assert!(m.contains("mrl_reloads_total{result=\"ok\"} 1"), "{m}");
    assert!(m.contains("mrl_reloads_total{result=\"failed\"} 1"), "{m}");
    std::fs::write(&manifest, saved).unwrap();

    // A live change (an add replacing one item, a delete) is served after a reload: the
    // replaced item answers with its new vector, the deleted one never.
    let new_vec: Vec<f32> = q.iter().map(|x| x * 100.0).collect();
    let mut w = mrl_index::writer::IndexWriter::open(&path).unwrap();
    w.add(&MatrixSource::new(new_vec, DIM).unwrap(), Some(&[4]), true)
        .unwrap();
    w.delete(&[7], false).unwrap();
    drop(w);
    let (s, v) = post(a, "/admin/reload", &json!({}));
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["items"].as_u64(), v["delta_segments"].as_u64()),
        (Some(1799), Some(1))
    );
    assert_eq!(v["deleted"], 2);
    let (s, v) = post(a, "/v1/search", &json!({"vector": q, "k": 50}));
    assert_eq!(s, 200, "{v}");
    let ids: Vec<u64> = v["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    assert_eq!(ids[0], 4, "{v}");
    assert!(!ids.contains(&7));
    run.stop();
}

#[test]
#[cfg(feature = "cli")]
fn sigterm_drains_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index");
    build_synthetic(&path, 4, 500);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mrl-index"))
        .args(["serve", "--index"])
        .arg(&path)
        .args(["--addr", "127.0.0.1:0", "--threads", "1"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let addr: SocketAddr = first
        .split("http://")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .unwrap()
        .parse()
        .unwrap();
    // Ready once the index is open.
    let mut ready = false;
    for _ in 0..300 {
        let (s, _) = get(addr, "/readyz");
        if s == 200 {
            ready = true;
            break;
        }
        assert_eq!(s, 503);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(ready);
    let q = MatryoshkaLike::with_dim(DIM, 4).queries(1);
    let (s, _) = post(addr, "/v1/search", &json!({"vector": q}));
    assert_eq!(s, 200);
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert_eq!(exit.code(), Some(0), "{exit:?}");
}

// ---- with the query encoder (needs ONNX Runtime)

/// The first 3,000 Beauty items (P5 ids 1..=3000) through the item encoder, indexed.
fn beauty_index(dir: &Path) {
    let (vectors, d) = item_vectors();
    let ids: Vec<u64> = (1..=3000).collect();
    IndexBuilder::new()
        .threads(2)
        .build(
            &MatrixSource::new(vectors[..3000 * d].to_vec(), *d).unwrap(),
            Some(&ids),
            dir,
            &NoProgress,
        )
        .unwrap();
}

#[test]
fn streamed_users_answer_as_the_re_encoding_and_survive_a_restart() {
    if !runtime_present("streamed_users_answer_as_the_re_encoding_and_survive_a_restart") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index");
    beauty_index(&path);
    let state_file = dir.path().join("users.state");
    let mut options = ServeOptions::new(&path);
    options.encoder = Some(data("query_encoder.onnx"));
    options.threads = 2;
    options.max_users = 2;
    options.state_file = Some(state_file.clone());
    let run = Running::start(options.clone());
    let a = run.addr;
    let index = Index::open(&path).unwrap();
    let encoder = QueryEncoder::open(&data("query_encoder.onnx")).unwrap();

    // /v1/recommend is the library's recommendation, history excluded.
    let history: Vec<u64> = vec![12, 7, 301, 2999, 45, 1000, 88];
    let (s, v) = post(a, "/v1/recommend", &json!({"history": history, "k": 10}));
    assert_eq!(s, 200, "{v}");
    let want = encoder
        .recommend(&index, &history, 10, &SearchParams::default(), false)
        .unwrap();
    assert_eq!(
        v["ids"],
        json!(want.iter().map(|h| h.id).collect::<Vec<_>>())
    );
    let (s, v) = post(a, "/v1/recommend", &json!({"history": [1, 99999]}));
    assert_eq!(s, 400);
    assert!(v["error"].as_str().unwrap().contains("99999"), "{v}");
    let (s, v) = post(a, "/v1/recommend", &json!({"history": []}));
    assert_eq!(s, 400, "{v}");

    // Streaming: events in three requests, then recommendations equal /v1/recommend with
    // the whole history (longer than the encoder's 50-item window).
    let long: Vec<u64> = (0..64u64).map(|i| (i * 37) % 3000 + 1).collect();
    let mut seen = 0;
    for part in [&long[..1], &long[1..40], &long[40..]] {
        let (s, v) = post(a, "/v1/users/alice/events", &json!({"items": part}));
        assert_eq!(s, 200, "{v}");
        seen += part.len() as u64;
        assert_eq!(v["items_seen"], seen);
    }
    let (s, body) = get(a, "/v1/users/alice/recommendations?k=10");
    assert_eq!(s, 200, "{body}");
    let streamed: Value = serde_json::from_str(&body).unwrap();
    let (_, full) = post(a, "/v1/recommend", &json!({"history": long, "k": 10}));
    assert_eq!(streamed["ids"], full["ids"]);
    for (x, y) in streamed["scores"]
        .as_array()
        .unwrap()
        .iter()
        .zip(full["scores"].as_array().unwrap())
    {
        assert!((x.as_f64().unwrap() - y.as_f64().unwrap()).abs() < 1e-3);
    }
    // An unknown item is refused and changes nothing; an unknown user is 404; k is checked.
    let (s, v) = post(a, "/v1/users/alice/events", &json!({"items": [5, 123456]}));
    assert_eq!(s, 400);
    assert!(v["error"].as_str().unwrap().contains("123456"), "{v}");
    let (_, again) = get(a, "/v1/users/alice/recommendations?k=10");
    assert_eq!(
        serde_json::from_str::<Value>(&again).unwrap()["ids"],
        streamed["ids"]
    );
    assert_eq!(get(a, "/v1/users/nobody/recommendations").0, 404);
    assert_eq!(get(a, "/v1/users/alice/recommendations?k=0").0, 400);
    assert_eq!(get(a, "/v1/users/alice/recommendations?k=x").0, 400);
    // At most two users: a third evicts the least recently used (bob, not alice).
    post(a, "/v1/users/bob/events", &json!({"items": [3]}));
    get(a, "/v1/users/alice/recommendations");
    post(a, "/v1/users/carol/events", &json!({"items": [4, 5]}));
    assert_eq!(get(a, "/v1/users/bob/recommendations").0, 404);
    let (_, m) = get(a, "/metrics");
    assert!(m.contains("mrl_user_states 2"), "{m}");
    assert!(m.contains("mrl_user_states_evicted_total 1"), "{m}");
    run.stop();

    // The state file saved at shutdown brings alice back.
    assert!(state_file.is_file());
    let run = Running::start(options);
    let (s, body) = get(run.addr, "/v1/users/alice/recommendations?k=10");
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["ids"],
        streamed["ids"]
    );
    let (s, v) = post(run.addr, "/v1/users/alice/events", &json!({"items": [9]}));
    assert_eq!(s, 200);
    assert_eq!(v["items_seen"], 65);
    run.stop();
}
