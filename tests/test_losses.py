"""Losses against hand-computed values, limits (lambda -> inf, gamma = 1) and the compositional gradient."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from edgecl.learn.losses import EPS, GlobalContrastiveLoss, GroupDROLoss, LossConfig, cross_entropy
from edgecl.learn.similarity import Similarities as S

TAU = 0.5
# Three classes with orthogonal text embeddings; three samples, one per class (rows are unit vectors).
TEXT = torch.eye(3, dtype=torch.float64)
Z = torch.tensor([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.0, 0.6, 0.8]], dtype=torch.float64)
Y = torch.tensor([0, 1, 2])
IDS = torch.tensor([10, 11, 12])


def test_cross_entropy_by_hand() -> None:
    out = cross_entropy(S(Z, TEXT), Y, LossConfig(temperature=TAU))
    # sample 1: logits (0.6, 0.8, 0) / 0.5 = (1.2, 1.6, 0), true class 1
    expected = -1.6 + math.log(math.exp(1.2) + math.exp(1.6) + math.exp(0.0))
    assert float(out.per_sample[1]) == pytest.approx(expected, rel=1e-9)
    restricted = cross_entropy(S(Z, TEXT), Y, LossConfig(temperature=TAU), candidates=torch.tensor([1, 2]))
    assert float(restricted.per_sample[1]) == pytest.approx(-1.6 + math.log(math.exp(1.6) + 1.0), rel=1e-9)


def test_gcl_terms_by_hand() -> None:
    loss = GlobalContrastiveLoss(LossConfig(temperature=TAU))
    g1, g2 = loss.terms(S(Z, TEXT), Y)
    # sample 1 (z = (0.6, 0.8, 0), y = 1): text negatives c = 0, 2 with s = 0.6, 0.0; positive s = 0.8
    assert float(g1[1]) == pytest.approx((math.exp((0.6 - 0.8) / TAU) + math.exp((0.0 - 0.8) / TAU)) / 2)
    # image negatives of sample 1 are samples 0 and 2: s(z_0, t_1) = 0, s(z_2, t_1) = 0.6
    assert float(g2[1]) == pytest.approx((math.exp((0.0 - 0.8) / TAU) + math.exp((0.6 - 0.8) / TAU)) / 2)
    out = loss(S(Z, TEXT), Y, IDS)  # first visit: u2 = g2
    expected = TAU * (math.log(EPS + float(g1[1])) + math.log(EPS + float(g2[1])))
    assert float(out.per_sample[1]) == pytest.approx(expected, rel=1e-9)


def test_gcl_estimator_moving_average() -> None:
    loss = GlobalContrastiveLoss(LossConfig(temperature=TAU, gamma=0.25))
    loss.estimators(torch.tensor([2.0]), torch.tensor([7]))
    u2 = loss.estimators(torch.tensor([6.0]), torch.tensor([7]))
    assert float(u2[0]) == pytest.approx(0.75 * 2.0 + 0.25 * 6.0)
    loss.forget({8})
    assert loss.u2 == {}


def test_gamma_one_gives_plain_minibatch_loss_and_gradient() -> None:
    z = Z.clone().requires_grad_(True)
    loss = GlobalContrastiveLoss(LossConfig(temperature=TAU, gamma=1.0))
    loss.estimators(torch.tensor([9.0, 9.0, 9.0], dtype=torch.float64), IDS)  # stale values a gamma=1 update drops
    out = loss(S(z, TEXT), Y, IDS)
    out.objective.backward()
    z_ref = Z.clone().requires_grad_(True)
    g1, g2 = loss.terms(S(z_ref, TEXT), Y)
    plain = TAU * (torch.log(EPS + g1) + torch.log(EPS + g2))
    plain.mean().backward()
    torch.testing.assert_close(out.per_sample, plain.detach())
    torch.testing.assert_close(z.grad, z_ref.grad)


def test_surrogate_gradient_equals_compositional_gradient() -> None:
    """With u2 equal to the batch value, the surrogate's gradient is the gradient of tau*(log g1 + log g2)."""
    torch.manual_seed(0)
    z0 = torch.nn.functional.normalize(torch.randn(6, 4, dtype=torch.float64), dim=1)
    text = torch.nn.functional.normalize(torch.randn(3, 4, dtype=torch.float64), dim=1)
    y, ids = torch.tensor([0, 1, 2, 0, 1, 2]), torch.arange(6)
    z = z0.clone().requires_grad_(True)
    GlobalContrastiveLoss(LossConfig(temperature=0.1))(S(z, text), y, ids).objective.backward()
    z_ref = z0.clone().requires_grad_(True)
    g1, g2 = GlobalContrastiveLoss(LossConfig(temperature=0.1)).terms(S(z_ref, text), y)
    (0.1 * (torch.log(EPS + g1) + torch.log(EPS + g2))).mean().backward()
    torch.testing.assert_close(z.grad, z_ref.grad)


