"""hipcore: the Hierarchical Perceiver (Carreira et al., 2022) in PyTorch, with data, training
and the notebooks that test the paper's findings."""

from .config import VARIANT_NAMES, BlockConfig, HiPConfig, ModalitySpec, variant
from .model import HiP, HiPOutput, build, plain_attention

# Shipped weights: hipcore.pretrained(name) binds the function over the submodule of the same
# name (whose other helpers stay importable: from hipcore.pretrained import export).
from .pretrained import pretrained, pretrained_names
from .version import __version__

__all__ = ["VARIANT_NAMES", "BlockConfig", "HiP", "HiPConfig", "HiPOutput", "ModalitySpec",
           "build", "plain_attention", "pretrained", "pretrained_names", "variant", "__version__"]
