//! The `.npy` format: parsing headers (format versions 1.0, 2.0 and 3.0) and writing them
//! (version 1.0, or 2.0 when the header does not fit in 64 KiB).
//!
//! A `.npy` file is the magic `\x93NUMPY`, a major and a minor version byte, a little-endian
//! header length (`u16` for 1.0, `u32` for 2.0 and 3.0), then a Python dict literal such as
//! `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }` padded with spaces and a
//! newline, then the raw array data.

use std::path::Path;

use super::IngestError;

/// The six magic bytes every `.npy` file starts with.
pub(crate) const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// Data offsets written by [`encode_header`] are multiples of this.
const WRITE_ALIGN: usize = 64;

/// The parsed header of a `.npy` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NpyHeader {
    /// The `descr` entry: the dtype string (`"<f4"`), or the raw source text when it is not a
    /// plain string (a structured dtype list).
    pub(crate) descr: String,
    /// Whether `descr` was a plain string (and not a structured dtype list).
    pub(crate) descr_is_simple: bool,
    /// The `fortran_order` entry.
    pub(crate) fortran_order: bool,
    /// The `shape` entry.
    pub(crate) shape: Vec<usize>,
    /// Byte offset of the array data from the start of the file.
    pub(crate) data_offset: usize,
}

impl NpyHeader {
    /// Number of elements, `product(shape)`, or `None` on overflow.
    pub(crate) fn element_count(&self) -> Option<usize> {
        self.shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
    }
}

/// The element code (`f4`, `u8`, …) of `header`'s dtype if it is a simple little-endian one
/// in `accepted`; otherwise [`IngestError::UnsupportedDtype`] expecting `expected` (or
/// `expected_le` for a big-endian dtype of an accepted code).
pub(crate) fn element_code<'h>(
    path: &Path,
    header: &'h NpyHeader,
    accepted: &[&str],
    expected: &'static str,
    expected_le: &'static str,
) -> Result<&'h str, IngestError> {
    let unsupported = |expected| IngestError::UnsupportedDtype {
        path: path.to_path_buf(),
        descr: header.descr.clone(),
        expected,
    };
    if !header.descr_is_simple {
        return Err(unsupported(expected));
    }
    let (order, code) = split_descr(&header.descr);
    if !accepted.contains(&code) {
        return Err(unsupported(expected));
    }
    if order == ByteOrder::Big {
        return Err(unsupported(expected_le));
    }
    Ok(code)
}

/// Byte order of a dtype, as read from its `descr` prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ByteOrder {
    /// Little-endian (`<`, or `=`/no prefix on a little-endian host, or `|`).
    Little,
    /// Big-endian (`>`, or `=`/no prefix on a big-endian host).
    Big,
}

/// Splits a simple dtype string such as `"<f4"` into its byte order and type code (`"f4"`).
///
/// `|` ("not applicable") is read as little-endian: numpy writes it only for one-byte types,
/// where the order does not matter, and hand-written files that use it for wider types are
/// almost always little-endian.
pub(crate) fn split_descr(descr: &str) -> (ByteOrder, &str) {
    let native = if cfg!(target_endian = "little") {
        ByteOrder::Little
    } else {
        ByteOrder::Big
    };
    match descr.as_bytes().first() {
        Some(b'<') | Some(b'|') => (ByteOrder::Little, &descr[1..]),
        Some(b'>') | Some(b'!') => (ByteOrder::Big, &descr[1..]),
        Some(b'=') => (native, &descr[1..]),
        _ => (native, descr),
    }
}

