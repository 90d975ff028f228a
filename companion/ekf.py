"""Training a recurrent network's parameters with the extended Kalman filter (EKF).

The parameters theta are the state of a filter (Singhal & Wu 1988 for feed-forward networks; Williams 1992
and Puskorius & Feldkamp 1994 for recurrent ones): they follow a random walk, and every step's network
outputs are noisy measurements of a function of them,

    theta_t = theta_{t-1} + q_t,   q_t ~ N(0, Q),          d_t = z_t(theta_t) + r_t,   r_t ~ N(0, R),

where d_t are the targets and z_t the outputs at step t (after the readout and an optional output
nonlinearity). The EKF linearizes z_t around the current estimate with the measurement Jacobian
H_t = dz_t/dtheta and runs the Kalman filter's two steps:

    P^- = P + Q,                 S = H P^- H^T + R,       K = P^- H^T S^{-1},
    theta <- theta + K (d_t - z_t),   P <- (I - K H) P^- (I - K H)^T + K R K^T      (the Joseph form).

The Joseph form is a sum of two positive semidefinite terms for any gain K, so rounding in K cannot make
P indefinite, as the shorter P^- - K H P^- can (``tests/test_ekf.py`` shows a case); P is symmetrized
after every update. R = I / eta gives Puskorius & Feldkamp's learning rate eta; Q > 0 keeps P from
collapsing, so that the filter keeps learning.

H_t comes from either gradient method of the course:

* ``jacobian="rtrl"``: the sensitivities d h_t / d theta carried forward (``companion.rtrl``), as in
  Williams's EKF-RTRL; after an update they mix derivatives taken at older parameters, as in
  ``rtrl.online_rtrl``;
* ``jacobian="bptt"``: truncated BPTT, as in Puskorius & Feldkamp's EKF with BPTT(k2): the last ``k2``
  steps are rerun with the current parameters from the state stored before them, and one backward pass
  per output component gives one row of H_t.

The global EKF keeps one covariance P over all n parameters: O(n^2) memory and O(n^2 m) time per step for
m measurements. The decoupled EKF (``groups``) keeps one block P_g per group of parameters (per parameter
array, or any partition) and drops the covariances between groups; the groups share S, so each block is
the global update of a block-diagonal P restricted to that block.

The filter works on a flat vector theta: ``layout_of``, ``flatten`` and ``unflatten`` map a parameter dict
(for example ``companion.model.init_model``'s: the cell's keys, then ``W_hy`` and ``b_y``) to it and
back, in the dict's key order. ``ExtendedKalmanFilter.update`` updates the dict in place, like an
optimizer's ``step``.
"""
from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

from . import bptt
from .cells.base import Cell, check_cell
from .losses import sigmoid
from .model import split_params
from .rtrl import unit_directions
from .train import History, check_stream
from .types import Array, Params, State
from .validation import as_float_array, check_positive_int, check_shape, check_step_mask

OUTPUTS = ("linear", "sigmoid", "softmax")
"""The output nonlinearities z = f(y) applied to the readout's y_t before it is compared with the targets."""

JACOBIANS = ("rtrl", "bptt")
"""How the measurement Jacobian is computed."""

READOUT_KEYS = ("W_hy", "b_y")
"""The keys of the readout's parameters (``companion.model.init_model``)."""


class Layout(NamedTuple):
    """Where every array of a parameter dict lies in the flat vector theta.

    Attributes
    ----------
    keys : tuple of str
        The dict's keys, in the order of theta.
    shapes : tuple of tuple of int
        The shape of each array.
    """

    keys: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    @property
    def size(self) -> int:
        """n, the length of theta."""
        return sum(math.prod(shape) for shape in self.shapes)

    def slices(self) -> dict[str, slice]:
        """``[key]``: the slice of theta that holds ``params[key]`` (flattened in C order)."""
        slices, start = {}, 0
        for key, shape in zip(self.keys, self.shapes):
            slices[key] = slice(start, start + math.prod(shape))
            start += math.prod(shape)
        return slices


