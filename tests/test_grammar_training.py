"""The side-by-side trainers of ``companion.grammar_training``: budgets, records and schedules.

* Every method spends the budget of presentations it is given (a line search may overshoot by its own
  calls), records the objective at 0 first and at its end, and gives the same run twice.
* The online schedule is momentum after every string in the pass's shuffled order, the batch schedule
  momentum on the mean of the strings' gradients: both rebuilt here by hand.
* ``string_is_predicted`` against its rule applied by hand.
"""
import numpy as np
import pytest

from companion import grammar_training as gt
from companion import grammars
from companion.cells import Elman
from companion.losses import sigmoid
from companion.model import init_model, predict, sequence_loss_and_grads

from helpers import TIGHT

EPOCHS = 2
COUNT = 6


def _problem(seed=0, language=None):
    language = language or grammars.AnBn(1, 4)
    cell = Elman(language.size, 3)
    return cell, init_model(cell, language.size, seed), gt.make_task(language, seed + 10, COUNT)


@pytest.mark.parametrize("method", sorted(gt.METHODS))
def test_every_method_spends_its_budget_and_records_the_objective(method):
    cell, params, task = _problem()
    start = {key: value.copy() for key, value in params.items()}
    run = gt.train_method(method, cell, params, task, epochs=EPOCHS, seed=3)
    assert run.method == method and run.presentations[0] == 0 and run.seconds > 0
    assert len(run.presentations) == len(run.losses)
    assert all(b > a for a, b in zip(run.presentations, run.presentations[1:]))
    if method in ("steepest_descent", "conjugate_gradient"):
        assert EPOCHS * COUNT <= run.presentations[-1]                  # stops after the call that reaches it
    else:
        assert run.presentations[-1] == EPOCHS * COUNT
    np.testing.assert_allclose(run.losses[0], gt.objective(cell, start, task.batch)[0], **TIGHT)
    np.testing.assert_allclose(run.losses[-1], gt.objective(cell, params, task.batch)[0], **TIGHT)
    assert run.losses[-1] < run.losses[0]
    again = {key: value.copy() for key, value in start.items()}
    repeat = gt.train_method(method, cell, again, task, epochs=EPOCHS, seed=3)
    assert repeat.losses == run.losses                                  # deterministic
    for key in params:
        np.testing.assert_array_equal(again[key], params[key])


@pytest.mark.parametrize("method", ["bptt_online", "rprop", "ndekf_rtrl"])
def test_without_records_the_training_is_the_same(method):
    cell, params, task = _problem()
    quiet = {key: value.copy() for key, value in params.items()}
    gt.train_method(method, cell, params, task, epochs=EPOCHS, seed=1)
    run = gt.train_method(method, cell, quiet, task, epochs=EPOCHS, seed=1, record=False)
    for key in params:
        np.testing.assert_array_equal(quiet[key], params[key])
    assert len(run.losses) == (EPOCHS if method == "rprop" else 0)     # full batch: the steps' own losses


def _by_hand(cell, params, task, online, lr, beta, seed):
    velocity = {key: np.zeros_like(value) for key, value in params.items()}
    rng = np.random.default_rng(seed)
    for _ in range(EPOCHS):
        order = rng.permutation(task.size) if online else range(task.size)
        gradients = []
        for i in order:
            string = grammars.encode(task.language, [task.strings[i]])
            _, grads = sequence_loss_and_grads(cell, params, string.xs, string.legal, loss="sigmoid_mse")
            if online:
                gradients = [grads]
                _momentum_step(params, velocity, grads, lr, beta)
            else:
                gradients.append(grads)
        if not online:
            mean = {key: np.mean([g[key] for g in gradients], axis=0) for key in params}
            _momentum_step(params, velocity, mean, lr, beta)


def _momentum_step(params, velocity, grads, lr, beta):
    for key in params:
        velocity[key] = beta * velocity[key] + grads[key]
        params[key] -= lr * velocity[key]


@pytest.mark.parametrize("method, online", [("bptt_online", True), ("bbptt", False)])
def test_snns_schedules_are_momentum_after_each_string_or_each_pass(method, online):
    cell, params, task = _problem(seed=1, language=grammars.Reber())
    expected = {key: value.copy() for key, value in params.items()}
    gt.train_method(method, cell, params, task, epochs=EPOCHS, seed=5, settings={"lr": 0.3, "momentum": 0.5})
    _by_hand(cell, expected, task, online, 0.3, 0.5, seed=5)
    for key in params:
        np.testing.assert_allclose(params[key], expected[key], **TIGHT)


def test_string_is_predicted_applies_the_half_threshold_to_every_output():
    cell, params, task = _problem(seed=2)
    outputs = sigmoid(predict(cell, params, task.batch.xs))
    expected = [all(np.array_equal(outputs[t, b] > 0.5, task.batch.legal[t, b] > 0.5)
                    for t in range(task.batch.xs.shape[0]) if task.batch.mask[t, b]) for b in range(task.size)]
    np.testing.assert_array_equal(gt.string_is_predicted(cell, params, task.batch), expected)
    params["W_hy"][...] = 0.0
    params["b_y"][...] = 5.0                                            # every symbol predicted everywhere
    assert not gt.string_is_predicted(cell, params, task.batch).any()


def test_bad_arguments_are_refused():
    cell, params, task = _problem()
    with pytest.raises(ValueError, match="method must be one of"):
        gt.train_method("lbfgs", cell, params, task, epochs=1)
    with pytest.raises(ValueError, match=r"settings of 'rprop' are \['lr'\], got unknown \['momentum'\]"):
        gt.train_method("rprop", cell, params, task, epochs=1, settings={"momentum": 0.9})
    with pytest.raises(ValueError, match="task must be a GrammarTask"):
        gt.train_method("rprop", cell, params, task.batch, epochs=1)
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        gt.train_method("rprop", cell, params, task, epochs=0)
    with pytest.raises(ValueError, match="count must be a positive integer"):
        gt.make_task(grammars.Reber(), 0, 0)
