"""The extended Kalman filter of ``companion.ekf`` against closed forms and independent implementations.

* In the linear-Gaussian case the EKF is the Kalman filter, which is the exact posterior: it is checked
  against the textbook filter written here, against Gaussian conditioning of the joint distribution of
  the whole random walk and all measurements (no recursion at all), and against filterpy if installed.
* The Joseph form keeps the covariance symmetric positive semidefinite on an ill-conditioned update where
  the short form P - K H P loses it.
* The decoupled filter is the global one restricted to the blocks of a block-diagonal covariance.
* The measurement Jacobians by RTRL and by BPTT equal each other and central differences.
* Training lowers the loss of a small Elman network on a delay task; the node-decoupled blocks are the
  units' incoming weights; annealed noise acts from the next update; a mask drops streams exactly.
"""
import numpy as np
import pytest

from companion import bptt, ekf, model
from companion.cells import Elman

RNG_SEED = 7


def _spd(rng, n, scale=1.0):
    M = rng.normal(size=(n, n))
    return scale * (M @ M.T / n + 0.5 * np.eye(n))


def _linear_problem(T=6, n=3, m=2, seed=RNG_SEED):
    """A random walk theta_t = theta_{t-1} + q_t observed as y_t = H_t theta_t + r_t."""
    rng = np.random.default_rng(seed)
    mean0 = rng.normal(size=n)
    P0, Q, R = _spd(rng, n), _spd(rng, n, 0.1), _spd(rng, m, 0.5)
    Hs = rng.normal(size=(T, m, n))
    theta = mean0 + np.linalg.cholesky(P0) @ rng.normal(size=n)
    ys = []
    for H in Hs:
        theta = theta + np.linalg.cholesky(Q) @ rng.normal(size=n)
        ys.append(H @ theta + np.linalg.cholesky(R) @ rng.normal(size=m))
    return mean0, P0, Q, R, Hs, np.array(ys)


def _textbook_kalman(mean0, P0, Q, R, Hs, ys):
    """The Kalman filter as printed: predict P + Q, gain, mean, P = (I - K H) P. Returns every step's (m, P)."""
    mean, P, out = mean0.copy(), P0.copy(), []
    for H, y in zip(Hs, ys):
        P = P + Q
        K = P @ H.T @ np.linalg.inv(H @ P @ H.T + R)
        mean = mean + K @ (y - H @ mean)
        P = (np.eye(len(mean)) - K @ H) @ P
        out.append((mean.copy(), P.copy()))
    return out


def _joint_posterior(mean0, P0, Q, R, Hs, ys):
    """theta_T given y_1..y_T by conditioning the joint Gaussian: Cov(theta_s, theta_t) = P0 + min(s, t) Q."""
    T, m, n = Hs.shape
    cov_theta = np.block([[P0 + min(s, t) * Q for t in range(1, T + 1)] for s in range(1, T + 1)])  # (Tn, Tn)
    H_big = np.zeros((T * m, T * n))
    for t, H in enumerate(Hs):
        H_big[t * m:(t + 1) * m, t * n:(t + 1) * n] = H
    cov_y = H_big @ cov_theta @ H_big.T + np.kron(np.eye(T), R)
    cross = cov_theta[-n:] @ H_big.T                                   # Cov(theta_T, y), (n, Tm)
    mean_y = H_big @ np.tile(mean0, T)
    mean = mean0 + cross @ np.linalg.solve(cov_y, ys.reshape(-1) - mean_y)
    return mean, cov_theta[-n:, -n:] - cross @ np.linalg.solve(cov_y, cross.T)


def _run_filter(mean0, P0, Q, R, Hs, ys, groups=None):
    """Our filter on the linear problem, the parameters split into two arrays; every step's (mean, P)."""
    params = {"a": mean0[:2].copy(), "b": mean0[2:].copy()}
    kalman = ekf.ExtendedKalmanFilter(params, p0=P0, q=Q, r=R, groups=groups)
    out = []
    for H, y in zip(Hs, ys):
        theta = ekf.flatten(params, kalman.layout)
        kalman.update(params, H @ theta, y, H)
        out.append((ekf.flatten(params, kalman.layout), kalman.covariance))
    return out


