"""Every differentiable op: its forward, and right below it the backward closure that undoes it.

Pattern (as in micrograd): compute the output array, then define `backward(g)` where g = dLoss/dOutput, which
adds dLoss/dInput into each input's `.grad` with `accumulate_grad`. Inputs that are not Tensors (Python numbers,
NumPy arrays) are treated as constants.

Broadcasting: when an input was broadcast in the forward pass (a bias of shape (64,) added to (100, 64)), its
gradient must be summed back over the broadcast axes. `unbroadcast` is the one place that does it.

Each op labels its output with a short name (`op=` of `Tensor.from_op`), which `print_graph` shows. Ops whose
natural name is a Python builtin are named as in NumPy or TensorFlow instead: `absolute`, `power`, `reduce_sum`,
`reduce_max` (Tensor's methods keep the short names: t.sum(), t.max(), t.abs()).
"""
import numpy as np

from ..kernels import conv as conv_kernels
from .tensor import Tensor, accumulate_grad


# ---------------------------------------------------------------------------------------------------- helpers
def as_tensor(value, like=None):
    """Wrap a constant as a Tensor. A Python number takes the dtype of `like`, so float32 stays float32."""
    if isinstance(value, Tensor):
        return value
    if like is not None and np.isscalar(value):
        return Tensor(np.asarray(value, dtype=like.dtype))
    return Tensor(value)


def _operands(a, b):
    """Both operands of a binary op as Tensors (a constant borrows the dtype of the Tensor operand)."""
    if isinstance(a, Tensor):
        return a, as_tensor(b, like=a)
    b = as_tensor(b)
    return as_tensor(a, like=b), b


def unbroadcast(grad, shape):
    """Sum `grad` down to `shape`: undo NumPy broadcasting (leading axes added, size-1 axes stretched)."""
    while grad.ndim > len(shape):
        grad = grad.sum(axis=0)
    for axis, size in enumerate(shape):
        if size == 1 and grad.shape[axis] != 1:
            grad = grad.sum(axis=axis, keepdims=True)
    return grad


def _normalise_axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    axes = axis if isinstance(axis, tuple) else (axis,)
    return tuple(a % ndim for a in axes)


def _expand_reduced(grad, input_shape, axis, keepdims):
    """Give a reduced gradient back its reduced axes (size 1) so it broadcasts against the input."""
    if keepdims:
        return grad
    return np.expand_dims(grad, _normalise_axes(axis, len(input_shape)))


# ---------------------------------------------------------------------------------------------------- arithmetic
def add(a, b):
    a, b = _operands(a, b)

    def backward(g):
        accumulate_grad(a, unbroadcast(g, a.shape))
        accumulate_grad(b, unbroadcast(g, b.shape))
    return Tensor.from_op(a.data + b.data, (a, b), backward, "+")


def sub(a, b):
    a, b = _operands(a, b)

    def backward(g):
        accumulate_grad(a, unbroadcast(g, a.shape))
        accumulate_grad(b, unbroadcast(-g, b.shape))
    return Tensor.from_op(a.data - b.data, (a, b), backward, "-")


def mul(a, b):
    a, b = _operands(a, b)

    def backward(g):
        accumulate_grad(a, unbroadcast(g * b.data, a.shape))
        accumulate_grad(b, unbroadcast(g * a.data, b.shape))
    return Tensor.from_op(a.data * b.data, (a, b), backward, "*")


def div(a, b):
    a, b = _operands(a, b)
    out = a.data / b.data

    def backward(g):
        accumulate_grad(a, unbroadcast(g / b.data, a.shape))
        accumulate_grad(b, unbroadcast(-g * out / b.data, b.shape))  # d(a/b)/db = -a/b² = -out/b
    return Tensor.from_op(out, (a, b), backward, "/")


def neg(a):
    def backward(g):
        accumulate_grad(a, -g)
    return Tensor.from_op(-a.data, (a,), backward, "neg")


def power(a, exponent):
    """a ** exponent for a constant (Python number) exponent."""
    if isinstance(exponent, Tensor):
        raise TypeError("power: the exponent must be a constant number, not a Tensor")

    def backward(g):
        if exponent == 0:  # a⁰ = 1 is constant; the general formula would give 0 · 0⁻¹ = 0 · inf = NaN at a = 0
            accumulate_grad(a, np.zeros_like(a.data))
        else:
            accumulate_grad(a, g * exponent * a.data ** (exponent - 1))
    return Tensor.from_op(a.data ** exponent, (a,), backward, f"**{exponent}")


