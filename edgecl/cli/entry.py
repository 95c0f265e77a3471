"""The console script: runs the app and turns every error that escapes a command into one line and an exit status."""

from __future__ import annotations

import sys

import typer

try:  # typer 0.21+ carries its own copy of click (flwr 1.42 pins typer < 0.21, so click itself is used)
    from typer._click import exceptions as usage
except ImportError:
    from click import exceptions as usage  # type: ignore[no-redef]

from edgecl.cli.base import app
from edgecl.errors import EdgeclError


def said_once(message: str) -> str:
    """Click and typer both append "Did you mean 'x'?" to an unknown command: keep each sentence once."""
    import re

    return " ".join(dict.fromkeys(re.split(r"(?<=[.?!])\s+", message.strip())))


def main() -> None:
    """Console-script entry point."""
    from edgecl.ram import count_whole_process

    count_whole_process()
    try:
        code = app(prog_name="edgecl", standalone_mode=False)
    except EdgeclError as exc:  # errors raised outside a command body (e.g. in callbacks)
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except usage.NoArgsIsHelpError as exc:  # a bare `edgecl` or group: the help text
        exc.show()
        sys.exit(exc.exit_code)
    except usage.UsageError as exc:  # a missing or bad option: one line, like every other error
        where = exc.ctx.command_path if exc.ctx else "edgecl"
        typer.echo(f"error: {said_once(exc.format_message())} (see '{where} --help')", err=True)
        sys.exit(exc.exit_code)
    except usage.ClickException as exc:
        typer.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
