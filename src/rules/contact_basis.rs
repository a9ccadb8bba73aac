//! Rules on the contact records of the called number: opt-outs, consents,
//! and the exemptions (relationship, consent) that lift a registry DENY.

use jiff::Timestamp;

use crate::config::SupplierContract;
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

/// GDPR-WITHDRAW: the latest withdrawal of consent of this controller and
/// purpose in force at `now`, when no consent given since grants at `now`:
/// the person said no, and no other basis (a customer relationship, a
/// clear registry) is used after it. `NO_CONSENT` naming it.
pub fn withdrawn(view: &ContactView, asking: &Asking<'_>, now: Timestamp) -> Option<Reason> {
    let withdrawn = latest_withdrawal(view, asking)?;
    // Only a consent that grants now (given after the withdrawal, neither
    // expired, withdrawn nor past the law's renewal, and from a declared
    // supplier within its contract): one that lapsed since does not bring
    // the other bases back (found by review).
    let given_since = valid_consent(view, asking, now).is_some();
    (!given_since).then(|| {
        Reason::new(
            ReasonCode::NoConsent,
            format!(
                "consent of controller {} for {} withdrawn at {withdrawn}, none in force given since: no other basis is used after a withdrawal (GDPR art. 7(3))",
                asking.controller,
                asking.purpose.as_str()
            ),
        )
    })
}

/// The consent in force at `now` for this controller and purpose, if any;
/// with `max_age`, only one granted at most that long ago (the law's renewal).
///
/// A withdrawal ends every consent given before it: a consent recorded
/// again later (a CRM's re-sync) but granted before the latest withdrawal
/// of this controller and purpose does not count. A consent collected by
/// a supplier counts only when the controller declared that supplier and
/// the consent was given within the contract's term.
pub fn valid_consent<'a>(
    view: &'a ContactView,
    asking: &Asking<'_>,
    now: Timestamp,
) -> Option<&'a Consent> {
    valid_consent_where(view, asking, now, |_| true)
}

/// [`valid_consent`] among the consents `which` accepts.
pub fn valid_consent_where<'a>(
    view: &'a ContactView,
    asking: &Asking<'_>,
    now: Timestamp,
    which: impl Fn(&Consent) -> bool,
) -> Option<&'a Consent> {
    in_force(view, asking, now)
        .filter(|c| which(c) && supplier_contract(c, asking.suppliers).is_ok())
        .max_by_key(|c| c.granted_at)
}

/// The consents of the controller and purpose in force at `now`, whoever
/// collected them.
fn in_force<'a, 'v>(
    view: &'v ContactView,
    asking: &'a Asking<'a>,
    now: Timestamp,
) -> impl Iterator<Item = &'v Consent> + use<'a, 'v> {
    let same = move |c: &&Consent| c.controller == asking.controller && c.purpose == asking.purpose;
    let withdrawn = latest_withdrawal(view, asking);
    view.consents
        .iter()
        .filter(same)
        .filter(move |c| c.valid_at(now))
        .filter(move |c| withdrawn.is_none_or(|w| c.granted_at > w))
        .filter(move |c| {
            asking
                .consent_max_age
                .is_none_or(|age| now < age.after(c.granted_at))
        })
}

/// The latest withdrawal of consent of the controller and purpose the
/// records hold. Every one counts, whatever the decision's instant: one
/// stamped ahead of this clock by another replica's (found by review: the
/// consent counted until this clock reached it), and, screening as of an
/// earlier `at`, one made since (as an opt-out does).
fn latest_withdrawal(view: &ContactView, asking: &Asking<'_>) -> Option<Timestamp> {
    view.consents
        .iter()
        .filter(|c| c.controller == asking.controller && c.purpose == asking.purpose)
        .filter_map(|c| c.revoked_at)
        .max()
}

