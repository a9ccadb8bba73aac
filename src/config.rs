//! Configuration: the TOML file of the contract, parsed and validated once.
//!
//! Every legal parameter lives here with its statutory value as the default.
//! Validation names the offending key and value; a configuration that loads is
//! internally consistent (ids unique, regions real, caller IDs parseable).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::auth::{ApiKey, Role};
use crate::calling::{self, AttemptLimit, DaySpans, DestinationRules, Span, WeeklyHours};
use crate::model::Purpose;
use crate::number::{self, Region};

/// The configuration built into the binary: serves the demo data in `data/`.
pub const BUILT_IN: &str = include_str!("../data/dialgate.toml");

/// Name of the configuration file looked for in the working directory.
pub const DEFAULT_FILE: &str = "dialgate.toml";

/// A configuration error, naming the key and the value that is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("invalid config {origin}: {message}")]
    Syntax { origin: String, message: String },
    #[error("invalid config {origin}: {key} = {value:?}: {problem}")]
    Invalid {
        origin: String,
        key: String,
        value: String,
        problem: String,
    },
}

/// Kind of a registry: what its file lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RegistryKind {
    /// The file lists numbers CLEARED for one controller (IT RPO, FR Bloctel).
    Allowlist,
    /// The file lists REGISTERED numbers (US DNC, UK TPS).
    Blocklist,
}

impl fmt::Display for RegistryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RegistryKind::Allowlist => "allowlist",
            RegistryKind::Blocklist => "blocklist",
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    log: LogConfig,
    #[serde(default, rename = "registry")]
    registries: Vec<RawRegistry>,
    #[serde(default, rename = "campaign")]
    campaigns: Vec<RawCampaign>,
    #[serde(default, rename = "api_key")]
    api_keys: Vec<RawApiKey>,
    #[serde(default)]
    destination: BTreeMap<String, RawDestination>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: PathBuf,
    key_file: PathBuf,
    client_ca_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApiKey {
    name: String,
    sha256: String,
    roles: Vec<String>,
}

/// `[campaign.calling_hours]` and `[destination.XX.calling_hours]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWeeklyHours {
    mon: Option<Vec<String>>,
    tue: Option<Vec<String>>,
    wed: Option<Vec<String>>,
    thu: Option<Vec<String>>,
    fri: Option<Vec<String>>,
    sat: Option<Vec<String>>,
    sun: Option<Vec<String>>,
    holidays: Option<Vec<String>>,
    pre_holidays: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAttemptLimit {
    max_attempts: u32,
    window_days: Option<u32>,
    window_hours: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDestination {
    calling_hours: Option<RawWeeklyHours>,
    #[serde(default)]
    extra_holidays: Vec<String>,
    attempt_limit: Option<RawAttemptLimit>,
    #[serde(default)]
    state: BTreeMap<String, RawStateRules>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStateRules {
    calling_hours: RawWeeklyHours,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    #[serde(default = "default_grpc_addr")]
    grpc_addr: String,
    #[serde(default = "default_http_addr")]
    http_addr: String,
    #[serde(default = "default_data_dir")]
    data_dir: PathBuf,
    #[serde(default = "default_reload_interval_ms")]
    registry_reload_interval_ms: u64,
    #[serde(default = "default_shutdown_grace_ms")]
    shutdown_grace_ms: u64,
    #[serde(default)]
    worker_threads: usize,
    #[serde(default)]
    log_format: LogFormat,
    tls: Option<RawTls>,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            grpc_addr: default_grpc_addr(),
            http_addr: default_http_addr(),
            data_dir: default_data_dir(),
            registry_reload_interval_ms: default_reload_interval_ms(),
            shutdown_grace_ms: default_shutdown_grace_ms(),
            worker_threads: 0,
            log_format: LogFormat::Pretty,
            tls: None,
        }
    }
}

fn default_grpc_addr() -> String {
    "127.0.0.1:50051".into()
}
fn default_http_addr() -> String {
    "127.0.0.1:8080".into()
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}
fn default_reload_interval_ms() -> u64 {
    1000
}
fn default_shutdown_grace_ms() -> u64 {
    10_000
}

