//! Streaming user state: a user's query carried forward one interaction at a time.
//!
//! The query encoder's core is a linear recurrence (an LRU) in each of its two blocks,
//! `h_t = λ⊙h_{t−1} + γ⊙(B x_t)` (complex, `λ = exp(−ν+iθ)`), followed by per-position
//! layers. So a user's state — each block's `h`, real and imaginary parts — carries
//! everything the encoder needs from the history, and one new item updates it and gives the
//! new query at a cost that does not grow with the history:
//!
//! ```text
//! UserState (h of every block) + new item vector ──► QueryEncoder::step ──► query, UserState′
//! ```
//!
//! `query_encoder.onnx` holds this as a second interface on the same weights: `item [N, D]`
//! and `state_b{i}_re`, `state_b{i}_im [N, D]` for each block `i` in; `step_query [N, D]` and
//! `next_state_b{i}_re`, `next_state_b{i}_im [N, D]` out (see `datasets/README.md`).
//! [`QueryEncoder::open`] detects it; a file exported before it still opens and encodes, and
//! its [`QueryEncoder::step`] returns [`StreamError::NoStepInterface`].
//!
//! **The window rule.** [`QueryEncoder::encode`] keeps a history's last
//! [`MAX_HISTORY`](crate::encoder::MAX_HISTORY) = 50 items; a streamed state keeps every item,
//! with weight `|λ|^k` for an item `k` steps back. The committed model's LRUs have max `|λ|` =
//! 0.1836 (block 0; block 1: 0.1795), so an item 50 steps back weighs `|λ|^50` < 2·10⁻³⁷, and
//! through both blocks at most about `50·|λ|^50` ≈ 8·10⁻³⁶, far below float32 resolution
//! (≈6·10⁻⁸ relative). Hence the rule: **the query after streaming n items equals the full
//! encoder's query of the last min(n, 50) of them**, within float rounding (≤ 1e-4 tested,
//! 1.2e-6 measured over 470 (user, n) pairs of 32 real Beauty users with up to 203 items). A
//! state needs no window of past items: it is the `h` vectors and a count of the items
//! streamed ([`UserState::items`], for bookkeeping only). The rule rests on the trained
//! `|λ|`; `tools/encoder/test_step.py` fails if a re-trained model's `|λ|^50` is not tiny.
//!
//! A fresh state (all zeros, [`QueryEncoder::new_state`]) is a user with no history: its
//! first step gives the full encoder's query of that one item.
//!
//! ```no_run
//! use mrl_index::encoder::QueryEncoder;
//! use mrl_index::stream::UserState;
//! use mrl_index::{Index, SearchParams};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let index = Index::open("beauty-index")?;
//! let enc = QueryEncoder::open("datasets/beauty/query_encoder.onnx".as_ref())?;
//! // Two users with no history yet; one interaction each arrives, stepped as one batch.
//! let mut states = vec![enc.new_state()?, enc.new_state()?];
//! let queries = enc.step_ids(&index, &mut states, &[12, 57])?; // users × dim
//! let hits = index.search(&queries[..enc.dim()], 10, &SearchParams::default())?;
//! // Keep a state between sessions (16,416 bytes for the Beauty model).
//! let bytes = states[0].to_bytes();
//! assert_eq!(UserState::from_bytes(&bytes)?, states[0]);
//! # let _ = hits;
//! # Ok(())
//! # }
//! ```
//!
//! **Cost.** One step for one user against re-encoding a 50-item history, measured in one
//! run: `cargo run --release --example stream_cost`, results in `docs/streaming.md`.
//!
//! **State bytes** ([`UserState::to_bytes`], [`UserState::from_bytes`]), all little-endian:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `MRLUSTAT` |
//! | 8 | 4 | u32 format version, 1 |
//! | 12 | 4 | u32 blocks (≥ 1) |
//! | 16 | 4 | u32 dim (≥ 1) |
//! | 20 | 8 | u64 items streamed |
//! | 28 | 4·blocks·2·dim | f32 values, block-major: block 0 re, block 0 im, block 1 re, … |
//! | end − 4 | 4 | u32 CRC-32 (IEEE) of every byte before it |
//!
//! For the Beauty model (2 blocks, 1024 dims) a state is 16,416 bytes. Decoding refuses a
//! wrong magic, version or length, a bad checksum, a non-finite value and trailing bytes.

