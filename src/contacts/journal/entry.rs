//! The rows of the shared journal as stored in PostgreSQL: every value the
//! origin chose (ids, instants), so that applying an entry is the same
//! change on every replica. Read back, a value that does not parse is an
//! error ([`super::JournalError::Corrupt`]), never a default.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::contacts::{Consent, Relationship, RelationshipKind, Suppression};
use crate::model::Purpose;

/// `contact_journal.kind`: one change made through the API.
pub(super) const RECORDS: &str = "records";
/// `contact_journal.kind`: a bulk import (its records in many rows).
pub(super) const IMPORT: &str = "import";
/// `contact_journal.kind`: an erasure (by the number's salted hash only).
pub(super) const ERASE: &str = "erase";
/// `contact_journal.kind` and `contact_journal_records.kind`: a registry's
/// answers that numbers are opposed (one row per number).
pub(super) const OPPOSED: &str = "opposed";

/// `contact_journal_records.kind` values.
pub(super) const CONSENT: &str = "consent";
pub(super) const SUPPRESSION: &str = "suppression";
/// An opt-out whose number an erasure removed: kept by the salted hash.
pub(super) const SUPPRESSION_HASHED: &str = "suppression_hashed";
pub(super) const RELATIONSHIP: &str = "relationship";
pub(super) const REVOKE: &str = "revoke";

/// A record's row: its kind, id, subject (hex salted hash), controller and
/// JSON body (the fields below).
#[derive(Debug, Clone)]
pub(super) struct RecordRow {
    pub kind: &'static str,
    pub record_id: String,
    pub subject: String,
    pub controller: String,
    pub body: String,
    /// Whether missing it could let a call through (all but a consent that
    /// is not withdrawn: a missing consent only denies).
    pub restrictive: bool,
}

fn micros(t: Timestamp) -> i64 {
    t.as_microsecond()
}

fn instant(field: &str, us: i64) -> Result<Timestamp, String> {
    Timestamp::from_microsecond(us).map_err(|_| format!("{field} {us} is not an instant"))
}

fn optional_instant(field: &str, us: Option<i64>) -> Result<Option<Timestamp>, String> {
    us.map(|us| instant(field, us)).transpose()
}

fn purpose(text: &str) -> Result<Purpose, String> {
    Purpose::from_config(text).ok_or_else(|| format!("purpose {text:?} is not a known purpose"))
}

/// A consent, with who recorded it.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct ConsentBody {
    pub consent_id: String,
    pub controller: String,
    pub number: String,
    pub purpose: String,
    pub granted_at_us: i64,
    pub revoked_at_us: Option<i64>,
    pub expires_at_us: Option<i64>,
    pub source: String,
    pub supplier: String,
    pub method: String,
    pub notice_version: String,
    pub evidence_ref: String,
    pub recorded_at_us: i64,
    pub actor: String,
}

impl ConsentBody {
    pub fn new(consent: &Consent, actor: &str) -> ConsentBody {
        ConsentBody {
            consent_id: consent.consent_id.clone(),
            controller: consent.controller.clone(),
            number: consent.number.clone(),
            purpose: consent.purpose.as_str().to_string(),
            granted_at_us: micros(consent.granted_at),
            revoked_at_us: consent.revoked_at.map(micros),
            expires_at_us: consent.expires_at.map(micros),
            source: consent.source.clone(),
            supplier: consent.supplier.clone(),
            method: consent.method.clone(),
            notice_version: consent.notice_version.clone(),
            evidence_ref: consent.evidence_ref.clone(),
            recorded_at_us: micros(consent.recorded_at),
            actor: actor.to_string(),
        }
    }

    pub fn consent(self) -> Result<(Consent, String), String> {
        Ok((
            Consent {
                purpose: purpose(&self.purpose)?,
                granted_at: instant("granted_at_us", self.granted_at_us)?,
                revoked_at: optional_instant("revoked_at_us", self.revoked_at_us)?,
                expires_at: optional_instant("expires_at_us", self.expires_at_us)?,
                recorded_at: instant("recorded_at_us", self.recorded_at_us)?,
                consent_id: self.consent_id,
                controller: self.controller,
                number: self.number,
                source: self.source,
                supplier: self.supplier,
                method: self.method,
                notice_version: self.notice_version,
                evidence_ref: self.evidence_ref,
            },
            self.actor,
        ))
    }
}

/// An opt-out (its number empty once erased: then kept by hash).
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct SuppressionBody {
    pub suppression_id: String,
    pub controller: String,
    pub campaign_id: String,
    #[serde(default)]
    pub number: String,
    pub reason: String,
    pub source: String,
    pub added_by: String,
    pub created_at_us: i64,
    pub expires_at_us: Option<i64>,
}

impl SuppressionBody {
    pub fn new(suppression: &Suppression) -> SuppressionBody {
        SuppressionBody {
            suppression_id: suppression.suppression_id.clone(),
            controller: suppression.controller.clone(),
            campaign_id: suppression.campaign_id.clone(),
            number: suppression.number.clone(),
            reason: suppression.reason.clone(),
            source: suppression.source.clone(),
            added_by: suppression.added_by.clone(),
            created_at_us: micros(suppression.created_at),
            expires_at_us: suppression.expires_at.map(micros),
        }
    }

    pub fn suppression(self) -> Result<Suppression, String> {
        Ok(Suppression {
            created_at: instant("created_at_us", self.created_at_us)?,
            expires_at: optional_instant("expires_at_us", self.expires_at_us)?,
            suppression_id: self.suppression_id,
            controller: self.controller,
            campaign_id: self.campaign_id,
            number: self.number,
            reason: self.reason,
            source: self.source,
            added_by: self.added_by,
        })
    }
}

