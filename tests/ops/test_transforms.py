"""The operator under PyTorch's transforms: forward-mode AD, higher-order gradients,
torch.func (jvp, jacfwd, jacrev, hessian, vmap, per-sample gradients) and TorchScript.

The oracle is the plain-PyTorch `involution_reference`, which autograd differentiates in
every mode on its own; gradgradcheck adds a numerical check of the second order."""
from __future__ import annotations

import io

import pytest
import torch
import torch.autograd.forward_ad as fwAD
from torch.func import grad, hessian, jacfwd, jacrev, jvp, vmap

import involution_ops.ops.functional as functional
from involution_ops import Involution, involution
from involution_ops.ops import cuda
from involution_ops.ops.reference import involution_reference

STRIDE, PADDING, DILATION = 2, 2, 2  # (1, 4, 6, 5) input, 3x3 kernel: a 3x3 output


def _inputs(seed=0, batch=1):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 4, 6, 5, dtype=torch.float64, generator=gen)
    weight = torch.randn(batch, 2, 3, 3, 3, 3, dtype=torch.float64, generator=gen)
    return x, weight


def _reference(x, weight):
    return involution_reference(x, weight, STRIDE, PADDING, DILATION)


def _gpu_unavailable() -> str | None:
    if not torch.cuda.is_available():
        return "needs a CUDA device"
    return cuda.load_error()


@pytest.fixture(params=["reference", "cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def op(request):
    """involution with this backend (the stride, padding and dilation above), on CPU tensors
    (moved to the GPU and back for "cuda": both moves are differentiable in every mode)."""
    backend = request.param
    if backend == "cpu":
        request.getfixturevalue("cpu_kernel")
    if backend == "cuda":
        if _gpu_unavailable() is not None:
            pytest.skip(_gpu_unavailable())
        return lambda x, weight: involution(x.cuda(), weight.cuda(), STRIDE, PADDING, DILATION, backend="cuda").cpu()
    return lambda x, weight: involution(x, weight, STRIDE, PADDING, DILATION, backend=backend)


def _assert_all_close(actual, expected):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("tangents_of", ["x", "weight", "both"])
def test_jvp_matches_reference(op, tangents_of):
    x, weight = _inputs()
    x_t, weight_t = _inputs(seed=1)
    if tangents_of != "both":  # a function of one argument: the other is a constant
        fixed = {"x": weight, "weight": x}[tangents_of]
        primal, tangent = {"x": (x, x_t), "weight": (weight, weight_t)}[tangents_of]

        def bind(f):
            return (lambda a: f(a, fixed)) if tangents_of == "x" else (lambda a: f(fixed, a))

        actual = jvp(bind(op), (primal,), (tangent,))
        expected = jvp(bind(_reference), (primal,), (tangent,))
    else:
        actual = jvp(op, (x, weight), (x_t, weight_t))
        expected = jvp(_reference, (x, weight), (x_t, weight_t))
    assert expected[1].abs().max() > 0.1
    _assert_all_close(actual, expected)


def test_forward_ad_dual_tensors_match_reference(op):
    x, weight = _inputs()
    x_t, weight_t = _inputs(seed=1)
    with fwAD.dual_level():
        for dual_x, dual_weight in (
            (fwAD.make_dual(x, x_t), fwAD.make_dual(weight, weight_t)),
            (fwAD.make_dual(x, x_t), weight),
            (x, fwAD.make_dual(weight, weight_t)),
        ):
            actual = fwAD.unpack_dual(op(dual_x, dual_weight))
            expected = fwAD.unpack_dual(_reference(dual_x, dual_weight))
            assert actual.tangent is not None
            _assert_all_close((actual.primal, actual.tangent), (expected.primal, expected.tangent))



def test_forward_over_reverse_hessian_vector_product_matches_reference(op):
    """The tangent of a gradient (torch.autograd.functional.hvp's method): forward mode through the backward ops."""
    x, weight = _inputs()
    x_t, weight_t = _inputs(seed=1)

    def hvp(f):
        with fwAD.dual_level():
            dual_x = fwAD.make_dual(x, x_t).requires_grad_()
            dual_weight = fwAD.make_dual(weight, weight_t).requires_grad_()
            grads = torch.autograd.grad(f(dual_x, dual_weight).pow(2).sum(), (dual_x, dual_weight), create_graph=True)
            return [fwAD.unpack_dual(g).tangent for g in grads]

    actual = hvp(op)
    assert all(t is not None for t in actual)
    _assert_all_close(actual, hvp(_reference))

def test_jacfwd_and_jacrev_match_reference(op):
    x, weight = _inputs()
    expected = jacrev(_reference, argnums=(0, 1))(x, weight)
    _assert_all_close(jacfwd(op, argnums=(0, 1))(x, weight), expected)
    _assert_all_close(jacrev(op, argnums=(0, 1))(x, weight), expected)


def _double_backward(f, x, weight):
    """d/d(x, weight) of a nonlinear function of the first gradients (so every cross term counts)."""
    x, weight = x.clone().requires_grad_(), weight.clone().requires_grad_()
    out = f(x, weight)
    grad_x, grad_weight = torch.autograd.grad(out.pow(2).sum(), (x, weight), create_graph=True)
    return torch.autograd.grad(grad_x.sin().sum() + grad_weight.pow(2).sum() + (grad_x * x).sum(), (x, weight))


def test_double_backward_matches_reference(op):
    x, weight = _inputs()
    _assert_all_close(_double_backward(op, x, weight), _double_backward(_reference, x, weight))


def test_gradgradcheck(op):
    x, weight = (t.requires_grad_() for t in _inputs())
    assert torch.autograd.gradgradcheck(op, (x, weight))


def test_third_order_and_hessian_match_reference(op):
    x, weight = _inputs()

    def third(f):
        return grad(lambda a: grad(lambda b: grad(lambda c: f(c, weight).pow(3).sum())(b).pow(2).sum())(a).sum())(x)

    torch.testing.assert_close(third(op), third(_reference), rtol=1e-10, atol=1e-9)
    for transform in (hessian, lambda f: jacfwd(jacrev(f)), lambda f: jacrev(jacrev(f))):
        actual = transform(lambda w: op(x, w).pow(2).sum())(weight)
        expected = hessian(lambda w: _reference(x, w).pow(2).sum())(weight)
        torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-10)


def test_vmap_matches_reference_with_one_batched_kernel_call(op, monkeypatch):
    x, weight = _inputs(batch=2)
    xs, weights = _inputs(seed=3, batch=6)
    xs, weights = xs.view(3, 2, *xs.shape[1:]), weights.view(3, 2, *weights.shape[1:])
    calls = []  # backend look-ups: one per kernel call
    implementation = functional.implementation_for
    monkeypatch.setattr(functional, "implementation_for", lambda *args: calls.append(1) or implementation(*args))

    for in_dims, args in (
        ((0, 0), (xs, weights)),
        ((0, None), (xs, weight)),
        ((None, 0), (x, weights)),
        ((1, 0), (xs.movedim(0, 1), weights)),
    ):
        calls.clear()
        actual = vmap(op, in_dims=in_dims)(*args)
        expected = vmap(_reference, in_dims=in_dims)(*args)
        torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)
        assert calls == [1], f"vmap with in_dims {in_dims} called the kernel {len(calls)} times, not once"


