//! Shared contact records on PostgreSQL (`[store] backend = "postgres"`).
//!
//! PostgreSQL holds the authoritative, ordered journal of contact changes
//! (`contact_journal`, schema step `0003_contacts`); each replica keeps its
//! SQLite store and in-memory index as a materialised copy and applies the
//! journal in `seq` order with the store's own methods. Every value the
//! origin chose (ids, instants) is in the entry, so every replica makes the
//! same change. A change is committed to the journal (synchronously) before
//! it is acknowledged, then applied locally; the entry applied last is
//! stored in the local store in the same transaction as the change.
//!
//! `seq` is assigned as `MAX(seq) + 1` under a transaction-scoped advisory
//! lock held until commit: seq order is commit order, so a follower reading
//! `seq > applied` never skips an entry that commits late. Followers poll
//! (a NOTIFY is sent too, but polling alone keeps the bound: notifications
//! are lost while disconnected). A replica that has not confirmed it applied
//! the whole journal within `max_staleness` stops deciding
//! ([`ContactStore::failing_for`]).

mod apply;
mod copy;
mod entry;
mod origin;
#[cfg(test)]
mod tests;

pub use copy::{CopySummary, copy_from_sqlite, import_file, record_opposed};

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::derived_ids::Scheme;
use super::{ContactStore, StoreError};
use crate::store::postgres::{Pg, PgError};
use entry::RecordRow;

/// A failure of the shared contact journal: the change was not acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error(transparent)]
    Pg(#[from] PgError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// What the shared records cannot do (yet), or a data_dir that does
    /// not belong to the shared database.
    #[error("shared contact records: {0}")]
    Refused(String),
    /// An entry read back that does not parse: never applied as permission.
    #[error("shared contact journal entry {seq}: {problem}")]
    Corrupt { seq: i64, problem: String },
}

impl From<tokio_postgres::Error> for JournalError {
    fn from(err: tokio_postgres::Error) -> Self {
        JournalError::Pg(PgError::Sql(err))
    }
}

/// The advisory lock under which seq is assigned ("contacts" in ASCII).
const JOURNAL_LOCK: i64 = 0x636f_6e74_6163_7473;
/// Entries read per round trip by a follower.
const FETCH: i64 = 256;
/// Records read per round trip when applying an import.
const RECORD_PAGE: i64 = 20_000;
/// Records inserted per statement.
const INSERT_PAGE: usize = 10_000;

/// What applying one entry did (the answer its origin gives).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A record stored (false: one with its id was already).
    Inserted(bool),
    /// Consents ended, or records erased.
    Count(u32),
    /// Nothing to report.
    Done,
}

/// The number an erasure's origin knows (the journal holds only its hash).
pub(crate) struct Hint {
    seq_of: Option<i64>,
    e164: String,
}

/// This replica's view of the shared contact journal.
pub struct Journal {
    pg: Pg,
    store: Arc<ContactStore>,
    handle: tokio::runtime::Handle,
    /// Held while entries are applied locally (and by an origin from before
    /// its append until its entry is applied, so the answer it gives is its
    /// own entry's outcome).
    applying: Mutex<()>,
    /// The entry applied last (what the store holds, without its lock).
    applied: std::sync::atomic::AtomicI64,
    /// A bulk import being applied whose opt-outs checks already honour
    /// (held in memory), else 0.
    preapplied: std::sync::atomic::AtomicI64,
    /// The tokens (by seq) of the entries being applied and of the one
    /// applied before them (see `only_granting_pending`).
    tokens: Mutex<std::collections::BTreeMap<i64, i64>>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("pg", &self.pg).finish()
    }
}

/// 32 random bytes for a new deployment's subject salt.
fn random_salt() -> [u8; 32] {
    let mut salt = [0; 32];
    salt[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    salt[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    salt
}

/// A deployment's subject salt and its way of deriving ids, which every
/// replica's store must share (`contact_salt`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct SharedSalt {
    salt: [u8; 32],
    scheme: Scheme,
}

impl std::fmt::Debug for SharedSalt {
    // The salt is a secret of the deployment: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedSalt")
            .field("scheme", &self.scheme)
            .finish_non_exhaustive()
    }
}

impl SharedSalt {
    /// What a new deployment proposes.
    fn new_deployment() -> SharedSalt {
        SharedSalt {
            salt: random_salt(),
            scheme: Scheme::NEW,
        }
    }

    /// What `store` uses.
    fn of(store: &ContactStore) -> SharedSalt {
        SharedSalt {
            salt: store.subject_salt(),
            scheme: store.derived_ids().scheme(),
        }
    }

    /// Creates the contact database in `data_dir` with this salt and
    /// scheme, unless it exists.
    fn seed(self, data_dir: &Path) -> Result<(), StoreError> {
        ContactStore::seed_salt(data_dir, &self.salt, self.scheme)
    }

