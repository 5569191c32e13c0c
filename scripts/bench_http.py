#!/usr/bin/env python3
"""HTTP load benchmark of stamps beside its floor (and, with --peers, the
peer implementations), on loopback, with wrk. See scripts/bench-http.sh.

Per target and endpoint: wrk (pinned to the second CPU) loads the server
(pinned to the first) for --warmup unmeasured seconds, then --duration
measured ones; the server's CPU time (all its threads, from /proc) is read
before and after. Every process started here is stopped by PID.
"""
import argparse, datetime, json, os, platform, re, shutil, signal, statistics, subprocess, sys, tempfile, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASE = os.path.join(ROOT, "target", "release")
LUA = os.path.join(ROOT, "scripts", "wrk-report.lua")
TICK = os.sysconf("SC_CLK_TCK")
SECRET = "a benchmark secret of at least thirty-two bytes"
LOOKUP_SECRET = "a benchmark lookup secret, 32 bytes or more"
# An imported token (a Django REST framework key), and a text of the same
# shape that no token has.
IMPORTED = "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b"
UNKNOWN = "0123456789abcdef0123456789abcdef01234567"

# endpoint name -> (path, needs): the stamps endpoints measured.
ENDPOINTS = {
    "verify-token": "/api/auth/verify-token/",
    "ping-static": "/api/ping",
    "ping-jwt": "/api/ping",
    "get-access-token": "/api/auth/get-access-token/",
    "reject-bad-signature": "/api/auth/verify-token/",
    "ping-imported": "/api/ping",
    "reject-unknown-text": "/api/ping",
}


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw).stdout


