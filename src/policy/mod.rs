//! The effective rules, compiled once per configuration: for every campaign
//! and destination, the statute ([`crate::statutes`]), the configuration's
//! `[destination.XX]` override and the campaign's own settings become one
//! list of eras (periods over which no rule changes). The decision path
//! reads the era in force at the call's instant and nothing else.
//!
//! Campaign settings can only make an era stricter: campaign hours narrow
//! the window, a campaign cap is added to the statute's caps, a campaign's
//! `consent_required` adds a consent requirement. An override replaces the
//! statute's rule of its kind and is reported.

mod show;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::calling::{AttemptLimit, DestinationRules, WeeklyHours};
use crate::config::{CampaignConfig, Config, DestinationOverride, RegistryConfig};
use crate::model::Purpose;
use crate::number::Region;
use crate::statutes::{
    self, CallerIdRules, CliType, ConsentRegime, ConsentRule, Exemptions, RegistryRequirement,
    Rule, Statute,
};
pub use show::{PolicyReport, ReportError, report};

/// Where an effective rule comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    /// The statute, with its legal source.
    Statute { source: &'static str },
    /// A `[destination.XX]` override, with the operator's note.
    Override { key: String, note: String },
    /// The campaign's own, stricter setting.
    Campaign { key: String },
    /// What applies without a statute in the product.
    Default { note: &'static str },
}

impl Origin {
    pub fn describe(&self) -> String {
        match self {
            Origin::Statute { source } => format!("statute: {source}"),
            Origin::Override { key, note } if note.is_empty() => format!("override: {key}"),
            Origin::Override { key, note } => format!("override: {key} ({note})"),
            Origin::Campaign { key } => format!("campaign: {key}"),
            Origin::Default { note } => format!("default: {note}"),
        }
    }
}

/// A value and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sourced<T> {
    pub value: T,
    pub origin: Origin,
}

/// An attempt cap and the state it is limited to (`None`: every number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cap {
    pub limit: AttemptLimit,
    pub state: Option<&'static str>,
    pub origin: Origin,
}

impl Cap {
    /// Whether the cap binds a number in `state` (unknown state: every state's cap).
    pub fn applies_in(&self, state: Option<&str>) -> bool {
        match (self.state, state) {
            (None, _) | (Some(_), None) => true,
            (Some(cap), Some(number)) => cap == number,
        }
    }
}

/// A configured registry of the destination and its exemptions in this era.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EraRegistry {
    pub id: String,
    pub exemptions: Exemptions,
    /// Consulted in this era. A registry the statute required in another
    /// era but not in this one (FR Bloctel after 10 August 2026) is not;
    /// one no statute ever required (the operator's own) always is.
    pub consulted: bool,
    /// How long one result may be relied on in this era: the configured
    /// `valid_days`, capped by the law's validity in force.
    pub valid_days: u32,
}

/// A declared caller ID and whether this era's law lets it be presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredCli {
    pub e164: String,
    /// The number's own region (`None` when the numbering plan does not know it).
    pub region: Option<String>,
    pub kind: CliType,
    pub permitted: bool,
}

/// The rules of one campaign and destination over `[from, until)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Era {
    /// Unique within one compiled [`Policies`]: keys memoised answers.
    pub id: u32,
    pub region: Region,
    pub from: Timestamp,
    pub until: Timestamp,
    /// The statute days bounding the era (`None`: open-ended).
    pub from_day: Option<Date>,
    pub until_day: Option<Date>,
    /// `policy@<version>`: logged with every decision.
    pub label: String,
    pub consent: Sourced<ConsentRule>,
    /// The campaign requires consent on top of the law.
    pub campaign_requires_consent: bool,
    /// The registry the law requires, if any.
    pub registry: Sourced<Option<RegistryRequirement>>,
    /// The registries configured for the destination's numbers.
    pub registries: Vec<EraRegistry>,
    /// Why every call is denied `REGISTRY_UNAVAILABLE` (required registry missing).
    pub blocked: Option<String>,
    /// The statutory window (or its override), holidays and state overlays.
    pub window: DestinationRules,
    pub window_origin: Option<Origin>,
    pub state_origins: BTreeMap<String, Origin>,
    /// The campaign's own hours (they narrow the window).
    pub campaign_hours: Option<WeeklyHours>,
    pub caps: Vec<Cap>,
    pub caller_id: Sourced<CallerIdRules>,
    pub caller_ids: Vec<DeclaredCli>,
}

