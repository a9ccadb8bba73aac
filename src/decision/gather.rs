//! The gather step: everything one decision reads, borrowed for the call.

use jiff::Timestamp;
use smallvec::SmallVec;

use crate::attempts::AttemptLedger;
use crate::calling::zones::{self, Whereabouts};
use crate::calling::{AttemptLimit, WindowMemo};
use crate::config::CampaignConfig;
use crate::contacts::ContactStore;
use crate::number::{self, Normalized, NumberError};
use crate::policy::Policies;
use crate::registry::RegistrySet;
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

/// Gathers the data of `call` at `now` and runs the rules.
pub fn decide(sources: &DecisionSources<'_>, call: &CallInput<'_>, now: Timestamp) -> Decided {
    let called = call.called;
    // Two registries cover a region at most in practice: no allocation
    // per check; the snapshots are borrowed for the check, not counted.
    let snapshots: SmallVec<[_; 2]> = match called {
        Ok(n) => sources
            .registries
            .for_region(n.region)
            .map(|entry| (&entry.config, entry.snapshot_guard(), entry.diverged()))
            .collect(),
        Err(_) => SmallVec::new(),
    };
    let era = match (call.campaign, called) {
        (Some(c), Ok(n)) => sources.policies.era(&c.id, n.region, now),
        _ => None,
    };
    let controller = call.campaign.map_or("", |c| c.controller.as_str());
    let registries: SmallVec<[RegistryData<'_>; 2]> = snapshots
        .iter()
        .map(|(config, snapshot, diverged)| RegistryData {
            config,
            // A replica refusing the published edition decides on none.
            snapshot: if *diverged { None } else { snapshot.as_deref() },
            valid_days: era
                .and_then(|era| era.registry(&config.id))
                .map_or(config.valid_days, |r| r.valid_days),
            // `opposed_at` answers at once when no answer is held at all.
            opposed_at: match (called, config.kind) {
                (Ok(n), crate::model::RegistryKind::Allowlist) => {
                    sources.contacts.opposed_at(&config.id, controller, n.key)
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
