//! Calling windows and attempt caps over real gRPC.

use dialgate::proto::{ReasonCode as R, ScreenNumbersRequest, Verdict};
use tokio_stream::StreamExt;

use crate::support::*;

fn timing_config() -> String {
    r#"
[server]
grpc_addr = "127.0.0.1:0"
http_addr = "127.0.0.1:0"
data_dir = "data"

[[campaign]]
id = "fr-sales"
controller = "acme"
purpose = "marketing"
default_region = "FR"
destinations = ["FR", "IT", "US"]
caller_ids = ["+33140000000"]

[[campaign]]
id = "de-closed"
controller = "acme"
purpose = "marketing"
default_region = "DE"
destinations = ["DE"]
caller_ids = ["+4930123456"]
[campaign.calling_hours]
mon = []
tue = []
wed = []
thu = []
fri = []
sat = []
sun = []

[[campaign]]
id = "de-capped"
controller = "acme"
purpose = "marketing"
default_region = "DE"
destinations = ["DE"]
caller_ids = ["+4930123456"]
[campaign.attempt_limit]
max_attempts = 2
window_hours = 24

[[campaign]]
id = "de-uncapped"
controller = "acme"
purpose = "marketing"
default_region = "DE"
destinations = ["DE"]
caller_ids = ["+4930123456"]

# These tests are about time: Italy and the US are made opt-in (stricter
# than their statutes, which require a registry) so that consents alone
# are the basis and no registry data has to be fresh at the instants tested.
[destination.IT]
consent = "opt_in"
registry = "none"
source = "test: opt-in instead of the RPO"

[destination.US]
consent = "opt_in"
registry = "none"
source = "test: opt-in instead of the DNC"
"#
    .to_string()
}

/// A workspace with the timing campaigns and a consent for every number the
/// tests call (France, Germany and the overridden Italy and US are opt-in).
fn timing_workspace() -> Workspace {
    let ws = Workspace::new(&timing_config());
    let consents = ws.file(
        "consents.csv",
        "controller,number,purpose,granted_at,source\n\
         acme,+33612345678,marketing,2026-01-01,test\n\
         acme,+393331234567,marketing,2026-01-01,test\n\
         acme,+12125550123,marketing,2026-01-01,test\n\
         acme,+12135550123,marketing,2026-01-01,test\n\
         acme,+13645550123,marketing,2026-01-01,test\n\
         acme,+4915123456789,marketing,2026-01-01,test\n\
         acme,+4915199999999,marketing,2026-01-01,test\n\
         acme,+4915155555555,marketing,2026-01-01,test\n",
    );
    ws.cli_ok(&["consent", "import", "--file", path_str(&consents)]);
    ws
}

