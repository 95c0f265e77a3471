"""Learner settings: the composed config round-trips, old flat configs load, defaults < profile < flags, and device
settings live in the runtime, never in the saved learner."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from edgecl.errors import EdgeclError
from edgecl.learn.methods import DEFAULT_METHOD
from edgecl.learn.prototypes import PrototypeConfig
from edgecl.learn.trainer import TrainSchedule
from edgecl.learner import Learner
from edgecl.learner_config import FLAT_NAMES, LearnerConfig, resolve
from edgecl.memory import MemoryConfig
from edgecl.profiles import get_profile
from edgecl.runtime import Runtime
from tests.test_learner import DIM, clustered


def test_the_config_round_trips_and_reads_the_flat_form() -> None:
    config = LearnerConfig(method="ncm", seed=4, memory=MemoryConfig(5_000, "int4", groups="domain"),
                           train=TrainSchedule(epochs=2, lr=0.01), prototypes=PrototypeConfig(weight=None))  # fmt: skip
    assert config.memory.seed == 4 and config.memory.auto_pq and config.groups == "domain"
    assert LearnerConfig.from_json(json.loads(json.dumps(config.to_json()))) == config
    assert LearnerConfig.from_flat(config.flat()) == config
    assert "seed" not in config.to_json()["memory"]  # the learner's seed, not a second copy
    with pytest.raises(EdgeclError, match="unknown setting 'batch_size'"):
        LearnerConfig.from_flat({"batch_size": 8})
    with pytest.raises(EdgeclError, match="unknown groups"):
        LearnerConfig.from_flat({"groups": "pixels"})
    old = {"method": "gdro", "budget_bytes": 9_000, "codec": "int8", "epochs": 2, "max_train_seconds": 9.0,
           "batch_size": 64, "precision": "bf16", "threads": 3, "optimizer": "adamw", "extra": {}}  # fmt: skip
    read = LearnerConfig.from_json(old, version=1)
    assert (read.memory.budget_bytes, read.train.max_seconds, read.groups) == (9_000, 9.0, "class")
    assert set(FLAT_NAMES) <= set(config.flat())


def test_flags_over_profile_over_defaults() -> None:
    jetson = get_profile("jetson-orin-nano")
    chosen = resolve(jetson)
    assert chosen.config.memory.budget_bytes == jetson.default_budget_bytes
    assert chosen.config.adapter.rank == jetson.adapter_rank and chosen.config.method == DEFAULT_METHOD
    assert chosen.runtime == Runtime.from_profile(jetson.to_dict())
    assert chosen.runtime.train_batch == jetson.train_batch and chosen.runtime.ram_cap_bytes == jetson.ram_cap_bytes
    flagged = resolve(jetson, method="er", budget_bytes=123_000, codec="int8", groups="class", seed=5)
    assert (flagged.config.method, flagged.config.memory.budget_bytes, flagged.config.memory.codec) == (
        "er", 123_000, "int8")  # fmt: skip
    assert (flagged.config.groups, flagged.config.seed, flagged.config.memory.seed) == ("class", 5, 5)


def test_device_settings_are_not_saved_and_a_loaded_state_trains_with_this_device(tmp_path: Path) -> None:
    x, y, text = clustered(3, 20, 0)
    config = LearnerConfig(method="er", memory=MemoryConfig(8_000, "int8"), train=TrainSchedule(min_steps=5))
    learner = Learner(config, DIM, runtime=Runtime(train_batch=64))
    rows = y < 2
    first = learner.learn_embeddings(x[rows], [f"c{c}" for c in y[rows]], text={f"c{c}": text[c] for c in (0, 1)})
    assert first.training.batch == 64
    learner.save_to(tmp_path / "s")
    saved = (tmp_path / "s" / "learner.json").read_text()
    assert not any(f'"{key}"' in saved for key in ("batch_size", "train_batch", "precision", "threads", "optimizer"))
    here = replace(Runtime(), train_batch=16, train_precision="bf16")
    loaded = Learner.load_from(tmp_path / "s", runtime=here)
    again = loaded.learn_embeddings(x[~rows], ["c2"] * int((~rows).sum()), text={"c2": text[2]})
    assert (again.training.batch, again.training.precision) == (16, "bf16")
    assert loaded.config == learner.config


def test_a_damaged_learner_file_is_a_one_line_error(tmp_path: Path) -> None:
    x, y, text = clustered(2, 5, 0)
    learner = Learner(LearnerConfig(method="zeroshot", memory=MemoryConfig(8_000, "int8")), DIM)
    learner.learn_embeddings(x, [f"c{c}" for c in y], text={f"c{c}": text[c] for c in (0, 1)})
    learner.save_to(tmp_path / "s")
    path = tmp_path / "s" / "learner.json"
    saved = json.loads(path.read_text())
    for damaged in ("{", json.dumps({**saved, "config": {"method": "gdro"}}), json.dumps({**saved, "dim": None})):
        path.write_text(damaged)
        with pytest.raises(EdgeclError, match="learner.json: damaged learner file"):
            Learner.load_from(tmp_path / "s")
