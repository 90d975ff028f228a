"""Exact weight exchange with torch, so the hand-written gradients can be checked against autograd.

``to_torch`` builds a one-layer, time-major ``torch.nn.RNN``, ``torch.nn.LSTM`` or ``torch.nn.GRU`` holding
a copy of a cell's parameters; ``from_torch`` reads one back; ``rnn_autograd_gradients`` runs the torch
module and its autograd on the loss ``sum(hs * dhs)`` that ``companion.bptt.backward`` differentiates.
torch is imported here only, so ``import companion`` works without it.

torch stacks the gates of a layer in one matrix (LSTM ``[i | f | g | o]``, GRU ``[r | z | n]``) and keeps
two bias vectors, ``bias_ih_l0`` and ``bias_hh_l0``. Where the two biases only ever appear as a sum
(Elman, every LSTM gate, the GRU's r and z gates), the companion keeps one bias: ``to_torch`` puts it in
``bias_ih_l0`` and zero in ``bias_hh_l0``, ``from_torch`` returns the sum. The GRU's candidate n needs both,
because torch multiplies ``W_hn h + b_hn`` by the reset gate: they are ``b_xn`` and ``b_hn``.

================  ==================  =====================================  ===============================
cell              torch module        ``weight_ih_l0`` / ``weight_hh_l0``    ``bias_ih_l0`` / ``bias_hh_l0``
================  ==================  =====================================  ===============================
``Elman``         ``torch.nn.RNN``    ``W_xh`` / ``W_hh``                    ``b_h`` / 0
``LSTM``          ``torch.nn.LSTM``   ``W_x[ifgo]`` / ``W_h[ifgo]`` stacked  ``b_[ifgo]`` / 0
``GRU("torch")``  ``torch.nn.GRU``    ``W_x[rzn]`` / ``W_h[rzn]`` stacked    ``b_r, b_z, b_xn`` / 0, 0, ``b_hn``
================  ==================  =====================================  ===============================

The Cho variant of the GRU and the Jordan network have no torch module.
"""
from __future__ import annotations

import numpy as np

from .cells import GRU, LSTM, Cell, Elman
from .types import Array, Params, State
from .validation import as_float_array, check_shape

_GATES = {Elman: ("h",), LSTM: ("i", "f", "g", "o"), GRU: ("r", "z", "n")}
_TORCH_NAMES = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")   # one layer's arrays, in order


def _stack(params: Params, keys: list[str]) -> Array:
    """``params[keys[0]]``, ``params[keys[1]]``, ... stacked along axis 0, as torch stacks its gates."""
    return np.concatenate([params[key] for key in keys], axis=0)


def _split(stacked: Array, keys: list[str]) -> Params:
    """Cut ``stacked`` along axis 0 into ``len(keys)`` equal blocks, keyed by ``keys``."""
    return dict(zip(keys, np.split(stacked, len(keys), axis=0)))


def _torch():
    try:
        import torch
    except ImportError as error:  # pragma: no cover - torch is in requirements.txt
        raise ImportError("companion.torch_ref needs torch: pip install torch==2.13.0") from error
    return torch


def _module_class(cell: object):
    """The torch module class of ``cell``, or a ``ValueError`` for a cell torch does not have."""
    torch = _torch()
    if isinstance(cell, Elman):
        if cell.nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"torch.nn.RNN supports nonlinearity 'tanh' or 'relu', the cell has {cell.nonlinearity!r}")
        return torch.nn.RNN
    if isinstance(cell, LSTM):
        return torch.nn.LSTM
    if isinstance(cell, GRU):
        if cell.variant != "torch":
            raise ValueError("cell must be GRU(..., variant='torch'): torch.nn.GRU resets after the recurrent "
                             "matrix product, the Cho variant before it; copied weights do not make them agree")
        return torch.nn.GRU
    raise ValueError(f"cell must be a companion.cells.Elman, LSTM or GRU (torch has no {type(cell).__name__})")


