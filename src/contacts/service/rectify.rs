//! Rectification requests (GDPR art. 16): which fields of a consent or a
//! relationship to correct, checked like a new record, applied under the
//! record's id with the before and after in the change trail.
//!
//! A correction never revives a withdrawal's consent: a withdrawn consent
//! keeps its number and purpose (its withdrawal binds them) and its grant
//! stays before the withdrawal.

use jiff::Timestamp;

use super::{
    NewConsent, NewRelationship, Records, RecordsError, check_text, invalid, required,
    validate_consent, validate_relationship,
};
use crate::contacts::{Consent, Rectification, RelationshipKind};
use crate::model::Purpose;

/// A correction of a consent: empty or unset fields stay as they are.
#[derive(Debug, Clone, Default)]
pub struct ConsentCorrection {
    pub consent_id: String,
    /// The consent's controller (a check: ids of other controllers are not found).
    pub controller: String,
    /// Why the record is corrected (kept in the trail).
    pub reason: String,
    pub number: String,
    pub default_region: String,
    pub purpose: Option<Purpose>,
    pub granted_at: Option<Timestamp>,
    pub expires_at: Option<Timestamp>,
    /// Removes the expiry (the consent does not lapse by itself).
    pub clear_expires_at: bool,
    pub source: String,
    /// `own` sets the controller's own; empty leaves the supplier as it is.
    pub supplier: String,
    pub method: String,
    pub notice_version: String,
    pub evidence_ref: String,
}

/// A correction of a relationship: empty or unset fields stay as they are.
#[derive(Debug, Clone, Default)]
pub struct RelationshipCorrection {
    pub relationship_id: String,
    pub controller: String,
    pub reason: String,
    pub number: String,
    pub default_region: String,
    pub kind: Option<RelationshipKind>,
    pub started_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    /// Makes the relationship ongoing again.
    pub clear_ended_at: bool,
}

/// A corrected record before and after, as JSON (what the caller sees).
#[derive(Debug, Clone)]
pub struct Corrected {
    pub before: String,
    pub after: String,
}

impl Corrected {
    fn of<T: serde::Serialize>(before: &T, after: &T) -> Corrected {
        let json = |record: &T| serde_json::to_string(record).unwrap_or_default();
        Corrected {
            before: json(before),
            after: json(after),
        }
    }
}

/// `new` when given, else `old`.
fn or_kept(new: &str, old: &str) -> String {
    if new.trim().is_empty() {
        old.to_string()
    } else {
        new.to_string()
    }
}

fn reason(text: &str) -> Result<String, RecordsError> {
    check_text("reason", text)?;
    if text.trim().is_empty() {
        return Err(invalid("reason", "must say why the record is corrected"));
    }
    Ok(text.trim().to_string())
}

