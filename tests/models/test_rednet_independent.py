"""RedNet's forward against a second, deliberately plain implementation.

`plain_rednet` below is written from the paper (Li et al., "Involution: Inverting the
Inherence of Convolution for Visual Recognition", CVPR 2021: RedNet is ResNet
with the 3x3 conv of every bottleneck replaced by a 7x7 involution, also in the stem) and
from the structure of the official mmcls RedNet (d-li14/involution,
cls/mmcls/models/backbones/rednet.py):

* stem: 3x3 conv stride 2 (in -> C/2), BN, ReLU; involution on C/2 channels (3x3 in the
  ImageNet model, 7x7 in the detection/segmentation backbones), BN, ReLU; 3x3 conv
  (C/2 -> C), BN, ReLU; then 3x3 max pool stride 2 padding 1.
* bottleneck (expansion 4, "pytorch" style: the stride sits on the middle layer):
  1x1 conv, BN, ReLU; 7x7 involution carrying the stride, BN, ReLU; 1x1 conv, BN; plus the
  shortcut (on the first block of a stage: 1x1 conv with the stride, BN); ReLU after the sum.
* involution: kernels generated from the input average-pooled by the stride, through
  1x1 conv C -> C/4, BN, ReLU, 1x1 conv C/4 -> K*K*G (with bias), G = C/16; each output
  pixel is the KxK neighbourhood of its input pixel weighted by the kernel of its group
  (written here with F.unfold, the paper's formulation, not our operator).
* classifier: global average pooling, linear.

It shares nothing with involution_ops.rednet / modules but the parameter *names* (so the
same state dict loads into both). Every parameter and statistic of the state dict must be
read by the plain forward, so an extra or unused layer in RedNet fails the test too.
Inputs have even sizes: for odd sizes and stride 2 our Involution deliberately differs
from the official code (it keeps the partial edge window of the average pool).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from involution_ops import RedNet

# Bottlenecks per stage, as published (the official arch_settings).
PLAIN_BLOCKS = {26: (1, 2, 4, 1), 38: (2, 3, 5, 2), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
GROUP_CHANNELS = 16
BN_EPS = 1e-5


class Params:
    """A state dict that remembers which entries were read."""

    def __init__(self, state: dict[str, torch.Tensor], calibrate: np.random.RandomState | None = None) -> None:
        self.state = state
        self.calibrate = calibrate
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> torch.Tensor:
        self.read.add(key)
        return self.state[key]

    def __contains__(self, key: str) -> bool:
        return key in self.state

    def unread(self) -> set[str]:
        return {k for k in self.state if k not in self.read and not k.endswith("num_batches_tracked")}


def plain_bn(p: Params, name: str, x: torch.Tensor) -> torch.Tensor:
    if p.calibrate is not None:  # running statistics near this batch's (see `calibrate`)
        mean, var = x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), unbiased=False)
        noise = torch.from_numpy(p.calibrate.normal(size=mean.shape))
        p.state[f"{name}.running_mean"] = mean + 0.1 * var.sqrt() * noise
        p.state[f"{name}.running_var"] = var * torch.from_numpy(p.calibrate.uniform(0.8, 1.25, size=var.shape))
    return F.batch_norm(x, p[f"{name}.running_mean"], p[f"{name}.running_var"], p[f"{name}.weight"],
                        p[f"{name}.bias"], training=False, eps=BN_EPS)


def plain_involution(p: Params, name: str, x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    n, c, h, w = x.shape
    groups = c // GROUP_CHANNELS
    source = F.avg_pool2d(x, stride, stride) if stride > 1 else x
    reduced = F.relu(plain_bn(p, f"{name}.conv1.bn", F.conv2d(source, p[f"{name}.conv1.conv.weight"])))
    kernels = F.conv2d(reduced, p[f"{name}.conv2.conv.weight"], p[f"{name}.conv2.conv.bias"])
    ho, wo = h // stride, w // stride
    assert kernels.shape == (n, kernel * kernel * groups, ho, wo)
    patches = F.unfold(x, kernel, padding=(kernel - 1) // 2, stride=stride)  # (n, c*K*K, ho*wo)
    patches = patches.view(n, groups, GROUP_CHANNELS, kernel * kernel, ho, wo)
    out = (patches * kernels.view(n, groups, 1, kernel * kernel, ho, wo)).sum(dim=3)
    return out.reshape(n, c, ho, wo)


def plain_bottleneck(p: Params, name: str, x: torch.Tensor, stride: int, projection: bool) -> torch.Tensor:
    out = F.relu(plain_bn(p, f"{name}.bn1", F.conv2d(x, p[f"{name}.conv1.weight"])))
    out = F.relu(plain_bn(p, f"{name}.bn2", plain_involution(p, f"{name}.conv2", out, 7, stride)))
    out = plain_bn(p, f"{name}.bn3", F.conv2d(out, p[f"{name}.conv3.weight"]))
    shortcut = x
    if projection:
        shortcut = plain_bn(p, f"{name}.downsample.1", F.conv2d(x, p[f"{name}.downsample.0.weight"], stride=stride))
    return F.relu(out + shortcut)


def plain_rednet(
    state: dict[str, torch.Tensor],
    depth: int,
    x: torch.Tensor,
    stem_kernel: int = 3,
    calibrate: np.random.RandomState | None = None,
) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """(outputs of the four stages, logits or None when the state has no ``fc``).

    With ``calibrate``, every batch norm's running statistics in ``state`` are first set
    from this batch (see `calibrate`)."""
    p = Params(state, calibrate)
    x = F.relu(plain_bn(p, "stem.0.bn", F.conv2d(x, p["stem.0.conv.weight"], stride=2, padding=1)))
    x = F.relu(plain_bn(p, "stem.2", plain_involution(p, "stem.1", x, stem_kernel, 1)))
    x = F.relu(plain_bn(p, "stem.4.bn", F.conv2d(x, p["stem.4.conv.weight"], padding=1)))
    x = F.max_pool2d(x, 3, stride=2, padding=1)
    stages = []
    for stage, blocks in enumerate(PLAIN_BLOCKS[depth]):
        for block in range(blocks):
            stride = 2 if stage > 0 and block == 0 else 1
            x = plain_bottleneck(p, f"layer{stage + 1}.{block}", x, stride, projection=block == 0)
        stages.append(x)
    logits = None
    if "fc.weight" in p:
        logits = F.linear(x.mean(dim=(2, 3)), p["fc.weight"], p["fc.bias"])
    assert not p.unread(), f"parameters the plain RedNet does not use: {sorted(p.unread())}"
    return stages, logits


def randomised_state(shapes: dict[str, torch.Size], seed: int) -> dict[str, torch.Tensor]:
    """float64 weights and BN affine parameters from numpy's legacy RandomState (its streams are
    frozen across versions); BN running statistics are left to `calibrate`."""
    rng = np.random.RandomState(seed)
    state = {}
    for key in sorted(shapes):
        shape = tuple(shapes[key])
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(0)
            continue
        if key.endswith(("running_mean", "running_var")):
            continue
        if key.endswith("bias"):
            values = rng.normal(0.0, 0.2, shape)
        elif key.endswith("bn3.weight"):  # a residual branch's last norm: small, as training leaves it
            values = rng.uniform(0.1, 0.5, shape)
        elif len(shape) == 1:  # norm weights
            values = rng.uniform(0.5, 1.5, shape)
        else:  # conv / linear weights, scaled by fan-in
            values = rng.normal(0.0, 1.0, shape) / np.sqrt(np.prod(shape[1:]))
            if key.endswith("conv2.conv.weight"):  # involution kernels: K*K*G outputs from 4G inputs
                values /= np.sqrt(shape[0] * 4 / shape[1])  # unit gain over the K*K taps
        state[key] = torch.from_numpy(values)
    return state


def calibrate(state: dict[str, torch.Tensor], depth: int, x: torch.Tensor, stem_kernel: int, seed: int) -> None:
    """Set every BN's running statistics to those of ``x`` at that layer, perturbed at random
    (mean by 0.1 std, variance by a factor 0.8-1.25), so eval-mode BN is no identity and no
    exact normalisation. Arbitrary statistics do not work: an involution is quadratic in its
    input, so with statistics unrelated to the activations they grow double-exponentially
    with depth (to inf/nan in RedNet-101); a trained network's statistics fit its activations."""
    plain_rednet(state, depth, x, stem_kernel, calibrate=np.random.RandomState(seed))