use crate::encoder::{EncoderError, QueryEncoder};
use crate::index::Index;
use ort::session::{Session, SessionInputValue};
use ort::value::Tensor;
use std::borrow::Cow;
use std::path::{Path, PathBuf};

/// The magic bytes that start an encoded [`UserState`].
pub const STATE_MAGIC: [u8; 8] = *b"MRLUSTAT";
/// The format version of an encoded [`UserState`].
pub const STATE_VERSION: u32 = 1;
/// The most float values a [`UserState`] may hold (2²⁶, 256 MiB): a bound for decoding.
pub const MAX_STATE_VALUES: usize = 1 << 26;
const HEADER: usize = 28;

/// Errors of streaming: the step interface, user states and their bytes.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The query encoder file has no (usable) step interface.
    #[error("{}: the query encoder has no step interface ({reason}); re-export it with `tools/encoder/export_onnx.py --from-onnx DIR`", path.display())]
    NoStepInterface {
        /// The model file.
        path: PathBuf,
        /// What is missing.
        reason: String,
    },
    /// A user state whose shape is not the encoder's.
    #[error("user state {user}: {got_blocks} blocks of {got_dim} dims, but the encoder carries {blocks} blocks of {dim}")]
    StateShape {
        /// The state's position in the batch.
        user: usize,
        /// The encoder's blocks.
        blocks: usize,
        /// The encoder's dimension.
        dim: usize,
        /// The state's blocks.
        got_blocks: usize,
        /// The state's dimension.
        got_dim: usize,
    },
    /// A NaN or infinite value where only finite ones may go: it would stay in the state for
    /// good.
    #[error("{what} of user {user}: non-finite value at position {position}")]
    NonFinite {
        /// Which input or output.
        what: &'static str,
        /// The user's position in the batch.
        user: usize,
        /// The value's position in that user's vector.
        position: usize,
    },
    /// Bytes or parts that are not a valid user state.
    #[error("not a valid user state: {0}")]
    BadState(String),
    /// Running the encoder, or reading item vectors from the index, failed.
    #[error(transparent)]
    Encoder(#[from] EncoderError),
}

/// One user's streaming state: each block's LRU state `h` (real and imaginary parts) after
/// the items streamed so far, and how many items that was.
///
/// Plain data: [`values`](Self::values) is `blocks × 2 × dim` floats, block-major (block 0
/// re, block 0 im, block 1 re, …). All values are finite.
#[derive(Debug, Clone, PartialEq)]
pub struct UserState {
    items: u64,
    blocks: usize,
    dim: usize,
    values: Vec<f32>,
}

fn state_len(blocks: usize, dim: usize) -> Result<usize, StreamError> {
    if blocks == 0 || dim == 0 {
        return Err(StreamError::BadState(format!(
            "{blocks} blocks of {dim} dims: both must be at least 1"
        )));
    }
    blocks
        .checked_mul(2)
        .and_then(|v| v.checked_mul(dim))
        .filter(|&n| n <= MAX_STATE_VALUES)
        .ok_or_else(|| {
            StreamError::BadState(format!(
                "{blocks} blocks of {dim} dims exceed {MAX_STATE_VALUES} values"
            ))
        })
}

fn first_non_finite(v: &[f32]) -> Option<usize> {
    v.iter().position(|x| !x.is_finite())
}

impl UserState {
    /// A user with no history: zero state, zero items.
    pub fn new(blocks: usize, dim: usize) -> Result<UserState, StreamError> {
        let n = state_len(blocks, dim)?;
        Ok(UserState {
            items: 0,
            blocks,
            dim,
            values: vec![0.0; n],
        })
    }