def test_flatten_and_unflatten_follow_the_dict_order():
    params = {"W": np.arange(6.0).reshape(2, 3), "b": np.array([10.0, 11.0])}
    layout = ekf.layout_of(params)
    assert layout.size == 8 and layout.keys == ("W", "b")
    np.testing.assert_array_equal(ekf.flatten(params, layout), [0, 1, 2, 3, 4, 5, 10, 11])
    back = ekf.unflatten(np.arange(8.0), layout)
    np.testing.assert_array_equal(back["W"], [[0, 1, 2], [3, 4, 5]])
    np.testing.assert_array_equal(back["b"], [6, 7])


def test_linear_gaussian_ekf_is_the_textbook_kalman_filter():
    problem = _linear_problem()
    for (mean, P), (ref_mean, ref_P) in zip(_run_filter(*problem), _textbook_kalman(*problem)):
        np.testing.assert_allclose(mean, ref_mean, rtol=0, atol=1e-12)
        np.testing.assert_allclose(P, ref_P, rtol=0, atol=1e-12)


def test_linear_gaussian_ekf_is_the_exact_posterior():
    problem = _linear_problem(T=5)
    mean, P = _run_filter(*problem)[-1]
    exact_mean, exact_P = _joint_posterior(*problem)
    np.testing.assert_allclose(mean, exact_mean, rtol=0, atol=1e-11)
    np.testing.assert_allclose(P, exact_P, rtol=0, atol=1e-11)


def test_linear_gaussian_ekf_equals_filterpy():
    filterpy_kalman = pytest.importorskip("filterpy.kalman")
    mean0, P0, Q, R, Hs, ys = problem = _linear_problem()
    reference = filterpy_kalman.KalmanFilter(dim_x=3, dim_z=2)
    reference.x, reference.P, reference.Q, reference.R, reference.F = mean0.copy(), P0.copy(), Q, R, np.eye(3)
    for (mean, P), H, y in zip(_run_filter(*problem), Hs, ys):
        reference.H = H
        reference.predict()
        reference.update(y)
        np.testing.assert_allclose(mean, reference.x, rtol=0, atol=1e-12)
        np.testing.assert_allclose(P, reference.P, rtol=0, atol=1e-12)


def test_decoupled_filter_with_one_group_is_the_global_filter():
    problem = _linear_problem()
    for (mean, P), (ref_mean, ref_P) in zip(_run_filter(*problem, groups=[[2, 0, 1]]), _run_filter(*problem)):
        np.testing.assert_allclose(mean, ref_mean, rtol=0, atol=1e-13)
        np.testing.assert_allclose(P, ref_P, rtol=0, atol=1e-13)


def test_decoupled_update_is_the_global_update_of_a_block_diagonal_covariance():
    rng = np.random.default_rng(RNG_SEED)
    n, m = 5, 3
    P0 = np.zeros((n, n))
    P0[:2, :2], P0[2:, 2:] = _spd(rng, 2), _spd(rng, 3)
    H, y, R = rng.normal(size=(m, n)), rng.normal(size=m), _spd(rng, m)
    theta0 = rng.normal(size=n)
    params = {"a": theta0[:2].copy(), "b": theta0[2:].copy()}
    kalman = ekf.ExtendedKalmanFilter(params, p0=P0, q=0.0, r=R, groups="array")
    kalman.update(params, H @ theta0, y, H)
    K = P0 @ H.T @ np.linalg.inv(H @ P0 @ H.T + R)                    # the global gain
    A = np.eye(n) - K @ H
    P_global = A @ P0 @ A.T + K @ R @ K.T
    np.testing.assert_allclose(ekf.flatten(params, kalman.layout), theta0 + K @ (y - H @ theta0), rtol=0, atol=1e-13)
    for index, block in zip(kalman.groups, kalman.covariances):
        np.testing.assert_allclose(block, P_global[np.ix_(index, index)], rtol=0, atol=1e-13)
    assert not np.allclose(P_global[:2, 2:], 0)                        # what decoupling drops


def test_joseph_form_stays_positive_semidefinite_where_the_short_form_does_not():
    delta = 1e-7                                                        # delta^2 is below float64's resolution of 1
    H = np.array([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0 + delta]])
    R = delta**2 * np.eye(2)
    P = np.eye(3)
    K = P @ H.T @ np.linalg.inv(H @ P @ H.T + R)
    short = P - K @ H @ P
    assert np.linalg.eigvalsh(0.5 * (short + short.T)).min() < -1e-4      # the short form is indefinite
    params = {"theta": np.zeros(3)}
    kalman = ekf.ExtendedKalmanFilter(params, p0=1.0, q=0.0, r=R)
    kalman.update(params, np.zeros(2), np.ones(2), H)
    ours = kalman.covariance
    np.testing.assert_array_equal(ours, ours.T)
    assert np.linalg.eigvalsh(ours).min() > -1e-12


