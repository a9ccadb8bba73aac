//! Configuration: the TOML file of the contract, parsed and validated once.
//!
//! The law itself lives in [`crate::statutes`]; this file holds what the
//! operator configures: registries, campaigns, and `[destination.XX]`
//! overrides of a statute. Validation names the offending key and value;
//! every number is bounded; a configuration that loads is internally
//! consistent (ids unique, regions real, caller IDs parseable, no registry
//! trusted longer than its statute allows).

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::auth::{ApiKey, Role};
use crate::calling::{self, AttemptLimit, DaySpans, Span, WeeklyHours};
use crate::model::Purpose;
use crate::number::{self, Region};
use crate::statutes::{self, ConsentRegime, Period};

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

pub use crate::model::RegistryKind;

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
    /// First day the override applies (YYYY-MM-DD); absent: always.
    from: Option<String>,
    /// Why: the law the override follows (shown by `policy show`).
    source: Option<String>,
    /// `opt_in` or `opt_out`.
    consent: Option<String>,
    /// `allowlist`, `blocklist` or `none`: the registry the law requires.
    registry: Option<String>,
    registry_valid_days: Option<u32>,
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
    #[serde(default = "default_max_connections")]
    max_connections: u64,
    #[serde(default = "default_idle_timeout_ms")]
    idle_timeout_ms: u64,
    #[serde(default = "default_header_timeout_ms")]
    header_timeout_ms: u64,
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
            max_connections: default_max_connections(),
            idle_timeout_ms: default_idle_timeout_ms(),
            header_timeout_ms: default_header_timeout_ms(),
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
fn default_max_connections() -> u64 {
    1024
}
fn default_idle_timeout_ms() -> u64 {
    120_000
}
fn default_header_timeout_ms() -> u64 {
    10_000
}

pub use crate::decision_log::{LogConfig, Synchronous};

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
    /// `[destination.XX]` overrides of the statutes, by region code.
    pub destination_overrides: Vec<DestinationOverride>,
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
    /// Open connections per listener (TLS handshakes included); more are
    /// closed at once.
    pub max_connections: usize,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout_ms: u64,
    /// A connection must finish its TLS handshake and send its first
    /// request's headers this soon after the accept, else it is closed.
    pub header_timeout_ms: u64,
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
    /// `[registry.exemptions]` as configured: they can only narrow the
    /// statute's exemptions (see [`ExemptionSettings::narrow`]).
    pub exemption_settings: ExemptionSettings,
}

/// Exemption settings of a registry; `None` leaves the statute's value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExemptionSettings {
    pub customer: Option<Option<Period>>,
    pub inquiry: Option<Option<Period>>,
    pub consent: Option<bool>,
    pub consent_after_registration: bool,
}

impl ExemptionSettings {
    /// The exemptions of a registry whose statute grants `statutory`: each
    /// setting can only narrow the statute's (a shorter period, no consent).
    pub fn narrow(&self, statutory: Exemptions) -> Exemptions {
        let configured = Exemptions {
            customer: self.customer.unwrap_or(statutory.customer),
            inquiry: self.inquiry.unwrap_or(statutory.inquiry),
            consent: self.consent.unwrap_or(statutory.consent),
            consent_after_registration: self.consent_after_registration,
        };
        statutory.narrowed_by(configured)
    }

    /// The exemptions of a registry no statute requires (the operator's own
    /// stricter check): as configured, none by default.
    pub fn as_configured(&self) -> Exemptions {
        Exemptions {
            customer: self.customer.flatten(),
            inquiry: self.inquiry.flatten(),
            consent: self.consent.unwrap_or(false),
            consent_after_registration: self.consent_after_registration,
        }
    }
}

/// A `[destination.XX]` override: replaces the statute's rules of the kinds
/// it sets, from `from` on. Reported at start-up, on `/status` and by
/// `policy show`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationOverride {
    pub region: Region,
    pub from: Option<jiff::civil::Date>,
    /// The operator's note of the law it follows.
    pub source: String,
    pub consent: Option<ConsentRegime>,
    /// `Some(None)`: no registry required.
    pub registry: Option<Option<RegistryKind>>,
    pub registry_valid_days: Option<u32>,
    /// Days set here replace the statute's; unset days keep them.
    pub calling_hours: Option<WeeklyHours>,
    pub extra_holidays: Vec<jiff::civil::Date>,
    /// Replaces the statute's national caps.
    pub attempt_limit: Option<AttemptLimit>,
    /// State overlays (US); days set replace the statute's state hours.
    pub states: BTreeMap<String, WeeklyHours>,
}

