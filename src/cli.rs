//! The `dialgate` command line: one binary, a subcommand per job.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use jiff::Timestamp;
use jiff::civil::Date;

use crate::config::Config;
use crate::contacts::ContactStore;
use crate::contacts::service::Records;
use crate::decision_log::{self, audit};
use crate::policy::Policies;
use crate::registry::snapshot::ImportMode;
use crate::registry::{self, RegistrySet, import};

/// Outbound-call compliance gateway.
#[derive(Debug, Parser)]
#[command(name = "dialgate", version, about)]
pub struct Cli {
    /// Configuration file [default: ./dialgate.toml if it exists, else the built-in demo config]
    #[arg(long, global = true, env = "DIALGATE_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gRPC API and the HTTP status endpoint until SIGINT/SIGTERM
    Serve,
    /// Registry snapshots
    #[command(subcommand)]
    Registry(RegistryCommand),
    /// The decision log
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Bulk consents from a CRM
    #[command(subcommand)]
    Consent(ConsentCommand),
    /// Bulk opt-outs
    #[command(subcommand)]
    Suppression(SuppressionCommand),
    /// The change trail of contact records
    #[command(subcommand)]
    Trail(TrailCommand),
    /// The effective rules (statutes, overrides, campaign settings)
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Check the configuration without starting anything
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Copy the stores (decision log, contact records, checkpoints, registry snapshots) to a directory, consistently, while the server runs; or expire old backups
    Backup {
        /// Target directory (created; must not hold a previous backup)
        #[arg(long, required_unless_present = "expire", conflicts_with = "expire")]
        to: Option<PathBuf>,
        /// Delete the backups in retention.backup_dir made more than retention.backups_days ago
        #[arg(long)]
        expire: bool,
        /// With --expire: list them, delete nothing
        #[arg(long, requires = "expire")]
        dry_run: bool,
    },
    /// Put a backup's contact records back (the server must be stopped) and re-apply every erasure, opt-out and withdrawal the erasure ledger recorded since it was made
    Restore {
        /// A backup directory made by `dialgate backup`
        #[arg(long)]
        from: PathBuf,
        /// Restore although the erasure ledger is missing (erasures made after the backup then come back)
        #[arg(long)]
        without_ledger: bool,
    },
    /// Storage limitation: purge what is past its retention ceiling
    #[command(subcommand)]
    Retention(RetentionCommand),
    /// The storage backend
    #[command(subcommand)]
    Store(StoreCommand),
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy this gateway's data (the files under server.data_dir) into the shared database of [store] (the server must be stopped; safe to run again)
    Migrate {
        /// The backend to copy to (only postgres)
        #[arg(long, value_enum)]
        to: StoreTarget,
    },
    /// After a failover or a restore of the shared database, once you have checked what the new primary lacks: let this replica decide on it (its decisions stopped at the change)
    AcceptDatabase,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StoreTarget {
    Postgres,
}

#[derive(Debug, Subcommand)]
pub enum RetentionCommand {
    /// Run the retention purge once (a running server purges on its own schedule; stop it to purge now)
    Purge {
        /// Count what would be deleted; delete nothing (also while the server runs)
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Print the rules a campaign is held to: each with its value, its source and the dates it holds
    Show {
        /// Campaign id
        #[arg(long)]
        campaign: String,
        /// One destination region (e.g. FR) [default: every destination of the campaign]
        #[arg(long)]
        destination: Option<String>,
        /// The instant (RFC 3339) or day (YYYY-MM-DD, midnight UTC) [default: now]
        #[arg(long)]
        at: Option<String>,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and its compiled policy; exit non-zero naming every blocked campaign destination
    Check,
}

#[derive(Debug, Subcommand)]
pub enum ConsentCommand {
    /// Import consents from a CSV file (header row; see README for the columns)
    Import {
        #[arg(long)]
        file: PathBuf,
        /// Validate only; store nothing
        #[arg(long)]
        dry_run: bool,
        /// No server runs on this data directory (a first load): store the
        /// records faster, building the number index once at the end (into
        /// a store without consents: one transaction, other commands wait);
        /// `serve` refuses to start until the import ends (SQLite store)
        #[arg(long)]
        offline: bool,
        /// Accept a plain file whose last line has no line end: refused
        /// otherwise, as a file cut short (an interrupted download or
        /// copy) whose cut number may be another valid number
        #[arg(long)]
        accept_unterminated_last_line: bool,
    },
    /// Correct stored consents from a CSV file (GDPR art. 16; see README for the columns)
    Rectify {
        #[arg(long)]
        file: PathBuf,
        /// Check only; change nothing
        #[arg(long)]
        dry_run: bool,
        /// Accept a plain file whose last line has no line end: refused
        /// otherwise, as a file cut short (an interrupted download or
        /// copy) whose cut number may be another valid number
        #[arg(long)]
        accept_unterminated_last_line: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SuppressionCommand {
    /// Import opt-outs from a CSV file (header row; see README for the columns)
    Import {
        #[arg(long)]
        file: PathBuf,
        /// Validate only; store nothing
        #[arg(long)]
        dry_run: bool,
        /// No server runs on this data directory (a first load): store the
        /// records faster, building the number index once at the end (into
        /// a store without consents: one transaction, other commands wait);
        /// `serve` refuses to start until the import ends (SQLite store)
        #[arg(long)]
        offline: bool,
        /// Accept a plain file whose last line has no line end: refused
        /// otherwise, as a file cut short (an interrupted download or
        /// copy) whose cut number may be another valid number
        #[arg(long)]
        accept_unterminated_last_line: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TrailCommand {
    /// Write every change to contact records as JSON lines, oldest first
    Export,
}

#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Load a registry file into a new snapshot (a running server picks it up within seconds)
    Import(Box<ImportArgs>),
    /// Registries with version, size, checked-at, valid-until and staleness
    List {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Shared database only: make an older stored version current again, marked as a deliberate rollback (replicas install it)
    Rollback {
        /// Registry id from the configuration
        #[arg(long)]
        registry: String,
        /// The stored version to go back to
        #[arg(long)]
        to: u64,
    },
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Registry id from the configuration
    #[arg(long)]
    registry: String,
    /// File to import
    #[arg(long)]
    file: PathBuf,
    /// File format: auto, lines, ftc, tps, delimited, fixed (gzip and zip are detected)
    #[arg(long, default_value = "auto")]
    format: String,
    /// delimited: the field separator (one character; `\t` for tab)
    #[arg(long, default_value = ",")]
    delimiter: String,
    /// delimited: column (1-based) holding the whole number
    #[arg(long)]
    phone_column: Option<usize>,
    /// delimited: column of the area code (with --number-column)
    #[arg(long)]
    area_column: Option<usize>,
    /// delimited: column of the rest of the number
    #[arg(long)]
    number_column: Option<usize>,
    /// delimited change lists: column saying whether a line adds or deletes
    #[arg(long)]
    action_column: Option<usize>,
    /// delimited change lists: values of the action column that add
    #[arg(long, value_delimiter = ',', default_value = "A,ADD,+")]
    add_values: Vec<String>,
    /// delimited change lists: values of the action column that delete
    #[arg(long, value_delimiter = ',', default_value = "D,DEL,DELETE,-")]
    remove_values: Vec<String>,
    /// delimited: header lines to skip
    #[arg(long, default_value_t = 0)]
    skip_lines: usize,
    /// fixed: START:LENGTH (1-based) of the whole number
    #[arg(long)]
    phone_field: Option<String>,
    /// fixed: START:LENGTH of the area code (with --number-field)
    #[arg(long)]
    area_field: Option<String>,
    /// fixed: START:LENGTH of the rest of the number
    #[arg(long)]
    number_field: Option<String>,
    /// Bad lines tolerated (they are written to --rejects-file); default 0: any bad line fails the import
    #[arg(long, default_value_t = 0)]
    max_rejects: u64,
    /// Where tolerated bad lines are written [default: FILE.rejects]
    #[arg(long)]
    rejects_file: Option<PathBuf>,
    /// replace: the file is the whole list (allow-lists: the controller's whole list); add; remove
    #[arg(long, value_enum, default_value_t = ModeArg::Replace)]
    mode: ModeArg,
    /// Date the registry data was checked (YYYY-MM-DD) [default: today, UTC]
    #[arg(long, value_parser = crate::model::parse_date_arg)]
    checked_at: Option<Date>,
    /// Allow-lists: the controller the numbers are cleared for
    #[arg(long)]
    controller: Option<String>,
    /// Block-lists: E.164 prefixes the data covers, e.g. +1212,+1646, or +1 for a full national list (required with --mode replace)
    #[arg(long, value_delimiter = ',')]
    covers: Option<Vec<String>>,
    /// Validate only; write nothing
    #[arg(long)]
    dry_run: bool,
    /// Block-list change lists (--mode add): the check date of the full list
    /// (or last change list) this one continues; only then does the data's
    /// check date move forward to --checked-at
    #[arg(long, value_parser = crate::model::parse_date_arg)]
    changes_since: Option<Date>,
    /// Allow-lists: a file of the numbers the registry answered as OPPOSED
    /// for --controller on --checked-at (one per line). Only such answers
    /// date a registration for the `consent_after_registration` policy.
    #[arg(long)]
    opposed: Option<PathBuf>,
    /// Allow-lists: a file of the numbers submitted to the registry for
    /// this answer (one per line); those the answer (--file) leaves out are
    /// recorded as OPPOSED for --controller on --checked-at, and an answer
    /// holding a number not submitted is refused. Required, or --opposed,
    /// with --mode add.
    #[arg(long)]
    submitted: Option<PathBuf>,
    /// Accept an import that holds no numbers, or shrinks the list (an allow-list: the controller's list) by more than --max-shrink-percent
    #[arg(long)]
    allow_shrink: bool,
    /// The largest shrink accepted without --allow-shrink, in percent
    #[arg(long, default_value_t = import::DEFAULT_MAX_SHRINK_PERCENT, value_parser = clap::value_parser!(u8).range(0..=100))]
    max_shrink_percent: u8,
    /// Block-lists: accept a file whose numbers do not span --covers (none under a covered prefix, or all under one longer prefix)
    #[arg(long)]
    allow_narrow_file: bool,
    /// Accept an import dated before newer data already held (going back to an older answer or list on purpose): allow-lists, an answer checked before the controller's last --mode replace; block-lists, a replace, remove or change list's deletions dated before the newest list applied
    #[arg(long)]
    older_than_replace: bool,
    /// Accept a plain file (and --submitted / --opposed files) whose last line has no line end: refused otherwise, as a file cut short (an interrupted download or copy) whose cut number may be another valid number
    #[arg(long)]
    accept_unterminated_last_line: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ModeArg {
    Replace,
    Add,
    Remove,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Write logged decisions to stdout, oldest first
    Export {
        /// Only decisions about this number (any notation, or as sent); `-`
        /// reads it from the first line of stdin, out of the process list
        #[arg(long)]
        number: Option<String>,
        /// From this instant (RFC 3339) or date (YYYY-MM-DD, UTC), inclusive
        #[arg(long)]
        since: Option<String>,
        /// Up to this instant or date, exclusive
        #[arg(long)]
        until: Option<String>,
        /// Only decisions of this campaign
        #[arg(long)]
        campaign: Option<String>,
        #[arg(long, value_enum, default_value_t = FormatArg::Jsonl)]
        format: FormatArg,
    },
    /// Check the decision log is complete and unaltered; exit 0 only if so
    Verify {
        /// A checkpoint kept elsewhere (saved output of `audit checkpoint`) the log must still contain
        #[arg(long)]
        anchor: Option<PathBuf>,
    },
    /// Print the log's current head (seq, hash, time; signed with the checkpoint key) for external anchoring
    Checkpoint,
    /// Remove decisions older than the retention period, keeping the chain verifiable
    Purge {
        /// Remove decisions made before this instant or date [default: the oldest allowed]; never inside log.retention_days, the longest attempt-cap window or the idempotency window
        #[arg(long)]
        before: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FormatArg {
    Jsonl,
    Csv,
}

/// Runs the parsed command line.
///
/// # Errors
/// Any failure, as a one-line message for stderr.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::load(cli.config.as_deref())?;
    init_tracing(config.server.log_format);
    refuse_the_demo_config_away_from_its_data(&config, &cli.command)?;
    refuse_unbuilt_on_postgres(&config, &cli.command)?;
    match cli.command {
        Command::Serve => serve(config),
        Command::Registry(RegistryCommand::Import(args)) => registry_import(&config, args),
        Command::Registry(RegistryCommand::List { json }) => registry_list(&config, json),
        Command::Registry(RegistryCommand::Rollback { registry, to }) => {
            registry_rollback(&config, &registry, to)
        }
        Command::Audit(AuditCommand::Export {
            number,
            since,
            until,
            campaign,
            format,
        }) => audit_export(&config, number, since, until, campaign, format),
        Command::Audit(AuditCommand::Verify { anchor }) => audit_verify(&config, anchor),
        Command::Audit(AuditCommand::Checkpoint) => audit_checkpoint(&config),
        Command::Audit(AuditCommand::Purge { before }) => audit_purge(&config, before),
        Command::Consent(ConsentCommand::Import {
            file,
            dry_run,
            offline,
            accept_unterminated_last_line,
        }) => refuse_cut_short(&file, accept_unterminated_last_line)
            .and_then(|()| contact_import(&config, &file, dry_run, offline, true)),
        Command::Consent(ConsentCommand::Rectify {
            file,
            dry_run,
            accept_unterminated_last_line,
        }) => refuse_cut_short(&file, accept_unterminated_last_line)
            .and_then(|()| consent_rectify(&config, &file, dry_run)),
        Command::Suppression(SuppressionCommand::Import {
            file,
            dry_run,
            offline,
            accept_unterminated_last_line,
        }) => refuse_cut_short(&file, accept_unterminated_last_line)
            .and_then(|()| contact_import(&config, &file, dry_run, offline, false)),
        Command::Trail(TrailCommand::Export) => trail_export(&config),
        Command::Backup {
            to: Some(to),
            expire: false,
            ..
        } => backup(&config, &to),
        Command::Backup { dry_run, .. } => backup_expire(&config, dry_run),
        Command::Restore {
            from,
            without_ledger,
        } => restore(&config, &from, without_ledger),
        Command::Retention(RetentionCommand::Purge { dry_run }) => {
            retention_purge(&config, dry_run)
        }
        Command::Policy(PolicyCommand::Show {
            campaign,
            destination,
            at,
            json,
        }) => policy_show(
            &config,
            &campaign,
            destination.as_deref(),
            at.as_deref(),
            json,
        ),
        Command::Config(ConfigCommand::Check) => config_check(&config),
        Command::Store(StoreCommand::Migrate {
            to: StoreTarget::Postgres,
        }) => store_migrate(&config),
        Command::Store(StoreCommand::AcceptDatabase) => store_accept_database(&config),
    }
}

/// A runtime for a command that talks to the shared database.
fn database_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")
}

/// The shared database of a `backend = "postgres"` configuration, or none.
fn postgres_settings(config: &Config) -> Option<&crate::store::PostgresSettings> {
    match &config.store {
        crate::store::StoreBackend::Postgres(settings) => Some(settings),
        crate::store::StoreBackend::Sqlite => None,
    }
}

async fn connect_shared(
    settings: &crate::store::PostgresSettings,
) -> anyhow::Result<crate::store::postgres::Pg> {
    crate::store::postgres::Pg::connect(settings)
        .await
        .with_context(|| format!("cannot open the shared database {}", settings.shown_url()))
}

/// Records the shared database's current history (cluster and timeline)
/// as the one this replica decides on (see `store::database_epoch`).
fn store_accept_database(config: &Config) -> anyhow::Result<()> {
    let crate::store::StoreBackend::Postgres(settings) = &config.store else {
        anyhow::bail!("store accept-database: [store] backend is not postgres");
    };
    let data_dir = &config.server.data_dir;
    database_runtime()?.block_on(async {
        let pg = crate::store::postgres::Pg::connect(settings).await?;
        let client = pg.client().await?;
        crate::private::create_dir_all(data_dir)?;
        let by = format!("{} on replica {}", cli_actor(), settings.replica_id);
        let (now, before) = crate::store::database_epoch::accept(&client, data_dir, &by).await?;
        match before {
            Some(before) if before != now => println!(
                "replica {}: now deciding on the shared database's {now} (it decided on {before})",
                settings.replica_id
            ),
            _ => println!(
                "replica {}: deciding on the shared database's {now}",
                settings.replica_id
            ),
        }
        Ok::<_, anyhow::Error>(())
    })
}

fn store_migrate(config: &Config) -> anyhow::Result<()> {
    database_runtime()?.block_on(crate::store::migrate::to_postgres(config, |line| {
        println!("{line}");
    }))
}

/// Without a configuration file the built-in demo configuration applies,
/// with its data in `./data`. An operator who forgot `--config` in another
/// directory would import opt-outs into a new store there, which no server
/// reads (and be told they were stored): with the built-in configuration,
/// only `serve` (which makes and seeds the demo's data directory), `policy`
/// and `config` run where that directory was not seeded (a `./data` of
/// something else is not the demo's).
fn refuse_the_demo_config_away_from_its_data(
    config: &Config,
    command: &Command,
) -> anyhow::Result<()> {
    if config.origin != crate::config::BUILT_IN_ORIGIN
        || matches!(
            command,
            Command::Serve | Command::Policy(_) | Command::Config(_)
        )
        || config
            .server
            .data_dir
            .join(crate::server::SEEDED_MARK)
            .exists()
    {
        return Ok(());
    }
    anyhow::bail!(
        "no configuration file (--config, DIALGATE_CONFIG or ./dialgate.toml) and no demo data directory {} here: give the configuration of the store to use (the built-in demo configuration runs only beside the data directory `dialgate serve` made and seeded)",
        config.server.data_dir.display()
    )
}

/// The commands that do not yet work on the shared PostgreSQL store refuse
/// to run on a configuration that asks for it: run on the local SQLite
/// files, they would decide or write where no other replica looks.
fn refuse_unbuilt_on_postgres(config: &Config, command: &Command) -> anyhow::Result<()> {
    if !matches!(config.store, crate::store::StoreBackend::Postgres(_)) {
        return Ok(());
    }
    match command {
        Command::Policy(_)
        | Command::Config(_)
        | Command::Serve
        | Command::Audit(_)
        | Command::Registry(_)
        | Command::Store(_)
        | Command::Consent(ConsentCommand::Import { .. })
        | Command::Suppression(SuppressionCommand::Import { .. }) => Ok(()),
        _ => anyhow::bail!(
            "{}: store.backend = \"postgres\" is not built yet for this command (see README, \"Several replicas\"); use backend = \"sqlite\"",
            config.origin
        ),
    }
}

fn policy_show(
    config: &Config,
    campaign: &str,
    destination: Option<&str>,
    at: Option<&str>,
    json: bool,
) -> anyhow::Result<()> {
    let at = match at {
        Some(text) => crate::model::parse_instant(text).with_context(|| {
            format!("--at {text:?}: expected RFC 3339 with an offset or a date alone (YYYY-MM-DD)")
        })?,
        None => Timestamp::now(),
    };
    let destination = destination
        .map(|d| {
            crate::number::Region::parse(d)
                .with_context(|| format!("--destination {d:?}: not a region code"))
        })
        .transpose()?;
    let policies = Policies::compile(config);
    let report = crate::policy::report(&policies, config, campaign, destination, at)?;
    let retention = crate::retention::report(config, &report.controller, at);
    if json {
        #[derive(serde::Serialize)]
        struct WithRetention<'a> {
            #[serde(flatten)]
            report: &'a crate::policy::PolicyReport,
            retention: &'a crate::retention::RetentionReport,
        }
        let both = WithRetention {
            report: &report,
            retention: &retention,
        };
        println!("{}", serde_json::to_string_pretty(&both)?);
    } else {
        print!("{report}");
        print!("{retention}");
    }
    Ok(())
}

/// Validates the configuration (loading it already did) and its policy:
/// a campaign destination whose every call would be denied fails the check.
fn config_check(config: &Config) -> anyhow::Result<()> {
    let policies = Policies::compile(config);
    let now = Timestamp::now();
    println!(
        "config {}: {} campaigns, {} registries, policy {}",
        config.origin,
        config.campaigns.len(),
        config.registries.len(),
        policies.version
    );
    for o in &policies.overrides {
        println!(
            "override: destination {}{}: {}{}",
            o.destination,
            o.from.map(|f| format!(" from {f}")).unwrap_or_default(),
            o.settings.join(", "),
            if o.source.is_empty() {
                String::new()
            } else {
                format!(" ({})", o.source)
            }
        );
    }
    for warning in &policies.warnings {
        println!("warning: {warning}");
    }
    let blocked = policies.blocked_from(now);
    for b in &blocked {
        println!(
            "blocked{}: campaign {} destination {}: {}",
            b.from
                .filter(|from| *from > now.to_zoned(jiff::tz::TimeZone::UTC).date())
                .map(|f| format!(" from {f}"))
                .unwrap_or_default(),
            b.campaign,
            b.destination,
            b.reason
        );
    }
    let mut names: Vec<String> = blocked
        .iter()
        .map(|b| format!("{} -> {}", b.campaign, b.destination))
        .collect();
    names.dedup();
    if !names.is_empty() {
        bail!(
            "every call would be denied REGISTRY_UNAVAILABLE for: {} (configure the registry the law requires)",
            names.join(", ")
        );
    }
    println!("ok");
    Ok(())
}

/// Who runs a CLI command, for the change trail.
fn cli_actor() -> String {
    format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    )
}

/// Refuses a plain input file whose last line has no line end, unless the
/// operator says it is whole (see [`crate::line_file::ends_mid_line`]).
fn refuse_cut_short(file: &std::path::Path, accept: bool) -> anyhow::Result<()> {
    if !accept
        && crate::line_file::ends_mid_line(file)
            .with_context(|| format!("cannot read {}", file.display()))?
    {
        bail!(
            "{} ends in the middle of a line (its last line has no line end): it may be cut short (an interrupted download or copy), and a number cut short may be another valid number. Nothing stored; if the file is whole, pass --accept-unterminated-last-line",
            file.display()
        );
    }
    Ok(())
}

fn contact_import(
    config: &Config,
    file: &std::path::Path,
    dry_run: bool,
    offline: bool,
    consents: bool,
) -> anyhow::Result<()> {
    if let crate::store::StoreBackend::Postgres(settings) = &config.store {
        if offline {
            bail!("--offline applies to the SQLite store only: drop it");
        }
        return contact_import_shared(config, settings, file, dry_run, consents);
    }
    let _restore = crate::restore::RestoreLock::shared(&config.server.data_dir)?;
    let store = std::sync::Arc::new(ContactStore::open_unindexed(&config.server.data_dir)?);
    if offline {
        store.move_offline();
    }
    let now = Timestamp::now();
    let ledger = crate::restore::open_ledger(config, &store)?;
    let summary = if consents {
        crate::contacts::import::import_consents(
            &store,
            file,
            &cli_actor(),
            now,
            dry_run,
            &crate::contacts::service::Spellings::configured(config),
        )?
    } else {
        let records = Records::configured(config, store).with_ledger(std::sync::Arc::new(ledger));
        crate::contacts::import::import_suppressions(&records, file, &cli_actor(), now, dry_run)?
    };
    if summary.dry_run {
        println!(
            "dry run, nothing stored: {} lines valid; {} would be stored, {} already present",
            summary.lines, summary.stored, summary.already_present
        );
    } else {
        println!(
            "{} lines valid; {} stored, {} already present",
            summary.lines, summary.stored, summary.already_present
        );
    }
    Ok(())
}

/// `consent import` / `suppression import` on the postgres backend: the
/// file, checked as on SQLite, goes into the shared journal as one entry
/// (all or nothing); every running replica applies it.
fn contact_import_shared(
    config: &Config,
    settings: &crate::store::PostgresSettings,
    file: &std::path::Path,
    dry_run: bool,
    consents: bool,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let pg = runtime
        .block_on(crate::store::postgres::Pg::connect(settings))
        .with_context(|| format!("cannot open the shared database {}", settings.shown_url()))?;
    let (summary, seq) = crate::contacts::journal::import_file(
        &runtime,
        config,
        &pg,
        file,
        consents,
        dry_run,
        &cli_actor(),
    )?;
    match seq {
        None => println!(
            "dry run, nothing stored: {} lines valid; {} would be committed, {} already present (held by the journal, or repeated in the file)",
            summary.lines, summary.stored, summary.already_present
        ),
        Some(seq) => println!(
            "{} lines valid; {} records committed to the shared database (contact journal entry {seq}; {} already present: held by the journal, or repeated in the file); every replica applies them",
            summary.lines, summary.stored, summary.already_present
        ),
    }
    Ok(())
}

fn consent_rectify(config: &Config, file: &std::path::Path, dry_run: bool) -> anyhow::Result<()> {
    let _restore = crate::restore::RestoreLock::shared(&config.server.data_dir)?;
    let store = std::sync::Arc::new(ContactStore::open_unindexed(&config.server.data_dir)?);
    let ledger = crate::restore::open_ledger(config, &store)?;
    let records = Records::configured(config, store).with_ledger(std::sync::Arc::new(ledger));
    let summary = crate::contacts::import::rectify_consents(
        &records,
        file,
        &cli_actor(),
        Timestamp::now(),
        dry_run,
    )?;
    if summary.dry_run {
        println!("dry run, nothing changed: {} lines valid", summary.lines);
    } else {
        println!("{} consents corrected", summary.stored);
    }
    Ok(())
}

/// Copies the checkpoints that vouch for the copied log (`to`'s
/// `decisions.db`): those at or before its last row (or its purge anchor).
/// The running server appends one every `checkpoint_interval_seconds`, and
/// a purge appends its anchor's before it commits: copied whole after the
/// log, a checkpoint could vouch for rows the copy lacks; copied before
/// it, the anchor of a purge committed meanwhile had none. Either way
/// restoring the backup into a `data_dir` that lost its log was refused
/// (both found by review). Complete lines only (one may be being written).
fn copy_checkpoints_of_the_copy(
    data_dir: &std::path::Path,
    to: &std::path::Path,
) -> anyhow::Result<()> {
    let checkpoints = decision_log::checkpoint::checkpoints_path(data_dir);
    if !checkpoints.exists() {
        return Ok(());
    }
    let copied_log = to.join("decisions.db");
    let head = if copied_log.exists() {
        let conn = rusqlite::Connection::open_with_flags(
            &copied_log,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )?;
        let last: i64 = conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM decisions", [], |r| {
            r.get(0)
        })?;
        let anchor = crate::decision_log::audit::purge_anchor(&conn)?.map_or(0, |(seq, _)| seq);
        last.max(anchor)
    } else {
        0
    };
    let text = std::fs::read_to_string(&checkpoints)
        .with_context(|| format!("cannot read {}", checkpoints.display()))?;
    let mut kept = String::new();
    for line in text.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
        let seq = serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .and_then(|c| c["seq"].as_i64());
        match seq {
            Some(seq) if seq <= head => kept.push_str(line),
            Some(_) => {}
            None => bail!(
                "{}: a line that is not a checkpoint; nothing backed up past the stores (repair it, then back up again)",
                checkpoints.display()
            ),
        }
    }
    let target = to.join("checkpoints.jsonl");
    let mut copy = crate::private::create_file(&target)
        .with_context(|| format!("cannot create {}", target.display()))?;
    copy.write_all(kept.as_bytes())?;
    copy.sync_all()?;
    Ok(())
}

/// Copies every page of `from` into `into` in one backup step (one read
/// transaction of the source), retrying while the source is locked.
fn copy_whole(
    from: &rusqlite::Connection,
    into: &mut rusqlite::Connection,
) -> rusqlite::Result<()> {
    use rusqlite::backup::StepResult;
    let backup = rusqlite::backup::Backup::new(from, into)?;
    loop {
        match backup.step(-1)? {
            StepResult::Done => return Ok(()),
            StepResult::More => {}
            StepResult::Busy | StepResult::Locked => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            // A variant added by a later rusqlite: retried as busy.
            _ => std::thread::sleep(std::time::Duration::from_millis(5)),
        }
    }
}

/// Online backup: SQLite's backup API copies each database into a
/// consistent copy while the server keeps writing (see [`copy_whole`]);
/// snapshots are copied as files (replaced atomically, so a copy is always
/// a whole edition), and the checkpoints that vouch for the copied log
/// (see [`copy_checkpoints_of_the_copy`]).
fn backup(config: &Config, to: &std::path::Path) -> anyhow::Result<()> {
    let started_at = Timestamp::now();
    let data_dir = &config.server.data_dir;
    crate::restore::refuse_if_restoring(data_dir)?;
    // The ledger as it is before the copy: restore requires this ledger,
    // holding at least these entries. A store bound to a ledger that
    // cannot be identified now (its disk not mounted, not a file, its
    // first line damaged) is not backed up: the manifest would name no
    // ledger, and a restore could not tell a lost one (found by review).
    let ledger = crate::contacts::ledger::identity(&config.retention.erasure_ledger)?;
    let contacts = crate::contacts::database_path(data_dir);
    if contacts.exists()
        && let Some(bound) = crate::restore::backup_bound_ledger(&contacts)?
        && ledger.as_ref().is_none_or(|(id, _)| *id != bound)
    {
        bail!(
            "the erasure ledger {} is not the one the contact store is bound to (ledger id {bound}; found {}): back up once the store's ledger is in place (retention.erasure_ledger). Nothing backed up",
            config.retention.erasure_ledger.display(),
            ledger.as_ref().map_or("none", |(id, _)| id.as_str())
        );
    }
    if to.join(crate::retention::MANIFEST).exists() {
        bail!(
            "{} already holds a backup: back up into a new directory",
            to.display()
        );
    }
    crate::private::create_dir_all(to)
        .with_context(|| format!("cannot create {}", to.display()))?;
    for name in ["decisions.db", "contacts.db"] {
        let source = data_dir.join(name);
        if !source.exists() {
            continue;
        }
        let target = to.join(name);
        if target.exists() {
            bail!(
                "{} already exists: back up into a new directory",
                target.display()
            );
        }
        let from = rusqlite::Connection::open_with_flags(
            &source,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .with_context(|| format!("cannot open {}", source.display()))?;
        crate::private::touch(&target)
            .with_context(|| format!("cannot create {}", target.display()))?;
        let mut into = rusqlite::Connection::open(&target)
            .with_context(|| format!("cannot create {}", target.display()))?;
        // All pages in one step, under one read transaction (which in WAL
        // mode does not hold the server's writes back): in steps of 1024
        // pages the copy started again at every write of the server, and
        // under load might never finish (found by review).
        copy_whole(&from, &mut into)
            .with_context(|| format!("backup of {} failed", source.display()))?;
        println!("{} -> {}", source.display(), target.display());
    }
    copy_checkpoints_of_the_copy(data_dir, to)?;
    let snapshots = registry::snapshots_dir(data_dir);
    if snapshots.exists() {
        let target = registry::snapshots_dir(to);
        crate::private::create_dir_all(&target)?;
        for entry in std::fs::read_dir(&snapshots)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "snap") {
                let copy = target.join(path.file_name().expect("a file name"));
                std::fs::copy(&path, &copy)?;
                crate::private::tighten(&copy)?;
            }
        }
    }
    // Last: a backup without its manifest is incomplete (restore refuses it).
    let mut files: Vec<String> = std::fs::read_dir(to)?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let manifest = crate::retention::Manifest {
        started_at,
        finished_at: Timestamp::now(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        files,
        ledger_id: ledger.as_ref().map(|(id, _)| id.clone()),
        ledger_entries: ledger.as_ref().map(|(_, n)| *n),
    };
    let path = to.join(crate::retention::MANIFEST);
    let mut file = crate::private::create_file(&path)?;
    file.write_all(serde_json::to_string_pretty(&manifest)?.as_bytes())?;
    file.sync_all()?;
    println!(
        "backup made {started_at}; not copied: the erasure ledger ({}), which restore re-applies",
        config.retention.erasure_ledger.display()
    );
    Ok(())
}

fn backup_expire(config: &Config, dry_run: bool) -> anyhow::Result<()> {
    let retention = &config.retention;
    let (Some(dir), Some(days)) = (&retention.backup_dir, retention.backups_days) else {
        bail!(
            "--expire needs retention.backup_dir and retention.backups_days in the configuration"
        );
    };
    let expired = crate::retention::expire_backups(dir, days, Timestamp::now(), dry_run)
        .with_context(|| format!("cannot expire backups in {}", dir.display()))?;
    for path in &expired {
        println!(
            "{} {}",
            if dry_run { "would delete" } else { "deleted" },
            path.display()
        );
    }
    println!(
        "{} backups older than {days} days in {}",
        expired.len(),
        dir.display()
    );
    Ok(())
}

fn restore(config: &Config, from: &std::path::Path, without_ledger: bool) -> anyhow::Result<()> {
    let restored =
        crate::restore::restore(config, from, without_ledger, &cli_actor(), Timestamp::now())?;
    for line in &restored.lines {
        println!("{line}");
    }
    Ok(())
}

fn retention_purge(config: &Config, dry_run: bool) -> anyhow::Result<()> {
    let _lock = if dry_run {
        None
    } else {
        Some(
            crate::restore::ServeLock::acquire(&config.server.data_dir).context(
                "the running server purges at start and every retention.purge_interval_minutes",
            )?,
        )
    };
    crate::restore::refuse_if_restoring(&config.server.data_dir)?;
    let store = ContactStore::open_unindexed(&config.server.data_dir)?;
    let report =
        crate::retention::run_once(config, &store, Timestamp::now(), dry_run, &cli_actor());
    println!("{}", serde_json::to_string(&report)?);
    if let Some(err) = report.error {
        bail!("retention purge incomplete: {err}");
    }
    Ok(())
}

fn trail_export(config: &Config) -> anyhow::Result<()> {
    let store = ContactStore::open_unindexed(&config.server.data_dir)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for event in store.trail()? {
        serde_json::to_writer(&mut out, &event)?;
        writeln!(out)?;
    }
    out.flush()?;
    Ok(())
}

/// Service output on stderr: `DIALGATE_LOG` filters (default `info`),
/// `[server] log_format` (or `DIALGATE_LOG_FORMAT`) picks pretty or JSON.
fn init_tracing(format: crate::config::LogFormat) {
    let filter = log_filter(std::env::var("DIALGATE_LOG").ok().as_deref());
    let json = match std::env::var("DIALGATE_LOG_FORMAT").as_deref() {
        Ok("json") => true,
        Ok("pretty") => false,
        _ => format == crate::config::LogFormat::Json,
    };
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Crates whose debug output carries personal data: the PostgreSQL
/// client logs every statement's bound values (numbers, caller IDs) at
/// debug. They stay at `info` whatever `DIALGATE_LOG` says; dialgate's own
/// lines mask numbers at every level.
const LOGS_PERSONAL_DATA: [&str; 2] = ["tokio_postgres", "postgres_protocol"];

/// The filter of service output: `DIALGATE_LOG` (default `info`), with
/// [`LOGS_PERSONAL_DATA`] held at `info`: the setting's own directives for
/// them (`tokio_postgres::query=debug`, more specific than ours, would
/// win; found by review) are left out.
fn log_filter(setting: Option<&str>) -> tracing_subscriber::EnvFilter {
    let kept = setting.map(|s| {
        s.split(',')
            .filter(|directive| {
                let target = directive.trim().split(['=', '[']).next().unwrap_or("");
                !LOGS_PERSONAL_DATA
                    .iter()
                    .any(|personal| target.starts_with(personal))
            })
            .collect::<Vec<_>>()
            .join(",")
    });
    let mut filter = kept
        .and_then(|s| tracing_subscriber::EnvFilter::try_new(s).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info"));
    for target in LOGS_PERSONAL_DATA {
        if let Ok(directive) = format!("{target}=info").parse() {
            filter = filter.add_directive(directive);
        }
    }
    filter
}

fn serve(config: Config) -> anyhow::Result<()> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if config.server.worker_threads > 0 {
        builder.worker_threads(config.server.worker_threads);
    }
    let runtime = builder
        .enable_all()
        .thread_name("dialgate")
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(async {
        let shutdown = shutdown_signal().context("cannot listen for SIGTERM and SIGINT")?;
        crate::server::serve(config, shutdown).await
    })
}

/// Registers the SIGTERM and SIGINT handlers at once and returns the
/// future that completes on either. Registered on its first poll (by a
/// task the runtime had not always run when the server announced itself),
/// a SIGTERM sent right after the announcement killed the server by its
/// default action, without its stop steps (a CI run failed so). A signal
/// received during start-up stops the server once it has started.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("SIGINT received"),
            _ = term.recv() => tracing::info!("SIGTERM received"),
        }
    })
}

