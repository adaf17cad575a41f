//! User sequences in the P5 text format: one user per line, `user item item ...`, ids as
//! decimal integers separated by whitespace, oldest item first. Blank lines are skipped.
//!
//! The reader streams the file line by line, so its memory follows the ids it returns, and a
//! line longer than [`MAX_LINE_BYTES`] (a history of about two million ids) is an error
//! rather than an allocation the size of the file.

use super::IngestError;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// The longest line accepted, in bytes (16 MiB).
pub const MAX_LINE_BYTES: usize = 16 << 20;

/// Reads the sequences file at `path`: one `Vec` of item ids per non-blank line (the user id
/// in the first field is dropped).
pub fn read_sequences(path: &Path) -> Result<Vec<Vec<u64>>, IngestError> {
    let file = std::fs::File::open(path).map_err(|source| IngestError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_sequences(BufReader::with_capacity(1 << 16, file), path)
}

/// [`read_sequences`] on any reader; `path` names the source in errors.
pub fn parse_sequences<R: BufRead>(
    mut reader: R,
    path: &Path,
) -> Result<Vec<Vec<u64>>, IngestError> {
    let bad = |line: usize, reason: String| IngestError::BadSequences {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let mut line_no = 0usize;
    loop {
        buf.clear();
        line_no += 1;
        // One byte past the limit tells a line of exactly the limit from a longer one.
        let read = (&mut reader)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|source| IngestError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        if read == 0 {
            break;
        }
        if buf.len() > MAX_LINE_BYTES {
            return Err(bad(
                line_no,
                format!("longer than {MAX_LINE_BYTES} bytes; split the history or check the file"),
            ));
        }
        let text = std::str::from_utf8(&buf)
            .map_err(|e| bad(line_no, format!("not valid UTF-8 text: {e}")))?;
        let mut fields = text.split_whitespace();
        if fields.next().is_none() {
            continue;
        }
        let items = fields
            .map(|f| {
                f.parse::<u64>().map_err(|e| {
                    let shown: String = f.chars().take(24).collect();
                    bad(line_no, format!("item id {shown:?}: {e}"))
                })
            })
            .collect::<Result<Vec<u64>, _>>()?;
        out.push(items);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &[u8]) -> Result<Vec<Vec<u64>>, IngestError> {
        parse_sequences(text, Path::new("seq.txt"))
    }

    #[test]
    fn parses_users_and_skips_blank_lines() {
        let got = parse(b"1 10 11 12\n\n  \n2 7\r\n3").unwrap();
        assert_eq!(got, vec![vec![10, 11, 12], vec![7], vec![]]);
    }

    #[test]
    fn bad_id_names_the_line() {
        let err = parse(b"1 2 3\n2 4 x5\n").unwrap_err().to_string();
        assert!(err.contains("seq.txt: line 2: item id \"x5\""), "{err}");
        let err = parse(b"1 -4\n").unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
        let err = parse(b"1 2\n\xff\xfe\n").unwrap_err().to_string();
        assert!(err.contains("line 2: not valid UTF-8"), "{err}");
    }

    #[test]
    fn a_line_past_the_limit_is_an_error_not_an_allocation() {
        // An endless line: the reader stops one byte past the limit.
        let endless = std::io::repeat(b'7');
        let err = parse_sequences(BufReader::new(endless), Path::new("seq.txt"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1: longer than 16777216 bytes"), "{err}");
    }
}
