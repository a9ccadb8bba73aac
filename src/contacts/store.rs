//! SQLite persistence of contact records and of their change trail, with
//! the in-memory index kept in step: every change and its trail event are
//! committed in one transaction first, then applied to the index.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::Serialize;

mod rectify;

pub use rectify::{Rectification, Stored};

use super::compact::{CompactIndex, Slot, SlotError, Table};
use super::derived_ids::{DerivedIds, Scheme as DerivedScheme};
use super::packed_rows::{Packed, PackedRows};
use super::repeated_ids::{IdCopy, RepeatedIds};
use super::seen_ids::SeenIds;
use super::staged_ids::StagedIds;
use super::{
    Consent, ContactIndex, ContactView, Record, Relationship, RelationshipKind, SubjectHash,
    Suppression,
};
use crate::model::Purpose;
use crate::number::NumberKey;

mod import_lock;
mod journal_state;
pub(crate) use journal_state::{AllRecords, with_journal_position};
mod purge;
mod raw_rows;
mod scan;

pub use purge::{Ceiling, PurgeCounts, RecordCeilings};
use scan::NameCache;

/// A storage failure (the change was not made).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("contact store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("contact store: {0}")]
    Index(#[from] SlotError),
    #[error("contact store unreadable: {0}")]
    Unreadable(String),
    /// Opt-out ids a bulk import reuses for another opt-out.
    #[error("suppression_id reused for another opt-out, nothing imported: {0}")]
    ReusedIds(String),
    /// Consent ids a bulk import reuses for another consent (a line
    /// without a `consent_id` has one derived from its controller, number,
    /// purpose, granted_at, source and supplier).
    #[error(
        "consent_id reused for another consent, nothing imported: {0} (a line without a consent_id has an id derived from its controller, number, purpose, granted_at, source and supplier; to end a stored consent earlier, rectify its expires_at, or withdraw it and leave its line out)"
    )]
    ReusedConsentIds(String),
    /// A value read back that the code does not know.
    #[error("contact store: {0}")]
    Corrupt(#[from] UnknownValue),
    /// A record changed between the read a correction was computed from
    /// and the write.
    #[error("record {0} changed since it was read: send the correction again")]
    Changed(String),
}

/// Durable contact records plus their in-memory index.
#[derive(Debug)]
pub struct ContactStore {
    path: PathBuf,
    conn: Mutex<Connection>,
    /// Read-only connections for the records' ids (the index holds rows).
    readers: Mutex<Vec<Connection>>,
    /// Ids read lately, by record (table, row and start instant: a row
    /// number SQLite reuses after an erasure is another record).
    ids: dashmap::DashMap<(u8, i64, i64, u64), Arc<str>, foldhash::fast::RandomState>,
    /// Bumped by every erasure before it empties `ids`: an id read before
    /// an erasure is not kept after it (its row number may come back).
    ids_epoch: std::sync::atomic::AtomicU64,
    index: ContactIndex,
    /// How an import derives the ids of records without one.
    derived_ids: DerivedIds,
    /// Whether the index was loaded (not for [`ContactStore::open_unindexed`]).
    indexed: std::sync::atomic::AtomicBool,
    /// Whether a bulk import may set the number indexes aside while it
    /// holds the serve lock ([`ContactStore::move_offline`]).
    offline_moves: std::sync::atomic::AtomicBool,
    /// First time a number was seen not cleared, by (registry, controller, number).
    observations: super::observations::Observations,
    /// Highest rowid loaded per table, to pick up rows other processes
    /// (bulk imports) added.
    watermarks: Mutex<[i64; 3]>,
    /// Highest `corrections.seq` applied: rows rewritten in place (by a
    /// rectification, here or in another process) since the load.
    corrected: Mutex<i64>,
    /// When the store was opened: the clock of `failing_since_ms` and of
    /// the journal's confirmations (counting a suspend of the machine).
    opened: crate::clock::BootInstant,
    /// Since when every refresh has failed, in ms after `opened` plus one
    /// (0: the last one worked). An atomic: every check reads it.
    failing_since_ms: std::sync::atomic::AtomicU64,
    /// `meta.observations_version` of the registry answers loaded.
    observations_version: Mutex<i64>,
    /// Whether any registry answer is held: read on every check, so an
    /// atomic rather than the map's length (which locks every shard).
    any_opposed: std::sync::atomic::AtomicBool,
    /// Withdrawals known by hash only (re-applied by a restore).
    withdrawals: purge::HashedWithdrawals,
    /// Postgres backend: when this store last confirmed it had applied the
    /// whole shared journal, in ms after `opened` plus one (0: never).
    journal_confirmed_ms: std::sync::atomic::AtomicU64,
    /// Whether the store follows a shared journal (then `failing_for`
    /// counts from the last confirmation).
    journal_followed: std::sync::atomic::AtomicBool,
    /// Whether applying the shared journal failed in a way waiting does
    /// not cure (an entry refused, a rewound journal): decisions stop at
    /// once, until the whole journal is confirmed applied.
    journal_broken: std::sync::atomic::AtomicBool,
    /// The staleness allowed when following a journal (`max_staleness`).
    behind_limit: std::sync::OnceLock<std::time::Duration>,
    /// Opt-outs of a shared bulk import being applied (postgres backend).
    pending_opt_outs: journal_state::PendingOptOuts,
}

/// What a bulk import stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BulkCounts {
    pub stored: u64,
    /// Records with the same id already stored (re-runs store nothing twice).
    pub already_present: u64,
    /// Tables whose number index was set aside during the moves and built
    /// again after them (see `ContactStore::move_staged`; a first load sets
    /// the consents' id index aside with their number index).
    pub indexes_rebuilt: u8,
    /// A first load's copies of a consent id were found by SQLite sorting
    /// the consents (the ids it remembered could not tell, see
    /// `RepeatedIds`).
    pub ids_sorted: bool,
}

/// The records of one bulk import, staged in batches sorted by number (the
/// number index then takes them in order when they are moved in), or, for
/// a first load, inserted into the store as they come.
pub struct BulkImport<'t> {
    tx: &'t Transaction<'t>,
    consents: Vec<(NumberKey, Consent)>,
    suppressions: Vec<(NumberKey, Suppression)>,
    /// A first load (see `ContactStore::load_first`): the records go
    /// straight into the store, in the import's one transaction, under
    /// this trail event; `None`: staged, moved in afterwards.
    first_load: Option<FirstLoad<'t>>,
    /// Ids met again are checked for what the shared journal did not
    /// check from its first version: an opt-out's expiry (see
    /// `ContactStore::refuse_reused_suppression_ids`), a consent's
    /// content (see `KeptConsent::is_copy`); not for an import the journal
    /// committed already (see [`BulkImport::applying_committed`]).
    copies_checked: bool,
    /// The ids staged (not in a first load), to tell those met twice.
    staged_ids: StagedTables,
}

/// The ids a staged import met, per table.
#[derive(Default)]
struct StagedTables {
    consents: StagedIds,
    suppressions: StagedIds,
}

/// The records a first load inserted so far, under its trail event.
struct FirstLoad<'t> {
    seq: i64,
    counts: BulkCounts,
    /// The consents' indexes, number and id, were set aside (at the first
    /// consent; the ids are unique through an index of their own, see
    /// `index_ids`).
    consents_aside: bool,
    /// The ids inserted, to keep the first of each.
    repeated: RepeatedIds,
    /// The opt-outs' indexes (number and id) are set aside at the first
    /// opt-out: the store held none, and its opt-out ids are unique
    /// through an index of their own.
    suppressions_aside: bool,
    /// They were (at the first opt-out).
    suppressions_dropped: bool,
    /// The opt-out ids inserted since, to tell their copies.
    seen: SeenIds,
    /// The copies of an opt-out id were kept out, or found to be other
    /// opt-outs (see `BulkImport::settle_suppression_copies`).
    copies_settled: bool,
    /// Opt-out ids the load found already stored for another opt-out (in
    /// the store, or earlier in the file), the first few.
    reused: Vec<String>,
    /// Hashes the numbers of erased opt-outs' ids met again.
    index: &'t ContactIndex,
}

/// Reused opt-out ids an import names at most.
const REUSED_LISTED: usize = 5;

/// The order in which a bulk import's batches are best handed to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchOrder {
    /// By number: the store's number index takes them in order (staged
    /// imports).
    ByNumber,
    /// By id: a first load into a table whose id index stays in place (its
    /// primary key, in a store created before the id index, or a table
    /// that holds rows already).
    ById,
    /// As read: a first load that sets every index aside.
    AsRead,
}

/// Records a bulk import holds before inserting them.
pub const BULK_BATCH: usize = 65_536;

/// The staged columns of each table, in the order of the statements below.
const STAGED_CONSENT_COLUMNS: &str = "consent_id, controller, number, number_key, purpose, granted_at_us, \
    revoked_at_us, expires_at_us, source, method, notice_version, evidence_ref, recorded_at_us, supplier";
const STAGED_SUPPRESSION_COLUMNS: &str = "suppression_id, controller, campaign_id, number, number_key, reason, \
    source, added_by, created_at_us, expires_at_us";

const STAGING_SCHEMA: &str = "
CREATE TABLE staging.consents (consent_id, controller, number, number_key, purpose, granted_at_us,
    revoked_at_us, expires_at_us, source, method, notice_version, evidence_ref, recorded_at_us, supplier,
    import_seq);
CREATE TABLE staging.suppressions (suppression_id, controller, campaign_id, number, number_key, reason,
    source, added_by, created_at_us, expires_at_us);
";

const INSERT_CONSENT: &str = "INSERT INTO staging.consents VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)";

/// A first load's consents, straight into the store (the same 15 values).
const LOAD_CONSENT: &str = "INSERT OR IGNORE INTO main.consents (consent_id, controller, number, number_key, \
    purpose, granted_at_us, revoked_at_us, expires_at_us, source, method, notice_version, evidence_ref, \
    recorded_at_us, supplier, import_seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)";

const INSERT_SUPPRESSION: &str =
    "INSERT INTO staging.suppressions VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";

/// A first load's opt-outs, straight into the store (the same 10 values
/// and the import's trail event).
const LOAD_SUPPRESSION: &str = "INSERT OR IGNORE INTO main.suppressions (suppression_id, controller, campaign_id, number, \
    number_key, reason, source, added_by, created_at_us, expires_at_us, import_seq) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";

/// Staged rows moved into the store per transaction at first and at least;
/// the chunk grows while a move takes under half of [`MOVE_TARGET`].
const MOVE_CHUNK: i64 = BULK_BATCH as i64;
const MOVE_CHUNK_MAX: i64 = 16 * MOVE_CHUNK;
/// Write-ahead log pages between checkpoints while moving (1 GiB of 4 KiB pages).
const WAL_PAGES_WHILE_MOVING: i64 = 262_144;

/// How long a write waits for another writer's lock before failing.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The same for an import's moves while no server runs beside it (see
/// `ContactStore::move_staged`).
const BUSY_WHILE_ALONE: std::time::Duration = std::time::Duration::from_secs(600);

/// How long one move may hold the store's write lock, about: the server's
/// own writes (opt-outs, erasures; never a decision) wait about that long
/// (a pause after each move lets them in), within their 5 s busy timeout.
/// Each move rewrites the index pages its rows land on, which at 10 M
/// records is most of the number index whatever the move's size: 2 s
/// moved 10 M consents in 33 s where 1 s took 45-50 s (the write-ahead
/// log checkpoints run after the commit, outside the lock).
const MOVE_TARGET: std::time::Duration = std::time::Duration::from_millis(2000);
/// The pause after a move that took `took`: past half a second, longer
/// than the busy handler's longest sleep (100 ms), so that a waiting writer
/// polls inside it; shorter moves pause a 16th of their time (at least 5
/// ms), and a writer waits for a few of them at most.
fn move_pause(took: std::time::Duration) -> std::time::Duration {
    if took >= std::time::Duration::from_millis(500) {
        std::time::Duration::from_millis(110)
    } else {
        (took / 16).max(std::time::Duration::from_millis(5))
    }
}

impl BulkImport<'_> {
    /// Adds a consent (kept as it is when one with its id is stored).
    ///
    /// # Errors
    /// [`StoreError`]; the import then stores nothing.
    pub fn consent(&mut self, key: NumberKey, consent: Consent) -> Result<(), StoreError> {
        self.consents.push((key, consent));
        if self.consents.len() >= BULK_BATCH {
            self.flush()?;
        }
        Ok(())
    }

    /// Adds an opt-out (kept as it is when one with its id is stored).
    ///
    /// # Errors
    /// [`StoreError`]; the import then stores nothing.
    pub fn suppression(
        &mut self,
        key: NumberKey,
        suppression: Suppression,
    ) -> Result<(), StoreError> {
        self.suppressions.push((key, suppression));
        if self.suppressions.len() >= BULK_BATCH {
            self.flush()?;
        }
        Ok(())
    }

    /// Marks an import the shared journal committed already, which this
    /// replica must apply, never refuse: its opt-out ids met again are not
    /// checked for their expiry, nor its consents met again at all (a
    /// copy is kept out as it was before these checks). The journal
    /// checked them at the commit (since these checks exist); one
    /// committed before would stop this replica's decisions for good.
    pub fn applying_committed(&mut self) {
        self.copies_checked = false;
    }

    /// The order in which consents are best added.
    pub fn consent_order(&self) -> BatchOrder {
        match &self.first_load {
            None => BatchOrder::ByNumber,
            Some(_) => BatchOrder::AsRead,
        }
    }

    /// The order in which opt-outs are best added: a first load's go
    /// into a table keyed by their id.
    pub fn suppression_order(&self) -> BatchOrder {
        match &self.first_load {
            None => BatchOrder::ByNumber,
            Some(load) if load.suppressions_aside => BatchOrder::AsRead,
            Some(_) => BatchOrder::ById,
        }
    }

    /// Inserts the records held: staged (sorted by number), or, in a first
    /// load, into the store as read, with the indexes set aside (the first
    /// consent of each id is kept later, see `index_unique_ids`).
    fn flush(&mut self) -> Result<(), StoreError> {
        let Some(load) = &mut self.first_load else {
            return self.stage_held();
        };
        let mut consents = std::mem::take(&mut self.consents);
        if !consents.is_empty() && !load.consents_aside {
            // Built again in one sorted pass each before the commit (the
            // ids checked unique then).
            self.tx.execute_batch(
                "DROP INDEX IF EXISTS main.consents_by_number;
                 DROP INDEX IF EXISTS main.consents_by_id;",
            )?;
            load.consents_aside = true;
            load.counts.indexes_rebuilt += 1;
        }
        let mut statement = self.tx.prepare_cached(LOAD_CONSENT)?;
        for (key, consent) in &consents {
            let inserted = insert_consent(&mut statement, *key, consent, Some(load.seq))?;
            if inserted == 0 {
                // No index to conflict with: refused for another reason.
                return Err(StoreError::Unreadable(format!(
                    "consent {} was not inserted: nothing imported",
                    consent.consent_id
                )));
            }
            load.counts.moved(1, inserted);
            load.repeated
                .inserted(&consent.consent_id, self.tx.last_insert_rowid());
        }
        consents.clear();
        self.consents = consents;
        let mut suppressions = std::mem::take(&mut self.suppressions);
        load_suppressions(self.tx, load, &suppressions, self.copies_checked)?;
        suppressions.clear();
        self.suppressions = suppressions;
        Ok(())
    }

    /// Stages the records held, each table's sorted by number.
    fn stage_held(&mut self) -> Result<(), StoreError> {
        let mut consents = std::mem::take(&mut self.consents);
        if !consents.is_empty() {
            let rows = packed_by_number(&consents, STAGED_CONSENT_VALUES, 0, pack_consent);
            self.stage_packed(StagedTable::Consents, &rows)?;
        }
        consents.clear();
        self.consents = consents;
        let mut suppressions = std::mem::take(&mut self.suppressions);
        if !suppressions.is_empty() {
            let rows = packed_by_number(
                &suppressions,
                STAGED_SUPPRESSION_VALUES,
                0,
                pack_suppression,
            );
            self.stage_packed(StagedTable::Suppressions, &rows)?;
        }
        suppressions.clear();
        self.suppressions = suppressions;
        Ok(())
    }

    /// Stages packed rows of `table` ([`pack_consent`], [`pack_suppression`];
    /// a row may hold more values after those, which are not stored), in
    /// the order packed; a staged import's reading thread packs them
    /// sorted by number (see `PackedRows`).
    ///
    /// # Errors
    /// [`StoreError`]; the import then stores nothing. A first load takes
    /// records, not rows.
    pub(crate) fn stage_packed(
        &mut self,
        table: StagedTable,
        rows: &PackedRows,
    ) -> Result<(), StoreError> {
        if self.first_load.is_some() {
            return Err(StoreError::Unreadable(
                "staged rows handed to a first load: nothing imported".into(),
            ));
        }
        // Records held before these rows are staged first, in order.
        if !self.consents.is_empty() || !self.suppressions.is_empty() {
            self.stage_held()?;
        }
        let (sql, values, ids) = match table {
            StagedTable::Consents => (
                INSERT_CONSENT,
                STAGED_CONSENT_VALUES,
                &mut self.staged_ids.consents,
            ),
            StagedTable::Suppressions => (
                INSERT_SUPPRESSION,
                STAGED_SUPPRESSION_VALUES,
                &mut self.staged_ids.suppressions,
            ),
        };
        if rows.width() < values {
            return Err(StoreError::Unreadable(format!(
                "staged rows of {} values where {values} are stored: nothing imported",
                rows.width()
            )));
        }
        let mut statement = self.tx.prepare_cached(sql)?;
        let text = |value: Packed| {
            rows.str(value).ok_or_else(|| {
                StoreError::Unreadable("a staged value is not text: nothing imported".into())
            })
        };
        for row in rows.rows() {
            for (i, value) in row[..values].iter().enumerate() {
                match *value {
                    Packed::Null => statement.raw_bind_parameter(i + 1, rusqlite::types::Null)?,
                    Packed::Int(int) => statement.raw_bind_parameter(i + 1, int)?,
                    Packed::Text(..) => statement.raw_bind_parameter(i + 1, text(*value)?)?,
                }
            }
            statement.raw_execute()?;
            // The id is each row's first value.
            ids.staged(text(row[0])?);
        }
        Ok(())
    }

    /// Settles a first load's copies of an opt-out id, once, after its
    /// last opt-out (the indexes it set aside let every copy in): every
    /// copy after the first of its id is deleted (counted as already
    /// present) if it is the same opt-out, and the load refused (see
    /// `refuse_reused_in_load`) if any is another one; then the id index
    /// is built again, in one sorted pass.
    fn settle_suppression_copies(&mut self) -> Result<(), StoreError> {
        let Some(load) = &mut self.first_load else {
            return Ok(());
        };
        if !load.suppressions_dropped || load.copies_settled {
            return Ok(());
        }
        load.copies_settled = true;
        let started = std::time::Instant::now();
        // Complete: every copy was told as it came, and kept out (or
        // refused). Else copies may have gone in unseen.
        if !std::mem::take(&mut load.seen).complete() && !index_suppression_ids(self.tx)? {
            let copies = id_copies(self.tx, "suppressions", "suppression_id")?;
            let mut read = self.tx.prepare(READ_SUPPRESSION_AT)?;
            let mut delete = self
                .tx
                .prepare("DELETE FROM main.suppressions WHERE rowid = ?1")?;
            for copy in &copies {
                let first = read.query_row([copy.first], read_kept)?;
                let again = read.query_row([copy.copy], read_kept)?;
                if !first.same_as(&again) && load.reused.len() < REUSED_LISTED {
                    load.reused
                        .push(format!("{} (twice in the file)", again.id));
                }
            }
            if load.reused.is_empty() {
                let mut later: Vec<i64> = copies.iter().map(|c| c.copy).collect();
                later.sort_unstable();
                for rowid in later {
                    delete.execute([rowid])?;
                }
                load.counts.left_out(copies.len() as u64);
            }
            tracing::debug!(copies = copies.len(), "opt-out copies found by SQLite");
        }
        if !load.reused.is_empty() {
            return Ok(());
        }
        if !index_suppression_ids(self.tx)? {
            return Err(StoreError::Unreadable(
                "an opt-out id went in twice unseen: nothing imported".into(),
            ));
        }
        tracing::debug!(
            took_ms = started.elapsed().as_millis() as u64,
            "opt-out id index built"
        );
        Ok(())
    }

    /// Refuses a first load that met opt-out ids already stored for
    /// another opt-out (in the store or earlier in the file).
    fn refuse_reused_in_load(&mut self) -> Result<(), StoreError> {
        self.flush()?;
        self.settle_suppression_copies()?;
        match &self.first_load {
            Some(load) if !load.reused.is_empty() => {
                Err(StoreError::ReusedIds(load.reused.join(", ")))
            }
            _ => Ok(()),
        }
    }
}

/// A first load's opt-outs, straight into the store in the order held:
/// as read into an empty table whose indexes are set aside (its id index
/// its own; copies told by the ids remembered, `SeenIds`), else by id (the
/// id index, or the primary key of a table created before it, takes each
/// batch in order). Both indexes are built again before the commit. An
/// opt-out whose id is stored already is kept out if it is the same
/// opt-out (a re-run), and refused if it is another one (another number,
/// controller or campaign: `INSERT OR IGNORE` alone would leave that
/// number callable).
fn load_suppressions(
    tx: &Transaction<'_>,
    load: &mut FirstLoad<'_>,
    suppressions: &[(NumberKey, Suppression)],
    copies_checked: bool,
) -> Result<(), StoreError> {
    if suppressions.is_empty() {
        return Ok(());
    }
    if load.copies_settled {
        return Err(StoreError::Unreadable(
            "opt-outs added after their ids were checked: nothing imported".into(),
        ));
    }
    if load.suppressions_aside && !load.suppressions_dropped {
        // Built again in one sorted pass each before the commit, the ids
        // checked unique then (`BulkImport::settle_suppression_copies`).
        tx.execute_batch(
            "DROP INDEX IF EXISTS main.suppressions_by_number;
             DROP INDEX IF EXISTS main.suppressions_by_id;",
        )?;
        load.suppressions_dropped = true;
        load.counts.indexes_rebuilt += 1;
    }
    let mut statement = tx.prepare_cached(LOAD_SUPPRESSION)?;
    let mut read = tx.prepare_cached(READ_SUPPRESSION_AT)?;
    for (key, suppression) in suppressions {
        let id = &suppression.suppression_id;
        if load.suppressions_dropped {
            // No index tells a copy now: the ids remembered do.
            let first = load.seen.find(
                id,
                |rowid| read.query_row([rowid], read_kept),
                |kept| kept.id.as_str(),
            )?;
            if let Some(first) = first {
                load.counts.moved(1, 0);
                if !first.is(*key, suppression) && load.reused.len() < REUSED_LISTED {
                    load.reused.push(format!("{id} (twice in the file)"));
                }
                continue;
            }
        }
        let inserted = insert_suppression(&mut statement, *key, suppression, Some(load.seq))?;
        load.counts.moved(1, inserted);
        if inserted > 0 {
            if load.suppressions_dropped {
                load.seen.inserted(id, tx.last_insert_rowid());
            }
            continue;
        }
        if load.suppressions_dropped {
            // No index to conflict with: a row refused for another reason.
            return Err(StoreError::Unreadable(format!(
                "opt-out {id} was not inserted: nothing imported"
            )));
        }
        if load.reused.len() < REUSED_LISTED
            && let Some(reused) =
                reused_suppression_id(tx, load, *key, suppression, copies_checked)?
        {
            load.reused.push(reused);
        }
    }
    Ok(())
}

/// Reads an opt-out by rowid: what tells whether another is the same.
const READ_SUPPRESSION_AT: &str =
    "SELECT suppression_id, number_key, controller, campaign_id, expires_at_us
     FROM main.suppressions WHERE rowid = ?1";

/// What tells whether two opt-outs of one id are the same opt-out.
struct KeptSuppression {
    id: String,
    key: Option<i64>,
    controller: String,
    campaign_id: String,
    expires_at_us: Option<i64>,
}

impl KeptSuppression {
    /// Whether `other`, met again in the same file, is the same opt-out:
    /// the same number, controller, campaign and expiry (an erased one,
    /// kept by hash only, is not compared).
    fn is(&self, key: NumberKey, other: &Suppression) -> bool {
        self.key == Some(key.0 as i64)
            && self.controller == other.controller
            && self.campaign_id == other.campaign_id
            && self.expires_at_us == other.expires_at.map(us)
    }

    fn same_as(&self, other: &KeptSuppression) -> bool {
        self.id == other.id
            && self.key.is_some()
            && self.key == other.key
            && self.controller == other.controller
            && self.campaign_id == other.campaign_id
            && self.expires_at_us == other.expires_at_us
    }
}

fn read_kept(row: &rusqlite::Row<'_>) -> rusqlite::Result<KeptSuppression> {
    Ok(KeptSuppression {
        id: row.get(0)?,
        key: row.get(1)?,
        controller: row.get(2)?,
        campaign_id: row.get(3)?,
        expires_at_us: row.get(4)?,
    })
}

/// The copies of an id among the rows of a first load that set `table`'s
/// indexes aside (every row of the table is the load's): each after the
/// first of its id, found by SQLite in one sort of the table (when the
/// load could not remember its ids, see `SeenIds` and `RepeatedIds`).
fn id_copies(tx: &Connection, table: &str, column: &str) -> Result<Vec<IdCopy>, StoreError> {
    sorting(tx, || {
        let mut statement = tx.prepare(&format!(
            "SELECT first, rowid
             FROM (SELECT rowid, first_value(rowid) OVER w AS first
                   FROM main.{table}
                   WINDOW w AS (PARTITION BY {column} ORDER BY rowid))
             WHERE rowid != first"
        ))?;
        let rows = statement.query_map([], |r| {
            Ok(IdCopy {
                first: r.get(0)?,
                copy: r.get(1)?,
            })
        })?;
        rows.collect()
    })
}

/// Builds a first load's opt-out id index, `suppressions_by_id`, in one
/// sorted pass: `Ok(false)` when an id is there twice.
fn index_suppression_ids(tx: &Transaction<'_>) -> Result<bool, StoreError> {
    let built = sorting(tx, || {
        tx.execute_batch(
            "CREATE UNIQUE INDEX IF NOT EXISTS main.suppressions_by_id ON suppressions (suppression_id)",
        )
    });
    match built {
        Ok(()) => Ok(true),
        Err(StoreError::Sqlite(rusqlite::Error::SqliteFailure(failure, _)))
            if failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
        {
            Ok(false)
        }
        Err(err) => Err(err),
    }
}

