//! Streaming writer for the container format.

use super::{
    header_crc, FileHeader, SectionEntry, BASE_FORMAT_VERSION, ENTRY_LEN, HEADER_LEN, SECTION_ALIGN,
};
use std::io::{self, Seek, SeekFrom, Write};

/// Writes a container: sections are streamed one after another, and the header and section
/// table are written last, at offset 0, once every section's offset and CRC are known.
pub struct ContainerWriter<W: Write + Seek> {
    out: W,
    magic: [u8; 8],
    version: u32,
    capacity: u32,
    sections: Vec<SectionEntry>,
    pos: u64,
    open: Option<(SectionEntry, crc32fast::Hasher)>,
}

impl<W: Write + Seek> ContainerWriter<W> {
    /// Starts a file of kind `magic` with room for `section_count` sections, written with
    /// [`BASE_FORMAT_VERSION`] (a layout unchanged since the first format).
    pub fn new(out: W, magic: [u8; 8], section_count: u32) -> io::Result<Self> {
        Self::with_version(out, magic, section_count, BASE_FORMAT_VERSION)
    }

    /// [`ContainerWriter::new`] for a file whose layout needs format version `version`.
    pub fn with_version(
        mut out: W,
        magic: [u8; 8],
        section_count: u32,
        version: u32,
    ) -> io::Result<Self> {
        let table_end = (HEADER_LEN + ENTRY_LEN * section_count as usize) as u64;
        out.seek(SeekFrom::Start(0))?;
        out.write_all(&vec![0u8; table_end as usize])?;
        Ok(ContainerWriter {
            out,
            magic,
            version,
            capacity: section_count,
            sections: Vec::with_capacity(section_count as usize),
            pos: table_end,
            open: None,
        })
    }

    fn pad_to_alignment(&mut self) -> io::Result<()> {
        let rem = (self.pos % SECTION_ALIGN as u64) as usize;
        if rem != 0 {
            let pad = SECTION_ALIGN - rem;
            self.out.write_all(&[0u8; SECTION_ALIGN][..pad])?;
            self.pos += pad as u64;
        }
        Ok(())
    }

    /// Opens a section; its data follows through [`Write`] until [`Self::end_section`].
    pub fn begin_section(&mut self, kind: u32, index: u32) -> io::Result<()> {
        if self.open.is_some() {
            return Err(io::Error::other("section opened while another is open"));
        }
        if self.sections.len() as u32 >= self.capacity {
            return Err(io::Error::other("more sections than declared"));
        }
        self.pad_to_alignment()?;
        let entry = SectionEntry {
            kind,
            index,
            offset: self.pos,
            len: 0,
            crc32: 0,
            reserved: 0,
        };
        self.open = Some((entry, crc32fast::Hasher::new()));
        Ok(())
    }

    /// Closes the open section, recording its length and CRC.
    pub fn end_section(&mut self) -> io::Result<()> {
        let (mut entry, hasher) = self
            .open
            .take()
            .ok_or_else(|| io::Error::other("end_section without an open section"))?;
        entry.len = self.pos - entry.offset;
        entry.crc32 = hasher.finalize();
        self.sections.push(entry);
        Ok(())
    }

    /// Writes a whole section at once.
    pub fn section(&mut self, kind: u32, index: u32, data: &[u8]) -> io::Result<()> {
        self.begin_section(kind, index)?;
        self.write_all(data)?;
        self.end_section()
    }

    /// Writes the header and section table and returns the underlying writer.
    pub fn finish(mut self) -> io::Result<W> {
        if self.open.is_some() {
            return Err(io::Error::other("finish with a section still open"));
        }
        if self.sections.len() as u32 != self.capacity {
            return Err(io::Error::other(format!(
                "declared {} sections, wrote {}",
                self.capacity,
                self.sections.len()
            )));
        }
        let table: Vec<u8> = bytemuck::cast_slice(&self.sections).to_vec();
        let mut header = FileHeader {
            magic: self.magic,
            format_version: self.version,
            section_count: self.capacity,
            file_len: self.pos,
            header_crc32: 0,
            reserved0: 0,
            reserved: [0; 4],
        };
        header.header_crc32 = header_crc(&header, &table);
        self.out.flush()?;
        self.out.seek(SeekFrom::Start(0))?;
        self.out.write_all(bytemuck::bytes_of(&header))?;
        self.out.write_all(&table)?;
        self.out.seek(SeekFrom::Start(self.pos))?;
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write + Seek> Write for ContainerWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some((_, hasher)) = self.open.as_mut() else {
            return Err(io::Error::other("write outside a section"));
        };
        let n = self.out.write(buf)?;
        hasher.update(&buf[..n]);
        self.pos += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
