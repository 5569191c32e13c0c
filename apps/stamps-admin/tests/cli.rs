//! Drives the built `stamps-admin` binary in temporary data directories.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};
use stamps_core::StaticToken;
use stamps_store::{
    AccountKind, AdminShutdown, AdminSocket, Refusal, SecretHasher, Store, TokenCheck, TokenFilter,
    admin_socket_path,
};
use stamps_store_sled::SledStore;
use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_stamps-admin");

/// A temporary directory holding a data directory (`data`) and room for
/// other files beside it.
struct Env {
    tmp: TempDir,
}

impl Env {
    fn new() -> Self {
        Self {
            tmp: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.tmp.path()
    }

    fn data(&self) -> PathBuf {
        self.path().join("data")
    }

    /// Runs `stamps-admin --data-dir <data> args...`, with stdin fed `input`.
    fn run_with_input(&self, args: &[&str], input: &[u8]) -> Output {
        run_in(&self.data(), args, input)
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_with_input(args, b"")
    }

    /// Runs with `--json`, expects success and exactly one JSON document.
    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        json_of(&out, args)
    }

    /// Runs without `--json`, expects success; returns stdout.
    fn human(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Expects a refusal: status 1, nothing on stdout, exactly one line
    /// `error: ...` on stderr, and the store unchanged. Returns the line.
    fn fails(&self, args: &[&str]) -> String {
        let before = self.export();
        let out = self.run(args);
        let line = refusal(&out, args);
        assert_eq!(self.export(), before, "{args:?} changed the store");
        line
    }

    /// Like [`Env::fails`], with stdin fed `input`.
    fn fails_with_input(&self, args: &[&str], input: &[u8]) -> String {
        let before = self.export();
        let out = self.run_with_input(args, input);
        let line = refusal(&out, args);
        assert_eq!(self.export(), before, "{args:?} changed the store");
        line
    }

    /// `--json` ARGS with stdin fed `input`, which must succeed.
    fn json_with_input(&self, args: &[&str], input: &[u8]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.run_with_input(&all, input);
        json_of(&out, args)
    }

    /// The whole store, as `export` writes it.
    fn export(&self) -> String {
        self.human(&["export"])
    }

    /// Merchants 1 and 2, users 5870 and 5871.
    /// `populate`, then a labelled token for user 5870 at merchant 1 and
    /// an unlabelled one for user 5871 at merchant 2.
    fn populate_with_two_tokens(&self) -> (Value, Value) {
        self.populate();
        let first = self.json(&[
            "token",
            "create",
            "--user",
            "5870",
            "--merchant",
            "1",
            "--label",
            "till 3",
        ]);
        let second = self.json(&["token", "create", "--user", "5871", "--merchant", "2"]);
        (first, second)
    }

    fn populate(&self) {
        self.json(&["merchant", "add", "--name", "My Merchant", "--id", "1"]);
        self.json(&["merchant", "add", "--name", "Other Merchant", "--id", "2"]);
        self.json(&["user", "add", "--name", "user5870", "--id", "5870"]);
        self.json(&["user", "add", "--name", "user5871", "--id", "5871"]);
    }
}

fn run_in(data: &Path, args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// Opens the store in this process once no other holds its lock. The CLI
/// that used it last has exited, yet under a full parallel test run the
/// open was once refused as `Locked`: wait for the lock, bounded.
fn open_once_released(data: &Path) -> SledStore {
    SledStore::open_with_patience(
        data,
        SecretHasher::owasp(),
        Arc::new(stamps_core::SystemClock),
        Duration::from_secs(10),
    )
    .unwrap()
}

fn json_of(out: &Output, args: &[&str]) -> Value {
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // One document: the whole of stdout parses as one value.
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn refusal(out: &Output, args: &[&str]) -> String {
    let stderr = String::from_utf8(out.stderr.clone()).unwrap();
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    assert!(
        out.stdout.is_empty(),
        "{args:?} printed {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?}: {stderr:?}");
    assert!(lines[0].starts_with("error: "), "{args:?}: {stderr:?}");
    assert!(stderr.ends_with('\n'));
    lines[0].to_owned()
}

fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

const TOKEN_KEYS: [&str; 9] = [
    "created_at",
    "expires_at",
    "id",
    "imported",
    "label",
    "last_used_at",
    "merchant_id",
    "revoked",
    "user_id",
];

/// Checks `created_at` is RFC 3339 UTC to the second, within the test's run.
fn check_created_at(value: &Value, started: SystemTime) {
    let text = value["created_at"].as_str().unwrap();
    assert_eq!(text.len(), "2022-07-08T02:10:16Z".len(), "{text}");
    assert!(text.ends_with('Z'), "{text}");
    let at = humantime::parse_rfc3339(text).unwrap();
    let floor = started - Duration::from_secs(1);
    assert!(at >= floor && at <= SystemTime::now(), "{text}");
}

/// The secrets of a `token create --json` answer: the whole token and its
/// 32-character secret part.
fn secrets(created: &Value) -> [String; 2] {
    let token = created["token"].as_str().unwrap().to_owned();
    let parsed = StaticToken::parse(&token).unwrap();
    let secret = parsed.secret().expose_secret().to_owned();
    assert_eq!(secret.len(), 32);
    [token, secret]
}

fn account_commands(kind: &str, given_id: u64) {
    let env = Env::new();
    let name = format!("first {kind}");
    let added = env.json(&[kind, "add", "--name", &name, "--id", &given_id.to_string()]);
    assert_eq!(added, json!({"id": given_id, "name": name, "active": true}));
    assert_eq!(added["id"], given_id);
    assert_eq!(added["name"], name.as_str());
    assert_eq!(added["active"], true);

    // Without --id, the next free one.
    let allocated = env.json(&[kind, "add", "--name", "Ünïcödé 2"]);
    assert_eq!(
        allocated,
        json!({"id": given_id + 1, "name": "Ünïcödé 2", "active": true})
    );

    let list = env.json(&[kind, "list"]);
    assert_eq!(list, json!([added, allocated]));

    let disabled = env.json(&[kind, "disable", &given_id.to_string()]);
    assert_eq!(
        disabled,
        json!({"id": given_id, "name": name, "active": false})
    );
    let list = env.json(&[kind, "list"]);
    assert_eq!(list[0]["active"], false);
    assert_eq!(list[1]["active"], true);

    // Disabling twice is not an error.
    assert_eq!(
        env.json(&[kind, "disable", &given_id.to_string()]),
        disabled
    );

    let enabled = env.json(&[kind, "enable", &given_id.to_string()]);
    assert_eq!(enabled, added);
    assert_eq!(env.json(&[kind, "list"]), json!([added, allocated]));

    // The other kind is a separate namespace.
    let other = if kind == "merchant" {
        "user"
    } else {
        "merchant"
    };
    assert_eq!(env.json(&[other, "list"]), json!([]));
}

#[test]
fn merchant_commands_print_json_records() {
    account_commands("merchant", 1);
}

#[test]
fn user_commands_print_json_records() {
    account_commands("user", 5870);
}

#[test]
fn token_commands_print_json_records() {
    let env = Env::new();
    env.populate();
    let started = SystemTime::now();

    let a = env.json(&[
        "token",
        "create",
        "--user",
        "5870",
        "--merchant",
        "1",
        "--label",
        "till 3",
    ]);
    let mut created_keys = TOKEN_KEYS.to_vec();
    created_keys.push("token");
    created_keys.sort_unstable();
    assert_eq!(keys(&a), created_keys);
    let a_id = a["id"].as_str().unwrap();
    assert_eq!(a_id.len(), 16);
    let [a_token, _] = secrets(&a);
    assert!(a_token.starts_with(&format!("stmp_{a_id}_")), "{a_token}");
    assert_eq!(StaticToken::parse(&a_token).unwrap().id().as_str(), a_id);
    assert_eq!(a["user_id"], 5870);
    assert_eq!(a["merchant_id"], 1);
    assert_eq!(a["label"], "till 3");
    assert_eq!(a["revoked"], false);
    check_created_at(&a, started);

    let b = env.json(&["token", "create", "--user", "5871", "--merchant", "2"]);
    let b_id = b["id"].as_str().unwrap();
    assert_ne!(a_id, b_id);
    assert_eq!(b["user_id"], 5871);
    assert_eq!(b["merchant_id"], 2);
    assert_eq!(b["label"], Value::Null);
    check_created_at(&b, started);

    // The records as listed: the same fields, without the token.
    let record = |created: &Value| {
        let mut r = created.clone();
        r.as_object_mut().unwrap().remove("token");
        r
    };
    let all = env.json(&["token", "list"]);
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 2);
    for t in all {
        assert_eq!(keys(t), TOKEN_KEYS);
    }
    let listed_a = all.iter().find(|t| t["id"] == a_id).unwrap();
    let listed_b = all.iter().find(|t| t["id"] == b_id).unwrap();
    assert_eq!(listed_a, &record(&a));
    assert_eq!(listed_b, &record(&b));

    assert_eq!(
        env.json(&["token", "list", "--user", "5870"]),
        json!([record(&a)])
    );
    assert_eq!(
        env.json(&["token", "list", "--merchant", "2"]),
        json!([record(&b)])
    );
    assert_eq!(
        env.json(&["token", "list", "--user", "5871", "--merchant", "2"]),
        json!([record(&b)])
    );
    assert_eq!(
        env.json(&["token", "list", "--user", "5870", "--merchant", "2"]),
        json!([])
    );
    assert_eq!(env.json(&["token", "list", "--user", "9999"]), json!([]));

    let revoked = env.json(&["token", "revoke", a_id]);
    let mut expected = record(&a);
    expected["revoked"] = json!(true);
    assert_eq!(revoked, expected);
    // Revoking twice is not an error.
    assert_eq!(env.json(&["token", "revoke", a_id]), expected);
    assert_eq!(
        env.json(&["token", "list", "--user", "5870"]),
        json!([expected])
    );
    assert_eq!(
        env.json(&["token", "list", "--user", "5871"]),
        json!([record(&b)])
    );

    // No listing ever shows a secret or a hash.
    let listing = env.run(&["--json", "token", "list"]);
    let listing = String::from_utf8(listing.stdout).unwrap();
    for secret in secrets(&a).iter().chain(&secrets(&b)) {
        assert!(!listing.contains(secret.as_str()));
    }
    assert!(!listing.contains("argon2"), "{listing}");
    assert!(!listing.contains("hash"), "{listing}");
}

#[test]
fn human_output_is_readable() {
    let env = Env::new();
    let added = env.human(&["merchant", "add", "--name", "My Merchant", "--id", "1"]);
    assert!(added.contains("My Merchant"), "{added}");
    assert_eq!(env.human(&["user", "list"]).trim(), "No users.");
    env.human(&["user", "add", "--name", "Jane Doe", "--id", "5870"]);
    env.human(&["user", "add", "--name", "John Roe"]);
    let users = env.human(&["user", "list"]);
    for text in ["Jane Doe", "John Roe", "5870", "5871", "active"] {
        assert!(users.contains(text), "{text} missing from {users}");
    }
    let disabled = env.human(&["user", "disable", "5871"]);
    assert!(
        disabled.contains("John Roe") && disabled.contains("disabled"),
        "{disabled}"
    );
    assert_eq!(env.human(&["token", "list"]).trim(), "No tokens.");

    let created = env.human(&[
        "token",
        "create",
        "--user",
        "5870",
        "--merchant",
        "1",
        "--label",
        "front desk",
    ]);
    // The token on a line of its own, and a word that it will not return.
    let token_lines: Vec<&str> = created.lines().filter(|l| l.starts_with("stmp_")).collect();
    assert_eq!(token_lines.len(), 1, "{created}");
    let token = StaticToken::parse(token_lines[0]).unwrap();
    let secret = token.secret().expose_secret();
    assert!(created.contains("shown only once"), "{created}");
    assert!(created.contains("will not be shown again"), "{created}");
    assert!(created.contains("front desk"), "{created}");

    let listed = env.human(&["token", "list"]);
    for text in [token.id().as_str(), "front desk", "5870"] {
        assert!(listed.contains(text), "{text} missing from {listed}");
    }
    assert!(!listed.contains(secret), "{listed}");
    let revoked = env.human(&["token", "revoke", token.id().as_str()]);
    assert!(
        revoked.contains(token.id().as_str()) && revoked.contains("yes"),
        "{revoked}"
    );
    assert!(!revoked.contains(secret));
}

#[test]
fn bad_input_is_refused_with_one_line_and_changes_nothing() {
    let env = Env::new();
    env.populate();
    let too_long = "x".repeat(201);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["token", "create", "--user", "99", "--merchant", "1"],
            "no user with id 99",
        ),
        (
            vec!["token", "create", "--user", "5870", "--merchant", "99"],
            "no merchant with id 99",
        ),
        (
            vec![
                "token",
                "create",
                "--user",
                "5870",
                "--merchant",
                "1",
                "--label",
                "",
            ],
            "invalid label",
        ),
        (
            vec!["merchant", "add", "--name", "Again", "--id", "1"],
            "a merchant with id 1 already exists",
        ),
        (
            vec!["user", "add", "--name", "Again", "--id", "5870"],
            "a user with id 5870 already exists",
        ),
        (
            vec!["user", "add", "--name", "Zero", "--id", "0"],
            "invalid user id 0",
        ),
        (
            vec![
                "merchant",
                "add",
                "--name",
                "Max",
                "--id",
                "18446744073709551615",
            ],
            "invalid merchant id",
        ),
        (
            vec!["merchant", "add", "--name", ""],
            "invalid name: must not be empty",
        ),
        (
            vec!["user", "add", "--name", &too_long],
            "invalid name: must be at most 200 characters",
        ),
        (
            vec!["merchant", "add", "--name", "bell\u{7}"],
            "invalid name: must not contain control characters",
        ),
        (
            vec!["user", "add", "--name", "two\nlines"],
            "invalid name: must not contain control characters",
        ),
        (vec!["merchant", "disable", "99"], "no merchant with id 99"),
        (vec!["user", "enable", "99"], "no user with id 99"),
        (
            vec!["token", "revoke", "not-a-token-id"],
            "not a valid token id",
        ),
        (
            vec!["token", "revoke", "0123456789ABCDEF"],
            "not a valid token id",
        ),
        (
            vec!["token", "revoke", "0123456789abcdef"],
            "no token with id 0123456789abcdef",
        ),
    ];
    for (args, expected) in &cases {
        let line = env.fails(args);
        assert!(line.contains(expected), "{args:?}: {line}");
        // The same with --json: still one line on stderr, nothing on stdout.
        let mut json_args = vec!["--json"];
        json_args.extend_from_slice(args);
        assert_eq!(env.fails(&json_args), line);
    }

