//! Files of one JSON record per line, appended (the erasure ledger, the
//! decision log's checkpoints): a crash, or a full disk, while appending
//! can leave a last line without its newline. It is cut off before the
//! next append, under the file's lock; else the next line would be glued
//! to it, and the file would hold a bad line inside for good.

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
