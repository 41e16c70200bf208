"""Plain-PyTorch involution: the ground truth every backend is tested against.

Works on any device and dtype, is differentiable through autograd, and never
materialises a K*K-times copy of the input: it accumulates one shifted,
strided view of the padded input per kernel tap.

The explicit backward formulas below serve the `reference` backend of the
registered custom op (whose implementation runs below autograd); the tests
check them against autograd through `involution_reference`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    return int(value[0]), int(value[1])


def _tap_window(tap: int, dilation: int, stride: int, out_size: int) -> slice:
    start = tap * dilation
    return slice(start, start + (out_size - 1) * stride + 1, stride)


def involution_reference(
    x: torch.Tensor,
    weight: torch.Tensor,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
) -> torch.Tensor:
    """out[n, c, i, j] = sum_{u,v} weight[n, g(c), u, v, i, j] * x[n, c, i*s + u*d - p, j*s + v*d - p].

    x: (N, C, H, W); weight: (N, G, KH, KW, Ho, Wo) with G dividing C.
    Inputs are assumed valid (the public `involution` validates them).
    """
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    dh, dw = _pair(dilation)
    n, c, h, w = x.shape
    _, g, kh, kw, ho, wo = weight.shape
    padded = F.pad(x, (pw, pw, ph, ph)).reshape(n, g, c // g, h + 2 * ph, w + 2 * pw)
    out = None
    for u in range(kh):
        for v in range(kw):
            tap = padded[..., _tap_window(u, dh, sh, ho), _tap_window(v, dw, sw, wo)]
            term = tap * weight[:, :, u, v].unsqueeze(2)
            out = term if out is None else out + term
    return out.reshape(n, c, ho, wo)


def involution_reference_backward_input(
    grad_out: torch.Tensor,
    weight: torch.Tensor,
    input_size: tuple[int, int],
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
) -> torch.Tensor:
    """Gradient of `involution_reference` with respect to x, as shifted sums."""
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    dh, dw = _pair(dilation)
    h, w = input_size
    n, c, ho, wo = grad_out.shape
    _, g, kh, kw, _, _ = weight.shape
    grad_padded = grad_out.new_zeros(n, g, c // g, h + 2 * ph, w + 2 * pw)
    grad_grouped = grad_out.reshape(n, g, c // g, ho, wo)
    for u in range(kh):
        for v in range(kw):
            window = grad_padded[..., _tap_window(u, dh, sh, ho), _tap_window(v, dw, sw, wo)]
            window += grad_grouped * weight[:, :, u, v].unsqueeze(2)
    return grad_padded[..., ph : ph + h, pw : pw + w].reshape(n, c, h, w)


def involution_reference_backward_weight(
    grad_out: torch.Tensor,
    x: torch.Tensor,
    kernel_size: tuple[int, int],
    groups: int,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
) -> torch.Tensor:
    """Gradient of `involution_reference` with respect to weight, as shifted sums."""
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    dh, dw = _pair(dilation)
    kh, kw = kernel_size
    n, c, h, w = x.shape
    ho, wo = grad_out.shape[-2:]
    padded = F.pad(x, (pw, pw, ph, ph)).reshape(n, groups, c // groups, h + 2 * ph, w + 2 * pw)
    grad_grouped = grad_out.reshape(n, groups, c // groups, ho, wo)
    grad_weight = grad_out.new_empty(n, groups, kh, kw, ho, wo)
    for u in range(kh):
        for v in range(kw):
            tap = padded[..., _tap_window(u, dh, sh, ho), _tap_window(v, dw, sw, wo)]
            grad_weight[:, :, u, v] = (grad_grouped * tap).sum(dim=2)
    return grad_weight
