"""Export a backbone to a model directory: fp32 ONNX towers, INT8 quantisation, tokenizer, bridge, manifest."""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

import edgecl
from edgecl.atomic import publish_folder
from edgecl.errors import ExportError, ModelFileError
from edgecl.model_dir import (
    MANIFEST_NAME,
    MODEL_FORMAT,
    MODEL_FORMAT_VERSION,
    ModelManifest,
    cpu_int8_isa,
    read_manifest,
    sha256_file,
    write_json,
)

from .quantize import Agreement

log = logging.getLogger(__name__)
Progress = Callable[[str], None]


@dataclass(frozen=True)
class ExportOptions:
    """What an export depends on besides the backbone; equal options on the same backbone give equal files."""

    keep_fp32: bool = False
    calibration_dir: str | None = None
    image_recipe: str | None = None  # force a recipe name instead of the first one reaching the cosine target
    text_recipe: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _same_export(manifest: ModelManifest, backbone_id: str, options: ExportOptions) -> bool:
    return manifest.backbone == backbone_id and manifest.data.get("export_options") == options.to_dict()


def _recipes(kind: str, forced: str | None, learned: str | None) -> tuple[Any, ...]:
    """The recipes to try in order: the forced one alone, else this CPU kind's known recipe first (recipe_order)."""
    from .quantize import RECIPES, recipe_order

    recipes = RECIPES[kind]
    if forced is None:
        return recipe_order(kind, cpu_int8_isa(), learned)
    match = tuple(r for r in recipes if r.name == forced)
    if not match:
        raise ExportError(f"unknown {kind} recipe {forced!r}; known: {', '.join(r.name for r in recipes)}")
    return match


@dataclass(frozen=True)
class TowerJob:
    """One tower to quantise: work/<name>.fp32.onnx, measured on `feeds` (and `agreement`) after `postprocess`."""

    name: str  # "image" | "text": the file names and the ExportOptions recipe field
    kind: str  # the RECIPES entry: conv | transformer | text
    feeds: dict[str, np.ndarray]  # evaluation inputs
    agreement: Agreement
    calibration: np.ndarray | None = None  # static recipes only
    postprocess: Callable[[np.ndarray], np.ndarray] = lambda x: x
    reference: np.ndarray | None = None  # the fp32 tower's outputs on `feeds`, when already computed


def _quantize_tower(job: TowerJob, work: Path, options: ExportOptions, learned: dict[str, str],
                    progress: Progress) -> tuple[dict[str, Any], np.ndarray]:  # fmt: skip
    """Quantise work/<name>.fp32.onnx to work/<name>.int8.onnx; return the tower's manifest entry and the INT8
    tower's outputs on the job's feeds. `learned`: the recipe an earlier export on this CPU kind chose per tower
    (tried first)."""
    from .quant_source import QuantSource
    from .quantize import AGREEMENT_TARGETS, COSINE_TARGETS, Targets, choose_recipe

    recipes = _recipes(job.kind, getattr(options, f"{job.name}_recipe"), learned.get(job.name))
    tries = iter(range(1, len(recipes) + 1))
    with QuantSource(work / f"{job.name}.fp32.onnx", job.calibration, next(iter(job.feeds))) as source:
        report, outputs = choose_recipe(
            source, work / f"{job.name}.int8.onnx", recipes, job.feeds,
            Targets(COSINE_TARGETS[job.kind], AGREEMENT_TARGETS[job.name]), job.postprocess,
            lambda recipe: progress(f"quantising the {job.name} tower to INT8, recipe {next(tries)} of at most "
                                    f"{len(recipes)} ({recipe})"), job.agreement, job.reference,
        )  # fmt: skip
    files = {"int8": f"{job.name}.int8.onnx"}
    if options.keep_fp32:
        files["fp32"] = f"{job.name}.fp32.onnx"
    else:
        (work / f"{job.name}.fp32.onnx").unlink()
    return {"files": files, "inputs": list(job.feeds), "quantization": report}, outputs


def _bridged(built: Any, text_outputs: np.ndarray) -> np.ndarray:
    """Text tower outputs in the shared embedding space (the bundled backbone's bridge applied)."""
    return text_outputs @ built.bridge if built.bridge is not None else text_outputs


