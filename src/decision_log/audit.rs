//! `dialgate audit export` and `dialgate audit verify`: read the decision log
//! (read-only, alongside a running server), oldest first, in constant memory.

use std::io::Write;
use std::path::Path;

use jiff::Timestamp;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde::Serialize;

use super::chain::{self, GENESIS};
use super::checkpoint::Checkpoint;
use super::writer::{ROW_COLUMNS, read_row, record_from_row};
use super::{DecisionRecord, micros};
use crate::model::Reason;
use crate::number::{self, NumberError, Region};
use ed25519_dalek::VerifyingKey;

/// Why an audit command failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot open decision log {path}: {cause}")]
    Open {
        path: String,
        cause: rusqlite::Error,
    },
    #[error("cannot read decision log: {0}")]
    Read(#[from] rusqlite::Error),
    #[error("cannot write output: {0}")]
    Write(#[from] std::io::Error),
    /// A stored row that does not parse: exported as it reads, never as a
    /// default (`audit verify` says whether it was altered).
    #[error(
        "cannot export decision log: {0}; `dialgate audit verify` shows whether the row was altered"
    )]
    Corrupt(String),
    #[error(
        "--before {before}: decisions made since {floor} are still needed (the longest attempt-cap window, the idempotency window or the record-keeping period of this configuration or of the server's last start, counted back from the latest decision logged or the clock, whichever is earlier): nothing purged"
    )]
    InsideKept { before: Timestamp, floor: Timestamp },
}

/// Output format of `audit export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Jsonl,
    Csv,
}

/// Which decisions to export.
#[derive(Debug, Clone, Default)]
pub struct ExportFilter {
    /// Matches the normalised (E.164) or the as-sent number exactly.
    pub number: Option<String>,
    /// The E.164 forms `number` stands for (see [`number_forms`]), matched
    /// against the normalised number: `--number "+39 333 123 4567"` finds
    /// the decisions logged as `+393331234567`.
    pub numbers: Vec<String>,
    pub campaign: Option<String>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
}

#[derive(Serialize)]
struct ExportedDecision<'a> {
    seq: i64,
    decision_id: &'a str,
    decided_at: Timestamp,
    request_id: &'a str,
    campaign_id: &'a str,
    controller: &'a str,
    called_number: &'a str,
    normalized_number: &'a str,
    caller_id: &'a str,
    verdict: &'a str,
    reasons: &'a [Reason],
    next_allowed_at: Option<Timestamp>,
    data_versions: &'a [String],
    latency_us: u64,
    api_key: &'a str,
    hash: &'a str,
}

const CSV_HEADER: &str = "seq,decision_id,decided_at,request_id,campaign_id,controller,called_number,normalized_number,caller_id,verdict,reasons,next_allowed_at,data_versions,latency_us,api_key,hash";

/// Opens the log read-only. In a directory this process cannot write (a
/// mounted backup), SQLite cannot create the WAL index beside the database:
/// the database is then opened as immutable (nothing writes it meanwhile).
pub(crate) fn open_read_only(path: &Path) -> Result<Connection, AuditError> {
    let open_error = |cause| AuditError::Open {
        path: path.display().to_string(),
        cause,
    };
    if !path.exists() {
        return Err(open_error(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
            Some("no such file".into()),
        )));
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let normal = Connection::open_with_flags(path, flags).and_then(|conn| {
        conn.query_row("SELECT COUNT(*) FROM sqlite_master", [], |_| Ok(()))?;
        Ok(conn)
    });
    match normal {
        Ok(conn) => Ok(conn),
        Err(err) => {
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            if dir_writable(dir) {
                return Err(open_error(err));
            }
            // Opened immutable, SQLite reads the database file alone: the
            // decisions still in a write-ahead log beside it (a server
            // killed, or still running) would be left out of the export or
            // the verify without a word (found by review). Refused then.
            if let Some(wal) = unread_wal(path) {
                return Err(open_error(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                    Some(format!(
                        "{} holds decisions not yet in the database, and this directory cannot be written to read them: run this where the directory is writable, or after the server has stopped cleanly",
                        wal.display()
                    )),
                )));
            }
            let uri = format!("file:{}?immutable=1", uri_path(path));
            Connection::open_with_flags(uri, flags | OpenFlags::SQLITE_OPEN_URI).map_err(open_error)
        }
    }
}

