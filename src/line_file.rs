//! Files of lines and their last line.
//!
//! Files of one JSON record per line, appended (the erasure ledger, the
//! decision log's checkpoints): a crash, or a full disk, while appending
//! can leave a last line without its newline. It is cut off before the
//! next append, under the file's lock; else the next line would be glued
//! to it, and the file would hold a bad line inside for good.
//!
//! Input files (registry lists, contact records): a download or a copy
//! interrupted mid-line leaves a last line without its line end, and a
//! number cut short may be another valid number (`0169772345` from
//! `01697723450`, a 9-digit Italian mobile from a 10-digit one): such a
//! file is refused unless the operator says it is whole (found by review:
//! the fragment was listed, or cleared, or given a consent).

use std::path::Path;

/// A last line without its newline is a torn append (a crash while
/// writing; its change was not made): cut off, and the cut fsync'd, before
/// anything is appended after it (which would make it a bad line inside).
pub fn cut_torn_tail(path: &Path, what: &str) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    // Back from the end, a block at a time, to the last newline.
    let mut end = len;
    let mut keep = 0;
    let mut block = vec![0u8; 4096];
    while end > 0 {
        let start = end.saturating_sub(block.len() as u64);
        let part = &mut block[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(part)?;
        if end == len && part.last() == Some(&b'\n') {
            return Ok(());
        }
        if let Some(at) = part.iter().rposition(|&b| b == b'\n') {
            keep = start + at as u64 + 1;
            break;
        }
        end = start;
    }
    tracing::warn!(path = %path.display(), bytes = len - keep, "{what}: torn last line cut off");
    file.set_len(keep)?;
    file.sync_all()
}

/// Whether a plain input file's last line has no line end (`\n`, or `\r`
/// alone). A gzip or zip file is never: each carries a checksum that tells
/// a file cut short when it is read. An empty file has no last line.
///
/// # Errors
/// The file cannot be read.
pub fn ends_mid_line(path: &Path) -> std::io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    let mut magic = [0u8; 4];
    let n = file.read(&mut magic)?;
    if (n >= 2 && magic[..2] == [0x1f, 0x8b]) || (n == 4 && magic == *b"PK\x03\x04") {
        return Ok(false);
    }
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(false);
    }
    file.seek(SeekFrom::Start(len - 1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    Ok(!matches!(last[0], b'\n' | b'\r'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_a_last_line_without_its_end_is_told() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, bytes: &[u8]| {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            ends_mid_line(&path).unwrap()
        };
        assert!(file("cut.txt", b"+393331234567\n+39333123456"));
        assert!(file("one.txt", b"+393331234567"));
        assert!(!file("whole.txt", b"+393331234567\n"));
        assert!(!file("crlf.txt", b"+393331234567\r\n"));
        assert!(!file("cr.txt", b"+393331234567\r"));
        assert!(!file("empty.txt", b""));
        // gzip and zip: their checksums tell a file cut short.
        assert!(!file("list.gz", b"\x1f\x8b\x08\x00cut"));
        assert!(!file("list.zip", b"PK\x03\x04cut"));
    }
}