async fn screen(
    server: &TestServer,
    number: &str,
    at: &str,
) -> (Verdict, Vec<R>, Option<jiff::Timestamp>) {
    let mut gateway = server.gateway().await;
    let request = ScreenNumbersRequest {
        called_number: number.into(),
        campaign_id: "fr-sales".into(),
        at: Some(dialgate::proto::timestamp_to_proto(at.parse().unwrap())),
        r#ref: "x".into(),
    };
    let mut answers = gateway
        .screen_numbers(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.next().await.unwrap().unwrap();
    (
        Verdict::try_from(answer.verdict).unwrap(),
        answer
            .reasons
            .iter()
            .map(|r| R::try_from(r.code).unwrap())
            .collect(),
        answer
            .next_allowed_at
            .map(|t| jiff::Timestamp::new(t.seconds, t.nanos).unwrap()),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn test_statutory_windows_in_the_called_persons_local_time() {
    let ws = timing_workspace();
    let server = ws.start();
    let cases = [
        // France: Mon-Fri 10-13 and 14-20, Paris time.
        (
            "+33 6 12 34 56 78",
            "2026-11-23T12:30:00+01:00",
            Verdict::Allow,
            None,
        ),
        (
            "+33 6 12 34 56 78",
            "2026-11-23T13:30:00+01:00",
            Verdict::Deny,
            Some("2026-11-23T14:00:00+01:00"),
        ),
        (
            "+33 6 12 34 56 78",
            "2026-11-28T12:00:00+01:00",
            Verdict::Deny,
            Some("2026-11-30T10:00:00+01:00"),
        ),
        // Italy: 8 December is a holiday, the 7th a pre-holiday (10-19).
        (
            "+39 333 123 4567",
            "2026-12-07T09:30:00+01:00",
            Verdict::Deny,
            Some("2026-12-07T10:00:00+01:00"),
        ),
        (
            "+39 333 123 4567",
            "2026-12-08T12:00:00+01:00",
            Verdict::Deny,
            Some("2026-12-09T09:00:00+01:00"),
        ),
        // US: New York area code, 08-21 Eastern.
        (
            "+1 212 555 0123",
            "2026-11-23T07:30:00-05:00",
            Verdict::Deny,
            Some("2026-11-23T08:00:00-05:00"),
        ),
        (
            "+1 212 555 0123",
            "2026-11-23T20:30:00-05:00",
            Verdict::Allow,
            None,
        ),
        // ... Los Angeles is three hours behind.
        (
            "+1 213 555 0123",
            "2026-11-23T10:30:00-05:00",
            Verdict::Deny,
            Some("2026-11-23T08:00:00-08:00"),
        ),
        // 364 overlays western Kentucky (270), on Central time: 08:30 in
        // New York is 07:30 there (the zone data alone says Eastern).
        (
            "+1 364 555 0123",
            "2026-11-23T08:30:00-05:00",
            Verdict::Deny,
            Some("2026-11-23T08:00:00-06:00"),
        ),
        (
            "+1 364 555 0123",
            "2026-11-23T20:30:00-05:00",
            Verdict::Allow,
            None,
        ),
    ];
    for (number, at, verdict, next) in cases {
        let (got_verdict, codes, got_next) = screen(&server, number, at).await;
        assert_eq!(got_verdict, verdict, "{number} at {at}: {codes:?}");
        if verdict == Verdict::Deny {
            assert_eq!(codes, vec![R::OutsideCallingHours], "{number} at {at}");
        }
        assert_eq!(
            got_next,
            next.map(|n| n.parse().unwrap()),
            "{number} at {at}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn test_check_call_outside_hours_is_denied_and_logged() {
    let ws = timing_workspace();
    let server = ws.start();
    let mut gateway = server.gateway().await;
    let response = gateway
        .check_call(call("+49 151 23456789", "+4930123456", "de-closed"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(verdict(&response), Verdict::Deny);
    assert_eq!(codes(&response), vec![R::OutsideCallingHours]);
    assert_eq!(response.next_allowed_at, None, "the campaign never opens");
    let (_, body) = server.get("/status");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    let windows = status["campaigns"].as_array().unwrap();
    let closed = windows
        .iter()
        .find(|w| w["campaign"] == "de-closed")
        .unwrap();
    assert_eq!(closed["state"], "closed");
    let capped = windows
        .iter()
        .find(|w| w["campaign"] == "de-capped")
        .unwrap();
    assert_eq!(
        capped["state"], "unrestricted",
        "Germany has no statutory window"
    );
    let fr = windows
        .iter()
        .find(|w| w["campaign"] == "fr-sales" && w["destination"] == "FR")
        .unwrap();
    assert!(fr["state"] == "open" || fr["state"] == "closed");
    assert!(
        fr["closes_at"].is_string() != fr["next_open"].is_string(),
        "{fr}"
    );
    drop(server);
    let logged = export_jsonl(&ws, &[]);
    assert_eq!(logged[0]["reasons"][0]["code"], "OUTSIDE_CALLING_HOURS");
}

#[tokio::test(flavor = "multi_thread")]
async fn test_attempt_cap_counts_allows_once_and_survives_restart() {
    let ws = timing_workspace();
    let server = ws.start();
    let mut gateway = server.gateway().await;
    let number = "+49 151 23456789";
    let mut first = call(number, "+4930123456", "de-capped");
    first.request_id = "a1".into();
    let before = jiff::Timestamp::now();
    let one = gateway
        .check_call(first.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(verdict(&one), Verdict::Allow);
    let repeat = gateway.check_call(first).await.unwrap().into_inner();
    assert_eq!(repeat, one, "an idempotent repeat is one attempt");
    let two = gateway
        .check_call(call(number, "+4930123456", "de-capped"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(verdict(&two), Verdict::Allow);
    let three = gateway
        .check_call(call(number, "+4930123456", "de-capped"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(verdict(&three), Verdict::Deny);
    assert_eq!(codes(&three), vec![R::AttemptLimit]);
    let next = three.next_allowed_at.expect("waiting helps");
    let next = jiff::Timestamp::new(next.seconds, next.nanos).unwrap();
    let expected = before + jiff::SignedDuration::from_hours(24);
    assert!(
        next.duration_since(expected).abs() < jiff::SignedDuration::from_secs(5),
        "{next} vs {expected}"
    );

    let other = gateway
        .check_call(call("+49 151 99999999", "+4930123456", "de-capped"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(verdict(&other), Verdict::Allow, "the cap is per number");

    let (status, _) = server.terminate();
    assert!(status.success());
    let server = ws.start();
    let mut gateway = server.gateway().await;
    let after_restart = gateway
        .check_call(call(number, "+4930123456", "de-capped"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        codes(&after_restart),
        vec![R::AttemptLimit],
        "counters are rebuilt from the log"
    );
}

/// Caps count across the controller's campaigns: the ALLOWs of a campaign
/// without a cap count against a capped campaign of the same controller, at
/// once and not only after a restart rebuilds the counts.
#[tokio::test(flavor = "multi_thread")]
async fn test_uncapped_campaigns_count_against_a_capped_one() {
    let ws = timing_workspace();
    let server = ws.start();
    let mut gateway = server.gateway().await;
    let number = "+49 151 55555555";
    for _ in 0..2 {
        let open = gateway
            .check_call(call(number, "+4930123456", "de-uncapped"))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(verdict(&open), Verdict::Allow, "{:?}", open.reasons);
    }
    let capped = gateway
        .check_call(call(number, "+4930123456", "de-capped"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(codes(&capped), vec![R::AttemptLimit]);
}
