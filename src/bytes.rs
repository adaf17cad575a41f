//! Read-only byte buffers that index files are parsed from.
//!
//! The core of the crate takes bytes ([`Bytes`] derefs to `[u8]`); only [`Bytes::map_file`]
//! touches the file system, and it is the crate's one file mapper (index files and, through
//! `ingest`, input vector files). Both variants start on a 64-byte boundary, so sections that the
//! format aligns to 64 bytes within the file are aligned in memory too.

use std::fs::File;
use std::ops::Deref;
use std::path::Path;

/// One 64-byte aligned block of an owned buffer.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Block([u8; 64]);

/// An immutable byte buffer: a read-only memory map of a file, or an owned aligned copy.
pub struct Bytes(Inner);

enum Inner {
    /// A read-only memory map of a published (never rewritten) index file.
    Mapped(memmap2::Mmap),
    /// Bytes held in memory, 64-byte aligned; only the first `len` bytes are meaningful.
    Owned { blocks: Vec<Block>, len: usize },
    /// A read-only anonymous mapping advised for transparent huge pages; the bytes are
    /// `map[start..start + len]`, `start` chosen so that they begin on a 2 MiB boundary.
    Anon {
        map: memmap2::Mmap,
        start: usize,
        len: usize,
    },
}

/// The size of a transparent huge page on x86-64 and aarch64 (4 KiB base pages).
const HUGE_PAGE: usize = 2 << 20;

impl Bytes {
    /// Maps `path` read-only.
    ///
    /// A zero-length file cannot be mapped; it is returned as an empty owned buffer so that
    /// the parser reports it as truncated.
    pub fn map_file(path: &Path) -> std::io::Result<Bytes> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        if len == 0 {
            return Ok(Bytes::copy_from(&[]));
        }
        // SAFETY: the map is read-only and only ever read as bytes. Index files are published
        // by an atomic rename and never modified in place afterwards (see
        // `index-formats/v1.md`), and input files (`ingest`) must not change while they are
        // read, so the mapped bytes do not change under us. A file truncated by someone else
        // would raise SIGBUS; that is outside the contract of every mmap-based reader.
        let map = unsafe { memmap2::MmapOptions::new().map(&file)? };
        Ok(Bytes(Inner::Mapped(map)))
    }

    /// Copies `data` into a new 64-byte aligned owned buffer.
    pub fn copy_from(data: &[u8]) -> Bytes {
        let mut blocks = vec![Block([0; 64]); data.len().div_ceil(64)];
        let dst: &mut [u8] = bytemuck_blocks_mut(&mut blocks);
        dst[..data.len()].copy_from_slice(data);
        Bytes(Inner::Owned {
            blocks,
            len: data.len(),
        })
    }

    /// Copies `data` into anonymous memory that starts on a 2 MiB boundary and is advised
    /// for transparent huge pages (`MADV_HUGEPAGE`), so random reads over it miss the TLB
    /// far less often than over 4 KiB pages. Where the kernel gives no huge pages the copy
    /// works the same, only without that gain.
    pub fn copy_to_huge_pages(data: &[u8]) -> std::io::Result<Bytes> {
        if data.is_empty() {
            return Ok(Bytes::copy_from(&[]));
        }
        let mut map = memmap2::MmapMut::map_anon(data.len() + HUGE_PAGE)?;
        let start = map.as_ptr().align_offset(HUGE_PAGE).min(HUGE_PAGE);
        #[cfg(target_os = "linux")]
        {
            // Advice is best effort: failure changes performance, never results.
            let _ = map.advise(memmap2::Advice::HugePage);
        }
        map[start..start + data.len()].copy_from_slice(data);
        Ok(Bytes(Inner::Anon {
            map: map.make_read_only()?,
            start,
            len: data.len(),
        }))
    }

    /// Advises the kernel that the mapping will be accessed at random (graph search, cascade),
    /// which turns off read-ahead of neighbouring pages. No-op for owned buffers.
    pub fn advise_random(&self) {
        #[cfg(unix)]
        if let Inner::Mapped(m) = &self.0 {
            // Advice is best effort: failure changes performance, never results.
            let _ = m.advise(memmap2::Advice::Random);
        }
    }
}

/// Zero-initialised, writable memory for `len` values of `T` in an anonymous mapping that
/// starts on a 2 MiB boundary and is advised for transparent huge pages: the graph builder's
/// rows and neighbour lists, which it reads at random (with 4 KiB pages nearly every such
/// read would also miss the TLB). Where the kernel gives no huge pages the memory works the
/// same, only without that gain.
pub struct HugeZeroed<T> {
    map: memmap2::MmapMut,
    start: usize,
    len: usize,
    _values: std::marker::PhantomData<T>,
}

