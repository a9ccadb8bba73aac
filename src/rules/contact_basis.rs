//! Rules on the contact records of the called number: opt-outs and consents.

use jiff::Timestamp;

use crate::contacts::{Consent, ContactView};
use crate::model::{Purpose, Reason, ReasonCode};

/// `SUPPRESSED` when an opt-out binds the controller (or every controller).
pub fn suppression(view: &ContactView, controller: &str) -> Option<Reason> {
    view.suppressions
        .iter()
        .find(|s| s.applies_to(controller))
        .map(|s| {
            let scope = if s.controller.is_empty() {
                "every controller"
            } else {
                s.controller.as_str()
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

/// The consent in force at `now` for this controller and purpose, if any.
pub fn valid_consent<'a>(
    view: &'a ContactView,
    controller: &str,
    purpose: Purpose,
    now: Timestamp,
) -> Option<&'a Consent> {
    view.consents
        .iter()
        .filter(|c| c.controller == controller && c.purpose == purpose && c.valid_at(now))
        .max_by_key(|c| c.granted_at)
}
