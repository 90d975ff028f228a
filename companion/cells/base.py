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

A cell's file holds its math and nothing else. Faster sequence code lives in ``companion.fused``,
registered for an exact cell class: a subclass that changes ``_step`` or ``_step_backward`` is always run
through its own methods (see ``companion.fused``).
"""
from __future__ import annotations

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
    ``init_params``, ``_step`` and ``_step_backward``.
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

    def _init_uniform(self, rng: np.random.Generator | int, scale: float) -> Params:
        """Every parameter uniform in ``[-scale, scale]``, drawn in sorted key order (reproducible)."""
        rng = as_rng(rng)
        shapes = self.param_shapes()
        return {key: rng.uniform(-scale, scale, size=shapes[key]) for key in sorted(shapes)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_in={self.n_in}, n_hidden={self.n_hidden})"
