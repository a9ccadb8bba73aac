//! The SIP proxy's added latency per INVITE, measured with SIPp's own
//! response-time statistics: a SIPp dialer (`tests/sip/uac.xml`) calls a
//! SIPp carrier (`tests/sip/uas.xml`), at fixed call rates, three ways:
//!
//! - `direct`: the dialer straight to the carrier, no proxy;
//! - `relay`: through Kamailio running `deploy/kamailio/kamailio.cfg` with
//!   its `route(CHECK)` call replaced by the plain relay of its ALLOW branch
//!   (written to the bench's temporary directory only: the production
//!   configuration has no way to relay without asking dialgate);
//! - `dialgate`: through Kamailio running `deploy/kamailio/kamailio.cfg`
//!   unchanged, asking the real `dialgate serve` (every decision an ALLOW,
//!   logged with an fsync before the answer) before relaying each INVITE.
//!
//! The response time is SIPp's response-time duration from the INVITE sent
//! to the 200 OK received (`start_rtd` / `rtd`), one value per call from
//! `-trace_rtt`; calls/s, failures and retransmissions come from SIPp's
//! `-trace_stat` counters. The scenarios are the SIP test's, copied into
//! the temporary directory with those attributes, a carrier that answers
//! 200 at once (no 180) and takes a BYE before the ACK (see
//! `carrier_scenario`: why). SIPp 3.6 reads its clock with
//! `CLOCK_MONOTONIC_COARSE` (4 ms steps with HZ=250), too coarse for a
//! loopback round trip, so SIPp runs with a small preloaded shim (compiled
//! with `cc` into the temporary directory) that answers that clock with
//! `CLOCK_MONOTONIC`; without `cc`, or with `BENCH_SIP_COARSE=1`, SIPp's
//! own clock is used and every time is a multiple of its tick.
//!
//! The configurations are interleaved (run 1 of every rate and
//! configuration, then run 2, ...), so that a change in the machine's load
//! hits all of them alike; the summary gives the median of the runs.
//!
//! Run: `cargo bench --bench sip` (env: `BENCH_SIP_RATES`, calls/s, default
//! 50,200,500; `BENCH_SECONDS` per point, default 10, so rate × seconds
//! calls; `BENCH_SIP_RUNS`, default 3; `BENCH_SIP_SHM_MB`, Kamailio's shared
//! memory (`-m`), default 256: its default 64 MB runs out at 500 calls/s;
//! `BENCH_SIP_COARSE=1` keeps SIPp's clock). Skipped with a notice without
//! `kamailio` or `sipp` (without Kamailio's http_client and json modules it
//! stops, saying so). Every process runs on 127.0.0.1 on free ports, in a
//! temporary directory, and is stopped at the end, also on a panic; if the
//! bench itself is killed, its processes get SIGTERM (parent-death signal)
//! and only the temporary directory is left behind.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "common/load.rs"]
mod load;

use load::*;

const CONFIGS: [&str; 3] = ["direct", "relay", "dialgate"];
const CALLER_ID: &str = "+390212345678";

/// The shim that gives SIPp a fine clock (see the module documentation).
const FINE_CLOCK_SHIM: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <time.h>

int clock_gettime(clockid_t id, struct timespec *ts) {
    static int (*real)(clockid_t, struct timespec *);
    if (!real) real = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
    if (id == CLOCK_MONOTONIC_COARSE) id = CLOCK_MONOTONIC;
    return real(id, ts);
}
"#;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A program on PATH (or Debian's sbin for Kamailio).
fn find_tool(name: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// A command whose process gets SIGTERM if the bench dies (panic, signal,
/// `kill -9`), so that nothing it started outlives it.
fn command(program: &Path) -> Command {
    let mut command = Command::new(program);
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: the closure only makes the prctl system call, which is
        // async-signal-safe, between fork and exec.
        unsafe {
            command.pre_exec(|| {
                rustix::process::set_parent_process_death_signal(Some(
                    rustix::process::Signal::TERM,
                ))
                .map_err(std::io::Error::from)
            });
        }
    }
    command
}

/// A child process stopped (SIGTERM, then SIGKILL after 5 s) when dropped.
struct Running {
    child: Child,
    name: &'static str,
}