/// How old a registry file may be, by its modification time, to be taken
/// as checked today (no `--checked-at`).
const CHECKED_TODAY_AT_MOST: jiff::SignedDuration = jiff::SignedDuration::from_hours(24);

/// The day a registry file is dated as checked without `--checked-at`:
/// the UTC day it was last modified, today at the latest. Dated by the
/// import's day, a list downloaded late one day and imported after
/// midnight counted as a day fresher than it is, and was used up to a day
/// past the registry's `valid_days` (found by review).
///
/// Refuses a file last modified more than a day ago: a download that
/// failed and left last month's file in place, imported again by a
/// scheduled job, would make its stale data look fresh (found by review).
/// `--checked-at` states the day it was checked.
fn default_checked_at(file: &std::path::Path, now: Timestamp) -> anyhow::Result<jiff::civil::Date> {
    let today = now.to_zoned(jiff::tz::TimeZone::UTC).date();
    let modified = std::fs::metadata(file)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|at| Timestamp::try_from(at).ok());
    let Some(modified) = modified else {
        return Ok(today);
    };
    if now.duration_since(modified) > CHECKED_TODAY_AT_MOST {
        bail!(
            "{} was last modified at {modified}, more than a day ago: without --checked-at it would be dated as checked today, and stale data would look fresh; pass --checked-at YYYY-MM-DD, the day the registry was checked (or the day of a fresh download)",
            file.display()
        );
    }
    Ok(today.min(modified.to_zoned(jiff::tz::TimeZone::UTC).date()))
}

