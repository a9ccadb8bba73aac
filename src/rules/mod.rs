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

use crate::calling::zones::Whereabouts;
use crate::calling::{DestinationRules, WindowInput, WindowMemo};
use crate::config::{CampaignConfig, RegistryConfig};
use crate::contacts::ContactView;
use crate::model::{Reason, ReasonCode, Verdict};
use crate::number::{Normalized, NumberError};
use crate::registry::Snapshot;
pub use caller_id::check_caller_id;
pub use contact_basis::{exempting_relationship, registry_exemption, suppression, valid_consent};
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
}

/// A registry that applies to the called number, with the edition in service.
#[derive(Debug, Clone)]
pub struct RegistryData<'a> {
    pub config: &'a RegistryConfig,
    pub snapshot: Option<&'a Snapshot>,
}

/// The data a decision rests on.
#[derive(Debug, Clone, Copy)]
pub struct DecisionData<'a> {
    pub contacts: &'a ContactView,
    /// The registries of the called number's region.
    pub registries: &'a [RegistryData<'a>],
    /// The calling rules of the called number's region.
    pub destination: &'a DestinationRules,
    /// Where the called number is (time zones, state).
    pub whereabouts: &'a Whereabouts,
    /// Earlier ALLOW decisions for this number and the campaign's controller.
    pub attempts: &'a [Timestamp],
    /// By allow-list registry: when the number was first seen not cleared for the controller.
    pub first_not_cleared: &'a [(String, Timestamp)],
    /// Memoised calling-window answers (an optimisation: same answers without).
    pub window_memo: Option<&'a WindowMemo>,
}

/// The outcome of the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    pub verdict: Verdict,
    pub reasons: Vec<Reason>,
    pub next_allowed_at: Option<Timestamp>,
    /// `registry@version` of every registry consulted (`@none` when it had no data).
    pub data_versions: Vec<String>,
    /// Allow-list registries that did not clear the number for the controller.
    pub not_cleared: Vec<String>,
}

/// Decides a call at `now`.
pub fn evaluate(input: &CallInput<'_>, data: &DecisionData<'_>, now: Timestamp) -> Evaluation {
    let mut denies = Vec::new();
    let mut bases = Vec::new();
    let mut data_versions = Vec::new();
    let mut timed: Vec<TimedDeny> = Vec::new();
    let mut not_cleared = Vec::new();

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
        && let Some(reason) = check_caller_id(caller_id, campaign)
    {
        denies.push(reason);
    }

    if let (Some(campaign), Ok(called)) = (input.campaign, input.called) {
        if !campaign.destinations.contains(&called.region) {
            denies.push(Reason::new(
                ReasonCode::DestinationNotAllowed,
                format!("{} is not among the campaign's destinations", called.region),
            ));
        }
        let window = WindowInput {
            region: called.region.as_str(),
            zones: data.whereabouts.zones,
            state: data.whereabouts.state,
            destination: data.destination,
            campaign: campaign.calling_hours.as_ref(),
        };
        timed.extend(check_calling_window(&window, now, data.window_memo));
        let attempt_limit = campaign.attempt_limit.or(data.destination.attempt_limit);
        timed.extend(check_attempt_limit(attempt_limit, data.attempts, now));
        denies.extend(timed.iter().map(|t| t.reason.clone()));
        if let Some(reason) = suppression(data.contacts, &campaign.controller, &campaign.id, now) {
            denies.push(reason);
        }
        let consent = valid_consent(data.contacts, &campaign.controller, campaign.purpose, now);
        match consent {
            Some(consent) => bases.push(Reason::new(
                ReasonCode::Consent,
                format!(
                    "consent {} for {}",
                    consent.consent_id,
                    campaign.purpose.as_str()
                ),
            )),
            None if campaign.consent_required => denies.push(Reason::new(
                ReasonCode::NoConsent,
                format!(
                    "no valid {} consent for controller {}",
                    campaign.purpose.as_str(),
                    campaign.controller
                ),
            )),
            None => {}
        }
        if data.registries.is_empty() && !campaign.consent_required {
            bases.push(Reason::new(
                ReasonCode::RegistryClear,
                format!(
                    "no registry is configured for {}: no registry check applies",
                    called.region
                ),
            ));
        }
        for registry in data.registries {
            let outcome = check_registry(registry, called, &campaign.controller, now);
            data_versions.push(outcome.version);
            let reasons = match outcome.result {
                Ok(clear) => {
                    bases.push(clear);
                    continue;
                }
                Err(reasons) => reasons,
            };
            if registry.config.kind == crate::config::RegistryKind::Allowlist
                && reasons.iter().any(|r| {
                    matches!(
                        r.code,
                        ReasonCode::RegistryNotCovered | ReasonCode::RegistryListed
                    )
                })
            {
                not_cleared.push(registry.config.id.clone());
            }
            let first_not_cleared = data
                .first_not_cleared
                .iter()
                .find(|(id, _)| *id == registry.config.id)
                .map(|(_, at)| *at);
            match registry_exemption(
                data.contacts,
                &registry.config.exemptions,
                &registry.config.id,
                &campaign.controller,
                campaign.purpose,
                first_not_cleared,
                now,
            ) {
                Some(basis) => bases.push(basis),
                None => denies.extend(reasons),
            }
        }
    }

    if denies.is_empty() && !bases.is_empty() {
        Evaluation {
            verdict: Verdict::Allow,
            reasons: bases,
            next_allowed_at: None,
            data_versions,
            not_cleared,
        }
    } else {
        // Waiting helps only when every deny reason is about time.
        let next_allowed_at = match (input.campaign, input.called) {
            (Some(campaign), Ok(called)) if !timed.is_empty() && timed.len() == denies.len() => {
                next_permitted(campaign, called, data, &timed)
            }
            _ => None,
        };
        Evaluation {
            verdict: Verdict::Deny,
            reasons: denies,
            next_allowed_at,
            data_versions,
            not_cleared,
        }
    }
}

/// The first instant at which every time-based denial has lifted: the cap
/// frees a slot and the window is open.
fn next_permitted(
    campaign: &CampaignConfig,
    called: &Normalized,
    data: &DecisionData<'_>,
    timed: &[TimedDeny],
) -> Option<Timestamp> {
    let mut candidate = timed
        .iter()
        .map(|t| t.lifts_at)
        .collect::<Option<Vec<_>>>()?
        .into_iter()
        .max()?;
    let window = WindowInput {
        region: called.region.as_str(),
        zones: data.whereabouts.zones,
        state: data.whereabouts.state,
        destination: data.destination,
        campaign: campaign.calling_hours.as_ref(),
    };
    let attempt_limit = campaign.attempt_limit.or(data.destination.attempt_limit);
    // Each step moves forward to where one of the two rules next allows; a
    // few rounds settle it (the window opens daily, the cap frees monotonically).
    for _ in 0..8 {
        let window_lift =
            check_calling_window(&window, candidate, data.window_memo).map(|t| t.lifts_at);
        let cap_lift =
            check_attempt_limit(attempt_limit, data.attempts, candidate).map(|t| t.lifts_at);
        match (window_lift, cap_lift) {
            (None, None) => return Some(candidate),
            (Some(None), _) | (_, Some(None)) => return None,
            (Some(Some(a)), Some(Some(b))) => candidate = a.max(b),
            (Some(Some(a)), None) | (None, Some(Some(a))) => candidate = a,
        }
    }
    None
}

#[cfg(test)]
mod tests;
