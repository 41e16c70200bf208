"""Checkpoint conversion against key lists written out from the official model definitions.

tests/fixtures/official_layouts/ holds, as data, the state-dict keys and shapes of the official
mmcls RedNet-26/50 ImageNet checkpoints and the parameter names and shapes of the PaddleClas
RedNet-26/50 weights (each file cites its source and says how the list follows from it). A fake
checkpoint with random tensors under exactly those names goes through scripts/convert_checkpoint.py;
every tensor must then sit, unchanged, where the mapping below (read off the two layouts, not off
our converter) says it belongs in our RedNet. tests/models/test_checkpoints.py covers the error paths
with sources built from our own model.
"""
from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch

from involution_ops import RedNet
from involution_ops.safe_load import load_torch_file

from support import REPO_ROOT as REPO
from involution_ops import convert_command as convert_checkpoint  # noqa: E402

FIXTURES = REPO / "tests" / "fixtures" / "official_layouts"
PUBLISHED_PARAMS_M = {26: 9.23, 50: 15.54}


def read_layout(name: str) -> dict[str, tuple[int, ...]]:
    layout = {}
    for line in (FIXTURES / name).read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        key, shape = line.split()
        assert key not in layout, f"{name}: {key} listed twice"
        layout[key] = () if shape == "scalar" else tuple(int(v) for v in shape.split("x"))
    return layout


def mmcls_to_ours(key: str) -> str:
    """The classifier's backbone is our RedNet; LinearClsHead's fc is our fc."""
    if key.startswith("backbone."):
        return key[len("backbone."):]
    if key.startswith("head.fc."):
        return "fc." + key[len("head.fc."):]
    raise AssertionError(f"no place for {key}")


def paddle_to_ours(key: str) -> str:
    """Same module names; only Paddle's batch-norm statistics are named differently."""
    for paddle, torch_name in (("._mean", ".running_mean"), ("._variance", ".running_var")):
        if key.endswith(paddle):
            return key[: -len(paddle)] + torch_name
    return key


def assert_same_tensors(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    missing, extra = sorted(set(expected) - set(actual)), sorted(set(actual) - set(expected))
    assert not missing and not extra, f"missing {missing[:5]}, unexpected {extra[:5]}"
    wrong = [k for k in expected if actual[k].dtype != expected[k].dtype or not torch.equal(actual[k], expected[k])]
    assert not wrong, f"{len(wrong)} tensors not where they belong, e.g. {wrong[:5]}"


def random_tensors(layout: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        key: torch.randint(1, 10**6, (), generator=generator) if key.endswith("num_batches_tracked")
        else torch.randn(shape, generator=generator)
        for key, shape in layout.items()
    }


@pytest.mark.parametrize("depth", [26, 50])
def test_fixtures_agree_with_each_other_and_the_published_sizes(depth):
    """The two independently derived layouts describe the same network, of the published size."""
    mmcls = {mmcls_to_ours(k): s for k, s in read_layout(f"mmcls_rednet{depth}.txt").items()}
    paddle = {paddle_to_ours(k): s for k, s in read_layout(f"paddleclas_rednet{depth}.txt").items()}
    assert paddle.pop("fc.weight") == (2048, 1000) and mmcls["fc.weight"] == (1000, 2048)
    assert {k: s for k, s in mmcls.items() if not k.endswith("num_batches_tracked") and k != "fc.weight"} == paddle
    statistics = ("running_mean", "running_var", "num_batches_tracked")
    learned = sum(math.prod(s) for k, s in mmcls.items() if not k.endswith(statistics))
    assert round(learned / 1e6, 2) == PUBLISHED_PARAMS_M[depth]


@pytest.mark.parametrize("depth", [26, 50])
def test_official_mmcls_checkpoint_lands_in_place(tmp_path, depth):
    official = random_tensors(read_layout(f"mmcls_rednet{depth}.txt"), seed=depth)
    src = tmp_path / f"rednet{depth}_official.pth"
    torch.save({"state_dict": official, "meta": {"mmcls_version": "0.10.0", "CLASSES": ["c"] * 1000}}, src)

    classifier, backbone = tmp_path / "classifier.pth", tmp_path / "backbone.pth"
    assert convert_checkpoint.main(["imagenet", str(src), str(classifier), "--keep-head"]) == 0
    assert convert_checkpoint.main(["imagenet", str(src), str(backbone)]) == 0
    expected = {mmcls_to_ours(k): v for k, v in official.items()}
    converted = load_torch_file(classifier)["state_dict"]
    assert_same_tensors(converted, expected)
    without_head = {k: v for k, v in expected.items() if not k.startswith("fc.")}
    assert_same_tensors(load_torch_file(backbone)["state_dict"], without_head)

    model = RedNet(depth, num_classes=1000)
    model.load_state_dict(converted, strict=True)
    assert_same_tensors(model.state_dict(), expected)


@pytest.mark.parametrize("depth", [26, pytest.param(50, marks=pytest.mark.slow)])
def test_paddleclas_weights_land_in_place(tmp_path, depth):
    layout = read_layout(f"paddleclas_rednet{depth}.txt")
    rng = np.random.RandomState(depth)
    params = {key: rng.standard_normal(shape).astype(np.float32) for key, shape in layout.items()}
    src = tmp_path / f"RedNet{depth}_pretrained.pdparams"
    with open(src, "wb") as f:  # paddle.save's format: a pickled dict of numpy arrays (+ a name table)
        names = {k: f"param_{i}" for i, k in enumerate(params)}
        pickle.dump({**params, "StructuredToParameterName@@": names}, f, protocol=2)

    out = tmp_path / "from_paddle.pth"
    assert convert_checkpoint.main(["paddleclas", str(src), str(out), "--keep-head"]) == 0
    expected = {paddle_to_ours(k): torch.from_numpy(v) for k, v in params.items()}
    expected["fc.weight"] = expected["fc.weight"].t()  # Paddle's Linear stores (in, out)
    # Paddle keeps no batch counter; every batch norm (one per `_mean`) gets a zero one.
    for key in [k for k in params if k.endswith("._mean")]:
        expected[key[: -len("_mean")] + "num_batches_tracked"] = torch.tensor(0)
    converted = load_torch_file(out)["state_dict"]
    assert_same_tensors(converted, expected)

    model = RedNet(depth, num_classes=1000)
    model.load_state_dict(converted, strict=True)
    assert_same_tensors(model.state_dict(), expected)


def test_value_check_notices_two_swapped_tensors_of_one_shape():
    """A converter that renamed bn1.weight <-> bn1.bias would keep every key and shape."""
    tensors = random_tensors(read_layout("mmcls_rednet26.txt"), seed=0)
    swapped = dict(tensors)
    a, b = "backbone.layer3.2.bn1.weight", "backbone.layer3.2.bn1.bias"
    swapped[a], swapped[b] = tensors[b], tensors[a]
    with pytest.raises(AssertionError, match="layer3.2.bn1"):
        assert_same_tensors(swapped, tensors)
