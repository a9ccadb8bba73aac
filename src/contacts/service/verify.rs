//! Verified data-subject requests: who checked the requester's identity,
//! how and when, before an export (art. 15/20) or an erasure (art. 17)
//! is served. The reference goes to the change trail with the request.

use jiff::Timestamp;
use serde::Serialize;

use super::{CLOCK_SKEW_SECONDS, Records, RecordsError, check_id, check_text, invalid};

/// Who verified the identity of the person asking, how and when.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Verification {
    /// The person or system that checked (an agent id, a team).
    pub verified_by: String,
    /// How (identity document, logged-in account, call-back to the number...).
    pub method: String,
    pub verified_at: Option<Timestamp>,
    /// The case or ticket that holds the proof (optional).
    pub reference: String,
}

impl Records {
    /// The verification of a request as the trail keeps it (`null` when
    /// none was given and none is required).
    ///
    /// # Errors
    /// [`RecordsError::InvalidArgument`] naming the field: a verification
    /// missing while required, incomplete, in the future or too old.
    pub(super) fn verification(
        &self,
        given: Option<Verification>,
        now: Timestamp,
    ) -> Result<serde_json::Value, RecordsError> {
        let Some(given) = given else {
            if self.subject_requests.require_verification {
                return Err(invalid(
                    "verification",
                    "required: say who verified the requester's identity, how and when (subject_requests.require_verification)",
                ));
            }
            return Ok(serde_json::Value::Null);
        };
        check_id("verification.verified_by", given.verified_by.trim())?;
        if given.verified_by.trim().is_empty() {
            return Err(invalid(
                "verification.verified_by",
                "must say who verified the requester's identity",
            ));
        }
        check_text("verification.method", &given.method)?;
        if given.method.trim().is_empty() {
            return Err(invalid(
                "verification.method",
                "must say how the identity was verified",
            ));
        }
        check_text("verification.reference", &given.reference)?;
        let at = given
            .verified_at
            .ok_or_else(|| invalid("verification.verified_at", "must be set"))?;
        if at.as_second() > now.as_second() + CLOCK_SKEW_SECONDS {
            return Err(invalid(
                "verification.verified_at",
                format!("{at} is in the future"),
            ));
        }
        let max_days = i64::from(self.subject_requests.verification_max_age_days);
        if at.as_second() < now.as_second() - max_days * 86_400 {
            return Err(invalid(
                "verification.verified_at",
                format!(
                    "{at} is more than {max_days} days ago (subject_requests.verification_max_age_days): verify again"
                ),
            ));
        }
        Ok(serde_json::to_value(&given).unwrap_or_default())
    }
}
