"""Binder: the profile chosen there, a binder row in every settings table, binder/ files that
follow repo2docker's rules for what it installs when, and the memory check's measurement."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hipcore import binder, locations, notebook
from hipcore.bench import PROFILES as BENCH_PROFILES
from hipcore.experiments import flattening, imagenet_comparison, mae_positions, point_clouds, tour

ROOT = Path(__file__).resolve().parent.parent
BINDER = ROOT / "binder"


@pytest.fixture
def off_binder(monkeypatch):
    for name in (*locations.BINDER_VARIABLES, notebook.PROFILE_ENV):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_auto_is_binder_on_binder_and_quick_elsewhere(off_binder):
    assert locations.binder_detected() is None
    assert notebook.profile_choice("auto") == ("quick", "profile 'auto' off Binder")
    assert notebook.profile_choice("full")[0] == "full"
    off_binder.setenv("JUPYTERHUB_API_URL", "http://hub")          # a hub alone is not Binder
    assert notebook.profile_choice("auto")[0] == "quick"
    off_binder.setenv("BINDER_LAUNCH_HOST", "https://mybinder.org/")
    profile, why = notebook.profile_choice("auto")
    assert profile == "binder" and "BINDER_LAUNCH_HOST" in why
    assert notebook.profile_choice("quick")[0] == "quick"              # asked for: honoured
    off_binder.setenv(notebook.PROFILE_ENV, "smoke")
    assert notebook.profile_choice("auto")[0] == "smoke"


def test_setup_says_which_profile_and_why(off_binder, tmp_path, capsys):
    off_binder.setenv("BINDER_REPO_URL", "https://github.com/x/y")
    table = {p: {"n": i} for i, p in enumerate(notebook.PROFILES)}
    s = notebook.setup("99_x", profile="auto", table=table, results_dir=tmp_path)
    assert s.profile == "binder" and s.out == tmp_path / "99_x" / "binder"
    assert capsys.readouterr().out.startswith("profile binder: Binder detected (BINDER_REPO_URL is set)")


def test_every_settings_table_has_a_binder_row_between_smoke_and_quick():
    assert notebook.PROFILES.index("smoke") < notebook.PROFILES.index("binder") < notebook.PROFILES.index("quick")
    for table in (tour.TABLE, flattening.TABLE, imagenet_comparison.TABLE, mae_positions.TABLE,
                  point_clouds.TABLE, BENCH_PROFILES):
        assert set(notebook.PROFILES) <= set(table)
    for table in (flattening.TABLE, imagenet_comparison.TABLE, mae_positions.TABLE):
        assert table["smoke"]["limit_train"] < table["binder"]["limit_train"] < table["quick"]["limit_train"]
    small, mid, big = (point_clouds.TABLE[p] for p in ("smoke", "binder", "quick"))
    assert small["num_points"] * small["train_per_class"] < mid["num_points"] * mid["train_per_class"] \
        < big["num_points"] * big["train_per_class"]
    assert not set(BENCH_PROFILES["binder"]["models"]) & {"hip16", "hip256", "perceiver_io"}   # over 2 GB
    assert max(BENCH_PROFILES["binder"]["sides"]) < max(BENCH_PROFILES["quick"]["sides"])


def local_reference(line: str) -> bool:
    """repo2docker's test for a requirement that names a local path (such a file is installed
    only after the repository is copied): -r/-c files, file:// and paths starting with '.'."""
    line = line.split("#", 1)[0].strip()
    if not line:
        return False
    if line.startswith(("-r", "-c", "--requirement", "--constraint")):
        return True
    if line.startswith("--") and "=" in line:
        line = line.split("=", 1)[1]
    elif line.startswith("-"):
        parts = line.split(None, 1)
        if len(parts) == 1:
            return False
        line = parts[1]
    if "file://" in line:
        return True
    return (line.split("://", 1)[1] if "://" in line else line).startswith(".")


def test_binder_files_follow_repo2dockers_order():
    # Only binder/ is read once it exists; these files pick the pip (not conda) build.
    assert sorted(p.name for p in BINDER.iterdir()) == ["postBuild", "requirements.txt", "runtime.txt"]
    assert re.fullmatch(r"python-3\.1[0-3]\n", (BINDER / "runtime.txt").read_text())
    requirements = (BINDER / "requirements.txt").read_text().splitlines()
    # installed before the repository is copied: so nothing in it may name a local path ...
    assert not [line for line in requirements if local_reference(line)]
    assert local_reference("-e .[notebooks]") and local_reference(".") and not local_reference("torch==2.13.0")
    # ... and torch is the CPU build, from the CPU index
    active = [line.split("#")[0].strip() for line in requirements if line.split("#")[0].strip()]
    assert active == ["--extra-index-url https://download.pytorch.org/whl/cpu", "torch==2.13.0+cpu"]
    makefile = (ROOT / "Makefile").read_text()
    assert "torch==2.13.0" in makefile                                # the same pin as the Makefile
    post = BINDER / "postBuild"
    assert os.access(post, os.X_OK)
    lines = post.read_text().splitlines()
    assert lines[0] == "#!/bin/bash" and "set -euo pipefail" in lines
    commands = [line for line in lines if line and not line.startswith(("#", "set "))]
    assert commands[0] == 'python -m pip install --no-cache-dir ".[notebooks]"'   # after the copy
    assert commands[1].startswith("python -m hipcore data fetch fashion-mnist --no-install --into ")


