"""`edgecl bench --suite open-set`: can the answers be trusted? A state learns some classes of one data set; it is
then shown held-out images of those classes (known), of the data set's other classes (near) and of another data
set (far). Side by side: the product's `confidence`, the old softmax probability (MSP), the best class-mean cosine,
the mean cosine of the 5 nearest memory rows and the energy score, as AUROC and FPR at 95% TPR; the product at its
default threshold (known images kept, unknowns rejected, accuracy on what it accepts, calibration error); and
`--labels` with the unlearned classes' names against zero-shot among the same names."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecl.bench.metrics import auroc, expected_calibration_error, fpr_at_tpr, reliability
from edgecl.learn.calibration import DEFAULT_MIN_CONFIDENCE, softmax
from edgecl.learn.methods import DEFAULT_METHOD
from edgecl.learned import scoring
from edgecl.units import parse_bytes
from edgecl.vectors import unit_rows

SCORES = ("confidence", "msp", "class_mean", "knn5", "energy")
SCORE_TITLES = {"confidence": "confidence", "msp": "old probability (MSP)", "class_mean": "max class-mean cosine",
                "knn5": "5-NN memory rows", "energy": "energy"}  # fmt: skip
MSP_TEMPERATURE = 0.05  # what `probability` was before confidence: the heads' training temperature


@dataclass(frozen=True)
class OpenSetSuite:
    pairs: tuple[tuple[str, str], ...]  # (data set whose classes are learned, the far data set)
    per_class: tuple[int, ...]  # training images per learned class
    budgets: tuple[str, ...]
    seeds: int
    learned_classes: int = 6  # of the data set's 10; the other 4 are the near unknowns
    classes_per_task: int = 2
    method: str = DEFAULT_METHOD
    test_per_class: int = 150
    far_per_class: int = 100
    min_confidence: float = DEFAULT_MIN_CONFIDENCE
    pool_per_class: int = 100  # training images per class embedded; each run draws its per_class from these


OPEN_SET_SUITES = {
    "open-set": OpenSetSuite((("fashion-mnist", "mnist"), ("fashion-mnist", "optdigits"), ("mnist", "fashion-mnist")),
                             (10, 25, 100), ("16KB", "64KB", "1MB"), 3),
}  # fmt: skip


@dataclass(frozen=True)
class DataSet:
    """Embedded images and text of one data set: train pool, test split, class names and their text rows."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    labels: tuple[str, ...]
    text: np.ndarray


def load_data_sets(names: set[str], embed: Any, encoder: Any, test_per_class: int,
                   pool_per_class: int = 100) -> dict[str, DataSet]:  # fmt: skip
    """The named data sets, embedded (cached by the Embedder)."""
    from edgecl.datasets import DIGIT_CLASSES, FASHION_MNIST_CLASSES, fashion_mnist, mnist, optdigits
    from edgecl.prompts import prompt_for

    table = {"fashion-mnist": (fashion_mnist, FASHION_MNIST_CLASSES), "mnist": (mnist, DIGIT_CLASSES),
             "optdigits": (optdigits, DIGIT_CLASSES)}  # fmt: skip
    out = {}
    for name in sorted(names):
        loader, labels = table[name]
        (tr_x, tr_y), (te_x, te_y) = loader("train"), loader("test")
        tr = np.concatenate([np.flatnonzero(tr_y == c)[:pool_per_class] for c in range(10)])
        te = np.concatenate([np.flatnonzero(te_y == c)[:test_per_class] for c in range(10)])
        text = encoder.encode_texts([prompt_for(label) for label in labels])
        out[name] = DataSet(embed(tr_x[tr]), tr_y[tr], embed(te_x[te]), te_y[te], labels, text)
    return out


