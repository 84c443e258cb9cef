"""The one formatter for every console table: a header, a rule, then rows in aligned columns."""

from __future__ import annotations

from typing import Iterable, Sequence


def format_table(header: Sequence[object], rows: Iterable[Sequence[object]], right: Iterable[int] = ()) -> str:
    """Columns padded to their widest cell; `right` lists the columns aligned to the right (numbers)."""
    cells_rows = [[str(c) for c in row] for row in rows]
    cells_header = [str(c) for c in header]
    right_columns = set(right)
    widths = [
        max(len(row[i]) if i < len(row) else 0 for row in [cells_header, *cells_rows]) for i in range(len(cells_header))
    ]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right_columns else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))
        ).rstrip()

    return "\n".join([line(cells_header), line(["-" * w for w in widths])] + [line(r) for r in cells_rows])
