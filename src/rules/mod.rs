//! The compliance rules: pure functions of the request, the data it rests on
//! and `now`. No I/O, no clock, no globals: every rule is unit-testable with
//! plain values, and the gateway gathers the data before calling [`evaluate`].
//!
//! A DENY lists every deny reason that applies; an ALLOW lists its bases.

mod caller_id;
mod contact_basis;
mod registry_check;
mod timing;

use jiff::Timestamp;

use crate::calling::WindowInput;
use crate::calling::WindowMemo;
use crate::calling::zones::Whereabouts;
use crate::config::{CampaignConfig, RegistryConfig};
use crate::contacts::ContactView;
use crate::model::{Purpose, Reason, ReasonCode, RegistryKind, Verdict};
use crate::number::{Normalized, NumberError};
use crate::policy::Era;
use crate::registry::Snapshot;
use crate::statutes::Exemptions;
pub use caller_id::{check_caller_id, no_presentable_caller_id};
pub use contact_basis::{
    Asking, exempting_relationship, refused_supplier_consents, registry_exemption,
    supplier_contract, suppression, valid_consent, withdrawn,
};
pub use registry_check::check_registry;
pub use timing::{TimedDeny, check_attempt_limit, check_calling_window};

/// The call being decided.
#[derive(Debug, Clone, Copy)]
pub struct CallInput<'a> {
    pub campaign_id: &'a str,
    /// `None` when the campaign is not configured.
    pub campaign: Option<&'a CampaignConfig>,
    /// The called number, normalised with the campaign's default region.
    pub called: &'a Result<Normalized, NumberError>,
    /// The presented caller ID; `None` when screening a list (no call is placed).
    pub caller_id: Option<&'a str>,
    /// The decision is logged: only then are the versions of the data it
    /// rests on gathered ([`Evaluation::data_versions`], empty otherwise).
    pub logged: bool,
}

/// A registry that applies to the called number, with the edition in service.
#[derive(Debug, Clone)]
pub struct RegistryData<'a> {
    pub config: &'a RegistryConfig,
    pub snapshot: Option<&'a Snapshot>,
    /// How long one result may be relied on now: the configured value,
    /// capped by the law in force ([`crate::policy::EraRegistry::valid_days`]).
    pub valid_days: u32,
    /// Allow-lists: the latest day the registry answered the number as
    /// opposed for the controller (`registry import --opposed`).
    pub opposed_at: Option<Timestamp>,
}

/// The data a decision rests on.
#[derive(Debug, Clone, Copy)]
pub struct DecisionData<'a> {
    pub contacts: &'a ContactView,
    /// The registries of the called number's region.
    pub registries: &'a [RegistryData<'a>],
    /// The rules in force for the campaign and the number's region at the
    /// call's instant; `None` when the campaign may not call that region.
    pub era: Option<&'a Era>,
    /// Where the called number is (time zones, state).
    pub whereabouts: &'a Whereabouts,
    /// Earlier ALLOW decisions for this number and the campaign's controller.
    pub attempts: &'a [Timestamp],
    /// Memoised calling-window answers (an optimisation: same answers without).
    pub window_memo: Option<&'a WindowMemo>,
}

/// The outcome of the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    pub verdict: Verdict,
    pub reasons: Vec<Reason>,
    pub next_allowed_at: Option<Timestamp>,
    /// `policy@version` of the rules applied, and `registry@version` of every
    /// registry consulted (`@none` when it had no data); empty for a
    /// decision that is not logged ([`CallInput::logged`]).
    pub data_versions: Vec<String>,
}

impl Evaluation {
    /// Adds `reasons` whose codes it does not name yet (a DENY reached
    /// two ways names each reason once).
    pub fn add_reasons(&mut self, reasons: Vec<Reason>) {
        for reason in reasons {
            if !self.reasons.iter().any(|r| r.code == reason.code) {
                self.reasons.push(reason);
            }
        }
    }
}

/// The calling window of a call under an era.
fn window_input<'a>(era: &'a Era, data: &DecisionData<'a>) -> WindowInput<'a> {
    WindowInput {
        region: era.region.as_str(),
        zones: data.whereabouts.zones,
        zones_id: data.whereabouts.zones_id,
        state: data.whereabouts.state,
        destination: &era.window,
        campaign: era.campaign_hours.as_ref(),
        memo_key: era.id,
    }
}