impl Records {
    /// The correction `request` asks for, checked against the stored
    /// consent; nothing is changed.
    ///
    /// # Errors
    /// [`RecordsError::InvalidArgument`] naming the field, or
    /// [`RecordsError::NotFound`] when the controller holds no such consent.
    pub fn consent_rectification(
        &self,
        request: ConsentCorrection,
        now: Timestamp,
    ) -> Result<Rectification, RecordsError> {
        let id = required("consent_id", &request.consent_id)?;
        let controller = required("controller", &request.controller)?;
        let reason = reason(&request.reason)?;
        self.known_controller(&controller)?;
        let before = self
            .store
            .consent_by_id(&id)?
            .filter(|stored| stored.record.controller == controller)
            .ok_or_else(|| RecordsError::NotFound {
                field: "consent_id",
                problem: format!("no consent {id:?} of controller {controller:?}"),
            })?;
        if request.clear_expires_at && request.expires_at.is_some() {
            return Err(invalid("expires_at", "set it or clear it, not both"));
        }
        let old = &before.record;
        let mut after = validate_consent(
            NewConsent {
                controller,
                number: or_kept(&request.number, &old.number),
                purpose: request.purpose.or(Some(old.purpose)),
                granted_at: request.granted_at.or(Some(old.granted_at)),
                expires_at: if request.clear_expires_at {
                    None
                } else {
                    request.expires_at.or(old.expires_at)
                },
                source: or_kept(&request.source, &old.source),
                supplier: or_kept(&request.supplier, &old.supplier),
                method: or_kept(&request.method, &old.method),
                notice_version: or_kept(&request.notice_version, &old.notice_version),
                evidence_ref: or_kept(&request.evidence_ref, &old.evidence_ref),
                default_region: request.default_region,
                consent_id: id,
            },
            now,
        )?;
        after.revoked_at = old.revoked_at;
        after.recorded_at = old.recorded_at;
        if let Some(revoked_at) = old.revoked_at {
            withdrawal_stands(old, &after, revoked_at)?;
        }
        not_after_recording("granted_at", after.granted_at, old.recorded_at)?;
        let key = crate::number::NumberKey::from_e164(&after.number)
            .ok_or_else(|| invalid("number", "not E.164"))?;
        // A grant moved from before a withdrawal to after it would make a
        // withdrawn consent count again.
        if after.granted_at > old.granted_at
            && let Some(withdrawal) = self
                .store
                .withdrawals((key, &after.number), &after.controller, after.purpose)?
                .into_iter()
                .find(|w| old.granted_at <= *w && *w < after.granted_at)
        {
            return Err(invalid(
                "granted_at",
                format!(
                    "moving it from {} to {} would carry consent {} past the withdrawal of {withdrawal}: a consent given after a withdrawal is a new consent, record it with its own evidence",
                    old.granted_at, after.granted_at, old.consent_id
                ),
            ));
        }
        // Moved to another number or purpose, before a withdrawal there:
        // it would count there past that withdrawal. Also in two steps (a
        // purpose and a later grant first, where no withdrawal stands,
        // then back), which the check of a moved grant alone let through
        // (found by review).
        if (after.number != old.number || after.purpose != old.purpose)
            && let Some(withdrawal) = self
                .store
                .withdrawals((key, &after.number), &after.controller, after.purpose)?
                .into_iter()
                .filter(|w| *w < after.granted_at)
                .max()
        {
            let field = if after.number != old.number {
                "number"
            } else {
                "purpose"
            };
            return Err(invalid(
                field,
                format!(
                    "moving consent {} to {} for {} would count it past the withdrawal of {withdrawal} there (granted {}): a consent given after a withdrawal is a new consent, record it with its own evidence",
                    old.consent_id,
                    crate::number::mask(&after.number),
                    after.purpose.as_str(),
                    after.granted_at
                ),
            ));
        }
        if after == *old {
            return Err(invalid("consent_id", "the correction changes nothing"));
        }
        Ok(Rectification::Consent {
            before: Box::new(before),
            after: Box::new((key, after)),
            reason,
        })
    }

    /// Corrects a consent; returns it before and after, as JSON.
    ///
    /// # Errors
    /// As [`Records::consent_rectification`], or [`RecordsError::Store`].
    pub fn rectify_consent(
        &self,
        request: ConsentCorrection,
        actor: &str,
        now: Timestamp,
    ) -> Result<Corrected, RecordsError> {
        let correction = self.consent_rectification(request, now)?;
        self.apply(correction, actor, now)
    }