fn registry_import(config: &Config, args: Box<ImportArgs>) -> anyhow::Result<()> {
    let registry = config.registry(&args.registry).with_context(|| {
        format!(
            "--registry {:?}: not configured in {}",
            args.registry, config.origin
        )
    })?;
    let format = import_format(&args)?;
    // Clearances and opposed answers for a controller no campaign calls for
    // would bind nothing (an "opposed" for "Acme" leaves "acme" cleared).
    let controller = args
        .controller
        .as_deref()
        .map(str::trim)
        .map(str::to_string);
    if let Some(controller) = &controller
        && !config.campaigns.iter().any(|c| &c.controller == controller)
    {
        let mut known: Vec<&str> = config
            .campaigns
            .iter()
            .map(|c| c.controller.as_str())
            .collect();
        known.sort_unstable();
        known.dedup();
        bail!(
            "--controller {controller:?}: not the controller of any configured campaign (configured: {})",
            known.join(", ")
        );
    }
    let now = Timestamp::now();
    let checked_at = match args.checked_at {
        Some(day) => day,
        None => default_checked_at(&args.file, now)?,
    };
    let rejects_file = (args.max_rejects > 0).then(|| {
        args.rejects_file
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{}.rejects", args.file.display())))
    });
    // An answer added to the clearances held must say which numbers it
    // withheld: without that, a number the registry left out of a newer
    // answer (its holder registered since) kept the clearance of an older
    // one for up to its validity (found by review: REGISTRY_CLEAR where
    // the latest answer was "opposed").
    let allowlist_add =
        registry.kind == crate::model::RegistryKind::Allowlist && matches!(args.mode, ModeArg::Add);
    if allowlist_add && postgres_settings(config).is_some() {
        bail!(
            "--mode add of an allow-list is not built yet for store.backend = \"postgres\" (it needs --submitted or --opposed, whose opposed answers go to the contact records): import the controller's whole list with --mode replace. Nothing imported"
        );
    }
    if allowlist_add && args.opposed.is_none() && args.submitted.is_none() {
        bail!(
            "--mode add of an allow-list needs --submitted FILE (the numbers submitted for this answer: those it leaves out are recorded as opposed) or --opposed FILE: a number the answer withholds would otherwise keep an older clearance. Nothing imported"
        );
    }
    let format_asked = format.clone();
    let request = import::ImportRequest {
        changes_since: args.changes_since,
        file: args.file,
        format,
        mode: match args.mode {
            ModeArg::Replace => ImportMode::Replace,
            ModeArg::Add => ImportMode::Add,
            ModeArg::Remove => ImportMode::Remove,
        },
        checked_at,
        controller,
        covers: args.covers,
        dry_run: args.dry_run,
        max_rejects: args.max_rejects,
        rejects_file,
        progress: true,
        allow_shrink: args.allow_shrink,
        max_shrink_percent: args.max_shrink_percent,
        allow_narrow_file: args.allow_narrow_file,
        older_than_replace: args.older_than_replace,
        accept_unterminated_last_line: args.accept_unterminated_last_line,
        withheld: Default::default(),
    };
    if let Some(settings) = postgres_settings(config) {
        if args.opposed.is_some() || args.submitted.is_some() {
            bail!(
                "--opposed and --submitted: not built yet for store.backend = \"postgres\" (the opposed answers go to the contact records); import the controller's whole list with --mode replace"
            );
        }
        let by = format!("{} on replica {}", cli_actor(), settings.replica_id);
        let (summary, published) = database_runtime()?.block_on(async {
            let pg = connect_shared(settings).await?;
            registry::shared_import::import_and_publish(
                &pg,
                registry,
                &config.server.data_dir,
                &request,
                now,
                &by,
            )
            .await
            .map_err(anyhow::Error::from)
        })?;
        println!("{summary}");
        if let Some(published) = published {
            println!(
                "published registry {} version {} (sha256 {}, {} bytes) to {}: every replica serves it within registry_reload_interval_ms",
                published.registry_id,
                published.version,
                &published.sha256[..16],
                published.size_bytes,
                settings.shown_url()
            );
        }
        return Ok(());
    }
    let snapshots = registry::snapshots_dir(&config.server.data_dir);
    if args.opposed.is_some() || args.submitted.is_some() {
        // Validated before the import, so a bad file leaves everything unchanged.
        let mut numbers = match &args.opposed {
            Some(opposed) => read_opposed(
                registry,
                request.controller.as_deref(),
                opposed,
                "--opposed",
                args.accept_unterminated_last_line,
            )?,
            None => Vec::new(),
        };
        if let Some(submitted) = &args.submitted {
            let asked = read_opposed(
                registry,
                request.controller.as_deref(),
                submitted,
                "--submitted",
                args.accept_unterminated_last_line,
            )?;
            let returned =
                import::listed_numbers(&request.file, format_asked.clone(), registry.country)?;
            // The registry answers only for the numbers submitted: one in
            // the answer but not submitted is another list's (another
            // controller's or day's answer, a file mixed up or cut short),
            // and would be cleared unchecked (found by review).
            let submitted_keys: roaring::RoaringTreemap = asked.iter().map(|key| key.0).collect();
            let foreign = &returned - &submitted_keys;
            if !foreign.is_empty() {
                let shown: Vec<String> = foreign
                    .iter()
                    .take(3)
                    .map(|key| crate::number::mask(&crate::number::NumberKey(key).to_e164()))
                    .collect();
                bail!(
                    "{}: {} number(s) of the answer were not submitted ({}{}; see {}): an answer clears only numbers submitted for it. Nothing imported",
                    request.file.display(),
                    foreign.len(),
                    shown.join(", "),
                    if foreign.len() > 3 { ", ..." } else { "" },
                    submitted.display()
                );
            }
            numbers.extend(asked.into_iter().filter(|key| !returned.contains(key.0)));
            numbers.sort_unstable();
            numbers.dedup();
        }
        let request = import::ImportRequest {
            withheld: numbers.iter().map(|key| key.0).collect(),
            ..request
        };
        if request.dry_run {
            let summary = import::run(registry, &snapshots, &request, now)?;
            println!("{summary}");
            return Ok(());
        }
        // The cleared numbers' file is checked first (a dry run), the
        // opposed answers recorded next, the snapshot published last: new
        // clearances are never served without the opposed answers that
        // outweigh earlier ones (an answer recorded for a snapshot that then
        // fails to publish only adds denials; a re-run records it again,
        // keeping the later date).
        let check = import::ImportRequest {
            dry_run: true,
            ..request.clone()
        };
        import::run(registry, &snapshots, &check, now)?;
        let _restore = crate::restore::RestoreLock::shared(&config.server.data_dir)?;
        let at = request
            .checked_at
            .to_zoned(jiff::tz::TimeZone::UTC)
            .map(|z| z.timestamp())
            .context("--checked-at out of range")?;
        let controller = request.controller.as_deref().unwrap_or_default();
        if !numbers.is_empty() {
            ContactStore::open_unindexed(&config.server.data_dir)
                .map_err(anyhow::Error::from)
                .and_then(|store| {
                    store
                        .record_opposed(&registry.id, controller, &numbers, at)
                        .map_err(anyhow::Error::from)
                })
                .context("nothing imported: the opposed answers could not be recorded")?;
        }
        let summary = import::run(registry, &snapshots, &request, now).context(
            "the opposed answers were recorded but the snapshot was not imported: run the same import again",
        )?;
        println!("{summary}");
        println!(
            "{} numbers recorded as opposed for {controller} on {} (a running server applies them within registry_reload_interval_ms)",
            numbers.len(),
            request.checked_at
        );
        return Ok(());
    }
    let summary = import::run(registry, &snapshots, &request, now)?;
    println!("{summary}");
    Ok(())
}

