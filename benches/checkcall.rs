//! CheckCall and ScreenNumbers over loopback gRPC, next to an echo server
//! measured in the same run (same proto, answers without any work or log).
//!
//! Run: `cargo bench --bench checkcall` (env: `BENCH_SECONDS` per point,
//! default 5; `BENCH_SERVER_THREADS`, default 1; `BENCH_CLIENT_THREADS`,
//! default 1; `BENCH_SYNCHRONOUS`, default full; `BENCH_LINGER_US`, default
//! 300; `BENCH_WAL_BACKFILL_MS`, default 20; `BENCH_SCREEN_CONNECTIONS`
//! (the 4 ScreenNumbers streams spread over them), default 1; `BENCH_CONCURRENCY`, default 1,16,64, empty for none;
//! `BENCH_SCREEN=0` skips ScreenNumbers; `BENCH_DURABLE_ECHO_LANES`, default
//! 1, 0 skips the durable echo). The servers run as separate processes, as in production.
//!
//! The durable echo (`echo+fsync`, see `common/durable_echo.rs`) is the echo
//! plus a group-committed `pwrite` + `fdatasync` of each request before its
//! answer: the ceiling for a server built like dialgate.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dialgate::proto::compliance_gateway_client::ComplianceGatewayClient;
use dialgate::proto::compliance_gateway_server::ComplianceGateway;
use dialgate::proto::{
    CheckCallRequest, CheckCallResponse, ScreenNumbersRequest, ScreenNumbersResponse, Verdict,
};
use futures_util::{Stream, StreamExt};
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};

#[path = "common/durable_echo.rs"]
mod durable_echo;
#[path = "common/loopback.rs"]
mod loopback;

const NUMBERS: usize = 1000;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The bench numbers, formatted once: the load generator shares the two
/// cores with the server, so it should spend as little as it can per request.
fn numbers() -> &'static [String] {
    static NUMBERS_TEXT: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    NUMBERS_TEXT.get_or_init(|| (0..NUMBERS).map(number).collect())
}

fn number(i: usize) -> String {
    format!("+39333{:07}", i % NUMBERS)
}

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

// ---------- orchestration ----------

struct ServerProcess {
    child: Child,
    grpc: String,
    http: Option<String>,
}

impl ServerProcess {
    /// CPU time the server process used so far, in microseconds.
    fn cpu_us(&self) -> u64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the whole line (11 and 12 here), in ticks of 10 ms.
        let ticks: u64 = fields
            .get(11..13)
            .map_or(0, |f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum());
        ticks * 10_000
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

fn spawn(mut command: Command) -> ServerProcess {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let event: serde_json::Value = serde_json::from_str(&line).expect("listening line");
    ServerProcess {
        child,
        grpc: format!("http://{}", event["grpc"].as_str().unwrap()),
        http: event["http"].as_str().map(String::from),
    }
}

struct Point {
    requests: u64,
    seconds: f64,
    p50: u64,
    p99: u64,
    p999: u64,
    errors: u64,
    cpu_us_per_request: f64,
}

impl Point {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.seconds
    }
}

fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// `connections` separate HTTP/2 connections to `grpc`.
async fn connect(grpc: &str, connections: usize) -> Vec<Channel> {
    let mut channels = Vec::with_capacity(connections);
    for _ in 0..connections {
        channels.push(
            Channel::from_shared(grpc.to_string())
                .unwrap()
                .connect()
                .await
                .unwrap(),
        );
    }
    channels
}

