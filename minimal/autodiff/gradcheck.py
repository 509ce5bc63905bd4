"""Check an op's backward against central finite differences, in float64.

For a function f of some tensors, we project its output onto a fixed random direction v, L = Σ f(x)·v, so a
single scalar is checked for any output shape (the trick of HIPS/autograd's test_util). Then for each input entry
x_i:   numeric_i = (L(x + h e_i) − L(x − h e_i)) / 2h   must match   analytic_i = dL/dx_i from backward().

On failure the error names the worst entry: which input, where, both values and the errors.
"""
import numpy as np

from .tensor import Tensor


class GradcheckError(AssertionError):
    pass


def _projected_output(fn, arrays, direction):
    out = fn(*[Tensor(a) for a in arrays])
    return float(np.sum(out.data * direction))


def numeric_gradient(fn, arrays, input_index, direction, h, entries):
    """Central differences of L = Σ fn(arrays)·direction with respect to arrays[input_index] at `entries`."""
    x = arrays[input_index]
    grad = np.zeros(len(entries))
    for k, flat in enumerate(entries):
        position = np.unravel_index(flat, x.shape)
        original = x[position]
        x[position] = original + h
        plus = _projected_output(fn, arrays, direction)
        x[position] = original - h
        minus = _projected_output(fn, arrays, direction)
        x[position] = original
        grad[k] = (plus - minus) / (2 * h)
    return grad


def analytic_gradients(fn, arrays, direction):
    """dL/dx for every input from one backward() call."""
    inputs = [Tensor(a, requires_grad=True) for a in arrays]
    out = fn(*inputs)
    out.backward(np.asarray(direction, dtype=out.dtype))
    return [np.zeros_like(a) if t.grad is None else t.grad for t, a in zip(inputs, arrays)]


def gradcheck(fn, *inputs, h=1e-6, rtol=1e-5, atol=1e-7, max_entries=200, seed=0):
    """Raise GradcheckError unless backward() agrees with finite differences for every input of `fn`.

    fn        : function of Tensors returning a Tensor (any shape)
    inputs    : arrays (float64 ones are used as given, views included; others are converted)
    max_entries: at most this many randomly chosen entries are checked per input (all when fewer)
    Returns the largest absolute error seen.
    """
    rng = np.random.default_rng(seed)
    arrays = [_as_float64(a) for a in inputs]
    out_shape = fn(*[Tensor(a) for a in arrays]).shape
    direction = rng.standard_normal(out_shape)
    analytic = analytic_gradients(fn, arrays, direction)
    worst_error = 0.0
    for i, x in enumerate(arrays):
        entries = np.arange(x.size)
        if x.size > max_entries:
            entries = rng.choice(x.size, max_entries, replace=False)
        numeric = numeric_gradient(fn, arrays, i, direction, h, entries)
        exact = analytic[i].reshape(-1)[entries]
        error = np.abs(exact - numeric)
        error[~np.isfinite(error)] = np.inf   # a NaN gradient must fail (NaN > allowed would be False)
        allowed = atol + rtol * np.abs(numeric)
        worst = int(np.argmax(error - allowed))
        if error[worst] > allowed[worst]:
            position = tuple(int(i) for i in np.unravel_index(entries[worst], x.shape))
            raise GradcheckError(
                f"gradient of input {i} (shape {x.shape}) is wrong at {position}: analytic {exact[worst]:.8g}, "
                f"numeric {numeric[worst]:.8g}, |error| {error[worst]:.3g} > allowed {allowed[worst]:.3g}")
        worst_error = max(worst_error, float(error.max(initial=0.0)))
    return worst_error


def _as_float64(a):
    """float64 arrays are used as given, so a non-contiguous view stays non-contiguous (entries are perturbed in
    place and restored); anything else becomes a float64 copy."""
    a = np.asarray(a)
    return a if a.dtype == np.float64 else a.astype(np.float64)
