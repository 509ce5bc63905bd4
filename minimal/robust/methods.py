"""Training methods: one function per method that fills `p.grad` for every parameter and returns the loss.

Signature of every method: method(model, x, y, rng, config) -> float (the minibatch loss whose gradient was
filled in). The training loop then calls the optimiser. `rng` (np.random.Generator) is the only source of
randomness; `config` holds the run's settings, and each method reads its hyperparameters from it through
`hyperparameters(method, config)`: the value in config if given, else the task's default (TASK_DEFAULTS, from the
paper), else METHOD_DEFAULTS.

    standard             L_nat = cross-entropy(f(Θ, X), y)
    forward_noise        L_nat at Θ + η|Θ|·N(0, 1), the noise a constant offset (Murray & Edwards 1994); with
                         train_noise=layer_max: Θ + η·max|Θ|·N(0, 1) per tensor (Joshi et al. 2020, PCM section)
    beta                 the paper: L_nat(Θ) + β_rob · KL(f(Θ, X) ‖ f(A(Θ), X)), A = Algorithm 1's attack
    forward_noise_beta   both: L_nat with forward noise, plus β_rob · L_rob at the clean Θ
    dropout              L_nat with dropout (p = 0.3): CNN on the hidden dense layers, LSNN on the hidden neurons
    awp                  adversarial weight perturbation (Wu et al. 2020): gradient of L_nat at the PGA point
    amp                  adversarial model perturbation (Zheng et al. 2020): same, l2-ball adversary
    abcd                 adversarial block coordinate descent (Cicek & Soatto 2019)
    entropy_sgd          Entropy-SGD (Chaudhari et al. 2019): Langevin inner loop, outer gradient Θ − μ
    sam                  sharpness-aware minimisation (Foret et al. 2021), a modern peer of AWP/AMP

warmup_epochs (AWP, ABCD): the training loop takes the standard step for that many first epochs (default 0, as
the authors' `warmup`; Wu et al. warm AWP up). With the authors' sizes both train from fresh weights (F-MNIST CNN,
50 steps: AWP 72.8 %, ABCD 74.0 % validation accuracy); with adversaries ten or a hundred times stronger (AWP's box
γ|Θ|, ABCD's η_A 0.1) they did not (AWP stayed at chance, ABCD went to NaN), and a warm-up is the usual remedy.
"""
import numpy as np

from ..autodiff import Tensor
from .attack import (BOXES, cross_entropy_objective, gradient_of, kl_objective_towards, pga_attack, pga_on_inputs,
                     tracked_parameters)
from .jacobian import gradient_through_the_attack
from .losses import cross_entropy_loss, kl_boundary_loss
from .mismatch import NOISE_MODELS, parameter_arrays

# ---------------------------------------------------------------------------------------------------- settings
ATTACK_DEFAULTS = {"zeta_attack": 0.1, "attack_steps": 10, "attack_epsilon": 0.001}  # ζ_attack, N_steps, ε
# the adversary's box: ζ|Θ| (relative, the paper's) or ζ (constant: Fig. S4, which weight growth defeats)
ROBUST_DEFAULTS = {**ATTACK_DEFAULTS, "attack_box": "relative"}

METHOD_DEFAULTS = {
    "standard": {},
    "forward_noise": {"eta_train": 0.3, "train_noise": "relative"},
    "beta": {"beta_rob": 0.25, **ROBUST_DEFAULTS},
    "forward_noise_beta": {"eta_train": 0.3, "train_noise": "relative", "beta_rob": 0.1, **ROBUST_DEFAULTS},
    "dropout": {"dropout": 0.3},
    "awp": {"awp_gamma": 0.1, **ATTACK_DEFAULTS, "awp_input_epsilon": 0.0, "warmup_epochs": 0},
    "amp": {"amp_epsilon": 0.005, "amp_inner_lr": 1.0, "amp_steps": 1},
    # η_A 0.001: the authors' Table 1 runs (their methods experiment) override their default 0.1 with 0.001
    "abcd": {"abcd_rounds": 2, "abcd_eta_ascent": 0.001, "zeta_attack": 0.1, "warmup_epochs": 0},
    "entropy_sgd": {"langevin_steps": 10, "langevin_lr": 0.1, "esgd_gamma": 0.01, "esgd_gamma_growth": 0.001,
                    "langevin_noise": 1e-4, "langevin_average": 0.75, "langevin_momentum": 0.9, "nesterov": True},
    "sam": {"sam_rho": 0.05},
}

