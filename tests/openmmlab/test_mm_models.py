"""OpenMMLab adapters and model-part configs.

Every model config builds through mmdet's / mmseg's registries and runs in loss
and predict mode on a tiny input; the involution neck and heads compute what the
paper defines (checked against the reference operator composed by hand); their
parameter names and shapes are the official ones (written out here from the
official ``FPN_involution``, ``RPNHead_involution`` and ``FCNMaskHead_involution``);
importing the adapters writes nothing into site-packages.
"""
from __future__ import annotations

import importlib
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from support import REPO_ROOT as ROOT, require

require.module("mmdet")
require.module("mmseg")

from mmengine.config import Config  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmengine.utils import import_modules_from_strings  # noqa: E402

from involution_ops.rednet import RedNet as TorchRedNet  # noqa: E402
from involution_ops.modules import Involution  # noqa: E402
from involution_ops.ops.reference import involution_reference  # noqa: E402

DET_DIR = ROOT / "det_configs" / "_base_" / "models"
SEG_DIR = ROOT / "seg_configs" / "_base_" / "models"
DET_NAMES = [
    "retinanet_red50_fpn", "retinanet_red50_neck_fpn",
    "faster_rcnn_red50_fpn", "faster_rcnn_red50_neck_fpn", "faster_rcnn_red50_neck_fpn_head",
    "mask_rcnn_red50_fpn", "mask_rcnn_red50_neck_fpn", "mask_rcnn_red50_neck_fpn_head",
    "retinanet_r50_fpn", "faster_rcnn_r50_fpn", "mask_rcnn_r50_fpn",
]  # fmt: skip
SEG_NAMES = ["fpn_red50", "fpn_red50_neck", "upernet_red50", "fpn_r50", "upernet_r50"]
K = 7  # the paper's involution kernel in neck and heads
SIZE = 32  # tiny images: stride-32 features are 1x1, stride 64/128 levels too


def load_cfg(path: Path) -> Config:
    cfg = Config.fromfile(str(path))
    import_modules_from_strings(**cfg.custom_imports)
    return cfg


# Fewer RoIs than COCO training/testing uses, to keep the CPU tests short; the
# architecture is untouched.
FEWER_ROIS = {
    "model.train_cfg.rpn_proposal.max_per_img": 64,
    "model.train_cfg.rcnn.sampler.num": 32,
    "model.test_cfg.rpn.max_per_img": 32,
    "model.test_cfg.rcnn.max_per_img": 8,
}


def build_det(name: str):
    from mmdet.registry import MODELS

    cfg = load_cfg(DET_DIR / f"{name}.py")
    if "rcnn" in name:
        cfg.merge_from_dict(FEWER_ROIS)
    init_default_scope("mmdet")
    return cfg, MODELS.build(cfg.model)


def build_seg(name: str):
    from mmseg.registry import MODELS

    cfg = load_cfg(SEG_DIR / f"{name}.py")
    cfg.model.data_preprocessor.size = (SIZE, SIZE)  # the runnable configs set the crop size
    init_default_scope("mmseg")
    return cfg, MODELS.build(cfg.model)


def models_registry(scope: str):
    """mmdet's or mmseg's MODELS, with our types registered."""
    importlib.import_module(f"involution_ops.{scope}")
    return importlib.import_module(f"{scope}.registry").MODELS


def trainable_m(model: torch.nn.Module) -> float:
    return sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6


def total_m(model: torch.nn.Module) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


# --- official parameter names (from the official modules' structure) -------------


def official_involution(prefix: str, channels: int, k: int = K) -> dict[str, tuple]:
    """involution(channels, k, 1): conv1 = ConvModule(C, C/4, 1, BN, ReLU), conv2 = ConvModule(C/4, k*k*C/16, 1)."""
    reduced, kernels = channels // 4, k * k * (channels // 16)
    keys = {f"{prefix}conv1.conv.weight": (reduced, channels, 1, 1)}
    for name in ("weight", "bias", "running_mean", "running_var"):
        keys[f"{prefix}conv1.bn.{name}"] = (reduced,)
    keys[f"{prefix}conv1.bn.num_batches_tracked"] = ()
    keys[f"{prefix}conv2.conv.weight"] = (kernels, reduced, 1, 1)
    keys[f"{prefix}conv2.conv.bias"] = (kernels,)
    return keys