def layout_of(params: Params) -> Layout:
    """The layout of a parameter dict: its keys in their order, and their shapes.

    Parameters
    ----------
    params : dict of arrays
        Any shapes, at least one array.

    Returns
    -------
    Layout
    """
    if not isinstance(params, Mapping) or not params:
        raise ValueError(f"params must be a non-empty dict of arrays, got {type(params).__name__}")
    return Layout(tuple(params), tuple(np.shape(value) for value in params.values()))


def flatten(params: Params, layout: Layout) -> Array:
    """The arrays of ``params`` as one vector theta, shape ``(n,)``, in the order of ``layout``."""
    params = _check_layout(params, layout)
    return np.concatenate([params[key].ravel() for key in layout.keys])


def unflatten(theta: Array, layout: Layout) -> Params:
    """A vector theta ``(n,)`` as a dict of ``layout``'s keys and shapes (new arrays)."""
    theta = as_float_array(theta, "theta")
    check_shape(theta, (layout.size,), "theta", "(n,)")
    return {key: theta[part].reshape(shape).copy()
            for (key, part), shape in zip(layout.slices().items(), layout.shapes)}


class ExtendedKalmanFilter:
    """The EKF over a parameter dict: the dict is the mean, ``covariances`` the (block) covariance.

    Parameters
    ----------
    params : dict of arrays
        The parameters to train (their keys and shapes fix the layout; the values are not kept).
    p0 : float or array, keyword-only
        The initial covariance P_0: a positive number (times the identity), a vector ``(n,)`` of positive
        variances, or a symmetric positive definite matrix ``(n, n)`` (block diagonal over ``groups``).
    q : float or array, keyword-only
        The process noise Q, added to P before every update, in the same forms; positive semidefinite
        (0: the parameters are constants, and the filter is recursive least squares).
    r : float or array, keyword-only
        The measurement noise R: a positive number, a vector ``(m,)`` of positive variances, or a symmetric
        positive definite ``(m, m)`` matrix, m the number of measurements per update.
    groups : None, "array", "unit" or sequence of sequences of int, keyword-only
        ``None``: the global EKF (one block). ``"array"``: the decoupled EKF with one block per parameter
        array. ``"unit"``: the node-decoupled EKF (Puskorius & Feldkamp), one block per unit: the
        entries of row i of every array of the cell (unit i's incoming weights and bias) form one
        block, and row o of the readout's ``W_hy`` and ``b_y`` another (``unit_groups``). Otherwise the
        blocks' flat indices into theta, a partition of ``range(n)``.

    Attributes
    ----------
    layout : Layout
    groups : list of array of int
        Each block's indices into theta, shape ``(n_g,)``.
    covariances : list of array
        P_g, shape ``(n_g, n_g)`` per block: the covariance after the latest update.
    """

    def __init__(self, params: Params, *, p0: float | Array = 1.0, q: float | Array = 0.0,
                 r: float | Array = 1.0, groups: str | Sequence[Sequence[int]] | None = None):
        self.layout = layout_of(params)
        n = self.layout.size
        self.groups = _check_groups(groups, self.layout)
        self.covariances = _blocks(_check_covariance(p0, n, "p0", definite=True), self.groups, "p0")
        self.process_noise = _blocks(_check_covariance(q, n, "q", definite=False), self.groups, "q")
        self.measurement_noise = _check_covariance(r, None, "r", definite=True)

    def set_noise(self, *, q: float | Array | None = None, r: float | Array | None = None) -> None:
        """Change the process noise Q or the measurement noise R from the next update on, to anneal them
        (R = I / eta read as a learning rate eta: a large R early, a smaller one later); the same forms
        and checks as the constructor's. An argument left ``None`` keeps its setting."""
        if q is not None:
            self.process_noise = _blocks(_check_covariance(q, self.layout.size, "q", definite=False),
                                          self.groups, "q")
        if r is not None:
            self.measurement_noise = _check_covariance(r, None, "r", definite=True)

    @property
    def covariance(self) -> Array:
        """The whole covariance P ``(n, n)``: the blocks in place, zeros between groups."""
        n = self.layout.size
        full = np.zeros((n, n))
        for index, block in zip(self.groups, self.covariances):
            full[np.ix_(index, index)] = block
        return full

    def update(self, params: Params, predictions: Array, targets: Array, jacobian: Array) -> Array:
        """One predict-and-update step of the filter; ``params`` is updated in place.

        Parameters
        ----------
        params : dict of arrays
            The current mean, with the filter's layout; float arrays, updated in place.
        predictions : array, shape (m,)
            z(theta), the measurement function at the current mean.
        targets : array, shape (m,)
            d, the measurements.
        jacobian : array, shape (m, n)
            H = dz/dtheta at the current mean, columns in the layout's order.

        Returns
        -------
        array, shape (m,)
            The innovation d - z(theta) before the update.
        """
        params = _check_layout(params, self.layout, in_place=True)
        predictions = as_float_array(predictions, "predictions")
        check_shape(predictions, (None,), "predictions", "(m,)")
        m = predictions.shape[0]
        targets = as_float_array(targets, "targets")
        check_shape(targets, (m,), "targets", "(m,) like predictions")
        jacobian = as_float_array(jacobian, "jacobian")
        check_shape(jacobian, (m, self.layout.size), "jacobian", "(m, n)")
        noise = _expand(self.measurement_noise, m, "r")
        innovation = targets - predictions
        theta = flatten(params, self.layout)
        self.covariances = [P + Q for P, Q in zip(self.covariances, self.process_noise)]   # P^- = P + Q
        steps, self.covariances = _decoupled_update(self.covariances, self.groups, jacobian, noise, innovation)
        for index, step in zip(self.groups, steps):
            theta[index] += step
        for key, part in self.layout.slices().items():
            params[key][...] = theta[part].reshape(params[key].shape)
        return innovation


