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
    assert!(ok.contains("2 checkpoint(s) signed and matching"), "{ok}");
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
    // Beyond what a purge keeps back from the latest decision under the
    // short configuration below (1 s idempotency window, 1 s tolerance).
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
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
    // The server last started with the capped configuration: it still
    // counts those ALLOWs (found by review: the purge took them).
    let refused = short.cli(&["audit", "purge", "--before", &cut]);
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("nothing purged"),
        "{refused:?}"
    );
    // Once the server has started with the short configuration, it may.
    let (status, _) = short.start().terminate();
    assert!(status.success());
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

/// A server started on a log that ends before its own checkpoint (a
/// deleted tail, an older `decisions.db` copied in, commits lost to a power
/// loss with `synchronous = "normal"`) wrote on: the attempt ledger rebuilt
/// at start lacked ALLOWs that were dialled (a cap exceeded) and new rows
/// took checkpointed seqs (found by review). It refuses to start, as the
/// shared log does.
#[tokio::test(flavor = "multi_thread")]
async fn test_a_server_refuses_a_log_behind_its_checkpoints() {
    let ws = Workspace::new(&standard_config(""));
    ws.import("it-rpo", &["+39 333 123 4567"], &["--controller", "acme"]);
    make_decisions(&ws, 5).await;
    let db = ws.data_dir().join("decisions.db");
    let checkpointed: String = {
        let conn = rusqlite::Connection::open(&db).unwrap();
        let hash = conn
            .query_row("SELECT hash FROM decisions WHERE seq = 5", [], |r| r.get(0))
            .unwrap();
        conn.execute("DELETE FROM decisions WHERE seq > 3", [])
            .unwrap();
        hash
    };
    let err = ws.serve_refused();
    assert!(
        err.contains("went backwards")
            && err.contains("ends at seq 3")
            && err.contains("seq 5")
            && err.contains(&checkpointed)
            && err.contains("restore"),
        "{err}"
    );
    let rows: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("SELECT COUNT(*) FROM decisions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 3, "nothing written on the shorter log");

    // Another row at the checkpointed seq (a fork) is refused too.
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        for seq in [4, 5] {
            conn.execute(
                "INSERT INTO decisions SELECT ?1, decision_id, decided_at_us, request_id,
                     campaign_id, controller, called_number, normalized_number, caller_id,
                     verdict, reasons, next_allowed_at_us, data_versions, latency_us, api_key,
                     prev_hash, hash || 'x' FROM decisions WHERE seq = 3",
                [seq],
            )
            .unwrap();
        }
    }
    let err = ws.serve_refused();
    assert!(
        err.contains("went backwards") && err.contains("another row at that seq"),
        "{err}"
    );
}

/// Reads row `seq` of the log as the chain hashes it.
fn stored_row(conn: &rusqlite::Connection, seq: i64) -> dialgate::decision_log::chain::StoredRow {
    conn.query_row(
        "SELECT seq, decision_id, decided_at_us, request_id, campaign_id, controller,
             called_number, normalized_number, caller_id, verdict, reasons, next_allowed_at_us,
             data_versions, latency_us, api_key, prev_hash FROM decisions WHERE seq = ?1",
        [seq],
        |r| {
            Ok(dialgate::decision_log::chain::StoredRow {
                seq: r.get(0)?,
                decision_id: r.get(1)?,
                decided_at_us: r.get(2)?,
                request_id: r.get(3)?,
                campaign_id: r.get(4)?,
                controller: r.get(5)?,
                called_number: r.get(6)?,
                normalized_number: r.get(7)?,
                caller_id: r.get(8)?,
                verdict: r.get(9)?,
                reasons: r.get(10)?,
                next_allowed_at_us: r.get(11)?,
                data_versions: r.get(12)?,
                latency_us: r.get(13)?,
                api_key: r.get(14)?,
                prev_hash: r.get(15)?,
            })
        },
    )
    .unwrap()
}

