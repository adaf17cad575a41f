//! Streaming through the query encoder's step interface reproduces the committed reference
//! (`datasets/beauty/fixtures/query_encoder_step_reference.json`, computed by ONNX Runtime
//! from Python) and the window rule: after n items, the step query equals the full encoder's
//! query of the last min(n, 50) items (checked at every n for real histories of 1, 2, 51 and
//! 120 items). An encoder file without the step interface still opens and encodes, and its
//! `step` is a clear error; bad input is an error that leaves the states as they were.
//!
//! Needs the ONNX Runtime library (`bash tools/install-runtime.sh`); without it these tests
//! print why and pass, unless `MRL_REQUIRE_ONNX_RUNTIME=1` (CI), where they fail.

mod beauty;

use beauty::{data, floats, item_vectors, json, max_abs_diff, runtime_present};
use mrl_index::encoder::{EncoderError, QueryEncoder, MAX_HISTORY};
use mrl_index::ingest::MatrixSource;
use mrl_index::progress::NoProgress;
use mrl_index::stream::{StreamError, UserState};
use mrl_index::{Index, IndexBuilder};
use std::path::Path;
use std::sync::OnceLock;

fn reference() -> &'static serde_json::Value {
    static R: OnceLock<serde_json::Value> = OnceLock::new();
    R.get_or_init(|| json("fixtures/query_encoder_step_reference.json"))
}

fn vector(id: u64) -> &'static [f32] {
    let (v, d) = item_vectors();
    &v[(id as usize - 1) * d..id as usize * d]
}

fn histories() -> Vec<Vec<u64>> {
    reference()["item_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            h.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap())
                .collect()
        })
        .collect()
}

