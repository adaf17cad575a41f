//! The embedding store: every item's vector once, at full width, band-major by nested width.
//!
//! ```text
//! widths = [64, 128, 256]            band b holds dims [w(b-1), w(b)) of every item
//!
//! band 0 (n × 64 f32)    band 1 (n × 64 f32)    band 2 (n × 128 f32)
//! +------------------+   +------------------+   +--------------------------+
//! | item 0 dims 0..64|   | item 0 dims 64.. |   | item 0 dims 128..256     |
//! | item 1 dims 0..64|   | item 1 ...       |   | item 1 ...               |
//! | ...              |   | ...              |   | ...                      |
//! +------------------+   +------------------+   +--------------------------+
//! ```
//!
//! Each row starts on a 64-byte boundary (its stride is the band width rounded up to 16
//! floats). The coarse stage reads band 0 only, as cache-friendly as a separate 64-d copy
//! without the copy; each cascade stage reads the bands it adds. Beside the bands the file
//! keeps per item the L2 norm of each band, the external `u64` ids, and an id → row lookup
//! table sorted by id. The layout is specified in `index-formats/v1.md`.

use crate::bytes::Bytes;
use crate::format::{cast_section, read_pod, Container, ContainerWriter, FormatError};
use crate::ingest::{IngestError, VectorSource};
use bytemuck::{Pod, Zeroable};
use std::io::{self, Seek, Write};

/// Magic bytes of a store file.
pub const STORE_MAGIC: [u8; 8] = *b"MRLSTORE";

/// Section kinds of a store file.
pub mod section {
    /// [`super::StoreMeta`].
    pub const META: u32 = 1;
    /// The nested widths, `n_bands × u32`.
    pub const WIDTHS: u32 = 2;
    /// One band (index = band number): `n × stride` f32.
    pub const BAND: u32 = 3;
    /// Per-band L2 norms, band-major: `n_bands × n` f32.
    pub const BAND_NORMS: u32 = 4;
    /// External ids by row: `n × u64`.
    pub const IDS: u32 = 5;
    /// `(id, row)` pairs sorted by id: `n × 16` bytes.
    pub const ID_INDEX: u32 = 6;
}

/// Floats per 64-byte cache line: band strides are multiples of this.
pub const FLOATS_PER_LINE: usize = 16;

/// The fixed-size metadata section of a store file.
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
#[repr(C)]
pub struct StoreMeta {
    /// Number of items (rows).
    pub n_items: u64,
    /// Full dimension.
    pub dim: u32,
    /// Number of bands (nested widths).
    pub n_bands: u32,
    /// 1 if every item's external id is its row number, else 0.
    pub ids_are_rows: u32,
    /// Zero.
    pub reserved: [u32; 3],
}

/// One entry of the id lookup table.
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq, Eq, PartialOrd, Ord)]
#[repr(C)]
pub struct IdEntry {
    /// External id.
    pub id: u64,
    /// Row holding that id.
    pub row: u64,
}

/// Where one band lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Band {
    /// First dimension of the band.
    pub start: usize,
    /// One past its last dimension (the nested width).
    pub end: usize,
    /// Floats between the starts of consecutive rows (a multiple of 16).
    pub stride: usize,
    /// Byte offset of row 0 in the file.
    pub offset: usize,
}

impl Band {
    /// Number of dimensions in the band.
    pub fn width(&self) -> usize {
        self.end - self.start
    }
}

/// The row stride, in floats, of a band of `width` dimensions.
pub fn band_stride(width: usize) -> usize {
    width.div_ceil(FLOATS_PER_LINE) * FLOATS_PER_LINE
}

/// A read-only embedding store over a mapped (or owned) file.
pub struct Store {
    bytes: Bytes,
    container: Container,
    n: usize,
    dim: usize,
    bands: Vec<Band>,
    norms_offset: usize,
    ids_offset: usize,
    id_index_offset: usize,
    ids_are_rows: bool,
    /// Bands copied into huge-page memory by [`Store::make_bands_resident`], by band.
    resident: Vec<Option<Bytes>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("file", &self.container.label())
            .field("n", &self.n)
            .field("dim", &self.dim)
            .field("widths", &self.widths())
            .finish()
    }
}

