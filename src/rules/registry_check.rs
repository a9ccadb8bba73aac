//! The registry rule: the number must be covered by fresh registry data that
//! does not list it (block-lists) or clears it for the controller
//! (allow-lists). No data, no coverage or old data is a DENY: a registry
//! never gives a false "clear".

use jiff::Timestamp;

use super::RegistryData;
use crate::config::RegistryKind;
use crate::model::{Reason, ReasonCode};
use crate::number::Normalized;
use crate::registry::snapshot::BlockLookup;
use crate::registry::stale_from;
use crate::registry::texts::stale_text;

/// What one registry says about a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryOutcome {
    /// `Ok(REGISTRY_CLEAR)` or every deny reason that applies.
    pub result: Result<Reason, Vec<Reason>>,
    /// `registry@version`, or `registry@none` without data.
    pub version: String,
}

/// Checks a number against one registry at `now`, for `controller`.
pub fn check_registry(
    registry: &RegistryData<'_>,
    called: &Normalized,
    controller: &str,
    now: Timestamp,
) -> RegistryOutcome {
    let id = &registry.config.id;
    let Some(snapshot) = &registry.snapshot else {
        return RegistryOutcome {
            result: Err(vec![Reason::new(
                ReasonCode::RegistryUnavailable,
                format!("registry {id} has no snapshot loaded"),
            )]),
            version: format!("{id}@none"),
        };
    };
    let valid_days = registry.config.valid_days;
    let texts = snapshot.texts(id, valid_days);
    let version = texts.version_label.clone();
    let result = match registry.config.kind {
        RegistryKind::Blocklist => match snapshot.block_lookup(&called.e164[1..], called.key) {
            BlockLookup::NotCovered => Err(vec![Reason::new(
                ReasonCode::RegistryNotCovered,
                texts.not_covered.clone(),
            )]),
            lookup => {
                let mut denies = Vec::new();
                match &texts.stale {
                    None => denies.push(Reason::new(
                        ReasonCode::RegistryUnavailable,
                        texts.undated.clone(),
                    )),
                    Some((until, text)) if now >= *until => {
                        denies.push(Reason::new(ReasonCode::RegistryStale, text.clone()));
                    }
                    Some(_) => {}
                }
                if lookup == BlockLookup::Listed {
                    denies.push(Reason::new(
                        ReasonCode::RegistryListed,
                        texts.listed.clone(),
                    ));
                }
                if denies.is_empty() {
                    Ok(Reason::new(ReasonCode::RegistryClear, texts.clear.clone()))
                } else {
                    Err(denies)
                }
            }
        },
        RegistryKind::Allowlist => match snapshot.clearance(controller, called.key) {
            None => Err(vec![Reason::new(
                ReasonCode::RegistryNotCovered,
                format!(
                    "never cleared for controller {controller} in registry {id} v{}",
                    snapshot.version
                ),
            )]),
            Some(checked_at) if now >= stale_from(checked_at, valid_days) => {
                let until = stale_from(checked_at, valid_days);
                Err(vec![Reason::new(
                    ReasonCode::RegistryStale,
                    stale_text(id, checked_at, until, valid_days),
                )])
            }
            Some(checked_at) => Ok(Reason::new(
                ReasonCode::RegistryClear,
                format!(
                    "cleared for {controller} in registry {id} v{} on {checked_at}",
                    snapshot.version
                ),
            )),
        },
    };
    RegistryOutcome { result, version }
}
