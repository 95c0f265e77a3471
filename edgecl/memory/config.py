"""What a replay memory is configured with: its byte budget, codec, selection, seed and groups; errors name the
field."""

from __future__ import annotations

from dataclasses import dataclass

from edgecl.errors import EdgeclError
from edgecl.memory.codec import CODEC_NAMES
from edgecl.memory.groups import GROUPINGS
from edgecl.units import BudgetError


@dataclass(frozen=True)
class MemoryConfig:
    """Budget and policy of a replay memory."""

    budget_bytes: int
    codec: str = "auto"  # fp16 | int8 | int4 | pq | auto
    selection: str = "random"  # random | herding
    seed: int = 0
    auto_pq: bool = True  # may `auto` pick PQ for a tiny budget? (best for NCM; trained methods do better on int4)
    groups: str = "class_domain"  # what gets equal shares: class | class_domain | domain (GROUPINGS)

    def __post_init__(self) -> None:
        if self.budget_bytes <= 0:
            raise BudgetError(f"MemoryConfig.budget_bytes must be > 0, got {self.budget_bytes}")
        if self.codec not in (*CODEC_NAMES, "auto"):
            raise EdgeclError(f"MemoryConfig.codec: unknown codec {self.codec!r}; use {', '.join(CODEC_NAMES)} or auto")
        if self.selection not in ("random", "herding"):
            raise EdgeclError(f"MemoryConfig.selection must be 'random' or 'herding', got {self.selection!r}")
        if self.groups not in GROUPINGS:
            raise EdgeclError(f"unknown groups {self.groups!r}; choose one of {', '.join(GROUPINGS)}")