/// The declared contract a consent's supplier collected it under (`None`
/// for the controller's own consent), or why it grants nothing.
pub fn supplier_contract<'s>(
    consent: &Consent,
    suppliers: &'s [SupplierContract],
) -> Result<Option<&'s SupplierContract>, String> {
    if consent.supplier.is_empty() {
        return Ok(None);
    }
    let named: Vec<&SupplierContract> = suppliers
        .iter()
        .filter(|s| s.controller == consent.controller && s.name == consent.supplier)
        .collect();
    if named.is_empty() {
        return Err(format!(
            "consent {} was collected by supplier {:?}, which is not a declared supplier of controller {} (no list without a contract and consent chain)",
            consent.consent_id, consent.supplier, consent.controller
        ));
    }
    named
        .iter()
        .find(|s| s.covers(consent.granted_at))
        .map(|s| Some(*s))
        .ok_or_else(|| {
            format!(
                "consent {} was collected by supplier {:?} on {}, outside its contract with controller {} ({})",
                consent.consent_id,
                consent.supplier,
                consent.granted_at,
                consent.controller,
                named
                    .iter()
                    .map(|s| format!("{}: {}", s.contract_ref, s.term()))
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        })
}

/// Why the consents that would otherwise be in force grant nothing (their
/// suppliers are not declared), for a NO_CONSENT detail; `None` when no
/// such consent exists.
pub fn refused_supplier_consents(
    view: &ContactView,
    asking: &Asking<'_>,
    now: Timestamp,
) -> Option<String> {
    let reasons: Vec<String> = in_force(view, asking, now)
        .filter_map(|c| supplier_contract(c, asking.suppliers).err())
        .collect();
    (!reasons.is_empty()).then(|| reasons.join("; "))
}

/// The relationship of this controller that exempts the number at `now`, if any.
pub fn exempting_relationship<'a>(
    view: &'a ContactView,
    exemptions: &Exemptions,
    controller: &str,
    now: Timestamp,
) -> Option<(&'a Relationship, Option<Timestamp>)> {
    // The contract API records a relationship's end as another record
    // (same controller, kind and start, with its end): the latest end
    // any record of it gives (a customer's last purchase) ends it, ongoing
    // copies included (found by review: the ongoing one went on exempting
    // for ever). The retention purge keeps an ended record while an
    // ongoing copy of it is kept.
    let ended = |r: &Relationship| {
        view.relationships
            .iter()
            .filter(|o| {
                o.controller == r.controller && o.kind == r.kind && o.started_at == r.started_at
            })
            .filter_map(|o| o.ended_at)
            .max()
    };
    view.relationships
        .iter()
        .filter(|r| r.controller == controller && r.started_at <= now)
        .find_map(|r| {
            let until = match r.kind {
                RelationshipKind::Customer => match ended(r) {
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
    /// The suppliers the controller declared: other suppliers' consents
    /// grant nothing.
    pub suppliers: &'a [SupplierContract],
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
    let controller = asking.controller;
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
    // The US DNC: only the consumer's signed written agreement lifts it
    // (any consent in force did; found by review), and a registry set to ask
    // for one asks it on every path (a consent after the registration too).
    let lifting = if exemptions.consent_in_writing {
        valid_consent_where(view, asking, now, Consent::is_written_agreement)
    } else {
        valid_consent(view, asking, now)
    };
    if exemptions.consent
        && let Some(consent) = lifting
    {
        let written = if exemptions.consent_in_writing {
            " (a signed written agreement)"
        } else {
            ""
        };
        return Some(Reason::new(
            ReasonCode::Consent,
            format!(
                "consent {}{written} exempts from registry {registry_id}",
                consent.consent_id
            ),
        ));
    }
    let consent = lifting?;
    // The answer is dated by its day: the registration may have come at
    // any time of it, so only a consent from the next day on is "after".
    match opposed_at {
        Some(seen)
            if exemptions.consent_after_registration
                && consent.granted_at
                    >= seen
                        .checked_add(jiff::SignedDuration::from_hours(24))
                        .unwrap_or(Timestamp::MAX) =>
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
