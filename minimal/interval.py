"""Interval bound propagation (IBP): computing with boxes of numbers instead of numbers.

An Interval holds two arrays of one shape, `lo` ≤ `hi`, and stands for every array a with lo ≤ a ≤ hi. Every
operation below is *sound*: its result contains every value the operation can produce from values inside its
input intervals. It also tries to be *tight* (no wider than it has to be).

Weights as intervals (the paper's "Verifiable robustness for LSNNs"): an attacker (or device mismatch) that may
move every parameter by up to ζ|Θ| turns the trained parameters Θ into the box

    [Θ − ζ|Θ|, Θ + ζ|Θ|]                                                  Interval.weight_box(Θ, ζ)

Run a model on these interval parameters and its logits come out as intervals that contain the logits of every
network in the box. The models do not need a second copy for this: they are written with `minimal.nn.functional`,
whose functions send Intervals here and everything else to the autodiff ops.

The rules, for a = [a.lo, a.hi] and b = [b.lo, b.hi]:

    a + b = [a.lo + b.lo, a.hi + b.hi]            a − b = [a.lo − b.hi, a.hi − b.lo]            −a = [−a.hi, −a.lo]
    a · b = [min, max] of the four corner products a.lo·b.lo, a.lo·b.hi, a.hi·b.lo, a.hi·b.hi
    f(a)  = [f(a.lo), f(a.hi)] for every increasing f: ReLU, max-pooling, sums and means
    x @ W and conv(x, W): sums of products, bounded with a sign split (`bilinear_bounds`; 2-D matrix products
                          run in a numba kernel that skips the zeros of x, and adds rows of W for 0/1 spikes)
    spike 1(V > B) = [1(V.lo > B.hi), 1(V.hi > B.lo)]: [0, 0] never fires, [1, 1] always, [0, 1] may fire

Where NumPy would need several passes over the arrays for one rule (a · b: four products, three minima, three
maxima), a numba ufunc computes each bound in one pass (minimal/kernels/interval.py, tested against the NumPy
formulas). That, and the product kernel, make the LSNN's interval pass (its reference path on Intervals) ~5 times
as slow as its point pass instead of ~17 times. Still ~30 such operations per time step; the LSNN's fused interval
kernel (kernels/lsnn_interval.py) does the same float operations in one loop per sample, in parallel: ~2 times
the point pass (python -m minimal.bench --only ibp).

The matrix product keeps the sign split even where one factor is a point (x_t W_in in the LSNN), although the
centre-radius form x W_c ± |x| W_r is exact there with two BLAS products: for the LSNN's (100 × 8) @ (8 × 256)
BLAS took 39 µs per product, and inside the time loop the interval pass got slower, not faster (measured: 417 ms
against 179 ms at ζ = 1e-5, on a loaded 2-core machine). For two intervals the centre-radius bound
c_x c_W ± (|c_x| r_W + r_x |c_W| + r_x r_W) is looser than the four corners ([0, 2]·[1, 3] = [0, 6], but 2 ± 4).

Two properties the tests check:
  - At a point (lo == hi, ζ = 0) every operation computes exactly what NumPy and the autodiff ops compute on that
    point, bit for bit, so the interval pass at ζ = 0 equals the point pass.
  - Floating point: bounds are computed with the usual round-to-nearest arithmetic, so they hold up to rounding
    (about 1e-7 relative in float32). A rigorous verifier would round every lower bound down and every upper
    bound up; for comparing training methods, as the paper does, this does not matter.
"""
import numpy as np

from .kernels import conv as conv_kernels
from .kernels import interval as interval_kernels


