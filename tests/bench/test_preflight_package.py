"""The pre-flight package's shared parts: one error type, one cache, one checkpoint-fits-model
check, the orchestration the launcher calls; and the config-tree helpers of bench.mmconfig."""
from __future__ import annotations


import pytest

from support import REPO_ROOT as ROOT, require, runs
import torch

require.module("mmdet")
from involution_ops.bench import config_checks, file_facts, mmconfig, preflight, run_process, runconfig  # noqa: E402
from involution_ops.bench.launch import cli, planning  # noqa: E402
from support.runs import run_config  # noqa: E402
from involution_ops.bench import weight_checks  # noqa: E402
from involution_ops.bench.preflight import PreflightCache, PreflightError, checkpoint_fit  # noqa: E402

TOY_FPN = ROOT / "det_configs" / "toy" / "retinanet_red50_fpn_toy.py"
FPN = "retinanet_red50_fpn_1x_coco"


# ------------------------------------------------------------------ one error type

def test_every_input_error_is_a_preflight_error(tmp_path):
    with pytest.raises(PreflightError, match="no such file") as caught:
        runconfig.load_model_config(tmp_path / "absent.py")
    assert isinstance(caught.value, runconfig.RunConfigError)
    text = tmp_path / "weights.pth"
    text.write_text("the weights are on the team drive\n")
    with pytest.raises(PreflightError, match=f"PRETRAINED={text}: .*text file") as caught:
        preflight.read_weights(str(text), f"PRETRAINED={text}", PreflightCache())
    assert isinstance(caught.value, weight_checks.WeightsError)  # raised as it is, not re-wrapped
    cfg = runconfig.load_model_config(TOY_FPN)
    with pytest.raises(PreflightError, match="has no option 'max_iter'") as caught:
        config_checks.check_cfg_options(cfg, ["train_cfg.max_iter=3"])
    assert isinstance(caught.value, config_checks.ConfigOptionError)


# ------------------------------------------------------------------ one cache

def test_a_weights_file_is_read_once_per_cache(tmp_path, monkeypatch):
    path = tmp_path / "weights.pth"
    torch.save({"state_dict": {"w": torch.ones(2)}}, path)
    reads = []
    real = weight_checks.read_checkpoint
    monkeypatch.setattr(weight_checks, "read_checkpoint", lambda p, what: reads.append(p) or real(p, what))
    cache = PreflightCache()
    first = preflight.read_weights(str(path), "PRETRAINED", cache)
    assert preflight.read_weights(str(path), "CKPT", cache) is first and len(reads) == 1
    assert torch.equal(first.state["w"], torch.ones(2))
    preflight.read_weights(str(path), "PRETRAINED", PreflightCache())
    assert len(reads) == 2  # a new launch reads again
    legacy: dict = {}  # how the launcher passed its cache before PreflightCache
    preflight.read_weights(str(path), "PRETRAINED", legacy)
    preflight.read_weights(str(path), "PRETRAINED", legacy)
    assert len(reads) == 3 and isinstance(legacy[PreflightCache], PreflightCache)


def test_a_warning_is_printed_once_per_cache(capsys):
    cache = PreflightCache()
    cache.warn_once("3 boxes dropped")
    cache.warn_once("3 boxes dropped")
    assert capsys.readouterr().out == "  warning: 3 boxes dropped\n"


# ------------------------------------------------------------------ one checkpoint-fits-model check

@pytest.fixture(scope="module")
def toy_model():
    cfg = mmconfig.load_config(TOY_FPN)
    return cfg, mmconfig.build_model(mmconfig.without_pretrained(cfg.model), "mmdet")


def test_checkpoint_fit_names_what_does_not_fit(toy_model, tmp_path):
    cfg, model = toy_model
    state = dict(model.state_dict())
    path = tmp_path / "iter_1.pth"
    torch.save({"state_dict": state, "meta": {"experiment_name": "retinanet_red50_fpn_toy_20260101_000000"}}, path)
    checkpoint = weight_checks.read_checkpoint(str(path), "checkpoint")
    assert checkpoint_fit(checkpoint, model, "x").problem("Fix: y") is None
    assert checkpoint_fit(checkpoint, cfg.model, "x", "mmdet").problem("Fix: y") is None  # built on meta

    del state["bbox_head.retina_cls.bias"]
    state["extra.weight"] = torch.ones(1)
    torch.save({"state_dict": state}, path)
    changed = weight_checks.read_checkpoint(str(path), "checkpoint")

    class Wrapped(torch.nn.Module):  # as DistributedDataParallel holds the model
        def __init__(self) -> None:
            super().__init__()
            self.module = model

    from_module = checkpoint_fit(changed, Wrapped(), "toy.py").problem("Fix: z", label="checkpoint ")
    assert from_module.startswith(f"checkpoint {path} does not fit toy.py: missing 1: bbox_head.retina_cls.bias")
    assert "unexpected 1: extra.weight" in from_module and from_module.endswith(". Fix: z")
    from_config = checkpoint_fit(changed, cfg.model, "toy.py", "mmdet").problem("Fix: z", label="checkpoint ")
    assert from_config == from_module
    # the evaluation process refuses the same tensors, with its own fix
    refused = run_process.checkpoint_problem(changed, model, "toy.py")
    assert refused.startswith(f"checkpoint {path} does not fit toy.py: missing 1: bbox_head.retina_cls.bias")
    assert refused.endswith("Fix: evaluate it with the config it was trained with (and the same CFG_OPTIONS)")


# ------------------------------------------------------------------ the orchestration the launcher calls

