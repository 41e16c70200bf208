"""`make bench` (involution_ops/bench/speed/): the runner on two tiny models at tiny shapes.

Timings are injected (a fake timer returning scripted durations), so the medians, images/s
and ratios in the JSON are checked against arithmetic done here; nothing is timed."""
from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from support import REPO_ROOT as REPO, require

from involution_ops import Involution
from involution_ops.bench import environment
from involution_ops.bench.speed import builders, cli, measure, pairs, report, runner, timing
from involution_ops.modules import ConvNormAct

SHAPES = ((2, 3, 16, 16), (3, 3, 16, 16))  # inference batch 2, training batch 3


def tiny_rednet() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(ConvNormAct(3, 16, 3, padding=1), Involution(16, 3, group_channels=8),
                         nn.BatchNorm2d(16), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))


def tiny_resnet() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))


def tiny_builder(name, config, suite, shapes, device):
    model = tiny_rednet() if config == "tiny:red" else tiny_resnet()
    return builders.build_classifier(name, model, shapes, device, classes=10)


TINY = [pairs.ModelPair("TinyRed", "tiny:red", "TinyRes", "tiny:res", "imagenet", SHAPES)]


class ScriptedTimer:
    """Runs each call (so the code path is real) and returns the next scripted (wall, cpu) of its label."""

    def __init__(self, script: dict[str, list[float]]):
        self.script = {label: list(values) for label, values in script.items()}
        self.order: list[str] = []

    def __call__(self, label, fn):
        fn()
        self.order.append(label)
        wall = self.script[label].pop(0)
        return wall, wall / 2


SCRIPT = {
    # inference, per option: TinyRed, TinyRes, TinyRed, ... (3 repeats each); then training
    "TinyRed": [0.030, 0.010, 0.020] + [0.050, 0.070, 0.060],
    "TinyRes": [0.040, 0.045, 0.041] + [0.100, 0.080, 0.090] + [0.45, 0.42, 0.44],  # + training
    "TinyRed [recompute]": [0.5, 0.3, 0.4],
    "TinyRed [keep]": [0.2, 0.25, 0.35],
}


@pytest.fixture(scope="module")
def tiny_result():
    timer = ScriptedTimer(SCRIPT)
    return runner.run(TINY, "cpu", repeats=3, warmup=1, inference_options=("eager", "channels_last"),
                     timer=timer, log=lambda line: None, builder=tiny_builder), timer


def test_models_interleave_in_every_measurement(tiny_result):
    _, timer = tiny_result
    inference = ["TinyRed", "TinyRes"] * 3
    training = ["TinyRed [recompute]", "TinyRed [keep]", "TinyRes"] * 3
    assert timer.order == inference + inference + training


def test_interleave_warms_up_untimed_then_alternates():
    calls: list[str] = []
    tasks = {name: (lambda n=name: calls.append(n)) for name in ("A", "B")}
    timed: list[str] = []
    samples = timing.interleave(tasks, repeats=2, warmup=3,
                               timer=lambda label, fn: (fn(), timed.append(label), (1.0, 1.0))[-1])
    assert calls == ["A", "B"] * 5
    assert timed == ["A", "B", "A", "B"]
    assert samples == {"A": [(1.0, 1.0)] * 2, "B": [(1.0, 1.0)] * 2}
    with pytest.raises(ValueError, match="repeats=0"):
        timing.interleave(tasks, repeats=0, warmup=0, timer=lambda label, fn: (0.0, 0.0))


