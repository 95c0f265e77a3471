"""Continual-learning metrics against hand-computed accuracy matrices."""

from __future__ import annotations

import numpy as np
import pytest

from edgecl.bench.metrics import average_incremental_accuracy, backward_transfer, forgetting, last_accuracy

# a[t][k]: accuracy on task k after task t (lower triangle meaningful)
MATRIX = np.array([[0.9, 0.0, 0.0], [0.6, 0.8, 0.0], [0.5, 0.7, 0.95]])


def test_forgetting_by_hand() -> None:
    # task 0: max(0.9, 0.6) - 0.5 = 0.4; task 1: max(0.8) - 0.7 = 0.1
    assert forgetting(MATRIX) == pytest.approx((0.4 + 0.1) / 2)


def test_backward_transfer_by_hand() -> None:
    assert backward_transfer(MATRIX) == pytest.approx(((0.5 - 0.9) + (0.7 - 0.8)) / 2)


def test_accuracies_over_seen_classes() -> None:
    seen = [0.9, 0.7, 0.6]
    assert last_accuracy(seen) == 0.6
    assert average_incremental_accuracy(seen) == pytest.approx(0.7333333)


def test_single_task_has_no_forgetting() -> None:
    assert forgetting(np.array([[0.8]])) == 0.0 and backward_transfer(np.array([[0.8]])) == 0.0
