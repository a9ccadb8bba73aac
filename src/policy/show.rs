//! `dialgate policy show`: the effective rules of a campaign and
//! destination at an instant, each with its value, where it comes from and
//! the dates it holds. A compliance officer reads here what dialgate enforces.

use jiff::Timestamp;
use jiff::civil::Date;
use serde::Serialize;

use super::{Era, Origin, Policies};
use crate::calling::{DaySpans, WEEKDAY_KEYS, WeeklyHours};
use crate::config::Config;
use crate::number::Region;
use crate::statutes::{self, ConsentRegime};

/// One effective rule.
#[derive(Debug, Clone, Serialize)]
pub struct RuleLine {
    pub rule: String,
    pub value: String,
    pub origin: Origin,
}

/// The effective rules of one campaign and destination at one instant.
#[derive(Debug, Clone, Serialize)]
pub struct DestinationReport {
    pub destination: String,
    /// The era's bounds: the rules below hold from..until (days of the destination).
    pub from: Option<Date>,
    pub until: Option<Date>,
    pub blocked: Option<String>,
    pub rules: Vec<RuleLine>,
    /// Public holidays of the year of `at` (statute and `extra_holidays`).
    pub holidays: Vec<Date>,
}

/// What `policy show` prints.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyReport {
    pub campaign: String,
    pub controller: String,
    pub purpose: String,
    pub at: Timestamp,
    pub policy_version: String,
    /// The time-zone data local times are computed with.
    pub time_zones: crate::tz_data::TzReport,
    pub destinations: Vec<DestinationReport>,
}

