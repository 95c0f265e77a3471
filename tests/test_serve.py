"""`edgecl serve` and the Python API: a real server in a subprocess on a free loopback port, driven over real HTTP
with the standard library only; a CLI learn in another process while requests run; auth, limits, bad images,
SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.test_cli_learn import ROOT, edgecl, write_task


def multipart(files: list[tuple[str, bytes]], fields: dict[str, str | list[str]] | None = None) -> tuple[bytes, str]:
    """A multipart/form-data body with `image` files and plain fields (a list: the field repeated), and its content
    type."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, values in (fields or {}).items():
        for value in [values] if isinstance(values, str) else values:
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for filename, data in files:
        head = (f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{filename}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n")  # fmt: skip
        parts.append(head.encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def request(url: str, method: str = "GET", files: list[tuple[str, bytes]] | None = None,
            fields: dict[str, str | list[str]] | None = None,
            token: str | None = None) -> tuple[int, bytes]:  # fmt: skip
    body, headers = None, {}
    if files is not None:
        body, headers["Content-Type"] = multipart(files, fields)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=120) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class Server:
    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "cli", "serve", "--port", "0", "--json", *args],
                                        cwd=ROOT, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True)  # fmt: skip
        line = self.process.stdout.readline()
        assert line, self.process.stderr.read()
        self.info = json.loads(line)
        self.url = self.info["address"]

    def stop(self) -> float:
        start = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=15)
        return time.monotonic() - start


@pytest.fixture()
def learned(tmp_path: Path, bundled_export: Path) -> Path:
    state = tmp_path / "state"
    task = write_task(tmp_path / "t1", {"trouser": 1, "bag": 8}, n=10)
    result = edgecl("learn", "--task-dir", str(task), "--budget", "64KB", "--backbone", "bundled", "--state-dir",
                    str(state))  # fmt: skip
    assert result.returncode == 0, result.stderr
    return state


@pytest.fixture()
def server(learned: Path) -> Iterator[Server]:
    running = Server("--state-dir", str(learned), "--max-upload", "300KB")
    yield running
    if running.process.poll() is None:
        running.process.kill()


def _png(path: Path) -> bytes:
    return path.read_bytes()


