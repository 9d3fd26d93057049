"""Plain-text tables for the commands' summaries: a left-aligned name column, right-aligned value columns."""
from __future__ import annotations

from collections.abc import Sequence


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]], min_width: int = 8) -> str:
    """`header` and `rows` are cells as strings; each column is as wide as its widest cell (at least `min_width`)."""
    widths = [max(min_width, len(header[i]), *(len(row[i]) for row in rows)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return " ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(header), *(line(row) for row in rows)])
