"""Shared fixtures: a tiny open_clip config, its export, and one export of the bundled backbone per session."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

TINY_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


@pytest.fixture(autouse=True, scope="session")
def _isolated_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Never touch the user's ~/.edgecl; keep the extracted-asset cache shared across the session."""
    os.environ["EDGECL_HOME"] = str(tmp_path_factory.mktemp("edgecl-home"))
    os.environ.setdefault("EDGECL_CACHE", str(tmp_path_factory.mktemp("edgecl-cache")))
    os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture(scope="session")
def tiny_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("configs") / "edgecl-tiny.json"
    path.write_text(json.dumps(TINY_CONFIG))
    return path


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory: pytest.TempPathFactory, tiny_config: Path) -> Path:
    from edgecl.export import ExportOptions, export_model

    out = tmp_path_factory.mktemp("models") / "tiny"
    export_model(f"openclip:{tiny_config}", out, ExportOptions(keep_fp32=True))
    return out


@pytest.fixture(scope="session")
def bundled_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled backbone exported once per test run: the first pytest-xdist worker exports it (under a file lock)
    into a folder all workers share, and each copies it to where `edgecl learn --backbone bundled` looks under its
    own test EDGECL_HOME."""
    import shutil

    from filelock import FileLock

    from edgecl.export import ExportOptions, export_model
    from edgecl.paths import default_model_dir

    out = default_model_dir("bundled")
    base = tmp_path_factory.getbasetemp()
    shared_root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # one per run, shared by workers
    shared = shared_root / "shared-bundled-export"
    with FileLock(str(shared_root / "shared-bundled-export.lock")):
        export_model("bundled", shared, ExportOptions(keep_fp32=True))  # reused when another worker made it
    if not out.is_dir():
        shutil.copytree(shared, out)
    return out


@pytest.fixture(scope="session")
def photos() -> list[Path]:
    from edgecl.datasets import sample_photo_paths

    paths = sample_photo_paths()
    assert len(paths) >= 10, "sample photos from scikit-image / scikit-learn are missing"
    return paths
