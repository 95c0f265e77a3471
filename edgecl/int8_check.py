"""INT8 towers on a CPU whose int8 kernels differ from the exporting one: measured again at first use.

An export chooses its quantisation recipes by what they score on the exporting CPU's kernels (u8 x s8 products
saturate on x86 without VNNI/AMX, for one). The model directory carries a small check set (`int8_check.npz`:
Fashion-MNIST test images with the fp32 towers' embeddings and zero-shot top-1). The first time a model directory is
used on a CPU with another `int8_isa`, the INT8 towers are run on that set here and compared with the same figures
measured by the exporting CPU (stored in the set); the figures are cached under $EDGECL_HOME/cache (once per model
and CPU kind), and a line warns when this CPU loses more than the slack below.
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgecl.atomic import atomic_write_bytes
from edgecl.model_dir import cpu_int8_isa
from edgecl.paths import measurements_dir
from edgecl.vectors import row_cosines

if TYPE_CHECKING:
    from edgecl.encoder import Encoder

log = logging.getLogger(__name__)
CHECK_FILE = "int8_check.npz"
COSINE_ROWS = 32  # image embeddings kept at fp16 for the cosine figure; all images count for agreement
# What another CPU's kernels may lose against the exporting CPU's figures before a warning: 5 of 500 images'
# zero-shot top-1, and 0.002 of mean image cosine (the measurement itself repeats to 1e-4 on one CPU).
AGREEMENT_SLACK, COSINE_SLACK = 0.01, 0.002


@dataclass(frozen=True)
class CheckResult:
    exported_on: str
    measured_on: str
    image_cosine: float
    text_cosine: float
    agreement: float
    exported_image_cosine: float  # the same figures measured by the exporting CPU
    exported_agreement: float

    @property
    def meets_targets(self) -> bool:
        return (self.image_cosine >= self.exported_image_cosine - COSINE_SLACK
                and self.agreement >= self.exported_agreement - AGREEMENT_SLACK)  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"meets_targets": self.meets_targets}


def figures(images_int8: np.ndarray, texts_int8: np.ndarray, check: Any) -> tuple[float, float, float]:
    """(image cosine, text cosine, zero-shot top-1 agreement) of INT8 unit embeddings of the check set's images and
    prompts with the fp32 towers' (`check`: the set's arrays)."""
    image_cos = float(row_cosines(images_int8[:COSINE_ROWS], check["image_fp32"]).mean())
    text_cos = float(row_cosines(texts_int8, check["text_fp32"]).mean())
    agreement = float(((images_int8 @ texts_int8.T).argmax(1) == check["top1_fp32"]).mean())
    return round(image_cos, 4), round(text_cos, 4), round(agreement, 4)


def check_arrays(images: np.ndarray, prompts: list[str], images_fp32: np.ndarray,
                 texts_fp32: np.ndarray) -> dict[str, np.ndarray]:  # fmt: skip
    """The check set: raw images (N, H, W) uint8, class prompts, and the fp32 towers' unit embeddings."""
    top1 = (images_fp32 @ texts_fp32.T).argmax(1).astype(np.uint8)
    return {"images": images, "prompts": np.array(prompts), "top1_fp32": top1,
            "image_fp32": images_fp32[:COSINE_ROWS].astype(np.float16),
            "text_fp32": texts_fp32.astype(np.float16)}  # fmt: skip


def save_check_set(path: Path, arrays: dict[str, np.ndarray], exported: tuple[float, float, float]) -> None:
    """Write the set with the exporting CPU's own figures on it (`figures` of its INT8 towers)."""
    np.savez_compressed(path, **arrays, exported_figures=np.array(exported, np.float64))


def _measure(encoder: Encoder, check: Any) -> tuple[float, float, float]:
    """This CPU's INT8 towers on the check set, through the encoder users get."""
    images = encoder.encode_images(list(check["images"]))
    return figures(images, encoder.encode_texts([str(p) for p in check["prompts"]]), check)


def _cache_path(encoder: Encoder, isa: str) -> Path:
    key = encoder.manifest.data["files"].get(CHECK_FILE, "")[:16]
    return measurements_dir("int8-checks") / f"{encoder.manifest.backbone.replace(':', '-')}-{key}-{isa}.json"


def _cached(cache: Path) -> CheckResult | None:
    """An earlier result for this model and CPU kind; an unreadable or foreign cache file is measured again."""
    try:
        saved = json.loads(cache.read_text())
        return CheckResult(**{k: v for k, v in saved.items() if k != "meets_targets"})
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def recheck_on_this_cpu(encoder: Encoder) -> CheckResult | None:
    """The INT8 towers' figures on this CPU when its int8 instruction set differs from the exporting one (None when
    it is the same, or the model directory has no check set); warns once when they miss the targets."""
    data = encoder.manifest.data
    exported_on, here = data.get("int8_isa"), cpu_int8_isa()
    if exported_on in (None, here) or CHECK_FILE not in data["files"]:
        return None
    cache = _cache_path(encoder, here)
    cached = _cached(cache)
    if cached is not None:
        return cached
    with np.load(encoder.manifest.verify_file(encoder.manifest.root / CHECK_FILE), allow_pickle=False) as check:
        image_cos, text_cos, agreement = _measure(encoder, check)
        exported_cos, _, exported_agreement = (float(v) for v in check["exported_figures"])
    result = CheckResult(exported_on, here, image_cos, text_cos, agreement, exported_cos, exported_agreement)
    with contextlib.suppress(OSError):  # a read-only $EDGECL_HOME: measured again next time, nothing fails
        cache.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(cache, json.dumps(result.to_json(), indent=2).encode())
    if not result.meets_targets:
        log.warning(
            "%s was exported on a CPU with %s; on this %s CPU its INT8 towers measure cosine %.4f and zero-shot "
            "agreement %.1f%% with fp32 (%.4f and %.1f%% where exported); states learned with it keep working; "
            "for recipes chosen on this CPU, export into a new folder (edgecl export --backbone %s --out NEW, "
            "beside %s) and learn a new state with it: a state refuses an export it did not learn with",
            encoder.manifest.root, exported_on, here, image_cos, 100 * agreement, exported_cos,
            100 * exported_agreement, encoder.manifest.backbone, encoder.manifest.root,
        )  # fmt: skip
    return result
