"""`edgecl rollback`: back to the snapshot before the last change, as a new snapshot; twice undoes it; a damaged
earlier snapshot or none at all is one error line and changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from edgecl.cli import app
from edgecl.state import commit_snapshot, read_state
from tests.test_learner import DIM, clustered

runner = CliRunner()


def _learn(root: Path, classes: list[int]) -> None:
    """A learn committed as `edgecl learn` commits it (numpy embeddings: no encoder needed)."""
    from edgecl.learn.trainer import TrainSchedule
    from edgecl.learner import Learner, LearnerConfig
    from edgecl.memory import MemoryConfig

    snapshot = read_state(root)
    x, y, text = clustered(4, 20, 0)
    rows = np.isin(y, classes)
    if snapshot is None:
        learner = Learner(LearnerConfig(method="ncm", memory=MemoryConfig(8_000, "int8"),
                                        train=TrainSchedule(min_steps=5)), DIM)  # fmt: skip
    else:
        learner = Learner.load_from(snapshot.folder)
    learner.learn_embeddings(x[rows], [f"c{c}" for c in y[rows]], text={f"c{c}": text[c] for c in classes})
    tasks = [*(snapshot.meta["tasks"] if snapshot else []), {"samples": int(rows.sum())}]
    commit_snapshot(root, learner.save_to, {"backbone": "bundled", "tasks": tasks})


def _classes(root: Path) -> list[str]:
    from edgecl.learned import files

    return list(files.load((read_state(root) or _no_state()).folder).classes)


def _no_state() -> None:
    raise AssertionError("no state")


def _rollback(root: Path) -> tuple[int, str, str]:
    result = runner.invoke(app, ["rollback", "--state-dir", str(root), "--json"])
    return result.exit_code, result.stdout, result.stderr


def test_rollback_goes_back_one_change_and_a_second_rollback_undoes_it(tmp_path: Path) -> None:
    root = tmp_path / "s"
    _learn(root, [0, 1])
    code, _, err = _rollback(root)
    assert code == 2 and "no earlier snapshot" in err and len(err.strip().splitlines()) == 1
    _learn(root, [2, 3])
    assert _classes(root) == ["c0", "c1", "c2", "c3"]
    code, out, err = _rollback(root)
    assert code == 0, err
    report = json.loads(out)
    assert report["classes"] == ["c0", "c1"] == _classes(root) and report["tasks"] == 1
    snapshot = read_state(root)
    assert snapshot is not None and snapshot.meta["rolled_back"]["to"] == report["rolled_back_to"]
    code, out, _ = _rollback(root)  # undo
    assert code == 0 and _classes(root) == ["c0", "c1", "c2", "c3"] and json.loads(out)["tasks"] == 2


def test_a_damaged_earlier_snapshot_is_one_error_line_and_the_current_state_stays(tmp_path: Path) -> None:
    root = tmp_path / "s"
    _learn(root, [0, 1])
    before = read_state(root)
    assert before is not None
    _learn(root, [2])
    (before.folder / "learned.npz").write_bytes(b"not a zip")
    current = (read_state(root) or _no_state()).folder
    code, _, err = _rollback(root)
    assert code == 2 and "learned.npz" in err and len(err.strip().splitlines()) == 1, err
    assert (read_state(root) or _no_state()).folder == current and _classes(root) == ["c0", "c1", "c2"]
