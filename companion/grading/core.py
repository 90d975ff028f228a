"""What every assignment's grader shares: the feedback error, safe calls of a student's function, and
comparisons that say where an answer goes wrong instead of failing with a bare assertion.

A check raises :class:`GradingError` with a message written for the student; nbgrader records the
error of a test cell as that cell's feedback and gives the cell no points.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ..gradcheck import relative_error
from ..types import Array

#: the relative error (``companion.gradcheck.relative_error``) below which an answer counts as right;
#: float64 implementations of the same formula agree to ~1e-15, a wrong one is off by ~1e-1
TOLERANCE = 1e-8


class GradingError(AssertionError):
    """A check failed; the message says which quantity, where, and on what problem."""


def call_student(function: object, name: str, *args: Any) -> Any:
    """Call the student's ``function(*args)``, turning every way it can fail into a ``GradingError``.

    Parameters
    ----------
    function : callable
        The student's function.
    name : str
        Its name in the assignment, for the message.
    *args
        Its arguments (copies, so the function cannot change the grader's arrays).
    """
    __tracebackhide__ = True
    if not callable(function):
        raise GradingError(f"{name} must be a function, got {type(function).__name__}")
    copies = [_copy(arg) for arg in args]
    try:
        return function(*copies)
    except NotImplementedError:
        raise GradingError(f"{name} is not implemented yet: it raised NotImplementedError") from None
    except Exception as error:
        raise GradingError(f"{name} raised {type(error).__name__}: {error}") from None


def as_answer(value: object, name: str, shape: Sequence[int], meaning: str) -> Array:
    """``value`` as a float64 array of ``shape``, or a ``GradingError`` saying what came back instead.

    ``meaning`` spells the expected shape in symbols, for example ``"(T, B, H)"``.
    """
    __tracebackhide__ = True
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise GradingError(f"{name} must be a numeric array, got {type(value).__name__}") from None
    if array.shape != tuple(shape):
        raise GradingError(f"{name} must have shape {meaning} = {tuple(shape)}, got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise GradingError(f"{name} contains NaN or inf")
    return array


def as_dict(value: object, name: str, keys: Sequence[str]) -> Mapping[str, Any]:
    """``value`` if it is a dict with exactly ``keys``, else a ``GradingError`` naming the difference."""
    __tracebackhide__ = True
    if not isinstance(value, Mapping):
        raise GradingError(f"{name} must be a dict with keys {sorted(keys)}, got {type(value).__name__}")
    missing, extra = sorted(set(keys) - set(value)), sorted(set(value) - set(keys))
    if missing or extra:
        raise GradingError(f"{name} must have exactly the keys {sorted(keys)}; missing {missing}, unexpected {extra}")
    return value


def as_tuple(value: object, name: str, length: int, meaning: str) -> tuple[Any, ...]:
    """``value`` if it is a tuple (or list) of ``length`` items, else a ``GradingError``.

    ``meaning`` names the items, for example ``"(grads, dxs, dh0)"``.
    """
    __tracebackhide__ = True
    if not isinstance(value, (tuple, list)) or len(value) != length:
        got = f"a {type(value).__name__} of {len(value)} items" if isinstance(value, (tuple, list)) else type(value).__name__
        raise GradingError(f"{name} must return {length} values {meaning}, got {got}")
    return tuple(value)


def is_close(got: Array, expected: Array) -> bool:
    """Whether ``got`` equals ``expected`` to :data:`TOLERANCE` in relative error."""
    return relative_error(got, expected) <= TOLERANCE


def first_wrong_step(got: Array, expected: Array) -> int | None:
    """The first index t of the leading (time) axis at which ``got[t]`` differs from ``expected[t]``.

    Returns ``None`` when every step is right. Each step is judged on its own scale, so a small but wrong
    early step is not hidden by large later ones.
    """
    for t in range(got.shape[0]):
        if not is_close(got[t], expected[t]):
            return t
    return None


def first_wrong_output(outputs: Mapping[str, tuple[Array, Array]]) -> tuple[int, str] | None:
    """The earliest step at which any of several outputs goes wrong, and which output it is.

    ``outputs`` maps a name to ``(got, expected)`` (time-major arrays, ``first_wrong_step``'s arguments).
    Where several go wrong at the same step, the first in the mapping's order is named. Returns
    ``(t, name)`` with ``t`` 0-based, or ``None`` when every output is right at every step.
    """
    wrong = [(t, order, name) for order, (name, (got, expected)) in enumerate(outputs.items())
             if (t := first_wrong_step(got, expected)) is not None]
    if not wrong:
        return None
    t, _, name = min(wrong)
    return t, name


def other_part_note(function: Callable | None, checks: Iterable[Callable[[Callable, tuple[int]], None]],
                    seed: int, *, wrong: str, right: str) -> str:
    """What a message says of another part of the student's work on the problem of ``seed``.

    ``""`` if ``function`` was not given; ``wrong`` if any of ``checks`` (each called as
    ``check(function, (seed,))``) raises ``GradingError``; ``right`` otherwise.
    """
    if function is None:
        return ""
    try:
        for check in checks:
            check(function, (seed,))
    except GradingError:
        return wrong
    return right


def shortest_failing_length(
    T: int, is_right: Callable[[int], bool]
) -> int | None:
    """The fewest steps ``k`` in ``1..T`` at which ``is_right(k)`` is false, or ``None`` if none.

    A gradient through ``k`` steps back that is right for ``k - 1`` and wrong for ``k`` locates the bug:
    ``k = 1`` is the step's own formula, ``k > 1`` the recursion that carries the gradient one step back.
    """
    for k in range(1, T + 1):
        if not is_right(k):
            return k
    return None


def steps_back(k: int) -> str:
    """Where a gradient first goes wrong, for messages: ``k`` is :func:`shortest_failing_length`'s answer."""
    if k == 1:
        return "the first step back (already on a one-step sequence: look at the formula of one step)"
    ordinal = {2: "second", 3: "third", 4: "fourth", 5: "fifth", 6: "sixth"}.get(k, f"{k}th")
    return (f"the {ordinal} step back (right on sequences of {k - 1} step{'s' if k > 2 else ''}: look at how "
            "the gradient is carried from one step to the step before)")


def problem_text(**sizes: int) -> str:
    """``"(T=4, B=2, n_in=3, H=5)"``: the problem a message refers to, so the student can reproduce it."""
    return "(" + ", ".join(f"{key}={value}" for key, value in sizes.items()) + ")"


def check_names(names: str | Iterable[str], allowed: tuple[str, ...]) -> tuple[str, ...]:
    """``names`` (one name or several) as a tuple, or ``ValueError`` if one is not in ``allowed``.

    A wrong name is the instructor's mistake in a check cell, not the student's, hence not a ``GradingError``.
    """
    names = (names,) if isinstance(names, str) else tuple(names)
    if not names or any(name not in allowed for name in names):
        raise ValueError(f"names must be among {allowed}, got {names!r}")
    return names


def known_mistake(got: Array, mistakes: Mapping[str, Array], right: Array) -> str | None:
    """The description (a key of ``mistakes``) of the first wrong answer that ``got`` equals, or ``None``.

    ``mistakes`` maps a description to the array a known mistake gives; one that makes no difference on
    this problem (equal to the ``right`` answer) is skipped, so it cannot be named for a right answer.
    """
    for description, wrong in mistakes.items():
        wrong = np.asarray(wrong)
        if wrong.shape == got.shape and is_close(got, wrong) and not is_close(wrong, right):
            return description
    return None


def listing(items: Iterable[str]) -> str:
    """``"a"``, ``"a and b"``, ``"a, b and c"``: names in a message."""
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def steps_before(t: int) -> str:
    """``" (steps 1 .. t - 1 are right)"``, for a message on an answer first wrong at step ``t``."""
    return "" if t == 1 else (" (step 1 is right)" if t == 2 else f" (steps 1 .. {t - 1} are right)")


def steps_after(t: int, T: int) -> str:
    """``" (steps t + 1 .. T are right)"``, for a message on an answer last wrong at step ``t`` of ``T``."""
    return "" if t == T else (f" (step {T} is right)" if t == T - 1 else f" (steps {t + 1} .. {T} are right)")


def _copy(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, Mapping):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return tuple(_copy(item) for item in value)
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return value
