"""INT8 quantisation of fp32 ONNX towers: candidate recipes, calibration, and the agreement measurement."""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecl.errors import ExportError
from edgecl.vectors import row_cosines

from .quant_source import CALIBRATION_OPTIONS, STATIC_OPS, ArrayReader, QuantSource, calibration_method

log = logging.getLogger(__name__)
# Mean cosine to fp32 that a recipe must reach. The floor is 0.99; the conv tower gets 0.995 because the
# bundled EfficientNet at 0.992 kept only 96.8% zero-shot top-1 agreement on Fashion-MNIST (docs/quantisation.md).
COSINE_TARGETS = {"conv": 0.995, "transformer": 0.99, "text": 0.99}
# Top-1 zero-shot agreement with fp32 over the evaluation prompts that a recipe must also reach: the product
# promises 97% for both INT8 towers together (tests/test_bundled_backbone.py), and cosine alone let a recipe
# through at 0.966. The text tower, quantised first, may use half of those 3 points.
AGREEMENT_TARGETS = {"image": 0.97, "text": 0.985}


@dataclass(frozen=True)
class QuantRecipe:
    """One way to quantise a tower. Static recipes need calibration inputs; dynamic ones do not."""

    name: str
    mode: str  # "static" (QDQ, U8 activations, S8 weights), "dynamic" (S8 weights, runtime activation scales) or
    # "weight-only" (8-bit weight blocks of `block_size` rows, fp32 activations: export/weight_only.py)
    per_channel: bool = True
    calibrate: str = "minmax"  # static only: "minmax" | "percentile" | "entropy"
    reduce_range: bool = False  # 7-bit weights: avoids u8*s8 int16 saturation on x86 CPUs without VNNI
    exclude_first_convs: int = 0  # leave the stem convs in fp32 (they carry most of the error)
    exclude_pattern: str = ""  # regex: MatMul/Gemm/Conv nodes whose name matches stay fp32
    int8_tables: bool = False  # embedding tables (Gather) stored per-row INT8
    block_size: int = 128  # weight-only only

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# MLP blocks of BERT-style and open_clip text transformers (feed-forward in and out projections).
FFN_PATTERN = r"intermediate/|layer\.\d+/output/dense|/mlp/"

# Candidates per tower kind. Export takes the first, in this order, whose mean cosine to fp32 on real evaluation
# inputs reaches its COSINE_TARGETS entry: the order is fixed (cheapest-to-run and least-fp32 first, as measured by
# benchmarks/quant_recipes.py, docs/quantisation.md "Quantisation recipes"), so the choice is deterministic; quality is
# measured on this machine's own INT8 kernels at every export.
RECIPES: dict[str, tuple[QuantRecipe, ...]] = {
    "conv": (
        QuantRecipe("static", "static"),
        QuantRecipe("static-rr", "static", reduce_range=True),
        QuantRecipe("static-keep-stem6", "static", exclude_first_convs=6),
        QuantRecipe("static-rr-keep-stem6", "static", reduce_range=True, exclude_first_convs=6),
        QuantRecipe("static-rr-keep-stem24", "static", reduce_range=True, exclude_first_convs=24),
        QuantRecipe("static-keep-stem24", "static", exclude_first_convs=24),  # VNNI/AMX CPUs need no reduce-range
        QuantRecipe("static-keep-stem40", "static", exclude_first_convs=40),
    ),
    "transformer": (
        QuantRecipe("static", "static"),
        QuantRecipe("dynamic", "dynamic"),
        QuantRecipe("static-rr", "static", reduce_range=True),
        QuantRecipe("dynamic-rr", "dynamic", reduce_range=True),
        QuantRecipe("dynamic-keep-ffn", "dynamic", exclude_pattern=FFN_PATTERN),
    ),
    "text": (  # every text recipe stores the word-embedding table in INT8: it is most of a text tower's size
        QuantRecipe("dynamic", "dynamic", int8_tables=True),
        QuantRecipe("dynamic-rr", "dynamic", reduce_range=True, int8_tables=True),
        QuantRecipe("weight-only", "weight-only", int8_tables=True),
        QuantRecipe("weight-only-b32", "weight-only", int8_tables=True, block_size=32),
    ),
}
# The recipe each tower kind needed on a CPU kind's int8 kernels when last measured (`int8_isa`, docs/quantisation.md
# "First learn"): an export tries it first and stops there when it meets every target, so a first learn does not
# spend minutes on recipes that this CPU kind is known to fail; the fixed order above follows when it does not.
# avx2: u8 x s8 products saturate without VNNI, the bundled tower needs its first 40 convs in fp32 and ViT-B-32
# 7-bit weights; amx and VNNI kernels do not saturate (measured on AMX; the VNNI-only kinds by the same kernels).
ISA_FIRST: dict[str, dict[str, str]] = {
    # avx512-vnni without AMX (AMD EPYC, 2026-12-02): static-rr-keep-stem24 missed, static-keep-stem6 met the targets
    "conv": {"avx2": "static-keep-stem40", "avx512": "static-keep-stem40", "amx": "static-rr-keep-stem24",
             "avx512-vnni": "static-keep-stem6", "avx-vnni": "static-rr-keep-stem24"},
    "transformer": {"avx2": "static-rr", "avx512": "static-rr"},
    # the dynamic text recipes missed the targets even on AMX (docs/quantisation.md): any CPU ("*")
    "text": {"*": "weight-only"},
}


