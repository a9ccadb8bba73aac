//! Contact records: consents and opt-outs (suppressions), stored durably in
//! SQLite and indexed in memory by number so the decision path never touches
//! the database. A record is durable before it takes effect, and takes effect
//! for the very next check.

mod store;

use dashmap::DashMap;
use jiff::Timestamp;
use serde::Serialize;

use crate::model::Purpose;
use crate::number::NumberKey;
pub use store::{ContactStore, StoreError};

/// A consent to be called by one controller for one purpose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Consent {
    pub consent_id: String,
    pub controller: String,
    pub number: String,
    pub purpose: Purpose,
    pub granted_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
    pub source: String,
    pub evidence_ref: String,
    pub recorded_at: Timestamp,
}

impl Consent {
    /// Whether the consent is in force at `at`.
    pub fn valid_at(&self, at: Timestamp) -> bool {
        self.granted_at <= at && self.revoked_at.is_none_or(|r| at < r)
    }
}

/// An opt-out: the number must not be called by `controller` (empty = anyone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Suppression {
    pub suppression_id: String,
    pub controller: String,
    pub number: String,
    pub reason: String,
    pub source: String,
    pub created_at: Timestamp,
}

impl Suppression {
    /// Whether the opt-out binds `controller`.
    pub fn applies_to(&self, controller: &str) -> bool {
        self.controller.is_empty() || self.controller == controller
    }
}

/// What is held about one number, as the rules see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContactView {
    pub consents: Vec<Consent>,
    pub suppressions: Vec<Suppression>,
}

/// In-memory index of the contact records, by number.
#[derive(Debug, Default)]
pub struct ContactIndex {
    consents: DashMap<NumberKey, Vec<Consent>>,
    suppressions: DashMap<NumberKey, Vec<Suppression>>,
}

impl ContactIndex {
    /// Everything held about a number (usually nothing: no allocation then).
    pub fn view(&self, key: NumberKey) -> ContactView {
        ContactView {
            consents: self
                .consents
                .get(&key)
                .map(|v| v.clone())
                .unwrap_or_default(),
            suppressions: self
                .suppressions
                .get(&key)
                .map(|v| v.clone())
                .unwrap_or_default(),
        }
    }

    pub(crate) fn put_consent(&self, key: NumberKey, consent: Consent) {
        self.consents.entry(key).or_default().push(consent);
    }

    pub(crate) fn put_suppression(&self, key: NumberKey, suppression: Suppression) {
        self.suppressions.entry(key).or_default().push(suppression);
    }

    pub(crate) fn revoke(
        &self,
        key: NumberKey,
        controller: &str,
        purpose: Option<Purpose>,
        at: Timestamp,
    ) {
        if let Some(mut consents) = self.consents.get_mut(&key) {
            for consent in consents.iter_mut() {
                if consent.controller == controller
                    && purpose.is_none_or(|p| p == consent.purpose)
                    && consent.revoked_at.is_none_or(|r| r > at)
                {
                    consent.revoked_at = Some(at);
                }
            }
        }
    }

    /// Number of numbers with consents and with suppressions.
    pub fn sizes(&self) -> (usize, usize) {
        (self.consents.len(), self.suppressions.len())
    }
}
