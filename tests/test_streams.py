"""Streams: a long sequence trained window by window, the state carried from one window to the next."""
from __future__ import annotations

import functools

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from companion import bptt
from companion.cells import LSTM, Elman
from companion.model import init_model, sequence_loss_and_grads
from companion.optim import SGD
from companion.tasks import CharVocabulary, load_text, stream_windows
from companion.train import train

from helpers import TIGHT, state_parts

TEXT = load_text()
VOCAB = CharVocabulary(TEXT)
IDS = VOCAB.encode(TEXT)


def test_windows_continue_each_lane():
    B, T = 4, 7
    windows = list(stream_windows(IDS, batch=B, steps=T, vocab_size=VOCAB.size))
    lane = (IDS.size - 1) // B
    assert len(windows) == lane // T
    for b in range(B):                                   # lane b reads the text from b * L on, in order
        inputs = np.concatenate([xs[:, b].argmax(axis=1) for xs, _ in windows])
        targets = np.concatenate([ys[:, b] for _, ys in windows])
        assert_array_equal(inputs, IDS[b * lane: b * lane + inputs.size])
        assert_array_equal(targets, IDS[b * lane + 1: b * lane + 1 + targets.size])


def test_windows_check_their_arguments_at_once():
    with pytest.raises(ValueError, match="batch must be a positive integer"):
        stream_windows(IDS, batch=0, steps=3, vocab_size=VOCAB.size)
    with pytest.raises(ValueError, match=r"text_ids must hold at least batch \* steps \+ 1 = 13 ids"):
        stream_windows(IDS[:12], batch=3, steps=4, vocab_size=VOCAB.size)


@pytest.mark.parametrize("cell", [Elman(3, 5), LSTM(3, 5)], ids=repr)
def test_sequence_loss_and_grads_returns_the_final_state(cell):
    rng = np.random.default_rng(3)
    params = init_model(cell, 2, 0)
    xs, targets = rng.normal(size=(6, 2, 3)), rng.normal(size=(6, 2, 2))
    loss, grads = sequence_loss_and_grads(cell, params, xs, targets)
    loss_s, grads_s, final = sequence_loss_and_grads(cell, params, xs, targets, return_final_state=True)
    assert loss_s == loss and all(np.array_equal(grads[key], grads_s[key]) for key in grads)
    _, cache = bptt.forward(cell, {key: params[key] for key in cell.param_shapes()}, xs)
    for got, want in zip(state_parts(final), state_parts(cache.final_state)):
        assert_array_equal(got, want)


@pytest.mark.parametrize("cell", [Elman(VOCAB.size, 6), LSTM(VOCAB.size, 6)], ids=repr)
def test_carried_windows_are_the_whole_stream(cell):
    """With fixed parameters, windows chained through their final states give the whole stream's loss."""
    B, T, count = 3, 5, 4
    windows = list(stream_windows(IDS, batch=B, steps=T, vocab_size=VOCAB.size))[:count]
    params = init_model(cell, VOCAB.size, 1)
    loss_fn = functools.partial(sequence_loss_and_grads, cell, loss="cross_entropy", return_final_state=True)
    state, losses = None, []
    for xs, targets in windows:
        loss, _, state = loss_fn(params, xs, targets, state0=state)
        losses.append(loss)
    whole_xs = np.concatenate([xs for xs, _ in windows])
    whole_targets = np.concatenate([targets for _, targets in windows])
    whole_loss, _, whole_final = loss_fn(params, whole_xs, whole_targets)
    assert_allclose(np.mean(losses), whole_loss, **TIGHT)        # every window has T steps: the mean of means
    for got, want in zip(state_parts(state), state_parts(whole_final)):
        assert_allclose(got, want, **TIGHT)
    fresh_loss, _ = sequence_loss_and_grads(cell, params, *windows[1], loss="cross_entropy")
    assert abs(fresh_loss - losses[1]) > 1e-6                    # starting from zeros is really different


def test_train_carries_the_state_between_windows():
    cell = Elman(VOCAB.size, 6)
    params = init_model(cell, VOCAB.size, 2)
    seen, returned = [], []

    def loss_and_grads(p, batch, state0):
        seen.append(state0)
        loss, grads, final = sequence_loss_and_grads(cell, p, *batch, loss="cross_entropy", state0=state0,
                                                     return_final_state=True)
        returned.append(final)
        return loss, grads, final

    windows = stream_windows(IDS, batch=2, steps=8, vocab_size=VOCAB.size)
    history = train(loss_and_grads, params, SGD(0.1), windows, steps=5, carry_state=True, progress=False)
    assert history.steps == 5 and seen[0] is None
    for k in range(1, 5):
        assert seen[k] is returned[k - 1]
    # the same run by hand: each window from the previous final state, parameters updated in between
    by_hand, state = init_model(cell, VOCAB.size, 2), None
    for k, batch in zip(range(5), stream_windows(IDS, batch=2, steps=8, vocab_size=VOCAB.size)):
        loss, grads, state = sequence_loss_and_grads(cell, by_hand, *batch, loss="cross_entropy", state0=state,
                                                     return_final_state=True)
        assert loss == history.losses[k]
        SGD(0.1).step(by_hand, grads)
    for key in params:
        assert_array_equal(params[key], by_hand[key])
