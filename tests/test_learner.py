"""Adapters (peft), the trainer and the learner facade on synthetic clustered embeddings and a real encoder."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from edgecl.errors import EdgeclError
from edgecl.learn.adapters import AdapterConfig, load_adapter, lora_head, merge, save_adapter
from edgecl.learn.methods import METHOD_NAMES
from edgecl.learn.trainer import TrainConfig, TrainData, TrainingDivergedError, TrainSchedule, train
from edgecl.learner import Learner, LearnerConfig
from edgecl.memory import MemoryConfig
from edgecl.runtime import Runtime

DIM = 32


def clustered(n_classes: int, per_class: int, seed: int, sample_seed: int | None = None,
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Unit embeddings around class centres, and text embeddings that point only roughly at the centres. The centres
    and texts depend on `seed`; the rows also on `sample_seed` (another one draws disjoint test rows)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_classes, DIM))
    noise = rng if sample_seed is None else np.random.default_rng([seed, sample_seed])
    x = np.repeat(centres, per_class, axis=0) + 0.8 * noise.standard_normal((n_classes * per_class, DIM))
    y = np.repeat(np.arange(n_classes), per_class)
    text = centres + 1.5 * rng.standard_normal(centres.shape)
    norm = lambda a: (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)  # noqa: E731
    return norm(x), y, norm(text)


def test_untrained_head_is_exactly_zero_shot_and_peft_round_trips(tmp_path: Path) -> None:
    head = lora_head(DIM, AdapterConfig(rank=4))
    e = torch.nn.functional.normalize(torch.randn(5, DIM), dim=1)
    torch.testing.assert_close(head(e), e)
    with torch.no_grad():
        head.base_model.model.proj.lora_B["default"].weight.normal_()
    save_adapter(head, tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    loaded = load_adapter(DIM, tmp_path / "adapter")
    torch.testing.assert_close(loaded(e), head(e))
    merged = merge(head)
    np.testing.assert_allclose(merged(e.numpy()), head(e).detach().numpy(), atol=1e-5)


def _train_data(seed: int) -> TrainData:
    x, y, text = clustered(4, 40, seed)
    return TrainData(x, y, np.arange(len(x)), text, np.arange(4))


@pytest.mark.parametrize("method", ["finetune", "er", "er_cb", "gcl", "gdro"])
def test_training_is_deterministic_and_learns(method: str) -> None:
    data = _train_data(0)
    results = []
    for _ in range(2):
        head = lora_head(DIM, AdapterConfig(rank=4))
        report = train(
            head,
            None,
            data,
            TrainConfig(method=method, schedule=TrainSchedule(epochs=8, lr=5e-3), runtime=Runtime(train_batch=32)),
        )
        results.append((report.epoch_loss, merge(head).up.copy()))
    assert results[0][0] == results[1][0]
    np.testing.assert_array_equal(results[0][1], results[1][1])
    assert results[0][0][-1] < results[0][0][0]


def test_bitsandbytes_is_imported_only_for_its_optimizer() -> None:
    """peft imports bitsandbytes whenever it is installed (seconds, and kernel warnings on stderr); a profile whose
    optimizer is plain AdamW must not pay for it (issue 13)."""
    script = ("import sys\nfrom edgecl.learn.adapters import AdapterConfig, lora_head\n"
              "from edgecl.learn.trainer import TrainConfig, make_optimizer\n"
              "head = lora_head(8, AdapterConfig(rank=2))\nmake_optimizer(list(head.parameters()), TrainConfig())\n"
              "print('bitsandbytes' in sys.modules)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False"] and out.stderr == "", out.stderr


def test_adamw8bit_from_bitsandbytes_trains() -> None:
    head = lora_head(DIM, AdapterConfig(rank=4))
    report = train(
        head,
        None,
        _train_data(1),
        TrainConfig(method="er", schedule=TrainSchedule(epochs=3), runtime=Runtime(optimizer="adamw8bit")),
    )
    assert report.steps > 0 and np.isfinite(report.epoch_loss).all()


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_training_learns_like_fp32(precision: str) -> None:
    """The profile's train_precision: the heads run under autocast (fp16 with a gradient scaler), parameters and
    losses stay fp32; the result tracks fp32 training and differs from it (so autocast really ran)."""
    data = _train_data(2)
    ups, losses = {}, {}
    for p in ("fp32", precision):
        head = lora_head(DIM, AdapterConfig(rank=4))
        cfg = TrainConfig(method="gdro", schedule=TrainSchedule(epochs=6, lr=5e-3),
                          runtime=Runtime(train_batch=32, train_precision=p))  # fmt: skip
        report = train(head, None, data, cfg)
        assert all(param.dtype == torch.float32 for param in head.parameters())
        ups[p], losses[p] = merge(head).up, report.epoch_loss
    assert losses[precision][-1] < losses[precision][0]
    assert abs(losses[precision][-1] - losses["fp32"][-1]) < 0.1 * abs(losses["fp32"][0])
    assert not np.array_equal(ups[precision], ups["fp32"])
    _, accs = _stream("gdro", runtime=Runtime(train_precision=precision))
    _, accs32 = _stream("gdro")
    assert accs[-1] >= accs32[-1] - 0.1


def test_unknown_precision_is_named() -> None:
    with pytest.raises(ValueError, match="precision"):
        Runtime(train_precision="int4")


def _stream(method: str, seed: int = 0, runtime: Runtime | None = None, **kw: object) -> tuple[Learner, list[float]]:
    x, y, text = clustered(6, 60, seed)
    test_x, test_y, _ = clustered(6, 30, seed, sample_seed=1)  # same centres and texts, rows never trained on
    settings = {"method": method, "budget_bytes": 6_000, "codec": "int8", "seed": seed, "epochs": 6, **kw}
    learner = Learner(LearnerConfig.from_flat(settings), DIM, runtime=runtime)
    accs = []
    for task in ((0, 1), (2, 3), (4, 5)):
        rows = np.isin(y, task)
        learner.learn_embeddings(x[rows], [f"class {c}" for c in y[rows]], text={f"class {c}": text[c] for c in task})
        seen = np.isin(test_y, range(max(task) + 1))
        predicted = np.array([int(learner.classes[p].split()[1]) for p in learner.predict(test_x[seen])])
        accs.append(float((predicted == test_y[seen]).mean()))
    return learner, accs


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_every_method_runs_the_same_stream(method: str) -> None:
    learner, accs = _stream(method)
    assert learner.classes == [f"class {c}" for c in range(6)]
    assert learner.memory.size_bytes() <= 6_000
    assert len(learner.tasks) == 3 and all(0 <= a <= 1 for a in accs)
    if method != "zeroshot":  # beats what the class texts alone score on rows it never trained on (~0.86)
        _, zeroshot = _stream("zeroshot")
        assert accs[-1] >= zeroshot[-1] + 0.05, (accs, zeroshot)


def test_replay_methods_beat_finetune_on_old_classes() -> None:
    _, finetune = _stream("finetune")
    _, gdro = _stream("gdro")
    assert gdro[-1] > finetune[-1]


def test_divergence_leaves_previous_state_untouched() -> None:
    learner, _ = _stream("gdro")
    before = (list(learner.classes), learner.memory.to_bytes(), learner.state.merged.up.copy(), len(learner.tasks))
    x, y, text = clustered(7, 20, 0)
    config = LearnerConfig(method="er", memory=MemoryConfig(6_000, "int8"), train=TrainSchedule(lr=1e30, epochs=3))
    blown = Learner(config, DIM, state=replace(learner.state, config=config))
    state = (list(blown.classes), blown.memory.to_bytes(), blown.state.merged.up.copy(), len(blown.tasks))
    rows = y == 6
    with pytest.raises(TrainingDivergedError, match="lower --lr"):
        blown.learn_embeddings(x[rows] * 1e6, ["class 6"] * int(rows.sum()), text={"class 6": text[6]})
    assert blown.classes == state[0] and blown.memory.to_bytes() == state[1] and len(blown.tasks) == state[3]
    np.testing.assert_array_equal(blown.state.merged.up, state[2])
    assert before[0] == learner.classes


def test_domain_incremental_task_adds_a_domain() -> None:
    learner, _ = _stream("gdro")
    x, y, _ = clustered(6, 20, 0)
    rows = y < 2
    report = learner.learn_embeddings(-x[rows], [f"class {c}" for c in y[rows]], domain="inverted")
    assert report.new_classes == [] and learner.memory.domains == ["", "inverted"]
    groups = learner.memory.stats().per_class_domain
    assert groups["class 0|inverted"] > 0
    assert {"class 0|inverted", "class 1|inverted", "class 5|"} <= set(report.training.class_weights[-1])
    assert len(learner.state.class_means.counts) == 8  # six classes, two of them also in the inverted domain
    learner.forget_class("class 0")
    assert all(key // 256 < 5 for key in learner.state.resume.loss.v)  # class 0's groups gone, the rest moved down
    assert "class 0|inverted" not in learner.memory.stats().per_class_domain


@pytest.mark.parametrize("groups", ["class", "domain"])
def test_gdro_weighs_and_the_memory_balances_the_chosen_groups(groups: str, tmp_path: Path) -> None:
    learner, _ = _stream("gdro", groups=groups)
    x, y, _ = clustered(6, 20, 0)
    rows = y < 2
    report = learner.learn_embeddings(-x[rows], [f"class {c}" for c in y[rows]], domain="inverted")
    names = set(report.training.class_weights[-1])
    assert names == ({f"class {c}" for c in range(6)} if groups == "class" else {"", "inverted"})
    learner.save_to(tmp_path / "s")
    loaded = Learner.load_from(tmp_path / "s")
    assert loaded.config.groups == groups == loaded.memory.config.groups


def test_open_vocabulary_and_images_with_a_real_encoder(tiny_export: Path, photos: list) -> None:
    from edgecl.encoder import Encoder

    encoder = Encoder(tiny_export)
    learner = Learner(
        LearnerConfig(method="gdro", memory=MemoryConfig(20_000), train=TrainSchedule(epochs=2)),
        encoder.embed_dim,
        encoder,
    )
    report = learner.learn_images(photos[:6], ["cat", "dog", "cat", "dog", "cat", "dog"])
    assert report.new_classes == ["cat", "dog"] and report.encode_seconds > 0
    rows = learner.classify_images(photos[6:8], top_k=3, extra_labels=["rocket", "cat"])
    assert all(len(r["predictions"]) == 3 for r in rows)
    assert {p["label"] for p in rows[0]["predictions"]} == {"cat", "dog", "rocket"}  # "cat" is learned, not twice


def test_classify_before_learning_is_a_clear_error() -> None:
    with pytest.raises(EdgeclError, match="learn a task first"):
        Learner(LearnerConfig(), DIM).classify_embeddings(np.zeros((1, DIM), np.float32))


def test_unknown_method_is_named() -> None:
    with pytest.raises(EdgeclError, match=", ".join(METHOD_NAMES)):
        LearnerConfig(method="ewc")


@pytest.mark.parametrize("method", ["gdro", "gdro_ce", "er_cb"])  # the paper's, its DRO-weighted CE, the default
def test_save_and_load_round_trip_then_keep_learning(method: str, tmp_path: Path) -> None:
    learner, _ = _stream(method)
    learner.save_to(tmp_path / "s1")
    assert (tmp_path / "s1" / "adapter" / "adapter_model.safetensors").is_file()
    loaded = Learner.load_from(tmp_path / "s1")
    x, y, text = clustered(7, 20, 0)
    np.testing.assert_array_equal(loaded.predict(x), learner.predict(x))
    assert loaded.classes == learner.classes and loaded.memory.to_bytes() == learner.memory.to_bytes()
    rows = y == 6
    fresh = Learner.load_from(tmp_path / "s1")
    learner.learn_embeddings(x[rows], ["class 6"] * int(rows.sum()), text={"class 6": text[6]})
    fresh.learn_embeddings(x[rows], ["class 6"] * int(rows.sum()), text={"class 6": text[6]})
    np.testing.assert_allclose(fresh.state.merged.up, learner.state.merged.up, atol=1e-5)  # resumed
    fresh.save_to(tmp_path / "s2")
    assert Learner.load_from(tmp_path / "s2").classes[-1] == "class 6"


def test_text_head_trains_and_round_trips(tmp_path: Path) -> None:
    learner, accs = _stream("gdro", text_head=True)
    assert learner.state.resume.text_head is not None and np.abs(learner.state.merged_text.up).sum() > 0
    learner.save_to(tmp_path / "s")
    assert (tmp_path / "s" / "text_adapter" / "adapter_config.json").is_file()
    x, _, _ = clustered(6, 10, 0)
    np.testing.assert_array_equal(Learner.load_from(tmp_path / "s").predict(x), learner.predict(x))


def test_pq_memory_survives_copies_across_tasks() -> None:
    x, y, text = clustered(6, 60, 0)
    learner = Learner(
        LearnerConfig(method="gdro", memory=MemoryConfig(6_000, "pq"), train=TrainSchedule(epochs=2)), DIM
    )
    for task in ((0, 1), (2, 3), (4, 5)):
        rows = np.isin(y, task)
        learner.learn_embeddings(x[rows], [f"class {c}" for c in y[rows]], text={f"class {c}": text[c] for c in task})
    assert learner.memory.stats().codec == "pq" and learner.memory.size_bytes() <= 6_000


@pytest.mark.parametrize(("method", "codec"), [("ncm", "pq"), ("gdro", "int4"), ("er", "int4")])
def test_auto_codec_is_pq_only_for_ncm_at_tiny_budgets(method: str, codec: str, tmp_path: Path) -> None:
    """Where int4 holds < 10 per class `auto` picks PQ for NCM (best for class means), int4 for trained methods."""
    from edgecl.memory.policy import choose_auto_codec

    assert choose_auto_codec({"fp16": 10, "int8": 20, "int4": 40}, 10) == "pq"
    assert choose_auto_codec({"fp16": 10, "int8": 20, "int4": 40}, 10, allow_pq=False) == "int4"
    x, y, text = clustered(10, 100, 0)
    dim = x.shape[1]
    learner = Learner(LearnerConfig(method=method, memory=MemoryConfig(3_000), train=TrainSchedule(epochs=1)), dim)
    learner.learn_embeddings(x, [f"class {c}" for c in y], text={f"class {c}": text[c] for c in range(10)})
    assert learner.memory.stats().codec == codec
    learner.save_to(tmp_path / "s")
    again = Learner.load_from(tmp_path / "s")
    assert again.memory.config.auto_pq == (method == "ncm")


def test_a_learner_saved_by_the_previous_release_loads_and_keeps_learning(tmp_path: Path) -> None:
    """tests/data/learner-f725aef was saved by commit f725aef (memory file format 1, a config with the `extra` field
    since removed): it loads, scores its probe rows as it did then, learns a new class and saves in today's
    formats."""
    data = Path(__file__).parent / "data"
    learner = Learner.load_from(data / "learner-f725aef")
    assert learner.classes == ["c0", "c1", "c2", "c3"] and learner.memory.domains == ["", "sketch"]
    probe = np.load(data / "learner-f725aef-probe.npy")
    scores, labels = learner.scores(probe)
    # Then, its second task (new classes under --domain sketch) switched it to the domain prototype weight 2; no
    # class was learned in two domains, so today it keeps 16 (issue 25): the same head and means, re-weighted.
    then, means = np.load(data / "learner-f725aef-scores.npy"), learner.state.class_means.scores(probe, 4)
    head = then * 3 - 2 * means
    assert learner.state.weight_in_use == 16.0
    np.testing.assert_allclose(scores, (head + 16 * means) / 17, atol=1e-5)
    assert labels == learner.classes
    x, _, _ = clustered(1, 12, 9)
    learner.learn_embeddings(x, ["c4"] * 12, text={"c4": x[0]})
    learner.save_to(tmp_path / "s")
    again = Learner.load_from(tmp_path / "s")
    assert again.classes[-1] == "c4" and set(again.memory.stats().per_class) == set(again.classes)


def test_learning_leaves_the_host_processes_torch_seed_and_threads_as_they_were() -> None:
    """An app (or `edgecl serve`) that learns in its own process keeps its torch RNG stream and thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    torch.manual_seed(1234)
    expected = torch.rand(4)
    torch.manual_seed(1234)
    learner, _ = _stream("gdro")
    assert torch.get_num_threads() == 3
    torch.testing.assert_close(torch.rand(4), expected)
    again, _ = _stream("gdro")
    np.testing.assert_array_equal(again.state.merged.up, learner.state.merged.up)  # seeded training still reproduces
    torch.set_num_threads(before)