def _torch_arrays(cell: Cell, params: Params) -> dict[str, Array]:
    """The four torch parameter arrays (float64 numpy) that hold ``params``."""
    if isinstance(cell, Elman):
        W_ih, W_hh, b_ih = params["W_xh"], params["W_hh"], params["b_h"]
        b_hh = np.zeros_like(b_ih)
    else:
        gates = _GATES[type(cell)]
        W_ih = _stack(params, [f"W_x{q}" for q in gates])
        W_hh = _stack(params, [f"W_h{q}" for q in gates])
        if isinstance(cell, LSTM):
            b_ih = _stack(params, [f"b_{q}" for q in gates])
            b_hh = np.zeros_like(b_ih)
        else:
            zeros = np.zeros_like(params["b_hn"])
            b_ih = np.concatenate([params["b_r"], params["b_z"], params["b_xn"]])
            b_hh = np.concatenate([zeros, zeros, params["b_hn"]])
    return {"weight_ih_l0": W_ih, "weight_hh_l0": W_hh, "bias_ih_l0": b_ih, "bias_hh_l0": b_hh}


def _companion_params(cell: Cell, arrays: dict[str, Array], *, gradients: bool) -> Params:
    """Companion parameters from the four torch arrays (or their gradients).

    For parameters, a bias that torch splits in two is the sum of both halves; for gradients, the
    gradient of that one bias equals the gradient of either half, so ``bias_ih_l0``'s is taken.
    """
    W_ih, W_hh, b_ih, b_hh = (arrays[name] for name in _TORCH_NAMES)
    if isinstance(cell, Elman):
        return {"W_xh": W_ih, "W_hh": W_hh, "b_h": b_ih if gradients else b_ih + b_hh}
    gates = _GATES[type(cell)]
    params = {**_split(W_ih, [f"W_x{q}" for q in gates]), **_split(W_hh, [f"W_h{q}" for q in gates])}
    if isinstance(cell, LSTM):
        params.update(_split(b_ih if gradients else b_ih + b_hh, [f"b_{q}" for q in gates]))
    else:
        bias_ih, bias_hh = _split(b_ih, list(gates)), _split(b_hh, list(gates))
        for q in ("r", "z"):
            params[f"b_{q}"] = bias_ih[q] if gradients else bias_ih[q] + bias_hh[q]
        params.update({"b_xn": bias_ih["n"], "b_hn": bias_hh["n"]})
    return {key: params[key] for key in cell.param_shapes()}


def to_torch(cell: Cell, params: Params, *, dtype=None):
    """A one-layer, time-major torch module holding a copy of ``params``.

    Parameters
    ----------
    cell : Elman, LSTM or GRU (variant "torch")
        The cell whose parameters these are.
    params : dict
        The cell's parameters (``cell.param_shapes()``).
    dtype : torch.dtype, optional, keyword-only
        Defaults to ``torch.float64``, in which the comparison with the companion is exact to rounding.

    Returns
    -------
    torch.nn.RNN, torch.nn.LSTM or torch.nn.GRU
    """
    torch = _torch()
    module_class = _module_class(cell)
    params = cell.check_params(params)
    dtype = torch.float64 if dtype is None else dtype
    options = {"nonlinearity": cell.nonlinearity} if isinstance(cell, Elman) else {}
    module = module_class(cell.n_in, cell.n_hidden, dtype=dtype, **options)
    with torch.no_grad():
        for name, array in _torch_arrays(cell, params).items():
            getattr(module, name).copy_(torch.tensor(array))
    return module


