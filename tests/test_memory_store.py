"""Replay memory: the file never exceeds the budget, classes stay balanced, damage is detected."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgecl.errors import EdgeclError
from edgecl.memory import MemoryConfig, MemoryFileError, ReplayMemory
from edgecl.units import BudgetError


def unit_vectors(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def check_invariants(memory: ReplayMemory, supplied: dict[str, int]) -> None:
    data = memory.to_bytes()
    assert len(data) <= memory.config.budget_bytes
    counts = memory.stats().per_class
    assert set(counts) == set(supplied)
    top = max(counts.values())
    for name, n in counts.items():  # every class holds all it was given, or is within 1 of the fullest
        assert n == supplied[name] or n >= top - 1, (name, n, supplied[name], top)
    assert len(set(memory.ids.tolist())) == len(memory.ids)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    dim=st.integers(64, 1280),
    n_classes=st.integers(1, 1000),
    budget=st.integers(1_000, 64_000_000),
    codec=st.sampled_from(["fp16", "int8", "int4", "pq", "auto"]),
    n_tasks=st.integers(1, 3),
    per_class=st.integers(1, 6),
    seed=st.integers(0, 1000),
)
def test_budget_and_balance_hold(
    dim: int, n_classes: int, budget: int, codec: str, n_tasks: int, per_class: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    memory = ReplayMemory(MemoryConfig(budget, codec, seed=seed), dim)
    names = [f"class {i}" for i in range(n_classes)]
    supplied: dict[str, int] = {}
    for task in np.array_split(np.arange(n_classes), n_tasks):
        labels = [names[i] for i in task for _ in range(per_class)]
        if not labels:
            continue
        before = memory.to_bytes()
        try:
            memory.add(unit_vectors(len(labels), dim, rng), labels)
        except BudgetError as exc:
            assert "minimum is" in str(exc)
            minimum = int(str(exc).split("minimum is ")[1].split()[0])
            assert minimum > budget
            assert memory.to_bytes() == before  # a refused add changes nothing
            return
        for i in task:
            supplied[names[i]] = per_class
        check_invariants(memory, supplied)
    restored = ReplayMemory.from_bytes(memory.to_bytes())
    np.testing.assert_array_equal(restored.samples().embeddings, memory.samples().embeddings)


@pytest.mark.parametrize("codec", ["fp16", "int8", "int4", "pq", "auto"])
def test_equal_supply_gives_counts_within_one(codec: str) -> None:
    rng = np.random.default_rng(0)
    memory = ReplayMemory(MemoryConfig(64_000, codec), 256)
    for task in range(5):
        labels = [f"c{2 * task + i % 2}" for i in range(300)]
        memory.add(unit_vectors(300, 256, rng), labels)
        counts = list(memory.stats().per_class.values())
        assert max(counts) - min(counts) <= 1 and len(counts) == 2 * (task + 1)
        assert memory.size_bytes() <= 64_000


def test_old_classes_give_up_samples_and_ids_are_stable() -> None:
    rng = np.random.default_rng(1)
    memory = ReplayMemory(MemoryConfig(20_000, "int8"), 128)
    first = memory.add(unit_vectors(200, 128, rng), ["a"] * 100 + ["b"] * 100)
    kept_before = set(memory.ids.tolist())
    second = memory.add(unit_vectors(200, 128, rng), ["c"] * 100 + ["d"] * 100)
    assert set(first.tolist()).isdisjoint(second.tolist())
    kept_after = set(memory.ids.tolist())
    old_after = {i for i in kept_after if i < 200}
    assert old_after < kept_before  # old classes shrank, keeping a subset of what they had
    counts = memory.stats().per_class
    assert max(counts.values()) - min(counts.values()) <= 1


def test_domains_are_balanced_per_class_and_domain() -> None:
    rng = np.random.default_rng(2)
    memory = ReplayMemory(MemoryConfig(30_000, "int8"), 128)
    memory.add(unit_vectors(200, 128, rng), ["a"] * 100 + ["b"] * 100, domain="photo")
    memory.add(unit_vectors(200, 128, rng), ["a"] * 100 + ["b"] * 100, domain="sketch")
    groups = memory.stats().per_class_domain
    assert set(groups) == {"a|photo", "a|sketch", "b|photo", "b|sketch"}
    assert max(groups.values()) - min(groups.values()) <= 1


def test_herding_keeps_a_representative_subset() -> None:
    rng = np.random.default_rng(3)
    center = unit_vectors(1, 64, rng)
    x = center + 0.5 * rng.standard_normal((400, 64)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    gaps = {}
    for selection in ("random", "herding"):
        memory = ReplayMemory(MemoryConfig(3_000, "int8", selection=selection), 64)
        memory.add(x, ["a"] * 400)
        kept = memory.samples().embeddings
        gaps[selection] = float(np.linalg.norm(kept.mean(0) - x.mean(0)))
    assert gaps["herding"] < gaps["random"]


def test_too_small_budget_names_the_minimum() -> None:
    memory = ReplayMemory(MemoryConfig(1_000, "fp16"), 512)
    words = r"minimum is \d+ bytes: raise the budget or pick a smaller codec: --budget 5KB or --codec int4"
    with pytest.raises(BudgetError, match=words):
        memory.add(unit_vectors(4, 512, np.random.default_rng(0)), ["a", "b", "c", "d"])
    assert memory.stats().samples == 0


def test_remove_class_frees_bytes() -> None:
    memory = ReplayMemory(MemoryConfig(50_000, "int8"), 128)
    memory.add(unit_vectors(100, 128, np.random.default_rng(0)), ["a"] * 50 + ["b"] * 50)
    freed = memory.remove_class("a")
    assert freed > 50 * 128 and memory.classes == ["b"]
    with pytest.raises(EdgeclError, match="not in memory"):
        memory.remove_class("a")


def test_bad_batches_are_refused() -> None:
    memory = ReplayMemory(MemoryConfig(50_000, "int8"), 8)
    with pytest.raises(EdgeclError, match=r"\(N, 8\)"):
        memory.add(np.zeros((2, 9), np.float32), ["a", "b"])
    with pytest.raises(EdgeclError, match="NaN"):
        memory.add(np.full((1, 8), np.nan, np.float32), ["a"])
    with pytest.raises(EdgeclError, match="class names"):
        memory.add(np.ones((2, 8), np.float32), ["a"])


@pytest.fixture(scope="module")
def saved_memory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    memory = ReplayMemory(MemoryConfig(40_000, "pq"), 128)
    memory.add(unit_vectors(300, 128, np.random.default_rng(0)), [f"c{i % 3}" for i in range(300)])
    path = tmp_path_factory.mktemp("mem") / "memory.safetensors"
    assert memory.save(path) == path.stat().st_size <= 40_000
    return path


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.integers(0, 10**9), bit=st.integers(0, 7))
def test_any_flipped_bit_is_detected(saved_memory: Path, position: int, bit: int) -> None:
    data = bytearray(saved_memory.read_bytes())
    data[position % len(data)] ^= 1 << bit
    with pytest.raises(MemoryFileError):
        ReplayMemory.from_bytes(bytes(data))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(length=st.integers(0, 10**9))
def test_truncation_is_detected(saved_memory: Path, length: int) -> None:
    data = saved_memory.read_bytes()
    with pytest.raises(MemoryFileError):
        ReplayMemory.from_bytes(data[: length % len(data)])


def test_round_trip_through_file(saved_memory: Path) -> None:
    memory = ReplayMemory.load(saved_memory)
    assert memory.stats().codec == "pq" and sum(memory.stats().per_class.values()) == memory.stats().samples
    assert memory.to_bytes() == saved_memory.read_bytes()
    with pytest.raises(MemoryFileError, match="cannot read"):
        ReplayMemory.load(saved_memory.parent / "absent")


def test_pq_drops_bits_until_every_group_fits() -> None:
    """A budget between two PQ codebook sizes: fewer bits per sub-code instead of refusing the budget."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 32)).astype(np.float32)
    names = [f"c{i % 10}" for i in range(200)]
    for budget in (2000, 2500, 3000, 4000):
        memory = ReplayMemory(MemoryConfig(budget, "pq"), 32)
        memory.add(x, names)
        assert memory.stats().per_class and min(memory.stats().per_class.values()) >= 1
        assert memory.size_bytes() <= budget


