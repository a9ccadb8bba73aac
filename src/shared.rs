//! The state the HTTP adapters and the background tasks share with the
//! server: configuration, compiled policy, registries, log, counters.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::config::Config;
use crate::decision_log::DecisionLog;
use crate::policy::Policies;
use crate::registry::RegistrySet;
use crate::stats::Stats;

/// State shared by the adapters and background tasks.
#[derive(Debug)]
pub struct Shared {
    pub config: Arc<Config>,
    /// The compiled policy the gateway decides with.
    pub policies: Arc<Policies>,
    pub registries: Arc<RegistrySet>,
    pub log: Arc<DecisionLog>,
    pub stats: Arc<Stats>,
    /// The contact records (ready only while they reload).
    pub contacts: Arc<crate::contacts::ContactStore>,
    pub started: Instant,
    /// Set once serving, cleared when draining.
    pub(crate) ready: AtomicBool,
    /// The scheduled retention purge (its last run, for `/status`).
    pub retention: Arc<crate::retention::Schedule>,
    /// What start-up found about the data directory at rest.
    pub at_rest: crate::at_rest::AtRest,
    /// The gateway's guard against a clock set back.
    pub clock: Arc<crate::clock_guard::ClockGuard>,
}

impl Shared {
    /// Ready to decide: started, not shutting down, the log is committing,
    /// the contact records reload and the clock is not set back or ahead.
    pub fn is_ready(&self) -> bool {
        let limit =
            crate::gateway::contacts_behind_limit(self.config.server.registry_reload_interval_ms);
        self.ready.load(Ordering::Relaxed)
            && !self.log.counters().failing.load(Ordering::Relaxed)
            && self
                .contacts
                .failing_for()
                .is_none_or(|behind| behind <= self.contacts.behind_limit(limit))
            && !self.clock.refuses(jiff::Timestamp::now())
    }
}
