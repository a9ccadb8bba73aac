//! CheckCall and ScreenNumbers over loopback gRPC, next to an echo server
//! measured in the same run (same proto, answers without any work or log).
//!
//! Run: `cargo bench --bench checkcall` (env: `BENCH_SECONDS` per point,
//! default 5; `BENCH_SERVER_THREADS`, default 0: the server's default, one
//! worker per core, for dialgate and the echo servers alike; `BENCH_CLIENT_THREADS`,
//! default 1; `BENCH_SYNCHRONOUS`, default full; `BENCH_LINGER_US`, default
//! 300; `BENCH_WAL_BACKFILL_MS`, default 20; `BENCH_SCREEN_CONNECTIONS`
//! (the 4 ScreenNumbers streams spread over them), default 1; `BENCH_CONCURRENCY`, default 1,16,64, empty for none;
//! `BENCH_SCREEN=0` skips ScreenNumbers; `BENCH_HTTP=0` skips the HTTP
//! decision API (`GET /v1/check`, HTTP/1.1 keep-alive, one connection per
//! caller); `BENCH_DURABLE_ECHO_LANES`, default
//! 1, 0 skips the durable echo; `BENCH_POSTGRES=0` skips the PostgreSQL
//! backend, which otherwise runs one and two replicas on a PostgreSQL of
//! its own, started like the tests' (skipped with a message when Debian's
//! `postgresql` is not installed)). The servers run as separate processes, as in production.
//!
//! The durable echo (`echo+fsync`, see `common/durable_echo.rs`) is the echo
//! plus a group-committed `pwrite` + `fdatasync` of each request before its
//! answer: the ceiling for a server built like dialgate.

use std::path::Path;
use std::pin::Pin;
use std::process::{Command, Stdio};

use dialgate::proto::compliance_gateway_server::ComplianceGateway;
use dialgate::proto::{
    CheckCallRequest, CheckCallResponse, ScreenNumbersRequest, ScreenNumbersResponse, Verdict,
};
use futures_util::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

#[path = "common/durable_echo.rs"]
mod durable_echo;
#[path = "common/loopback.rs"]
mod loopback;

#[path = "common/load.rs"]
mod load;
#[path = "../tests/it/postgres_server.rs"]
mod postgres_server;

use load::*;

// ---------- echo server (separate process) ----------

#[derive(Debug, Default)]
struct Echo;

