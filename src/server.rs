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
use tonic_health::server::HealthReporter;

use crate::attempts::AttemptLedger;
use crate::config::Config;
use crate::contacts::ContactStore;
use crate::contacts::service::Records;
use crate::decision_log::{self, DecisionLog};
use crate::gateway::{Gateway, GatewayParts, Startup};
use crate::grpc::{ComplianceGatewayService, ContactRecordsService};
use crate::number::NumberKey;
use crate::policy::Policies;
use crate::proto::compliance_gateway_server::ComplianceGatewayServer;
use crate::proto::contact_records_server::ContactRecordsServer;
use crate::registry::{self, RegistrySet, import};
pub use crate::shared::Shared;
use crate::stats::Stats;

/// Start-up report of what the compiled policy means for the operator:
/// blocked campaign destinations are errors, overrides of the law warnings.
fn report_policies(policies: &Policies) {
    tracing::info!(version = %policies.version, "policy compiled");
    crate::tz_data::log_choice();
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

/// Runs the server until `shutdown` completes: opens the stores, builds the
/// services, listens, and drains when told to stop.
///
/// # Errors
/// When a store cannot be opened or an address cannot be bound.
pub async fn serve(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let pg = match &config.store {
        crate::store::StoreBackend::Postgres(settings) => Some(
            crate::store::postgres::Pg::connect(settings)
                .await
                .with_context(|| {
                    format!("cannot open the shared database {}", settings.shown_url())
                })?,
        ),
        crate::store::StoreBackend::Sqlite => None,
    };
    if let Some(pg) = &pg {
        crate::contacts::journal::prepare_data_dir(pg, &config.server.data_dir)
            .await
            .context("cannot prepare the shared contact records")?;
    }
    let mut stores = open_stores(config, pg).await?;
    if let Some(pg) = &stores.pg {
        stores.contacts_journal = Some(
            crate::contacts::journal::Journal::attach(
                pg.clone(),
                Arc::clone(&stores.contacts),
                &stores.config.server.data_dir,
            )
            .await
            .context("cannot follow the shared contact records")?,
        );
    }
    // After the shared opt-outs are applied (postgres backend).
    refuse_names_spelled_otherwise(&stores)?;
    // Shared database: the published registry snapshots, before serving.
    let registry_follower = match stores.pg.clone() {
        Some(pg) => Some(
            registry::follow::Follower::catch_up(pg, Arc::clone(&stores.registries))
                .await
                .context("cannot read the published registry snapshots")?,
        ),
        None => None,
    };
    let services = build_services(&mut stores).await?;
    let mut running = listen(&stores, services, shutdown).await?;
    if let Some(follower) = registry_follower {
        running.background.push(tokio::spawn(follower.run(
            Duration::from_millis(stores.config.server.registry_reload_interval_ms),
            running.stop.clone(),
        )));
    }
    drain(&stores, running).await
}

/// What the services run on, opened before anything is served.
struct Stores {
    config: Arc<Config>,
    policies: Arc<Policies>,
    registries: Arc<RegistrySet>,
    contacts: Arc<ContactStore>,
    log: Arc<DecisionLog>,
    stats: Arc<Stats>,
    attempts: Arc<AttemptLedger>,
    /// Logged decisions still inside the idempotency window (handed to the
    /// gateway's idempotency cache, then empty).
    recent: Vec<decision_log::DecisionRecord>,
    /// The latest instant a logged decision was made at.
    latest_decision: Option<jiff::Timestamp>,
    /// The controllers of the logged ALLOWs inside the attempt caps' windows.
    logged_controllers: Vec<String>,
    /// Held while serving: `restore` and `retention purge` refuse meanwhile.
    _lock: crate::restore::ServeLock,
    /// Erasures, opt-outs and withdrawals, written before they are made.
    ledger: Arc<crate::contacts::ledger::Ledger>,
    retention: Arc<crate::retention::Schedule>,
    at_rest: crate::at_rest::AtRest,
    /// The shared database (`[store] backend = "postgres"`), or none.
    pg: Option<crate::store::postgres::Pg>,
    /// The shared contact journal this replica follows (postgres backend).
    contacts_journal: Option<Arc<crate::contacts::journal::Journal>>,
}

/// Refuses a configuration that spells a controller or a campaign id
/// otherwise than the stored opt-outs and withdrawals or the logged ALLOWs ("Acme" for
/// "acme"): opt-outs and attempt caps bind the exact spelling, so every
/// one of them would bind nothing (found by review).
fn refuse_names_spelled_otherwise(stores: &Stores) -> anyhow::Result<()> {
    let names = stores.contacts.index().record_names();
    let controllers = names.binding.iter().chain(&stores.logged_controllers);
    if let Some(respelled) = stores.config.spelled_otherwise(
        controllers.map(String::as_str),
        names.campaigns.iter().map(String::as_str),
    ) {
        // A stored spelling with an invisible character cannot be
        // configured again (refused since 28 Nov 2026): say so rather than
        // advise it.
        let advice = if respelled.stored.chars().any(crate::config::is_invisible) {
            "the stored spelling holds an invisible character, which a configured controller may no longer hold, and dialgate has no command yet to rename a controller's stored records: no configuration can start on these records as they are (keep the previous release running on them)".to_string()
        } else {
            format!("spell it {:?} again", respelled.stored)
        };
        anyhow::bail!(
            "{}: the stored opt-outs, withdrawals or logged calls name the {} {:?}, which the configuration spells {:?}: opt-outs and attempt caps bind it by its exact spelling, so with this change they would bind nothing; {advice}",
            stores.config.origin,
            respelled.what,
            respelled.stored,
            respelled.configured,
        );
    }
    Ok(())
}

/// Creates the data directory, seeds the demo registries, compiles the
/// policy and opens the registries, the contact store and the decision log;
/// the attempt ledger is rebuilt from the log.
async fn open_stores(
    config: Config,
    pg: Option<crate::store::postgres::Pg>,
) -> anyhow::Result<Stores> {
    let data_dir = config.server.data_dir.clone();
    crate::private::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create data_dir {}", data_dir.display()))?;
    let lock = crate::restore::ServeLock::acquire(&data_dir)?;
    crate::restore::refuse_if_restoring(&data_dir)?;
    crate::private::tighten_data_dir(&data_dir);
    let at_rest = crate::at_rest::check(&data_dir);
    for warning in &at_rest.warnings {
        tracing::warn!(encryption = %at_rest.encryption, "files at rest: {warning}");
    }
    if let Some(key_file) = &config.log.checkpoint_key_file
        && let Some(warning) = crate::private::exposed_secret(key_file)
    {
        tracing::warn!(key_file = %key_file.display(), "checkpoint key: {warning}");
    }
    let snapshots = registry::snapshots_dir(&data_dir);
    for path in registry::file::remove_all_temporaries(&snapshots) {
        tracing::warn!(path = %path.display(), "removed a leftover temporary snapshot file");
    }
    seed_registries(&config, &data_dir, &snapshots)?;

    let policies = Arc::new(Policies::compile(&config));
    report_policies(&policies);
    let registries = Arc::new(RegistrySet::open(&config.registries, &snapshots));
    // Before anything is served: the load may use huge pages.
    let contacts = Arc::new(
        crate::huge_pages::allowed_while(|| ContactStore::open(&data_dir))
            .context("cannot open contact store")?,
    );
    let ledger = Arc::new(crate::restore::open_ledger(&config, &contacts)?);
    let window = jiff::SignedDuration::from_secs(config.log.idempotency_window_seconds as i64);
    let now = Timestamp::now();
    let scan = decision_log::StartupScan {
        idempotency_since: now.checked_sub(window).unwrap_or(Timestamp::UNIX_EPOCH),
        // The answer cache holds two generations at most.
        recent_at_most: config.log.idempotency_max_entries.saturating_mul(2),
        attempts_since: policies
            .longest_cap_window()
            .and_then(|window| now.checked_sub(window).ok()),
        now,
        clock_step_tolerance: config.log.clock_step_tolerance(),
        keep: now.duration_since(crate::retention::decisions_cutoff(
            &config,
            config.log.retention_days,
            now,
        )),
    };
    let (log, startup) = match &pg {
        None => DecisionLog::open(&decision_log::database_path(&data_dir), &config.log, scan)
            .context("cannot open decision log")?,
        Some(pg) => decision_log::shared::SharedLog::open(pg, &data_dir, &config.log, scan)
            .await
            .map(|(log, startup)| (DecisionLog::Shared(log), startup))
            .context("cannot open the shared decision log")?,
    };
    let stats = Arc::new(Stats::default());
    stats
        .metrics
        .registry
        .register(Box::new(log.counters().commit_seconds.clone()))
        .context("cannot register the log's metrics")?;
    let mut logged_controllers: Vec<String> = startup
        .allowed
        .iter()
        .map(|(controller, _, _)| controller.clone())
        .collect();
    logged_controllers.sort_unstable();
    logged_controllers.dedup();
    let attempts = Arc::new(AttemptLedger::default());
    for (controller, number, at) in &startup.allowed {
        // An ALLOW whose number reads back wrong would count against no
        // cap: the start stops (found by review: it was left out).
        let key = NumberKey::from_e164(number).with_context(|| {
            format!(
                "decision log: an ALLOW at {at} for controller {controller:?} names the number {:?}, which is not a number (`dialgate audit verify` shows whether the row was altered; restore the log from a backup)",
                crate::number::mask(number)
            )
        })?;
        attempts.record(controller, key, *at);
    }
    Ok(Stores {
        config: Arc::new(config),
        policies,
        registries,
        contacts,
        log: Arc::new(log),
        stats,
        attempts,
        recent: startup.recent,
        latest_decision: startup.latest,
        logged_controllers,
        _lock: lock,
        ledger,
        retention: Arc::new(crate::retention::Schedule::default()),
        at_rest,
        pg,
        contacts_journal: None,
    })
}

/// What is served, not yet listening: the gRPC routes, the HTTP router, and
/// the health reporter (every service NOT_SERVING until [`listen`]).
struct Services {
    shared: Arc<Shared>,
    api_keys: Arc<crate::auth::ApiKeys>,
    grpc: tonic::service::Routes,
    http: axum::Router,
    health: HealthReporter,
}

/// Builds the gateway, the contact-records service, health, reflection and
/// the HTTP routers over the stores.
async fn build_services(stores: &mut Stores) -> anyhow::Result<Services> {
    let config = &stores.config;
    let gateway = Arc::new(Gateway::new(
        Arc::clone(config),
        GatewayParts {
            policies: Arc::clone(&stores.policies),
            registries: Arc::clone(&stores.registries),
            contacts: Arc::clone(&stores.contacts),
            log: Arc::clone(&stores.log),
            stats: Arc::clone(&stores.stats),
            attempts: Arc::clone(&stores.attempts),
        },
        Startup {
            recent: std::mem::take(&mut stores.recent),
            latest: stores.latest_decision,
        },
    ));
    let shared = Arc::new(Shared {
        config: Arc::clone(config),
        policies: Arc::clone(&stores.policies),
        registries: Arc::clone(&stores.registries),
        log: Arc::clone(&stores.log),
        stats: Arc::clone(&stores.stats),
        contacts: Arc::clone(&stores.contacts),
        started: Instant::now(),
        ready: AtomicBool::new(false),
        retention: Arc::clone(&stores.retention),
        at_rest: stores.at_rest.clone(),
        clock: gateway.clock_guard(),
    });
    let records = Records::configured(config, Arc::clone(&stores.contacts))
        .with_ledger(Arc::clone(&stores.ledger));
    let records = match &stores.contacts_journal {
        Some(journal) => records.with_journal(Arc::clone(journal)),
        None => records,
    };
    let records = match &stores.pg {
        Some(pg) => records.with_shared_log(pg.clone()),
        None => records,
    };

    let (health, health_service) = tonic_health::server::health_reporter();
    set_health(&health, ServingStatus::NotServing).await;
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
    let grpc = tonic::service::Routes::new(health_service)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .add_service(
            ComplianceGatewayServer::new(ComplianceGatewayService::new(Arc::clone(&gateway)))
                // Every field of its messages is at most 256 characters:
                // a message over 16 KiB is refused as it is read, not held
                // (a ScreenNumbers run holds up to 256 of them).
                .max_decoding_message_size(crate::grpc::MAX_GATEWAY_MESSAGE),
        )
        .add_service(ContactRecordsServer::new(ContactRecordsService::new(
            records,
        )));

    let api_keys = Arc::new(crate::auth::ApiKeys::new(config.api_keys.clone()));
    if api_keys.enabled() {
        tracing::info!(keys = config.api_keys.len(), "API keys required");
    }
    let http = crate::http::router(Arc::clone(&shared), Arc::clone(&api_keys))
        .merge(crate::http_decision::router(gateway, Arc::clone(&api_keys)));
    Ok(Services {
        shared,
        api_keys,
        grpc,
        http,
        health,
    })
}

/// How often gRPC health follows readiness (see [`follow_readiness`]).
const HEALTH_FOLLOWS_EVERY: Duration = Duration::from_millis(250);

/// Keeps gRPC health where `/readyz` is: NOT_SERVING while the log is
/// failing, the contact records are behind or the clock is set back, so
/// that a gRPC-aware balancer sends the dialers elsewhere (it stayed
/// SERVING while every check was UNAVAILABLE; found by review). Until
/// `stop`; the drain then reports NOT_SERVING.
async fn follow_readiness(
    shared: Arc<Shared>,
    health: HealthReporter,
    stop: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(HEALTH_FOLLOWS_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut serving = true;
    loop {
        ticker.tick().await;
        if *stop.borrow() {
            return;
        }
        let ready = shared.is_ready();
        if ready != serving {
            serving = ready;
            let status = if ready {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            tracing::info!(serving = ready, "gRPC health follows readiness");
            set_health(&health, status).await;
            // A drain that began meanwhile reported NOT_SERVING first.
            if *stop.borrow() {
                set_health(&health, ServingStatus::NotServing).await;
                return;
            }
        }
    }
}

/// Sets the overall health and that of each served API to `status`.
async fn set_health(health: &HealthReporter, status: ServingStatus) {
    use tonic::server::NamedService;
    for service in [
        "",
        ComplianceGatewayServer::<ComplianceGatewayService>::NAME,
        ContactRecordsServer::<ContactRecordsService>::NAME,
    ] {
        health.set_service_status(service, status).await;
    }
}

/// A server accepting calls, until [`drain`].
struct Running {
    services: Services,
    stop: watch::Receiver<bool>,
    grpc: tokio::task::JoinHandle<anyhow::Result<()>>,
    http: tokio::task::JoinHandle<anyhow::Result<()>>,
    /// Reload and prune loops: aborted once the listeners have drained.
    background: Vec<tokio::task::JoinHandle<()>>,
}

/// Binds one listener, naming its setting on failure.
async fn bind(setting: &str, addr: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot bind {setting} {addr}"))
}

/// The TLS acceptors for gRPC and HTTP (both `None` without TLS), and the
/// SIGHUP handler that reloads their certificate.
fn tls_and_hangup(
    config: &Config,
) -> anyhow::Result<(
    Option<tokio_rustls::TlsAcceptor>,
    Option<tokio_rustls::TlsAcceptor>,
)> {
    let tls = config
        .server
        .tls
        .as_ref()
        .map(crate::tls::acceptors)
        .transpose()?;
    if let Some(settings) = &config.server.tls {
        tracing::info!(mutual = settings.client_ca_file.is_some(), "TLS on");
        if let Some(warning) = crate::private::exposed_secret(&settings.key_file) {
            tracing::warn!(key_file = %settings.key_file.display(), "TLS private key: {warning}");
        }
    }
    // SIGHUP's default action would kill the server: it is always handled
    // (registered here, before the server announces itself).
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(hangups) => {
            let cert = tls.as_ref().map(|a| Arc::clone(&a.cert));
            tokio::spawn(on_sighup(hangups, cert));
        }
        Err(err) => tracing::error!(error = %err, "cannot listen for SIGHUP"),
    }
    Ok(match tls {
        Some(acceptors) => (Some(acceptors.grpc), Some(acceptors.http)),
        None => (None, None),
    })
}

/// The loops that run beside the listeners: registry and contact reloads,
/// and pruning the attempt ledger when any cap is in force.
fn spawn_background(
    stores: &Stores,
    stop: &watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut background = vec![tokio::spawn(reload_data(
        Arc::clone(&stores.registries),
        Arc::clone(&stores.contacts),
        Duration::from_millis(stores.config.server.registry_reload_interval_ms),
        stop.clone(),
    ))];
    if let Some(journal) = &stores.contacts_journal {
        background.push(tokio::spawn(Arc::clone(journal).follow(stop.clone())));
    }
    // A purge made on one replica only would make the replicas differ:
    // not run on the postgres backend (not shared yet).
    if stores.pg.is_none() {
        background.push(tokio::spawn(crate::retention::scheduled(
            Arc::clone(&stores.config),
            Arc::clone(&stores.contacts),
            Arc::clone(&stores.retention),
        )));
    } else if stores.config.retention.purges_anything() {
        tracing::warn!(
            "retention purge is not shared between replicas yet: not scheduled on store.backend = \"postgres\""
        );
    }
    if let Some(window) = stores.policies.longest_cap_window() {
        let attempts = Arc::clone(&stores.attempts);
        let tolerance = stores.config.log.clock_step_tolerance();
        background.push(tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_secs(600));
            loop {
                ticker.tick().await;
                attempts.prune(window + tolerance, Timestamp::now());
            }
        }));
    }
    background
}

