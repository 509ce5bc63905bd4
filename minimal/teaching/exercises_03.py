"""Graders of notebook 03 (training with β_rob): 3.1 the gradient of L_rob through the attack, 3.2 one training step
of the paper's method, 3.3 the accuracy under the weight attack (Fig. S5, S8)."""
import numpy as np

from ..autodiff import Tensor
from ..data.common import Split
from ..metrics import accuracy, predict_logits
from ..robust.attack import (cross_entropy_objective, gradient_of, kl_objective, pga_attack, random_box_attack,
                             tracked_parameters)
from ..robust.losses import cross_entropy_loss
from ..robust.methods import METHODS, hyperparameters, robustness_loss
from ..robust.mismatch import parameter_arrays
from .grading import compare_arrays, compare_dicts, fail, grader
from .models import course_cnn, load_course_model


# ---------------------------------------------------------------------------------------------------- 3.1
@grader("3.1")
def check_gradient_through_attack(gradient_of_robust_loss):
    """gradient_of_robust_loss(direct, jacobian, at_theta_star) -> direct + J ⊙ at_theta_star, per name."""
    rng = np.random.default_rng(0)
    shapes = {"w": (4, 3), "b": (3,)}
    direct, at_theta_star = ({name: rng.standard_normal(shape) for name, shape in shapes.items()} for _ in "ab")
    jacobian = {name: 1 + 0.1 * rng.choice([-1.0, 1.0], shape) for name, shape in shapes.items()}
    expected = {name: direct[name] + jacobian[name] * at_theta_star[name] for name in shapes}
    slips = [("J is forgotten: the gradient at Θ* reaches Θ through J = dΘ*/dΘ",
              {name: direct[name] + at_theta_star[name] for name in shapes}),
             ("J multiplies the direct part too; only the path through Θ* = A(Θ) passes through J",
              {name: jacobian[name] * (direct[name] + at_theta_star[name]) for name in shapes}),
             ("the direct part is missing: Θ is also the first argument of the KL, f(Θ, X)",
              {name: jacobian[name] * at_theta_star[name] for name in shapes})]
    got = gradient_of_robust_loss(copies(direct), copies(jacobian), copies(at_theta_star))
    compare_dicts("3.1", "∇_Θ L_rob", got, expected, slips)
    return "∇_Θ L_rob = ∂L_rob/∂Θ (direct) + J ⊙ ∂L_rob/∂Θ*"


def copies(arrays):
    return {name: value.copy() for name, value in arrays.items()}


# ---------------------------------------------------------------------------------------------------- 3.2
@grader("3.2")
def check_beta_step(beta_step):
    """beta_step(model, x, y, rng, beta_rob) fills every p.grad with ∇_Θ(L_nat + β_rob·L_rob) and returns that
    loss, against minimal.robust.methods.beta with the same rng seed."""
    beta_rob = 0.5
    rng = np.random.default_rng(5)
    x, y = rng.random((16, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, 16)
    model = course_cnn(seed=5)
    before = model.state_dict()
    loss = beta_step(model, x, y, np.random.default_rng(7), beta_rob)
    if any(not np.array_equal(before[name], p.data) for name, p in model.named_parameters()):
        fail("3.2", "the parameters changed: the step only fills p.grad; the optimiser moves Θ afterwards")
    missing = [name for name, p in model.named_parameters() if p.grad is None]
    if missing:
        fail("3.2", f"no gradient in {', '.join(missing)}: set every p.grad (methods.set_gradients)")
    got = {name: p.grad for name, p in model.named_parameters()}
    reference = course_cnn(seed=5)
    expected_loss = METHODS["beta"](reference, x, y, np.random.default_rng(7), {"task": "fmnist", "beta_rob": beta_rob})
    expected = {name: p.grad for name, p in reference.named_parameters()}
    compare_dicts("3.2", "the gradient", got, expected, beta_step_slips(x, y, beta_rob))
    compare_arrays("3.2", "the returned loss L_nat + β_rob·L_rob", loss, expected_loss, rtol=1e-5)
    return "the same gradients and loss as minimal.robust.methods.beta"


def beta_step_slips(x, y, beta_rob):
    """The gradients of the usual wrong steps: β_rob·L_rob left out, the path through Θ* left out, J left out."""
    standard = course_cnn(seed=5)
    METHODS["standard"](standard, x, y, np.random.default_rng(7), {})
    model = course_cnn(seed=5)
    theta = tracked_parameters(model, parameter_arrays(model))
    logits = model(Tensor(x), theta)
    robust_loss, theta_star, _ = robustness_loss(model, x, logits, np.random.default_rng(7),
                                                      hyperparameters("beta", {"task": "fmnist"}))
    (cross_entropy_loss(logits, y) + beta_rob * robust_loss).backward()
    direct = {name: gradient_of(tensor) for name, tensor in theta.items()}
    at_theta_star = {name: gradient_of(tensor) for name, tensor in theta_star.items()}
    return [("the gradient is that of L_nat alone: add β_rob·L_rob before the backward",
             {name: p.grad for name, p in standard.named_parameters()}),
            ("only the direct part reaches Θ: add J ⊙ (the gradient of the Θ* tensors), "
             "jacobian.gradient_through_the_attack", direct),
            ("the gradient at Θ* is added without J = dΘ*/dΘ",
             {name: direct[name] + at_theta_star[name] for name in direct})]


# ---------------------------------------------------------------------------------------------------- 3.3
@grader("3.3")
def check_accuracy_under_attack(accuracy_under_attack):
    """accuracy_under_attack(model, split, zeta, seed) -> accuracy at Θ* = PGA on the cross-entropy of the whole
    split (one Θ* for all of it, rng = default_rng(seed)), on 200 noise images labelled by the clean network."""
    model, _ = load_course_model("standard")
    x = np.random.default_rng(8).random((200, 1, 28, 28)).astype(np.float32)
    split = Split(x, predict_logits(model, x).argmax(axis=1))   # clean accuracy 100 %: only the attack lowers it
    zeta, seed = 0.05, 9

    def at(params):
        return accuracy(model, split, params=params)
    expected = at(pga_attack(model, x, cross_entropy_objective(split.y), np.random.default_rng(seed), zeta).theta_star)
    slips = [("the attack maximised the KL; at inference it attacks the task loss, the cross-entropy with the labels",
              at(pga_attack(model, x, kl_objective(model, x), np.random.default_rng(seed), zeta).theta_star)),
             ("this is a random corner of the box, not the PGA attack",
              at(random_box_attack(model, zeta, np.random.default_rng(seed)))),
             ("this is the clean accuracy: score the model at params=Θ*", 1.0)]
    got = accuracy_under_attack(model, split, zeta, seed)
    compare_arrays("3.3", f"the accuracy under the attack (ζ = {zeta}) on 200 images the clean network gets right",
                   got, expected, slips, rtol=0, atol=1e-12)
    return f"{100 * expected:.1f} % after the attack (100 % clean), as pga_attack on the cross-entropy gives"
