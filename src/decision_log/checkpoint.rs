//! Checkpoints of the decision log's head: `(seq, hash, time)` appended to
//! `checkpoints.jsonl` beside the log (fsynced) at an interval and on
//! shutdown, and signed with an Ed25519 key when one is configured. The hash
//! chain shows any altered, inserted or removed row up to the head;
//! checkpoints also make a truncated tail evident, and a signed checkpoint
//! anchored elsewhere (`dialgate audit checkpoint`) proves the head itself.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// The checkpoints file beside the log.
pub fn checkpoints_path(data_dir: &Path) -> PathBuf {
    data_dir.join("checkpoints.jsonl")
}

/// The copy of the latest signed checkpoint kept outside the database and
/// the checkpoints file (written when a checkpoint key is configured).
pub fn head_path(data_dir: &Path) -> PathBuf {
    data_dir.join("head.json")
}

/// Replaces the kept head atomically (temporary file, fsync, rename).
///
/// # Errors
/// When the file cannot be written.
pub fn write_head(path: &Path, checkpoint: &Checkpoint) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("json.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = crate::private::create_file(&tmp)?;
        let json = serde_json::to_string(checkpoint).map_err(std::io::Error::other)?;
        writeln!(file, "{json}")?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Why checkpoints or the checkpoint key could not be read; each names the
/// file.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot read {}: {cause}", .path.display())]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{}: not a checkpoint: {cause}", .path.display())]
    NotACheckpoint {
        path: PathBuf,
        cause: serde_json::Error,
    },
    #[error("{} line {line}: not a checkpoint: {cause}", .path.display())]
    BadLine {
        path: PathBuf,
        line: usize,
        cause: serde_json::Error,
    },
    #[error("cannot read checkpoint key {}: {cause}", .path.display())]
    ReadKey {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("checkpoint key {}: expected 64 hex digits (an Ed25519 seed)", .0.display())]
    BadKey(PathBuf),
}

fn read_error(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |cause| CheckpointError::Read {
        path: path.to_path_buf(),
        cause,
    }
}

/// Reads a single checkpoint (the kept head, or an anchor saved from
/// `dialgate audit checkpoint`); `Ok(None)` when the file does not exist.
///
/// # Errors
/// [`CheckpointError`] naming the file and the problem.
pub fn read_one(path: &Path) -> Result<Option<Checkpoint>, CheckpointError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read_error(path)(e)),
    };
    serde_json::from_str(text.trim())
        .map(Some)
        .map_err(|cause| CheckpointError::NotACheckpoint {
            path: path.to_path_buf(),
            cause,
        })
}

/// One checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: String,
    pub at: Timestamp,
    /// Hex Ed25519 signature of [`Checkpoint::message`], when a key is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// Hex public key that made the signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
}

impl Checkpoint {
    /// The signed text.
    pub fn message(&self) -> String {
        format!(
            "dialgate-checkpoint:v1:{}:{}:{}",
            self.seq, self.hash, self.at
        )
    }

    /// A checkpoint of `(seq, hash)` at `at`, signed when a key is given.
    pub fn new(seq: i64, hash: &str, at: Timestamp, key: Option<&SigningKey>) -> Checkpoint {
        let mut checkpoint = Checkpoint {
            seq,
            hash: hash.to_string(),
            at,
            signature: None,
            public_key: None,
        };
        if let Some(key) = key {
            let (signature, public_key) = sign(key, &checkpoint.message());
            checkpoint.signature = Some(signature);
            checkpoint.public_key = Some(public_key);
        }
        checkpoint
    }

    /// Whether the signature is valid for `key`.
    pub fn signed_by(&self, key: &VerifyingKey) -> bool {
        signature_valid(self.signature.as_deref(), key, &self.message())
    }
}

/// The hex signature of `message` and the hex public key that made it.
pub(crate) fn sign(key: &SigningKey, message: &str) -> (String, String) {
    (
        hex::encode(key.sign(message.as_bytes()).to_bytes()),
        hex::encode(key.verifying_key().to_bytes()),
    )
}

