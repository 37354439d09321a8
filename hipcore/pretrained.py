"""Weights shipped with the package: the quick run's MAE-pretrained and fine-tuned HiP.

    import hipcore
    hipcore.pretrained_names()        # ['small3_fashion_mnist_quick_classifier', 'small3_fashion_mnist_quick_mae']
    model = hipcore.pretrained("small3_fashion_mnist_quick_classifier")   # a HiP in eval mode

`hipcore/weights/` holds one `<name>.pt` per model (its state_dict only, no optimiser state,
read with `torch.load(..., weights_only=True)`) and `manifest.json`, which says per name:

    file, sha256, bytes     the file and its digest, checked before it is read
    kind                    'mae' (MAE-pretrained, with its reconstruction head) or 'classifier'
    what                    one sentence on what the model is
    model                   what rebuilds it: variant, HiPConfig overrides, modalities
    data                    dataset, ordering, training / test examples, data fingerprints
    metric                  its test metric: top-1 (%) of the classifier, the MAE test loss
    profile, seed, arm      which notebook run it comes from (notebook 01's arm)
    source                  the run: run_id, run folder name, training-code fingerprint, step,
                            package versions, its training configuration
    exported                the commit (and dirty flag) and training-code fingerprint of the
                            checkout that exported it

Runs are found by the training-code fingerprint (`hipcore.provenance.code_fingerprint`), so
`source.code_fingerprint` equals `exported.code_fingerprint`: the exporting commit holds the
very training code that trained the runs (run folders do not record a commit of their own).

`python -m hipcore weights --profile quick` regenerates the files from the run cache (`export`).
Inputs are what `hipcore.data.load_dataset(dataset, split, ordering=...)` gives (normalised
pixels, flattened in the recorded order); `check_fits` refuses data of another shape or order.

`hipcore.pretrained` is the loading function (bound over this module's name by the package);
import the other helpers from the module: `from hipcore.pretrained import describe, export`.
It imports torch and the model only when a model is loaded, so `import hipcore` costs no more.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from .errors import HipcoreError
from .files import sha256_file

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MANIFEST = "manifest.json"
FORMAT = 1
KINDS = ("mae", "classifier")
NEEDED = ("file", "sha256", "bytes", "kind", "what", "model", "data", "metric", "profile", "seed", "source")
ABOUT = ("Weights shipped with hipcore (hipcore.pretrained). Regenerate with "
         "`python -m hipcore weights --profile quick`; each entry's sha256 is checked before its file is read.")


class UnknownWeights(HipcoreError, LookupError):
    """No shipped weights of that name (the message lists the names there are)."""


class RunsNotFound(HipcoreError, FileNotFoundError):
    """The runs to export are missing or unfinished in the run cache."""


# ---- reading ----

def read_manifest(folder: str | os.PathLike | None = None) -> dict[str, Any]:
    """The manifest of `folder` (default: the package's weights); {'weights': {}} when it has none."""
    from .train.checkpoint import CheckpointError

    path = (WEIGHTS_DIR if folder is None else Path(folder)) / MANIFEST
    if not path.is_file():
        return {"format": FORMAT, "weights": {}}
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{path} is unreadable ({error}): reinstall hipcore, or regenerate it with "
                              "`python -m hipcore weights`") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("weights"), dict):
        raise CheckpointError(f"{path} is not a hipcore weights manifest (no 'weights' table)")
    return manifest


def pretrained_names(folder: str | os.PathLike | None = None) -> list[str]:
    """The names of the shipped weights, sorted."""
    return sorted(read_manifest(folder)["weights"])


def entry(name: str, folder: str | os.PathLike | None = None) -> dict[str, Any]:
    """The manifest entry of `name`; UnknownWeights (listing the names) when there is none."""
    from .train.checkpoint import CheckpointError

    weights = read_manifest(folder)["weights"]
    if name not in weights:
        shipped = ", ".join(sorted(weights)) or "none"
        raise UnknownWeights(f"no shipped weights named {name!r}; the names are: {shipped}")
    missing = [k for k in NEEDED if k not in weights[name]]
    if missing:
        raise CheckpointError(f"the {MANIFEST} entry of {name!r} lacks {', '.join(missing)}: regenerate it with "
                              "`python -m hipcore weights`")
    return weights[name]


