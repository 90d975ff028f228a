"""The companion package of the course on Backpropagation Through Time.

``import companion`` gives every module; none of them imports torch or matplotlib until a function that
needs it is called, so both stay optional:

* ``cells``: the recurrent cells (one step forward, backward and in forward mode each, their math only);
* ``bptt``: full BPTT over any cell, and the adjoint of the state at every step;
* ``fused``: the faster sequence paths of the exact ``Elman``, ``LSTM`` and ``GRU`` classes;
* ``gradcheck``: finite differences and relative errors;
* ``torch_ref``: exact weight exchange with torch's modules, torch-autograd reference gradients, and the
  continuous-time network as a torch module for torchdiffeq;
* ``readout``, ``losses``, ``model``: a linear readout, the losses, and a cell with both;
* ``optim``, ``train``, ``tasks``: optimizers (SGD, momentum, Adam, iRprop-, Quickprop) and clipping, the
  training loop, the course's data;
* ``conjugate_gradient``: nonlinear conjugate gradients (Polak-Ribière+, restarts) with strong-Wolfe or
  Armijo line searches, over a parameter dict;
* ``ekf``: training a network's parameters with the extended Kalman filter (global, decoupled or
  node-decoupled, Joseph form), the measurement Jacobian by RTRL or truncated BPTT;
* ``grammars``: formal languages for next-symbol prediction (the embedded Reber grammar, a^n b^n,
  a^n b^n c^n): samplers, recognizers, legal-next targets, padded encodings, exact and Monte-Carlo entropy;
* ``grammar_training``: the classic trainers (SNNS schedules, Quickprop, iRprop-, line searches, EKF)
  behind one function with one budget of presentations, on a grammar task;
* ``truncation``: truncated BPTT(k2; k1), online, randomized (unbiased) and adaptive truncation;
* ``checkpointing``: memory-efficient BPTT: the optimal recomputation policies within a memory budget
  (hidden states, internal states, mixed; the sqrt(T) scheme) and a runner with full BPTT's gradients;
* ``continuous``: continuous-time networks solved by Runge-Kutta, and their gradients through the solver
  or by the adjoint equation;
* ``rtrl``: real-time recurrent learning: BPTT's gradient carried forward in time through the cells'
  forward mode, and online training with the carried sensitivities;
* ``eprop``: e-prop for the Elman cell: eligibility traces times learning signals (symmetric or random
  feedback), exact with the exact signals, and online training with it;
* ``uoro``: unbiased online recurrent optimization for any cell: a random rank-one sensitivity carried by
  one tangent and one backward step per step, and online training with it;
* ``structure``: recursive networks over trees, and backpropagation through structure (BPTS), level by
  level over a batch of trees;
* ``plots``, ``diagrams``: the figures' house style, and the drawn LSTM and GRU cells;
* ``grading``: the assignments' graders, which check a student's functions against the companion on
  random problems and say where an answer goes wrong.
"""
from . import (
    bptt,
    cells,
    checkpointing,
    conjugate_gradient,
    continuous,
    diagrams,
    ekf,
    eprop,
    fused,
    gradcheck,
    grading,
    grammar_training,
    grammars,
    losses,
    model,
    optim,
    plots,
    readout,
    rtrl,
    structure,
    tasks,
    torch_ref,
    train,
    truncation,
    uoro,
)

__all__ = [
    "bptt", "cells", "checkpointing", "conjugate_gradient", "continuous", "diagrams", "ekf", "eprop", "fused", "gradcheck", "grading", "grammar_training", "grammars", "losses", "model", "optim", "plots", "readout",
    "rtrl", "structure", "tasks", "torch_ref", "train", "truncation", "uoro",
]
__version__ = "0.1.0"
