"""Modules, layers, the paper's CNN and checkpoints."""
import os

import numpy as np
import pytest

from minimal.autodiff import Tensor, ops
from minimal.autodiff.gradcheck import gradcheck
from minimal.nn.cnn import CNN
from minimal.nn.layers import Conv2d, Dropout, Flatten, Linear, MaxPool2d, ReLU, Sequential, glorot_normal
from minimal.nn.module import Parameter, load_checkpoint, save_checkpoint


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
    h = CNN._block(x, model.conv1.weight, model.conv1.bias)
    assert h.shape == (3, 64, 13, 13)  # 28 -> 25 -> 13
    assert CNN._block(h, model.conv2.weight, model.conv2.bias).shape == (3, 64, 5, 5)  # 13 -> 10 -> 5
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


def test_layers_and_sequential():
    rng = np.random.default_rng(0)
    net = Sequential(Conv2d(2, 3, 3, rng, padding=1), MaxPool2d(2, ceil_mode=True), ReLU(), Flatten(),
                     Dropout(0.5, rng), Linear(3 * 3 * 3, 4, rng))
    x = Tensor(rng.random((5, 2, 5, 5), dtype=np.float32))
    assert net(x).shape == (5, 4)
    assert [n for n, _ in net.named_parameters()] == ["0.weight", "0.bias", "5.weight", "5.bias"]
    net.eval()
    np.testing.assert_array_equal(net(x).data, net(x).data)  # dropout off in eval mode
    assert not net.training and not getattr(net, "4").training


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
