"""The learner facade: learn a task (class- or domain-incremental), classify with top-k and open vocabulary.

Methods (edgecl/learn/methods.py, README "Learner"): zeroshot, ncm, finetune, er, er_cb, gcl, gdro; all share
this code, the replay memory and its byte budget. Training works on frozen embeddings, so `learn_embeddings` /
`classify_embeddings` are the core and the image versions only add the ONNX encoder in front.
"""

from __future__ import annotations

import contextlib
import copy
import json
import shutil
import time
import zipfile
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgecl.errors import EdgeclError
from edgecl.learn.calibration import (
    DEFAULT_MIN_CONFIDENCE,
    Answer,
    Calibration,
    answers,
    candidate_probabilities,
    fit_temperature,
    loo_cosines,
    softmax,
    task_validation,
)
from edgecl.learn.methods import METHODS as METHOD_TABLE
from edgecl.learn.methods import Method
from edgecl.learn.prototypes import (
    DEFAULT_WEIGHT,
    ClassMeans,
    holdout_mask,
    measure_weight,
    validation_rows,
)
from edgecl.memory import ReplayMemory
from edgecl.memory.policy import group_keys, group_parts
from edgecl.prompts import prompt_for
from edgecl.ram import TrainSizes
from edgecl.reports import TaskResult, Training
from edgecl.runtime import Runtime
from edgecl.settings import CONFIG_VERSION, LearnerConfig
from edgecl.vectors import unit_rows

METHODS = tuple(METHOD_TABLE)


@dataclass(frozen=True)
class _Task:
    """One task on its way in: its rows, and the classes, text embeddings and memory the learner will have with it
    (computed from the learner's, which stay as they are until the task succeeds)."""

    x: np.ndarray  # (N, D) f32
    y: np.ndarray  # (N,) index into `classes`
    ids: np.ndarray  # (N,) memory ids given to the rows (zeros for methods without memory)
    domain: int  # the task's domain index (see Learner.domains)
    domain_name: str  # "" for a task without a domain
    classes: list[str]  # the learned classes, the task's new ones appended
    text: np.ndarray  # (C, D) f32 their text embeddings
    memory: ReplayMemory  # the memory with the task's rows added


@dataclass(frozen=True)
class _Heads:
    """Trained copies of the heads and of the loss with its estimators."""

    head: Any
    text_head: Any
    loss: Any
    merged: Any  # MergedHead of head
    merged_text: Any  # MergedHead of text_head (the learner's current one without a text head)


@dataclass(frozen=True)
class _Fitted:
    """What training on a task produced, not yet committed to the learner."""

    training: Training | None  # None: the method trains nothing
    heads: _Heads | None
    prototype_weight: float


