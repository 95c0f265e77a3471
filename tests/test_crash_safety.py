"""A learn killed at any moment leaves the previous state or the new one, never a broken one."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from edgecl import commands
from edgecl.errors import EdgeclError
from edgecl.state import commit_snapshot, read_state

ROOT = Path(__file__).resolve().parents[1]
KILL_TRIALS = 6
MAX_KILL_DELAY_S = 6.0


def _task(folder: Path, classes: dict[str, int], n: int = 10) -> Path:
    from test_cli_learn import fashion_images

    for name, cls in classes.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(fashion_images(cls, n)):
            Image.fromarray(img).save(folder / name / f"{i}.png")
    return folder


def _learn_cmd(task: Path, state: Path) -> list[str]:
    return [sys.executable, "-m", "cli", "learn", "--task-dir", str(task), "--state-dir", str(state), "--json"]


def _state_is_whole(state: Path, probe: Path, allowed: list[list[str]]) -> list[str]:
    info = commands.status(str(state))
    assert info.classes in allowed, info.classes
    results, _ = commands.classify([str(probe)], str(state), top_k=2)
    assert results and results[0]["predictions"][0]["label"] in info.classes
    return info.classes


@pytest.mark.slow
def test_learn_killed_at_random_moments(tmp_path: Path, bundled_export: Path) -> None:
    state = tmp_path / "state"
    base = _task(tmp_path / "base", {"coat": 4, "bag": 8})
    assert commands.learn(commands.LearnOptions(str(base), "64KB", str(state), backbone="bundled"))
    probe = base / "coat" / "0.png"
    rng = random.Random(0)
    expected = ["bag", "coat"]
    outcomes = {"old": 0, "new": 0}
    in_commit = 0
    for trial in range(KILL_TRIALS):
        task = _task(tmp_path / f"t{trial}", {f"class {trial}": trial % 10})
        proc = subprocess.Popen(_learn_cmd(task, state), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if trial % 3 == 2:  # every third kill lands inside the commit: as soon as the new snapshot is being written
            in_commit += _wait_for_commit(state, proc)
        elif trial % 3 == 1:  # ...and one in three just after it: as soon as the pointer names the new snapshot
            _wait_for_pointer_change(state, proc)
        else:
            time.sleep(rng.uniform(0.2, MAX_KILL_DELAY_S))  # a whole learn here takes about 6-8 s
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        classes = _state_is_whole(state, probe, [expected, [*expected, f"class {trial}"]])
        outcomes["new" if len(classes) > len(expected) else "old"] += 1
        expected = classes
    print(f"kill trials: {outcomes}, {in_commit} killed while the snapshot was being written")
    assert outcomes["old"] >= 1 and outcomes["new"] >= KILL_TRIALS // 3 - 1, outcomes  # kills before and after it
    assert in_commit >= KILL_TRIALS // 3 - 1, in_commit


def _wait_for_pointer_change(state: Path, proc: subprocess.Popen, timeout_s: float = 60.0) -> None:
    pointer = state / "edgecl-state.json"
    before = pointer.read_bytes()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if pointer.read_bytes() != before:
                return
        except FileNotFoundError:  # between the temp write and its rename
            pass
        time.sleep(0.0005)


def _wait_for_commit(state: Path, proc: subprocess.Popen, timeout_s: float = 60.0) -> bool:
    """Poll until the learn process starts writing its new snapshot (a .tmp- folder appears); False if it ended."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        if any(p.name.startswith(".tmp-") for p in (state / "snapshots").iterdir()):
            return True
        time.sleep(0.0005)
    return False


def test_crash_at_every_step_of_a_commit_keeps_the_old_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state"
    commit_snapshot(state, lambda folder: (folder / "a.txt").write_text("old"), {"v": 1})
    real_rename, real_replace = os.rename, os.replace
    for step in range(3):  # 0: snapshot rename, 1: pointer replace, 2: after both
        calls = {"n": 0}

        def flaky(src: object, dst: object, real: object = None, step: int = step, calls: dict = calls) -> None:
            calls["n"] += 1
            if calls["n"] > step:
                raise OSError(28, "No space left on device")
            (real or real_rename)(src, dst)  # type: ignore[operator]

        monkeypatch.setattr(os, "rename", lambda s, d: flaky(s, d, real_rename))
        monkeypatch.setattr(os, "replace", lambda s, d: flaky(s, d, real_replace))
        failed = None
        try:
            commit_snapshot(state, lambda folder: (folder / "a.txt").write_text("new"), {"v": 2})
        except EdgeclError as exc:
            failed = str(exc)
        monkeypatch.setattr(os, "rename", real_rename)
        monkeypatch.setattr(os, "replace", real_replace)
        snap = read_state(state)
        assert snap is not None and not list((state / "snapshots").glob(".tmp-*"))
        if step < 2:  # a failed rename reports a full disk and keeps the old state
            assert failed is not None and "disk full" in failed, failed
            assert (snap.folder / "a.txt").read_text() == "old" and snap.meta["v"] == 1
        else:
            assert failed is None and (snap.folder / "a.txt").read_text() == "new" and snap.meta["v"] == 2


def test_damaged_pointer_is_reported(tmp_path: Path) -> None:
    state = tmp_path / "state"
    commit_snapshot(state, lambda folder: None, {"v": 1})
    (state / "edgecl-state.json").write_text("{broken")
    with pytest.raises(EdgeclError, match="state pointer is damaged"):
        read_state(state)
    (state / "edgecl-state.json").write_text(
        json.dumps({"format": "edgecl-state", "format_version": 99, "snapshot": "x"})
    )
    with pytest.raises(EdgeclError, match="newer edgecl"):
        read_state(state)
