"""Binder: how a notebook knows it runs there, and the check that every notebook fits Binder's
memory at the `binder` profile.

mybinder.org gives a session about 2 GB of memory and a share of a CPU. A notebook whose
`profile` is "auto" (the default) runs the `binder` profile when `detected()` names one of
BinderHub's variables, and `quick` elsewhere; `profile = "binder"` (or HIPCORE_PROFILE=binder)
asks for it anywhere. A JupyterHub alone is not taken for Binder: many hubs have far more
memory.

`python -m hipcore.binder` (`make binder-check`) runs every numbered notebook at the binder
profile, one fresh kernel each, with a fresh run cache (so every run trains), and measures its
peak memory as Binder's container sees it: the notebook runs under a papermill process of its
own (standing in for the Jupyter server, without torch), and every 50 ms the check sums, over
that process and everything below it (the kernel, whatever the kernel starts, such as notebook
05's one process per model), each process' own peak resident memory so far (Linux's VmHWM),
and keeps the largest such sum. A process' peak is at least what it holds at any moment, so the
figure bounds from above what the processes held together. A forked child that has not
replaced its program (the same command line as its parent) shares its parent's pages, which
its VmHWM repeats: it counts only its private pages. The check process itself is not counted.
The check fails when a notebook's figure reaches LIMIT_BYTES. With `--record FOLDER` (every notebook
checked) it writes the peaks to FOLDER/memory.csv with the run's provenance.json: the README's
Binder block is generated from that record (`python -m hipcore summary`).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

PROFILE = "binder"
LIMIT_BYTES = 2 * 10**9                 # mybinder.org's memory per session: 2 GB
POLL_SECONDS = 0.05


# ---------------------------------------------------------------------------- the memory check

def _peak_bytes(pid: int) -> int | None:
    """The process' own peak resident memory so far (VmHWM), or None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


def _children(pid: int) -> list[int]:
    try:
        tasks = Path(f"/proc/{pid}/task").iterdir()
        kids = []
        for task in tasks:
            kids += [int(c) for c in (task / "children").read_text().split()]
        return kids
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return []