    /// Reads `contact_salt`'s row.
    fn from_row(row: &tokio_postgres::Row) -> Result<SharedSalt, JournalError> {
        let salt: Vec<u8> = row.get(0);
        let scheme: Option<String> = row.get(1);
        Ok(SharedSalt {
            salt: salt.as_slice().try_into().map_err(|_| {
                JournalError::Pg(PgError::Corrupt("contact_salt.salt is not 32 bytes".into()))
            })?,
            scheme: Scheme::from_stored(scheme.as_deref().map(str::as_bytes)).map_err(|value| {
                JournalError::Pg(PgError::Corrupt(format!(
                    "contact_salt.derived_ids is {value}, which this version does not know"
                )))
            })?,
        })
    }
}

/// The shared subject salt and scheme if the database holds them yet
/// (read only).
async fn existing_salt(pg: &Pg) -> Result<Option<SharedSalt>, JournalError> {
    let row = pg
        .within(async {
            let client = pg.client().await?;
            Ok(client
                .query_opt(
                    "SELECT salt, derived_ids FROM contact_salt WHERE id = 1",
                    &[],
                )
                .await?)
        })
        .await?;
    row.as_ref().map(SharedSalt::from_row).transpose()
}

/// The shared subject salt and scheme: `proposed` when there were none
/// yet (the first replica's, or the migrated SQLite store's).
async fn shared_salt(pg: &Pg, proposed: SharedSalt) -> Result<SharedSalt, JournalError> {
    let row = pg
        .within(async {
            let client = pg.client().await?;
            client
                .execute(
                    "INSERT INTO contact_salt (id, salt, derived_ids) VALUES (1, $1, $2)
                     ON CONFLICT (id) DO NOTHING",
                    &[&proposed.salt.to_vec(), &proposed.scheme.stored()],
                )
                .await?;
            Ok(client
                .query_one(
                    "SELECT salt, derived_ids FROM contact_salt WHERE id = 1",
                    &[],
                )
                .await?)
        })
        .await?;
    SharedSalt::from_row(&row)
}

/// Before the contact store is opened: a new data_dir's store is created
/// with the shared subject salt and scheme (an existing store is checked
/// by [`Journal::attach`]).
///
/// # Errors
/// [`JournalError`] when the database or the data_dir cannot be used.
pub async fn prepare_data_dir(pg: &Pg, data_dir: &Path) -> Result<(), JournalError> {
    if super::database_path(data_dir).exists() {
        return Ok(());
    }
    shared_salt(pg, SharedSalt::new_deployment())
        .await?
        .seed(data_dir)?;
    Ok(())
}

/// The journal's last seq (0: empty).
async fn head(client: &tokio_postgres::Transaction<'_>) -> Result<i64, JournalError> {
    Ok(client
        .query_one("SELECT COALESCE(MAX(seq), 0) FROM contact_journal", &[])
        .await?
        .get(0))
}

impl Journal {
    /// Attaches the opened `store` to the shared journal: checks it
    /// belongs to this database, applies what it lacks, then follows.
    ///
    /// # Errors
    /// [`JournalError::Refused`] for a data_dir made for another deployment
    /// or holding records the journal does not; a database failure.
    pub async fn attach(
        pg: Pg,
        store: Arc<ContactStore>,
        data_dir: &Path,
    ) -> Result<Arc<Journal>, JournalError> {
        let shown = data_dir.display();
        let applied = store.journal_applied()?;
        if applied.is_none() && store.holds_records()? {
            return Err(JournalError::Refused(format!(
                "{shown} holds contact records that are not in the shared database: copy them with `dialgate store migrate --to postgres`, or start this replica on an empty data_dir"
            )));
        }
        let own = SharedSalt::of(&store);
        let shared = shared_salt(&pg, own).await?;
        if own.salt != shared.salt {
            return Err(JournalError::Refused(format!(
                "{shown} holds a contact store made for another deployment (its subject salt is not the shared database's): start this replica on an empty data_dir, or copy that store with `dialgate store migrate --to postgres` into an empty database"
            )));
        }
        if own.scheme != shared.scheme {
            // Imports here would give records of the same lines other ids
            // than the other replicas' (stored twice).
            return Err(JournalError::Refused(format!(
                "{shown} holds a contact store that derives record ids {:?}, the shared database {:?}: start this replica on an empty data_dir",
                own.scheme, shared.scheme
            )));
        }
        let last: i64 = pg
            .within(async {
                let client = pg.client().await?;
                Ok(client
                    .query_one("SELECT COALESCE(MAX(seq), 0) FROM contact_journal", &[])
                    .await?
                    .get(0))
            })
            .await?;
        if let Some(applied) = applied
            && applied > last
        {
            return Err(JournalError::Refused(format!(
                "{shown} has applied shared journal entry {applied}, but the database's journal ends at {last}: the data_dir belongs to another database (start on an empty data_dir)"
            )));
        }
        store.follow_journal(pg.settings().max_staleness);
        let journal = Arc::new(Journal {
            pg,
            store,
            handle: tokio::runtime::Handle::current(),
            applying: Mutex::new(()),
            applied: std::sync::atomic::AtomicI64::new(applied.unwrap_or(0)),
            preapplied: std::sync::atomic::AtomicI64::new(0),
            tokens: Mutex::new(std::collections::BTreeMap::new()),
        });
        let first = Arc::clone(&journal);
        tokio::task::spawn_blocking(move || first.catch_up())
            .await
            .map_err(|e| JournalError::Refused(format!("catching up failed: {e}")))??;
        Ok(journal)
    }

