"""The involution written as the official naive version writes it: unfold the input into its
K*K taps, multiply by the kernel map, sum over the taps. It materialises a K*K-times copy of
the input, which is why the package does not use it; the benchmarks time it as the baseline
and the tests use it as a second, independent formula of the operator."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def involution_unfold(x: torch.Tensor, weight: torch.Tensor, stride: int | tuple[int, int] = 1,
                      padding: int | tuple[int, int] = 0, dilation: int | tuple[int, int] = 1) -> torch.Tensor:
    """out[n, c] = sum over taps of unfold(x)[n, c, tap] * weight[n, g(c), tap]; x (N, C, H, W),
    weight (N, G, KH, KW, Ho, Wo) as `involution_ops.involution` takes them. Differentiable."""
    n, c = x.shape[:2]
    _, g, kh, kw, ho, wo = weight.shape
    cols = F.unfold(x, (kh, kw), dilation=dilation, padding=padding, stride=stride)
    cols = cols.view(n, g, c // g, kh * kw, ho, wo)
    return (cols * weight.reshape(n, g, 1, kh * kw, ho, wo)).sum(dim=3).view(n, c, ho, wo)
