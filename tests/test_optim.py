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
