"""Learning at every task size: the step schedule, class prototypes and their measured weight, the task-size bench."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgecl.bench.size_suite import SizeSuite, jobs, run_size_suite
from edgecl.bench.task_sizes import task_sizes
from edgecl.learn.prototypes import WEIGHT_GRID, ClassMeans, PrototypeConfig, holdout_mask, measure_weight
from edgecl.learn.trainer import TrainConfig, TrainData, TrainSchedule, train
from edgecl.learner import Learner, LearnerConfig
from edgecl.memory import MemoryConfig
from edgecl.runtime import Runtime
from tests.test_learner import DIM, clustered


def test_schedule_depends_on_the_folder_not_the_batch() -> None:
    small, large = TrainConfig(runtime=Runtime(train_batch=8)), TrainConfig(runtime=Runtime(train_batch=256))
    assert small.steps_for(20) == large.steps_for(20) == 200  # a 20-photo folder still gets the floor
    assert small.steps_for(5_000) == large.steps_for(5_000) == 5 * 40  # 5 passes of 128 new rows per step
    assert TrainSchedule(max_steps=300).steps_for(100_000) == 300
    with pytest.raises(ValueError, match="min_steps"):
        TrainSchedule(min_steps=10, max_steps=5)


def test_training_runs_the_scheduled_steps_within_its_time_bound() -> None:
    from edgecl.learn.adapters import AdapterConfig, lora_head

    x, y, text = clustered(2, 10, 0)
    data = TrainData(x, y, np.arange(len(x)), text, np.arange(2))
    report = train(
        lora_head(DIM, AdapterConfig(rank=4)),
        None,
        data,
        TrainConfig(method="er", schedule=TrainSchedule(min_steps=60)),
    )
    assert report.steps == 60 and len(report.epoch_loss) == 10 and report.epoch_loss[-1] < report.epoch_loss[0]
    endless = TrainSchedule(min_steps=10**6, max_steps=10**6, max_seconds=0.3)
    bounded = train(lora_head(DIM, AdapterConfig(rank=4)), None, data, TrainConfig(method="er", schedule=endless))
    assert 0 < bounded.steps < 10**6 and bounded.seconds < 5


def test_class_means_are_running_means_per_class_and_domain_and_drop_a_class() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((30, 4)).astype(np.float32), rng.integers(0, 3, 30)
    d = (np.arange(30) >= 20).astype(np.int64)  # the last 10 rows come from a second domain
    means = ClassMeans.empty(4).updated(x[:12], y[:12], d[:12]).updated(x[12:], y[12:], d[12:])
    assert len(means.counts) == len(set(zip(y.tolist(), d.tolist(), strict=True)))
    for g, (c, dom) in enumerate(zip(means.classes, means.domains, strict=True)):
        rows = (y == c) & (d == dom)
        assert means.counts[g] == rows.sum()
        np.testing.assert_allclose(means.means[g], x[rows].mean(0), atol=1e-5)
    assert means.samples_of(3).tolist() == np.bincount(y, minlength=3).tolist()
    dropped = means.without(1)
    assert dropped.samples_of(2).tolist() == [(y == 0).sum(), (y == 2).sum()]


def test_a_class_scores_its_best_matching_domain_mean() -> None:
    x = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.2]], np.float32)
    means = ClassMeans.empty(2).updated(x, np.array([0, 0, 1]), np.array([0, 1, 0]))  # class 0 in two domains
    scores = means.scores(np.array([[0.0, 2.0]], np.float32), n_classes=3)
    np.testing.assert_allclose(scores[0, :2], [1.0, 0.2 / np.hypot(1.0, 0.2)], atol=1e-5)
    assert scores[0, 2] == 0.0  # a class never seen scores 0


def test_holdout_takes_a_slice_of_each_class_that_has_enough_rows() -> None:
    y = np.array([0] * 20 + [1] * 2 + [2] * 200)
    held = holdout_mask(y, np.random.default_rng(0))
    assert held[y == 0].sum() == 4 and held[y == 1].sum() == 0 and held[y == 2].sum() == 25


def test_measured_weight_is_the_best_on_the_slice_and_ties_go_to_the_prior() -> None:
    y = np.array([0, 1, 1])
    head = np.array([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])  # the head calls everything class 1
    proto = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])  # the prototypes are right
    assert measure_weight(head, proto, y, prior=4.0) == 4.0  # 2..64 all fix it: nearest the prior
    assert measure_weight(head, proto, y, prior=64.0) == 64.0
    right_head = 0.1 * proto  # a right head with small margins, and prototypes that mislead
    assert measure_weight(right_head, 1 - proto, y, prior=4.0) == WEIGHT_GRID[0] == 0.0


def test_a_new_class_of_twenty_rows_is_recognised_at_once() -> None:
    """Four known classes, then one class from 20 rows: the learner (here measuring its prototype weight on a held-out
    slice) recognises it about as well as NCM."""
    x, y, text = clustered(5, 120, 3)
    test_x, test_y, _ = clustered(5, 120, 3)
    accuracy = {}
    for method in ("gdro", "ncm"):
        learner = Learner(
            LearnerConfig(method=method, memory=MemoryConfig(8_000, "int8"), prototypes=PrototypeConfig(weight=None)),
            DIM,
        )
        base = y < 4
        texts = {f"c{c}": text[c] for c in range(4)}
        learner.learn_embeddings(x[base][::2], [f"c{c}" for c in y[base][::2]], text=texts)
        new = np.flatnonzero(y == 4)[:20]
        report = learner.learn_embeddings(x[new], ["c4"] * 20, text={"c4": text[4]})
        predicted = np.array([int(learner.classes[p][1:]) for p in learner.predict(test_x[test_y == 4])])
        accuracy[method] = float((predicted == 4).mean())
        if method == "gdro":
            assert report.training.steps == 200 and report.training.held_out_rows == 4
            assert report.prototype_weight in WEIGHT_GRID
    assert accuracy["gdro"] >= accuracy["ncm"] - 0.05, accuracy


def test_prototypes_round_trip_and_old_states_get_them_from_memory(tmp_path: Path) -> None:
    x, y, text = clustered(4, 40, 1)
    learner = Learner(
        LearnerConfig(method="gdro", memory=MemoryConfig(8_000, "int8"), train=TrainSchedule(min_steps=20)), DIM
    )
    learner.learn_embeddings(x, [f"c{c}" for c in y], text={f"c{c}": text[c] for c in range(4)})
    learner.save_to(tmp_path / "s")
    loaded = Learner.load_from(tmp_path / "s")
    assert loaded.state.prototype_weight == learner.state.prototype_weight
    np.testing.assert_array_equal(loaded.state.class_means.means, learner.state.class_means.means)
    np.testing.assert_array_equal(loaded.predict(x), learner.predict(x))
    with np.load(tmp_path / "s" / "learned.npz") as data:  # a state written with one mean per class, no groups
        np.savez(tmp_path / "s" / "learned.npz", **{k: data[k] for k in data.files if not k.startswith("class_mean_")})
    meta = json.loads((tmp_path / "s" / "learner.json").read_text())  # and a flat config (version 1) without groups
    meta["config"] = {k: v for k, v in learner.config.flat().items() if k != "groups"}
    del meta["config_version"]
    (tmp_path / "s" / "learner.json").write_text(json.dumps(meta))
    per_class = Learner.load_from(tmp_path / "s")
    assert per_class.config.groups == "class" and per_class.state.class_means.classes.tolist() == [0, 1, 2, 3]
    np.testing.assert_array_equal(per_class.predict(x), learner.predict(x))
    with np.load(tmp_path / "s" / "learned.npz") as data:  # a state written before class means existed
        np.savez(tmp_path / "s" / "learned.npz", **{k: data[k] for k in data.files if not k.startswith("class_")})
    old = Learner.load_from(tmp_path / "s")
    assert old.state.class_means.counts.sum() == len(old.memory.ids) and len(old.state.class_means.counts) == 4
    assert (old.predict(x) == y).mean() > 0.5


def test_task_shapes_cover_every_class() -> None:
    assert task_sizes("1", 10) == [1] * 10 and task_sizes("2", 10) == [2] * 5
    assert task_sizes("3-4", 10) == [3, 4, 3]


def test_task_size_suite_smoke(tmp_path: Path, bundled_export: Path) -> None:
    suite = SizeSuite(("fashion-mnist",), ("gdro", "ncm"), (5,), ("1", "3-4"), "64KB", ("16KB",), 5, "3-4", 1,
                      test_per_class=10)  # fmt: skip
    assert len(jobs(suite)) == 2 * 2 + 2  # size table, plus the sweep's one extra budget
    results = run_size_suite(suite, tmp_path / "out")
    assert {(r["per_class"], r["shape"]) for r in results["runs"]} == {(5, "1"), (5, "3-4")}
    assert all(len(r["seen_accuracy"]) == (10 if r["shape"] == "1" else 3) for r in results["runs"])
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| 5 | 1 |" in report and "| 16.00 KB |" in report
    assert json.loads((tmp_path / "out" / "results.json").read_text())["suite"] == "task-size"


def test_the_task_report_shows_the_memory_after_the_task() -> None:
    x, y, text = clustered(2, 20, 4)
    learner = Learner(
        LearnerConfig(method="er", memory=MemoryConfig(8_000, "int8"), train=TrainSchedule(min_steps=5)), DIM
    )
    report = learner.learn_embeddings(x, [f"c{c}" for c in y], text={f"c{c}": text[c] for c in range(2)})
    assert report.memory == learner.memory.stats() and report.memory.samples > 0
