"""Checkpoint conversion on synthetic checkpoints written in each official layout
(built from our model with the inverse naming), incl. every error path."""
from __future__ import annotations

import os
import pickle
import subprocess
import sys

import pytest
import torch

from support import REPO_ROOT as REPO, require
from involution_ops import RedNet
from involution_ops.conversion import CheckpointMismatchError, convert_legacy_openmmlab
from involution_ops.safe_load import UnsafeFileError, load_torch_file

from involution_ops import convert_command as convert_checkpoint  # noqa: E402

HAS_MMDET = require.available("mmdet")


@pytest.fixture(scope="module")
def trained():
    """A RedNet-26 classifier with random weights and non-trivial BN statistics."""
    torch.manual_seed(0)
    model = RedNet(26, num_classes=1000)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("running_var"):
                tensor.uniform_(0.5, 2.0)
            elif name.endswith("num_batches_tracked"):
                tensor.fill_(1234)
            elif tensor.is_floating_point():
                tensor.normal_(0, 0.05)
    return model.eval()


def mmcls_layout(model: RedNet) -> dict:
    state = {("head." + k if k.startswith("fc.") else "backbone." + k): v.clone() for k, v in model.state_dict().items()}
    return {"state_dict": state, "meta": {"CLASSES": ["class"] * 1000, "mmcls_version": "0.10.0"}}


def paddle_layout(model: RedNet) -> dict:
    params = {}
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        key = key.replace("running_mean", "_mean").replace("running_var", "_variance")
        array = value.numpy().copy()
        params[key] = array.T.copy() if key == "fc.weight" else array
    params["StructuredToParameterName@@"] = {k: f"param_{i}" for i, k in enumerate(params)}
    # Some Paddle versions pickle a tensor as (parameter name, array).
    params["stem.0.conv.weight"] = ("conv2d_0.w_0", params["stem.0.conv.weight"])
    return params


def run(*argv: str) -> int:
    return convert_checkpoint.main(list(argv))


def features(model: RedNet, x: torch.Tensor):
    with torch.no_grad():
        return model(x)


