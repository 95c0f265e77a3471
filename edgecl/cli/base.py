"""What every command shares: the Typer app and its global options, the options several commands take, one-line
errors instead of tracebacks, JSON printing."""

from __future__ import annotations

import functools
import json
import logging
import os
import warnings
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

from edgecl.errors import EdgeclError
from edgecl.learn.methods import METHOD_NAMES

METHODS_TEXT = ", ".join(METHOD_NAMES)  # for help texts

# Options that several commands share, declared once.
StateDir = Annotated[str | None, typer.Option(help="State directory. Default: $EDGECL_HOME or ~/.edgecl.")]

WaitSeconds = Annotated[
    float,
    typer.Option(min=0.0, help="Seconds to wait for another edgecl process writing the same state (0: do not wait)."),
]

AsJson = Annotated[bool, typer.Option("--json", help="Print the result as JSON (docs/usage.md: JSON contracts).")]

DeviceName = Annotated[str | None, typer.Option(help="Device profile (see `edgecl devices`; default cpu).")]

ProfileFile = Annotated[str | None, typer.Option(help="Your own device profile TOML instead of --device.")]

app = typer.Typer(
    help="On-device continual learning for CLIP within a byte budget.",
    rich_markup_mode="markdown",  # help paragraphs reflow to the terminal's width; examples are code blocks
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

F = TypeVar("F", bound=Callable[..., Any])


def stderr_console() -> Any:
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


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2))


def count(n: int, one: str, many: str) -> str:
    """'1 photo', '3 photos'."""
    return f"{n} {one if n == 1 else many}"


def wait_message(message: str) -> None:
    typer.echo(message, err=True)


def _show_version(value: bool) -> None:
    if value:
        import edgecl

        typer.echo(f"edgecl {edgecl.__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details to stderr."),
    version: bool = typer.Option(
        False, "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(_not_quantiser_detail)
        if not verbose:  # third-party warnings (bitsandbytes via peft, onnxruntime's shape inference) stay off stderr
            handler.addFilter(_ours_or_errors)
    if not verbose:
        warnings.simplefilter("ignore")


def _not_quantiser_detail(record: logging.LogRecord) -> bool:
    """onnxruntime's quantisers log one INFO line per adjusted weight channel (thousands per export) on the root
    logger: --verbose shows the export's steps without them."""
    return record.levelno >= logging.WARNING or f"onnxruntime{os.sep}quantization" not in record.pathname


def _ours_or_errors(record: logging.LogRecord) -> bool:
    """Our own warnings (edgecl, and the exporter `export`) and everyone's errors reach the terminal; other libraries'
    warnings need --verbose."""
    return record.levelno >= logging.ERROR or record.name.split(".")[0] in ("edgecl", "export")
