//! The service's streaming users: each user's carried encoder state ([`UserState`]), latest
//! query and history, at most `max_users` of them (the least recently used is evicted), saved
//! to and loaded from a state file.
//!
//! An event advances the user's state one item at a time ([`QueryEncoder::step`]); a
//! recommendation searches with the latest query, the history excluded. By the window rule
//! of [`crate::stream`] the query equals the full encoder's query of the last 50 items, so
//! `GET /v1/users/{user}/recommendations` answers as `POST /v1/recommend` with the user's
//! whole history. An evicted user starts again from no history.
//!
//! State file, little-endian, written atomically:
//!
//! ```text
//! magic "MRLUSERS" | u32 version 1 | u32 model fingerprint | u32 dim | u64 users
//! per user: u32 name bytes | name (UTF-8) | u64 history length | u64 ids…
//!           | f32 query × dim | u32 state bytes | UserState::to_bytes
//! u32 CRC-32 (IEEE) of every byte before it
//! ```
//!
//! The model fingerprint is the CRC-32 of the query encoder file ([`model_fingerprint`]):
//! states are only meaningful for the weights that made them, so a file written with
//! another model is refused at start instead of silently answering with foreign states.

use super::api::ApiError;
use super::metrics::Metrics;
use crate::encoder::QueryEncoder;
use crate::index::Index;
use crate::search::{Filter, Hit, SearchParams};
use crate::stream::{StreamError, UserState};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const MAGIC: [u8; 8] = *b"MRLUSERS";
const VERSION: u32 = 1;
/// The longest user name accepted (bytes).
pub const MAX_USER_NAME: usize = 256;

/// A state file that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The state file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid state file, or does not fit the encoder.
    #[error("{path}: not a valid user state file: {what}")]
    Corrupt {
        /// The state file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
}

struct Entry {
    state: UserState,
    query: Vec<f32>,
    history: Vec<u64>,
}

#[derive(Default)]
struct Table {
    /// user → (last use, entry)
    map: HashMap<String, (u64, Arc<Mutex<Entry>>)>,
    /// last use → user: the least recently used comes first.
    order: BTreeMap<u64, String>,
    tick: u64,
}

impl Table {
    fn touch(&mut self, user: &str) -> Option<Arc<Mutex<Entry>>> {
        self.tick += 1;
        let tick = self.tick;
        let (last, entry) = self.map.get_mut(user)?;
        self.order.remove(last);
        *last = tick;
        self.order.insert(tick, user.to_string());
        Some(Arc::clone(entry))
    }

    /// Inserts `entry` for `user`, evicting the least recently used beyond `max`; returns
    /// how many were evicted.
    fn insert(&mut self, user: &str, entry: Arc<Mutex<Entry>>, max: usize) -> u64 {
        self.tick += 1;
        if let Some((last, _)) = self.map.insert(user.to_string(), (self.tick, entry)) {
            self.order.remove(&last);
        }
        self.order.insert(self.tick, user.to_string());
        let mut evicted = 0;
        while self.map.len() > max {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.map.remove(&oldest);
            evicted += 1;
        }
        evicted
    }
}

/// The users' states, bounded.
pub struct Users {
    table: Mutex<Table>,
    max: usize,
    model: u32,
}