def test_imagenet_checkpoint_to_backbone_file(tmp_path, trained):
    src, out = tmp_path / "mmcls.pth", tmp_path / "backbone.pth"
    torch.save(mmcls_layout(trained), src)
    assert run("imagenet", str(src), str(out)) == 0
    converted = load_torch_file(out)
    assert not any(k.startswith(("backbone.", "fc.")) for k in converted["state_dict"])
    assert converted["meta"]["arch"] == {"depth": 26, "stem_kernel_size": 3, "num_classes": 0}
    backbone = RedNet(26, out_indices=(0, 1, 2, 3)).eval()
    backbone.load_state_dict(converted["state_dict"], strict=True)
    x = torch.randn(1, 3, 32, 32)
    reference = RedNet(26, out_indices=(0, 1, 2, 3)).eval()
    reference.load_state_dict({k: v for k, v in trained.state_dict().items() if not k.startswith("fc.")})
    for a, b in zip(features(backbone, x), features(reference, x)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_imagenet_keep_head_gives_identical_logits(tmp_path, trained):
    src, out = tmp_path / "mmcls.pth", tmp_path / "classifier.pth"
    torch.save(mmcls_layout(trained), src)
    assert run("imagenet", str(src), str(out), "--keep-head") == 0
    model = RedNet(26, num_classes=1000).eval()
    model.load_state_dict(load_torch_file(out)["state_dict"], strict=True)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(features(model, x), features(trained, x), rtol=0, atol=0)


def test_paddleclas_pdparams_without_paddle(tmp_path, trained):
    src, out = tmp_path / "RedNet26_pretrained.pdparams", tmp_path / "from_paddle.pth"
    with open(src, "wb") as f:
        pickle.dump(paddle_layout(trained), f, protocol=2)
    assert run("paddleclas", str(src), str(out), "--keep-head") == 0
    converted = load_torch_file(out)["state_dict"]
    assert converted["fc.weight"].shape == (1000, 2048)
    assert converted["layer1.0.bn1.num_batches_tracked"].item() == 0
    model = RedNet(26, num_classes=1000).eval()
    model.load_state_dict(converted, strict=True)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(features(model, x), features(trained, x), rtol=1e-6, atol=1e-6)


def test_pdparams_with_code_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    src = tmp_path / "evil.pdparams"
    with open(src, "wb") as f:
        pickle.dump({"stem.0.conv.weight": Payload()}, f)
    with pytest.raises(UnsafeFileError, match="evil.pdparams"):
        convert_checkpoint.convert("paddleclas", str(src))
    assert run("paddleclas", str(src), str(tmp_path / "o.pth")) == 1
    assert not (tmp_path / "o.pth").exists()


def mm2_detector(stem_kernel: int = 7) -> dict:
    torch.manual_seed(1)
    backbone = RedNet(50, stem_kernel_size=stem_kernel).state_dict()
    state = {"backbone." + k: v for k, v in backbone.items()}
    state.update({
        "neck.lateral_convs.0.conv.weight": torch.randn(256, 256, 1, 1),
        "neck.fpn_convs.0.conv1.conv.weight": torch.randn(64, 256, 1, 1),
        "neck.fpn_convs.0.conv2.conv.weight": torch.randn(784, 64, 1, 1),
        "rpn_head.rpn_cls.weight": torch.randn(3, 256, 1, 1),
    })
    return {
        "state_dict": state,
        "meta": {"CLASSES": ("person", "car"), "PALETTE": [(1, 2, 3), (4, 5, 6)], "mmdet_version": "2.11.0",
                 "config": "model = dict(...)", "epoch": 12},
        "optimizer": {"state": {}, "param_groups": []},
    }


def test_mmdet2_checkpoint_to_mmdet3(tmp_path):
    source = mm2_detector()
    src, out = tmp_path / "det2.pth", tmp_path / "det3.pth"
    torch.save(source, src)
    assert run("mmdet", str(src), str(out)) == 0
    converted = load_torch_file(out)
    assert set(converted) == {"state_dict", "meta"}  # optimizer state dropped
    assert converted["meta"]["dataset_meta"] == {"classes": ("person", "car"), "palette": [[1, 2, 3], [4, 5, 6]]}
    assert converted["meta"]["arch"] == {"depth": 50, "stem_kernel_size": 7}
    assert converted["meta"]["source_meta"]["mmdet_version"] == "2.11.0"
    for key, value in source["state_dict"].items():
        assert torch.equal(converted["state_dict"][key], value)


def test_mm2_full_check_against_reference_shapes():
    source = mm2_detector()
    reference = {k: v.shape for k, v in source["state_dict"].items()}
    convert_legacy_openmmlab(source, "mmdet", reference=reference)
    del reference["rpn_head.rpn_cls.weight"]
    reference["rpn_head.rpn_reg.weight"] = torch.Size([12, 256, 1, 1])
    reference["neck.fpn_convs.0.conv2.conv.weight"] = torch.Size([144, 64, 1, 1])
    with pytest.raises(CheckpointMismatchError) as error:
        convert_legacy_openmmlab(source, "mmdet", reference=reference)
    message = str(error.value)
    assert "missing 1: rpn_head.rpn_reg.weight" in message
    assert "unexpected 1: rpn_head.rpn_cls.weight" in message
    assert "neck.fpn_convs.0.conv2.conv.weight (784, 64, 1, 1) (expected (144, 64, 1, 1))" in message


@pytest.mark.parametrize(
    "corrupt,message",
    [
        (lambda s: s.pop("backbone.layer2.1.bn2.running_var"), "missing 1: layer2.1.bn2.running_var"),
        (lambda s: s.__setitem__("backbone.layer1.0.extra", torch.zeros(1)), "unexpected 1: layer1.0.extra"),
        (lambda s: s.__setitem__("backbone.layer3.0.conv1.weight", torch.zeros(256, 512, 3, 3)),
         r"layer3.0.conv1.weight \(256, 512, 3, 3\) \(expected \(256, 512, 1, 1\)\)"),
        (lambda s: s.__setitem__("head.fc.extra", torch.zeros(1)), "unexpected 1: fc.extra"),
        (lambda s: s.__setitem__("neck.something", torch.zeros(1)), "outside backbone/head.fc: neck.something"),
        (lambda s: [s.pop(k) for k in list(s) if k.startswith("backbone.layer3.3.")], "match no RedNet depth"),
    ],
)
def test_imagenet_errors_name_the_keys(tmp_path, trained, corrupt, message):
    checkpoint = mmcls_layout(trained)
    corrupt(checkpoint["state_dict"])
    with pytest.raises(CheckpointMismatchError, match=message):
        convert_checkpoint.conversion.convert_imagenet(checkpoint, keep_head=True)


def test_paddle_errors_name_the_keys(trained):
    params = paddle_layout(trained)
    params.pop("StructuredToParameterName@@")
    params["stem.0.conv.weight"] = params["stem.0.conv.weight"][1]
    params["fc.weight"] = params["fc.weight"].T.copy()  # a file already (out, in)
    params.pop("layer4.0.bn3._variance")
    with pytest.raises(CheckpointMismatchError) as error:
        convert_checkpoint.conversion.convert_paddleclas(params, keep_head=True)
    assert "missing 1: layer4.0.bn3.running_var" in str(error.value)
    assert "fc.weight (2048, 1000) (expected (1000, 2048))" in str(error.value)
    with pytest.raises(CheckpointMismatchError, match="not arrays: stem.0.conv.weight"):
        convert_checkpoint.conversion.convert_paddleclas({"stem.0.conv.weight": [1.0]})


def test_wrong_source_kind_and_missing_head_are_explained(trained):
    with pytest.raises(CheckpointMismatchError, match="not an mmcls RedNet checkpoint"):
        convert_checkpoint.conversion.convert_imagenet({"stem.0.conv.weight": torch.zeros(1)})
    with pytest.raises(CheckpointMismatchError, match="not an mmseg model checkpoint"):
        convert_legacy_openmmlab({"state_dict": {"decode_head.conv_seg.weight": torch.zeros(1)}}, "mmseg")
    with pytest.raises(CheckpointMismatchError, match="outside the modules of an mmseg model"):
        convert_legacy_openmmlab(mm2_detector(), "mmseg")
    backbone_only = mmcls_layout(trained)
    backbone_only["state_dict"] = {k: v for k, v in backbone_only["state_dict"].items() if not k.startswith("head.")}
    with pytest.raises(CheckpointMismatchError, match="no fc weights"):
        convert_checkpoint.conversion.convert_imagenet(backbone_only, keep_head=True)


def test_existing_output_is_kept_unless_forced(tmp_path, trained, capsys):
    src, out = tmp_path / "mmcls.pth", tmp_path / "exists.pth"
    torch.save(mmcls_layout(trained), src)
    out.write_bytes(b"user data")
    assert run("imagenet", str(src), str(out)) == 1
    assert "--force" in capsys.readouterr().err
    assert out.read_bytes() == b"user data"
    assert run("imagenet", str(src), str(out), "--force") == 0
    assert "stem.0.conv.weight" in load_torch_file(out)["state_dict"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".converting-")] == []


