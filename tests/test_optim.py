"""Optimisers against their update formulas written out by hand, and the learning-rate schedule."""
import numpy as np
import pytest

from minimal.nn.module import Parameter
from minimal.optim import SGD, Adam, PiecewiseConstant


def run(optimizer_factory, gradients, start):
    p = Parameter(np.array(start, dtype=np.float64))
    optimizer = optimizer_factory([p])
    for g in gradients:
        p.grad = np.array(g, dtype=np.float64)
        optimizer.step()
    return p.data


GRADS = [[1.0, -2.0], [0.5, 0.5], [-1.0, 3.0]]


def test_plain_sgd():
    np.testing.assert_allclose(run(lambda ps: SGD(ps, lr=0.1), GRADS, [1.0, 1.0]),
                               np.array([1.0, 1.0]) - 0.1 * np.sum(GRADS, axis=0))


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_nesterov_weight_decay(nesterov):
    lr, mu, wd = 0.1, 0.9, 0.01
    theta, velocity = np.array([1.0, 1.0]), None
    for g in GRADS:
        g = np.array(g) + wd * theta
        velocity = g if velocity is None else mu * velocity + g
        theta = theta - lr * (g + mu * velocity if nesterov else velocity)
    result = run(lambda ps: SGD(ps, lr=lr, momentum=mu, nesterov=nesterov, weight_decay=wd), GRADS, [1.0, 1.0])
    np.testing.assert_allclose(result, theta)


def test_adam_matches_the_paper_formula():
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    theta, m, v = np.array([1.0, 1.0]), 0.0, 0.0
    for t, g in enumerate(GRADS, start=1):
        g = np.array(g)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        theta = theta - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
    np.testing.assert_allclose(run(lambda ps: Adam(ps, lr=lr), GRADS, [1.0, 1.0]), theta)