def run_open_set(suite: OpenSetSuite, out_dir: Path, name: str = "open-set",
                 progress: Callable[[str, int, int], None] = lambda s, d, t: None) -> dict[str, Any]:  # fmt: skip
    """Every (pair, images per class, budget, seed) with the bundled backbone; writes results.json, report.md,
    summary.md, roc.png and reliability.png into out_dir."""
    from edgecl.bench.open_set_report import write_open_set_report
    from edgecl.bench.streams import Embedder
    from edgecl.encoder import Encoder
    from edgecl.model_dir import ensure_model

    start = time.perf_counter()
    encoder = Encoder(ensure_model("bundled", None, lambda m: progress(m, 0, 0)).root)
    progress("embedding data sets (cached after the first run)", 0, 0)
    data = load_data_sets({n for pair in suite.pairs for n in pair}, Embedder(encoder), encoder, suite.test_per_class,
                          suite.pool_per_class)  # fmt: skip
    jobs = list(itertools.product(suite.pairs, suite.per_class, suite.budgets, range(suite.seeds)))
    runs = []
    for i, ((known, far), per_class, budget, seed) in enumerate(jobs):
        run = run_one(suite, data[known], data[far], per_class, parse_bytes(budget), seed)
        runs.append({"known": known, "far": far, "per_class": per_class, "budget": budget, "seed": seed, **run})
        progress(f"{known} vs {far}, {per_class}/class, {budget}, seed {seed}", i + 1, len(jobs))
    results = {"suite": name, "config": asdict(suite), "backbone": "bundled", "runs": runs,
               "seconds": round(time.perf_counter() - start, 1)}  # fmt: skip
    write_open_set_report(results, out_dir)
    return results


def _learn(suite: OpenSetSuite, data: DataSet, learned: np.ndarray, per_class: int, budget: int, seed: int) -> Any:
    """A learner that learned `learned` classes in tasks of suite.classes_per_task, per_class images each."""
    from edgecl.learner import Learner
    from edgecl.learner_config import LearnerConfig

    learner = Learner(LearnerConfig.from_flat({"method": suite.method, "budget_bytes": budget, "seed": seed}),
                      data.train_x.shape[1])  # fmt: skip
    rng = np.random.default_rng(seed)
    for t in range(0, len(learned), suite.classes_per_task):
        classes = learned[t : t + suite.classes_per_task]
        rows = np.concatenate([rng.choice(np.flatnonzero(data.train_y == c), per_class, replace=False)
                               for c in classes])  # fmt: skip
        learner.learn_embeddings(data.train_x[rows], [data.labels[c] for c in data.train_y[rows]], None,
                                 {data.labels[c]: data.text[c] for c in classes})  # fmt: skip
    return learner


def run_one(suite: OpenSetSuite, data: DataSet, far: DataSet, per_class: int, budget: int,
            seed: int) -> dict[str, Any]:  # fmt: skip
    """One state, its scores on known / near / far images, and the product's answers."""
    order = np.random.default_rng(1000 + seed).permutation(10)
    learned, near = order[: suite.learned_classes], order[suite.learned_classes :]
    learner = _learn(suite, data, learned, per_class, budget, seed)
    known_rows, near_rows = np.isin(data.test_y, learned), np.isin(data.test_y, near)
    far_rows = np.concatenate([np.flatnonzero(far.test_y == c)[: suite.far_per_class] for c in range(10)])
    sets = {"known": data.test_x[known_rows], "near": data.test_x[near_rows], "far": far.test_x[far_rows]}
    truth = [data.labels[c] for c in data.test_y[known_rows]]
    scored = {k: _scores(learner, x, suite.min_confidence) for k, x in sets.items()}
    run: dict[str, Any] = {}
    for score in SCORES:
        k = scored["known"][score]
        run[score] = {f"{metric}_{kind}": fn(k, scored[kind][score]) for kind in ("near", "far")
                      for metric, fn in (("auroc", auroc), ("fpr95", fpr_at_tpr))}  # fmt: skip
    answers = scored["known"]["answers"]
    correct = np.array([a.predictions[0]["label"] == t for a, t in zip(answers, truth, strict=True)])
    accepted = ~np.array([a.unknown for a in answers])
    confidence = scored["known"]["confidence"]
    run["at_threshold"] = {
        "known_accepted": float(accepted.mean()),
        "near_rejected": float(np.mean([a.unknown for a in scored["near"]["answers"]])),
        "far_rejected": float(np.mean([a.unknown for a in scored["far"]["answers"]])),
        "accuracy": float(correct.mean()),
        "accepted_accuracy": float(correct[accepted].mean()) if accepted.any() else 0.0,
        "ece": expected_calibration_error(confidence, correct), "ece_msp": expected_calibration_error(
            scored["known"]["msp"], correct)}  # fmt: skip
    run["reliability"] = reliability(confidence, correct)
    run["roc"] = {s: _roc(scored["known"]["confidence"], scored[s]["confidence"]) for s in ("near", "far")}
    run["labels"] = _open_vocabulary(learner, data, near, sets, data.test_y[near_rows], truth, correct,
                                     suite.min_confidence)  # fmt: skip
    return run


