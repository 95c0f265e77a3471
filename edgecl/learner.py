"""The learner façade: learn a task (class- or domain-incremental), forget a class, classify with top-k and open
vocabulary, save and load. What was learned is one immutable value, `self.state` (edgecl.learned.LearnedState):
learning and forgetting build a new value and replace the old one in one assignment, scoring is a pure function of
(value, embeddings) (edgecl.learned.scoring) and saving and loading live in edgecl.learned.files.

Methods (edgecl/learn/methods.py, docs/method.md): zeroshot, ncm, finetune, er, er_cb (the default), gcl, gdro,
gdro_ce; all share
this code, the replay memory and its byte budget. Training works on frozen embeddings, so `learn_embeddings` /
`classify_embeddings` are the core and the image versions only add the ONNX encoder in front.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgecl.errors import EdgeclError, UnknownClassError
from edgecl.learn.calibration import DEFAULT_MIN_CONFIDENCE, Answer
from edgecl.learn.methods import Method
from edgecl.learn.prototypes import ClassMeans, holdout_mask, measure_weight, validation_rows
from edgecl.learned import LearnedState, files, scoring
from edgecl.learned.calibrate import calibrated
from edgecl.learned.seen import in_domain
from edgecl.learned.task import Task, earlier_rows, training_pool
from edgecl.learner_config import LearnerConfig
from edgecl.memory import ReplayMemory
from edgecl.names import clean_name, joined_names, known_as
from edgecl.prompts import prompt_for
from edgecl.ram import TrainSizes
from edgecl.reports import TaskResult, Training
from edgecl.runtime import Runtime
from edgecl.vectors import unit_rows


@dataclass(frozen=True)
class _Heads:
    """Trained copies of the heads and of the loss with its estimators."""

    head: Any
    text_head: Any
    loss: Any
    merged: Any  # MergedHead of head
    merged_text: Any  # MergedHead of text_head (the state's current one without a text head)


@dataclass(frozen=True)
class _Fitted:
    """What training on a task produced, not yet in a learned state."""

    training: Training | None  # None: the method trains nothing
    heads: _Heads | None
    prototype_weight: float


class Learner:
    """Frozen-embedding continual learner with PEFT adapters and a byte-budgeted replay memory, over one learned
    state. `config` is saved with the state; `runtime` (this device's threads, precision, batch sizes) is not."""

    def __init__(self, config: LearnerConfig, dim: int, encoder: Any = None, runtime: Runtime | None = None,
                 state: LearnedState | None = None) -> None:  # fmt: skip
        self.encoder = encoder
        self.runtime = runtime or Runtime()
        self.state = state if state is not None else LearnedState.new(config, dim)

    # ---- the state, read-only ----------------------------------------------------------------------------------
    @property
    def config(self) -> LearnerConfig:
        return self.state.config

    @property
    def dim(self) -> int:
        return self.state.dim

    @property
    def classes(self) -> list[str]:
        return list(self.state.classes)

    @property
    def memory(self) -> ReplayMemory:
        return self.state.memory

    @property
    def tasks(self) -> list[Mapping[str, Any]]:
        return list(self.state.tasks)

    @property
    def method(self) -> Method:
        """The method's row of the method table (edgecl.learn.methods)."""
        return self.state.method

    @property
    def domains(self) -> list[str]:
        return self.state.domains

    @property
    def uses_prototypes(self) -> bool:
        return self.state.uses_prototypes

    @property
    def trains(self) -> bool:
        return self.state.trains

    # ---- learning ------------------------------------------------------------------------------------------
    def learn_images(self, images: Sequence[Any], class_names: Sequence[str], domain: str | None = None) -> TaskResult:
        """Learn image files, PIL images or arrays with one class name each. An unreadable image is skipped (in
        the result's `skipped`, with the reason) as the CLI skips it; none readable is an error."""
        from edgecl.errors import ImageLoadError
        from edgecl.preprocess import preprocess

        if len(images) != len(class_names):
            raise EdgeclError(f"a task needs one class name per image (got {len(images)} / {len(class_names)})")
        start, encoder, batch = time.perf_counter(), self._require_encoder(), self.runtime.encode_batch
        chunks, names, skipped = [], [], []
        for first in range(0, len(images), batch):  # one batch of pixels in memory at a time
            pixels = []
            part = zip(images[first : first + batch], class_names[first : first + batch], strict=True)
            for i, (image, name) in enumerate(part, first):
                try:
                    pixels.append(preprocess(image, encoder.preprocess_spec))
                    names.append(name)
                except ImageLoadError as exc:
                    where = str(image) if isinstance(image, str | Path) else f"image {i}"
                    skipped.append({"path": where, "reason": str(exc).removeprefix(f"{image}: ")})
            if pixels:
                chunks.append(encoder.encode_pixels(np.stack(pixels), batch))
        if not chunks:
            raise EdgeclError(f"none of the {len(images)} images could be read ({skipped[0]['reason']})")
        result = self.learn_embeddings(np.concatenate(chunks), names, domain)
        total = time.perf_counter() - start
        return replace(result, encode_seconds=total - result.train_seconds, seconds_total=total, skipped=skipped)

    def learn_embeddings(self, x: np.ndarray, class_names: Sequence[str], domain: str | None = None,
                         text: dict[str, np.ndarray] | None = None, sizes: TrainSizes | None = None,
                         image_hashes: np.ndarray | None = None,
                         on_train_step: Callable[[int, int], None] | None = None) -> TaskResult:  # fmt: skip
        """Learn one task from (N, D) embeddings; `text` (class name -> (D,) embedding) skips the text encoder;
        `sizes` caps the training batch and the replayed rows decoded (a RAM cap's plan, see edgecl.ram);
        `image_hashes` ((N,) content hashes, edgecl.learned.seen) are remembered so `already_learned` knows them;
        `on_train_step(done, steps)` is told how training goes.
        Nothing changes unless the whole task succeeds: the next state is built beside the current one and
        replaces it in one assignment at the end."""
        if len(x) == 0 or len(x) != len(class_names):
            raise EdgeclError(f"a task needs images with one class name each (got {len(x)} / {len(class_names)})")
        before = self.state
        joined = joined_names(list(class_names), before.classes)  # one class per name (edgecl.names)
        names = [joined[n] for n in class_names]
        if text is not None:
            text = {joined.get(n, n): row for n, row in text.items()}
        task = self._task(np.asarray(x, np.float32), names, domain, text)
        fitted = self._fit(task, sizes or TrainSizes(self.runtime.train_batch, None), on_train_step)
        record = {"classes": sorted(set(names)), "domain": domain, "samples": len(task.x)}
        after = _with_task(before, task, fitted, before.class_means.updated(task.x, task.y, task.domain), record)
        if image_hashes is not None:
            after = after.replaced(seen=before.seen.added(in_domain(image_hashes, domain), task.y))
        calibration, validation = calibrated(before, task, after)
        self.state = after = after.replaced(calibration=calibration)
        return TaskResult(list(task.classes[len(before.classes) :]), list(after.classes), after.config.method,
                          after.memory.stats() if after.method.memory else None, fitted.training,
                          after.weight_in_use if after.uses_prototypes and after.trains else None,
                          validation=validation, joined={k: v for k, v in joined.items() if k != v},
                          samples=len(task.x))  # fmt: skip

    def already_learned(self, image_hashes: np.ndarray, class_names: Sequence[str],
                        domain: str | None = None) -> np.ndarray:  # fmt: skip
        """(N,) bool: whether each photo (content hash) was learned before as the same class in the same domain, or
        repeats an earlier photo of this batch."""
        state = self.state
        joined = joined_names(list(class_names), state.classes)
        classes = [*state.classes, *sorted(set(joined.values()) - set(state.classes))]
        index = np.array([classes.index(joined[n]) for n in class_names], np.int64)
        return state.seen.learned(in_domain(image_hashes, domain), index)

    def _task(self, x: np.ndarray, names: list[str], domain: str | None,
              text: dict[str, np.ndarray] | None) -> Task:  # fmt: skip
        """The task's rows with the classes, text embeddings and memory the state would have with them."""
        state = self.state
        new_classes = sorted(set(names) - set(state.classes))
        classes = [*state.classes, *new_classes]
        texts = np.concatenate([state.text, self._text_for(new_classes, text)]).astype(np.float32)
        y = np.array([classes.index(c) for c in names])
        ids, memory = np.zeros(len(x), np.int64), state.memory
        if state.method.memory:
            memory = copy.copy(state.memory)  # its contents are replaced, never changed in place
            ids = memory.add(x, names, domain)
        return Task(x, y, ids, state.domain_index(domain), domain or "", classes, texts, memory)

    def forget_class(self, name: str) -> int:
        """Remove a class from memory and from classification; returns the memory bytes freed. The adapters keep
        whatever the class taught them (LoRA weights are not retrained): scores of other classes may still carry
        its influence until later tasks retrain the heads."""
        state = self.state
        learned = known_as(name, state.classes)  # "Ankle Boot" finds ankle_boot (edgecl.names)
        if learned is None:
            raise UnknownClassError(f"class {name!r} is not learned; learned: {', '.join(state.classes) or 'none'}")
        name, index = learned, state.classes.index(learned)
        memory = copy.copy(state.memory)  # its contents are replaced, never changed in place
        freed = memory.remove_class(name) if name in memory.classes else 0
        loss = copy.deepcopy(state.resume.loss) if state.resume.loss is not None else self._saved_loss()
        if loss is not None:
            loss.drop_class(index, state.config.groups)
        self.state = state.replaced(
            classes=[c for c in state.classes if c != name], text=np.delete(state.text, index, axis=0),
            memory=memory, class_means=state.class_means.without(index), seen=state.seen.without(index),
            calibration=state.calibration.without(index), resume=replace(state.resume, loss=loss, estimators={}),
        )  # fmt: skip
        return freed

    def _text_for(self, names: list[str], given: Mapping[str, np.ndarray] | None) -> np.ndarray:
        if not names:
            return np.zeros((0, self.dim), np.float32)
        if given is not None:
            return unit_rows(np.stack([np.asarray(given[n], np.float32) for n in names]))
        return self._require_encoder().encode_texts([prompt_for(n) for n in names])

    def _fit(self, task: Task, sizes: TrainSizes, on_step: Callable[[int, int], None] | None = None) -> _Fitted:
        """Train the heads on the task's rows with replay, and measure the prototype weight where it is measured;
        the state itself is left as it is."""
        state = self.state
        if not state.trains:
            return _Fitted(None, None, state.prototype_weight)
        held = self._holdout(task.y)
        old = earlier_rows(task.memory, task.ids) if state.method.replay else np.zeros(0, np.int64)
        pool = training_pool(state, task, ~held, old, sizes.replay_rows)
        data = pool.data
        result, heads = self._train(data, sizes.batch, on_step, keep_ids=task.memory.ids)
        weight = self._measured_weight(task, held, data, heads) if held.any() else state.prototype_weight
        domains = state.domains + ([task.domain_name] if task.domain == len(state.domains) else [])
        names = [{state.group_name(k, domains, task.classes): round(w, 4) for k, w in q.items()}
                 for q in result.class_weights]  # fmt: skip
        replayed = len(data.memory_rows)
        training = Training(result.seconds, result.epoch_loss, result.steps, names, batch=sizes.batch,
                            replayed_rows=replayed, replay_rows_available=old.size,
                            translated_rows=len(data.x) - data.new_rows - replayed,
                            translated_rows_available=pool.translated_available,
                            precision=self.runtime.train_precision,
                            held_out_rows=int(held.sum()) if state.uses_prototypes else None)  # fmt: skip
        return _Fitted(training, heads, weight)

    def _holdout(self, y: np.ndarray) -> np.ndarray:
        """(N,) bool: the task's rows held out of training to measure the prototype weight (none when it is fixed
        or the method has no prototypes)."""
        if not self.uses_prototypes or self.config.prototypes.weight is not None:
            return np.zeros(len(y), bool)
        return holdout_mask(y, np.random.default_rng(self.config.seed + 7919 * len(self.state.tasks)))

    def _measured_weight(self, task: Task, held: np.ndarray, data: Any, heads: _Heads) -> float:
        """The prototype weight that classifies best the held-out rows of this task plus a few replayed rows of each
        earlier class (prototypes.validation_rows), with class means from the rows that trained (no peeking)."""
        x, y = task.x, task.y
        means = self.state.class_means.updated(x[~held], y[~held], task.domain)
        stored = data.memory_rows  # not the translated rows: they were made from the class means that score them
        old = stored[validation_rows(data.y[stored])]
        val_x = np.concatenate([x[held], data.x[old]])
        val_y = np.concatenate([y[held], data.y[old]])
        head = heads.merged(val_x) @ scoring.text_prototypes(heads.merged_text, task.text).T  # (V, C)
        return measure_weight(head, means.scores(val_x, len(task.classes)), val_y, self.state.prototype_weight)

    def _saved_loss(self) -> Any:
        """The method's loss rebuilt from the saved estimators (a fresh one without them); None for no loss."""
        kind = self.method.loss
        if kind is None:
            return None
        from edgecl.learn.losses import LOSSES

        return LOSSES[kind].from_arrays(self.config.loss, dict(self.state.resume.estimators))

    def _train(self, data: Any, batch_size: int, on_step: Callable[[int, int], None] | None = None,
               keep_ids: np.ndarray | None = None) -> tuple[Any, _Heads]:  # fmt: skip
        """Train copies of the heads and of the loss; returns the trainer's report and the trained heads. The loss
        keeps the estimators of the rows that train and of `keep_ids` (every row still in memory: under a RAM cap
        only some of them are replayed, and the others keep theirs for later tasks)."""
        from edgecl.learn.adapters import merge
        from edgecl.learn.trainer import TrainConfig, train

        cfg, resume = self.config, self.state.resume
        head = self._head("adapter", resume.head, cfg.adapter, cfg.seed)
        text_head = (
            self._head("text_adapter", resume.text_head, cfg.adapter, cfg.seed + 1) if cfg.adapter.text_head else None
        )
        loss = copy.deepcopy(resume.loss) if resume.loss is not None else self._saved_loss()
        runtime = replace(self.runtime, train_batch=batch_size)  # the batch the RAM cap allows
        train_cfg = TrainConfig(cfg.method, cfg.train, runtime, cfg.loss, seed=cfg.seed + len(self.state.tasks),
                                on_step=on_step)  # fmt: skip
        kept = set(data.ids.tolist()) | (set(np.asarray(keep_ids).tolist()) if keep_ids is not None else set())
        loss.forget(kept)  # estimators of samples evicted from memory are dropped
        result = train(head, text_head, data, train_cfg, loss)
        merged_text = merge(text_head) if text_head is not None else self.state.merged_text
        return result, _Heads(head, text_head, loss, merge(head), merged_text)

    def _head(self, name: str, current: Any, adapter: Any, seed: int) -> Any:
        """A trainable copy of a head: the current one, the saved one, or a fresh zero-initialised one."""
        from edgecl.learn.adapters import load_adapter, lora_head

        if current is not None:
            return copy.deepcopy(current)
        saved = self.state.resume.adapter_dirs.get(name)
        if saved is not None:
            head = load_adapter(self.dim, saved)
            for param_name, param in head.named_parameters():
                param.requires_grad = "lora_" in param_name
            return head
        return lora_head(self.dim, adapter, seed)

    # ---- classifying (pure functions of the state: edgecl.learned.scoring) ----------------------------------
    def scores(self, x: np.ndarray, extra_labels: Sequence[str] = ()) -> tuple[np.ndarray, list[str]]:
        """(N, C + E) cosine scores over learned classes, then the raw image-to-text cosine of each extra label."""
        state = self.state
        return scoring.scores(state, x, self._extra_text(state, extra_labels, None))

    def _extra_text(self, state: LearnedState, labels: Sequence[str],
                    given: Mapping[str, np.ndarray] | None) -> dict[str, np.ndarray]:  # fmt: skip
        """extra label -> (D,) text embedding, for the labels that are not learned classes (`given` skips the
        text encoder)."""
        extra = scoring.extra_labels(state, labels)
        if given is not None:
            given = {clean_name(k): v for k, v in given.items()}
        return dict(zip(extra, self._text_for(extra, given), strict=True))

    def answer_embeddings(self, x: np.ndarray, top_k: int = 5, extra_labels: Sequence[str] = (),
                          min_confidence: float = DEFAULT_MIN_CONFIDENCE,
                          extra_text: Mapping[str, np.ndarray] | None = None) -> list[Answer]:  # fmt: skip
        """Per row: the answer (a class, an extra label, or unknown below `min_confidence`), its confidence and
        the top-k candidates on one probability scale (edgecl.learned.scoring.answer). `extra_text` (label -> (D,)
        text embedding) skips the text encoder for the extra labels."""
        state = self.state  # one value for the whole call, whatever a learn in another thread does meanwhile
        if not state.classes and not extra_labels:
            raise EdgeclError("nothing learned yet and no --labels given: learn a task first or pass labels")
        text = self._extra_text(state, extra_labels, extra_text)
        return scoring.answer(state, x, top_k, text, min_confidence)

    def classify_embeddings(self, x: np.ndarray, top_k: int = 5, extra_labels: Sequence[str] = (),
                            min_confidence: float = DEFAULT_MIN_CONFIDENCE,
                            extra_text: Mapping[str, np.ndarray] | None = None) -> list[dict[str, Any]]:  # fmt: skip
        """answer_embeddings as the JSON contract's dicts (label, unknown, confidence, predictions)."""
        return [a.to_json() for a in self.answer_embeddings(x, top_k, extra_labels, min_confidence, extra_text)]

    def classify_images(self, images: Sequence[Any], top_k: int = 5, extra_labels: Sequence[str] = (),
                        min_confidence: float = DEFAULT_MIN_CONFIDENCE) -> list[dict[str, Any]]:  # fmt: skip
        return self.classify_embeddings(self._require_encoder().encode_images(images), top_k, extra_labels,
                                        min_confidence)  # fmt: skip

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(N,) index of the best learned class."""
        return scoring.predict(self.state, x)

    def _require_encoder(self) -> Any:
        if self.encoder is None:
            raise EdgeclError("this learner has no encoder: pass embeddings, or build it with a model directory")
        return self.encoder

    # ---- persistence (edgecl.learned.files; the state directory commits the files atomically) ---------------
    def save_to(self, folder: Path) -> None:
        """memory.safetensors, learned.npz, estimators.npz, peft adapters, learner.json."""
        files.save(self.state, folder)

    @classmethod
    def load_from(cls, folder: Path, encoder: Any = None, runtime: Runtime | None = None) -> Learner:
        """Read what save_to wrote; `runtime`: this device's (the saved state records none). numpy only; the peft
        adapters are loaded when training resumes."""
        state = files.load(folder)
        return cls(state.config, state.dim, encoder, runtime, state)


def _with_task(state: LearnedState, task: Task, fitted: _Fitted, class_means: ClassMeans,
               record: dict[str, Any]) -> LearnedState:  # fmt: skip
    """`state` with the task learned (its calibration not yet updated)."""
    changes: dict[str, Any] = {}
    if fitted.heads is not None:
        heads = fitted.heads
        changes = {"merged": heads.merged, "merged_text": heads.merged_text,
                   "resume": replace(state.resume, head=heads.head, text_head=heads.text_head, loss=heads.loss)}
    return state.replaced(classes=task.classes, text=task.text, memory=task.memory, tasks=[*state.tasks, record],
                          class_means=class_means, prototype_weight=fitted.prototype_weight, **changes)  # fmt: skip

