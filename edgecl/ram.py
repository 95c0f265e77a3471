"""Keeping `edgecl learn` under a device profile's RAM cap.

The process's resident memory is measured (polled while a batch runs), the cost of one more item in a batch is
learnt from what the batches actually used, and batch sizes are planned from the headroom left under the cap:
encoding starts with a small probe batch and then uses the largest batch that fits; training sizes its batch and
the number of replayed memory rows it decodes the same way. A cap that not even one image fits is an error.
"""

from __future__ import annotations

import ctypes
import functools
import sys
import threading
from dataclasses import dataclass, field
from types import TracebackType

from edgecl.errors import EdgeclError

HEADROOM = 0.95  # plan up to this share of the cap; the rest absorbs allocator slack and sampling misses
PROBE_BATCH = 2  # first encode batch under a cap: small, so its measured cost can size the next ones
MIN_TRAIN_BATCH = 2  # contrastive losses need two rows
# under a cap that binds, replay rows are planned first beside a batch of this many rows (or the profile's, if
# smaller); the batch then grows into what is left: replay is what keeps earlier classes, a row of a batch costs
# about as much as 8 replayed rows
REPLAY_FIRST_BATCH = 32
SAMPLE_INTERVAL_S = 0.002
# Training memory per row of a batch, in f32 values: head input/LoRA/output/normalised activations and their
# gradients (~16 per dimension) plus logits, softmax and their gradients over the classes (~8 per class).
TRAIN_FLOATS_PER_DIM, TRAIN_FLOATS_PER_CLASS = 16, 8
# A replayed memory row costs its decoded f32 vector twice while the training pool is assembled.
REPLAY_COPIES = 2


@dataclass(frozen=True)
class TrainSizes:
    """How big training may get for one task: the batch, and how many replayed rows to decode (None: all)."""

    batch: int
    replay_rows: int | None = None


class RamCapError(EdgeclError):
    """The profile's RAM cap cannot be met, even with the smallest batches."""


M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
MMAP_THRESHOLD_BYTES = 1 << 20


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The process's C library when it is glibc (malloc_trim / mallopt), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


def return_large_blocks_to_os() -> None:
    """Have glibc map blocks >= 1 MiB (image batches, activations) with mmap, so freeing them lowers RSS.
    glibc otherwise raises this threshold as large blocks are freed, and a long encode creeps upwards."""
    libc = _glibc()
    if libc is not None:
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


def release_free_memory() -> None:
    """Hand memory the process has freed back to the system (glibc keeps it otherwise)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


_OWNS_PROCESS = [False]  # set by the `edgecl` console script: the whole process is learning's to count


def count_whole_process() -> None:
    """The RAM cap covers this whole process (the `edgecl` command owns it)."""
    _OWNS_PROCESS[0] = True


def host_bytes() -> int:
    """Memory the host process held before learning started: not learning's to count against the cap when edgecl
    runs inside someone else's process (a notebook, a service, a test runner); 0 when edgecl owns the process."""
    return 0 if _OWNS_PROCESS[0] else rss_bytes()


def rss_bytes() -> int:
    """Resident set size of this process now."""
    import psutil

    return int(psutil.Process().memory_info().rss)


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far. Linux: VmHWM of /proc/self/status. getrusage's ru_maxrss
    is not used there: it also counts the parent's memory when a large process forked this one."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB elsewhere
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * scale