/// With a checkpoint key, checkpoints stripped of their signatures passed
/// as "unsigned (before the key)": a row rewritten with the chain after it
/// and the checkpoints rewritten to match verified (found by review). The
/// newest checkpoint must be signed.
#[tokio::test(flavor = "multi_thread")]
async fn test_a_key_protects_checkpoints_stripped_of_their_signatures() {
    let config = standard_config("").replace(
        "shutdown_grace_ms = 5000",
        "shutdown_grace_ms = 5000\n\n[log]\ncheckpoint_key_file = \"checkpoint.key\"",
    );
    let ws = Workspace::new(&config);
    ws.file("checkpoint.key", &"11".repeat(32));
    ws.import("it-rpo", &["+39 333 123 4567"], &["--controller", "acme"]);
    make_decisions(&ws, 5).await;
    assert!(
        ws.cli_ok(&["audit", "verify"])
            .starts_with("ok: 5 decisions")
    );

    // Row 2 rewritten, and the chain from it.
    let mut rehashed = std::collections::HashMap::new();
    {
        let conn = rusqlite::Connection::open(ws.data_dir().join("decisions.db")).unwrap();
        let mut prev: Option<String> = None;
        for seq in 2..=5 {
            let mut row = stored_row(&conn, seq);
            if seq == 2 {
                row.verdict = if row.verdict == "ALLOW" {
                    "DENY"
                } else {
                    "ALLOW"
                }
                .into();
            }
            if let Some(prev) = prev {
                row.prev_hash = prev;
            }
            let hash = dialgate::decision_log::chain::row_hash(&row);
            conn.execute(
                "UPDATE decisions SET verdict = ?1, prev_hash = ?2, hash = ?3 WHERE seq = ?4",
                rusqlite::params![row.verdict, row.prev_hash, hash, seq],
            )
            .unwrap();
            rehashed.insert(seq, hash.clone());
            prev = Some(hash);
        }
    }
    // Every checkpoint and the kept head rewritten to match, unsigned.
    let unsigned = |line: &str| {
        let mut checkpoint: serde_json::Value = serde_json::from_str(line).unwrap();
        let object = checkpoint.as_object_mut().unwrap();
        object.remove("signature");
        object.remove("public_key");
        if let Some(hash) = rehashed.get(&object["seq"].as_i64().unwrap()) {
            object.insert("hash".into(), hash.clone().into());
        }
        checkpoint.to_string()
    };
    let path = ws.data_dir().join("checkpoints.jsonl");
    let lines: Vec<String> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(unsigned)
        .collect();
    assert!(!lines.is_empty());
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let head = ws.data_dir().join("head.json");
    let kept = unsigned(std::fs::read_to_string(&head).unwrap().trim());
    std::fs::write(&head, kept + "\n").unwrap();

    let stderr = verify_fails(&ws);
    assert!(
        stderr.contains("no checkpoint") && stderr.contains("signed"),
        "{stderr}"
    );
}

/// The local verify took `purged_through` on trust: a prefix deleted and an
/// anchor forged from the next row's `prev_hash` verified (found by
/// review). Every anchor `audit purge` sets is checkpointed; one no
/// checkpoint vouches for fails, as on the shared log.
#[tokio::test(flavor = "multi_thread")]
async fn test_verify_refuses_a_purge_anchor_no_checkpoint_vouches_for() {
    let ws = Workspace::new(&standard_config(""));
    ws.import("it-rpo", &["+39 333 123 4567"], &["--controller", "acme"]);
    make_decisions(&ws, 5).await;
    {
        let conn = rusqlite::Connection::open(ws.data_dir().join("decisions.db")).unwrap();
        let prev: String = conn
            .query_row("SELECT prev_hash FROM decisions WHERE seq = 5", [], |r| {
                r.get(0)
            })
            .unwrap();
        conn.execute("DELETE FROM decisions WHERE seq <= 4", [])
            .unwrap();
        conn.execute(
            "INSERT OR REPLACE INTO log_meta (key, value) VALUES ('purged_through', ?1)",
            [format!("4:{prev}")],
        )
        .unwrap();
    }
    let stderr = verify_fails(&ws);
    assert!(
        stderr.contains("seq 4") && stderr.contains("no checkpoint vouches for"),
        "{stderr}"
    );
}

