"""ResNet-32: shapes, parameter count, the option-A shortcut, gradients, learning, train/eval batch norm,
weights routed through nn/functional (and so onto a PCM crossbar), and checkpoints (running statistics included)."""
import numpy as np
import pytest

from minimal.autodiff import Tensor, no_grad, ops
from minimal.autodiff.gradcheck import gradcheck
from minimal.nn import functional
from minimal.nn.module import save_checkpoint
from minimal.nn.resnet import BasicBlock, ResNet, ResNet32
from minimal.tasks import load_trained_model, sgd_nesterov


def images(n, side=16, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 3, side, side)).astype(np.float32)


def class_patterns(n=64, side=16, classes=10, seed=0):
    """n images in `classes` classes: each class a fixed random pattern, each image its pattern plus noise."""
    rng = np.random.default_rng(seed)
    patterns = rng.standard_normal((classes, 3, side, side))
    y = np.arange(n) % classes
    return (patterns[y] + rng.standard_normal((n, 3, side, side))).astype(np.float32), y


def logits(model, x):
    with no_grad():
        return model(Tensor(x)).data


def test_resnet32_shapes_and_parameter_count():
    model = ResNet32(np.random.default_rng(0))
    # conv weights: 3·16·9 + 10·16·16·9 + (16·32·9 + 9·32·32·9) + (32·64·9 + 9·64·64·9); 31 batch norms (γ, β);
    # dense 64·10 + 10
    convs = 432 + 23040 + 87552 + 350208
    assert model.num_parameters() == convs + 2 * (11 * 16 + 10 * 32 + 10 * 64) + 650 == 464154
    names = [name for name, _ in model.named_parameters()]
    assert sum(name.endswith("conv1.weight") or name.endswith("conv2.weight") for name in names) == 30
    assert not any("conv" in name and name.endswith("bias") for name in names)  # BN follows every conv
    assert names[:3] == ["conv.weight", "bn.weight", "bn.bias"] and names[-2:] == ["fc.weight", "fc.bias"]
    assert "stage3.4.conv2.weight" in names and len(list(model.named_buffers())) == 2 * 31
    out = logits(model, images(2, side=32))
    assert out.shape == (2, 10) and out.dtype == np.float32
    assert logits(model, images(1, side=17)).shape == (1, 10)  # odd sizes: 17 -> 9 -> 5


def test_stages_halve_the_image_and_double_the_channels():
    rng = np.random.default_rng(0)
    x = Tensor(np.random.default_rng(1).standard_normal((2, 16, 32, 32)).astype(np.float32))
    same = BasicBlock(16, 16, 1, rng)
    assert same(x, same.parameter_dict()).shape == (2, 16, 32, 32)
    down = BasicBlock(16, 32, 2, rng)
    assert down(x, down.parameter_dict()).shape == (2, 32, 16, 16)


def test_option_a_shortcut_subsamples_and_pads_zero_channels():
    block = BasicBlock(2, 5, 2, np.random.default_rng(0))
    x = images(1, side=5)[:, :2]
    out = block.shortcut(Tensor(x)).data
    assert out.shape == (1, 5, 3, 3)
    np.testing.assert_array_equal(out[:, 1:3], x[:, :, ::2, ::2])  # 3 extra channels: 1 before, 2 after
    np.testing.assert_array_equal(out[:, [0, 3, 4]], 0)
    same = BasicBlock(2, 2, 1, np.random.default_rng(0))
    np.testing.assert_array_equal(same.shortcut(Tensor(x)).data, x)


def test_gradients_match_finite_differences_in_float64():
    """A one-block-per-stage ResNet end to end in training mode (batch statistics), every parameter checked."""
    rng = np.random.default_rng(0)
    model = ResNet(rng, num_classes=4, widths=(2, 3, 5), blocks_per_stage=1)
    names = [name for name, _ in model.named_parameters()]
    x, labels = rng.standard_normal((3, 3, 6, 6)), np.array([0, 3, 1])
    params64 = [p.data.astype(np.float64) for p in model.parameters()]

    def loss(*params):
        return ops.cross_entropy(model(Tensor(x), dict(zip(names, params))), labels)

    gradcheck(loss, *params64, max_entries=8)


