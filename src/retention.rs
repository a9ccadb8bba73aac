//! Storage limitation (GDPR art. 5(1)(e)): the `[retention]` section,
//! the purge it schedules in the running server (and `dialgate retention
//! purge`), what `policy show` prints about it, and backups that expire.
//!
//! Ceilings count from when a record ENDS: a consent's withdrawal or
//! expiry, a relationship's end, an opt-out's expiry. Nothing in force is
//! ever deleted; the latest withdrawal of each consent is kept without its
//! evidence (see [`crate::contacts::ContactStore::purge_retention`]). The
//! decision log's ceiling may not go below `log.retention_days`, the floor
//! the law sets for dial records (US TSR 16 CFR 310.5: 5 years).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::config::{Config, LogConfig};
use crate::contacts::{Ceiling, ContactStore, PurgeCounts, RecordCeilings};
use crate::decision_log::{self, audit};

/// `[retention]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetention {
    consents_days: Option<u32>,
    relationships_days: Option<u32>,
    opt_outs_days: Option<u32>,
    decisions_days: Option<u32>,
    backups_days: Option<u32>,
    backup_dir: Option<PathBuf>,
    purge_interval_minutes: Option<u64>,
    erasure_ledger: Option<PathBuf>,
    #[serde(default)]
    controller: BTreeMap<String, RawControllerRetention>,
}

/// `[retention.controller.NAME]`: one controller's own ceilings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawControllerRetention {
    consents_days: Option<u32>,
    relationships_days: Option<u32>,
    opt_outs_days: Option<u32>,
}

/// The validated `[retention]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Retention {
    /// Contact records' ceilings (default and per controller).
    pub records: RecordCeilings,
    /// Decision rows are deleted this many days after the decision (at
    /// least `log.retention_days`); `None`: only `audit purge` removes them.
    pub decisions_days: Option<u32>,
    /// Backups in `backup_dir` are deleted this many days after they were made.
    pub backups_days: Option<u32>,
    pub backup_dir: Option<PathBuf>,
    /// How often the running server purges (it also purges at start).
    pub purge_interval_minutes: u64,
    /// The erasure ledger (never copied by `backup`).
    pub erasure_ledger: PathBuf,
}

/// Default purge interval: daily.
const DEFAULT_INTERVAL_MINUTES: u64 = 1440;
/// Longest ceiling accepted (100 years).
const MAX_DAYS: u64 = 36_500;

impl Retention {
    /// The section's defaults: nothing purged, the ledger in `data_dir`.
    pub fn defaults(data_dir: &Path) -> Retention {
        Retention {
            records: RecordCeilings::default(),
            decisions_days: None,
            backups_days: None,
            backup_dir: None,
            purge_interval_minutes: DEFAULT_INTERVAL_MINUTES,
            erasure_ledger: data_dir.join(crate::contacts::ledger::DEFAULT_FILE),
        }
    }

    /// Whether anything is purged at all.
    pub fn purges_anything(&self) -> bool {
        let any = |c: &Ceiling| c.default_days.is_some() || !c.controllers.is_empty();
        any(&self.records.consents)
            || any(&self.records.relationships)
            || any(&self.records.opt_outs)
            || self.decisions_days.is_some()
            || (self.backups_days.is_some() && self.backup_dir.is_some())
    }
}

/// A bad `[retention]` value: key, value, problem.
pub type Invalid = (String, String, String);

/// Validates `[retention]`: every number bounded, the decision ceiling not
/// below the log's floor, controllers that campaigns call for, paths
/// resolved against `base_dir`.
///
/// # Errors
/// The key, value and problem of the first bad setting.
/// Why a controller's consents are kept 5 years at least (see
/// [`validate`]): it calls the US or a US territory.
pub const US_CONSENT_RECORDS: &str = "calls the US or a US territory, where records of consent (express agreement) must be kept 5 years (US TSR 16 CFR 310.5(a)(5))";

/// The same for a controller calling Germany.
pub const DE_CONSENT_PROOF: &str = "calls Germany, where the proof of a consent must be kept 5 years from its grant and from each use (§7a UWG; kept from the consent's end, after its last use)";

