"""The public `involution` function: validation, the one dispatch point and the
`torch.library` registration that makes compile / fx / jit / FlopCounterMode see
a single `involution_ops::involution` op, with reverse- and forward-mode autograd
of any order, torch.func transforms and vmap on the backends' own kernels.

Backends: `reference` (plain PyTorch, any device), `cpu` (compiled C++ kernel),
`cuda` (CuPy kernels). Selection order: the `backend=` argument, then the
INVOLUTION_BACKEND environment variable, then the tensors' device. Every kernel call
of the three ops picks its backend through `implementation_for`, once per call.
"""
from __future__ import annotations

import importlib
import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import ModuleType

import torch
from torch._functorch.utils import enable_single_level_autograd_function
from torch.utils.flop_counter import register_flop_formula

from . import reference

BACKENDS = ("reference", "cpu", "cuda")
ENV_VAR = "INVOLUTION_BACKEND"
_AUTO = "auto"

IntOrPair = int | tuple[int, int] | list[int]  # types TorchScript also knows


def _int_pair(name: str, value: IntOrPair, minimum: int) -> tuple[int, int]:
    if isinstance(value, (int, torch.SymInt)) and not isinstance(value, bool):
        pair = (value, value)
    elif (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, (int, torch.SymInt)) and not isinstance(v, bool) for v in value)
    ):
        pair = (value[0], value[1])
    else:
        raise TypeError(f"involution: {name} must be an int or a pair of ints (h, w), got {value!r}")
    if pair[0] < minimum or pair[1] < minimum:
        raise ValueError(f"involution: {name} must be >= {minimum}, got {value!r}")
    return pair


def output_size(
    input_size: tuple[int, int],
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
) -> tuple[int, int]:
    """(Ho, Wo) = floor((H + 2p - d*(K-1) - 1) / s) + 1 per dimension, as in conv2d."""
    return tuple(  # type: ignore[return-value]
        (size + 2 * p - d * (k - 1) - 1) // s + 1
        for size, k, s, p, d in zip(input_size, kernel_size, stride, padding, dilation)
    )


def _validate(x: torch.Tensor, weight: torch.Tensor, stride, padding, dilation) -> None:
    for name, tensor in (("x", x), ("weight", weight)):
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"involution: {name} must be a torch.Tensor, got {type(tensor).__name__}")
        if not tensor.is_floating_point():
            raise TypeError(f"involution: {name} must be a floating-point tensor, got dtype {tensor.dtype}")
    if x.dim() != 4:
        raise ValueError(f"involution: x must be 4-D (N, C, H, W), got shape {tuple(x.shape)}")
    if weight.dim() != 6:
        raise ValueError(
            f"involution: weight must be 6-D (N, G, KH, KW, Ho, Wo), got shape {tuple(weight.shape)}"
        )
    if x.dtype != weight.dtype:
        raise TypeError(
            f"involution: x and weight must have the same dtype, got x {x.dtype} and weight {weight.dtype}; "
            "cast one of them (or run under torch.autocast)"
        )
    if x.device != weight.device:
        raise ValueError(
            f"involution: x and weight must be on the same device, got x on {x.device} and weight on {weight.device}"
        )
    n, c, h, w = x.shape
    wn, groups, kh, kw, who, wwo = weight.shape
    if wn != n:
        raise ValueError(
            f"involution: weight batch size must equal x's: x {tuple(x.shape)} needs weight ({n}, G, KH, KW, Ho, Wo), "
            f"got {tuple(weight.shape)}"
        )
    if groups < 1 or c % groups != 0:
        raise ValueError(
            f"involution: the number of groups G = weight.shape[1] = {groups} must divide the channels "
            f"C = x.shape[1] = {c} (x {tuple(x.shape)}, weight {tuple(weight.shape)})"
        )
    if kh < 1 or kw < 1:
        raise ValueError(f"involution: kernel size (KH, KW) = ({kh}, {kw}) must be >= 1 (weight {tuple(weight.shape)})")
    ho, wo = output_size((h, w), (kh, kw), stride, padding, dilation)
    if ho < 1 or wo < 1:
        raise ValueError(
            f"involution: input {h}x{w} is too small for kernel {kh}x{kw} with stride {stride}, padding {padding}, "
            f"dilation {dilation}: output would be {ho}x{wo}; Ho = floor((H + 2p - d*(K-1) - 1) / s) + 1 must be >= 1"
        )
    if (who, wwo) != (ho, wo):
        raise ValueError(
            f"involution: weight spatial size must equal the output size: x {tuple(x.shape)} with kernel {kh}x{kw}, "
            f"stride {stride}, padding {padding}, dilation {dilation} gives (Ho, Wo) = ({ho}, {wo}) "
            f"[Ho = floor((H + 2p - d*(K-1) - 1) / s) + 1], so weight must be ({n}, {groups}, {kh}, {kw}, {ho}, {wo}), "
            f"got {tuple(weight.shape)}"
        )


