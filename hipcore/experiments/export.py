"""Exporting shipped weights from the notebooks' run cache: notebook 01's HiP + MAE arm, its
MAE-pretrained and its fine-tuned model, as `hipcore/weights/<name>.pt` plus their entries in
`manifest.json` (the format `hipcore.pretrained` reads and documents).

    python -m hipcore weights --profile quick        # from the run cache of `make reproduce`

Runs are found by the training-code fingerprint (`hipcore.provenance.code_fingerprint`), so
the exporting commit holds the very training code that trained the runs.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from pathlib import Path
from typing import Any, Mapping

import torch

from .. import provenance
from ..config import VARIANT_NAMES, HiPConfig, modalities_from_dict, modalities_to_dict
from ..config import variant as named
from ..errors import HipcoreError
from ..files import clean_temps, folder_lock, sha256_file, write_atomic, write_text_atomic
from ..locations import PACKAGE_DIR, is_checkout
from ..pretrained import (
    ABOUT,
    FORMAT,
    KINDS,
    MANIFEST,
    RunsNotFound,
    check_name,
    entry,
    read_manifest,
    weights_file,
)
from ..train.checkpoint import CheckpointError, load
from . import common
from .image_arms import HIP_MAE


class ExportRefused(HipcoreError, ValueError):
    """The export would delete or replace a file it did not write; the message names it."""


def shipped_name(variant: str, dataset: str, profile: str, kind: str, seed: int = 0) -> str:
    """The weights' name: seed 0's is the default a notebook loads; another seed's says its seed,
    so exporting it never replaces seed 0's. WeightsNameError when a part would give it a folder
    part ('/', '\\', '..')."""
    return check_name(f"{variant}_{dataset}_{profile}{'' if seed == 0 else f'_seed{seed}'}_{kind}")


def finished_run(cfg, profile: str, label: str) -> dict[str, Any]:
    """The verified last checkpoint of the run `cfg` names, when that run finished. RunsNotFound
    (what is missing, and the command that trains it) otherwise."""
    folder, last = Path(cfg.run_dir), Path(cfg.run_dir) / "last.pt"
    train = (f"Run notebook 01_imagenet_comparison at profile {profile} first (`make reproduce` for quick, "
             f"or `python -m hipcore sweep 01 --profile {profile}`), or name its run cache with --runs-dir.")
    where = f"notebook 01's arm {label!r}, {cfg.task} run {cfg.run_id}, seed {cfg.seed}, profile {profile}"
    if not last.is_file():
        held = "holds no last.pt" if folder.is_dir() else "does not exist"
        raise RunsNotFound(f"no finished run of {where}: {folder.name} in {folder.parent} {held}. {train}")
    try:
        state = load(last, training=True)
    except CheckpointError as error:
        raise RunsNotFound(f"the run of {where} cannot be read: {error}") from None
    total = state["scheduler"].get("lr_lambdas", [{}])[0].get("total_steps")
    if total is None:
        raise RunsNotFound(f"cannot tell whether {last} finished (its scheduler records no total steps)")
    if state["step"] != total:
        raise RunsNotFound(f"the run of {where} stopped at step {state['step']} of {total}. {train}")
    if state.get("run_id") != cfg.run_id:
        raise RunsNotFound(f"{last} holds run {state.get('run_id')}, not {cfg.run_id}")
    differ = [d for d in cfg.differences(state["config"]) if not d.startswith(("run_dir:", "init_from:"))]
    if differ:
        raise RunsNotFound(f"{last} was trained with other settings than {where}: {'; '.join(differ)}")
    return state


def model_spec(state: Mapping[str, Any], variant: str) -> dict[str, Any]:
    """variant + the HiPConfig fields that differ from it + modalities, checked to rebuild the
    checkpoint's configuration exactly."""
    if variant not in VARIANT_NAMES:
        raise ValueError(f"only named variants ship; this run's variant is {variant!r}")
    saved = HiPConfig.from_dict(state["model_config"])
    base, want = named(variant).to_dict(), saved.to_dict()
    overrides = {k: v for k, v in want.items() if base.get(k) != v}
    rebuilt = named(variant, **overrides)
    if rebuilt != saved:
        raise ValueError(f"variant {variant!r} with overrides {sorted(overrides)} does not rebuild "
                         "the checkpoint's model")
    plain = json.loads(json.dumps(overrides, default=list))
    return {"variant": variant, "overrides": plain,
            "modalities": modalities_to_dict(modalities_from_dict(state["modalities"]), plain=True)}