class Interval:
    """An array-valued interval [lo, hi]: two NumPy arrays of one shape with lo ≤ hi everywhere."""

    __array_ufunc__ = None  # `ndarray + Interval`: NumPy steps aside and Python calls Interval.__radd__

    def __init__(self, lo, hi):
        """Checks lo ≤ hi. Points and the results of the sound operations below skip the check (see `_result`)."""
        lo, hi = np.asarray(lo), np.asarray(hi)
        if lo.shape != hi.shape:
            raise ValueError(f"Interval lo and hi must have the same shape, got {lo.shape} and {hi.shape}")
        if not np.all(lo <= hi):  # also rejects NaN
            bad = int(np.sum(~(lo <= hi)))
            raise ValueError(f"Interval needs lo <= hi everywhere, but {bad} of {lo.size} entries are not "
                             f"(or are NaN), shape {lo.shape}")
        self.lo, self.hi = lo, hi

    @staticmethod
    def point(value):
        """The interval [value, value] that holds one array (lo = hi: nothing to check)."""
        value = np.asarray(value)
        return _result(value, value)

    @classmethod
    def weight_box(cls, theta, zeta):
        """[Θ − ζ|Θ|, Θ + ζ|Θ|]: every parameter may move by ζ times its own magnitude (the paper's attack box)."""
        if not zeta >= 0:
            raise ValueError(f"the attack size zeta must be >= 0, got {zeta}")
        theta = np.asarray(getattr(theta, "data", theta))  # a Parameter or Tensor: its array
        radius = np.abs(theta) * np.asarray(zeta, dtype=theta.dtype)
        return cls(theta - radius, theta + radius)

    # ------------------------------------------------------------------------------------------- array info
    @property
    def shape(self):
        return self.lo.shape

    @property
    def ndim(self):
        return self.lo.ndim

    @property
    def dtype(self):
        return self.lo.dtype

    @property
    def width(self):
        """hi − lo: 0 where the interval is a point."""
        return self.hi - self.lo

    def __repr__(self):
        return f"Interval(lo={self.lo!r}, hi={self.hi!r})"

    # ------------------------------------------------------------------------------------------- operators
    def __add__(self, other): return add(self, other)
    def __radd__(self, other): return add(other, self)
    def __sub__(self, other): return sub(self, other)
    def __rsub__(self, other): return sub(other, self)
    def __mul__(self, other): return mul(self, other)
    def __rmul__(self, other): return mul(other, self)
    def __matmul__(self, other): return matmul(self, other)
    def __rmatmul__(self, other): return matmul(other, self)
    def __neg__(self): return neg(self)
    def __getitem__(self, index): return _result(self.lo[index], self.hi[index])


# ---------------------------------------------------------------------------------------------------- helpers
def as_interval(value, like=None):
    """`value` as an Interval: an Interval as it is; an array, number or Tensor as the point [value, value].
    A Python number takes the dtype of `like`, so float32 stays float32 (as in the autodiff ops)."""
    if isinstance(value, Interval):
        return value
    value = getattr(value, "data", value)  # a Tensor or Parameter: its array
    if like is not None and np.isscalar(value):
        value = np.asarray(value, dtype=like.dtype)
    return Interval.point(value)


def _operands(a, b):
    """Both operands of a binary op as Intervals (a number borrows the dtype of the other operand)."""
    if isinstance(a, Interval):
        return a, as_interval(b, like=a)
    b = as_interval(b)
    return as_interval(a, like=b), b


def _result(lo, hi):
    """An operation's result: two arrays of one shape. The operations are sound, so lo ≤ hi holds by construction
    and is not checked again: the check would cost as much as many of the operations, and in floating point a
    nearly-point result can come out inverted by one rounding error, which must not stop a verification run.
    Built without __init__, which would also convert the arrays and compare their shapes: 0.2 µs less per
    Interval, and the LSNN's interval pass makes ~3000 of them."""
    result = object.__new__(Interval)
    result.lo, result.hi = lo, hi
    return result


def _hull(*corners):
    """The smallest interval holding every one of the given arrays (entrywise min and max)."""
    lo = hi = corners[0]
    for corner in corners[1:]:
        lo, hi = np.minimum(lo, corner), np.maximum(hi, corner)
    return _result(lo, hi)


def _filled(x, shape):
    """x as it is, or, if it is a number (0-d), filled out to `shape`. numba's ufuncs (kernels/interval.py) use SIMD
    instructions only when no operand is a broadcast number: on 100 × 256 entries filling costs 3 µs and saves ~30."""
    if x.ndim > 0:
        return x
    if x.lo is x.hi:
        return Interval.point(np.full(shape, x.lo))
    return _result(np.full(shape, x.lo), np.full(shape, x.hi))


positive_part = interval_kernels.positive_part   # a⁺ = max(a, 0)
negative_part = interval_kernels.negative_part   # a⁻ = min(a, 0), so that a = a⁺ + a⁻


# ---------------------------------------------------------------------------------------------------- arithmetic
def add(a, b):
    a, b = _operands(a, b)
    return _result(a.lo + b.lo, a.hi + b.hi)


def sub(a, b):
    """a − b is smallest when a is smallest and b largest."""
    a, b = _operands(a, b)
    return _result(a.lo - b.hi, a.hi - b.lo)


def neg(a):
    return _result(-a.hi, -a.lo)