def from_torch(cell: Cell, module) -> Params:
    """The companion parameters (float64 copies) of a one-layer, unidirectional torch module."""
    torch = _torch()
    module_class = _module_class(cell)
    if type(module) is not module_class:
        raise ValueError(f"module must be a {module_class.__module__}.{module_class.__name__}, got {type(module).__name__}")
    if (module.input_size, module.hidden_size, module.num_layers) != (cell.n_in, cell.n_hidden, 1):
        raise ValueError(
            f"module must have one layer, input_size={cell.n_in} and hidden_size={cell.n_hidden}, got "
            f"num_layers={module.num_layers}, input_size={module.input_size}, hidden_size={module.hidden_size}"
        )
    if module.bidirectional or not module.bias or getattr(module, "proj_size", 0):
        raise ValueError("module must be unidirectional, have biases and no projection")
    if isinstance(cell, Elman) and module.nonlinearity != cell.nonlinearity:
        raise ValueError(f"module's nonlinearity {module.nonlinearity!r} differs from the cell's {cell.nonlinearity!r}")
    arrays = {name: getattr(module, name).detach().to(torch.float64).cpu().numpy().copy()
              for name in _TORCH_NAMES}
    return _companion_params(cell, arrays, gradients=False)


def grads_from_torch(cell: Cell, module) -> Params:
    """The gradients that autograd accumulated in ``module``'s ``.grad``, as a companion gradient dict.

    Parameters
    ----------
    cell : Elman, LSTM or GRU (variant "torch")
        The cell whose parameters the module holds (``to_torch``).
    module : torch.nn.RNN, torch.nn.LSTM or torch.nn.GRU
        One layer, after one or more ``backward()`` calls.

    Returns
    -------
    dict
        dL/dtheta keyed like ``cell.param_shapes()``, float64 copies.
    """
    missing = [name for name in _TORCH_NAMES if getattr(module, name).grad is None]
    if missing:
        raise ValueError(f"module has no gradient for {missing}: call backward() on a loss of its outputs first")
    arrays = {name: getattr(module, name).grad.detach().numpy().astype(np.float64) for name in _TORCH_NAMES}
    return _companion_params(cell, arrays, gradients=True)


def rnn_autograd_gradients(
    cell: Cell, params: Params, xs: Array, dhs: Array, state0: State | None = None
) -> tuple[Array, Params, Array, State]:
    """Reference outputs and gradients from the torch module and autograd, in float64.

    The loss is ``sum(hs * dhs)``, whose gradient with respect to ``hs`` is ``dhs``: the quantity
    ``companion.bptt.backward`` takes, so ``rnn_autograd_gradients(cell, params, xs, dhs, state0)`` is
    compared with ``bptt.backward(cell, params, bptt.forward(cell, params, xs, state0)[1], dhs)``.

    Parameters
    ----------
    cell : Elman, LSTM or GRU (variant "torch")
    params : dict
        The cell's parameters.
    xs : array, shape (T, B, n_in)
    dhs : array, shape (T, B, H)
    state0 : array (B, H), or the pair ``(h0, c0)`` for the LSTM, optional
        Zeros if omitted, as in ``bptt.forward``.

    Returns
    -------
    hs : array, shape (T, B, H)
    grads : dict
        In the companion's keys.
    dxs : array, shape (T, B, n_in)
    dstate0 : array (B, H), or the pair ``(dh0, dc0)`` for the LSTM
    """
    torch = _torch()
    module = to_torch(cell, params)
    xs = as_float_array(xs, "xs")
    check_shape(xs, (None, None, cell.n_in), "xs", "(T, B, n_in)")
    T, B = xs.shape[:2]
    dhs = as_float_array(dhs, "dhs")
    check_shape(dhs, (T, B, cell.output_width), "dhs", "(T, B, n_hidden)")
    state0 = cell.initial_state(B) if state0 is None else cell.check_state(state0, B, "state0")
    x = torch.tensor(xs.astype(np.float64), requires_grad=True)
    parts = state0 if isinstance(cell, LSTM) else (state0,)
    initial = [torch.tensor(np.asarray(part, dtype=np.float64)[None], requires_grad=True) for part in parts]
    hs, _ = module(x, tuple(initial) if isinstance(cell, LSTM) else initial[0])
    (hs * torch.tensor(dhs.astype(np.float64))).sum().backward()
    grads = grads_from_torch(cell, module)
    dstate = [part.grad.numpy()[0].copy() for part in initial]
    return hs.detach().numpy(), grads, x.grad.numpy().copy(), tuple(dstate) if isinstance(cell, LSTM) else dstate[0]