def training_record(state: Mapping[str, Any]) -> dict[str, Any]:
    """The run's training configuration with no machine path: run_dir dropped, init_from as
    '<pretraining run folder>/last.pt'."""
    config = {k: v for k, v in state["config"].items() if k != "run_dir"}
    if config.get("init_from"):
        config["init_from"] = "/".join(Path(config["init_from"]).parts[-2:])
    return config


def export(profile: str = "quick", *, seed: int = 0, runs_dir: str | os.PathLike | None = None,
           out: str | os.PathLike | None = None, settings: Mapping[str, Any] | None = None,
           dataset: str = "fashion_mnist") -> list[Path]:
    """Write the MAE-pretrained and the fine-tuned model of notebook 01's HiP + MAE arm
    (`image_arms.HIP_MAE`) for `seed`, from the run cache at `profile`, into `out`
    (default: this checkout's hipcore/weights) with their manifest entries. The runs are the
    notebooks' own (`common.train_configs` at `common.IMAGE_TABLE[profile]`, or `settings`).
    Returns the files written. Entries of other names in the manifest are kept.

    One export at a time writes a folder (`files.folder_lock`: a second waits, then is refused).
    It deletes or replaces only files it wrote there: those the manifest's replaced entries
    name, each resolved inside the folder and matching its recorded SHA-256, and the leftovers
    of a killed export, whose names carry their own content hash (`stale_files`)."""
    settings = profile_settings(profile, settings)
    out = output_folder(out)
    pre_cfg, sup_cfg = common.train_configs(HIP_MAE, seed, settings, dataset=dataset, runs_dir=runs_dir)
    for kind in KINDS:                       # a name with a folder part is refused before anything is read
        shipped_name(sup_cfg.variant, dataset, profile, kind, seed)
    runs = finished_pair(pre_cfg, sup_cfg, profile)
    out.mkdir(parents=True, exist_ok=True)
    with folder_lock(out, "weights export"):
        return write_export(out, runs, dataset=dataset, profile=profile, seed=seed)