impl<T: bytemuck::Zeroable> HugeZeroed<T> {
    /// `len` zeroed values.
    ///
    /// # Panics
    ///
    /// If the memory cannot be mapped (like a `Vec` that cannot allocate).
    pub fn new(len: usize) -> HugeZeroed<T> {
        assert!(std::mem::align_of::<T>() <= HUGE_PAGE);
        let bytes = len
            .checked_mul(std::mem::size_of::<T>())
            .expect("size overflows usize");
        let map = memmap2::MmapMut::map_anon(bytes + HUGE_PAGE)
            .unwrap_or_else(|e| panic!("cannot map {bytes} bytes of anonymous memory: {e}"));
        #[cfg(target_os = "linux")]
        {
            // Advice is best effort: failure changes performance, never results.
            let _ = map.advise(memmap2::Advice::HugePage);
        }
        let start = map.as_ptr().align_offset(HUGE_PAGE).min(HUGE_PAGE);
        HugeZeroed {
            map,
            start,
            len,
            _values: std::marker::PhantomData,
        }
    }
}

impl<T> Deref for HugeZeroed<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: the mapping holds `start + len · size_of::<T>()` bytes (see `new`), `start`
        // is a multiple of 2 MiB (so of `align_of::<T>()`), anonymous memory starts zeroed and
        // `T: Zeroable` (checked in `new`, the only constructor) makes zero bytes a valid `T`;
        // the slice borrows `self`.
        unsafe {
            std::slice::from_raw_parts(self.map.as_ptr().add(self.start) as *const T, self.len)
        }
    }
}

impl<T> std::ops::DerefMut for HugeZeroed<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, with the unique borrow of `self`.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.map.as_mut_ptr().add(self.start) as *mut T,
                self.len,
            )
        }
    }
}

fn bytemuck_blocks_mut(blocks: &mut [Block]) -> &mut [u8] {
    // SAFETY: `Block` is `repr(C)` of `[u8; 64]` with no padding, so a slice of n blocks is
    // exactly 64 * n initialised bytes with the lifetime and mutability of the input.
    unsafe { std::slice::from_raw_parts_mut(blocks.as_mut_ptr() as *mut u8, blocks.len() * 64) }
}

fn blocks_as_bytes(blocks: &[Block]) -> &[u8] {
    // SAFETY: as in `bytemuck_blocks_mut`, for a shared slice.
    unsafe { std::slice::from_raw_parts(blocks.as_ptr() as *const u8, blocks.len() * 64) }
}

impl Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.0 {
            Inner::Mapped(m) => m,
            Inner::Owned { blocks, len } => &blocks_as_bytes(blocks)[..*len],
            Inner::Anon { map, start, len } => &map[*start..*start + *len],
        }
    }
}

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.0 {
            Inner::Mapped(_) => "mapped",
            Inner::Owned { .. } => "owned",
            Inner::Anon { .. } => "huge-page copy",
        };
        write!(f, "Bytes({kind}, {} bytes)", self.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_zeroed_is_zeroed_aligned_and_writable() {
        let mut v: HugeZeroed<u32> = HugeZeroed::new(3_000_000);
        assert_eq!(v.len(), 3_000_000);
        assert_eq!(v.as_ptr() as usize % HUGE_PAGE, 0);
        assert!(v.iter().all(|&x| x == 0));
        v[2_999_999] = 7;
        assert_eq!(v[2_999_999], 7);
        assert!(HugeZeroed::<u64>::new(0).is_empty());
    }

    #[test]
    fn owned_bytes_are_aligned_and_exact() {
        let data: Vec<u8> = (0..200u32).map(|i| i as u8).collect();
        let b = Bytes::copy_from(&data);
        assert_eq!(&*b, &data[..]);
        assert_eq!(b.as_ptr() as usize % 64, 0);
        assert!(Bytes::copy_from(&[]).is_empty());
    }

    #[test]
    fn huge_page_copies_are_exact_and_aligned() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
        let b = Bytes::copy_to_huge_pages(&data).unwrap();
        assert_eq!(&*b, &data[..]);
        assert_eq!(b.as_ptr() as usize % HUGE_PAGE, 0);
        assert!(Bytes::copy_to_huge_pages(&[]).unwrap().is_empty());
    }
}
