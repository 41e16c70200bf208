"""The involution operator on the CPU: reference, compiled kernel, dispatch,
torch.library integration and input validation (CUDA parts: test_op_cuda.py)."""
from __future__ import annotations

import itertools
import warnings

import pytest
import torch
import torch.nn.functional as F

import involution_ops.ops.functional as functional
from involution_ops import involution
from involution_ops.ops import cpu
from involution_ops.ops.reference import involution_reference


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _out_size(h, w, k, s, p, d):
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = map(_pair, (k, s, p, d))
    return (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1


def make_inputs(n, c, g, h, w, k, s, p, d, layout="contiguous", dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    kh, kw = _pair(k)
    ho, wo = _out_size(h, w, k, s, p, d)
    if layout == "noncontiguous":
        x = torch.randn(n, c, h, 2 * w, generator=gen, dtype=dtype)[..., ::2]
        weight = torch.randn(n, g, kw, kh, wo, ho, generator=gen, dtype=dtype).permute(0, 1, 3, 2, 5, 4)
        grad = torch.randn(n, c, wo, ho, generator=gen, dtype=dtype).transpose(2, 3)
    else:
        x = torch.randn(n, c, h, w, generator=gen, dtype=dtype)
        weight = torch.randn(n, g, kh, kw, ho, wo, generator=gen, dtype=dtype)
        grad = torch.randn(n, c, ho, wo, generator=gen, dtype=dtype)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
        grad = grad.contiguous(memory_format=torch.channels_last)
    assert (layout == "contiguous") == (x.is_contiguous() and weight.is_contiguous())
    return x, weight, grad


# (n, c, g, h, w, k, stride, padding, dilation, layout): odd/even H and W, stride 1/2/3,
# dilation 1/2, K 1/3/5/7, G 1/2/4/16, batch 1/3, non-contiguous and channels_last.
CASES = [
    (1, 4, 1, 8, 8, 3, 1, 1, 1, "contiguous"),
    (3, 8, 2, 9, 7, 5, 2, 2, 1, "channels_last"),
    (1, 16, 4, 11, 10, 7, 3, 3, 1, "noncontiguous"),
    (3, 32, 16, 6, 9, 1, 1, 0, 1, "contiguous"),
    (1, 8, 4, 13, 12, 3, 2, 2, 2, "noncontiguous"),
    (3, 4, 2, 10, 11, 7, 1, 6, 2, "channels_last"),
    (1, 16, 16, 12, 12, 5, 3, 0, 2, "contiguous"),
    (2, 6, 3, 9, 12, (3, 5), (1, 2), (2, 1), (1, 2), "noncontiguous"),
    (1, 4, 2, 7, 9, 7, 2, 3, 1, "contiguous"),  # odd size, stride 2: the official kernel's OOB case
    (1, 4, 1, 5, 5, 3, 1, 4, 1, "channels_last"),  # padding beyond the kernel's reach
    # wider than the CPU kernel's 16-column blocks: several blocks and a ragged tail
    (2, 16, 4, 9, 37, 5, 1, 2, 1, "noncontiguous"),
    (1, 8, 2, 8, 40, 3, 2, 1, 1, "channels_last"),
    (1, 8, 2, 11, 34, 3, (2, 1), (1, 2), (2, 1), "contiguous"),  # row stride 2, column stride 1
]


def case_id(case):
    n, c, g, h, w, k, s, p, d, layout = case
    return f"n{n}c{c}g{g}-{h}x{w}-k{k}s{s}p{p}d{d}-{layout}".replace(" ", "")


def _check_against_reference(case, backend, dtype, tol):
    n, c, g, h, w, k, s, p, d, layout = case
    x, weight, grad = make_inputs(*case, dtype=dtype)
    x.requires_grad_(True)
    weight.requires_grad_(True)
    expected = involution_reference(x, weight, s, p, d)
    expected_grads = torch.autograd.grad(expected, (x, weight), grad)
    out = involution(x, weight, s, p, d, backend=backend)
    grads = torch.autograd.grad(out, (x, weight), grad)
    assert out.shape == (n, c, *_out_size(h, w, k, s, p, d))
    torch.testing.assert_close(out, expected, rtol=tol, atol=tol)
    torch.testing.assert_close(grads[0], expected_grads[0], rtol=tol, atol=tol)
    torch.testing.assert_close(grads[1], expected_grads[1], rtol=tol, atol=tol)


# --------------------------------------------------------------------------- the reference itself

def _brute_force(x, weight, stride, padding, dilation):
    (sh, sw), (ph, pw), (dh, dw) = map(_pair, (stride, padding, dilation))
    n, c, h, w = x.shape
    _, g, kh, kw, ho, wo = weight.shape
    out = torch.zeros(n, c, ho, wo, dtype=x.dtype)
    for b, ch, i, j in itertools.product(range(n), range(c), range(ho), range(wo)):
        total = 0.0
        for u, v in itertools.product(range(kh), range(kw)):
            r, q = i * sh + u * dh - ph, j * sw + v * dw - pw
            if 0 <= r < h and 0 <= q < w:
                total += float(weight[b, ch // (c // g), u, v, i, j]) * float(x[b, ch, r, q])
        out[b, ch, i, j] = total
    return out


@pytest.mark.parametrize("case", [CASES[1], CASES[7], CASES[9]], ids=case_id)
def test_reference_matches_python_loop(case):
    n, c, g, h, w, k, s, p, d, _ = case
    x, weight, _ = make_inputs(n, c, g, h, w, k, s, p, d)
    torch.testing.assert_close(involution_reference(x, weight, s, p, d), _brute_force(x, weight, s, p, d))


def _unfold_formula(x, weight, stride, padding, dilation):
    n, c = x.shape[:2]
    _, g, kh, kw, ho, wo = weight.shape
    cols = F.unfold(x, (kh, kw), dilation=dilation, padding=padding, stride=stride)
    cols = cols.view(n, g, c // g, kh * kw, ho, wo)
    return (cols * weight.reshape(n, g, 1, kh * kw, ho, wo)).sum(dim=3).view(n, c, ho, wo)


@pytest.mark.parametrize("case", CASES[:8], ids=case_id)
def test_reference_matches_unfold_formula(case):
    n, c, g, h, w, k, s, p, d, layout = case
    x, weight, _ = make_inputs(*case)
    torch.testing.assert_close(involution_reference(x, weight, s, p, d), _unfold_formula(x, weight, s, p, d))


# --------------------------------------------------------------------------- backends vs reference

@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_reference_backend_gradients(case):
    """The op's reference backend uses explicit backward formulas: check them against autograd."""
    _check_against_reference(case, "reference", torch.float64, 1e-10)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_cpu_kernel_float64(cpu_kernel, case):
    _check_against_reference(case, "cpu", torch.float64, 1e-10)


@pytest.mark.parametrize("case", CASES[:3], ids=case_id)
def test_cpu_kernel_float32(cpu_kernel, case):
    _check_against_reference(case, "cpu", torch.float32, 1e-4)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cpu_kernel_low_precision_accumulates_in_float32(cpu_kernel, dtype):
    case = (2, 32, 2, 14, 13, 7, 1, 3, 1, "contiguous")
    x, weight, grad = make_inputs(*case, dtype=dtype)
    x.requires_grad_(True)
    weight.requires_grad_(True)
    out = involution(x, weight, 1, 3, 1, backend="cpu")
    grads = torch.autograd.grad(out, (x, weight), grad)
    assert out.dtype == grads[0].dtype == grads[1].dtype == dtype
    x64, w64 = x.detach().double().requires_grad_(True), weight.detach().double().requires_grad_(True)
    expected = involution_reference(x64, w64, 1, 3, 1)
    expected_grads = torch.autograd.grad(expected, (x64, w64), grad.double())
    eps = torch.finfo(dtype).eps
    # float32 accumulation: only the final rounding to `dtype` remains (sums of 49 and 16*49 terms)
    for got, want in zip((out, *grads), (expected, *expected_grads)):
        torch.testing.assert_close(got.double(), want, rtol=eps, atol=eps * want.abs().max().item())


def _gradcheck_inputs(seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 4, 6, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    weight = torch.randn(1, 2, 3, 3, 3, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    return x, weight  # stride 2, padding 2, dilation 2 gives a 3x3 output


def test_gradcheck_reference_function():
    assert torch.autograd.gradcheck(lambda x, w: involution_reference(x, w, 2, 2, 2), _gradcheck_inputs())


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_gradcheck_backend(backend, request):
    if backend == "cpu":
        request.getfixturevalue("cpu_kernel")
    assert torch.autograd.gradcheck(lambda x, w: involution(x, w, 2, 2, 2, backend=backend), _gradcheck_inputs())


def test_shared_index_functions_match_brute_force(cpu_kernel):
    """The header the CUDA kernels use, evaluated through the CPU build."""
    checked = 0
    for size, k, s, p, d in itertools.product(range(1, 8), range(1, 5), range(1, 4), range(0, 4), range(1, 3)):
        out_size = (size + 2 * p - d * (k - 1) - 1) // s + 1
        if out_size < 1:
            continue
        ranges, inverse, got_out_size = cpu_kernel.index_table(size, k, s, p, d)
        assert got_out_size == out_size
        for t in range(k):
            valid = [o for o in range(out_size) if 0 <= o * s + t * d - p < size]
            lo, hi = ranges[t].tolist()
            assert list(range(lo, hi)) == valid, (size, k, s, p, d, t)
            for coord in range(size):
                readers = [o for o in range(out_size) if o * s + t * d - p == coord]
                assert inverse[coord, t].item() == (readers[0] if readers else -1)
        checked += 1
    assert checked > 500


# --------------------------------------------------------------------------- dispatch

def _spy_cpu_forward(monkeypatch):
    calls = []
    original = cpu.forward

    def spy(*args):
        calls.append(args)
        return original(*args)

    monkeypatch.setattr(cpu, "forward", spy)
    return calls


def test_cpu_tensors_dispatch_to_cpu_kernel(cpu_kernel, monkeypatch):
    monkeypatch.delenv(functional.ENV_VAR, raising=False)
    calls = _spy_cpu_forward(monkeypatch)
    x, weight, _ = make_inputs(*CASES[0])
    involution(x, weight, 1, 1, 1)
    assert len(calls) == 1
    involution(x, weight, 1, 1, 1, backend="reference")
    assert len(calls) == 1


def test_environment_variable_forces_backend(cpu_kernel, monkeypatch):
    calls = _spy_cpu_forward(monkeypatch)
    x, weight, _ = make_inputs(*CASES[0])
    monkeypatch.setenv(functional.ENV_VAR, "reference")
    involution(x, weight, 1, 1, 1)
    assert not calls
    involution(x, weight, 1, 1, 1, backend="cpu")  # the argument wins over the variable
    assert len(calls) == 1
    monkeypatch.setenv(functional.ENV_VAR, "fast")
    with pytest.raises(ValueError, match=r"INVOLUTION_BACKEND='fast'.*reference, cpu, cuda"):
        involution(x, weight, 1, 1, 1)


def test_backend_device_mismatch_and_unknown_backend():
    x, weight, _ = make_inputs(*CASES[0])
    with pytest.raises(ValueError, match=r"backend='cuda' needs cuda tensors.*cpu"):
        involution(x, weight, 1, 1, 1, backend="cuda")
    with pytest.raises(ValueError, match=r"backend='triton' is not a backend"):
        involution(x, weight, 1, 1, 1, backend="triton")


def test_unbuildable_cpu_kernel_falls_back_once_with_warning(monkeypatch):
    monkeypatch.delenv(functional.ENV_VAR, raising=False)
    x, weight, _ = make_inputs(*CASES[0])
    before = cpu.load_error()
    with cpu.fresh_load_state(build_error="CalledProcessError: no compiler"), functional.fresh_fallback_warnings():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = involution(x, weight, 1, 1, 1)
            involution(x, weight, 1, 1, 1)
        messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
        assert len(messages) == 1 and "no compiler" in messages[0]
        torch.testing.assert_close(out, involution_reference(x, weight, 1, 1, 1))
        with pytest.raises(RuntimeError, match="could not be built.*no compiler"):
            involution(x, weight, 1, 1, 1, backend="cpu")
    assert cpu.load_error() == before  # the state from before the block is back


def test_broken_cpu_kernel_source_warns_with_the_compiler_error(tmp_path, monkeypatch):
    """A build failure reaches the user as one warning carrying the compiler's own error and the fix."""
    csrc = tmp_path / "csrc"
    csrc.mkdir()
    for name in cpu.SOURCES + cpu.HEADERS:
        (csrc / name).write_text((cpu.CSRC / name).read_text())
    broken = csrc / cpu.SOURCES[0]
    broken.write_text('#include "no_such_header_for_this_test.h"\n' + broken.read_text())
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "build"))
    monkeypatch.delenv(functional.ENV_VAR, raising=False)
    monkeypatch.setattr(cpu, "CSRC", csrc)
    x, weight, _ = make_inputs(*CASES[0])
    with cpu.fresh_load_state(), functional.fresh_fallback_warnings(), pytest.warns(RuntimeWarning) as caught:
        involution(x, weight, 1, 1, 1)
    message = str(caught[0].message)
    assert "no_such_header_for_this_test.h" in message and "build stopped" not in message
    assert "install a C++ compiler" in message and "INVOLUTION_BACKEND=reference" in message


# --------------------------------------------------------------------------- torch.library integration

class _TinyInvolutionNet(torch.nn.Module):
    """Kernel generation by a 1x1 conv, then the op: the smallest model using it."""

    def __init__(self, channels=8, groups=2, k=3):
        super().__init__()
        self.k, self.groups = k, groups
        self.kernel = torch.nn.Conv2d(channels, groups * k * k, 1)

    def forward(self, x):
        n, _, h, w = x.shape
        weight = self.kernel(x).view(n, self.groups, self.k, self.k, h, w)
        return involution(x, weight, 1, self.k // 2, 1).relu()


def _ops_in(graph: torch.fx.Graph):
    return [str(node.target) for node in graph.nodes if node.op == "call_function"]


def test_torch_compile_fullgraph_sees_one_op():
    torch.manual_seed(0)
    model, x = _TinyInvolutionNet(), torch.randn(2, 8, 7, 6, requires_grad=True)
    graphs = []

    def capture(gm, example_inputs):
        graphs.append(gm.graph)
        return gm.forward

    compiled = torch.compile(model, fullgraph=True, backend=capture)
    out = compiled(x)
    torch.testing.assert_close(out, model(x))
    involution_calls = [op for op in _ops_in(graphs[0]) if "involution" in op]
    assert len(involution_calls) == 1 and "involution_ops.involution" in involution_calls[0]


def test_torch_compile_aot_forward_backward_matches_eager():
    torch.manual_seed(0)
    model = _TinyInvolutionNet()
    x = torch.randn(2, 8, 7, 6, requires_grad=True)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    out = compiled(x)
    grad_compiled = torch.autograd.grad(out.sum(), x)[0]
    grad_eager = torch.autograd.grad(model(x).sum(), x)[0]
    torch.testing.assert_close(out, model(x))
    torch.testing.assert_close(grad_compiled, grad_eager)


def test_fake_tensor_shapes():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        x = torch.empty(2, 8, 9, 7)
        weight = torch.empty(2, 4, 5, 5, 5, 4)
        out = involution(x, weight, 2, 2, 1)
    assert out.shape == (2, 8, 5, 4)


def test_opcheck_registration(cpu_kernel):
    x, weight, _ = make_inputs(*CASES[1], dtype=torch.float64)
    args = (x.requires_grad_(True), weight.requires_grad_(True), [2, 2], [2, 2], [1, 1], "cpu")
    torch.library.opcheck(torch.ops.involution_ops.involution.default, args)


def test_fx_symbolic_trace_records_one_call():
    torch.manual_seed(0)
    model = _TinyInvolutionNet()
    traced = torch.fx.symbolic_trace(model)
    assert [op for op in _ops_in(traced.graph) if "involution" in op] == [str(involution)]
    x = torch.randn(1, 8, 5, 5)
    torch.testing.assert_close(traced(x), model(x))


def test_jit_trace_records_custom_op():
    torch.manual_seed(0)
    model, x = _TinyInvolutionNet(), torch.randn(1, 8, 6, 5)
    traced = torch.jit.trace(model, x)
    assert "involution_ops::involution" in str(traced.graph)
    y = torch.randn(2, 8, 6, 5)
    torch.testing.assert_close(traced(y), model(y))


def test_flop_counter_counts_involution_macs_times_two():
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    model, x = _TinyInvolutionNet(channels=8, groups=2, k=3), torch.randn(2, 8, 7, 6)
    with FlopCounterMode(display=False) as counter:
        model(x).sum().backward()
    counts = counter.get_flop_counts()["Global"]
    macs = 2 * 8 * 3 * 3 * 7 * 6  # N*C*KH*KW*Ho*Wo
    assert counts[torch.ops.involution_ops.involution] == 2 * macs
    # x needs no gradient here, so only the weight gradient is computed
    assert torch.ops.involution_ops.involution_backward_input not in counts
    assert counts[torch.ops.involution_ops.involution_backward_weight] == 2 * macs
    with FlopCounterMode(display=False) as counter:
        model(x.requires_grad_(True)).sum().backward()
    counts = counter.get_flop_counts()["Global"]
    assert counts[torch.ops.involution_ops.involution_backward_input] == 2 * macs
    assert counts[torch.ops.involution_ops.involution_backward_weight] == 2 * macs


def test_cpu_autocast_runs_in_autocast_dtype(cpu_kernel):
    x, weight, _ = make_inputs(*CASES[0], dtype=torch.float32)
    x.requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = involution(x, weight, 1, 1, 1)
    assert out.dtype == torch.bfloat16
    expected = involution_reference(x.bfloat16().double(), weight.bfloat16().double(), 1, 1, 1)
    torch.testing.assert_close(out.double(), expected, rtol=2**-7, atol=2**-7 * expected.abs().max().item())
    out.float().sum().backward()
    assert x.grad.dtype == torch.float32


# --------------------------------------------------------------------------- bad input

def _t(*shape, dtype=torch.float32):
    return torch.zeros(*shape, dtype=dtype)


BAD_INPUTS = [
    ((_t(8, 9, 9), _t(1, 1, 3, 3, 7, 7)), {}, ValueError, r"x must be 4-D \(N, C, H, W\), got shape \(8, 9, 9\)"),
    ((_t(1, 8, 9, 9), _t(1, 1, 3, 3, 7)), {}, ValueError, r"weight must be 6-D .*got shape \(1, 1, 3, 3, 7\)"),
    ((_t(1, 8, 9, 9), _t(1, 3, 3, 3, 7, 7)), {}, ValueError, r"G = weight.shape\[1\] = 3 must divide .*C = x.shape\[1\] = 8"),
    ((_t(1, 8, 9, 9), _t(1, 2, 3, 3, 9, 9)), {}, ValueError,
     r"\(Ho, Wo\) = \(7, 7\).*floor\(\(H \+ 2p - d\*\(K-1\) - 1\) / s\) \+ 1.*must be \(1, 2, 3, 3, 7, 7\), got \(1, 2, 3, 3, 9, 9\)"),
    ((_t(1, 8, 9, 9), _t(2, 2, 3, 3, 7, 7)), {}, ValueError, r"batch size.*needs weight \(1, G"),
    ((_t(1, 8, 9, 9), _t(1, 2, 3, 3, 7, 7, dtype=torch.float64)), {}, TypeError, r"same dtype.*float32.*float64"),
    ((_t(1, 8, 9, 9, dtype=torch.int64), _t(1, 2, 3, 3, 7, 7)), {}, TypeError, r"x must be a floating-point.*int64"),
    ((_t(1, 8, 9, 9).to("meta"), _t(1, 2, 3, 3, 7, 7)), {}, ValueError, r"same device.*meta.*cpu"),
    ((_t(1, 8, 9, 9), _t(1, 2, 0, 3, 9, 7)), {}, ValueError, r"kernel size \(KH, KW\) = \(0, 3\) must be >= 1"),
    ((_t(1, 8, 9, 9), _t(1, 2, 3, 3, 7, 7)), {"stride": 0}, ValueError, r"stride must be >= 1, got 0"),
    ((_t(1, 8, 9, 9), _t(1, 2, 3, 3, 7, 7)), {"dilation": (1, 0)}, ValueError, r"dilation must be >= 1, got \(1, 0\)"),
    ((_t(1, 8, 9, 9), _t(1, 2, 3, 3, 7, 7)), {"padding": -1}, ValueError, r"padding must be >= 0, got -1"),
    ((_t(1, 8, 9, 9), _t(1, 2, 3, 3, 7, 7)), {"stride": 1.5}, TypeError, r"stride must be an int or a pair"),
    ((_t(1, 8, 9, 9), _t(1, 2, 3, 3, 7, 7)), {"padding": (1, 2, 3)}, TypeError, r"padding must be an int or a pair"),
    ((_t(1, 8, 2, 2), _t(1, 2, 3, 3, 1, 1)), {}, ValueError, r"input 2x2 is too small for kernel 3x3.*output would be 0x0"),
    (([[1.0]], _t(1, 2, 3, 3, 7, 7)), {}, TypeError, r"x must be a torch.Tensor, got list"),
]


@pytest.mark.parametrize("args, kwargs, error, message", BAD_INPUTS, ids=[m[:30] for *_, m in BAD_INPUTS])
@pytest.mark.parametrize("backend", [None, "reference"])
def test_bad_input_is_rejected_before_any_kernel(args, kwargs, error, message, backend, monkeypatch):
    def kernel_must_not_run(*a, **k):
        raise AssertionError("a kernel ran on invalid input")

    monkeypatch.setattr(functional, "implementation_for", kernel_must_not_run)
    with pytest.raises(error, match=message):
        involution(*args, **kwargs, backend=backend)
