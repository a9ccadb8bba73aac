//! Several `dialgate serve` replicas deciding on one real PostgreSQL: the
//! shared decision log, attempt caps and idempotency across replicas, and
//! failing closed when a replica is killed or the database stops.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dialgate::proto::{ReasonCode as R, Verdict};

use crate::postgres_server::PgServer;
use crate::support::*;

/// Attempts allowed per number and controller in 24 h.
const CAP: usize = 3;

/// A replica's configuration: a US campaign under a cap, decided on the
/// seeded US block list (every other number is callable), always open.
fn replica_config(url: &str, replica_id: &str) -> String {
    format!(
        r#"
[server]
demo = true
grpc_addr = "127.0.0.1:0"
http_addr = "127.0.0.1:0"
data_dir = "data"
registry_reload_interval_ms = 100
shutdown_grace_ms = 5000

[[registry]]
id = "us-dnc"
kind = "blocklist"
country = "US"
seed_file = "us-dnc.txt"

[[campaign]]
id = "us-capped"
controller = "acme"
purpose = "marketing"
default_region = "US"
destinations = ["US"]
caller_ids = ["+12125550100"]
[campaign.attempt_limit]
max_attempts = {CAP}
window_hours = 24

[[campaign]]
id = "us-free"
controller = "beta"
purpose = "marketing"
default_region = "US"
destinations = ["US"]
caller_ids = ["+12125550100"]

{ALWAYS_OPEN}

[store]
backend = "postgres"
url = "{url}"
replica_id = "{replica_id}"
"#
    )
}

fn replica(pg: &PgServer, replica_id: &str) -> Workspace {
    let ws = Workspace::new(&replica_config(&pg.url(), replica_id));
    ws.file("us-dnc.txt", "+12125550199\n");
    ws
}

/// A number no earlier call of the test used.
fn number(i: usize) -> String {
    format!("+1212{:07}", 2_000_000 + i)
}

fn request(number: &str, campaign: &str, request_id: &str) -> dialgate::proto::CheckCallRequest {
    let mut request = call(number, "+12125550100", campaign);
    request.request_id = request_id.to_string();
    request
}

/// Every decision both replicas logged, as `audit export` shows them.
fn exported(ws: &Workspace) -> Vec<serde_json::Value> {
    export_jsonl(ws, &[])
}