/// The numbers of an `--opposed` or `--submitted` file (`flag`), every
/// line checked first.
fn read_opposed(
    registry: &crate::config::RegistryConfig,
    controller: Option<&str>,
    path: &std::path::Path,
    flag: &str,
    accept_unterminated: bool,
) -> anyhow::Result<Vec<crate::number::NumberKey>> {
    use std::io::{BufRead, Read};
    if registry.kind != crate::model::RegistryKind::Allowlist || controller.is_none() {
        bail!("{flag} applies to allow-list imports with --controller");
    }
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut reader = std::io::BufReader::new(file);
    let mut numbers = Vec::new();
    let mut buf = Vec::with_capacity(64);
    let mut line = 0usize;
    loop {
        buf.clear();
        // Bounded as a registry file's lines are: one line must not take
        // the memory of the whole file.
        let n = (&mut reader)
            .take(4097)
            .read_until(b'\n', &mut buf)
            .with_context(|| format!("{}: line {}", path.display(), line + 1))?;
        if n == 0 {
            break;
        }
        line += 1;
        // Told in the reading pass: a file still growing while read ends
        // where this read ended.
        if !matches!(buf.last(), Some(b'\n' | b'\r')) {
            if buf.len() > 4096 {
                bail!("{}: line {line}: longer than 4096 bytes", path.display());
            }
            if !accept_unterminated {
                bail!(
                    "{flag} {} ends in the middle of a line (its last line has no line end): it may be cut short, and a number cut short may be another valid number. Nothing imported; if the file is whole, pass --accept-unterminated-last-line",
                    path.display()
                );
            }
        }
        let text = std::str::from_utf8(&buf)
            .with_context(|| format!("{}: line {line}: not valid UTF-8", path.display()))?
            .trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let normalized =
            crate::number::normalize_any(text, registry.country).with_context(|| {
                format!(
                    "{}: line {line}: {}",
                    path.display(),
                    crate::registry::formats::quoted(text)
                )
            })?;
        numbers.push(normalized.key);
    }
    // An empty answer file (a failed download) would record nothing, and
    // clearances the registry has withdrawn would keep allowing calls.
    if numbers.is_empty() {
        bail!(
            "{} holds no numbers: refusing an empty {flag} file (a failed download; leave --opposed out when the registry answered no number opposed)",
            path.display()
        );
    }
    Ok(numbers)
}

