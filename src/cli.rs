//! The `dialgate` command line: one binary, a subcommand per job.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use jiff::Timestamp;
use jiff::civil::Date;

use crate::config::Config;
use crate::contacts::ContactStore;
use crate::decision_log::{self, audit};
use crate::records::Records;
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
    Import(ImportArgs),
    /// Registries with version, size, checked-at, valid-until and staleness
    List {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
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
    /// File format
    #[arg(long, default_value = "lines")]
    format: String,
    /// replace: the file is the whole list (allow-lists: the controller's whole list); add; remove
    #[arg(long, value_enum, default_value_t = ModeArg::Replace)]
    mode: ModeArg,
    /// Date the registry data was checked (YYYY-MM-DD) [default: today, UTC]
    #[arg(long)]
    checked_at: Option<Date>,
    /// Allow-lists: the controller the numbers are cleared for
    #[arg(long)]
    controller: Option<String>,
    /// Block-lists: E.164 prefixes the data covers, e.g. +1212,+1646 [default: the whole country]
    #[arg(long, value_delimiter = ',')]
    covers: Option<Vec<String>>,
    /// Validate only; write nothing
    #[arg(long)]
    dry_run: bool,
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
        /// Only decisions about this number (E.164, or as sent)
        #[arg(long)]
        number: Option<String>,
        /// From this instant (RFC 3339) or date (YYYY-MM-DD, UTC), inclusive
        #[arg(long)]
        since: Option<String>,
        /// Up to this instant or date, exclusive
        #[arg(long)]
        until: Option<String>,
        #[arg(long, value_enum, default_value_t = FormatArg::Jsonl)]
        format: FormatArg,
    },
    /// Check the decision log is complete and unaltered; exit 0 only if so
    Verify,
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
    match cli.command {
        Command::Serve => serve(config),
        Command::Registry(RegistryCommand::Import(args)) => registry_import(&config, args),
        Command::Registry(RegistryCommand::List { json }) => registry_list(&config, json),
        Command::Audit(AuditCommand::Export {
            number,
            since,
            until,
            format,
        }) => audit_export(&config, number, since, until, format),
        Command::Audit(AuditCommand::Verify) => audit_verify(&config),
        Command::Consent(ConsentCommand::Import { file, dry_run }) => {
            contact_import(&config, &file, dry_run, true)
        }
        Command::Suppression(SuppressionCommand::Import { file, dry_run }) => {
            contact_import(&config, &file, dry_run, false)
        }
        Command::Trail(TrailCommand::Export) => trail_export(&config),
    }
}

/// Who runs a CLI command, for the change trail.
fn cli_actor() -> String {
    format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    )
}

fn contact_import(
    config: &Config,
    file: &std::path::Path,
    dry_run: bool,
    consents: bool,
) -> anyhow::Result<()> {
    let store = std::sync::Arc::new(ContactStore::open(&config.server.data_dir)?);
    let now = Timestamp::now();
    let summary = if consents {
        crate::contact_import::import_consents(&store, file, &cli_actor(), now, dry_run)?
    } else {
        let records = Records::new(store, decision_log::database_path(&config.server.data_dir));
        crate::contact_import::import_suppressions(&records, file, &cli_actor(), now, dry_run)?
    };
    println!(
        "{}{} lines valid; {} stored, {} already present",
        if summary.dry_run {
            "dry run, nothing stored: "
        } else {
            ""
        },
        summary.lines,
        summary.stored,
        summary.already_present
    );
    Ok(())
}

fn trail_export(config: &Config) -> anyhow::Result<()> {
    let store = ContactStore::open(&config.server.data_dir)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for event in store.trail()? {
        serde_json::to_writer(&mut out, &event)?;
        writeln!(out)?;
    }
    out.flush()?;
    Ok(())
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
    runtime.block_on(crate::server::serve(config, shutdown_signal()))
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(err) => {
            tracing::error!(error = %err, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = term.recv() => tracing::info!("SIGTERM received"),
    }
}

fn registry_import(config: &Config, args: ImportArgs) -> anyhow::Result<()> {
    let registry = config.registry(&args.registry).with_context(|| {
        format!(
            "--registry {:?}: not configured in {}",
            args.registry, config.origin
        )
    })?;
    let format = import::Format::parse(&args.format)
        .with_context(|| format!("--format {:?}: supported formats: lines", args.format))?;
    let now = Timestamp::now();
    let request = import::ImportRequest {
        file: args.file,
        format,
        mode: match args.mode {
            ModeArg::Replace => ImportMode::Replace,
            ModeArg::Add => ImportMode::Add,
            ModeArg::Remove => ImportMode::Remove,
        },
        checked_at: args
            .checked_at
            .unwrap_or_else(|| now.to_zoned(jiff::tz::TimeZone::UTC).date()),
        controller: args.controller,
        covers: args.covers,
        dry_run: args.dry_run,
    };
    let snapshots = registry::snapshots_dir(&config.server.data_dir);
    let summary = import::run(registry, &snapshots, &request, now)?;
    println!("{summary}");
    Ok(())
}

fn registry_list(config: &Config, json: bool) -> anyhow::Result<()> {
    let set = RegistrySet::open(
        &config.registries,
        &registry::snapshots_dir(&config.server.data_dir),
    );
    let status = set.status(Timestamp::now());
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
    for r in status {
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
    Ok(())
}

fn parse_instant(flag: &str, text: &str) -> anyhow::Result<Timestamp> {
    if let Ok(ts) = text.parse::<Timestamp>() {
        return Ok(ts);
    }
    let date: Date = text.parse().with_context(|| {
        format!("{flag} {text:?}: expected RFC 3339 (2026-11-23T10:00:00Z) or YYYY-MM-DD")
    })?;
    Ok(date.to_zoned(jiff::tz::TimeZone::UTC)?.timestamp())
}

fn audit_export(
    config: &Config,
    number: Option<String>,
    since: Option<String>,
    until: Option<String>,
    format: FormatArg,
) -> anyhow::Result<()> {
    let filter = audit::ExportFilter {
        number,
        since: since.map(|s| parse_instant("--since", &s)).transpose()?,
        until: until.map(|s| parse_instant("--until", &s)).transpose()?,
    };
    let db = decision_log::database_path(&config.server.data_dir);
    let format = match format {
        FormatArg::Jsonl => audit::ExportFormat::Jsonl,
        FormatArg::Csv => audit::ExportFormat::Csv,
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    audit::export(&db, &filter, format, &mut out)?;
    Ok(())
}

fn audit_verify(config: &Config) -> anyhow::Result<()> {
    let db = decision_log::database_path(&config.server.data_dir);
    match audit::verify(&db)? {
        audit::Verification::Intact {
            decisions,
            head_seq,
            head_hash,
        } => {
            println!(
                "ok: {decisions} decisions, chain intact, head seq {head_seq} hash {head_hash}"
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