def official_fpn_involution(in_channels, start_level, extra_on_input, num_outs, out=256) -> dict[str, tuple]:
    keys: dict[str, tuple] = {}
    levels = list(range(start_level, len(in_channels)))
    for i, level in enumerate(levels):
        keys[f"lateral_convs.{i}.conv.weight"] = (out, in_channels[level], 1, 1)
        keys[f"lateral_convs.{i}.conv.bias"] = (out,)
        keys.update(official_involution(f"fpn_convs.{i}.", out))
    if extra_on_input:
        for j in range(len(levels), num_outs):
            source = in_channels[-1] if j == len(levels) else out
            keys[f"fpn_convs.{j}.conv.weight"] = (out, source, 3, 3)
            keys[f"fpn_convs.{j}.conv.bias"] = (out,)
    return keys


def shapes(module: torch.nn.Module) -> dict[str, tuple]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


# --- registration -------------------------------------------------------------


def test_import_registers_and_writes_nothing_into_site_packages():
    site = Path(sysconfig.get_paths()["purelib"])
    watched = [site / name for name in ("mmdet", "mmseg", "mmengine", "mmcv")]

    def snapshot() -> dict[str, tuple]:
        files = {str(p): (p.stat().st_mtime_ns, p.stat().st_size) for p in site.iterdir()}
        for top in watched:
            for dirpath, _, names in os.walk(top):
                for n in names:
                    p = os.path.join(dirpath, n)
                    files[p] = (os.stat(p).st_mtime_ns, os.stat(p).st_size)
        return files

    probe = (
        "from mmdet.registry import MODELS as D\n"
        "from mmseg.registry import MODELS as S\n"
        "names = ['RedNet', 'InvolutionFPN', 'InvolutionRPNHead', 'InvolutionFCNMaskHead']\n"
        "assert not any(D.get(n) for n in names) and not any(S.get(n) for n in names)\n"
        "import involution_ops.mmdet, involution_ops.mmseg\n"
        "assert all(D.get(n).__module__.startswith('involution_ops.') for n in names), names\n"
        "assert S.get('RedNet') is D.get('RedNet') and S.get('InvolutionFPN').__module__ == 'involution_ops.openmmlab.mmseg'\n"
        "print('ok')\n"
    )
    before = snapshot()
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]
    after = snapshot()
    changed = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
    assert changed == []


def test_config_files_are_the_contracted_set():
    assert sorted(p.stem for p in DET_DIR.glob("*.py")) == sorted(DET_NAMES)
    assert sorted(p.stem for p in SEG_DIR.glob("*.py")) == sorted(SEG_NAMES)


# --- every config builds and runs -------------------------------------------------

# (trainable, all) parameters in millions: the paper's RetinaNet figure (27.8 M trainable,
# rounded) and the counts of complexity-convention.md (27.95 M; FPN 18.46 M; UPerNet 56.38 M).
KNOWN_PARAMS = {
    "retinanet_red50_fpn": ((27.8, 0.05), (27.95, 0.01)),
    "fpn_red50": ((18.46, 0.01), (18.46, 0.01)),
    "upernet_red50": ((56.38, 0.01), (56.38, 0.01)),
}


# backward (every trainable parameter gets a finite gradient) once, on the model with
# involutions in backbone, neck, RPN head and mask head: CPU backward is the slow part.
BACKWARD = {"mask_rcnn_red50_neck_fpn_head"}


def _check_known_params(name: str, model: torch.nn.Module) -> None:
    if name in KNOWN_PARAMS:
        (trainable, tol_t), (total, tol_a) = KNOWN_PARAMS[name]
        assert trainable_m(model) == pytest.approx(trainable, abs=tol_t)
        assert total_m(model) == pytest.approx(total, abs=tol_a)


