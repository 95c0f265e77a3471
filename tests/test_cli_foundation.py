"""The CLI's foundation commands, through typer's CliRunner and through real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgecl.cli import app
from edgecl.learn.methods import DEFAULT_METHOD, METHODS

runner = CliRunner()


def _edgecl(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})}, cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip


def test_backbones_json_lists_bundled_and_openclip() -> None:
    result = runner.invoke(app, ["backbones", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    bundled = next(r for r in rows if r["id"] == "bundled")
    assert bundled["needs_download"] is False and bundled["available"] is True
    assert any(r["id"].startswith("openclip:ViT-B-32:") and r["needs_download"] for r in rows)


def test_hub_tag_offline_fails_fast_with_alternatives() -> None:
    for env in ({"HF_HUB_OFFLINE": "1"}, {"HF_HUB_OFFLINE": ""}):  # explicit offline, and no network here
        start = time.monotonic()
        out = _edgecl("export", "--backbone", "openclip:ViT-B-32:laion2b_s34b_b79k", env=env)
        elapsed = time.monotonic() - start
        assert out.returncode != 0
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), out.stderr
        assert "--backbone bundled" in lines[0] and "checkpoint" in lines[0]
        assert elapsed < 10, f"took {elapsed:.1f}s"


def test_unknown_backbone_and_tag_are_one_line_errors() -> None:
    # offline, an unknown tag is reported as undownloadable: open_clip validates tags only once it is imported
    for backbone, words in (
        ("clip-large", "unknown backbone"),
        ("openclip:ViT-B-32:nosuchtag", "nosuchtag"),
    ):
        result = runner.invoke(app, ["export", "--backbone", backbone])
        assert result.exit_code == 2
        assert words in result.stderr and "Traceback" not in result.output


def test_export_cli_with_config_file(tiny_config: Path, tmp_path: Path) -> None:
    """The installed console script, run from a folder outside the checkout (as a user runs it)."""
    script = Path(sys.executable).with_name("edgecl")
    out = subprocess.run([str(script), "-v", "export", "--backbone", f"openclip:{tiny_config}", "--out",
                          str(tmp_path / "m"), "--json"], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr
    manifest = json.loads(out.stdout)
    assert manifest["embed_dim"] == 32 and (tmp_path / "m" / "image.int8.onnx").is_file()
    # -v: the export's steps, without onnxruntime's quantisers' own INFO lines (one per tensor or weight channel)
    info = [line for line in out.stderr.splitlines() if line.startswith("INFO ")]
    assert any("exporting image tower to ONNX" in line for line in info), out.stderr
    noise = ("Quantization parameters", "Increased scale", "Performing symbolic shape inference", "Ignore MatMul")
    assert not [line for line in info if any(n in line for n in noise)], out.stderr


def test_demo_learns_the_fashion_stream(bundled_export: Path) -> None:
    result = runner.invoke(app, ["demo", "--train-per-class", "20", "--test-per-class", "20", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [row["task"] for row in data["tasks"]] == [1, 2, 3, 4, 5]
    assert data["tasks"][0]["accuracy_seen"] > 0.8  # two classes, learned from 20 images each
    assert all(row["memory_bytes"] <= 64_000 for row in data["tasks"])
    # measured 0.83 here; zero-shot scores 0.27 on the same images, and a learner that forgot the first four tasks
    # could score at most 0.2 + 0.8 * 0.27 = 0.42
    assert len(data["status"]["classes"]) == 10 and data["tasks"][-1]["accuracy_seen"] > 0.7


@pytest.mark.parametrize("method", [m for m in METHODS if m != DEFAULT_METHOD])  # the default: the test above
def test_demo_runs_every_method(method: str, bundled_export: Path) -> None:
    """`edgecl demo --method` end to end for each method, on 4 images per class (issue 16)."""
    result = runner.invoke(app, ["demo", "--method", method, "--train-per-class", "4", "--test-per-class", "4",
                                 "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [row["task"] for row in data["tasks"]] == [1, 2, 3, 4, 5]
    assert data["status"]["method"] == method and len(data["status"]["classes"]) == 10
    assert all(row["memory_bytes"] <= 64_000 for row in data["tasks"])
    samples = data["status"]["memory"]["samples"]
    assert samples == (40 if METHODS[method].memory else 0)  # 4 images of each of 10 classes fit 64 KB


def test_usage_errors_are_one_line_with_the_help_to_read() -> None:
    root = Path(__file__).resolve().parents[1]
    for args, words in ((["learn"], "Missing option '--task-dir'"), (["classify", "x.png", "--top-k", "0"], "--top-k"),
                        (["status", "--bogus"], "--bogus")):  # fmt: skip
        out = subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True, text=True, cwd=root,
                             check=False)  # fmt: skip
        assert out.returncode == 2 and out.stdout == "", out
        assert out.stderr.count("\n") == 1 and out.stderr.startswith("error: ") and words in out.stderr, out.stderr
        assert f"see 'edgecl {args[0]} --help'" in out.stderr
