"""Weights checked before anything trains or evaluates: PRETRAINED against the backbone it
initialises, CKPT against every tensor of the model it is evaluated with; unreadable and unsafe
files refused with one message before any config is loaded."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from support import REPO_ROOT as ROOT, require, runs
import torch

require.module("mmdet")
from involution_ops.bench import preflight, run_process  # noqa: E402
from involution_ops.bench.launch import cli, planning  # noqa: E402
from support.runs import run_config  # noqa: E402

from involution_ops import RedNet  # noqa: E402

GROUP = ["coco", "retinanet"]
FPN, NECK = "retinanet_red50_fpn_1x_coco", "retinanet_red50_neck_fpn_1x_coco"


class RunsShell:
    def __reduce__(self):
        return (os.system, ("echo this must never run",))


def _main(capsys, *argv):
    code = cli.main([*GROUP, *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ------------------------------------------------------------------ files that cannot be used at all

def _text(path):
    path.write_text("the weights are on the team drive\n")


def _truncated(path):
    torch.save({"state_dict": {"w": torch.arange(50000.0)}}, path)
    path.write_bytes(path.read_bytes()[:40000])


def _malicious(path):
    torch.save({"state_dict": {"w": torch.ones(1)}, "meta": RunsShell()}, path)


@pytest.mark.parametrize("option", ["--pretrained", "--ckpt"])
@pytest.mark.parametrize("make,what", [(_text, "a text file"), (_truncated, "incomplete or damaged"),
                                       (_malicious, "outside the allow-list")])
def test_unusable_weights_stop_before_any_config_is_loaded(capsys, monkeypatch, tmp_path, no_launch, option,
                                                           make, what):
    loaded = []
    from involution_ops.bench.launch import planning

    real_load_config = planning.load_config
    monkeypatch.setattr(planning, "load_config",
                        lambda *a, **k: loaded.append(a) or real_load_config(*a, **k))
    path = tmp_path / "work_dirs" / "coco" / FPN / "x" / "weights.pth"
    path.parent.mkdir(parents=True)
    make(path)
    code, out, err = _main(capsys, option, str(path), "--work-dir", str(tmp_path / "work_dirs"))
    assert code == 2 and "Traceback" not in err
    assert err.count("error:") == 1 and str(path) in err and what in err
    assert ("PRETRAINED=" if option == "--pretrained" else "CKPT=") in err
    assert not loaded  # refused before configs (and models) are built
    assert "this must never run" not in out + err


# ------------------------------------------------------------------ PRETRAINED against the backbone

@pytest.fixture(scope="module")
def pretrained_files(tmp_path_factory):
    """ImageNet-like RedNet-50 (3x3 stem), the same with the 7x7 detection stem, and a ResNet-50."""
    from mmdet.models.backbones import ResNet

    folder = tmp_path_factory.mktemp("pretrained")
    files = {}
    for name, model in (("rednet50_imagenet.pth", RedNet(50, stem_kernel_size=3)),
                        ("rednet50_stem7.pth", RedNet(50, stem_kernel_size=7)),
                        ("resnet50.pth", ResNet(50))):
        files[name] = folder / name
        torch.save({"state_dict": model.state_dict(), "meta": {}}, files[name])
    return files


def _check_pretrained(path, data, extra=()):
    args = cli.parse_args([*GROUP, "--configs", FPN, "--data", str(data), "--pretrained", str(path),
                           "--cfg-options", "model.bbox_head.num_classes=3", *extra])
    job = planning.select_jobs(args, toy=False)[0]
    cfg = run_config(job, data, args)
    preflight.check_pretrained(cfg, args.pretrained, "coco", job.model.name)


def test_resnet50_weights_are_refused(capsys, pretrained_files, toy_coco, tmp_path, no_launch):
    path = pretrained_files["resnet50.pth"]
    code, _, err = _main(capsys, "--configs", FPN, "--data", str(toy_coco), "--pretrained", str(path),
                         "--cfg-options", *runs.FIT_TOY_COCO, "--work-dir", str(tmp_path))
    assert code == 2 and str(path) in err
    assert "do not fit that RedNet: missing 133: layer1.0.conv2.conv1.bn.bias" in err  # the involutions
    assert "unexpected 22: bn1.bias" in err  # ResNet's stem
    assert "looks like a ResNet" in err and "convert_checkpoint.py paddleclas" in err


def test_imagenet_rednet_into_the_7x7_stem_loads_all_but_the_stem_generator(capsys, pretrained_files, toy_coco):
    _check_pretrained(pretrained_files["rednet50_imagenet.pth"], toy_coco)  # accepted
    note = capsys.readouterr().out
    assert "stem.1.conv2.conv.bias, stem.1.conv2.conv.weight keep their initialisation" in note
    # 32 stem channels in 2 groups of 16: K*K*2 kernel values per pixel, 3x3 -> 18, 7x7 -> 98
    assert "has 18 outputs, the backbone's 98" in note and note.count("note:") == 1
    _check_pretrained(pretrained_files["rednet50_stem7.pth"], toy_coco)
    assert "note" not in capsys.readouterr().out  # every tensor fits: nothing to say
    # with the ImageNet stem configured, the 7x7 file is the one that no longer fits
    _check_pretrained(pretrained_files["rednet50_imagenet.pth"], toy_coco, ["model.backbone.stem_kernel_size=3"])
    with pytest.raises(preflight.PreflightError, match=r"stem.1.conv2.conv.weight \(98, 8, 1, 1\) "
                                                       r"\(expected \(18, 8, 1, 1\)\)"):
        _check_pretrained(pretrained_files["rednet50_stem7.pth"], toy_coco, ["model.backbone.stem_kernel_size=3"])


def test_other_depth_and_prefixed_files_are_refused(pretrained_files, toy_coco, tmp_path):
    shallow = tmp_path / "rednet26.pth"
    torch.save({"state_dict": RedNet(26, stem_kernel_size=3).state_dict()}, shallow)
    with pytest.raises(preflight.PreflightError, match=r"missing \d+: layer1.1.bn1.bias"):
        _check_pretrained(shallow, toy_coco)
    classifier = tmp_path / "mmcls.pth"
    state = torch.load(pretrained_files["rednet50_imagenet.pth"], weights_only=True)["state_dict"]
    torch.save({"state_dict": {"backbone." + k: v for k, v in state.items()}}, classifier)
    with pytest.raises(preflight.PreflightError, match="start with 'backbone.'.*convert_checkpoint.py imagenet"):
        _check_pretrained(classifier, toy_coco)


def test_the_configs_own_pretrained_file_is_checked_too(pretrained_files, toy_coco):
    path = pretrained_files["resnet50.pth"]
    args = cli.parse_args([*GROUP, "--configs", FPN, "--data", str(toy_coco), "--cfg-options",
                           "model.bbox_head.num_classes=3", f"model.backbone.init_cfg.checkpoint={path}"])
    job = planning.select_jobs(args, toy=False)[0]
    cfg = run_config(job, toy_coco, args)
    with pytest.raises(preflight.PreflightError, match=f"{path} \\(for model.backbone of {FPN}\\) do not fit"):
        preflight.check_pretrained(cfg, args.pretrained, "coco", job.model.name)


# ------------------------------------------------------------------ CKPT against the model

@pytest.fixture(scope="module")
def fpn_checkpoint(tmp_path_factory):
    """A checkpoint of the toy retinanet_red50_fpn model as mmengine's Runner writes it."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmdet.registry import MODELS

    cfg = Config.fromfile(str(ROOT / "det_configs" / "toy" / "retinanet_red50_fpn_toy.py"))
    init_default_scope("mmdet")
    model = MODELS.build(cfg.model)
    path = tmp_path_factory.mktemp("ckpt") / "fpn.pth"
    torch.save({"state_dict": model.state_dict(),
                "meta": {"experiment_name": "retinanet_red50_fpn_toy_20260101_120000", "iter": 80,
                         "cfg": cfg.pretty_text}}, path)
    return path


