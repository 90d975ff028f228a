"""The companion package of the course on Backpropagation Through Time.

``companion.cells`` holds the recurrent cells (one step forward and backward each), ``companion.bptt``
runs full BPTT over any of them, ``companion.gradcheck`` checks gradients by finite differences and
``companion.torch_ref`` exchanges weights with torch (imported on demand: torch is optional).
"""
from . import bptt, cells, gradcheck

__all__ = ["bptt", "cells", "gradcheck"]
__version__ = "0.1.0"