def test_medians_images_per_second_and_ratios(tiny_result):
    data, _ = tiny_result
    (pair,) = data["pairs"]
    for option, start in (("eager", 0), ("channels_last", 3)):
        entry = pair["inference"][option]
        red = statistics.median(SCRIPT["TinyRed"][start:start + 3])
        res = statistics.median(SCRIPT["TinyRes"][start:start + 3])
        assert entry["model"]["median_ms"] == pytest.approx(red * 1e3)
        assert entry["baseline"]["median_ms"] == pytest.approx(res * 1e3)
        assert entry["model"]["cpu_median_ms"] == pytest.approx(red * 1e3 / 2)
        assert entry["model"]["images_per_s"] == pytest.approx(SHAPES[0][0] / red)
        assert entry["baseline"]["images_per_s"] == pytest.approx(SHAPES[0][0] / res)
        assert entry["ratio"] == pytest.approx(red / res)
        assert entry["model"]["samples_ms"] == pytest.approx([t * 1e3 for t in SCRIPT["TinyRed"][start:start + 3]])
    res_train = statistics.median(SCRIPT["TinyRes"][6:])
    for option in ("recompute", "keep"):
        entry = pair["training"][option]
        red = statistics.median(SCRIPT[f"TinyRed [{option}]"])
        assert entry["model"]["median_ms"] == pytest.approx(red * 1e3)
        assert entry["baseline"]["median_ms"] == pytest.approx(res_train * 1e3)
        assert entry["model"]["images_per_s"] == pytest.approx(SHAPES[1][0] / red)
        assert entry["ratio"] == pytest.approx(red / res_train)
        assert entry["peak_ratio"] == pytest.approx(entry["model"]["peak_mib"] / entry["baseline"]["peak_mib"])
    assert timing.ratio(1.0, 0.0) is None and timing.ratio(None, 1.0) is None


def test_json_schema(tiny_result, tmp_path):
    data, _ = tiny_result
    path = tmp_path / "speed.json"
    assert runner.save_results(data, path) is None  # nothing earlier to keep
    loaded = json.loads(path.read_text())
    assert loaded["schema"] == report.SCHEMA
    machine = loaded["machine"]
    for key in ("cpu", "cores", "threads", "torch", "date", "device", "load_start", "load_end", "other_load"):
        assert key in machine, key
    assert machine["torch"] == torch.__version__ and machine["threads"] == torch.get_num_threads()
    assert len(machine["load_start"]) == 3 and len(machine["load_end"]) == 3
    assert loaded["settings"]["repeats"] == 3 and loaded["settings"]["warmup"] == 1 and not loaded["settings"]["quick"]
    (pair,) = loaded["pairs"]
    assert (pair["model"], pair["baseline"], pair["suite"]) == ("TinyRed", "TinyRes", "imagenet")
    assert pair["inference_shape"] == list(SHAPES[0]) and pair["training_shape"] == list(SHAPES[1])
    assert set(pair["inference"]) == {"eager", "channels_last"}
    assert set(pair["training"]) == {"recompute", "keep"}
    for entry in [*pair["inference"].values(), *pair["training"].values()]:
        for side in ("model", "baseline"):
            assert {"median_ms", "cpu_median_ms", "images_per_s", "samples_ms", "peak_mib"} <= set(entry[side])
    params = sum(p.numel() for p in tiny_rednet().parameters()) / 1e6
    assert pair["params_m"]["model"] == pytest.approx(params)