#[test]
fn streaming_reproduces_the_reference_and_the_window_rule() {
    if !runtime_present("streaming_reproduces_the_reference_and_the_window_rule") {
        return;
    }
    let r = reference();
    let tol = r["tolerance_max_abs"].as_f64().unwrap() as f32;
    let enc = QueryEncoder::open(&data("query_encoder.onnx")).unwrap();
    assert!(enc.has_step());
    let d = enc.dim();
    let hists = histories();
    let lengths: Vec<usize> = hists.iter().map(Vec::len).collect();
    assert_eq!(lengths, [120, 51, 2, 1]);
    let mut states: Vec<UserState> = hists.iter().map(|_| enc.new_state().unwrap()).collect();
    assert_eq!((states[0].blocks(), states[0].dim()), (2, d));
    let (mut worst_fixture, mut worst_window, mut checkpoints) = (0f32, 0f32, 0);
    for n in 1..=lengths[0] {
        // The users that still have items step together, as a service's batch would.
        let active: Vec<usize> = (0..hists.len()).filter(|&u| lengths[u] >= n).collect();
        let items: Vec<f32> = active
            .iter()
            .flat_map(|&u| vector(hists[u][n - 1]).iter().copied())
            .collect();
        let mut batch: Vec<UserState> = active.iter().map(|&u| states[u].clone()).collect();
        let queries = enc.step(&mut batch, &items).unwrap();
        for (k, &u) in active.iter().enumerate() {
            let q = &queries[k * d..(k + 1) * d];
            states[u] = batch[k].clone();
            assert_eq!(states[u].items(), n as u64);
            // The window rule: the full encoder's query of the last min(n, 50) items.
            let window = &hists[u][n.saturating_sub(MAX_HISTORY)..n];
            let rows: Vec<f32> = window.iter().flat_map(|&id| vector(id).to_vec()).collect();
            let full = enc.encode(&[&rows]).unwrap();
            let diff = max_abs_diff(q, &full);
            assert!(
                diff <= tol,
                "user {u} after {n} items: {diff} from the full encoder"
            );
            worst_window = worst_window.max(diff);
            if let Some(expected) = r["step_queries"][u].get(n.to_string()) {
                let diff = max_abs_diff(q, &floats(expected));
                assert!(
                    diff <= tol,
                    "user {u} after {n} items: {diff} from the fixture"
                );
                worst_fixture = worst_fixture.max(diff);
                checkpoints += 1;
            }
        }
    }
    // Checkpoints 1, 2, 49, 50, 51, 120 of user 0, 1, 2, 49, 50, 51 of user 1, 1, 2 and 1.
    assert_eq!(checkpoints, 6 + 5 + 2 + 1);
    let state: Vec<f32> = r["final_state"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(floats)
        .collect();
    assert!(max_abs_diff(states[0].values(), &state) <= tol);
    eprintln!(
        "max abs diff: {worst_fixture:.2e} from the fixture, {worst_window:.2e} from the full encoder"
    );
    // A state survives its bytes exactly, and streaming on from the decoded one is the same.
    let decoded = UserState::from_bytes(&states[1].to_bytes()).unwrap();
    assert_eq!(decoded, states[1]);
}

#[test]
fn step_by_item_id_reads_the_index() {
    if !runtime_present("step_by_item_id_reads_the_index") {
        return;
    }
    let enc = QueryEncoder::open(&data("query_encoder.onnx")).unwrap();
    let d = enc.dim();
    // A small index of the items of the reference histories, under their item ids.
    let mut ids: Vec<u64> = histories().concat();
    ids.sort_unstable();
    ids.dedup();
    let rows: Vec<f32> = ids.iter().flat_map(|&id| vector(id).to_vec()).collect();
    let dir = tempfile::tempdir().unwrap();
    IndexBuilder::new()
        .build(
            &MatrixSource::new(rows, d).unwrap(),
            Some(&ids),
            dir.path(),
            &NoProgress,
        )
        .unwrap();
    let index = Index::open(dir.path()).unwrap();
    let hist = &histories()[1];
    let mut by_id = vec![enc.new_state().unwrap(), enc.new_state().unwrap()];
    let mut by_vector = by_id.clone();
    for pair in hist.chunks_exact(2).take(10) {
        let q1 = enc.step_ids(&index, &mut by_id, pair).unwrap();
        let items: Vec<f32> = pair.iter().flat_map(|&id| vector(id).to_vec()).collect();
        let q2 = enc.step(&mut by_vector, &items).unwrap();
        assert_eq!(q1, q2);
    }
    assert_eq!(by_id, by_vector);
    // An id that is not in the index: an error, and the states stay as they were.
    let before = by_id.clone();
    let missing = ids.last().unwrap() + 1;
    assert!(matches!(
        enc.step_ids(&index, &mut by_id, &[ids[0], missing]),
        Err(StreamError::Encoder(EncoderError::UnknownItem { id })) if id == missing
    ));
    assert!(matches!(
        enc.step_ids(&index, &mut by_id, &[ids[0]]),
        Err(StreamError::Encoder(EncoderError::DimensionMismatch { .. }))
    ));
    assert_eq!(by_id, before);
}

#[test]
fn bad_input_is_an_error_and_leaves_the_states_alone() {
    if !runtime_present("bad_input_is_an_error_and_leaves_the_states_alone") {
        return;
    }
    let enc = QueryEncoder::open(&data("query_encoder.onnx")).unwrap();
    let d = enc.dim();
    let mut states = vec![enc.new_state().unwrap(), enc.new_state().unwrap()];
    let item = vector(1).to_vec();
    enc.step(&mut states[..1], &item).unwrap();
    let before = states.clone();
    // Wrong number of values for 2 users.
    assert!(matches!(
        enc.step(&mut states, &item),
        Err(StreamError::Encoder(EncoderError::DimensionMismatch { .. }))
    ));
    // A NaN would stay in the state for good.
    let mut two = [item.clone(), item.clone()].concat();
    two[d + 7] = f32::NAN;
    assert!(matches!(
        enc.step(&mut states, &two),
        Err(StreamError::NonFinite {
            user: 1,
            position: 7,
            ..
        })
    ));
    // A state of another shape.
    let mut mixed = vec![states[0].clone(), UserState::new(2, 512).unwrap()];
    assert!(matches!(
        enc.step(&mut mixed, &[item.clone(), item.clone()].concat()),
        Err(StreamError::StateShape {
            user: 1,
            got_dim: 512,
            ..
        })
    ));
    assert_eq!(states, before);
    // No users: nothing to do.
    assert_eq!(enc.step(&mut [], &[]).unwrap(), Vec::<f32>::new());
}

#[test]
fn an_encoder_without_the_step_interface_opens_and_says_so() {
    if !runtime_present("an_encoder_without_the_step_interface_opens_and_says_so") {
        return;
    }
    // A tiny query encoder as exported before the step interface (query = mean of the
    // history), written by tools/encoder/test_step.py --write-legacy.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/query_encoder_no_step.onnx");
    let enc = QueryEncoder::open(&path).unwrap();
    assert_eq!(enc.dim(), 8);
    assert!(!enc.has_step());
    let q = enc
        .encode(&[&[1.0; 8], &[[1.0; 8], [3.0; 8]].concat()])
        .unwrap();
    assert_eq!(q, [[1.0; 8], [2.0; 8]].concat());
    let err = enc.new_state().unwrap_err();
    assert!(matches!(err, StreamError::NoStepInterface { .. }), "{err}");
    let msg = enc.step(&mut [], &[]).unwrap_err().to_string();
    assert!(
        msg.contains("query_encoder_no_step.onnx") && msg.contains("no step interface"),
        "{msg}"
    );
}
