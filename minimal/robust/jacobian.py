"""The diagonal Jacobian J = dΘ*/dΘ of the attack (Supplementary "Derivation of Jacobian"), and with it the
gradient of the robustness loss L_rob(Θ) = KL(f(Θ, X) ‖ f(A(Θ), X)) with respect to Θ.

Unrolling Algorithm 1 (attack.py) for one entry, when the projection never clips it:

    Θ* = Θ + |Θ|·ε·R + α·Σ_t sign(g_t),        α = ζ|Θ| / N_steps

The signs are piecewise constant in Θ (their derivative is 0 almost everywhere) and d|Θ|/dΘ = sign(Θ), so

    J = 1 + sign(Θ) ⊙ (ε·R + (ζ / N_steps)·Σ_t sign(g_t))                       (the paper's formula)

Where the projection clipped an entry at step c, it sat exactly on the box edge Θ ± ζ|Θ| and the steps before c
no longer matter: Θ* = Θ ± ζ|Θ| + α·Σ_{t>c} sign(g_t), hence

    J = 1 + sign(Θ) ⊙ (±ζ + (ζ / N_steps)·Σ_{t>c} sign(g_t))                    (exact, clipped entries)

which is 1 ± ζ·sign(Θ) for an entry that ended on the edge. `jacobian_diagonal` uses the exact form, the paper's
is `jacobian_diagonal_paper`; they agree on every entry that was never clipped. (With the default ε = 0.001,
ζ = 0.1, N_steps = 10 a clip practically only happens on the last step, when all N_steps signs agree: an earlier
one needs |R| > ζ/(ε·N_steps) = 10. The paper's formula then gives 1 + sign(Θ)(ε·R ± ζ) instead of
1 ± ζ·sign(Θ), a difference of only ε·R.) At Θ = 0, sign(Θ) = 0, so J = 1.

The chain rule then gives the gradient of L_rob, whose Θ enters twice (f(Θ, X) and Θ* = A(Θ)):

    ∇_Θ L_rob = ∇_Θ L_rob(f(Θ), f(Θ*))|_direct  +  J ⊙ ∇_{Θ*} L_rob(f(Θ), f(Θ*))
"""
import numpy as np

from ..autodiff import Tensor
from .attack import gradient_of
from .losses import kl_boundary_loss


def jacobian_diagonal_paper(result):
    """The paper's J = 1 + sign(Θ)·(ε·R + (ζ/N_steps)·Σ_t sign(g_t)), name -> array (exact where never clipped)."""
    return {name: 1 + np.sign(theta) * (result.epsilon * result.noise[name]
                                        + result.zeta / result.num_steps * result.sign_sum[name])
            for name, theta in result.theta.items()}


def jacobian_diagonal(result):
    """dΘ*/dΘ, name -> array, exact also where the projection clipped (see the module docstring)."""
    jacobian = {}
    for name, theta in result.theta.items():
        edge = result.clip_edge[name]
        # (Θ* − Θ)/|Θ| where the entry last (re)started: ε·R at Θ*_0, or ±ζ on a box edge after a clip
        start = np.where(edge == 0, result.epsilon * result.noise[name], edge * result.zeta)
        steps = result.zeta / result.num_steps * result.signs_since_clip[name]
        jacobian[name] = (1 + np.sign(theta) * (start + steps)).astype(theta.dtype)
    return jacobian


def robustness_loss_and_gradient(model, x, result):
    """L_rob = KL(f(Θ, X) ‖ f(Θ*, X)) and ∇_Θ L_rob = ∇_Θ L_rob|_direct + J ⊙ ∇_{Θ*} L_rob, for every parameter.

    result : the AttackResult of pga_attack(model, x, kl_objective(model, x), …) run at the model's Θ.
    One graph holds both forward passes, so a single backward gives both partial derivatives: the direct one
    through f(Θ, X) (Θ* held fixed) and ∇_{Θ*} (f(Θ, X) held fixed). Parameters the attack left alone
    (pga_attack's `names`) have Θ* = Θ, so their J is 1.
    """
    theta = {name: p.data for name, p in model.named_parameters()}
    theta.update(result.theta)
    theta_star = {**theta, **result.theta_star}
    theta_tensors = {name: Tensor(value, requires_grad=True) for name, value in theta.items()}
    theta_star_tensors = {name: Tensor(value, requires_grad=True) for name, value in theta_star.items()}
    loss = kl_boundary_loss(model(Tensor(x), theta_tensors), model(Tensor(x), theta_star_tensors))
    loss.backward()
    return loss.item(), gradient_through_the_attack(theta_tensors, theta_star_tensors, result)


def gradient_through_the_attack(theta_tensors, theta_star_tensors, result):
    """∇_Θ = ∂/∂Θ (direct) + J ⊙ ∂/∂Θ*, after one backward through a graph that used both Θ and Θ* = A(Θ).
    theta_tensors, theta_star_tensors: name -> Tensor, every parameter; J = 1 where the attack left it alone."""
    jacobian = jacobian_diagonal(result)
    return {name: gradient_of(theta_tensors[name]) + jacobian.get(name, 1.0) * gradient_of(theta_star_tensors[name])
            for name in theta_tensors}
