//! Issue 19, items 2, 6 and 7: retention ceilings and the scheduled purge,
//! the erasure ledger re-applied on restore, backups that expire, and the
//! data directory at rest. Real servers, real gRPC, HTTP and CLI.

use std::time::{Duration, Instant};

use dialgate::proto::{
    AddSuppressionRequest, EraseSubjectRequest, Purpose, ReasonCode as R, RecordConsentRequest,
    RecordRelationshipRequest, RelationshipKind, RevokeConsentRequest, Verdict,
};

use crate::support::*;

const DE_CLI: &str = "+4930123456";

fn ts(t: jiff::Timestamp) -> Option<prost_types::Timestamp> {
    Some(dialgate::proto::timestamp_to_proto(t))
}

fn days_before_now(days: i64) -> jiff::Timestamp {
    jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * days)
}

fn consent(number: &str, granted_days_ago: i64, evidence: &str) -> RecordConsentRequest {
    RecordConsentRequest {
        controller: "acme".into(),
        number: number.into(),
        purpose: Purpose::Marketing as i32,
        granted_at: ts(days_before_now(granted_days_ago)),
        source: "web form".into(),
        evidence_ref: evidence.into(),
        ..Default::default()
    }
}

/// A check of the opt-in campaign moved to Poland (see
/// `test_the_scheduled_purge_keeps_withdrawals_in_force_and_reports_itself`).
async fn check_pl(server: &TestServer, number: &str) -> dialgate::proto::CheckCallResponse {
    server
        .gateway()
        .await
        .check_call(call(number, "+48221234567", "de-optin"))
        .await
        .unwrap()
        .into_inner()
}

