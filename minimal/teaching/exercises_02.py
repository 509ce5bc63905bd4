"""Graders of notebook 02 (the adversary): 2.1 the KL boundary loss (Eq. 2), 2.2 one step of Algorithm 1's loop,
2.3 the paper's diagonal Jacobian of Θ* with respect to Θ."""
import numpy as np

from ..autodiff import Tensor
from ..robust.attack import AttackResult, attack_box
from ..robust.jacobian import jacobian_diagonal_paper
from ..robust.losses import kl_boundary_loss
from .grading import compare_arrays, grader


# ---------------------------------------------------------------------------------------------------- 2.1
@grader("2.1")
def check_kl_boundary(kl_boundary):
    """kl_boundary(logits_theta, logits_theta_star) -> KL(softmax f(Θ) ‖ softmax f(Θ*)), the batch mean, q
    clamped at ≥ 1e-6, against minimal.robust.losses.kl_boundary_loss."""
    rng = np.random.default_rng(0)
    for what, scale in [("ordinary logits", 1.0), ("confident logits (probabilities below 1e-6)", 12.0)]:
        p_logits, q_logits = scale * rng.standard_normal((8, 10)), scale * rng.standard_normal((8, 10))
        expected = kl_boundary_loss(Tensor(p_logits), Tensor(q_logits)).item()
        slips = [("the arguments are swapped: Eq. 2 is KL(f(Θ) ‖ f(Θ*)), with f(Θ) as the weights p",
                  kl_boundary_loss(Tensor(q_logits), Tensor(p_logits)).item()),
                 ("summed over the batch instead of averaged", len(p_logits) * expected)]
        compare_arrays("2.1", f"the KL of 8 samples with {what}", kl_boundary(p_logits, q_logits), expected,
                       slips, rtol=1e-6)
    return "equal to minimal.robust.losses.kl_boundary_loss, confident outputs included"


# ---------------------------------------------------------------------------------------------------- 2.2
@grader("2.2")
def check_attack_step(attack_step):
    """attack_step(theta_star, theta, gradient, zeta, attack_steps) -> Θ*_t for one array: the signed step
    α = ζ|Θ|/N_steps projected onto the box [Θ − ζ|Θ|, Θ + ζ|Θ|], as minimal.robust.attack.pga_attack."""
    rng = np.random.default_rng(1)
    theta = np.where(rng.random(200) < 0.1, 0.0, rng.standard_normal(200) * 10.0 ** rng.uniform(-2, 1, 200))
    zeta, attack_steps = 0.1, 10
    lower, upper, step_size = attack_box(theta, zeta, attack_steps)
    theta_star = theta + zeta * np.abs(theta) * rng.choice([-1.0, -0.95, 0.3, 0.95, 1.0], theta.shape)
    gradient = np.where(rng.random(200) < 0.05, 0.0, rng.standard_normal(200))
    expected = np.clip(theta_star + step_size * np.sign(gradient), lower, upper)
    slips = [("no projection: clip Θ* to [Θ − ζ|Θ|, Θ + ζ|Θ|] after the step",
              theta_star + step_size * np.sign(gradient)),
             ("the step uses the gradient itself; in l∞ the steepest ascent is its sign",
              np.clip(theta_star + step_size * gradient, lower, upper)),
             ("the step is ζ/N_steps for every entry; it is relative, α = ζ|Θ|/N_steps",
              np.clip(theta_star + zeta / attack_steps * np.sign(gradient), lower, upper)),
             ("the step is ζ|Θ|, the whole box; α = ζ|Θ|/N_steps",
              np.clip(theta_star + zeta * np.abs(theta) * np.sign(gradient), lower, upper)),
             ("the box is Θ ± ζ; the paper's box is relative, Θ ± ζ|Θ|",
              np.clip(theta_star + step_size * np.sign(gradient), theta - zeta, theta + zeta))]
    got = attack_step(theta_star.copy(), theta.copy(), gradient.copy(), zeta, attack_steps)
    compare_arrays("2.2", "Θ*_t", got, expected, slips)
    return "signed relative step, projected onto the ζ-box, on 200 entries (zeros and box edges included)"


# ---------------------------------------------------------------------------------------------------- 2.3
@grader("2.3")
def check_jacobian(jacobian_paper):
    """jacobian_paper(theta, noise, sign_sum, epsilon, zeta, attack_steps) -> the diagonal of J for one array,
    against minimal.robust.jacobian.jacobian_diagonal_paper on an attack result with the same numbers."""
    rng = np.random.default_rng(2)
    theta = np.where(rng.random(300) < 0.1, 0.0, rng.standard_normal(300))
    noise = rng.standard_normal(300)
    step_signs = [{"w": rng.choice([-1.0, 0.0, 1.0], 300, p=[0.4, 0.1, 0.5])} for _ in range(10)]
    epsilon, zeta, attack_steps = 0.001, 0.1, 10
    result = AttackResult({"w": theta}, {"w": theta}, {"w": noise}, step_signs, epsilon, zeta, attack_steps, [])
    sign_sum = result.sign_sum["w"]
    expected = jacobian_diagonal_paper(result)["w"]
    slips = [("sign(Θ) is missing: d|Θ|/dΘ = sign(Θ), so negative entries move the other way",
              1 + epsilon * noise + zeta / attack_steps * sign_sum),
             ("the random start's ε·R is missing", 1 + np.sign(theta) * zeta / attack_steps * sign_sum),
             ("the sum of the signs is not scaled by ζ/N_steps (α = ζ|Θ|/N_steps)",
              1 + np.sign(theta) * (epsilon * noise + sign_sum)),
             ("the identity is missing: Θ* = Θ + ΔΘ, so J = 1 + dΔΘ/dΘ",
              np.sign(theta) * (epsilon * noise + zeta / attack_steps * sign_sum)),
             ("|Θ| multiplies the bracket, as in Θ* − Θ itself; its derivative d|Θ|/dΘ is sign(Θ)",
              1 + np.abs(theta) * (epsilon * noise + zeta / attack_steps * sign_sum))]
    got = jacobian_paper(theta.copy(), noise.copy(), sign_sum.copy(), epsilon, zeta, attack_steps)
    compare_arrays("2.3", "J", got, expected, slips)
    return "equal to minimal.robust.jacobian.jacobian_diagonal_paper (negative and zero Θ included)"
