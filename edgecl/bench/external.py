"""Data sets users bring under --data-root: CIFAR-100 (the python version, torchvision's layout) and DomainNet
(<root>/domainnet/<domain>/<class>/*.jpg). Neither can be downloaded here; both are read only when present."""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from edgecl.datasets import DatasetUnavailableError
from edgecl.tasks import list_images

CIFAR_DIR = "cifar-100-python"
DOMAINNET_DIR = "domainnet"
DOMAINNET_DOMAINS = ("clipart", "infograph", "painting", "quickdraw", "real", "sketch")


class _ArraysOnly(pickle.Unpickler):
    """CIFAR's files are pickles: allow only the numpy array reconstruction they need, nothing executable."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar")}  # fmt: skip

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")


def _load(path: Path) -> dict[Any, Any]:
    try:
        return _ArraysOnly(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise DatasetUnavailableError(f"{path}: not a readable CIFAR-100 file ({exc})") from exc


def _get(data: dict[Any, Any], key: str) -> Any:
    return data[key.encode()] if key.encode() in data else data[key]


CIFAR_HOST = "www.cs.toronto.edu"


def download_cifar100(root: Path) -> str:
    """Fetch CIFAR-100 into root with torchvision's downloader (online users); fails fast without network."""
    from edgecl.backbones.openclip import hub_reachable

    if (root / CIFAR_DIR / "train").is_file():
        return "already present"
    if not hub_reachable(CIFAR_HOST):
        raise DatasetUnavailableError(f"cannot download CIFAR-100: {CIFAR_HOST} is not reachable from here")
    from torchvision.datasets import CIFAR100

    CIFAR100(str(root), train=True, download=True)
    return "downloaded"


def cifar100(root: Path, split: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """(N, 32, 32, 3) uint8 images, (N,) fine labels, the 100 class names."""
    folder = root / CIFAR_DIR
    if not (folder / split).is_file():
        raise DatasetUnavailableError(f"CIFAR-100 not found: expected {folder / split} (torchvision's layout)")
    data = _load(folder / split)
    images = np.asarray(_get(data, "data"), dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    labels = np.asarray(_get(data, "fine_labels"), dtype=np.int64)
    meta = _load(folder / "meta") if (folder / "meta").is_file() else {}
    names = meta.get(b"fine_label_names") or meta.get("fine_label_names") or [f"class {i}" for i in range(100)]
    return images, labels, tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)


def domainnet(root: Path, max_classes: int) -> tuple[dict[str, dict[str, list[Path]]], tuple[str, ...]]:
    """{domain: {class: image paths}} for the domains present, over the first `max_classes` shared classes."""
    folder = root / DOMAINNET_DIR
    domains = [d for d in DOMAINNET_DOMAINS if (folder / d).is_dir()]
    if not domains:
        raise DatasetUnavailableError(f"DomainNet not found: expected {folder}/<domain>/<class>/*.jpg")
    shared = set.intersection(*({p.name for p in (folder / d).iterdir() if p.is_dir()} for d in domains))
    classes = tuple(sorted(shared)[:max_classes])
    return {d: {c: list_images(folder / d / c) for c in classes} for d in domains}, classes
