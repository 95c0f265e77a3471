"""Fleet learning: the aggregation rule on hand-made tensors, a device taking the fleet's result through its own
atomic commit, and rounds on Flower's simulation engine."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest

from edgecl.fleet.aggregate import FleetMismatchError, Update, aggregate, share_for, taken_head
from edgecl.fleet.local_link import free_port, wait_for_port
from edgecl.learn.merged import MergedHead
from edgecl.state import commit_snapshot, read_state

DIM = 32


def _head(seed: int, rank: int = 2, dim: int = 4) -> MergedHead:
    rng = np.random.default_rng(seed)
    return MergedHead(rng.standard_normal((dim, rank)).astype(np.float32),
                      rng.standard_normal((rank, dim)).astype(np.float32))  # fmt: skip


def _update(samples: int, seed: int, classes: dict[str, int], backbone: str = "bundled", dim: int = 4,
            rank: int = 2) -> Update:  # fmt: skip
    text = {c: np.eye(dim, dtype=np.float32)[i % dim] for i, c in enumerate(classes)}
    means = {(c, ""): (np.full(dim, float(n), np.float32), n) for c, n in classes.items()}
    return Update(backbone, dim, samples, _head(seed, rank, dim), classes, text, means)


def _product(head: MergedHead | None) -> np.ndarray:
    assert head is not None
    return head.down.astype(np.float64) @ head.up.astype(np.float64)


def test_heads_average_as_products_weighted_by_samples_and_classes_are_a_union() -> None:
    """Heads from unrelated factors (other seeds, even other ranks): the fleet's head is the sample-weighted mean of
    the products down @ up, not the product of averaged factors."""
    a = _update(100, 0, {"cat": 60, "dog": 40})
    b = _update(300, 1, {"dog": 100, "fox": 200}, rank=3)
    fleet = aggregate([a, b])
    expected = 0.25 * _product(a.head) + 0.75 * _product(b.head)
    np.testing.assert_allclose(_product(fleet.head), expected, rtol=1e-5, atol=1e-5)
    factors = (0.25 * a.head.down + 0.75 * b.head.down[:, :2]) @ (0.25 * a.head.up + 0.75 * b.head.up[:2])
    assert not np.allclose(_product(fleet.head), factors, atol=0.1)  # what averaging LoRA's factors would give
    assert fleet.samples == 400 and list(fleet.class_counts) == ["cat", "dog", "fox"]
    assert fleet.class_counts == {"cat": 60, "dog": 140, "fox": 200}
    mean, n = fleet.means[("dog", "")]  # (40 * 40 + 100 * 100) / 140
    assert n == 140 and mean[0] == pytest.approx((40 * 40 + 100 * 100) / 140)


def test_a_devices_share_leaves_its_own_part_out_and_takes_it_as_it_is_now() -> None:
    a, b, c = _update(100, 0, {"cat": 60}), _update(100, 1, {"cat": 40, "dog": 10}), _update(200, 2, {"fox": 5})
    share = share_for([a, b, c], 0)
    assert share.own_weight == pytest.approx(0.25)
    np.testing.assert_allclose(_product(share.head), 0.25 * _product(b.head) + 0.5 * _product(c.head), atol=1e-5)
    assert share.means[("cat", "")][1] == 40 and ("fox", "") in share.means  # the others' means only
    assert list(share.class_counts) == ["cat", "dog", "fox"]
    fleet = aggregate([a, b, c])
    np.testing.assert_allclose(_product(taken_head(share, a.head)), _product(fleet.head), atol=1e-5)
    later = _head(7)  # the device learned again after it answered: its new head is weighted in, nothing is lost
    np.testing.assert_allclose(_product(taken_head(share, later)), 0.25 * _product(later) + _product(share.head),
                               atol=1e-5)  # fmt: skip


def test_devices_without_adapters_share_classes_only_and_mismatches_are_named() -> None:
    a = _update(100, 0, {"cat": 10})
    ncm = Update("bundled", 4, 500, None, {"owl": 5}, {"owl": np.ones(4, np.float32)}, {})
    fleet = aggregate([a, ncm])
    np.testing.assert_allclose(_product(fleet.head), _product(a.head), atol=1e-5)  # ncm takes no part
    assert set(fleet.class_counts) == {"cat", "owl"}
    with pytest.raises(FleetMismatchError, match="backbone openclip"):
        aggregate([a, _update(1, 1, {"x": 1}, backbone="openclip:ViT-B-32")])
    with pytest.raises(FleetMismatchError, match="8-d"):
        aggregate([a, _update(1, 1, {"x": 1}, dim=8)])


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

    a, b = _device(tmp_path / "a", [0, 1, 2], 0), _device(tmp_path / "b", [3, 4, 5], 1)  # other seeds
    ua, ub = local_update(a), local_update(b)
    assert set(ua.class_counts) == {"c0", "c1", "c2"} and ua.samples == 120 and ua.head is not None
    memory_before = (read_state(a) or pytest.fail()).folder.joinpath("memory.safetensors").read_bytes()
    first = 0.5 * _product(ua.head) + 0.5 * _product(ub.head)  # equal samples
    for _ in range(2):  # both take each round; a second round changes nothing: nothing is counted twice
        applied = apply_fleet(a, share_for([ua, ub], 0))
        apply_fleet(b, share_for([ua, ub], 1))
        assert local_update(a).class_counts == ua.class_counts
        ua, ub = local_update(a), local_update(b)
    assert applied["classes"] == ["c0", "c1", "c2", "c3", "c4", "c5"] and applied["adapter"]
    snapshot = read_state(a) or pytest.fail()
    assert (snapshot.folder / "memory.safetensors").read_bytes() == memory_before  # memory never leaves or changes
    assert applied["memory_bytes"] <= applied["budget_bytes"] == 8_000
    learner = Learner.load_from(snapshot.folder)
    # the head is the average of the two devices' products, though their LoRA bases differ (seeds 0 and 1)
    np.testing.assert_allclose(_product(learner.state.merged), first, atol=1e-5)
    x, y, _ = clustered(6, 30, 0, sample_seed=1)
    predicted = np.array([int(learner.classes[p][1:]) for p in learner.predict(x)])
    assert (predicted[y >= 3] == y[y >= 3]).mean() > 0.8  # the other device's classes, never seen here
    assert snapshot.meta["fleet"]["rounds"] == 2
    from edgecl.fleet.aggregate import compact
    from edgecl.learn.adapters import load_adapter, merge

    written = merge(load_adapter(DIM, snapshot.folder / "adapter"))  # the best rank-r approximation of the head
    near = compact(learner.state.merged.down, learner.state.merged.up, DIM, rank=written.down.shape[1])
    np.testing.assert_allclose(_product(written), _product(near), atol=1e-5)
    assert np.linalg.matrix_rank(_product(learner.state.merged)) > written.down.shape[1]  # answers use it exactly
    _learn_more(a, [0, 1], seed=9)  # a later local learn goes on from the adapter the fleet wrote
    again = Learner.load_from((read_state(a) or pytest.fail()).folder)
    assert again.classes == learner.classes and not np.allclose(_product(again.state.merged), first, atol=1e-5)
    predicted = np.array([int(again.classes[p][1:]) for p in again.predict(x)])
    assert (predicted[y >= 3] == y[y >= 3]).mean() > 0.8


def _learn_more(root: Path, classes: list[int], seed: int) -> None:
    """One more local learn on a device (new rows of `classes`), as `edgecl learn` would commit it."""
    from test_learner import clustered

    from edgecl.learner import Learner

    snapshot = read_state(root) or pytest.fail()
    learner = Learner.load_from(snapshot.folder)
    x, y, text = clustered(6, 20, 0, sample_seed=seed)
    rows = np.isin(y, classes)
    learner.learn_embeddings(x[rows], [f"c{c}" for c in y[rows]], text={f"c{c}": text[c] for c in classes})
    meta = {**snapshot.meta, "tasks": [*snapshot.meta["tasks"], {"samples": int(rows.sum())}]}
    commit_snapshot(root, learner.save_to, meta)


def test_a_learn_between_a_devices_answer_and_the_fleets_result_is_kept_exactly(tmp_path: Path) -> None:
    """The race: device a answers, learns again, then takes the result built from its earlier answer. Its own class
    means and its new head stay its own; the fleet's groups hold exactly the other device's means."""
    from edgecl.fleet.device import FLEET_DOMAIN, apply_fleet, local_update
    from edgecl.learned import files

    a, b = _device(tmp_path / "a", [0, 1], 0), _device(tmp_path / "b", [1, 2], 1)
    ua, ub = local_update(a), local_update(b)
    share = share_for([ua, ub], 0)
    _learn_more(a, [0, 1], seed=5)  # between the answer and the result
    after_learn = local_update(a)
    assert after_learn.class_counts["c1"] > ua.class_counts["c1"]
    apply_fleet(a, share)
    state = files.load((read_state(a) or pytest.fail()).folder)
    assert local_update(a).class_counts == after_learn.class_counts  # the learn is kept
    fleet_groups = state.class_means.domains == FLEET_DOMAIN
    (c1,) = np.flatnonzero(fleet_groups & (state.class_means.classes == state.classes.index("c1")))
    np.testing.assert_allclose(state.class_means.means[c1], ub.means[("c1", "")][0], atol=1e-6)  # b's, exactly
    assert state.class_means.counts[c1] == ub.means[("c1", "")][1]
    w = share.own_weight
    np.testing.assert_allclose(_product(state.merged), w * _product(after_learn.head) + (1 - w) * _product(ub.head),
                               atol=1e-4)  # fmt: skip


def test_a_result_delivered_twice_is_taken_once_and_a_device_left_out_keeps_its_own_head(tmp_path: Path) -> None:
    from dataclasses import replace

    from edgecl.fleet.device import apply_fleet, local_update
    from edgecl.learned import files

    a, b = _device(tmp_path / "a", [0, 1], 0), _device(tmp_path / "b", [2, 3], 1)
    ua, ub = local_update(a), local_update(b)
    apply_fleet(a, share_for([ua, ub], 0), round_id=1, run_id="r1")
    once = files.load((read_state(a) or pytest.fail()).folder).merged
    apply_fleet(a, share_for([ua, ub], 0), round_id=1, run_id="r1")  # the same message again: nothing changes
    np.testing.assert_array_equal(files.load((read_state(a) or pytest.fail()).folder).merged.up, once.up)
    assert (read_state(a) or pytest.fail()).meta["fleet"]["rounds"] == 1
    left_out = replace(aggregate([ua]), head=None, own_weight=1.0)  # b did not answer: it takes classes and means
    applied = apply_fleet(b, left_out, round_id=1, run_id="r1")
    assert applied["new_classes"] == ["c0", "c1"]
    np.testing.assert_allclose(_product(files.load((read_state(b) or pytest.fail()).folder).merged), _product(ub.head),
                               atol=1e-5)  # fmt: skip


def test_a_forgotten_class_stays_forgotten_on_that_device_until_it_learns_it_again(tmp_path: Path) -> None:
    from edgecl.commands import forget
    from edgecl.fleet.device import apply_fleet, local_update

    a, b = _device(tmp_path / "a", [0, 1, 2], 0), _device(tmp_path / "b", [1, 3], 1)
    forget("c1", str(a))
    ua, ub = local_update(a), local_update(b)
    assert "c1" not in ua.class_counts  # its images' mean no longer leaves the device
    applied = apply_fleet(a, share_for([ua, ub], 0))
    assert "c1" not in applied["classes"] and applied["refused_classes"] == ["c1"] and "c3" in applied["classes"]
    snapshot = read_state(a) or pytest.fail()
    assert snapshot.meta["fleet"]["refused"] == ["c1"]
    _learn_more(a, [1], seed=6)  # the user teaches c1 again on this device: the fleet may add to it from then on
    applied = apply_fleet(a, share_for([local_update(a), ub], 0))
    assert "c1" in applied["classes"] and applied["refused_classes"] == []


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
    link = free_port()
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
        wait_for_port(link, 60)
        for d in range(2):
            procs.append(subprocess.Popen(
                [bin_dir / "flower-supernode", "--insecure", "--superlink", f"127.0.0.1:{link}", "--port",
                 str(free_port()), "--node-config", f"state-dir='{tmp_path / f'device-{d}'}'"],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))  # fmt: skip
        app = Path(edgecl.fleet.__file__).parent / "flower_app"
        start = time.monotonic()
        run = subprocess.run([bin_dir / "flwr", "run", str(app), "loopback", "--stream", "--run-config", "rounds=2"],
                             env=env, capture_output=True, text=True, timeout=240, check=False)  # fmt: skip
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
        for d in range(2):
            snapshot = read_state(tmp_path / f"device-{d}") or pytest.fail()
            fleet = snapshot.meta["fleet"]
            assert {k: fleet[k] for k in ("rounds", "round", "classes", "refused")} == {"rounds": 2, "round": 2,
                                                                                    "classes": 6, "refused": []}
            assert len(fleet["run"]) == 32  # the run's id: with the round, a result is taken once
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
    # the current Flower way (issue 27): `flwr run` against a SuperLink of its own, with an isolated FLWR_HOME, and
    # nothing of it left running afterwards
    import psutil

    config = (tmp_path / ".flwr" / "config.toml").read_text()
    port = int(config.split('address = "127.0.0.1:')[1].split('"')[0])
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0
    home = str(tmp_path / ".flwr")
    left = [p.pid for p in psutil.process_iter() if _environ(p).get("FLWR_HOME") == home]
    assert not left and "flwr" in (tmp_path / "flower.log").read_text().lower()


def _environ(process: object) -> dict[str, str]:
    import psutil

    try:
        return process.environ()  # type: ignore[attr-defined]
    except (psutil.Error, OSError):
        return {}


BAD_SETTINGS = [({"budget": "lots"}, "invalid budget"), ({"devices": 1}, "--devices"),
                ({"stream": "cifar"}, "--stream"), ({"rounds": 0}, "--rounds")]  # fmt: skip


@pytest.mark.parametrize(("kwargs", "words"), BAD_SETTINGS)
def test_fleet_simulate_refuses_bad_settings_before_any_work(kwargs: dict, words: str) -> None:
    from edgecl.errors import EdgeclError
    from edgecl.fleet.simulate import FleetSpec

    with pytest.raises(EdgeclError, match=words):
        FleetSpec(**kwargs)


class _Grid:
    """Flower's Grid as far as waiting for nodes goes: the connected node ids."""

    def __init__(self, nodes: list[int]) -> None:
        self.nodes = nodes

    def get_node_ids(self) -> list[int]:
        return self.nodes


def test_min_nodes_means_what_it_says() -> None:
    from edgecl.errors import EdgeclError
    from edgecl.fleet.apps import _wait_for_nodes

    assert _wait_for_nodes(_Grid([3, 1]), 2, 0.1) == [1, 3]  # type: ignore[arg-type]
    with pytest.raises(EdgeclError, match="only 1 of min-nodes=2 devices connected within 0 s"):
        _wait_for_nodes(_Grid([1]), 2, 0.1)  # type: ignore[arg-type]
    with pytest.raises(EdgeclError, match="only 0 of min-nodes=0"):  # a round with no device at all never starts
        _wait_for_nodes(_Grid([]), 0, 0.1)  # type: ignore[arg-type]
