//! The erasure ledger: an append-only file, outside the backups, of every
//! erasure, opt-out and consent withdrawal, so that restoring a backup made
//! before them cannot bring back what they ended (`dialgate restore`
//! re-applies them).
//!
//! One JSON object per line. Numbers are never written: each entry names
//! its subject by the store's salted hash of the number (the hash the
//! change trail uses), with a fingerprint of the salt, so a restore can
//! tell entries it cannot match from entries that match nothing. An entry
//! is written and fsync'd before the change it records is made: a request
//! whose entry cannot be written fails and changes nothing. An entry of a
//! change that then failed is harmless when re-applied (it only ends or
//! suppresses).
//!
//! Opt-outs of a bulk import are written as the file is read, tagged with
//! the import's id, and count only once a `import_committed` line (written
//! and fsync'd before the records are moved into the store) names that id.
//! They are written many to a line (`kind: "opt_outs"`, see
//! [`ImportedOptOut`]): what they share (time, salt, import) once, each
//! opt-out as a short array, about 70 bytes instead of 260 (issue 15's
//! 250 bytes per record on disk). [`read`] gives them back one entry each.
//!
//! The first line is the ledger's id (given at creation): the contact
//! store and every backup's manifest record it, so a ledger lost and
//! created again empty is refused rather than trusted. Rectifications that
//! move a record away from a number or a purpose are recorded too.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::SubjectHash;
use crate::model::Purpose;

/// The default ledger file name, in `data_dir` (never copied by `backup`).
pub const DEFAULT_FILE: &str = "erasure-ledger.jsonl";

/// Why the ledger could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("erasure ledger {path}: {cause}")]
    Io { path: String, cause: std::io::Error },
    #[error("erasure ledger {path}, line {line}: {problem}")]
    Corrupt {
        path: String,
        line: usize,
        problem: String,
    },
}

/// What an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// EraseSubject: the subject's records of `controller` (empty = all) deleted, kept suppressed.
    Erasure,
    /// An opt-out (AddSuppression or a bulk import).
    OptOut,
    /// RevokeConsent: the controller's consents (of `purpose`, or all) ended at `revoked_at`.
    Revocation,
    /// The opt-outs tagged with `import` are stored (written before they are).
    ImportCommitted,
    /// A consent or relationship (`record_kind`, `record_id`) was moved
    /// away from the number `subject` (or, with `purpose`, from that
    /// purpose): a restore deletes it where the backup still has it there.
    Rectification,
    /// Many opt-outs of a bulk import (`opt_outs`), one line: [`read`]
    /// gives them back as [`EntryKind::OptOut`] entries.
    OptOuts,
    /// A relationship recorded with its end (`record_id`; kind, start and
    /// end in `corrected`): the end of an ongoing copy the backup may hold
    /// (the contract API ends a relationship by recording it again).
    RelationshipEnd,
}

/// One line of the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub at: Timestamp,
    pub kind: EntryKind,
    /// Hex salted hash of the number (empty for `import_committed`).
    #[serde(default)]
    pub subject: String,
    /// First 16 hex digits of SHA-256 of the store's subject salt.
    #[serde(default)]
    pub salt: String,
    #[serde(default)]
    pub controller: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub campaign_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<Purpose>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<Timestamp>,
    /// A withdrawal dated before the grant of a consent it ended: the
    /// latest such grant, up to which it binds copies of those consents
    /// recorded later (a restore places its marker there, where the
    /// backup may not hold the consent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binds_grants_until: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub suppression_id: String,
    /// The bulk import the entry belongs to.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub import: String,
    /// A rectification's record: "consent" or "relationship".
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub record_kind: String,
    /// A rectification's record id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub record_id: String,
    /// The opt-outs of an `opt_outs` line.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub opt_outs: Vec<ImportedOptOut>,
    /// A rectification that kept its record's number and purpose: the
    /// corrected values the rules read, replayed by `restore` onto the
    /// backup's copy (an end moved earlier must not come undone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrected: Option<CorrectedValues>,
    /// The values it corrected: a restore applies it only onto those.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrected_from: Option<CorrectedValues>,
}

/// What a rectification set that the rules read (no number): a consent's
/// grant, expiry and supplier, or a relationship's kind, start and end.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorrectedValues {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granted_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub supplier: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Timestamp>,
    /// A consent's method (the rules read whether it is a signed written
    /// agreement); `None` in entries written before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

