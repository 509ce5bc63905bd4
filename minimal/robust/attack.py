"""Algorithm 1: the adversary A(Θ) = Θ*, projected gradient ascent (PGA) in weight space.

    Θ*_0 = Θ + |Θ| ⊙ ε·R,                    R ~ N(0, 1), ε = 0.001     (a tiny random start)
    for t = 1 … N_steps:
        g_t  = ∇_{Θ*} objective(Θ*_{t−1})
        Θ*_t = clip(Θ*_{t−1} + α ⊙ sign(g_t),  Θ − ζ|Θ|,  Θ + ζ|Θ|)   α = ζ|Θ| / N_steps

sign(g_t) is the steepest-ascent direction in l∞, and the clip is the projection onto the box
|Θ* − Θ| ≤ ζ|Θ| (the paper's ζ-ellipsoid in l∞): each parameter may move by at most ζ times its own magnitude,
as mismatch does (Eq. 1). An entry with Θ = 0 has an empty box: it stays exactly 0. The random start matters
for the KL objective: at Θ* = Θ the KL is at its minimum, its gradient is 0, and sign(g_1) would be noise.

Two objectives, both functions of the logits at Θ*:
  kl_objective(model, x)         KL(f(Θ, X) ‖ f(Θ*, X)), the boundary loss (Eq. 2), attacked during training;
                                 f(Θ, X) is computed once and is a constant during the attack
  cross_entropy_objective(y)     the task loss, attacked at inference (Fig. 3)

The attack works for any Module whose forward is `forward(x, params)`: it evaluates the model at Θ* by passing
the arrays in, never changing the model. Besides Θ* it returns what the Jacobian dΘ*/dΘ needs (jacobian.py): the
random start R and the signs of every step.
`random_box_attack` is the random perturbation of equal size the paper compares against; `attacked_accuracy`
measures a network under either (Fig. 3, S3, S5c).
"""
from dataclasses import dataclass

import numpy as np

from ..autodiff import Tensor, no_grad
from ..data.common import iterate_minibatches
from ..metrics import accuracy, predict_logits
from .losses import cross_entropy_loss, kl_boundary_loss
from .mismatch import parameter_arrays


# ---------------------------------------------------------------------------------------------------- helpers
def loss_and_gradients(model, x, loss_of_logits, params):
    """L = loss_of_logits(f(params, X)) and dL/dparams, for params: name -> array (a subset is fine).

    Every parameter enters as a fresh tensor: those in `params` track gradients, the others are the model's own
    values as constants. So the model (its Parameters and their .grad) is left untouched.
    """
    tensors = tracked_parameters(model, params)
    loss = loss_of_logits(model(Tensor(x), tensors))
    loss.backward()
    return loss.item(), {name: gradient_of(tensors[name]) for name in params}


def tracked_parameters(model, params):
    """name -> Tensor for every parameter of the model: `params` (name -> array) as fresh leaves that track
    gradients, the others as constants holding the model's own values."""
    tensors = {name: Tensor(p.data) for name, p in model.named_parameters()}
    tensors.update({name: Tensor(value, requires_grad=True) for name, value in params.items()})
    return tensors


def gradient_of(tensor):
    """tensor.grad, or zeros when the loss did not depend on the tensor."""
    return np.zeros_like(tensor.data) if tensor.grad is None else tensor.grad


def kl_objective(model, x):
    """Θ* ↦ KL(f(Θ, X) ‖ f(Θ*, X)): the training attack's objective, with f(Θ, X) a constant target."""
    with no_grad():
        logits_theta = model(Tensor(x))
    return kl_objective_towards(logits_theta)


def kl_objective_towards(logits_theta):
    """The same objective for f(Θ, X) already computed (its values only: the attack does not move Θ)."""
    target = Tensor(getattr(logits_theta, "data", logits_theta))
    return lambda logits_theta_star: kl_boundary_loss(target, logits_theta_star)


def cross_entropy_objective(labels):
    """Θ* ↦ cross-entropy(f(Θ*, X), y): the inference attack's objective (it attacks the task directly)."""
    return lambda logits_theta_star: cross_entropy_loss(logits_theta_star, labels)