def _checked(x, weight, stride, padding, dilation) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """The arguments checked (errors naming the problem and the fix) and the sizes as pairs."""
    stride = _int_pair("stride", stride, 1)
    padding = _int_pair("padding", padding, 0)
    dilation = _int_pair("dilation", dilation, 1)
    if torch.jit.is_tracing():  # sizes are traced tensors there; the checks are about this trace's values
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            _validate(x, weight, stride, padding, dilation)
    else:
        _validate(x, weight, stride, padding, dilation)
    return stride, padding, dilation


def _requested_backend(backend: str | None, device: torch.device) -> str:
    source = "backend="
    if backend is None:
        backend = os.environ.get(ENV_VAR) or None
        source = f"{ENV_VAR}="
    if backend is None:
        return _AUTO
    if backend not in BACKENDS:
        raise ValueError(f"involution: {source}{backend!r} is not a backend; choose one of {', '.join(BACKENDS)}")
    if backend in ("cpu", "cuda") and device.type != backend:
        raise ValueError(
            f"involution: {source}{backend!r} needs {backend} tensors, got tensors on {device}; "
            f"move them or use backend='reference'"
        )
    return backend


def involution(
    x: torch.Tensor,
    weight: torch.Tensor,
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
    backend: str | None = None,
) -> torch.Tensor:
    """out[n, c, i, j] = sum_{u,v} weight[n, c // (C/G), u, v, i, j] * x[n, c, i*s + u*d - p, j*s + v*d - p].

    x: (N, C, H, W); weight: (N, G, KH, KW, Ho, Wo); zero padding outside the image.
    `backend` (or INVOLUTION_BACKEND) forces one of "reference", "cpu", "cuda".
    """
    if torch.jit.is_scripting():  # the op validates its inputs and reads INVOLUTION_BACKEND when it runs
        chosen = "auto" if backend is None else backend
        stride, padding, dilation = _scripted_pair(stride), _scripted_pair(padding), _scripted_pair(dilation)
        return torch.ops.involution_ops.involution(x, weight, stride, padding, dilation, chosen)
    return _involution(x, weight, stride, padding, dilation, backend)


def _scripted_pair(value: IntOrPair) -> list[int]:
    if isinstance(value, int):
        return [value, value]
    if isinstance(value, list):
        return value
    return [value[0], value[1]]


@torch.jit.unused
def _involution(
    x: torch.Tensor,
    weight: torch.Tensor,
    stride: IntOrPair,
    padding: IntOrPair,
    dilation: IntOrPair,
    backend: str | None,
) -> torch.Tensor:
    if isinstance(x, torch.fx.Proxy) or isinstance(weight, torch.fx.Proxy):
        # symbolic tracing: record one call (validated when the graph runs) instead of tracing the checks
        tracer = (x if isinstance(x, torch.fx.Proxy) else weight).tracer
        kwargs = dict(stride=stride, padding=padding, dilation=dilation, backend=backend)
        return tracer.create_proxy("call_function", involution, (x, weight), kwargs)
    stride, padding, dilation = _checked(x, weight, stride, padding, dilation)
    chosen = _requested_backend(backend, x.device)
    return torch.ops.involution_ops.involution(x, weight, list(stride), list(padding), list(dilation), chosen)


# --------------------------------------------------------------------------- backends

class ReferenceBackend:
    """Adapter giving the reference the kernel-backend interface."""

    @staticmethod
    def forward(x, weight, stride, padding, dilation):
        return reference.involution_reference(x, weight, stride, padding, dilation)

    @staticmethod
    def backward_input(grad_out, weight, input_size, stride, padding, dilation):
        return reference.involution_reference_backward_input(grad_out, weight, input_size, stride, padding, dilation)

    @staticmethod
    def backward_weight(grad_out, x, kernel_size, groups, stride, padding, dilation):
        return reference.involution_reference_backward_weight(
            grad_out, x, kernel_size, groups, stride, padding, dilation
        )