def verified_file(name: str, folder: str | os.PathLike | None = None) -> Path:
    """The weights file of `name`, after checking its size and SHA-256 against the manifest.
    CheckpointError naming the file when it is missing, truncated or altered."""
    from .train.checkpoint import CheckpointError

    e = entry(name, folder)
    path = (WEIGHTS_DIR if folder is None else Path(folder)) / e["file"]
    fix = "reinstall hipcore, or regenerate the weights with `python -m hipcore weights --profile quick`"
    if not path.is_file():
        raise CheckpointError(f"weights file {path} of {name!r} is missing: {fix}")
    size = path.stat().st_size
    if size != e["bytes"]:
        raise CheckpointError(f"weights file {path} of {name!r} holds {size:,} bytes where the manifest "
                              f"says {e['bytes']:,}: it is truncated or was replaced; {fix}")
    if sha256_file(path) != e["sha256"]:
        raise CheckpointError(f"weights file {path} of {name!r} does not match its SHA-256 in {MANIFEST}: "
                              f"it is corrupted or was modified; {fix}")
    return path


def pretrained(name: str, *, folder: str | os.PathLike | None = None):
    """The shipped model `name` (see `pretrained_names()`): a HiP in eval mode on the CPU.
    `folder` reads weights exported elsewhere (`python -m hipcore weights --out DIR`)."""
    import torch

    from .model import build
    from .train.checkpoint import CheckpointError

    path = verified_file(name, folder)
    spec = entry(name, folder)["model"]
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:     # torch and pickle raise many types for a bad file
        raise CheckpointError(f"weights file {path} of {name!r} is unreadable although its digest "
                              "matches: it was written by another version of torch?") from None
    model = build(spec["variant"], modalities_from_json(spec["modalities"]), **spec["overrides"])
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError) as error:
        raise CheckpointError(f"weights file {path} does not fit the model {MANIFEST} describes for "
                              f"{name!r}: {str(error).splitlines()[0]}") from None
    return model.eval()


def describe(name: str, folder: str | os.PathLike | None = None) -> str:
    """One line: the name, its test metric and where it comes from."""
    e = entry(name, folder)
    m, s = e["metric"], e["source"]
    value = f"{m['value']:.2f}{m['unit']}" if m["unit"] == "%" else f"{m['value']:.4f} ({m['unit']})"
    examples = f"{m['examples']:,}" if isinstance(m["examples"], int) else m["examples"]
    return (f"{name}: {e['what']}; {m['name']} {value} on {examples} test images; "
            f"the {e['profile']} run, seed {e['seed']} (run {s['run_id']}, training code {s['code_fingerprint']})")


@dataclass(frozen=True)
class Pair:
    """The MAE-pretrained model and the classifier fine-tuned from it, exported together."""

    mae: str
    classifier: str
    folder: str | None = None

    def entry(self, kind: str) -> dict[str, Any]:
        return entry(getattr(self, kind), self.folder)

    @property
    def variant(self) -> str:
        return self.entry("mae")["model"]["variant"]

    @property
    def seed(self) -> int:
        return self.entry("mae")["seed"]

    @property
    def mask_ratio(self) -> float:
        return self.entry("mae")["source"]["training"]["mask_ratio"]

    def models(self):
        """(MAE model, classifier), loaded and verified."""
        return pretrained(self.mae, folder=self.folder), pretrained(self.classifier, folder=self.folder)

    def describe(self) -> str:
        return "\n".join(f"  {describe(n, self.folder)}" for n in (self.mae, self.classifier))


def pair(*, dataset: str, variant: str | None = None, folder: str | os.PathLike | None = None) -> Pair:
    """The shipped (MAE, classifier) pair for `dataset` (and `variant`, when given). A clear
    error when none is shipped, or when several are and the variant does not tell them apart."""
    groups: dict[tuple, dict[str, str]] = {}
    for name in pretrained_names(folder):
        e = entry(name, folder)
        key = (e["data"]["dataset"], e["model"]["variant"], e["profile"], e["seed"])
        groups.setdefault(key, {})[e["kind"]] = name
    found = [g for (d, v, _, _), g in groups.items() if d == dataset and variant in (None, v) and set(g) == set(KINDS)]
    shipped = ", ".join(f"{v} on {d} ({p}, seed {s})" for (d, v, p, s), g in sorted(groups.items())
                        if set(g) == set(KINDS)) or "none"
    if len(found) != 1:
        what = f"{dataset}{'' if variant is None else f' with variant {variant!r}'}"
        problem = "no shipped weights" if not found else f"{len(found)} shipped pairs"
        raise UnknownWeights(f"{problem} for {what}; shipped pairs: {shipped}")
    return Pair(found[0]["mae"], found[0]["classifier"], None if folder is None else str(folder))