def matmul(a, b):
    """a @ b for arrays of 2 or more dimensions (leading axes broadcast as in np.matmul)."""
    a, b = _operands(a, b)
    if a.ndim < 2 or b.ndim < 2:
        raise ValueError(f"matmul needs 2-D or batched operands, got shapes {a.shape} and {b.shape}")
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(f"matmul shapes {a.shape} and {b.shape} do not match ({a.shape[-1]} != {b.shape[-2]})")

    def backward(g):
        accumulate_grad(a, unbroadcast(g @ np.swapaxes(b.data, -1, -2), a.shape))
        accumulate_grad(b, unbroadcast(np.swapaxes(a.data, -1, -2) @ g, b.shape))
    return Tensor.from_op(a.data @ b.data, (a, b), backward, "matmul")


# ---------------------------------------------------------------------------------------------------- elementwise
def exp(a):
    out = np.exp(a.data)

    def backward(g):
        accumulate_grad(a, g * out)
    return Tensor.from_op(out, (a,), backward, "exp")


def log(a):
    def backward(g):
        accumulate_grad(a, g / a.data)
    return Tensor.from_op(np.log(a.data), (a,), backward, "log")


def absolute(a):
    def backward(g):
        accumulate_grad(a, g * np.sign(a.data))
    return Tensor.from_op(np.abs(a.data), (a,), backward, "absolute")


def relu(a):
    def backward(g):
        accumulate_grad(a, g * (a.data > 0))
    return Tensor.from_op(np.maximum(a.data, 0), (a,), backward, "relu")


def where(condition, a, b):
    """condition ? a : b elementwise; `condition` is a constant boolean array."""
    condition = np.asarray(condition.data if isinstance(condition, Tensor) else condition, dtype=bool)
    a, b = _operands(a, b)

    def backward(g):
        accumulate_grad(a, unbroadcast(np.where(condition, g, 0), a.shape))
        accumulate_grad(b, unbroadcast(np.where(condition, 0, g), b.shape))
    return Tensor.from_op(np.where(condition, a.data, b.data), (a, b), backward, "where")


def clip(a, low, high):
    """Clamp to [low, high] (constants); the gradient passes only where a was inside."""
    inside = (a.data >= low) & (a.data <= high)

    def backward(g):
        accumulate_grad(a, g * inside)
    return Tensor.from_op(np.clip(a.data, low, high), (a,), backward, "clip")


# ---------------------------------------------------------------------------------------------------- reductions
def reduce_sum(a, axis=None, keepdims=False):
    """Sum over axes (all when axis is None); every input entry gets the gradient of the sum it is part of."""
    def backward(g):
        accumulate_grad(a, np.broadcast_to(_expand_reduced(g, a.shape, axis, keepdims), a.shape))
    return Tensor.from_op(np.sum(a.data, axis=axis, keepdims=keepdims), (a,), backward, "reduce_sum")


def mean(a, axis=None, keepdims=False):
    count = int(np.prod([a.shape[i] for i in _normalise_axes(axis, a.ndim)]))

    def backward(g):
        accumulate_grad(a, np.broadcast_to(_expand_reduced(g, a.shape, axis, keepdims) / count, a.shape))
    return Tensor.from_op(np.mean(a.data, axis=axis, keepdims=keepdims), (a,), backward, "mean")


def reduce_max(a, axis=None, keepdims=False):
    """Maximum over axes. The gradient goes to the maximal entries (shared equally between ties)."""
    out = np.max(a.data, axis=axis, keepdims=keepdims)

    def backward(g):
        is_max = a.data == _expand_reduced(out, a.shape, axis, keepdims)
        share = is_max / np.sum(is_max, axis=axis, keepdims=True)
        accumulate_grad(a, share * _expand_reduced(g, a.shape, axis, keepdims))
    return Tensor.from_op(out, (a,), backward, "reduce_max")


# ---------------------------------------------------------------------------------------------------- structure
def reshape(a, shape):
    def backward(g):
        accumulate_grad(a, g.reshape(a.shape))
    return Tensor.from_op(a.data.reshape(shape), (a,), backward, "reshape")


def flatten(a):
    """(N, ...) -> (N, features): keep the batch axis, merge all others."""
    return reshape(a, (a.shape[0], -1))


def transpose(a, axes=None):
    """Permute the axes (reverse them when axes is None); backward applies the inverse permutation."""
    out = np.transpose(a.data, axes)  # first, so a bad permutation is reported by NumPy as given
    # argsort inverts a permutation of 0..ndim−1 only: (−1, 0, 1) must be read as (2, 0, 1) before sorting
    inverse = None if axes is None else np.argsort([axis % a.ndim for axis in axes])

    def backward(g):
        accumulate_grad(a, np.transpose(g, inverse))
    return Tensor.from_op(out, (a,), backward, "transpose")


