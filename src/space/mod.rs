//! The learned coarse space: a compact code of every item in a query-aware basis, beside the
//! native full-width store, for models whose native prefixes do not carry the full-width
//! ranking.
//!
//! ```text
//! item x (D dims, stored once, natively, in the store)
//!   ──► code  Bᵀx  (d dims in half precision, d ≤ D/8: the space file's code bands,
//!                   band-major)
//! query q
//!   ──► code  Aᵀq  (d multiply-adds × D per query, only the dims a plan uses)
//! (Aᵀq)·(Bᵀx) ≈ q·x where it matters; every prefix of the code is the best approximation
//! of its rank, so the cascade scores L64, extends to L128, then rescores exactly at a
//! native width from the store.
//! ```
//!
//! `learn` (feature `build`) fits `A` and `B`; this module is the file (`space-<gen>.mrl`, specified in
//! `index-formats/v2.md`) and its reader. The store is unchanged, so every native width
//! `W` still answers exactly (the learned stages of a `W`-wide search project the query's
//! first `W` dims only).

#[cfg(feature = "build")]
pub mod choose;
#[cfg(feature = "build")]
pub mod learn;

use crate::bytes::Bytes;
#[cfg(feature = "build")]
use crate::format::ContainerWriter;
use crate::format::{cast_section, read_pod, Container, FormatError};
use crate::ingest::IngestError;
use crate::store::Band;
use bytemuck::{Pod, Zeroable};
#[cfg(feature = "build")]
use learn::Fitted;
use std::io;
#[cfg(feature = "build")]
use std::io::{Seek, Write};

/// Magic bytes of a space file.
pub const SPACE_MAGIC: [u8; 8] = *b"MRLSPACE";

/// The format version of space files (they first appeared in version 2).
pub const SPACE_FORMAT_VERSION: u32 = 2;

/// Where a fit's query statistics came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FitKind {
    /// Sample queries: the query-aware maps.
    QueryAware,
    /// The items alone (`Cq = Cx`): principal directions.
    ItemsOnly,
}

impl FitKind {
    /// The value stored in the space file.
    pub fn code(self) -> u32 {
        match self {
            FitKind::QueryAware => 1,
            FitKind::ItemsOnly => 2,
        }
    }

    /// The kind stored as `code`, if valid.
    pub fn from_code(code: u32) -> Option<FitKind> {
        match code {
            1 => Some(FitKind::QueryAware),
            2 => Some(FitKind::ItemsOnly),
            _ => None,
        }
    }

    /// `"query-aware"` or `"items-only"`.
    pub fn name(self) -> &'static str {
        match self {
            FitKind::QueryAware => "query-aware",
            FitKind::ItemsOnly => "items-only",
        }
    }
}

/// Section kinds of a space file.
pub mod section {
    /// [`super::SpaceMeta`].
    pub const META: u32 = 1;
    /// The nested code widths, `n_bands × u32`.
    pub const WIDTHS: u32 = 2;
    /// The query map, `code_dim × dim` f32, row-major.
    pub const QUERY_MAP: u32 = 3;
    /// The item map, `code_dim × dim` f32, row-major.
    pub const ITEM_MAP: u32 = 4;
    /// One code band (index = band number): `n × stride` IEEE half-precision values (`u16`
    /// bits), `stride` a multiple of 32 (rows on 64-byte boundaries).
    pub const CODE_BAND: u32 = 5;
    /// The singular value of each component, `code_dim × f32`.
    pub const SPECTRUM: u32 = 6;
}

/// The fixed-size metadata section of a space file.
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq)]
#[repr(C)]
pub struct SpaceMeta {
    /// Number of items (equals the store's).
    pub n_items: u64,
    /// Full dimension of the vectors.
    pub dim: u32,
    /// Dimensions of the code.
    pub code_dim: u32,
    /// Number of code bands.
    pub n_bands: u32,
    /// What the fit's query statistics came from: 1 sample queries, 2 the items alone.
    pub kind: u32,
    /// Sample-query rows the fit used.
    pub n_fit_queries: u32,
    /// Item rows the fit used.
    pub n_fit_items: u32,
    /// Seed of the item sample.
    pub seed: u64,
    /// Share of the bilinear form's energy the code carries, in `[0, 1]`.
    pub captured: f64,
    /// Element type of the code bands: 1 = IEEE half precision (the only one defined).
    pub code_type: u32,
    /// Zero.
    pub reserved: [u32; 3],
}

/// [`SpaceMeta::code_type`] of half-precision code bands.
pub const CODE_TYPE_F16: u32 = 1;

/// The row stride, in elements, of a half-precision code band of `width` dims: rows start
/// on 64-byte boundaries.
pub fn code_stride(width: usize) -> usize {
    width.div_ceil(32) * 32
}

