//! The fixture of the end-to-end tests: the real `stamps-server` binary on
//! 127.0.0.1 with a port the OS picks and a temporary data directory, and
//! the real `stamps-admin` binary next to it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The secret every test server signs with.
pub const SECRET: &str = "an end-to-end test secret of at least 32 bytes";

/// The imported tokens' lookup secret of every test on PostgreSQL, where it
/// must be configured (the same for the server and stamps-admin).
pub const LOOKUP_SECRET: &str = "an end-to-end lookup secret, 32 bytes or more";

/// The environment stamps-admin gets besides the store: on PostgreSQL, the
/// lookup secret the server has.
fn admin_env(command: &mut Command) -> &mut Command {
    if on_postgres() {
        command.env("STAMPS_TOKENS__LOOKUP_SECRET", LOOKUP_SECRET);
    }
    command
}

/// How long a server may take to start or stop.
const PATIENCE: Duration = Duration::from_secs(30);

/// True when the tests run against PostgreSQL (`STAMPS_TEST_BACKEND=postgres`,
/// as `scripts/test.sh` does for the HTTP tests' second run): each data
/// directory then stands for a scratch schema of the test database, whose
/// URL it keeps in a file.
pub fn on_postgres() -> bool {
    std::env::var("STAMPS_TEST_BACKEND").is_ok_and(|b| b == "postgres")
}

/// The PostgreSQL store that `data` stands for, made on first use.
pub fn store_url(data: &Path) -> String {
    let file = data.join("test-store-url");
    if let Ok(url) = std::fs::read_to_string(&file) {
        return url;
    }
    let base = stamps_store_postgres::testing::base_url()
        .expect("STAMPS_TEST_BACKEND=postgres needs a test database");
    let url = stamps_store_postgres::testing::scratch_url_on(&base);
    std::fs::write(&file, &url).unwrap();
    url
}

/// How stamps-admin is told where the store of `data` is: the data
/// directory (through the server's admin socket when one runs), or on
/// PostgreSQL with no server running, the database itself.
pub fn store_args(data: &Path) -> Vec<std::ffi::OsString> {
    if on_postgres() && !data.join("admin.sock").exists() {
        vec!["--store-url".into(), store_url(data).into()]
    } else {
        vec!["--data-dir".into(), data.into()]
    }
}

pub fn server_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_stamps-server"))
}

/// The admin binary, built on demand when this package is tested alone.
pub fn admin_binary() -> PathBuf {
    let path = server_binary().with_file_name("stamps-admin");
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "stamps-admin"])
            .status()
            .expect("cargo build -p stamps-admin");
        assert!(status.success());
    }
    path
}

/// A running server.
pub struct Server {
    pub child: Child,
    pub url: String,
    pub data: Option<tempfile::TempDir>,
    pub logs: Arc<Mutex<String>>,
}

impl Server {
    /// Starts a server on a fresh data directory.
    pub fn start() -> Server {
        Self::start_in(tempfile::tempdir().unwrap(), &[])
    }

    /// Starts a server on `data`, with extra environment variables (an
    /// empty value removes the variable).
    pub fn start_in(data: tempfile::TempDir, env: &[(&str, &str)]) -> Server {
        Self::launch(Command::new(server_binary()), data, env)
    }

    /// As [`Server::start_in`], with `--config FILE`.
    pub fn start_with_config(
        data: tempfile::TempDir,
        config: &Path,
        env: &[(&str, &str)],
    ) -> Server {
        let mut command = Command::new(server_binary());
        command.arg("--config").arg(config);
        Self::launch(command, data, env)
    }

    /// As [`Server::start_in`], with SIGXFSZ ignored (through `sh`, which
    /// then execs the server under the same pid), so that a file size limit
    /// (RLIMIT_FSIZE, set with `prlimit`) makes its writes fail with EFBIG
    /// instead of killing it.
    pub fn start_ignoring_sigxfsz(data: tempfile::TempDir, env: &[(&str, &str)]) -> Server {
        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            .arg("trap '' XFSZ; exec \"$0\"")
            .arg(server_binary());
        Self::launch(command, data, env)
    }

