//! `dialgate registry import` / `list` and hot swap in a running server.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dialgate::proto::{ReasonCode as R, Verdict};

use crate::support::*;

const IT_CLI: &str = "+390212345678";

fn list_json(ws: &Workspace) -> Vec<serde_json::Value> {
    serde_json::from_str(&ws.cli_ok(&["registry", "list", "--json"])).unwrap()
}

fn registry<'a>(list: &'a [serde_json::Value], id: &str) -> &'a serde_json::Value {
    list.iter().find(|r| r["id"] == id).unwrap()
}

#[test]
fn test_import_summary_and_list() {
    let ws = Workspace::new(&standard_config(""));
    let out = ws.import(
        "it-rpo",
        &[
            "+39 333 123 4567",
            "0039 333 1234567",
            "# comment",
            "",
            "02 8765 4321",
        ],
        &["--controller", "acme"],
    );
    assert!(
        out.contains("5 lines, 2 distinct numbers, 0 removals, 1 duplicates, 0 rejected"),
        "{out}"
    );
    assert!(out.contains("version 1"), "{out}");
    let list = list_json(&ws);
    let rpo = registry(&list, "it-rpo");
    assert_eq!(rpo["numbers"], 2);
    assert_eq!(rpo["version"], 1);
    assert_eq!(rpo["stale"], false);
    assert_eq!(rpo["kind"], "allowlist");
    assert_eq!(rpo["days_left"], 14);
    let tps = registry(&list, "uk-tps");
    assert_eq!(tps["loaded"], false);
    assert_eq!(tps["stale"], true);

    let old = ws.import(
        "us-dnc",
        &["212 555 0199"],
        &["--checked-at", &days_ago(31)],
    );
    assert!(old.contains("version 1"), "{old}");
    let list = list_json(&ws);
    assert_eq!(registry(&list, "us-dnc")["stale"], true);
    let table = ws.cli_ok(&["registry", "list"]);
    assert!(
        table.contains("us-dnc") && table.contains("STALE"),
        "{table}"
    );
    assert!(table.contains("UNAVAILABLE"), "{table}");
}

#[test]
fn test_bad_lines_fail_the_import_and_change_nothing() {
    let ws = Workspace::new(&standard_config(""));
    ws.import("it-rpo", &["+39 333 123 4567"], &["--controller", "acme"]);
    let bad = ws.file(
        "bad.txt",
        "+39 333 123 4568\nnot-a-number\n+1 212 555 0123\n\n12\n",
    );
    let out = ws.cli(&[
        "registry",
        "import",
        "--registry",
        "it-rpo",
        "--controller",
        "acme",
        "--file",
        path_str(&bad),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "one-line error: {stderr}");
    assert!(stderr.contains("3 bad line(s)"), "{stderr}");
    assert!(
        stderr.contains("line 2:") && stderr.contains("line 3:") && stderr.contains("line 5:"),
        "{stderr}"
    );
    assert!(stderr.contains("not IT"), "{stderr}");
    let list = list_json(&ws);
    assert_eq!(registry(&list, "it-rpo")["version"], 1);
    assert_eq!(registry(&list, "it-rpo")["numbers"], 1);
}

#[test]
fn test_import_argument_errors_are_named() {
    let ws = Workspace::new(&standard_config(""));
    let file = ws.file("n.txt", "+39 333 123 4567\n");
    let us_file = ws.file("us.txt", "212 555 0199\n");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--registry", "nope"], "--registry \"nope\""),
        (vec!["--registry", "it-rpo"], "--controller"),
        (
            vec![
                "--registry",
                "it-rpo",
                "--controller",
                "acme",
                "--format",
                "xml",
            ],
            "--format \"xml\"",
        ),
        (
            vec![
                "--registry",
                "it-rpo",
                "--controller",
                "acme",
                "--checked-at",
                "2999-01-01",
            ],
            "in the future",
        ),
        (vec!["--registry", "us-dnc", "--covers", "1212"], "--covers"),
        // Coverage is stated, never assumed to be the whole country.
        (vec!["--registry", "us-dnc"], "--covers +1"),
        // Clearances (and opposed answers) for a controller no campaign
        // calls for would bind nothing.
        (
            vec!["--registry", "it-rpo", "--controller", "Acme"],
            "not the controller of any configured campaign",
        ),
        (
            vec!["--registry", "us-dnc", "--mode", "add"],
            "--mode replace",
        ),
        (
            vec!["--registry", "us-dnc", "--controller", "acme"],
            "controller",
        ),
    ];
    for (args, expected) in cases {
        let input = if args.contains(&"us-dnc") {
            &us_file
        } else {
            &file
        };
        let mut full = vec!["registry", "import", "--file", path_str(input)];
        full.extend(args.iter());
        let out = ws.cli(&full);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    let out = ws.cli(&[
        "registry",
        "import",
        "--registry",
        "it-rpo",
        "--controller",
        "acme",
        "--file",
        path_str(&file),
        "--dry-run",
    ]);
    assert!(out.status.success());
    assert_eq!(
        registry(&list_json(&ws), "it-rpo")["loaded"],
        false,
        "dry run writes nothing"
    );
}