_warned_fallback: set[str] = set()


@contextmanager
def fresh_fallback_warnings() -> Iterator[None]:
    """Within the block no fallback has been warned about yet, so the next one warns again;
    the memory from before is restored on exit. The seam the fallback tests use."""
    saved = set(_warned_fallback)
    _warned_fallback.clear()
    try:
        yield
    finally:
        _warned_fallback.clear()
        _warned_fallback.update(saved)


def _fallback(kind: str, reason: str):
    if kind not in _warned_fallback:
        _warned_fallback.add(kind)
        fix = {
            "cpu": "install a C++ compiler (g++) and ninja, then restart Python (the kernel is built on first use)",
            "cuda": "install CuPy for your CUDA version (pip install cupy-cuda12x or cupy-cuda13x)",
        }[kind]
        warnings.warn(
            f"involution: the {kind} kernel is unavailable ({reason}); falling back to the reference "
            f"implementation, which is much slower and uses more memory. Fix: {fix}; or set "
            f"{ENV_VAR}=reference to choose the reference on purpose and silence this warning.",
            RuntimeWarning,
            stacklevel=3,
        )
    return ReferenceBackend


def implementation_for(backend: str, device: torch.device) -> ModuleType | type:
    """The one dispatch point: what runs a kernel call of the ops (an object with `forward`,
    `backward_input` and `backward_weight`) for `backend` ("auto" or one of BACKENDS) on `device`.
    Called once per kernel call, the forward's after its inputs are validated (the tests count calls here)."""
    # checked again for callers of the op itself (TorchScript): the variable decides "auto"
    backend = _requested_backend(None if backend == _AUTO else backend, device)
    if backend == "reference":
        return ReferenceBackend
    for name in ("cpu", "cuda"):
        if backend == name or (backend == _AUTO and device.type == name):
            module = importlib.import_module(f"{__package__}.{name}")  # imported on first use only
            if backend == _AUTO:
                error = module.load_error()
                return module if error is None else _fallback(name, error)
            module.load()
            return module
    return ReferenceBackend


# --------------------------------------------------------------------------- torch.library
#
# Three ops: the forward and its two gradients. Each is bilinear in its two tensor
# arguments, and each one's derivatives are the other ops, so all of autograd (any
# order), forward-mode AD and the torch.func transforms run on the fast kernels:
#   y = involution(x, w)             dx = backward_input(dy, w)   dw = backward_weight(dy, x)
#   y = backward_input(g, w)         dg = involution(dy, w)        dw = backward_weight(g, dy)
#   y = backward_weight(g, x)        dg = involution(x, dy)        dx = backward_input(g, dy)
# and the tangent of any of them is op(a_t, b) + op(a, b_t).
# The ops are defined with the low-level torch.library API rather than `custom_op` because
# `custom_op`'s autograd kernel has no forward-mode rule and no functorch support (setup_context).

_lib = torch.library.Library("involution_ops", "DEF")
_SCHEMAS = {
    "involution": "(Tensor x, Tensor weight, SymInt[] stride, SymInt[] padding, SymInt[] dilation, str backend)",
    "involution_backward_input": (
        "(Tensor grad_out, Tensor weight, SymInt[] input_size, SymInt[] stride, SymInt[] padding, "
        "SymInt[] dilation, str backend)"
    ),
    "involution_backward_weight": (
        "(Tensor grad_out, Tensor x, SymInt[] kernel_size, SymInt groups, SymInt[] stride, SymInt[] padding, "
        "SymInt[] dilation, str backend)"
    ),
}
for _name, _arguments in _SCHEMAS.items():
    _lib.define(_name + _arguments + " -> Tensor", tags=(torch.Tag.pt2_compliant_tag,))
_forward_op = torch.ops.involution_ops.involution.default
_backward_input_op = torch.ops.involution_ops.involution_backward_input.default
_backward_weight_op = torch.ops.involution_ops.involution_backward_weight.default


