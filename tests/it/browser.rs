//! The supervisor page in a real headless browser (Debian's chromium,
//! installed by `.ci/run`). Skipped with a notice when no browser is
//! installed, unless `DIALGATE_REQUIRE_BROWSER` is set (as in CI).

use std::process::Command;

use crate::support::*;

fn chromium() -> Option<&'static str> {
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .into_iter()
    .find(|path| std::path::Path::new(path).exists())
}

/// Loads the page, lets its script fetch `/status`, and returns the DOM.
fn rendered_dom(browser: &str, url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=3000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn test_supervisor_page_renders_live_data_in_a_browser() {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var_os("DIALGATE_REQUIRE_BROWSER").is_none(),
            "no chromium, but a browser test is required"
        );
        eprintln!("skipped: no chromium installed (apt-get install chromium)");
        return;
    };
    let ws = Workspace::new(&standard_config(""));
    ws.import("it-rpo", &["+39 333 123 4567"], &["--controller", "acme"]);
    ws.import(
        "us-dnc",
        &["212 555 0199"],
        &["--checked-at", &days_ago(40)],
    );
    let server = ws.start();
    let mut gateway = server.gateway().await;
    gateway
        .check_call(call("+39 333 000 0000", "+390212345678", "it-sales"))
        .await
        .unwrap();
    let url = format!("http://{}/", server.http);

    let dom = rendered_dom(browser, &url);
    assert!(
        dom.contains("<td>it-rpo</td>"),
        "registries rendered: {dom}"
    );
    assert!(
        dom.contains("<td>us-dnc</td>") && dom.contains("class=\"stale\""),
        "stale registry highlighted: {dom}"
    );
    assert!(dom.contains("<b>1</b>decisions"), "live counters: {dom}");
    assert!(
        dom.contains("+39333****000"),
        "recent denial, masked: {dom}"
    );
    assert!(!dom.contains("3330000000"), "no full number on the page");
    assert!(dom.contains(">ready<"), "{dom}");
    // The law in force: the policy version and the statutes' overrides.
    assert!(
        dom.contains("destination.IT.calling_hours"),
        "overrides shown: {dom}"
    );
    assert!(dom.contains("policy "), "{dom}");

    for _ in 0..2 {
        gateway
            .check_call(call("+39 333 123 4567", "+390212345678", "it-sales"))
            .await
            .unwrap();
    }
    let dom = rendered_dom(browser, &url);
    assert!(
        dom.contains("<b>3</b>decisions"),
        "the page shows new decisions: {dom}"
    );
}
