//! The decision service: gathers the data a call rests on, runs the rules,
//! logs the decision durably and only then answers. Transport-agnostic: the
//! gRPC adapter converts types and calls in here.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use jiff::Timestamp;
use smallvec::SmallVec;

use crate::attempts::AttemptLedger;
use crate::calling::{AttemptLimit, WindowMemo};
use crate::clock_guard::{ClockGuard, ClockRefused};
use crate::config::{CampaignConfig, Config};
use crate::contacts::ContactStore;
use crate::decision::{DecisionSources, RunSetting, decide, decide_reusing, normalize_called};
use crate::decision_log::shared::Committed;
use crate::decision_log::{DecisionLog, DecisionRecord, LogError};
use crate::idempotency::AnswerCache;
use crate::model::{Reason, Verdict};
use crate::number::{self, Normalized, NumberError};
use crate::policy::Policies;
use crate::registry::RegistrySet;
use crate::rules::{CallInput, Evaluation};
use crate::stats::Stats;

/// A CheckCall request in domain terms.
#[derive(Debug, Clone, Default)]
pub struct CallCheck {
    pub called_number: String,
    pub caller_id: String,
    pub campaign_id: String,
    pub request_id: String,
    /// The API key the dialer used (`None` without authentication): its
    /// name is logged, and with `controllers` only their campaigns are
    /// checked.
    pub caller: Option<crate::auth::Caller>,
}

impl CallCheck {
    /// Name of the API key the dialer used (empty without authentication).
    fn api_key(&self) -> &str {
        self.caller.as_ref().map_or("", |c| c.name.as_str())
    }
}

/// Longest accepted `called_number` and `caller_id` (characters).
pub const MAX_NUMBER_FIELD: usize = 64;
/// Longest accepted `campaign_id`.
pub const MAX_CAMPAIGN_ID: usize = crate::config::MAX_ID_LENGTH;
/// Longest accepted `request_id` (a SIP Call-ID fits).
pub const MAX_REQUEST_ID: usize = 256;

/// Why a CheckCall got no decision.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// A field is malformed; nothing was decided or logged.
    #[error("{field}: {problem}")]
    InvalidArgument {
        field: &'static str,
        problem: String,
    },
    /// The `request_id` answered another request (other fields or another
    /// API key): the original answer is not this request's.
    #[error(
        "request_id {request_id:?} was already used {problem}; use a new request_id for a new call"
    )]
    RequestIdReused {
        request_id: String,
        problem: &'static str,
    },
    /// A repeat of an ALLOW too old to dial on: the window, opt-outs and
    /// caps may have changed since.
    #[error(
        "request_id {request_id:?} was answered ALLOW at {decided_at}, more than {seconds} s ago: too old to dial on; use a new request_id for a new decision"
    )]
    AllowExpired {
        request_id: String,
        decided_at: Timestamp,
        seconds: u64,
    },
    /// A repeat of an ALLOW that the rules deny now (the calling window
    /// closed since, an opt-out or a withdrawal arrived): dialing on it
    /// would place a call the law or the person no longer allows.
    #[error(
        "request_id {request_id:?} was answered ALLOW at {decided_at}, but the call is denied now ({reasons}): do not dial on it; use a new request_id for a new decision"
    )]
    AllowWithdrawn {
        request_id: String,
        decided_at: Timestamp,
        reasons: String,
    },
    /// The decision could not be made durable: the dialer must not dial.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The contact records other processes stored (bulk opt-outs among
    /// them) could not be loaded for too long: no decision is made.
    #[error(
        "contact records could not be reloaded for {seconds} s (opt-outs imported since may be missing): no decision; see the server log"
    )]
    ContactsBehind { seconds: u64 },
    /// The clock reads earlier than the latest decision made by more than
    /// `log.clock_step_tolerance_seconds`: it was set back, and every rule
    /// reads it.
    #[error(
        "the clock reads {now}, before the latest decision ({latest}): it was set back; no decision until it catches up (log.clock_step_tolerance_seconds)"
    )]
    ClockBehind { now: Timestamp, latest: Timestamp },
    /// The clock was stepped away from the time kept since start-up (see
    /// `clock_guard`): nothing was decided or logged.
    #[error(
        "the clock reads {now}, where the time kept since start-up is {kept}: it was set {}; no decision until it is set right, or dialgate restarts once the host's clock is checked (log.clock_step_tolerance_seconds)",
        if now > kept { "forward" } else { "back" }
    )]
    ClockStepped { now: Timestamp, kept: Timestamp },
    /// The campaign's controller is not one of the API key's: nothing was
    /// decided or logged.
    #[error(transparent)]
    OutOfScope(#[from] crate::auth::OutOfScope),
}

