//! Live counters for the status endpoint: decisions by verdict and reason,
//! and their latency ([`LatencyHistogram`]).

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

pub use crate::histogram::LatencyHistogram;
use crate::model::{Reason, ReasonCode, Verdict};

/// Prometheus metrics (the `prometheus` crate): decision counters and the
/// latency histogram are updated as decisions happen; gauges about
/// registries and the log are set when `/metrics` is scraped.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub registry: prometheus::Registry,
    pub decisions: prometheus::IntCounterVec,
    pub latency: prometheus::Histogram,
    pub unavailable: prometheus::IntCounter,
    pub screened: prometheus::IntCounter,
    pub registry_numbers: prometheus::GaugeVec,
    pub registry_age_seconds: prometheus::GaugeVec,
    pub registry_stale: prometheus::GaugeVec,
    pub registry_version: prometheus::GaugeVec,
    pub registry_import_seconds: prometheus::GaugeVec,
    pub log_backlog: prometheus::Gauge,
    pub log_written: prometheus::Gauge,
    pub log_failed_batches: prometheus::Gauge,
    pub log_batch_size_avg: prometheus::Gauge,
    pub log_last_batch_size: prometheus::Gauge,
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
        let gauge = |name: &str, help: &str| Gauge::new(name, help).expect("valid metric");
        let metrics = Metrics {
            decisions: IntCounterVec::new(
                Opts::new(
                    "dialgate_decisions_total",
                    "Logged CheckCall decisions, one sample per reason",
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
            log_backlog: gauge(
                "dialgate_log_backlog",
                "Decisions waiting for the log writer",
            ),
            log_written: gauge(
                "dialgate_log_written_total",
                "Decisions committed since start",
            ),
            log_failed_batches: gauge(
                "dialgate_log_failed_batches_total",
                "Group commits that failed since start",
            ),
            log_batch_size_avg: gauge(
                "dialgate_log_batch_size_avg",
                "Decisions per group commit, average since start",
            ),
            log_last_batch_size: gauge(
                "dialgate_log_last_batch_size",
                "Decisions in the last group commit",
            ),
            ready: gauge("dialgate_ready", "1 when ready to decide"),
            registry,
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(metrics.decisions.clone()),
            Box::new(metrics.latency.clone()),
            Box::new(metrics.unavailable.clone()),
            Box::new(metrics.screened.clone()),
            Box::new(metrics.registry_numbers.clone()),
            Box::new(metrics.registry_age_seconds.clone()),
            Box::new(metrics.registry_stale.clone()),
            Box::new(metrics.registry_version.clone()),
            Box::new(metrics.registry_import_seconds.clone()),
            Box::new(metrics.log_backlog.clone()),
            Box::new(metrics.log_written.clone()),
            Box::new(metrics.log_failed_batches.clone()),
            Box::new(metrics.log_batch_size_avg.clone()),
            Box::new(metrics.log_last_batch_size.clone()),
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

/// Decision counters.
#[derive(Debug, Default)]
pub struct Stats {
    recent_denials: std::sync::Mutex<std::collections::VecDeque<RecentDenial>>,
    pub total: AtomicU64,
    pub allow: AtomicU64,
    pub deny: AtomicU64,
    pub unavailable: AtomicU64,
    pub screened: AtomicU64,
    by_reason: [AtomicU64; ReasonCode::ALL.len()],
    pub latency: LatencyHistogram,
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
    pub by_reason: std::collections::BTreeMap<&'static str, u64>,
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
        let verdict_label = if verdict == Verdict::Allow {
            "allow"
        } else {
            "deny"
        };
        for reason in reasons {
            self.metrics
                .decisions
                .with_label_values(&[verdict_label, reason.code.as_str(), campaign])
                .inc();
        }
        self.metrics.latency.observe(latency_us as f64 / 1e6);
        self.total.fetch_add(1, Ordering::Relaxed);
        match verdict {
            Verdict::Allow => self.allow.fetch_add(1, Ordering::Relaxed),
            Verdict::Deny => self.deny.fetch_add(1, Ordering::Relaxed),
        };
        for reason in reasons {
            self.by_reason[reason.code.index()].fetch_add(1, Ordering::Relaxed);
        }
        self.latency.record(latency_us);
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
        DecisionCounts {
            total: self.total.load(Ordering::Relaxed),
            allow: self.allow.load(Ordering::Relaxed),
            deny: self.deny.load(Ordering::Relaxed),
            unavailable: self.unavailable.load(Ordering::Relaxed),
            screened: self.screened.load(Ordering::Relaxed),
            by_reason: ReasonCode::ALL
                .iter()
                .map(|code| {
                    (
                        code.as_str(),
                        self.by_reason[code.index()].load(Ordering::Relaxed),
                    )
                })
                .filter(|(_, n)| *n > 0)
                .collect(),
        }
    }

    pub fn latency_summary(&self) -> LatencySummary {
        LatencySummary::of(&self.latency)
    }
}
