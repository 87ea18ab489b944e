"""Small ibis helpers shared by the concept modules (engine-neutral: DuckDB and Spark compile the same)."""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

SECONDS_PER_DAY = 86_400


def shift(ts: ir.TimestampValue, hours: float) -> ir.TimestampValue:
    """``ts`` moved by ``hours`` (whole seconds; works on every engine ibis compiles to)."""
    seconds = round(hours * 3600)
    if seconds >= 0:
        return ts + ibis.interval(seconds=seconds)
    return ts - ibis.interval(seconds=-seconds)


def seconds_between(later: ir.TimestampValue, earlier: ir.TimestampValue) -> ir.IntegerValue:
    """``later - earlier`` in whole seconds (MIMIC-IV times are whole seconds)."""
    return later.delta(earlier, unit="second")


def flag(column: ir.Value) -> ir.IntegerValue:
    """0/1 from a possibly-null count (null = no matching row)."""
    return ibis.cases((ibis.coalesce(column, 0) > 0, 1), else_=0).cast("int64")


def attach(base: ir.Table, other: ir.Table, keys: list[str]) -> ir.Table:
    """Left join ``other`` (unique on ``keys``) onto ``base``, keeping base's key columns once."""
    joined = base.left_join(other, keys)
    return joined.select(*[base[c] for c in base.columns], *[other[c] for c in other.columns if c not in keys])


def events(
    t: ir.Table,
    *,
    start: ir.Value,
    end: ir.Value | None = None,
    hadm: ir.Value | None = None,
    stay: ir.Value | None = None,
    value: ir.Value | None = None,
    amount: ir.Value | None = None,
    unit: ir.Value | None = None,
) -> ir.Table:
    """Project ``t`` to the event columns, typed (None -> typed null)."""
    return t.select(
        subject_id=t.subject_id.cast("int64"),
        hadm_id=hadm.cast("int64") if hadm is not None else ibis.null("int64"),
        stay_id=stay.cast("int64") if stay is not None else ibis.null("int64"),
        start_time=start.cast("timestamp"),
        end_time=(end if end is not None else start).cast("timestamp"),
        value=value.cast("float64") if value is not None else ibis.null("float64"),
        amount=amount.cast("float64") if amount is not None else ibis.null("float64"),
        unit=unit.cast("string") if unit is not None else ibis.null("string"),
    )


def icd_match(
    code: ir.StringValue, version: ir.IntegerValue, icd9: tuple[str, ...], icd10: tuple[str, ...]
) -> ir.BooleanValue:
    """True where the (dot-free, upper-case) code starts with one of the prefixes of its version."""
    clean = code.strip().upper().replace(".", "")
    parts = []
    if icd9:
        parts.append((version == 9) & ibis.or_(*[clean.startswith(p) for p in icd9]))
    if icd10:
        parts.append((version == 10) & ibis.or_(*[clean.startswith(p) for p in icd10]))
    return ibis.or_(*parts) if parts else ibis.literal(False)


def expand_codes(*specs: str) -> tuple[str, ...]:
    """ICD prefixes from a compact list: ``"4254-4259"`` -> 4254, 4255, ..., 4259; ``"C00-C26"`` likewise.

    A range keeps the width of its ends (``"042-044"`` -> 042, 043, 044) and the letter in front.
    """
    out: list[str] = []
    for spec in specs:
        if "-" not in spec:
            out.append(spec)
            continue
        lo, hi = spec.split("-")
        letter = lo[0] if lo[0].isalpha() else ""
        if letter and not hi.startswith(letter):
            raise ValueError(f"range {spec!r} crosses letters")
        a, b = lo[len(letter) :], hi[len(letter) :]
        if len(a) != len(b):
            raise ValueError(f"range {spec!r} ends differ in width")
        out += [f"{letter}{n:0{len(a)}d}" for n in range(int(a), int(b) + 1)]
    return tuple(out)
