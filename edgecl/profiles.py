"""Device profiles: the DeviceProfile dataclass, loading and validating device_profiles/*.toml and user files."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from edgecl.errors import EdgeclError
from edgecl.learn.calibration import DEFAULT_MIN_CONFIDENCE
from edgecl.runtime import OPTIMIZERS, PRECISIONS
from edgecl.units import BudgetError, parse_bytes

DEFAULT_DEVICE = "cpu"
OPTIONAL_KEYS = {"sources", "min_confidence"}
KNOWN_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


class ProfileError(EdgeclError):
    """A device profile is unknown, unreadable or invalid (the message names the key)."""


@dataclass(frozen=True)
class DeviceProfile:
    """Budgets and runtime settings for one kind of device; `sources` says where each value comes from."""

    name: str
    description: str
    providers: tuple[str, ...]
    threads: int
    default_budget: str
    max_budget: str
    ram_cap: str
    default_backbone: str
    encode_batch: int
    train_batch: int
    adapter_rank: int
    optimizer: str
    train_precision: str
    classify_p95_ms: float
    learn_images_per_s: float
    min_confidence: float = DEFAULT_MIN_CONFIDENCE  # classify answers `unknown` below it (0: never); optional key
    sources: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check(bool(self.name.strip()), "name", "must not be empty")
        _check(bool(self.providers) and all(p in KNOWN_PROVIDERS for p in self.providers), "providers",
               f"must list execution providers from {', '.join(KNOWN_PROVIDERS)}")  # fmt: skip
        for key, low, high in (("threads", 1, 1024), ("encode_batch", 1, 65536), ("train_batch", 2, 1 << 20),
                               ("adapter_rank", 1, 1024)):  # what Runtime and AdapterConfig accept
            value = getattr(self, key)
            _check(isinstance(value, int) and low <= value <= high, key, f"must be an integer from {low} to {high}")
        for key in ("default_budget", "max_budget", "ram_cap"):
            try:
                parse_bytes(getattr(self, key))
            except BudgetError as exc:
                raise ProfileError(f"profile {self.name!r}: key {key!r}: {exc}") from None
        _check(self.default_budget_bytes <= self.max_budget_bytes, "default_budget", "must not exceed max_budget")
        _check(self.optimizer in OPTIMIZERS, "optimizer", f"must be one of {', '.join(OPTIMIZERS)}")
        _check(self.train_precision in PRECISIONS, "train_precision", f"must be one of {', '.join(PRECISIONS)}")
        for key in ("classify_p95_ms", "learn_images_per_s"):
            _check(isinstance(getattr(self, key), int | float) and getattr(self, key) > 0, key, "must be > 0")
        _check(isinstance(self.min_confidence, int | float) and 0 <= self.min_confidence <= 1, "min_confidence",
               "must be a number from 0 to 1 (0 turns unknown off)")  # fmt: skip
        from edgecl.backbones import parse_backbone_id

        try:
            parse_backbone_id(self.default_backbone)
        except EdgeclError as exc:
            raise ProfileError(f"profile {self.name!r}: key 'default_backbone': {exc}") from None

    @property
    def default_budget_bytes(self) -> int:
        return parse_bytes(self.default_budget)

    @property
    def max_budget_bytes(self) -> int:
        return parse_bytes(self.max_budget)

    @property
    def ram_cap_bytes(self) -> int:
        return parse_bytes(self.ram_cap)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}


def _check(ok: bool, key: str, what: str) -> None:
    if not ok:
        raise ProfileError(f"key {key!r} {what}")


def parse_profile(data: dict[str, Any], source: str) -> DeviceProfile:
    """Validate a TOML table: unknown or missing keys, and bad values, are errors naming the key and the file."""
    known = {f.name for f in fields(DeviceProfile)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ProfileError(f"{source}: unknown key {unknown[0]!r}; valid keys: {', '.join(sorted(known))}")
    missing = sorted(known - set(data) - OPTIONAL_KEYS)
    if missing:
        raise ProfileError(f"{source}: missing key {missing[0]!r}")
    values = dict(data)
    if not isinstance(values.get("providers"), list):
        raise ProfileError(f"{source}: key 'providers' must be a list of execution provider names")
    values["providers"] = tuple(values["providers"])
    for key in ("name", "description", "default_budget", "max_budget", "ram_cap", "default_backbone"):
        if not isinstance(values[key], str):
            raise ProfileError(f"{source}: key {key!r} must be a string")
    try:
        return DeviceProfile(**values)
    except ProfileError as exc:
        raise ProfileError(f"{source}: {exc}") from None


def load_profile_file(path: str | Path) -> DeviceProfile:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProfileError(f"{path}: profile file not found") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ProfileError(f"{path}: not a readable TOML profile ({exc})") from None
    return parse_profile(data, str(path))


def _shipped() -> dict[str, Any]:
    folder = resources.files("edgecl.device_profiles")
    return {p.name.removesuffix(".toml"): p for p in folder.iterdir() if p.name.endswith(".toml")}


def list_profiles() -> list[DeviceProfile]:
    """Every shipped profile, sorted by name."""
    return [load_profile_file(Path(str(p))) for _, p in sorted(_shipped().items())]


def get_profile(name: str | None = None, profile_file: str | None = None) -> DeviceProfile:
    """A user's --profile-file, else a shipped profile by --device name (default: cpu)."""
    if profile_file:
        return load_profile_file(profile_file)
    shipped = _shipped()
    key = name or DEFAULT_DEVICE
    if key not in shipped:
        raise ProfileError(f"unknown device {key!r}; known: {', '.join(sorted(shipped))} (or pass --profile-file)")
    return load_profile_file(Path(str(shipped[key])))
