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
from pathlib import Path
from typing import Any, Mapping

import torch

from .. import provenance
from ..config import VARIANT_NAMES, HiPConfig, modalities_from_dict, modalities_to_dict
from ..config import variant as named
from ..files import sha256_file, write_atomic, write_text_atomic
from ..locations import PACKAGE_DIR, is_checkout
from ..pretrained import ABOUT, FORMAT, KINDS, MANIFEST, RunsNotFound, check_name, read_manifest
from ..train.checkpoint import CheckpointError, load
from . import common
from .image_arms import HIP_MAE


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
    Returns the files written. Entries of other names in the manifest are kept."""
    if settings is None:
        if profile not in common.IMAGE_TABLE:
            raise ValueError(f"profile {profile!r} is not one of {', '.join(common.IMAGE_TABLE)}")
        settings = common.IMAGE_TABLE[profile]
    if out is None:
        if not is_checkout(PACKAGE_DIR.parent):
            raise ValueError(f"hipcore is installed at {PACKAGE_DIR}, not in a checkout: pass --out DIR "
                             "(the weights belong in a checkout's hipcore/weights/)")
        out = PACKAGE_DIR / "weights"
    out = Path(out)
    pre_cfg, sup_cfg = common.train_configs(HIP_MAE, seed, settings, dataset=dataset, runs_dir=runs_dir)
    for kind in KINDS:                       # a name with a folder part is refused before anything is read
        shipped_name(sup_cfg.variant, dataset, profile, kind, seed)
    pre_state = finished_run(pre_cfg, profile, HIP_MAE.label)
    sup_state = finished_run(sup_cfg, profile, HIP_MAE.label)
    source = sup_state.get("source") or {}
    if (source.get("run_id"), source.get("digest")) != (pre_cfg.run_id, pre_state["digest"]):
        raise RunsNotFound(f"{Path(sup_cfg.run_dir).name} was not fine-tuned from the checkpoint now in "
                           f"{Path(pre_cfg.run_dir).name}: rerun notebook 01 at profile {profile}")
    code = provenance.code_fingerprint()
    exported = {**provenance.git_state(), "code_fingerprint": code, "torch": torch.__version__}
    manifest = read_manifest(out)
    before = {e["file"] for e in manifest["weights"].values()}
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for kind, cfg, state in (("mae", pre_cfg, pre_state), ("classifier", sup_cfg, sup_state)):
        name = shipped_name(cfg.variant, dataset, profile, kind, seed)
        weights = {k: v.detach().cpu().contiguous() for k, v in state["model"].items()}
        payload = io.BytesIO()                 # saved in memory: the archive's names do not depend
        torch.save(weights, payload)           # on the file's (temporary) name, so equal runs give equal bytes
        # A file per content: the manifest written last switches from the old set to the new
        # one at once, so a kill before it leaves the old weights and their manifest intact.
        path = out / f"{name}.{hashlib.sha256(payload.getvalue()).hexdigest()[:12]}.pt"
        write_atomic(path, lambda tmp: tmp.write_bytes(payload.getvalue()))
        metrics = state["run"]["metrics"]
        metric = ({"name": "test top-1", "metric": "test_accuracy", "value": round(100.0 * metrics["test_accuracy"], 4),
                   "unit": "%"} if kind == "classifier" else
                  {"name": "test MAE loss", "metric": "pretrain_test_loss", "value": metrics["test_loss"],
                   "unit": "mean squared error of hidden pixels, normalised"})
        examples = cfg.limit_test if cfg.limit_test is not None else "all"
        manifest["weights"][name] = {
            "file": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size, "kind": kind,
            "what": what_it_is(kind, cfg, dataset),
            "model": model_spec(state, cfg.variant),
            "data": {"dataset": dataset, "ordering": cfg.ordering, "limit_train": cfg.limit_train,
                     "limit_test": cfg.limit_test, "fingerprints": state.get("data")},
            "metric": {**metric, "examples": examples, "epoch": metrics.get("epoch")},
            "profile": profile, "seed": seed, "arm": HIP_MAE.label,
            "source": {"run_id": cfg.run_id, "run_folder": Path(cfg.run_dir).name, "code_fingerprint": code,
                       "step": state["step"], "versions": read_versions(Path(cfg.run_dir)),
                       "training": training_record(state)},
            "exported": exported,
        }
        written.append(path)
    manifest = {"format": FORMAT, "about": ABOUT, "weights": dict(sorted(manifest["weights"].items()))}
    write_text_atomic(out / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    used = {e["file"] for e in manifest["weights"].values()}
    for stale in before - used:
        (out / stale).unlink(missing_ok=True)       # files the previous manifest named, no longer used
    for name in {shipped_name(sup_cfg.variant, dataset, profile, kind, seed) for kind in KINDS}:
        for orphan in out.glob(f"{name}.*.pt"):     # written by an export killed before its manifest
            if orphan.name not in used and len(orphan.name.split(".")) == 3:
                orphan.unlink()
    return [*written, out / MANIFEST]


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
