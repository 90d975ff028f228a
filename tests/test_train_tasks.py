"""The training loop on the sine task, and the tasks themselves: shapes, determinism, targets."""
import functools
import itertools

import numpy as np
import pytest

from companion.cells import Elman
from companion.model import init_model, sequence_loss_and_grads
from companion.optim import SGD, Adam, global_norm
from companion.tasks import CharVocabulary, char_batches, load_text, one_hot, sine_wave
from companion.train import History, train


def _sine_run(steps=300, clip=None, optimizer=None, seed=0):
    cell = Elman(1, 8)
    params = init_model(cell, 1, seed)
    data_rng = np.random.default_rng(seed + 1)
    batches = (sine_wave(data_rng, batch=8, steps=20) for _ in itertools.count())
    loss_and_grads = functools.partial(sequence_loss_and_grads, cell)
    history = train(
        lambda p, batch: loss_and_grads(p, *batch), params, optimizer or Adam(0.02), batches,
        steps=steps, clip=clip, progress=False,
    )
    return history, params


# ----- training ----------------------------------------------------------------------------------------
def test_training_on_sines_lowers_the_loss():
    history, _ = _sine_run()
    assert isinstance(history, History)
    assert history.steps == len(history.losses) == len(history.grad_norms) == 300
    first, last = np.mean(history.losses[:20]), np.mean(history.losses[-20:])
    assert last < 0.25 * first, (first, last)


def test_training_is_deterministic():
    (h1, p1), (h2, p2) = _sine_run(steps=50), _sine_run(steps=50)
    assert h1 == h2
    for key in p1:
        np.testing.assert_array_equal(p1[key], p2[key])


def test_grad_norms_are_recorded_before_clipping_and_clipping_bounds_the_step():
    cell = Elman(1, 4)
    params = init_model(cell, 1, 3)
    batch = sine_wave(4, batch=4, steps=10)
    unclipped_norm = global_norm(sequence_loss_and_grads(cell, params, *batch)[1])
    clip = unclipped_norm / 10.0
    before = {key: value.copy() for key, value in params.items()}
    history = train(lambda p, b: sequence_loss_and_grads(cell, p, *b), params, SGD(1.0), itertools.repeat(batch),
                    steps=1, clip=clip, progress=False)
    assert history.grad_norms == [pytest.approx(unclipped_norm, rel=1e-14)]     # recorded before clipping
    step = {key: params[key] - before[key] for key in params}
    np.testing.assert_allclose(global_norm(step), clip, rtol=1e-5)                 # SGD(lr=1) moved by the clipped norm


def test_clipping_changes_the_trajectory():
    plain, _ = _sine_run(steps=20, optimizer=SGD(0.5))
    clipped, _ = _sine_run(steps=20, optimizer=SGD(0.5), clip=0.05)
    assert plain.losses[0] == clipped.losses[0]
    assert plain.losses[1:] != clipped.losses[1:]
    assert plain.grad_norms[0] == clipped.grad_norms[0] > 0.05


def test_progress_bar_goes_to_stderr_only_when_asked(capsys):
    _sine_run(steps=5)
    assert capsys.readouterr() == ("", "")
    cell = Elman(1, 2)
    params = init_model(cell, 1, 0)
    train(lambda p, b: sequence_loss_and_grads(cell, p, *b), params, SGD(0.1),
          itertools.repeat(sine_wave(0, batch=1, steps=3)), steps=5, description="sines")
    out, err = capsys.readouterr()
    assert out == "" and "sines" in err and "5/5" in err and "loss=" in err


def test_train_rejects_bad_input():
    cell = Elman(1, 2)
    params = init_model(cell, 1, 0)
    batch = sine_wave(0, batch=1, steps=3)

    def f(p, b):
        return sequence_loss_and_grads(cell, p, *b)

    with pytest.raises(ValueError, match="batches"):
        train(f, params, SGD(0.1), [batch, batch], steps=3, progress=False)
    with pytest.raises(ValueError, match="batches"):
        train(f, params, SGD(0.1), lambda step: batch, steps=3, progress=False)
    with pytest.raises(ValueError, match="steps"):
        train(f, params, SGD(0.1), itertools.repeat(batch), steps=0, progress=False)
    with pytest.raises(ValueError, match="clip"):
        train(f, params, SGD(0.1), itertools.repeat(batch), steps=1, clip=-1.0, progress=False)
    with pytest.raises(ValueError, match="optimizer"):
        train(f, params, "adam", itertools.repeat(batch), steps=1, progress=False)
    with pytest.raises(ValueError, match="loss_and_grads"):
        train(None, params, SGD(0.1), itertools.repeat(batch), steps=1, progress=False)
    with pytest.raises(ValueError, match="loss_and_grads"):
        train(lambda p, b: (float("nan"), f(p, b)[1]), params, SGD(0.1), itertools.repeat(batch), steps=1,
              progress=False)


