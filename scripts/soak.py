#!/usr/bin/env python3
"""Soak test: the release server on sled, with its default settings but a
short audit retention and a raised issuance quota, under a mixed load for
--minutes, while an admin loop changes the store once a second. See
scripts/soak.sh and docs/OPERATIONS.md ("A long run").

Every --interval seconds it records the server's RSS, data directory size,
open descriptors and threads, and the load's req/s, p50/p99 and statuses.
At the end the store (through the running server, and again after it
stopped) must hold exactly what the admin loop did. Exits 1 if any pass
criterion fails; writes the samples and the verdict as JSON, and with
--report the table (and, with gnuplot, the chart) into docs/OPERATIONS.md.
"""
import argparse, datetime, http.client, json, os, re, shutil, signal, subprocess, sys, tempfile, threading, time, types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_http as bench  # noqa: E402  (the Server class, admin, post)

ROOT = bench.ROOT
LUA = os.path.join(ROOT, "scripts", "soak-mix.lua")
DOC = os.path.join(ROOT, "docs", "OPERATIONS.md")
CHART = os.path.join(ROOT, "docs", "soak.png")
BEGIN, END = "<!-- soak:begin -->", "<!-- soak:end -->"
MERCHANT, LOAD_USER = 1, 5870
# The admin loop's own records: it never touches the load's.
CHURN_USER, TOGGLED_USER, TOGGLED_MERCHANT = 9001, 9002, 2
# Checks after the load come from another loopback address than the load's
# refused credentials, which keep 127.0.0.1 over its failure limit.
CHECK_ADDRESS = "127.0.0.2"


def log(*a):
    print(*a, file=sys.stderr, flush=True)


class Model:
    """What the admin loop did, to compare the store with at the end."""

    def __init__(self):
        self.tokens = {}  # id -> {"secret", "revoked"}
        self.active = {("user", TOGGLED_USER): True, ("merchant", TOGGLED_MERCHANT): True}
        self.revoked_jwts = []
        self.rounds = 0
        self.failures = []
        self.slowest_s = 0.0


def admin(data, *args, stdin=None):
    return json.loads(bench.admin(data, *args, stdin=stdin))


def check_request(base_url, path, auth=None, body=None):
    """One POST from CHECK_ADDRESS; (status, body)."""
    host, port = base_url.split("//", 1)[1].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30, source_address=(CHECK_ADDRESS, 0))
    try:
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = auth
        conn.request("POST", path, body=body or "", headers=headers)
        r = conn.getresponse()
        return r.status, r.read().decode()
    finally:
        conn.close()


def admin_round(data, url, model):
    """One change a second, in a cycle of four: create a token; revoke the
    oldest live one beyond three; toggle a user or a merchant; obtain a JWT
    with the newest live token and revoke it by its jti."""
    step = model.rounds % 4
    live = [tid for tid, t in model.tokens.items() if not t["revoked"]]
    if step == 0:
        made = admin(data, "token", "create", "--user", str(CHURN_USER), "--merchant", str(MERCHANT))
        model.tokens[made["id"]] = {"secret": made["token"], "revoked": False}
    elif step == 1 and len(live) > 3:
        admin(data, "token", "revoke", live[0])
        model.tokens[live[0]]["revoked"] = True
    elif step == 2:
        kind, rid = (("user", TOGGLED_USER) if model.rounds % 8 == 2 else ("merchant", TOGGLED_MERCHANT))
        on = model.active[(kind, rid)]
        admin(data, kind, "disable" if on else "enable", str(rid))
        model.active[(kind, rid)] = not on
    elif step == 3 and live:
        status, text = check_request(url, "/api/auth/get-access-token/",
                                     body=json.dumps({"token": model.tokens[live[-1]]["secret"],
                                                      "crm_merchant_id": MERCHANT}))
        if status != 200:
            raise RuntimeError(f"get-access-token with a live token: {status} {text}")
        jwt = json.loads(text)["access_token"]
        admin(data, "jwt", "revoke", jwt_claims(jwt)["jti"])
        model.revoked_jwts.append(jwt)


