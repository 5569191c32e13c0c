//! Test support (the `testing` feature): a scratch schema per test on the
//! database named by `STAMPS_TEST_POSTGRES_URL` (which
//! `scripts/with-postgres.sh` provides), and private clusters for tests
//! that stop the database.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use postgres::NoTls;

/// The variable naming the test database; `skip` skips PostgreSQL tests.
pub const URL_VAR: &str = "STAMPS_TEST_POSTGRES_URL";

/// The test database's URL, or `None` when there is none: the variable is
/// `skip`, or unset (a plain `cargo test`). The PostgreSQL tests then pass
/// without running, and say so once on the terminal (not in the captured
/// output, which a passing test does not show). `scripts/test.sh`, which
/// CI runs, always names a database (it starts one) or `skip` explicitly.
pub fn base_url() -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(url) if url != "skip" => Some(url),
        set => {
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                let why = if set.is_ok() { "is skip" } else { "is not set" };
                // Straight to the terminal: libtest captures eprintln!.
                let _ = writeln!(
                    std::io::stderr(),
                    "{URL_VAR} {why}: the PostgreSQL backend tests are skipped. \
                     scripts/test.sh runs them (it starts a throwaway PostgreSQL), \
                     as does any command wrapped in scripts/with-postgres.sh."
                );
            });
            None
        }
    }
}

/// A URL like `base` whose connections use a new, empty schema of their
/// own (through `search_path`), so tests sharing a database do not see
/// each other's tables.
pub fn scratch_url_on(base: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let schema = format!(
        "t_{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    );
    let mut client = postgres::Client::connect(base, NoTls).expect("connect to the test database");
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .expect("create a scratch schema");
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}options=-c%20search_path%3D{schema}")
}

/// [`scratch_url_on`] the test database, or `None` when skipped.
pub fn scratch_url() -> Option<String> {
    base_url().map(|base| scratch_url_on(&base))
}

/// A private PostgreSQL server, for tests that stop and start it. Uses the
/// binaries `scripts/with-postgres.sh` found (`STAMPS_TEST_POSTGRES_BIN`);
/// runs as the `postgres` user when the tests run as root. Stopped and
/// deleted on drop.
#[derive(Debug)]
pub struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_root: bool,
}

impl Cluster {
    /// Makes and starts a cluster on a free loopback port, or `None` when
    /// PostgreSQL tests are skipped.
    pub fn start() -> Option<Self> {
        let cluster = Self::make()?;
        cluster.resume();
        Some(cluster)
    }

    /// Like [`Cluster::start`], with `ssl = on`, the certificate chain
    /// `cert_pem` and its key `key_pem` (PEM), and TCP connections over
    /// TLS only (`hostssl` in `pg_hba.conf`): a plain one is refused.
    pub fn start_with_tls(cert_pem: &str, key_pem: &str) -> Option<Self> {
        let cluster = Self::make()?;
        let data = cluster.data();
        cluster.write(&data.join("server.crt"), cert_pem, 0o600);
        cluster.write(&data.join("server.key"), key_pem, 0o600);
        let conf = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
        cluster.write(
            &data.join("postgresql.conf"),
            &format!(
                "{conf}\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n"
            ),
            0o600,
        );
        cluster.write(
            &data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n",
            0o600,
        );
        cluster.resume();
        Some(cluster)
    }

    /// Writes a file of the cluster's, owned by the user its server runs as.
    fn write(&self, path: &Path, text: &str, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        if self.as_root {
            let status = Command::new("chown")
                .arg("postgres")
                .arg(path)
                .status()
                .unwrap();
            assert!(status.success());
        }
    }

    /// The cluster's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn make() -> Option<Self> {
        base_url()?;
        let bin = PathBuf::from(std::env::var("STAMPS_TEST_POSTGRES_BIN").expect(
            "STAMPS_TEST_POSTGRES_BIN: PostgreSQL's bin directory (scripts/with-postgres.sh \
             sets it when it finds the binaries; tests that stop a database need them)",
        ));
        let dir = tempfile::tempdir().unwrap();
        let as_root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        if as_root {
            let status = Command::new("chown")
                .arg("postgres")
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cluster = Self {
            dir,
            bin,
            port,
            as_root,
        };
        let data = cluster.data();
        cluster.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "stamps",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        Some(cluster)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn run(&self, tool: &str, args: &[&str]) -> bool {
        let program = self.bin.join(tool);
        let mut command = if self.as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        command
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// The URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://stamps@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server at once (`immediate`: as if it died).
    pub fn stop(&self) {
        let data = self.data();
        assert!(self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop"
            ]
        ));
    }

    /// Freezes the server (SIGSTOP to the postmaster and every backend): it
    /// keeps its connections open and answers nothing, as a hung host
    /// would. [`Cluster::unfreeze`] lets it go on; a frozen cluster is
    /// unfrozen when dropped.
    pub fn freeze(&self) {
        self.signal_all("STOP");
    }

    /// Lets a frozen server go on (SIGCONT).
    pub fn unfreeze(&self) {
        self.signal_all("CONT");
    }

    fn signal_all(&self, signal: &str) {
        let pid_file = self.data().join("postmaster.pid");
        let pid = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|text| text.lines().next().map(str::to_owned))
            .expect("the server's postmaster.pid");
        // Children first, so none is left running while its parent stops.
        let _ = Command::new("pkill")
            .args([&format!("-{signal}"), "-P", &pid])
            .status();
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status();
    }

    /// Starts the server again, on the same port, and waits until it
    /// accepts connections (bounded).
    pub fn resume(&self) {
        let data = self.data();
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log");
        assert!(
            self.run(
                "pg_ctl",
                &[
                    "-D",
                    data.to_str().unwrap(),
                    "-l",
                    log.to_str().unwrap(),
                    "-w",
                    "-t",
                    "60",
                    "-o",
                    &options,
                    "start"
                ]
            ),
            "pg_ctl start failed: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        wait_for(&self.url(), Duration::from_secs(30));
    }

    /// Its directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // A frozen server cannot stop: let it go on first (harmless if it
        // runs).
        if self.data().join("postmaster.pid").exists() {
            self.unfreeze();
        }
        let data = self.data();
        self.run(
            "pg_ctl",
            &["-D", data.to_str().unwrap(), "-m", "immediate", "stop"],
        );
    }
}

/// Waits (bounded) until `url` accepts a connection.
fn wait_for(url: &str, patience: Duration) {
    let deadline = Instant::now() + patience;
    loop {
        match postgres::Client::connect(url, NoTls) {
            // An answer, a refusal included (a server that takes TLS only).
            Ok(_) => return,
            Err(e) if e.as_db_error().is_some() => return,
            Err(e) if Instant::now() > deadline => panic!("PostgreSQL did not come up: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}