def _gcl_values_by_hand(z: np.ndarray, text: np.ndarray, y: list[int], tau: float) -> list[float]:
    """tau * (log g1 + log g2) of each row on its first visit (u2 = g2), written out from METHOD.md's formulas."""
    sim = z @ text.T
    values = []
    for i, label in enumerate(y):
        pos = sim[i, label]
        g1 = np.mean([np.exp((sim[i, c] - pos) / tau) for c in range(len(text)) if c != label])
        g2 = np.mean([np.exp((sim[j, label] - pos) / tau) for j in range(len(z)) if y[j] != label])
        values.append(tau * (math.log(g1) + math.log(g2)))
    return values


def test_gdro_weights_by_hand() -> None:
    cfg = LossConfig(temperature=TAU, dro_lambda=0.5, dro_gamma=1.0)
    loss = GroupDROLoss(cfg)
    out = loss(S(Z, TEXT), Y, IDS)
    values = _gcl_values_by_hand(Z.numpy(), TEXT.numpy(), Y.tolist(), TAU)  # one sample per class: v_c = its loss
    assert out.per_sample.tolist() == pytest.approx(values)
    expected = torch.softmax(torch.tensor(values) / 0.5, dim=0).tolist()
    assert out.class_weights is not None
    assert [out.class_weights[c] for c in range(3)] == pytest.approx(expected)
    assert out.class_weights[2] > out.class_weights[0]  # class 2 has the highest loss and gets most weight


def test_gdro_with_huge_lambda_is_gcl() -> None:
    """lambda -> infinity: q uniform, so on a class-balanced batch GDRO's objective and gradient are GCL's."""
    torch.manual_seed(1)
    z0 = torch.nn.functional.normalize(torch.randn(6, 4, dtype=torch.float64), dim=1)
    text = torch.nn.functional.normalize(torch.randn(3, 4, dtype=torch.float64), dim=1)
    y, ids = torch.tensor([0, 1, 2, 0, 1, 2]), torch.arange(6)
    za, zb = z0.clone().requires_grad_(True), z0.clone().requires_grad_(True)
    dro = GroupDROLoss(LossConfig(temperature=0.1, dro_lambda=1e9))(S(za, text), y, ids)
    gcl = GlobalContrastiveLoss(LossConfig(temperature=0.1))(S(zb, text), y, ids)
    dro.objective.backward()
    gcl.objective.backward()
    torch.testing.assert_close(dro.objective, gcl.objective)
    torch.testing.assert_close(za.grad, zb.grad)


def test_invalid_config_names_the_field() -> None:
    with pytest.raises(ValueError, match="dro_lambda"):
        LossConfig(dro_lambda=0)
    with pytest.raises(ValueError, match="temperature"):
        LossConfig(temperature=-1)