# ----- the sine task -----------------------------------------------------------------------------------
@pytest.mark.parametrize("batch, steps", [(1, 1), (1, 6), (5, 2), (3, 30)])
def test_sine_wave_shapes_and_determinism(batch, steps):
    xs, targets = sine_wave(np.random.default_rng(3), batch=batch, steps=steps)
    assert xs.shape == targets.shape == (steps, batch, 1)
    assert xs.dtype == targets.dtype == np.float64
    xs2, targets2 = sine_wave(3, batch=batch, steps=steps)
    np.testing.assert_array_equal(xs, xs2)
    np.testing.assert_array_equal(targets, targets2)
    assert not np.array_equal(xs, sine_wave(4, batch=batch, steps=steps)[0])
    np.testing.assert_array_equal(targets[:-1], xs[1:])                           # the next sample


def test_sine_wave_targets_continue_the_sine():
    # every sine obeys s(t + 1) + s(t - 1) = 2 cos(omega) s(t); fit cos(omega) per sequence on the whole
    # sequence including the last target, which is the one sample that xs does not contain
    xs, targets = sine_wave(5, batch=4, steps=12, omega=(0.3, 0.5))
    samples = np.concatenate([xs[:, :, 0], targets[-1:, :, 0]])                # (T + 1, B)
    for s in samples.T:
        lhs, rhs = s[2:] + s[:-2], s[1:-1]
        two_cos = float(lhs @ rhs / (rhs @ rhs))
        np.testing.assert_allclose(lhs, two_cos * rhs, atol=1e-12)
        assert 2 * np.cos(0.5) - 1e-12 <= two_cos <= 2 * np.cos(0.3) + 1e-12
    assert np.abs(samples).max() <= 1.0


# ----- the tiny text -----------------------------------------------------------------------------------
def test_tiny_text_and_vocabulary_round_trip():
    text = load_text()
    assert 2000 <= len(text) <= 4000 and "backpropagation through time" in text
    vocab = CharVocabulary.from_text(text)
    assert list(vocab.chars) == sorted(set(text)) and vocab.size == len(set(text))
    ids = vocab.encode(text)
    assert ids.dtype == np.int64 and ids.shape == (len(text),)
    assert vocab.decode(ids) == text
    assert vocab.decode(vocab.encode("the state")) == "the state"
    assert vocab.chars[vocab.encode("a")[0]] == "a"


@pytest.mark.parametrize("batch, steps", [(1, 1), (4, 16), (2, 40)])
def test_char_batches_are_next_character_windows(batch, steps):
    text = load_text()
    vocab = CharVocabulary.from_text(text)
    ids = vocab.encode(text)
    xs, targets = char_batches(ids, np.random.default_rng(6), batch=batch, steps=steps, vocab_size=vocab.size)
    assert xs.shape == (steps, batch, vocab.size) and targets.shape == (steps, batch)
    assert xs.dtype == np.float64 and targets.dtype == np.int64
    np.testing.assert_array_equal(xs.sum(axis=-1), 1.0)                          # one-hot
    inputs = xs.argmax(axis=-1)                                                  # (T, B)
    np.testing.assert_array_equal(targets[:-1], inputs[1:])                      # the next character
    for b in range(batch):
        assert vocab.decode(np.append(inputs[:, b], targets[-1, b])) in text     # a real window of the text
    xs2, targets2 = char_batches(ids, 6, batch=batch, steps=steps, vocab_size=vocab.size)
    np.testing.assert_array_equal(xs, xs2)
    np.testing.assert_array_equal(targets, targets2)


def test_char_batches_reach_both_ends_of_the_text():
    ids = np.arange(6)                                                           # windows of T + 1 = 4: starts 0..2
    _, targets = char_batches(ids, 0, batch=200, steps=3, vocab_size=6)
    assert set(targets[-1]) == {3, 4, 5}


def test_one_hot():
    np.testing.assert_array_equal(one_hot(np.array([[2, 0]]), vocab_size=3), [[[0, 0, 1], [1, 0, 0]]])


def test_tasks_reject_bad_input():
    vocab = CharVocabulary.from_text("abc")
    ids = vocab.encode("abcabc")
    with pytest.raises(ValueError, match="text"):
        vocab.encode("abd")
    with pytest.raises(ValueError, match="text"):
        CharVocabulary.from_text("")
    with pytest.raises(ValueError, match="ids"):
        vocab.decode(np.array([0, 3]))
    with pytest.raises(ValueError, match="ids"):
        vocab.decode(np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="steps"):
        char_batches(ids, 0, batch=2, steps=6, vocab_size=3)                    # needs 7 ids
    with pytest.raises(ValueError, match="text_ids"):
        char_batches(ids, 0, batch=2, steps=3, vocab_size=2)                    # id 2 >= V
    with pytest.raises(ValueError, match="text_ids"):
        char_batches(ids.reshape(2, 3), 0, batch=2, steps=1, vocab_size=3)
    with pytest.raises(ValueError, match="batch"):
        char_batches(ids, 0, batch=0, steps=3, vocab_size=3)
    with pytest.raises(ValueError, match="rng"):
        char_batches(ids, None, batch=1, steps=3, vocab_size=3)
    with pytest.raises(ValueError, match="ids"):
        one_hot(np.array([3]), vocab_size=3)
    with pytest.raises(ValueError, match="steps"):
        sine_wave(0, batch=2, steps=0)
    with pytest.raises(ValueError, match="omega"):
        sine_wave(0, batch=2, steps=3, omega=(0.5, 0.1))
    with pytest.raises(ValueError, match="omega"):
        sine_wave(0, batch=2, steps=3, omega=0.5)