def joseph_update(covariance: Array, gain: Array, jacobian: Array, noise: Array) -> Array:
    """The Joseph form of the covariance update, symmetrized: (I - K H) P (I - K H)^T + K R K^T.

    Parameters
    ----------
    covariance : array, shape (n, n)
        P before the measurement.
    gain : array, shape (n, m)
        K.
    jacobian : array, shape (m, n)
        H.
    noise : array, shape (m, m)
        R (for a block of the decoupled filter, R plus the other blocks' H_g P_g H_g^T).

    Returns
    -------
    array, shape (n, n)
        P after the measurement; positive semidefinite for any K.
    """
    reduced = np.eye(covariance.shape[0]) - gain @ jacobian                        # I - K H
    updated = reduced @ covariance @ reduced.T + gain @ noise @ gain.T
    return 0.5 * (updated + updated.T)


def _decoupled_update(covariances: list[Array], groups: list[Array], jacobian: Array, noise: Array,
                      innovation: Array) -> tuple[list[Array], list[Array]]:
    """The Kalman update of every block with a shared S: ``(steps of theta per block, new blocks)``.

    S = R + sum_g H_g P_g H_g^T, K_g = P_g H_g^T S^{-1}; block g sees the noise R + sum_{g' != g} H_g' P_g' H_g'^T.
    With one block this is the global EKF.
    """
    columns = [jacobian[:, index] for index in groups]                             # H_g, (m, n_g)
    projected = [H @ P for H, P in zip(columns, covariances)]                      # H_g P_g, (m, n_g)
    shares = [HP @ H.T for HP, H in zip(projected, columns)]                       # H_g P_g H_g^T, (m, m)
    total = sum(shares)
    innovation_covariance = noise + total                                           # S
    innovation_covariance = 0.5 * (innovation_covariance + innovation_covariance.T)
    steps, updated = [], []
    for P, H, HP, share in zip(covariances, columns, projected, shares):
        gain = np.linalg.solve(innovation_covariance, HP).T                        # K_g = P_g H_g^T S^{-1}
        steps.append(gain @ innovation)
        updated.append(joseph_update(P, gain, H, noise + (total - share)))
    return steps, updated