/// Bad sample queries or a fit that cannot be computed.
#[derive(Debug, thiserror::Error)]
pub enum SpaceError {
    /// The code dimension does not fit the vectors.
    #[error("code dimension {code_dim} must be between 1 and the full dimension {dim}")]
    CodeDim {
        /// Asked for.
        code_dim: usize,
        /// Full dimension.
        dim: usize,
    },
    /// The sample queries' width is not the items'.
    #[error("{origin}: sample queries have {got} dims, but the items have {expected}")]
    QueryDim {
        /// The sample queries' file.
        origin: String,
        /// The items' dimension.
        expected: usize,
        /// The queries' dimension.
        got: usize,
    },
    /// A sample query holds NaN or an infinity.
    #[error(
        "{origin}: sample query row {row}, column {col} is {value}: all values must be finite"
    )]
    NonFiniteQuery {
        /// The sample queries' file.
        origin: String,
        /// Row (0-based).
        row: usize,
        /// Column (0-based).
        col: usize,
        /// The value.
        value: f32,
    },
    /// Too few sample queries to fit and check a space.
    #[error("{origin}: {rows} sample queries; a query-aware space needs at least {needed}")]
    TooFewQueries {
        /// The sample queries' file.
        origin: String,
        /// Rows given.
        rows: usize,
        /// Rows needed.
        needed: usize,
    },
    /// The linear algebra failed.
    #[error("learning the coarse space: {0}")]
    Numerical(String),
    /// Reading the items failed.
    #[error(transparent)]
    Ingest(#[from] IngestError),
}

/// A read-only learned space over a mapped (or owned) file.
pub struct LearnedSpace {
    bytes: Bytes,
    container: Container,
    meta: SpaceMeta,
    widths: Vec<usize>,
    bands: Vec<Band>,
    query_map_offset: usize,
    item_map_offset: usize,
    spectrum_offset: usize,
    resident: Option<Bytes>,
    /// The query map in half precision, made at open (`code_dim × dim`, a few hundred KiB):
    /// projecting a query reads it whole, and half the bytes is half the time.
    query_map_f16: Vec<u16>,
}

impl std::fmt::Debug for LearnedSpace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LearnedSpace")
            .field("file", &self.container.label())
            .field("meta", &self.meta)
            .field("widths", &self.widths)
            .finish()
    }
}

impl LearnedSpace {
    /// Parses a space file. Cheap: checks the header, the section table and every section's
    /// size against the metadata, without reading the data.
    pub fn from_bytes(bytes: Bytes, label: &str) -> Result<LearnedSpace, FormatError> {
        let container = Container::parse(&bytes, &SPACE_MAGIC, label)?;
        let corrupt = |what: String| FormatError::Corrupt {
            file: label.to_string(),
            what,
        };
        let mr = container.section(section::META, 0, "space meta")?;
        let meta: SpaceMeta = read_pod(&bytes, &container, mr, "space meta")?;
        let n = usize::try_from(meta.n_items)
            .ok()
            .filter(|&n| n > 0 && n <= u32::MAX as usize)
            .ok_or_else(|| corrupt(format!("item count {} is out of range", meta.n_items)))?;
        let dim = meta.dim as usize;
        let d = meta.code_dim as usize;
        let n_bands = meta.n_bands as usize;
        if dim == 0 || d == 0 || d > dim || n_bands == 0 || n_bands > d {
            return Err(corrupt(format!(
                "code of {d} dims in {n_bands} bands for {dim}-d vectors is not a valid layout"
            )));
        }
        if FitKind::from_code(meta.kind).is_none() {
            return Err(corrupt(format!("unknown space kind {}", meta.kind)));
        }
        if meta.code_type != CODE_TYPE_F16 {
            return Err(corrupt(format!(
                "unknown code element type {} (1: half precision)",
                meta.code_type
            )));
        }
        let wr = container.section_exact(section::WIDTHS, 0, "code widths", 4 * n_bands as u64)?;
        let widths: Vec<usize> = cast_section::<u32>(&bytes, &container, wr, "code widths")?
            .iter()
            .map(|&w| w as usize)
            .collect();
        crate::store::validate_widths(&widths, d).map_err(|e| corrupt(format!("code {e}")))?;
        let map_len = (d as u64)
            .checked_mul(dim as u64)
            .and_then(|x| x.checked_mul(4))
            .ok_or_else(|| corrupt(format!("a {d} × {dim} map overflows a file size")))?;
        let qr = container.section_exact(section::QUERY_MAP, 0, "query map", map_len)?;
        let ir = container.section_exact(section::ITEM_MAP, 0, "item map", map_len)?;
        let sr = container.section_exact(section::SPECTRUM, 0, "spectrum", 4 * d as u64)?;
        for (r, name) in [(qr, "query map"), (ir, "item map"), (sr, "spectrum")] {
            cast_section::<f32>(&bytes, &container, r, name)?;
        }
        let mut bands = Vec::with_capacity(n_bands);
        let mut start = 0;
        for (b, &end) in widths.iter().enumerate() {
            let stride = code_stride(end - start);
            let expected = (n as u64)
                .checked_mul(stride as u64 * 2)
                .ok_or_else(|| corrupt("code band size overflows".into()))?;
            let name = format!("code band {b}");
            let r = container.section_exact(section::CODE_BAND, b as u32, &name, expected)?;
            cast_section::<u16>(&bytes, &container, r, &name)?;
            bands.push(Band {
                start,
                end,
                stride,
                offset: r.offset,
            });
            start = end;
        }
        // Scaled by a power of two into half precision's well-resolved range: the query
        // code only ranks candidates against each other, so a common factor is harmless.
        let map = cast_section::<f32>(&bytes, &container, qr, "query map")?;
        let max = map
            .iter()
            .filter(|v| v.is_finite())
            .fold(0.0f32, |m, &v| m.max(v.abs()));
        let scale = if max > 0.0 {
            2f32.powi((10 - max.log2().ceil() as i32).clamp(-120, 120))
        } else {
            1.0
        };
        let query_map_f16 = map
            .iter()
            .map(|&v| crate::simd::to_f16_bits(v * scale))
            .collect();
        Ok(LearnedSpace {
            bytes,
            container,
            meta,
            widths,
            bands,
            query_map_offset: qr.offset,
            item_map_offset: ir.offset,
            spectrum_offset: sr.offset,
            resident: None,
            query_map_f16,
        })
    }