/// Settings of the durable decision log.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Decisions waiting for the writer before CheckCall answers UNAVAILABLE.
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
    /// Most decisions committed in one transaction (group commit).
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Under concurrent load, how long (µs) a commit may wait for more
    /// decisions to share its fsync; a lone caller never waits.
    #[serde(default = "default_linger_us")]
    pub group_commit_linger_us: u64,
    /// How often (ms) a background thread copies the log's WAL into the
    /// database, so commits rarely stall on a checkpoint; 0 = off.
    #[serde(default = "default_wal_backfill_ms")]
    pub wal_backfill_ms: u64,
    /// How long a request_id is at least remembered as an idempotency key.
    #[serde(default = "default_idempotency_seconds")]
    pub idempotency_window_seconds: u64,
    /// Most request ids remembered per generation (memory bound; two generations).
    #[serde(default = "default_idempotency_entries")]
    pub idempotency_max_entries: usize,
    /// How long CheckCall waits for the log before answering UNAVAILABLE.
    #[serde(default = "default_log_timeout_ms")]
    pub write_timeout_ms: u64,
    /// `full`: fsync at every group commit (survives power loss);
    /// `normal`: fsync at checkpoints only (survives process crashes, not power loss).
    #[serde(default)]
    pub synchronous: Synchronous,
    /// How often the log's head is checkpointed (also at every shutdown).
    #[serde(default = "default_checkpoint_interval")]
    pub checkpoint_interval_seconds: u64,
    /// Ed25519 seed (64 hex digits) that signs checkpoints; unsigned without it.
    #[serde(default)]
    pub checkpoint_key_file: Option<PathBuf>,
    /// Decisions are kept at least this long; `audit purge` refuses younger ones.
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
}

/// US TSR record keeping: 5 years.
fn default_retention_days() -> u32 {
    1826
}

fn default_checkpoint_interval() -> u64 {
    60
}

/// SQLite durability level of the decision log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    #[default]
    Full,
    Normal,
}

impl Synchronous {
    pub fn pragma(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            queue_capacity: default_queue_capacity(),
            max_batch: default_max_batch(),
            group_commit_linger_us: default_linger_us(),
            wal_backfill_ms: default_wal_backfill_ms(),
            idempotency_window_seconds: default_idempotency_seconds(),
            idempotency_max_entries: default_idempotency_entries(),
            write_timeout_ms: default_log_timeout_ms(),
            synchronous: Synchronous::Full,
            checkpoint_interval_seconds: default_checkpoint_interval(),
            checkpoint_key_file: None,
            retention_days: default_retention_days(),
        }
    }
}

fn default_queue_capacity() -> usize {
    65_536
}
fn default_max_batch() -> usize {
    1024
}
fn default_wal_backfill_ms() -> u64 {
    20
}
fn default_linger_us() -> u64 {
    300
}
fn default_idempotency_seconds() -> u64 {
    3600
}
fn default_idempotency_entries() -> usize {
    1_000_000
}
fn default_log_timeout_ms() -> u64 {
    2_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistry {
    id: String,
    kind: RegistryKind,
    country: String,
    valid_days: Option<u32>,
    seed_file: Option<PathBuf>,
    seed_controller: Option<String>,
    exemptions: Option<RawExemptions>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExemptions {
    customer_months: Option<u32>,
    customer_days: Option<u32>,
    inquiry_months: Option<u32>,
    inquiry_days: Option<u32>,
    consent: Option<bool>,
    consent_after_registration: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCampaign {
    id: String,
    controller: String,
    purpose: String,
    default_region: String,
    destinations: Vec<String>,
    #[serde(default)]
    consent_required: bool,
    #[serde(default)]
    caller_ids: Vec<String>,
    calling_hours: Option<RawWeeklyHours>,
    attempt_limit: Option<RawAttemptLimit>,
}

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the configuration came from (file path or "built-in").
    pub origin: String,
    pub server: ServerConfig,
    pub log: LogConfig,
    pub registries: Vec<RegistryConfig>,
    pub campaigns: Vec<CampaignConfig>,
    /// Calling rules by destination region: statutory defaults merged with `[destination.XX]`.
    pub destinations: HashMap<Region, DestinationRules>,
    /// API keys; none = no authentication.
    pub api_keys: Vec<ApiKey>,
}

/// Listening addresses and storage location.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub grpc_addr: String,
    pub http_addr: String,
    /// Directory of the SQLite databases and registry snapshots.
    pub data_dir: PathBuf,
    /// How often a running server looks for new registry snapshots.
    pub registry_reload_interval_ms: u64,
    /// Longest wait for in-flight calls on shutdown.
    pub shutdown_grace_ms: u64,
    /// Async worker threads; 0 = one per core.
    pub worker_threads: usize,
    /// Service output: human-readable or JSON lines (phone numbers masked either way).
    pub log_format: LogFormat,
    /// TLS on both listeners; `None` = plaintext.
    pub tls: Option<crate::tls::TlsSettings>,
}

/// Format of the service's own output (tracing).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

/// One configured registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryConfig {
    pub id: String,
    pub kind: RegistryKind,
    /// The region whose numbers this registry applies to.
    pub country: Region,
    /// A result older than this many days is stale (fail closed).
    pub valid_days: u32,
    /// Demo only: a `lines` file imported (checked today) when no snapshot exists.
    pub seed_file: Option<PathBuf>,
    /// Demo only: the controller an allow-list seed is cleared for.
    pub seed_controller: Option<String>,
    /// What lifts this registry's DENY for a controller.
    pub exemptions: Exemptions,
}

