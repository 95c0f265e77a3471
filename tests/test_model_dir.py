"""Export is deterministic, idempotent and atomic; a damaged model directory is reported, never used."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgecl.encoder import Encoder
from edgecl.errors import ExportError, ModelFileError
from edgecl.export import ExportOptions, export_model
from edgecl.model_dir import read_manifest


def test_export_is_deterministic(tiny_export: Path, tiny_config: Path, tmp_path: Path,
                                 caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="edgecl"):
        again = export_model(f"openclip:{tiny_config}", tmp_path / "again", ExportOptions(keep_fp32=True))
    assert any("RANDOM weights" in r.getMessage() and ":random" in r.getMessage() for r in caplog.records)
    assert again.data["files"] == read_manifest(tiny_export).data["files"]
    assert (tmp_path / "again" / "manifest.json").read_bytes() == (tiny_export / "manifest.json").read_bytes()


def test_export_is_idempotent(tiny_export: Path, tiny_config: Path) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in tiny_export.iterdir()}
    export_model(f"openclip:{tiny_config}", tiny_export, ExportOptions(keep_fp32=True))
    assert {p.name: p.stat().st_mtime_ns for p in tiny_export.iterdir()} == before


def test_different_export_into_same_dir_needs_force(tiny_export: Path, tiny_config: Path) -> None:
    with pytest.raises(ExportError, match="--force"):
        export_model(f"openclip:{tiny_config}", tiny_export, ExportOptions(keep_fp32=False))


def test_failed_export_leaves_previous_export_intact(
    tiny_export: Path, tiny_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "model"
    shutil.copytree(tiny_export, target)
    import edgecl.export.quantize

    def boom(*args: object, **kwargs: object) -> None:
        raise ExportError("simulated crash during quantisation")

    monkeypatch.setattr(edgecl.export.quantize, "quantize", boom)
    with pytest.raises(ExportError, match="simulated"):
        export_model(f"openclip:{tiny_config}", target, ExportOptions(keep_fp32=False), force=True)
    assert read_manifest(target).data == read_manifest(tiny_export).data
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no partial folder left behind
    with pytest.raises(ExportError):
        export_model(f"openclip:{tiny_config}", tmp_path / "fresh", ExportOptions())
    assert not (tmp_path / "fresh").exists()


@pytest.fixture()
def model_copy(tiny_export: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(tiny_export, target)
    return target


def test_flipped_byte_is_detected_and_names_the_file(model_copy: Path) -> None:
    path = model_copy / "image.int8.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    enc = Encoder(model_copy)
    with pytest.raises(ModelFileError, match="image.int8.onnx.*sha256"):
        enc.encode_pixels(np.zeros((1, 3, 32, 32), np.float32))
    enc.encode_texts(["still fine"])  # the untouched text tower keeps working


def test_deleted_tokenizer_is_detected(model_copy: Path) -> None:
    (model_copy / "bpe_simple_vocab_16e6.txt.gz").unlink()
    with pytest.raises(ModelFileError, match="bpe_simple_vocab_16e6.txt.gz"):
        Encoder(model_copy).encode_texts(["a cat"])


def test_corrupt_or_missing_manifest(model_copy: Path, tmp_path: Path) -> None:
    (model_copy / "manifest.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="manifest.json.*not valid JSON"):
        Encoder(model_copy)
    (model_copy / "manifest.json").unlink()
    with pytest.raises(ModelFileError, match="not a complete export"):
        Encoder(model_copy)
    with pytest.raises(ModelFileError, match="no such model directory"):
        Encoder(tmp_path / "absent")


def test_manifest_describes_the_export(tiny_export: Path) -> None:
    data = json.loads((tiny_export / "manifest.json").read_text())
    assert data["embed_dim"] == 32
    assert set(data["files"]) == {p.name for p in tiny_export.iterdir()} - {"manifest.json"}
    for tower in ("image", "text"):
        quant = data["towers"][tower]["quantization"]
        assert quant["chosen"] in {t["recipe"]["name"] for t in quant["tried"]}
        assert all(0 < t["cosine_mean"] <= 1.0001 for t in quant["tried"])
    assert data["tokenizer"]["kind"] == "clip_bpe"
    assert data["preprocess"]["size"] == 32
