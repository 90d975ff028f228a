"""The pieces the classic trainers need: the sigmoid squared error, losses over padded strings (masks),
and the SNNS online and batch schedules of ``companion.train.train`` (``accumulate``).

* ``sigmoid_mse`` against torch autograd (float64) and without overflow at large logits.
* The masked loss of a padded batch of strings is the length-weighted mean of each string's own loss,
  gradients included (padding leaks nothing), and equals torch autograd and central differences.
* ``accumulate=k`` is SGD on the mean gradient of k batches, and consumes k batches per step.
"""
import functools
import itertools

import numpy as np
import pytest
import torch

from companion import grammars
from companion.cells import Elman
from companion.gradcheck import numerical_gradient, relative_errors
from companion.losses import sigmoid, sigmoid_mse
from companion.model import init_model, sequence_loss_and_grads
from companion.optim import SGD
from companion.train import train

from helpers import GRAD_TOL, TIGHT


def _grammar_problem(count=5, seed=0):
    language = grammars.Reber()
    batch = grammars.encode(language, language.sample(seed, count))
    cell = Elman(language.size, 4)
    return language, batch, cell, init_model(cell, language.size, seed + 1)


# ----- the sigmoid squared error ---------------------------------------------------------------------------
def test_sigmoid_mse_equals_torch():
    rng = np.random.default_rng(0)
    logits, targets = rng.normal(scale=3, size=(4, 3, 5)), rng.uniform(size=(4, 3, 5))
    loss, dlogits = sigmoid_mse(logits, targets)
    y = torch.tensor(logits, requires_grad=True)
    reference = torch.nn.functional.mse_loss(torch.sigmoid(y), torch.tensor(targets))
    reference.backward()
    np.testing.assert_allclose(loss, reference.item(), **TIGHT)
    np.testing.assert_allclose(dlogits, y.grad.numpy(), **TIGHT)


def test_sigmoid_does_not_overflow():
    with np.errstate(all="raise"):
        z = sigmoid(np.array([-1000.0, 0.0, 1000.0]))
    np.testing.assert_array_equal(z, [0.0, 0.5, 1.0])


def test_sigmoid_mse_refuses_targets_outside_the_unit_interval():
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 1\]"):
        sigmoid_mse(np.zeros((1, 1, 2)), np.array([[[0.0, 2.0]]]))
    with pytest.raises(ValueError, match="targets must have shape"):
        sigmoid_mse(np.zeros((1, 1, 2)), np.zeros((1, 1, 3)))


# ----- losses over padded strings ------------------------------------------------------------------------
@pytest.mark.parametrize("loss", ["sigmoid_mse", "cross_entropy"])
def test_masked_loss_is_the_length_weighted_mean_of_each_strings_loss(loss):
    _, batch, cell, params = _grammar_problem()
    targets = batch.legal if loss == "sigmoid_mse" else batch.targets
    value, grads = sequence_loss_and_grads(cell, params, batch.xs, targets, loss=loss, mask=batch.mask)
    lengths = batch.mask.sum(axis=0)
    assert len(set(lengths.tolist())) > 1                               # the strings do differ in length
    expected_value, expected_grads = 0.0, {key: 0.0 for key in params}
    for b, length in enumerate(lengths):                                # each string alone, unpadded
        own_value, own_grads = sequence_loss_and_grads(cell, params, batch.xs[:length, b:b + 1],
                                                       targets[:length, b:b + 1], loss=loss)
        expected_value += length * own_value / lengths.sum()
        for key in params:
            expected_grads[key] = expected_grads[key] + length * own_grads[key] / lengths.sum()
    np.testing.assert_allclose(value, expected_value, **TIGHT)
    for key in params:
        np.testing.assert_allclose(grads[key], expected_grads[key], **TIGHT)