/// Parses the magic, version, header length and header dict at the start of `bytes`.
///
/// `bytes` is the whole file; the data itself is not looked at.
pub(crate) fn parse_header(path: &Path, bytes: &[u8]) -> Result<NpyHeader, IngestError> {
    let bad = |reason: String| IngestError::BadHeader {
        path: path.to_path_buf(),
        reason,
    };
    if bytes.len() < MAGIC.len() {
        if MAGIC.starts_with(bytes) && !bytes.is_empty() {
            return Err(bad(format!(
                "file is only {} bytes long and ends inside the magic string",
                bytes.len()
            )));
        }
        return Err(not_npy(path, bytes));
    }
    if &bytes[..MAGIC.len()] != MAGIC {
        return Err(not_npy(path, bytes));
    }
    let (major, minor) = match (bytes.get(6), bytes.get(7)) {
        (Some(&major), Some(&minor)) => (major, minor),
        _ => {
            return Err(bad(format!(
                "file is only {} bytes long and ends before the format version",
                bytes.len()
            )))
        }
    };
    let (len_field, header_start) = match major {
        1 => (2usize, 10usize),
        2 | 3 => (4, 12),
        _ => {
            return Err(bad(format!(
                "unsupported .npy format version {major}.{minor}; expected 1.0, 2.0 or 3.0"
            )))
        }
    };
    let len_bytes = bytes.get(8..8 + len_field).ok_or_else(|| {
        bad(format!(
            "file is only {} bytes long and ends inside the header length field",
            bytes.len()
        ))
    })?;
    let header_len = len_bytes
        .iter()
        .rev()
        .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
    let data_offset = header_start
        .checked_add(header_len)
        .ok_or_else(|| bad(format!("header length {header_len} is too large")))?;
    let text = bytes.get(header_start..data_offset).ok_or_else(|| {
        bad(format!(
            "header length field says {header_len} bytes but the file has only {} bytes after it",
            bytes.len().saturating_sub(header_start)
        ))
    })?;
    let text =
        std::str::from_utf8(text).map_err(|e| bad(format!("header is not valid text: {e}")))?;
    let dict = parse_dict(text).map_err(&bad)?;
    let mut descr = None;
    let mut fortran_order = None;
    let mut shape = None;
    for (key, value) in dict {
        match key.as_str() {
            "descr" => {
                descr = Some(match value.value {
                    Value::Str(s) => (s, true),
                    _ => (value.raw.to_string(), false),
                })
            }
            "fortran_order" => match value.value {
                Value::Bool(b) => fortran_order = Some(b),
                _ => {
                    return Err(bad(format!(
                        "'fortran_order' must be True or False, found {}",
                        value.raw
                    )))
                }
            },
            "shape" => {
                let dims = match value.value {
                    Value::Tuple(items) => items,
                    _ => {
                        return Err(bad(format!(
                            "'shape' must be a tuple of integers, found {}",
                            value.raw
                        )))
                    }
                };
                let mut out = Vec::with_capacity(dims.len());
                for d in dims {
                    match d {
                        Value::Int(n) => match usize::try_from(n) {
                            Ok(n) => out.push(n),
                            Err(_) => {
                                return Err(bad(format!(
                                    "'shape' {} has a negative or too large dimension {n}",
                                    value.raw
                                )))
                            }
                        },
                        _ => {
                            return Err(bad(format!(
                                "'shape' must be a tuple of integers, found {}",
                                value.raw
                            )))
                        }
                    }
                }
                shape = Some(out);
            }
            // numpy itself rejects unknown keys; being lenient here costs nothing.
            _ => {}
        }
    }
    let (descr, descr_is_simple) = descr.ok_or_else(|| bad("missing key 'descr'".into()))?;
    let fortran_order = fortran_order.ok_or_else(|| bad("missing key 'fortran_order'".into()))?;
    let shape = shape.ok_or_else(|| bad("missing key 'shape'".into()))?;
    Ok(NpyHeader {
        descr,
        descr_is_simple,
        fortran_order,
        shape,
        data_offset,
    })
}

/// The [`IngestError::NotNpy`] error for a file that lacks the magic, showing its first bytes.
fn not_npy(path: &Path, bytes: &[u8]) -> IngestError {
    let head = &bytes[..bytes.len().min(16)];
    IngestError::NotNpy {
        path: path.to_path_buf(),
        found: format!("\"{}\"", head.escape_ascii()),
    }
}

/// Builds a version 1.0 header (version 2.0 if it would not fit) for a C-order array, padded
/// with spaces and a final newline so that the data starts at a multiple of 64 bytes.
pub(crate) fn encode_header(descr: &str, shape: &[usize]) -> Vec<u8> {
    let shape_text = match shape {
        [one] => format!("({one},)"),
        dims => {
            let parts: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
            format!("({})", parts.join(", "))
        }
    };
    let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_text}, }}");
    // Version 1.0 has a u16 header length after 10 bytes of preamble; version 2.0 a u32 after 12.
    let (major, preamble) = if 10 + dict.len() + WRITE_ALIGN <= usize::from(u16::MAX) {
        (1u8, 10usize)
    } else {
        (2u8, 12usize)
    };
    let unpadded = preamble + dict.len() + 1; // + the trailing newline
    let total = unpadded.div_ceil(WRITE_ALIGN) * WRITE_ALIGN;
    let header_len = total - preamble;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(MAGIC);
    out.push(major);
    out.push(0);
    if major == 1 {
        // Fits: checked above.
        let len = u16::try_from(header_len).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_le_bytes());
    } else {
        let len = u32::try_from(header_len).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out.resize(total - 1, b' ');
    out.push(b'\n');
    out
}