def test_joseph_update_equals_the_short_form_with_the_optimal_gain():
    rng = np.random.default_rng(RNG_SEED)
    P, H, R = _spd(rng, 4), rng.normal(size=(2, 4)), _spd(rng, 2)
    K = P @ H.T @ np.linalg.inv(H @ P @ H.T + R)
    np.testing.assert_allclose(ekf.joseph_update(P, K, H, R), P - K @ H @ P, rtol=0, atol=1e-13)
    K_bad = K + 0.3 * rng.normal(size=K.shape)                          # any gain: still PSD
    assert np.linalg.eigvalsh(ekf.joseph_update(P, K_bad, H, R)).min() > 0


def _elman_problem(T=5, B=2, n_in=2, H=3, n_out=2, seed=RNG_SEED):
    cell = Elman(n_in, H)
    params = model.init_model(cell, n_out, seed)
    xs = np.random.default_rng(seed + 1).normal(size=(T, B, n_in))
    return cell, params, xs


def _numerical_jacobian(function, theta, eps=1e-6):
    columns = [(function(theta + eps * e) - function(theta - eps * e)) / (2 * eps) for e in np.eye(theta.size)]
    return np.stack(columns, axis=-1)


@pytest.mark.parametrize("output", ["linear", "sigmoid", "softmax"])
def test_jacobian_by_rtrl_equals_bptt_and_finite_differences(output):
    cell, params, xs = _elman_problem()
    layout = ekf.layout_of(params)
    z_rtrl, J_rtrl = ekf.output_jacobian(cell, params, xs, method="rtrl", output=output)
    z_bptt, J_bptt = ekf.output_jacobian(cell, params, xs, method="bptt", output=output)
    numerical = _numerical_jacobian(
        lambda theta: ekf.output_jacobian(cell, ekf.unflatten(theta, layout), xs, output=output)[0],
        ekf.flatten(params, layout))
    assert J_rtrl.shape == (2, 2, layout.size)
    np.testing.assert_allclose(z_rtrl, z_bptt, rtol=0, atol=1e-15)
    np.testing.assert_allclose(J_rtrl, J_bptt, rtol=0, atol=1e-13)
    np.testing.assert_allclose(J_rtrl, numerical, rtol=0, atol=1e-8)
    predictions = model.predict(cell, params, xs)[-1]
    if output == "linear":
        np.testing.assert_allclose(z_rtrl, predictions, rtol=0, atol=1e-14)


def test_jacobian_without_readout_is_that_of_the_hidden_state():
    cell, params, xs = _elman_problem()
    cell_params = {key: params[key] for key in cell.param_shapes()}
    layout = ekf.layout_of(cell_params)
    _, J_rtrl = ekf.output_jacobian(cell, cell_params, xs, readout=False)
    _, J_bptt = ekf.output_jacobian(cell, cell_params, xs, method="bptt", readout=False)
    numerical = _numerical_jacobian(
        lambda theta: bptt.forward(cell, ekf.unflatten(theta, layout), xs)[0][-1], ekf.flatten(cell_params, layout))
    np.testing.assert_allclose(J_rtrl, J_bptt, rtol=0, atol=1e-13)
    np.testing.assert_allclose(J_rtrl, numerical, rtol=0, atol=1e-8)


def test_truncated_jacobian_holds_the_state_before_the_window_fixed():
    cell, params, xs = _elman_problem(T=6)
    k2 = 2
    cell_params = {key: params[key] for key in cell.param_shapes()}
    _, cache = bptt.forward(cell, cell_params, xs[:-k2])
    _, truncated = ekf.output_jacobian(cell, params, xs, method="bptt", k2=k2)
    _, window = ekf.output_jacobian(cell, params, xs[-k2:], method="rtrl", state0=cache.final_state)
    _, full = ekf.output_jacobian(cell, params, xs, method="rtrl")
    np.testing.assert_allclose(truncated, window, rtol=0, atol=1e-13)
    assert np.abs(truncated - full).max() > 1e-4                        # the truncation drops something


def _delay_task(T=120, B=4, seed=0):
    """Target 0.5 x_{t-1}: the network must remember one step."""
    xs = np.random.default_rng(seed).choice([-1.0, 1.0], size=(T, B, 1))
    targets = np.zeros((T, B, 1))
    targets[1:] = 0.5 * xs[:-1]
    return xs, targets