def test_the_learned_state_is_one_frozen_value_that_readers_share_while_a_learn_runs() -> None:
    """Learning and forgetting replace `learner.state` in one assignment: the value a reader holds never changes,
    and a classify in another thread always pairs a snapshot's labels with that snapshot's scores."""
    import dataclasses
    import threading
    import time

    learner, _ = _stream("gdro")
    held = learner.state
    frozen = (held.classes, held.text.copy(), held.memory.to_bytes(), held.class_means.counts.copy())
    with pytest.raises(dataclasses.FrozenInstanceError):
        held.classes = ()  # type: ignore[misc]
    with pytest.raises(ValueError, match="read-only"):
        held.text[0, 0] = 1.0
    x, y, text = clustered(8, 30, 0)
    seen: list[set[str]] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def classify_forever() -> None:
        while not stop.is_set():
            try:
                for answer in learner.classify_embeddings(x[:8], top_k=20):
                    seen.append({p["label"] for p in answer["predictions"]})
                time.sleep(0.01)  # leave the learn its cores
            except BaseException as exc:  # noqa: BLE001 - the test reports it below
                failures.append(exc)
                return

    reader = threading.Thread(target=classify_forever)
    reader.start()
    snapshots = [set(held.classes)]
    for c in (6, 7):
        rows = y == c
        learner.learn_embeddings(x[rows], [f"class {c}"] * int(rows.sum()), text={f"class {c}": text[c]})
        snapshots.append(set(learner.classes))
    learner.forget_class("class 0")
    snapshots.append(set(learner.classes))
    stop.set()
    reader.join()
    assert not failures, failures
    assert seen and all(any(labels == s for s in snapshots) for labels in seen)
    assert held.classes == frozen[0] and held.memory.to_bytes() == frozen[2]
    np.testing.assert_array_equal(held.text, frozen[1])
    np.testing.assert_array_equal(held.class_means.counts, frozen[3])
    assert learner.state is not held and learner.classes == [f"class {c}" for c in range(1, 8)]
