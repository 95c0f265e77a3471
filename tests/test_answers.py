"""Answers a device can act on: the label / unknown / confidence contract, extra labels on the same scale as the
learned classes, unknown for images unlike anything learned, a calibrated confidence, and the learn validation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgecl.bench.metrics import expected_calibration_error
from edgecl.errors import EdgeclError
from edgecl.learn.calibration import DEFAULT_MIN_CONFIDENCE, Calibration, loo_cosines
from edgecl.learn.configs import TrainSchedule
from edgecl.learner import Learner
from edgecl.learner_config import LearnerConfig
from edgecl.memory import MemoryConfig
from tests.test_cli_learn import edgecl, invoke, write_task

DIM = 32
ANSWER_KEYS = {"image", "label", "unknown", "confidence", "predictions"}


def _clusters(seed: int, n_classes: int, per_class: int, spread: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Unit class centres (n_classes, DIM) and rows (n_classes * per_class, DIM) around them."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_classes, DIM))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    noise = spread / np.sqrt(DIM) * rng.standard_normal((n_classes * per_class, DIM))
    rows = np.repeat(centres, per_class, axis=0) + noise
    return centres.astype(np.float32), (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def _learned(method: str, per_class: int = 30) -> tuple[Learner, np.ndarray, np.ndarray]:
    """A learner that learned classes c0..c3 (two tasks) from rows around 6 centres; its text rows point at the
    centres. Returns it, the 6 centres (c4, c5 never learned) and held-out rows (6 * 40, in class order)."""
    centres, train = _clusters(0, 6, per_class)
    _, test = _clusters(0, 6, 40 + per_class)
    test = test.reshape(6, 40 + per_class, DIM)[:, per_class:].reshape(-1, DIM)  # rows the learner never saw
    cfg = LearnerConfig(method=method, memory=MemoryConfig(64_000), train=TrainSchedule(epochs=2))
    learner = Learner(cfg, DIM)
    text = {f"c{i}": centres[i] for i in range(6)}
    for classes in ((0, 1), (2, 3)):
        rows = np.concatenate([train[c * per_class : (c + 1) * per_class] for c in classes])
        learner.learn_embeddings(rows, [f"c{c}" for c in classes for _ in range(per_class)], text=text)
    return learner, centres, test


@pytest.mark.parametrize("method", ["gdro", "ncm", "zeroshot", "finetune"])
def test_every_method_answers_with_label_unknown_and_confidence(method: str) -> None:
    learner, _, test = _learned(method)
    far = _clusters(9, 1, 50, spread=2.0)[1]  # nothing like any learned class
    known = learner.classify_embeddings(test[: 4 * 40], top_k=2)
    assert all(set(a) == {"label", "unknown", "confidence", "predictions"} for a in known)
    assert all(len(a["predictions"]) == 2 and 0 <= a["confidence"] <= 1 for a in known)
    assert all(a["label"] == (None if a["unknown"] else a["predictions"][0]["label"]) for a in known)
    assert all(a["confidence"] == a["predictions"][0]["probability"] for a in known)
    accepted = [a for a in known if not a["unknown"]]
    assert len(accepted) >= 0.85 * len(known)  # the default threshold keeps most known images
    truth = [f"c{c}" for c in range(4) for _ in range(40)]
    hits = [a["label"] == t for a, t in zip(known, truth, strict=True) if not a["unknown"]]
    assert np.mean(hits) >= 0.9
    unknown = learner.classify_embeddings(far, top_k=1)
    assert np.mean([a["unknown"] for a in unknown]) >= 0.9, method
    everything = learner.classify_embeddings(far, top_k=1, min_confidence=0.0)
    assert not any(a["unknown"] for a in everything)  # 0 turns rejection off


def test_an_extra_label_wins_on_its_own_images_and_costs_the_learned_classes_little() -> None:
    learner, centres, test = _learned("gdro")
    extra_text = {"c4": centres[4], "c5": centres[5]}
    x4, known = test[4 * 40 : 5 * 40], test[: 4 * 40]
    with_labels = learner.classify_embeddings(x4, top_k=2, extra_labels=["c4", "c5"], extra_text=extra_text)
    assert len(with_labels[0]["predictions"]) == 2 < len(learner.classes) + 2  # top-k below the candidates
    assert np.mean([a["label"] == "c4" for a in with_labels]) >= 0.9
    truth = [f"c{c}" for c in range(4) for _ in range(40)]
    plain = learner.classify_embeddings(known, top_k=1)
    given = learner.classify_embeddings(known, top_k=1, extra_labels=["c4", "c5"], extra_text=extra_text)
    accuracy = [np.mean([a["predictions"][0]["label"] == t for a, t in zip(r, truth, strict=True)])
                for r in (plain, given)]  # fmt: skip
    assert accuracy[1] >= accuracy[0] - 0.02


def test_confidence_is_calibrated_on_held_out_rows() -> None:
    """Rows near the boundary of two overlapping classes: the confidence must match how often the answer is right
    (expected calibration error), where the old softmax at the training temperature did not."""
    rng = np.random.default_rng(3)
    centres, _ = _clusters(5, 4, 1)
    def rows(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 4, n)
        x = centres[y] + 3.5 / np.sqrt(DIM) * rng.standard_normal((n, DIM))
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), y

    x, y = rows(240)
    learner = Learner(LearnerConfig(method="ncm", memory=MemoryConfig(64_000)), DIM)
    learner.learn_embeddings(x, [f"c{c}" for c in y], text={f"c{i}": centres[i] for i in range(4)})
    test_x, test_y = rows(800)
    answers = learner.classify_embeddings(test_x, top_k=1, min_confidence=0.0)
    confidence = np.array([a["confidence"] for a in answers])
    correct = np.array([a["label"] == f"c{c}" for a, c in zip(answers, test_y, strict=True)])
    assert 0.4 < correct.mean() < 0.95  # the classes overlap: the confidence has something to say
    assert expected_calibration_error(confidence, correct) <= 0.08


def test_familiarity_statistics_merge_like_one_pass_and_forget_drops_the_class() -> None:
    rng = np.random.default_rng(0)
    cos, y = rng.uniform(0.5, 0.9, 60), rng.integers(0, 3, 60)
    once = Calibration.empty().updated(cos, y, 3)
    twice = Calibration.empty().updated(cos[:25], y[:25], 3).updated(cos[25:], y[25:], 3)
    np.testing.assert_allclose(twice.mean, once.mean)
    np.testing.assert_allclose(twice.var, once.var)
    np.testing.assert_allclose(once.var, [cos[y == c].var() for c in range(3)])
    assert list(once.without(1).counts) == [int((y == 0).sum()), int((y == 2).sum())]
    x = rng.standard_normal((5, 4))
    mean = x.mean(0, keepdims=True)
    loo = loo_cosines(x, np.zeros(5, np.int64), mean, np.array([5]))
    others = np.array([np.delete(x, i, 0).mean(0) for i in range(5)])
    expected = (x * others).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(others, axis=1)
    np.testing.assert_allclose(loo, expected, rtol=1e-6)


def test_a_saved_state_answers_the_same_after_loading(tmp_path: Path) -> None:
    learner, _, test = _learned("gdro")
    learner.save_to(tmp_path / "s")
    loaded = Learner.load_from(tmp_path / "s")
    assert loaded.classify_embeddings(test, top_k=3) == learner.classify_embeddings(test, top_k=3)
    learner.forget_class("c1")
    assert len(learner.state.calibration.counts) == 3 and learner.classify_embeddings(test[:5], top_k=1)


def test_learn_validation_names_the_weak_classes() -> None:
    centres, _ = _clusters(2, 3, 1)
    rng = np.random.default_rng(1)
    near = (centres[0] + centres[1]) / 2  # c0 and c1 overlap; c2 stands apart
    x = np.concatenate([near + 0.6 / np.sqrt(DIM) * rng.standard_normal((20, DIM)) for _ in range(2)]
                       + [centres[2] + 0.3 / np.sqrt(DIM) * rng.standard_normal((20, DIM))])  # fmt: skip
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    names = ["c0"] * 20 + ["c1"] * 20 + ["c2"] * 20
    report = Learner(LearnerConfig(method="ncm", memory=MemoryConfig(64_000)), DIM).learn_embeddings(
        x, names, text={f"c{i}": centres[i] for i in range(3)})  # fmt: skip
    per_class = report.validation["per_class"]
    assert per_class["c2"]["accuracy"] == 1.0 and per_class["c2"]["images"] == 20
    assert per_class["c0"]["accuracy"] < 0.8 and per_class["c0"]["confused_with"] == "c1"
    assert any(h.startswith("c0:") and "20 photos given" in h for h in report.validation["hints"])
    assert not any(h.startswith("c2:") for h in report.validation["hints"])


def test_a_digit_in_a_fashion_state_is_unknown_through_the_cli(tmp_path: Path, bundled_export: Path) -> None:
    from edgecl.datasets import mnist

    state = tmp_path / "state"
    task = write_task(tmp_path / "t", {"trouser": 1, "bag": 8, "sneaker": 7}, n=25)
    code, out, err = invoke("learn", "--task-dir", str(task), "--budget", "64KB", "--backbone", "bundled",
                            "--state-dir", str(state), "--json")  # fmt: skip
    assert code == 0, err
    validation = json.loads(out)["validation"]
    assert set(validation["per_class"]) == {"trouser", "bag", "sneaker"} and validation["estimate"] == "leave-one-out"
    digits, _ = mnist("test")
    (tmp_path / "digits").mkdir()
    for i in range(12):
        Image.fromarray(digits[i]).save(tmp_path / "digits" / f"{i}.png")
    held_out = write_task(tmp_path / "known", {"trouser": 1, "bag": 8, "sneaker": 7}, n=8, offset=200)
    code, out, err = invoke("classify", str(tmp_path / "digits"), str(held_out), "--top-k", "2",
                            "--state-dir", str(state), "--json")  # fmt: skip
    assert code == 0, err
    results = json.loads(out)
    assert all(set(r) == ANSWER_KEYS and len(r["predictions"]) == 2 for r in results)
    digits_out = [r for r in results if "/digits/" in r["image"]]
    known_out = [r for r in results if "/known/" in r["image"]]
    assert np.mean([r["unknown"] and r["label"] is None for r in digits_out]) >= 0.9
    assert np.mean([Path(r["image"]).parent.name == r["label"] for r in known_out]) >= 0.8
    code, out, _ = invoke("classify", str(tmp_path / "digits" / "0.png"), "--state-dir", str(state))
    assert code == 0 and "unknown (closest: " in out
    code, out, _ = invoke("classify", str(tmp_path / "digits" / "0.png"), "--min-confidence", "0", "--json",
                          "--state-dir", str(state))  # fmt: skip
    assert code == 0 and json.loads(out)[0]["unknown"] is False
    code, _, err = invoke("classify", str(tmp_path / "digits" / "0.png"), "--min-confidence", "1.5",
                          "--state-dir", str(state))  # fmt: skip
    assert code == 2 and "min-confidence" in err


def test_min_confidence_out_of_range_is_refused_before_any_work(tmp_path: Path) -> None:
    from edgecl.commands import classify

    with pytest.raises(EdgeclError, match="--min-confidence must be from 0 to 1"):
        classify(["x.png"], str(tmp_path / "none"), min_confidence=-0.1)
    assert 0 < DEFAULT_MIN_CONFIDENCE < 1


def test_a_state_saved_before_calibration_answers_known_images_after_its_next_learn(tmp_path: Path) -> None:
    """An ncm state from before every method kept class means (no class means, no calibration in learned.npz):
    its class means come back from its memory rows, so old classes are neither unknown nor mis-calibrated."""
    learner, centres, test = _learned("ncm")
    learner.save_to(tmp_path / "s")
    with np.load(tmp_path / "s" / "learned.npz") as data:
        old = {k: data[k] for k in data.files if not k.startswith(("class_mean", "class_count", "calibration"))}
    np.savez(tmp_path / "s" / "learned.npz", **old)
    loaded = Learner.load_from(tmp_path / "s")
    assert len(loaded.state.class_means.counts) == 4
    _, rows = _clusters(0, 6, 30)
    loaded.learn_embeddings(rows[4 * 30 : 5 * 30], ["c4"] * 30, text={"c4": centres[4]})
    answers = loaded.classify_embeddings(test[: 4 * 40], top_k=1)
    assert np.mean([not a["unknown"] for a in answers]) >= 0.85


def test_the_open_set_bench_writes_its_report_and_plots(tmp_path: Path, bundled_export: Path) -> None:
    from edgecl.bench.open_set import OpenSetSuite, run_open_set

    suite = OpenSetSuite((("fashion-mnist", "mnist"),), (10,), ("64KB",), 1, test_per_class=20, far_per_class=20,
                         pool_per_class=12)  # fmt: skip
    results = run_open_set(suite, tmp_path / "out")
    (run,) = results["runs"]
    assert 0.5 < run["confidence"]["auroc_far"] <= 1 and 0 <= run["at_threshold"]["ece"] <= 1
    assert set(run["labels"]) == {"extra_answer", "extra_top", "zero_shot", "known_accuracy",
                                  "known_accuracy_with_labels"}  # fmt: skip
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"results.json", "report.md", "summary.md", "roc.png",
                                                             "reliability.png"}  # fmt: skip
    assert "AUROC near / far" in (tmp_path / "out" / "report.md").read_text()
    # the per-pair summary that docs/answers.md includes: one run here, so the pair's row is that run's figures
    summary = (tmp_path / "out" / "summary.md").read_text()
    auroc = f"| fashion-mnist vs mnist | {run['confidence']['auroc_near']:.2f} / {run['confidence']['auroc_far']:.2f} |"
    kept = f"| fashion-mnist vs mnist | {100 * run['at_threshold']['known_accepted']:.1f} |"
    assert auroc in summary and kept in summary, summary


def test_out_of_range_seed_wait_and_profile_values_are_refused_before_any_work(tmp_path: Path) -> None:
    """Issue 25's (seen) items: one `error:` line, exit 2, nothing created."""
    task = write_task(tmp_path / "t", {"bag": 8}, n=2)
    state = tmp_path / "state"
    for flag, value in (("--seed", "-1"), ("--wait", "-1")):
        result = edgecl("learn", "--task-dir", str(task), flag, value, "--state-dir", str(state))
        err = result.stderr
        assert result.returncode == 2 and flag in err and len(err.strip().splitlines()) == 1, (flag, err)
    cpu = (Path(__file__).resolve().parents[1] / "device_profiles" / "cpu.toml").read_text()
    for key, bad in (("train_batch", "1"), ("adapter_rank", "5000")):
        profile = tmp_path / f"{key}.toml"
        profile.write_text("\n".join(f"{key} = {bad}" if line.startswith(f"{key} =") else line
                                     for line in cpu.splitlines()))  # fmt: skip
        code, _, err = invoke("learn", "--task-dir", str(task), "--profile-file", str(profile), "--state-dir",
                              str(state))  # fmt: skip
        assert code == 2 and key in err and "error:" in err and len(err.strip().splitlines()) == 1, (key, err)
    assert not state.exists()
    code, out, _ = invoke("--version")
    assert code == 0 and out.startswith("edgecl ")


