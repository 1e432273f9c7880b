#!/usr/bin/env python3
"""The load benchmark behind bench/load.sh: starts a release server on a
fresh SQLite database, drives it with wrk on loopback, every phase bounded
in time, and prints each target of issue 10 as `name: measured (target)`
and a last line `N of 6 targets met`. Two machine-client grants at /token
(client_credentials, and a personal access token exchanged, RFC 8693)
are reported beside them as figures, not targets.

Every figure is a ratio measured in this one run (server and load
generator share the machine), so the run is its own baseline.

    python3 bench/load.py BINARY OUT_DIR    (LOAD_SHORT=1: 2 s phases)
"""

import base64
import http.client
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

SHORT = os.environ.get("LOAD_SHORT") == "1"
SECS = int(os.environ.get("LOAD_SECONDS", "2" if SHORT else "10"))
PASSWORD = "load-" + os.urandom(8).hex()
CORES = os.cpu_count() or 1
# Keycloak's sizing guide: client-credentials grants per vCPU-second.
KEYCLOAK_CC_PER_VCPU = 120


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One `portcullis serve` on a fresh database in its own directory."""

    def __init__(self, binary, extra_env=None):
        self.dir = tempfile.mkdtemp(prefix="portcullis-load-")
        self.port = free_port()
        env = dict(os.environ, RUST_LOG="warn", PORTCULLIS_BOOTSTRAP_ADMIN_PASSWORD=PASSWORD)
        env.pop("PORTCULLIS_DATABASE_URL", None)
        env.update(extra_env or {})
        self.log = open(os.path.join(self.dir, "server.log"), "wb")
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [binary, "serve", "--bind", f"127.0.0.1:{self.port}"],
            cwd=self.dir, env=env, stdout=self.log, stderr=self.log,
        )

    def first_200(self, timeout=30.0):
        """Seconds from the spawn to the first `200` on /healthz."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    return time.perf_counter() - self.started
            except OSError:
                time.sleep(0.0005)
        raise SystemExit(f"server did not answer within {timeout} s; see {self.dir}/server.log")

    def url(self, path=""):
        return f"http://127.0.0.1:{self.port}{path}"

    def rss_mib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=35)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def request(port, method, path, body=None, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    return r.status, r.read()


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def basic(client_id, secret):
    """RFC 6749 §2.3.1: id and secret each form-encoded, then base64."""
    raw = f"{urllib.parse.quote_plus(client_id)}:{urllib.parse.quote_plus(secret)}"
    return "Basic " + base64.b64encode(raw.encode()).decode()


class Phase:
    """A machine-client phase at POST /token: the request wrk repeats,
    checked once beforehand (a phase whose request fails is reported as
    failed, never as throughput)."""

    def __init__(self, name, body=None, headers=None, problem=None):
        self.name, self.body, self.headers, self.problem = name, body, headers or {}, problem
        self.result = None

    def check(self, port):
        """One request as wrk will send it: a 200 with an access token, or
        the phase is marked failed with the answer."""
        if self.problem:
            return
        try:
            status, answer = request(port, "POST", "/token", self.body, self.headers)
        except OSError as e:
            self.problem = f"POST /token: {e}"
            return
        try:
            issued = json.loads(answer)
            ok = status == 200 and issued["token_type"] == "bearer" and bool(issued["access_token"])
        except (ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            self.problem = f"the first POST /token answered {status} {answer[:300]!r}"


def machine_phases(port, admin_token):
    """Registers the client `loadsvc` (scope read) and makes the admin a
    personal access token (scope admin): the two phases' requests."""
    admin = {"Authorization": f"Bearer {admin_token}", "Content-Type": "application/json"}
    status, answer = request(port, "POST", "/admin/clients",
                             json.dumps({"client_id": "loadsvc", "scopes": ["read"], "description": "bench/load.py"}), admin)
    if status == 201:
        cc = Phase("client_credentials", "grant_type=client_credentials&scope=read",
                   dict(FORM, Authorization=basic("loadsvc", json.loads(answer)["client_secret"])))
    else:
        cc = Phase("client_credentials", problem=f"POST /admin/clients answered {status} {answer[:300]!r}")
    status, answer = request(port, "POST", "/users/me/tokens",
                             json.dumps({"name": "load", "scopes": ["admin"], "expires_in": 3600}), admin)
    pat = json.loads(answer).get("token", "") if status == 201 else ""
    if pat.startswith("pcat_"):
        body = urllib.parse.urlencode({
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token": pat,
            "subject_token_type": "urn:portcullis:token-type:personal_access_token",
        })
        exchange = Phase("PAT exchange", body, FORM)
    else:
        exchange = Phase("PAT exchange", problem=f"POST /users/me/tokens answered {status} {answer[:300]!r}")
    for phase in (cc, exchange):
        phase.check(port)
    return cc, exchange


def login(port):
    status, body = request(port, "POST", "/token", f"username=admin&password={PASSWORD}",
                           {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200, (status, body)
    return json.loads(body)["access_token"]


def metric(port, name):
    """Sum of a metric's samples in /metrics (loopback is allowed)."""
    _, body = request(port, "GET", "/metrics")
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def millis(text):
    m = re.match(r"([\d.]+)(us|ms|s)$", text)
    return float(m.group(1)) * UNITS[m.group(2)]


def wrk(url, secs, conns, script=None, token=None):
    cmd = ["wrk", "-t1", f"-c{conns}", f"-d{secs}s", "--latency", "--timeout", "10s"]
    if token:
        cmd += ["-H", f"Authorization: Bearer {token}"]
    if script:
        cmd += ["-s", script]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, timeout=secs + 30).stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
              "requests": int(re.search(r"(\d+) requests in", out).group(1)),
              "non2xx": int((re.search(r"Non-2xx or 3xx responses: (\d+)", out) or [0, 0])[1])}
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    result["socket_errors"] = sum(int(n) for n in errors.groups()) if errors else 0
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    result["p99_ms"] = millis(p99.group(1)) if p99 else float("nan")
    return result


def combined(results):
    """Several wrk runs of one route: requests over time, the worst p99."""
    return {"rps": sum(r["rps"] for r in results) / len(results),
            "requests": sum(r["requests"] for r in results),
            "non2xx": sum(r["non2xx"] for r in results),
            "socket_errors": sum(r.get("socket_errors", 0) for r in results),
            "p99_ms": max(r["p99_ms"] for r in results)}


def lua(path, method, body, headers):
    lines = [f'wrk.method = "{method}"', f'wrk.body = "{body}"']
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


class Sampler(threading.Thread):
    """`/users/me` one request at a time on one keep-alive connection, every
    few milliseconds, recording (time, latency): the picture's data."""

    def __init__(self, port, token, every=0.005):
        super().__init__(daemon=True)
        self.port, self.token, self.every = port, token, every
        self.samples, self.stop_flag, self.t0 = [], threading.Event(), time.perf_counter()

    def run(self):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        headers = {"Authorization": f"Bearer {self.token}"}
        while not self.stop_flag.is_set():
            start = time.perf_counter()
            try:
                c.request("GET", "/users/me", headers=headers)
                r = c.getresponse()
                r.read()
                ok = r.status == 200
            except OSError:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                ok = False
            end = time.perf_counter()
            self.samples.append((start - self.t0, (end - start) * 1e3, ok))
            time.sleep(max(0.0, self.every - (end - start)))

    def now(self):
        return time.perf_counter() - self.t0


def p99(values):
    return statistics.quantiles(values, n=100)[98] if len(values) >= 100 else max(values)


def plot(samples, flood, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(10, 4.5), dpi=100)
    t = [s[0] for s in samples]
    ms = [s[1] for s in samples]
    ax.plot(t, ms, ".", markersize=2, color="#1f77b4",
            label="GET /users/me latency, one request at a time (wrk -c16 /users/me runs alongside until the flood ends)")
    ax.axvspan(flood[0], flood[1], color="#d62728", alpha=0.12, label="login flood (8 connections, argon2id)")
    for x, name in zip(flood, ("flood starts", "flood ends")):
        ax.axvline(x, color="#d62728", linewidth=1)
        ax.text(x, ax.get_ylim()[1] * 0.97, " " + name, color="#d62728", va="top", fontsize=9)
    ax.set_xlabel("seconds")
    ax.set_ylabel("latency (ms)")
    ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)


def main():
    binary, out_dir = sys.argv[1], sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    results = []

    def report(name, measured, target, met):
        results.append(met)
        print(f"{name}: {measured} ({target}){'' if met else '  <- not met'}", flush=True)

    # 5. Start to first 200 on a fresh database, the median of several starts.
    starts = []
    for _ in range(3 if SHORT else 7):
        s = Server(binary)
        starts.append(s.first_200())
        s.stop()
    start_ms = statistics.median(starts) * 1e3

    server = Server(binary)
    server.first_200()
    port = server.port
    token = login(port)
    scripts = tempfile.mkdtemp(prefix="portcullis-lua-")
    login_lua = lua(f"{scripts}/login.lua", "POST", f"username=admin&password={PASSWORD}",
                    {"Content-Type": "application/x-www-form-urlencoded"})
    introspect_lua = lua(f"{scripts}/introspect.lua", "POST", f"token={token}",
                         {"Content-Type": "application/x-www-form-urlencoded", "Authorization": f"Bearer {token}"})
    # Machine clients (reported, not targets): client_credentials for the
    # client `loadsvc`, and the admin's personal access token exchanged.
    cc, exchange = machine_phases(port, token)
    cc_lua = lua(f"{scripts}/client_credentials.lua", "POST", cc.body, cc.headers) if not cc.problem else None
    exchange_lua = lua(f"{scripts}/exchange.lua", "POST", exchange.body, exchange.headers) if not exchange.problem else None

    # 1. and 2. Throughput against /healthz, 32 connections; and the two
    # machine-client grants at /token, against the same /healthz.
    print(f"== throughput, {SECS} s a phase, wrk -c32 ({CORES} cores shared by server and wrk)", flush=True)
    # Interleaved, twice, so a drift of the machine (another tenant, the
    # clock speed) weighs on every route alike.
    runs = {"healthz": [], "me": [], "introspect": [], "cc": [], "exchange": []}
    for _ in range(1 if SHORT else 2):
        runs["healthz"].append(wrk(server.url("/healthz"), SECS, 32))
        runs["me"].append(wrk(server.url("/users/me"), SECS, 32, token=token))
        runs["introspect"].append(wrk(server.url("/token/introspect"), SECS, 32, script=introspect_lua))
        if cc_lua:
            runs["cc"].append(wrk(server.url("/token"), SECS, 32, script=cc_lua))
        if exchange_lua:
            runs["exchange"].append(wrk(server.url("/token"), SECS, 32, script=exchange_lua))
    healthz, me, introspect = (combined(runs[k]) for k in ("healthz", "me", "introspect"))
    rows = [("healthz", healthz), ("users/me", me), ("introspect", introspect)]
    for phase, key in ((cc, "cc"), (exchange, "exchange")):
        phase.result = combined(runs[key]) if runs[key] else None
        if phase.result:
            rows.append((phase.name, phase.result))
            r = phase.result
            if (r["non2xx"] or r["socket_errors"] or not r["requests"]) and not phase.problem:
                # Show what a failing answer says: the same request once more.
                status, answer = request(port, "POST", "/token", phase.body, phase.headers)
                phase.problem = (f"{r['non2xx']} non-2xx answers and {r['socket_errors']} socket errors in "
                                 f"{r['requests']} requests; the same request now: {status} {answer[:300]!r}")
    for name, r in rows:
        print(f"   {name:18} {r['rps']:9.0f} req/s  p99 {r['p99_ms']:6.2f} ms  non-2xx {r['non2xx']}", flush=True)
    total_requests = sum(r["requests"] for _, r in rows)

    # 3. The hash-bound ceiling: one verify at a time, timed by the server.
    count0, sum0 = metric(port, "portcullis_hash_duration_seconds_count"), metric(port, "portcullis_hash_duration_seconds_sum")
    deadline = time.perf_counter() + (1 if SHORT else 3)
    while time.perf_counter() < deadline:
        login(port)
    count1, sum1 = metric(port, "portcullis_hash_duration_seconds_count"), metric(port, "portcullis_hash_duration_seconds_sum")
    verify_ms = (sum1 - sum0) / (count1 - count0) * 1e3
    ceiling = CORES / (verify_ms / 1e3)
    print(f"== logins: one argon2id verify takes {verify_ms:.1f} ms here, so {CORES} cores allow {ceiling:.0f} logins/s", flush=True)
    rounds = []
    for i in range(2 if SHORT else 3):
        r = wrk(server.url("/token"), SECS, 8, script=login_lua)
        rounds.append(r)
        print(f"   round {i + 1}: {r['rps']:.1f} logins/s ({r['rps'] / ceiling:.0%} of the ceiling), non-2xx {r['non2xx']}", flush=True)
        total_requests += r["requests"]

    # 4. /users/me during a login flood, against the same reads without one;
    # and 3b, logins while those reads run. A sampler draws the picture.
    print(f"== /users/me (wrk -c16) without and with a login flood (wrk -c8), {SECS} s each", flush=True)
    sampler = Sampler(port, token)
    sampler.start()
    quiet = wrk(server.url("/users/me"), SECS, 16, token=token)
    flood_start = sampler.now()
    result = {}
    flood = threading.Thread(target=lambda: result.update(wrk(server.url("/token"), SECS + 2, 8, script=login_lua)))
    flood.start()
    time.sleep(1)
    busy = wrk(server.url("/users/me"), SECS, 16, token=token)
    flood.join()
    flood_end = sampler.now()
    time.sleep(1 if SHORT else 2)
    sampler.stop_flag.set()
    sampler.join()
    total_requests += quiet["requests"] + busy["requests"] + result["requests"]
    print(f"   without: {quiet['rps']:.0f} req/s p99 {quiet['p99_ms']:.2f} ms; with: {busy['rps']:.0f} req/s p99 {busy['p99_ms']:.2f} ms, non-2xx {busy['non2xx']}", flush=True)
    # The control: /healthz (no token, no database) under the same flood.
    # Its p99 grows as much when the tail comes from sharing the cores
    # with the hashing threads and the load generators, not from auth.
    h_quiet = wrk(server.url("/healthz"), SECS, 16)
    control = {}
    flood2 = threading.Thread(target=lambda: control.update(wrk(server.url("/token"), SECS + 2, 8, script=login_lua)))
    flood2.start()
    time.sleep(1)
    h_busy = wrk(server.url("/healthz"), SECS, 16)
    flood2.join()
    total_requests += h_quiet["requests"] + h_busy["requests"] + control["requests"]
    print(f"   control, /healthz under the same flood: p99 {h_quiet['p99_ms']:.2f} ms -> {h_busy['p99_ms']:.2f} ms "
          f"({h_busy['p99_ms'] / h_quiet['p99_ms']:.2f}x)", flush=True)
    print(f"   logins meanwhile: {result['rps']:.1f}/s ({result['rps'] / ceiling:.0%} of the ceiling)", flush=True)
    inside = [s[1] for s in sampler.samples if flood_start + 1 <= s[0] <= flood_end - 1]
    outside = [s[1] for s in sampler.samples if s[0] < flood_start]
    if inside and outside:
        print(f"   sampler (one request at a time): p99 {p99(outside):.2f} ms before the flood, {p99(inside):.2f} ms during it", flush=True)
    with open(os.path.join(out_dir, "latency-samples.csv"), "w") as f:
        f.write(f"# flood from {flood_start:.3f} s to {flood_end:.3f} s\nseconds,latency_ms,ok\n")
        f.writelines(f"{t:.4f},{ms:.3f},{int(ok)}\n" for t, ms, ok in sampler.samples)
    picture = os.path.join(out_dir, "latency-during-login-flood.png")
    plot(sampler.samples, (flood_start, flood_end), picture,
         f"/users/me latency before, during and after a login flood ({time.strftime('%Y-%m-%d')}, {CORES} cores)")
    print(f"   picture: {picture}", flush=True)

    # 6. Memory: idle after the loads, then after a further batch of requests.
    target_requests = 100_000 if SHORT else 1_000_000
    while total_requests < target_requests:
        total_requests += wrk(server.url("/users/me"), SECS, 32, token=token)["requests"]
    # Longer than the binary's 5 s malloc_trim period.
    time.sleep(6)
    idle1 = server.rss_mib()
    more = 0
    while more < target_requests:
        more += wrk(server.url("/users/me"), SECS, 32, token=token)["requests"]
    time.sleep(6)
    idle2 = server.rss_mib()
    print(f"== memory: {idle1:.1f} MiB RSS idle after {total_requests:,} requests and the floods, "
          f"{idle2:.1f} MiB after {more:,} more", flush=True)
    server.stop()

    # The machine clients: figures, not targets (a phase whose requests
    # failed is reported as failed, with no throughput).
    print("== machine clients at POST /token (reported figures, not targets)", flush=True)
    for phase in (cc, exchange):
        if phase.problem:
            print(f"{phase.name}: FAILED, {phase.problem}", flush=True)
        else:
            print(f"{phase.name}: {phase.result['rps']:.0f} req/s, {phase.result['rps'] / healthz['rps']:.2f}x /healthz", flush=True)
    if not cc.problem:
        per_core = cc.result["rps"] / CORES
        print(f"   rough scale only (wrk shares the {CORES} cores with the server): {per_core:.0f} client_credentials "
              f"grants per core-second, {per_core / KEYCLOAK_CC_PER_VCPU:.0f}x Keycloak's sizing-guide "
              f"{KEYCLOAK_CC_PER_VCPU} per vCPU-second", flush=True)

    print("== targets", flush=True)
    report("users/me throughput vs healthz", f"{me['rps'] / healthz['rps']:.2f}x", ">= 0.80x", me["rps"] / healthz["rps"] >= 0.80)
    report("introspect throughput vs healthz", f"{introspect['rps'] / healthz['rps']:.2f}x", ">= 0.50x",
           introspect["rps"] / healthz["rps"] >= 0.50)
    worst = min(r["rps"] for r in rounds) / ceiling
    alongside = result["rps"] / ceiling
    report("logins vs hash-bound ceiling", f"{worst:.0%} in the worst round, {alongside:.0%} with reads alongside",
           ">= 90% every round, >= 50% alongside", worst >= 0.90 and alongside >= 0.50)
    report("users/me p99 during login flood",
           f"{busy['p99_ms']:.2f} ms, {busy['p99_ms'] / quiet['p99_ms']:.2f}x without "
           f"(/healthz control: {h_busy['p99_ms'] / h_quiet['p99_ms']:.2f}x)",
           "<= 15 ms and <= 2x", busy["p99_ms"] <= 15 and busy["p99_ms"] <= 2 * quiet["p99_ms"])
    report("start to first 200", f"{start_ms:.0f} ms", "<= 50 ms", start_ms <= 50)
    report("idle RSS after load", f"{idle1:.1f} MiB, then {idle2:.1f} MiB", "<= 20 MiB and flat",
           idle1 <= 20 and idle2 <= 20 and idle2 - idle1 <= 1.0)
    print(f"{sum(results)} of {len(results)} targets met")


if __name__ == "__main__":
    main()