def output_jacobian(
    cell: Cell,
    params: Params,
    xs: Array,
    *,
    method: str = "rtrl",
    k2: int | None = None,
    readout: bool = True,
    output: str = "linear",
    state0: State | None = None,
) -> tuple[Array, Array]:
    """The outputs at the last step of ``xs`` and their Jacobian with respect to all parameters.

    Parameters
    ----------
    cell : Cell
        Any cell of ``companion.cells``.
    params : dict
        The cell's parameters and, with ``readout``, ``W_hy`` and ``b_y`` (``companion.model.init_model``).
    xs : array, shape (T, B, n_in)
        Inputs, time-major.
    method : {"rtrl", "bptt"}, keyword-only
        Sensitivities carried forward, or one backward pass per output component.
    k2 : int, optional, keyword-only
        With ``"bptt"``: back-propagate through the last ``k2`` steps only (the state before them held
        fixed); all T steps if omitted. Not used by ``"rtrl"``, which is exact.
    readout : bool, keyword-only
        As for ``companion.model.predict``.
    output : {"linear", "sigmoid", "softmax"}, keyword-only
        The output nonlinearity z = f(y_T).
    state0 : State, optional, keyword-only
        Initial state; zeros if omitted.

    Returns
    -------
    outputs : array, shape (B, k)
        z_T, k = n_out (or the cell's output width without a readout).
    jacobian : array, shape (B, k, n)
        dz_T[b, i] / dtheta_j, columns in the order of ``flatten(params, layout_of(params))``.
    """
    cell = check_cell(cell)
    xs = bptt.check_inputs(cell, xs)
    T = xs.shape[0]
    tracker = _tracker(cell, params, xs, readout, (method, "method"), T if k2 is None else k2, state0)
    cell_params, readout_params = _checked_split(cell, params, readout)
    for t in range(T):
        hidden = tracker.advance(cell_params, t)
    return _measurement(layout_of(params), cell_params, readout_params, hidden, tracker, _check_output(output))


