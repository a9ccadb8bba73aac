//! Contact records: consents, customer relationships and opt-outs
//! (suppressions), stored durably in SQLite and indexed in memory by number
//! so the decision path never touches the database. A record is durable
//! before it takes effect, and takes effect for the very next check.
//!
//! Erasure (GDPR art. 17) deletes consents and relationships but keeps the
//! number suppressed: the opt-out then survives under a salted hash of the
//! number only, so the person is not called again and the raw number is not
//! kept where it need not be. What is kept, and why, is
//! [`KEPT_AFTER_ERASURE`], returned with every erasure.

mod presence;
mod store;

use std::sync::atomic::{AtomicBool, Ordering};

use dashmap::DashMap;
use jiff::Timestamp;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::model::Purpose;
use crate::number::{ByNumber, NumberKey};
use presence::Presence;
pub use store::{ChangeEvent, ContactStore, StoreError, SubjectRecords, database_path};

/// What an erasure keeps, each with its legal ground and how long; every
/// other record of the subject (consents, relationships, registry
/// observations, the evidence in the change trail) is deleted.
pub const KEPT_AFTER_ERASURE: [&str; 3] = [
    "opt-out: a suppression under a salted hash of the number (no raw number), used only      to avoid calling it again; ground: GDPR art. 17(3)(b) and 21(3) (the objection must be      honoured), ICO and CAP 10.10 suppression guidance; kept without expiry",
    "decision log: every CheckCall decision about the number, with the number, as the      record of each dial decision; ground: GDPR art. 17(3)(b) and (e), US TSR 16 CFR      310.5 (5 years), DE UWG §7a; kept for log.retention_days (default 1826 days), then      removed by audit purge",
    "change trail: the time, actor and kind of each change to the subject's records, with      their contents (evidence, sources, dates) removed; ground: GDPR art. 5(2)      accountability; kept as long as the trail",
];

/// A consent to be called by one controller for one purpose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Consent {
    pub consent_id: String,
    pub controller: String,
    pub number: String,
    pub purpose: Purpose,
    pub granted_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
    pub expires_at: Option<Timestamp>,
    pub source: String,
    pub method: String,
    pub notice_version: String,
    pub evidence_ref: String,
    pub recorded_at: Timestamp,
}

impl Consent {
    /// Whether the consent is in force at `at`.
    pub fn valid_at(&self, at: Timestamp) -> bool {
        self.granted_at <= at
            && self.revoked_at.is_none_or(|r| at < r)
            && self.expires_at.is_none_or(|e| at < e)
    }
}

/// Kind of a customer relationship.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RelationshipKind {
    /// A contract or purchase; `ended_at` is the last purchase, delivery or payment.
    Customer,
    /// An inquiry or application by the person.
    Inquiry,
}

impl RelationshipKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RelationshipKind::Customer => "customer",
            RelationshipKind::Inquiry => "inquiry",
        }
    }
}

/// A relationship between a controller and the holder of a number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Relationship {
    pub relationship_id: String,
    pub controller: String,
    pub number: String,
    pub kind: RelationshipKind,
    pub started_at: Timestamp,
    /// `None` = ongoing.
    pub ended_at: Option<Timestamp>,
    pub recorded_at: Timestamp,
}

/// An opt-out: the number must not be called by `controller` (empty = anyone),
/// optionally only for one campaign, optionally until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Suppression {
    pub suppression_id: String,
    pub controller: String,
    pub campaign_id: String,
    /// Empty once the subject has been erased (kept by salted hash only).
    pub number: String,
    pub reason: String,
    pub source: String,
    pub added_by: String,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
}

impl Suppression {
    /// Whether the opt-out binds this controller and campaign at `at`.
    pub fn applies_to(&self, controller: &str, campaign_id: &str, at: Timestamp) -> bool {
        (self.controller.is_empty() || self.controller == controller)
            && (self.campaign_id.is_empty() || self.campaign_id == campaign_id)
            && self.expires_at.is_none_or(|e| at < e)
    }
}

