"""Recurrent cells: each implements one time step forward and backward (see ``base.Cell``)."""
from .base import Cell
from .ctrnn import CTRNN, EulerCTRNN
from .elman import Elman
from .gru import GRU
from .lstm import LSTM
from .jordan import Jordan
from .lif import LIF
from .narx import NARX, TDNN

__all__ = ["CTRNN", "Cell", "Elman", "EulerCTRNN", "GRU", "Jordan", "LIF", "LSTM", "NARX", "TDNN"]
