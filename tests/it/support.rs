//! Test support: starts the real `dialgate` binary on 127.0.0.1:0 with a
//! config in a temporary directory, and talks real gRPC and HTTP to it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use dialgate::proto::compliance_gateway_client::ComplianceGatewayClient;
use dialgate::proto::contact_records_client::ContactRecordsClient;
use dialgate::proto::{CheckCallRequest, CheckCallResponse, ReasonCode, Verdict};
use tonic::transport::Channel;

pub const BIN: &str = env!("CARGO_BIN_EXE_dialgate");

/// Registries and campaigns most tests use; `{extra}` is appended.
pub fn standard_config(extra: &str) -> String {
    format!(
        r#"
[server]
grpc_addr = "127.0.0.1:0"
http_addr = "127.0.0.1:0"
data_dir = "data"
registry_reload_interval_ms = 100
shutdown_grace_ms = 5000

[[registry]]
id = "it-rpo"
kind = "allowlist"
country = "IT"

[[registry]]
id = "us-dnc"
kind = "blocklist"
country = "US"

[[registry]]
id = "uk-tps"
kind = "blocklist"
country = "GB"

[[campaign]]
id = "it-sales"
controller = "acme"
purpose = "marketing"
default_region = "IT"
destinations = ["IT"]
caller_ids = ["+390212345678"]

[[campaign]]
id = "it-beta"
controller = "beta"
purpose = "marketing"
default_region = "IT"
destinations = ["IT"]
caller_ids = ["+390212345678"]

[[campaign]]
id = "it-survey"
controller = "acme"
purpose = "statistical"
default_region = "IT"
destinations = ["IT"]

[[campaign]]
id = "us-sales"
controller = "acme"
purpose = "marketing"
default_region = "US"
destinations = ["US"]
caller_ids = ["+12125550100"]

[[campaign]]
id = "uk-sales"
controller = "acme"
purpose = "marketing"
default_region = "GB"
destinations = ["GB"]
caller_ids = ["+442079460000"]

[[campaign]]
id = "de-optin"
controller = "acme"
purpose = "marketing"
default_region = "DE"
destinations = ["DE"]
consent_required = true
caller_ids = ["+4930123456"]
{ALWAYS_OPEN}
{extra}
"#
    )
}

/// The standard configuration with nothing that keeps decisions: no
/// retention floor, a 1 s idempotency window and no campaign under an
/// attempt cap or the US 5-year floor (us-sales removed), so that `audit
/// purge` may cut decisions a second old.
pub fn purgeable_config() -> String {
    let config = standard_config("")
        .replace(
            "shutdown_grace_ms = 5000",
            "shutdown_grace_ms = 5000\n\n[log]\nretention_days = 0\nidempotency_window_seconds = 1\nclock_step_tolerance_seconds = 1",
        )
        .replace(
            "[[campaign]]\nid = \"us-sales\"\ncontroller = \"acme\"\npurpose = \"marketing\"\ndefault_region = \"US\"\ndestinations = [\"US\"]\ncaller_ids = [\"+12125550100\"]\n",
            "",
        );
    assert!(!config.contains("us-sales"));
    config
}

/// Calling windows open around the clock, so that tests of other rules do
/// not depend on when they run (the statutory windows are tested on their own).
pub const ALWAYS_OPEN: &str = r#"
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

[destination.US.calling_hours]
mon = ["00:00-24:00"]
tue = ["00:00-24:00"]
wed = ["00:00-24:00"]
thu = ["00:00-24:00"]
fri = ["00:00-24:00"]
sat = ["00:00-24:00"]
sun = ["00:00-24:00"]
holidays = ["00:00-24:00"]

[destination.US.state.FL.calling_hours]
mon = ["00:00-24:00"]
tue = ["00:00-24:00"]
wed = ["00:00-24:00"]
thu = ["00:00-24:00"]
fri = ["00:00-24:00"]
sat = ["00:00-24:00"]
sun = ["00:00-24:00"]

[destination.GB.calling_hours]
mon = ["00:00-24:00"]
tue = ["00:00-24:00"]
wed = ["00:00-24:00"]
thu = ["00:00-24:00"]
fri = ["00:00-24:00"]
sat = ["00:00-24:00"]
sun = ["00:00-24:00"]
"#;