def admin_env(store_url):
    # On PostgreSQL imported tokens need the lookup secret; on sled, as by
    # default, the key file of the data directory serves.
    if store_url:
        return dict(os.environ, STAMPS_TOKENS__LOOKUP_SECRET=LOOKUP_SECRET)
    return None


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime, all threads


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Server:
    """A server started in its own process group, pinned, stopped by PID."""

    def __init__(self, name, cmd, env, cpu, timeout=30, log_path=None):
        self.name = name
        full_env = dict(os.environ, **env)
        # Its log to a file, as an operator's would go to a file or the
        # journal: a pipe read here would slow the server's log writer.
        # `log_path` is opened for appending (O_APPEND), so a caller may
        # truncate it while the server writes.
        self.log = (open(log_path, "ab") if log_path
                    else tempfile.NamedTemporaryFile(prefix=f"{name}-", suffix=".log"))
        self.proc = subprocess.Popen(["taskset", "-c", str(cpu)] + cmd, env=full_env,
                                     stdout=subprocess.DEVNULL, stderr=self.log,
                                     start_new_session=True)
        self.url = None
        started = time.monotonic()
        while not self.url:
            with open(self.log.name, errors="replace") as f:
                m = re.search(r"listening on (http://\S+)", f.read())
            if m:
                self.url = m.group(1)
            elif self.proc.poll() is not None or time.monotonic() - started > timeout:
                self.stop()
                raise SystemExit(f"{name} did not start within {timeout} s")
            else:
                time.sleep(0.05)
        self.startup_s = time.monotonic() - started

    def stop(self):
        try:
            self._stop()
        finally:
            self.log.close()

    def _stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def free_port():
    """A port free on 127.0.0.1 now, for a server that takes no port 0."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url, body=None, auth=None):
    import urllib.request, urllib.error
    req = urllib.request.Request(url, data=(body or "").encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    if auth:
        req.add_header("Authorization", auth)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def load(server, path, auth, body, args, expect):
    """Warm-up, then a measured wrk run; one result row."""
    status, text = post(server.url + path, body, auth)
    if status != expect:
        raise SystemExit(f"{server.name} {path}: expected {expect}, got {status}: {text}")
    env = dict(os.environ, BENCH_AUTH=auth or "", BENCH_BODY=body or "")
    wrk = ["taskset", "-c", "1", "wrk", "-t1", f"-c{args.connections}", "-s", LUA, server.url + path]
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        env["BENCH_OUT"] = out.name
        subprocess.run(wrk[:5] + [f"-d{args.warmup}s"] + wrk[5:], env=env, check=True, capture_output=True)
        cpu0, t0 = cpu_seconds(server.proc.pid), time.monotonic()
        subprocess.run(wrk[:5] + [f"-d{args.duration}s"] + wrk[5:], env=env, check=True, capture_output=True)
        cpu1, t1 = cpu_seconds(server.proc.pid), time.monotonic()
        summary = json.load(open(out.name))
    requests = summary["requests"]
    errors = sum(summary["errors"].values())
    seconds = summary["duration_us"] / 1e6
    return {
        "requests": requests, "seconds": round(seconds, 3), "rps": round(requests / seconds, 1),
        "p50_ms": summary["p50_us"] / 1000, "p99_ms": summary["p99_us"] / 1000,
        "error_count": errors if expect == 200 else summary["errors"]["connect"] + summary["errors"]["timeout"],
        "server_cpu_us_per_req": round((cpu1 - cpu0) * 1e6 / max(requests, 1), 2),
        "server_cores_used": round((cpu1 - cpu0) / (t1 - t0), 2),
        "rss_mib": round(rss_kib(server.proc.pid) / 1024, 1),
    }


def admin(data, *args, store_url=None, stdin=None):
    where = ["--store-url", store_url] if store_url else ["--data-dir", data]
    return run([os.path.join(RELEASE, "stamps-admin"), *where, "--json", *args],
               input=stdin, env=admin_env(store_url))


def provision(data, url, imported):
    """Merchant 1, user 5870, an issued static token (returned) and, if
    `imported`, the imported token IMPORTED."""
    admin(data, "merchant", "add", "--name", "My Merchant", "--id", "1", store_url=url)
    admin(data, "user", "add", "--name", "user5870", "--id", "5870", store_url=url)
    static = json.loads(admin(data, "token", "create", "--user", "5870", "--merchant", "1",
                              store_url=url))["token"]
    if imported:
        admin(data, "token", "import", "--user", "5870", "--merchant", "1", store_url=url,
              stdin=IMPORTED + "\n")
    return static


def server_env(args, data, **extra):
    env = {"STAMPS_LISTEN": "127.0.0.1:0", "STAMPS_DATA_DIR": data,
           "STAMPS_JWT__SECRET": SECRET, "STAMPS_LOG": args.log_level,
           # One token asks for far more JWTs than the issuance quota
           # allows: measure the issuing, not 429s.
           "STAMPS_RATE_LIMIT__ISSUE_PER_TOKEN": "0", **extra}
    if args.store_url:
        env.update(STAMPS_STORE__BACKEND="postgres", STAMPS_STORE__URL=args.store_url,
                   STAMPS_TOKENS__LOOKUP_SECRET=LOOKUP_SECRET)
    return env


def bench_own(args, rows):
    data = tempfile.mkdtemp(prefix="stamps-bench-")
    try:
        url = args.store_url
        static = provision(data, url, imported=True)
        env = server_env(args, data)
        server = Server("stamps", [os.path.join(RELEASE, "stamps-server")], env, cpu=0)
        try:
            status, text = post(server.url + ENDPOINTS["get-access-token"],
                                json.dumps({"token": static, "crm_merchant_id": 1}))
            jwt = json.loads(text)["access_token"]
            # Proven (hashed, cached) before the refusals below put this
            # address over its failure limit: as a client in use would be.
            post(server.url + ENDPOINTS["ping-imported"], None, f"Token {IMPORTED}")
            head, payload, sig = jwt.split(".")
            bad = f"{head}.{payload}.{'A' if sig[0] != 'A' else 'B'}{sig[1:]}"
            plans = {
                "verify-token": (f"Bearer {jwt}", None, 200),
                "ping-static": (f"Token {static}", None, 200),
                "ping-jwt": (f"Bearer {jwt}", None, 200),
                "get-access-token": (None, json.dumps({"token": static, "crm_merchant_id": 1}), 200),
                "reject-bad-signature": (f"Bearer {bad}", None, 401),
                "ping-imported": (f"Token {IMPORTED}", None, 200),
                "reject-unknown-text": (f"Token {UNKNOWN}", None, 401),
            }
            for endpoint in args.endpoints:
                auth, body, expect = plans[endpoint]
                log(f"stamps {endpoint} ...")
                row = load(server, ENDPOINTS[endpoint], auth, body, args, expect)
                rows.append(dict(target="stamps", endpoint=endpoint, mode="pinned",
                                 connections=args.connections, **row))
            floor_auth = plans["verify-token"][0]
        finally:
            server.stop()
        if "verify-token" in args.endpoints:
            # The second row the default settings are compared with: the
            # same server with its access lines off.
            env = server_env(args, data, STAMPS_LOG__ACCESS="false")
            server = Server("stamps", [os.path.join(RELEASE, "stamps-server")], env, cpu=0)
            try:
                log("stamps, access log off: verify-token ...")
                row = load(server, ENDPOINTS["verify-token"], floor_auth, None, args, 200)
                rows.append(dict(target="stamps, access log off", endpoint="verify-token",
                                 mode="pinned", connections=args.connections, **row))
            finally:
                server.stop()
        floor = Server("floor", [os.path.join(RELEASE, "stamps-floor"), "127.0.0.1:0"], {}, cpu=0)
        try:
            log("floor ...")
            # The same request bytes as verify-token: only the work differs.
            row = load(floor, ENDPOINTS["verify-token"], floor_auth, None, args, 200)
            rows.append(dict(target="floor", endpoint="fixed-body", mode="pinned",
                             connections=args.connections, **row))
        finally:
            floor.stop()
    finally:
        shutil.rmtree(data, ignore_errors=True)


def start_floor(args):
    """The project's floor, or with --peers the shared bench's floor-http
    (the same fixed body behind actix's routing, the issue's reference),
    which its peers/floor/setup.sh builds."""
    if not args.peers:
        return Server("floor", [os.path.join(RELEASE, "stamps-floor"), "127.0.0.1:0"], {}, cpu=0)
    floor_dir = os.path.join(args.peers, "peers", "floor")
    binary = os.path.join(floor_dir, "target", "release", "bench-floor")
    if not os.path.exists(binary):
        raise SystemExit(f"{binary} is not built: run {floor_dir}/setup.sh")
    return Server("floor-http", [binary], {"PORT": str(free_port()), "PEER_JWT_SECRET": SECRET}, cpu=0)


def bench_alternating(args, rows):
    """stamps and its floor loaded in turn, round after round: per round
    and endpoint, stamps' CPU per request over the floor's, measured
    seconds apart. The machine's drift over a run moves the floor by more
    than the margins judged here; alternating puts both sides of each ratio
    in the same minute, and the median over the rounds is the figure."""
    data = tempfile.mkdtemp(prefix="stamps-bench-")
    servers = []
    try:
        static = provision(data, None, imported=False)
        server = Server("stamps", [os.path.join(RELEASE, "stamps-server")], server_env(args, data), cpu=0)
        servers.append(server)
        floor = start_floor(args)
        servers.append(floor)
        status, text = post(server.url + ENDPOINTS["get-access-token"],
                            json.dumps({"token": static, "crm_merchant_id": 1}))
        if status != 200:
            raise SystemExit(f"stamps get-access-token: expected 200, got {status}: {text}")
        jwt = json.loads(text)["access_token"]
        plans = {
            "verify-token": (f"Bearer {jwt}", None),
            "ping-static": (f"Token {static}", None),
            "ping-jwt": (f"Bearer {jwt}", None),
            "get-access-token": (None, json.dumps({"token": static, "crm_merchant_id": 1})),
        }
        ratios = {}
        floor_name = floor.name
        for round_no in range(1, args.alternate + 1):
            for endpoint in args.endpoints:
                auth, body = plans[endpoint]
                log(f"round {round_no}: {endpoint} ...")
                own = load(server, ENDPOINTS[endpoint], auth, body, args, 200)
                # The floor gets verify-token's request bytes, as in bench_own.
                base = load(floor, ENDPOINTS["verify-token"], plans["verify-token"][0], None, args, 200)
                ratio = own["server_cpu_us_per_req"] / base["server_cpu_us_per_req"]
                ratios.setdefault(endpoint, []).append(round(ratio, 3))
                for target, row in (("stamps", own), (floor_name, base)):
                    rows.append(dict(target=target, endpoint=endpoint if target == "stamps" else "fixed-body",
                                     mode="pinned", connections=args.connections, round=round_no, **row))
        return {endpoint: {"ratios": r, "median": round(statistics.median(r), 3)}
                for endpoint, r in ratios.items()}
    finally:
        for started in servers:
            started.stop()
        shutil.rmtree(data, ignore_errors=True)


def bench_unknown_text(args, rows):
    """An unknown text on ping, with the failure limits off (with them on,
    all but 60 a minute are 429 before any lookup): the lookup it costs
    when imported tokens are stored, and none when none is."""
    if "reject-unknown-text" not in args.endpoints or args.store_url:
        return
    for imported in (True, False):
        data = tempfile.mkdtemp(prefix="stamps-bench-")
        try:
            provision(data, None, imported)
            env = server_env(args, data, STAMPS_RATE_LIMIT__ENABLED="false")
            server = Server("stamps", [os.path.join(RELEASE, "stamps-server")], env, cpu=0)
            try:
                target = "stamps, limits off, " + ("imported tokens stored" if imported else "none imported")
                log(f"{target}: reject-unknown-text ...")
                row = load(server, ENDPOINTS["reject-unknown-text"], f"Token {UNKNOWN}", None, args, 401)
                rows.append(dict(target=target, endpoint="reject-unknown-text", mode="pinned",
                                 connections=args.connections, **row))
            finally:
                server.stop()
        finally:
            shutil.rmtree(data, ignore_errors=True)


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def bench_scale(args, rows, scale):
    """A store holding args.tokens static tokens: start-up time, and RSS
    after loading verify-token and ping-static."""
    data = tempfile.mkdtemp(prefix="stamps-scale-")
    export = os.path.join(data, "export.jsonl")
    try:
        alphabet = "0123456789abcdefghjkmnpqrstvwxyz"
        rng = __import__("random").Random(7)
        phc = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$Q6ZF2w4u2ZcGAdcQ2CXgFYB9Ts3g3mWj9z1GwKq0bGM"
        with open(export, "w") as f:
            f.write('{"kind":"header","format":"stamps-export","schema":1}\n')
            f.write('{"kind":"merchant","id":1,"name":"My Merchant","active":true,"created_at":1}\n')
            f.write('{"kind":"user","id":5870,"name":"user5870","active":true,"created_at":1}\n')
            seen = set()
            while len(seen) < args.tokens:
                tid = "".join(rng.choice(alphabet) for _ in range(16))
                if tid not in seen:
                    seen.add(tid)
                    f.write('{"kind":"token","id":"%s","user_id":5870,"merchant_id":1,"label":null,'
                            '"hash":"%s","created_at":1,"revoked":false}\n' % (tid, phc))
        store = os.path.join(data, "store")
        log(f"scale: importing {args.tokens} tokens ...")
        run([os.path.join(RELEASE, "stamps-admin"), "--data-dir", store, "import", export])
        os.unlink(export)
        static = json.loads(admin(store, "token", "create", "--user", "5870", "--merchant", "1"))["token"]
        env = {"STAMPS_LISTEN": "127.0.0.1:0", "STAMPS_DATA_DIR": store,
               "STAMPS_JWT__SECRET": SECRET, "STAMPS_LOG": args.log_level,
               # One token asks for far more JWTs than the issuance quota
               # allows: measure the issuing, not 429s.
               "STAMPS_RATE_LIMIT__ISSUE_PER_TOKEN": "0"}
        server = Server("stamps", [os.path.join(RELEASE, "stamps-server")], env, cpu=0)
        try:
            scale["tokens"] = args.tokens
            scale["startup_s"] = round(server.startup_s, 3)
            status, text = post(server.url + ENDPOINTS["get-access-token"],
                                json.dumps({"token": static, "crm_merchant_id": 1}))
            jwt = json.loads(text)["access_token"]
            for endpoint, auth in (("verify-token", f"Bearer {jwt}"), ("ping-static", f"Token {static}")):
                log(f"scale: {endpoint} ...")
                row = load(server, ENDPOINTS[endpoint], auth, None, args, 200)
                rows.append(dict(target=f"stamps, {args.tokens:,} tokens", endpoint=endpoint, mode="pinned",
                                 connections=args.connections, **row))
            scale["rss_mib"] = round(status_kib(server.proc.pid, "VmRSS") / 1024, 1)
            scale["peak_rss_mib"] = round(status_kib(server.proc.pid, "VmHWM") / 1024, 1)
        finally:
            server.stop()
    finally:
        shutil.rmtree(data, ignore_errors=True)


def bench_peers(args, rows):
    out = tempfile.mktemp(suffix=".json")
    cmd = [os.path.join(args.peers, "run-peers.sh"), "--targets", args.peer_targets,
           "--modes", "pinned", "--connections", str(args.connections),
           "--duration", str(args.duration), "--warmup", str(args.warmup),
           "--jwt-secret", SECRET, "--out", out]
    log("peers: " + " ".join(cmd))
    subprocess.run(cmd, check=True)
    for row in json.load(open(out))["rows"]:
        rows.append({k: row.get(k) for k in ("target", "endpoint", "mode", "connections", "requests",
                                                "seconds", "rps", "p50_ms", "p99_ms", "error_count",
                                                "server_cpu_us_per_req", "server_cores_used")})
    os.unlink(out)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=int, default=10, help="measured seconds per endpoint (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="unmeasured seconds first (default 2)")
    p.add_argument("--connections", type=int, default=128, help="wrk connections (default 128)")
    p.add_argument("--endpoints", default=",".join(ENDPOINTS), help="comma list (default: all)")
    p.add_argument("--log-level", default="info", help="STAMPS_LOG of the server under load (default: the server's own, info: a line per request)")
    p.add_argument("--peers", help="the shared bench folder (with run-peers.sh): run the peers in the same run")
    p.add_argument("--peer-targets", default="django,node,floor-jwt", help="peers to run (default django,node,floor-jwt)")
    p.add_argument("--tokens", type=int, default=1_000_000, help="tokens stored for the scale rows (0: skip them)")
    p.add_argument("--store-url", help="run stamps on this (empty) PostgreSQL database instead of sled")
    p.add_argument("--alternate", type=int, default=0, metavar="ROUNDS",
                   help="instead: stamps and the floor in turn, ROUNDS times per endpoint; "
                        "the median of stamps' CPU per request over the floor's (with --peers, "
                        "the shared bench's floor-http)")
    p.add_argument("--out", help="the results (default benches/results/http-latest.json; "
                                 "with --alternate, http-alternate.json)")
    args = p.parse_args()
    args.endpoints = [e for e in args.endpoints.split(",") if e]
    if args.alternate:
        alternating = ("verify-token", "ping-static", "ping-jwt", "get-access-token")
        if p.get_default("endpoints") == ",".join(args.endpoints):
            args.endpoints = list(alternating)
        unknown = [e for e in args.endpoints if e not in alternating]
        if unknown or args.store_url:
            raise SystemExit(f"--alternate measures {', '.join(alternating)} on sled"
                             + (f", not {', '.join(unknown)}" if unknown else ", without --store-url"))
    args.out = args.out or os.path.join(ROOT, "benches", "results",
                                        "http-alternate.json" if args.alternate else "http-latest.json")
    for tool in ("wrk", "taskset"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is needed (Debian: apt-get install wrk util-linux)")
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    rows, scale, alternating = [], {}, {}
    if args.alternate:
        alternating = bench_alternating(args, rows)
    else:
        bench_own(args, rows)
        bench_unknown_text(args, rows)
        if args.tokens:
            bench_scale(args, rows, scale)
        if args.peers:
            bench_peers(args, rows)
    meta = {
        "started_utc": started,
        "cpu_model": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?"),
        "cpus": os.cpu_count(), "kernel": platform.release(),
        "wrk": (subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.splitlines() or ["wrk"])[0].split(" Copyright")[0],
        "duration_s": args.duration, "warmup_s": args.warmup, "connections": args.connections,
        "server_log_level": args.log_level,
        "store": "postgres" if args.store_url else "sled",
        "command": " ".join(["scripts/bench-http.sh"] + sys.argv[1:]),
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    json.dump({"meta": meta, "rows": rows, "scale": scale, "alternating": alternating},
              open(args.out, "w"), indent=1)
    log(f"wrote {args.out}")
    for r in rows:
        log(f"{r['target']:>10} {r['endpoint']:<22} {r['rps']:>10} req/s  p50 {r['p50_ms']:.3f} ms  "
            f"p99 {r['p99_ms']:.3f} ms  {r['server_cpu_us_per_req']} us/req  errors {r['error_count']}")
    for endpoint, a in alternating.items():
        log(f"{endpoint}: CPU per request / the floor's, by round {a['ratios']}: median {a['median']}")


if __name__ == "__main__":
    main()
