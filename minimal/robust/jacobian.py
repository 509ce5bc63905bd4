"""The diagonal Jacobian J = dΘ*/dΘ of the attack (Supplementary "Derivation of Jacobian"), and with it the
gradient of the robustness loss L_rob(Θ) = KL(f(Θ, X) ‖ f(A(Θ), X)) with respect to Θ.

Unrolling Algorithm 1 (attack.py) for one entry, when the projection never clips it:

    Θ* = Θ + |Θ|·ε·R + α·Σ_t sign(g_t),        α = ζ|Θ| / N_steps

The signs are piecewise constant in Θ (their derivative is 0 almost everywhere) and d|Θ|/dΘ = sign(Θ), so

    J = 1 + sign(Θ) ⊙ (ε·R + (ζ / N_steps)·Σ_t sign(g_t))                       (the paper's formula)

Where the projection clipped an entry at step c, it sat exactly on the box edge Θ ± ζ|Θ| and the steps before c
no longer matter: Θ* = Θ ± ζ|Θ| + α·Σ_{t>c} sign(g_t), hence

    J = 1 + sign(Θ) ⊙ (±ζ + (ζ / N_steps)·Σ_{t>c} sign(g_t))                    (exact, clipped entries)

which is 1 ± ζ·sign(Θ) for an entry that ended on the edge. `jacobian_diagonal` uses the exact form (it replays
the recorded steps to find the clips, `last_clips`), the paper's is `jacobian_diagonal_paper`; they agree on every
entry that was never clipped. (With the default ε = 0.001,
ζ = 0.1, N_steps = 10 a clip practically only happens on the last step, when all N_steps signs agree: an earlier
one needs |R| > ζ/(ε·N_steps) = 10. The paper's formula then gives 1 + sign(Θ)(ε·R ± ζ) instead of
1 ± ζ·sign(Θ), a difference of only ε·R.) At Θ = 0, sign(Θ) = 0, so J = 1.

The chain rule then gives the gradient of L_rob, whose Θ enters twice (f(Θ, X) and Θ* = A(Θ)):

    ∇_Θ L_rob = ∇_Θ L_rob(f(Θ), f(Θ*))|_direct  +  J ⊙ ∇_{Θ*} L_rob(f(Θ), f(Θ*))

`gradient_through_the_attack` is that line: after one backward through a graph holding f(Θ, X) and f(Θ*, X), it
adds the two partial derivatives (methods.robustness_loss builds that graph for training).
"""
import numpy as np

from .attack import attack_box, gradient_of, random_start


def jacobian_diagonal_paper(result):
    """The paper's J = 1 + sign(Θ)·(ε·R + (ζ/N_steps)·Σ_t sign(g_t)), name -> array (exact where never clipped)."""
    if result.box == "constant":
        return constant_box_jacobian(result)
    sign_sum = result.sign_sum
    return {name: 1 + np.sign(theta) * (result.epsilon * result.noise[name]
                                        + result.zeta / result.attack_steps * sign_sum[name])
            for name, theta in result.theta.items()}


def jacobian_diagonal(result):
    """dΘ*/dΘ, name -> array, exact also where the projection clipped (see the module docstring)."""
    if result.box == "constant":
        return constant_box_jacobian(result)
    jacobian = {}
    for name, theta in result.theta.items():
        edge, signs_since_clip = last_clips(result, name)
        # (Θ* − Θ)/|Θ| where the entry last (re)started: ε·R at Θ*_0, or ±ζ on a box edge after a clip
        start = np.where(edge == 0, result.epsilon * result.noise[name], edge * result.zeta)
        steps = result.zeta / result.attack_steps * signs_since_clip
        jacobian[name] = (1 + np.sign(theta) * (start + steps)).astype(theta.dtype)
    return jacobian


def constant_box_jacobian(result):
    """J = 1 for the constant box |Θ* − Θ| ≤ ζ (Fig. S4): there Θ* = Θ + ε·R + (ζ/N_steps)·Σ sign(g_t), and the
    box edges Θ ± ζ move with Θ, so Θ* − Θ does not depend on Θ at all."""
    return {name: np.ones_like(theta) for name, theta in result.theta.items()}


def last_clips(result, name):
    """Replay the attack's steps on parameter `name` (the same arithmetic as pga_attack, so the same iterates) and
    find, per entry, where the projection clipped it last: the box edge (+1 upper, −1 lower, 0 never clipped)
    and Σ sign(g_t) over the steps after that clip (all steps where it was never clipped)."""
    theta = result.theta[name]
    lower, upper, step_size = attack_box(theta, result.zeta, result.attack_steps)
    theta_star = random_start(theta, result.noise[name], result.epsilon)
    edge = np.zeros(theta.shape, dtype=np.int8)
    signs_since_clip = np.zeros_like(theta)
    for step in result.step_signs:
        moved = theta_star + step_size * step[name]
        clipped_up, clipped_down = moved > upper, moved < lower
        edge = np.where(clipped_up, 1, np.where(clipped_down, -1, edge)).astype(np.int8)
        signs_since_clip = np.where(clipped_up | clipped_down, 0, signs_since_clip + step[name])
        theta_star = np.clip(moved, lower, upper)
    return edge, signs_since_clip


def gradient_through_the_attack(theta_tensors, theta_star_tensors, result):
    """∇_Θ = ∂/∂Θ (direct) + J ⊙ ∂/∂Θ*, after one backward through a graph that used both Θ and Θ* = A(Θ).
    theta_tensors, theta_star_tensors: name -> Tensor, every parameter; J = 1 where the attack left it alone."""
    jacobian = jacobian_diagonal(result)
    return {name: gradient_of(theta_tensors[name]) + jacobian.get(name, 1.0) * gradient_of(theta_star_tensors[name])
            for name in theta_tensors}
