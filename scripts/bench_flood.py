#!/usr/bin/env python3
"""Flood benchmark: JWT verification p99 without, then during, a flood of
wrong-secret attempts against one real static token id. See
scripts/bench-flood.sh.

The server (pinned to the first CPU) trusts 127.0.0.1 as a proxy, and every
flood request names a different client in X-Forwarded-For (addresses of the
benchmarking range 198.18.0.0/15; a header only, nothing is sent there):
a botnet grinding one token id, so the per-address limit never helps and
only the per-token-id limit bounds the argon2 work. wrk (pinned to the
second CPU, with the flood) measures verify-token. The flood's wrong secrets
carry valid checksums, so each one is a real guess the checksum cannot stop.

Rows: the default configuration (rate limits on), and for comparison the
same flood with rate limits off (argon2 bounded only by its semaphore).
Every process started here is stopped by PID; every phase is bounded in
time.

`bench_flood.py flood URL TOKEN_ID RATE SECONDS` runs the flood generator
alone (Python's standard library only) and prints its counts as JSON.
"""
import argparse, asyncio, datetime, json, os, random, re, signal, subprocess, sys, time, zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_http import RELEASE, ROOT, SECRET, Server, admin, load, log, post  # noqa: E402

ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
PATH = "/api/auth/get-access-token/"
DOC = os.path.join(ROOT, "docs", "PERFORMANCE.md")
BEGIN, END = "<!-- flood-bench:begin -->", "<!-- flood-bench:end -->"


def checksum(text):
    """The static token checksum: CRC-32 of everything before the last `_`,
    7 base32 characters, most significant first."""
    crc = zlib.crc32(text.encode()) & 0xFFFFFFFF
    return "".join(ALPHABET[(crc >> (5 * (6 - i))) & 31] for i in range(7))


def wrong_token(token_id, rng):
    head = f"stmp_{token_id}_{''.join(rng.choice(ALPHABET) for _ in range(32))}"
    return f"{head}_{checksum(head)}"


# --- the flood generator -------------------------------------------------

async def flood(url, token_id, rate, seconds, connections):
    m = re.match(r"http://([^:/]+):(\d+)", url)
    host, port = m.group(1), int(m.group(2))
    rng = random.Random()
    # The requests are made up front (a few seconds' worth, then reused):
    # the generator shares its CPU with wrk, and must keep the rate.
    requests = []
    for _ in range(max(256, int(rate * 4))):
        body = json.dumps({"token": wrong_token(token_id, rng), "crm_merchant_id": 1}).encode()
        client = f"198.{18 + rng.randrange(2)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        requests.append(
            f"POST {PATH} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"X-Forwarded-For: {client}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    start = time.monotonic()
    counts, state = {}, {"next": 0, "sent": 0, "deadline": start + seconds}
    # SIGTERM ends the flood early: requests in flight finish, then counts.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, lambda: state.update(deadline=0))

    async def worker():
        # Each wake-up sends every request that is due and not yet taken, in
        # one write (HTTP/1.1 pipelining), then reads their answers: a late
        # wake-up catches up instead of losing the rate.
        reader = writer = None
        while True:
            now = time.monotonic()
            if now >= state["deadline"]:
                break
            due = min(int((now - start) * rate), int((state["deadline"] - start) * rate))
            batch = min(due - state["next"], 64)
            if batch <= 0:
                await asyncio.sleep(max(0.0, start + (state["next"] + 1) / rate - now))
                continue
            first = state["next"]
            state["next"] += batch
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, port)
                writer.write(b"".join(requests[i % len(requests)] for i in range(first, first + batch)))
                for _ in range(batch):
                    head = await reader.readuntil(b"\r\n\r\n")
                    status = int(head[9:12])
                    lower = head.lower()
                    at = lower.index(b"content-length:") + 15
                    length = int(lower[at:lower.index(b"\r\n", at)])
                    await reader.readexactly(length)
                    counts[status] = counts.get(status, 0) + 1
                    state["sent"] += 1
                    if b"connection: close" in lower:
                        raise ConnectionResetError("closed by the server")
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
                counts["error"] = counts.get("error", 0) + 1
                if writer is not None:
                    writer.close()
                writer = None
        if writer is not None:
            writer.close()

    tasks = [asyncio.ensure_future(worker()) for _ in range(connections)]
    # Bounded: a request that never gets its answer does not hold the end.
    await asyncio.wait(tasks, timeout=seconds + 10)
    for task in tasks:
        task.cancel()
    elapsed = time.monotonic() - start
    return {"sent": state["sent"], "seconds": round(elapsed, 2),
            "per_second": round(state["sent"] / elapsed, 1),
            "statuses": {str(k): v for k, v in sorted(counts.items(), key=str)}}


