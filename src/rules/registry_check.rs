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
    let version = format!("{id}@{}", snapshot.version);
    let valid_days = registry.config.valid_days;
    let stale = |checked_at: jiff::civil::Date| {
        let until = stale_from(checked_at, valid_days);
        (now >= until).then(|| {
            Reason::new(
                ReasonCode::RegistryStale,
                format!(
                    "registry {id} data checked {checked_at} expired at {until} ({valid_days} days)"
                ),
            )
        })
    };
    let result = match registry.config.kind {
        RegistryKind::Blocklist => {
            let digits = &called.e164[1..];
            let checked_at = snapshot.oldest_check();
            match snapshot.block_lookup(digits, called.key) {
                BlockLookup::NotCovered => Err(vec![Reason::new(
                    ReasonCode::RegistryNotCovered,
                    format!(
                        "registry {id} v{} does not cover this number's area",
                        snapshot.version
                    ),
                )]),
                lookup => {
                    let mut denies: Vec<Reason> = checked_at.and_then(stale).into_iter().collect();
                    if checked_at.is_none() {
                        denies.push(Reason::new(
                            ReasonCode::RegistryUnavailable,
                            format!("registry {id} has no dated data"),
                        ));
                    }
                    if lookup == BlockLookup::Listed {
                        denies.push(Reason::new(
                            ReasonCode::RegistryListed,
                            format!("listed in registry {id} v{}", snapshot.version),
                        ));
                    }
                    match (denies.is_empty(), checked_at) {
                        (true, Some(date)) => Ok(Reason::new(
                            ReasonCode::RegistryClear,
                            format!(
                                "not listed in registry {id} v{} checked {date}",
                                snapshot.version
                            ),
                        )),
                        _ => Err(denies),
                    }
                }
            }
        }
        RegistryKind::Allowlist => match snapshot.clearance(controller, called.key) {
            None => Err(vec![Reason::new(
                ReasonCode::RegistryNotCovered,
                format!(
                    "never cleared for controller {controller} in registry {id} v{}",
                    snapshot.version
                ),
            )]),
            Some(checked_at) => match stale(checked_at) {
                Some(reason) => Err(vec![reason]),
                None => Ok(Reason::new(
                    ReasonCode::RegistryClear,
                    format!(
                        "cleared for {controller} in registry {id} v{} on {checked_at}",
                        snapshot.version
                    ),
                )),
            },
        },
    };
    RegistryOutcome { result, version }
}
