"""Exact weight exchange with torch, so the hand-written gradients can be checked against autograd.

``to_torch`` builds a ``torch.nn`` module with a copy of the companion's parameters; ``from_torch`` reads
one back. ``rnn_autograd_gradients`` runs the Elman reference computation through torch autograd.
torch is imported here only, so ``import companion`` works without it.

Correspondence for the Elman cell and ``torch.nn.RNN`` (one layer, time-major):

============  ======================  ==========================================
companion     torch.nn.RNN            note
============  ======================  ==========================================
``W_xh``      ``weight_ih_l0``        (H, n_in), the same matrix
``W_hh``      ``weight_hh_l0``        (H, H), the same matrix
``b_h``       ``bias_ih_l0``          torch keeps a second bias ``bias_hh_l0``;
                                      ``to_torch`` sets it to zero and
                                      ``from_torch`` returns the sum of the two
============  ======================  ==========================================
"""
from __future__ import annotations

import numpy as np

from .cells import Cell, Elman
from .types import Params


def _torch():
    try:
        import torch
    except ImportError as error:  # pragma: no cover - torch is in requirements.txt
        raise ImportError("companion.torch_ref needs torch: pip install torch==2.13.0") from error
    return torch


def _check_elman(cell: object) -> Elman:
    if not isinstance(cell, Elman):
        raise ValueError(f"cell must be a companion.cells.Elman (torch.nn.RNN's model), got {type(cell).__name__}")
    if cell.nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"torch.nn.RNN supports nonlinearity 'tanh' or 'relu', the cell has {cell.nonlinearity!r}")
    return cell


def to_torch(cell: Cell, params: Params, *, dtype=None):
    """A ``torch.nn.RNN`` (one layer, time-major) holding a copy of ``params``.

    Parameters
    ----------
    cell : Elman
        The cell whose parameters these are.
    params : dict
        ``W_xh`` (H, n_in), ``W_hh`` (H, H), ``b_h`` (H,).
    dtype : torch.dtype, optional, keyword-only
        Defaults to ``torch.float64``, in which the comparison with the companion is exact to rounding.

    Returns
    -------
    torch.nn.RNN
    """
    torch = _torch()
    cell = _check_elman(cell)
    params = cell.check_params(params)
    dtype = torch.float64 if dtype is None else dtype
    module = torch.nn.RNN(cell.n_in, cell.n_hidden, nonlinearity=cell.nonlinearity, dtype=dtype)
    with torch.no_grad():
        module.weight_ih_l0.copy_(torch.tensor(params["W_xh"]))
        module.weight_hh_l0.copy_(torch.tensor(params["W_hh"]))
        module.bias_ih_l0.copy_(torch.tensor(params["b_h"]))
        module.bias_hh_l0.zero_()
    return module


def from_torch(cell: Cell, module) -> Params:
    """The companion parameters (float64 copies) of a one-layer, unidirectional ``torch.nn.RNN``."""
    torch = _torch()
    cell = _check_elman(cell)
    if not isinstance(module, torch.nn.RNN):
        raise ValueError(f"module must be a torch.nn.RNN, got {type(module).__name__}")
    if (module.input_size, module.hidden_size, module.num_layers) != (cell.n_in, cell.n_hidden, 1):
        raise ValueError(
            f"module must be a one-layer torch.nn.RNN({cell.n_in}, {cell.n_hidden}), got "
            f"torch.nn.RNN({module.input_size}, {module.hidden_size}, num_layers={module.num_layers})"
        )
    if module.bidirectional or module.nonlinearity != cell.nonlinearity or not module.bias:
        raise ValueError("module must be unidirectional, have biases, and use the cell's nonlinearity")

    def numpy(tensor) -> np.ndarray:
        return tensor.detach().to(torch.float64).cpu().numpy().copy()

    return {
        "W_xh": numpy(module.weight_ih_l0),
        "W_hh": numpy(module.weight_hh_l0),
        "b_h": numpy(module.bias_ih_l0) + numpy(module.bias_hh_l0),
    }


def rnn_autograd_gradients(cell: Cell, params: Params, xs: np.ndarray, state0: np.ndarray, dhs: np.ndarray):
    """Reference gradients from ``torch.nn.RNN`` and autograd, in float64.

    The loss is ``sum(hs * dhs)``, whose gradient with respect to ``hs`` is ``dhs``: the same quantity
    ``companion.bptt.backward`` takes. Returns ``(hs, grads, dxs, dstate0)`` as numpy arrays, with
    ``grads`` in the companion's keys (``b_h`` from ``bias_ih_l0``, equal to that of ``bias_hh_l0``).

    Shapes: ``xs`` (T, B, n_in), ``state0`` (B, H), ``dhs`` (T, B, H).
    """
    torch = _torch()
    module = to_torch(cell, params)
    x = torch.tensor(np.asarray(xs, dtype=np.float64), requires_grad=True)
    h0 = torch.tensor(np.asarray(state0, dtype=np.float64)[None], requires_grad=True)
    hs, _ = module(x, h0)
    (hs * torch.tensor(np.asarray(dhs, dtype=np.float64))).sum().backward()
    grads = {
        "W_xh": module.weight_ih_l0.grad.numpy().copy(),
        "W_hh": module.weight_hh_l0.grad.numpy().copy(),
        "b_h": module.bias_ih_l0.grad.numpy().copy(),
    }
    return hs.detach().numpy(), grads, x.grad.numpy().copy(), h0.grad.numpy()[0].copy()
