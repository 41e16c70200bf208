"""`make gpu-check`'s benchmark (involution_ops/bench/gpu_speed.py, gpu_report.py) on the CPU:
the rows a CPU can run on tiny shapes, the kernel interface wired through a stand-in module that
computes with the reference op, the bytes and bounds by hand, the report and the training step
on tiny models. The CUDA rows themselves run only on a GPU (scripts/gpu_check.sh)."""
from __future__ import annotations

import types

import pytest
import torch
from torch import nn

from involution_ops import involution_reference
from involution_ops.bench import gpu_report, gpu_speed
from involution_ops.bench.gpu_speed import Layer
from involution_ops.ops.reference import (involution_reference_backward_input,
                                          involution_reference_backward_weight)

TINY = (Layer("tiny", 32, 9, 1, 2), Layer("tiny, stride 2", 16, 10, 2, 1))


def reference_kernels(with_kernels: bool, calls: list) -> types.ModuleType:
    """A stand-in with the interface of involution_ops.ops.cuda, computing with the reference op."""
    module = types.ModuleType("stand_in_kernels")

    def forward(x, weight, stride, padding, dilation, kernels="auto"):
        calls.append(("forward", stride, padding, dilation, kernels))
        return involution_reference(x, weight, stride, padding, dilation)

    def backward_input(grad_out, weight, input_size, stride, padding, dilation, kernels="auto"):
        calls.append(("input", input_size, kernels))
        return involution_reference_backward_input(grad_out, weight, input_size, stride, padding, dilation)

    def backward_weight(grad_out, x, kernel_size, groups, stride, padding, dilation, kernels="auto"):
        calls.append(("weight", kernel_size, groups, kernels))
        return involution_reference_backward_weight(grad_out, x, kernel_size, groups, stride, padding, dilation)

    if not with_kernels:
        def forward(x, weight, stride, padding, dilation):  # noqa: F811 - today's signature, no kernels=
            calls.append(("forward", stride, padding, dilation, None))
            return involution_reference(x, weight, stride, padding, dilation)
    module.forward, module.backward_input, module.backward_weight = forward, backward_input, backward_weight
    return module


def test_bytes_moved_by_hand():
    layer = Layer("x", 64, 56, 2, 1)  # output 28x28
    x, out, weight = 8 * 64 * 56 * 56, 8 * 64 * 28 * 28, 8 * 4 * 49 * 28 * 28
    assert layer.out_size == 28
    assert gpu_speed.bytes_moved(layer, 8, 4) == (4 * (x + weight + out), 4 * 2 * (x + weight + out))
    assert gpu_speed.bytes_moved(layer, 8, 2, involution=False) == (2 * (x + 64 * 49 + out),
                                                                   2 * 2 * (x + 64 * 49 + out))
    assert sum(layer.count for layer in gpu_speed.REDNET50_LAYERS) == 16


def test_cpu_rows_for_every_implementation_cuda_ones_say_why_not():
    rows = gpu_speed.measure_operators("cpu", TINY, batch=2, warmup=0, repeats=2, log=lambda line: None)
    names = [impl.name for impl in gpu_speed.implementations(torch.device("cpu"))]
    assert [(r["layer"], r["implementation"]) for r in rows] == [(layer.name, n) for layer in TINY for n in names]
    for row in rows:
        if "kernels" in row["implementation"] or "baseline" in row["implementation"]:
            assert row["note"] == "not available: needs a CUDA device" and "forward_s" not in row
            continue
        assert row["note"] == "" and row["forward_s"] > 0 and row["backward_s"] > 0, row
        if row["implementation"] == "unfold formula":
            assert row["max_rel_diff"] < 1e-5  # the unfold formula is the reference op
        else:
            assert "max_rel_diff" not in row  # the depthwise conv is another op