/// How often a running server reads the contact records other processes
/// stored (bulk imports' opt-outs among them): every registry reload, and
/// at least every second whatever `registry_reload_interval_ms` says (a
/// registry changes monthly, an opt-out must bind at once; found by review:
/// an interval of an hour left imported opt-outs unread that long).
pub fn contacts_refresh_interval(reload_interval_ms: u64) -> std::time::Duration {
    std::time::Duration::from_millis(reload_interval_ms.min(1_000))
}

/// How long the contact records may fail to reload before decisions stop:
/// ten refresh intervals (a busy store, a large import moving in, fails a
/// refresh or two), at least 2 s; 10 s at most.
pub fn contacts_behind_limit(reload_interval_ms: u64) -> std::time::Duration {
    (contacts_refresh_interval(reload_interval_ms) * 10).max(std::time::Duration::from_secs(2))
}

/// The instants a screened item's `at` may name (seconds since the epoch):
/// screening plans calls, years 2000-2199 are plenty, and keep the
/// calendars in range.
pub const SCREEN_AT_SECONDS: std::ops::Range<i64> = 946_684_800..7_258_118_400;

/// Checks the lengths of a screened item's fields (ScreenNumbers and
/// `/v1/screen`).
///
/// # Errors
/// [`CheckError::InvalidArgument`] naming the first field over its length.
pub fn bounded_screen_item(
    called_number: &str,
    campaign_id: &str,
    reference: &str,
) -> Result<(), CheckError> {
    bounded("called_number", called_number, MAX_NUMBER_FIELD)?;
    bounded("campaign_id", campaign_id, MAX_CAMPAIGN_ID)?;
    bounded("ref", reference, MAX_REQUEST_ID)
}

/// Checks a field's length, naming it when too long, and refuses control
/// characters: a NUL cannot be stored in PostgreSQL's `text` (the whole
/// group commit of every dialer's decisions failed on one), and no number,
/// campaign or request id holds another control. Tabs and line breaks are
/// left to the fields' own parsing (a number read from a CRLF file is
/// trimmed, as before).
pub fn bounded(field: &'static str, value: &str, max: usize) -> Result<(), CheckError> {
    let bytes = value.as_bytes();
    if let Some(at) = bytes
        .iter()
        .position(|&b| (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r')) || b == 0x7f)
    {
        return Err(CheckError::InvalidArgument {
            field,
            problem: format!("control character 0x{:02x} at byte {at}", bytes[at]),
        });
    }
    // The C1 controls, U+0080 to U+009F (0xC2 0x80-0x9F in UTF-8): a
    // terminal reads them as escapes in an export (found by review).
    if let Some(at) = bytes
        .windows(2)
        .position(|pair| pair[0] == 0xc2 && (0x80..=0x9f).contains(&pair[1]))
    {
        return Err(CheckError::InvalidArgument {
            field,
            problem: format!("control character U+{:04X} at byte {at}", bytes[at + 1]),
        });
    }
    // No more bytes than the limit: no more characters either (the usual
    // case, without counting them).
    if value.len() <= max {
        return Ok(());
    }
    let chars = value.chars().count();
    if chars > max {
        return Err(CheckError::InvalidArgument {
            field,
            problem: format!("{chars} characters, at most {max} accepted"),
        });
    }
    Ok(())
}

/// What a request id is bound to: the request's fields (the caller is in
/// the key it is remembered under, see [`crate::idempotency::idempotency_key`]).
#[derive(Debug, Clone, PartialEq, Eq)]
struct RequestFingerprint {
    digest: [u8; 16],
}

impl RequestFingerprint {
    fn of(called_number: &str, caller_id: &str, campaign_id: &str) -> Self {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        for field in [called_number, caller_id, campaign_id] {
            hasher.update((field.len() as u64).to_le_bytes());
            hasher.update(field.as_bytes());
        }
        let digest = hasher.finalize();
        let mut short = [0u8; 16];
        short.copy_from_slice(&digest[..16]);
        RequestFingerprint { digest: short }
    }
}

/// An answer remembered by request id, with what it answered and when.
#[derive(Debug, Clone)]
struct Answered {
    fingerprint: RequestFingerprint,
    outcome: CheckOutcome,
    decided_at: Timestamp,
}

/// The remembered answer of a logged decision.
fn answered_from(record: DecisionRecord) -> Answered {
    Answered {
        fingerprint: RequestFingerprint::of(
            &record.called_number,
            &record.caller_id,
            &record.campaign_id,
        ),
        outcome: CheckOutcome {
            decision_id: record.decision_id,
            verdict: record.verdict,
            reasons: record.reasons,
            normalized_number: record.normalized_number,
            next_allowed_at: record.next_allowed_at,
        },
        decided_at: record.decided_at,
    }
}

/// The answer to a logged decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutcome {
    pub decision_id: String,
    pub verdict: Verdict,
    pub reasons: Vec<Reason>,
    pub normalized_number: String,
    pub next_allowed_at: Option<Timestamp>,
}

/// The answer to a screened number (not a dial decision, not logged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScreenOutcome {
    pub verdict: Verdict,
    pub reasons: Vec<Reason>,
    pub normalized_number: String,
    pub next_allowed_at: Option<Timestamp>,
}

