"""What the read commands print: aligned plain-text tables, or JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence

from gnomon._cli._secrets import mask_secrets

__all__ = ["render_json", "render_table"]

EMPTY = "-"


def render_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns padded to their widest cell; ``None`` shows as ``-``; no trailing spaces."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [len(header) for header in headers]
    for row in cells:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    lines = [_line(headers, widths)] + [_line(row, widths) for row in cells]
    return mask_secrets("\n".join(lines))


def _cell(value: object) -> str:
    if value is None:
        return EMPTY
    return " ".join(str(value).split())


def _line(cells: Sequence[str], widths: Sequence[int]) -> str:
    return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()


def render_json(value: object) -> str:
    return mask_secrets(json.dumps(value, indent=2, ensure_ascii=False))
