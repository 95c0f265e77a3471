"""`edgecl bench`: the quick suite end to end (smoke), the streams, and the report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from edgecl.bench.embeddings import Embedder
from edgecl.bench.streams import build_streams
from edgecl.bench.suite import aggregate, markdown
from edgecl.cli import app
from edgecl.learn.methods import METHODS

runner = CliRunner()


def test_suite_smoke(tmp_path: Path, bundled_export: Path) -> None:
    """The quick suite's stream, methods and reports at one budget instead of three, fewer images and 20 training
    steps a task (the full quick suite takes about 2 minutes): every method, accuracy matrices, plots and the
    Markdown report."""
    from dataclasses import replace

    from edgecl.bench.suite import SUITES, run_suite

    suite = replace(SUITES["quick"], budget_sweep=("64KB",), train_per_class=20, test_per_class=10,
                    learner_settings=(("min_steps", 20), ("max_steps", 20)))  # fmt: skip
    data = run_suite("quick", tmp_path / "out", suite=suite)
    methods = {r["method"] for r in data["runs"]}
    assert methods == set(METHODS)
    for run in data["runs"]:
        matrix = np.array(run["matrix"])
        assert matrix.shape == (5, 5) and np.all(np.triu(matrix, 1) == 0)
        assert 0 <= run["last_accuracy"] <= 1 and run["memory_bytes"] <= run["budget_bytes"]
        assert run["last_accuracy"] == run["seen_accuracy"][-1]
    assert {p.name for p in (tmp_path / "out").iterdir()} >= {
        "results.json", "report.md", "fashion-mnist-accuracy-per-task.png",
        "fashion-mnist-last-accuracy-vs-budget.png", "fashion-mnist-gdro-accuracy-matrix.png",
    }  # fmt: skip
    assert "| fashion-mnist | gdro |" in (tmp_path / "out" / "report.md").read_text()
    assert dict(data["config"]["learner_settings"]) == {"min_steps": 20, "max_steps": 20}
    result = runner.invoke(app, ["bench", "--suite", "quik", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "unknown suite 'quik'" in result.output


def test_streams_and_skips(bundled_export: Path) -> None:
    from edgecl.encoder import Encoder

    streams, notes = build_streams(
        ["digits-domains", "fashion-domains", "cifar100", "nope"], Embedder(Encoder(bundled_export)), 0, 3, 2, None
    )
    digits, fashion = streams
    assert [t.domain for t in digits.tasks] == ["mnist", "optdigits", "inverted", "rotated"]
    assert [t.domain for t in fashion.tasks] == ["original", "inverted", "rotated", "faded"]
    for stream in streams:
        assert stream.kind == "domain" and all(set(t.train_y.tolist()) == set(range(10)) for t in stream.tasks)
        assert len({t.train_x.tobytes() for t in stream.tasks}) == 4  # each domain its own images
    assert any(n.startswith("cifar100: skipped") for n in notes) and any("unknown stream" in n for n in notes)


def test_faded_domain_is_blurred_and_low_contrast() -> None:
    from edgecl.bench.streams import _faded

    images = np.zeros((2, 28, 28), np.uint8)
    images[:, 10:18, 10:18] = 255
    faded = _faded(images).astype(float)
    assert faded.max() - faded.min() <= 0.4 * 255 + 1  # 40% contrast
    assert 128 < faded[0, 14, 14] and 0 < faded[0, 14, 9] - faded[0, 0, 0] < faded[0, 14, 14] - faded[0, 0, 0]  # blur


def test_aggregate_mean_and_std() -> None:
    runs = [{"stream": "s", "method": "m", **{k: v for k in _metrics()}} for v in (0.5, 0.7)]
    (row,) = aggregate(runs, ("stream", "method"))
    assert row["seeds"] == 2 and abs(row["last_accuracy"] - 0.6) < 1e-12
    assert abs(row["last_accuracy_std"] - np.std([0.5, 0.7], ddof=1)) < 1e-12
    results = {"suite": "t", "config": {"seeds": 2, "train_per_class": 1, "test_per_class": 1, "main_budget": "1KB",
               "main_codec": "int8", "streams": ["s"], "methods": ["m"], "codec_sweep": []}, "notes": [],
               "seconds": 1, "runs": [dict(r, budget_bytes=1000, codec="int8") for r in runs]}  # fmt: skip
    assert "| s | m | 60.0 ± 14.1 |" in markdown(results)


def _metrics() -> tuple[str, ...]:
    from edgecl.bench.suite import METRICS

    return METRICS


def test_cifar100_and_domainnet_from_data_root(tmp_path: Path, bundled_export: Path) -> None:
    import pickle

    from PIL import Image

    from edgecl.encoder import Encoder

    rng = np.random.default_rng(0)
    cifar = tmp_path / "cifar-100-python"
    cifar.mkdir()
    for split in ("train", "test"):
        data = {b"data": rng.integers(0, 255, (200, 3072), dtype=np.uint8), b"fine_labels": list(range(100)) * 2}
        (cifar / split).write_bytes(pickle.dumps(data))
    (cifar / "meta").write_bytes(pickle.dumps({b"fine_label_names": [f"thing{i}".encode() for i in range(100)]}))
    for domain in ("real", "sketch"):
        for cls in ("apple", "bus", "cat"):
            folder = tmp_path / "domainnet" / domain / cls
            folder.mkdir(parents=True)
            for i in range(3):
                Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(folder / f"{i}.jpg")
    embed = Embedder(Encoder(bundled_export))
    streams, notes = build_streams(["cifar100", "domainnet"], embed, 0, 1, 1, tmp_path)
    assert notes == []
    cifar_stream, domain_stream = streams
    assert len(cifar_stream.tasks) == 10 and cifar_stream.labels[3] == "thing3"
    assert sorted(c for t in cifar_stream.tasks for c in t.classes) == list(range(100))
    assert [t.domain for t in domain_stream.tasks] == ["real", "sketch"]
    assert domain_stream.labels == ("apple", "bus", "cat") and len(domain_stream.tasks[0].train_x) == 3


def test_data_files_cannot_run_code(tmp_path: Path) -> None:
    import os
    import pickle

    import pytest

    from edgecl.bench.external import cifar100
    from edgecl.datasets import DatasetUnavailableError

    class Evil:
        def __reduce__(self) -> tuple:
            return (os.system, ("echo pwned",))

    (tmp_path / "cifar-100-python").mkdir()
    (tmp_path / "cifar-100-python" / "train").write_bytes(pickle.dumps({b"data": Evil()}))
    with pytest.raises(DatasetUnavailableError, match="refusing to load"):
        cifar100(tmp_path, "train")


def test_cifar_download_fails_fast_offline(tmp_path: Path, bundled_export: Path) -> None:
    import time

    from edgecl.encoder import Encoder

    start = time.monotonic()
    streams, notes = build_streams(["cifar100"], Embedder(Encoder(bundled_export)), 0, 1, 1, tmp_path, download=True)
    assert streams == [] and "cannot download CIFAR-100" in notes[0]
    assert time.monotonic() - start < 10
