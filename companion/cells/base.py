"""The cell protocol: one time step forward, one time step backward.

Every algorithm of the course (full BPTT, truncation, checkpointing, RTRL, ...) is written once against
this protocol and never names a particular cell. A cell holds only its sizes; parameters travel in a
dict keyed by the book's symbols, and everything a step needs for its backward pass travels in the
``cache`` it returns.

A state is one array ``(B, width)`` or, when ``state_widths`` has several entries, a tuple of such arrays
(the LSTM's ``(h, c)``). Part 0 of the state is what the sequence exposes as its output ``h_t``.

The public ``step`` and ``step_backward`` check their inputs and call ``_step`` and ``_step_backward``,
which hold the math and trust their inputs; the sequence algorithms check a whole sequence once and then
call the trusted methods in their inner loops. A step's cache is a ``NamedTuple`` of the cell's
``cache_type`` whose fields are named by the book's symbols (``cache.x_t``, ``cache.h_prev``, ``cache.f``);
``step_backward`` refuses a cache of another type.

Forward mode (real-time recurrent learning) has the same pair: ``step_jvp`` checks its tangents and calls
``_step_jvp``, the Jacobian-vector product of one step at the point its cache recorded; tangents may carry
leading direction axes, so one call pushes many directions. ``state_jacobian`` and ``param_jacobian``
build small dense Jacobians from it.

A cell's file holds its math and nothing else. Faster sequence code lives in ``companion.fused``,
registered for an exact cell class: a subclass that changes ``_step`` or ``_step_backward`` is always run
through its own methods (see ``companion.fused``).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..types import Array, Params, State
from ..validation import as_float_array, as_rng, check_params, check_positive_int, check_shape

Cache = Any
"""Whatever a cell's forward step keeps for its backward step."""


def check_cell(cell: object) -> "Cell":
    """Return ``cell`` if it is a cell of the protocol, else raise ``ValueError`` naming ``cell``."""
    if not isinstance(cell, Cell):
        raise ValueError(f"cell must be a companion.cells.Cell (Elman, Jordan, ...), got {type(cell).__name__}")
    return cell