/// Binds both addresses, sets up TLS and SIGHUP, starts the accept loops
/// and the background tasks, then reports SERVING and announces the
/// addresses.
async fn listen(
    stores: &Stores,
    services: Services,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Running> {
    let config = &stores.config;
    let grpc_listener = bind("grpc_addr", &config.server.grpc_addr).await?;
    let http_listener = bind("http_addr", &config.server.http_addr).await?;
    let grpc_addr = grpc_listener.local_addr()?;
    let http_addr = http_listener.local_addr()?;

    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });

    let (grpc_tls, http_tls) = tls_and_hangup(config)?;
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

    let grpc_connections = crate::listen::accept_loop("grpc", grpc_listener, grpc_tls, limits);
    let grpc = tonic::transport::Server::builder()
        .max_concurrent_streams(Some(crate::listen::GRPC_STREAMS_PER_CONNECTION))
        .http2_keepalive_interval(Some(crate::listen::HTTP2_KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(crate::listen::HTTP2_KEEPALIVE_TIMEOUT))
        .layer(crate::listen::TrackLayer)
        .layer(crate::auth::GrpcAuthLayer {
            keys: Arc::clone(&services.api_keys),
        })
        .add_routes(services.grpc.clone())
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::ReceiverStream::new(grpc_connections)
                .map(Ok::<_, std::io::Error>),
            stopped(stop.clone()),
        );
    let http_listener = crate::listen::Listener {
        connections: crate::listen::accept_loop("http", http_listener, http_tls, limits),
        local: http_addr,
    };
    // Plain HTTP without keys: only requests addressed to this machine by
    // address (see `http_origin`), a listener beyond loopback
    // (`allow_unauthenticated`) too, against a rebinding name. TLS needs
    // no such check: a rebound name does not match the certificate.
    let origin = crate::http_origin::OriginPolicy {
        host_must_be_local: !services.api_keys.enabled() && config.server.tls.is_none(),
    };
    let router = services
        .http
        .clone()
        .layer(axum::middleware::from_fn_with_state(
            origin,
            crate::http_origin::guard,
        ));
    let http = axum::serve(http_listener, crate::listen::TrackedRouter(router))
        .with_graceful_shutdown(stopped(stop.clone()));
    let grpc = tokio::spawn(async move { grpc.await.map_err(anyhow::Error::from) });
    let http = tokio::spawn(async move { http.await.map_err(anyhow::Error::from) });

    let mut background = spawn_background(stores, &stop);

    set_health(&services.health, ServingStatus::Serving).await;
    services.shared.ready.store(true, Ordering::Relaxed);
    background.push(tokio::spawn(follow_readiness(
        Arc::clone(&services.shared),
        services.health.clone(),
        stop.clone(),
    )));
    announce(grpc_addr, http_addr);
    Ok(Running {
        services,
        stop,
        grpc,
        http,
        background,
    })
}