async fn unary(server: &ServerProcess, concurrency: usize, seconds: u64, tag: &str) -> Point {
    let grpc = &server.grpc;
    let connections = concurrency.clamp(1, 4);
    let channels = connect(grpc, connections).await;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let cpu_before = server.cpu_us();
    let mut tasks = Vec::new();
    for task in 0..concurrency {
        let mut client = ComplianceGatewayClient::new(channels[task % connections].clone());
        let tag = tag.to_string();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(1 << 16);
            let mut errors = 0;
            let mut i = task * 7919;
            while Instant::now() < deadline {
                let request = CheckCallRequest {
                    called_number: numbers()[i % NUMBERS].clone(),
                    caller_id: "+390212345678".into(),
                    campaign_id: "bench-it".into(),
                    request_id: format!("{tag}-{task}-{i}"),
                };
                let sent = Instant::now();
                match client.check_call(request).await {
                    Ok(_) => latencies.push(sent.elapsed().as_micros() as u64),
                    Err(_) => errors += 1,
                }
                i += 1;
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (latencies, e) = task.await.unwrap();
        all.extend(latencies);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = server.cpu_us() - cpu_before;
    all.sort_unstable();
    Point {
        cpu_us_per_request: cpu as f64 / all.len().max(1) as f64,
        requests: all.len() as u64,
        seconds: elapsed,
        p50: percentile(&all, 0.50),
        p99: percentile(&all, 0.99),
        p999: percentile(&all, 0.999),
        errors,
    }
}

async fn screen_pipelined(grpc: &str, streams: usize, connections: usize, seconds: u64) -> f64 {
    let channels = connect(grpc, connections.max(1)).await;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for s in 0..streams {
        let mut client = ComplianceGatewayClient::new(channels[s % channels.len()].clone());
        tasks.push(tokio::spawn(async move {
            let requests = futures_util::stream::iter(s * 1_000_000..)
                .take_while(move |_| futures_util::future::ready(Instant::now() < deadline))
                .map(|i| ScreenNumbersRequest {
                    called_number: numbers()[i % NUMBERS].clone(),
                    campaign_id: "bench-it".into(),
                    at: None,
                    r#ref: i.to_string(),
                });
            let mut answers = client.screen_numbers(requests).await.unwrap().into_inner();
            let mut count = 0u64;
            while let Some(Ok(_)) = answers.next().await {
                count += 1;
            }
            count
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    total as f64 / started.elapsed().as_secs_f64()
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
    let server_threads = env_or("BENCH_SERVER_THREADS", 1) as usize;
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
    let durable_lanes = env_or("BENCH_DURABLE_ECHO_LANES", 1) as usize;

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

# Open around the clock, so that the figures do not depend on the time of day.
[destination.IT.calling_hours]
mon = ["00:00-24:00"]
tue = ["00:00-24:00"]
wed = ["00:00-24:00"]
thu = ["00:00-24:00"]
fri = ["00:00-24:00"]
sat = ["00:00-24:00"]
sun = ["00:00-24:00"]
holidays = ["00:00-24:00"]
pre_holidays = ["00:00-24:00"]

[[registry]]
id = "it-rpo"
kind = "allowlist"
country = "IT"

[[campaign]]
id = "bench-it"
controller = "acme"
purpose = "marketing"
default_region = "IT"
destinations = ["IT"]
caller_ids = ["+390212345678"]
"#
    );
    let config_path = dir.path().join("dialgate.toml");
    std::fs::write(&config_path, config).unwrap();
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

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(client_threads)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "CheckCall over loopback gRPC, {seconds} s per point, server {server_threads} worker(s), client {client_threads}; durable log on (WAL, synchronous={synchronous}, group commit)"
    );
    println!(
        "{:<12} {:>5} {:>12} {:>8} {:>8} {:>8} {:>7} {:>7} {:>10}",
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
            let rows = [
                ("echo", Some(&echo_point)),
                ("echo+fsync", durable_point.as_ref()),
                ("dialgate", Some(&gateway_point)),
            ];
            for (name, point) in rows.into_iter().filter_map(|(n, p)| Some((n, p?))) {
                println!(
                    "{:<12} {:>5} {:>12.0} {:>8} {:>8} {:>8} {:>7} {:>7.2} {:>10.1}",
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
            "GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
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
    drop(gateway);
    drop(durable_echo);
    drop(echo);
}
