"""Progress that reaches the console while notebooks run in papermill kernels.

Inside a kernel, a notebook prints `run_line(...)` after each finished training run
("run 3/12: HiP + MAE, seed 1: 85.20% (40 s)"). Outside, `RunLines` is the file papermill
copies the kernel's stdout into: it passes those lines on to the console, indented under the
notebook's own line, and drops the rest (which stays in the executed notebook). So a long
notebook shows one line per run, never a flood and never silence.
"""

from __future__ import annotations

import re
import sys
from typing import TextIO

_RUN_LINE = re.compile(r"^run \d+/\d+: ")


def run_line(done: int, total: int, arm: str, seed: int, accuracy: float, seconds: float) -> str:
    """The line printed after run `done` of `total`: arm, seed, test accuracy (%), seconds."""
    return f"run {done}/{total}: {arm}, seed {seed}: {accuracy:.2f}% ({seconds:.0f} s)"


class RunLines:
    """A write-only text file that forwards complete `run_line` lines to `stream`."""

    def __init__(self, stream: TextIO | None = None, indent: str = "    ") -> None:
        self.stream, self.indent, self._pending = stream, indent, ""

    def write(self, text: str) -> int:
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            if _RUN_LINE.match(line):
                print(self.indent + line, file=self.stream or sys.stdout, flush=True)
        return len(text)

    def flush(self) -> None:
        """Lines are forwarded once complete; a partial one waits for its newline."""