def assert_close_relative(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    assert actual.shape == expected.shape, what
    scale = expected.abs().max().item()
    error = (actual - expected).abs().max().item()
    assert scale > 0 and error <= 1e-10 * scale, f"{what}: max error {error:.3e} at scale {scale:.3e}"


def _model(depth: int, x: torch.Tensor, **kwargs) -> tuple[RedNet, dict[str, torch.Tensor]]:
    model = RedNet(depth, **kwargs).double().eval()
    state = randomised_state({k: v.shape for k, v in model.state_dict().items()}, seed=depth)
    calibrate(state, depth, x, kwargs.get("stem_kernel_size", 3), seed=depth)
    model.load_state_dict(state, strict=True)
    return model, state


# RedNet-26 stays in the fast loop (-m "not slow"); the deeper ones (several seconds each) differ in block counts
@pytest.mark.parametrize("depth", [26, *(pytest.param(d, marks=pytest.mark.slow) for d in sorted(PLAIN_BLOCKS) if d != 26)])
def test_classifier_matches_plain_rednet(depth):
    x = torch.from_numpy(np.random.RandomState(100 + depth).normal(size=(2, 3, 64, 96)))
    model, state = _model(depth, x, num_classes=7)
    with torch.no_grad():
        logits = model(x)
        _, expected = plain_rednet(state, depth, x)
    assert_close_relative(logits, expected, f"RedNet-{depth} logits")


@pytest.mark.parametrize("depth,stem_kernel", [
    (26, 7), *(pytest.param(d, k, marks=pytest.mark.slow) for d, k in [(38, 3), (50, 7), (101, 7)])
])
def test_backbone_stages_match_plain_rednet(depth, stem_kernel):
    x = torch.from_numpy(np.random.RandomState(200 + depth).normal(size=(2, 3, 96, 64)))
    model, state = _model(depth, x, out_indices=(0, 1, 2, 3), stem_kernel_size=stem_kernel)
    with torch.no_grad():
        outs = model(x)
        expected, logits = plain_rednet(state, depth, x, stem_kernel=stem_kernel)
    assert logits is None and len(outs) == 4
    for index, (out, ref) in enumerate(zip(outs, expected)):
        assert_close_relative(out, ref, f"RedNet-{depth} stage {index}")
    assert [tuple(o.shape[1:]) for o in outs] == [(256, 24, 16), (512, 12, 8), (1024, 6, 4), (2048, 3, 2)]


# Known answer: RedNet-26 with 10 classes; weights from randomised_state(shapes, seed=0) (keys in
# sorted order), input np.random.RandomState(1).normal(size=(1, 3, 64, 64)), BN statistics from
# calibrate(state, 26, x, 3, seed=0); float64. Computed once with plain_rednet (values rounded
# to 12 significant digits) and cross-checked against RedNet, which agreed to 7e-15 relative.
# Guards against both implementations drifting together (a shared mistake made later).
KNOWN_LOGITS = [
    0.231033471695, -0.741215166202, 0.334243414676, -0.0191340635873, -0.251702796962,
    -0.343295724246, 0.575590007498, 0.803232792844, -0.245599851506, 0.504485939612,
]
KNOWN_SUM = 0.847638023822


def _known_inputs() -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    shapes = {k: v.shape for k, v in RedNet(26, num_classes=10).state_dict().items()}
    x = torch.from_numpy(np.random.RandomState(1).normal(size=(1, 3, 64, 64)))
    state = randomised_state(shapes, seed=0)
    calibrate(state, 26, x, 3, seed=0)
    return state, x


def test_known_answer_rednet26():
    state, x = _known_inputs()
    model = RedNet(26, num_classes=10).double().eval()
    model.load_state_dict(state, strict=True)
    with torch.no_grad():
        ours = model(x)[0]
    _, plain = plain_rednet(state, 26, x)
    expected = torch.tensor(KNOWN_LOGITS, dtype=torch.float64)
    torch.testing.assert_close(plain[0], expected, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(ours, expected, rtol=1e-9, atol=1e-11)
    assert ours.sum().item() == pytest.approx(KNOWN_SUM, rel=1e-9)
