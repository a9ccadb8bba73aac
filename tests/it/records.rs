//! ContactRecords over real gRPC: validation, effect on the next check, persistence.

use dialgate::proto::{
    AddSuppressionRequest, Purpose, ReasonCode as R, RecordConsentRequest, RevokeConsentRequest,
    Verdict,
};
use tonic::Code;

use crate::support::*;

const DE_CLI: &str = "+4930123456";

/// The answer to a call of `number` on the opt-in campaign.
async fn opt_in_call(server: &TestServer, number: &str) -> dialgate::proto::CheckCallResponse {
    let mut gateway = server.gateway().await;
    gateway
        .check_call(call(number, DE_CLI, "de-optin"))
        .await
        .unwrap()
        .into_inner()
}

fn consent(number: &str) -> RecordConsentRequest {
    RecordConsentRequest {
        controller: "acme".into(),
        number: number.into(),
        purpose: Purpose::Marketing as i32,
        granted_at: Some(dialgate::proto::timestamp_to_proto(jiff::Timestamp::now())),
        source: "web form v3".into(),
        evidence_ref: "doi:123".into(),
        default_region: "DE".into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn test_bad_requests_name_the_field_and_store_nothing() {
    let ws = Workspace::new(&standard_config(""));
    let server = ws.start();
    let mut records = server.records().await;
    let future = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_hours(2))
        .unwrap();
    let cases: Vec<(RecordConsentRequest, &str)> = vec![
        (
            RecordConsentRequest {
                controller: " ".into(),
                ..consent("0151 23456789")
            },
            "controller",
        ),
        (
            RecordConsentRequest {
                number: "12".into(),
                ..consent("")
            },
            "number",
        ),
        (
            RecordConsentRequest {
                number: "0151 23456789".into(),
                default_region: String::new(),
                ..consent("")
            },
            "number",
        ),
        (
            RecordConsentRequest {
                default_region: "XX".into(),
                ..consent("0151 23456789")
            },
            "default_region",
        ),
        (
            RecordConsentRequest {
                purpose: Purpose::Unspecified as i32,
                ..consent("0151 23456789")
            },
            "purpose",
        ),
        (
            RecordConsentRequest {
                purpose: 99,
                ..consent("0151 23456789")
            },
            "purpose",
        ),
        (
            RecordConsentRequest {
                granted_at: None,
                ..consent("0151 23456789")
            },
            "granted_at",
        ),
        (
            RecordConsentRequest {
                granted_at: Some(dialgate::proto::timestamp_to_proto(future)),
                ..consent("0151 23456789")
            },
            "granted_at",
        ),
        (
            RecordConsentRequest {
                source: String::new(),
                ..consent("0151 23456789")
            },
            "source",
        ),
        // No configured campaign calls for it: stored, it would have taken
        // opt-outs that bind nothing (found by review).
        (
            RecordConsentRequest {
                controller: "Acme Ltd".into(),
                ..consent("0151 23456789")
            },
            "controller",
        ),
        (
            RecordConsentRequest {
                controller: "acme\u{200b}".into(),
                ..consent("0151 23456789")
            },
            "controller",
        ),
    ];
    for (request, field) in cases {
        let status = records.record_consent(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert!(
            status.message().starts_with(field),
            "{field}: {}",
            status.message()
        );
    }
    let status = records
        .add_suppression(AddSuppressionRequest {
            number: "abc".into(),
            default_region: "IT".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().starts_with("number"),
        "{}",
        status.message()
    );

    let mut gateway = server.gateway().await;
    let response = gateway
        .check_call(call("+49 151 23456789", DE_CLI, "de-optin"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        codes(&response),
        vec![R::NoConsent],
        "no bad request stored a consent"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn test_consent_revocation_and_opt_out_take_effect_at_once_and_persist() {
    let ws = Workspace::new(&standard_config(""));
    let server = ws.start();
    let mut records = server.records().await;
    let mut gateway = server.gateway().await;
    let number = "+49 151 23456789";

    let id = records
        .record_consent(consent("0151 23456789"))
        .await
        .unwrap()
        .into_inner()
        .consent_id;
    assert!(!id.is_empty());
    let allowed = gateway
        .check_call(call(number, DE_CLI, "de-optin"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(verdict(&allowed), Verdict::Allow);
    assert_eq!(codes(&allowed), vec![R::Consent]);
    assert!(allowed.reasons[0].detail.contains(&id));

    let revoked = records
        .revoke_consent(RevokeConsentRequest {
            controller: "acme".into(),
            number: number.into(),
            purpose: Purpose::Unspecified as i32,
            revoked_at: None,
            default_region: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .revoked;
    assert_eq!(revoked, 1);
    let denied = gateway
        .check_call(call(number, DE_CLI, "de-optin"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        codes(&denied),
        vec![R::NoConsent],
        "withdrawal is effective for the very next check"
    );

    records
        .record_consent(consent("0151 23456789"))
        .await
        .unwrap();
    records
        .add_suppression(AddSuppressionRequest {
            controller: "acme".into(),
            number: number.into(),
            reason: "objected".into(),
            source: "call".into(),
            default_region: String::new(),
            ..Default::default()
        })
        .await
        .unwrap();
    let suppressed = gateway
        .check_call(call(number, DE_CLI, "de-optin"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        codes(&suppressed),
        vec![R::Suppressed],
        "an opt-out beats a consent"
    );

    let (status, _) = server.terminate();
    assert!(status.success());
    let server = ws.start();
    let mut gateway = server.gateway().await;
    let after_restart = gateway
        .check_call(call(number, DE_CLI, "de-optin"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        codes(&after_restart),
        vec![R::Suppressed],
        "records persist across restarts"
    );
}

/// A withdrawal recorded while no consent of its purpose was stored (the
/// CRM's consent arrives later, or a correction moves one here) binds the
/// consents given before it; before the fix it bound nothing and the late
/// consent was called.
#[tokio::test(flavor = "multi_thread")]
async fn test_a_withdrawal_binds_consents_recorded_after_it() {
    let ws = Workspace::new(&standard_config(""));
    let server = ws.start();
    let mut records = server.records().await;
    let mut gateway = server.gateway().await;
    let number = "+4915123457001";
    let ended = records
        .revoke_consent(RevokeConsentRequest {
            controller: "acme".into(),
            number: number.into(),
            purpose: Purpose::Unspecified as i32,
            revoked_at: None,
            default_region: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .revoked;
    assert_eq!(ended, 0, "no consent was stored to end");
    let given_before = RecordConsentRequest {
        granted_at: Some(dialgate::proto::timestamp_to_proto(
            jiff::Timestamp::now() - jiff::SignedDuration::from_hours(72),
        )),
        ..consent(number)
    };
    records.record_consent(given_before).await.unwrap();
    let denied = gateway
        .check_call(call(number, DE_CLI, "de-optin"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        codes(&denied),
        vec![R::NoConsent],
        "a consent given before the withdrawal does not count"
    );
    // One given after the withdrawal does.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    records.record_consent(consent(number)).await.unwrap();
    let allowed = gateway
        .check_call(call(number, DE_CLI, "de-optin"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(verdict(&allowed), Verdict::Allow);
    // And after a restart (the marker is a stored record).
    let (status, _) = server.terminate();
    assert!(status.success());
    let server = ws.start();
    let mut gateway = server.gateway().await;
    let allowed = gateway
        .check_call(call(number, DE_CLI, "de-optin"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(verdict(&allowed), Verdict::Allow);
}

/// Contact records that cannot be reloaded for ten reload intervals (here
/// a row another process stored that the server cannot read) stop the
/// decisions: CheckCall and ScreenNumbers answer UNAVAILABLE and /readyz
/// 503, until a reload works again. Before, the server went on deciding
/// without the records other processes stored (bulk opt-outs among them).
#[tokio::test(flavor = "multi_thread")]
async fn test_contact_records_that_cannot_be_reloaded_stop_decisions() {
    let ws = Workspace::new(&standard_config(""));
    let server = ws.start();
    let mut gateway = server.gateway().await;
    let number = "+4915123456999";
    let decided = gateway
        .check_call(call(number, DE_CLI, "de-optin"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(verdict(&decided), Verdict::Deny);
    let db = rusqlite::Connection::open(ws.data_dir().join("contacts.db")).unwrap();
    db.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    db.execute(
        "INSERT INTO consents (consent_id, controller, number, number_key, purpose, granted_at_us,
             source, method, notice_version, evidence_ref, recorded_at_us)
         VALUES ('bad', 'acme', '+4915123456998', 1, 'no-such-purpose', 0, 's', '', '', '', 0)",
        [],
    )
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let refused = loop {
        match gateway.check_call(call(number, DE_CLI, "de-optin")).await {
            Err(status) => break status,
            Ok(_) => {
                assert!(std::time::Instant::now() < deadline, "still deciding");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    };
    assert_eq!(refused.code(), Code::Unavailable);
    assert!(
        refused
            .message()
            .contains("contact records could not be reloaded"),
        "{}",
        refused.message()
    );
    assert_eq!(server.get("/readyz").0, 503);
    let status = screen_one(
        &mut gateway,
        dialgate::proto::ScreenNumbersRequest {
            called_number: number.into(),
            campaign_id: "de-optin".into(),
            at: None,
            r#ref: "1".into(),
        },
    )
    .await
    .expect_err("no screening while the records are behind");
    assert_eq!(status.code(), Code::Unavailable);

    // Repaired: decisions resume by themselves.
    db.execute("DELETE FROM consents WHERE consent_id = 'bad'", [])
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while gateway
        .check_call(call(number, DE_CLI, "de-optin"))
        .await
        .is_err()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "decisions did not resume"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(server.get("/readyz").0, 200);
}

/// A withdrawal dated a few seconds ahead (a CRM's clock running fast,
/// within the skew allowed) counted only from that instant: the consent
/// went on granting calls until then (found by review). It counts now.
/// One dated an hour ahead (local time sent as UTC) was refused, leaving
/// the consent in force (found by review): it counts now too.
#[tokio::test(flavor = "multi_thread")]
async fn test_a_withdrawal_dated_ahead_takes_effect_at_once() {
    let ws = Workspace::new(&standard_config(""));
    let server = ws.start();
    let mut records = server.records().await;
    let mut gateway = server.gateway().await;
    for (national, seconds) in [("0151 23456789", 40), ("0151 23456780", 3600)] {
        let number = format!("+49{}", national[1..].replace(' ', ""));
        records.record_consent(consent(national)).await.unwrap();
        let ahead = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(seconds);
        records
            .revoke_consent(RevokeConsentRequest {
                controller: "acme".into(),
                number: number.clone(),
                purpose: Purpose::Unspecified as i32,
                revoked_at: Some(dialgate::proto::timestamp_to_proto(ahead)),
                default_region: String::new(),
            })
            .await
            .unwrap();
        let denied = gateway
            .check_call(call(&number, DE_CLI, "de-optin"))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(codes(&denied), vec![R::NoConsent], "{seconds} s ahead");
    }
}

fn consent_granted_at(number: &str, granted_at: jiff::Timestamp) -> RecordConsentRequest {
    RecordConsentRequest {
        granted_at: Some(dialgate::proto::timestamp_to_proto(granted_at)),
        ..consent(number)
    }
}

/// A withdrawal dated before the grant of the consent it ends (the CRM
/// sends its local time, five hours west of UTC, as UTC) ends it; the CRM's
/// next re-sync of that same consent was ALLOWed again (found by review).
#[tokio::test(flavor = "multi_thread")]
async fn test_a_withdrawal_dated_before_the_grant_binds_the_crms_resync() {
    let ws = Workspace::new(&standard_config(""));
    let server = ws.start();
    let mut records = server.records().await;
    let number = "+4915123457011";
    let now = jiff::Timestamp::now();
    // Consent given three hours ago.
    let granted = now - jiff::SignedDuration::from_hours(3);
    records
        .record_consent(consent_granted_at(number, granted))
        .await
        .unwrap();
    let allowed = opt_in_call(&server, number).await;
    assert_eq!(verdict(&allowed), Verdict::Allow);
    // The subject withdraws now; the CRM sends its local time (UTC-5)
    // as UTC: 5 hours earlier than the real instant, before the grant.
    let revoked = records
        .revoke_consent(RevokeConsentRequest {
            controller: "acme".into(),
            number: number.into(),
            purpose: Purpose::Unspecified as i32,
            revoked_at: Some(dialgate::proto::timestamp_to_proto(
                now - jiff::SignedDuration::from_hours(5),
            )),
            default_region: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .revoked;
    assert_eq!(revoked, 1, "the consent is reported ended");
    let denied = opt_in_call(&server, number).await;
    assert_eq!(codes(&denied), vec![R::NoConsent]);
    // The CRM's nightly re-sync sends the same consent again.
    records
        .record_consent(consent_granted_at(number, granted))
        .await
        .unwrap();
    let after_resync = opt_in_call(&server, number).await;
    assert_eq!(
        verdict(&after_resync),
        Verdict::Deny,
        "withdrawn consent revived by a re-sync: {after_resync:?}"
    );
}

/// A marker dated at a grant still ahead of the clock (within the 60 s
/// skew) made a later withdrawal leave no trace until that grant: a
/// consent given between the two withdrawals, recorded after the second,
/// was ALLOWed until then (found by review).
#[tokio::test(flavor = "multi_thread")]
async fn test_a_marker_ahead_of_the_clock_does_not_hide_a_later_withdrawal() {
    let ws = Workspace::new(&standard_config(""));
    let server = ws.start();
    let mut records = server.records().await;
    let number = "+4915123457021";
    let revoke = || RevokeConsentRequest {
        controller: "acme".into(),
        number: number.into(),
        purpose: Purpose::Marketing as i32,
        revoked_at: None,
        default_region: String::new(),
    };
    let t0 = jiff::Timestamp::now();
    // The CRM's clock runs 50 s fast: a consent "granted" 50 s ahead.
    records
        .record_consent(consent_granted_at(
            number,
            t0 + jiff::SignedDuration::from_secs(50),
        ))
        .await
        .unwrap();
    // Withdrawn now (W1): the consent ends, a marker at t0 + 50 s.
    records.revoke_consent(revoke()).await.unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    // The subject consents again, then withdraws again a second later (W2).
    let between = jiff::Timestamp::now();
    std::thread::sleep(std::time::Duration::from_millis(1000));
    records.revoke_consent(revoke()).await.unwrap();
    // The CRM catches up with the consent given between W1 and W2.
    records
        .record_consent(consent_granted_at(number, between))
        .await
        .unwrap();
    let decided = opt_in_call(&server, number).await;
    assert_eq!(
        verdict(&decided),
        Verdict::Deny,
        "a consent given before the latest withdrawal counted: {:?}",
        decided.reasons
    );
}
