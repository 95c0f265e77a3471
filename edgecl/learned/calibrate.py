"""The calibration a learned state gets with a task (edgecl.learn.calibration), and the task's validation: both from
scores that did not see the row they score. numpy only."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from edgecl.learn.calibration import Calibration, fit_temperature, loo_cosines, task_validation
from edgecl.learn.prototypes import ClassMeans, validation_rows
from edgecl.learned.scoring import learned_scores
from edgecl.learned.task import Task, earlier_rows
from edgecl.learned.value import LearnedState, class_indices
from edgecl.vectors import unit_rows


def calibrated(before: LearnedState, task: Task, after: LearnedState) -> tuple[Calibration, dict[str, Any]]:
    """The calibration state `after` (= `before` with the task learned, calibration not yet updated) gets: its
    classes' familiarity statistics grown by the leave-one-out cosines of the task's rows to their class means, both
    temperatures refitted; and the task's validation (edgecl.learn.calibration.task_validation)."""
    class_means = after.class_means
    x, y, domains = _calibration_rows(before, task, after)  # the task's rows first
    loo = loo_cosines(x, class_means.group_of(y, domains), class_means.means, class_means.counts)
    measured = ~np.isnan(loo)  # rows of a class without a class mean (or alone in it) say nothing honest
    new = np.arange(len(x)) < len(task.x)
    calibration = before.calibration.updated(loo[new & measured], y[new & measured], len(task.classes))
    x, y, loo, n_new = x[measured], y[measured], loo[measured], int(measured[new].sum())
    scores = _honest_scores(after, task, x, y, loo)
    temperature = before.calibration.temperature
    if scores is not None:
        temperature = fit_temperature(scores, y, temperature) * _spread_ratio(after, x)
    text = fit_temperature(unit_rows(x) @ task.text.T, y, before.calibration.text_temperature)
    validation = _validation(after, task, x, y, loo, scores, n_new)
    return calibration.with_temperatures(temperature, text), validation


def _validation(after: LearnedState, task: Task, x: np.ndarray, y: np.ndarray, loo: np.ndarray,
                scores: np.ndarray | None, n: int) -> dict[str, Any]:  # fmt: skip
    """How well the task's classes are told apart, each image left out of its class mean (the honest scores; for
    finetune, whose head saw every image, by class means alone); the first `n` rows are the task's."""
    if scores is None:
        scores = loo_mean_scores(x, y, after.class_means, loo, len(task.classes))
        estimate = "leave-one-out, class means"
    else:
        estimate = "leave-one-out, text" if after.method.name == "zeroshot" else "leave-one-out"
    names = [task.classes[int(c)] for c in task.y]
    return task_validation(scores[:n], y[:n], task.classes, dict(Counter(names)), estimate)


def _spread_ratio(after: LearnedState, x: np.ndarray) -> float:
    """How much more the learner's scores of rows x spread over the classes than their class-mean cosines do (the
    honest scores the temperature is fitted on): the head's cosine adds margin, so the temperature grows by this
    ratio (1 for zeroshot, whose honest scores are its scores). Measured on rows the learner saw, where it matches
    held-out rows within 0.01 (docs/answers.md "Answers")."""
    if after.method.name == "zeroshot":
        return 1.0
    spread = after.class_means.scores(x, len(after.classes)).std(1).mean()
    return float(learned_scores(after, x).std(1).mean() / spread) if spread > 0 else 1.0


def _honest_scores(after: LearnedState, task: Task, x: np.ndarray, y: np.ndarray,
                   loo: np.ndarray) -> np.ndarray | None:  # fmt: skip
    """(N, C) scores of rows x of classes y that did not see the row itself, for the temperature: class-mean cosines
    with each row left out of its own class mean (methods with prototypes, whose scores they dominate, and ncm), or
    the text cosines (zeroshot); None where no such scores exist (finetune's head trained on every row)."""
    if after.method.name == "zeroshot":
        return unit_rows(x) @ task.text.T
    if not (after.uses_prototypes or after.method.memory_means):
        return None
    return loo_mean_scores(x, y, after.class_means, loo, len(task.classes))


def _calibration_rows(before: LearnedState, task: Task,
                      after: LearnedState) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """(x, class index, domain index) of the task's rows, then of a few stored rows of each earlier class
    (prototypes.validation_rows), so that the temperature is fitted over every class, not the task's alone."""
    x, y, domains = task.x, task.y, np.full(len(task.y), task.domain)
    if not before.method.memory or not len(before.classes):
        return x, y, domains
    earlier = earlier_rows(task.memory, task.ids)
    pick = earlier[validation_rows(class_indices(task.classes, task.memory.samples(earlier, decode=False)))]
    stored = task.memory.samples(pick)  # only the picked rows are decoded
    return (np.concatenate([x, stored.embeddings]), np.concatenate([y, class_indices(task.classes, stored)]),
            np.concatenate([domains, after.domain_indices(stored)]))  # fmt: skip


def loo_mean_scores(x: np.ndarray, y: np.ndarray, class_means: ClassMeans, loo: np.ndarray,
                    n_classes: int) -> np.ndarray:  # fmt: skip
    """(N, n_classes) class-mean cosines of rows x of classes y (N,), each row's own class scored by `loo` (its
    cosine with its class mean left without it) where that is known."""
    measured = ~np.isnan(loo)
    means = class_means.scores(x, n_classes)
    means[measured, y[measured]] = loo[measured]
    return means
