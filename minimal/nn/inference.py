"""The evaluation path of the CNN, the MLP and the LSNN: logits from plain float32 arrays, no autodiff graph.

Scoring a network is most of what the experiments do: 100 mismatch draws of the F-MNIST CNN, each on the 10 000
test images (Table 1), the attack's final scoring, the loss landscape, the sweeps' validation. The model's own
forward (cnn.py, lsnn.py) serves training, where every layer keeps what its backward pass needs. Here nothing is
kept:
  - no Tensors, no saved inputs, no max-pool argmax, no LSNN states for BPTT (only the firing rates);
  - the CNN's layers are fused where one pass over the data can do the work of several (convolution, max-pool,
    bias and ReLU), in channels-last layout (kernels/inference.py says why), a few images at a time so that the
    patch matrix stays in the CPU cache;
  - scratch arrays are kept from call to call (`Workspace`), so that 100 draws do not allocate the same memory
    100 times.
It computes the same functions as the models' forward passes, to float32 rounding (sums in another order):
tests/test_inference.py holds them equal, and every committed checkpoint reproduces its recorded test accuracy.

`forward_function(model, params)` is what metrics.predict_logits asks for. It returns None, and predict_logits runs
the model's own forward under no_grad, for every case this file does not cover: other models (the ResNet), and
parameters that are not plain arrays (Intervals for IBP, PCM crossbars) or not float32.
"""
import threading

import numpy as np

from ..autodiff import Tensor
from ..kernels import inference as kernels
from ..kernels.blas import prepare_blas_for_evaluation
from ..kernels import lsnn as lsnn_kernels
from ..kernels.conv import as_pair
from .cnn import CNN
from .lsnn import LSNN
from .mlp import MLP

# Images per pass through the convolutions. conv2's patch matrix takes 410 KB per image (100 output pixels ×
# 1024 inputs × 4 bytes): 16 images, 6.5 MB, stay in the CPU's last-level cache (8 MB here) between im2col and
# the product, and the product (1600 × 1024 @ 1024 × 64, 0.2 GFLOP) is large enough that handing it to BLAS's
# threads and back costs little. Measured per 10 000 images, 2 threads: on a busy machine 8 images 21.7 s,
# 16 images 15.3 s, 32 15.0 s, 125 14.0 s (with OpenBLAS's default spinning threads, see minimal/__init__.py);
# without the spinning, 8 images 8.16 s, 16 7.89 s, 32 7.86 s, 4 8.56 s; with the machine otherwise idle 8 and 16
# within 10 % of each other; on one thread 4 to 64 images within 2 %.
CHUNK_IMAGES = 16


class Workspace:
    """Scratch arrays kept between calls, one per name (per thread, so that threads never share one)."""

    def __init__(self):
        self.local = threading.local()

    def array(self, name, shape, dtype=np.float32):
        """An uninitialised array of this shape and dtype; the same memory as the last call with this name,
        if that one was as large."""
        arrays = self.local.__dict__.setdefault("arrays", {})
        size = int(np.prod(shape))
        if name not in arrays or arrays[name].size < size or arrays[name].dtype != dtype:
            arrays[name] = np.empty(size, dtype)
        return arrays[name][:size].reshape(shape)


WORKSPACE = Workspace()


def forward_function(model, params=None):
    """A function x -> logits (a new float32 array) for the model at `params` (name -> array overrides, as in
    model(x, params)), or None if the model or the parameters are of a kind this file does not handle."""
    forward = FORWARDS.get(type(model))
    if forward is None:
        return None
    p = plain_parameters(model, params)
    if p is None:
        return None
    prepare_blas_for_evaluation()         # OpenBLAS on its own threads again, after a training step's convolutions
    return forward(model, p)


def plain_parameters(model, params):
    """name -> float32 array of every parameter (the overrides applied), or None if any of them is something
    else than a float32 array or Tensor (an Interval, a PCM crossbar, float64 for a gradient check), or has
    another shape than the model's own (the model's forward then names the error; the kernels do not check)."""
    own = dict(model.named_parameters())
    p = {}
    for name, value in model.parameter_dict(params).items():
        array = value.data if isinstance(value, Tensor) else value   # a Parameter or Tensor: its array
        if type(array) is not np.ndarray or array.dtype != np.float32 or array.shape != own[name].shape:
            return None
        p[name] = array
    return p


def dense(x, weight, bias, relu):
    """x W + b (then ReLU), in place on the product: the same arithmetic as F.linear and F.relu."""
    y = x @ weight
    y += bias
    return np.maximum(y, 0, out=y) if relu else y


