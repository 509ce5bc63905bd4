"""A small reverse-mode autodiff engine: Tensor and the graph printers (tensor.py), the ops with their backwards
(ops.py), and a finite-difference gradient checker (gradcheck.py)."""
from .tensor import Tensor, draw_graph, format_graph, no_grad, print_graph
from . import ops
