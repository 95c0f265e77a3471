"""The `edgecl` command line: each command parses flags, makes one edgecl call and prints its report."""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer

from edgecl.errors import EdgeclError

app = typer.Typer(
    help="On-device continual learning for CLIP within a byte budget.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
F = TypeVar("F", bound=Callable[..., Any])


def _stderr() -> Any:
    from rich.console import Console

    return Console(stderr=True)


def handles_errors(fn: F) -> F:
    """Turn EdgeclError into one line on stderr and a non-zero exit, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except EdgeclError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2))


@app.callback()
def _main(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details to stderr."),
) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")


@app.command()
@handles_errors
def export(
    backbone: str = typer.Option("bundled", help="'bundled' (offline) or 'openclip:<arch>[:<tag | checkpoint>]'."),
    out: Path | None = typer.Option(None, help="Model directory to write. Default: $EDGECL_HOME/models/<id>."),
    keep_fp32: bool = typer.Option(False, "--keep-fp32", help="Also keep the fp32 ONNX towers (for comparison)."),
    calibration_dir: Path | None = typer.Option(None, help="Folder of images like yours, for INT8 calibration."),
    image_recipe: str | None = typer.Option(None, help="Force an image quantisation recipe (see README)."),
    text_recipe: str | None = typer.Option(None, help="Force a text quantisation recipe (see README)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing, different export."),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest as JSON."),
) -> None:
    """Export a CLIP backbone to INT8 ONNX image and text towers."""
    from edgecl.model_dir import read_manifest  # noqa: F401  (fails fast on a broken install)
    from edgecl.paths import default_model_dir
    from export import ExportOptions, export_model

    options = ExportOptions(keep_fp32, str(calibration_dir) if calibration_dir else None, image_recipe, text_recipe)
    target = out or default_model_dir(backbone)
    console = _stderr()
    with console.status("exporting") as status:
        manifest = export_model(backbone, target, options, force, progress=lambda m: status.update(m))
    if as_json:
        _print_json(manifest.data)
        return
    for name in ("image", "text"):
        q = manifest.tower(name)["quantization"]
        best = max(q["tried"], key=lambda t: t["cosine_mean"])
        console.print(f"{name} tower: INT8 recipe {q['chosen']}, cosine to fp32 {best['cosine_mean']:.4f}")
    console.print(f"model directory: {manifest.root}")


@app.command()
@handles_errors
def backbones(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """List the backbones edgecl can export and whether each needs a download."""
    from edgecl.backbones import list_backbones

    rows = list_backbones()
    if as_json:
        _print_json(rows)
        return
    for row in rows:
        where = "download" if row["needs_download"] else "offline"
        state = {True: "ready", False: "not installed", None: ""}[row["available"]]
        typer.echo(f"{row['id']:<44} {where:<9} {state:<14} {row['description']}")
        if row["note"] and row["available"] is False:
            typer.echo(f"{'':<44} {row['note']}")


@app.command()
@handles_errors
def demo(
    model_dir: Path | None = typer.Option(None, help="Model directory to use (exported when missing)."),
    top_k: int = typer.Option(3, min=1, help="Labels to print per photo."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Offline demo: export the bundled backbone, then zero-shot classify real sample photos."""
    from edgecl.demo import run_demo

    with _stderr().status("preparing the bundled backbone") as status:
        results = run_demo(model_dir, top_k, progress=lambda m: status.update(m))
    if as_json:
        _print_json(results)
        return
    for row in results["photos"]:
        labels = ", ".join(f"{p['label']} ({p['score']:.2f})" for p in row["predictions"])
        typer.echo(f"{Path(row['image']).name:<24} {labels}")
    typer.echo(f"\n{results['note']}")


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except EdgeclError as exc:  # errors raised outside a command body (e.g. in callbacks)
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