@pytest.mark.parametrize("how", ["same path", "relative path", "symlink", "hard link"])
@pytest.mark.parametrize("force", [False, True])
def test_input_is_never_written_over(tmp_path, trained, capsys, monkeypatch, how, force):
    src = tmp_path / "mmcls.pth"
    torch.save(mmcls_layout(trained), src)
    before = src.read_bytes()
    out = {"same path": src, "relative path": tmp_path / "sub" / ".." / "mmcls.pth",
           "symlink": tmp_path / "link.pth", "hard link": tmp_path / "hard.pth"}[how]
    (tmp_path / "sub").mkdir()
    if how == "symlink":
        out.symlink_to(src)
    elif how == "hard link":
        os.link(src, out)
    assert run("imagenet", str(src), str(out), *(["--force"] if force else [])) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: ") and "never writes over its input" in error and error.count("\n") == 1
    assert src.read_bytes() == before
    assert out.read_bytes() == before  # the link still reaches the untouched input
    assert not any(p.name.startswith(".converting-") for p in tmp_path.iterdir())


def test_save_checkpoint_refuses_its_input(tmp_path):
    from involution_ops.conversion import save_checkpoint

    src = tmp_path / "in.pth"
    src.write_bytes(b"user data")
    os.link(src, tmp_path / "again.pth")
    with pytest.raises(FileExistsError, match="never writes over its input"):
        save_checkpoint({"state_dict": {}}, tmp_path / "again.pth", force=True, inputs=(src,))
    assert src.read_bytes() == b"user data"