/// The shared state a [`Gateway`] decides on.
#[derive(Debug)]
pub struct GatewayParts {
    /// The configuration's campaigns compiled against the statutes.
    pub policies: Arc<Policies>,
    pub registries: Arc<RegistrySet>,
    pub contacts: Arc<ContactStore>,
    pub log: Arc<DecisionLog>,
    pub stats: Arc<Stats>,
    pub attempts: Arc<AttemptLedger>,
}

/// The decision service.
#[derive(Debug)]
pub struct Gateway {
    policies: Arc<Policies>,
    attempts: Arc<AttemptLedger>,
    campaigns: HashMap<String, CampaignConfig, foldhash::fast::RandomState>,
    registries: Arc<RegistrySet>,
    contacts: Arc<ContactStore>,
    log: Arc<DecisionLog>,
    stats: Arc<Stats>,
    /// Answers by request id, for idempotent repeats.
    answered: AnswerCache<Answered>,
    /// How long a repeated ALLOW may still be answered (seconds).
    allow_replay_seconds: u64,
    /// How long the contact records may fail to reload before no decision
    /// is made ([`contacts_behind_limit`]).
    contacts_behind_limit: std::time::Duration,
    /// Some cap exists: every ALLOW is counted in the ledger.
    counts_attempts: bool,
    /// Calling windows already worked out (keyed by `policies`' era ids).
    window_memo: WindowMemo,
    /// No decision while the clock reads before the latest one made.
    clock: Arc<ClockGuard>,
}

/// What the decision log held at start-up.
pub struct Startup {
    /// Decisions still inside the idempotency window (their repeats get
    /// the original answer).
    pub recent: Vec<DecisionRecord>,
    /// The latest instant a logged decision was made at.
    pub latest: Option<Timestamp>,
}

impl Gateway {
    /// Builds the service over what the log held at start-up.
    pub fn new(config: Arc<Config>, parts: GatewayParts, startup: Startup) -> Gateway {
        let Startup { recent, latest } = startup;
        let answered = AnswerCache::new(
            std::time::Duration::from_secs(config.log.idempotency_window_seconds),
            config.log.idempotency_max_entries,
        );
        for record in recent {
            answered.insert(
                crate::idempotency::idempotency_key(&record.api_key, &record.request_id),
                answered_from(record),
            );
        }
        Gateway {
            campaigns: config
                .campaigns
                .iter()
                .map(|c| (c.id.clone(), c.clone()))
                .collect(),
            counts_attempts: parts.policies.longest_cap_window().is_some(),
            policies: parts.policies,
            attempts: parts.attempts,
            registries: parts.registries,
            contacts: parts.contacts,
            log: parts.log,
            stats: parts.stats,
            answered,
            allow_replay_seconds: config.log.allow_replay_seconds,
            contacts_behind_limit: contacts_behind_limit(config.server.registry_reload_interval_ms),
            window_memo: WindowMemo::default(),
            clock: Arc::new(ClockGuard::new(latest, config.log.clock_step_tolerance())),
        }
    }

