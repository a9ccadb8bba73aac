//! `dialgate serve`: opens the stores, loads the registries, and runs the gRPC
//! API and the HTTP status endpoint until the shutdown signal; then stops
//! accepting, lets in-flight calls finish, and flushes the decision log.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use jiff::Timestamp;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::StreamExt;
use tonic_health::ServingStatus;

use crate::attempts::AttemptLedger;
use crate::config::Config;
use crate::contacts::ContactStore;
use crate::decision_log::{self, DecisionLog};
use crate::gateway::{Gateway, GatewayParts};
use crate::grpc::{ComplianceGatewayService, ContactRecordsService};
use crate::number::NumberKey;
use crate::policy::Policies;
use crate::proto::compliance_gateway_server::ComplianceGatewayServer;
use crate::proto::contact_records_server::ContactRecordsServer;
use crate::records::Records;
use crate::registry::{self, RegistrySet, import};
pub use crate::shared::Shared;
use crate::stats::Stats;

/// Start-up report of what the compiled policy means for the operator:
/// blocked campaign destinations are errors, overrides of the law warnings.
fn report_policies(policies: &Policies) {
    tracing::info!(version = %policies.version, "policy compiled");
    for blocked in policies.blocked_at(Timestamp::now()) {
        tracing::error!(
            campaign = %blocked.campaign,
            destination = %blocked.destination,
            reason = %blocked.reason,
            "every call of this campaign to this destination will be denied REGISTRY_UNAVAILABLE"
        );
    }
    for o in &policies.overrides {
        tracing::warn!(
            destination = %o.destination,
            from = ?o.from,
            settings = %o.settings.join(", "),
            source = %o.source,
            "the statute of this destination is overridden by the configuration"
        );
    }
    for warning in &policies.warnings {
        tracing::warn!("{warning}");
    }
}

