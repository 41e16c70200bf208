"""Complexity counts: the paper's 2021 convention and the full count.

Unit tests compare against multiply-accumulate counts derived by hand from each
layer's shape. Row tests compare `make flops` rows with the values measured
independently in /tmp/team/complexity-convention.md (kept here as constants).
"""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from involution_ops import Involution, RedNet
from involution_ops.complexity import count_params, measure

ROOT = Path(__file__).resolve().parents[1]


def _macs(model: nn.Module, *shape: int, device: str = "cpu", **kwargs):
    model = model.to(device)
    return measure(model, torch.zeros(*shape, device=device), **kwargs)


# --- the convention, layer by layer (hand-derived) ---------------------------

def test_conv_counts_kernel_taps_and_bias():
    # 8 x 10 x 10 outputs, each 3*3*3 MACs, plus one bias add each.
    c = _macs(nn.Conv2d(3, 8, 3, padding=1), 1, 3, 10, 10)
    assert c.macs_paper == 800 * 27 + 800
    assert c.macs_full == 800 * 27  # torch's counter ignores the bias add


def test_grouped_strided_conv():
    # 6 x 4 x 4 outputs of a 3x3 conv with 2 groups over 4 channels: 2 input channels each.
    c = _macs(nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2, bias=False), 1, 4, 8, 8)
    assert c.macs_paper == c.macs_full == 96 * 9 * 2


def test_linear_ignores_bias():
    c = _macs(nn.Linear(20, 5), 3, 20)
    assert c.macs_paper == c.macs_full == 3 * 20 * 5


@pytest.mark.parametrize("affine, expected", [(True, 1600), (False, 800)])
def test_batchnorm_counts_input_elements_twice_when_affine(affine, expected):
    c = _macs(nn.BatchNorm2d(8, affine=affine), 1, 8, 10, 10)
    assert c.macs_paper == expected
    assert c.macs_full == 0


def test_group_norm_activation_and_pools():
    model = nn.Sequential(nn.GroupNorm(2, 8), nn.ReLU(), nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(1))
    c = _macs(model, 1, 8, 10, 10)
    # GN affine 2*800, ReLU 800 outputs, max pool 800 inputs, adaptive pool 8*5*5 inputs
    assert c.macs_paper == 1600 + 800 + 800 + 200
    assert c.macs_paper_by_type == {"GroupNorm": 1600, "ReLU": 800, "MaxPool2d": 800, "AdaptiveAvgPool2d": 200}


def test_transposed_conv_counts_per_input_position():
    # 8 x 5 x 5 inputs, each scattered through 2*2 taps to 4 channels; bias on 4 x 10 x 10 outputs.
    c = _macs(nn.ConvTranspose2d(8, 4, 2, stride=2), 1, 8, 5, 5)
    assert c.macs_paper == 200 * 16 + 400
    assert c.macs_full == 200 * 16


class WrappedConv(nn.Conv2d):
    """Stands for an OpenMMLab wrapper class (a subclass the 2021 counter did not list)."""


def test_subclasses_are_not_matched_but_fully_counted():
    model = nn.Sequential(nn.Conv2d(3, 4, 1, bias=False), WrappedConv(4, 5, 1, bias=False))
    c = _macs(model, 1, 3, 6, 6)
    assert c.macs_paper == 36 * 4 * 3
    assert c.macs_full == 36 * 4 * 3 + 36 * 5 * 4
    assert _macs(model, 1, 3, 6, 6, match_subclasses=True).macs_paper == c.macs_full


def test_a_module_called_twice_counts_twice():
    conv = nn.Conv2d(2, 2, 1, bias=False)
    model = nn.Sequential(conv, conv)
    assert _macs(model, 1, 2, 4, 4).macs_paper == 2 * 16 * 2 * 2


def test_involution_counts_aggregation_and_kernel_generation():
    # 16 channels, one group of 16, r=4, K=7, 8x8 map:
    # conv1 16->4: 4*64*16 = 4096; BN(4): 2*256; ReLU: 256;
    # conv2 4->49 with bias: 49*64*4 + 49*64 = 15680; aggregation 16*64*49 = 50176.
    c = _macs(Involution(16, 7), 1, 16, 8, 8)
    assert c.macs_paper_by_type["Involution"] == 50176
    assert c.macs_paper == 4096 + 512 + 256 + 15680 + 50176
    assert c.macs_full == 4096 + 49 * 64 * 4 + 50176


