//! Live counters for the status endpoint: decisions by verdict and reason,
//! and their latency ([`LatencyHistogram`]).

use serde::Serialize;
use std::collections::BTreeMap;

pub use crate::histogram::LatencyHistogram;
use crate::history::DecisionHistory;
use crate::model::{Reason, ReasonCode, Verdict};

/// Prometheus metrics (the `prometheus` crate), the one source of the
/// decision counters: `/status` reads its totals from them. Counters and
/// histograms are updated as decisions happen; the gauges about registries
/// and readiness describe state and are set when `/metrics` is scraped. The
/// decision log's metrics live with its writer
/// ([`crate::decision_log::LogCounters`]).
#[derive(Debug, Clone)]
pub struct Metrics {
    pub registry: prometheus::Registry,
    /// Logged decisions, one per decision, by verdict and campaign.
    pub decisions: prometheus::IntCounterVec,
    /// The reasons of logged decisions, one per reason.
    pub decision_reasons: prometheus::IntCounterVec,
    pub latency: prometheus::Histogram,
    pub unavailable: prometheus::IntCounter,
    pub screened: prometheus::IntCounter,
    pub registry_numbers: prometheus::GaugeVec,
    pub registry_age_seconds: prometheus::GaugeVec,
    pub registry_stale: prometheus::GaugeVec,
    pub registry_version: prometheus::GaugeVec,
    pub registry_import_seconds: prometheus::GaugeVec,
    pub ready: prometheus::Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        use prometheus::{
            Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts,
        };
        let registry = prometheus::Registry::new();
        let gauge_vec = |name: &str, help: &str| {
            GaugeVec::new(Opts::new(name, help), &["registry"]).expect("valid metric")
        };
        let metrics = Metrics {
            decisions: IntCounterVec::new(
                Opts::new(
                    "dialgate_decisions_total",
                    "Logged CheckCall decisions, by verdict and campaign",
                ),
                &["verdict", "campaign"],
            )
            .expect("valid metric"),
            decision_reasons: IntCounterVec::new(
                Opts::new(
                    "dialgate_decision_reasons_total",
                    "Reasons of logged CheckCall decisions, one per reason of each decision",
                ),
                &["verdict", "reason", "campaign"],
            )
            .expect("valid metric"),
            latency: Histogram::with_opts(
                HistogramOpts::new(
                    "dialgate_decision_latency_seconds",
                    "CheckCall latency including the durable log write",
                )
                .buckets(vec![
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
                ]),
            )
            .expect("valid metric"),
            unavailable: IntCounter::new(
                "dialgate_unavailable_total",
                "CheckCalls answered UNAVAILABLE: not logged, not decided",
            )
            .expect("valid metric"),
            screened: IntCounter::new(
                "dialgate_screened_total",
                "Numbers screened by ScreenNumbers",
            )
            .expect("valid metric"),
            registry_numbers: gauge_vec(
                "dialgate_registry_numbers",
                "Numbers in the registry snapshot in service",
            ),
            registry_age_seconds: gauge_vec(
                "dialgate_registry_age_seconds",
                "Age of the oldest data in the snapshot",
            ),
            registry_stale: gauge_vec(
                "dialgate_registry_stale",
                "1 when some data of the registry is stale or missing",
            ),
            registry_version: gauge_vec(
                "dialgate_registry_version",
                "Version of the snapshot in service",
            ),
            registry_import_seconds: gauge_vec(
                "dialgate_registry_import_seconds",
                "Duration of the import that made the snapshot",
            ),
            ready: Gauge::new("dialgate_ready", "1 when ready to decide").expect("valid metric"),
            registry,
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(metrics.decisions.clone()),
            Box::new(metrics.decision_reasons.clone()),
            Box::new(metrics.latency.clone()),
            Box::new(metrics.unavailable.clone()),
            Box::new(metrics.screened.clone()),
            Box::new(metrics.registry_numbers.clone()),
            Box::new(metrics.registry_age_seconds.clone()),
            Box::new(metrics.registry_stale.clone()),
            Box::new(metrics.registry_version.clone()),
            Box::new(metrics.registry_import_seconds.clone()),
            Box::new(metrics.ready.clone()),
        ];
        for collector in collectors {
            metrics
                .registry
                .register(collector)
                .expect("metric names are unique");
        }
        metrics
    }
}

/// Every sample of a counter vector: its labels and value.
fn samples(counters: &prometheus::IntCounterVec) -> Vec<(Vec<(String, String)>, u64)> {
    use prometheus::core::Collector;
    counters
        .collect()
        .iter()
        .flat_map(|family| family.get_metric())
        .map(|metric| {
            let labels = metric
                .get_label()
                .iter()
                .map(|l| (l.name().to_string(), l.value().to_string()))
                .collect();
            (labels, metric.get_counter().get_value() as u64)
        })
        .collect()
}