# Where the paper's value depends on the task (DESIGN §4); the F-MNIST CNN uses METHOD_DEFAULTS.
TASK_DEFAULTS = {
    "speech": {"beta": {"beta_rob": 0.5}, "forward_noise_beta": {"beta_rob": 0.5}, "amp": {"amp_epsilon": 0.01},
               "awp": {"awp_input_epsilon": 0.01}},
    "ecg": {"amp": {"amp_epsilon": 0.02}},
}


# the hyperparameters given as words, and the words allowed
TEXT_CHOICES = {"train_noise": tuple(NOISE_MODELS), "attack_box": BOXES}


def hyperparameters(method, config):
    """name -> value for this method: config's value if set (not None), else the task's default, else ours."""
    task_defaults = TASK_DEFAULTS.get(config.get("task"), {}).get(method, {})
    settings = {}
    for name, default in METHOD_DEFAULTS[method].items():
        value = config.get(name)
        settings[name] = value if value is not None else task_defaults.get(name, default)
    return settings


# ---------------------------------------------------------------------------------------------------- helpers
def set_gradients(model, gradients):
    """p.grad = gradients[name] for every parameter (what the training loop's optimiser reads next)."""
    for name, p in model.named_parameters():
        p.grad = np.asarray(gradients[name], dtype=p.dtype)


def natural_loss_and_gradients(model, x, y, params):
    """L_nat = cross-entropy(f(params, X), y) + the model's activity penalty (the LSNN's firing-rate
    regulariser; 0 for the CNN), and its gradient with respect to params (name -> array)."""
    tensors = tracked_parameters(model, params)
    logits, penalty = model.logits_and_penalty(Tensor(x), tensors)
    loss = cross_entropy_loss(logits, y) + penalty
    loss.backward()
    return loss.item(), {name: gradient_of(tensors[name]) for name in params}


def with_forward_noise(theta, eta, rng, noise="relative"):
    """Θ + η|Θ|·N(0, 1) per entry, drawn as Θ·(1 + η·N(0, 1)) (the same distribution: N is symmetric); or
    another of mismatch.NOISE_MODELS, e.g. "layer_max": Θ + η·max|Θ|·N(0, 1) per tensor."""
    perturb = NOISE_MODELS[noise]
    return {name: perturb(value, eta, rng) for name, value in theta.items()}


def robustness_loss(model, x, logits_theta, rng, settings):
    """L_rob = KL(f(Θ, X) ‖ f(Θ*, X)) as a Tensor, with Θ* = A(Θ) from Algorithm 1 attacking this very KL.

    logits_theta : f(Θ, X), built by the caller from tracked Θ tensors (so L_nat can share that forward)
    Returns (L_rob, the Θ* tensors, the attack's result). After a backward through L_rob,
    jacobian.gradient_through_the_attack(Θ tensors, Θ* tensors, result) gives ∇_Θ L_rob = direct + J ⊙ ∂/∂Θ*.
    """
    result = pga_attack(model, x, kl_objective_towards(logits_theta), rng, zeta=settings["zeta_attack"],
                        attack_steps=settings["attack_steps"], epsilon=settings["attack_epsilon"],
                        box=settings["attack_box"])
    theta_star = tracked_parameters(model, result.theta_star)
    return kl_boundary_loss(logits_theta, model(Tensor(x), theta_star)), theta_star, result


def weighted_sum(a, b, weight):
    """a + weight·b, entry by entry, for two dicts name -> array."""
    return {name: a[name] + weight * b[name] for name in a}


# ---------------------------------------------------------------------------------------------------- methods
def standard(model, x, y, rng, config):
    """Plain empirical risk minimisation: L_nat = cross-entropy(f(Θ, X), y)."""
    loss, gradients = natural_loss_and_gradients(model, x, y, parameter_arrays(model))
    set_gradients(model, gradients)
    return loss


def forward_noise(model, x, y, rng, config):
    """L_nat at Θ + η_train|Θ|·N(0, 1), fresh noise every step. The noise is a constant offset, not
    differentiated (as the authors' stop_gradient), so ∇_Θ is simply the gradient at the noisy point."""
    settings = hyperparameters("forward_noise", config)
    noisy = with_forward_noise(parameter_arrays(model), settings["eta_train"], rng, settings["train_noise"])
    loss, gradients = natural_loss_and_gradients(model, x, y, noisy)
    set_gradients(model, gradients)
    return loss