    /// The clock guard, for readiness.
    pub fn clock_guard(&self) -> Arc<ClockGuard> {
        Arc::clone(&self.clock)
    }

    /// Refuses to decide at `now` if the clock went back, or was stepped
    /// ahead (see [`ClockGuard`]).
    fn clock_checked(&self, now: Timestamp) -> Result<Timestamp, CheckError> {
        self.clock.check(now).map_err(|refused| match refused {
            ClockRefused::Behind { now, latest } => {
                tracing::error!(%now, %latest, "the clock reads before the latest decision: no decision until it catches up");
                CheckError::ClockBehind { now, latest }
            }
            ClockRefused::Stepped { now, kept } => {
                tracing::error!(%now, %kept, "the clock was stepped away from the time kept since start-up: no decision until it is set right or dialgate restarts");
                CheckError::ClockStepped { now, kept }
            }
        })?;
        Ok(now)
    }

    /// Decides a call now, logs it durably, then returns it. A repeated
    /// `request_id` returns the original decision without logging again,
    /// if it repeats the same request from the same API key.
    ///
    /// # Errors
    /// [`CheckError::Log`] when the decision could not be made durable: the
    /// dialer must not dial; [`CheckError::InvalidArgument`] for a field
    /// over its length or holding a control character; [`CheckError::RequestIdReused`] for a request id
    /// that answered another request; [`CheckError::AllowExpired`] for a
    /// repeat of an ALLOW older than `log.allow_replay_seconds`.
    pub async fn check_call(&self, request: CallCheck) -> Result<CheckOutcome, CheckError> {
        let started = Instant::now();
        bounded("called_number", &request.called_number, MAX_NUMBER_FIELD)?;
        bounded("caller_id", &request.caller_id, MAX_NUMBER_FIELD)?;
        bounded("campaign_id", &request.campaign_id, MAX_CAMPAIGN_ID)?;
        bounded("request_id", &request.request_id, MAX_REQUEST_ID)?;
        self.in_scope(request.caller.as_ref(), &request.campaign_id)?;
        // Not deciding is answered UNAVAILABLE, and counted as such.
        let now = self
            .contacts_in_sync()
            .and_then(|()| self.clock_checked(Timestamp::now()))
            .inspect_err(|_| self.stats.record_unavailable())?;
        if request.request_id.is_empty() {
            let outcome = self.decide_and_log(&request, started, now).await?.0;
            return self.answer_in_sync(outcome);
        }
        let fingerprint = RequestFingerprint::of(
            &request.called_number,
            &request.caller_id,
            &request.campaign_id,
        );
        let cell = self.answered.cell(&crate::idempotency::idempotency_key(
            request.api_key(),
            &request.request_id,
        ));
        // Whether this request made the answer (else it repeats one).
        let decided_here = std::sync::atomic::AtomicBool::new(false);
        let answered = cell
            .get_or_try_init(|| async {
                let (outcome, earlier) = self.decide_and_log(&request, started, now).await?;
                decided_here.store(earlier.is_none(), std::sync::atomic::Ordering::Relaxed);
                // Another replica decided this request id first: its answer.
                Ok::<_, LogError>(earlier.unwrap_or_else(|| Answered {
                    fingerprint: fingerprint.clone(),
                    outcome,
                    decided_at: Timestamp::now(),
                }))
            })
            .await?;
        if answered.fingerprint == fingerprint {
            let repeated = !decided_here.load(std::sync::atomic::Ordering::Relaxed);
            if answered.outcome.verdict == Verdict::Allow && repeated {
                let age = Timestamp::now().duration_since(answered.decided_at);
                if age > jiff::SignedDuration::from_secs(self.allow_replay_seconds as i64) {
                    return Err(CheckError::AllowExpired {
                        request_id: request.request_id.clone(),
                        decided_at: answered.decided_at,
                        seconds: self.allow_replay_seconds,
                    });
                }
                if let Some(reasons) = self.denied_since(&request) {
                    tracing::warn!(
                        request_id = %number::mask_digits(&request.request_id),
                        number = %number::mask(&request.called_number),
                        reasons = %reasons,
                        "an ALLOW repeated for its request_id is denied now: not repeated"
                    );
                    return Err(CheckError::AllowWithdrawn {
                        request_id: request.request_id.clone(),
                        decided_at: answered.decided_at,
                        reasons,
                    });
                }
            }
            return self.answer_in_sync(answered.outcome.clone());
        }
        let problem = "for a different call (number, caller ID or campaign)";
        tracing::warn!(
            request_id = %number::mask_digits(&request.request_id),
            api_key = %request.api_key(),
            campaign = %crate::stats::campaign_label(self.campaigns.get(&request.campaign_id)),
            number = %number::mask(&request.called_number),
            "request_id reused {problem}: refused"
        );
        Err(CheckError::RequestIdReused {
            request_id: request.request_id.clone(),
            problem,
        })
    }

