"""Optimizers and gradient clipping, step by step against torch.optim and torch.nn.utils in float64.

torch is optional: a test compares with it after its torch-free checks, and is skipped there without it.
"""
import numpy as np
import pytest

from companion.optim import SGD, Adam, Momentum, clip_grad_norm, global_norm

SHAPES = {"W_hh": (3, 3), "b_h": (3,), "w": (1,)}


def _problem(seed):
    rng = np.random.default_rng(seed)
    params = {key: rng.normal(size=shape) for key, shape in SHAPES.items()}
    grad_sequence = [{key: rng.normal(size=shape) * 10.0**rng.integers(-3, 2) for key, shape in SHAPES.items()}
                     for _ in range(6)]
    return params, grad_sequence


def _run_both(ours, make_torch, seed=0):
    """Apply the same gradient sequence with our optimizer and torch's; return both parameter dicts."""
    torch = pytest.importorskip("torch")
    params, grad_sequence = _problem(seed)
    tensors = {key: torch.tensor(value, dtype=torch.float64, requires_grad=True) for key, value in params.items()}
    reference = make_torch(torch, list(tensors.values()))
    for grads in grad_sequence:
        ours.step(params, grads)
        for key, tensor in tensors.items():
            tensor.grad = torch.tensor(grads[key])
        reference.step()
    return params, {key: tensor.detach().numpy() for key, tensor in tensors.items()}


@pytest.mark.parametrize(
    "make_ours, make_torch",
    [
        (lambda: SGD(0.1), lambda torch, ps: torch.optim.SGD(ps, lr=0.1)),
        (lambda: Momentum(0.05), lambda torch, ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9)),
        (lambda: Momentum(0.2, beta=0.5), lambda torch, ps: torch.optim.SGD(ps, lr=0.2, momentum=0.5)),
        (lambda: Adam(), lambda torch, ps: torch.optim.Adam(ps)),
        (lambda: Adam(0.03, beta1=0.8, beta2=0.99, eps=1e-6),
         lambda torch, ps: torch.optim.Adam(ps, lr=0.03, betas=(0.8, 0.99), eps=1e-6)),
    ],
    ids=["sgd", "momentum", "momentum-beta", "adam", "adam-options"],
)
def test_optimizer_matches_torch(make_ours, make_torch):
    params, reference = _run_both(make_ours(), make_torch)
    for key in SHAPES:
        np.testing.assert_allclose(params[key], reference[key], rtol=1e-13, atol=1e-15)


def test_step_updates_the_arrays_in_place():
    params, grad_sequence = _problem(1)
    arrays = dict(params)
    before = {key: value.copy() for key, value in params.items()}
    Adam(0.1).step(params, grad_sequence[0])
    for key in SHAPES:
        assert params[key] is arrays[key]
        assert not np.array_equal(params[key], before[key])


def test_state_is_kept_per_parameter_name():
    # one parameter updated with and without the other present: its state must not depend on the other
    params, grad_sequence = _problem(2)
    alone = {"w": params["w"].copy()}
    together, solo = Momentum(0.1), Momentum(0.1)
    for grads in grad_sequence:
        together.step(params, grads)
        solo.step(alone, {"w": grads["w"]})
    np.testing.assert_array_equal(params["w"], alone["w"])
    assert sorted(together.state) == sorted(SHAPES)


def test_first_adam_step_has_length_lr_per_entry():
    # bias correction: m_hat = g and v_hat = g^2 after one step, so each entry moves by lr * g / (|g| + eps)
    params = {"w": np.zeros(4)}
    g = np.array([1e-3, -2.0, 5.0, -7e2])
    Adam(0.01, eps=1e-12).step(params, {"w": g})
    np.testing.assert_allclose(params["w"], -0.01 * np.sign(g), rtol=1e-8)


@pytest.mark.parametrize("max_norm", [0.5, 3.0, 1e3], ids=["clips", "clips-a-little", "no-clip"])
def test_clip_grad_norm_matches_torch(max_norm):
    _, grad_sequence = _problem(3)
    grads = {key: value * 2.0 for key, value in grad_sequence[0].items()}
    before = {key: value.copy() for key, value in grads.items()}
    clipped, total = clip_grad_norm(grads, max_norm)
    for key in grads:
        np.testing.assert_array_equal(grads[key], before[key])           # the input is not modified
    new_norm = global_norm(clipped)
    if total > max_norm:
        np.testing.assert_allclose(new_norm, max_norm, rtol=1e-6)
    else:
        np.testing.assert_allclose(new_norm, total, rtol=1e-14)
    torch = pytest.importorskip("torch")
    tensors = [torch.zeros(SHAPES[key], dtype=torch.float64, requires_grad=True) for key in grads]
    for tensor, key in zip(tensors, grads):
        tensor.grad = torch.tensor(grads[key])
    reference_total = torch.nn.utils.clip_grad_norm_(tensors, max_norm)
    np.testing.assert_allclose(total, reference_total.item(), rtol=1e-14)
    for tensor, key in zip(tensors, grads):
        np.testing.assert_allclose(clipped[key], tensor.grad.numpy(), rtol=1e-14, atol=1e-300)


def test_global_norm_is_the_norm_of_everything_concatenated():
    _, grad_sequence = _problem(4)
    flat = np.concatenate([value.ravel() for value in grad_sequence[0].values()])
    np.testing.assert_allclose(global_norm(grad_sequence[0]), np.linalg.norm(flat), rtol=1e-14)


def test_optimizers_reject_bad_input():
    params, grad_sequence = _problem(5)
    grads = grad_sequence[0]
    for make in (lambda: SGD(0.0), lambda: Momentum(-1.0), lambda: Adam(float("nan")), lambda: SGD("0.1")):
        with pytest.raises(ValueError, match="lr"):
            make()
    with pytest.raises(ValueError, match="beta"):
        Momentum(0.1, beta=1.0)
    with pytest.raises(ValueError, match="beta1"):
        Adam(beta1=-0.1)
    with pytest.raises(ValueError, match="beta2"):
        Adam(beta2=1.5)
    with pytest.raises(ValueError, match="eps"):
        Adam(eps=0.0)
    optimizer = Adam(0.1)
    with pytest.raises(ValueError, match="grads"):
        optimizer.step(params, {key: grads[key] for key in ("W_hh", "b_h")})           # missing key
    with pytest.raises(ValueError, match="grads"):
        optimizer.step(params, {**grads, "extra": np.zeros(2)})
    with pytest.raises(ValueError, match="grads"):
        optimizer.step(params, {**grads, "b_h": np.zeros(4)})                         # wrong shape
    with pytest.raises(ValueError, match="grads"):
        optimizer.step(params, {**grads, "w": np.array([np.nan])})
    with pytest.raises(ValueError, match="params"):
        optimizer.step({**params, "w": [0.5]}, grads)                                  # not an array
    with pytest.raises(ValueError, match="params"):
        optimizer.step({**params, "w": np.array([np.inf])}, grads)
    assert optimizer.state == {}                                                      # nothing half-applied
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm(grads, 0.0)
    with pytest.raises(ValueError, match="grads"):
        clip_grad_norm({}, 1.0)
    with pytest.raises(ValueError, match="grads"):
        clip_grad_norm({"w": np.array([np.nan])}, 1.0)