pub fn validate(
    raw: RawRetention,
    log: &LogConfig,
    controllers: &[(&str, Option<&'static str>)],
    base_dir: &Path,
    data_dir: &Path,
) -> Result<Retention, Invalid> {
    let invalid = |key: &str, value: &dyn std::fmt::Display, problem: &str| {
        (key.to_string(), value.to_string(), problem.to_string())
    };
    let days = |key: &str, value: Option<u32>| -> Result<Option<u32>, Invalid> {
        match value {
            Some(v) if !(1..=MAX_DAYS).contains(&u64::from(v)) => {
                Err(invalid(key, &v, &format!("must be 1-{MAX_DAYS}")))
            }
            other => Ok(other),
        }
    };
    let mut retention = Retention::defaults(data_dir);
    retention.records.consents.default_days = days("retention.consents_days", raw.consents_days)?;
    retention.records.relationships.default_days =
        days("retention.relationships_days", raw.relationships_days)?;
    retention.records.opt_outs.default_days = days("retention.opt_outs_days", raw.opt_outs_days)?;
    for (name, c) in raw.controller {
        let key = |field: &str| format!("retention.controller.{name}.{field}");
        if !controllers.iter().any(|(c, _)| *c == name) {
            let mut known: Vec<&str> = controllers.iter().map(|(c, _)| *c).collect();
            known.sort_unstable();
            known.dedup();
            return Err(invalid(
                &format!("retention.controller.{name}"),
                &name,
                &format!(
                    "not the controller of any configured campaign (configured: {})",
                    known.join(", ")
                ),
            ));
        }
        for (field, value, ceiling) in [
            (
                "consents_days",
                c.consents_days,
                &mut retention.records.consents,
            ),
            (
                "relationships_days",
                c.relationships_days,
                &mut retention.records.relationships,
            ),
            (
                "opt_outs_days",
                c.opt_outs_days,
                &mut retention.records.opt_outs,
            ),
        ] {
            if let Some(v) = days(&key(field), value)? {
                ceiling.controllers.insert(name.clone(), v);
            }
        }
    }
    // The law's floor for consents: the US TSR keeps records of express
    // agreement 5 years (16 CFR 310.5(a)(5)), §7a UWG the proof of a German
    // consent 5 years from its grant and each use (found by review: a
    // controller calling only Germany could set 30 days); a ceiling counted
    // from the end of at least that keeps them 5 years from their making
    // and their last use.
    let floor = crate::decision_log::US_TSR_RECORD_DAYS;
    for (controller, law) in controllers {
        let Some(law) = law else {
            continue;
        };
        if let Some(days) = retention.records.consents.days(controller)
            && days < floor
        {
            let key = if retention
                .records
                .consents
                .controllers
                .contains_key(*controller)
            {
                format!("retention.controller.{controller}.consents_days")
            } else {
                "retention.consents_days".to_string()
            };
            return Err(invalid(
                &key,
                &days,
                &format!("controller {controller} {law}: at least {floor}"),
            ));
        }
    }
    retention.decisions_days = days("retention.decisions_days", raw.decisions_days)?;
    if let Some(d) = retention.decisions_days
        && d < log.retention_days
    {
        return Err(invalid(
            "retention.decisions_days",
            &d,
            &format!(
                "below log.retention_days = {}: decision rows are the record of each dial decision and must be kept at least that long (US TSR 16 CFR 310.5: 5 years)",
                log.retention_days
            ),
        ));
    }
    retention.backups_days = days("retention.backups_days", raw.backups_days)?;
    retention.backup_dir = raw.backup_dir.map(|d| base_dir.join(d));
    if retention.backups_days.is_some() && retention.backup_dir.is_none() {
        return Err(invalid(
            "retention.backups_days",
            &retention.backups_days.unwrap_or_default(),
            "needs retention.backup_dir (the directory whose backups expire)",
        ));
    }
    if let Some(minutes) = raw.purge_interval_minutes {
        if !(1..=10_080).contains(&minutes) {
            return Err(invalid(
                "retention.purge_interval_minutes",
                &minutes,
                "must be 1-10080",
            ));
        }
        retention.purge_interval_minutes = minutes;
    }
    if let Some(path) = raw.erasure_ledger {
        let path = base_dir.join(path);
        if path.is_dir() {
            return Err(invalid(
                "retention.erasure_ledger",
                &path.display(),
                "is a directory: name a file",
            ));
        }
        retention.erasure_ledger = path;
    }
    Ok(retention)
}

/// What one purge run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunReport {
    pub at: Option<Timestamp>,
    pub dry_run: bool,
    #[serde(flatten)]
    pub records: PurgeCounts,
    pub decisions_deleted: u64,
    pub backups_deleted: u64,
    pub error: Option<String>,
}

/// The scheduled purge as `/status` shows it.
#[derive(Debug, Default, Serialize)]
pub struct RetentionStatus {
    pub enabled: bool,
    pub interval_minutes: u64,
    pub last_run: Option<RunReport>,
    pub next_run: Option<Timestamp>,
}

/// The shared state of the scheduled purge.
#[derive(Debug, Default)]
pub struct Schedule {
    status: Mutex<RetentionStatus>,
}

impl Schedule {
    pub fn snapshot(&self) -> serde_json::Value {
        serde_json::to_value(&*self.status.lock().expect("retention status lock"))
            .unwrap_or_default()
    }
}

/// Runs one purge: expired backups, decision rows past the ceiling, then
/// the contact records (whose trail event carries every count).
pub fn run_once(
    config: &Config,
    store: &ContactStore,
    now: Timestamp,
    dry_run: bool,
    actor: &str,
) -> RunReport {
    let mut report = RunReport {
        at: Some(now),
        dry_run,
        ..RunReport::default()
    };
    let retention = &config.retention;
    let mut errors = Vec::new();
    if let (Some(days), Some(dir)) = (retention.backups_days, &retention.backup_dir) {
        match expire_backups(dir, days, now, dry_run) {
            Ok(deleted) => report.backups_deleted = deleted.len() as u64,
            Err(err) => errors.push(format!("backups: {err}")),
        }
    }
    if let Some(days) = retention.decisions_days {
        match purge_decisions(config, days, now, dry_run) {
            Ok(n) => report.decisions_deleted = n,
            Err(err) => errors.push(format!("decisions: {err:#}")),
        }
    }
    let details = serde_json::json!({
        "decisions_deleted": report.decisions_deleted,
        "backups_deleted": report.backups_deleted,
    });
    match store.purge_retention(&retention.records, now, dry_run, actor, details) {
        Ok(counts) => report.records = counts,
        Err(err) => errors.push(format!("contact records: {err}")),
    }
    if !errors.is_empty() {
        report.error = Some(errors.join("; "));
    }
    report
}

/// Deletes (or counts) the decisions older than `days`, checkpointing the
/// cut as `audit purge` does.
fn purge_decisions(
    config: &Config,
    days: u32,
    now: Timestamp,
    dry_run: bool,
) -> anyhow::Result<u64> {
    let limit = purge_limit(config, days, None, now);
    let db = decision_log::database_path(&config.server.data_dir);
    if !db.exists() {
        return Ok(0);
    }
    if dry_run {
        return Ok(audit::purgeable(&db, &limit)?);
    }
    let key = config
        .log
        .checkpoint_key_file
        .as_deref()
        .map(decision_log::checkpoint::load_key)
        .transpose()?;
    // The purge checkpoints the anchor of each batch it commits.
    let summary = audit::purge(&db, &limit, key.as_ref())?;
    Ok(summary.removed)
}

/// Decisions made before this instant may go: `days` ago, but never inside
/// `log.retention_days` (the legal floor), the longest attempt-cap window
/// in force (the caps are counted from the log at start-up: a purged ALLOW
/// would be a call not counted) or the idempotency window (a repeated
/// request id must find its decision after a restart).
pub fn decisions_cutoff(config: &Config, days: u32, now: Timestamp) -> Timestamp {
    now.checked_sub(decisions_span(config, days))
        .unwrap_or(Timestamp::UNIX_EPOCH)
}

/// How far back a purge keeps the log, for [`audit::PurgeLimit`]: the
/// whole span of [`decisions_cutoff`] back from the clock, and the
/// decisions a restart reads back (the longest attempt-cap window and the
/// idempotency window, and the clock-step tolerance beyond them) back
/// from the latest decision logged.
pub fn purge_limit(
    config: &Config,
    days: u32,
    before: Option<Timestamp>,
    now: Timestamp,
) -> audit::PurgeLimit {
    let counted = counted_span(config);
    audit::PurgeLimit {
        before,
        keep: record_span(config, days).max(counted),
        counted: counted.saturating_add(config.log.clock_step_tolerance()),
        now,
    }
}

/// The longest attempt-cap window and the idempotency window: what a
/// restart reads back from the log.
fn counted_span(config: &Config) -> jiff::SignedDuration {
    let idempotency = jiff::SignedDuration::from_secs(
        i64::try_from(config.log.idempotency_window_seconds).unwrap_or(i64::MAX),
    );
    crate::policy::Policies::compile(config)
        .longest_cap_window()
        .map_or(idempotency, |window| window.max(idempotency))
}

/// `days`, never below `log.retention_days` nor, for calls to the US and
/// its territories, 5 years (US TSR 16 CFR 310.5).
fn record_span(config: &Config, days: u32) -> jiff::SignedDuration {
    let mut days = days.max(config.log.retention_days);
    if config.campaigns.iter().any(|c| {
        c.destinations
            .iter()
            .any(|d| crate::statutes::us::tsr_reaches(d.as_str()))
    }) {
        days = days.max(crate::decision_log::US_TSR_RECORD_DAYS);
    }
    jiff::SignedDuration::from_hours(i64::from(days) * 24)
}

fn decisions_span(config: &Config, days: u32) -> jiff::SignedDuration {
    record_span(config, days).max(counted_span(config))
}

/// The scheduled purge of a running server: at start, then every
/// `purge_interval_minutes`; each run is logged, kept for `/status` and
/// written to the trail.
pub async fn scheduled(
    config: std::sync::Arc<Config>,
    store: std::sync::Arc<ContactStore>,
    schedule: std::sync::Arc<Schedule>,
) {
    let interval = Duration::from_secs(config.retention.purge_interval_minutes * 60);
    {
        let mut status = schedule.status.lock().expect("retention status lock");
        status.enabled = config.retention.purges_anything();
        status.interval_minutes = config.retention.purge_interval_minutes;
    }
    if !config.retention.purges_anything() {
        return;
    }
    loop {
        let (config_now, store_now) = (
            std::sync::Arc::clone(&config),
            std::sync::Arc::clone(&store),
        );
        let report = tokio::task::spawn_blocking(move || {
            run_once(
                &config_now,
                &store_now,
                Timestamp::now(),
                false,
                "retention:scheduled",
            )
        })
        .await
        .unwrap_or_else(|err| RunReport {
            at: Some(Timestamp::now()),
            error: Some(format!("purge task failed: {err}")),
            ..RunReport::default()
        });
        match &report.error {
            None => tracing::info!(
                consents = report.records.consents_deleted,
                withdrawals_kept = report.records.withdrawals_kept,
                relationships = report.records.relationships_deleted,
                opt_outs = report.records.opt_outs_deleted,
                decisions = report.decisions_deleted,
                backups = report.backups_deleted,
                "retention purge done"
            ),
            Some(err) => {
                tracing::error!(error = %err, "retention purge failed (retried at the next run)")
            }
        }
        {
            let mut status = schedule.status.lock().expect("retention status lock");
            status.last_run = Some(report);
            status.next_run = Timestamp::now()
                .checked_add(jiff::SignedDuration::try_from(interval).unwrap_or_default())
                .ok();
        }
        tokio::time::sleep(interval).await;
    }
}

/// What `policy show` prints about retention: per record type, when what
/// is deleted, for one controller.
#[derive(Debug, Clone, Serialize)]
pub struct RetentionReport {
    pub controller: String,
    pub rules: Vec<RetentionLine>,
    /// What the next purge would delete now (when the store could be read).
    pub next_purge: Option<RunReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RetentionLine {
    pub record: &'static str,
    pub deleted: String,
}

/// The retention rules of `controller`, and (when the stores exist) what
/// a purge would delete at `at`.
pub fn report(config: &Config, controller: &str, at: Timestamp) -> RetentionReport {
    let r = &config.retention;
    let after = |days: Option<u32>, from: &str, never: &str| match days {
        Some(d) => format!("{d} days after {from}"),
        None => never.to_string(),
    };
    let kept = "kept (no ceiling configured)";
    let mut rules = vec![
        RetentionLine {
            record: "consents",
            deleted: format!(
                "{}; a consent in force never; the latest withdrawal of each number and purpose is kept without its evidence (it ends consents given before it)",
                after(
                    r.records.consents.days(controller),
                    "they are withdrawn or expire",
                    kept
                )
            ),
        },
        RetentionLine {
            record: "relationships",
            deleted: format!(
                "{}; ongoing ones never",
                after(r.records.relationships.days(controller), "they end", kept)
            ),
        },
        RetentionLine {
            record: "opt-outs",
            deleted: format!(
                "in force: never; expired: {}",
                after(
                    r.records.opt_outs.days(controller),
                    "they expire",
                    "kept (no ceiling configured)"
                )
            ),
        },
        RetentionLine {
            record: "decision log",
            deleted: match r.decisions_days {
                Some(d) => format!(
                    "{d} days after the decision (floor log.retention_days = {})",
                    config.log.retention_days
                ),
                None => format!(
                    "kept until `audit purge` (which keeps log.retention_days = {})",
                    config.log.retention_days
                ),
            },
        },
        RetentionLine {
            record: "backups",
            deleted: match (&r.backup_dir, r.backups_days) {
                (Some(dir), Some(d)) => {
                    format!("{d} days after they were made, in {}", dir.display())
                }
                _ => {
                    "not expired by dialgate (retention.backups_days and backup_dir not set)".into()
                }
            },
        },
        RetentionLine {
            record: "erasure ledger",
            deleted: format!(
                "kept ({}; outside backups: hashes of erased, opted-out and withdrawn numbers, re-applied by restore)",
                r.erasure_ledger.display()
            ),
        },
    ];
    rules.push(RetentionLine {
        record: "schedule",
        deleted: if r.purges_anything() {
            format!(
                "the running server purges at start and every {} minutes; `dialgate retention purge` when it is stopped",
                r.purge_interval_minutes
            )
        } else {
            "nothing to purge".into()
        },
    });
    let contacts_db = crate::contacts::database_path(&config.server.data_dir);
    let next_purge = contacts_db
        .exists()
        .then(|| ContactStore::open_unindexed(&config.server.data_dir).ok())
        .flatten()
        .map(|store| run_once(config, &store, at, true, "policy show"));
    RetentionReport {
        controller: controller.to_string(),
        rules,
        next_purge,
    }
}

impl std::fmt::Display for RetentionReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "\nretention (controller {}):", self.controller)?;
        for line in &self.rules {
            writeln!(f, "  {:<16} {}", line.record, line.deleted)?;
        }
        if let Some(next) = &self.next_purge {
            writeln!(
                f,
                "  a purge now would delete: {} consents ({} withdrawals kept without evidence), {} relationships, {} expired opt-outs, {} decisions, {} backups{}",
                next.records.consents_deleted,
                next.records.withdrawals_kept,
                next.records.relationships_deleted,
                next.records.opt_outs_deleted,
                next.decisions_deleted,
                next.backups_deleted,
                next.error
                    .as_ref()
                    .map(|e| format!(" (error: {e})"))
                    .unwrap_or_default()
            )?;
        }
        Ok(())
    }
}