    /// The store the journal is applied to.
    pub fn store(&self) -> &ContactStore {
        &self.store
    }

    /// How often a follower asks for new entries: a quarter of
    /// `max_staleness`, between 50 ms and 1 s.
    pub fn poll_interval(&self) -> Duration {
        (self.pg.settings().max_staleness / 4)
            .clamp(Duration::from_millis(50), Duration::from_secs(1))
    }

    /// Follows the journal until `stop`: applies new entries as they
    /// commit (woken by a NOTIFY, or by the poll) and confirms freshness
    /// after each complete read. While a long entry is being applied,
    /// freshness is still confirmed when every entry not yet applied can
    /// only grant (a large consent import does not stall checks).
    pub async fn follow(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(self.poll_interval());
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let woken = Arc::new(tokio::sync::Notify::new());
        tokio::spawn(listen(self.pg.clone(), Arc::clone(&woken), stop.clone()));
        let mut failing = false;
        // The last error logged: a new one is logged too (found by review:
        // after a database outage, the rewound journal that needs an
        // operator was never named in the log).
        let mut logged: Option<String> = None;
        let mut running: Option<tokio::task::JoinHandle<Result<usize, JournalError>>> = None;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = woken.notified() => {}
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                return;
            }
            if running.as_ref().is_some_and(|task| !task.is_finished()) {
                let started = crate::clock::BootInstant::now();
                match self.pg.within(self.only_granting_pending()).await {
                    Ok(true) => self.store.confirm_journal(started),
                    Ok(false) => {}
                    Err(err) => {
                        tracing::debug!(error = %err, "shared contact journal: probe failed");
                    }
                }
                continue;
            }
            if let Some(task) = running.take() {
                match task.await {
                    Ok(Ok(applied)) => {
                        if failing {
                            tracing::info!("shared contact journal followed again");
                        }
                        failing = false;
                        logged = None;
                        if applied > 0 {
                            tracing::debug!(applied, "shared contact journal entries applied");
                        }
                    }
                    Ok(Err(err)) => {
                        let text = err.to_string();
                        if logged.as_deref() != Some(text.as_str()) {
                            tracing::error!(error = %err, "shared contact journal: cannot follow (decisions stop after store.max_staleness_ms)");
                            logged = Some(text);
                        }
                        failing = true;
                    }
                    Err(err) => {
                        tracing::error!(error = %err, "shared contact journal: follower task failed");
                    }
                }
            }
            let journal = Arc::clone(&self);
            running = Some(tokio::task::spawn_blocking(move || journal.catch_up()));
        }
    }

    /// Whether every entry after the one applied last (or whose opt-outs
    /// are held) can only grant, and that one is still the journal's
    /// entry at its seq (a database restored or failed over meanwhile may
    /// have numbered a restrictive entry the same way: it would not count
    /// as after it). An entry whose token is not known here is not
    /// confirmed.
    async fn only_granting_pending(&self) -> Result<bool, PgError> {
        use std::sync::atomic::Ordering;
        let applied = self
            .applied
            .load(Ordering::Acquire)
            .max(self.preapplied.load(Ordering::Acquire));
        let token = self
            .tokens
            .lock()
            .expect("journal tokens lock")
            .get(&applied)
            .copied();
        if applied > 0 && token.is_none() {
            return Ok(false);
        }
        let client = self.pg.client().await?;
        let row = client
            .query_one(
                "SELECT COALESCE(bool_or(restrictive), false),
                        (SELECT token FROM contact_journal WHERE seq = $1)
                 FROM contact_journal WHERE seq > $1",
                &[&applied],
            )
            .await?;
        let restrictive: bool = row.get(0);
        let found: Option<i64> = row.get(1);
        Ok(!restrictive && (applied == 0 || found == token))
    }

    /// Runs `work` on the runtime from this blocking thread, within the
    /// database deadline.
    fn block_on<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, JournalError>>,
    ) -> Result<T, JournalError> {
        let limit = self.pg.settings().unavailable_after;
        self.handle.block_on(async {
            tokio::time::timeout(limit, work)
                .await
                .map_err(|_| JournalError::Pg(PgError::Timeout(limit)))?
        })
    }

    /// Applies every entry committed so far; then every entry committed
    /// before the call is applied (confirmed: the staleness clock restarts).
    /// Returns how many were applied.
    ///
    /// # Errors
    /// [`JournalError`]: entries applied before it stay applied.
    pub fn catch_up(&self) -> Result<usize, JournalError> {
        let _applying = self.applying.lock().expect("journal apply lock");
        let started = crate::clock::BootInstant::now();
        match self.apply_through(i64::MAX, None) {
            Ok((_, applied)) => {
                self.store.journal_repaired();
                self.store.confirm_journal(started);
                Ok(applied)
            }
            // The database unreachable: decisions stop after max_staleness.
            Err(err @ JournalError::Pg(_)) => Err(err),
            // An entry that cannot be applied, or a journal that is not the
            // one applied here: decisions stop now (never skipped).
            Err(err) => {
                self.store.stop_deciding_on_journal();
                Err(err)
            }
        }
    }

    /// Applies the entries after the local position up to `last`; returns
    /// the outcome of entry `last` if it was applied now, and how many were.
    /// The caller holds `applying`.
    fn apply_through(
        &self,
        last: i64,
        hint: Option<&Hint>,
    ) -> Result<(Option<Outcome>, usize), JournalError> {
        self.verify_same_journal()?;
        let mut position = self.store.journal_applied()?.unwrap_or(0);
        let mut outcome = None;
        let mut count = 0;
        while position < last {
            let entries = self.block_on(async {
                let client = self.pg.client().await?;
                let rows = client
                    .query(
                        "SELECT seq, batch, kind, body::text, token FROM contact_journal
                         WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3",
                        &[&position, &last, &FETCH],
                    )
                    .await?;
                Ok(rows
                    .iter()
                    .map(|r| {
                        (
                            r.get::<_, i64>(0),
                            r.get::<_, i64>(1),
                            r.get::<_, String>(2),
                            r.get::<_, String>(3),
                            r.get::<_, i64>(4),
                        )
                    })
                    .collect::<Vec<_>>())
            })?;
            if entries.is_empty() {
                break;
            }
            // Noted before any is applied: whatever entry this fetch
            // stops at, its token is the one checked next time.
            let tokens: Vec<(i64, i64)> = entries.iter().map(|e| (e.0, e.4)).collect();
            self.store.note_journal_tokens(&tokens)?;
            self.note_tokens(&tokens);
            for (seq, batch, kind, body, _) in entries {
                if seq != position + 1 {
                    return Err(JournalError::Corrupt {
                        seq,
                        problem: format!("follows entry {position}: an entry is missing"),
                    });
                }
                let done = self.apply_entry(seq, batch, &kind, &body, hint)?;
                self.applied
                    .store(seq, std::sync::atomic::Ordering::Release);
                if seq == last {
                    outcome = Some(done);
                }
                position = seq;
                count += 1;
            }
        }
        Ok((outcome, count))
    }

    /// Keeps in memory the tokens of the entries fetched (and of the one
    /// before them, applied last), for the probe that confirms freshness
    /// while they are applied (`only_granting_pending`).
    fn note_tokens(&self, tokens: &[(i64, i64)]) {
        let mut known = self.tokens.lock().expect("journal tokens lock");
        if let Some(first) = tokens.iter().map(|(seq, _)| *seq).min() {
            known.retain(|seq, _| *seq >= first - 1);
        }
        known.extend(tokens.iter().copied());
    }

    /// Checks that the entry this store applied last is still the
    /// journal's entry at its seq (a restored or failed-over database that
    /// lost entries numbers new ones the same way: they would be skipped).
    fn verify_same_journal(&self) -> Result<(), JournalError> {
        let Some((seq, token)) = self.store.journal_checked()? else {
            return Ok(());
        };
        self.note_tokens(&[(seq, token)]);
        let found: Option<i64> = self.block_on(async {
            let client = self.pg.client().await?;
            Ok(client
                .query_opt("SELECT token FROM contact_journal WHERE seq = $1", &[&seq])
                .await?
                .map(|row| row.get(0)))
        })?;
        if found == Some(token) {
            return Ok(());
        }
        Err(JournalError::Refused(format!(
            "the shared journal's entry {seq} is not the entry this replica applied (the database was restored or failed over and lost entries): decisions stop; stop this replica, empty its data_dir and start it again to apply the journal as it is now"
        )))
    }

    /// The apply lock, waited for at most `unavailable_after` (a large
    /// import being applied holds it): the change is then not made and the
    /// caller answers UNAVAILABLE.
    fn apply_lock_within(&self) -> Result<std::sync::MutexGuard<'_, ()>, JournalError> {
        let limit = self.pg.settings().unavailable_after;
        let started = Instant::now();
        loop {
            match self.applying.try_lock() {
                Ok(guard) => return Ok(guard),
                Err(std::sync::TryLockError::Poisoned(poisoned)) => {
                    return Ok(poisoned.into_inner());
                }
                Err(std::sync::TryLockError::WouldBlock) => {}
            }
            if started.elapsed() >= limit {
                return Err(JournalError::Pg(PgError::Timeout(limit)));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Commits one entry to the journal, then applies everything up to it
    /// here; returns what applying it did. Called from a blocking thread.
    fn commit(
        &self,
        kind: &'static str,
        body: serde_json::Value,
        records: Vec<RecordRow>,
        redact: Option<(String, String)>,
        e164: Option<String>,
    ) -> Result<Outcome, JournalError> {
        let _applying = self.apply_lock_within()?;
        let extra = Extra {
            redact,
            ..Extra::default()
        };
        let seq = self.block_on(append(&self.pg, kind, &body, &records, &extra))?;
        let hint = e164.map(|e164| Hint {
            seq_of: Some(seq),
            e164,
        });
        match self.apply_through(seq, hint.as_ref())?.0 {
            Some(outcome) => Ok(outcome),
            None => Err(JournalError::Corrupt {
                seq,
                problem: "committed but not found again".into(),
            }),
        }
    }
}

/// Wakes the follower on every NOTIFY of a new entry (only a wake-up: the
/// poll keeps the bound, since notifications are lost while disconnected);
/// reconnects after a failure.
async fn listen(
    pg: Pg,
    woken: Arc<tokio::sync::Notify>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        if let Ok((client, mut connection)) = pg.dedicated().await {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let driver = tokio::spawn(async move {
                let mut messages =
                    futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                while let Some(Ok(message)) = futures_util::StreamExt::next(&mut messages).await {
                    if let tokio_postgres::AsyncMessage::Notification(_) = message
                        && tx.send(()).is_err()
                    {
                        return;
                    }
                }
            });
            if client
                .batch_execute("LISTEN dialgate_contacts")
                .await
                .is_ok()
            {
                loop {
                    tokio::select! {
                        got = rx.recv() => match got {
                            Some(()) => woken.notify_one(),
                            None => break,
                        },
                        _ = stop.changed() => {
                            driver.abort();
                            return;
                        }
                    }
                }
            }
            driver.abort();
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
    }
}

/// What an append does besides adding its entry, in its transaction.
#[derive(Debug, Default)]
struct Extra {
    /// (subject, controller): the subject's personal data already in the
    /// journal goes (an erasure).
    redact: Option<(String, String)>,
    /// Refuse opt-out and consent ids the journal holds for another record
    /// (a bulk import: INSERT OR IGNORE would keep one, and the other
    /// number be called, or the kept consent grant what the file no
    /// longer says; see `refuse_reused_ids`).
    refuse_reused: bool,
    /// Only into an empty journal, with this subject salt and scheme (a
    /// migration).
    first_with_salt: Option<SharedSalt>,
}

/// Refuses a change stamped by a clock that is not the database's (within
/// [`shared_clock::MAX_CLOCK_SKEW`], as decisions are): a withdrawal taken
/// on a replica whose clock ran five minutes ahead was dated then, and the
/// other replicas went on granting the consent until that instant came
/// (found by review). Such a replica decides nothing either.
async fn refuse_a_clock_apart(tx: &tokio_postgres::Transaction<'_>) -> Result<(), JournalError> {
    use crate::decision_log::shared_clock;
    let skew = shared_clock::read_skew(tx).await?;
    if skew.abs() > shared_clock::MAX_CLOCK_SKEW {
        return Err(JournalError::Pg(PgError::Setup(format!(
            "clock skew: this host's clock is {} ms {} the database's (at most {} ms tolerated): no contact change is taken until the clocks agree, its instants would bind the other replicas wrongly (check NTP on this host and the database server)",
            skew.abs().as_millis(),
            if skew.is_negative() {
                "ahead of"
            } else {
                "behind"
            },
            shared_clock::MAX_CLOCK_SKEW.as_millis()
        ))));
    }
    Ok(())
}

/// Appends one entry in one transaction: its records first (no lock held),
/// then, under the journal lock, the entry with the next seq.
async fn append(
    pg: &Pg,
    kind: &str,
    body: &serde_json::Value,
    records: &[RecordRow],
    extra: &Extra,
) -> Result<i64, JournalError> {
    let mut client = pg.client().await?;
    let tx = client.transaction().await?;
    // Answered only once on disk (and on a synchronous standby): with the
    // database's default set to off or local, an opt-out answered OK was
    // lost in a crash or failover (found by review). The decision log sets
    // it too.
    tx.batch_execute("SET LOCAL synchronous_commit = on")
        .await?;
    refuse_a_clock_apart(&tx).await?;
    let batch = new_batch(&tx, records).await?;
    let checked_through = if extra.refuse_reused {
        // Before the lock, against every entry committed so far: the ids
        // the journal holds already are checked and left out here (a full
        // export imported again: 6 s for 500k consents), so that the lock
        // is held only to check against the entries committed since
        // (other appends, a replica's opt-outs among them, wait for it).
        // The head is read first: every entry up to it committed before
        // the check's statements began, so they saw it (READ COMMITTED).
        let checked_through = head(&tx).await?;
        check_and_leave_out_present(&tx, batch, checked_through).await?;
        Some(checked_through)
    } else {
        None
    };
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&JOURNAL_LOCK])
        .await?;
    // Under the lock: every entry committed before is visible (READ
    // COMMITTED reads each statement's snapshot), and none commits meanwhile.
    if let Some((subject, controller)) = &extra.redact {
        redact_subject(&tx, subject, controller).await?;
    }
    if let Some(checked_through) = checked_through {
        // Again under the lock, the check alone, of this import's ids
        // that the entries committed meanwhile hold: one of them may
        // share an id with this import (two cannot both pass). Its copies
        // of ids committed meanwhile stay (replicas count them already
        // present): leaving them out is only a saving, not worth holding
        // the lock for.
        let started = std::time::Instant::now();
        refuse_reused_ids(&tx, batch, Some(checked_through)).await?;
        tracing::debug!(
            checked_ms = started.elapsed().as_millis() as u64,
            "import's ids checked under the journal lock"
        );
    }
    let seq = head(&tx).await? + 1;
    let restrictive = kind == entry::ERASE || records.iter().any(|r| r.restrictive);
    if let Some(salt) = extra.first_with_salt {
        if seq != 1 {
            return Err(JournalError::Refused(format!(
                "the shared database already holds {} contact journal entries: a copy goes only into an empty one",
                seq - 1
            )));
        }
        // A replica started before the copy made the shared salt and keeps
        // it: replacing it would leave that replica hashing numbers its own
        // way (opt-outs kept by hash would not match there).
        // Inserted first, then read back in this transaction: a replica
        // starting meanwhile either waits for this insert or made its own
        // salt first, which is then read here and refused.
        tx.execute(
            "INSERT INTO contact_salt (id, salt, derived_ids) VALUES (1, $1, $2)
             ON CONFLICT (id) DO NOTHING",
            &[&salt.salt.to_vec(), &salt.scheme.stored()],
        )
        .await?;
        let shared = SharedSalt::from_row(
            &tx.query_one(
                "SELECT salt, derived_ids FROM contact_salt WHERE id = 1",
                &[],
            )
            .await?,
        )?;
        if shared != salt {
            return Err(JournalError::Refused(
                "replicas have already started on this database with another subject salt or way of deriving record ids: stop them, empty their data_dirs, run `DELETE FROM contact_salt` on the database, then copy again".into(),
            ));
        }
    }
    tx.execute(
        "INSERT INTO contact_journal (seq, batch, replica_id, kind, body, restrictive)
         VALUES ($1, $2, $3, $4, $5::text::jsonb, $6)",
        &[
            &seq,
            &batch,
            &pg.replica_id(),
            &kind,
            &body.to_string(),
            &restrictive,
        ],
    )
    .await?;
    tx.execute(
        "SELECT pg_notify('dialgate_contacts', $1)",
        &[&seq.to_string()],
    )
    .await?;
    tx.commit().await?;
    Ok(seq)
}