/// A Python literal value as it appears in a `.npy` header.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Str(String),
    Bool(bool),
    None,
    Int(i128),
    Tuple(Vec<Value>),
}

/// A parsed value together with its source text (for error messages).
#[derive(Debug)]
struct Spanned<'a> {
    value: Value,
    raw: &'a str,
}

/// Parses the header dict: `{ 'key': value, ... }` with optional trailing comma, any
/// whitespace, and trailing padding after the closing brace.
fn parse_dict(text: &str) -> Result<Vec<(String, Spanned<'_>)>, String> {
    let mut p = Parser {
        text,
        pos: 0,
        depth: 0,
    };
    p.skip_ws();
    p.expect(b'{')?;
    let mut entries: Vec<(String, Spanned<'_>)> = Vec::new();
    loop {
        p.skip_ws();
        if p.eat(b'}') {
            break;
        }
        let key = match p.value()? {
            Value::Str(s) => s,
            other => {
                return Err(format!(
                    "expected a quoted key in the header dict, found {other:?}"
                ))
            }
        };
        p.skip_ws();
        p.expect(b':')?;
        p.skip_ws();
        let start = p.pos;
        let value = p.value()?;
        let raw = &text[start..p.pos];
        if entries.iter().any(|(k, _)| *k == key) {
            return Err(format!("duplicate key '{key}' in the header dict"));
        }
        entries.push((key, Spanned { value, raw }));
        p.skip_ws();
        if p.eat(b',') {
            continue;
        }
        p.skip_ws();
        p.expect(b'}')?;
        break;
    }
    p.skip_ws();
    if p.pos != text.len() {
        return Err(format!(
            "unexpected text after the header dict: {:?}",
            text[p.pos..].chars().take(20).collect::<String>()
        ));
    }
    Ok(entries)
}

/// How deeply tuples and lists may nest in a header. numpy's own headers nest at most a few
/// levels (structured dtypes); the limit keeps a crafted header of millions of `(` from
/// exhausting the stack of the recursive parser.
const MAX_NESTING: usize = 32;

/// A cursor over the header text.
struct Parser<'a> {
    text: &'a str,
    pos: usize,
    /// Tuples and lists open at the cursor.
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(
            self.peek(),
            Some(b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' | b'\x0b')
        ) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!(
                "expected '{}' at offset {} of the header dict, found {}",
                char::from(c),
                self.pos,
                self.describe_here()
            ))
        }
    }

    fn describe_here(&self) -> String {
        match self.text[self.pos..].chars().next() {
            Some(c) => format!("{c:?}"),
            None => "the end of the header".to_string(),
        }
    }

    fn value(&mut self) -> Result<Value, String> {
        self.skip_ws();
        match self.peek() {
            Some(q @ (b'\'' | b'"')) => self.string(q),
            Some(b'(' | b'[') => self.sequence(),
            Some(c) if c.is_ascii_digit() || c == b'-' || c == b'+' => self.int(),
            Some(c) if c.is_ascii_alphabetic() => {
                let start = self.pos;
                while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == b'_') {
                    self.pos += 1;
                }
                match &self.text[start..self.pos] {
                    "True" => Ok(Value::Bool(true)),
                    "False" => Ok(Value::Bool(false)),
                    "None" => Ok(Value::None),
                    word => Err(format!(
                        "unexpected word {word:?} at offset {start} of the header dict"
                    )),
                }
            }
            _ => Err(format!(
                "expected a value at offset {} of the header dict, found {}",
                self.pos,
                self.describe_here()
            )),
        }
    }

    fn string(&mut self, quote: u8) -> Result<Value, String> {
        let start = self.pos;
        self.pos += 1;
        let mut out = String::new();
        loop {
            let rest = &self.text[self.pos..];
            let mut chars = rest.chars();
            match chars.next() {
                None => return Err(format!("unterminated string starting at offset {start}")),
                Some(c) if c == char::from(quote) => {
                    self.pos += 1;
                    return Ok(Value::Str(out));
                }
                Some('\\') => match chars.next() {
                    None => return Err(format!("unterminated string starting at offset {start}")),
                    Some(e) => {
                        out.push(e);
                        self.pos += 1 + e.len_utf8();
                    }
                },
                Some(c) => {
                    out.push(c);
                    self.pos += c.len_utf8();
                }
            }
        }
    }

    fn sequence(&mut self) -> Result<Value, String> {
        if self.depth >= MAX_NESTING {
            return Err(format!(
                "tuples or lists nested deeper than {MAX_NESTING} levels at offset {} of the header dict",
                self.pos
            ));
        }
        self.depth += 1;
        let value = self.sequence_items();
        self.depth -= 1;
        value
    }

    fn sequence_items(&mut self) -> Result<Value, String> {
        let close = if self.eat(b'(') {
            b')'
        } else {
            self.expect(b'[')?;
            b']'
        };
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            if self.eat(close) {
                return Ok(Value::Tuple(items));
            }
            items.push(self.value()?);
            self.skip_ws();
            if self.eat(b',') {
                continue;
            }
            self.expect(close)?;
            return Ok(Value::Tuple(items));
        }
    }

    fn int(&mut self) -> Result<Value, String> {
        let start = self.pos;
        if matches!(self.peek(), Some(b'-' | b'+')) {
            self.pos += 1;
        }
        while matches!(self.peek(), Some(c) if c.is_ascii_digit()) {
            self.pos += 1;
        }
        let digits = &self.text[start..self.pos];
        // Python 2 era numpy wrote long integers with an `L` suffix: `(3L, 4L)`.
        if matches!(self.peek(), Some(b'L' | b'l')) {
            self.pos += 1;
        }
        digits
            .parse::<i128>()
            .map(Value::Int)
            .map_err(|_| format!("bad integer {digits:?} at offset {start} of the header dict"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with_header(major: u8, dict: &str) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.push(major);
        out.push(0);
        if major == 1 {
            out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
        } else {
            out.extend_from_slice(&(dict.len() as u32).to_le_bytes());
        }
        out.extend_from_slice(dict.as_bytes());
        out
    }

    fn parse(bytes: &[u8]) -> Result<NpyHeader, IngestError> {
        parse_header(Path::new("t.npy"), bytes)
    }

    #[test]
    fn parses_numpy_v1_header() {
        let h = parse(&encode_header("<f4", &[3, 4])).unwrap();
        assert_eq!(h.descr, "<f4");
        assert!(h.descr_is_simple);
        assert!(!h.fortran_order);
        assert_eq!(h.shape, vec![3, 4]);
        assert_eq!(h.data_offset % 64, 0);
        assert_eq!(h.element_count(), Some(12));
    }

    #[test]
    fn encoded_header_is_padded_to_64_and_ends_in_newline() {
        for shape in [&[0usize][..], &[7], &[1, 2], &[123456789, 1024], &[1, 2, 3]] {
            let h = encode_header("<f4", shape);
            assert_eq!(h.len() % 64, 0);
            assert_eq!(h.last(), Some(&b'\n'));
            assert_eq!(h[6], 1);
            let parsed = parse(&h).unwrap();
            assert_eq!(parsed.shape, shape);
            assert_eq!(parsed.data_offset, h.len());
        }
    }

    #[test]
    fn one_d_shape_written_with_trailing_comma() {
        let h = encode_header("<u8", &[5]);
        let text = String::from_utf8_lossy(&h);
        assert!(text.contains("'shape': (5,)"), "{text}");
    }

    #[test]
    fn keys_in_any_order_with_odd_whitespace_v2() {
        let dict = "{ \"shape\" :( 2 ,3L ) ,\n'fortran_order':False,'descr'  :  '<f2'   }   \n";
        let bytes = file_with_header(2, dict);
        let h = parse(&bytes).unwrap();
        assert_eq!(h.descr, "<f2");
        assert_eq!(h.shape, vec![2, 3]);
        assert_eq!(h.data_offset, 12 + dict.len());
    }

    #[test]
    fn v3_header_accepted() {
        let bytes = file_with_header(
            3,
            "{'descr': '<f8', 'fortran_order': True, 'shape': (1, 1)}\n",
        );
        let h = parse(&bytes).unwrap();
        assert!(h.fortran_order);
        assert_eq!(h.descr, "<f8");
    }

    #[test]
    fn structured_descr_kept_raw() {
        let bytes = file_with_header(
            1,
            "{'descr': [('a', '<f4'), ('b', '<i8')], 'fortran_order': False, 'shape': (2,), }",
        );
        let h = parse(&bytes).unwrap();
        assert!(!h.descr_is_simple);
        assert_eq!(h.descr, "[('a', '<f4'), ('b', '<i8')]");
    }

    #[test]
    fn missing_key_and_bad_values_are_bad_header() {
        for dict in [
            "{'descr': '<f4', 'shape': (2,)}",
            "{'descr': '<f4', 'fortran_order': 0, 'shape': (2,)}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (-2,)}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': 2}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} x",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} ééééééééééééééééééé",
            "{'déscr': '<f4', 'fortran_order': False, 'shape': (2,), 'é': é}",
            "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}",
            "{'descr': '<f4, 'fortran_order': False, 'shape': (2,)}",
            "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2,)}",
            "",
        ] {
            let err = parse(&file_with_header(1, dict)).unwrap_err();
            assert!(
                matches!(err, IngestError::BadHeader { .. }),
                "{dict}: {err}"
            );
            assert!(err.to_string().starts_with("t.npy: "), "{err}");
        }
    }

    #[test]
    fn unknown_version_is_bad_header() {
        let mut bytes = encode_header("<f4", &[1, 1]);
        bytes[6] = 4;
        let err = parse(&bytes).unwrap_err();
        assert!(err.to_string().contains("version 4.0"), "{err}");
    }

    #[test]
    fn header_longer_than_file_is_bad_header() {
        let mut bytes = encode_header("<f4", &[1, 1]);
        bytes.truncate(40);
        let err = parse(&bytes).unwrap_err();
        assert!(matches!(err, IngestError::BadHeader { .. }), "{err}");
        let err = parse(&MAGIC[..4]).unwrap_err();
        assert!(matches!(err, IngestError::BadHeader { .. }), "{err}");
        let err = parse(&encode_header("<f4", &[1, 1])[..9]).unwrap_err();
        assert!(matches!(err, IngestError::BadHeader { .. }), "{err}");
    }

    #[test]
    fn missing_magic_is_not_npy_and_shows_bytes() {
        let err = parse(b"0.5 0.25 1.0\n2.0 3.0 4.0\n").unwrap_err();
        assert!(matches!(err, IngestError::NotNpy { .. }), "{err}");
        assert!(err.to_string().contains("0.5 0.25"), "{err}");
        let err = parse(b"ab").unwrap_err();
        assert!(matches!(err, IngestError::NotNpy { .. }), "{err}");
    }

    proptest::proptest! {
        #[test]
        fn header_text_never_panics(
            text in "[{}()\\[\\]',: \"\\\\a-zA-Zé€0-9L-]{0,80}",
            any_text in proptest::prelude::any::<String>(),
        ) {
            let _ = parse(&file_with_header(1, &text));
            let _ = parse(&file_with_header(2, &any_text));
            let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': (2,)}}{text}");
            let _ = parse(&file_with_header(3, &dict));
        }
    }

    #[test]
    fn deeply_nested_header_is_an_error_not_a_stack_overflow() {
        // Two million '(' overflowed the stack of the recursive parser (a signal, exit 134).
        let dict = format!("{{'descr': {}", "(".repeat(2_000_000));
        let err = parse(&file_with_header(2, &dict)).unwrap_err().to_string();
        assert!(err.contains("nested deeper than 32"), "{err}");
        // numpy's own nesting (a structured dtype) still parses.
        let ok = "{'descr': [('a', '<f4', (2, 3))], 'fortran_order': False, 'shape': (4,), }";
        assert!(parse(&file_with_header(1, ok)).is_ok());
    }

    #[test]
    fn split_descr_orders() {
        assert_eq!(split_descr("<f4"), (ByteOrder::Little, "f4"));
        assert_eq!(split_descr("|f4"), (ByteOrder::Little, "f4"));
        assert_eq!(split_descr(">f4"), (ByteOrder::Big, "f4"));
        if cfg!(target_endian = "little") {
            assert_eq!(split_descr("=f8"), (ByteOrder::Little, "f8"));
            assert_eq!(split_descr("f2"), (ByteOrder::Little, "f2"));
        }
    }
}