# ---------------------------------------------------------------------------------------------------- the attack
@dataclass
class AttackResult:
    """Θ* = A(Θ) and what dΘ*/dΘ needs (jacobian.py). Every dict maps a parameter name to an array of its shape."""
    theta: dict             # Θ, the attacked parameters
    theta_star: dict        # Θ* after N_steps steps
    noise: dict             # R ~ N(0, 1) of the random start Θ*_0 = Θ + |Θ|·ε·R
    step_signs: list        # sign(g_t) of every step t = 1 … N_steps, one dict each
    epsilon: float          # ε
    zeta: float             # ζ
    attack_steps: int       # N_steps
    losses: list            # the objective at Θ*_0 … Θ*_{N_steps − 1} (computed anyway for the gradients)
    box: str = "relative"   # the box's radius: ζ|Θ| ("relative") or ζ ("constant")

    @property
    def sign_sum(self):
        """Σ_t sign(g_t) over all steps, name -> array (the paper's Jacobian uses it)."""
        return {name: sum(signs[name] for signs in self.step_signs) for name in self.theta}


BOXES = ("relative", "constant")


def box_radius(theta, zeta, box="relative"):
    """How far each entry of Θ may move: ζ|Θ| (relative, the paper's adversary: as mismatch, in proportion to the
    entry's own magnitude) or ζ (constant, the same for every entry: Fig. S4's contrast, which a network defeats by
    growing its weights)."""
    return zeta * np.abs(theta) if box == "relative" else np.full_like(theta, zeta)


def attack_box(theta, zeta, attack_steps, box="relative"):
    """The box of one parameter array and the step inside it: (Θ − r, Θ + r, α = r / N_steps), r = box_radius."""
    radius = box_radius(theta, zeta, box)
    return theta - radius, theta + radius, radius / attack_steps


def random_start(theta, noise, epsilon, box="relative"):
    """Θ*_0 = Θ + |Θ|·ε·R (relative box) or Θ + ε·R (constant box) for one parameter array."""
    return theta + (np.abs(theta) if box == "relative" else 1) * epsilon * noise


def pga_attack(model, x, objective, rng, zeta=0.1, attack_steps=10, epsilon=0.001, names=None, on_step=None,
               box="relative"):
    """Run Algorithm 1's inner loop from Θ = the model's parameters; return an AttackResult.

    objective : logits -> scalar Tensor, e.g. kl_objective(model, x) or cross_entropy_objective(y)
    rng       : np.random.Generator for R (the same seed gives the same attack)
    names     : which parameters to attack (default: all weights and biases, as in the paper)
    on_step   : optional callback(t, theta_star, signs) after each step t = 1 … N_steps, with Θ*_t and sign(g_t)
                (name -> array each), e.g. to record the iterates
    box       : "relative", the box |Θ* − Θ| ≤ ζ|Θ| of the paper, or "constant", |Θ* − Θ| ≤ ζ (Fig. S4)
    """
    if box not in BOXES:
        raise ValueError(f"unknown attack box {box!r}; choose from {', '.join(BOXES)}")
    if attack_steps < 1:
        raise ValueError(f"the attack needs at least one step, got attack_steps={attack_steps}")
    theta = parameter_arrays(model, names)
    noise = {name: rng.standard_normal(value.shape).astype(value.dtype) for name, value in theta.items()}
    boxes = {name: attack_box(value, zeta, attack_steps, box) for name, value in theta.items()}  # (lower, upper, α)
    theta_star = {name: random_start(value, noise[name], epsilon, box) for name, value in theta.items()}   # Θ*_0
    step_signs, losses = [], []
    for t in range(1, attack_steps + 1):
        loss, gradients = loss_and_gradients(model, x, objective, theta_star)   # g_t at Θ*_{t−1}
        signs = {name: np.sign(gradient) for name, gradient in gradients.items()}  # sign(g_t)
        for name, (lower, upper, step_size) in boxes.items():
            theta_star[name] = np.clip(theta_star[name] + step_size * signs[name], lower, upper)  # onto the ζ-box
        losses.append(loss)
        step_signs.append(signs)
        if on_step is not None:
            on_step(t, dict(theta_star), signs)
    return AttackResult(theta, theta_star, noise, step_signs, epsilon, zeta, attack_steps, losses, box)


