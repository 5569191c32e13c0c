#!/usr/bin/env python3
"""Forward authentication behind nginx, measured: nginx alone in front of
an upstream, against nginx with docs/PROXIES.md's configuration (every
request checked by stamps' /api/auth/check with a JWT), side by side in one
run. See scripts/bench-proxy.sh.

nginx (one worker) and stamps-server share the first CPU, wrk the second;
per setup: --warmup unmeasured seconds, then --duration measured ones, and
each process's CPU time (all its threads; nginx's master and worker) read
from /proc before and after. The upstream is a server block of the same
nginx answering a fixed body, so "nginx alone" is the floor of proxying.
"""
import argparse, datetime, json, os, re, shutil, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_http as bench  # noqa: E402  (Server, admin, post, cpu_seconds, free_port)

ROOT = bench.ROOT
DOC = os.path.join(ROOT, "docs", "PROXIES.md")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# Both setups reach the upstream the same way, over kept-alive connections,
# so that the difference is the check.
TO_UPSTREAM = 'proxy_pass http://api; proxy_http_version 1.1; proxy_set_header Connection "";'


def documented_block(stamps, front):
    """docs/PROXIES.md's nginx configuration, with these addresses."""
    text = open(DOC).read().split("<!-- nginx:begin -->", 1)[1].split("<!-- nginx:end -->", 1)[0]
    text = "\n".join(l for l in text.splitlines() if not l.startswith("```"))
    return (text.replace("server 127.0.0.1:8080;", f"server {stamps};")
            .replace("listen 80;", f"listen 127.0.0.1:{front};")
            .replace("proxy_pass http://127.0.0.1:9000;", TO_UPSTREAM))


def plain_block(front):
    return f"server {{ listen 127.0.0.1:{front};\n  location / {{ {TO_UPSTREAM} }} }}\n"


def upstream_block(upstream):
    return (f"upstream api {{ server 127.0.0.1:{upstream}; keepalive 64; }}\n"
            f"server {{ listen 127.0.0.1:{upstream};\n"
            f"  location / {{ default_type application/json; return 200 '{{\"orders\":[]}}'; }} }}\n")


class Nginx:
    def __init__(self, binary, http_block, ports, cpu):
        self.dir = tempfile.mkdtemp(prefix="stamps-nginx-")
        p = self.dir
        conf = (f"worker_processes 1;\npid {p}/nginx.pid;\nerror_log {p}/error.log warn;\n"
                f"events {{ worker_connections 4096; }}\n"
                f"http {{ access_log off; client_body_temp_path {p}/body; proxy_temp_path {p}/proxy;\n"
                f"fastcgi_temp_path {p}/fastcgi; uwsgi_temp_path {p}/uwsgi; scgi_temp_path {p}/scgi;\n"
                f"{http_block}\n}}\n")
        open(os.path.join(p, "nginx.conf"), "w").write(conf)
        self.proc = subprocess.Popen(["taskset", "-c", str(cpu), binary, "-p", p, "-c", f"{p}/nginx.conf",
                                      "-e", f"{p}/error.log", "-g", "daemon off;"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        import socket
        deadline = time.monotonic() + 10
        for port in ports:
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or self.proc.poll() is not None:
                        self.stop()
                        raise SystemExit("nginx did not start: " + open(f"{p}/error.log").read())
                    time.sleep(0.05)

    def pids(self):
        children = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout.split()
        return [self.proc.pid] + [int(c) for c in children]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def measure(url, auth, args, processes):
    """wrk GETs `url` with `auth`; req/s, latency and CPU per request of
    each named process (a list of pids)."""
    env = dict(os.environ, BENCH_AUTH=auth, BENCH_BODY="")
    lua = os.path.join(ROOT, "scripts", "wrk-report.lua")
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        env["BENCH_OUT"] = out.name
        # wrk-report.lua sends POST; forward auth takes any method.
        wrk = ["taskset", "-c", "1", "wrk", "-t1", f"-c{args.connections}", "-s", lua]
        subprocess.run(wrk + [f"-d{args.warmup}s", url], env=env, check=True, capture_output=True)
        before = {name: sum(bench.cpu_seconds(p) for p in pids) for name, pids in processes.items()}
        subprocess.run(wrk + [f"-d{args.duration}s", url], env=env, check=True, capture_output=True)
        after = {name: sum(bench.cpu_seconds(p) for p in pids) for name, pids in processes.items()}
        summary = json.load(open(out.name))
    requests = summary["requests"]
    row = {"requests": requests, "rps": round(requests / (summary["duration_us"] / 1e6), 1),
           "p50_ms": summary["p50_us"] / 1000, "p99_ms": summary["p99_us"] / 1000,
           "errors": sum(summary["errors"].values())}
    for name in processes:
        row[f"{name}_cpu_us_per_req"] = round((after[name] - before[name]) * 1e6 / max(requests, 1), 2)
    return row


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--out", default=os.path.join(ROOT, "benches", "results", "proxy-latest.json"))
    args = p.parse_args()
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if not nginx or not shutil.which("wrk"):
        raise SystemExit("needs nginx and wrk (scripts/install-tools.sh nginx wrk)")
    rows = []
    data = tempfile.mkdtemp(prefix="stamps-bench-")
    try:
        static = bench.provision(data, None, imported=False)
        env = {"STAMPS_LISTEN": "127.0.0.1:0", "STAMPS_DATA_DIR": data,
               "STAMPS_JWT__SECRET": bench.SECRET, "STAMPS_PROXY__TRUSTED": "127.0.0.1"}
        server = bench.Server("stamps", [os.path.join(bench.RELEASE, "stamps-server")], env, cpu=0)
        try:
            status, text = bench.post(server.url + "/api/auth/get-access-token/",
                                      json.dumps({"token": static, "crm_merchant_id": 1}))
            auth = "Bearer " + json.loads(text)["access_token"]
            stamps_addr = server.url.split("//", 1)[1]
            for setup in ("nginx alone", "nginx + stamps forward auth"):
                upstream, front = bench.free_port(), bench.free_port()
                block = upstream_block(upstream) + (
                    plain_block(front) if setup == "nginx alone"
                    else documented_block(stamps_addr, front))
                proxy = Nginx(nginx, block, [upstream, front], cpu=0)
                try:
                    url = f"http://127.0.0.1:{front}/orders"
                    status, body = bench.post(url, None, auth)
                    if status != 200:
                        raise SystemExit(f"{setup}: {status} {body}")
                    log(f"{setup} ...")
                    processes = {"nginx": proxy.pids()}
                    if setup != "nginx alone":
                        processes["stamps"] = [server.proc.pid]
                    row = measure(url, auth, args, processes)
                    rows.append(dict(setup=setup, **row))
                finally:
                    proxy.stop()
        finally:
            server.stop()
    finally:
        shutil.rmtree(data, ignore_errors=True)
    version = subprocess.run([nginx, "-v"], capture_output=True, text=True).stderr.strip()
    meta = {"started_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "nginx": version, "connections": args.connections, "duration_s": args.duration,
            "command": " ".join(["scripts/bench-proxy.sh"] + sys.argv[1:])}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    json.dump({"meta": meta, "rows": rows}, open(args.out, "w"), indent=1)
    for r in rows:
        cpu = "  ".join(f"{k.split('_')[0]} {v} us/req" for k, v in r.items() if k.endswith("cpu_us_per_req"))
        log(f"{r['setup']:<30} {r['rps']:>10} req/s  p50 {r['p50_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms  "
            f"{cpu}  errors {r['errors']}")
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
