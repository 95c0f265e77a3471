"""learn / classify / status / forget end to end, through CliRunner and real subprocesses, on image folders the
tests write from real Fashion-MNIST images, including the bad inputs users give."""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from edgecl.cli import app
from edgecl.datasets import write_pngs
from edgecl.learn.methods import DEFAULT_METHOD, METHODS
from edgecl.learn.prototypes import TRANSLATED_REPLAY

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
LEARN_KEYS = {"classes", "new_classes", "samples_stored", "memory_bytes", "budget_bytes", "codec", "skipped", "seconds"}


def fashion_images(cls: int, n: int, offset: int = 0) -> list[np.ndarray]:
    from edgecl.datasets import fashion_mnist

    images, labels = fashion_mnist("train")  # missing offline data fails the suite (`make install` installs it)
    return list(images[np.flatnonzero(labels == cls)[offset : offset + n]])


def write_task(folder: Path, classes: dict[str, int], n: int = 12, offset: int = 0) -> Path:
    for name, cls in classes.items():
        images = fashion_images(cls, n, offset)
        write_pngs(folder / name, images, [f"{i}.png" for i in range(len(images))])
    return folder


def edgecl(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env=dict(os.environ), check=False)  # fmt: skip


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture()
def state(tmp_path: Path, bundled_export: Path) -> Path:
    return tmp_path / "state"


def test_learn_classify_status_forget(state: Path, tmp_path: Path) -> None:
    task1 = write_task(tmp_path / "t1", {"ankle_boot": 9, "trouser": 1})
    code, out, err = invoke("learn", "--task-dir", str(task1), "--budget", "64KB", "--backbone", "bundled",
                            "--state-dir", str(state), "--json")  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    assert LEARN_KEYS <= set(report) and report["new_classes"] == ["ankle_boot", "trouser"]
    assert report["memory_bytes"] <= report["budget_bytes"] == 64_000 and report["skipped"] == []
    task2 = write_task(tmp_path / "t2", {"bag": 8, "sneaker": 7})
    code, out, err = invoke("learn", "--task-dir", str(task2), "--state-dir", str(state), "--json")
    assert code == 0, err
    assert json.loads(out)["classes"] == ["ankle_boot", "trouser", "bag", "sneaker"]

    test_dir = write_task(tmp_path / "test", {"x": 1}, n=4, offset=100)  # held-out trousers
    code, out, err = invoke("classify", str(test_dir), "--top-k", "3", "--labels", "bicycle, trouser",
                            "--state-dir", str(state), "--json")  # fmt: skip
    assert code == 0, err
    results = json.loads(out)
    assert len(results) == 4 and all(len(r["predictions"]) == 3 for r in results)
    assert sum(r["predictions"][0]["label"] == "trouser" for r in results) >= 3
    assert all(set(p) == {"label", "score", "probability"} for r in results for p in r["predictions"])
    assert all(0 <= p["probability"] <= 1 for r in results for p in r["predictions"])

    code, out, _ = invoke("status", "--state-dir", str(state), "--json")
    info = json.loads(out)
    assert {"backbone", "device", "classes", "domains", "memory", "tasks"} <= set(info)
    assert info["backbone"] == "bundled" and len(info["tasks"]) == 2
    assert {"path", "bytes", "budget_bytes", "codec", "per_class"} <= set(info["memory"])
    assert Path(info["memory"]["path"]).stat().st_size == info["memory"]["bytes"] <= 64_000

    code, out, _ = invoke("forget", "bag", "--state-dir", str(state), "--json")
    assert code == 0 and json.loads(out)["bytes_freed"] > 0
    code, out, _ = invoke("status", "--state-dir", str(state), "--json")
    assert "bag" not in json.loads(out)["classes"] and "bag" not in json.loads(out)["memory"]["per_class"]
    code, _, err = invoke("forget", "bag", "--state-dir", str(state))
    assert code == 2 and "not learned" in err


