#!/usr/bin/env python3
"""What the audit trail costs on disk: bytes per JWT issued, and whether
the space comes back under a retention. See docs/STORAGE.md.

Runs the release server on sled (a temporary data directory, quota lifted),
floods get-access-token with wrk for --seconds, and reports the data
directory's growth (`du` of `db/`, blobs included: what the operator's disk
sees; every batch is flushed as it is written) divided by the JWT events in
the trail. With --rounds N and --retention, the same server is flooded N
times, the retention waited out between rounds (the server prunes on its
own), and the size reported after each round: a plateau means the space of
pruned events is used again.

    scripts/bench_audit_disk.py [--seconds 10] [--rounds 1] [--retention 0s]

Needs wrk and `cargo build --release`. Every process started here is
stopped by PID; every phase is bounded in time.
"""
import argparse, json, os, shutil, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_http import LUA, RELEASE, SECRET, Server, admin, log, post  # noqa: E402

PATH = "/api/auth/get-access-token/"


def du(path):
    out = subprocess.run(["du", "-sb", path], check=True, text=True, capture_output=True).stdout
    return int(out.split()[0])


def jwt_events(data):
    events = json.loads(admin(data, "audit"))
    return sum(1 for e in events if e["action"] == "jwt.issue")


def serve(data, retention):
    env = {"STAMPS_LISTEN": "127.0.0.1:0", "STAMPS_DATA_DIR": data, "STAMPS_JWT__SECRET": SECRET,
           "STAMPS_LOG": "warn,stamps_server=info", "STAMPS_RATE_LIMIT__ISSUE_PER_TOKEN": "0",
           "STAMPS_AUDIT__RETENTION": retention}
    return Server("stamps", [os.path.join(RELEASE, "stamps-server")], env, cpu=0)


def flood(server, body, seconds):
    status, text = post(server.url + PATH, body)
    if status != 200:
        raise SystemExit(f"get-access-token: {status} {text}")
    env = dict(os.environ, BENCH_AUTH="", BENCH_BODY=body)
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        env["BENCH_OUT"] = out.name
        subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c16", f"-d{seconds}s", "-s", LUA,
                        server.url + PATH], env=env, check=True, capture_output=True,
                       timeout=seconds + 30)
        return json.load(open(out.name))["requests"]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=int, default=10, help="flood time per round")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--retention", default="0s", help="audit.retention of the server")
    args = p.parse_args()
    for tool in ("wrk", "taskset", "du"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is needed")
    data = tempfile.mkdtemp(prefix="stamps-audit-disk-")
    try:
        admin(data, "merchant", "add", "--name", "My Merchant", "--id", "1")
        admin(data, "user", "add", "--name", "user5870", "--id", "5870")
        token = json.loads(admin(data, "token", "create", "--user", "5870", "--merchant", "1"))["token"]
        body = json.dumps({"token": token, "crm_merchant_id": 1})
        db = os.path.join(data, "db")
        empty = du(db)
        rows = []
        server = serve(data, args.retention)
        try:
            for round_ in range(args.rounds):
                requests = flood(server, body, args.seconds)
                events = jwt_events(data)
                size = du(db)
                rows.append({"round": round_ + 1, "jwts_issued": requests, "jwt_events_kept": events,
                             "db_bytes": size,
                             "bytes_per_event": round((size - empty) / max(events, 1), 1)})
                log(json.dumps(rows[-1]))
                if round_ + 1 < args.rounds:
                    # The retention passes; the server prunes on its own.
                    deadline = time.monotonic() + 120
                    while jwt_events(data) > 0 and time.monotonic() < deadline:
                        time.sleep(1)
        finally:
            server.stop()
        print(json.dumps({"empty_db_bytes": empty, "retention": args.retention, "rounds": rows}, indent=1))
    finally:
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
