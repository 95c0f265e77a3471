"""Byte budgets as users type them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgecl.units import BudgetError, format_bytes, parse_bytes

CASES = {
    "8MB": 8_000_000, "8MiB": 8_388_608, "8mb": 8_000_000, "8 MiB": 8_388_608, "1.5MB": 1_500_000,
    "64KB": 64_000, "64kib": 65_536, "1GB": 10**9, "2GiB": 2 * 1024**3, "4096": 4096, "4096B": 4096,
    " 512 KiB ": 524_288, ".5KB": 500, "1.0": 1, "0.3KB": 300,
}  # fmt: skip


@pytest.mark.parametrize("text,expected", CASES.items())
def test_accepted_forms(text: str, expected: int) -> None:
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["", "0", "0KB", "-5MB", "abc", "8 MBB", "1.5", "5XB", "MB", "8M B", "1e6", "nan"])
def test_rejected_forms_name_the_accepted_ones(text: str) -> None:
    with pytest.raises(BudgetError, match="8MiB"):
        parse_bytes(text)


@given(st.integers(1, 10**6), st.sampled_from(["B", "KB", "MB", "GB", "KiB", "MiB", "GiB"]), st.booleans())
def test_integer_round_trip(n: int, unit: str, space: bool) -> None:
    mult = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}[unit]
    text = f"{n}{' ' if space else ''}{unit}"
    assert parse_bytes(text) == parse_bytes(text.lower()) == n * mult


def test_format_bytes() -> None:
    assert format_bytes(999) == "999 B" and format_bytes(8_000_000) == "8.00 MB"