/// Whether the stored opt-out with `suppression`'s id is another one:
/// its id, and where it was met, if so.
fn reused_suppression_id(
    tx: &Transaction<'_>,
    load: &FirstLoad<'_>,
    key: NumberKey,
    suppression: &Suppression,
    copies_checked: bool,
) -> Result<Option<String>, StoreError> {
    let mut statement = tx.prepare_cached(
        "SELECT number_key, number_hash, controller, campaign_id, import_seq, expires_at_us
         FROM main.suppressions WHERE suppression_id = ?1",
    )?;
    let mut rows = statement.query([&suppression.suppression_id])?;
    let Some(row) = rows.next()? else {
        return Err(StoreError::Unreadable(format!(
            "opt-out {} was neither inserted nor found stored",
            suppression.suppression_id
        )));
    };
    let same_number = match row.get::<_, Option<i64>>(0)? {
        Some(stored) => stored == key.0 as i64,
        // Erased: kept by hash only.
        None => {
            row.get::<_, Option<Vec<u8>>>(1)?.as_deref()
                == Some(load.index.subject_hash(&suppression.number).as_slice())
        }
    };
    let in_the_file = row.get::<_, Option<i64>>(4)? == Some(load.seq);
    let stored_expiry = row.get::<_, Option<i64>>(5)?;
    let expiry = suppression.expires_at.map(us);
    let same_expiry = if in_the_file {
        expiry == stored_expiry
    } else {
        !copies_checked || !outlasts(expiry, stored_expiry)
    };
    if same_number
        && same_expiry
        && text(row, 2)? == suppression.controller
        && text(row, 3)? == suppression.campaign_id
    {
        return Ok(None);
    }
    let met = if in_the_file {
        "twice in the file"
    } else {
        ALREADY_STORED
    };
    Ok(Some(format!("{} ({met})", suppression.suppression_id)))
}

/// How an opt-out id already stored for another opt-out is named.
const ALREADY_STORED: &str = "already stored for another opt-out: another number, controller or campaign, or an earlier expiry";

/// Whether a record ending at `expiry` (microseconds; `None`: never)
/// outlasts one ending at `stored`. A copy of a stored opt-out that
/// outlasts it is not the same one (kept out, the stored one would lapse
/// first, and the number be called while the newer file says not to); nor
/// is a copy of a stored consent that the stored one outlasts (it would
/// grant calls past the end the newer file gives).
fn outlasts(expiry: Option<i64>, stored: Option<i64>) -> bool {
    match (expiry, stored) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(expiry), Some(stored)) => expiry > stored,
    }
}

/// Refuses staged consents whose id is another consent's, in the file or
/// in the store: `INSERT OR IGNORE` would keep the first, which may grant
/// what the file says no longer (another number, controller, purpose,
/// grant or supplier; two copies in the file must agree on their ends
/// too, and a stored one must not expire later than the file's copy, nor
/// be revoked at another instant than a revoked copy). The same rule as
/// `KeptConsent::is_copy`, in SQL: the staged rows of ids met more than
/// once grouped (see `disagreeing_staged_ids`), and a lookup in the store
/// of each staged id (which the moves make anyway).
fn refuse_reused_consent_ids(
    conn: &Connection,
    repeated: Option<&std::collections::HashSet<String>>,
) -> Result<(), StoreError> {
    let started = std::time::Instant::now();
    // More than one value of a column among an id's rows: its lowest and
    // highest differ, or, for the ends, which may be NULL, some rows have
    // one and others not.
    let twice = disagreeing_staged_ids(
        conn,
        "consents",
        "consent_id",
        &format!(
            "MIN(number_key) != MAX(number_key) OR MIN(controller) != MAX(controller)
             OR MIN(purpose) != MAX(purpose) OR MIN(granted_at_us) != MAX(granted_at_us)
             OR MIN(supplier) != MAX(supplier)
             OR MIN(expires_at_us) != MAX(expires_at_us)
             OR COUNT(expires_at_us) NOT IN (0, COUNT(*))
             OR MIN(revoked_at_us) != MAX(revoked_at_us)
             OR COUNT(revoked_at_us) NOT IN (0, COUNT(*))
             OR MIN({written}) != MAX({written})",
            written = written_agreement_sql("method")
        ),
        repeated,
    )?;
    let grouped_ms = started.elapsed().as_millis() as u64;
    let mut reused: Vec<String> = twice
        .into_iter()
        .map(|id| format!("{id} (twice in the file)"))
        .collect();
    let left = REUSED_LISTED.saturating_sub(reused.len()) as i64;
    let mut statement = conn.prepare(&format!(
        "SELECT DISTINCT s.consent_id
         FROM staging.consents s JOIN main.consents m ON m.consent_id = s.consent_id
         WHERE m.number_key != s.number_key OR m.controller != s.controller
            OR m.purpose != s.purpose OR m.granted_at_us != s.granted_at_us
            OR m.supplier != s.supplier
            OR (s.expires_at_us IS NOT NULL
                AND (m.expires_at_us IS NULL OR m.expires_at_us > s.expires_at_us))
            OR (s.revoked_at_us IS NOT NULL AND m.revoked_at_us IS NOT s.revoked_at_us)
            OR {} != {}
         LIMIT ?1",
        written_agreement_sql("m.method"),
        written_agreement_sql("s.method")
    ))?;
    let stored = statement.query_map([left], |row| row.get::<_, String>(0))?;
    for id in stored {
        reused.push(format!("{} ({ALREADY_STORED_CONSENT})", id?));
    }
    tracing::debug!(
        grouped_ms,
        joined_ms = started.elapsed().as_millis() as u64 - grouped_ms,
        "staged consent ids checked"
    );
    if reused.is_empty() {
        return Ok(());
    }
    Err(StoreError::ReusedConsentIds(reused.join(", ")))
}

/// SQLite's test of a consent's `method` column saying it is a signed
/// written agreement, as [`crate::contacts::is_written_agreement`] tests
/// it (ASCII case, the same surrounding white space).
fn written_agreement_sql(column: &str) -> String {
    format!(
        "(lower(trim({column}, char(9, 10, 12, 13, 32))) = '{}')",
        crate::contacts::WRITTEN_AGREEMENT
    )
}

/// The staged ids of `table` (its id `column`) whose rows disagree by
/// `having` (a `GROUP BY` condition), the first five: among the ids
/// `repeated` names only (those met more than once, see `StagedIds`), or
/// among all when it could not tell them (one sort of every staged row,
/// as for an index build).
fn disagreeing_staged_ids(
    conn: &Connection,
    table: &str,
    column: &str,
    having: &str,
    repeated: Option<&std::collections::HashSet<String>>,
) -> Result<Vec<String>, StoreError> {
    over_repeated_ids(conn, column, repeated, Vec::new(), |rows| {
        let mut statement = conn.prepare(&format!(
            "SELECT {column} FROM staging.{table} {rows} GROUP BY {column} HAVING {having} LIMIT 5"
        ))?;
        let ids = statement.query_map([], |row| row.get::<_, String>(0))?;
        ids.collect()
    })
}

/// Runs `query` (with SQLite's sorter tuned, see `sorting`) over the
/// staged rows of the ids met more than once, given the `WHERE` clause
/// that picks them (`repeated` names those ids, see `StagedIds`; every
/// row when it could not tell them); `none` when no id was met twice.
fn over_repeated_ids<T>(
    conn: &Connection,
    column: &str,
    repeated: Option<&std::collections::HashSet<String>>,
    none: T,
    query: impl FnOnce(&str) -> rusqlite::Result<T>,
) -> Result<T, StoreError> {
    let rows = match repeated {
        Some(ids) if ids.is_empty() => return Ok(none),
        Some(ids) => {
            conn.execute_batch(
                "CREATE TEMP TABLE IF NOT EXISTS repeated_ids (id TEXT PRIMARY KEY) WITHOUT ROWID;
                 DELETE FROM temp.repeated_ids;",
            )?;
            let mut insert = conn.prepare("INSERT OR IGNORE INTO temp.repeated_ids VALUES (?1)")?;
            for id in ids {
                insert.execute([id])?;
            }
            format!("WHERE {column} IN (SELECT id FROM temp.repeated_ids)")
        }
        None => String::new(),
    };
    let found = sorting(conn, || query(&rows));
    let dropped = conn.execute_batch("DROP TABLE IF EXISTS temp.repeated_ids");
    let found = found?;
    dropped?;
    Ok(found)
}

/// What an import of the checked staged records would count: each staged
/// row is stored, unless its id came earlier in the file or is stored
/// already (already present).
fn staged_counts(conn: &Connection, ids: &StagedTables) -> Result<BulkCounts, StoreError> {
    let mut counts = BulkCounts::default();
    for (table, column, repeated) in [
        ("consents", "consent_id", ids.consents.repeated()),
        (
            "suppressions",
            "suppression_id",
            ids.suppressions.repeated(),
        ),
    ] {
        let rows = last_rowid(conn, &format!("staging.{table}"))?;
        let copies: i64 = over_repeated_ids(conn, column, repeated, 0, |rows| {
            conn.query_row(
                &format!("SELECT COUNT(*) - COUNT(DISTINCT {column}) FROM staging.{table} {rows}"),
                [],
                |r| r.get(0),
            )
        })?;
        let stored: i64 = conn.query_row(
            &format!(
                "SELECT COUNT(DISTINCT s.{column}) FROM staging.{table} s
                 WHERE EXISTS (SELECT 1 FROM main.{table} m WHERE m.{column} = s.{column})"
            ),
            [],
            |r| r.get(0),
        )?;
        let new = usize::try_from(rows - copies - stored).unwrap_or(0);
        counts.moved(rows, new);
    }
    Ok(counts)
}

/// How a consent id already stored for another consent is named.
const ALREADY_STORED_CONSENT: &str = "already stored for another consent: another number, controller, purpose, grant time or supplier, one that expires later than the file says, revoked at another instant, or a written agreement where the file's is none (or the other way round)";

/// Binds a consent's 14 columns (in [`CONSENT_COLUMNS`] order) and the
/// import's trail event (NULL when staged) and runs `statement`; returns
/// the rows inserted.
fn insert_consent(
    statement: &mut rusqlite::Statement<'_>,
    key: NumberKey,
    consent: &Consent,
    import_seq: Option<i64>,
) -> rusqlite::Result<usize> {
    statement.execute(params![
        consent.consent_id,
        consent.controller,
        consent.number,
        key.0 as i64,
        consent.purpose.as_str(),
        us(consent.granted_at),
        consent.revoked_at.map(us),
        consent.expires_at.map(us),
        consent.source,
        consent.method,
        consent.notice_version,
        consent.evidence_ref,
        us(consent.recorded_at),
        consent.supplier,
        import_seq,
    ])
}

/// A staging table, for rows packed by [`pack_consent`] or
/// [`pack_suppression`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StagedTable {
    Consents,
    Suppressions,
}

/// Values of a staged consent: [`INSERT_CONSENT`]'s but the trail event
/// (NULL while staged).
pub(crate) const STAGED_CONSENT_VALUES: usize = 14;
/// Values of a staged opt-out: [`INSERT_SUPPRESSION`]'s.
pub(crate) const STAGED_SUPPRESSION_VALUES: usize = 10;

/// `records` packed by `pack` in number order, file order among equals
/// (`bytes`: room for their texts at first).
pub(crate) fn packed_by_number<T>(
    records: &[(NumberKey, T)],
    width: usize,
    bytes: usize,
    pack: impl Fn(&mut PackedRows, NumberKey, &T),
) -> PackedRows {
    let mut rows = PackedRows::with_capacity(width, records.len(), bytes);
    for i in by_number(records) {
        let (key, record) = &records[i];
        pack(&mut rows, *key, record);
    }
    rows
}

/// Packs a consent's staged values, as [`insert_consent`] binds them.
pub(crate) fn pack_consent(rows: &mut PackedRows, key: NumberKey, consent: &Consent) {
    rows.text(&consent.consent_id);
    rows.text(&consent.controller);
    rows.text(&consent.number);
    rows.int(key.0 as i64);
    rows.text(consent.purpose.as_str());
    rows.int(us(consent.granted_at));
    rows.optional(consent.revoked_at.map(us));
    rows.optional(consent.expires_at.map(us));
    rows.text(&consent.source);
    rows.text(&consent.method);
    rows.text(&consent.notice_version);
    rows.text(&consent.evidence_ref);
    rows.int(us(consent.recorded_at));
    rows.text(&consent.supplier);
}

/// Packs an opt-out's staged values, as [`insert_suppression`] binds them.
pub(crate) fn pack_suppression(rows: &mut PackedRows, key: NumberKey, suppression: &Suppression) {
    rows.text(&suppression.suppression_id);
    rows.text(&suppression.controller);
    rows.text(&suppression.campaign_id);
    rows.text(&suppression.number);
    rows.int(key.0 as i64);
    rows.text(&suppression.reason);
    rows.text(&suppression.source);
    rows.text(&suppression.added_by);
    rows.int(us(suppression.created_at));
    rows.optional(suppression.expires_at.map(us));
}

/// Binds an opt-out's 10 columns (those of [`SUPPRESSION_COLUMNS`] but the
/// hash) and runs `statement`; returns the rows inserted.
fn insert_suppression(
    statement: &mut rusqlite::Statement<'_>,
    key: NumberKey,
    suppression: &Suppression,
    import_seq: Option<i64>,
) -> rusqlite::Result<usize> {
    let values = params![
        suppression.suppression_id,
        suppression.controller,
        suppression.campaign_id,
        suppression.number,
        key.0 as i64,
        suppression.reason,
        suppression.source,
        suppression.added_by,
        us(suppression.created_at),
        suppression.expires_at.map(us),
        import_seq,
    ];
    // The staging table has no trail event column.
    let bound = if import_seq.is_some() { 11 } else { 10 };
    statement.execute(&values[..bound])
}

/// The positions of `records` in number order, file order among equals
/// (the records stay put).
pub(crate) fn by_number<T>(records: &[(NumberKey, T)]) -> Vec<usize> {
    let mut order: Vec<(u64, usize)> = records
        .iter()
        .enumerate()
        .map(|(i, (key, _))| (key.0, i))
        .collect();
    order.sort_unstable();
    order.into_iter().map(|(_, i)| i).collect()
}

impl BulkCounts {
    fn moved(&mut self, rows: i64, inserted: usize) {
        self.stored += inserted as u64;
        self.already_present += (rows as u64).saturating_sub(inserted as u64);
    }

    /// Records counted as stored that were deleted again as copies of an
    /// id stored before them.
    fn left_out(&mut self, copies: u64) {
        self.stored = self.stored.saturating_sub(copies);
        self.already_present += copies;
    }
}

/// One entry of the change trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangeEvent {
    pub seq: i64,
    pub at: Timestamp,
    /// Who made the change: `grpc:<peer>` or `cli:<user>`.
    pub actor: String,
    /// `consent.recorded`, `consent.revoked`, `suppression.added`,
    /// `relationship.recorded`, `subject.erased`, `subject.exported`.
    pub action: String,
    /// Hex salted hash of the number: the trail never holds raw numbers.
    pub subject: String,
    pub before: serde_json::Value,
    pub after: serde_json::Value,
}

/// The contact database under `data_dir`.
pub fn database_path(data_dir: &Path) -> PathBuf {
    data_dir.join("contacts.db")
}

/// A value read back from the store that the code does not know: the row is
/// corrupt or written by a newer version. An error, never a default: a
/// default could become the basis of an ALLOW.
#[derive(Debug, thiserror::Error)]
#[error("column {column} holds {value:?}: {problem}")]
pub struct UnknownValue {
    column: &'static str,
    value: String,
    problem: &'static str,
}

fn unknown(column: &'static str, value: impl ToString, problem: &'static str) -> StoreError {
    StoreError::Corrupt(UnknownValue {
        column,
        value: value.to_string(),
        problem,
    })
}

/// An instant read back: out of range is an error, not the epoch.
fn ts_column(
    row: &rusqlite::Row<'_>,
    index: usize,
    column: &'static str,
) -> Result<Timestamp, StoreError> {
    let us: i64 = row.get(index)?;
    Timestamp::from_microsecond(us).map_err(|_| unknown(column, us, "not an instant"))
}

fn optional_ts_column(
    row: &rusqlite::Row<'_>,
    index: usize,
    column: &'static str,
) -> Result<Option<Timestamp>, StoreError> {
    match row.get::<_, Option<i64>>(index)? {
        None => Ok(None),
        Some(us) => Timestamp::from_microsecond(us)
            .map(Some)
            .map_err(|_| unknown(column, us, "not an instant")),
    }
}

/// A text column read back without copying it.
fn text<'r>(row: &'r rusqlite::Row<'_>, index: usize) -> rusqlite::Result<&'r str> {
    row.get_ref(index)?.as_str().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// The opt-outs kept by hash for an erased subject.
fn hashed_suppressions(
    conn: &Connection,
    subject: &SubjectHash,
) -> Result<Vec<Suppression>, StoreError> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {SUPPRESSION_COLUMNS} FROM suppressions WHERE number_hash = ?1 ORDER BY rowid"
    ))?;
    let mut rows = statement.query([subject.to_vec()])?;
    let mut suppressions = Vec::new();
    while let Some(row) = rows.next()? {
        suppressions.push(read_suppression(row)?.2);
    }
    Ok(suppressions)
}

/// Removes the staging files of imports whose process is gone (killed
/// mid-import: they hold the file's records, numbers included); returns
/// them. A running import's file is left alone.
pub fn remove_abandoned_staging(data_dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let pid: u32 = name
                .strip_prefix("contacts-import-")?
                .strip_suffix(".db")?
                .parse()
                .ok()?;
            let alive = Path::new(&format!("/proc/{pid}")).exists();
            (!alive && std::fs::remove_file(entry.path()).is_ok()).then(|| entry.path())
        })
        .collect()
}

/// Consent rows above which a scan reads two halves on two threads.
const PARALLEL_SCAN: i64 = if cfg!(test) { 64 } else { 1_000_000 };

/// Record ids kept in memory at most (the numbers checked again and again).
const ID_CACHE: usize = 65_536;

/// Rows read by one refresh above which they are merged into a new base
/// at once, rather than held as pending changes.
const MERGE_AT_ONCE: usize = 10_000;

/// A test's look at the store between a refresh's read and its merge.
#[cfg(test)]
type MergeHook = Box<dyn Fn(&ContactStore)>;

#[cfg(test)]
thread_local! {
    /// Called by a refresh of this thread after it released the store's
    /// lock and before it merges what it read (the window a test looks at).
    static BEFORE_MERGE: std::cell::RefCell<Option<MergeHook>> =
        const { std::cell::RefCell::new(None) };
}

fn ts(us: i64) -> Timestamp {
    crate::decision_log::from_micros(us)
}

fn us(t: Timestamp) -> i64 {
    t.as_microsecond()
}

