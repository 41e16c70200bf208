"""Cells of the generated markdown tables, with one spelling of "no value"."""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .output import markdown_table

NO_VALUE = "—"
"""What every generated table shows where a figure is missing, failed or not measured."""


def number(value: Any) -> float | None:
    """`value` as a float when it is a finite int or float (not a bool); None otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def fmt(value: float | None, digits: int) -> str:
    """`value` with `digits` decimals; NO_VALUE when missing or not finite."""
    return NO_VALUE if number(value) is None else f"{value:.{digits}f}"


def fmt_grouped(value: float | None, digits: int = 1) -> str:
    """As `fmt`, with thousands separators."""
    return NO_VALUE if number(value) is None else f"{value:,.{digits}f}"


def fmt_signed(value: float | None, digits: int) -> str:
    """A difference with its sign; a value that rounds to zero is +0."""
    if number(value) is None:
        return NO_VALUE
    value = 0.0 if round(value, digits) == 0 else value
    return f"{value:+.{digits}f}"


def fmt_ratio(value: float | None, digits: int = 2) -> str:
    """A ratio as `0.81x`."""
    return NO_VALUE if number(value) is None else f"{value:.{digits}f}x"


def error_summary(error: BaseException) -> str:
    """A failed measurement as a table cell or record field: the error's type and first line."""
    text = str(error)
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"[:300]


def table_of_rows(headers: Sequence[str], rows: Iterable[Mapping[str, str]], left: int = 1) -> str:
    """A markdown table whose rows are given by column name; a column a row leaves out is empty.
    A row naming a column the table does not have is an error (a header renamed on one side only)."""
    lines = []
    for row in rows:
        unknown = [key for key in row if key not in headers]
        if unknown:
            raise ValueError(f"row names column(s) {unknown} that the table lacks; its columns: {list(headers)}")
        lines.append([row.get(header, "") for header in headers])
    return markdown_table(headers, lines, left=left)