class Cell:
    """Base class of the recurrent cells: sizes, parameter shapes and the checked step protocol.

    Subclasses set ``n_in``, ``n_hidden``, ``state_widths`` and ``cache_type`` (the ``NamedTuple`` class of
    their step caches, whose first field is the input ``x_t``) and implement ``param_shapes``,
    ``init_params``, ``_step``, ``_step_backward`` and ``_step_jvp``.
    """

    n_in: int
    n_hidden: int
    state_widths: tuple[int, ...]
    cache_type: type

    # ----- what a subclass provides -------------------------------------------------------------------
    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """The shape of every parameter, keyed by its symbol."""
        raise NotImplementedError

    def init_params(self, rng: np.random.Generator | int) -> Params:
        """Draw parameters; ``rng`` is a ``np.random.Generator`` or an integer seed."""
        raise NotImplementedError

    def _step(self, params: Params, x_t: Array, state: State) -> tuple[State, Cache]:
        raise NotImplementedError

    def _step_backward(self, params: Params, cache: Cache, d_state: State) -> tuple[Params, State, Array]:
        raise NotImplementedError

    def _step_jvp(self, params: Params, cache: Cache, d_state_prev: State, d_params: Params, d_x_t: Array) -> State:
        """The tangent of state_t, given tangents of state_{t-1}, of the parameters and of x_t (trusted).

        Every tangent is given (no ``None``, every key of ``d_params``) and all carry the same leading
        direction axes ``L``: state parts ``(*L, B, width)``, ``d_params[key]`` ``(*L, *param_shape)``,
        ``d_x_t`` ``(*L, B, n_in)``. Returns the state tangent with parts ``(*L, B, width)``.
        """
        raise NotImplementedError

    # ----- the checked protocol -----------------------------------------------------------------------
    @property
    def output_width(self) -> int:
        """Width of the output ``h_t`` that a sequence exposes (part 0 of the state)."""
        return self.state_widths[0]

    def initial_state(self, batch: int, *, dtype: np.dtype | type = np.float64) -> State:
        """The zero state for a batch of ``batch`` sequences: ``(batch, width)`` for every part."""
        batch = check_positive_int(batch, "batch")
        if np.dtype(dtype).kind != "f":
            raise ValueError(f"dtype must be a floating-point dtype, got {np.dtype(dtype)}")
        parts = tuple(np.zeros((batch, width), dtype=dtype) for width in self.state_widths)
        return parts[0] if len(parts) == 1 else parts

    def step(self, params: Params, x_t: Array, state: State) -> tuple[State, Cache]:
        """One step forward: ``x_t`` is ``(B, n_in)``; returns the next state and the step's cache."""
        params = self.check_params(params)
        x_t = as_float_array(x_t, "x_t")
        check_shape(x_t, (None, self.n_in), "x_t", "(B, n_in)")
        state = self.check_state(state, x_t.shape[0], "state")
        return self._step(params, x_t, state)

    def step_backward(self, params: Params, cache: Cache, d_state: State) -> tuple[Params, State, Array]:
        """One step backward.

        ``d_state`` is dL/d(state_t), the gradient of the loss with respect to the state this step
        produced, through every path. Returns ``(d_params, d_state_prev, d_x_t)``: the gradient with
        respect to this step's use of the parameters, dL/d(state_{t-1}) through this step, and dL/dx_t.
        """
        params = self.check_params(params)
        cache = self.check_step_cache(cache)
        d_state = self.check_state(d_state, cache.x_t.shape[0], "d_state")
        return self._step_backward(params, cache, d_state)

    def step_jvp(
        self,
        params: Params,
        cache: Cache,
        d_state_prev: State | None = None,
        d_params: dict[str, Array] | None = None,
        d_x_t: Array | None = None,
    ) -> State:
        """One step forward in tangent space: the Jacobian-vector product of ``step`` at its cache's point.

        Parameters
        ----------
        params : dict of arrays
            The parameters the step ran with.
        cache : cache_type
            The cache ``step`` returned; it fixes the point (x_t, state_{t-1}) and the batch size B.
        d_state_prev : array or tuple of arrays, optional
            Tangent of state_{t-1}: parts ``(..., B, width)``, a tuple of them for a multi-part state.
        d_params : dict of arrays, optional
            Tangents of the parameters, ``d_params[key]`` ``(..., *param_shapes()[key])``; a missing key (or a
            ``None`` value) is zero.
        d_x_t : array, optional
            Tangent of the input, ``(..., B, n_in)``.

        ``None`` is a zero tangent. The leading axes ``...`` index directions: every given tangent must
        have the same leading shape ``L`` (``()`` for one direction; no broadcasting between tangents), and
        the result carries it. With no tangent given, ``L = ()`` and the result is zero.

        Returns
        -------
        array or tuple of arrays
            Tangent of state_t, parts ``(*L, B, width)``:
            d state_t = J_state d_state_prev + J_params d_params + J_x d_x_t.
        """
        params = self.check_params(params)
        cache = self.check_step_cache(cache)
        d_state_prev, d_params, d_x_t = self._complete_tangents(cache, d_state_prev, d_params, d_x_t)
        return self._step_jvp(params, cache, d_state_prev, d_params, d_x_t)

    def state_jacobian(self, params: Params, cache: Cache) -> Array:
        """Dense Jacobian of state_t with respect to state_{t-1}, per sequence of the batch (small sizes).

        Parameters
        ----------
        params : dict of arrays
            The parameters the step ran with.
        cache : cache_type
            The cache ``step`` returned, for a batch of B sequences.

        Returns
        -------
        array, shape (B, S, S)
            ``[b, i, j]`` = d state_t[b, i] / d state_{t-1}[b, j], with S = sum(state_widths) and a
            multi-part state concatenated in part order (the LSTM: ``i < H`` is h, ``i >= H`` is c).
            Sequences of a batch do not interact, so the cross-batch entries, all zero, are left out.
        """
        params = self.check_params(params)
        cache = self.check_step_cache(cache)
        S = sum(self.state_widths)
        # direction j: a unit tangent on coordinate j of state_{t-1}, for every sequence at once: (S, B, S)
        unit = np.broadcast_to(np.eye(S)[:, None, :], (S, cache.x_t.shape[0], S))
        d_state = self._joined_jvp(params, cache, self._split_state(unit), None)
        return np.moveaxis(d_state, 0, -1)                             # (S: j, B, S: i) -> (B, i, j)

    def param_jacobian(self, params: Params, cache: Cache) -> dict[str, Array]:
        """Dense Jacobians of state_t with respect to every parameter, at the step's point (small sizes).

        Parameters
        ----------
        params : dict of arrays
            The parameters the step ran with.
        cache : cache_type
            The cache ``step`` returned, for a batch of B sequences.

        Returns
        -------
        dict of arrays
            ``[key]`` has shape ``(B, S, *param_shapes()[key])``: ``[key][b, i, ...]`` = d state_t[b, i] /
            d params[key][...], with S = sum(state_widths) and a multi-part state concatenated in part order.
        """
        params = self.check_params(params)
        cache = self.check_step_cache(cache)
        jacobians = {}
        for key, shape in self.param_shapes().items():
            size = math.prod(shape)
            # direction k: a unit tangent on entry k of params[key]: (size, *shape)
            d_state = self._joined_jvp(params, cache, None, {key: np.eye(size).reshape(size, *shape)})
            jacobians[key] = np.moveaxis(d_state, 0, -1).reshape(*d_state.shape[1:], *shape)   # (B, S, *shape)
        return jacobians

    # ----- helpers for the algorithms ------------------------------------------------------------------
    def check_params(self, params: object, name: str = "params") -> Params:
        """Validate a parameter dict against ``param_shapes`` (keys, shapes, finite floats)."""
        return check_params(params, self.param_shapes(), name)

    def check_state(self, state: object, batch: int | None, name: str) -> State:
        """Validate a state (or a state gradient) for ``batch`` sequences (``None``: any batch size)."""
        widths = self.state_widths
        if len(widths) == 1:
            array = as_float_array(state, name)
            check_shape(array, (batch, widths[0]), name, "(B, n_hidden)")
            return array
        if not isinstance(state, tuple) or len(state) != len(widths):
            raise ValueError(f"{name} must be a tuple of {len(widths)} arrays of widths {widths}, got {type(state).__name__}")
        parts = []
        for index, (part, width) in enumerate(zip(state, widths)):
            array = as_float_array(part, f"{name}[{index}]")
            check_shape(array, (batch, width), f"{name}[{index}]", "(B, width)")
            parts.append(array)
        return tuple(parts)

    def check_step_cache(self, cache: object, name: str = "cache") -> Cache:
        """Return ``cache`` if this cell's ``step`` could have made it, else raise ``ValueError`` naming ``name``.

        It must be of ``cache_type`` (an LSTM cache handed to an Elman cell is refused) and hold an input
        of width ``n_in``.
        """
        if not isinstance(cache, self.cache_type):
            raise ValueError(
                f"{name} must be the {self.cache_type.__name__} that {self!r}.step returned, got {type(cache).__name__}"
            )
        width = np.shape(cache.x_t)[-1:]
        if width != (self.n_in,):
            raise ValueError(f"{name} comes from a cell with input width {width}, this cell has n_in={self.n_in}")
        return cache

    def hidden(self, state: State) -> Array:
        """The part of ``state`` exposed as the sequence output ``h_t``, shape ``(B, output_width)``."""
        return state if len(self.state_widths) == 1 else state[0]

    def add_to_hidden(self, d_state: State, d_h: Array) -> State:
        """Add a gradient ``d_h`` of shape ``(B, output_width)`` to the hidden part of ``d_state``."""
        if len(self.state_widths) == 1:
            return d_state + d_h
        return (d_state[0] + d_h,) + tuple(d_state[1:])

    def zero_state_grad(self, like: State) -> State:
        """A zero gradient with the structure and dtype of the state ``like``."""
        if len(self.state_widths) == 1:
            return np.zeros_like(like)
        return tuple(np.zeros_like(part) for part in like)

    def _complete_tangents(
        self, cache: Cache, d_state_prev: object, d_params: object, d_x_t: object
    ) -> tuple[State, Params, Array]:
        """Check the tangents of ``step_jvp`` against ``cache`` and fill every missing one with zeros.

        Returns ``(d_state_prev, d_params, d_x_t)`` complete (every state part, every parameter key), all
        with the common leading shape ``L`` of the given tangents; raises ``ValueError`` naming the
        argument for a wrong trailing shape or a leading shape that differs from the first given tangent's.
        """
        batch = cache.x_t.shape[0]
        widths = self.state_widths
        shapes = self.param_shapes()
        given: dict[str, Array] = {}          # name -> checked tangent, in argument order
        cores: dict[str, tuple[int, ...]] = {}  # name -> the shape after the leading axes

        def take(value: object, name: str, core: tuple[int, ...], meaning: str) -> None:
            array = as_float_array(value, name)
            lead = array.ndim - len(core)
            if lead < 0 or array.shape[lead:] != core:
                wanted = "(..., " + ", ".join(map(str, core)) + ")"
                raise ValueError(f"{name} must have shape {meaning} = {wanted}, got {array.shape}")
            given[name], cores[name] = array, core

        if d_state_prev is not None:
            if len(widths) == 1:
                take(d_state_prev, "d_state_prev", (batch, widths[0]), "(..., B, n_hidden)")
            elif not isinstance(d_state_prev, tuple) or len(d_state_prev) != len(widths):
                raise ValueError(f"d_state_prev must be None or a tuple of {len(widths)} arrays of widths {widths}, "
                                 f"got {type(d_state_prev).__name__}")
            else:
                for index, (part, width) in enumerate(zip(d_state_prev, widths)):
                    take(part, f"d_state_prev[{index}]", (batch, width), "(..., B, width)")
        if d_params is not None:
            if not isinstance(d_params, Mapping):
                raise ValueError(f"d_params must be None or a dict of arrays with keys among {sorted(shapes)}, "
                                 f"got {type(d_params).__name__}")
            extra = sorted(set(d_params) - set(shapes), key=str)
            if extra:
                raise ValueError(f"d_params has unexpected keys {extra}; the parameters are {sorted(shapes)}")
            for key, shape in shapes.items():
                if key in d_params and d_params[key] is not None:
                    take(d_params[key], f"d_params[{key!r}]", tuple(shape), "(..., *param_shape)")
        if d_x_t is not None:
            take(d_x_t, "d_x_t", (batch, self.n_in), "(..., B, n_in)")

        lead: tuple[int, ...] = ()
        for index, (name, array) in enumerate(given.items()):
            here = array.shape[: array.ndim - len(cores[name])]
            if index == 0:
                first, lead = name, here
            elif here != lead:
                raise ValueError(f"{name} has leading direction axes {here}, but {first} has {lead}: every given "
                                 "tangent must have the same leading shape")
        dtype = np.result_type(cache.x_t, *given.values())

        def tangent(name: str, core: tuple[int, ...]) -> Array:
            return given[name] if name in given else np.zeros(lead + core, dtype=dtype)

        if len(widths) == 1:
            state = tangent("d_state_prev", (batch, widths[0]))
        else:
            state = tuple(tangent(f"d_state_prev[{k}]", (batch, w)) for k, w in enumerate(widths))
        full_params = {key: tangent(f"d_params[{key!r}]", tuple(shape)) for key, shape in shapes.items()}
        return state, full_params, tangent("d_x_t", (batch, self.n_in))

    def _joined_jvp(self, params: Params, cache: Cache, d_state_prev: State | None, d_params: Params | None) -> Array:
        """``_step_jvp`` on checked inputs for the dense Jacobians: state parts joined, ``(*L, B, S)``."""
        d_state_prev, d_params, d_x_t = self._complete_tangents(cache, d_state_prev, d_params, None)
        return self._concatenate_state(self._step_jvp(params, cache, d_state_prev, d_params, d_x_t))

    def _split_state(self, joined: Array) -> State:
        """A state (or tangent) from its parts concatenated along the last axis (undoes ``_concatenate_state``)."""
        parts = tuple(np.split(joined, np.cumsum(self.state_widths)[:-1], axis=-1))
        return parts[0] if len(parts) == 1 else parts

    def _concatenate_state(self, state: State) -> Array:
        """The parts of a state (or tangent) concatenated along the last axis, in part order."""
        return state if len(self.state_widths) == 1 else np.concatenate(state, axis=-1)

    def _init_uniform(self, rng: np.random.Generator | int, scale: float) -> Params:
        """Every parameter uniform in ``[-scale, scale]``, drawn in sorted key order (reproducible)."""
        rng = as_rng(rng)
        shapes = self.param_shapes()
        return {key: rng.uniform(-scale, scale, size=shapes[key]) for key in sorted(shapes)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_in={self.n_in}, n_hidden={self.n_hidden})"
