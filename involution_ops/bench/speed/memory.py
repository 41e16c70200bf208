"""Peak memory of a piece of code: the CUDA allocator's peak, or on the CPU the malloc heap
sampled after every operator (glibc's mallinfo2, opened here through ctypes)."""
from __future__ import annotations

import ctypes
import gc

import torch
from torch.utils._python_dispatch import TorchDispatchMode


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


_LIBC = ctypes.CDLL(None)
_MALLINFO2 = getattr(_LIBC, "mallinfo2", None)  # glibc >= 2.33
if _MALLINFO2 is not None:
    _MALLINFO2.restype = _MallInfo2


def _heap_in_use() -> int:
    """Bytes malloc has handed out and not got back (all arenas plus mmap'ed blocks)."""
    info = _MALLINFO2()
    return info.uordblks + info.hblkhd


class PeakMemory(TorchDispatchMode):
    """Peak memory (MiB) of the enclosed code above its starting level.

    CUDA: the caching allocator's peak (max_memory_allocated). CPU: the malloc heap in
    use, sampled after every operator (forward and backward run on this thread), so
    freed-but-cached pages do not hide a peak the way a resident-set measurement would;
    a temporary freed inside one operator is not seen. NaN on a CPU without mallinfo2.
    """

    def __init__(self, device: torch.device | str):
        super().__init__()
        self.device = torch.device(device)
        self.mib = float("nan")
        self.peak = self.start = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.peak = max(self.peak, _heap_in_use())
        return out

    def __enter__(self):
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
            return self
        if _MALLINFO2 is None:
            return self
        self.start = self.peak = _heap_in_use()
        return super().__enter__()

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.mib = (torch.cuda.max_memory_allocated() - self.start) / 2**20
            return None
        if _MALLINFO2 is None:
            return None
        result = super().__exit__(*exc)
        self.mib = (self.peak - self.start) / 2**20
        return result
