//! Start-up, health, status endpoints, configuration errors and shutdown.

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn test_health_status_and_pages() {
    let ws = Workspace::new(&standard_config(""));
    ws.import("it-rpo", &["+39 333 123 4567"], &["--controller", "acme"]);
    let server = ws.start();

    let mut health = HealthClient::new(server.channel().await);
    for service in [
        "",
        "dialgate.v1.ComplianceGateway",
        "dialgate.v1.ContactRecords",
    ] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }

    let mut gateway = server.gateway().await;
    gateway
        .check_call(call("+39 333 123 4567", "+390212345678", "it-sales"))
        .await
        .unwrap();
    gateway
        .check_call(call("+39 333 000 0000", "+390212345678", "it-sales"))
        .await
        .unwrap();

    let (code, body) = server.get("/status");
    assert_eq!(code, 200);
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["decisions"]["total"], 2);
    assert_eq!(status["decisions"]["allow"], 1);
    assert_eq!(status["decisions"]["deny"], 1);
    assert_eq!(status["decisions"]["by_reason"]["REGISTRY_NOT_COVERED"], 1);
    assert_eq!(status["decisions"]["by_reason"]["REGISTRY_CLEAR"], 1);
    // The deny reasons are those of denials only.
    assert_eq!(
        status["decisions"]["deny_by_reason"],
        serde_json::json!({"REGISTRY_NOT_COVERED": 1})
    );
    assert_eq!(
        status["decisions"]["allow_by_reason"],
        serde_json::json!({"REGISTRY_CLEAR": 1})
    );
    // Right after two decisions, the last minute has two.
    assert_eq!(status["decisions"]["last_minute"], 2);
    assert_eq!(status["history"]["minutes"].as_array().unwrap().len(), 60);
    assert!(status["latency"]["p99_us"].as_u64().unwrap() > 0);
    assert_eq!(status["log"]["written"], 2);
    // Every commit fsyncs: none takes no time at all.
    assert!(status["log"]["commit"]["p50_us"].as_u64().unwrap() > 0);
    let rpo = status["registries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "it-rpo")
        .unwrap();
    for field in [
        "id",
        "kind",
        "numbers",
        "checked_at",
        "valid_until",
        "stale",
    ] {
        assert!(rpo.get(field).is_some(), "{field}");
    }
    assert_eq!(rpo["numbers"], 1);
    assert_eq!(rpo["stale"], false);
    let denial = &status["recent_denials"][0];
    assert_eq!(denial["number"], "+39********00", "masked on the page");
    assert_eq!(denial["reasons"][0], "REGISTRY_NOT_COVERED");

    assert_eq!(server.get("/livez").0, 200);
    assert_eq!(server.get("/readyz").0, 200);
    let (code, page) = server.get("/");
    assert_eq!(code, 200);
    assert!(page.contains("<title>dialgate supervisor</title>"));
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "no external assets"
    );
    let (code, metrics) = server.get("/metrics");
    assert_eq!(code, 200);
    for expected in [
        "dialgate_decisions_total{campaign=\"it-sales\",verdict=\"allow\"} 1",
        "dialgate_decisions_total{campaign=\"it-sales\",verdict=\"deny\"} 1",
        "dialgate_decision_reasons_total{campaign=\"it-sales\",reason=\"REGISTRY_CLEAR\",verdict=\"allow\"} 1",
        "dialgate_decision_reasons_total{campaign=\"it-sales\",reason=\"REGISTRY_NOT_COVERED\",verdict=\"deny\"} 1",
        "# TYPE dialgate_log_written_total counter",
        "# TYPE dialgate_log_failed_batches_total counter",
        "dialgate_log_failed_batches_total 0",
        "# TYPE dialgate_log_batch_size histogram",
        "dialgate_log_batch_size_sum 2",
        "dialgate_log_backlog 0",
        "dialgate_decision_latency_seconds_count 2",
        "dialgate_registry_numbers{registry=\"it-rpo\"} 1",
        "dialgate_registry_import_seconds{registry=\"it-rpo\"}",
        "dialgate_log_written_total 2",
        "dialgate_ready 1",
    ] {
        assert!(
            metrics.contains(expected),
            "{expected} missing in {metrics}"
        );
    }
    // Prometheus names: `_total` only for counters, every counter `_total`,
    // no averages.
    for line in metrics.lines().filter(|l| l.starts_with("# TYPE ")) {
        let mut words = line.split_whitespace().skip(2);
        let (name, kind) = (words.next().unwrap(), words.next().unwrap());
        assert_eq!(name.ends_with("_total"), kind == "counter", "{line}");
        assert!(!name.contains("_avg"), "{line}");
    }
    // Each of the two decisions was committed, alone or with the other.
    let commits: u64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("dialgate_log_commit_seconds_count "))
        .and_then(|count| count.trim().parse().ok())
        .unwrap_or_else(|| panic!("no commit histogram in {metrics}"));
    assert!((1..=2).contains(&commits), "{commits} commits");
    assert!(
        metrics.contains(&format!("dialgate_log_batch_size_count {commits}")),
        "one batch size per commit: {metrics}"
    );

    let (_, log) = server.terminate();
    assert!(
        log.iter().any(|l| l.contains("+39********67")),
        "decisions are traced, masked"
    );
    assert!(
        !log.iter()
            .any(|l| l.contains("3331234567") || l.contains("3330000000")),
        "{}",
        log.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn test_sigterm_drains_and_exits_cleanly() {
    let ws = Workspace::new(&standard_config(""));
    ws.import("it-rpo", &["+39 333 123 4567"], &["--controller", "acme"]);
    let server = ws.start();
    let channel = server.channel().await;
    let mut tasks = Vec::new();
    for t in 0..4 {
        let mut client = dialgate::proto::compliance_gateway_client::ComplianceGatewayClient::new(
            channel.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut received = Vec::new();
            for i in 0..100 {
                let mut request = call("+39 333 123 4567", "+390212345678", "it-sales");
                request.request_id = format!("t{t}-{i}");
                match client.check_call(request).await {
                    Ok(r) => received.push(r.into_inner().decision_id),
                    Err(_) => break,
                }
            }
            received
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let (status, log) = server.terminate();
    assert!(
        status.success(),
        "exit status {status:?}: {}",
        log.join("\n")
    );
    let mut received = Vec::new();
    for task in tasks {
        received.extend(task.await.unwrap());
    }
    let logged: std::collections::HashSet<String> = export_jsonl(&ws, &[])
        .iter()
        .map(|d| d["decision_id"].as_str().unwrap().to_string())
        .collect();
    assert!(
        received.iter().all(|id| logged.contains(id)),
        "every answered decision is logged"
    );
    assert!(ws.cli(&["audit", "verify"]).status.success());
}

/// SIGTERM sent as soon as the server announces its addresses stops it
/// cleanly. The handler was registered by a task the runtime had not
/// always polled yet, so such a signal killed the server by its default
/// action, without its stop steps (a CI run failed so).
#[test]
fn test_sigterm_right_after_the_announcement_stops_cleanly() {
    let ws = Workspace::new(&standard_config(""));
    for attempt in 0..30 {
        let (status, log) = ws.start().terminate();
        assert!(
            status.success(),
            "attempt {attempt}: exit status {status:?}: {}",
            log.join("\n")
        );
    }
}

#[test]
fn test_config_errors_are_one_line_and_name_the_key() {
    let ws = Workspace::new(&standard_config(
        "[[campaign]]\nid = \"x\"\ncontroller = \"a\"\npurpose = \"marketing\"\ndefault_region = \"Italy\"\ndestinations = [\"IT\"]\n",
    ));
    let out = ws.cli(&["registry", "list"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("default_region") && stderr.contains("\"Italy\""),
        "{stderr}"
    );

    let missing = std::process::Command::new(BIN)
        .args(["--config", "/nonexistent/dialgate.toml", "registry", "list"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/dialgate.toml"));
}

#[test]
fn test_tracing_output_masks_numbers() {
    let ws = Workspace::new(&standard_config(""));
    let out = ws.cli(&[
        "registry",
        "import",
        "--registry",
        "it-rpo",
        "--controller",
        "acme",
        "--file",
        path_str(&ws.file("n.txt", "+39 333 987 6543\n")),
    ]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("3339876543"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn test_json_logs_are_structured_and_masked() {
    let config = standard_config("").replace(
        "data_dir = \"data\"",
        "data_dir = \"data\"\nlog_format = \"json\"",
    );
    let ws = Workspace::new(&config);
    ws.import("it-rpo", &["+39 333 123 4567"], &["--controller", "acme"]);
    let server = ws.start();
    let mut gateway = server.gateway().await;
    gateway
        .check_call(call("+39 333 123 4567", "+390212345678", "it-sales"))
        .await
        .unwrap();
    let (status, log) = server.terminate();
    assert!(status.success());
    assert!(!log.is_empty());
    for line in &log {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}"));
        assert!(event.get("level").is_some(), "{line}");
        assert!(!line.contains("3331234567"), "unmasked number: {line}");
    }
    assert!(
        log.iter().any(|l| l.contains("+39********67")),
        "{}",
        log.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn test_reflection_lists_every_served_service() {
    use tokio_stream::StreamExt;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let ws = Workspace::new(&standard_config(""));
    let server = ws.start();
    let mut client = ServerReflectionClient::new(server.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = client
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("unexpected answer {answer:?}");
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    for expected in [
        "dialgate.v1.ComplianceGateway",
        "dialgate.v1.ContactRecords",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} not in {names:?}"
        );
    }
}

/// The server turns transparent huge pages off for itself: huge-page faults
/// as the heap grows stall every call in flight (see docs/performance.md).
#[cfg(target_os = "linux")]
#[test]
fn test_server_runs_without_transparent_huge_pages() {
    let ws = Workspace::new(&standard_config(""));
    let server = ws.start();
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    let thp = status
        .lines()
        .find_map(|line| line.strip_prefix("THP_enabled:"))
        .map(str::trim);
    // Kernels before 5.0 do not report it; there is nothing to check then.
    if let Some(thp) = thp {
        assert_eq!(thp, "0", "THP_enabled in /proc/{}/status", server.pid());
    }
}