def _scores(learner: Any, x: np.ndarray, min_confidence: float) -> dict[str, Any]:
    """Every score of SCORES for rows x (N,), and the product's answers."""
    answers = learner.answer_embeddings(x, 1, (), min_confidence)
    learned = scoring.learned_scores(learner.state, x)
    means = learner.state.class_means.scores(x, len(learner.classes)).max(1)
    stored = unit_rows(learner.memory.samples().embeddings)
    cos = unit_rows(x) @ stored.T
    knn = np.sort(cos, 1)[:, -min(5, cos.shape[1]) :].mean(1) if cos.shape[1] else np.zeros(len(x))
    logits = learned / MSP_TEMPERATURE
    top = logits.max(1)
    return {"answers": answers, "confidence": np.array([a.confidence for a in answers]),
            "msp": softmax(logits).max(1), "class_mean": means,
            "knn5": knn, "energy": MSP_TEMPERATURE * (top + np.log(np.exp(logits - top[:, None]).sum(1)))}  # fmt: skip


def _roc(known: np.ndarray, unknown: np.ndarray, points: int = 21) -> list[list[float]]:
    """[FPR, TPR] at `points` thresholds spread over the known scores' quantiles."""
    out = []
    for q in np.linspace(0, 1, points):
        t = np.quantile(known, q)
        out.append([float((unknown >= t).mean()), float((known >= t).mean())])
    return out


def _open_vocabulary(learner: Any, data: DataSet, near: np.ndarray, sets: dict[str, np.ndarray],
                     near_y: np.ndarray, truth: list[str], correct: np.ndarray,
                     min_confidence: float) -> dict[str, float]:  # fmt: skip
    """Each unlearned class X in turn given as the one extra label (`--labels X`): how often X's images are answered
    X (the answer, and the top candidate) against zero-shot among the same names (learned + X), and the learned
    classes' accuracy (top candidate) with X given."""
    answered, top, zero_shot, known_hits = [], [], [], []
    for c in near:
        label = data.labels[c]
        x = sets["near"][near_y == c]
        given = learner.answer_embeddings(x, 1, [label], min_confidence, {label: data.text[c]})
        answered += [a.label == label for a in given]
        top += [a.predictions[0]["label"] == label for a in given]
        names = [*learner.classes, label]
        text = np.stack([data.text[data.labels.index(n)] for n in names])
        zero_shot += list((unit_rows(x) @ text.T).argmax(1) == len(names) - 1)
        known = learner.answer_embeddings(sets["known"], 1, [label], min_confidence, {label: data.text[c]})
        known_hits.append(np.mean([a.predictions[0]["label"] == t for a, t in zip(known, truth, strict=True)]))
    return {"extra_answer": float(np.mean(answered)), "extra_top": float(np.mean(top)),
            "zero_shot": float(np.mean(zero_shot)), "known_accuracy": float(correct.mean()),
            "known_accuracy_with_labels": float(np.mean(known_hits))}  # fmt: skip
