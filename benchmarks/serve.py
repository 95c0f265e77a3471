"""`edgecl serve` against a cold `edgecl classify` process, in one run: warm classify of one image over HTTP (p50 /
p95), requests per second with 1, 4 and 8 clients, and the server's RSS before any learn (torch not imported).

    python benchmarks/serve.py --requests 200
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    from edgecl.demo import write_stream

    env = os.environ | {"HF_HUB_OFFLINE": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        state, photos = Path(tmp) / "state", Path(tmp) / "photos"
        tasks = write_stream(photos, 30, 1)[0][:1]
        subprocess.run([sys.executable, "-m", "cli", "learn", "--task-dir", str(tasks[0]), "--backbone", "bundled",
                        "--budget", "64KB", "--state-dir", str(state)], check=True, cwd=ROOT, env=env,
                       capture_output=True)  # fmt: skip
        image_path = next(tasks[0].rglob("*.png"))
        image = image_path.read_bytes()
        server = subprocess.Popen([sys.executable, "-m", "cli", "serve", "--state-dir", str(state), "--port", "0",
                                   "--json"], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)  # fmt: skip
        try:
            url = json.loads(server.stdout.readline())["address"] + "/v1/classify"
            for _ in range(10):
                _post(url, image)
            warm = sorted(_post(url, image) for _ in range(args.requests))
            rss = _rss_mb(server.pid)
            rates = {n: _throughput(url, image, n) for n in (1, 4, 8)}
        finally:
            server.terminate()
            server.wait(timeout=15)
        cold = []
        for _ in range(5):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "cli", "classify", str(image_path), "--state-dir", str(state),
                            "--json"], check=True, cwd=ROOT, env=env, capture_output=True)  # fmt: skip
            cold.append(time.perf_counter() - start)
    p50, p95 = statistics.median(warm), warm[int(0.95 * len(warm)) - 1]
    print(f"bundled backbone, one image per request, {os.cpu_count()} cores")
    print(f"{'measure':42s}{'value':>10s}")
    print(f"{'warm HTTP classify p50 (ms)':42s}{1000 * p50:10.1f}")
    print(f"{'warm HTTP classify p95 (ms)':42s}{1000 * p95:10.1f}")
    print(f"{'cold edgecl classify process, median (ms)':42s}{1000 * statistics.median(cold):10.1f}")
    print(f"{'cold / warm p95':42s}{statistics.median(cold) / p95:9.1f}x")
    for n, rate in rates.items():
        print(f"{f'requests/s, {n} client(s)':42s}{rate:10.1f}")
    print(f"{'server RSS before any learn (MB)':42s}{rss:10.0f}")


if __name__ == "__main__":
    main()