/// The `--format` and template flags of an import.
fn import_format(args: &ImportArgs) -> anyhow::Result<Option<import::Format>> {
    let field = |flag: &str, value: &Option<String>| -> anyhow::Result<Option<(usize, usize)>> {
        value
            .as_ref()
            .map(|v| {
                let (start, len) = v
                    .split_once(':')
                    .and_then(|(s, l)| Some((s.parse::<usize>().ok()?, l.parse::<usize>().ok()?)))
                    // Within the longest line an import reads (4096 bytes);
                    // a number field is never wider than 64 characters.
                    .filter(|(s, l)| (1..=4096).contains(s) && (1..=64).contains(l))
                    .with_context(|| {
                        format!("{flag} {v:?}: expected START:LENGTH, 1-based (START up to 4096, LENGTH up to 64)")
                    })?;
                Ok((start, len))
            })
            .transpose()
    };
    let column = |flag: &str, value: Option<usize>| -> anyhow::Result<Option<usize>> {
        match value {
            Some(0) => bail!("{flag} 0: columns are numbered from 1"),
            other => Ok(other),
        }
    };
    Ok(match args.format.as_str() {
        "auto" => None,
        "lines" => Some(import::Format::Lines),
        "ftc" => Some(import::Format::Ftc),
        "tps" => Some(import::Format::Tps),
        "delimited" => {
            let delimiter = match args.delimiter.as_str() {
                "\\t" | "tab" => b'\t',
                d if d.len() == 1 => d.as_bytes()[0],
                d => bail!("--delimiter {d:?}: one character expected"),
            };
            let template = import::DelimitedTemplate {
                delimiter,
                phone: column("--phone-column", args.phone_column)?,
                area: column("--area-column", args.area_column)?,
                number: column("--number-column", args.number_column)?,
                action: column("--action-column", args.action_column)?,
                add_values: args.add_values.clone(),
                remove_values: args.remove_values.clone(),
                skip_lines: args.skip_lines,
            };
            if template.phone.is_none() && (template.area.is_none() || template.number.is_none()) {
                bail!(
                    "--format delimited needs --phone-column, or --area-column and --number-column"
                );
            }
            // An empty value (`--add-values A,`) would take a blank action
            // column for an addition (a clearance on an allow-list).
            if template
                .add_values
                .iter()
                .chain(&template.remove_values)
                .any(|v| v.trim().is_empty())
            {
                bail!("--add-values and --remove-values may not hold an empty value");
            }
            // A value meaning both would read as an addition (listed for a
            // block-list, but cleared for an allow-list).
            if let Some(both) = template.add_values.iter().find(|a| {
                template
                    .remove_values
                    .iter()
                    .any(|r| r.eq_ignore_ascii_case(a))
            }) {
                bail!(
                    "--add-values and --remove-values both hold {both:?}: an action means one or the other"
                );
            }
            Some(import::Format::Delimited(template))
        }
        "fixed" => {
            let template = import::FixedTemplate {
                phone: field("--phone-field", &args.phone_field)?,
                area: field("--area-field", &args.area_field)?,
                number: field("--number-field", &args.number_field)?,
            };
            if template.phone.is_none() && (template.area.is_none() || template.number.is_none()) {
                bail!("--format fixed needs --phone-field, or --area-field and --number-field");
            }
            Some(import::Format::Fixed(template))
        }
        other => {
            bail!("--format {other:?}: supported formats: auto, lines, ftc, tps, delimited, fixed")
        }
    })
}