/// The write-ahead log beside the database at `path`, if it holds
/// anything (decisions an immutable open would not read).
fn unread_wal(path: &Path) -> Option<std::path::PathBuf> {
    let name = path.file_name()?.to_string_lossy();
    let wal = path.with_file_name(format!("{name}-wal"));
    std::fs::metadata(&wal)
        .is_ok_and(|m| m.len() > 0)
        .then_some(wal)
}

/// Whether this process may create files in `dir`.
fn dir_writable(dir: &Path) -> bool {
    let probe = dir.join(format!(".dialgate-probe-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            true
        }
        Err(_) => false,
    }
}

/// A path in a `file:` URI: `?`, `#` and `%` escaped.
fn uri_path(path: &Path) -> String {
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        match c {
            '?' => out.push_str("%3f"),
            '#' => out.push_str("%23"),
            '%' => out.push_str("%25"),
            c => out.push(c),
        }
    }
    out
}

/// Writes the matching decisions to `out`, oldest first; returns how many.
///
/// # Errors
/// [`AuditError`] when the log cannot be read or the output written.
pub fn export(
    db: &Path,
    filter: &ExportFilter,
    format: ExportFormat,
    out: &mut impl Write,
) -> Result<u64, AuditError> {
    let conn = open_read_only(db)?;
    let mut statement = conn.prepare(&format!(
        "SELECT {ROW_COLUMNS} FROM decisions
         WHERE (?1 IS NULL OR normalized_number = ?1 OR called_number = ?1
                OR normalized_number IN (SELECT value FROM json_each(?5)))
           AND (?2 IS NULL OR decided_at_us >= ?2)
           AND (?3 IS NULL OR decided_at_us < ?3)
           AND (?4 IS NULL OR campaign_id = ?4)
         ORDER BY seq"
    ))?;
    let numbers = serde_json::to_string(&filter.numbers).map_err(std::io::Error::other)?;
    let mut rows = statement.query(rusqlite::params![
        filter.number,
        filter.since.map(micros),
        filter.until.map(micros),
        filter.campaign,
        numbers
    ])?;
    if format == ExportFormat::Csv {
        writeln!(out, "{CSV_HEADER}")?;
    }
    let mut count = 0;
    while let Some(row) = rows.next()? {
        let (stored, hash) = read_row(row)?;
        let record: DecisionRecord = record_from_row(&stored).map_err(AuditError::Corrupt)?;
        let exported = ExportedDecision {
            seq: stored.seq,
            decision_id: &record.decision_id,
            decided_at: record.decided_at,
            request_id: &record.request_id,
            campaign_id: &record.campaign_id,
            controller: &record.controller,
            called_number: &record.called_number,
            normalized_number: &record.normalized_number,
            caller_id: &record.caller_id,
            verdict: record.verdict.as_str(),
            reasons: &record.reasons,
            next_allowed_at: record.next_allowed_at,
            data_versions: &record.data_versions,
            latency_us: record.latency_us,
            api_key: &record.api_key,
            hash: &hash,
        };
        match format {
            ExportFormat::Jsonl => {
                serde_json::to_writer(&mut *out, &exported).map_err(std::io::Error::other)?;
                writeln!(out)?;
            }
            ExportFormat::Csv => write_csv_row(out, &exported)?,
        }
        count += 1;
    }
    out.flush()?;
    Ok(count)
}

