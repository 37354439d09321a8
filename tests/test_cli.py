"""`python -m hipcore`: a version, help on every option, a head counted for a dataset, and bad
input answered by one plain line, never an exception's name or a traceback."""

import argparse
import re
import shlex

import pytest

from hipcore import __version__
from hipcore.cli import build_parser, main


def run(capsys, argv):
    try:
        code = main(argv)
    except SystemExit as exit:
        code = exit.code
    out, err = capsys.readouterr()
    return code, out, err


def options(parser, path=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from options(sub, (*path, name))
        elif not isinstance(action, argparse._HelpAction):
            yield " ".join(path), action


def test_version(capsys):
    code, out, _ = run(capsys, ["--version"])
    assert code == 0 and out.strip() == f"hipcore {__version__}"


def test_every_option_of_every_subcommand_has_help():
    seen = list(options(build_parser()))
    assert len({command for command, _ in seen}) >= 12
    assert [(c, a.dest) for c, a in seen if not a.help] == []


def test_info_counts_the_head_of_a_dataset(capsys, tmp_path):
    _, ten, _ = run(capsys, ["info", "--input", "28x28x1", "--dataset", "fashion-mnist", "small3"])
    _, thousand, _ = run(capsys, ["info", "--input", "28x28x1", "small3"])
    assert "10 classes (fashion_mnist)" in ten and "1000 classes (the default; --classes N" in thousand
    count = {text: int(text.split()[-1].replace(",", "")) for text in (ten, thousand)}
    assert count[thousand] - count[ten] == 990 * (1 + 128)      # small3's read-out: 128 channels + a bias per class
    for name in ("cat", "dog", "owl"):
        (tmp_path / "train" / name).mkdir(parents=True)
    _, three, _ = run(capsys, ["info", "--dataset", "imagefolder", "--data-dir", str(tmp_path), "small3"])
    assert "3 classes (imagefolder)" in three


# Command line -> the one line it must answer with (a trailing "# ..." says what it did before).
BAD_INPUT = """
info nosuch -> unknown variant 'nosuch'
info --input 28 -> shape needs a grid and channels
info --classes 0 -> must be a positive integer
info --dataset imagefolder -> counts the class folders of --data-dir
info --dataset mnist -> invalid choice: 'mnist'
info --data-dir x -> --data-dir goes with --dataset imagefolder
demo --variant nosuch -> invalid choice: 'nosuch'
demo --seed -1 -> must be 0 or more
data info imagefolder -> imagefolder needs --resolution
data info imagefolder --resolution 32 -> imagefolder needs data_dir
data info fashion_mnist --resolution 32 -> --resolution applies to imagefolder only
data info shapes3d --ordering raster -> unknown ordering 'raster'
data info shapes3d --split val -> invalid choice: 'val'
data info modelnet40 -> modelnet40 needs data_dir
data bench --batches 0 -> must be a positive integer
data fetch mnist -> invalid choice: 'mnist'
train --ordering spiral -> invalid choice: 'spiral'
bench --sides -4 -> sides must be a non-empty list of positive ints
bench --profile huge -> invalid choice: 'huge'
train --threads 100000 -> must be at most    # at b709275: OpenMP segfault (rc 139)
train --warmup-epochs 1e308 -> warmup_epochs must be a number of epochs    # was OverflowError
train --seed 18446744073709551616 -> seed must be a whole number in [0, 2**63)    # was "Overflow when unpacking"
train --seed -1 -> must be 0 or more    # was numpy's message
train --dataset imagefolder --data-dir no/such/folder -> folder no/such/folder does not exist
scaling --merge results/paper_reference.csv -> paper_reference.csv is not a curve.csv of notebook 06
scaling --merge pyproject.toml -> pyproject.toml is not a CSV file
train --dataset fashion_mnist --data-option colour=1 -> has no option 'colour'; its options: hflip, download, resolution
bench --threads 100000 -> the cores this process may use
data bench --threads 100000 -> must be at most
summary --profile nightly -> invalid choice: 'nightly'
summary --results-dir no/such/folder -> --results-dir no/such/folder is not a folder
sweep 99 -> no single notebook matches '99'
sweep 00 -p orderingg hilbert -> 00_tour has no parameter 'orderingg'
sweep 00 -p ordering -> -p ordering needs at least one value
sweep 00 --seeds x -> must be a whole number
reproduce --profile nightly -> invalid choice: 'nightly'
"""


def bad_input():
    """(argv, message) per line of BAD_INPUT."""
    for line in BAD_INPUT.strip().splitlines():
        command, message = line.split("    # ")[0].split(" -> ", 1)
        yield shlex.split(command), message


@pytest.mark.parametrize("argv, message", list(bad_input()))
def test_bad_input_gives_one_plain_line(capsys, argv, message):
    code, _, err = run(capsys, argv)
    assert code not in (0, None) and message in err, err
    assert not re.search(r"\w+(Error|Exception)\b|Traceback", err), err