impl Era {
    /// Whether the law of this era requires consent (or a relationship standing in for it).
    pub fn opt_in(&self) -> bool {
        self.consent.value.regime == ConsentRegime::OptIn
    }

    /// The caps that bind a number in `state`.
    pub fn caps_in<'a>(
        &'a self,
        state: Option<&'a str>,
    ) -> impl Iterator<Item = AttemptLimit> + 'a {
        self.caps
            .iter()
            .filter(move |cap| cap.applies_in(state))
            .map(|cap| cap.limit)
    }

    /// The configured registry of this era with this id.
    pub fn registry(&self, registry_id: &str) -> Option<&EraRegistry> {
        self.registries.iter().find(|r| r.id == registry_id)
    }

    /// Whether a configured registry is consulted in this era.
    pub fn consults(&self, registry_id: &str) -> bool {
        self.registries
            .iter()
            .any(|r| r.id == registry_id && r.consulted)
    }

    /// The exemptions of a configured registry in this era.
    pub fn exemptions(&self, registry_id: &str) -> Exemptions {
        self.registries
            .iter()
            .find(|r| r.id == registry_id)
            .map(|r| r.exemptions)
            .unwrap_or_default()
    }
}

/// The eras of one campaign and destination, in order, covering all time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationPolicy {
    pub region: Region,
    pub eras: Vec<Era>,
}

impl DestinationPolicy {
    /// The era in force at `at`.
    pub fn at(&self, at: Timestamp) -> &Era {
        self.eras
            .iter()
            .find(|era| era.from <= at && at < era.until)
            .unwrap_or_else(|| self.eras.last().expect("a policy has at least one era"))
    }
}

/// A campaign × destination whose calls are all denied, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Blocked {
    pub campaign: String,
    pub destination: String,
    pub reason: String,
    /// The era's bounds (`None`: open-ended).
    pub from: Option<Date>,
    pub until: Option<Date>,
    #[serde(skip)]
    from_instant: Timestamp,
    #[serde(skip)]
    until_instant: Timestamp,
}

/// An override of a statute, as reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OverrideReport {
    pub destination: String,
    pub from: Option<Date>,
    pub settings: Vec<String>,
    pub source: String,
}

/// Every campaign's compiled policy.
#[derive(Debug)]
pub struct Policies {
    campaigns: HashMap<String, Vec<DestinationPolicy>, foldhash::fast::RandomState>,
    /// Digest of everything compiled: changes with any statute, override or campaign.
    pub version: String,
    pub overrides: Vec<OverrideReport>,
    /// Campaign destinations denied for a missing registry (now or in some era).
    pub blocked: Vec<Blocked>,
    /// Configuration that loads but deserves a look.
    pub warnings: Vec<String>,
}

impl Policies {
    /// Compiles the configuration's campaigns against the statutes.
    pub fn compile(config: &Config) -> Policies {
        let mut next_id = 1u32;
        let mut campaigns = HashMap::default();
        let mut blocked = Vec::new();
        let mut fingerprint = String::new();
        for campaign in &config.campaigns {
            let mut destinations = Vec::new();
            for &region in &campaign.destinations {
                let policy = compile_destination(config, campaign, region, &mut next_id);
                for era in &policy.eras {
                    let _ = write!(fingerprint, "{era:?}");
                    if let Some(reason) = &era.blocked {
                        blocked.push(Blocked {
                            campaign: campaign.id.clone(),
                            destination: region.to_string(),
                            reason: reason.clone(),
                            from: era.from_day,
                            until: era.until_day,
                            from_instant: era.from,
                            until_instant: era.until,
                        });
                    }
                }
                destinations.push(policy);
            }
            campaigns.insert(campaign.id.clone(), destinations);
        }
        let digest = Sha256::digest(fingerprint.as_bytes());
        let version = hex::encode(&digest[..6]);
        for eras in campaigns.values_mut() {
            for policy in eras.iter_mut() {
                for era in &mut policy.eras {
                    era.label = format!("policy@{version}");
                }
            }
        }
        let overrides = config
            .destination_overrides
            .iter()
            .map(|o| OverrideReport {
                destination: o.region.to_string(),
                from: o.from,
                settings: o.settings(),
                source: o.source.clone(),
            })
            .collect();
        Policies {
            campaigns,
            version,
            overrides,
            blocked,
            warnings: warnings(config),
        }
    }

