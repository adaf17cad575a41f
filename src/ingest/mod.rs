//! Ingest: reading item vectors, query vectors and id files from disk, and writing them.
//!
//! Everything here sits at the edge of the crate: it turns user files (`.npy`, `.fvecs`) into
//! a [`VectorSource`] that the builder reads row by row, and it owns [`IngestError`], whose
//! variants name the file, row or field at fault. One concern per module:
//!
//! * `source`: the [`VectorSource`] trait and the in-memory [`MatrixSource`];
//! * `error`: [`IngestError`];
//! * `mapped`: [`open_vectors`] memory-maps a `.npy` (`<f4`, `<f2` or `<f8`, C order, 2-d)
//!   or `.fvecs` file and reads rows lazily, converting to `f32`; [`read_matrix_f32`] loads a
//!   whole vector file into a [`MatrixSource`];
//! * `ids`: [`read_ids`] reads a `.npy` of integer ids (`<u8`, `<i8`, `<u4`, `<i4`),
//!   [`read_id_matrix`] a 2-d one (ground-truth neighbour lists);
//! * `write`: [`write_npy_f32`], [`write_npy_u64`], [`write_npy_u64_matrix`] and
//!   [`write_fvecs`] write files atomically (through [`crate::atomic::AtomicFile`]);
//! * `sequences`: [`read_sequences`] reads user histories (`user item item ...` per line);
//! * `npy` and `fvecs`: the two file formats' headers (the crate's one `.npy` codec).

mod error;
mod fvecs;
mod ids;
mod mapped;
mod npy;
mod sequences;
mod source;
mod write;

pub use error::IngestError;
pub use ids::{read_id_list, read_id_matrix, read_ids, IdMatrix};
pub use mapped::{open_vectors, read_matrix_f32, MAX_DIM};
pub use sequences::{parse_sequences, read_sequences, MAX_LINE_BYTES};
pub use source::{MatrixSource, VectorSource};
pub use write::{write_fvecs, write_npy_f32, write_npy_u64, write_npy_u64_matrix};
