//! API keys and roles over real gRPC and HTTP.

use dialgate::proto::compliance_gateway_client::ComplianceGatewayClient;
use dialgate::proto::contact_records_client::ContactRecordsClient;
use dialgate::proto::{AddSuppressionRequest, Verdict};
use sha2::{Digest, Sha256};
use tonic::Code;
use tonic::metadata::MetadataValue;

use crate::support::*;

fn key_entry(name: &str, secret: &str, roles: &str) -> String {
    format!(
        "[[api_key]]\nname = \"{name}\"\nsha256 = \"{}\"\nroles = [{roles}]\n",
        hex::encode(Sha256::digest(secret.as_bytes()))
    )
}

fn with_key<T>(message: T, secret: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(secret) = secret {
        request.metadata_mut().insert(
            "authorization",
            MetadataValue::try_from(format!("Bearer {secret}")).unwrap(),
        );
    }
    request
}

fn http_get_with(addr: &str, path: &str, secret: Option<&str>) -> u16 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let auth = secret
        .map(|s| format!("Authorization: Bearer {s}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn test_auth_matrix_grpc_and_http() {
    let keys = [
        key_entry("floor-1", "dialer-secret", "\"dialer\""),
        key_entry("crm-1", "crm-secret", "\"crm\""),
        key_entry("sup-1", "sup-secret", "\"supervisor\""),
        key_entry("ops", "admin-secret", "\"admin\""),
    ]
    .join("\n");
    let ws = Workspace::new(&standard_config(&keys));
    ws.import("it-rpo", &["+39 333 123 4567"], &["--controller", "acme"]);
    let server = ws.start();
    let channel = server.channel().await;
    let mut gateway = ComplianceGatewayClient::new(channel.clone());
    let mut records = ContactRecordsClient::new(channel.clone());
    let check = || call("+39 333 123 4567", "+390212345678", "it-sales");

    let cases: [(Option<&str>, Result<(), Code>); 5] = [
        (None, Err(Code::Unauthenticated)),
        (Some("wrong"), Err(Code::Unauthenticated)),
        (Some("crm-secret"), Err(Code::PermissionDenied)),
        (Some("dialer-secret"), Ok(())),
        (Some("admin-secret"), Ok(())),
    ];
    for (secret, expected) in cases {
        let got = gateway
            .check_call(with_key(check(), secret))
            .await
            .map(|r| {
                assert_eq!(verdict(r.get_ref()), Verdict::Allow);
            });
        assert_eq!(
            got.map_err(|s| s.code()),
            expected,
            "CheckCall with {secret:?}"
        );
    }
    let suppression = || AddSuppressionRequest {
        number: "+39 333 000 1111".into(),
        reason: "test".into(),
        ..Default::default()
    };
    for (secret, expected) in [
        (None, Err(Code::Unauthenticated)),
        (Some("dialer-secret"), Err(Code::PermissionDenied)),
        (Some("crm-secret"), Ok(())),
    ] {
        let got = records
            .add_suppression(with_key(suppression(), secret))
            .await
            .map(|_| ());
        assert_eq!(
            got.map_err(|s| s.code()),
            expected,
            "AddSuppression with {secret:?}"
        );
    }
    // Health stays open for probes.
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    assert!(
        health
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new()
            })
            .await
            .is_ok()
    );

    for (path, secret, expected) in [
        ("/status", None, 401),
        ("/status", Some("wrong"), 401),
        ("/status", Some("dialer-secret"), 403),
        ("/status", Some("sup-secret"), 200),
        ("/metrics", Some("admin-secret"), 200),
        ("/", Some("sup-secret"), 200),
        ("/livez", None, 200),
        ("/readyz", None, 200),
    ] {
        assert_eq!(
            http_get_with(&server.http, path, secret),
            expected,
            "{path} with {secret:?}"
        );
    }
    drop(server);

    let logged = export_jsonl(&ws, &[]);
    let names: Vec<&str> = logged
        .iter()
        .map(|d| d["api_key"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec!["floor-1", "ops"],
        "the key's name is in the decision log"
    );
    let trail = ws.cli_ok(&["trail", "export"]);
    assert!(trail.contains("\"actor\":\"api:crm-1\""), "{trail}");
}

