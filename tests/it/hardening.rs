//! Issue 14: careless and hostile input never produces an ALLOW.

use std::io::Write;

use crate::support::*;

fn list_json(ws: &Workspace) -> Vec<serde_json::Value> {
    serde_json::from_str(&ws.cli_ok(&["registry", "list", "--json"])).unwrap()
}

fn numbers_of(ws: &Workspace, id: &str) -> serde_json::Value {
    list_json(ws).into_iter().find(|r| r["id"] == id).unwrap()["numbers"].clone()
}

fn import_file(
    ws: &Workspace,
    registry: &str,
    path: &std::path::Path,
    extra: &[&str],
) -> std::process::Output {
    let mut args = vec![
        "registry",
        "import",
        "--registry",
        registry,
        "--file",
        path_str(path),
    ];
    args.extend_from_slice(extra);
    ws.cli(&args)
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn ten_dnc_numbers() -> Vec<String> {
    (0..10).map(|i| format!("212 555 01{i:02}")).collect()
}

#[test]
fn test_replace_that_empties_or_shrinks_a_blocklist_is_refused() {
    let ws = Workspace::new(&standard_config(""));
    let numbers = ten_dnc_numbers();
    let refs: Vec<&str> = numbers.iter().map(String::as_str).collect();
    ws.import("us-dnc", &refs, &[]);
    assert_eq!(numbers_of(&ws, "us-dnc"), 10);

    // Empty file, empty .gz, comment-only file, a newline bomb (gzip).
    let empty = ws.file("empty.txt", "");
    let comments = ws.file("comments.txt", "# nothing here\n#\n");
    let empty_gz = ws.dir.path().join("empty.gz");
    flate2::write::GzEncoder::new(
        std::fs::File::create(&empty_gz).unwrap(),
        flate2::Compression::fast(),
    )
    .finish()
    .unwrap();
    let bomb = ws.dir.path().join("bomb.gz");
    {
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&bomb).unwrap(),
            flate2::Compression::best(),
        );
        let newlines = vec![b'\n'; 1 << 20];
        for _ in 0..8 {
            gz.write_all(&newlines).unwrap();
        }
        gz.finish().unwrap();
    }
    for path in [&empty, &comments, &empty_gz, &bomb] {
        for extra in [&[][..], &["--dry-run"][..], &["--format", "lines"][..]] {
            let out = import_file(&ws, "us-dnc", path, extra);
            let err = stderr(&out);
            assert!(!out.status.success(), "{path:?} {extra:?} must be refused");
            assert!(
                err.contains("10 -> 0") && err.contains("--allow-shrink"),
                "{path:?}: {err}"
            );
        }
    }
    // Shrinking by 20 % (more than the default 10 %) is refused, naming the sizes.
    let eight = ws.file("eight.txt", &(numbers[..8].join("\n") + "\n"));
    let out = import_file(&ws, "us-dnc", &eight, &[]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(err.contains("10 -> 8") && err.contains("10 %"), "{err}");
    assert_eq!(numbers_of(&ws, "us-dnc"), 10, "nothing changed");
    // A higher threshold lets it through; so does --allow-shrink.
    let ok = import_file(&ws, "us-dnc", &eight, &["--max-shrink-percent", "20"]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert_eq!(numbers_of(&ws, "us-dnc"), 8);
    let nine = ws.file("nine.txt", &(numbers[..9].join("\n") + "\n"));
    assert!(
        import_file(&ws, "us-dnc", &nine, &[]).status.success(),
        "growth is fine"
    );
    let ok = import_file(&ws, "us-dnc", &empty, &["--allow-shrink"]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert_eq!(numbers_of(&ws, "us-dnc"), 0);
    // Out-of-range thresholds are refused by the argument parser.
    let out = import_file(&ws, "us-dnc", &nine, &["--max-shrink-percent", "101"]);
    assert!(!out.status.success());
}

#[test]
fn test_empty_first_import_and_empty_add_are_not_silent_successes() {
    let ws = Workspace::new(&standard_config(""));
    let empty = ws.file("empty.txt", "\n\n");
    let out = import_file(&ws, "us-dnc", &empty, &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no numbers"), "{}", stderr(&out));
    ws.import("us-dnc", &["212 555 0199"], &[]);
    // An empty add would only refresh the check date of old data.
    let out = import_file(&ws, "us-dnc", &empty, &["--mode", "add"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no numbers"), "{}", stderr(&out));
}

#[test]
fn test_allowlist_shrink_is_compared_per_controller() {
    let ws = Workspace::new(&standard_config(""));
    let acme: Vec<String> = (0..10).map(|i| format!("+39 333 123 45{i:02}")).collect();
    let refs: Vec<&str> = acme.iter().map(String::as_str).collect();
    ws.import("it-rpo", &refs, &["--controller", "acme"]);
    // beta's first list is small: no shrink for beta, acme untouched.
    ws.import("it-rpo", &["+39 333 999 0001"], &["--controller", "beta"]);
    assert_eq!(numbers_of(&ws, "it-rpo"), 11);
    // acme's list replaced by one number: a 90 % shrink of acme's list.
    let one = ws.file("one.txt", "+39 333 123 4500\n");
    let out = import_file(&ws, "it-rpo", &one, &["--controller", "acme"]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(err.contains("acme") && err.contains("10 -> 1"), "{err}");
    // beta going from 1 to 1 is fine even though the registry has 11.
    let beta = ws.file("beta.txt", "+39 333 999 0002\n");
    let out = import_file(&ws, "it-rpo", &beta, &["--controller", "beta"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn test_overlong_lines_fail_fast_naming_the_line_with_a_short_excerpt() {
    let ws = Workspace::new(&standard_config(""));
    // A 100 MB line: refused, the error names line 2 and quotes little of it.
    let path = ws.dir.path().join("long.txt");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        f.write_all(b"212 555 0199\n").unwrap();
        let chunk = vec![b'7'; 1 << 20];
        for _ in 0..100 {
            f.write_all(&chunk).unwrap();
        }
        f.write_all(b"\n212 555 0198\n").unwrap();
    }
    for format in ["lines", "ftc", "auto"] {
        let out = import_file(&ws, "us-dnc", &path, &["--format", format]);
        let err = stderr(&out);
        assert!(!out.status.success(), "{format}");
        assert!(
            err.contains("line 2") && err.contains("4096"),
            "{format}: {}",
            &err[..err.len().min(500)]
        );
        assert!(err.len() < 1000, "{format}: error of {} bytes", err.len());
    }
    // A 2 GB sparse file (one line of NUL bytes) fails after reading a few KiB.
    let sparse = ws.dir.path().join("sparse.txt");
    std::fs::File::create(&sparse)
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    let out = import_file(&ws, "us-dnc", &sparse, &[]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(err.contains("line 1") && err.len() < 1000, "{err}");
}

#[test]
fn test_bad_line_errors_quote_only_an_excerpt() {
    let ws = Workspace::new(&standard_config(""));
    let long_bad = format!("212 555 0199\n{}\n", "x".repeat(4000));
    let path = ws.file("bad.txt", &long_bad);
    let out = import_file(&ws, "us-dnc", &path, &["--format", "lines"]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(err.contains("line 2"), "{err}");
    assert!(err.len() < 600, "error of {} bytes: {err}", err.len());
}

#[test]
fn test_auto_format_never_refuses_what_lines_accepts() {
    let ws = Workspace::new(&standard_config(""));
    let text = "2127361234\n(212) 736-1235\n# a comment\n+1 212 736 1236\n212,7361237\n";
    let path = ws.file("mixed.txt", text);
    let out = import_file(&ws, "us-dnc", &path, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(numbers_of(&ws, "us-dnc"), 4);
    // A GB list whose first line looks like TPS and whose later lines are
    // ordinary notations, one of them 13 characters with spaces.
    let gb = ws.file("gb.txt", "02079460018 \n020 7946 0019\n+44 20 7946 0020\n");
    let out = import_file(&ws, "uk-tps", &gb, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = import_file(&ws, "uk-tps", &gb, &["--format", "lines", "--dry-run"]);
    assert!(lines.status.success(), "{}", stderr(&lines));
    assert_eq!(numbers_of(&ws, "uk-tps"), 3);
}

#[test]
fn test_snapshot_temporaries_are_removed_at_import_and_server_start() {
    let ws = Workspace::new(&standard_config(""));
    ws.import("us-dnc", &["212 555 0199"], &[]);
    let snapshots = ws.data_dir().join("registries");
    assert!(snapshots.join("us-dnc.snap").exists(), "layout changed?");
    let stale = snapshots.join("us-dnc.snap.tmp-4000001");
    std::fs::write(&stale, b"partial").unwrap();
    ws.import("us-dnc", &["212 555 0199", "212 555 0198"], &[]);
    assert!(
        !stale.exists(),
        "import start removes its registry's temporaries"
    );
    let other = snapshots.join("it-rpo.snap.tmp-4000002");
    std::fs::write(&other, b"partial").unwrap();
    let server = ws.start();
    assert!(!other.exists(), "server start removes temporaries");
    server.terminate();
}