/// One opt-out of an `opt_outs` line: the subject's salted hash (base64,
/// URL alphabet, unpadded: 43 characters), its id, and, when not empty,
/// controller, campaign and expiry, as one JSON array whose empty
/// trailing fields are left out: `["<hash>","crm-1","acme"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedOptOut {
    pub subject: SubjectHash,
    pub suppression_id: String,
    pub controller: String,
    pub campaign_id: String,
    pub expires_at: Option<Timestamp>,
}

impl Serialize for ImportedOptOut {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use base64::Engine as _;
        use serde::ser::SerializeSeq;
        let fields = if self.expires_at.is_some() {
            5
        } else if !self.campaign_id.is_empty() {
            4
        } else if !self.controller.is_empty() {
            3
        } else {
            2
        };
        let mut seq = serializer.serialize_seq(Some(fields))?;
        seq.serialize_element(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.subject),
        )?;
        seq.serialize_element(&self.suppression_id)?;
        if fields > 2 {
            seq.serialize_element(&self.controller)?;
        }
        if fields > 3 {
            seq.serialize_element(&self.campaign_id)?;
        }
        if let Some(expires_at) = &self.expires_at {
            seq.serialize_element(expires_at)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for ImportedOptOut {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = ImportedOptOut;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "an opt-out: [hash, id, controller, campaign, expiry], the last three optional",
                )
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                use base64::Engine as _;
                use serde::de::Error as _;
                let missing =
                    |what: &str| A::Error::custom(format!("an opt-out without its {what}"));
                let hash: String = seq.next_element()?.ok_or_else(|| missing("hash"))?;
                let subject = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(hash.as_bytes())
                    .ok()
                    .and_then(|bytes| SubjectHash::try_from(bytes).ok())
                    .ok_or_else(|| A::Error::custom(format!("{hash:?} is not a subject hash")))?;
                let suppression_id: String = seq.next_element()?.ok_or_else(|| missing("id"))?;
                let controller: String = seq.next_element()?.unwrap_or_default();
                let campaign_id: String = seq.next_element()?.unwrap_or_default();
                let expires_at: Option<Timestamp> = seq.next_element()?.unwrap_or_default();
                if seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                    return Err(A::Error::custom("an opt-out of more than five fields"));
                }
                Ok(ImportedOptOut {
                    subject,
                    suppression_id,
                    controller,
                    campaign_id,
                    expires_at,
                })
            }
        }
        deserializer.deserialize_seq(Fields)
    }
}

/// A bulk import's opt-outs gathered into `opt_outs` lines: rows made
/// with [`ImportedOptOut::row`] (on the reading thread) are added with
/// [`OptOutLines::push`], and [`OptOutLines::take`] ends the line.
#[derive(Debug)]
pub struct OptOutLines {
    head: Vec<u8>,
    line: Vec<u8>,
}

impl ImportedOptOut {
    /// The opt-out as an `opt_outs` line holds it.
    ///
    /// # Errors
    /// When it cannot be serialised.
    pub fn row(&self) -> std::io::Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(std::io::Error::other)
    }
}

impl OptOutLines {
    /// Lines of the import `import`, written at `at` for the store whose
    /// salt has the fingerprint `salt`.
    ///
    /// # Errors
    /// When the head cannot be serialised.
    pub fn new(at: Timestamp, salt: &str, import: &str) -> std::io::Result<OptOutLines> {
        let mut head = Entry::about(EntryKind::OptOuts, &[0; 32], salt, at);
        head.subject.clear();
        head.import = import.to_string();
        let mut head = serde_json::to_vec(&head).map_err(std::io::Error::other)?;
        // `{...}` becomes `{...,"opt_outs":[`.
        head.pop();
        head.push(b',');
        head.extend_from_slice(OPT_OUTS_KEY);
        Ok(OptOutLines {
            line: Vec::new(),
            head,
        })
    }

    /// Adds a row of [`ImportedOptOut::row`].
    pub fn push(&mut self, row: &[u8]) {
        if self.line.is_empty() {
            self.line.extend_from_slice(&self.head);
        } else {
            self.line.push(b',');
        }
        self.line.extend_from_slice(row);
    }

    /// Bytes of the line so far.
    pub fn len(&self) -> usize {
        self.line.len()
    }

