"""Cityscapes configs: the paper setup in the full configs, the per-class IoU metric against
a hand count, and every toy variant trains one iteration and runs whole-image inference through
mmengine's Runner on the built-in data (CPU), with SyncBN reverted to BN on one process."""
from __future__ import annotations

import math

import numpy as np
import pytest

from support import REPO_ROOT as ROOT, require

require.module("mmseg")
import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402

from involution_ops.bench import runconfig, toy_data  # noqa: E402

PAPER = ["fpn_red50", "fpn_red50_neck", "upernet_red50"]
BASELINES = ["fpn_r50", "upernet_r50"]
SUFFIX = "_512x1024_80k_cityscapes"


def _full(model: str) -> Config:
    return Config.fromfile(str(ROOT / "seg_configs" / f"{model}{SUFFIX}.py"))


def _toy(model: str) -> Config:
    return Config.fromfile(str(ROOT / "seg_configs" / "toy" / f"{model}_toy.py"))


@pytest.mark.parametrize("model", PAPER + BASELINES)
def test_full_config_follows_the_paper_setup(model):
    """mmseg's Cityscapes setup the paper trained with (crop, SyncBN, whole-image testing); the
    optimiser, schedule and batch are compared with the official ones in test_official_recipes.py."""
    cfg = _full(model)
    crop = next(t for t in cfg.train_dataloader.dataset.pipeline if t.type == "RandomCrop")
    assert tuple(crop.crop_size) == (512, 1024) and tuple(cfg.model.data_preprocessor.size) == (512, 1024)
    assert cfg.model.test_cfg.mode == "whole"
    assert cfg.model.backbone.norm_cfg.type == "SyncBN" and cfg.model.decode_head.norm_cfg.type == "SyncBN"
    assert cfg.model.decode_head.num_classes == 19
    assert cfg.train_dataloader.dataset.data_root == "data/cityscapes/"
    assert cfg.test_evaluator.type == "PerClassIoUMetric"
    if model.startswith("upernet"):
        assert cfg.model.decode_head.type == "UPerHead" and "neck" not in cfg.model
    else:
        assert cfg.model.decode_head.type == "FPNHead"
        assert cfg.model.neck.type == ("InvolutionFPN" if "_neck" in model else "FPN")
    if "red50" in model:
        backbone = cfg.model.backbone
        assert backbone.type == "RedNet" and backbone.depth == 50 and cfg.model.get("pretrained") is None
        assert backbone.init_cfg == {"type": "Pretrained", "checkpoint": "checkpoints/rednet50_imagenet.pth"}
    else:
        assert cfg.model.backbone.type == "ResNetV1c" and cfg.model.pretrained == "open-mmlab://resnet50_v1c"


@pytest.mark.parametrize("model", PAPER + BASELINES)
def test_toy_variant_keeps_the_model(model):
    full, toy = _full(model).to_dict(), _toy(model).to_dict()
    for cfg in (full, toy):  # what a toy variant changes: from scratch, smaller padded crop
        cfg["model"].pop("pretrained", None)
        cfg["model"]["backbone"].pop("init_cfg", None)
        cfg["model"]["data_preprocessor"].pop("size")
    assert toy["model"] == full["model"]
    assert toy["optim_wrapper"] == full["optim_wrapper"]


def _hand_iou(pred: np.ndarray, label: np.ndarray, num_classes: int, ignore: int = 255) -> np.ndarray:
    keep = label != ignore
    ious = []
    for c in range(num_classes):
        p, g = (pred == c) & keep, (label == c) & keep
        union = (p | g).sum()
        ious.append((p & g).sum() / union * 100 if union else np.nan)
    return np.array(ious)