class PeakRss:
    """Context manager: the highest RSS seen while its block runs (polled every SAMPLE_INTERVAL_S).

    Polling rather than resetting the kernel's high-water mark keeps outside measurements (`/usr/bin/time -v`,
    getrusage) intact."""

    def __init__(self, interval_s: float = SAMPLE_INTERVAL_S) -> None:
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.before = self.peak = 0

    def _poll(self) -> None:
        while not self._stop.wait(self._interval):
            self.peak = max(self.peak, rss_bytes())

    def __enter__(self) -> PeakRss:
        self.before = self.peak = rss_bytes()
        self._thread = threading.Thread(target=self._poll, name="edgecl-rss", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak = max(self.peak, rss_bytes())


def _mib(n: float) -> str:
    return f"{n / 2**20:.0f} MiB"


def cap_error(cap_bytes: int, needed: float, what: str) -> RamCapError:
    return RamCapError(
        f"{what} needs about {_mib(needed)} but the device profile's RAM cap is {_mib(cap_bytes)}; "
        "raise ram_cap in your own profile (--profile-file, for a new --state-dir) or use a smaller backbone"
    )


@dataclass
class BatchPlan:
    """Batch sizes for one kind of work under a RAM cap (no cap: always `max_batch`).

    Call `record(size, before, peak)` after each batch; `size` is then the largest batch whose measured cost per
    item fits HEADROOM of the cap on top of what the process holds now."""

    cap_bytes: int | None
    max_batch: int
    what: str = "encoding"
    per_item_bytes: float = 0.0
    used: list[int] = field(default_factory=list)
    peak_bytes: int = 0
    start_bytes: int = 0
    limited: bool = False  # the cap made some batch smaller than max_batch
    size: int = field(init=False)
    release_after_batch: bool = field(init=False)  # have the encoder hand memory back after each batch

    def __post_init__(self) -> None:
        self.max_batch = max(1, self.max_batch)
        self.size = self.max_batch if self.cap_bytes is None else min(self.max_batch, PROBE_BATCH)
        self.release_after_batch = self.cap_bytes is not None

    def check_start(self) -> None:
        """Record where the process starts (under a cap, after telling glibc to return freed blocks) and refuse to
        start when it already holds more than the cap."""
        if self.cap_bytes is not None:
            return_large_blocks_to_os()
            release_free_memory()
        now = self.start_bytes = rss_bytes()
        if self.cap_bytes is not None and now > self.cap_bytes:
            raise cap_error(self.cap_bytes, now, f"{self.what} (the loaded models and libraries alone)")

    def record(self, size: int, before: int, peak: int) -> None:
        """After each batch. While memory is handed back after every batch, RSS shows what a batch costs and the
        next size is planned from it; once the full batch fits with that cost, memory is kept between batches
        (faster: the next full batch reuses it) and sizes only drop again if a peak nears the cap."""
        self.used.append(size)
        self.peak_bytes = max(self.peak_bytes, peak)
        if self.cap_bytes is None:
            return
        if peak > self.cap_bytes and size == 1:
            raise cap_error(self.cap_bytes, peak, f"{self.what} one image at a time")
        self.limited = self.limited or (len(self.used) > 1 and self.size < self.max_batch)  # past the probe
        release_free_memory()
        if self.release_after_batch:
            self.per_item_bytes = max(self.per_item_bytes, max(0, peak - before) / size)
            held = rss_bytes()
            self.size = fit_batch(self.cap_bytes, held, self.per_item_bytes, self.max_batch)
            # kept memory grows in chunks (ONNX Runtime's arena doubles): keep it only with room for twice the cost
            self.release_after_batch = fit_batch(self.cap_bytes, held, 2 * self.per_item_bytes, self.max_batch) < (
                self.max_batch
            )
        elif peak > self.cap_bytes * HEADROOM:  # kept memory grew more than measured: back to measuring
            self.release_after_batch, self.size, self.limited = True, max(1, size // 2), True

    def summary(self) -> dict[str, object]:
        return {"max": self.max_batch, "sizes_used": sorted(set(self.used)), "batches": len(self.used),
                "bytes_per_item": round(self.per_item_bytes), "start_rss_bytes": self.start_bytes,
                "limited_by_ram_cap": self.limited,
                "peak_rss_bytes": self.peak_bytes}  # fmt: skip


def fit_batch(cap_bytes: int | None, held_bytes: int, per_item_bytes: float, max_batch: int) -> int:
    """The largest batch (1..max_batch) whose items fit HEADROOM of the cap on top of `held_bytes`."""
    if cap_bytes is None or per_item_bytes <= 0:
        return max_batch
    room = cap_bytes * HEADROOM - held_bytes
    return max(1, min(max_batch, int(room // per_item_bytes)))


def train_row_bytes(dim: int, n_classes: int) -> int:
    """Estimated training memory per batch row (see TRAIN_FLOATS_PER_*)."""
    return 4 * (TRAIN_FLOATS_PER_DIM * dim + TRAIN_FLOATS_PER_CLASS * max(1, n_classes))


def plan_training(cap_bytes: int | None, max_batch: int, dim: int, n_classes: int, n_new: int,
                  n_replay: int = 0) -> TrainSizes:  # fmt: skip
    """Size training for what the process holds now (call it once torch and both towers are loaded): `n_replay`
    the rows the task would replay (earlier memory rows and translated ones) get room first, beside a batch of
    REPLAY_FIRST_BATCH rows; the batch (up to max_batch) takes what is left, and replay_rows what is left after it."""
    if cap_bytes is None:
        return TrainSizes(max_batch, None)
    release_free_memory()
    pool_row = 4 * (dim + n_classes)  # the pool copies the task's embeddings; each pool row's frozen text cosines
    held = rss_bytes() + n_new * pool_row
    row, replay_row = train_row_bytes(dim, n_classes), REPLAY_COPIES * 4 * dim + 4 * n_classes
    room = cap_bytes * HEADROOM - held
    first = max(MIN_TRAIN_BATCH, min(max_batch, REPLAY_FIRST_BATCH, int(room // row)))
    if room - first * row <= 0:
        raise cap_error(cap_bytes, (held + first * row) / HEADROOM, "training this task")
    reserved = min(n_replay, int((room - first * row) // replay_row)) * replay_row
    batch = max(first, min(max_batch, int((room - reserved) // row)))
    return TrainSizes(batch, int((room - batch * row) // replay_row))
