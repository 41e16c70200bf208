"""RedNet: parameter counts against the paper, the official mmcls key layout,
output shapes for every depth and the options detection/segmentation need."""
from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from involution_ops import Involution, RedNet

PAPER_PARAMS_M = {26: 9.23, 38: 12.39, 50: 15.54, 101: 25.65, 152: 33.99}
BLOCKS = {26: (1, 2, 4, 1), 38: (2, 3, 5, 2), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


def official_shapes(depth: int, stem_kernel: int = 3, num_classes: int = 1000) -> dict[str, tuple]:
    """Key -> shape of the official mmcls RedNet (``backbone.`` stripped, ``head.fc`` -> ``fc``),
    written out from the paper's architecture description."""
    shapes: dict[str, tuple] = {}

    def bn(prefix, c):
        shapes.update({f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
                       f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()})

    def inv(prefix, c, k):
        shapes[f"{prefix}.conv1.conv.weight"] = (c // 4, c, 1, 1)
        bn(f"{prefix}.conv1.bn", c // 4)
        shapes[f"{prefix}.conv2.conv.weight"] = (k * k * c // 16, c // 4, 1, 1)
        shapes[f"{prefix}.conv2.conv.bias"] = (k * k * c // 16,)

    shapes["stem.0.conv.weight"] = (32, 3, 3, 3)
    bn("stem.0.bn", 32)
    inv("stem.1", 32, stem_kernel)
    bn("stem.2", 32)
    shapes["stem.4.conv.weight"] = (64, 32, 3, 3)
    bn("stem.4.bn", 64)
    cin = 64
    for stage, n in enumerate(BLOCKS[depth]):
        cout = 256 * 2**stage
        mid = cout // 4
        for b in range(n):
            p = f"layer{stage + 1}.{b}"
            shapes[f"{p}.conv1.weight"] = (mid, cin if b == 0 else cout, 1, 1)
            bn(f"{p}.bn1", mid)
            inv(f"{p}.conv2", mid, 7)
            bn(f"{p}.bn2", mid)
            shapes[f"{p}.conv3.weight"] = (cout, mid, 1, 1)
            bn(f"{p}.bn3", cout)
            if b == 0:
                shapes[f"{p}.downsample.0.weight"] = (cout, cin, 1, 1)
                bn(f"{p}.downsample.1", cout)
        cin = cout
    if num_classes:
        shapes["fc.weight"] = (num_classes, 2048)
        shapes["fc.bias"] = (num_classes,)
    return shapes


def param_count(shapes: dict[str, tuple]) -> int:
    learned = (k for k in shapes if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    return sum(torch.Size(shapes[k]).numel() for k in learned)


@pytest.mark.parametrize("depth", sorted(BLOCKS))
def test_official_key_layout_and_parameter_count(depth):
    model = RedNet(depth, num_classes=1000)
    expected = official_shapes(depth)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected
    total = sum(p.numel() for p in model.parameters())
    assert total == param_count(expected)
    # The paper's figures: exact to two decimals except RedNet-152 (33.985 M with the
    # ImageNet checkpoints' 3x3 stem involution; the paper's 33.99 is what a 7x7 stem gives).
    assert abs(total / 1e6 - PAPER_PARAMS_M[depth]) < 0.006
    if depth != 152:
        assert round(total / 1e6, 2) == PAPER_PARAMS_M[depth]


def test_stem_kernel_seven_reproduces_every_published_count_to_two_decimals():
    for depth, paper in PAPER_PARAMS_M.items():
        total = param_count(official_shapes(depth, stem_kernel=7))
        assert round(total / 1e6, 2) == paper
    model = RedNet(152, num_classes=1000, stem_kernel_size=7)
    assert sum(p.numel() for p in model.parameters()) == param_count(official_shapes(152, stem_kernel=7))


@pytest.mark.parametrize("depth", [d if d <= 50 else pytest.param(d, marks=pytest.mark.slow) for d in sorted(BLOCKS)])
def test_stage_output_shapes(depth):
    model = RedNet(depth, out_indices=(0, 1, 2, 3)).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 33, 47))
    assert [tuple(o.shape) for o in outs] == [(1, 256, 9, 12), (1, 512, 5, 6), (1, 1024, 3, 3), (1, 2048, 2, 2)]


def test_classifier_head_and_selected_outputs():
    model = RedNet(26, num_classes=10).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    backbone = RedNet(26, out_indices=(1, 3)).eval()
    assert backbone.out_channels == [512, 2048]
    with torch.no_grad():
        outs = backbone(torch.randn(1, 3, 32, 32))
    assert isinstance(outs, tuple) and [o.shape[1] for o in outs] == [512, 2048]


def test_train_and_eval_return_the_model():
    model = RedNet(26)
    assert model.eval() is model and model.train() is model and model.train(False) is model


@pytest.mark.parametrize("frozen", [-1, 0, 1, 4])
def test_frozen_stages(frozen):
    model = RedNet(26, frozen_stages=frozen).train()
    frozen_parts = ([model.stem] if frozen >= 0 else []) + [getattr(model, f"layer{i}") for i in range(1, frozen + 1)]
    live_parts = [getattr(model, f"layer{i}") for i in range(max(frozen, 0) + 1, 5)] + ([] if frozen >= 0 else [model.stem])
    for part in frozen_parts:
        assert not any(p.requires_grad for p in part.parameters())
        assert not any(m.training for m in part.modules())
    for part in live_parts:
        assert all(p.requires_grad for p in part.parameters())
        assert all(m.training for m in part.modules())


def test_frozen_stages_do_not_change_in_training():
    torch.manual_seed(0)
    model = RedNet(26, frozen_stages=1).train()
    before = {k: v.clone() for k, v in model.state_dict().items() if k.startswith(("stem", "layer1"))}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model(torch.randn(2, 3, 16, 16))[0].mean().backward()
    optimizer.step()
    for k, v in before.items():
        assert torch.equal(model.state_dict()[k], v), k
    assert model.layer2[0].bn1.num_batches_tracked.item() == 1


def test_norm_eval_freezes_batch_norm_statistics():
    model = RedNet(26, norm_eval=True).train()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns)
    assert model.layer4[0].conv1.training
    stats = bns[5].running_mean.clone()
    with torch.no_grad():
        model(torch.randn(2, 3, 16, 16))
    assert torch.equal(bns[5].running_mean, stats)


def test_gradient_checkpointing_gives_the_same_outputs_and_gradients():
    torch.manual_seed(0)
    plain = RedNet(26, out_indices=(2, 3), zero_init_residual=False)
    checkpointed = RedNet(26, out_indices=(2, 3), zero_init_residual=False, with_cp=True)
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 16, 16)
    for model in (plain, checkpointed):
        model.train()
        sum(o.square().mean() for o in model(x)).backward()
    for (name, p), q in zip(plain.named_parameters(), checkpointed.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_zero_init_residual():
    zero = RedNet(26)
    assert all(b.bn3.weight.abs().sum() == 0 for stage in zero.stages for b in stage)
    ones = RedNet(26, zero_init_residual=False)
    assert all(torch.all(b.bn3.weight == 1) for stage in ones.stages for b in stage)


def test_strides_and_dilations_reach_the_involutions():
    model = RedNet(26, strides=(1, 2, 2, 1), dilations=(1, 1, 1, 2), out_indices=(2, 3)).eval()
    inv = model.layer4[0].conv2
    assert isinstance(inv, Involution) and inv.dilation == 2 and inv.stride == 1 and inv.padding == 6
    with torch.no_grad():
        c4, c5 = model(torch.randn(1, 3, 64, 64))
    assert c4.shape[-2:] == c5.shape[-2:] == (4, 4)


def test_group_norm_keeps_key_names_and_involutions_keep_batch_norm():
    # GN(32) could not normalise the 8-channel norm inside the stem involution: as in
    # the official code, norm_layer sets the ResNet norms and the involutions keep BN.
    model = RedNet(26, norm_layer=functools.partial(nn.GroupNorm, 32), out_indices=(3,))
    stats = ("running_mean", "running_var", "num_batches_tracked")
    without_stats = lambda keys: {k for k in keys if not k.endswith(stats)}  # noqa: E731
    assert without_stats(model.state_dict()) == without_stats(official_shapes(26, num_classes=0))
    assert isinstance(model.layer1[0].bn2, nn.GroupNorm) and isinstance(model.stem[0].bn, nn.GroupNorm)
    assert isinstance(model.layer1[0].conv2.conv1.bn, nn.BatchNorm2d) and isinstance(model.stem[2], nn.BatchNorm2d)
    assert model(torch.randn(2, 3, 32, 32))[0].shape == (2, 2048, 1, 1)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(depth=34), "depth=34"),
        (dict(depth=50, out_indices=(4,)), "out_indices"),
        (dict(depth=50, frozen_stages=5), "frozen_stages"),
        (dict(depth=50, strides=(1, 2, 2)), "strides"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RedNet(**kwargs)


def test_sync_batch_norm_keeps_keys_and_runs_in_one_process():
    model = RedNet(26, norm_layer=nn.SyncBatchNorm, norm_eval=True)
    assert isinstance(model.layer1[0].bn2, nn.SyncBatchNorm)
    assert isinstance(model.layer1[0].conv2.conv1.bn, nn.BatchNorm2d)  # official: involutions keep BN
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == official_shapes(26, num_classes=0)
    assert not any(m.training for m in model.train().modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))
    with torch.no_grad():
        assert model(torch.randn(2, 3, 16, 16))[0].shape == (2, 2048, 1, 1)
