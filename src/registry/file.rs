//! Snapshot files: versioned, checksummed, written atomically.
//!
//! Layout: `DGSNAP` magic and a format byte pair, a little-endian u64 header
//! length, the JSON header, each batch's roaring serialisation (u64 length
//! first), and a CRC-32 of everything before it. A file that fails any check
//! is refused as a whole: a registry is never served from partial data.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use jiff::civil::Date;
use roaring::RoaringTreemap;
use serde::{Deserialize, Serialize};

use super::snapshot::{Batch, Snapshot, SnapshotSource};
use crate::model::RegistryKind;

const MAGIC: &[u8; 8] = b"DGSNAP\x00\x01";

/// Why a snapshot file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotFileError {
    #[error("cannot read snapshot {path}: {cause}")]
    Io { path: PathBuf, cause: io::Error },
    #[error("snapshot {path} is corrupt: {problem}")]
    Corrupt { path: PathBuf, problem: String },
}

#[derive(Serialize, Deserialize)]
struct Header {
    registry_id: String,
    kind: RegistryKind,
    country: String,
    version: u64,
    created_at: Timestamp,
    source: SnapshotSource,
    coverage: Option<Vec<String>>,
    batches: Vec<BatchHeader>,
    /// Allow-lists: each controller's last `replace` date (absent in
    /// snapshots written before it was kept).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    replaced: BTreeMap<String, Date>,
}

#[derive(Serialize, Deserialize)]
struct BatchHeader {
    controller: String,
    checked_at: Date,
    numbers: u64,
}

/// The snapshot file of a registry in `dir`.
pub fn snapshot_path(dir: &Path, registry_id: &str) -> PathBuf {
    dir.join(format!("{registry_id}.snap"))
}