def profile_settings(profile: str, settings: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """`settings`, or the image notebooks' row of `profile`."""
    if settings is not None:
        return settings
    if profile not in common.IMAGE_TABLE:
        raise ValueError(f"profile {profile!r} is not one of {', '.join(common.IMAGE_TABLE)}")
    return common.IMAGE_TABLE[profile]


def output_folder(out: str | os.PathLike | None) -> Path:
    """`out`, or this checkout's hipcore/weights (an installed package has none to write)."""
    if out is not None:
        if Path(out).exists() and not Path(out).is_dir():
            raise ValueError(f"--out {out} is a file, not a folder")
        return Path(out)
    if not is_checkout(PACKAGE_DIR.parent):
        raise ValueError(f"hipcore is installed at {PACKAGE_DIR}, not in a checkout: pass --out DIR "
                         "(the weights belong in a checkout's hipcore/weights/)")
    return PACKAGE_DIR / "weights"


def finished_pair(pre_cfg, sup_cfg, profile: str) -> list[tuple[str, Any, dict[str, Any]]]:
    """[(kind, config, verified last state)] of the MAE pretraining and the fine-tuning from it."""
    pre_state = finished_run(pre_cfg, profile, HIP_MAE.label)
    sup_state = finished_run(sup_cfg, profile, HIP_MAE.label)
    source = sup_state.get("source") or {}
    if (source.get("run_id"), source.get("digest")) != (pre_cfg.run_id, pre_state["digest"]):
        raise RunsNotFound(f"{Path(sup_cfg.run_dir).name} was not fine-tuned from the checkpoint now in "
                           f"{Path(pre_cfg.run_dir).name}: rerun notebook 01 at profile {profile}")
    return [("mae", pre_cfg, pre_state), ("classifier", sup_cfg, sup_state)]


def write_export(out: Path, runs, *, dataset: str, profile: str, seed: int) -> list[Path]:
    """Under the folder's lock: the weights files (each a file per content, written whole), then
    the manifest, which switches from the old set to the new one at once (a kill before it leaves
    the old weights and their manifest intact), then the old set's files. A killed export's
    temporary files go first (`files.clean_temps`: hipcore's own names, of processes gone)."""
    clean_temps(out)
    manifest = read_manifest(out)
    payloads = {shipped_name(cfg.variant, dataset, profile, kind, seed): weights_bytes(state)
                for kind, cfg, state in runs}
    files = {name: f"{name}.{hashlib.sha256(data).hexdigest()[:12]}.pt" for name, data in payloads.items()}
    stale = stale_files(out, manifest, files)          # checked before anything is written
    exported = {**provenance.git_state(), "code_fingerprint": provenance.code_fingerprint(), "torch": torch.__version__}
    written = []
    for (kind, cfg, state), (name, data) in zip(runs, payloads.items()):
        path = write_weights(out / files[name], data)
        manifest["weights"][name] = manifest_entry(path, kind, cfg, state, dataset=dataset, profile=profile,
                                                   seed=seed, exported=exported)
        written.append(path)
    manifest = {"format": FORMAT, "about": ABOUT, "weights": dict(sorted(manifest["weights"].items()))}
    write_text_atomic(out / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    for path in stale:
        path.unlink(missing_ok=True)
    return [*written, out / MANIFEST]


def weights_bytes(state: Mapping[str, Any]) -> bytes:
    """The model's state_dict as torch.save bytes, saved in memory: the archive's names do not
    depend on the file's (temporary) name, so equal runs give equal bytes."""
    payload = io.BytesIO()
    torch.save({k: v.detach().cpu().contiguous() for k, v in state["model"].items()}, payload)
    return payload.getvalue()


def write_weights(path: Path, data: bytes) -> Path:
    """`data` at `path` (temporary name, then renamed); a file already there is replaced only
    when it holds these very bytes (its name is their hash), else refused."""
    same = path.is_file() and sha256_file(path) == hashlib.sha256(data).hexdigest()
    if path.is_symlink() or (path.exists() and not same):
        raise ExportRefused(f"{path} is in the way: its name is that of the weights being exported but it "
                            "holds other bytes (or is no plain file); hipcore replaces only files it wrote: move "
                            "it away and run again")
    write_atomic(path, lambda tmp: tmp.write_bytes(data))
    return path


def stale_files(out: Path, manifest: Mapping[str, Any], files: Mapping[str, str]) -> list[Path]:
    """The files this export makes stale: those of the entries it replaces (each checked by
    `owned`), and leftovers of killed exports of these names: `<name>.<12 hex>.pt` whose bytes
    hash to those 12 digits. A user's file of another name or content is never among them."""
    keep = set(files.values()) | {e.get("file") for n, e in manifest["weights"].items()
                                  if n not in files and isinstance(e, dict)}
    stale = {owned(out, name) for name in files if name in manifest["weights"]}
    for name in files:
        for path in out.glob(f"{name}.*.pt"):
            digest = path.name[len(name) + 1:-len(".pt")]
            if (re.fullmatch(r"[0-9a-f]{12}", digest) and path.is_file() and not path.is_symlink()
                    and sha256_file(path).startswith(digest)):
                stale.add(path.resolve())
    return sorted(p for p in stale if p is not None and p.name not in keep)


def owned(out: Path, name: str) -> Path | None:
    """The file the manifest's entry `name` names, resolved inside `out` (pretrained.entry
    refuses any other name) and holding the bytes the entry records; None when it is gone.
    ExportRefused, naming the file, when it holds other bytes: hipcore did not write them."""
    try:
        path = weights_file(name, out)
    except CheckpointError as error:
        raise ExportRefused(f"{out / MANIFEST}: {error}; nothing was written") from None
    if not path.exists() and not path.is_symlink():
        return None
    if path.is_symlink() or not path.is_file() or sha256_file(path) != entry(name, out)["sha256"]:
        raise ExportRefused(f"{path} is not the file {MANIFEST}'s entry {name!r} records (its SHA-256 differs): "
                            "hipcore deletes only files it wrote; move it away and run again")
    return path


def test_metrics(state: Mapping[str, Any]) -> dict[str, Any]:
    """test_accuracy / test_loss and the epoch they were measured at, from a finished run's
    last.pt: the test set's one evaluation (RunState.test, at the selected epoch), or, in a
    checkpoint written before the test set was evaluated once, the last epoch's metrics."""
    run = state["run"]
    if run.get("test"):
        return {**{f"test_{k}": v for k, v in run["test"].items()}, "epoch": (run.get("selected") or {}).get("epoch")}
    if "test_loss" not in run.get("metrics", {}):
        raise RunsNotFound("the run's last.pt records no test evaluation: rerun notebook 01 to finish it")
    return run["metrics"]


def manifest_entry(path: Path, kind: str, cfg, state: Mapping[str, Any], *, dataset: str, profile: str,
                   seed: int, exported: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest's entry for the weights file `path` (the format `hipcore.pretrained` reads)."""
    metrics = test_metrics(state)
    metric = ({"name": "test top-1", "metric": "test_accuracy", "value": round(100.0 * metrics["test_accuracy"], 4),
               "unit": "%"} if kind == "classifier" else
              {"name": "test MAE loss", "metric": "pretrain_test_loss", "value": metrics["test_loss"],
               "unit": "mean squared error of hidden pixels, normalised"})
    examples = cfg.limit_test if cfg.limit_test is not None else "all"
    return {
        "file": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size, "kind": kind,
        "what": what_it_is(kind, cfg, dataset),
        "model": model_spec(state, cfg.variant),
        "data": {"dataset": dataset, "ordering": cfg.ordering, "limit_train": cfg.limit_train,
                 "limit_test": cfg.limit_test, "fingerprints": state.get("data")},
        "metric": {**metric, "examples": examples, "epoch": metrics.get("epoch")},
        "profile": profile, "seed": seed, "arm": HIP_MAE.label,
        "source": {"run_id": cfg.run_id, "run_folder": Path(cfg.run_dir).name,
                   "code_fingerprint": exported["code_fingerprint"], "step": state["step"],
                   "versions": read_versions(Path(cfg.run_dir)), "training": training_record(state)},
        "exported": dict(exported),
    }


def written_names(paths: list[Path]) -> list[str]:
    """The manifest names of the weights files `export` wrote (its returned paths, the manifest
    last), in the order written: a file's name carries its content hash, not its entry's name."""
    entries = read_manifest(paths[-1].parent)["weights"]
    by_file = {entry["file"]: name for name, entry in entries.items()}
    return [by_file[path.name] for path in paths[:-1]]


def what_it_is(kind: str, cfg, dataset: str) -> str:
    if kind == "mae":
        return (f"HiP {cfg.variant} MAE-pretrained on {dataset} ({cfg.ordering} order, mask ratio "
                f"{cfg.mask_ratio:g}, {cfg.epochs} epochs), with its reconstruction head")
    return (f"HiP {cfg.variant} classifier fine-tuned on {dataset} ({cfg.ordering} order, {cfg.epochs} epochs) "
            f"from that MAE pretraining (transfer: {cfg.transfer})")


def read_versions(run_dir: Path) -> dict[str, Any] | None:
    """The run's versions.json (python, torch, numpy, device, threads), or None."""
    path = run_dir / "versions.json"
    return json.loads(path.read_text()) if path.is_file() else None


def cmd_weights(args) -> int:
    """Writes the MAE-pretrained and the fine-tuned HiP of notebook 01's arm 'HiP, MAE-learned
    positions' (one seed, from the run cache at --profile) to hipcore/weights/ with their
    manifest (checksums, configuration, test metric, source run), for
    hipcore.pretrained(name). Trains nothing: run notebook 01 at that profile first (make
    reproduce for quick)."""
    from ..pretrained import describe

    paths = export(args.profile, seed=args.seed, runs_dir=args.runs_dir, out=args.out)
    for name in written_names(paths):
        print(describe(name, paths[-1].parent))
    print("wrote " + ", ".join(provenance.relative(p) for p in paths))
    return 0


def add_commands(sub) -> None:
    """`weights` on an argparse subparsers object."""
    from ..argtypes import non_negative_int

    weights = sub.add_parser("weights", help="export the shipped pretrained weights from the notebooks' run cache",
                             description=cmd_weights.__doc__)
    weights.add_argument("--profile", default="quick", choices=("smoke", "binder", "quick", "full", "paper"),
                         help="the image notebooks' settings the runs were trained at (default quick)")
    weights.add_argument("--seed", type=non_negative_int, default=0, help="which seed's runs to export (default 0)")
    weights.add_argument("--runs-dir", default=None,
                         help="the run cache to read (default: $HIPCORE_RUNS, else runs/ of the checkout)")
    weights.add_argument("--out", default=None,
                         help="the folder to write (default: hipcore/weights/ of this checkout)")
    weights.set_defaults(func=cmd_weights)
