"""A model directory used on a CPU whose int8 kernels differ from the exporting one is measured again, once."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from edgecl.encoder import Encoder
from edgecl.int8_check import CHECK_FILE, recheck_on_this_cpu
from edgecl.model_dir import cpu_int8_isa


def _copy_as_if_exported_elsewhere(bundled_export: Path, dst: Path, image_target: float | None = None) -> Path:
    shutil.copytree(bundled_export, dst, ignore=shutil.ignore_patterns("*.fp32.onnx"))
    manifest = json.loads((dst / "manifest.json").read_text())
    manifest["int8_isa"] = "a-cpu-unlike-this-one"
    if image_target is not None:
        manifest["towers"]["image"]["quantization"]["cosine_target"] = image_target
    (dst / "manifest.json").write_text(json.dumps(manifest))
    return dst


def test_the_export_ships_a_check_set_and_this_cpu_is_not_rechecked(bundled_export: Path) -> None:
    manifest = Encoder(bundled_export).manifest.data
    assert manifest["int8_isa"] == cpu_int8_isa() and CHECK_FILE in manifest["files"]
    assert (bundled_export / CHECK_FILE).stat().st_size < 200_000
    assert recheck_on_this_cpu(Encoder(bundled_export)) is None


def test_another_cpu_measures_once_and_caches(bundled_export: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("EDGECL_HOME", str(tmp_path / "home"))
    model = _copy_as_if_exported_elsewhere(bundled_export, tmp_path / "model")
    first = recheck_on_this_cpu(Encoder(model))
    assert first is not None and first.measured_on == cpu_int8_isa()
    exported = json.loads((model / "manifest.json").read_text())["towers"]["image"]["quantization"]
    # the same kernels as the export, so the figures are the export's, measured on a subset (256 of 500 images)
    assert first.image_cosine >= exported["cosine_target"] - 0.005 and first.text_cosine >= 0.99
    assert abs(first.agreement - exported["agreement"]) <= 0.03
    cached = list((tmp_path / "home" / "cache" / "int8-checks").iterdir())
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    assert recheck_on_this_cpu(Encoder(model)) == first and cached[0].stat().st_mtime_ns == stamp


def test_figures_below_the_targets_warn_in_one_line(bundled_export: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    monkeypatch.setenv("EDGECL_HOME", str(tmp_path / "home"))
    model = _copy_as_if_exported_elsewhere(bundled_export, tmp_path / "model", image_target=1.0)
    with caplog.at_level(logging.WARNING, logger="edgecl"):
        result = recheck_on_this_cpu(Encoder(model))
    assert result is not None and not result.meets_targets
    [record] = [r for r in caplog.records if r.name == "edgecl.int8_check"]
    message = record.getMessage()
    assert "\n" not in message and "a-cpu-unlike-this-one" in message and "edgecl export --backbone bundled" in message
