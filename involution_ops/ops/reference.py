"""Plain-PyTorch involution: the ground truth every backend is tested against.

Works on any device and dtype, is differentiable through autograd, and never
materialises a K*K-times copy of the input: it accumulates one shifted,
strided view of the padded input per kernel tap.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    return int(value[0]), int(value[1])


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
    n, c, _, _ = x.shape
    _, g, kh, kw, ho, wo = weight.shape
    padded = F.pad(x, (pw, pw, ph, ph)).view(n, g, c // g, x.shape[2] + 2 * ph, x.shape[3] + 2 * pw)
    out = None
    for u in range(kh):
        for v in range(kw):
            h0, w0 = u * dh, v * dw
            tap = padded[..., h0 : h0 + (ho - 1) * sh + 1 : sh, w0 : w0 + (wo - 1) * sw + 1 : sw]
            term = tap * weight[:, :, u, v].unsqueeze(2)
            out = term if out is None else out + term
    return out.reshape(n, c, ho, wo)