/// `/status` once the scheduled purge has run.
fn status_after_purge(server: &TestServer) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, body) = server.get("/status");
        assert_eq!(code, 200);
        let status: serde_json::Value = serde_json::from_str(&body).unwrap();
        if !status["retention"]["last_run"].is_null() {
            return status;
        }
        assert!(Instant::now() < deadline, "no purge reported: {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

async fn check(server: &TestServer, number: &str) -> dialgate::proto::CheckCallResponse {
    server
        .gateway()
        .await
        .check_call(call(number, DE_CLI, "de-optin"))
        .await
        .unwrap()
        .into_inner()
}

/// The scheduled purge deletes what ended longer ago than its ceiling,
/// reports it on /status and in the trail, and keeps the latest withdrawal:
/// a consent withdrawn 100 days ago and re-synced by a CRM after the purge
/// must not ALLOW (deleting the withdrawn row would revive it).
#[tokio::test(flavor = "multi_thread")]
async fn test_the_scheduled_purge_keeps_withdrawals_in_force_and_reports_itself() {
    // acme's US campaign goes to another controller, and its opt-in
    // campaign calls Poland, not Germany: consents of a controller calling
    // the US (TSR) or Germany (§7a UWG) are kept 5 years at least.
    let config = standard_config(
        "[retention]\nconsents_days = 30\nrelationships_days = 30\npurge_interval_minutes = 60\n\
         [retention.controller.acme-us]\nconsents_days = 1826\n",
    )
    .replace(
        "id = \"us-sales\"\ncontroller = \"acme\"",
        "id = \"us-sales\"\ncontroller = \"acme-us\"",
    )
    .replace(
        "default_region = \"DE\"\ndestinations = [\"DE\"]\nconsent_required = true\ncaller_ids = [\"+4930123456\"]",
        "default_region = \"PL\"\ndestinations = [\"PL\"]\nconsent_required = true\ncaller_ids = [\"+48221234567\"]",
    );
    assert!(config.contains("acme-us") && config.contains("+48221234567"));
    let ws = Workspace::new(&config);
    let number = "+48 512 345 678";

    {
        let server = ws.start();
        let mut records = server.records().await;
        records
            .record_consent(consent(number, 400, "recording-withdrawn"))
            .await
            .unwrap();
        let revoked = records
            .revoke_consent(RevokeConsentRequest {
                controller: "acme".into(),
                number: number.into(),
                purpose: Purpose::Marketing as i32,
                revoked_at: ts(days_before_now(100)),
                default_region: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .revoked;
        assert_eq!(revoked, 1);
        records
            .record_relationship(RecordRelationshipRequest {
                controller: "acme".into(),
                number: number.into(),
                kind: RelationshipKind::Customer as i32,
                started_at: ts(days_before_now(900)),
                ended_at: ts(days_before_now(60)),
                default_region: String::new(),
            })
            .await
            .unwrap();
        let status = status_after_purge(&server);
        assert_eq!(
            status["retention"]["last_run"]["withdrawals_kept"], 0,
            "the first purge ran at start, before the records: {status}"
        );
        // While serving, only the dry run may be run from the CLI.
        let refused = ws.cli(&["retention", "purge"]);
        assert!(!refused.status.success());
        let message = String::from_utf8_lossy(&refused.stderr);
        assert!(message.contains("running `dialgate serve`"), "{message}");
        let dry: serde_json::Value =
            serde_json::from_str(ws.cli_ok(&["retention", "purge", "--dry-run"]).trim()).unwrap();
        assert_eq!(dry["withdrawals_kept"], 1, "{dry}");
        assert_eq!(dry["relationships_deleted"], 1, "{dry}");
        assert_eq!(dry["dry_run"], true);
        let shown = ws.cli_ok(&["policy", "show", "--campaign", "de-optin"]);
        assert!(
            shown.contains("retention (controller acme)")
                && shown.contains("30 days after they are withdrawn or expire")
                && shown.contains("a purge now would delete: 0 consents (1 withdrawals kept"),
            "{shown}"
        );
        server.terminate();
    }
    // A restart purges at start.
    let server = ws.start();
    let status = status_after_purge(&server);
    let run = &status["retention"]["last_run"];
    assert_eq!(run["withdrawals_kept"], 1, "{status}");
    assert_eq!(run["relationships_deleted"], 1, "{status}");
    assert_eq!(run["consents_deleted"], 0, "{status}");
    assert!(run["error"].is_null(), "{status}");
    assert_eq!(status["retention"]["interval_minutes"], 60);
    assert!(status["retention"]["next_run"].is_string(), "{status}");

    // The CRM re-syncs the consent withdrawn 100 days ago: still withdrawn.
    let mut records = server.records().await;
    records
        .record_consent(consent(number, 400, "recording-resync"))
        .await
        .unwrap();
    let denied = check_pl(&server, number).await;
    assert_eq!(codes(&denied), vec![R::NoConsent], "{:?}", denied.reasons);
    // A consent given after the withdrawal counts.
    records
        .record_consent(consent(number, 1, "recording-new"))
        .await
        .unwrap();
    let allowed = check_pl(&server, number).await;
    assert_eq!(verdict(&allowed), Verdict::Allow, "{:?}", allowed.reasons);

    // The trail: one event per run, counts only; the withdrawn consent's
    // evidence is gone from it.
    let trail = ws.cli_ok(&["trail", "export"]);
    let purges: Vec<serde_json::Value> = trail
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["action"] == "retention.purged")
        .collect();
    assert!(purges.len() >= 2, "{trail}");
    assert!(purges.iter().any(|e| e["after"]["withdrawals_kept"] == 1));
    assert!(!trail.contains("recording-withdrawn"), "{trail}");
    assert!(!trail.contains("+48"), "no raw numbers in the trail");
    server.terminate();
    // Stopped: the CLI runs the purge itself.
    let ran: serde_json::Value =
        serde_json::from_str(ws.cli_ok(&["retention", "purge"]).trim()).unwrap();
    assert_eq!(ran["dry_run"], false);
    assert!(ran["error"].is_null(), "{ran}");
}

/// Bad ceilings are refused at load naming the key; the decision log's
/// ceiling may not go below its legal floor (log.retention_days).
#[test]
fn test_bad_retention_settings_are_refused_naming_the_key() {
    for (section, key) in [
        (
            "[retention]\ndecisions_days = 365\n",
            "retention.decisions_days",
        ),
        (
            "[retention]\nconsents_days = 0\n",
            "retention.consents_days",
        ),
        // acme calls the US: 5 years at least (TSR 16 CFR 310.5(a)(5)).
        (
            "[retention]\nconsents_days = 30\n",
            "retention.consents_days",
        ),
        (
            "[retention.controller.ACME]\nconsents_days = 30\n",
            "retention.controller.ACME",
        ),
        ("[retention]\nbackups_days = 30\n", "retention.backups_days"),
        ("[retention]\nconsent_days = 30\n", "consent_days"),
    ] {
        let ws = Workspace::new(&standard_config(section));
        let out = ws.cli(&["config", "check"]);
        assert!(!out.status.success(), "{section}");
        let message = String::from_utf8_lossy(&out.stderr);
        assert!(message.contains(key), "{section}: {message}");
    }
    let ws = Workspace::new(&standard_config("[retention]\ndecisions_days = 365\n"));
    let message = String::from_utf8_lossy(&ws.cli(&["config", "check"]).stderr).to_string();
    assert!(message.contains("log.retention_days = 1826"), "{message}");
}

/// A backup made before an erasure, an opt-out and a withdrawal must not
/// bring them back: restore re-applies the erasure ledger, so after a
/// restart on the restored directory the erased number is not callable on
/// the consent it had, the opt-out denies and the withdrawn consent does
/// not ALLOW; the decision log is kept and still verifies.
#[tokio::test(flavor = "multi_thread")]
async fn test_restore_reapplies_erasures_opt_outs_and_withdrawals_made_after_the_backup() {
    let ws = Workspace::new(&standard_config(""));
    let erased = "+49 151 11111111";
    let opted_out = "+49 151 22222222";
    let withdrawn = "+49 151 33333333";
    let untouched = "+49 151 44444444";
    let imported = "+49 151 55555555";
    // Its consent is recorded after the backup, then withdrawn.
    let late = "+49 151 66666666";
    let backup_dir = ws.dir.path().join("backup-1");
    {
        let server = ws.start();
        let mut records = server.records().await;
        for number in [erased, opted_out, withdrawn, untouched, imported] {
            records
                .record_consent(consent(number, 10, "recording"))
                .await
                .unwrap();
            let allowed = check(&server, number).await;
            assert_eq!(verdict(&allowed), Verdict::Allow, "{:?}", allowed.reasons);
        }
        let out = ws.cli_ok(&["backup", "--to", path_str(&backup_dir)]);
        assert!(out.contains("not copied: the erasure ledger"), "{out}");
        let manifest: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(backup_dir.join("manifest.json")).unwrap(),
        )
        .unwrap();
        assert!(manifest["started_at"].is_string(), "{manifest}");
        assert!(!backup_dir.join("erasure-ledger.jsonl").exists());
        // After the backup: erasure, opt-out, withdrawals.
        records
            .record_consent(consent(late, 20, "recording-late"))
            .await
            .unwrap();
        records
            .revoke_consent(RevokeConsentRequest {
                controller: "acme".into(),
                number: late.into(),
                purpose: Purpose::Marketing as i32,
                revoked_at: None,
                default_region: String::new(),
            })
            .await
            .unwrap();
        let erasure = records
            .erase_subject(EraseSubjectRequest {
                verification: None,
                controller: String::new(),
                number: erased.into(),
                default_region: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(erasure.erased_records, 1);
        records
            .add_suppression(AddSuppressionRequest {
                controller: "acme".into(),
                number: opted_out.into(),
                reason: "asked on the phone".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        records
            .revoke_consent(RevokeConsentRequest {
                controller: "acme".into(),
                number: withdrawn.into(),
                purpose: Purpose::Unspecified as i32,
                revoked_at: None,
                default_region: String::new(),
            })
            .await
            .unwrap();
        // And a bulk opt-out import.
        let file = ws.file("opt-outs.csv", "number,controller\n+4915155555555,acme\n");
        ws.cli_ok(&["suppression", "import", "--file", path_str(&file)]);
        // The running server loads the import within its reload interval.
        let deadline = Instant::now() + Duration::from_secs(20);
        while verdict(&check(&server, imported).await) != Verdict::Deny {
            assert!(
                Instant::now() < deadline,
                "the imported opt-out was not loaded"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        for number in [erased, opted_out, withdrawn, imported] {
            let denied = check(&server, number).await;
            assert_eq!(verdict(&denied), Verdict::Deny);
        }
        // The ledger holds hashes, never numbers, and is private.
        let ledger = ws.data_dir().join("erasure-ledger.jsonl");
        let text = std::fs::read_to_string(&ledger).unwrap();
        assert_eq!(
            text.lines().count(),
            7,
            "its id, 4 changes, the import's opt-out and its commit: {text}"
        );
        assert!(!text.contains('+'), "no numbers: {text}");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&ledger).unwrap().permissions(),
        );
        assert_eq!(mode & 0o077, 0);
        // A running server's data is never overwritten.
        let refused = ws.cli(&["restore", "--from", path_str(&backup_dir)]);
        assert!(!refused.status.success());
        let message = String::from_utf8_lossy(&refused.stderr);
        assert!(message.contains("stop the server first"), "{message}");
        server.terminate();
    }
    let out = ws.cli_ok(&["restore", "--from", path_str(&backup_dir)]);
    assert!(
        out.contains("1 erasures (1 records erased")
            && out.contains("2 opt-outs added")
            && out.contains("2 withdrawals (1 consents ended, 1 kept by hash")
            && out.contains("decision log kept")
            && out.contains("audit verify: ok"),
        "{out}"
    );
    assert!(ws.cli_ok(&["audit", "verify"]).starts_with("ok"));

    let server = ws.start();
    let after = check(&server, erased).await;
    assert_eq!(
        codes(&after),
        vec![R::Suppressed, R::NoConsent],
        "kept suppressed, and its consent erased: {:?}",
        after.reasons
    );
    let after = check(&server, opted_out).await;
    assert_eq!(codes(&after), vec![R::Suppressed], "{:?}", after.reasons);
    let after = check(&server, withdrawn).await;
    assert_eq!(codes(&after), vec![R::NoConsent], "{:?}", after.reasons);
    let after = check(&server, imported).await;
    assert_eq!(codes(&after), vec![R::Suppressed], "{:?}", after.reasons);
    // The CRM re-syncs the consent withdrawn after the backup: still withdrawn.
    let mut records = server.records().await;
    records
        .record_consent(consent(late, 20, "recording-late"))
        .await
        .unwrap();
    let after = check(&server, late).await;
    assert_eq!(codes(&after), vec![R::NoConsent], "{:?}", after.reasons);
    records
        .record_consent(consent(late, 0, "recording-later"))
        .await
        .unwrap();
    let after = check(&server, late).await;
    assert_eq!(
        verdict(&after),
        Verdict::Allow,
        "a consent after the withdrawal counts"
    );
    let after = check(&server, untouched).await;
    assert_eq!(
        verdict(&after),
        Verdict::Allow,
        "the backup's records are back"
    );
    // The erased subject's consent is not back in its export.
    let export = server
        .records()
        .await
        .export_subject(dialgate::proto::ExportSubjectRequest {
            verification: None,
            controller: String::new(),
            number: erased.into(),
            default_region: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .json;
    let export: serde_json::Value = serde_json::from_str(&export).unwrap();
    assert_eq!(export["consents"].as_array().unwrap().len(), 0, "{export}");
    server.terminate();
}

/// A backup whose time is past `retention.backups_days` is deleted by
/// `backup --expire` (and by the scheduled purge); others stay.
#[test]
fn test_backups_expire_under_the_retention_settings() {
    let ws = Workspace::new(&standard_config(
        "[retention]\nbackups_days = 30\nbackup_dir = \"backups\"\n",
    ));
    let backups = ws.dir.path().join("backups");
    ws.cli_ok(&["backup", "--to", path_str(&backups.join("old"))]);
    ws.cli_ok(&["backup", "--to", path_str(&backups.join("new"))]);
    let manifest = backups.join("old/manifest.json");
    let mut old: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    old["started_at"] = serde_json::json!(days_before_now(31).to_string());
    std::fs::write(&manifest, old.to_string()).unwrap();
    let dry = ws.cli_ok(&["backup", "--expire", "--dry-run"]);
    assert!(dry.contains("would delete") && dry.contains("old"), "{dry}");
    assert!(backups.join("old").exists());
    let done = ws.cli_ok(&["backup", "--expire"]);
    assert!(done.contains("1 backups older than 30 days"), "{done}");
    assert!(!backups.join("old").exists());
    assert!(backups.join("new").exists());
    let again = ws.cli(&["backup", "--to", path_str(&backups.join("new"))]);
    assert!(!again.status.success(), "a backup is never overwritten");
}

/// Start-up reports the data directory at rest on /status and in the log:
/// its filesystem, whether it is encrypted (or that it could not tell),
/// and warnings.
#[tokio::test(flavor = "multi_thread")]
async fn test_start_up_reports_the_data_directory_at_rest() {
    let ws = Workspace::new(&standard_config(""));
    let server = ws.start();
    let (_, body) = server.get("/status");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    let at_rest = &status["at_rest"];
    let encryption = at_rest["encryption"].as_str().unwrap().to_string();
    assert!(
        ["dm-crypt", "fscrypt", "ecryptfs", "memory", "none found"].contains(&encryption.as_str())
            || encryption.starts_with("could not tell"),
        "{at_rest}"
    );
    let warnings = at_rest["warnings"].as_array().unwrap().clone();
    let encrypted = ["dm-crypt", "fscrypt", "ecryptfs"].contains(&encryption.as_str());
    assert_eq!(warnings.is_empty(), encrypted, "{at_rest}");
    let (_, log) = server.terminate();
    if !encrypted {
        assert!(
            log.iter().any(|l| l.contains("files at rest")),
            "{}",
            log.join("\n")
        );
    }
}

/// An erasure, opt-out or withdrawal whose ledger entry cannot be written
/// (here: a full disk) fails and changes nothing: a restore would
/// otherwise undo it. The same for a bulk opt-out import.
#[tokio::test(flavor = "multi_thread")]
async fn test_a_change_the_ledger_cannot_record_fails_and_changes_nothing() {
    let ws = Workspace::new(&standard_config(
        "[retention]\nerasure_ledger = \"/dev/full\"\n",
    ));
    let number = "+49 151 23456789";
    let server = ws.start();
    let mut records = server.records().await;
    records
        .record_consent(consent(number, 10, "recording"))
        .await
        .unwrap();
    let erase = records
        .erase_subject(EraseSubjectRequest {
            verification: None,
            controller: String::new(),
            number: number.into(),
            default_region: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(erase.code(), tonic::Code::Unavailable, "{erase:?}");
    assert!(erase.message().contains("erasure ledger"), "{erase:?}");
    let opt_out = records
        .add_suppression(AddSuppressionRequest {
            controller: "acme".into(),
            number: number.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(opt_out.code(), tonic::Code::Unavailable);
    let revoke = records
        .revoke_consent(RevokeConsentRequest {
            controller: "acme".into(),
            number: number.into(),
            purpose: Purpose::Unspecified as i32,
            revoked_at: None,
            default_region: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(revoke.code(), tonic::Code::Unavailable);
    // Nothing changed: the consent still decides (the failure is visible
    // to the CRM, which retries once the disk is fixed).
    let still = check(&server, number).await;
    assert_eq!(codes(&still), vec![R::Consent], "{:?}", still.reasons);
    let file = ws.file("opt-outs.csv", "number,controller\n+4915199999999,acme\n");
    let import = ws.cli(&["suppression", "import", "--file", path_str(&file)]);
    assert!(!import.status.success());
    let message = String::from_utf8_lossy(&import.stderr);
    assert!(message.contains("erasure ledger"), "{message}");
    server.terminate();
}

/// A withdrawal that reaches dialgate before the consent it ends (the CRM
/// syncs the consent later, with its old `granted_at`) found no consent to
/// end and left no trace: the consent then ALLOWed. It is kept now.
#[tokio::test(flavor = "multi_thread")]
async fn test_a_withdrawal_received_before_its_consent_still_ends_it() {
    let ws = Workspace::new(&standard_config(""));
    let server = ws.start();
    let mut records = server.records().await;
    let number = "+49 151 77777777";
    let revoked = records
        .revoke_consent(RevokeConsentRequest {
            controller: "acme".into(),
            number: number.into(),
            purpose: Purpose::Unspecified as i32,
            revoked_at: ts(days_before_now(1)),
            default_region: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .revoked;
    assert_eq!(revoked, 0, "no consent was stored");
    records
        .record_consent(consent(number, 10, "recording-synced-late"))
        .await
        .unwrap();
    let denied = check(&server, number).await;
    assert_eq!(codes(&denied), vec![R::NoConsent], "{:?}", denied.reasons);
    // After a restart too.
    server.terminate();
    let server = ws.start();
    let denied = check(&server, number).await;
    assert_eq!(codes(&denied), vec![R::NoConsent], "{:?}", denied.reasons);
    server
        .records()
        .await
        .record_consent(consent(number, 0, "recording-new"))
        .await
        .unwrap();
    let allowed = check(&server, number).await;
    assert_eq!(verdict(&allowed), Verdict::Allow, "{:?}", allowed.reasons);
}

/// Disaster recovery: `data_dir` is lost, the ledger was kept on other
/// storage. Restore copies the backup's decision log in (it verifies), and
/// re-applies the erasure made after the backup.
#[tokio::test(flavor = "multi_thread")]
async fn test_restore_into_an_empty_data_dir_takes_the_backups_verified_log() {
    let shared = tempfile::tempdir().unwrap();
    let ledger = shared.path().join("ledger.jsonl");
    let section = format!("[retention]\nerasure_ledger = \"{}\"\n", path_str(&ledger));
    let ws = Workspace::new(&standard_config(&section));
    let number = "+49 151 88888888";
    let backup_dir = shared.path().join("backup");
    {
        let server = ws.start();
        server
            .records()
            .await
            .record_consent(consent(number, 10, "recording"))
            .await
            .unwrap();
        assert_eq!(verdict(&check(&server, number).await), Verdict::Allow);
        ws.cli_ok(&["backup", "--to", path_str(&backup_dir)]);
        // An ALLOW after the backup (seq 2), which its checkpoints vouch for.
        assert_eq!(verdict(&check(&server, number).await), Verdict::Allow);
        server
            .records()
            .await
            .erase_subject(EraseSubjectRequest {
                verification: None,
                controller: "acme".into(),
                number: number.into(),
                default_region: String::new(),
            })
            .await
            .unwrap();
        server.terminate();
    }
    // Another machine without the ledger: refused, unless told.
    let lost = Workspace::new(&standard_config(""));
    let refused = lost.cli(&["restore", "--from", path_str(&backup_dir)]);
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("erasure ledger") && message.contains("--without-ledger"),
        "{message}"
    );
    assert!(
        !lost.data_dir().join("contacts.db").exists(),
        "nothing restored"
    );
    let forced = lost.cli_ok(&[
        "restore",
        "--from",
        path_str(&backup_dir),
        "--without-ledger",
    ]);
    assert!(forced.contains("0 entries"), "{forced}");
    // data_dir lost its log but kept its checkpoints (no checkpoint key,
    // so no kept head): they vouch for the ALLOW made after the backup,
    // which the backup's log lacks. Found by review: the restore took the
    // older log, and that ALLOW no longer counted against the caps.
    let behind = Workspace::new(&standard_config(&section));
    std::fs::create_dir_all(behind.data_dir()).unwrap();
    std::fs::copy(
        ws.data_dir().join("checkpoints.jsonl"),
        behind.data_dir().join("checkpoints.jsonl"),
    )
    .unwrap();
    let refused = behind.cli(&["restore", "--from", path_str(&backup_dir)]);
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success()
            && message.contains("truncated")
            && message.contains("checkpoints.jsonl"),
        "{message}"
    );
    assert!(!behind.data_dir().join("decisions.db").exists());
    // Another machine: a fresh data_dir, the same ledger.
    let fresh = Workspace::new(&standard_config(&section));
    // Checkpoints of a log that is gone are moved aside, not overwritten.
    std::fs::create_dir_all(fresh.data_dir()).unwrap();
    std::fs::write(fresh.data_dir().join("checkpoints.jsonl"), "old\n").unwrap();
    let out = fresh.cli_ok(&["restore", "--from", path_str(&backup_dir)]);
    assert!(
        out.contains("the checkpoints that were in data_dir"),
        "{out}"
    );
    let kept = std::fs::read_dir(fresh.data_dir())
        .unwrap()
        .flatten()
        .find(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("before-restore-")
        })
        .unwrap()
        .path()
        .join("checkpoints.jsonl");
    assert_eq!(std::fs::read_to_string(kept).unwrap(), "old\n");
    assert!(
        out.contains("decision log restored from the backup")
            && out.contains("1 erasures (1 records erased")
            && out.contains("audit verify: ok (1 decisions)"),
        "{out}"
    );
    assert!(fresh.cli_ok(&["audit", "verify"]).starts_with("ok"));
    let server = fresh.start();
    let after = check(&server, number).await;
    assert_eq!(verdict(&after), Verdict::Deny, "{:?}", after.reasons);
    assert!(
        codes(&after).contains(&R::Suppressed),
        "{:?}",
        after.reasons
    );
    let decisions = export_jsonl(&fresh, &[]);
    assert_eq!(decisions.len(), 2, "the backup's decision and the new one");
    server.terminate();
    // A second restore over a running-free directory keeps the now-newer log.
    let again = fresh.cli_ok(&["restore", "--from", path_str(&backup_dir)]);
    assert!(again.contains("decision log kept"), "{again}");
    assert!(again.contains("before-restore-"), "{again}");
}

/// A bulk opt-out import that is refused (an id reused for another
/// number) imports nothing, and commits nothing to the erasure ledger: a
/// restore must not add opt-outs that were never made.
#[test]
fn test_a_refused_opt_out_import_commits_nothing_to_the_ledger() {
    let ws = Workspace::new(&standard_config(""));
    let first = ws.file(
        "a.csv",
        "number,controller,suppression_id\n+4915112345678,acme,crm-1\n",
    );
    ws.cli_ok(&["suppression", "import", "--file", path_str(&first)]);
    let second = ws.file(
        "b.csv",
        "number,controller,suppression_id\n+4915187654321,acme,crm-1\n",
    );
    let refused = ws.cli(&["suppression", "import", "--file", path_str(&second)]);
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("crm-1"), "{message}");
    let ledger = std::fs::read_to_string(ws.data_dir().join("erasure-ledger.jsonl")).unwrap();
    let commits = ledger
        .lines()
        .filter(|l| l.contains("import_committed"))
        .count();
    assert_eq!(commits, 1, "only the first import: {ledger}");
}

/// Imports a marketing consent for `number` through the CLI (no server).
fn import_consent(ws: &Workspace, number: &str) {
    let granted = days_before_now(10).strftime("%Y-%m-%d").to_string();
    let csv = ws.file(
        "consents.csv",
        &format!(
            "controller,number,purpose,granted_at,source\nacme,{number},marketing,{granted},web form\n"
        ),
    );
    ws.cli_ok(&["consent", "import", "--file", path_str(&csv)]);
}

fn backup_started_at(backup_dir: &std::path::Path) -> jiff::Timestamp {
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(backup_dir.join("manifest.json")).unwrap())
            .unwrap();
    manifest["started_at"].as_str().unwrap().parse().unwrap()
}

/// A bulk import's ledger entries are stamped when it starts, its rows
/// committed when it ends: a backup taken in between holds none of them,
/// and a restore must still re-apply them (the whole ledger is).
#[tokio::test(flavor = "multi_thread")]
async fn test_restore_keeps_the_opt_outs_of_an_import_that_straddled_the_backup() {
    let ws = Workspace::new(&standard_config(""));
    let number = "+4915177777777";
    import_consent(&ws, number);
    let backup_dir = ws.dir.path().join("backup-1");
    ws.cli_ok(&["backup", "--to", path_str(&backup_dir)]);
    let started = backup_started_at(&backup_dir);
    let file = ws.file(
        "opt-outs.csv",
        &format!("number,controller\n{number},acme\n"),
    );
    ws.cli_ok(&["suppression", "import", "--file", path_str(&file)]);
    // The import began five minutes before the backup (its entries say so)
    // and committed after it.
    let ledger = ws.data_dir().join("erasure-ledger.jsonl");
    let stamped = (started - jiff::SignedDuration::from_mins(5)).to_string();
    let text: Vec<String> = std::fs::read_to_string(&ledger)
        .unwrap()
        .lines()
        .map(|line| {
            let mut entry: serde_json::Value = serde_json::from_str(line).unwrap();
            if entry.get("ledger_id").is_none() {
                entry["at"] = stamped.clone().into();
            }
            entry.to_string()
        })
        .collect();
    assert_eq!(text.len(), 3, "{text:?}");
    std::fs::write(&ledger, text.join("\n") + "\n").unwrap();
    let out = ws.cli_ok(&["restore", "--from", path_str(&backup_dir)]);
    assert!(out.contains("1 opt-outs added"), "{out}");
    let server = ws.start();
    let after = check(&server, number).await;
    assert_eq!(codes(&after), vec![R::Suppressed], "{:?}", after.reasons);
    server.terminate();
}

/// A restore that fails while re-applying the ledger leaves data_dir's
/// store as it was and a marker: nothing that would serve or write a half
/// restored store starts until the restore is run again and finishes.
#[tokio::test(flavor = "multi_thread")]
async fn test_an_unfinished_restore_keeps_serve_and_imports_from_starting() {
    let ws = Workspace::new(&standard_config(""));
    let number = "+4915177777777";
    import_consent(&ws, number);
    let backup_dir = ws.dir.path().join("backup-1");
    ws.cli_ok(&["backup", "--to", path_str(&backup_dir)]);
    let opted_out = "+4915188888888";
    let file = ws.file(
        "opt-outs.csv",
        &format!("number,controller\n{opted_out},acme\n"),
    );
    ws.cli_ok(&["suppression", "import", "--file", path_str(&file)]);
    let ledger = ws.data_dir().join("erasure-ledger.jsonl");
    let good = std::fs::read_to_string(&ledger).unwrap();
    let first: serde_json::Value = serde_json::from_str(good.lines().nth(1).unwrap()).unwrap();
    let bad = serde_json::json!({
        "at": jiff::Timestamp::now().to_string(),
        "kind": "opt_out",
        "subject": "not-a-hash",
        "salt": first["salt"],
        "controller": "acme",
    });
    std::fs::write(&ledger, format!("{good}{bad}\n")).unwrap();
    let out = ws.cli(&["restore", "--from", path_str(&backup_dir)]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(err.contains("ledger entry 2 of 2"), "{err}");
    let marker = ws.data_dir().join("restore-in-progress");
    assert!(marker.exists());
    let err = serve_refused(&ws);
    assert!(
        err.contains("restore-in-progress") && err.contains("dialgate restore"),
        "{err}"
    );
    let refused = ws.cli(&["suppression", "import", "--file", path_str(&file)]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("restore-in-progress"),
        "{refused:?}"
    );
    // Fixed, and run again: done, and the server starts on the whole store.
    std::fs::write(&ledger, &good).unwrap();
    ws.cli_ok(&["restore", "--from", path_str(&backup_dir)]);
    assert!(!marker.exists());
    assert!(!ws.data_dir().join("contacts.db.restoring").exists());
    let server = ws.start();
    let after = check(&server, opted_out).await;
    assert!(
        codes(&after).contains(&R::Suppressed),
        "{:?}",
        after.reasons
    );
    let after = check(&server, number).await;
    assert_eq!(verdict(&after), Verdict::Allow, "{:?}", after.reasons);
    server.terminate();
}

/// A purge that removed every decision (an earlier version's) leaves no
/// row to continue the hash chain from: after a restart the writer
/// continues from the purge's anchor (never seq 1 again), and `audit
/// verify` passes. `audit purge` itself keeps the latest decisions.
#[tokio::test(flavor = "multi_thread")]
async fn test_a_log_purged_of_every_row_continues_its_chain_after_a_restart() {
    let ws = Workspace::new(&purgeable_config());
    let number = "+49 151 23456789";
    {
        let server = ws.start();
        check(&server, number).await;
        check(&server, number).await;
        let (status, _) = server.terminate();
        assert!(status.success());
    }
    std::thread::sleep(Duration::from_millis(20));
    let cut = jiff::Timestamp::now().to_string();
    std::thread::sleep(Duration::from_millis(2100));
    // `audit purge` keeps what a restart reads back (here the 1 s
    // idempotency window and 1 s of clock-step tolerance) from the latest
    // decision, whatever the clock says: it never removes every row.
    let refused = ws.cli(&["audit", "purge", "--before", &cut]);
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("nothing purged"),
        "{refused:?}"
    );
    // Every row removed as a purge by an earlier version did: the rows
    // deleted, the last one's seq and hash kept as the anchor (the server
    // checkpointed it at its stop).
    {
        let conn = rusqlite::Connection::open(ws.data_dir().join("decisions.db")).unwrap();
        let (seq, hash): (i64, String) = conn
            .query_row(
                "SELECT seq, hash FROM decisions ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(seq, 2);
        conn.execute("DELETE FROM decisions", []).unwrap();
        conn.execute(
            "INSERT OR REPLACE INTO log_meta (key, value) VALUES ('purged_through', ?1)",
            [format!("{seq}:{hash}")],
        )
        .unwrap();
    }
    {
        let server = ws.start();
        check(&server, number).await;
        let (status, _) = server.terminate();
        assert!(status.success());
    }
    let verified = ws.cli_ok(&["audit", "verify"]);
    assert!(verified.starts_with("ok: 1 decisions"), "{verified}");
    let conn = rusqlite::Connection::open(ws.data_dir().join("decisions.db")).unwrap();
    let seq: i64 = conn
        .query_row("SELECT MIN(seq) FROM decisions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(seq, 3, "the chain goes on after the purged rows");
}

/// A lost erasure ledger is noticed, not silently created again empty:
/// the contact store knows its ledger's id (serve and the importers
/// refuse another), and a backup's manifest records the id and entry
/// count that restore then requires (--without-ledger is the override).
#[tokio::test(flavor = "multi_thread")]
async fn test_a_lost_erasure_ledger_is_refused_not_recreated() {
    let ws = Workspace::new(&standard_config(""));
    let number = "+4915177777777";
    import_consent(&ws, number);
    let opted_out = "+4915188888888";
    let file = ws.file(
        "opt-outs.csv",
        &format!("number,controller\n{opted_out},acme\n"),
    );
    ws.cli_ok(&["suppression", "import", "--file", path_str(&file)]);
    let backup_dir = ws.dir.path().join("backup-1");
    ws.cli_ok(&["backup", "--to", path_str(&backup_dir)]);
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(backup_dir.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["ledger_entries"], 2, "{manifest}");
    let ledger = ws.data_dir().join("erasure-ledger.jsonl");
    let whole = std::fs::read_to_string(&ledger).unwrap();
    // Cut: fewer entries than the backup saw.
    std::fs::write(&ledger, whole.lines().next().unwrap().to_string() + "\n").unwrap();
    let out = ws.cli(&["restore", "--from", path_str(&backup_dir)]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("fewer than the 2"), "{err}");
    // A manifest that names no ledger (written without one, or edited):
    // the backup's store names it (found by review: restore then skipped
    // its checks).
    let mut unnamed = manifest.clone();
    unnamed.as_object_mut().unwrap().remove("ledger_id");
    unnamed.as_object_mut().unwrap().remove("ledger_entries");
    std::fs::write(
        backup_dir.join("manifest.json"),
        serde_json::to_string_pretty(&unnamed).unwrap(),
    )
    .unwrap();
    // A ledger without an id (not a ledger file, a damaged first line):
    // serve and backup refuse it for a bound store, and restore too.
    // (an entry line first: a ledger of an earlier version.)
    std::fs::write(&ledger, whole.lines().nth(1).unwrap().to_string() + "\n").unwrap();
    let err = serve_refused(&ws);
    assert!(err.contains("has no id"), "{err}");
    let out = ws.cli(&["backup", "--to", path_str(&ws.dir.path().join("backup-2"))]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Nothing backed up"), "{err}");
    let out = ws.cli(&["restore", "--from", path_str(&backup_dir)]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not the one the backup was made with"),
        "{err}"
    );
    std::fs::write(
        backup_dir.join("manifest.json"),
        serde_json::to_string_pretty(&manifest).unwrap(),
    )
    .unwrap();
    // Lost: serve, the importers and restore refuse the new one.
    std::fs::remove_file(&ledger).unwrap();
    let err = serve_refused(&ws);
    assert!(err.contains("is not the one this contact store"), "{err}");
    let out = ws.cli(&["suppression", "import", "--file", path_str(&file)]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not the one this contact store"), "{err}");
    let out = ws.cli(&["restore", "--from", path_str(&backup_dir)]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not the one the backup was made with"),
        "{err}"
    );
    // The explicit override, then the server starts with the new ledger.
    ws.cli_ok(&[
        "restore",
        "--from",
        path_str(&backup_dir),
        "--without-ledger",
    ]);
    let server = ws.start();
    let after = check(&server, opted_out).await;
    assert!(
        codes(&after).contains(&R::Suppressed),
        "{:?}",
        after.reasons
    );
    server.terminate();
}

/// A consent rectified away from a mistyped number after a backup must not
/// be back under that number after a restore (the wrong person would be
/// callable): the rectification is in the ledger, and restore deletes the
/// record where the backup still has it there.
#[tokio::test(flavor = "multi_thread")]
async fn test_restore_does_not_put_a_rectified_consent_back_under_the_wrong_number() {
    let ws = Workspace::new(&standard_config(""));
    let wrong = "+4915177777777";
    let right = "+4915177777778";
    let granted = days_before_now(10).strftime("%Y-%m-%d").to_string();
    let csv = ws.file(
        "consents.csv",
        &format!(
            "controller,number,purpose,granted_at,source,consent_id\nacme,{wrong},marketing,{granted},web form,c-typo\n"
        ),
    );
    ws.cli_ok(&["consent", "import", "--file", path_str(&csv)]);
    let backup_dir = ws.dir.path().join("backup-1");
    ws.cli_ok(&["backup", "--to", path_str(&backup_dir)]);
    let fix = ws.file(
        "fix.csv",
        &format!("consent_id,controller,reason,number\nc-typo,acme,typed wrong,{right}\n"),
    );
    ws.cli_ok(&["consent", "rectify", "--file", path_str(&fix)]);
    let ledger = std::fs::read_to_string(ws.data_dir().join("erasure-ledger.jsonl")).unwrap();
    assert!(
        ledger.contains("\"rectification\"") && !ledger.contains("+49"),
        "{ledger}"
    );
    let out = ws.cli_ok(&["restore", "--from", path_str(&backup_dir)]);
    assert!(out.contains("1 records deleted"), "{out}");
    let server = ws.start();
    let after = check(&server, wrong).await;
    assert_ne!(verdict(&after), Verdict::Allow, "{:?}", after.reasons);
    server.terminate();
}

/// A contact store written by a version without the erasure ledger (records,
/// no ledger bound, no ledger file) is an upgrade, not a lost ledger: the
/// server starts and binds a new ledger (it refused to start before).
#[tokio::test(flavor = "multi_thread")]
async fn test_a_store_from_before_the_ledger_starts_with_a_new_one() {
    let ws = Workspace::new(&standard_config(""));
    let number = "+4915166666666";
    import_consent(&ws, number);
    // As an earlier version left it: no binding, no ledger.
    let db = rusqlite::Connection::open(ws.data_dir().join("contacts.db")).unwrap();
    db.execute("DELETE FROM meta WHERE key = 'ledger_id'", [])
        .unwrap();
    drop(db);
    std::fs::remove_file(ws.data_dir().join("erasure-ledger.jsonl")).unwrap();
    let server = ws.start();
    let allowed = check(&server, number).await;
    assert_eq!(verdict(&allowed), Verdict::Allow, "{:?}", allowed.reasons);
    server.terminate();
    let db = rusqlite::Connection::open(ws.data_dir().join("contacts.db")).unwrap();
    let bound: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM meta WHERE key = 'ledger_id'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(bound, 1, "bound to the new ledger");
}

/// A contact store lost (deleted, a new disk) and created again empty
/// beside the ledger of the old one's changes is refused: bound to that
/// ledger silently, it served without the opt-outs, and every opted-out
/// number was callable (found by review). A restore brings them back.
#[tokio::test(flavor = "multi_thread")]
async fn test_a_lost_contact_store_is_not_replaced_by_an_empty_one() {
    let ws = Workspace::new(&standard_config(""));
    let opted_out = "+4915188888888";
    let file = ws.file(
        "opt-outs.csv",
        &format!("number,controller\n{opted_out},acme\n"),
    );
    ws.cli_ok(&["suppression", "import", "--file", path_str(&file)]);
    let backup_dir = ws.dir.path().join("backup-1");
    ws.cli_ok(&["backup", "--to", path_str(&backup_dir)]);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(ws.data_dir().join(format!("contacts.db{suffix}")));
    }
    let err = serve_refused(&ws);
    assert!(
        err.contains("contacts.db was lost or replaced") && err.contains("dialgate restore"),
        "{err}"
    );
    let out = ws.cli(&["suppression", "import", "--file", path_str(&file)]);
    assert!(!out.status.success(), "an importer refuses it too");
    ws.cli_ok(&["restore", "--from", path_str(&backup_dir)]);
    let server = ws.start();
    let after = check(&server, opted_out).await;
    assert!(
        codes(&after).contains(&R::Suppressed),
        "{:?}",
        after.reasons
    );
    server.terminate();
}

/// A correction that narrowed a record in place after a backup (here: an
/// expiry set, the consent ended) is put back by a restore: only the
/// corrections that moved a record were in the ledger, and the restore
/// brought back the wider copy, a consent in force again (found by review).
#[tokio::test(flavor = "multi_thread")]
async fn test_restore_keeps_a_correction_that_narrowed_a_record() {
    let ws = Workspace::new(&standard_config(""));
    let number = "+4915177777779";
    let granted = days_before_now(10).strftime("%Y-%m-%d").to_string();
    let csv = ws.file(
        "consents.csv",
        &format!(
            "controller,number,purpose,granted_at,source,consent_id\nacme,{number},marketing,{granted},web form,c-ended\n"
        ),
    );
    ws.cli_ok(&["consent", "import", "--file", path_str(&csv)]);
    let backup_dir = ws.dir.path().join("backup-1");
    ws.cli_ok(&["backup", "--to", path_str(&backup_dir)]);
    let ended = days_before_now(1)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let fix = ws.file(
        "fix.csv",
        &format!("consent_id,controller,reason,expires_at\nc-ended,acme,it ended,{ended}\n"),
    );
    ws.cli_ok(&["consent", "rectify", "--file", path_str(&fix)]);
    let ledger_path = ws.data_dir().join("erasure-ledger.jsonl");
    let ledger = std::fs::read_to_string(&ledger_path).unwrap();
    assert!(
        ledger.contains("\"corrected\"") && !ledger.contains("+49"),
        "{ledger}"
    );
    // A correction computed from the values before, written to the ledger
    // after it and then failed (the record had changed): replayed, it would
    // undo the narrowing. A restore applies a correction only onto the
    // values it corrected.
    let narrowing: serde_json::Value = ledger
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .find(|entry| entry.get("corrected").is_some())
        .unwrap();
    let mut stale = narrowing.clone();
    stale["corrected"] = narrowing["corrected_from"].clone();
    std::fs::write(&ledger_path, format!("{ledger}{stale}\n")).unwrap();
    let out = ws.cli_ok(&["restore", "--from", path_str(&backup_dir)]);
    assert!(out.contains("1 records corrected again"), "{out}");
    let server = ws.start();
    let after = check(&server, number).await;
    assert!(codes(&after).contains(&R::NoConsent), "{:?}", after.reasons);
    server.terminate();
}

/// A correction that took "written agreement" off a consent's method
/// after a backup is put back by a restore: the ledger kept only its grant,
/// expiry and supplier, and the restored consent lifted the US DNC again.
#[tokio::test(flavor = "multi_thread")]
async fn test_restore_keeps_a_correction_of_a_consents_method() {
    let ws = Workspace::new(&standard_config(""));
    ws.import("us-dnc", &["212 555 0199"], &[]);
    let number = "+12125550199";
    let granted = days_before_now(10).strftime("%Y-%m-%d").to_string();
    let csv = ws.file(
        "consents.csv",
        &format!(
            "controller,number,purpose,granted_at,source,method,consent_id\nacme,{number},marketing,{granted},paper form,written_agreement,c-signed\n"
        ),
    );
    ws.cli_ok(&["consent", "import", "--file", path_str(&csv)]);
    let us_check = async |server: &TestServer| {
        server
            .gateway()
            .await
            .check_call(call(number, "+12125550100", "us-sales"))
            .await
            .unwrap()
            .into_inner()
    };
    let server = ws.start();
    assert_eq!(verdict(&us_check(&server).await), Verdict::Allow);
    server.terminate();
    let backup_dir = ws.dir.path().join("backup-1");
    ws.cli_ok(&["backup", "--to", path_str(&backup_dir)]);
    let fix = ws.file(
        "fix.csv",
        "consent_id,controller,reason,method\nc-signed,acme,no signature on file,web form\n",
    );
    ws.cli_ok(&["consent", "rectify", "--file", path_str(&fix)]);
    let out = ws.cli_ok(&["restore", "--from", path_str(&backup_dir)]);
    assert!(out.contains("1 records corrected again"), "{out}");
    let server = ws.start();
    let after = us_check(&server).await;
    assert_eq!(verdict(&after), Verdict::Deny, "{:?}", after.reasons);
    assert!(
        codes(&after).contains(&R::RegistryListed),
        "{:?}",
        after.reasons
    );
    server.terminate();
}

/// A withdrawal a restore kept by hash (its number not in the backup)
/// binds a consent recorded again, and a rectification cannot carry that
/// consent's grant past it: the rectification checks read only the
/// consents' own withdrawals, and let it through (found by review).
#[tokio::test(flavor = "multi_thread")]
async fn test_a_withdrawal_kept_by_hash_binds_a_rectification() {
    let ws = Workspace::new(&standard_config(""));
    import_consent(&ws, "+4915100000001");
    let backup_dir = ws.dir.path().join("backup-1");
    ws.cli_ok(&["backup", "--to", path_str(&backup_dir)]);
    let number = "+4915100000002";
    let server = ws.start();
    server
        .records()
        .await
        .revoke_consent(RevokeConsentRequest {
            controller: "acme".into(),
            number: number.into(),
            purpose: Purpose::Marketing as i32,
            revoked_at: ts(days_before_now(2)),
            default_region: String::new(),
        })
        .await
        .unwrap();
    assert!(server.terminate().0.success());
    ws.cli_ok(&["restore", "--from", path_str(&backup_dir)]);

    let server = ws.start();
    let mut records = server.records().await;
    let id = records
        .record_consent(consent(number, 3, "form-3"))
        .await
        .unwrap()
        .into_inner()
        .consent_id;
    let err = records
        .rectify_consent(dialgate::proto::RectifyConsentRequest {
            consent_id: id,
            controller: "acme".into(),
            reason: "date typo".into(),
            granted_at: ts(days_before_now(1)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        err.message().starts_with("granted_at:") && err.message().contains("withdrawal"),
        "{}",
        err.message()
    );
    let after = check(&server, number).await;
    assert!(codes(&after).contains(&R::NoConsent), "{:?}", after.reasons);
    server.terminate();
}

/// A relationship's end recorded after a backup (the contract API ends a
/// relationship by recording it again with its end) is re-applied by a
/// restore of that backup, which holds the ongoing copy: it exempted the
/// number from the registry again, without end (found by review).
#[tokio::test(flavor = "multi_thread")]
async fn test_restore_reapplies_a_relationship_end_made_after_the_backup() {
    let ws = Workspace::new(&standard_config(""));
    let listed = "212 555 0199";
    ws.import("us-dnc", &[listed], &[]);
    let call = || dialgate::proto::CheckCallRequest {
        called_number: listed.into(),
        caller_id: "+12125550100".into(),
        campaign_id: "us-sales".into(),
        ..Default::default()
    };
    let started = ts(days_before_now(1000));
    let relationship = |ended_at| RecordRelationshipRequest {
        controller: "acme".into(),
        number: format!("+1 {listed}"),
        kind: RelationshipKind::Customer as i32,
        started_at: started,
        ended_at,
        default_region: String::new(),
    };
    let backup_dir = ws.dir.path().join("backup-1");
    {
        let server = ws.start();
        let mut records = server.records().await;
        records
            .record_relationship(relationship(None))
            .await
            .unwrap();
        let mut gateway = server.gateway().await;
        let exempt = gateway.check_call(call()).await.unwrap().into_inner();
        assert_eq!(verdict(&exempt), Verdict::Allow, "{:?}", exempt.reasons);
        ws.cli_ok(&["backup", "--to", path_str(&backup_dir)]);
        // Ended two years ago: past the 18 months the DNC exemption lasts.
        records
            .record_relationship(relationship(ts(days_before_now(730))))
            .await
            .unwrap();
        let ended = gateway.check_call(call()).await.unwrap().into_inner();
        assert_eq!(verdict(&ended), Verdict::Deny, "{:?}", ended.reasons);
        server.terminate();
    }
    let out = ws.cli_ok(&["restore", "--from", path_str(&backup_dir)]);
    assert!(out.contains("1 relationship ends recorded again"), "{out}");
    let server = ws.start();
    let mut gateway = server.gateway().await;
    let after = gateway.check_call(call()).await.unwrap().into_inner();
    assert_eq!(verdict(&after), Verdict::Deny, "{:?}", after.reasons);
    assert!(
        codes(&after).contains(&R::RegistryListed),
        "{:?}",
        after.reasons
    );
    server.terminate();
}

/// An erasure made after a backup also reaches the registry answers the
/// backup holds for the number (its only record there): a restore brought
/// the erased subject's answers back (found by review).
#[tokio::test(flavor = "multi_thread")]
async fn test_restore_reapplies_an_erasure_to_registry_answers() {
    let ws = Workspace::new(&standard_config(""));
    let opposed_number = "+393337777777";
    let cleared = ws.file("cleared.txt", "+39 333 123 4567\n");
    let opposed = ws.file("opposed.txt", &format!("{opposed_number}\n"));
    ws.cli_ok(&[
        "registry",
        "import",
        "--registry",
        "it-rpo",
        "--controller",
        "acme",
        "--file",
        path_str(&cleared),
        "--opposed",
        path_str(&opposed),
    ]);
    let answers = || -> i64 {
        rusqlite::Connection::open(ws.data_dir().join("contacts.db"))
            .unwrap()
            .query_row("SELECT count(*) FROM observations", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(answers(), 1);
    // The access export lists them (found by review: they were erased as
    // the subject's data but not exported).
    {
        let server = ws.start();
        let mut records = server.records().await;
        let json = records
            .export_subject(dialgate::proto::ExportSubjectRequest {
                verification: None,
                controller: "acme".into(),
                number: opposed_number.into(),
                default_region: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .json;
        let export: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(export["held"]["registry_answers"], 1, "{json}");
        assert_eq!(
            export["registry_answers"][0]["registry_id"], "it-rpo",
            "{json}"
        );
        server.terminate();
    }
    let backup_dir = ws.dir.path().join("backup-1");
    ws.cli_ok(&["backup", "--to", path_str(&backup_dir)]);
    {
        let server = ws.start();
        let mut records = server.records().await;
        records
            .erase_subject(EraseSubjectRequest {
                verification: None,
                controller: String::new(),
                number: opposed_number.into(),
                default_region: String::new(),
            })
            .await
            .unwrap();
        server.terminate();
    }
    assert_eq!(answers(), 0, "the erasure deletes the answers");
    ws.cli_ok(&["restore", "--from", path_str(&backup_dir)]);
    assert_eq!(answers(), 0, "and the restore does not bring them back");
}

/// A withdrawal dated before the grant of the consent it ends binds a
/// re-synced copy live (a marker at the grant), and after a restore from a
/// backup made before the consent was recorded too: the ledger keeps the
/// grant it bound (`binds_grants_until`), whether the backup lacks the
/// number (kept by hash) or holds an older consent of it (re-applied).
/// The ledger held the withdrawal's own date only, and the CRM's re-sync
/// was ALLOWed again after a restore (found by review).
#[tokio::test(flavor = "multi_thread")]
async fn test_a_restore_keeps_what_a_withdrawal_dated_before_the_grant_bound() {
    let ws = Workspace::new(&standard_config(""));
    // Not in the backup at all: the withdrawal is kept by hash.
    let absent = "+49 151 77777777";
    // In the backup with an older consent: the withdrawal is re-applied.
    let present = "+49 151 88888888";
    let backup_dir = ws.dir.path().join("backup-before-grant");
    let now = jiff::Timestamp::now();
    let granted = now - jiff::SignedDuration::from_hours(3);
    let resync = |number: &str| RecordConsentRequest {
        controller: "acme".into(),
        number: number.into(),
        purpose: Purpose::Marketing as i32,
        granted_at: ts(granted),
        source: "web form".into(),
        evidence_ref: "doi:1".into(),
        ..Default::default()
    };
    {
        let server = ws.start();
        let mut records = server.records().await;
        records
            .record_consent(consent(present, 30, "old"))
            .await
            .unwrap();
        ws.cli_ok(&["backup", "--to", path_str(&backup_dir)]);
        for number in [absent, present] {
            records.record_consent(resync(number)).await.unwrap();
            // Withdrawn now; the CRM sends its local time (UTC-5) as UTC.
            records
                .revoke_consent(RevokeConsentRequest {
                    controller: "acme".into(),
                    number: number.into(),
                    purpose: Purpose::Marketing as i32,
                    revoked_at: ts(now - jiff::SignedDuration::from_hours(5)),
                    default_region: String::new(),
                })
                .await
                .unwrap();
            // Live, the CRM's re-sync is bound (this session's fix).
            records.record_consent(resync(number)).await.unwrap();
            let live = check(&server, number).await;
            assert_eq!(
                verdict(&live),
                Verdict::Deny,
                "live {number}: {:?}",
                live.reasons
            );
        }
        server.terminate();
    }
    ws.cli_ok(&["restore", "--from", path_str(&backup_dir)]);
    let server = ws.start();
    let mut records = server.records().await;
    let mut failures = Vec::new();
    for number in [absent, present] {
        // The CRM re-syncs the same consent (same grant) after the restore.
        records.record_consent(resync(number)).await.unwrap();
        let after = check(&server, number).await;
        if verdict(&after) != Verdict::Deny {
            failures.push(format!(
                "{number}: {:?} {:?}",
                verdict(&after),
                after.reasons
            ));
        }
    }
    server.terminate();
    assert!(
        failures.is_empty(),
        "withdrawn consent ALLOWed again after restore: {failures:#?}"
    );
}

/// A backup keeps only the checkpoints that vouch for the log it copied:
/// one the running server appended after the copy (here written by hand,
/// seq 999) vouched for rows the backup lacks, and restoring the backup
/// into a data_dir that lost its log was refused as a truncated log
/// (found by review).
#[tokio::test(flavor = "multi_thread")]
async fn test_a_backup_keeps_only_the_checkpoints_of_the_log_it_copied() {
    let shared = tempfile::tempdir().unwrap();
    let ws = Workspace::new(&standard_config(""));
    ws.import("it-rpo", &["+39 333 123 4567"], &["--controller", "acme"]);
    {
        let server = ws.start();
        server
            .gateway()
            .await
            .check_call(call("+39 333 123 4567", "+390212345678", "it-sales"))
            .await
            .unwrap();
        server.terminate();
    }
    let live = ws.data_dir().join("checkpoints.jsonl");
    let mut text = std::fs::read_to_string(&live).unwrap();
    assert!(!text.is_empty());
    text.push_str("{\"seq\":999,\"hash\":\"after-the-copy\",\"at\":\"2026-11-28T00:00:00Z\"}\n");
    std::fs::write(&live, text).unwrap();
    let backup_dir = shared.path().join("backup");
    ws.cli_ok(&["backup", "--to", path_str(&backup_dir)]);
    let copied = std::fs::read_to_string(backup_dir.join("checkpoints.jsonl")).unwrap();
    assert!(!copied.is_empty(), "the log's own checkpoints are kept");
    assert!(!copied.contains("after-the-copy"), "{copied}");
    let lost = Workspace::new(&standard_config(""));
    lost.cli_ok(&[
        "restore",
        "--from",
        path_str(&backup_dir),
        "--without-ledger",
    ]);
}