def mul(a, b):
    """a · b elementwise. A product of two intervals is extreme at a corner of the box, so the bounds are the min
    and max of the four corner products. Times a point m (a number or an array) two corners remain: a.lo·m, a.hi·m."""
    if not isinstance(a, Interval):
        a, b = b, a  # multiplication commutes: let `a` be the Interval
    if isinstance(b, Interval):
        return _result(interval_kernels.mul_lower(a.lo, a.hi, b.lo, b.hi),
                       interval_kernels.mul_upper(a.lo, a.hi, b.lo, b.hi))
    if type(b) in (int, float):  # a Python number (ρ, β in the LSNN; not np.float64): NumPy keeps a's dtype
        m, nonnegative = b, b >= 0
    else:
        m = as_interval(b, like=a).lo
        nonnegative = m.min(initial=0) >= 0  # initial: m may be empty
    lo, hi = a.lo * m, a.hi * m
    return _result(lo, hi) if nonnegative else _hull(lo, hi)  # m ≥ 0 keeps the order: m·lo ≤ m·hi


# ---------------------------------------------------------------------------------------------------- x @ W, conv
def bilinear_bounds(x, w, product):
    """Bounds of product(x, w) for a `product` that is linear in each argument and sums elementwise products
    (matmul, convolution), with x and w both Intervals.

    Each term x·w of the sum is bounded separately. Split x into its positive and negative parts, x = x⁺ + x⁻:
      x⁺·w (x⁺ ≥ 0) is smallest with w at its lowest, w̲; then with x⁺ at its lowest if w̲ ≥ 0, at its highest if w̲ < 0
      x⁻·w (x⁻ ≤ 0) is smallest with w at its highest, w̄; then x⁻ at its lowest if w̄ ≥ 0, at its highest if w̄ < 0
    so, with every product a matrix product (or convolution) over all terms at once:

      lower = x̲⁺ w̲⁺ + x̄⁺ w̲⁻ + x̲⁻ w̄⁺ + x̄⁻ w̄⁻
            = x̲ w̲  +  x̲⁻ (w̄ − w̲)  +  (x̄⁺ − x̲⁺) w̲⁻  +  (x̄⁻ − x̲⁻) w̄⁻              (rearranged)
      upper = x̄ w̄  −  x̄⁻ (w̄ − w̲)  −  (x̄⁺ − x̲⁺) w̄⁻  −  (x̄⁻ − x̲⁻) w̲⁻              (the same argument)

    The rearranged form has two virtues. At a point every width is 0, so only x̲ w̲ remains: bit for bit the point
    result. And factors that are all zeros are common (a point input has no width; ReLU outputs have no negative
    part), so their products are skipped: a convolution of a non-negative point input costs 2 point convolutions,
    of a ReLU output 4, in general 8.

    Tightness: in a term where x or w has one sign, this is the exact range of x·w (the four-corner bound). For
    weight boxes with ζ ≤ 1 this always holds (w̲ and w̄ have the sign of Θ). Only where both x and w straddle 0
    is it looser: x̄ w̲ + x̲ w̄ instead of min(x̄ w̲, x̲ w̄) (still sound).
    """
    x_pos_width = positive_part(x.hi) - positive_part(x.lo)   # x̄⁺ − x̲⁺
    x_neg_width = negative_part(x.hi) - negative_part(x.lo)   # x̄⁻ − x̲⁻
    w_width = w.hi - w.lo                                     # w̄ − w̲
    lower = (product(x.lo, w.lo)
             + _product_unless_zero(product, negative_part(x.lo), w_width)
             + _product_unless_zero(product, x_pos_width, negative_part(w.lo))
             + _product_unless_zero(product, x_neg_width, negative_part(w.hi)))
    upper = (product(x.hi, w.hi)
             - _product_unless_zero(product, negative_part(x.hi), w_width)
             - _product_unless_zero(product, x_pos_width, negative_part(w.hi))
             - _product_unless_zero(product, x_neg_width, negative_part(w.lo)))
    return _result(lower, upper)


def _product_unless_zero(product, a, b):
    """product(a, b), or exactly 0 without any work when a or b is all zeros."""
    if not a.any() or not b.any():
        return 0
    return product(a, b)


