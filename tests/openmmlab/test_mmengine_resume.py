"""mmengine 0.10.7 on torch >= 2.6: resume and pretrained loading work, weights_only stays on."""
import os
import pickle

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from support import require

require.module("mmengine")

import involution_ops.openmmlab.checkpoint_loading  # noqa: E402,F401  (what custom_imports brings in)
from involution_ops.safe_load import UnsafeFileError  # noqa: E402
from mmengine.model import BaseModel  # noqa: E402
from mmengine.runner import Runner, load_checkpoint  # noqa: E402


class TinyRegressor(BaseModel):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 1)

    def forward(self, inputs, targets=None, mode="tensor"):
        prediction = self.linear(inputs)
        if mode == "loss":
            return {"loss": F.mse_loss(prediction, targets)}
        return prediction


class PointsDataset(torch.utils.data.Dataset):
    def __init__(self):
        generator = torch.Generator().manual_seed(0)
        self.inputs = torch.randn(32, 4, generator=generator)
        self.targets = self.inputs @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])

    def __len__(self):
        return len(self.inputs)

    def __getitem__(self, index):
        return {"inputs": self.inputs[index], "targets": self.targets[index]}


def make_runner(work_dir, name, max_iters=6, **kwargs):
    return Runner(
        model=TinyRegressor(),
        work_dir=str(work_dir),
        experiment_name=name,
        train_dataloader=dict(
            dataset=PointsDataset(),
            sampler=dict(type="DefaultSampler", shuffle=True),
            batch_size=4,
            num_workers=0,
            collate_fn=dict(type="default_collate"),
        ),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.05, momentum=0.9)),
        param_scheduler=dict(type="MultiStepLR", by_epoch=False, milestones=[4], gamma=0.1),
        default_hooks=dict(checkpoint=dict(type="CheckpointHook", interval=3, by_epoch=False)),
        randomness=dict(seed=0),
        default_scope="mmengine",
        **kwargs,
    )


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    work_dir = tmp_path_factory.mktemp("uninterrupted")
    runner = make_runner(work_dir, "uninterrupted")
    runner.train()
    return work_dir, {k: v.clone() for k, v in runner.model.state_dict().items()}


def test_checkpoint_needs_the_allow_list(finished_run):
    """The file really holds non-tensor objects: a bare weights-only load refuses it."""
    work_dir, _ = finished_run
    with pytest.raises(pickle.UnpicklingError, match="HistoryBuffer|numpy"):
        torch.load(os.path.join(work_dir, "iter_3.pth"), weights_only=True)


def test_resume_continues_from_checkpoint_and_matches_uninterrupted_run(finished_run, tmp_path):
    work_dir, final_weights = finished_run
    resumed = make_runner(tmp_path, "resumed", load_from=os.path.join(work_dir, "iter_3.pth"), resume=True)
    resumed.train()
    assert resumed.iter == 6
    # The message hub came back too: the loss history holds iterations before the resume.
    loss_history, _ = resumed.message_hub.get_scalar("train/loss").data
    assert len(loss_history) == 6
    for key, value in resumed.model.state_dict().items():
        torch.testing.assert_close(value, final_weights[key], rtol=1e-5, atol=1e-6)


def test_pretrained_file_loads_through_mmengine(finished_run):
    work_dir, final_weights = finished_run
    model = TinyRegressor()
    load_checkpoint(model, os.path.join(work_dir, "iter_6.pth"), map_location="cpu", strict=True)
    torch.testing.assert_close(model.linear.weight, final_weights["linear.weight"])


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo this must never run",))


def test_untrusted_global_is_still_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"linear.weight": torch.zeros(1, 4)}, "meta": _Payload()}, path)
    with pytest.raises(UnsafeFileError, match="evil.pth"):
        load_checkpoint(TinyRegressor(), str(path), map_location="cpu")
