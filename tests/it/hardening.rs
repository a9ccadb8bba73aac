//! Careless and hostile input never produces an ALLOW.

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
    // Block-list replaces state their coverage (the whole country here,
    // which a few numbers stand for).
    let replace = !extra.contains(&"--mode") || extra.contains(&"replace");
    if replace {
        match registry {
            "us-dnc" => args.extend_from_slice(&["--covers", "+1", "--allow-narrow-file"]),
            "uk-tps" => args.extend_from_slice(&["--covers", "+44", "--allow-narrow-file"]),
            _ => {}
        }
    }
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
    let out = import_file(&ws, "us-dnc", &sparse, &["--accept-unterminated-last-line"]);
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

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test(flavor = "multi_thread")]
async fn test_stores_snapshots_and_backups_are_owner_only() {
    let config = standard_config("").replace(
        "shutdown_grace_ms = 5000",
        "shutdown_grace_ms = 5000\n\n[log]\ncheckpoint_key_file = \"checkpoint.key\"",
    );
    let ws = Workspace::new(&config);
    let key = ws.file("checkpoint.key", &"11".repeat(32));
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    ws.import("it-rpo", &["+39 333 123 4567"], &["--controller", "acme"]);
    let server = ws.start();
    let mut gateway = server.gateway().await;
    gateway
        .check_call(call("+39 333 123 4567", "+390212345678", "it-sales"))
        .await
        .unwrap();
    let data = ws.data_dir();
    let mut paths = vec![
        data.clone(),
        data.join("decisions.db"),
        data.join("contacts.db"),
        data.join("registries"),
        data.join("registries/it-rpo.snap"),
    ];
    for wal in ["decisions.db-wal", "decisions.db-shm", "contacts.db-wal"] {
        // Checked while the server runs: SQLite removes them at close.
        if data.join(wal).exists() {
            assert_eq!(mode(&data.join(wal)) & 0o077, 0, "{wal}");
        }
    }
    let target = ws.dir.path().join("backup");
    ws.cli_ok(&["backup", "--to", path_str(&target)]);
    let (_, log) = server.terminate();
    assert!(
        log.iter()
            .any(|l| l.contains("checkpoint.key") && l.contains("readable by group or others")),
        "{log:?}"
    );
    paths.push(data.join("checkpoints.jsonl"));
    paths.extend([
        target.clone(),
        target.join("decisions.db"),
        target.join("registries/it-rpo.snap"),
    ]);
    if target.join("checkpoints.jsonl").exists() {
        paths.push(target.join("checkpoints.jsonl"));
    }
    for path in &paths {
        assert_eq!(
            mode(path) & 0o077,
            0,
            "{} is {:o}",
            path.display(),
            mode(path)
        );
    }
}

