"""RAM-cap planning (edgecl.ram) on its own, and the learner's training sizes it feeds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgecl.learn.trainer import TrainSchedule
from edgecl.learner import Learner, LearnerConfig
from edgecl.memory import MemoryConfig
from edgecl.ram import (
    HEADROOM,
    PROBE_BATCH,
    REPLAY_FIRST_BATCH,
    BatchPlan,
    PeakRss,
    RamCapError,
    TrainSizes,
    fit_batch,
    plan_training,
    release_free_memory,
    rss_bytes,
    train_row_bytes,
)

MIB = 2**20


def test_peak_rss_sees_an_allocation_freed_inside_the_block() -> None:
    with PeakRss() as meter:
        block = np.ones(200 * MIB // 8)  # 200 MiB, touched
        block.sum()
        del block
    assert meter.peak - meter.before >= 150 * MIB
    assert rss_bytes() < meter.peak - 100 * MIB  # freed again: the meter kept the peak, not the end state


def test_fit_batch_uses_the_headroom_under_the_cap() -> None:
    cap = 1000 * MIB
    assert fit_batch(cap, 500 * MIB, 10 * MIB, 64) == int((cap * HEADROOM - 500 * MIB) // (10 * MIB))
    assert fit_batch(cap, 500 * MIB, 10 * MIB, 16) == 16  # never above the profile's batch
    assert fit_batch(cap, 990 * MIB, 10 * MIB, 16) == 1  # never below one
    assert fit_batch(None, 990 * MIB, 10 * MIB, 16) == 16  # no cap, no limit


def test_batch_plan_probes_then_sizes_from_the_measured_cost() -> None:
    release_free_memory()  # as record() does before it reads the RSS
    held = rss_bytes()
    plan = BatchPlan(int((held + 200 * MIB) / HEADROOM), 64)  # leaves ~200 MiB of planning room
    assert plan.size == PROBE_BATCH
    plan.record(PROBE_BATCH, held, held + PROBE_BATCH * 20 * MIB)  # 20 MiB per item measured
    assert plan.size in (9, 10)  # 200 MiB / 20 MiB (RSS drifts a few MiB)
    first = plan.size
    plan.record(first, held, held + first * 40 * MIB)  # costlier items: the next batches shrink
    assert plan.size < first and plan.limited
    assert plan.summary()["bytes_per_item"] == 40 * MIB


def test_a_roomy_cap_keeps_memory_between_batches_until_a_peak_nears_the_cap() -> None:
    release_free_memory()
    held = rss_bytes()
    plan = BatchPlan(int((held + 2000 * MIB) / HEADROOM), 16)
    assert plan.release_after_batch  # the probe measures with memory handed back
    plan.record(PROBE_BATCH, held, held + PROBE_BATCH * 10 * MIB)
    assert plan.size == 16 and not plan.release_after_batch  # 16 x 10 MiB fits: keep memory, full speed
    plan.record(16, held, held + 160 * MIB)
    assert plan.size == 16 and not plan.limited
    plan.record(16, held, int((held + 2000 * MIB) / HEADROOM))  # a peak at the cap: measure again, smaller
    assert plan.release_after_batch and plan.size == 8 and plan.limited


def test_batch_plan_without_a_cap_keeps_the_profile_batch() -> None:
    plan = BatchPlan(None, 16)
    plan.record(16, 0, 0)
    assert plan.size == 16 and not plan.limited


def test_a_cap_that_one_item_does_not_fit_is_an_error() -> None:
    held = rss_bytes()
    plan = BatchPlan(held + 10 * MIB, 16)
    with pytest.raises(RamCapError, match="RAM cap"):
        plan.record(1, held, held + 50 * MIB)
    with pytest.raises(RamCapError, match="loaded models and libraries alone"):
        BatchPlan(held // 2, 16).check_start()


def test_plan_training_limits_batch_and_replay_rows() -> None:
    dim, classes = 512, 10
    assert plan_training(None, 256, dim, classes, 100) == TrainSizes(256, None)
    held = rss_bytes()
    roomy = plan_training(held + 2**30, 256, dim, classes, 100)
    assert roomy.batch == 256 and roomy.replay_rows is not None and roomy.replay_rows > 100_000
    tight = plan_training(int((held + 100 * dim * 4 + 4 * MIB) / HEADROOM), 256, dim, classes, 100)  # ~4 MiB left
    assert 2 <= tight.batch < 256 and tight.replay_rows is not None and tight.replay_rows < roomy.replay_rows
    replaying = plan_training(int((held + 100 * dim * 4 + 4 * MIB) / HEADROOM), 256, dim, classes, 100, n_replay=500)
    assert replaying.replay_rows is not None and replaying.replay_rows >= 500  # replay first, the batch smaller
    assert REPLAY_FIRST_BATCH <= replaying.batch < tight.batch
    with pytest.raises(RamCapError, match="training this task"):
        plan_training(held // 2, 256, dim, classes, 100)
    assert train_row_bytes(dim, classes) == 4 * (16 * dim + 8 * classes)


def _learner_with_memory(rng: np.random.Generator, dim: int = 32) -> Learner:
    learner = Learner(
        LearnerConfig(method="er", memory=MemoryConfig(200_000, "int8"), train=TrainSchedule(epochs=1)), dim
    )
    text = {name: rng.standard_normal(dim) for name in ("a", "b", "c", "d")}
    x = rng.standard_normal((80, dim)).astype(np.float32)
    learner.learn_embeddings(x, ["a", "b"] * 40, text=text)
    return learner


def test_learner_replays_at_most_the_planned_rows_and_keeps_its_memory() -> None:
    rng = np.random.default_rng(0)
    learner = _learner_with_memory(rng)
    stored = learner.memory.stats().samples
    text = {name: rng.standard_normal(32) for name in ("c", "d")}
    x = rng.standard_normal((40, 32)).astype(np.float32)
    report = learner.learn_embeddings(x, ["c", "d"] * 20, text=text, sizes=TrainSizes(batch=8, replay_rows=5))
    assert report.training.batch == 8
    assert report.training.replayed_rows == 5
    assert report.training.replay_rows_available == stored  # every earlier row could have been replayed
    assert report.training.steps == 200  # the schedule's floor for 40 new rows, whatever batch the RAM cap allows


def test_a_cap_with_room_for_the_memory_but_not_every_translated_row_is_reported_and_warned(
        capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """The RAM cap leaves room for every earlier memory row and 10 rows more: 10 translated rows are made, the
    report says how many the earlier classes lacked, and `edgecl learn` warns about it in one line."""
    from edgecl.cli.learning import warn_ram_limits
    from edgecl.reports import Batches

    rng = np.random.default_rng(2)
    learner = _learner_with_memory(rng)
    stored = learner.memory.stats().samples
    text = {name: rng.standard_normal(32) for name in ("c", "d")}
    x = rng.standard_normal((40, 32)).astype(np.float32)
    report = learner.learn_embeddings(x, ["c", "d"] * 20, text=text,
                                      sizes=TrainSizes(batch=8, replay_rows=stored + 10))  # fmt: skip
    training = report.training
    assert training.replayed_rows == training.replay_rows_available == stored
    per_group = learner.config.prototypes.translated_replay
    assert training.translated_rows == 10 and training.translated_rows_available == 2 * per_group - stored
    warn_ram_limits(Batches({"limited_by_ram_cap": False}, 8, stored, stored, 10, training.translated_rows_available))
    err = capsys.readouterr().err
    assert err == (f"warning: the RAM cap let training make 10 of the {2 * per_group - stored} translated rows the "
                   "earlier classes lacked; old classes may be forgotten faster\n")
    unlimited = learner.learn_embeddings(x[:4], ["c", "d"] * 2, text=text)  # no plan: nothing cut
    assert unlimited.training.translated_rows == unlimited.training.translated_rows_available > 0


def test_learner_replays_everything_without_a_plan() -> None:
    rng = np.random.default_rng(1)
    learner = _learner_with_memory(rng)
    stored = learner.memory.stats().samples
    text = {name: rng.standard_normal(32) for name in ("c", "d")}
    report = learner.learn_embeddings(rng.standard_normal((40, 32)).astype(np.float32), ["c", "d"] * 20, text=text)
    assert report.training.replayed_rows == report.training.replay_rows_available == stored
    assert report.training.batch == learner.runtime.train_batch


def test_in_process_learning_is_not_refused_for_the_hosts_own_memory(tmp_path: Path, bundled_export: Path) -> None:
    """A host (here pytest) already holding 1.5 GiB calls learn with the cpu profile's 2 GiB cap: the cap is on what
    learning adds, so it learns (counting the whole process, models + libraries + host would exceed the cap)."""
    from typer.testing import CliRunner

    from edgecl.cli import app
    from edgecl.ram import host_bytes, rss_bytes
    from tests.test_cli_learn import write_task

    ballast = np.ones(3 * 2**28 // 2, np.float32)  # 1.5 GiB, every page touched
    assert host_bytes() >= rss_bytes() - 2**26 > 1.5 * 2**30
    task = write_task(tmp_path / "t", {"coat": 4, "bag": 8}, n=6)
    result = CliRunner().invoke(app, ["learn", "--task-dir", str(task), "--backbone", "bundled", "--device", "cpu",
                                      "--state-dir", str(tmp_path / "s"), "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["host_rss_bytes"] > 1.5 * 2**30 and report["ram_cap_bytes"] == 2 * 2**30
    del ballast
