"""`make bench-op` (involution_ops/bench/op_speed.py): the unfold formula it times against the
reference operator, one real run on tiny shapes on the CPU, and the ratios and verdicts of its
table computed here from the rows."""
from __future__ import annotations

import pytest
import torch

from involution_ops import involution_reference
from involution_ops.bench import op_speed, op_speed_table
from involution_ops.ops.unfold import involution_unfold

TINY = {"tiny": (2, 32, 9, 11, 1), "tiny-s2": (1, 16, 10, 9, 2)}


@pytest.mark.parametrize("stride, padding, dilation, kernel", [(1, 3, 1, 7), (2, 3, 1, 7), (1, 2, 2, 3),
                                                               ((2, 1), (1, 0), 1, 3)])
def test_unfold_formula_equals_the_reference_forward_and_backward(stride, padding, dilation, kernel):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, 9, 10, dtype=torch.float64, generator=gen)
    ho = (9 + 2 * (padding if isinstance(padding, int) else padding[0])
          - (dilation * (kernel - 1) + 1)) // (stride if isinstance(stride, int) else stride[0]) + 1
    wo = (10 + 2 * (padding if isinstance(padding, int) else padding[1])
          - (dilation * (kernel - 1) + 1)) // (stride if isinstance(stride, int) else stride[1]) + 1
    weight = torch.randn(2, 2, kernel, kernel, ho, wo, dtype=torch.float64, generator=gen)
    grads = []
    for op in (involution_unfold, involution_reference):
        a, b = x.clone().requires_grad_(True), weight.clone().requires_grad_(True)
        out = op(a, b, stride, padding, dilation)
        out.backward(torch.cos(out.detach()))
        grads.append((out.detach(), a.grad, b.grad))
    for ours, reference in zip(*grads):
        torch.testing.assert_close(ours, reference)


@pytest.mark.parametrize("name", list(TINY))
def test_the_timed_unfold_operator_is_the_reference_op(name):
    n, c, h, w, stride = TINY[name]
    x = torch.randn(n, c, h, w)
    ho, wo = op_speed.out_size(h, stride), op_speed.out_size(w, stride)
    weight = torch.randn(n, c // 16, 7, 7, ho, wo)
    expected = involution_reference(x, weight, stride, 3, 1)
    for backend in ("unfold", "reference"):
        torch.testing.assert_close(op_speed.operator(backend, stride)(x, weight), expected, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def measured():
    """One real run: each case in its own process, as `make bench-op` does."""
    rows = op_speed.measure(["cpu"], TINY, ["unfold", "reference", "cpu", "cuda"], min_time=0.01, max_repeat=3,
                            timeout=300, log=lambda line: None)
    op_speed_table.add_speed(rows)
    return rows


@pytest.mark.slow
def test_a_row_per_backend_the_device_runs_with_times_memory_and_gemm(measured):
    expected = [(shape, backend) for shape in TINY for backend in ("unfold", "reference", "cpu")]
    assert [(r["shape"], r["backend"]) for r in measured] == expected
    for row in measured:
        assert row["note"] == "", row
        assert row["fwd_ms"] > 0 and row["fwdbwd_ms"] > 0 and row["gemm_gmacs"] > 0
        assert row["fwdbwd_mib"] == row["fwdbwd_mib"]  # a number (VmHWM on Linux)
        macs = op_speed.forward_macs(row["dims"])
        assert row["fwd_gmac"] == pytest.approx(macs / 1e9)
        assert row["fwdbwd_gmacs"] == pytest.approx(3 * macs / (row["fwdbwd_ms"] / 1e3) / 1e9)
        assert row["fwdbwd_gemm_share"] == pytest.approx(row["fwdbwd_gmacs"] / row["gemm_gmacs"])


@pytest.mark.slow
def test_ratios_are_against_unfold_of_the_same_shape(measured):
    cells = {(c["shape"], c["backend"]): c for c in op_speed_table.table_rows(measured, "float32")}
    rows = {(r["shape"], r["backend"]): r for r in measured}
    for shape in TINY:
        unfold = rows[shape, "unfold"]
        assert cells[shape, "unfold"]["fwd+bwd speed-up"] == "1.0x"
        for backend in ("reference", "cpu"):
            row, cell = rows[shape, backend], cells[shape, backend]
            assert cell["fwd speed-up"] == f"{unfold['fwd_ms'] / row['fwd_ms']:.1f}x"
            assert cell["fwd+bwd speed-up"] == f"{unfold['fwdbwd_ms'] / row['fwdbwd_ms']:.1f}x"
            assert cell["memory"] == f"{100 * row['fwdbwd_mib'] / unfold['fwdbwd_mib']:.1f}%"
    assert len(op_speed_table.verdicts(measured, "float32")) == 2 * len(TINY)  # unfold target, GEMM share
    text = op_speed_table.render(measured, "float32", [0.5, 0.4, 0.3], None)
    assert "% sgemm" in text and "0.50 0.40 0.30 before" in text
    assert len([line for line in text.splitlines() if line.startswith("cpu ")]) == len(measured)


def _fake_case(results: dict[str, dict]):
    def case(spec: dict, timeout: float) -> dict:
        return dict(results[spec["backend"]], batch=spec["shape"][0])
    return case


@pytest.mark.parametrize("kernel_ms, verdict", [(100 / op_speed_table.TARGET_SPEEDUP * 0.99, "PASS"),
                                                (100 / op_speed_table.TARGET_SPEEDUP * 1.01, "FAIL")])
def test_the_cpu_kernel_verdict_uses_the_one_stated_target(kernel_ms, verdict):
    results = {"unfold": {"fwd_ms": 50.0, "fwdbwd_ms": 100.0, "fwdbwd_mib": 200.0, "gemm_gmacs": 10.0},
               "cpu": {"fwd_ms": 5.0, "fwdbwd_ms": kernel_ms, "fwdbwd_mib": 10.0, "gemm_gmacs": 10.0}}
    rows = op_speed.measure(["cpu"], {"tiny": TINY["tiny"]}, ["unfold", "cpu"], case=_fake_case(results),
                            log=lambda line: None)
    op_speed_table.add_speed(rows)
    (line, _) = op_speed_table.verdicts(rows, "float32")
    assert f"{100 / kernel_ms:.1f}x faster than unfold (target >= {op_speed_table.TARGET_SPEEDUP:.0f}x)" in line
    assert "5.0% of its peak extra memory" in line and line.endswith(verdict)


def test_unfold_too_big_for_memory_is_compared_at_batch_one(monkeypatch):
    monkeypatch.setattr(op_speed, "available_memory_mib", lambda: 0.001)
    results = {"unfold": {"fwd_ms": 50.0}, "cpu": {"fwd_ms": 5.0, "fwdbwd_ms": 9.0}}
    rows = op_speed.measure(["cpu"], {"tiny": TINY["tiny"]}, ["unfold", "cpu"], case=_fake_case(results),
                            log=lambda line: None)
    assert [(r["shape"], r["backend"], r["batch"]) for r in rows] == [
        ("tiny", "unfold", 2), ("tiny@N1", "unfold", 1), ("tiny@N1", "cpu", 1), ("tiny", "cpu", 2)]
    assert rows[0]["note"].startswith("needs ~") and rows[0]["dims"] == list(TINY["tiny"])
    assert rows[1]["dims"] == [1, *TINY["tiny"][1:]]


def test_json_results_are_never_overwritten(tmp_path):
    out = tmp_path / "bench.json"
    out.write_text("earlier")
    with pytest.raises(SystemExit):
        op_speed.main(["--device", "cpu", "--json", str(out)])
    assert out.read_text() == "earlier"