@pytest.mark.parametrize("with_kernels", [True, False])
def test_the_kernel_interface_is_called_as_specified(with_kernels):
    calls: list = []
    module = reference_kernels(with_kernels, calls)
    fast = gpu_speed.kernel_implementation("fast kernels", module, "fast")
    generic = gpu_speed.kernel_implementation("generic kernels (fallback)", module, "generic")
    baseline = gpu_speed.kernel_implementation("official-style baseline", module, None)
    if not with_kernels:
        assert fast.missing.startswith("not available: stand_in_kernels.forward has no kernels=")
    rows = gpu_speed.measure_operators("cpu", TINY[1:], batch=2, warmup=0, repeats=1, log=lambda line: None,
                                       impls=[fast, generic, baseline])
    measured = [r for r in rows if r["note"] == ""]
    assert len(measured) == (3 if with_kernels else 2)
    assert all(r["max_rel_diff"] < 1e-6 for r in measured)
    assert ("forward", (2, 2), (3, 3), (1, 1), "generic" if with_kernels else None) in calls
    passed = "generic" if with_kernels else "auto"  # without kernels= on forward, none is passed anywhere
    assert ("input", (10, 10), passed) in calls and ("weight", (7, 7), 1, passed) in calls
    assert (("forward", (2, 2), (3, 3), (1, 1), "fast") in calls) == with_kernels


def test_report_totals_ratios_and_bounds():
    impls = [gpu_speed.Implementation("fast kernels", missing="not available: x"),
             *gpu_speed.implementations(torch.device("cpu"))[3:]]
    rows = gpu_speed.measure_operators("cpu", TINY, batch=2, warmup=0, repeats=1, impls=impls, log=lambda line: None)
    data = {"machine": dict(gpu_report.machine(torch.device("cpu")), device_name="Test GPU"), "bandwidth": 1e9,
            "bandwidth_source": "stated", "settings": {"batch": 2, "dtype": "float32", "warmup": 0, "repeats": 1},
            "operators": rows, "training": []}
    text = gpu_report.render(data)
    assert text.startswith(gpu_report.GENERATED_MARKER)
    assert f"Measured on Test GPU (cpu), torch {torch.__version__}" in text and "1 GB/s (stated)" in text
    cells = {(c["Layer"], c["Implementation"]): c for c in gpu_report.operator_rows(rows, 1e9)}
    unfold = [r for r in rows if r["implementation"] == "unfold formula"]
    total = cells[gpu_report.TOTAL, "unfold formula"]
    assert total["Forward µs"] == f"{sum(r['forward_s'] * r['count'] for r in unfold) * 1e6:.1f}"
    first = cells["tiny (x2)", "unfold formula"]
    assert first["Forward bound µs"] == f"{unfold[0]['forward_bytes'] / 1e9 * 1e6:.1f}"
    assert first["Forward / bound"] == f"{unfold[0]['forward_s'] / (unfold[0]['forward_bytes'] / 1e9):.1f}x"
    assert first["Fwd+bwd vs fast kernels"] == "—"  # no figures for the fast kernels here
    assert cells["tiny (x2)", "fast kernels"]["Note"] == "not available: x"


def test_training_step_rows_and_a_missing_model(monkeypatch):
    def tiny():
        return nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))

    def missing():
        raise ImportError("No module named 'torchvision'")

    rows = gpu_speed.measure_training("cpu", batch=2, size=16, warmup=0, repeats=1, classes=10,
                                      models=[("Tiny", tiny), ("ResNet-50 (torchvision)", missing)],
                                      log=lambda line: None)
    assert [(r["model"], r["precision"]) for r in rows] == [(m, p) for m in ("Tiny", "ResNet-50 (torchvision)")
                                                            for p in ("float32", "bfloat16 autocast")]
    assert all(r["step_s"] > 0 and r["note"] == "" for r in rows[:2])
    assert rows[2]["note"] == "not available: No module named 'torchvision'"
    cells = gpu_report.training_rows(rows)
    assert cells[0]["Images/s"] == f"{2 / rows[0]['step_s']:.1f}" and cells[0]["Time vs ResNet-50"] == "—"


def test_training_step_learns():
    """The timed step is a real optimisation step: repeating it lowers the loss on its batch."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5))
    images, labels = torch.randn(8, 3, 4, 4), torch.arange(8) % 5
    before = nn.functional.cross_entropy(model(images), labels).item()
    step = gpu_speed.training_step(model, images, labels, bfloat16=False)
    for _ in range(20):
        step()
    assert nn.functional.cross_entropy(model(images), labels).item() < before


def test_report_never_overwrites_a_file_it_did_not_make(tmp_path):
    out = tmp_path / "gpu.md"
    out.write_text("my notes")
    with pytest.raises(SystemExit, match="was not made by `make gpu-check`"):
        gpu_report.write(out, "x")
    assert out.read_text() == "my notes"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_without_a_gpu_the_command_says_so(capsys):
    with pytest.raises(SystemExit):
        gpu_report.main(["--out", "unused.md"])
    assert "no CUDA device" in capsys.readouterr().err