def _place(checkpoint, root, config):
    path = root / "work_dirs" / "coco" / config / "20260101-120000" / "iter_80.pth"
    path.parent.mkdir(parents=True)
    shutil.copy(checkpoint, path)
    return path


def test_checkpoint_of_the_other_config_is_refused(capsys, fpn_checkpoint, tmp_path, no_launch):
    path = _place(fpn_checkpoint, tmp_path, NECK)
    code, _, err = _main(capsys, "--ckpt", str(path), "--work-dir", str(tmp_path / "work_dirs"))
    assert code == 2 and f"CKPT={path} does not fit {NECK}" in err
    assert "missing" in err and "neck.fpn_convs.0.conv1.conv.weight" in err
    assert "unexpected" in err and "neck.fpn_convs.0.conv.weight" in err
    assert "config retinanet_red50_fpn_toy (experiment retinanet_red50_fpn_toy_20260101_120000)" in err
    assert "neck FPN" in err and f"its tensors fit {FPN} of this target" in err


def test_ckpt_is_evaluated_with_the_config_of_its_run_folder(fpn_checkpoint, tmp_path, capsys, monkeypatch):
    """CKPT next to a run's config.py: the evaluation folder gets that config (here with a setting the
    group's config lacks), set to load the checkpoint, and scripts/test.py starts on it."""
    from mmengine.config import Config

    from involution_ops.bench import runconfig

    path = _place(fpn_checkpoint, tmp_path, FPN)
    args = cli.parse_args([*GROUP, "--configs", FPN, "--cfg-options", "model.test_cfg.score_thr=0.123"])
    job = planning.select_jobs(args, toy=True)[0]
    runconfig.place_in_run_dir(run_config(job, planning.resolve_data(args)[0], args), path.parent)
    launched = []
    monkeypatch.setattr(subprocess, "run", lambda command, **kw: launched.append(command)
                        or subprocess.CompletedProcess(command, 0))
    code, out, err = _main(capsys, "--ckpt", str(path), "--work-dir", str(tmp_path / "work_dirs"))
    assert code == 0, err
    (command,) = launched
    assert command[1].endswith("test.py") and Path(command[2]).parent.name.endswith("-eval")
    evaluated = Config.fromfile(command[2])
    assert evaluated.model.test_cfg.score_thr == 0.123 and evaluated.load_from == str(path.resolve())
    assert "init_cfg" not in evaluated.model.backbone
    assert f"using the config it was trained with: {runconfig.relative(path.parent / 'config.py')}" in out