/// Encodes a snapshot to bytes.
pub fn encode(snapshot: &Snapshot) -> Vec<u8> {
    let header = Header {
        registry_id: snapshot.registry_id.clone(),
        kind: snapshot.kind,
        country: snapshot.country.clone(),
        version: snapshot.version,
        created_at: snapshot.created_at,
        source: snapshot.source.clone(),
        coverage: snapshot.coverage.clone(),
        replaced: snapshot.replaced.clone(),
        batches: snapshot
            .batches
            .iter()
            .flat_map(|(controller, batches)| {
                batches.iter().map(move |b| BatchHeader {
                    controller: controller.clone(),
                    checked_at: b.checked_at,
                    numbers: b.numbers.len(),
                })
            })
            .collect(),
    };
    let header = serde_json::to_vec(&header).expect("snapshot header serialises");
    let mut out = Vec::with_capacity(64 + header.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(&header);
    for batch in snapshot.batches.values().flatten() {
        out.extend_from_slice(&(batch.numbers.serialized_size() as u64).to_le_bytes());
        batch
            .numbers
            .serialize_into(&mut out)
            .expect("writing to a Vec cannot fail");
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// A reader that checksums what passes through it.
struct CrcReader<R> {
    inner: R,
    hasher: crc32fast::Hasher,
}

impl<R: Read> Read for CrcReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Decodes and verifies a snapshot held in memory.
pub fn decode(bytes: &[u8], path: &Path) -> Result<Snapshot, SnapshotFileError> {
    read_from(bytes, path)
}

/// Decodes and verifies a snapshot as it streams in: the file is never held
/// whole in memory, so loading a new edition next to the one in service
/// costs one snapshot, not two. Nothing is returned unless the checksum over
/// the whole file matches.
pub fn read_from(reader: impl Read, path: &Path) -> Result<Snapshot, SnapshotFileError> {
    let corrupt = |problem: &str| SnapshotFileError::Corrupt {
        path: path.to_path_buf(),
        problem: problem.to_string(),
    };
    let truncated = |what: &'static str| move |_: io::Error| corrupt(&format!("truncated {what}"));
    let mut reader = CrcReader {
        inner: reader,
        hasher: crc32fast::Hasher::new(),
    };
    let mut magic = [0u8; 8];
    reader.read_exact(&mut magic).map_err(truncated("magic"))?;
    if &magic != MAGIC {
        return Err(corrupt(
            "not a dialgate snapshot (bad magic or format version)",
        ));
    }
    let mut len = [0u8; 8];
    reader
        .read_exact(&mut len)
        .map_err(truncated("header length"))?;
    let header_len = u64::from_le_bytes(len);
    if header_len > 64 << 20 {
        return Err(corrupt("implausible header length"));
    }
    let mut header = vec![0u8; header_len as usize];
    reader
        .read_exact(&mut header)
        .map_err(truncated("header"))?;
    let header: Header =
        serde_json::from_slice(&header).map_err(|err| corrupt(&format!("bad header: {err}")))?;
    let mut batches: BTreeMap<String, Vec<Batch>> = BTreeMap::new();
    for batch in &header.batches {
        reader
            .read_exact(&mut len)
            .map_err(truncated("batch length"))?;
        let batch_len = u64::from_le_bytes(len);
        let mut limited = (&mut reader).take(batch_len);
        let numbers = RoaringTreemap::deserialize_from(&mut limited)
            .map_err(|err| corrupt(&format!("bad batch: {err}")))?;
        if limited.limit() != 0 {
            return Err(corrupt("batch shorter than its length"));
        }
        if numbers.len() != batch.numbers {
            return Err(corrupt("batch size does not match its header"));
        }
        batches
            .entry(batch.controller.clone())
            .or_default()
            .push(Batch {
                checked_at: batch.checked_at,
                numbers,
            });
    }
    let computed = reader.hasher.clone().finalize();
    let mut stored = [0u8; 4];
    reader
        .inner
        .read_exact(&mut stored)
        .map_err(truncated("checksum"))?;
    if u32::from_le_bytes(stored) != computed {
        return Err(corrupt("checksum mismatch"));
    }
    let mut rest = [0u8; 1];
    if reader.inner.read(&mut rest).map_err(truncated("end"))? != 0 {
        return Err(corrupt("trailing bytes after the checksum"));
    }
    Ok(Snapshot {
        registry_id: header.registry_id,
        kind: header.kind,
        country: header.country,
        version: header.version,
        created_at: header.created_at,
        source: header.source,
        coverage: header.coverage,
        batches,
        replaced: header.replaced,
        texts: Default::default(),
    })
}

/// Reads the snapshot of a registry; `Ok(None)` if it has none yet.
pub fn read(dir: &Path, registry_id: &str) -> Result<Option<Snapshot>, SnapshotFileError> {
    let path = snapshot_path(dir, registry_id);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(cause) => return Err(SnapshotFileError::Io { path, cause }),
    };
    let snapshot = read_from(io::BufReader::with_capacity(1 << 20, file), &path)?;
    if snapshot.registry_id != registry_id {
        return Err(SnapshotFileError::Corrupt {
            path,
            problem: format!("holds registry {:?}", snapshot.registry_id),
        });
    }
    Ok(Some(snapshot))
}

/// Writes a snapshot atomically: temporary file, fsync, rename, fsync of the
/// directory. A crash at any point leaves the previous snapshot in place.
pub fn write(dir: &Path, snapshot: &Snapshot) -> io::Result<PathBuf> {
    crate::private::create_dir_all(dir)?;
    let path = snapshot_path(dir, &snapshot.registry_id);
    let tmp = dir.join(format!(
        "{}.snap.tmp-{}",
        snapshot.registry_id,
        std::process::id()
    ));
    let bytes = encode(snapshot);
    let written = (|| {
        let mut file = crate::private::create_file(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, &path)
    })();
    if let Err(err) = written {
        // A full disk or a failed rename must not leave the partial file behind.
        let _ = fs::remove_file(&tmp);
        return Err(err);
    }
    File::open(dir)?.sync_all()?;
    Ok(path)
}

/// The registry id of a temporary snapshot file name (`ID.snap.tmp-PID`).
fn temporary_of(name: &str) -> Option<&str> {
    let (id, pid) = name.rsplit_once(".snap.tmp-")?;
    (!id.is_empty() && !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())).then_some(id)
}

/// Removes the temporary snapshot files of `registry_id` in `dir`; the
/// caller holds the registry's lock, so none of them is being written.
/// Returns what it removed.
pub fn remove_temporaries(dir: &Path, registry_id: &str) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name.to_str().and_then(temporary_of) == Some(registry_id) {
            let path = entry.path();
            if fs::remove_file(&path).is_ok() {
                removed.push(path);
            }
        }
    }
    removed
}

/// Removes every leftover temporary snapshot file in `dir` whose registry is
/// not being imported right now (its lock is free). For server start.
pub fn remove_all_temporaries(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut ids: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(temporary_of)
                .map(String::from)
        })
        .collect();
    ids.sort();
    ids.dedup();
    let mut removed = Vec::new();
    for id in ids {
        let Ok(file) = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(crate::private::FILE_MODE)
            .open(dir.join(format!("{id}.lock")))
        else {
            continue;
        };
        if file.try_lock().is_ok() {
            removed.extend(remove_temporaries(dir, &id));
        }
    }
    removed
}