def test_domain_incremental_and_subprocess_cold_path(state: Path, tmp_path: Path) -> None:
    task = write_task(tmp_path / "t1", {"coat": 4, "shirt": 6})
    assert edgecl("learn", "--task-dir", str(task), "--budget", "32KB", "--backbone", "bundled",
                  "--state-dir", str(state)).returncode == 0  # fmt: skip
    inverted = tmp_path / "inv"
    for name in ("coat", "shirt"):
        (inverted / name).mkdir(parents=True)
        for i, img in enumerate(fashion_images({"coat": 4, "shirt": 6}[name], 8, 50)):
            Image.fromarray(255 - img).save(inverted / name / f"{i}.png")
    out = edgecl("learn", "--task-dir", str(inverted), "--domain", "inverted", "--state-dir", str(state), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["new_classes"] == []
    batches = json.loads(out.stdout)["batches"]  # coat and shirt upright replayed from their memory rows, topped up
    assert batches["replayed_rows"] == batches["replay_rows_available"] > 0
    assert batches["translated_rows"] == batches["translated_rows_available"] == 2 * TRANSLATED_REPLAY - batches[
        "replayed_rows"]  # fmt: skip
    info = json.loads(edgecl("status", "--state-dir", str(state), "--json").stdout)
    assert info["domains"] == ["inverted"] and info["tasks"][1]["domain"] == "inverted"
    script = (f"import sys; from cli import main; sys.argv = ['edgecl', 'classify', {str(task / 'coat' / '0.png')!r}, "
              f"'--state-dir', {str(state)!r}, '--json']\ncode = 0\ntry:\n    main()\nexcept SystemExit as exc:\n"
              "    code = exc.code or 0\nprint('EXIT', code, 'TORCH', 'torch' in sys.modules)")  # fmt: skip
    cold = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=False)
    output, _, verdict = cold.stdout.rpartition("EXIT")
    assert verdict.split() == ["0", "TORCH", "False"], cold.stderr  # classify succeeded without importing torch
    predictions = json.loads(output)[0]["predictions"]
    assert {p["label"] for p in predictions} == {"coat", "shirt"}


