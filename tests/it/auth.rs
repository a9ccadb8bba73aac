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
        "GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
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
