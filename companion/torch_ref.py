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

For the chapter "Continuous-time BPTT", ``CTRNNField`` is the vector field of a ``companion.cells.CTRNN``
as a torch module, and ``torchdiffeq_gradients`` the loss and gradients that ``torchdiffeq.odeint``
(back-propagation through the solver) or ``torchdiffeq.odeint_adjoint`` (the adjoint method) compute for
the measurement loss of ``companion.continuous``. torchdiffeq (``pip install torchdiffeq==0.2.5``) is
imported inside ``torchdiffeq_gradients`` only; the companion itself does not depend on it.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from . import bptt, continuous
from .cells import CTRNN, GRU, LSTM, Cell, Elman
from .types import Array, Params, State
from .validation import check_params

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
    xs = bptt.check_inputs(cell, xs)
    T, B = xs.shape[:2]
    dhs = bptt.check_dhs(cell, dhs, T, B)
    state0 = cell.initial_state(B) if state0 is None else cell.check_state(state0, B, "state0")
    x = torch.tensor(xs.astype(np.float64), requires_grad=True)
    parts = state0 if isinstance(cell, LSTM) else (state0,)
    initial = [torch.tensor(np.asarray(part, dtype=np.float64)[None], requires_grad=True) for part in parts]
    hs, _ = module(x, tuple(initial) if isinstance(cell, LSTM) else initial[0])
    (hs * torch.tensor(dhs.astype(np.float64))).sum().backward()
    grads = grads_from_torch(cell, module)
    dstate = [part.grad.numpy()[0].copy() for part in initial]
    return hs.detach().numpy(), grads, x.grad.numpy().copy(), tuple(dstate) if isinstance(cell, LSTM) else dstate[0]


# ----- the continuous-time network and torchdiffeq -----------------------------------------------------------
@functools.cache
def _ctrnn_field_class():
    """``CTRNNField``, built on first use so that importing this module does not import torch."""
    torch = _torch()
    phis = {"tanh": torch.tanh, "relu": torch.relu, "linear": lambda a: a}

    class CTRNNField(torch.nn.Module):
        """The vector field of a ``companion.cells.CTRNN`` as a torch module, for ``torchdiffeq``.

        ``forward(t, h)`` returns ``dh/dt = (-h + W_hh phi(h) + W_xh x(t) + b) / tau`` for ``h`` ``(B, H)``:
        in rows, ``(-h + phi(h) W_hh^T + x(t) W_xh^T + b) / tau``, ``(B, H)`` (chapter "Continuous-time BPTT").

        Parameters
        ----------
        network : CTRNN
            Sizes and phi.
        params : dict of arrays
            ``W_hh`` (H, H), ``W_xh`` (H, n_in), ``b_h`` (H,), ``tau`` (H,) > 0; copied into float64
            ``torch.nn.Parameter``s of the same names.
        inputs : callable, optional
            ``inputs(t) -> (B, n_in)``, the numpy function of ``companion.continuous``; ``None`` is no input.

        Attributes
        ----------
        evaluations : int
            How many times ``forward`` ran: the function evaluations of the solvers that call it.
        """

        def __init__(self, network: CTRNN, params: Params, inputs: Callable[[float], Array] | None = None):
            super().__init__()
            if not isinstance(network, CTRNN):
                raise ValueError(f"network must be a companion.cells.CTRNN, got {type(network).__name__}")
            if inputs is not None and not callable(inputs):
                raise ValueError(f"inputs must be None (no input) or a function of t returning (B, n_in), "
                                 f"got {inputs!r}")
            params = check_params(params, network.param_shapes())
            network.check_time_constants(params)
            self.network, self.inputs, self.evaluations = network, inputs, 0
            self._phi = phis[network.nonlinearity]
            for key, value in params.items():
                setattr(self, key, torch.nn.Parameter(torch.tensor(value, dtype=torch.float64)))

        def forward(self, t, h):
            self.evaluations += 1
            if self.inputs is None:
                x = h.new_zeros(h.shape[0], self.network.n_in)                          # (B, n_in)
            else:
                x = torch.as_tensor(self.inputs(float(torch.as_tensor(t).detach())), dtype=h.dtype)  # (B, n_in)
            u = -h + self._phi(h) @ self.W_hh.T + x @ self.W_xh.T + self.b_h           # (B, H)
            return u / self.tau                                                        # dh/dt, (B, H)

    CTRNNField.__module__ = __name__
    return CTRNNField