    /// The policy of a campaign for a destination; `None` when the campaign
    /// is unknown or may not call there.
    pub fn destination(&self, campaign_id: &str, region: Region) -> Option<&DestinationPolicy> {
        self.campaigns
            .get(campaign_id)?
            .iter()
            .find(|p| p.region == region)
    }

    /// The era of a campaign and destination at `at`.
    pub fn era(&self, campaign_id: &str, region: Region, at: Timestamp) -> Option<&Era> {
        Some(self.destination(campaign_id, region)?.at(at))
    }

    /// The longest window of any cap of any era (how long attempts are kept).
    pub fn longest_cap_window(&self) -> Option<SignedDuration> {
        self.campaigns
            .values()
            .flatten()
            .flat_map(|p| &p.eras)
            .flat_map(|era| &era.caps)
            .map(|cap| cap.limit.window)
            .max()
    }

    /// Whether `region` has a law of its own here: a statute (its own or
    /// the one governing it) or a `[destination.XX]` override. Regions
    /// without are alike: opt-in, no registry, no window.
    pub fn has_own_law(&self, region: Region) -> bool {
        statutes::statute(region.as_str()).is_some()
            || self
                .overrides
                .iter()
                .any(|o| o.destination == region.as_str())
    }

    /// Campaign × destination pairs blocked at `at`.
    pub fn blocked_at(&self, at: Timestamp) -> Vec<&Blocked> {
        self.blocked
            .iter()
            .filter(|b| b.from_instant <= at && at < b.until_instant)
            .collect()
    }

    /// Campaign × destination pairs blocked at `at` or later.
    pub fn blocked_from(&self, at: Timestamp) -> Vec<&Blocked> {
        self.blocked
            .iter()
            .filter(|b| at < b.until_instant)
            .collect()
    }
}

/// Midnight of `day` in `zone`, as an instant. A day whose midnight an
/// instant cannot hold (9999-12-31 east of UTC) lies past every instant:
/// `Timestamp::MAX`, never `MIN`, which put an override dated then in
/// force from the start of time (found by review; `config::validate`
/// also refuses such a `from`).
fn midnight(day: Date, zone: &str) -> Timestamp {
    let tz = crate::tz_data::zone(zone).unwrap_or(TimeZone::UTC);
    day.to_zoned(tz)
        .map(|z| z.timestamp())
        .unwrap_or(if day > Date::constant(1970, 1, 1) {
            Timestamp::MAX
        } else {
            Timestamp::MIN
        })
}

fn compile_destination(
    config: &Config,
    campaign: &CampaignConfig,
    region: Region,
    next_id: &mut u32,
) -> DestinationPolicy {
    let statute = statutes::statute(region.as_str());
    let overriding = config.destination_override(region);
    let mut days: Vec<Date> = statute.map(Statute::boundaries).unwrap_or_default();
    days.extend(overriding.and_then(|o| o.from));
    days.sort();
    days.dedup();
    // A dated override of a destination whose numbers run on several
    // clocks is refused at load (`config::validate`).
    let zone = statutes::dated_zone(region).unwrap_or("UTC");
    let mut bounds: Vec<Option<Date>> = vec![None];
    bounds.extend(days.iter().copied().map(Some));
    bounds.push(None);
    let mut eras = Vec::new();
    for pair in bounds.windows(2) {
        let (from_day, until_day) = (pair[0], pair[1]);
        // The day whose rules the era takes: its first, or for the open
        // start the day before the first boundary.
        let day = match (from_day, until_day) {
            (Some(day), _) => day,
            (None, Some(until)) => until.checked_sub(1.day()).unwrap_or(until),
            (None, None) => jiff::civil::date(2000, 1, 1),
        };
        let id = *next_id;
        *next_id += 1;
        eras.push(Era {
            id,
            region,
            from: from_day.map_or(Timestamp::MIN, |d| midnight(d, zone)),
            until: until_day.map_or(Timestamp::MAX, |d| midnight(d, zone)),
            from_day,
            until_day,
            label: String::new(),
            ..era_on(config, campaign, region, statute, overriding, day, id)
        });
    }
    DestinationPolicy { region, eras }
}

