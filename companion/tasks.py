"""Small synthetic sequence tasks, made in code or shipped with the package; time-major throughout.

* ``sine_wave``: one-step-ahead prediction of sines with random phase and frequency (regression,
  ``loss="mse"``).
* ``adding_problem``: the sum of two marked values of a long sequence, read at the last step
  (regression with the loss on the last step only; a long-lag memory test).
* ``load_text``, ``CharVocabulary`` and ``char_batches``: next-character prediction on a short text
  about BPTT shipped in ``companion/data/tiny_text.txt`` (classification, ``loss="cross_entropy"``);
  ``stream_windows``: the same text as consecutive windows of parallel streams, for a carried state.

Every function takes an explicit ``rng`` and draws nothing else, so a seed fixes the data.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources

import numpy as np

from .types import Array
from .validation import as_rng, check_positive_int


def sine_wave(
    rng: np.random.Generator | int,
    *,
    batch: int,
    steps: int,
    omega: tuple[float, float] = (0.2, 0.6),
) -> tuple[Array, Array]:
    r"""Sines with random phase and angular frequency, and the next sample as the target.

    Sequence b is :math:`s_b(t) = \sin(\omega_b t + \varphi_b)` for t = 0, 1, ..., T, with
    :math:`\omega_b` uniform in ``omega`` and :math:`\varphi_b` uniform in :math:`[0, 2\pi)`. The input at
    step t is s_b(t) and the target is s_b(t + 1), so ``targets[:-1] == xs[1:]``. The frequency is not
    given: the network has to infer it from the samples it has seen.

    Parameters
    ----------
    rng : np.random.Generator or int
        Source of randomness (an int is used as a seed). The frequencies are drawn first, then the phases.
    batch : int, keyword-only
        B, the number of sequences.
    steps : int, keyword-only
        T, the number of steps.
    omega : (float, float), keyword-only
        Range of the angular frequency, in radians per step (0.2 to 0.6: periods of about 10 to 30 steps).

    Returns
    -------
    xs : array, shape (T, B, 1)
        s_b(t) for t = 0, ..., T - 1.
    targets : array, shape (T, B, 1)
        s_b(t + 1) for t = 0, ..., T - 1.
    """
    rng = as_rng(rng)
    batch = check_positive_int(batch, "batch")
    steps = check_positive_int(steps, "steps")
    low, high = _check_range(omega, "omega")
    omegas = rng.uniform(low, high, size=batch)                               # (B,)
    phases = rng.uniform(0.0, 2.0 * math.pi, size=batch)                      # (B,)
    t = np.arange(steps + 1, dtype=np.float64)[:, None]                       # (T + 1, 1)
    samples = np.sin(omegas * t + phases)[:, :, None]                         # (T + 1, B, 1)
    return samples[:-1], samples[1:]


def adding_problem(
    rng: np.random.Generator | int,
    *,
    batch: int,
    steps: int,
) -> tuple[Array, Array]:
    r"""The adding problem: sum the two marked values of a sequence (Le, Jaitly & Hinton 2015).

    Each step's input is a pair :math:`x_t = (u_t, m_t)`: a value :math:`u_t` uniform in [0, 1] and a
    marker :math:`m_t \in \{0, 1\}`. Exactly two markers per sequence are 1: one at a step
    :math:`p` drawn uniformly from the first half, :math:`0 \le p < \lfloor T/2 \rfloor`, and one at
    a step :math:`q` drawn uniformly from the rest, :math:`\lfloor T/2 \rfloor \le q < T` (0-based,
    like ``xs``). The target, read after the last step, is

    .. math:: s = u_p + u_q ,

    so a model must carry :math:`u_p` over at least :math:`T - \lfloor T/2 \rfloor` steps. Predicting
    the constant 1 for every sequence has expected squared error
    :math:`\operatorname{Var}(u_p + u_q) = 1/12 + 1/12 = 1/6` (chapter "Learning long lags: the adding
    problem"). The task of Hochreiter & Schmidhuber (1997, Experiment 4) is a variant with values in
    [-1, 1] and different marker positions.

    Parameters
    ----------
    rng : np.random.Generator or int
        Source of randomness (an int is used as a seed). The values are drawn first, then the first
        markers' steps, then the second markers'.
    batch : int, keyword-only
        B, the number of sequences.
    steps : int, keyword-only
        T, the length of each sequence, at least 2.

    Returns
    -------
    xs : array, shape (T, B, 2)
        ``xs[..., 0]`` the values u_t, ``xs[..., 1]`` the markers m_t; float64.
    targets : array, shape (B, 1)
        The sum of the two marked values of each sequence.
    """
    rng = as_rng(rng)
    batch = check_positive_int(batch, "batch")
    steps = check_positive_int(steps, "steps")
    if steps < 2:
        raise ValueError(f"steps must be at least 2 (two markers, one in each half), got {steps}")
    half = steps // 2
    values = rng.uniform(0.0, 1.0, size=(steps, batch))                      # u_t, (T, B)
    first = rng.integers(0, half, size=batch)                                # p, (B,)
    second = rng.integers(half, steps, size=batch)                           # q, (B,)
    columns = np.arange(batch)
    markers = np.zeros((steps, batch))                                       # m_t, (T, B)
    markers[first, columns] = 1.0
    markers[second, columns] = 1.0
    xs = np.stack([values, markers], axis=-1)                                # (T, B, 2)
    targets = values[first, columns] + values[second, columns]              # u_p + u_q, (B,)
    return xs, targets[:, None]


def _check_range(value: object, name: str) -> tuple[float, float]:
    """Return ``(low, high)`` if ``value`` is a pair of finite numbers with ``0 < low <= high``."""
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (low, high) of numbers, got {value!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and 0 < low <= high):
        raise ValueError(f"{name} must satisfy 0 < low <= high, got {value!r}")
    return low, high


def load_text() -> str:
    """The tiny text shipped with the package: a few paragraphs on BPTT, about 2.5 KB of plain English.

    Returns
    -------
    str
    """
    return resources.files("companion").joinpath("data/tiny_text.txt").read_text(encoding="utf-8")


@dataclass(frozen=True)
class CharVocabulary:
    """A bijection between the characters of a text and the ids ``0, ..., V - 1``, in sorted order.

    Build it with ``CharVocabulary.from_text(text)``.

    Attributes
    ----------
    chars : tuple of str
        The distinct characters, sorted; ``chars[i]`` has id i.
    """

    chars: tuple[str, ...]

    @classmethod
    def from_text(cls, text: str) -> CharVocabulary:
        """The vocabulary of the distinct characters of ``text`` (a non-empty string)."""
        if not isinstance(text, str) or not text:
            raise ValueError(f"text must be a non-empty str, got {text!r:.60}")
        return cls(tuple(sorted(set(text))))

    @property
    def size(self) -> int:
        """V, the number of distinct characters."""
        return len(self.chars)

    def encode(self, text: str) -> Array:
        """The ids of the characters of ``text``: an int64 array of shape ``(len(text),)``."""
        if not isinstance(text, str):
            raise ValueError(f"text must be a str, got {type(text).__name__}")
        index = {char: i for i, char in enumerate(self.chars)}
        unknown = sorted(set(text) - set(index))
        if unknown:
            raise ValueError(f"text contains characters outside the vocabulary: {unknown}")
        return np.array([index[char] for char in text], dtype=np.int64)

    def decode(self, ids: Array) -> str:
        """The string whose characters have the ids ``ids`` (a 1-D integer array in ``[0, V)``)."""
        ids = _check_ids(ids, self.size, "ids")
        return "".join(self.chars[i] for i in ids)


def _check_ids(ids: object, vocab_size: int, name: str) -> Array:
    """Return ``ids`` as a 1-D integer array with values in ``[0, vocab_size)``, else raise ``ValueError``."""
    ids = np.asarray(ids)
    if ids.dtype.kind not in "iu" or ids.ndim != 1:
        raise ValueError(f"{name} must be a 1-D integer array, got dtype {ids.dtype} and shape {ids.shape}")
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        raise ValueError(f"{name} must lie in [0, {vocab_size}), got values from {ids.min()} to {ids.max()}")
    return ids


def one_hot(ids: Array, *, vocab_size: int) -> Array:
    """One-hot vectors: ``out[..., v] = 1.0`` where ``v == ids[...]``, else 0.

    Parameters
    ----------
    ids : integer array, any shape S
        Values in ``[0, vocab_size)``.
    vocab_size : int, keyword-only
        V.

    Returns
    -------
    array, shape S + (V,), float64
    """
    vocab_size = check_positive_int(vocab_size, "vocab_size")
    ids = np.asarray(ids)
    _check_ids(ids.reshape(-1), vocab_size, "ids")
    return (ids[..., None] == np.arange(vocab_size)).astype(np.float64)


def char_batches(
    text_ids: Array,
    rng: np.random.Generator | int,
    *,
    batch: int,
    steps: int,
    vocab_size: int,
) -> tuple[Array, Array]:
    """One batch of random windows of a text, for next-character prediction.

    Window b starts at a position s_b drawn uniformly from every start that leaves room for T + 1
    characters; its input at step t is the character at s_b + t (one-hot) and its target is the character
    at s_b + t + 1. Call once per training step for fresh windows.

    Parameters
    ----------
    text_ids : integer array, shape (N,)
        The text as ids (``CharVocabulary.encode``), N >= T + 1.
    rng : np.random.Generator or int
        Source of the window starts (an int is used as a seed).
    batch : int, keyword-only
        B, the number of windows.
    steps : int, keyword-only
        T, the length of each window.
    vocab_size : int, keyword-only
        V, the width of the one-hot inputs (``CharVocabulary.size``).

    Returns
    -------
    xs : array, shape (T, B, V)
        One-hot characters, float64.
    targets : int64 array, shape (T, B)
        The id of the next character.
    """
    rng = as_rng(rng)
    batch = check_positive_int(batch, "batch")
    steps = check_positive_int(steps, "steps")
    vocab_size = check_positive_int(vocab_size, "vocab_size")
    text_ids = _check_ids(text_ids, vocab_size, "text_ids")
    if text_ids.size < steps + 1:
        raise ValueError(f"text_ids must hold at least steps + 1 = {steps + 1} ids, got {text_ids.size}")
    starts = rng.integers(0, text_ids.size - steps, size=batch)                  # s_b, (B,)
    windows = text_ids[starts[None, :] + np.arange(steps + 1)[:, None]]         # (T + 1, B)
    return one_hot(windows[:-1], vocab_size=vocab_size), windows[1:].astype(np.int64)


def stream_windows(
    text_ids: Array, *, batch: int, steps: int, vocab_size: int
) -> Iterator[tuple[Array, Array]]:
    """Consecutive windows of B parallel streams of a text, in order, for training with a carried state.

    The text is cut into ``batch`` lanes of equal length L = (N - 1) // B (lane b starts at character
    b * L); window k holds, in every lane, the characters k * T .. k * T + T - 1 as inputs and the
    characters one later as targets. So window k + 1 continues exactly where window k ended, and the
    state a network reaches at the end of window k is the right state to start window k + 1 from
    (``companion.train.train(..., carry_state=True)``). Yields L // T windows; the rest of each lane is
    dropped.

    Parameters
    ----------
    text_ids : integer array, shape (N,)
        The text as ids, N >= B * T + 1.
    batch : int, keyword-only
        B, the number of parallel streams (lanes).
    steps : int, keyword-only
        T, the length of each window.
    vocab_size : int, keyword-only
        V, the width of the one-hot inputs.

    Returns
    -------
    iterator of (xs, targets)
        ``xs`` (T, B, V), one-hot characters, float64; ``targets`` (T, B) int64, the id of the next
        character. The arguments are checked when this is called, before the first window.
    """
    batch = check_positive_int(batch, "batch")
    steps = check_positive_int(steps, "steps")
    vocab_size = check_positive_int(vocab_size, "vocab_size")
    text_ids = _check_ids(text_ids, vocab_size, "text_ids")
    lane = (text_ids.size - 1) // batch                                        # L
    if lane < steps:
        raise ValueError(
            f"text_ids must hold at least batch * steps + 1 = {batch * steps + 1} ids, got {text_ids.size}"
        )
    return _consecutive_windows(text_ids, lane * np.arange(batch), lane // steps, steps, vocab_size)


def _consecutive_windows(
    text_ids: Array, starts: Array, count: int, steps: int, vocab_size: int
) -> Iterator[tuple[Array, Array]]:
    """``count`` windows of ``steps`` characters from the lanes that begin at ``starts`` (B,), in order."""
    for k in range(count):
        positions = starts[None, :] + k * steps + np.arange(steps + 1)[:, None]  # (T + 1, B)
        window = text_ids[positions]
        yield one_hot(window[:-1], vocab_size=vocab_size), window[1:].astype(np.int64)
