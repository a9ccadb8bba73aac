//! The gather step: everything one decision reads, borrowed for the call.

use std::sync::Arc;

use jiff::Timestamp;
use smallvec::SmallVec;

use crate::attempts::AttemptLedger;
use crate::calling::zones::{self, Whereabouts};
use crate::calling::{AttemptLimit, WindowMemo};
use crate::config::{CampaignConfig, RegistryConfig};
use crate::contacts::ContactStore;
use crate::number::{self, Normalized, NumberError, Region};
use crate::policy::{Era, Policies};
use crate::registry::{RegistrySet, Snapshot};
use crate::rules::{self, CallInput, DecisionData, Evaluation, RegistryData};

/// What a decision reads from.
#[derive(Debug, Clone, Copy)]
pub struct DecisionSources<'a> {
    pub policies: &'a Policies,
    pub registries: &'a RegistrySet,
    pub contacts: &'a ContactStore,
    pub attempts: &'a AttemptLedger,
    /// Memoised calling-window answers (same answers without).
    pub window_memo: Option<&'a WindowMemo>,
}

/// The rules' answer and the caps an ALLOW must reserve a slot under.
#[derive(Debug, Clone)]
pub struct Decided {
    pub evaluation: Evaluation,
    pub caps: SmallVec<[AttemptLimit; 2]>,
}

/// What every decision of one campaign in one region at one instant reads
/// alike: the rules in force and the registry editions in service. A call
/// gathers its own; a screened list keeps one for the numbers of a run that
/// share them (see [`RunSetting`]), which spares each number the lookups.
struct Setting<'s> {
    era: Option<&'s Era>,
    /// The registries of the region: their edition in service (borrowed
    /// for the setting's life, not counted), whether this replica refuses
    /// the published edition, and how long one result may be relied on.
    registries: SmallVec<[RegistryInService<'s>; 2]>,
}

struct RegistryInService<'s> {
    config: &'s RegistryConfig,
    snapshot: arc_swap::Guard<Option<Arc<Snapshot>>>,
    diverged: bool,
    valid_days: u32,
}

impl<'s> Setting<'s> {
    /// The setting of `campaign` calling a number of `region` (`None`: the
    /// number is not valid) at `now`.
    fn gather(
        sources: &DecisionSources<'s>,
        campaign: Option<&CampaignConfig>,
        region: Option<Region>,
        now: Timestamp,
    ) -> Setting<'s> {
        let era = match (campaign, region) {
            (Some(c), Some(region)) => sources.policies.era(&c.id, region, now),
            _ => None,
        };
        // Two registries cover a region at most in practice: no allocation.
        let registries = region
            .into_iter()
            .flat_map(|region| sources.registries.for_region(region))
            .map(|entry| RegistryInService {
                config: &entry.config,
                snapshot: entry.snapshot_guard(),
                diverged: entry.diverged(),
                valid_days: era
                    .and_then(|era| era.registry(&entry.config.id))
                    .map_or(entry.config.valid_days, |r| r.valid_days),
            })
            .collect();
        Setting { era, registries }
    }
}

/// A setting kept from one call for the next calls of a run, with the
/// campaign, region and instant it was gathered for: it serves only calls
/// of those three (see [`decide_reusing`]).
pub struct RunSetting<'s> {
    /// The campaign's id (its era depends on nothing else of it).
    campaign: Option<String>,
    region: Option<Region>,
    now: Timestamp,
    setting: Setting<'s>,
}

impl RunSetting<'_> {
    fn fits(
        &self,
        campaign: Option<&CampaignConfig>,
        region: Option<Region>,
        now: Timestamp,
    ) -> bool {
        self.campaign.as_deref() == campaign.map(|c| c.id.as_str())
            && self.region == region
            && self.now == now
    }
}

/// Gathers the data of `call` at `now` and runs the rules.
pub fn decide(sources: &DecisionSources<'_>, call: &CallInput<'_>, now: Timestamp) -> Decided {
    let region = call.called.as_ref().ok().map(|n| n.region);
    let setting = Setting::gather(sources, call.campaign, region, now);
    let decided = decide_in(sources, &setting, call, now);
    decided_wherever_it_may_be(sources, call, now, decided)
}

/// A number whose region its numbering plan does not tell apart from
/// others (`+590 690...`: Guadeloupe, Saint-Barthélemy or Saint-Martin,
/// whose laws differ) is decided under each of them too, and allowed only
/// where every one allows (found by review: such mobiles were decided as
/// Guadeloupe's, where a contract stands in for a consent, which it does
/// not in Saint-Martin, and on Saint-Martin's holiday). The campaign must
/// list them all as destinations. Only where a law tells them apart: two
/// regions neither of which has a statute or an override here are decided
/// alike (Australia's mobiles, which Cocos and Christmas Island share, were
/// denied to every Australian campaign; found by the review of this fix).
/// Almost every number has none.
fn decided_wherever_it_may_be(
    sources: &DecisionSources<'_>,
    call: &CallInput<'_>,
    now: Timestamp,
    mut decided: Decided,
) -> Decided {
    let Ok(number) = call.called else {
        return decided;
    };
    let others = number::other_possible_regions(number);
    if others.is_empty() {
        return decided;
    }
    // Looked up only for such numbers: CheckCall's path otherwise pays
    // the overlap check alone.
    let own_law = sources.policies.has_own_law(number.region);
    for other in others {
        if !own_law && !sources.policies.has_own_law(other) {
            continue;
        }
        let there: Result<Normalized, NumberError> = Ok(Normalized {
            region: other,
            ..number.clone()
        });
        let call_there = CallInput {
            called: &there,
            ..*call
        };
        let setting = Setting::gather(sources, call.campaign, Some(other), now);
        decided = stricter(decided, decide_in(sources, &setting, &call_there, now));
    }
    decided
}