def beta(model, x, y, rng, config):
    """The paper's method: L_gen = L_nat(Θ) + β_rob · L_rob(Θ, A(Θ)), Θ* = A(Θ) from Algorithm 1 on the KL
    boundary loss, ∇_Θ L_rob through the diagonal Jacobian (jacobian.py).

    One forward pass at Θ serves three uses: L_nat, the attack's target f(Θ, X) and the first argument of L_rob;
    one backward through it and the forward at Θ* gives the whole gradient. With the attack's N_steps passes that
    is N_steps + 2 forward/backward passes per step, the algorithm's own count.
    """
    settings = hyperparameters("beta", config)
    theta = tracked_parameters(model, parameter_arrays(model))
    logits, penalty = model.logits_and_penalty(Tensor(x), theta)
    natural_loss = cross_entropy_loss(logits, y) + penalty
    robust_loss, theta_star, result = robustness_loss(model, x, logits, rng, settings)
    (natural_loss + settings["beta_rob"] * robust_loss).backward()
    # Algorithm 1's last line, Θ ← Θ − η·∇_Θ(L_nat + β_rob·L_rob): the optimiser takes it with these gradients
    set_gradients(model, gradient_through_the_attack(theta, theta_star, result))
    return natural_loss.item() + settings["beta_rob"] * robust_loss.item()


def forward_noise_beta(model, x, y, rng, config):
    """L_nat at Θ + η|Θ|·N(0, 1) (noise constant, as forward_noise) + β_rob · L_rob at the clean Θ.

    Only L_nat is noisy: the KL's reference f(Θ, X) and the attack's starting point and box use the clean Θ,
    as in the authors' code (BPTT-Lipschitzness `loss_jax.py`, Rockpool `adversarial_loss`). So the graph holds
    three forwards (noisy Θ, clean Θ, Θ*); the noisy parameters are a constant offset from Θ, so their gradient
    adds to Θ's.
    """
    settings = hyperparameters("forward_noise_beta", config)
    noisy = tracked_parameters(model, with_forward_noise(parameter_arrays(model), settings["eta_train"], rng,
                                                         settings["train_noise"]))
    noisy_logits, penalty = model.logits_and_penalty(Tensor(x), noisy)
    natural_loss = cross_entropy_loss(noisy_logits, y) + penalty
    theta = tracked_parameters(model, parameter_arrays(model))
    robust_loss, theta_star, result = robustness_loss(model, x, model(Tensor(x), theta), rng, settings)
    (natural_loss + settings["beta_rob"] * robust_loss).backward()
    robust_gradients = gradient_through_the_attack(theta, theta_star, result)
    set_gradients(model, {name: gradient_of(noisy[name]) + robust_gradients[name] for name in robust_gradients})
    return natural_loss.item() + settings["beta_rob"] * robust_loss.item()


def dropout(model, x, y, rng, config):
    """L_nat with dropout: the model's forward zeroes hidden units with probability p (masks from rng)."""
    if not hasattr(model, "dropout"):
        raise ValueError(f"the dropout method needs a model with a dropout option (e.g. CNN(rng, dropout=0.3)); "
                         f"{type(model).__name__} has none")
    model.dropout = hyperparameters("dropout", config)["dropout"]  # the rate lives on the model, used by forward
    logits, penalty = model.logits_and_penalty(Tensor(x), rng=rng)
    loss = cross_entropy_loss(logits, y) + penalty
    model.zero_grad()
    loss.backward()
    return loss.item()