type ScreenStream = Pin<Box<dyn Stream<Item = Result<ScreenNumbersResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ComplianceGateway for Echo {
    async fn check_call(
        &self,
        request: Request<CheckCallRequest>,
    ) -> Result<Response<CheckCallResponse>, Status> {
        let request = request.into_inner();
        Ok(Response::new(CheckCallResponse {
            verdict: Verdict::Allow as i32,
            reasons: vec![],
            decision_id: request.request_id,
            normalized_number: request.called_number,
            next_allowed_at: None,
        }))
    }

    type ScreenNumbersStream = ScreenStream;

    async fn screen_numbers(
        &self,
        request: Request<Streaming<ScreenNumbersRequest>>,
    ) -> Result<Response<ScreenStream>, Status> {
        let out = request.into_inner().map(|item| {
            let item = item?;
            Ok(ScreenNumbersResponse {
                r#ref: item.r#ref,
                verdict: Verdict::Allow as i32,
                reasons: vec![],
                normalized_number: item.called_number,
                next_allowed_at: None,
            })
        });
        Ok(Response::new(Box::pin(out)))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--echo-server") {
        loopback::serve(args[2].parse().unwrap(), Echo);
        return;
    }
    if args.get(1).map(String::as_str) == Some("--durable-echo-server") {
        durable_echo::run(
            args[2].parse().unwrap(),
            Path::new(&args[3]),
            args[4].parse().unwrap(),
        );
        return;
    }
    let seconds = env_or("BENCH_SECONDS", 5);
    // 0: the server's default configuration (`worker_threads` unset, one
    // worker per core), which is what issue 15's targets are measured in.
    let server_threads = env_or("BENCH_SERVER_THREADS", 0) as usize;
    let client_threads = env_or("BENCH_CLIENT_THREADS", 1) as usize;
    let synchronous = std::env::var("BENCH_SYNCHRONOUS").unwrap_or_else(|_| "full".into());
    let linger = env_or("BENCH_LINGER_US", 300);
    let backfill = env_or("BENCH_WAL_BACKFILL_MS", 20);
    let screen_connections = env_or("BENCH_SCREEN_CONNECTIONS", 1) as usize;
    // An empty value runs no CheckCall point (ScreenNumbers only).
    let concurrencies: Vec<usize> = std::env::var("BENCH_CONCURRENCY")
        .unwrap_or_else(|_| "1,16,64".into())
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(|c| {
            c.parse()
                .unwrap_or_else(|_| panic!("BENCH_CONCURRENCY: {c:?} is not a number"))
        })
        .collect();
    let screen = env_or("BENCH_SCREEN", 1) != 0;
    let http = env_or("BENCH_HTTP", 1) != 0;
    let durable_lanes = env_or("BENCH_DURABLE_ECHO_LANES", 1) as usize;
    let postgres = env_or("BENCH_POSTGRES", 1) != 0;

    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"[server]
grpc_addr = "127.0.0.1:0"
http_addr = "127.0.0.1:0"
data_dir = "data"
worker_threads = {server_threads}

[log]
synchronous = "{synchronous}"
group_commit_linger_us = {linger}
wal_backfill_ms = {backfill}
{BENCH_RULES}"#
    );
    let config_path = dir.path().join("dialgate.toml");
    std::fs::write(&config_path, &config).unwrap();
    let config_text = config;
    let numbers: String = (0..NUMBERS).map(|i| number(i) + "\n").collect();
    let numbers_path = dir.path().join("cleared.txt");
    std::fs::write(&numbers_path, numbers).unwrap();
    let bin = env!("CARGO_BIN_EXE_dialgate");
    let status = Command::new(bin)
        .arg("--config")
        .arg(&config_path)
        .args([
            "registry",
            "import",
            "--registry",
            "it-rpo",
            "--controller",
            "acme",
            "--file",
        ])
        .arg(&numbers_path)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());

    let mut echo_command = Command::new(std::env::current_exe().unwrap());
    echo_command
        .arg("--echo-server")
        .arg(server_threads.to_string());
    let echo = spawn(echo_command);
    // On the log's filesystem, so that both pay the same disk.
    let durable_dir = dir.path().join("durable-echo");
    std::fs::create_dir_all(&durable_dir).unwrap();
    let mut durable_echo_command = Command::new(std::env::current_exe().unwrap());
    durable_echo_command
        .arg("--durable-echo-server")
        .arg(server_threads.to_string())
        .arg(&durable_dir)
        .arg(durable_lanes.to_string());
    let durable_echo = (durable_lanes > 0).then(|| spawn(durable_echo_command));
    let mut gateway_command = Command::new(bin);
    gateway_command
        .arg("--config")
        .arg(&config_path)
        .arg("serve")
        .env("DIALGATE_LOG", "warn");
    let gateway = spawn(gateway_command);
    // Started after the SQLite gateway's import: each replica imports the
    // same numbers into its own data directory.
    let pg_server = if postgres {
        postgres_server::PgServer::start()
    } else {
        None
    };
    if postgres && pg_server.is_none() {
        println!(
            "PostgreSQL backend skipped: PostgreSQL is not installed (apt-get install postgresql)"
        );
    }
    let replicas: Vec<ServerProcess> = pg_server
        .as_ref()
        .map(|pg| {
            ["bench-1", "bench-2"]
                .iter()
                .map(|id| start_replica(dir.path(), &config_text, &numbers_path, &pg.url(), id))
                .collect()
        })
        .unwrap_or_default();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(client_threads)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "CheckCall over loopback gRPC, {seconds} s per point, server {} worker(s), client {client_threads}; durable log on (WAL, synchronous={synchronous}, group commit)",
        loopback::workers(server_threads)
    );
    println!(
        "{:<13} {:>5} {:>12} {:>8} {:>8} {:>8} {:>7} {:>7} {:>10}",
        "server", "conc", "req/s", "p50 µs", "p99 µs", "p999 µs", "errors", "ratio", "cpu µs/req"
    );
    runtime.block_on(async {
        for concurrency in concurrencies.iter().copied() {
            let echo_point = unary(&echo, concurrency, seconds, "echo").await;
            let durable_point = match &durable_echo {
                Some(server) => Some(unary(server, concurrency, seconds, "durable").await),
                None => None,
            };
            let gateway_point =
                unary(&gateway, concurrency, seconds, &format!("gw{concurrency}")).await;
            let http_point = match http {
                true => Some(
                    http_check(&gateway, concurrency, seconds, &format!("h{concurrency}")).await,
                ),
                false => None,
            };
            let (pg_one, pg_two) = match replicas.as_slice() {
                [one, two] => (
                    Some(unary(one, concurrency, seconds, &format!("pg1-{concurrency}")).await),
                    Some(two_replicas(one, two, concurrency, seconds).await),
                ),
                _ => (None, None),
            };
            let rows = [
                ("echo", Some(&echo_point)),
                ("echo+fsync", durable_point.as_ref()),
                ("dialgate", Some(&gateway_point)),
                ("dialgate/http", http_point.as_ref()),
                ("pg 1 replica", pg_one.as_ref()),
                ("pg 2 replicas", pg_two.as_ref()),
            ];
            for (name, point) in rows.into_iter().filter_map(|(n, p)| Some((n, p?))) {
                println!(
                    "{:<13} {:>5} {:>12.0} {:>8} {:>8} {:>8} {:>7} {:>7.2} {:>10.1}",
                    name,
                    concurrency,
                    point.rate(),
                    point.p50,
                    point.p99,
                    point.p999,
                    point.errors,
                    point.rate() / echo_point.rate(),
                    point.cpu_us_per_request
                );
            }
        }
        if !screen {
            return;
        }
        println!("ScreenNumbers, 4 pipelined streams on {screen_connections} connection(s)");
        let echo_rate = screen_pipelined(&echo.grpc, 4, screen_connections, seconds).await;
        let gateway_rate = screen_pipelined(&gateway.grpc, 4, screen_connections, seconds).await;
        println!("{:<12} {:>14.0} numbers/s", "echo", echo_rate);
        println!(
            "{:<12} {:>14.0} numbers/s  ratio {:.2}",
            "dialgate",
            gateway_rate,
            gateway_rate / echo_rate
        );
    });
    if let Some(http) = &gateway.http {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(http).unwrap();
        write!(
            stream,
            "GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        if let Some((_, body)) = response.split_once("\r\n\r\n")
            && let Ok(status) = serde_json::from_str::<serde_json::Value>(body)
        {
            let written = status["log"]["written"].as_f64().unwrap_or(0.0);
            let batches = status["log"]["batches"].as_f64().unwrap_or(1.0);
            println!(
                "decision log: {written} decisions in {batches} commits ({:.1} per commit); \
                 commit p50/p99/p999 {}/{}/{} µs; server-side CheckCall p50/p99 {}/{} µs \
                 (whole run, all concurrencies)",
                written / batches.max(1.0),
                status["log"]["commit"]["p50_us"],
                status["log"]["commit"]["p99_us"],
                status["log"]["commit"]["p999_us"],
                status["latency"]["p50_us"],
                status["latency"]["p99_us"],
            );
        }
    }
    for replica in &replicas {
        print_log_status(replica, "PostgreSQL replica");
    }
    drop(replicas);
    drop(pg_server);
    drop(gateway);
    drop(durable_echo);
    drop(echo);
}

