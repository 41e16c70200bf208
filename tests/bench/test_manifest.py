"""The model manifest (results/paper.yaml through involution_ops/bench/manifest.py).

The expected model lists are the paper's tables, written out here by hand."""
from __future__ import annotations

import json

import pytest

from support import require

from involution_ops.bench.output import REPO_ROOT

yaml = require.module("yaml")
from involution_ops.bench.manifest import load_manifest  # noqa: E402

PAPER_GROUPS = {
    "coco": {
        "retinanet": ["retinanet_red50_fpn", "retinanet_red50_neck_fpn"],
        "faster_rcnn": ["faster_rcnn_red50_fpn", "faster_rcnn_red50_neck_fpn", "faster_rcnn_red50_neck_fpn_head"],
        "mask_rcnn": ["mask_rcnn_red50_fpn", "mask_rcnn_red50_neck_fpn", "mask_rcnn_red50_neck_fpn_head"],
    },
    "cityscapes": {"fpn": ["fpn_red50", "fpn_red50_neck"], "upernet": ["upernet_red50"]},
}
BASELINES = {"retinanet": "retinanet_r50_fpn", "faster_rcnn": "faster_rcnn_r50_fpn",
             "mask_rcnn": "mask_rcnn_r50_fpn", "fpn": "fpn_r50", "upernet": "upernet_r50"}
SUFFIX = {"coco": "_1x_coco", "cityscapes": "_512x1024_80k_cityscapes"}
CONFIG_DIR = {"coco": "det_configs", "cityscapes": "seg_configs"}


@pytest.mark.parametrize("suite", ["coco", "cityscapes"])
def test_groups_and_their_models_are_the_papers(manifest, suite):
    groups = PAPER_GROUPS[suite]
    assert manifest.groups(suite) == list(groups)
    assert manifest.default_data(suite) == f"data/{suite}"
    for group, stems in groups.items():
        models = manifest.target_models(suite, group)
        assert [model.name for model in models] == [stem + SUFFIX[suite] for stem in stems]
        with_baselines = manifest.target_models(suite, group, baselines=True)
        assert [model.name for model in with_baselines[len(models):]] == [BASELINES[group] + SUFFIX[suite]]
    everything = manifest.target_models(suite, "all", baselines=True)
    assert [model.name for model in everything] == (
        [stem + SUFFIX[suite] for stems in groups.values() for stem in stems]
        + [BASELINES[group] + SUFFIX[suite] for group in groups])
    with pytest.raises(ValueError, match="unknown .* group 'nope'"):
        manifest.target_models(suite, "nope")


@pytest.mark.parametrize("suite", ["coco", "cityscapes"])
def test_every_trained_model_names_existing_config_files(manifest, suite):
    folder = REPO_ROOT / CONFIG_DIR[suite]
    for model in manifest.target_models(suite, baselines=True):
        stem = model.name[: -len(SUFFIX[suite])]
        assert model.config_for(toy=False) == model.config == folder / f"{model.name}.py"
        assert model.config_for(toy=True) == model.toy_config == folder / "toy" / f"{stem}_toy.py"
        assert model.model_config == folder / "_base_" / "models" / f"{stem}.py"
        assert model.config.is_file() and model.toy_config.is_file() and model.model_config.is_file()
        assert manifest.toy_config(model.config.relative_to(REPO_ROOT)) == model.toy_config


def test_counted_models_are_the_rows_of_the_committed_complexity_table(manifest):
    committed = json.loads((REPO_ROOT / "results" / "complexity.json").read_text())
    assert [model.name for model in manifest.counted()] == [row["name"] for row in committed]


def _manifest(tmp_path, edit):
    paper = yaml.safe_load((REPO_ROOT / "results" / "paper.yaml").read_text())
    edit(paper)
    path = tmp_path / "paper.yaml"
    path.write_text(yaml.safe_dump(paper, sort_keys=False))
    return path


@pytest.mark.parametrize("edit, message", [
    (lambda paper: paper["coco"][0].pop("toy_config"), "faster_rcnn_red50_fpn_1x_coco .coco. lacks toy_config"),
    (lambda paper: paper["coco"][0].update(group="ssd"), "group 'ssd' is not listed in suites.coco.groups"),
    (lambda paper: paper["coco"].append(dict(paper["coco"][0])), "rows named twice: .'faster_rcnn_red50_fpn_1x_coco'."),
    (lambda paper: paper.pop("suites"), r"missing sections \['suites'\]"),
])
def test_a_broken_manifest_is_a_clear_error(tmp_path, edit, message):
    path = _manifest(tmp_path, edit)
    with pytest.raises(ValueError, match=f"{path}.*{message}"):
        load_manifest(path)