    fn launch(mut command: Command, data: tempfile::TempDir, env: &[(&str, &str)]) -> Server {
        command
            .env_clear()
            .env("STAMPS_LISTEN", "127.0.0.1:0")
            .env("STAMPS_DATA_DIR", data.path())
            .env("STAMPS_JWT__SECRET", SECRET)
            .env("STAMPS_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if on_postgres() {
            command
                .env("STAMPS_STORE__BACKEND", "postgres")
                .env("STAMPS_STORE__URL", store_url(data.path()))
                .env("STAMPS_TOKENS__LOOKUP_SECRET", LOOKUP_SECRET);
        }
        for (k, v) in env {
            if v.is_empty() {
                command.env_remove(k);
            } else {
                command.env(k, v);
            }
        }
        let mut child = command.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // Text or JSON lines: the address ends at a space or a quote.
                if let Some((_, rest)) = line.split_once("listening on ") {
                    let addr = rest.split(['"', ' ']).next().unwrap_or_default();
                    let _ = tx.send(addr.to_owned());
                }
                let mut logs = sink.lock().unwrap();
                logs.push_str(&line);
                logs.push('\n');
            }
        });
        let url = match rx.recv_timeout(PATIENCE) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                panic!("server did not start; logs:\n{}", logs.lock().unwrap());
            }
        };
        if on_postgres() {
            let logs = logs.lock().unwrap();
            assert!(
                logs.contains("store: PostgreSQL"),
                "not on PostgreSQL:\n{logs}"
            );
        }
        Server {
            child,
            url,
            data: Some(data),
            logs,
        }
    }

    pub fn data_dir(&self) -> &Path {
        self.data.as_ref().unwrap().path()
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// Waits (10 s at most) for `needle` in the log: the server writes its
    /// lines from a writer thread, a moment after what they report.
    pub fn await_log(&self, needle: &str) {
        eventually(Duration::from_secs(10), needle, || {
            self.logs().contains(needle)
        });
    }

    /// Runs `stamps-admin --data-dir <data> --json ARGS` and parses its output.
    pub fn admin(&self, args: &[&str]) -> Value {
        admin_json(self.data_dir(), args)
    }

    /// SIGTERM, then waits (bounded) for the exit.
    pub fn terminate(mut self) -> (ExitStatus, tempfile::TempDir, String) {
        signal(&self.child, "TERM");
        let status = wait_bounded(&mut self.child);
        let logs = self.logs();
        (status, self.data.take().unwrap(), logs)
    }

    /// SIGKILL, then waits for the exit.
    pub fn kill(mut self) -> tempfile::TempDir {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.data.take().unwrap()
    }

    pub fn post(&self, path: &str) -> reqwest::blocking::RequestBuilder {
        client().post(format!("{}{path}", self.url))
    }

    /// get-access-token for merchant 1: the status, and the JWT on a 200.
    pub fn try_access_token(&self, token: &str) -> (u16, Option<String>) {
        let response = self
            .post("/api/auth/get-access-token/")
            .header("Content-Type", "application/json")
            .body(serde_json::json!({"token": token, "crm_merchant_id": 1}).to_string())
            .send()
            .unwrap();
        let (status, body, _) = json_of(response);
        let jwt = body["access_token"].as_str().map(str::to_owned);
        (status, jwt)
    }

    /// get-access-token for merchant 1, which must succeed.
    pub fn access_token(&self, token: &str) -> String {
        match self.try_access_token(token) {
            (200, Some(jwt)) => jwt,
            other => panic!("get-access-token failed: {other:?}"),
        }
    }

    /// The status of `POST /api/ping` with this `Authorization` header.
    pub fn ping(&self, authorization: &str) -> u16 {
        self.post("/api/ping")
            .header("Authorization", authorization)
            .send()
            .unwrap()
            .status()
            .as_u16()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

pub fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

pub fn wait_bounded(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "process did not exit in time");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn admin_output(data: &Path, args: &[&str]) -> Output {
    admin_env(&mut Command::new(admin_binary()))
        .args(store_args(data))
        .args(args)
        .output()
        .unwrap()
}

/// `stamps-admin --data-dir <data> ARGS` with `input` on its stdin, and
/// the test servers' secret (for `jwt inspect`).
pub fn admin_output_with_input(data: &Path, args: &[&str], input: &str) -> Output {
    use std::io::Write;
    let mut child = admin_env(&mut Command::new(admin_binary()))
        .args(store_args(data))
        .env("STAMPS_JWT__SECRET", SECRET)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

pub fn admin_json(data: &Path, args: &[&str]) -> Value {
    let mut full = vec!["--json"];
    full.extend_from_slice(args);
    let out = admin_output(data, &full);
    assert!(
        out.status.success(),
        "stamps-admin {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Merchant 1 "My Merchant", user 5870, and a static token for them.
pub fn provision(data: &Path) -> String {
    admin_json(
        data,
        &["merchant", "add", "--name", "My Merchant", "--id", "1"],
    );
    admin_json(data, &["user", "add", "--name", "user5870", "--id", "5870"]);
    let created = admin_json(
        data,
        &["token", "create", "--user", "5870", "--merchant", "1"],
    );
    created["token"].as_str().unwrap().to_owned()
}

/// Response status and JSON body.
pub fn json_of(response: reqwest::blocking::Response) -> (u16, Value, reqwest::header::HeaderMap) {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, body, headers)
}

/// The shell lines of the block between `<!-- MARKER:begin -->` and
/// `<!-- MARKER:end -->` in `doc` (a path from the repository root), code
/// fences left out: the README quickstart, the OPERATIONS procedures.
pub fn doc_block(doc: &str, marker: &str) -> Vec<String> {
    let path = format!("{}/../../{doc}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    let block = text
        .split(&format!("<!-- {marker}:begin -->"))
        .nth(1)
        .and_then(|rest| rest.split(&format!("<!-- {marker}:end -->")).next())
        .unwrap_or_else(|| panic!("{doc} has no {marker} block"));
    block
        .lines()
        .filter(|line| !line.starts_with("```"))
        .map(str::to_owned)
        .collect()
}

/// Sets the file size limit (RLIMIT_FSIZE, soft) of process `pid`; the hard
/// limit stays unlimited, so that it can be raised again.
pub fn set_file_size_limit(pid: u32, soft: &str) {
    let status = Command::new("prlimit")
        .arg("--pid")
        .arg(pid.to_string())
        .arg(format!("--fsize={soft}:unlimited"))
        .status()
        .expect("prlimit (util-linux) is needed");
    assert!(status.success(), "prlimit --fsize={soft} failed");
}

/// Polls `ready` every 50 ms until it holds or `within` has passed.
pub fn eventually(within: Duration, what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ready() {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `Authorization` value for a JWT.
pub fn bearer_of(jwt: &str) -> String {
    format!("Bearer {jwt}")
}