/// Waits for the stop signal, reports NOT_SERVING, lets in-flight calls
/// finish within the grace period, stops the background tasks and closes
/// the decision log (its last group committed and checkpointed).
async fn drain(stores: &Stores, running: Running) -> anyhow::Result<()> {
    stopped(running.stop).await;
    tracing::info!("shutting down: draining in-flight calls");
    running
        .services
        .shared
        .ready
        .store(false, Ordering::Relaxed);
    set_health(&running.services.health, ServingStatus::NotServing).await;
    let grace_ms = stores.config.server.shutdown_grace_ms;
    let (grpc, http) = (running.grpc, running.http);
    let drained = tokio::time::timeout(Duration::from_millis(grace_ms), async {
        let _ = grpc.await;
        let _ = http.await;
    })
    .await;
    if drained.is_err() {
        tracing::warn!(grace_ms, "grace period over: closing with calls in flight");
    }
    for task in running.background {
        task.abort();
    }
    let log = Arc::clone(&stores.log);
    tokio::task::spawn_blocking(move || log.close())
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
    let refresh = crate::gateway::contacts_refresh_interval(every.as_millis() as u64);
    // Before the ticker: its first tick (at once) reloads the registries.
    let mut registries_due = tokio::time::Instant::now();
    let mut ticker = tokio::time::interval(refresh);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let at = ticker.tick().await;
        if *stop.borrow() {
            return;
        }
        // By the ticks' own schedule: a tick that ran late must not push
        // the next reload a tick further.
        let reload_registries = at >= registries_due;
        if reload_registries {
            registries_due = at + every;
        }
        let registries = Arc::clone(&registries);
        let contacts = Arc::clone(&contacts);
        let _ = tokio::task::spawn_blocking(move || {
            if reload_registries {
                registries.reload_changed();
            }
            match contacts.refresh() {
                Ok(0) => {}
                Ok(loaded) => tracing::info!(loaded, "contact records loaded from bulk imports"),
                Err(err) => tracing::error!(error = %err, "contact records refresh failed"),
            }
        })
        .await;
    }
}

