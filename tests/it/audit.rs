//! `dialgate audit export` and `audit verify` against a real log.

use crate::support::*;

const IT_CLI: &str = "+390212345678";

async fn make_decisions(ws: &Workspace, n: usize) -> Vec<String> {
    let server = ws.start();
    let mut gateway = server.gateway().await;
    let mut ids = Vec::new();
    for i in 0..n {
        let number = if i % 2 == 0 {
            "+39 333 123 4567"
        } else {
            "+39 333 000 0000"
        };
        let mut request = call(number, IT_CLI, "it-sales");
        request.request_id = format!("r{i}");
        ids.push(
            gateway
                .check_call(request)
                .await
                .unwrap()
                .into_inner()
                .decision_id,
        );
    }
    let (status, _) = server.terminate();
    assert!(status.success());
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn test_export_jsonl_and_csv() {
    let ws = Workspace::new(&standard_config(""));
    ws.import("it-rpo", &["+39 333 123 4567"], &["--controller", "acme"]);
    let ids = make_decisions(&ws, 6).await;

    let all = export_jsonl(&ws, &[]);
    assert_eq!(all.len(), 6);
    let exported: Vec<&str> = all
        .iter()
        .map(|d| d["decision_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        exported,
        ids.iter().map(String::as_str).collect::<Vec<_>>(),
        "oldest first, every answered decision"
    );
    let first = &all[0];
    for field in [
        "decision_id",
        "verdict",
        "reasons",
        "normalized_number",
        "campaign_id",
        "request_id",
        "decided_at",
        "called_number",
        "caller_id",
        "controller",
        "data_versions",
        "hash",
    ] {
        assert!(first.get(field).is_some(), "missing {field}: {first}");
    }
    assert_eq!(first["verdict"], "ALLOW");
    assert_eq!(first["reasons"][0]["code"], "REGISTRY_CLEAR");
    assert_eq!(first["normalized_number"], "+393331234567");
    assert_eq!(first["called_number"], "+39 333 123 4567");
    assert_eq!(first["controller"], "acme");
    assert!(
        first["data_versions"][0]
            .as_str()
            .unwrap()
            .starts_with("policy@"),
        "the policy version is logged: {first}"
    );
    assert_eq!(first["data_versions"][1], "it-rpo@1");

    let denied = export_jsonl(&ws, &["--number", "+393330000000"]);
    assert_eq!(denied.len(), 3);
    assert!(denied.iter().all(|d| d["verdict"] == "DENY"));

    let future = export_jsonl(&ws, &["--since", "2999-01-01"]);
    assert!(future.is_empty());
    let past = export_jsonl(
        &ws,
        &["--until", "2999-01-01T00:00:00Z", "--since", "2000-01-01"],
    );
    assert_eq!(past.len(), 6);

    let csv = ws.cli_ok(&["audit", "export", "--format", "csv"]);
    let mut lines = csv.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("seq,decision_id,decided_at,request_id,campaign_id"),
        "{header}"
    );
    assert_eq!(lines.count(), 6);

    let bad = ws.cli(&["audit", "export", "--since", "yesterday"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--since \"yesterday\""));
}

#[tokio::test(flavor = "multi_thread")]
async fn test_verify_detects_altered_and_missing_decisions() {
    let ws = Workspace::new(&standard_config(""));
    ws.import("it-rpo", &["+39 333 123 4567"], &["--controller", "acme"]);
    make_decisions(&ws, 5).await;
    let ok = ws.cli_ok(&["audit", "verify"]);
    assert!(ok.starts_with("ok: 5 decisions"), "{ok}");

    let db = ws.data_dir().join("decisions.db");
    let backup = std::fs::read(&db).unwrap();
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute("UPDATE decisions SET verdict = 'ALLOW' WHERE seq = 2", [])
            .unwrap();
    }
    let out = ws.cli(&["audit", "verify"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("seq 2") && stderr.contains("altered"),
        "{stderr}"
    );

    std::fs::write(&db, &backup).unwrap();
    let _ = std::fs::remove_file(ws.data_dir().join("decisions.db-wal"));
    let _ = std::fs::remove_file(ws.data_dir().join("decisions.db-shm"));
    assert!(ws.cli(&["audit", "verify"]).status.success());
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute("DELETE FROM decisions WHERE seq = 3", [])
            .unwrap();
    }
    let out = ws.cli(&["audit", "verify"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("missing") && stderr.contains("expected seq 3"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn test_decisions_survive_kill_9() {
    let ws = Workspace::new(&standard_config(""));
    ws.import("it-rpo", &["+39 333 123 4567"], &["--controller", "acme"]);
    let server = ws.start();
    let channel = server.channel().await;
    let mut tasks = Vec::new();
    for t in 0..8 {
        let mut client = dialgate::proto::compliance_gateway_client::ComplianceGatewayClient::new(
            channel.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut received = Vec::new();
            for i in 0..200 {
                let mut request = call("+39 333 123 4567", IT_CLI, "it-sales");
                request.request_id = format!("t{t}-{i}");
                match client.check_call(request).await {
                    Ok(response) => received.push(response.into_inner().decision_id),
                    Err(_) => break,
                }
            }
            received
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    server.kill9();
    let mut received = Vec::new();
    for task in tasks {
        received.extend(task.await.unwrap());
    }
    assert!(
        !received.is_empty(),
        "some decisions were answered before the kill"
    );
    let logged: std::collections::HashSet<String> = export_jsonl(&ws, &[])
        .iter()
        .map(|d| d["decision_id"].as_str().unwrap().to_string())
        .collect();
    let lost: Vec<&String> = received.iter().filter(|id| !logged.contains(*id)).collect();
    assert!(
        lost.is_empty(),
        "{} answered decisions missing from the log after kill -9",
        lost.len()
    );
    assert!(ws.cli(&["audit", "verify"]).status.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn test_signed_checkpoints_make_a_truncated_tail_evident() {
    let key_hex = "11".repeat(32);
    let config = standard_config("").replace(
        "shutdown_grace_ms = 5000",
        "shutdown_grace_ms = 5000\n\n[log]\ncheckpoint_key_file = \"checkpoint.key\"",
    );
    let ws = Workspace::new(&config);
    ws.file("checkpoint.key", &key_hex);
    ws.import("it-rpo", &["+39 333 123 4567"], &["--controller", "acme"]);
    make_decisions(&ws, 5).await;

    let ok = ws.cli_ok(&["audit", "verify"]);
    assert!(ok.contains("1 checkpoint(s) signed and matching"), "{ok}");
    let anchor: serde_json::Value =
        serde_json::from_str(ws.cli_ok(&["audit", "checkpoint"]).trim()).unwrap();
    assert_eq!(anchor["seq"], 5);
    assert_eq!(anchor["signature"].as_str().unwrap().len(), 128);

    // Cutting the tail keeps the chain itself consistent, but not the checkpoint.
    {
        let conn = rusqlite::Connection::open(ws.data_dir().join("decisions.db")).unwrap();
        conn.execute("DELETE FROM decisions WHERE seq > 3", [])
            .unwrap();
    }
    let out = ws.cli(&["audit", "verify"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("truncated") && stderr.contains("seq 5"),
        "{stderr}"
    );

    // A forged checkpoint (wrong key) is refused too.
    let path = ws.data_dir().join("checkpoints.jsonl");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"seq\":5", "\"seq\":3");
    std::fs::write(&path, text).unwrap();
    let out = ws.cli(&["audit", "verify"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("signature invalid"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn test_online_backup_is_a_verifiable_copy() {
    let ws = Workspace::new(&standard_config(""));
    ws.import("it-rpo", &["+39 333 123 4567"], &["--controller", "acme"]);
    let server = ws.start();
    let mut gateway = server.gateway().await;
    for _ in 0..3 {
        gateway
            .check_call(call("+39 333 123 4567", IT_CLI, "it-sales"))
            .await
            .unwrap();
    }
    // While the server runs.
    let target = ws.dir.path().join("backup");
    let out = ws.cli_ok(&["backup", "--to", path_str(&target)]);
    assert!(out.contains("decisions.db"), "{out}");
    drop(server);
    let copy = Workspace::new(&standard_config("").replace(
        "data_dir = \"data\"",
        &format!("data_dir = {:?}", path_str(&target)),
    ));
    let verified = copy.cli_ok(&["audit", "verify"]);
    assert!(verified.starts_with("ok: 3 decisions"), "{verified}");
    let list = copy.cli_ok(&["registry", "list", "--json"]);
    assert!(list.contains("\"version\": 1"), "{list}");
    assert!(
        !ws.cli(&["backup", "--to", path_str(&target)])
            .status
            .success(),
        "never overwrites a backup"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn test_purge_keeps_the_chain_verifiable_and_respects_retention() {
    let ws = Workspace::new(&standard_config(""));
    ws.import("it-rpo", &["+39 333 123 4567"], &["--controller", "acme"]);
    let refused = ws.cli(&["audit", "purge", "--before", "2026-01-01"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("inside the period decisions are kept")
    );

    let server = ws.start();
    let mut gateway = server.gateway().await;
    gateway
        .check_call(call("+39 333 123 4567", IT_CLI, "it-sales"))
        .await
        .unwrap();
    gateway
        .check_call(call("+39 333 123 4567", IT_CLI, "it-sales"))
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let cut = jiff::Timestamp::now().to_string();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    gateway
        .check_call(call("+39 333 123 4567", IT_CLI, "us-sales"))
        .await
        .unwrap();
    gateway
        .check_call(call("+39 333 123 4567", IT_CLI, "it-sales"))
        .await
        .unwrap();
    let (status, _) = server.terminate();
    assert!(status.success());

    // With caps (us-sales: US statutes cap attempts), a purge may not cut
    // inside the longest cap window: a restart rebuilds the attempts from
    // the log, and a purged ALLOW would be a call over the cap (was allowed).
    let capped = Workspace::new(&standard_config("").replace(
        "shutdown_grace_ms = 5000",
        "shutdown_grace_ms = 5000\n\n[log]\nretention_days = 0",
    ));
    let refused = capped.cli(&["audit", "purge", "--before", &cut]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("attempt-cap window"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    // Without caps and with a 1 s idempotency window, it may.
    let short = Workspace::new(&purgeable_config());
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let short_config = short.config_path();
    let config_text = std::fs::read_to_string(&short_config).unwrap().replace(
        "data_dir = \"data\"",
        &format!("data_dir = {:?}", path_str(&ws.data_dir())),
    );
    std::fs::write(&short_config, config_text).unwrap();
    let out = short.cli_ok(&["audit", "purge", "--before", &cut]);
    assert!(out.starts_with("purged 2 decisions"), "{out}");
    let verified = short.cli_ok(&["audit", "verify"]);
    assert!(verified.starts_with("ok: 2 decisions"), "{verified}");
    assert_eq!(export_jsonl(&short, &[]).len(), 2);
    assert_eq!(
        export_jsonl(&short, &["--campaign", "us-sales"]).len(),
        1,
        "export by campaign"
    );

    // Removing the anchor makes the purge look like what it would then be: missing rows.
    let conn = rusqlite::Connection::open(ws.data_dir().join("decisions.db")).unwrap();
    conn.execute("DELETE FROM log_meta", []).unwrap();
    drop(conn);
    assert!(!short.cli(&["audit", "verify"]).status.success());
}