def test_training_peak_memory_keeping_the_kernel_map_is_larger():
    """`keep` holds the kernel map (K*K*G channels) of each of three involutions until backward;
    `recompute` regenerates one at a time: at least two maps less at the peak (the map being
    differentiated and its gradient exist in both)."""
    def builder(name, config, suite, shapes, device):
        torch.manual_seed(0)
        if config == "tiny:red":
            layers = [Involution(32, 7, group_channels=4) for _ in range(3)]
            model = nn.Sequential(ConvNormAct(3, 32, 3, padding=1), *layers,
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
        else:
            model = tiny_resnet()
        return builders.build_classifier(name, model, shapes, device, classes=10)

    models = [pairs.ModelPair("TinyRed", "tiny:red", "TinyRes", "tiny:res", "imagenet",
                               ((1, 3, 8, 8), (4, 3, 48, 48)))]
    data = runner.run(models, "cpu", repeats=1, warmup=0, inference_options=("eager",), log=lambda line: None,
                     builder=builder)
    training = data["pairs"][0]["training"]
    if training["keep"]["model"]["peak_mib"] != training["keep"]["model"]["peak_mib"]:
        pytest.skip("no mallinfo2 on this C library: no CPU peak memory")
    kernel_map_mib = 4 * 7 * 7 * 8 * 48 * 48 * 4 / 2**20  # 4 images, 7*7*8 channels, 48x48, float32
    saved = training["keep"]["model"]["peak_mib"] - training["recompute"]["model"]["peak_mib"]
    assert saved > 1.5 * kernel_map_mib, (saved, kernel_map_mib)


def test_an_earlier_speed_json_is_never_overwritten(tmp_path):
    path = tmp_path / "results" / "speed.json"
    first = {"schema": 1, "machine": {"date": "2026-01-02T03:04:05+00:00"}, "pairs": [1]}
    second = {"schema": 1, "machine": {"date": "2026-02-03T00:00:00+00:00"}, "pairs": [2]}
    assert runner.save_results(first, path) is None
    first_bytes = path.read_bytes()
    kept = runner.save_results(second, path)
    assert kept.parent == tmp_path / "results" / "speed" and kept.read_bytes() == first_bytes
    assert json.loads(path.read_text())["pairs"] == [2]
    # the same date again: a new name, the kept file untouched
    third = dict(second, pairs=[3])
    second_bytes = path.read_bytes()
    kept_again = runner.save_results(third, path)
    assert kept_again != kept and kept_again.read_bytes() == second_bytes
    assert kept.read_bytes() == first_bytes
    runner.save_results(dict(second, pairs=[4]), path)
    assert len(list((tmp_path / "results" / "speed").iterdir())) == 3
    # a file that is not ours is kept too, named by its modification time
    path.write_text("hand-written notes")
    kept_foreign = runner.save_results(second, path)
    assert kept_foreign.read_text() == "hand-written notes"


def test_markdown_table(tiny_result):
    data, _ = tiny_result
    data = json.loads(json.dumps(data))
    data["pairs"][0]["inference"]["compile"] = {"error": "RuntimeError: no compiler"}
    text = report.render_markdown(data)
    assert text.startswith("## Measured speed and memory")
    assert data["machine"]["cpu"] in text and data["machine"]["torch"] in text and data["machine"]["date"] in text
    assert str(data["machine"]["load_start"]) in text and str(data["machine"]["load_end"]) in text
    rows = [line for line in text.splitlines() if line.startswith("| TinyRed |")]
    assert len(rows) == 3 + 2  # eager, channels_last, compile; recompute, keep
    cells = {tuple(c.strip() for c in row.strip("|").split("|"))[3]: [c.strip() for c in row.strip("|").split("|")]
             for row in rows}
    red = statistics.median(SCRIPT["TinyRed"][:3]) * 1e3
    res = statistics.median(SCRIPT["TinyRes"][:3]) * 1e3
    assert cells["eager"][4:7] == [f"{red:.1f}", f"{res:.1f}", f"{red / res:.2f}x"]
    assert cells["eager"][2] == "2x3x16x16"
    assert "failed: RuntimeError: no compiler" in cells["compile"][4]
    keep = statistics.median(SCRIPT["TinyRed [keep]"]) * 1e3
    res_train = statistics.median(SCRIPT["TinyRes"][6:]) * 1e3
    assert cells["keep"][4:7] == [f"{keep:.1f}", f"{res_train:.1f}", f"{keep / res_train:.2f}x"]
    assert cells["keep"][2] == "3x3x16x16"
    peak = data["pairs"][0]["training"]["recompute"]["peak_ratio"]
    assert f"- TinyRed training-step peak memory <= TinyRes's: {peak:.2f}x ({'met' if peak <= 1 else 'NOT met'})" in text
    quiet = json.loads(json.dumps(data))
    # the benchmark's own 2 threads raise the load average; only other processes' CPU counts
    quiet["machine"].update(cores=2, load_start=[0.2, 0.3, 0.3], load_end=[2.4, 1.5, 0.9], other_load=0.1)
    assert "under load" not in report.render_markdown(quiet)
    assert "other processes 0.1 cores on average" in report.render_markdown(quiet)
    quiet["machine"]["other_load"] = 0.6
    assert "**Measured under load**" in report.render_markdown(quiet)
    legacy = json.loads(json.dumps(quiet))  # files written before other_load: the load-average rule
    del legacy["machine"]["other_load"]
    legacy["machine"]["load_end"] = [1.4, 0.5, 0.4]
    assert "under load" not in report.render_markdown(legacy)
    legacy["machine"]["load_end"] = [1.6, 0.5, 0.4]
    assert "**Measured under load**" in report.render_markdown(legacy)
    with pytest.raises(ValueError, match="rerun `make bench`"):
        report.render_markdown(dict(data, schema=99))


def test_other_load_is_the_machines_cpu_time_minus_our_own():
    clock = environment.CpuClock
    assert environment.other_load(clock(100.0, 10.0), clock(130.0, 30.0), 10.0) == 1.0
    # clock granularity: never negative
    assert environment.other_load(clock(100.0, 10.0), clock(110.0, 21.0), 10.0) == 0.0
    assert environment.other_load(None, clock(1.0, 1.0), 1.0) is None


@pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="reads Linux's /proc/stat")
def test_a_busy_process_beside_the_benchmark_is_seen_as_other_load():
    """A process that spins one core while we sleep shows up as about one core of other load (at
    least half of one, whatever else the machine runs); our own work does not."""
    start, wall = environment.cpu_clock(), time.perf_counter()
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(1.5)
        end = environment.cpu_clock()
    finally:
        spinner.kill()
        spinner.wait()
    assert environment.other_load(start, end, time.perf_counter() - wall) >= 0.5