def test_run_preflight_checks_what_the_launcher_checks(capsys, monkeypatch, toy_coco, tmp_path, no_launch):
    from involution_ops import RedNet

    monkeypatch.setenv(file_facts.CACHE_ENV, str(tmp_path / "cache"))
    pretrained = tmp_path / "rednet50_imagenet.pth"  # the real config on real-layout data loads ImageNet weights
    torch.save({"state_dict": RedNet(50, stem_kernel_size=3).state_dict(), "meta": {}}, pretrained)
    args = cli.parse_args(["coco", "retinanet", "--configs", FPN, "--data", str(toy_coco), "--pretrained",
                           str(pretrained), "--work-dir",
                           str(tmp_path / "work_dirs"), "--runs-dir", str(tmp_path / "runs"),
                           "--cfg-options", *runs.FIT_TOY_COCO])
    jobs, configs, context = preflight.run_preflight(args)
    out = capsys.readouterr().out
    assert [j.model.name for j in jobs] == [FPN] and (context.dataset, context.partition_gpus) == ("coco", None)
    # the config the run will train with: built once, as the launcher builds it
    built = run_config(planning.select_jobs(args, toy=False)[0], toy_coco, args)
    assert configs[FPN].to_dict() == built.to_dict()
    assert configs[FPN].model.backbone.init_cfg == dict(type="Pretrained", checkpoint=str(pretrained))
    assert f"pre-flight checks: 1 config(s) on coco data at {toy_coco}" in out
    assert f"ok  {FPN}" in out and "keep their initialisation" in out  # PRETRAINED checked against the backbone
    assert not (tmp_path / "work_dirs").exists() or not any((tmp_path / "work_dirs").rglob("config.py"))

    broken = cli.parse_args(["coco", "retinanet", "--configs", FPN, "--data", str(toy_coco), "--pretrained",
                             str(tmp_path / "absent.pth")])
    with pytest.raises(PreflightError, match=r"pretrained backbone weights .*absent.pth not found\. Fix: download"):
        preflight.run_preflight(broken)


# ------------------------------------------------------------------ bench.mmconfig

def test_dataset_walkers_look_through_wrappers():
    inner = dict(type="CocoDataset", ann_file="a.json")
    cfg = dict(train_dataloader=dict(dataset=dict(type="RepeatDataset", times=2,
                                                  dataset=dict(type="ClassBalancedDataset", dataset=inner))),
               test_dataloader=dict(dataset=dict(type="CocoDataset", ann_file="t.json")), val_dataloader=None)
    assert [d["type"] for d in mmconfig.wrapped_datasets(cfg["train_dataloader"])] == [
        "RepeatDataset", "ClassBalancedDataset", "CocoDataset"]
    assert mmconfig.inner_dataset(cfg["train_dataloader"]) is inner
    assert mmconfig.inner_dataset(None) is None
    assert [(split, d["ann_file"]) for split, d in mmconfig.split_datasets(cfg)] == [("train", "a.json"),
                                                                                     ("test", "t.json")]


def test_pretrained_inits_and_a_copy_without_them():
    model = dict(type="X", backbone=dict(type="RedNet", init_cfg=dict(type="Pretrained", checkpoint="b.pth")),
                 neck=[dict(type="FPN", init_cfg=[dict(type="Kaiming"),
                                                  dict(type="Pretrained", checkpoint="n.pth", prefix="neck")])],
                 head=dict(type="H", pretrained="h.pth"))
    found = mmconfig.pretrained_inits(model)
    assert [(i.where, i.checkpoint, i.prefix) for i in found] == [("model.backbone", "b.pth", None),
                                                                 ("model.neck.0", "n.pth", "neck")]
    assert runconfig.backbone_init_checkpoints(model) == ["b.pth", "n.pth"]
    bare = mmconfig.without_pretrained(model)
    assert bare["backbone"]["init_cfg"] is None and bare["neck"][0]["init_cfg"] is None
    assert bare["head"]["pretrained"] is None
    assert mmconfig.pretrained_inits(bare) == [] and len(mmconfig.pretrained_inits(model)) == 2  # original kept


def test_cfg_options_parse_and_merge_as_mmengine_does():
    from mmengine.config import Config

    options = ["model.a=1", "model.b=(2,3)", "model.c=x"]
    assert mmconfig.parse_options(options) == {"model.a": 1, "model.b": (2, 3), "model.c": "x"}
    cfg = Config(dict(model=dict(a=0, d=4)))
    mmconfig.merge_options(cfg, options)
    assert cfg.model.to_dict() == {"a": 1, "d": 4, "b": (2, 3), "c": "x"}


def test_the_speed_benchmark_builds_its_models_through_mmconfig(toy_model):
    """speed.builders: the config's model with random weights (no Pretrained file read), SyncBN reverted."""
    from involution_ops.bench.speed import builders

    _, reference = toy_model
    built = builders.build_mm_model(str(TOY_FPN.relative_to(ROOT)), "mmdet", torch.device("cpu"))
    assert type(built) is type(reference)
    assert {k: v.shape for k, v in built.state_dict().items()} == {k: v.shape for k, v in reference.state_dict().items()}


def test_an_empty_pretrained_file_is_named_as_such_by_the_launch(tmp_path):
    """PRETRAINED given but empty: the launch reads it and says so; a config's own empty Pretrained
    file counts as missing (both as before the pre-flight became a package)."""
    empty = tmp_path / "rednet50.pth"
    empty.touch()
    args = cli.parse_args(["coco", "retinanet", "--configs", FPN, "--pretrained", str(empty)])
    with pytest.raises(weight_checks.WeightsError, match=f"PRETRAINED={empty}: "):
        preflight.run_preflight(args)
    with pytest.raises(PreflightError, match=f"pretrained backbone weights {empty} not found"):
        preflight.require_pretrained_file(str(empty))
