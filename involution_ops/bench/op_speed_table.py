"""The table of `make bench-op`: each backend's times, GMAC/s and memory as ratios against the
`unfold` formula measured on the same device in the same run, and the verdicts against the
operator's targets (stated here, once; the README cites them)."""
from __future__ import annotations

from collections.abc import Sequence

from .cells import NO_VALUE
from .op_speed import KERNEL, forward_macs

# The CPU kernel's targets: fwd+bwd at least this much faster than unfold, with at most this share
# of unfold's peak extra memory, and fwd+bwd GMAC/s at least this share of the same run's GEMM.
TARGET_SPEEDUP = 10.0
TARGET_MEMORY = 0.10
TARGET_GEMM_SHARE = 0.25

HEADERS = ("device", "shape", "backend", "GMAC", "fwd ms", "fwd+bwd ms", "fwd GMAC/s", "fwd+bwd GMAC/s", "gemm",
           "% gemm", "fwd+bwd MiB", "fwd speed-up", "fwd+bwd speed-up", "memory", "note")


def add_speed(rows: list[dict]) -> None:
    """GMAC/s of each row and its share of the GEMM speed measured in the same process, in place."""
    for row in rows:
        macs = forward_macs(row["dims"])
        row["fwd_gmac"] = macs / 1e9
        for mode, factor in (("fwd", 1), ("fwdbwd", 3)):
            if row.get(mode + "_ms"):
                row[mode + "_gmacs"] = factor * macs / (row[mode + "_ms"] / 1000) / 1e9
                if row.get("gemm_gmacs"):
                    row[mode + "_gemm_share"] = row[mode + "_gmacs"] / row["gemm_gmacs"]


def _fmt(value: float | None, spec: str = "{:.1f}") -> str:
    return NO_VALUE if value is None else spec.format(value)


def speedup(base: float | None, value: float | None) -> float | None:
    """How many times faster than unfold (unfold's time / this time); None when either is missing."""
    return None if base is None or not value else base / value


def memory_share(value: float | None, base: float | None) -> float | None:
    """This peak extra memory as a share of unfold's; None when either is missing."""
    return None if base is None or value is None or base <= 0 else value / base


def gemm_name(dtype: str) -> str:
    return {"float32": "sgemm", "float64": "dgemm"}.get(dtype, f"{dtype} gemm")


def table_rows(rows: Sequence[dict], dtype: str) -> list[dict[str, str]]:
    """The cells of each row by column, ratios against the unfold row of the same device and shape."""
    gemm = gemm_name(dtype)
    unfold = {(r["device"], r["shape"]): r for r in rows if r["backend"] == "unfold"}
    cells = []
    for r in rows:
        base = unfold.get((r["device"], r["shape"]), {})
        is_unfold = r["backend"] == "unfold"
        share = r.get("fwdbwd_gemm_share")
        memory = memory_share(r.get("fwdbwd_mib"), base.get("fwdbwd_mib"))
        cells.append({
            "device": r["device"], "shape": r["shape"], "backend": r["backend"],
            "GMAC": _fmt(r.get("fwd_gmac"), "{:.3f}"), "fwd ms": _fmt(r.get("fwd_ms")),
            "fwd+bwd ms": _fmt(r.get("fwdbwd_ms")), "fwd GMAC/s": _fmt(r.get("fwd_gmacs"), "{:.2f}"),
            "fwd+bwd GMAC/s": _fmt(r.get("fwdbwd_gmacs"), "{:.2f}"), gemm: _fmt(r.get("gemm_gmacs")),
            f"% {gemm}": _fmt(None if share is None else 100 * share, "{:.0f}%"),
            "fwd+bwd MiB": _fmt(r.get("fwdbwd_mib"), "{:.0f}"),
            "fwd speed-up": "1.0x" if is_unfold else _fmt(speedup(base.get("fwd_ms"), r.get("fwd_ms")), "{:.1f}x"),
            "fwd+bwd speed-up": "1.0x" if is_unfold else _fmt(speedup(base.get("fwdbwd_ms"), r.get("fwdbwd_ms")),
                                                                "{:.1f}x"),
            "memory": "100%" if is_unfold else _fmt(None if memory is None else 100 * memory, "{:.1f}%"),
            "note": r.get("note", ""),
        })
    return cells


