"""`edgecl serve` against a cold `edgecl classify` process, in one run: warm classify of one image over HTTP (p50 /
p95), requests per second with 1, 4 and 8 clients, and the server's RSS before any learn (torch not imported).

    python benchmarks/serve.py --requests 200
    python benchmarks/serve.py --report-only   # the report again from this CPU kind's JSON

Writes benchmarks/results/serve-<int8_isa>.json and, beside it, the .md that docs/serving.md includes.
Every run rewrites them: give --out elsewhere for a trial with other arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from results_file import add_options, commit, keep

from edgecl.model_dir import cpu_int8_isa

ROOT = Path(__file__).resolve().parents[1]


def _post(url: str, image: bytes) -> float:
    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'.encode()
            + image + f"\r\n--{boundary}--\r\n".encode())  # fmt: skip
    req = urllib.request.Request(url, data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    start = time.perf_counter()
    with urllib.request.urlopen(req, timeout=60) as response:
        response.read()
    return time.perf_counter() - start


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _throughput(url: str, image: bytes, clients: int, seconds: float = 5.0) -> float:
    done, stop = [0] * clients, time.monotonic() + seconds

    def client(i: int) -> None:
        while time.monotonic() < stop:
            _post(url, image)
            done[i] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done) / seconds


def _learned_state(tmp: Path, env: dict[str, str]) -> tuple[Path, Path]:
    """One task of 30 photos a class learned by the CLI: the state folder and one of its photos."""
    from edgecl.demo import write_stream

    state, photos = tmp / "state", tmp / "photos"
    task = write_stream(photos, 30, 1)[0][0]
    subprocess.run([sys.executable, "-m", "cli", "learn", "--task-dir", str(task), "--backbone", "bundled",
                    "--budget", "64KB", "--state-dir", str(state)], check=True, cwd=ROOT, env=env,
                   capture_output=True)  # fmt: skip
    return state, next(task.rglob("*.png"))


def _warm(state: Path, image: bytes, requests: int, env: dict[str, str]) -> dict[str, Any]:
    """Latencies of `requests` one-image classifies over HTTP, the server's RSS, requests/s with 1, 4, 8 clients."""
    server = subprocess.Popen([sys.executable, "-m", "cli", "serve", "--state-dir", str(state), "--port", "0",
                               "--json"], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        url = json.loads(server.stdout.readline())["address"] + "/v1/classify"
        for _ in range(10):
            _post(url, image)
        warm = sorted(_post(url, image) for _ in range(requests))
        rss = _rss_mb(server.pid)
        rates = {str(n): round(_throughput(url, image, n), 1) for n in (1, 4, 8)}
    finally:
        server.terminate()
        server.wait(timeout=15)
    p95 = warm[int(0.95 * requests) - 1]
    return {"p50_ms": round(1000 * statistics.median(warm), 1), "p95_ms": round(1000 * p95, 3),
            "rss_mb": round(rss, 1), "requests_per_s": rates}  # fmt: skip


def _measure(requests: int) -> dict[str, Any]:
    env = os.environ | {"HF_HUB_OFFLINE": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        state, image_path = _learned_state(Path(tmp), env)
        warm = _warm(state, image_path.read_bytes(), requests, env)
        cold = []
        for _ in range(5):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "cli", "classify", str(image_path), "--state-dir", str(state),
                            "--json"], check=True, cwd=ROOT, env=env, capture_output=True)  # fmt: skip
            cold.append(time.perf_counter() - start)
    return {"requests": requests, "cores": os.cpu_count(), "int8_isa": cpu_int8_isa(), "commit": commit(),
            "date": time.strftime("%Y-%m-%d"), **warm, "cold_ms": round(1000 * statistics.median(cold), 3)}  # fmt: skip


def report(r: dict[str, Any]) -> str:
    """The table, from a results JSON (what the .md beside it holds, in a code block)."""
    lines = [f"bundled backbone, one image per request, {r['requests']} requests, {r['cores']} cores, "
             f"int8_isa {r['int8_isa']} (commit {r['commit']}, {r['date']})",
             f"{'measure':42s}{'value':>10s}",
             f"{'warm HTTP classify p50 (ms)':42s}{r['p50_ms']:10.1f}",
             f"{'warm HTTP classify p95 (ms)':42s}{r['p95_ms']:10.1f}",
             f"{'cold edgecl classify process, median (ms)':42s}{r['cold_ms']:10.1f}",
             f"{'cold / warm p95':42s}{r['cold_ms'] / r['p95_ms']:9.1f}x"]  # fmt: skip
    lines += [f"{f'requests/s, {n} client(s)':42s}{rate:10.1f}" for n, rate in r["requests_per_s"].items()]
    lines.append(f"{'server RSS before any learn (MB)':42s}{r['rss_mb']:10.0f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200)
    add_options(parser, "serve-<int8_isa>.json")
    args = parser.parse_args()
    keep(args, f"serve-{cpu_int8_isa()}.json", lambda: _measure(args.requests), report)


if __name__ == "__main__":
    main()