/// A request id answers one request of one API key. Reused with another
/// number, another campaign or an anonymous caller ID, it is refused and
/// the original stands: answering it would hand out another call's ALLOW.
/// Another key's same id is another request, decided on its own: never
/// answered with the first key's decision, nor refused (found by review: a
/// key scoped to one brand could spend another brand's predictable ids,
/// whose calls were then refused).
#[tokio::test(flavor = "multi_thread")]
async fn test_request_id_is_bound_to_the_request_and_the_key() {
    let keys = format!(
        "{}{}",
        key_entry("floor-1", "secret-one", "\"dialer\""),
        key_entry("floor-2", "secret-two", "\"dialer\"")
    );
    let ws = Workspace::new(&standard_config(&keys));
    ws.import("it-rpo", &["+39 333 123 4567"], &["--controller", "acme"]);
    ws.import("us-dnc", &["212 555 0199"], &[]);
    let server = ws.start();
    let mut gateway = ComplianceGatewayClient::new(server.channel().await);
    let mut original = call("+39 333 123 4567", "+390212345678", "it-sales");
    original.request_id = "r-1".into();
    let first = gateway
        .check_call(with_key(original.clone(), Some("secret-one")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(verdict(&first), Verdict::Allow, "{:?}", first.reasons);
    let repeat = gateway
        .check_call(with_key(original.clone(), Some("secret-one")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(repeat, first, "a true repeat gets the original answer");
    let reuses = [
        (
            "never-cleared number",
            call("+39 333 999 9999", "+390212345678", "it-sales"),
        ),
        ("garbage number", call("hello", "+390212345678", "it-sales")),
        (
            "DNC-listed number",
            call("+1 212 555 0199", "+12125550100", "us-sales"),
        ),
        (
            "another campaign",
            call("+39 333 123 4567", "+390212345678", "it-beta"),
        ),
        (
            "anonymous caller ID",
            call("+39 333 123 4567", "anonymous", "it-sales"),
        ),
    ];
    for (what, mut reuse) in reuses {
        reuse.request_id = "r-1".into();
        let status = gateway
            .check_call(with_key(reuse, Some("secret-one")))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::AlreadyExists, "{what}: {status:?}");
        assert!(
            status.message().contains("r-1"),
            "{what}: {}",
            status.message()
        );
    }
    let other = gateway
        .check_call(with_key(original.clone(), Some("secret-two")))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(other.decision_id, first.decision_id, "decided on its own");
    let other_again = gateway
        .check_call(with_key(original.clone(), Some("secret-two")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        other_again, other,
        "the second key's repeat: its own answer"
    );
    drop(server);
    let logged = export_jsonl(&ws, &[]);
    assert_eq!(
        logged.len(),
        2,
        "each key's decision logged once: {logged:?}"
    );
    // After a restart, each key's id still answers with its own decision.
    let server = ws.start();
    let mut gateway = ComplianceGatewayClient::new(server.channel().await);
    for (secret, decided) in [("secret-one", &first), ("secret-two", &other)] {
        let again = gateway
            .check_call(with_key(original.clone(), Some(secret)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(again.decision_id, decided.decision_id, "{secret}");
    }
}

/// Each field is bounded and named when too long: a megabyte field must not
/// be logged and echoed.
#[tokio::test(flavor = "multi_thread")]
async fn test_check_call_fields_are_bounded() {
    let ws = Workspace::new(&standard_config(""));
    let server = ws.start();
    let mut gateway = server.gateway().await;
    let long = "9".repeat(65);
    let cases = [
        ("called_number", call(&long, "+390212345678", "it-sales")),
        ("caller_id", call("+39 333 123 4567", &long, "it-sales")),
        (
            "campaign_id",
            call("+39 333 123 4567", "+390212345678", &"c".repeat(129)),
        ),
    ];
    for (field, request) in cases {
        let status = gateway.check_call(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{field}");
        assert!(status.message().starts_with(field), "{}", status.message());
        assert!(status.message().len() < 200, "no echo of the value");
    }
    let mut long_id = call("+39 333 123 4567", "+390212345678", "it-sales");
    long_id.request_id = "x".repeat(257);
    let status = gateway.check_call(long_id).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    // Unknown campaigns are counted under one label, never their own series.
    for i in 0..20 {
        let _ = gateway
            .check_call(call(
                "+39 333 123 4567",
                "+390212345678",
                &format!("nope-{i}"),
            ))
            .await
            .unwrap();
    }
    let (_, metrics) = server.get("/metrics");
    assert!(!metrics.contains("nope-"), "client strings are not labels");
    assert!(metrics.contains("(unknown)"));
    drop(server);
    assert_eq!(
        export_jsonl(&ws, &[]).len(),
        20,
        "refused requests are not decisions"
    );
}

/// A repeat of an ALLOW is answered only within `log.allow_replay_seconds`,
/// not for the whole idempotency window: the window, opt-outs and caps may
/// have changed since.
#[tokio::test(flavor = "multi_thread")]
async fn test_an_old_allow_is_not_replayed() {
    let config = standard_config("").replace(
        "shutdown_grace_ms = 5000",
        "shutdown_grace_ms = 5000\n\n[log]\nallow_replay_seconds = 1",
    );
    let ws = Workspace::new(&config);
    ws.import("it-rpo", &["+39 333 123 4567"], &["--controller", "acme"]);
    let server = ws.start();
    let mut gateway = server.gateway().await;
    let mut request = call("+39 333 123 4567", "+390212345678", "it-sales");
    request.request_id = "retry-me".into();
    let first = gateway
        .check_call(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(verdict(&first), Verdict::Allow);
    let soon = gateway
        .check_call(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(soon, first, "a prompt retry gets the original");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let late = gateway.check_call(request).await.unwrap_err();
    assert_eq!(late.code(), Code::AlreadyExists);
    assert!(
        late.message().contains("too old to dial on"),
        "{}",
        late.message()
    );
}

/// A repeat of an ALLOW, within `log.allow_replay_seconds`, of a call the
/// rules deny now (here an opt-out recorded in between; the calling window
/// closing in between is the same) is refused, not answered ALLOW again:
/// the dialer retrying its check would place a call the person refused.
#[tokio::test(flavor = "multi_thread")]
async fn test_an_allow_denied_since_is_not_replayed() {
    let ws = Workspace::new(&standard_config(""));
    ws.import("it-rpo", &["+39 333 123 4567"], &["--controller", "acme"]);
    let server = ws.start();
    let mut gateway = server.gateway().await;
    let mut request = call("+39 333 123 4567", "+390212345678", "it-sales");
    request.request_id = "retry-me".into();
    let first = gateway
        .check_call(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(verdict(&first), Verdict::Allow);
    let again = gateway
        .check_call(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, first, "a prompt retry gets the original");
    server
        .records()
        .await
        .add_suppression(AddSuppressionRequest {
            controller: "acme".into(),
            number: "+39 333 123 4567".into(),
            reason: "asked not to be called".into(),
            source: "call".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let refused = gateway.check_call(request).await.unwrap_err();
    assert_eq!(refused.code(), Code::AlreadyExists);
    assert!(
        refused.message().contains("denied now (SUPPRESSED)"),
        "{}",
        refused.message()
    );
}

/// A CRM key with `controllers` writes and reads only those controllers'
/// records. Without it, beta's CRM key recorded a consent in acme's name,
/// and acme's opt-in campaign dialled on it (found by review). A key
/// without `controllers` still speaks for every controller; an opt-out for
/// every controller (which only denies) is taken from a scoped key too.
#[tokio::test(flavor = "multi_thread")]
async fn test_a_crm_key_with_controllers_speaks_only_for_them() {
    use dialgate::proto::{EraseSubjectRequest, Purpose, RecordConsentRequest};
    let keys = [
        key_entry("floor-1", "dialer-secret", "\"dialer\""),
        key_entry("beta-crm", "beta-crm-secret", "\"crm\"") + "controllers = [\"beta\"]\n",
        key_entry("group-crm", "group-crm-secret", "\"crm\""),
    ]
    .join("\n");
    let ws = Workspace::new(&standard_config(&keys));
    let server = ws.start();
    let channel = server.channel().await;
    let mut records = ContactRecordsClient::new(channel.clone());
    let mut gateway = ComplianceGatewayClient::new(channel);
    let number = "+4915123457012";
    let consent = |controller: &str| RecordConsentRequest {
        controller: controller.into(),
        number: number.into(),
        purpose: Purpose::Marketing as i32,
        granted_at: Some(dialgate::proto::timestamp_to_proto(
            jiff::Timestamp::now() - jiff::SignedDuration::from_mins(1),
        )),
        source: "web form v3".into(),
        evidence_ref: "doi:123".into(),
        default_region: "DE".into(),
        ..Default::default()
    };
    let refused = records
        .record_consent(with_key(consent("acme"), Some("beta-crm-secret")))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains("\"acme\"") && refused.message().contains("beta-crm"),
        "{refused:?}"
    );
    let decided = gateway
        .check_call(with_key(
            call(number, "+4930123456", "de-optin"),
            Some("dialer-secret"),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(verdict(&decided), Verdict::Deny, "{decided:?}");
    // Its own controller's records, and erasing "every controller" refused.
    records
        .record_consent(with_key(consent("beta"), Some("beta-crm-secret")))
        .await
        .unwrap();
    let every = records
        .erase_subject(with_key(
            EraseSubjectRequest {
                controller: String::new(),
                number: number.into(),
                default_region: "DE".into(),
                ..Default::default()
            },
            Some("beta-crm-secret"),
        ))
        .await
        .unwrap_err();
    assert_eq!(every.code(), Code::PermissionDenied, "{every:?}");
    records
        .add_suppression(with_key(
            AddSuppressionRequest {
                number: number.into(),
                default_region: "DE".into(),
                ..Default::default()
            },
            Some("beta-crm-secret"),
        ))
        .await
        .unwrap();
    // A key without `controllers` speaks for every one, as before.
    records
        .record_consent(with_key(consent("acme"), Some("group-crm-secret")))
        .await
        .unwrap();
}

/// One controller's export shows an opt-out recorded for every controller
/// (it binds that controller too) but not its free text, source or the key
/// that wrote it, whoever wrote it: acme's CRM note about the person
/// reached beta's export (found by review). The export for every
/// controller shows them.
#[tokio::test(flavor = "multi_thread")]
async fn test_a_controllers_export_withholds_what_another_wrote_for_every_controller() {
    use dialgate::proto::ExportSubjectRequest;
    let keys = [
        key_entry("acme-crm", "acme-crm-secret", "\"crm\"") + "controllers = [\"acme\"]\n",
        key_entry("beta-crm", "beta-crm-secret", "\"crm\"") + "controllers = [\"beta\"]\n",
        key_entry("group-crm", "group-crm-secret", "\"crm\""),
    ]
    .join("\n");
    let ws = Workspace::new(&standard_config(&keys));
    let server = ws.start();
    let mut records = ContactRecordsClient::new(server.channel().await);
    let number = "+4915123457013";
    records
        .add_suppression(with_key(
            AddSuppressionRequest {
                number: number.into(),
                default_region: "DE".into(),
                reason: "Mario Rossi, acme customer 4711, complained on 2 May".into(),
                source: "acme call centre".into(),
                ..Default::default()
            },
            Some("acme-crm-secret"),
        ))
        .await
        .unwrap();
    let export = |controller: &str| ExportSubjectRequest {
        verification: None,
        controller: controller.into(),
        number: number.into(),
        default_region: "DE".into(),
    };
    let json = records
        .export_subject(with_key(export("beta"), Some("beta-crm-secret")))
        .await
        .unwrap()
        .into_inner()
        .json;
    let shown: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(shown["held"]["opt_outs"], 1, "{json}");
    for secret in ["Mario", "acme"] {
        assert!(!json.contains(secret), "{secret} in beta's export: {json}");
    }
    // The export for every controller (a key for every one) shows it.
    let json = records
        .export_subject(with_key(export(""), Some("group-crm-secret")))
        .await
        .unwrap()
        .into_inner()
        .json;
    assert!(json.contains("Mario Rossi"), "{json}");
}

/// A key's `controllers` must name configured controllers, exactly; an
/// empty list and a key the list would not limit are refused at start.
#[test]
fn test_key_controllers_are_checked_at_start() {
    let base = key_entry("beta-crm", "beta-crm-secret", "\"crm\"");
    for (extra, expected) in [
        (
            "controllers = [\"Beta\"]\n",
            "not the controller of any configured campaign",
        ),
        ("controllers = []\n", "a key for no controller"),
    ] {
        let ws = Workspace::new(&standard_config(&(base.clone() + extra)));
        let err = ws.serve_refused();
        assert!(
            err.contains("api_key[0].controllers") && err.contains(expected),
            "{err}"
        );
    }
    let supervisor =
        key_entry("wall", "sup-secret", "\"supervisor\"") + "controllers = [\"acme\"]\n";
    let err = Workspace::new(&standard_config(&supervisor)).serve_refused();
    assert!(err.contains("needs the dialer, crm or admin role"), "{err}");
}

/// A dialer key with `controllers` checks and screens only their
/// campaigns: without it, one brand's dialer got ALLOWs on another brand's
/// campaign, and so on that brand's consents and registry clearances.
/// Refused with PERMISSION_DENIED (HTTP 403, a screened line's error),
/// nothing decided or logged.
#[tokio::test(flavor = "multi_thread")]
async fn test_a_dialer_key_with_controllers_checks_only_their_campaigns() {
    use std::io::{Read, Write};
    let secret = "beta-dialer-secret";
    let keys = key_entry("beta-floor", secret, "\"dialer\"") + "controllers = [\"beta\"]\n";
    let ws = Workspace::new(&standard_config(&keys));
    ws.import("it-rpo", &["+39 333 123 4567"], &["--controller", "acme"]);
    let server = ws.start();
    let mut gateway = ComplianceGatewayClient::new(server.channel().await);
    let refused = gateway
        .check_call(with_key(
            call("+39 333 123 4567", "+390212345678", "it-sales"),
            Some(secret),
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains("\"acme\"") && refused.message().contains("beta-floor"),
        "{refused:?}"
    );
    gateway
        .check_call(with_key(
            call("+39 333 123 4567", "+390212345678", "it-beta"),
            Some(secret),
        ))
        .await
        .expect("its own controller's campaign is decided");
    let screened = gateway
        .screen_numbers(with_key(
            tokio_stream::iter(vec![dialgate::proto::ScreenNumbersRequest {
                called_number: "+39 333 123 4567".into(),
                campaign_id: "it-sales".into(),
                at: None,
                r#ref: "a".into(),
            }]),
            Some(secret),
        ))
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap_err();
    assert_eq!(screened.code(), Code::PermissionDenied, "{screened:?}");
    assert_eq!(
        http_get_with(
            &server.http,
            "/v1/check?called_number=%2B393331234567&caller_id=%2B390212345678&campaign_id=it-sales",
            Some(secret),
        ),
        403
    );
    let body = r#"{"called_number":"+393331234567","campaign_id":"it-sales","ref":"b"}"#;
    let mut stream = std::net::TcpStream::connect(&server.http).unwrap();
    write!(
        stream,
        "POST /v1/screen HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {secret}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(
        answer.contains("\"error\"") && answer.contains("beta-floor") && !answer.contains("ALLOW"),
        "{answer}"
    );
    let (status, _) = server.terminate();
    assert!(status.success());
    let logged = export_jsonl(&ws, &[]);
    assert_eq!(logged.len(), 1, "only it-beta's check: {logged:?}");
    assert_eq!(logged[0]["campaign_id"], "it-beta");
}
