"""Fleet learning: the aggregation rule on hand-made tensors, a device taking the fleet's result through its own
atomic commit, and rounds on Flower's simulation engine."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgecl.fleet.aggregate import FleetMismatchError, Update, aggregate
from edgecl.state import commit_snapshot, read_state

DIM = 32


def _update(samples: int, lora: float, classes: dict[str, int], backbone: str = "bundled", dim: int = 4) -> Update:
    tensors = {"base_model.model.proj.lora_A.weight": np.full((2, dim), lora, np.float32),
               "base_model.model.proj.lora_B.weight": np.full((dim, 2), -lora, np.float32)}  # fmt: skip
    text = {c: np.eye(dim, dtype=np.float32)[i % dim] for i, c in enumerate(classes)}
    means = {(c, ""): (np.full(dim, float(n), np.float32), n) for c, n in classes.items()}
    return Update(backbone, dim, samples, tensors, classes, text, means)


def test_fedavg_weights_by_samples_and_classes_are_a_union() -> None:
    a = _update(100, 1.0, {"cat": 60, "dog": 40})
    b = _update(300, 3.0, {"dog": 100, "fox": 200})
    fleet = aggregate([a, b])
    # W = (100 * 1 + 300 * 3) / 400 = 2.5 for A, -2.5 for B
    np.testing.assert_allclose(fleet.lora["base_model.model.proj.lora_A.weight"], 2.5)
    np.testing.assert_allclose(fleet.lora["base_model.model.proj.lora_B.weight"], -2.5)
    assert fleet.samples == 400 and list(fleet.class_counts) == ["cat", "dog", "fox"]
    assert fleet.class_counts == {"cat": 60, "dog": 140, "fox": 200}
    mean, n = fleet.means[("dog", "")]  # (40 * 40 + 100 * 100) / 140
    assert n == 140 and mean[0] == pytest.approx((40 * 40 + 100 * 100) / 140)


def test_devices_without_adapters_share_classes_only_and_mismatches_are_named() -> None:
    a = _update(100, 1.0, {"cat": 10})
    ncm = Update("bundled", 4, 500, {}, {"owl": 5}, {"owl": np.ones(4, np.float32)}, {})
    fleet = aggregate([a, ncm])
    np.testing.assert_allclose(fleet.lora["base_model.model.proj.lora_A.weight"], 1.0)  # ncm takes no part
    assert set(fleet.class_counts) == {"cat", "owl"}
    with pytest.raises(FleetMismatchError, match="backbone openclip"):
        aggregate([a, _update(1, 1.0, {"x": 1}, backbone="openclip:ViT-B-32")])
    with pytest.raises(FleetMismatchError, match="8-d"):
        aggregate([a, _update(1, 1.0, {"x": 1}, dim=8)])


def _device(root: Path, classes: list[int], seed: int) -> Path:
    """A device state written by the learner (numpy embeddings: no encoder needed here)."""
    from test_learner import clustered

    from edgecl.learn.trainer import TrainSchedule
    from edgecl.learner import Learner, LearnerConfig
    from edgecl.memory import MemoryConfig

    x, y, text = clustered(6, 40, 0)
    rows = np.isin(y, classes)
    config = LearnerConfig(seed=seed, memory=MemoryConfig(8_000, "int8"), train=TrainSchedule(min_steps=30))
    learner = Learner(config, DIM)
    learner.learn_embeddings(x[rows], [f"c{c}" for c in y[rows]], text={f"c{c}": text[c] for c in classes})
    meta = {"backbone": "bundled", "tasks": [{"samples": int(rows.sum())}]}
    commit_snapshot(root, learner.save_to, meta)
    return root


def test_a_device_shares_its_own_learning_only_and_takes_the_fleets(tmp_path: Path) -> None:
    from test_learner import clustered

    from edgecl.fleet.device import apply_fleet, local_update
    from edgecl.learner import Learner

    a, b = _device(tmp_path / "a", [0, 1, 2], 0), _device(tmp_path / "b", [3, 4, 5], 1)
    ua, ub = local_update(a), local_update(b)
    assert set(ua.class_counts) == {"c0", "c1", "c2"} and ua.samples == 120
    assert ua.lora and all("lora_" in k for k in ua.lora)
    memory_before = (read_state(a) or pytest.fail()).folder.joinpath("memory.safetensors").read_bytes()
    fleet = aggregate([ua, ub])
    for _ in range(2):  # a second round changes nothing: nothing is counted twice
        applied = apply_fleet(a, fleet)
        assert local_update(a).class_counts == ua.class_counts
    assert applied["classes"] == ["c0", "c1", "c2", "c3", "c4", "c5"] and applied["adapter"]
    snapshot = read_state(a) or pytest.fail()
    assert (snapshot.folder / "memory.safetensors").read_bytes() == memory_before  # memory never leaves or changes
    assert applied["memory_bytes"] <= applied["budget_bytes"] == 8_000
    learner = Learner.load_from(snapshot.folder)
    x, y, _ = clustered(6, 30, 0, sample_seed=1)
    predicted = np.array([int(learner.classes[p][1:]) for p in learner.predict(x)])
    assert (predicted[y >= 3] == y[y >= 3]).mean() > 0.8  # the other device's classes, never seen here
    assert snapshot.meta["fleet"]["rounds"] == 2


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, timeout_s: float) -> None:
    import socket
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    pytest.fail(f"the SuperLink did not listen on 127.0.0.1:{port} within {timeout_s} s")


@pytest.mark.slow
def test_a_loopback_deployment_runs_two_rounds_and_shuts_down(tmp_path: Path) -> None:
    """A SuperLink and two SuperNodes on 127.0.0.1 (Flower's deployment engine), each SuperNode on one device's state
    directory; `flwr run` of the shipped Flower App; everything stopped within a bounded time."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import edgecl.fleet

    for d, classes in enumerate(([0, 1, 2], [3, 4, 5])):
        _device(tmp_path / f"device-{d}", classes, d)
    bin_dir = Path(sys.executable).parent
    link = _free_port()
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "FLWR_HOME": str(tmp_path / ".flwr"),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }  # Flower starts its own helpers
    (tmp_path / ".flwr").mkdir()
    (tmp_path / ".flwr" / "config.toml").write_text(
        f'[superlink]\ndefault = "loopback"\n\n[superlink.loopback]\naddress = "127.0.0.1:{link}"\ninsecure = true\n'
    )
    procs = [subprocess.Popen([bin_dir / "flower-superlink", "--insecure", "--database", ":flwr-in-memory:",
                               "--port", str(link)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)]  # fmt: skip
    try:
        _wait_for_port(link, 60)
        for d in range(2):
            procs.append(subprocess.Popen(
                [bin_dir / "flower-supernode", "--insecure", "--superlink", f"127.0.0.1:{link}", "--port",
                 str(_free_port()), "--node-config", f"state-dir='{tmp_path / f'device-{d}'}'"],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))  # fmt: skip
        app = Path(edgecl.fleet.__file__).parent / "flower_app"
        start = time.monotonic()
        run = subprocess.run([bin_dir / "flwr", "run", str(app), "loopback", "--stream", "--run-config", "rounds=2"],
                             env=env, capture_output=True, text=True, timeout=240, check=False)  # fmt: skip
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
        for d in range(2):
            snapshot = read_state(tmp_path / f"device-{d}") or pytest.fail()
            assert snapshot.meta["fleet"] == {"rounds": 2, "classes": 6}, snapshot.meta.get("fleet")
        print(f"loopback deployment: 2 rounds in {time.monotonic() - start:.1f} s")
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
    assert all(proc.poll() is not None for proc in procs)


@pytest.mark.slow
def test_rounds_on_the_simulation_engine_refuse_another_backbone_or_no_state_and_go_on(tmp_path: Path) -> None:
    from edgecl.fleet.simulate import run_fleet

    _device(tmp_path / "device-0", [0, 1], 0)
    _device(tmp_path / "device-1", [2, 3], 1)
    odd = _device(tmp_path / "device-2", [4, 5], 2)
    snapshot = read_state(odd) or pytest.fail()
    commit_snapshot(odd, lambda folder: [shutil.copy(p, folder) for p in snapshot.folder.iterdir() if p.is_file()]
                    or shutil.copytree(snapshot.folder / "adapter", folder / "adapter"),
                    {**snapshot.meta, "backbone": "openclip:ViT-B-32:laion2b_s34b_b79k"})  # fmt: skip
    before = (read_state(odd) or pytest.fail()).folder.name
    summary = run_fleet(tmp_path, devices=4, rounds=2)  # Flower's simulation engine; device-3 has no state at all
    assert [r["answered"] for r in summary["rounds"]] == [2, 2] and summary["rounds"][0]["bytes_up"] > 0
    reasons = " | ".join(r["reason"] for r in summary["rounds"][0]["refused"])
    assert "openclip:ViT-B-32" in reasons and "learned nothing yet" in reasons, reasons
    assert sorted(summary["classes"]) == ["c0", "c1", "c2", "c3"]
    taken = [f for f in summary["devices"] if "error" not in f]
    assert sorted(f["state-dir"] for f in taken) == [str(tmp_path / "device-0"), str(tmp_path / "device-1")]
    for figures in taken:  # both took every class of the fleet and stayed within their memory budget
        assert sorted(json.loads(figures["classes"])) == ["c0", "c1", "c2", "c3"]
        assert int(figures["memory_bytes"]) <= int(figures["budget_bytes"])
    assert (read_state(odd) or pytest.fail()).folder.name == before  # the refused device was left as it was


BAD_SETTINGS = [({"budget": "lots"}, "invalid budget"), ({"devices": 1}, "--devices"),
                ({"stream": "cifar"}, "--stream"), ({"rounds": 0}, "--rounds")]  # fmt: skip


@pytest.mark.parametrize(("kwargs", "words"), BAD_SETTINGS)
def test_fleet_simulate_refuses_bad_settings_before_any_work(kwargs: dict, words: str) -> None:
    from edgecl.errors import EdgeclError
    from edgecl.fleet.simulate import FleetSpec

    with pytest.raises(EdgeclError, match=words):
        FleetSpec(**kwargs)