/// The rule of `rules` in force on `day`, with its origin.
fn statute_rule<T: Clone>(rules: &[Rule<T>], day: Date) -> Option<Sourced<T>> {
    statutes::in_force(rules, day).map(|rule| Sourced {
        value: rule.value.clone(),
        origin: Origin::Statute {
            source: rule.source,
        },
    })
}

fn era_on(
    config: &Config,
    campaign: &CampaignConfig,
    region: Region,
    statute: Option<&'static Statute>,
    overriding: Option<&DestinationOverride>,
    day: Date,
    id: u32,
) -> Era {
    // Listed holidays are dates: they close those days whatever the
    // override's `from` (found by review: an override from 2027 dropped
    // this year's regional holidays, and a destination has one override).
    let listed_holidays = overriding
        .map(|o| o.extra_holidays.clone())
        .unwrap_or_default();
    let overriding = overriding.filter(|o| o.from.is_none_or(|from| from <= day));
    // Named by the section that sets it: `[destination.FR]` for Réunion.
    let section = overriding.map_or(region, |o| o.region);
    let override_origin = |key: &str| -> Origin {
        Origin::Override {
            key: format!("destination.{section}.{key}"),
            note: overriding.map(|o| o.source.clone()).unwrap_or_default(),
        }
    };
    let no_statute = || Origin::Default {
        note: statutes::NO_STATUTE,
    };

    let statute_consent = statute.and_then(|s| statute_rule(&s.consent, day));
    let consent = match overriding.and_then(|o| o.consent) {
        // The override sets the regime only: the statute's renewal age of
        // a consent stays (Spain's 24 months; an override cannot set one,
        // so dropping it would let older consents stand), and its
        // exemption for customers is dropped (stricter).
        Some(regime) => Sourced {
            value: ConsentRule {
                regime,
                customer_exemption: None,
                consent_max_age: statute_consent
                    .as_ref()
                    .and_then(|rule| rule.value.consent_max_age),
                stand_in_needs_list: None,
            },
            origin: override_origin("consent"),
        },
        None => statute_consent.unwrap_or_else(|| Sourced {
            value: ConsentRule::OPT_IN,
            origin: no_statute(),
        }),
    };

    let statute_registry = statute.and_then(|s| statute_rule(&s.registry, day));
    let mut registry = match overriding.and_then(|o| o.registry) {
        Some(kind) => Sourced {
            value: kind.map(|kind| {
                let statutory = statute_registry
                    .as_ref()
                    .and_then(|r| r.value)
                    .filter(|r| r.kind == kind);
                RegistryRequirement {
                    name: statutory.map_or("registry", |r| r.name),
                    kind,
                    valid_days: statutory.map_or(0, |r| r.valid_days),
                    exemptions: statutory.map(|r| r.exemptions).unwrap_or_default(),
                }
            }),
            origin: override_origin("registry"),
        },
        None => statute_registry.unwrap_or_else(|| Sourced {
            value: None,
            origin: no_statute(),
        }),
    };
    if let (Some(days), Some(requirement)) = (
        overriding.and_then(|o| o.registry_valid_days),
        registry.value.as_mut(),
    ) {
        requirement.valid_days = days;
        registry.origin = override_origin("registry_valid_days");
    }

    let of_region: Vec<&RegistryConfig> = config
        .registries
        .iter()
        .filter(|r| r.country == region)
        .collect();
    let ever_required = |kind| {
        statute.is_some_and(|s| {
            s.registry
                .iter()
                .any(|rule| rule.value.is_some_and(|v| v.kind == kind))
        })
    };
    let registries = of_region
        .iter()
        .map(|r| EraRegistry {
            id: r.id.clone(),
            consulted: registry.value.is_some_and(|req| req.kind == r.kind)
                || !ever_required(r.kind),
            valid_days: match registry.value {
                Some(required) if required.kind == r.kind => r.valid_days.min(required.valid_days),
                _ => r.valid_days,
            },
            exemptions: match registry.value {
                Some(required) if required.kind == r.kind => {
                    r.exemption_settings.narrow(required.exemptions)
                }
                _ => r.exemption_settings.as_configured(),
            },
        })
        .collect();
    let blocked = registry.value.and_then(|required| {
        (!of_region.iter().any(|r| r.kind == required.kind)).then(|| {
            format!(
                "the law of {region} requires the {} registry (a {} of {region}) and none is configured ({})",
                required.name,
                required.kind,
                registry.origin.describe()
            )
        })
    });

    let statute_hours = statute.and_then(|s| statute_rule(&s.hours, day));
    let (hours, window_origin) = match overriding.and_then(|o| o.calling_hours.as_ref()) {
        Some(configured) => (
            Some(match &statute_hours {
                Some(statutory) => statutory.value.overridden_by(configured),
                // No statutory week to keep: a day the override leaves
                // unset is closed, not open all day (a window of Monday to
                // Friday must not leave the weekend unrestricted).
                None => configured.closing_unset_days(),
            }),
            Some(override_origin("calling_hours")),
        ),
        None => match statute_hours {
            Some(s) => (Some(s.value), Some(s.origin)),
            None => (None, None),
        },
    };
    let mut states = BTreeMap::new();
    let mut state_origins = BTreeMap::new();
    let mut caps = Vec::new();
    if let Some(statute) = statute {
        for state in &statute.states {
            if let Some(hours) = statute_rule(&state.hours, day) {
                states.insert(state.code.to_string(), hours.value);
                state_origins.insert(state.code.to_string(), hours.origin);
            }
            for rule in state.attempt_caps.iter().filter(|r| r.in_force_on(day)) {
                caps.push(Cap {
                    limit: rule.value,
                    state: Some(state.code),
                    origin: Origin::Statute {
                        source: rule.source,
                    },
                });
            }
        }
    }
    if let Some(o) = overriding {
        for (state, configured) in &o.states {
            let merged = match states.get(state) {
                Some(statutory) => WeeklyHours::overridden_by(statutory, configured),
                None => configured.clone(),
            };
            states.insert(state.clone(), merged);
            state_origins.insert(
                state.clone(),
                override_origin(&format!("state.{state}.calling_hours")),
            );
        }
    }
    match overriding.and_then(|o| o.attempt_limit) {
        Some(limit) => caps.push(Cap {
            limit,
            state: None,
            origin: override_origin("attempt_limit"),
        }),
        None => {
            if let Some(statute) = statute {
                for rule in statute.attempt_caps.iter().filter(|r| r.in_force_on(day)) {
                    caps.push(Cap {
                        limit: rule.value,
                        state: None,
                        origin: Origin::Statute {
                            source: rule.source,
                        },
                    });
                }
            }
        }
    }
    if let Some(limit) = campaign.attempt_limit {
        caps.push(Cap {
            limit,
            state: None,
            origin: Origin::Campaign {
                key: format!("campaign {}: attempt_limit", campaign.id),
            },
        });
    }

    let caller_id = statute
        .and_then(|s| statute_rule(&s.caller_id, day))
        .unwrap_or_else(|| Sourced {
            value: CallerIdRules::default(),
            origin: Origin::Default {
                note: "a caller ID is presented, declared by the campaign",
            },
        });
    let caller_ids = campaign
        .caller_ids
        .iter()
        .map(|e164| {
            let (cli_region, kind) = declared_cli(e164);
            DeclaredCli {
                e164: e164.clone(),
                kind,
                permitted: caller_id
                    .value
                    .permits(kind, cli_region.as_deref(), region.as_str()),
                region: cli_region,
            }
        })
        .collect();

    Era {
        id,
        region,
        from: Timestamp::MIN,
        until: Timestamp::MAX,
        from_day: None,
        until_day: None,
        label: String::new(),
        consent,
        campaign_requires_consent: campaign.consent_required,
        registry,
        registries,
        blocked,
        window: DestinationRules {
            hours,
            extra_holidays: listed_holidays,
            states,
            close_margin: jiff::SignedDuration::from_secs(i64::from(
                config.calling.window_margin_seconds,
            )),
        },
        window_origin,
        state_origins,
        campaign_hours: campaign.calling_hours.clone(),
        caps,
        caller_id,
        caller_ids,
    }
}