def test_masked_sigmoid_loss_equals_torch_autograd_and_finite_differences():
    _, batch, cell, params = _grammar_problem(count=3, seed=4)
    value, grads = sequence_loss_and_grads(cell, params, batch.xs, batch.legal, loss="sigmoid_mse",
                                           mask=batch.mask)
    p = {key: torch.tensor(array, requires_grad=True) for key, array in params.items()}
    xs = torch.tensor(batch.xs)
    h, outputs = torch.zeros(xs.shape[1], 4, dtype=torch.float64), []
    for x_t in xs:
        h = torch.tanh(x_t @ p["W_xh"].T + h @ p["W_hh"].T + p["b_h"])
        outputs.append(torch.sigmoid(h @ p["W_hy"].T + p["b_y"]))
    mask = torch.tensor(batch.mask)
    reference = torch.nn.functional.mse_loss(torch.stack(outputs)[mask], torch.tensor(batch.legal)[mask])
    reference.backward()
    np.testing.assert_allclose(value, reference.item(), **TIGHT)
    for key in params:
        np.testing.assert_allclose(grads[key], p[key].grad.numpy(), **TIGHT)

    def loss_of(arrays):
        return sequence_loss_and_grads(cell, arrays, batch.xs, batch.legal, loss="sigmoid_mse", mask=batch.mask)[0]

    errors = relative_errors(grads, numerical_gradient(loss_of, params))
    assert max(errors.values()) < GRAD_TOL, errors


def test_bad_masks_are_refused():
    _, batch, cell, params = _grammar_problem()
    T, B = batch.mask.shape
    call = functools.partial(sequence_loss_and_grads, cell, params, batch.xs, batch.legal, loss="sigmoid_mse")
    with pytest.raises(ValueError, match=rf"mask must be a bool array of shape \(T, B\) = \({T}, {B}\)"):
        call(mask=batch.mask[:-1])
    with pytest.raises(ValueError, match="mask must be a bool array"):
        call(mask=batch.mask.astype(float))
    with pytest.raises(ValueError, match="mask must be true at one step at least"):
        call(mask=np.zeros_like(batch.mask))
    with pytest.raises(ValueError, match="mask and last_step_only cannot be combined"):
        call(mask=batch.mask, last_step_only=True)
    with pytest.raises(ValueError, match=r"targets must start with the \(T, B\)"):
        sequence_loss_and_grads(cell, params, batch.xs, batch.legal[:, :1], loss="sigmoid_mse", mask=batch.mask)


# ----- the online and batch schedules ---------------------------------------------------------------------
def _per_string_problem():
    language, _, cell, params = _grammar_problem()
    strings = language.sample(7, 6)
    patterns = [grammars.encode(language, [string]) for string in strings]   # one pattern per batch
    loss_and_grads = functools.partial(sequence_loss_and_grads, cell, loss="sigmoid_mse")
    return patterns, params, lambda p, batch: loss_and_grads(p, batch.xs, batch.legal)


def test_batch_schedule_is_sgd_on_the_mean_gradient():
    patterns, params, loss_and_grads = _per_string_problem()
    expected = {key: value.copy() for key, value in params.items()}
    for _ in range(3):                                                  # three epochs by hand
        results = [loss_and_grads(expected, pattern) for pattern in patterns]
        for key in expected:
            expected[key] -= 0.5 * np.mean([grads[key] for _, grads in results], axis=0)
    history = train(loss_and_grads, params, SGD(0.5), itertools.cycle(patterns), steps=3,
                    accumulate=len(patterns), progress=False)
    assert history.steps == 3
    for key in params:
        np.testing.assert_allclose(params[key], expected[key], **TIGHT)


def test_online_schedule_updates_after_every_pattern():
    patterns, params, loss_and_grads = _per_string_problem()
    expected = {key: value.copy() for key, value in params.items()}
    losses = []
    for pattern in patterns:
        loss, grads = loss_and_grads(expected, pattern)
        losses.append(loss)
        for key in expected:
            expected[key] -= 0.5 * grads[key]
    history = train(loss_and_grads, params, SGD(0.5), iter(patterns), steps=len(patterns), progress=False)
    np.testing.assert_allclose(history.losses, losses, **TIGHT)
    for key in params:
        np.testing.assert_allclose(params[key], expected[key], **TIGHT)


def test_accumulate_is_checked_and_counts_batches():
    patterns, params, loss_and_grads = _per_string_problem()
    with pytest.raises(ValueError, match="accumulate must be a positive integer"):
        train(loss_and_grads, params, SGD(0.1), iter(patterns), steps=1, accumulate=0, progress=False)
    with pytest.raises(ValueError, match=r"batches ran out after 6 batches; steps=2 with accumulate=4 needs 8"):
        train(loss_and_grads, params, SGD(0.1), iter(patterns), steps=2, accumulate=4, progress=False)