def test_fused_conv_bn_matches_the_unfused_model():
    require.module("mmcv.cnn")
    from involution_ops import RedNet

    torch.manual_seed(0)
    model = RedNet(26, num_classes=10, zero_init_residual=False)
    for m in model.modules():  # non-trivial norms, so that folding them is visible; small, so that nothing overflows
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.uniform_(0.2, 0.5)
            m.bias.data.uniform_(-0.1, 0.1)
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 2.0)
    model.eval()
    fused = measure.fuse_conv_bn(model).eval()
    def count(net: nn.Module) -> int:
        return sum(isinstance(m, nn.BatchNorm2d) for m in net.modules())

    # left unfused: the norm after each involution and after the stem involution (no conv before them)
    assert count(fused) == 1 + sum(len(stage) for stage in model.stages)
    assert count(model) > count(fused)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(fused(x), expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))


def test_paper_models_follow_paper_yaml():
    text = (REPO / "results" / "paper.yaml").read_text()
    def section(name: str) -> str:
        return re.search(rf"^{name}:\n(.*?)(?=^\S)", text, re.DOTALL | re.MULTILINE).group(1)

    expected = [name for suite in ("imagenet", "coco", "cityscapes")
                for name in re.findall(r"^  - name: (\S+)", section(suite), re.MULTILINE)]
    models = pairs.paper_pairs()
    assert [m.model for m in models] == expected
    for m in models:
        if m.suite == "imagenet":
            depth = int(m.model.split("-")[1])
            assert m.baseline == f"ResNet-{depth if depth in (50, 101, 152) else 50}"
            continue
        assert (REPO / m.config).is_file() and (REPO / m.baseline_config).is_file()
        assert "_r50_" in m.baseline_config
    assert [m.model for m in pairs.select(models, ["retinanet"])] == [n for n in expected if "retinanet" in n]
    assert {m.suite for m in pairs.select(models, suites=["cityscapes"])} == {"cityscapes"}
    with pytest.raises(ValueError, match="no such model"):
        pairs.select(models, ["nonexistent"])


