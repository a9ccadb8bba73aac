//! Issue 19, verified requests: with `subject_requests.require_verification`
//! on, ExportSubject and EraseSubject are refused unless they say who
//! verified the requester's identity, how and when; the reference goes to
//! the change trail, and the export states what is held and what an
//! erasure would keep, on which ground, until when.

use dialgate::proto::{
    EraseSubjectRequest, ExportSubjectRequest, Purpose, RecordConsentRequest, Verdict, Verification,
};
use tonic::Code;

use crate::support::*;

const DE_CLI: &str = "+4930123456";
const NUMBER: &str = "+4915123459001";

fn ts(t: jiff::Timestamp) -> Option<prost_types::Timestamp> {
    Some(dialgate::proto::timestamp_to_proto(t))
}

fn verified(days_ago: i64) -> Option<Verification> {
    Some(Verification {
        verified_by: "agent-17".into(),
        method: "identity document checked on a video call".into(),
        verified_at: ts(jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * days_ago)),
        reference: "DSR-2026-0042".into(),
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn test_subject_requests_need_a_verification_when_required() {
    let ws = Workspace::new(&standard_config(
        "[subject_requests]\nrequire_verification = true\n",
    ));
    let server = ws.start();
    let mut records = server.records().await;
    let mut gateway = server.gateway().await;
    records
        .record_consent(RecordConsentRequest {
            controller: "acme".into(),
            number: NUMBER.into(),
            purpose: Purpose::Marketing as i32,
            granted_at: ts(jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1)),
            source: "web form".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let decided = gateway
        .check_call(call(NUMBER, DE_CLI, "de-optin"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(verdict(&decided), Verdict::Allow);

    let export = |verification: Option<Verification>| ExportSubjectRequest {
        controller: "acme".into(),
        number: NUMBER.into(),
        default_region: String::new(),
        verification,
    };
    let erase = |verification: Option<Verification>| EraseSubjectRequest {
        controller: "acme".into(),
        number: NUMBER.into(),
        default_region: String::new(),
        verification,
    };
    let no_method = verified(1).map(|v| Verification {
        method: " ".into(),
        ..v
    });
    for (verification, field) in [
        (None, "verification: required"),
        (no_method, "verification.method:"),
        (verified(40), "verification.verified_at:"),
        (verified(-2), "verification.verified_at:"),
    ] {
        let refused = records
            .export_subject(export(verification.clone()))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument);
        assert!(
            refused.message().starts_with(field),
            "{}",
            refused.message()
        );
        let refused = records
            .erase_subject(erase(verification))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument);
        assert!(
            refused.message().starts_with(field),
            "{}",
            refused.message()
        );
    }
    // Nothing was erased by the refused requests.
    let still = gateway
        .check_call(call(NUMBER, DE_CLI, "de-optin"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(verdict(&still), Verdict::Allow);

    let json = records
        .export_subject(export(verified(1)))
        .await
        .unwrap()
        .into_inner()
        .json;
    let exported: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(exported["verification"]["verified_by"], "agent-17");
    assert_eq!(exported["held"]["consents"], 1);
    assert_eq!(exported["held"]["decisions"], 2, "both checks");
    let kept = exported["kept_after_erasure"].as_array().unwrap();
    assert_eq!(kept.len(), 4);
    assert!(
        kept.iter()
            .any(|k| k["what"].as_str().unwrap().starts_with("decision log")
                && k["ground"].as_str().unwrap().contains("310.5")
                && k["until"].as_str().unwrap().contains("1826 days")),
        "{kept:?}"
    );

    let erased = records
        .erase_subject(erase(verified(0)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(erased.erased_records, 1);
    let trail: Vec<serde_json::Value> = ws
        .cli_ok(&["trail", "export"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for action in ["subject.exported", "subject.erased"] {
        let event = trail
            .iter()
            .find(|e| e["action"] == action)
            .unwrap_or_else(|| panic!("no {action} in {trail:?}"));
        assert_eq!(event["after"]["verification"]["reference"], "DSR-2026-0042");
        assert_eq!(
            event["after"]["verification"]["method"],
            "identity document checked on a video call"
        );
    }
}

#[test]
fn test_the_verification_age_is_bounded_at_load() {
    let ws = Workspace::new(&standard_config(
        "[subject_requests]\nverification_max_age_days = 0\n",
    ));
    let out = ws.cli(&["config", "check"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("subject_requests.verification_max_age_days"),
        "{stderr}"
    );
}