fn registry_rollback(config: &Config, registry: &str, to: u64) -> anyhow::Result<()> {
    let Some(settings) = postgres_settings(config) else {
        bail!(
            "registry rollback: only on the shared database ([store] backend = \"postgres\"); on one gateway, import the older list again"
        );
    };
    if !config.registries.iter().any(|r| r.id == registry) {
        bail!("--registry {registry:?}: no such registry in the configuration");
    }
    let back = database_runtime()?.block_on(async {
        let pg = connect_shared(settings).await?;
        registry::published::rollback(&pg, registry, to)
            .await
            .map_err(anyhow::Error::from)
    })?;
    println!(
        "registry {registry} rolled back to version {} (published {} by {}): every replica serves it within registry_reload_interval_ms; the next import is numbered above every stored version",
        back.version, back.published_at, back.published_by
    );
    Ok(())
}

fn registry_list(config: &Config, json: bool) -> anyhow::Result<()> {
    let set = RegistrySet::open(
        &config.registries,
        &registry::snapshots_dir(&config.server.data_dir),
    );
    let mut status = set.status(Timestamp::now());
    if let Some(settings) = postgres_settings(config) {
        let ids: Vec<String> = config.registries.iter().map(|r| r.id.clone()).collect();
        let current = database_runtime()?.block_on(async {
            let pg = connect_shared(settings).await?;
            registry::published::current(&pg, &ids)
                .await
                .map_err(anyhow::Error::from)
        })?;
        for r in &mut status {
            let published = current.iter().find(|p| p.registry_id == r.id);
            r.published = Some(registry::PublishedState {
                version: published.map(|p| p.version),
                sha256: published.map(|p| p.sha256.clone()),
                published_at: published.map(|p| p.published_at),
                published_by: published.map(|p| p.published_by.clone()),
                serving: false,
                error: None,
            });
        }
    }
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &status)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<16} {:<9} {:<3} {:>7} {:>12} {:<10} {:<20} {:>5} STATE",
        "ID", "KIND", "CC", "VERSION", "NUMBERS", "CHECKED", "VALID UNTIL", "DAYS"
    )?;
    for r in &status {
        let state = match (&r.error, r.loaded, r.stale, r.expiring) {
            (Some(err), _, _, _) => format!("ERROR: {err}"),
            (None, false, _, _) => "UNAVAILABLE (no snapshot)".into(),
            (None, true, true, _) => "STALE".into(),
            (None, true, false, true) => "expiring".into(),
            _ => "fresh".into(),
        };
        writeln!(
            out,
            "{:<16} {:<9} {:<3} {:>7} {:>12} {:<10} {:<20} {:>5} {state}",
            r.id,
            r.kind.to_string(),
            r.country,
            r.version.map_or("-".into(), |v| v.to_string()),
            r.numbers,
            r.checked_at.map_or("-".into(), |d| d.to_string()),
            r.valid_until
                .map_or("-".into(), |t| t.strftime("%Y-%m-%dT%H:%MZ").to_string()),
            r.days_left.map_or("-".into(), |d| d.to_string()),
        )?;
    }
    for r in &status {
        let Some(published) = &r.published else {
            continue;
        };
        match (published.version, &published.sha256) {
            (Some(version), Some(sha256)) => writeln!(
                out,
                "{}: published version {version} (sha256 {}) by {} at {}; this machine's data_dir holds {}",
                r.id,
                &sha256[..sha256.len().min(16)],
                published.published_by.as_deref().unwrap_or("-"),
                published
                    .published_at
                    .map_or("-".into(), |t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
                r.version.map_or("none".into(), |v| format!("version {v}")),
            )?,
            _ => writeln!(out, "{}: nothing published", r.id)?,
        }
    }
    Ok(())
}