def test_a_later_learn_refuses_another_seed(tmp_path: Path, bundled_export: Path) -> None:
    task = write_task(tmp_path / "t", {"bag": 8}, n=4)
    state = str(tmp_path / "state")
    code, _, err = invoke("learn", "--task-dir", str(task), "--budget", "32KB", "--backbone", "bundled", "--seed",
                          "3", "--state-dir", state)  # fmt: skip
    assert code == 0, err
    code, _, err = invoke("learn", "--task-dir", str(task), "--seed", "4", "--state-dir", state)
    assert code == 2 and "--seed 3" in err
    code, _, err = invoke("learn", "--task-dir", str(task), "--seed", "3", "--state-dir", state)
    assert code == 0, err


def test_a_missing_path_is_skipped_and_said_and_the_cli_says_things_once(tmp_path: Path, bundled_export: Path) -> None:
    """Issue 25's (seen) items: one missing path no longer aborts the batch (the others are answered, exit 1);
    "Did you mean" once; no blank line opening a learn's stderr on a non-terminal."""
    task = write_task(tmp_path / "t", {"bag": 8, "trouser": 1}, n=4)
    state = str(tmp_path / "state")
    learned = edgecl("learn", "--task-dir", str(task), "--budget", "32KB", "--backbone", "bundled", "--state-dir",
                     state)  # fmt: skip
    assert learned.returncode == 0 and not learned.stderr.startswith("\n"), learned.stderr
    image = str(task / "bag" / "0.png")
    result = edgecl("classify", image, str(tmp_path / "nope.png"), "--json", "--state-dir", state)
    assert result.returncode == 1
    (answer,) = json.loads(result.stdout)
    assert answer["image"].endswith("bag/0.png") and answer["label"] == "bag"
    assert "nope.png: no such file or folder" in result.stderr and result.stderr.count("\n") == 1
    alone = edgecl("classify", str(tmp_path / "nope.png"), "--state-dir", state)
    assert alone.returncode == 2 and "nope.png: no such file or folder" in alone.stderr
    typo = edgecl("lern")
    assert typo.returncode == 2 and typo.stderr.count("Did you mean 'learn'?") == 1


