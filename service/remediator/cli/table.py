"""Plain-text tables for the terminal: columns padded to their widest cell."""

from __future__ import annotations

import shutil
from collections.abc import Sequence

_NARROWEST = 20  # a cut column keeps at least this much, however narrow the terminal


def table(rows: Sequence[Sequence[str]], cut: int | None = None) -> str:
    """The rows as columns; with `cut`, that column (free text: a reason, a summary) is cut
    with "…" so that each line fits the terminal's width (shutil.get_terminal_size: $COLUMNS,
    else the terminal, else 80)."""
    if cut is not None:
        rows = _fitted(rows, cut)
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _fitted(rows: Sequence[Sequence[str]], cut: int) -> list[list[str]]:
    columns = len(rows[0])
    others = sum(max(len(row[c]) for row in rows) for c in range(columns) if c != cut)
    room = shutil.get_terminal_size().columns - others - 2 * (columns - 1)
    room = max(room, _NARROWEST)
    fitted = []
    for row in rows:
        cells = list(row)
        if len(cells[cut]) > room:
            cells[cut] = cells[cut][: room - 1] + "…"
        fitted.append(cells)
    return fitted