def test_failed_conversion_writes_nothing(tmp_path, trained):
    checkpoint = mmcls_layout(trained)
    checkpoint["state_dict"].pop("backbone.stem.2.weight")
    src, out = tmp_path / "broken.pth", tmp_path / "out.pth"
    torch.save(checkpoint, src)
    assert run("imagenet", str(src), str(out)) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.pth"]


def test_command_line_entry_point(tmp_path, trained):
    src, out = tmp_path / "mmcls.pth", tmp_path / "cli.pth"
    torch.save(mmcls_layout(trained), src)
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "convert_checkpoint.py"), "imagenet", str(src), str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "RedNet-26 (stem involution 3x3)" in result.stdout
    bad = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "convert_checkpoint.py"), "mmdet", str(src), str(tmp_path / "x.pth")],
        capture_output=True, text=True, timeout=300,
    )
    assert bad.returncode == 1 and "outside the modules of an mmdet model" in bad.stderr and "head.fc.bias" in bad.stderr


@pytest.mark.slow
@pytest.mark.skipif(not HAS_MMDET, reason="mmdet is not installed")
@pytest.mark.parametrize(
    "framework,config",
    [("mmdet", "det_configs/_base_/models/faster_rcnn_red50_neck_fpn_head.py"),
     ("mmdet", "det_configs/_base_/models/retinanet_red50_neck_fpn.py"),
     ("mmseg", "seg_configs/_base_/models/fpn_red50_neck.py")],
)
def test_mm2_checkpoint_checked_against_a_real_config(tmp_path, framework, config):
    path = os.path.join(REPO, config)
    shapes = convert_checkpoint.conversion.model_shapes_from_config(path, framework)
    neck = official_involution("neck.fpn_convs.0")
    assert {k: tuple(shapes[k]) for k in neck} == neck  # the official involution FPN names
    torch.manual_seed(2)
    state = {k: torch.randn(s) if len(s) else torch.tensor(0) for k, s in shapes.items()}
    src, out = tmp_path / "det2.pth", tmp_path / "det3.pth"
    torch.save({"state_dict": state, "meta": {"CLASSES": ("a", "b")}}, src)
    assert run(framework, str(src), str(out), "--config", path) == 0
    assert load_torch_file(out)["meta"]["dataset_meta"] == {"classes": ("a", "b")}
    state.pop(next(k for k in state if k.startswith("neck.fpn_convs.0.conv2")))
    torch.save({"state_dict": state}, src)
    assert run(framework, str(src), str(tmp_path / "again.pth"), "--config", path) == 1
    assert not (tmp_path / "again.pth").exists()