/// What is held about one number, as the rules see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContactView {
    pub consents: Vec<Consent>,
    pub relationships: Vec<Relationship>,
    pub suppressions: Vec<Suppression>,
}

/// A salted hash of an E.164 number, for records that must not keep it.
pub type SubjectHash = [u8; 32];

/// In-memory index of the contact records, by number.
#[derive(Debug)]
pub struct ContactIndex {
    salt: [u8; 32],
    /// Consents, relationships and opt-outs by number: one lookup per check.
    records: ByNumber<ContactView>,
    /// The numbers `records` may hold: most checks end here, lock-free.
    present: Presence,
    /// Opt-outs of erased subjects, by salted hash of the number.
    erased: DashMap<SubjectHash, Vec<Suppression>>,
    /// Whether `erased` holds anything: then (only) each check pays for the
    /// salted hash of its number.
    any_erased: AtomicBool,
}

impl ContactIndex {
    fn new(salt: [u8; 32]) -> ContactIndex {
        ContactIndex {
            salt,
            records: ByNumber::default(),
            present: Presence::default(),
            erased: DashMap::new(),
            any_erased: AtomicBool::new(false),
        }
    }

    /// The salted hash of an E.164 number.
    pub fn subject_hash(&self, e164: &str) -> SubjectHash {
        let mut hasher = Sha256::new();
        hasher.update(self.salt);
        hasher.update(e164.as_bytes());
        hasher.finalize().into()
    }

    /// Everything held about a number (usually nothing: no allocation then).
    pub fn view(&self, key: NumberKey, e164: &str) -> ContactView {
        let mut view = if self.present.may_contain(key) {
            self.records
                .get(&key)
                .map(|v| v.clone())
                .unwrap_or_default()
        } else {
            ContactView::default()
        };
        if self.any_erased.load(Ordering::Acquire)
            && let Some(hashed) = self.erased.get(&self.subject_hash(e164))
        {
            view.suppressions.extend(hashed.iter().cloned());
        }
        view
    }

    pub(crate) fn put_consent(&self, key: NumberKey, consent: Consent) {
        self.present.insert(key);
        self.records.entry(key).or_default().consents.push(consent);
    }

    pub(crate) fn put_relationship(&self, key: NumberKey, relationship: Relationship) {
        self.present.insert(key);
        self.records
            .entry(key)
            .or_default()
            .relationships
            .push(relationship);
    }

    pub(crate) fn put_suppression(&self, key: NumberKey, suppression: Suppression) {
        self.present.insert(key);
        self.records
            .entry(key)
            .or_default()
            .suppressions
            .push(suppression);
    }

    pub(crate) fn put_erased(&self, hash: SubjectHash, suppression: Suppression) {
        self.erased.entry(hash).or_default().push(suppression);
        self.any_erased.store(true, Ordering::Release);
    }

    pub(crate) fn revoke(
        &self,
        key: NumberKey,
        controller: &str,
        purpose: Option<Purpose>,
        at: Timestamp,
    ) {
        if let Some(mut records) = self.records.get_mut(&key) {
            for consent in records.consents.iter_mut() {
                if consent.controller == controller
                    && purpose.is_none_or(|p| p == consent.purpose)
                    && consent.revoked_at.is_none_or(|r| r > at)
                {
                    consent.revoked_at = Some(at);
                }
            }
        }
    }

    /// Forgets consents and relationships of `controller` (empty = all) and
    /// moves the matching opt-outs to the hash-only index.
    pub(crate) fn erase(&self, key: NumberKey, hash: SubjectHash, controller: &str) {
        let in_scope = |c: &str| controller.is_empty() || c == controller;
        if let Some(mut records) = self.records.get_mut(&key) {
            records.consents.retain(|c| !in_scope(&c.controller));
            records.relationships.retain(|r| !in_scope(&r.controller));
            let (moved, kept): (Vec<_>, Vec<_>) = records
                .suppressions
                .drain(..)
                .partition(|s| in_scope(&s.controller));
            records.suppressions = kept;
            for mut suppression in moved {
                suppression.number.clear();
                self.put_erased(hash, suppression);
            }
        }
    }
}
