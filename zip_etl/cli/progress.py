"""Progress for the long commands: a bar on a terminal, one plain line per step anywhere else (a
log file, CI, a pipe), so the output stays readable in both."""

from __future__ import annotations

import sys
from typing import TextIO


class Progress:
    """`with Progress(total, "Materializing", unit="zip codes") as progress: progress.advance(n, line)`.

    `line` says what the step did: printed as it is when the output is not a terminal, and shown
    above the bar on a terminal.
    """

    def __init__(self, total: int, description: str, *, unit: str = "", out: TextIO | None = None):
        self.total, self.description, self.unit = total, description, unit
        self.out = out or sys.stdout
        self.done = 0
        self._bar = None

    def __enter__(self) -> Progress:
        if hasattr(self.out, "isatty") and self.out.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as Bar

            self._bar = Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn(self.unit), TimeElapsedColumn(), console=Console(file=self.out))
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=self.total)
        return self

    def advance(self, n: int, line: str = "") -> None:
        self.done += n
        if self._bar is not None:
            if line:
                self._bar.console.print(line, highlight=False, markup=False)
            self._bar.advance(self._task, n)
        elif line:
            print(line, file=self.out, flush=True)

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()