def ekf_train(
    cell: Cell,
    params: Params,
    xs: Array,
    targets: Array,
    kalman: ExtendedKalmanFilter,
    *,
    jacobian: str = "rtrl",
    k2: int | None = None,
    readout: bool = True,
    output: str = "linear",
    state0: State | None = None,
    mask: Array | None = None,
) -> History:
    """Train on a stream with the EKF: one filter update after every step, its outputs the measurements.

    At step t the network advances with the current parameters, its outputs z_t of all B streams (the
    multi-stream EKF: one measurement vector of m = B k entries) and their Jacobian ``(m, n)`` are
    computed, and ``kalman.update`` moves the parameters and the covariance. With ``mask``, only the
    streams where ``mask[t]`` is true are measured at step t (strings of different lengths padded to one
    T, each stream one string from ``state0``: ``companion.grammars.GrammarBatch``); a step with none is
    skipped.

    Parameters
    ----------
    cell : Cell
        Any cell of ``companion.cells``.
    params : dict
        As for ``output_jacobian``; updated in place. Its layout must be ``kalman``'s.
    xs : array, shape (T, B, n_in)
        The stream, time-major.
    targets : array, shape (T, B, k)
        The measurements d_t (for ``"softmax"`` or ``"sigmoid"`` outputs, one-hot or multi-hot targets).
    kalman : ExtendedKalmanFilter
        Made for ``params``; its ``r`` must fit m = B k measurements.
    jacobian : {"rtrl", "bptt"}, keyword-only
        As ``method`` of ``output_jacobian``.
    k2 : int, keyword-only
        With ``"bptt"``, required: the truncation window (each step reruns and back-propagates k2 steps).
    readout, output, state0
        As for ``output_jacobian``.
    mask : bool array, shape (T, B), optional, keyword-only
        Which streams are measured at each step; all if omitted. With a mask, m changes from step to
        step, so ``kalman``'s ``r`` must be a number.

    Returns
    -------
    History
        Per update, before it: the mean squared error of the measured z_t against d_t, and the global
        norm of that error's gradient through the Jacobian, (2/m) ||H^T (z_t - d_t)||.
    """
    cell = check_cell(cell)
    if not isinstance(kalman, ExtendedKalmanFilter):
        raise ValueError(f"kalman must be an ExtendedKalmanFilter made for params, got {type(kalman).__name__}")
    output = _check_output(output)
    xs, targets = check_stream(cell, xs, targets)
    if jacobian == "bptt" and k2 is None:
        raise ValueError("k2 must be given with jacobian='bptt' (the truncation window), got None")
    tracker = _tracker(cell, params, xs, readout, (jacobian, "jacobian"), k2, state0)
    _check_layout(params, kalman.layout, in_place=True)
    width = np.shape(params["W_hy"])[0] if readout else cell.output_width
    targets = as_float_array(targets, "targets")
    check_shape(targets, xs.shape[:2] + (width,), "targets", "(T, B, k)")
    mask = _check_stream_mask(mask, xs.shape[:2], kalman)
    history = History()
    for t in range(xs.shape[0]):
        cell_params, readout_params = _checked_split(cell, params, readout)
        hidden = tracker.advance(cell_params, t)
        if not mask[t].any():
            continue
        outputs, jac = _measurement(kalman.layout, cell_params, readout_params, hidden, tracker, output)
        z, H = outputs[mask[t]].reshape(-1), jac[mask[t]].reshape(-1, kalman.layout.size)
        d = targets[t, mask[t]].reshape(-1)
        error = z - d
        history.losses.append(float(np.mean(error * error)))
        history.grad_norms.append(float(np.linalg.norm(H.T @ error) * 2.0 / error.size))
        kalman.update(params, z, d, H)
    return history


def _check_stream_mask(mask: object, steps: tuple[int, int], kalman: ExtendedKalmanFilter) -> Array:
    """``mask`` as a bool ``(T, B)`` array (all true if ``None``); with a mask, R must be a number."""
    if mask is None:
        return np.ones(steps, dtype=bool)
    mask = check_step_mask(mask, steps)
    if kalman.measurement_noise.ndim != 0:
        raise ValueError("with a mask the number of measurements changes from step to step, so the filter's "
                         f"r must be a number, got an array of shape {kalman.measurement_noise.shape}")
    return mask


class _RTRLTracker:
    """Runs the cell forward and carries the hidden sensitivities d h_t / d theta_cell (``companion.rtrl``)."""

    def __init__(self, cell: Cell, cell_params: Params, xs: Array, state0: State | None):
        self.cell, self.xs = cell, xs
        self.state = bptt.start_state(cell, cell_params, xs, state0)
        self.directions = unit_directions(cell, xs.shape[1], dtype=np.result_type(xs, *cell_params.values()),
                                          state0=False)
        self.sensitivities = self.directions.sensitivities                   # Pi_0 = 0, parts (P, B, width)

    def advance(self, cell_params: Params, t: int) -> Array:
        """Step t + 1 (0-based ``t``): the state and Pi_t; returns h_t ``(B, H)``."""
        self.state, cache = self.cell._step(cell_params, self.xs[t], self.state)
        self.sensitivities = self.cell._step_jvp(cell_params, cache, self.sensitivities,
                                                 self.directions.d_params, self.directions.d_x)
        return self.cell.hidden(self.state)

    def rows(self, cell_params: Params, weights: Array) -> Params:
        """``[key]`` ``(B, k, *shape)``: d(weights h_t)/d params[key], from Pi_t; ``weights`` ``(k, H)``."""
        flat = np.einsum("pbh,oh->bop", self.cell.hidden(self.sensitivities), weights)   # (B, k, P)
        return _split_columns(self.cell, flat)