def test_class_balanced_cross_entropy_averages_class_means() -> None:
    """er_cb's loss: three rows of class 0 and one of class 1 weigh as much as one of each."""
    from edgecl.learn.losses import BalancedCrossEntropyLoss

    cfg = LossConfig(temperature=0.5)
    text = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), dim=1)
    z = torch.nn.functional.normalize(torch.tensor([[1.0, 0.2], [1.0, 0.4], [1.0, 0.6], [0.3, 1.0]]), dim=1)
    y = torch.tensor([0, 0, 0, 1])
    rows = cross_entropy(S(z, text), y, cfg).per_sample
    out = BalancedCrossEntropyLoss(cfg)(S(z, text), y, torch.arange(4))
    assert math.isclose(float(out.objective), (float(rows[:3].mean()) + float(rows[3])) / 2, rel_tol=1e-6)
    torch.testing.assert_close(out.per_sample, rows)


def test_gdro_weighs_the_groups_it_is_given() -> None:
    """Rows 0 and 1 form one group (e.g. one class in one domain), row 2 another: q = softmax(group means / lambda)."""
    cfg = LossConfig(temperature=TAU, dro_lambda=0.5, dro_gamma=1.0)
    out = GroupDROLoss(cfg)(S(Z, TEXT), Y, IDS, groups=torch.tensor([7, 7, 9]))
    v = out.per_sample.tolist()
    expected = torch.softmax(torch.tensor([(v[0] + v[1]) / 2, v[2]]) / 0.5, dim=0).tolist()
    assert out.class_weights is not None and sorted(out.class_weights) == [7, 9]
    assert [out.class_weights[7], out.class_weights[9]] == pytest.approx(expected)


def test_text_negatives_beyond_the_cap_are_an_unbiased_sample_of_the_exact_mean() -> None:
    """Above TEXT_NEGATIVES classes g1 scores a sample of the texts whose average is the exact g1; g2 is unchanged;
    a batch that holds every class scores them all."""
    from edgecl.learn.losses import TEXT_NEGATIVES, _text_negatives

    torch.manual_seed(0)
    n, dim, rows = 4 * TEXT_NEGATIVES, 32, 40
    text = torch.nn.functional.normalize(torch.randn(n, dim), dim=-1)
    y = torch.randint(0, n, (rows,))
    z = torch.nn.functional.normalize(text[y] + 0.5 * torch.randn(rows, dim), dim=-1)
    loss = GlobalContrastiveLoss(LossConfig(temperature=0.5))
    sim = z @ text.T
    exact = ((torch.exp((sim - sim.gather(1, y[:, None])) / 0.5)).sum(1) - 1) / (n - 1)
    g1s, g2s = zip(*(loss.terms(S(z, text), y) for _ in range(400)), strict=True)
    assert torch.allclose(torch.stack(g1s).mean(0), exact, rtol=0.02)
    assert all(torch.equal(g2, g2s[0]) for g2 in g2s)
    columns, weights = _text_negatives(y, n)
    assert len(columns) == TEXT_NEGATIVES and set(y.tolist()) <= set(columns.tolist())
    every = torch.arange(TEXT_NEGATIVES + 1)
    assert torch.equal(_text_negatives(every, len(every))[0], every)  # all classes in the batch: exact


def test_gdro_ce_weighs_each_groups_cross_entropy_by_its_dro_weight() -> None:
    """gdro_ce: the rows are er's cross-entropy; q = softmax(group mean CE / lambda) and the objective is the
    q-weighted mean of the group means (gradient included), so a group with a higher loss pulls harder."""
    from edgecl.learn.losses import GroupDROCrossEntropyLoss

    cfg = LossConfig(temperature=TAU, dro_lambda=0.5, dro_gamma=1.0)
    z = Z.clone().requires_grad_(True)
    out = GroupDROCrossEntropyLoss(cfg)(S(z, TEXT), Y, IDS, groups=torch.tensor([7, 7, 9]))
    rows = cross_entropy(S(Z, TEXT), Y, LossConfig(temperature=TAU)).per_sample
    torch.testing.assert_close(out.per_sample, rows)
    means = torch.stack([rows[:2].mean(), rows[2]])
    q = torch.softmax(means / 0.5, dim=0)
    assert out.class_weights is not None
    assert [out.class_weights[7], out.class_weights[9]] == pytest.approx(q.tolist())
    torch.testing.assert_close(out.objective.detach(), (q * means).sum())
    out.objective.backward()
    by_hand = Z.clone().requires_grad_(True)
    logits = by_hand @ TEXT.T / TAU
    per = torch.nn.functional.cross_entropy(logits, Y, reduction="none")
    (q[0] * per[:2].mean() + q[1] * per[2]).backward()
    torch.testing.assert_close(z.grad, by_hand.grad)