/// Runs the server until `shutdown` completes.
///
/// # Errors
/// When a store cannot be opened or an address cannot be bound.
pub async fn serve(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let data_dir = config.server.data_dir.clone();
    crate::private::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create data_dir {}", data_dir.display()))?;
    crate::private::tighten_data_dir(&data_dir);
    if let Some(key_file) = &config.log.checkpoint_key_file
        && let Some(warning) = crate::private::exposed_secret(key_file)
    {
        tracing::warn!(key_file = %key_file.display(), "checkpoint key: {warning}");
    }
    let snapshots = registry::snapshots_dir(&data_dir);
    for path in registry::file::remove_all_temporaries(&snapshots) {
        tracing::warn!(path = %path.display(), "removed a leftover temporary snapshot file");
    }
    seed_registries(&config, &snapshots)?;

    let policies = Arc::new(Policies::compile(&config));
    report_policies(&policies);
    let registries = Arc::new(RegistrySet::open(&config.registries, &snapshots));
    let contacts = Arc::new(ContactStore::open(&data_dir).context("cannot open contact store")?);
    let contacts_for_refresh = Arc::clone(&contacts);
    let window = jiff::SignedDuration::from_secs(config.log.idempotency_window_seconds as i64);
    let recent_since = Timestamp::now()
        .checked_sub(window)
        .unwrap_or(Timestamp::UNIX_EPOCH);
    let attempts_since = policies
        .longest_cap_window()
        .and_then(|window| Timestamp::now().checked_sub(window).ok());
    let (log, startup) = DecisionLog::open(
        &decision_log::database_path(&data_dir),
        &config.log,
        decision_log::StartupScan {
            idempotency_since: recent_since,
            attempts_since,
        },
    )
    .context("cannot open decision log")?;
    let log = Arc::new(log);
    let stats = Arc::new(Stats::default());
    stats
        .metrics
        .registry
        .register(Box::new(log.counters().commit_seconds.clone()))
        .context("cannot register the log's metrics")?;
    let config = Arc::new(config);
    let attempts = Arc::new(AttemptLedger::default());
    for (controller, number, at) in &startup.allowed {
        if let Some(key) = NumberKey::from_e164(number) {
            attempts.record(controller, key, *at);
        }
    }
    let gateway = Arc::new(Gateway::new(
        Arc::clone(&config),
        GatewayParts {
            policies: Arc::clone(&policies),
            registries: Arc::clone(&registries),
            contacts: Arc::clone(&contacts),
            log: Arc::clone(&log),
            stats: Arc::clone(&stats),
            attempts: Arc::clone(&attempts),
        },
        startup.recent,
    ));
    let shared = Arc::new(Shared {
        config: Arc::clone(&config),
        policies: Arc::clone(&policies),
        registries: Arc::clone(&registries),
        log: Arc::clone(&log),
        stats,
        started: Instant::now(),
        ready: AtomicBool::new(false),
    });

    let grpc_listener = TcpListener::bind(&config.server.grpc_addr)
        .await
        .with_context(|| format!("cannot bind grpc_addr {}", config.server.grpc_addr))?;
    let http_listener = TcpListener::bind(&config.server.http_addr)
        .await
        .with_context(|| format!("cannot bind http_addr {}", config.server.http_addr))?;
    let grpc_addr = grpc_listener.local_addr()?;
    let http_addr = http_listener.local_addr()?;

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status("", ServingStatus::NotServing)
        .await;
    health
        .set_not_serving::<ComplianceGatewayServer<ComplianceGatewayService>>()
        .await;
    health
        .set_not_serving::<ContactRecordsServer<ContactRecordsService>>()
        .await;
    let reflection_builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection = reflection_builder()
        .build_v1()
        .context("cannot build reflection service")?;
    // v1alpha too: Python's grpcio-reflection and older grpcurl speak only it.
    let reflection_v1alpha = reflection_builder()
        .build_v1alpha()
        .context("cannot build reflection service (v1alpha)")?;

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });

    let api_keys = Arc::new(crate::auth::ApiKeys::new(config.api_keys.clone()));
    if api_keys.enabled() {
        tracing::info!(keys = config.api_keys.len(), "API keys required");
    }
    let router = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(crate::listen::HTTP2_KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(crate::listen::HTTP2_KEEPALIVE_TIMEOUT))
        .layer(crate::listen::TrackLayer)
        .layer(crate::auth::GrpcAuthLayer {
            keys: Arc::clone(&api_keys),
        })
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .add_service(ComplianceGatewayServer::new(ComplianceGatewayService::new(
            Arc::clone(&gateway),
        )))
        .add_service(ContactRecordsServer::new(ContactRecordsService::new(
            Records::new(contacts, decision_log::database_path(&data_dir)).with_campaigns(
                config
                    .campaigns
                    .iter()
                    .map(|c| (c.id.clone(), c.controller.clone())),
            ),
        )));
    let http_router = crate::http::router(Arc::clone(&shared), Arc::clone(&api_keys))
        .merge(crate::http_decision::router(gateway, api_keys));
    let tls = config
        .server
        .tls
        .as_ref()
        .map(crate::tls::acceptors)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    // SIGHUP's default action would kill the server: it is always handled
    // (registered here, before the server announces itself).
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(hangups) => {
            let cert = tls.as_ref().map(|a| Arc::clone(&a.cert));
            tokio::spawn(on_sighup(hangups, cert));
        }
        Err(err) => tracing::error!(error = %err, "cannot listen for SIGHUP"),
    }
    if let Some(tls) = &config.server.tls {
        tracing::info!(mutual = tls.client_ca_file.is_some(), "TLS on");
    }
    let limits = crate::listen::Limits {
        max_connections: crate::listen::fit_to_descriptor_limit(config.server.max_connections, 2),
        idle_timeout: Duration::from_millis(config.server.idle_timeout_ms),
        header_timeout: Duration::from_millis(config.server.header_timeout_ms),
    };
    tracing::info!(
        max_connections = limits.max_connections,
        idle_timeout_ms = config.server.idle_timeout_ms,
        header_timeout_ms = config.server.header_timeout_ms,
        "connection limits (per listener)"
    );
    let grpc_connections = crate::listen::accept_loop(
        "grpc",
        grpc_listener,
        tls.as_ref().map(|a| a.grpc.clone()),
        limits,
    );
    let incoming =
        tokio_stream::wrappers::ReceiverStream::new(grpc_connections).map(Ok::<_, std::io::Error>);
    let grpc = router.serve_with_incoming_shutdown(incoming, stopped(stop_rx.clone()));
    let listener = crate::listen::Listener {
        connections: crate::listen::accept_loop(
            "http",
            http_listener,
            tls.as_ref().map(|a| a.http.clone()),
            limits,
        ),
        local: http_addr,
    };
    let http = axum::serve(listener, crate::listen::TrackedRouter(http_router))
        .with_graceful_shutdown(stopped(stop_rx.clone()));
    let grpc_task = tokio::spawn(async move { grpc.await.map_err(anyhow::Error::from) });
    let http_task = tokio::spawn(async move { http.await.map_err(anyhow::Error::from) });
    let prune_task = policies.longest_cap_window().map(|window| {
        let attempts = Arc::clone(&attempts);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_secs(600));
            loop {
                ticker.tick().await;
                attempts.prune(window, Timestamp::now());
            }
        })
    });
    let reload_task = tokio::spawn(reload_data(
        Arc::clone(&registries),
        Arc::clone(&contacts_for_refresh),
        Duration::from_millis(config.server.registry_reload_interval_ms),
        stop_rx.clone(),
    ));

    health.set_service_status("", ServingStatus::Serving).await;
    health
        .set_serving::<ComplianceGatewayServer<ComplianceGatewayService>>()
        .await;
    health
        .set_serving::<ContactRecordsServer<ContactRecordsService>>()
        .await;
    shared.ready.store(true, Ordering::Relaxed);
    announce(grpc_addr, http_addr);

    stopped(stop_rx).await;
    tracing::info!("shutting down: draining in-flight calls");
    shared.ready.store(false, Ordering::Relaxed);
    health
        .set_service_status("", ServingStatus::NotServing)
        .await;
    let grace = Duration::from_millis(config.server.shutdown_grace_ms);
    let drained = tokio::time::timeout(grace, async {
        let _ = grpc_task.await;
        let _ = http_task.await;
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            grace_ms = config.server.shutdown_grace_ms,
            "grace period over: closing with calls in flight"
        );
    }
    reload_task.abort();
    if let Some(task) = prune_task {
        task.abort();
    }
    let log_to_close = Arc::clone(&log);
    tokio::task::spawn_blocking(move || log_to_close.close())
        .await
        .context("decision log close failed")?;
    tracing::info!("stopped");
    Ok(())
}

