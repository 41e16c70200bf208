"""involution_ops/bench/tables/ (`make tables`) on the fixture records of tests/fixtures/tables.

Expected figures are computed here from the fixture files and results/paper.yaml
themselves, never copied from the script's output."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from support import require

require.module("yaml")

from involution_ops.bench import tables as bench_tables  # noqa: E402
from involution_ops.bench.output import REPO_ROOT as REPO  # noqa: E402

FIXTURES = REPO / "tests" / "fixtures" / "tables"
PAPER = REPO / "results" / "paper.yaml"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def paper_names() -> dict[str, list[str]]:
    """Row names per section of paper.yaml, read with a regex, not the script's loader."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in PAPER.read_text().splitlines():
        if re.match(r"^[a-z_]+:", line):
            current = line.split(":")[0]
        match = re.match(r"^  - name: (\S+)$", line)
        if match:
            sections.setdefault(current, []).append(match.group(1))
    return sections


def parse_markdown(text: str) -> dict[str, list[dict[str, str]]]:
    """Tables of the README by the heading above them: rows as {header: cell}."""
    tables: dict[str, list[dict[str, str]]] = {}
    heading, headers = None, None
    for line in text.splitlines():
        if line.startswith("## "):
            heading, headers = line[3:], None
        elif line.startswith("| ") and heading:
            cells = [cell.strip() for cell in line.strip()[2:-2].split(" | ")]
            if headers is None:
                headers = cells
                tables[heading] = []
            elif not set(cells) <= {"---", "---:"}:
                tables[heading].append(dict(zip(headers, cells, strict=True)))
        else:
            headers = None if not line.startswith("|") else headers
    return tables


def section(tables: dict, prefix: str) -> list[dict[str, str]]:
    matches = [rows for heading, rows in tables.items() if heading.startswith(prefix)]
    assert len(matches) == 1, f"no single table under a heading starting with {prefix!r}"
    return matches[0]


def row_of(rows: list[dict[str, str]], name: str) -> dict[str, str]:
    found = [row for row in rows if next(iter(row.values())).split(" ")[0] == name]
    assert len(found) == 1, f"{name}: {len(found)} rows"
    return found[0]


def first_number(cell: str) -> float:
    return float(re.match(r"[-+]?\d+(\.\d+)?", cell).group(0))


def fixture_record(stem: str) -> dict:
    return json.loads((FIXTURES / "runs" / f"{stem}.json").read_text())