def _labelled(sources: np.ndarray) -> tuple[np.ndarray, slice]:
    """What zero-shot agreement is measured on: the labelled Fashion-MNIST evaluation images against their own
    class prompts, or every evaluation image against every prompt when Fashion-MNIST is not installed."""
    from .calibration import AGREEMENT_CLASSES, AGREEMENT_SOURCE

    rows = sources == AGREEMENT_SOURCE
    return (rows, AGREEMENT_CLASSES) if rows.any() else (np.ones(len(sources), bool), slice(None))


def _text_agreement(images_fp32: np.ndarray, classes: slice) -> Agreement:
    """A text recipe's agreement: the fp32 image embeddings of the labelled rows classified by the fp32 and by the
    INT8 text tower (so the text tower's share of the product's top-1 error is measured on its own)."""
    from edgecl.vectors import unit_rows

    from .quantize import zero_shot_agreement

    def agreement(reference: np.ndarray, candidate: np.ndarray) -> float:  # text outputs, bridged
        fp32, int8 = unit_rows(reference)[classes], unit_rows(candidate)[classes]
        return zero_shot_agreement(images_fp32, fp32, images_fp32, int8)

    return agreement


def _image_agreement(text_fp32: np.ndarray, text_int8: np.ndarray, rows: np.ndarray, classes: slice) -> Agreement:
    """An image recipe's agreement: fp32 image + fp32 text against INT8 image + the already quantised INT8 text
    (the top-1 the product shows)."""
    from .quantize import zero_shot_agreement

    def agreement(reference: np.ndarray, candidate: np.ndarray) -> float:
        return zero_shot_agreement(reference[rows], text_fp32[classes], candidate[rows], text_int8[classes])

    return agreement


def _write_check_set(work: Path, images_fp32: np.ndarray, images_int8: np.ndarray,
                     texts: tuple[np.ndarray, ...]) -> None:  # fmt: skip
    """What a CPU with other int8 kernels re-measures the INT8 towers on at first use (edgecl/int8_check.py): the
    labelled Fashion-MNIST evaluation images (raw), the fp32 towers' embeddings, and the figures of this CPU's INT8
    towers on them. `images_*`: both image towers' outputs on those images; `texts`: the class prompts' unit
    embeddings, fp32 and INT8."""
    from edgecl import datasets
    from edgecl.int8_check import CHECK_FILE, check_arrays, figures, save_check_set
    from edgecl.vectors import unit_rows

    from .calibration import AGREEMENT_CLASSES, evaluation_prompts

    images = datasets.fashion_mnist("test")[0][: len(images_fp32)]  # the same images, in order, as the labelled rows
    arrays = check_arrays(images, evaluation_prompts()[AGREEMENT_CLASSES], unit_rows(images_fp32), texts[0])
    save_check_set(work / CHECK_FILE, arrays, figures(unit_rows(images_int8), texts[1], arrays))


def _export_towers(built: Any, work: Path, options: ExportOptions, progress: Progress) -> dict[str, Any]:
    from edgecl.vectors import unit_rows

    from . import recipe_memory
    from .calibration import AGREEMENT_SOURCE, calibration_sets, evaluation_prompts
    from .onnx_export import IMAGE_INPUT, export_image_tower, export_text_tower
    from .quantize import run_batched, session

    progress("exporting image tower to ONNX")
    export_image_tower(built, work / "image.fp32.onnx")
    progress("exporting text tower to ONNX")
    export_text_tower(built, work / "text.fp32.onnx")
    calib_dir = Path(options.calibration_dir) if options.calibration_dir else None
    progress("reading the calibration and evaluation images")
    calib, evaluate, source, sources = calibration_sets(built.preprocess, calib_dir)
    rows, classes = _labelled(sources)
    progress(f"measuring the fp32 image tower on {len(evaluate)} evaluation images")
    evaluated_fp32 = run_batched(session(work / "image.fp32.onnx"), {IMAGE_INPUT: evaluate})  # every evaluation image
    images_fp32 = evaluated_fp32[rows]
    prompts = dict(built.tokenize(evaluation_prompts()))
    text_reference = _bridged(built, run_batched(session(work / "text.fp32.onnx"), prompts))
    text_job = TowerJob("text", "text", prompts, _text_agreement(images_fp32, classes),
                        postprocess=lambda x: _bridged(built, x), reference=text_reference)  # fmt: skip
    learned = recipe_memory.learned(built.backbone_id)
    text, text_outputs = _quantize_tower(text_job, work, options, learned, progress)
    text_fp32, text_int8 = unit_rows(text_reference), unit_rows(text_outputs)  # the evaluation prompts' anchors
    image_job = TowerJob("image", built.image_arch, {IMAGE_INPUT: evaluate},
                         _image_agreement(text_fp32, text_int8, rows, classes), calibration=calib,
                         reference=evaluated_fp32)  # fmt: skip
    image, image_int8 = _quantize_tower(image_job, work, options, learned, progress)
    recipe_memory.remember(built.backbone_id, {"text": text["quantization"], "image": image["quantization"]})
    if calib_dir is None and (sources == AGREEMENT_SOURCE).any():
        _write_check_set(work, images_fp32, image_int8[rows], (text_fp32[classes], text_int8[classes]))
    image["quantization"]["data"] = source
    text["quantization"]["data"] = "evaluation prompts: " + ", ".join(evaluation_prompts()[:3]) + ", ..."
    return {"image": image, "text": text}