def official_involution(prefix: str, channels: int = 256, kernel: int = 7) -> dict[str, tuple]:
    """Keys of the official mmdet 2.x `involution(channels, kernel, 1)` (ConvModule naming)."""
    reduced, generated = channels // 4, kernel * kernel * channels // 16
    shapes = {f"{prefix}.conv1.conv.weight": (reduced, channels, 1, 1),
              f"{prefix}.conv2.conv.weight": (generated, reduced, 1, 1), f"{prefix}.conv2.conv.bias": (generated,)}
    for stat in ("weight", "bias", "running_mean", "running_var"):
        shapes[f"{prefix}.conv1.bn.{stat}"] = (reduced,)
    shapes[f"{prefix}.conv1.bn.num_batches_tracked"] = ()
    return shapes


@pytest.mark.slow
@pytest.mark.skipif(not HAS_MMDET, reason="mmdet is not installed")
def test_our_mask_rcnn_has_the_official_involution_neck_and_head_keys():
    """Key names read off the official FPN_involution, RPNHead_involution and
    FCNMaskHead_involution (Sequential(involution, ReLU) per conv), written out here."""
    path = os.path.join(REPO, "det_configs", "_base_", "models", "mask_rcnn_red50_neck_fpn_head.py")
    shapes = {k: tuple(v) for k, v in convert_checkpoint.conversion.model_shapes_from_config(path, "mmdet").items()}
    official = {}
    for level in range(4):
        official.update(official_involution(f"neck.fpn_convs.{level}"))
        official.update(official_involution(f"roi_head.mask_head.convs.{level}.0"))
    official.update(official_involution("rpn_head.rpn_conv"))
    official.update({"rpn_head.rpn_cls.weight": (3, 256, 1, 1), "rpn_head.rpn_reg.weight": (12, 256, 1, 1),
                     "roi_head.mask_head.conv_logits.weight": (80, 256, 1, 1)})
    backbone = convert_checkpoint.conversion.rednet_shapes(50, stem_kernel_size=7)
    official.update({"backbone." + k: tuple(v) for k, v in backbone.items()})
    assert {k: shapes.get(k) for k in official} == official


@pytest.mark.slow
@pytest.mark.skipif(not HAS_MMDET, reason="mmdet is not installed")
def test_backbone_file_loads_through_mmengine_pretrained_init(tmp_path, trained):
    """The documented use: init_cfg=dict(type='Pretrained', checkpoint=<backbone file>)."""
    from involution_ops.openmmlab.models import RedNet as MMRedNet

    src, out = tmp_path / "mmcls.pth", tmp_path / "rednet26_imagenet.pth"
    torch.save(mmcls_layout(trained), src)
    assert run("imagenet", str(src), str(out)) == 0
    backbone = MMRedNet(26, stem_kernel_size=3, init_cfg=dict(type="Pretrained", checkpoint=str(out)))
    backbone.init_weights()
    expected = {k: v for k, v in trained.state_dict().items() if not k.startswith("fc.")}
    loaded = backbone.state_dict()
    assert set(loaded) == set(expected)
    for key, value in expected.items():
        assert torch.equal(loaded[key], value), key


@pytest.mark.parametrize("source", ["imagenet", "mmdet", "paddleclas"])
@pytest.mark.parametrize("content,what", [
    (b"see https://example.org/weights\n", "text file"),
    ("truncated", "incomplete or damaged"),
])
def test_unreadable_input_is_one_message(tmp_path, trained, capsys, source, content, what):
    src, out = tmp_path / "input.pth", tmp_path / "out.pth"
    if content == "truncated":
        torch.save(mmcls_layout(trained), src)
        content = src.read_bytes()[:20000]
    src.write_bytes(content)
    assert run(source, str(src), str(out)) == 1
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and str(src) in err and "Fix:" in err and "Traceback" not in err
    if source != "paddleclas":  # a .pdparams reader sees no zip or text, only a broken pickle
        assert what in err
    assert not out.exists()