def matmul(x, w):
    """x @ W with x and W intervals (or points); leading axes broadcast as in np.matmul. Three ways to the same
    bounds (up to rounding):
      both points          the point product itself, so ζ = 0 gives the point pass bit for bit
      both 2-D             the numba kernel, which skips the zeros of x (spikes!) (kernels/interval.py)
      otherwise            bilinear_bounds with NumPy's matmul (BLAS)
    """
    x, w = _operands(x, w)
    if x.ndim < 2 or w.ndim < 2 or x.shape[-1] != w.shape[-2]:
        raise ValueError(f"interval matmul: shapes {x.shape} and {w.shape} do not match "
                         f"(need (..., n, k) and (..., k, m))")
    if is_point(x) and is_point(w):
        product = x.lo @ w.lo
        return _result(product, product)
    if x.ndim == 2 and w.ndim == 2:
        return _result(*interval_kernels.matmul_bounds(x.lo, x.hi, w.lo, w.hi))
    return bilinear_bounds(x, w, np.matmul)


def is_point(x):
    """True if lo == hi everywhere (at once if they are one array, as in Interval.point)."""
    return x.lo is x.hi or np.array_equal(x.lo, x.hi)


def conv2d(x, w, b=None, stride=1, padding=0):
    """2-D convolution (as ops.conv2d) of an interval input x (N, C, H, W) with interval filters w (F, C, KH, KW),
    plus an interval bias b (F,). Convolution is a sum of products like x @ W: a few point convolutions."""
    x, w = _operands(x, w)
    y = bilinear_bounds(x, w, lambda a, f: conv_kernels.conv2d_forward(a, f, stride, padding))
    return y if b is None else add(y, reshape(as_interval(b, like=y), (1, -1, 1, 1)))


# ---------------------------------------------------------------------------------------------------- increasing
def increasing(function, x):
    """[f(x.lo), f(x.hi)] for a function f that is increasing in every input (if a ≤ a' entrywise then
    f(a) ≤ f(a') entrywise): the bounds go to the bounds."""
    return _result(function(x.lo), function(x.hi))


def relu(x):
    return increasing(positive_part, x)


def max_pool2d(x, kernel_size=2, stride=None, padding=0, ceil_mode=False):
    """Max-pooling (as ops.max_pool2d, numeric padding only): a max is increasing in every input."""
    stride = kernel_size if stride is None else stride
    return increasing(lambda a: conv_kernels.max_pool2d_forward(a, kernel_size, stride, padding, ceil_mode)[0], x)


def sum(x, axis=None, keepdims=False):
    return increasing(lambda a: np.sum(a, axis=axis, keepdims=keepdims), x)


def mean(x, axis=None, keepdims=False):
    return increasing(lambda a: np.mean(a, axis=axis, keepdims=keepdims), x)


# ---------------------------------------------------------------------------------------------------- structure
def reshape(x, shape):
    return _result(x.lo.reshape(shape), x.hi.reshape(shape))


def flatten(x):
    """(N, ...) -> (N, features), as ops.flatten."""
    return reshape(x, (x.shape[0], -1))


def concatenate(intervals, axis=0):
    intervals = [as_interval(a) for a in intervals]
    return _result(np.concatenate([a.lo for a in intervals], axis=axis),
                   np.concatenate([a.hi for a in intervals], axis=axis))


# ---------------------------------------------------------------------------------------------------- 0/1 values
def spike(v, threshold):
    """The Heaviside spike z = 1(V > B). It surely fires when even the lowest V beats the highest B, and may fire
    when the highest V beats the lowest B: z = [1(V.lo > B.hi), 1(V.hi > B.lo)], i.e. [0,0], [1,1] or [0,1]."""
    v, threshold = _operands(v, threshold)
    return _result(interval_kernels.exceeds(v.lo, threshold.hi), interval_kernels.exceeds(v.hi, threshold.lo))


def equal(a, value):
    """1(a = value) for a constant `value`: surely 1 where the interval is the point `value`, possibly 1 where
    it contains `value`."""
    value = np.full(a.shape, value, dtype=a.dtype)  # an array, not a number: see _filled
    return _result(interval_kernels.equal_lower(a.lo, a.hi, value), interval_kernels.equal_upper(a.lo, a.hi, value))


def where(condition, a, b):
    """condition ? a : b, for a condition of 0/1 values (such as spikes). Where the condition is sure (lo = hi),
    the chosen operand's bounds; where it is [0, 1], some networks take a and others b: the hull of both."""
    condition = as_interval(condition)
    a, b = (as_interval(value, like=condition) for value in (a, b))
    shape = np.broadcast(condition.lo, a.lo, b.lo).shape
    condition, a, b = (_filled(x, shape) for x in (condition, a, b))
    return _result(interval_kernels.where_lower(condition.lo, condition.hi, a.lo, b.lo),
                   interval_kernels.where_upper(condition.lo, condition.hi, a.hi, b.hi))