CHILD = "b = bytearray({} * 2**20); import time; time.sleep(0.4)"


def test_peak_memory_sums_the_processes_alive_together():
    with binder.PeakMemory() as memory:
        together = [subprocess.Popen([sys.executable, "-c", CHILD.format(200)]) for _ in range(2)]
        for child in together:
            child.wait()
    kids = sorted(peak for pid, peak in memory.peaks.items() if pid != os.getpid())
    assert len(kids) == 2 and kids[0] >= 200 * 2**20
    assert memory.total > sum(kids)                      # both children, and this process


def test_peak_memory_does_not_add_processes_that_ran_one_after_another():
    with binder.PeakMemory() as memory:
        for _ in range(3):
            subprocess.run([sys.executable, "-c", CHILD.format(200)], check=True)
    kids = [peak for pid, peak in memory.peaks.items() if pid != os.getpid()]
    assert len(kids) == 3 and min(kids) >= 200 * 2**20
    assert max(kids) < memory.total < memory.peaks[os.getpid()] + 2 * min(kids)   # never two of them


def test_a_fork_counts_its_private_pages_not_the_parent_s_it_shares():
    held = bytearray(300 * 2**20)                        # the parent's pages, which a fork's VmHWM repeats
    with binder.PeakMemory() as memory:
        pid = os.fork()
        if pid == 0:                                     # the child: the same program, touches nothing
            import time
            time.sleep(0.4)
            os._exit(0)
        os.waitpid(pid, 0)
    assert memory.peaks[os.getpid()] >= len(held) and memory.peaks[pid] < 50 * 2**20
    assert memory.total < memory.peaks[os.getpid()] + 50 * 2**20


def test_the_check_measures_the_notebook_s_own_processes_and_not_itself():
    child = subprocess.Popen([sys.executable, "-c", CHILD.format(200)])
    with binder.PeakMemory(child.pid) as memory:
        child.wait()
    assert os.getpid() not in memory.peaks and memory.peaks[child.pid] >= 200 * 2**20
    assert memory.total == memory.peaks[child.pid]


def test_the_record_fills_the_readme_s_binder_block_and_names_a_notebook_over_the_limit(tmp_path, capsys):
    from hipcore import digests, summary

    assert summary.readme_binder(tmp_path).startswith("No Binder memory record yet")
    peaks = {"00_tour": 1_250_000_000, "05_efficiency": 1_790_000_000}
    binder.record(tmp_path / "binder_check", peaks)
    text = summary.readme_binder(tmp_path)
    assert "00 1.25 GB, 05 1.79 GB; every one under 2 GB." in text and ", commit " in text
    binder.record(tmp_path / "binder_check", {**peaks, "05_efficiency": 2_100_000_000})
    assert summary.readme_binder(tmp_path).endswith("05 2.10 GB; over the limit: 05.")
    (tmp_path / "binder_check" / "memory.csv").write_text("notebook,peak_bytes,limit_bytes\n00_tour,lots,2\n")
    with pytest.raises(ValueError, match="memory.csv: changed since its folder was signed"):
        summary.readme_binder(tmp_path)                                    # the record checks itself (digests)
    digests.sign(tmp_path / "binder_check")                                # re-signed: its shape is still checked
    with pytest.raises(ValueError, match="memory.csv: peak_bytes and limit_bytes must be whole numbers"):
        summary.readme_binder(tmp_path)
    with pytest.raises(SystemExit):
        binder.main(["03", "--record", str(tmp_path / "partial")])
    assert "--record writes the whole set" in capsys.readouterr().err and not (tmp_path / "partial").exists()


def test_the_readme_gives_a_binder_peak_for_every_notebook():
    readme = (ROOT / "README.md").read_text()
    start, end = (readme.index(mark) for mark in ("<!-- binder: generated", "<!-- end of binder -->"))
    block = readme[start:end]
    for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        assert re.search(rf"\b{nb.stem[:2]} \d\.\d\d GB", block), f"README's Binder block has no peak for {nb.stem}"
