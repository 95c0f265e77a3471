"""What a replay memory holds, as one typed value: bytes against the budget, codec, samples per class and per
(class, domain), the mean reconstruction cosine. `edgecl learn --json` and `edgecl status --json` report a subset."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class MemoryStats:
    bytes: int  # the serialised file's size, always <= budget_bytes
    budget_bytes: int
    codec: str  # the codec in use ("auto" until the first add chooses one)
    bytes_per_sample: int | None  # code bytes + the 7 bytes of label, domain and id beside each (None: no codec yet)
    samples: int
    per_class: dict[str, int]
    per_class_domain: dict[str, int]  # "class|domain" -> samples, once there are two domains (else empty)
    mean_reconstruction_cosine: float | None  # over every sample ever encoded (None: none yet)
    selection: str  # random | herding

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
