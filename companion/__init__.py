"""The companion package of the course on Backpropagation Through Time.

``companion.cells`` holds the recurrent cells (one step forward and backward each, their math only),
``companion.bptt`` runs full BPTT over any of them, ``companion.fused`` holds the faster sequence paths
of the Elman, LSTM and GRU classes, ``companion.gradcheck`` checks gradients by finite differences and
``companion.torch_ref`` exchanges weights with torch (imported on demand: torch is optional).
"""
from . import bptt, cells, fused, gradcheck

__all__ = ["bptt", "cells", "fused", "gradcheck"]
__version__ = "0.1.0"