def getitem(a, index):
    """a[index] for slices, integers and index arrays. Repeated indices add up (np.add.at)."""
    if isinstance(index, Tensor):
        index = index.data

    def backward(g):
        grad = np.zeros_like(a.data)
        np.add.at(grad, index, g)
        accumulate_grad(a, grad)
    return Tensor.from_op(a.data[index], (a,), backward, "getitem")


def concatenate(tensors, axis=0):
    tensors = [as_tensor(t) for t in tensors]
    ends = np.cumsum([t.shape[axis] for t in tensors])[:-1]

    def backward(g):
        for t, piece in zip(tensors, np.split(g, ends, axis=axis)):
            accumulate_grad(t, piece)
    return Tensor.from_op(np.concatenate([t.data for t in tensors], axis=axis), tensors, backward, "concatenate")


# ---------------------------------------------------------------------------------------------------- softmax & losses
def log_softmax_values(x, axis=-1):
    """log softmax(x) of an array, as x − max(x) − log Σ exp(x − max(x)): stable for large logits. The one
    place it is computed: the op log_softmax and cross_entropy both call it."""
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def log_softmax(a, axis=-1):
    out = log_softmax_values(a.data, axis)

    def backward(g):  # d/da_i = g_i - softmax_i · Σ_j g_j
        accumulate_grad(a, g - np.exp(out) * np.sum(g, axis=axis, keepdims=True))
    return Tensor.from_op(out, (a,), backward, "log_softmax")


def softmax(a, axis=-1):
    shifted = np.exp(a.data - np.max(a.data, axis=axis, keepdims=True))
    out = shifted / np.sum(shifted, axis=axis, keepdims=True)

    def backward(g):  # d/da_i = s_i (g_i - Σ_j g_j s_j)
        accumulate_grad(a, out * (g - np.sum(g * out, axis=axis, keepdims=True)))
    return Tensor.from_op(out, (a,), backward, "softmax")


def cross_entropy(logits, labels):
    """Mean over the batch of −log softmax(logits)[label]. logits (N, classes), labels (N,) integers.

    One op rather than log_softmax, getitem, mean and neg chained: its backward is the classic
    (softmax − onehot) / N in one step. (The chain gives the same gradient up to rounding, but rounds
    differently in the last bits, which would change every trained CNN.)
    """
    labels = np.asarray(labels)
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(f"cross_entropy needs logits (N, classes) and labels (N,), "
                         f"got {logits.shape} and {labels.shape}")
    rows = np.arange(len(labels))
    log_probs = log_softmax_values(logits.data, axis=1)
    loss = -np.mean(log_probs[rows, labels])

    def backward(g):  # d/dlogits = (softmax − onehot(label)) / N
        grad = np.exp(log_probs)
        grad[rows, labels] -= 1
        accumulate_grad(logits, g * grad / len(labels))
    return Tensor.from_op(np.asarray(loss, dtype=logits.dtype), (logits,), backward, "cross_entropy")


def kl_divergence(p, q, eps=1e-6):
    """The paper's robustness loss (Eq. 2): KL(p ‖ q) = Σ_c p_c (log p_c − log q_c), averaged over the batch.

    p = f(Θ, X) and q = f(Θ*, X) are probabilities (softmax outputs) of shape (N, classes). q is clamped at
    ≥ eps before the log — the paper does not say so; the clamp is taken from the authors' code — so a class the
    attacked network rules out cannot give log 0; p is clamped the same way (0·log 0 is taken as 0, and the
    clamp keeps its gradient finite).
    """
    log_ratio = log(clip(p, eps, 1.0)) - log(clip(q, eps, 1.0))
    return mean(reduce_sum(p * log_ratio, axis=-1))


def dropout(a, p, rng, training=True):
    """Zero each entry with probability p and scale the survivors by 1/(1−p) (identity when not training)."""
    if not training or p == 0:
        return a
    keep = (rng.random(a.shape) >= p).astype(a.dtype) / (1 - p)
    return mul(a, keep)