def fixture_complexity(name: str) -> dict:
    rows = json.loads((FIXTURES / "complexity.json").read_text())
    return next(row for row in rows if isinstance(row, dict) and row["name"] == name)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Run make_tables once on a copy of the fixtures; return (README text, warnings, folder)."""
    folder = tmp_path_factory.mktemp("tables")
    shutil.copytree(FIXTURES / "runs", folder / "runs")
    shutil.copy(FIXTURES / "complexity.json", folder / "complexity.json")
    warnings = bench_tables.make_tables(folder / "runs", folder / "complexity.json", PAPER,
                                       folder / "README.md", folder / "complexity.png")
    return (folder / "README.md").read_text(), warnings, folder


def test_every_paper_row_appears_in_paper_order(built):
    tables = parse_markdown(built[0])
    names = paper_names()
    assert [len(names[key]) for key in ("imagenet", "coco", "cityscapes")] == [5, 8, 3]
    for key, prefix in (("imagenet", "ImageNet"), ("coco", "COCO"), ("cityscapes", "Cityscapes")):
        listed = [next(iter(row.values())).split(" ")[0] for row in section(tables, prefix)]
        listed = [name for name in listed if name != "↳"]
        assert listed == names[key]
    baselines = [row["Baseline"] for row in section(tables, "ResNet baselines") if row["Baseline"] != "↳ older run"]
    assert baselines == names["baselines"]


def test_published_figures_and_deltas(built):
    coco = section(parse_markdown(built[0]), "COCO")
    row = row_of(coco, "retinanet_red50_neck_fpn_1x_coco")
    newest = fixture_record("retinanet_red50_neck_fpn_1x_coco__coco__20260105-100000")
    ours = fixture_complexity("retinanet_red50_neck_fpn_1x_coco")
    paper_params, paper_flops, paper_ap = 26.3, 199.9, 38.2   # paper-tables, RetinaNet involution neck
    assert first_number(row["Params paper (M)"]) == paper_params
    assert first_number(row["GFLOPs paper"]) == paper_flops
    assert first_number(row["box AP paper"]) == paper_ap
    assert row["Params ours (M)"] == f"{ours['params_trainable_m']:.2f} ({ours['params_total_m']:.2f})"
    assert first_number(row["Params Δ"]) == pytest.approx(ours["params_trainable_m"] - paper_params, abs=0.006)
    assert first_number(row["GFLOPs Δ"]) == pytest.approx(ours["gflops_paper"] - paper_flops, abs=0.06)
    assert first_number(row["box AP ours"]) == newest["metrics"]["bbox_AP"]
    assert first_number(row["box AP Δ"]) == pytest.approx(newest["metrics"]["bbox_AP"] - paper_ap, abs=0.06)
    assert row["mask AP ours"] == row["mask AP Δ"] == "—"

    base = fixture_complexity("retinanet_r50_fpn_1x_coco")
    base_run = fixture_record("retinanet_r50_fpn_1x_coco__coco__20260103-100000")
    params_pct = (1 - ours["params_trainable_m"] / base["params_trainable_m"]) * 100
    flops_pct = (1 - ours["gflops_paper"] / base["gflops_paper"]) * 100
    gain = newest["metrics"]["bbox_AP"] - base_run["metrics"]["bbox_AP"]
    parts = [first_number(part.strip()) for part in row["vs ResNet-50 (ours)"].split("/")]
    assert parts == pytest.approx([params_pct, flops_pct, gain], abs=0.06)
    assert [first_number(p.strip()) for p in row["vs ResNet-50 (paper)"].split("/")] == [30.2, 16.5, 1.6]


def test_figures_fall_back_to_the_record_and_mask_ap(built):
    tables = parse_markdown(built[0])
    row = row_of(section(tables, "COCO"), "mask_rcnn_red50_fpn_1x_coco")  # no complexity row
    run = fixture_record("mask_rcnn_red50_fpn_1x_coco__coco__20260104-100000")
    base = fixture_record("mask_rcnn_r50_fpn_1x_coco__coco__20260104-110000")
    assert first_number(row["Params ours (M)"]) == run["params_trainable_m"]
    assert first_number(row["GFLOPs ours"]) == run["gflops_paper"]
    assert first_number(row["mask AP Δ"]) == pytest.approx(run["metrics"]["segm_AP"] - 35.7, abs=0.06)
    parts = [part.strip() for part in row["vs ResNet-50 (ours)"].split("/")]
    assert first_number(parts[2]) == pytest.approx(run["metrics"]["bbox_AP"] - base["metrics"]["bbox_AP"], abs=0.06)
    assert first_number(parts[3]) == pytest.approx(run["metrics"]["segm_AP"] - base["metrics"]["segm_AP"], abs=0.06)

    seg = row_of(section(tables, "Cityscapes"), "fpn_red50_512x1024_80k_cityscapes")
    seg_run = fixture_record("fpn_red50_512x1024_80k_cityscapes__cityscapes__20260106-100000")
    assert first_number(seg["mIoU Δ"]) == pytest.approx(seg_run["metrics"]["mIoU"] - 78.0, abs=0.06)

    imagenet = row_of(section(tables, "ImageNet"), "RedNet-50")
    red, res = fixture_complexity("RedNet-50"), fixture_complexity("ResNet-50")
    parts = [first_number(part.strip()) for part in imagenet["vs same-depth ResNet (ours)"].split("/")]
    assert parts == pytest.approx([(1 - red["params_trainable_m"] / res["params_trainable_m"]) * 100,
                                   (1 - red["gflops_paper"] / res["gflops_paper"]) * 100], abs=0.06)
    assert imagenet["Top-1 ours"] == "—"
    assert row_of(section(tables, "ImageNet"), "RedNet-26")["GFLOPs ours"] == "—"


def test_rows_without_a_run_show_dashes(built):
    row = row_of(section(parse_markdown(built[0]), "COCO"), "faster_rcnn_red50_neck_fpn_head_1x_coco")
    for header in ("Params ours (M)", "GFLOPs ours", "box AP ours", "box AP Δ", "vs ResNet-50 (ours)", "Run"):
        assert row[header] == "—"


def test_newest_run_counts_and_older_ones_are_listed_under_it(built):
    coco = section(parse_markdown(built[0]), "COCO")
    index = next(i for i, row in enumerate(coco) if row["Config"].split(" ")[0] == "retinanet_red50_neck_fpn_1x_coco")
    newest, older = coco[index], coco[index + 1]
    assert "20260105-100000" in newest["Run"]
    assert older["Config"] == "↳ older run" and "20260101-100000" in older["Run"]
    old = fixture_record("retinanet_red50_neck_fpn_1x_coco__coco__20260101-100000")
    assert first_number(older["box AP ours"]) == old["metrics"]["bbox_AP"]
    assert first_number(older["box AP Δ"]) == pytest.approx(old["metrics"]["bbox_AP"] - 38.2, abs=0.06)
    assert sum(row["Config"] == "↳ older run" for row in coco) == 1


def test_baseline_runs_newest_first_with_older_listed_under(built):
    rows = section(parse_markdown(built[0]), "ResNet baselines")
    index = next(i for i, row in enumerate(rows) if row["Baseline"] == "retinanet_r50_fpn_1x_coco")
    newest = fixture_record("retinanet_r50_fpn_1x_coco__coco__20260103-100000")
    older = fixture_record("retinanet_r50_fpn_1x_coco__coco__20260102-090000")
    assert rows[index]["Result ours"] == f"box {newest['metrics']['bbox_AP']:.1f}"
    assert "20260103-100000" in rows[index]["Run"]
    assert rows[index + 1]["Baseline"] == "↳ older run"
    assert rows[index + 1]["Result ours"] == f"box {older['metrics']['bbox_AP']:.1f}"
    assert "20260102-090000" in rows[index + 1]["Run"]


def test_toy_runs_stay_out_of_the_paper_columns(built):
    text = built[0]
    tables = parse_markdown(text)
    toy = fixture_record("retinanet_red50_neck_fpn_1x_coco__toy__20260109-100000")
    toy_ap = f"{toy['metrics']['bbox_AP']:.1f}"
    for prefix in ("ImageNet", "COCO", "Cityscapes", "ResNet baselines"):
        for row in section(tables, prefix):
            assert toy_ap not in row.values()
            assert "__toy__" not in row.get("Run", "")
    toy_rows = section(tables, "Toy runs")
    assert {row["Config"] for row in toy_rows} == {"retinanet_red50_neck_fpn_1x_coco",
                                                  "fpn_red50_neck_512x1024_80k_cityscapes"}
    retina = row_of(toy_rows, "retinanet_red50_neck_fpn_1x_coco")
    assert retina["box AP"] == toy_ap and retina["Iterations"] == str(toy["iterations"])
    assert retina["Loss first → last"] == f"{toy['loss_curve'][0][1]:.3f} → {toy['loss_curve'][-1][1]:.3f}"
    assert "fpn_red50_neck_512x1024_80k_cityscapes" not in [
        row["Config"].split(" ")[0] for row in section(tables, "Cityscapes") if row["Run"] != "—"]


def test_malformed_inputs_warn_with_their_file_and_the_rest_is_made(built):
    text, warnings, folder = built
    broken = str(folder / "runs" / "broken__coco__20260102-100000.json")
    wrong_schema = str(folder / "runs" / "retinanet_red50_fpn_1x_coco__coco__20260108-100000.json")
    assert any(broken in warning and "JSON" in warning for warning in warnings)
    assert any(wrong_schema in warning and "schema" in warning for warning in warnings)
    assert any(str(folder / "complexity.json") in warning and "row 6" in warning for warning in warnings)
    for warning in warnings:
        assert warning in text
    row = row_of(section(parse_markdown(text), "COCO"), "retinanet_red50_fpn_1x_coco")
    assert row["box AP ours"] == "—"  # the schema-2 record's 99.0 is not used
    assert len(section(parse_markdown(text), "COCO")) == 8 + 1


def test_fresh_checkout_without_records_or_complexity(tmp_path, capsys):
    missing = tmp_path / "complexity.json"
    warnings = bench_tables.make_tables(tmp_path / "runs", missing, PAPER, tmp_path / "README.md", None)
    assert any(str(missing) in warning for warning in warnings)
    assert str(missing) in capsys.readouterr().err
    tables = parse_markdown((tmp_path / "README.md").read_text())
    for prefix, count in (("ImageNet", 5), ("COCO", 8), ("Cityscapes", 3)):
        rows = section(tables, prefix)
        assert len(rows) == count and all(row["Run"] == "—" for row in rows)
    assert "No toy run recorded yet" in (tmp_path / "README.md").read_text()


def test_header_names_time_and_commit(built):
    header = built[0].splitlines()[:6]
    assert header[0] == bench_tables.GENERATED_MARKER
    made = next(line for line in header if line.startswith("Made on"))
    assert re.search(r"Made on \d{4}-\d\d-\d\d \d\d:\d\d UTC from (git commit `[0-9a-f]{12}`|an unknown)", made)


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def test_plots_are_valid_pngs(built):
    require.module("matplotlib")
    _, _, folder = built
    width, height = _png_size(folder / "complexity.png")
    assert width > 400 and height > 300
    toy_stems = sorted(path.stem for path in (folder / "runs").glob("*__toy__*.json"))
    assert sorted(path.stem for path in (folder / "plots").glob("*.png")) == toy_stems
    for stem in toy_stems:
        assert min(_png_size(folder / "plots" / f"{stem}.png")) > 100
    assert "](complexity.png)" in built[0] and f"(plots/{toy_stems[0]}.png)" in built[0]


def test_without_matplotlib_plots_are_skipped_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    warnings = bench_tables.make_tables(FIXTURES / "runs", FIXTURES / "complexity.json", PAPER,
                                       tmp_path / "README.md", tmp_path / "complexity.png")
    assert any("matplotlib" in warning for warning in warnings)
    assert not (tmp_path / "complexity.png").exists() and not (tmp_path / "plots").exists()
    assert "## Toy runs" in (tmp_path / "README.md").read_text()


def test_a_readme_not_made_by_the_script_is_never_overwritten(tmp_path):
    out = tmp_path / "README.md"
    out.write_text("my own notes\n")
    with pytest.raises(SystemExit, match="not made by this script"):
        bench_tables.make_tables(tmp_path / "runs", tmp_path / "c.json", PAPER, out, None)
    assert out.read_text() == "my own notes\n"


def test_command_line_as_make_tables_calls_it(tmp_path):
    shutil.copytree(FIXTURES / "runs", tmp_path / "runs")
    command = [sys.executable, str(REPO / "scripts" / "make_tables.py"), "--runs", "runs",
               "--complexity", str(FIXTURES / "complexity.json"), "--paper", str(PAPER),
               "--out", "out/README.md", "--plot", "out/complexity.png"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "broken__coco__20260102-100000.json" in done.stderr
    assert "wrote out/README.md" in done.stdout
    assert "retinanet_red50_neck_fpn_1x_coco" in (tmp_path / "out" / "README.md").read_text()
    missing = subprocess.run(command[:8] + [str(tmp_path / "nope.yaml")] + command[9:], cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "nope.yaml" in missing.stderr


def test_paper_yaml_is_consistent_with_its_published_reductions():
    """The derived baselines reproduce every published reduction and gain within rounding."""
    import yaml

    paper = yaml.safe_load(PAPER.read_text())
    baselines = {row["name"]: row for row in paper["baselines"]}
    for key, improvement_key in (("imagenet", "reduction"), ("coco", "improvement"), ("cityscapes", "improvement")):
        for row in paper[key]:
            base, published = baselines[row["baseline"]], row[improvement_key]
            assert (1 - row["params_m"] / base["params_m"]) * 100 == pytest.approx(published["params_pct"], abs=0.35)
            assert (1 - row["gflops"] / base["gflops"]) * 100 == pytest.approx(published["gflops_pct"], abs=0.2)
            for metric in ("box_ap", "mask_ap", "miou"):
                if published.get(metric) is not None:
                    assert row[metric] - base[metric] == pytest.approx(published[metric], abs=0.06)


def test_records_written_by_run_record_land_in_the_table(tmp_path):
    """Contract check with the writer of the records (involution_ops.bench.records)."""
    from involution_ops.bench import records as run_record

    metrics = run_record.metrics_from_mm({"coco/bbox_mAP": 0.392, "coco/bbox_mAP_50": 0.591})
    full_split = fixture_record("retinanet_r50_fpn_1x_coco__coco__20260103-100000")["dataset_identity"]
    for dataset, config in (("coco", "det_configs/retinanet_red50_fpn_1x_coco.py"),
                            ("toy", "det_configs/toy/retinanet_red50_fpn_toy.py")):
        run_record.write_record({"name": "retinanet_red50_fpn_1x_coco", "suite": "coco", "config": config,
                                 "dataset": dataset, "metrics": metrics, "loss_curve": [[1, 1.5], [2, 1.2]],
                                 "dataset_identity": full_split if dataset == "coco" else {"kind": "toy"},
                                 "started_at": run_record.now_iso()}, tmp_path / "runs")
    warnings = bench_tables.make_tables(tmp_path / "runs", FIXTURES / "complexity.json", PAPER,
                                       tmp_path / "README.md", None)
    assert not [warning for warning in warnings if "runs" in warning]
    tables = parse_markdown((tmp_path / "README.md").read_text())
    row = row_of(section(tables, "COCO"), "retinanet_red50_fpn_1x_coco")
    assert row["box AP ours"] == "39.2" and first_number(row["box AP Δ"]) == pytest.approx(39.2 - 38.2)
    assert row_of(section(tables, "Toy runs"), "retinanet_red50_fpn_1x_coco")["box AP"] == "39.2"


def test_unreadable_paper_yaml_is_a_clear_error(tmp_path):
    bad = tmp_path / "paper.yaml"
    bad.write_text("imagenet: [\n  - broken\n")
    with pytest.raises(ValueError, match=f"{bad}: not readable YAML"):
        bench_tables.make_tables(tmp_path, tmp_path / "c.json", bad, tmp_path / "README.md", None)
    command = [sys.executable, str(REPO / "scripts" / "make_tables.py"), "--paper", str(bad),
               "--out", str(tmp_path / "README.md"), "--runs", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and f"{bad}: not readable YAML" in done.stderr
    assert not (tmp_path / "README.md").exists()


def test_a_subset_never_reaches_the_paper_columns(built):
    """A three-image val2017 folder: listed under "Other data" with its image count, nowhere else."""
    tables = parse_markdown(built[0])
    subset = fixture_record("retinanet_red50_fpn_1x_coco__coco__20260110-100000")
    assert subset["dataset_identity"]["split"] == "val2017" and subset["dataset_identity"]["images_evaluated"] == 3
    ap = f"{subset['metrics']['bbox_AP']:.1f}"
    for prefix in ("ImageNet", "COCO", "Cityscapes", "ResNet baselines"):
        for row in section(tables, prefix):
            assert ap not in row.values() and "20260110-100000" not in row.get("Run", "")
    assert row_of(section(tables, "COCO"), "retinanet_red50_fpn_1x_coco")["Run"] == "—"
    other = row_of(section(tables, "Other data"), "retinanet_red50_fpn_1x_coco")
    assert other["box AP"] == ap and other["Evaluated on"] == "val2017, 3 images"
    assert "20260110-100000" in other["Run"]


def test_a_record_without_dataset_identity_is_not_trusted_as_the_full_split(built):
    tables = parse_markdown(built[0])
    old = fixture_record("fpn_red50_neck_512x1024_80k_cityscapes__cityscapes__20260108-100000")
    assert "dataset_identity" not in old and old["dataset"] == "cityscapes"
    assert row_of(section(tables, "Cityscapes"), "fpn_red50_neck_512x1024_80k_cityscapes")["mIoU ours"] == "—"
    other = row_of(section(tables, "Other data"), "fpn_red50_neck_512x1024_80k_cityscapes")
    assert other["mIoU"] == f"{old['metrics']['mIoU']:.1f}" and "not identified" in other["Evaluated on"]


def test_runs_at_another_total_batch_are_marked(built):
    text = built[0]
    coco = section(parse_markdown(text), "COCO")
    index = next(i for i, row in enumerate(coco) if row["Config"].split(" ")[0] == "retinanet_red50_neck_fpn_1x_coco")
    newest = fixture_record("retinanet_red50_neck_fpn_1x_coco__coco__20260105-100000")["batch"]
    older = fixture_record("retinanet_red50_neck_fpn_1x_coco__coco__20260101-100000")["batch"]
    # accumulation to the paper's batch is the paper's recipe; one process at batch 2 without it is not
    assert newest["total_batch"] * newest["accumulation"] == newest["paper_batch"]
    assert older["total_batch"] * older["accumulation"] != older["paper_batch"]
    assert "‡" not in coco[index]["Run"] and coco[index + 1]["Run"].endswith("‡")
    line = (f"- ‡ retinanet_red50_neck_fpn_1x_coco [20260101-100000]: trained at total batch "
            f"{older['total_batch']} (paper {older['paper_batch']}), accumulation none")
    coco_text = text.split("## COCO", 1)[1].split("\n## ", 1)[0]
    assert line in coco_text
    assert sum("‡" in row["Run"] for row in coco) == 1
    assert not any("‡" in row["Run"] for row in section(parse_markdown(text), "ResNet baselines"))


def test_a_record_file_name_that_is_not_utf8_is_skipped_with_a_warning(tmp_path):
    """Issue 21: such a name used to crash `make tables` in matplotlib (the toy run's loss-plot title)."""
    require.module("matplotlib")
    runs = tmp_path / "runs"
    runs.mkdir()
    toy = "retinanet_red50_neck_fpn_1x_coco__toy__20260109-100000.json"
    shutil.copy(FIXTURES / "runs" / toy, runs / toy)
    odd = os.fsdecode(b"retinanet_red50_neck_fpn_1x_coco__toy__20260109-1\xff0000.json")
    shutil.copy(FIXTURES / "runs" / toy, runs / odd)
    out = tmp_path / "README.md"
    warnings = bench_tables.make_tables(runs, FIXTURES / "complexity.json", PAPER, out, tmp_path / "complexity.png")
    (warning,) = [w for w in warnings if "UTF-8" in w]
    assert "20260109-1\\xff0000.json: skipped, its file name is not valid UTF-8" in warning
    text = out.read_text(encoding="utf-8")
    assert warning in text  # the README names it, written as valid UTF-8
    assert text.count("[20260109-100000]") == 1  # the well-named record is still listed
    assert [p.name for p in (tmp_path / "plots").iterdir()] == [toy.replace(".json", ".png")]


def test_make_tables_imports_no_measuring_code(tmp_path):
    """The speed section is rendered from speed.json by speed.report alone: no timing, memory probe
    (the libc handle), model building or measuring module is imported by `make tables`."""
    probe = (
        "import sys, runpy\n"
        f"sys.argv = ['make_tables.py', '--runs', {str(tmp_path / 'runs')!r}, '--out', {str(tmp_path / 'R.md')!r},"
        f" '--plot', {str(tmp_path / 'c.png')!r}, '--speed', 'results/speed.json']\n"
        "try:\n    runpy.run_path('scripts/make_tables.py', run_name='__main__')\n"
        "except SystemExit as exit:\n    assert not exit.code, exit.code\n"
        "print(sorted(m for m in sys.modules if m.startswith('involution_ops.bench')))\n")
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    loaded = set(eval(result.stdout.strip().splitlines()[-1]))
    assert "involution_ops.bench.speed.report" in loaded and "## Measured speed and memory" in (
        tmp_path / "R.md").read_text(encoding="utf-8")
    measuring = {f"involution_ops.bench.speed.{name}" for name in ("timing", "memory", "builders", "measure",
                                                                   "runner", "cli")}
    assert not loaded & measuring, loaded & measuring


def test_the_tables_and_the_speed_report_need_no_torch(tmp_path):
    """`import torch` made to fail: the whole README, speed section included, still renders
    through the package as `make tables` imports it (the core's names load on first use)."""
    probe = (
        "import sys\n"
        "sys.modules['torch'] = None  # any import of torch raises ImportError\n"
        "from pathlib import Path\n"
        "from involution_ops.bench.tables import make_tables\n"
        f"make_tables(Path({str(FIXTURES / 'runs')!r}), Path('results/complexity.json'), Path('results/paper.yaml'),"
        f" Path({str(tmp_path / 'R.md')!r}), None, speed_path=Path('results/speed.json'))\n")
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "R.md").read_text(encoding="utf-8")
    assert "## Measured speed and memory" in text and "## Toy runs" in text