    /// The metadata.
    pub fn meta(&self) -> &SpaceMeta {
        &self.meta
    }

    /// The parsed container.
    pub fn container(&self) -> &Container {
        &self.container
    }

    /// Size of the file in bytes.
    pub fn file_len(&self) -> usize {
        self.bytes.len()
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.meta.n_items as usize
    }

    /// Whether the space holds no items (never true for a parsed file).
    pub fn is_empty(&self) -> bool {
        self.meta.n_items == 0
    }

    /// Full dimension of the vectors.
    pub fn dim(&self) -> usize {
        self.meta.dim as usize
    }

    /// Dimensions of the code.
    pub fn code_dim(&self) -> usize {
        self.meta.code_dim as usize
    }

    /// What the fit's query statistics came from.
    pub fn kind(&self) -> FitKind {
        FitKind::from_code(self.meta.kind).unwrap_or(FitKind::ItemsOnly)
    }

    /// The nested code widths (band ends), ending at [`LearnedSpace::code_dim`].
    pub fn widths(&self) -> &[usize] {
        &self.widths
    }

    /// The code bands.
    pub fn bands(&self) -> &[Band] {
        &self.bands
    }

    /// The number of code bands covering code dims `[0, width)`, if `width` is a band end.
    pub fn bands_for_width(&self, width: usize) -> Option<usize> {
        self.widths.iter().position(|&w| w == width).map(|i| i + 1)
    }

    fn floats(&self, offset: usize, len: usize) -> &[f32] {
        bytemuck::cast_slice(&self.bytes[offset..offset + len * 4])
    }

    /// The query map, `code_dim × dim` row-major.
    pub fn query_map(&self) -> &[f32] {
        self.floats(self.query_map_offset, self.code_dim() * self.dim())
    }

    /// The item map, `code_dim × dim` row-major.
    pub fn item_map(&self) -> &[f32] {
        self.floats(self.item_map_offset, self.code_dim() * self.dim())
    }

    /// The singular value of each code component.
    pub fn spectrum(&self) -> &[f32] {
        self.floats(self.spectrum_offset, self.code_dim())
    }

    /// The whole of code band `band`: `len() × stride` half-precision values (as bits).
    #[inline]
    pub fn band_data(&self, band: usize) -> &[u16] {
        let b = &self.bands[band];
        let len = self.len() * b.stride;
        match (&self.resident, band) {
            (Some(copy), 0) => &bytemuck::cast_slice(copy)[..len],
            _ => bytemuck::cast_slice(&self.bytes[b.offset..b.offset + len * 2]),
        }
    }

    /// Item `row`'s code in band `band` (half-precision bits).
    #[inline]
    pub fn row(&self, band: usize, row: usize) -> &[u16] {
        let b = &self.bands[band];
        let start = row * b.stride;
        &self.band_data(band)[start..start + b.width()]
    }