/// `--number` matched its argument as an exact string: a number written
/// as the subject gave it ("+39 333 123 4567", "0039 333 1234567") exported
/// nothing, exit 0, for rows logged as +393331234567 (a subject-access
/// request answered empty; found by review). It is normalised as the
/// decisions' numbers were; one that cannot be read fails.
#[tokio::test(flavor = "multi_thread")]
async fn test_export_by_number_in_any_notation() {
    let ws = Workspace::new(&standard_config(""));
    ws.import("it-rpo", &["+39 333 123 4567"], &["--controller", "acme"]);
    make_decisions(&ws, 4).await;
    for notation in [
        "+393331234567",
        "+39 333 123 4567",
        "0039 333 1234567",
        "(+39) 333-123-4567",
    ] {
        let found = export_jsonl(&ws, &["--number", notation]);
        assert_eq!(found.len(), 2, "{notation}");
        assert!(
            found
                .iter()
                .all(|d| d["normalized_number"] == "+393331234567"),
            "{notation}: {found:?}"
        );
    }
    // National, read with the campaign's default region (IT).
    let national = export_jsonl(&ws, &["--number", "333 000 0000", "--campaign", "it-sales"]);
    assert_eq!(national.len(), 2);
    assert!(
        national
            .iter()
            .all(|d| d["normalized_number"] == "+393330000000")
    );
    // As sent, exactly, still.
    assert_eq!(
        export_jsonl(&ws, &["--number", "+39 333 000 0000"]).len(),
        2
    );

    // `-`: from stdin, out of the process list.
    let piped = ws.cli_with_stdin(&["audit", "export", "--number", "-"], "+39 333 123 4567\n");
    assert!(
        piped.status.success(),
        "{}",
        String::from_utf8_lossy(&piped.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&piped.stdout).lines().count(), 2);
    let empty = ws.cli_with_stdin(&["audit", "export", "--number", "-"], "");
    assert!(!empty.status.success());

    let bad = ws.cli(&["audit", "export", "--number", "call me maybe"]);
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("--number \"call me maybe\""), "{stderr}");
}

/// A stored row that does not parse is not exported as a default: an
/// unknown verdict was exported as DENY, reasons as none, an instant out
/// of range as 1970 (found by review). The export fails naming the row.
#[tokio::test(flavor = "multi_thread")]
async fn test_export_refuses_a_row_that_does_not_parse() {
    let ws = Workspace::new(&standard_config(""));
    ws.import("it-rpo", &["+39 333 123 4567"], &["--controller", "acme"]);
    make_decisions(&ws, 2).await;
    let db = rusqlite::Connection::open(ws.data_dir().join("decisions.db")).unwrap();
    for (column, value) in [
        ("verdict", "'MAYBE'"),
        ("reasons", "'not json'"),
        ("decided_at_us", "9223372036854775807"),
    ] {
        let before: String = db
            .query_row(
                &format!("SELECT CAST({column} AS TEXT) FROM decisions WHERE seq = 1"),
                [],
                |r| r.get(0),
            )
            .unwrap();
        db.execute(
            &format!("UPDATE decisions SET {column} = {value} WHERE seq = 1"),
            [],
        )
        .unwrap();
        let out = ws.cli(&["audit", "export"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{column}");
        assert!(
            stderr.contains("seq 1") && stderr.contains(column),
            "{column}: {stderr}"
        );
        let restore = if column == "decided_at_us" {
            before
        } else {
            format!("'{before}'")
        };
        db.execute(
            &format!("UPDATE decisions SET {column} = {restore} WHERE seq = 1"),
            [],
        )
        .unwrap();
    }
    assert!(ws.cli(&["audit", "export"]).status.success());
}

/// Runs `audit verify`, which must fail; its stderr.
fn verify_fails(ws: &Workspace) -> String {
    let out = ws.cli(&["audit", "verify"]);
    assert!(
        !out.status.success(),
        "verify passed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}