def pga_on_inputs(model, x, y, epsilon, steps=10):
    """Adversarial inputs (Madry et al.; AWP's input attack, Wu et al. 2020): X* in the l∞ ball ‖X* − X‖∞ ≤ ε that
    raises the cross-entropy, by `steps` signed-gradient steps X* ← clip(X* + α·sign(∇_X L), X − ε, X + ε),
    α = ε/4 (Wu et al.'s ratio of step to ball), from X* = X. The model's parameters are not changed."""
    step_size = epsilon / 4
    x_star = np.array(x, copy=True)
    for _ in range(steps):
        inputs = Tensor(x_star, requires_grad=True)
        cross_entropy_loss(model(inputs), y).backward()
        moved = x_star + step_size * np.sign(gradient_of(inputs))
        x_star = np.clip(moved, x - epsilon, x + epsilon).astype(x.dtype)
    return x_star


def random_box_attack(model, zeta, rng, names=None):
    """A random perturbation as large as the attack's: every entry moves to Θ + ζ|Θ| or Θ − ζ|Θ| (a fair coin).

    The paper compares its attack with "a random point on the ζ-ellipsoid". In l∞ that set is the box
    |Θ* − Θ| ≤ ζ|Θ|; we take a random corner of it, so every entry moves by the full ζ|Θ|, the largest move the
    PGA attack can make. Returns name -> array, to pass as `model(x, params=…)`. Θ = 0 stays 0.
    """
    theta = parameter_arrays(model, names)
    return {name: value + zeta * np.abs(value) * rng.choice([-1, 1], size=value.shape).astype(value.dtype)
            for name, value in theta.items()}


# ---------------------------------------------------------------------------------------------------- measuring
ATTACKS = {                                                 # --attacks name -> name in tables and legends
    "pga-ce": "PGA on cross-entropy",
    "pga-kl": "PGA on KL",
    "random": "random box corner",
}


def attacked_parameters(model, x, y, attack, zeta, rng, attack_steps=10, epsilon=0.001):
    """Θ* for one minibatch (x, y): PGA (Algorithm 1) on its cross-entropy ("pga-ce", Fig. 3) or on the KL
    between the clean and the attacked outputs ("pga-kl", Fig. S3), or a random corner of the ζ-box ("random")."""
    if attack == "random":
        return random_box_attack(model, zeta, rng)
    objective = cross_entropy_objective(y) if attack == "pga-ce" else kl_objective(model, x)
    return pga_attack(model, x, objective, rng, zeta, attack_steps, epsilon).theta_star


def attacked_accuracy(model, split, attack, zeta, rng, batch_size=1000, attack_steps=10, epsilon=0.001):
    """Accuracy on the split after the attack, which is computed per minibatch.

    The split is cut into random minibatches of `batch_size` samples; each minibatch gets its own Θ*, and its
    samples are classified at that Θ*. So Θ* is tailored to the samples it is scored on: a smaller minibatch
    makes a stronger attack, and so would a minibatch of one class (the ECG test split is sorted by class, hence
    the shuffle). batch_size ≥ len(split) gives one Θ* for the whole split, as the authors' worst-case experiment
    (`get_whole_attacked_test_acc`) attacks the whole test set at once. ζ = 0 leaves nothing to attack (the box
    is the point Θ): the clean accuracy.
    """
    if zeta == 0:
        return accuracy(model, split, batch_size)
    correct = 0
    for x, y in iterate_minibatches(split, batch_size, rng):
        theta_star = attacked_parameters(model, x, y, attack, zeta, rng, attack_steps, epsilon)
        correct += int(np.sum(predict_logits(model, x, batch_size, theta_star).argmax(axis=1) == y))
    return correct / len(split)