def test_classify_learn_forget_and_limits_over_http(server: Server, learned: Path, tmp_path: Path) -> None:
    assert server.info["ready"] is True and server.url.startswith("http://127.0.0.1:")
    assert request(server.url + "/v2/health/live")[0] == 200
    code, body = request(server.url + "/v2/health/ready")
    assert code == 200 and json.loads(body)["ready"] is True
    probes = write_task(tmp_path / "probe", {"trouser": 1, "bag": 8}, n=2, offset=300)
    files = [("my trouser.png", _png(probes / "trouser" / "0.png")), ("../../bag.png", _png(probes / "bag" / "0.png"))]
    code, body = request(server.url + "/v1/classify", "POST", files, {"top_k": "1"})
    assert code == 200, body
    answers = json.loads(body)
    assert [a["image"] for a in answers] == ["my trouser.png", "../../bag.png"]  # names echoed, never used as paths
    assert [a["label"] for a in answers] == ["trouser", "bag"]
    assert all(set(a) == {"image", "label", "unknown", "confidence", "predictions"} for a in answers)
    code, body = request(server.url + "/v1/vision/custom/fashion", "POST", files[:1])
    reply = json.loads(body)
    assert code == 200 and reply["success"] is True and reply["label"] == "trouser"
    width, height = Image.open(probes / "trouser" / "0.png").size  # a class answers for the whole image: its box
    box = {"x_min": 0, "y_min": 0, "x_max": width, "y_max": height}
    assert reply["predictions"][0] == {"label": "trouser", "confidence": reply["confidence"], **box}
    assert all(p["confidence"] >= 0.45 for p in reply["predictions"])  # DeepStack lists only those above it
    digit = tmp_path / "digit.png"
    from edgecl.datasets import mnist

    Image.fromarray(mnist("test")[0][0]).save(digit)
    code, body = request(server.url + "/v1/vision/custom/fashion", "POST", [("d.png", digit.read_bytes())])
    assert code == 200 and json.loads(body)["unknown"] is True and json.loads(body)["predictions"] == []

    code, body = request(server.url + "/v1/classify", "POST", [("notes.png", b"not an image")])
    assert code == 400 and "notes.png" in json.loads(body)["error"]
    code, body = request(server.url + "/v1/vision/custom/x", "POST", [("x.jpg", b"\xff\xd8 broken")])
    assert code == 400 and json.loads(body)["success"] is False
    code, body = request(server.url + "/v1/classify", "POST", [("big.png", b"0" * 400_000)])
    assert code == 413 and "max-upload" in json.loads(body)["error"]
    code, _ = request(server.url + "/v1/classify", "POST", files[:1], {"top_k": "0"})
    assert code == 400
    code, body = request(server.url + "/v1/classify", "POST", files[:1], {"top_k": "many"})
    assert code == 400 and json.loads(body)["success"] is False and "top_k" in json.loads(body)["error"]
    code, body = request(server.url + "/v1/classify", "POST", [], {"top_k": "1"})
    assert code == 400 and "image" in json.loads(body)["error"]
    chunked = urllib.request.Request(server.url + "/v1/classify", data=iter([b"0" * 100_000] * 4), method="POST",
                                     headers={"Content-Type": "multipart/form-data; boundary=x",
                                              "Transfer-Encoding": "chunked"})  # fmt: skip
    with pytest.raises(urllib.error.HTTPError) as too_big:
        urllib.request.urlopen(chunked, timeout=60)
    assert too_big.value.code == 413
    code, _ = request(server.url + "/v1/classify", "POST", files[:1], {"min_confidence": "2"})
    assert code == 400

    sneakers = write_task(tmp_path / "t2", {"sneaker": 7}, n=10)
    upload = [(f"blob{i}", _png(p)) for i, p in enumerate(sorted((sneakers / "sneaker").iterdir()))]  # no extension
    code, body = request(server.url + "/v1/learn", "POST", upload, {"label": "sneaker"})
    assert code == 200, body
    assert json.loads(body)["new_classes"] == ["sneaker"]
    code, body = request(server.url + "/v1/learn", "POST", upload[:1], {"label": "../x"})
    assert code == 400 and "cannot name a class" in json.loads(body)["error"]
    code, body = request(server.url + "/v1/learn", "POST", [("notes.jpg", b"not an image")], {"label": "coat"})
    error = json.loads(body)["error"]  # the client's name, not the server's temporary folder
    assert code == 400 and error.startswith("the upload: none of its 1 images") and "edgecl-upload" not in error
    fresh = [(f"new{i}.png", _png(p)) for i, p in enumerate(sorted((write_task(tmp_path / "t3", {"sneaker": 7}, n=2,
                                                                                offset=50) / "sneaker").iterdir()))]
    code, body = request(server.url + "/v1/learn", "POST", [*fresh, ("bad.png", b"broken")], {"label": "sneaker"})
    assert code == 200 and [item["path"] for item in json.loads(body)["skipped"]] == ["bad.png"], body
    # one `label` per image, in the order sent: each image is learned as its own label
    mixed_task = write_task(tmp_path / "t4", {"coat": 4, "sneaker": 7}, n=6, offset=80)
    mixed = [(f"m{i}.png", _png(mixed_task / c / f"{i}.png")) for i in range(6) for c in ("coat", "sneaker")]
    labels = [c for _ in range(6) for c in ("coat", "sneaker")]
    labels[4] = "COAT"  # labels that name one class are one class, as in a task folder
    code, body = request(server.url + "/v1/learn", "POST", mixed[:3], {"label": labels[:2]})
    assert code == 400 and "2 `label` fields for 3 images" in json.loads(body)["error"]
    code, body = request(server.url + "/v1/learn", "POST", mixed, {"label": labels})
    assert code == 200 and json.loads(body)["new_classes"] == ["coat"], body
    per_class = json.loads(body)["validation"]["per_class"]
    assert {c: per_class[c]["images"] for c in ("coat", "sneaker")} == {"coat": 6, "sneaker": 6}, body
    tasks = json.loads(request(server.url + "/v1/status")[1])["tasks"]
    assert tasks[-1]["task_dir"] == "an upload of 12 images (POST /v1/learn)"  # not the removed temporary folder
    code, body = request(server.url + "/v1/classes/sneaker", "DELETE")
    assert code == 200 and json.loads(body)["forgotten"] == "sneaker"
    code, body = request(server.url + "/v1/classes/sneaker", "DELETE")  # not learned (any more): a 404
    assert code == 404 and "not learned" in json.loads(body)["error"]
    assert request(server.url + "/v1/classes/coat", "DELETE")[0] == 200
    code, body = request(server.url + "/v1/status")
    assert code == 200 and json.loads(body)["classes"] == ["bag", "trouser"]
    code, body = request(server.url + "/metrics")
    assert code == 200 and b'edgecl_requests_total{route="/v1/classify",status="200"}' in body
    assert b"edgecl_learns_total 3" in body
    assert server.stop() < 10 and server.process.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM


def test_a_cli_learn_is_served_within_three_seconds_and_no_request_fails(server: Server, tmp_path: Path,
                                                                          learned: Path) -> None:  # fmt: skip
    probes = write_task(tmp_path / "probe", {"sneaker": 7}, n=1, offset=300)
    files = [("s.png", _png(probes / "sneaker" / "0.png"))]
    failures, labels, stop = [], [], threading.Event()

    def loop() -> None:
        while not stop.is_set():
            code, body = request(server.url + "/v1/classify", "POST", files, {"top_k": "5"})
            if code != 200:
                failures.append((code, body))
            else:
                labels.append({p["label"] for p in json.loads(body)[0]["predictions"]})

    client = threading.Thread(target=loop)
    client.start()
    task = write_task(tmp_path / "t2", {"sneaker": 7}, n=10)
    result = edgecl("learn", "--task-dir", str(task), "--state-dir", str(learned))
    learned_at = time.monotonic()
    assert result.returncode == 0, result.stderr
    served_at = None
    while time.monotonic() - learned_at < 10:
        if labels and "sneaker" in labels[-1]:
            served_at = time.monotonic()
            break
        time.sleep(0.05)
    stop.set()
    client.join()
    assert not failures
    assert served_at is not None and served_at - learned_at <= 3.0
    assert all(s in ({"bag", "trouser"}, {"bag", "trouser", "sneaker"}) for s in labels)  # never a mix


def test_token_bind_and_an_empty_state(tmp_path: Path, bundled_export: Path) -> None:
    refused = edgecl("serve", "--host", "0.0.0.0", "--state-dir", str(tmp_path / "s"))
    assert refused.returncode == 2 and "--token" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    server = Server("--state-dir", str(tmp_path / "empty"), "--token", "s3cret")
    try:
        assert server.info["ready"] is False and server.info["auth"] is True
        assert request(server.url + "/v2/health/live")[0] == 401  # every request needs the token
        assert request(server.url + "/v2/health/live", token="s3cret")[0] == 200
        assert request(server.url + "/v2/health/ready", token="s3cret")[0] == 503
        assert request(server.url + "/v1/status")[0] == 401
        assert request(server.url + "/v1/status", token="wrong")[0] == 401
        code, body = request(server.url + "/v1/classify", "POST", [("a.png", b"x")], token="s3cret")
        assert code == 400 and "nothing learned yet" in json.loads(body)["error"]
    finally:
        assert server.stop() < 10


def test_the_python_api_is_shared_by_threads_and_sees_other_processes_commits(learned: Path, tmp_path: Path) -> None:
    import edgecl as api
    from edgecl.errors import EdgeclError

    state = api.open(learned)
    probes = write_task(tmp_path / "probe", {"trouser": 1, "sneaker": 7}, n=2, offset=300)
    paths = sorted(probes.rglob("*.png"))
    assert [a["label"] for a in state.classify(paths[2:], top_k=1)] == ["trouser", "trouser"]
    errors, seen = [], []

    def reader() -> None:
        try:
            for _ in range(20):
                seen.append(frozenset(p["label"] for a in state.classify(paths, top_k=9) for p in a["predictions"]))
        except Exception as exc:  # noqa: BLE001 - the test reports what a thread raised
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for thread in threads:
        thread.start()
    task = write_task(tmp_path / "t2", {"sneaker": 7}, n=10)
    assert edgecl("learn", "--task-dir", str(task), "--state-dir", str(learned)).returncode == 0
    for thread in threads:
        thread.join()
    assert not errors
    assert set(seen) <= {frozenset({"bag", "trouser"}), frozenset({"bag", "trouser", "sneaker"})}
    state.reload()
    assert state.classify(paths[:1], top_k=1)[0]["label"] == "sneaker"
    assert state.status().classes == ["bag", "trouser", "sneaker"]
    with pytest.raises(EdgeclError, match="one label per image"):
        state.learn(images=paths[:2], labels=["x"])
    boots = write_task(tmp_path / "boots", {"boot": 9}, n=4)
    state.learn(images=sorted((boots / "boot").iterdir()), labels=["boot", "Boot", "boot", "BOOT"])  # one class
    status = state.status()
    assert status.classes == ["bag", "trouser", "sneaker", "boot"]
    assert status.tasks[-1]["task_dir"] == "4 images given to the Python API"  # not the temporary folder
