//! Validation: the raw TOML types into a [`Config`], every value checked
//! (ranges, ids, regions, caller IDs, registry validity against the
//! statutes, overrides that fail closed), each error naming its key and value.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::Path;

use super::raw::*;
use super::*;
use crate::auth::{ApiKey, Role};
use crate::calling::{self, AttemptLimit, DaySpans, Span, WeeklyHours};
use crate::model::Purpose;
use crate::number::{self, Region};
use crate::statutes::{self, ConsentRegime, Period};
use crate::store::{PostgresSettings, StoreBackend};

/// The least `calling.window_margin_seconds`: the time a dial takes to ring.
const MIN_WINDOW_MARGIN_SECONDS: u32 = 5;

pub(super) struct Validator<'a> {
    pub(super) origin: &'a str,
}

impl Validator<'_> {
    /// An API key's `controllers`: each one a configured campaign's
    /// controller, spelled alike; refused empty (a key for no controller),
    /// and on a key without the dialer, crm or admin role (which it would
    /// not limit: a careless configuration).
    fn key_controllers(
        &self,
        raw: &super::raw::RawConfig,
        field: &str,
        listed: &[String],
        roles: &[Role],
    ) -> Result<std::sync::Arc<[String]>, ConfigError> {
        if !roles
            .iter()
            .any(|r| matches!(r, Role::Dialer | Role::Crm | Role::Admin))
        {
            return Err(self.invalid(
                field,
                format!("{listed:?}"),
                "limits a key's checks and contact-records calls: it needs the dialer, crm or admin role",
            ));
        }
        if listed.is_empty() {
            return Err(self.invalid(
                field,
                "[]",
                "a key for no controller: list the controllers it may write for, or leave controllers out for every one",
            ));
        }
        for controller in listed {
            if !raw.campaigns.iter().any(|c| c.controller == *controller) {
                let configured: std::collections::BTreeSet<&str> = raw
                    .campaigns
                    .iter()
                    .map(|c| c.controller.as_str())
                    .collect();
                return Err(self.invalid(
                    field,
                    controller,
                    &format!(
                        "not the controller of any configured campaign, spelled exactly (configured: {})",
                        configured.into_iter().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        }
        Ok(listed.to_vec().into())
    }

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

    pub(super) fn validate(&self, raw: RawConfig, base_dir: &Path) -> Result<Config, ConfigError> {
        let tls = raw.server.tls.as_ref().map(|t| crate::tls::TlsSettings {
            cert_file: base_dir.join(&t.cert_file),
            key_file: base_dir.join(&t.key_file),
            client_ca_file: t.client_ca_file.as_ref().map(|f| base_dir.join(f)),
        });
        if let Some(settings) = &tls {
            crate::tls::acceptors(settings).map_err(|problem| {
                self.invalid(
                    "server.tls",
                    settings.cert_file.display(),
                    &problem.to_string(),
                )
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
            // One key under two entries would hold the roles of the last:
            // a dialer's key pasted into an admin entry becomes an admin.
            if let Some(other) = api_keys.iter().find(|a| a.sha256 == sha256) {
                return Err(self.invalid(
                    key("sha256"),
                    &k.sha256,
                    &format!(
                        "the same key as api_key {:?}: each key is configured once, with all its roles",
                        other.name
                    ),
                ));
            }
            let controllers = match &k.controllers {
                None => None,
                Some(listed) => {
                    Some(self.key_controllers(&raw, &key("controllers"), listed, &roles)?)
                }
            };
            api_keys.push(ApiKey {
                name: k.name.clone(),
                sha256,
                roles,
                controllers,
            });
        }
        let mutual_tls = tls.as_ref().is_some_and(|t| t.client_ca_file.is_some());
        if api_keys.is_empty() && !mutual_tls && !raw.server.allow_unauthenticated {
            for (key, address) in [
                ("server.grpc_addr", &raw.server.grpc_addr),
                ("server.http_addr", &raw.server.http_addr),
            ] {
                if !loopback_only(address) {
                    return Err(self.invalid(
                        key,
                        address,
                        "reachable from other hosts while no [[api_key]] and no mutual TLS \
                         (server.tls.client_ca_file) is configured: whoever reaches it could \
                         record consents and relationships (which lift registries and caps) \
                         and make checks; configure one of them, or set \
                         server.allow_unauthenticated = true where only dialgate's own clients \
                         can reach this address",
                    ));
                }
            }
        }
        let server = ServerConfig {
            grpc_addr: raw.server.grpc_addr,
            http_addr: raw.server.http_addr,
            data_dir: base_dir.join(raw.server.data_dir),
            registry_reload_interval_ms: self.bounded(
                "server.registry_reload_interval_ms",
                raw.server.registry_reload_interval_ms,
                50,
                // The contract: an imported registry is served within 5 s
                // (found by review: an hour let a new block-list edition
                // go unapplied for that long).
                5_000,
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
        // A territory follows its governing country's override (Réunion
        // France's): one of its own beside it would drop that law change
        // there, or the territory's own change.
        for o in &destination_overrides {
            if let Some(territory) = statutes::territories::territory(o.region.as_str())
                && destination_overrides
                    .iter()
                    .any(|g| g.region.as_str() == territory.governed_by)
            {
                return Err(self.invalid(
                    format!("destination.{}", o.region),
                    o.region,
                    &format!(
                        "{} follows the law of {governing}, and [destination.{governing}] applies to it too; a destination has one override: put what {} needs into [destination.{governing}] (it applies to both), or remove one of them",
                        o.region,
                        o.region,
                        governing = territory.governed_by
                    ),
                ));
            }
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
            // A configuration copied from the demo's, seed lines kept,
            // seeded a fresh data directory with a few demo numbers as the
            // national list, every other number clear for a month.
            if r.seed_file.is_some() && self.origin != BUILT_IN_ORIGIN && !raw.server.demo {
                return Err(self.invalid(
                    key("seed_file"),
                    r.seed_file.as_ref().map_or_else(String::new, |p| p.display().to_string()),
                    "seed_file belongs to the built-in demo configuration: remove it and import the registry with `dialgate registry import`. Do not set [server] demo = true outside a demonstration: it seeds a registry from a few numbers as if they were the whole national list, every other number clear",
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
        // Each controller's spelling, folded, and the first campaign that
        // spelled it.
        let mut controllers: std::collections::HashMap<String, (String, String)> =
            std::collections::HashMap::new();
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
                || c.controller.chars().any(is_invisible)
            {
                return Err(self.invalid(
                    key("controller"),
                    &c.controller,
                    &format!(
                        "must be 1-{MAX_ID_LENGTH} characters, no control or invisible characters (zero-width spaces, format characters, spaces other than the ASCII space)"
                    ),
                ));
            }
            // Opt-outs and attempt caps bind a controller by its exact
            // spelling: "Acme" beside "acme", or "acme " (whose opt-outs,
            // trimmed, would bind nothing), would split one controller's
            // opt-outs and caps in two.
            if c.controller.trim() != c.controller {
                return Err(self.invalid(
                    key("controller"),
                    &c.controller,
                    "no spaces before or after: opt-outs name the controller trimmed, and would bind none of this campaign's calls",
                ));
            }
            let folded = fold_controller(&c.controller);
            match controllers.get(&folded) {
                Some((spelling, campaign)) if *spelling != c.controller => {
                    return Err(self.invalid(
                        key("controller"),
                        &c.controller,
                        &format!(
                            "campaign {campaign:?} spells this controller {spelling:?}: opt-outs and attempt caps bind a controller by its exact spelling, so one spelling must be used"
                        ),
                    ));
                }
                Some(_) => {}
                None => {
                    controllers.insert(folded, (c.controller.clone(), c.id.clone()));
                }
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
            let purpose = Purpose::from_config(&c.purpose)
                .filter(|p| *p != Purpose::Profiling)
                .ok_or_else(|| {
                    self.invalid(
                        key("purpose"),
                        &c.purpose,
                        "must be marketing, market_research or statistical (profiling is a consent purpose: set profiled_segment = true on a campaign that targets a profiled segment)",
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
                profiled_segment: c.profiled_segment,
                caller_ids,
                calling_hours,
                attempt_limit,
                suppliers: Vec::new(),
            });
        }
        self.refuse_holiday_hours_without_holidays(&campaigns, &destination_overrides)?;
        let store = self.store(raw.store.as_ref(), base_dir)?;
        let suppliers = self.suppliers(&raw.suppliers, &campaigns)?;
        let subject_requests = raw.subject_requests;
        let calling = raw.calling;
        // At least a few seconds: a call allowed at 20:59:59.9 rings after
        // 21:00 (0 was accepted; found by review).
        if !(MIN_WINDOW_MARGIN_SECONDS..=3600).contains(&calling.window_margin_seconds) {
            return Err(self.invalid(
                "calling.window_margin_seconds",
                calling.window_margin_seconds,
                &format!(
                    "must be {MIN_WINDOW_MARGIN_SECONDS}-3600 seconds: a call allowed just before a window closes rings after it"
                ),
            ));
        }
        if !(1..=365).contains(&subject_requests.verification_max_age_days) {
            return Err(self.invalid(
                "subject_requests.verification_max_age_days",
                subject_requests.verification_max_age_days,
                "must be 1-365 days",
            ));
        }
        for campaign in &mut campaigns {
            campaign.suppliers = suppliers
                .iter()
                .filter(|s| s.controller == campaign.controller)
                .cloned()
                .collect();
        }

        let controllers: Vec<(&str, Option<&'static str>)> = campaigns
            .iter()
            .map(|c| {
                let calls =
                    |reaches: fn(&str) -> bool| c.destinations.iter().any(|d| reaches(d.as_str()));
                let law = if calls(statutes::us::tsr_reaches) {
                    Some(crate::retention::US_CONSENT_RECORDS)
                } else if calls(|d| d == "DE") {
                    Some(crate::retention::DE_CONSENT_PROOF)
                } else {
                    None
                };
                (c.controller.as_str(), law)
            })
            .collect();
        let retention = crate::retention::validate(
            raw.retention,
            &log,
            &controllers,
            base_dir,
            &server.data_dir,
        )
        .map_err(|(key, value, problem)| self.invalid(key, value, &problem))?;
        Ok(Config {
            origin: self.origin.to_string(),
            server,
            log,
            registries,
            campaigns,
            destination_overrides,
            api_keys,
            suppliers,
            subject_requests,
            calling,
            retention,
            store,
        })
    }

    /// `[store]`: sqlite (default) takes no other key; postgres needs a
    /// connection string (`url` or `DIALGATE_DATABASE_URL`) that parses and
    /// a `replica_id`.
    fn store(&self, raw: Option<&RawStore>, base_dir: &Path) -> Result<StoreBackend, ConfigError> {
        let Some(store) = raw else {
            return Ok(StoreBackend::Sqlite);
        };
        match store.backend.as_deref().unwrap_or("sqlite") {
            "sqlite"
                if store.url.is_none()
                    && store.replica_id.is_none()
                    && store.max_staleness_ms.is_none()
                    && store.unavailable_after_ms.is_none()
                    && store.ca_file.is_none() =>
            {
                Ok(StoreBackend::Sqlite)
            }
            "sqlite" => Err(self.invalid(
                "store",
                "url/replica_id/max_staleness_ms/unavailable_after_ms/ca_file",
                "apply only to backend = \"postgres\"",
            )),
            "postgres" => {
                let url = match (&store.url, std::env::var("DIALGATE_DATABASE_URL")) {
                    (Some(url), _) => url.clone(),
                    (None, Ok(url)) if !url.trim().is_empty() => url,
                    _ => {
                        return Err(self.invalid(
                            "store.url",
                            "(missing)",
                            "backend = \"postgres\" needs url or DIALGATE_DATABASE_URL",
                        ));
                    }
                };
                if let Err(e) = <tokio_postgres::Config as std::str::FromStr>::from_str(&url) {
                    return Err(self.invalid(
                        "store.url",
                        crate::store::mask_password(&url),
                        &format!("not a PostgreSQL connection string: {e}"),
                    ));
                }
                let Some(replica_id) = store.replica_id.clone() else {
                    return Err(self.invalid(
                        "store.replica_id",
                        "(missing)",
                        "every replica needs its own name (letters, digits, . _ -)",
                    ));
                };
                if replica_id.is_empty()
                    || replica_id.len() > 64
                    || !replica_id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
                {
                    return Err(self.invalid(
                        "store.replica_id",
                        &replica_id,
                        "1 to 64 letters, digits, '.', '_' or '-'",
                    ));
                }
                let max_staleness_ms = store.max_staleness_ms.unwrap_or(1000);
                if !(50..=60_000).contains(&max_staleness_ms) {
                    return Err(self.invalid(
                        "store.max_staleness_ms",
                        max_staleness_ms,
                        "between 50 and 60000 (ms)",
                    ));
                }
                let unavailable_after_ms = store.unavailable_after_ms.unwrap_or(2000);
                if !(100..=30_000).contains(&unavailable_after_ms) {
                    return Err(self.invalid(
                        "store.unavailable_after_ms",
                        unavailable_after_ms,
                        "between 100 and 30000 (ms)",
                    ));
                }
                Ok(StoreBackend::Postgres(PostgresSettings {
                    url,
                    replica_id,
                    max_staleness: std::time::Duration::from_millis(max_staleness_ms),
                    unavailable_after: std::time::Duration::from_millis(unavailable_after_ms),
                    ca_file: store.ca_file.as_ref().map(|f| base_dir.join(f)),
                }))
            }
            other => Err(self.invalid("store.backend", other, "expected sqlite or postgres")),
        }
    }

    /// `[[supplier]]`: each names a controller some campaign calls for (a
    /// typo would declare nothing), a supplier name consents can carry, a
    /// contract reference, and a term whose start is not after its end.
    fn suppliers(
        &self,
        raw: &[RawSupplier],
        campaigns: &[CampaignConfig],
    ) -> Result<Vec<SupplierContract>, ConfigError> {
        let mut suppliers: Vec<SupplierContract> = Vec::new();
        for (i, s) in raw.iter().enumerate() {
            let key = |field: &str| format!("supplier[{i}].{field}");
            if !campaigns.iter().any(|c| c.controller == s.controller) {
                let mut known: Vec<&str> =
                    campaigns.iter().map(|c| c.controller.as_str()).collect();
                known.sort_unstable();
                known.dedup();
                return Err(self.invalid(
                    key("controller"),
                    &s.controller,
                    &format!(
                        "not the controller of any configured campaign (configured: {})",
                        known.join(", ")
                    ),
                ));
            }
            if !valid_campaign_id(&s.name) || s.name.eq_ignore_ascii_case(crate::contacts::OWN) {
                return Err(self.invalid(
                    key("name"),
                    &s.name,
                    &format!(
                        "must be 1-{MAX_ID_LENGTH} characters of letters, digits, '-', '_', '.' or ':', and not \"own\" (the controller's own consents need no declaration)"
                    ),
                ));
            }
            if s.contract_ref.trim().is_empty()
                || s.contract_ref.chars().count() > 1024
                || s.contract_ref.chars().any(char::is_control)
            {
                return Err(self.invalid(
                    key("contract_ref"),
                    &s.contract_ref,
                    "must say where the contract is (1-1024 characters, no control characters)",
                ));
            }
            let day = |field: &str, value: &Option<String>| {
                value
                    .as_ref()
                    .map(|day| {
                        crate::model::parse_date(day)
                            .ok_or_else(|| self.invalid(key(field), day, "expected YYYY-MM-DD"))
                    })
                    .transpose()
            };
            let (from, until) = (day("from", &s.from)?, day("until", &s.until)?);
            if let (Some(from), Some(until)) = (from, until)
                && until < from
            {
                return Err(self.invalid(key("until"), until, "is before from"));
            }
            suppliers.push(SupplierContract {
                controller: s.controller.clone(),
                name: s.name.clone(),
                contract_ref: s.contract_ref.trim().to_string(),
                from,
                until,
            });
        }
        Ok(suppliers)
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

    /// Hours for public holidays (or the days before them) where no holiday
    /// is known would never apply: a campaign closed on holidays would call
    /// the Netherlands on every one of them. Such a setting is refused
    /// until the destination's holidays are listed (`extra_holidays`).
    fn refuse_holiday_hours_without_holidays(
        &self,
        campaigns: &[CampaignConfig],
        overrides: &[DestinationOverride],
    ) -> Result<(), ConfigError> {
        let knows_holidays = |region: Region| {
            statutes::holidays::has_calendar(region.as_str())
                || overrides
                    .iter()
                    .any(|o| o.region == region && !o.extra_holidays.is_empty())
        };
        let sets_holiday_hours =
            |hours: &WeeklyHours| hours.holidays.is_some() || hours.pre_holidays.is_some();
        let problem = |region: Region| {
            format!(
                "sets hours for public holidays, but dialgate knows no holidays of {region}: list them in [destination.{region}] extra_holidays"
            )
        };
        for (i, campaign) in campaigns.iter().enumerate() {
            if !campaign
                .calling_hours
                .as_ref()
                .is_some_and(sets_holiday_hours)
            {
                continue;
            }
            if let Some(region) = campaign.destinations.iter().find(|r| !knows_holidays(**r)) {
                return Err(self.invalid(
                    format!("campaign[{i}].calling_hours"),
                    &campaign.id,
                    &problem(*region),
                ));
            }
        }
        for o in overrides {
            if o.calling_hours.as_ref().is_some_and(sets_holiday_hours) && !knows_holidays(o.region)
            {
                return Err(self.invalid(
                    format!("destination.{}.calling_hours", o.region),
                    o.region,
                    &problem(o.region),
                ));
            }
            // Listed holidays where no window sets hours for holidays would
            // be called as ordinary days (found by review: a regional
            // holiday listed for GB, US or DE changed nothing).
            let statute_closes_holidays = statutes::statute(o.region.as_str()).is_some_and(|s| {
                s.hours.iter().any(|rule| sets_holiday_hours(&rule.value))
                    || s.states.iter().any(|state| {
                        state
                            .hours
                            .iter()
                            .any(|rule| sets_holiday_hours(&rule.value))
                    })
            });
            let a_campaign_closes_holidays = campaigns.iter().any(|c| {
                c.destinations.contains(&o.region)
                    && c.calling_hours.as_ref().is_some_and(sets_holiday_hours)
            });
            if !o.extra_holidays.is_empty()
                && !statute_closes_holidays
                && !a_campaign_closes_holidays
                && !o.calling_hours.as_ref().is_some_and(sets_holiday_hours)
            {
                return Err(self.invalid(
                    format!("destination.{}.extra_holidays", o.region),
                    o.region,
                    &format!(
                        "no window of {} sets hours for public holidays (its law does not close them), so the days listed would be called as ordinary days: add holidays = [] to [destination.{}.calling_hours] to close them",
                        o.region, o.region
                    ),
                ));
            }
        }
        Ok(())
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
            "log.clock_step_tolerance_seconds",
            log.clock_step_tolerance_seconds,
            1,
            // Ten years: a clock that was wrong far ahead must be
            // accepted on purpose, not wait that long.
            315_360_000,
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
                self.invalid(
                    "log.checkpoint_key_file",
                    key_file.display(),
                    &problem.to_string(),
                )
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
            consent_in_writing: raw.consent_in_writing.unwrap_or(false),
            consent_after_registration: raw.consent_after_registration.unwrap_or(false),
        };
        // Where a customer relationship stands in for consent only for a
        // number checked against a list (Spain's Lista Robinson, LOPDGDD
        // art. 23.4), that list is the check: a relationship lifting it
        // would let the stand-in pass its own check (found by review).
        if let Some(list) = statutes::statute(country.as_str())
            .and_then(|s| s.consent.iter().find_map(|r| r.value.stand_in_needs_list))
            && kind == RegistryKind::Blocklist
        {
            for (field, set) in [
                ("customer", settings.customer.flatten().is_some()),
                ("inquiry", settings.inquiry.flatten().is_some()),
            ] {
                if set {
                    return Err(self.invalid(
                        format!("{key}.{field}"),
                        "set",
                        &format!(
                            "a block-list of {country} is its {list}, which a customer relationship or inquiry does not lift (only a consent does)"
                        ),
                    ));
                }
            }
        }
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
                crate::model::parse_date(day)
                    .ok_or_else(|| self.invalid(format!("{key}.from"), day, "expected YYYY-MM-DD"))
            })
            .transpose()?;
        // A day an instant cannot hold the midnight of (9999-12-31 east of
        // UTC) has no start: refused rather than taken as the start of time.
        if let Some(day) = from
            && !(1970..=9998).contains(&day.year())
        {
            return Err(self.invalid(
                format!("{key}.from"),
                day,
                "must be a day from 1970-01-01 to 9998-12-31",
            ));
        }
        // The day begins at local midnight; a destination whose numbers
        // run on several clocks has no one midnight.
        if let (Some(day), None) = (from, statutes::dated_zone(region)) {
            return Err(self.invalid(
                format!("{key}.from"),
                day,
                &format!(
                    "the numbers of {region} run on several clocks and dialgate carries no statute for it that names one: a dated override cannot say at which midnight it begins; leave out `from` and set the override without it (before its day where it only tightens the rules, once it is in force everywhere where it relaxes them)"
                ),
            ));
        }
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
        // In force on every day from the override's `from` on: France's
        // Bloctel ends on 10 August 2026, and an opt-out override of France
        // without a registry consulted none after it (found by review).
        let statute_has_registry = statutes::statute(region.as_str())
            .is_some_and(|s| registry_throughout(&s.registry, from, |_| true));
        if consent == Some(ConsentRegime::OptOut) && registry.is_none() && !statute_has_registry {
            return Err(self.invalid(
                format!("{key}.registry"),
                "<missing>",
                "an opt-out destination needs a registry of its opt-outs: set registry = \"blocklist\" or \"allowlist\"",
            ));
        }
        // A registry of another kind than the statute's inherits no
        // validity either (it was 0 days: every call denied stale, with
        // `config check` saying ok; found by review).
        if let Some(Some(kind)) = registry
            && raw.registry_valid_days.is_none()
            && !statutes::statute(region.as_str())
                .is_some_and(|s| registry_throughout(&s.registry, from, |r| r.kind == kind))
        {
            return Err(self.invalid(
                format!("{key}.registry_valid_days"),
                "<missing>",
                "the statute has no registry of this kind whose validity to inherit: set registry_valid_days",
            ));
        }
        // These regions had no statute before this version: an override's
        // days left out were closed, and now take the statute's hours
        // (found by review: a PR override of Monday to Friday opened the
        // weekend). Each day must be listed (an empty list closes it).
        if let Some(hours) = &raw.calling_hours
            && statutes::NEWLY_GOVERNED.contains(&region.as_str())
        {
            let days = [
                ("mon", &hours.mon),
                ("tue", &hours.tue),
                ("wed", &hours.wed),
                ("thu", &hours.thu),
                ("fri", &hours.fri),
                ("sat", &hours.sat),
                ("sun", &hours.sun),
            ];
            if let Some((day, _)) = days.iter().find(|(_, hours)| hours.is_none()) {
                return Err(self.invalid(
                    format!("{key}.calling_hours.{day}"),
                    "<missing>",
                    "this destination has a statute since this version: a day left out now takes the statute's hours, where it was closed before; list every day (an empty list closes it)",
                ));
            }
        }
        let calling_hours = raw
            .calling_hours
            .as_ref()
            .map(|hours| self.weekly_hours(&format!("{key}.calling_hours"), hours))
            .transpose()?;
        let mut extra_holidays = Vec::new();
        for (i, day) in raw.extra_holidays.iter().enumerate() {
            let date: jiff::civil::Date = crate::model::parse_date(day).ok_or_else(|| {
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

/// Whether a listening address is reachable from this host only: a
/// loopback IP (127.0.0.0/8, ::1) or `localhost`. Anything else, a
/// hostname included, may be reachable from others.
fn loopback_only(address: &str) -> bool {
    if let Ok(socket) = address.parse::<std::net::SocketAddr>() {
        return socket.ip().is_loopback();
    }
    address
        .rsplit_once(':')
        .is_some_and(|(host, _)| host.eq_ignore_ascii_case("localhost"))
}

/// Whether the statute's registry rules name a registry (one `wanted`) on
/// every day from `from` (every day: `None`) on, without a gap: an
/// override's registry of that kind then inherits the statute's validity
/// each day, and an opt-out override without a registry consults the
/// statute's each day.
/// (France's Bloctel ends on 11 August 2026: an allow-list override from
/// before that date has nothing to inherit after it.)
fn registry_throughout(
    rules: &[statutes::Rule<Option<statutes::RegistryRequirement>>],
    from: Option<jiff::civil::Date>,
    wanted: impl Fn(&statutes::RegistryRequirement) -> bool,
) -> bool {
    let mut relevant: Vec<_> = rules
        .iter()
        .filter(|rule| {
            rule.until
                .is_none_or(|until| from.is_none_or(|from| until > from))
        })
        .collect();
    relevant.sort_by_key(|rule| rule.from);
    let Some(first) = relevant.first() else {
        return false;
    };
    let starts_in_time = match (first.from, from) {
        (None, _) => true,
        (Some(start), Some(from)) => start <= from,
        (Some(_), None) => false,
    };
    starts_in_time
        && relevant.last().is_some_and(|rule| rule.until.is_none())
        && relevant
            .windows(2)
            .all(|pair| pair[0].until == pair[1].from)
        && relevant
            .iter()
            .all(|rule| rule.value.as_ref().is_some_and(&wanted))
}
