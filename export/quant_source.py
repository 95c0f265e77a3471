"""The fp32 model that every quantisation recipe of one tower starts from, and what those recipes share: the graph
prepared for onnxruntime's quantisers and the calibration ranges, each computed once, on first need."""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .quantize import QuantRecipe

log = logging.getLogger(__name__)
# Activations feeding these ops take the range after the activation function (ReLU6 in EfficientNet).
STATIC_OPS = ("Conv", "MatMul", "Gemm", "Clip", "Relu")
CALIBRATION_BATCH = 8
# onnxruntime's calibrator options, as quantize_static's extra_options name them and as create_calibrator does
CALIBRATION_OPTIONS = {"CalibPercentile": 99.99, "CalibTensorRangeSymmetric": False}
_CALIBRATOR_OPTIONS = {"percentile": CALIBRATION_OPTIONS["CalibPercentile"],
                       "symmetric": CALIBRATION_OPTIONS["CalibTensorRangeSymmetric"]}  # fmt: skip


def preprocess_for_quantization(src: Path, dst: Path) -> None:
    """Shape inference + graph optimisation, as onnxruntime recommends before quantising."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, dst = src.resolve(), dst.resolve()
    # When symbolic inference is incomplete, onnxruntime dumps a debug model into the working directory.
    with tempfile.TemporaryDirectory(prefix="edgecl-prep-") as scratch, contextlib.chdir(scratch):
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                quant_pre_process(str(src), str(dst), skip_symbolic_shape=False)
            except Exception:  # symbolic inference cannot follow some dynamic reshapes; ONNX's own inference can
                log.info("symbolic shape inference failed on %s; using ONNX shape inference", src.name)
                quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)


def calibration_method(name: str) -> Any:
    from onnxruntime.quantization import CalibrationMethod

    return {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
            "entropy": CalibrationMethod.Entropy}[name]  # fmt: skip


class ArrayReader:
    """Feeds calibration batches to onnxruntime's quantiser (its CalibrationDataReader protocol)."""

    def __init__(self, input_name: str, data: np.ndarray) -> None:
        usable = max(CALIBRATION_BATCH, len(data) - len(data) % CALIBRATION_BATCH)  # histograms need equal batches
        self._batches = iter(
            [data[i : i + CALIBRATION_BATCH] for i in range(0, min(usable, len(data)), CALIBRATION_BATCH)]
        )
        self._name = input_name

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {self._name: batch}

    def rewind(self) -> None:  # pragma: no cover - part of the protocol, unused by minmax/percentile
        raise NotImplementedError


def ranges_reusable() -> bool:
    """Whether this onnxruntime's quantize_static takes calibration ranges from a file (calibration_cache_path)."""
    from onnxruntime.quantization import quantize_static

    return "calibration_cache_path" in inspect.signature(quantize_static).parameters


def _calibrate(model: Path, out: Path, method: str, calibration: np.ndarray, input_name: str) -> None:
    """Write the ranges onnxruntime's `method` calibrator measures on `model` over `calibration` to `out`."""
    import onnxruntime as ort
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    with tempfile.TemporaryDirectory(prefix="edgecl-calib-") as tmp:
        work = Path(tmp) / model.name
        shutil.copyfile(model, work)
        calibrator = create_calibrator(work, list(STATIC_OPS), augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                                       calibrate_method=calibration_method(method),
                                       extra_options=_CALIBRATOR_OPTIONS)  # fmt: skip
        # onnxruntime runs its augmented graph unoptimised, twice as slow as optimised on the bundled image tower.
        # Every tensor it measures is read by a graph output (MinMax: a ReduceMin/Max; histogram methods: the tensor
        # itself), so no optimisation can drop one: MinMax ranges agree to 1.4e-6 (relative) with the unoptimised
        # run (tests/test_quant_source.py).
        options = ort.SessionOptions()
        options.log_severity_level = 3
        calibrator.infer_session = ort.InferenceSession(calibrator.augmented_model_path, options,
                                                        providers=["CPUExecutionProvider"])  # fmt: skip
        calibrator.collect_data(ArrayReader(input_name, calibration))
        save_tensors_data(calibrator.compute_data(), out)


class QuantSource:
    """One tower's fp32 model (`fp32`) and its calibration inputs (`calibration`, (N, ...) f32 for the model's input
    `input_name`; static recipes only) for the recipes tried on it; scratch files live in a folder beside the model
    until the `with` block ends. Weight-only rewrites start from the model as exported (they only swap initializers:
    preparing a text tower costs seconds that a first learn need not spend when weight-only is its recipe)."""

    def __init__(self, fp32: Path, calibration: np.ndarray | None = None, input_name: str = "") -> None:
        self.fp32, self.calibration, self.input_name = fp32, calibration, input_name
        self._scratch = Path(tempfile.mkdtemp(prefix=f".{fp32.stem}-", dir=fp32.parent))
        self._prepared = self._scratch / "prepared.onnx"

    def __enter__(self) -> QuantSource:
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self._scratch, ignore_errors=True)

    def for_recipe(self, recipe: QuantRecipe) -> Path:
        """The model `recipe` quantises: shape-inferred and optimised for onnxruntime's static and dynamic
        quantisers, as exported for weight-only rewrites."""
        if recipe.mode == "weight-only":
            return self.fp32
        if not self._prepared.is_file():
            preprocess_for_quantization(self.fp32, self._prepared)
        return self._prepared

    def ranges(self, recipe: QuantRecipe) -> Path | None:
        """The calibration ranges of a static recipe, measured once per calibration method (which tensors are
        measured depends only on the op types, STATIC_OPS; recipes differ in what they exclude and how they round);
        None where this onnxruntime cannot take ranges from a file (each recipe then calibrates inside
        quantize_static)."""
        if not ranges_reusable():
            return None
        path = self._scratch / f"ranges-{recipe.calibrate}.json"
        if not path.is_file():
            assert self.calibration is not None, "a static recipe needs calibration inputs"
            _calibrate(self.for_recipe(recipe), path, recipe.calibrate, self.calibration, self.input_name)
        return path