fn verify_ok(ws: &Workspace) -> String {
    let out = ws.cli(&["audit", "verify"]);
    assert!(
        out.status.success(),
        "audit verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_two_replicas_racing_for_the_last_attempt_allow_exactly_the_cap() {
    let Some(pg) = PgServer::start() else { return };
    // The batches' lookups must see what the lock holder committed even
    // where the database defaults to one snapshot per transaction.
    pg.psql("ALTER DATABASE dialgate SET default_transaction_isolation = 'repeatable read'");
    let (ws_a, ws_b) = (replica(&pg, "gw-a"), replica(&pg, "gw-b"));
    let (a, b) = (ws_a.start(), ws_b.start());
    for round in 0..4 {
        let called = number(round);
        // The cap's attempts but the last, alternating replicas.
        for i in 0..CAP - 1 {
            let server = if i % 2 == 0 { &a } else { &b };
            let answer = server
                .gateway()
                .await
                .check_call(request(&called, "us-capped", ""))
                .await
                .unwrap()
                .into_inner();
            assert_eq!(verdict(&answer), Verdict::Allow, "attempt {i} of {called}");
        }
        // 2 replicas × 8 clients race for the last one.
        let mut racers = Vec::new();
        for server in [&a, &b] {
            for _ in 0..8 {
                let mut client = server.gateway().await;
                let called = called.clone();
                racers.push(tokio::spawn(async move {
                    client
                        .check_call(request(&called, "us-capped", ""))
                        .await
                        .map(|r| r.into_inner())
                }));
            }
        }
        let mut allowed = 0;
        for racer in racers {
            let answer = racer.await.unwrap().expect("every racer is answered");
            match verdict(&answer) {
                Verdict::Allow => allowed += 1,
                _ => assert_eq!(codes(&answer), vec![R::AttemptLimit]),
            }
        }
        assert_eq!(
            allowed, 1,
            "round {round}: exactly the last attempt is allowed"
        );
    }
    let logged = exported(&ws_a);
    let allows = logged.iter().filter(|d| d["verdict"] == "ALLOW").count();
    assert_eq!(allows, 4 * CAP, "the log holds exactly the cap's ALLOWs");
    let replicas: HashSet<&str> = logged
        .iter()
        .map(|d| d["replica_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        replicas,
        HashSet::from(["gw-a", "gw-b"]),
        "export covers both replicas"
    );
    let report = verify_ok(&ws_b);
    assert!(report.contains("2 replica(s)"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_a_retry_on_the_other_replica_gets_the_original_decision() {
    let Some(pg) = PgServer::start() else { return };
    let (ws_a, ws_b) = (replica(&pg, "gw-a"), replica(&pg, "gw-b"));
    let (a, b) = (ws_a.start(), ws_b.start());
    let (mut ga, mut gb) = (a.gateway().await, b.gateway().await);
    let called = number(100);
    let first = ga
        .check_call(request(&called, "us-capped", "dialer-1:call-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(verdict(&first), Verdict::Allow);
    let retried = gb
        .check_call(request(&called, "us-capped", "dialer-1:call-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        retried, first,
        "the other replica answers the original decision"
    );
    let reused = gb
        .check_call(request(&number(101), "us-capped", "dialer-1:call-1"))
        .await
        .expect_err("another call under the same request id");
    assert_eq!(reused.code(), tonic::Code::AlreadyExists, "{reused:?}");

    // Concurrent first attempts of one request id on both replicas.
    for i in 0..5 {
        let request_id = format!("dialer-2:call-{i}");
        let called = number(200 + i);
        let (ra, rb) = tokio::join!(
            ga.check_call(request(&called, "us-capped", &request_id)),
            gb.check_call(request(&called, "us-capped", &request_id)),
        );
        let (ra, rb) = (ra.unwrap().into_inner(), rb.unwrap().into_inner());
        assert_eq!(
            ra.decision_id, rb.decision_id,
            "both answer the one decision"
        );
        let logged = exported(&ws_a)
            .into_iter()
            .filter(|d| d["request_id"] == request_id.as_str())
            .count();
        assert_eq!(logged, 1, "{request_id} is logged once");
    }
    // A caught-up repeat counts once against the cap: CAP - 1 more are allowed.
    for _ in 0..CAP - 1 {
        let answer = gb
            .check_call(request(&called, "us-capped", ""))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(verdict(&answer), Verdict::Allow);
    }
    let over = ga
        .check_call(request(&called, "us-capped", ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(codes(&over), vec![R::AttemptLimit]);
    assert!(over.next_allowed_at.is_some());
    verify_ok(&ws_a);
}

/// Calls `server` from `clients` tasks with fresh numbers until `stop`;
/// returns every answer: `Ok(decision_id, verdict)` or the gRPC code, with
/// how long it took.
type Answers = Arc<Mutex<Vec<(Result<(String, Verdict), tonic::Code>, Duration)>>>;

async fn load(
    server: &TestServer,
    clients: usize,
    first_number: usize,
    stop: Arc<std::sync::atomic::AtomicBool>,
    answers: Answers,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for c in 0..clients {
        let mut client = server.gateway().await;
        let stop = Arc::clone(&stop);
        let answers = Arc::clone(&answers);
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let called = number(first_number + c * 100_000 + i);
                i += 1;
                let started = Instant::now();
                let answer = tokio::time::timeout(
                    Duration::from_secs(20),
                    client.check_call(request(&called, "us-free", "")),
                )
                .await
                .expect("an answer, whatever it is, within 20 s");
                let took = started.elapsed();
                let answer = answer
                    .map(|r| {
                        let r = r.into_inner();
                        (r.decision_id.clone(), verdict(&r))
                    })
                    .map_err(|status| status.code());
                let failed = answer.is_err();
                answers.lock().unwrap().push((answer, took));
                if failed {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    tasks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_kill_9_of_a_replica_under_load_loses_no_answered_decision() {
    let Some(pg) = PgServer::start() else { return };
    let (ws_a, ws_b) = (replica(&pg, "gw-a"), replica(&pg, "gw-b"));
    let (a, b) = (ws_a.start(), ws_b.start());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let answers: Answers = Arc::default();
    let mut tasks = load(&a, 8, 1_000_000, Arc::clone(&stop), Arc::clone(&answers)).await;
    tasks.extend(load(&b, 8, 2_000_000, Arc::clone(&stop), Arc::clone(&answers)).await);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    a.kill9();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    let answers = answers.lock().unwrap().clone();
    let received: Vec<&String> = answers
        .iter()
        .filter_map(|(a, _)| a.as_ref().ok().map(|(id, _)| id))
        .collect();
    assert!(
        received.len() > 50,
        "the load ran: {} answers",
        received.len()
    );
    let logged: HashSet<String> = exported(&ws_b)
        .iter()
        .map(|d| d["decision_id"].as_str().unwrap().to_string())
        .collect();
    for id in &received {
        assert!(
            logged.contains(*id),
            "decision {id} was answered but is not in the log"
        );
    }
    verify_ok(&ws_b);
    // The killed replica comes back with its own chain and continues it.
    let a = ws_a.start();
    let answer = a
        .gateway()
        .await
        .check_call(request(&number(9), "us-free", ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(verdict(&answer), Verdict::Allow);
    verify_ok(&ws_a);
    // A second process with the same replica id does not write its chain.
    let twin = replica(&pg, "gw-a").cli(&["serve"]);
    assert!(!twin.status.success());
    assert!(
        String::from_utf8_lossy(&twin.stderr).contains("already writing"),
        "{}",
        String::from_utf8_lossy(&twin.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_postgres_stopped_during_load_answers_only_unavailable_then_recovers() {
    let Some(pg) = PgServer::start() else { return };
    let (ws_a, ws_b) = (replica(&pg, "gw-a"), replica(&pg, "gw-b"));
    let (a, b) = (ws_a.start(), ws_b.start());
    assert_eq!(a.get("/readyz").0, 200);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let answers: Answers = Arc::default();
    let mut tasks = load(&a, 4, 3_000_000, Arc::clone(&stop), Arc::clone(&answers)).await;
    tasks.extend(load(&b, 4, 4_000_000, Arc::clone(&stop), Arc::clone(&answers)).await);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let before_stop = answers.lock().unwrap().len();
    pg.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during: Vec<_> = answers.lock().unwrap()[before_stop..].to_vec();
    assert_eq!(
        a.get("/readyz").0,
        503,
        "not ready while the log cannot commit"
    );
    assert_eq!(b.get("/readyz").0, 503);
    pg.start_again();
    // Recovery by itself: a call succeeds again on both replicas.
    for server in [&a, &b] {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut client = server.gateway().await;
        loop {
            match client.check_call(request(&number(7), "us-free", "")).await {
                Ok(answer) => {
                    assert_eq!(verdict(&answer.into_inner()), Verdict::Allow);
                    break;
                }
                Err(status) => {
                    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
                    assert!(Instant::now() < deadline, "no recovery in 30 s");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while server.get("/readyz").0 != 200 {
            assert!(Instant::now() < deadline, "/readyz not back to 200");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    let answers = answers.lock().unwrap().clone();
    let unavailable = during
        .iter()
        .filter(|(a, _)| *a == Err(tonic::Code::Unavailable))
        .count();
    assert!(unavailable > 0, "the outage was seen");
    for (answer, took) in &answers {
        match answer {
            Ok(_) => {}
            Err(code) => {
                assert_eq!(
                    *code,
                    tonic::Code::Unavailable,
                    "only UNAVAILABLE while down"
                );
                assert!(
                    *took < Duration::from_secs(6),
                    "UNAVAILABLE within a bound (unavailable_after = 2 s), took {took:?}"
                );
            }
        }
    }
    let logged: HashSet<String> = exported(&ws_a)
        .iter()
        .map(|d| d["decision_id"].as_str().unwrap().to_string())
        .collect();
    for (answer, _) in &answers {
        if let Ok((id, _)) = answer {
            assert!(
                logged.contains(id),
                "decision {id} was answered but is not in the log"
            );
        }
    }
    verify_ok(&ws_a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_copy_from_sqlite_keeps_the_chain_and_refuses_a_replica_with_rows() {
    let Some(pg) = PgServer::start() else { return };
    // A gateway on SQLite decides a few calls.
    let sqlite_config = replica_config(&pg.url(), "gw-old");
    let sqlite_config = &sqlite_config[..sqlite_config.find("[store]").unwrap()];
    let old = Workspace::new(sqlite_config);
    old.file("us-dnc.txt", "+12125550199\n");
    let server = old.start();
    let mut gateway = server.gateway().await;
    for i in 0..5 {
        gateway
            .check_call(request(&number(500 + i), "us-free", &format!("old-{i}")))
            .await
            .unwrap();
    }
    let (status, _) = server.terminate();
    assert!(status.success());
    let settings = dialgate::store::PostgresSettings {
        url: pg.url(),
        replica_id: "gw-old".into(),
        max_staleness: Duration::from_secs(1),
        unavailable_after: Duration::from_secs(2),
        ca_file: None,
    };
    let shared = dialgate::store::postgres::Pg::connect(&settings)
        .await
        .unwrap();
    let copied = dialgate::decision_log::copy_from_sqlite(&shared, &old.data_dir(), "gw-old", None)
        .await
        .unwrap();
    assert_eq!(copied.decisions, 5);
    // A re-run (store migrate run again) finds the SQLite head in the
    // chain and writes nothing.
    let again = dialgate::decision_log::copy_from_sqlite(&shared, &old.data_dir(), "gw-old", None)
        .await
        .unwrap();
    assert!(again.already_present && again.decisions == 0, "{again:?}");
    // A replica whose chain is another log is refused.
    pg.psql("UPDATE decisions SET hash = hash || '0' WHERE replica_id = 'gw-old' AND seq = 5");
    let other =
        dialgate::decision_log::copy_from_sqlite(&shared, &old.data_dir(), "gw-old", None).await;
    assert!(
        matches!(
            other,
            Err(dialgate::decision_log::shared_copy::CopyError::NotEmpty(_))
        ),
        "{other:?}"
    );
    pg.psql("UPDATE decisions SET hash = left(hash, -1) WHERE replica_id = 'gw-old' AND seq = 5");
    // The replica continues its copied chain.
    let ws = replica(&pg, "gw-old");
    let server = ws.start();
    server
        .gateway()
        .await
        .check_call(request(&number(600), "us-free", ""))
        .await
        .unwrap();
    let report = verify_ok(&ws);
    assert!(report.contains("6 decisions"), "{report}");
    // A retry of a copied request id is answered from the copied log.
    let logged = exported(&ws);
    let original = logged.iter().find(|d| d["request_id"] == "old-2").unwrap();
    let retry = server
        .gateway()
        .await
        .check_call(request(&number(502), "us-free", "old-2"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retry.decision_id, original["decision_id"].as_str().unwrap());
}

/// Two replicas deciding Italian calls (no attempt cap, no US record floor,
/// a 1 s idempotency window): their decisions may be purged a second later.
fn purgeable_replica(pg: &PgServer, replica_id: &str) -> Workspace {
    let config = format!(
        r#"
[server]
demo = true
grpc_addr = "127.0.0.1:0"
http_addr = "127.0.0.1:0"
data_dir = "data"

[log]
retention_days = 0
idempotency_window_seconds = 1
checkpoint_interval_seconds = 1
checkpoint_key_file = "checkpoint.key"

[[registry]]
id = "it-rpo"
kind = "allowlist"
country = "IT"
seed_file = "it-rpo.txt"
seed_controller = "acme"

[[campaign]]
id = "it-sales"
controller = "acme"
purpose = "marketing"
default_region = "IT"
destinations = ["IT"]
caller_ids = ["+390212345678"]

{ALWAYS_OPEN}

[store]
backend = "postgres"
url = "{}"
replica_id = "{replica_id}"
"#,
        pg.url()
    );
    let ws = Workspace::new(&config);
    let numbers: String = (0..20).map(|i| format!("+39333{:07}\n", i)).collect();
    ws.file("it-rpo.txt", &numbers);
    ws.file("checkpoint.key", &"42".repeat(32));
    ws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_audit_checkpoints_purge_and_tampering_cover_every_replica() {
    let Some(pg) = PgServer::start() else { return };
    let (ws_a, ws_b) = (
        purgeable_replica(&pg, "gw-a"),
        purgeable_replica(&pg, "gw-b"),
    );
    let (a, b) = (ws_a.start(), ws_b.start());
    for (i, server) in [&a, &b, &a, &b].into_iter().enumerate() {
        let answer = server
            .gateway()
            .await
            .check_call(call(
                &format!("+39333{:07}", i),
                "+390212345678",
                "it-sales",
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(verdict(&answer), Verdict::Allow);
    }
    // A signed checkpoint of both heads, saved elsewhere.
    let anchor = ws_a.cli_ok(&["audit", "checkpoint"]);
    let checkpoint: serde_json::Value = serde_json::from_str(anchor.trim()).unwrap();
    assert_eq!(checkpoint["heads"].as_array().unwrap().len(), 2, "{anchor}");
    assert!(checkpoint["signature"].is_string());
    let anchor_path = ws_a.file("anchor.json", &anchor);
    ws_a.cli_ok(&["audit", "verify", "--anchor", path_str(&anchor_path)]);

    // Purge everything older than now (the decisions are past every window).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let purged = ws_b.cli_ok(&["audit", "purge"]);
    assert!(
        purged.contains("gw-a: purged 2") && purged.contains("gw-b: purged 2"),
        "{purged}"
    );
    assert!(exported(&ws_a).is_empty());
    let report = verify_ok(&ws_a);
    assert!(report.contains("0 decisions of 2 replica(s)"), "{report}");
    // The chains continue after their purge anchors.
    b.gateway()
        .await
        .check_call(call("+393330000009", "+390212345678", "it-sales"))
        .await
        .unwrap();
    verify_ok(&ws_a);

    // An altered row is found, naming its replica.
    pg.psql("UPDATE decisions SET verdict = 'DENY' WHERE replica_id = 'gw-b'");
    let out = ws_a.cli(&["audit", "verify"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("\"gw-b\"") && stderr.contains("content altered"),
        "{stderr}"
    );
    // A truncated chain is found too: its last checkpoint names a row gone.
    pg.psql("UPDATE decisions SET verdict = 'ALLOW' WHERE replica_id = 'gw-b'");
    tokio::time::sleep(Duration::from_millis(1500)).await; // a checkpoint after the last row
    b.terminate();
    pg.psql("DELETE FROM decisions WHERE replica_id = 'gw-b'");
    let out = ws_a.cli(&["audit", "verify"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("truncated"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(a);
}

/// Sends `signal` to the test cluster's postmaster and every backend of it.
fn signal_cluster(pg: &PgServer, signal: &str) {
    let pid_file = std::fs::read_to_string(pg.dir().join("data").join("postmaster.pid"))
        .expect("postmaster.pid");
    let postmaster = pid_file.lines().next().unwrap().trim().to_string();
    let children = std::process::Command::new("ps")
        .args(["-o", "pid=", "--ppid", &postmaster])
        .output()
        .unwrap();
    let mut pids = vec![postmaster];
    pids.extend(
        String::from_utf8_lossy(&children.stdout)
            .split_whitespace()
            .map(String::from),
    );
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .args(&pids)
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_database_that_stops_answering_gives_unavailable_within_the_bound() {
    let Some(pg) = PgServer::start() else { return };
    let ws = replica(&pg, "gw-a");
    let server = ws.start();
    let mut gateway = server.gateway().await;
    let answer = gateway
        .check_call(request(&number(1), "us-free", ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(verdict(&answer), Verdict::Allow);
    // Frozen, not down: no reset, no refusal, just silence (a partition).
    signal_cluster(&pg, "STOP");
    let result = std::panic::AssertUnwindSafe(async {
        for i in 0..3 {
            let started = Instant::now();
            let status = gateway
                .check_call(request(&number(10 + i), "us-free", ""))
                .await
                .expect_err("no decision while the database is silent");
            assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "answered within the bound (unavailable_after = 2 s): {:?}",
                started.elapsed()
            );
        }
        assert_eq!(server.get("/readyz").0, 503);
    });
    let outcome = futures_util::FutureExt::catch_unwind(result).await;
    signal_cluster(&pg, "CONT");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match gateway
            .check_call(request(&number(20), "us-free", ""))
            .await
        {
            Ok(answer) => {
                assert_eq!(verdict(&answer.into_inner()), Verdict::Allow);
                break;
            }
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
                assert!(Instant::now() < deadline, "no recovery in 30 s");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    verify_ok(&ws);
}

/// Ends every database session of the replicas (pool and log writer).
fn terminate_dialgate_sessions(pg: &PgServer) {
    pg.psql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'dialgate%'",
    );
}

/// Calls until an answer comes (UNAVAILABLE meanwhile), at most 30 s.
async fn until_answered(server: &TestServer, called: &str) -> dialgate::proto::CheckCallResponse {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut client = server.gateway().await;
    loop {
        match client.check_call(request(called, "us-free", "")).await {
            Ok(answer) => return answer.into_inner(),
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
                assert!(Instant::now() < deadline, "no answer in 30 s");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Calls until UNAVAILABLE (a reconnection may still answer one), at most 10 s.
async fn until_unavailable(server: &TestServer, called: &str) -> tonic::Status {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut client = server.gateway().await;
    loop {
        match client.check_call(request(called, "us-free", "")).await {
            Ok(_) => {
                assert!(Instant::now() < deadline, "still answering after 10 s");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => return status,
        }
    }
}

async fn until_ready(server: &TestServer, code: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.get("/readyz").0 != code {
        assert!(Instant::now() < deadline, "/readyz never {code}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The database's clock 2 s ahead of the replica's (a function shadowing
/// pg_catalog's for new sessions): the replica logs nothing, answers
/// UNAVAILABLE, /readyz 503 and names the skew; back in step, it recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_replica_whose_clock_is_off_the_databases_logs_nothing() {
    let Some(pg) = PgServer::start() else { return };
    let ws = replica(&pg, "gw-a");
    let server = ws.start();
    assert_eq!(
        verdict(&until_answered(&server, &number(1)).await),
        Verdict::Allow
    );
    pg.psql(
        "CREATE FUNCTION public.clock_timestamp() RETURNS timestamptz LANGUAGE sql
           AS $$ SELECT pg_catalog.clock_timestamp() + interval '2 seconds' $$;
         ALTER DATABASE dialgate SET search_path = public, pg_catalog;",
    );
    terminate_dialgate_sessions(&pg);
    let status = until_unavailable(&server, &number(2)).await;
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    // For 3 s (the writer reconnected meanwhile): no decision.
    for i in 0..10 {
        let status = server
            .gateway()
            .await
            .check_call(request(&number(3 + i), "us-free", ""))
            .await
            .expect_err("no decision while the clocks disagree");
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    until_ready(&server, 503).await;
    pg.psql("DROP FUNCTION public.clock_timestamp(); ALTER DATABASE dialgate RESET search_path;");
    terminate_dialgate_sessions(&pg);
    assert_eq!(
        verdict(&until_answered(&server, &number(99)).await),
        Verdict::Allow
    );
    until_ready(&server, 200).await;
    let (_, log) = server.terminate();
    assert!(
        log.iter()
            .any(|l| l.contains("clock skew") && l.contains("ahead of")),
        "the log names the skew: {}",
        log.join("\n")
    );
    let during: Vec<String> = exported(&ws)
        .iter()
        .map(|d| d["called_number"].as_str().unwrap().to_string())
        .filter(|n| (3..13).any(|i| *n == number(i)))
        .collect();
    assert!(
        during.is_empty(),
        "nothing decided while the clocks disagreed was logged: {during:?}"
    );
}

/// The database lost the tail of a replica's chain (a failover to an
/// asynchronous standby, a restore): the writer, reconnecting, finds its
/// chain behind what it committed and logs nothing: UNAVAILABLE, /readyz
/// 503, the log says why; a restart is refused while a checkpoint vouches
/// for the lost rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_chain_that_went_backwards_is_not_written_on() {
    let Some(pg) = PgServer::start() else { return };
    let ws = replica(&pg, "gw-a");
    let server = ws.start();
    for i in 0..3 {
        assert_eq!(
            verdict(&until_answered(&server, &number(i)).await),
            Verdict::Allow
        );
    }
    ws.cli_ok(&["audit", "checkpoint"]);
    pg.psql("DELETE FROM decisions WHERE replica_id = 'gw-a' AND seq > 1");
    terminate_dialgate_sessions(&pg);
    let status = until_unavailable(&server, &number(10)).await;
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    for i in 0..8 {
        let status = server
            .gateway()
            .await
            .check_call(request(&number(11 + i), "us-free", ""))
            .await
            .expect_err("nothing written on a chain that went backwards");
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    until_ready(&server, 503).await;
    let seqs = pg.psql(
        "SELECT string_agg(seq::text, ',' ORDER BY seq) FROM decisions WHERE replica_id = 'gw-a'",
    );
    assert_eq!(seqs.trim(), "1", "no seq reused");
    let (_, log) = server.terminate();
    assert!(
        log.iter().any(|l| l.contains("went backwards")),
        "the log says why"
    );
    let out = ws.cli(&["serve"]);
    assert!(!out.status.success(), "a restart is refused");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("went backwards"), "{stderr}");
}

/// A batch blocked in the database (a table lock held elsewhere) past
/// `unavailable_after`: the caller gets UNAVAILABLE and the abandoned
/// backend stops waiting (and holding the batch's locks) by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_an_abandoned_batch_stops_waiting_in_the_database() {
    let Some(pg) = PgServer::start() else { return };
    let ws = replica(&pg, "gw-a");
    let server = ws.start();
    assert_eq!(
        verdict(&until_answered(&server, &number(1)).await),
        Verdict::Allow
    );
    let (mut holder, connection) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    // Inserts wait, reads (reconnection, probes) do not.
    let tx = holder.transaction().await.unwrap();
    tx.batch_execute("LOCK TABLE decisions IN SHARE MODE")
        .await
        .unwrap();
    let started = Instant::now();
    let status = server
        .gateway()
        .await
        .check_call(request(&number(2), "us-free", ""))
        .await
        .expect_err("no decision while the insert waits");
    let took = started.elapsed();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    tokio::time::sleep(Duration::from_secs(4)).await;
    // Reconnection attempts wait too (preparing the insert locks the
    // table), each for at most unavailable_after (2 s).
    let waiting = pg.psql(
        "SELECT count(*) FROM pg_stat_activity
         WHERE application_name LIKE 'dialgate%decision log' AND wait_event_type = 'Lock'
           AND query_start < now() - interval '3 seconds'",
    );
    tx.rollback().await.unwrap();
    assert_eq!(
        waiting, "0",
        "an abandoned batch still waits in the database (UNAVAILABLE after {took:?})"
    );
    assert_eq!(
        verdict(&until_answered(&server, &number(3)).await),
        Verdict::Allow
    );
}

/// A replica under a 30-day cap records that it needs 30 days of the log:
/// `audit purge --before` 8 days ago, run with a configuration without
/// that cap, is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_audit_purge_keeps_what_a_replica_cap_window_needs() {
    let Some(pg) = PgServer::start() else { return };
    let capped = purgeable_replica(&pg, "gw-cap");
    let config = std::fs::read_to_string(capped.config_path()).unwrap();
    std::fs::write(
        capped.config_path(),
        config.replace(
            "caller_ids = [\"+390212345678\"]\n",
            "caller_ids = [\"+390212345678\"]\n[campaign.attempt_limit]\nmax_attempts = 3\nwindow_hours = 720\n",
        ),
    )
    .unwrap();
    let server = capped.start();
    let answer = server
        .gateway()
        .await
        .check_call(call("+393330000001", "+390212345678", "it-sales"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(verdict(&answer), Verdict::Allow);
    let admin = purgeable_replica(&pg, "admin");
    let out = admin.cli(&["audit", "purge", "--before", &days_ago(8)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "purge inside gw-cap's window: {stderr}"
    );
    assert!(stderr.contains("\"gw-cap\" still needs"), "{stderr}");
    assert_eq!(exported(&admin).len(), 1);
    let out = admin.cli(&["audit", "purge", "--before", &days_ago(31)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(exported(&admin).len(), 1);
}

/// Copying a SQLite log in while a capped replica already serves (and
/// counted ALLOWs without the copied ones) is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_copy_from_sqlite_is_refused_while_capped_replicas_serve() {
    let Some(pg) = PgServer::start() else { return };
    let sqlite_config = replica_config(&pg.url(), "gw-old");
    let old = Workspace::new(&sqlite_config[..sqlite_config.find("[store]").unwrap()]);
    old.file("us-dnc.txt", "+12125550199\n");
    let server = old.start();
    server
        .gateway()
        .await
        .check_call(request(&number(1), "us-capped", ""))
        .await
        .unwrap();
    let (status, _) = server.terminate();
    assert!(status.success());
    let ws = replica(&pg, "gw-a");
    let serving = ws.start();
    assert_eq!(
        verdict(&until_answered(&serving, &number(1)).await),
        Verdict::Allow
    );
    let settings = dialgate::store::PostgresSettings {
        url: pg.url(),
        replica_id: "gw-old".into(),
        max_staleness: Duration::from_secs(1),
        unavailable_after: Duration::from_secs(2),
        ca_file: None,
    };
    let shared = dialgate::store::postgres::Pg::connect(&settings)
        .await
        .unwrap();
    let copied =
        dialgate::decision_log::copy_from_sqlite(&shared, &old.data_dir(), "gw-old", None).await;
    assert!(
        matches!(
            &copied,
            Err(dialgate::decision_log::shared_copy::CopyError::ReplicasServing(r)) if r == "gw-a"
        ),
        "{copied:?}"
    );
    assert_eq!(
        pg.psql("SELECT count(*) FROM decisions WHERE replica_id = 'gw-old'"),
        "0"
    );
}

/// A prefix deleted behind dialgate's back with a forged purge anchor (the
/// true hash of the last deleted row) is found: no checkpoint vouches for
/// the anchor. A checkpoint removed from the middle is found too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_audit_verify_finds_a_forged_anchor_and_a_removed_checkpoint() {
    let Some(pg) = PgServer::start() else { return };
    let ws = purgeable_replica(&pg, "gw-a");
    let server = ws.start();
    for i in 0..3 {
        server
            .gateway()
            .await
            .check_call(call(
                &format!("+39333{:07}", i),
                "+390212345678",
                "it-sales",
            ))
            .await
            .unwrap();
    }
    ws.cli_ok(&["audit", "checkpoint"]);
    ws.cli_ok(&["audit", "checkpoint"]);
    let (status, _) = server.terminate();
    assert!(status.success());
    // Intact before the tampering (a real purge attests its cut: see
    // test_audit_checkpoints_purge_and_tampering_cover_every_replica).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    verify_ok(&ws);
    pg.psql(
        "INSERT INTO decision_purges (replica_id, through_seq, through_hash)
           SELECT replica_id, seq, hash FROM decisions WHERE replica_id = 'gw-a' AND seq = 2;
         DELETE FROM decisions WHERE replica_id = 'gw-a' AND seq <= 2;",
    );
    let out = ws.cli(&["audit", "verify"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a forged anchor passes verify");
    assert!(stderr.contains("no checkpoint vouches"), "{stderr}");
    // Put it back; then remove a checkpoint from the middle.
    pg.psql("DELETE FROM decision_purges");
    let fresh = purgeable_replica(&pg, "gw-b");
    let server = fresh.start();
    server
        .gateway()
        .await
        .check_call(call("+393330000009", "+390212345678", "it-sales"))
        .await
        .unwrap();
    drop(server);
    fresh.cli_ok(&["audit", "checkpoint"]);
    fresh.cli_ok(&["audit", "checkpoint"]);
    pg.psql(
        "DELETE FROM decisions WHERE replica_id = 'gw-a';
         DELETE FROM decision_checkpoints
           WHERE id = (SELECT id FROM decision_checkpoints ORDER BY id DESC OFFSET 1 LIMIT 1)",
    );
    let out = fresh.cli(&["audit", "verify"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a removed checkpoint passes verify");
    assert!(stderr.contains("checkpoint chain is broken"), "{stderr}");
}

/// A control character in any field is refused with INVALID_ARGUMENT
/// naming it, before anything is decided: a NUL cannot be stored in
/// PostgreSQL's `text`, and failed the whole group commit, every other
/// dialer's decisions in it included (found by review). The call beside it
/// is decided.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_a_control_character_in_a_field_is_refused_and_others_are_decided() {
    let Some(pg) = PgServer::start() else { return };
    let ws = replica(&pg, "gw-a");
    let server = ws.start();
    let mut gateway = server.gateway().await;
    let bad: Vec<(&str, dialgate::proto::CheckCallRequest)> = vec![
        (
            "request_id",
            request(&number(300), "us-capped", "dialer-1:\0call"),
        ),
        (
            "called_number",
            request("+1212\u{0}2000301", "us-capped", ""),
        ),
        ("caller_id", {
            let mut r = request(&number(302), "us-capped", "");
            r.caller_id = "+12125550100\u{1b}".into();
            r
        }),
        ("campaign_id", request(&number(303), "us-capped\u{7f}", "")),
    ];
    for (field, bad) in bad {
        let mut other = gateway.clone();
        let good = request(&number(310), "us-capped", "");
        let (refused, decided) = tokio::join!(gateway.check_call(bad), other.check_call(good));
        let refused = refused.expect_err(field);
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
        assert!(
            refused.message().contains(field) && refused.message().contains("control character"),
            "{refused:?}"
        );
        assert!(decided.is_ok(), "{field}: {decided:?}");
    }
}

/// After a failover to a standby or a restore (the database on a new
/// timeline), the commits the old primary had not shipped may be missing:
/// another replica's ALLOWs the caps count, opt-outs the CRM was told were
/// recorded. Only the replica whose own chain went back stopped; the
/// others went on deciding without them (found by review: a fourth call
/// under a cap of 3). Every replica now stops until an operator runs
/// `store accept-database` on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_database_on_another_history_stops_every_replica_until_accepted() {
    let Some(pg) = PgServer::start() else { return };
    let ws = replica(&pg, "gw-b");
    let server = ws.start();
    assert_eq!(
        verdict(&until_answered(&server, &number(1)).await),
        Verdict::Allow
    );
    pg.start_a_new_timeline();
    let status = until_unavailable(&server, &number(2)).await;
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    // Past the writer's reconnection pauses: still nothing decided.
    for i in 0..8 {
        let status = server
            .gateway()
            .await
            .check_call(request(&number(3 + i), "us-free", ""))
            .await
            .expect_err("no decision on another history");
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    until_ready(&server, 503).await;
    // A replica new to the database (an empty data_dir) finds the change
    // too: the database records the history the replicas decided on
    // (found by the review of this fix: it took the new one silently).
    let fresh = replica(&pg, "gw-c");
    let refused = fresh.serve_refused();
    assert!(refused.contains("another history"), "{refused}");
    let accepted = ws.cli_ok(&["store", "accept-database"]);
    assert!(accepted.contains("timeline 2"), "{accepted}");
    assert_eq!(
        verdict(&until_answered(&server, &number(20)).await),
        Verdict::Allow
    );
    let fresh = fresh.start();
    assert_eq!(
        verdict(&until_answered(&fresh, &number(21)).await),
        Verdict::Allow
    );
    fresh.terminate();
    let (_, log) = server.terminate();
    assert!(
        log.iter().any(|l| l.contains("another history")),
        "the log says why"
    );
}