/// A period after an event: calendar months or days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Months(u32),
    Days(u32),
}

impl Period {
    /// The instant `self` after `from`.
    pub fn after(self, from: jiff::Timestamp) -> jiff::Timestamp {
        let span = match self {
            Period::Months(m) => jiff::Span::new().months(i64::from(m)),
            Period::Days(d) => jiff::Span::new().days(i64::from(d)),
        };
        from.to_zoned(jiff::tz::TimeZone::UTC)
            .checked_add(span)
            .map(|z| z.timestamp())
            .unwrap_or(jiff::Timestamp::MAX)
    }
}

/// Exemptions from a registry (statutory defaults by country).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Exemptions {
    /// Customers: ongoing, or this long after the last purchase, delivery or
    /// payment (`ended_at`); `None` = no customer exemption.
    pub customer: Option<Period>,
    /// Inquiries: this long after the inquiry; `None` = no inquiry exemption.
    pub inquiry: Option<Period>,
    /// A consent to this controller for the purpose lifts the registry.
    pub consent: bool,
    /// Italy policy (off by default): a consent counts over an RPO DENY only
    /// if given after the number was first seen not cleared for the controller.
    pub consent_after_registration: bool,
}

/// Statutory exemptions by country (compliance rules US-EBR, US-DNC-NAT,
/// IT-RPO-SURVIVE, UK-TPS, FR Bloctel).
pub fn statutory_exemptions(country: Region) -> Exemptions {
    match country.as_str() {
        "US" => Exemptions {
            customer: Some(Period::Months(18)),
            inquiry: Some(Period::Months(3)),
            consent: true,
            consent_after_registration: false,
        },
        "IT" => Exemptions {
            customer: Some(Period::Days(30)),
            ..Default::default()
        },
        "GB" => Exemptions {
            consent: true,
            ..Default::default()
        },
        "FR" => Exemptions {
            customer: Some(Period::Days(0)),
            ..Default::default()
        },
        _ => Exemptions::default(),
    }
}

/// One configured campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignConfig {
    pub id: String,
    /// The data controller (brand) the calls are made for.
    pub controller: String,
    pub purpose: Purpose,
    /// Region for numbers written without a country code.
    pub default_region: Region,
    /// Regions this campaign may call.
    pub destinations: Vec<Region>,
    /// Opt-in only: a valid consent for this purpose is required.
    pub consent_required: bool,
    /// Callable numbers this campaign may present, E.164.
    pub caller_ids: Vec<String>,
    /// The campaign's own hours; they can only narrow the destination's window.
    pub calling_hours: Option<WeeklyHours>,
    /// The campaign's attempt cap; replaces the destination's default.
    pub attempt_limit: Option<AttemptLimit>,
}

/// Statutory validity of a registry result, in days, by country.
pub fn statutory_valid_days(country: Region) -> Option<u32> {
    match country.as_str() {
        "IT" => Some(15),
        "GB" => Some(28),
        "FR" => Some(30),
        "US" => Some(31),
        _ => None,
    }
}