/// A `dialgate serve` on the PostgreSQL backend with a data directory of
/// its own (registry snapshots are per replica here), its numbers imported.
fn start_replica(
    bench_dir: &Path,
    config: &str,
    numbers: &Path,
    url: &str,
    replica_id: &str,
) -> ServerProcess {
    let dir = bench_dir.join(replica_id);
    std::fs::create_dir_all(&dir).unwrap();
    let config_path = dir.join("dialgate.toml");
    std::fs::write(&config_path, config).unwrap();
    let bin = env!("CARGO_BIN_EXE_dialgate");
    let status = Command::new(bin)
        .arg("--config")
        .arg(&config_path)
        .args([
            "registry",
            "import",
            "--registry",
            "it-rpo",
            "--controller",
            "acme",
            "--file",
        ])
        .arg(numbers)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::write(
        &config_path,
        format!("{config}\n[store]\nbackend = \"postgres\"\nurl = \"{url}\"\nreplica_id = \"{replica_id}\"\n"),
    )
    .unwrap();
    let mut command = Command::new(bin);
    command
        .arg("--config")
        .arg(&config_path)
        .arg("serve")
        .env("DIALGATE_LOG", "warn");
    spawn(command)
}

/// Both replicas under load at once, `concurrency` callers split between
/// them: the sum of their rates, the worse of their percentiles.
async fn two_replicas(
    one: &ServerProcess,
    two: &ServerProcess,
    concurrency: usize,
    seconds: u64,
) -> load::Point {
    let half = concurrency.div_ceil(2);
    let (tag_a, tag_b) = (format!("pg2a-{concurrency}"), format!("pg2b-{concurrency}"));
    let (a, b) = tokio::join!(
        unary(one, half, seconds, &tag_a),
        unary(two, (concurrency - half).max(1), seconds, &tag_b),
    );
    let requests = a.requests + b.requests;
    load::Point {
        requests,
        seconds: a.seconds.max(b.seconds),
        p50: a.p50.max(b.p50),
        p99: a.p99.max(b.p99),
        p999: a.p999.max(b.p999),
        errors: a.errors + b.errors,
        cpu_us_per_request: (a.cpu_us_per_request * a.requests as f64
            + b.cpu_us_per_request * b.requests as f64)
            / requests.max(1) as f64,
    }
}

/// The decision log's batching as `/status` reports it.
fn print_log_status(server: &ServerProcess, name: &str) {
    use std::io::{Read, Write};
    let Some(http) = &server.http else { return };
    let Ok(mut stream) = std::net::TcpStream::connect(http) else {
        return;
    };
    let _ = write!(
        stream,
        "GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    );
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    if let Some((_, body)) = response.split_once("\r\n\r\n")
        && let Ok(status) = serde_json::from_str::<serde_json::Value>(body)
    {
        let written = status["log"]["written"].as_f64().unwrap_or(0.0);
        let batches = status["log"]["batches"].as_f64().unwrap_or(1.0);
        println!(
            "{name}: {written} decisions in {batches} commits ({:.1} per commit); commit p50/p99 {}/{} µs",
            written / batches.max(1.0),
            status["log"]["commit"]["p50_us"],
            status["log"]["commit"]["p99_us"],
        );
    }
}