/// The fingerprint of the query encoder at `path`: the CRC-32 of its bytes.
pub fn model_fingerprint(path: &Path) -> Result<u32, UsersError> {
    let bytes = std::fs::read(path).map_err(|source| UsersError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(crc32fast::hash(&bytes))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn check_name(user: &str) -> Result<(), ApiError> {
    if user.is_empty() || user.len() > MAX_USER_NAME {
        return Err(ApiError::bad(format!(
            "user: a name of 1 to {MAX_USER_NAME} bytes, got {}",
            user.len()
        )));
    }
    Ok(())
}

fn stream_error(e: StreamError) -> ApiError {
    match e {
        StreamError::Encoder(crate::encoder::EncoderError::UnknownItem { id }) => {
            ApiError::bad(format!("items: item id {id} is not in the index"))
        }
        StreamError::NoStepInterface { .. } => ApiError {
            status: axum::http::StatusCode::NOT_IMPLEMENTED,
            message: e.to_string(),
        },
        other => ApiError::internal(other.to_string()),
    }
}

impl Users {
    /// No users yet; at most `max` (at least 1) are held; their states belong to the model
    /// with fingerprint `model` ([`model_fingerprint`]; 0 without an encoder).
    pub fn new(max: usize, model: u32) -> Users {
        Users {
            table: Mutex::new(Table::default()),
            max: max.max(1),
            model,
        }
    }

    /// Users held.
    pub fn len(&self) -> usize {
        lock(&self.table).map.len()
    }

    /// Whether no user is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Streams `items` (oldest first) into `user`'s state, creating it if new; all items or
    /// none (an unknown id is refused before any step). Returns the items the user has
    /// streamed in all.
    pub fn advance(
        &self,
        user: &str,
        items: &[u64],
        encoder: &QueryEncoder,
        index: &Index,
        metrics: &Metrics,
    ) -> Result<u64, ApiError> {
        check_name(user)?;
        for &id in items {
            if index.locate(id).is_none() {
                return Err(ApiError::bad(format!(
                    "items: item id {id} is not in the index"
                )));
            }
        }
        let entry = {
            let mut t = lock(&self.table);
            match t.touch(user) {
                Some(e) => e,
                None => {
                    let state = encoder.new_state().map_err(stream_error)?;
                    let e = Arc::new(Mutex::new(Entry {
                        state,
                        query: Vec::new(),
                        history: Vec::new(),
                    }));
                    let evicted = t.insert(user, Arc::clone(&e), self.max);
                    metrics.evicted(evicted);
                    e
                }
            }
        };
        let mut e = lock(&entry);
        // Work on a copy: on an error the user's state is left as it was.
        let mut state = [e.state.clone()];
        let mut query = Vec::new();
        for &id in items {
            query = encoder
                .step_ids(index, &mut state, &[id])
                .map_err(stream_error)?;
        }
        let [state] = state;
        e.state = state;
        e.query = query;
        e.history.extend_from_slice(items);
        Ok(e.state.items())
    }

    /// The `k` best items for `user`'s latest query, the history excluded unless
    /// `keep_history`; 404 for a user without state.
    pub fn recommend(
        &self,
        user: &str,
        index: &Index,
        k: usize,
        keep_history: bool,
    ) -> Result<Vec<Hit>, ApiError> {
        check_name(user)?;
        let entry = lock(&self.table).touch(user).ok_or_else(|| ApiError {
            status: axum::http::StatusCode::NOT_FOUND,
            message: format!("user {user:?} has no state: post their events first"),
        })?;
        let (query, history) = {
            let e = lock(&entry);
            (e.query.clone(), e.history.clone())
        };
        if query.len() != index.dim() {
            return Err(ApiError::internal(format!(
                "user {user:?}: a {}-d query for a {}-d index",
                query.len(),
                index.dim()
            )));
        }
        let filter = if keep_history {
            Filter::NONE
        } else {
            Filter::deny(&history)
        };
        index
            .search_filtered(&query, k, &SearchParams::default(), &filter)
            .map_err(|e| ApiError::search("query", e))
    }

    /// Writes every user's state to `path` atomically (format in the module documentation).
    pub fn save(&self, path: &Path) -> Result<(), UsersError> {
        let entries: Vec<(String, Arc<Mutex<Entry>>)> = {
            let t = lock(&self.table);
            // Least recently used first, so loading keeps the same order.
            t.order
                .values()
                .filter_map(|u| t.map.get(u).map(|(_, e)| (u.clone(), Arc::clone(e))))
                .collect()
        };
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&self.model.to_le_bytes());
        let dim = entries
            .first()
            .map_or(0, |(_, e)| lock(e).query.len() as u32);
        out.extend_from_slice(&dim.to_le_bytes());
        out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
        for (user, e) in &entries {
            let e = lock(e);
            out.extend_from_slice(&(user.len() as u32).to_le_bytes());
            out.extend_from_slice(user.as_bytes());
            out.extend_from_slice(&(e.history.len() as u64).to_le_bytes());
            for id in &e.history {
                out.extend_from_slice(&id.to_le_bytes());
            }
            for v in &e.query {
                out.extend_from_slice(&v.to_le_bytes());
            }
            let state = e.state.to_bytes();
            out.extend_from_slice(&(state.len() as u32).to_le_bytes());
            out.extend_from_slice(&state);
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        crate::atomic::write_atomic(path, &out).map_err(|source| UsersError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Loads the users of the state file at `path` (replacing any held under the same name);
    /// the file must fit `encoder` (if given). Returns the users loaded.
    pub fn load(&self, path: &Path, encoder: Option<&QueryEncoder>) -> Result<usize, UsersError> {
        let bytes = std::fs::read(path).map_err(|source| UsersError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let corrupt = |what: String| UsersError::Corrupt {
            path: path.to_path_buf(),
            what,
        };
        let (model, entries) = parse_state_file(&bytes).map_err(corrupt)?;
        if model != self.model {
            return Err(corrupt(format!(
                "written with another query encoder (model fingerprint {model:08x}, this one {:08x}): its states mean nothing to this model; move the file away or start with the model that wrote it",
                self.model
            )));
        }
        if let Some(enc) = encoder {
            let fresh = enc
                .new_state()
                .map_err(|e| corrupt(format!("the encoder cannot stream: {e}")))?;
            for (user, e) in &entries {
                if e.query.len() != enc.dim()
                    || e.state.blocks() != fresh.blocks()
                    || e.state.dim() != fresh.dim()
                {
                    return Err(corrupt(format!(
                        "user {user:?}: a state of {} blocks of {} dims and a {}-d query; the encoder carries {} blocks of {} dims",
                        e.state.blocks(),
                        e.state.dim(),
                        e.query.len(),
                        fresh.blocks(),
                        fresh.dim()
                    )));
                }
            }
        }
        let n = entries.len();
        let mut t = lock(&self.table);
        for (user, e) in entries {
            t.insert(&user, Arc::new(Mutex::new(e)), self.max);
        }
        Ok(n)
    }
}

/// Reads a state file's bytes (every length checked against what is left).
fn parse_state_file(bytes: &[u8]) -> Result<(u32, Vec<(String, Entry)>), String> {
    if bytes.len() < 32 {
        return Err(format!("{} bytes, shorter than the header", bytes.len()));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(body) != u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) {
        return Err("checksum mismatch (corrupt or truncated)".into());
    }
    let mut r = Reader { bytes: body, at: 0 };
    if r.take(8)? != MAGIC {
        return Err("wrong magic".into());
    }
    let version = r.u32()?;
    if version != VERSION {
        return Err(format!("version {version}, this build reads {VERSION}"));
    }
    let model = r.u32()?;
    let dim = r.u32()? as usize;
    let users = r.u64()?;
    let mut out = Vec::new();
    for i in 0..users {
        let name_len = r.u32()? as usize;
        if name_len == 0 || name_len > MAX_USER_NAME {
            return Err(format!("user {i}: a name of {name_len} bytes"));
        }
        let name = std::str::from_utf8(r.take(name_len)?)
            .map_err(|_| format!("user {i}: the name is not UTF-8"))?
            .to_string();
        let h = r.u64()?;
        let h_bytes = usize::try_from(h)
            .ok()
            .and_then(|h| h.checked_mul(8))
            .ok_or_else(|| format!("user {name:?}: a history of {h} ids"))?;
        let history = r
            .take(h_bytes)?
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect();
        let query: Vec<f32> = r
            .take(dim.checked_mul(4).ok_or("dimension overflows")?)?
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap_or([0; 4])))
            .collect();
        if query.iter().any(|v| !v.is_finite()) {
            return Err(format!("user {name:?}: a non-finite query value"));
        }
        let state_len = r.u32()? as usize;
        let state =
            UserState::from_bytes(r.take(state_len)?).map_err(|e| format!("user {name:?}: {e}"))?;
        out.push((
            name,
            Entry {
                state,
                query,
                history,
            },
        ));
    }
    if r.at != body.len() {
        return Err(format!("{} bytes after the last user", body.len() - r.at));
    }
    Ok((model, out))
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| format!("truncated: {n} bytes wanted at offset {}", self.at))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, String> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(items: u64, dim: usize) -> Entry {
        let values: Vec<f32> = (0..2 * 2 * dim).map(|i| i as f32 * 0.5).collect();
        Entry {
            state: UserState::from_parts(items, 2, dim, values).unwrap(),
            query: (0..dim).map(|i| i as f32).collect(),
            history: (0..items).collect(),
        }
    }

    #[test]
    fn least_recently_used_is_evicted() {
        let users = Users::new(2, 7);
        let mut t = lock(&users.table);
        assert_eq!(t.insert("a", Arc::new(Mutex::new(entry(1, 4))), 2), 0);
        assert_eq!(t.insert("b", Arc::new(Mutex::new(entry(1, 4))), 2), 0);
        assert!(t.touch("a").is_some()); // b is now the least recently used
        assert_eq!(t.insert("c", Arc::new(Mutex::new(entry(1, 4))), 2), 1);
        assert!(t.map.contains_key("a") && t.map.contains_key("c"));
        assert!(!t.map.contains_key("b") && t.touch("b").is_none());
        assert_eq!(t.order.len(), 2);
    }

    #[test]
    fn state_file_round_trips_and_refuses_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.state");
        let users = Users::new(10, 7);
        {
            let mut t = lock(&users.table);
            t.insert("alice", Arc::new(Mutex::new(entry(3, 8))), 10);
            t.insert("bob", Arc::new(Mutex::new(entry(5, 8))), 10);
        }
        users.save(&path).unwrap();
        let again = Users::new(10, 7);
        assert_eq!(again.load(&path, None).unwrap(), 2);
        for name in ["alice", "bob"] {
            let a = lock(&users.table).touch(name).unwrap();
            let b = lock(&again.table).touch(name).unwrap();
            let (a, b) = (lock(&a), lock(&b));
            assert_eq!(a.state, b.state);
            assert_eq!(a.query, b.query);
            assert_eq!(a.history, b.history);
        }
        let bytes = std::fs::read(&path).unwrap();
        for cut in [0, 10, bytes.len() / 2, bytes.len() - 1] {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            let err = Users::new(10, 7).load(&path, None).unwrap_err();
            assert!(matches!(err, UsersError::Corrupt { .. }), "{err}");
        }
        let mut flipped = bytes.clone();
        flipped[40] ^= 1;
        std::fs::write(&path, &flipped).unwrap();
        let err = Users::new(10, 7).load(&path, None).unwrap_err().to_string();
        assert!(err.contains("checksum"), "{err}");
        std::fs::write(&path, &bytes).unwrap();
        let err = Users::new(10, 8).load(&path, None).unwrap_err().to_string();
        assert!(err.contains("another query encoder"), "{err}");
        let missing = Users::new(10, 7).load(&dir.path().join("none"), None);
        assert!(matches!(missing, Err(UsersError::Io { .. })));
    }
}
