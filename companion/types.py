"""Type aliases shared by the companion's modules."""
from __future__ import annotations

from typing import Union

import numpy as np

Array = np.ndarray
"""A numpy array; docstrings give its shape."""

Params = dict[str, np.ndarray]
"""Parameters or their gradients, keyed by the symbol the book uses (``W_xh``, ``W_hh``, ``b_h``, ...)."""

State = Union[np.ndarray, tuple[np.ndarray, ...]]
"""A recurrent state: one array ``(B, width)`` or, for cells such as the LSTM, a tuple of them."""
