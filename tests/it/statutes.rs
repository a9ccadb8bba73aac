//! The law as dated data, over the real binary: the French switch screened
//! on both sides of its date, fail-closed destinations reported by
//! `config check`, `/status` and `policy show`, and the Italian
//! consent-after-registration policy dated only by registry answers.

use dialgate::proto::{
    Purpose, ReasonCode as R, RecordConsentRequest, ScreenNumbersRequest, Verdict,
};
use tokio_stream::StreamExt;

use crate::support::*;

const BASE: &str = r#"
[server]
grpc_addr = "127.0.0.1:0"
http_addr = "127.0.0.1:0"
data_dir = "data"
registry_reload_interval_ms = 100
"#;

async fn screen(server: &TestServer, campaign: &str, number: &str, at: &str) -> (Verdict, Vec<R>) {
    let mut gateway = server.gateway().await;
    let request = ScreenNumbersRequest {
        called_number: number.into(),
        campaign_id: campaign.into(),
        at: Some(dialgate::proto::timestamp_to_proto(at.parse().unwrap())),
        r#ref: "x".into(),
    };
    let answer = gateway
        .screen_numbers(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner()
        .next()
        .await
        .unwrap()
        .unwrap();
    (
        Verdict::try_from(answer.verdict).unwrap(),
        answer
            .reasons
            .iter()
            .map(|r| R::try_from(r.code).unwrap())
            .collect(),
    )
}

/// The same cold call to France, screened for Monday 10 and
/// Tuesday 11 August 2026 at 11:00 in Paris: Bloctel-cleared the day
/// before the opt-in law, refused without consent from its first day.
#[tokio::test(flavor = "multi_thread")]
async fn test_the_french_switch_over_grpc() {
    let ws = Workspace::new(&format!(
        r#"{BASE}
[[registry]]
id = "fr-bloctel"
kind = "allowlist"
country = "FR"

[[campaign]]
id = "fr"
controller = "acme"
purpose = "marketing"
default_region = "FR"
destinations = ["FR"]
caller_ids = ["+33162000000"]
"#
    ));
    ws.import(
        "fr-bloctel",
        &["06 12 34 56 78"],
        &["--controller", "acme", "--checked-at", "2026-08-01"],
    );
    let server = ws.start();
    let before = screen(&server, "fr", "06 12 34 56 78", "2026-08-10T09:00:00Z").await;
    assert_eq!(before, (Verdict::Allow, vec![R::RegistryClear]));
    let after = screen(&server, "fr", "06 12 34 56 78", "2026-08-11T09:00:00Z").await;
    assert_eq!(after, (Verdict::Deny, vec![R::NoConsent]));
    // CheckCall decides now (after the switch): a cold call is refused.
    let mut gateway = server.gateway().await;
    let now = gateway
        .check_call(call("06 12 34 56 78", "+33162000000", "fr"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(verdict(&now), Verdict::Deny);
    assert!(codes(&now).contains(&R::NoConsent), "{:?}", now.reasons);
}

const ITALY_WITHOUT_RPO: &str = r#"
[[campaign]]
id = "it-sales"
controller = "acme"
purpose = "marketing"
default_region = "IT"
destinations = ["IT", "DE"]
caller_ids = ["+390212345678"]

[destination.DE.calling_hours]
sun = []

# Open all day: the check below must not depend on the hour it runs at.
[destination.IT.calling_hours]
mon = ["00:00-24:00"]
tue = ["00:00-24:00"]
wed = ["00:00-24:00"]
thu = ["00:00-24:00"]
fri = ["00:00-24:00"]
sat = ["00:00-24:00"]
sun = ["00:00-24:00"]
holidays = ["00:00-24:00"]
pre_holidays = ["00:00-24:00"]
"#;

/// A destination whose law requires a registry that is not
/// configured is denied, logged at start-up, listed under `blocked`, and
/// fails `config check`; overrides are reported.
#[tokio::test(flavor = "multi_thread")]
async fn test_blocked_destination_is_reported_everywhere() {
    let ws = Workspace::new(&format!("{BASE}{ITALY_WITHOUT_RPO}"));
    let check = ws.cli(&["config", "check"]);
    assert!(!check.status.success(), "config check must fail");
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(stderr.contains("it-sales -> IT"), "{stderr}");
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(stdout.contains("override: destination DE"), "{stdout}");

    let server = ws.start();
    let (_, body) = server.get("/status");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["blocked"][0]["campaign"], "it-sales");
    assert_eq!(status["blocked"][0]["destination"], "IT");
    assert_eq!(status["overrides"][0]["destination"], "DE");
    assert!(status["policy_version"].as_str().unwrap().len() >= 8);
    // The time-zone data read: the newer of the system's and the
    // compiled-in copy, never an older system copy (found by review).
    let zones = &status["time_zones"];
    assert!(
        ["system", "compiled-in"].contains(&zones["source"].as_str().unwrap()),
        "{zones}"
    );
    assert!(
        zones["version"].as_str().unwrap() >= dialgate::tz_data::compiled_in_version().unwrap(),
        "{zones}"
    );
    let mut gateway = server.gateway().await;
    let response = gateway
        .check_call(call("+39 333 123 4567", "+390212345678", "it-sales"))
        .await
        .unwrap()
        .into_inner();
    // Outside Italy's calling hours OUTSIDE_CALLING_HOURS comes too.
    assert_eq!(verdict(&response), Verdict::Deny);
    assert!(
        codes(&response).contains(&R::RegistryUnavailable),
        "{:?}",
        response.reasons
    );
    let (status, stderr) = server.terminate();
    assert!(status.success());
    let stderr = stderr.join("\n");
    assert!(
        stderr.contains("REGISTRY_UNAVAILABLE") && stderr.contains("it-sales"),
        "start-up names the blocked campaign: {stderr}"
    );

    let shown = ws.cli_ok(&[
        "policy",
        "show",
        "--campaign",
        "it-sales",
        "--destination",
        "IT",
    ]);
    assert!(
        shown.contains("BLOCKED") && shown.contains("RPO"),
        "{shown}"
    );
    let json: serde_json::Value = serde_json::from_str(&ws.cli_ok(&[
        "policy",
        "show",
        "--campaign",
        "it-sales",
        "--json",
        "--at",
        "2026-08-11",
    ]))
    .unwrap();
    assert_eq!(json["destinations"].as_array().unwrap().len(), 2);
    let unknown = ws.cli(&["policy", "show", "--campaign", "nope"]);
    assert!(!unknown.status.success());
}

/// With `consent_after_registration`, only the registry's own answers
/// (`registry import --opposed`) date a registration: a DENY of a number
/// never sent to the RPO is no evidence of one, so a consent recorded after
/// it must not lift the RPO.
#[tokio::test(flavor = "multi_thread")]
async fn test_consent_after_registration_is_dated_by_the_registry_only() {
    let ws = Workspace::new(&format!(
        r#"{BASE}
[[registry]]
id = "it-rpo"
kind = "allowlist"
country = "IT"
[registry.exemptions]
consent_after_registration = true

[[campaign]]
id = "it-sales"
controller = "acme"
purpose = "marketing"
default_region = "IT"
destinations = ["IT"]
caller_ids = ["+390212345678"]
{ALWAYS_OPEN}
"#
    ));
    ws.import(
        "it-rpo",
        &["+39 333 000 0001"],
        &["--controller", "acme", "--checked-at", &days_ago(2)],
    );
    let server = ws.start();
    let mut gateway = server.gateway().await;
    let number = "+39 333 123 4567";
    let first = gateway
        .check_call(call(number, "+390212345678", "it-sales"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(codes(&first), vec![R::RegistryNotCovered]);
    let mut records = server.records().await;
    records
        .record_consent(RecordConsentRequest {
            controller: "acme".into(),
            number: number.into(),
            purpose: Purpose::Marketing as i32,
            granted_at: Some(dialgate::proto::timestamp_to_proto(jiff::Timestamp::now())),
            source: "landing page".into(),
            evidence_ref: "doi:1".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let second = gateway
        .check_call(call(number, "+390212345678", "it-sales"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        verdict(&second),
        Verdict::Deny,
        "a DENY is no registration date: {:?}",
        second.reasons
    );
    drop(server);

    // The registry answered the number as opposed yesterday: the consent
    // recorded today counts (one of the same day would not: the answer is
    // dated by its day).
    let yesterday = (jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24))
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .to_string();
    let opposed = ws.file("opposed.txt", "+39 333 123 4567\n");
    let out = ws.import(
        "it-rpo",
        &["+39 333 000 0001"],
        &[
            "--controller",
            "acme",
            "--opposed",
            path_str(&opposed),
            "--checked-at",
            &yesterday,
        ],
    );
    assert!(out.contains("1 numbers recorded as opposed"), "{out}");
    let server = ws.start();
    let mut gateway = server.gateway().await;
    let third = gateway
        .check_call(call(number, "+390212345678", "it-sales"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(verdict(&third), Verdict::Allow, "{:?}", third.reasons);
    assert!(
        third
            .reasons
            .iter()
            .any(|r| r.detail.contains("answered the number as opposed")),
        "{:?}",
        third.reasons
    );
}

/// A newer RPO answer "opposed", imported with `--mode add` while an older
/// clearance is still held, outweighs the clearance; a running server
/// applies the answer without restart.
#[tokio::test(flavor = "multi_thread")]
async fn test_a_later_opposed_answer_reaches_a_running_server() {
    let ws = Workspace::new(&format!(
        r#"{BASE}
[[registry]]
id = "it-rpo"
kind = "allowlist"
country = "IT"

[[campaign]]
id = "it-sales"
controller = "acme"
purpose = "marketing"
default_region = "IT"
destinations = ["IT"]
caller_ids = ["+390212345678"]
{ALWAYS_OPEN}
"#
    ));
    let yesterday = (jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24))
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .to_string();
    ws.import(
        "it-rpo",
        &["+39 333 123 4567", "+39 333 123 4568"],
        &["--controller", "acme", "--checked-at", &yesterday],
    );
    let server = ws.start();
    let mut gateway = server.gateway().await;
    let number = "+39 333 123 4567";
    let before = gateway
        .check_call(call(number, "+390212345678", "it-sales"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(verdict(&before), Verdict::Allow);
    let opposed = ws.file("opposed-today.txt", "+39 333 123 4567\n");
    ws.import(
        "it-rpo",
        &["+39 333 123 4568"],
        &[
            "--controller",
            "acme",
            "--mode",
            "add",
            "--opposed",
            path_str(&opposed),
        ],
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let response = gateway
            .check_call(call(number, "+390212345678", "it-sales"))
            .await
            .unwrap()
            .into_inner();
        if verdict(&response) == Verdict::Deny {
            assert_eq!(
                codes(&response),
                vec![R::RegistryListed],
                "{:?}",
                response.reasons
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the opposed answer was not applied"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// `registry import --opposed` published the snapshot, then recorded the
/// opposed answers in the contact store: when the store could not be
/// opened (here a restore that did not finish) or the answers not written
/// (here a trigger refusing them), the new clearances were served without
/// the answers that outweigh earlier ones. The answers are now recorded
/// first, and the registry stays as it was when they cannot be.
#[test]
fn test_opposed_answers_that_cannot_be_recorded_leave_the_registry_as_it_was() {
    let ws = Workspace::new(&standard_config(""));
    ws.import("it-rpo", &["+39 333 123 4567"], &["--controller", "acme"]);
    let listed = ws.cli_ok(&["registry", "list", "--json"]);
    let marker = ws.data_dir().join("restore-in-progress");
    std::fs::write(&marker, b"").unwrap();
    let numbers = ws.file("cleared-again.txt", "+39 333 123 4568\n");
    let opposed = ws.file("opposed.txt", "+39 333 123 4567\n");
    let args = [
        "registry",
        "import",
        "--registry",
        "it-rpo",
        "--file",
        path_str(&numbers),
        "--controller",
        "acme",
        "--mode",
        "add",
        "--opposed",
        path_str(&opposed),
    ];
    let out = ws.cli(&args);
    assert!(!out.status.success(), "{out:?}");
    std::fs::remove_file(&marker).unwrap();
    assert_eq!(ws.cli_ok(&["registry", "list", "--json"]), listed);

    // The contact store made (its schema), then its answers refused.
    ws.cli_ok(&["trail", "export"]);
    rusqlite::Connection::open(ws.data_dir().join("contacts.db"))
        .unwrap()
        .execute_batch(
            "CREATE TRIGGER refuse BEFORE INSERT ON observations
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
        )
        .unwrap();
    let out = ws.cli(&args);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nothing imported"),
        "{out:?}"
    );
    assert_eq!(ws.cli_ok(&["registry", "list", "--json"]), listed);
}

/// An `--opposed` file holding no number (a failed download) is refused
/// before anything is imported: recording nothing would leave withdrawn
/// clearances allowing calls. A bad line is named with its digits masked.
#[test]
fn test_an_empty_or_bad_opposed_file_is_refused() {
    let ws = Workspace::new(&standard_config(""));
    let numbers = ws.file("cleared.txt", "+39 333 123 4568\n");
    let import = |opposed: &std::path::Path| {
        ws.cli(&[
            "registry",
            "import",
            "--registry",
            "it-rpo",
            "--file",
            path_str(&numbers),
            "--controller",
            "acme",
            "--opposed",
            path_str(opposed),
        ])
    };
    for (name, content, expected) in [
        ("empty.txt", "", "holds no numbers"),
        ("comments.txt", "# none today\n\n", "holds no numbers"),
        ("bad.txt", "+39 333 1234567x\n", "line 1"),
    ] {
        let out = import(&ws.file(name, content));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}");
        assert!(stderr.contains(expected), "{name}: {stderr}");
        assert!(!stderr.contains("1234567"), "{name}: {stderr}");
    }
    let list = ws.cli_ok(&["registry", "list", "--json"]);
    let list: Vec<serde_json::Value> = serde_json::from_str(&list).unwrap();
    let rpo = list.iter().find(|r| r["id"] == "it-rpo").unwrap();
    assert_eq!(rpo["loaded"], false, "nothing imported: {rpo}");
}

/// An RPO answer added to the clearances held (`--mode add`) must say
/// which numbers it withheld: the registry answers with the cleaned list
/// only, and a number left out of a newer answer (its holder registered
/// since) kept the clearance of an older one (found by review:
/// `REGISTRY_CLEAR` where the latest answer was "opposed"). Such an import
/// needs `--submitted` (or `--opposed`); the numbers submitted but not
/// returned are recorded as opposed.
#[tokio::test(flavor = "multi_thread")]
async fn test_a_number_an_added_answer_withholds_is_opposed() {
    let ws = Workspace::new(&standard_config(""));
    let days_ago = |days: i64| {
        jiff::Timestamp::now()
            .to_zoned(jiff::tz::TimeZone::UTC)
            .date()
            .checked_sub(jiff::Span::new().days(days))
            .unwrap()
            .to_string()
    };
    ws.import(
        "it-rpo",
        &["+39 333 123 4567", "+39 333 123 4568"],
        &["--controller", "acme", "--checked-at", &days_ago(9)],
    );
    let answer = ws.file("answer.txt", "+39 333 123 4567\n");
    let submitted = ws.file("submitted.txt", "+39 333 123 4567\n+39 333 123 4568\n");
    let checked = days_ago(1);
    let mut args = vec![
        "registry",
        "import",
        "--registry",
        "it-rpo",
        "--file",
        path_str(&answer),
        "--controller",
        "acme",
        "--mode",
        "add",
        "--checked-at",
        &checked,
    ];
    let out = ws.cli(&args);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--submitted"),
        "{out:?}"
    );
    args.extend(["--submitted", path_str(&submitted)]);
    // An answer holding a number never submitted (another answer, a file
    // mixed up) is refused: it would clear that number unchecked (found
    // by review).
    let foreign = ws.file("foreign.txt", "+39 333 123 4567\n+39 333 999 9999\n");
    let mut foreign_args = args.clone();
    foreign_args[5] = path_str(&foreign);
    let out = ws.cli(&foreign_args);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("1 number(s) of the answer were not submitted"),
        "{out:?}"
    );
    ws.cli_ok(&args);
    let server = ws.start();
    let mut gateway = server.gateway().await;
    let withheld = gateway
        .check_call(call("+39 333 123 4568", "+390212345678", "it-sales"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(verdict(&withheld), Verdict::Deny, "{withheld:?}");
    assert!(
        codes(&withheld).contains(&R::RegistryListed),
        "{withheld:?}"
    );
    let cleared = gateway
        .check_call(call("+39 333 123 4567", "+390212345678", "it-sales"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(verdict(&cleared), Verdict::Allow, "{cleared:?}");
    // The snapshot alone no longer clears the withheld number: without the
    // contact records that hold the opposed answer (a lost store, a
    // restore without them), the older clearance was served (found by
    // review).
    let (status, _) = server.terminate();
    assert!(status.success());
    for name in ["contacts.db", "contacts.db-wal", "contacts.db-shm"] {
        let _ = std::fs::remove_file(ws.data_dir().join(name));
    }
    let server = ws.start();
    let mut gateway = server.gateway().await;
    let withheld = gateway
        .check_call(call("+39 333 123 4568", "+390212345678", "it-sales"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(verdict(&withheld), Verdict::Deny, "{withheld:?}");
    assert!(
        codes(&withheld).contains(&R::RegistryNotCovered),
        "{withheld:?}"
    );
}

/// Records an ongoing customer relationship of acme's with `number`.
async fn customer_of_acme(
    records: &mut dialgate::proto::contact_records_client::ContactRecordsClient<
        tonic::transport::Channel,
    >,
    number: &str,
) {
    records
        .record_relationship(dialgate::proto::RecordRelationshipRequest {
            controller: "acme".into(),
            number: number.into(),
            kind: dialgate::proto::RelationshipKind::Customer as i32,
            started_at: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap();
}

/// A `+590 690` mobile may be Guadeloupe's, Saint-Barthélemy's or
/// Saint-Martin's (their numbering plans overlap): it is decided under
/// each, allowed only where all three allow (found by review: decided as
/// Guadeloupe's, a customer contract stood in for the consent Saint-Martin
/// requires). Screened for Monday 30 November 2026, 11:00 there.
#[tokio::test(flavor = "multi_thread")]
async fn test_a_number_of_overlapping_plans_is_decided_under_each() {
    let ws = Workspace::new(&format!(
        r#"{BASE}
[[campaign]]
id = "antilles"
controller = "acme"
purpose = "marketing"
default_region = "GP"
destinations = ["GP", "BL", "MF"]
caller_ids = ["+590590123456"]

[[campaign]]
id = "guadeloupe"
controller = "acme"
purpose = "marketing"
default_region = "GP"
destinations = ["GP"]
caller_ids = ["+590590123456"]

[[campaign]]
id = "australia"
controller = "acme"
purpose = "marketing"
default_region = "AU"
destinations = ["AU"]
caller_ids = ["+61291234567"]
"#
    ));
    let server = ws.start();
    let mut records = server.records().await;
    let mobile = "+590 690 12 34 56";
    customer_of_acme(&mut records, mobile).await;
    let at = "2026-11-30T15:00:00Z";
    let (verdict, reasons) = screen(&server, "antilles", mobile, at).await;
    assert_eq!(verdict, Verdict::Deny, "{reasons:?}");
    assert!(reasons.contains(&R::NoConsent), "{reasons:?}");
    // A campaign for Guadeloupe alone cannot tell it is Guadeloupe's.
    let (verdict, reasons) = screen(&server, "guadeloupe", mobile, at).await;
    assert_eq!(verdict, Verdict::Deny, "{reasons:?}");
    assert!(reasons.contains(&R::DestinationNotAllowed), "{reasons:?}");
    // A Guadeloupe fixed line is Guadeloupe's alone: the contract stands in.
    let fixed = "+590 590 21 34 56";
    customer_of_acme(&mut records, fixed).await;
    let (verdict, reasons) = screen(&server, "guadeloupe", fixed, at).await;
    assert_eq!(verdict, Verdict::Allow, "{reasons:?}");
    // Australia's mobiles are Cocos' and Christmas Island's too in the
    // numbering plan, but no law here tells the three apart: decided as
    // Australia's (found by the review of the fix: every one was denied).
    let mobile = "+61 412 345 678";
    records
        .record_consent(RecordConsentRequest {
            controller: "acme".into(),
            number: mobile.into(),
            purpose: Purpose::Marketing as i32,
            granted_at: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            source: "web".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let (verdict, reasons) = screen(&server, "australia", mobile, at).await;
    assert_eq!(verdict, Verdict::Allow, "{reasons:?}");
}
