"""hipcore: the Hierarchical Perceiver (Carreira et al., 2022) in PyTorch, with data, training
and the notebooks that test the paper's findings."""

from .config import VARIANT_NAMES, BlockConfig, HiPConfig, ModalitySpec, variant
from .model import HiP, HiPOutput, build, plain_attention

__version__ = "0.1.0"

__all__ = ["VARIANT_NAMES", "BlockConfig", "HiP", "HiPConfig", "HiPOutput", "ModalitySpec",
           "build", "plain_attention", "variant", "__version__"]