/// Whether `signature` (hex) signs `message` under `key`.
pub(crate) fn signature_valid(signature: Option<&str>, key: &VerifyingKey, message: &str) -> bool {
    signature
        .and_then(|s| hex::decode(s).ok())
        .and_then(|bytes| Signature::from_slice(&bytes).ok())
        .is_some_and(|signature| key.verify(message.as_bytes(), &signature).is_ok())
}

/// Loads an Ed25519 signing key: a file holding the 32-byte seed as 64 hex digits.
///
/// # Errors
/// [`CheckpointError`] naming the file and the problem.
pub fn load_key(path: &Path) -> Result<SigningKey, CheckpointError> {
    let text = std::fs::read_to_string(path).map_err(|cause| CheckpointError::ReadKey {
        path: path.to_path_buf(),
        cause,
    })?;
    let seed: [u8; 32] = hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| CheckpointError::BadKey(path.to_path_buf()))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Appends a checkpoint durably.
///
/// # Errors
/// When the file cannot be written.
pub fn append(path: &Path, checkpoint: &Checkpoint) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(checkpoint).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut file = crate::private::append_file(path)?;
    // Under the file's lock (the server and `audit purge` both append): a
    // line torn by a crash or a full disk is cut off first, and the line
    // goes in one write, newline included. Glued to a torn line, it made
    // a bad line inside the file, and `audit verify` failed for good.
    file.lock()?;
    let appended = crate::line_file::cut_torn_tail(path, "checkpoints")
        .and_then(|()| file.write_all(&line))
        .and_then(|()| file.sync_all());
    let _ = file.unlock();
    appended
}

/// Every checkpoint written so far (none when the file does not exist).
///
/// # Errors
/// [`CheckpointError`] naming the file or the bad line.
pub fn read_all(path: &Path) -> Result<Vec<Checkpoint>, CheckpointError> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(read_error(path)(e)),
    };
    let lines: Vec<String> = std::io::BufReader::new(file)
        .lines()
        .collect::<Result<_, _>>()
        .map_err(read_error(path))?;
    let last = lines.iter().rposition(|l| !l.trim().is_empty());
    let mut checkpoints = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(checkpoint) => checkpoints.push(checkpoint),
            // A crash while appending can leave a torn last line: it proves nothing, and hides nothing.
            Err(_) if Some(i) == last => {}
            Err(cause) => {
                return Err(CheckpointError::BadLine {
                    path: path.to_path_buf(),
                    line: i + 1,
                    cause,
                });
            }
        }
    }
    Ok(checkpoints)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_signatures() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let other = SigningKey::from_bytes(&[8u8; 32]);
        let at: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        let checkpoint = Checkpoint::new(42, "ab", at, Some(&key));
        assert!(checkpoint.signed_by(&key.verifying_key()));
        assert!(!checkpoint.signed_by(&other.verifying_key()));
        let forged = Checkpoint {
            seq: 41,
            ..checkpoint.clone()
        };
        assert!(!forged.signed_by(&key.verifying_key()));
        assert!(!Checkpoint::new(42, "ab", at, None).signed_by(&key.verifying_key()));
    }

    /// A line torn by a crash is cut before the next append, so that the
    /// file reads back whole; it was glued to the next line, a bad line
    /// once another followed (found by review).
    #[test]
    fn test_checkpoints_after_a_torn_line_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoints.jsonl");
        let at: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        append(&path, &Checkpoint::new(1, "a1", at, None)).unwrap();
        let whole = std::fs::read(&path).unwrap();
        let torn = serde_json::to_vec(&Checkpoint::new(2, "b2", at, None)).unwrap();
        std::fs::write(&path, [&whole[..], &torn[..torn.len() / 2]].concat()).unwrap();
        for seq in [3, 4] {
            append(&path, &Checkpoint::new(seq, "c3", at, None)).unwrap();
        }
        let seqs: Vec<i64> = read_all(&path).unwrap().iter().map(|c| c.seq).collect();
        assert_eq!(seqs, [1, 3, 4]);
    }
}
