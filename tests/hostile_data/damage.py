"""Helpers that damage one table of a copied synthetic EHR (a folder in the MIMIC-IV layout)."""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Callable
from pathlib import Path


def table_path(root: Path, table: str) -> Path:
    """The csv.gz of ``table`` ("hosp/patients") under ``root``."""
    return root / f"{table}.csv.gz"


def read_text(path: Path) -> str:
    """The decompressed text of a csv.gz (or the text of a .csv)."""
    data = path.read_bytes()
    return (gzip.decompress(data) if path.name.endswith(".gz") else data).decode("utf-8")


def write_text(path: Path, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` compressed when ``path`` ends in .gz (mtime 0: the same bytes every run)."""
    data = text.encode(encoding)
    path.write_bytes(gzip.compress(data, mtime=0) if path.name.endswith(".gz") else data)


def read_rows(root: Path, table: str) -> tuple[list[str], list[list[str]]]:
    """Header and data rows of one table."""
    rows = list(csv.reader(io.StringIO(read_text(table_path(root, table)))))
    return rows[0], rows[1:]


def write_rows(root: Path, table: str, header: list[str], rows: list[list[str]]) -> None:
    """Write header and rows back (minimal quoting, '\\n' line ends, as MIMIC-IV is written)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_text(table_path(root, table), buffer.getvalue())


def edit_rows(root: Path, table: str, edit: Callable[[list[str], list[list[str]]], list[list[str]] | None]) -> None:
    """Apply ``edit(header, rows)`` (it may change rows in place or return new ones) and write the table back."""
    header, rows = read_rows(root, table)
    result = edit(header, rows)
    write_rows(root, table, header, rows if result is None else result)


def set_value(
    root: Path,
    table: str,
    column: str,
    value: str,
    where: Callable[[dict[str, str]], bool],
    limit: int | None = None,
) -> dict[str, int]:
    """Set ``column`` to ``value`` in every row for which ``where(row as dict)``.

    ``limit``: change at most that many rows (the first ones matching). Returns ``{"rows": rows changed,
    "line": the file line of the first}`` (the header is line 1; the synthetic files hold no quoted line
    breaks, so data row i is line i + 2). Raises when no row matched, so that a case never damages nothing.
    """
    lines: list[int] = []

    def edit(header: list[str], rows: list[list[str]]) -> None:
        at = header.index(column)
        for i, row in enumerate(rows):
            if (limit is None or len(lines) < limit) and where(dict(zip(header, row, strict=True))):
                row[at] = value
                lines.append(i + 2)

    edit_rows(root, table, edit)
    if not lines:
        raise LookupError(f"no row of {table} matched: the case would damage nothing")
    return {"rows": len(lines), "line": lines[0]}


def first_row_where(root: Path, table: str, where: Callable[[dict[str, str]], bool]) -> dict[str, str]:
    """The first row (as a dict) of ``table`` for which ``where`` holds."""
    header, rows = read_rows(root, table)
    for row in rows:
        record = dict(zip(header, row, strict=True))
        if where(record):
            return record
    raise LookupError(f"no row of {table} matches")
