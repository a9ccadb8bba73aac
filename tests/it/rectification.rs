//! Issue 19, rectification (GDPR art. 16): a consent or a relationship
//! corrected under its id, over real gRPC and the CSV command; the next
//! check sees the correction, the trail keeps the before and after, and a
//! restart (the index rebuilt from the store) agrees.

use dialgate::proto::{
    ExportSubjectRequest, Purpose, ReasonCode as R, RecordConsentRequest,
    RecordRelationshipRequest, RectifyConsentRequest, RectifyRelationshipRequest, RelationshipKind,
    RevokeConsentRequest, Verdict,
};
use tonic::Code;

use crate::support::*;

const DE_CLI: &str = "+4930123456";

fn ts(t: jiff::Timestamp) -> Option<prost_types::Timestamp> {
    Some(dialgate::proto::timestamp_to_proto(t))
}

fn days_before_now(days: i64) -> jiff::Timestamp {
    jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * days)
}

#[tokio::test(flavor = "multi_thread")]
async fn test_a_rectified_consent_moves_at_once_and_keeps_its_history() {
    let ws = Workspace::new(&standard_config(""));
    let server = ws.start();
    let mut records = server.records().await;
    let gateway = server.gateway().await;
    let (typo, right, later) = ("+4915123450001", "+4915123450002", "+4915123450003");
    let check = |number: &'static str| {
        let mut gateway = gateway.clone();
        async move {
            gateway
                .check_call(call(number, DE_CLI, "de-optin"))
                .await
                .unwrap()
                .into_inner()
        }
    };
    let id = records
        .record_consent(RecordConsentRequest {
            controller: "acme".into(),
            number: typo.into(),
            purpose: Purpose::Marketing as i32,
            granted_at: ts(days_before_now(3)),
            source: "web form".into(),
            evidence_ref: "doi:9".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .consent_id;
    assert_eq!(verdict(&check(typo).await), Verdict::Allow);
    assert_eq!(verdict(&check(right).await), Verdict::Deny);

    let rectify = |request: RectifyConsentRequest| {
        let mut records = records.clone();
        async move { records.rectify_consent(request).await }
    };
    let fix_number = RectifyConsentRequest {
        consent_id: id.clone(),
        controller: "acme".into(),
        reason: "number mistyped by the agent (ticket 4411)".into(),
        number: right.into(),
        ..Default::default()
    };

    // Refused, naming the field; nothing changes.
    for (request, code, starts) in [
        (
            RectifyConsentRequest {
                reason: String::new(),
                ..fix_number.clone()
            },
            Code::InvalidArgument,
            "reason:",
        ),
        (
            RectifyConsentRequest {
                consent_id: "no-such-consent".into(),
                ..fix_number.clone()
            },
            Code::NotFound,
            "consent_id:",
        ),
        (
            // Another controller's id is not found either.
            RectifyConsentRequest {
                controller: "beta".into(),
                ..fix_number.clone()
            },
            Code::NotFound,
            "consent_id:",
        ),
        (
            RectifyConsentRequest {
                number: typo.into(),
                ..fix_number.clone()
            },
            Code::InvalidArgument,
            "consent_id: the correction changes nothing",
        ),
        (
            RectifyConsentRequest {
                granted_at: ts(jiff::Timestamp::now() + jiff::SignedDuration::from_hours(48)),
                ..fix_number.clone()
            },
            Code::InvalidArgument,
            "granted_at:",
        ),
    ] {
        let err = rectify(request).await.unwrap_err();
        assert_eq!(err.code(), code, "{}", err.message());
        assert!(err.message().starts_with(starts), "{}", err.message());
    }
    assert_eq!(verdict(&check(typo).await), Verdict::Allow);

    let corrected = rectify(fix_number).await.unwrap().into_inner();
    let before: serde_json::Value = serde_json::from_str(&corrected.before).unwrap();
    let after: serde_json::Value = serde_json::from_str(&corrected.after).unwrap();
    assert_eq!(
        (before["number"].as_str(), after["number"].as_str()),
        (Some(typo), Some(right))
    );
    assert_eq!(after["consent_id"], id.as_str(), "the same id");
    // The very next check sees it, on both numbers.
    assert_eq!(codes(&check(typo).await), vec![R::NoConsent]);
    let allowed = check(right).await;
    assert_eq!(verdict(&allowed), Verdict::Allow);
    assert!(allowed.reasons[0].detail.contains(&id));

    // The trail of each number says what happened.
    let export = |number: &'static str| {
        let mut records = records.clone();
        async move {
            let json = records
                .export_subject(ExportSubjectRequest {
                    verification: None,
                    controller: "acme".into(),
                    number: number.into(),
                    default_region: String::new(),
                })
                .await
                .unwrap()
                .into_inner()
                .json;
            serde_json::from_str::<serde_json::Value>(&json).unwrap()
        }
    };
    let held = export(right).await;
    let event = held["trail"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "consent.rectified")
        .expect("a rectification event")
        .clone();
    // The trail holds no raw number: the change shows masked.
    assert_eq!(
        event["before"]["number"],
        dialgate::number::mask(typo).as_str()
    );
    assert_eq!(
        event["after"]["number"],
        dialgate::number::mask(right).as_str()
    );
    assert!(!event.to_string().contains(typo) && !event.to_string().contains(right));
    assert_eq!(
        event["after"]["reason"],
        "number mistyped by the agent (ticket 4411)"
    );
    let left = export(typo).await;
    assert!(left["consents"].as_array().unwrap().is_empty());
    assert!(
        left["trail"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["after"]["moved_to_another_number"] == id.as_str()),
        "{left}"
    );

    // A wrong purpose: the consent no longer counts for marketing.
    rectify(RectifyConsentRequest {
        consent_id: id.clone(),
        controller: "acme".into(),
        reason: "the form was the survey form".into(),
        purpose: Purpose::Statistical as i32,
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(codes(&check(right).await), vec![R::NoConsent]);

    // The CSV mode, from another process while the server runs: back to
    // marketing, on a third number.
    let csv = ws.file(
        "fix.csv",
        &format!(
            "consent_id,controller,reason,number,purpose\n{id},acme,second look at the form,{later},marketing\n"
        ),
    );
    let bad = ws.file(
        "bad.csv",
        &format!("consent_id,controller,reason,number\n{id},acme,x,{later}\n{id},acme,y,{right}\n"),
    );
    let out = ws.cli(&["consent", "rectify", "--file", path_str(&bad)]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 3: consent_id:"), "{stderr}");
    let dry = ws.cli_ok(&["consent", "rectify", "--file", path_str(&csv), "--dry-run"]);
    assert!(dry.contains("nothing changed"), "{dry}");
    assert_eq!(codes(&check(later).await), vec![R::NoConsent]);
    ws.cli_ok(&["consent", "rectify", "--file", path_str(&csv)]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while verdict(&check(later).await) != Verdict::Allow {
        assert!(std::time::Instant::now() < deadline, "correction not seen");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(codes(&check(right).await), vec![R::NoConsent]);

    // A withdrawn consent keeps its number: its withdrawal binds it.
    records
        .clone()
        .revoke_consent(RevokeConsentRequest {
            controller: "acme".into(),
            number: later.into(),
            purpose: Purpose::Marketing as i32,
            revoked_at: None,
            default_region: String::new(),
        })
        .await
        .unwrap();
    let err = rectify(RectifyConsentRequest {
        consent_id: id.clone(),
        controller: "acme".into(),
        reason: "move it".into(),
        number: right.into(),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("number:"), "{}", err.message());

    // After a restart the index is rebuilt from the store: same answers.
    let (status, _) = server.terminate();
    assert!(status.success());
    let server = ws.start();
    let mut gateway = server.gateway().await;
    for number in [typo, right, later] {
        let denied = gateway
            .check_call(call(number, DE_CLI, "de-optin"))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(codes(&denied), vec![R::NoConsent], "{number}");
    }

    // Erasing the numbers the consent passed through leaves neither its
    // contents in the corrections' trail nor their numbers anywhere.
    let mut records = server.records().await;
    for number in [typo, right, later] {
        records
            .erase_subject(dialgate::proto::EraseSubjectRequest {
                controller: "acme".into(),
                number: number.into(),
                default_region: String::new(),
                verification: None,
            })
            .await
            .unwrap();
    }
    let trail = ws.cli_ok(&["trail", "export"]);
    for line in trail.lines().filter(|l| l.contains(".rectified")) {
        assert!(
            line.contains("redacted") && !line.contains("web form") && !line.contains(&id),
            "{line}"
        );
    }
    drop(server);
    let db = rusqlite::Connection::open(ws.data_dir().join("contacts.db")).unwrap();
    let keyed: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM corrections WHERE old_key != 0",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(keyed, 0, "no erased number's key left in corrections");
}

#[tokio::test(flavor = "multi_thread")]
async fn test_a_rectified_relationship_ends_its_exemption() {
    let ws = Workspace::new(&standard_config(""));
    ws.import("us-dnc", &["212 555 0199"], &[]);
    let server = ws.start();
    let mut records = server.records().await;
    let mut gateway = server.gateway().await;
    let id = records
        .record_relationship(RecordRelationshipRequest {
            controller: "acme".into(),
            number: "+1 212 555 0199".into(),
            kind: RelationshipKind::Customer as i32,
            started_at: ts(days_before_now(900)),
            ended_at: None,
            default_region: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .relationship_id;
    let allowed = gateway
        .check_call(call("+1 212 555 0199", "+12125550100", "us-sales"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(codes(&allowed), vec![R::Relationship]);
    // The customer's last purchase was two years ago, not ongoing: the
    // US exemption (18 months) has ended.
    let corrected = records
        .rectify_relationship(RectifyRelationshipRequest {
            relationship_id: id.clone(),
            controller: "acme".into(),
            reason: "contract ended, CRM missed the cancellation".into(),
            ended_at: ts(days_before_now(730)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(corrected.after.contains(&id));
    let denied = gateway
        .check_call(call("+1 212 555 0199", "+12125550100", "us-sales"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(codes(&denied), vec![R::RegistryListed]);
    let err = records
        .rectify_relationship(RectifyRelationshipRequest {
            relationship_id: id,
            controller: "acme".into(),
            reason: "x".into(),
            ended_at: ts(days_before_now(1)),
            clear_ended_at: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(err.message().starts_with("ended_at:"), "{}", err.message());
}

/// An end sent with another start than the ongoing record's (a date the
/// second time, another time zone) was stored beside it, and the ongoing
/// record went on exempting from the registry (found by review). It is
/// refused naming the ongoing start; sent with that start, it ends it.
#[tokio::test(flavor = "multi_thread")]
async fn test_an_end_with_another_start_than_the_ongoing_record_is_refused() {
    let ws = Workspace::new(&standard_config(""));
    ws.import("us-dnc", &["212 555 0199"], &[]);
    let server = ws.start();
    let mut records = server.records().await;
    let mut gateway = server.gateway().await;
    let started = days_before_now(900);
    let relationship = |started_at, ended_at| RecordRelationshipRequest {
        controller: "acme".into(),
        number: "+1 212 555 0199".into(),
        kind: RelationshipKind::Customer as i32,
        started_at,
        ended_at,
        default_region: String::new(),
    };
    records
        .record_relationship(relationship(ts(started), None))
        .await
        .unwrap();
    let refused = records
        .record_relationship(relationship(
            ts(days_before_now(901)),
            ts(days_before_now(730)),
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(
        refused.message().starts_with("started_at"),
        "{}",
        refused.message()
    );
    let mut check = async || {
        let answer = gateway
            .check_call(call("+1 212 555 0199", "+12125550100", "us-sales"))
            .await
            .unwrap()
            .into_inner();
        codes(&answer)
    };
    assert_eq!(check().await, vec![R::Relationship], "still ongoing");
    // A past contract (years before this one) is another relationship.
    records
        .record_relationship(relationship(
            ts(days_before_now(2000)),
            ts(days_before_now(1800)),
        ))
        .await
        .unwrap();
    assert_eq!(check().await, vec![R::Relationship], "still ongoing");
    records
        .record_relationship(relationship(ts(started), ts(days_before_now(730))))
        .await
        .unwrap();
    assert_eq!(check().await, vec![R::RegistryListed], "ended 2 years ago");
}

/// A relationship whose end the contract API recorded as another record
/// (same controller, kind and start) is corrected as one: moving one record
/// to another start or number moves the other with it. Parted, the ongoing
/// record exempted again (found by review: ALLOW before the fix).
#[tokio::test(flavor = "multi_thread")]
async fn test_a_relationship_is_corrected_with_the_record_of_its_end() {
    let ws = Workspace::new(&standard_config(""));
    ws.import("us-dnc", &["212 555 0199", "212 555 0198"], &[]);
    let server = ws.start();
    let mut records = server.records().await;
    let mut gateway = server.gateway().await;
    let started = days_before_now(900);
    let relationship = |ended_at| RecordRelationshipRequest {
        controller: "acme".into(),
        number: "+1 212 555 0199".into(),
        kind: RelationshipKind::Customer as i32,
        started_at: ts(started),
        ended_at,
        default_region: String::new(),
    };
    let ongoing = records
        .record_relationship(relationship(None))
        .await
        .unwrap()
        .into_inner()
        .relationship_id;
    // Its end, two years ago: past the US exemption's 18 months.
    records
        .record_relationship(relationship(ts(days_before_now(730))))
        .await
        .unwrap();
    let mut check = async |number: &str| {
        let answer = gateway
            .check_call(call(number, "+12125550100", "us-sales"))
            .await
            .unwrap()
            .into_inner();
        codes(&answer)
    };
    assert_eq!(check("+1 212 555 0199").await, vec![R::RegistryListed]);
    let mut correct = async |request: RectifyRelationshipRequest| {
        records
            .rectify_relationship(request)
            .await
            .unwrap()
            .into_inner()
    };
    correct(RectifyRelationshipRequest {
        relationship_id: ongoing.clone(),
        controller: "acme".into(),
        reason: "start date typo".into(),
        started_at: ts(days_before_now(901)),
        ..Default::default()
    })
    .await;
    assert_eq!(check("+1 212 555 0199").await, vec![R::RegistryListed]);
    correct(RectifyRelationshipRequest {
        relationship_id: ongoing.clone(),
        controller: "acme".into(),
        reason: "wrong customer number".into(),
        number: "+1 212 555 0198".into(),
        ..Default::default()
    })
    .await;
    assert_eq!(check("+1 212 555 0198").await, vec![R::RegistryListed]);
    assert_eq!(check("+1 212 555 0199").await, vec![R::RegistryListed]);
    // Both records moved: the number the relationship left holds neither.
    let exported = records
        .export_subject(ExportSubjectRequest {
            verification: None,
            controller: "acme".into(),
            number: "+1 212 555 0199".into(),
            default_region: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .json;
    let exported: serde_json::Value = serde_json::from_str(&exported).unwrap();
    assert_eq!(
        exported["relationships"].as_array().unwrap().len(),
        0,
        "{exported}"
    );
}

/// A correction cannot carry a consent past a withdrawal: not by moving
/// it onto a number whose holder withdrew (even when no consent was stored
/// there to end), nor by moving its grant from before a withdrawal to after
/// it. Both were ALLOWs before the fix.
#[tokio::test(flavor = "multi_thread")]
async fn test_a_correction_does_not_undo_a_withdrawal() {
    let ws = Workspace::new(&standard_config(""));
    let server = ws.start();
    let mut records = server.records().await;
    let mut gateway = server.gateway().await;
    let (typo, withdrew) = ("+4915123458001", "+4915123458002");
    let record = |number: &str, days_ago: i64| RecordConsentRequest {
        controller: "acme".into(),
        number: number.into(),
        purpose: Purpose::Marketing as i32,
        granted_at: ts(days_before_now(days_ago)),
        source: "web form".into(),
        ..Default::default()
    };
    let revoke = |number: &str, days_ago: i64| RevokeConsentRequest {
        controller: "acme".into(),
        number: number.into(),
        purpose: Purpose::Marketing as i32,
        revoked_at: ts(days_before_now(days_ago)),
        default_region: String::new(),
    };
    // The holder of `withdrew` withdrew two days ago; nothing was stored.
    records.revoke_consent(revoke(withdrew, 2)).await.unwrap();
    let id = records
        .record_consent(record(typo, 3))
        .await
        .unwrap()
        .into_inner()
        .consent_id;
    records
        .rectify_consent(RectifyConsentRequest {
            consent_id: id.clone(),
            controller: "acme".into(),
            reason: "typo".into(),
            number: withdrew.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let denied = gateway
        .check_call(call(withdrew, DE_CLI, "de-optin"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        codes(&denied),
        vec![R::NoConsent],
        "the withdrawal binds it"
    );

    // Its grant cannot be moved past the withdrawal either.
    let err = records
        .rectify_consent(RectifyConsentRequest {
            consent_id: id,
            controller: "acme".into(),
            reason: "date typo".into(),
            granted_at: ts(days_before_now(1)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().starts_with("granted_at:") && err.message().contains("withdrawal"),
        "{}",
        err.message()
    );
    let still = gateway
        .check_call(call(withdrew, DE_CLI, "de-optin"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(codes(&still), vec![R::NoConsent]);

    // Nor in two steps: another purpose and a later grant, where no
    // withdrawal stands, then back (found by review).
    let resynced = "+4915123458003";
    records.revoke_consent(revoke(resynced, 2)).await.unwrap();
    let id = records
        .record_consent(record(resynced, 3))
        .await
        .unwrap()
        .into_inner()
        .consent_id;
    records
        .rectify_consent(RectifyConsentRequest {
            consent_id: id.clone(),
            controller: "acme".into(),
            reason: "step one".into(),
            purpose: Purpose::MarketResearch as i32,
            granted_at: ts(days_before_now(1)),
            ..Default::default()
        })
        .await
        .unwrap();
    let err = records
        .rectify_consent(RectifyConsentRequest {
            consent_id: id,
            controller: "acme".into(),
            reason: "step two".into(),
            purpose: Purpose::Marketing as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().starts_with("purpose:") && err.message().contains("withdrawal"),
        "{}",
        err.message()
    );
    let dead = gateway
        .check_call(call(resynced, DE_CLI, "de-optin"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(codes(&dead), vec![R::NoConsent]);
}
