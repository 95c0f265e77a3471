"""A model directory used on a CPU whose int8 kernels differ from the exporting one is measured again, once."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgecl.encoder import Encoder
from edgecl.int8_check import CHECK_FILE, recheck_on_this_cpu
from edgecl.model_dir import cpu_int8_isa, sha256_file


def _copy_as_if_exported_elsewhere(bundled_export: Path, dst: Path) -> Path:
    shutil.copytree(bundled_export, dst, ignore=shutil.ignore_patterns("*.fp32.onnx"))
    _edit_manifest(dst, lambda manifest: manifest | {"int8_isa": "a-cpu-unlike-this-one"})
    return dst


def _edit_manifest(model: Path, change: object) -> None:
    manifest = json.loads((model / "manifest.json").read_text())
    (model / "manifest.json").write_text(json.dumps(change(manifest)))  # type: ignore[operator]


def test_the_export_ships_a_check_set_and_this_cpu_is_not_rechecked(bundled_export: Path) -> None:
    manifest = Encoder(bundled_export).manifest.data
    assert manifest["int8_isa"] == cpu_int8_isa() and CHECK_FILE in manifest["files"]
    assert (bundled_export / CHECK_FILE).stat().st_size < 350_000
    assert recheck_on_this_cpu(Encoder(bundled_export)) is None


def test_another_cpu_measures_once_and_caches(bundled_export: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("EDGECL_HOME", str(tmp_path / "home"))
    model = _copy_as_if_exported_elsewhere(bundled_export, tmp_path / "model")
    first = recheck_on_this_cpu(Encoder(model))
    assert first is not None and first.measured_on == cpu_int8_isa() and first.meets_targets
    # the same kernels as the export, through the encoder users get: the export's own figures on the same set
    assert abs(first.agreement - first.exported_agreement) <= 0.002, first
    assert abs(first.image_cosine - first.exported_image_cosine) <= 0.0005 and first.text_cosine >= 0.99, first
    cached = list((tmp_path / "home" / "cache" / "int8-checks").iterdir())
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    assert recheck_on_this_cpu(Encoder(model)) == first and cached[0].stat().st_mtime_ns == stamp
    cached[0].write_text("{not json")  # a damaged cache is measured again, not an error
    assert recheck_on_this_cpu(Encoder(model)) == first and json.loads(cached[0].read_text())["agreement"]


def test_a_cpu_that_loses_accuracy_is_told_in_one_line(bundled_export: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    """The comparison rule with figures the test controls, on every CPU: the check set's fp32 top-1 answers are
    moved to another class, so this CPU's INT8 towers agree with (almost) none of them while the exporting CPU's
    recorded figures stay as exported; the result falls short and one line says so."""
    monkeypatch.setenv("EDGECL_HOME", str(tmp_path / "home"))
    model = _copy_as_if_exported_elsewhere(bundled_export, tmp_path / "model")
    with np.load(model / CHECK_FILE) as check:
        moved = ((check["top1_fp32"].astype(np.int64) + 1) % len(check["prompts"])).astype(np.uint8)
        arrays = dict(check) | {"top1_fp32": moved}
        assert float(check["exported_figures"][2]) >= 0.9  # the export's own agreement, which this CPU now misses
    np.savez_compressed(model / CHECK_FILE, **arrays)
    digest = sha256_file(model / CHECK_FILE)
    _edit_manifest(model, lambda manifest: manifest | {"files": manifest["files"] | {CHECK_FILE: digest}})
    with caplog.at_level(logging.WARNING, logger="edgecl"):
        result = recheck_on_this_cpu(Encoder(model))
    assert result is not None and not result.meets_targets and result.agreement < 0.5, result
    [record] = [r for r in caplog.records if r.name == "edgecl.int8_check"]
    message = record.getMessage()
    assert "\n" not in message and "a-cpu-unlike-this-one" in message and "edgecl export --backbone bundled" in message


def test_a_read_only_home_measures_without_failing(bundled_export: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """classify is a reader: a $EDGECL_HOME it cannot write (a read-only mount) skips the check's cache."""
    import os

    if os.geteuid() == 0:  # root writes through read-only permissions: make the cache's parent a file instead
        (tmp_path / "home").mkdir()
        (tmp_path / "home" / "cache").write_text("not a folder")
    else:
        (tmp_path / "home").mkdir(mode=0o555)
    monkeypatch.setenv("EDGECL_HOME", str(tmp_path / "home"))
    model = _copy_as_if_exported_elsewhere(bundled_export, tmp_path / "model")
    with np.load(model / CHECK_FILE) as check:  # 32 of its images: what is checked here is the cache, not figures
        n = len(check["images"])
        arrays = {k: (v[:32] if len(v.shape) and v.shape[0] == n else v) for k, v in dict(check).items()}
    np.savez_compressed(model / CHECK_FILE, **arrays)
    digest = sha256_file(model / CHECK_FILE)
    _edit_manifest(model, lambda manifest: manifest | {"files": manifest["files"] | {CHECK_FILE: digest}})
    result = recheck_on_this_cpu(Encoder(model))
    assert result is not None and 0 <= result.agreement <= 1