    /// A state from its parts (the layout of [`values`](Self::values)); refuses a length
    /// that is not `blocks × 2 × dim` and non-finite values.
    pub fn from_parts(
        items: u64,
        blocks: usize,
        dim: usize,
        values: Vec<f32>,
    ) -> Result<UserState, StreamError> {
        let n = state_len(blocks, dim)?;
        if values.len() != n {
            return Err(StreamError::BadState(format!(
                "{} values for {blocks} blocks of {dim} dims (expected {n})",
                values.len()
            )));
        }
        if let Some(i) = first_non_finite(&values) {
            return Err(StreamError::BadState(format!("value {i} is not finite")));
        }
        Ok(UserState {
            items,
            blocks,
            dim,
            values,
        })
    }

    /// How many items were streamed into this state (all of them; the window rule in the
    /// module documentation says why no window is kept).
    pub fn items(&self) -> u64 {
        self.items
    }

    /// Number of blocks (LRU states).
    pub fn blocks(&self) -> usize {
        self.blocks
    }

    /// Dimension of each block's state.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// All values, `blocks × 2 × dim`, block-major: block 0 re, block 0 im, block 1 re, ….
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// Block `b`'s state as (real, imaginary) parts; `None` past the last block.
    pub fn block(&self, b: usize) -> Option<(&[f32], &[f32])> {
        if b >= self.blocks {
            return None;
        }
        let d = self.dim;
        let s = &self.values[2 * b * d..2 * (b + 1) * d];
        Some(s.split_at(d))
    }

    /// Length of [`to_bytes`](Self::to_bytes)'s output.
    pub fn encoded_len(&self) -> usize {
        HEADER + 4 * self.values.len() + 4
    }