    /// Whether a call answered ALLOW before is denied now for a reason
    /// other than its own attempt (the calling window closed, an opt-out
    /// or a withdrawal arrived, a registry lists it): those reasons. The
    /// rules are run again, nothing is logged; the attempt cap is left
    /// out (the ALLOW repeated took its slot).
    fn denied_since(&self, request: &CallCheck) -> Option<String> {
        let campaign = self.campaigns.get(&request.campaign_id);
        let called = normalize_called(&request.called_number, campaign);
        let (evaluation, _) = self.evaluate(
            &request.campaign_id,
            campaign,
            &called,
            Some(&request.caller_id),
            Timestamp::now(),
        );
        if evaluation.verdict == Verdict::Allow {
            return None;
        }
        let reasons: Vec<&str> = evaluation
            .reasons
            .iter()
            .filter(|r| r.code.is_deny() && r.code != crate::model::ReasonCode::AttemptLimit)
            .map(|r| r.code.as_str())
            .collect();
        (!reasons.is_empty()).then(|| reasons.join(", "))
    }

    /// Decides and logs a call; with the shared log, also the earlier
    /// decision of its request id when another replica made one first.
    async fn decide_and_log(
        &self,
        request: &CallCheck,
        started: Instant,
        now: Timestamp,
    ) -> Result<(CheckOutcome, Option<Answered>), LogError> {
        let campaign = self.campaigns.get(&request.campaign_id);
        let called = normalize_called(&request.called_number, campaign);
        let (mut evaluation, limits) = self.evaluate(
            &request.campaign_id,
            campaign,
            &called,
            Some(&request.caller_id),
            now,
        );
        // The instant the decision is logged and its attempt kept at: the
        // latest instant decided on when the clock reads earlier (set back
        // within the tolerance), so that the attempt leaves the caps'
        // windows no earlier than one made at that instant (found by
        // review: stamped at the earlier reading, it left them up to the
        // tolerance early). The caps still count back from `now`, the
        // longer reach.
        let stamped = self
            .clock
            .ahead_of(now)
            .map_or(now, |latest| latest.max(now));
        // An ALLOW under attempt caps takes its slot atomically; if a
        // concurrent check took the last one, decide again (now a DENY).
        let mut reserved = None;
        // Every ALLOW counts once any cap exists anywhere: a campaign
        // without a cap still uses up its controller's attempts under
        // another campaign's cap.
        if evaluation.verdict == Verdict::Allow
            && let (Some(campaign), Ok(number)) = (campaign, &called)
            && (!limits.is_empty() || self.counts_attempts)
        {
            if self
                .attempts
                .try_record(&campaign.controller, number.key, &limits, now, stamped)
            {
                reserved = Some((campaign.controller.as_str(), number.key));
            } else {
                evaluation = self
                    .evaluate(
                        &request.campaign_id,
                        Some(campaign),
                        &called,
                        Some(&request.caller_id),
                        now,
                    )
                    .0;
                if evaluation.verdict == Verdict::Allow {
                    // The ledger refused what the rules allowed: never answer
                    // ALLOW without the slot.
                    evaluation.verdict = Verdict::Deny;
                    evaluation.reasons = vec![Reason::new(
                        crate::model::ReasonCode::AttemptLimit,
                        "the attempt cap was reached by a concurrent call",
                    )];
                }
            }
        }
        let decision_id = crate::clock::time_ordered_uuid().to_string();
        let normalized_number = called.as_ref().map(|n| n.e164.clone()).unwrap_or_default();
        let latency_us = started.elapsed().as_micros() as u64;
        let record = DecisionRecord {
            decision_id: decision_id.clone(),
            decided_at: stamped,
            request_id: request.request_id.clone(),
            campaign_id: request.campaign_id.clone(),
            controller: campaign.map(|c| c.controller.clone()).unwrap_or_default(),
            called_number: request.called_number.clone(),
            normalized_number: normalized_number.clone(),
            caller_id: request.caller_id.clone(),
            verdict: evaluation.verdict,
            reasons: evaluation.reasons.clone(),
            next_allowed_at: evaluation.next_allowed_at,
            data_versions: evaluation.data_versions,
            latency_us,
            api_key: request.api_key().to_string(),
        };
        let logged = match self.log.as_ref() {
            DecisionLog::Local(log) => log.append(record).await.map(|_| None),
            DecisionLog::Shared(log) => log
                .decide(crate::decision_log::shared::Pending {
                    record,
                    read_at: now,
                    // Every ALLOW takes its number's lock on the shared
                    // database, whatever this replica's caps: another
                    // replica configured with caps (a rolling change of
                    // configuration) must see it before counting (found by
                    // review).
                    counted: true,
                    caps: limits,
                })
                .await
                .map(Some),
        };
        let committed = match logged {
            Ok(committed) => committed,
            Err(err) => {
                if let Some((controller, key)) = reserved {
                    self.attempts.forget(controller, key, stamped);
                }
                self.stats.record_unavailable();
                tracing::error!(error = %err, campaign = %crate::stats::campaign_label(campaign), "decision not logged: answering unavailable");
                return Err(err);
            }
        };
        match committed {
            None => {}
            Some(Committed::Logged(logged)) if logged.verdict != evaluation.verdict => {
                // The shared database refused the slot (another replica
                // took it): the DENY it logged is the answer.
                if let Some((controller, key)) = reserved {
                    self.attempts.forget(controller, key, stamped);
                }
                evaluation.verdict = logged.verdict;
                evaluation.reasons = logged.reasons;
                evaluation.next_allowed_at = logged.next_allowed_at;
            }
            Some(Committed::Logged(_)) => {}
            Some(Committed::Earlier(first)) => {
                if let Some((controller, key)) = reserved {
                    self.attempts.forget(controller, key, stamped);
                }
                let answered = answered_from(first);
                return Ok((answered.outcome.clone(), Some(answered)));
            }
        }
        let total_us = started.elapsed().as_micros() as u64;
        // Metric labels and the status page name configured campaigns only.
        let label = crate::stats::campaign_label(campaign);
        self.stats
            .record_decision(evaluation.verdict, &evaluation.reasons, label, total_us);
        if evaluation.verdict == Verdict::Deny {
            let shown = if normalized_number.is_empty() {
                &request.called_number
            } else {
                &normalized_number
            };
            self.stats.record_denial(label, shown, &evaluation.reasons);
        }
        tracing::debug!(
            decision = %decision_id,
            campaign = %crate::stats::campaign_label(campaign),
            number = %number::mask(&normalized_number),
            verdict = evaluation.verdict.as_str(),
            "decided"
        );
        Ok((
            CheckOutcome {
                decision_id,
                verdict: evaluation.verdict,
                reasons: evaluation.reasons,
                normalized_number,
                next_allowed_at: evaluation.next_allowed_at,
            },
            None,
        ))
    }

