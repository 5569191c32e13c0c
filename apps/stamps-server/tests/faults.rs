//! End-to-end fault tests on the real binaries: a file system that fills
//! up, a file size limit, a data directory stamps cannot use, and SIGKILL
//! in a loop during admin writes. What each proves is in docs/STORAGE.md.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fs::File;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use common::{
    Server, admin_json, admin_output, eventually, json_of, provision, server_binary,
    set_file_size_limit,
};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------
// Fixtures.

/// A tmpfs of a given size, unmounted (lazily if still busy) when dropped,
/// whatever the test did.
struct Tmpfs {
    dir: tempfile::TempDir,
}

/// The source name of our mounts, before the pid of the test process.
const MOUNT_SOURCE: &str = "stamps-faults-";

impl Tmpfs {
    /// Mounts one with `options`, or says why it cannot (not root, no
    /// CAP_SYS_ADMIN in this container).
    fn mount(options: &str) -> Result<Tmpfs, String> {
        sweep_stale_mounts();
        let dir = tempfile::tempdir().unwrap();
        let source = format!("{MOUNT_SOURCE}{}", std::process::id());
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, &source])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if out.status.success() {
            Ok(Tmpfs { dir })
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(self.dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }
}

/// Unmounts what a run of these tests killed before its guards ran left
/// mounted: only mounts of ours whose test process is gone.
fn sweep_stale_mounts() {
    let Ok(table) = std::fs::read_to_string("/proc/self/mounts") else {
        return;
    };
    for line in table.lines() {
        let mut fields = line.split(' ');
        let (Some(source), Some(target)) = (fields.next(), fields.next()) else {
            continue;
        };
        let Some(pid) = source.strip_prefix(MOUNT_SOURCE) else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = Command::new("umount").arg("-l").arg(target).status();
            let _ = std::fs::remove_dir(target);
        }
    }
}

/// Fills the file system holding `dir` to the last byte with a file,
/// returned; deleting it gives the space back.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = File::create(&path).unwrap();
    for chunk in [1 << 20, 1 << 12, 1] {
        let bytes = vec![0xa5_u8; chunk];
        loop {
            match file.write_all(&bytes) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::StorageFull => break,
                Err(e) => panic!("filling {}: {e}", path.display()),
            }
        }
    }
    assert_eq!(
        file.write(&[0]).map_err(|e| e.kind()).err(),
        Some(ErrorKind::StorageFull)
    );
    path
}

/// What the no-space scenarios set up before the space runs out.
struct Before {
    /// A static token used once already: its verification is cached.
    cached: String,
    /// A static token never used: checking it needs the store.
    fresh: String,
    fresh_id: String,
    jwt: String,
    /// `merchant list`, `user list`, `token list`.
    lists: [Value; 3],
}

fn lists(data: &Path) -> [Value; 3] {
    // A token's last use moves with every request that uses it: what a
    // fault must keep is the rest of the record.
    let mut tokens = admin_json(data, &["token", "list"]);
    for token in tokens.as_array_mut().into_iter().flatten() {
        if let Some(record) = token.as_object_mut() {
            record.remove("last_used_at");
        }
    }
    [
        admin_json(data, &["merchant", "list"]),
        admin_json(data, &["user", "list"]),
        tokens,
    ]
}

fn get_access_token(server: &Server, token: &str) -> (u16, Value) {
    let response = server
        .post("/api/auth/get-access-token/")
        .json(&json!({"token": token, "crm_merchant_id": 1}))
        .send()
        .unwrap();
    let (status, body, _) = json_of(response);
    (status, body)
}

fn with_auth(server: &Server, path: &str, authorization: &str) -> u16 {
    server
        .post(path)
        .header("Authorization", authorization)
        .send()
        .unwrap()
        .status()
        .as_u16()
}

