"""Modules, layers (batch norm included), the paper's CNN and checkpoints (with buffers)."""
import os

import numpy as np
import pytest

from minimal.autodiff import Tensor, ops
from minimal.autodiff.gradcheck import gradcheck
from minimal.nn.cnn import CNN
from minimal.nn.layers import BatchNorm2d, Conv2d, Linear, Sequential, glorot_normal
from minimal.nn.lsnn import LSNN
from minimal.nn.module import Buffer, Module, Parameter, load_checkpoint, save_checkpoint


def test_named_parameters_follow_attribute_names():
    model = CNN(np.random.default_rng(0))
    names = [name for name, _ in model.named_parameters()]
    assert names == ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc1.weight", "fc1.bias",
                     "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias"]
    shapes = {name: p.shape for name, p in model.named_parameters()}
    assert shapes["conv1.weight"] == (64, 1, 4, 4) and shapes["conv2.weight"] == (64, 64, 4, 4)
    assert shapes["fc1.weight"] == (1600, 256)  # 64 · 5 · 5 = 1600
    assert model.num_parameters() == 64 * 16 + 64 + 64 * 64 * 16 + 64 + 1600 * 256 + 256 + 256 * 64 + 64 + 650


def test_cnn_shapes_through_the_blocks():
    model = CNN(np.random.default_rng(0))
    x = Tensor(np.random.default_rng(1).random((3, 1, 28, 28), dtype=np.float32))
    h = CNN._pool_relu(model.conv1(x))
    assert h.shape == (3, 64, 13, 13)  # 28 -> 25 -> 13
    assert CNN._pool_relu(model.conv2(h)).shape == (3, 64, 5, 5)  # 13 -> 10 -> 5
    logits = model(x)
    assert logits.shape == (3, 10) and logits.dtype == np.float32


def test_cnn_gradients_match_finite_differences_in_float64():
    """The whole model end to end (small channel counts so the check is fast)."""
    rng = np.random.default_rng(0)
    model = CNN(rng, channels=3, hidden=(8, 6), num_classes=4, image_size=12)
    names = [name for name, _ in model.named_parameters()]
    x = rng.random((2, 1, 12, 12))
    labels = np.array([1, 3])
    params64 = [p.data.astype(np.float64) for p in model.parameters()]

    def loss(*params):
        return ops.cross_entropy(model(Tensor(x), dict(zip(names, params))), labels)

    gradcheck(loss, *params64, max_entries=30)


def test_params_override_does_not_touch_the_model():
    rng = np.random.default_rng(0)
    model = CNN(rng)
    before = model.state_dict()
    x = Tensor(rng.random((2, 1, 28, 28), dtype=np.float32))
    zeroed = {"fc3.weight": Tensor(np.zeros((64, 10), np.float32))}
    out = model(x, zeroed)
    np.testing.assert_allclose(out.data, np.broadcast_to(model.fc3.bias.data, (2, 10)))
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name])
    with pytest.raises(KeyError, match="unknown parameter"):
        model(x, {"nope": zeroed["fc3.weight"]})


def test_layers_use_their_own_parameters_unless_given_others():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 2, 6, 6)).astype(np.float32)
    conv = Conv2d(2, 3, (3, 2), rng, stride=2, padding=(1, 0))
    assert conv.weight.shape == (3, 2, 3, 2)
    np.testing.assert_array_equal(conv(x).data, ops.conv2d(x, conv.weight, conv.bias, 2, (1, 0)).data)
    other = rng.standard_normal(conv.weight.shape).astype(np.float32)
    np.testing.assert_array_equal(conv(x, other).data, ops.conv2d(x, other, conv.bias, 2, (1, 0)).data)
    fc = Linear(4, 3, rng, bias=False)
    assert [name for name, _ in fc.named_parameters()] == ["weight"]
    np.testing.assert_array_equal(fc(x[:, 0, 0, :4]).data, x[:, 0, 0, :4] @ fc.weight.data)
    bias = np.ones(3, np.float32)
    np.testing.assert_array_equal(fc(x[:, 0, 0, :4], bias=bias).data, x[:, 0, 0, :4] @ fc.weight.data + 1)


class Doubled(Module):
    """A module that takes (x, its own parameter dict), as the ResNet's blocks do."""

    def __init__(self, rng):
        self.fc = Linear(3, 3, rng)

    def forward(self, x, p):
        return self.fc(x, p["fc.weight"], p["fc.bias"]) * 2


def test_sequential_names_its_modules_and_hands_each_its_parameters():
    rng = np.random.default_rng(0)
    net = Sequential(Doubled(rng), Doubled(rng))
    assert [name for name, _ in net.named_parameters()] == ["0.fc.weight", "0.fc.bias", "1.fc.weight", "1.fc.bias"]
    x = rng.standard_normal((2, 3)).astype(np.float32)
    p = net.parameter_dict({"1.fc.bias": np.full(3, 5.0, np.float32)})
    first = 2 * (x @ net.parameter_dict()["0.fc.weight"].data)
    expected = 2 * (first @ net.parameter_dict()["1.fc.weight"].data + 5)
    np.testing.assert_allclose(net.eval()(x, p).data, expected, rtol=1e-6)  # vars(net) now holds `training` too


def test_glorot_normal_std():
    w = glorot_normal((400, 600), 400, 600, np.random.default_rng(0))
    assert w.dtype == np.float32
    assert abs(w.std() - np.sqrt(2 / 1000)) < 0.002 and abs(w.mean()) < 0.002


