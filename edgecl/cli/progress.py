"""The progress bar every slow command shows on stderr (nothing when stderr is not a terminal)."""

from __future__ import annotations

import logging
import time
from typing import Any

from edgecl.cli.base import stderr_console


class ProgressBar:
    """A rich progress bar on stderr driven by (stage, done, total) callbacks; a spinner for stages without totals."""

    def __init__(self, enabled: bool) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,  # fmt: skip
            TimeRemainingColumn,
        )

        columns = (
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("left"),
        )
        console = stderr_console()  # not a terminal (a pipe, a log file): no bar, and no blank line where it was
        self.progress = Progress(*columns, console=console, disable=not (enabled and console.is_terminal),
                                 transient=True)  # fmt: skip
        self.tasks: dict[str, Any] = {}
        self.totals: dict[str, int] = {}
        # no bar (a pipe, a log file) but --verbose: one log line as each stage starts and ends instead
        self.lines = self.progress.disable and logging.getLogger().isEnabledFor(logging.INFO)
        self.started, self.done = time.monotonic(), set()

    def __enter__(self) -> ProgressBar:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)  # type: ignore[arg-type]

    def __call__(self, stage: str, done: int, total: int) -> None:
        if done < 0:  # a notice: one line that stays, also under --json (stderr)
            self.progress.console.print(stage, markup=False, highlight=False, soft_wrap=True)
            return
        if stage not in self.tasks:
            for name, task_id in self.tasks.items():  # a stage without a total ends when the next one starts
                if not self.totals[name]:
                    self.progress.update(task_id, total=1, completed=1)
            self.tasks[stage] = self.progress.add_task(stage, total=total or None)
            self._line(f"{stage}{f' ({total})' if total else ''}")
        elif total and done == total and stage not in self.done:
            self.done.add(stage)
            self._line(f"{stage}: {done}/{total} done")
        self.totals[stage] = total
        self.progress.update(self.tasks[stage], completed=done, total=total or None)

    def _line(self, message: str) -> None:
        if self.lines:
            logging.getLogger("edgecl.progress").info("%s [%.1f s]", message, time.monotonic() - self.started)