/// The latest grant among the controller's consents of the number not
/// yet withdrawn (one purpose, or every purpose): those a withdrawal now
/// ends.
fn latest_open_grant(
    conn: &Connection,
    key: NumberKey,
    controller: &str,
    purpose: Option<Purpose>,
) -> rusqlite::Result<Option<i64>> {
    conn.query_row(
        "SELECT MAX(granted_at_us) FROM consents
         WHERE number_key = ?1 AND controller = ?2 AND (?3 IS NULL OR purpose = ?3)
           AND revoked_at_us IS NULL",
        params![key.0 as i64, controller, purpose.map(Purpose::as_str)],
        |r| r.get(0),
    )
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL) STRICT;
CREATE TABLE IF NOT EXISTS counters (key TEXT PRIMARY KEY, value INTEGER NOT NULL) STRICT;
-- Consent ids are unique through `consents_by_id` (see `index_ids`); a
-- store created before it keeps `consent_id TEXT PRIMARY KEY` instead.
CREATE TABLE IF NOT EXISTS consents (
    consent_id TEXT NOT NULL,
    controller TEXT NOT NULL,
    number TEXT NOT NULL,
    number_key INTEGER NOT NULL,
    purpose TEXT NOT NULL,
    granted_at_us INTEGER NOT NULL,
    revoked_at_us INTEGER,
    expires_at_us INTEGER,
    source TEXT NOT NULL,
    method TEXT NOT NULL,
    notice_version TEXT NOT NULL,
    evidence_ref TEXT NOT NULL,
    recorded_at_us INTEGER NOT NULL,
    -- The trail event of the bulk import that stored the row (NULL: one
    -- event of its own, under the subject).
    import_seq INTEGER,
    -- Who collected the consent: '' = the controller itself, else a
    -- supplier that must be declared for the controller to count.
    supplier TEXT NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX IF NOT EXISTS consents_by_number ON consents (number_key);
CREATE TABLE IF NOT EXISTS relationships (
    relationship_id TEXT PRIMARY KEY,
    controller TEXT NOT NULL,
    number TEXT NOT NULL,
    number_key INTEGER NOT NULL,
    kind TEXT NOT NULL,
    started_at_us INTEGER NOT NULL,
    ended_at_us INTEGER,
    recorded_at_us INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS relationships_by_number ON relationships (number_key);
CREATE TABLE IF NOT EXISTS suppressions (
    -- Unique through suppressions_by_id (`index_ids`); a store created
    -- before that index keeps it as its primary key.
    suppression_id TEXT NOT NULL,
    controller TEXT NOT NULL,
    campaign_id TEXT NOT NULL,
    number TEXT NOT NULL,
    number_key INTEGER,
    number_hash BLOB,
    reason TEXT NOT NULL,
    source TEXT NOT NULL,
    added_by TEXT NOT NULL,
    created_at_us INTEGER NOT NULL,
    expires_at_us INTEGER,
    import_seq INTEGER
) STRICT;
CREATE INDEX IF NOT EXISTS suppressions_by_number ON suppressions (number_key);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    at_us INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    before TEXT NOT NULL,
    after TEXT NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS events_by_subject ON events (subject);
-- Rows rewritten in place (rectifications), in commit order: a running
-- server re-indexes each (the rowid scans see only new rows).
CREATE TABLE IF NOT EXISTS corrections (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    tbl TEXT NOT NULL,
    row INTEGER NOT NULL,
    old_key INTEGER NOT NULL,
    -- The corrected record's id (NULL in rows written before it was kept).
    record_id TEXT
) STRICT;
-- Postgres backend: the number of each salted hash the shared journal
-- named, so that applying an erasure (which names only the hash) finds
-- the number without hashing every stored number. Removed by the erasure.
CREATE TABLE IF NOT EXISTS journal_subjects (
    subject BLOB PRIMARY KEY,
    number TEXT NOT NULL
) STRICT, WITHOUT ROWID;
-- Postgres backend: the token of each journal entry fetched to be applied
-- (written before it is applied), so that the entry at the applied
-- position can be told from another one numbered the same way after a
-- restore or failover. Only the last entries are kept.
CREATE TABLE IF NOT EXISTS journal_tokens (
    seq INTEGER PRIMARY KEY,
    token INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS observations (
    registry_id TEXT NOT NULL,
    controller TEXT NOT NULL,
    number_key INTEGER NOT NULL,
    -- The LATEST day the registry answered opposed (the name is historical).
    first_not_cleared_us INTEGER NOT NULL,
    PRIMARY KEY (registry_id, controller, number_key)
) STRICT;
";

/// Builds the indexes an import set aside (`SCHEMA` creates what is
/// missing), each in one sorted pass (see [`sorting`]).
fn rebuild_indexes(conn: &Connection) -> Result<(), StoreError> {
    sorting(conn, || {
        conn.execute_batch(SCHEMA).and_then(|()| index_ids(conn))
    })
}

/// Runs `sort` (statements that sort the store's rows) with the sort on a
/// second thread, in small runs (4 MiB) that stay in the processor's
/// caches; sorting the rows of a large import in runs as large as the
/// import's page cache was slower (docs/performance.md). The page cache
/// is the import's again afterwards.
fn sorting<T>(
    conn: &Connection,
    sort: impl FnOnce() -> rusqlite::Result<T>,
) -> Result<T, StoreError> {
    let tuned = conn
        .pragma_update(None, "threads", 2)
        .and_then(|()| conn.pragma_update(None, "cache_size", -4_096));
    let sorted = sort();
    let restored = conn
        .pragma_update(None, "threads", 0)
        .and_then(|()| conn.pragma_update(None, "cache_size", IMPORT_CACHE_KIB));
    let sorted = sorted?;
    tuned?;
    restored?;
    Ok(sorted)
}

/// Builds the indexes a first load set aside, its consent ids' unique one
/// among them. Of two consents with one id, the first inserted, the first
/// in the file, is kept and the others deleted and counted as already
/// present, if they are the same consent; a copy that is another consent
/// refuses the load (see `leave_out_consent_copies`). The copies are
/// those `repeated` finds; when it cannot tell, and the unique index then
/// cannot be built, SQLite finds them (one more sort of the consents):
/// returns whether it had to.
fn index_unique_ids(
    conn: &Connection,
    counts: &mut BulkCounts,
    repeated: RepeatedIds,
    copies_checked: bool,
) -> Result<bool, StoreError> {
    let mut read = conn.prepare(READ_CONSENT_AT)?;
    let mut reused: Vec<String> = Vec::new();
    let told = repeated.later_copies(
        |rowid| read.query_row([rowid], KeptConsent::read),
        |consent| consent.id.as_str(),
        |first, again| note_another_consent(&mut reused, first, again, copies_checked),
    )?;
    if let Some(copies) = told {
        leave_out_consent_copies(conn, counts, copies, reused)?;
    }
    match rebuild_indexes(conn) {
        Err(StoreError::Sqlite(rusqlite::Error::SqliteFailure(failure, _)))
            if failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE => {}
        built => return built.map(|()| false),
    }
    let copies = id_copies(conn, "consents", "consent_id")?;
    tracing::debug!(
        copies = copies.len(),
        "consents repeating an id found by SQLite"
    );
    let mut reused: Vec<String> = Vec::new();
    for copy in &copies {
        let first = read.query_row([copy.first], KeptConsent::read)?;
        let again = read.query_row([copy.copy], KeptConsent::read)?;
        note_another_consent(&mut reused, &first, &again, copies_checked);
    }
    leave_out_consent_copies(conn, counts, copies, reused)?;
    rebuild_indexes(conn).map(|()| true)
}

/// Notes `again`, met after `first` under its id in one first load, among
/// the `reused` ids the load names if it is another consent (and copies
/// are checked: not for an import the shared journal committed already).
fn note_another_consent(
    reused: &mut Vec<String>,
    first: &KeptConsent,
    again: &KeptConsent,
    copies_checked: bool,
) {
    if copies_checked && !first.is_copy(again, true) && reused.len() < REUSED_LISTED {
        let named = format!("{} (twice in the file)", again.id);
        if !reused.contains(&named) {
            reused.push(named);
        }
    }
}

/// Deletes a first load's later `copies` of a consent id (inserted with
/// the id index set aside), counted as already present, unless one was
/// found to be another consent (`reused`: another number, controller,
/// purpose, grant, supplier or end), which refuses the load: kept out,
/// the first would grant what the file says of it no longer.
fn leave_out_consent_copies(
    conn: &Connection,
    counts: &mut BulkCounts,
    mut copies: Vec<IdCopy>,
    reused: Vec<String>,
) -> Result<(), StoreError> {
    if !reused.is_empty() {
        return Err(StoreError::ReusedConsentIds(reused.join(", ")));
    }
    copies.sort_unstable_by_key(|c| c.copy);
    let mut delete = conn.prepare("DELETE FROM main.consents WHERE rowid = ?1")?;
    for copy in &copies {
        delete.execute([copy.copy])?;
    }
    counts.left_out(copies.len() as u64);
    Ok(())
}

/// Reads a consent by rowid: what tells whether another is the same.
const READ_CONSENT_AT: &str = "SELECT consent_id, number_key, controller, purpose, granted_at_us, \
    supplier, revoked_at_us, expires_at_us, method FROM main.consents WHERE rowid = ?1";

/// What the rules read of a consent: what tells whether two consents of
/// one id are the same consent.
#[derive(Debug, PartialEq, Eq)]
struct KeptConsent {
    id: String,
    key: i64,
    controller: String,
    purpose: String,
    granted_at_us: i64,
    supplier: String,
    revoked_at_us: Option<i64>,
    expires_at_us: Option<i64>,
    /// Its method says it is a signed written agreement (the US DNC reads it).
    written: bool,
}

impl KeptConsent {
    /// From the columns of [`READ_CONSENT_AT`], in its order.
    fn read(row: &rusqlite::Row<'_>) -> rusqlite::Result<KeptConsent> {
        Ok(KeptConsent {
            id: row.get(0)?,
            key: row.get(1)?,
            controller: row.get(2)?,
            purpose: row.get(3)?,
            granted_at_us: row.get(4)?,
            supplier: row.get(5)?,
            revoked_at_us: row.get(6)?,
            expires_at_us: row.get(7)?,
            written: crate::contacts::is_written_agreement(row.get_ref(8)?.as_bytes()?),
        })
    }

    /// Whether `copy`, met after `self` under its id, is the same consent:
    /// the same number, controller, purpose, grant and supplier, and
    /// - met again in the same file (`in_the_file`): the same ends, its
    ///   expiry and revocation;
    /// - met in a later import: expires no later than `self` (else
    ///   `self`, the one kept, would grant calls past the end the newer
    ///   file gives it: see `outlasts`; one that expires later is counted
    ///   as already present: `self` then grants less than the file says,
    ///   never more), and is not revoked, or revoked when `self` was (a
    ///   revocation also withdraws the controller's other consents for the
    ///   purpose granted before it: one at another instant is another
    ///   withdrawal, not a narrower copy).
    ///
    /// `refuse_reused_consent_ids` says the same in SQL, and the shared
    /// journal's `refuse_reused_ids`.
    fn is_copy(&self, copy: &KeptConsent, in_the_file: bool) -> bool {
        let same_ends = if in_the_file {
            self.expires_at_us == copy.expires_at_us && self.revoked_at_us == copy.revoked_at_us
        } else {
            !outlasts(self.expires_at_us, copy.expires_at_us)
                && (copy.revoked_at_us.is_none() || copy.revoked_at_us == self.revoked_at_us)
        };
        self.id == copy.id
            && self.key == copy.key
            && self.controller == copy.controller
            && self.purpose == copy.purpose
            && self.granted_at_us == copy.granted_at_us
            && self.supplier == copy.supplier
            && self.written == copy.written
            && same_ends
    }
}

/// The tables whose ids are unique, each with the index that keeps them
/// unique when its primary key does not.
const ID_INDEXES: [(&str, &str, &str); 2] = [
    ("consents", "consent_id", "consents_by_id"),
    ("suppressions", "suppression_id", "suppressions_by_id"),
];

/// Makes consent and opt-out ids unique with `consents_by_id` and
/// `suppressions_by_id` (created if missing), unless the store keeps them
/// unique as its table's primary key (a store created before the index:
/// SQLite cannot set that one aside).
fn index_ids(conn: &Connection) -> rusqlite::Result<()> {
    for (table, column, index) in ID_INDEXES {
        if ids_indexed_apart(conn, table)? {
            conn.execute_batch(&format!(
                "CREATE UNIQUE INDEX IF NOT EXISTS main.{index} ON {table} ({column})"
            ))?;
        }
    }
    Ok(())
}

/// Gives a store keyed by consent or opt-out id (created before
/// `consents_by_id` or `suppressions_by_id`) the current layout of
/// `table`, if it is empty (checked here, in the caller's transaction): a
/// first load can then set its id index aside. A table that holds a row
/// keeps its layout.
fn rekey_empty(conn: &Connection, table: &str) -> Result<(), StoreError> {
    if ids_indexed_apart(conn, table)? || last_rowid(conn, &format!("main.{table}"))? != 0 {
        return Ok(());
    }
    conn.execute_batch(&format!("DROP TABLE main.{table}"))?;
    conn.execute_batch(SCHEMA)?;
    index_ids(conn)?;
    tracing::info!(
        table,
        "the empty table now has the current layout (ids unique by index)"
    );
    Ok(())
}

/// Whether `table`'s ids are unique through an index of their own (which
/// a first load can set aside), not the table's primary key.
fn ids_indexed_apart(conn: &Connection, table: &str) -> rusqlite::Result<bool> {
    let keyed: i64 = conn.query_row(
        "SELECT COUNT(*) FROM pragma_index_list(?1, 'main') WHERE origin = 'pk'",
        [table],
        |r| r.get(0),
    )?;
    Ok(keyed == 0)
}

/// The highest rowid of `table` (0 when empty): the rows a table holds,
/// or the last one a scan must read.
fn last_rowid(conn: &Connection, table: &str) -> Result<i64, StoreError> {
    Ok(conn.query_row(
        &format!("SELECT COALESCE(MAX(rowid), 0) FROM {table}"),
        [],
        |r| r.get(0),
    )?)
}

/// Whether an import of `staged` rows into a table of `stored` sets the
/// table's number index aside: when it at least doubles the table, one
/// sorted rebuild costs less than an update at a random place per row.
fn sets_index_aside(staged: i64, stored: i64) -> bool {
    staged > 0 && staged >= stored
}

/// Writes an import's counts into its trail event `seq`, beside the
/// import's own `details`.
fn record_counts(
    conn: &Connection,
    seq: i64,
    details: &mut serde_json::Value,
    counts: BulkCounts,
) -> Result<(), StoreError> {
    if let Some(object) = details.as_object_mut() {
        object.insert("stored".into(), counts.stored.into());
        object.insert("already_present".into(), counts.already_present.into());
    }
    conn.execute(
        "UPDATE events SET after = ?2 WHERE seq = ?1",
        params![seq, details.to_string()],
    )?;
    Ok(())
}

/// The staging tables of an import (a throwaway file: no journal, no
/// syncs), and the import's page cache.
fn prepare_staging(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch("PRAGMA staging.journal_mode = OFF; PRAGMA staging.synchronous = OFF;")?;
    conn.execute_batch(STAGING_SCHEMA)?;
    conn.pragma_update(None, "cache_size", IMPORT_CACHE_KIB)?;
    Ok(())
}

/// The page cache of an import's connection (KiB, as SQLite's negative
/// `cache_size`): the indexes take many inserts.
/// (Unit tests: 256 KiB, so that their imports spill pages into the
/// store before they commit.)
const IMPORT_CACHE_KIB: i64 = if cfg!(test) { -256 } else { -262_144 };

/// The source of a withdrawal marker where no stored consent of the
/// purpose carried the withdrawal.
const WITHDRAWN_WITHOUT_CONSENT: &str =
    "withdrawal recorded while no consent of this purpose was stored";

/// The source of a withdrawal marker dated at the grant of a consent the
/// withdrawal ended though dated before it.
const WITHDRAWN_BEFORE_GRANT: &str =
    "withdrawal dated before the grant of a consent it ended: binds copies of that consent";

/// The record of a withdrawal that no stored consent of its purpose
/// carries (none to end, or one granted after its date): a consent granted
/// and withdrawn at the same instant, so that every consent of the purpose
/// given before it grants nothing.
fn withdrawal_marker(
    controller: &str,
    e164: &str,
    purpose: Purpose,
    at: Timestamp,
    now: Timestamp,
    source: &str,
) -> Consent {
    Consent {
        // Random, not time-ordered: made under the store's lock, where a
        // clock before 1970 must not panic.
        consent_id: format!("withdrawal-{}", uuid::Uuid::new_v4()),
        controller: controller.to_string(),
        number: e164.to_string(),
        purpose,
        granted_at: at,
        revoked_at: Some(at),
        expires_at: None,
        source: source.into(),
        supplier: String::new(),
        method: "withdrawal".into(),
        notice_version: String::new(),
        evidence_ref: String::new(),
        recorded_at: now,
    }
}

/// The latest correction stored (0: none).
fn last_correction(conn: &Connection) -> Result<i64, StoreError> {
    Ok(
        conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM corrections", [], |r| {
            r.get(0)
        })?,
    )
}

fn purpose(text: &str) -> Result<Purpose, StoreError> {
    Purpose::from_config(text).ok_or_else(|| unknown("purpose", text, "not a known purpose"))
}

fn relationship_kind(text: &str) -> Result<RelationshipKind, StoreError> {
    RelationshipKind::parse(text)
        .ok_or_else(|| unknown("kind", text, "not a known relationship kind"))
}

fn read_consent(row: &rusqlite::Row<'_>) -> Result<(NumberKey, Consent), StoreError> {
    read_consent_at(row, 0)
}

/// A consent of [`CONSENT_COLUMNS`] starting at column `o`.
fn read_consent_at(row: &rusqlite::Row<'_>, o: usize) -> Result<(NumberKey, Consent), StoreError> {
    Ok((
        NumberKey(row.get::<_, i64>(o + 3)? as u64),
        Consent {
            consent_id: row.get(o)?,
            controller: row.get(o + 1)?,
            number: row.get(o + 2)?,
            purpose: purpose(&row.get::<_, String>(o + 4)?)?,
            granted_at: ts_column(row, o + 5, "granted_at_us")?,
            revoked_at: optional_ts_column(row, o + 6, "revoked_at_us")?,
            expires_at: optional_ts_column(row, o + 7, "expires_at_us")?,
            source: row.get(o + 8)?,
            method: row.get(o + 9)?,
            notice_version: row.get(o + 10)?,
            evidence_ref: row.get(o + 11)?,
            recorded_at: ts_column(row, o + 12, "recorded_at_us")?,
            supplier: row.get(o + 13)?,
        },
    ))
}

const CONSENT_COLUMNS: &str = "consent_id, controller, number, number_key, purpose, granted_at_us, revoked_at_us, \
    expires_at_us, source, method, notice_version, evidence_ref, recorded_at_us, supplier";

fn read_relationship(row: &rusqlite::Row<'_>) -> Result<(NumberKey, Relationship), StoreError> {
    read_relationship_at(row, 0)
}

/// A relationship of [`RELATIONSHIP_COLUMNS`] starting at column `o`.
fn read_relationship_at(
    row: &rusqlite::Row<'_>,
    o: usize,
) -> Result<(NumberKey, Relationship), StoreError> {
    Ok((
        NumberKey(row.get::<_, i64>(o + 3)? as u64),
        Relationship {
            relationship_id: row.get(o)?,
            controller: row.get(o + 1)?,
            number: row.get(o + 2)?,
            kind: relationship_kind(&row.get::<_, String>(o + 4)?)?,
            started_at: ts_column(row, o + 5, "started_at_us")?,
            ended_at: optional_ts_column(row, o + 6, "ended_at_us")?,
            recorded_at: ts_column(row, o + 7, "recorded_at_us")?,
        },
    ))
}

const RELATIONSHIP_COLUMNS: &str = "relationship_id, controller, number, number_key, kind, started_at_us, ended_at_us, recorded_at_us";

/// A suppression row: by number key, or (erased subjects) by hash only.
type SuppressionRow = (Option<NumberKey>, Option<Vec<u8>>, Suppression);

fn read_suppression(row: &rusqlite::Row<'_>) -> Result<SuppressionRow, StoreError> {
    Ok((
        row.get::<_, Option<i64>>(4)?.map(|k| NumberKey(k as u64)),
        row.get(5)?,
        Suppression {
            suppression_id: row.get(0)?,
            controller: row.get(1)?,
            campaign_id: row.get(2)?,
            number: row.get(3)?,
            reason: row.get(6)?,
            source: row.get(7)?,
            added_by: row.get(8)?,
            created_at: ts_column(row, 9, "created_at_us")?,
            expires_at: optional_ts_column(row, 10, "expires_at_us")?,
        },
    ))
}

const SUPPRESSION_COLUMNS: &str = "suppression_id, controller, campaign_id, number, number_key, number_hash, reason, \
    source, added_by, created_at_us, expires_at_us";

/// Everything the store holds about one number, for ExportSubject.
#[derive(Debug, Default, Serialize)]
pub struct SubjectRecords {
    pub consents: Vec<Consent>,
    pub relationships: Vec<Relationship>,
    pub suppressions: Vec<Suppression>,
    /// The registries' answers that the number is opposed (`registry
    /// import --opposed`), which an erasure deletes with it.
    pub registry_answers: Vec<RegistryAnswer>,
    pub trail: Vec<ChangeEvent>,
}

/// A registry's answer that a number is opposed for a controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegistryAnswer {
    pub registry_id: String,
    pub controller: String,
    /// The latest day the registry answered so.
    pub opposed_on: Timestamp,
}

impl ContactStore {
    /// Opens (creating if needed) the contact database in `data_dir` and loads the index.
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be opened or read.
    pub fn open(data_dir: &Path) -> Result<ContactStore, StoreError> {
        for path in remove_abandoned_staging(data_dir) {
            tracing::warn!(path = %path.display(), "removed the staging file of an interrupted import");
        }
        let mut store = ContactStore::open_unindexed(data_dir)?;
        store.load()?;
        Ok(store)
    }

    /// Opens the store without loading its index: for commands that only
    /// write records (bulk imports) or read the trail, never for decisions
    /// (every lookup finds nothing).
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be opened.
    pub fn open_unindexed(data_dir: &Path) -> Result<ContactStore, StoreError> {
        let _ = crate::private::create_dir_all(data_dir);
        ContactStore::open_unindexed_file(&database_path(data_dir))
    }

    /// [`ContactStore::open_unindexed`] on the database file `path` (a
    /// restore builds the restored store under another name).
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be opened.
    pub fn open_unindexed_file(path: &Path) -> Result<ContactStore, StoreError> {
        let path = path.to_path_buf();
        // Owner-only; SQLite gives the -wal and -shm files the same mode.
        let _ = crate::private::touch(&path);
        let conn = Connection::open(&path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        // A write-ahead log that grew large (a first load's whole import,
        // or one a kill left behind) is cut back after the next checkpoint.
        conn.pragma_update(None, "journal_size_limit", 64 << 20)?;
        // The tables and the id index in one transaction: a store is never
        // left without its unique ids (an older binary would not add the
        // index, and would store an id twice).
        {
            let tx = conn.unchecked_transaction()?;
            tx.execute_batch(SCHEMA)?;
            index_ids(&tx).map_err(|err| match err {
                rusqlite::Error::SqliteFailure(failure, _)
                    if failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
                {
                    StoreError::Unreadable(format!(
                        "the store holds a consent or opt-out id twice and its index of unique ids is missing \
                         (the store was changed outside dialgate?): {err}"
                    ))
                }
                other => other.into(),
            })?;
            tx.commit()?;
        }
        // Columns added since the first release; a consent stored before
        // provenance was recorded was the controller's own (its CRM's).
        for (table, column, definition) in [
            ("consents", "import_seq", "INTEGER"),
            ("suppressions", "import_seq", "INTEGER"),
            ("consents", "supplier", "TEXT NOT NULL DEFAULT ''"),
            ("corrections", "record_id", "TEXT"),
        ] {
            let present: bool = conn.query_row(
                &format!(
                    "SELECT COUNT(*) FROM pragma_table_info('{table}') WHERE name = '{column}'"
                ),
                [],
                |r| r.get(0),
            )?;
            if !present {
                conn.execute_batch(&format!(
                    "ALTER TABLE {table} ADD COLUMN {column} {definition}"
                ))?;
            }
        }
        // A new store (no salt yet) derives ids salted; one made before
        // keeps the unsalted ids its records hold (`derived_ids`). Both in
        // one transaction: a process that finds the salt finds this too,
        // and a crash leaves neither. The first process to store a salt
        // wins; every process uses the stored one (two processes creating
        // the store at once must not each keep their own, or opt-outs kept
        // by hash are not found).
        let tx = conn.unchecked_transaction()?;
        tx.execute(
            "INSERT OR IGNORE INTO meta (key, value) SELECT 'derived_ids', ?1
             WHERE NOT EXISTS (SELECT 1 FROM meta WHERE key = 'subject_salt')",
            [DerivedScheme::NEW.stored().map(|s| s.as_bytes().to_vec())],
        )?;
        tx.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('subject_salt', ?1)",
            [random_salt().to_vec()],
        )?;
        tx.commit()?;
        let stored: Vec<u8> = conn.query_row(
            "SELECT value FROM meta WHERE key = 'subject_salt'",
            [],
            |r| r.get(0),
        )?;
        let salt: [u8; 32] = stored.as_slice().try_into().map_err(|_| {
            unknown(
                "meta.subject_salt",
                format!("{} bytes", stored.len()),
                "not a 32-byte salt",
            )
        })?;
        let scheme: Option<Vec<u8>> = conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'derived_ids'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        let scheme = DerivedScheme::from_stored(scheme.as_deref()).map_err(|problem| {
            unknown(
                "meta.derived_ids",
                problem,
                "not a way of deriving ids this version knows",
            )
        })?;
        Ok(ContactStore {
            path,
            conn: Mutex::new(conn),
            readers: Mutex::new(Vec::new()),
            ids: dashmap::DashMap::default(),
            ids_epoch: std::sync::atomic::AtomicU64::new(0),
            index: ContactIndex::new(salt, CompactIndex::default()),
            derived_ids: DerivedIds::new(scheme, salt),
            indexed: std::sync::atomic::AtomicBool::new(false),
            offline_moves: std::sync::atomic::AtomicBool::new(false),
            observations: super::observations::Observations::default(),
            watermarks: Mutex::new([0; 3]),
            corrected: Mutex::new(0),
            opened: crate::clock::BootInstant::now(),
            failing_since_ms: std::sync::atomic::AtomicU64::new(0),
            any_opposed: std::sync::atomic::AtomicBool::new(false),
            observations_version: Mutex::new(-1),
            withdrawals: purge::HashedWithdrawals::default(),
            journal_confirmed_ms: std::sync::atomic::AtomicU64::new(0),
            journal_followed: std::sync::atomic::AtomicBool::new(false),
            journal_broken: std::sync::atomic::AtomicBool::new(false),
            behind_limit: std::sync::OnceLock::new(),
            pending_opt_outs: journal_state::PendingOptOuts::default(),
        })
    }

