//! The TOML text as written: every section and key of the configuration,
//! with serde's defaults. Unknown keys are errors. Nothing here is checked
//! beyond its type: [`super::validate`] turns these into [`super::Config`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::{LogConfig, LogFormat, RegistryKind};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) server: RawServer,
    #[serde(default)]
    pub(super) log: LogConfig,
    #[serde(default, rename = "registry")]
    pub(super) registries: Vec<RawRegistry>,
    #[serde(default, rename = "campaign")]
    pub(super) campaigns: Vec<RawCampaign>,
    #[serde(default, rename = "api_key")]
    pub(super) api_keys: Vec<RawApiKey>,
    #[serde(default)]
    pub(super) destination: BTreeMap<String, RawDestination>,
    #[serde(default, rename = "supplier")]
    pub(super) suppliers: Vec<RawSupplier>,
    #[serde(default)]
    pub(super) subject_requests: super::SubjectRequestsConfig,
    #[serde(default)]
    pub(super) calling: super::CallingConfig,
    #[serde(default)]
    pub(super) retention: crate::retention::RawRetention,
    /// `[store]` (CONTRACT section 8).
    pub(super) store: Option<RawStore>,
}

/// `[store]`: where the records, the log and the snapshots are kept.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    pub(super) backend: Option<String>,
    pub(super) url: Option<String>,
    pub(super) replica_id: Option<String>,
    pub(super) max_staleness_ms: Option<u64>,
    /// How long the database may not answer before no decision is made.
    pub(super) unavailable_after_ms: Option<u64>,
    /// Certificate authorities (PEM) for the database's TLS certificate.
    pub(super) ca_file: Option<std::path::PathBuf>,
}

/// `[[supplier]]`: a list supplier a controller has a contract with.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSupplier {
    pub(super) controller: String,
    pub(super) name: String,
    pub(super) contract_ref: String,
    /// First day of the contract (YYYY-MM-DD, UTC); absent: no start.
    pub(super) from: Option<String>,
    /// Last day of the contract (YYYY-MM-DD, UTC, inclusive); absent: open.
    pub(super) until: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub(super) cert_file: PathBuf,
    pub(super) key_file: PathBuf,
    pub(super) client_ca_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApiKey {
    pub(super) name: String,
    pub(super) sha256: String,
    pub(super) roles: Vec<String>,
    #[serde(default)]
    pub(super) controllers: Option<Vec<String>>,
}

/// `[campaign.calling_hours]` and `[destination.XX.calling_hours]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWeeklyHours {
    pub(super) mon: Option<Vec<String>>,
    pub(super) tue: Option<Vec<String>>,
    pub(super) wed: Option<Vec<String>>,
    pub(super) thu: Option<Vec<String>>,
    pub(super) fri: Option<Vec<String>>,
    pub(super) sat: Option<Vec<String>>,
    pub(super) sun: Option<Vec<String>>,
    pub(super) holidays: Option<Vec<String>>,
    pub(super) pre_holidays: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAttemptLimit {
    pub(super) max_attempts: u32,
    pub(super) window_days: Option<u32>,
    pub(super) window_hours: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDestination {
    /// First day the override applies (YYYY-MM-DD); absent: always.
    pub(super) from: Option<String>,
    /// Why: the law the override follows (shown by `policy show`).
    pub(super) source: Option<String>,
    /// `opt_in` or `opt_out`.
    pub(super) consent: Option<String>,
    /// `allowlist`, `blocklist` or `none`: the registry the law requires.
    pub(super) registry: Option<String>,
    pub(super) registry_valid_days: Option<u32>,
    pub(super) calling_hours: Option<RawWeeklyHours>,
    #[serde(default)]
    pub(super) extra_holidays: Vec<String>,
    pub(super) attempt_limit: Option<RawAttemptLimit>,
    #[serde(default)]
    pub(super) state: BTreeMap<String, RawStateRules>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStateRules {
    pub(super) calling_hours: RawWeeklyHours,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    #[serde(default = "default_grpc_addr")]
    pub(super) grpc_addr: String,
    #[serde(default = "default_http_addr")]
    pub(super) http_addr: String,
    #[serde(default = "default_data_dir")]
    pub(super) data_dir: PathBuf,
    #[serde(default = "default_reload_interval_ms")]
    pub(super) registry_reload_interval_ms: u64,
    #[serde(default = "default_shutdown_grace_ms")]
    pub(super) shutdown_grace_ms: u64,
    #[serde(default)]
    pub(super) worker_threads: usize,
    #[serde(default)]
    pub(super) log_format: LogFormat,
    #[serde(default = "default_max_connections")]
    pub(super) max_connections: u64,
    #[serde(default = "default_idle_timeout_ms")]
    pub(super) idle_timeout_ms: u64,
    #[serde(default = "default_header_timeout_ms")]
    pub(super) header_timeout_ms: u64,
    pub(super) tls: Option<RawTls>,
    /// A demonstration: registries may be seeded (`seed_file`).
    #[serde(default)]
    pub(super) demo: bool,
    /// Listen beyond loopback without API keys or mutual TLS, on purpose.
    #[serde(default)]
    pub(super) allow_unauthenticated: bool,
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
            demo: false,
            allow_unauthenticated: false,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRegistry {
    pub(super) id: String,
    pub(super) kind: RegistryKind,
    pub(super) country: String,
    pub(super) valid_days: Option<u32>,
    pub(super) seed_file: Option<PathBuf>,
    pub(super) seed_controller: Option<String>,
    pub(super) exemptions: Option<RawExemptions>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExemptions {
    pub(super) customer_months: Option<u32>,
    pub(super) customer_days: Option<u32>,
    pub(super) inquiry_months: Option<u32>,
    pub(super) inquiry_days: Option<u32>,
    pub(super) consent: Option<bool>,
    pub(super) consent_in_writing: Option<bool>,
    pub(super) consent_after_registration: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCampaign {
    pub(super) id: String,
    pub(super) controller: String,
    pub(super) purpose: String,
    pub(super) default_region: String,
    pub(super) destinations: Vec<String>,
    #[serde(default)]
    pub(super) consent_required: bool,
    #[serde(default)]
    pub(super) profiled_segment: bool,
    #[serde(default)]
    pub(super) caller_ids: Vec<String>,
    pub(super) calling_hours: Option<RawWeeklyHours>,
    pub(super) attempt_limit: Option<RawAttemptLimit>,
}
