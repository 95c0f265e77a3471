"""Translated replay (edgecl.learn.translation): rows for earlier (class, domain) groups made from a task's own rows,
moved to the earlier group's class mean; and what the learner does with them."""

from __future__ import annotations

import numpy as np

from edgecl.learn.prototypes import ClassMeans
from edgecl.learn.translation import translated_rows
from edgecl.learner import Learner, LearnerConfig
from edgecl.vectors import unit_rows

DIM = 16


def _means(rng: np.random.Generator, groups: list[tuple[int, int]]) -> ClassMeans:
    x = unit_rows(rng.standard_normal((len(groups), DIM)).astype(np.float32))
    y, d = np.array([g[0] for g in groups]), np.array([g[1] for g in groups])
    return ClassMeans.empty(DIM).updated(x, y, d)


def test_a_known_class_in_a_new_domain_is_replayed_in_its_earlier_domain_from_its_own_rows() -> None:
    rng = np.random.default_rng(0)
    means = _means(rng, [(0, 0), (1, 0)])  # classes 0 and 1 learned in domain 0
    x = unit_rows(rng.standard_normal((30, DIM)).astype(np.float32))
    y = np.repeat([0, 1], 15)  # now both in domain 1
    made = translated_rows(x, y, 1, means, np.array([3, 0]), per_group=10, limit=100, rng=rng, domains=1)
    pairs = zip(made.classes.tolist(), made.domains.tolist(), strict=True)
    assert sorted(pairs) == [(0, 0)] * 7 + [(1, 0)] * 10
    np.testing.assert_allclose(np.linalg.norm(made.x, axis=1), 1, atol=1e-5)
    # each row is one of the class's own rows, moved from the class's mean in this task to its earlier mean
    for c, g in ((0, 0), (1, 1)):
        moved = unit_rows(x[y == c] - x[y == c].mean(0) + means.means[g])
        assert all(np.abs(moved @ row - 1).min() < 1e-5 for row in made.x[made.classes == c])


def test_an_earlier_class_borrows_the_task_classes_spread_and_the_total_is_capped() -> None:
    rng = np.random.default_rng(1)
    means = _means(rng, [(c, 0) for c in range(6)])  # six classes learned earlier
    x = unit_rows(rng.standard_normal((40, DIM)).astype(np.float32))
    y = np.repeat([6, 7], 20)  # two new classes in the same domain
    made = translated_rows(x, y, 0, means, np.zeros(6, np.int64), per_group=50, limit=120, rng=rng, domains=1)
    assert len(made.x) == 120 and np.bincount(made.classes).tolist() == [20] * 6  # cut in proportion
    sources = [unit_rows(x[y == c] - x[y == c].mean(0) + means.means[0]) for c in (6, 7)]
    row = made.x[made.classes == 0][0]
    assert min(np.abs(s @ row - 1).min() for s in sources) < 1e-5
    full = translated_rows(x, y, 0, means, np.full(6, 50), per_group=50, limit=120, rng=rng, domains=1)
    assert len(full.x) == 0  # a memory that already holds per_group rows of every group gets none


def test_a_cap_below_the_number_of_groups_still_makes_every_row_it_allows() -> None:
    rng = np.random.default_rng(3)
    means = _means(rng, [(c, 0) for c in range(300)])
    x = unit_rows(rng.standard_normal((10, DIM)).astype(np.float32))
    y = np.full(10, 300)
    made = translated_rows(x, y, 0, means, np.zeros(300, np.int64), per_group=200, limit=250, rng=rng, domains=1)
    assert len(made.x) == 250 and np.bincount(made.classes).max() == 1  # one row each for 250 of the 300 groups


def test_only_the_learners_own_domains_with_images_are_targets() -> None:
    """The fleet's class means (a reserved domain index, edgecl.fleet) and groups without images get no rows."""
    rng = np.random.default_rng(4)
    means = _means(rng, [(0, 0), (1, 255), (2, 1)])
    means = ClassMeans(means.means, np.array([5, 5, 0]), means.classes, means.domains)  # (2, 1) has seen nothing
    x = unit_rows(rng.standard_normal((10, DIM)).astype(np.float32))
    made = translated_rows(x, np.full(10, 3), 1, means, np.zeros(3, np.int64), per_group=4, limit=100, rng=rng,
                           domains=2)  # fmt: skip
    assert made.classes.tolist() == [0] * 4 and made.domains.tolist() == [0] * 4


def test_the_learner_tops_up_earlier_groups_without_touching_the_memory_or_the_estimators() -> None:
    rng = np.random.default_rng(2)
    centres = rng.standard_normal((4, DIM))
    x = unit_rows((np.repeat(centres, 30, axis=0) + 0.5 * rng.standard_normal((120, DIM))).astype(np.float32))
    names = [f"c{i}" for i in np.repeat(np.arange(4), 30)]
    text = {f"c{i}": unit_rows(centres[i].astype(np.float32)) for i in range(4)}
    reports = {}
    for replay in (0, 40):
        config = LearnerConfig.from_flat({"method": "gdro", "budget_bytes": 2_000, "codec": "int8",
                                          "translated_replay": replay, "epochs": 1})  # fmt: skip
        learner = Learner(config, DIM)
        learner.learn_embeddings(x[:60], names[:60], text=text)
        before = learner.memory.stats()
        reports[replay] = learner.learn_embeddings(x[60:], names[60:], text=text)
        assert before.budget_bytes == reports[replay].memory.budget_bytes >= reports[replay].memory.bytes
        assert all(i >= 0 for i in learner.state.resume.loss.gcl.u2)  # translated rows keep no estimator
    stored = reports[0].training.replayed_rows
    assert reports[0].training.translated_rows == 0 and 0 < stored < 80
    assert reports[40].training.translated_rows == 2 * 40 - stored  # c0 and c1 topped up to 40 rows each
    assert reports[40].training.replayed_rows == stored