def run_text(cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def jwt_claims(jwt):
    import base64
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def admin_loop(data, url, model, stop):
    """admin_round once a second until `stop`; failures are recorded."""
    while not stop.is_set():
        started = time.monotonic()
        try:
            admin_round(data, url, model)
        except Exception as e:  # recorded and judged at the end
            model.failures.append(f"round {model.rounds}: {e}")
        model.rounds += 1
        took = time.monotonic() - started
        model.slowest_s = max(model.slowest_s, took)
        stop.wait(max(0.0, 1.0 - took))


def store_matches(data, model):
    """Differences between the store (through the admin CLI) and the model."""
    problems = []
    tokens = {t["id"]: t for t in admin(data, "token", "list")}
    for tid, want in model.tokens.items():
        got = tokens.get(tid)
        if got is None:
            problems.append(f"token {tid} is missing")
        elif got["revoked"] != want["revoked"]:
            problems.append(f"token {tid}: revoked {got['revoked']}, the loop made it {want['revoked']}")
    churn = {tid for tid, t in tokens.items() if t["user_id"] == CHURN_USER}
    if churn != set(model.tokens):
        problems.append(f"tokens of user {CHURN_USER} the loop did not create: {sorted(churn - set(model.tokens))}")
    for kind in ("user", "merchant"):
        records = {r["id"]: r for r in admin(data, kind, "list")}
        for (k, rid), active in model.active.items():
            if k == kind and records.get(rid, {}).get("active") != active:
                problems.append(f"{kind} {rid}: active {records.get(rid, {}).get('active')}, the loop left it {active}")
    return problems


def server_agrees(url, model):
    """The running server's answers agree with the model: revoked JWTs and
    tokens are refused, the newest live token works."""
    problems = []
    for jwt in model.revoked_jwts[-20:]:
        status, _ = check_request(url, "/api/auth/verify-token/", auth=f"Bearer {jwt}")
        if status != 401:
            problems.append(f"a revoked JWT answered {status}")
    tokens = list(model.tokens.values())
    for t in [t for t in tokens if t["revoked"]][-3:] + [t for t in tokens if not t["revoked"]][-1:]:
        status, _ = check_request(url, "/api/ping", auth=f"Token {t['secret']}")
        if status != (401 if t["revoked"] else 200):
            problems.append(f"a {'revoked' if t['revoked'] else 'live'} token answered {status}")
    return problems


def disk_bytes(path):
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_blocks * 512
            except FileNotFoundError:
                pass
    return total


def process_sample(pid):
    status = open(f"/proc/{pid}/status").read()
    field = lambda name: int(re.search(rf"^{name}:\s+(\d+)", status, re.M).group(1))
    return {"rss_mib": round(field("VmRSS") / 1024, 1), "threads": field("Threads"),
            "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def load_interval(url, creds, args):
    """One wrk run of --interval seconds; its summary."""
    env = dict(os.environ, SOAK_JWT=creds["jwt"], SOAK_STATIC=creds["static"], SOAK_BAD_JWT=creds["bad"],
               SOAK_MERCHANT=str(MERCHANT))
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        env["SOAK_OUT"] = out.name
        subprocess.run(["taskset", "-c", "1", "wrk", "-t1", f"-c{args.connections}", f"-d{args.interval}s",
                        "--timeout", "10s", "-s", LUA, url], env=env, check=True, capture_output=True)
        return json.load(open(out.name))


def warm_up_s(retention_s, interval):
    """Warm-up: until retention applies, and one interval more. Before it
    the audit trail (and what the store caches of it) only grows. It
    applies at the first pruning pass after the retention, and the server
    prunes twice per retention, every minute at most (stamps-auth's
    `prune_every`): a CI run judged from the retention on saw RSS still
    rising to the trail's plateau."""
    return retention_s + min(max(retention_s / 2, 1), 60) + interval


def judge(samples, model, end_problems, exit_code, args):
    """The pass criteria; a list of (criterion, measured, bound, met)."""
    warm = max(1, sum(1 for s in samples if s["minute"] * 60 < warm_up_s(args.retention_s, args.interval)))
    after = samples[warm:] if len(samples) - warm >= 2 else samples[-2:]
    verdict = []
    half = len(after) // 2

    def flat(key, label, bound, slack=0, pick=max, picked="largest"):
        """No growth: the largest (`pick`) value of the second half of the
        samples after warm-up against the first half's. A single sample
        would be noise; growth across halves is a leak. `slack` allows
        counts (threads: the blocking pool grows and shrinks) a few units."""
        first, second = pick(s[key] for s in after[:half]), pick(s[key] for s in after[half:])
        growth = second / first - 1 if first else 0.0
        ok = growth <= bound or second - first <= slack
        verdict.append((f"{label} after warm-up: {picked} of the second half ÷ of the first",
                        f"{first} → {second} ({growth:+.1%})",
                        f"≤ +{bound:.0%}" + (f" or +{slack}" if slack else ""), ok))

    # RSS by its smallest sample: a sample may catch an argon2 hash's
    # 19 MiB working memory in use (a new token every fourth admin round),
    # which a leak would not explain; a leak raises the floor too.
    flat("rss_mib", "RSS (MiB)", 0.10, pick=min, picked="smallest")
    flat("fds", "open descriptors", 0.10, slack=2)
    flat("threads", "threads", 0.10, slack=2)
    # Disk: a plateau once retention applies (sled writes in segments and
    # reclaims them in steps, hence the wider bound).
    flat("disk_mib", "data directory (MiB)", 0.20)
    # p99: the median of the first samples after warm-up against the median
    # of the last ones (up to three each), so one noisy interval is not a drift.
    k = max(1, min(3, half))
    median = lambda xs: sorted(xs)[len(xs) // 2]
    p99_first, p99_last = median([s["p99_ms"] for s in after[:k]]), median([s["p99_ms"] for s in after[-k:]])
    drift = p99_last / p99_first - 1
    verdict.append((f"p99 drift, first to last {k} samples after warm-up (medians)",
                    f"{p99_first:.2f} → {p99_last:.2f} ms ({drift:+.1%})", "≤ +20%", drift <= 0.20))
    # 95 % of the cycle is valid (200), 5 % refused (401, or 429 once the
    # load's address is over its failure limit); nothing else.
    statuses = {}
    for s in samples:
        for code, n in s["statuses"].items():
            statuses[code] = statuses.get(code, 0) + n
    unexpected = sum(n for code, n in statuses.items() if code not in (200, 401, 429))
    verdict.append(("answers other than 200, 401 and 429", str(unexpected), "0", unexpected == 0))
    ok_share = statuses.get(200, 0) / max(sum(statuses.values()), 1)
    verdict.append(("share of 200 answers (95 % of the mix is valid)", f"{ok_share:.2%}", "≥ 94%", ok_share >= 0.94))
    five = sum(s["5xx"] for s in samples)
    verdict.append(("5xx answers", str(five), "0", five == 0))
    socket_errors = sum(s["socket_errors"] for s in samples)
    verdict.append(("connection errors and timeouts", str(socket_errors), "0", socket_errors == 0))
    verdict.append(("admin rounds that failed", f"{len(model.failures)} of {model.rounds}", "0", not model.failures))
    verdict.append(("store and server against the loop's model", f"{len(end_problems)} differences", "0",
                    not end_problems))
    verdict.append(("exit status at SIGTERM", str(exit_code), "0", exit_code == 0))
    return verdict


def soak(args):
    data = tempfile.mkdtemp(prefix="stamps-soak-")
    log_path = os.path.join(tempfile.mkdtemp(prefix="stamps-soak-log-"), "server.log")
    model, samples = Model(), []
    try:
        admin(data, "merchant", "add", "--name", "Load", "--id", str(MERCHANT))
        admin(data, "merchant", "add", "--name", "Toggled", "--id", str(TOGGLED_MERCHANT))
        admin(data, "user", "add", "--name", "load", "--id", str(LOAD_USER))
        admin(data, "user", "add", "--name", "churn", "--id", str(CHURN_USER))
        admin(data, "user", "add", "--name", "toggled", "--id", str(TOGGLED_USER))
        admin(data, "token", "create", "--user", str(TOGGLED_USER), "--merchant", str(TOGGLED_MERCHANT))
        static = admin(data, "token", "create", "--user", str(LOAD_USER), "--merchant", str(MERCHANT))["token"]
        # The server's defaults (its own secret, the log at info with a line
        # per request), but for the retention and the quota.
        env = {"STAMPS_LISTEN": "127.0.0.1:0", "STAMPS_DATA_DIR": data,
               "STAMPS_AUDIT__RETENTION": f"{args.retention_s}s",
               "STAMPS_RATE_LIMIT__ISSUE_PER_TOKEN": "1000000"}
        server = bench.Server("stamps", [os.path.join(bench.RELEASE, "stamps-server")], env, cpu=0,
                              log_path=log_path)
        stop = threading.Event()
        loop = threading.Thread(target=admin_loop, args=(data, server.url, model, stop), daemon=True)
        exit_code = None
        try:
            status, text = bench.post(server.url + "/api/auth/get-access-token/",
                                      json.dumps({"token": static, "crm_merchant_id": MERCHANT}))
            if status != 200:
                raise SystemExit(f"get-access-token: {status} {text}")
            jwt = json.loads(text)["access_token"]
            head, payload, sig = jwt.split(".")
            creds = {"jwt": jwt, "static": static, "bad": f"{head}.{payload}.{'A' if sig[0] != 'A' else 'B'}{sig[1:]}"}
            loop.start()
            started = time.monotonic()
            for i in range(args.minutes * 60 // args.interval):
                result = load_interval(server.url, creds, args)
                statuses = {int(k): v for k, v in result["statuses"].items()}
                log_bytes = os.path.getsize(log_path)
                log_lines = int(run_text(["wc", "-l", log_path]).split()[0])
                secret_logged = subprocess.run(["grep", "-qF", "-e", static, "-e", sig, log_path]).returncode == 0
                os.truncate(log_path, 0)  # bounded, as a rotated log would be
                sample = {"minute": round((time.monotonic() - started) / 60, 2), "requests": result["requests"],
                          "rps": round(result["requests"] / (result["duration_us"] / 1e6), 1),
                          "p50_ms": result["p50_us"] / 1000, "p99_ms": result["p99_us"] / 1000,
                          "5xx": sum(v for k, v in statuses.items() if k >= 500),
                          "statuses": statuses,
                          "socket_errors": sum(result["errors"].values()),
                          "disk_mib": round(disk_bytes(data) / 2**20, 2),
                          "log_mib": round(log_bytes / 2**20, 1), "log_lines": log_lines,
                          "secret_logged": secret_logged,
                          "admin_rounds": model.rounds, **process_sample(server.proc.pid)}
                samples.append(sample)
                log(f"{sample['minute']:6.2f} min  {sample['rps']:>9} req/s  p50 {sample['p50_ms']:.2f} ms  "
                    f"p99 {sample['p99_ms']:.2f} ms  5xx {sample['5xx']}  rss {sample['rss_mib']} MiB  "
                    f"disk {sample['disk_mib']} MiB  fds {sample['fds']}  threads {sample['threads']}  "
                    f"log lines/requests {log_lines / max(result['requests'], 1):.3f}  admin rounds {model.rounds}")
            stop.set()
            loop.join(30)
            end_problems = store_matches(data, model) + server_agrees(server.url, model)
            end_problems += [f"a secret in the log at minute {s['minute']}" for s in samples if s["secret_logged"]]
        finally:
            stop.set()
            if server.proc.poll() is None:
                os.kill(server.proc.pid, signal.SIGTERM)
                try:
                    exit_code = server.proc.wait(30)
                except subprocess.TimeoutExpired:
                    exit_code = "no exit within 30 s"
            server.stop()
        # Nothing lost at the stop either: the store, opened directly.
        end_problems += [f"after the stop: {p}" for p in store_matches(data, model)]
        return samples, model, end_problems, exit_code
    finally:
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(os.path.dirname(log_path), ignore_errors=True)


def rejudge(path):
    """A saved run judged again by the current criteria: its samples, admin
    rounds and what it found at the end, as they were recorded."""
    result = json.load(open(path))
    for s in result["samples"]:
        s["statuses"] = {int(code): n for code, n in s["statuses"].items()}
    model = types.SimpleNamespace(failures=result["admin_failures"], rounds=result["admin_rounds"])
    saved_exit = next((v["measured"] for v in result["verdict"] if v["criterion"] == "exit status at SIGTERM"),
                      "not recorded")
    exit_code = int(saved_exit) if saved_exit.lstrip("-").isdigit() else saved_exit
    args = types.SimpleNamespace(retention_s=result["meta"]["retention_s"], interval=result["meta"]["interval_s"])
    return result, judge(result["samples"], model, result["end_problems"], exit_code, args)


def report(result):
    """The table (and chart) into docs/OPERATIONS.md, between the markers."""
    meta, samples, verdict = result["meta"], result["samples"], result["verdict"]
    lines = [BEGIN, "",
             f"Run of {meta['started_utc']}: `{meta['command']}`, {meta['minutes']} minutes, "
             f"{meta['connections']} connections, audit retention {meta['retention_s']} s, "
             f"{meta['cpu_model']}, {meta['cpus']} cores.", "",
             "| minute | req/s | p50 ms | p99 ms | 5xx | RSS MiB | data dir MiB | fds | threads | log lines ÷ requests |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for s in samples:
        lines.append(f"| {s['minute']:.1f} | {s['rps']:,.0f} | {s['p50_ms']:.2f} | {s['p99_ms']:.2f} | {s['5xx']} "
                     f"| {s['rss_mib']} | {s['disk_mib']} | {s['fds']} | {s['threads']} "
                     f"| {s['log_lines'] / max(s['requests'], 1):.3f} |")
    lines += ["", "| criterion | measured | bound | met |", "| --- | ---: | ---: | :---: |"]
    lines += [f"| {c} | {m} | {b} | {'yes' if ok else '**no**'} |" for c, m, b, ok in verdict]
    if chart(samples):
        lines += ["", "![soak: req/s, p99, RSS and data directory per minute](soak.png)"]
    lines += ["", END]
    doc = open(DOC).read()
    if BEGIN in doc:
        head, rest = doc.split(BEGIN, 1)
        doc = head + "\n".join(lines) + rest.split(END, 1)[1]
    else:
        doc += "\n" + "\n".join(lines) + "\n"
    open(DOC, "w").write(doc)


def chart(samples):
    if not shutil.which("gnuplot"):
        log("gnuplot not found (apt-get install gnuplot-nox): no chart")
        return False
    with tempfile.NamedTemporaryFile("w", suffix=".dat", delete=False) as f:
        for s in samples:
            f.write(f"{s['minute']} {s['rps']} {s['p99_ms']} {s['rss_mib']} {s['disk_mib']}\n")
    script = f"""
set terminal pngcairo size 1000,700 font ",10"
set output "{CHART}"
set multiplot layout 2,1 title "stamps soak: the server under mixed load, sampled every interval"
set xlabel "minutes"
set ylabel "req/s"; set y2label "p99 ms"; set ytics nomirror; set y2tics; set yrange [0:*]; set y2range [0:*]
set key bottom right
plot "{f.name}" using 1:2 with linespoints title "req/s", "" using 1:3 axes x1y2 with linespoints title "p99 (ms)"
set ylabel "MiB"; unset y2label; unset y2tics
plot "{f.name}" using 1:4 with linespoints title "RSS", "" using 1:5 with linespoints title "data directory"
unset multiplot
"""
    try:
        subprocess.run(["gnuplot"], input=script, text=True, check=True, capture_output=True)
        return True
    finally:
        os.unlink(f.name)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=int, default=30, help="length of the load (default 30)")
    p.add_argument("--interval", type=int, default=60, help="seconds between samples (default 60)")
    p.add_argument("--retention", dest="retention_s", type=int, default=120,
                   help="the server's audit retention, seconds (default 120)")
    p.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    p.add_argument("--out", default=os.path.join(ROOT, "benches", "results", "soak-latest.json"))
    p.add_argument("--report", action="store_true", help="write the table and chart into docs/OPERATIONS.md")
    p.add_argument("--rejudge", metavar="FILE",
                   help="run nothing: judge a saved run (its --out file) again by the current criteria, "
                        "and write the verdict back to it")
    args = p.parse_args()
    if args.rejudge:
        result, verdict = rejudge(args.rejudge)
        result["verdict"] = [dict(criterion=c, measured=m, bound=b, met=ok) for c, m, b, ok in verdict]
        json.dump(result, open(args.rejudge, "w"), indent=1)
        return conclude(result, verdict, result["admin_failures"][:10] + result["end_problems"][:10], args.report)
    warm_up = warm_up_s(args.retention_s, args.interval)
    if args.minutes * 60 < warm_up + 2 * args.interval:
        raise SystemExit(f"--minutes must leave two samples after the warm-up: {warm_up:.0f} s with "
                         f"--retention {args.retention_s} and --interval {args.interval}, "
                         f"so at least {(warm_up + 2 * args.interval) / 60:.1f} minutes")
    for tool in ("wrk", "taskset"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is needed (Debian: apt-get install wrk util-linux)")
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    samples, model, end_problems, exit_code = soak(args)
    verdict = judge(samples, model, end_problems, exit_code, args)
    result = {
        "meta": {"started_utc": started, "minutes": args.minutes, "interval_s": args.interval,
                 "retention_s": args.retention_s, "connections": args.connections,
                 "cpu_model": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                                    if l.startswith("model name")), "?"),
                 "cpus": os.cpu_count(), "command": " ".join(["scripts/soak.sh"] + sys.argv[1:])},
        "samples": samples, "admin_rounds": model.rounds, "admin_failures": model.failures,
        "admin_slowest_round_s": round(model.slowest_s, 3), "end_problems": end_problems,
        "verdict": [dict(criterion=c, measured=m, bound=b, met=ok) for c, m, b, ok in verdict],
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    json.dump(result, open(args.out, "w"), indent=1)
    log(f"wrote {args.out}")
    return conclude(result, verdict, model.failures[:10] + end_problems[:10], args.report)


def conclude(result, verdict, problems, with_report):
    """Prints the verdict (and, with `with_report`, writes the report);
    the exit status."""
    for c, m, b, ok in verdict:
        log(f"{'PASS' if ok else 'FAIL'}  {c}: {m} (bound {b})")
    for problem in problems:
        log(f"  {problem}")
    if with_report:
        report({**result, "verdict": verdict})
    return 0 if all(ok for *_, ok in verdict) else 1


if __name__ == "__main__":
    sys.exit(main())