/// Two decisions of one call, one allowed only if both are: a DENY (both
/// DENYs' reasons together, waiting helping only if it helps both), else
/// the first ALLOW with the caps of both.
fn stricter(mut first: Decided, second: Decided) -> Decided {
    use crate::model::Verdict;
    for version in &second.evaluation.data_versions {
        if !first.evaluation.data_versions.contains(version) {
            first.evaluation.data_versions.push(version.clone());
        }
    }
    match (first.evaluation.verdict, second.evaluation.verdict) {
        (Verdict::Allow, Verdict::Deny) => {
            let data_versions = std::mem::take(&mut first.evaluation.data_versions);
            let mut second = second;
            second.evaluation.data_versions = data_versions;
            second
        }
        (Verdict::Deny, Verdict::Deny) => {
            first.evaluation.add_reasons(second.evaluation.reasons);
            first.evaluation.next_allowed_at = first
                .evaluation
                .next_allowed_at
                .zip(second.evaluation.next_allowed_at)
                .map(|(a, b)| a.max(b));
            first
        }
        _ => {
            for cap in second.caps {
                if !first.caps.contains(&cap) {
                    first.caps.push(cap);
                }
            }
            first
        }
    }
}

/// [`decide`], in the setting `kept` from an earlier call when it was
/// gathered for this call's campaign, region and instant; otherwise the
/// call's setting is gathered and kept for the next call.
pub fn decide_reusing<'s>(
    sources: &DecisionSources<'s>,
    kept: &mut Option<RunSetting<'s>>,
    call: &CallInput<'_>,
    now: Timestamp,
) -> Decided {
    let region = call.called.as_ref().ok().map(|n| n.region);
    let kept = match kept {
        Some(kept) if kept.fits(call.campaign, region, now) => kept,
        _ => kept.insert(RunSetting {
            campaign: call.campaign.map(|c| c.id.clone()),
            region,
            now,
            setting: Setting::gather(sources, call.campaign, region, now),
        }),
    };
    let decided = decide_in(sources, &kept.setting, call, now);
    decided_wherever_it_may_be(sources, call, now, decided)
}

/// Gathers the data of `call` in `setting`, gathered for the call's
/// campaign, region and `now`, and runs the rules at `now`.
fn decide_in(
    sources: &DecisionSources<'_>,
    setting: &Setting<'_>,
    call: &CallInput<'_>,
    now: Timestamp,
) -> Decided {
    let called = call.called;
    let era = setting.era;
    let controller = call.campaign.map_or("", |c| c.controller.as_str());
    let registries: SmallVec<[RegistryData<'_>; 2]> = setting
        .registries
        .iter()
        .map(|registry| RegistryData {
            config: registry.config,
            // A replica refusing the published edition decides on none.
            snapshot: if registry.diverged {
                None
            } else {
                registry.snapshot.as_deref()
            },
            valid_days: registry.valid_days,
            // `opposed_at` answers at once when no answer is held at all.
            opposed_at: match (called, registry.config.kind) {
                (Ok(n), crate::model::RegistryKind::Allowlist) => {
                    sources
                        .contacts
                        .opposed_at(&registry.config.id, controller, n.key)
                }
                _ => None,
            },
        })
        .collect();
    let (contacts, whereabouts, attempts, caps) = match (called, era) {
        (Ok(n), Some(era)) => {
            let whereabouts = zones::locate(n.region.as_str(), &n.e164[1..]);
            let caps: SmallVec<[AttemptLimit; 2]> = era.caps_in(whereabouts.state).collect();
            (
                sources.contacts.view(n.key, &n.e164),
                whereabouts,
                if caps.is_empty() {
                    Vec::new()
                } else {
                    sources.attempts.recent(controller, n.key)
                },
                caps,
            )
        }
        _ => (
            Default::default(),
            Whereabouts::default(),
            Vec::new(),
            SmallVec::new(),
        ),
    };
    let evaluation = rules::evaluate(
        call,
        &DecisionData {
            contacts: &contacts,
            registries: &registries,
            era,
            whereabouts: &whereabouts,
            attempts: &attempts,
            window_memo: sources.window_memo,
        },
        now,
    );
    Decided { evaluation, caps }
}

/// The called number in canonical form: national numbers take the
/// campaign's default region; without a campaign only international ones
/// parse.
pub fn normalize_called(
    input: &str,
    campaign: Option<&CampaignConfig>,
) -> Result<Normalized, NumberError> {
    match campaign {
        Some(c) => number::normalize(input, c.default_region),
        None => number::normalize_international(input),
    }
}