    /// The state as little-endian bytes (format in the module documentation).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(&STATE_MAGIC);
        out.extend_from_slice(&STATE_VERSION.to_le_bytes());
        // state_len bounds blocks and dim by MAX_STATE_VALUES < 2^32.
        out.extend_from_slice(&(self.blocks as u32).to_le_bytes());
        out.extend_from_slice(&(self.dim as u32).to_le_bytes());
        out.extend_from_slice(&self.items.to_le_bytes());
        for v in &self.values {
            out.extend_from_slice(&v.to_le_bytes());
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes [`to_bytes`](Self::to_bytes)'s output; `bytes` must be exactly one state.
    pub fn from_bytes(bytes: &[u8]) -> Result<UserState, StreamError> {
        let bad = |m: String| StreamError::BadState(m);
        if bytes.len() < HEADER + 4 {
            return Err(bad(format!(
                "{} bytes, shorter than the {}-byte header and checksum",
                bytes.len(),
                HEADER + 4
            )));
        }
        if bytes[..8] != STATE_MAGIC {
            return Err(bad("wrong magic (not a user state)".into()));
        }
        let u32_at =
            |o: usize| u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
        let version = u32_at(8);
        if version != STATE_VERSION {
            return Err(bad(format!(
                "format version {version}, this library reads {STATE_VERSION}"
            )));
        }
        let (blocks, dim) = (u32_at(12) as usize, u32_at(16) as usize);
        let n = state_len(blocks, dim)?;
        let expected = HEADER + 4 * n + 4;
        if bytes.len() != expected {
            return Err(bad(format!(
                "{} bytes, but {blocks} blocks of {dim} dims take {expected}",
                bytes.len()
            )));
        }
        let body = &bytes[..expected - 4];
        if crc32fast::hash(body) != u32_at(expected - 4) {
            return Err(bad("checksum mismatch (corrupt bytes)".into()));
        }
        let mut items = [0u8; 8];
        items.copy_from_slice(&bytes[20..28]);
        let values: Vec<f32> = body[HEADER..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        UserState::from_parts(u64::from_le_bytes(items), blocks, dim, values)
    }
}

/// Names of one block's state tensors in the step interface.
#[derive(Debug, Clone)]
pub(crate) struct BlockNames {
    input: [String; 2],
    output: [String; 2],
}

/// Whether a query encoder file has the step interface, as [`QueryEncoder::open`] found it.
#[derive(Debug, Clone)]
pub(crate) enum StepInterface {
    /// It has: the state tensors of each block.
    Present { blocks: Vec<BlockNames> },
    /// It has not (an older file), or not completely.
    Absent { path: PathBuf, reason: String },
}

impl StepInterface {
    /// Reads the session's inputs (required or with defaults) and outputs: `item`,
    /// `step_query` and `state_b{i}_{re,im}` / `next_state_b{i}_{re,im}` for blocks
    /// `0..n`, every one `[·, dim]`.
    pub(crate) fn detect(session: &Session, path: &Path, dim: usize) -> StepInterface {
        let absent = |reason: String| StepInterface::Absent {
            path: path.to_path_buf(),
            reason,
        };
        let last = |t: &ort::value::ValueType| t.tensor_shape().and_then(|s| s.last().copied());
        let mut inputs: Vec<(String, Option<i64>)> = session
            .inputs()
            .iter()
            .map(|o| (o.name().to_string(), last(o.dtype())))
            .collect();
        inputs.extend(
            session
                .overridable_initializers()
                .iter()
                .map(|o| (o.name().to_string(), last(o.dtype()))),
        );
        let outputs: Vec<(String, Option<i64>)> = session
            .outputs()
            .iter()
            .map(|o| (o.name().to_string(), last(o.dtype())))
            .collect();
        let check = |list: &[(String, Option<i64>)], name: &str, kind: &str| match list
            .iter()
            .find(|(n, _)| n == name)
        {
            None => Err(format!("no {kind} named {name:?}")),
            Some((_, d)) if *d != Some(dim as i64) => {
                Err(format!("{kind} {name:?} is not [·, {dim}]"))
            }
            Some(_) => Ok(()),
        };
        let mut blocks = Vec::new();
        let result = (|| {
            check(&inputs, "item", "input")?;
            check(&outputs, "step_query", "output")?;
            while outputs
                .iter()
                .any(|(n, _)| n == &format!("next_state_b{}_re", blocks.len()))
            {
                let i = blocks.len();
                let b = BlockNames {
                    input: [format!("state_b{i}_re"), format!("state_b{i}_im")],
                    output: [format!("next_state_b{i}_re"), format!("next_state_b{i}_im")],
                };
                for name in &b.input {
                    check(&inputs, name, "input")?;
                }
                for name in &b.output {
                    check(&outputs, name, "output")?;
                }
                blocks.push(b);
            }
            if blocks.is_empty() {
                return Err("no output named \"next_state_b0_re\"".to_string());
            }
            Ok(())
        })();
        match result {
            Ok(()) => StepInterface::Present { blocks },
            Err(reason) => absent(reason),
        }
    }
}

fn run_err(e: impl std::fmt::Display) -> StreamError {
    StreamError::Encoder(EncoderError::Run(e.to_string()))
}

impl QueryEncoder {
    /// Whether the model file has the step interface.
    pub fn has_step(&self) -> bool {
        matches!(self.step, StepInterface::Present { .. })
    }

    fn step_blocks(&self) -> Result<&[BlockNames], StreamError> {
        match &self.step {
            StepInterface::Present { blocks } => Ok(blocks),
            StepInterface::Absent { path, reason } => Err(StreamError::NoStepInterface {
                path: path.clone(),
                reason: reason.clone(),
            }),
        }
    }

    /// A state for a user with no history, shaped for this encoder.
    pub fn new_state(&self) -> Result<UserState, StreamError> {
        UserState::new(self.step_blocks()?.len(), self.dim())
    }

    /// Streams one new item into each user's state: `items` is `states.len() × D` item
    /// vectors, row-major (row u is user u's new item). Returns the users' new queries
    /// (`states.len() × D`, the same as [`encode`](Self::encode) of each user's last 50
    /// items, see the module documentation) and advances the states, all of them or, on an
    /// error, none.
    pub fn step(&self, states: &mut [UserState], items: &[f32]) -> Result<Vec<f32>, StreamError> {
        let blocks = self.step_blocks()?;
        let d = self.dim();
        let b = states.len();
        if items.len() != b * d {
            return Err(EncoderError::DimensionMismatch {
                what: "step item vectors (users × dim)",
                expected: b * d,
                got: items.len(),
            }
            .into());
        }
        for (u, s) in states.iter().enumerate() {
            if s.blocks != blocks.len() || s.dim != d {
                return Err(StreamError::StateShape {
                    user: u,
                    blocks: blocks.len(),
                    dim: d,
                    got_blocks: s.blocks,
                    got_dim: s.dim,
                });
            }
        }
        for (u, row) in items.chunks_exact(d).enumerate() {
            if let Some(position) = first_non_finite(row) {
                return Err(StreamError::NonFinite {
                    what: "item vector",
                    user: u,
                    position,
                });
            }
        }
        if b == 0 {
            return Ok(Vec::new());
        }
        let tensor = |shape: [usize; 2],
                      data: Vec<f32>|
         -> Result<SessionInputValue<'static>, StreamError> {
            Ok(Tensor::from_array((shape, data)).map_err(run_err)?.into())
        };
        let mut inputs: Vec<(Cow<'_, str>, SessionInputValue<'static>)> = vec![
            // The full interface's inputs, empty: it runs on no users.
            (
                "history".into(),
                Tensor::from_array(([0usize, 1, d], Vec::<f32>::new()))
                    .map_err(run_err)?
                    .into(),
            ),
            (
                "lengths".into(),
                Tensor::from_array(([0usize], Vec::<i64>::new()))
                    .map_err(run_err)?
                    .into(),
            ),
            ("item".into(), tensor([b, d], items.to_vec())?),
        ];
        for (k, names) in blocks.iter().enumerate() {
            for (part, name) in names.input.iter().enumerate() {
                let mut data = Vec::with_capacity(b * d);
                for s in states.iter() {
                    let start = (2 * k + part) * d;
                    data.extend_from_slice(&s.values[start..start + d]);
                }
                inputs.push((name.as_str().into(), tensor([b, d], data)?));
            }
        }
        let mut session = self.session.lock().map_err(run_err)?;
        let outputs = session.run(inputs).map_err(run_err)?;
        let extract = |name: &str| -> Result<&[f32], StreamError> {
            let value = outputs
                .get(name)
                .ok_or_else(|| run_err(format!("the step returned no {name:?}")))?;
            let (_, data) = value.try_extract_tensor::<f32>().map_err(run_err)?;
            if data.len() != b * d {
                return Err(run_err(format!(
                    "the step returned {} values of {name:?} for {b} users",
                    data.len()
                )));
            }
            Ok(data)
        };
        let query = extract("step_query")?;
        let mut next = Vec::with_capacity(2 * blocks.len());
        for names in blocks {
            for name in &names.output {
                next.push(extract(name)?);
            }
        }
        for (what, data) in
            std::iter::once(("step query", query)).chain(next.iter().map(|&n| ("step state", n)))
        {
            for (u, row) in data.chunks_exact(d).enumerate() {
                if let Some(position) = first_non_finite(row) {
                    return Err(StreamError::NonFinite {
                        what,
                        user: u,
                        position,
                    });
                }
            }
        }
        for (u, s) in states.iter_mut().enumerate() {
            for (j, data) in next.iter().enumerate() {
                s.values[j * d..(j + 1) * d].copy_from_slice(&data[u * d..(u + 1) * d]);
            }
            s.items = s.items.saturating_add(1);
        }
        Ok(query.to_vec())
    }

    /// [`step`](Self::step) with each user's new item given by its external id, its vector
    /// read from the index's store (as [`encode_ids`](Self::encode_ids) does).
    pub fn step_ids(
        &self,
        index: &Index,
        states: &mut [UserState],
        items: &[u64],
    ) -> Result<Vec<f32>, StreamError> {
        let d = self.dim();
        if index.dim() != d {
            return Err(EncoderError::DimensionMismatch {
                what: "index vectors for the query encoder",
                expected: d,
                got: index.dim(),
            }
            .into());
        }
        if items.len() != states.len() {
            return Err(EncoderError::DimensionMismatch {
                what: "step item ids (one per user state)",
                expected: states.len(),
                got: items.len(),
            }
            .into());
        }
        let mut vectors = vec![0f32; items.len() * d];
        for (row, &id) in vectors.chunks_exact_mut(d).zip(items) {
            if !index.read_item(id, row) {
                return Err(EncoderError::UnknownItem { id }.into());
            }
        }
        self.step(states, &vectors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> UserState {
        let values: Vec<f32> = (0..2 * 2 * 3).map(|i| i as f32 * 0.25 - 1.0).collect();
        UserState::from_parts(120, 2, 3, values).unwrap()
    }

    #[test]
    fn bytes_round_trip_and_layout() {
        let s = sample();
        let bytes = s.to_bytes();
        assert_eq!(bytes.len(), s.encoded_len());
        assert_eq!(bytes.len(), 28 + 4 * 12 + 4);
        assert_eq!(&bytes[..8], b"MRLUSTAT");
        assert_eq!(bytes[8..12], 1u32.to_le_bytes());
        assert_eq!(bytes[12..16], 2u32.to_le_bytes());
        assert_eq!(bytes[16..20], 3u32.to_le_bytes());
        assert_eq!(bytes[20..28], 120u64.to_le_bytes());
        assert_eq!(bytes[28..32], (-1.0f32).to_le_bytes());
        assert_eq!(UserState::from_bytes(&bytes).unwrap(), s);
        let (re, im) = s.block(1).unwrap();
        assert_eq!((re, im), (&s.values()[6..9], &s.values()[9..12]));
        assert!(s.block(2).is_none());
        // The Beauty model's state: 2 blocks of 1024.
        assert_eq!(UserState::new(2, 1024).unwrap().encoded_len(), 16_416);
    }

    #[test]
    fn every_corrupted_byte_is_refused() {
        let bytes = sample().to_bytes();
        for i in 0..bytes.len() {
            for flip in [0x01u8, 0x80] {
                let mut b = bytes.clone();
                b[i] ^= flip;
                assert!(
                    matches!(UserState::from_bytes(&b), Err(StreamError::BadState(_))),
                    "byte {i} ^ {flip:#x} was accepted"
                );
            }
        }
    }

    #[test]
    fn truncated_extended_and_hostile_headers_are_refused() {
        let bytes = sample().to_bytes();
        for n in 0..bytes.len() {
            assert!(
                UserState::from_bytes(&bytes[..n]).is_err(),
                "prefix of {n} bytes"
            );
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(UserState::from_bytes(&long).is_err());
        // A header claiming 2^32-1 blocks of 2^32-1 dims, with a valid checksum: an error
        // before any allocation of that size.
        let mut h = bytes[..28].to_vec();
        h[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        h[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        let crc = crc32fast::hash(&h);
        h.extend_from_slice(&crc.to_le_bytes());
        let err = UserState::from_bytes(&h).unwrap_err();
        assert!(err.to_string().contains("exceed"), "{err}");
        // Zero blocks.
        let mut z = bytes[..28].to_vec();
        z[12..16].copy_from_slice(&0u32.to_le_bytes());
        let crc = crc32fast::hash(&z);
        z.extend_from_slice(&crc.to_le_bytes());
        assert!(UserState::from_bytes(&z).is_err());
    }

    #[test]
    fn non_finite_values_are_refused_even_with_a_valid_checksum() {
        let mut bytes = sample().to_bytes();
        let n = bytes.len();
        bytes[28 + 4 * 5..28 + 4 * 6].copy_from_slice(&f32::NAN.to_le_bytes());
        let crc = crc32fast::hash(&bytes[..n - 4]);
        bytes[n - 4..].copy_from_slice(&crc.to_le_bytes());
        let err = UserState::from_bytes(&bytes).unwrap_err();
        assert!(err.to_string().contains("value 5 is not finite"), "{err}");
        assert!(UserState::from_parts(0, 1, 1, vec![f32::INFINITY, 0.0]).is_err());
        assert!(UserState::from_parts(0, 1, 2, vec![0.0; 3]).is_err());
        assert!(UserState::new(0, 8).is_err());
        assert!(UserState::new(usize::MAX, 2).is_err());
    }
}
