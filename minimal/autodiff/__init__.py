"""A small reverse-mode autodiff engine: Tensor (tensor.py), the ops with their backwards (ops.py), and a
finite-difference gradient checker (gradcheck.py)."""
from .tensor import Tensor, no_grad
from . import ops