@pytest.mark.parametrize("jacobian, k2, groups", [("rtrl", None, None), ("bptt", 3, None), ("rtrl", None, "array")])
def test_training_lowers_the_loss_of_a_delay_task(jacobian, k2, groups):
    cell = Elman(1, 4)
    params = model.init_model(cell, 1, 3)
    xs, targets = _delay_task()
    kalman = ekf.ExtendedKalmanFilter(params, p0=1.0, q=1e-4, r=0.5, groups=groups)
    history = ekf.ekf_train(cell, params, xs, targets, kalman, jacobian=jacobian, k2=k2)
    losses = np.array(history.losses)
    assert history.steps == 120
    assert losses[-30:].mean() < 0.02 * losses[:20].mean()
    for block in kalman.covariances:
        np.testing.assert_array_equal(block, block.T)
        assert np.linalg.eigvalsh(block).min() > 0
    after = model.predict(cell, params, xs)[1:]
    assert np.mean((after - targets[1:]) ** 2) < 1e-3                  # the trained network, rerun


def test_training_history_records_the_error_and_its_gradient():
    cell, params, xs = _elman_problem(T=1, B=2)
    targets = np.random.default_rng(0).normal(size=(1, 2, 2))
    z, J = ekf.output_jacobian(cell, params, xs)
    kalman = ekf.ExtendedKalmanFilter(params, p0=0.5, q=0.0, r=2.0)
    expected_theta = ekf.flatten(params, kalman.layout)
    H = J.reshape(4, -1)
    error = targets[0].reshape(-1) - z.reshape(-1)
    expected_theta = expected_theta + 0.5 * H.T @ np.linalg.solve(0.5 * H @ H.T + 2.0 * np.eye(4), error)
    history = ekf.ekf_train(cell, params, xs, targets, kalman)
    np.testing.assert_allclose(history.losses, [np.mean(error**2)], rtol=1e-14)
    np.testing.assert_allclose(history.grad_norms, [np.linalg.norm(H.T @ error) / 2], rtol=1e-12)
    np.testing.assert_allclose(ekf.flatten(params, kalman.layout), expected_theta, rtol=0, atol=1e-13)


