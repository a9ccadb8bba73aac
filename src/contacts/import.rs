//! `dialgate consent import` and `dialgate suppression import`: bulk CSV
//! files from CRMs, streamed. Every line is validated; the records go into
//! one transaction that is committed only when no line was bad (the error
//! names each bad line and field), so one bad line stores nothing. Records
//! get ids derived from their content, so re-running an import stores
//! nothing twice. The import is one event in the change trail; a running
//! server picks the records up within a second.

use std::fs::File;
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use sha2::{Digest, Sha256};

use crate::contacts::packed_rows::{Packed, PackedRows};
use crate::contacts::service::{
    self as records, NewConsent, NewSuppression, Records, RecordsError,
};
use crate::contacts::store::StagedTable;
use crate::contacts::{BatchOrder, BulkImport, ContactStore, StoreError};
use crate::model::Purpose;
use crate::number::NumberKey;

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

impl From<StoreError> for ContactImportError {
    fn from(err: StoreError) -> Self {
        ContactImportError::Store(RecordsError::from(err))
    }
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactImportSummary {
    pub lines: usize,
    pub stored: usize,
    pub already_present: usize,
    pub dry_run: bool,
}

/// A reader that hashes what it reads: the trail names the file's digest.
struct Hashing<R> {
    inner: R,
    digest: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.digest.update(&buf[..n]);
        Ok(n)
    }
}

/// A CSV file being read: its columns by name, and its rows.
struct Table {
    path: PathBuf,
    columns: Vec<Option<usize>>,
    names: &'static [&'static str],
    reader: csv::Reader<Hashing<Box<dyn Read + Send>>>,
    progress: Option<indicatif::ProgressBar>,
}

impl Table {
    fn open(
        path: &Path,
        known: &'static [&'static str],
        required: &[&'static str],
    ) -> Result<Table, ContactImportError> {
        let read_error = |cause: String| ContactImportError::Read {
            path: path.to_path_buf(),
            cause,
        };
        let file = File::open(path).map_err(|e| read_error(e.to_string()))?;
        let progress = std::io::stderr().is_terminal().then(|| {
            let size = file.metadata().map(|m| m.len()).unwrap_or(0);
            let pb = indicatif::ProgressBar::new(size);
            pb.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            pb.set_message(format!("importing {}", path.display()));
            pb
        });
        let raw: Box<dyn Read + Send> = match &progress {
            Some(pb) => Box::new(pb.wrap_read(file)),
            None => Box::new(file),
        };
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .flexible(false)
            .buffer_capacity(1 << 20)
            .from_reader(Hashing {
                inner: raw,
                digest: Sha256::new(),
            });
        let headers = reader
            .headers()
            .map_err(|e| read_error(e.to_string()))?
            .clone();
        let mut columns = vec![None; known.len()];
        for (i, name) in headers.iter().enumerate() {
            let Some(k) = known.iter().position(|c| *c == name) else {
                return Err(ContactImportError::UnknownColumn {
                    path: path.to_path_buf(),
                    column: name.to_string(),
                    known: known.join(", "),
                });
            };
            if let Some(first) = columns[k] {
                return Err(ContactImportError::DuplicateColumn {
                    path: path.to_path_buf(),
                    column: name.to_string(),
                    first: first + 1,
                    again: i + 1,
                });
            }
            columns[k] = Some(i);
        }
        if let Some(missing) = required.iter().find(|c| {
            known
                .iter()
                .position(|k| k == *c)
                .and_then(|k| columns[k])
                .is_none()
        }) {
            return Err(ContactImportError::MissingColumn(
                missing,
                path.to_path_buf(),
            ));
        }
        Ok(Table {
            path: path.to_path_buf(),
            columns,
            names: known,
            reader,
            progress,
        })
    }

