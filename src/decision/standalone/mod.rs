//! The sources of a decision owned together, for tools that decide without
//! a server (the property test, the fuzz target): the same [`decide`] the
//! gateway runs, on the configuration's policy and a data directory.

use std::path::Path;

use jiff::Timestamp;

use super::{DecisionSources, decide, decide_reusing, normalize_called};
use crate::attempts::AttemptLedger;
use crate::calling::WindowMemo;
use crate::config::Config;
use crate::contacts::{ContactStore, StoreError};
use crate::policy::Policies;
use crate::registry::{self, RegistrySet};
use crate::rules::{CallInput, Evaluation};

/// A decision maker over a configuration and a data directory.
#[derive(Debug)]
pub struct StandaloneDecider {
    config: Config,
    policies: Policies,
    registries: RegistrySet,
    contacts: ContactStore,
    attempts: AttemptLedger,
    window_memo: WindowMemo,
}

impl StandaloneDecider {
    /// Opens the stores of `data_dir` (the contact store is created if missing).
    ///
    /// # Errors
    /// [`StoreError`] when the contact store cannot be opened.
    pub fn open(config: Config, data_dir: &Path) -> Result<StandaloneDecider, StoreError> {
        Ok(StandaloneDecider {
            policies: Policies::compile(&config),
            registries: RegistrySet::open(&config.registries, &registry::snapshots_dir(data_dir)),
            contacts: ContactStore::open(data_dir)?,
            attempts: AttemptLedger::default(),
            window_memo: WindowMemo::default(),
            config,
        })
    }

    /// Decides a call as CheckCall (with a caller ID) or ScreenNumbers
    /// (without) would at `now`, memoising windows or not.
    pub fn decide(
        &self,
        campaign_id: &str,
        called_number: &str,
        caller_id: Option<&str>,
        now: Timestamp,
        memoise: bool,
    ) -> Evaluation {
        let campaign = self.config.campaign(campaign_id);
        let called = normalize_called(called_number, campaign);
        let sources = self.sources(memoise);
        decide(
            &sources,
            &CallInput {
                campaign_id,
                campaign,
                called: &called,
                caller_id,
                logged: true,
            },
            now,
        )
        .evaluation
    }

    /// Decides `(campaign_id, called_number, now)` in order without a
    /// caller ID, as ScreenNumbers screens a run of a list: each call's
    /// setting (era, registry editions) is kept for the next while it fits.
    /// The answers must be [`Self::decide`]'s, one call at a time.
    pub fn decide_run(&self, calls: &[(&str, &str, Timestamp)]) -> Vec<Evaluation> {
        let sources = self.sources(true);
        let mut setting = None;
        calls
            .iter()
            .map(|&(campaign_id, called_number, now)| {
                let campaign = self.config.campaign(campaign_id);
                let called = normalize_called(called_number, campaign);
                decide_reusing(
                    &sources,
                    &mut setting,
                    &CallInput {
                        campaign_id,
                        campaign,
                        called: &called,
                        caller_id: None,
                        logged: true,
                    },
                    now,
                )
                .evaluation
            })
            .collect()
    }

    fn sources(&self, memoise: bool) -> DecisionSources<'_> {
        DecisionSources {
            policies: &self.policies,
            registries: &self.registries,
            contacts: &self.contacts,
            attempts: &self.attempts,
            window_memo: memoise.then_some(&self.window_memo),
        }
    }
}

#[cfg(test)]
mod tests;