/// The manifest every backup carries (`manifest.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// When the copy started: every change before it is in the backup.
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    pub version: String,
    pub files: Vec<String>,
    /// The erasure ledger's id when the backup was made (restore requires
    /// the same ledger, holding at least `ledger_entries` lines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger_entries: Option<u64>,
}

pub const MANIFEST: &str = "manifest.json";

/// Reads a backup's manifest.
///
/// # Errors
/// When it is missing or unreadable, naming the file.
pub fn read_manifest(dir: &Path) -> anyhow::Result<Manifest> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&path).map_err(|err| {
        anyhow::anyhow!(
            "{}: {err} (not a backup made by `dialgate backup` of this version)",
            path.display()
        )
    })?;
    serde_json::from_str(&text).map_err(|err| anyhow::anyhow!("{}: {err}", path.display()))
}

/// Deletes (or, dry, lists) the backups in `dir` made more than `days`
/// ago: subdirectories holding a manifest. Anything else is left alone.
///
/// # Errors
/// When `dir` cannot be read or a backup cannot be removed.
pub fn expire_backups(
    dir: &Path,
    days: u32,
    now: Timestamp,
    dry_run: bool,
) -> std::io::Result<Vec<PathBuf>> {
    let cutoff = now
        .checked_sub(jiff::SignedDuration::from_hours(i64::from(days) * 24))
        .unwrap_or(Timestamp::MIN);
    let mut expired = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(expired),
        Err(err) => return Err(err),
    };
    let mut backups = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if !path.is_dir() {
            continue;
        }
        let Ok(manifest) = read_manifest(&path) else {
            continue;
        };
        backups.push((manifest.started_at, path));
    }
    // The newest backup is always kept, however old (backups stopped):
    // expiry never leaves none.
    backups.sort();
    backups.pop();
    for (started_at, path) in backups {
        if started_at < cutoff {
            if !dry_run {
                std::fs::remove_dir_all(&path)?;
            }
            expired.push(path);
        }
    }
    expired.sort();
    Ok(expired)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log under a configuration with an FR campaign (4 calls in 30
    /// days), holding 4 ALLOWs of one number made 20 days before `now`,
    /// written by a server that started with that configuration.
    fn log_with_allows_20_days_old(
        dir: &Path,
        now: Timestamp,
    ) -> (Config, impl Fn(Timestamp) -> usize) {
        use crate::decision_log::{DecisionRecord, LocalLog, StartupScan};
        use jiff::SignedDuration;
        let text = format!(
            "[server]\ndata_dir = \"{}\"\n[log]\nretention_days = 0\n[retention]\ndecisions_days = 1\n\
             [[campaign]]\nid = \"fr\"\ncontroller = \"acme\"\npurpose = \"marketing\"\n\
             default_region = \"FR\"\ndestinations = [\"FR\"]\n",
            dir.display()
        );
        let config = Config::parse(&text, "test", Path::new(".")).unwrap();
        let window = crate::policy::Policies::compile(&config)
            .longest_cap_window()
            .unwrap();
        assert_eq!(
            window,
            SignedDuration::from_hours(30 * 24),
            "FR: 4 in 30 days"
        );
        let db = decision_log::database_path(dir);
        let log_config = config.log.clone();
        let keep = now.duration_since(decisions_cutoff(&config, 1, now));
        let scan = move |now: Timestamp| StartupScan {
            idempotency_since: now - SignedDuration::from_hours(1),
            recent_at_most: 1000,
            attempts_since: Some(now - window),
            now,
            clock_step_tolerance: log_config.clock_step_tolerance(),
            keep,
        };
        let (log, _) = LocalLog::open(&db, &config.log, scan(now)).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for i in 0..4 {
            let at = now - SignedDuration::from_hours(24 * 20) + SignedDuration::from_mins(i);
            runtime
                .block_on(log.append(DecisionRecord {
                    decision_id: format!("d-{i}"),
                    ..crate::decision_log::writer::tests::allow(at)
                }))
                .unwrap();
        }
        log.close();
        drop(log);
        let log_config = config.log.clone();
        let counted = move |now: Timestamp| {
            let (log, startup) = LocalLog::open(&db, &log_config, scan(now)).unwrap();
            log.close();
            startup.allowed.len()
        };
        assert_eq!(counted(now), 4);
        (config, counted)
    }

    /// Found by review: the purge cut at the wall clock less the cap
    /// window. Run with the clock 15 days ahead (a VM before NTP), it
    /// deleted ALLOWs of the last 30 days; a restart once the clock was
    /// right no longer counted them, and the cap let a fifth call through.
    #[test]
    fn test_a_purge_with_the_clock_ahead_keeps_the_allows_the_caps_count() {
        let dir = tempfile::tempdir().unwrap();
        let now = Timestamp::now();
        let (config, counted) = log_with_allows_20_days_old(dir.path(), now);
        let ahead = now + jiff::SignedDuration::from_hours(24 * 15);
        assert_eq!(purge_decisions(&config, 1, ahead, true).unwrap(), 0);
        assert_eq!(purge_decisions(&config, 1, ahead, false).unwrap(), 0);
        assert_eq!(
            counted(now),
            4,
            "every ALLOW inside the cap window is counted"
        );
    }

    /// Found by review: a purge run with another configuration (without
    /// the capped campaign) deleted ALLOWs the server still counted. The
    /// server records at start how far back it needs the log.
    #[test]
    fn test_a_purge_under_another_configuration_keeps_what_the_server_needs() {
        let dir = tempfile::tempdir().unwrap();
        let now = Timestamp::now();
        let (_, counted) = log_with_allows_20_days_old(dir.path(), now);
        let without_caps = Config::parse(
            &format!(
                "[server]\ndata_dir = \"{}\"\n[log]\nretention_days = 0\n[retention]\ndecisions_days = 1\n",
                dir.path().display()
            ),
            "test",
            Path::new("."),
        )
        .unwrap();
        assert_eq!(purge_decisions(&without_caps, 1, now, false).unwrap(), 0);
        assert_eq!(counted(now), 4);
        let db = decision_log::database_path(dir.path());
        let explicit = purge_limit(
            &without_caps,
            0,
            Some(now - jiff::SignedDuration::from_hours(24 * 2)),
            now,
        );
        let refused = audit::purge(&db, &explicit, None).unwrap_err().to_string();
        assert!(refused.contains("nothing purged"), "{refused}");
        assert_eq!(counted(now), 4);
    }

    fn parse(text: &str) -> Result<Retention, Invalid> {
        let raw: RawRetention = toml::from_str(text).unwrap();
        validate(
            raw,
            &LogConfig::default(),
            &[
                ("acme", None),
                ("beta", None),
                ("usco", Some(US_CONSENT_RECORDS)),
                ("deco", Some(DE_CONSENT_PROOF)),
            ],
            Path::new("/etc/dialgate"),
            Path::new("/var/lib/dialgate"),
        )
    }

    #[test]
    fn test_ceilings_are_bounded_and_named_on_error() {
        let ok = parse(
            "consents_days = 730\nopt_outs_days = 30\n[controller.acme]\nconsents_days = 365\n[controller.usco]\nconsents_days = 2000\n[controller.deco]\nconsents_days = 2000\n",
        )
        .unwrap();
        assert_eq!(ok.records.consents.days("acme"), Some(365));
        assert_eq!(ok.records.consents.days("beta"), Some(730));
        assert_eq!(ok.records.relationships.days("acme"), None);
        assert_eq!(
            ok.erasure_ledger,
            Path::new("/var/lib/dialgate/erasure-ledger.jsonl")
        );
        for (text, key) in [
            ("consents_days = 0", "retention.consents_days"),
            ("relationships_days = 40000", "retention.relationships_days"),
            (
                "[controller.ACME]\nconsents_days = 1",
                "retention.controller.ACME",
            ),
            (
                "[controller.acme]\nopt_outs_days = 0",
                "retention.controller.acme.opt_outs_days",
            ),
            ("decisions_days = 365", "retention.decisions_days"),
            ("backups_days = 30", "retention.backups_days"),
            (
                "purge_interval_minutes = 0",
                "retention.purge_interval_minutes",
            ),
        ] {
            let (k, _, problem) = parse(text).unwrap_err();
            assert_eq!(k, key, "{text}: {problem}");
        }
        let (_, _, problem) = parse("decisions_days = 365").unwrap_err();
        assert!(problem.contains("log.retention_days = 1826"), "{problem}");
        assert_eq!(
            parse("decisions_days = 1826").unwrap().decisions_days,
            Some(1826)
        );
        // A controller calling the US keeps consents 5 years at least.
        let (key, _, problem) = parse("consents_days = 730").unwrap_err();
        assert_eq!(key, "retention.consents_days");
        assert!(problem.contains("usco calls the US"), "{problem}");
        let (key, _, _) = parse("[controller.usco]\nconsents_days = 30").unwrap_err();
        assert_eq!(key, "retention.controller.usco.consents_days");
        assert!(
            parse("consents_days = 30\n[controller.usco]\nconsents_days = 1826\n[controller.deco]\nconsents_days = 1826").is_ok()
        );
        // And one calling Germany (§7a UWG).
        let (key, _, problem) =
            parse("consents_days = 30\n[controller.usco]\nconsents_days = 1826").unwrap_err();
        assert_eq!(key, "retention.consents_days");
        assert!(problem.contains("deco calls Germany"), "{problem}");
    }

    /// A decision ceiling shorter than an attempt cap's window would purge
    /// ALLOWs the caps count at start-up (a wrong ALLOW after a restart).
    #[test]
    fn test_decisions_inside_a_cap_window_are_never_purged() {
        let text = r#"
[log]
retention_days = 0
[retention]
decisions_days = 1
[[campaign]]
id = "fr"
controller = "acme"
purpose = "marketing"
default_region = "FR"
destinations = ["FR"]
[campaign.attempt_limit]
max_attempts = 3
window_days = 60
"#;
        let config = Config::parse(text, "test", Path::new(".")).unwrap();
        let now: Timestamp = "2026-11-25T10:00:00Z".parse().unwrap();
        assert_eq!(
            decisions_cutoff(&config, 1, now),
            now - jiff::SignedDuration::from_hours(24 * 60)
        );
        let without_caps = Config::parse(
            "[log]\nretention_days = 0\n[retention]\ndecisions_days = 1\n",
            "test",
            Path::new("."),
        )
        .unwrap();
        assert_eq!(
            decisions_cutoff(&without_caps, 1, now),
            now - jiff::SignedDuration::from_hours(24),
            "the idempotency window (1 hour) is shorter"
        );
        // A campaign calling the US keeps every decision row 5 years.
        let us = Config::parse(
            &text.replace("destinations = [\"FR\"]", "destinations = [\"FR\", \"US\"]"),
            "test",
            Path::new("."),
        )
        .unwrap();
        assert_eq!(
            decisions_cutoff(&us, 1, now),
            now - jiff::SignedDuration::from_hours(24 * 1826)
        );
        // And the US territories, which the TSR reaches too.
        let pr = Config::parse(
            &text.replace("destinations = [\"FR\"]", "destinations = [\"FR\", \"PR\"]"),
            "test",
            Path::new("."),
        )
        .unwrap();
        assert_eq!(
            decisions_cutoff(&pr, 1, now),
            now - jiff::SignedDuration::from_hours(24 * 1826)
        );
    }

    #[test]
    fn test_only_backups_past_their_ceiling_are_expired() {
        let dir = tempfile::tempdir().unwrap();
        let now: Timestamp = "2026-11-25T10:00:00Z".parse().unwrap();
        let backup = |name: &str, days_ago: i64| {
            let path = dir.path().join(name);
            std::fs::create_dir(&path).unwrap();
            let at = now - jiff::SignedDuration::from_hours(24 * days_ago);
            let manifest = Manifest {
                started_at: at,
                finished_at: at,
                version: "x".into(),
                files: vec![],
                ledger_id: None,
                ledger_entries: None,
            };
            std::fs::write(
                path.join(MANIFEST),
                serde_json::to_string(&manifest).unwrap(),
            )
            .unwrap();
        };
        backup("old", 40);
        backup("new", 10);
        std::fs::create_dir(dir.path().join("not-a-backup")).unwrap();
        let dry = expire_backups(dir.path(), 30, now, true).unwrap();
        assert_eq!(dry, vec![dir.path().join("old")]);
        assert!(dir.path().join("old").exists());
        expire_backups(dir.path(), 30, now, false).unwrap();
        assert!(!dir.path().join("old").exists());
        assert!(dir.path().join("new").exists());
        assert!(dir.path().join("not-a-backup").exists());
        // Backups stopped: the newest is kept, however old.
        backup("older", 90);
        let expired = expire_backups(dir.path(), 5, now, false).unwrap();
        assert_eq!(expired, vec![dir.path().join("older")]);
        assert!(dir.path().join("new").exists());
    }
}