def _check_backward(model: torch.nn.Module, loss: torch.Tensor) -> None:
    """Every trainable parameter receives a finite gradient."""
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", DET_NAMES)
def test_det_config_builds_and_runs(name):
    from mmdet.testing import demo_mm_inputs

    cfg, model = build_det(name)
    is_red = "red50" in name
    assert type(model.backbone).__name__ == ("RedNet" if is_red else "ResNet")
    assert model.backbone.frozen_stages == 1 and model.backbone.norm_eval
    assert type(model.neck).__name__ == ("InvolutionFPN" if "neck" in name else "FPN")
    if "_head" in name:
        assert type(model.rpn_head).__name__ == "InvolutionRPNHead"
        if name.startswith("mask"):
            assert type(model.roi_head.mask_head).__name__ == "InvolutionFCNMaskHead"
    _check_known_params(name, model)

    torch.manual_seed(0)
    # batch 2: the RPN involution normalises its 1x1 P6 map, BN needs > 1 value per channel
    packed = demo_mm_inputs(2, [(3, SIZE, SIZE)] * 2, num_items=[2, 1], num_classes=80, with_mask=name.startswith("mask"))
    model.train()
    data = model.data_preprocessor(packed, True)
    losses = model(**data, mode="loss")
    parts = [v if isinstance(v, list) else [v] for k, v in losses.items() if "loss" in k]
    total = sum(t.sum() for part in parts for t in part)
    assert torch.isfinite(total)
    if name in BACKWARD:
        _check_backward(model, total)

    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(packed, False)
        result = model(**data, mode="predict")[0]
    assert result.pred_instances.bboxes.shape[1] == 4
    if name.startswith("mask"):
        assert result.pred_instances.masks.shape[1:] == (SIZE, SIZE)


@pytest.mark.parametrize("name", SEG_NAMES)
def test_seg_config_builds_and_runs(name):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    cfg, model = build_seg(name)
    assert type(model.backbone).__name__ == ("RedNet" if "red50" in name else "ResNetV1c")
    if "red50" in name:
        assert model.backbone.norm_cfg["type"] == "SyncBN" and not model.backbone.norm_eval
        assert isinstance(model.backbone.layer1[0].bn1, torch.nn.SyncBatchNorm)
    if name.startswith("fpn"):
        assert type(model.neck).__name__ == ("InvolutionFPN" if name.endswith("neck") else "FPN")
    _check_known_params(name, model)

    torch.manual_seed(0)
    samples = []
    for _ in range(2):  # batch 2: the 1x1 pyramid pooling of UPerNet needs > 1 value per channel
        sample = SegDataSample(gt_sem_seg=PixelData(data=torch.randint(0, 19, (1, SIZE, SIZE))))
        sample.set_metainfo(dict(img_shape=(SIZE, SIZE), ori_shape=(SIZE, SIZE)))
        samples.append(sample)
    packed = dict(inputs=[torch.randint(0, 256, (3, SIZE, SIZE), dtype=torch.uint8) for _ in samples], data_samples=samples)
    model.train()
    losses = model(**model.data_preprocessor(packed, True), mode="loss")
    total = sum(v for k, v in losses.items() if k.endswith("loss_ce"))
    assert torch.isfinite(total)
    if name in BACKWARD:
        _check_backward(model, total)

    model.eval()
    with torch.no_grad():
        results = model(**model.data_preprocessor(packed, False), mode="predict")
    assert results[0].pred_sem_seg.data.shape == (1, SIZE, SIZE)
    assert int(results[0].pred_sem_seg.data.max()) < 19


# --- the involution neck and heads: semantics, names, init --------------------------


