//! CheckCall and ScreenNumbers over real gRPC: every implemented reason code.

use dialgate::proto::{
    Purpose, ReasonCode as R, RecordConsentRequest, ScreenNumbersRequest, Verdict,
};
use tokio_stream::StreamExt;

use crate::support::*;

const IT_CLI: &str = "+390212345678";

fn workspace_with_registries() -> Workspace {
    let ws = Workspace::new(&standard_config(""));
    // The older answer first: one older than the last replace is refused.
    ws.import(
        "it-rpo",
        &["+39 333 765 4321"],
        &["--controller", "acme", "--checked-at", &days_ago(15)],
    );
    // An answer added to the clearances held names what was submitted.
    let submitted = ws.file("submitted.txt", "+39 333 123 4567\n02 8765 4321\n");
    ws.import(
        "it-rpo",
        &["+39 333 123 4567", "02 8765 4321"],
        &[
            "--controller",
            "acme",
            "--mode",
            "add",
            "--submitted",
            path_str(&submitted),
        ],
    );
    ws.import("us-dnc", &["(212) 555-0199"], &["--covers", "+1212,+1646"]);
    ws
}

#[tokio::test(flavor = "multi_thread")]
async fn test_every_reason_code_over_grpc() {
    let ws = workspace_with_registries();
    let server = ws.start();
    let mut gateway = server.gateway().await;
    let mut records = server.records().await;

    records
        .record_consent(RecordConsentRequest {
            controller: "acme".into(),
            number: "+49 151 23456789".into(),
            purpose: Purpose::Marketing as i32,
            granted_at: Some(dialgate::proto::timestamp_to_proto(jiff::Timestamp::now())),
            source: "web form v3".into(),
            evidence_ref: "double-opt-in:abc".into(),
            default_region: String::new(),
            ..Default::default()
        })
        .await
        .expect("record consent");
    records
        .add_suppression(dialgate::proto::AddSuppressionRequest {
            controller: String::new(),
            number: "02 8765 4321".into(),
            reason: "asked on the phone".into(),
            source: "agent 7".into(),
            default_region: "IT".into(),
            ..Default::default()
        })
        .await
        .expect("add suppression");

    type Case<'a> = (&'a str, (&'a str, &'a str, &'a str), Verdict, Vec<R>);
    let cases: Vec<Case<'_>> = vec![
        (
            "rpo cleared",
            ("+39 333 123 4567", IT_CLI, "it-sales"),
            Verdict::Allow,
            vec![R::RegistryClear],
        ),
        (
            "national notation",
            ("333 1234567", IT_CLI, "it-sales"),
            Verdict::Allow,
            vec![R::RegistryClear],
        ),
        (
            "other controller",
            ("+39 333 123 4567", IT_CLI, "it-beta"),
            Verdict::Deny,
            vec![R::RegistryNotCovered],
        ),
        (
            "never cleared",
            ("+39 333 000 0000", IT_CLI, "it-sales"),
            Verdict::Deny,
            vec![R::RegistryNotCovered],
        ),
        (
            "clearance 15 days old",
            ("+39 333 765 4321", IT_CLI, "it-sales"),
            Verdict::Deny,
            vec![R::RegistryStale],
        ),
        (
            "suppressed",
            ("02 8765 4321", IT_CLI, "it-sales"),
            Verdict::Deny,
            vec![R::Suppressed],
        ),
        (
            "invalid number",
            ("12345", IT_CLI, "it-sales"),
            Verdict::Deny,
            vec![R::InvalidNumber],
        ),
        (
            "premium rate",
            ("+39 899 123456", IT_CLI, "it-sales"),
            Verdict::Deny,
            vec![R::InvalidNumber],
        ),
        (
            "unknown campaign",
            ("+39 333 123 4567", IT_CLI, "nope"),
            Verdict::Deny,
            vec![R::UnknownCampaign],
        ),
        (
            "destination",
            ("+1 212 555 0123", IT_CLI, "it-sales"),
            Verdict::Deny,
            vec![R::DestinationNotAllowed],
        ),
        (
            "caller id missing",
            ("+39 333 123 4567", "anonymous", "it-sales"),
            Verdict::Deny,
            vec![R::CallerIdMissing],
        ),
        (
            "caller id empty",
            ("+39 333 123 4567", "", "it-sales"),
            Verdict::Deny,
            vec![R::CallerIdMissing],
        ),
        (
            "caller id not declared",
            ("+39 333 123 4567", "+390299999999", "it-sales"),
            Verdict::Deny,
            vec![R::CallerIdNotAllowed],
        ),
        (
            "0844 for marketing",
            ("+39 333 123 4567", "0844 123456", "it-sales"),
            Verdict::Allow,
            vec![R::RegistryClear],
        ),
        (
            "0844 for a survey",
            ("+39 333 123 4567", "0844 123456", "it-survey"),
            Verdict::Deny,
            vec![R::CallerIdNotAllowed],
        ),
        (
            "0843 for a survey",
            ("+39 333 123 4567", "0843 123456", "it-survey"),
            Verdict::Allow,
            vec![R::RegistryClear],
        ),
        (
            "dnc listed",
            ("212-555-0199", "+12125550100", "us-sales"),
            Verdict::Deny,
            vec![R::RegistryListed],
        ),
        (
            "dnc clear",
            ("212-555-0198", "+12125550100", "us-sales"),
            Verdict::Allow,
            vec![R::RegistryClear],
        ),
        (
            "dnc area not covered",
            ("(415) 555-0123", "+12125550100", "us-sales"),
            Verdict::Deny,
            vec![R::RegistryNotCovered],
        ),
        (
            "registry without snapshot",
            ("020 7946 0018", "+442079460000", "uk-sales"),
            Verdict::Deny,
            vec![R::RegistryUnavailable],
        ),
        (
            "opt-in without consent",
            ("+49 151 11111111", "+4930123456", "de-optin"),
            Verdict::Deny,
            vec![R::NoConsent],
        ),
        (
            "opt-in with consent",
            ("+49 151 23456789", "+4930123456", "de-optin"),
            Verdict::Allow,
            vec![R::Consent],
        ),
        (
            "several reasons",
            ("02 8765 4321", "private", "it-beta"),
            Verdict::Deny,
            vec![R::CallerIdMissing, R::Suppressed, R::RegistryNotCovered],
        ),
    ];
    for (name, (number, cli, campaign), expected_verdict, expected_codes) in cases {
        let response = gateway
            .check_call(call(number, cli, campaign))
            .await
            .expect(name)
            .into_inner();
        assert_eq!(
            verdict(&response),
            expected_verdict,
            "{name}: {:?}",
            response.reasons
        );
        assert_eq!(
            codes(&response),
            expected_codes,
            "{name}: {:?}",
            response.reasons
        );
        assert!(!response.decision_id.is_empty(), "{name}");
    }

    let response = gateway
        .check_call(call("02 8765 4321", IT_CLI, "it-sales"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        response.normalized_number, "+390287654321",
        "Italian landlines keep their 0"
    );
    let response = gateway
        .check_call(call("0039 333 1234567", IT_CLI, "it-sales"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.normalized_number, "+393331234567");
}

#[tokio::test(flavor = "multi_thread")]
async fn test_request_id_is_an_idempotency_key_across_restarts() {
    let ws = workspace_with_registries();
    let server = ws.start();
    let mut gateway = server.gateway().await;
    let mut request = call("+39 333 123 4567", IT_CLI, "it-sales");
    request.request_id = "dialer-7:attempt-1".into();
    let first = gateway
        .check_call(request.clone())
        .await
        .unwrap()
        .into_inner();
    let second = gateway
        .check_call(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first, second);
    let (status, _) = server.terminate();
    assert!(status.success());

    let server = ws.start();
    let mut gateway = server.gateway().await;
    let third = gateway
        .check_call(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        first, third,
        "a repeat after a restart returns the original decision"
    );
    let other = gateway
        .check_call(dialgate::proto::CheckCallRequest {
            request_id: "dialer-7:attempt-2".into(),
            ..request
        })
        .await
        .unwrap()
        .into_inner();
    assert_ne!(other.decision_id, first.decision_id);
    drop(server);

    let logged = export_jsonl(&ws, &[]);
    let ids: Vec<&str> = logged
        .iter()
        .map(|d| d["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec!["dialer-7:attempt-1", "dialer-7:attempt-2"],
        "each request logged once"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn test_concurrent_repeats_of_one_request_are_logged_once() {
    let ws = workspace_with_registries();
    let server = ws.start();
    let channel = server.channel().await;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let mut client = dialgate::proto::compliance_gateway_client::ComplianceGatewayClient::new(
            channel.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut request = call("+39 333 123 4567", IT_CLI, "it-sales");
            request.request_id = "same".into();
            client
                .check_call(request)
                .await
                .unwrap()
                .into_inner()
                .decision_id
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.unwrap());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    drop(server);
    assert_eq!(export_jsonl(&ws, &[]).len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn test_screen_numbers_streams_answers_with_refs() {
    let ws = workspace_with_registries();
    let server = ws.start();
    let mut gateway = server.gateway().await;
    let in_20_days = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_hours(24 * 20))
        .unwrap();
    let requests = vec![
        ScreenNumbersRequest {
            called_number: "+39 333 123 4567".into(),
            campaign_id: "it-sales".into(),
            at: None,
            r#ref: "a".into(),
        },
        ScreenNumbersRequest {
            called_number: "+39 333 000 0000".into(),
            campaign_id: "it-sales".into(),
            at: None,
            r#ref: "b".into(),
        },
        ScreenNumbersRequest {
            called_number: "bogus".into(),
            campaign_id: "it-sales".into(),
            at: None,
            r#ref: "c".into(),
        },
        ScreenNumbersRequest {
            called_number: "+39 333 123 4567".into(),
            campaign_id: "it-sales".into(),
            at: Some(dialgate::proto::timestamp_to_proto(in_20_days)),
            r#ref: "d".into(),
        },
    ];
    let mut answers = gateway
        .screen_numbers(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    while let Some(answer) = answers.next().await {
        let answer = answer.unwrap();
        let codes: Vec<R> = answer
            .reasons
            .iter()
            .map(|r| R::try_from(r.code).unwrap())
            .collect();
        got.push((
            answer.r#ref,
            Verdict::try_from(answer.verdict).unwrap(),
            codes,
        ));
    }
    assert_eq!(
        got,
        vec![
            ("a".into(), Verdict::Allow, vec![R::RegistryClear]),
            ("b".into(), Verdict::Deny, vec![R::RegistryNotCovered]),
            ("c".into(), Verdict::Deny, vec![R::InvalidNumber]),
            ("d".into(), Verdict::Deny, vec![R::RegistryStale]),
        ]
    );
    drop(server);
    assert!(
        export_jsonl(&ws, &[]).is_empty(),
        "screening is not a dial decision: nothing logged"
    );
}

/// A screened item's error names the field and quotes at most the start
/// of its `ref`: with an implausible `at`, a ref of 3000 emoji gave an
/// empty message (the whole ref outgrew the status), a long ASCII one a
/// 12 kB message (found by review).
#[tokio::test(flavor = "multi_thread")]
async fn test_a_screened_items_error_names_its_field_briefly() {
    let ws = workspace_with_registries();
    let server = ws.start();
    let mut gateway = server.gateway().await;
    let item = |reference: String, seconds: i64| ScreenNumbersRequest {
        called_number: "+39 333 123 4567".into(),
        campaign_id: "it-sales".into(),
        at: Some(prost_types::Timestamp { seconds, nanos: 0 }),
        r#ref: reference,
    };
    let emoji = screen_one(&mut gateway, item("😀".repeat(3000), 5))
        .await
        .unwrap_err();
    assert_eq!(emoji.code(), tonic::Code::InvalidArgument);
    assert!(
        emoji.message().contains("ref") && emoji.message().len() < 300,
        "{:?}",
        emoji.message()
    );
    let long = screen_one(&mut gateway, item("x".repeat(250), 5))
        .await
        .unwrap_err();
    assert_eq!(long.code(), tonic::Code::InvalidArgument);
    assert!(
        long.message().contains("at must be") && long.message().len() < 200,
        "{:?}",
        long.message()
    );
}

/// One ScreenNumbers stream mixing campaigns, regions and instants is
/// answered number by number as if each came alone (the server screens what
/// has arrived as one run, sharing the lookups of numbers with the same
/// campaign, region and instant), and a bad item ends the stream with its
/// error after the answers before it, none after.
#[tokio::test(flavor = "multi_thread")]
async fn test_a_screened_run_mixing_campaigns_and_regions_answers_each_alone() {
    let ws = workspace_with_registries();
    let server = ws.start();
    let mut gateway = server.gateway().await;
    let in_20_days = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_hours(24 * 20))
        .unwrap();
    let item =
        |number: &str, campaign: &str, at: Option<jiff::Timestamp>, r: &str| ScreenNumbersRequest {
            called_number: number.into(),
            campaign_id: campaign.into(),
            at: at.map(dialgate::proto::timestamp_to_proto),
            r#ref: r.into(),
        };
    let requests = vec![
        item("+39 333 123 4567", "it-sales", None, "it"),
        // The same Italian number under the US campaign: not its destination.
        item("+39 333 123 4567", "us-sales", None, "it-by-us"),
        // A US number under the Italian campaign, then under its own.
        item("+1 212 555 0199", "it-sales", None, "us-by-it"),
        item("+1 212 555 0199", "us-sales", None, "us-listed"),
        item("+39 333 123 4567", "it-sales", Some(in_20_days), "it-stale"),
        item("+39 333 123 4567", "it-sales", None, "it-again"),
        // Same campaign and instant, another region.
        item("+1 212 555 0199", "it-sales", None, "us-by-it-again"),
        item("+39 333 123 4567", "no-such-campaign", None, "unknown"),
        item(
            "+39 333 123 4567",
            "it-sales",
            Some("1990-01-01T00:00:00Z".parse().unwrap()),
            "bad-at",
        ),
        item("+39 333 123 4567", "it-sales", None, "after"),
    ];
    let mut answers = gateway
        .screen_numbers(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    let mut error = None;
    while let Some(answer) = answers.next().await {
        match answer {
            Ok(answer) => got.push((
                answer.r#ref,
                Verdict::try_from(answer.verdict).unwrap(),
                answer
                    .reasons
                    .iter()
                    .map(|r| R::try_from(r.code).unwrap())
                    .collect::<Vec<_>>(),
            )),
            Err(status) => {
                error = Some(status);
                break;
            }
        }
    }
    assert_eq!(
        got,
        vec![
            ("it".into(), Verdict::Allow, vec![R::RegistryClear]),
            (
                "it-by-us".into(),
                Verdict::Deny,
                vec![R::DestinationNotAllowed]
            ),
            (
                "us-by-it".into(),
                Verdict::Deny,
                vec![R::DestinationNotAllowed]
            ),
            ("us-listed".into(), Verdict::Deny, vec![R::RegistryListed]),
            ("it-stale".into(), Verdict::Deny, vec![R::RegistryStale]),
            ("it-again".into(), Verdict::Allow, vec![R::RegistryClear]),
            (
                "us-by-it-again".into(),
                Verdict::Deny,
                vec![R::DestinationNotAllowed]
            ),
            ("unknown".into(), Verdict::Deny, vec![R::UnknownCampaign]),
        ]
    );
    let error = error.expect("the bad item ends the stream with an error");
    assert_eq!(error.code(), tonic::Code::InvalidArgument, "{error:?}");
    assert!(error.message().contains("bad-at"), "{error:?}");
}

/// Issue 19: a campaign calling a profiled segment needs a profiling
/// consent, recorded over gRPC like any other; a marketing consent alone
/// is denied with NO_CONSENT saying why.
#[tokio::test(flavor = "multi_thread")]
async fn test_a_profiled_segment_needs_a_profiling_consent_over_grpc() {
    let ws = Workspace::new(&standard_config(
        r#"
[[campaign]]
id = "de-profiled"
controller = "acme"
purpose = "marketing"
default_region = "DE"
destinations = ["DE"]
profiled_segment = true
caller_ids = ["+4930123456"]
"#,
    ));
    let server = ws.start();
    let mut gateway = server.gateway().await;
    let mut records = server.records().await;
    let consent = |purpose: Purpose| RecordConsentRequest {
        controller: "acme".into(),
        number: "+49 151 23456789".into(),
        purpose: purpose as i32,
        granted_at: Some(dialgate::proto::timestamp_to_proto(jiff::Timestamp::now())),
        source: "web form v3".into(),
        evidence_ref: "double-opt-in:abc".into(),
        ..Default::default()
    };
    records
        .record_consent(consent(Purpose::Marketing))
        .await
        .unwrap();
    let denied = gateway
        .check_call(call("+49 151 23456789", "+4930123456", "de-profiled"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(verdict(&denied), Verdict::Deny);
    assert_eq!(codes(&denied), vec![R::NoConsent]);
    assert!(
        denied.reasons[0].detail.contains("profiled segment"),
        "{denied:?}"
    );
    records
        .record_consent(consent(Purpose::Profiling))
        .await
        .unwrap();
    let allowed = gateway
        .check_call(call("+49 151 23456789", "+4930123456", "de-profiled"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(verdict(&allowed), Verdict::Allow, "{allowed:?}");
}

/// The US national DNC is lifted only by the consumer's signed written
/// agreement: a consent recorded over gRPC with another method leaves the
/// listed number denied, naming the consent; one with `method =
/// "written_agreement"` lifts it (any consent did: found by review), and a
/// correction of the method is seen by the next check.
#[tokio::test(flavor = "multi_thread")]
async fn test_only_a_written_agreement_lifts_the_us_dnc() {
    use dialgate::proto::RectifyConsentRequest;
    let ws = Workspace::new(&standard_config(""));
    ws.import("us-dnc", &["212 555 0199", "212 555 0198"], &[]);
    let server = ws.start();
    let mut records = server.records().await;
    let mut gateway = server.gateway().await;
    let consent = |number: &str, method: &str| RecordConsentRequest {
        controller: "acme".into(),
        number: number.into(),
        purpose: Purpose::Marketing as i32,
        granted_at: Some(dialgate::proto::timestamp_to_proto(jiff::Timestamp::now())),
        source: "web form v3".into(),
        method: method.into(),
        evidence_ref: "signed:abc".into(),
        ..Default::default()
    };
    let web = records
        .record_consent(consent("+1 212 555 0199", "web form"))
        .await
        .unwrap()
        .into_inner()
        .consent_id;
    records
        .record_consent(consent("+1 212 555 0198", "written_agreement"))
        .await
        .unwrap();
    let mut check = async |number: &str| {
        gateway
            .check_call(call(number, "+12125550100", "us-sales"))
            .await
            .unwrap()
            .into_inner()
    };
    let denied = check("+1 212 555 0199").await;
    assert_eq!(verdict(&denied), Verdict::Deny);
    assert_eq!(codes(&denied), vec![R::RegistryListed, R::NoConsent]);
    assert!(
        denied.reasons[1].detail.contains(&web),
        "{:?}",
        denied.reasons
    );
    let allowed = check("+1 212 555 0198").await;
    assert_eq!(verdict(&allowed), Verdict::Allow, "{:?}", allowed.reasons);
    assert!(
        allowed
            .reasons
            .iter()
            .any(|r| r.detail.contains("signed written agreement") && r.detail.contains("us-dnc")),
        "{:?}",
        allowed.reasons
    );
    records
        .rectify_consent(RectifyConsentRequest {
            consent_id: web,
            controller: "acme".into(),
            reason: "the signed agreement was found".into(),
            method: "written_agreement".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let corrected = check("+1 212 555 0199").await;
    assert_eq!(
        verdict(&corrected),
        Verdict::Allow,
        "{:?}",
        corrected.reasons
    );
}

/// A ComplianceGateway message over 16 KiB is refused as it is read
/// (tonic's default let 4 MiB in, and a ScreenNumbers run holds 256 of
/// them: found by review); a field merely over its length is still named.
#[tokio::test(flavor = "multi_thread")]
async fn test_an_oversized_gateway_message_is_refused_as_it_is_read() {
    let ws = workspace_with_registries();
    let server = ws.start();
    let mut gateway = server.gateway().await;
    let huge = gateway
        .check_call(call(&"9".repeat(32 * 1024), "+390212345678", "it-sales"))
        .await
        .unwrap_err();
    assert_eq!(huge.code(), tonic::Code::OutOfRange, "{huge:?}");
    let long = gateway
        .check_call(call(&"9".repeat(300), "+390212345678", "it-sales"))
        .await
        .unwrap_err();
    assert_eq!(long.code(), tonic::Code::InvalidArgument, "{long:?}");
    let status = screen_one(
        &mut gateway,
        ScreenNumbersRequest {
            called_number: "9".repeat(32 * 1024),
            campaign_id: "it-sales".into(),
            at: None,
            r#ref: "a".into(),
        },
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
}
