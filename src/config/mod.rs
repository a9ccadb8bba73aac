//! Configuration: the TOML file of the contract, parsed and validated once.
//!
//! The law itself lives in [`crate::statutes`]; this file holds what the
//! operator configures: registries, campaigns, and `[destination.XX]`
//! overrides of a statute. Validation names the offending key and value;
//! every number is bounded; a configuration that loads is internally
//! consistent (ids unique, regions real, caller IDs parseable, no registry
//! trusted longer than its statute allows).

use std::collections::{BTreeMap, HashMap};

use std::path::{Path, PathBuf};

use serde::Deserialize;

mod raw;
mod validate;

use raw::RawConfig;
use validate::Validator;

use crate::auth::ApiKey;
use crate::calling::{AttemptLimit, WeeklyHours};
use crate::model::Purpose;
use crate::number::Region;
use crate::statutes::{self, ConsentRegime, Period};

/// The configuration built into the binary: serves the demo data in `data/`.
pub const BUILT_IN: &str = include_str!("../../data/dialgate.toml");
/// The origin of the built-in configuration ([`Config::origin`]).
pub const BUILT_IN_ORIGIN: &str = "built-in";

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

pub use crate::decision_log::{LogConfig, Synchronous};

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
    /// The list suppliers each controller has a contract with.
    pub suppliers: Vec<SupplierContract>,
    /// `[subject_requests]`: how data-subject requests are verified.
    pub subject_requests: SubjectRequestsConfig,
    /// `[calling]`: how the calling window is applied.
    pub calling: CallingConfig,
    /// `[retention]`: storage ceilings, the scheduled purge, the erasure ledger.
    pub retention: crate::retention::Retention,
    /// `[store]`: SQLite (one gateway) or PostgreSQL (several replicas).
    pub store: crate::store::StoreBackend,
}

/// `[calling]`: how the calling window is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallingConfig {
    /// A call is allowed only while the window stays open at least this
    /// long: the time from the answer to the phone ringing (the log's
    /// write, the dialer, the carrier). An ALLOW at 20:59:59 would ring
    /// after 21:00. 0-3600.
    #[serde(default = "default_window_margin_seconds")]
    pub window_margin_seconds: u32,
}

fn default_window_margin_seconds() -> u32 {
    30
}

impl Default for CallingConfig {
    fn default() -> Self {
        CallingConfig {
            window_margin_seconds: default_window_margin_seconds(),
        }
    }
}

/// `[subject_requests]`: what ExportSubject and EraseSubject require.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectRequestsConfig {
    /// Refuse an export or erasure that does not say who verified the
    /// requester's identity, how and when. Off by default only because the
    /// public interface defines these requests without it: turn it on.
    #[serde(default)]
    pub require_verification: bool,
    /// A verification older than this many days does not count.
    #[serde(default = "default_verification_max_age_days")]
    pub verification_max_age_days: u32,
}

fn default_verification_max_age_days() -> u32 {
    30
}

impl Default for SubjectRequestsConfig {
    fn default() -> Self {
        SubjectRequestsConfig {
            require_verification: false,
            verification_max_age_days: default_verification_max_age_days(),
        }
    }
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
    /// A consent lifts the registry only as a signed written agreement
    /// (can only add to the statute's requirement).
    pub consent_in_writing: bool,
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
            consent_in_writing: self.consent_in_writing,
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
            consent_in_writing: self.consent_in_writing,
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
    /// The campaign calls a segment built by profiling: a valid profiling
    /// consent of the controller is required as well (GDPR art. 21-22).
    pub profiled_segment: bool,
    /// Callable numbers this campaign may present, E.164.
    pub caller_ids: Vec<String>,
    /// The campaign's own hours; they can only narrow the destination's window.
    pub calling_hours: Option<WeeklyHours>,
    /// The campaign's attempt cap; applies on top of the statute's caps.
    pub attempt_limit: Option<AttemptLimit>,
    /// The list suppliers its controller has declared (`[[supplier]]`):
    /// a consent collected by any other supplier grants nothing.
    pub suppliers: Vec<SupplierContract>,
}

/// A list supplier a controller has a contract with (`[[supplier]]`): the
/// consents it collected for the controller during the contract count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupplierContract {
    pub controller: String,
    /// The name consents carry in their `supplier` field.
    pub name: String,
    /// Where the contract and its consent chain can be found (shown in
    /// exports and decisions).
    pub contract_ref: String,
    /// First day of the contract (UTC); `None`: no start.
    pub from: Option<jiff::civil::Date>,
    /// Last day of the contract (UTC, inclusive); `None`: open-ended.
    pub until: Option<jiff::civil::Date>,
}

