//! The HTTP status endpoint: `/status` (JSON), `/` (supervisor page),
//! `/metrics` (Prometheus text), `/livez`, `/readyz`. Read-only views of the
//! shared state; nothing here decides anything.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::get;
use jiff::Timestamp;
use serde::Serialize;

use crate::auth::{ApiKeys, Role};
use crate::calling::{self, WindowCheck, zones};
use crate::history::HistoryView;
use crate::shared::Shared;
use crate::stats::{DecisionCounts, LatencySummary};

/// The supervisor page: self-contained, no external assets.
const PAGE: &str = include_str!("supervisor.html");

/// Builds the HTTP router: probes are open, everything else needs a
/// supervisor (or admin) key once keys are configured.
pub fn router(shared: Arc<Shared>, keys: Arc<ApiKeys>) -> Router {
    let supervised = Router::new()
        .route("/", get(page))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .layer(axum::middleware::from_fn_with_state(
            keys,
            require_supervisor,
        ));
    Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .merge(supervised)
        .with_state(shared)
}

async fn require_supervisor(
    State(keys): State<Arc<ApiKeys>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match keys.check(header, Some(Role::Supervisor)) {
        Ok(_) => next.run(request).await,
        Err(err) => {
            let (status, message) = crate::error::http_parts(&err);
            let mut response = (status, message + "\n").into_response();
            if status == StatusCode::UNAUTHORIZED {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
            }
            response
        }
    }
}

#[derive(Serialize)]
struct LogStatus {
    backlog: usize,
    written: u64,
    batches: u64,
    failed_batches: u64,
    last_batch_size: usize,
    /// Group commit durations (fsync included), µs.
    commit: LatencySummary,
    last_error: Option<String>,
}

#[derive(Serialize)]
struct CampaignWindow {
    campaign: String,
    destination: String,
    /// `open`, `closed`, `unrestricted` or `unknown_zone`, in the
    /// destination's main zone (US: New York; a number's own zones decide its calls).
    state: &'static str,
    closes_at: Option<Timestamp>,
    next_open: Option<Timestamp>,
}

#[derive(Serialize)]
struct StatusBody {
    version: &'static str,
    now: Timestamp,
    ready: bool,
    uptime_seconds: u64,
    registries: Vec<crate::registry::RegistryStatus>,
    campaigns: Vec<CampaignWindow>,
    /// The compiled policy's version (logged with every decision).
    policy_version: String,
    /// The time-zone data every local time is computed with.
    time_zones: crate::tz_data::TzReport,
    /// Campaign destinations whose every call is denied (a registry the law
    /// requires is not configured), now.
    blocked: Vec<crate::policy::Blocked>,
    /// `[destination.XX]` overrides of the built-in statutes.
    overrides: Vec<crate::policy::OverrideReport>,
    decisions: DecisionCounts,
    /// The latest denials, newest first, numbers masked.
    recent_denials: Vec<crate::stats::RecentDenial>,
    latency: LatencySummary,
    log: LogStatus,
    /// The last hour per minute, oldest first, for the page's charts.
    history: HistoryView,
    /// The scheduled retention purge: ceilings' schedule, last run, next run.
    retention: serde_json::Value,
    /// The data directory at rest: filesystem, encryption, warnings.
    at_rest: crate::at_rest::AtRest,
}