/// Decides a call at `now`.
pub fn evaluate(input: &CallInput<'_>, data: &DecisionData<'_>, now: Timestamp) -> Evaluation {
    let mut denies = Vec::new();
    let mut bases = Vec::new();
    let mut data_versions = Vec::new();
    let mut timed: Vec<TimedDeny> = Vec::new();

    if input.campaign.is_none() {
        denies.push(Reason::new(
            ReasonCode::UnknownCampaign,
            format!("campaign {:?} is not configured", input.campaign_id),
        ));
    }
    if let Err(err) = input.called {
        denies.push(Reason::new(ReasonCode::InvalidNumber, err.to_string()));
    }
    if let (Some(campaign), Some(caller_id)) = (input.campaign, input.caller_id)
        && let Some(reason) = check_caller_id(caller_id, campaign, data.era)
    {
        denies.push(reason);
    }
    if let (Some(campaign), None, Some(era)) = (input.campaign, input.caller_id, data.era)
        && let Some(reason) = no_presentable_caller_id(campaign, era)
    {
        denies.push(reason);
    }

    if let (Some(campaign), Ok(called)) = (input.campaign, input.called) {
        match data.era {
            None => denies.push(Reason::new(
                ReasonCode::DestinationNotAllowed,
                format!("{} is not among the campaign's destinations", called.region),
            )),
            Some(era) => {
                if input.logged {
                    data_versions.push(era.label.clone());
                }
                decide_under(
                    era,
                    campaign,
                    called,
                    data,
                    now,
                    &mut Outcome {
                        denies: &mut denies,
                        bases: &mut bases,
                        data_versions: input.logged.then_some(&mut data_versions),
                        timed: &mut timed,
                    },
                );
            }
        }
    }

    if denies.is_empty() && !bases.is_empty() {
        return Evaluation {
            verdict: Verdict::Allow,
            reasons: bases,
            next_allowed_at: None,
            data_versions,
        };
    }
    if denies.is_empty() || (bases.is_empty() && timed.len() == denies.len()) {
        // No rule gave a basis: no lawful basis is a DENY, also beside
        // denies that waiting lifts (waiting gives no basis; a repeated
        // ALLOW is replayed when only its own attempt denies it now).
        denies.push(Reason::new(
            ReasonCode::NoConsent,
            "no lawful basis for this call: no consent, relationship or registry clearance applies",
        ));
    }
    // Waiting helps only when every deny reason is about time.
    let next_allowed_at = match (data.era, input.called) {
        (Some(era), Ok(_)) if !timed.is_empty() && timed.len() == denies.len() => {
            next_permitted(era, data, &timed)
        }
        _ => None,
    };
    Evaluation {
        verdict: Verdict::Deny,
        reasons: denies,
        next_allowed_at,
        data_versions,
    }
}

/// Where the rules of an era put their findings.
struct Outcome<'o> {
    denies: &'o mut Vec<Reason>,
    bases: &'o mut Vec<Reason>,
    /// `None`: the decision is not logged.
    data_versions: Option<&'o mut Vec<String>>,
    timed: &'o mut Vec<TimedDeny>,
}