impl SupplierContract {
    /// Whether a consent given at `granted_at` falls within the contract.
    pub fn covers(&self, granted_at: jiff::Timestamp) -> bool {
        let day = granted_at.to_zoned(jiff::tz::TimeZone::UTC).date();
        self.from.is_none_or(|from| from <= day) && self.until.is_none_or(|until| day <= until)
    }

    /// The contract's term, for messages.
    pub fn term(&self) -> String {
        match (self.from, self.until) {
            (None, None) => "open-ended".into(),
            (Some(from), None) => format!("from {from}"),
            (None, Some(until)) => format!("until {until}"),
            (Some(from), Some(until)) => format!("{from} to {until}"),
        }
    }
}

/// A name stored under another spelling than the configuration's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Respelled {
    /// "controller" or "campaign".
    pub what: &'static str,
    pub stored: String,
    pub configured: String,
}

/// The first of `stored` that folds to one of `configured` (see
/// [`fold_controller`]) without being one of them.
fn respelled<'n>(
    what: &'static str,
    configured: &[&str],
    stored: impl IntoIterator<Item = &'n str>,
) -> Option<Respelled> {
    let folded: HashMap<String, &str> = configured
        .iter()
        .map(|name| (fold_controller(name), *name))
        .collect();
    stored.into_iter().find_map(|name| {
        let spelled = *folded.get(&fold_controller(name))?;
        (!configured.contains(&name)).then(|| Respelled {
            what,
            stored: name.to_string(),
            configured: spelled.to_string(),
        })
    })
}

/// A controller's name with case, spacing, compatibility forms (NFKC:
/// fullwidth letters) and invisible characters folded: two names that
/// fold alike are one controller spelled two ways ("acme" and "acme" with
/// a zero-width space were two controllers, one's opt-outs binding none
/// of the other's calls; found by review).
pub fn fold_controller(name: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    let visible: String = name
        .nfkc()
        .filter(|c| c.is_whitespace() || !is_invisible(*c))
        .collect();
    visible
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Whether `c` shows nothing on its own: control and format characters
/// (zero-width spaces and joiners, the byte-order mark, soft hyphens,
/// bidirectional controls), variation selectors, Hangul fillers, and every
/// white space but the ASCII space. Refused in a controller's name.
pub fn is_invisible(c: char) -> bool {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    c.is_control()
        || (c.is_whitespace() && c != ' ')
        || c.general_category() == GeneralCategory::Format
        || matches!(
            c,
            '\u{034F}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{17B4}'
                | '\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FFA0}'
                | '\u{E0100}'..='\u{E01EF}'
        )
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
            None => Self::parse(BUILT_IN, BUILT_IN_ORIGIN, Path::new(".")),
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

    /// A controller or campaign id that stored opt-outs or logged calls
    /// name and that this configuration spells another way ("Acme" for
    /// "acme"): opt-outs and attempt caps bind the exact spelling, so after
    /// such a change every opt-out of it stopped binding.
    pub fn spelled_otherwise<'n>(
        &self,
        controllers: impl IntoIterator<Item = &'n str>,
        campaigns: impl IntoIterator<Item = &'n str>,
    ) -> Option<Respelled> {
        let configured_controllers: Vec<&str> = self
            .campaigns
            .iter()
            .map(|c| c.controller.as_str())
            .collect();
        let configured_campaigns: Vec<&str> =
            self.campaigns.iter().map(|c| c.id.as_str()).collect();
        respelled("controller", &configured_controllers, controllers)
            .or_else(|| respelled("campaign", &configured_campaigns, campaigns))
    }

    /// The campaign with this id.
    pub fn campaign(&self, id: &str) -> Option<&CampaignConfig> {
        self.campaigns.iter().find(|c| c.id == id)
    }

    /// The registry with this id.
    pub fn registry(&self, id: &str) -> Option<&RegistryConfig> {
        self.registries.iter().find(|r| r.id == id)
    }

    /// The override of a destination's statute, if configured: its own,
    /// or for a territory governed by another country's law (Réunion by
    /// France's), that country's. Looked up under the territory's own code
    /// alone, a `[destination.FR]` law change did not reach Réunion, which
    /// went on under the built-in French statute (found by review).
    /// [`Config::load`] refuses a territory's override beside its
    /// governing country's, so one of them at most applies.
    pub fn destination_override(&self, region: Region) -> Option<&DestinationOverride> {
        let governing =
            crate::statutes::territories::territory(region.as_str()).map(|t| t.governed_by);
        self.destination_overrides
            .iter()
            .find(|o| o.region == region)
            .or_else(|| {
                let governing = governing?;
                self.destination_overrides
                    .iter()
                    .find(|o| o.region.as_str() == governing)
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

/// Registry ids become file names: keep them to a safe alphabet.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests;