@pytest.mark.slow  # builds and times the real RedNet-26 and ResNet-50
def test_command_line_quick_run_keeps_the_earlier_file(tmp_path, capsys):
    """End to end on the real RedNet-26 / ResNet-50 builders at --quick shapes."""
    require.module("mmdet.models.backbones")
    out = tmp_path / "speed.json"
    out.write_text('{"earlier": true}')
    table = tmp_path / "speed.md"
    args = ["--quick", "--models", "RedNet-26", "--options", "eager", "fuse_conv_bn", "--no-train",
            "--repeats", "1", "--warmup", "0", "--out", str(out), "--table", str(table)]
    assert cli.main(args) == 0
    data = json.loads(out.read_text())
    (pair,) = data["pairs"]
    assert (pair["model"], pair["baseline"], pair["inference_shape"]) == ("RedNet-26", "ResNet-50",
                                                                         list(pairs.QUICK_SHAPES["imagenet"][0]))
    for option in ("eager", "fuse_conv_bn"):
        assert "error" not in pair["inference"][option], pair["inference"][option]
    (kept,) = (tmp_path / "speed").iterdir()
    assert json.loads(kept.read_text()) == {"earlier": True}
    assert table.read_text() == report.render_markdown(data)
    assert "Measured speed and memory" in capsys.readouterr().out
    assert cli.main(["--render", str(out)]) == 0
    assert capsys.readouterr().out == report.render_markdown(data)
    with pytest.raises(SystemExit):
        cli.main(["--render", str(kept)])  # not a results file: one error naming it


def test_targets_are_reported_not_asserted():
    def pair(model, baseline, forward_ratio, peak_ratio):
        return {"model": model, "baseline": baseline, "inference": {"eager": {"ratio": forward_ratio}},
                "training": {"recompute": {"peak_ratio": peak_ratio}}}

    data = {"pairs": [pair("RedNet-50", "ResNet-50", 0.7, 1.2),
                      pair("retinanet_red50_fpn_1x_coco", "retinanet_r50_fpn_1x_coco", 1.25, 0.9)]}
    assert report.target_lines(data) == [
        "RedNet-50 forward <= 0.8x ResNet-50's: 0.70x (met)",
        "RetinaNet RedNet-50 forward <= 0.95x RetinaNet ResNet-50's: 1.25x (NOT met)",
        "RedNet-50 training-step peak memory <= ResNet-50's: 1.20x (NOT met)",
        "retinanet_red50_fpn_1x_coco training-step peak memory <= retinanet_r50_fpn_1x_coco's: 0.90x (met)",
    ]
    data["pairs"][0]["inference"]["eager"] = {"error": "RuntimeError: x"}
    assert report.target_lines(data)[0] == "RedNet-50 forward <= 0.8x ResNet-50's: — (not measured)"


def test_make_tables_shows_the_speed_tables(tiny_result, tmp_path):
    from involution_ops.bench import tables

    data, _ = tiny_result
    speed_json = tmp_path / "speed.json"
    runner.save_results(json.loads(json.dumps(data)), speed_json)
    runs = tmp_path / "runs"
    runs.mkdir()
    out = tmp_path / "README.md"
    paper = REPO / "results" / "paper.yaml"
    complexity = REPO / "results" / "complexity.json"
    tables.make_tables(runs, complexity, paper, out, None, speed_path=speed_json)
    text = out.read_text()
    assert "## Measured speed and memory" in text and report.machine_label(data) in text
    assert text.index("## Measured speed and memory") > text.index("COCO")
    out.unlink()
    tables.make_tables(runs, complexity, paper, out, None, speed_path=tmp_path / "absent.json")
    assert "Measured speed and memory" not in out.read_text()