/// The E.164 form a number written in any notation stands for, as the
/// decisions' numbers were normalised: an international form (`+39 333 123
/// 4567`, `0039...`) needs no region; a national one is read with each of
/// `regions` (the campaigns' default regions) and must read as one number.
///
/// # Errors
/// When no form can be read from it (an export that matched nothing would
/// answer a subject-access request empty), or when a national form reads
/// as different numbers in different regions (`06 12 34 56 78`: a French
/// mobile and a Rome line; the export would hand one person's decisions to
/// another; found by review).
pub fn number_forms(argument: &str, regions: &[Region]) -> Result<Vec<String>, String> {
    if let Ok(normalized) = number::normalize_international(argument) {
        return Ok(vec![normalized.e164]);
    }
    let mut forms: Vec<(Region, String)> = Vec::new();
    let mut refused: Option<NumberError> = None;
    for region in regions {
        match number::normalize_any(argument, *region) {
            Ok(normalized) if !forms.iter().any(|(_, f)| *f == normalized.e164) => {
                forms.push((*region, normalized.e164));
            }
            Ok(_) => {}
            Err(err) => refused = Some(err),
        }
    }
    match (forms.len(), refused) {
        (0, Some(err)) => Err(err.to_string()),
        (0, None) => Err("no campaign's region can read a national number".into()),
        (1, _) => Ok(forms.into_iter().map(|(_, f)| f).collect()),
        _ => Err(format!(
            "a national number that reads as {} numbers in the campaigns' regions ({}): write it in international form or name the campaign",
            forms.len(),
            forms
                .iter()
                .map(|(region, _)| region.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

fn write_csv_row(out: &mut impl Write, d: &ExportedDecision<'_>) -> std::io::Result<()> {
    let reasons = d
        .reasons
        .iter()
        .map(|r| format!("{}: {}", r.code, r.detail))
        .collect::<Vec<_>>()
        .join("; ");
    let fields = [
        d.seq.to_string(),
        d.decision_id.to_string(),
        d.decided_at.to_string(),
        d.request_id.to_string(),
        d.campaign_id.to_string(),
        d.controller.to_string(),
        d.called_number.to_string(),
        d.normalized_number.to_string(),
        d.caller_id.to_string(),
        d.verdict.to_string(),
        reasons,
        d.next_allowed_at.map(|t| t.to_string()).unwrap_or_default(),
        d.data_versions.join(" "),
        d.latency_us.to_string(),
        d.api_key.to_string(),
        d.hash.to_string(),
    ];
    let line = fields
        .iter()
        .map(|f| csv_field(f))
        .collect::<Vec<_>>()
        .join(",");
    writeln!(out, "{line}")
}

/// Whether a spreadsheet could read `value` as a formula: it starts with
/// `=`, `+`, `-`, `@`, a tab or a carriage return, also after leading
/// whitespace. A plain signed integer (`+393331234567`, `-5`) is data.
pub fn formula_risk(value: &str) -> bool {
    let trimmed = value.trim_start_matches([' ', '\u{a0}', '\t', '\r', '\n']);
    if value.starts_with(['\t', '\r']) {
        return true;
    }
    let Some(first) = trimmed.chars().next() else {
        return false;
    };
    if !matches!(first, '=' | '+' | '-' | '@') {
        return false;
    }
    let rest = &trimmed[1..];
    let plain_number = trimmed.len() == value.len()
        && matches!(first, '+' | '-')
        && !rest.is_empty()
        && rest.bytes().all(|b| b.is_ascii_digit());
    !plain_number
}

/// One CSV cell: formulas neutralised (see [`formula_risk`]) with a leading
/// `'`, then quoted if it holds a separator, quote or line break.
pub fn csv_field(value: &str) -> String {
    let value = if formula_risk(value) {
        format!("'{value}")
    } else {
        value.to_string()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

/// Where a purge cut the log: the seq and hash of the last row removed.
pub(crate) fn purge_anchor(conn: &Connection) -> Result<Option<(i64, String)>, AuditError> {
    if !has_log_meta(conn)? {
        return Ok(None);
    }
    let value: Option<String> = conn
        .query_row(
            "SELECT value FROM log_meta WHERE key = 'purged_through'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    Ok(value.and_then(|v| {
        let (seq, hash) = v.split_once(':')?;
        Some((seq.parse().ok()?, hash.to_string()))
    }))
}

/// The `log_meta` key of how far back the server needs the log, recorded
/// at each start (microseconds, its clock-step tolerance included).
pub(crate) const KEEP_KEY: &str = "keep_decisions_us";

/// Where a purge may cut.
#[derive(Debug, Clone, Copy)]
pub struct PurgeLimit {
    /// The cut asked for (`audit purge --before`); `None`: as far as allowed.
    pub before: Option<Timestamp>,
    /// How long decisions are kept, back from `now` (records kept by law).
    pub keep: jiff::SignedDuration,
    /// How far back a restart reads the log (the caps' ALLOWs, request
    /// ids), back from the latest decision logged.
    pub counted: jiff::SignedDuration,
    pub now: Timestamp,
}

/// The earliest instant a purge must keep: `keep` back from `now`, and
/// `counted`, or the longer span the server recorded at its last start
/// ([`KEEP_KEY`]: a purge run with another configuration, without the
/// capped campaigns, deleted ALLOWs the server still counted; found by
/// review), back from the latest decision logged or `now`, whichever is
/// earlier (a clock running ahead at a purge deleted ALLOWs still inside
/// a cap window, which a restart then no longer counted; found by
/// review). `None`: nothing logged.
///
/// # Errors
/// [`AuditError`] when the log cannot be read.
pub(crate) fn kept_since(
    conn: &Connection,
    limit: &PurgeLimit,
) -> Result<Option<Timestamp>, AuditError> {
    let latest: Option<i64> = conn
        .query_row(
            "SELECT decided_at_us FROM decisions ORDER BY seq DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    let Some(latest) = latest else {
        return Ok(None);
    };
    let recorded: Option<String> = if has_log_meta(conn)? {
        conn.query_row(
            "SELECT value FROM log_meta WHERE key = ?1",
            [KEEP_KEY],
            |r| r.get(0),
        )
        .optional()?
    } else {
        None
    };
    let recorded = match recorded {
        None => jiff::SignedDuration::ZERO,
        Some(text) => text
            .parse::<i64>()
            .map(jiff::SignedDuration::from_micros)
            .map_err(|_| AuditError::Corrupt(format!("log_meta {KEEP_KEY} = {text:?}")))?,
    };
    let back = |from: Timestamp, span: jiff::SignedDuration| {
        from.checked_sub(span).unwrap_or(Timestamp::UNIX_EPOCH)
    };
    let counted_from = limit.now.min(super::from_micros(latest));
    Ok(Some(
        back(limit.now, limit.keep).min(back(counted_from, limit.counted.max(recorded))),
    ))
}

/// The instant a purge within `limit` cuts at; `None`: nothing to purge.
///
/// # Errors
/// [`AuditError::InsideKept`] for a `before` inside what must be kept.
pub(crate) fn purge_cut(
    conn: &Connection,
    limit: &PurgeLimit,
) -> Result<Option<Timestamp>, AuditError> {
    let Some(floor) = kept_since(conn, limit)? else {
        return Ok(None);
    };
    match limit.before {
        Some(before) if before > floor => Err(AuditError::InsideKept { before, floor }),
        Some(before) => Ok(Some(before)),
        None => Ok(Some(floor)),
    }
}

/// Counts the decisions a purge within `limit` would remove.
///
/// # Errors
/// As [`purge`].
pub fn purgeable(db: &Path, limit: &PurgeLimit) -> Result<u64, AuditError> {
    let conn = open_read_only(db)?;
    let Some(before) = purge_cut(&conn, limit)? else {
        return Ok(0);
    };
    let n: i64 = conn.query_row(
        "SELECT COUNT(*) FROM decisions WHERE decided_at_us < ?1",
        [micros(before)],
        |r| r.get(0),
    )?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Whether the log has its `log_meta` table (a log written by an early
/// version has not).
fn has_log_meta(conn: &Connection) -> Result<bool, AuditError> {
    Ok(conn.query_row(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'log_meta'",
        [],
        |r| r.get::<_, i64>(0),
    )? > 0)
}

/// What a purge removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeSummary {
    pub removed: u64,
    /// The last removed row (the chain's new anchor), if any.
    pub through: Option<(i64, String)>,
    /// The decisions made before this instant were removed (`None`: the log is empty).
    pub before: Option<Timestamp>,
}

/// Removes the decisions made before the cut `limit` allows (see
/// [`kept_since`]), oldest first, in batches (the
/// server keeps logging meanwhile), and records the last removed row as the
/// anchor the chain now starts from. Each batch's anchor is checkpointed
/// (in `checkpoints.jsonl` beside `db`, signed with `key`) before the batch
/// commits: `verify` refuses an anchor no checkpoint vouches for (a prefix
/// deleted and an anchor forged), and an interrupted purge still verifies.
///
/// # Errors
/// [`AuditError`] when the log cannot be read or written, or a checkpoint
/// not written (its batch is then not committed).
pub fn purge(
    db: &Path,
    limit: &PurgeLimit,
    key: Option<&ed25519_dalek::SigningKey>,
) -> Result<PurgeSummary, AuditError> {
    let checkpoints = super::checkpoint::checkpoints_path(db.parent().unwrap_or(Path::new(".")));
    let mut conn = Connection::open(db).map_err(|cause| AuditError::Open {
        path: db.display().to_string(),
        cause,
    })?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let Some(before) = purge_cut(&conn, limit)? else {
        return Ok(PurgeSummary {
            removed: 0,
            through: None,
            before: None,
        });
    };
    let cut: Option<(i64, String)> = {
        // Decisions are appended in time order: the cut is a prefix of seq.
        let mut statement =
            conn.prepare("SELECT seq, hash, decided_at_us FROM decisions ORDER BY seq")?;
        let mut rows = statement.query([])?;
        let mut last = None;
        while let Some(row) = rows.next()? {
            if row.get::<_, i64>(2)? >= micros(before) {
                break;
            }
            last = Some((row.get(0)?, row.get(1)?));
        }
        last
    };
    let Some((through_seq, through_hash)) = cut else {
        return Ok(PurgeSummary {
            removed: 0,
            through: None,
            before: Some(before),
        });
    };
    let mut removed = 0u64;
    loop {
        let tx = conn.transaction()?;
        let first: Option<i64> =
            tx.query_row("SELECT MIN(seq) FROM decisions", [], |r| r.get(0))?;
        let Some(first) = first.filter(|f| *f <= through_seq) else {
            tx.commit()?;
            break;
        };
        let upto = (first + 10_000 - 1).min(through_seq);
        // Each batch moves the anchor with it: a purge interrupted between
        // batches leaves a log that still verifies.
        let (anchor_seq, anchor_hash): (i64, String) = tx.query_row(
            "SELECT seq, hash FROM decisions WHERE seq <= ?1 ORDER BY seq DESC LIMIT 1",
            [upto],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        removed += tx.execute("DELETE FROM decisions WHERE seq <= ?1", [upto])? as u64;
        tx.execute(
            "INSERT OR REPLACE INTO log_meta (key, value) VALUES ('purged_through', ?1)",
            [format!("{anchor_seq}:{anchor_hash}")],
        )?;
        // Before the commit: a checkpoint of a row still there (the commit
        // failed) proves nothing false, an anchor without one fails verify.
        let checkpoint = Checkpoint::new(anchor_seq, &anchor_hash, Timestamp::now(), key);
        super::checkpoint::append(&checkpoints, &checkpoint).map_err(|cause| {
            std::io::Error::new(
                cause.kind(),
                format!(
                    "checkpoint of the purge anchor (seq {anchor_seq}) not written to {}, nothing of its batch purged: {cause}",
                    checkpoints.display()
                ),
            )
        })?;
        tx.commit()?;
    }
    Ok(PurgeSummary {
        removed,
        through: Some((through_seq, through_hash)),
        before: Some(before),
    })
}

/// The head of the log: the last row's seq and hash (`(0, GENESIS)` when empty).
///
/// # Errors
/// [`AuditError`] when the log cannot be read.
pub fn head(db: &Path) -> Result<(i64, String), AuditError> {
    let conn = open_read_only(db)?;
    let head = conn
        .query_row(
            "SELECT seq, hash FROM decisions ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(head.unwrap_or((0, GENESIS.to_string())))
}

/// Outcome of `audit verify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// Every row is present and unaltered.
    Intact {
        decisions: u64,
        head_seq: i64,
        head_hash: String,
        /// With a key: checkpoints written before it was configured.
        unsigned_before_key: usize,
    },
    /// The first problem found.
    Broken {
        seq: i64,
        decision_id: String,
        problem: String,
    },
}

/// Recomputes the hash chain over the whole log and checks it against the
/// checkpoints: each must name a row that is still there with the same hash
/// (a truncated tail fails), and with `key` each must carry its signature.
///
/// # Errors
/// [`AuditError`] when the log cannot be read.
pub fn verify(
    db: &Path,
    checkpoints: &[Checkpoint],
    anchors: &[Checkpoint],
    key: Option<&VerifyingKey>,
) -> Result<Verification, AuditError> {
    let mut unsigned_before_key = 0;
    // With a key, the newest checkpoint must be signed (checked once the
    // log is known to hold decisions).
    let mut newest_signed = false;
    if let Some(key) = key {
        // In file order: checkpoints written before the key was configured
        // are unsigned, and come before every signed one.
        let mut seen_signed = false;
        for checkpoint in checkpoints {
            let problem = match &checkpoint.signature {
                None if seen_signed => {
                    "unsigned checkpoint after signed ones: not from before the key was configured"
                }
                None => {
                    unsigned_before_key += 1;
                    continue;
                }
                Some(_) if !checkpoint.signed_by(key) => {
                    "checkpoint signature invalid for the configured key"
                }
                Some(_) => {
                    seen_signed = true;
                    continue;
                }
            };
            return Ok(Verification::Broken {
                seq: checkpoint.seq,
                decision_id: String::new(),
                problem: problem.into(),
            });
        }
        newest_signed = seen_signed;
        // The kept head and external anchors: a signature present must hold.
        if let Some(bad) = anchors
            .iter()
            .find(|a| a.signature.is_some() && !a.signed_by(key))
        {
            return Ok(Verification::Broken {
                seq: bad.seq,
                decision_id: String::new(),
                problem: "anchor or kept head: signature invalid for the configured key".into(),
            });
        }
    }
    let checkpoints: Vec<Checkpoint> = checkpoints.iter().chain(anchors).cloned().collect();
    let checkpoints = checkpoints.as_slice();
    let mut expected: std::collections::HashMap<i64, &str> = std::collections::HashMap::new();
    for c in checkpoints {
        if let Some(other) = expected.insert(c.seq, c.hash.as_str())
            && other != c.hash
        {
            return Ok(Verification::Broken {
                seq: c.seq,
                decision_id: String::new(),
                problem: "two checkpoints of this seq disagree on its hash".into(),
            });
        }
    }
    let conn = open_read_only(db)?;
    // After a purge the chain continues from the last purged row.
    let (anchor_seq, anchor_hash) = purge_anchor(&conn)?.unwrap_or((0, GENESIS.to_string()));
    match checkpoints.iter().find(|c| c.seq == anchor_seq) {
        Some(cut) if cut.hash != anchor_hash => {
            return Ok(Verification::Broken {
                seq: anchor_seq,
                decision_id: String::new(),
                problem: "purge anchor does not match its checkpoint".into(),
            });
        }
        // `audit purge` checkpoints every anchor it sets: one nothing
        // vouches for was not set by it (a prefix deleted, an anchor forged
        // from the next row's prev_hash), as the shared log refuses.
        None if anchor_seq > 0 => {
            return Ok(Verification::Broken {
                seq: anchor_seq,
                decision_id: String::new(),
                problem: "purge anchor no checkpoint vouches for (rows deleted and an anchor forged?); a purge by a version before checkpointed anchors, interrupted before its final checkpoint, leaves this too, and so do checkpoint files moved aside: dialgate cannot tell these apart, compare the log with a backup".into(),
            });
        }
        _ => {}
    }
    let mut statement =
        conn.prepare(&format!("SELECT {ROW_COLUMNS} FROM decisions ORDER BY seq"))?;
    let mut rows = statement.query([])?;
    let mut expected_seq = anchor_seq + 1;
    let mut expected_prev = anchor_hash;
    let mut hasher = chain::RowHasher::default();
    let mut count = 0u64;
    while let Some(row) = rows.next()? {
        let (stored, hash) = read_row(row)?;
        let broken = |problem: String| Verification::Broken {
            seq: stored.seq,
            decision_id: stored.decision_id.clone(),
            problem,
        };
        if stored.seq != expected_seq {
            return Ok(broken(format!(
                "decision(s) missing: expected seq {expected_seq}, found {}",
                stored.seq
            )));
        }
        if stored.prev_hash != expected_prev {
            return Ok(broken("chain broken: prev_hash does not match the previous decision (inserted or removed row)".into()));
        }
        if hasher.hash(&stored) != hash {
            return Ok(broken(
                "content altered: hash does not match the row".into(),
            ));
        }
        if let Some(checkpointed) = expected.get(&stored.seq)
            && *checkpointed != hash
        {
            return Ok(broken(
                "rewritten: the row does not match its checkpoint".into(),
            ));
        }
        expected_seq += 1;
        expected_prev = hash;
        count += 1;
    }
    let head_seq = expected_seq - 1;
    if let Some(latest) = checkpoints.iter().map(|c| c.seq).max()
        && latest > head_seq
    {
        return Ok(Verification::Broken {
            seq: head_seq + 1,
            decision_id: String::new(),
            problem: format!(
                "truncated: a checkpoint covers seq {latest} but the log ends at seq {head_seq}"
            ),
        });
    }
    // Unsigned checkpoints "from before the key" would otherwise accept
    // every checkpoint stripped of its signature (and rewritten with a
    // rewritten chain): the key would protect nothing. A server with the key
    // signs a checkpoint at start (of the empty log too) and at shutdown.
    if key.is_some() && !newest_signed && (count > 0 || anchor_seq > 0) {
        return Ok(Verification::Broken {
            seq: head_seq,
            decision_id: String::new(),
            problem: "a checkpoint key is configured but no checkpoint in checkpoints.jsonl is signed with it: signatures removed (then checkpoints may have been rewritten with the chain), or the key was configured since the server last started (start it once with the key: it signs a checkpoint of the head it finds)".into(),
        });
    }
    Ok(Verification::Intact {
        decisions: count,
        head_seq,
        head_hash: expected_prev,
        unsigned_before_key,
    })
}

#[cfg(test)]
mod csv_tests {
    use super::*;

    #[test]
    fn test_formula_cells_are_neutralised() {
        for bad in [
            "=1+1",
            "+1+cmd|' /C calc'!A0",
            "-2+3",
            "@SUM(A1)",
            "\t=1",
            "\r=1",
            "  =1",
            " +1",
            "\u{a0}@x",
            "+",
            "-",
        ] {
            assert!(
                csv_field(bad).trim_start_matches('"').starts_with('\''),
                "{bad:?}"
            );
        }
        for good in ["+393331234567", "-5", "42", "hello", "", "a=b"] {
            assert_eq!(csv_field(good), good, "{good:?}");
        }
        assert_eq!(csv_field("=a,b"), "\"'=a,b\"");
    }
}

#[cfg(test)]
mod read_only_tests {
    use super::*;

    /// An immutable open (a directory this process cannot write) reads the
    /// database file alone: decisions still in the write-ahead log were
    /// left out of export and verify (found by review). Such a log is
    /// found, and the open refused; a log checkpointed away is not.
    #[test]
    fn test_a_write_ahead_log_with_decisions_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("decisions.db");
        let writer = Connection::open(&path).unwrap();
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0;
                 CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1);",
            )
            .unwrap();
        assert_eq!(unread_wal(&path), Some(dir.path().join("decisions.db-wal")));
        drop(writer);
        // A clean close checkpoints and removes it.
        assert_eq!(unread_wal(&path), None);
    }
}

#[cfg(test)]
mod number_form_tests {
    use super::*;

    /// A national number that reads as different people's numbers in the
    /// campaigns' regions is refused: the export matched both, handing one
    /// person's decisions to another (found by review).
    #[test]
    fn test_a_national_number_must_read_as_one_number() {
        let it = Region::parse("IT").unwrap();
        let fr = Region::parse("FR").unwrap();
        let both = number_forms("06 12 34 56 78", &[it, fr]).unwrap_err();
        assert!(both.contains("FR") && both.contains("IT"), "{both}");
        assert_eq!(
            number_forms("06 12 34 56 78", &[fr]).unwrap(),
            vec!["+33612345678".to_string()]
        );
        // International: one number whatever the regions.
        assert_eq!(
            number_forms("+39 06 1234 5678", &[it, fr]).unwrap(),
            vec!["+390612345678".to_string()]
        );
        assert!(number_forms("call me maybe", &[it]).is_err());
    }
}