def _private_bytes(pid: int) -> int | None:
    """The process' private memory now (Private_Clean + Private_Dirty of smaps_rollup), or None
    once it is gone."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return 1024 * sum(int(line.split()[1]) for line in text.splitlines() if line.startswith("Private_"))


def _cmdline(pid: int) -> bytes | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None


def _name(pid: int) -> str:
    line = _cmdline(pid)
    if line is None:
        return "?"
    words = [a.decode(errors="replace") for a in line.split(b"\0") if a]
    return " ".join(Path(w).name if w.startswith("/") else w for w in words[:3])[:40]


class PeakMemory:
    """Tracks process `root` (default: this one) and every one below it while in use. `.total`:
    the largest sum, over one sample, of the peaks so far of the processes alive then (a fork
    that shares its parent's program: its private memory); `.peaks`: each one's peak."""

    def __init__(self, root: int | None = None) -> None:
        if not Path("/proc/self/status").exists():
            raise RuntimeError("the memory check reads /proc: it runs on Linux (as Binder does)")
        self.root = os.getpid() if root is None else root
        self.peaks: dict[int, int] = {}
        self.names: dict[int, str] = {}
        self.at_total: dict[int, int] = {}               # the processes that made up `total`
        self.total = 0
        self._stop = threading.Event()

    def _sample(self) -> None:
        todo, alive = [(self.root, None)], {}
        while todo:
            pid, parent = todo.pop()
            forked = parent is not None and _cmdline(pid) == _cmdline(parent)
            peak = _private_bytes(pid) if forked else _peak_bytes(pid)
            if peak is not None:                          # gone (or a zombie): holds nothing now
                self.peaks[pid] = max(peak, self.peaks.get(pid, 0))
                alive[pid] = peak
                if pid not in self.names:
                    self.names[pid] = _name(pid)
            todo += [(child, pid) for child in _children(pid)]
        if sum(alive.values()) > self.total:
            self.total, self.at_total = sum(alive.values()), alive

    def _watch(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            self._sample()

    def __enter__(self) -> "PeakMemory":
        self._sample()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def check(notebooks: list[Path], out: Path, limit: int = LIMIT_BYTES) -> dict[str, int]:
    """Run each notebook at the binder profile into `out`; {notebook: peak bytes}."""
    from .locations import RUNS_ENV

    peaks = {}
    env = dict(os.environ, **{RUNS_ENV: str(out / "runs")})   # a fresh run cache: every run trains, as on Binder
    for nb in notebooks:
        server = subprocess.Popen([sys.executable, "-c", SERVER, str(nb), str(out / nb.name), PROFILE,
                                   str(out / "results"), str(nb.parent)], env=env)
        with PeakMemory(server.pid) as memory:
            code = server.wait()
        if code != 0:
            raise RuntimeError(f"{nb.stem} failed at the binder profile (exit code {code}); its executed copy, "
                               f"with the trace, is {out / nb.name} (kept with --out FOLDER)")
        peaks[nb.stem] = memory.total
        verdict = "ok" if memory.total < limit else f"OVER {limit / 1e9:.1f} GB"
        parts = ", ".join(f"{memory.names[pid]}: {peak / 1e9:.2f}" for pid, peak in
                          sorted(memory.at_total.items(), key=lambda item: -item[1]))
        print(f"{nb.stem}: peak {memory.total / 1e9:.2f} GB ({verdict}); then alive: {parts}", flush=True)
    return peaks


# The notebook's runner: papermill without torch, as light as the Jupyter server it stands for.
SERVER = ("import sys, papermill; papermill.execute_notebook(sys.argv[1], sys.argv[2], progress_bar=False, "
          "parameters={'profile': sys.argv[3], 'results_dir': sys.argv[4]}, cwd=sys.argv[5])")

RECORD = "memory.csv"
RECORD_FIELDS = ("notebook", "peak_bytes", "limit_bytes")


def record(folder: str | Path, peaks: dict[str, int], limit: int = LIMIT_BYTES) -> Path:
    """<folder>/memory.csv (each notebook's peak and Binder's limit, in bytes) beside the
    provenance.json of the run that measured them."""
    from . import provenance
    from .files import write_csv_atomic

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"notebook": name, "peak_bytes": peak, "limit_bytes": limit} for name, peak in peaks.items()]
    path = write_csv_atomic(folder / RECORD, RECORD_FIELDS, rows)
    provenance.write(folder, {"profile": PROFILE},
                     command=f"python -m hipcore.binder --record {provenance.relative(folder)}")
    return path


def main(argv: list[str] | None = None) -> int:
    from .locations import notebooks_dir

    parser = argparse.ArgumentParser(prog="python -m hipcore.binder", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", help="name prefixes such as 03 (default: every numbered notebook)")
    parser.add_argument("--out", default=None, help="folder for the executed notebooks and their results "
                                                    "(default: a temporary folder, removed afterwards)")
    parser.add_argument("--record", default=None, metavar="FOLDER",
                        help=f"write each notebook's peak to FOLDER/{RECORD} with its provenance.json "
                             "(every notebook checked: no name prefixes), e.g. results/binder_check")
    args = parser.parse_args(argv)
    if args.record and args.notebooks:
        parser.error("--record writes the whole set: leave out the notebook prefixes")
    if os.environ.get("HIPCORE_PROFILE", PROFILE) != PROFILE:
        parser.error(f"HIPCORE_PROFILE={os.environ['HIPCORE_PROFILE']} would override the binder profile; unset it")
    found = sorted(notebooks_dir().glob("[0-9][0-9]_*.ipynb"))
    chosen = [nb for nb in found if not args.notebooks or any(nb.stem.startswith(p) for p in args.notebooks)]
    if not chosen:
        parser.error(f"no notebook matches {args.notebooks}; notebooks: {', '.join(nb.stem for nb in found)}")
    with tempfile.TemporaryDirectory(prefix="hipcore-binder-") as scratch:
        try:
            peaks = check(chosen, Path(args.out or scratch))
        except RuntimeError as error:
            print(error, file=sys.stderr)
            return 1
    if args.record:
        print("wrote", record(args.record, peaks), "and its provenance.json")
    over = [name for name, peak in peaks.items() if peak >= LIMIT_BYTES]
    if over:
        print(f"over Binder's {LIMIT_BYTES / 1e9:.0f} GB at the binder profile: {', '.join(over)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