/// On SIGHUP: reloads the TLS certificate when TLS is on (open connections
/// keep theirs); registry snapshots and contact records reload on their own.
/// The configuration is not reloaded: that takes a restart.
async fn on_sighup(
    mut hangups: tokio::signal::unix::Signal,
    cert: Option<Arc<crate::tls::ReloadableCert>>,
) {
    while hangups.recv().await.is_some() {
        let Some(cert) = &cert else {
            tracing::info!(
                "SIGHUP received: nothing to reload without TLS (registries and contact records reload on their own; configuration changes need a restart)"
            );
            continue;
        };
        tracing::info!("SIGHUP received: reloading the TLS certificate");
        match cert.reload() {
            Ok(()) => tracing::info!("TLS certificate reloaded"),
            Err(err) => {
                tracing::error!(error = %err, "TLS certificate reload failed; keeping the current one")
            }
        }
    }
}

/// Tells a watcher (tests, supervisors) where the server listens, on stdout.
fn announce(grpc_addr: std::net::SocketAddr, http_addr: std::net::SocketAddr) {
    use std::io::Write;
    tracing::info!(%grpc_addr, %http_addr, "listening");
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{{\"event\":\"listening\",\"grpc\":\"{grpc_addr}\",\"http\":\"{http_addr}\"}}"
    );
    let _ = out.flush();
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// Picks up new registry snapshots and contact records other processes wrote.
async fn reload_data(
    registries: Arc<RegistrySet>,
    contacts: Arc<ContactStore>,
    every: Duration,
    stop: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if *stop.borrow() {
            return;
        }
        let registries = Arc::clone(&registries);
        let contacts = Arc::clone(&contacts);
        let _ = tokio::task::spawn_blocking(move || {
            registries.reload_changed();
            match contacts.refresh() {
                Ok(0) => {}
                Ok(loaded) => tracing::info!(loaded, "contact records loaded from bulk imports"),
                Err(err) => tracing::error!(error = %err, "contact records refresh failed"),
            }
        })
        .await;
    }
}

/// Demo only: imports a registry's `seed_file` (checked today) when the
/// registry has no snapshot yet, so the built-in configuration serves out of
/// the box. Production configurations leave `seed_file` unset.
fn seed_registries(config: &Config, snapshots: &std::path::Path) -> anyhow::Result<()> {
    for registry in &config.registries {
        let Some(seed) = &registry.seed_file else {
            continue;
        };
        if registry::file::snapshot_path(snapshots, &registry.id).exists() {
            continue;
        }
        let now = Timestamp::now();
        let summary = import::run(
            registry,
            snapshots,
            &import::ImportRequest {
                changes_since: None,
                file: seed.clone(),
                format: Some(import::Format::Lines),
                mode: registry::snapshot::ImportMode::Replace,
                checked_at: now.to_zoned(jiff::tz::TimeZone::UTC).date(),
                controller: registry.seed_controller.clone(),
                // A demo block-list seed stands for the whole national list.
                covers: (registry.kind == crate::model::RegistryKind::Blocklist)
                    .then(|| vec![format!("+{}", registry.country.calling_code())]),
                dry_run: false,
                max_rejects: 0,
                rejects_file: None,
                progress: false,
                allow_shrink: false,
                max_shrink_percent: import::DEFAULT_MAX_SHRINK_PERCENT,
            },
            now,
        )
        .with_context(|| format!("cannot import demo seed of registry {}", registry.id))?;
        tracing::warn!(registry = %registry.id, %summary, "demo seed imported as checked today: not for production");
    }
    Ok(())
}
