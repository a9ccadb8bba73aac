//! Relationships, data-subject rights, bulk imports and the change trail.

use dialgate::proto::{
    AddSuppressionRequest, EraseSubjectRequest, ExportSubjectRequest, Purpose, ReasonCode as R,
    RecordConsentRequest, RecordRelationshipRequest, RelationshipKind, Verdict,
};
use tonic::Code;

use crate::support::*;

const IT_CLI: &str = "+390212345678";

fn ts(t: jiff::Timestamp) -> Option<prost_types::Timestamp> {
    Some(dialgate::proto::timestamp_to_proto(t))
}

fn days_before_now(days: i64) -> jiff::Timestamp {
    jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * days)
}

#[tokio::test(flavor = "multi_thread")]
async fn test_relationship_exemption_scoped_to_its_controller() {
    let ws = Workspace::new(&standard_config(""));
    ws.import("it-rpo", &["+39 333 999 0000"], &["--controller", "acme"]);
    ws.import("us-dnc", &["212 555 0199"], &[]);
    let server = ws.start();
    let mut records = server.records().await;
    let mut gateway = server.gateway().await;

    // Not cleared in the RPO, but a customer whose contract ended 10 days ago.
    let id = records
        .record_relationship(RecordRelationshipRequest {
            controller: "acme".into(),
            number: "333 123 4567".into(),
            kind: RelationshipKind::Customer as i32,
            started_at: ts(days_before_now(400)),
            ended_at: ts(days_before_now(10)),
            default_region: "IT".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .relationship_id;
    let acme = gateway
        .check_call(call("+39 333 123 4567", IT_CLI, "it-sales"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(verdict(&acme), Verdict::Allow, "{:?}", acme.reasons);
    assert_eq!(codes(&acme), vec![R::Relationship]);
    assert!(acme.reasons[0].detail.contains(&id));
    let beta = gateway
        .check_call(call("+39 333 123 4567", IT_CLI, "it-beta"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        codes(&beta),
        vec![R::RegistryNotCovered],
        "the exemption is for that controller only"
    );

    // US: an inquiry 10 days ago exempts from the DNC.
    records
        .record_relationship(RecordRelationshipRequest {
            controller: "acme".into(),
            number: "+1 212 555 0199".into(),
            kind: RelationshipKind::Inquiry as i32,
            started_at: ts(days_before_now(10)),
            ended_at: None,
            default_region: String::new(),
        })
        .await
        .unwrap();
    let us = gateway
        .check_call(call("212 555 0199", "+12125550100", "us-sales"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(codes(&us), vec![R::Relationship]);

    // An opt-out beats it.
    records
        .add_suppression(AddSuppressionRequest {
            controller: "acme".into(),
            number: "+39 333 123 4567".into(),
            reason: "asked".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let after = gateway
        .check_call(call("+39 333 123 4567", IT_CLI, "it-sales"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(codes(&after), vec![R::Suppressed]);

    // Bad requests name the field.
    let bad = [
        (
            RecordRelationshipRequest {
                controller: "".into(),
                number: "+393331234567".into(),
                kind: 1,
                started_at: ts(days_before_now(1)),
                ended_at: None,
                default_region: String::new(),
            },
            "controller",
        ),
        (
            RecordRelationshipRequest {
                controller: "a".into(),
                number: "+393331234567".into(),
                kind: 0,
                started_at: ts(days_before_now(1)),
                ended_at: None,
                default_region: String::new(),
            },
            "kind",
        ),
        (
            RecordRelationshipRequest {
                controller: "a".into(),
                number: "+393331234567".into(),
                kind: 1,
                started_at: None,
                ended_at: None,
                default_region: String::new(),
            },
            "started_at",
        ),
        (
            RecordRelationshipRequest {
                controller: "a".into(),
                number: "+393331234567".into(),
                kind: 1,
                started_at: ts(days_before_now(1)),
                ended_at: ts(days_before_now(2)),
                default_region: String::new(),
            },
            "ended_at",
        ),
    ];
    for (request, field) in bad {
        let status = records.record_relationship(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status.message().starts_with(field),
            "{field}: {}",
            status.message()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn test_campaign_scoped_and_expiring_opt_outs() {
    let ws = Workspace::new(&standard_config(""));
    ws.import("it-rpo", &["+39 333 123 4567"], &["--controller", "acme"]);
    let server = ws.start();
    let mut records = server.records().await;
    let mut gateway = server.gateway().await;
    records
        .add_suppression(AddSuppressionRequest {
            controller: "acme".into(),
            campaign_id: "it-sales".into(),
            number: "+39 333 123 4567".into(),
            reason: "not interested in this offer".into(),
            expires_at: ts(jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24)),
            ..Default::default()
        })
        .await
        .unwrap();
    let sales = gateway
        .check_call(call("+39 333 123 4567", IT_CLI, "it-sales"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(codes(&sales), vec![R::Suppressed]);
    let survey = gateway
        .check_call(call("+39 333 123 4567", "0843 123456", "it-survey"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        verdict(&survey),
        Verdict::Allow,
        "another campaign of the controller: {:?}",
        survey.reasons
    );
    let status = records
        .add_suppression(AddSuppressionRequest {
            campaign_id: "it-sales".into(),
            number: "+39 333 123 4567".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        status.message().starts_with("controller"),
        "{}",
        status.message()
    );
}

/// A controller's access export carried other controllers' trail events
/// (their consent evidence, their requests' verifications), and a
/// controller spelled otherwise exported nothing (found by review).
#[tokio::test(flavor = "multi_thread")]
async fn test_a_controllers_export_holds_its_own_trail_only() {
    let ws = Workspace::new(&standard_config(""));
    let server = ws.start();
    let mut records = server.records().await;
    for (controller, evidence) in [("acme", "acme-ev-1"), ("beta", "beta-ev-7")] {
        records
            .record_consent(RecordConsentRequest {
                controller: controller.into(),
                number: "+39 333 123 4567".into(),
                purpose: Purpose::Marketing as i32,
                granted_at: ts(days_before_now(3)),
                source: "landing page".into(),
                evidence_ref: evidence.into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let export = |controller: &str| ExportSubjectRequest {
        verification: None,
        controller: controller.into(),
        number: "+39 333 123 4567".into(),
        default_region: String::new(),
    };
    let json = records
        .export_subject(export("acme"))
        .await
        .unwrap()
        .into_inner()
        .json;
    assert!(json.contains("acme-ev-1"), "{json}");
    assert!(!json.contains("beta-ev-7"), "{json}");
    let all = records
        .export_subject(export(""))
        .await
        .unwrap()
        .into_inner()
        .json;
    assert!(all.contains("acme-ev-1") && all.contains("beta-ev-7"));
    let refused = records.export_subject(export("ACME")).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn test_export_then_erase_keeps_the_number_suppressed() {
    let ws = Workspace::new(&standard_config(""));
    ws.import("it-rpo", &["+39 333 123 4567"], &["--controller", "acme"]);
    let server = ws.start();
    let mut records = server.records().await;
    let mut gateway = server.gateway().await;
    records
        .record_consent(RecordConsentRequest {
            controller: "acme".into(),
            number: "+39 333 123 4567".into(),
            purpose: Purpose::Marketing as i32,
            granted_at: ts(days_before_now(3)),
            source: "landing page".into(),
            evidence_ref: "doi:42".into(),
            method: "double_opt_in".into(),
            notice_version: "privacy-v7".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    records
        .record_relationship(RecordRelationshipRequest {
            controller: "acme".into(),
            number: "+39 333 123 4567".into(),
            kind: RelationshipKind::Customer as i32,
            started_at: ts(days_before_now(100)),
            ended_at: None,
            default_region: String::new(),
        })
        .await
        .unwrap();
    gateway
        .check_call(call("+39 333 123 4567", IT_CLI, "it-sales"))
        .await
        .unwrap();

    let export = |records: &mut dialgate::proto::contact_records_client::ContactRecordsClient<
        tonic::transport::Channel,
    >| {
        let mut records = records.clone();
        async move {
            let json = records
                .export_subject(ExportSubjectRequest {
                    verification: None,
                    controller: String::new(),
                    number: "333 1234567".into(),
                    default_region: "IT".into(),
                })
                .await
                .unwrap()
                .into_inner()
                .json;
            serde_json::from_str::<serde_json::Value>(&json).unwrap()
        }
    };
    let before = export(&mut records).await;
    assert_eq!(before["number"], "+393331234567");
    assert_eq!(before["consents"][0]["evidence_ref"], "doi:42");
    assert_eq!(before["consents"][0]["method"], "double_opt_in");
    assert_eq!(before["consents"][0]["notice_version"], "privacy-v7");
    assert_eq!(before["relationships"][0]["kind"], "customer");
    assert_eq!(before["decisions"].as_array().unwrap().len(), 1);
    assert!(before["trail"].as_array().unwrap().len() >= 2);

    let erased = records
        .erase_subject(EraseSubjectRequest {
            verification: None,
            controller: String::new(),
            number: "+39 333 123 4567".into(),
            default_region: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .erased_records;
    assert_eq!(erased, 2, "one consent and one relationship");
    let after = gateway
        .check_call(call("+39 333 123 4567", IT_CLI, "it-sales"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        codes(&after),
        vec![R::Suppressed],
        "erased but still suppressed"
    );

    let exported = export(&mut records).await;
    assert!(exported["consents"].as_array().unwrap().is_empty());
    assert!(exported["relationships"].as_array().unwrap().is_empty());
    let kept = &exported["suppressions"][0];
    assert_eq!(
        kept["number"], "",
        "the opt-out is kept by salted hash only"
    );
    assert!(kept["reason"].as_str().unwrap().contains("erasure"));

    let (status, _) = server.terminate();
    assert!(status.success());
    let server = ws.start();
    let mut gateway = server.gateway().await;
    let restarted = gateway
        .check_call(call("+39 333 123 4567", IT_CLI, "it-sales"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        codes(&restarted),
        vec![R::Suppressed],
        "suppression survives restart by hash"
    );
    drop(server);

    let db = rusqlite::Connection::open(ws.data_dir().join("contacts.db")).unwrap();
    let raw: i64 = db
        .query_row("SELECT (SELECT COUNT(*) FROM consents) + (SELECT COUNT(*) FROM relationships) + (SELECT COUNT(*) FROM suppressions WHERE number != '')", [], |r| r.get(0))
        .unwrap();
    assert_eq!(raw, 0, "no raw number kept in the contact store");

    let trail: Vec<serde_json::Value> = ws
        .cli_ok(&["trail", "export"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let actions: Vec<&str> = trail
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        vec![
            "consent.recorded",
            "relationship.recorded",
            "subject.exported",
            "subject.erased",
            "subject.exported"
        ]
    );
    assert!(
        trail
            .iter()
            .all(|e| e["actor"].as_str().unwrap().starts_with("grpc:"))
    );
    let text = ws.cli_ok(&["trail", "export"]);
    assert!(
        !text.contains("3331234567"),
        "the trail holds no raw numbers"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn test_bulk_csv_imports_are_validated_idempotent_and_served() {
    let ws = Workspace::new(&standard_config(""));
    let server = ws.start();
    let mut gateway = server.gateway().await;

    let bad = ws.file(
        "bad.csv",
        "controller,number,purpose,granted_at,source\nacme,+49 151 23456789,marketing,2026-01-01,web\n,+49 151 1,marketing,2026-01-01,web\nacme,+49 151 23456780,spam,2026-01-01,web\nacme,+49 151 23456781,marketing,2999-01-01,web\n",
    );
    let out = ws.cli(&["consent", "import", "--file", path_str(&bad)]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("3 bad line(s)"), "{stderr}");
    assert!(
        stderr.contains("line 3: controller")
            && stderr.contains("line 4: purpose")
            && stderr.contains("line 5: granted_at"),
        "{stderr}"
    );
    let unknown = ws.file(
        "unknown.csv",
        "controller,number,purpose,granted_at,source,colour\n",
    );
    let out = ws.cli(&["consent", "import", "--file", path_str(&unknown)]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown column \"colour\""));

    let good = ws.file(
        "good.csv",
        "controller,number,purpose,granted_at,source,method,evidence_ref\nacme,+49 151 23456789,marketing,2026-01-01T10:00:00Z,web,double_opt_in,doi:1\nacme,0151 23456788,marketing,2026-02-01,shop,signed_form,form:9\n",
    );
    let bad_region = ws.cli(&["consent", "import", "--file", path_str(&good)]);
    assert!(
        !bad_region.status.success(),
        "a national number needs default_region"
    );
    let good = ws.file(
        "good.csv",
        "controller,number,purpose,granted_at,source,method,evidence_ref,default_region\nacme,+49 151 23456789,marketing,2026-01-01T10:00:00Z,web,double_opt_in,doi:1,DE\nacme,0151 23456788,marketing,2026-02-01,shop,signed_form,form:9,DE\n",
    );
    let first = ws.cli_ok(&["consent", "import", "--file", path_str(&good)]);
    assert!(
        first.contains("2 lines valid; 2 stored, 0 already present"),
        "{first}"
    );
    let again = ws.cli_ok(&["consent", "import", "--file", path_str(&good)]);
    assert!(again.contains("0 stored, 2 already present"), "{again}");

    let opt_outs = ws.file(
        "optouts.csv",
        "number,controller,reason,default_region\n0151 23456788,acme,complained,DE\n",
    );
    let stored = ws.cli_ok(&["suppression", "import", "--file", path_str(&opt_outs)]);
    assert!(stored.contains("1 stored"), "{stored}");

    // The running server picks both imports up.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let a = gateway
            .check_call(call("+49 151 23456789", "+4930123456", "de-optin"))
            .await
            .unwrap()
            .into_inner();
        let b = gateway
            .check_call(call("+49 151 23456788", "+4930123456", "de-optin"))
            .await
            .unwrap()
            .into_inner();
        if codes(&a) == vec![R::Consent] && codes(&b) == vec![R::Suppressed] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "imports not served within 5 s: {:?} {:?}",
            a.reasons,
            b.reasons
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let trail = ws.cli_ok(&["trail", "export"]);
    assert!(trail.contains("\"actor\":\"cli:"), "{trail}");
}

/// `--offline` imports (the first load, no server running) are served
/// once the server starts; with a server running, `--offline` warns and
/// imports as usual, and the server picks the records up.
#[tokio::test(flavor = "multi_thread")]
async fn test_offline_imports_are_served_and_fall_back_beside_a_server() {
    let ws = Workspace::new(&standard_config(""));
    // Opt-outs first, then consents: both first loads (no consent stored
    // yet), each one transaction.
    let opt_outs = ws.file(
        "optouts.csv",
        "number,controller,reason\n+49 151 23456788,acme,complained\n",
    );
    let stored = ws.cli_ok(&[
        "suppression",
        "import",
        "--file",
        path_str(&opt_outs),
        "--offline",
    ]);
    assert!(stored.contains("1 stored"), "{stored}");
    // The erasure ledger holds the opt-out and the import's commit.
    let ledger = std::fs::read_to_string(ws.data_dir().join("erasure-ledger.jsonl")).unwrap();
    assert_eq!(ledger.lines().count(), 3, "{ledger}");
    // One id for two numbers: refused, nothing stored (one kept, the
    // other's consent would be lost, or the first would grant what the
    // file no longer says of it).
    let reused = ws.file(
        "reused.csv",
        "consent_id,controller,number,purpose,granted_at,source\nc-1,acme,+49 151 23456789,marketing,2026-01-01,web\nc-2,acme,+49 151 23456788,marketing,2026-01-01,web\nc-1,acme,+49 151 23456700,marketing,2026-01-01,web\n",
    );
    let out = ws.cli(&[
        "consent",
        "import",
        "--file",
        path_str(&reused),
        "--offline",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && stderr.contains("consent_id reused for another consent")
            && stderr.contains("c-1 (twice in the file)"),
        "{stderr}"
    );
    // One consent twice (its source aside): the first line is kept.
    let consents = ws.file(
        "consents.csv",
        "consent_id,controller,number,purpose,granted_at,source\nc-1,acme,+49 151 23456789,marketing,2026-01-01,web\nc-2,acme,+49 151 23456788,marketing,2026-01-01,web\nc-1,acme,+49 151 23456789,marketing,2026-01-01,phone\n",
    );
    let first = ws.cli_ok(&[
        "consent",
        "import",
        "--file",
        path_str(&consents),
        "--offline",
    ]);
    assert!(first.contains("2 stored, 1 already present"), "{first}");
    // A re-run (no longer a first load) stores nothing twice.
    let again = ws.cli_ok(&[
        "suppression",
        "import",
        "--file",
        path_str(&opt_outs),
        "--offline",
    ]);
    assert!(again.contains("0 stored, 1 already present"), "{again}");
    let server = ws.start();
    let mut gateway = server.gateway().await;
    let decide = |number: &'static str| call(number, "+4930123456", "de-optin");
    // The refused file stored nothing: +49 151 23456700 has no consent.
    for (number, reason) in [
        ("+49 151 23456789", R::Consent),
        ("+49 151 23456788", R::Suppressed),
        ("+49 151 23456700", R::NoConsent),
    ] {
        let answer = gateway
            .check_call(decide(number))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            codes(&answer),
            vec![reason],
            "{number}: {:?}",
            answer.reasons
        );
    }

    let later = ws.file(
        "later.csv",
        "controller,number,purpose,granted_at,source\nacme,+49 151 23456787,marketing,2026-01-01,web\n",
    );
    let out = ws.cli(&["consent", "import", "--file", path_str(&later), "--offline"]);
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("a running server?"), "{stderr}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let c = gateway
            .check_call(decide("+49 151 23456787"))
            .await
            .unwrap()
            .into_inner();
        if codes(&c) == vec![R::Consent] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not served: {:?}",
            c.reasons
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Issue 15: an `--offline` import into a store without consents is one
/// transaction. Killed (SIGKILL) inside it, it leaves none of its records;
/// the store then opens with its number and id indexes, in its
/// write-ahead log, and the import can be run again: consents and opt-outs.
#[test]
fn test_a_killed_first_load_leaves_all_or_nothing() {
    killed_first_load_leaves_all_or_nothing("consent");
    killed_first_load_leaves_all_or_nothing("suppression");
}

fn killed_first_load_leaves_all_or_nothing(kind: &str) {
    let ws = Workspace::new(&standard_config(""));
    let lines = 200_000;
    let (mut csv, table) = match kind {
        "consent" => (
            String::from("controller,number,purpose,granted_at,source\n"),
            "consents",
        ),
        _ => (String::from("number,controller,reason\n"), "suppressions"),
    };
    for i in 0..lines {
        csv.push_str(&match kind {
            "consent" => format!("acme,+39 347 {i:07},marketing,2026-01-01,web\n"),
            _ => format!("+39 347 {i:07},acme,asked\n"),
        });
    }
    let file = ws.file("records.csv", &csv);
    let import = |offline: bool| {
        let mut command = std::process::Command::new(BIN);
        command.arg("--config").arg(ws.config_path()).args([
            kind,
            "import",
            "--file",
            path_str(&file),
        ]);
        if offline {
            command.arg("--offline");
        }
        command
    };
    let mut child = import(true)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed inside its transaction (its rollback journal is there), well
    // before it can have read the whole file.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let journal = ws.data_dir().join("contacts.db-journal");
    let staging = ws
        .data_dir()
        .join(format!("contacts-import-{}.db", child.id()));
    // The store's creation and the switch to the rollback journal each
    // make one for a moment; the load's lasts until its commit.
    let in_the_load = || {
        staging.exists() && journal.exists() && {
            std::thread::sleep(std::time::Duration::from_millis(100));
            journal.exists()
        }
    };
    while !in_the_load() {
        assert!(
            std::time::Instant::now() < deadline,
            "the import never began"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the import ended first"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(journal.exists(), "killed before its commit: {status:?}");
    let out = import(false).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.contains(&format!("{lines} stored, 0 already present")),
        "{status:?}: {summary}"
    );
    let conn = rusqlite::Connection::open(ws.data_dir().join("contacts.db")).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    assert!(!journal.exists());
    let indexes: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE name IN (?1, ?2)",
            [format!("{table}_by_number"), format!("{table}_by_id")],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(indexes, 2, "{kind}: the number and id indexes");
}

/// Issue 15: `suppression import` logged one line per opt-out (500,000
/// lines for 500,000 records); an import now says one summary line, and
/// the trail holds one event for the whole file.
#[test]
fn test_bulk_imports_say_one_summary_line() {
    let ws = Workspace::new(&standard_config(""));
    let mut csv = String::from("number,controller,reason\n");
    for i in 0..3_000 {
        csv.push_str(&format!("+39 347 {i:07},acme,asked\n"));
    }
    let file = ws.file("optouts.csv", &csv);
    let out = std::process::Command::new(BIN)
        .arg("--config")
        .arg(ws.config_path())
        .args(["suppression", "import", "--file", path_str(&file)])
        .env("DIALGATE_LOG", "info")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.contains("3000 lines valid; 3000 stored"), "{stdout}");
    assert!(
        stderr.lines().count() < 10,
        "{} stderr lines",
        stderr.lines().count()
    );
    let trail = ws.cli_ok(&["trail", "export"]);
    assert_eq!(trail.lines().count(), 1, "{trail}");
    assert!(trail.contains("suppressions.imported") && trail.contains("\"stored\":3000"));
}

/// A contact file saved with a UTF-8 byte-order mark (a spreadsheet's
/// "CSV UTF-8") reads its first column by its name.
#[test]
fn test_a_byte_order_mark_before_the_header_is_skipped() {
    let ws = Workspace::new(&standard_config(""));
    let file = ws.file(
        "optouts.csv",
        "\u{feff}number,controller,reason\n+39 347 7654321,acme,asked\n",
    );
    let out = ws.cli_ok(&["suppression", "import", "--file", path_str(&file)]);
    assert!(out.contains("1 lines valid; 1 stored"), "{out}");
}

/// `--dry-run` checks a file as its import would: an id reused for another
/// record refuses it (a dry run said "valid" before, and the import then
/// failed), a valid file's counts are worked out, and nothing is stored,
/// in the store nor in the erasure ledger.
#[tokio::test(flavor = "multi_thread")]
async fn test_a_dry_run_refuses_what_the_import_would_and_stores_nothing() {
    let ws = Workspace::new(&standard_config(""));
    let consent_header = "consent_id,controller,number,purpose,granted_at,source,expires_at\n";
    let consents = ws.file(
        "consents.csv",
        &format!("{consent_header}C-1,acme,+49 151 23456789,marketing,2026-01-01,web,2099-06-01\n"),
    );
    ws.cli_ok(&["consent", "import", "--file", path_str(&consents)]);
    let opt_out_header = "suppression_id,number,controller,reason\n";
    let opt_outs = ws.file(
        "optouts.csv",
        &format!("{opt_out_header}S-1,+49 151 23456788,acme,complained\n"),
    );
    ws.cli_ok(&["suppression", "import", "--file", path_str(&opt_outs)]);
    let stored = || {
        let conn = rusqlite::Connection::open(ws.data_dir().join("contacts.db")).unwrap();
        let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
        (
            count("SELECT count(*) FROM consents"),
            count("SELECT count(*) FROM suppressions"),
            count("SELECT count(*) FROM events"),
            std::fs::read_to_string(ws.data_dir().join("erasure-ledger.jsonl")).unwrap(),
        )
    };
    let before = stored();
    for (kind, name, content, named) in [
        (
            "consent",
            "earlier.csv",
            format!(
                "{consent_header}C-1,acme,+49 151 23456789,marketing,2026-01-01,web,2099-03-01\n"
            ),
            "C-1 (already stored for another consent",
        ),
        (
            "consent",
            "twice.csv",
            format!(
                "{consent_header}C-2,acme,+49 151 23456787,marketing,2026-01-01,web,\n\
                 C-2,acme,+49 151 23456786,marketing,2026-01-01,web,\n"
            ),
            "C-2 (twice in the file)",
        ),
        (
            "suppression",
            "number.csv",
            format!("{opt_out_header}S-1,+49 151 23456787,acme,complained\n"),
            "S-1 (already stored for another opt-out",
        ),
    ] {
        let file = ws.file(name, &content);
        let out = ws.cli(&[kind, "import", "--file", path_str(&file), "--dry-run"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(named),
            "{name}: {stderr}"
        );
    }
    for (kind, name, content) in [
        (
            "consent",
            "valid.csv",
            format!(
                "{consent_header}C-1,acme,+49 151 23456789,marketing,2026-01-01,web,2099-06-01\n\
                 C-3,acme,+49 151 23456785,marketing,2026-01-01,web,\n"
            ),
        ),
        (
            "suppression",
            "valid.csv",
            format!(
                "{opt_out_header}S-1,+49 151 23456788,acme,complained\n\
                 S-2,+49 151 23456784,acme,complained\n"
            ),
        ),
    ] {
        let file = ws.file(&format!("{kind}-{name}"), &content);
        let out = ws.cli_ok(&[kind, "import", "--file", path_str(&file), "--dry-run"]);
        assert!(
            out.contains(
                "dry run, nothing stored: 2 lines valid; 1 would be stored, 1 already present"
            ),
            "{kind}: {out}"
        );
    }
    assert_eq!(stored(), before, "nothing stored by the dry runs");
}

/// Ids derived from a line without one are salted with the store's own
/// salt: the same line gets another id in another store, none that the
/// number's hash alone gives, and the same id again in its store (a re-run
/// stores nothing twice). The erasure ledger holds that id.
#[test]
fn test_ids_derived_from_a_line_are_salted_per_store() {
    use sha2::{Digest, Sha256};
    let line = "number,controller,reason\n+49 151 23456787,acme,complained\n";
    let unsalted = format!(
        "csv-{}",
        hex::encode(
            &Sha256::digest(
                ["+4915123456787", "acme", "", "complained", "", ""]
                    .join("\u{1f}")
                    .as_bytes()
            )[..16]
        )
    );
    let derived = |ws: &Workspace| -> Vec<String> {
        let ledger = std::fs::read_to_string(ws.data_dir().join("erasure-ledger.jsonl")).unwrap();
        ledger
            .match_indices("\"csv-")
            .map(|(at, _)| {
                ledger[at + 1..]
                    .split('"')
                    .next()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    };
    let mut ids = Vec::new();
    for offline in [true, false] {
        let ws = Workspace::new(&standard_config(""));
        let file = ws.file("optouts.csv", line);
        let mut args = vec!["suppression", "import", "--file", path_str(&file)];
        if offline {
            args.push("--offline");
        }
        assert!(ws.cli_ok(&args).contains("1 stored"));
        let again = ws.cli_ok(&["suppression", "import", "--file", path_str(&file)]);
        assert!(again.contains("0 stored, 1 already present"), "{again}");
        let mut found = derived(&ws);
        found.dedup();
        assert_eq!(found.len(), 1, "{found:?}");
        let id = found[0].clone();
        assert!(id.len() == 20 && id != unsalted, "{id}");
        ids.push(id);
    }
    assert_ne!(ids[0], ids[1], "each store salts its own");
}
