"""Training methods: one function per method that fills `p.grad` for every parameter and returns the loss.

Signature of every method: method(model, x, y, rng, config) -> float (the minibatch loss). The training loop
then calls the optimiser. Later methods (forward noise, the paper's β_rob attack, AWP, …) slot in beside
`standard` with the same signature.
"""
from ..autodiff import Tensor, ops


def standard(model, x, y, rng, config):
    """Plain empirical risk minimisation: L_nat = cross-entropy(f(Θ, X), y)."""
    loss = ops.cross_entropy(model(Tensor(x)), y)
    model.zero_grad()
    loss.backward()
    return loss.item()


METHODS = {"standard": standard}
