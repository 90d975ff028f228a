"""The table of gradient methods that the tests check against each other.

Every method computes the same five things (or some of them: ``computes`` below) for a cell, its
parameters, inputs ``xs`` (T, B, n_in), an initial state ``state0`` (``None`` for the zero state) and the loss
L = sum(hs * dhs) + sum(final_state * d_final_state)::

    method.run(cell, params, xs, state0, dhs, d_final_state) -> Result(hs, final_state, grads, dxs, dstate0)

with ``d_final_state`` ``None`` for no gradient beyond the sequence. ``METHODS`` maps a name to a
``GradientMethod``: that ``run``, ``applies`` (which cells the method serves) and, for a method that
runs a forward pass and then a backward pass on what it kept, ``forward`` (the two halves, which the
aliasing test edits between).

``"steps"``, the step loop of ``companion.bptt``, is the reference (``REFERENCE``). The tests pin it down
with finite differences (test_gradient_methods.py), closed forms and the equations (test_cells_bptt.py,
test_gated_cells.py) and torch autograd (test_torch_ref.py). Every other method is checked against it at
``helpers.TIGHT`` in test_gradient_methods.py, for every cell kind and shape of helpers.py it applies to,
with and without ``d_final_state``, final state and dtypes included; and every method, the reference
too, must keep the contract (state0 None is the zero state, float32 in gives float32 out, the inputs
are not modified).

**How a later algorithm joins the table**: one entry in ``METHODS``, as truncated BPTT did with
k2 >= T (which must then equal full BPTT; the entry "truncated-k2>=T" below)::

    def _truncated_k2_at_least_T(cell, params, xs, state0, dhs, d_final_state):
        ...                                     # call the chapter's function with k1 = 1, k2 = T
        return Result(hs, final_state, grads, dxs, dstate0)

    METHODS["truncated-k2>=T"] = GradientMethod(_truncated_k2_at_least_T)

(``applies`` defaults to every cell; a method that serves some cells only says which, as "fused" does).
A method that cannot produce one of the five outputs returns ``None`` there and names what it does
produce in ``computes`` (RTRL, forward mode, has no ``dxs``); the tests compare only those.
The parametrized tests pick the entry up; nothing else changes. A method with separate forward and
backward halves (checkpointed BPTT) is made with ``split_method(forward, ...)`` instead, where
``forward(cell, params, xs, state0) -> (hs, final_state, backward)`` and
``backward(dhs, d_final_state) -> (grads, dxs, dstate0)``.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from numpy.testing import assert_allclose

from companion import bptt, checkpointing, rtrl, truncation
from companion.fused import fused_path

from helpers import state_parts


class Result(NamedTuple):
    """What every method returns: outputs (T, B, width), the final state, and the gradients of the loss
    with respect to the parameters (a dict), ``xs`` and ``state0`` (with the state's structure)."""

    hs: Any
    final_state: Any
    grads: dict
    dxs: Any
    dstate0: Any


EVERY_OUTPUT = frozenset(Result._fields)


def _every_cell(cell) -> bool:
    return True


@dataclass(frozen=True)
class GradientMethod:
    """One row of the table (see the module docstring)."""

    run: Callable[..., Result]
    applies: Callable[[Any], bool] = _every_cell
    forward: Callable[..., tuple] | None = None
    computes: frozenset[str] = EVERY_OUTPUT


def split_method(forward: Callable[..., tuple], applies: Callable[[Any], bool] = _every_cell) -> GradientMethod:
    """A method from its two halves: ``forward(cell, params, xs, state0) -> (hs, final_state, backward)``."""

    def run(cell, params, xs, state0, dhs, d_final_state=None) -> Result:
        hs, final_state, backward = forward(cell, params, xs, state0)
        return Result(hs, final_state, *backward(dhs, d_final_state))

    return GradientMethod(run, applies, forward)


def _truncated(k1_of: Callable[[int], int]) -> Callable[..., Result]:
    """``companion.truncation.truncated_gradients`` with ``k2 = T`` and ``k1 = k1_of(T)``: every window
    reaches step 1, so the truncated graph is the whole graph (run only: no separate forward half)."""

    def run(cell, params, xs, state0, dhs, d_final_state=None) -> Result:
        T = np.shape(xs)[0]
        result = truncation.truncated_gradients(cell, params, xs, dhs, k1=k1_of(T), k2=T, state0=state0,
                                                d_final_state=d_final_state)
        return Result(result.hs, result.final_state, result.grads, result.dxs, result.dstate0)

    return run


def _bptt_forward(fused: bool) -> Callable[..., tuple]:
    """The forward half of one path of ``companion.bptt``, asserting that the path asked for really ran."""

    def forward(cell, params, xs, state0):
        hs, cache = bptt.forward(cell, params, xs, state0, fused=fused)
        path = fused_path(cell) if fused else None
        assert cache.fused is path and (cache.steps is None) == (path is not None), "another path ran"

        def backward(dhs, d_final_state):
            return bptt.backward(cell, params, cache, dhs, d_final_state=d_final_state)

        return hs, cache.final_state, backward

    return forward


def _checkpointed(scheme: str, slots_of: Callable[[int, int], int]) -> Callable[..., tuple]:
    """``companion.checkpointing.checkpointed_bptt`` with ``slots = slots_of(T, internal_size)``. It returns
    gradients only, recomputing what it needs from ``xs`` and ``state0``: the forward half takes the outputs
    and the final state from the step loop, and keeps nothing else."""

    def forward(cell, params, xs, state0):
        hs, cache = bptt.forward(cell, params, xs, state0, fused=False)
        internal_size = checkpointing.memory_sizes(cell, params, xs, state0).internal_slots
        slots = slots_of(cache.length, internal_size)

        def backward(dhs, d_final_state):
            result = checkpointing.checkpointed_bptt(cell, params, xs, dhs, slots, state0=state0,
                                                     d_final_state=d_final_state, scheme=scheme,
                                                     internal_size=internal_size)
            return result.grads, result.dxs, result.dstate0

        return hs, cache.final_state, backward

    return forward


def _rtrl(cell, params, xs, state0, dhs, d_final_state=None) -> Result:
    """``companion.rtrl.rtrl``: forward mode gives no input gradients (``dxs`` is ``None``)."""
    result = rtrl.rtrl(cell, params, xs, dhs, state0=state0, d_final_state=d_final_state)
    return Result(result.hs, result.final_state, result.grads, None, result.dstate0)


REFERENCE = "steps"

METHODS: dict[str, GradientMethod] = {
    # the step loop: the cell's own step / step_backward, T times (every cell)
    "steps": split_method(_bptt_forward(fused=False)),
    # companion.fused: the exact classes Elman, LSTM and GRU (never Jordan, never a subclass)
    "fused": split_method(_bptt_forward(fused=True), applies=lambda cell: fused_path(cell) is not None),
    # companion.truncation, BPTT(k2; k1) with k2 = T: a backward pass after every step (k1 = 1), each
    # through the whole prefix, and one window (k1 = k2 = T); both are full BPTT
    "truncated-k2>=T": GradientMethod(_truncated(lambda T: 1)),
    "truncated-k1=k2=T": GradientMethod(_truncated(lambda T: T)),
    # companion.checkpointing: two stored states (most steps recomputed more than once); room for s_0, one
    # internal state and one hidden state (every kind of move of the mixed recursion); about sqrt(T)
    # segments, each re-run with its caches kept
    "checkpointed-hsm-2slots": split_method(_checkpointed("hsm", lambda T, internal_size: 2)),
    "checkpointed-msm": split_method(_checkpointed("msm", lambda T, internal_size: internal_size + 2)),
    "checkpointed-sqrt": split_method(_checkpointed("sqrt", lambda T, internal_size: math.isqrt(T - 1) + 1)),
    # companion.rtrl: the sensitivities carried forward, one direction per parameter and state entry
    "rtrl": GradientMethod(_rtrl, computes=EVERY_OUTPUT - {"dxs"}),
}


def assert_same_result(got: Result, expected: Result, *, tolerance: dict, label: str = "",
                       computes: frozenset[str] = EVERY_OUTPUT) -> None:
    """``got`` and ``expected`` agree: every array of the outputs ``computes`` names to ``tolerance``
    (``assert_allclose`` keywords), with the same dtypes, keys and state structure; the others of ``got``
    are ``None``. ``label`` prefixes the failure messages."""
    for name in EVERY_OUTPUT - computes:
        assert getattr(got, name) is None, f"{label}: {name} is not computed, so it must be None"
    pairs = [(name, getattr(got, name), getattr(expected, name)) for name in ("hs", "dxs") if name in computes]
    if "grads" in computes:
        assert list(got.grads) == list(expected.grads), (list(got.grads), list(expected.grads))
        pairs += [(f"grads[{key!r}]", got.grads[key], expected.grads[key]) for key in expected.grads]
    for name in ("final_state", "dstate0"):
        if name not in computes:
            continue
        a, b = state_parts(getattr(got, name)), state_parts(getattr(expected, name))
        assert isinstance(getattr(got, name), tuple) == isinstance(getattr(expected, name), tuple), name
        assert len(a) == len(b), name
        pairs += [(f"{name}[{k}]", x, y) for k, (x, y) in enumerate(zip(a, b))]
    for name, a, b in pairs:
        name = f"{label}: {name}" if label else name
        assert isinstance(a, np.ndarray), f"{name} is a {type(a).__name__}"
        assert a.dtype == b.dtype, f"{name}: {a.dtype} != {b.dtype}"
        assert_allclose(a, b, **tolerance, err_msg=name)