def _forward_kernel(x, weight, stride, padding, dilation, backend):
    # checked again here for callers of the op itself (TorchScript, saved graphs): no kernel sees bad sizes
    stride, padding, dilation = _checked(x, weight, list(stride), list(padding), list(dilation))
    impl = implementation_for(backend, x.device)
    return impl.forward(x, weight, stride, padding, dilation).contiguous()


def _backward_input_kernel(grad_out, weight, input_size, stride, padding, dilation, backend):
    impl = implementation_for(backend, grad_out.device)
    result = impl.backward_input(grad_out, weight, tuple(input_size), tuple(stride), tuple(padding), tuple(dilation))
    return result.contiguous()


def _backward_weight_kernel(grad_out, x, kernel_size, groups, stride, padding, dilation, backend):
    impl = implementation_for(backend, grad_out.device)
    result = impl.backward_weight(
        grad_out, x, tuple(kernel_size), groups, tuple(stride), tuple(padding), tuple(dilation)
    )
    return result.contiguous()


@torch.library.register_fake(_forward_op)
def _(x, weight, stride, padding, dilation, backend):
    n, c = x.shape[:2]
    ho, wo = weight.shape[-2:]
    return x.new_empty((n, c, ho, wo))


@torch.library.register_fake(_backward_input_op)
def _(grad_out, weight, input_size, stride, padding, dilation, backend):
    n, c = grad_out.shape[:2]
    return grad_out.new_empty((n, c, input_size[0], input_size[1]))


@torch.library.register_fake(_backward_weight_op)
def _(grad_out, x, kernel_size, groups, stride, padding, dilation, backend):
    n, _, ho, wo = grad_out.shape
    return grad_out.new_empty((n, groups, kernel_size[0], kernel_size[1], ho, wo))


def _input_gradient(grad_out, weight, x, conv):
    return _backward_input_op(grad_out, weight, list(x.shape[-2:]), *conv)


def _weight_gradient(grad_out, x, weight, conv):
    return _backward_weight_op(grad_out, x, list(weight.shape[2:4]), weight.shape[1], *conv)


# Each rule: (grad of the op's output, its two tensor inputs, its other arguments, which
# input gradients are needed) -> the two input gradients. The last four arguments of every
# op are (stride, padding, dilation, backend).
def _vjp_forward(grad, x, weight, params, needs):
    conv = params[-4:]
    return (
        _input_gradient(grad, weight, x, conv) if needs[0] else None,
        _weight_gradient(grad, x, weight, conv) if needs[1] else None,
    )


def _vjp_backward_input(grad, grad_out, weight, params, needs):
    conv = params[-4:]
    return (
        _forward_op(grad, weight, *conv) if needs[0] else None,
        _weight_gradient(grad_out, grad, weight, conv) if needs[1] else None,
    )


def _vjp_backward_weight(grad, grad_out, x, params, needs):
    conv = params[-4:]
    return (
        _forward_op(x, grad, *conv) if needs[0] else None,
        _input_gradient(grad_out, grad, x, conv) if needs[1] else None,
    )


_VJPS = {_forward_op: _vjp_forward, _backward_input_op: _vjp_backward_input, _backward_weight_op: _vjp_backward_weight}


def _batched(op, batch_size, in_dims, a, b, params):
    """op over a vmapped batch: the vmap dimension is folded into the ops' own batch dimension N."""

    def fold(tensor, dim):
        tensor = tensor.movedim(dim, 0) if dim is not None else tensor.expand(batch_size, *tensor.shape)
        return tensor.reshape(-1, *tensor.shape[2:])

    out = op(fold(a, in_dims[0]), fold(b, in_dims[1]), *params)
    return out.reshape(batch_size, -1, *out.shape[1:]), 0


def _below_autograd(op, keyset, a, b, params):
    with torch._C._AutoDispatchBelowAutograd():
        return op.redispatch(keyset & torch._C._after_autograd_keyset, a, b, *params)


