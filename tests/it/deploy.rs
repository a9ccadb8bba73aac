//! The deployment files: the systemd unit passes `systemd-analyze verify`
//! (with the unit pointed at the binary under test).

use std::process::Command;

#[test]
fn test_systemd_unit_verifies() {
    let Ok(out) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("skipped: systemd-analyze not installed");
        return;
    };
    assert!(out.status.success());
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/systemd/dialgate.service"
    ))
    .unwrap();
    assert!(unit.contains("ProtectSystem=strict") && unit.contains("NoNewPrivileges=yes"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dialgate.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/dialgate", env!("CARGO_BIN_EXE_dialgate")),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains("dialgate.service"),
        "warnings about the unit: {stderr}"
    );
}