class _BPTTTracker:
    """Runs the cell forward window by window and back-propagates each output through the last k2 steps."""

    def __init__(self, cell: Cell, cell_params: Params, xs: Array, state0: State | None, k2: int):
        self.cell, self.xs = cell, xs
        self.states = deque([bptt.start_state(cell, cell_params, xs, state0)], maxlen=k2)  # before each window step
        self.cache: bptt.SequenceCache | None = None

    def advance(self, cell_params: Params, t: int) -> Array:
        """Rerun the window ending at step t + 1 from the state stored before it; returns h_t ``(B, H)``."""
        start = t + 1 - len(self.states)                     # the window's first step, 0-based
        hs, self.cache = bptt.forward(self.cell, cell_params, self.xs[start:t + 1], self.states[0])
        self.states.append(self.cache.final_state)
        return hs[-1]

    def rows(self, cell_params: Params, weights: Array) -> Params:
        """``[key]`` ``(B, k, *shape)``: one backward pass through the window per (sequence, output)."""
        L, B = self.cache.length, self.cache.batch
        k = weights.shape[0]
        rows = {key: np.zeros((B, k) + shape) for key, shape in self.cell.param_shapes().items()}
        for b in range(B):
            for o in range(k):
                dhs = np.zeros((L, B, self.cell.output_width))
                dhs[-1, b] = weights[o]                       # d(weights[o] . h_t[b]) / dh_t
                grads = bptt.backward(self.cell, cell_params, self.cache, dhs)[0]
                for key, grad in grads.items():
                    rows[key][b, o] = grad
        return rows


def _tracker(cell: Cell, params: Params, xs: Array, readout: bool, choice: tuple[object, str], k2: object,
             state0: State | None) -> _RTRLTracker | _BPTTTracker:
    """The forward runner with the chosen Jacobian; ``choice`` is (the method, the argument's name)."""
    method, name = choice
    if method not in JACOBIANS:
        raise ValueError(f"{name} must be one of {list(JACOBIANS)}, got {method!r}")
    cell_params, _ = _checked_split(cell, params, readout)
    if method == "rtrl":
        return _RTRLTracker(cell, cell_params, xs, state0)
    return _BPTTTracker(cell, cell_params, xs, state0, check_positive_int(k2, "k2"))


def _measurement(layout: Layout, cell_params: Params, readout_params: Params | None, hidden: Array,
                 tracker: _RTRLTracker | _BPTTTracker, output: str) -> tuple[Array, Array]:
    """z_t ``(B, k)`` and dz_t/dtheta ``(B, k, n)`` from h_t ``(B, H)`` and the tracker's rows."""
    if readout_params is None:
        ys = hidden                                                              # y_t = h_t
        rows = tracker.rows(cell_params, np.eye(hidden.shape[1]))
    else:
        ys = hidden @ readout_params["W_hy"].T + readout_params["b_y"]           # y_t, (B, k)
        rows = tracker.rows(cell_params, readout_params["W_hy"])
        rows.update(_readout_rows(hidden, ys.shape[1]))
    B, k = ys.shape
    linear = np.concatenate([rows[key].reshape(B, k, -1) for key in layout.keys], axis=2)   # dy/dtheta
    outputs, slopes = _output_function(ys, output)                               # z, dz/dy (B, k, k)
    return outputs, np.einsum("bij,bjn->bin", slopes, linear)


def _readout_rows(hidden: Array, k: int) -> Params:
    """dy_t/dW_hy ``(B, k, k, H)`` and dy_t/db_y ``(B, k, k)`` for y_t = W_hy h_t + b_y."""
    identity = np.eye(k)
    B = hidden.shape[0]
    return {"W_hy": np.einsum("op,bj->bopj", identity, hidden), "b_y": np.broadcast_to(identity, (B, k, k))}


