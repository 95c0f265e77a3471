"""The recipes tried on one tower share its prepared graph and one calibration (export/quant_source.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgecl.export.onnx_export import IMAGE_INPUT
from edgecl.export.quant_source import (
    _CALIBRATOR_OPTIONS,
    STATIC_OPS,
    ArrayReader,
    QuantSource,
    calibration_method,
    ranges_reusable,
)
from edgecl.export.quantize import RECIPES, QuantRecipe, quantize, run_batched, session
from edgecl.preprocess import PreprocessSpec, preprocess_batch
from edgecl.vectors import row_cosines


def _recipe(kind: str, name: str) -> QuantRecipe:
    return next(r for r in RECIPES[kind] if r.name == name)


@pytest.fixture()
def tower(tiny_export: Path, photos: list[Path], tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A copy of the tiny open_clip image tower (fp32) alone in a folder, and calibration pixels for it."""
    fp32 = tmp_path / "towers" / "image.fp32.onnx"
    fp32.parent.mkdir()
    shutil.copyfile(tiny_export / "image.fp32.onnx", fp32)
    spec = PreprocessSpec.from_dict(json.loads((tiny_export / "preprocess.json").read_text()))
    return fp32, preprocess_batch(photos[:16], spec)


def test_recipes_share_one_preparation_and_one_calibration_and_leave_no_scratch(
    tower: tuple[Path, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    import onnxruntime.quantization.calibrate as ort_calibrate

    ort_quantize = sys.modules["onnxruntime.quantization.quantize"]  # the package's `quantize` is a function

    calibrations: list[str] = []  # every onnxruntime calibrator built, ours or quantize_static's own
    original = ort_calibrate.create_calibrator

    def counted(model: object, *args: object, **kwargs: object) -> object:
        calibrations.append(str(model))
        return original(model, *args, **kwargs)

    monkeypatch.setattr(ort_calibrate, "create_calibrator", counted)
    monkeypatch.setattr(ort_quantize, "create_calibrator", counted)
    fp32, calib = tower
    static, static_rr = _recipe("transformer", "static"), _recipe("transformer", "static-rr")
    with QuantSource(fp32, calib, IMAGE_INPUT) as source:
        assert source.for_recipe(_recipe("text", "weight-only")) == fp32  # weight-only rewrites need no preparation
        prepared = source.for_recipe(static)
        prepared_at = prepared.stat().st_mtime_ns
        assert prepared != fp32 and source.for_recipe(_recipe("transformer", "dynamic")) == prepared
        for index, recipe in enumerate((static, static_rr)):
            quantize(source, fp32.parent / f"{index}.int8.onnx", recipe)
        assert prepared.stat().st_mtime_ns == prepared_at  # prepared once
        ranges = source.ranges(static_rr)
        assert (ranges is not None) == ranges_reusable()
    # one calibration for both static recipes where onnxruntime takes ranges from a file, else one each
    assert len(calibrations) == (1 if ranges_reusable() else 2), calibrations
    assert sorted(p.name for p in fp32.parent.iterdir()) == ["0.int8.onnx", "1.int8.onnx", "image.fp32.onnx"]
    reference = run_batched(session(fp32), {IMAGE_INPUT: calib})
    for index in range(2):
        int8 = run_batched(session(fp32.parent / f"{index}.int8.onnx"), {IMAGE_INPUT: calib})
        assert row_cosines(reference, int8).mean() > 0.95  # a working INT8 tower, not an empty rewrite


@pytest.mark.skipif(not ranges_reusable(), reason="this onnxruntime calibrates inside quantize_static")
def test_ranges_measured_on_the_optimised_graph_equal_onnxruntimes_own(tower: tuple[Path, np.ndarray]) -> None:
    from onnxruntime.quantization.calibrate import create_calibrator, load_tensors_data

    fp32, calib = tower
    static = _recipe("transformer", "static")
    with QuantSource(fp32, calib, IMAGE_INPUT) as source:
        ranges = source.ranges(static)
        assert ranges is not None
        ours = load_tensors_data(ranges).data
        work = fp32.parent / "ort-own" / "prepared.onnx"
        work.parent.mkdir()
        shutil.copyfile(source.for_recipe(static), work)
    calibrator = create_calibrator(work, list(STATIC_OPS), augmented_model_path=str(work.parent / "augmented.onnx"),
                                   calibrate_method=calibration_method(static.calibrate),
                                   extra_options=_CALIBRATOR_OPTIONS)  # fmt: skip
    calibrator.collect_data(ArrayReader(IMAGE_INPUT, calib))  # onnxruntime's own, unoptimised session
    theirs = calibrator.compute_data().data
    assert set(ours) == set(theirs) and len(ours) > 10
    for name, data in theirs.items():
        np.testing.assert_allclose(np.ravel(ours[name].range_value), np.ravel(data.range_value), rtol=1e-4, atol=1e-5)