fn spans(spans: &DaySpans) -> String {
    if spans.is_empty() {
        return "closed".into();
    }
    spans
        .iter()
        .map(|s| {
            format!(
                "{:02}:{:02}-{:02}:{:02}",
                s.start / 60,
                s.start % 60,
                s.end / 60,
                s.end % 60
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn week(hours: &WeeklyHours) -> String {
    let mut parts: Vec<String> = WEEKDAY_KEYS
        .iter()
        .zip(&hours.days)
        .filter_map(|(day, s)| s.as_ref().map(|s| format!("{day} {}", spans(s))))
        .collect();
    if let Some(h) = &hours.holidays {
        parts.push(format!("holidays {}", spans(h)));
    }
    if let Some(h) = &hours.pre_holidays {
        parts.push(format!("pre-holidays {}", spans(h)));
    }
    parts.join("; ")
}

/// What lifts a registry's DENY, in words.
fn exemptions_text(exemptions: &crate::statutes::Exemptions) -> String {
    let mut exempt = Vec::new();
    if let Some(p) = exemptions.customer {
        exempt.push(format!("customers (ongoing or ended at most {p} earlier)"));
    }
    if let Some(p) = exemptions.inquiry {
        exempt.push(format!("inquiries (for {p})"));
    }
    if exemptions.consent && exemptions.consent_in_writing {
        exempt.push(format!(
            "a consent to this controller that is the consumer's signed written agreement (method {})",
            crate::contacts::WRITTEN_AGREEMENT
        ));
    } else if exemptions.consent {
        exempt.push("a consent to this controller".into());
    }
    if exempt.is_empty() {
        "none".into()
    } else {
        exempt.join(", ")
    }
}

fn lines(era: &Era, campaign: &crate::config::CampaignConfig) -> Vec<RuleLine> {
    let mut out = Vec::new();
    let consent = &era.consent.value;
    out.push(RuleLine {
        rule: "consent".into(),
        value: match (consent.regime, consent.customer_exemption) {
            (ConsentRegime::OptOut, _) => "opt-out: allowed unless registered or opted out".into(),
            (ConsentRegime::OptIn, None) => "opt-in: prior consent required".into(),
            (ConsentRegime::OptIn, Some(p)) => format!(
                "opt-in: prior consent required, or a customer relationship (ongoing or ended at most {p} earlier)"
            ),
        },
        origin: era.consent.origin.clone(),
    });
    if let Some(age) = consent.consent_max_age {
        out.push(RuleLine {
            rule: "consent".into(),
            value: format!(
                "a consent counts for {age} after it was given (then it must be renewed)"
            ),
            origin: era.consent.origin.clone(),
        });
    }
    if let Some(list) = consent.stand_in_needs_list
        && consent.customer_exemption.is_some()
    {
        out.push(RuleLine {
            rule: "consent".into(),
            value: format!(
                "a customer relationship stands in only for a number checked against {list} (a block-list of the destination)"
            ),
            origin: era.consent.origin.clone(),
        });
    }
    if era.campaign_requires_consent {
        out.push(RuleLine {
            rule: "consent".into(),
            value: format!("a valid {} consent is required", campaign.purpose.as_str()),
            origin: Origin::Campaign {
                key: format!("campaign {}: consent_required", campaign.id),
            },
        });
    }
    if campaign.profiled_segment {
        out.push(RuleLine {
            rule: "consent".into(),
            value: "a valid profiling consent is required as well (the campaign targets a profiled segment)".into(),
            origin: Origin::Campaign {
                key: format!("campaign {}: profiled_segment", campaign.id),
            },
        });
    }
    out.push(RuleLine {
        rule: "consent provenance".into(),
        value: if campaign.suppliers.is_empty() {
            "only consents the controller collected itself count (no supplier declared: a supplier's consent grants nothing)".into()
        } else {
            format!(
                "consents the controller collected itself count, and those of its declared suppliers given within the contract: {}",
                campaign
                    .suppliers
                    .iter()
                    .map(|s| format!("{} ({}, {})", s.name, s.contract_ref, s.term()))
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        },
        origin: Origin::Campaign {
            key: format!("[[supplier]] of controller {}", campaign.controller),
        },
    });
    out.push(RuleLine {
        rule: "registry".into(),
        value: match era.registry.value {
            None => "none required".into(),
            Some(r) => format!(
                "{} ({}) required, a result valid {} days; exempt: {}",
                r.name,
                r.kind,
                r.valid_days,
                exemptions_text(&r.exemptions)
            ),
        },
        origin: era.registry.origin.clone(),
    });
    for registry in &era.registries {
        out.push(RuleLine {
            rule: format!("registry {}", registry.id),
            // What is enforced: the configuration's exemptions (narrowed to
            // the statute's) and validity (capped by the law in force).
            value: if registry.consulted {
                format!(
                    "configured: consulted for every call to this destination; a result relied on {} days; exempt: {}{}",
                    registry.valid_days,
                    exemptions_text(&registry.exemptions),
                    if registry.exemptions.consent_after_registration {
                        "; POLICY consent_after_registration: a consent given after the registry's opposed answer lifts it"
                    } else {
                        ""
                    }
                )
            } else {
                "configured, NOT consulted: the law no longer requires it".into()
            },
            origin: Origin::Default {
                note: "configured registries of the destination's country are consulted, unless the statute ended them; [registry.exemptions] only narrow the statute's",
            },
        });
    }
    match (&era.window.hours, &era.window_origin) {
        (Some(hours), Some(origin)) => out.push(RuleLine {
            rule: "calling window".into(),
            value: format!("{} (called person's local time)", week(hours)),
            origin: origin.clone(),
        }),
        _ => out.push(RuleLine {
            rule: "calling window".into(),
            value: "none".into(),
            origin: Origin::Default {
                note: "no statutory window",
            },
        }),
    }
    for (state, hours) in &era.window.states {
        out.push(RuleLine {
            rule: format!("calling window {state}"),
            value: week(hours),
            origin: era
                .state_origins
                .get(state)
                .cloned()
                .unwrap_or(Origin::Default { note: "state" }),
        });
    }
    if let Some(hours) = &era.campaign_hours {
        out.push(RuleLine {
            rule: "calling window".into(),
            value: format!("narrowed to {}", week(hours)),
            origin: Origin::Campaign {
                key: format!("campaign {}: calling_hours", campaign.id),
            },
        });
    }
    if era.caps.is_empty() {
        out.push(RuleLine {
            rule: "attempt cap".into(),
            value: "none".into(),
            origin: Origin::Default {
                note: "no statutory cap",
            },
        });
    }
    for cap in &era.caps {
        out.push(RuleLine {
            rule: match cap.state {
                Some(state) => format!("attempt cap {state}"),
                None => "attempt cap".into(),
            },
            value: format!(
                "at most {} ALLOWs per number and controller in {} hours",
                cap.limit.max_attempts,
                cap.limit.window.as_hours()
            ),
            origin: cap.origin.clone(),
        });
    }
    let rules = &era.caller_id.value;
    let mut cli = vec!["presented, not withheld".to_string()];
    for prefix in rules.reserved_prefixes {
        cli.push(format!(
            "prefix {} reserved for {}",
            prefix.prefix,
            prefix
                .purposes
                .iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !rules.reserved_required.is_empty() {
        cli.push(format!(
            "{} calls only from their reserved prefix",
            rules
                .reserved_required
                .iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if let Some(types) = rules.permitted_types {
        cli.push(format!(
            "only {} numbers",
            types
                .iter()
                .map(|t| t.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    for kind in rules.forbidden_types {
        cli.push(format!("no {} numbers", kind.as_str()));
    }
    out.push(RuleLine {
        rule: "caller ID".into(),
        value: cli.join("; "),
        origin: era.caller_id.origin.clone(),
    });
    for declared in &era.caller_ids {
        out.push(RuleLine {
            rule: "caller ID".into(),
            value: format!(
                "{} ({}): {}",
                declared.e164,
                declared.kind.as_str(),
                if declared.permitted {
                    "may be presented"
                } else {
                    "REFUSED by this law"
                }
            ),
            origin: Origin::Campaign {
                key: format!("campaign {}: caller_ids", campaign.id),
            },
        });
    }
    out
}

/// Why `policy show` has nothing to report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("campaign {0:?} is not configured")]
    UnknownCampaign(String),
    #[error("campaign {campaign} may not call {region} (destinations: {destinations})")]
    NotADestination {
        campaign: String,
        region: Region,
        destinations: String,
    },
    /// A campaign destination without an era at `at`: a policy compiled
    /// from another configuration.
    #[error("no policy compiled for {campaign} and {region}")]
    NotCompiled { campaign: String, region: Region },
}

/// The report of `campaign_id` at `at`, for one destination or all of the campaign's.
///
/// # Errors
/// [`ReportError`] naming the unknown campaign or the destination the campaign may not call.
pub fn report(
    policies: &Policies,
    config: &Config,
    campaign_id: &str,
    destination: Option<Region>,
    at: Timestamp,
) -> Result<PolicyReport, ReportError> {
    let campaign = config
        .campaign(campaign_id)
        .ok_or_else(|| ReportError::UnknownCampaign(campaign_id.to_string()))?;
    let regions: Vec<Region> = match destination {
        Some(region) if campaign.destinations.contains(&region) => vec![region],
        Some(region) => {
            return Err(ReportError::NotADestination {
                campaign: campaign_id.to_string(),
                region,
                destinations: campaign
                    .destinations
                    .iter()
                    .map(|r| r.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        None => campaign.destinations.clone(),
    };
    let mut destinations = Vec::new();
    for region in regions {
        let era =
            policies
                .era(campaign_id, region, at)
                .ok_or_else(|| ReportError::NotCompiled {
                    campaign: campaign_id.to_string(),
                    region,
                })?;
        let zone = statutes::dated_zone(region).unwrap_or("UTC");
        let year = at
            .to_zoned(crate::tz_data::zone(zone).unwrap_or(jiff::tz::TimeZone::UTC))
            .year();
        let mut holidays = statutes::holidays::calendar(region.as_str(), year);
        holidays.extend(
            era.window
                .extra_holidays
                .iter()
                .filter(|d| d.year() == year),
        );
        holidays.sort();
        holidays.dedup();
        destinations.push(DestinationReport {
            destination: region.to_string(),
            from: era.from_day,
            until: era.until_day,
            blocked: era.blocked.clone(),
            rules: lines(era, campaign),
            holidays,
        });
    }
    Ok(PolicyReport {
        campaign: campaign.id.clone(),
        controller: campaign.controller.clone(),
        purpose: campaign.purpose.as_str().into(),
        at,
        policy_version: policies.version.clone(),
        time_zones: crate::tz_data::report(),
        destinations,
    })
}

impl std::fmt::Display for PolicyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "campaign {} (controller {}, purpose {}) at {}, policy {}, time zones {}",
            self.campaign,
            self.controller,
            self.purpose,
            self.at,
            self.policy_version,
            self.time_zones
        )?;
        for d in &self.destinations {
            let bound =
                |day: Option<Date>, open: &str| day.map_or(open.to_string(), |d| d.to_string());
            writeln!(
                f,
                "\n{}: rules in force from {} until {}",
                d.destination,
                bound(d.from, "(always)"),
                bound(d.until, "(further notice)")
            )?;
            if let Some(reason) = &d.blocked {
                writeln!(
                    f,
                    "  BLOCKED: every call is denied REGISTRY_UNAVAILABLE: {reason}"
                )?;
            }
            for line in &d.rules {
                writeln!(f, "  {:<16} {}", line.rule, line.value)?;
                writeln!(f, "  {:<16}   <- {}", "", line.origin.describe())?;
            }
            let days: Vec<String> = d.holidays.iter().map(|d| d.to_string()).collect();
            writeln!(
                f,
                "  {:<16} {}",
                "holidays",
                if days.is_empty() {
                    "none".into()
                } else {
                    days.join(" ")
                }
            )?;
        }
        Ok(())
    }
}
