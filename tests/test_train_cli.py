"""The command line: help and errors, resumption after SIGKILL, two processes under torchrun."""

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hipcore.cli import main as hipcore_main
from hipcore.model.layers import Attention
from hipcore.train import TrainConfig, load_model, read_metrics, train
from hipcore.train.cli import add_commands, config_from_args

ROOT = Path(__file__).resolve().parents[1]
TINY = {"blocks": [dict(groups=4, latents=4, channels=16, self_attends=1, heads=2),
                   dict(groups=1, latents=8, channels=32, self_attends=1, heads=4),
                   dict(groups=4, latents=4, channels=16, self_attends=1, heads=2)],
        "embed_channels": 8}
SHAPES = ["--dataset", "shapes3d", "--data-option", "num_points=64", "--data-option", "train_per_class=8",
          "--data-option", "test_per_class=2"]                       # 80 train and 20 test clouds
COLLAGES = ["--task", "segment", "--dataset", "collages", "--data-option", "side=32", "--val-fraction", "0.2",
            "--data-option", "train_canvases=100", "--data-option", "test_canvases=20"]   # 80 train, 20 validation


def command(tmp_path, run_dir, *extra, data=SHAPES):
    variant = tmp_path / "tiny.json"
    variant.write_text(json.dumps(TINY))
    return [sys.executable, "-m", "hipcore", "train", *data, "--variant", str(variant),
            "--batch-size", "8", "--threads", "1", "--quiet", "--run-dir", str(tmp_path / run_dir), *extra]


def environment():
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def test_help_lists_the_options_a_notebook_needs(capsys):
    parser = argparse.ArgumentParser(prog="hipcore")
    add_commands(parser.add_subparsers(dest="command", required=True))
    for task, options in (("train", ["--init-from", "--transfer", "--label-smoothing", "--task"]),
                          ("pretrain", ["--mask-ratio", "--norm-pix"])):
        with pytest.raises(SystemExit) as done:
            parser.parse_args([task, "--help"])
        assert done.value.code == 0
        text = capsys.readouterr().out
        for option in ["--dataset", "--data-dir", "--ordering", "--variant", "--position", "--epochs",
                       "--max-steps", "--batch-size", "--lr", "--weight-decay", "--optimizer",
                       "--warmup-epochs", "--clip-grad", "--seed", "--run-dir", "--checkpoint-every",
                       "--limit-train", "--device", "--quiet", *options]:
            assert option in text, (task, option)
    args = parser.parse_args(["pretrain", "--set", "readout=query", "--dropout", "0.1", "--clip-grad", "0"])
    cfg = config_from_args(args, "pretrain")
    assert cfg.model == {"readout": "query", "dropout": 0.1} and cfg.clip_grad is None


@pytest.mark.parametrize("argv, message", [
    (["train", "--optimizer", "sgd"], "invalid choice: 'sgd'"),
    (["train", "--batch-size", "0"], "must be a positive integer"),
    (["pretrain", "--mask-ratio", "1.5"], "error: mask_ratio must be in (0, 1)"),
    (["train", "--set", "widht=3"], "error: unknown model option(s) ['widht']"),
    (["train", "--device", "tpu"], "error: device must be"),
    (["train", "--warmup-epochs", "inf"], "argument --warmup-epochs: must be a finite number, got inf"),
    (["train", "--lr", "nan"], "argument --lr: must be a finite number, got nan"),
    (["train", "--run-dir", ""], "error: run_dir is empty"),
    (["demo", "--batch-size", "-3"], "argument --batch-size: must be a positive integer, got -3"),
])
def test_bad_options_give_a_clear_error(capsys, argv, message):
    """One line that says what is wrong; never an exception's name or a traceback."""
    try:
        code = hipcore_main(argv)
    except SystemExit as exit:
        code = exit.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and not re.search(r"\w+(Error|Exception)\b|Traceback", err), err