def test_per_class_iou_metric_matches_a_hand_count():
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    from involution_ops.openmmlab.seg_metrics import PerClassIoUMetric

    classes = ("a", "b", "c", "d")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, (2, 6, 7))  # class "d" never occurs
    labels[:, 0, :] = 255
    preds = np.where(rng.random(labels.shape) < 0.7, labels, rng.integers(0, 3, labels.shape)) % 3
    metric = PerClassIoUMetric(iou_metrics=["mIoU"])
    metric.dataset_meta = dict(classes=classes)
    for pred, label in zip(preds, labels):
        sample = SegDataSample()
        sample.pred_sem_seg = PixelData(data=torch.from_numpy(pred)[None])
        sample.gt_sem_seg = PixelData(data=torch.from_numpy(label)[None])
        metric.process([], [sample.to_dict()])
    result = metric.evaluate(2)
    expected = _hand_iou(preds, labels, len(classes))
    for name, value in zip(classes, expected):
        got = result[f"IoU.{name}"]
        assert (math.isnan(got) and math.isnan(value)) or got == pytest.approx(value, abs=0.006), name
    assert result["mIoU"] == pytest.approx(np.nanmean(expected), abs=0.006)
    keep = labels != 255
    assert result["aAcc"] == pytest.approx((preds == labels)[keep].mean() * 100, abs=0.006)


@pytest.fixture(scope="module")
def toy_root():
    return toy_data.ensure_toy_data(ROOT / "data" / "toy", "cityscapes", verbose=False)


@pytest.mark.slow
@pytest.mark.parametrize("model", PAPER + BASELINES)
def test_toy_variant_trains_and_infers_whole_images(model, toy_root, tmp_path):
    from mmengine.runner import Runner

    cfg = _toy(model)
    runconfig.set_data_root(cfg, str(toy_root))
    cfg.work_dir = str(tmp_path)
    cfg.experiment_name = f"test_{model}"
    cfg.visualizer.name = f"test_{model}"
    cfg.train_cfg.max_iters = 1
    crop = cfg.train_dataloader.dataset.pipeline[3]
    assert crop.type == "RandomCrop"
    crop.crop_size = (64, 64)  # lean: one small training batch
    cfg.model.data_preprocessor.size = (64, 64)
    cfg.default_hooks.checkpoint = dict(type="CheckpointHook", interval=100, save_last=False)
    cfg.default_hooks.logger.interval = 1
    cfg.test_dataloader.dataset.indices = 1
    cfg.randomness = dict(seed=0)
    runner = Runner.from_cfg(cfg)
    # one process: the config's SyncBN has become plain BN
    assert cfg.model.backbone.norm_cfg.type == "SyncBN"
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in runner.model.modules())
    assert any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in runner.model.modules())
    before = [p.detach().clone() for p in runner.model.parameters() if p.requires_grad]

    runner.train()
    loss = runner.message_hub.get_scalar("train/loss").current()
    assert runner.iter == 1 and math.isfinite(loss) and loss > 0
    after = [p for p in runner.model.parameters() if p.requires_grad]
    assert any(not torch.equal(a, b) for a, b in zip(after, before))

    runner.model.eval()
    batch = next(iter(runner.test_dataloader))
    with torch.no_grad():
        (prediction,) = runner.model.test_step(batch)
    height, width = prediction.ori_shape
    assert (height, width) == (128, 256)  # the whole toy image, no sliding window
    assert prediction.pred_sem_seg.data.shape == (1, height, width)
    assert 0 <= int(prediction.pred_sem_seg.data.min()) and int(prediction.pred_sem_seg.data.max()) < 19

    metrics = runner.test()
    assert {"mIoU", "mAcc", "aAcc", "IoU.road"} <= set(metrics)


def test_full_config_data_pipeline_on_a_cityscapes_layout(toy_root):
    """The real-data path: mmseg's CityscapesDataset finds the layout, crops 512x1024 for training
    and tests on the whole image resized to 2048x1024 (the toy scenes stand in for Cityscapes)."""
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS

    init_default_scope("mmseg")
    cfg = _full("fpn_red50")
    runconfig.set_data_root(cfg, str(toy_root))
    train_set = DATASETS.build(cfg.train_dataloader.dataset)
    test_set = DATASETS.build(cfg.test_dataloader.dataset)
    assert len(train_set) == toy_data.DEFAULTS["cityscapes"]["train"]
    assert len(test_set) == toy_data.DEFAULTS["cityscapes"]["val"]
    assert len(train_set.metainfo["classes"]) == 19
    sample = train_set[0]
    assert tuple(sample["inputs"].shape) == (3, 512, 1024)
    assert tuple(sample["data_samples"].gt_sem_seg.data.shape) == (1, 512, 1024)
    sample = test_set[0]
    assert tuple(sample["inputs"].shape) == (3, 1024, 2048)
    assert sample["data_samples"].ori_shape == (128, 256)