/// A relationship, with who recorded it.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct RelationshipBody {
    pub relationship_id: String,
    pub controller: String,
    pub number: String,
    pub kind: String,
    pub started_at_us: i64,
    pub ended_at_us: Option<i64>,
    pub recorded_at_us: i64,
    pub actor: String,
}

impl RelationshipBody {
    pub fn new(relationship: &Relationship, actor: &str) -> RelationshipBody {
        RelationshipBody {
            relationship_id: relationship.relationship_id.clone(),
            controller: relationship.controller.clone(),
            number: relationship.number.clone(),
            kind: relationship.kind.as_str().to_string(),
            started_at_us: micros(relationship.started_at),
            ended_at_us: relationship.ended_at.map(micros),
            recorded_at_us: micros(relationship.recorded_at),
            actor: actor.to_string(),
        }
    }

    pub fn relationship(self) -> Result<(Relationship, String), String> {
        let kind = RelationshipKind::parse(&self.kind)
            .ok_or_else(|| format!("relationship kind {:?} is not known", self.kind))?;
        Ok((
            Relationship {
                kind,
                started_at: instant("started_at_us", self.started_at_us)?,
                ended_at: optional_instant("ended_at_us", self.ended_at_us)?,
                recorded_at: instant("recorded_at_us", self.recorded_at_us)?,
                relationship_id: self.relationship_id,
                controller: self.controller,
                number: self.number,
            },
            self.actor,
        ))
    }
}

/// A withdrawal of consents, at the instant the origin chose.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct RevokeBody {
    pub number: String,
    pub controller: String,
    pub purpose: Option<String>,
    pub revoked_at_us: i64,
    pub now_us: i64,
    pub actor: String,
    /// Names the withdrawal markers the same on every replica.
    pub marker_seed: String,
}

/// A withdrawal, read back.
pub(super) struct Revoke {
    pub number: String,
    pub controller: String,
    pub purpose: Option<Purpose>,
    pub at: Timestamp,
    pub now: Timestamp,
    pub actor: String,
    pub marker_seed: String,
}

impl RevokeBody {
    pub fn revoke(self) -> Result<Revoke, String> {
        Ok(Revoke {
            purpose: self.purpose.as_deref().map(purpose).transpose()?,
            at: instant("revoked_at_us", self.revoked_at_us)?,
            now: instant("now_us", self.now_us)?,
            number: self.number,
            controller: self.controller,
            actor: self.actor,
            marker_seed: self.marker_seed,
        })
    }
}

/// An erasure: the subject by salted hash only.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct EraseBody {
    pub subject: String,
    pub controller: String,
    pub keep_id: String,
    pub now_us: i64,
    pub actor: String,
    pub verification: serde_json::Value,
}

/// Registry answers "opposed" (the entry's body).
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct OpposedBody {
    pub registry_id: String,
    pub controller: String,
    pub at_us: i64,
}

/// A bulk import's trail event.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct ImportBody {
    pub actor: String,
    pub action: String,
    pub now_us: i64,
    pub records: u64,
}

pub(super) fn ts(field: &str, us: i64) -> Result<Timestamp, String> {
    instant(field, us)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consent_body() -> ConsentBody {
        ConsentBody {
            consent_id: "c-1".into(),
            controller: "acme".into(),
            number: "+390212345678".into(),
            purpose: "marketing".into(),
            granted_at_us: 1_700_000_000_000_000,
            revoked_at_us: None,
            expires_at_us: None,
            source: "web".into(),
            supplier: String::new(),
            method: "m".into(),
            notice_version: "v".into(),
            evidence_ref: "e".into(),
            recorded_at_us: 1_700_000_000_000_000,
            actor: "t".into(),
        }
    }

    /// A journal row read back with a value this version does not know is
    /// an error naming it, never a default that could grant.
    #[test]
    fn test_unknown_values_are_errors() {
        let (consent, actor) = consent_body().consent().unwrap();
        assert_eq!((consent.purpose, actor.as_str()), (Purpose::Marketing, "t"));
        let mut body = consent_body();
        body.purpose = "telepathy".into();
        assert!(body.consent().unwrap_err().contains("telepathy"));
        let mut body = consent_body();
        body.granted_at_us = i64::MAX;
        assert!(body.consent().unwrap_err().contains("granted_at_us"));
        let relationship = RelationshipBody {
            relationship_id: "r".into(),
            controller: "acme".into(),
            number: "+390212345678".into(),
            kind: "cousin".into(),
            started_at_us: 0,
            ended_at_us: None,
            recorded_at_us: 0,
            actor: "t".into(),
        };
        assert!(relationship.relationship().unwrap_err().contains("cousin"));
        let revoke = RevokeBody {
            number: "+390212345678".into(),
            controller: "acme".into(),
            purpose: Some("all of them".into()),
            revoked_at_us: 0,
            now_us: 0,
            actor: "t".into(),
            marker_seed: "s".into(),
        };
        assert!(revoke.revoke().is_err());
        assert!(serde_json::from_str::<SuppressionBody>("{\"suppression_id\": 1}").is_err());
    }

    /// A consent body round-trips every value the origin chose.
    #[test]
    fn test_a_consent_round_trips() {
        let (consent, _) = consent_body().consent().unwrap();
        let text = serde_json::to_string(&ConsentBody::new(&consent, "t")).unwrap();
        let (again, _) = serde_json::from_str::<ConsentBody>(&text)
            .unwrap()
            .consent()
            .unwrap();
        assert_eq!(again, consent);
    }
}