    /// Stores `corrections` (all or none), after writing each to the erasure
    /// ledger: one that moves a record away from a number or a purpose, so
    /// that a restore of a backup made before does not put it back there
    /// (the wrong person, or the wrong purpose, would be callable again);
    /// any other with its corrected values, which a restore puts back.
    ///
    /// # Errors
    /// [`RecordsError`]; nothing is changed then.
    pub fn rectify(
        &self,
        corrections: &[Rectification],
        actor: &str,
        now: Timestamp,
    ) -> Result<(), RecordsError> {
        self.refuse_unshared("a rectification")?;
        if let Some(ledger) = self.ledger() {
            let entries: Vec<_> = corrections
                .iter()
                .map(|correction| {
                    use crate::contacts::ledger::CorrectedValues;
                    let consent = |c: &crate::contacts::Consent| CorrectedValues {
                        granted_at: Some(c.granted_at),
                        expires_at: c.expires_at,
                        supplier: c.supplier.clone(),
                        // A restore must not bring back a written agreement
                        // a correction took away (the US DNC reads it).
                        method: Some(c.method.clone()),
                        ..Default::default()
                    };
                    let relationship = |r: &crate::contacts::Relationship| CorrectedValues {
                        kind: r.kind.as_str().to_string(),
                        started_at: Some(r.started_at),
                        ended_at: r.ended_at,
                        ..Default::default()
                    };
                    let (kind, id, number, controller, moved, purpose, values) = match correction {
                        Rectification::Consent { before, after, .. } => (
                            "consent",
                            &before.record.consent_id,
                            &before.record.number,
                            &before.record.controller,
                            before.key != after.0,
                            (before.record.purpose != after.1.purpose)
                                .then_some(before.record.purpose),
                            (consent(&before.record), consent(&after.1)),
                        ),
                        Rectification::Relationship { before, after, .. } => (
                            "relationship",
                            &before.record.relationship_id,
                            &before.record.number,
                            &before.record.controller,
                            before.key != after.0,
                            None,
                            (relationship(&before.record), relationship(&after.1)),
                        ),
                    };
                    let mut entry = crate::contacts::ledger::Entry::about(
                        crate::contacts::ledger::EntryKind::Rectification,
                        &self.store.index().subject_hash(number),
                        &self.store.salt_fingerprint(),
                        now,
                    );
                    entry.controller = controller.clone();
                    entry.record_kind = kind.into();
                    entry.record_id = id.clone();
                    // Moved to another number: gone from the old one,
                    // whatever its purpose; else only from the old purpose.
                    entry.purpose = if moved { None } else { purpose };
                    // Kept in place: its corrected values, which a restore
                    // puts on the backup's copy (an earlier end, expiry or
                    // grant must not come undone: found by review).
                    if !moved && purpose.is_none() {
                        let (from, to) = values;
                        entry.corrected_from = Some(from);
                        entry.corrected = Some(to);
                    }
                    entry
                })
                .collect();
            if !entries.is_empty() {
                ledger.append(&entries)?;
            }
        }
        self.store.rectify(corrections, actor, now)?;
        Ok(())
    }

    /// Stores one correction; returns the record before and after.
    fn apply(
        &self,
        correction: Rectification,
        actor: &str,
        now: Timestamp,
    ) -> Result<Corrected, RecordsError> {
        self.rectify(std::slice::from_ref(&correction), actor, now)?;
        let corrected = match &correction {
            Rectification::Consent { before, after, .. } => {
                tracing::info!(consent = %before.record.consent_id, number = %crate::number::mask(&after.1.number), "consent rectified");
                Corrected::of(&before.record, &after.1)
            }
            Rectification::Relationship { before, after, .. } => {
                tracing::info!(relationship = %before.record.relationship_id, number = %crate::number::mask(&after.1.number), "relationship rectified");
                Corrected::of(&before.record, &after.1)
            }
        };
        Ok(corrected)
    }

