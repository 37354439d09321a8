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

`python -m hipcore weights --profile quick` regenerates the files from the run cache
(`hipcore.experiments.export`). Inputs are what `hipcore.data.load_dataset(dataset, split,
ordering=...)` gives (normalised pixels, flattened in the recorded order);
`hipcore.model.check_fits` refuses data of another shape or order.

`hipcore.pretrained` is the loading function (bound over this module's name by the package);
import the other helpers from the module: `from hipcore.pretrained import describe, pair`.
It imports the model only when a model is loaded, so `import hipcore` costs no more.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import HipcoreError
from .files import inside, sha256_file

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


class WeightsNameError(HipcoreError, ValueError):
    """A weights name that is no plain file name: empty, or with '/', '\\' or '..' in it."""


def check_name(name: object) -> str:
    """`name`, when it can name a weights file in its folder and nothing outside it: a non-empty
    string without '/', '\\', '..' or NUL. WeightsNameError otherwise."""
    if not isinstance(name, str) or not name:
        raise WeightsNameError(f"weights name {name!r} is not a name: give a non-empty string")
    bad = [part for part in ("/", "\\", "..", "\0") if part in name]
    if bad:
        raise WeightsNameError(f"weights name {name!r} holds {bad[0]!r}: a weights name is a plain file name, "
                               "with no folder part")
    return name


# ---- reading ----

def read_manifest(folder: str | os.PathLike | None = None) -> dict[str, Any]:
    """The manifest of `folder` (default: the package's weights); {'weights': {}} when it has none."""
    from .train.checkpoint import CheckpointError

    path = _folder(folder) / MANIFEST
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


def _folder(folder: str | os.PathLike | None) -> Path:
    return WEIGHTS_DIR if folder is None else Path(folder)


def weights_file(name: str, folder: str | os.PathLike | None = None) -> Path:
    """The file the manifest entry of `name` names, resolved inside its folder (`entry` refuses
    a file name that would lead out of it)."""
    return inside(_folder(folder), entry(name, folder)["file"])


def pretrained_names(folder: str | os.PathLike | None = None) -> list[str]:
    """The names of the shipped weights, sorted."""
    return sorted(read_manifest(folder)["weights"])


def entry(name: str, folder: str | os.PathLike | None = None) -> dict[str, Any]:
    """The manifest entry of `name`; UnknownWeights (listing the names) when there is none."""
    from .train.checkpoint import CheckpointError

    check_name(name)
    weights = read_manifest(folder)["weights"]
    if name not in weights:
        shipped = ", ".join(sorted(weights)) or "none"
        raise UnknownWeights(f"no shipped weights named {name!r}; the names are: {shipped}")
    e = weights[name]
    missing = [k for k in NEEDED if not isinstance(e, dict) or k not in e]
    if missing:
        raise CheckpointError(f"the {MANIFEST} entry of {name!r} lacks {', '.join(missing)}: regenerate it with "
                              "`python -m hipcore weights`")
    wrong = [f"{key} ({what})" for key, kind, what in ENTRY_TYPES if not isinstance(_at(e, key), kind)
             or isinstance(_at(e, key), bool) and kind is not bool]
    if isinstance(e["file"], str) and inside(_folder(folder), e["file"]) is None:     # no ../, /abs, nor a link out
        wrong.append(f"file (a file name in the weights folder; {e['file']!r} leads out of it)")
    if wrong:
        raise CheckpointError(f"the {MANIFEST} entry of {name!r} was edited: {', '.join(wrong)} must be as "
                              "`python -m hipcore weights` writes them")
    return e


# What an entry's fields must be (dotted paths): a manifest edited by hand is named, never used.
ENTRY_TYPES = (("file", str, "a file name"), ("sha256", str, "a hex digest"), ("bytes", int, "a whole number"),
               ("kind", str, "mae or classifier"), ("seed", int, "a whole number"), ("model", dict, "a table"),
               ("model.variant", str, "a variant name"), ("model.overrides", dict, "a table"),
               ("model.modalities", dict, "a table"), ("metric", dict, "a table"), ("source", dict, "a table"))


def _at(entry: dict[str, Any], dotted: str) -> Any:
    value: Any = entry
    for key in dotted.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def verified_file(name: str, folder: str | os.PathLike | None = None) -> Path:
    """The weights file of `name`, after checking its size and SHA-256 against the manifest.
    CheckpointError naming the file when it is missing, truncated or altered."""
    from .train.checkpoint import CheckpointError

    e, path = entry(name, folder), weights_file(name, folder)
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

    from .config import modalities_from_dict
    from .model import build
    from .train.checkpoint import CheckpointError

    path = verified_file(name, folder)
    spec = entry(name, folder)["model"]
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:     # torch and pickle raise many types for a bad file
        raise CheckpointError(f"weights file {path} of {name!r} is unreadable although its digest "
                              "matches: it was written by another version of torch?") from None
    model = build(spec["variant"], modalities_from_dict(spec["modalities"]), **spec["overrides"])
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
