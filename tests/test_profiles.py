"""Device profiles: every shipped one validates, bad ones name the key, budgets are enforced, `edgecl profile`
measures, and the profiles ship in the wheel."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgecl.cli import app
from edgecl.measure_device import learn_rate
from edgecl.profiles import ProfileError, get_profile, list_profiles, load_profile_file

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(p.stem for p in (ROOT / "device_profiles").glob("*.toml"))
runner = CliRunner()


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_profile_validates(name: str) -> None:
    profile = get_profile(name)
    assert profile.name == name and profile.default_budget_bytes <= profile.max_budget_bytes
    assert set(profile.sources) >= {"providers", "max_budget", "ram_cap", "classify_p95_ms"}  # values say their source
    assert profile.providers[-1] == "CPUExecutionProvider"


def test_required_devices_are_shipped() -> None:
    assert {"jetson-orin-nano", "jetson-agx-orin", "laptop-gpu", "desktop-cuda", "cpu"} <= {
        p.name for p in list_profiles()
    }


@pytest.mark.parametrize(
    "change,key",
    [
        ({"colour": "blue"}, "colour"),
        ({"threads": 0}, "threads"),
        ({"max_budget": "lots"}, "max_budget"),
        ({"providers": ["QuantumExecutionProvider"]}, "providers"),
        ({"optimizer": "sgd"}, "optimizer"),
        ({"default_budget": "1GB"}, "default_budget"),
        ({"default_backbone": "resnet"}, "default_backbone"),
        ({"classify_p95_ms": -1.0}, "classify_p95_ms"),
    ],
)
def test_malformed_profile_names_the_key(tmp_path: Path, change: dict, key: str) -> None:
    import tomllib

    data = tomllib.loads((ROOT / "device_profiles" / "cpu.toml").read_text())
    data.pop("sources")
    data.update(change)
    lines = [f"{k} = {json.dumps(v)}" for k, v in data.items()]
    path = tmp_path / "bad.toml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ProfileError, match=key):
        load_profile_file(path)


def _write_profile(path: Path, data: dict) -> Path:
    path.write_text("\n".join(f"{k} = {json.dumps(v)}" for k, v in data.items()) + "\n")
    return path


@pytest.mark.parametrize("key", ["ram_cap", "providers", "threads"])
def test_missing_key_is_named_and_sources_is_optional(tmp_path: Path, key: str) -> None:
    import tomllib

    data = tomllib.loads((ROOT / "device_profiles" / "cpu.toml").read_text())
    data.pop("sources")
    assert load_profile_file(_write_profile(tmp_path / "no-sources.toml", data)).sources == {}
    data.pop(key)
    with pytest.raises(ProfileError, match=f"missing key '{key}'"):
        load_profile_file(_write_profile(tmp_path / "missing.toml", data))


def test_unknown_device() -> None:
    with pytest.raises(ProfileError, match="unknown device 'toaster'.*cpu"):
        get_profile("toaster")


@pytest.fixture()
def task(tmp_path: Path, bundled_export: Path) -> Path:
    from test_cli_learn import write_task

    return write_task(tmp_path / "t", {"coat": 4, "bag": 8}, n=4)


def test_budget_above_profile_maximum_needs_force_and_providers_fall_back(task: Path, tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    args = ["learn", "--task-dir", str(task), "--backbone", "bundled", "--device", "jetson-orin-nano", "--state-dir"]
    result = runner.invoke(app, [*args, state, "--budget", "100MB"])
    assert result.exit_code == 2 and "maximum of 64MB" in result.stderr and "--force" in result.stderr
    result = runner.invoke(app, [*args, state, "--budget", "100MB", "--force", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["providers_used"] == ["CPUExecutionProvider"]  # no TensorRT/CUDA here
    info = json.loads(runner.invoke(app, ["status", "--state-dir", state, "--json"]).stdout)
    assert info["device"] == "jetson-orin-nano" and info["forced_budget"] is True
    assert info["providers_used"] == ["CPUExecutionProvider"]


def test_profile_file_is_accepted_where_device_is(task: Path, tmp_path: Path) -> None:
    text = (ROOT / "device_profiles" / "cpu.toml").read_text().replace('name = "cpu"', 'name = "my-board"')
    (tmp_path / "mine.toml").write_text(text.replace('default_budget = "8MB"', 'default_budget = "40KB"'))
    state = str(tmp_path / "state")
    result = runner.invoke(app, ["learn", "--task-dir", str(task), "--backbone", "bundled", "--profile-file",
                                 str(tmp_path / "mine.toml"), "--state-dir", state, "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["budget_bytes"] == 40_000  # the profile's default budget


def test_profile_json_fields_and_peak_rss_matches_time_v(bundled_export: Path) -> None:
    out = subprocess.run(["/usr/bin/time", "-v", sys.executable, "-m", "cli", "profile", "--device", "cpu", "--json"],
                         capture_output=True, text=True, cwd=ROOT, timeout=600, check=False)  # fmt: skip
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    for key in ("encoder_batch1", "encoder_batch", "classify"):
        assert 0 < report[key]["p50_ms"] <= report[key]["p95_ms"] < 60_000
    learn = report["learn"]
    assert learn["images_per_s"] > 1 and learn["train_steps_per_s"] > 1
    # a whole learn's rate (encoding, then the task's training steps), below the encoder's alone (issue 25)
    assert learn["images_per_s"] < learn["encode_images_per_s"]
    assert learn["images_per_s"] == pytest.approx(learn_rate(learn["encode_images_per_s"], learn["train_steps_per_s"]),
                                                  rel=0.02)  # fmt: skip
    assert report["memory"]["bytes_per_entry"] > 0 and report["memory"]["entries_in_default_budget"] > 0
    assert report["provider_used"] == "CPUExecutionProvider" and report["gpu"] is None
    assert {c["name"] for c in report["checks"]} == {"classify p95", "learn images/s", "peak RSS"}
    host = report["measured_on"]  # issue 25: the verdicts say whose machine they measured
    assert host["cores"] == os.cpu_count() and host["int8_isa"] and host["gpu"] is None
    assert "measured on this machine" in report["verdicts_note"] and "cpu profile's targets" in report["verdicts_note"]
    outside_kib = int(next(line for line in out.stderr.splitlines() if "Maximum resident" in line).split()[-1])
    assert abs(report["peak_rss_bytes"] - outside_kib * 1024) <= 0.1 * outside_kib * 1024


def test_profiles_ship_in_the_wheel_under_the_edgecl_namespace(tmp_path: Path) -> None:
    """The wheel installs the profiles, the exporter and the command as edgecl.device_profiles, edgecl.export and
    edgecl.cli (issue 28): no global `cli`, `export` or `device_profiles` module that another distribution could
    collide with."""
    source = tmp_path / "source"  # a copy without a checkout's build/ leftovers, which setuptools would pack too
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".*", "build", "*.egg-info", "__pycache__", "tests",
                                                                "benchmarks"))  # fmt: skip
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(source)],
                   check=True, capture_output=True, timeout=600)  # fmt: skip
    wheel = next((tmp_path / "dist").glob("edgecl-*.whl"))
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=600)  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(target)}
    script = "import edgecl.device_profiles as p, edgecl.cli as c; print(p.__file__); c.main()"
    out = subprocess.run([sys.executable, "-c", script, "devices", "--json"], capture_output=True, text=True,
                         cwd=tmp_path, env=env, timeout=120, check=False)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(str(target))
    top_level = {p.name.removesuffix(".py") for p in target.iterdir()
                 if not p.name.endswith(".dist-info") and p.name not in ("bin", "__pycache__")}  # fmt: skip
    assert top_level == {"edgecl"}, top_level
    assert (target / "edgecl" / "export" / "quantize.py").is_file()
    names = {p["name"] for p in json.loads(out.stdout.split("\n", 1)[1])}
    assert {"jetson-orin-nano", "cpu", "desktop-cuda"} <= names
