//! Issue 19, provenance of lists: a consent collected by a supplier counts
//! only when its controller declared the supplier (`[[supplier]]`) and the
//! consent falls within the contract; over real gRPC, the CSV import, a
//! restart and a configuration change.

use dialgate::proto::{
    ExportSubjectRequest, Purpose, ReasonCode as R, RecordConsentRequest, Verdict,
};
use tonic::Code;

use crate::support::*;

const DE_CLI: &str = "+4930123456";

const LEADCO: &str = r#"
[[supplier]]
controller = "acme"
name = "leadco"
contract_ref = "contract C-14, signed 2020-01-01, consent chain in DMS 7781"
from = "2020-01-01"
"#;

fn consent(number: &str, supplier: &str) -> RecordConsentRequest {
    RecordConsentRequest {
        controller: "acme".into(),
        number: number.into(),
        purpose: Purpose::Marketing as i32,
        granted_at: Some(dialgate::proto::timestamp_to_proto(
            jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1),
        )),
        source: "lead form".into(),
        evidence_ref: "doi:1".into(),
        default_region: "DE".into(),
        supplier: supplier.into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn test_a_consent_from_an_undeclared_supplier_grants_nothing() {
    let ws = Workspace::new(&standard_config(LEADCO));
    let server = ws.start();
    let mut records = server.records().await;
    let gateway = server.gateway().await;
    let (own, declared, undeclared) = ("+4915123456781", "+4915123456782", "+4915123456783");
    records.record_consent(consent(own, "")).await.unwrap();
    records
        .record_consent(consent(declared, "leadco"))
        .await
        .unwrap();
    records
        .record_consent(consent(undeclared, "shadyco"))
        .await
        .unwrap();
    let bad = records
        .record_consent(consent(own, "lead co!"))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().starts_with("supplier:"), "{}", bad.message());

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
    assert_eq!(verdict(&check(own).await), Verdict::Allow);
    assert_eq!(verdict(&check(declared).await), Verdict::Allow);
    let denied = check(undeclared).await;
    assert_eq!(codes(&denied), vec![R::NoConsent]);
    assert!(
        denied.reasons[0]
            .detail
            .contains("\"shadyco\", which is not a declared supplier of controller acme"),
        "{:?}",
        denied.reasons
    );

    // The CSV import carries the supplier too.
    let csv = ws.file(
        "consents.csv",
        "controller,number,purpose,granted_at,source,supplier\n\
         acme,+4915123456784,marketing,2026-01-05,partner form,leadco\n\
         acme,+4915123456785,marketing,2026-01-05,partner form,shadyco\n",
    );
    ws.cli_ok(&["consent", "import", "--file", path_str(&csv)]);
    // The running server picks the import up within its reload interval.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while verdict(&check("+4915123456784").await) != Verdict::Allow {
        assert!(std::time::Instant::now() < deadline, "import not seen");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(codes(&check("+4915123456785").await), vec![R::NoConsent]);

    // The export says where each consent came from and under which contract.
    let export = records
        .export_subject(ExportSubjectRequest {
            verification: None,
            controller: "acme".into(),
            number: undeclared.into(),
            default_region: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .json;
    let export: serde_json::Value = serde_json::from_str(&export).unwrap();
    assert_eq!(export["consents"][0]["supplier"], "shadyco");
    assert_eq!(export["provenance"][0]["collected_by"], "shadyco");
    assert!(
        export["provenance"][0]["contract"]
            .as_str()
            .unwrap()
            .starts_with("grants nothing"),
        "{export}"
    );
    let export = records
        .export_subject(ExportSubjectRequest {
            verification: None,
            controller: "acme".into(),
            number: declared.into(),
            default_region: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .json;
    let export: serde_json::Value = serde_json::from_str(&export).unwrap();
    assert!(
        export["provenance"][0]["contract"]
            .as_str()
            .unwrap()
            .starts_with("contract C-14"),
        "{export}"
    );

    // After a restart the index is rebuilt from the store: same answers.
    let (status, _) = server.terminate();
    assert!(status.success());
    let server = ws.start();
    let gateway = server.gateway().await;
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
    assert_eq!(verdict(&check(declared).await), Verdict::Allow);
    assert_eq!(codes(&check(undeclared).await), vec![R::NoConsent]);
    let (status, _) = server.terminate();
    assert!(status.success());

    // The contract ends (no longer declared): its consents stop counting.
    std::fs::write(ws.config_path(), standard_config("")).unwrap();
    let server = ws.start();
    let mut gateway = server.gateway().await;
    let ended = gateway
        .check_call(call(declared, DE_CLI, "de-optin"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(codes(&ended), vec![R::NoConsent]);
    assert_eq!(
        verdict(
            &gateway
                .check_call(call(own, DE_CLI, "de-optin"))
                .await
                .unwrap()
                .into_inner()
        ),
        Verdict::Allow,
        "the controller's own consent needs no declaration"
    );
}

#[test]
fn test_supplier_declarations_are_checked_at_load() {
    for (extra, key) in [
        (
            "[[supplier]]\ncontroller = \"ACME\"\nname = \"leadco\"\ncontract_ref = \"C-1\"\n",
            "supplier[0].controller",
        ),
        (
            "[[supplier]]\ncontroller = \"acme\"\nname = \"own\"\ncontract_ref = \"C-1\"\n",
            "supplier[0].name",
        ),
        (
            "[[supplier]]\ncontroller = \"acme\"\nname = \"leadco\"\ncontract_ref = \" \"\n",
            "supplier[0].contract_ref",
        ),
        (
            "[[supplier]]\ncontroller = \"acme\"\nname = \"leadco\"\ncontract_ref = \"C-1\"\nfrom = \"2026-02-01\"\nuntil = \"2026-01-31\"\n",
            "supplier[0].until",
        ),
    ] {
        let ws = Workspace::new(&standard_config(extra));
        let out = ws.cli(&["config", "check"]);
        assert!(!out.status.success(), "{extra}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(key), "{key}: {stderr}");
    }
    let ws = Workspace::new(&standard_config(LEADCO));
    let shown = ws.cli_ok(&["policy", "show", "--campaign", "de-optin"]);
    assert!(shown.contains("leadco (contract C-14"), "{shown}");
}