@pytest.mark.parametrize("table_bytes", [64 << 20, 0])  # the frozen cosines computed once, or per batch
def test_factored_lora_similarities_equal_the_heads_output_times_the_texts(monkeypatch: pytest.MonkeyPatch,
                                                                            table_bytes: int) -> None:  # fmt: skip
    """What a training step scores through the LoRA factors (edgecl.learn.similarity.LoraSimilarities) is the
    trained head's own output times the class texts, values and gradients, for every column and for a subset."""
    from edgecl.learn import trainer
    from edgecl.learn.adapters import AdapterConfig, lora_factors, lora_head

    monkeypatch.setattr(trainer, "FROZEN_TABLE_BYTES", table_bytes)
    torch.manual_seed(0)
    head = lora_head(32, AdapterConfig(rank=4))
    factors = lora_factors(head)
    assert factors is not None
    with torch.no_grad():
        factors.b.normal_(0, 0.3)  # a head that has learned something (B = 0 at start)
    x = torch.nn.functional.normalize(torch.randn(50, 32), dim=-1)
    text = torch.nn.functional.normalize(torch.randn(20, 32), dim=-1)
    batch, cols = torch.tensor([3, 1, 40, 7]), torch.tensor([2, 5, 19])
    drawn = np.isin(np.arange(50), [7, 3, 1, 12, 40])  # the rows a run draws: the batch among them
    factored = trainer._scorer(head, None, x, text, "fp32", drawn)(batch)
    direct = S(head(x[batch]), text)
    for pick in (None, cols):
        a, b = factored.columns(pick), direct.columns(pick)
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
        grads = [torch.autograd.grad(v.square().sum(), [factors.a, factors.b], retain_graph=True) for v in (a, b)]
        for ga, gb in zip(*grads, strict=True):
            torch.testing.assert_close(ga, gb, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("method", ["er_cb", "gcl"])
def test_a_run_over_the_frozen_table_trains_the_head_as_one_scored_batch_by_batch(monkeypatch: pytest.MonkeyPatch,
                                                                                 method: str) -> None:  # fmt: skip
    """The frozen cosine table holds the rows the run's batches draw (drawn ahead from a second generator on the
    run's seed, edgecl.learn.trainer.drawn_rows): a whole run over it, replayed memory included, ends with the same
    head as one that scores every batch afresh (FROZEN_TABLE_BYTES 0)."""
    from dataclasses import replace

    from edgecl.learn import trainer
    from edgecl.learn.adapters import AdapterConfig, lora_factors, lora_head
    from edgecl.learn.configs import TrainSchedule
    from edgecl.runtime import Runtime

    data = replace(trainer.synthetic_data(300, 32, 6, seed=3), n_new=40)  # 40 new rows, 260 replayed
    cfg = trainer.TrainConfig(method=method, schedule=TrainSchedule(min_steps=25, max_steps=25),
                              runtime=Runtime(train_batch=16), seed=5)  # fmt: skip
    drawn = trainer.drawn_rows(data, 16, 25, 5)
    assert 40 < drawn.sum() < 300  # every new row and some of the memory: the table holds part of the pool
    heads = []
    for table_bytes in (64 << 20, 0):
        monkeypatch.setattr(trainer, "FROZEN_TABLE_BYTES", table_bytes)
        head = lora_head(32, AdapterConfig(rank=4))
        assert trainer.train(head, None, data, cfg).steps == 25
        heads.append(lora_factors(head))
    for a, b in ((heads[0].a, heads[1].a), (heads[0].b, heads[1].b)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    assert heads[0].b.abs().sum() > 0  # it learned something