@pytest.mark.parametrize("optimizer", ["adam", "sgd_nesterov"])
def test_a_few_steps_lower_the_loss(optimizer):
    """32 layers deep (narrow, for speed): six full-batch steps on 64 images of 10 classes."""
    from minimal.optim import Adam
    model = ResNet32(np.random.default_rng(0), widths=(4, 8, 16))
    x, y = class_patterns()
    step = (Adam(model.parameters(), lr=0.01) if optimizer == "adam"
            else sgd_nesterov(model.parameters(), lr=0.05))
    losses = []
    for _ in range(6):
        step.zero_grad()
        loss = ops.cross_entropy(model(Tensor(x)), y)
        loss.backward()
        step.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_eval_mode_uses_the_running_statistics():
    model = ResNet(np.random.default_rng(0), widths=(4, 8, 16), blocks_per_stage=1)
    x = images(8)
    for _ in range(3):
        logits(model, x)  # training mode: the running statistics follow the batches
    bn = getattr(model.stage2, "0").bn1
    assert not np.allclose(bn.running_mean.data, 0)
    running = model.state_dict()
    model.eval()
    full = logits(model, x)
    np.testing.assert_array_equal(logits(model, x), full)  # deterministic
    np.testing.assert_allclose(logits(model, x[:3]), full[:3], rtol=1e-5, atol=1e-6)  # batch does not matter
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, running[name])  # eval forwards leave the statistics alone
    model.train()
    assert not np.allclose(logits(model, x[:3]), full[:3], atol=1e-3)  # training: the batch's own statistics


def test_every_conv_and_dense_weight_goes_through_functional(monkeypatch):
    """conv2d and linear of nn/functional receive the weights (so a PCM crossbar can stand in for them)."""
    model = ResNet(np.random.default_rng(0), widths=(4, 8, 16), blocks_per_stage=2)
    seen = []

    def recording(function):
        def record(x, weight, *rest):
            seen.append(weight)
            return function(x, weight, *rest)
        return record

    monkeypatch.setattr(functional, "conv2d", recording(functional.conv2d))
    monkeypatch.setattr(functional, "linear", recording(functional.linear))
    logits(model, images(2))
    weights = [p for name, p in model.named_parameters() if "conv" in name or name == "fc.weight"]
    assert len(seen) == len(weights) == 1 + 3 * 2 * 2 + 1
    assert {id(w) for w in seen} == {id(w) for w in weights}


def test_runs_on_an_ideal_pcm_chip_with_the_digital_logits():
    from minimal.pcm import PCMModel, PCMSettings
    model = ResNet(np.random.default_rng(0), widths=(4, 8, 16), blocks_per_stage=1).eval()
    x = images(3)
    chip = PCMModel(model, np.random.default_rng(1), PCMSettings.ideal())
    assert len(chip.programmed) == 1 + 3 * 2 + 1  # every conv kernel and the dense weight
    np.testing.assert_allclose(chip.logits(x, 25.0, np.random.default_rng(2)), logits(model, x), atol=1e-5)


def test_params_override_does_not_touch_the_model():
    model = ResNet(np.random.default_rng(0), widths=(4, 8, 16), blocks_per_stage=1).eval()
    before = model.state_dict()
    out = model(Tensor(images(2)), {"fc.weight": np.zeros((16, 10), np.float32)})
    np.testing.assert_array_equal(out.data, np.broadcast_to(model.fc.bias.data, (2, 10)))
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name])
    with pytest.raises(KeyError, match="unknown parameter"):
        model(Tensor(images(2)), {"stage1.0.bn1.running_mean": np.zeros(4)})  # a buffer is not a parameter


def test_checkpoint_round_trip_gives_the_same_logits(tmp_path):
    """Saved by the training loop's save_checkpoint, loaded as a cifar10 task model: parameters and running
    statistics come back, so the eval-mode logits are identical."""
    model = ResNet32(np.random.default_rng(3))
    x = images(4)
    for _ in range(2):
        logits(model, x)  # move the running statistics away from their start
    save_checkpoint(tmp_path / "run", model, {"task": "cifar10", "method": "standard", "seed": 3})
    loaded, meta = load_trained_model(tmp_path / "run")
    assert meta["task"] == "cifar10" and not loaded.training
    np.testing.assert_array_equal(logits(loaded, x), logits(model.eval(), x))