def recipe_order(kind: str, isa: str, learned: str | None = None) -> tuple[QuantRecipe, ...]:
    """RECIPES[kind] with the recipe this CPU kind is known to need first: `learned` (what an earlier export on this
    machine chose), else ISA_FIRST's entry; the rest keep their fixed order."""
    recipes = RECIPES[kind]
    known = ISA_FIRST.get(kind, {})
    first = next((name for name in (learned, known.get(isa, known.get("*"))) if name in {r.name for r in recipes}),
                 None)  # fmt: skip
    return tuple(sorted(recipes, key=lambda r: r.name != first))


DYNAMIC_OPS = ("MatMul", "Gemm")


def _excluded_nodes(model_path: Path, recipe: QuantRecipe) -> list[str]:
    import onnx

    nodes = onnx.load(str(model_path), load_external_data=False).graph.node
    convs = [node.name for node in nodes if node.op_type == "Conv"]
    matched = []
    if recipe.exclude_pattern:
        pattern = re.compile(recipe.exclude_pattern)
        matched = [n.name for n in nodes if n.op_type in ("Conv", "MatMul", "Gemm") and pattern.search(n.name)]
    return convs[: recipe.exclude_first_convs] + matched


def quantize(source: QuantSource, dst: Path, recipe: QuantRecipe) -> None:
    """Write the INT8 model for `recipe` from `source` (static recipes: on its calibration inputs' ranges)."""
    src = source.for_recipe(recipe)
    try:
        if recipe.mode == "weight-only":
            _rewrite_weights(src, dst, recipe.block_size, recipe.int8_tables)
            return
        if recipe.mode == "dynamic":
            _quantize_dynamic(src, dst, recipe)
        else:
            _quantize_static(source, src, dst, recipe)
        if recipe.int8_tables:
            _rewrite_weights(dst, dst, None, tables=True)
    except ExportError:
        raise
    except Exception as exc:  # onnxruntime.quantization raises many untyped errors
        raise ExportError(f"quantising {source.fp32.name} with recipe {recipe.name} failed: {exc}") from exc


def _rewrite_weights(src: Path, dst: Path, matmul_block: int | None, tables: bool) -> None:
    import onnx

    from .weight_only import int8_weights

    onnx.save(int8_weights(onnx.load(str(src)), matmul_block, tables), str(dst))


def _quantize_dynamic(src: Path, dst: Path, recipe: QuantRecipe) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(src), str(dst), per_channel=recipe.per_channel, reduce_range=recipe.reduce_range,
        weight_type=QuantType.QInt8, op_types_to_quantize=list(DYNAMIC_OPS),
        nodes_to_exclude=_excluded_nodes(src, recipe),
    )  # fmt: skip


