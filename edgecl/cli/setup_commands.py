"""Commands that set a device up: export a backbone, list backbones and device profiles, measure a profile, the
offline demo."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import typer

from edgecl.cli.base import METHODS_TEXT, AsJson, ProfileFile, handles_errors, print_json, stderr_console
from edgecl.cli.progress import ProgressBar
from edgecl.learn.methods import DEFAULT_METHOD


def _step(status: Any, message: str) -> None:
    """An export step: on the spinner, and as a log line (seen with --verbose where stderr is no terminal)."""
    status.update(message)
    logging.getLogger("edgecl.export").info(message)


@handles_errors
def export(
    backbone: str = typer.Option("bundled", help="'bundled' (offline) or `openclip:<arch>[:<tag | checkpoint>]`."),
    out: Path | None = typer.Option(None, help="Model directory to write. Default: `$EDGECL_HOME/models/<id>`."),
    keep_fp32: bool = typer.Option(False, "--keep-fp32", help="Also keep the fp32 ONNX towers (for comparison)."),
    calibration_dir: Path | None = typer.Option(None, help="Folder of images like yours, for INT8 calibration."),
    image_recipe: str | None = typer.Option(None, help="Force an image quantisation recipe (docs/quantisation.md)."),
    text_recipe: str | None = typer.Option(None, help="Force a text quantisation recipe (see docs/quantisation.md)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing, different export."),
    as_json: AsJson = False,
) -> None:
    """Export a CLIP backbone to INT8 ONNX image and text towers.

    Writes the model directory (the ONNX towers and a manifest with their measured INT8 quality); a first learn
    does this by itself.

    Examples:

        edgecl export --backbone bundled
        edgecl export --backbone openclip:ViT-B-32:/path/to/checkpoint.pt --json
    """
    from edgecl.export import ExportOptions, export_model
    from edgecl.paths import default_model_dir

    options = ExportOptions(keep_fp32, str(calibration_dir) if calibration_dir else None, image_recipe, text_recipe)
    target = out or default_model_dir(backbone)
    console = stderr_console()
    with console.status("exporting") as status:
        manifest = export_model(backbone, target, options, force, progress=lambda m: _step(status, m))
    if as_json:
        print_json(manifest.data)
        return
    for name in ("image", "text"):
        q = manifest.tower(name)["quantization"]
        chosen = next(t for t in q["tried"] if t["recipe"]["name"] == q["chosen"])
        agreement = f", zero-shot agreement {100 * chosen['agreement']:.1f}%" if "agreement" in chosen else ""
        console.print(f"{name} tower: INT8 recipe {q['chosen']}, cosine to fp32 {chosen['cosine_mean']:.4f}{agreement}")
    console.print(f"model directory: {manifest.root}")


@handles_errors
def backbones(as_json: AsJson = False) -> None:
    """List the backbones edgecl can export and whether each needs a download.

    bundled works offline; an openclip id needs its weights (a download, or a checkpoint path).

    Examples:

        edgecl backbones
        edgecl backbones --json
    """
    from edgecl.backbones import list_backbones

    rows = list_backbones()
    if as_json:
        print_json(rows)
        return
    for row in rows:
        where = "download" if row["needs_download"] else "offline"
        state = {True: "ready", False: "not installed", None: ""}[row["available"]]
        typer.echo(f"{row['id']:<44} {where:<9} {state:<14} {row['description']}")
        if row["note"] and row["available"] is False:
            typer.echo(f"{'':<44} {row['note']}")


@handles_errors
def demo(
    state_dir: str | None = typer.Option(None, help="Keep the demo's state here (default: a temporary folder)."),
    train_per_class: int = typer.Option(100, min=1, help="Training images per class."),
    test_per_class: int = typer.Option(100, min=1, help="Held-out images per class."),
    method: str = typer.Option(DEFAULT_METHOD, help=f"{METHODS_TEXT} (see docs/method.md)."),
    as_json: AsJson = False,
) -> None:
    """Offline demo: learn Fashion-MNIST in 5 tasks of 2 classes, accuracy after each task, final status.

    Runs offline: the bundled backbone and the Fashion-MNIST images installed on this machine; nothing is downloaded.

    Examples:

        edgecl demo
        edgecl demo --train-per-class 10 --test-per-class 10 --json
    """
    from edgecl.demo import DEMO_BUDGET, run_demo
    from edgecl.units import format_bytes

    def show(row: dict[str, Any]) -> None:
        if not as_json:
            seen, first = 100 * row["accuracy_seen"], 100 * row["accuracy_first_task"]
            memory = f"{format_bytes(row['memory_bytes'])} ({row['codec']})"
            typer.echo(
                f"task {row['task']}: learned {', '.join(row['new_classes'])}; accuracy on all seen classes "
                f"{seen:.1f}%, on task 1's classes {first:.1f}%; memory {memory}; {row['seconds']:.1f} s"
            )

    if not as_json:
        typer.echo(f"Fashion-MNIST, 5 tasks x 2 classes, {train_per_class} images per class, budget {DEMO_BUDGET}, "
                   f"method {method}, bundled offline backbone")  # fmt: skip
    with ProgressBar(not as_json) as bar:
        results = run_demo(state_dir, train_per_class, test_per_class, method, show, bar)
    if as_json:
        print_json(results)
        return
    info = results["status"]
    used = f"{format_bytes(info['memory']['bytes'])} of {format_bytes(info['memory']['budget_bytes'])}"
    typer.echo(f"\nfinal state: {len(info['classes'])} classes, {info['memory']['samples']} samples in memory, {used}")
    typer.echo(results["note"])


@handles_errors
def devices(as_json: AsJson = False) -> None:
    """List the shipped device profiles.

    Each profile sets a default budget, a RAM cap and runtime settings (docs/profiles.md).

    Examples:

        edgecl devices
        edgecl devices --json
    """
    from edgecl.profiles import list_profiles

    profiles = list_profiles()
    if as_json:
        print_json([p.to_dict() for p in profiles])
        return
    for p in profiles:
        typer.echo(f"{p.name:<18} budget {p.default_budget} (max {p.max_budget}), {p.providers[0]}: {p.description}")


@handles_errors
def profile(
    device: str | None = typer.Option(None, help="Device profile to measure against (default cpu)."),
    profile_file: ProfileFile = None,
    backbone: str | None = typer.Option(None, help="Backbone to measure (default: the profile's, else bundled)."),
    as_json: AsJson = False,
) -> None:
    """Measure latency, throughput and memory on this machine against a device profile's targets.

    The verdicts are this machine's: run it on the device to measure the device.

    Examples:

        edgecl profile --device cpu
        edgecl profile --device jetson-orin-nano --json
    """
    from edgecl.measure_device import run_profile
    from edgecl.profiles import get_profile

    chosen = get_profile(device, profile_file)
    with stderr_console().status("profiling") as spinner:
        report = run_profile(chosen, backbone, lambda m: spinner.update(m))
    if as_json:
        print_json(report)
        return
    typer.echo(f"device {report['device']}, backbone {report['backbone']}, provider {report['provider_used']}")
    if report["backbone_note"]:
        typer.echo(f"note: {report['backbone_note']}")
    b1, bb, c = report["encoder_batch1"], report["encoder_batch"], report["classify"]
    typer.echo(f"encoder batch 1: p50 {b1['p50_ms']} ms, p95 {b1['p95_ms']} ms; "
               f"batch {bb['batch']}: p50 {bb['p50_ms']} ms, p95 {bb['p95_ms']} ms")  # fmt: skip
    typer.echo(f"classify end to end: p50 {c['p50_ms']} ms, p95 {c['p95_ms']} ms")
    learn_info, mem = report["learn"], report["memory"]
    typer.echo(f"learn: {learn_info['images_per_s']} images/s for a {learn_info['task_images']}-photo learn (encoding "
               f"+ training; encoder alone {learn_info['encode_images_per_s']} images/s), "
               f"{learn_info['train_steps_per_s']} train steps/s")  # fmt: skip
    typer.echo(f"memory entry: {mem['bytes_per_entry']} B ({mem['codec']}), {mem['entries_in_default_budget']} fit")
    typer.echo(f"peak RSS {report['peak_rss_bytes'] / 2**20:.0f} MiB; GPU {report['gpu'] or 'none'}")
    typer.echo(f"note: {report['verdicts_note']}")
    for check in report["checks"]:
        typer.echo(
            f"{'PASS' if check['pass'] else 'FAIL'}  {check['name']}: {check['value']} (target {check['target']})"
        )