def check_fits(model, modalities: Mapping[str, Any], what: str = "the data") -> None:
    """ValueError unless `modalities` (a dataset's) are exactly the model's: the same inputs,
    channels, grid and input order (a model trained in raster order does not read Hilbert)."""
    import torch

    for name, spec in model.modalities.items():
        if name not in modalities:
            raise ValueError(f"the model reads modality {name!r}, which {what} does not have")
        other = modalities[name]
        mine = (spec.num_inputs, spec.channels, tuple(spec.grid))
        theirs = (other.num_inputs, other.channels, tuple(other.grid))
        if mine != theirs:
            raise ValueError(f"the model reads {name!r} as {spec.num_inputs} inputs x {spec.channels} channels on "
                             f"grid {tuple(spec.grid)}; {what} gives {theirs[0]} x {theirs[1]} on grid {theirs[2]}")
        a = torch.arange(spec.num_inputs) if spec.order is None else spec.order
        b = torch.arange(other.num_inputs) if other.order is None else other.order
        if not torch.equal(a.cpu(), b.cpu()):
            raise ValueError(f"the model was trained with {name!r} flattened in another order than {what}'s: "
                             "load the data in the model's ordering (raster for the shipped weights)")


# ---- modalities as JSON ----

def modalities_to_json(modalities: Mapping[str, Any]) -> dict[str, Any]:
    """{name: {num_inputs, channels, grid, order}}; order 'identity' (raster), null or a list."""
    import torch

    out = {}
    for name, s in modalities.items():
        order = s.order
        if order is not None:
            order = "identity" if torch.equal(order.cpu(), torch.arange(s.num_inputs)) else order.tolist()
        out[name] = {"num_inputs": s.num_inputs, "channels": s.channels, "grid": list(s.grid), "order": order}
    return out


def modalities_from_json(d: Mapping[str, Any]) -> dict[str, Any]:
    import torch

    from .config import ModalitySpec

    def order(o: Any, n: int):
        return None if o is None else torch.arange(n) if o == "identity" else torch.tensor(o, dtype=torch.long)

    return {name: ModalitySpec(s["num_inputs"], s["channels"], tuple(s["grid"]), order(s["order"], s["num_inputs"]))
            for name, s in d.items()}


# ---- exporting from the run cache ----

def shipped_name(variant: str, dataset: str, profile: str, kind: str) -> str:
    return f"{variant}_{dataset}_{profile}_{kind}"


def finished_run(cfg, profile: str, label: str) -> dict[str, Any]:
    """The verified last checkpoint of the run `cfg` names, when that run finished. RunsNotFound
    (what is missing, and the command that trains it) otherwise."""
    from .train.checkpoint import CheckpointError, load

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
    from .config import VARIANT_NAMES, HiPConfig
    from .config import variant as named
    from .train.checkpoint import modalities_from_dict

    if variant not in VARIANT_NAMES:
        raise ValueError(f"only named variants ship; this run's variant is {variant!r}")
    saved = HiPConfig.from_dict(state["model_config"])
    base, want = named(variant).to_dict(), saved.to_dict()
    overrides = {k: v for k, v in want.items() if base.get(k) != v}
    rebuilt = named(variant, **overrides)
    if rebuilt != saved:
        raise ValueError(f"variant {variant!r} with overrides {sorted(overrides)} does not rebuild the checkpoint's model")
    plain = json.loads(json.dumps(overrides, default=list))
    return {"variant": variant, "overrides": plain, "modalities": modalities_to_json(modalities_from_dict(state["modalities"]))}


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
    (`imagenet_comparison.HIP_MAE`) for `seed`, from the run cache at `profile`, into `out`
    (default: this checkout's hipcore/weights) with their manifest entries. The runs are the
    notebooks' own (`common.train_configs` at `common.IMAGE_TABLE[profile]`, or `settings`).
    Returns the files written. Entries of other names in the manifest are kept."""
    import torch

    from . import provenance
    from .experiments import common
    from .experiments.imagenet_comparison import HIP_MAE
    from .files import write_atomic, write_text_atomic
    from .locations import PACKAGE_DIR, is_checkout

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
    pre_state = finished_run(pre_cfg, profile, HIP_MAE.label)
    sup_state = finished_run(sup_cfg, profile, HIP_MAE.label)
    source = sup_state.get("source") or {}
    if (source.get("run_id"), source.get("digest")) != (pre_cfg.run_id, pre_state["digest"]):
        raise RunsNotFound(f"{Path(sup_cfg.run_dir).name} was not fine-tuned from the checkpoint now in "
                           f"{Path(pre_cfg.run_dir).name}: rerun notebook 01 at profile {profile}")
    code = provenance.code_fingerprint()
    exported = {**provenance.git_state(), "code_fingerprint": code, "torch": torch.__version__}
    manifest = read_manifest(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for kind, cfg, state in (("mae", pre_cfg, pre_state), ("classifier", sup_cfg, sup_state)):
        name = shipped_name(cfg.variant, dataset, profile, kind)
        path = out / f"{name}.pt"
        weights = {k: v.detach().cpu().contiguous() for k, v in state["model"].items()}
        payload = io.BytesIO()                 # saved in memory: the archive's names do not depend
        torch.save(weights, payload)           # on the file's (temporary) name, so equal runs give equal bytes
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
    return [*written, out / MANIFEST]


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