def awp(model, x, y, rng, config):
    """AWP, adapted to mismatch as in the paper: Θ* from PGA on the task loss L_nat (Algorithm 1's loop with the
    cross-entropy as objective, in the magnitude-relative box ζ_attack|Θ|), then the perturbation AWP trains
    against is ΔΘ = γ·(Θ* − Θ), so |ΔΘ| ≤ γ·ζ_attack·|Θ| (0.01|Θ| with the paper's γ = 0.1, ζ_attack = 0.1),
    as in the authors' code (Θ_AWP = Θ + γ(Θ* − Θ)); the gradient of L_nat at Θ + ΔΘ is applied to Θ (ΔΘ
    treated as a constant). Returns L_nat at Θ + ΔΘ. (With the box γ|Θ| itself, ten times larger, the F-MNIST
    CNN fell from 88 % to 77 % validation accuracy within 50 steps after a warm-up epoch.)

    With awp_input_epsilon = ε_pga > 0 the inputs are attacked first, as in Wu et al.: X* from PGA on the inputs
    in the l∞ ball ‖X* − X‖∞ ≤ ε_pga (attack.pga_on_inputs), and both the weight attack and the gradient use X*
    (the paper's Table 1: ε_pga 0 for the CNN and ECG, 0.01 for Speech; Fig. S11 sweeps it)."""
    settings = hyperparameters("awp", config)
    if settings["awp_input_epsilon"] > 0:
        x = pga_on_inputs(model, x, y, settings["awp_input_epsilon"], settings["attack_steps"])
    result = pga_attack(model, x, cross_entropy_objective(y), rng, zeta=settings["zeta_attack"],
                        attack_steps=settings["attack_steps"], epsilon=settings["attack_epsilon"])
    theta = result.theta
    perturbed = {name: theta[name] + settings["awp_gamma"] * (result.theta_star[name] - theta[name])
                 for name in theta}                                           # Θ + γ(Θ* − Θ)
    loss, gradients = natural_loss_and_gradients(model, x, y, perturbed)
    set_gradients(model, gradients)
    return loss


def amp(model, x, y, rng, config):
    """AMP, not adapted (as in the paper): gradient ascent on L_nat, ΔΘ ← ΔΘ + lr_inner·∇L_nat(Θ + ΔΘ), each
    parameter tensor's ΔΘ projected onto the l2 ball of radius ε (as the AMP authors' code); then the gradient of
    L_nat at Θ + ΔΘ is applied to Θ (ΔΘ a constant). Returns L_nat at Θ + ΔΘ."""
    settings = hyperparameters("amp", config)
    theta = parameter_arrays(model)
    delta = {name: np.zeros_like(value) for name, value in theta.items()}
    for _ in range(settings["amp_steps"]):
        _, gradients = natural_loss_and_gradients(model, x, y, weighted_sum(theta, delta, 1.0))
        delta = {name: onto_l2_ball(delta[name] + settings["amp_inner_lr"] * gradients[name],
                                    settings["amp_epsilon"]) for name in theta}
    loss, gradients = natural_loss_and_gradients(model, x, y, weighted_sum(theta, delta, 1.0))
    set_gradients(model, gradients)
    return loss


def onto_l2_ball(vector, radius):
    """The projection of an array onto {‖v‖₂ ≤ radius}: shrink it if it is longer."""
    length = np.sqrt(np.sum(vector * vector))
    return vector * min(1.0, radius / (length + 1e-12))


def abcd(model, x, y, rng, config):
    """ABCD, `abcd_rounds` (L) rounds on this minibatch. Each round picks a random half A of the entries
    (a fair coin per entry), takes one gradient-ascent step on them, Θ_A ← Θ_A + η_A·∇_A L_nat, kept in the box
    |ΔΘ| ≤ ζ|Θ| (the paper's adaptation to mismatch), and computes the descent gradient of the other half B at
    the ascended point.

    The ascents change the model's weights right away (they stay, as in ABCD). The descents are the optimiser's
    job, and our training loop steps once per minibatch: the L rounds' half-B gradients are summed into p.grad
    and applied together in that one step, instead of one descent step after every round.
    """
    settings = hyperparameters("abcd", config)
    if settings["abcd_rounds"] < 1:
        raise ValueError(f"abcd_rounds must be at least 1, got {settings['abcd_rounds']}")
    descent = {name: np.zeros_like(p.data) for name, p in model.named_parameters()}
    for _ in range(settings["abcd_rounds"]):
        theta = parameter_arrays(model)
        ascend = {name: rng.random(value.shape) < 0.5 for name, value in theta.items()}   # half A
        _, gradients = natural_loss_and_gradients(model, x, y, theta)
        for name, p in model.named_parameters():
            ascended = theta[name] + settings["abcd_eta_ascent"] * ascend[name] * gradients[name]
            box = settings["zeta_attack"] * np.abs(theta[name])
            p.data = np.clip(ascended, theta[name] - box, theta[name] + box).astype(p.dtype)
        loss, gradients = natural_loss_and_gradients(model, x, y, parameter_arrays(model))
        descent = {name: descent[name] + np.where(ascend[name], 0, gradients[name]) for name in descent}
    set_gradients(model, descent)
    return loss