impl Config {
    /// Loads the configuration: `path` if given, else `./dialgate.toml` if it
    /// exists, else the built-in demo configuration.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            Some(path) => Self::from_file(path),
            None if Path::new(DEFAULT_FILE).exists() => Self::from_file(Path::new(DEFAULT_FILE)),
            None => Self::parse(BUILT_IN, "built-in", Path::new(".")),
        }
    }

    /// Reads and validates a configuration file; relative paths in it are
    /// resolved against the file's directory.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
            path: path.to_path_buf(),
            cause,
        })?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Self::parse(&text, &path.display().to_string(), base)
    }

    /// Parses and validates configuration text.
    pub fn parse(text: &str, origin: &str, base_dir: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|err| ConfigError::Syntax {
            origin: origin.to_string(),
            message: err.to_string().trim().replace('\n', " "),
        })?;
        Validator { origin }.validate(raw, base_dir)
    }

    /// The campaign with this id.
    pub fn campaign(&self, id: &str) -> Option<&CampaignConfig> {
        self.campaigns.iter().find(|c| c.id == id)
    }

    /// The registry with this id.
    pub fn registry(&self, id: &str) -> Option<&RegistryConfig> {
        self.registries.iter().find(|r| r.id == id)
    }

    /// The calling rules of a destination region (none when it has no rules).
    pub fn destination(&self, region: Region) -> &DestinationRules {
        static NONE: std::sync::OnceLock<DestinationRules> = std::sync::OnceLock::new();
        self.destinations
            .get(&region)
            .unwrap_or_else(|| NONE.get_or_init(DestinationRules::default))
    }

    /// The attempt cap of a campaign calling into `region`, if any.
    pub fn attempt_limit(&self, campaign: &CampaignConfig, region: Region) -> Option<AttemptLimit> {
        campaign
            .attempt_limit
            .or(self.destination(region).attempt_limit)
    }

    /// The longest attempt-cap window configured anywhere (how far back the
    /// log is read at start-up to rebuild the counters).
    pub fn longest_attempt_window(&self) -> Option<jiff::SignedDuration> {
        self.campaigns
            .iter()
            .filter_map(|c| c.attempt_limit)
            .chain(self.destinations.values().filter_map(|d| d.attempt_limit))
            .map(|l| l.window)
            .max()
    }
}

struct Validator<'a> {
    origin: &'a str,
}

