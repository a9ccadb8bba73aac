//! A real PostgreSQL server for the tests: Debian's `postgresql` package,
//! `initdb` into a temporary directory, listening on a free port of
//! 127.0.0.1 (and a Unix socket in that directory), stopped on drop.
//! Run as root (CI), the server runs as the `postgres` user.

// Not every test uses every helper.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A running PostgreSQL cluster of its own.
pub struct PgServer {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    as_postgres_user: bool,
}

/// The newest `bin` directory of Debian's PostgreSQL packages.
fn binaries() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl PgServer {
    /// Starts a cluster, or `None` (the caller skips) when PostgreSQL is not
    /// installed and `DIALGATE_REQUIRE_POSTGRES` is not set (CI sets it).
    pub fn start() -> Option<PgServer> {
        let Some(bin) = binaries() else {
            assert!(
                std::env::var_os("DIALGATE_REQUIRE_POSTGRES").is_none(),
                "PostgreSQL is required (DIALGATE_REQUIRE_POSTGRES) but /usr/lib/postgresql/*/bin/initdb is missing"
            );
            eprintln!("skipped: PostgreSQL is not installed (apt-get install postgresql)");
            return None;
        };
        let as_postgres_user = running_as_root();
        let dir = tempfile::Builder::new()
            .prefix("dialgate-pg")
            .tempdir()
            .expect("temp dir");
        if as_postgres_user {
            // The server's own user must own its directory.
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(status.success());
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = PgServer {
            bin,
            dir,
            port,
            as_postgres_user,
        };
        server.run(
            "initdb",
            &[
                "-D",
                &server.data().display().to_string(),
                "-U",
                "dialgate",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        std::fs::write(
            server.data().join("postgresql.auto.conf"),
            format!(
                "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\nfsync = on\nsynchronous_commit = on\nmax_connections = 200\nshared_buffers = 64MB\n",
                server.dir.path().display()
            ),
        )
        .unwrap();
        server.start_again();
        server.run(
            "createdb",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "dialgate",
                "dialgate",
            ],
        );
        Some(server)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let mut command = if self.as_postgres_user {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(self.bin.join(tool));
            c
        } else {
            Command::new(self.bin.join(tool))
        };
        let output = command
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{tool}: {e}"));
        assert!(
            output.status.success(),
            "{tool} {args:?}: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// The connection URL (no password: the test cluster trusts local users).
    pub fn url(&self) -> String {
        format!("postgres://dialgate@127.0.0.1:{}/dialgate", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server now (fast shutdown: sessions are cut).
    pub fn stop(&self) {
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data().display().to_string(),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
        );
    }

    /// Starts it again on the same port and data.
    pub fn start_again(&self) {
        let log = self.dir.path().join("server.log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data().display().to_string(),
                "-l",
                &log.display().to_string(),
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
    }

    /// Puts the database on a new timeline, as a promoted standby or a
    /// point-in-time recovery is: stops it, then starts it in archive
    /// recovery (no archive: it replays its own WAL), which ends by
    /// promoting itself onto timeline + 1.
    pub fn start_a_new_timeline(&self) {
        self.stop();
        let data = self.data();
        std::fs::write(data.join("recovery.signal"), "").unwrap();
        let mut conf = std::fs::read_to_string(data.join("postgresql.auto.conf")).unwrap();
        if !conf.contains("restore_command") {
            conf.push_str("restore_command = '/bin/false'\n");
            std::fs::write(data.join("postgresql.auto.conf"), conf).unwrap();
        }
        if self.as_postgres_user {
            let status = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(data.join("recovery.signal"))
                .arg(data.join("postgresql.auto.conf"))
                .status()
                .expect("chown");
            assert!(status.success());
        }
        self.start_again();
    }

    /// Turns TLS on with this certificate and key (PEM), then restarts.
    pub fn enable_tls(&self, cert_pem: &str, key_pem: &str) {
        let data = self.data();
        std::fs::write(data.join("server.crt"), cert_pem).unwrap();
        std::fs::write(data.join("server.key"), key_pem).unwrap();
        let mut conf = std::fs::read_to_string(data.join("postgresql.auto.conf")).unwrap();
        conf.push_str("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        std::fs::write(data.join("postgresql.auto.conf"), conf).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            data.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        if self.as_postgres_user {
            let status = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(data.join("server.crt"))
                .arg(data.join("server.key"))
                .status()
                .expect("chown");
            assert!(status.success());
        }
        self.stop();
        self.start_again();
    }

    /// Runs one SQL statement through `psql` and returns its output
    /// (unaligned, tuples only).
    pub fn psql(&self, sql: &str) -> String {
        let output = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(self.url())
            .args(["-c", sql])
            .output()
            .expect("psql");
        assert!(
            output.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    /// The directory the cluster lives in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let mut command = if self.as_postgres_user {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"])
                .arg(self.bin.join("pg_ctl"));
            c
        } else {
            Command::new(self.bin.join("pg_ctl"))
        };
        let _ = command
            .args([
                "-D",
                &self.data().display().to_string(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