    /// Whether no opt-out was added since the last [`OptOutLines::take`].
    pub fn is_empty(&self) -> bool {
        self.line.is_empty()
    }

    /// The line ended (newline included), and a new one begun; empty when
    /// no opt-out was added.
    pub fn take(&mut self) -> Vec<u8> {
        if self.line.is_empty() {
            return Vec::new();
        }
        self.line.extend_from_slice(b"]}\n");
        std::mem::take(&mut self.line)
    }
}

impl Entry {
    /// An entry about a subject.
    pub fn about(kind: EntryKind, subject: &SubjectHash, salt: &str, at: Timestamp) -> Entry {
        Entry {
            at,
            kind,
            subject: super::to_hex(subject),
            salt: salt.to_string(),
            controller: String::new(),
            campaign_id: String::new(),
            purpose: None,
            revoked_at: None,
            binds_grants_until: None,
            expires_at: None,
            suppression_id: String::new(),
            import: String::new(),
            record_kind: String::new(),
            record_id: String::new(),
            opt_outs: Vec::new(),
            corrected: None,
            corrected_from: None,
        }
    }

    /// The subject's hash, if well-formed.
    pub fn subject_hash(&self) -> Option<SubjectHash> {
        hex::decode(&self.subject).ok()?.try_into().ok()
    }
}

/// The fingerprint of a subject salt written with every entry.
pub fn salt_fingerprint(salt: &[u8]) -> String {
    hex::encode(&Sha256::digest(salt)[..8])
}

/// The first line of a ledger: its id, given at creation, which a backup's
/// manifest and the contact store record, so a ledger lost and created
/// again (empty) is noticed instead of trusted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub ledger_id: String,
    pub created_at: Timestamp,
}

/// The ledger's id, from its first line alone (the same as
/// [`identity`]'s without reading the whole file: at start-up, a ledger of
/// millions of opt-outs is gigabytes), or `None` when the file does not
/// exist or has no header.
///
/// # Errors
/// [`LedgerError::Io`] when it cannot be read.
pub fn read_id(path: &Path) -> Result<Option<String>, LedgerError> {
    use std::io::Read;
    if !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
        return Ok(None);
    }
    let file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(cause) => return Err(io(path, cause)),
    };
    let mut first = Vec::new();
    BufReader::new(file.take(MAX_HEADER))
        .read_until(b'\n', &mut first)
        .map_err(|cause| io(path, cause))?;
    if first.last() != Some(&b'\n') {
        // No header within the bound (or no line at all): whatever
        // [`identity`] makes of the whole file, never a different answer.
        return Ok(identity(path)?.map(|(id, _)| id));
    }
    Ok(serde_json::from_slice::<Header>(&first[..first.len() - 1])
        .ok()
        .map(|header| header.ledger_id))
}

/// The key of an `opt_outs` line's opt-outs, as written.
const OPT_OUTS_KEY: &[u8] = br#""opt_outs":["#;

/// Bytes of a header line at most (it is about 90).
const MAX_HEADER: u64 = 64 * 1024;

/// The ledger's id and its count of entries (every whole line but the
/// header, ended by a newline, counts one, an `opt_outs` line one per
/// opt-out: a ledger replaced by an older copy is then as far behind in
/// this count as in opt-outs; the count only grows), or `None` when the
/// file does not exist or has no header.
///
/// # Errors
/// [`LedgerError::Io`] when it cannot be read.
pub fn identity(path: &Path) -> Result<Option<(String, u64)>, LedgerError> {
    // A device or a pipe named as the ledger has no id (and may never end).
    if !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
        return Ok(None);
    }
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(cause) => return Err(io(path, cause)),
    };
    let Some(first_end) = text.iter().position(|&b| b == b'\n') else {
        return Ok(None);
    };
    let Ok(header) = serde_json::from_slice::<Header>(&text[..first_end]) else {
        return Ok(None);
    };
    let entries = text[first_end + 1..]
        .split_inclusive(|&b| b == b'\n')
        .filter(|l| l.ends_with(b"\n") && l.iter().any(|b| !b.is_ascii_whitespace()))
        .map(|line| {
            // Not parsed unless it may be an `opt_outs` line (gigabytes
            // of single entries are counted as lines); one that does not
            // parse counts one, as any line.
            let opt_outs = line
                .windows(OPT_OUTS_KEY.len())
                .any(|w| w == OPT_OUTS_KEY)
                .then(|| serde_json::from_slice::<Entry>(line).ok())
                .flatten()
                .filter(|entry| entry.kind == EntryKind::OptOuts)
                .map_or(0, |entry| entry.opt_outs.len() as u64);
            opt_outs.max(1)
        })
        .sum();
    Ok(Some((header.ledger_id, entries)))
}