    /// Loads every record into the index, and the registry answers.
    fn load(&mut self) -> Result<(), StoreError> {
        let mut watermarks = [0; 3];
        let started = std::time::Instant::now();
        let slots = {
            let conn = self.conn.lock().expect("contact db lock");
            // Read before the rows: a correction made meanwhile is applied
            // again by the next refresh (which converges on the row).
            *self.corrected.get_mut().expect("corrections lock") = last_correction(&conn)?;
            self.scan(&conn, &mut watermarks)?
        };
        let scanned = started.elapsed();
        // Not shared yet: the filter can be sized for what was loaded
        // (twice, for imports to come).
        let records = slots.len();
        self.index.size_presence(records.saturating_mul(2), &slots);
        *self.watermarks.get_mut().expect("watermark lock") = watermarks;
        self.index.records.compact_with(slots)?;
        tracing::debug!(
            records,
            scan_ms = scanned.as_millis() as u64,
            index_ms = (started.elapsed() - scanned).as_millis() as u64,
            "contact records loaded"
        );
        self.refresh_observations(&self.conn.lock().expect("contact db lock"))?;
        self.load_withdrawals()?;
        self.indexed
            .store(true, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// Applies the rows rewritten in place since the last call (in this
    /// process or another): each record leaves the number it was under
    /// and is indexed again as it now stands (gone: not at all).
    fn apply_corrections(&self, conn: &Connection) -> Result<(), StoreError> {
        let mut applied = self.corrected.lock().expect("corrections lock");
        let mut statement = conn.prepare(
            "SELECT seq, tbl, row, old_key FROM corrections WHERE seq > ?1 ORDER BY seq",
        )?;
        let mut rows = statement.query([*applied])?;
        let mut names = NameCache::default();
        while let Some(row) = rows.next()? {
            let (seq, rowid, old_key): (i64, i64, i64) = (row.get(0)?, row.get(2)?, row.get(3)?);
            let mut now = Vec::new();
            let table = match text(row, 1)? {
                "consents" => {
                    self.scan_consents(conn, &mut names, rowid - 1, rowid, &mut now)?;
                    Table::Consent
                }
                "relationships" => {
                    self.scan_relationships(conn, &mut names, rowid - 1, rowid, &mut now)?;
                    Table::Relationship
                }
                other => {
                    return Err(unknown("corrections.tbl", other, "not a corrected table"));
                }
            };
            self.index.remove(NumberKey(old_key as u64), table, rowid);
            for slot in now {
                self.index.add(slot);
            }
            *applied = seq;
        }
        Ok(())
    }

    /// A read-only connection from the pool (opened when the pool is empty).
    fn reader(&self) -> Result<Connection, StoreError> {
        if let Some(reader) = self.readers.lock().expect("reader pool lock").pop() {
            return Ok(reader);
        }
        let reader = Connection::open_with_flags(
            &self.path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        reader.busy_timeout(std::time::Duration::from_secs(1))?;
        Ok(reader)
    }

    /// The in-memory index the decision path reads.
    pub fn index(&self) -> &ContactIndex {
        &self.index
    }

    /// Everything held about a number as the rules read it. The index
    /// holds what decides; the records' ids come from the store (an id that
    /// cannot be read is cited by its row, the verdict is the same).
    pub fn view(&self, key: NumberKey, e164: &str) -> ContactView {
        let mut view = self.view_indexed(key, e164);
        self.pending_opt_outs.extend_view(key, &mut view);
        view
    }

    /// [`ContactStore::view`] without the opt-outs held in memory: what the
    /// index and the store hold.
    pub(super) fn view_indexed(&self, key: NumberKey, e164: &str) -> ContactView {
        let slots = self.index.slots(key);
        let mut view = ContactView::default();
        if !slots.is_empty() {
            let ids = self.record_ids(&slots);
            for (slot, id) in slots.iter().zip(ids) {
                let id = match id {
                    Ok(Some(id)) => id,
                    // A consent or relationship whose row is gone is being
                    // erased: it grants nothing. An opt-out always counts.
                    Ok(None) if slot.table() != Table::Suppression => continue,
                    Ok(None) => format!("row {}", slot.row()),
                    Err(err) => {
                        tracing::warn!(error = %err, "contact record id unreadable");
                        format!("row {} (id unreadable: {err})", slot.row())
                    }
                };
                match self.index.record(slot, id, e164) {
                    Some(Record::Consent(c)) => view.consents.push(c),
                    Some(Record::Relationship(r)) => view.relationships.push(r),
                    Some(Record::Suppression(s)) => view.suppressions.push(s),
                    None => {}
                }
            }
        }
        view.suppressions
            .extend(self.index.erased_suppressions(e164));
        self.withdrawals.extend_view(&self.index, e164, &mut view);
        view
    }

    /// The ids of the slots' records: recently read ones from memory, the
    /// others from the store.
    fn record_ids(&self, slots: &[Slot]) -> Vec<Result<Option<String>, StoreError>> {
        let cache_key = |slot: &Slot| (slot.table() as u8, slot.row(), slot.t0, slot.key().0);
        let epoch = self.ids_epoch.load(std::sync::atomic::Ordering::Acquire);
        let mut ids: Vec<Option<Result<Option<String>, StoreError>>> = slots
            .iter()
            .map(|slot| {
                self.ids
                    .get(&cache_key(slot))
                    .map(|id| Ok(Some(id.to_string())))
            })
            .collect();
        if ids.iter().all(Option::is_some) {
            return ids.into_iter().flatten().collect();
        }
        let reader = self.reader();
        let reader = match reader {
            Ok(reader) => reader,
            Err(err) => {
                let message = err.to_string();
                return ids
                    .into_iter()
                    .map(|id| id.unwrap_or_else(|| Err(StoreError::Unreadable(message.clone()))))
                    .collect();
            }
        };
        if self.ids.len() >= ID_CACHE {
            self.ids.clear();
        }
        for (slot, id) in slots.iter().zip(ids.iter_mut()) {
            if id.is_some() {
                continue;
            }
            let sql = match slot.table() {
                Table::Consent => "SELECT consent_id FROM consents WHERE rowid = ?1",
                Table::Relationship => "SELECT relationship_id FROM relationships WHERE rowid = ?1",
                Table::Suppression => "SELECT suppression_id FROM suppressions WHERE rowid = ?1",
            };
            let read = reader
                .prepare_cached(sql)
                .and_then(|mut statement| {
                    statement
                        .query_row([slot.row()], |r| r.get::<_, String>(0))
                        .optional()
                })
                .map_err(StoreError::from);
            if let Ok(Some(text)) = &read
                && self.ids_epoch.load(std::sync::atomic::Ordering::Acquire) == epoch
            {
                self.ids.insert(cache_key(slot), Arc::from(text.as_str()));
            }
            *id = Some(read);
        }
        self.readers.lock().expect("reader pool lock").push(reader);
        ids.into_iter().flatten().collect()
    }

    /// Runs `change` in one transaction; once committed, `apply` updates
    /// the index, still under the lock, so the index sees the changes in
    /// the order they were committed.
    fn write<T>(
        &self,
        change: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
        apply: impl FnOnce(&T),
    ) -> Result<T, StoreError> {
        let mut conn = self.conn.lock().expect("contact db lock");
        // Immediate: the write lock is waited for (busy handler) at the
        // start. A deferred transaction that read first and then wrote got
        // SQLITE_BUSY at once while an import was moving rows (an erasure
        // reads first), without waiting at all.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let result = change(&tx)?;
        journal_state::record_application(&tx)?;
        tx.commit()?;
        apply(&result);
        Ok(result)
    }

    fn event(
        tx: &Transaction<'_>,
        at: Timestamp,
        actor: &str,
        action: &str,
        subject: &SubjectHash,
        before: serde_json::Value,
        after: serde_json::Value,
    ) -> rusqlite::Result<()> {
        tx.execute(
            "INSERT INTO events (at_us, actor, action, subject, before, after) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![us(at), actor, action, hex::encode(subject), before.to_string(), after.to_string()],
        )?;
        Ok(())
    }

    /// Stores a consent (idempotent on its id), then makes it effective; returns false if it was already stored.
    ///
    /// # Errors
    /// [`StoreError`]; nothing is changed then.
    pub fn record_consent(
        &self,
        key: NumberKey,
        consent: Consent,
        actor: &str,
    ) -> Result<bool, StoreError> {
        let subject = self.index.subject_hash(&consent.number);
        let added = self.write(
            |tx| {
                let inserted = insert_consent(
                    &mut tx.prepare(&format!(
                        "INSERT OR IGNORE INTO consents ({CONSENT_COLUMNS}, import_seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
                    ))?,
                    key,
                    &consent,
                    None,
                )? == 1;
                if !inserted {
                    return Ok(None);
                }
                let slot = self.index.consent_slot(key, tx.last_insert_rowid(), &consent)?;
                let mut after = serde_json::to_value(&consent).unwrap_or_default();
                after.as_object_mut().map(|o| o.remove("number"));
                Self::event(tx, consent.recorded_at, actor, "consent.recorded", &subject, serde_json::Value::Null, after)?;
                Ok(Some(slot))
            },
            |slot| {
                if let Some(slot) = slot {
                    self.index.add(*slot);
                }
            },
        )?;
        Ok(added.is_some())
    }

    /// The latest grant among the consents a withdrawal of the controller
    /// (one purpose, or all when `purpose` is `None`) would end now.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be read.
    pub fn latest_open_grant(
        &self,
        key: NumberKey,
        controller: &str,
        purpose: Option<Purpose>,
    ) -> Result<Option<Timestamp>, StoreError> {
        let conn = self.conn.lock().expect("contact db lock");
        Ok(latest_open_grant(&conn, key, controller, purpose)?.map(ts))
    }

    /// Ends the controller's consents for the number (one purpose, or all
    /// when `purpose` is `None`) at `at`; returns how many it ended.
    ///
    /// # Errors
    /// [`StoreError`]; nothing is changed then.
    pub fn revoke_consents(
        &self,
        key: NumberKey,
        e164: &str,
        controller: &str,
        purpose: Option<Purpose>,
        at: Timestamp,
        actor: &str,
    ) -> Result<u32, StoreError> {
        self.revoke(key, e164, controller, purpose, at, actor, None, None)
    }

    /// [`ContactStore::revoke_consents`] at the instant `now` the origin
    /// chose, with withdrawal markers named after `marker_seed`: every
    /// replica applying the same journal entry makes the same change.
    ///
    /// # Errors
    /// [`StoreError`]; nothing is changed then.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn revoke_consents_as(
        &self,
        key: NumberKey,
        e164: &str,
        controller: &str,
        purpose: Option<Purpose>,
        at: Timestamp,
        actor: &str,
        now: Timestamp,
        marker_seed: &str,
    ) -> Result<u32, StoreError> {
        self.revoke(
            key,
            e164,
            controller,
            purpose,
            at,
            actor,
            None,
            Some((now, marker_seed)),
        )
    }

    /// [`ContactStore::revoke_consents`] as a restore re-applies a ledgered
    /// withdrawal written at `written_at`: it ends the consents granted at
    /// or before `at`, and every consent recorded before the withdrawal
    /// was written (live, a withdrawal dated in the past ended those too,
    /// whatever their grant); a consent recorded after it, in the backup,
    /// is a new consent. Applying it twice changes nothing more.
    ///
    /// # Errors
    /// [`StoreError`]; nothing is changed then.
    #[allow(clippy::too_many_arguments)]
    pub fn reapply_withdrawal(
        &self,
        key: NumberKey,
        e164: &str,
        controller: &str,
        purpose: Option<Purpose>,
        at: Timestamp,
        written_at: Timestamp,
        binds_grants_until: Option<Timestamp>,
        actor: &str,
    ) -> Result<u32, StoreError> {
        // The ledger entry is written just before the change commits.
        let recorded_by = written_at
            .checked_add(jiff::SignedDuration::from_secs(60))
            .unwrap_or(Timestamp::MAX);
        self.revoke(
            key,
            e164,
            controller,
            purpose,
            at,
            actor,
            Some((recorded_by, binds_grants_until)),
            None,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn revoke(
        &self,
        key: NumberKey,
        e164: &str,
        controller: &str,
        purpose: Option<Purpose>,
        at: Timestamp,
        actor: &str,
        reapplied: Option<(Timestamp, Option<Timestamp>)>,
        stamp: Option<(Timestamp, &str)>,
    ) -> Result<u32, StoreError> {
        // Re-applied by a restore: the consents recorded by then, and the
        // grant up to which the withdrawal bound copies when it was taken
        // (the ledger's; the backup may not hold those consents).
        let recorded_by = reapplied.map(|(by, _)| by);
        let binds_grants_until = reapplied.and_then(|(_, until)| until).map(us);
        let subject = self.index.subject_hash(e164);
        let now = stamp.map_or_else(Timestamp::now, |(now, _)| now);
        let purposes = purpose.map_or(super::PURPOSES.to_vec(), |p| vec![p]);
        let (changed, _) = self.write(|tx| {
            // The latest grant among the consents this withdrawal ends, by
            // purpose: a withdrawal dated before it (a date without a time,
            // local time sent as UTC, a grant stamped a few seconds ahead)
            // ends that consent too, and must bind a copy of it recorded
            // later (a CRM re-sync) as well; dated as given, it bound only
            // copies granted before it, so the copy counted again (found by
            // review).
            //
            // Re-applied, the ledger says up to which grant it bound when
            // taken: the restored store may lack those consents, and may
            // hold one recorded just after the withdrawal (ended by
            // `recorded_by`), whose grant is not one it bound.
            let mut ended_grants = Vec::with_capacity(purposes.len());
            for purpose in &purposes {
                ended_grants.push(match reapplied {
                    Some(_) => binds_grants_until,
                    None => latest_open_grant(tx, key, controller, Some(*purpose))?,
                });
            }
            let changed: usize = tx.execute(
                "UPDATE consents SET revoked_at_us = ?1
                 WHERE number_key = ?2 AND controller = ?3 AND (?4 IS NULL OR purpose = ?4)
                   AND revoked_at_us IS NULL
                   AND (?5 IS NULL OR granted_at_us <= ?1 OR recorded_at_us <= ?5)",
                params![us(at), key.0 as i64, controller, purpose.map(Purpose::as_str), recorded_by.map(us)],
            )?;
            // A consent already withdrawn keeps its withdrawal: lowered to
            // an earlier one arriving late, the later withdrawal was lost
            // (the latest then read as the earlier one, and a consent
            // granted between the two counted; found by review).
            // A withdrawal also binds consents given before it that are
            // recorded later (a CRM catching up, a correction moving one
            // here): where no stored consent of a purpose carries it, a
            // marker does (a consent granted and withdrawn at `at`, which
            // grants nothing itself).
            // The consents it ended keep `at` as their end; a marker dated
            // at the latest grant among them binds their copies.
            let mut markers = Vec::new();
            for (purpose, ended_grant) in purposes.into_iter().zip(ended_grants) {
                let (marked_at, source) = match ended_grant {
                    Some(grant) if grant > us(at) => (ts(grant), WITHDRAWN_BEFORE_GRANT),
                    _ => (at, WITHDRAWN_WITHOUT_CONSENT),
                };
                // Only a withdrawal in force by the marker's date (or now)
                // makes it redundant: a marker still ahead of the clock (a
                // grant stamped a few seconds ahead) left a later
                // withdrawal without one, and a consent given between the
                // two counted until then (found by review).
                let latest: Option<i64> = tx.query_row(
                    "SELECT MAX(revoked_at_us) FROM consents
                     WHERE number_key = ?1 AND controller = ?2 AND purpose = ?3
                       AND revoked_at_us <= ?4",
                    params![key.0 as i64, controller, purpose.as_str(), us(marked_at).max(us(now))],
                    |r| r.get(0),
                )?;
                if latest.is_some_and(|latest| latest >= us(marked_at)) {
                    continue;
                }
                let mut marker =
                    withdrawal_marker(controller, e164, purpose, marked_at, now, source);
                if let Some((_, seed)) = stamp {
                    marker.consent_id = format!("withdrawal-{seed}-{}", purpose.as_str());
                }
                insert_consent(
                    &mut tx.prepare(&format!(
                        "INSERT INTO consents ({CONSENT_COLUMNS}, import_seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
                    ))?,
                    key,
                    &marker,
                    None,
                )?;
                markers.push(self.index.consent_slot(key, tx.last_insert_rowid(), &marker)?);
            }
            Self::event(
                tx,
                now,
                actor,
                "consent.revoked",
                &subject,
                serde_json::Value::Null,
                serde_json::json!({"controller": controller, "purpose": purpose.map(Purpose::as_str), "revoked_at": at, "consents_ended": changed, "withdrawals_without_consent": markers.len()}),
            )?;
            Ok((changed, markers))
        }, |(_, markers)| {
            self.index.revoke(key, controller, purpose, at);
            for marker in markers {
                self.index.add(*marker);
            }
        })?;
        Ok(changed as u32)
    }

    /// Stores an opt-out, then makes it effective.
    ///
    /// # Errors
    /// [`StoreError`]; nothing is changed then.
    pub fn add_suppression(
        &self,
        key: NumberKey,
        suppression: Suppression,
    ) -> Result<bool, StoreError> {
        let subject = self.index.subject_hash(&suppression.number);
        let added = self.write(
            |tx| {
                let inserted = insert_suppression(
                    &mut tx.prepare(&format!(
                        "INSERT OR IGNORE INTO suppressions ({SUPPRESSION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, NULL, ?6, ?7, ?8, ?9, ?10)"
                    ))?,
                    key,
                    &suppression,
                    None,
                )? == 1;
                if !inserted {
                    return Ok(None);
                }
                let slot = self
                    .index
                    .suppression_slot(key, tx.last_insert_rowid(), &suppression)?;
                let mut after = serde_json::to_value(&suppression).unwrap_or_default();
                after.as_object_mut().map(|o| o.remove("number"));
                Self::event(tx, suppression.created_at, &suppression.added_by, "suppression.added", &subject, serde_json::Value::Null, after)?;
                Ok(Some(slot))
            },
            |slot| {
                if let Some(slot) = slot {
                    self.index.add(*slot);
                }
            },
        )?;
        Ok(added.is_some())
    }

    /// Stores a relationship, then makes it effective.
    ///
    /// # Errors
    /// [`StoreError`]; nothing is changed then.
    pub fn record_relationship(
        &self,
        key: NumberKey,
        relationship: Relationship,
        actor: &str,
    ) -> Result<(), StoreError> {
        self.write(
            |tx| self.insert_relationship(tx, key, &relationship, actor),
            |slot| self.index.add(*slot),
        )?;
        Ok(())
    }

    /// Inserts `relationship` with its trail event, in `tx`; returns its
    /// slot for the index (added once `tx` commits).
    fn insert_relationship(
        &self,
        tx: &Transaction<'_>,
        key: NumberKey,
        relationship: &Relationship,
        actor: &str,
    ) -> Result<Slot, StoreError> {
        let subject = self.index.subject_hash(&relationship.number);
        tx.execute(
            &format!("INSERT INTO relationships ({RELATIONSHIP_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
            params![
                relationship.relationship_id,
                relationship.controller,
                relationship.number,
                key.0 as i64,
                relationship.kind.as_str(),
                us(relationship.started_at),
                relationship.ended_at.map(us),
                us(relationship.recorded_at),
            ],
        )?;
        let slot = self
            .index
            .relationship_slot(key, tx.last_insert_rowid(), relationship)?;
        let mut after = serde_json::to_value(relationship).unwrap_or_default();
        after.as_object_mut().map(|o| o.remove("number"));
        Self::event(
            tx,
            relationship.recorded_at,
            actor,
            "relationship.recorded",
            &subject,
            serde_json::Value::Null,
            after,
        )?;
        Ok(slot)
    }

    /// A restore re-applying a relationship's end from the erasure ledger:
    /// records `relationship` beside an ongoing copy of it the store holds
    /// (same number, controller, kind and start), unless a relationship of
    /// its id is stored. Without an ongoing copy nothing is recorded: the
    /// end alone (its write may have failed, or a purge removed it) would
    /// exempt where the live store did not. Returns whether it was recorded.
    ///
    /// # Errors
    /// [`StoreError`]; nothing is changed then.
    pub fn reapply_relationship_end(
        &self,
        key: NumberKey,
        relationship: Relationship,
        actor: &str,
    ) -> Result<bool, StoreError> {
        let slot = self.write(
            |tx| {
                let stored: bool = tx.query_row(
                    "SELECT EXISTS (SELECT 1 FROM relationships WHERE relationship_id = ?1)",
                    [&relationship.relationship_id],
                    |r| r.get(0),
                )?;
                let ongoing: bool = tx.query_row(
                    "SELECT EXISTS (SELECT 1 FROM relationships WHERE number_key = ?1
                         AND controller = ?2 AND kind = ?3 AND started_at_us = ?4
                         AND ended_at_us IS NULL)",
                    params![
                        key.0 as i64,
                        relationship.controller,
                        relationship.kind.as_str(),
                        us(relationship.started_at),
                    ],
                    |r| r.get(0),
                )?;
                if stored || !ongoing {
                    return Ok(None);
                }
                self.insert_relationship(tx, key, &relationship, actor)
                    .map(Some)
            },
            |slot| {
                if let Some(slot) = slot {
                    self.index.add(*slot);
                }
            },
        )?;
        Ok(slot.is_some())
    }

    /// Erases a subject for `controller` (empty = every controller): deletes
    /// consents, relationships and registry observations, keeps every opt-out
    /// by salted hash only, and adds one (so the number stays suppressed).
    /// Returns how many records were erased.
    ///
    /// # Errors
    /// [`StoreError`]; nothing is changed then.
    pub fn erase(
        &self,
        key: NumberKey,
        e164: &str,
        controller: &str,
        actor: &str,
        now: Timestamp,
        verification: &serde_json::Value,
    ) -> Result<u32, StoreError> {
        let keep_id = crate::clock::time_ordered_uuid().to_string();
        self.erase_as(key, e164, controller, actor, now, verification, keep_id)
    }

    /// [`ContactStore::erase`] keeping the opt-out under `keep_id` (the id
    /// the origin of a shared journal entry chose).
    ///
    /// # Errors
    /// [`StoreError`]; nothing is changed then.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn erase_as(
        &self,
        key: NumberKey,
        e164: &str,
        controller: &str,
        actor: &str,
        now: Timestamp,
        verification: &serde_json::Value,
        keep_id: String,
    ) -> Result<u32, StoreError> {
        let subject = self.index.subject_hash(e164);
        let keep = Suppression {
            suppression_id: keep_id,
            controller: controller.to_string(),
            campaign_id: String::new(),
            number: String::new(),
            reason: "erasure request (GDPR art. 17): keep suppressed".into(),
            source: "EraseSubject".into(),
            added_by: actor.to_string(),
            created_at: now,
            expires_at: None,
        };
        let erased = self.write(|tx| {
            // Corrections other processes stored (`consent rectify`) and
            // the index has not applied yet are applied first: below, the
            // number they moved records away from is forgotten, and a
            // record another controller's correction moved away would stay
            // under it in the index (found by review). Nothing else writes
            // while this transaction holds the store. A store without its
            // index (a restore) has none to keep right.
            if self.indexed.load(std::sync::atomic::Ordering::Acquire) {
                self.apply_corrections(tx)?;
            }
            // Corrections of the erased records, in the trail of other
            // numbers (where a record was moved from or to), go too.
            let ids = |table: &str, id: &str| -> rusqlite::Result<String> {
                let ids: Vec<String> = tx
                    .prepare(&format!("SELECT {id} FROM {table} WHERE number_key = ?1 AND (?2 = '' OR controller = ?2)"))?
                    .query_map(params![key.0 as i64, controller], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                Ok(serde_json::Value::from(ids).to_string())
            };
            let (consent_ids, relationship_ids) = (ids("consents", "consent_id")?, ids("relationships", "relationship_id")?);
            let scope = |table: &str| format!("DELETE FROM {table} WHERE number_key = ?1 AND (?2 = '' OR controller = ?2)");
            let consents = tx.execute(&scope("consents"), params![key.0 as i64, controller])?;
            let relationships = tx.execute(&scope("relationships"), params![key.0 as i64, controller])?;
            // The registry's opposed answers go with the subject: safe only
            // because the erasure keeps a permanent opt-out of the same
            // scope below, which denies every call anyway.
            tx.execute(&scope("observations"), params![key.0 as i64, controller])?;
            // The trail keeps that changes happened, not what they held: the
            // evidence of an erased subject's consents goes with them.
            let redacted = serde_json::json!({"redacted": format!("subject erased {now}")}).to_string();
            tx.execute(
                "UPDATE events SET before = CASE WHEN before = 'null' THEN before ELSE ?3 END, after = ?3
                 WHERE subject = ?1
                   AND action IN ('consent.recorded', 'consent.revoked', 'relationship.recorded',
                                  'consent.rectified', 'relationship.rectified')
                   AND (?2 = '' OR json_extract(after, '$.controller') = ?2
                        OR json_extract(before, '$.controller') = ?2)",
                params![hex::encode(subject), controller, redacted],
            )?;
            tx.execute(
                "UPDATE events SET before = ?3, after = ?3
                 WHERE action IN ('consent.rectified', 'relationship.rectified')
                   AND (json_extract(before, '$.consent_id') IN (SELECT value FROM json_each(?1))
                        OR json_extract(before, '$.relationship_id') IN (SELECT value FROM json_each(?2)))",
                params![consent_ids, relationship_ids, redacted],
            )?;
            // The number a corrected record was under, where nothing needs it
            // any more (the erasure ends whatever stood under it).
            tx.execute(
                "UPDATE corrections SET old_key = 0 WHERE old_key = ?1",
                [key.0 as i64],
            )?;
            tx.execute(
                "DELETE FROM journal_subjects WHERE subject = ?1",
                [subject.to_vec()],
            )?;
            let converted = tx.execute(
                "UPDATE suppressions SET number = '', number_key = NULL, number_hash = ?3
                 WHERE number_key = ?1 AND (?2 = '' OR controller = ?2)",
                params![key.0 as i64, controller, subject.to_vec()],
            )?;
            tx.execute(
                &format!("INSERT INTO suppressions ({SUPPRESSION_COLUMNS}) VALUES (?1, ?2, '', '', NULL, ?3, ?4, ?5, ?6, ?7, NULL)"),
                params![keep.suppression_id, keep.controller, subject.to_vec(), keep.reason, keep.source, keep.added_by, us(now)],
            )?;
            let erased = (consents + relationships) as u32;
            Self::event(
                tx,
                now,
                actor,
                "subject.erased",
                &subject,
                serde_json::json!({"consents": consents, "relationships": relationships, "suppressions_hashed": converted}),
                serde_json::json!({"controller": controller, "suppression_id": keep.suppression_id, "verification": verification}),
            )?;
            // SQLite gives a new row the highest rowid + 1: once the highest
            // rows are deleted, their numbers come back, below the scan's mark.
            let highest = |table: &str| -> rusqlite::Result<i64> {
                tx.query_row(&format!("SELECT COALESCE(MAX(rowid), 0) FROM {table}"), [], |r| r.get(0))
            };
            let highest = [highest("consents")?, highest("relationships")?];
            Ok((erased, hashed_suppressions(tx, &subject)?, highest))
        }, |(_, hashed, highest)| {
            {
                let mut watermarks = self.watermarks.lock().expect("watermark lock");
                watermarks[0] = watermarks[0].min(highest[0]);
                watermarks[1] = watermarks[1].min(highest[1]);
            }
            // The hashed opt-outs first: the number is never unsuppressed.
            // (A name the table cannot take is found again at the next start.)
            let _ = self.index.set_erased(subject, hashed.clone());
            self.index.erase(key, controller);
            // Erased rows' numbers may be reused by SQLite.
            self.ids_epoch
                .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            self.ids.clear();
            self.observations.forget(key, controller);
        })?;
        Ok(erased.0)
    }

    /// Everything held about a number for `controller` (empty = every controller).
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be read.
    pub fn subject_records(
        &self,
        key: NumberKey,
        e164: &str,
        controller: &str,
    ) -> Result<SubjectRecords, StoreError> {
        let subject = self.index.subject_hash(e164);
        let conn = self.conn.lock().expect("contact db lock");
        let in_scope = |c: &str| controller.is_empty() || c == controller;
        let mut records = SubjectRecords::default();
        let mut statement = conn.prepare(&format!(
            "SELECT {CONSENT_COLUMNS} FROM consents WHERE number_key = ?1"
        ))?;
        let mut rows = statement.query([key.0 as i64])?;
        while let Some(row) = rows.next()? {
            let (_, consent) = read_consent(row)?;
            if in_scope(&consent.controller) {
                records.consents.push(consent);
            }
        }
        let mut statement = conn.prepare(&format!(
            "SELECT {RELATIONSHIP_COLUMNS} FROM relationships WHERE number_key = ?1"
        ))?;
        let mut rows = statement.query([key.0 as i64])?;
        while let Some(row) = rows.next()? {
            let (_, relationship) = read_relationship(row)?;
            if in_scope(&relationship.controller) {
                records.relationships.push(relationship);
            }
        }
        let mut statement = conn.prepare(&format!(
            "SELECT {SUPPRESSION_COLUMNS} FROM suppressions WHERE number_key = ?1 OR number_hash = ?2"
        ))?;
        let mut rows = statement.query(params![key.0 as i64, subject.to_vec()])?;
        while let Some(row) = rows.next()? {
            let (_, _, suppression) = read_suppression(row)?;
            if in_scope(&suppression.controller) || suppression.controller.is_empty() {
                records.suppressions.push(suppression);
            }
        }
        // The registries' opposed answers, which an erasure deletes as the
        // subject's data (found by review: not in the export).
        let mut statement = conn.prepare(
            "SELECT registry_id, controller, first_not_cleared_us FROM observations WHERE number_key = ?1",
        )?;
        let mut rows = statement.query([key.0 as i64])?;
        while let Some(row) = rows.next()? {
            let controller: String = row.get(1)?;
            if in_scope(&controller) {
                records.registry_answers.push(RegistryAnswer {
                    registry_id: row.get(0)?,
                    controller,
                    opposed_on: ts(row.get(2)?),
                });
            }
        }
        records.trail = read_events(&conn, Some(&hex::encode(subject)))?;
        // Records from a bulk import have that import's event as their trail.
        let mut statement = conn.prepare(
            "SELECT seq, at_us, actor, action, subject, before, after FROM events WHERE seq IN (
                 SELECT import_seq FROM consents WHERE number_key = ?1 AND (?3 = '' OR controller = ?3)
                 UNION SELECT import_seq FROM suppressions
                     WHERE (number_key = ?1 OR number_hash = ?2) AND (?3 = '' OR controller = ?3 OR controller = ''))",
        )?;
        let imports = statement.query_map(
            params![key.0 as i64, subject.to_vec(), controller],
            event_row,
        )?;
        for event in imports {
            records.trail.push(event?);
        }
        records.trail.sort_by_key(|e| e.seq);
        Ok(records)
    }

    /// Records that an export was served.
    ///
    /// # Errors
    /// [`StoreError`] when the event cannot be stored.
    pub fn note_export(
        &self,
        e164: &str,
        controller: &str,
        actor: &str,
        now: Timestamp,
        verification: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let subject = self.index.subject_hash(e164);
        self.write(
            |tx| {
                Ok(Self::event(
                    tx,
                    now,
                    actor,
                    "subject.exported",
                    &subject,
                    serde_json::Value::Null,
                    serde_json::json!({"controller": controller, "verification": verification}),
                )?)
            },
            |()| {},
        )
    }

    /// Loads records that another process (a bulk import) added since the
    /// last call; returns how many rows it read. Many rows are merged into
    /// a new base off the decision path; a few become pending changes.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be read.
    pub fn refresh(&self) -> Result<usize, StoreError> {
        use std::sync::atomic::Ordering;
        let result = self.refresh_once();
        if result.is_ok() {
            self.failing_since_ms.store(0, Ordering::Release);
        } else {
            // The first failure of a run of them is when it began.
            let now = self.opened.elapsed().as_millis() as u64 + 1;
            let _ =
                self.failing_since_ms
                    .compare_exchange(0, now, Ordering::AcqRel, Ordering::Acquire);
        }
        result
    }

    /// How long every refresh has failed: records other processes stored
    /// meanwhile (opt-outs among them) are missing from the index.
    pub fn failing_for(&self) -> Option<std::time::Duration> {
        let local = self.local_failing_for();
        match self.journal_behind() {
            Some(journal) => Some(local.map_or(journal, |local| local.max(journal))),
            None => local,
        }
    }

    fn local_failing_for(&self) -> Option<std::time::Duration> {
        match self
            .failing_since_ms
            .load(std::sync::atomic::Ordering::Acquire)
        {
            0 => None,
            since => Some(
                self.opened
                    .elapsed()
                    .saturating_sub(std::time::Duration::from_millis(since - 1)),
            ),
        }
    }

    fn refresh_once(&self) -> Result<usize, StoreError> {
        let conn = self.conn.lock().expect("contact db lock");
        let mut watermarks = self.watermarks.lock().expect("watermark lock");
        // The marks move only once the rows are in the index: a failed
        // scan is read again by the next refresh.
        let mut next = *watermarks;
        let added = self.scan(&conn, &mut next)?;
        let loaded = added.len();
        let compaction = if loaded > MERGE_AT_ONCE {
            self.index.mark_present(&added);
            let mut compaction = self.index.records.begin_compaction();
            // Under the store's lock: every change before is frozen, every
            // change after stays pending, so `added` sits between them.
            compaction.freeze();
            // The merge takes seconds at tens of millions of records, and
            // until it swaps the new base in no lookup sees `added`. The
            // records that deny or end an exemption are pending changes
            // meanwhile (found by review: an imported opt-out was not seen
            // for the merge's duration); the new base holds them as the
            // same records (see `Change::apply`). Consents may wait: a
            // missing consent only denies.
            let pending: Vec<Slot> = added
                .iter()
                .filter(|slot| slot.table() != Table::Consent)
                .copied()
                .collect();
            for slot in &pending {
                self.index.add(*slot);
            }
            Some((compaction, added, pending))
        } else {
            for slot in added {
                self.index.add(slot);
            }
            None
        };
        *watermarks = next;
        drop(watermarks);
        let observed = self.refresh_observations(&conn);
        drop(conn);
        match compaction {
            Some((compaction, added, pending)) => {
                #[cfg(test)]
                BEFORE_MERGE.with(|hook| {
                    if let Some(hook) = hook.borrow().as_ref() {
                        hook(self);
                    }
                });
                if let Err(err) = compaction.finish(added.clone()) {
                    // The frozen changes stay in force (the next freeze
                    // keeps them); the rows become pending changes (the
                    // ones above are already).
                    for slot in added.into_iter().filter(|s| s.table() == Table::Consent) {
                        self.index.add(slot);
                    }
                    return Err(err.into());
                }
                self.index.forget_merged_additions(&pending);
            }
            None => self.index.compact_if_grown()?,
        }
        // After the rows read above are in the index (a compaction that
        // failed puts them back as changes first): a correction then moves
        // any copy of its record.
        self.apply_corrections(&self.conn.lock().expect("contact db lock"))?;
        observed?;
        Ok(loaded)
    }

    /// Whether any registry answer "opposed" is held (a fast path: most
    /// deployments have none, and a lookup builds its key).
    fn has_opposed(&self) -> bool {
        self.any_opposed.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The latest day `registry_id` answered the number as opposed for `controller`.
    pub fn opposed_at(
        &self,
        registry_id: &str,
        controller: &str,
        key: NumberKey,
    ) -> Option<Timestamp> {
        if !self.has_opposed() {
            return None;
        }
        self.observations.latest(registry_id, controller, key)
    }

    /// Records the registry's answer that `keys` are opposed for
    /// `controller` on `at` (the latest answer per number is kept), in one
    /// transaction; a running server picks it up at its next refresh.
    ///
    /// # Errors
    /// [`StoreError`] when it cannot be stored; nothing is then.
    pub fn record_opposed(
        &self,
        registry_id: &str,
        controller: &str,
        keys: &[NumberKey],
        at: Timestamp,
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            let mut statement = tx.prepare(
                "INSERT INTO observations (registry_id, controller, number_key, first_not_cleared_us) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (registry_id, controller, number_key)
                 DO UPDATE SET first_not_cleared_us = max(first_not_cleared_us, excluded.first_not_cleared_us)",
            )?;
            for key in keys {
                statement.execute(params![registry_id, controller, key.0 as i64, us(at)])?;
            }
            tx.execute(
                "INSERT INTO counters (key, value) VALUES ('observations_version', 1)
                 ON CONFLICT (key) DO UPDATE SET value = value + 1",
                [],
            )?;
            Ok(())
        }, |()| {})?;
        if !keys.is_empty() {
            self.any_opposed
                .store(true, std::sync::atomic::Ordering::Release);
        }
        for key in keys {
            self.observations.record(registry_id, controller, *key, at);
        }
        Ok(())
    }

    /// Reloads the registry answers when another process recorded some.
    fn refresh_observations(&self, conn: &Connection) -> Result<(), StoreError> {
        let version: i64 = conn
            .query_row(
                "SELECT value FROM counters WHERE key = 'observations_version'",
                [],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0);
        let mut seen = self.observations_version.lock().expect("observations lock");
        if *seen == version {
            return Ok(());
        }
        let mut statement = conn.prepare(
            "SELECT registry_id, controller, number_key, first_not_cleared_us FROM observations",
        )?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            let at = ts_column(row, 3, "first_not_cleared_us")?;
            self.observations.record(
                &row.get::<_, String>(0)?,
                &row.get::<_, String>(1)?,
                NumberKey(row.get::<_, i64>(2)? as u64),
                at,
            );
            self.any_opposed
                .store(true, std::sync::atomic::Ordering::Release);
        }
        *seen = version;
        Ok(())
    }

    /// Lets this store's bulk imports run offline (the operator's
    /// `--offline`): the import takes the data directory's serve lock for
    /// its whole run. Into a store without consents it is then a first
    /// load, one transaction (see `load_first`); otherwise the number
    /// indexes of the tables it at least doubles are set aside during the
    /// moves (see `move_staged`). Never for a server's own store: its
    /// imports keep the indexes and never hold the write lock for long.
    pub fn move_offline(&self) {
        self.offline_moves
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// The serve lock for an offline import: `None` when not asked for,
    /// or when another process (a running server) holds it.
    fn offline_lock(&self) -> Option<crate::serve_lock::ServeLock> {
        if !self
            .offline_moves
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return None;
        }
        let data_dir = self.path.parent()?;
        match crate::serve_lock::ServeLock::try_acquire(data_dir) {
            Ok(Some(lock)) => Some(lock),
            Ok(None) => {
                tracing::warn!(
                    "another process holds serve.lock (a running server?): moving with the number indexes kept up to date"
                );
                None
            }
            Err(err) => {
                tracing::warn!(error = %err, "serve.lock not taken: moving with the number indexes kept up to date");
                None
            }
        }
    }

    /// A bulk import: `fill` adds records through the [`BulkImport`],
    /// which stages them in a private file beside the store (one
    /// transaction there, no lock on the store). When `fill` returns
    /// `None` or fails, nothing is stored. When it returns `Some`, one trail
    /// event (`action`, with `fill`'s details) is stored, then the records
    /// are moved in by chunks of [`MOVE_CHUNK`] rows, each its own short
    /// transaction, so the running server's writes go on meanwhile; the
    /// event gets the counts at the end. A crash while moving leaves the
    /// records moved so far, all valid (a re-run adds the rest). The rows
    /// carry the event's sequence number: the trail of a subject's imported
    /// record is that event. An indexed store loads the records at once; a
    /// running server at its next refresh. An offline import into a store
    /// without consents is instead one transaction (`load_first`).
    ///
    /// # Errors
    /// [`StoreError`]; if it comes while moving, the records moved so far stay.
    pub fn bulk_import<R>(
        &self,
        actor: &str,
        action: &str,
        now: Timestamp,
        fill: impl FnOnce(&mut BulkImport<'_>) -> Result<Option<(R, serde_json::Value)>, StoreError>,
    ) -> Result<Option<(R, BulkCounts)>, StoreError> {
        let outcome = self.with_staging("nothing imported", |conn| {
            let alone = self.offline_lock();
            if alone.is_some() && Self::holds_no_consents(conn)? {
                let outcome = self.load_first(conn, actor, action, now, fill);
                drop(alone);
                outcome
            } else {
                self.stage_and_move(conn, alone, actor, action, now, fill)
            }
        })?;
        if outcome.is_some()
            && self.indexed.load(std::sync::atomic::Ordering::Acquire)
            && let Err(err) = self.refresh()
        {
            // Stored: the next refresh loads the records.
            tracing::warn!(error = %err, "imported records not loaded yet");
        }
        Ok(outcome)
    }

    fn holds_no_consents(conn: &Connection) -> Result<bool, StoreError> {
        Ok(last_rowid(conn, "main.consents")? == 0)
    }

    /// A first load: an offline import (the serve lock held, see
    /// [`ContactStore::move_offline`]) into a store that holds no consents
    /// yet. The whole import is one transaction on the store: its trail
    /// event first, then the consents and opt-outs inserted as they are
    /// read, with the number index and the id index (see `index_ids`) of
    /// each table set aside from its first record on (the opt-outs' only
    /// when the store held none, see `load_suppressions`), the later
    /// copies of a consent id deleted and the indexes built again in one
    /// sorted pass each (see `index_unique_ids`,
    /// `BulkImport::settle_suppression_copies`), the event's counts, and
    /// one commit. When `fill`
    /// returns `None` or anything fails, nothing is stored, the indexes
    /// included (a crash likewise: the transaction never committed). The
    /// store's write lock is held throughout: any other process that opens
    /// the store (every open writes) or writes to it waits for the end of
    /// the import or fails after its busy timeout. The transaction runs in
    /// a rollback journal when SQLite can switch to one (below). Of two
    /// consents with one id, the first in the file is kept (the staged
    /// path keeps the first in number order within a batch of
    /// [`BULK_BATCH`]).
    fn load_first<R>(
        &self,
        conn: &mut Connection,
        actor: &str,
        action: &str,
        now: Timestamp,
        fill: impl FnOnce(&mut BulkImport<'_>) -> Result<Option<(R, serde_json::Value)>, StoreError>,
    ) -> Result<Option<(R, BulkCounts)>, StoreError> {
        prepare_staging(conn)?;
        // The commit may wait for a reader (an operator's shell) rather
        // than fail and roll the whole load back.
        conn.busy_timeout(BUSY_WHILE_ALONE)?;
        // A rollback journal for the load, so that every page is written
        // once: the pages a first load adds lie past the store's end and
        // are not journaled (a rollback cuts them off), where the
        // write-ahead log would hold them all and then copy them into the
        // store. SQLite leaves the write-ahead log only when no other
        // connection has the store open; else the load runs in it. The
        // commit, the journal's deletion, is made durable by a sync of the
        // directory (`EXTRA`): else a power cut could bring the journal
        // back, and with it the store as it was before an import that said
        // it was stored.
        let durable = match conn.query_row("PRAGMA main.journal_mode = DELETE", [], |r| {
            r.get::<_, String>(0)
        }) {
            Ok(journal) if journal.eq_ignore_ascii_case("delete") => {
                conn.execute_batch("PRAGMA main.synchronous = EXTRA")
            }
            Ok(journal) => {
                tracing::info!(journal, "the first load runs in the write-ahead log");
                Ok(())
            }
            // Busy: another connection has the store open.
            Err(err) => {
                tracing::info!(
                    error = %err,
                    "the first load runs in the write-ahead log (another process has the store open)"
                );
                Ok(())
            }
        };
        let loaded = match durable {
            Ok(()) => self.load_first_at_once(conn, actor, action, now, fill),
            Err(err) => Err(err.into()),
        };
        // As every open of the store does (a no-op if the load ran in the
        // write-ahead log). A store left in the rollback journal (a kill,
        // or another process opening it meanwhile) goes back at its next
        // read-write open, which also rolls back a load killed before its
        // commit. The connection's settings are restored whatever happened.
        let back = conn.query_row("PRAGMA main.journal_mode = WAL", [], |r| {
            r.get::<_, String>(0)
        });
        let restored = conn
            .execute_batch("PRAGMA main.synchronous = FULL")
            .and_then(|()| conn.busy_timeout(BUSY_TIMEOUT));
        if !matches!(&back, Ok(mode) if mode.eq_ignore_ascii_case("wal")) || restored.is_err() {
            tracing::warn!(
                ?back,
                ?restored,
                "the store stays in a rollback journal until its next open"
            );
        }
        loaded
    }

    /// [`ContactStore::load_first`]'s transaction, in the store's
    /// write-ahead log or a rollback journal.
    fn load_first_at_once<R>(
        &self,
        conn: &mut Connection,
        actor: &str,
        action: &str,
        now: Timestamp,
        fill: impl FnOnce(&mut BulkImport<'_>) -> Result<Option<(R, serde_json::Value)>, StoreError>,
    ) -> Result<Option<(R, BulkCounts)>, StoreError> {
        let started = std::time::Instant::now();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // As it is now the store's write lock is held (another process's
        // open may have put it back in the write-ahead log meanwhile).
        let write_ahead = tx
            .query_row("PRAGMA main.journal_mode", [], |r| r.get::<_, String>(0))?
            .eq_ignore_ascii_case("wal");
        tx.execute(
            "INSERT INTO events (at_us, actor, action, subject, before, after) VALUES (?1, ?2, ?3, '', 'null', 'null')",
            params![us(now), actor, action],
        )?;
        let seq = tx.last_insert_rowid();
        rekey_empty(&tx, "consents")?;
        rekey_empty(&tx, "suppressions")?;
        if !ids_indexed_apart(&tx, "consents")? {
            // Only a table that holds rows keeps the layout keyed by id.
            return Err(StoreError::Unreadable(
                "a first load into a store that holds consents: nothing imported".into(),
            ));
        }
        let mut import = BulkImport {
            tx: &tx,
            consents: Vec::new(),
            suppressions: Vec::new(),
            copies_checked: true,
            staged_ids: StagedTables::default(),
            first_load: Some(FirstLoad {
                seq,
                counts: BulkCounts::default(),
                consents_aside: false,
                repeated: RepeatedIds::default(),
                suppressions_aside: ids_indexed_apart(&tx, "suppressions")?
                    && last_rowid(&tx, "main.suppressions")? == 0,
                suppressions_dropped: false,
                seen: SeenIds::default(),
                copies_settled: false,
                reused: Vec::new(),
                index: &self.index,
            }),
        };
        let Some((result, mut details)) = fill(&mut import)? else {
            return Ok(None);
        };
        import.refuse_reused_in_load()?;
        let copies_checked = import.copies_checked;
        let (mut counts, ids_set_aside) =
            import
                .first_load
                .take()
                .map_or((BulkCounts::default(), None), |load| {
                    let aside = load.consents_aside;
                    (load.counts, aside.then_some(load.repeated))
                });
        let before_rebuild = started.elapsed().as_millis() as u64;
        // Every index set aside above is built again here.
        match ids_set_aside {
            Some(repeated) => {
                let sorted = index_unique_ids(&tx, &mut counts, repeated, copies_checked)?;
                counts.ids_sorted = sorted;
            }
            None => rebuild_indexes(&tx)?,
        }
        let rebuilt_ms = started.elapsed().as_millis() as u64 - before_rebuild;
        record_counts(&tx, seq, &mut details, counts)?;
        tx.commit()?;
        let committed_ms = started.elapsed().as_millis() as u64;
        if write_ahead {
            // The write-ahead log holds the whole import: copied into the
            // store and emptied now rather than left on disk at its size
            // (a reader in the way: left to a later checkpoint).
            conn.busy_timeout(BUSY_TIMEOUT)?;
            let checkpoint = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                r.get::<_, i64>(0)
            });
            if !matches!(checkpoint, Ok(0)) {
                tracing::warn!(
                    ?checkpoint,
                    "the write-ahead log was not emptied after the import"
                );
            }
        }
        tracing::debug!(
            write_ahead,
            ids_sorted = counts.ids_sorted,
            inserted_ms = before_rebuild,
            rebuilt_ms,
            committed_ms,
            took_ms = started.elapsed().as_millis() as u64,
            "first load stored in one transaction"
        );
        Ok(Some((result, counts)))
    }

    /// Stages `fill`'s records (one transaction on the staging file), then
    /// refuses ids they reuse for another record, in the file or in the
    /// store: what an import checks before it stores anything. Returns
    /// what `fill` returned and the ids staged; `None` when `fill` gave up.
    #[allow(clippy::type_complexity)]
    fn stage_checked<R>(
        &self,
        conn: &mut Connection,
        fill: impl FnOnce(&mut BulkImport<'_>) -> Result<Option<(R, serde_json::Value)>, StoreError>,
    ) -> Result<Option<(R, serde_json::Value, StagedTables)>, StoreError> {
        prepare_staging(conn)?;
        let staging_started = std::time::Instant::now();
        let (filled, (copies_checked, staged_ids)) = {
            let tx = conn.transaction()?;
            let mut import = BulkImport {
                tx: &tx,
                consents: Vec::new(),
                suppressions: Vec::new(),
                first_load: None,
                copies_checked: true,
                staged_ids: StagedTables::default(),
            };
            match fill(&mut import)? {
                None => return Ok(None),
                Some(filled) => {
                    import.flush()?;
                    let checks = (
                        import.copies_checked,
                        std::mem::take(&mut import.staged_ids),
                    );
                    drop(import);
                    tx.commit()?;
                    (filled, checks)
                }
            }
        };
        let (result, details) = filled;
        tracing::debug!(
            took_ms = staging_started.elapsed().as_millis() as u64,
            "import staged"
        );
        self.refuse_reused_suppression_ids(
            conn,
            copies_checked,
            staged_ids.suppressions.repeated(),
        )?;
        if copies_checked {
            refuse_reused_consent_ids(conn, staged_ids.consents.repeated())?;
        }
        Ok(Some((result, details, staged_ids)))
    }

    /// A dry run of [`ContactStore::bulk_import`]: the records staged and
    /// checked as the import would check them (an id reused for another
    /// record refuses it, as it would the import), what the import would
    /// count as stored and already present worked out, nothing stored.
    /// Waits for an import running on the store, as an import does.
    ///
    /// # Errors
    /// [`StoreError`], [`StoreError::ReusedIds`] and
    /// [`StoreError::ReusedConsentIds`] as the import would fail.
    pub fn bulk_check<R>(
        &self,
        fill: impl FnOnce(&mut BulkImport<'_>) -> Result<Option<(R, serde_json::Value)>, StoreError>,
    ) -> Result<Option<(R, BulkCounts)>, StoreError> {
        self.with_staging("nothing checked", |conn| {
            match self.stage_checked(conn, fill)? {
                None => Ok(None),
                Some((result, _, ids)) => Ok(Some((result, staged_counts(conn, &ids)?))),
            }
        })
    }

    /// Runs `run` on the store's connection with a fresh staging file
    /// attached as `staging` (removed afterwards, whatever happened),
    /// holding the store's import lock from the id checks to the last
    /// move: imports run one at a time (`nothing`: what a failure to take
    /// the lock means, for its error).
    fn with_staging<T>(
        &self,
        nothing: &str,
        run: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let _one_at_a_time = import_lock::ImportLock::acquire(&self.path).map_err(|err| {
            StoreError::Unreadable(format!("cannot take the import lock: {err}: {nothing}"))
        })?;
        let staging = self
            .path
            .with_file_name(format!("contacts-import-{}.db", std::process::id()));
        let mut conn = self.conn.lock().expect("contact db lock");
        let _ = std::fs::remove_file(&staging);
        let _ = crate::private::touch(&staging);
        conn.execute("ATTACH DATABASE ?1 AS staging", [staging.to_string_lossy()])?;
        let outcome = run(&mut conn);
        let detached = conn.execute_batch("DETACH DATABASE staging");
        let _ = std::fs::remove_file(&staging);
        let outcome = outcome?;
        detached?;
        Ok(outcome)
    }

    fn stage_and_move<R>(
        &self,
        conn: &mut Connection,
        alone: Option<crate::serve_lock::ServeLock>,
        actor: &str,
        action: &str,
        now: Timestamp,
        fill: impl FnOnce(&mut BulkImport<'_>) -> Result<Option<(R, serde_json::Value)>, StoreError>,
    ) -> Result<Option<(R, BulkCounts)>, StoreError> {
        let Some((result, mut details, _)) = self.stage_checked(conn, fill)? else {
            return Ok(None);
        };
        let seq = {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            tx.execute(
                "INSERT INTO events (at_us, actor, action, subject, before, after) VALUES (?1, ?2, ?3, '', 'null', ?4)",
                params![us(now), actor, action, details.to_string()],
            )?;
            let seq = tx.last_insert_rowid();
            tx.commit()?;
            seq
        };
        // Fewer checkpoints than one per move (the moves rewrite the same
        // index pages), with the write-ahead log still bounded (a disk of
        // 44 GB filled with none at 50 M records).
        conn.pragma_update(None, "wal_autocheckpoint", WAL_PAGES_WHILE_MOVING)?;
        let moving_started = std::time::Instant::now();
        let moved = Self::move_staged(conn, seq, alone.is_some());
        drop(alone);
        tracing::debug!(
            took_ms = moving_started.elapsed().as_millis() as u64,
            "import moved in"
        );
        conn.pragma_update(None, "wal_autocheckpoint", 1000)?;
        let counts = moved?;
        record_counts(conn, seq, &mut details, counts)?;
        Ok(Some((result, counts)))
    }

    /// Refuses staged opt-outs whose id is already another opt-out's (in
    /// the file or in the store): `INSERT OR IGNORE` would keep only one,
    /// and the other number would be called. Two in one file must agree
    /// on the expiry too; one stored already must not expire before the
    /// file's (see `outlasts`).
    fn refuse_reused_suppression_ids(
        &self,
        conn: &Connection,
        copies_checked: bool,
        repeated: Option<&std::collections::HashSet<String>>,
    ) -> Result<(), StoreError> {
        let mut reused: Vec<String> = Vec::new();
        // More than one value of a column among an id's rows: its lowest
        // and highest differ (both skip NULLs, as COUNT(DISTINCT) does,
        // which built a temporary index per group and column: 12.9 s of
        // a first load of 10 M opt-outs), or, for the expiry, which may
        // be NULL, some rows have one and others not.
        let twice = disagreeing_staged_ids(
            conn,
            "suppressions",
            "suppression_id",
            &format!(
                "MIN(number_key) != MAX(number_key) OR MIN(controller) != MAX(controller)
                 OR MIN(campaign_id) != MAX(campaign_id)
                 OR ({} AND (MIN(expires_at_us) != MAX(expires_at_us)
                             OR COUNT(expires_at_us) NOT IN (0, COUNT(*))))",
                i32::from(copies_checked)
            ),
            repeated,
        )?;
        for id in twice {
            reused.push(format!("{id} (twice in the file)"));
        }
        let mut statement = conn.prepare(
            "SELECT s.suppression_id, s.number, s.number_key, s.controller, s.campaign_id,
                    m.number_key, m.number_hash, m.controller, m.campaign_id,
                    s.expires_at_us, m.expires_at_us
             FROM staging.suppressions s JOIN main.suppressions m ON m.suppression_id = s.suppression_id",
        )?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            if reused.len() >= 5 {
                break;
            }
            let same_number = match row.get::<_, Option<i64>>(5)? {
                Some(stored) => stored == row.get::<_, i64>(2)?,
                // Erased: kept by hash only.
                None => {
                    row.get::<_, Option<Vec<u8>>>(6)?.as_deref()
                        == Some(self.index.subject_hash(text(row, 1)?).as_slice())
                }
            };
            if !same_number
                || text(row, 3)? != text(row, 7)?
                || text(row, 4)? != text(row, 8)?
                || (copies_checked && outlasts(row.get(9)?, row.get(10)?))
            {
                reused.push(format!("{} ({ALREADY_STORED})", text(row, 0)?));
            }
        }
        if reused.is_empty() {
            return Ok(());
        }
        Err(StoreError::ReusedIds(reused.join(", ")))
    }

    /// Moves the staged records into the store, a chunk per transaction.
    ///
    /// `alone`: the import was asked to move offline
    /// ([`ContactStore::move_offline`]) and holds the data directory's
    /// serve lock, so no server reads the store meanwhile. A table that the
    /// import at least doubles then has its number index dropped before its
    /// moves and built again after them, in one sorted pass (`SCHEMA`'s
    /// `CREATE INDEX IF NOT EXISTS`), rather than updated at a random page
    /// for every row. The index is rebuilt whether the moves succeed
    /// or fail; after a crash between the two, the next open of the store
    /// rebuilds it (every open runs `SCHEMA`), as does any other command
    /// that opens the store meanwhile (the moves then wait for it).
    fn move_staged(conn: &mut Connection, seq: i64, alone: bool) -> Result<BulkCounts, StoreError> {
        let mut counts = BulkCounts::default();
        for (table, columns) in [
            ("consents", STAGED_CONSENT_COLUMNS),
            ("suppressions", STAGED_SUPPRESSION_COLUMNS),
        ] {
            let staged = last_rowid(conn, &format!("staging.{table}"))?;
            let set_aside =
                alone && sets_index_aside(staged, last_rowid(conn, &format!("main.{table}"))?);
            if !set_aside {
                Self::move_table(conn, table, columns, staged, seq, &mut counts)?;
                continue;
            }
            // Another command that opens the store meanwhile builds the
            // index again at its open (`SCHEMA`), holding the write lock
            // for as long as that takes: the moves wait for it rather than
            // fail (no server waits behind them).
            conn.busy_timeout(BUSY_WHILE_ALONE)?;
            let started = std::time::Instant::now();
            let moved = conn
                .execute_batch(&format!("DROP INDEX IF EXISTS main.{table}_by_number"))
                .map_err(StoreError::from)
                .and_then(|()| Self::move_table(conn, table, columns, staged, seq, &mut counts));
            let moved_ms = started.elapsed().as_millis() as u64;
            // Built again whether the moves succeeded or not.
            let rebuilt = rebuild_indexes(conn);
            let restored = conn.busy_timeout(BUSY_TIMEOUT);
            tracing::debug!(
                table,
                moved_ms,
                rebuilt_ms = started.elapsed().as_millis() as u64 - moved_ms,
                "moved with the number index set aside, then rebuilt"
            );
            moved?;
            rebuilt?;
            restored?;
            counts.indexes_rebuilt += 1;
        }
        Ok(counts)
    }

    /// Moves the `staged` rows of one staging table into the store.
    fn move_table(
        conn: &mut Connection,
        table: &str,
        columns: &str,
        staged: i64,
        seq: i64,
        counts: &mut BulkCounts,
    ) -> Result<(), StoreError> {
        let mut after = 0;
        let mut chunk = MOVE_CHUNK;
        while after < staged {
            let upto = (after + chunk).min(staged);
            let started = std::time::Instant::now();
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let inserted = tx.execute(
                &format!(
                    "INSERT OR IGNORE INTO main.{table} ({columns}, import_seq)
                     SELECT {columns}, ?3 FROM staging.{table}
                     WHERE rowid > ?1 AND rowid <= ?2 ORDER BY rowid"
                ),
                params![after, upto, seq],
            )?;
            tx.commit()?;
            // Larger chunks rewrite fewer index pages; each holds the
            // store's write lock for about MOVE_TARGET at most.
            let took = started.elapsed();
            // The lock is free for a moment after each move: a writer
            // waiting for it polls (SQLite's busy handler, every 100 ms
            // at most), and without the pause the next move would take
            // the lock first, move after move, until its 5 s timeout.
            std::thread::sleep(move_pause(took));
            tracing::trace!(
                table,
                rows = upto - after,
                took_ms = took.as_millis() as u64,
                "moved"
            );
            if took < MOVE_TARGET / 2 {
                chunk = (chunk * 2).min(MOVE_CHUNK_MAX);
            } else if took > MOVE_TARGET {
                chunk = (chunk / 2).max(MOVE_CHUNK);
            }
            counts.moved(upto - after, inserted);
            after = upto;
        }
        Ok(())
    }

    /// The whole change trail, oldest first.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be read.
    pub fn trail(&self) -> Result<Vec<ChangeEvent>, StoreError> {
        let conn = self.conn.lock().expect("contact db lock");
        Ok(read_events(&conn, None)?)
    }
}

fn read_events(conn: &Connection, subject: Option<&str>) -> rusqlite::Result<Vec<ChangeEvent>> {
    let mut statement = conn.prepare(
        "SELECT seq, at_us, actor, action, subject, before, after FROM events WHERE ?1 IS NULL OR subject = ?1 ORDER BY seq",
    )?;
    let rows = statement.query_map([subject], event_row)?;
    rows.collect()
}

fn event_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ChangeEvent> {
    Ok(ChangeEvent {
        seq: row.get(0)?,
        at: ts(row.get(1)?),
        actor: row.get(2)?,
        action: row.get(3)?,
        subject: row.get(4)?,
        before: serde_json::from_str(&row.get::<_, String>(5)?).unwrap_or_default(),
        after: serde_json::from_str(&row.get::<_, String>(6)?).unwrap_or_default(),
    })
}

/// 32 random bytes (two v4 UUIDs, 244 random bits), made once per store.
fn random_salt() -> [u8; 32] {
    let mut salt = [0u8; 32];
    salt[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    salt[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    salt
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A correction another process stored (a record moved off a number)
    /// and an erasure of that number for another controller, before the
    /// server read the correction: the erasure forgot the number the record
    /// was moved from, and the record stayed under it in the index (found
    /// by review: a consent counted for the number it was moved away from).
    #[test]
    fn test_an_erasure_applies_pending_corrections_before_forgetting_their_number() {
        let dir = tempfile::tempdir().unwrap();
        let serving = ContactStore::open(dir.path()).unwrap();
        let (from, to) = ("+390212345678", "+390212345679");
        let from_key = NumberKey::from_e164(from).unwrap();
        let to_key = NumberKey::from_e164(to).unwrap();
        assert!(
            serving
                .record_consent(from_key, consent(from), "test")
                .unwrap()
        );
        assert_eq!(serving.view(from_key, from).consents.len(), 1);
        let cli = ContactStore::open_unindexed(dir.path()).unwrap();
        let before = cli.consent_by_id("c-1").unwrap().unwrap();
        let mut after = before.record.clone();
        after.number = to.into();
        cli.rectify(
            &[Rectification::Consent {
                before: Box::new(before),
                after: Box::new((to_key, after)),
                reason: "wrong number".into(),
            }],
            "cli:test",
            Timestamp::now(),
        )
        .unwrap();
        serving
            .erase(
                from_key,
                from,
                "other",
                "test",
                Timestamp::now(),
                &serde_json::Value::Null,
            )
            .unwrap();
        serving.refresh().unwrap();
        assert!(
            serving.view(from_key, from).consents.is_empty(),
            "the consent moved away"
        );
        assert_eq!(serving.view(to_key, to).consents.len(), 1);
    }

    /// Whether a consent is a signed written agreement (its method) is
    /// kept in the index, from a write and from a scan at start-up, beside
    /// its purpose: a withdrawal of that purpose still ends it.
    #[test]
    fn test_the_index_keeps_whether_a_consent_is_a_written_agreement() {
        let dir = tempfile::tempdir().unwrap();
        let (written, other) = ("+390212345678", "+390212345679");
        let written_key = NumberKey::from_e164(written).unwrap();
        let other_key = NumberKey::from_e164(other).unwrap();
        {
            let store = ContactStore::open(dir.path()).unwrap();
            let mut agreement = consent(written);
            agreement.method = " Written_Agreement".into();
            agreement.purpose = Purpose::Marketing;
            assert!(store.record_consent(written_key, agreement, "t").unwrap());
            let mut plain = consent(other);
            plain.consent_id = "c-2".into();
            assert!(store.record_consent(other_key, plain, "t").unwrap());
            let view = store.view(written_key, written);
            assert!(view.consents[0].is_written_agreement(), "{view:?}");
            assert_eq!(view.consents[0].purpose, Purpose::Marketing);
        }
        let store = ContactStore::open(dir.path()).unwrap();
        let view = store.view(written_key, written);
        assert!(view.consents[0].is_written_agreement(), "scanned: {view:?}");
        assert_eq!(view.consents[0].purpose, Purpose::Marketing);
        assert!(!store.view(other_key, other).consents[0].is_written_agreement());
        let at: Timestamp = "2026-03-01T00:00:00Z".parse().unwrap();
        assert_eq!(
            store
                .revoke_consents(
                    written_key,
                    written,
                    "acme",
                    Some(Purpose::Marketing),
                    at,
                    "t"
                )
                .unwrap(),
            1
        );
        assert_eq!(
            store.view(written_key, written).consents[0].revoked_at,
            Some(at)
        );
    }

    /// A withdrawal kept by hash binds a correction made by a command that
    /// opens the store without its index (`consent rectify`): it was read
    /// from the index's memory only, empty there (found by review).
    #[test]
    fn test_withdrawals_kept_by_hash_are_read_without_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let number = "+390212345678";
        let key = NumberKey::from_e164(number).unwrap();
        let at: Timestamp = "2026-02-01T10:00:00Z".parse().unwrap();
        {
            let store = ContactStore::open(dir.path()).unwrap();
            let subject = store.index().subject_hash(number);
            store
                .withdraw_by_hash(&subject, "acme", Some(Purpose::Marketing), at, "test")
                .unwrap();
            store
                .withdraw_by_hash(&subject, "other", None, at, "test")
                .unwrap();
        }
        let unindexed = ContactStore::open_unindexed(dir.path()).unwrap();
        assert_eq!(
            unindexed
                .withdrawals((key, number), "acme", Purpose::Marketing)
                .unwrap(),
            vec![at]
        );
        assert_eq!(
            unindexed
                .withdrawals((key, number), "other", Purpose::Statistical)
                .unwrap(),
            vec![at],
            "a withdrawal of every purpose"
        );
        assert!(
            unindexed
                .withdrawals((key, number), "acme", Purpose::Statistical)
                .unwrap()
                .is_empty()
        );
    }

    /// A customer relationship of `number` (`r-1`, ongoing since 5 Jan
    /// 2025) and its end recorded as another record (`r-2`, 5 Jan 2026).
    fn customer_and_its_end(number: &str) -> (Relationship, Relationship) {
        let started: Timestamp = "2025-01-05T10:00:00Z".parse().unwrap();
        let ongoing = Relationship {
            relationship_id: "r-1".into(),
            controller: "acme".into(),
            number: number.into(),
            kind: RelationshipKind::Customer,
            started_at: started,
            ended_at: None,
            recorded_at: started,
        };
        let ended = Relationship {
            relationship_id: "r-2".into(),
            ended_at: Some("2026-01-05T10:00:00Z".parse().unwrap()),
            ..ongoing.clone()
        };
        (ongoing, ended)
    }

    /// A correction that moves a relationship's start without its other
    /// record (its end, recorded after the copies were read) is refused in
    /// the correction's transaction; with it, both move (found by review).
    #[test]
    fn test_a_relationship_is_not_moved_without_its_other_records() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContactStore::open(dir.path()).unwrap();
        let number = "+390212345678";
        let key = NumberKey::from_e164(number).unwrap();
        let (ongoing, ended) = customer_and_its_end(number);
        let started = ongoing.started_at;
        store.record_relationship(key, ongoing, "t").unwrap();
        store.record_relationship(key, ended, "t").unwrap();
        let moved = |id: &str| {
            let before = store.relationship_by_id(id).unwrap().unwrap();
            let mut after = before.record.clone();
            after.started_at = started - jiff::SignedDuration::from_hours(24);
            Rectification::Relationship {
                before: Box::new(before),
                after: Box::new((key, after)),
                reason: "typo".into(),
            }
        };
        let alone = store.rectify(&[moved("r-1")], "t", Timestamp::now());
        assert!(
            matches!(alone, Err(StoreError::Changed(ref id)) if id == "r-1"),
            "{alone:?}"
        );
        store
            .rectify(&[moved("r-1"), moved("r-2")], "t", Timestamp::now())
            .unwrap();
        let view = store.view(key, number);
        assert!(
            view.relationships
                .iter()
                .all(|r| r.started_at == started - jiff::SignedDuration::from_hours(24)),
            "{view:?}"
        );
    }

    /// A relationship's end from the erasure ledger is recorded again only
    /// beside an ongoing copy of it, once (found by review: alone, it
    /// exempted where the live store never had it).
    #[test]
    fn test_a_relationship_end_is_reapplied_only_beside_its_ongoing_copy() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContactStore::open(dir.path()).unwrap();
        let number = "+390212345678";
        let key = NumberKey::from_e164(number).unwrap();
        let (ongoing, ended) = customer_and_its_end(number);
        assert!(
            !store
                .reapply_relationship_end(key, ended.clone(), "t")
                .unwrap()
        );
        let other_start = Relationship {
            relationship_id: "r-0".into(),
            started_at: "2024-01-05T10:00:00Z".parse().unwrap(),
            ..ongoing.clone()
        };
        store.record_relationship(key, other_start, "t").unwrap();
        assert!(
            !store
                .reapply_relationship_end(key, ended.clone(), "t")
                .unwrap()
        );
        store.record_relationship(key, ongoing, "t").unwrap();
        assert!(
            store
                .reapply_relationship_end(key, ended.clone(), "t")
                .unwrap()
        );
        assert!(!store.reapply_relationship_end(key, ended, "t").unwrap());
        assert_eq!(store.view(key, number).relationships.len(), 3);
    }

    fn consent(number: &str) -> Consent {
        let at: Timestamp = "2026-01-05T10:00:00Z".parse().unwrap();
        Consent {
            consent_id: "c-1".into(),
            controller: "acme".into(),
            number: number.into(),
            purpose: Purpose::Statistical,
            granted_at: at,
            revoked_at: None,
            expires_at: None,
            source: "web".into(),
            supplier: String::new(),
            method: "checkbox".into(),
            notice_version: "v1".into(),
            evidence_ref: "e-1".into(),
            recorded_at: at,
        }
    }

    /// A row the code does not understand must stop the store from opening
    /// (fail closed), naming the column and value; it used to become a
    /// marketing consent or a customer relationship.
    #[test]
    fn test_unknown_values_read_back_are_errors_not_defaults() {
        let corruptions = [
            "UPDATE consents SET purpose = 'telepathy'",
            "UPDATE consents SET granted_at_us = 9223372036854775807",
            "UPDATE relationships SET kind = 'friend'",
        ];
        for corruption in corruptions {
            let dir = tempfile::tempdir().unwrap();
            let number = "+390212345678";
            let key = NumberKey::from_e164(number).unwrap();
            {
                let store = ContactStore::open(dir.path()).unwrap();
                store.record_consent(key, consent(number), "test").unwrap();
                let at: Timestamp = "2026-01-05T10:00:00Z".parse().unwrap();
                store
                    .record_relationship(
                        key,
                        Relationship {
                            relationship_id: "r-1".into(),
                            controller: "acme".into(),
                            number: number.into(),
                            kind: RelationshipKind::Inquiry,
                            started_at: at,
                            ended_at: None,
                            recorded_at: at,
                        },
                        "test",
                    )
                    .unwrap();
            }
            let conn = Connection::open(database_path(dir.path())).unwrap();
            conn.execute_batch(corruption).unwrap();
            drop(conn);
            let message = ContactStore::open(dir.path()).unwrap_err().to_string();
            assert!(
                message.contains("telepathy")
                    || message.contains("9223372036854775807")
                    || message.contains("friend"),
                "{corruption}: {message}"
            );
        }
    }

    /// Issue 15: a bulk import from another process (the CLI) reaches a
    /// running store through refresh, merged into a new base when large,
    /// with a revocation made meanwhile kept, ids read back from the store,
    /// and one trail event for the whole import.
    #[test]
    fn test_bulk_import_reaches_the_running_index_with_revocations_kept() {
        let dir = tempfile::tempdir().unwrap();
        let serving = ContactStore::open(dir.path()).unwrap();
        let importer = ContactStore::open_unindexed(dir.path()).unwrap();
        let at: Timestamp = "2026-01-05T10:00:00Z".parse().unwrap();
        let number = |i: usize| format!("+39333{i:07}");
        let rows = MERGE_AT_ONCE + 500;
        let outcome = importer
            .bulk_import("cli:test", "consents.imported", at, |bulk| {
                for i in 0..rows {
                    let mut c = consent(&number(i));
                    c.consent_id = format!("c-{i}");
                    bulk.consent(NumberKey::from_e164(&number(i)).unwrap(), c)?;
                    if i % 2 == 0 {
                        let s = Suppression {
                            suppression_id: format!("s-{i}"),
                            controller: String::new(),
                            campaign_id: String::new(),
                            number: number(i),
                            reason: "asked".into(),
                            source: "crm".into(),
                            added_by: "cli:test".into(),
                            created_at: at,
                            expires_at: None,
                        };
                        bulk.suppression(NumberKey::from_e164(&number(i)).unwrap(), s)?;
                    }
                }
                Ok(Some(((), serde_json::json!({"file": "x.csv"}))))
            })
            .unwrap()
            .unwrap();
        assert_eq!(outcome.1.stored as usize, rows + rows / 2);
        let key = |i: usize| NumberKey::from_e164(&number(i)).unwrap();
        assert!(serving.view(key(7), &number(7)).consents.is_empty());
        // Revoked by the serving process before it has loaded the import.
        let revoked_at: Timestamp = "2026-02-01T00:00:00Z".parse().unwrap();
        serving
            .revoke_consents(key(7), &number(7), "acme", None, revoked_at, "test")
            .unwrap();
        // The withdrawal also stands for the three purposes no stored
        // consent carried (a marker each, read back by the scan too).
        assert_eq!(serving.refresh().unwrap(), rows + rows / 2 + 3);
        let view = serving.view(key(7), &number(7));
        let consents: Vec<_> = view
            .consents
            .iter()
            .filter(|c| !c.consent_id.starts_with("withdrawal-"))
            .collect();
        assert_eq!(consents.len(), 1);
        assert_eq!(consents[0].consent_id, "c-7");
        assert_eq!(consents[0].revoked_at, Some(revoked_at));
        assert_eq!(view.consents.len(), 4);
        assert!(view.consents.iter().all(|c| !c.valid_at(revoked_at)));
        let view = serving.view(key(8), &number(8));
        assert_eq!(view.suppressions.len(), 1);
        assert_eq!(view.suppressions[0].suppression_id, "s-8");
        assert_eq!(serving.refresh().unwrap(), 0, "nothing loaded twice");
        assert_eq!(serving.view(key(8), &number(8)).consents.len(), 1);
        // A record written by the serving process after the merge counts.
        let mut later = consent(&number(8));
        later.consent_id = "c-8-again".into();
        serving.record_consent(key(8), later, "test").unwrap();
        assert_eq!(serving.view(key(8), &number(8)).consents.len(), 2);
        // One trail event for the import, shown in the subject's records.
        let trail = serving.trail().unwrap();
        assert_eq!(
            trail
                .iter()
                .filter(|e| e.action == "consents.imported")
                .count(),
            1
        );
        let records = serving.subject_records(key(8), &number(8), "").unwrap();
        assert!(
            records
                .trail
                .iter()
                .any(|e| e.action == "consents.imported")
        );
        // A fresh start reads the same.
        drop(serving);
        let reopened = ContactStore::open(dir.path()).unwrap();
        let view = reopened.view(key(7), &number(7));
        assert_eq!(view.consents[0].revoked_at, Some(revoked_at));
        assert_eq!(reopened.view(key(8), &number(8)).suppressions.len(), 1);
    }

    /// SQLite reuses the rowid of a deleted highest row: after an erasure
    /// of the newest consent, a consent another process imports gets that
    /// rowid, and the scan mark must not skip it.
    #[test]
    fn test_a_reused_rowid_after_an_erasure_is_still_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let serving = ContactStore::open(dir.path()).unwrap();
        let first = "+390212345678";
        let second = "+390212345679";
        let key = |n: &str| NumberKey::from_e164(n).unwrap();
        let now: Timestamp = "2026-11-25T10:00:00Z".parse().unwrap();
        let importer = ContactStore::open_unindexed(dir.path()).unwrap();
        importer
            .bulk_import("cli:test", "consents.imported", now, |bulk| {
                bulk.consent(key(first), consent(first))?;
                Ok(Some(((), serde_json::json!({}))))
            })
            .unwrap();
        assert_eq!(serving.refresh().unwrap(), 1);
        serving
            .erase(key(first), first, "", "test", now, &serde_json::Value::Null)
            .unwrap();
        importer
            .bulk_import("cli:test", "suppressions.imported", now, |bulk| {
                let s = Suppression {
                    suppression_id: "s-1".into(),
                    controller: String::new(),
                    campaign_id: String::new(),
                    number: second.into(),
                    reason: "asked".into(),
                    source: "crm".into(),
                    added_by: "cli:test".into(),
                    created_at: now,
                    expires_at: None,
                };
                let mut c = consent(second);
                c.consent_id = "c-2".into();
                bulk.consent(key(second), c)?;
                bulk.suppression(key(second), s)?;
                Ok(Some(((), serde_json::json!({}))))
            })
            .unwrap();
        serving.refresh().unwrap();
        let view = serving.view(key(second), second);
        assert_eq!(view.consents.len(), 1, "the consent in the reused row");
        assert_eq!(view.consents[0].consent_id, "c-2");
        assert_eq!(view.suppressions.len(), 1);
    }

    /// A change that reads before it writes (an erasure) while another
    /// process holds the write lock (an import's move): it used to fail
    /// at once when the other committed (its read was then stale, and a
    /// deferred transaction cannot wait); it now waits for the lock first.
    #[test]
    fn test_an_erasure_waits_for_another_writer_instead_of_failing() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContactStore::open(dir.path()).unwrap();
        let number = "+390212345678";
        let key = NumberKey::from_e164(number).unwrap();
        let now: Timestamp = "2026-11-25T10:00:00Z".parse().unwrap();
        store.record_consent(key, consent(number), "test").unwrap();
        let other = Connection::open(database_path(dir.path())).unwrap();
        other
            .execute_batch("BEGIN IMMEDIATE; INSERT INTO counters VALUES ('other', 1);")
            .unwrap();
        let holder = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            other.execute_batch("COMMIT").unwrap();
        });
        let erased = store.erase(key, number, "", "test", now, &serde_json::Value::Null);
        holder.join().unwrap();
        erased.unwrap();
        assert!(store.view(key, number).consents.is_empty());
    }

    /// A rowid at the end of SQLite's range (a row inserted outside
    /// dialgate) made the scan's count of rows overflow: the load must
    /// refuse the store with an error, not panic (nor reserve nothing and
    /// write past it).
    #[test]
    fn test_a_rowid_at_the_end_of_the_range_stops_the_load_with_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let at: Timestamp = "2026-01-05T10:00:00Z".parse().unwrap();
        let number = |i: usize| format!("+39333{i:07}");
        let key = |i: usize| NumberKey::from_e164(&number(i)).unwrap();
        {
            let store = ContactStore::open(dir.path()).unwrap();
            for i in 0..PARALLEL_SCAN as usize {
                store
                    .record_consent(key(i), consent(&number(i)), "test")
                    .unwrap();
            }
            let relationship = Relationship {
                relationship_id: "r-1".into(),
                controller: "acme".into(),
                number: number(1),
                kind: RelationshipKind::Customer,
                started_at: at,
                ended_at: None,
                recorded_at: at,
            };
            store
                .record_relationship(key(1), relationship, "test")
                .unwrap();
        }
        let conn = Connection::open(database_path(dir.path())).unwrap();
        conn.execute(
            "INSERT INTO consents (rowid, consent_id, controller, number, number_key, purpose, granted_at_us,
                 source, method, notice_version, evidence_ref, recorded_at_us)
             SELECT 9223372036854775807, 'last', controller, number, number_key, purpose, granted_at_us,
                 source, method, notice_version, evidence_ref, recorded_at_us FROM consents LIMIT 1",
            [],
        )
        .unwrap();
        drop(conn);
        let opened = std::panic::catch_unwind(|| ContactStore::open(dir.path()));
        let Err(err) = opened.expect("no panic") else {
            panic!("the store is refused");
        };
        assert!(err.to_string().contains("rowid"), "{err}");
    }

    /// Many rows are loaded on two threads (the opt-outs and the last
    /// consents on the second) straight into one vector, in three regions
    /// (the relationships' last): every record is indexed once, under its
    /// own names, and an erased subject's opt-out kept by hash too. The
    /// erasures leave rows missing in each region (their slots move down).
    #[test]
    fn test_a_load_on_two_threads_indexes_every_record() {
        let dir = tempfile::tempdir().unwrap();
        let at: Timestamp = "2026-01-05T10:00:00Z".parse().unwrap();
        let number = |i: usize| format!("+39333{i:07}");
        let key = |i: usize| NumberKey::from_e164(&number(i)).unwrap();
        let (consents, opt_outs) = (192, 128);
        assert!(consents + opt_outs > PARALLEL_SCAN as usize);
        let importer = ContactStore::open_unindexed(dir.path()).unwrap();
        importer
            .bulk_import("cli:test", "consents.imported", at, |bulk| {
                for i in 0..consents {
                    let mut c = consent(&number(i));
                    c.consent_id = format!("c-{i}");
                    c.controller = ["acme", "bravo", "charlie"][i % 3].into();
                    c.supplier = ["", "", "leads-ltd"][i % 3].into();
                    bulk.consent(key(i), c)?;
                }
                for i in 0..opt_outs {
                    bulk.suppression(
                        key(i * 2),
                        Suppression {
                            suppression_id: format!("s-{i}"),
                            controller: ["", "acme"][i % 2].into(),
                            campaign_id: ["", "", "", "spring"][i % 4].into(),
                            number: number(i * 2),
                            reason: "asked".into(),
                            source: "crm".into(),
                            added_by: "cli:test".into(),
                            created_at: at,
                            expires_at: None,
                        },
                    )?;
                }
                Ok(Some(((), serde_json::json!({}))))
            })
            .unwrap();
        let relationships = 24;
        for i in 0..relationships {
            let relationship = Relationship {
                relationship_id: format!("r-{i}"),
                controller: "acme".into(),
                number: number(i * 3),
                kind: [RelationshipKind::Customer, RelationshipKind::Inquiry][i % 2],
                started_at: at,
                ended_at: None,
                recorded_at: at,
            };
            importer
                .record_relationship(key(i * 3), relationship, "test")
                .unwrap();
        }
        // A consent, an opt-out and a relationship missing from each
        // region: lower consents (up to row 160 here), opt-outs and upper
        // consents, relationships (the numbers 0, 3 and 171).
        let erased_numbers = [0, 3, 171];
        for i in erased_numbers {
            importer
                .erase(key(i), &number(i), "", "test", at, &serde_json::Value::Null)
                .unwrap();
        }
        let loaded = ContactStore::open(dir.path()).unwrap();
        for i in (1..consents).filter(|i| !erased_numbers.contains(i)) {
            let view = loaded.view(key(i), &number(i));
            assert_eq!(view.consents.len(), 1, "{i}");
            let related = i % 3 == 0 && i / 3 < relationships;
            assert_eq!(view.relationships.len(), usize::from(related), "{i}");
            if related {
                let r = &view.relationships[0];
                assert_eq!(r.relationship_id, format!("r-{}", i / 3));
                assert_eq!(
                    r.kind,
                    [RelationshipKind::Customer, RelationshipKind::Inquiry][(i / 3) % 2]
                );
            }
            assert_eq!(view.consents[0].consent_id, format!("c-{i}"));
            assert_eq!(
                view.consents[0].controller,
                ["acme", "bravo", "charlie"][i % 3]
            );
            assert_eq!(view.consents[0].supplier, ["", "", "leads-ltd"][i % 3]);
            let opted_out = i % 2 == 0 && i / 2 < opt_outs;
            assert_eq!(view.suppressions.len(), usize::from(opted_out), "{i}");
            if opted_out {
                let s = &view.suppressions[0];
                assert_eq!(s.suppression_id, format!("s-{}", i / 2));
                assert_eq!(s.controller, ["", "acme"][(i / 2) % 2]);
                assert_eq!(s.campaign_id, ["", "", "", "spring"][(i / 2) % 4]);
            }
        }
        let erased = loaded.view(key(0), &number(0));
        assert!(erased.consents.is_empty());
        // The imported opt-out kept by hash, and the erasure's own.
        let mut ids: Vec<&str> = erased
            .suppressions
            .iter()
            .map(|s| s.suppression_id.as_str())
            .collect();
        ids.sort_unstable();
        assert_eq!(ids.len(), 2);
        assert_eq!(ids[1], "s-0");
        assert!(
            erased
                .suppressions
                .iter()
                .any(|s| s.reason.contains("erasure"))
        );
        assert_eq!(loaded.refresh().unwrap(), 0, "nothing loaded twice");
    }

    /// A refresh that failed after reading new rows moved its scan mark
    /// past them: an imported opt-out was never loaded (until a restart).
    #[test]
    fn test_a_failed_refresh_loses_no_imported_opt_out() {
        let dir = tempfile::tempdir().unwrap();
        let serving = ContactStore::open(dir.path()).unwrap();
        let importer = ContactStore::open_unindexed(dir.path()).unwrap();
        let number = "+390212345678";
        let key = NumberKey::from_e164(number).unwrap();
        let now: Timestamp = "2026-11-25T10:00:00Z".parse().unwrap();
        importer
            .bulk_import("cli:test", "suppressions.imported", now, |bulk| {
                bulk.suppression(
                    key,
                    Suppression {
                        suppression_id: "s-1".into(),
                        controller: String::new(),
                        campaign_id: String::new(),
                        number: number.into(),
                        reason: "asked".into(),
                        source: "crm".into(),
                        added_by: "cli:test".into(),
                        created_at: now,
                        expires_at: None,
                    },
                )?;
                Ok(Some(((), serde_json::json!({}))))
            })
            .unwrap();
        let conn = Connection::open(database_path(dir.path())).unwrap();
        let bump = "INSERT INTO counters (key, value) VALUES ('observations_version', 1)
                    ON CONFLICT (key) DO UPDATE SET value = value + 1";
        conn.execute_batch(&format!(
            "INSERT INTO observations VALUES ('r', 'acme', 1, 9223372036854775807); {bump};"
        ))
        .unwrap();
        assert!(serving.refresh().is_err(), "the corrupt answer is an error");
        conn.execute_batch(&format!("DELETE FROM observations; {bump};"))
            .unwrap();
        serving.refresh().unwrap();
        assert_eq!(serving.view(key, number).suppressions.len(), 1);
    }

    /// A refresh that reads many rows merges them into a new base, which
    /// takes seconds at tens of millions of records: the opt-outs it read
    /// were seen by no lookup until the merge ended (found by review).
    #[test]
    fn test_opt_outs_of_a_large_refresh_are_seen_while_it_merges() {
        let dir = tempfile::tempdir().unwrap();
        let serving = ContactStore::open(dir.path()).unwrap();
        let importer = ContactStore::open_unindexed(dir.path()).unwrap();
        let now: Timestamp = "2026-11-25T10:00:00Z".parse().unwrap();
        let numbers: Vec<String> = (0..=MERGE_AT_ONCE)
            .map(|i| format!("+3902{:08}", 10_000_000 + i))
            .collect();
        importer
            .bulk_import("cli:test", "suppressions.imported", now, |bulk| {
                for (i, number) in numbers.iter().enumerate() {
                    bulk.suppression(
                        NumberKey::from_e164(number).unwrap(),
                        opt_out(&format!("s-{i}"), number),
                    )?;
                }
                Ok(Some(((), serde_json::json!({}))))
            })
            .unwrap();
        let probe = [numbers[0].clone(), numbers[MERGE_AT_ONCE].clone()];
        let seen = std::rc::Rc::new(std::cell::Cell::new(0));
        let counted = std::rc::Rc::clone(&seen);
        BEFORE_MERGE.with(|hook| {
            *hook.borrow_mut() = Some(Box::new(move |store: &ContactStore| {
                for number in &probe {
                    let key = NumberKey::from_e164(number).unwrap();
                    assert_eq!(store.view(key, number).suppressions.len(), 1, "{number}");
                }
                counted.set(counted.get() + 1);
            }));
        });
        let loaded = serving.refresh();
        BEFORE_MERGE.with(|hook| hook.borrow_mut().take());
        assert_eq!(loaded.unwrap(), MERGE_AT_ONCE + 1);
        assert_eq!(seen.get(), 1, "the merge ran");
        for number in [&numbers[0], &numbers[5_000]] {
            let key = NumberKey::from_e164(number).unwrap();
            assert_eq!(
                serving.view(key, number).suppressions.len(),
                1,
                "once, after the merge"
            );
        }
        assert_eq!(
            serving.index().records.sizes().1,
            0,
            "no pending change left to merge again"
        );
    }

    /// A bulk import held the store's write lock while it read its whole
    /// file: the server's opt-outs failed (busy) meanwhile.
    #[test]
    fn test_opt_outs_are_stored_while_a_bulk_import_reads_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let serving = ContactStore::open(dir.path()).unwrap();
        let importer = ContactStore::open_unindexed(dir.path()).unwrap();
        let (started, wait) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        std::thread::scope(|scope| {
            scope.spawn(move || {
                importer
                    .bulk_import("cli:test", "consents.imported", Timestamp::now(), |bulk| {
                        let number = "+390212345670";
                        bulk.consent(NumberKey::from_e164(number).unwrap(), consent(number))?;
                        bulk.flush()?;
                        started.send(()).unwrap();
                        released.recv().unwrap();
                        Ok(Some(((), serde_json::json!({}))))
                    })
                    .unwrap();
            });
            wait.recv().unwrap();
            let number = "+390212345678";
            let at = std::time::Instant::now();
            let stored = serving.add_suppression(
                NumberKey::from_e164(number).unwrap(),
                Suppression {
                    suppression_id: "s-1".into(),
                    controller: String::new(),
                    campaign_id: String::new(),
                    number: number.into(),
                    reason: "asked".into(),
                    source: "phone".into(),
                    added_by: "test".into(),
                    created_at: Timestamp::now(),
                    expires_at: None,
                },
            );
            release.send(()).unwrap();
            assert!(stored.is_ok(), "{stored:?}");
            assert!(at.elapsed() < std::time::Duration::from_secs(4));
        });
        serving.refresh().unwrap();
        assert_eq!(
            serving
                .view(
                    NumberKey::from_e164("+390212345670").unwrap(),
                    "+390212345670"
                )
                .consents
                .len(),
            1
        );
    }

    /// An import killed while staging left its staging file (the file's
    /// records, numbers included) in the data directory for good.
    #[test]
    fn test_an_interrupted_import_leaves_no_staging_file_behind() {
        let dir = tempfile::tempdir().unwrap();
        // Process ids above the kernel's limit (2^22) are never in use.
        let abandoned = dir.path().join("contacts-import-4194999.db");
        let running = dir
            .path()
            .join(format!("contacts-import-{}.db", std::process::id()));
        std::fs::write(&abandoned, b"records").unwrap();
        std::fs::write(&running, b"records").unwrap();
        ContactStore::open(dir.path()).unwrap();
        assert!(!abandoned.exists());
        assert!(running.exists(), "a running import's file stays");
    }

    /// An opt-out file that gave one suppression_id to two numbers stored
    /// one of them and counted the other "already present": that number
    /// stayed callable. Refused now, in the file and against the store.
    #[test]
    fn test_a_suppression_id_reused_for_another_number_is_refused() {
        // Staged and moved, then as a first load (offline, no consent
        // stored: one transaction).
        for offline in [false, true] {
            refuses_a_reused_suppression_id(offline);
        }
    }

    fn refuses_a_reused_suppression_id(offline: bool) {
        let dir = tempfile::tempdir().unwrap();
        let store = ContactStore::open(dir.path()).unwrap();
        if offline {
            store.move_offline();
        }
        let now: Timestamp = "2026-11-25T10:00:00Z".parse().unwrap();
        let opt_out = |number: &str| Suppression {
            suppression_id: "crm-1".into(),
            controller: String::new(),
            campaign_id: String::new(),
            number: number.into(),
            reason: "asked".into(),
            source: "crm".into(),
            added_by: "cli:test".into(),
            created_at: now,
            expires_at: None,
        };
        let import = |numbers: &[&str]| {
            store.bulk_import("cli:test", "suppressions.imported", now, |bulk| {
                for number in numbers {
                    bulk.suppression(NumberKey::from_e164(number).unwrap(), opt_out(number))?;
                }
                Ok(Some(((), serde_json::json!({}))))
            })
        };
        let err = import(&["+390212345678", "+390212345679"]).unwrap_err();
        assert!(
            err.to_string().contains("crm-1 (twice in the file)"),
            "{err}"
        );
        // With other opt-outs between: past the ids a staged import
        // remembers (4 in unit tests), every staged row is grouped.
        let err = store
            .bulk_import("cli:test", "suppressions.imported", now, |bulk| {
                let mut all = vec![opt_out("+390212345678")];
                for i in 0..5 {
                    let number = format!("+39021234560{i}");
                    all.push(Suppression {
                        suppression_id: format!("filler-{i}"),
                        ..opt_out(&number)
                    });
                }
                all.push(opt_out("+390212345679"));
                for s in all {
                    bulk.suppression(NumberKey::from_e164(&s.number).unwrap(), s)?;
                }
                Ok(Some(((), serde_json::json!({}))))
            })
            .unwrap_err();
        assert!(
            err.to_string().contains("crm-1 (twice in the file)"),
            "{err}"
        );
        // The same number twice under one id, for another controller or
        // another campaign: refused too.
        let number = "+390212345678";
        let key = NumberKey::from_e164(number).unwrap();
        for other in [
            Suppression {
                controller: "acme".into(),
                ..opt_out(number)
            },
            Suppression {
                campaign_id: "spring".into(),
                ..opt_out(number)
            },
            Suppression {
                expires_at: Some(now + jiff::SignedDuration::from_hours(24)),
                ..opt_out(number)
            },
        ] {
            let err = store
                .bulk_import("cli:test", "suppressions.imported", now, |bulk| {
                    bulk.suppression(key, opt_out(number))?;
                    bulk.suppression(key, other.clone())?;
                    Ok(Some(((), serde_json::json!({}))))
                })
                .unwrap_err();
            assert!(
                err.to_string().contains("crm-1 (twice in the file)"),
                "{err}"
            );
        }
        assert!(store.trail().unwrap().is_empty(), "nothing imported");
        let (_, counts) = import(&["+390212345678"]).unwrap().unwrap();
        assert_eq!(counts.stored, 1);
        let err = import(&["+390212345679"]).unwrap_err();
        assert!(
            err.to_string()
                .contains("already stored for another opt-out"),
            "{err}"
        );
        assert_eq!(store.trail().unwrap().len(), 1, "nothing more imported");
        let (_, counts) = import(&["+390212345678"]).unwrap().unwrap();
        assert_eq!(
            (counts.stored, counts.already_present),
            (0, 1),
            "a re-run is fine"
        );
        // Still fine once the subject is erased (the opt-out is then kept by hash).
        let key = NumberKey::from_e164("+390212345678").unwrap();
        store
            .erase(
                key,
                "+390212345678",
                "",
                "test",
                now,
                &serde_json::Value::Null,
            )
            .unwrap();
        assert!(import(&["+390212345678"]).unwrap().is_some());
        assert!(import(&["+390212345679"]).is_err());
        // An opt-out that expires: the same again expiring no later is
        // already present; one that outlasts it (later, or never) is not
        // the same (the stored one would lapse first), and is refused.
        let expiring = |days: Option<i64>| Suppression {
            suppression_id: "crm-2".into(),
            expires_at: days.map(|d| now + jiff::SignedDuration::from_hours(24 * d)),
            ..opt_out("+390212345670")
        };
        let import_one = |s: Suppression| {
            store.bulk_import("cli:test", "suppressions.imported", now, |bulk| {
                bulk.suppression(NumberKey::from_e164(&s.number).unwrap(), s.clone())?;
                Ok(Some(((), serde_json::json!({}))))
            })
        };
        let (_, counts) = import_one(expiring(Some(30))).unwrap().unwrap();
        assert_eq!(counts.stored, 1);
        for days in [Some(30), Some(10)] {
            let (_, counts) = import_one(expiring(days)).unwrap().unwrap();
            assert_eq!((counts.stored, counts.already_present), (0, 1), "{days:?}");
        }
        for days in [Some(60), None] {
            let err = import_one(expiring(days)).unwrap_err();
            assert!(
                err.to_string()
                    .contains("crm-2 (already stored for another opt-out"),
                "{days:?}: {err}"
            );
        }
        // An import the shared journal committed already (before the
        // journal checked expiries) is applied, never refused: the replica
        // would stop deciding for good. The stored opt-out stays as it is.
        let (_, counts) = store
            .bulk_import("cli:test", "suppressions.imported", now, |bulk| {
                bulk.applying_committed();
                let s = expiring(None);
                bulk.suppression(NumberKey::from_e164(&s.number).unwrap(), s)?;
                Ok(Some(((), serde_json::json!({}))))
            })
            .unwrap()
            .unwrap();
        assert_eq!((counts.stored, counts.already_present), (0, 1));
    }

    /// A consent file that gave one consent_id to two consents stored the
    /// first and counted the other "already present", whatever it said: a
    /// CRM that brought a consent's expiry forward (or a line derived to
    /// the same id with another expiry) left the longer one stored, and
    /// the number was called past the end the newer file gave. Refused
    /// now, in the file and against the store.
    #[test]
    fn test_a_consent_id_reused_for_another_consent_is_refused() {
        // Staged and moved, then as a first load (offline, no consent
        // stored: one transaction).
        for offline in [false, true] {
            refuses_a_reused_consent_id(offline);
        }
    }

    fn refuses_a_reused_consent_id(offline: bool) {
        let dir = tempfile::tempdir().unwrap();
        let store = ContactStore::open(dir.path()).unwrap();
        if offline {
            store.move_offline();
        }
        let now: Timestamp = "2026-11-25T10:00:00Z".parse().unwrap();
        let days = |d: i64| now + jiff::SignedDuration::from_hours(24 * d);
        let base = Consent {
            consent_id: "crm-1".into(),
            expires_at: Some(days(30)),
            ..consent("+390212345678")
        };
        let import = |consents: &[Consent]| {
            store.bulk_import("cli:test", "consents.imported", now, |bulk| {
                for c in consents {
                    bulk.consent(NumberKey::from_e164(&c.number).unwrap(), c.clone())?;
                }
                Ok(Some(((), serde_json::json!({}))))
            })
        };
        let others = [
            Consent {
                number: "+390212345679".into(),
                ..base.clone()
            },
            Consent {
                controller: "other".into(),
                ..base.clone()
            },
            Consent {
                purpose: Purpose::Marketing,
                ..base.clone()
            },
            Consent {
                granted_at: base.granted_at + jiff::SignedDuration::from_hours(1),
                ..base.clone()
            },
            Consent {
                supplier: "lists-r-us".into(),
                ..base.clone()
            },
            // A signed written agreement where the other is not one: the
            // US DNC reads it.
            Consent {
                method: " Written_Agreement".into(),
                ..base.clone()
            },
            Consent {
                expires_at: Some(days(60)),
                ..base.clone()
            },
            Consent {
                expires_at: None,
                ..base.clone()
            },
        ];
        // Other consents between the two copies: past the ids a staged
        // import remembers (4 in unit tests), every staged row is grouped.
        let fillers: Vec<Consent> = (0..5)
            .map(|i| Consent {
                consent_id: format!("filler-{i}"),
                ..consent(&format!("+39021234560{i}"))
            })
            .collect();
        for between in [&[][..], &fillers[..]] {
            for other in &others {
                let mut file = vec![base.clone()];
                file.extend_from_slice(between);
                file.push(other.clone());
                let err = import(&file).unwrap_err();
                assert!(
                    matches!(err, StoreError::ReusedConsentIds(_))
                        && err.to_string().contains("crm-1 (twice in the file)"),
                    "offline {offline}, {} between, {other:?}: {err}",
                    between.len()
                );
            }
        }
        assert!(store.trail().unwrap().is_empty(), "nothing imported");
        // The same consent twice, its evidence and a method that is no
        // written agreement either aside: one stored.
        let again = Consent {
            evidence_ref: "e-2".into(),
            method: "double_opt_in".into(),
            ..base.clone()
        };
        let (_, counts) = import(&[base.clone(), again]).unwrap().unwrap();
        assert_eq!((counts.stored, counts.already_present), (1, 1));
        // Against the store: a copy ending no earlier is already present
        // (the stored one grants less than it, never more); one ending
        // earlier, or that is another consent, is refused.
        for ends in [Some(days(30)), Some(days(60)), None] {
            let copy = Consent {
                expires_at: ends,
                ..base.clone()
            };
            let (_, counts) = import(&[copy]).unwrap().unwrap();
            assert_eq!((counts.stored, counts.already_present), (0, 1), "{ends:?}");
        }
        let earlier = Consent {
            expires_at: Some(days(10)),
            ..base.clone()
        };
        for other in others[..6].iter().chain([&earlier]) {
            let err = import(std::slice::from_ref(other)).unwrap_err();
            assert!(
                err.to_string()
                    .contains("crm-1 (already stored for another consent"),
                "offline {offline}, {other:?}: {err}"
            );
        }
        assert_eq!(store.trail().unwrap().len(), 4, "nothing more imported");
        let stored: Vec<(String, Option<i64>)> = Connection::open(database_path(dir.path()))
            .unwrap()
            .prepare("SELECT number, expires_at_us FROM consents")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(stored, [(base.number.clone(), Some(us(days(30))))]);
        // Withdrawn: a copy not revoked, or revoked at the same instant, is
        // already present; one revoked at another instant is another
        // withdrawal (it ends the consents granted before it), refused.
        let key = NumberKey::from_e164(&base.number).unwrap();
        let withdrawn = now - jiff::SignedDuration::from_hours(1);
        let ended = store
            .revoke_consents(
                key,
                &base.number,
                "acme",
                Some(base.purpose),
                withdrawn,
                "test",
            )
            .unwrap();
        assert_eq!(ended, 1);
        for revoked in [None, Some(withdrawn)] {
            let copy = Consent {
                revoked_at: revoked,
                ..base.clone()
            };
            let (_, counts) = import(&[copy]).unwrap().unwrap();
            assert_eq!(
                (counts.stored, counts.already_present),
                (0, 1),
                "{revoked:?}"
            );
        }
        for revoked in [withdrawn - jiff::SignedDuration::from_hours(1), now] {
            let copy = Consent {
                revoked_at: Some(revoked),
                ..base.clone()
            };
            let err = import(&[copy]).unwrap_err();
            assert!(
                err.to_string()
                    .contains("crm-1 (already stored for another consent"),
                "offline {offline}, revoked {revoked}: {err}"
            );
        }
        // An import the shared journal committed already (before the
        // journal checked consents) is applied, never refused: the replica
        // would stop deciding for good. The stored consent stays as it is.
        let (_, counts) = store
            .bulk_import("cli:test", "consents.imported", now, |bulk| {
                bulk.applying_committed();
                bulk.consent(
                    NumberKey::from_e164(&earlier.number).unwrap(),
                    earlier.clone(),
                )?;
                Ok(Some(((), serde_json::json!({}))))
            })
            .unwrap()
            .unwrap();
        assert_eq!((counts.stored, counts.already_present), (0, 1));
    }

    /// A first load sets the opt-outs' id index aside and tells the copies
    /// of an id itself: those it remembers as they come (up to
    /// `seen_ids::TRACKED`, 4 in unit tests), the others by SQLite before
    /// the index is built again. Either way the first copy of an opt-out
    /// is kept and the others counted as already present, a copy that is
    /// another opt-out refuses the whole load, and the index is back.
    #[test]
    fn test_a_first_load_keeps_one_copy_of_an_opt_out_and_refuses_another_either_way() {
        let now: Timestamp = "2026-11-25T10:00:00Z".parse().unwrap();
        let opt_out = |id: &str, number: &str, reason: &str| Suppression {
            reason: reason.into(),
            ..opt_out(id, number)
        };
        // Three opt-outs (remembered), then ten (past TRACKED: SQLite).
        for distinct in [3, 10] {
            let mut file: Vec<Suppression> = (0..distinct)
                .map(|i| opt_out(&format!("s-{i}"), &format!("+3902{i:08}"), "first"))
                .collect();
            file.push(opt_out("s-1", "+390200000001", "again"));
            file.push(opt_out("s-2", "+390200000002", "again"));
            let load = |file: &[Suppression]| {
                let dir = tempfile::tempdir().unwrap();
                let store = ContactStore::open(dir.path()).unwrap();
                store.move_offline();
                let outcome = store.bulk_import("cli:test", "suppressions.imported", now, |bulk| {
                    assert_eq!(bulk.suppression_order(), BatchOrder::AsRead);
                    for s in file {
                        bulk.suppression(NumberKey::from_e164(&s.number).unwrap(), s.clone())?;
                    }
                    Ok(Some(((), serde_json::json!({}))))
                });
                (dir, store, outcome)
            };
            // Without the copies: nothing to tell (past TRACKED, the id
            // index built at once).
            let (dir, _, outcome) = load(&file[..distinct]);
            let (_, counts) = outcome.unwrap().unwrap();
            assert_eq!(
                (counts.stored, counts.already_present),
                (distinct as u64, 0)
            );
            assert_eq!(number_indexes(dir.path()), NUMBER_INDEXES);
            let by_id: i64 = Connection::open(database_path(dir.path()))
                .unwrap()
                .query_row(
                    "SELECT COUNT(*) FROM sqlite_master WHERE name = 'suppressions_by_id'",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(by_id, 1);
            let (dir, store, outcome) = load(&file);
            let (_, counts) = outcome.unwrap().unwrap();
            assert_eq!(
                (counts.stored, counts.already_present),
                (distinct as u64, 2),
                "{distinct}"
            );
            let conn = Connection::open(database_path(dir.path())).unwrap();
            let kept: Vec<(String, String)> = conn
                .prepare("SELECT suppression_id, reason FROM suppressions ORDER BY rowid")
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(kept.len(), distinct);
            assert!(kept.iter().all(|(_, reason)| reason == "first"), "{kept:?}");
            let err = conn
                .execute_batch("INSERT INTO suppressions SELECT * FROM suppressions WHERE suppression_id = 's-0'")
                .unwrap_err();
            assert!(
                err.to_string().contains("UNIQUE"),
                "the id index is back: {err}"
            );
            assert_eq!(number_indexes(dir.path()), NUMBER_INDEXES);
            let held = store
                .subject_records(
                    NumberKey::from_e164("+390200000002").unwrap(),
                    "+390200000002",
                    "",
                )
                .unwrap();
            assert_eq!(held.suppressions.len(), 1);
            // A copy for another number, another controller or campaign.
            for other in [
                opt_out("s-1", "+390299999999", "again"),
                Suppression {
                    controller: "acme".into(),
                    ..opt_out("s-1", "+390200000001", "again")
                },
                Suppression {
                    campaign_id: "spring".into(),
                    ..opt_out("s-1", "+390200000001", "again")
                },
                Suppression {
                    expires_at: Some(now + jiff::SignedDuration::from_hours(24)),
                    ..opt_out("s-1", "+390200000001", "again")
                },
            ] {
                let mut file = file.clone();
                file.push(other);
                let (dir, store, outcome) = load(&file);
                let err = outcome.unwrap_err();
                assert!(
                    err.to_string().contains("s-1 (twice in the file)"),
                    "{distinct}: {err}"
                );
                assert!(store.trail().unwrap().is_empty(), "nothing imported");
                let conn = Connection::open(database_path(dir.path())).unwrap();
                let rows: i64 = conn
                    .query_row("SELECT COUNT(*) FROM suppressions", [], |r| r.get(0))
                    .unwrap();
                assert_eq!(rows, 0);
                assert_eq!(number_indexes(dir.path()), NUMBER_INDEXES);
            }
        }
    }

    /// An opt-out table keyed by its id (a store created before
    /// `suppressions_by_id`) gets the current layout at a first load when
    /// it is empty, and keeps its own when it holds a row: the load then
    /// inserts with the key in place, and still refuses a reused id.
    #[test]
    fn test_a_first_load_rekeys_an_empty_opt_out_table_and_keeps_a_full_one() {
        let now: Timestamp = "2026-11-25T10:00:00Z".parse().unwrap();
        const OLD_LAYOUT: &str = "DROP TABLE suppressions;
            CREATE TABLE suppressions (
                suppression_id TEXT PRIMARY KEY, controller TEXT NOT NULL,
                campaign_id TEXT NOT NULL, number TEXT NOT NULL, number_key INTEGER,
                number_hash BLOB, reason TEXT NOT NULL, source TEXT NOT NULL,
                added_by TEXT NOT NULL, created_at_us INTEGER NOT NULL,
                expires_at_us INTEGER, import_seq INTEGER) STRICT;
            CREATE INDEX suppressions_by_number ON suppressions (number_key);";
        let keyed = |dir: &Path| -> bool {
            let conn = Connection::open(database_path(dir)).unwrap();
            !ids_indexed_apart(&conn, "suppressions").unwrap()
        };
        for full in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            drop(ContactStore::open(dir.path()).unwrap());
            let conn = Connection::open(database_path(dir.path())).unwrap();
            conn.execute_batch(OLD_LAYOUT).unwrap();
            if full {
                conn.execute_batch(
                    "INSERT INTO suppressions (suppression_id, controller, campaign_id, number,
                         number_key, reason, source, added_by, created_at_us)
                     VALUES ('old', '', '', '+390211111111', 1, '', 'crm', 'cli:test', 0)",
                )
                .unwrap();
            }
            drop(conn);
            let store = ContactStore::open(dir.path()).unwrap();
            assert!(keyed(dir.path()));
            store.move_offline();
            // Into an empty table as read, else by id (the key in place).
            let import = |id: &str, number: &str, order: BatchOrder| {
                store.bulk_import("cli:test", "suppressions.imported", now, |bulk| {
                    assert_eq!(bulk.suppression_order(), order);
                    let s = opt_out(id, number);
                    bulk.suppression(NumberKey::from_e164(number).unwrap(), s.clone())?;
                    bulk.suppression(NumberKey::from_e164(number).unwrap(), s)?;
                    Ok(Some(((), serde_json::json!({}))))
                })
            };
            let first = if full {
                BatchOrder::ById
            } else {
                BatchOrder::AsRead
            };
            let (_, counts) = import("new", "+390222222222", first).unwrap().unwrap();
            assert_eq!((counts.stored, counts.already_present), (1, 1));
            assert_eq!(keyed(dir.path()), full, "full: {full}");
            let err = import("new", "+390233333333", BatchOrder::ById).unwrap_err();
            assert!(
                err.to_string()
                    .contains("new (already stored for another opt-out:"),
                "{err}"
            );
            if full {
                let err = import("old", "+390233333333", BatchOrder::ById).unwrap_err();
                assert!(err.to_string().contains("old (already stored"), "{err}");
            }
        }
    }

    /// The subject salt was replaced when unreadable and written with
    /// `INSERT OR REPLACE` by whoever opened a new store: two processes could
    /// each keep their own, and a wrong-length salt was silently replaced
    /// (erased subjects' opt-outs then no longer matched their numbers).
    #[test]
    fn test_one_subject_salt_per_store_and_a_bad_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let first = ContactStore::open_unindexed(dir.path()).unwrap();
        let second = ContactStore::open_unindexed(dir.path()).unwrap();
        assert_eq!(
            first.index().subject_hash("+390212345678"),
            second.index().subject_hash("+390212345678")
        );
        let conn = Connection::open(database_path(dir.path())).unwrap();
        conn.execute(
            "UPDATE meta SET value = x'00' WHERE key = 'subject_salt'",
            [],
        )
        .unwrap();
        let err = ContactStore::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("subject_salt"), "{err}");
    }

    /// A failed bulk import stores nothing, not even its trail event.
    #[test]
    fn test_abandoned_bulk_import_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContactStore::open(dir.path()).unwrap();
        let number = "+390212345678";
        let outcome = store
            .bulk_import::<()>("cli:test", "consents.imported", Timestamp::now(), |bulk| {
                bulk.consent(NumberKey::from_e164(number).unwrap(), consent(number))?;
                Ok(None)
            })
            .unwrap();
        assert!(outcome.is_none());
        assert!(store.trail().unwrap().is_empty());
        assert!(
            store
                .view(NumberKey::from_e164(number).unwrap(), number)
                .consents
                .is_empty()
        );
    }

    /// Issue 13: after an erasure the change trail kept the consent's
    /// evidence (source, method, evidence reference) under the subject's hash.
    #[test]
    fn test_erasure_removes_the_consent_evidence_from_the_trail() {
        let dir = tempfile::tempdir().unwrap();
        let number = "+390212345678";
        let key = NumberKey::from_e164(number).unwrap();
        let store = ContactStore::open(dir.path()).unwrap();
        let mut evidence = consent(number);
        evidence.evidence_ref = "recording-4711".into();
        store.record_consent(key, evidence, "test").unwrap();
        let mut other = consent("+390212345679");
        other.consent_id = "c-2".into();
        other.evidence_ref = "recording-other".into();
        store
            .record_consent(
                NumberKey::from_e164("+390212345679").unwrap(),
                other,
                "test",
            )
            .unwrap();
        let now: Timestamp = "2026-11-25T10:00:00Z".parse().unwrap();
        assert_eq!(
            store
                .erase(key, number, "", "test", now, &serde_json::Value::Null)
                .unwrap(),
            1
        );
        let trail = serde_json::to_string(&store.trail().unwrap()).unwrap();
        assert!(!trail.contains("recording-4711"), "{trail}");
        assert!(
            trail.contains("recording-other"),
            "other subjects untouched"
        );
        assert!(trail.contains("consent.recorded") && trail.contains("subject.erased"));
    }

    /// The names of the number indexes the store holds.
    fn number_indexes(dir: &Path) -> Vec<String> {
        let conn = Connection::open(database_path(dir)).unwrap();
        let mut statement = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE '%_by_number' ORDER BY name")
            .unwrap();
        statement
            .query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    const NUMBER_INDEXES: [&str; 3] = [
        "consents_by_number",
        "relationships_by_number",
        "suppressions_by_number",
    ];

    fn opt_out(id: &str, number: &str) -> Suppression {
        Suppression {
            suppression_id: id.into(),
            controller: String::new(),
            campaign_id: String::new(),
            number: number.into(),
            reason: "asked".into(),
            source: "crm".into(),
            added_by: "cli:test".into(),
            created_at: "2026-11-25T10:00:00Z".parse().unwrap(),
            expires_at: None,
        }
    }

    /// Two imports on one store from two processes (two `ContactStore`s
    /// here) run one after the other. Checked side by side, both passed
    /// with one opt-out id for two numbers, and the second to move in was
    /// left out without a word (its number called); now the second waits
    /// for the first, then is refused.
    #[test]
    fn test_two_imports_on_one_store_run_one_after_the_other() {
        let dir = tempfile::tempdir().unwrap();
        let first = ContactStore::open(dir.path()).unwrap();
        let second = ContactStore::open(dir.path()).unwrap();
        let now: Timestamp = "2026-11-25T10:00:00Z".parse().unwrap();
        let import = |store: &ContactStore, number: &str| {
            store.bulk_import("cli:test", "suppressions.imported", now, |bulk| {
                bulk.suppression(
                    NumberKey::from_e164(number).unwrap(),
                    opt_out("crm-1", number),
                )?;
                Ok(Some(((), serde_json::json!({}))))
            })
        };
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            let mut other = None;
            let (_, counts) = first
                .bulk_import("cli:test", "suppressions.imported", now, |bulk| {
                    other = Some(scope.spawn(|| {
                        let imported = import(&second, "+390212345679");
                        done.store(true, std::sync::atomic::Ordering::SeqCst);
                        imported
                    }));
                    std::thread::sleep(std::time::Duration::from_millis(500));
                    assert!(
                        !done.load(std::sync::atomic::Ordering::SeqCst),
                        "the second import waits for the first"
                    );
                    let number = "+390212345678";
                    bulk.suppression(
                        NumberKey::from_e164(number).unwrap(),
                        opt_out("crm-1", number),
                    )?;
                    Ok(Some(((), serde_json::json!({}))))
                })
                .unwrap()
                .unwrap();
            assert_eq!(counts.stored, 1);
            let err = other.unwrap().join().unwrap().unwrap_err();
            assert!(
                err.to_string()
                    .contains("crm-1 (already stored for another opt-out"),
                "{err}"
            );
        });
    }

    /// Imports consents `c-<i>` and opt-outs `s-<i>` for the given numbers.
    fn import_numbers(store: &ContactStore, numbers: &[&str]) -> Result<BulkCounts, StoreError> {
        let now: Timestamp = "2026-11-25T10:00:00Z".parse().unwrap();
        let outcome = store.bulk_import("cli:test", "contacts.imported", now, |bulk| {
            for (i, number) in numbers.iter().enumerate() {
                let key = NumberKey::from_e164(number).unwrap();
                let mut c = consent(number);
                c.consent_id = format!("c-{number}-{i}");
                bulk.consent(key, c)?;
                bulk.suppression(key, opt_out(&format!("s-{number}-{i}"), number))?;
            }
            Ok(Some(((), serde_json::json!({}))))
        })?;
        Ok(outcome.expect("filled").1)
    }

    /// Records, for every consent and opt-out inserted, whether its
    /// table's number index was there at that moment.
    fn watch_number_indexes(dir: &Path) {
        Connection::open(database_path(dir))
            .unwrap()
            .execute_batch(
                "CREATE TABLE seen (tbl TEXT, indexed INTEGER);
                 CREATE TRIGGER seen_consents AFTER INSERT ON consents BEGIN
                   INSERT INTO seen SELECT 'consents', COUNT(*) FROM sqlite_master WHERE name = 'consents_by_number';
                 END;
                 CREATE TRIGGER seen_suppressions AFTER INSERT ON suppressions BEGIN
                   INSERT INTO seen SELECT 'suppressions', COUNT(*) FROM sqlite_master WHERE name = 'suppressions_by_number';
                 END;",
            )
            .unwrap();
    }

    /// (table, index present) for each insert seen since the last call.
    fn seen(dir: &Path) -> Vec<(String, bool)> {
        let conn = Connection::open(database_path(dir)).unwrap();
        let mut statement = conn
            .prepare("SELECT tbl, indexed FROM seen ORDER BY rowid")
            .unwrap();
        let rows = statement
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? == 1))
            })
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        conn.execute("DELETE FROM seen", []).unwrap();
        rows
    }

    /// An import asked to move offline into a store that already holds
    /// consents (not a first load), with no server beside it (it takes the
    /// data directory's serve lock), sets the number indexes of the tables
    /// it at least doubles aside while it moves and builds them again; the
    /// records are found by number as before, and the lock is released.
    #[test]
    fn test_an_offline_import_sets_the_number_indexes_aside_while_it_moves() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContactStore::open_unindexed(dir.path()).unwrap();
        watch_number_indexes(dir.path());
        import_numbers(&store, &["+390612345670"]).unwrap();
        assert!(seen(dir.path()).iter().all(|(_, indexed)| *indexed));
        store.move_offline();
        let numbers = ["+390212345678", "+390212345679", "+393331234567"];
        let counts = import_numbers(&store, &numbers).unwrap();
        assert_eq!(counts.stored, 6);
        assert_eq!(counts.indexes_rebuilt, 2);
        let during = seen(dir.path());
        assert_eq!(during.len(), 6);
        assert!(during.iter().all(|(_, indexed)| !indexed), "{during:?}");
        assert_eq!(number_indexes(dir.path()), NUMBER_INDEXES);
        let held = store
            .subject_records(NumberKey::from_e164(numbers[1]).unwrap(), numbers[1], "")
            .unwrap();
        assert_eq!(held.consents.len(), 1);
        assert_eq!(held.suppressions.len(), 1);
        assert!(
            crate::serve_lock::ServeLock::try_acquire(dir.path())
                .unwrap()
                .is_some()
        );
        // A smaller import into the larger store keeps the indexes.
        let counts = import_numbers(&store, &["+390612345678"]).unwrap();
        assert_eq!((counts.stored, counts.indexes_rebuilt), (2, 0));
        assert!(seen(dir.path()).iter().all(|(_, indexed)| *indexed));
        assert_eq!(number_indexes(dir.path()), NUMBER_INDEXES);
    }

    /// Without `move_offline` (a server's own imports, or the operator's
    /// default), or while a server holds the serve lock, the indexes stay
    /// in place throughout.
    #[test]
    fn test_an_import_keeps_the_number_indexes_unless_offline_and_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContactStore::open_unindexed(dir.path()).unwrap();
        watch_number_indexes(dir.path());
        let counts = import_numbers(&store, &["+390212345678"]).unwrap();
        assert_eq!((counts.stored, counts.indexes_rebuilt), (2, 0));
        let other = tempfile::tempdir().unwrap();
        let beside_a_server = ContactStore::open_unindexed(other.path()).unwrap();
        beside_a_server.move_offline();
        watch_number_indexes(other.path());
        let serving = crate::serve_lock::ServeLock::acquire(other.path()).unwrap();
        let counts = import_numbers(&beside_a_server, &["+390212345678", "+390212345679"]).unwrap();
        assert_eq!((counts.stored, counts.indexes_rebuilt), (4, 0));
        drop(serving);
        for dir in [dir.path(), other.path()] {
            let during = seen(dir);
            assert!(
                !during.is_empty() && during.iter().all(|(_, indexed)| *indexed),
                "{during:?}"
            );
            assert_eq!(number_indexes(dir), NUMBER_INDEXES);
        }
    }

    /// A move that fails (in either table) still leaves the index built
    /// again and the lock released; an index missing when the store is
    /// opened (as a kill between the drop and the rebuild leaves it; here
    /// dropped by hand) is built again.
    #[test]
    fn test_the_number_indexes_come_back_after_a_failed_move_or_when_missing_at_open() {
        for table in ["consents", "suppressions"] {
            let dir = tempfile::tempdir().unwrap();
            let store = ContactStore::open_unindexed(dir.path()).unwrap();
            // A consent stored first: not a first load, the records are
            // staged and the moves set the indexes aside.
            import_numbers(&store, &["+390612345678"]).unwrap();
            store.move_offline();
            watch_number_indexes(dir.path());
            Connection::open(database_path(dir.path()))
                .unwrap()
                .execute_batch(&format!(
                    "CREATE TRIGGER refuse BEFORE INSERT ON {table} WHEN NEW.number = '+393331234567'
                     BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;"
                ))
                .unwrap();
            let err = import_numbers(&store, &["+390212345678", "+393331234567"]).unwrap_err();
            assert!(
                err.to_string().contains("refused by the test"),
                "{table}: {err}"
            );
            if table == "suppressions" {
                // The consents were moved (and kept) with their index set
                // aside; the failed move's own inserts were undone.
                let during = seen(dir.path());
                assert!(
                    !during.is_empty()
                        && during
                            .iter()
                            .all(|(t, indexed)| t == "consents" && !indexed),
                    "{during:?}"
                );
            }
            assert_eq!(number_indexes(dir.path()), NUMBER_INDEXES, "{table}");
            assert!(
                crate::serve_lock::ServeLock::try_acquire(dir.path())
                    .unwrap()
                    .is_some(),
                "{table}: the lock is released"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        ContactStore::open_unindexed(dir.path()).unwrap();
        let conn = Connection::open(database_path(dir.path())).unwrap();
        conn.execute_batch(
            "DROP INDEX consents_by_number; DROP INDEX suppressions_by_number; DROP INDEX consents_by_id",
        )
        .unwrap();
        drop(conn);
        assert_eq!(number_indexes(dir.path()), ["relationships_by_number"]);
        ContactStore::open_unindexed(dir.path()).unwrap();
        assert_eq!(number_indexes(dir.path()), NUMBER_INDEXES);
        let conn = Connection::open(database_path(dir.path())).unwrap();
        let ids: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 'consents_by_id'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(ids, 1, "the id index back at open");
    }

    /// A first load inserts every consent with the id index set aside;
    /// before the index is built again, of two consents with one id the
    /// first inserted is kept, whether the copies are told by the ids the
    /// load remembered or, when it could not remember them, by SQLite. A
    /// copy that is another consent refuses the load either way: kept
    /// out, the first would grant what the file no longer says (before,
    /// it was kept out whatever it said, as it still is for an import the
    /// shared journal committed already).
    #[test]
    fn test_a_first_load_keeps_the_first_consent_of_each_id_either_way() {
        let load = |remembered: bool, file: &[Consent], checked: bool| {
            let conn = Connection::open_in_memory().unwrap();
            conn.execute_batch(SCHEMA).unwrap();
            index_ids(&conn).unwrap();
            conn.execute_batch("DROP INDEX consents_by_id").unwrap();
            let mut repeated = RepeatedIds::default();
            let mut counts = BulkCounts::default();
            let mut statement = conn.prepare(LOAD_CONSENT).unwrap();
            for c in file {
                let key = NumberKey::from_e164(&c.number).unwrap();
                let inserted = insert_consent(&mut statement, key, c, None).unwrap();
                counts.moved(1, inserted);
                if remembered {
                    repeated.inserted(&c.consent_id, conn.last_insert_rowid());
                } else {
                    // Rowids that skip: nothing can be told.
                    repeated.inserted(&c.consent_id, 2 * conn.last_insert_rowid());
                }
            }
            drop(statement);
            let loaded = index_unique_ids(&conn, &mut counts, repeated, checked);
            (conn, loaded.map(|sorted| (sorted, counts)))
        };
        // One number per id; the evidence differs from line to line (the
        // rules do not read it).
        let line = |i: usize, id: &str| {
            let mut c = consent(&format!("+3902000000{:02}", id.as_bytes()[0] - b'a'));
            c.consent_id = id.into();
            c.evidence_ref = format!("e-{i}");
            c
        };
        for remembered in [true, false] {
            let file: Vec<Consent> = ["a", "b", "a", "c", "b", "a"]
                .iter()
                .enumerate()
                .map(|(i, id)| line(i, id))
                .collect();
            let (conn, loaded) = load(remembered, &file, true);
            let (sorted, counts) = loaded.unwrap();
            assert_eq!(sorted, !remembered, "SQLite sorts only what was not told");
            assert_eq!((counts.stored, counts.already_present), (3, 3));
            let mut statement = conn
                .prepare("SELECT consent_id, number, evidence_ref FROM consents ORDER BY rowid")
                .unwrap();
            let kept: Vec<(String, String, String)> = statement
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let row = |id: &str, number: &str, evidence: &str| {
                (id.to_string(), number.to_string(), evidence.to_string())
            };
            assert_eq!(
                kept,
                [
                    row("a", "+390200000000", "e-0"),
                    row("b", "+390200000001", "e-1"),
                    row("c", "+390200000002", "e-3"),
                ],
                "remembered: {remembered}"
            );
            let err = conn
                .execute_batch("INSERT INTO consents SELECT * FROM consents WHERE consent_id = 'c'")
                .unwrap_err();
            assert!(err.to_string().contains("UNIQUE"), "{err}");
            // A copy of "a" that is another consent.
            let at = |days: i64| {
                Some(line(0, "a").granted_at + jiff::SignedDuration::from_hours(24 * days))
            };
            let others = [
                Consent {
                    number: "+390200000009".into(),
                    ..line(2, "a")
                },
                Consent {
                    controller: "other".into(),
                    ..line(2, "a")
                },
                Consent {
                    purpose: Purpose::Marketing,
                    ..line(2, "a")
                },
                Consent {
                    granted_at: at(1).unwrap(),
                    ..line(2, "a")
                },
                Consent {
                    supplier: "lists-r-us".into(),
                    ..line(2, "a")
                },
                Consent {
                    expires_at: at(30),
                    ..line(2, "a")
                },
                Consent {
                    revoked_at: at(2),
                    ..line(2, "a")
                },
            ];
            for other in others {
                let file = [line(0, "a"), line(1, "b"), other.clone()];
                let (_, loaded) = load(remembered, &file, true);
                let err = loaded.unwrap_err();
                assert!(
                    matches!(err, StoreError::ReusedConsentIds(_))
                        && err.to_string().contains("a (twice in the file)"),
                    "{other:?}: {err}"
                );
                // Committed by the shared journal already: kept out.
                let (_, loaded) = load(remembered, &file, false);
                let (_, counts) = loaded.unwrap();
                assert_eq!((counts.stored, counts.already_present), (2, 1));
            }
        }
    }

    /// A store whose id index is missing (dropped outside dialgate) and
    /// which holds an id twice does not open, and says why: consents and
    /// opt-outs alike.
    #[test]
    fn test_a_store_holding_an_id_twice_without_its_index_does_not_open() {
        for table in ["consents", "suppressions"] {
            let dir = tempfile::tempdir().unwrap();
            import_numbers(
                &ContactStore::open_unindexed(dir.path()).unwrap(),
                &["+390612345678"],
            )
            .unwrap();
            let conn = Connection::open(database_path(dir.path())).unwrap();
            conn.execute_batch(
                "INSERT INTO suppressions (suppression_id, controller, campaign_id, number, number_key,
                     reason, source, added_by, created_at_us)
                 VALUES ('s-1', '', '', '+390612345678', 1, '', 'test', 'cli:test', 0)",
            )
            .unwrap();
            conn.execute_batch(&format!(
                "DROP INDEX {table}_by_id; INSERT INTO {table} SELECT * FROM {table};"
            ))
            .unwrap();
            drop(conn);
            let err = ContactStore::open_unindexed(dir.path()).unwrap_err();
            assert!(
                err.to_string()
                    .contains("holds a consent or opt-out id twice"),
                "{table}: {err}"
            );
        }
    }

    /// A first load (offline, into `store` without consents) of one consent
    /// per id of `ids`, the i-th with the evidence `e-i`, for +3902
    /// followed in 8 digits by the index of its id's first line (a copy of
    /// an id is the same consent, its evidence aside); checks the order the
    /// store asks the batches in.
    fn first_load_of_ids(store: &ContactStore, ids: &[&str], order: BatchOrder) -> BulkCounts {
        store.move_offline();
        let now: Timestamp = "2026-11-25T10:00:00Z".parse().unwrap();
        let loaded = store.bulk_import("cli:test", "consents.imported", now, |bulk| {
            assert_eq!(bulk.consent_order(), order);
            for (i, id) in ids.iter().enumerate() {
                let first = ids.iter().position(|other| other == id).unwrap_or(i);
                let number = format!("+3902{first:08}");
                let mut c = consent(&number);
                c.consent_id = (*id).into();
                c.evidence_ref = format!("e-{i}");
                bulk.consent(NumberKey::from_e164(&number).unwrap(), c)?;
            }
            Ok(Some(((), serde_json::json!({}))))
        });
        loaded.unwrap().unwrap().1
    }

    /// A store created while consent ids were the table's primary key
    /// keeps that key (SQLite cannot set it aside) and gets no second
    /// unique index while its consents table holds a row; a first load
    /// into its empty table gives the table the current layout first.
    #[test]
    fn test_a_store_keyed_by_consent_id_keeps_its_key_until_emptied() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path()).unwrap();
        let old = SCHEMA.replacen("consent_id TEXT NOT NULL", "consent_id TEXT PRIMARY KEY", 1);
        let consents_indexes = |dir: &Path| -> Vec<String> {
            Connection::open(database_path(dir))
                .unwrap()
                .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'consents' ORDER BY name")
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        // Holding a consent: the key stays, re-runs still store nothing twice.
        let held = tempfile::tempdir().unwrap();
        Connection::open(database_path(held.path()))
            .unwrap()
            .execute_batch(&old)
            .unwrap();
        let store = ContactStore::open_unindexed(held.path()).unwrap();
        import_numbers(&store, &["+390612345678"]).unwrap();
        store.move_offline();
        let again = import_numbers(&store, &["+390612345678"]).unwrap();
        assert_eq!((again.stored, again.already_present), (0, 2));
        assert_eq!(
            consents_indexes(held.path()),
            ["consents_by_number", "sqlite_autoindex_consents_1"]
        );
        // Empty: its first load gives it the current layout.
        Connection::open(database_path(dir.path()))
            .unwrap()
            .execute_batch(&old)
            .unwrap();
        let store = ContactStore::open_unindexed(dir.path()).unwrap();
        assert_eq!(
            consents_indexes(dir.path()),
            ["consents_by_number", "sqlite_autoindex_consents_1"]
        );
        let counts = first_load_of_ids(&store, &["a", "b", "a"], BatchOrder::AsRead);
        assert_eq!(
            (counts.stored, counts.already_present, counts.ids_sorted),
            (2, 1, false)
        );
        assert_eq!(
            consents_indexes(dir.path()),
            ["consents_by_id", "consents_by_number"]
        );
        let conn = Connection::open(database_path(dir.path())).unwrap();
        let kept: String = conn
            .query_row(
                "SELECT evidence_ref FROM consents WHERE consent_id = 'a'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(kept, "e-0");
        // A new store gets the unique index instead, set aside by its first
        // load, whose copies of an id are found from the ids it remembered.
        let new = tempfile::tempdir().unwrap();
        let store = ContactStore::open_unindexed(new.path()).unwrap();
        let counts = first_load_of_ids(&store, &["a", "b", "a", "c", "b"], BatchOrder::AsRead);
        assert_eq!(
            (counts.stored, counts.already_present, counts.ids_sorted),
            (3, 2, false)
        );
        let conn = Connection::open(database_path(new.path())).unwrap();
        let kept: Vec<String> = conn
            .prepare("SELECT evidence_ref FROM consents ORDER BY consent_id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(kept, ["e-0", "e-1", "e-3"]);
        let unique: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM pragma_index_list('consents') WHERE name = 'consents_by_id' AND \"unique\"",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(unique, 1);
    }

    fn journal_mode(conn: &Connection) -> String {
        conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap()
    }

    /// A first load (offline, no consent stored yet) is one transaction:
    /// refused at any record, even after whole batches went in, it leaves
    /// nothing behind (no record, no trail event, the indexes in place,
    /// the lock released); accepted, its records carry its trail event,
    /// which holds the counts, and an id twice in the file is stored once.
    #[test]
    fn test_a_first_load_stores_everything_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContactStore::open_unindexed(dir.path()).unwrap();
        store.move_offline();
        watch_number_indexes(dir.path());
        Connection::open(database_path(dir.path()))
            .unwrap()
            .execute_batch(
                "CREATE TABLE seen_ids (indexed INTEGER);
                 CREATE TRIGGER seen_ids AFTER INSERT ON consents BEGIN
                   INSERT INTO seen_ids SELECT COUNT(*) FROM sqlite_master WHERE name = 'consents_by_id';
                 END;
                 CREATE TRIGGER refuse BEFORE INSERT ON consents WHEN NEW.number = '+393331234567'
                 BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
            )
            .unwrap();
        let now: Timestamp = "2026-11-25T10:00:00Z".parse().unwrap();
        // The schema in the store's file, not only in its write-ahead log.
        Connection::open(database_path(dir.path()))
            .unwrap()
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
        let size = || std::fs::metadata(database_path(dir.path())).unwrap().len();
        let empty = size();
        let import = |last: Option<&str>| {
            store.bulk_import("cli:test", "consents.imported", now, |bulk| {
                for i in 0..BULK_BATCH + 10 {
                    // Every 1000th id twice, the second time with other
                    // evidence (the same consent otherwise).
                    let id = i - usize::from(i % 1000 == 999);
                    let number = format!("+3902{:08}", id % 1000);
                    let mut c = consent(&number);
                    c.consent_id = format!("c-{id}");
                    c.evidence_ref = format!("e-{i}");
                    bulk.consent(NumberKey::from_e164(&number).unwrap(), c)?;
                }
                assert_eq!(bulk.consent_order(), BatchOrder::AsRead);
                // The import holds the store's write lock while it reads,
                // in a rollback journal, with pages already written into
                // the store's file (its lock then keeps readers out too).
                let other = Connection::open(database_path(dir.path())).unwrap();
                other.busy_timeout(std::time::Duration::ZERO).unwrap();
                let err = other.execute_batch("BEGIN IMMEDIATE").unwrap_err();
                assert!(err.to_string().contains("locked"), "{err}");
                let err = other
                    .query_row("SELECT COUNT(*) FROM consents", [], |r| r.get::<_, i64>(0))
                    .unwrap_err();
                assert!(err.to_string().contains("locked"), "{err}");
                drop(other);
                assert!(size() > empty, "pages written before the commit");
                // A file found bad at its end (`None`) stores nothing.
                let Some(last) = last else {
                    return Ok(None);
                };
                let mut c = consent(last);
                c.consent_id = "c-last".into();
                bulk.consent(NumberKey::from_e164(last).unwrap(), c)?;
                // The first batch's first id again, in the second batch.
                let mut c = consent("+390200000000");
                c.consent_id = "c-0".into();
                c.evidence_ref = "e-again".into();
                bulk.consent(NumberKey::from_e164(&c.number).unwrap(), c)?;
                bulk.suppression(NumberKey::from_e164(last).unwrap(), opt_out("s-last", last))?;
                Ok(Some(((), serde_json::json!({"file": "test"}))))
            })
        };
        let wal = || journal_mode(&Connection::open(database_path(dir.path())).unwrap());
        assert!(import(None).unwrap().is_none());
        assert_eq!(wal(), "wal");
        // Refused after a whole batch went in.
        let err = import(Some("+393331234567")).unwrap_err();
        assert!(err.to_string().contains("refused by the test"), "{err}");
        assert_eq!(wal(), "wal");
        assert_eq!(size(), empty, "the pages written were cut off again");
        {
            let conn = Connection::open(database_path(dir.path())).unwrap();
            let count = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
            assert_eq!(count("SELECT COUNT(*) FROM consents"), 0);
            assert_eq!(count("SELECT COUNT(*) FROM suppressions"), 0);
            let check: String = conn
                .query_row("PRAGMA integrity_check", [], |r| r.get(0))
                .unwrap();
            assert_eq!(check, "ok");
        }
        assert!(store.trail().unwrap().is_empty(), "no trail event");
        assert_eq!(number_indexes(dir.path()), NUMBER_INDEXES);
        let id_index = || {
            Connection::open(database_path(dir.path()))
                .unwrap()
                .query_row(
                    "SELECT COUNT(*) FROM sqlite_master WHERE name = 'consents_by_id'",
                    [],
                    |r| r.get::<_, i64>(0),
                )
                .unwrap()
        };
        assert_eq!(id_index(), 1, "the id index back too");
        assert!(
            crate::serve_lock::ServeLock::try_acquire(dir.path())
                .unwrap()
                .is_some()
        );

        let (_, counts) = import(Some("+393331234568")).unwrap().unwrap();
        assert_eq!(wal(), "wal");
        let conn = Connection::open(database_path(dir.path())).unwrap();
        let count = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
        let duplicates = (BULK_BATCH as u64 + 10) / 1000 + 1;
        assert_eq!(
            (
                counts.stored,
                counts.already_present,
                counts.indexes_rebuilt
            ),
            // The loop's consents, c-last, c-0 again and one opt-out.
            (BULK_BATCH as u64 + 13 - duplicates, duplicates, 2)
        );
        assert!(
            counts.ids_sorted,
            "more than the load remembers: SQLite sorted"
        );
        assert_eq!(number_indexes(dir.path()), NUMBER_INDEXES);
        // Every consent was inserted with both indexes set aside, a copy
        // of an id too (deleted before the unique index came back).
        let during = seen(dir.path());
        assert_eq!(during.len() as u64, counts.stored + counts.already_present);
        assert!(during.iter().all(|(_, indexed)| !indexed));
        assert_eq!(count("SELECT COUNT(*) FROM seen_ids WHERE indexed > 0"), 0);
        assert_eq!(
            count("SELECT COUNT(*) FROM seen_ids"),
            during.len() as i64 - 1
        );
        let err = conn
            .execute_batch("INSERT INTO consents SELECT * FROM consents WHERE consent_id = 'c-7'")
            .unwrap_err();
        assert!(err.to_string().contains("UNIQUE"), "{err}");
        let trail = store.trail().unwrap();
        assert_eq!(trail.len(), 1);
        assert_eq!(
            trail[0].after["stored"],
            serde_json::json!(counts.stored),
            "{:?}",
            trail[0].after
        );
        assert_eq!(trail[0].after["file"], "test");
        assert_eq!(
            count(&format!(
                "SELECT COUNT(*) FROM consents WHERE import_seq = {}",
                trail[0].seq
            )),
            counts.stored as i64 - 1
        );
        assert_eq!(
            count("SELECT COUNT(*) FROM suppressions WHERE import_seq IS NOT NULL"),
            1
        );
        let kept: String = conn
            .query_row(
                "SELECT evidence_ref FROM consents WHERE consent_id = 'c-998'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(kept, "e-998", "the first in the file of two with one id");
        let kept: String = conn
            .query_row(
                "SELECT evidence_ref FROM consents WHERE consent_id = 'c-0'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(kept, "e-0", "the first of two in two batches");
        let held = store
            .subject_records(
                NumberKey::from_e164("+393331234568").unwrap(),
                "+393331234568",
                "",
            )
            .unwrap();
        assert_eq!((held.consents.len(), held.suppressions.len()), (1, 1));
    }

    /// With another connection open on the store, SQLite keeps it in its
    /// write-ahead log: the first load then runs there, still one
    /// transaction, and readers see the store as it was until the commit.
    #[test]
    fn test_a_first_load_beside_another_connection_stays_in_the_write_ahead_log() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContactStore::open_unindexed(dir.path()).unwrap();
        store.move_offline();
        let held = Connection::open(database_path(dir.path())).unwrap();
        // Open in the write-ahead log once it has read.
        let none: i64 = held
            .query_row("SELECT COUNT(*) FROM consents", [], |r| r.get(0))
            .unwrap();
        assert_eq!(none, 0);
        let now: Timestamp = "2026-11-25T10:00:00Z".parse().unwrap();
        let (_, counts) = store
            .bulk_import("cli:test", "consents.imported", now, |bulk| {
                for i in 0..BULK_BATCH + 10 {
                    // Every 100th id twice (the same consent, its evidence
                    // aside): more than the load remembers, SQLite finds
                    // the copies, in the write-ahead log.
                    let id = i - usize::from(i % 100 == 99);
                    let number = format!("+3902{:08}", id % 1000);
                    let mut c = consent(&number);
                    c.consent_id = format!("c-{id}");
                    c.evidence_ref = format!("e-{i}");
                    bulk.consent(NumberKey::from_e164(&number).unwrap(), c)?;
                }
                assert_eq!(journal_mode(&held), "wal");
                let before: i64 = held
                    .query_row("SELECT COUNT(*) FROM consents", [], |r| r.get(0))
                    .unwrap();
                assert_eq!(before, 0);
                Ok(Some(((), serde_json::json!({}))))
            })
            .unwrap()
            .unwrap();
        let copies = (BULK_BATCH as u64 + 10) / 100;
        assert_eq!(
            (counts.stored, counts.already_present, counts.ids_sorted),
            (BULK_BATCH as u64 + 10 - copies, copies, true)
        );
        let after: i64 = held
            .query_row("SELECT COUNT(*) FROM consents", [], |r| r.get(0))
            .unwrap();
        assert_eq!(after as u64, counts.stored);
        let kept: String = held
            .query_row(
                "SELECT evidence_ref FROM consents WHERE consent_id = 'c-98'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(kept, "e-98");
        assert_eq!(journal_mode(&held), "wal");
        let log = std::fs::metadata(dir.path().join("contacts.db-wal")).unwrap();
        assert_eq!(log.len(), 0, "the write-ahead log emptied after the load");
        assert_eq!(number_indexes(dir.path()), NUMBER_INDEXES);
    }
}
