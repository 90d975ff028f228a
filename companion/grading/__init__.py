"""The graders of the course's assignments: the companion as the grading oracle.

Each module grades one assignment of ``assignments/source``: its checks draw problems of random shapes from
seeds, compute the answer with the companion's tested implementation, and raise ``GradingError`` with a
message for the student (which quantity is wrong, where, and on which problem) when the student's function
disagrees. The assignments' autograded test cells call these checks.

* ``core``: the feedback error and the comparisons every grader shares;
* ``elman``: assignment 1, the Elman network with a readout and the cross-entropy, forward and backward;
* ``lstm``: assignment 2, the LSTM's backward pass, one step and through time;
* ``truncation``: assignment 3, the backward passes of BPTT(k2; k1) and its truncated gradient;
* ``continuous``: assignment 4, the continuous-time adjoint with jumps, and the parameter integral;
* ``rtrl``: assignment 5, RTRL's immediate Jacobians, sensitivities and gradients for the Elman network;
* ``narx``: assignment 6, the NARX network: the closed loop, the backward recursion with delays, the
  gradients, and teacher forcing;
* ``bpts``: assignment 7, a recursive network on trees: forward pass, loss, BPTS node by node, the tied
  weights' gradients;
* ``spiking``: assignment 8, a recurrent LIF layer: forward pass with resets, snntorch's surrogates, the
  backward recursion through membrane and spikes, the gradients;
* ``classic``: assignment 9, iRprop-, the Polak-Ribiere+ direction, the Joseph form, the global and the
  decoupled EKF update.
"""
from . import bpts, classic, continuous, core, elman, lstm, narx, rtrl, spiking, truncation
from .core import GradingError

__all__ = ["GradingError", "bpts", "classic", "continuous", "core", "elman", "lstm", "narx", "rtrl", "spiking", "truncation"]
