"""Accuracy and loss of a model on a data split, in batches, without building a graph."""
import numpy as np

from .autodiff import Tensor, no_grad, ops
from .cli import progress_bar


def predict_logits(model, x, batch_size=1000, params=None, desc=None):
    """Logits for all of `x`, computed batch by batch under no_grad (with a progress bar named `desc`, if given)."""
    was_training = model.training
    model.eval()
    starts = range(0, len(x), batch_size)
    try:
        with no_grad():
            chunks = [model(Tensor(x[i:i + batch_size]), params).data
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