fn parse_instant(flag: &str, text: &str) -> anyhow::Result<Timestamp> {
    crate::model::parse_instant(text).with_context(|| {
        format!(
            "{flag} {text:?}: expected RFC 3339 with an offset (2026-11-23T10:00:00Z) or a date alone (YYYY-MM-DD)"
        )
    })
}

/// The first line of stdin, trimmed; an error when there is none.
fn first_line_of_stdin(what: &str) -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let line = line.trim();
    anyhow::ensure!(!line.is_empty(), "{what}: stdin holds no number");
    Ok(line.to_string())
}

fn audit_export(
    config: &Config,
    number: Option<String>,
    since: Option<String>,
    until: Option<String>,
    campaign: Option<String>,
    format: FormatArg,
) -> anyhow::Result<()> {
    // `-`: from stdin, so that the full number is not in the process list
    // that every local user can read (`/proc/*/cmdline`).
    let number = match number.as_deref() {
        Some("-") => Some(first_line_of_stdin("--number -")?),
        _ => number,
    };
    // The argument in every E.164 form it can stand for, as the decisions'
    // numbers were normalised: an exact string match exported nothing for
    // "+39 333 123 4567" (a subject-access request answered empty).
    let numbers = match &number {
        None => Vec::new(),
        Some(text) => {
            let campaigns: Vec<_> = config
                .campaigns
                .iter()
                .filter(|c| campaign.as_ref().is_none_or(|id| *id == c.id))
                .collect();
            let campaigns = if campaigns.is_empty() {
                config.campaigns.iter().collect()
            } else {
                campaigns
            };
            let mut regions: Vec<crate::number::Region> = Vec::new();
            for c in campaigns {
                if !regions.contains(&c.default_region) {
                    regions.push(c.default_region);
                }
            }
            audit::number_forms(text, &regions).map_err(|err| {
                anyhow::anyhow!(
                    "--number {text:?}: {err}: no decision can be matched to it; write it in international form (+39 333 123 4567), or national with --campaign of a configured campaign"
                )
            })?
        }
    };
    let filter = audit::ExportFilter {
        number,
        numbers,
        campaign,
        since: since.map(|s| parse_instant("--since", &s)).transpose()?,
        until: until.map(|s| parse_instant("--until", &s)).transpose()?,
    };
    let db = decision_log::database_path(&config.server.data_dir);
    let format = match format {
        FormatArg::Jsonl => audit::ExportFormat::Jsonl,
        FormatArg::Csv => audit::ExportFormat::Csv,
    };
    if let crate::store::StoreBackend::Postgres(settings) = &config.store {
        return decision_log::shared_cli::export(settings, &filter, format);
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    audit::export(&db, &filter, format, &mut out)?;
    Ok(())
}

fn checkpoint_key(config: &Config) -> anyhow::Result<Option<ed25519_dalek::SigningKey>> {
    config
        .log
        .checkpoint_key_file
        .as_deref()
        .map(decision_log::checkpoint::load_key)
        .transpose()
        .map_err(anyhow::Error::from)
}

fn audit_purge(config: &Config, before: Option<String>) -> anyhow::Result<()> {
    let now = Timestamp::now();
    // Never inside log.retention_days, nor inside the longest attempt-cap
    // window or the idempotency window: both are rebuilt from the log at
    // start, so a purged ALLOW would be an attempt a restart no longer
    // counts (one call over the cap).
    let oldest_allowed = crate::retention::decisions_cutoff(config, config.log.retention_days, now);
    let asked = before
        .map(|text| parse_instant("--before", &text))
        .transpose()?;
    let before = asked.unwrap_or(oldest_allowed);
    if before > oldest_allowed {
        bail!(
            "--before {before}: inside the period decisions are kept (log.retention_days = {}, the longest attempt-cap window, log.idempotency_window_seconds): decisions younger than {oldest_allowed} are kept",
            config.log.retention_days
        );
    }
    if let crate::store::StoreBackend::Postgres(settings) = &config.store {
        return decision_log::shared_cli::purge(settings, before, checkpoint_key(config)?.as_ref());
    }
    let db = decision_log::database_path(&config.server.data_dir);
    // The purge attests each cut it makes with a checkpoint, so that verify
    // can tell a purge from a truncation (and from a forged anchor). It
    // keeps what the server recorded it needs, from the latest decision.
    let limit = crate::retention::purge_limit(config, config.log.retention_days, asked, now);
    let summary = audit::purge(&db, &limit, checkpoint_key(config)?.as_ref())?;
    let before = summary.before.unwrap_or(before);
    if let Some((seq, _)) = &summary.through {
        println!(
            "purged {} decisions made before {before}; the chain now starts after seq {seq}",
            summary.removed
        );
    } else {
        println!("nothing to purge before {before}");
    }
    Ok(())
}

fn audit_checkpoint(config: &Config) -> anyhow::Result<()> {
    if let crate::store::StoreBackend::Postgres(settings) = &config.store {
        return decision_log::shared_cli::checkpoint(settings, checkpoint_key(config)?.as_ref());
    }
    let db = decision_log::database_path(&config.server.data_dir);
    let (seq, hash) = audit::head(&db)?;
    let key = checkpoint_key(config)?;
    let checkpoint =
        decision_log::checkpoint::Checkpoint::new(seq, &hash, Timestamp::now(), key.as_ref());
    println!("{}", serde_json::to_string(&checkpoint)?);
    Ok(())
}

fn audit_verify(config: &Config, anchor: Option<PathBuf>) -> anyhow::Result<()> {
    if let crate::store::StoreBackend::Postgres(settings) = &config.store {
        let key = checkpoint_key(config)?.map(|k| k.verifying_key());
        return decision_log::shared_cli::verify(settings, anchor.as_deref(), key.as_ref());
    }
    let db = decision_log::database_path(&config.server.data_dir);
    let checkpoints = decision_log::checkpoint::read_all(
        &decision_log::checkpoint::checkpoints_path(&config.server.data_dir),
    )?;
    let key = checkpoint_key(config)?.map(|k| k.verifying_key());
    let mut anchors = Vec::new();
    let kept = decision_log::checkpoint::head_path(&config.server.data_dir);
    for path in std::iter::once(&kept).chain(anchor.as_ref()) {
        match decision_log::checkpoint::read_one(path)? {
            Some(checkpoint) => anchors.push(checkpoint),
            None if Some(path) == anchor.as_ref() => {
                bail!("--anchor {}: no such file", path.display())
            }
            None => {}
        }
    }
    match audit::verify(&db, &checkpoints, &anchors, key.as_ref())? {
        audit::Verification::Intact {
            decisions,
            head_seq,
            head_hash,
            unsigned_before_key,
        } => {
            println!(
                "ok: {decisions} decisions, chain intact, {} checkpoint(s) {}{}, head seq {head_seq} hash {head_hash}",
                checkpoints.len(),
                if key.is_some() {
                    "signed and matching"
                } else {
                    "matching (unsigned: no checkpoint key configured)"
                },
                if unsigned_before_key > 0 {
                    format!(" ({unsigned_before_key} of them unsigned (before the key))")
                } else {
                    String::new()
                }
            );
            Ok(())
        }
        audit::Verification::Broken {
            seq,
            decision_id,
            problem,
        } => bail!("decision log NOT intact at seq {seq} (decision {decision_id}): {problem}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `DIALGATE_LOG=debug` let the PostgreSQL client write every
    /// statement's bound values, full numbers among them, to stderr
    /// (found by review: its `log` records reach the service output).
    #[test]
    fn test_debug_output_leaves_out_the_postgres_clients_values() {
        #[derive(Clone, Default)]
        struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Captured {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        for setting in [
            "debug",
            "trace",
            "info,tokio_postgres=trace",
            "info,tokio_postgres::query=debug",
            "tokio_postgres::query",
        ] {
            let captured = Captured::default();
            let writer = captured.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_writer(move || writer.clone())
                .with_env_filter(log_filter(Some(setting)))
                .finish();
            tracing::subscriber::with_default(subscriber, || {
                tracing::debug!(target: "tokio_postgres::query", "parameters: [\"+393331234567\"]");
                tracing::debug!(target: "dialgate::gateway", "own line");
            });
            let out = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
            assert!(!out.contains("393331234567"), "{setting}: {out}");
            assert_eq!(
                out.contains("own line"),
                setting == "debug" || setting == "trace",
                "{setting}: {out}"
            );
        }
    }
}