    /// A tally of screened numbers for the status counters; see [`ScreenedTally`].
    pub fn screened_tally(&self) -> ScreenedTally {
        ScreenedTally {
            stats: Arc::clone(&self.stats),
            pending: 0,
        }
    }

    /// Refuses a check or a screen of a campaign whose controller is not
    /// one of the API key's `controllers` (an unknown campaign is left to
    /// the decision: `UNKNOWN_CAMPAIGN`).
    ///
    /// # Errors
    /// [`crate::auth::OutOfScope`] naming the controller and the key.
    pub fn in_scope(
        &self,
        caller: Option<&crate::auth::Caller>,
        campaign_id: &str,
    ) -> Result<(), crate::auth::OutOfScope> {
        match caller.filter(|c| c.controllers.is_some()) {
            Some(caller) => self
                .campaigns
                .get(campaign_id)
                .map_or(Ok(()), |campaign| caller.speaks_for(&campaign.controller)),
            None => Ok(()),
        }
    }

    /// A screener for one run of numbers of a list (see [`Screener`]).
    ///
    /// # Errors
    /// [`CheckError::ContactsBehind`]: nothing is screened.
    pub fn screener(&self) -> Result<Screener<'_>, CheckError> {
        self.contacts_in_sync()?;
        let now = self.clock_checked(crate::clock::coarse_now())?;
        let read_at = Timestamp::now();
        Ok(Screener {
            gateway: self,
            now,
            latest_ahead: self.clock.ahead_of(read_at),
            campaign: None,
            setting: None,
        })
    }

    /// An ALLOW is answered only while the contact records are still in
    /// sync after its log write, which may have waited (on the shared
    /// database, up to `unavailable_after`): an opt-out another replica
    /// took meanwhile is honoured within `max_staleness` or the answer is
    /// `UNAVAILABLE` (found by review). The ALLOW logged but not answered
    /// counts one attempt more: the safe side.
    fn answer_in_sync(&self, outcome: CheckOutcome) -> Result<CheckOutcome, CheckError> {
        if outcome.verdict == Verdict::Allow {
            self.contacts_in_sync()
                .inspect_err(|_| self.stats.record_unavailable())?;
        }
        Ok(outcome)
    }

    /// Refuses to decide while the contact records have failed to reload
    /// for longer than [`contacts_behind_limit`].
    fn contacts_in_sync(&self) -> Result<(), CheckError> {
        match self.contacts.failing_for() {
            Some(behind) if behind > self.contacts.behind_limit(self.contacts_behind_limit) => {
                Err(CheckError::ContactsBehind {
                    seconds: behind.as_secs(),
                })
            }
            _ => Ok(()),
        }
    }

    /// The sources a decision reads, borrowed for one call.
    fn sources(&self) -> DecisionSources<'_> {
        DecisionSources {
            policies: &self.policies,
            registries: &self.registries,
            contacts: &self.contacts,
            attempts: &self.attempts,
            window_memo: Some(&self.window_memo),
        }
    }

    fn evaluate(
        &self,
        campaign_id: &str,
        campaign: Option<&CampaignConfig>,
        called: &Result<Normalized, NumberError>,
        caller_id: Option<&str>,
        now: Timestamp,
    ) -> (Evaluation, SmallVec<[AttemptLimit; 2]>) {
        let input = CallInput {
            campaign_id,
            campaign,
            called,
            caller_id,
            logged: true,
        };
        let sources = self.sources();
        let mut decided = decide(&sources, &input, now);
        // A clock set back within the tolerance: allowed only if allowed at
        // the latest instant decided on too (see `ClockGuard`); a DENY also
        // names what denies at that instant (a repeated ALLOW's check,
        // `denied_since`, leaves its own attempt out and reads the rest).
        if let Some(latest) = self.clock.ahead_of(now) {
            let then = decide(&sources, &input, latest);
            if then.evaluation.verdict == Verdict::Deny {
                if decided.evaluation.verdict == Verdict::Allow {
                    return (then.evaluation, then.caps);
                }
                decided.evaluation.add_reasons(then.evaluation.reasons);
                decided.evaluation.next_allowed_at = None;
            }
        }
        (decided.evaluation, decided.caps)
    }
}

