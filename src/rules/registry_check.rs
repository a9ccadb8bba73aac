//! The registry rule: the number must be covered by fresh registry data that
//! does not list it (block-lists) or clears it for the controller
//! (allow-lists). No data, no coverage or old data is a DENY: a registry
//! never gives a false "clear".

use std::borrow::Cow;

use jiff::Timestamp;

use super::RegistryData;
use crate::model::RegistryKind;
use crate::model::{Reason, ReasonCode};
use crate::number::Normalized;
use crate::registry::snapshot::BlockLookup;
use crate::registry::texts::never_cleared_text;

/// What one registry says about a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryOutcome<'a> {
    /// `Ok(REGISTRY_CLEAR)` or every deny reason that applies.
    pub result: Result<Reason, Vec<Reason>>,
    /// `registry@version`, or `registry@none` without data (borrowed from
    /// the edition's texts: copied only for a decision that is logged).
    pub version: Cow<'a, str>,
}

/// Checks a number against one registry at `now`, for `controller`.
pub fn check_registry<'a>(
    registry: &RegistryData<'a>,
    called: &Normalized,
    controller: &str,
    now: Timestamp,
) -> RegistryOutcome<'a> {
    let id = &registry.config.id;
    let Some(snapshot) = registry.snapshot else {
        return RegistryOutcome {
            result: Err(vec![Reason::new(
                ReasonCode::RegistryUnavailable,
                format!("registry {id} has no snapshot loaded"),
            )]),
            version: Cow::Owned(format!("{id}@none")),
        };
    };
    let valid_days = registry.valid_days;
    let texts = snapshot.texts(id, valid_days);
    let version = match &texts {
        Cow::Borrowed(texts) => Cow::Borrowed(texts.version_label.as_str()),
        Cow::Owned(texts) => Cow::Owned(texts.version_label.clone()),
    };
    let result = match registry.config.kind {
        RegistryKind::Blocklist => match snapshot.block_lookup(&called.e164[1..], called.key) {
            BlockLookup::NotCovered => Err(vec![Reason::new(
                ReasonCode::RegistryNotCovered,
                texts.not_covered.clone(),
            )]),
            lookup => {
                let mut denies = Vec::new();
                if let Some((from, text)) = &texts.checked_from
                    && now < *from
                {
                    denies.push(Reason::new(ReasonCode::RegistryNotCovered, text.clone()));
                }
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
        RegistryKind::Allowlist => {
            let texts = texts.cleared.get(controller);
            match snapshot.clearance_batch(controller, called.key) {
                // Not cleared, and answered as opposed: the answer that
                // withheld it took it out of the clearances too.
                None if registry.opposed_at.is_some() => Err(vec![Reason::new(
                    ReasonCode::RegistryListed,
                    format!(
                        "registry {id} answered the number as opposed for {controller} on {}",
                        registry
                            .opposed_at
                            .map(|t| t.to_string())
                            .unwrap_or_default()
                    ),
                )]),
                None => Err(vec![Reason::new(
                    ReasonCode::RegistryNotCovered,
                    texts.map_or_else(
                        || never_cleared_text(id, snapshot.version, controller),
                        |t| t.never_cleared.clone(),
                    ),
                )]),
                Some((batch, _)) => match texts.and_then(|t| t.batches.get(batch)) {
                    Some(batch) if now < batch.checked_from => Err(vec![Reason::new(
                        ReasonCode::RegistryNotCovered,
                        batch.not_yet.clone(),
                    )]),
                    Some(batch) if now >= batch.stale_from => Err(vec![Reason::new(
                        ReasonCode::RegistryStale,
                        batch.stale.clone(),
                    )]),
                    // The registry's later answer that the number is opposed
                    // outweighs an earlier clearance (IT-RPO: the latest
                    // result for the controller counts).
                    Some(batch)
                        if registry
                            .opposed_at
                            .is_some_and(|opposed| opposed >= batch.checked_from) =>
                    {
                        Err(vec![Reason::new(
                            ReasonCode::RegistryListed,
                            format!(
                                "registry {id} answered the number as opposed for {controller} on {}, after its clearance",
                                registry
                                    .opposed_at
                                    .map(|t| t.to_string())
                                    .unwrap_or_default()
                            ),
                        )])
                    }
                    Some(batch) => Ok(Reason::new(ReasonCode::RegistryClear, batch.clear.clone())),
                    // The texts cover every batch of the snapshot they were made from.
                    None => Err(vec![Reason::new(
                        ReasonCode::RegistryUnavailable,
                        format!(
                            "registry {id} v{} has no texts for this batch",
                            snapshot.version
                        ),
                    )]),
                },
            }
        }
    };
    RegistryOutcome { result, version }
}
