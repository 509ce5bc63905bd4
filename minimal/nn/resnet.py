"""ResNet-32 for CIFAR-10 (He et al., 2016, "Deep Residual Learning for Image Recognition", Section 4.2): the
network of the paper's PCM section (Supplementary "Training of CNN used for PCM-based CiM simulation").

    x (N, 3, 32, 32)
    conv 3×3, 16 channels, BN, ReLU                                 -> (N, 16, 32, 32)
    stage 1: 5 basic blocks, 16 channels                            -> (N, 16, 32, 32)
    stage 2: 5 basic blocks, 32 channels, the first with stride 2   -> (N, 32, 16, 16)
    stage 3: 5 basic blocks, 64 channels, the first with stride 2   -> (N, 64, 8, 8)
    global average pool                                             -> (N, 64)
    dense 64 -> 10 (logits)

1 + 3 · 5 · 2 + 1 = 32 layers with weights, 0.46 M parameters. A basic block computes

    relu(BN(conv 3×3(relu(BN(conv 3×3(x))))) + shortcut(x))

Shortcut: He et al.'s option A, the identity. Where a block halves the image and doubles the channels, the
shortcut keeps every second pixel in each direction and appends zero channels, so it has no weights. Convolutions
have no bias (the BN after each one has its own shift β). Weights start Glorot normal, like every layer here (He
et al. drew them from N(0, 2/fan_in); with a BN after each convolution the scale of the start hardly matters).

`forward(x, params)` reads every weight from `params` (name -> tensor), like the CNN, so the attack and the
mismatch sampler can run the same model at Θ* or Θ·(1 + ζN). The convolutions and the dense layer compute with
F.conv2d and F.linear (nn/functional.py), which also compute on other number systems (e.g. a simulated PCM
crossbar); batch norm, ReLU, the residual sums and the pooling always compute digitally (autodiff ops).
"""
import numpy as np

from ..autodiff import ops
from .layers import BatchNorm2d, Conv2d, Linear, Sequential
from .module import Module, subset


class BasicBlock(Module):
    def __init__(self, in_channels, out_channels, stride, rng):
        self.conv1 = Conv2d(in_channels, out_channels, 3, rng, stride=stride, padding=1, bias=False)
        self.bn1 = BatchNorm2d(out_channels)
        self.conv2 = Conv2d(out_channels, out_channels, 3, rng, padding=1, bias=False)
        self.bn2 = BatchNorm2d(out_channels)
        self.stride, self.extra_channels = stride, out_channels - in_channels

    def forward(self, x, p):
        """p: this block's parameters, name -> tensor, named relative to the block ("conv1.weight", …)."""
        h = ops.relu(self.bn1(self.conv1(x, p["conv1.weight"]), p["bn1.weight"], p["bn1.bias"]))
        h = self.bn2(self.conv2(h, p["conv2.weight"]), p["bn2.weight"], p["bn2.bias"])
        return ops.relu(ops.add(h, self.shortcut(x)))

    def shortcut(self, x):
        """Option A: x itself; subsampled by the stride and padded with zero channels (half before, half after)
        when the block changes the shape."""
        if self.stride != 1:
            x = x[:, :, ::self.stride, ::self.stride]
        if self.extra_channels:
            before = self.extra_channels // 2
            zeros = [np.zeros((x.shape[0], count) + x.shape[2:], dtype=x.dtype)
                     for count in (before, self.extra_channels - before)]
            x = ops.concatenate([zeros[0], x, zeros[1]], axis=1)
        return x


class ResNet(Module):
    """He et al.'s CIFAR ResNet with 6n + 2 layers of weights, n = blocks_per_stage; widths: the channels of the
    three stages. ResNet32 below is the paper's (n = 5, widths 16, 32, 64); smaller ones make fast tests."""

    def __init__(self, rng, num_classes=10, widths=(16, 32, 64), blocks_per_stage=5):
        self.conv = Conv2d(3, widths[0], 3, rng, padding=1, bias=False)
        self.bn = BatchNorm2d(widths[0])
        in_channels = widths[0]
        self.stage_names = []
        for stage, channels in enumerate(widths, start=1):
            stride = 1 if stage == 1 else 2  # stages 2 and 3 halve the image in their first block
            blocks = []
            for _ in range(blocks_per_stage):
                blocks.append(BasicBlock(in_channels, channels, stride, rng))
                in_channels, stride = channels, 1
            setattr(self, f"stage{stage}", Sequential(*blocks))  # parameters "stage2.0.conv1.weight", …
            self.stage_names.append(f"stage{stage}")
        self.fc = Linear(widths[-1], num_classes, rng)

    def forward(self, x, params=None):
        """Logits of shape (N, num_classes). params: optional name -> tensor overrides (Θ* or a mismatch draw)."""
        p = self.parameter_dict(params)
        x = ops.relu(self.bn(self.conv(x, p["conv.weight"]), p["bn.weight"], p["bn.bias"]))
        for name in self.stage_names:
            x = getattr(self, name)(x, subset(p, name + "."))
        x = ops.mean(x, axis=(2, 3))  # global average pooling
        return self.fc(x, p["fc.weight"], p["fc.bias"])


def ResNet32(rng, num_classes=10, widths=(16, 32, 64)):
    """ResNet-32: 5 blocks per stage (464 154 parameters with the default widths)."""
    return ResNet(rng, num_classes, widths, blocks_per_stage=5)
