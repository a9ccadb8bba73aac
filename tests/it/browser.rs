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
        dom.contains("+39********00"),
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
    // Right after the decision, not only from the second poll on.
    assert!(
        dom.contains("<b>1</b>decisions/min"),
        "decisions/min: {dom}"
    );
    assert_charts_match_status(&dom, &server);

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
    assert!(
        dom.contains("<b>3</b>decisions/min"),
        "decisions/min: {dom}"
    );
    // The two allows rest on REGISTRY_CLEAR: not a deny reason.
    let reasons = element(&dom, "id=\"reasons\"", "</table>");
    assert!(
        reasons.contains("<td>REGISTRY_NOT_COVERED</td><td>1</td>"),
        "deny reasons: {reasons}"
    );
    assert!(
        !reasons.contains("REGISTRY_CLEAR"),
        "an allow basis among the deny reasons: {reasons}"
    );
    assert_charts_match_status(&dom, &server);
}

/// The part of `dom` from `start` to the next `end`.
fn element<'a>(dom: &'a str, start: &str, end: &str) -> &'a str {
    let from = dom
        .find(start)
        .unwrap_or_else(|| panic!("no {start} in {dom}"));
    let rest = &dom[from..];
    &rest[..rest.find(end).map_or(rest.len(), |to| to + end.len())]
}

/// The inline SVG charts are drawn, and their numbers are those of `/status`.
fn assert_charts_match_status(dom: &str, server: &TestServer) {
    let (code, body) = server.get("/status");
    assert_eq!(code, 200);
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    let minutes = status["history"]["minutes"].as_array().unwrap();
    assert_eq!(minutes.len(), 60, "an hour of minutes");
    let sum = |key: &str| -> u64 { minutes.iter().map(|m| m[key].as_u64().unwrap()).sum() };
    let hour = sum("allow") + sum("deny") + sum("unavailable");
    assert_eq!(hour, status["decisions"]["total"].as_u64().unwrap());
    let denied: u64 = minutes
        .iter()
        .flat_map(|m| m["deny_by_reason"].as_object().unwrap().values())
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(
        status["decisions"]["last_minute"], status["decisions"]["total"],
        "every decision of the test is within the last minute"
    );

    let verdicts = element(dom, "<svg id=\"chart-verdicts\"", "</svg>");
    assert!(verdicts.contains("<rect"), "bars drawn: {verdicts}");
    assert!(
        dom.contains(&format!("({hour} in the last hour)")),
        "the verdicts chart counts {hour} decisions: {dom}"
    );
    let reasons = element(dom, "<svg id=\"chart-reasons\"", "</svg>");
    assert!(reasons.contains("REGISTRY_NOT_COVERED"), "{reasons}");
    assert!(!reasons.contains("REGISTRY_CLEAR"), "{reasons}");
    assert!(
        dom.contains(&format!("({denied} deny reasons in the last hour)")),
        "{dom}"
    );
    let latency = element(dom, "<svg id=\"chart-latency\"", "</svg>");
    assert!(latency.contains("<circle"), "latency points: {latency}");
    let registries = element(dom, "<svg id=\"chart-registries\"", "</svg>");
    assert!(
        registries.contains("data-registry=\"it-rpo\"")
            && registries.contains("<text x=\"")
            && registries.contains("STALE"),
        "days left against validity, us-dnc stale: {registries}"
    );
    let rpo_days = status["registries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "it-rpo")
        .map(|r| {
            (
                r["days_left"].as_i64().unwrap(),
                r["valid_days"].as_u64().unwrap(),
            )
        })
        .unwrap();
    assert!(
        registries.contains(&format!("{} / {} days left", rpo_days.0, rpo_days.1)),
        "{rpo_days:?} in {registries}"
    );
}