def __getattr__(name: str):
    if name == "CTRNNField":      # module attribute made on first access (PEP 562): torch loads only then
        return _ctrnn_field_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class TorchdiffeqResult(NamedTuple):
    """The loss, ``grads`` dL/dtheta keyed like the parameters, ``dh0`` dL/dh(0) ``(B, H)``, all numpy
    float64, and ``evaluations``: the calls of the vector field, forward and (adjoint) backward pass."""

    loss: float
    grads: Params
    dh0: Array
    evaluations: int


def torchdiffeq_gradients(network: CTRNN, params: Params, h0: Array, t_end: float, dt: float,
                          loss: continuous.Loss, *, inputs: Callable[[float], Array] | None = None,
                          adjoint: bool = False) -> TorchdiffeqResult:
    r"""The measurement loss of ``companion.continuous`` and its gradients, by ``torchdiffeq`` in float64.

    .. math:: L = \tfrac12 \sum_k \lVert h(t_k)_{:, :n_{out}} - y_k \rVert^2

    ``torchdiffeq.odeint`` (``adjoint=False``: back-propagation through the solver's steps) or
    ``torchdiffeq.odeint_adjoint`` (``adjoint=True``: the adjoint equation integrated backward between
    consecutive output times, the state reset to the forward pass's value at each) with
    ``method="rk4"`` (Kutta's 3/8 rule, the companion's ``"rk4-38"``) and ``options=dict(step_size=dt)``,
    at the output times ``[0, t_1, ..., t_K, t_end]``. torchdiffeq's fixed grid is ``0, dt, 2 dt, ...`` with
    the last point moved to ``t_end``; it reads a measurement time between grid points by linear
    interpolation, where ``companion.continuous`` adds the time to its grid, so the two agree to rounding
    only when every measurement time is a multiple of ``dt`` (chapter "Continuous-time BPTT").

    Parameters
    ----------
    network, params, h0, t_end, dt, inputs
        As ``companion.continuous.adjoint_gradients``: a ``CTRNN``, its parameters, ``h0`` (B, H), the
        time span [0, t_end], the step, ``inputs(t) -> (B, n_in)`` or ``None``.
    loss : companion.continuous.Loss
        Measurements only (``times`` (K,), ``targets`` (K, B, n_out)): a running loss raises
        ``ValueError``, torchdiffeq has no integral loss.
    adjoint : bool, keyword-only
        ``odeint_adjoint`` instead of ``odeint``.

    Returns
    -------
    TorchdiffeqResult
    """
    if isinstance(loss, continuous.Loss) and loss.running is not None:
        raise ValueError("loss.running must be None: torchdiffeq returns the state at given times and has no "
                         "running (integral) loss")
    problem = continuous.check_problem(network, params, h0, t_end, dt, loss, inputs, "rk4-38")  # every check
    torch = _torch()
    try:
        import torchdiffeq
    except ImportError as error:  # pragma: no cover - torchdiffeq is in requirements.txt
        raise ImportError("companion.torch_ref.torchdiffeq_gradients needs torchdiffeq: "
                          "pip install torchdiffeq==0.2.5") from error
    measured = sorted(problem.measured)                                    # grid indices of t_1 < ... < t_K
    times = problem.grid[measured]                                         # (K,)
    outputs = np.union1d([0.0, problem.grid[-1]], times)                   # [0, t_1, ..., t_K, t_end], deduplicated
    field = _ctrnn_field_class()(network, problem.params, problem.read_x)  # read_x checks every x(t)
    h = torch.tensor(problem.h0, dtype=torch.float64, requires_grad=True)
    solver = torchdiffeq.odeint_adjoint if adjoint else torchdiffeq.odeint
    hs = solver(field, h, torch.from_numpy(outputs), method="rk4", options=dict(step_size=float(dt)))  # (len, B, H)
    h_out = hs[torch.from_numpy(np.searchsorted(outputs, times)), :, :problem.n_out]                   # (K, B, n_out)
    targets = torch.tensor(np.array([problem.measured[n] for n in measured], dtype=np.float64)
                           .reshape(h_out.shape))                                                      # (K, B, n_out)
    value = 0.5 * ((h_out - targets) ** 2).sum()
    value.backward()
    grads = {key: (np.zeros_like(problem.params[key], dtype=np.float64) if getattr(field, key).grad is None
                   else getattr(field, key).grad.numpy().copy()) for key in network.param_shapes()}
    dh0 = np.zeros(h.shape) if h.grad is None else h.grad.numpy().copy()
    return TorchdiffeqResult(value.item(), grads, dh0, field.evaluations)