def test_damaged_state_arrays_are_one_line_errors_and_a_falling_negative_loss_is_not_divergence(
        tmp_path: Path) -> None:  # fmt: skip
    """Issue 25: a damaged learned.npz / estimators.npz is an error naming the file, not a BadZipFile traceback;
    GCL/GDRO losses fall below zero, which is not divergence (a rise is)."""
    from edgecl.learn.trainer import TrainingDivergedError, _check_divergence

    learner, _, _ = _learned("ncm")
    for name in ("learned.npz", "estimators.npz"):
        folder = tmp_path / name
        learner.save_to(folder)
        (folder / name).write_bytes(b"PK\x03\x04 truncated")
        with pytest.raises(EdgeclError, match=f"{name}: damaged or missing state file"):
            Learner.load_from(folder)
        (folder / name).unlink()
        with pytest.raises(EdgeclError, match=f"{name}: damaged or missing"):
            Learner.load_from(folder)
    cfg = type("Cfg", (), {"method": "gdro"})()
    _check_divergence([0.5, -0.2, -800.0], cfg)  # falling far below zero: fine
    with pytest.raises(TrainingDivergedError):
        _check_divergence([0.5, 0.7, 900.0], cfg)


def test_label_prompts_read_folder_names_as_the_learner_does(tiny_export: Path) -> None:
    from edgecl.encoder import Encoder

    encoder = Encoder(tiny_export)
    expected = encoder.encode_texts(["a photo of a ankle boot.", "a photo of a t shirt."])
    np.testing.assert_allclose(encoder.encode_labels(["ankle_boot", "t-shirt"]), expected, atol=1e-6)