# The operator's backend sums the 49 taps in another order than the reference: float32
# agreement to 1e-4 (relative, absolute near zero); wrong wiring (a missing lateral, a
# conv instead of an involution, ...) is off by whole units on these outputs.
def reference_involution(module: Involution, x: torch.Tensor) -> torch.Tensor:
    return involution_reference(x, module.kernel(x), 1, (module.kernel_size - 1) // 2, 1)


@pytest.mark.parametrize("scope", ["mmdet", "mmseg"])
@pytest.mark.parametrize("retina", [True, False])
def test_involution_fpn_matches_paper_and_official_names(scope, retina):
    registry = models_registry(scope)
    in_channels = [256, 512, 1024, 2048]
    kwargs = dict(start_level=1, add_extra_convs="on_input", num_outs=5) if retina else dict(num_outs=5)
    if scope == "mmseg" and not retina:
        kwargs = dict(num_outs=4)  # the segmentation neck: no extra level
    neck = registry.build(dict(type="InvolutionFPN", in_channels=in_channels, out_channels=256, **kwargs)).eval()

    start = kwargs.get("start_level", 0)
    expected = official_fpn_involution(in_channels, start, retina, kwargs["num_outs"])
    assert shapes(neck) == expected
    for i in range(len(in_channels) - start):
        assert isinstance(neck.fpn_convs[i], Involution) and neck.fpn_convs[i].kernel_size == K

    torch.manual_seed(0)
    feats = [torch.randn(1, c, 16 // 2**i, 16 // 2**i) for i, c in enumerate(in_channels)]
    with torch.no_grad():
        outs = neck(feats)
        laterals = [conv(feats[start + i]) for i, conv in enumerate(neck.lateral_convs)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], size=laterals[i - 1].shape[2:])
        want = [reference_involution(neck.fpn_convs[i], lat) for i, lat in enumerate(laterals)]
        if retina:
            want.append(neck.fpn_convs[len(laterals)](feats[-1]))
            want.append(neck.fpn_convs[len(laterals) + 1](want[-1]))
        else:
            want += [F.max_pool2d(want[-1], 1, stride=2) for _ in range(kwargs["num_outs"] - len(laterals))]
    assert len(outs) == kwargs["num_outs"]
    for got, ref in zip(outs, want):
        assert got.shape[1] == 256
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


# How the official runs' necks were effectively initialised, per model config:
# - detection (mmdet 2.x): TwoStageDetector/SingleStageDetector.init_weights called the neck's
#   init_weights, and the official FPN_involution.init_weights, as mmdet 2.x's FPN, drew every
#   nn.Conv2d of the neck Xavier-uniform with zero bias, the involutions' internal convs included.
#   mmdet 3.x's FPN init_cfg (Xavier, uniform, layer Conv2d) does the same: nothing to change.
# - segmentation (mmseg 0.x, the official runs on 0.11 and mmseg's own R-50 FPN): the
#   EncoderDecoder.init_weights initialised backbone and decode heads only, never the neck, so its
#   convs kept what mmcv 1.x's ConvModule.__init__ gave them (it calls its own init_weights):
#   kaiming_init, i.e. Kaiming normal, mode fan_out, ReLU gain, zero bias; the involutions' convs
#   were ConvModules too. mmseg 1.x would Xavier them; our configs set the neck's init_cfg to Kaiming.
NECK_INIT = {
    "retinanet_red50_neck_fpn": "xavier_uniform",
    "faster_rcnn_red50_neck_fpn": "xavier_uniform",
    "faster_rcnn_red50_fpn": "xavier_uniform",
    "fpn_red50_neck": "kaiming_normal_fan_out",
    "fpn_red50": "kaiming_normal_fan_out",
    "fpn_r50": "kaiming_normal_fan_out",
}


def check_init(name: str, conv: torch.nn.Conv2d, law: str) -> None:
    weight = conv.weight.detach().flatten()
    receptive = conv.kernel_size[0] * conv.kernel_size[1]
    fan_in, fan_out = conv.in_channels * receptive, conv.out_channels * receptive
    if conv.bias is not None:
        assert torch.count_nonzero(conv.bias) == 0, name
    if law == "xavier_uniform":
        bound = (6 / (fan_in + fan_out)) ** 0.5
        assert float(weight.abs().max()) <= bound, name
        assert float(weight.std()) == pytest.approx(bound / 3**0.5, rel=0.05), name
    else:
        std = (2 / fan_out) ** 0.5
        assert float(weight.std()) == pytest.approx(std, rel=0.05), name
        # a normal law puts 4.55% beyond 2 std; a uniform one with this std puts none beyond 1.73
        assert 0.035 < float((weight.abs() > 2 * std).float().mean()) < 0.056, name


@pytest.mark.parametrize("name", sorted(NECK_INIT))
def test_neck_init_is_what_the_official_runs_had(name):
    seg = name in SEG_NAMES
    scope = "mmseg" if seg else "mmdet"
    cfg = load_cfg((SEG_DIR if seg else DET_DIR) / f"{name}.py")
    cfg.model.pop("pretrained", None)  # no download: the backbone's init is not checked here
    cfg.model.backbone.init_cfg = None
    init_default_scope(scope)
    model = models_registry(scope).build(cfg.model)
    torch.manual_seed(0)
    model.init_weights()  # what mmengine's Runner calls before training

    convs = {n: m for n, m in model.neck.named_modules() if isinstance(m, torch.nn.Conv2d)}
    assert len(convs) >= 8
    if "neck" in name:  # the involutions' internal convs follow the same law
        assert {"fpn_convs.0.conv1.conv", "fpn_convs.0.conv2.conv"} <= set(convs)
    for conv_name, conv in convs.items():
        check_init(conv_name, conv, NECK_INIT[name])


def test_involution_rpn_head_matches_paper_and_official_names():
    from mmdet.registry import MODELS

    import involution_ops.mmdet  # noqa: F401

    _, model = build_det("faster_rcnn_red50_neck_fpn_head")
    head = model.rpn_head.eval()
    expected = official_involution("rpn_conv.", 256)
    expected.update({"rpn_cls.weight": (3, 256, 1, 1), "rpn_cls.bias": (3,)})
    expected.update({"rpn_reg.weight": (12, 256, 1, 1), "rpn_reg.bias": (12,)})
    assert shapes(head) == expected

    torch.manual_seed(0)
    x = torch.randn(2, 256, 9, 11)
    with torch.no_grad():
        cls, reg = head.forward_single(x)
        hidden = F.relu(reference_involution(head.rpn_conv, x))
    torch.testing.assert_close(cls, head.rpn_cls(hidden), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(reg, head.rpn_reg(hidden), rtol=1e-4, atol=1e-4)
    assert cls.shape == (2, 3, 9, 11) and reg.shape == (2, 12, 9, 11)

    # the official init: involution convs Kaiming-normal (fan_out), predictors N(0, 0.01)
    head.init_weights()
    assert head.rpn_cls.weight.std().item() == pytest.approx(0.01, rel=0.25)
    assert head.rpn_conv.conv1.conv.weight.std().item() == pytest.approx((2 / 64) ** 0.5, rel=0.1)
    assert head.rpn_conv.conv2.conv.weight.std().item() == pytest.approx((2 / 784) ** 0.5, rel=0.1)
    assert float(head.rpn_conv.conv2.conv.bias.abs().max()) == 0.0

    with pytest.raises(ValueError, match="feat_channels=128 must equal in_channels=256"):
        anchors = dict(type="AnchorGenerator", scales=[8], ratios=[1.0], strides=[4])
        MODELS.build(dict(type="InvolutionRPNHead", in_channels=256, feat_channels=128, anchor_generator=anchors))


def test_involution_mask_head_matches_paper_and_official_names():
    from mmdet.registry import MODELS

    _, model = build_det("mask_rcnn_red50_neck_fpn_head")
    head = model.roi_head.mask_head.eval()
    expected: dict[str, tuple] = {}
    for i in range(4):
        expected.update(official_involution(f"convs.{i}.0.", 256))
    expected.update({"upsample.weight": (256, 256, 2, 2), "upsample.bias": (256,)})
    expected.update({"conv_logits.weight": (80, 256, 1, 1), "conv_logits.bias": (80,)})
    assert shapes(head) == expected

    torch.manual_seed(0)
    rois = torch.randn(3, 256, 14, 14)
    with torch.no_grad():
        logits = head(rois)
        x = rois
        for block in head.convs:
            x = F.relu(reference_involution(block[0], x))
        want = head.conv_logits(F.relu(head.upsample(x)))
    assert logits.shape == (3, 80, 28, 28)
    torch.testing.assert_close(logits, want, rtol=1e-4, atol=1e-4)

    head.init_weights()
    assert head.convs[0][0].conv1.conv.weight.std().item() == pytest.approx((2 / 64) ** 0.5, rel=0.1)

    with pytest.raises(ValueError, match="conv_out_channels=128 must equal in_channels=256"):
        MODELS.build(dict(type="InvolutionFCNMaskHead", in_channels=256, conv_out_channels=128))


# --- the mm RedNet backbone ---------------------------------------------------------


def build_backbone(scope: str = "mmdet", **kwargs):
    registry = models_registry(scope)
    return registry.build(dict(type="RedNet", depth=kwargs.pop("depth", 26), **kwargs))


def test_rednet_keys_are_the_torch_models_and_official_det_stem():
    backbone = build_backbone(depth=50)
    torch_model = TorchRedNet(50, stem_kernel_size=7)
    assert shapes(backbone) == shapes(torch_model)
    # official detection/segmentation stem: involution(32, 7, 1) -> 7*7*2 generated taps
    assert shapes(backbone)["stem.1.conv2.conv.weight"] == (98, 8, 1, 1)
    outs = backbone.eval()(torch.randn(1, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(1, 256, 16, 16), (1, 512, 8, 8), (1, 1024, 4, 4), (1, 2048, 2, 2)]


def test_rednet_freezing_norm_eval_and_norm_types():
    backbone = build_backbone(frozen_stages=1, norm_eval=True, out_indices=(3,)).train()
    frozen = [p.requires_grad for m in (backbone.stem, backbone.layer1) for p in m.parameters()]
    assert frozen and not any(frozen)
    assert all(p.requires_grad for p in backbone.layer2.parameters())
    assert not backbone.stem.training and not backbone.layer1.training
    assert all(not m.training for m in backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))

    sync = build_backbone("mmseg", norm_cfg=dict(type="SyncBN", requires_grad=True)).train()
    assert isinstance(sync.layer2[0].bn2, torch.nn.SyncBatchNorm)
    assert len(sync(torch.randn(2, 3, 32, 32))) == 4  # single process: plain batch statistics

    # norm_cfg sets the ResNet norms; involution internals and the norm after the stem
    # involution stay plain BN as in the official backbone (8 channels: no GN(32) there)
    gn = build_backbone(norm_cfg=dict(type="GN", num_groups=32, requires_grad=True))
    resnet_norms = [gn.stem[0].bn, gn.stem[4].bn, gn.layer3[0].bn1, gn.layer3[0].bn2, gn.layer3[0].bn3,
                    gn.layer3[0].downsample[1]]
    assert all(isinstance(m, torch.nn.GroupNorm) and m.num_groups == 32 for m in resnet_norms)
    assert type(gn.stem[2]) is torch.nn.BatchNorm2d and type(gn.layer3[0].conv2.conv1.bn) is torch.nn.BatchNorm2d
    assert not any(isinstance(m, torch.nn.GroupNorm) for m in gn.stem[1].modules())
    assert float(gn.layer3[0].bn3.weight.abs().sum()) == 0.0  # zero_init_residual on the new norms
    assert len(gn.train()(torch.randn(2, 3, 32, 32))) == 4
    assert type(sync.layer2[0].conv2.conv1.bn) is torch.nn.BatchNorm2d

    no_grad_norm = build_backbone(norm_cfg=dict(type="BN", requires_grad=False))
    assert not no_grad_norm.layer4[0].bn3.weight.requires_grad
    assert no_grad_norm.layer4[0].conv2.conv1.bn.weight.requires_grad

    frozen_gn = build_backbone(frozen_stages=2, norm_cfg=dict(type="GN", num_groups=32, requires_grad=True))
    assert not any(p.requires_grad for p in frozen_gn.layer2.parameters())
    assert all(p.requires_grad for p in frozen_gn.layer3.parameters())


def test_rednet_pretrained_init_cfg_loads_through_mmengine(tmp_path):
    source = TorchRedNet(26, stem_kernel_size=7)
    with torch.no_grad():
        for p in source.parameters():
            p.normal_()
    plain, prefixed = tmp_path / "rednet26.pth", tmp_path / "detector.pth"
    torch.save(source.state_dict(), plain)
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in source.state_dict().items()}}, prefixed)

    for init_cfg in (
        dict(type="Pretrained", checkpoint=str(plain)),
        dict(type="Pretrained", checkpoint=str(prefixed), prefix="backbone."),
    ):
        backbone = build_backbone(init_cfg=init_cfg)
        assert not torch.equal(backbone.layer3[0].conv2.conv1.conv.weight, source.layer3[0].conv2.conv1.conv.weight)
        backbone.init_weights()
        for (name, got), want in zip(backbone.state_dict().items(), source.state_dict().values()):
            assert torch.equal(got, want), name

    # an ImageNet checkpoint (3x3 stem involution) into the detection backbone (7x7):
    # everything loads but the stem involution's kernel-generating conv, left as built
    imagenet = TorchRedNet(26, stem_kernel_size=3)
    with torch.no_grad():
        for p in imagenet.parameters():
            p.normal_()
    torch.save(imagenet.state_dict(), tmp_path / "imagenet.pth")
    backbone = build_backbone(init_cfg=dict(type="Pretrained", checkpoint=str(tmp_path / "imagenet.pth")))
    backbone.init_weights()
    got, want = backbone.state_dict(), imagenet.state_dict()
    skipped = sorted(k for k in got if got[k].shape != want[k].shape or not torch.equal(got[k], want[k]))
    assert skipped == ["stem.1.conv2.conv.bias", "stem.1.conv2.conv.weight"]

    with pytest.warns(DeprecationWarning, match="init_cfg"):
        legacy = build_backbone(pretrained=str(plain))
    assert legacy.init_cfg == dict(type="Pretrained", checkpoint=str(plain))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(style="caffe"), "style='pytorch'"),
        (dict(num_stages=3), "num_stages=4"),
        (dict(conv_cfg=dict(type="DCN")), "conv_cfg=None"),
        (dict(pretrained="a.pth", init_cfg=dict(type="Pretrained", checkpoint="a.pth")), "not both"),
        (dict(norm_cfg="BN"), "norm_cfg must be a dict"),
    ],
)
def test_rednet_rejects_what_it_does_not_have(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_backbone(**kwargs)
