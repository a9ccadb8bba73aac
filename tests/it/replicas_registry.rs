//! Registry snapshots shared through PostgreSQL: real `dialgate serve`
//! replicas, each with its own data_dir, on one real PostgreSQL server.

use std::time::{Duration, Instant};

use dialgate::proto::compliance_gateway_client::ComplianceGatewayClient;
use dialgate::proto::{ReasonCode as R, Verdict};
use tonic::transport::Channel;

use crate::postgres_server::PgServer;
use crate::support::*;

const US_CLI: &str = "+12125550100";

/// The standard configuration on the shared database as replica `id`.
fn replica_config(pg: &PgServer, id: &str) -> String {
    standard_config(&store_section(pg, id))
}

fn store_section(pg: &PgServer, id: &str) -> String {
    format!(
        "\n[store]\nbackend = \"postgres\"\nurl = \"{}\"\nreplica_id = \"{id}\"\n",
        pg.url()
    )
}

async fn check(gateway: &mut ComplianceGatewayClient<Channel>, number: &str) -> (Verdict, Vec<R>) {
    let response = gateway
        .check_call(call(number, US_CLI, "us-sales"))
        .await
        .unwrap()
        .into_inner();
    (verdict(&response), codes(&response))
}

/// Checks `number` until it gets `expected`, for at most 20 s.
async fn wait_for(
    gateway: &mut ComplianceGatewayClient<Channel>,
    number: &str,
    expected: (Verdict, Vec<R>),
    what: &str,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = check(gateway, number).await;
        if got == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: still {got:?} after 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Checks `number` until it is denied `REGISTRY_UNAVAILABLE`, for at most
/// 20 s (right after a replica resumes, a check may be refused until it
/// has caught up with the shared contact data: retried).
async fn until_registry_unavailable(
    gateway: &mut ComplianceGatewayClient<Channel>,
    number: &str,
    what: &str,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = gateway
            .check_call(call(number, US_CLI, "us-sales"))
            .await
            .map(|r| (verdict(r.get_ref()), codes(r.get_ref())));
        if got
            .as_ref()
            .is_ok_and(|(v, c)| *v == Verdict::Deny && c.contains(&R::RegistryUnavailable))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: still {got:?} after 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `/status` registry entry of `id`.
fn status_of(server: &TestServer, id: &str) -> serde_json::Value {
    let (code, body) = server.get("/status");
    assert_eq!(code, 200, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    status["registries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap()
        .clone()
}

/// Polls `/status` until `ok` holds for registry `id`, for at most 20 s.
fn wait_for_status(
    server: &TestServer,
    id: &str,
    what: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let entry = status_of(server, id);
        if ok(&entry) {
            return entry;
        }
        assert!(Instant::now() < deadline, "{what}: {entry}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn leftovers(ws: &Workspace) -> Vec<String> {
    std::fs::read_dir(ws.data_dir().join("registries"))
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|n| n.contains(".tmp") || n.ends_with(".download"))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn test_import_on_any_machine_reaches_every_replica() {
    let Some(pg) = PgServer::start() else { return };
    let importer = Workspace::new(&replica_config(&pg, "ops-laptop"));
    let out = importer.import("us-dnc", &["212 555 0199"], &[]);
    assert!(out.contains("version 1"), "{out}");
    assert!(out.contains("published registry us-dnc version 1"), "{out}");
    assert!(
        !importer.data_dir().join("registries/us-dnc.snap").exists(),
        "the importing machine's own data_dir is not where replicas serve from"
    );

    let ws_a = Workspace::new(&replica_config(&pg, "gw-a"));
    let ws_b = Workspace::new(&replica_config(&pg, "gw-b"));
    let (a, b) = (ws_a.start(), ws_b.start());
    let (mut gw_a, mut gw_b) = (a.gateway().await, b.gateway().await);
    for gateway in [&mut gw_a, &mut gw_b] {
        assert_eq!(
            check(gateway, "212 555 0199").await,
            (Verdict::Deny, vec![R::RegistryListed]),
            "downloaded before serving"
        );
        assert_eq!(
            check(gateway, "212 555 0142").await,
            (Verdict::Allow, vec![R::RegistryClear])
        );
    }

    let out = importer.import("us-dnc", &["212 555 0142"], &["--mode", "add"]);
    assert!(out.contains("version 2"), "{out}");
    for (name, gateway) in [("replica a", &mut gw_a), ("replica b", &mut gw_b)] {
        wait_for(
            gateway,
            "212 555 0142",
            (Verdict::Deny, vec![R::RegistryListed]),
            name,
        )
        .await;
    }
    for server in [&a, &b] {
        let entry = wait_for_status(server, "us-dnc", "serving v2", |e| {
            e["published"]["serving"] == true
        });
        assert_eq!(entry["version"], 2, "{entry}");
        assert_eq!(entry["published"]["version"], 2, "{entry}");
        assert!(
            entry["published"]["published_by"]
                .as_str()
                .unwrap()
                .contains("ops-laptop"),
            "{entry}"
        );
    }

    // A replica started later downloads the current version before serving.
    let ws_c = Workspace::new(&replica_config(&pg, "gw-c"));
    let c = ws_c.start();
    let mut gw_c = c.gateway().await;
    assert_eq!(
        check(&mut gw_c, "212 555 0142").await,
        (Verdict::Deny, vec![R::RegistryListed])
    );
    assert_eq!(status_of(&c, "us-dnc")["version"], 2);

    // `registry list` on the shared database names the published version.
    let list = importer.cli_ok(&["registry", "list", "--json"]);
    let list: Vec<serde_json::Value> = serde_json::from_str(&list).unwrap();
    let dnc = list.iter().find(|r| r["id"] == "us-dnc").unwrap();
    assert_eq!(dnc["published"]["version"], 2, "{dnc}");
    let tps = list.iter().find(|r| r["id"] == "uk-tps").unwrap();
    assert!(tps["published"]["version"].is_null(), "{tps}");

    assert_eq!(
        pg.psql("SELECT count(*) FROM registry_versions WHERE registry_id = 'us-dnc'"),
        "2"
    );
    for ws in [&ws_a, &ws_b, &ws_c] {
        assert!(leftovers(ws).is_empty(), "{:?}", leftovers(ws));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn test_tampered_publication_is_refused_and_the_previous_snapshot_kept() {
    let Some(pg) = PgServer::start() else { return };
    let importer = Workspace::new(&replica_config(&pg, "ops"));
    importer.import("us-dnc", &["212 555 0199"], &[]);
    let ws = Workspace::new(&replica_config(&pg, "gw-a"));
    let server = ws.start();
    let mut gateway = server.gateway().await;
    assert_eq!(
        check(&mut gateway, "212 555 0199").await,
        (Verdict::Deny, vec![R::RegistryListed])
    );
    let snapshot = ws.data_dir().join("registries/us-dnc.snap");
    let before = std::fs::read(&snapshot).unwrap();

    // Version 2: version 1's bytes with one byte changed, under version 1's
    // SHA-256 (the checksum catches it); version 3: the same bytes with a
    // matching SHA-256 (the snapshot's own checks catch it).
    let tamper = |version: u32, sha: &str| {
        pg.psql(&format!(
            "INSERT INTO registry_versions (registry_id, version, sha256, size_bytes, chunk_count, numbers, published_by)
               SELECT registry_id, {version}, {sha}, size_bytes, chunk_count, numbers, 'tamper'
               FROM registry_versions WHERE registry_id = 'us-dnc' AND version = 1;
             INSERT INTO registry_chunks (registry_id, version, seq, data)
               SELECT registry_id, {version}, seq,
                      CASE WHEN seq = 0 THEN overlay(data PLACING '\\x5a'::bytea FROM 40 FOR 1) ELSE data END
               FROM registry_chunks WHERE registry_id = 'us-dnc' AND version = 1;
             UPDATE registry_current SET version = {version} WHERE registry_id = 'us-dnc';"
        ))
    };
    tamper(2, "sha256");
    let entry = wait_for_status(&server, "us-dnc", "v2 refused", |e| {
        e["published"]["version"] == 2 && e["published"]["error"].is_string()
    });
    let error = entry["published"]["error"].as_str().unwrap();
    assert!(error.contains("SHA-256"), "{entry}");
    assert_eq!(entry["version"], 1, "{entry}");
    assert_eq!(entry["published"]["serving"], false, "{entry}");

    tamper(
        3,
        "sha256(overlay((SELECT data FROM registry_chunks WHERE registry_id = 'us-dnc' AND version = 1 AND seq = 0) PLACING '\\x5a'::bytea FROM 40 FOR 1))",
    );
    let entry = wait_for_status(&server, "us-dnc", "v3 refused", |e| {
        e["published"]["version"] == 3 && e["published"]["error"].is_string()
    });
    let error = entry["published"]["error"].as_str().unwrap();
    assert!(!error.contains("SHA-256"), "the checksum matched: {entry}");
    assert!(error.contains("damaged"), "{entry}");
    assert_eq!(entry["version"], 1, "{entry}");

    // The replica keeps the previous snapshot on disk but decides on none:
    // every other replica would follow the published version (fail closed,
    // a number the old edition clears is not allowed on it).
    assert_eq!(
        check(&mut gateway, "212 555 0199").await,
        (Verdict::Deny, vec![R::RegistryUnavailable]),
        "a refused publication: no decision on the edition kept"
    );
    let (verdict_clear, codes_clear) = check(&mut gateway, "212 555 0100").await;
    assert_eq!(verdict_clear, Verdict::Deny, "{codes_clear:?}");
    assert!(
        codes_clear.contains(&R::RegistryUnavailable),
        "{codes_clear:?}"
    );
    assert_eq!(std::fs::read(&snapshot).unwrap(), before);
    assert!(leftovers(&ws).is_empty(), "{:?}", leftovers(&ws));

    // An import never builds on a damaged published snapshot.
    let path = importer.file("more.txt", "212 555 0142\n");
    let out = importer.cli(&[
        "registry",
        "import",
        "--registry",
        "us-dnc",
        "--file",
        path.to_str().unwrap(),
        "--mode",
        "add",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("refusing to build on it"), "{stderr}");

    // A replica starting now keeps nothing it cannot check either.
    let ws_late = Workspace::new(&replica_config(&pg, "gw-late"));
    let late = ws_late.start();
    assert_eq!(
        check(&mut late.gateway().await, "212 555 0199").await,
        (Verdict::Deny, vec![R::RegistryUnavailable])
    );

    // Back to the good version: served again, without error.
    pg.psql("UPDATE registry_current SET version = 1 WHERE registry_id = 'us-dnc'");
    let entry = wait_for_status(&server, "us-dnc", "v1 current again", |e| {
        e["published"]["version"] == 1 && e["published"]["serving"] == true
    });
    assert!(entry["published"]["error"].is_null(), "{entry}");
    wait_for(
        &mut late.gateway().await,
        "212 555 0199",
        (Verdict::Deny, vec![R::RegistryListed]),
        "late replica after repair",
    )
    .await;
}

#[test]
fn test_shrink_guard_compares_with_the_published_version() {
    let Some(pg) = PgServer::start() else { return };
    let first = Workspace::new(&replica_config(&pg, "ops-1"));
    let numbers: Vec<String> = (0..20).map(|i| format!("212 555 01{i:02}")).collect();
    let numbers: Vec<&str> = numbers.iter().map(String::as_str).collect();
    first.import("us-dnc", &numbers, &[]);

    // Another machine, which never imported anything itself.
    let second = Workspace::new(&replica_config(&pg, "ops-2"));
    let path = second.file("short.txt", "212 555 0100\n");
    let out = second.cli(&[
        "registry",
        "import",
        "--registry",
        "us-dnc",
        "--file",
        path.to_str().unwrap(),
        "--covers",
        "+1",
        "--allow-narrow-file",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("refusing to shrink registry us-dnc from 20 -> 1 numbers"),
        "{stderr}"
    );
    assert_eq!(
        pg.psql("SELECT version FROM registry_current WHERE registry_id = 'us-dnc'"),
        "1"
    );
    let out = second.import("us-dnc", &["212 555 0100"], &["--allow-shrink"]);
    assert!(out.contains("20 -> 1 numbers, version 2"), "{out}");
    assert_eq!(
        pg.psql("SELECT version FROM registry_current WHERE registry_id = 'us-dnc'"),
        "2"
    );
    let leftovers: Vec<_> = std::fs::read_dir(second.data_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn test_store_migrate_publishes_an_existing_deployment() {
    let Some(pg) = PgServer::start() else { return };
    let ws = Workspace::new(&standard_config(""));
    ws.import("us-dnc", &["212 555 0199"], &[]);
    ws.import("it-rpo", &["+39 333 123 4567"], &["--controller", "acme"]);
    let submitted = ws.file("submitted.txt", "+39 333 123 4568\n");
    ws.import(
        "it-rpo",
        &["+39 333 123 4568"],
        &[
            "--controller",
            "acme",
            "--mode",
            "add",
            "--submitted",
            path_str(&submitted),
        ],
    );

    let out = ws.cli(&["store", "migrate", "--to", "postgres"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("needs [store] backend = \"postgres\""),
        "{stderr}"
    );

    std::fs::write(ws.config_path(), replica_config(&pg, "gw-1")).unwrap();
    {
        // Refused while a server holds the data_dir.
        let server = ws.start();
        let out = ws.cli(&["store", "migrate", "--to", "postgres"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            stderr.contains("is in use by another dialgate process"),
            "{stderr}"
        );
        let (status, _) = server.terminate();
        assert!(status.success());
    }
    let out = ws.cli_ok(&["store", "migrate", "--to", "postgres"]);
    assert_eq!(
        out.lines().next().unwrap_or_default(),
        "registry snapshots: 2 published (it-rpo v2, us-dnc v1), 0 already published, 0 left as published (a newer version is), 1 without a local snapshot (uk-tps)",
        "{out}"
    );
    let again = ws.cli_ok(&["store", "migrate", "--to", "postgres"]);
    assert!(
        again.contains("0 published, 2 already published (it-rpo, us-dnc)"),
        "{again}"
    );
    assert_eq!(
        pg.psql("SELECT string_agg(registry_id || ':' || version, ',' ORDER BY registry_id) FROM registry_current"),
        "it-rpo:2,us-dnc:1"
    );

    // A new replica serves the migrated snapshots.
    let fresh = Workspace::new(&replica_config(&pg, "gw-2"));
    let server = fresh.start();
    let mut gateway = server.gateway().await;
    assert_eq!(
        check(&mut gateway, "212 555 0199").await,
        (Verdict::Deny, vec![R::RegistryListed])
    );
    let it = gateway
        .check_call(call("+39 333 123 4568", "+390212345678", "it-sales"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(verdict(&it), Verdict::Allow, "{it:?}");

    // An import after the migration, then migrate again: left alone.
    ws.import("us-dnc", &["212 555 0142"], &["--mode", "add"]);
    let third = ws.cli_ok(&["store", "migrate", "--to", "postgres"]);
    assert!(
        third.contains("1 left as published (a newer version is) (us-dnc v2)"),
        "{third}"
    );

    // A local edition newer than the published one is never dropped
    // silently: the migration fails and names it.
    std::fs::write(ws.config_path(), standard_config("")).unwrap();
    ws.import("us-dnc", &["212 555 0143"], &["--mode", "add"]);
    ws.import("us-dnc", &["212 555 0144"], &["--mode", "add"]);
    std::fs::write(ws.config_path(), replica_config(&pg, "gw-1")).unwrap();
    let out = ws.cli(&["store", "migrate", "--to", "postgres"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "the local snapshot (version 3) is newer than or differs from the published version 2"
        ),
        "{stderr}"
    );
    assert_eq!(
        pg.psql("SELECT version FROM registry_current WHERE registry_id = 'us-dnc'"),
        "2"
    );
}

/// Two imports built on the same published version: the second to publish
/// is refused (it would silently drop the first one's changes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_publication_built_on_an_outdated_version_is_refused() {
    use dialgate::registry::published::{self, Publication, PublishedError};
    let Some(pg) = PgServer::start() else { return };
    let ws = Workspace::new(&standard_config(""));
    ws.import("us-dnc", &["212 555 0199"], &[]);
    let file = ws.data_dir().join("registries/us-dnc.snap");
    let settings = dialgate::store::PostgresSettings {
        url: pg.url(),
        replica_id: "ops".to_string(),
        max_staleness: Duration::from_millis(1000),
        unavailable_after: Duration::from_millis(2000),
        ca_file: None,
    };
    let shared = dialgate::store::postgres::Pg::connect(&settings)
        .await
        .unwrap();
    let publication = Publication {
        registry_id: "us-dnc",
        version: 1,
        numbers: 1,
        based_on: None,
        file: &file,
        published_by: "test",
        allow_shrink: false,
        max_shrink_percent: 10,
    };
    let first = published::publish(&shared, &publication).await.unwrap();
    assert_eq!(first.version, 1);
    assert_eq!(first.size_bytes, std::fs::metadata(&file).unwrap().len());
    let err = published::publish(&shared, &publication).await.unwrap_err();
    assert!(
        matches!(err, PublishedError::Conflict { found: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("run the import again"), "{err}");
    let not_newer = Publication {
        based_on: Some(1),
        ..publication
    };
    assert!(matches!(
        published::publish(&shared, &not_newer).await.unwrap_err(),
        PublishedError::Conflict { .. }
    ));
    assert_eq!(
        pg.psql("SELECT count(*) FROM registry_versions"),
        "1",
        "nothing of a refused publication is kept"
    );
}

/// Old versions are deleted (with their chunks) beyond the kept number.
#[test]
fn test_old_versions_are_pruned() {
    let Some(pg) = PgServer::start() else { return };
    let ws = Workspace::new(&replica_config(&pg, "ops"));
    ws.import("us-dnc", &["212 555 0100"], &[]);
    for i in 1..5 {
        ws.import(
            "us-dnc",
            &[&format!("212 555 01{i:02}")],
            &["--mode", "add"],
        );
    }
    assert_eq!(
        pg.psql("SELECT string_agg(version::text, ',' ORDER BY version) FROM registry_versions"),
        "3,4,5"
    );
    assert_eq!(
        pg.psql("SELECT string_agg(DISTINCT version::text, ',') FROM registry_chunks"),
        "3,4,5"
    );
    assert_eq!(
        pg.psql("SELECT version FROM registry_current WHERE registry_id = 'us-dnc'"),
        "5"
    );
}

/// The database stopped: the replica keeps its snapshot (freshness rules
/// unchanged), shows the outage in `/status`, and follows again once the
/// database is back. (What CheckCall answers meanwhile is the other shared
/// parts' business: not asserted here.)
#[tokio::test(flavor = "multi_thread")]
async fn test_a_replica_cut_off_keeps_its_snapshot_and_recovers() {
    let Some(pg) = PgServer::start() else { return };
    let importer = Workspace::new(&replica_config(&pg, "ops"));
    importer.import("us-dnc", &["212 555 0199"], &[]);
    let ws = Workspace::new(&replica_config(&pg, "gw-a"));
    let server = ws.start();
    let snapshot = ws.data_dir().join("registries/us-dnc.snap");
    let before = std::fs::read(&snapshot).unwrap();

    pg.stop();
    let entry = wait_for_status(&server, "us-dnc", "outage shown", |e| {
        e["published"]["error"]
            .as_str()
            .is_some_and(|m| m.contains("shared database"))
    });
    assert_eq!(entry["loaded"], true, "{entry}");
    assert_eq!(entry["version"], 1, "{entry}");
    assert_eq!(std::fs::read(&snapshot).unwrap(), before);

    pg.start_again();
    wait_for_status(&server, "us-dnc", "outage over", |e| {
        e["published"]["error"].is_null() && e["published"]["serving"] == true
    });
    importer.import("us-dnc", &["212 555 0142"], &["--mode", "add"]);
    let mut gateway = server.gateway().await;
    wait_for(
        &mut gateway,
        "212 555 0142",
        (Verdict::Deny, vec![R::RegistryListed]),
        "following after the outage",
    )
    .await;
}

/// Nothing published yet while a replica serves a snapshot of its own: a
/// short first publication from another machine does not replace it (it
/// keeps serving and shows why); one forced with --allow-shrink does. The
/// machine holding the local snapshot is told to run store migrate.
#[tokio::test(flavor = "multi_thread")]
async fn test_a_first_publication_never_shrinks_a_local_snapshot() {
    let Some(pg) = PgServer::start() else { return };
    let ws = Workspace::new(&standard_config(""));
    let numbers: Vec<String> = (0..20).map(|i| format!("212 555 01{i:02}")).collect();
    let numbers: Vec<&str> = numbers.iter().map(String::as_str).collect();
    ws.import("us-dnc", &numbers, &[]);
    std::fs::write(ws.config_path(), replica_config(&pg, "gw-a")).unwrap();

    // On the machine holding it: refused, pointing at store migrate.
    let path = ws.file("one.txt", "212 555 0100\n");
    let out = ws.cli(&[
        "registry",
        "import",
        "--registry",
        "us-dnc",
        "--file",
        path.to_str().unwrap(),
        "--covers",
        "+1",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("store migrate --to postgres"), "{stderr}");
    assert_eq!(pg.psql("SELECT count(*) FROM registry_versions"), "0");

    let server = ws.start();
    let mut gateway = server.gateway().await;
    assert_eq!(
        check(&mut gateway, "212 555 0119").await,
        (Verdict::Deny, vec![R::RegistryListed])
    );
    let ops = Workspace::new(&replica_config(&pg, "ops"));
    let out = ops.import("us-dnc", &["212 555 0100"], &[]);
    assert!(out.contains("published registry us-dnc version 1"), "{out}");
    let entry = wait_for_status(&server, "us-dnc", "v1 refused", |e| {
        e["published"]["version"] == 1 && e["published"]["error"].is_string()
    });
    assert!(
        entry["published"]["error"]
            .as_str()
            .unwrap()
            .contains("shrinks by more than 10 %"),
        "{entry}"
    );
    assert_eq!(entry["numbers"], 20, "{entry}");
    assert_eq!(entry["published"]["serving"], false, "{entry}");
    assert_eq!(
        check(&mut gateway, "212 555 0119").await,
        (Verdict::Deny, vec![R::RegistryUnavailable]),
        "the local snapshot is kept but no decision rests on it"
    );

    // Forced: installed.
    ops.import("us-dnc", &["212 555 0100"], &["--allow-shrink"]);
    let entry = wait_for_status(&server, "us-dnc", "forced v2 served", |e| {
        e["published"]["version"] == 2 && e["published"]["serving"] == true
    });
    assert_eq!(entry["numbers"], 1, "{entry}");
}

/// A rolled-back `registry_current` (a restored database, a repair) never
/// rolls a replica back: it keeps the newer version and says why. A
/// deliberate rollback (marked) is installed, the replaced snapshot kept,
/// and the next import publishes above every version still stored.
#[tokio::test(flavor = "multi_thread")]
async fn test_an_older_publication_is_installed_only_as_a_deliberate_rollback() {
    let Some(pg) = PgServer::start() else { return };
    let importer = Workspace::new(&replica_config(&pg, "ops"));
    importer.import("us-dnc", &["212 555 0199"], &[]);
    importer.import("us-dnc", &["212 555 0142"], &["--mode", "add"]);
    let ws = Workspace::new(&replica_config(&pg, "gw-a"));
    let server = ws.start();
    let mut gateway = server.gateway().await;
    assert_eq!(status_of(&server, "us-dnc")["version"], 2);

    pg.psql("UPDATE registry_current SET version = 1 WHERE registry_id = 'us-dnc'");
    let entry = wait_for_status(&server, "us-dnc", "v1 refused", |e| {
        e["published"]["version"] == 1 && e["published"]["error"].is_string()
    });
    assert!(
        entry["published"]["error"]
            .as_str()
            .unwrap()
            .contains("older than version 2 served here"),
        "{entry}"
    );
    assert_eq!(entry["version"], 2, "{entry}");
    assert_eq!(
        check(&mut gateway, "212 555 0142").await,
        (Verdict::Deny, vec![R::RegistryUnavailable]),
        "version 2 is kept, but no decision rests on an edition the others do not serve"
    );

    pg.psql(
        "UPDATE registry_current SET version = 1, rollback = true WHERE registry_id = 'us-dnc'",
    );
    wait_for_status(&server, "us-dnc", "rolled back", |e| {
        e["version"] == 1 && e["published"]["serving"] == true
    });
    let kept: Vec<_> = std::fs::read_dir(ws.data_dir().join("registries"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_str().unwrap().contains("us-dnc.snap.replaced-"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&kept[0]).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
    }

    let out = importer.import("us-dnc", &["212 555 0143"], &["--mode", "add"]);
    assert!(out.contains("published registry us-dnc version 3"), "{out}");
    wait_for(
        &mut gateway,
        "212 555 0143",
        (Verdict::Deny, vec![R::RegistryListed]),
        "version 3 after the rollback",
    )
    .await;
    assert_eq!(
        pg.psql("SELECT rollback FROM registry_current WHERE registry_id = 'us-dnc'"),
        "f"
    );
}

/// A snapshot file written by anything but the follower is replaced by the
/// published version, not served as if it were it.
#[tokio::test(flavor = "multi_thread")]
async fn test_a_snapshot_file_written_behind_the_follower_is_replaced() {
    let Some(pg) = PgServer::start() else { return };
    let importer = Workspace::new(&replica_config(&pg, "ops"));
    importer.import("us-dnc", &["212 555 0199"], &[]);
    let ws = Workspace::new(&replica_config(&pg, "gw-a"));
    let server = ws.start();
    let mut gateway = server.gateway().await;
    assert_eq!(
        check(&mut gateway, "212 555 0199").await,
        (Verdict::Deny, vec![R::RegistryListed])
    );

    let other = Workspace::new(&standard_config(""));
    other.import("us-dnc", &["212 555 0188"], &[]);
    let snapshots = ws.data_dir().join("registries");
    let published_bytes = std::fs::read(snapshots.join("us-dnc.snap")).unwrap();
    let tmp = snapshots.join("foreign.tmp");
    std::fs::copy(other.data_dir().join("registries/us-dnc.snap"), &tmp).unwrap();
    std::fs::rename(&tmp, snapshots.join("us-dnc.snap")).unwrap();

    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read(snapshots.join("us-dnc.snap")).unwrap() != published_bytes {
        assert!(
            Instant::now() < deadline,
            "the foreign snapshot file is still there after 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Whatever the reload loop picked up meanwhile, the published version
    // ends up served again.
    wait_for(
        &mut gateway,
        "212 555 0188",
        (Verdict::Allow, vec![R::RegistryClear]),
        "foreign snapshot replaced",
    )
    .await;
    wait_for(
        &mut gateway,
        "212 555 0199",
        (Verdict::Deny, vec![R::RegistryListed]),
        "published snapshot served",
    )
    .await;
    let entry = wait_for_status(&server, "us-dnc", "serving", |e| {
        e["published"]["serving"] == true
    });
    assert_eq!(entry["version"], 1, "{entry}");
}

/// A work directory left by a killed import is removed by the next import.
#[test]
fn test_the_work_directory_of_a_killed_import_is_removed() {
    let Some(pg) = PgServer::start() else { return };
    let ws = Workspace::new(&replica_config(&pg, "ops"));
    std::fs::create_dir_all(ws.data_dir()).unwrap();
    // A PID above any pid_max: no such process.
    let dead = ws.data_dir().join("registry-work.tmp-4999999-0");
    std::fs::create_dir_all(&dead).unwrap();
    std::fs::write(dead.join("us-dnc.snap"), b"a national list").unwrap();
    let alive = ws
        .data_dir()
        .join(format!("registry-work.tmp-{}-0", std::process::id()));
    std::fs::create_dir_all(&alive).unwrap();
    ws.import("us-dnc", &["212 555 0199"], &[]);
    assert!(!dead.exists(), "left over");
    assert!(alive.exists(), "the directory of a running process is kept");
}

/// One registry's published row that does not read back fails that
/// registry only: the replica starts and serves the others. A replica
/// serving an older version of that registry does not decide on it either:
/// the unreadable version may list numbers the older one does not.
#[tokio::test(flavor = "multi_thread")]
async fn test_an_unreadable_publication_fails_only_its_registry() {
    let Some(pg) = PgServer::start() else { return };
    let importer = Workspace::new(&replica_config(&pg, "ops"));
    importer.import("us-dnc", &["212 555 0199"], &[]);
    importer.import("uk-tps", &["+44 20 7946 0999"], &[]);
    pg.psql("UPDATE registry_versions SET published_at = 'infinity' WHERE registry_id = 'uk-tps'");

    let ws = Workspace::new(&replica_config(&pg, "gw-a"));
    let server = ws.start();
    let mut gateway = server.gateway().await;
    assert_eq!(
        check(&mut gateway, "212 555 0199").await,
        (Verdict::Deny, vec![R::RegistryListed])
    );
    let entry = wait_for_status(&server, "uk-tps", "error shown", |e| {
        e["published"]["error"].is_string()
    });
    assert!(
        entry["published"]["error"]
            .as_str()
            .unwrap()
            .contains("published_at out of range"),
        "{entry}"
    );
    assert_eq!(entry["loaded"], false, "{entry}");

    // The replica serves us-dnc version 1. It is held stopped while version
    // 2 (one more number) is published and made unreadable, so that it
    // never reads version 2 and still holds version 1 when it resumes.
    let pid = server.pid().to_string();
    let signal = |name: &str| {
        let status = std::process::Command::new("kill")
            .args([name, &pid])
            .status()
            .unwrap();
        assert!(status.success());
    };
    signal("-STOP");
    importer.import("us-dnc", &["212 555 0142"], &["--mode", "add"]);
    pg.psql(
        "UPDATE registry_versions SET published_at = 'infinity' WHERE registry_id = 'us-dnc' AND version = 2",
    );
    signal("-CONT");
    for number in ["212 555 0142", "212 555 0199"] {
        until_registry_unavailable(
            &mut gateway,
            number,
            &format!("{number}: an unreadable newer publication"),
        )
        .await;
    }
    let entry = status_of(&server, "us-dnc");
    assert_eq!(entry["version"], 1, "{entry}");
    assert!(entry["published"]["error"].is_string(), "{entry}");

    // Readable again: version 2 is installed and decided on.
    pg.psql(
        "UPDATE registry_versions SET published_at = now() WHERE registry_id = 'us-dnc' AND version = 2",
    );
    wait_for(
        &mut gateway,
        "212 555 0142",
        (Verdict::Deny, vec![R::RegistryListed]),
        "version 2 readable again",
    )
    .await;
}

/// `registry rollback` (`published::rollback`): a deliberate rollback to a
/// stored, older version, which replicas install; anything else is refused
/// and changes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn test_a_deliberate_rollback_is_installed_by_replicas() {
    use dialgate::registry::published::{self, PublishedError};
    let Some(pg) = PgServer::start() else { return };
    let importer = Workspace::new(&replica_config(&pg, "ops"));
    importer.import("us-dnc", &["212 555 0199"], &[]);
    importer.import("us-dnc", &["212 555 0142"], &["--mode", "add"]);
    let ws = Workspace::new(&replica_config(&pg, "gw-a"));
    let server = ws.start();
    let mut gateway = server.gateway().await;
    let settings = dialgate::store::PostgresSettings {
        url: pg.url(),
        replica_id: "ops".to_string(),
        max_staleness: Duration::from_millis(1000),
        unavailable_after: Duration::from_millis(2000),
        ca_file: None,
    };
    let shared = dialgate::store::postgres::Pg::connect(&settings)
        .await
        .unwrap();
    assert!(matches!(
        published::rollback(&shared, "us-dnc", 2).await.unwrap_err(),
        PublishedError::NotOlder { .. }
    ));
    assert!(matches!(
        published::rollback(&shared, "us-dnc", 7).await.unwrap_err(),
        PublishedError::Gone { .. }
    ));
    let out = importer.cli(&["registry", "rollback", "--registry", "us-dnc", "--to", "2"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("cannot roll back to version 2"), "{stderr}");
    let out = importer.cli_ok(&["registry", "rollback", "--registry", "us-dnc", "--to", "1"]);
    assert!(
        out.contains("registry us-dnc rolled back to version 1"),
        "{out}"
    );
    wait_for(
        &mut gateway,
        "212 555 0142",
        (Verdict::Allow, vec![R::RegistryClear]),
        "rolled back to version 1",
    )
    .await;
    assert_eq!(
        pg.psql(
            "SELECT version || ':' || rollback FROM registry_current WHERE registry_id = 'us-dnc'"
        ),
        "1:true"
    );
}

/// A database that answers `registry_current` but fails the download of
/// the version it names (a damaged chunk, a permission, a timeout) is not
/// an outage: the replica does not go on deciding on the older version,
/// which the other replicas no longer decide on (found by review: it did,
/// `REGISTRY_CLEAR` for a number version 2 lists, until version 1 went
/// stale).
#[tokio::test(flavor = "multi_thread")]
async fn test_a_version_that_fails_to_download_is_not_decided_on_meanwhile() {
    let Some(pg) = PgServer::start() else { return };
    let importer = Workspace::new(&replica_config(&pg, "ops"));
    importer.import("us-dnc", &["212 555 0199"], &[]);

    let ws = Workspace::new(&replica_config(&pg, "gw-a"));
    let server = ws.start();
    let mut gateway = server.gateway().await;
    assert_eq!(
        check(&mut gateway, "212 555 0199").await,
        (Verdict::Deny, vec![R::RegistryListed])
    );
    let before = check(&mut gateway, "212 555 0142").await;
    assert!(
        !before.1.contains(&R::RegistryListed),
        "not listed in version 1: {before:?}"
    );

    // Held stopped while version 2 (listing 0142) is published and its
    // chunks made to fail with a database error when read.
    let pid = server.pid().to_string();
    let signal = |name: &str| {
        let status = std::process::Command::new("kill")
            .args([name, &pid])
            .status()
            .unwrap();
        assert!(status.success());
    };
    signal("-STOP");
    importer.import("us-dnc", &["212 555 0142"], &["--mode", "add"]);
    pg.psql(
        "ALTER TABLE registry_chunks RENAME TO registry_chunks_kept;
         CREATE VIEW registry_chunks AS
           SELECT registry_id, version, seq,
                  CASE WHEN version >= 2
                       THEN ((1 / (version - version))::text)::bytea
                       ELSE data END AS data
           FROM registry_chunks_kept;",
    );
    signal("-CONT");
    until_registry_unavailable(
        &mut gateway,
        "212 555 0142",
        "a version failing to download",
    )
    .await;
    let entry = status_of(&server, "us-dnc");
    assert_eq!(entry["version"], 1, "{entry}");
    assert!(
        entry["published"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("shared database")),
        "{entry}"
    );

    // Readable again: version 2 is installed and decided on.
    pg.psql(
        "DROP VIEW registry_chunks;
         ALTER TABLE registry_chunks_kept RENAME TO registry_chunks;",
    );
    wait_for(
        &mut gateway,
        "212 555 0142",
        (Verdict::Deny, vec![R::RegistryListed]),
        "version 2 readable again",
    )
    .await;
}