def _quantize_static(source: QuantSource, src: Path, dst: Path, recipe: QuantRecipe) -> None:
    """`src`: the source's prepared model (source.for_recipe)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    calibration = source.calibration
    if calibration is None or len(calibration) == 0:
        raise ExportError(f"recipe {recipe.name} needs calibration inputs and none were given")
    ranges = source.ranges(recipe)
    measured = {"calibration_cache_path": str(ranges)} if ranges else {}  # else: calibrated here, on the reader
    reader = None if ranges else ArrayReader(source.input_name, calibration)
    with tempfile.TemporaryDirectory(prefix="edgecl-calib-") as tmp:
        work = Path(tmp) / src.name
        shutil.copyfile(src, work)  # onnxruntime writes its shape-inferred (and augmented) models beside the input
        quantize_static(
            str(work), str(dst), reader, quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(STATIC_OPS), per_channel=recipe.per_channel, activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8, calibrate_method=calibration_method(recipe.calibrate),
            nodes_to_exclude=_excluded_nodes(src, recipe), reduce_range=recipe.reduce_range,
            extra_options=CALIBRATION_OPTIONS, **measured,
        )  # fmt: skip


def session(path: Path, threads: int | None = None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_batched(sess: Any, feeds: dict[str, np.ndarray], batch: int = 16) -> np.ndarray:
    n = len(next(iter(feeds.values())))
    outs = [sess.run(None, {k: v[i : i + batch] for k, v in feeds.items()})[0] for i in range(0, n, batch)]
    return np.concatenate(outs).astype(np.float32)


def zero_shot_agreement(images: np.ndarray, classes: np.ndarray, images_q: np.ndarray, classes_q: np.ndarray) -> float:
    """Share of images (N, D) whose best class (K, D, unit rows) is the same for the reference pair and the
    quantised pair: the top-1 that users see."""
    return float(((images @ classes.T).argmax(1) == (images_q @ classes_q.T).argmax(1)).mean())


# (fp32 outputs, candidate outputs) on the evaluation feeds -> zero-shot top-1 agreement of the candidate with fp32
Agreement = Callable[[np.ndarray, np.ndarray], float]


@dataclass(frozen=True)
class Targets:
    cosine: float
    agreement: float = 1.0  # only with an Agreement measure


def choose_recipe(
    source: QuantSource,
    out_path: Path,
    recipes: tuple[QuantRecipe, ...],
    feeds_eval: dict[str, np.ndarray],
    targets: Targets,
    postprocess: Callable[[np.ndarray], np.ndarray] = lambda x: x,
    on_try: Callable[[str], None] = lambda name: None,
    agreement: Agreement | None = None,
    reference: np.ndarray | None = None,
) -> tuple[dict[str, Any], np.ndarray]:
    """Quantise with each recipe in order until one reaches the mean cosine target and, given `agreement`, the
    agreement target; else keep the best (by agreement up to its target, then cosine). Returns the report and the
    kept model's postprocessed outputs on `feeds_eval`. `reference`: the fp32 tower's postprocessed outputs on
    them when the caller has them already (else they are computed here)."""
    if reference is None:
        reference = postprocess(run_batched(session(source.fp32), feeds_eval))
    tried: list[dict[str, Any]] = []
    best: tuple[tuple[float, float], Path, dict[str, Any], np.ndarray] | None = None
    with tempfile.TemporaryDirectory(prefix="edgecl-quant-", dir=out_path.parent) as tmp:
        for index, recipe in enumerate(recipes):
            on_try(recipe.name)
            candidate = Path(tmp) / f"{index}.onnx"
            quantize(source, candidate, recipe)
            output = postprocess(run_batched(session(candidate), feeds_eval))
            entry = _measure(recipe, candidate, reference, output, agreement)
            tried.append(entry)
            score = (min(entry.get("agreement", 1.0), targets.agreement), entry["cosine_mean"])
            if best is None or score > best[0] or all(_meets(entry, targets)):
                best = (score, candidate, entry, output)
            if all(_meets(entry, targets)):
                break
        assert best is not None
        shutil.move(str(best[1]), out_path)
    return _report(best[2], tried, targets, agreement is not None, out_path.name), best[3]


def _measure(recipe: QuantRecipe, path: Path, reference: np.ndarray, output: np.ndarray,
             agreement: Agreement | None) -> dict[str, Any]:  # fmt: skip
    cos = row_cosines(reference, output)
    entry = {"recipe": recipe.to_dict(), "cosine_mean": round(float(cos.mean()), 6),
             "cosine_min": round(float(cos.min()), 6), "bytes": path.stat().st_size}  # fmt: skip
    return entry | ({} if agreement is None else {"agreement": round(agreement(reference, output), 4)})


def _meets(entry: dict[str, Any], targets: Targets) -> tuple[bool, bool]:
    return entry["cosine_mean"] >= targets.cosine, entry.get("agreement", 1.0) >= targets.agreement


def _report(chosen: dict[str, Any], tried: list[dict[str, Any]], targets: Targets, with_agreement: bool,
            name: str) -> dict[str, Any]:  # fmt: skip
    meets_cosine, meets_agreement = _meets(chosen, targets)
    if not (meets_cosine and meets_agreement):
        log.warning("no recipe reached cosine %.3f and agreement %.3f for %s; kept the best (%s)", targets.cosine,
                    targets.agreement, name, chosen)  # fmt: skip
    report = {"chosen": chosen["recipe"]["name"], "cosine_target": targets.cosine, "meets_target": meets_cosine,
              "tried": tried}  # fmt: skip
    if with_agreement:
        report |= {"agreement_target": targets.agreement, "agreement": chosen["agreement"],
                   "meets_agreement_target": meets_agreement}  # fmt: skip
    return report