def verdicts(rows: Sequence[dict], dtype: str) -> list[str]:
    """One line per kernel row and target: the figure, the target and PASS / FAIL."""
    gemm = gemm_name(dtype)
    unfold = {(r["device"], r["shape"]): r for r in rows if r["backend"] == "unfold"}
    lines = []
    for r in rows:
        base = unfold.get((r["device"], r["shape"]), {})
        if r["backend"] == "cpu" and r["device"] == "cpu":
            speed = speedup(base.get("fwdbwd_ms"), r.get("fwdbwd_ms"))
            memory = memory_share(r.get("fwdbwd_mib"), base.get("fwdbwd_mib"))
            if speed and memory is not None:
                ok = speed >= TARGET_SPEEDUP and memory <= TARGET_MEMORY
                lines.append(f"{r['shape']}: cpu kernel fwd+bwd {speed:.1f}x faster than unfold "
                             f"(target >= {TARGET_SPEEDUP:.0f}x), {100 * memory:.1f}% of its peak extra memory "
                             f"(target <= {100 * TARGET_MEMORY:.0f}%): {'PASS' if ok else 'FAIL'}")
            elif not any(other["shape"] == r["shape"] + "@N1" for other in rows):
                lines.append(f"{r['shape']}: cpu kernel target not measurable (unfold skipped or failed)")
        if r["backend"] == r["device"] and r.get("fwdbwd_gemm_share") is not None:
            share = r["fwdbwd_gemm_share"]
            lines.append(f"{r['shape']}: {r['device']} kernel fwd+bwd {r['fwdbwd_gmacs']:.2f} GMAC/s = "
                         f"{100 * share:.0f}% of {gemm} {r['gemm_gmacs']:.1f} GMAC/s "
                         f"(target >= {100 * TARGET_GEMM_SHARE:.0f}%): "
                         f"{'PASS' if share >= TARGET_GEMM_SHARE else 'FAIL'}")
    return lines


def _load(values: Sequence[float] | None) -> str:
    return " ".join(f"{v:.2f}" for v in values) if values else NO_VALUE


def render(rows: Sequence[dict], dtype: str, load_before: Sequence[float] | None,
           load_after: Sequence[float] | None) -> str:
    """The printed report: what was measured, the aligned table, then the verdicts."""
    import torch

    from . import environment

    gemm = gemm_name(dtype)
    lines = [
        "",
        f"involution K={KERNEL}, G=C/16, padding {KERNEL // 2}, {dtype}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} CPU threads, {environment.cpu_cores()} CPUs; load average (1, 5, 15 min) "
        f"{_load(load_before)} before, {_load(load_after)} after "
        "(a load above the thread count means other processes shared the CPUs).",
        f"Ratios are against `unfold` on the same device (speed-up = unfold time / time; memory = peak extra "
        f"memory of fwd+bwd / unfold's). GMAC/s: forward {KERNEL * KERNEL} MAC per output value, fwd+bwd 3x; "
        f"'{gemm}' = GMAC/s of torch.mm (N*H*W, C) x (C, C) timed in the same process, '% {gemm}' = "
        "fwd+bwd GMAC/s / that.",
    ]
    headers = [gemm if h == "gemm" else f"% {gemm}" if h == "% gemm" else h for h in HEADERS]
    table = [headers] + [[row[h] for h in headers] for row in table_rows(rows, dtype)]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(headers))]
    for index, row in enumerate(table):
        lines.append("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines + verdicts(rows, dtype))
