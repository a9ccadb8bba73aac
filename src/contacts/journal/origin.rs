//! Changes made on this replica (the ContactRecords API): each becomes one
//! journal entry, committed before it is acknowledged, then applied here
//! as every other replica applies it. Called from blocking threads.

use jiff::Timestamp;

use super::entry::{
    self, ConsentBody, EraseBody, RecordRow, RelationshipBody, RevokeBody, SuppressionBody,
};
use super::{Journal, JournalError, Outcome};
use crate::contacts::{Consent, Relationship, Suppression};
use crate::model::Purpose;

fn json(body: &impl serde::Serialize) -> String {
    serde_json::to_string(body).unwrap_or_default()
}

impl Journal {
    fn subject(&self, e164: &str) -> String {
        hex::encode(self.store.index().subject_hash(e164))
    }

    fn one(&self, row: RecordRow) -> Result<Outcome, JournalError> {
        self.commit(entry::RECORDS, serde_json::json!({}), vec![row], None, None)
    }

    /// Records a consent everywhere; false when its id was already stored.
    ///
    /// # Errors
    /// [`JournalError`]: the consent was not recorded.
    pub fn record_consent(&self, consent: &Consent, actor: &str) -> Result<bool, JournalError> {
        let row = RecordRow {
            kind: entry::CONSENT,
            record_id: consent.consent_id.clone(),
            subject: self.subject(&consent.number),
            controller: consent.controller.clone(),
            body: json(&ConsentBody::new(consent, actor)),
            restrictive: consent.revoked_at.is_some(),
        };
        Ok(matches!(self.one(row)?, Outcome::Inserted(true)))
    }

    /// Records an opt-out everywhere; false when its id was already stored.
    ///
    /// # Errors
    /// [`JournalError`]: the opt-out was not recorded.
    pub fn add_suppression(&self, suppression: &Suppression) -> Result<bool, JournalError> {
        let row = RecordRow {
            kind: entry::SUPPRESSION,
            record_id: suppression.suppression_id.clone(),
            subject: self.subject(&suppression.number),
            controller: suppression.controller.clone(),
            body: json(&SuppressionBody::new(suppression)),
            restrictive: true,
        };
        Ok(matches!(self.one(row)?, Outcome::Inserted(true)))
    }

    /// Records a relationship everywhere; false when its id was already stored.
    ///
    /// # Errors
    /// [`JournalError`]: the relationship was not recorded.
    pub fn record_relationship(
        &self,
        relationship: &Relationship,
        actor: &str,
    ) -> Result<bool, JournalError> {
        let row = RecordRow {
            kind: entry::RELATIONSHIP,
            record_id: relationship.relationship_id.clone(),
            subject: self.subject(&relationship.number),
            controller: relationship.controller.clone(),
            body: json(&RelationshipBody::new(relationship, actor)),
            restrictive: true,
        };
        Ok(matches!(self.one(row)?, Outcome::Inserted(true)))
    }

    /// Ends consents everywhere; returns how many ended here.
    ///
    /// # Errors
    /// [`JournalError`]: nothing was changed.
    pub fn revoke_consents(
        &self,
        e164: &str,
        controller: &str,
        purpose: Option<Purpose>,
        at: Timestamp,
        actor: &str,
    ) -> Result<u32, JournalError> {
        let body = RevokeBody {
            number: e164.to_string(),
            controller: controller.to_string(),
            purpose: purpose.map(|p| p.as_str().to_string()),
            revoked_at_us: at.as_microsecond(),
            now_us: Timestamp::now().as_microsecond(),
            actor: actor.to_string(),
            marker_seed: crate::clock::time_ordered_uuid().to_string(),
        };
        let row = RecordRow {
            kind: entry::REVOKE,
            record_id: body.marker_seed.clone(),
            subject: self.subject(e164),
            controller: controller.to_string(),
            body: json(&body),
            restrictive: true,
        };
        match self.one(row)? {
            Outcome::Count(ended) => Ok(ended),
            _ => Ok(0),
        }
    }

    /// Erases a subject everywhere (the journal keeps its opt-outs by
    /// hash only and loses its other records); returns how many records
    /// were erased here.
    ///
    /// # Errors
    /// [`JournalError`]: nothing was changed.
    pub fn erase(
        &self,
        e164: &str,
        controller: &str,
        actor: &str,
        now: Timestamp,
        verification: &serde_json::Value,
    ) -> Result<u32, JournalError> {
        let subject = self.subject(e164);
        let body = EraseBody {
            subject: subject.clone(),
            controller: controller.to_string(),
            keep_id: crate::clock::time_ordered_uuid().to_string(),
            now_us: now.as_microsecond(),
            actor: actor.to_string(),
            verification: verification.clone(),
        };
        let body = serde_json::to_value(&body).unwrap_or_default();
        match self.commit(
            entry::ERASE,
            body,
            Vec::new(),
            Some((subject, controller.to_string())),
            Some(e164.to_string()),
        )? {
            Outcome::Count(erased) => Ok(erased),
            _ => Ok(0),
        }
    }
}