impl Running {
    fn start(mut command: Command, name: &'static str) -> Running {
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Running { child, name }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        #[cfg(target_os = "linux")]
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_child(&self.child),
            rustix::process::Signal::TERM,
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("{} did not stop on SIGTERM: killed", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something has bound 127.0.0.1:`port` (UDP).
fn wait_for_bound(port: u16, process: &mut Running) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while UdpSocket::bind(("127.0.0.1", port)).is_ok() {
        if let Ok(Some(status)) = process.child.try_wait() {
            panic!("{} exited at start: {status}", process.name);
        }
        assert!(
            Instant::now() < deadline,
            "{} did not bind its port",
            process.name
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until a proxy answers an OPTIONS (it is listening and routing).
fn wait_for_proxy(port: u16, process: &mut Running, log: &Path) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let local = socket.local_addr().unwrap().port();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut buffer = [0u8; 2048];
    for attempt in 0.. {
        let options = format!(
            "OPTIONS sip:probe@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bKprobe{attempt}\r\n\
             From: <sip:probe@127.0.0.1>;tag=p{attempt}\r\nTo: <sip:probe@127.0.0.1>\r\nCall-ID: probe-{attempt}\r\n\
             CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        socket
            .send_to(options.as_bytes(), ("127.0.0.1", port))
            .unwrap();
        if let Ok(n) = socket.recv(&mut buffer)
            && String::from_utf8_lossy(&buffer[..n]).starts_with("SIP/2.0 200")
        {
            return;
        }
        let exited = matches!(process.child.try_wait(), Ok(Some(_)));
        if exited || Instant::now() > deadline {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            panic!(
                "{} did not start (are kamailio-utils-modules and kamailio-json-modules installed?); its log ends:\n{}",
                process.name,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `text` with `from` replaced by `to`, where `from` must occur exactly
/// `expected` times (the files this bench derives from changed otherwise).
fn replace_checked(text: &str, from: &str, to: &str, expected: usize, file: &str) -> String {
    let found = text.matches(from).count();
    assert_eq!(
        found, expected,
        "{file}: expected {expected} occurrence(s) of {from:?}, found {found}; update benches/sip.rs"
    );
    text.replace(from, to)
}

/// The dialer of the SIP test with SIPp's response-time attributes: the
/// timer starts when the INVITE is sent and stops at the 200 OK.
fn dialer_scenario() -> String {
    let file = "tests/sip/uac.xml";
    let text = std::fs::read_to_string(repo(file)).unwrap();
    // The first send is the INVITE (the BYE has the same attributes).
    let first_send = &text[text.find("<send retrans=\"500\">").expect(file)..];
    assert!(
        first_send.find("INVITE sip:") < first_send.find("</send>"),
        "{file}: the first send is no longer the INVITE; update benches/sip.rs"
    );
    let text = text.replacen(
        "<send retrans=\"500\">",
        "<send retrans=\"500\" start_rtd=\"invite\">",
        1,
    );
    replace_checked(
        &text,
        "<recv response=\"200\" rrs=\"true\"/>",
        "<recv response=\"200\" rrs=\"true\" rtd=\"invite\"/>",
        1,
        file,
    )
}

/// The carrier of the SIP test, answering 200 OK at once (without its 180
/// Ringing) and taking the dialer's BYE also before the ACK (optional).
/// Kamailio's four workers relay the messages of one call in parallel: the
/// test's carrier sends its 180 and 200, and the dialer its ACK and BYE,
/// about a millisecond apart (one turn of SIPp's scheduler), and on a busy
/// machine a worker may pass the second before another passes the first,
/// which the test's scenarios count as failed calls.
fn carrier_scenario() -> String {
    let file = "tests/sip/uas.xml";
    let text = std::fs::read_to_string(repo(file)).unwrap();
    assert_eq!(
        text.matches("SIP/2.0 180 Ringing").count(),
        1,
        "{file}: one 180 expected"
    );
    let ringing = text.find("SIP/2.0 180 Ringing").unwrap();
    let start = text[..ringing].rfind("<send>").expect(file);
    let end = ringing + text[ringing..].find("</send>").expect(file) + "</send>".len();
    let text = format!("{}{}", &text[..start], &text[end..]);
    replace_checked(
        &text,
        "<recv request=\"ACK\" crlf=\"true\"/>",
        "<recv request=\"ACK\" optional=\"true\" crlf=\"true\"/>",
        1,
        file,
    )
}

/// `deploy/kamailio/kamailio.cfg` without the dialgate check: the INVITE is
/// relayed as its ALLOW branch relays it. For this bench's temporary
/// directory only.
fn relay_config() -> String {
    let file = "deploy/kamailio/kamailio.cfg";
    let text = std::fs::read_to_string(repo(file)).unwrap();
    let text = replace_checked(
        &text,
        "\troute(CHECK);\n",
        "\troute(BENCH_RELAY);\n",
        1,
        file,
    );
    let text = replace_checked(
        &text,
        "#!KAMAILIO\n",
        "#!KAMAILIO\n# GENERATED BY benches/sip.rs FOR A BENCHMARK: relays every INVITE WITHOUT\n\
         # asking dialgate. Never deploy this file; deploy/kamailio/kamailio.cfg is the proxy.\n",
        1,
        file,
    );
    text + "\n# The ALLOW branch of route[CHECK], without the check.\nroute[BENCH_RELAY] {\n\
            \trecord_route();\n\t$du = CARRIER;\n\tif (!t_relay()) {\n\t\tt_reply(\"503\", \"Service Unavailable\");\n\t}\n\texit;\n}\n"
}

/// Compiles the fine-clock shim; `None` (with a notice) without a C compiler.
fn build_shim(dir: &Path) -> Option<PathBuf> {
    let source = dir.join("fine_clock.c");
    let library = dir.join("fine_clock.so");
    std::fs::write(&source, FINE_CLOCK_SHIM).unwrap();
    let built = Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&library)
        .arg(&source)
        .arg("-ldl")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !built {
        eprintln!(
            "no C compiler (cc): SIPp keeps its coarse clock, response times are multiples of its tick"
        );
    }
    built.then_some(library)
}

struct Tools {
    sipp: PathBuf,
    kamailio: PathBuf,
    shim: Option<PathBuf>,
}

impl Tools {
    fn sipp(&self) -> Command {
        let mut command = command(&self.sipp);
        if let Some(shim) = &self.shim {
            command.env("LD_PRELOAD", shim);
        }
        command
    }
}

/// One measured run: SIPp's per-call response times and counters.
struct Run {
    /// Response times, µs, sorted.
    times: Vec<u64>,
    successful: u64,
    failed: u64,
    retransmissions: u64,
    /// SIPp's CallRate(C): calls/s over the run.
    rate: f64,
}

impl Run {
    fn p(&self, q: f64) -> u64 {
        percentile(&self.times, q)
    }
}

/// The last line of SIPp's `-trace_stat` file, by column name.
fn read_stat(path: &Path) -> std::collections::HashMap<String, String> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("SIPp statistics {}: {e}", path.display()));
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next().unwrap_or_default().split(';').collect();
    let last: Vec<&str> = lines.next_back().unwrap_or_default().split(';').collect();
    header
        .into_iter()
        .zip(last)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The response times (µs) in SIPp's `-trace_rtt` file in `dir`.
fn read_rtt(dir: &Path) -> Vec<u64> {
    let Some(file) = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("_rtt.csv"))
    else {
        return Vec::new();
    };
    let text = std::fs::read_to_string(file).unwrap();
    let mut times: Vec<u64> = text
        .lines()
        .skip(1)
        .filter_map(|line| line.split(';').nth(1)?.trim().parse::<f64>().ok())
        .map(|ms| (ms * 1000.0).round() as u64)
        .collect();
    times.sort_unstable();
    times
}

/// `calls` calls at `rate` calls/s from a fresh SIPp dialer to `target`.
fn dial(
    tools: &Tools,
    scenario: &Path,
    dir: &Path,
    target: u16,
    rate: u64,
    calls: u64,
    call_ids: &str,
) -> Run {
    std::fs::create_dir_all(dir).unwrap();
    let limit = calls / rate.max(1) * 3 + 30;
    let mut sipp = tools.sipp();
    sipp.current_dir(dir)
        .arg("-sf")
        .arg(scenario)
        .args(["-i", "127.0.0.1", "-p", &free_udp_port().to_string()])
        .args(["-s", &number(0)])
        .args(["-key", "cli", CALLER_ID, "-key", "campaign", "bench-it"])
        .args(["-r", &rate.to_string(), "-m", &calls.to_string()])
        .args(["-cid_str", &format!("{call_ids}-%u-%p@%s")])
        .args(["-trace_rtt", "-rtt_freq", "1"])
        .args(["-trace_stat", "-stf", "stat.csv", "-fd", "3600"])
        .args([
            "-timeout",
            &limit.to_string(),
            "-recv_timeout",
            "10000",
            "-nostdin",
        ])
        .arg(format!("127.0.0.1:{target}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut dialer = Running::start(sipp, "sipp dialer");
    let deadline = Instant::now() + Duration::from_secs(limit + 10);
    while dialer.child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the SIPp dialer did not finish in {limit} s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(dialer);
    let stat = read_stat(&dir.join("stat.csv"));
    let counter = |name: &str| -> u64 {
        stat.get(name)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("SIPp statistics: no {name}"))
    };
    Run {
        times: read_rtt(dir),
        successful: counter("SuccessfulCall(C)"),
        failed: counter("FailedCall(C)"),
        retransmissions: counter("Retransmissions(C)"),
        rate: stat
            .get("CallRate(C)")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0),
    }
}

fn median_u64(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values[values.len() / 2]
}

fn median_i64(mut values: Vec<i64>) -> i64 {
    values.sort_unstable();
    values[values.len() / 2]
}

fn median_f64(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let (Some(sipp), Some(kamailio)) = (find_tool("sipp"), find_tool("kamailio")) else {
        println!(
            "skipped: kamailio or sipp not installed (apt-get install kamailio kamailio-utils-modules kamailio-json-modules sip-tester)"
        );
        return;
    };
    let rates: Vec<u64> = std::env::var("BENCH_SIP_RATES")
        .unwrap_or_else(|_| "50,200,500".into())
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(|r| {
            r.parse()
                .unwrap_or_else(|_| panic!("BENCH_SIP_RATES: {r:?} is not a number"))
        })
        .collect();
    let seconds = env_or("BENCH_SECONDS", 10);
    let runs = env_or("BENCH_SIP_RUNS", 3).max(1) as usize;
    let coarse = env_or("BENCH_SIP_COARSE", 0) != 0;
    // Kamailio keeps each finished transaction about 5 s (two per call):
    // its default 64 MB of shared memory ran out at 500 calls/s.
    let shm_mb = env_or("BENCH_SIP_SHM_MB", 256);

    let dir = tempfile::tempdir().unwrap();
    let tools = Tools {
        shim: if coarse { None } else { build_shim(dir.path()) },
        sipp,
        kamailio,
    };
    let scenario = dir.path().join("dialer.xml");
    std::fs::write(&scenario, dialer_scenario()).unwrap();
    let carrier_path = dir.path().join("carrier.xml");
    std::fs::write(&carrier_path, carrier_scenario()).unwrap();

    // dialgate, with the bench rules: the campaign ALLOWs the number dialled.
    let config = format!(
        "[server]\ngrpc_addr = \"127.0.0.1:0\"\nhttp_addr = \"127.0.0.1:0\"\ndata_dir = \"data\"\n{BENCH_RULES}"
    );
    let config_path = dir.path().join("dialgate.toml");
    std::fs::write(&config_path, config).unwrap();
    let numbers: String = (0..NUMBERS).map(|i| number(i) + "\n").collect();
    let numbers_path = dir.path().join("cleared.txt");
    std::fs::write(&numbers_path, numbers).unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_dialgate"));
    let status = Command::new(bin)
        .arg("--config")
        .arg(&config_path)
        .args(["registry", "import", "--registry", "it-rpo"])
        .args(["--controller", "acme", "--file"])
        .arg(&numbers_path)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "registry import failed");
    let mut gateway_command = command(bin);
    gateway_command
        .arg("--config")
        .arg(&config_path)
        .arg("serve")
        .env("DIALGATE_LOG", "warn");
    let gateway = spawn(gateway_command);
    let gateway_http = gateway.http.clone().expect("dialgate's HTTP address");

    // The carrier.
    let carrier_port = free_udp_port();
    let mut carrier_command = tools.sipp();
    carrier_command
        .current_dir(dir.path())
        .arg("-sf")
        .arg(&carrier_path)
        .args(["-i", "127.0.0.1", "-p", &carrier_port.to_string()])
        .arg("-nostdin")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut carrier = Running::start(carrier_command, "sipp carrier");
    wait_for_bound(carrier_port, &mut carrier);

    // The two proxies.
    let relay_path = dir.path().join("relay.cfg");
    std::fs::write(&relay_path, relay_config()).unwrap();
    let start_proxy = |name: &'static str, config: &Path, extra: &[String]| {
        let port = free_udp_port();
        let runtime = dir.path().join(name);
        std::fs::create_dir_all(&runtime).unwrap();
        let log = runtime.join("kamailio.log");
        let mut proxy_command = command(&tools.kamailio);
        proxy_command
            .args(["-DD", "-E", "-f"])
            .arg(config)
            .arg("-Y")
            .arg(&runtime)
            .arg("-P")
            .arg(runtime.join("kamailio.pid"))
            .args(["-m", &shm_mb.to_string()])
            .arg("-A")
            .arg(format!("CARRIER=\"sip:127.0.0.1:{carrier_port}\""))
            .arg("-A")
            .arg(format!("LISTEN=udp:127.0.0.1:{port}"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let mut proxy = Running::start(proxy_command, name);
        wait_for_proxy(port, &mut proxy, &log);
        (proxy, port)
    };
    let (_relay, relay_port) = start_proxy("relay", &relay_path, &[]);
    let (_checking, checking_port) = start_proxy(
        "dialgate",
        &repo("deploy/kamailio/kamailio.cfg"),
        &[
            "-A".into(),
            format!("DIALGATE_URL=\"http://{gateway_http}\""),
        ],
    );
    let target = |config: &str| match config {
        "direct" => carrier_port,
        "relay" => relay_port,
        _ => checking_port,
    };

    // Warm-up (not measured): every path carries calls once, and Kamailio's
    // workers open their connections to dialgate.
    for config in CONFIGS {
        let run = dial(
            &tools,
            &scenario,
            &dir.path().join(format!("warmup-{config}")),
            target(config),
            50,
            100,
            &format!("warmup-{config}"),
        );
        assert!(
            run.failed == 0 && run.successful == 100,
            "warm-up through {config}: {} successful, {} failed",
            run.successful,
            run.failed
        );
    }

    println!("load average at the start: {}", load_average());
    println!(
        "SIP INVITE -> 200 OK response time (SIPp rtd, {} clock), SIPp dialer -> [proxy] -> SIPp carrier; \
         {seconds} s per point, {runs} run(s), configurations interleaved; Kamailio -m {shm_mb} (MB)",
        if tools.shim.is_some() {
            "fine (CLOCK_MONOTONIC)"
        } else {
            "SIPp's coarse"
        }
    );
    println!(
        "{:<9} {:>5} {:>4} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "config",
        "rate",
        "run",
        "calls",
        "failed",
        "retrans",
        "calls/s",
        "p50 µs",
        "p90 µs",
        "p99 µs",
        "max µs"
    );
    // results[config][rate] = runs
    let mut results: Vec<Vec<Vec<Run>>> = (0..CONFIGS.len())
        .map(|_| (0..rates.len()).map(|_| Vec::new()).collect())
        .collect();
    let mut calls_through_dialgate = 0;
    for run_index in 0..runs {
        for (r, &rate) in rates.iter().enumerate() {
            for (c, config) in CONFIGS.iter().enumerate() {
                let calls = rate * seconds;
                let run = dial(
                    &tools,
                    &scenario,
                    &dir.path().join(format!("{config}-{rate}-{run_index}")),
                    target(config),
                    rate,
                    calls,
                    &format!("{config}-{rate}-{run_index}"),
                );
                if *config == "dialgate" {
                    calls_through_dialgate += run.successful + run.failed;
                }
                println!(
                    "{:<9} {:>5} {:>4} {:>7} {:>7} {:>8} {:>8.1} {:>8} {:>8} {:>8} {:>8}",
                    config,
                    rate,
                    run_index + 1,
                    run.successful,
                    run.failed,
                    run.retransmissions,
                    run.rate,
                    run.p(0.50),
                    run.p(0.90),
                    run.p(0.99),
                    run.times.last().copied().unwrap_or(0)
                );
                if run.times.len() as u64 != run.successful {
                    println!(
                        "  note: {} response times for {} successful calls",
                        run.times.len(),
                        run.successful
                    );
                }
                results[c][r].push(run);
                // Let the last calls' BYE transactions finish.
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }

    println!();
    println!("medians of {runs} run(s)");
    println!(
        "{:<9} {:>5} {:>8} {:>8} {:>8} {:>8} {:>12}",
        "config", "rate", "calls/s", "p50 µs", "p90 µs", "p99 µs", "failed (all)"
    );
    for (r, rate) in rates.iter().enumerate() {
        for (c, config) in CONFIGS.iter().enumerate() {
            let points = &results[c][r];
            println!(
                "{:<9} {:>5} {:>8.1} {:>8} {:>8} {:>8} {:>12}",
                config,
                rate,
                median_f64(points.iter().map(|p| p.rate).collect()),
                median_u64(points.iter().map(|p| p.p(0.50)).collect()),
                median_u64(points.iter().map(|p| p.p(0.90)).collect()),
                median_u64(points.iter().map(|p| p.p(0.99)).collect()),
                points.iter().map(|p| p.failed).sum::<u64>()
            );
        }
    }

    println!();
    println!(
        "added latency, µs: median over the runs of each run's difference (p50 / p90 / p99); ratio of p50s"
    );
    println!(
        "{:>5} {:>22} {:>22} {:>22} {:>16} {:>16}",
        "rate",
        "dialgate - direct",
        "dialgate - relay",
        "relay - direct",
        "dialgate/direct",
        "dialgate/relay"
    );
    let [direct, relay, checked] = [0, 1, 2];
    for (r, rate) in rates.iter().enumerate() {
        let difference = |a: usize, b: usize| -> String {
            [0.50, 0.90, 0.99]
                .iter()
                .map(|&q| {
                    let per_run = (0..runs)
                        .map(|i| results[a][r][i].p(q) as i64 - results[b][r][i].p(q) as i64)
                        .collect();
                    median_i64(per_run).to_string()
                })
                .collect::<Vec<_>>()
                .join(" / ")
        };
        let ratio = |a: usize, b: usize| -> f64 {
            median_f64(
                (0..runs)
                    .map(|i| {
                        results[a][r][i].p(0.50) as f64 / results[b][r][i].p(0.50).max(1) as f64
                    })
                    .collect(),
            )
        };
        println!(
            "{:>5} {:>22} {:>22} {:>22} {:>16.2} {:>16.2}",
            rate,
            difference(checked, direct),
            difference(checked, relay),
            difference(relay, direct),
            ratio(checked, direct),
            ratio(checked, relay)
        );
    }

    println!("load average at the end: {}", load_average());
    // Every call through the checking proxy was a logged decision.
    if let Some(status) = http_status(&gateway_http) {
        println!(
            "dialgate logged {} decisions ({} calls through the checking proxy, 100 of them warm-up); \
             server-side decision p50/p99 {}/{} µs, log commit p50/p99 {}/{} µs (whole run)",
            status["log"]["written"],
            calls_through_dialgate + 100,
            status["latency"]["p50_us"],
            status["latency"]["p99_us"],
            status["log"]["commit"]["p50_us"],
            status["log"]["commit"]["p99_us"],
        );
    }
}

/// The machine's load averages (1, 5, 15 minutes): the benchmark shares it.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// dialgate's `/status`.
fn http_status(address: &str) -> Option<serde_json::Value> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).ok()?;
    write!(
        stream,
        "GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (_, body) = response.split_once("\r\n\r\n")?;
    serde_json::from_str(body).ok()
}