/// Screens a run of a list's numbers for list planning (ScreenNumbers
/// answers a stream a run at a time: what has arrived). The numbers'
/// campaign, the rules in force and the registry editions are looked up
/// once for the numbers that share them. It holds the registry editions
/// of its run: made for one run, dropped after it, never kept across an
/// `await`.
pub struct Screener<'g> {
    gateway: &'g Gateway,
    /// "Now" for the run's numbers that give no `at` (the coarse clock: see
    /// [`crate::clock`]).
    now: Timestamp,
    /// The latest instant decided on when the clock read earlier than it
    /// at the run's start (set back within the tolerance): answers must
    /// allow at it too. Read once per run: other calls move it forward
    /// meanwhile, which would decide every later number twice.
    latest_ahead: Option<Timestamp>,
    /// The last campaign looked up, by id.
    campaign: Option<(&'g str, &'g CampaignConfig)>,
    setting: Option<RunSetting<'g>>,
}

impl<'g> Screener<'g> {
    /// Screens a number as of `at` (default: the run's "now"). The caller
    /// counts it with a [`ScreenedTally`].
    pub fn screen(
        &mut self,
        called_number: &str,
        campaign_id: &str,
        at: Option<Timestamp>,
    ) -> ScreenOutcome {
        let now = at.unwrap_or(self.now);
        let campaign = match self.campaign {
            Some((id, campaign)) if id == campaign_id => Some(campaign),
            _ => {
                let found = self.gateway.campaigns.get_key_value(campaign_id);
                self.campaign = found.map(|(id, campaign)| (id.as_str(), campaign));
                found.map(|(_, campaign)| campaign)
            }
        };
        let called = normalize_called(called_number, campaign);
        let input = CallInput {
            campaign_id,
            campaign,
            called: &called,
            caller_id: None,
            logged: false,
        };
        let sources = self.gateway.sources();
        let mut decided = decide_reusing(&sources, &mut self.setting, &input, now);
        // A clock set back within the tolerance: allowed only if allowed at
        // the latest instant decided on too, as CheckCall (the precise
        // reading at the run's start is compared: the coarse `now` lags it).
        // So is an `at` from the clock on (a dialer's own "now" or later,
        // found by review); one before it screens the past.
        if at.is_none_or(|at| at >= self.now)
            && decided.evaluation.verdict == Verdict::Allow
            && let Some(latest) = self.latest_ahead
            && latest > now
        {
            let then = decide_reusing(&sources, &mut self.setting, &input, latest);
            if then.evaluation.verdict == Verdict::Deny {
                decided = then;
            }
        }
        ScreenOutcome {
            verdict: decided.evaluation.verdict,
            reasons: decided.evaluation.reasons,
            normalized_number: called.map(|n| n.e164).unwrap_or_default(),
            next_allowed_at: decided.evaluation.next_allowed_at,
        }
    }
}

