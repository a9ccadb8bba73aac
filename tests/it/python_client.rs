//! The Python client example (`examples/python/check_call.py`), with stubs
//! generated from the proto by grpcio-tools, against the real server.

use std::process::Command;

use crate::support::*;

fn python_grpc_present() -> bool {
    let found = Command::new("python3")
        .args(["-c", "import grpc, grpc_tools"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("DIALGATE_REQUIRE_PYTHON").is_none(),
            "python3 with grpcio and grpcio-tools missing, but the Python client test is required"
        );
        eprintln!("skipped: pip install grpcio grpcio-tools");
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn test_python_client_example_decides() {
    if !python_grpc_present() {
        return;
    }
    let ws = Workspace::new(&standard_config(""));
    ws.import("it-rpo", &["+39 333 123 4567"], &["--controller", "acme"]);
    let server = ws.start();
    let stubs = ws.data_dir().join("python");
    std::fs::create_dir_all(&stubs).unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let generated = Command::new("python3")
        .args(["-m", "grpc_tools.protoc", "-I"])
        .arg(format!("{root}/proto"))
        .arg(format!("--python_out={}", stubs.display()))
        .arg(format!("--grpc_python_out={}", stubs.display()))
        .arg(format!("{root}/proto/dialgate/v1/dialgate.proto"))
        .output()
        .unwrap();
    assert!(
        generated.status.success(),
        "{}",
        String::from_utf8_lossy(&generated.stderr)
    );
    let address = server.grpc.trim_start_matches("http://").to_string();
    let run = |number: &str| {
        Command::new("python3")
            .arg(format!("{root}/examples/python/check_call.py"))
            .args([address.as_str(), "it-sales", number, "+390212345678"])
            .env("PYTHONPATH", &stubs)
            .output()
            .unwrap()
    };
    let allowed = run("+39 333 123 4567");
    let stdout = String::from_utf8_lossy(&allowed.stdout);
    assert_eq!(
        allowed.status.code(),
        Some(0),
        "{stdout} {}",
        String::from_utf8_lossy(&allowed.stderr)
    );
    assert!(stdout.starts_with("ALLOW REGISTRY_CLEAR "), "{stdout}");
    let denied = run("+39 333 000 0000");
    assert_eq!(denied.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&denied.stdout).starts_with("DENY REGISTRY_NOT_COVERED"));
    drop(server);
    assert_eq!(export_jsonl(&ws, &[]).len(), 2, "both decisions logged");
}