impl DestinationOverride {
    /// `key = value` lines of what it sets, for reports.
    pub fn settings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let key = |k: &str| format!("destination.{}.{k}", self.region);
        if let Some(consent) = self.consent {
            out.push(format!("{} = {consent:?}", key("consent")));
        }
        if let Some(registry) = self.registry {
            out.push(format!(
                "{} = {}",
                key("registry"),
                registry.map_or("none".to_string(), |k| k.to_string())
            ));
        }
        if let Some(days) = self.registry_valid_days {
            out.push(format!("{} = {days}", key("registry_valid_days")));
        }
        if self.calling_hours.is_some() {
            out.push(key("calling_hours"));
        }
        if !self.extra_holidays.is_empty() {
            out.push(format!(
                "{} = {} days",
                key("extra_holidays"),
                self.extra_holidays.len()
            ));
        }
        if let Some(limit) = self.attempt_limit {
            out.push(format!(
                "{} = {} in {} h",
                key("attempt_limit"),
                limit.max_attempts,
                limit.window.as_hours()
            ));
        }
        for state in self.states.keys() {
            out.push(key(&format!("state.{state}.calling_hours")));
        }
        out
    }
}

pub use crate::statutes::Exemptions;

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
    /// The campaign's attempt cap; applies on top of the statute's caps.
    pub attempt_limit: Option<AttemptLimit>,
}

