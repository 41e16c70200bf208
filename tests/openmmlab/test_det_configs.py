"""Detection configs: the paper's model and weights in the full configs (their training recipes
are compared with the official ones in test_official_recipes.py), and every toy variant trains
one iteration and runs one test pass through mmengine's Runner on the built-in data (CPU)."""
from __future__ import annotations

import functools
import math

import pytest

from support import REPO_ROOT as ROOT, require

require.module("mmdet")
from mmengine.config import Config  # noqa: E402

from involution_ops.bench import preflight, runconfig, toy_data  # noqa: E402

PAPER = ["retinanet_red50_fpn", "retinanet_red50_neck_fpn", "faster_rcnn_red50_fpn", "faster_rcnn_red50_neck_fpn",
         "faster_rcnn_red50_neck_fpn_head", "mask_rcnn_red50_fpn", "mask_rcnn_red50_neck_fpn",
         "mask_rcnn_red50_neck_fpn_head"]
BASELINES = ["retinanet_r50_fpn", "faster_rcnn_r50_fpn", "mask_rcnn_r50_fpn"]


@functools.lru_cache(maxsize=None)
def _full(model: str) -> Config:
    return Config.fromfile(str(ROOT / "det_configs" / f"{model}_1x_coco.py"))


@pytest.mark.parametrize("model", PAPER + BASELINES)
def test_full_config_has_the_paper_model(model):
    cfg = _full(model)
    backbone = cfg.model.backbone
    assert backbone.frozen_stages == 1 and backbone.norm_eval is True
    if "red50" in model:
        assert backbone.type == "RedNet" and backbone.depth == 50
        assert backbone.init_cfg == {"type": "Pretrained", "checkpoint": "checkpoints/rednet50_imagenet.pth"}
        assert "involution_ops.mmdet" in cfg.custom_imports.imports
    neck = "InvolutionFPN" if "_neck" in model else "FPN"
    assert cfg.model.neck.type == neck
    if model.startswith("mask"):
        assert cfg.val_evaluator.metric == ["bbox", "segm"]


def _strip_toy_changes(model_cfg: dict) -> dict:
    """The model dict without what a toy variant may change (from-scratch backbone, class count)."""
    model_cfg = {**model_cfg, "backbone": {k: v for k, v in model_cfg["backbone"].items()
                                           if k not in ("frozen_stages", "norm_eval", "init_cfg")}}

    def drop(node):
        if isinstance(node, dict):
            return {k: drop(v) for k, v in node.items() if k not in ("num_classes", "score_thr")}
        if isinstance(node, (list, tuple)):
            return [drop(v) for v in node]
        return node

    return drop(model_cfg)


@pytest.mark.parametrize("model", PAPER + BASELINES)
def test_toy_variant_keeps_the_model(model):
    full = _full(model)
    toy = Config.fromfile(str(ROOT / "det_configs" / "toy" / f"{model}_toy.py"))
    assert _strip_toy_changes(toy.to_dict()["model"]) == _strip_toy_changes(full.to_dict()["model"])
    assert preflight.model_num_classes(toy.model) == {3}
    assert toy.optim_wrapper == full.optim_wrapper  # same optimiser and clipping
    assert toy.model.backbone.frozen_stages == -1 and toy.model.backbone.norm_eval is False
    assert toy.model.backbone.init_cfg is None


@pytest.fixture(scope="module")
def toy_root():
    return toy_data.ensure_toy_data(ROOT / "data" / "toy", "coco", verbose=False)


@pytest.mark.slow
@pytest.mark.parametrize("model", PAPER + BASELINES)
def test_toy_variant_trains_and_tests(model, toy_root, tmp_path):
    from mmengine.runner import Runner

    cfg = Config.fromfile(str(ROOT / "det_configs" / "toy" / f"{model}_toy.py"))
    runconfig.set_data_root(cfg, str(toy_root))
    cfg.work_dir = str(tmp_path)
    cfg.train_cfg.max_iters = 1
    cfg.default_hooks.checkpoint = dict(type="CheckpointHook", interval=100, save_last=False)
    cfg.default_hooks.logger.interval = 1
    cfg.test_dataloader.dataset.indices = 2  # one test forward per image, two images
    cfg.randomness = dict(seed=0)
    runner = Runner.from_cfg(cfg)
    runner.train()
    loss = runner.message_hub.get_scalar("train/loss").current()
    assert runner.iter == 1 and math.isfinite(loss) and loss > 0
    metrics = runner.test()
    assert "coco/bbox_mAP" in metrics
    if model.startswith("mask"):
        assert "coco/segm_mAP" in metrics