/// The ledger file, appended to under a lock.
#[derive(Debug)]
pub struct Ledger {
    path: PathBuf,
    file: Mutex<File>,
    id: Option<String>,
}

impl Ledger {
    /// Opens (creating, owner-only) the ledger at `path`.
    ///
    /// # Errors
    /// [`LedgerError::Io`] when it cannot be opened.
    pub fn open(path: &Path) -> Result<Ledger, LedgerError> {
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            let _ = crate::private::create_dir_all(parent);
        }
        let file = crate::private::append_file(path).map_err(|cause| io(path, cause))?;
        // Owner-only; a device or a pipe named here is left as it is (a
        // link to a file is that file).
        if file.metadata().is_ok_and(|m| m.is_file()) {
            let _ = crate::private::tighten(path);
            // Exclusive while the tail is read and cut and the id written:
            // a line another process is appending is not taken for a torn
            // one, and two first openers do not both write an id.
            file.lock().map_err(|cause| io(path, cause))?;
            let prepared = prepare(path, &file);
            let _ = file.unlock();
            prepared?;
        }
        let id = read_id(path)?;
        Ok(Ledger {
            path: path.to_path_buf(),
            file: Mutex::new(file),
            id,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The ledger's id (`None`: a ledger of an earlier version, or not a file).
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// Appends entries and fsyncs them (one write per line: other
    /// processes appending at the same time never split a line).
    ///
    /// # Errors
    /// [`LedgerError::Io`]: the change must then not be made.
    pub fn append(&self, entries: &[Entry]) -> Result<(), LedgerError> {
        let mut file = self.file.lock().expect("ledger lock");
        file.lock().map_err(|cause| io(&self.path, cause))?;
        let written = self
            .start_on_a_line(&file)
            .and_then(|()| {
                entries
                    .iter()
                    .try_for_each(|entry| write_line(&mut file, entry))
            })
            .and_then(|()| file.sync_data());
        let _ = file.unlock();
        written.map_err(|cause| io(&self.path, cause))
    }

    /// Appends entries already made [`line`]s without fsync (a bulk
    /// import's, serialised on its reading thread; the commit line that
    /// makes them count is fsync'd, and syncs them with it), in one write
    /// under one lock of the file.
    ///
    /// # Errors
    /// [`LedgerError::Io`], also when `lines` does not end a line.
    pub fn append_lines_unsynced(&self, lines: &[u8]) -> Result<(), LedgerError> {
        if lines.is_empty() {
            return Ok(());
        }
        if lines.last() != Some(&b'\n') {
            return Err(io(
                &self.path,
                std::io::Error::other("a ledger append must end a line"),
            ));
        }
        let mut file = self.file.lock().expect("ledger lock");
        file.lock().map_err(|cause| io(&self.path, cause))?;
        let written = self
            .start_on_a_line(&file)
            .and_then(|()| file.write_all(lines));
        let _ = file.unlock();
        written.map_err(|cause| io(&self.path, cause))
    }

    /// Under the file's lock, before an append: a last line without its
    /// newline is the torn append of a process that died (a bulk import's
    /// megabyte of lines killed mid-write, a full disk; its change was not
    /// made), cut off so that the new line is not glued onto it, which
    /// would make both one corrupt line.
    ///
    /// `file` is the handle whose lock is held. The cut goes through the
    /// path (followed when it is a link), so the path must still name that
    /// file: a ledger replaced or removed while open refuses the append
    /// (the change is then not made) rather than cut a file this process
    /// has not locked.
    fn start_on_a_line(&self, file: &File) -> std::io::Result<()> {
        use std::os::unix::fs::MetadataExt;
        let held = file.metadata()?;
        if !held.is_file() {
            // A device or a pipe: nothing to cut.
            return Ok(());
        }
        match std::fs::metadata(&self.path) {
            Ok(named) if named.dev() == held.dev() && named.ino() == held.ino() => {
                crate::line_file::cut_torn_tail(&self.path, "erasure ledger")
            }
            _ => Err(std::io::Error::other(
                "the ledger file was replaced or removed while open: restart to open the one now at this path",
            )),
        }
    }
}

/// Under the file's exclusive lock: cuts a torn last line, and writes the
/// id line of a new (empty) ledger.
fn prepare(path: &Path, file: &File) -> Result<(), LedgerError> {
    crate::line_file::cut_torn_tail(path, "erasure ledger").map_err(|cause| io(path, cause))?;
    if file.metadata().map_err(|cause| io(path, cause))?.len() == 0 {
        let header = Header {
            ledger_id: crate::clock::time_ordered_uuid().to_string(),
            created_at: Timestamp::now(),
        };
        let mut line = serde_json::to_vec(&header).map_err(|e| io(path, e.into()))?;
        line.push(b'\n');
        (&*file).write_all(&line).map_err(|cause| io(path, cause))?;
        file.sync_all().map_err(|cause| io(path, cause))?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            let _ = File::open(parent).and_then(|d| d.sync_all());
        }
    }
    Ok(())
}

fn write_line(file: &mut File, entry: &Entry) -> std::io::Result<()> {
    file.write_all(&line(entry)?)
}

/// An entry as the ledger holds it: one JSON line, newline included.
///
/// # Errors
/// When it cannot be serialised.
pub fn line(entry: &Entry) -> std::io::Result<Vec<u8>> {
    let mut line = serde_json::to_vec(entry).map_err(std::io::Error::other)?;
    line.push(b'\n');
    Ok(line)
}

fn io(path: &Path, cause: std::io::Error) -> LedgerError {
    LedgerError::Io {
        path: path.display().to_string(),
        cause,
    }
}

/// Every entry that counts, in file order: a bulk import's opt-outs only
/// when its commit line is present, those of an `opt_outs` line one entry
/// each. A missing file holds none. A torn
/// last line (a crash while appending) is skipped: its change was not made
/// (the entry is written before it); any other bad line is an error.
///
/// # Errors
/// [`LedgerError`] when the file cannot be read or a line is not an entry.
pub fn read(path: &Path) -> Result<Vec<Entry>, LedgerError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(cause) => return Err(io(path, cause)),
    };
    let mut text = String::new();
    BufReader::new(file)
        .read_to_string(&mut text)
        .map_err(|cause| io(path, cause))?;
    // Only a last line without its newline is torn (a crash while writing
    // it); a whole line that does not read is corrupt, and skipping it
    // would drop its changes from a restore without a word.
    let torn_tail = !text.is_empty() && !text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    let mut entries = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() || (i == 0 && serde_json::from_str::<Header>(line).is_ok()) {
            continue;
        }
        match serde_json::from_str::<Entry>(line) {
            // Only a bulk import's opt-outs wait for its commit: any other
            // entry tagged with an import would be left out as if
            // uncommitted, while still counted (an edited line: found by
            // review).
            Ok(entry)
                if !entry.import.is_empty()
                    && !matches!(
                        entry.kind,
                        EntryKind::OptOut | EntryKind::OptOuts | EntryKind::ImportCommitted
                    ) =>
            {
                return Err(LedgerError::Corrupt {
                    path: path.display().to_string(),
                    line: i + 1,
                    problem: format!("a {:?} entry names an import", entry.kind),
                });
            }
            Ok(entry) if entry.kind == EntryKind::OptOuts => entries.extend(opt_outs(entry)),
            Ok(entry) => entries.push(entry),
            Err(_) if torn_tail && i + 1 == lines.len() => {
                tracing::warn!(path = %path.display(), line = i + 1, "erasure ledger: torn last line skipped");
            }
            Err(err) => {
                return Err(LedgerError::Corrupt {
                    path: path.display().to_string(),
                    line: i + 1,
                    problem: err.to_string(),
                });
            }
        }
    }
    let committed: std::collections::HashSet<String> = entries
        .iter()
        .filter(|e| e.kind == EntryKind::ImportCommitted)
        .map(|e| e.import.clone())
        .collect();
    entries.retain(|e| {
        e.kind != EntryKind::ImportCommitted
            && (e.import.is_empty() || committed.contains(&e.import))
    });
    Ok(entries)
}

