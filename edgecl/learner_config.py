"""What a learner is configured with and where each setting comes from: `LearnerConfig`, composed of the configs it
feeds (memory, adapter, loss, training schedule, prototypes) and saved with the learner; its JSON form and the flat
form of earlier releases; and `resolve`, the one place where defaults < device profile < command-line flags.
Device settings (threads, precision, batch sizes, RAM cap) are not here: they are an `edgecl.runtime.Runtime`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from edgecl.errors import EdgeclError
from edgecl.learn.configs import AdapterConfig, LossConfig, TrainSchedule
from edgecl.learn.methods import DEFAULT_GROUPS, DEFAULT_METHOD, METHODS
from edgecl.learn.prototypes import PrototypeConfig
from edgecl.memory import MemoryConfig
from edgecl.runtime import Runtime

DEFAULT_BUDGET_BYTES = 8_000_000
CONFIG_VERSION = 2  # 2: composed parts (1, still read: 24 flat fields, device settings among them)
PARTS: dict[str, type] = {"memory": MemoryConfig, "adapter": AdapterConfig, "loss": LossConfig,
                          "train": TrainSchedule, "prototypes": PrototypeConfig}  # fmt: skip
FLAT_NAMES = {  # a setting's flat name (version 1 files, scripts' overrides) -> (part, field)
    "budget_bytes": ("memory", "budget_bytes"), "codec": ("memory", "codec"), "selection": ("memory", "selection"),
    "groups": ("memory", "groups"), "rank": ("adapter", "rank"), "text_head": ("adapter", "text_head"),
    "temperature": ("loss", "temperature"), "gamma": ("loss", "gamma"), "dro_lambda": ("loss", "dro_lambda"),
    "epochs": ("train", "epochs"), "min_steps": ("train", "min_steps"), "max_steps": ("train", "max_steps"),
    "max_train_seconds": ("train", "max_seconds"), "lr": ("train", "lr"),
    "prototype_weight": ("prototypes", "weight"), "domain_prototype_weight": ("prototypes", "domain_weight"),
    "ncm_text_weight": ("prototypes", "ncm_text_weight"), "translated_replay": ("prototypes", "translated_replay"),
}  # fmt: skip
_NOT_SAVED_IN_VERSION_1 = {"batch_size", "optimizer", "precision", "threads", "extra"}  # now Runtime (or unused)


@dataclass(frozen=True)
class LearnerConfig:
    """Everything that decides what a learner learns; errors name the field. The memory draws with the learner's
    seed, and whether its `auto` codec may pick PQ follows the method (ncm's class means do best on PQ)."""

    method: str = DEFAULT_METHOD
    seed: int = 0
    memory: MemoryConfig = field(default_factory=lambda: MemoryConfig(DEFAULT_BUDGET_BYTES, groups=DEFAULT_GROUPS))
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainSchedule = field(default_factory=TrainSchedule)
    prototypes: PrototypeConfig = field(default_factory=PrototypeConfig)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise EdgeclError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        memory = replace(self.memory, seed=self.seed, auto_pq=METHODS[self.method].memory_means)
        object.__setattr__(self, "memory", memory)  # derived, so that it cannot disagree with the learner

    @property
    def groups(self) -> str:
        """What the memory balances and GDRO weighs: class | class_domain | domain."""
        return self.memory.groups

    @classmethod
    def from_flat(cls, settings: Mapping[str, Any]) -> LearnerConfig:
        """A config from flat names (`method`, `seed` and the keys of FLAT_NAMES, e.g. `budget_bytes`, `epochs`,
        `prototype_weight`): the form scripts pass overrides in. An unknown name is an error listing the known ones."""
        unknown = sorted(set(settings) - set(FLAT_NAMES) - {"method", "seed"})
        if unknown:
            raise EdgeclError(f"unknown setting {unknown[0]!r}; known: {', '.join(['method', 'seed', *FLAT_NAMES])}")
        parts: dict[str, dict[str, Any]] = {name: {} for name in PARTS}
        for name, value in settings.items():
            if name in FLAT_NAMES:
                part, key = FLAT_NAMES[name]
                parts[part][key] = value
        memory = parts.pop("memory")
        memory.setdefault("budget_bytes", DEFAULT_BUDGET_BYTES)
        memory.setdefault("groups", DEFAULT_GROUPS)
        return cls(method=settings.get("method", DEFAULT_METHOD), seed=int(settings.get("seed", 0)),
                   memory=MemoryConfig(**memory), **{k: PARTS[k](**v) for k, v in parts.items()})  # fmt: skip

    def flat(self) -> dict[str, Any]:
        """The settings by their flat names (see from_flat)."""
        parts = self.to_json()
        return {"method": self.method, "seed": self.seed} | {n: parts[p][k] for n, (p, k) in FLAT_NAMES.items()}

    def to_json(self) -> dict[str, Any]:
        """The saved form: the method, the seed and one object per part (`config_version` beside it in learner.json)."""
        saved = asdict(self)
        for derived in ("seed", "auto_pq"):
            del saved["memory"][derived]
        return saved

    @classmethod
    def from_json(cls, saved: Mapping[str, Any], version: int = CONFIG_VERSION) -> LearnerConfig:
        """Read to_json's form, or a version 1 flat config (its device settings are dropped: they come from the device
        profile now; a config from before groups were chosen weighed classes)."""
        if version == 1:
            flat = {k: v for k, v in saved.items() if k not in _NOT_SAVED_IN_VERSION_1}
            return cls.from_flat({"groups": "class"} | flat)
        parts = {name: kind(**saved[name]) for name, kind in PARTS.items()}  # the memory's seed: __post_init__
        return cls(method=saved["method"], seed=int(saved["seed"]), **parts)


@dataclass(frozen=True)
class Settings:
    """A new learner's settings: what it learns (saved) and how this device runs it (not saved)."""

    config: LearnerConfig
    runtime: Runtime


def resolve(profile: Any, *, method: str | None = None, budget_bytes: int | None = None, codec: str | None = None,
            groups: str | None = None, seed: int = 0) -> Settings:  # fmt: skip
    """Defaults < the device profile (its default budget, adapter rank and runtime) < the flags given (None: not
    given). Checking a budget against the profile's maximum is the caller's (it knows about --force)."""
    memory = MemoryConfig(budget_bytes or profile.default_budget_bytes, codec or "auto",
                          groups=groups or DEFAULT_GROUPS)  # fmt: skip
    config = LearnerConfig(method=method or DEFAULT_METHOD, seed=seed, memory=memory,
                           adapter=AdapterConfig(rank=profile.adapter_rank))  # fmt: skip
    return Settings(config, Runtime.from_profile(profile.to_dict()))