@pytest.mark.parametrize("method", ["zeroshot", "finetune"])
def test_status_lists_the_domains_of_methods_without_memory(method: str, tmp_path: Path, bundled_export: Path) -> None:
    task = write_task(tmp_path / "t", {"bag": 8, "coat": 4}, n=3)
    state = str(tmp_path / "state")
    for domain in ("studio", "street"):
        code, _, err = invoke("learn", "--task-dir", str(task), "--domain", domain, "--method", method, "--budget",
                              "32KB", "--backbone", "bundled", "--state-dir", state)  # fmt: skip
        assert code == 0, err
    code, out, _ = invoke("status", "--json", "--state-dir", state)
    assert code == 0 and json.loads(out)["domains"] == ["studio", "street"]


def test_status_says_the_unnamed_domain_beside_the_named_ones(tmp_path: Path, bundled_export: Path) -> None:
    """A state that learned a task without --domain and then one with it: the status line names both, in the order
    learned (the JSON's `domains` lists the named ones; each task carries its own `domain`)."""
    task = write_task(tmp_path / "t", {"bag": 8, "coat": 4}, n=3)
    state = str(tmp_path / "state")
    for extra in ((), ("--domain", "night")):
        code, _, err = invoke("learn", "--task-dir", str(task), *extra, "--method", "ncm", "--budget", "32KB",
                              "--backbone", "bundled", "--state-dir", state)  # fmt: skip
        assert code == 0, err
    code, out, _ = invoke("status", "--state-dir", state)
    assert code == 0 and "domains: (none: tasks without --domain), night\n" in out, out
    code, out, _ = invoke("status", "--json", "--state-dir", state)
    assert code == 0 and json.loads(out)["domains"] == ["night"]
