"""Losses on a whole sequence of outputs, each returned with its exact gradient.

A loss takes every step's output at once and gives ``(loss, dys)``, where ``dys`` is dL/dy_t for every
step; through ``companion.readout.readout_backward`` that becomes the ``dhs`` of
``companion.bptt.backward``. All are means, so their size does not grow with T or B, and all agree with
torch's default ``reduction="mean"``.
"""
from __future__ import annotations

import numpy as np

from .types import Array
from .validation import as_float_array, check_shape


def _check_outputs_and_targets(outputs: object, targets: object, name: str) -> tuple[Array, Array]:
    """``outputs`` (named ``name``) and ``targets`` as finite float arrays of one non-empty shape."""
    outputs = as_float_array(outputs, name)
    if outputs.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {outputs.shape}")
    targets = as_float_array(targets, "targets")
    check_shape(targets, outputs.shape, "targets", f"the shape of {name}")
    return outputs, targets


def mse(ys: Array, targets: Array) -> tuple[float, Array]:
    r"""Mean squared error over every element, and its gradient.

    .. math::
        L = \frac{1}{N} \sum_i (y_i - \hat y_i)^2, \qquad
        \frac{\partial L}{\partial y_i} = \frac{2}{N} (y_i - \hat y_i)

    where the sum runs over all N = T * B * n_out elements (the mean over every element, as
    ``torch.nn.functional.mse_loss``; not a sum over outputs nor a mean over steps only).

    Parameters
    ----------
    ys : array, shape (T, B, n_out)
        Predictions (any shape is accepted; ``targets`` must have the same one).
    targets : array, shape (T, B, n_out)
        Targets, real-valued.

    Returns
    -------
    loss : float
    dys : array, shape (T, B, n_out)
        dL/dys.
    """
    ys, targets = _check_outputs_and_targets(ys, targets, "ys")
    diff = ys - targets                       # y - y_hat, elementwise
    return float(np.mean(diff * diff)), (2.0 / diff.size) * diff


def sigmoid(logits: Array) -> Array:
    """The logistic function 1 / (1 + exp(-y)), elementwise, as (1 + tanh(y / 2)) / 2 (no overflow).

    Parameters
    ----------
    logits : array, any shape

    Returns
    -------
    array, the shape and float dtype of ``logits``
        Values in [0, 1].
    """
    return 0.5 * (1.0 + np.tanh(0.5 * as_float_array(logits, "logits")))


def sigmoid_mse(logits: Array, targets: Array) -> tuple[float, Array]:
    r"""Mean squared error of sigmoid outputs z = sigma(y) against targets in [0, 1], and its gradient.

    .. math::
        L = \frac{1}{N} \sum_i (\sigma(y_i) - d_i)^2, \qquad
        \frac{\partial L}{\partial y_i} = \frac{2}{N} (\sigma(y_i) - d_i)\, \sigma(y_i) (1 - \sigma(y_i))

    over all N elements: the error that the classic trainers (and the extended Kalman filter, which
    assumes Gaussian measurement noise on z) minimize for next-symbol prediction with multi-hot targets
    (``companion.grammars.GrammarBatch.legal``). Agrees with
    ``torch.nn.functional.mse_loss(torch.sigmoid(y), d)``.

    Parameters
    ----------
    logits : array, shape (T, B, n_out)
        The readout's y before the sigmoid (any shape; ``targets`` must have the same one).
    targets : array, shape (T, B, n_out)
        Targets d in [0, 1].

    Returns
    -------
    loss : float
    dlogits : array, shape (T, B, n_out)
        dL/dy.
    """
    logits, targets = _check_outputs_and_targets(logits, targets, "logits")
    if targets.min() < 0 or targets.max() > 1:
        raise ValueError(f"targets must lie in [0, 1] (sigmoid outputs), got values from {targets.min():.6g} "
                         f"to {targets.max():.6g}")
    z = sigmoid(logits)
    diff = z - targets
    return float(np.mean(diff * diff)), (2.0 / diff.size) * diff * z * (1.0 - z)


def softmax(logits: Array) -> Array:
    r"""Softmax over the last axis, computed stably (the maximum is subtracted first).

    .. math:: p_{v} = \frac{\exp(z_v - \max_u z_u)}{\sum_w \exp(z_w - \max_u z_u)}

    Parameters
    ----------
    logits : array, shape (..., V)

    Returns
    -------
    probs : array, shape (..., V)
        Non-negative, summing to one over the last axis.
    """
    logits = as_float_array(logits, "logits")
    if logits.ndim == 0 or logits.shape[-1] == 0:
        raise ValueError(f"logits must have a non-empty last axis (..., V), got shape {logits.shape}")
    return np.exp(_log_softmax(logits))


def _log_softmax(logits: Array) -> Array:
    """log softmax over the last axis: ``z - max z - log sum exp(z - max z)``."""
    shifted = logits - logits.max(axis=-1, keepdims=True)                   # every entry <= 0: exp cannot overflow
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))    # the sum is >= 1: log is finite


def softmax_cross_entropy(logits: Array, targets: Array) -> tuple[float, Array]:
    r"""Softmax cross-entropy averaged over every step and sequence, and its gradient.

    .. math::
        L = -\frac{1}{T B} \sum_{t, b} \log \operatorname{softmax}(z_{t, b})_{c_{t, b}}, \qquad
        \frac{\partial L}{\partial z_{t, b}} = \frac{1}{T B} \big(\operatorname{softmax}(z_{t, b}) - e_{c_{t, b}}\big)

    The log-softmax is formed as ``z - max z - log sum exp(z - max z)``, so large logits neither
    overflow nor lose the loss to ``log(0)``. Agrees with ``torch.nn.functional.cross_entropy`` on
    ``logits.reshape(T * B, V)`` and ``targets.reshape(T * B)``.

    Parameters
    ----------
    logits : array, shape (T, B, V)
        Unnormalized scores z over V classes (characters, for the tiny text).
    targets : integer array, shape (T, B)
        Class ids c in ``[0, V)``.

    Returns
    -------
    loss : float
    dlogits : array, shape (T, B, V)
        dL/dlogits.
    """
    logits = as_float_array(logits, "logits")
    check_shape(logits, (None, None, None), "logits", "(T, B, V)")
    T, B, V = logits.shape
    if T == 0 or B == 0 or V == 0:
        raise ValueError(f"logits must have T, B, V >= 1, got shape {logits.shape}")
    targets = np.asarray(targets)
    if targets.dtype.kind not in "iu":
        raise ValueError(f"targets must be an integer array of class ids, got dtype {targets.dtype}")
    check_shape(targets, (T, B), "targets", "(T, B)")
    if targets.min() < 0 or targets.max() >= V:
        raise ValueError(f"targets must lie in [0, V) = [0, {V}), got values from {targets.min()} to {targets.max()}")
    log_probs = _log_softmax(logits)                                        # log p, (T, B, V)
    t, b = np.indices((T, B))
    loss = -float(np.mean(log_probs[t, b, targets]))                        # mean of -log p_c
    dlogits = np.exp(log_probs)                                             # p, (T, B, V)
    dlogits[t, b, targets] -= 1.0                                           # p - e_c
    return loss, dlogits / (T * B)
