//! Rules on the contact records of the called number: opt-outs, consents,
//! and the exemptions (relationship, consent) that lift a registry DENY.

use jiff::Timestamp;

use crate::contacts::{Consent, ContactView, Relationship, RelationshipKind};
use crate::model::{Purpose, Reason, ReasonCode};
use crate::statutes::{Exemptions, Period};

/// `SUPPRESSED` when an opt-out binds the controller and campaign at `now`.
pub fn suppression(
    view: &ContactView,
    controller: &str,
    campaign_id: &str,
    now: Timestamp,
) -> Option<Reason> {
    view.suppressions
        .iter()
        .find(|s| s.applies_to(controller, campaign_id, now))
        .map(|s| {
            let scope = match (s.controller.is_empty(), s.campaign_id.is_empty()) {
                (true, _) => "every controller".to_string(),
                (false, true) => s.controller.clone(),
                (false, false) => format!("{} campaign {}", s.controller, s.campaign_id),
            };
            Reason::new(
                ReasonCode::Suppressed,
                format!(
                    "opt-out {} for {scope} since {}",
                    s.suppression_id, s.created_at
                ),
            )
        })
}

/// The consent in force at `now` for this controller and purpose, if any;
/// with `max_age`, only one granted at most that long ago (the law's renewal).
///
/// A withdrawal ends every consent given before it: a consent recorded
/// again later (a CRM's re-sync) but granted before the latest withdrawal
/// of this controller and purpose does not count.
pub fn valid_consent<'a>(
    view: &'a ContactView,
    controller: &str,
    purpose: Purpose,
    max_age: Option<Period>,
    now: Timestamp,
) -> Option<&'a Consent> {
    let same = |c: &&Consent| c.controller == controller && c.purpose == purpose;
    let withdrawn = view
        .consents
        .iter()
        .filter(same)
        .filter_map(|c| c.revoked_at)
        .filter(|revoked| *revoked <= now)
        .max();
    view.consents
        .iter()
        .filter(same)
        .filter(|c| c.valid_at(now))
        .filter(|c| withdrawn.is_none_or(|w| c.granted_at > w))
        .filter(|c| max_age.is_none_or(|age| now < age.after(c.granted_at)))
        .max_by_key(|c| c.granted_at)
}

/// The relationship of this controller that exempts the number at `now`, if any.
pub fn exempting_relationship<'a>(
    view: &'a ContactView,
    exemptions: &Exemptions,
    controller: &str,
    now: Timestamp,
) -> Option<(&'a Relationship, Option<Timestamp>)> {
    view.relationships
        .iter()
        .filter(|r| r.controller == controller && r.started_at <= now)
        .find_map(|r| {
            let until = match r.kind {
                RelationshipKind::Customer => match r.ended_at {
                    None => return exemptions.customer.map(|_| (r, None)),
                    Some(ended) => exemptions.customer?.after(ended),
                },
                RelationshipKind::Inquiry => exemptions.inquiry?.after(r.started_at),
            };
            (now <= until).then_some((r, Some(until)))
        })
}

/// Who asks for a call and what a consent must be.
#[derive(Debug, Clone, Copy)]
pub struct Asking<'a> {
    pub controller: &'a str,
    pub purpose: Purpose,
    /// A consent older than this no longer counts.
    pub consent_max_age: Option<Period>,
}

/// The basis that lifts a registry DENY for `registry_id`, if any:
/// a relationship, a consent the registry's country honours, or (policy) a
/// consent given after the registry's latest answer that the number is
/// opposed (IT-RPO-SURVIVE (a); a renewal voids consents before it).
pub fn registry_exemption(
    view: &ContactView,
    exemptions: &Exemptions,
    registry_id: &str,
    asking: &Asking<'_>,
    opposed_at: Option<Timestamp>,
    now: Timestamp,
) -> Option<Reason> {
    let (controller, purpose, consent_max_age) =
        (asking.controller, asking.purpose, asking.consent_max_age);
    if let Some((relationship, until)) = exempting_relationship(view, exemptions, controller, now) {
        let span = match until {
            None => "ongoing".to_string(),
            Some(until) => format!("exempt until {until}"),
        };
        return Some(Reason::new(
            ReasonCode::Relationship,
            format!(
                "{} relationship {} ({span}) exempts from registry {registry_id}",
                relationship.kind.as_str(),
                relationship.relationship_id
            ),
        ));
    }
    let consent = valid_consent(view, controller, purpose, consent_max_age, now)?;
    if exemptions.consent {
        return Some(Reason::new(
            ReasonCode::Consent,
            format!(
                "consent {} exempts from registry {registry_id}",
                consent.consent_id
            ),
        ));
    }
    // The answer is dated by its day: the registration may have come at
    // any time of it, so only a consent from the next day on is "after".
    match opposed_at {
        Some(seen)
            if exemptions.consent_after_registration
                && consent.granted_at >= seen + jiff::SignedDuration::from_hours(24) =>
        {
            Some(Reason::new(
                ReasonCode::Consent,
                format!(
                    "consent {} granted {} after registry {registry_id} answered the number as opposed on {seen}",
                    consent.consent_id, consent.granted_at
                ),
            ))
        }
        _ => None,
    }
}
