//! The contact-records service: validates CRM requests and stores consents
//! and opt-outs. A bad request changes nothing and names the bad field.

use std::sync::Arc;

use jiff::Timestamp;

use crate::contacts::{Consent, ContactStore, StoreError, Suppression};
use crate::model::Purpose;
use crate::number::{self, Normalized, Region};

/// Why a contact-records request failed.
#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    #[error("{field}: {problem}")]
    InvalidArgument {
        field: &'static str,
        problem: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(field: &'static str, problem: impl Into<String>) -> RecordsError {
    RecordsError::InvalidArgument {
        field,
        problem: problem.into(),
    }
}

/// A consent to record.
#[derive(Debug, Clone, Default)]
pub struct NewConsent {
    pub controller: String,
    pub number: String,
    pub purpose: Option<Purpose>,
    pub granted_at: Option<Timestamp>,
    pub source: String,
    pub evidence_ref: String,
    pub default_region: String,
}

/// A revocation to record.
#[derive(Debug, Clone, Default)]
pub struct Revocation {
    pub controller: String,
    pub number: String,
    /// `None` = every purpose.
    pub purpose: Option<Purpose>,
    pub revoked_at: Option<Timestamp>,
    pub default_region: String,
}

/// An opt-out to record.
#[derive(Debug, Clone, Default)]
pub struct NewSuppression {
    /// Empty = every controller.
    pub controller: String,
    pub number: String,
    pub reason: String,
    pub source: String,
    pub default_region: String,
}

/// The contact-records service.
#[derive(Debug, Clone)]
pub struct Records {
    store: Arc<ContactStore>,
}

/// How far ahead of the server clock a client timestamp may be (clock skew).
const CLOCK_SKEW_SECONDS: i64 = 60;

impl Records {
    pub fn new(store: Arc<ContactStore>) -> Records {
        Records { store }
    }

    /// Records a consent; returns its id.
    ///
    /// # Errors
    /// [`RecordsError::InvalidArgument`] naming the field; nothing is stored.
    pub fn record_consent(
        &self,
        request: NewConsent,
        now: Timestamp,
    ) -> Result<String, RecordsError> {
        let controller = required("controller", &request.controller)?;
        let number = parse_number(&request.number, &request.default_region)?;
        let purpose = request
            .purpose
            .ok_or_else(|| invalid("purpose", "must be specified"))?;
        let granted_at = request
            .granted_at
            .ok_or_else(|| invalid("granted_at", "must be set"))?;
        not_in_future("granted_at", granted_at, now)?;
        if request.source.trim().is_empty() {
            return Err(invalid(
                "source",
                "must say where the consent was collected",
            ));
        }
        let consent = Consent {
            consent_id: uuid::Uuid::now_v7().to_string(),
            controller,
            number: number.e164.clone(),
            purpose,
            granted_at,
            revoked_at: None,
            source: request.source,
            evidence_ref: request.evidence_ref,
            recorded_at: now,
        };
        let id = consent.consent_id.clone();
        self.store.record_consent(number.key, consent)?;
        tracing::info!(consent = %id, number = %number::mask(&number.e164), "consent recorded");
        Ok(id)
    }

    /// Ends consents; returns how many it ended.
    ///
    /// # Errors
    /// [`RecordsError::InvalidArgument`] naming the field; nothing is changed.
    pub fn revoke_consent(&self, request: Revocation, now: Timestamp) -> Result<u32, RecordsError> {
        let controller = required("controller", &request.controller)?;
        let number = parse_number(&request.number, &request.default_region)?;
        let revoked_at = request.revoked_at.unwrap_or(now);
        not_in_future("revoked_at", revoked_at, now)?;
        let revoked =
            self.store
                .revoke_consents(number.key, &controller, request.purpose, revoked_at)?;
        tracing::info!(revoked, number = %number::mask(&number.e164), "consents revoked");
        Ok(revoked)
    }

    /// Records an opt-out; returns its id.
    ///
    /// # Errors
    /// [`RecordsError::InvalidArgument`] naming the field; nothing is stored.
    pub fn add_suppression(
        &self,
        request: NewSuppression,
        now: Timestamp,
    ) -> Result<String, RecordsError> {
        let number = parse_number(&request.number, &request.default_region)?;
        let suppression = Suppression {
            suppression_id: uuid::Uuid::now_v7().to_string(),
            controller: request.controller.trim().to_string(),
            number: number.e164.clone(),
            reason: request.reason,
            source: request.source,
            created_at: now,
        };
        let id = suppression.suppression_id.clone();
        self.store.add_suppression(number.key, suppression)?;
        tracing::info!(suppression = %id, number = %number::mask(&number.e164), "opt-out recorded");
        Ok(id)
    }
}

fn required(field: &'static str, value: &str) -> Result<String, RecordsError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    Ok(value.to_string())
}

fn not_in_future(field: &'static str, at: Timestamp, now: Timestamp) -> Result<(), RecordsError> {
    if at.as_second() > now.as_second() + CLOCK_SKEW_SECONDS {
        return Err(invalid(field, format!("{at} is in the future")));
    }
    Ok(())
}

fn parse_number(input: &str, default_region: &str) -> Result<Normalized, RecordsError> {
    let result = if default_region.trim().is_empty() {
        if !input.trim_start().starts_with('+') {
            return Err(invalid(
                "number",
                format!("{input:?} has no country code and no default_region was given"),
            ));
        }
        number::normalize_international(input)
    } else {
        let region = Region::parse(default_region).ok_or_else(|| {
            invalid(
                "default_region",
                format!("{default_region:?} is not a known region"),
            )
        })?;
        number::normalize_any(input, region)
    };
    result.map_err(|err| invalid("number", format!("{input:?}: {err}")))
}