/// Counts screened numbers into the status counters in batches of
/// [`ScreenedTally::BATCH`] and when dropped: every thread screening a list
/// adding to the same two counters for every number made their cache line
/// bounce between the cores. The counters lag an open stream by less than
/// a batch.
#[derive(Debug)]
pub struct ScreenedTally {
    stats: Arc<Stats>,
    pending: u64,
}

impl ScreenedTally {
    const BATCH: u64 = 256;

    /// Counts one screened number.
    pub fn add(&mut self) {
        self.pending += 1;
        if self.pending >= Self::BATCH {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.pending > 0 {
            self.stats.record_screened(self.pending);
            self.pending = 0;
        }
    }
}

impl Drop for ScreenedTally {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Control characters are refused in every field, C1 (U+0080 to
    /// U+009F) included (found by review: `r\u{85}x` was logged and
    /// exported raw); other characters are not.
    #[test]
    fn test_fields_refuse_control_characters() {
        for bad in ["r\u{0}x", "r\u{1b}x", "r\u{7f}x", "r\u{85}x", "r\u{9b}x"] {
            assert!(bounded("request_id", bad, 256).is_err(), "{bad:?}");
        }
        for good in ["r-1", "r\tx", "caf\u{e9}", "\u{a0}+39", "\u{c2}\u{a9}"] {
            assert!(bounded("request_id", good, 256).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn test_screened_tally_counts_in_batches_and_the_rest_when_dropped() {
        let stats = Arc::new(Stats::default());
        let mut tally = ScreenedTally {
            stats: Arc::clone(&stats),
            pending: 0,
        };
        for _ in 0..300 {
            tally.add();
        }
        assert_eq!(stats.metrics.screened.get(), 256);
        drop(tally);
        assert_eq!(stats.metrics.screened.get(), 300);
        assert_eq!(stats.counts().screened, 300);
    }
}