def test_per_sample_gradients_match_reference(op):
    xs, weights = _inputs(batch=3)
    targets = torch.randn(3, 1, 4, 3, 3, dtype=torch.float64)

    def loss(f):
        return lambda x, w, t: (f(x, w) - t).pow(2).sum()

    actual = vmap(grad(loss(op), argnums=(0, 1)))(xs.unsqueeze(1), weights.unsqueeze(1), targets)
    expected = vmap(grad(loss(_reference), argnums=(0, 1)))(xs.unsqueeze(1), weights.unsqueeze(1), targets)
    _assert_all_close(actual, expected)


def _module_reference(module, x):
    return involution_reference(x, module.kernel(x), module.stride, module.padding, module.dilation)


@pytest.mark.parametrize("train", [False, True])
def test_scripted_module_matches_eager_and_reference(train):
    torch.manual_seed(0)
    module = Involution(16, kernel_size=3, stride=2, group_channels=4).double().train(train)
    twin = Involution(16, kernel_size=3, stride=2, group_channels=4).double().train(train)
    twin.load_state_dict(module.state_dict())
    scripted = torch.jit.script(module)
    x = torch.randn(2, 16, 9, 7, dtype=torch.float64, requires_grad=True)

    out = scripted(x)
    expected = twin(x)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    if not train:
        torch.testing.assert_close(out, _module_reference(twin, x), rtol=1e-12, atol=1e-12)
    grads = torch.autograd.grad(out.square().sum(), [x, *scripted.parameters()])
    expected_grads = torch.autograd.grad(expected.square().sum(), [x, *twin.parameters()])
    _assert_all_close(grads, expected_grads)

    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)
    buffer.seek(0)
    loaded = torch.jit.load(buffer).eval()
    torch.testing.assert_close(loaded(x), _module_reference(twin.eval(), x), rtol=1e-12, atol=1e-12)
    with pytest.raises(Exception, match=r"Involution expects input \(N, 16, H, W\)"):
        loaded(torch.randn(2, 8, 9, 7, dtype=torch.float64))


def _call(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return involution(x, weight, 2, [2, 2], (2, 2))


def test_scripted_function_validates_and_honours_the_backend_variable(monkeypatch):
    _scripted_call = torch.jit.script(_call)
    x, weight = _inputs()
    torch.testing.assert_close(_scripted_call(x, weight), _reference(x, weight), rtol=1e-12, atol=1e-12)
    with pytest.raises(Exception, match=r"weight spatial size must equal the output size"):
        _scripted_call(x, weight[..., :2, :2])

    used = []
    reference_forward = functional.ReferenceBackend.forward
    monkeypatch.setattr(functional.ReferenceBackend, "forward", lambda *a: used.append(1) or reference_forward(*a))
    monkeypatch.setenv(functional.ENV_VAR, "reference")
    _scripted_call(x, weight)
    assert used == [1]
    monkeypatch.setenv(functional.ENV_VAR, "fast")
    with pytest.raises(Exception, match=r"INVOLUTION_BACKEND='fast' is not a backend"):
        _scripted_call(x, weight)



def test_torch_compile_of_transforms_matches_reference(op):
    x, weight = _inputs()
    x_t, weight_t = _inputs(seed=1)
    transforms = {
        "jvp": lambda f: jvp(f, (x, weight), (x_t, weight_t))[1],
        "vmap": lambda f: vmap(f, in_dims=(0, None))(torch.stack([x, x_t]), weight),
        "grad of grad": lambda f: grad(lambda a: grad(lambda b: f(b, weight).pow(2).sum())(a).pow(2).sum())(x),
    }
    for name, transform in transforms.items():
        torch._dynamo.reset()
        actual = torch.compile(lambda: transform(op), fullgraph=True)()
        torch.testing.assert_close(actual, transform(_reference), rtol=1e-10, atol=1e-10, msg=lambda m: f"{name}: {m}")