@pytest.mark.parametrize("data", [SHAPES, COLLAGES], ids=["classification", "segmentation"])
def test_a_run_killed_at_a_random_moment_resumes_to_the_same_digits(tmp_path, data):
    """Either task, 40 steps: classification of point clouds, or segmentation of collages (each
    epoch's validation mIoU picks best.pt, evaluated on test once at the end)."""
    extra = ("--epochs", "4", "--checkpoint-every", "4", "--log-every", "1", "--dropout", "0.1")
    reference = subprocess.Popen(command(tmp_path, "reference", *extra, data=data), env=environment(), cwd=ROOT,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim_cmd = command(tmp_path, "victim", *extra, data=data)
    victim = subprocess.Popen(victim_cmd, env=environment(), cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run_dir, target = tmp_path / "victim", random.randint(5, 32)   # 40 steps in all
    deadline = time.time() + 120
    while not (run_dir / "last.pt").exists() or _last_step(run_dir) < target:
        assert victim.poll() is None and time.time() < deadline, "the run ended before it could be killed"
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL
    killed_at = _last_step(run_dir)
    resumed = subprocess.run(victim_cmd, env=environment(), cwd=ROOT, capture_output=True, text=True, timeout=120)
    out, err = reference.communicate(timeout=120)
    assert reference.returncode == 0, err
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.splitlines()[0] == out.splitlines()[0], f"killed at step {killed_at}"
    assert (run_dir / "metrics.csv").read_text() == (tmp_path / "reference" / "metrics.csv").read_text()
    a = torch.load(run_dir / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "reference" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def _last_step(run_dir):
    """The step of the last complete metrics row (0 if none yet)."""
    try:
        lines = (run_dir / "metrics.csv").read_text().splitlines()
    except FileNotFoundError:
        return 0
    fields = lines[-2].split(",") if len(lines) > 2 else []      # the last line may be torn
    return int(fields[3]) if len(fields) == 7 else 0


@pytest.mark.parametrize("data", [SHAPES, COLLAGES], ids=["classification", "segmentation"])
def test_two_processes_train_the_model_one_process_trains(tmp_path, data):
    """Segmentation: each rank's confusion matrices (validation and test) are summed before mIoU."""
    # fp32: under bf16 autocast (what 'auto' picks on a bf16 CPU) the two halves round differently
    extra = ("--max-steps", "3", "--no-augment", "--lr", "3e-3", "--warmup-steps", "1", "--precision", "fp32")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                *command(tmp_path, "two", *extra, data=data)[1:]]
    two = subprocess.Popen(torchrun, env=environment(), cwd=ROOT, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    one = train(TrainConfig.from_dict({**_config(tmp_path, "two", extra, data), "run_dir": str(tmp_path / "one")}))
    log, _ = two.communicate(timeout=180)
    assert two.returncode == 0, log
    assert json.loads((tmp_path / "two" / "versions.json").read_text())["world_size"] == 2
    a = torch.load(tmp_path / "two" / "last.pt", weights_only=True)
    b = torch.load(one.last_checkpoint, weights_only=True)
    assert a["step"] == b["step"] == 3 and len(a["rng"]) == 2
    ignore = key_biases(load_model(one.last_checkpoint))
    for k, v in b["model"].items():
        keep = ~ignore.get(k, torch.zeros_like(v, dtype=torch.bool))
        assert torch.allclose(a["model"][k][keep], v[keep], atol=1e-5, rtol=1e-4), k
    for split in ("test", "val") if data is COLLAGES else ("test",):
        metrics = {r["metric"]: r["value"] for r in read_metrics(tmp_path / "two") if r["split"] == split}
        assert metrics["loss"] == pytest.approx(one.metrics[f"{split}_loss"], rel=1e-4)
        for name in ("pixel_accuracy", "miou") if data is COLLAGES else ("accuracy",):
            assert metrics[name] == one.metrics[f"{split}_{name}"], (split, name)


def key_biases(model):
    """{name: bool mask} of the key biases. Softmax ignores a shift shared by all keys, so
    their gradient is zero but for rounding, which Adam scales up to lr-sized steps that
    differ with the order of reductions: the one part of the model not compared."""
    masks = {}
    for name, module in model.named_modules():
        if isinstance(module, Attention):
            qk = module.qk_channels
            bias = (module.qkv if module.fused_qkv else module.kv).bias
            mask = torch.zeros_like(bias, dtype=torch.bool)
            if module.fused_qkv:
                mask[qk:2 * qk] = True
            else:
                mask[:qk] = True
            masks[f"{name}.{'qkv' if module.fused_qkv else 'kv'}.bias"] = mask
    return masks


def _config(tmp_path, run_dir, extra, data=SHAPES):
    """The TrainConfig the CLI builds for command(tmp_path, run_dir, *extra, data=data), in-process."""
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(command(tmp_path, run_dir, *extra, data=data)[3:])
    return config_from_args(args, args.task).to_dict()


def image_folder(root: Path) -> Path:
    """A tiny generated image folder: two classes, a few 10 x 12 PNGs per split."""
    from PIL import Image

    rng = random.Random(0)
    for split, count in (("train", 4), ("val", 2)):
        for name in ("cat", "dog"):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                pixels = bytes(rng.randrange(256) for _ in range(10 * 12 * 3))
                Image.frombytes("RGB", (12, 10), pixels).save(root / split / name / f"{i}.png")
    return root


def test_imagefolder_without_resolution_stops_before_any_timing_or_loading(tmp_path, capsys, monkeypatch):
    import hipcore.train.engine as engine

    monkeypatch.setattr(engine, "train", lambda cfg: pytest.fail("training started without a resolution"))
    folder = image_folder(tmp_path / "images")
    code = hipcore_main(["train", "--dataset", "imagefolder", "--data-dir", str(folder), "--run-dir",
                         str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "resolution" in err[0] and "--data-option" in err[0]
    assert not (tmp_path / "run").exists() and not any((tmp_path / "images").rglob("*.npy"))


def test_imagefolder_s_resolution_is_required_in_the_help_and_echoed_first(tmp_path, capsys):
    from hipcore.train.cli import echo_data

    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers())
    train_help = parser._subparsers._group_actions[0].choices["train"].format_help()
    assert "imagefolder requires resolution=N" in " ".join(train_help.split())
    folder = image_folder(tmp_path / "images")
    args = parser.parse_args(["train", "--dataset", "imagefolder", "--data-dir", str(folder),
                              "--data-option", "resolution=8", "--run-dir", str(tmp_path / "run")])
    echo_data(config_from_args(args, "supervised"))
    assert capsys.readouterr().out.splitlines()[0] == "imagefolder: resolution=8"