def flood_main(argv):
    p = argparse.ArgumentParser(prog="bench_flood.py flood")
    p.add_argument("url")
    p.add_argument("token_id")
    p.add_argument("rate", type=float)
    p.add_argument("seconds", type=float)
    p.add_argument("--connections", type=int, default=16)
    a = p.parse_args(argv)
    result = asyncio.run(flood(a.url, a.token_id, a.rate, a.seconds, a.connections))
    print(json.dumps(result), flush=True)


# --- the benchmark -------------------------------------------------------

def measure(args, data, static, token_id, fresh, rate_limited):
    env = {"STAMPS_LISTEN": "127.0.0.1:0", "STAMPS_DATA_DIR": data, "STAMPS_JWT__SECRET": SECRET,
           "STAMPS_LOG": args.log_level, "STAMPS_PROXY__TRUSTED": "127.0.0.1/32",
           "STAMPS_RATE_LIMIT__ENABLED": "true" if rate_limited else "false"}
    server = Server("stamps", [os.path.join(RELEASE, "stamps-server")], env, cpu=0)
    try:
        # The holder proves the token once: from then on it is cached.
        status, text = post(server.url + PATH, json.dumps({"token": static, "crm_merchant_id": 1}))
        if status != 200:
            raise SystemExit(f"get-access-token: {status} {text}")
        jwt = json.loads(text)["access_token"]
        auth = f"Bearer {jwt}"
        label = "rate limits on (default)" if rate_limited else "rate limits off"
        log(f"{label}: verify-token, no flood ...")
        quiet = load(server, "/api/auth/verify-token/", auth, None, args, 200)

        seconds = args.warmup * 2 + args.duration + 8
        gen = subprocess.Popen(
            ["taskset", "-c", "1", sys.executable, os.path.abspath(__file__), "flood", server.url,
             token_id, str(args.rate), str(seconds), "--connections", str(args.flood_connections)],
            stdout=subprocess.PIPE, text=True, start_new_session=True)
        try:
            time.sleep(1)  # let the flood reach its rate (bench pacing, not a test)
            log(f"{label}: verify-token, during a flood of {args.rate:g} wrong secrets/s ...")
            flooded = load(server, "/api/auth/verify-token/", auth, None, args, 200)
            # The holder, during the flood.
            t0 = time.monotonic()
            holder, _ = post(server.url + PATH, json.dumps({"token": static, "crm_merchant_id": 1}))
            holder_ms = (time.monotonic() - t0) * 1000
            # Another token's first use (argon2 needed), during the flood.
            t0 = time.monotonic()
            first_use, _ = post(server.url + PATH, json.dumps({"token": fresh, "crm_merchant_id": 1}))
            first_use_ms = (time.monotonic() - t0) * 1000
        finally:
            if gen.poll() is None:
                os.kill(gen.pid, signal.SIGTERM)
            try:
                out, _ = gen.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(gen.pid, signal.SIGKILL)
                out, _ = gen.communicate()
        stats = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    finally:
        server.stop()
    return {"config": label, "quiet": quiet, "flooded": flooded, "flood": stats,
            "holder_status": holder, "holder_ms": round(holder_ms, 1),
            "first_use_status": first_use, "first_use_ms": round(first_use_ms, 1),
            "p99_ratio": round(flooded["p99_ms"] / quiet["p99_ms"], 2)}