impl Store {
    /// Parses a store from its bytes. Cheap: checks the header, the section table and that
    /// every section has the size the metadata implies, without reading the data.
    pub fn from_bytes(bytes: Bytes, label: &str) -> Result<Store, FormatError> {
        let container = Container::parse(&bytes, &STORE_MAGIC, label)?;
        let corrupt = |what: String| FormatError::Corrupt {
            file: label.to_string(),
            what,
        };
        let meta_range = container.section(section::META, 0, "store meta")?;
        let meta: StoreMeta = read_pod(&bytes, &container, meta_range, "store meta")?;
        let n = usize::try_from(meta.n_items)
            .ok()
            .filter(|&n| n <= u32::MAX as usize)
            .ok_or_else(|| corrupt(format!("item count {} is out of range", meta.n_items)))?;
        let dim = meta.dim as usize;
        let n_bands = meta.n_bands as usize;
        if dim == 0 || n_bands == 0 || n_bands > dim {
            return Err(corrupt(format!(
                "dimension {dim} with {n_bands} bands is not a valid layout"
            )));
        }
        let wr = container.section_exact(section::WIDTHS, 0, "widths", 4 * n_bands as u64)?;
        let widths: &[u32] = cast_section(&bytes, &container, wr, "widths")?;
        let widths: Vec<usize> = widths.iter().map(|&w| w as usize).collect();
        validate_widths(&widths, dim).map_err(corrupt)?;
        // Section sizes are products of header fields: checked, so that a crafted header
        // cannot wrap one into a small size that the section table then matches.
        let size = |items: u64, per_item: u64, what: &str| {
            items
                .checked_mul(per_item)
                .and_then(|x| x.checked_mul(4))
                .ok_or_else(|| {
                    corrupt(format!(
                        "{what}: {items} items × {per_item} values overflows a file size"
                    ))
                })
        };
        let mut bands = Vec::with_capacity(n_bands);
        let mut start = 0;
        for (b, &end) in widths.iter().enumerate() {
            let stride = band_stride(end - start);
            let expected = size(n as u64, stride as u64, &format!("band {b}"))?;
            let r =
                container.section_exact(section::BAND, b as u32, &format!("band {b}"), expected)?;
            bands.push(Band {
                start,
                end,
                stride,
                offset: r.offset,
            });
            start = end;
        }
        let nr = container.section_exact(
            section::BAND_NORMS,
            0,
            "band norms",
            size(n as u64, n_bands as u64, "band norms")?,
        )?;
        let ir = container.section_exact(section::IDS, 0, "ids", size(n as u64, 2, "ids")?)?;
        let xr = container.section_exact(
            section::ID_INDEX,
            0,
            "id index",
            size(n as u64, 4, "id index")?,
        )?;
        let ids_are_rows = match meta.ids_are_rows {
            0 => false,
            1 => true,
            v => {
                return Err(corrupt(format!(
                    "ids_are_rows flag is {v}, expected 0 or 1"
                )))
            }
        };
        // The alignment of every section is checked by the container; check the casts once
        // here so the accessors below cannot fail.
        cast_section::<f32>(&bytes, &container, nr, "band norms")?;
        cast_section::<u64>(&bytes, &container, ir, "ids")?;
        cast_section::<IdEntry>(&bytes, &container, xr, "id index")?;
        Ok(Store {
            bytes,
            container,
            n,
            dim,
            bands,
            norms_offset: nr.offset,
            ids_offset: ir.offset,
            id_index_offset: xr.offset,
            ids_are_rows,
            resident: Vec::new(),
        })
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether the store holds no items.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Full dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The nested widths, strictly increasing, ending at [`Store::dim`].
    pub fn widths(&self) -> Vec<usize> {
        self.bands.iter().map(|b| b.end).collect()
    }

    /// The bands, in order.
    pub fn bands(&self) -> &[Band] {
        &self.bands
    }

    /// The number of bands that together cover dims `[0, width)`, if `width` is a band end.
    pub fn bands_for_width(&self, width: usize) -> Option<usize> {
        self.bands
            .iter()
            .position(|b| b.end == width)
            .map(|i| i + 1)
    }

    /// Whether every item's external id is its row number.
    pub fn ids_are_rows(&self) -> bool {
        self.ids_are_rows
    }

    /// The parsed container (header and section table).
    pub fn container(&self) -> &Container {
        &self.container
    }

    /// Size of the file in bytes.
    pub fn file_len(&self) -> usize {
        self.bytes.len()
    }

    /// Advises the kernel that rows will be read at random.
    pub fn advise_random(&self) {
        self.bytes.advise_random();
    }

    /// Row `row` of band `band`: the item's dims `[band.start, band.end)`.
    ///
    /// Panics if `band` or `row` is out of range (callers iterate known ranges).
    #[inline]
    pub fn row(&self, band: usize, row: usize) -> &[f32] {
        let b = &self.bands[band];
        assert!(row < self.n, "row {row} out of range");
        let (bytes, offset) = self.band_bytes(band);
        let start = offset + row * b.stride * 4;
        bytemuck::cast_slice(&bytes[start..start + b.width() * 4])
    }

    /// The bytes band `band` lives in (the file, or its resident copy) and the offset of its
    /// row 0 there.
    #[inline]
    fn band_bytes(&self, band: usize) -> (&[u8], usize) {
        match self.resident.get(band) {
            Some(Some(copy)) => (copy, 0),
            _ => (&self.bytes, self.bands[band].offset),
        }
    }

    /// Copies the first `n_bands` bands (the coarse prefix) out of the mapped file into
    /// anonymous memory advised for transparent huge pages ([`Bytes::copy_to_huge_pages`]);
    /// every later read of those bands goes to the copy. Costs `len() × stride × 4` bytes
    /// of resident memory per band; the coarse graph search reads these bands at random,
    /// and huge pages cut its TLB misses. Results are unchanged.
    pub fn make_bands_resident(&mut self, n_bands: usize) -> std::io::Result<()> {
        let n_bands = n_bands.min(self.bands.len());
        self.resident.resize_with(self.bands.len(), || None);
        for b in 0..n_bands {
            if self.resident[b].is_none() {
                let band = &self.bands[b];
                let data = &self.bytes[band.offset..band.offset + self.n * band.stride * 4];
                self.resident[b] = Some(Bytes::copy_to_huge_pages(data)?);
            }
        }
        Ok(())
    }

    /// The whole of band `band`: `len() × stride` floats, row `r` at `r · stride`.
    #[inline]
    pub fn band_data(&self, band: usize) -> &[f32] {
        let b = &self.bands[band];
        let (bytes, offset) = self.band_bytes(band);
        bytemuck::cast_slice(&bytes[offset..offset + self.n * b.stride * 4])
    }

    /// Pointer to the start of row `row` of band `band`, for prefetching.
    #[inline]
    pub fn row_ptr(&self, band: usize, row: usize) -> *const u8 {
        let b = &self.bands[band];
        let (bytes, offset) = self.band_bytes(band);
        bytes.as_ptr().wrapping_add(offset + row * b.stride * 4)
    }

    /// The L2 norm of item `row`'s dims in band `band`. Stored and verified, but no search
    /// reads it: see `index-formats/v2.md` (the next store version drops the section).
    #[inline]
    pub fn band_norm(&self, band: usize, row: usize) -> f32 {
        self.band_norms(band)[row]
    }

    /// The L2 norms of every item's dims in band `band`.
    pub fn band_norms(&self, band: usize) -> &[f32] {
        let start = self.norms_offset + band * self.n * 4;
        bytemuck::cast_slice(&self.bytes[start..start + self.n * 4])
    }

    /// External ids, by row.
    pub fn ids(&self) -> &[u64] {
        bytemuck::cast_slice(&self.bytes[self.ids_offset..self.ids_offset + self.n * 8])
    }

    /// The external id of row `row`.
    #[inline]
    pub fn id(&self, row: usize) -> u64 {
        self.ids()[row]
    }

    fn id_index(&self) -> &[IdEntry] {
        bytemuck::cast_slice(&self.bytes[self.id_index_offset..self.id_index_offset + self.n * 16])
    }

    /// The largest external id (`None` for an empty store). O(1): the id index is sorted.
    pub fn max_id(&self) -> Option<u64> {
        if self.ids_are_rows {
            return (self.n as u64).checked_sub(1);
        }
        self.id_index().last().map(|e| e.id)
    }

    /// The row holding external id `id`, if any. O(log n), no allocation.
    #[inline]
    pub fn row_of(&self, id: u64) -> Option<u32> {
        if self.ids_are_rows {
            return (id < self.n as u64).then_some(id as u32);
        }
        let index = self.id_index();
        // The id table is not checked at open (verify does): a row past the end, from a
        // corrupt file, is treated as an id the store does not hold.
        let i = index.binary_search_by_key(&id, |e| e.id).ok()?;
        let row = index[i].row;
        (row < self.n as u64).then_some(row as u32)
    }

    /// Reads item `row`'s full vector into `out` (length `dim`).
    pub fn read_vector(&self, row: usize, out: &mut [f32]) {
        for (b, band) in self.bands.iter().enumerate() {
            out[band.start..band.end].copy_from_slice(self.row(b, row));
        }
    }

    /// Inner product of `query` with item `row` over dims `[0, bands[n_bands-1].end)`.
    #[inline]
    pub fn prefix_dot(&self, query: &[f32], row: usize, n_bands: usize) -> f32 {
        let mut s = 0.0;
        for (b, band) in self.bands[..n_bands].iter().enumerate() {
            s += crate::simd::dot(&query[band.start..band.end], self.row(b, row));
        }
        s
    }

    /// The full integrity pass: every section checksum, the padding of every row, every
    /// value finite, the stored norms equal to recomputed ones, ids and the id table
    /// consistent. Reads the whole file.
    pub fn verify(&self) -> Result<(), FormatError> {
        self.container.verify_checksums(&self.bytes)?;
        let label = self.container.label();
        let corrupt = |what: String| FormatError::Corrupt {
            file: label.to_string(),
            what,
        };
        for (b, band) in self.bands.iter().enumerate() {
            let norms = self.band_norms(b);
            for (row, &stored) in norms.iter().enumerate() {
                let v = self.row(b, row);
                if let Some(col) = v.iter().position(|x| !x.is_finite()) {
                    return Err(corrupt(format!(
                        "non-finite value at row {row}, dim {}",
                        band.start + col
                    )));
                }
                let norm = crate::simd::dot(v, v).sqrt();
                if (norm - stored).abs() > 1e-4 * norm.max(1.0) {
                    return Err(corrupt(format!(
                        "band {b} norm of row {row} is stored as {stored} but the row's norm is {norm}"
                    )));
                }
            }
        }
        let ids = self.ids();
        let index = self.id_index();
        for (i, e) in index.iter().enumerate() {
            if i > 0 && index[i - 1].id >= e.id {
                return Err(corrupt(format!(
                    "id index is not strictly increasing at entry {i}"
                )));
            }
            if e.row >= self.n as u64 || ids[e.row as usize] != e.id {
                return Err(corrupt(format!(
                    "id index entry {i} (id {}, row {}) disagrees with the ids section",
                    e.id, e.row
                )));
            }
        }
        if self.ids_are_rows && ids.iter().enumerate().any(|(r, &id)| id != r as u64) {
            return Err(corrupt("ids are flagged as row numbers but are not".into()));
        }
        Ok(())
    }
}

/// Checks that `widths` is non-empty, strictly increasing, starts above 0 and ends at `dim`.
pub fn validate_widths(widths: &[usize], dim: usize) -> Result<(), String> {
    if widths.is_empty() {
        return Err("no widths given".into());
    }
    if widths[0] == 0 {
        return Err("widths must be positive".into());
    }
    if let Some(w) = widths.windows(2).find(|w| w[0] >= w[1]) {
        return Err(format!(
            "widths {widths:?} are not strictly increasing ({} then {})",
            w[0], w[1]
        ));
    }
    let last = widths[widths.len() - 1];
    if last != dim {
        return Err(format!(
            "widths {widths:?} must end at the full dimension {dim}, not {last}"
        ));
    }
    Ok(())
}

/// Writes a store file for `source` with the given nested `widths` (already validated),
/// per-band norms and optional external ids. Calls `on_row` once per row written per band.
pub fn write_store<W: Write + Seek>(
    out: W,
    source: &dyn VectorSource,
    widths: &[usize],
    norms: &[f32],
    ids: Option<&[u64]>,
    mut on_rows: impl FnMut(u64),
) -> Result<W, StoreWriteError> {
    let n = source.len();
    let dim = source.dim();
    let n_bands = widths.len();
    let sections = 2 + n_bands as u32 + 3;
    let mut w = ContainerWriter::new(out, STORE_MAGIC, sections)?;
    let meta = StoreMeta {
        n_items: n as u64,
        dim: dim as u32,
        n_bands: n_bands as u32,
        ids_are_rows: u32::from(ids.is_none()),
        reserved: [0; 3],
    };
    w.section(section::META, 0, bytemuck::bytes_of(&meta))?;
    let widths32: Vec<u32> = widths.iter().map(|&x| x as u32).collect();
    w.section(section::WIDTHS, 0, bytemuck::cast_slice(&widths32))?;
    let mut row = vec![0f32; dim];
    let mut start = 0;
    for (b, &end) in widths.iter().enumerate() {
        let stride = band_stride(end - start);
        let mut line = vec![0f32; stride];
        w.begin_section(section::BAND, b as u32)?;
        for i in 0..n {
            source.read_row(i, &mut row)?;
            line[..end - start].copy_from_slice(&row[start..end]);
            w.write_all(bytemuck::cast_slice(&line))?;
            if i % 1024 == 1023 {
                on_rows(1024);
            }
        }
        on_rows((n % 1024) as u64);
        w.end_section()?;
        start = end;
    }
    w.section(section::BAND_NORMS, 0, bytemuck::cast_slice(norms))?;
    let row_ids: Vec<u64> = match ids {
        Some(ids) => ids.to_vec(),
        None => (0..n as u64).collect(),
    };
    w.section(section::IDS, 0, bytemuck::cast_slice(&row_ids))?;
    let mut index: Vec<IdEntry> = row_ids
        .iter()
        .enumerate()
        .map(|(row, &id)| IdEntry {
            id,
            row: row as u64,
        })
        .collect();
    index.sort_unstable();
    w.section(section::ID_INDEX, 0, bytemuck::cast_slice(&index))?;
    Ok(w.finish()?)
}

/// Errors while writing a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreWriteError {
    /// Writing the file failed.
    #[error("writing the store: {0}")]
    Io(#[from] io::Error),
    /// Reading a row from the source failed.
    #[error(transparent)]
    Ingest(#[from] IngestError),
}