/// The rules of an era: window, caps, opt-outs, consent, registries.
fn decide_under(
    era: &Era,
    campaign: &CampaignConfig,
    called: &Normalized,
    data: &DecisionData<'_>,
    now: Timestamp,
    out: &mut Outcome<'_>,
) {
    let window = window_input(era, data);
    out.timed
        .extend(check_calling_window(&window, now, data.window_memo));
    for limit in era.caps_in(data.whereabouts.state) {
        out.timed
            .extend(check_attempt_limit(Some(limit), data.attempts, now));
    }
    out.denies
        .extend(out.timed.iter().map(|t| t.reason.clone()));
    if let Some(reason) = suppression(data.contacts, &campaign.controller, &campaign.id, now) {
        out.denies.push(reason);
    }

    let asking = Asking {
        controller: &campaign.controller,
        purpose: campaign.purpose,
        consent_max_age: era.consent.value.consent_max_age,
        suppliers: &campaign.suppliers,
    };
    // Why consents of undeclared suppliers were set aside, for the details.
    let set_aside = |asking: &Asking<'_>| {
        refused_supplier_consents(data.contacts, asking, now)
            .map(|why| format!("; {why}"))
            .unwrap_or_default()
    };
    let consent = valid_consent(data.contacts, &asking, now);
    match consent {
        Some(consent) => out.bases.push(Reason::new(
            ReasonCode::Consent,
            format!(
                "consent {} for {}",
                consent.consent_id,
                campaign.purpose.as_str()
            ),
        )),
        None if era.opt_in() => {
            let standing_in = era.consent.value.customer_exemption.and_then(|period| {
                let exemptions = Exemptions {
                    customer: Some(period),
                    ..Exemptions::default()
                };
                exempting_relationship(data.contacts, &exemptions, &campaign.controller, now)
            });
            match standing_in {
                Some((relationship, _)) if !era.campaign_requires_consent => {
                    out.bases.push(Reason::new(
                        ReasonCode::Relationship,
                        format!(
                            "customer relationship {} stands in for consent in {} ({})",
                            relationship.relationship_id,
                            called.region,
                            era.consent.origin.describe()
                        ),
                    ));
                    // A call without consent, where the law has an
                    // exclusion list consulted first: a block-list of the
                    // destination must be (its DENY then stands below).
                    if let Some(list) = era.consent.value.stand_in_needs_list
                        && !data.registries.iter().any(|r| {
                            r.config.kind == RegistryKind::Blocklist && era.consults(&r.config.id)
                        })
                    {
                        out.denies.push(Reason::new(
                            ReasonCode::RegistryUnavailable,
                            format!(
                                "{} stands in for consent in {} only once {list} is consulted: configure it as a block-list of {}",
                                relationship.relationship_id, called.region, called.region
                            ),
                        ));
                    }
                }
                _ => out.denies.push(Reason::new(
                    ReasonCode::NoConsent,
                    format!(
                        "{} is opt-in ({}): no valid {} consent for controller {}{}",
                        called.region,
                        era.consent.origin.describe(),
                        campaign.purpose.as_str(),
                        campaign.controller,
                        set_aside(&asking)
                    ),
                )),
            }
        }
        None if era.campaign_requires_consent => out.denies.push(Reason::new(
            ReasonCode::NoConsent,
            format!(
                "campaign {} requires consent: no valid {} consent for controller {}{}",
                campaign.id,
                campaign.purpose.as_str(),
                campaign.controller,
                set_aside(&asking)
            ),
        )),
        None => {}
    }
    // GDPR-WITHDRAW: after a withdrawal (and no consent since), neither a
    // relationship nor a clear registry makes the call lawful (found by
    // review: both did).
    if consent.is_none()
        && !out.denies.iter().any(|r| r.code == ReasonCode::NoConsent)
        && let Some(reason) = withdrawn(data.contacts, &asking, now)
    {
        out.denies.push(reason);
    }
    let profiling = Asking {
        purpose: Purpose::Profiling,
        ..asking
    };
    if campaign.profiled_segment && valid_consent(data.contacts, &profiling, now).is_none() {
        out.denies.push(Reason::new(
            ReasonCode::NoConsent,
            format!(
                "campaign {} targets a profiled segment: no valid profiling consent for controller {} (GDPR art. 21-22: segmentation only after explicit consent){}",
                campaign.id,
                campaign.controller,
                set_aside(&profiling)
            ),
        ));
    }

    if let Some(reason) = &era.blocked {
        out.denies
            .push(Reason::new(ReasonCode::RegistryUnavailable, reason.clone()));
    }
    for registry in data.registries {
        if !era.consults(&registry.config.id) {
            continue;
        }
        let outcome = check_registry(registry, called, &campaign.controller, now);
        if let Some(versions) = &mut out.data_versions {
            versions.push(outcome.version.into_owned());
        }
        let reasons = match outcome.result {
            Ok(clear) => {
                out.bases.push(clear);
                continue;
            }
            Err(reasons) => reasons,
        };
        let exemptions = era.exemptions(&registry.config.id);
        match registry_exemption(
            data.contacts,
            &exemptions,
            &registry.config.id,
            &asking,
            registry.opposed_at,
            now,
        ) {
            Some(basis) => out.bases.push(basis),
            None => {
                out.denies.extend(reasons);
                // A consent in force that does not lift this registry: not
                // a signed written agreement (the US DNC). Say so.
                if exemptions.consent_in_writing
                    && let Some(consent) = contact_basis::valid_consent(data.contacts, &asking, now)
                    && !out.denies.iter().any(|r| r.code == ReasonCode::NoConsent)
                {
                    out.denies.push(Reason::new(
                        ReasonCode::NoConsent,
                        format!(
                            "consent {} is not a signed written agreement (method {}), the only consent that lifts registry {}",
                            consent.consent_id,
                            crate::contacts::WRITTEN_AGREEMENT,
                            registry.config.id
                        ),
                    ));
                }
                // A consent that would have lifted the registry's DENY but
                // came from an undeclared supplier: say so.
                if let Some(why) = refused_supplier_consents(data.contacts, &asking, now)
                    && !out.denies.iter().any(|r| r.code == ReasonCode::NoConsent)
                {
                    out.denies.push(Reason::new(ReasonCode::NoConsent, why));
                }
            }
        }
    }
}

/// The first instant at which every time-based denial has lifted: the cap
/// frees a slot and the window is open.
fn next_permitted(era: &Era, data: &DecisionData<'_>, timed: &[TimedDeny]) -> Option<Timestamp> {
    let mut candidate = timed
        .iter()
        .map(|t| t.lifts_at)
        .collect::<Option<Vec<_>>>()?
        .into_iter()
        .max()?;
    let window = window_input(era, data);
    // Each step moves forward to where one of the rules next allows; a few
    // rounds settle it (the window opens daily, the caps free monotonically).
    for _ in 0..8 {
        let mut lifts: Vec<Option<Timestamp>> =
            check_calling_window(&window, candidate, data.window_memo)
                .map(|t| t.lifts_at)
                .into_iter()
                .collect();
        for limit in era.caps_in(data.whereabouts.state) {
            lifts.extend(
                check_attempt_limit(Some(limit), data.attempts, candidate).map(|t| t.lifts_at),
            );
        }
        if lifts.is_empty() {
            return Some(candidate);
        }
        let next = lifts
            .into_iter()
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .max()?;
        candidate = next;
    }
    None
}

#[cfg(test)]
mod tests;