def test_auto_moves_to_pq_rather_than_refuse_a_budget_pq_can_meet() -> None:
    """14 KB, 1280-d, a trained method's memory (PQ not preferred): 10 classes fit int4, 20 do not, PQ does."""
    rng = np.random.default_rng(0)
    memory = ReplayMemory(MemoryConfig(14_000, "auto", auto_pq=False), 1280)
    x = rng.standard_normal((400, 1280)).astype(np.float32)
    names = [f"c{i}" for i in range(20)]
    memory.add(x[:200], names[:10] * 20)
    assert memory.stats().codec == "int4"
    memory.add(x[200:], names[10:] * 20)
    assert memory.stats().codec == "pq" and memory.size_bytes() <= 14_000
    assert set(memory.stats().per_class) == set(names)


@pytest.mark.parametrize("groups", ["class", "class_domain", "domain"])
def test_memory_balances_the_groups_it_is_told_and_remembers_them(groups: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    memory = ReplayMemory(MemoryConfig(30_000, "int8", groups=groups), 128)
    memory.add(unit_vectors(300, 128, rng), ["a"] * 200 + ["b"] * 100, domain="photo")
    memory.add(unit_vectors(100, 128, rng), ["a"] * 100, domain="sketch")
    rows = memory.rows
    key = {"class": rows.labels.astype(int), "domain": rows.domains.astype(int),
           "class_domain": rows.labels.astype(int) * 2 + rows.domains}[groups]  # fmt: skip
    counts = np.bincount(key)
    supplied = {"class": [300, 100], "domain": [300, 100], "class_domain": [200, 100, 100]}[groups]
    assert counts[counts > 0].tolist() != [] and len(memory.ids) > 200
    held = counts[counts > 0]
    assert len(held) == len(supplied)  # every group holds all it was given, or is within 1 of the fullest
    assert all(n == s or n >= held.max() - 1 for n, s in zip(sorted(held), sorted(supplied), strict=True)), held
    memory.save(tmp_path / "m.safetensors")
    assert ReplayMemory.load(tmp_path / "m.safetensors").config.groups == groups
    assert (b"groups" in memory.to_bytes()) == (groups != "class_domain")  # old files read as class_domain


def _learns(codec: str, budget: int, auto_pq: bool, steps: list[tuple[np.ndarray, list[str]]]) -> bool:
    memory = ReplayMemory(MemoryConfig(budget, codec, auto_pq=auto_pq), 1280)
    try:
        for x, names in steps:
            memory.add(x, names)
    except BudgetError:
        return False
    assert memory.size_bytes() <= budget
    return True


@pytest.mark.parametrize("auto_pq", [True, False])
def test_auto_never_refuses_a_budget_that_some_codec_meets(auto_pq: bool) -> None:
    """Issue 13: learning 2 classes and then 3 more at small budgets; wherever a fixed codec holds them, so does
    auto (PQ is picked only when it really holds more samples than int4, its codebook included)."""
    rng = np.random.default_rng(0)
    x = unit_vectors(50, 1280, rng)
    steps = [(x[:20], ["a", "b"] * 10), (x[20:], ["c", "d", "e"] * 10)]
    for budget in (2_500, 4_000, 6_000, 8_000, 12_000, 16_000, 24_000):
        fixed = [codec for codec in ("fp16", "int8", "int4", "pq") if _learns(codec, budget, auto_pq, steps)]
        assert _learns("auto", budget, auto_pq, steps) == bool(fixed), (budget, fixed)


def test_a_format_1_file_still_loads_and_is_rewritten_as_format_2(tmp_path: Path) -> None:
    """tests/data/memory-format1.safetensors was written by the previous release (JSON strings inside the JSON
    header); it loads with the same samples, keeps learning, and is saved in the current, smaller format."""
    data = Path(__file__).parent / "data"
    memory = ReplayMemory.load(data / "memory-format1.safetensors")
    assert memory.classes == ["café", "dog", "bird"] and memory.domains == ["", "sketch"] and memory.next_id == 12
    np.testing.assert_array_equal(memory.samples().embeddings, np.load(data / "memory-format1-samples.npy"))
    memory.add(unit_vectors(2, 16, np.random.default_rng(1)), ["dog", "dog"])
    out = tmp_path / "m.safetensors"
    memory.save(out)
    again = ReplayMemory.load(out)
    assert again.stats().per_class == memory.stats().per_class == {"café": 4, "dog": 6, "bird": 4}
    old_size = (data / "memory-format1.safetensors").stat().st_size
    assert again.to_bytes()[8:].count(b"\\\\") == 0 and len(again.to_bytes()) < old_size + 2 * 25  # 2 rows more


@pytest.mark.parametrize("dim", [64, 512])
def test_the_minimum_an_auto_memory_names_is_enough(dim: int) -> None:
    """A refused first add names a minimum budget; a memory of exactly that budget takes the same rows (it used to
    name PQ's minimum, its codebook included, while int4 needed about a quarter of it)."""
    rng = np.random.default_rng(0)
    x, labels = unit_vectors(6, dim, rng), ["a", "a", "b", "b", "c", "c"]
    with pytest.raises(BudgetError, match="minimum is") as refused:
        ReplayMemory(MemoryConfig(dim // 2, "auto"), dim).add(x, labels)
    minimum = int(str(refused.value).split("minimum is ")[1].split()[0])
    memory = ReplayMemory(MemoryConfig(minimum, "auto"), dim)
    memory.add(x, labels)
    assert sorted(set(memory.samples().labels)) == [0, 1, 2] and memory.size_bytes() <= minimum
    with pytest.raises(BudgetError):
        ReplayMemory(MemoryConfig(minimum - 40, "auto"), dim).add(x, labels)