# ---------------------------------------------------------------------------------------------------- convolution
def conv2d(x, w, b=None, stride=1, padding=0):
    """2-D convolution (cross-correlation, as in every DL library). x (N,C,H,W), w (F,C,KH,KW), b (F,).
    stride, padding: an int or an (h, w) pair. The bias is added inside the kernel (one pass over the output
    instead of two); its gradient is grad_out summed over samples and pixels. The forward's patch rows (im2col)
    stay with the graph until backward, which needs them again for the gradient of w."""
    x, w = _operands(x, w)
    b = None if b is None else as_tensor(b, like=x)
    out, patches = conv_kernels.conv2d_forward(x.data, w.data, stride, padding, None if b is None else b.data,
                                               return_patches=True)

    def backward(g):
        if x.requires_grad:
            accumulate_grad(x, conv_kernels.conv2d_backward_input(g, w.data, x.shape[2:], stride, padding))
        if w.requires_grad:
            accumulate_grad(w, conv_kernels.conv2d_backward_weight(g, x.data, w.shape[2:], stride, padding,
                                                                   patches))
        if b is not None and b.requires_grad:
            accumulate_grad(b, g.reshape(g.shape[0], g.shape[1], -1).sum(axis=2).sum(axis=0).reshape(b.shape))
    parents = (x, w) if b is None else (x, w, b)
    return Tensor.from_op(out, parents, backward, "conv2d")


def max_pool2d(x, kernel_size=2, stride=None, padding=0, ceil_mode=False):
    """Max-pooling over (H, W); kernel_size, stride (default: the kernel size), padding: an int or an (h, w) pair.
    Padding counts as −inf.

    ceil_mode=True keeps the last, partial window: 25×25 pooled 2×2 gives 13×13 (the paper's CNN).
    """
    x = as_tensor(x)
    stride = kernel_size if stride is None else stride
    out, argmax = conv_kernels.max_pool2d_forward(x.data, kernel_size, stride, padding, ceil_mode)

    def backward(g):
        accumulate_grad(x, conv_kernels.max_pool2d_backward(g, argmax, x.shape))
    return Tensor.from_op(out, (x,), backward, "max_pool2d")


# ---------------------------------------------------------------------------------------------------- normalisation
def _per_channel(values):
    """A (C,) array shaped (1, C, 1, 1), so it broadcasts over the channel axis of (N, C, H, W)."""
    return np.reshape(values, (1, -1, 1, 1))


def batch_norm(x, weight, bias, mean=None, var=None, eps=1e-5):
    """Batch normalisation (Ioffe & Szegedy, 2015) of x (N, C, H, W), channel by channel:

        y = γ · (x − μ) / sqrt(σ² + ε) + β          γ = weight, β = bias, both of shape (C,)

    Training (mean and var not given): μ and σ² are the batch's own mean and (biased) variance over (N, H, W),
    so they depend on x and the gradient flows through them as well. Evaluation: μ = mean and σ² = var are
    given constants (the running statistics), and each sample is normalised on its own.
    """
    x = as_tensor(x)
    weight, bias = as_tensor(weight, like=x), as_tensor(bias, like=x)
    axes = (0, 2, 3)
    batch_statistics = mean is None
    if batch_statistics:
        mean, var = np.mean(x.data, axis=axes), np.var(x.data, axis=axes)
    inv_std = 1 / np.sqrt(var + eps)
    x_hat = (x.data - _per_channel(mean)) * _per_channel(inv_std)

    def backward(g):
        accumulate_grad(weight, np.sum(g * x_hat, axis=axes))
        accumulate_grad(bias, np.sum(g, axis=axes))
        g_hat = g * _per_channel(weight.data)  # dLoss/dx̂
        if batch_statistics:  # every x of a channel moves μ and σ²: remove those two shares (means over N, H, W)
            g_hat = (g_hat - np.mean(g_hat, axis=axes, keepdims=True)
                     - x_hat * np.mean(g_hat * x_hat, axis=axes, keepdims=True))
        accumulate_grad(x, g_hat * _per_channel(inv_std))
    out = _per_channel(weight.data) * x_hat + _per_channel(bias.data)
    return Tensor.from_op(out, (x, weight, bias), backward, "batch_norm")


# ---------------------------------------------------------------------------------------------------- spiking
def spike(v, threshold, dampening=0.3):
    """z = 1(V > B): a neuron spikes when its membrane potential V exceeds its threshold B.

    The step has zero derivative almost everywhere, so backward uses the surrogate of the paper's Eq. 4,
        ∂z/∂V = d · max(1 − |(V − B)/B|, 0),      ∂z/∂B = −∂z/∂V   (z depends on V − B only),
    a triangle of height d (dampening) centred on the threshold. B must be positive.
    """
    v, threshold = _operands(v, threshold)
    surrogate = dampening * np.maximum(1 - np.abs((v.data - threshold.data) / threshold.data), 0)

    def backward(g):
        accumulate_grad(v, unbroadcast(g * surrogate, v.shape))
        accumulate_grad(threshold, unbroadcast(-g * surrogate, threshold.shape))
    return Tensor.from_op((v.data > threshold.data).astype(v.dtype), (v, threshold), backward, "spike")
