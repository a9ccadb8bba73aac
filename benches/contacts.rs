//! How the cost of contact records grows: for each size, a CRM-like
//! consents file (5/6 of the records) and opt-outs file (1/6) go through
//! the real `dialgate consent import` and `suppression import`, then the
//! real server starts on them. Measured: import rate, bytes per record on
//! disk and resident (anonymous memory above the empty store's), start-up,
//! CheckCall p50/p99 at concurrency 16, and ScreenNumbers (4 streams, one
//! connection), each twice: on numbers without records (the same load and
//! the same answers at every size: what the index costs) and on numbers
//! that have consents at every size but 0 ("held": what records cost, the
//! consent cited in each answer, its id read from the store or its cache).
//!
//! Run: `cargo bench --bench contacts` (env `BENCH_CONTACT_SIZES`, records,
//! default `0,1000000,10000000`; `BENCH_SECONDS` per point, default 5).

use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

#[path = "common/load.rs"]
mod load;

use load::*;

#[path = "common/rng.rs"]
mod rng;

use rng::Rng;

/// Numbers the load calls that have consents (at every size but 0).
fn held_numbers() -> &'static [String] {
    static HELD: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    HELD.get_or_init(|| (0..NUMBERS).map(|i| format!("+39334{i:07}")).collect())
}

/// Italian mobile numbers: the held numbers first, then random ones
/// (never the load's other numbers, `+39333...`: another prefix).
fn crm_number(i: usize, rng: &mut Rng) -> String {
    if i < NUMBERS {
        held_numbers()[i].clone()
    } else {
        format!("+39347{:07}", rng.next() % 10_000_000)
    }
}

fn write_files(dir: &Path, records: usize) -> (std::path::PathBuf, std::path::PathBuf) {
    let consents_path = dir.join("consents.csv");
    let opt_outs_path = dir.join("opt-outs.csv");
    let consents = records * 5 / 6;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out = BufWriter::new(std::fs::File::create(&consents_path).unwrap());
    writeln!(
        out,
        "consent_id,controller,number,purpose,granted_at,source,method,notice_version,evidence_ref"
    )
    .unwrap();
    for i in 0..consents {
        let controller = ["acme", "acme", "acme", "bravo", "charlie"][i % 5];
        writeln!(
            out,
            "crm-{i},{controller},{},marketing,2026-0{}-1{}T10:00:00Z,web-form,double_opt_in,privacy-v{},doi:{:x}",
            crm_number(i, &mut rng),
            1 + i % 9,
            i % 10,
            1 + i % 3,
            rng.next()
        )
        .unwrap();
    }
    out.flush().unwrap();
    let mut out = BufWriter::new(std::fs::File::create(&opt_outs_path).unwrap());
    writeln!(out, "suppression_id,number,controller,reason,source").unwrap();
    for i in 0..records - consents {
        writeln!(
            out,
            "crm-oo-{i},+39348{:07},{},asked on the phone,call-centre",
            rng.next() % 10_000_000,
            ["", "acme"][i % 2]
        )
        .unwrap();
    }
    out.flush().unwrap();
    (consents_path, opt_outs_path)
}

fn config(dir: &Path) -> std::path::PathBuf {
    let config = format!(
        r#"[server]
grpc_addr = "127.0.0.1:0"
http_addr = "127.0.0.1:0"
data_dir = "data"
{BENCH_RULES}
# The other controllers of the generated records: a record under a
# controller no campaign names is refused at import.
[[campaign]]
id = "bench-bravo"
controller = "bravo"
purpose = "marketing"
default_region = "IT"
destinations = ["IT"]
caller_ids = ["+390212345678"]

[[campaign]]
id = "bench-charlie"
controller = "charlie"
purpose = "marketing"
default_region = "IT"
destinations = ["IT"]
caller_ids = ["+390212345678"]
"#
    );
    let path = dir.join("dialgate.toml");
    std::fs::write(&path, config).unwrap();
    path
}

fn dialgate(config: &Path, args: &[&str]) {
    let status = Command::new(env!("CARGO_BIN_EXE_dialgate"))
        .arg("--config")
        .arg(config)
        .args(args)
        .stdout(Stdio::null())
        .env("DIALGATE_LOG", "warn")
        .status()
        .unwrap();
    assert!(status.success(), "dialgate {args:?}");
}

