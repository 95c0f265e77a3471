"""How this machine runs a learner: execution providers, threads, batch sizes, training precision and optimizer, RAM
cap. Built from the device profile whenever a state is opened and never saved with the learner, the way peft keeps
`LoraRuntimeConfig` out of a saved adapter: a state moved to another device trains with that device's settings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edgecl.units import parse_bytes

OPTIMIZERS = ("adamw", "adamw8bit")  # adamw8bit: bitsandbytes' 8-bit AdamW
PRECISIONS = ("fp32", "bf16", "fp16")  # the heads' forward pass under torch.autocast; losses stay fp32
DEFAULT_ENCODE_BATCH = 16  # images per encoder batch: INT8 throughput saturates at 16 on 2 cores (cpu profile)
# torch threads for the adapter heads: PERF_NOTES, 2 torch threads can collapse on a loaded 2-core box
TRAIN_THREADS = 1


@dataclass(frozen=True)
class Runtime:
    """Device settings of one process; errors name the field."""

    providers: tuple[str, ...] | None = None  # ONNX Runtime execution providers in order (None: CPU)
    threads: int | None = None  # ONNX Runtime intra-op threads (None: onnxruntime's default)
    encode_batch: int = DEFAULT_ENCODE_BATCH  # images per encoder batch, before the RAM cap shrinks it
    train_batch: int = 256  # rows per optimiser step, before the RAM cap shrinks it
    train_threads: int = TRAIN_THREADS
    optimizer: str = "adamw"
    train_precision: str = "fp32"  # autocast of the heads' training: fp32, bf16 or fp16 (not the towers' int8 / fp32)
    ram_cap_bytes: int | None = None  # the learn process's RAM cap above what its host held (edgecl.ram)

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"Runtime.optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.train_precision not in PRECISIONS:
            raise ValueError(f"Runtime.train_precision must be one of {PRECISIONS}, got {self.train_precision!r}")
        if self.train_batch < 2 or self.encode_batch < 1 or self.train_threads < 1:
            raise ValueError("Runtime: train_batch >= 2, encode_batch >= 1 and train_threads >= 1 are required")

    @classmethod
    def from_profile(cls, profile: Mapping[str, Any]) -> Runtime:
        """The runtime a device profile (DeviceProfile.to_dict(), as a state's metadata records it) asks for; keys
        an older state's profile lacks keep their defaults."""
        default = cls()
        providers = profile.get("providers")
        cap = profile.get("ram_cap")
        return cls(
            providers=tuple(providers) if providers else None,
            threads=profile.get("threads"),
            encode_batch=int(profile.get("encode_batch", default.encode_batch)),
            train_batch=int(profile.get("train_batch", default.train_batch)),
            optimizer=str(profile.get("optimizer", default.optimizer)),
            train_precision=str(profile.get("train_precision", default.train_precision)),
            ram_cap_bytes=parse_bytes(cap) if cap else None,
        )