@pytest.mark.parametrize("setting, message", [
    (-1.0, "p0 must be positive definite"),
    (0.0, "p0 must be positive definite"),
    (np.array([1.0, 0.0, 2.0]), "p0 must be positive definite"),
    (np.diag([1.0, -1.0, 1.0]), "p0 must be positive definite"),
    (np.array([[1.0, 0.1, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]), "p0 must be symmetric"),
    (np.eye(2), r"p0 must be .* with n = 3"),
    (np.ones((3, 2)), r"p0 must be .* with n = 3"),
])
def test_bad_initial_covariance_is_refused(setting, message):
    with pytest.raises(ValueError, match=message):
        ekf.ExtendedKalmanFilter({"theta": np.zeros(3)}, p0=setting)


def test_bad_noise_settings_are_refused():
    params = {"theta": np.zeros(3)}
    with pytest.raises(ValueError, match="q must be positive semidefinite"):
        ekf.ExtendedKalmanFilter(params, q=np.diag([1.0, -1e-3, 0.0]))
    ekf.ExtendedKalmanFilter(params, q=0.0)                             # zero process noise is allowed
    with pytest.raises(ValueError, match="r must be positive definite"):
        ekf.ExtendedKalmanFilter(params, r=0.0)
    with pytest.raises(ValueError, match="r must be positive definite"):
        ekf.ExtendedKalmanFilter(params, r=np.array([[1.0, 2.0], [2.0, 1.0]]))
    with pytest.raises(ValueError, match="r contains 1 non-finite"):
        ekf.ExtendedKalmanFilter(params, r=np.nan)
    kalman = ekf.ExtendedKalmanFilter(params, r=np.ones(2))
    with pytest.raises(ValueError, match=r"r must fit the m = 3 measurements"):
        kalman.update(params, np.zeros(3), np.zeros(3), np.zeros((3, 3)))


def test_bad_update_arguments_are_refused():
    params = {"theta": np.zeros(3)}
    kalman = ekf.ExtendedKalmanFilter(params)
    with pytest.raises(ValueError, match=r"jacobian must have shape \(m, n\) = \(2, 3\)"):
        kalman.update(params, np.zeros(2), np.zeros(2), np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"targets must have shape \(m,\) like predictions"):
        kalman.update(params, np.zeros(2), np.zeros(3), np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"predictions must have shape \(m,\)"):
        kalman.update(params, np.zeros((2, 1)), np.zeros(2), np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"params must be a dict with exactly the keys \['theta'\]"):
        kalman.update({"w": np.zeros(3)}, np.zeros(2), np.zeros(2), np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"params\['theta'\] must have shape \(3,\)"):
        kalman.update({"theta": np.zeros(4)}, np.zeros(2), np.zeros(2), np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"params\['theta'\] must be a float numpy array"):
        kalman.update({"theta": [0.0, 0.0, 0.0]}, np.zeros(2), np.zeros(2), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="theta must have shape"):
        ekf.unflatten(np.zeros(4), kalman.layout)


def test_bad_groups_are_refused():
    params = {"a": np.zeros(2), "b": np.zeros(2)}
    with pytest.raises(ValueError, match=r"groups must partition range\(n\) = range\(4\)"):
        ekf.ExtendedKalmanFilter(params, groups=[[0, 1], [1, 2, 3]])
    with pytest.raises(ValueError, match=r"groups must partition"):
        ekf.ExtendedKalmanFilter(params, groups=[[0, 1, 2, 3], []])
    with pytest.raises(ValueError, match="groups must be None, 'array', 'unit'"):
        ekf.ExtendedKalmanFilter(params, groups="node")
    coupled = np.eye(4) + 0.1 * (np.eye(4, k=2) + np.eye(4, k=-2))
    with pytest.raises(ValueError, match="p0 must be block diagonal over the groups"):
        ekf.ExtendedKalmanFilter(params, p0=coupled, groups="array")
    ekf.ExtendedKalmanFilter(params, p0=coupled)                        # fine for the global filter


def test_bad_training_arguments_are_refused():
    cell, params, xs = _elman_problem()
    targets = np.zeros((5, 2, 2))
    kalman = ekf.ExtendedKalmanFilter(params)
    with pytest.raises(ValueError, match="k2 must be given with jacobian='bptt'"):
        ekf.ekf_train(cell, params, xs, targets, kalman, jacobian="bptt")
    with pytest.raises(ValueError, match=r"^jacobian must be one of \['rtrl', 'bptt'\]"):
        ekf.ekf_train(cell, params, xs, targets, kalman, jacobian="forward")
    with pytest.raises(ValueError, match="^method must be one of"):
        ekf.output_jacobian(cell, params, xs, method="forward")
    with pytest.raises(ValueError, match="output must be one of"):
        ekf.ekf_train(cell, params, xs, targets, kalman, output="tanh")
    with pytest.raises(ValueError, match=r"targets must have shape \(T, B, k\)"):
        ekf.ekf_train(cell, params, xs, np.zeros((5, 2, 3)), kalman)
    with pytest.raises(ValueError, match="kalman must be an ExtendedKalmanFilter"):
        ekf.ekf_train(cell, params, xs, targets, object())
    with pytest.raises(ValueError, match="k2 must be a positive integer"):
        ekf.output_jacobian(cell, params, xs, method="bptt", k2=0)
    other = ekf.ExtendedKalmanFilter({key: params[key] for key in cell.param_shapes()})
    with pytest.raises(ValueError, match="params must be a dict with exactly the keys"):
        ekf.ekf_train(cell, params, xs, targets, other)


# ----- node decoupling, annealing, masks ----------------------------------------------------------------
def test_unit_groups_are_the_incoming_weights_of_each_unit():
    cell, params, _ = _elman_problem(H=3, n_out=3)                     # as many outputs as hidden units
    layout = ekf.layout_of(params)
    owner = {}                                                          # every entry labelled by its unit
    for key, value in params.items():
        side = 100 if key in ("W_hy", "b_y") else 0
        owner[key] = np.broadcast_to((side + np.arange(value.shape[0])).reshape((-1,) + (1,) * (value.ndim - 1)),
                                     value.shape).astype(float)
    labels = ekf.flatten(owner, layout)
    blocks = ekf.ExtendedKalmanFilter(params, groups="unit").groups
    assert [labels[block[0]] for block in blocks] == [0, 1, 2, 100, 101, 102]
    for block in blocks:
        assert np.all(labels[block] == labels[block[0]])                # one unit per block
    assert sorted(np.concatenate(blocks).tolist()) == list(range(layout.size))
    assert [block.size for block in blocks] == [2 + 3 + 1] * 3 + [3 + 1] * 3   # W_xh, W_hh, b_h rows; W_hy, b_y rows


def test_set_noise_acts_from_the_next_update():
    rng = np.random.default_rng(3)
    params = {"a": rng.normal(size=3)}
    H, y = rng.normal(size=(2, 3)), rng.normal(size=2)
    annealed = ekf.ExtendedKalmanFilter(params, p0=2.0, q=0.3, r=1.0)
    annealed.set_noise(q=0.01, r=np.array([0.5, 0.2]))
    fresh = ekf.ExtendedKalmanFilter(params, p0=2.0, q=0.01, r=np.array([0.5, 0.2]))
    first, second = dict(a=params["a"].copy()), dict(a=params["a"].copy())
    annealed.update(first, H @ first["a"], y, H)
    fresh.update(second, H @ second["a"], y, H)
    np.testing.assert_array_equal(first["a"], second["a"])
    np.testing.assert_array_equal(annealed.covariance, fresh.covariance)
    with pytest.raises(ValueError, match="r must be positive definite"):
        annealed.set_noise(r=0.0)
    with pytest.raises(ValueError, match="q must be positive semidefinite"):
        annealed.set_noise(q=-1.0)


def test_a_padded_stream_trains_as_the_unpadded_one():
    cell, params, xs = _elman_problem(T=6, B=1)
    targets = np.random.default_rng(1).uniform(size=(6, 1, 2))
    short, padded = {k: v.copy() for k, v in params.items()}, {k: v.copy() for k, v in params.items()}
    mask = np.arange(6)[:, None] < 4                                    # the string ends after 4 steps
    garbage = np.where(mask[..., None], xs, 5.0)
    k_short = ekf.ExtendedKalmanFilter(short, p0=0.5, q=1e-3, r=0.3)
    k_padded = ekf.ExtendedKalmanFilter(padded, p0=0.5, q=1e-3, r=0.3)
    h_short = ekf.ekf_train(cell, short, xs[:4], targets[:4], k_short, output="sigmoid")
    h_padded = ekf.ekf_train(cell, padded, garbage, np.where(mask[..., None], targets, 1.0), k_padded,
                             output="sigmoid", mask=mask)
    assert h_padded.steps == h_short.steps == 4
    assert h_padded.losses == h_short.losses
    for key in params:
        np.testing.assert_array_equal(padded[key], short[key])


@pytest.mark.parametrize("jacobian, k2", [("rtrl", None), ("bptt", 2)])
def test_an_unmeasured_stream_changes_nothing(jacobian, k2):
    cell, params, xs = _elman_problem(T=5, B=2)
    targets = np.random.default_rng(2).normal(size=(5, 2, 2))
    alone, both = {k: v.copy() for k, v in params.items()}, {k: v.copy() for k, v in params.items()}
    mask = np.zeros((5, 2), dtype=bool)
    mask[:, 0] = True
    ekf.ekf_train(cell, alone, xs[:, :1], targets[:, :1], ekf.ExtendedKalmanFilter(alone, r=0.5),
                  jacobian=jacobian, k2=k2)
    ekf.ekf_train(cell, both, xs, targets, ekf.ExtendedKalmanFilter(both, r=0.5), jacobian=jacobian, k2=k2,
                  mask=mask)
    for key in params:
        np.testing.assert_allclose(both[key], alone[key], rtol=1e-12, atol=1e-14)
    unmasked = {k: v.copy() for k, v in params.items()}
    ekf.ekf_train(cell, unmasked, xs, targets, ekf.ExtendedKalmanFilter(unmasked, r=0.5), jacobian=jacobian, k2=k2)
    assert not np.allclose(unmasked["W_hh"], alone["W_hh"])             # the second stream does count unmasked


def test_bad_masks_are_refused():
    cell, params, xs = _elman_problem()
    targets = np.zeros((5, 2, 2))
    with pytest.raises(ValueError, match=r"mask must be a bool array of shape \(T, B\) = \(5, 2\)"):
        ekf.ekf_train(cell, params, xs, targets, ekf.ExtendedKalmanFilter(params), mask=np.ones((5, 3), bool))
    with pytest.raises(ValueError, match="mask must be a bool array"):
        ekf.ekf_train(cell, params, xs, targets, ekf.ExtendedKalmanFilter(params), mask=np.ones((5, 2)))
    with pytest.raises(ValueError, match="the filter's r must be a number"):
        ekf.ekf_train(cell, params, xs, targets, ekf.ExtendedKalmanFilter(params, r=np.ones(4)),
                      mask=np.ones((5, 2), bool))
