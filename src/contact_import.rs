//! `dialgate consent import` and `dialgate suppression import`: bulk CSV
//! files from CRMs. Every line is validated first; one bad line and nothing
//! is stored (the error names each bad line and field). Records get ids
//! derived from their content, so re-running an import stores nothing twice.
//! A running server picks the records up within a second.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use sha2::{Digest, Sha256};

use crate::contacts::ContactStore;
use crate::model::Purpose;
use crate::number::NumberKey;
use crate::records::{self, NewConsent, NewSuppression, Records, RecordsError};

const LISTED_ERRORS: usize = 20;

/// Why a bulk import failed; nothing was stored.
#[derive(Debug, thiserror::Error)]
pub enum ContactImportError {
    #[error("cannot read {path}: {cause}")]
    Read { path: PathBuf, cause: String },
    #[error("{path}: unknown column {column:?} (known: {known})")]
    UnknownColumn {
        path: PathBuf,
        column: String,
        known: String,
    },
    #[error("{path}: column {column:?} appears twice (columns {first} and {again}): refusing to guess which one counts", path = path.display())]
    DuplicateColumn {
        path: PathBuf,
        column: String,
        first: usize,
        again: usize,
    },
    #[error("{path}: missing column {0:?}", path = .1.display())]
    MissingColumn(&'static str, PathBuf),
    #[error("{count} bad line(s), nothing imported: {}", .errors.join("; "))]
    BadLines { errors: Vec<String>, count: usize },
    #[error(transparent)]
    Store(#[from] RecordsError),
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactImportSummary {
    pub lines: usize,
    pub stored: usize,
    pub already_present: usize,
    pub dry_run: bool,
}

struct Table {
    columns: HashMap<String, usize>,
    rows: Vec<(usize, csv::StringRecord)>,
}

impl Table {
    fn read(
        path: &Path,
        known: &[&str],
        required: &[&'static str],
    ) -> Result<Table, ContactImportError> {
        let read_error = |cause: String| ContactImportError::Read {
            path: path.to_path_buf(),
            cause,
        };
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .flexible(false)
            .from_path(path)
            .map_err(|e| read_error(e.to_string()))?;
        let headers = reader
            .headers()
            .map_err(|e| read_error(e.to_string()))?
            .clone();
        let mut columns = HashMap::new();
        for (i, name) in headers.iter().enumerate() {
            if !known.contains(&name) {
                return Err(ContactImportError::UnknownColumn {
                    path: path.to_path_buf(),
                    column: name.to_string(),
                    known: known.join(", "),
                });
            }
            if let Some(first) = columns.insert(name.to_string(), i) {
                return Err(ContactImportError::DuplicateColumn {
                    path: path.to_path_buf(),
                    column: name.to_string(),
                    first: first + 1,
                    again: i + 1,
                });
            }
        }
        if let Some(missing) = required.iter().find(|c| !columns.contains_key(**c)) {
            return Err(ContactImportError::MissingColumn(
                missing,
                path.to_path_buf(),
            ));
        }
        let mut rows = Vec::new();
        for (i, record) in reader.records().enumerate() {
            let line = i + 2;
            let record = record.map_err(|e| read_error(format!("line {line}: {e}")))?;
            rows.push((line, record));
        }
        Ok(Table { columns, rows })
    }

    fn get<'a>(&self, row: &'a csv::StringRecord, column: &str) -> &'a str {
        self.columns
            .get(column)
            .and_then(|i| row.get(*i))
            .unwrap_or("")
    }
}

fn instant(field: &'static str, text: &str) -> Result<Option<Timestamp>, RecordsError> {
    if text.is_empty() {
        return Ok(None);
    }
    crate::model::parse_instant(text)
        .map(Some)
        .ok_or_else(|| RecordsError::InvalidArgument {
            field,
            problem: format!("{text:?} is not RFC 3339 or YYYY-MM-DD"),
        })
}

fn content_id(prefix: &str, parts: &[&str]) -> String {
    let digest = Sha256::digest(parts.join("\u{1f}").as_bytes());
    format!("{prefix}-{}", &hex::encode(digest)[..32])
}

fn collect<T>(
    results: Vec<(usize, Result<T, RecordsError>)>,
) -> Result<Vec<T>, ContactImportError> {
    let mut errors = Vec::new();
    let mut count = 0;
    let mut ok = Vec::new();
    for (line, result) in results {
        match result {
            Ok(value) => ok.push(value),
            Err(err) => {
                count += 1;
                if errors.len() < LISTED_ERRORS {
                    errors.push(format!("line {line}: {err}"));
                }
            }
        }
    }
    if count > 0 {
        if count > errors.len() {
            errors.push(format!("and {} more", count - errors.len()));
        }
        return Err(ContactImportError::BadLines { errors, count });
    }
    Ok(ok)
}

/// Columns of a consents file.
pub const CONSENT_COLUMNS: [&str; 11] = [
    "controller",
    "number",
    "purpose",
    "granted_at",
    "source",
    "method",
    "notice_version",
    "evidence_ref",
    "expires_at",
    "default_region",
    "consent_id",
];

/// Imports a consents CSV.
///
/// # Errors
/// [`ContactImportError`]; nothing is stored then.
pub fn import_consents(
    store: &ContactStore,
    path: &Path,
    actor: &str,
    now: Timestamp,
    dry_run: bool,
) -> Result<ContactImportSummary, ContactImportError> {
    let table = Table::read(
        path,
        &CONSENT_COLUMNS,
        &["controller", "number", "purpose", "granted_at", "source"],
    )?;
    let validated = table
        .rows
        .iter()
        .map(|(line, row)| {
            let get = |c: &str| table.get(row, c);
            let result = (|| {
                let purpose = match get("purpose") {
                    "" => None,
                    p => Some(Purpose::from_config(p).ok_or_else(|| {
                        RecordsError::InvalidArgument {
                            field: "purpose",
                            problem: format!(
                                "{p:?}: expected marketing, market_research or statistical"
                            ),
                        }
                    })?),
                };
                let request = NewConsent {
                    controller: get("controller").to_string(),
                    number: get("number").to_string(),
                    purpose,
                    granted_at: instant("granted_at", get("granted_at"))?,
                    expires_at: instant("expires_at", get("expires_at"))?,
                    source: get("source").to_string(),
                    method: get("method").to_string(),
                    notice_version: get("notice_version").to_string(),
                    evidence_ref: get("evidence_ref").to_string(),
                    default_region: get("default_region").to_string(),
                    consent_id: get("consent_id").to_string(),
                };
                let mut consent = records::validate_consent(request, now)?;
                if get("consent_id").is_empty() {
                    consent.consent_id = content_id(
                        "csv",
                        &[
                            &consent.controller,
                            &consent.number,
                            consent.purpose.as_str(),
                            &consent.granted_at.to_string(),
                            &consent.source,
                        ],
                    );
                }
                Ok(consent)
            })();
            (*line, result)
        })
        .collect();
    let consents = collect(validated)?;
    let mut summary = ContactImportSummary {
        lines: consents.len(),
        stored: 0,
        already_present: 0,
        dry_run,
    };
    if dry_run {
        return Ok(summary);
    }
    for consent in consents {
        let key = NumberKey::from_e164(&consent.number).expect("validated E.164");
        if store
            .record_consent(key, consent, actor)
            .map_err(RecordsError::from)?
        {
            summary.stored += 1;
        } else {
            summary.already_present += 1;
        }
    }
    Ok(summary)
}

/// Columns of a suppressions file.
pub const SUPPRESSION_COLUMNS: [&str; 8] = [
    "number",
    "controller",
    "campaign_id",
    "reason",
    "source",
    "expires_at",
    "default_region",
    "suppression_id",
];

/// Imports an opt-out CSV.
///
/// # Errors
/// [`ContactImportError`]; nothing is stored then.
pub fn import_suppressions(
    records: &Records,
    path: &Path,
    actor: &str,
    now: Timestamp,
    dry_run: bool,
) -> Result<ContactImportSummary, ContactImportError> {
    let table = Table::read(path, &SUPPRESSION_COLUMNS, &["number"])?;
    let validated = table
        .rows
        .iter()
        .map(|(line, row)| {
            let get = |c: &str| table.get(row, c);
            let result = (|| {
                let number = records::parse_number(get("number"), get("default_region"))?;
                let expires_at = instant("expires_at", get("expires_at"))?;
                if !get("campaign_id").is_empty() && get("controller").is_empty() {
                    return Err(RecordsError::InvalidArgument {
                        field: "controller",
                        problem: "a campaign-scoped opt-out needs the campaign's controller".into(),
                    });
                }
                let id = match get("suppression_id") {
                    "" => content_id(
                        "csv",
                        &[
                            &number.e164,
                            get("controller"),
                            get("campaign_id"),
                            get("reason"),
                            get("source"),
                            get("expires_at"),
                        ],
                    ),
                    id => id.to_string(),
                };
                Ok(NewSuppression {
                    controller: get("controller").to_string(),
                    campaign_id: get("campaign_id").to_string(),
                    number: number.e164,
                    reason: get("reason").to_string(),
                    source: get("source").to_string(),
                    expires_at,
                    default_region: String::new(),
                    suppression_id: id,
                })
            })();
            (*line, result)
        })
        .collect();
    let suppressions = collect(validated)?;
    let mut summary = ContactImportSummary {
        lines: suppressions.len(),
        stored: 0,
        already_present: 0,
        dry_run,
    };
    if !dry_run {
        for suppression in suppressions {
            if records.add_suppression_once(suppression, actor, now)?.1 {
                summary.stored += 1;
            } else {
                summary.already_present += 1;
            }
        }
    }
    Ok(summary)
}
