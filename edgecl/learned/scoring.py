"""Scoring and answers: pure functions of (LearnedState, embeddings), numpy only. Extra labels (`--labels`) come in
as text embeddings, so no encoder is needed here (edgecl.learner encodes them)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from edgecl.errors import EdgeclError
from edgecl.learn.calibration import DEFAULT_MIN_CONFIDENCE, Answer, answers, candidate_probabilities, softmax
from edgecl.learned.value import LearnedState
from edgecl.names import class_key, clean_name
from edgecl.vectors import unit_rows


def prototypes(state: LearnedState) -> np.ndarray:
    """(C, D) class prototypes the head's cosines are taken against: the text rows through the text head (ncm: the
    class mean of its memory rows, nudged by its text row)."""
    text = text_prototypes(state.merged_text, state.text)
    if not state.method.memory_means or not len(text):
        return text
    stored = state.memory.samples()
    protos = text.copy()
    for i, name in enumerate(stored.classes):
        rows = stored.labels == i
        if rows.any():
            c = state.classes.index(name)
            mean = unit_rows(stored.embeddings[rows].mean(0))
            protos[c] = unit_rows(mean + state.config.prototypes.ncm_text_weight * text[c])
    return protos


def text_prototypes(merged_text: object, text: np.ndarray) -> np.ndarray:
    """(C, D) the class text embeddings through the text head."""
    return merged_text(text) if len(text) else text  # type: ignore[operator]


def learned_scores(state: LearnedState, x: np.ndarray, mean_scores: np.ndarray | None = None) -> np.ndarray:
    """(N, C) the learned classes' scores: the head's cosine, with the class-mean cosines (`mean_scores`, else
    computed) mixed in by the prototype weight for methods with prototypes."""
    x = np.asarray(x, np.float32)
    learned = state.merged(x) @ prototypes(state).T
    if state.uses_prototypes and len(state.class_means.counts):  # a weighted mean of the two cosines
        w = state.weight_in_use
        means = state.class_means.scores(x, len(state.classes)) if mean_scores is None else mean_scores
        learned = (learned + w * means) / (1 + w)
    return learned


def predict(state: LearnedState, x: np.ndarray) -> np.ndarray:
    """(N,) index of the best learned class."""
    return learned_scores(state, x).argmax(axis=1)


def accuracy(state: LearnedState, x: np.ndarray, truth: Sequence[str]) -> float:
    """Share of the rows x (N, D) whose best learned class is named as in truth (N,) (a class never learned counts
    wrong); NaN without rows. What the benchmarks, the fleet and the demo measure a learner by."""
    if len(x) == 0:
        return float("nan")
    predicted = predict(state, x)
    return float(np.mean([state.classes[p] == t for p, t in zip(predicted, truth, strict=True)]))


def extra_labels(state: LearnedState, labels: Sequence[str]) -> list[str]:
    """The extra labels that are not learned classes, each once, in order, tidied; one that names a learned class
    (" Cat " for cat, "Ankle Boot" for ankle_boot: edgecl.names) is that class, not an extra."""
    extra: dict[str, str] = {class_key(c): "" for c in state.classes}
    for label in labels:
        name = clean_name(label)
        if name:
            extra.setdefault(class_key(name), name)
    return [name for name in extra.values() if name]


def scores(state: LearnedState, x: np.ndarray, extra_text: Mapping[str, np.ndarray] | None = None,
           ) -> tuple[np.ndarray, list[str]]:  # fmt: skip
    """(N, C + E) cosine scores over learned classes, then the raw image-to-text cosine of each extra label (label ->
    (D,) text embedding). The two kinds are not on one scale: `answer` puts them on one."""
    learned = learned_scores(state, x)
    extra = extra_labels(state, list(extra_text or {}))
    if not extra:
        return learned, list(state.classes)
    text = _rows(extra_text or {}, extra, state.dim)
    return np.concatenate([learned, unit_rows(np.asarray(x, np.float32)) @ text.T], axis=1), [*state.classes, *extra]


def answer(state: LearnedState, x: np.ndarray, top_k: int = 5, extra_text: Mapping[str, np.ndarray] | None = None,
           min_confidence: float = DEFAULT_MIN_CONFIDENCE) -> list[Answer]:  # fmt: skip
    """Per row: the answer (a class, an extra label, or unknown below `min_confidence`), its confidence and the
    top-k candidates on one probability scale (edgecl.learn.calibration). `extra_text`: extra label -> (D,) text
    embedding (labels that are learned classes are scored as those)."""
    extra = extra_labels(state, list(extra_text or {}))
    if not state.classes and not extra:
        raise EdgeclError("nothing learned yet and no --labels given: learn a task first or pass labels")
    x = np.asarray(x, np.float32)
    n_classes = len(state.classes)
    means = state.class_means.scores(x, n_classes)  # for the scores (prototypes) and for `known`
    learned = learned_scores(state, x, means) if n_classes else np.zeros((len(x), 0), np.float32)
    p_learned = softmax(learned / state.calibration.temperature) if n_classes else learned
    scored, zero_shot = learned, None
    if extra:
        cosines = unit_rows(x) @ np.concatenate([state.text, _rows(extra_text or {}, extra, state.dim)]).T
        zero_shot = softmax(cosines / state.calibration.text_temperature)
        scored = np.concatenate([learned, cosines[:, n_classes:]], axis=1)
    probability = candidate_probabilities(p_learned, known(state, means, learned), zero_shot, n_classes)
    return answers(probability, scored, [*state.classes, *extra], top_k, min_confidence)


def known(state: LearnedState, means: np.ndarray, learned: np.ndarray) -> np.ndarray:
    """(N,) the chance each row is one of the learned classes (0 with nothing learned), from its class-mean cosines
    `means` (N, C) and learned scores (N, C)."""
    if not state.classes:
        return np.zeros(len(means))
    if not len(state.class_means.counts):
        return np.ones(len(means))
    best = learned.argmax(1)
    rows = np.arange(len(means))
    return state.calibration.with_classes(len(state.classes)).known(means[rows, best], best)


def _rows(text: Mapping[str, np.ndarray], names: list[str], dim: int) -> np.ndarray:
    """(E, D) unit text rows of `names`."""
    if not names:
        return np.zeros((0, dim), np.float32)
    return unit_rows(np.stack([np.asarray(text[n], np.float32) for n in names]))