    // A whole token given as an id is refused without repeating it.
    let token = env.json(&["token", "create", "--user", "5870", "--merchant", "1"]);
    let [whole, secret] = secrets(&token);
    for text in [&whole, &secret] {
        let line = env.fails(&["token", "revoke", text]);
        assert!(line.contains("not a valid token id"), "{line}");
        assert!(!line.contains(secret.as_str()), "{line}");
    }

    // The limits themselves are fine.
    let longest = "é".repeat(200);
    let added = env.json(&["merchant", "add", "--name", &longest]);
    assert_eq!(added["name"], longest.as_str());
    assert_eq!(added["id"], 3);
}

#[test]
fn usage_errors_keep_clap_behaviour() {
    let env = Env::new();
    for args in [
        vec!["merchant", "add"],
        vec!["merchant", "disable", "abc"],
        vec!["user", "add", "--name", "x", "--id", "-1"],
        vec!["token", "create", "--user", "1"],
        vec!["frobnicate"],
    ] {
        let out = env.run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty());
    }
    let out = Command::new(BIN)
        .args(["merchant", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--data-dir"));
}

#[test]
fn every_command_explains_itself_with_an_example() {
    let commands: &[&[&str]] = &[
        &[],
        &["merchant"],
        &["merchant", "add"],
        &["merchant", "list"],
        &["merchant", "disable"],
        &["merchant", "enable"],
        &["user"],
        &["user", "add"],
        &["user", "list"],
        &["user", "disable"],
        &["user", "enable"],
        &["token"],
        &["token", "create"],
        &["token", "list"],
        &["token", "revoke"],
        &["export"],
        &["import"],
    ];
    for command in commands {
        let out = Command::new(BIN)
            .args(*command)
            .arg("--help")
            .output()
            .unwrap();
        assert!(out.status.success(), "{command:?}");
        let help = String::from_utf8(out.stdout).unwrap();
        assert!(help.contains("Example"), "{command:?}: {help}");
        assert!(
            help.contains("stamps-admin --data-dir"),
            "{command:?}: {help}"
        );
        if let Some(first) = command.first() {
            let example = format!("stamps-admin --data-dir ./stamps-data {first}");
            assert!(help.contains(&example), "{help}");
        }
        if let [kind @ ("merchant" | "user"), _] = command {
            let other = if *kind == "merchant" {
                "user"
            } else {
                "merchant"
            };
            assert!(
                !help.contains(&format!("{other} ")),
                "{command:?} speaks of {other}: {help}"
            );
        }
    }
}

/// Every byte of every file under `dir`, file by file.
fn all_files(dir: &Path, found: &mut Vec<(PathBuf, Vec<u8>)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            all_files(&entry.path(), found);
        } else if kind.is_file() {
            found.push((entry.path(), std::fs::read(entry.path()).unwrap()));
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The Stamps docs' example token, and a Django REST framework key.
const SEED_TOKEN: &str = "23095sgtr95402mkdls954002";
const DRF_KEY: &str = "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b";

#[test]
fn tokens_of_an_existing_deployment_are_imported_all_or_nothing_and_never_shown() {
    let env = Env::new();
    env.populate();
    let import = ["token", "import", "--user", "5870", "--merchant", "1"];
    let record = env.json_with_input(
        &[&import[..], &["--label", "pos 7"]].concat(),
        format!("{SEED_TOKEN}\n").as_bytes(),
    );
    assert_eq!(keys(&record), TOKEN_KEYS);
    assert_eq!(record["imported"], true);
    assert_eq!(record["label"], "pos 7");
    let id = record["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 16);

    // Refused with a clear line, nothing imported; the text never echoed.
    for (input, says) in [
        (format!("{SEED_TOKEN}\n"), "already stored"),
        ("short\n".to_owned(), "16 to 256 characters"),
        (
            "stmp_0123456789abcdefghjk\n".to_owned(),
            "must not start with stmp_",
        ),
        ("with a space inside it\n".to_owned(), "printable ASCII"),
        (format!("{DRF_KEY}\n{DRF_KEY}x\n"), "more than one line"),
        (String::new(), "on stdin"),
    ] {
        let line = env.fails_with_input(&import, input.as_bytes());
        assert!(line.contains(says), "{line}");
        assert!(
            !line.contains(SEED_TOKEN) && !line.contains(DRF_KEY),
            "{line}"
        );
    }
    let line = env.fails_with_input(
        &["token", "import", "--user", "9", "--merchant", "1"],
        format!("{DRF_KEY}\n").as_bytes(),
    );
    assert!(line.contains("no user with id 9"), "{line}");
    let line = env.fails_with_input(
        &[&import[..], &["--expires-at", "2001-01-01T00:00:00Z"]].concat(),
        format!("{DRF_KEY}\n").as_bytes(),
    );
    assert!(line.contains("the expiry must be in the future"), "{line}");

    // A file: every line good, or nothing at all, refused by line number.
    let good = format!(
        "{{\"token\": \"{DRF_KEY}\", \"user_id\": 5870, \"merchant_id\": 1, \"label\": \"api\"}}\n\
         \n\
         {{\"token\": \"drf-key-of-user-5871-abcdef\", \"user_id\": 5871, \"merchant_id\": 2, \"expires_at\": \"2100-01-01T09:00:00+09:00\"}}\n"
    );
    for (bad, line_no) in [
        (
            format!("{good}{{\"token\": \"{DRF_KEY}\", \"user_id\": 5870, \"merchant_id\": 1}}\n"),
            4,
        ),
        (
            format!(
                "{good}{{\"token\": \"{SEED_TOKEN}\", \"user_id\": 5870, \"merchant_id\": 1}}\n"
            ),
            4,
        ),
        (
            format!(
                "{good}{{\"token\": \"another-good-token-0000\", \"user_id\": 5870, \"merchant_id\": 3}}\n"
            ),
            4,
        ),
        (
            format!("{good}{{\"token\": \"{DRF_KEY}9\", \"user\": 5870}}\n"),
            4,
        ),
        (
            format!(
                "{{\"token\": \"{DRF_KEY}\", \"user_id\": 5870, \"merchant_id\": 1, \"expires_at\": \"soon\"}}\n"
            ),
            1,
        ),
    ] {
        let line = env.fails_with_input(&["token", "import-file", "-"], bad.as_bytes());
        assert!(line.contains(&format!("line {line_no}")), "{line}");
        assert!(
            !line.contains(DRF_KEY) && !line.contains(SEED_TOKEN),
            "{line}"
        );
    }
    let imported = env.json_with_input(&["token", "import-file", "-"], good.as_bytes());
    let imported = imported.as_array().unwrap();
    assert_eq!(imported.len(), 2);
    assert_eq!(imported[1]["expires_at"], "2100-01-01T00:00:00Z");
    let listed = env.json(&["token", "list"]);
    assert_eq!(listed.as_array().unwrap().len(), 3);

    // Checked like issued tokens, by their text; revoked by their id.
    let check = |text: &str| {
        let out = env.run_with_input(&["--json", "token", "check", "-"], text.as_bytes());
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    assert_eq!(check(SEED_TOKEN)["status"], "live");
    assert_eq!(check(SEED_TOKEN)["id"], id.as_str());
    assert_eq!(check("23095sgtr95402mkdls954003")["status"], "unknown");
    env.json(&["token", "revoke", &id]);
    assert_eq!(check(SEED_TOKEN)["status"], "revoked");

    // Never printed: not in any output, the export, or the audit trail.
    let human = env.human(&["token", "list"]);
    let all = format!("{listed}{human}{}{}", env.export(), env.human(&["audit"]));
    for text in [SEED_TOKEN, DRF_KEY, "drf-key-of-user-5871-abcdef"] {
        assert!(!all.contains(text), "{text} shown");
    }
    assert!(env.human(&["audit"]).contains("token.import"));
}

#[test]
fn unused_since_lists_the_live_tokens_nobody_used_lately() {
    // A store whose tokens were made long ago: one used an hour ago, one
    // never, one revoked; and one made now (an export edited, imported).
    let old = Env::new();
    let (used, never) = old.populate_with_two_tokens();
    let gone = old.json(&["token", "create", "--user", "5870", "--merchant", "1"]);
    old.json(&["token", "revoke", gone["id"].as_str().unwrap()]);
    let now = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let export: String = old
        .export()
        .lines()
        .map(|line| {
            let mut record: Value = serde_json::from_str(line).unwrap();
            if record["kind"] == "token" {
                record["created_at"] = 1_000_000_000.into();
                if record["id"] == used["id"] {
                    record["last_used_at"] = (now - 3_600).into();
                }
            }
            format!("{record}\n")
        })
        .collect();
    let env = Env::new();
    let file = env.path().join("old.jsonl");
    std::fs::write(&file, export).unwrap();
    env.json(&["import", file.to_str().unwrap()]);
    let recent = env.json(&["token", "create", "--user", "5870", "--merchant", "1"]);

    let ids = |args: &[&str]| -> Vec<String> {
        let listed = env.json(&[&["token", "list"][..], args].concat());
        // Made in the same second: sorted, as their order is the store's.
        let mut ids: Vec<String> = listed
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    let id = |t: &Value| t["id"].as_str().unwrap().to_owned();
    assert_eq!(ids(&[]).len(), 4);
    let mut both = vec![id(&used), id(&never)];
    both.sort();
    assert_eq!(ids(&["--unused-since", "30m"]), both);
    assert_eq!(ids(&["--unused-since", "2h"]), [id(&never)]);
    assert_eq!(
        ids(&["--unused-since", "2h", "--user", "5870"]),
        Vec::<String>::new()
    );
    // The token made now is in no such list.
    assert!(!ids(&["--unused-since", "30m"]).contains(&id(&recent)));
    // A usage error, as clap answers them (status 2).
    let out = env.run(&["token", "list", "--unused-since", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("duration"));
}

#[test]
fn no_token_secret_reaches_the_disk() {
    let env = Env::new();
    let (a, b) = env.populate_with_two_tokens();
    for (text, user) in [(SEED_TOKEN, "5870"), (DRF_KEY, "5871")] {
        let import = ["token", "import", "--user", user, "--merchant", "1"];
        env.json_with_input(&import, format!("{text}\n").as_bytes());
    }
    env.json(&["token", "revoke", a["id"].as_str().unwrap()]);
    env.json(&["user", "disable", "5871"]);

    let mut files = Vec::new();
    all_files(&env.data(), &mut files);
    assert!(!files.is_empty());
    let all: Vec<u8> = files.iter().flat_map(|(_, bytes)| bytes.clone()).collect();
    for created in [&a, &b] {
        for secret in secrets(created) {
            for (path, bytes) in &files {
                assert!(
                    !contains(bytes, secret.as_bytes()),
                    "a secret is in {}",
                    path.display()
                );
            }
        }
        // The scan does see the records: their public ids are there.
        assert!(contains(&all, created["id"].as_str().unwrap().as_bytes()));
    }
    for imported in [SEED_TOKEN, DRF_KEY] {
        for (path, bytes) in &files {
            assert!(
                !contains(bytes, imported.as_bytes()),
                "an imported token is in {}",
                path.display()
            );
        }
    }
}

#[test]
fn export_and_import_round_trip() {
    let env = Env::new();
    let (live, revoked) = env.populate_with_two_tokens();
    env.json(&["token", "revoke", revoked["id"].as_str().unwrap()]);
    env.json(&["merchant", "disable", "2"]);

    // To stdout, whatever --json says.
    let exported = env.export();
    assert_eq!(env.human(&["--json", "export"]), exported);
    assert!(exported.starts_with(r#"{"kind":"header","format":"stamps-export","schema":2}"#));
    assert_eq!(exported.lines().count(), 1 + 2 + 2 + 2);
    for created in [&live, &revoked] {
        for secret in secrets(created) {
            assert!(!exported.contains(&secret));
        }
    }

    // To a file: mode 0600, the same bytes, nothing else left beside it.
    let out_dir = env.path().join("backups");
    std::fs::create_dir(&out_dir).unwrap();
    let file = out_dir.join("stamps.jsonl");
    let said = env.human(&["export", "--output", file.to_str().unwrap()]);
    assert!(said.contains("2 merchants, 2 users and 2 tokens"), "{said}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), exported);
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    let names: Vec<_> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["stamps.jsonl"]);

    // An existing file is replaced, and made private.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let said = env.json(&["export", "--output", file.to_str().unwrap()]);
    assert_eq!(said["merchants"], 2);
    assert_eq!(said["users"], 2);
    assert_eq!(said["tokens"], 2);
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), exported);

    // Into a fresh data directory.
    let fresh = env.path().join("fresh");
    let loaded = json_of(
        &run_in(&fresh, &["--json", "import", file.to_str().unwrap()], b""),
        &["import"],
    );
    assert_eq!(loaded, json!({"merchants": 2, "users": 2, "tokens": 2}));
    for list in [
        &["merchant", "list"][..],
        &["user", "list"],
        &["token", "list"],
        &["token", "list", "--user", "5870"],
    ] {
        let mut args = vec!["--json"];
        args.extend_from_slice(list);
        let before = json_of(&env.run(&args), list);
        let after = json_of(&run_in(&fresh, &args, b""), list);
        assert_eq!(before, after, "{list:?}");
    }
    let re_exported = run_in(&fresh, &["export"], b"");
    assert_eq!(String::from_utf8(re_exported.stdout).unwrap(), exported);

    // The imported tokens still verify (the CLI has exited: the store is free).
    let store = open_once_released(&fresh);
    let [live_token, _] = secrets(&live);
    let check = store
        .check_token(&StaticToken::parse(&live_token).unwrap())
        .unwrap();
    match check {
        TokenCheck::Live(record) => assert_eq!(record.id.as_str(), live["id"].as_str().unwrap()),
        other => panic!("{other:?}"),
    }
    let [revoked_token, _] = secrets(&revoked);
    let check = store
        .check_token(&StaticToken::parse(&revoked_token).unwrap())
        .unwrap();
    assert_eq!(check, TokenCheck::Refused(Refusal::Revoked));
}

#[test]
fn import_refuses_a_store_with_records() {
    let env = Env::new();
    env.populate();
    let exported = env.export();

    let other = Env::new();
    other.json(&["user", "add", "--name", "already here", "--id", "7"]);
    let before = other.export();
    let out = other.run_with_input(&["import", "-"], exported.as_bytes());
    let line = refusal(&out, &["import", "-"]);
    assert!(line.contains("already holds records"), "{line}");
    assert_eq!(other.export(), before);

    // Importing a store into itself is refused the same way.
    let out = env.run_with_input(&["import", "-"], exported.as_bytes());
    assert!(refusal(&out, &["import"]).contains("already holds records"));
}

#[test]
fn import_reads_stdin_all_or_nothing() {
    let source = Env::new();
    source.populate();
    let token = source.json(&["token", "create", "--user", "5870", "--merchant", "1"]);
    let exported = source.export();

    let env = Env::new();
    let empty = env.export();
    // A file with a bad line loads nothing.
    let broken = exported.replace(r#""id":5871,"name":"user5871""#, r#""id":5871,"name":"""#);
    assert_ne!(broken, exported);
    let out = env.run_with_input(&["import", "-"], broken.as_bytes());
    let line = refusal(&out, &["import", "-"]);
    assert!(line.contains("import line 5"), "{line}");
    let out = env.run_with_input(&["import", "-"], b"not json\n");
    assert!(refusal(&out, &["import", "-"]).contains("import line 1"));
    let missing = env.path().join("missing.jsonl");
    let line = env.fails(&["import", missing.to_str().unwrap()]);
    assert!(line.contains("missing.jsonl"), "{line}");
    assert_eq!(env.export(), empty);

    let out = env.run_with_input(&["import", "-"], exported.as_bytes());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8(out.stdout).unwrap();
    assert!(
        said.contains("Imported 2 merchants, 2 users and 1 token"),
        "{said}"
    );
    assert_eq!(env.export(), exported);
    let listed = env.json(&["token", "list"]);
    assert_eq!(listed[0]["id"], token["id"]);
}

/// A process holding the store without an admin socket (another admin
/// command, an older server): the CLI cannot reach the store, and says so
/// at once. A stale socket file left by a crashed server changes nothing.
#[test]
fn a_store_in_use_is_refused_at_once() {
    let env = Env::new();
    env.populate();
    let before = env.export();
    let held = SledStore::open(&env.data()).unwrap();
    let socket = admin_socket_path(&env.data());

    let refused_at_once = |args: &[&str]| {
        let started = Instant::now();
        let out = env.run(args);
        let line = refusal(&out, args);
        assert!(line.contains("in use"), "{line}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    };
    assert!(!socket.exists());
    for args in [
        &["merchant", "list"][..],
        &["--json", "user", "add", "--name", "late"],
        &["export"],
    ] {
        refused_at_once(args);
    }
    let out = env.run_with_input(&["import", "-"], before.as_bytes());
    assert!(refusal(&out, &["import"]).contains("in use"));

    // The socket of a server that crashed: nobody listens on it.
    drop(UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    refused_at_once(&["merchant", "list"]);
    refused_at_once(&["--json", "user", "add", "--name", "late"]);

    drop(held);
    assert_eq!(env.export(), before);
}

#[test]
fn a_stale_admin_socket_is_ignored_when_no_server_runs() {
    let env = Env::new();
    env.populate();
    let socket = admin_socket_path(&env.data());
    drop(UnixListener::bind(&socket).unwrap());
    let added = env.json(&["merchant", "add", "--name", "Third", "--id", "3"]);
    assert_eq!(added["id"], 3);
    assert_eq!(env.json(&["merchant", "list"]).as_array().unwrap().len(), 3);
}

/// This test process as a running stamps-server: it holds the store open
/// and serves it on the data directory's admin socket, from a thread.
struct RunningServer {
    store: Arc<SledStore>,
    stop: AdminShutdown,
    thread: Option<JoinHandle<()>>,
}

impl RunningServer {
    fn start(data: &Path) -> Self {
        let store = Arc::new(SledStore::open(data).unwrap());
        let socket = AdminSocket::bind(&admin_socket_path(data)).unwrap();
        let stop = socket.shutdown_handle();
        let thread = Some(socket.spawn(store.clone()).unwrap());
        Self {
            store,
            stop,
            thread,
        }
    }

    /// The whole store as `export` writes it, read in this process.
    fn export(&self) -> String {
        let mut out = Vec::new();
        self.store
            .snapshot()
            .unwrap()
            .write_jsonl(&mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.stop.shutdown();
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

#[test]
fn a_running_server_is_administered_through_its_admin_socket() {
    use AccountKind::{Merchant, User};

    let env = Env::new();
    let server = RunningServer::start(&env.data());
    let store = &server.store;
    let started = SystemTime::now();
    let active = |kind, id| store.account(kind, id).unwrap().unwrap().active;

    // Accounts: each change is in the server's store when the CLI returns.
    let added = env.json(&["merchant", "add", "--name", "My Merchant", "--id", "1"]);
    assert_eq!(
        added,
        json!({"id": 1, "name": "My Merchant", "active": true})
    );
    assert_eq!(
        store.account(Merchant, 1).unwrap().unwrap().name,
        "My Merchant"
    );
    env.json(&["merchant", "add", "--name", "Other Merchant"]);
    assert_eq!(
        store.account(Merchant, 2).unwrap().unwrap().name,
        "Other Merchant"
    );
    env.json(&["user", "add", "--name", "user5870", "--id", "5870"]);
    let allocated = env.json(&["user", "add", "--name", "user5871"]);
    assert_eq!(allocated["id"], 5871);
    assert!(store.account(User, 5871).unwrap().is_some());
    let merchants = env.json(&["merchant", "list"]);
    assert_eq!(
        merchants,
        json!([
            {"id": 1, "name": "My Merchant", "active": true},
            {"id": 2, "name": "Other Merchant", "active": true},
        ])
    );
    assert_eq!(env.json(&["user", "list"]).as_array().unwrap().len(), 2);
    assert!(env.human(&["user", "list"]).contains("user5871"));

    assert_eq!(env.json(&["merchant", "disable", "2"])["active"], false);
    assert!(!active(Merchant, 2));
    assert_eq!(env.json(&["merchant", "enable", "2"])["active"], true);
    assert!(active(Merchant, 2));
    env.json(&["user", "disable", "5871"]);
    assert!(!active(User, 5871));

    // Tokens: created by the CLI, live in the server at once.
    let created = env.json(&[
        "token",
        "create",
        "--user",
        "5870",
        "--merchant",
        "1",
        "--label",
        "till 3",
    ]);
    check_created_at(&created, started);
    let id = created["id"].as_str().unwrap();
    let [whole, secret] = secrets(&created);
    let token = StaticToken::parse(&whole).unwrap();
    match store.check_token(&token).unwrap() {
        TokenCheck::Live(record) => assert_eq!(record.id.as_str(), id),
        other => panic!("{other:?}"),
    }
    let other = env.json(&["token", "create", "--user", "5871", "--merchant", "2"]);
    let [other_whole, _] = secrets(&other);
    assert_eq!(
        store
            .check_token(&StaticToken::parse(&other_whole).unwrap())
            .unwrap(),
        TokenCheck::Refused(Refusal::UserDisabled)
    );

    let listed = env.json(&["token", "list", "--user", "5870"]);
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(keys(&listed[0]), TOKEN_KEYS);
    assert_eq!(listed[0]["id"], id);
    assert_eq!(env.json(&["token", "list"]).as_array().unwrap().len(), 2);
    assert_eq!(store.tokens(TokenFilter::default()).unwrap().len(), 2);

    let revoked = env.json(&["token", "revoke", id]);
    assert_eq!(revoked["revoked"], true);
    assert_eq!(
        store.check_token(&token).unwrap(),
        TokenCheck::Refused(Refusal::Revoked)
    );

    // Refusals read the same as without a server, and change nothing.
    for (args, expected) in [
        (
            &["merchant", "add", "--name", "Again", "--id", "1"][..],
            "error: a merchant with id 1 already exists",
        ),
        (
            &["user", "add", "--name", ""],
            "error: invalid name: must not be empty",
        ),
        (
            &["token", "create", "--user", "99", "--merchant", "1"],
            "error: no user with id 99",
        ),
        (
            &["token", "revoke", "0123456789abcdef"],
            "error: no token with id 0123456789abcdef",
        ),
        (
            &["merchant", "disable", "99"],
            "error: no merchant with id 99",
        ),
    ] {
        assert_eq!(env.fails(args), expected, "{args:?}");
    }

    // Export: the server's store, to stdout and to a private file.
    let exported = env.export();
    assert_eq!(exported, server.export());
    assert_eq!(exported.lines().count(), 1 + 2 + 2 + 2);
    assert!(!exported.contains(&secret));
    let file = env.path().join("backup.jsonl");
    let said = env.json(&["export", "--output", file.to_str().unwrap()]);
    assert_eq!(
        (&said["merchants"], &said["users"], &said["tokens"]),
        (&json!(2), &json!(2), &json!(2))
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), exported);
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");

    // Import: refused, the store holds records.
    let out = env.run_with_input(&["import", "-"], exported.as_bytes());
    let line = refusal(&out, &["import", "-"]);
    assert_eq!(
        line,
        "error: the store already holds records; import needs an empty store"
    );
    assert_eq!(server.export(), exported);

    // Into an empty store behind another running server: loaded, and live.
    let fresh = Env::new();
    let fresh_server = RunningServer::start(&fresh.data());
    let loaded = json_of(
        &fresh.run_with_input(&["--json", "import", "-"], exported.as_bytes()),
        &["import"],
    );
    assert_eq!(loaded, json!({"merchants": 2, "users": 2, "tokens": 2}));
    assert_eq!(fresh_server.export(), exported);
    assert_eq!(
        fresh_server.store.check_token(&token).unwrap(),
        TokenCheck::Refused(Refusal::Revoked)
    );
    drop(fresh_server);

    // The server stops: its socket goes, and the CLI opens the store itself.
    drop(server);
    assert!(!admin_socket_path(&env.data()).exists());
    assert_eq!(env.export(), exported);
}

#[test]
fn export_to_an_unwritable_place_fails_cleanly() {
    let env = Env::new();
    env.populate();
    let nowhere = env.path().join("no-such-dir").join("out.jsonl");
    let line = env.fails(&["export", "--output", nowhere.to_str().unwrap()]);
    assert!(line.contains("cannot write"), "{line}");
    assert!(!nowhere.exists());
}

#[test]
fn config_names_the_store_like_the_server_does() {
    let env = Env::new();
    let config = env.path().join("stamps.toml");
    std::fs::write(
        &config,
        format!("data_dir = {:?}\n", env.data().display().to_string()),
    )
    .unwrap();
    let by_config = |args: &[&str]| {
        let mut full = vec!["--config", config.to_str().unwrap(), "--json"];
        full.extend_from_slice(args);
        Command::new(env!("CARGO_BIN_EXE_stamps-admin"))
            .args(&full)
            .output()
            .unwrap()
    };
    let out = by_config(&["merchant", "add", "--name", "via config", "--id", "7"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The same store as --data-dir names.
    let listed = env.json(&["merchant", "list"]);
    assert_eq!(listed[0]["name"], "via config");

    // A bad file is one clear line; both options at once is a usage error.
    std::fs::write(&config, "data_dirr = \"x\"\n").unwrap();
    let out = by_config(&["merchant", "list"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("data_dirr"), "{stderr}");
    let both = Command::new(env!("CARGO_BIN_EXE_stamps-admin"))
        .args(["--config", "x.toml", "--data-dir", "d", "merchant", "list"])
        .output()
        .unwrap();
    assert_eq!(both.status.code(), Some(2));
}

#[test]
fn completions_and_the_man_page_come_from_the_command_line_definition() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = Command::new(BIN)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8(out.stdout).unwrap();
        for word in ["revoke-all", "inspect", "rotate", "data-dir"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    // The bash script is valid bash, when bash is here to say so.
    if let Ok(bash) = Command::new("bash").arg("--version").output()
        && bash.status.success()
    {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stamps-admin.bash");
        let out = Command::new(BIN)
            .args(["completions", "bash"])
            .output()
            .unwrap();
        std::fs::write(&path, out.stdout).unwrap();
        let check = Command::new("bash").arg("-n").arg(&path).status().unwrap();
        assert!(check.success());
    }
    let out = Command::new(BIN).arg("man").output().unwrap();
    assert!(out.status.success());
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(page.contains(".TH stamps-admin 1"), "{page}");
    for word in ["jwt", "token", "audit", "\\-\\-data\\-dir"] {
        assert!(page.contains(word), "man page lacks {word}");
    }
    // A bad shell is a usage error.
    let out = Command::new(BIN)
        .args(["completions", "cmd.exe"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