/// The longest validity, in days, that the statute of `country` gives a
/// registry of `kind` at any time; `None` when the statute requires none.
pub fn statutory_valid_days(country: Region, kind: RegistryKind) -> Option<u32> {
    statutes::statute(country.as_str())?
        .registry
        .iter()
        .filter_map(|rule| rule.value)
        .filter(|requirement| requirement.kind == kind)
        .map(|requirement| requirement.valid_days)
        .max()
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

    /// A configuration of these campaigns and registries, every other
    /// setting at its default: for tests, benches and fuzz targets that
    /// decide calls without a file.
    pub fn with(campaigns: Vec<CampaignConfig>, registries: Vec<RegistryConfig>) -> Config {
        let mut config =
            Self::parse("", "in-code", Path::new(".")).expect("the empty configuration is valid");
        config.campaigns = campaigns;
        config.registries = registries;
        config
    }

    /// The campaign with this id.
    pub fn campaign(&self, id: &str) -> Option<&CampaignConfig> {
        self.campaigns.iter().find(|c| c.id == id)
    }

    /// The registry with this id.
    pub fn registry(&self, id: &str) -> Option<&RegistryConfig> {
        self.registries.iter().find(|r| r.id == id)
    }

    /// The override of a destination's statute, if configured.
    pub fn destination_override(&self, region: Region) -> Option<&DestinationOverride> {
        self.destination_overrides
            .iter()
            .find(|o| o.region == region)
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
            registry_reload_interval_ms: self.bounded(
                "server.registry_reload_interval_ms",
                raw.server.registry_reload_interval_ms,
                50,
                3_600_000,
            )?,
            shutdown_grace_ms: self.bounded(
                "server.shutdown_grace_ms",
                raw.server.shutdown_grace_ms,
                0,
                600_000,
            )?,
            worker_threads: self.bounded(
                "server.worker_threads",
                raw.server.worker_threads as u64,
                0,
                1024,
            )? as usize,
            log_format: raw.server.log_format,
            max_connections: self.bounded(
                "server.max_connections",
                raw.server.max_connections,
                1,
                1_000_000,
            )? as usize,
            idle_timeout_ms: self.bounded(
                "server.idle_timeout_ms",
                raw.server.idle_timeout_ms,
                100,
                86_400_000,
            )?,
            header_timeout_ms: self.bounded(
                "server.header_timeout_ms",
                raw.server.header_timeout_ms,
                100,
                600_000,
            )?,
            tls,
        };
        let log = self.log(raw.log, base_dir)?;

        let mut destination_overrides = Vec::new();
        for (code, raw) in &raw.destination {
            let key = format!("destination.{code}");
            let region = self.region(&key, code)?;
            if destination_overrides
                .iter()
                .any(|o: &DestinationOverride| o.region == region)
            {
                return Err(self.invalid(key, code, "the same region is configured twice"));
            }
            destination_overrides.push(self.destination_override(&key, region, raw)?);
        }
        destination_overrides.sort_by(|a, b| a.region.as_str().cmp(b.region.as_str()));

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
            let overridden_days = destination_overrides
                .iter()
                .find(|o| o.region == country)
                .and_then(|o| o.registry_valid_days);
            let statutory = statutory_valid_days(country, r.kind);
            // The ceiling is the longest validity the law gives in any
            // period (statute or override); each decision also caps it by
            // the validity in force then (`policy::EraRegistry::valid_days`).
            let ceiling = match (statutory, overridden_days) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            let valid_days = match (r.valid_days, ceiling) {
                (Some(days), _) if !(1..=MAX_VALID_DAYS).contains(&days) => {
                    return Err(self.invalid(
                        key("valid_days"),
                        days,
                        &format!("must be 1-{MAX_VALID_DAYS}"),
                    ));
                }
                (Some(days), Some(ceiling)) if days > ceiling => {
                    return Err(self.invalid(
                        key("valid_days"),
                        days,
                        &format!(
                            "longer than the {ceiling} days the law allows a {} result to be relied \
                             on; a registry result can only be trusted for less (an override \
                             [destination.{country}] registry_valid_days changes the law's value)",
                            r.kind
                        ),
                    ));
                }
                (Some(days), _) => days,
                (None, _) if statutory.is_some() || overridden_days.is_some() => {
                    statutory.or(overridden_days).unwrap_or(1)
                }
                (None, _) => {
                    return Err(self.invalid(
                        key("valid_days"),
                        "<missing>",
                        "no statutory default for this country and kind: set valid_days",
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
            let exemption_settings = match &r.exemptions {
                None => ExemptionSettings::default(),
                Some(raw) => self.exemption_settings(&key("exemptions"), raw, r.kind, country)?,
            };
            registries.push(RegistryConfig {
                exemption_settings,
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
            if !valid_campaign_id(&c.id) {
                return Err(self.invalid(
                    key("id"),
                    &c.id,
                    &format!(
                        "must be 1-{MAX_ID_LENGTH} characters of letters, digits, '-', '_', '.' or ':'"
                    ),
                ));
            }
            if !campaign_ids.insert(c.id.clone()) {
                return Err(self.invalid(key("id"), &c.id, "duplicate campaign id"));
            }
            if c.controller.trim().is_empty()
                || c.controller.len() > MAX_ID_LENGTH
                || c.controller.chars().any(char::is_control)
            {
                return Err(self.invalid(
                    key("controller"),
                    &c.controller,
                    &format!("must be 1-{MAX_ID_LENGTH} characters, no control characters"),
                ));
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
            let mut destinations = Vec::new();
            for d in &c.destinations {
                let region = self.region(&key("destinations"), d)?;
                if !destinations.contains(&region) {
                    destinations.push(region);
                }
            }
            // Any valid number type: which types a destination's law lets a
            // call present is the statute's business, decided per call.
            let caller_ids = c
                .caller_ids
                .iter()
                .map(|cli| {
                    number::normalize_any(cli, default_region)
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

        Ok(Config {
            origin: self.origin.to_string(),
            server,
            log,
            registries,
            campaigns,
            destination_overrides,
            api_keys,
        })
    }
}

/// Longest a registry result may be configured valid (ten years).
pub const MAX_VALID_DAYS: u32 = 3650;

/// Longest campaign id, controller or registry-related id accepted.
pub const MAX_ID_LENGTH: usize = 128;

/// Campaign ids reach metrics labels, logs and reason details: a safe alphabet.
pub fn valid_campaign_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LENGTH
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
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
        if !(1..=10_000).contains(&raw.max_attempts) {
            return Err(self.invalid(
                format!("{key}.max_attempts"),
                raw.max_attempts,
                "must be 1-10000",
            ));
        }
        let hours = match (raw.window_days, raw.window_hours) {
            (Some(days), None) if (1..=366).contains(&days) => i64::from(days) * 24,
            (None, Some(hours)) if (1..=366 * 24).contains(&hours) => i64::from(hours),
            _ => {
                return Err(self.invalid(
                    format!("{key}.window_days"),
                    format!("{:?}/{:?}", raw.window_days, raw.window_hours),
                    "set exactly one of window_days (1-366) or window_hours (1-8784)",
                ));
            }
        };
        Ok(AttemptLimit {
            max_attempts: raw.max_attempts,
            window: jiff::SignedDuration::from_hours(hours),
        })
    }

    /// A number checked against its range, named when outside it.
    fn bounded(&self, key: &str, value: u64, min: u64, max: u64) -> Result<u64, ConfigError> {
        if (min..=max).contains(&value) {
            Ok(value)
        } else {
            Err(self.invalid(key, value, &format!("must be {min}-{max}")))
        }
    }

    fn log(&self, mut log: LogConfig, base_dir: &Path) -> Result<LogConfig, ConfigError> {
        log.queue_capacity = self.bounded(
            "log.queue_capacity",
            log.queue_capacity as u64,
            1,
            16_777_216,
        )? as usize;
        log.max_batch = self.bounded("log.max_batch", log.max_batch as u64, 1, 65_536)? as usize;
        self.bounded(
            "log.group_commit_linger_us",
            log.group_commit_linger_us,
            0,
            100_000,
        )?;
        self.bounded("log.wal_backfill_ms", log.wal_backfill_ms, 0, 3_600_000)?;
        self.bounded(
            "log.idempotency_window_seconds",
            log.idempotency_window_seconds,
            1,
            7 * 86_400,
        )?;
        log.idempotency_max_entries = self.bounded(
            "log.idempotency_max_entries",
            log.idempotency_max_entries as u64,
            1,
            100_000_000,
        )? as usize;
        self.bounded("log.write_timeout_ms", log.write_timeout_ms, 1, 600_000)?;
        self.bounded(
            "log.allow_replay_seconds",
            log.allow_replay_seconds,
            0,
            3600,
        )?;
        self.bounded(
            "log.checkpoint_interval_seconds",
            log.checkpoint_interval_seconds,
            1,
            86_400,
        )?;
        self.bounded(
            "log.retention_days",
            u64::from(log.retention_days),
            0,
            36_500,
        )?;
        if let Some(key_file) = &log.checkpoint_key_file {
            let key_file = base_dir.join(key_file);
            crate::decision_log::checkpoint::load_key(&key_file).map_err(|problem| {
                self.invalid("log.checkpoint_key_file", key_file.display(), &problem)
            })?;
            log.checkpoint_key_file = Some(key_file);
        }
        Ok(log)
    }

    fn period(
        &self,
        key: &str,
        months: Option<u32>,
        days: Option<u32>,
    ) -> Result<Option<Option<Period>>, ConfigError> {
        match (months, days) {
            (Some(m), None) if m <= 120 => Ok(Some(Some(Period::Months(m)))),
            (None, Some(d)) if d <= 3660 => Ok(Some(Some(Period::Days(d)))),
            (None, None) => Ok(None),
            (Some(m), None) => Err(self.invalid(format!("{key}_months"), m, "must be 0-120")),
            (None, Some(d)) => Err(self.invalid(format!("{key}_days"), d, "must be 0-3660")),
            (Some(_), Some(_)) => Err(self.invalid(
                format!("{key}_months"),
                "both",
                "set months or days, not both",
            )),
        }
    }

    fn exemption_settings(
        &self,
        key: &str,
        raw: &RawExemptions,
        kind: RegistryKind,
        country: Region,
    ) -> Result<ExemptionSettings, ConfigError> {
        let settings = ExemptionSettings {
            customer: self.period(
                &format!("{key}.customer"),
                raw.customer_months,
                raw.customer_days,
            )?,
            inquiry: self.period(
                &format!("{key}.inquiry"),
                raw.inquiry_months,
                raw.inquiry_days,
            )?,
            consent: raw.consent,
            consent_after_registration: raw.consent_after_registration.unwrap_or(false),
        };
        // Italy's policy (compliance rules IT-RPO-SURVIVE (a)): the RPO
        // revokes earlier consents, later ones survive. Nowhere else.
        if settings.consent_after_registration
            && (kind != RegistryKind::Allowlist || country.as_str() != "IT")
        {
            return Err(self.invalid(
                format!("{key}.consent_after_registration"),
                true,
                "applies to the Italian RPO (an allow-list of IT) only",
            ));
        }
        Ok(settings)
    }

    fn destination_override(
        &self,
        key: &str,
        region: Region,
        raw: &RawDestination,
    ) -> Result<DestinationOverride, ConfigError> {
        let from = raw
            .from
            .as_ref()
            .map(|day| {
                day.parse::<jiff::civil::Date>()
                    .map_err(|_| self.invalid(format!("{key}.from"), day, "expected YYYY-MM-DD"))
            })
            .transpose()?;
        let consent = raw
            .consent
            .as_deref()
            .map(|c| match c {
                "opt_in" => Ok(ConsentRegime::OptIn),
                "opt_out" => Ok(ConsentRegime::OptOut),
                other => Err(self.invalid(
                    format!("{key}.consent"),
                    other,
                    "expected opt_in or opt_out",
                )),
            })
            .transpose()?;
        let registry = raw
            .registry
            .as_deref()
            .map(|r| match r {
                "allowlist" => Ok(Some(RegistryKind::Allowlist)),
                "blocklist" => Ok(Some(RegistryKind::Blocklist)),
                "none" => Ok(None),
                other => Err(self.invalid(
                    format!("{key}.registry"),
                    other,
                    "expected allowlist, blocklist or none",
                )),
            })
            .transpose()?;
        if let Some(days) = raw.registry_valid_days {
            self.bounded(
                &format!("{key}.registry_valid_days"),
                u64::from(days),
                1,
                u64::from(MAX_VALID_DAYS),
            )?;
        }
        let source = raw.source.clone().unwrap_or_default();
        if source.len() > 1024 || source.chars().any(char::is_control) {
            return Err(self.invalid(
                format!("{key}.source"),
                &source,
                "at most 1024 characters, no control characters",
            ));
        }
        // Fail closed by construction: a destination that is opt-out must
        // name the registry its opt-outs are in, or nothing could ever deny.
        let statute_opt_out = statutes::statute(region.as_str()).is_some_and(|s| {
            s.consent
                .iter()
                .any(|rule| rule.value.regime == ConsentRegime::OptOut)
        });
        let opt_out =
            consent == Some(ConsentRegime::OptOut) || (consent.is_none() && statute_opt_out);
        if opt_out && registry == Some(None) {
            return Err(self.invalid(
                format!("{key}.registry"),
                "none",
                "an opt-out destination needs a registry of its opt-outs; with none, set consent = \"opt_in\"",
            ));
        }
        let statute_has_registry = statutes::statute(region.as_str())
            .is_some_and(|s| s.registry.iter().any(|rule| rule.value.is_some()));
        if consent == Some(ConsentRegime::OptOut) && registry.is_none() && !statute_has_registry {
            return Err(self.invalid(
                format!("{key}.registry"),
                "<missing>",
                "an opt-out destination needs a registry of its opt-outs: set registry = \"blocklist\" or \"allowlist\"",
            ));
        }
        if matches!(registry, Some(Some(_)))
            && raw.registry_valid_days.is_none()
            && !statute_has_registry
        {
            return Err(self.invalid(
                format!("{key}.registry_valid_days"),
                "<missing>",
                "the statute has no registry validity to inherit: set registry_valid_days",
            ));
        }
        let calling_hours = raw
            .calling_hours
            .as_ref()
            .map(|hours| self.weekly_hours(&format!("{key}.calling_hours"), hours))
            .transpose()?;
        let mut extra_holidays = Vec::new();
        for (i, day) in raw.extra_holidays.iter().enumerate() {
            let date: jiff::civil::Date = day.parse().map_err(|_| {
                self.invalid(
                    format!("{key}.extra_holidays[{i}]"),
                    day,
                    "expected YYYY-MM-DD",
                )
            })?;
            extra_holidays.push(date);
        }
        let attempt_limit = raw
            .attempt_limit
            .as_ref()
            .map(|limit| self.attempt_limit(&format!("{key}.attempt_limit"), limit))
            .transpose()?;
        let mut states = BTreeMap::new();
        for (state, state_rules) in &raw.state {
            if region.as_str() != "US"
                || !crate::calling::zones::us_state_codes().any(|c| c == state)
            {
                return Err(self.invalid(
                    format!("{key}.state.{state}"),
                    state,
                    "states are US state codes (FL, TX, ...) under [destination.US]",
                ));
            }
            let hours = self.weekly_hours(
                &format!("{key}.state.{state}.calling_hours"),
                &state_rules.calling_hours,
            )?;
            states.insert(state.clone(), hours);
        }
        Ok(DestinationOverride {
            region,
            from,
            source,
            consent,
            registry,
            registry_valid_days: raw.registry_valid_days,
            calling_hours,
            extra_holidays,
            attempt_limit,
            states,
        })
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
        let policies = crate::policy::Policies::compile(&config);
        let at: jiff::Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        let era = policies.era("c", fr, at).unwrap();
        let caps: Vec<u32> = era.caps_in(None).map(|c| c.max_attempts).collect();
        assert_eq!(
            caps,
            vec![4, 3],
            "the statute's 4 in 30 days and the campaign's 3 in 24 h"
        );
        let it = config
            .destination_override(Region::parse("IT").unwrap())
            .unwrap();
        assert_eq!(it.extra_holidays.len(), 1);
        let it_hours = it.calling_hours.as_ref().unwrap();
        assert_eq!(it_hours.days[5], Some(vec![]), "configured Saturday");
        assert_eq!(it_hours.days[0], None, "Monday left to the statute");
        let us = config
            .destination_override(Region::parse("US").unwrap())
            .unwrap();
        assert!(us.states.contains_key("TX"));
        assert_eq!(policies.overrides.len(), 2, "IT and US are reported");
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

    /// Issue 13: Spanish 800/900 numbers may be presented (Orden
    /// TDF/149/2025); the configuration refused every toll-free caller ID.
    #[test]
    fn test_toll_free_caller_ids_are_accepted_for_the_law_to_judge() {
        let config = parse(
            "[[campaign]]\nid = \"c\"\ncontroller = \"a\"\npurpose = \"marketing\"\ndefault_region = \"ES\"\ndestinations = [\"ES\"]\ncaller_ids = [\"900 123 456\", \"800 123 456\"]\n",
        )
        .unwrap();
        assert_eq!(
            config.campaigns[0].caller_ids,
            vec!["+34900123456".to_string(), "+34800123456".to_string()]
        );
    }

    /// Issue 14: numbers out of range used to load and then panic.
    #[test]
    fn test_numbers_are_bounded_at_load() {
        for (text, key) in [
            (
                "[[registry]]\nid = \"r\"\nkind = \"blocklist\"\ncountry = \"US\"\nvalid_days = 1000000000\n",
                "registry[0].valid_days",
            ),
            (
                "[[registry]]\nid = \"r\"\nkind = \"allowlist\"\ncountry = \"IT\"\nvalid_days = 16\n",
                "registry[0].valid_days",
            ),
            ("[log]\nqueue_capacity = 0\n", "log.queue_capacity"),
            (
                "[log]\nidempotency_window_seconds = 999999999\n",
                "log.idempotency_window_seconds",
            ),
            (
                "[server]\nshutdown_grace_ms = 99999999999\n",
                "server.shutdown_grace_ms",
            ),
            (
                "[[registry]]\nid = \"r\"\nkind = \"allowlist\"\ncountry = \"IT\"\n[registry.exemptions]\ncustomer_months = 100000\n",
                "registry[0].exemptions.customer_months",
            ),
            (
                "[destination.FR.attempt_limit]\nmax_attempts = 4\nwindow_days = 100000\n",
                "destination.FR.attempt_limit.window_days",
            ),
        ] {
            let message = parse(text).unwrap_err().to_string();
            assert!(message.contains(key), "{text}: {message}");
        }
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