#[test]
fn test_existing_world_readable_stores_are_tightened_at_start() {
    use std::os::unix::fs::PermissionsExt;
    let ws = Workspace::new(&standard_config(""));
    ws.import("it-rpo", &["+39 333 123 4567"], &["--controller", "acme"]);
    let data = ws.data_dir();
    let snap = data.join("registries/it-rpo.snap");
    std::fs::set_permissions(&snap, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let server = ws.start();
    assert_eq!(mode(&snap), 0o600);
    assert_eq!(mode(&data), 0o700);
    server.terminate();
}

/// Without `--config`, an import run away from the demo's data directory
/// was stored in a new `./data` there, which no server reads, and reported
/// as stored (found by review). It is refused, nothing created; beside the
/// directory `serve` made it runs on the demo's data.
#[test]
fn test_an_import_without_a_configuration_away_from_the_demo_data_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("optouts.csv"),
        "number,controller,default_region\n+39 333 123 4567,acme,IT\n",
    )
    .unwrap();
    let import = || {
        std::process::Command::new(BIN)
            .args(["suppression", "import", "--file", "optouts.csv"])
            .current_dir(dir.path())
            .env_remove("DIALGATE_CONFIG")
            .env("DIALGATE_LOG", "warn")
            .output()
            .unwrap()
    };
    let out = import();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no configuration file") && stderr(&out).contains("--config"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.path().join("data").exists(), "nothing created");
    // A `./data` of something else is not the demo's.
    std::fs::create_dir(dir.path().join("data")).unwrap();
    assert!(!import().status.success(), "an unseeded ./data");
    // The demo's, seeded by serve.
    std::fs::write(dir.path().join("data").join("seeded"), "").unwrap();
    let out = import();
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn test_duplicate_csv_headers_are_refused_naming_them() {
    let ws = Workspace::new(&standard_config(""));
    let file = ws.file(
        "optouts.csv",
        "number,controller,number,default_region\n0151 23456788,acme,0151 23456789,DE\n",
    );
    let out = ws.cli(&["suppression", "import", "--file", path_str(&file)]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("\"number\" appears twice") && err.contains("columns 1 and 3"),
        "{err}"
    );
    let consents = ws.file(
        "consents.csv",
        "controller,number,purpose,granted_at,source,source\nacme,+49 151 23456789,marketing,2026-01-01,web,shop\n",
    );
    let out = ws.cli(&["consent", "import", "--file", path_str(&consents)]);
    assert!(
        stderr(&out).contains("\"source\" appears twice"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn test_csv_export_neutralises_formulas() {
    let ws = Workspace::new(&standard_config(""));
    ws.import("it-rpo", &["+39 333 123 4567"], &["--controller", "acme"]);
    let server = ws.start();
    let mut gateway = server.gateway().await;
    for request_id in [
        "+1+cmd|' /C calc'!A0",
        "\t=1+1",
        " =HYPERLINK(\"x\")",
        "@SUM(1)",
    ] {
        let mut request = call("+39 333 123 4567", "+390212345678", "it-sales");
        request.request_id = request_id.into();
        gateway.check_call(request).await.unwrap();
    }
    drop(server);
    let out = ws.cli_ok(&["audit", "export", "--format", "csv"]);
    for needle in ["'+1+cmd", "'\t=1+1", "' =HYPERLINK", "'@SUM(1)"] {
        assert!(out.contains(needle), "{needle:?} not neutralised in {out}");
    }
    assert!(
        out.contains(",+393331234567,"),
        "E.164 numbers stay as they are: {out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn test_contact_records_fields_are_bounded_and_checked() {
    use dialgate::proto::{
        AddSuppressionRequest, EraseSubjectRequest, Purpose, RecordConsentRequest,
        RecordRelationshipRequest, RelationshipKind,
    };
    let ws = Workspace::new(&standard_config(""));
    let server = ws.start();
    let mut records = server.records().await;
    let suppression = |controller: &str, campaign: &str| AddSuppressionRequest {
        controller: controller.into(),
        campaign_id: campaign.into(),
        number: "+39 333 123 4567".into(),
        reason: "asked".into(),
        ..Default::default()
    };
    let long = "a".repeat(1 << 20);
    let cases = [
        (suppression("acme", "../../etc"), "campaign_id"),
        (suppression(&long, ""), "controller"),
        (suppression("ac\0me", ""), "controller"),
        (suppression("acme", &long), "campaign_id"),
        (
            AddSuppressionRequest {
                reason: "x\0y".into(),
                ..suppression("acme", "it-sales")
            },
            "reason",
        ),
        (
            AddSuppressionRequest {
                number: long.clone(),
                ..suppression("acme", "")
            },
            "number",
        ),
    ];
    for (request, field) in cases {
        let status = records.add_suppression(request).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{field}");
        assert!(
            status.message().starts_with(field),
            "{field}: {}",
            &status.message()[..status.message().len().min(200)]
        );
        assert!(
            status.message().len() < 300,
            "{field}: message of {} bytes",
            status.message().len()
        );
    }
    records
        .add_suppression(suppression("acme", "it-sales"))
        .await
        .expect("a configured campaign is fine");

    let consent = |granted_at: prost_types::Timestamp| RecordConsentRequest {
        controller: "acme".into(),
        number: "+49 151 23456789".into(),
        purpose: Purpose::Marketing as i32,
        granted_at: Some(granted_at),
        source: "web".into(),
        ..Default::default()
    };
    let now = jiff::Timestamp::now().as_second();
    for (ts, why) in [
        (
            prost_types::Timestamp {
                seconds: now - 10,
                nanos: -5,
            },
            "negative nanos",
        ),
        (
            prost_types::Timestamp {
                seconds: -62_135_596_800,
                nanos: 0,
            },
            "year 1",
        ),
        (
            prost_types::Timestamp {
                seconds: -1,
                nanos: 0,
            },
            "1969",
        ),
        (
            prost_types::Timestamp {
                seconds: now + 2 * 86_400,
                nanos: 0,
            },
            "future",
        ),
    ] {
        let status = records.record_consent(consent(ts)).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{why}");
        assert!(
            status.message().starts_with("granted_at"),
            "{why}: {}",
            status.message()
        );
    }
    let status = records
        .record_relationship(RecordRelationshipRequest {
            controller: "acme".into(),
            number: "+49 151 23456789".into(),
            kind: RelationshipKind::Customer as i32,
            started_at: Some(prost_types::Timestamp {
                seconds: -62_135_596_800,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        status.message().starts_with("started_at"),
        "{}",
        status.message()
    );
    let status = records
        .erase_subject(EraseSubjectRequest {
            controller: "x".repeat(129),
            number: "+49 151 23456789".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        status.message().starts_with("controller"),
        "{}",
        status.message()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn test_undecodable_grpc_messages_are_invalid_argument() {
    let ws = Workspace::new(&standard_config(""));
    let server = ws.start();
    let channel = server.channel().await;
    // CheckCallRequest.called_number (field 1, string) with invalid UTF-8,
    // and field 1 with the varint wire type instead of length-delimited.
    let bodies: [(&str, Vec<u8>); 3] = [
        ("invalid utf-8", vec![0x0a, 0x02, 0xff, 0xfe]),
        ("wrong wire type", vec![0x08, 0x01]),
        ("truncated", vec![0x0a, 0x05, b'a']),
    ];
    for (why, body) in bodies {
        for path in [
            "/dialgate.v1.ComplianceGateway/CheckCall",
            "/dialgate.v1.ContactRecords/AddSuppression",
        ] {
            let mut grpc = tonic::client::Grpc::new(channel.clone());
            grpc.ready().await.unwrap();
            let status = grpc
                .unary::<Vec<u8>, Vec<u8>, _>(
                    tonic::Request::new(body.clone()),
                    http::uri::PathAndQuery::from_static(path),
                    RawCodec,
                )
                .await
                .unwrap_err();
            assert_eq!(
                status.code(),
                tonic::Code::InvalidArgument,
                "{why} on {path}: {status:?}"
            );
        }
    }
}

/// A ScreenNumbers stream with an undecodable message between two good
/// ones: the first is answered, then the stream ends with
/// INVALID_ARGUMENT, and nothing after the bad message is answered.
#[tokio::test(flavor = "multi_thread")]
async fn test_an_undecodable_screened_item_ends_the_stream_after_the_answers_before_it() {
    use prost::Message;
    let ws = Workspace::new(&standard_config(""));
    ws.import("it-rpo", &["+39 333 123 4567"], &["--controller", "acme"]);
    let server = ws.start();
    let channel = server.channel().await;
    let good = |r: &str| {
        dialgate::proto::ScreenNumbersRequest {
            called_number: "+39 333 123 4567".into(),
            campaign_id: "it-sales".into(),
            at: None,
            r#ref: r.into(),
        }
        .encode_to_vec()
    };
    let bodies = vec![good("first"), vec![0x0a, 0x02, 0xff, 0xfe], good("after")];
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let mut answers = grpc
        .streaming::<_, Vec<u8>, Vec<u8>, _>(
            tonic::Request::new(tokio_stream::iter(bodies)),
            http::uri::PathAndQuery::from_static("/dialgate.v1.ComplianceGateway/ScreenNumbers"),
            RawCodec,
        )
        .await
        .unwrap()
        .into_inner();
    let mut refs = Vec::new();
    let status = loop {
        match answers.message().await {
            Ok(Some(bytes)) => refs.push(
                dialgate::proto::ScreenNumbersResponse::decode(bytes.as_slice())
                    .unwrap()
                    .r#ref,
            ),
            Ok(None) => panic!("the stream ended without an error after {refs:?}"),
            Err(status) => break status,
        }
    };
    assert_eq!(refs, vec!["first".to_string()]);
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
}

/// Sends and receives raw bytes, to put malformed messages on the wire.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use prost::bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        use prost::bytes::Buf;
        let mut out = vec![0; src.remaining()];
        src.copy_to_slice(&mut out);
        Ok(Some(out))
    }
}

const KEYED: &str = "shutdown_grace_ms = 5000\n\n[log]\ncheckpoint_key_file = \"checkpoint.key\"";

async fn decide(ws: &Workspace, n: usize) {
    let server = ws.start();
    let mut gateway = server.gateway().await;
    for _ in 0..n {
        gateway
            .check_call(call("+39 333 123 4567", "+390212345678", "it-sales"))
            .await
            .unwrap();
    }
    let (status, _) = server.terminate();
    assert!(status.success());
}

fn checkpoints(ws: &Workspace) -> Vec<serde_json::Value> {
    std::fs::read_to_string(ws.data_dir().join("checkpoints.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn test_start_up_checkpoints_the_inherited_head() {
    let ws = Workspace::new(&standard_config(""));
    ws.import("it-rpo", &["+39 333 123 4567"], &["--controller", "acme"]);
    decide(&ws, 3).await;
    // Lose the checkpoints (say, an old deployment that had none).
    std::fs::remove_file(ws.data_dir().join("checkpoints.jsonl")).unwrap();
    // A restart with no new decisions checkpoints the head it inherits.
    let server = ws.start();
    let seen = checkpoints(&ws);
    assert_eq!(
        seen.last().map(|c| c["seq"].clone()),
        Some(3.into()),
        "{seen:?}"
    );
    server.terminate();
    assert_eq!(
        checkpoints(&ws).len(),
        1,
        "no duplicate checkpoint of the same head"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn test_verify_fails_when_rows_and_checkpoints_are_deleted_but_the_signed_head_remains() {
    let ws = Workspace::new(&standard_config("").replace("shutdown_grace_ms = 5000", KEYED));
    ws.file("checkpoint.key", &"11".repeat(32));
    ws.import("it-rpo", &["+39 333 123 4567"], &["--controller", "acme"]);
    decide(&ws, 4).await;
    let head: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ws.data_dir().join("head.json")).unwrap())
            .unwrap();
    assert_eq!(head["seq"], 4);
    assert_eq!(head["signature"].as_str().unwrap().len(), 128);
    assert!(ws.cli(&["audit", "verify"]).status.success());
    {
        let conn = rusqlite::Connection::open(ws.data_dir().join("decisions.db")).unwrap();
        conn.execute("DELETE FROM decisions", []).unwrap();
    }
    std::fs::remove_file(ws.data_dir().join("checkpoints.jsonl")).unwrap();
    let out = ws.cli(&["audit", "verify"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "verify passed on an emptied log");
    assert!(err.contains("truncated") && err.contains("seq 4"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn test_an_external_anchor_makes_truncation_after_the_last_checkpoint_evident() {
    let ws = Workspace::new(&standard_config(""));
    ws.import("it-rpo", &["+39 333 123 4567"], &["--controller", "acme"]);
    decide(&ws, 3).await;
    let anchor = ws.cli_ok(&["audit", "checkpoint"]);
    let anchor = ws.file("anchor.json", &anchor);
    assert!(
        ws.cli(&["audit", "verify", "--anchor", path_str(&anchor)])
            .status
            .success()
    );
    {
        let conn = rusqlite::Connection::open(ws.data_dir().join("decisions.db")).unwrap();
        conn.execute("DELETE FROM decisions WHERE seq = 3", [])
            .unwrap();
    }
    // Also rewrite the local checkpoints so they no longer show the tail.
    let path = ws.data_dir().join("checkpoints.jsonl");
    std::fs::write(&path, "").unwrap();
    assert!(
        ws.cli(&["audit", "verify"]).status.success(),
        "undetectable without an anchor"
    );
    let out = ws.cli(&["audit", "verify", "--anchor", path_str(&anchor)]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("truncated"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn test_unsigned_checkpoints_from_before_the_key_are_not_bad_signatures() {
    let ws = Workspace::new(&standard_config(""));
    ws.import("it-rpo", &["+39 333 123 4567"], &["--controller", "acme"]);
    decide(&ws, 2).await;
    assert!(checkpoints(&ws).iter().all(|c| c["signature"].is_null()));
    // The key is added to the existing deployment.
    std::fs::write(
        ws.config_path(),
        standard_config("").replace("shutdown_grace_ms = 5000", KEYED),
    )
    .unwrap();
    ws.file("checkpoint.key", &"11".repeat(32));
    decide(&ws, 2).await;
    let out = ws.cli(&["audit", "verify"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let ok = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(ok.contains("unsigned (before the key)"), "{ok}");
    // An unsigned checkpoint after signed ones is not from before the key.
    let path = ws.data_dir().join("checkpoints.jsonl");
    let mut text = std::fs::read_to_string(&path).unwrap();
    let first = text.lines().next().unwrap().to_string();
    text.push_str(&first);
    text.push('\n');
    std::fs::write(&path, &text).unwrap();
    let out = ws.cli(&["audit", "verify"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("unsigned checkpoint after signed"),
        "{}",
        stderr(&out)
    );
    // A bad signature is named as such.
    let forged = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .filter(|l| l.contains("signature"))
        .map(|l| l.replace("\"seq\":4", "\"seq\":3"))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&path, forged + "\n").unwrap();
    let out = ws.cli(&["audit", "verify"]);
    assert!(
        stderr(&out).contains("signature invalid"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn test_verify_and_export_read_a_read_only_data_dir() {
    use std::os::unix::fs::PermissionsExt;
    let ws = Workspace::new(&standard_config(""));
    ws.import("it-rpo", &["+39 333 123 4567"], &["--controller", "acme"]);
    decide(&ws, 2).await;
    // A mounted backup: readable by the auditor, writable by nobody. Run as
    // an unprivileged user (root would write anyway).
    let readable = |path: &std::path::Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    readable(ws.dir.path(), 0o755);
    readable(&ws.config_path(), 0o644);
    readable(&ws.data_dir(), 0o555);
    for entry in std::fs::read_dir(ws.data_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            readable(&path, 0o444);
        }
    }
    let as_reader = |args: &[&str]| {
        let mut command = if unsafe_is_root() {
            let mut c = std::process::Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN]);
            c
        } else {
            std::process::Command::new(BIN)
        };
        command
            .arg("--config")
            .arg(ws.config_path())
            .args(args)
            .env("DIALGATE_LOG", "warn")
            .output()
            .unwrap()
    };
    let out = as_reader(&["audit", "verify"]);
    assert!(out.status.success(), "verify: {}", stderr(&out));
    let out = as_reader(&["audit", "export", "--format", "csv"]);
    assert!(out.status.success(), "export: {}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3);
    readable(&ws.data_dir(), 0o700);
}

fn unsafe_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

#[tokio::test(flavor = "multi_thread")]
async fn test_sighup_without_tls_is_handled_not_fatal() {
    let ws = Workspace::new(&standard_config(""));
    ws.import("it-rpo", &["+39 333 123 4567"], &["--controller", "acme"]);
    let server = ws.start();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut gateway = server.gateway().await;
    for _ in 0..3 {
        gateway
            .check_call(call("+39 333 123 4567", "+390212345678", "it-sales"))
            .await
            .expect("the server survives SIGHUP");
    }
    let (status, log) = server.terminate();
    assert!(status.success(), "{status:?}");
    assert!(log.iter().any(|l| l.contains("SIGHUP")), "{log:?}");
}

/// An opt-out, revocation or erasure for a controller no campaign calls for
/// ("ACME" for "acme") is refused naming the controller: accepted, it would
/// bind nothing and the next call would be allowed.
#[tokio::test(flavor = "multi_thread")]
async fn test_restrictions_for_unknown_controllers_are_refused() {
    use dialgate::proto::{AddSuppressionRequest, EraseSubjectRequest, RevokeConsentRequest};
    let ws = Workspace::new(&standard_config(""));
    let server = ws.start();
    let mut records = server.records().await;
    let status = records
        .add_suppression(AddSuppressionRequest {
            controller: "ACME".into(),
            number: "+39 333 123 4567".into(),
            reason: "asked".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().starts_with("controller") && status.message().contains("acme"),
        "{}",
        status.message()
    );
    let status = records
        .add_suppression(AddSuppressionRequest {
            controller: "beta".into(),
            campaign_id: "it-sales".into(),
            number: "+39 333 123 4567".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        status.message().starts_with("campaign_id"),
        "{}",
        status.message()
    );
    let status = records
        .erase_subject(EraseSubjectRequest {
            controller: "Acme".into(),
            number: "+39 333 123 4567".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let status = records
        .revoke_consent(RevokeConsentRequest {
            controller: "acme ".repeat(2),
            number: "+39 333 123 4567".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    // Every controller (empty) and the configured ones are fine.
    records
        .add_suppression(AddSuppressionRequest {
            controller: String::new(),
            number: "+39 333 123 4567".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    // A controller the records name takes withdrawals even when no campaign
    // calls for it now: its consent would count again once one does
    // (found by review).
    records
        .record_consent(dialgate::proto::RecordConsentRequest {
            controller: "beta".into(),
            number: "+39 333 123 4567".into(),
            purpose: dialgate::proto::Purpose::Marketing as i32,
            granted_at: Some(dialgate::proto::timestamp_to_proto(
                jiff::Timestamp::now() - jiff::SignedDuration::from_hours(72),
            )),
            source: "web".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let revoked = records
        .revoke_consent(RevokeConsentRequest {
            controller: "beta".into(),
            number: "+39 333 123 4567".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(revoked.revoked, 1);
}

/// A configuration that spells a controller another way than its stored
/// opt-outs ("Acme" for "acme") made every one of them bind nothing, with
/// no warning (found by review): serve refuses it, naming both spellings.
#[test]
fn test_a_controller_respelled_in_the_configuration_is_refused_at_start() {
    let ws = Workspace::new(&standard_config(""));
    let optouts = ws.file(
        "optouts.csv",
        "number,controller,default_region\n+39 333 123 4567,acme,IT\n",
    );
    ws.cli_ok(&["suppression", "import", "--file", path_str(&optouts)]);
    // No record is stored under a second spelling (both would then be
    // refused at start).
    let consents = ws.file(
        "consents.csv",
        "controller,number,purpose,granted_at,source\nACME,+39 333 765 4321,marketing,2026-01-01,web\n",
    );
    let out = ws.cli(&["consent", "import", "--file", path_str(&consents)]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("spelled another way"),
        "{}",
        stderr(&out)
    );
    let server = ws.start();
    assert!(server.terminate().0.success());
    let respelled = standard_config("").replace("controller = \"acme\"", "controller = \"Acme\"");
    assert!(respelled.contains("\"Acme\"") && !respelled.contains("\"acme\""));
    std::fs::write(ws.config_path(), &respelled).unwrap();
    let err = ws.serve_refused();
    assert!(
        err.contains("controller \"acme\"")
            && err.contains("\"Acme\"")
            && err.contains("exact spelling"),
        "{err}"
    );
    // The spelling the records carry starts.
    std::fs::write(ws.config_path(), standard_config("")).unwrap();
    let server = ws.start();
    assert!(server.terminate().0.success());
    // A campaign id respelled leaves its campaign's opt-outs binding nothing.
    let scoped = ws.file(
        "scoped.csv",
        "number,controller,campaign_id,default_region\n+39 333 111 2222,acme,it-sales,IT\n",
    );
    ws.cli_ok(&["suppression", "import", "--file", path_str(&scoped)]);
    let renamed = standard_config("").replace("id = \"it-sales\"", "id = \"IT-Sales\"");
    assert!(renamed.contains("\"IT-Sales\""));
    std::fs::write(ws.config_path(), &renamed).unwrap();
    let err = ws.serve_refused();
    assert!(
        err.contains("campaign \"it-sales\"") && err.contains("\"IT-Sales\""),
        "{err}"
    );
}

/// `registry_reload_interval_ms` paces the registries' reloads; the
/// contact records other processes store (a bulk import's opt-outs) are
/// read at least every second whatever it says (found by review: with an
/// interval of an hour, an imported opt-out bound nothing for an hour; the
/// interval is now at most the contract's 5 s, and an hour refused).
#[tokio::test(flavor = "multi_thread")]
async fn test_an_imported_opt_out_binds_within_seconds_whatever_the_reload_interval() {
    use dialgate::proto::ReasonCode as R;
    let hour = standard_config("").replace(
        "registry_reload_interval_ms = 100",
        "registry_reload_interval_ms = 3600000",
    );
    let refused = Workspace::new(&hour).cli(&["config", "check"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("registry_reload_interval_ms"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let config = standard_config("").replace(
        "registry_reload_interval_ms = 100",
        "registry_reload_interval_ms = 5000",
    );
    assert!(config.contains("5000"));
    let ws = Workspace::new(&config);
    ws.import("us-dnc", &["212 555 0100"], &[]);
    let server = ws.start();
    let mut gateway = server.gateway().await;
    let mut check = async || {
        let answer = gateway
            .check_call(call("+1 212 555 0199", "+12125550100", "us-sales"))
            .await
            .unwrap()
            .into_inner();
        codes(&answer)
    };
    assert!(!check().await.contains(&R::Suppressed));
    let optouts = ws.file(
        "optouts.csv",
        "number,controller,default_region\n+1 212 555 0199,acme,US\n",
    );
    ws.cli_ok(&["suppression", "import", "--file", path_str(&optouts)]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if check().await.contains(&R::Suppressed) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the imported opt-out was not read within 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A file cut short mid-line (an interrupted download or copy): its cut
/// number may be another valid number, which was listed, cleared or given
/// a consent (found by review: `+39333123456` from `+393331234567`, a
/// 9-digit mobile of its own). Every input file is refused so unless the
/// operator says it is whole.
#[test]
fn test_a_file_cut_short_mid_line_is_refused() {
    let ws = Workspace::new(&standard_config(""));
    let refused = |out: &std::process::Output| {
        let err = stderr(out);
        assert!(!out.status.success(), "{err}");
        assert!(err.contains("ends in the middle of a line"), "{err}");
    };
    // An allow-list answer: the fragment would be cleared.
    let answer = ws.file("answer.txt", "+39 333 123 4568\n+39 333 123 456");
    let args = [
        "--controller",
        "acme",
        "--allow-shrink",
        "--accept-unterminated-last-line",
    ];
    refused(&import_file(&ws, "it-rpo", &answer, &args[..3]));
    assert!(import_file(&ws, "it-rpo", &answer, &args).status.success());
    // Its --submitted file, and a whole answer.
    let whole = ws.file("whole.txt", "+39 333 123 4568\n");
    let submitted = ws.file("submitted.txt", "+39 333 123 4568\n+39 333 123 45");
    let with_submitted = [
        "--controller",
        "acme",
        "--mode",
        "add",
        "--submitted",
        path_str(&submitted),
    ];
    refused(&import_file(&ws, "it-rpo", &whole, &with_submitted));
    // A gzip of several members cut between two (each member's checksum
    // holds): told in the reading pass (found by review).
    let first_member = {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"+39 333 123 4568\n+39 333 123 456").unwrap();
        gz.finish().unwrap()
    };
    let gz_path = ws.dir.path().join("answer.txt.gz");
    std::fs::write(&gz_path, first_member).unwrap();
    refused(&import_file(&ws, "it-rpo", &gz_path, &args[..3]));
    // Carriage returns end lines too.
    let crlf = ws.file("crlf.txt", "+1 212 555 0198\r\n+1 212 555 0199\r");
    assert!(
        import_file(&ws, "us-dnc", &crlf, &["--covers", "+1"])
            .status
            .success()
    );
    // Consents, opt-outs and rectifications.
    let consents = ws.file(
        "consents.csv",
        "controller,number,purpose,granted_at,source\nacme,+39 333 123 4567,marketing,2026-01-01,web\nacme,+39333123456",
    );
    refused(&ws.cli(&["consent", "import", "--file", path_str(&consents)]));
    let optouts = ws.file("optouts.csv", "number,controller\n+39 333 123 4567,acme");
    refused(&ws.cli(&["suppression", "import", "--file", path_str(&optouts)]));
    ws.cli_ok(&[
        "suppression",
        "import",
        "--file",
        path_str(&optouts),
        "--accept-unterminated-last-line",
    ]);
    let rectify = ws.file("rectify.csv", "consent_id,number\nc-1,+39 333 123 456");
    refused(&ws.cli(&["consent", "rectify", "--file", path_str(&rectify)]));
}