def test_checkpoint_round_trip_and_errors(tmp_path):
    model = CNN(np.random.default_rng(0))
    save_checkpoint(tmp_path / "run", model, {"task": "fmnist", "acc": 0.5})
    assert sorted(os.listdir(tmp_path / "run")) == ["meta.json", "model.npz"]  # no temporary files left
    state, meta = load_checkpoint(tmp_path / "run")
    assert meta == {"task": "fmnist", "acc": 0.5}
    other = CNN(np.random.default_rng(1))
    other.load_state_dict(state)
    for name, value in other.state_dict().items():
        np.testing.assert_array_equal(value, model.state_dict()[name])
    state["fc1.weight"] = state["fc1.weight"][:10]
    with pytest.raises(ValueError, match="fc1.weight"):
        other.load_state_dict(state)
    del state["fc1.weight"]
    with pytest.raises(KeyError, match="missing.*fc1.weight"):
        other.load_state_dict(state)
    with pytest.raises(FileNotFoundError, match="model.npz"):
        load_checkpoint(tmp_path / "absent")
    (tmp_path / "run" / "model.npz").write_bytes(b"not a zip file")
    with pytest.raises(FileNotFoundError, match="unreadable"):
        load_checkpoint(tmp_path / "run")


def test_parameter_always_requires_grad():
    p = Parameter(np.ones(3))
    assert p.requires_grad
    (p * 2).sum().backward()
    np.testing.assert_array_equal(p.grad, 2)


# ------------------------------------------------------------------------------------------- batch norm, buffers
def test_batch_norm_training_normalises_and_moves_the_running_statistics():
    bn = BatchNorm2d(3, momentum=0.1)
    x = np.random.default_rng(0).normal(2.0, 3.0, (8, 3, 4, 5)).astype(np.float32)
    out = bn(Tensor(x)).data
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-5)  # γ = 1, β = 0 at the start
    np.testing.assert_allclose(out.std(axis=(0, 2, 3)), 1, atol=1e-3)
    np.testing.assert_allclose(bn.running_mean.data, 0.1 * x.mean(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(bn.running_var.data, 0.9 + 0.1 * x.var(axis=(0, 2, 3), ddof=1), rtol=1e-5)


def test_batch_norm_eval_uses_the_running_statistics_and_leaves_them():
    bn = BatchNorm2d(2)
    bn.running_mean.data[:] = [1.0, -1.0]
    bn.running_var.data[:] = [4.0, 0.25]
    bn.eval()
    x = np.random.default_rng(0).standard_normal((3, 2, 2, 2)).astype(np.float32)
    expected = (x - bn.running_mean.data[:, None, None]) / np.sqrt(bn.running_var.data[:, None, None] + bn.eps)
    np.testing.assert_allclose(bn(Tensor(x)).data, expected, rtol=1e-6)
    np.testing.assert_allclose(bn(Tensor(x[:1])).data, expected[:1], rtol=1e-6)  # independent of the batch
    np.testing.assert_array_equal(bn.running_mean.data, [1.0, -1.0])


def test_batch_norm_takes_gamma_and_beta_overrides():
    bn = BatchNorm2d(2).eval()
    x = Tensor(np.ones((1, 2, 1, 1), np.float32))
    out = bn(x, np.array([2.0, 3.0], np.float32), np.array([0.5, 0.0], np.float32))
    np.testing.assert_allclose(out.data.ravel(), np.array([2.0, 3.0]) / np.sqrt(1 + bn.eps) + [0.5, 0.0])


class WithBatchNorm(Module):
    def __init__(self, rng):
        self.conv = Conv2d(1, 2, 3, rng)
        self.bn = BatchNorm2d(2)

    def forward(self, x, params=None):
        p = self.parameter_dict(params)
        return self.bn(self.conv(x, p["conv.weight"], p["conv.bias"]), p["bn.weight"], p["bn.bias"])


def test_buffers_are_in_the_state_but_are_not_parameters():
    model = WithBatchNorm(np.random.default_rng(0))
    assert [name for name, _ in model.named_parameters()] == ["conv.weight", "conv.bias", "bn.weight", "bn.bias"]
    assert [name for name, _ in model.named_buffers()] == ["bn.running_mean", "bn.running_var"]
    assert all(isinstance(b, Buffer) and not isinstance(b, Tensor) for _, b in model.named_buffers())
    assert list(model.state_dict()) == ["conv.weight", "conv.bias", "bn.weight", "bn.bias", "bn.running_mean",
                                        "bn.running_var"]
    assert model.num_parameters() == 2 * 9 + 2 + 2 + 2


def test_checkpoint_round_trip_with_buffers(tmp_path):
    rng = np.random.default_rng(0)
    model = WithBatchNorm(rng)
    x = Tensor(rng.standard_normal((4, 1, 5, 5)).astype(np.float32))
    for _ in range(3):
        model(x)  # training mode: the running statistics move away from 0 and 1
    save_checkpoint(tmp_path / "run", model, {"task": "test"})
    state, _ = load_checkpoint(tmp_path / "run")
    other = WithBatchNorm(np.random.default_rng(1))
    other.load_state_dict(state)
    np.testing.assert_array_equal(other.bn.running_mean.data, model.bn.running_mean.data)
    np.testing.assert_array_equal(other.bn.running_var.data, model.bn.running_var.data)
    np.testing.assert_array_equal(other.eval()(x).data, model.eval()(x).data)
    del state["bn.running_var"]
    with pytest.raises(KeyError, match="missing.*bn.running_var"):
        other.load_state_dict(state)


def test_models_without_buffers_keep_their_checkpoint_keys():
    """CNN and LSNN checkpoints hold exactly the parameters, as before buffers existed."""
    rng = np.random.default_rng(0)
    for model in (CNN(rng), LSNN(rng, 2, 4)):
        assert list(model.named_buffers()) == []
        assert list(model.state_dict()) == [name for name, _ in model.named_parameters()]
