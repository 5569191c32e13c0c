#!/usr/bin/env python3
"""Turns an HTTP benchmark result (scripts/bench_http.py) into the HTTP
section of docs/PERFORMANCE.md and the chart docs/http-bench.png."""
import json, os, shutil, subprocess, sys, tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "PERFORMANCE.md")
CHART = os.path.join(ROOT, "docs", "http-bench.png")
BEGIN, END = "<!-- http-bench:begin -->", "<!-- http-bench:end -->"


def main(path):
    data = json.load(open(path))
    meta, rows = data["meta"], data["rows"]
    by = {(r["target"], r["endpoint"]): r for r in rows}
    floor = by[("floor", "fixed-body")]

    def own(endpoint):
        return by.get(("stamps", endpoint))

    def ratio(a, b, key="server_cpu_us_per_req"):
        return a[key] / b[key] if a and b and b[key] else None

    checks = [
        ("verify-token CPU/req ÷ floor's", ratio(own("verify-token"), floor), "≤ 1.25"),
        ("ping with JWT CPU/req ÷ floor's", ratio(own("ping-jwt"), floor), "≤ 1.30"),
        ("ping with static token CPU/req ÷ ping with JWT's", ratio(own("ping-static"), own("ping-jwt")), "≤ 1.0"),
        ("get-access-token CPU/req ÷ floor's", ratio(own("get-access-token"), floor), "≤ 1.60"),
        ("verify-token req/s ÷ floor's", ratio(own("verify-token"), floor, "rps"), "≥ 0.90"),
        ("verify-token p99 ÷ floor's p99", ratio(own("verify-token"), floor, "p99_ms"), "≤ 2"),
    ]
    for peer, name, target in (("node", "Fastify", "≥ 4"), ("django", "Django", "≥ 100")):
        for endpoint in ("verify-token", "ping-static", "ping-jwt", "get-access-token"):
            p = by.get((peer, endpoint))
            if p:
                checks.append((f"{name} CPU/req ÷ stamps', {endpoint}", ratio(p, own(endpoint)), target))

    def met(value, target):
        op, bound = target.split()
        return value <= float(bound) if op == "≤" else value >= float(bound)

    lines = [BEGIN, "", f"Run of {meta['started_utc']} on {meta['cpu_model']} ({meta['cpus']} CPUs, Linux {meta['kernel']}), "
             f"{meta['wrk']}; server pinned to CPU 0 and wrk (1 thread, {meta['connections']} connections) to CPU 1; "
             f"{meta['warmup_s']} s warm-up, {meta['duration_s']} s measured per row; server log level `{meta['server_log_level']}`.",
             "", f"Command: `{meta['command']}`", "",
             "| target | endpoint | req/s | p50 ms | p99 ms | server CPU µs/req | errors |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['target']} | {r['endpoint']} | {r['rps']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                     f"{r['server_cpu_us_per_req']:.1f} | {r['error_count']} |")
    scale = data.get("scale") or {}
    if scale:
        checks += [
            (f"server RSS after load, {scale['tokens']:,} tokens stored (MiB)", scale["rss_mib"], "≤ 64"),
            (f"server peak RSS (VmHWM), {scale['tokens']:,} tokens stored (MiB)", scale["peak_rss_mib"], "≤ 64"),
            (f"start-up to listening, {scale['tokens']:,} tokens stored (s)", scale["startup_s"], "≤ 2"),
        ]
    lines += ["", "| measure (same run) | value | target | met |", "| --- | ---: | --- | --- |"]
    for label, value, target in checks:
        if value is not None:
            lines.append(f"| {label} | {value:.2f} | {target} | {'yes' if met(value, target) else '**no**'} |")
    if chart(rows):
        lines += ["", "![server CPU per request, by target and endpoint](http-bench.png)"]
    lines += ["", END]
    text = open(DOC).read()
    section = "\n".join(lines)
    if BEGIN in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        text += "\n## HTTP load: stamps beside its floor and its peers\n\n" + section + "\n"
    open(DOC, "w").write(text)
    print(f"updated {DOC}")


def chart(rows):
    """A bar chart of server CPU per request; gnuplot, if installed."""
    if not shutil.which("gnuplot"):
        print("gnuplot not found (apt-get install gnuplot-nox): no chart", file=sys.stderr)
        return False
    with tempfile.NamedTemporaryFile("w", suffix=".dat", delete=False) as dat:
        for r in rows:
            dat.write(f"\"{r['target']}\\n{r['endpoint']}\" {r['server_cpu_us_per_req']}\n")
    logscale = "set logscale y" if max(r["server_cpu_us_per_req"] for r in rows) > 200 else ""
    script = f"""
set terminal pngcairo size 1100,520 font ",10"
set output "{CHART}"
set title "Server CPU time per request (lower is better; same run, same machine)"
set ylabel "µs of server CPU per request"
set style fill solid 0.8
set boxwidth 0.7
set xtics rotate by -35 left
set rmargin 10
set bmargin 7
set grid ytics
{logscale}
set key off
plot "{dat.name}" using 0:2:xtic(1) with boxes lc rgb "#3a7bd5", "" using 0:2:(sprintf("%.1f",$2)) with labels offset 0,0.7
"""
    subprocess.run(["gnuplot"], input=script, text=True, check=True)
    os.unlink(dat.name)
    return True


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "benches", "results", "http-latest.json"))