class _Bilinear(torch.autograd.function._SingleLevelFunction):
    """Autograd of the three ops (reverse and forward mode), made of the ops themselves.

    Applied from the ops' Autograd kernel, where a built-in op's derivative formulas run:
    under a torch.func transform it sees that transform level's wrapped tensors only (as
    functorch's own single-level Functions do), and vmap reaches the ops' batching rule.
    """

    @staticmethod
    def forward(op, dispatch, a, b, *params):
        keyset, grad_enabled, fwd_grad_enabled = dispatch
        # apply() turned both grad modes off; an outer torch.func level below needs them as they were
        with torch.set_grad_enabled(grad_enabled), torch.autograd.forward_ad._set_fwd_grad_enabled(fwd_grad_enabled):
            return _below_autograd(op, keyset, a, b, params)

    @staticmethod
    def setup_context(ctx, inputs, output):
        op, _dispatch, a, b, *params = inputs
        ctx.op, ctx.params = op, params
        ctx.save_for_backward(a, b)
        ctx.save_for_forward(a, b)

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        grad_a, grad_b = _VJPS[ctx.op](grad, a, b, ctx.params, ctx.needs_input_grad[2:4])
        return None, None, grad_a, grad_b, *(None for _ in ctx.params)

    @staticmethod
    def jvp(ctx, _op_tangent, _dispatch_tangent, a_tangent, b_tangent, *_param_tangents):
        a, b = ctx.saved_tensors
        terms = []
        if a_tangent is not None:
            terms.append(ctx.op(a_tangent, b, *ctx.params))
        if b_tangent is not None:
            terms.append(ctx.op(a, b_tangent, *ctx.params))
        return terms[0] if len(terms) == 1 else terms[0] + terms[1]


def _needs_autograd(a: torch.Tensor, b: torch.Tensor) -> bool:
    """A gradient to record, a forward-AD level open (dual tensors, which do not require grad),
    or a torch.func transform active: otherwise the kernel runs with no autograd overhead."""
    return (
        (torch.is_grad_enabled() and (a.requires_grad or b.requires_grad))
        or (torch._C._is_fwd_grad_enabled() and torch.autograd.forward_ad._current_level >= 0)
        or torch._C._are_functorch_transforms_active()
    )


def _register(op, kernel) -> None:
    name = op._schema.name.split("::")[1]
    _lib.impl(name, kernel, "CompositeExplicitAutograd")

    def autograd_kernel(keyset, a, b, *params):
        if _needs_autograd(a, b):
            dispatch = (keyset, torch.is_grad_enabled(), torch._C._is_fwd_grad_enabled())
            with enable_single_level_autograd_function():
                return _Bilinear.apply(op, dispatch, a, b, *params)
        return _below_autograd(op, keyset, a, b, params)

    _lib.impl(name, autograd_kernel, "Autograd", with_keyset=True)
    torch.library.register_vmap(
        op, lambda info, in_dims, a, b, *params: _batched(op, info.batch_size, in_dims[:2], a, b, params), lib=_lib
    )


for _op, _kernel in (
    (_forward_op, _forward_kernel),
    (_backward_input_op, _backward_input_kernel),
    (_backward_weight_op, _backward_weight_kernel),
):
    _register(_op, _kernel)


def _register_autocast(device_type: str) -> None:
    """Run natively in the autocast dtype (fp16/bf16) instead of autocast's fixed-dtype helper."""
    dispatch_key = "Autocast" + {"cpu": "CPU", "cuda": "CUDA"}[device_type]

    def kernel(x, weight, stride, padding, dilation, backend):
        dtype = torch.get_autocast_dtype(device_type)
        with torch.autocast(device_type, enabled=False):
            if x.device.type == device_type:
                x, weight = x.to(dtype), weight.to(dtype)
            return _forward_op(x, weight, stride, padding, dilation, backend)

    _lib.impl("involution", kernel, dispatch_key)


for _device_type in ("cpu", "cuda"):
    _register_autocast(_device_type)


def _involution_macs(out_shape: Sequence[int], kernel_shape: Sequence[int]) -> int:
    n, c, ho, wo = out_shape
    return n * c * kernel_shape[0] * kernel_shape[1] * ho * wo


@register_flop_formula(torch.ops.involution_ops.involution)
def _forward_flops(x_shape, weight_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * _involution_macs((*x_shape[:2], *weight_shape[-2:]), weight_shape[2:4])


@register_flop_formula(torch.ops.involution_ops.involution_backward_input)
def _backward_input_flops(grad_shape, weight_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * _involution_macs(grad_shape, weight_shape[2:4])


@register_flop_formula(torch.ops.involution_ops.involution_backward_weight)
def _backward_weight_flops(grad_shape, x_shape, kernel_size, *args, out_shape=None, **kwargs) -> int:
    return 2 * _involution_macs(grad_shape, kernel_size)