def test_bad_images_are_skipped_with_reasons(state: Path, tmp_path: Path) -> None:
    task = write_task(tmp_path / "t", {"sandal": 5, "bag": 8}, n=6)
    bag = task / "bag"
    (bag / "empty.jpg").write_bytes(b"")
    (bag / "notes.txt").write_text("not an image")
    (bag / "fake.png").write_bytes(b"this is text")
    good = (bag / "0.png").read_bytes()
    (bag / "truncated.png").write_bytes(good[: len(good) // 2])
    Image.new("1", (12000, 12000)).save(bag / "bomb.png")
    rgb = Image.fromarray(fashion_images(8, 1, 30)[0]).convert("RGB")
    rgb.convert("CMYK").save(bag / "cmyk.jpg")
    rgb.convert("P").save(bag / "palette.png")
    rgb.convert("RGBA").save(bag / "alpha.png")
    Image.fromarray(np.asarray(rgb.convert("L"), np.uint16) * 257).save(bag / "deep.png")
    rgb.resize((3000, 2500)).save(bag / "large.jpg")
    nested = bag / "more" / "deeper"
    nested.mkdir(parents=True)
    rgb.save(nested / "n.webp")
    os.symlink(bag, bag / "more" / "loop")
    os.symlink(bag, task / "sandal" / "bags")  # another class's folder: its photos are not sandals
    os.symlink("..", task / "sandal" / "up")  # the task folder itself
    os.symlink(tmp_path / "gone", bag / "dangling")
    (task / "loose.png").write_bytes(good)
    code, out, err = invoke("learn", "--task-dir", str(task), "--budget", "64KB", "--backbone", "bundled",
                            "--state-dir", str(state), "--json")  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    reasons = {Path(s["path"]).name: s["reason"] for s in report["skipped"]}
    assert set(reasons) == {"empty.jpg", "notes.txt", "fake.png", "truncated.png", "bomb.png", "loose.png", "bags",
                            "up", "dangling"}  # fmt: skip
    assert "bomb" in reasons["bomb.png"] and "not an image" in reasons["notes.txt"]
    assert "another class's photos" in reasons["bags"] == reasons["up"] and "target is gone" in reasons["dangling"]
    counts = json.loads(invoke("status", "--state-dir", str(state), "--json")[1])["tasks"][0]
    assert counts["samples"] == 6 + 6 + 6  # sandal 6; bag 6 + cmyk, palette, alpha, 16-bit, large, nested webp


@pytest.mark.parametrize(
    "setup,words",
    [
        ("missing", "not found"),
        ("empty", "no class folders"),
        ("loose", "images lie at the top level"),
        ("collide", "name the same class"),
        ("noimages", "no images found"),
        ("allbad", "could be read"),
    ],
)
def test_bad_task_dirs_are_one_line_errors_and_create_nothing(
    state: Path, tmp_path: Path, setup: str, words: str
) -> None:
    task = tmp_path / "task"
    if setup != "missing":
        task.mkdir()
    if setup == "loose":
        Image.fromarray(fashion_images(0, 1)[0]).save(task / "a.png")
    if setup == "collide":
        write_task(task, {"t_shirt": 0, "T-Shirt": 0}, n=2)
    if setup == "noimages":
        (task / "cat").mkdir()
        (task / "cat" / "a.txt").write_text("x")
    if setup == "allbad":
        (task / "cat").mkdir()
        (task / "cat" / "a.jpg").write_bytes(b"\x00" * 10)
    code, out, err = invoke("learn", "--task-dir", str(task), "--budget", "64KB", "--backbone", "bundled",
                            "--state-dir", str(state))  # fmt: skip
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0], err
    assert not (state / "edgecl-state.json").exists()


@pytest.mark.parametrize("budget,words", [("8 MBB", "invalid budget"), ("-1MB", "more than 0"), ("100B", "minimum is")])
def test_bad_budgets(state: Path, tmp_path: Path, budget: str, words: str) -> None:
    task = write_task(tmp_path / "t", {"coat": 4}, n=3)
    code, _, err = invoke("learn", "--task-dir", str(task), "--budget", budget, "--backbone", "bundled",
                          "--state-dir", str(state))  # fmt: skip
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1
    assert not (state / "edgecl-state.json").exists()


def test_state_dir_that_cannot_be_written(tmp_path: Path, bundled_export: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    task = write_task(tmp_path / "t", {"coat": 4}, n=3)
    code, _, err = invoke("learn", "--task-dir", str(task), "--budget", "64KB", "--backbone", "bundled",
                          "--state-dir", str(blocker / "state"))  # fmt: skip
    assert code == 2 and "cannot write the state directory" in err


def test_second_writer_waits_then_fails_clearly(state: Path, tmp_path: Path) -> None:
    task = write_task(tmp_path / "t", {"coat": 4}, n=3)
    state.mkdir(parents=True)
    with open(state / "lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        start = time.monotonic()
        out = edgecl("learn", "--task-dir", str(task), "--budget", "64KB", "--backbone", "bundled",
                     "--state-dir", str(state), "--wait", "2")  # fmt: skip
        assert time.monotonic() - start >= 2
    assert out.returncode == 2 and "waiting for another edgecl process" in out.stderr
    assert "locked by another edgecl process" in out.stderr
    assert not (state / "edgecl-state.json").exists()


def test_classify_without_state_and_changed_model_files(tmp_path: Path, bundled_export: Path) -> None:
    code, _, err = invoke("classify", str(tmp_path), "--state-dir", str(tmp_path / "none"))
    assert code == 2 and "nothing learned yet" in err
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    one_class = write_task(tmp_path / "one", {"coat": 4}, n=2)
    for args in (("status",), ("classify", str(tmp_path)), ("learn", "--task-dir", str(one_class))):
        code, _, err = invoke(*args, "--state-dir", str(a_file))
        assert code == 2 and "is a file, not a state directory; pick another --state-dir" in err, (args, err)
    assert a_file.read_text() == "mine"
    import shutil

    model = tmp_path / "model"
    shutil.copytree(bundled_export, model)
    task = write_task(tmp_path / "t", {"coat": 4}, n=3)
    state = tmp_path / "state"
    assert invoke("learn", "--task-dir", str(task), "--budget", "64KB", "--backbone", "bundled",
                  "--state-dir", str(state))[0] == 0  # fmt: skip
    pointer = json.loads((state / "edgecl-state.json").read_text())
    meta_path = state / pointer["snapshot"] / "snapshot.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "model_dir": str(model)}))
    with open(model / "image.int8.onnx", "r+b") as fh:
        fh.seek(1000)
        fh.write(b"\x00\x01\x02")
    code, _, err = invoke("classify", str(task / "coat" / "0.png"), "--state-dir", str(state))
    assert code == 2 and "image.int8.onnx" in err and "sha256" in err


def _profile_with_cap(path: Path, cap_bytes: int) -> Path:
    text = (ROOT / "device_profiles" / "cpu.toml").read_text()
    text = re.sub(r'(?m)^ram_cap = ".*"$', f'ram_cap = "{cap_bytes}B"', text)
    text = re.sub(r'(?m)^default_backbone = ".*"$', 'default_backbone = "bundled"', text)
    path.write_text(text)
    return path


def test_learning_shrinks_batches_to_stay_under_the_ram_cap(tmp_path: Path, bundled_export: Path) -> None:
    """Fresh processes, as users run them: measure under a roomy cap, then learn again under a cap that leaves
    room for about five images per batch: batches shrink, the process peak stays under the cap, and the state
    works. A cap below what the models need fails cleanly and commits nothing."""
    from edgecl.ram import HEADROOM

    task = write_task(tmp_path / "task", {"coat": 4, "bag": 8}, n=40)
    roomy = edgecl("learn", "--task-dir", str(task), "--state-dir", str(tmp_path / "s1"), "--json",
                   "--profile-file", str(_profile_with_cap(tmp_path / "roomy.toml", 8 * 2**30)))  # fmt: skip
    assert roomy.returncode == 0, roomy.stderr
    encode = json.loads(roomy.stdout)["batches"]["encode"]
    assert not encode["limited_by_ram_cap"] and 16 in encode["sizes_used"] and encode["bytes_per_item"] > 0

    cap = int((encode["start_rss_bytes"] + 5 * encode["bytes_per_item"]) / HEADROOM)
    tight = edgecl("learn", "--task-dir", str(task), "--state-dir", str(tmp_path / "s2"), "--json",
                   "--profile-file", str(_profile_with_cap(tmp_path / "tight.toml", cap)))  # fmt: skip
    assert tight.returncode == 0, tight.stderr
    report = json.loads(tight.stdout)
    assert report["batches"]["encode"]["limited_by_ram_cap"]
    assert max(report["batches"]["encode"]["sizes_used"]) < 16
    assert report["peak_rss_bytes"] <= report["ram_cap_bytes"] == cap
    assert report["samples_stored"] == 80
    classified = edgecl("classify", str(task / "bag" / "0.png"), "--state-dir", str(tmp_path / "s2"), "--json")
    assert classified.returncode == 0, classified.stderr

    too_small = edgecl("learn", "--task-dir", str(task), "--state-dir", str(tmp_path / "s3"),
                       "--profile-file", str(_profile_with_cap(tmp_path / "small.toml", 200 * 2**20)))  # fmt: skip
    assert too_small.returncode == 2
    assert "RAM cap is 200 MiB" in too_small.stderr and len(too_small.stderr.strip().splitlines()) == 1
    assert "nothing learned yet" in edgecl("status", "--state-dir", str(tmp_path / "s3")).stderr


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_end_to_end_through_the_cli(method: str, tmp_path: Path, bundled_export: Path) -> None:
    """learn -> classify -> status -> learn again -> forget -> classify; for the default method and a method without
    training, the first learn and classify in fresh processes, whose stderr must stay empty on success (no
    third-party warnings, no notices: the backbone is given); the rest through the Typer app in this process."""
    state = tmp_path / "state"
    task1 = write_task(tmp_path / "t1", {"trouser": 1, "bag": 8}, n=8)
    task2 = write_task(tmp_path / "t2", {"sneaker": 7}, n=8)
    image = str(task1 / "trouser" / "0.png")
    steps = [("learn", "--task-dir", str(task1), "--budget", "64KB", "--backbone", "bundled", "--method", method),
             ("classify", image), ("status",), ("learn", "--task-dir", str(task2)), ("forget", "bag"),
             ("classify", image)]  # fmt: skip
    outputs = []
    for i, step in enumerate(steps):
        if i < 2 and method in (DEFAULT_METHOD, "ncm"):  # fresh processes cost ~4 s each: two methods show it
            out = edgecl(*step, "--state-dir", str(state), "--json")
            assert out.returncode == 0 and out.stderr == "", (step, out.stderr)
            outputs.append(json.loads(out.stdout))
        else:
            code, stdout, stderr = invoke(*step, "--state-dir", str(state), "--json")
            assert code == 0, (step, stderr)
            outputs.append(json.loads(stdout))
    assert outputs[2]["method"] == method and outputs[3]["classes"] == ["bag", "trouser", "sneaker"]
    assert {p["label"] for p in outputs[5][0]["predictions"]} == {"trouser", "sneaker"}


def test_same_profile_file_twice_is_accepted_and_a_different_one_named(tmp_path: Path, bundled_export: Path) -> None:
    state, task = tmp_path / "state", write_task(tmp_path / "t", {"coat": 4}, n=4)
    mine = _profile_with_cap(tmp_path / "mine.toml", 8 * 2**30)
    for _ in range(2):
        code, _, err = invoke("learn", "--task-dir", str(task), "--backbone", "bundled", "--profile-file", str(mine),
                              "--state-dir", str(state))  # fmt: skip
        assert code == 0, err
    other = _profile_with_cap(tmp_path / "other.toml", 4 * 2**30)
    code, _, err = invoke("learn", "--task-dir", str(task), "--profile-file", str(other), "--state-dir", str(state))
    assert code == 2 and "differs in ram_cap" in err and len(err.strip().splitlines()) == 1


def test_a_named_pipe_is_skipped_and_never_blocks(state: Path, tmp_path: Path) -> None:
    task = write_task(tmp_path / "t", {"coat": 4, "shirt": 6}, n=4)
    os.mkfifo(task / "coat" / "pipe.png")
    out = edgecl("learn", "--task-dir", str(task), "--budget", "64KB", "--backbone", "bundled", "--state-dir",
                 str(state), "--json", timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    (skipped,) = json.loads(out.stdout)["skipped"]
    assert skipped["path"].endswith("pipe.png") and "named pipe" in skipped["reason"]
    out = edgecl("classify", str(task / "coat" / "pipe.png"), "--state-dir", str(state), timeout=60)
    assert out.returncode == 2 and "named pipe" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_default_backbone_offline_is_bundled_with_one_notice(tmp_path: Path, bundled_export: Path) -> None:
    """The README's headline command with the hub unreachable (HF_HUB_OFFLINE=1, no cached CLIP weights)."""
    task = write_task(tmp_path / "new_photos", {"coat": 4, "bag": 8}, n=6)
    out = edgecl("learn", "--task-dir", str(task), "--budget", "8MB", "--state-dir", str(tmp_path / "s"), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["backbone"] == "bundled"
    assert out.stderr.strip().startswith("notice:") and "bundled" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert edgecl("classify", str(task / "coat" / "0.png"), "--state-dir", str(tmp_path / "s")).returncode == 0


@pytest.mark.parametrize("codec", ["fp16", "int8", "int4", "pq"])
def test_every_codec_end_to_end_through_the_cli(codec: str, state: Path, tmp_path: Path) -> None:
    """learn -> classify -> status -> learn again -> forget -> classify with each fixed memory codec."""
    task1 = write_task(tmp_path / "t1", {"trouser": 1, "bag": 8}, n=6)
    task2 = write_task(tmp_path / "t2", {"sneaker": 7}, n=6)
    image = str(task1 / "trouser" / "0.png")
    steps = [("learn", "--task-dir", str(task1), "--budget", "32KB", "--backbone", "bundled", "--codec", codec),
             ("classify", image), ("status",), ("learn", "--task-dir", str(task2)), ("forget", "bag"),
             ("classify", image), ("status",)]  # fmt: skip
    outputs = []
    for step in steps:
        code, stdout, stderr = invoke(*step, "--state-dir", str(state), "--json")
        assert code == 0, (step, stderr)
        outputs.append(json.loads(stdout))
    assert outputs[0]["codec"] == outputs[2]["memory"]["codec"] == outputs[6]["memory"]["codec"] == codec
    assert outputs[3]["memory_bytes"] <= 32_000 and outputs[6]["memory"]["per_class"].keys() == {"trouser", "sneaker"}
    assert {p["label"] for p in outputs[5][0]["predictions"]} == {"trouser", "sneaker"}


def test_later_learns_keep_their_settings_and_seeds_reproduce(state: Path, tmp_path: Path) -> None:
    task = write_task(tmp_path / "t", {"coat": 4, "bag": 8}, n=6)
    first = ["learn", "--task-dir", str(task), "--budget", "32KB", "--backbone", "bundled", "--seed", "3", "--json",
             "--method", "gdro"]  # fmt: skip  # a method that reports its class weights
    code, out, err = invoke(*first, "--state-dir", str(state))
    assert code == 0, err
    report = json.loads(out)
    assert report["method"] == "gdro" and report["groups"] == "class_domain" and report["train_precision"] == "fp32"
    assert report["loss"] and set(report["class_weights"]) == {"coat", "bag"}
    assert sum(report["class_weights"].values()) == pytest.approx(1, abs=1e-3)
    for flag, value, words in (
        ("--method", "er", "--method gdro"),
        ("--codec", "int8", "codec is auto (now "),
        ("--budget", "64KB", "budget of 32.00 KB; omit --budget, or change it with `edgecl memory"),
        ("--groups", "class", "--groups class_domain"),
    ):
        code, _, err = invoke("learn", "--task-dir", str(task), flag, value, "--state-dir", str(state))
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, (flag, err)  # fmt: skip
    code, _, err = invoke(*first, "--state-dir", str(tmp_path / "again"))
    assert code == 0, err
    probe = [str(task / "coat" / "0.png"), str(task / "bag" / "1.png")]
    same = [invoke("classify", *probe, "--state-dir", str(s), "--json")[1] for s in (state, tmp_path / "again")]
    assert same[0] == same[1]  # same images, same seed: the same scores

    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    code, out, err = invoke("classify", probe[0], str(tmp_path / "broken.png"), "--labels", "bicycle", "--top-k", "9",
                            "--state-dir", str(state), "--json")  # fmt: skip
    assert code == 0 and "broken.png" in err and "warning" in err.lower()
    (result,) = json.loads(out)
    assert {p["label"] for p in result["predictions"]} == {"coat", "bag", "bicycle"}


def test_plain_text_output_of_every_state_command(state: Path, tmp_path: Path) -> None:
    task = write_task(tmp_path / "t", {"coat": 4, "bag": 8}, n=4)
    code, out, err = invoke("learn", "--task-dir", str(task), "--budget", "32KB", "--backbone", "bundled",
                            "--state-dir", str(state))  # fmt: skip
    assert code == 0 and out.startswith("learned 2 new classes (bag, coat); 2 classes in all"), (out, err)
    assert "memory: " in out and "KB" in out
    code, out, _ = invoke("classify", str(task / "bag" / "0.png"), "--state-dir", str(state))
    assert code == 0 and "bag" in out and "coat" in out
    code, out, _ = invoke("status", "--state-dir", str(state))
    assert code == 0 and "backbone bundled" in out and f"method {DEFAULT_METHOD}" in out and "coat" in out
    code, out, _ = invoke("forget", "coat", "--state-dir", str(state))
    assert code == 0 and "coat" in out