/// The region and type of a declared caller ID.
fn declared_cli(e164: &str) -> (Option<String>, CliType) {
    match crate::number::classify_e164(e164) {
        Some((region, kind)) => (Some(region.to_string()), CliType::of(kind)),
        None => (None, CliType::Unknown),
    }
}

/// What loads but deserves a look: registries the law no longer asks for,
/// declared caller IDs a destination's law refuses.
fn warnings(config: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let today = Timestamp::now().to_zoned(TimeZone::UTC).date();
    for registry in &config.registries {
        let Some(statute) = statutes::statute(registry.country.as_str()) else {
            continue;
        };
        let required_now = statutes::in_force(&statute.registry, today)
            .and_then(|r| r.value)
            .is_some_and(|r| r.kind == registry.kind);
        let required_ever = statute
            .registry
            .iter()
            .any(|r| r.value.is_some_and(|v| v.kind == registry.kind));
        if required_ever && !required_now {
            out.push(format!(
                "registry {}: the law of {} no longer requires it; it is not consulted for calls after its end",
                registry.id, registry.country
            ));
        }
    }
    for campaign in &config.campaigns {
        for &region in &campaign.destinations {
            let rule = statutes::statute(region.as_str())
                .and_then(|statute| statutes::in_force(&statute.caller_id, today));
            let Some(rule) = rule else {
                if campaign.caller_ids.is_empty() {
                    out.push(format!(
                        "campaign {}: it declares no caller ID: every call to {region} is denied CALLER_ID_NOT_ALLOWED, and screening denies its numbers",
                        campaign.id
                    ));
                }
                continue;
            };
            let mut permitted = 0;
            for cli in &campaign.caller_ids {
                let (cli_region, kind) = declared_cli(cli);
                if rule
                    .value
                    .permits(kind, cli_region.as_deref(), region.as_str())
                {
                    permitted += 1;
                } else {
                    out.push(format!(
                        "campaign {}: caller ID {} is a {} number, which the law of {region} does not let a call present ({})",
                        campaign.id,
                        crate::number::mask(cli),
                        kind.as_str(),
                        rule.source
                    ));
                }
            }
            if permitted == 0 && !reserves_prefix_for(&rule.value, campaign.purpose) {
                out.push(format!(
                    "campaign {}: none of its caller IDs may be presented on calls to {region}, and no prefix is reserved there for {}: every call there is denied CALLER_ID_NOT_ALLOWED, and screening denies its numbers ({})",
                    campaign.id,
                    campaign.purpose.as_str(),
                    rule.source
                ));
            }
        }
    }
    out
}

/// Whether `rules` reserve a caller-ID prefix for `purpose` (Italy: 0844
/// for marketing): a call may present a number in it undeclared.
fn reserves_prefix_for(rules: &CallerIdRules, purpose: Purpose) -> bool {
    rules
        .reserved_prefixes
        .iter()
        .any(|prefix| prefix.purposes.contains(&purpose))
}

impl Era {
    /// Whether a call of `purpose` could present a caller ID here: a
    /// declared number the law lets it present, or one in a prefix reserved
    /// for the purpose.
    pub fn can_present_caller_id(&self, purpose: Purpose) -> bool {
        let rules = &self.caller_id.value;
        (!rules.reserved_required.contains(&purpose)
            && self.caller_ids.iter().any(|declared| declared.permitted))
            || reserves_prefix_for(rules, purpose)
    }
}

#[cfg(test)]
mod tests;