    /// Validates every row with `validate`; while no row was bad, hands
    /// each valid one to `store`. Returns the number of lines.
    fn each<T>(
        &mut self,
        mut validate: impl FnMut(&Row<'_>) -> Result<T, RecordsError>,
        mut store: impl FnMut(T) -> Result<(), StoreError>,
    ) -> Result<usize, ContactImportError> {
        let mut bad = BadLines::default();
        let mut record = csv::StringRecord::new();
        let mut lines = 0;
        loop {
            match self.reader.read_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => {
                    return Err(ContactImportError::Read {
                        path: self.path.clone(),
                        cause: format!("line {}: {e}", lines + 2),
                    });
                }
            }
            lines += 1;
            let row = Row {
                record: &record,
                columns: &self.columns,
                names: self.names,
            };
            match validate(&row) {
                Ok(value) if bad.count == 0 => store(value)?,
                Ok(_) => {}
                Err(err) => bad.add(lines + 1, err),
            }
        }
        if let Some(pb) = &self.progress {
            pb.finish_and_clear();
        }
        bad.into_result()?;
        Ok(lines)
    }

    /// What the trail says of the file.
    fn describe(&self, lines: usize) -> serde_json::Value {
        serde_json::json!({
            "file": self.path.display().to_string(),
            "sha256": hex::encode(self.reader.get_ref().digest.clone().finalize()),
            "lines": lines,
        })
    }
}

/// One row, its fields by column name.
struct Row<'a> {
    record: &'a csv::StringRecord,
    columns: &'a [Option<usize>],
    names: &'static [&'static str],
}

impl Row<'_> {
    fn get(&self, column: &str) -> &str {
        self.names
            .iter()
            .position(|c| *c == column)
            .and_then(|k| self.columns[k])
            .and_then(|i| self.record.get(i))
            .unwrap_or("")
    }
}

/// The bad lines of a file: the first ones listed, all counted.
#[derive(Default)]
struct BadLines {
    errors: Vec<String>,
    count: usize,
}

impl BadLines {
    fn add(&mut self, line: usize, err: RecordsError) {
        self.count += 1;
        if self.errors.len() < LISTED_ERRORS {
            self.errors.push(format!("line {line}: {err}"));
        }
    }

    fn into_result(mut self) -> Result<(), ContactImportError> {
        if self.count == 0 {
            return Ok(());
        }
        if self.count > self.errors.len() {
            self.errors
                .push(format!("and {} more", self.count - self.errors.len()));
        }
        Err(ContactImportError::BadLines {
            errors: self.errors,
            count: self.count,
        })
    }
}

/// Streams `table` through `validate` into one bulk transaction of
/// `store` (or nowhere on a dry run).
/// Who imports what, when.
struct Import<'a> {
    action: &'a str,
    actor: &'a str,
    now: Timestamp,
    dry_run: bool,
}

/// The records in the order of their ids (file order among equals), for
/// a first load into a store keyed by id: its id index, which stays, then
/// takes each batch in order.
fn by_id<T>(records: Vec<(NumberKey, T)>, id: impl Fn(&T) -> &str) -> Vec<(NumberKey, T)> {
    let mut order: Vec<usize> = (0..records.len()).collect();
    order.sort_unstable_by(|&a, &b| id(&records[a].1).cmp(id(&records[b].1)).then(a.cmp(&b)));
    let mut taken: Vec<Option<(NumberKey, T)>> = records.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| taken[i].take()).collect()
}

/// Bytes of a ledger line of opt-outs an import writes at once (about
/// 15,000 opt-outs).
const LEDGER_BATCH_BYTES: usize = 1 << 20;

/// Validated records handed from the reading thread to the storing one at
/// once, in the order the store takes them best ([`BatchOrder`]; sorted
/// here, on the faster of the two threads).
const HANDOVER: usize = crate::contacts::BULK_BATCH;

/// Text bytes a staged row takes, about, packed (a guess for the buffer's
/// first size; it grows as needed).
const PACKED_ROW_BYTES: usize = 256;

/// A batch handed from the reading thread to the storing one.
enum Handover<T> {
    /// Records, for a first load (which takes them one by one).
    Records(Vec<(NumberKey, T)>),
    /// A staged import's rows, packed in number order (see `PackedRows`).
    Packed(PackedRows),
}