fn label<'a>(labels: &'a [(String, String)], name: &str) -> Option<&'a str> {
    labels
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// A recent denial, for the supervisor page (number masked).
#[derive(Debug, Clone, Serialize)]
pub struct RecentDenial {
    pub at: jiff::Timestamp,
    pub campaign: String,
    pub number: String,
    pub reasons: Vec<&'static str>,
}

/// How many recent denials are kept.
const RECENT_DENIALS: usize = 20;

/// Decision counters: the Prometheus metrics, the latency quantiles and
/// the last hour for the page.
#[derive(Debug, Default)]
pub struct Stats {
    recent_denials: std::sync::Mutex<std::collections::VecDeque<RecentDenial>>,
    /// CheckCall latency for `/status` quantiles (Prometheus' histogram has
    /// too few buckets for percentiles).
    pub latency: LatencyHistogram,
    /// The last hour, per minute, for the page's charts.
    pub history: DecisionHistory,
    pub metrics: Metrics,
}

/// A copy of the counters, for `/status`.
#[derive(Debug, Serialize)]
pub struct DecisionCounts {
    pub total: u64,
    pub allow: u64,
    pub deny: u64,
    /// CheckCalls answered UNAVAILABLE (not logged, not decided).
    pub unavailable: u64,
    pub screened: u64,
    /// Decisions logged in the last 60 seconds.
    pub last_minute: u64,
    /// Every reason of every decision, allow bases included.
    pub by_reason: BTreeMap<&'static str, u64>,
    /// The reasons of DENY decisions only.
    pub deny_by_reason: BTreeMap<&'static str, u64>,
    /// The bases of ALLOW decisions only.
    pub allow_by_reason: BTreeMap<&'static str, u64>,
}

/// Latency percentiles, in microseconds.
#[derive(Debug, Serialize)]
pub struct LatencySummary {
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
}

impl LatencySummary {
    /// The quantiles of `histogram`.
    pub fn of(histogram: &LatencyHistogram) -> LatencySummary {
        LatencySummary {
            p50_us: histogram.quantile(0.50),
            p90_us: histogram.quantile(0.90),
            p99_us: histogram.quantile(0.99),
            p999_us: histogram.quantile(0.999),
        }
    }
}

fn verdict_label(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Allow => "allow",
        Verdict::Deny => "deny",
    }
}

/// The label a decision is counted under: the configured campaign's id, or
/// `(unknown)` for any id not configured (client strings never become
/// metric series).
pub fn campaign_label(campaign: Option<&crate::config::CampaignConfig>) -> &str {
    campaign.map_or("(unknown)", |c| c.id.as_str())
}

impl Stats {
    /// Counts one logged decision.
    pub fn record_decision(
        &self,
        verdict: Verdict,
        reasons: &[Reason],
        campaign: &str,
        latency_us: u64,
    ) {
        self.record_decision_at(
            crate::history::now_seconds(),
            verdict,
            reasons,
            campaign,
            latency_us,
        );
    }

    /// Counts one logged decision made at `now` (seconds since the epoch).
    pub fn record_decision_at(
        &self,
        now: i64,
        verdict: Verdict,
        reasons: &[Reason],
        campaign: &str,
        latency_us: u64,
    ) {
        let verdict_label = verdict_label(verdict);
        self.metrics
            .decisions
            .with_label_values(&[verdict_label, campaign])
            .inc();
        for reason in reasons {
            self.metrics
                .decision_reasons
                .with_label_values(&[verdict_label, reason.code.as_str(), campaign])
                .inc();
        }
        self.metrics.latency.observe(latency_us as f64 / 1e6);
        self.latency.record(latency_us);
        self.history.record(now, verdict, reasons, latency_us);
    }

    /// Counts a CheckCall answered UNAVAILABLE (not logged, not decided).
    pub fn record_unavailable(&self) {
        self.metrics.unavailable.inc();
        self.history
            .record_unavailable(crate::history::now_seconds());
    }

    /// Counts screened numbers.
    pub fn record_screened(&self, numbers: u64) {
        self.metrics.screened.inc_by(numbers);
    }

    /// Remembers a denial (the number is masked here).
    pub fn record_denial(&self, campaign: &str, number: &str, reasons: &[Reason]) {
        let mut recent = self.recent_denials.lock().expect("recent denials lock");
        if recent.len() == RECENT_DENIALS {
            recent.pop_front();
        }
        recent.push_back(RecentDenial {
            at: jiff::Timestamp::now(),
            campaign: campaign.to_string(),
            number: crate::number::mask(number),
            reasons: reasons.iter().map(|r| r.code.as_str()).collect(),
        });
    }

    /// The latest denials, newest first.
    pub fn recent_denials(&self) -> Vec<RecentDenial> {
        self.recent_denials
            .lock()
            .expect("recent denials lock")
            .iter()
            .rev()
            .cloned()
            .collect()
    }