def as_float32(x):
    return np.ascontiguousarray(x.data if isinstance(x, Tensor) else x, dtype=np.float32)


# ---------------------------------------------------------------------------------------------------- CNN
def cnn_forward(model, p):
    """The CNN of cnn.py, or None if a convolution has a stride or padding (the kernels assume neither)."""
    for conv in (model.conv1, model.conv2):
        if as_pair(conv.stride, "stride") != (1, 1) or as_pair(conv.padding, "padding") != (0, 0):
            return None
    w1, w2 = p["conv1.weight"], p["conv2.weight"]                    # (F, C, KH, KW)
    conv1_pool_relu = kernels.conv_pool_relu_kernel(w1.shape[2], w1.shape[3], w1.shape[1])
    conv1, conv2 = filters_last(w1), filters_last(w2)                # (KH·KW·C, F)

    def conv_blocks(images, features):
        """conv -> max-pool -> ReLU twice, for a few images (N, H, W, C); flattened into features (N, 1600)."""
        n, n_filters = len(images), w2.shape[0]
        block1 = WORKSPACE.array("block1", (n, kernels.pooled_size(images.shape[1] - w1.shape[2] + 1),
                                            kernels.pooled_size(images.shape[2] - w1.shape[3] + 1), w1.shape[0]))
        conv1_pool_relu(images, conv1, p["conv1.bias"], block1)      # (N, 13, 13, 64): one kernel
        out_h, out_w = block1.shape[1] - w2.shape[2] + 1, block1.shape[2] - w2.shape[3] + 1
        cols = WORKSPACE.array("cols", (n, out_h, out_w, w2.shape[2], w2.shape[3], w2.shape[1]))
        kernels.im2col(block1, cols)                                 # (N·10·10, 4·4·64)
        product = WORKSPACE.array("conv2", (n * out_h * out_w, n_filters))
        np.matmul(cols.reshape(len(product), -1), conv2, out=product)   # conv2 on BLAS: (N·10·10, 64)
        kernels.bias_pool_relu(product.reshape(n, out_h, out_w, n_filters), p["conv2.bias"],
                               features.reshape(n, n_filters, kernels.pooled_size(out_h), kernels.pooled_size(out_w)))

    def forward(x):
        if np.ndim(x) != 4 or np.shape(x)[1] != w1.shape[1]:
            raise ValueError(f"the CNN takes images (N, {w1.shape[1]}, H, W), got shape {np.shape(x)}")
        images = channels_last(as_float32(x))
        features = np.empty((len(images), model.fc1.weight.shape[0]), np.float32)
        for start in range(0, len(images), CHUNK_IMAGES):
            conv_blocks(images[start:start + CHUNK_IMAGES], features[start:start + CHUNK_IMAGES])
        h = dense(features, p["fc1.weight"], p["fc1.bias"], relu=True)
        h = dense(h, p["fc2.weight"], p["fc2.bias"], relu=True)
        return dense(h, p["fc3.weight"], p["fc3.bias"], relu=False)
    return forward


def filters_last(weight):
    """Convolution weights (F, C, KH, KW) as the matrix (KH·KW·C, F) that channels-last patches multiply."""
    return np.ascontiguousarray(weight.transpose(2, 3, 1, 0)).reshape(-1, weight.shape[0])


def channels_last(x):
    """(N, C, H, W) -> (N, H, W, C), contiguous (no copy for one channel)."""
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


# ---------------------------------------------------------------------------------------------------- MLP
def mlp_forward(model, p):
    def forward(x):
        h = as_float32(x).reshape(len(x), -1)
        h = dense(h, p["fc1.weight"], p["fc1.bias"], relu=True)
        h = dense(h, p["fc2.weight"], p["fc2.bias"], relu=True)
        return dense(h, p["fc3.weight"], p["fc3.bias"], relu=False)
    return forward


# ---------------------------------------------------------------------------------------------------- LSNN
def lsnn_forward(model, p):
    """The LSNN's fused kernel asked for the firing rates only (none of the states BPTT needs), then the readout."""
    w_rec = p["w_rec"] * model.off_diagonal
    c = model.kernel_constants(np.float32)

    def forward(x):
        x = model.checked_input(as_float32(x)).data
        rates = lsnn_kernels.lsnn_rates(x, p["w_in"], w_rec, c["rho_v"], c["rho_b"], c["b0"],
                                        c["adaptation_strength"], model.refractory, model.event_driven)
        return dense(rates, p["w_out"], p["b_out"], relu=False)
    return forward


FORWARDS = {CNN: cnn_forward, MLP: mlp_forward, LSNN: lsnn_forward}