class Learner:
    """Frozen-embedding continual learner with PEFT adapters and a byte-budgeted replay memory. `config` is saved with
    it; `runtime` (this device's threads, precision, batch sizes) is not."""

    def __init__(self, config: LearnerConfig, dim: int, encoder: Any = None, runtime: Runtime | None = None) -> None:
        from edgecl.learn.merged import MergedHead

        self.config, self.dim, self.encoder = config, dim, encoder
        self.runtime = runtime or Runtime()
        self.classes: list[str] = []
        self.text = np.zeros((0, dim), np.float32)  # (C, D) class text embeddings
        self.memory = ReplayMemory(config.memory, dim)
        self.head: Any = None  # peft model, built on first training
        self.text_head: Any = None
        self.merged = MergedHead.identity(dim)
        self.merged_text = MergedHead.identity(dim)
        self.loss: Any = None  # the method's loss object with its estimators (GCL, GDRO), once trained or loaded
        self.class_means = ClassMeans.empty(dim)  # every method: familiarity; `prototypes` methods also score by them
        self.calibration = Calibration.empty()  # what turns scores into a confidence (edgecl.learn.calibration)
        self.prototype_weight = DEFAULT_WEIGHT if config.prototypes.weight is None else config.prototypes.weight
        self.tasks: list[dict[str, Any]] = []
        self._adapter_dirs: dict[str, Path] = {}  # saved peft adapters not yet loaded (see load_from)
        self._estimators: dict[str, np.ndarray] = {}  # saved loss estimators, until the loss is rebuilt from them

    @property
    def method(self) -> Method:
        """The method's row of the method table (edgecl.learn.methods)."""
        return METHOD_TABLE[self.config.method]

    @property
    def domains(self) -> list[str]:
        """Domains learned so far, in order ("" for tasks without one); a group's domain index points here."""
        return list(dict.fromkeys(task["domain"] or "" for task in self.tasks))

    def _domain_index(self, domain: str | None) -> int:
        known = self.domains
        return known.index(domain or "") if (domain or "") in known else len(known)

    @property
    def weight_in_use(self) -> float:
        """The prototype weight scores use: the class-incremental one, or the domain-incremental one once more than
        one domain is learned (there every task retrains the head on every class; README, "Domain-incremental")."""
        return self.config.prototypes.domain_weight if len(self.domains) > 1 else self.prototype_weight

    @property
    def uses_prototypes(self) -> bool:
        """Whether scores add class-mean cosines to the head's."""
        return self.method.prototypes

    @property
    def trains(self) -> bool:
        """Whether learning trains adapters (zeroshot and ncm only store)."""
        return self.method.trains

    # ---- learning ------------------------------------------------------------------------------------------
    def learn_images(self, images: Sequence[Any], class_names: Sequence[str], domain: str | None = None) -> TaskResult:
        start = time.perf_counter()
        x = self._require_encoder().encode_images(images)
        result = self.learn_embeddings(x, class_names, domain)
        total = time.perf_counter() - start
        return replace(result, encode_seconds=total - result.train_seconds, seconds_total=total)

    def learn_embeddings(self, x: np.ndarray, class_names: Sequence[str], domain: str | None = None,
                         text: dict[str, np.ndarray] | None = None, sizes: TrainSizes | None = None,
                         ) -> TaskResult:  # fmt: skip
        """Learn one task from (N, D) embeddings; `text` (class name -> (D,) embedding) skips the text encoder;
        `sizes` caps the training batch and the replayed rows decoded (a RAM cap's plan, see edgecl.ram).
        Nothing changes unless the whole task succeeds: each step computes new values from the learner's, and they
        replace the learner's together at the end."""
        if len(x) == 0 or len(x) != len(class_names):
            raise EdgeclError(f"a task needs images with one class name each (got {len(x)} / {len(class_names)})")
        task = self._task(np.asarray(x, np.float32), list(class_names), domain, text)
        fitted = self._fit(task, sizes or TrainSizes(self.runtime.train_batch, None))
        class_means = self.class_means.updated(task.x, task.y, task.domain)
        new_classes = task.classes[len(self.classes) :]
        record = {"classes": sorted(set(class_names)), "domain": domain, "samples": len(task.x)}
        calibration, validation = self._calibrated(task, fitted, class_means, record)
        self._commit(task, fitted, class_means, calibration, record)
        return TaskResult(new_classes, list(self.classes), self.config.method,
                          self.memory.stats() if self.method.memory else None, fitted.training,
                          self.weight_in_use if self.uses_prototypes and self.trains else None,
                          validation=validation)  # fmt: skip

    def _commit(self, task: _Task, fitted: _Fitted, class_means: ClassMeans, calibration: Calibration,
                record: dict[str, Any]) -> None:  # fmt: skip
        """The one place learning a task changes the learner (nothing here can fail)."""
        self.classes, self.text, self.memory, self.tasks = task.classes, task.text, task.memory, [*self.tasks, record]
        self.class_means, self.calibration = class_means, calibration
        if fitted.heads is not None:
            heads = fitted.heads
            self.head, self.text_head, self.loss = heads.head, heads.text_head, heads.loss
            self.merged, self.merged_text = heads.merged, heads.merged_text
        self.prototype_weight = fitted.prototype_weight

    def _calibrated(self, task: _Task, fitted: _Fitted, class_means: ClassMeans,
                    record: dict[str, Any]) -> tuple[Calibration, dict[str, Any]]:  # fmt: skip
        """The calibration the learner will have with this task (its classes' familiarity statistics grown by the
        leave-one-out cosines of the task's rows to their class means, `class_means`, which hold them; both
        temperatures refitted), and the task's validation (edgecl.learn.calibration.task_validation)."""
        x, y, domains = self._calibration_rows(task)  # the task's rows first
        loo = loo_cosines(x, class_means.group_of(y, domains), class_means.means, class_means.counts)
        measured = ~np.isnan(loo)  # rows of a class without a class mean (or alone in it) say nothing honest
        new = np.arange(len(x)) < len(task.x)
        calibration = self.calibration.updated(loo[new & measured], y[new & measured], len(task.classes))
        x, y, loo, n_new = x[measured], y[measured], loo[measured], int(measured[new].sum())
        scores = self._honest_scores(task, x, y, class_means, loo)
        temperature = self.calibration.temperature
        if scores is not None:
            temperature = fit_temperature(scores, y, temperature) * self._spread_ratio(task, fitted, class_means,
                                                                                        record, x)  # fmt: skip
        text = fit_temperature(unit_rows(x) @ task.text.T, y, self.calibration.text_temperature)
        validation = self._validation(task, x, y, class_means, loo, scores, n_new)
        return calibration.with_temperatures(temperature, text), validation

    def _validation(self, task: _Task, x: np.ndarray, y: np.ndarray, class_means: ClassMeans, loo: np.ndarray,
                    scores: np.ndarray | None, n: int) -> dict[str, Any]:  # fmt: skip
        """How well the task's classes are told apart, each image left out of its class mean (the honest scores; for
        finetune, whose head saw every image, by class means alone); the first `n` rows are the task's."""
        if scores is None:
            scores, estimate = _loo_mean_scores(x, y, class_means, loo, len(task.classes)), "leave-one-out, class means"
        else:
            estimate = "leave-one-out, text" if self.method.name == "zeroshot" else "leave-one-out"
        names = [task.classes[int(c)] for c in task.y]
        return task_validation(scores[:n], y[:n], task.classes, dict(Counter(names)), estimate)

    def _spread_ratio(self, task: _Task, fitted: _Fitted, class_means: ClassMeans, record: dict[str, Any],
                      x: np.ndarray) -> float:  # fmt: skip
        """How much more the learner's scores of rows x spread over the classes than their class-mean cosines do
        (the honest scores the temperature is fitted on): the head's cosine adds margin, so the temperature grows by
        this ratio (1 for zeroshot, whose honest scores are its scores). Measured on rows the learner saw, where it
        matches held-out rows within 0.01 (README, "Answers")."""
        if self.method.name == "zeroshot":
            return 1.0
        view = copy.copy(self)  # the learner as it will be with the task; `self` stays as it is
        view._commit(task, fitted, class_means, self.calibration, record)
        spread = class_means.scores(x, len(task.classes)).std(1).mean()
        return float(view._learned_scores(x).std(1).mean() / spread) if spread > 0 else 1.0

    def _honest_scores(self, task: _Task, x: np.ndarray, y: np.ndarray, class_means: ClassMeans,
                       loo: np.ndarray) -> np.ndarray | None:  # fmt: skip
        """(N, C) scores of rows x of classes y that did not see the row itself, for the temperature: class-mean
        cosines with each row left out of its own class mean (methods with prototypes, whose scores they dominate,
        and ncm), or the text cosines (zeroshot); None where no such scores exist (finetune's head trained on every
        row)."""
        if self.method.name == "zeroshot":
            return unit_rows(x) @ task.text.T
        if not (self.uses_prototypes or self.method.memory_means):
            return None
        return _loo_mean_scores(x, y, class_means, loo, len(task.classes))

    def _calibration_rows(self, task: _Task) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(x, class index, domain index) of the task's rows, then of a few stored rows of each earlier class
        (prototypes.validation_rows), so that the temperature is fitted over every class, not the task's alone."""
        x, y, domains = task.x, task.y, np.full(len(task.y), task.domain)
        if not self.method.memory or not len(self.classes):
            return x, y, domains
        stored = task.memory.samples(_earlier_rows(task.memory, task.ids))
        old_y = _class_indices(task.classes, stored)
        pick = validation_rows(old_y)
        return (np.concatenate([x, stored.embeddings[pick]]), np.concatenate([y, old_y[pick]]),
                np.concatenate([domains, self._domain_indices(stored)[pick]]))  # fmt: skip

    def _task(self, x: np.ndarray, names: list[str], domain: str | None,
              text: dict[str, np.ndarray] | None) -> _Task:  # fmt: skip
        """The task's rows with the classes, text embeddings and memory the learner would have with them."""
        new_classes = sorted(set(names) - set(self.classes))
        classes = self.classes + new_classes
        texts = np.concatenate([self.text, self._text_for(new_classes, text)]).astype(np.float32)
        y = np.array([classes.index(c) for c in names])
        ids, memory = np.zeros(len(x), np.int64), self.memory
        if self.method.memory:
            memory = copy.copy(self.memory)  # its contents are replaced, never changed in place
            ids = memory.add(x, names, domain)
        return _Task(x, y, ids, self._domain_index(domain), domain or "", classes, texts, memory)

    def forget_class(self, name: str) -> int:
        """Remove a class from memory and from classification; returns the memory bytes freed. The adapters keep
        whatever the class taught them (LoRA weights are not retrained): scores of other classes may still carry
        its influence until later tasks retrain the heads."""
        if name not in self.classes:
            raise EdgeclError(f"class {name!r} is not learned; learned: {', '.join(self.classes) or 'none'}")
        index = self.classes.index(name)
        memory = copy.copy(self.memory)  # its contents are replaced, never changed in place
        freed = memory.remove_class(name) if name in memory.classes else 0
        loss = copy.deepcopy(self.loss) if self.loss is not None else self._saved_loss()
        if loss is not None:
            loss.drop_class(index, self.config.groups)
        self.memory, self.loss, self._estimators = memory, loss, {}
        self.classes = [c for c in self.classes if c != name]
        self.text = np.delete(self.text, index, axis=0)
        self.class_means = self.class_means.without(index)
        self.calibration = self.calibration.without(index)
        return freed

    def _text_for(self, names: list[str], given: dict[str, np.ndarray] | None) -> np.ndarray:
        if not names:
            return np.zeros((0, self.dim), np.float32)
        if given is not None:
            return unit_rows(np.stack([np.asarray(given[n], np.float32) for n in names]))
        return self._require_encoder().encode_texts([prompt_for(n) for n in names])

    def _fit(self, task: _Task, sizes: TrainSizes) -> _Fitted:
        """Train the heads on the task's rows with replay, and measure the prototype weight where it is measured;
        the learner itself is left as it is."""
        if not self.trains:
            return _Fitted(None, None, self.prototype_weight)
        held = self._holdout(task.y)
        old = self._old_rows(task.memory, task.ids)
        data = self._train_data(task, ~held, old, sizes.replay_rows)
        result, heads = self._train(data, sizes.batch)
        weight = self._measured_weight(task, held, data, heads) if held.any() else self.prototype_weight
        domains = self.domains + ([task.domain_name] if task.domain == len(self.domains) else [])
        names = [{self._group_name(k, domains, task.classes): round(w, 4) for k, w in q.items()}
                 for q in result.class_weights]  # fmt: skip
        training = Training(result.seconds, result.epoch_loss, result.steps, names, batch=sizes.batch,
                            replayed_rows=len(data.x) - int((~held).sum()), replay_rows_available=old.size,
                            precision=self.runtime.precision,
                            held_out_rows=int(held.sum()) if self.uses_prototypes else None)  # fmt: skip
        return _Fitted(training, heads, weight)

    def _holdout(self, y: np.ndarray) -> np.ndarray:
        """(N,) bool: the task's rows held out of training to measure the prototype weight (none when it is fixed
        or the method has no prototypes)."""
        if not self.uses_prototypes or self.config.prototypes.weight is not None:
            return np.zeros(len(y), bool)
        return holdout_mask(y, np.random.default_rng(self.config.seed + 7919 * len(self.tasks)))

    def _measured_weight(self, task: _Task, held: np.ndarray, data: Any, heads: _Heads) -> float:
        """The prototype weight that classifies best the held-out rows of this task plus a few replayed rows of each
        earlier class (prototypes.validation_rows), with class means from the rows that trained (no peeking)."""
        x, y = task.x, task.y
        means = self.class_means.updated(x[~held], y[~held], task.domain)
        old = validation_rows(data.y[data.n_new :]) + data.n_new
        val_x = np.concatenate([x[held], data.x[old]])
        val_y = np.concatenate([y[held], data.y[old]])
        head = heads.merged(val_x) @ _text_prototypes(heads.merged_text, task.text).T  # (V, C)
        return measure_weight(head, means.scores(val_x, len(task.classes)), val_y, self.prototype_weight)

    def _train_data(self, task: _Task, trains: np.ndarray, old: np.ndarray, replay_rows: int | None) -> Any:
        """The task's rows `trains` (a mask) plus the memory rows `old` of earlier tasks (new rows train at full
        precision); at most `replay_rows` of the latter, drawn at random, are decoded."""
        from edgecl.learn.trainer import TrainData

        groups, task_classes = self.config.groups, np.unique(task.y)
        x, y, ids = task.x[trains], task.y[trains], task.ids[trains]
        if not self.method.replay:
            keys = group_keys(groups, y, np.full(len(y), task.domain))
            return TrainData(x, y, ids, task.text, task_classes, groups=keys)
        if replay_rows is not None and len(old) > replay_rows:
            rng = np.random.default_rng(self.config.seed + len(self.tasks))
            old = np.sort(rng.choice(old, size=replay_rows, replace=False))
        stored = task.memory.samples(old)
        pool_x = np.concatenate([x, stored.embeddings])
        pool_y = np.concatenate([y, _class_indices(task.classes, stored)])
        pool_ids = np.concatenate([ids, stored.ids])
        pool_domains = np.concatenate([np.full(len(x), task.domain), self._domain_indices(stored)])
        return TrainData(pool_x, pool_y, pool_ids, task.text, task_classes, n_new=len(x),
                         groups=group_keys(groups, pool_y, pool_domains))  # fmt: skip

    def _old_rows(self, memory: ReplayMemory, new_ids: np.ndarray) -> np.ndarray:
        """Rows of `memory` stored by earlier tasks (not among this task's `new_ids`)."""
        if not self.method.replay:
            return np.zeros(0, np.int64)
        return _earlier_rows(memory, new_ids)

    def _saved_loss(self) -> Any:
        """The method's loss rebuilt from the saved estimators (a fresh one without them); None for no loss."""
        kind = METHOD_TABLE[self.config.method].loss
        if kind is None:
            return None
        from edgecl.learn.losses import LOSSES

        return LOSSES[kind].from_arrays(self.config.loss, self._estimators)

    def _train(self, data: Any, batch_size: int) -> tuple[Any, _Heads]:
        """Train copies of the heads and of the loss; returns the trainer's report and the trained heads."""
        from edgecl.learn.adapters import merge
        from edgecl.learn.trainer import TrainConfig, train

        cfg = self.config
        head = self._head("adapter", self.head, cfg.adapter, cfg.seed)
        text_head = (
            self._head("text_adapter", self.text_head, cfg.adapter, cfg.seed + 1) if cfg.adapter.text_head else None
        )
        loss = copy.deepcopy(self.loss) if self.loss is not None else self._saved_loss()
        runtime = replace(self.runtime, train_batch=batch_size)  # the batch the RAM cap allows
        train_cfg = TrainConfig(cfg.method, cfg.train, runtime, cfg.loss, seed=cfg.seed + len(self.tasks))
        loss.forget(set(data.ids.tolist()))  # estimators of samples evicted from memory are dropped
        result = train(head, text_head, data, train_cfg, loss)
        merged_text = merge(text_head) if text_head is not None else self.merged_text
        return result, _Heads(head, text_head, loss, merge(head), merged_text)

    def _head(self, name: str, current: Any, adapter: Any, seed: int) -> Any:
        """A trainable copy of a head: the current one, the saved one, or a fresh zero-initialised one."""
        from edgecl.learn.adapters import load_adapter, lora_head

        if current is not None:
            return copy.deepcopy(current)
        if name in self._adapter_dirs:
            head = load_adapter(self.dim, self._adapter_dirs[name])
            for param_name, param in head.named_parameters():
                param.requires_grad = "lora_" in param_name
            return head
        return lora_head(self.dim, adapter, seed)

    # ---- classifying ---------------------------------------------------------------------------------------
    def prototypes(self) -> np.ndarray:
        """(C, D) class prototypes the scores are cosines against."""
        text = _text_prototypes(self.merged_text, self.text)
        if not self.method.memory_means or not len(self.text):
            return text
        stored = self.memory.samples()
        protos = text.copy()
        for i, name in enumerate(stored.classes):
            rows = stored.labels == i
            if rows.any():
                c = self.classes.index(name)
                mean = unit_rows(stored.embeddings[rows].mean(0))
                protos[c] = unit_rows(mean + self.config.prototypes.ncm_text_weight * text[c])
        return protos

    def _means_from_memory(self) -> ClassMeans:
        """Class means of the memory's rows: the best prototypes a state saved without class means can have."""
        stored = self.memory.samples()
        return ClassMeans.empty(self.dim).updated(stored.embeddings, _class_indices(self.classes, stored),
                                                  self._domain_indices(stored))  # fmt: skip

    def _domain_indices(self, stored: Any) -> np.ndarray:
        """(N,) learner domain index of each decoded memory row (see `domains`)."""
        to_domain = np.array([self._domain_index(d) for d in stored.domain_names], dtype=np.int64)
        return to_domain[stored.domains] if len(to_domain) else np.zeros(0, np.int64)

    def _group_name(self, key: int, domains: list[str], classes: list[str]) -> str:
        """How a report names a group: its class, "class|domain" (just the class while there is one domain), or
        its domain."""
        c, d = group_parts(self.config.groups, key)
        if d is None or (c is not None and len(domains) <= 1):
            return classes[c]
        return domains[d] if c is None else f"{classes[c]}|{domains[d]}"

    def scores(self, x: np.ndarray, extra_labels: Sequence[str] = ()) -> tuple[np.ndarray, list[str]]:
        """(N, C + E) cosine scores over learned classes, then the raw image-to-text cosine of each extra label
        (never learned). The two kinds are not on one scale: `answer_embeddings` puts them on one."""
        learned = self._learned_scores(np.asarray(x, np.float32))
        extra = self._extra(extra_labels)
        if not extra:
            return learned, list(self.classes)
        text = self._require_encoder().encode_texts([prompt_for(n) for n in extra])
        return np.concatenate([learned, unit_rows(x) @ text.T], axis=1), list(self.classes) + extra

    def _extra(self, extra_labels: Sequence[str]) -> list[str]:
        return list(dict.fromkeys(label for label in extra_labels if label not in self.classes))

    def _learned_scores(self, x: np.ndarray, mean_scores: np.ndarray | None = None) -> np.ndarray:
        """(N, C) the learned classes' scores: the head's cosine, with the class-mean cosines (`mean_scores`, else
        computed) mixed in by the prototype weight for methods with prototypes."""
        learned = self.merged(x) @ self.prototypes().T
        if self.uses_prototypes and len(self.class_means.counts):  # a weighted mean of the two cosines
            w = self.weight_in_use
            means = self.class_means.scores(x, len(self.classes)) if mean_scores is None else mean_scores
            learned = (learned + w * means) / (1 + w)
        return learned

    def answer_embeddings(self, x: np.ndarray, top_k: int = 5, extra_labels: Sequence[str] = (),
                          min_confidence: float = DEFAULT_MIN_CONFIDENCE,
                          extra_text: dict[str, np.ndarray] | None = None) -> list[Answer]:  # fmt: skip
        """Per row: the answer (a class, an extra label, or unknown below `min_confidence`), its confidence and
        the top-k candidates on one probability scale (edgecl.learn.calibration). `extra_text` (label -> (D,)
        text embedding) skips the text encoder for the extra labels."""
        if not self.classes and not extra_labels:
            raise EdgeclError("nothing learned yet and no --labels given: learn a task first or pass labels")
        x = np.asarray(x, np.float32)
        extra = self._extra(extra_labels)
        means = self.class_means.scores(x, len(self.classes))  # for the scores (prototypes) and for `known`
        learned = self._learned_scores(x, means) if self.classes else np.zeros((len(x), 0), np.float32)
        p_learned = softmax(learned / self.calibration.temperature) if self.classes else learned
        known = self._known(means, learned)
        scores, zero_shot = learned, None
        if extra:
            text = np.concatenate([self.text, self._text_for(extra, extra_text)])
            cosines = unit_rows(x) @ text.T
            zero_shot = softmax(cosines / self.calibration.text_temperature)
            scores = np.concatenate([learned, cosines[:, len(self.classes) :]], axis=1)
        probability = candidate_probabilities(p_learned, known, zero_shot, len(self.classes))
        return answers(probability, scores, list(self.classes) + extra, top_k, min_confidence)

    def _known(self, means: np.ndarray, learned: np.ndarray) -> np.ndarray:
        """(N,) the chance each row is one of the learned classes (0 with nothing learned), from its class-mean
        cosines `means` (N, C) and learned scores (N, C)."""
        if not self.classes:
            return np.zeros(len(means))
        if not len(self.class_means.counts):
            return np.ones(len(means))
        answer = learned.argmax(1)
        rows = np.arange(len(means))
        return self.calibration.with_classes(len(self.classes)).known(means[rows, answer], answer)

    def classify_embeddings(self, x: np.ndarray, top_k: int = 5, extra_labels: Sequence[str] = (),
                            min_confidence: float = DEFAULT_MIN_CONFIDENCE,
                            extra_text: dict[str, np.ndarray] | None = None) -> list[dict[str, Any]]:  # fmt: skip
        """answer_embeddings as the JSON contract's dicts (label, unknown, confidence, predictions)."""
        return [a.to_json() for a in self.answer_embeddings(x, top_k, extra_labels, min_confidence, extra_text)]

    def classify_images(self, images: Sequence[Any], top_k: int = 5, extra_labels: Sequence[str] = (),
                        min_confidence: float = DEFAULT_MIN_CONFIDENCE) -> list[dict[str, Any]]:  # fmt: skip
        return self.classify_embeddings(self._require_encoder().encode_images(images), top_k, extra_labels,
                                        min_confidence)  # fmt: skip

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(N,) index of the best learned class."""
        return self._learned_scores(np.asarray(x, np.float32)).argmax(axis=1)

    def _require_encoder(self) -> Any:
        if self.encoder is None:
            raise EdgeclError("this learner has no encoder: pass embeddings, or build it with a model directory")
        return self.encoder

    # ---- persistence (plain files; the state directory commits them atomically) -----------------------------
    def save_to(self, folder: Path) -> None:
        """memory.safetensors, learned.npz (text + merged arrays), estimators.npz, peft adapters, learner.json."""
        from edgecl.learn.adapters import save_adapter

        folder.mkdir(parents=True, exist_ok=True)
        self.memory.save(folder / "memory.safetensors")
        arrays = {"text": self.text, "down": self.merged.down, "up": self.merged.up,
                  "text_down": self.merged_text.down, "text_up": self.merged_text.up,
                  "class_means": self.class_means.means, "class_counts": self.class_means.counts,
                  "class_mean_classes": self.class_means.classes,
                  "class_mean_domains": self.class_means.domains, **self.calibration.to_arrays()}  # fmt: skip
        np.savez(folder / "learned.npz", **arrays)
        estimators = self.loss.state_arrays() if self.loss is not None else self._estimators
        np.savez(folder / "estimators.npz", **estimators)
        for name, head in (("adapter", self.head), ("text_adapter", self.text_head)):
            if head is not None:
                save_adapter(head, folder / name)
            elif self._adapter_dirs.get(name):  # loaded but not retrained: carry the files over
                shutil.copytree(self._adapter_dirs[name], folder / name)
        meta = {"config": self.config.to_json(), "config_version": CONFIG_VERSION, "dim": self.dim,
                "classes": self.classes, "tasks": self.tasks, "prototype_weight": self.prototype_weight}  # fmt: skip
        (folder / "learner.json").write_text(json.dumps(meta, indent=2, sort_keys=True))

    def _read_learned(self, data: Any) -> None:
        """learned.npz's arrays: text rows, merged heads, class means (three layouts over time), calibration."""
        from edgecl.learn.merged import MergedHead

        self.text = data["text"]
        self.merged = MergedHead(data["down"], data["up"])
        self.merged_text = MergedHead(data["text_down"], data["text_up"])
        if "class_mean_classes" in data.files:
            self.class_means = ClassMeans(data["class_means"], data["class_counts"], data["class_mean_classes"],
                                          data["class_mean_domains"])  # fmt: skip
        elif "class_means" in data.files:  # one mean per class, from before domains had their own
            self.class_means = ClassMeans.per_class(data["class_means"], data["class_counts"])
        self.calibration = Calibration.from_arrays(data, len(self.classes))

    @classmethod
    def load_from(cls, folder: Path, encoder: Any = None, runtime: Runtime | None = None) -> Learner:
        """Read what save_to wrote; `runtime`: this device's (the saved learner records none). Uses numpy only; the
        peft adapters are loaded when training resumes."""
        meta, config = _read_learner_json(folder / "learner.json")
        learner = cls(config, int(meta["dim"]), encoder, runtime)
        learner.classes, learner.tasks = list(meta["classes"]), list(meta["tasks"])
        learner.memory = ReplayMemory.load(folder / "memory.safetensors")
        with _damaged_is_an_error(folder / "learned.npz"), np.load(folder / "learned.npz", allow_pickle=False) as data:
            learner._read_learned(data)
        if learner.method.memory and len(learner.classes) and not len(learner.class_means.counts):
            learner.class_means = learner._means_from_memory()  # saved before every method kept class means
        learner.prototype_weight = float(meta.get("prototype_weight", learner.prototype_weight))
        estimators = folder / "estimators.npz"
        with _damaged_is_an_error(estimators), np.load(estimators, allow_pickle=False) as data:
            learner._estimators = {k: data[k] for k in data.files}
        learner._adapter_dirs = {n: folder / n for n in ("adapter", "text_adapter") if (folder / n).is_dir()}
        return learner