    pub fn counts(&self) -> DecisionCounts {
        self.counts_at(crate::history::now_seconds())
    }

    /// The counters, with the last minute's count as of `now`.
    pub fn counts_at(&self, now: i64) -> DecisionCounts {
        let (mut allow, mut deny) = (0, 0);
        for (labels, n) in samples(&self.metrics.decisions) {
            match label(&labels, "verdict") {
                Some("allow") => allow += n,
                Some("deny") => deny += n,
                _ => {}
            }
        }
        let mut by_verdict = [[0u64; ReasonCode::ALL.len()]; 2];
        for (labels, n) in samples(&self.metrics.decision_reasons) {
            let side = match label(&labels, "verdict") {
                Some("allow") => 0,
                Some("deny") => 1,
                _ => continue,
            };
            if let Some(code) = label(&labels, "reason")
                .and_then(|name| ReasonCode::ALL.iter().find(|c| c.as_str() == name))
            {
                by_verdict[side][code.index()] += n;
            }
        }
        let table = |counts: &dyn Fn(ReasonCode) -> u64| -> BTreeMap<&'static str, u64> {
            ReasonCode::ALL
                .iter()
                .map(|code| (code.as_str(), counts(*code)))
                .filter(|(_, n)| *n > 0)
                .collect()
        };
        DecisionCounts {
            total: allow + deny,
            allow,
            deny,
            unavailable: self.metrics.unavailable.get(),
            screened: self.metrics.screened.get(),
            last_minute: self.history.last_minute(now),
            by_reason: table(&|c| by_verdict[0][c.index()] + by_verdict[1][c.index()]),
            deny_by_reason: table(&|c| {
                if c.is_deny() {
                    by_verdict[1][c.index()]
                } else {
                    0
                }
            }),
            allow_by_reason: table(&|c| {
                if c.is_deny() {
                    0
                } else {
                    by_verdict[0][c.index()]
                }
            }),
        }
    }

    pub fn latency_summary(&self) -> LatencySummary {
        LatencySummary::of(&self.latency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reasons(codes: &[ReasonCode]) -> Vec<Reason> {
        codes
            .iter()
            .map(|&code| Reason {
                code,
                detail: String::new(),
            })
            .collect()
    }

    #[test]
    fn test_deny_reasons_leave_out_allow_bases() {
        let stats = Stats::default();
        let t = 1_800_000_000;
        stats.record_decision_at(
            t,
            Verdict::Allow,
            &reasons(&[ReasonCode::RegistryClear]),
            "it-sales",
            100,
        );
        stats.record_decision_at(
            t,
            Verdict::Deny,
            &reasons(&[ReasonCode::RegistryNotCovered, ReasonCode::NoConsent]),
            "it-sales",
            100,
        );
        let counts = stats.counts_at(t);
        assert_eq!((counts.total, counts.allow, counts.deny), (2, 1, 1));
        assert!(
            !counts.deny_by_reason.contains_key("REGISTRY_CLEAR"),
            "{:?}",
            counts.deny_by_reason
        );
        assert_eq!(counts.deny_by_reason["REGISTRY_NOT_COVERED"], 1);
        assert_eq!(counts.deny_by_reason["NO_CONSENT"], 1);
        assert_eq!(counts.allow_by_reason.len(), 1);
        assert_eq!(counts.allow_by_reason["REGISTRY_CLEAR"], 1);
        assert_eq!(counts.by_reason.len(), 3, "every reason");
    }

    #[test]
    fn test_decisions_per_minute_counts_a_burst_right_after_it() {
        let stats = Stats::default();
        let t = 1_800_000_000;
        for _ in 0..301 {
            stats.record_decision_at(
                t,
                Verdict::Deny,
                &reasons(&[ReasonCode::RegistryListed]),
                "(unknown)",
                50,
            );
        }
        assert_eq!(stats.counts_at(t).last_minute, 301);
        assert_eq!(stats.counts_at(t + 1).last_minute, 301);
        assert_eq!(stats.counts_at(t + 61).last_minute, 0);
        assert_eq!(stats.counts_at(t + 61).total, 301);
    }

    #[test]
    fn test_counters_have_one_source_and_prometheus_names() {
        let stats = Stats::default();
        stats.record_decision(
            Verdict::Allow,
            &reasons(&[ReasonCode::Consent]),
            "it-sales",
            100,
        );
        stats.record_unavailable();
        stats.record_screened(3);
        let counts = stats.counts();
        assert_eq!(
            (counts.total, counts.unavailable, counts.screened),
            (1, 1, 3)
        );
        assert_eq!(counts.last_minute, 1);
        for family in stats.metrics.registry.gather() {
            let name = family.name();
            let counter = family.get_field_type() == prometheus::proto::MetricType::COUNTER;
            assert_eq!(name.ends_with("_total"), counter, "{name}");
            assert!(!name.ends_with("_avg"), "{name}");
        }
    }
}