    /// Item `row`'s code over the first `n_bands` bands scored against the query code
    /// `code`.
    pub fn prefix_dot(&self, code: &[f32], row: usize, n_bands: usize) -> f32 {
        let mut s = 0.0;
        for (b, band) in self.bands[..n_bands].iter().enumerate() {
            s += crate::simd::dot_f16(&code[band.start..band.end], self.row(b, row));
        }
        s
    }

    /// Projects the first `in_dims` dims of `query` (the rest taken as zero) onto the first
    /// `out.len()` code components: `out[i] = c · Σ_{j < in_dims} A[i][j] q[j]`, with the map
    /// rounded to half precision (relative error about 5·10⁻⁴ per entry) and `c` a power of
    /// two fixed per index. Code scores only rank candidates against each other; returned
    /// scores are exact native inner products.
    pub fn project_query(&self, query: &[f32], in_dims: usize, out: &mut [f32]) {
        crate::simd::dot_many_f16(&query[..in_dims], &self.query_map_f16, self.dim(), 0, out);
    }

    /// Copies code band 0 (the coarse code) into anonymous huge-page memory, like
    /// [`crate::store::Store::make_bands_resident`]. Results are unchanged.
    pub fn make_coarse_resident(&mut self) -> io::Result<()> {
        if self.resident.is_none() {
            let b = &self.bands[0];
            let data = &self.bytes[b.offset..b.offset + self.len() * b.stride * 2];
            self.resident = Some(Bytes::copy_to_huge_pages(data)?);
        }
        Ok(())
    }

    /// The full integrity pass: every checksum and every value finite.
    pub fn verify(&self) -> Result<(), FormatError> {
        self.container.verify_checksums(&self.bytes)?;
        let corrupt = |what: String| FormatError::Corrupt {
            file: self.container.label().to_string(),
            what,
        };
        for (name, data) in [
            ("query map", self.query_map()),
            ("item map", self.item_map()),
            ("spectrum", self.spectrum()),
        ] {
            if let Some(i) = data.iter().position(|v| !v.is_finite()) {
                return Err(corrupt(format!("non-finite value in the {name} at {i}")));
            }
        }
        for (b, band) in self.bands.iter().enumerate() {
            for row in 0..self.len() {
                let finite = |&v: &u16| half::f16::from_bits(v).is_finite();
                if let Some(col) = self.row(b, row).iter().position(|v| !finite(v)) {
                    return Err(corrupt(format!(
                        "non-finite code value at row {row}, code dim {}",
                        band.start + col
                    )));
                }
            }
        }
        Ok(())
    }
}

#[cfg(feature = "build")]
/// Writes a space file: the fitted maps, the nested code `widths` (ending at the code
/// dimension) and the items' `codes` (`n × code_dim`, row-major, stored in half precision:
/// the caller scales them into its range, see `learn::Fitted::scale_codes`).
pub fn write_space<W: Write + Seek>(
    out: W,
    fitted: &Fitted,
    widths: &[usize],
    codes: &[f32],
    seed: u64,
) -> io::Result<W> {
    let d = fitted.code_dim;
    let n = codes.len() / d.max(1);
    let sections = 5 + widths.len() as u32;
    let mut w = ContainerWriter::with_version(out, SPACE_MAGIC, sections, SPACE_FORMAT_VERSION)?;
    let meta = SpaceMeta {
        n_items: n as u64,
        dim: fitted.dim as u32,
        code_dim: d as u32,
        n_bands: widths.len() as u32,
        kind: fitted.kind.code(),
        n_fit_queries: fitted.n_fit_queries as u32,
        n_fit_items: fitted.n_fit_items as u32,
        seed,
        captured: fitted.captured,
        code_type: CODE_TYPE_F16,
        reserved: [0; 3],
    };
    w.section(section::META, 0, bytemuck::bytes_of(&meta))?;
    let widths32: Vec<u32> = widths.iter().map(|&x| x as u32).collect();
    w.section(section::WIDTHS, 0, bytemuck::cast_slice(&widths32))?;
    w.section(
        section::QUERY_MAP,
        0,
        bytemuck::cast_slice(&fitted.query_map),
    )?;
    w.section(section::ITEM_MAP, 0, bytemuck::cast_slice(&fitted.item_map))?;
    w.section(section::SPECTRUM, 0, bytemuck::cast_slice(&fitted.spectrum))?;
    let mut start = 0;
    for (b, &end) in widths.iter().enumerate() {
        let stride = code_stride(end - start);
        let mut line = vec![0u16; stride];
        w.begin_section(section::CODE_BAND, b as u32)?;
        for row in codes.chunks_exact(d) {
            for (o, &x) in line.iter_mut().zip(&row[start..end]) {
                *o = crate::simd::to_f16_bits(x);
            }
            w.write_all(bytemuck::cast_slice(&line))?;
        }
        w.end_section()?;
        start = end;
    }
    w.finish()
}