/// Marks a data directory whose registries were seeded once (see
/// [`seed_registries`]).
pub(crate) const SEEDED_MARK: &str = "seeded";

/// Demo only: imports a registry's `seed_file` (checked today, covering the
/// whole country) when the registry has no snapshot yet, so the built-in
/// configuration serves out of the box, and only at a data directory's
/// first seeding (`data_dir/seeded` marks it). Production configurations
/// leave `seed_file` unset; one copied from the demo's with it kept must
/// not seed again a registry whose snapshot an operator removed (a corrupt
/// one, say): a few demo numbers would stand for the national list, and
/// every other number would read as clear. Such a registry stays without
/// data (every check denied) until it is imported.
fn seed_registries(
    config: &Config,
    data_dir: &std::path::Path,
    snapshots: &std::path::Path,
) -> anyhow::Result<()> {
    let mark = data_dir.join(SEEDED_MARK);
    let write_mark = || {
        crate::private::create_file(&mark)
            .and_then(|file| file.sync_all())
            .with_context(|| format!("cannot write {}", mark.display()))
    };
    // A registry with a seed file that holds a snapshot was seeded (or
    // imported) before: a data directory of an earlier version, without
    // the mark, gets it now.
    let holds_seeded = config.registries.iter().any(|registry| {
        registry.seed_file.is_some()
            && registry::file::snapshot_path(snapshots, &registry.id).exists()
    });
    if holds_seeded && !mark.exists() {
        write_mark()?;
    }
    let seeded_before = mark.exists();
    let mut seeded = false;
    for registry in &config.registries {
        let Some(seed) = &registry.seed_file else {
            continue;
        };
        if registry::file::snapshot_path(snapshots, &registry.id).exists() {
            continue;
        }
        if seeded_before {
            tracing::error!(
                registry = %registry.id,
                mark = %mark.display(),
                "registry without a snapshot is not seeded again from its demo seed_file (this data directory was seeded before): every check against it is denied until it is imported; to seed the demo again, remove the mark too"
            );
            continue;
        }
        if !seeded {
            // Before the first seed: a crash midway leaves the mark.
            write_mark()?;
            seeded = true;
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
                // A few demo numbers stand for the national list.
                allow_narrow_file: true,
                older_than_replace: false,
                accept_unterminated_last_line: false,
                withheld: Default::default(),
            },
            now,
        )
        .with_context(|| format!("cannot import demo seed of registry {}", registry.id))?;
        tracing::warn!(registry = %registry.id, %summary, "demo seed imported as checked today: not for production");
    }
    Ok(())
}