/// Takes the next batch number and inserts `records` under it, in `tx`.
async fn new_batch(
    tx: &tokio_postgres::Transaction<'_>,
    records: &[RecordRow],
) -> Result<i64, JournalError> {
    let batch: i64 = tx
        .query_one("SELECT nextval('contact_journal_batches')", &[])
        .await?
        .get(0);
    insert_records(tx, batch, records).await?;
    Ok(batch)
}

/// Inserts `records` as batch `batch`, many rows per statement.
async fn insert_records(
    tx: &tokio_postgres::Transaction<'_>,
    batch: i64,
    records: &[RecordRow],
) -> Result<(), JournalError> {
    let statement = tx
        .prepare(
            "INSERT INTO contact_journal_records (batch, pos, kind, record_id, subject, controller, body)
             SELECT $1, p, k, r, s, c, b::jsonb
             FROM unnest($2::int4[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[]) AS t(p, k, r, s, c, b)",
        )
        .await?;
    for (page, chunk) in records.chunks(INSERT_PAGE).enumerate() {
        let first = page * INSERT_PAGE;
        let pos: Vec<i32> = (0..chunk.len()).map(|i| (first + i) as i32).collect();
        let kinds: Vec<&str> = chunk.iter().map(|r| r.kind).collect();
        let ids: Vec<&str> = chunk.iter().map(|r| r.record_id.as_str()).collect();
        let subjects: Vec<&str> = chunk.iter().map(|r| r.subject.as_str()).collect();
        let controllers: Vec<&str> = chunk.iter().map(|r| r.controller.as_str()).collect();
        let bodies: Vec<&str> = chunk.iter().map(|r| r.body.as_str()).collect();
        tx.execute(
            &statement,
            &[&batch, &pos, &kinds, &ids, &subjects, &controllers, &bodies],
        )
        .await?;
    }
    Ok(())
}

/// Refuses opt-outs of `batch` whose id another opt-out already has for
/// another number, controller or campaign, or, in the same batch, with
/// another expiry, or, in any earlier batch, with an earlier expiry (the
/// stored one would lapse first): at least what every replica's local
/// bulk import refuses (`refuse_reused_suppression_ids`, which compares
/// with the one copy it kept), so an entry committed here is never
/// refused when applied (replicas do not check the expiry of a committed
/// import at all, `BulkImport::applying_committed`: imports committed
/// before this check existed may hold such copies). Runs before the
/// journal lock, against what is committed, and again under it (two
/// imports sharing an id cannot both pass: there, `committed_after`
/// names the head the first check read, and only the ids that entries
/// committed after it hold are checked again, each against all its
/// copies; checking all held the lock 2.3-3.2 s per 500k new ids).
/// Refuses consents of
/// `batch` likewise (see `refuse_reused_consent_ids`), compared with the
/// copy replicas keep, the first in journal order: another number,
/// controller, purpose, grant or supplier, a later expiry (the kept one
/// would grant past the file's), or another revocation (copies within
/// `batch` were compared by the import's own store); replicas apply a
/// committed import's consents without checking them.
async fn refuse_reused_ids(
    tx: &tokio_postgres::Transaction<'_>,
    batch: i64,
    committed_after: Option<i64>,
) -> Result<(), JournalError> {
    let reused =
        |rows: Vec<tokio_postgres::Row>| -> Vec<String> { rows.iter().map(|r| r.get(0)).collect() };
    // The ids to check: all the batch's, or those that entries committed
    // after `committed_after` hold (none, usually: nothing to check).
    // Those entries' records are found from the entries, by batch (the
    // subquery kept apart, so that the planner cannot scan every record).
    let recent: Option<Vec<String>> = match committed_after {
        None => None,
        Some(head) => {
            // Under the lock, this check is the transaction's last
            // work: no JIT compiling (100-250 ms of planned cost for
            // nothing, the tables' statistics being those of large
            // batches), and index scans only (a record table scanned
            // whole for each entry committed meanwhile, however small).
            tx.batch_execute("SET LOCAL jit = off; SET LOCAL enable_seqscan = off")
                .await?;
            let ids = reused(
                tx.query(
                    "SELECT DISTINCT r.record_id FROM contact_journal j
                     CROSS JOIN LATERAL (
                         SELECT record_id FROM contact_journal_records r
                         WHERE r.batch = j.batch AND r.kind IN ('consent', 'suppression', 'suppression_hashed')
                         OFFSET 0) r
                     WHERE j.seq > $1",
                    &[&head],
                )
                .await?,
            );
            if ids.is_empty() {
                return Ok(());
            }
            Some(ids)
        }
    };
    let (filter, params): (&str, &[&(dyn tokio_postgres::types::ToSql + Sync)]) = match &recent {
        None => ("n.batch = $1", &[&batch]),
        Some(ids) => ("n.batch = $1 AND n.record_id = ANY($2)", &[&batch, ids]),
    };
    let checked = |kinds: &str| {
        (
            "contact_journal_records n",
            format!("{filter} AND n.kind IN ({kinds})"),
        )
    };
    let (from, filter) = checked("'suppression', 'suppression_hashed'");
    let opt_outs = reused(
        tx.query(
            &format!("SELECT DISTINCT n.record_id FROM {from}
             JOIN contact_journal_records o
               ON o.kind IN ('suppression', 'suppression_hashed') AND o.record_id = n.record_id
              AND (o.batch <> n.batch OR o.pos <> n.pos)
              AND (o.subject <> n.subject OR o.controller <> n.controller
                   OR COALESCE(o.body->>'campaign_id', '') <> COALESCE(n.body->>'campaign_id', '')
                   OR (o.batch = n.batch
                       AND (o.body->>'expires_at_us') IS DISTINCT FROM (n.body->>'expires_at_us'))
                   OR (o.batch <> n.batch AND o.body->>'expires_at_us' IS NOT NULL
                       AND (n.body->>'expires_at_us' IS NULL
                            OR (n.body->>'expires_at_us')::bigint > (o.body->>'expires_at_us')::bigint)))
             WHERE {filter}
             ORDER BY 1 LIMIT 5"),
            params,
        )
        .await?,
    );
    if !opt_outs.is_empty() {
        return Err(JournalError::Store(StoreError::ReusedIds(
            opt_outs.join(", "),
        )));
    }
    // Compared with the copy replicas keep, the first in journal order
    // (they apply with INSERT OR IGNORE): an id the journal held twice
    // with two contents before this check existed would otherwise refuse
    // every later import of it, whatever the file said. This holds while
    // a replica deletes a consent only as the journal does (an erasure,
    // which `redact_subject` mirrors here); retention purges,
    // rectifications and restores are refused on this backend. Were one
    // shared without removing the copy here, a later copy could pass
    // against the first one here while a replica keeps another.
    let (from, filter) = checked("'consent'");
    let consents = reused(
        tx.query(
            &format!("SELECT DISTINCT n.record_id FROM {from}
             CROSS JOIN LATERAL (
                 SELECT o.subject, o.controller, o.body FROM contact_journal_records o
                 JOIN contact_journal j ON j.batch = o.batch
                 WHERE o.kind = 'consent' AND o.record_id = n.record_id AND o.batch <> n.batch
                 ORDER BY j.seq, o.pos LIMIT 1) o
             WHERE {filter} AND (o.subject <> n.subject OR o.controller <> n.controller
                    OR (o.body->>'purpose') IS DISTINCT FROM (n.body->>'purpose')
                    OR (o.body->>'granted_at_us') IS DISTINCT FROM (n.body->>'granted_at_us')
                    OR COALESCE(o.body->>'supplier', '') <> COALESCE(n.body->>'supplier', '')
                    OR {written_o} <> {written_n}
                    OR (n.body->>'expires_at_us' IS NOT NULL
                        AND (o.body->>'expires_at_us' IS NULL
                             OR (o.body->>'expires_at_us')::bigint > (n.body->>'expires_at_us')::bigint))
                    OR (n.body->>'revoked_at_us' IS NOT NULL
                        AND (o.body->>'revoked_at_us') IS DISTINCT FROM (n.body->>'revoked_at_us')))
             ORDER BY 1 LIMIT 5",
             written_o = written_agreement_sql("o"),
             written_n = written_agreement_sql("n")),
            params,
        )
        .await?,
    );
    if consents.is_empty() {
        Ok(())
    } else {
        Err(JournalError::Store(StoreError::ReusedConsentIds(
            consents.join(", "),
        )))
    }
}

/// A dry run of an import's journal entry: `records` checked as `append`
/// checks them (`refuse_reused_ids`), in a transaction rolled back;
/// returns how many the journal holds already (an import would leave them
/// out). Nothing is committed.
async fn check_import(pg: &Pg, records: &[RecordRow]) -> Result<u64, JournalError> {
    let mut client = pg.client().await?;
    let tx = client.transaction().await?;
    // A dry run says what the import would: refused on a clock apart.
    refuse_a_clock_apart(&tx).await?;
    let batch = new_batch(&tx, records).await?;
    let checked_through = head(&tx).await?;
    refuse_reused_ids(&tx, batch, None).await?;
    let held = leave_out_present(&tx, batch, checked_through).await?;
    tx.rollback().await?;
    Ok(held)
}

/// Before the journal lock: refuses `batch`'s ids reused for another
/// record (`refuse_reused_ids`, run again under the lock for what
/// committed since), then leaves out its records whose ids the entries up
/// to `checked_through` (the head read before the check began) hold
/// (`leave_out_present`). Leaving a record out before the lock is safe:
/// the copy it was checked against stays held (an erasure removes
/// consents, whose copy is then lost rather than wrongly kept; it keeps
/// opt-outs by hash), and replicas keep the first copy anyway.
async fn check_and_leave_out_present(
    tx: &tokio_postgres::Transaction<'_>,
    batch: i64,
    checked_through: i64,
) -> Result<(), JournalError> {
    let started = std::time::Instant::now();
    refuse_reused_ids(tx, batch, None).await?;
    let checked_ms = started.elapsed().as_millis() as u64;
    let left_out = leave_out_present(tx, batch, checked_through).await?;
    tracing::debug!(
        left_out,
        checked_ms,
        left_out_ms = started.elapsed().as_millis() as u64 - checked_ms,
        "import's ids checked, the records held already left out"
    );
    Ok(())
}

/// Leaves out of a bulk import's `batch` the consents and opt-outs whose
/// id an entry up to `checked_through` holds already: every replica holds
/// that id too and would count the copy as already present (it applies
/// with INSERT OR IGNORE), so the copy changes nothing there; left in, a
/// CRM's nightly full export grew the journal by its size every night,
/// each replica applied it again, and each later check read every copy.
///
/// Only entries up to `checked_through`: `refuse_reused_ids` compared the
/// batch with those (it saw every entry committed before it began, and
/// the head was read before it). An entry committed while it ran, unseen
/// by it, may hold one of the batch's ids for another number: its copy
/// stays in the batch, for the check under the lock to refuse. (Left out
/// here, as every held copy was before, the check under the lock found
/// nothing left to compare: an opt-out for another number was dropped as
/// "already present", and that number stayed callable.) An id whose
/// records an erasure removed from the journal is not held: its copy
/// stays, as it always did.
async fn leave_out_present(
    tx: &tokio_postgres::Transaction<'_>,
    batch: i64,
    checked_through: i64,
) -> Result<u64, JournalError> {
    let left_out = tx
        .execute(
            "DELETE FROM contact_journal_records n
             WHERE n.batch = $1 AND n.kind IN ('consent', 'suppression', 'suppression_hashed')
               AND EXISTS (
                   SELECT 1 FROM contact_journal_records o
                   JOIN contact_journal j ON j.batch = o.batch AND j.seq <= $2
                   WHERE o.batch <> n.batch AND o.record_id = n.record_id
                     AND o.kind IN (CASE WHEN n.kind = 'consent' THEN 'consent' ELSE 'suppression' END,
                                    CASE WHEN n.kind = 'consent' THEN 'consent' ELSE 'suppression_hashed' END))",
            &[&batch, &checked_through],
        )
        .await?;
    Ok(left_out)
}

/// Removes an erased subject's personal data from the journal: its
/// consents, relationships and withdrawals (of `controller`, empty = all)
/// go; its opt-outs stay, without the number (kept by hash).
async fn redact_subject(
    tx: &tokio_postgres::Transaction<'_>,
    subject: &str,
    controller: &str,
) -> Result<(), JournalError> {
    tx.execute(
        "DELETE FROM contact_journal_records
         WHERE subject = $1 AND kind IN ('consent', 'relationship', 'revoke', 'opposed')
           AND ($2 = '' OR controller = $2)",
        &[&subject, &controller],
    )
    .await?;
    tx.execute(
        "UPDATE contact_journal_records
         SET kind = 'suppression_hashed', body = body || '{\"number\": \"\"}'::jsonb
         WHERE subject = $1 AND kind = 'suppression' AND ($2 = '' OR controller = $2)",
        &[&subject, &controller],
    )
    .await?;
    Ok(())
}

/// PostgreSQL's test of a journal consent's `method` saying it is a signed
/// written agreement, as [`crate::contacts::is_written_agreement`] tests it:
/// `lower` under the "C" collation folds ASCII only, as Rust does (under
/// the database's own collation `wrİtten_agreement` folded to a written
/// agreement; found by review).
fn written_agreement_sql(record: &str) -> String {
    format!(
        "(lower(btrim(COALESCE({record}.body->>'method', ''), E' \\t\\n\\f\\r') COLLATE \"C\") = '{}')",
        crate::contacts::WRITTEN_AGREEMENT
    )
}
