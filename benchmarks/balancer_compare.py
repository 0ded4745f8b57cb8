# Copyright: (c) 2026, gpubox.llm maintainers
# SPDX-License-Identifier: Apache-2.0 OR GPL-3.0-or-later
"""Compare gateway balancers in front of vLLM replicas: nginx least_conn vs vllm-router (docs/gateway-balancer.md).

Everything runs on loopback (127.0.0.1) only. Two stub OpenAI-compatible backends (this file with ``--_stub``,
one process each so a backend can be SIGKILLed) answer ``POST /v1/chat/completions`` after ``--delay-ms`` ±
``--jitter-ms`` with a valid ``chat.completion`` body, plus ``GET /health``, ``/v1/models``. They measure the
balancer, not vLLM: no tokens are generated, no prefix cache exists.

Balancers (each gets fresh backends):

* ``direct``            clients pinned half to each backend, no balancer (the baseline for the overhead column);
* ``nginx``             nginx ``least_conn`` upstream, keepalive, ``max_fails=1 fail_timeout=10s``,
                        ``proxy_next_upstream error timeout http_502 http_503 non_idempotent``, 3 tries, 30 s;
* ``router:<policy>``   vllm-router (pip package ``vllm-router``) with retries, circuit breaker, fast health checks;
* ``nginx+router:<p>``  the same router behind a single-upstream nginx (what the gateway role would deploy).

Each balancer runs three passes (--passes): ``no-failure``; ``kill``: when ``--kill-at`` of the requests have
been sent, backend b1 gets SIGKILL (its sockets close at once, the kernel answers RST) and is restarted on the
same port ``--down-secs`` later; ``hang``: b1 gets SIGSTOP instead (connections stay open and the kernel still
accepts new ones, nothing answers: a wedged engine) and SIGCONT ``--down-secs`` later. ``--concurrency`` client
threads send ``--requests`` non-streaming requests over keep-alive connections. A request fails on a connection
error, a timeout (``--timeout``), a non-200 status or a body that is not a chat.completion. "b1 after recovery"
counts the requests started after b1 came back that b1 served (does the balancer take the replica back?).

Usage (from the repository root; Python 3.10+ standard library only):
  python3 benchmarks/balancer_compare.py                           # all balancers, defaults
  python3 benchmarks/balancer_compare.py --router-bin /tmp/vrvenv/bin/vllm-router --policies round_robin
  python3 benchmarks/balancer_compare.py --balancers direct,nginx --requests 600 --json /tmp/result.json

vllm-router is looked up with --router-bin, then ``vllm-router`` on PATH; without it the router rows are skipped
with a message. nginx likewise (--nginx-bin, then ``nginx`` on PATH and /usr/sbin/nginx); this script runs its
own nginx instance (``-p`` a temporary prefix, ``-c`` a generated config) and never touches the system service.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import http.server
import json
import math
import os
import random
import shutil
import signal
import socket
import socketserver
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HOST = "127.0.0.1"

# ---------------------------------------------------------------------------------------------------------------
# Stub backend (runs in its own process: ``balancer_compare.py --_stub --port N --name b1``)
# ---------------------------------------------------------------------------------------------------------------


def run_stub(port: int, name: str, model: str, delay_ms: float, jitter_ms: float) -> None:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # no 40 ms Nagle/delayed-ACK stall between headers and body

        def log_message(self, *args):  # quiet
            pass

        def _send(self, code: int, body: dict | str, ctype: str = "application/json") -> None:
            data = (json.dumps(body) if isinstance(body, dict) else body).encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Stub-Backend", name)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            path = self.path.split("?", 1)[0]
            if path in ("/health", "/health_generate", "/ping"):
                self._send(200, "")
            elif path == "/v1/models":
                self._send(
                    200,
                    {
                        "object": "list",
                        "data": [{"id": model, "object": "model", "created": 0, "owned_by": "stub", "root": model}],
                    },
                )
            elif path in ("/get_model_info", "/get_server_info"):
                self._send(200, {"model_path": model, "served_model_name": model, "model_id": model})
            elif path in ("/get_load", "/load"):
                self._send(200, {"load": 0})
            else:
                self._send(404, {"error": {"message": f"no route {path}", "type": "not_found"}})

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            path = self.path.split("?", 1)[0]
            if path != "/v1/chat/completions":
                self._send(404, {"error": {"message": f"no route {path}", "type": "not_found"}})
                return
            try:
                req = json.loads(raw or b"{}")
            except ValueError:
                self._send(400, {"error": {"message": "bad json", "type": "invalid_request_error"}})
                return
            time.sleep(max(0.0, delay_ms + random.uniform(-jitter_ms, jitter_ms)) / 1000.0)
            prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in req.get("messages", []))
            self._send(
                200,
                {
                    "id": f"chatcmpl-{name}-{random.getrandbits(48):x}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": req.get("model", model),
                    "system_fingerprint": name,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": f"stub answer from {name}"},
                            "logprobs": None,
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": 4,
                        "total_tokens": prompt_tokens + 4,
                    },
                },
            )

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True
        allow_reuse_address = True
        request_queue_size = 256

    srv = Server((HOST, port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    srv.serve_forever()


# ---------------------------------------------------------------------------------------------------------------
# Process bookkeeping: every child is started in its own session and killed by its own pid/pgid, nothing else.
# ---------------------------------------------------------------------------------------------------------------

CHILDREN: list[subprocess.Popen] = []


def spawn(cmd: list[str], log_path: str | None = None) -> subprocess.Popen:
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    CHILDREN.append(proc)
    return proc


def stop(proc: subprocess.Popen | None, sig: int = signal.SIGTERM) -> None:
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)  # the child is its own session/group leader (start_new_session)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def stop_all() -> None:
    for proc in reversed(CHILDREN):
        stop(proc)
    CHILDREN.clear()


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def http_get(port: int, path: str, timeout: float = 1.0) -> int:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def wait_http(port: int, paths: tuple[str, ...], timeout: float, proc: subprocess.Popen | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        for path in paths:
            with contextlib.suppress(OSError, http.client.HTTPException):
                if http_get(port, path) == 200:
                    return True
        time.sleep(0.1)
    return False


def chat_ok(port: int, model: str) -> bool:
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        body = json.dumps(
            {"model": model, "messages": [{"role": "user", "content": "warmup"}], "max_tokens": 4}
        ).encode()
        conn.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        return resp.status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


class Stub:
    def __init__(self, args: argparse.Namespace, name: str, logdir: str):
        self.args, self.name, self.logdir = args, name, logdir
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> None:
        a = self.args
        cmd = [
            sys.executable,
            os.path.abspath(__file__),
            "--_stub",
            "--port",
            str(self.port),
            "--name",
            self.name,
            "--model",
            a.model,
            "--delay-ms",
            str(a.delay_ms),
            "--jitter-ms",
            str(a.jitter_ms),
        ]
        self.proc = spawn(cmd, os.path.join(self.logdir, f"stub-{self.name}.log"))
        if not wait_http(self.port, ("/health",), 15, self.proc):
            raise RuntimeError(f"stub {self.name} did not start on port {self.port}")

    def kill(self) -> None:
        stop(self.proc, signal.SIGKILL)

    def freeze(self) -> None:  # "hang": the process keeps its sockets, the kernel still accepts, nothing answers
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)


# ---------------------------------------------------------------------------------------------------------------
# Balancers
# ---------------------------------------------------------------------------------------------------------------

NGINX_CONF = """\
worker_processes 1;
daemon off;
master_process on;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    upstream vllm_replicas {{
{upstream}
    }}
    server {{
        listen {host}:{port};
        location / {{
            proxy_pass http://vllm_replicas;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_buffering off;
            proxy_connect_timeout 2s;
            proxy_read_timeout 600s;
            proxy_send_timeout 600s;
            proxy_next_upstream {next_upstream};
            proxy_next_upstream_tries {tries};
            proxy_next_upstream_timeout 30s;
        }}
    }}
}}
"""


class Nginx:
    def __init__(self, binary: str, backends: list[str], logdir: str, least_conn: bool = True, tries: int = 3):
        self.binary, self.logdir = binary, logdir
        self.port = free_port()
        self.prefix = tempfile.mkdtemp(prefix="nginx-", dir=logdir)
        os.chmod(self.prefix, 0o755)
        lines = ["        least_conn;"] if least_conn else []
        lines += [f"        server {b} max_fails=1 fail_timeout=10s;" for b in backends]
        lines += ["        keepalive 32;"]
        # One upstream server (router behind nginx): nothing to fail over to, so no next_upstream.
        next_upstream = "error timeout http_502 http_503 non_idempotent" if len(backends) > 1 else "off"
        self.conf = os.path.join(self.prefix, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(
                NGINX_CONF.format(
                    prefix=self.prefix,
                    upstream="\n".join(lines),
                    host=HOST,
                    port=self.port,
                    next_upstream=next_upstream,
                    tries=tries if len(backends) > 1 else 1,
                )
            )
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = spawn(
            [self.binary, "-p", self.prefix, "-c", self.conf], os.path.join(self.logdir, "nginx.stdout.log")
        )
        if not wait_http(self.port, ("/health",), 10, self.proc):
            raise RuntimeError(f"nginx did not start, see {self.prefix}/error.log")

    def stop(self) -> None:
        stop(self.proc, signal.SIGQUIT)


def router_cmd(binary: str, port: int, metrics_port: int, policy: str, backends: list[str]) -> list[str]:
    """vllm-router with the fastest failover its CLI allows (see docs/gateway-balancer.md)."""
    return [
        binary,
        "--host",
        HOST,
        "--port",
        str(port),
        "--worker-urls",
        *backends,
        "--policy",
        policy,
        "--prometheus-host",
        HOST,
        "--prometheus-port",
        str(metrics_port),
        "--worker-startup-timeout-secs",
        "30",
        "--worker-startup-check-interval",
        "1",
        # retry another worker on 5xx / connection errors, short backoff
        "--retry-max-retries",
        "3",
        "--retry-initial-backoff-ms",
        "20",
        "--retry-max-backoff-ms",
        "200",
        "--retry-backoff-multiplier",
        "2.0",
        "--retry-jitter-factor",
        "0.1",
        # open a worker's breaker after 2 failures, probe it again after 3 s
        "--cb-failure-threshold",
        "2",
        "--cb-success-threshold",
        "1",
        "--cb-timeout-duration-secs",
        "3",
        # active health checks every second
        "--health-check-interval-secs",
        "1",
        "--health-check-timeout-secs",
        "1",
        "--health-failure-threshold",
        "1",
        "--health-success-threshold",
        "1",
        "--log-level",
        "warning",
    ]


class Router:
    def __init__(self, binary: str, policy: str, backends: list[str], logdir: str):
        self.port, self.metrics_port = free_port(), free_port()
        self.cmd = router_cmd(binary, self.port, self.metrics_port, policy, backends)
        self.log = os.path.join(logdir, f"router-{policy}.log")
        self.proc: subprocess.Popen | None = None

    def start(self, model: str) -> None:
        self.proc = spawn(self.cmd, self.log)
        if not wait_http(self.port, ("/readiness", "/health"), 60, self.proc):
            raise RuntimeError(f"vllm-router did not become ready, see {self.log}")
        deadline = time.monotonic() + 30
        while not chat_ok(self.port, model):  # ready means routable
            if time.monotonic() > deadline:
                raise RuntimeError(f"vllm-router does not route a chat completion, see {self.log}")
            time.sleep(0.2)

    def stop(self) -> None:
        stop(self.proc, signal.SIGTERM)


# ---------------------------------------------------------------------------------------------------------------
# Load generator
# ---------------------------------------------------------------------------------------------------------------


def run_load(args: argparse.Namespace, ports: list[int], stubs: list[Stub], failure: str | None) -> dict:
    """``ports``: one entry per client thread (its target); ``failure``: None, "kill" or "hang".

    Returns per-request records and the times (s from start) b1 failed and recovered.
    """
    n_total = args.requests
    kill_index = int(n_total * args.kill_at)
    lock = threading.Lock()
    counter = {"next": 0}
    records: list[dict] = []
    events: dict[str, float] = {}
    t0 = time.monotonic()
    body = json.dumps(
        {
            "model": args.model,
            "messages": [
                {"role": "system", "content": "You are a terse assistant."},
                {"role": "user", "content": "Say hello in five words."},
            ],
            "max_tokens": 16,
        }
    ).encode()  # bytes: http.client sends headers and body in one segment

    def recover():
        time.sleep(args.down_secs)
        if failure == "kill":
            stubs[0].start()
        else:
            stubs[0].thaw()
        events["recover"] = time.monotonic() - t0

    def client(port: int):
        conn = None
        while True:
            with lock:
                i = counter["next"]
                if i >= n_total:
                    break
                counter["next"] += 1
                if failure and i == kill_index:
                    if failure == "kill":
                        stubs[0].kill()
                    else:
                        stubs[0].freeze()
                    events["fail"] = time.monotonic() - t0
                    threading.Thread(target=recover, daemon=True).start()
            start = time.monotonic()
            rec = {"i": i, "start": start - t0, "ok": False, "backend": None, "error": None}
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(HOST, port, timeout=args.timeout)
                conn.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                data = resp.read()
                if resp.status != 200:
                    rec["error"] = f"HTTP {resp.status}"
                else:
                    obj = json.loads(data)
                    if obj.get("object") != "chat.completion" or not obj.get("choices"):
                        rec["error"] = "bad body"
                    else:
                        rec["ok"] = True
                        rec["backend"] = obj.get("system_fingerprint")
                if resp.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException, ValueError) as exc:
                rec["error"] = type(exc).__name__
                if conn is not None:
                    conn.close()
                conn = None
            rec["latency_ms"] = (time.monotonic() - start) * 1000.0
            with lock:
                records.append(rec)
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=client, args=(p,)) for p in ports]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    # let a pending recovery finish before the next scenario tears things down
    deadline = time.monotonic() + args.down_secs + 20
    while failure and "recover" not in events and time.monotonic() < deadline:
        time.sleep(0.1)
    return {"records": records, "events": events, "wall_s": wall}


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def summarize(name: str, scenario: str, res: dict, slow_ms: float) -> dict:
    recs = res["records"]
    ok = [r for r in recs if r["ok"]]
    lat = [r["latency_ms"] for r in ok]
    errors: dict[str, int] = {}
    for r in recs:
        if not r["ok"]:
            errors[r["error"]] = errors.get(r["error"], 0) + 1
    row = {
        "balancer": name,
        "scenario": scenario,
        "sent": len(recs),
        "failed": len(recs) - len(ok),
        "errors": errors,
        "p50_ms": pct(lat, 0.50),
        "p99_ms": pct(lat, 0.99),
        "max_ms": max(lat) if lat else float("nan"),
        "slow": sum(1 for v in lat if v > slow_ms),
        "mean_ms": statistics.fmean(lat) if lat else float("nan"),
        "wall_s": res["wall_s"],
        "events": res["events"],
        "b1_after_recovery": None,
    }
    recover = res["events"].get("recover")
    if recover is not None:
        after = [r for r in ok if r["start"] >= recover]
        if after:
            row["b1_after_recovery"] = (sum(1 for r in after if r["backend"] == "b1"), len(after))
    return row


# ---------------------------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------------------------


def find_bin(explicit: str | None, name: str, extra: tuple[str, ...] = ()) -> str | None:
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    found = shutil.which(name)
    if found:
        return found
    return next((p for p in extra if os.access(p, os.X_OK)), None)


def router_version(binary: str) -> str:
    py = os.path.join(os.path.dirname(binary), "python")
    if os.access(py, os.X_OK):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [py, "-c", "import vllm_router.version as v; print(v.__version__)"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            if out.returncode == 0:
                return out.stdout.strip()
    return "unknown"


def run_balancer(
    args,
    kind: str,
    policy: str | None,
    *,
    nginx_bin: str | None,
    router_bin: str | None,
    logdir: str,
    failure: str | None,
) -> dict:
    stubs = [Stub(args, "b1", logdir), Stub(args, "b2", logdir)]
    nginx = router = None
    try:
        for s in stubs:
            s.start()
        urls = [s.url for s in stubs]
        if kind == "direct":
            ports = [stubs[i % 2].port for i in range(args.concurrency)]
        elif kind == "nginx":
            nginx = Nginx(nginx_bin, [u.removeprefix("http://") for u in urls], logdir)
            nginx.start()
            ports = [nginx.port] * args.concurrency
        else:
            router = Router(router_bin, policy, urls, logdir)
            router.start(args.model)
            port = router.port
            if kind == "nginx+router":
                nginx = Nginx(nginx_bin, [f"{HOST}:{router.port}"], logdir)
                nginx.start()
                port = nginx.port
            ports = [port] * args.concurrency
        # warm up keep-alive pools and the router's state without counting it
        for p in set(ports):
            for _attempt in range(4):
                chat_ok(p, args.model)
        return run_load(args, ports, stubs, failure)
    finally:
        if nginx:
            nginx.stop()
        if router:
            router.stop()
        for s in stubs:
            s.kill()


def fmt(v: float) -> str:
    return "n/a" if math.isnan(v) else f"{v:.0f}"


def markdown(rows: list[dict], direct_p50: float | None, slow_ms: float) -> str:
    out = [
        f"| balancer | pass | sent | failed | p50 ms | p99 ms | max ms | ok but > {slow_ms:.0f} ms "
        "| p50 overhead vs direct | b1 after recovery |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        if r.get("skipped"):
            out.append(f"| {r['balancer']} | {r['scenario']} | skipped: {r['skipped']} | | | | | | | |")
            continue
        over = "n/a" if direct_p50 is None or r["p50_ms"] != r["p50_ms"] else f"{r['p50_ms'] - direct_p50:+.1f} ms"
        failed = str(r["failed"])
        if r["errors"]:
            failed += " (" + ", ".join(f"{k}: {v}" for k, v in sorted(r["errors"].items())) + ")"
        b1 = "-" if r["b1_after_recovery"] is None else f"{r['b1_after_recovery'][0]}/{r['b1_after_recovery'][1]}"
        out.append(
            f"| {r['balancer']} | {r['scenario']} | {r['sent']} | {failed} | {fmt(r['p50_ms'])} | "
            f"{fmt(r['p99_ms'])} | {fmt(r['max_ms'])} | {r['slow']} | {over} | {b1} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=300, help="requests per pass (default 300)")
    ap.add_argument("--concurrency", type=int, default=8, help="client threads (default 8)")
    ap.add_argument("--delay-ms", type=float, default=200.0, help="stub service time (default 200)")
    ap.add_argument("--jitter-ms", type=float, default=20.0, help="± uniform jitter on the service time (default 20)")
    ap.add_argument("--kill-at", type=float, default=1 / 3, help="fraction of requests when b1 goes down")
    ap.add_argument("--down-secs", type=float, default=3.0, help="seconds b1 stays down (default 3)")
    ap.add_argument("--timeout", type=float, default=60.0, help="client request timeout in seconds")
    ap.add_argument("--slow-ms", type=float, default=1000.0, help="count successful requests slower than this")
    ap.add_argument("--model", default="stub-model")
    ap.add_argument(
        "--balancers", default="direct,nginx,router,nginx+router", help="comma list of direct,nginx,router,nginx+router"
    )
    ap.add_argument(
        "--policies",
        default="round_robin,power_of_two,cache_aware",
        help="vllm-router --policy values to run (comma list)",
    )
    ap.add_argument(
        "--passes",
        default="no-failure,kill,hang",
        help="comma list of no-failure, kill (SIGKILL b1, restart it --down-secs later), "
        "hang (SIGSTOP b1, SIGCONT it --down-secs later)",
    )
    ap.add_argument("--router-bin", help="vllm-router executable (default: vllm-router on PATH)")
    ap.add_argument("--nginx-bin", help="nginx executable (default: nginx on PATH or /usr/sbin/nginx)")
    ap.add_argument("--json", help="also write the rows as JSON to this file")
    ap.add_argument("--keep-logs", action="store_true", help="keep the temporary log directory")
    # internal: stub backend mode
    ap.add_argument("--_stub", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--name", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args._stub:
        run_stub(args.port, args.name, args.model, args.delay_ms, args.jitter_ms)
        return 0

    nginx_bin = find_bin(args.nginx_bin, "nginx", ("/usr/sbin/nginx",))
    router_bin = find_bin(args.router_bin, "vllm-router")
    balancers = [b.strip() for b in args.balancers.split(",") if b.strip()]
    passes = [p.strip() for p in args.passes.split(",") if p.strip()]
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]

    logdir = tempfile.mkdtemp(prefix="balancer-compare-")
    os.chmod(logdir, 0o755)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: (stop_all(), sys.exit(130)))

    print(
        f"# balancer_compare: {args.requests} requests x {args.concurrency} clients, stub delay "
        f"{args.delay_ms:.0f}±{args.jitter_ms:.0f} ms, failure passes take b1 down at {args.kill_at:.0%} for "
        f"{args.down_secs:.0f} s; logs in {logdir}",
        file=sys.stderr,
    )
    if router_bin:
        print(f"# vllm-router {router_version(router_bin)} at {router_bin}", file=sys.stderr)
    if nginx_bin:
        ver = subprocess.run([nginx_bin, "-v"], capture_output=True, text=True, check=False).stderr.strip()
        print(f"# {ver} at {nginx_bin}", file=sys.stderr)

    jobs: list[tuple[str, str, str | None]] = []  # (label, kind, policy)
    for b in balancers:
        if b in ("router", "nginx+router"):
            jobs += [(f"{b}:{p}", b, p) for p in policies]
        else:
            jobs.append((b, b, None))

    rows: list[dict] = []
    direct_p50 = None
    try:
        for label, kind, policy in jobs:
            for scenario in passes:
                skip = None
                if "nginx" in kind and not nginx_bin:
                    skip = "nginx not installed"
                if "router" in kind and not router_bin:
                    skip = "vllm-router not installed (pip install vllm-router, or --router-bin)"
                if skip:
                    print(f"## {label} / {scenario}: SKIPPED, {skip}", file=sys.stderr)
                    rows.append({"balancer": label, "scenario": scenario, "skipped": skip})
                    continue
                print(f"## {label} / {scenario} ...", file=sys.stderr, flush=True)
                try:
                    res = run_balancer(
                        args,
                        kind,
                        policy,
                        nginx_bin=nginx_bin,
                        router_bin=router_bin,
                        logdir=logdir,
                        failure=None if scenario == "no-failure" else scenario,
                    )
                except RuntimeError as exc:
                    print(f"## {label} / {scenario}: FAILED TO START: {exc}", file=sys.stderr)
                    rows.append({"balancer": label, "scenario": scenario, "skipped": f"did not start: {exc}"})
                    continue
                row = summarize(label, scenario, res, args.slow_ms)
                rows.append(row)
                if kind == "direct" and scenario == "no-failure":
                    direct_p50 = row["p50_ms"]
                print(
                    f"   failed={row['failed']} p50={fmt(row['p50_ms'])} p99={fmt(row['p99_ms'])} "
                    f"wall={row['wall_s']:.1f}s events={ {k: round(v, 2) for k, v in row['events'].items()} }",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        stop_all()
        if not args.keep_logs:
            shutil.rmtree(logdir, ignore_errors=True)

    print(markdown(rows, direct_p50, args.slow_ms))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