#[test]
fn test_corrupt_snapshot_is_refused_and_reported() {
    let ws = Workspace::new(&standard_config(""));
    ws.import("us-dnc", &["212 555 0199"], &[]);
    let path = ws.data_dir().join("registries").join("us-dnc.snap");
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let list = list_json(&ws);
    let dnc = registry(&list, "us-dnc");
    assert_eq!(dnc["loaded"], false);
    assert!(
        dnc["error"].as_str().unwrap().contains("is corrupt"),
        "{dnc}"
    );
    let out = ws.cli(&[
        "registry",
        "import",
        "--registry",
        "us-dnc",
        "--mode",
        "add",
        "--file",
        path_str(&ws.file("a.txt", "212 555 0198\n")),
    ]);
    assert!(
        !out.status.success(),
        "an import never builds on a corrupt snapshot"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn test_corrupt_snapshot_at_start_fails_closed() {
    let ws = Workspace::new(&standard_config(""));
    ws.import("us-dnc", &["212 555 0199"], &[]);
    let path = ws.data_dir().join("registries").join("us-dnc.snap");
    std::fs::write(&path, b"DGSNAP\x00\x01garbage").unwrap();
    let server = ws.start();
    let mut gateway = server.gateway().await;
    let response = gateway
        .check_call(call("212 555 0198", "+12125550100", "us-sales"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(verdict(&response), Verdict::Deny);
    assert_eq!(codes(&response), vec![R::RegistryUnavailable]);
}

/// Checks +39 333 222 3333 until the expected verdict, for at most 5 s.
async fn wait_for_verdict(
    gateway: &mut dialgate::proto::compliance_gateway_client::ComplianceGatewayClient<
        tonic::transport::Channel,
    >,
    expected: Verdict,
    what: &str,
) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = gateway
            .check_call(call("+39 333 222 3333", IT_CLI, "it-sales"))
            .await
            .unwrap()
            .into_inner();
        if verdict(&now) == expected {
            return;
        }
        assert!(Instant::now() < deadline, "{what} not served within 5 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn test_hot_swap_under_load_without_a_failed_check() {
    let ws = Workspace::new(&standard_config(""));
    ws.import("it-rpo", &["+39 333 123 4567"], &["--controller", "acme"]);
    let server = ws.start();
    let channel = server.channel().await;

    // Load: checks of a number that stays cleared in every edition.
    let stop = Arc::new(AtomicBool::new(false));
    let checks = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let mut client = dialgate::proto::compliance_gateway_client::ComplianceGatewayClient::new(
            channel.clone(),
        );
        let stop = Arc::clone(&stop);
        let checks = Arc::clone(&checks);
        workers.push(tokio::spawn(async move {
            let mut wrong = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match client
                    .check_call(call("+39 333 123 4567", IT_CLI, "it-sales"))
                    .await
                {
                    Ok(r) if verdict(r.get_ref()) == Verdict::Allow => {}
                    other => wrong.push(format!("{other:?}")),
                }
                checks.fetch_add(1, Ordering::Relaxed);
            }
            wrong
        }));
    }

    let mut gateway = server.gateway().await;
    let before = gateway
        .check_call(call("+39 333 222 3333", IT_CLI, "it-sales"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(codes(&before), vec![R::RegistryNotCovered]);
    for edition in 0..3 {
        let submitted = ws.file("submitted.txt", "+39 333 222 3333\n");
        ws.import(
            "it-rpo",
            &["+39 333 222 3333"],
            &[
                "--controller",
                "acme",
                "--mode",
                "add",
                "--submitted",
                path_str(&submitted),
            ],
        );
        wait_for_verdict(&mut gateway, Verdict::Allow, &format!("edition {edition}")).await;
        // Half of acme's list (two numbers to one).
        ws.import(
            "it-rpo",
            &["+39 333 222 3333"],
            // Half of acme's clearances withdrawn: no --allow-shrink for
            // an allow-list's remove (the safe direction).
            &["--controller", "acme", "--mode", "remove"],
        );
        wait_for_verdict(&mut gateway, Verdict::Deny, &format!("removal {edition}")).await;
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let wrong = worker.await.unwrap();
        assert!(
            wrong.is_empty(),
            "{} failed or wrong checks during swaps: {:?}",
            wrong.len(),
            &wrong[..wrong.len().min(3)]
        );
    }
    assert!(checks.load(Ordering::Relaxed) > 0);

    drop(server);
    let versions: Vec<String> = export_jsonl(&ws, &["--number", "+393332223333"])
        .iter()
        .flat_map(|d| d["data_versions"].as_array().unwrap().clone())
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert!(versions.iter().any(|v| v == "it-rpo@1"), "{versions:?}");
    assert!(versions.iter().any(|v| v == "it-rpo@7"), "{versions:?}");
}

#[test]
fn test_real_formats_gzip_zip_and_change_lists() {
    use std::io::Write;
    let ws = Workspace::new(&standard_config(""));
    // FTC full list, gzip-compressed, detected.
    let gz_path = ws.dir.path().join("ftc.txt.gz");
    {
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&gz_path).unwrap(),
            flate2::Compression::fast(),
        );
        gz.write_all(b"212,5550199\n212,5550198\n646,5550142\n")
            .unwrap();
        gz.finish().unwrap();
    }
    let out = ws.cli_ok(&[
        "registry",
        "import",
        "--registry",
        "us-dnc",
        "--covers",
        "+1",
        "--allow-narrow-file",
        "--file",
        path_str(&gz_path),
    ]);
    assert!(
        out.contains("(ftc)") && out.contains("3 distinct numbers"),
        "{out}"
    );

    // A change list with a configurable layout: area, number, action.
    let changes = ws.file(
        "changes.csv",
        "npa,number,action\n212,5550199,D\n415,5550100,A\n",
    );
    let out = ws.cli_ok(&[
        "registry",
        "import",
        "--registry",
        "us-dnc",
        "--mode",
        "add",
        "--format",
        "delimited",
        "--skip-lines",
        "1",
        "--area-column",
        "1",
        "--number-column",
        "2",
        "--action-column",
        "3",
        "--file",
        path_str(&changes),
    ]);
    assert!(
        out.contains("1 distinct numbers, 1 removals") && out.contains("3 -> 3 numbers"),
        "{out}"
    );

    // UK TPS, both fixed-width variants, CRLF, inside a zip.
    let zip_path = ws.dir.path().join("tps.zip");
    {
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
        zip.start_file("tps.txt", zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(b"02079460999 \r\n01865123456 \r\n07400123999 \r\n")
            .unwrap();
        zip.finish().unwrap();
    }
    let out = ws.cli_ok(&[
        "registry",
        "import",
        "--registry",
        "uk-tps",
        "--covers",
        "+44",
        "--allow-narrow-file",
        "--format",
        "tps",
        "--file",
        path_str(&zip_path),
    ]);
    assert!(out.contains("3 distinct numbers"), "{out}");

    // A fixed-width template.
    let fixed = ws.file("fixed.txt", "X2125550177Y\n");
    let out = ws.cli_ok(&[
        "registry",
        "import",
        "--registry",
        "us-dnc",
        "--mode",
        "add",
        "--format",
        "fixed",
        "--phone-field",
        "2:10",
        "--file",
        path_str(&fixed),
    ]);
    assert!(out.contains("1 distinct numbers"), "{out}");

    // Tolerated rejects go to a rejects file.
    let mixed = ws.file("mixed.txt", "212,5550166\nbogus\n212,5550165\n");
    let rejects = ws.dir.path().join("mixed.rejects");
    let out = ws.cli_ok(&[
        "registry",
        "import",
        "--registry",
        "us-dnc",
        "--mode",
        "add",
        "--format",
        "ftc",
        "--max-rejects",
        "1",
        "--rejects-file",
        path_str(&rejects),
        "--file",
        path_str(&mixed),
    ]);
    assert!(out.contains("1 rejected"), "{out}");
    let written = std::fs::read_to_string(&rejects).unwrap();
    assert!(
        written.starts_with("2\t") && written.contains("bogus"),
        "{written}"
    );
    let out = ws.cli(&[
        "registry",
        "import",
        "--registry",
        "us-dnc",
        "--mode",
        "add",
        "--format",
        "ftc",
        "--file",
        path_str(&mixed),
    ]);
    assert!(
        !out.status.success(),
        "without --max-rejects one bad line fails the import"
    );
}

#[test]
fn test_killed_import_leaves_the_previous_snapshot_serving() {
    let ws = Workspace::new(&standard_config(""));
    ws.import("us-dnc", &["212 555 0199"], &[]);
    // A large file so that the import is still running when it is killed.
    let mut text = String::with_capacity(40 << 20);
    for i in 0..3_000_000u64 {
        text.push_str(&format!("212,{:07}\n", 2_000_000 + i));
    }
    let big = ws.file("big.txt", &text);
    for delay_ms in [50u64, 400, 900] {
        let mut child = std::process::Command::new(BIN)
            .arg("--config")
            .arg(ws.config_path())
            .args([
                "registry",
                "import",
                "--registry",
                "us-dnc",
                "--covers",
                "+1",
                "--allow-narrow-file",
                "--format",
                "ftc",
                "--file",
                path_str(&big),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let status = child.wait().unwrap();
        let list = list_json(&ws);
        let dnc = registry(&list, "us-dnc");
        assert_eq!(
            dnc["error"],
            serde_json::Value::Null,
            "after a kill at {delay_ms} ms: {dnc}"
        );
        assert_eq!(dnc["loaded"], true);
        if status.success() {
            // The import finished before the kill: the new edition is
            // complete, and (a full list) replaced the previous one.
            assert_eq!(dnc["numbers"], 3_000_000);
            break;
        }
        assert_eq!(
            dnc["version"], 1,
            "killed at {delay_ms} ms: the previous edition serves"
        );
        assert_eq!(dnc["numbers"], 1);
    }
}

/// The shrink guard holds in every mode on one gateway: a `remove` given the
/// full list, or an `add` whose change list deletes most of the list, would
/// empty a block-list, and every number would then read as clear.
#[test]
fn test_a_remove_that_empties_a_block_list_is_refused() {
    let ws = Workspace::new(&standard_config(""));
    let numbers: Vec<String> = (0..10).map(|i| format!("212,55501{i:02}")).collect();
    let refs: Vec<&str> = numbers.iter().map(String::as_str).collect();
    ws.import("us-dnc", &refs, &[]);
    let full = ws.file("full.txt", &(numbers.join("\n") + "\n"));
    let import = |path: &std::path::Path, extra: &[&str]| {
        let mut args = vec![
            "registry",
            "import",
            "--registry",
            "us-dnc",
            "--file",
            path_str(path),
        ];
        args.extend_from_slice(extra);
        ws.cli(&args)
    };

    let out = import(&full, &["--mode", "remove"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a remove that empties the list");
    assert!(
        stderr.contains("10 -> 0 numbers") && stderr.contains("--allow-shrink"),
        "{stderr}"
    );
    assert_eq!(registry(&list_json(&ws), "us-dnc")["numbers"], 10);

    // A change list: one addition, nine deletions.
    let mut text = String::from("npa,number,action\n415,5550100,A\n");
    for number in &numbers[..9] {
        let (npa, rest) = number.split_once(',').unwrap();
        text.push_str(&format!("{npa},{rest},D\n"));
    }
    let changes = ws.file("changes.csv", &text);
    let change_list = [
        "--mode",
        "add",
        "--format",
        "delimited",
        "--skip-lines",
        "1",
        "--area-column",
        "1",
        "--number-column",
        "2",
        "--action-column",
        "3",
    ];
    let out = import(&changes, &change_list);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "an add whose deletions empty most of the list"
    );
    assert!(stderr.contains("10 -> 2 numbers"), "{stderr}");
    let list = list_json(&ws);
    assert_eq!(registry(&list, "us-dnc")["numbers"], 10);
    assert_eq!(registry(&list, "us-dnc")["version"], 1, "nothing written");
    // The change list with --mode remove would remove its added number
    // too, even in a file of additions only; with --mode replace its
    // additions would become the whole list (every other number clear):
    // refused whatever the shrink and coverage flags, naming the mode.
    let additions = ws.file("additions.csv", "npa,number,action\n415,5550100,A\n");
    for (mode, file, expected) in [
        (
            "remove",
            &changes,
            "--mode remove would take its additions as deletions",
        ),
        (
            "remove",
            &additions,
            "--mode remove would take its additions as deletions",
        ),
        (
            "replace",
            &changes,
            "--mode replace would take its additions as the whole list",
        ),
        (
            "replace",
            &additions,
            "--mode replace would take its additions as the whole list",
        ),
    ] {
        let mut args = change_list.to_vec();
        args[1] = mode;
        let mut flags = vec!["--allow-shrink"];
        if mode == "replace" {
            flags.extend(["--covers", "+1", "--allow-narrow-file"]);
        }
        let out = import(file, &[&args[..], &flags[..]].concat());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "a change list read as {mode}");
        assert!(
            stderr.contains(expected) && stderr.contains("--mode add"),
            "{stderr}"
        );
        assert_eq!(registry(&list_json(&ws), "us-dnc")["version"], 1);
    }

    // Within the threshold, or on purpose, it goes through.
    let one = ws.file("one.txt", &format!("{}\n", numbers[0]));
    let out = import(&one, &["--mode", "remove"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = import(&changes, &[&change_list[..], &["--allow-shrink"]].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(registry(&list_json(&ws), "us-dnc")["numbers"], 2);
    let out = import(&full, &["--mode", "remove", "--allow-shrink"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(registry(&list_json(&ws), "us-dnc")["numbers"], 1);
}

/// A zip of several files is refused, naming the file and the entries:
/// reading only the first would leave the others' numbers out of the list
/// without a word. Directory entries do not count.
#[test]
fn test_a_zip_of_several_files_is_refused() {
    use std::io::Write;
    let ws = Workspace::new(&standard_config(""));
    let write_zip = |name: &str, entries: &[(&str, &str)]| {
        let path = ws.dir.path().join(name);
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        for (entry, text) in entries {
            if let Some(dir) = entry.strip_suffix('/') {
                zip.add_directory(dir, zip::write::SimpleFileOptions::default())
                    .unwrap();
            } else {
                zip.start_file(*entry, zip::write::SimpleFileOptions::default())
                    .unwrap();
                zip.write_all(text.as_bytes()).unwrap();
            }
        }
        zip.finish().unwrap();
        path
    };
    let import = |path: &std::path::Path| {
        ws.cli(&[
            "registry",
            "import",
            "--registry",
            "us-dnc",
            "--covers",
            "+1",
            "--allow-narrow-file",
            "--file",
            path_str(path),
        ])
    };

    let parts = write_zip(
        "parts.zip",
        &[
            ("part1.txt", "212,5550199\n"),
            ("part2.txt", "212,5550198\n"),
            ("part3.txt", "212,5550197\n"),
        ],
    );
    let out = import(&parts);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a zip of three files");
    assert!(
        stderr.contains(path_str(&parts))
            && stderr.contains("3 file entries")
            && stderr.contains("part1.txt"),
        "{stderr}"
    );
    assert_eq!(registry(&list_json(&ws), "us-dnc")["loaded"], false);
    let empty = write_zip("empty.zip", &[("lists/", "")]);
    let out = import(&empty);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("no file entry"), "{stderr}");

    // One file, under a directory entry listed first, and the metadata
    // macOS adds to a zip: read.
    let one = write_zip(
        "one.zip",
        &[
            ("lists/", ""),
            ("lists/dnc.txt", "212,5550199\n212,5550198\n"),
            ("__MACOSX/lists/._dnc.txt", "\0\u{5}\u{16}\u{7}"),
        ],
    );
    let out = import(&one);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(registry(&list_json(&ws), "us-dnc")["numbers"], 2);
}

/// A demo `seed_file` seeds a data directory once: a configuration copied
/// from the demo's, seed lines kept, seeded again a registry whose
/// snapshot an operator removed (a few demo numbers standing for the
/// national list, every other number clear). Now the registry stays
/// without data, every check denied, until it is imported, or the mark is
/// removed on purpose (found by review).
#[tokio::test(flavor = "multi_thread")]
async fn test_a_demo_seed_is_not_used_again_on_a_seeded_data_directory() {
    use dialgate::proto::compliance_gateway_client::ComplianceGatewayClient;
    let config = standard_config("")
        .replace(
            "id = \"us-dnc\"\nkind = \"blocklist\"\ncountry = \"US\"\n",
            "id = \"us-dnc\"\nkind = \"blocklist\"\ncountry = \"US\"\nseed_file = \"us-dnc.txt\"\n",
        )
        .replace("[server]\n", "[server]\ndemo = true\n");
    assert!(config.contains("seed_file"), "the registry is seeded");
    assert!(config.contains("demo = true"), "a demonstration");
    let ws = Workspace::new(&config);
    ws.file("us-dnc.txt", "+12125550199\n");
    let codes = |response: dialgate::proto::CheckCallResponse| -> Vec<i32> {
        response.reasons.iter().map(|r| r.code).collect()
    };
    let listed = dialgate::proto::ReasonCode::RegistryListed as i32;
    let unavailable = dialgate::proto::ReasonCode::RegistryUnavailable as i32;
    let check = || call("+1 212 555 0199", "+12125550100", "us-sales");

    let server = ws.start();
    let mut gateway = ComplianceGatewayClient::new(server.channel().await);
    let first = codes(gateway.check_call(check()).await.unwrap().into_inner());
    assert!(first.contains(&listed), "seeded: {first:?}");
    assert!(server.terminate().0.success());

    std::fs::remove_dir_all(ws.data_dir().join("registries")).unwrap();
    let server = ws.start();
    let mut gateway = ComplianceGatewayClient::new(server.channel().await);
    let again = codes(gateway.check_call(check()).await.unwrap().into_inner());
    assert!(
        again.contains(&unavailable) && !again.contains(&listed),
        "not seeded again: {again:?}"
    );
    assert!(server.terminate().0.success());

    std::fs::remove_file(ws.data_dir().join("seeded")).unwrap();
    let server = ws.start();
    let mut gateway = ComplianceGatewayClient::new(server.channel().await);
    let reseeded = codes(gateway.check_call(check()).await.unwrap().into_inner());
    assert!(
        reseeded.contains(&listed),
        "seeded on purpose: {reseeded:?}"
    );
    assert!(server.terminate().0.success());

    // A data directory of an earlier version (a seeded snapshot, no mark)
    // is marked at start, and not seeded again after.
    std::fs::remove_file(ws.data_dir().join("seeded")).unwrap();
    let server = ws.start();
    assert!(server.terminate().0.success());
    assert!(ws.data_dir().join("seeded").exists(), "marked at start");
    std::fs::remove_dir_all(ws.data_dir().join("registries")).unwrap();
    let server = ws.start();
    let mut gateway = ComplianceGatewayClient::new(server.channel().await);
    let unseeded = codes(gateway.check_call(check()).await.unwrap().into_inner());
    assert!(unseeded.contains(&unavailable), "{unseeded:?}");
    assert!(server.terminate().0.success());
}

/// A one-number US DNC file last modified at `at`.
fn dnc_file_written_at(ws: &Workspace, at: jiff::Timestamp) -> std::path::PathBuf {
    let file = ws.file("dnc.txt", "212,5550199\n");
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(std::time::SystemTime::from(at))
        .unwrap();
    file
}

/// `registry import` of `file` as the whole US DNC list (a narrow file on
/// purpose), with `extra` arguments.
fn import_dnc(ws: &Workspace, file: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "registry",
        "import",
        "--registry",
        "us-dnc",
        "--file",
        path_str(file),
        "--covers",
        "+1",
        "--allow-narrow-file",
    ];
    args.extend_from_slice(extra);
    ws.cli(&args)
}

/// A file last modified more than a day ago is not dated as checked today
/// by default: a scheduled import of last month's file, left in place by a
/// failed download, made stale data look fresh (found by review). Stated
/// with --checked-at, it goes in as of that day.
#[test]
fn test_an_old_file_is_not_taken_as_checked_today() {
    let ws = Workspace::new(&standard_config(""));
    let month_ago = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(30 * 24);
    let file = dnc_file_written_at(&ws, month_ago);
    let import = |extra: &[&str]| import_dnc(&ws, &file, extra);
    let out = import(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an old file dated today");
    assert!(
        stderr.contains("more than a day ago") && stderr.contains("--checked-at"),
        "{stderr}"
    );
    let checked = days_ago(30);
    let out = import(&["--checked-at", &checked]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        registry(&list_json(&ws), "us-dnc")["checked_at"],
        serde_json::json!(checked)
    );
}

/// Without --checked-at a file is dated by the UTC day it was last
/// modified: dated by the import's day, a list downloaded late one day and
/// imported after midnight counted as a day fresher than it was, and was
/// used up to a day past `valid_days` (found by review).
#[test]
fn test_a_file_is_dated_by_the_day_it_was_written() {
    let ws = Workspace::new(&standard_config(""));
    // A second before midnight UTC: the day before, whatever the hour the
    // test runs (within a day of it, so not refused as old).
    let written = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .start_of_day()
        .unwrap()
        .timestamp()
        - jiff::SignedDuration::from_secs(1);
    let file = dnc_file_written_at(&ws, written);
    let out = import_dnc(&ws, &file, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let day = written.to_zoned(jiff::tz::TimeZone::UTC).date().to_string();
    assert_eq!(
        registry(&list_json(&ws), "us-dnc")["checked_at"],
        serde_json::json!(day)
    );
}

/// A block-list reads every number under its `--covers` that it does not
/// hold as clear: a list of one area code stated as the whole country, or
/// a prefix under which the file holds no number, is refused (nothing
/// written), unless `--allow-narrow-file` says it is meant.
#[test]
fn test_a_block_list_narrower_than_its_coverage_is_refused() {
    let ws = Workspace::new(&standard_config(""));
    let manhattan = ws.file("212.txt", "212 555 0199\n212 999 0100\n");
    let import = |covers: &str, extra: &[&str]| {
        let mut args = vec![
            "registry",
            "import",
            "--registry",
            "us-dnc",
            "--file",
            path_str(&manhattan),
            "--covers",
            covers,
        ];
        args.extend_from_slice(extra);
        ws.cli(&args)
    };
    let spread = ws.file("spread.txt", "212 555 0199\n646 555 0100\n310 555 0111\n");
    let out = ws.cli(&[
        "registry",
        "import",
        "--registry",
        "us-dnc",
        "--file",
        path_str(&spread),
        "--covers",
        "+1",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("only 3 different three-digit groups"),
        "{stderr}"
    );
    for (covers, expected) in [
        ("+1", "all 2 numbers of the file under +1 begin +1212"),
        ("+1212,+1646", "holds no number under +1646"),
    ] {
        for extra in [&[][..], &["--dry-run"][..]] {
            let out = import(covers, extra);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{covers} {extra:?}");
            assert!(stderr.contains(expected), "{covers}: {stderr}");
            assert!(!stderr.contains("5550199"), "{stderr}");
        }
        assert_eq!(registry(&list_json(&ws), "us-dnc")["loaded"], false);
    }
    // What the file does cover is accepted; so is a narrow file on purpose.
    assert!(import("+1212", &[]).status.success());
    let out = import("+1", &["--allow-narrow-file"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(registry(&list_json(&ws), "us-dnc")["loaded"], true);
}

/// An action value given as both an addition and a deletion is refused
/// (it would read as an addition: a clearance on an allow-list).
#[test]
fn test_an_action_both_added_and_removed_is_refused() {
    let ws = Workspace::new(&standard_config(""));
    let file = ws.file("changes.csv", "212,5550199,A\n");
    let import = |values: &[&str]| {
        let mut args = vec![
            "registry",
            "import",
            "--registry",
            "us-dnc",
            "--mode",
            "add",
            "--format",
            "delimited",
            "--area-column",
            "1",
            "--number-column",
            "2",
            "--action-column",
            "3",
            "--file",
            path_str(&file),
        ];
        args.extend_from_slice(values);
        let out = ws.cli(&args);
        assert!(!out.status.success(), "{values:?}");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let stderr = import(&["--add-values", "A,C", "--remove-values", "D,c"]);
    assert!(stderr.contains("both hold \"C\""), "{stderr}");
    let stderr = import(&["--add-values", "A,"]);
    assert!(stderr.contains("empty value"), "{stderr}");
}

/// A running server whose registry file is replaced by one it cannot load
/// takes the registry out of service (REGISTRY_UNAVAILABLE) rather than
/// answering from the older edition, which may read numbers the newer one
/// lists as clear (found by review); a good file brings it back.
#[tokio::test(flavor = "multi_thread")]
async fn test_a_newer_snapshot_that_cannot_load_takes_the_registry_out_of_service() {
    let ws = Workspace::new(&standard_config(""));
    ws.import("us-dnc", &["212 555 0199"], &[]);
    let server = ws.start();
    let mut gateway = server.gateway().await;
    let mut codes_now = async || {
        codes(
            &gateway
                .check_call(call("212 555 0198", "+12125550100", "us-sales"))
                .await
                .unwrap()
                .into_inner(),
        )
    };
    assert!(codes_now().await.contains(&R::RegistryClear));
    let path = ws.data_dir().join("registries").join("us-dnc.snap");
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    bytes.extend_from_slice(b"newer");
    std::fs::write(&path, bytes).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while codes_now().await != vec![R::RegistryUnavailable] {
        assert!(
            Instant::now() < deadline,
            "still served from the older edition"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    std::fs::remove_file(&path).unwrap();
    ws.import("us-dnc", &["212 555 0199", "212 555 0197"], &[]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !codes_now().await.contains(&R::RegistryClear) {
        assert!(Instant::now() < deadline, "the good file is not loaded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A US DNC change list: `X` added (`A`) or deleted (`D`), dated
/// `checked_at`, continuing the list of `since`.
fn dnc_change_list(
    ws: &Workspace,
    name: &str,
    action: &str,
    checked_at: &str,
    since: &str,
) -> std::process::Output {
    let file = ws.file(name, &format!("npa,number,action\n212,5550105,{action}\n"));
    ws.cli(&[
        "registry",
        "import",
        "--registry",
        "us-dnc",
        "--mode",
        "add",
        "--format",
        "delimited",
        "--skip-lines",
        "1",
        "--area-column",
        "1",
        "--number-column",
        "2",
        "--action-column",
        "3",
        "--checked-at",
        checked_at,
        "--changes-since",
        since,
        "--file",
        path_str(&file),
    ])
}

/// The number the change lists above add and delete, and what CheckCall answers for it.
async fn dnc_check_x(ws: &Workspace) -> (Verdict, Vec<R>) {
    let server = ws.start();
    let mut gateway = server.gateway().await;
    let answer = gateway
        .check_call(call("212 555 0105", "+12125550100", "us-sales"))
        .await
        .unwrap()
        .into_inner();
    (verdict(&answer), codes(&answer))
}

/// 30 numbers of area code 212, X among them.
fn dnc_with_x(ws: &Workspace, checked_at: &str) {
    let numbers: Vec<String> = (100..130).map(|n| format!("212 555 0{n}")).collect();
    let numbers: Vec<&str> = numbers.iter().map(String::as_str).collect();
    ws.import("us-dnc", &numbers, &["--checked-at", checked_at]);
}

/// Found by review: a block-list took any change list or full list
/// whatever its date. A change list re-run, or arriving after a newer
/// one, or an older full list retried after a newer one, deleted a number
/// the newest data lists, and CheckCall answered REGISTRY_CLEAR. Now such
/// an import is refused, naming both dates, and the number stays listed.
#[tokio::test(flavor = "multi_thread")]
async fn test_a_block_list_refuses_deletions_older_than_its_newest_data() {
    // A change list applied again after a newer one re-added the number.
    let ws = Workspace::new(&standard_config(""));
    dnc_with_x(&ws, &days_ago(10));
    let out = dnc_change_list(&ws, "d6.csv", "D", &days_ago(6), &days_ago(10));
    assert!(out.status.success(), "{out:?}");
    let out = dnc_change_list(&ws, "d3.csv", "A", &days_ago(3), &days_ago(6));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(dnc_check_x(&ws).await.0, Verdict::Deny);
    let again = dnc_change_list(&ws, "d6-again.csv", "D", &days_ago(6), &days_ago(10));
    let refused = String::from_utf8_lossy(&again.stderr).to_string();
    assert!(!again.status.success(), "a re-run of an older change list");
    assert!(
        refused.contains(&days_ago(6)) && refused.contains(&days_ago(3)),
        "{refused}"
    );
    assert_eq!(
        dnc_check_x(&ws).await,
        (Verdict::Deny, vec![R::RegistryListed])
    );

    // The two change lists out of order.
    let ws = Workspace::new(&standard_config(""));
    dnc_with_x(&ws, &days_ago(10));
    let out = dnc_change_list(&ws, "d3.csv", "A", &days_ago(3), &days_ago(6));
    assert!(out.status.success(), "{out:?}");
    let late = dnc_change_list(&ws, "d6.csv", "D", &days_ago(6), &days_ago(10));
    assert!(
        !late.status.success(),
        "an older change list after a newer one"
    );
    assert_eq!(dnc_check_x(&ws).await.0, Verdict::Deny);

    // An older full list after a newer one; on purpose it is taken.
    let ws = Workspace::new(&standard_config(""));
    dnc_with_x(&ws, &days_ago(2));
    let older: Vec<String> = (100..130)
        .filter(|n| *n != 105)
        .map(|n| format!("212 555 0{n}"))
        .collect();
    let older: Vec<&str> = older.iter().map(String::as_str).collect();
    let file = ws.file("older.txt", &older.join("\n"));
    let refused = ws.cli(&[
        "registry",
        "import",
        "--registry",
        "us-dnc",
        "--covers",
        "+1",
        "--allow-narrow-file",
        "--checked-at",
        &days_ago(9),
        "--file",
        path_str(&file),
    ]);
    assert!(!refused.status.success(), "an older full list");
    assert_eq!(dnc_check_x(&ws).await.0, Verdict::Deny);
    // An older addition only adds: taken.
    let out = dnc_change_list(&ws, "add9.csv", "A", &days_ago(9), &days_ago(10));
    assert!(out.status.success(), "{out:?}");
    ws.import(
        "us-dnc",
        &older,
        &["--checked-at", &days_ago(9), "--older-than-replace"],
    );
    assert_eq!(
        dnc_check_x(&ws).await,
        (Verdict::Allow, vec![R::RegistryClear])
    );
}