/// Anonymous resident memory of a process, in bytes.
fn rss_anon(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// The contact store, its write-ahead log and the erasure ledger (which
/// holds a line per imported opt-out).
fn disk_bytes(data: &Path) -> u64 {
    ["contacts.db", "contacts.db-wal", "erasure-ledger.jsonl"]
        .iter()
        .filter_map(|f| std::fs::metadata(data.join(f)).ok())
        .map(|m| m.len())
        .sum()
}

struct Row {
    records: usize,
    import_rate: f64,
    disk_per_record: f64,
    rss: u64,
    start_s: f64,
    check: Point,
    screen: f64,
    held_check: Point,
    held_screen: f64,
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let sizes: Vec<usize> = std::env::var("BENCH_CONTACT_SIZES")
        .unwrap_or_else(|_| "0,1000000,10000000".into())
        .split(',')
        .map(|s| s.trim().parse().expect("BENCH_CONTACT_SIZES: numbers"))
        .collect();
    let seconds = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mut rows: Vec<Row> = Vec::new();
    for records in sizes {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let cleared = dir.path().join("cleared.txt");
        std::fs::write(
            &cleared,
            numbers()
                .iter()
                .chain(held_numbers())
                .map(|n| n.clone() + "\n")
                .collect::<String>(),
        )
        .unwrap();
        dialgate(
            &config,
            &[
                "registry",
                "import",
                "--registry",
                "it-rpo",
                "--controller",
                "acme",
                "--file",
                cleared.to_str().unwrap(),
            ],
        );
        let (consents, opt_outs) = write_files(dir.path(), records);
        let started = Instant::now();
        dialgate(
            &config,
            &["consent", "import", "--file", consents.to_str().unwrap()],
        );
        dialgate(
            &config,
            &[
                "suppression",
                "import",
                "--file",
                opt_outs.to_str().unwrap(),
            ],
        );
        let import_s = started.elapsed().as_secs_f64();
        let _ = std::fs::remove_file(&consents);
        let _ = std::fs::remove_file(&opt_outs);
        let disk = disk_bytes(&dir.path().join("data"));
        let started = Instant::now();
        let mut command = Command::new(env!("CARGO_BIN_EXE_dialgate"));
        command
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .env("DIALGATE_LOG", "warn");
        let server = spawn(command);
        let start_s = started.elapsed().as_secs_f64();
        let rss = rss_anon(server.child.id());
        let check = runtime.block_on(unary(&server, 16, seconds, &format!("c{records}")));
        let screen = runtime.block_on(screen_pipelined(&server.grpc, 4, 1, seconds));
        let held_check = runtime.block_on(unary_on(
            &server,
            16,
            seconds,
            &format!("h{records}"),
            held_numbers,
        ));
        let held_screen = runtime.block_on(screen_pipelined_on(
            &server.grpc,
            4,
            1,
            seconds,
            held_numbers,
        ));
        println!(
            "{records} records: import {:.0}/s, disk {:.0} B/record, RssAnon {} MB, start {start_s:.2} s, CheckCall c16 {:.0}/s p50 {} µs p99 {} µs ({} errors), ScreenNumbers {:.2} M/s; numbers with consents: CheckCall {:.0}/s p50 {} µs p99 {} µs ({} errors), ScreenNumbers {:.2} M/s",
            records as f64 / import_s.max(1e-9),
            disk as f64 / records.max(1) as f64,
            rss >> 20,
            check.rate(),
            check.p50,
            check.p99,
            check.errors,
            screen / 1e6,
            held_check.rate(),
            held_check.p50,
            held_check.p99,
            held_check.errors,
            held_screen / 1e6
        );
        rows.push(Row {
            records,
            import_rate: records as f64 / import_s.max(1e-9),
            disk_per_record: disk as f64 / records.max(1) as f64,
            rss,
            start_s,
            check,
            screen,
            held_check,
            held_screen,
        });
        drop(server);
    }
    let empty = rows.iter().find(|r| r.records == 0).map(|r| r.rss);
    println!(
        "\n| records | import (records/s) | disk (B/record) | resident above empty (B/record) | start-up (s) | CheckCall c16 (req/s) | p50 (µs) | p99 (µs) | ScreenNumbers (M/s) | held: CheckCall (req/s) | held: p50 / p99 (µs) | held: ScreenNumbers (M/s) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for row in &rows {
        let resident = match (empty, row.records) {
            (Some(empty), n) if n > 0 => {
                format!("{:.1}", row.rss.saturating_sub(empty) as f64 / n as f64)
            }
            _ => format!("({} MB total)", row.rss >> 20),
        };
        let (rate, disk) = if row.records == 0 {
            ("-".to_string(), "-".to_string())
        } else {
            (
                format!("{:.0}", row.import_rate),
                format!("{:.0}", row.disk_per_record),
            )
        };
        println!(
            "| {} | {rate} | {disk} | {resident} | {:.2} | {:.0} | {} | {} | {:.2} | {:.0} | {} / {} | {:.2} |",
            row.records,
            row.start_s,
            row.check.rate(),
            row.check.p50,
            row.check.p99,
            row.screen / 1e6,
            row.held_check.rate(),
            row.held_check.p50,
            row.held_check.p99,
            row.held_screen / 1e6
        );
    }
}
