//! The load generator the benches share: the server processes, CheckCall
//! at a concurrency, ScreenNumbers pipelined, and the bench numbers.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dialgate::proto::compliance_gateway_client::ComplianceGatewayClient;
use dialgate::proto::{CheckCallRequest, ScreenNumbersRequest};
use futures_util::StreamExt;
use tonic::transport::Channel;

/// The rules every bench server runs: Italy open around the clock (the
/// figures must not depend on the time of day), the RPO as an allow-list,
/// one campaign. Appended to a `[server]` (and `[log]`) section.
pub const BENCH_RULES: &str = r#"
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
"#;

pub const NUMBERS: usize = 1000;

pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The bench numbers, formatted once: the load generator shares the two
/// cores with the server, so it should spend as little as it can per request.
pub fn numbers() -> &'static [String] {
    static NUMBERS_TEXT: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    NUMBERS_TEXT.get_or_init(|| (0..NUMBERS).map(number).collect())
}

pub fn number(i: usize) -> String {
    format!("+39333{:07}", i % NUMBERS)
}

// ---------- orchestration ----------

pub struct ServerProcess {
    pub child: Child,
    pub grpc: String,
    pub http: Option<String>,
}

impl ServerProcess {
    /// CPU time the server process used so far, in microseconds.
    pub fn cpu_us(&self) -> u64 {
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

pub fn spawn(mut command: Command) -> ServerProcess {
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

pub struct Point {
    pub requests: u64,
    pub seconds: f64,
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub errors: u64,
    pub cpu_us_per_request: f64,
}

impl Point {
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.seconds
    }
}

pub fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// `connections` separate HTTP/2 connections to `grpc`.
pub async fn connect(grpc: &str, connections: usize) -> Vec<Channel> {
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

pub async fn unary(server: &ServerProcess, concurrency: usize, seconds: u64, tag: &str) -> Point {
    unary_on(server, concurrency, seconds, tag, numbers).await
}

/// CheckCall at `concurrency` for `seconds`, calling `called` in turn.
pub async fn unary_on(
    server: &ServerProcess,
    concurrency: usize,
    seconds: u64,
    tag: &str,
    called: fn() -> &'static [String],
) -> Point {
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
                    called_number: called()[i % called().len()].clone(),
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
    point(server, tasks, started, cpu_before).await
}

pub async fn screen_pipelined(grpc: &str, streams: usize, connections: usize, seconds: u64) -> f64 {
    screen_pipelined_on(grpc, streams, connections, seconds, numbers).await
}

/// ScreenNumbers rate (numbers/s) over `streams` streams, screening `called` in turn.
pub async fn screen_pipelined_on(
    grpc: &str,
    streams: usize,
    connections: usize,
    seconds: u64,
    called: fn() -> &'static [String],
) -> f64 {
    let channels = connect(grpc, connections.max(1)).await;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    let numbers: std::sync::Arc<[String]> = called().into();
    for s in 0..streams {
        let mut client = ComplianceGatewayClient::new(channels[s % channels.len()].clone());
        let set = std::sync::Arc::clone(&numbers);
        tasks.push(tokio::spawn(async move {
            let requests = futures_util::stream::iter(s * 1_000_000..)
                .take_while(move |_| futures_util::future::ready(Instant::now() < deadline))
                .map(move |i| ScreenNumbersRequest {
                    called_number: set[i % set.len()].clone(),
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

/// `GET /v1/check` at `concurrency` over HTTP/1.1 keep-alive (one
/// connection per caller), for `seconds`: the HTTP form of CheckCall.
pub async fn http_check(
    server: &ServerProcess,
    concurrency: usize,
    seconds: u64,
    tag: &str,
) -> Point {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let address = server.http.clone().expect("the server's HTTP address");
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let cpu_before = server.cpu_us();
    let mut tasks = Vec::new();
    for task in 0..concurrency {
        let address = address.clone();
        let tag = tag.to_string();
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(&address).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let mut stream = BufReader::new(stream);
            let mut latencies = Vec::with_capacity(1 << 16);
            let mut errors = 0;
            let mut i = task * 7919;
            let mut line = String::new();
            let mut body = Vec::new();
            while Instant::now() < deadline {
                let number = &numbers()[i % NUMBERS][1..];
                let request = format!(
                    "GET /v1/check?called_number=%2B{number}&caller_id=%2B390212345678&campaign_id=bench-it&request_id={tag}-{task}-{i} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                );
                let sent = Instant::now();
                stream.get_mut().write_all(request.as_bytes()).await.unwrap();
                let mut length = 0usize;
                let mut ok = false;
                loop {
                    line.clear();
                    if stream.read_line(&mut line).await.unwrap() == 0 {
                        panic!("the server closed the connection");
                    }
                    let header = line.trim_end();
                    if header.is_empty() {
                        break;
                    }
                    if header.starts_with("HTTP/1.1 ") {
                        ok = header.starts_with("HTTP/1.1 200");
                    }
                    if let Some((name, value)) = header.split_once(':')
                        && name.eq_ignore_ascii_case("content-length")
                    {
                        length = value.trim().parse().unwrap();
                    }
                }
                body.resize(length, 0);
                stream.read_exact(&mut body).await.unwrap();
                if ok {
                    latencies.push(sent.elapsed().as_micros() as u64);
                } else {
                    errors += 1;
                }
                i += 1;
            }
            (latencies, errors)
        }));
    }
    point(server, tasks, started, cpu_before).await
}

/// The point of a run: the callers' latencies and errors, the server's CPU.
async fn point(
    server: &ServerProcess,
    tasks: Vec<tokio::task::JoinHandle<(Vec<u64>, u64)>>,
    started: Instant,
    cpu_before: u64,
) -> Point {
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