def _output_function(ys: Array, output: str) -> tuple[Array, Array]:
    """z = f(y) ``(B, k)`` and its Jacobian dz/dy ``(B, k, k)`` for the output nonlinearity f."""
    if output == "linear":
        return ys, np.broadcast_to(np.eye(ys.shape[1]), ys.shape + ys.shape[1:])
    if output == "sigmoid":
        z = sigmoid(ys)
        return z, np.einsum("bi,ij->bij", z * (1.0 - z), np.eye(ys.shape[1]))
    shifted = np.exp(ys - ys.max(axis=1, keepdims=True))
    z = shifted / shifted.sum(axis=1, keepdims=True)
    return z, np.einsum("bi,ij->bij", z, np.eye(ys.shape[1])) - np.einsum("bi,bj->bij", z, z)  # diag(z) - z z^T


def _split_columns(cell: Cell, flat: Array) -> Params:
    """``(B, k, P)`` over the cell's parameter entries (``param_shapes()`` order) as ``[key]`` ``(B, k, *shape)``."""
    rows, start = {}, 0
    for key, shape in cell.param_shapes().items():
        size = math.prod(shape)
        rows[key] = flat[:, :, start:start + size].reshape(flat.shape[:2] + shape)
        start += size
    return rows


def _checked_split(cell: Cell, params: object, readout: bool) -> tuple[Params, Params | None]:
    """``split_params`` with the cell's part checked (finite, the right shapes); arrays not copied."""
    cell_params, readout_params = split_params(cell, params, readout)
    return cell.check_params(cell_params), readout_params


def _check_output(output: object) -> str:
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {list(OUTPUTS)}, got {output!r}")
    return output


def _check_layout(params: object, layout: Layout, *, in_place: bool = False) -> Params:
    """``params`` checked against ``layout`` (same keys, same shapes, finite floats), else ``ValueError``."""
    if not isinstance(params, Mapping) or set(params) != set(layout.keys):
        got = sorted(params) if isinstance(params, Mapping) else type(params).__name__
        raise ValueError(f"params must be a dict with exactly the keys {list(layout.keys)}, got {got}")
    checked = {}
    for key, shape in zip(layout.keys, layout.shapes):
        value = params[key]
        if in_place and not (isinstance(value, np.ndarray) and value.dtype.kind == "f"):
            raise ValueError(f"params[{key!r}] must be a float numpy array (updated in place), "
                             f"got {type(value).__name__}")
        checked[key] = as_float_array(value, f"params[{key!r}]")
        if checked[key].shape != shape:
            raise ValueError(f"params[{key!r}] must have shape {shape}, got {checked[key].shape}")
    return checked


def unit_groups(layout: Layout) -> list[Array]:
    """The blocks of the node-decoupled EKF: one per unit, in order of first appearance in theta.

    Row i (the index along the first axis) of every array of the cell is unit i's (its incoming weights
    and its bias: row i of ``W_xh``, ``W_hh`` and ``b_h`` for the Elman cell); row o of the readout's
    ``W_hy`` and ``b_y`` is output unit o's. A 0-d array is a block of its own.

    Parameters
    ----------
    layout : Layout
        ``layout_of(params)``; the keys ``W_hy`` and ``b_y`` are the readout's.

    Returns
    -------
    list of array of int
        Each block's flat indices into theta, a partition of ``range(n)``.
    """
    owners: dict[tuple, list[Array]] = {}
    for key, shape, part in zip(layout.keys, layout.shapes, layout.slices().values()):
        index = np.arange(layout.size)[part].reshape(shape)
        if index.ndim == 0:
            owners[(key,)] = [index.reshape(1)]
            continue
        side = "readout" if key in READOUT_KEYS else "cell"
        for row in range(shape[0]):
            owners.setdefault((side, row), []).append(index[row].reshape(-1))
    return [np.concatenate(blocks) for blocks in owners.values()]