/// The opt-outs of an `opt_outs` line, an entry each.
fn opt_outs(mut line: Entry) -> impl Iterator<Item = Entry> {
    let opt_outs = std::mem::take(&mut line.opt_outs);
    opt_outs.into_iter().map(move |opt_out| {
        let mut entry = Entry::about(EntryKind::OptOut, &opt_out.subject, &line.salt, line.at);
        entry.import.clone_from(&line.import);
        entry.controller = opt_out.controller;
        entry.campaign_id = opt_out.campaign_id;
        entry.expires_at = opt_out.expires_at;
        entry.suppression_id = opt_out.suppression_id;
        entry
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two processes opening a new ledger at once (serve and an import on
    /// the first start) write one id between them, under the file's lock
    /// (a second id line made every later read of the ledger fail).
    #[test]
    fn test_first_openers_at_once_write_one_id() {
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("ledger.jsonl");
            let ids: Vec<Option<String>> = std::thread::scope(|scope| {
                let openers: Vec<_> = (0..4)
                    .map(|_| scope.spawn(|| Ledger::open(&path).unwrap().id().map(String::from)))
                    .collect();
                openers.into_iter().map(|o| o.join().unwrap()).collect()
            });
            let text = std::fs::read_to_string(&path).unwrap();
            assert_eq!(text.lines().count(), 1, "{text}");
            assert!(
                ids.iter().all(|id| id.is_some() && *id == ids[0]),
                "{ids:?}"
            );
        }
    }

    #[test]
    fn test_entries_round_trip_and_uncommitted_imports_do_not_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.jsonl");
        let ledger = Ledger::open(&path).unwrap();
        let at: Timestamp = "2026-11-25T10:00:00Z".parse().unwrap();
        let mut erasure = Entry::about(EntryKind::Erasure, &[7; 32], "ab", at);
        erasure.controller = "acme".into();
        ledger.append(std::slice::from_ref(&erasure)).unwrap();
        let mut committed = Entry::about(EntryKind::OptOut, &[8; 32], "ab", at);
        committed.import = "i-1".into();
        let mut abandoned = committed.clone();
        abandoned.import = "i-2".into();
        ledger
            .append_lines_unsynced(&[line(&committed).unwrap(), line(&abandoned).unwrap()].concat())
            .unwrap();
        let mut commit = Entry::about(EntryKind::ImportCommitted, &[0; 32], "ab", at);
        commit.import = "i-1".into();
        ledger.append(&[commit]).unwrap();
        let read = read(&path).unwrap();
        assert_eq!(read, vec![erasure, committed]);
        assert_eq!(read[0].subject_hash(), Some([7; 32]));
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("+39"), "no numbers");
        // The id read from the first line alone is the whole file's.
        let (id, entries) = identity(&path).unwrap().unwrap();
        assert_eq!(entries, 4);
        assert_eq!(read_id(&path).unwrap().as_deref(), Some(id.as_str()));
        assert_eq!(Ledger::open(&path).unwrap().id(), Some(id.as_str()));
        // An erasure tagged with an import (an edited line) is not left
        // out as uncommitted while counted: the ledger is corrupt.
        let mut tagged = read[0].clone();
        tagged.import = "x".into();
        ledger.append(&[tagged]).unwrap();
        let err = super::read(&path).unwrap_err().to_string();
        assert!(err.contains("names an import"), "{err}");
    }

    /// A bulk import's opt-outs, many to a line: read back as the entries
    /// one line each used to hold (and still may, from earlier versions),
    /// only once the import's commit line is there.
    #[test]
    fn test_opt_outs_many_to_a_line_read_back_one_entry_each() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.jsonl");
        let ledger = Ledger::open(&path).unwrap();
        let at: Timestamp = "2026-11-25T10:00:00Z".parse().unwrap();
        let expiry: Timestamp = "2027-01-31T23:00:00Z".parse().unwrap();
        let opt_outs = [
            ("crm-1", "", "", None),
            ("crm-2", "acme", "", None),
            ("crm-3", "", "winter", None),
            ("crm-4", "", "", Some(expiry)),
            ("crm-5", "acme", "winter", Some(expiry)),
        ];
        let mut expected = Vec::new();
        for import in ["i-1", "i-2"] {
            let mut lines = OptOutLines::new(at, "ab", import).unwrap();
            assert!(lines.take().is_empty(), "no opt-out, no line");
            for (i, (id, controller, campaign, expires_at)) in opt_outs.iter().enumerate() {
                let opt_out = ImportedOptOut {
                    subject: [i as u8 + 1; 32],
                    suppression_id: (*id).into(),
                    controller: (*controller).into(),
                    campaign_id: (*campaign).into(),
                    expires_at: *expires_at,
                };
                lines.push(&opt_out.row().unwrap());
                if import == "i-1" {
                    let mut entry = Entry::about(EntryKind::OptOut, &opt_out.subject, "ab", at);
                    entry.import = import.into();
                    entry.suppression_id = opt_out.suppression_id.clone();
                    entry.controller = opt_out.controller.clone();
                    entry.campaign_id = opt_out.campaign_id.clone();
                    entry.expires_at = opt_out.expires_at;
                    expected.push(entry);
                }
                if i == 1 {
                    // Two lines for one import.
                    ledger.append_lines_unsynced(&lines.take()).unwrap();
                }
            }
            ledger.append_lines_unsynced(&lines.take()).unwrap();
        }
        let mut old = Entry::about(EntryKind::OptOut, &[9; 32], "ab", at);
        old.import = "i-1".into();
        old.suppression_id = "crm-9".into();
        let mut commit = Entry::about(EntryKind::ImportCommitted, &[0; 32], "ab", at);
        commit.import = "i-1".into();
        ledger.append(&[old.clone(), commit]).unwrap();
        expected.push(old);
        // i-2 never committed: its opt-outs do not count.
        assert_eq!(read(&path).unwrap(), expected);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 7, "{text}");
        // Counted as entries (the count restore compares with a backup's):
        // the opt-outs of both imports, the old line, the commit line.
        assert_eq!(identity(&path).unwrap().unwrap().1, 5 + 5 + 1 + 1);
        assert!(
            text.contains(r#"["AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE","crm-1"]"#),
            "{text}"
        );
        assert!(text.contains(r#""crm-3","","winter"]"#), "{text}");
    }

    /// About 70 bytes an opt-out with a CRM's id (260 one line each): with
    /// the store's, under issue 15's 250 bytes per record on disk.
    #[test]
    fn test_an_imported_opt_out_takes_about_seventy_bytes() {
        let at: Timestamp = "2026-11-25T10:00:00Z".parse().unwrap();
        let mut lines = OptOutLines::new(
            at,
            "0123456789abcdef",
            &crate::clock::time_ordered_uuid().to_string(),
        )
        .unwrap();
        for i in 0..10_000u32 {
            let mut subject = [0u8; 32];
            subject[..4].copy_from_slice(&i.to_le_bytes());
            let opt_out = ImportedOptOut {
                subject,
                suppression_id: format!("crm-oo-{}", 1_000_000 + i),
                controller: "acme".into(),
                campaign_id: String::new(),
                expires_at: None,
            };
            lines.push(&opt_out.row().unwrap());
        }
        let per_opt_out = lines.take().len() / 10_000;
        assert!((60..=75).contains(&per_opt_out), "{per_opt_out} bytes");
    }

    /// A bad opt-out inside an `opt_outs` line is an error naming the line.
    #[test]
    fn test_a_bad_opt_out_in_a_line_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.jsonl");
        let at: Timestamp = "2026-11-25T10:00:00Z".parse().unwrap();
        let mut lines = OptOutLines::new(at, "ab", "i-1").unwrap();
        let good = ImportedOptOut {
            subject: [1; 32],
            suppression_id: "crm-1".into(),
            controller: String::new(),
            campaign_id: String::new(),
            expires_at: None,
        };
        lines.push(&good.row().unwrap());
        let good_line = String::from_utf8(lines.take()).unwrap();
        let commit = r#"{"at":"2026-11-25T10:00:00Z","kind":"import_committed","import":"i-1"}"#;
        for bad in [
            r#"["AQEB","crm-1"]"#,
            r#"["not base64!","crm-1"]"#,
            r#"["AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE"]"#,
            r#"["AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE","crm-1","","",null,"extra"]"#,
            r#"{"subject":"AQEB"}"#,
        ] {
            let line = good_line.replace(r#""opt_outs":["#, &format!(r#""opt_outs":[{bad},"#));
            std::fs::write(&path, format!("{line}{commit}\n")).unwrap();
            let err = read(&path).unwrap_err().to_string();
            assert!(err.contains("line 1"), "{bad}: {err}");
        }
        std::fs::write(&path, format!("{good_line}{commit}\n")).unwrap();
        assert_eq!(read(&path).unwrap().len(), 1);
    }

    #[test]
    fn test_a_torn_last_line_is_skipped_but_a_bad_line_inside_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.jsonl");
        let at: Timestamp = "2026-11-25T10:00:00Z".parse().unwrap();
        let good =
            serde_json::to_string(&Entry::about(EntryKind::OptOut, &[1; 32], "ab", at)).unwrap();
        std::fs::write(&path, format!("{good}\n{{\"at\":")).unwrap();
        assert_eq!(read(&path).unwrap().len(), 1);
        std::fs::write(&path, format!("{{\"at\":\n{good}\n")).unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
        // A whole last line (its newline written) that does not read is
        // corrupt, not torn: skipped, its changes left a restore without a
        // word (found by review).
        std::fs::write(&path, format!("{good}\n{{\"at\":\n")).unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
    }

    /// Appends half an entry, as a process killed mid-append leaves it.
    fn tear_a_line(path: &Path, at: Timestamp) {
        let mut torn = line(&Entry::about(EntryKind::OptOut, &[8; 32], "ab", at)).unwrap();
        torn.truncate(torn.len() / 2);
        std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .unwrap()
            .write_all(&torn)
            .unwrap();
    }

    /// A ledger opened before another process died mid-append (its last
    /// line torn): the next append used to be glued onto the torn line,
    /// and the entry it carried was lost in one corrupt line.
    #[test]
    fn test_an_append_after_another_process_tore_a_line_starts_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.jsonl");
        let ledger = Ledger::open(&path).unwrap();
        let at: Timestamp = "2026-11-25T10:00:00Z".parse().unwrap();
        tear_a_line(&path, at);
        let erasure = Entry::about(EntryKind::Erasure, &[7; 32], "ab", at);
        ledger.append(std::slice::from_ref(&erasure)).unwrap();
        ledger
            .append_lines_unsynced(&line(&erasure).unwrap())
            .unwrap();
        assert_eq!(read(&path).unwrap(), vec![erasure.clone(), erasure]);
    }

    /// A ledger reached through a symbolic link (kept on another disk):
    /// its torn line was neither cut at open nor before an append.
    #[test]
    fn test_a_linked_ledger_is_cut_too_and_a_replaced_one_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere.jsonl");
        let path = dir.path().join("ledger.jsonl");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let ledger = Ledger::open(&path).unwrap();
        let at: Timestamp = "2026-11-25T10:00:00Z".parse().unwrap();
        tear_a_line(&path, at);
        let erasure = Entry::about(EntryKind::Erasure, &[7; 32], "ab", at);
        ledger.append(std::slice::from_ref(&erasure)).unwrap();
        assert_eq!(read(&path).unwrap(), vec![erasure.clone()]);
        // Replaced while open: the append is refused, neither file cut.
        std::fs::rename(&target, dir.path().join("moved.jsonl")).unwrap();
        std::fs::write(&target, b"").unwrap();
        assert!(ledger.append(std::slice::from_ref(&erasure)).is_err());
    }

    /// A torn last line is cut off when the ledger is opened: appending
    /// after it would turn it into a bad line inside (every later read, and
    /// so every restore, would fail).
    #[test]
    fn test_a_torn_last_line_is_cut_before_appending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.jsonl");
        let at: Timestamp = "2026-11-25T10:00:00Z".parse().unwrap();
        let first = Entry::about(EntryKind::OptOut, &[1; 32], "ab", at);
        let good = serde_json::to_string(&first).unwrap();
        std::fs::write(&path, format!("{good}\n{{\"at\":\"2026")).unwrap();
        let ledger = Ledger::open(&path).unwrap();
        let second = Entry::about(EntryKind::Erasure, &[2; 32], "ab", at);
        ledger.append(std::slice::from_ref(&second)).unwrap();
        assert_eq!(read(&path).unwrap(), vec![first.clone(), second.clone()]);
        // A whole file is left as it is; a file of one torn line emptied
        // (and given its id line).
        drop(Ledger::open(&path).unwrap());
        assert_eq!(read(&path).unwrap().len(), 2);
        std::fs::write(&path, "{\"at\"").unwrap();
        let ledger = Ledger::open(&path).unwrap();
        assert!(ledger.id().is_some());
        assert_eq!(read(&path).unwrap().len(), 0);
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
    }
}