def test_checkpoint_is_matched_by_content(capsys, fpn_checkpoint, tmp_path):
    args = cli.parse_args([*GROUP])
    data_root, _ = planning.resolve_data(args)
    jobs = planning.select_jobs(args, toy=True)
    configs = {job.model.name: run_config(job, data_root, args) for job in jobs}
    placed = _place(fpn_checkpoint, tmp_path, FPN)
    assert [j.model.name for j in preflight.match_checkpoint(jobs, str(placed), configs)] == [FPN]
    loose = tmp_path / "somewhere" / "weights.pth"  # no folder name and no experiment name: content decides
    loose.parent.mkdir()
    state = torch.load(fpn_checkpoint, weights_only=True)["state_dict"]
    torch.save({"state_dict": state}, loose)
    assert [j.model.name for j in preflight.match_checkpoint(jobs, str(loose), configs)] == [FPN]
    del state["bbox_head.retina_cls.bias"]
    torch.save({"state_dict": state}, loose)
    with pytest.raises(preflight.PreflightError, match="missing 1: bbox_head.retina_cls.bias.*fits no config"):
        preflight.match_checkpoint(jobs, str(loose), configs)


def test_evaluation_refuses_a_model_the_checkpoint_does_not_fit(fpn_checkpoint):
    """The evaluation process checks the built model itself (used alone, without the pre-flight)."""
    from involution_ops.bench import weight_checks
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmdet.registry import MODELS

    checkpoint = weight_checks.read_checkpoint(str(fpn_checkpoint), "checkpoint")
    init_default_scope("mmdet")
    for config, fits in (("retinanet_red50_fpn_toy.py", True), ("retinanet_red50_neck_fpn_toy.py", False)):
        cfg = Config.fromfile(str(ROOT / "det_configs" / "toy" / config))
        problem = run_process.checkpoint_problem(checkpoint, MODELS.build(cfg.model), config)
        assert (problem is None) == fits, problem
    # 3 backbone levels get an involution (7 tensors besides the BN counter) instead of a conv (2)
    assert f"checkpoint {fpn_checkpoint} does not fit" in problem and "mis-shaped" not in problem
    assert "missing 21: neck.fpn_convs.0.conv1.bn.bias" in problem
    assert "unexpected 6: neck.fpn_convs.0.conv.bias" in problem