@contextlib.contextmanager
def _damaged_is_an_error(path: Path) -> Iterator[None]:
    """A missing, truncated or damaged state array file is a one-line error naming it, not a traceback."""
    try:
        yield
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise EdgeclError(f"{path}: damaged or missing state file ({type(exc).__name__}: {exc}); restore the state "
                          "directory from a backup or start a new --state-dir") from None  # fmt: skip


def _earlier_rows(memory: ReplayMemory, new_ids: np.ndarray) -> np.ndarray:
    """Rows of `memory` stored by earlier tasks (not among this task's `new_ids`)."""
    return np.flatnonzero(~np.isin(memory.ids.astype(np.int64), new_ids))


def _loo_mean_scores(x: np.ndarray, y: np.ndarray, class_means: ClassMeans, loo: np.ndarray,
                     n_classes: int) -> np.ndarray:  # fmt: skip
    """(N, n_classes) class-mean cosines of rows x of classes y (N,), each row's own class scored by `loo` (its
    cosine with its class mean left without it) where that is known."""
    measured = ~np.isnan(loo)
    means = class_means.scores(x, n_classes)
    means[measured, y[measured]] = loo[measured]
    return means


def _text_prototypes(merged_text: Any, text: np.ndarray) -> np.ndarray:
    """(C, D) the class text embeddings through the text head."""
    return merged_text(text) if len(text) else text


def _class_indices(classes: list[str], stored: Any) -> np.ndarray:
    """(N,) index into `classes` of each decoded memory row (the memory numbers its classes its own way)."""
    to_class = np.array([classes.index(c) for c in stored.classes], dtype=np.int64)
    return to_class[stored.labels] if len(to_class) else np.zeros(0, np.int64)


def _read_learner_json(path: Path) -> tuple[dict[str, Any], LearnerConfig]:
    """learner.json and its config; a damaged one is a one-line error, not a traceback."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        config = LearnerConfig.from_json(meta["config"], int(meta.get("config_version", 1)))
        int(meta["dim"]), list(meta["classes"]), list(meta["tasks"])  # the other keys load_from reads
    except (OSError, ValueError, KeyError, TypeError, EdgeclError) as exc:
        raise EdgeclError(f"{path}: damaged learner file ({type(exc).__name__}: {exc}); restore the state "
                          "directory from a backup or start a new --state-dir") from None  # fmt: skip
    return meta, config
