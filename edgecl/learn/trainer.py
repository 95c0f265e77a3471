"""The training loop over frozen embeddings (no file I/O): mini-batches of new data and decoded memory."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from edgecl.errors import EdgeclError
from edgecl.learn.adapters import LoraFactors, lora_factors
from edgecl.learn.configs import LossConfig, TrainSchedule
from edgecl.learn.losses import LOSSES, LossOutput
from edgecl.learn.methods import DEFAULT_METHOD, METHODS
from edgecl.learn.similarity import LoraSimilarities, Similarities, Sims
from edgecl.runtime import PRECISIONS, Runtime
from edgecl.vectors import unit_rows

TRAINED_METHODS = tuple(name for name, method in METHODS.items() if method.trains)
AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
assert tuple(AUTOCAST_DTYPES) == PRECISIONS
DIVERGENCE_FACTOR = 1e3  # an epoch loss this many times the first one means training diverged
# the frozen cosines of the pool rows a run's batches draw to every class text are computed once per run up to this
# size (the RAM cap's planning counts them, edgecl.ram.plan_training); beyond it, each step computes its batch's rows
FROZEN_TABLE_BYTES = 64 << 20
TABLE_CHUNK_ROWS = 1024  # the table is filled this many rows at a time (a gathered chunk of rows is all it copies)


class TrainingDivergedError(EdgeclError):
    """The loss became NaN/inf or exploded; the previous learned state is kept."""


@dataclass(frozen=True)
class TrainConfig:
    """One training run: the method, its schedule and loss (saved with the learner) and this device's runtime (its
    `train_batch` is the batch the RAM cap allows)."""

    method: str = DEFAULT_METHOD
    schedule: TrainSchedule = field(default_factory=TrainSchedule)
    runtime: Runtime = field(default_factory=Runtime)
    loss: LossConfig = field(default_factory=LossConfig)
    seed: int = 0
    on_step: Callable[[int, int], None] | None = field(default=None, compare=False, repr=False)  # (done, steps)

    def __post_init__(self) -> None:
        if self.method not in TRAINED_METHODS:
            raise ValueError(f"TrainConfig.method must be one of {TRAINED_METHODS}, got {self.method!r}")

    def steps_for(self, n_new: int) -> int:
        """The schedule's steps for a task of n_new new rows (TrainSchedule.steps_for)."""
        return self.schedule.steps_for(n_new)


