"""Accuracy and loss of a model on a data split, in batches, without building a graph."""
import numpy as np

from .autodiff import Tensor, no_grad, ops
from .cli import progress_bar
from .nn.inference import forward_function


def predict_logits(model, x, batch_size=1000, params=None, desc=None):
    """Logits for all of `x` in evaluation mode, batch by batch (with a progress bar named `desc`, if given).

    The CNN, the MLP and the LSNN with plain float32 parameters run their evaluation path (nn/inference.py: no
    graph, no state kept for a backward pass, fused kernels); anything else (the ResNet, Interval or PCM
    parameters, float64) runs the model's own forward under no_grad. Both give the same logits up to float32
    rounding."""
    was_training = model.training
    model.eval()
    starts = range(0, len(x), batch_size)
    try:
        forward = forward_function(model, params)
        if forward is None:
            def forward(batch):
                with no_grad():
                    return model(Tensor(batch), params).data
        chunks = [forward(x[i:i + batch_size])
                  for i in (starts if desc is None else progress_bar(starts, desc=desc, unit="batch"))]
    finally:
        model.train(was_training)
    return np.concatenate(chunks)


def accuracy(model, split, batch_size=1000, params=None, desc=None):
    """Fraction of samples whose largest logit is the true class."""
    return float(np.mean(predict_logits(model, split.x, batch_size, params, desc).argmax(axis=1) == split.y))


def mean_cross_entropy(model, split, batch_size=1000, params=None):
    logits = predict_logits(model, split.x, batch_size, params)
    return ops.cross_entropy(Tensor(logits.astype(np.float64)), split.y).item()
