"""involution_ops/bench/batch.py: the paper's total batch on fewer processes.

Expected counts come from the configs resolved here with mmengine; the accumulation
equivalence is checked against a plain-torch update computed in the test."""

from __future__ import annotations

import copy

import pytest

from support import require

require.module("mmengine")

import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402
from torch import nn  # noqa: E402

from involution_ops.bench.paper_batch import BatchPlan, apply_batch_plan, plan_batch  # noqa: E402
from involution_ops.bench.output import REPO_ROOT  # noqa: E402

COCO = "det_configs/retinanet_red50_fpn_1x_coco.py"          # epoch-based, warm-up by iteration
CITYSCAPES = "seg_configs/fpn_red50_512x1024_80k_cityscapes.py"  # iteration-based, poly decay


@pytest.fixture(scope="module")
def configs(openmmlab):
    return {path: Config.fromfile(str(REPO_ROOT / path)) for path in (COCO, CITYSCAPES)}


def fresh(configs, path: str) -> Config:
    return copy.deepcopy(configs[path])


def test_one_process_accumulates_to_the_paper_batch_epoch_loop(configs):
    cfg = fresh(configs, COCO)
    original = fresh(configs, COCO)
    images = original.train_dataloader.batch_size
    plan = plan_batch(cfg, world_size=1, mode="accumulate", dataset="coco")
    assert (plan.paper_batch, plan.total_batch, plan.accumulation) == (16, images, 16 // images)
    assert plan.effective_batch == 16 and plan.lr == plan.config_lr == original.optim_wrapper.optimizer.lr
    apply_batch_plan(cfg, plan)
    assert cfg.optim_wrapper.accumulative_counts == 16 // images
    assert cfg.train_cfg.max_epochs == original.train_cfg.max_epochs  # an epoch is the dataset, whatever the batch
    warmup, steps = cfg.param_scheduler
    assert warmup.end == original.param_scheduler[0].end * plan.accumulation  # same warm-up in optimizer steps
    assert steps.milestones == original.param_scheduler[1].milestones and steps.by_epoch
    assert cfg.optim_wrapper.optimizer.lr == original.optim_wrapper.optimizer.lr
    assert cfg.auto_scale_lr.enable is False
    text = plan.describe()
    assert "1 process(es) x 2 image(s) = 2" in text and "accumulation 8 -> 16" in text and "paper 16" in text
    assert "BatchNorm" in text
    record = plan.as_record()
    assert record["effective_batch"] == 16 and record["matches_paper"] is True and record["mode"] == "accumulate"


def test_one_process_accumulates_iteration_loop(configs):
    cfg = fresh(configs, CITYSCAPES)
    original = fresh(configs, CITYSCAPES)
    plan = plan_batch(cfg, world_size=2, mode="accumulate", dataset="cityscapes")
    assert (plan.paper_batch, plan.total_batch, plan.accumulation) == (8, 4, 2)
    apply_batch_plan(cfg, plan)
    assert cfg.optim_wrapper.accumulative_counts == 2
    assert cfg.train_cfg.max_iters == 2 * original.train_cfg.max_iters
    assert cfg.train_cfg.val_interval == 2 * original.train_cfg.val_interval
    poly = cfg.param_scheduler[0]
    assert poly.end == 2 * original.param_scheduler[0].end and poly.begin == 0
    assert cfg.default_hooks.checkpoint.interval == 2 * original.default_hooks.checkpoint.interval


def test_scale_lr_writes_the_scaled_lr_into_the_config(configs):
    cfg = fresh(configs, COCO)
    config_lr = cfg.optim_wrapper.optimizer.lr
    plan = plan_batch(cfg, world_size=2, mode="scale_lr", dataset="coco")
    assert plan.lr == pytest.approx(config_lr * 4 / 16) and plan.accumulation == 1
    apply_batch_plan(cfg, plan)
    assert cfg.optim_wrapper.optimizer.lr == pytest.approx(config_lr / 4)
    assert "accumulative_counts" not in cfg.optim_wrapper and cfg.auto_scale_lr.enable is False
    original = configs[COCO]
    assert cfg.param_scheduler[0].end == 4 * original.param_scheduler[0].end  # warm-up: same images seen
    assert cfg.train_cfg.max_epochs == original.train_cfg.max_epochs
    dumped = Config.fromstring(cfg.pretty_text, ".py")
    assert dumped.optim_wrapper.optimizer.lr == pytest.approx(config_lr / 4)
    assert plan.as_record()["matches_paper"] is False


def test_scale_lr_keeps_the_epochs_of_an_iteration_schedule(configs):
    cfg = fresh(configs, CITYSCAPES)
    original = configs[CITYSCAPES]
    plan = plan_batch(cfg, world_size=3, mode="scale_lr", dataset="cityscapes")  # 6 images per iteration
    apply_batch_plan(cfg, plan)
    assert cfg.optim_wrapper.optimizer.lr == pytest.approx(original.optim_wrapper.optimizer.lr * 6 / 8)
    images_seen = original.train_cfg.max_iters * 8
    assert cfg.train_cfg.max_iters * 6 == pytest.approx(images_seen, abs=6)
    assert cfg.param_scheduler[0].end == cfg.train_cfg.max_iters
    assert "iterations x1.33333" in plan.describe()


def test_none_toy_and_paper_count_leave_the_config_alone(configs):
    for world, mode, dataset, expected_mode in ((1, "none", "coco", "none"), (1, "accumulate", "toy", "none"),
                                                (8, "accumulate", "coco", "accumulate")):
        cfg = fresh(configs, COCO)
        plan = plan_batch(cfg, world_size=world, mode=mode, dataset=dataset)
        apply_batch_plan(cfg, plan)
        assert plan.mode == expected_mode and plan.accumulation == 1
        assert cfg.optim_wrapper.optimizer.lr == configs[COCO].optim_wrapper.optimizer.lr
        assert "accumulative_counts" not in cfg.optim_wrapper
        assert cfg.param_scheduler == configs[COCO].param_scheduler
    assert "toy" in plan_batch(fresh(configs, COCO), 1, "accumulate", "toy").note
    assert "NOT the paper's batch" in plan_batch(fresh(configs, COCO), 1, "none", "coco").note
    assert plan_batch(fresh(configs, COCO), 8, "none", "coco").matches_paper


def test_impossible_accumulation_is_a_clear_error(configs):
    with pytest.raises(ValueError, match="not a multiple.*BATCH=scale_lr"):
        plan_batch(fresh(configs, CITYSCAPES), world_size=3, mode="accumulate", dataset="cityscapes")
    with pytest.raises(ValueError, match="exceeds the paper's total batch 16.*BATCH=scale_lr"):
        plan_batch(fresh(configs, COCO), world_size=16, mode="accumulate", dataset="coco")
    with pytest.raises(ValueError, match="batch mode 'sum'"):
        plan_batch(fresh(configs, COCO), world_size=1, mode="sum", dataset="coco")
    cfg = fresh(configs, COCO)
    cfg.auto_scale_lr = None
    with pytest.raises(ValueError, match="base_batch_size"):
        plan_batch(cfg, world_size=1, mode="accumulate", dataset="coco")


# ----------------------------------------------------------------- mmengine's accumulation, really run

@pytest.mark.parametrize("world_size, mode, expected", [
    (8, "accumulate", None),  # the paper's 8 processes x 2 images
    (1, "accumulate", None),  # accumulation x8 reaches the paper's batch: the paper's recipe
    (1, "none", "trained at total batch 2 (paper 16), accumulation none, lr 0.01 (mode none)"),
    (2, "scale_lr", "trained at total batch 4 (paper 16), accumulation none, lr 0.0025 (mode scale_lr)"),
])
def test_a_plan_read_back_from_its_record_states_how_it_departs_from_the_paper(configs, world_size, mode, expected):
    plan = plan_batch(fresh(configs, COCO), world_size=world_size, mode=mode, dataset="coco")
    record = plan.as_record()
    assert BatchPlan.record_problem(record) is None and BatchPlan.from_record(record) == plan
    assert plan.departure() == expected
    assert BatchPlan.record_problem({**record, "accumulation": "8"}) == "accumulation of the wrong type"
    assert BatchPlan.record_problem({key: value for key, value in record.items() if key != "lr"}) == "missing lr"


def _tiny_model():
    from mmengine.model import BaseModel

    class Linear(BaseModel):  # no BatchNorm: accumulation is then exactly the bigger batch
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(3, 1)

        def forward(self, inputs, targets, mode="loss"):
            return {"loss": ((self.linear(inputs).squeeze(-1) - targets) ** 2).mean()}

    model = Linear()
    with torch.no_grad():
        model.linear.weight.copy_(torch.tensor([[0.5, -0.25, 1.0]]))
        model.linear.bias.fill_(0.1)
    return model


SAMPLES = [{"inputs": torch.tensor([1.0, 2.0, -1.0]), "targets": torch.tensor(0.5)},
           {"inputs": torch.tensor([-2.0, 0.5, 3.0]), "targets": torch.tensor(-1.0)}]


def _train(tmp_path, batch_size: int, accumulation: int, by_epoch: bool, wrapper: str = "OptimWrapper") -> dict:
    from mmengine.runner import Runner

    steps = len(SAMPLES) // batch_size
    runner = Runner(
        model=_tiny_model(), work_dir=str(tmp_path / f"b{batch_size}a{accumulation}e{int(by_epoch)}"),
        train_dataloader=dict(dataset=SAMPLES, batch_size=batch_size, collate_fn=dict(type="default_collate"),
                              sampler=dict(type="DefaultSampler", shuffle=False)),
        train_cfg=dict(by_epoch=True, max_epochs=1) if by_epoch else dict(by_epoch=False, max_iters=steps),
        optim_wrapper=dict(type=wrapper, optimizer=dict(type="SGD", lr=0.1),
                           accumulative_counts=accumulation,
                           # a static scale of 1: the default dynamic one (65536) overflows float16 here
                           **({"loss_scale": 1.0} if wrapper == "AmpOptimWrapper" else {})),
        default_hooks=dict(checkpoint=None), log_level="WARNING")
    runner.train()
    return {key: value.detach().cpu().clone() for key, value in runner.model.state_dict().items()}


@pytest.mark.parametrize("wrapper", ["OptimWrapper", "AmpOptimWrapper"])
@pytest.mark.parametrize("by_epoch", [False, True], ids=["iteration_loop", "epoch_loop"])
def test_two_accumulated_steps_of_one_equal_one_step_of_two(tmp_path, openmmlab, by_epoch, wrapper):
    if wrapper == "AmpOptimWrapper" and not torch.cuda.is_available():
        pytest.skip("mmengine's AmpOptimWrapper needs a GPU")
    accumulated = _train(tmp_path, batch_size=1, accumulation=2, by_epoch=by_epoch, wrapper=wrapper)
    single = _train(tmp_path, batch_size=2, accumulation=1, by_epoch=by_epoch, wrapper=wrapper)
    tolerance = {"rtol": 1e-2, "atol": 1e-3} if wrapper == "AmpOptimWrapper" else {}  # float16 forward

    reference = _tiny_model()  # one plain SGD step on the mean loss of both samples
    inputs = torch.stack([s["inputs"] for s in SAMPLES])
    targets = torch.stack([s["targets"] for s in SAMPLES])
    loss = reference(inputs, targets)["loss"]
    loss.backward()
    with torch.no_grad():
        expected = {name: param - 0.1 * param.grad for name, param in reference.named_parameters()}

    for name, value in expected.items():
        torch.testing.assert_close(single[name], value, **tolerance)
        torch.testing.assert_close(accumulated[name], value, **tolerance)
    assert not torch.equal(expected["linear.weight"], _tiny_model().linear.weight)  # the step moved the weights