@dataclass(frozen=True)
class TrainData:
    """The training pool. x (N, D) f32 frozen embeddings; y (N,) class index into text; ids (N,) stable ids."""

    x: np.ndarray
    y: np.ndarray
    ids: np.ndarray
    text: np.ndarray  # (C, D) f32 class text embeddings of every seen class
    task_classes: np.ndarray  # class indices of the current task (finetune's candidates)
    n_new: int = -1  # rows [0, n_new) are the task's new data, the rest replayed memory (-1: all new)
    groups: np.ndarray | None = None  # (N,) int64 group key of each row for GDRO (edgecl.memory.policy); None: y

    @property
    def new_rows(self) -> int:
        """How many of the pool's rows are the task's new data."""
        return len(self.x) if self.n_new < 0 else self.n_new

    @property
    def memory_rows(self) -> np.ndarray:
        """Pool indices of the replayed memory rows: after the new rows, those with a memory id (the rows translated
        for earlier groups, edgecl.learn.translation, carry none: id < 0)."""
        return self.new_rows + np.flatnonzero(self.ids[self.new_rows :] >= 0)

    def batches(self, batch_size: int, steps: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
        """`steps` batches of row indices. New rows are visited in reshuffled passes, up to half a batch at a
        time; with memory, each batch adds as many memory rows drawn uniformly (experience replay)."""
        n_new = self.new_rows
        n_mem = len(self.x) - n_new
        take = batch_size if n_mem == 0 else max(1, batch_size // 2)
        order, at = rng.permutation(n_new), 0
        for _ in range(steps):
            if at >= n_new:
                order, at = rng.permutation(n_new), 0
            new, at = order[at : at + take], at + take
            if n_mem:
                new = np.concatenate([new, n_new + rng.choice(n_mem, size=len(new), replace=n_mem < len(new))])
            yield new


REPORT_POINTS = 10  # the loss curve is reported as the mean loss of this many equal spans of steps


@dataclass
class TrainReport:
    epoch_loss: list[float]  # mean loss over each of up to REPORT_POINTS equal spans of the steps
    class_weights: list[dict[int, float]]  # gdro's q at the end of each span (class index -> weight)
    steps: int
    seconds: float


def make_optimizer(params: list[torch.nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.runtime.optimizer == "adamw8bit":
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit(params, lr=cfg.schedule.lr, weight_decay=cfg.schedule.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.schedule.lr, weight_decay=cfg.schedule.weight_decay)


def make_loss(cfg: TrainConfig) -> Any:
    """A fresh loss object of the method's kind (edgecl.learn.losses.LOSSES)."""
    kind = METHODS[cfg.method].loss
    assert kind is not None, f"method {cfg.method} trains nothing"
    return LOSSES[kind](cfg.loss)


def train(head: torch.nn.Module, text_head: torch.nn.Module | None, data: TrainData, cfg: TrainConfig,
          loss: Callable[..., LossOutput] | None = None) -> TrainReport:  # fmt: skip
    """Train the heads in place with `loss` (its estimators, GCL's and GDRO's, are updated in place: the learner
    keeps the object across tasks; None: a fresh loss); raise TrainingDivergedError on a NaN or exploding loss.
    Torch's global seed and thread count are set for the run and restored afterwards (a host process, such as
    `edgecl serve` or an app using edgecl.open, keeps its own)."""
    with torch_globals(cfg.seed, cfg.runtime.train_threads):
        return _train(head, text_head, data, cfg, loss)


@contextlib.contextmanager
def torch_globals(seed: int, threads: int | None = None) -> Iterator[None]:
    """Torch's global RNG seeded with `seed` (and its thread count set) inside the block, both as they were after."""
    before = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        if threads is not None:
            torch.set_num_threads(threads)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            torch.set_num_threads(before)


def _train(head: torch.nn.Module, text_head: torch.nn.Module | None, data: TrainData, cfg: TrainConfig,
           loss: Callable[..., LossOutput] | None) -> TrainReport:  # fmt: skip
    start = time.perf_counter()
    rng = np.random.default_rng(cfg.seed)
    params = [p for m in (head, text_head) if m is not None for p in m.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, cfg)
    fp16 = cfg.runtime.train_precision == "fp16"
    scaler = torch.amp.GradScaler("cpu", enabled=fp16)  # fp16 gradients underflow unscaled
    loss_fn = make_loss(cfg) if loss is None else loss
    x, y = torch.from_numpy(np.asarray(data.x, np.float32)), torch.from_numpy(data.y.astype(np.int64))  # no copy
    ids, text = torch.from_numpy(data.ids.astype(np.int64)), torch.from_numpy(data.text.astype(np.float32))
    steps = cfg.steps_for(data.new_rows)
    drawn = drawn_rows(data, cfg.runtime.train_batch, steps, cfg.seed)
    scorer = _scorer(head, text_head, x, text, cfg.runtime.train_precision, drawn)
    groups = y if data.groups is None else torch.from_numpy(data.groups.astype(np.int64))
    only_task = METHODS[cfg.method].task_classes_only
    candidates = torch.from_numpy(data.task_classes.astype(np.int64)) if only_task else None
    span = math.ceil(steps / REPORT_POINTS)
    epoch_loss: list[float] = []
    weights: list[dict[int, float]] = []
    total, count, last, done = 0.0, 0, None, 0
    tick = max(1, steps // 100)  # how often progress is told
    head.train()
    for step, rows in enumerate(data.batches(cfg.runtime.train_batch, steps, rng), 1):
        if len(rows) >= 2:
            last = _step(scorer, optimizer, scaler, loss_fn, (y, ids, candidates, groups), rows, cfg)
            total, count, done = total + float(last.per_sample.sum()), count + len(rows), done + 1
        out_of_time = time.perf_counter() - start > cfg.schedule.max_seconds
        if cfg.on_step is not None and (step % tick == 0 or step == steps or out_of_time):
            cfg.on_step(steps if out_of_time else step, steps)
        if step % span == 0 or step == steps or out_of_time:
            epoch_loss.append(total / max(1, count))
            _check_divergence(epoch_loss, cfg)
            if last is not None and last.class_weights is not None:
                weights.append(last.class_weights)
            total, count = 0.0, 0
            if out_of_time:
                break
    head.eval()
    return TrainReport(epoch_loss, weights, done, time.perf_counter() - start)


def _step(scorer: Callable[[torch.Tensor], Sims], optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
          loss_fn: Callable[..., LossOutput], tensors: tuple, rows: np.ndarray,
          cfg: TrainConfig) -> LossOutput:  # fmt: skip
    """One optimiser step on the pool rows `rows`; raises TrainingDivergedError on a non-finite loss."""
    y, ids, candidates, groups = tensors
    batch = torch.from_numpy(rows)
    out = loss_fn(scorer(batch), y[batch], ids[batch], candidates, groups[batch])
    if not torch.isfinite(out.objective):
        raise TrainingDivergedError(f"{cfg.method} loss became {float(out.objective.detach())}; try a lower --lr")
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(out.objective).backward()
    scaler.step(optimizer)
    scaler.update()
    return out


def drawn_rows(data: TrainData, batch_size: int, steps: int, seed: int) -> np.ndarray:
    """(N,) bool: the pool rows a run's batches will draw, from a second generator on the run's seed (the batches
    are drawn again, one at a time, as the run goes: memory stays O(N) however many steps)."""
    drawn = np.zeros(len(data.x), bool)
    for rows in data.batches(batch_size, steps, np.random.default_rng(seed)):
        drawn[rows] = True
    return drawn


def _scorer(head: torch.nn.Module, text_head: torch.nn.Module | None, x: torch.Tensor, text: torch.Tensor,
            precision: str, drawn: np.ndarray) -> Callable[[torch.Tensor], Sims]:  # fmt: skip
    """How a step turns its batch (pool row indices, among the rows `drawn`, (N,) bool) into the similarities its
    loss scores. A LoRA head over frozen texts: factored (LoraSimilarities), over the frozen cosines
    x . text^T of the drawn rows computed here once when they fit FROZEN_TABLE_BYTES (else per batch, without
    gradient), so that a step's cost barely grows with the classes learned. Otherwise (a text head, another
    module): the heads' outputs times the texts."""
    factors = lora_factors(head) if text_head is None else None
    if factors is None:
        return lambda batch: Similarities(*_forward(head, text_head, x[batch], text, precision))
    lora = factors  # a name the closure below keeps as the narrowed type
    text_t = text.T.contiguous()  # (D, C): B^T text^T reads it in the order a (r, D) x (D, C) product is fast
    rows_of = _frozen_table_rows(drawn, len(text))
    table = None if rows_of is None else _frozen_table(x, text_t, rows_of.used)

    def similarities(batch: torch.Tensor) -> Sims:
        rows = x[batch]
        with torch.no_grad():
            base = rows @ text_t if table is None else table[torch.from_numpy(rows_of.row(batch.numpy()))]
        return _lora_similarities(lora, rows, base, text_t, precision)

    return similarities


@dataclass(frozen=True)
class _TableRows:
    used: np.ndarray  # (U,) the pool rows the frozen table holds, ascending
    at: np.ndarray  # (N,) a pool row's row in the table (-1: not drawn)

    def row(self, batch: np.ndarray) -> np.ndarray:
        """The table rows of the pool rows `batch` (every one of them drawn)."""
        at = self.at[batch]
        if (at < 0).any():
            raise RuntimeError("internal error: a batch row the frozen cosine table does not hold")
        return at


def _frozen_table_rows(drawn: np.ndarray, n_classes: int) -> _TableRows | None:
    """Which pool rows the frozen table holds (those drawn), or None when they would not fit FROZEN_TABLE_BYTES."""
    used = np.flatnonzero(drawn)
    if len(used) * n_classes * 4 > FROZEN_TABLE_BYTES:
        return None
    at = np.cumsum(drawn) - 1
    at[~drawn] = -1
    return _TableRows(used, at)


def _frozen_table(x: torch.Tensor, text_t: torch.Tensor, used: np.ndarray) -> torch.Tensor:
    """(U, C) x[used] . text^T, filled TABLE_CHUNK_ROWS rows at a time (no gathered copy of every row)."""
    table = torch.empty((len(used), text_t.shape[1]), dtype=x.dtype)
    with torch.no_grad():
        for first in range(0, len(used), TABLE_CHUNK_ROWS):
            rows = torch.from_numpy(used[first : first + TABLE_CHUNK_ROWS])
            torch.matmul(x[rows], text_t, out=table[first : first + len(rows)])
    return table


def _lora_similarities(factors: LoraFactors, e: torch.Tensor, base: torch.Tensor, text_t: torch.Tensor,
                       precision: str) -> LoraSimilarities:  # fmt: skip
    """The LoRA head's part of a batch's cosines (its output's norm and u = scale * dropout(e) A^T), under autocast
    for bf16/fp16 as the head's own forward runs, returned as fp32."""
    dtype = AUTOCAST_DTYPES[precision]
    with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        u = factors.scale * (factors.dropout(e) @ factors.a.T)  # (B, r)
        norm = torch.linalg.vector_norm(e + u @ factors.b.T, dim=1, keepdim=True)  # (B, 1)
    return LoraSimilarities(base, u.float(), norm.float().clamp_min(1e-12), text_t, factors.b)


def _forward(head: torch.nn.Module, text_head: torch.nn.Module | None, x: torch.Tensor, text: torch.Tensor,
             precision: str) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """The heads' outputs (image rows, class texts); under autocast for bf16/fp16, returned as fp32."""
    dtype = AUTOCAST_DTYPES[precision]
    with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        z = head(x)
        t = torch.nn.functional.normalize(text_head(text), dim=-1) if text_head is not None else text
    return z.float(), t.float()


def _check_divergence(epoch_loss: list[float], cfg: TrainConfig) -> None:
    latest = epoch_loss[-1]
    rise = latest - epoch_loss[0]  # GCL/GDRO losses go negative as they fall: only a rise is divergence
    if not math.isfinite(latest) or rise > DIVERGENCE_FACTOR * max(abs(epoch_loss[0]), 1e-3):
        raise TrainingDivergedError(f"{cfg.method} training diverged (epoch losses {epoch_loss}); try a lower --lr")


def synthetic_data(rows: int, dim: int, n_classes: int, seed: int = 0) -> TrainData:
    """Random unit rows with random labels and class texts: for steps whose cost, not result, matters (the warm-up
    below, `edgecl profile`'s training speed)."""
    rng = np.random.default_rng(seed)
    x = unit_rows(rng.standard_normal((rows, dim)).astype(np.float32))
    y = rng.integers(0, n_classes, rows)
    text = unit_rows(rng.standard_normal((n_classes, dim)).astype(np.float32))
    return TrainData(x, y, np.arange(rows), text, np.arange(n_classes))


def warm_up(dim: int, runtime: Runtime, rank: int = 8) -> None:
    """One throw-away training step on random unit vectors with this runtime's optimizer and precision: torch's lazily
    loaded kernels, peft and the allocator's pools become resident, so that RAM planning (edgecl.ram) measures them
    before real work."""
    from edgecl.learn.adapters import AdapterConfig, lora_head

    data = synthetic_data(4, dim, 2)
    cfg = TrainConfig(method=DEFAULT_METHOD, schedule=TrainSchedule(epochs=1, min_steps=1, max_steps=1),
                      runtime=replace(runtime, train_batch=4))  # fmt: skip
    train(lora_head(dim, AdapterConfig(rank=rank)), None, data, cfg)