/// How a bulk import hands one kind of record to the store.
struct Kind<T> {
    /// The order in which the store takes them best.
    order: fn(&BulkImport<'_>) -> BatchOrder,
    /// A record's id.
    id: fn(&T) -> &str,
    /// Their staging table, and how a record is packed for it: the staged
    /// values first, then any the storing thread reads itself.
    table: StagedTable,
    pack: fn(&mut PackedRows, NumberKey, &T),
    width: usize,
}

/// What the storing thread does with each kind of batch.
struct Storing<A, S> {
    /// Adds one record of a first load.
    add: A,
    /// Does what a batch of packed rows needs before it is staged (an
    /// opt-out's ledger line).
    before_staging: S,
}

fn run<T: Send>(
    store: &ContactStore,
    mut table: Table,
    import: Import<'_>,
    validate: impl FnMut(&Row<'_>) -> Result<(NumberKey, T), RecordsError> + Send,
    kind: Kind<T>,
    storing: Storing<
        impl FnMut(&mut BulkImport<'_>, NumberKey, T) -> Result<(), StoreError>,
        impl FnMut(&mut BulkImport<'_>, &PackedRows) -> Result<(), StoreError>,
    >,
    before_move: impl FnOnce(&mut BulkImport<'_>) -> Result<(), StoreError>,
) -> Result<ContactImportSummary, ContactImportError> {
    let Import {
        action,
        actor,
        now,
        dry_run,
    } = import;
    let Storing {
        mut add,
        mut before_staging,
    } = storing;
    // Two threads: this one stores (the transaction cannot move), the
    // other reads and validates, handing over batches. A dry run stages
    // and checks the records as the import would, and stores nothing.
    let mut failure = None;
    let fill = |bulk: &mut BulkImport<'_>| {
        let order = (kind.order)(bulk);
        let Kind {
            id,
            table: staged_table,
            pack,
            width,
            ..
        } = kind;
        let hand_over = move |batch: Vec<(NumberKey, T)>| match order {
            BatchOrder::AsRead => Handover::Records(batch),
            BatchOrder::ById => Handover::Records(by_id(batch, id)),
            BatchOrder::ByNumber => Handover::Packed(crate::contacts::store::packed_by_number(
                &batch,
                width,
                batch.len() * PACKED_ROW_BYTES,
                pack,
            )),
        };
        std::thread::scope(|scope| {
            let (batches, received) = std::sync::mpsc::sync_channel::<Handover<T>>(2);
            let reader = scope.spawn(move || {
                let mut batch = Vec::with_capacity(HANDOVER);
                let lines = table.each(validate, |value| {
                    batch.push(value);
                    if batch.len() >= HANDOVER {
                        let full = std::mem::replace(&mut batch, Vec::with_capacity(HANDOVER));
                        batches
                            .send(hand_over(full))
                            .map_err(|_| StoreError::Unreadable("the import stopped".into()))?;
                    }
                    Ok(())
                })?;
                batches
                    .send(hand_over(batch))
                    .map_err(|_| StoreError::Unreadable("the import stopped".into()))?;
                Ok::<_, ContactImportError>((lines, table.describe(lines)))
            });
            let stored = received.iter().try_for_each(|batch| match batch {
                Handover::Records(records) => records
                    .into_iter()
                    .try_for_each(|(key, value)| add(bulk, key, value)),
                Handover::Packed(rows) if rows.is_empty() => Ok(()),
                Handover::Packed(rows) => before_staging(bulk, &rows)
                    .and_then(|()| bulk.stage_packed(staged_table, &rows)),
            });
            drop(received);
            let read = reader.join().unwrap_or_else(|_| {
                Err(ContactImportError::Read {
                    path: PathBuf::new(),
                    cause: "the reading thread failed".into(),
                })
            });
            stored?;
            match read {
                Ok((lines, details)) => {
                    if !dry_run {
                        before_move(bulk)?;
                    }
                    Ok(Some((lines, details)))
                }
                Err(ContactImportError::Store(RecordsError::Store(err))) => Err(err),
                Err(err) => {
                    failure = Some(err);
                    Ok(None)
                }
            }
        })
    };
    let outcome = if dry_run {
        store.bulk_check(fill)?
    } else {
        store.bulk_import(actor, action, now, fill)?
    };
    match (outcome, failure) {
        (Some((lines, counts)), _) => Ok(ContactImportSummary {
            lines,
            stored: counts.stored as usize,
            already_present: counts.already_present as usize,
            dry_run,
        }),
        (None, Some(err)) => Err(err),
        (None, None) => Err(ContactImportError::Read {
            path: PathBuf::new(),
            cause: "import abandoned".into(),
        }),
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
            problem: format!(
                "{text:?} is not RFC 3339 with an offset (2027-06-30T23:59:59+02:00) or a date alone (YYYY-MM-DD)"
            ),
        })
}

/// Columns of a consents file.
pub const CONSENT_COLUMNS: [&str; 12] = [
    "controller",
    "number",
    "purpose",
    "granted_at",
    "source",
    "supplier",
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
    spellings: &records::Spellings,
) -> Result<ContactImportSummary, ContactImportError> {
    let table = Table::open(
        path,
        &CONSENT_COLUMNS,
        &["controller", "number", "purpose", "granted_at", "source"],
    )?;
    let derived_ids = store.derived_ids();
    let validate = |row: &Row<'_>| {
        let get = |c: &str| row.get(c);
        let purpose = match get("purpose") {
            "" => None,
            p => Some(
                Purpose::from_config(p).ok_or_else(|| RecordsError::InvalidArgument {
                    field: "purpose",
                    problem: format!(
                        "{p:?}: expected marketing, market_research, statistical or profiling"
                    ),
                })?,
            ),
        };
        let request = NewConsent {
            controller: get("controller").to_string(),
            number: get("number").to_string(),
            purpose,
            granted_at: instant("granted_at", get("granted_at"))?,
            expires_at: instant("expires_at", get("expires_at"))?,
            source: get("source").to_string(),
            supplier: get("supplier").to_string(),
            method: get("method").to_string(),
            notice_version: get("notice_version").to_string(),
            evidence_ref: get("evidence_ref").to_string(),
            default_region: get("default_region").to_string(),
            consent_id: get("consent_id").to_string(),
        };
        let mut consent = records::validate_consent(request, now)?;
        spellings.check_known(&consent.controller)?;
        if get("consent_id").is_empty() {
            let mut parts = vec![
                consent.controller.as_str(),
                consent.number.as_str(),
                consent.purpose.as_str(),
            ];
            let granted_at = consent.granted_at.to_string();
            parts.extend([granted_at.as_str(), consent.source.as_str()]);
            // The controller's own consents keep the ids they had before
            // suppliers were recorded.
            if !consent.supplier.is_empty() {
                parts.push(consent.supplier.as_str());
            }
            consent.consent_id = derived_ids.id("csv", &parts);
        }
        let key =
            NumberKey::from_e164(&consent.number).ok_or_else(|| RecordsError::InvalidArgument {
                field: "number",
                problem: "not E.164".into(),
            })?;
        Ok((key, consent))
    };
    run(
        store,
        table,
        Import {
            action: "consents.imported",
            actor,
            now,
            dry_run,
        },
        validate,
        Kind {
            order: |bulk| bulk.consent_order(),
            id: |consent| consent.consent_id.as_str(),
            table: StagedTable::Consents,
            pack: crate::contacts::store::pack_consent,
            width: crate::contacts::store::STAGED_CONSENT_VALUES,
        },
        Storing {
            add: |bulk: &mut BulkImport<'_>, key, consent| bulk.consent(key, consent),
            before_staging: |_: &mut BulkImport<'_>, _: &PackedRows| Ok(()),
        },
        |_| Ok(()),
    )
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
    let table = Table::open(path, &SUPPRESSION_COLUMNS, &["number"])?;
    let import_id = crate::clock::time_ordered_uuid().to_string();
    // The ledger's line not written yet (a write per batch of opt-outs).
    let unwritten = std::cell::RefCell::new(
        crate::contacts::ledger::OptOutLines::new(
            now,
            &records.store().salt_fingerprint(),
            &import_id,
        )
        .map_err(|err| ledger_entry_failed(&err))?,
    );
    let derived_ids = records.store().derived_ids();
    let validate = |row: &Row<'_>| {
        let get = |c: &str| row.get(c);
        let number = records::parse_number(get("number"), get("default_region"))?;
        let expires_at = instant("expires_at", get("expires_at"))?;
        let id = match get("suppression_id") {
            "" => derived_ids.id(
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
        let (key, suppression) = records.validate_suppression(
            NewSuppression {
                controller: get("controller").to_string(),
                campaign_id: get("campaign_id").to_string(),
                number: number.e164,
                reason: get("reason").to_string(),
                source: get("source").to_string(),
                expires_at,
                default_region: String::new(),
                suppression_id: id,
            },
            actor,
            now,
        )?;
        // Built here, on the reading thread: the storing one is the slower.
        let line = match records.ledger() {
            Some(_) if !dry_run => Some(
                records
                    .imported_opt_out(&suppression)
                    .row()
                    .map_err(|err| RecordsError::Store(ledger_entry_failed(&err)))?,
            ),
            _ => None,
        };
        Ok((key, (suppression, line)))
    };
    // Each opt-out's ledger line, into the ledger's next line of many (a
    // dry run stores nothing, in the ledger neither).
    let ledger_line = |line: Option<&[u8]>| {
        let Some(ledger) = records.ledger().filter(|_| !dry_run) else {
            return Ok(());
        };
        // Never an opt-out the ledger does not hold.
        let line = line.ok_or_else(|| {
            StoreError::Unreadable("an opt-out without its ledger entry: nothing imported".into())
        })?;
        let mut unwritten = unwritten.borrow_mut();
        unwritten.push(line);
        if unwritten.len() >= LEDGER_BATCH_BYTES {
            ledger
                .append_lines_unsynced(&unwritten.take())
                .map_err(ledger_failed)?;
        }
        Ok::<_, StoreError>(())
    };
    run(
        records.store(),
        table,
        Import {
            action: "suppressions.imported",
            actor,
            now,
            dry_run,
        },
        validate,
        Kind {
            order: |bulk| bulk.suppression_order(),
            id: |(suppression, _)| suppression.suppression_id.as_str(),
            table: StagedTable::Suppressions,
            // The staged values, then the ledger line (NULL without one).
            pack: |rows, key, (suppression, line)| {
                crate::contacts::store::pack_suppression(rows, key, suppression);
                match line {
                    Some(line) => rows.raw(line),
                    None => rows.null(),
                }
            },
            width: crate::contacts::store::STAGED_SUPPRESSION_VALUES + 1,
        },
        Storing {
            add: |bulk: &mut BulkImport<'_>, key, (suppression, line): (crate::contacts::Suppression, Option<Vec<u8>>)| {
                ledger_line(line.as_deref())?;
                bulk.suppression(key, suppression)
            },
            before_staging: |_: &mut BulkImport<'_>, rows: &PackedRows| {
                let line = crate::contacts::store::STAGED_SUPPRESSION_VALUES;
                rows.rows().try_for_each(|row| match row[line] {
                    Packed::Text(..) => ledger_line(Some(rows.bytes(row[line]))),
                    _ => ledger_line(None),
                })
            },
        },
        |bulk| {
            // The opt-outs count in the ledger once this line is durable,
            // before they are moved into the store (and only if they will be).
            if let Some(ledger) = records.ledger() {
                ledger
                    .append_lines_unsynced(&unwritten.borrow_mut().take())
                    .map_err(ledger_failed)?;
                bulk.refuse_reused_ids(records.store())?;
                let mut commit = crate::contacts::ledger::Entry::about(
                    crate::contacts::ledger::EntryKind::ImportCommitted,
                    &[0; 32],
                    "",
                    now,
                );
                commit.subject.clear();
                commit.import.clone_from(&import_id);
                ledger.append(&[commit]).map_err(ledger_failed)?;
            }
            Ok(())
        },
    )
}

/// Columns of a consent corrections file (`dialgate consent rectify`):
/// the three first are required, the others left empty keep their value.
pub const CONSENT_CORRECTION_COLUMNS: [&str; 14] = [
    "consent_id",
    "controller",
    "reason",
    "number",
    "default_region",
    "purpose",
    "granted_at",
    "expires_at",
    "clear_expires_at",
    "source",
    "supplier",
    "method",
    "notice_version",
    "evidence_ref",
];

/// The most corrections one file may hold: they are applied in one
/// transaction, each with its own trail event.
pub const MAX_CORRECTIONS: usize = 10_000;

/// Applies a consent corrections CSV (GDPR art. 16): every line is checked
/// against the stored consent first; all are applied in one transaction,
/// or none (the error names each bad line). A running server re-indexes
/// the corrected consents within its reload interval.
///
/// # Errors
/// [`ContactImportError`]; nothing is changed then.
pub fn rectify_consents(
    records: &Records,
    path: &Path,
    actor: &str,
    now: Timestamp,
    dry_run: bool,
) -> Result<ContactImportSummary, ContactImportError> {
    let mut table = Table::open(
        path,
        &CONSENT_CORRECTION_COLUMNS,
        &["consent_id", "controller", "reason"],
    )?;
    let mut first_line: std::collections::HashMap<String, usize> = Default::default();
    let mut line = 1;
    let mut corrections = Vec::new();
    let lines = table.each(
        |row| {
            line += 1;
            let get = |c: &str| row.get(c);
            if line - 1 > MAX_CORRECTIONS {
                return Err(RecordsError::InvalidArgument {
                    field: "consent_id",
                    problem: format!(
                        "more than {MAX_CORRECTIONS} corrections in one file: split it"
                    ),
                });
            }
            if let Some(first) = first_line.insert(get("consent_id").to_string(), line) {
                return Err(RecordsError::InvalidArgument {
                    field: "consent_id",
                    problem: format!(
                        "{:?} is corrected on line {first} already: one line per consent",
                        get("consent_id")
                    ),
                });
            }
            let purpose = match get("purpose") {
                "" => None,
                p => Some(Purpose::from_config(p).ok_or_else(|| {
                    RecordsError::InvalidArgument {
                        field: "purpose",
                        problem: format!(
                            "{p:?}: expected marketing, market_research, statistical or profiling"
                        ),
                    }
                })?),
            };
            let clear_expires_at = match get("clear_expires_at") {
                "" | "false" => false,
                "true" => true,
                other => {
                    return Err(RecordsError::InvalidArgument {
                        field: "clear_expires_at",
                        problem: format!("{other:?}: expected true, false or nothing"),
                    });
                }
            };
            records.consent_rectification(
                records::ConsentCorrection {
                    consent_id: get("consent_id").to_string(),
                    controller: get("controller").to_string(),
                    reason: get("reason").to_string(),
                    number: get("number").to_string(),
                    default_region: get("default_region").to_string(),
                    purpose,
                    granted_at: instant("granted_at", get("granted_at"))?,
                    expires_at: instant("expires_at", get("expires_at"))?,
                    clear_expires_at,
                    source: get("source").to_string(),
                    supplier: get("supplier").to_string(),
                    method: get("method").to_string(),
                    notice_version: get("notice_version").to_string(),
                    evidence_ref: get("evidence_ref").to_string(),
                },
                now,
            )
        },
        |correction| {
            corrections.push(correction);
            Ok(())
        },
    )?;
    if !dry_run {
        records.rectify(&corrections, actor, now)?;
    }
    Ok(ContactImportSummary {
        lines,
        stored: if dry_run { 0 } else { corrections.len() },
        already_present: 0,
        dry_run,
    })
}

fn ledger_failed(err: crate::contacts::ledger::LedgerError) -> StoreError {
    StoreError::Unreadable(format!("{err}: nothing imported"))
}

fn ledger_entry_failed(err: &std::io::Error) -> StoreError {
    StoreError::Unreadable(format!("the erasure ledger entry: {err}"))
}
