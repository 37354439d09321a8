"""The HiP model: layers, grouping, positions, and the hierarchy that ties them."""

from .grouping import GroupLayout, allot_groups, regroup
from .hip import HiP, HiPBlock, HiPOutput, build, check_fits
from .layers import plain_attention

__all__ = ["GroupLayout", "HiP", "HiPBlock", "HiPOutput", "allot_groups", "build",
           "check_fits", "plain_attention", "regroup"]