def entropy_sgd(model, x, y, rng, config):
    """Entropy-SGD (Chaudhari et al. 2019, Algorithm 1), the inner loop on this minibatch, the outer step left to
    the training loop's optimiser.

    Inner loop, L steps of SGLD on x' (the "sample"), starting at x' = μ = Θ:
        g  = ∇L_nat(x')          with momentum (and Nesterov's correction)
        g ← g − γ(Θ − x') + (noise / √(lr'/2))·N(0, 1)        the coupling to Θ, and the Langevin noise
        x' ← x' − lr'·g;   μ ← a·μ + (1 − a)·x'                μ: running average of the samples
    Outer gradient: Θ − μ (the gradient of the local entropy, up to the factor γ the learning rate absorbs).
    Scoping: γ_t = γ0·(1 + γ1)^t grows with t, the number of Entropy-SGD steps this model has taken (counted on
    the model as `entropy_sgd_step`). The Langevin momentum starts from zero every minibatch, as in the
    authors' code; the outer momentum/Nesterov is the training loop's optimiser's (Adam in train.py), not here.
    Returns L_nat at Θ (the first inner step's loss).
    """
    settings = hyperparameters("entropy_sgd", config)
    if settings["langevin_steps"] < 1:
        raise ValueError(f"langevin_steps must be at least 1, got {settings['langevin_steps']}")
    step = getattr(model, "entropy_sgd_step", 0)
    gamma = settings["esgd_gamma"] * (1 + settings["esgd_gamma_growth"]) ** step
    model.entropy_sgd_step = step + 1
    theta = parameter_arrays(model)
    sample = {name: value.copy() for name, value in theta.items()}
    average = {name: value.copy() for name, value in theta.items()}
    velocity = {name: np.zeros_like(value) for name, value in theta.items()}
    for inner_step in range(settings["langevin_steps"]):
        inner_loss, gradients = natural_loss_and_gradients(model, x, y, sample)
        if inner_step == 0:
            loss = inner_loss
        for name in theta:
            sample[name], velocity[name] = langevin_step(theta[name], sample[name], gradients[name],
                                                         velocity[name], gamma, settings, rng)
            a = settings["langevin_average"]
            average[name] = a * average[name] + (1 - a) * sample[name]
    set_gradients(model, {name: theta[name] - average[name] for name in theta})
    return loss


def langevin_step(theta, sample, gradient, velocity, gamma, settings, rng):
    """One SGLD step of Entropy-SGD's inner loop for one array; returns (new sample, new velocity)."""
    momentum, lr = settings["langevin_momentum"], settings["langevin_lr"]
    velocity = momentum * velocity + gradient
    direction = gradient + momentum * velocity if settings["nesterov"] else velocity
    noise = settings["langevin_noise"] / np.sqrt(0.5 * lr) * rng.standard_normal(theta.shape)
    direction = direction - gamma * (theta - sample) + noise
    return (sample - lr * direction).astype(theta.dtype), velocity


def sam(model, x, y, rng, config):
    """SAM: ε̂ = ρ·g/‖g‖₂ with g = ∇L_nat(Θ) (one norm over all parameters), then the gradient of L_nat at
    Θ + ε̂ applied to Θ. Returns L_nat at Θ + ε̂."""
    settings = hyperparameters("sam", config)
    theta = parameter_arrays(model)
    _, gradients = natural_loss_and_gradients(model, x, y, theta)
    length = np.sqrt(sum(np.sum(g * g) for g in gradients.values()))
    perturbed = weighted_sum(theta, gradients, settings["sam_rho"] / (length + 1e-12))
    loss, gradients = natural_loss_and_gradients(model, x, y, perturbed)
    set_gradients(model, gradients)
    return loss


METHODS = {"standard": standard, "forward_noise": forward_noise, "beta": beta,
           "forward_noise_beta": forward_noise_beta, "dropout": dropout, "awp": awp, "amp": amp, "abcd": abcd,
           "entropy_sgd": entropy_sgd, "sam": sam}