def test_strided_involution_on_odd_input():
    # 32 channels (2 groups), stride 2 on 9x9 -> 5x5 map; avg-pool counts its 32*81 inputs;
    # conv1 32->8: 200*32; BN 400; ReLU 200; conv2 8->98: 2450*8 + 2450; aggregation 32*25*49.
    c = _macs(Involution(32, 7, stride=2), 1, 32, 9, 9)
    assert c.macs_paper == 2592 + 6400 + 400 + 200 + 22050 + 39200
    assert c.macs_full == 6400 + 2450 * 8 + 39200


def test_params_trainable_and_total():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Linear(4, 2))
    model[0].weight.requires_grad_(False)
    assert count_params(model) == (4 + 8 + 2, 12 + 4 + 8 + 2)


def test_meta_device_gives_the_same_counts_as_real_tensors():
    model = RedNet(26, num_classes=10).eval()
    real = _macs(model, 1, 3, 64, 64)
    meta = _macs(model, 1, 3, 64, 64, device="meta")
    assert meta == real
    assert real.macs_paper > real.macs_full > 0


# --- rows of `make flops` against the independently measured values -----------

# complexity-convention.md, measured with the 2021 convention (GFLOPs) and the
# parameter counts it states (trainable, M).
MEASURED_GFLOPS = {
    "RedNet-26": 1.710, "RedNet-38": 2.200, "RedNet-50": 2.690, "RedNet-101": 4.719, "RedNet-152": 6.763,
    "retinanet_red50_fpn_1x_coco": 210.1,
    "retinanet_red50_neck_fpn_1x_coco": 199.4,
    "faster_rcnn_red50_fpn_1x_coco": 177.8,
    "faster_rcnn_red50_neck_fpn_1x_coco": 134.5,
    "faster_rcnn_red50_neck_fpn_head_1x_coco": 91.0,
    "mask_rcnn_red50_fpn_1x_coco": 224.1,
    "mask_rcnn_red50_neck_fpn_1x_coco": 180.8,
    "mask_rcnn_red50_neck_fpn_head_1x_coco": 96.4,
    "fpn_red50_512x1024_80k_cityscapes": 293.8,
    "fpn_red50_neck_512x1024_80k_cityscapes": 205.1,
    "upernet_red50_512x1024_80k_cityscapes": 1826.0,
    "retinanet_r50_fpn_1x_coco": 239.3,
}
MEASURED_PARAMS_M = {
    "RedNet-26": 9.23, "RedNet-38": 12.39, "RedNet-50": 15.54, "RedNet-101": 25.65, "RedNet-152": 33.99,
    "retinanet_red50_fpn_1x_coco": 27.8,
    "fpn_red50_512x1024_80k_cityscapes": 18.46,
    "upernet_red50_512x1024_80k_cityscapes": 56.38,
    "retinanet_r50_fpn_1x_coco": 37.74,
}
MEASURED_PARAMS_TOTAL_M = {"retinanet_red50_fpn_1x_coco": 27.95}


def _load_get_flops():
    spec = importlib.util.spec_from_file_location("get_flops", ROOT / "scripts" / "get_flops.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["get_flops"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def get_flops():
    return _load_get_flops()


def _check_row(row: dict) -> None:
    name = row["name"]
    assert row["gflops_paper"] == pytest.approx(MEASURED_GFLOPS[name], rel=0.003), name
    if name in MEASURED_PARAMS_M:
        assert row["params_trainable_m"] == pytest.approx(MEASURED_PARAMS_M[name], abs=0.1), name
    if name in MEASURED_PARAMS_TOTAL_M:
        assert row["params_total_m"] == pytest.approx(MEASURED_PARAMS_TOTAL_M[name], abs=0.1), name
    assert row["params_total_m"] >= row["params_trainable_m"] > 0
    assert row["gflops_full"] > 0


@pytest.mark.parametrize("depth", [26, 38, 50, 101, 152])
def test_imagenet_rows_match_measured(get_flops, depth):
    row = get_flops.imagenet_row(depth)
    assert row["name"] == f"RedNet-{depth}" and row["input_shape"] == [3, 224, 224]
    _check_row(row)