/// A directory with a config file, for CLI runs and servers.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new(config: &str) -> Workspace {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("dialgate.toml"), config).expect("write config");
        Workspace { dir }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("dialgate.toml")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Writes a file in the workspace and returns its path.
    pub fn file(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).expect("write file");
        path
    }

    /// Runs `dialgate --config <this config> args...`.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("--config")
            .arg(self.config_path())
            .args(args)
            .env("DIALGATE_LOG", "warn")
            .output()
            .expect("run dialgate")
    }

    /// Runs `dialgate --config <this config> args...` with `input` on stdin.
    pub fn cli_with_stdin(&self, args: &[&str], input: &str) -> Output {
        use std::io::Write as _;
        let mut child = Command::new(BIN)
            .arg("--config")
            .arg(self.config_path())
            .args(args)
            .env("DIALGATE_LOG", "warn")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run dialgate");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("dialgate output")
    }

    /// Runs `serve`, which must refuse to start (within a minute); returns
    /// its stderr.
    pub fn serve_refused(&self) -> String {
        let mut serve = Command::new(BIN)
            .arg("--config")
            .arg(self.config_path())
            .arg("serve")
            .env("DIALGATE_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run dialgate serve");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let status = loop {
            if let Some(status) = serve.try_wait().expect("wait for serve") {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = serve.kill();
                panic!("serve started");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        assert!(!status.success(), "serve exited successfully");
        let mut err = String::new();
        std::io::Read::read_to_string(&mut serve.stderr.take().expect("stderr"), &mut err)
            .expect("read stderr");
        err
    }

    /// Runs a CLI command that must succeed; returns its stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "dialgate {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    /// Imports a `lines` registry file.
    pub fn import(&self, registry: &str, numbers: &[&str], extra: &[&str]) -> String {
        let name = format!("import-{}.txt", uuid_like());
        let path = self.file(&name, &(numbers.join("\n") + "\n"));
        let path = path.to_str().unwrap().to_string();
        let mut args = vec![
            "registry",
            "import",
            "--registry",
            registry,
            "--file",
            &path,
        ];
        args.extend_from_slice(extra);
        // Block-list replaces must state their coverage: the whole country
        // unless the test says otherwise (a few numbers standing for the
        // national list, which the import would otherwise refuse as narrow).
        let replace = !extra.contains(&"--mode") || extra.contains(&"replace");
        if replace && !extra.contains(&"--covers") {
            match registry {
                "us-dnc" => args.extend_from_slice(&["--covers", "+1"]),
                "uk-tps" => args.extend_from_slice(&["--covers", "+44"]),
                _ => {}
            }
        }
        if replace && args.contains(&"--covers") && !args.contains(&"--allow-narrow-file") {
            args.push("--allow-narrow-file");
        }
        self.cli_ok(&args)
    }

    pub fn start(&self) -> TestServer {
        TestServer::start(self, None, &[])
    }

    /// Starts the server with at most `open_files` descriptors (`ulimit -n`,
    /// soft and hard, so the server cannot raise it).
    pub fn start_with_open_files(&self, open_files: u32) -> TestServer {
        TestServer::start(self, Some(open_files), &[])
    }

    /// Starts the server with these environment variables added.
    pub fn start_with_env(&self, env: &[(&str, &std::ffi::OsStr)]) -> TestServer {
        TestServer::start(self, None, env)
    }
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A running `dialgate serve` process.
pub struct TestServer {
    child: Option<Child>,
    pub grpc: String,
    pub http: String,
    stderr: mpsc::Receiver<String>,
}

impl TestServer {
    fn start(
        workspace: &Workspace,
        open_files: Option<u32>,
        env: &[(&str, &std::ffi::OsStr)],
    ) -> TestServer {
        let mut command = match open_files {
            None => Command::new(BIN),
            Some(n) => {
                let mut sh = Command::new("sh");
                sh.args(["-c", &format!("ulimit -n {n} && exec \"$0\" \"$@\""), BIN]);
                sh
            }
        };
        let mut child = command
            .arg("--config")
            .arg(workspace.config_path())
            .arg("serve")
            .env("DIALGATE_LOG", "info,dialgate=debug")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn dialgate serve");
        let stdout = child.stdout.take().expect("stdout");
        let (line_tx, line_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = line_tx.send(line);
            }
        });
        let stderr = child.stderr.take().expect("stderr");
        let (err_tx, err_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = err_tx.send(line);
            }
        });
        let line = line_rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| {
                let _ = child.kill();
                let log: Vec<String> = err_rx.try_iter().collect();
                panic!("server did not announce its addresses: {}", log.join("\n"))
            });
        let event: serde_json::Value = serde_json::from_str(&line).expect("listening line is JSON");
        assert_eq!(event["event"], "listening");
        TestServer {
            child: Some(child),
            grpc: format!("http://{}", event["grpc"].as_str().unwrap()),
            http: event["http"].as_str().unwrap().to_string(),
            stderr: err_rx,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub async fn gateway(&self) -> ComplianceGatewayClient<Channel> {
        ComplianceGatewayClient::connect(self.grpc.clone())
            .await
            .expect("connect gRPC")
    }

    pub async fn records(&self) -> ContactRecordsClient<Channel> {
        ContactRecordsClient::connect(self.grpc.clone())
            .await
            .expect("connect gRPC")
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.grpc.clone())
            .unwrap()
            .connect()
            .await
            .expect("connect gRPC")
    }

    /// `GET path` over HTTP/1.1; returns status code and body.
    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(&self.http, path)
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> (ExitStatus, Vec<String>) {
        let mut child = self.child.take().expect("running");
        signal(child.id(), "TERM");
        let status = wait_with_timeout(&mut child, Duration::from_secs(30));
        let log = self.stderr.iter().collect();
        (status, log)
    }

    /// Kills the process with SIGKILL (no chance to flush anything).
    pub fn kill9(mut self) {
        let mut child = self.child.take().expect("running");
        signal(child.id(), "KILL");
        wait_with_timeout(&mut child, Duration::from_secs(30));
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success());
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("server did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Minimal HTTP/1.1 GET.
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect HTTP");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read HTTP response");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    let body = if response
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(&body)
    } else {
        body
    };
    (status, body)
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
    out
}