def _check_groups(groups: object, layout: Layout) -> list[Array]:
    """The blocks' index arrays: one block, one per array, one per unit, or a given partition (checked)."""
    n = layout.size
    if groups is None:
        return [np.arange(n)]
    if isinstance(groups, str):
        if groups not in ("array", "unit"):
            raise ValueError(f"groups must be None, 'array', 'unit' or a partition of range(n), got {groups!r}")
        if groups == "unit":
            return unit_groups(layout)
        return [np.arange(n)[part] for part in layout.slices().values()]
    try:
        index = [np.asarray(group, dtype=np.int64).reshape(-1) for group in groups]
    except (TypeError, ValueError):
        raise ValueError("groups must be None, 'array' or a sequence of integer index sequences, "
                         f"got {groups!r}") from None
    joined = np.concatenate(index) if index else np.empty(0, dtype=np.int64)
    if any(group.size == 0 for group in index) or np.sort(joined).tolist() != list(range(n)):
        raise ValueError(f"groups must partition range(n) = range({n}) into non-empty blocks (each index once)")
    return index


def _check_covariance(value: object, size: int | None, name: str, *, definite: bool) -> Array:
    """A covariance setting as an array: 0-d (times I), 1-d (the diagonal) or 2-d, checked to be symmetric
    positive definite (``definite``) or semidefinite; ``size`` ``None`` accepts any size."""
    array = as_float_array(value, name)
    kind = "positive definite" if definite else "positive semidefinite"
    meaning = "a number, a vector (n,) of variances, or a matrix (n, n)" if size else "a number, (m,) or (m, m)"
    if array.ndim > 2 or (array.ndim == 2 and array.shape[0] != array.shape[1]) or \
            (size is not None and array.ndim > 0 and array.shape[0] != size):
        where = "" if size is None else f" with n = {size}"
        raise ValueError(f"{name} must be {meaning}{where}, got shape {array.shape}")
    if array.ndim == 2 and not np.allclose(array, array.T, rtol=1e-12, atol=0.0):
        raise ValueError(f"{name} must be symmetric (a covariance), got a matrix with |{name} - {name}^T| up to "
                         f"{np.abs(array - array.T).max():.3g}")
    values = np.linalg.eigvalsh(array) if array.ndim == 2 else array.ravel()
    smallest = float(values.min()) if values.size else 0.0
    if (definite and smallest <= 0) or (not definite and smallest < 0):
        raise ValueError(f"{name} must be {kind}; its smallest eigenvalue (or variance) is {smallest:.6g}")
    return array


def _expand(setting: Array, size: int, name: str) -> Array:
    """A checked covariance setting as a full ``(size, size)`` matrix."""
    if setting.ndim == 0:
        return float(setting) * np.eye(size)
    if setting.shape[0] != size:
        raise ValueError(f"{name} must fit the m = {size} measurements of this update: shape ({size},) or "
                         f"({size}, {size}), got {setting.shape}")
    return np.diag(setting) if setting.ndim == 1 else setting


def _blocks(setting: Array, groups: list[Array], name: str) -> list[Array]:
    """The diagonal blocks of a covariance setting over ``groups``; a matrix must be block diagonal. A number
    or a vector of variances gives each block directly, without the whole n x n matrix."""
    if setting.ndim == 0:
        return [float(setting) * np.eye(index.size) for index in groups]
    if setting.ndim == 1:
        return [np.diag(setting[index]) for index in groups]
    if len(groups) > 1:
        mask = np.ones(setting.shape, dtype=bool)
        for index in groups:
            mask[np.ix_(index, index)] = False
        if np.any(setting[mask] != 0):
            raise ValueError(f"{name} must be block diagonal over the groups of the decoupled EKF "
                             "(no covariance between groups)")
    return [setting[np.ix_(index, index)].copy() for index in groups]
