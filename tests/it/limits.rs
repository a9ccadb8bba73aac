//! Idle and silent connections are closed, and a cap per
//! listener keeps descriptors for the stores and the probes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use dialgate::proto::compliance_gateway_client::ComplianceGatewayClient;

use crate::support::*;

const NUMBER: &str = "+39 333 123 4567";

/// The standard config with `settings` added to `[server]`.
fn limited_config(settings: &str) -> String {
    standard_config("").replace(
        "shutdown_grace_ms = 5000",
        &format!("shutdown_grace_ms = 5000\n{settings}"),
    )
}

/// Whether the server closes `stream` within `bound` (whatever it sends first).
pub fn closed_within(stream: &mut TcpStream, bound: Duration) -> bool {
    let deadline = Instant::now() + bound;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// The server's log lines without terminal colours.
fn plain(log: &[String]) -> Vec<String> {
    log.iter()
        .map(|line| {
            let mut out = String::new();
            let mut chars = line.chars();
            while let Some(c) = chars.next() {
                if c == '\u{1b}' {
                    for c in chars.by_ref() {
                        if c.is_ascii_alphabetic() {
                            break;
                        }
                    }
                } else {
                    out.push(c);
                }
            }
            out
        })
        .collect()
}

/// `GET path` that reports failure instead of panicking.
fn try_get(addr: &str, path: &str) -> Option<u16> {
    let addr: std::net::SocketAddr = addr.parse().ok()?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}

/// Waits (up to `bound`) for `/readyz` to answer 200.
fn ready_within(server: &TestServer, bound: Duration) -> bool {
    let deadline = Instant::now() + bound;
    while Instant::now() < deadline {
        if try_get(&server.http, "/readyz") == Some(200) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Waits (up to `bound`) for a CheckCall to be answered on a new connection.
async fn check_call_within(server: &TestServer, bound: Duration) -> bool {
    let deadline = Instant::now() + bound;
    while Instant::now() < deadline {
        let attempt = tokio::time::timeout(Duration::from_secs(3), async {
            let mut client = ComplianceGatewayClient::connect(server.grpc.clone())
                .await
                .ok()?;
            client
                .check_call(call(NUMBER, "+390212345678", "it-sales"))
                .await
                .ok()
        })
        .await;
        if let Ok(Some(response)) = attempt {
            return verdict(response.get_ref()) == dialgate::proto::Verdict::Allow;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

fn grpc_addr(server: &TestServer) -> String {
    server.grpc.trim_start_matches("http://").to_string()
}

/// The HTTP/2 client preface and an empty SETTINGS frame: a gRPC connection
/// that never sends a request.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

#[test]
fn test_connections_that_send_no_request_are_closed_after_the_header_timeout() {
    let ws = Workspace::new(&limited_config(
        "header_timeout_ms = 300\nidle_timeout_ms = 60000",
    ));
    let server = ws.start();
    let bound = Duration::from_secs(10);

    let mut silent_grpc = TcpStream::connect(grpc_addr(&server)).unwrap();
    let mut silent_http = TcpStream::connect(&server.http).unwrap();
    let mut preface_only = TcpStream::connect(grpc_addr(&server)).unwrap();
    preface_only.write_all(H2_PREFACE).unwrap();
    // Headers one byte at a time (slowloris), never finished.
    let mut slow_http = TcpStream::connect(&server.http).unwrap();
    slow_http
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .unwrap();
    let mut trickle = slow_http.try_clone().unwrap();
    std::thread::spawn(move || {
        for _ in 0..200 {
            if trickle.write_all(b"a").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });

    assert!(
        closed_within(&mut silent_grpc, bound),
        "silent gRPC connection kept open"
    );
    assert!(
        closed_within(&mut silent_http, bound),
        "silent HTTP connection kept open"
    );
    assert!(
        closed_within(&mut preface_only, bound),
        "HTTP/2 connection without a request kept open"
    );
    assert!(
        closed_within(&mut slow_http, bound),
        "slowloris headers kept open"
    );

    // Normal clients are served as before.
    assert_eq!(server.get("/readyz").0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn test_idle_connections_are_closed_after_the_idle_timeout() {
    let ws = Workspace::new(&limited_config(
        "header_timeout_ms = 60000\nidle_timeout_ms = 500",
    ));
    ws.import("it-rpo", &[NUMBER], &["--controller", "acme"]);
    let server = ws.start();

    // HTTP/1.1 keep-alive: one request, then silence.
    let mut keep_alive = TcpStream::connect(&server.http).unwrap();
    keep_alive
        .write_all(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    keep_alive
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut first = [0u8; 256];
    let n = keep_alive.read(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).contains("200"));
    assert!(
        closed_within(&mut keep_alive, Duration::from_secs(30)),
        "idle keep-alive connection kept open"
    );

    // gRPC: the channel's idle connection is closed (HTTP/2 pings do not
    // keep it), and the channel reconnects for the next call.
    let mut gateway = server.gateway().await;
    gateway
        .check_call(call(NUMBER, "+390212345678", "it-sales"))
        .await
        .expect("first CheckCall");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut answered = false;
    for _ in 0..20 {
        if gateway
            .check_call(call(NUMBER, "+390212345678", "it-sales"))
            .await
            .is_ok()
        {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(answered, "CheckCall after an idle close");
    let (_, log) = server.terminate();
    let log = plain(&log);
    let closed_idle = |listener: &str| {
        log.iter().any(|l| {
            l.contains("connection closed")
                && l.contains(&format!("listener=\"{listener}\""))
                && l.contains("reason=\"idle\"")
        })
    };
    assert!(
        closed_idle("http"),
        "no idle close on HTTP: {}",
        log.join("\n")
    );
    assert!(
        closed_idle("grpc"),
        "no idle close on gRPC: {}",
        log.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn test_connection_cap_closes_new_connections_at_once_with_one_log_line() {
    let ws = Workspace::new(&limited_config(
        "max_connections = 20\nheader_timeout_ms = 120000\nidle_timeout_ms = 120000",
    ));
    ws.import("it-rpo", &[NUMBER], &["--controller", "acme"]);
    let server = ws.start();
    let grpc = grpc_addr(&server);
    let bound = Duration::from_secs(10);

    let mut idle = Vec::new();
    for addr in [&grpc, &server.http] {
        for _ in 0..20 {
            idle.push(TcpStream::connect(addr).unwrap());
        }
    }
    // Let the server accept them all.
    std::thread::sleep(Duration::from_millis(500));
    for addr in [&grpc, &server.http] {
        for i in 0..8 {
            let mut extra = TcpStream::connect(addr).unwrap();
            assert!(
                closed_within(&mut extra, bound),
                "connection {} over the cap on {addr} kept open",
                21 + i
            );
        }
    }

    // The idle clients go away: their slots are free again.
    drop(idle);
    assert!(ready_within(&server, Duration::from_secs(20)), "/readyz");
    assert!(
        check_call_within(&server, Duration::from_secs(20)).await,
        "CheckCall"
    );

    let (_, log) = server.terminate();
    let log = plain(&log);
    for listener in ["grpc", "http"] {
        let lines = log
            .iter()
            .filter(|l| {
                l.contains("connection cap reached")
                    && l.contains(&format!("listener=\"{listener}\""))
            })
            .count();
        assert!(
            (1..=2).contains(&lines),
            "{lines} cap lines for {listener} (8 refused): {}",
            log.join("\n")
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn test_idle_sockets_beyond_the_open_files_limit_do_not_stop_check_call_or_readyz() {
    // The finding: with `ulimit -n 1024`, 1,040 idle sockets made CheckCall
    // time out and /readyz hang. Here: 256 descriptors, 2 x 300 silent sockets.
    let ws = Workspace::new(&limited_config("header_timeout_ms = 1000"));
    ws.import("it-rpo", &[NUMBER], &["--controller", "acme"]);
    let server = ws.start_with_open_files(256);
    let grpc = grpc_addr(&server);

    let mut idle = Vec::new();
    for _ in 0..300 {
        for addr in [&grpc, &server.http] {
            let addr = addr.parse().unwrap();
            if let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                idle.push(stream);
            }
        }
    }
    assert!(idle.len() > 256, "only {} sockets opened", idle.len());

    // The sockets stay open on this side; the server must have let go.
    assert!(ready_within(&server, Duration::from_secs(30)), "/readyz");
    assert!(
        check_call_within(&server, Duration::from_secs(30)).await,
        "CheckCall (decided and logged)"
    );
    drop(idle);
    let (_, log) = server.terminate();
    assert!(
        log.iter()
            .any(|l| l.contains("does not fit the open-files limit")),
        "no warning about the fitted cap: {}",
        log.join("\n")
    );
}