def write_doc(result):
    meta, rows = result["meta"], result["rows"]
    lines = [BEGIN, "",
             f"Run of {meta['started_utc']} on {meta['cpu_model']} ({meta['cpus']} CPUs); server pinned to "
             f"CPU 0, wrk (1 thread, {meta['connections']} connections) and the flood generator to CPU 1; "
             f"{meta['warmup_s']} s warm-up, {meta['duration_s']} s measured per row; flood target "
             f"{meta['rate']:g} wrong secrets/s over {meta['flood_connections']} connections, each from "
             f"its own forwarded address.", "",
             f"Command: `{meta['command']}`", "",
             "| configuration | verify-token p99, no flood (ms) | p99 during flood (ms) | ratio | req/s no flood → flood "
             "| flood sent/s | flood answers | holder's get-access-token during flood "
             "| another token's first get-access-token during flood |",
             "| --- | ---: | ---: | ---: | --- | ---: | --- | --- | --- |"]
    for r in rows:
        answers = ", ".join(f"{k}: {v:,}" for k, v in r["flood"].get("statuses", {}).items())
        lines.append(f"| {r['config']} | {r['quiet']['p99_ms']:.2f} | {r['flooded']['p99_ms']:.2f} | "
                     f"**{r['p99_ratio']:.2f}** | {r['quiet']['rps']:,.0f} → {r['flooded']['rps']:,.0f} | "
                     f"{r['flood'].get('per_second', 0):,.0f} | {answers} | {r['holder_status']} in "
                     f"{r['holder_ms']:.0f} ms | {r['first_use_status']} in {r['first_use_ms']:.0f} ms |")
    default = rows[0]
    lines += ["", f"Target: p99 during the flood ≤ 2x p99 without it, with the default configuration: "
              f"{default['p99_ratio']:.2f}, {'met' if default['p99_ratio'] <= 2 else '**not met**'}.", "", END]
    text = open(DOC).read()
    block = "\n".join(lines)
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n## Flood: JWT latency while one token id is ground\n\n" + block + "\n"
    open(DOC, "w").write(text)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "flood":
        return flood_main(sys.argv[2:])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=int, default=10, help="measured seconds per row (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="unmeasured seconds first (default 2)")
    p.add_argument("--connections", type=int, default=128, help="wrk connections (default 128)")
    p.add_argument("--rate", type=float, default=1000, help="wrong secrets per second (default 1000)")
    p.add_argument("--flood-connections", type=int, default=16, help="flood connections (default 16)")
    p.add_argument("--no-unthrottled", action="store_true", help="skip the row with rate limits off")
    p.add_argument("--log-level", default="warn,stamps_server=info", help="STAMPS_LOG of the server")
    p.add_argument("--no-doc", action="store_true", help="do not rewrite docs/PERFORMANCE.md")
    args = p.parse_args()
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    rows = []
    import tempfile, shutil
    data = tempfile.mkdtemp(prefix="stamps-flood-")
    try:
        admin(data, "merchant", "add", "--name", "My Merchant", "--id", "1")
        admin(data, "user", "add", "--name", "user5870", "--id", "5870")
        created = json.loads(admin(data, "token", "create", "--user", "5870", "--merchant", "1"))
        static, token_id = created["token"], created["id"]
        # Never used before the flood: its first use needs argon2.
        fresh = json.loads(admin(data, "token", "create", "--user", "5870", "--merchant", "1"))["token"]
        rows.append(measure(args, data, static, token_id, fresh, rate_limited=True))
        if not args.no_unthrottled:
            rows.append(measure(args, data, static, token_id, fresh, rate_limited=False))
    finally:
        shutil.rmtree(data, ignore_errors=True)
    meta = {"started_utc": started,
            "cpu_model": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                               if l.startswith("model name")), "?"),
            "cpus": os.cpu_count(), "duration_s": args.duration, "warmup_s": args.warmup,
            "connections": args.connections, "rate": args.rate, "flood_connections": args.flood_connections,
            "command": " ".join(["scripts/bench-flood.sh"] + sys.argv[1:])}
    result = {"meta": meta, "rows": rows}
    print(json.dumps(result, indent=1))
    for r in rows:
        log(f"{r['config']}: p99 {r['quiet']['p99_ms']:.2f} ms -> {r['flooded']['p99_ms']:.2f} ms "
            f"(ratio {r['p99_ratio']:.2f}); flood {r['flood'].get('per_second', 0)}/s "
            f"{r['flood'].get('statuses')}; holder {r['holder_status']} in {r['holder_ms']} ms; "
            f"first use {r['first_use_status']} in {r['first_use_ms']} ms")
    if not args.no_doc:
        write_doc(result)
        log(f"wrote the flood section of {DOC}")


if __name__ == "__main__":
    main()