def _write_side_files(built: Any, work: Path) -> dict[str, Any] | None:
    for name, src in built.tokenizer_files.items():
        shutil.copyfile(src, work / name)
    write_json(work / "preprocess.json", built.preprocess.to_dict())
    if built.bridge is None:
        return None
    # fp16 on disk (half the bytes; text cosine to the fp32 bridge > 0.99999), fp32 once loaded (edgecl/encoder.py)
    np.save(work / "bridge.npy", np.ascontiguousarray(built.bridge, dtype=np.float16), allow_pickle=False)
    return {"file": "bridge.npy", "shape": list(built.bridge.shape), "fit": built.notes.get("bridge", "")}


def _write_manifest(built: Any, work: Path, towers: dict[str, Any], bridge: Any, options: ExportOptions) -> None:
    files = {p.name: sha256_file(p) for p in sorted(work.iterdir()) if p.is_file()}
    manifest = {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "edgecl_version": edgecl.__version__,
        "backbone": built.backbone_id,
        "weights": built.notes.get("weights", ""),
        "embed_dim": built.embed_dim,
        "preprocess": built.preprocess.to_dict(),
        "tokenizer": built.tokenizer_spec,
        "bridge": bridge,
        "towers": towers,
        "int8_isa": cpu_int8_isa(),  # where the recipes were measured (docs/formats.md "Model directory")
        "export_options": options.to_dict(),
        "files": files,
    }
    write_json(work / MANIFEST_NAME, manifest)  # written last: its presence marks a complete export


def export_model(
    backbone_id: str,
    out_dir: str | Path,
    options: ExportOptions = ExportOptions(),
    force: bool = False,
    progress: Progress = lambda message: None,
) -> ModelManifest:
    """Export `backbone_id` to `out_dir` (idempotent: an identical complete export is reused)."""
    from edgecl.backbones import build_backbone, parse_backbone_id

    out_dir = Path(out_dir)
    backbone_id = parse_backbone_id(backbone_id).canonical
    if (out_dir / MANIFEST_NAME).is_file() and not force:
        with contextlib.suppress(ModelFileError):
            existing = read_manifest(out_dir)
            if _same_export(existing, backbone_id, options):
                progress(f"{out_dir} already holds this export; reusing it")
                return existing
        raise ExportError(f"{out_dir} already holds a different export; pass --force to replace it")
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"{out_dir} exists and is not a folder; choose another --out")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / MANIFEST_NAME).is_file() and not force:
        raise ExportError(f"{out_dir} is not empty and holds no export; choose another --out or pass --force")
    progress(f"one-time build of {backbone_id} into {out_dir} (ONNX export and INT8 quantisation; "
             "later runs reuse it)")
    with contextlib.redirect_stdout(io.StringIO()):  # some model packages print on load
        built = build_backbone(backbone_id)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        towers = _export_towers(built, work, options, progress)
        bridge = _write_side_files(built, work)
        _write_manifest(built, work, towers, bridge, options)
        publish_folder(work, out_dir, replace_existing=True)  # a reader sees the old export or the new one
    finally:
        shutil.rmtree(work, ignore_errors=True)
    progress(f"wrote {out_dir}")
    return read_manifest(out_dir)