/// An exclusive lock on a registry's snapshot, held during read-modify-write
/// so that two imports of one registry never lose each other's changes.
#[derive(Debug)]
pub struct RegistryLock {
    _file: File,
}

/// Takes the registry's import lock, waiting for another import to finish.
pub fn lock(dir: &Path, registry_id: &str) -> io::Result<RegistryLock> {
    crate::private::create_dir_all(dir)?;
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(crate::private::FILE_MODE)
        .open(dir.join(format!("{registry_id}.lock")))?;
    file.lock()?;
    Ok(RegistryLock { _file: file })
}

/// What tells one snapshot file from another at a path: size, modification
/// time, inode and change time. Each import writes a new file and renames it over the
/// old, so the inode changes even when size and time (coarse on some file
/// systems) do not, and a server never keeps an older edition unnoticed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    len: u64,
    modified: std::time::SystemTime,
    device: u64,
    inode: u64,
    /// The inode's change time, in nanoseconds: a freed inode number
    /// reused by the next import still changes it.
    changed_ns: i128,
}

impl Stamp {
    /// The stamp of the file at `path`, if it exists.
    pub fn of(path: &Path) -> Option<Stamp> {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).ok().map(|m| Stamp {
            len: m.len(),
            modified: m.modified().unwrap_or(std::time::SystemTime::UNIX_EPOCH),
            device: m.dev(),
            inode: m.ino(),
            changed_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
        })
    }

    /// The file's size in bytes.
    pub fn bytes(&self) -> u64 {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::number::NumberKey;

    fn sample() -> Snapshot {
        let mut batches = BTreeMap::new();
        batches.insert(
            "acme".to_string(),
            vec![Batch {
                checked_at: "2026-11-01".parse().unwrap(),
                numbers: [NumberKey::from_e164("+393331234567").unwrap().0]
                    .into_iter()
                    .collect(),
            }],
        );
        Snapshot {
            registry_id: "it-rpo".into(),
            kind: RegistryKind::Allowlist,
            country: "IT".into(),
            version: 7,
            created_at: Timestamp::UNIX_EPOCH,
            source: SnapshotSource {
                file: "f".into(),
                format: "lines".into(),
                mode: "add".into(),
                import_seconds: 0.0,
            },
            coverage: None,
            batches,
            replaced: Default::default(),
            texts: Default::default(),
        }
    }

    #[test]
    fn test_round_trip() {
        let snapshot = sample();
        let decoded = decode(&encode(&snapshot), Path::new("x")).unwrap();
        assert_eq!(decoded, snapshot);
    }

    #[test]
    fn test_any_flipped_byte_is_refused() {
        let bytes = encode(&sample());
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x40;
            assert!(decode(&damaged, Path::new("x")).is_err(), "byte {i}");
        }
        assert!(decode(&bytes[..bytes.len() - 1], Path::new("x")).is_err());
        assert!(decode(b"", Path::new("x")).is_err());
    }

    #[test]
    fn test_failed_write_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the snapshot goes: the rename fails.
        fs::create_dir(snapshot_path(dir.path(), "it-rpo")).unwrap();
        fs::write(dir.path().join("it-rpo.snap").join("x"), b"x").unwrap();
        assert!(write(dir.path(), &sample()).is_err());
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.contains(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn test_temporaries_are_recognised_and_removed() {
        assert_eq!(temporary_of("us-dnc.snap.tmp-123"), Some("us-dnc"));
        assert_eq!(temporary_of("us-dnc.snap"), None);
        assert_eq!(temporary_of("us-dnc.snap.tmp-12x"), None);
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a.snap.tmp-1"), b"x").unwrap();
        fs::write(dir.path().join("b.snap.tmp-2"), b"x").unwrap();
        fs::write(dir.path().join("b.snap"), b"x").unwrap();
        assert_eq!(remove_temporaries(dir.path(), "a").len(), 1);
        let held = lock(dir.path(), "b").unwrap();
        assert!(
            remove_all_temporaries(dir.path()).is_empty(),
            "b is being imported"
        );
        drop(held);
        assert_eq!(remove_all_temporaries(dir.path()).len(), 1);
        assert!(dir.path().join("b.snap").exists());
    }

    #[test]
    fn test_write_then_read() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(dir.path(), "it-rpo").unwrap().is_none());
        write(dir.path(), &sample()).unwrap();
        assert_eq!(read(dir.path(), "it-rpo").unwrap(), Some(sample()));
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.contains(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