fn set_up(server: &Server) -> Before {
    let data = server.data_dir();
    let cached = provision(data);
    let fresh = admin_json(
        data,
        &["token", "create", "--user", "5870", "--merchant", "1"],
    );
    let (status, body) = get_access_token(server, &cached);
    assert_eq!(status, 200, "{body}");
    Before {
        cached,
        fresh: fresh["token"].as_str().unwrap().to_owned(),
        fresh_id: fresh["id"].as_str().unwrap().to_owned(),
        jwt: body["access_token"].as_str().unwrap().to_owned(),
        lists: lists(data),
    }
}

/// Every kind of admin write is refused with exit status 1 and one
/// `error:` line naming the cause, and changes nothing.
fn writes_are_refused(data: &Path, before: &Before, cause: &str) {
    let writes: [&[&str]; 7] = [
        &["merchant", "add", "--name", "Full"],
        &["merchant", "add", "--name", "Full", "--id", "77"],
        &["user", "add", "--name", "Full"],
        &["token", "create", "--user", "5870", "--merchant", "1"],
        &["token", "revoke", &before.fresh_id],
        &["user", "disable", "5870"],
        &["merchant", "disable", "1"],
    ];
    for args in writes {
        let out = admin_output(data, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: {stderr}");
        assert!(
            lines[0].starts_with("error: no space left for the store: "),
            "{args:?}: {stderr}"
        );
        assert!(lines[0].contains(cause), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?} printed something");
    }
}

/// JWTs, and static tokens already verified, keep working.
fn jwts_and_cached_tokens_go_on(server: &Server, before: &Before) {
    let bearer = format!("Bearer {}", before.jwt);
    assert_eq!(with_auth(server, "/api/auth/verify-token/", &bearer), 200);
    assert_eq!(with_auth(server, "/api/ping", &bearer), 200);
    assert_eq!(get_access_token(server, &before.cached).0, 200);
    let token = format!("Token {}", before.cached);
    assert_eq!(with_auth(server, "/api/ping", &token), 200);
}

/// Once space is back: writes work at once on the same server, then
/// after a restart exactly what was acknowledged is there, and the export
/// of the store loads into an empty one. Returns the restarted server and
/// its lists.
fn space_is_back(server: Server, before: &Before) -> (Server, [Value; 3]) {
    let data = server.data_dir().to_owned();
    let added = admin_json(&data, &["merchant", "add", "--name", "After", "--id", "2"]);
    assert_eq!(added["id"], 2);
    let revoked = admin_json(&data, &["token", "revoke", &before.fresh_id]);
    assert_eq!(revoked["revoked"], true);
    assert_eq!(get_access_token(&server, &before.fresh).0, 401);

    let (status, dir, logs) = server.terminate();
    assert_eq!(status.code(), Some(0), "{logs}");
    let server = Server::start_in(dir, &[]);
    let now = lists(server.data_dir());
    let [merchants, users, tokens] = now.clone();
    let mut expected = before.lists[0].as_array().unwrap().clone();
    expected.push(added);
    assert_eq!(
        merchants,
        Value::Array(expected),
        "refused writes left traces"
    );
    assert_eq!(users, before.lists[1]);
    let tokens = tokens.as_array().unwrap();
    assert_eq!(tokens.len(), 2, "{tokens:?}");
    for token in tokens {
        let revoked = token["id"] == before.fresh_id.as_str();
        assert_eq!(token["revoked"], revoked, "{token}");
    }
    assert_eq!(get_access_token(&server, &before.cached).0, 200);
    export_loads_into_an_empty_store(server.data_dir());
    (server, now)
}

/// `stamps-admin export`, then `import` of it into an empty data
/// directory: the store reads back whole and valid.
fn export_loads_into_an_empty_store(data: &Path) -> Value {
    let out_dir = tempfile::tempdir().unwrap();
    let backup = out_dir.path().join("backup.jsonl");
    let backup = backup.to_str().unwrap();
    let exported = admin_json(data, &["export", "--output", backup]);
    let imported = admin_json(&out_dir.path().join("restored"), &["import", backup]);
    for kind in ["merchants", "users", "tokens"] {
        assert_eq!(exported[kind], imported[kind], "{exported} / {imported}");
    }
    imported
}

// ---------------------------------------------------------------------------
// Disk full.

#[test]
fn a_full_file_system_refuses_writes_cleanly_keeps_reads_and_recovers_without_restart() {
    let mount = match Tmpfs::mount("size=32m,mode=0700") {
        Ok(mount) => mount,
        Err(why) => {
            // Not a skip: the same promises, proven with the file size limit.
            eprintln!("cannot mount a tmpfs here ({why}): proving it with RLIMIT_FSIZE instead");
            return file_size_limit_scenario();
        }
    };
    let server = Server::start_in(tempfile::tempdir_in(mount.path()).unwrap(), &[]);
    let before = set_up(&server);
    let filler = fill(mount.path());

    writes_are_refused(server.data_dir(), &before, "free on its file system");
    // Reads go on: the lists, and every kind of request, including a
    // static token never checked before (a store read and argon2).
    assert_eq!(lists(server.data_dir()), before.lists);
    jwts_and_cached_tokens_go_on(&server, &before);
    assert_eq!(get_access_token(&server, &before.fresh).0, 200);
    server.await_log("no space left for the store");

    std::fs::remove_file(filler).unwrap();
    let (server, now) = space_is_back(server, &before);

    // Stopped, then started again on a full disk. sled may need space to
    // open (it writes a snapshot when its log has grown since the last
    // one): then stamps-admin refuses with the same clear cause and nothing
    // is harmed; otherwise stamps-admin alone, then the server, read and
    // refuse writes. Either way everything is there once space is back.
    let (status, data, logs) = server.terminate();
    assert_eq!(status.code(), Some(0), "{logs}");
    let filler = fill(mount.path());
    let opened = admin_output(data.path(), &["--json", "merchant", "list"]);
    let data = if opened.status.success() {
        assert_eq!(lists(data.path()), now);
        writes_are_refused(data.path(), &before, "free on its file system");
        let server = Server::start_in(data, &[]);
        assert_eq!(lists(server.data_dir()), now);
        writes_are_refused(server.data_dir(), &before, "free on its file system");
        let (_, data, _) = server.terminate();
        data
    } else {
        let stderr = String::from_utf8_lossy(&opened.stderr);
        assert!(
            stderr.starts_with("error: no space left for the store"),
            "{stderr}"
        );
        data
    };
    std::fs::remove_file(filler).unwrap();
    let server = Server::start_in(data, &[]);
    assert_eq!(lists(server.data_dir()), now);
    admin_json(server.data_dir(), &["user", "add", "--name", "Later"]);
}

/// Fills the file system holding `dir`, then gives `free` bytes back.
fn fill_leaving(dir: &Path, free: u64) -> PathBuf {
    let path = fill(dir);
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let len = file.metadata().unwrap().len();
    file.set_len(len.saturating_sub(free)).unwrap();
    path
}

#[test]
fn a_flood_of_jwts_that_fills_the_disk_leaves_room_to_revoke() {
    let mount = match Tmpfs::mount("size=48m,mode=0700") {
        Ok(mount) => mount,
        Err(why) if !is_root() => return eprintln!("cannot mount a tmpfs here ({why})"),
        Err(why) => panic!("cannot mount a tmpfs as root: {why}"),
    };
    let data = tempfile::tempdir_in(mount.path()).unwrap();
    let token = provision(data.path());
    let id = token.split('_').nth(1).unwrap().to_owned();
    // No quota: one token issues as many JWTs as it can.
    let server = Server::start_in(data, &[("STAMPS_RATE_LIMIT__ISSUE_PER_TOKEN", "0")]);
    let early_jwt = server.access_token(&token);
    // Just above the space the audit trail may not take (16 MiB).
    fill_leaving(mount.path(), 16 * 1024 * 1024 + 512 * 1024);

    let full = AtomicBool::new(false);
    let issued = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..3 {
            scope.spawn(|| {
                let deadline = std::time::Instant::now() + Duration::from_secs(90);
                while !full.load(Ordering::Relaxed) && std::time::Instant::now() < deadline {
                    let (status, body) = get_access_token(&server, &token);
                    assert_eq!(status, 200, "{body}");
                    issued.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        eventually(
            Duration::from_secs(90),
            "the audit trail to run out of room",
            || {
                let stopped = server.logs().contains("cannot write the audit trail");
                full.store(stopped, Ordering::Relaxed);
                stopped
            },
        );
    });
    server.await_log("JWTs issued not recorded");
    eprintln!(
        "{} JWTs issued before the trail stopped",
        issued.into_inner()
    );

    // The control plane still writes, and each change takes effect.
    let revoked = admin_json(server.data_dir(), &["jwt", "revoke-all", "--user", "5870"]);
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    assert_eq!(
        with_auth(&server, "/api/ping", &format!("Bearer {early_jwt}")),
        401
    );
    admin_json(server.data_dir(), &["key", "rotate"]);
    let record = admin_json(server.data_dir(), &["token", "revoke", &id]);
    assert_eq!(record["revoked"], true);
    assert_eq!(
        with_auth(&server, "/api/ping", &format!("Token {token}")),
        401
    );
    let user = admin_json(server.data_dir(), &["user", "disable", "5870"]);
    assert_eq!(user["active"], false);
    let (status, _, logs) = server.terminate();
    assert_eq!(status.code(), Some(0), "{logs}");
}

#[test]
fn at_the_file_size_limit_writes_fail_cleanly_and_the_store_reopens_without_restart() {
    file_size_limit_scenario();
}

/// The server's file size limit drops to one byte: sled's own writes fail
/// (EFBIG), which poisons its database, and it cannot be reopened either
/// (opening writes a snapshot). The store closes: calls that need it fail
/// (503 over HTTP), JWTs go on; raising the limit reopens it.
fn file_size_limit_scenario() {
    let server = Server::start_ignoring_sigxfsz(tempfile::tempdir().unwrap(), &[]);
    let before = set_up(&server);
    set_file_size_limit(server.child.id(), "1");

    writes_are_refused(server.data_dir(), &before, "file size limit");
    server.await_log("the store is closed");
    jwts_and_cached_tokens_go_on(&server, &before);
    let (status, body) = get_access_token(&server, &before.fresh);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error_code"], "store_unavailable");
    let out = admin_output(server.data_dir(), &["token", "list"]);
    assert_eq!(out.status.code(), Some(1));

    set_file_size_limit(server.child.id(), "unlimited");
    // A closed store retries its reopening at most once a second.
    eventually(Duration::from_secs(20), "the store reopens", || {
        admin_output(server.data_dir(), &["token", "list"])
            .status
            .success()
    });
    server.await_log("store reopened");
    assert_eq!(lists(server.data_dir()), before.lists);
    assert_eq!(get_access_token(&server, &before.fresh).0, 200);
    space_is_back(server, &before);
}

// ---------------------------------------------------------------------------
// The data directory.

/// Runs the server on `data` (through `prefix`, if any); it must exit
/// non-zero with one line on stderr that starts with `expect`.
fn server_refuses(data: &Path, prefix: &[&str], expect: &str) -> String {
    let mut command = match prefix.split_first() {
        Some((program, args)) => {
            let mut command = Command::new(program);
            command.args(args).arg(server_binary());
            command
        }
        None => Command::new(server_binary()),
    };
    let out = command
        .env_clear()
        .env("STAMPS_LISTEN", "127.0.0.1:0")
        .env("STAMPS_DATA_DIR", data)
        .env("STAMPS_JWT__SECRET", common::SECRET)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].starts_with(expect), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// Runs the server on `data` with no configured secret (so the key file is
/// read); it must exit 1 with one line on stderr containing `expect`.
fn server_without_secret_refuses(data: &Path, expect: &str) {
    let out = Command::new(server_binary())
        .env_clear()
        .env("STAMPS_LISTEN", "127.0.0.1:0")
        .env("STAMPS_DATA_DIR", data)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(expect), "{stderr}");
    assert!(!stderr.contains(THEIR_SECRET), "{stderr}");
}

const THEIR_SECRET: &str = "a secret another user chose, 32 bytes or more";

#[test]
fn a_data_directory_or_key_file_of_another_user_is_refused_at_start() {
    if !is_root() {
        // Files cannot be given to another user without root.
        return eprintln!("not root: the ownership checks are proven by the unit tests only");
    }
    let nobody = 65534;
    let give = |path: &Path| std::os::unix::fs::chown(path, Some(nobody), Some(nobody)).unwrap();
    let private_dir = |path: &Path| {
        std::fs::create_dir(path).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).unwrap();
    };
    let key_file = |path: &Path| {
        std::fs::write(path, THEIR_SECRET).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    };
    let root = tempfile::tempdir().unwrap();

    // Another user's private directory with a key file of their choosing
    // (it used to be loaded: "JWT secret: loaded").
    let theirs = root.path().join("theirs");
    private_dir(&theirs);
    key_file(&theirs.join("jwt-secret"));
    give(&theirs.join("jwt-secret"));
    give(&theirs);
    server_without_secret_refuses(&theirs, "belongs to uid 65534, not to uid 0");

    // Ours, but its store's directory is theirs.
    let db_theirs = root.path().join("db-theirs");
    private_dir(&db_theirs);
    private_dir(&db_theirs.join("db"));
    give(&db_theirs.join("db"));
    server_without_secret_refuses(&db_theirs, "db belongs to uid 65534");

    // Ours, but the key file is theirs.
    let key_theirs = root.path().join("key-theirs");
    private_dir(&key_theirs);
    key_file(&key_theirs.join("jwt-secret"));
    give(&key_theirs.join("jwt-secret"));
    server_without_secret_refuses(&key_theirs, "jwt-secret belongs to uid 65534");

    // Ours, but the key file is a symbolic link (to anywhere).
    let linked = root.path().join("linked");
    private_dir(&linked);
    key_file(&root.path().join("elsewhere"));
    std::os::unix::fs::symlink(root.path().join("elsewhere"), linked.join("jwt-secret")).unwrap();
    server_without_secret_refuses(&linked, "it is a symbolic link");
}

#[test]
fn a_data_directory_others_may_write_in_is_refused_at_start_with_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let data = tempfile::tempdir().unwrap();
    let path = data.path().display().to_string();
    let set_mode = |mode| {
        std::fs::set_permissions(data.path(), std::fs::Permissions::from_mode(mode)).unwrap();
    };
    for mode in [0o777, 0o770, 0o702, 0o1777] {
        set_mode(mode);
        let expect = format!("stamps-server: cannot use data directory {path}: it has mode");
        let stderr = server_refuses(data.path(), &[], &expect);
        assert!(stderr.contains(&format!("{mode:04o}")), "{stderr}");
        assert!(stderr.contains(&format!("chmod 700 {path}")), "{stderr}");

        // stamps-admin opens the same directory, and says the same.
        let out = admin_output(data.path(), &["merchant", "list"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with(&format!(
                "error: cannot use data directory {path}: it has mode"
            )),
            "{stderr}"
        );
    }
    assert_eq!(
        std::fs::read_dir(data.path()).unwrap().count(),
        0,
        "it was used"
    );

    // Readable by others is accepted: what is inside is private on its own.
    set_mode(0o755);
    let server = Server::start_in(data, &[]);
    provision(server.data_dir());
    for (name, private) in [("db", 0o700), ("admin.sock", 0o600)] {
        let mode = std::fs::metadata(server.data_dir().join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, private, "{name}");
    }
}

/// Runs the server as `nobody` (root ignores permission bits).
const AS_NOBODY: &[&str] = &[
    "setpriv",
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
];

/// A directory `data` in a new temporary one that anybody may traverse.
fn data_dir_with_mode(mode: u32) -> (tempfile::TempDir, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().unwrap();
    std::fs::set_permissions(parent.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = parent.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
    (parent, dir)
}

fn refused_prefix(dir: &Path) -> String {
    format!(
        "stamps-server: cannot use data directory {}: ",
        dir.display()
    )
}

#[test]
fn a_data_directory_the_server_cannot_write_is_refused_at_start_clearly() {
    if !is_root() {
        let (_parent, dir) = data_dir_with_mode(0o500);
        let stderr = server_refuses(&dir, &[], &refused_prefix(&dir));
        assert!(
            stderr.contains("cannot write in it: Permission denied"),
            "{stderr}"
        );
        return;
    }
    // Root writes through permission bits: a read-only file system, or,
    // where mounting is not permitted, the server run as nobody on a
    // directory of nobody's without write permission.
    match Tmpfs::mount("ro,size=1m,mode=0700") {
        Ok(mount) => {
            let stderr = server_refuses(mount.path(), &[], &refused_prefix(mount.path()));
            assert!(
                stderr.contains("cannot write in it: Read-only file system"),
                "{stderr}"
            );
        }
        Err(why) => {
            eprintln!("cannot mount a read-only tmpfs here ({why}): running the server as nobody");
            let (_parent, dir) = data_dir_with_mode(0o500);
            std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
            let stderr = server_refuses(&dir, AS_NOBODY, &refused_prefix(&dir));
            assert!(
                stderr.contains("cannot write in it: Permission denied"),
                "{stderr}"
            );
        }
    }
}

#[test]
fn a_data_directory_the_server_cannot_read_is_refused_at_start_clearly() {
    // Another user's private directory (the server runs as nobody, since
    // root reads through permission bits), or one without any permission.
    let (prefix, mode) = if is_root() {
        (AS_NOBODY, 0o700)
    } else {
        (&[][..], 0o000)
    };
    let (_parent, dir) = data_dir_with_mode(mode);
    let stderr = server_refuses(&dir, prefix, &refused_prefix(&dir));
    if is_root() {
        // Another user's directory is refused for that, before any read.
        assert!(
            stderr.contains("belongs to uid 0, not to uid 65534"),
            "{stderr}"
        );
        return;
    }
    assert!(
        stderr.contains("cannot read it: Permission denied"),
        "{stderr}"
    );
    assert!(
        stderr.contains("readable and writable by the user stamps runs as"),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------
// SIGKILL during admin writes.

/// One acknowledged admin write: what must be found after a restart.
#[derive(Debug, Clone)]
enum Ack {
    Merchant(u64),
    User(u64),
    Token(String),
    Revoked(String),
    UserDisabled(u64),
}

/// Admin writes in a cycle (add a merchant, a user, a token for them,
/// revoke it, disable the user), each acknowledged on `acks` once the
/// command exited 0, until `stop`. Returns how many commands the kill
/// interrupted (cut off on the admin socket).
fn write_until_stopped(
    data: &Path,
    writer: &str,
    stop: &AtomicBool,
    acks: &mpsc::Sender<Ack>,
) -> usize {
    let (mut merchant, mut user, mut token) = (1_u64, 1_u64, None::<String>);
    let (mut i, mut interrupted) = (0_usize, 0_usize);
    while !stop.load(Ordering::SeqCst) {
        let name = format!("{writer}-{i}");
        let (args, step): (Vec<String>, usize) = match (i % 5, &token) {
            (0, _) => (
                vec!["merchant".into(), "add".into(), "--name".into(), name],
                0,
            ),
            (1, _) => (vec!["user".into(), "add".into(), "--name".into(), name], 1),
            (2, _) | (3, None) => (
                vec![
                    "token".into(),
                    "create".into(),
                    "--user".into(),
                    user.to_string(),
                    "--merchant".into(),
                    merchant.to_string(),
                ],
                2,
            ),
            (3, Some(id)) => (vec!["token".into(), "revoke".into(), id.clone()], 3),
            _ => (vec!["user".into(), "disable".into(), user.to_string()], 4),
        };
        i += 1;
        let mut full = vec!["--json"];
        full.extend(args.iter().map(String::as_str));
        let out = admin_output(data, &full);
        if !out.status.success() {
            // Otherwise the store was in use: by another writer that opened
            // it after the kill, or by the dying server.
            if String::from_utf8_lossy(&out.stderr).contains("admin socket") {
                interrupted += 1;
            }
            continue;
        }
        let record: Value = serde_json::from_slice(&out.stdout).unwrap();
        let ack = match step {
            0 => {
                merchant = record["id"].as_u64().unwrap();
                Ack::Merchant(merchant)
            }
            1 => {
                user = record["id"].as_u64().unwrap();
                Ack::User(user)
            }
            2 => {
                let id = record["id"].as_str().unwrap().to_owned();
                token = Some(id.clone());
                Ack::Token(id)
            }
            3 => Ack::Revoked(token.take().unwrap()),
            _ => Ack::UserDisabled(user),
        };
        if acks.send(ack).is_err() {
            break;
        }
    }
    interrupted
}

/// Every acknowledged write is there, and the store is whole.
fn all_acknowledged_writes_are_there(data: &Path, acked: &[Ack]) {
    let [merchants, users, tokens] = lists(data);
    let find = |list: &Value, key: &str, id: &Value| -> Option<Value> {
        list.as_array()
            .unwrap()
            .iter()
            .find(|r| &r[key] == id)
            .cloned()
    };
    for ack in acked {
        let found = match ack {
            Ack::Merchant(id) => find(&merchants, "id", &json!(id)).is_some(),
            Ack::User(id) => find(&users, "id", &json!(id)).is_some(),
            Ack::Token(id) => find(&tokens, "id", &json!(id)).is_some(),
            Ack::Revoked(id) => {
                find(&tokens, "id", &json!(id)).is_some_and(|t| t["revoked"] == true)
            }
            Ack::UserDisabled(id) => {
                find(&users, "id", &json!(id)).is_some_and(|u| u["active"] == false)
            }
        };
        assert!(found, "acknowledged write lost: {ack:?}");
    }
    for token in tokens.as_array().unwrap() {
        assert!(find(&users, "id", &token["user_id"]).is_some(), "{token}");
        assert!(
            find(&merchants, "id", &token["merchant_id"]).is_some(),
            "{token}"
        );
    }
    export_loads_into_an_empty_store(data);
}

#[test]
fn acknowledged_admin_writes_survive_sigkill_of_the_server_in_a_loop() {
    const ROUNDS: usize = 8;
    // Several at once, so that the kill often cuts one off inside the server.
    const WRITERS: usize = 3;
    let data = tempfile::tempdir().unwrap();
    admin_json(
        data.path(),
        &["merchant", "add", "--name", "m", "--id", "1"],
    );
    admin_json(data.path(), &["user", "add", "--name", "u", "--id", "1"]);
    let mut server = Server::start_in(data, &[]);
    let mut acked: Vec<Ack> = Vec::new();
    let mut interrupted = 0;

    for round in 0..ROUNDS {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (dir, stop, tx) = (server.data_dir().to_owned(), stop.clone(), tx.clone());
                std::thread::spawn(move || {
                    write_until_stopped(&dir, &format!("r{round}w{w}"), &stop, &tx)
                })
            })
            .collect();
        drop(tx);
        // The kill lands inside the next commands: after 1 to 9
        // acknowledgements, a different point of the cycle each round.
        let target = 1 + (round * 4) % 9;
        for _ in 0..target {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(ack) => acked.push(ack),
                Err(e) => panic!("round {round}: the writers stalled: {e}"),
            }
        }
        let data = server.kill();
        stop.store(true, Ordering::SeqCst);
        // A command started after the kill finds no server and opens the
        // store itself: acknowledged too.
        for writer in writers {
            interrupted += writer.join().unwrap();
        }
        acked.extend(rx.try_iter());

        server = Server::start_in(data, &[]);
        all_acknowledged_writes_are_there(server.data_dir(), &acked);
    }
    assert!(acked.len() >= ROUNDS, "{acked:?}");
    eprintln!(
        "{ROUNDS} rounds of SIGKILL: {} acknowledged writes all found after each restart; \
         {interrupted} commands were cut off by the kill",
        acked.len()
    );
}