impl Validator<'_> {
    fn invalid(
        &self,
        key: impl Into<String>,
        value: impl fmt::Display,
        problem: &str,
    ) -> ConfigError {
        ConfigError::Invalid {
            origin: self.origin.to_string(),
            key: key.into(),
            value: value.to_string(),
            problem: problem.to_string(),
        }
    }

    fn region(&self, key: &str, value: &str) -> Result<Region, ConfigError> {
        Region::parse(value).ok_or_else(|| {
            self.invalid(
                key,
                value,
                "not an ISO 3166 region code known to the numbering plan",
            )
        })
    }

    fn validate(&self, raw: RawConfig, base_dir: &Path) -> Result<Config, ConfigError> {
        let tls = raw.server.tls.as_ref().map(|t| crate::tls::TlsSettings {
            cert_file: base_dir.join(&t.cert_file),
            key_file: base_dir.join(&t.key_file),
            client_ca_file: t.client_ca_file.as_ref().map(|f| base_dir.join(f)),
        });
        if let Some(settings) = &tls {
            crate::tls::acceptors(settings).map_err(|problem| {
                self.invalid("server.tls", settings.cert_file.display(), &problem)
            })?;
        }
        let mut api_keys: Vec<ApiKey> = Vec::new();
        for (i, k) in raw.api_keys.iter().enumerate() {
            let key = |field: &str| format!("api_key[{i}].{field}");
            if k.name.trim().is_empty() || api_keys.iter().any(|a| a.name == k.name) {
                return Err(self.invalid(key("name"), &k.name, "must be non-empty and unique"));
            }
            let sha256: [u8; 32] = hex::decode(k.sha256.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| {
                    self.invalid(
                        key("sha256"),
                        &k.sha256,
                        "expected 64 hex digits (the SHA-256 of the key)",
                    )
                })?;
            let roles = k
                .roles
                .iter()
                .map(|r| {
                    Role::parse(r).ok_or_else(|| {
                        self.invalid(key("roles"), r, "expected dialer, crm, supervisor or admin")
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            if roles.is_empty() {
                return Err(self.invalid(key("roles"), "[]", "a key needs at least one role"));
            }
            api_keys.push(ApiKey {
                name: k.name.clone(),
                sha256,
                roles,
            });
        }
        let server = ServerConfig {
            grpc_addr: raw.server.grpc_addr,
            http_addr: raw.server.http_addr,
            data_dir: base_dir.join(raw.server.data_dir),
            registry_reload_interval_ms: raw.server.registry_reload_interval_ms.max(50),
            shutdown_grace_ms: raw.server.shutdown_grace_ms,
            worker_threads: raw.server.worker_threads,
            log_format: raw.server.log_format,
            tls,
        };
        if raw.log.queue_capacity == 0 {
            return Err(self.invalid("log.queue_capacity", 0, "must be at least 1"));
        }
        if raw.log.max_batch == 0 {
            return Err(self.invalid("log.max_batch", 0, "must be at least 1"));
        }
        let mut log = raw.log;
        if let Some(key_file) = &log.checkpoint_key_file {
            let key_file = base_dir.join(key_file);
            crate::decision_log::checkpoint::load_key(&key_file).map_err(|problem| {
                self.invalid("log.checkpoint_key_file", key_file.display(), &problem)
            })?;
            log.checkpoint_key_file = Some(key_file);
        }

        let mut registries = Vec::new();
        let mut ids = HashSet::new();
        for (i, r) in raw.registries.into_iter().enumerate() {
            let key = |field: &str| format!("registry[{i}].{field}");
            if !valid_id(&r.id) {
                return Err(self.invalid(
                    key("id"),
                    &r.id,
                    "must be 1-64 characters of a-z, 0-9, '-' or '_'",
                ));
            }
            if !ids.insert(r.id.clone()) {
                return Err(self.invalid(key("id"), &r.id, "duplicate registry id"));
            }
            let country = self.region(&key("country"), &r.country)?;
            let valid_days = match r.valid_days.or_else(|| statutory_valid_days(country)) {
                Some(0) => return Err(self.invalid(key("valid_days"), 0, "must be at least 1")),
                Some(days) => days,
                None => {
                    return Err(self.invalid(
                        key("valid_days"),
                        "<missing>",
                        "no statutory default for this country: set valid_days",
                    ));
                }
            };
            if r.seed_controller.is_some() && r.kind == RegistryKind::Blocklist {
                return Err(self.invalid(
                    key("seed_controller"),
                    r.seed_controller.unwrap_or_default(),
                    "only allow-list registries have a controller",
                ));
            }
            if r.seed_file.is_some()
                && r.kind == RegistryKind::Allowlist
                && r.seed_controller.is_none()
            {
                return Err(self.invalid(
                    key("seed_controller"),
                    "<missing>",
                    "an allow-list seed needs the controller it is cleared for",
                ));
            }
            let mut exemptions = statutory_exemptions(country);
            if let Some(raw) = &r.exemptions {
                let period =
                    |field: &str, months: Option<u32>, days: Option<u32>| match (months, days) {
                        (Some(m), None) => Ok(Some(Some(Period::Months(m)))),
                        (None, Some(d)) => Ok(Some(Some(Period::Days(d)))),
                        (None, None) => Ok(None),
                        (Some(_), Some(_)) => Err(self.invalid(
                            key(&format!("exemptions.{field}_months")),
                            "both",
                            "set months or days, not both",
                        )),
                    };
                if let Some(customer) = period("customer", raw.customer_months, raw.customer_days)?
                {
                    exemptions.customer = customer;
                }
                if let Some(inquiry) = period("inquiry", raw.inquiry_months, raw.inquiry_days)? {
                    exemptions.inquiry = inquiry;
                }
                exemptions.consent = raw.consent.unwrap_or(exemptions.consent);
                exemptions.consent_after_registration = raw
                    .consent_after_registration
                    .unwrap_or(exemptions.consent_after_registration);
                if exemptions.consent_after_registration && r.kind != RegistryKind::Allowlist {
                    return Err(self.invalid(
                        key("exemptions.consent_after_registration"),
                        true,
                        "applies to allow-list registries only",
                    ));
                }
            }
            registries.push(RegistryConfig {
                exemptions,
                id: r.id,
                kind: r.kind,
                country,
                valid_days,
                seed_file: r.seed_file.map(|p| base_dir.join(p)),
                seed_controller: r.seed_controller,
            });
        }

        let mut campaigns = Vec::new();
        let mut campaign_ids = HashSet::new();
        for (i, c) in raw.campaigns.into_iter().enumerate() {
            let key = |field: &str| format!("campaign[{i}].{field}");
            if c.id.trim().is_empty() || c.id.len() > 128 {
                return Err(self.invalid(key("id"), &c.id, "must be 1-128 characters"));
            }
            if !campaign_ids.insert(c.id.clone()) {
                return Err(self.invalid(key("id"), &c.id, "duplicate campaign id"));
            }
            if c.controller.trim().is_empty() {
                return Err(self.invalid(key("controller"), &c.controller, "must not be empty"));
            }
            let calling_hours = c
                .calling_hours
                .as_ref()
                .map(|h| self.weekly_hours(&key("calling_hours"), h))
                .transpose()?;
            let attempt_limit = c
                .attempt_limit
                .as_ref()
                .map(|l| self.attempt_limit(&key("attempt_limit"), l))
                .transpose()?;
            let purpose = Purpose::from_config(&c.purpose).ok_or_else(|| {
                self.invalid(
                    key("purpose"),
                    &c.purpose,
                    "must be marketing, market_research or statistical",
                )
            })?;
            let default_region = self.region(&key("default_region"), &c.default_region)?;
            if c.destinations.is_empty() {
                return Err(self.invalid(
                    key("destinations"),
                    "[]",
                    "a campaign must be allowed to call at least one region",
                ));
            }
            let destinations = c
                .destinations
                .iter()
                .map(|d| self.region(&key("destinations"), d))
                .collect::<Result<Vec<_>, _>>()?;
            let caller_ids = c
                .caller_ids
                .iter()
                .map(|cli| {
                    number::normalize(cli, default_region)
                        .map(|n| n.e164)
                        .map_err(|err| self.invalid(key("caller_ids"), cli, &err.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            campaigns.push(CampaignConfig {
                id: c.id,
                controller: c.controller,
                purpose,
                default_region,
                destinations,
                consent_required: c.consent_required,
                caller_ids,
                calling_hours,
                attempt_limit,
            });
        }

        let mut destinations: HashMap<Region, DestinationRules> = ["IT", "FR", "ES", "US", "GB"]
            .iter()
            .filter_map(|code| Some((Region::parse(code)?, calling::statutory(code))))
            .collect();
        for (code, raw) in &raw.destination {
            let region = self.region(&format!("destination.{code}"), code)?;
            let rules = destinations.entry(region).or_default();
            self.apply_destination(&format!("destination.{code}"), raw, rules)?;
        }

        Ok(Config {
            origin: self.origin.to_string(),
            server,
            log,
            registries,
            campaigns,
            destinations,
            api_keys,
        })
    }
}

impl Validator<'_> {
    fn spans(&self, key: &str, values: &[String]) -> Result<DaySpans, ConfigError> {
        values
            .iter()
            .map(|v| {
                Span::parse(v).ok_or_else(|| {
                    self.invalid(key, v, "expected HH:MM-HH:MM with start before end")
                })
            })
            .collect()
    }

    fn weekly_hours(&self, key: &str, raw: &RawWeeklyHours) -> Result<WeeklyHours, ConfigError> {
        let days = [
            &raw.mon, &raw.tue, &raw.wed, &raw.thu, &raw.fri, &raw.sat, &raw.sun,
        ];
        let mut hours = WeeklyHours::default();
        for (i, day) in days.iter().enumerate() {
            if let Some(values) = day {
                hours.days[i] =
                    Some(self.spans(&format!("{key}.{}", calling::WEEKDAY_KEYS[i]), values)?);
            }
        }
        if let Some(values) = &raw.holidays {
            hours.holidays = Some(self.spans(&format!("{key}.holidays"), values)?);
        }
        if let Some(values) = &raw.pre_holidays {
            hours.pre_holidays = Some(self.spans(&format!("{key}.pre_holidays"), values)?);
        }
        Ok(hours)
    }

    fn attempt_limit(&self, key: &str, raw: &RawAttemptLimit) -> Result<AttemptLimit, ConfigError> {
        if raw.max_attempts == 0 {
            return Err(self.invalid(format!("{key}.max_attempts"), 0, "must be at least 1"));
        }
        let hours = match (raw.window_days, raw.window_hours) {
            (Some(days), None) if days > 0 => i64::from(days) * 24,
            (None, Some(hours)) if hours > 0 => i64::from(hours),
            _ => {
                return Err(self.invalid(
                    format!("{key}.window_days"),
                    format!("{:?}/{:?}", raw.window_days, raw.window_hours),
                    "set exactly one of window_days or window_hours, at least 1",
                ));
            }
        };
        Ok(AttemptLimit {
            max_attempts: raw.max_attempts,
            window: jiff::SignedDuration::from_hours(hours),
        })
    }

    fn apply_destination(
        &self,
        key: &str,
        raw: &RawDestination,
        rules: &mut DestinationRules,
    ) -> Result<(), ConfigError> {
        if let Some(hours) = &raw.calling_hours {
            let configured = self.weekly_hours(&format!("{key}.calling_hours"), hours)?;
            rules.hours = Some(match &rules.hours {
                Some(statutory) => statutory.overridden_by(&configured),
                None => configured,
            });
        }
        for (i, day) in raw.extra_holidays.iter().enumerate() {
            let date: jiff::civil::Date = day.parse().map_err(|_| {
                self.invalid(
                    format!("{key}.extra_holidays[{i}]"),
                    day,
                    "expected YYYY-MM-DD",
                )
            })?;
            rules.extra_holidays.push(date);
        }
        if let Some(limit) = &raw.attempt_limit {
            rules.attempt_limit = Some(self.attempt_limit(&format!("{key}.attempt_limit"), limit)?);
        }
        for (state, state_rules) in &raw.state {
            let hours = self.weekly_hours(
                &format!("{key}.state.{state}.calling_hours"),
                &state_rules.calling_hours,
            )?;
            let merged = match rules.states.get(state) {
                Some(existing) => existing.overridden_by(&hours),
                None => hours,
            };
            rules.states.insert(state.clone(), merged);
        }
        Ok(())
    }
}

/// Registry ids become file names: keep them to a safe alphabet.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, "test.toml", Path::new("/tmp"))
    }

    #[test]
    fn test_built_in_config_is_valid() {
        let config = Config::parse(BUILT_IN, "built-in", Path::new(".")).unwrap();
        assert!(!config.campaigns.is_empty());
        assert!(!config.registries.is_empty());
    }

    #[test]
    fn test_statutory_valid_days_is_the_default() {
        let config =
            parse("[[registry]]\nid = \"it-rpo\"\nkind = \"allowlist\"\ncountry = \"IT\"\n")
                .unwrap();
        assert_eq!(config.registries[0].valid_days, 15);
        let config =
            parse("[[registry]]\nid = \"uk\"\nkind = \"blocklist\"\ncountry = \"GB\"\n").unwrap();
        assert_eq!(config.registries[0].valid_days, 28);
    }

    #[test]
    fn test_errors_name_key_and_value() {
        let cases = [
            (
                "[[registry]]\nid = \"x\"\nkind = \"allowlist\"\ncountry = \"ZZ\"\n",
                "registry[0].country",
                "ZZ",
            ),
            (
                "[[registry]]\nid = \"x\"\nkind = \"blocklist\"\ncountry = \"DE\"\n",
                "registry[0].valid_days",
                "<missing>",
            ),
            (
                "[[registry]]\nid = \"X Y\"\nkind = \"blocklist\"\ncountry = \"US\"\n",
                "registry[0].id",
                "X Y",
            ),
            (
                "[[campaign]]\nid = \"c\"\ncontroller = \"a\"\npurpose = \"spam\"\ndefault_region = \"IT\"\ndestinations = [\"IT\"]\n",
                "campaign[0].purpose",
                "spam",
            ),
            (
                "[[campaign]]\nid = \"c\"\ncontroller = \"a\"\npurpose = \"marketing\"\ndefault_region = \"IT\"\ndestinations = [\"IT\"]\ncaller_ids = [\"12\"]\n",
                "campaign[0].caller_ids",
                "12",
            ),
            (
                "[[campaign]]\nid = \"c\"\ncontroller = \"\"\npurpose = \"marketing\"\ndefault_region = \"IT\"\ndestinations = [\"IT\"]\n",
                "campaign[0].controller",
                "",
            ),
        ];
        for (text, key, value) in cases {
            let message = parse(text).unwrap_err().to_string();
            assert!(message.contains(key), "{message} should name {key}");
            assert!(
                message.contains(&format!("{value:?}")),
                "{message} should name {value:?}"
            );
        }
    }

    #[test]
    fn test_unknown_keys_are_refused() {
        let message = parse("[server]\ngrpc_adr = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(message.contains("grpc_adr"), "{message}");
    }

    #[test]
    fn test_bad_tls_files_are_named() {
        let message = parse("[server.tls]\ncert_file = \"a\"\nkey_file = \"b\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("server.tls") && message.contains("cannot read certificate"),
            "{message}"
        );
    }

    #[test]
    fn test_api_keys() {
        let message = parse("[[api_key]]\nname = \"a\"\nsha256 = \"00\"\nroles = [\"dialer\"]\n")
            .unwrap_err()
            .to_string();
        assert!(message.contains("api_key[0].sha256"), "{message}");
        let digest = "ab".repeat(32);
        let message = parse(&format!(
            "[[api_key]]\nname = \"a\"\nsha256 = \"{digest}\"\nroles = [\"boss\"]\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            message.contains("api_key[0].roles") && message.contains("boss"),
            "{message}"
        );
        let config = parse(&format!(
            "[[api_key]]\nname = \"a\"\nsha256 = \"{digest}\"\nroles = [\"dialer\", \"crm\"]\n"
        ))
        .unwrap();
        assert_eq!(config.api_keys[0].roles, vec![Role::Dialer, Role::Crm]);
    }

    #[test]
    fn test_calling_hours_and_limits() {
        let config = parse(
            "[[campaign]]\nid = \"c\"\ncontroller = \"a\"\npurpose = \"marketing\"\ndefault_region = \"FR\"\ndestinations = [\"FR\"]\n\
             [campaign.calling_hours]\nmon = [\"10:00-12:00\", \"15:00-18:00\"]\nsun = []\n\
             [campaign.attempt_limit]\nmax_attempts = 3\nwindow_hours = 24\n\
             [destination.IT]\nextra_holidays = [\"2026-06-29\"]\n[destination.IT.calling_hours]\nsat = []\n\
             [destination.US.state.TX.calling_hours]\nsun = [\"12:00-21:00\"]\n",
        )
        .unwrap();
        let campaign = &config.campaigns[0];
        let hours = campaign.calling_hours.as_ref().unwrap();
        assert_eq!(hours.days[0].as_ref().unwrap().len(), 2);
        assert_eq!(hours.days[6], Some(vec![]));
        assert_eq!(hours.days[1], None);
        let fr = Region::parse("FR").unwrap();
        assert_eq!(config.attempt_limit(campaign, fr).unwrap().max_attempts, 3);
        let it = config.destination(Region::parse("IT").unwrap());
        assert_eq!(it.extra_holidays.len(), 1);
        let it_hours = it.hours.as_ref().unwrap();
        assert_eq!(it_hours.days[5], Some(vec![]), "configured Saturday");
        assert_eq!(
            it_hours.days[0],
            Some(vec![Span::parse("09:00-20:00").unwrap()]),
            "statutory Monday kept"
        );
        let us = config.destination(Region::parse("US").unwrap());
        assert!(us.states.contains_key("TX") && us.states.contains_key("FL"));
        assert_eq!(
            config.destination(fr).attempt_limit.unwrap().max_attempts,
            4,
            "statutory default"
        );
        assert!(
            config
                .destination(Region::parse("JP").unwrap())
                .hours
                .is_none()
        );
    }

    #[test]
    fn test_bad_hours_are_named() {
        let message = parse(
            "[[campaign]]\nid = \"c\"\ncontroller = \"a\"\npurpose = \"marketing\"\ndefault_region = \"IT\"\ndestinations = [\"IT\"]\n[campaign.calling_hours]\ntue = [\"20:00-09:00\"]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            message.contains("campaign[0].calling_hours.tue") && message.contains("20:00-09:00"),
            "{message}"
        );
        let message = parse("[destination.IT]\nextra_holidays = [\"29/06\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("destination.IT.extra_holidays[0]"),
            "{message}"
        );
        let message = parse(
            "[[campaign]]\nid = \"c\"\ncontroller = \"a\"\npurpose = \"marketing\"\ndefault_region = \"IT\"\ndestinations = [\"IT\"]\n[campaign.attempt_limit]\nmax_attempts = 2\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            message.contains("campaign[0].attempt_limit.window_days"),
            "{message}"
        );
    }

    #[test]
    fn test_caller_ids_are_normalized() {
        let config = parse(
            "[[campaign]]\nid = \"c\"\ncontroller = \"a\"\npurpose = \"marketing\"\ndefault_region = \"IT\"\ndestinations = [\"IT\"]\ncaller_ids = [\"02 1234 5678\"]\n",
        )
        .unwrap();
        assert_eq!(
            config.campaigns[0].caller_ids,
            vec!["+390212345678".to_string()]
        );
    }
}