/// A CheckCall request.
pub fn call(number: &str, caller_id: &str, campaign: &str) -> CheckCallRequest {
    CheckCallRequest {
        called_number: number.into(),
        caller_id: caller_id.into(),
        campaign_id: campaign.into(),
        request_id: String::new(),
    }
}

/// The reason codes of a response, in order.
pub fn codes(response: &CheckCallResponse) -> Vec<ReasonCode> {
    response
        .reasons
        .iter()
        .map(|r| ReasonCode::try_from(r.code).expect("known reason code"))
        .collect()
}

pub fn verdict(response: &CheckCallResponse) -> Verdict {
    Verdict::try_from(response.verdict).expect("known verdict")
}

/// Today (UTC) minus `days`, as YYYY-MM-DD.
pub fn days_ago(days: i64) -> String {
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    today
        .checked_sub(jiff::Span::new().days(days))
        .unwrap()
        .to_string()
}

/// The decision log export as parsed JSON lines.
pub fn export_jsonl(workspace: &Workspace, extra: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec!["audit", "export", "--format", "jsonl"];
    args.extend_from_slice(extra);
    workspace
        .cli_ok(&args)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// Runs `dialgate serve` on `ws`, which must refuse to start (exit with a
/// failure within 30 s): returns its stderr.
pub fn serve_refused(ws: &Workspace) -> String {
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(ws.config_path())
        .arg("serve")
        .env("DIALGATE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(!status.success());
            let mut stderr = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .unwrap();
            return stderr;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve did not refuse");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Screens one item over ScreenNumbers: its answer, or the status the call
/// or the stream ended with.
pub async fn screen_one(
    gateway: &mut ComplianceGatewayClient<Channel>,
    request: dialgate::proto::ScreenNumbersRequest,
) -> Result<dialgate::proto::ScreenNumbersResponse, tonic::Status> {
    gateway
        .screen_numbers(tokio_stream::iter(vec![request]))
        .await?
        .into_inner()
        .message()
        .await?
        .ok_or_else(|| tonic::Status::unknown("the stream ended without an answer"))
}