fn status_body(shared: &Shared) -> StatusBody {
    let counters = shared.log.counters();
    let now_seconds = crate::history::now_seconds();
    StatusBody {
        version: env!("CARGO_PKG_VERSION"),
        now: Timestamp::now(),
        ready: shared.is_ready(),
        uptime_seconds: shared.started.elapsed().as_secs(),
        registries: shared.registries.status(Timestamp::now()),
        campaigns: campaign_windows(shared, Timestamp::now()),
        policy_version: shared.policies.version.clone(),
        time_zones: crate::tz_data::report(),
        blocked: shared
            .policies
            .blocked_at(Timestamp::now())
            .into_iter()
            .cloned()
            .collect(),
        overrides: shared.policies.overrides.clone(),
        decisions: shared.stats.counts_at(now_seconds),
        recent_denials: shared.stats.recent_denials(),
        latency: shared.stats.latency_summary(),
        log: LogStatus {
            backlog: counters.backlog.get().max(0) as usize,
            written: counters.written.get(),
            batches: counters.batches(),
            failed_batches: counters.failed_batches.get(),
            last_batch_size: counters.last_batch_size.load(Ordering::Relaxed),
            commit: LatencySummary::of(&counters.commit_us),
            last_error: counters.last_error.lock().expect("log error lock").clone(),
        },
        history: HistoryView::of(&shared.stats.history, &counters.commit_history, now_seconds),
        retention: shared.retention.snapshot(),
        at_rest: shared.at_rest.clone(),
    }
}

/// Whether each campaign may call each destination now, anywhere in it.
fn campaign_windows(shared: &Shared, now: Timestamp) -> Vec<CampaignWindow> {
    let mut out = Vec::new();
    for campaign in &shared.config.campaigns {
        for region in &campaign.destinations {
            let Some(era) = shared.policies.era(&campaign.id, *region, now) else {
                continue;
            };
            // The destination's main zone (a territory's own, the
            // statute's), else every zone of its calling code.
            let zones: &'static [&'static str] = match (
                crate::statutes::territories::territory(region.as_str()),
                crate::statutes::statute(region.as_str()),
            ) {
                (Some(territory), _) => std::slice::from_ref(&territory.zone),
                (None, Some(statute)) => std::slice::from_ref(&statute.zone),
                (None, None) => zones::region_zones(region.calling_code()).zones,
            };
            let check = calling::check(
                &calling::WindowInput {
                    region: region.as_str(),
                    zones,
                    zones_id: 0,
                    state: None,
                    destination: &era.window,
                    campaign: era.campaign_hours.as_ref(),
                    memo_key: 0,
                },
                now,
            );
            let (state, closes_at, next_open) = match check {
                WindowCheck::Unrestricted => ("unrestricted", None, None),
                WindowCheck::Inside { closes_at } => ("open", Some(closes_at), None),
                WindowCheck::Outside { next_open } => ("closed", None, next_open),
                WindowCheck::UnknownZone => ("unknown_zone", None, None),
            };
            out.push(CampaignWindow {
                campaign: campaign.id.clone(),
                destination: region.to_string(),
                state,
                closes_at,
                next_open,
            });
        }
    }
    out
}

async fn status(State(shared): State<Arc<Shared>>) -> Json<StatusBody> {
    Json(status_body(&shared))
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

async fn livez() -> &'static str {
    "alive\n"
}

async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    if shared.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let now = Timestamp::now();
    let metrics = &shared.stats.metrics;
    for r in shared.registries.status(now) {
        let labels = [r.id.as_str()];
        metrics
            .registry_numbers
            .with_label_values(&labels)
            .set(r.numbers as f64);
        metrics
            .registry_stale
            .with_label_values(&labels)
            .set(f64::from(u8::from(r.stale)));
        if let Some(version) = r.version {
            metrics
                .registry_version
                .with_label_values(&labels)
                .set(version as f64);
        }
        if let Some(checked_at) = r
            .checked_at
            .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC).ok())
        {
            let age = now.as_second() - checked_at.timestamp().as_second();
            metrics
                .registry_age_seconds
                .with_label_values(&labels)
                .set(age as f64);
        }
        if let Some(seconds) = r.import_seconds {
            metrics
                .registry_import_seconds
                .with_label_values(&labels)
                .set(seconds);
        }
    }
    metrics.ready.set(f64::from(u8::from(shared.is_ready())));
    let mut families = metrics.registry.gather();
    families.extend(shared.log.counters().registry.gather());
    families.sort_by(|a, b| a.name().cmp(b.name()));
    let mut body = String::new();
    if let Err(err) = prometheus::TextEncoder::new().encode_utf8(&families, &mut body) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode metrics: {err}\n"),
        )
            .into_response();
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}