# A RetinaNet with half the classes, added as a new model: its configs inherit the suite's.
NEW = "retinanet_red50_fpn_40cls_1x_coco"
# Its classification conv (3x3 over 256 channels, 9 anchors per class) loses 40 classes' outputs
# at every position of the five FPN levels of a 800x1280 image (strides 8 to 128).
POSITIONS = 100 * 160 + 50 * 80 + 25 * 40 + 13 * 20 + 7 * 10
FEWER_MACS = POSITIONS * 9 * 40 * (3 * 3 * 256 + 1)  # + one bias add per output
FEWER_PARAMS = 9 * 40 * (3 * 3 * 256 + 1)


def test_a_model_added_to_the_manifest_reaches_jobs_flops_and_tables(tmp_path, openmmlab):
    from involution_ops.bench import flops, tables

    configs = {}
    for key, base in (("config", "det_configs/retinanet_red50_fpn_1x_coco.py"),
                      ("toy_config", "det_configs/toy/retinanet_red50_fpn_toy.py"),
                      ("model_config", "det_configs/_base_/models/retinanet_red50_fpn.py")):
        configs[key] = tmp_path / f"{key}.py"
        override = "" if key == "toy_config" else "model = dict(bbox_head=dict(num_classes=40))\n"
        configs[key].write_text(f"_base_ = [{str(REPO_ROOT / base)!r}]\n{override}")

    def add(paper: dict) -> None:
        paper["coco"].append({
            "name": NEW, "group": "retinanet", **{key: str(path) for key, path in configs.items()},
            "neck": "convolution", "head": None, "params_m": 12.5, "gflops": 150.5, "box_ap": 30.5, "mask_ap": None,
            "baseline": "retinanet_r50_fpn_1x_coco", "improvement": {"params_pct": 1.5, "gflops_pct": 2.5},
            "source": "a test"})

    manifest = load_manifest(_manifest(tmp_path, add))

    # the models make coco-retinanet runs
    models = manifest.target_models("coco", "retinanet")
    assert [model.name for model in models] == ["retinanet_red50_fpn_1x_coco", "retinanet_red50_neck_fpn_1x_coco", NEW]
    assert models[-1].config_for(toy=True) == configs["toy_config"]
    from involution_ops.bench.launch import cli, planning

    selected = planning.select_jobs(cli.parse_args(["coco", "retinanet"], manifest), toy=True, manifest=manifest)
    assert [(job.model.name, job.config) for job in selected][-1] == (NEW, configs["toy_config"])

    # make flops
    out, table = tmp_path / "complexity.json", tmp_path / "complexity.md"
    text = flops.make_flops(manifest, out, table, only=["retinanet_red50_fpn_1x_coco", NEW], notes=False,
                            progress=lambda message: None)
    original, new = json.loads(out.read_text())
    assert new["name"] == NEW and new["config"] == str(configs["model_config"])
    assert original["gflops_paper"] - new["gflops_paper"] == pytest.approx(FEWER_MACS / 1e9, abs=2e-4)
    assert original["params_trainable_m"] - new["params_trainable_m"] == pytest.approx(FEWER_PARAMS / 1e6, abs=2e-4)
    assert any(line.startswith(f"| {NEW} | coco | 3x800x1280 | 12.5 | {new['params_trainable_m']:.2f} |")
               for line in text.splitlines())

    # make tables, from that complexity file and a run record of the new model
    runs = tmp_path / "runs"
    runs.mkdir()
    full_split = {"suite": "coco", "split": "val2017", "images_listed": 5000, "images_evaluated": 5000}
    record = {"schema": 1, "name": NEW, "suite": "coco", "dataset": "coco", "metrics": {"bbox_AP": 31.3},
              "dataset_identity": full_split}  # only a run on the full official split reaches the paper's columns
    (runs / f"{NEW}__coco__20260110-100000.json").write_text(json.dumps(record))
    tables.make_tables(runs, out, manifest.path, tmp_path / "README.md", None)
    readme = (tmp_path / "README.md").read_text()
    coco = readme[readme.index("## COCO"):readme.index("## Cityscapes")]
    row = next(line for line in coco.splitlines() if line.startswith(f"| {NEW} |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[3:9] == ["12.5", f"{new['params_trainable_m']:.2f} ({new['params_total_m']:.2f})",
                          f"{new['params_trainable_m'] - 12.5:+.2f}", "150.5", f"{new['gflops_paper']:.1f}",
                          f"{new['gflops_paper'] - 150.5:+.1f}"]
    assert cells[9:12] == ["30.5", "31.3", "+0.8"]
