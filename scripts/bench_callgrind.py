#!/usr/bin/env python3
"""Instructions per request of stamps-server, counted by callgrind: a
measure of the CPU work of one request that the machine's load does not
disturb (unlike wrk's figures on a shared machine).

For each configuration (the environment given with --config NAME=VAR=VALUE,...)
and endpoint, the release server runs under `valgrind --tool=callgrind`
twice, answering --requests and then twice as many requests over one
keep-alive connection (so one worker thread serves them all). Callgrind
counts each thread apart; the thread whose count grows most between the
two runs is that worker, and its growth divided by the difference of the
request counts is the cost of one request, start-up and shutdown
cancelled out, and the store's and the allocator's background threads
(whose work follows the wall clock, slower under valgrind) left out.
Every process started here is stopped by PID.

    python3 scripts/bench_callgrind.py                       # metrics off / on
    python3 scripts/bench_callgrind.py --requests 4000 --endpoints verify-token
    python3 scripts/bench_callgrind.py --in-process           # the middleware alone

--in-process runs benches' stamps-metrics-cost instead: requests through an
actix app in one thread, no sockets, no timers, so the counts repeat to
the instruction; the difference between metrics on and off is what
recording costs a request.
"""
import argparse, base64, hashlib, hmac, http.client, json, os, re, secrets, shutil, signal
import subprocess, sys, tempfile, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASE = os.path.join(ROOT, "target", "release")
SECRET = "a benchmark secret of at least thirty-two bytes"
ENDPOINTS = {"verify-token": "/api/auth/verify-token/", "ping-jwt": "/api/ping"}
CONFIGS = {
    "metrics-off": {},
    "metrics-on": {"STAMPS_METRICS__ENABLED": "true"},
}


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint(user_id, merchant_id):
    """An HS256 JWT in the server's own shape."""
    now = int(time.time())
    header = b'{"typ":"JWT","alg":"HS256"}'
    payload = json.dumps({"token_type": "access", "exp": now + 86400, "iat": now,
                          "jti": secrets.token_hex(16), "user_id": user_id,
                          "merchant_id": merchant_id}, separators=(",", ":")).encode()
    signing = f"{b64(header)}.{b64(payload)}"
    sig = hmac.new(SECRET.encode(), signing.encode(), hashlib.sha256).digest()
    return f"{signing}.{b64(sig)}"


def admin(data, *args):
    subprocess.run([os.path.join(RELEASE, "stamps-admin"), "--data-dir", data, "--json", *args],
                   check=True, capture_output=True)


def run_once(server, data, env, path, auth, count, out):
    full_env = dict(os.environ, STAMPS_LISTEN="127.0.0.1:0", STAMPS_DATA_DIR=data,
                    STAMPS_JWT__SECRET=SECRET, STAMPS_LOG="warn,stamps_server=info",
                    # Far more JWTs than the issuance quota: measure issuing, not 429s.
                    STAMPS_RATE_LIMIT__ISSUE_PER_TOKEN="0", **env)
    proc = subprocess.Popen(["valgrind", "--tool=callgrind", "--separate-threads=yes",
                             f"--callgrind-out-file={out}",
                             server],
                            env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    found, addr = threading.Event(), []

    def drain():
        for line in proc.stderr:
            m = re.search(r"listening on http://(\S+)", line)
            if m and not addr:
                addr.append(m.group(1))
                found.set()
    threading.Thread(target=drain, daemon=True).start()
    try:
        if not found.wait(300):
            raise SystemExit("the server did not start under valgrind")
        host, port = addr[0].rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=120)
        for _ in range(count):
            conn.request("POST", path, body=b"", headers={"Authorization": auth})
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise SystemExit(f"{path}: {response.status}")
        conn.close()
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(300)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    totals = {}
    folder, name = os.path.split(out)
    for file in os.listdir(folder):
        if not file.startswith(name + "-"):
            continue
        thread = int(file.rsplit("-", 1)[1])
        with open(os.path.join(folder, file)) as f:
            for line in f:
                if line.startswith(("summary:", "totals:")):
                    totals[thread] = int(line.split()[1])
    if not totals:
        raise SystemExit(f"no totals for {out}")
    return totals


def in_process(requests):
    binary = os.path.join(RELEASE, "stamps-metrics-cost")
    per_request = {}
    with tempfile.TemporaryDirectory(prefix="stamps-callgrind-") as folder:
        for mode in ("off", "on"):
            totals = []
            for count in (requests, 2 * requests):
                out = os.path.join(folder, f"callgrind.{mode}.{count}")
                subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                                binary, mode, str(count)], check=True, capture_output=True)
                with open(out) as f:
                    totals.append(next(int(line.split()[1]) for line in f
                                       if line.startswith(("summary:", "totals:"))))
            per_request[mode] = (totals[1] - totals[0]) / requests
            print(f"metrics {mode:<4} {per_request[mode]:>8.0f} instructions/request", flush=True)
    print(f"recording costs {per_request['on'] - per_request['off']:+.0f} instructions/request")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=5000, help="requests of the first run (the second sends twice as many)")
    p.add_argument("--endpoints", default=",".join(ENDPOINTS), help="comma list (default: all)")
    p.add_argument("--configs", default=",".join(CONFIGS), help="comma list of " + ", ".join(CONFIGS))
    p.add_argument("--server", default=os.path.join(RELEASE, "stamps-server"),
                   help="the server binary (default: the release build); another build to compare")
    p.add_argument("--in-process", action="store_true",
                   help="measure the middleware in process (needs: cargo build --release -p stamps-benches)")
    args = p.parse_args()
    if not shutil.which("valgrind"):
        raise SystemExit("valgrind is needed (apt-get install valgrind)")
    if args.in_process:
        return in_process(args.requests * 4)
    data = tempfile.mkdtemp(prefix="stamps-callgrind-")
    try:
        admin(data, "merchant", "add", "--name", "My Merchant", "--id", "1")
        admin(data, "user", "add", "--name", "user5870", "--id", "5870")
        auth = f"Bearer {mint(5870, 1)}"
        results = {}
        for config in args.configs.split(","):
            for endpoint in args.endpoints.split(","):
                totals = []
                for count in (args.requests, 2 * args.requests):
                    out = os.path.join(data, f"callgrind.{config}.{endpoint}.{count}")
                    totals.append(run_once(args.server, data, CONFIGS[config], ENDPOINTS[endpoint], auth, count, out))
                grown = {t: totals[1].get(t, 0) - totals[0].get(t, 0) for t in totals[1]}
                per_request = max(grown.values()) / args.requests
                results[(config, endpoint)] = per_request
                print(f"{config:<12} {endpoint:<14} {per_request:>10.0f} instructions/request", flush=True)
        configs = args.configs.split(",")
        if len(configs) == 2:
            for endpoint in args.endpoints.split(","):
                a, b = results[(configs[0], endpoint)], results[(configs[1], endpoint)]
                print(f"{endpoint:<14} {configs[1]} - {configs[0]}: {b - a:+.0f} instructions/request ({(b - a) / a * 100:+.2f} %)")
    finally:
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
