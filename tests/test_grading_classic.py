"""The grader of assignment 9 (``companion.grading.classic``) without nbgrader: its problems pose every case
they claim to, its references agree with the update rules written out here, a right answer passes every
check, and each seeded mistake fails with the message that names it."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from companion.grading import classic as grade
from companion.grading.core import GradingError

SEEDS = range(20)


def student(bug: str | None = None) -> SimpleNamespace:
    """A student's five functions, written from the assignment's equations, with one seeded ``bug`` or none."""

    def irprop_minus_step(theta, grad, prev_grad, delta, etas=(0.5, 1.2), delta_bounds=(1e-6, 50.0)):
        eta_minus, eta_plus = etas
        low, high = (0.0, np.inf) if bug == "rprop_unbounded" else delta_bounds
        product = grad * prev_grad
        grows = product >= 0 if bug == "rprop_grows_on_zero" else product > 0
        new_delta = np.where(grows, np.minimum(eta_plus * delta, high),
                             np.where(product < 0, np.maximum(eta_minus * delta, low), delta))
        changed = product < 0
        moved = grad if bug == "rprop_minus" else np.where(changed, 0.0, grad)
        remembered = grad if bug in ("rprop_minus", "rprop_keeps_g") else np.where(changed, 0.0, grad)
        step = delta if bug == "rprop_old_delta" else new_delta
        update = step * moved if bug == "rprop_gradient_step" else step * np.sign(moved)
        result = (theta - update, remembered, new_delta)
        return result[:2] if bug == "rprop_two_values" else result

    def polak_ribiere_direction(grad, prev_grad, prev_direction):
        if prev_grad is None:
            return -grad, 0.0
        if bug == "fletcher_reeves":
            beta = grad @ grad / (prev_grad @ prev_grad)
        else:
            beta = grad @ (grad - prev_grad) / (prev_grad @ prev_grad)
        if bug != "pr_without_max":
            beta = max(0.0, beta)
        direction = -grad + beta * prev_direction
        if grad @ direction >= 0 and bug != "no_downhill_restart":
            return -grad, 0.0
        return direction, beta

    def joseph_update(P, K, H, R):
        reduced = np.eye(P.shape[0]) - K @ H
        if bug == "short_form":
            return reduced @ P
        return reduced @ P @ reduced.T + (0.0 if bug == "joseph_without_KRK" else K @ R @ K.T)

    def ekf_update(theta, P, predictions, targets, H, R, Q):
        prior = P if bug == "ekf_without_Q" else P + Q
        S = H @ prior @ H.T + R
        K = prior @ H.T @ np.linalg.inv(S)
        innovation = predictions - targets if bug == "ekf_innovation_sign" else targets - predictions
        new_P = prior - K @ H @ prior if bug == "ekf_short_form" else joseph_update(prior, K, H, R)
        return theta + K @ innovation, (prior if bug == "ekf_no_measurement_update" else new_P)

    def decoupled_ekf_update(theta, blocks, groups, predictions, targets, H, R):
        innovation = targets - predictions
        shares = [H[:, index] @ P @ H[:, index].T for P, index in zip(blocks, groups)]
        theta = theta.copy()
        new_blocks = []
        for P, index, share in zip(blocks, groups, shares):
            S = R + share if bug == "per_block_S" else R + sum(shares)
            K = P @ H[:, index].T @ np.linalg.inv(S)
            theta[index] += K @ innovation
            noise = R if bug == "block_joseph_with_R" else R + sum(shares) - share
            new_blocks.append(joseph_update(P, K, H[:, index], noise))
        return theta, new_blocks

    return SimpleNamespace(irprop_minus_step=irprop_minus_step, polak_ribiere_direction=polak_ribiere_direction,
                           joseph_update=joseph_update, ekf_update=ekf_update,
                           decoupled_ekf_update=decoupled_ekf_update)


def run_all_checks(answer: SimpleNamespace, seeds=SEEDS) -> None:
    grade.check_irprop(answer.irprop_minus_step, seeds)
    grade.check_polak_ribiere(answer.polak_ribiere_direction, seeds)
    grade.check_joseph(answer.joseph_update, seeds)
    grade.check_ekf_update(answer.ekf_update, seeds, joseph_update=answer.joseph_update)
    grade.check_decoupled(answer.decoupled_ekf_update, seeds, joseph_update=answer.joseph_update)


def test_reference_rprop_follows_the_rule_entry_by_entry():
    for seed in range(5):
        problem = grade.draw_rprop_problem(seed)
        eta_minus, eta_plus = problem.etas
        low, high = problem.delta_bounds
        for step in grade.reference_rprop(problem):
            for index in np.ndindex(problem.theta.shape):
                g, g_prev, delta = step.grad[index], step.prev[index], step.delta[index]
                if g * g_prev > 0:
                    delta, moved = min(eta_plus * delta, high), g
                elif g * g_prev < 0:
                    delta, moved = max(eta_minus * delta, low), 0.0
                else:
                    moved = g
                assert step.new_delta[index] == pytest.approx(delta, rel=1e-14)
                assert step.new_prev[index] == moved
                assert step.new_theta[index] == pytest.approx(step.theta[index] - np.sign(moved) * delta, rel=1e-14)


def test_rprop_problems_pose_every_case():
    for seed in range(23):
        problem = grade.draw_rprop_problem(seed)
        low, high = problem.delta_bounds
        steps = grade.reference_rprop(problem)
        products = np.array([step.grad * step.prev for step in steps])
        assert (products > 0).any() and (products < 0).any() and (products == 0).any()
        assert (problem.grads == 0).any()
        deltas = np.array([step.new_delta for step in steps])
        assert (deltas == high).any() and (deltas == low).any()
        sizes = np.abs(problem.grads[problem.grads != 0])
        assert sizes.max() / sizes.min() > 1e3


def test_direction_problems_pose_every_case():
    for seed in range(23):
        cases = grade.draw_direction_problem(seed)
        assert [case.kind for case in cases] == list(grade.DIRECTION_CASES)
        for case in cases:
            direction, beta = grade.reference_direction(case)
            assert case.grad @ direction < 0
            if case.kind == "conjugate":
                assert beta > 0 and np.allclose(direction, -case.grad + beta * case.prev_direction)
            else:
                assert beta == 0 and np.array_equal(direction, -case.grad)
            if case.kind == "clipped":                         # only the max with 0 makes the difference
                raw = grade._raw_beta(case.grad, case.prev_grad)
                assert raw < 0 and case.grad @ (-case.grad + raw * case.prev_direction) < 0
            if case.kind == "uphill":
                raw = grade._raw_beta(case.grad, case.prev_grad)
                assert raw > 0 and case.grad @ (-case.grad + raw * case.prev_direction) > 0


def test_reference_ekf_is_the_textbook_step_and_the_joseph_gain_is_not_optimal():
    for seed in range(10):
        problem = grade.draw_ekf_problem(seed)
        prior = problem.P + problem.Q
        K = prior @ problem.H.T @ np.linalg.inv(problem.H @ prior @ problem.H.T + problem.R)
        theta, P = grade.reference_ekf(problem)
        np.testing.assert_allclose(theta, problem.theta + K @ (problem.targets - problem.predictions), rtol=1e-12)
        np.testing.assert_allclose(P, prior - K @ problem.H @ prior, rtol=1e-10, atol=1e-12)
        joseph = grade.draw_joseph_problem(seed)
        reduced = np.eye(joseph.P.shape[0]) - joseph.K @ joseph.H
        expected = grade.ekf.joseph_update(*joseph)
        short = reduced @ joseph.P
        assert np.linalg.norm(short - expected) > 1e-3 * np.linalg.norm(expected)


def test_reference_decoupled_is_the_global_update_restricted_to_the_blocks():
    for seed in range(10):
        problem = grade.draw_decoupled_problem(seed)
        n = problem.theta.shape[0]
        assert sorted(np.concatenate(problem.groups).tolist()) == list(range(n)) and len(problem.groups) >= 2
        full = np.zeros((n, n))
        for index, block in zip(problem.groups, problem.blocks):
            full[np.ix_(index, index)] = block
        H, R = problem.H, problem.R
        K = full @ H.T @ np.linalg.inv(H @ full @ H.T + R)                 # the global step on block-diagonal P
        posterior = full - K @ H @ full
        theta, blocks = grade.reference_decoupled(problem)
        np.testing.assert_allclose(theta, problem.theta + K @ (problem.targets - problem.predictions), rtol=1e-12)
        for index, block in zip(problem.groups, blocks):
            np.testing.assert_allclose(block, posterior[np.ix_(index, index)], rtol=1e-10, atol=1e-12)


def test_right_answers_pass_every_check():
    run_all_checks(student())


def test_the_short_form_passes_the_ekf_step_at_the_optimal_gain():
    grade.check_ekf_update(student("ekf_short_form").ekf_update, SEEDS)


BUGS = {
    "rprop_minus": (grade.check_irprop, "irprop_minus_step", "that is Rprop- (no backtracking, no forgetting)"),
    "rprop_keeps_g": (grade.check_irprop, "irprop_minus_step", "you forgot to zero the remembered gradient"),
    "rprop_unbounded": (grade.check_irprop, "irprop_minus_step", "(capped at Delta_max here)"),
    "rprop_grows_on_zero": (grade.check_irprop, "irprop_minus_step", "so Delta is kept and theta moves"),
    "rprop_old_delta": (grade.check_irprop, "irprop_minus_step", "your theta moved by the old Delta"),
    "rprop_gradient_step": (grade.check_irprop, "irprop_minus_step", "your theta moved by -Delta g"),
    "fletcher_reeves": (grade.check_polak_ribiere, "polak_ribiere_direction", "it is Fletcher-Reeves's beta"),
    "pr_without_max": (grade.check_polak_ribiere, "polak_ribiere_direction",
                       "it is negative: PR+ takes max(0, beta_PR)"),
    "no_downhill_restart": (grade.check_polak_ribiere, "polak_ribiere_direction",
                            "on the 'uphill' case of seed 0 (n=8): beta_PR > 0, but"),
    "short_form": (grade.check_joseph, "joseph_update", "it is the short form (I - K H) P"),
    "joseph_without_KRK": (grade.check_joseph, "joseph_update", "the term K R K^T is missing"),
    "ekf_without_Q": (grade.check_ekf_update, "ekf_update", "Q is left out: the gain must use P^- = P + Q"),
    "ekf_innovation_sign": (grade.check_ekf_update, "ekf_update", "the innovation has the wrong sign"),
    "ekf_no_measurement_update": (grade.check_ekf_update, "ekf_update", "it is P^- = P + Q: the measurement update"),
    "per_block_S": (grade.check_decoupled, "decoupled_ekf_update", "each group used its own S_g = R + H_g P_g H_g^T"),
    "block_joseph_with_R": (grade.check_decoupled, "decoupled_ekf_update", "the Joseph form with the noise R alone"),
}


@pytest.mark.parametrize("bug", sorted(BUGS))
def test_each_mistake_fails_its_check_with_its_diagnosis(bug):
    check, name, message = BUGS[bug]
    with pytest.raises(GradingError, match="on the .*seed 0") as error:
        check(getattr(student(bug), name))
    assert message in str(error.value)


@pytest.mark.parametrize("bug", sorted(BUGS))
def test_each_mistake_is_caught_on_every_hidden_seed(bug):
    check, name, _ = BUGS[bug]
    function = getattr(student(bug), name)
    caught = 0
    for seed in range(3, 23):
        try:
            check(function, (seed,))
        except GradingError:
            caught += 1
    assert caught == 20


def test_a_mistake_costs_only_its_own_check():
    answer = student("per_block_S")
    grade.check_ekf_update(answer.ekf_update)                   # uses joseph_update, which is right
    answer = student("short_form")
    grade.check_ekf_update(answer.ekf_update)                   # the short form is exact at the optimal gain
    grade.check_decoupled(answer.decoupled_ekf_update)          # and for each block's own optimal gain
    wrong = student("joseph_without_KRK")
    with pytest.raises(GradingError, match="K R K\\^T of the Joseph form is missing; your joseph_update is wrong too"):
        grade.check_ekf_update(wrong.ekf_update, joseph_update=wrong.joseph_update)
    with pytest.raises(GradingError, match="though your theta is right: .*; your joseph_update is wrong too"):
        grade.check_decoupled(wrong.decoupled_ekf_update, joseph_update=wrong.joseph_update)
    with pytest.raises(GradingError, match="the noise R alone.*; your joseph_update is right$"):
        grade.check_decoupled(student("block_joseph_with_R").decoupled_ekf_update,
                              joseph_update=student().joseph_update)


def test_rprop_messages_name_the_step_the_entry_and_what_is_right():
    with pytest.raises(GradingError) as error:
        grade.check_irprop(student("rprop_keeps_g").irprop_minus_step)
    text = str(error.value)
    assert "wrong at step 2 (step 1 is right), entry [" in text
    assert "the gradient changed sign there (g^- g < 0)" in text
    assert "(your new theta and Delta are right there)" in text
    with pytest.raises(GradingError, match=r"your theta is wrong through your Delta alone"):
        grade.check_irprop(student("rprop_grows_on_zero").irprop_minus_step)


NOT_IMPLEMENTED = {
    grade.check_irprop: "irprop_minus_step",
    grade.check_polak_ribiere: "polak_ribiere_direction",
    grade.check_joseph: "joseph_update",
    grade.check_ekf_update: "ekf_update",
    grade.check_decoupled: "decoupled_ekf_update",
}


@pytest.mark.parametrize("check", list(NOT_IMPLEMENTED), ids=list(NOT_IMPLEMENTED.values()))
def test_a_blank_function_is_not_implemented_yet(check):
    def blank(*args):
        raise NotImplementedError

    with pytest.raises(GradingError, match=f"^{NOT_IMPLEMENTED[check]} is not implemented yet"):
        check(blank)


def test_wrong_returns_and_errors_are_explained():
    with pytest.raises(GradingError, match=r"must return 3 values \(theta, prev_grad, delta\), got a tuple of 2"):
        grade.check_irprop(student("rprop_two_values").irprop_minus_step)
    with pytest.raises(GradingError, match=r"ekf_update's P must have shape \(n, n\)"):
        grade.check_ekf_update(lambda theta, P, *rest: (theta, P[:1]))
    one_block = r"blocks must be a list of \d arrays \(one P_g per group\), got a list of 1 item$"
    with pytest.raises(GradingError, match=one_block):
        grade.check_decoupled(lambda theta, blocks, *rest: (theta, blocks[:1]))
    with pytest.raises(GradingError, match=r"joseph_update's .*NaN|joseph_update contains NaN"):
        grade.check_joseph(lambda P, K, H, R: P * np.nan)
    with pytest.raises(GradingError, match=r"raised TypeError: .*; on the 'restart' case of seed 0"):
        grade.check_polak_ribiere(lambda g, g_prev, d_prev: (-g + 0 * g_prev, 0.0))
    with pytest.raises(GradingError, match=r"polak_ribiere_direction's beta must have shape \(\) \(a number\)"):
        grade.check_polak_ribiere(lambda g, g_prev, d_prev: (-g, np.zeros(2)))


def test_the_students_arrays_are_copies():
    def spoils(theta, blocks, groups, predictions, targets, H, R):
        theta_new, new_blocks = student().decoupled_ekf_update(theta, blocks, groups, predictions, targets, H, R)
        for block in blocks:
            block[...] = 0.0
        H[...] = 0.0
        return theta_new, new_blocks

    grade.check_decoupled(spoils, SEEDS)