def torch_adam(start, grads, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
    """torch.optim.Adam (amsgrad off, L2 weight decay) written out for one parameter, in PyTorch's own arrangement
    of the arithmetic. `grads[k]` is None when the parameter has no gradient at step k: PyTorch then skips it,
    so its moments and its own step count t stay as they are."""
    beta1, beta2 = betas
    theta, m, v, t = np.array(start, dtype=np.float64), 0.0, 0.0, 0
    for g in grads:
        if g is None:
            continue
        g = np.array(g) + weight_decay * theta
        t += 1
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        step_size = lr / (1 - beta1 ** t)
        denominator = np.sqrt(v) / np.sqrt(1 - beta2 ** t) + eps
        theta = theta - step_size * m / denominator
    return theta


# parameter 0 has a gradient at every step; parameter 1 joins at step 4, misses step 6; parameter 2 never has one
GAPPY_GRADS = [
    ([1.0, -2.0], None, None),
    ([0.5, 0.5], None, None),
    ([-1.0, 3.0], None, None),
    ([0.2, 0.1], [2.0, -0.5], None),
    ([0.3, -0.4], [1.0, 0.25], None),
    ([-0.6, 0.9], None, None),
    ([0.1, 0.1], [-3.0, 0.5], None),
]


def run_gappy(optimizer, parameters, grads):
    for step in grads:
        for p, g in zip(parameters, step):
            p.grad = None if g is None else np.array(g)
        optimizer.step()


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_adam_counts_steps_per_parameter_like_pytorch(weight_decay):
    parameters = [Parameter(np.array([1.0, -1.0])) for _ in range(3)]
    run_gappy(Adam(parameters, lr=0.01, weight_decay=weight_decay), parameters, GAPPY_GRADS)
    for i, p in enumerate(parameters):
        expected = torch_adam([1.0, -1.0], [step[i] for step in GAPPY_GRADS], lr=0.01, weight_decay=weight_decay)
        np.testing.assert_allclose(p.data, expected, rtol=1e-13, atol=0)
    np.testing.assert_array_equal(parameters[2].data, [1.0, -1.0])  # never had a gradient: never moved


def test_adam_resumes_exactly_with_per_parameter_counts():
    """Saved mid-way, with parameter 1 behind parameter 0 in steps, then resumed: bit for bit the unbroken run."""
    unbroken = [Parameter(np.array([1.0, -1.0])) for _ in range(3)]
    run_gappy(Adam(unbroken, lr=0.01), unbroken, GAPPY_GRADS)

    split = [Parameter(np.array([1.0, -1.0])) for _ in range(3)]
    first = Adam(split, lr=0.01)
    run_gappy(first, split, GAPPY_GRADS[:5])
    state = {name: array.copy() for name, array in first.state_arrays().items()}
    assert int(state["steps.0"]) == 5 and int(state["steps.1"]) == 2 and "steps.2" not in state
    second = Adam(split, lr=0.01)
    second.load_state_arrays(state)
    run_gappy(second, split, GAPPY_GRADS[5:])
    for p, q in zip(split, unbroken):
        np.testing.assert_array_equal(p.data, q.data)


def test_adam_loads_a_state_saved_with_one_global_step_count():
    """States written before the counts were per parameter hold one `steps` (the number of step() calls). Loaded,
    it becomes the count of every parameter with moments, which is exact when every parameter had a gradient at
    every step: the run then continues bit for bit."""
    every_step = [(g, [-x for x in g], None) for g in GRADS]
    unbroken = [Parameter(np.array([1.0, -1.0])) for _ in range(3)]
    run_gappy(Adam(unbroken, lr=0.01), unbroken, every_step + every_step)

    split = [Parameter(np.array([1.0, -1.0])) for _ in range(3)]
    first = Adam(split, lr=0.01)
    run_gappy(first, split, every_step)
    old_state = {name: array for name, array in first.state_arrays().items() if not name.startswith("steps.")}
    old_state["steps"] = np.array(len(every_step))
    second = Adam(split, lr=0.01)
    second.load_state_arrays(old_state)
    assert second.steps == {0: 3, 1: 3}  # parameter 2 has no moments, so no count
    run_gappy(second, split, every_step)
    for p, q in zip(split, unbroken):
        np.testing.assert_array_equal(p.data, q.data)


def test_adam_minimises_a_quadratic():
    p = Parameter(np.array([3.0, -2.0]))
    optimizer = Adam([p], lr=0.1)
    for _ in range(500):
        p.grad = 2 * p.data
        optimizer.step()
    assert np.abs(p.data).max() < 1e-2


def test_parameters_without_grad_are_skipped():
    p, q = Parameter(np.ones(2)), Parameter(np.ones(2))
    optimizer = SGD([p, q], lr=1.0)
    p.grad = np.ones(2)
    optimizer.step()
    np.testing.assert_array_equal(q.data, 1.0)
    optimizer.zero_grad()
    assert p.grad is None


def test_piecewise_constant_schedule():
    schedule = PiecewiseConstant([3, 6], [1e-3, 1e-4, 1e-5])
    assert [schedule(e) for e in range(8)] == [1e-3] * 3 + [1e-4] * 3 + [1e-5] * 2
    with pytest.raises(ValueError):
        PiecewiseConstant([3], [1e-3])
    with pytest.raises(ValueError):
        PiecewiseConstant([5, 2], [1, 2, 3])


@pytest.mark.parametrize("factory", [lambda ps: SGD(ps, lr=0.1, momentum=0.9), lambda ps: Adam(ps, lr=0.01)])
def test_state_arrays_round_trip_resumes_exactly(factory):
    """Training 3 steps, saving, loading into a fresh optimiser, then 3 more equals 6 steps in one go."""
    def steps(optimizer, p, grads):
        for g in grads:
            p.grad = np.array(g)
            optimizer.step()

    p_full = Parameter(np.array([1.0, 1.0]))
    full = factory([p_full])
    steps(full, p_full, GRADS + GRADS)

    p_half = Parameter(np.array([1.0, 1.0]))
    first = factory([p_half])
    steps(first, p_half, GRADS)
    second = factory([p_half])
    second.load_state_arrays({k: v.copy() for k, v in first.state_arrays().items()})
    steps(second, p_half, GRADS)
    np.testing.assert_allclose(p_half.data, p_full.data)