    /// The correction `request` asks for, checked against the stored
    /// relationship, first, then the same correction of the relationship's
    /// other records when it moves them (see below); nothing is changed.
    ///
    /// # Errors
    /// [`RecordsError::InvalidArgument`] naming the field, or
    /// [`RecordsError::NotFound`] when the controller holds no such relationship.
    pub fn relationship_rectification(
        &self,
        request: RelationshipCorrection,
        now: Timestamp,
    ) -> Result<Vec<Rectification>, RecordsError> {
        let id = required("relationship_id", &request.relationship_id)?;
        let controller = required("controller", &request.controller)?;
        let reason = reason(&request.reason)?;
        self.known_controller(&controller)?;
        let before = self
            .store
            .relationship_by_id(&id)?
            .filter(|stored| stored.record.controller == controller)
            .ok_or_else(|| RecordsError::NotFound {
                field: "relationship_id",
                problem: format!("no relationship {id:?} of controller {controller:?}"),
            })?;
        if request.clear_ended_at && request.ended_at.is_some() {
            return Err(invalid("ended_at", "set it or clear it, not both"));
        }
        let old = &before.record;
        let (key, mut after) = validate_relationship(
            NewRelationship {
                controller,
                number: or_kept(&request.number, &old.number),
                kind: request.kind.or(Some(old.kind)),
                started_at: request.started_at.or(Some(old.started_at)),
                ended_at: if request.clear_ended_at {
                    None
                } else {
                    request.ended_at.or(old.ended_at)
                },
                default_region: request.default_region,
            },
            now,
        )?;
        after.relationship_id = id;
        after.recorded_at = old.recorded_at;
        not_after_recording("started_at", after.started_at, old.recorded_at)?;
        if after == *old {
            return Err(invalid("relationship_id", "the correction changes nothing"));
        }
        // The relationship's other records (its end recorded as another
        // record: same number, controller, kind and start) move with it
        // when its number, kind or start is corrected: parted, an ongoing
        // record would exempt again for ever (found by review).
        let moved =
            key != before.key || after.kind != old.kind || after.started_at != old.started_at;
        let copies = if moved {
            self.store.relationship_copies(&before)?
        } else {
            Vec::new()
        };
        let mut group = Vec::with_capacity(1 + copies.len());
        for copy in copies {
            let (_, mut moved_copy) = validate_relationship(
                NewRelationship {
                    controller: copy.record.controller.clone(),
                    number: after.number.clone(),
                    kind: Some(after.kind),
                    started_at: Some(after.started_at),
                    ended_at: copy.record.ended_at,
                    default_region: String::new(),
                },
                now,
            )
            .map_err(|err| {
                invalid(
                    "relationship_id",
                    format!(
                        "its record {} (the same relationship, recorded again) cannot move with it: {err}",
                        copy.record.relationship_id
                    ),
                )
            })?;
            moved_copy.relationship_id = copy.record.relationship_id.clone();
            moved_copy.recorded_at = copy.record.recorded_at;
            not_after_recording("started_at", moved_copy.started_at, copy.record.recorded_at)?;
            group.push(Rectification::Relationship {
                before: Box::new(copy),
                after: Box::new((key, moved_copy)),
                reason: reason.clone(),
            });
        }
        group.insert(
            0,
            Rectification::Relationship {
                before: Box::new(before),
                after: Box::new((key, after)),
                reason,
            },
        );
        Ok(group)
    }

    /// Corrects a relationship; returns it before and after, as JSON.
    ///
    /// # Errors
    /// As [`Records::relationship_rectification`], or [`RecordsError::Store`].
    pub fn rectify_relationship(
        &self,
        request: RelationshipCorrection,
        actor: &str,
        now: Timestamp,
    ) -> Result<Corrected, RecordsError> {
        // The relationship first, then its other records: all or none.
        let group = self.relationship_rectification(request, now)?;
        let Some(Rectification::Relationship { before, after, .. }) = group.first() else {
            return Err(invalid("relationship_id", "no relationship to correct"));
        };
        let corrected = Corrected::of(&before.record, &after.1);
        let (id, number) = (
            before.record.relationship_id.clone(),
            crate::number::mask(&after.1.number),
        );
        self.rectify(&group, actor, now)?;
        tracing::info!(relationship = %id, number = %number, records = group.len(), "relationship rectified");
        Ok(corrected)
    }
}

/// A record cannot have begun after dialgate stored it: a later start is a
/// new record, with its own evidence.
fn not_after_recording(
    field: &'static str,
    at: Timestamp,
    recorded_at: Timestamp,
) -> Result<(), RecordsError> {
    if at.as_second() > recorded_at.as_second() + super::CLOCK_SKEW_SECONDS {
        return Err(invalid(
            field,
            format!(
                "{at} is after the record was stored ({recorded_at}): a later one is a new record, record it with its own evidence"
            ),
        ));
    }
    Ok(())
}

/// A withdrawn consent keeps what its withdrawal binds: the number and
/// the purpose, and a grant before the withdrawal (else the correction
/// would turn a withdrawn consent into one given after its withdrawal).
fn withdrawal_stands(
    old: &Consent,
    after: &Consent,
    revoked_at: Timestamp,
) -> Result<(), RecordsError> {
    let binds = |field: &'static str| {
        invalid(
            field,
            format!(
                "consent {} was withdrawn on {revoked_at}: its withdrawal binds the {field} it was recorded for; record the withdrawal for the right one with RevokeConsent",
                old.consent_id
            ),
        )
    };
    if after.number != old.number {
        return Err(binds("number"));
    }
    if after.purpose != old.purpose {
        return Err(binds("purpose"));
    }
    if after.granted_at >= revoked_at {
        return Err(invalid(
            "granted_at",
            format!(
                "{} is not before the consent's withdrawal on {revoked_at}",
                after.granted_at
            ),
        ));
    }
    Ok(())
}
