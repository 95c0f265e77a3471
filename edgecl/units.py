"""Byte quantities as users type them: "8MB" = 8,000,000 bytes, "8MiB" = 8,388,608, "64KB", "1.5MB", "4096"."""

from __future__ import annotations

import re

from edgecl.errors import EdgeclError

_MULTIPLIERS = {
    "b": 1,
    "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}  # fmt: skip
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*$", re.IGNORECASE)
ACCEPTED_FORMS = "e.g. 8MB, 8MiB, 1.5MB, 64KB, 512KiB, 1GB, 4096 (bytes); KB/MB/GB = 1000^n, KiB/MiB/GiB = 1024^n"


class BudgetError(EdgeclError):
    """A byte budget that cannot be parsed, or that cannot hold what it must."""


def parse_bytes(text: str | int) -> int:
    """Parse a byte quantity; decimals are allowed with a unit and rounded down to whole bytes."""
    if isinstance(text, bool):
        raise BudgetError(f"invalid budget {text!r}; {ACCEPTED_FORMS}")
    if isinstance(text, int):
        value = text
    elif str(text).strip().startswith("-"):
        raise BudgetError(f"budget must be more than 0 bytes, got {text!r}; {ACCEPTED_FORMS}")
    else:
        match = _PATTERN.match(str(text))
        unit = match.group(2).lower() if match else ""
        if not match or unit not in _MULTIPLIERS and unit != "":
            raise BudgetError(f"invalid budget {text!r}; {ACCEPTED_FORMS}")
        whole, _, frac = match.group(1).partition(".")
        if unit in ("", "b") and frac.strip("0"):
            raise BudgetError(f"invalid budget {text!r}: bytes must be whole; {ACCEPTED_FORMS}")
        multiplier = _MULTIPLIERS[unit or "b"]
        # exact integer arithmetic: "1.5MB" is 1,500,000 bytes, never 1,499,999.99
        value = (int(whole or "0") * 10 ** len(frac) + int(frac or "0")) * multiplier // 10 ** len(frac)
    if value <= 0:
        raise BudgetError(f"budget must be more than 0 bytes, got {text!r}; {ACCEPTED_FORMS}")
    return value


def format_bytes(n_bytes: int) -> str:
    """Human-readable decimal units: 8000000 -> "8.00 MB", 999 -> "999 B"."""
    for unit, size in (("GB", 1000**3), ("MB", 1000**2), ("KB", 1000)):
        if abs(n_bytes) >= size:
            return f"{n_bytes / size:.2f} {unit}"
    return f"{n_bytes} B"
