"""Accuracy and loss of a model on a data split, in batches, without building a graph."""
import numpy as np

from .autodiff import Tensor, no_grad, ops


def predict_logits(model, x, batch_size=1000, params=None):
    """Logits for all of `x`, computed batch by batch under no_grad."""
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            chunks = [model(Tensor(x[i:i + batch_size]), params).data for i in range(0, len(x), batch_size)]
    finally:
        model.train(was_training)
    return np.concatenate(chunks)


def accuracy(model, split, batch_size=1000, params=None):
    """Fraction of samples whose largest logit is the true class."""
    return float(np.mean(predict_logits(model, split.x, batch_size, params).argmax(axis=1) == split.y))


def mean_cross_entropy(model, split, batch_size=1000, params=None):
    logits = predict_logits(model, split.x, batch_size, params)
    return ops.cross_entropy(Tensor(logits.astype(np.float64)), split.y).item()
