"""The two losses of the paper, both taking logits (the model's raw outputs).

    L_nat = cross-entropy(f(Θ, X), y)                        the task loss
    L_rob = KL(f(Θ, X) ‖ f(Θ*, X))                           Eq. 2, the boundary loss: how much the output
                                                             distribution moves when Θ becomes Θ*

The training methods and the attack (Algorithm 1) use these, so they always agree on what is maximised and
what is minimised.
"""
from ..autodiff import ops


def cross_entropy_loss(logits, labels):
    """L_nat: mean over the batch of −log softmax(logits)[label]."""
    return ops.cross_entropy(logits, labels)


def kl_boundary_loss(logits_theta, logits_theta_star):
    """L_rob (Eq. 2): KL(softmax f(Θ, X) ‖ softmax f(Θ*, X)), averaged over the batch (q clamped at ≥ 1e-6).

    Gradients flow into both arguments. During the attack the first one is a constant (f(Θ, X) computed once);
    in the training step it is not, and its gradient is the "direct" part of ∇_Θ L_rob (see jacobian.py).
    """
    return ops.kl_divergence(ops.softmax(logits_theta), ops.softmax(logits_theta_star))
